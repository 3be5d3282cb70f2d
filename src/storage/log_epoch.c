/* SPDX-License-Identifier: Apache-2.0 */
/*
 * log_epoch.c - where each leader epoch starts in a log (log.h, "Leader
 * epochs"): what replication asks to find where a follower's log leaves
 * its leader's (KIP-101, KIP-279).
 *
 * The log keeps, in memory, the offset at which each epoch starts for
 * offsets from epochs_from on: every append notes its batch's epoch, and
 * an open notes those of the newest segment, whose batch headers it walks
 * (its pages are resident: recovery just read them all).  Older offsets
 * are walked only when a question needs them, one segment at a time from
 * the newest down, and the list grows back over them.  Nothing is kept on
 * disk: the batches are the record, so the answer can never disagree with
 * the data, whatever a crash kept.  (Kafka keeps a leader-epoch checkpoint
 * file, and must repair it from the log after an unclean shutdown.)
 *
 * Epochs never decrease along a log, so the first batch of an epoch larger
 * than E ends E.  A replica append that would lower the last epoch is
 * refused (rmq_log_append); a leader append never does (its epoch only
 * grows), and if one did, the list would keep the larger epoch.
 */
#include "storage/log_int.h"

#include "core/error.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>

/* Appends (epoch, start) to the list when epoch is larger than its last. */
static int note(struct rmq_log *log, uint32_t epoch, uint64_t start)
{
	if (log->nepochs > 0 && epoch <= log->epochs[log->nepochs - 1].epoch)
		return 0;
	if (log->nepochs == log->epochs_cap) {
		uint32_t cap = log->epochs_cap ? 2 * log->epochs_cap : 8;
		struct log_epoch *v = realloc(log->epochs, cap * sizeof(*v));
		if (!v)
			return -ENOMEM;
		log->epochs = v;
		log->epochs_cap = cap;
	}
	log->epochs[log->nepochs++] = (struct log_epoch){.epoch = epoch, .start = start};
	return 0;
}

void log_epoch_note(struct rmq_log *log, uint32_t epoch, uint64_t start)
{
	if (note(log, epoch, start) < 0)
		log->epochs_lost = true; /* asked again from the batches when needed */
}

/* A walk of [from, to): the epochs it finds, in order. */
#define WALK_DONE (-1) /* the callback's "stop here" for rmq_log_scan */
struct walk {
	struct rmq_log *log;
	uint64_t to;
	int rc;
};

static int walk_batch(void *arg, const uint8_t *entry, const struct rmq_batch_view *v)
{
	struct walk *w = arg;
	(void)entry;
	if (v->hdr.base_offset >= w->to)
		return WALK_DONE;
	w->rc = note(w->log, v->hdr.leader_epoch, v->hdr.base_offset);
	return w->rc < 0 ? w->rc : 0;
}

/* Walks [from, to) into the (empty) list. */
static int walk(struct rmq_log *log, uint64_t from, uint64_t to)
{
	struct walk w = {.log = log, .to = to};
	int64_t rc = rmq_log_scan(log, from, walk_batch, &w);
	return w.rc < 0 ? w.rc : rc < 0 && rc != WALK_DONE ? (int)rc : 0;
}

/* The segment before the one holding epochs_from is walked, and the list
 * grows back over it.  Its pages are dropped after: a fetch serves
 * resident pages without a CRC check (log_recover.c). */
static int grow_back(struct rmq_log *log)
{
	int64_t si = log_find_segment(log, log->epochs_from - 1);
	if (si < 0)
		return RMQ_ERANGE;
	struct rmq_segment *s = log->segs[si];
	struct log_epoch *later = log->epochs;
	uint32_t nlater = log->nepochs;
	uint64_t later_from = log->epochs_from;
	log->epochs = NULL;
	log->nepochs = log->epochs_cap = 0;
	int rc = walk(log, s->base_offset, later_from);
	for (uint32_t i = 0; rc == 0 && i < nlater; i++)
		rc = note(log, later[i].epoch, later[i].start);
	if (rc < 0) {
		free(log->epochs);
		log->epochs = later;
		log->nepochs = log->epochs_cap = nlater;
		return rc;
	}
	free(later);
	log->epochs_from = s->base_offset;
	if (!s->sealed || s == log_active(log))
		return 0;
	log_drop_cache(s);
	return 0;
}

int log_epoch_rebuild(struct rmq_log *log)
{
	log->nepochs = 0;
	log->epochs_lost = false;
	log->epochs_from = log_active(log)->base_offset;
	int rc = walk(log, log->epochs_from, log->next_offset);
	/* The newest segment may be empty (just rolled, or cut): its last
	 * epoch is an older one's. */
	while (rc == 0 && log->nepochs == 0 && log->epochs_from > log->log_start)
		rc = grow_back(log);
	return rc;
}

void log_epoch_truncated(struct rmq_log *log)
{
	while (log->nepochs > 0 && log->epochs[log->nepochs - 1].start >= log->next_offset)
		log->nepochs--;
	if (log->epochs_from > log->next_offset || log->epochs_lost)
		(void)log_epoch_rebuild(log); /* an error leaves it to the next question */
}

void log_epoch_started(struct rmq_log *log)
{
	if (log->epochs_from >= log->log_start)
		return;
	/* Epochs that ended below the new log start go; the one the log
	 * start is in now starts there. */
	uint32_t drop = 0;
	while (drop + 1 < log->nepochs && log->epochs[drop + 1].start <= log->log_start)
		drop++;
	memmove(log->epochs, log->epochs + drop, (log->nepochs - drop) * sizeof(*log->epochs));
	log->nepochs -= drop;
	if (log->nepochs > 0 && log->epochs[0].start < log->log_start)
		log->epochs[0].start = log->log_start;
	log->epochs_from = log->log_start;
}

/* Makes the list trustworthy after a failed note. */
static int settle(struct rmq_log *log)
{
	return log->epochs_lost ? log_epoch_rebuild(log) : 0;
}

int rmq_log_last_epoch(struct rmq_log *log, uint32_t *epoch)
{
	int rc = settle(log);
	while (rc == 0 && log->nepochs == 0 && log->epochs_from > log->log_start)
		rc = grow_back(log);
	if (rc < 0)
		return rc;
	*epoch = log->nepochs > 0 ? log->epochs[log->nepochs - 1].epoch : 0;
	return 0;
}

int rmq_log_epoch_end(struct rmq_log *log, uint32_t epoch, uint32_t *floor, uint64_t *end)
{
	int rc = settle(log);
	/* Back until the list starts at or below epoch, or with the log. */
	while (rc == 0 && (log->nepochs == 0 || log->epochs[0].epoch > epoch) &&
	       log->epochs_from > log->log_start)
		rc = grow_back(log);
	if (rc < 0)
		return rc;
	if (log->nepochs == 0 || log->epochs[0].epoch > epoch) {
		/* No batch of epoch or below: the log's first is later. */
		*floor = 0;
		*end = log->nepochs > 0 ? log->epochs[0].start : log->next_offset;
		return RMQ_ENOTFOUND;
	}
	uint32_t i = 0;
	while (i + 1 < log->nepochs && log->epochs[i + 1].epoch <= epoch)
		i++;
	*floor = log->epochs[i].epoch;
	*end = i + 1 < log->nepochs ? log->epochs[i + 1].start : log->next_offset;
	return 0;
}

int rmq_log_epoch_at(struct rmq_log *log, uint64_t offset, uint32_t *epoch, uint64_t *start,
		     uint64_t *end)
{
	if (offset < log->log_start || offset >= log->next_offset)
		return RMQ_ERANGE;
	int rc = settle(log);
	/* Back until the list holds the epoch that offset is in. */
	while (rc == 0 && (log->nepochs == 0 || log->epochs[0].start > offset) &&
	       log->epochs_from > log->log_start)
		rc = grow_back(log);
	if (rc < 0)
		return rc;
	if (log->nepochs == 0 || log->epochs[0].start > offset)
		return RMQ_ENOTFOUND; /* unreadable there (a fenced segment) */
	uint32_t i = 0;
	while (i + 1 < log->nepochs && log->epochs[i + 1].start <= offset)
		i++;
	/* The list starts where it was first walked: the epoch may have
	 * started earlier. */
	while (i == 0 && log->epochs_from > log->log_start) {
		uint32_t e = log->epochs[0].epoch;
		if ((rc = grow_back(log)) < 0)
			return rc;
		while (i + 1 < log->nepochs && log->epochs[i + 1].start <= offset)
			i++;
		if (log->epochs[0].epoch != e)
			break;
	}
	*epoch = log->epochs[i].epoch;
	*start = log->epochs[i].start;
	*end = i + 1 < log->nepochs ? log->epochs[i + 1].start : log->next_offset;
	return 0;
}
