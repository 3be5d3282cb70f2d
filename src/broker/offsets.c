/* SPDX-License-Identifier: Apache-2.0 */
/*
 * offsets.c - one partition of the group coordinator's internal log
 * (offsets.h): open and replay, ordered appends, compaction's deletion.
 *
 * Two backings, one interface.  On a node alone the log is the node's own
 * (rmq_olog_open): a set is done once its batches are durable here.  In a
 * cluster it is a partition of the replicated topic __consumer_offsets
 * that this node leads (rmq_olog_attach): batches go into the partition's
 * log in its leader epoch, lead.c sends them to the followers, and a set
 * is done once the partition's high watermark (over the ISR) passed its
 * last batch, Kafka's acks=all for commits:
 *
 *   queued ──rmq_log_append──► in the log ──durable here──► waiting ──HW──► done
 *      │ (RMQ_EFULL: next cycle)                               │
 *      └──── leadership lost (rmq_olog_detach): RMQ_ESTATE ◄───┘
 *
 * A detached log's batches still in the partition's log come back through
 * their callbacks (the partition closes only once its log is quiet); the
 * last one frees it.
 */
#include "broker/offsets.h"

#include "broker/broker.h"
#include "core/assert.h"
#include "core/error.h"
#include "core/log.h"
#include "core/pbwire.h"
#include "storage/batch.h"
#include "storage/log.h"

#include <errno.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/uio.h>

/* Records per batch are cut at this many bytes (well under half the
 * internal log's write buffer, the largest batch it takes). */
#define OBATCH_BYTES (256u << 10)
#define OLOG_WRITE_BUFFER (2u << 20)

struct oset {                 /* one rmq_olog_append call */
	void (*done)(void *arg, int res);
	void *arg;
	unsigned pending;         /* batches not yet acknowledged */
	int res;
};

struct obatch {
	struct rmq_append a;      /* first: the log's callback gets &a */
	struct rmq_olog *l;
	struct oset *set;
	struct obatch *next;      /* queue, then in-flight list */
	uint32_t count;
	uint64_t end;             /* attached: the offset after its last record */
	size_t len;
	uint8_t data[];           /* field-7 elements */
};

struct rmq_olog {
	struct rmq_bshard *bs;
	uint32_t index;
	struct rmq_log *log;
	struct obatch *qhead, *qtail; /* not yet handed to the log */
	unsigned inflight;            /* handed to the log, not acknowledged */
	/* Attached (a cluster): the partition led here, in leader epoch
	 * `epoch`; batches durable here and waiting for its high watermark,
	 * in offset order; detached: freed by the last batch back. */
	struct rmq_partition *part;
	uint32_t epoch;
	struct obatch *whead, *wtail;
	bool detached;
};

/* ---- keys ---------------------------------------------------------------------- */

static uint8_t *put_str(uint8_t *p, const char *s, size_t max)
{
	size_t n = strnlen(s, max);
	p[0] = (uint8_t)(n >> 8);
	p[1] = (uint8_t)n;
	memcpy(p + 2, s, n);
	return p + 2 + n;
}

size_t rmq_okey_offset(uint8_t *buf, const char *group, const char *topic, uint32_t partition)
{
	uint8_t *p = buf;
	*p++ = 1;
	*p++ = 'O';
	p = put_str(p, group, 255);
	p = put_str(p, topic, 255);
	*p++ = (uint8_t)(partition >> 24);
	*p++ = (uint8_t)(partition >> 16);
	*p++ = (uint8_t)(partition >> 8);
	*p++ = (uint8_t)partition;
	return (size_t)(p - buf);
}

size_t rmq_okey_group(uint8_t *buf, const char *group)
{
	uint8_t *p = buf;
	*p++ = 1;
	*p++ = 'G';
	p = put_str(p, group, 255);
	return (size_t)(p - buf);
}

static int get_str(const uint8_t **p, const uint8_t *end, const char **s, size_t *n)
{
	if (end - *p < 2)
		return -1;
	*n = (size_t)(*p)[0] << 8 | (*p)[1];
	if ((size_t)(end - *p - 2) < *n)
		return -1;
	*s = (const char *)*p + 2;
	*p += 2 + *n;
	return 0;
}

int rmq_okey_parse(const uint8_t *key, size_t len, struct rmq_okey *k)
{
	const uint8_t *p = key + 2, *end = key + len;
	memset(k, 0, sizeof(*k));
	if (len < 2 || key[0] != 1 || (key[1] != 'O' && key[1] != 'G'))
		return -1;
	k->kind = (char)key[1];
	if (get_str(&p, end, &k->group, &k->glen) < 0 || k->glen == 0)
		return -1;
	if (k->kind == 'G')
		return p == end ? 0 : -1;
	if (get_str(&p, end, &k->topic, &k->tlen) < 0 || end - p != 4)
		return -1;
	k->partition = (uint32_t)p[0] << 24 | (uint32_t)p[1] << 16 | (uint32_t)p[2] << 8 | p[3];
	return 0;
}

/* ---- replay -------------------------------------------------------------------- */

/* Walks the field-7 Records of one batch's records bytes. */
static int replay_records(const uint8_t *p, const uint8_t *end, rmq_orec_fn apply, void *arg)
{
	while (p < end) {
		uint32_t f, wt;
		const uint8_t *val;
		size_t vlen;
		uint64_t num;
		size_t n = rmq_pb_next(p, end, &f, &wt, &num, &val, &vlen);
		if (n == 0 || f != 7 || wt != 2)
			return -1;
		struct rmq_orec r = {0};
		const uint8_t *q = val, *qend = val + vlen;
		while (q < qend) {
			uint32_t rf, rwt;
			const uint8_t *rv;
			size_t rvlen;
			size_t m = rmq_pb_next(q, qend, &rf, &rwt, &num, &rv, &rvlen);
			if (m == 0)
				return -1;
			if (rf == 1 && rwt == 2) {
				r.key = rv;
				r.klen = rvlen;
			} else if (rf == 2 && rwt == 2) {
				r.val = rvlen ? rv : NULL;
				r.vlen = rvlen;
			}
			q += m;
		}
		if (r.key)
			apply(arg, &r);
		p += n;
	}
	return 0;
}

struct replay_ctx {
	struct rmq_olog *l;
	rmq_orec_fn apply;
	void *arg;
};

static int replay_batch(void *arg, const uint8_t *entry, const struct rmq_batch_view *hv)
{
	struct replay_ctx *x = arg;
	struct rmq_batch_view v;
	if (hv->hdr.compression != 0 || rmq_batch_parse(entry, hv->entry_len, &v) <= 0 ||
	    rmq_batch_check_crc(entry, &v) < 0 ||
	    replay_records(entry + v.records_pos, entry + v.records_pos + v.records_len, x->apply,
			   x->arg) < 0)
		rmq_warn("%s-%u: batch at offset %" PRIu64 " is not a valid offsets batch; skipped",
			 RMQ_OFFSETS_TOPIC, x->l->index, hv->hdr.base_offset);
	return 0;
}

static void replay(struct rmq_olog *l, rmq_orec_fn apply, void *arg)
{
	struct replay_ctx x = {l, apply, arg};
	/* Attached: the whole log the new leader has, up to its durable end
	 * (rmq_log_scan's bound); what it holds past the high watermark is
	 * this leader's to commit now, as Kafka's loading takes it. */
	int64_t skipped = rmq_log_scan(l->log, rmq_log_start_offset(l->log), replay_batch, &x);
	if (skipped > 0)
		rmq_warn("%s-%u: %" PRId64 " offsets in unreadable segments were skipped: "
			 "commits stored there are lost", RMQ_OFFSETS_TOPIC, l->index, skipped);
}

int rmq_olog_open(struct rmq_bshard *bs, uint32_t index, uint64_t segment_bytes,
		  rmq_orec_fn apply, void *arg, struct rmq_olog **out)
{
	struct rmq_olog *l = calloc(1, sizeof(*l));
	struct rmq_log_config lc;
	char dir[4096];
	if (!l)
		return -ENOMEM;
	l->bs = bs;
	l->index = index;
	rmq_log_config_default(&lc);
	lc.segment_bytes = segment_bytes;
	lc.segment_ms = 0;
	lc.retention_bytes = -1; /* compaction bounds it, not retention */
	lc.retention_ms = -1;
	lc.index_interval_bytes = (uint32_t)bs->b->cfg.index_interval_bytes;
	lc.write_buffer_bytes = OLOG_WRITE_BUFFER;
	lc.fsync = bs->b->cfg.fsync;
	lc.prealloc = bs->b->cfg.prealloc;
	lc.dsync_writes = bs->b->cfg.dsync_writes;
	lc.recycle_segments = bs->b->cfg.recycle_segments;
	rmq_partition_dir(dir, sizeof(dir), bs->b->cfg.data_dir, RMQ_OFFSETS_TOPIC, index);
	int rc = rmq_log_open(rmq_shard_io(bs->s), dir, &lc, &l->log);
	if (rc < 0) {
		rmq_error("cannot open %s: %s", dir, rmq_strerror(rc));
		free(l);
		return rc;
	}
	replay(l, apply, arg);
	*out = l;
	return 0;
}

int rmq_olog_attach(struct rmq_bshard *bs, struct rmq_partition *part, rmq_orec_fn apply,
		    void *arg, struct rmq_olog **out)
{
	struct rmq_olog *l = calloc(1, sizeof(*l));
	if (!l)
		return -ENOMEM;
	l->bs = bs;
	l->index = part->index;
	l->log = part->log;
	l->part = part;
	l->epoch = part->leader_epoch;
	replay(l, apply, arg);
	*out = l;
	return 0;
}

/* ---- appends ------------------------------------------------------------------- */

static void set_put(struct oset *set, int res)
{
	if (res < 0 && set->res == 0)
		set->res = res;
	if (--set->pending > 0)
		return;
	set->done(set->arg, set->res);
	free(set);
}

/* Attached: whether the partition is still led here in the epoch the log
 * was loaded in (else its appends cannot be acknowledged here). */
static bool still_leading(const struct rmq_olog *l)
{
	return !l->part || (!l->detached && l->part->state == RMQ_PART_ONLINE &&
			    l->part->role == RMQ_ROLE_LEADER && l->part->leader_epoch == l->epoch);
}

static void batch_acked(struct rmq_append *a, int res)
{
	struct obatch *b = (struct obatch *)a;
	struct rmq_olog *l = b->l;
	l->inflight--;
	if (l->part && res == 0 && still_leading(l)) {
		/* Durable here: committed once the ISR has it too. */
		b->next = NULL;
		if (l->wtail)
			l->wtail->next = b;
		else
			l->whead = b;
		l->wtail = b;
		rmq_olog_hw(l);
		return;
	}
	if (l->part && res == 0)
		res = RMQ_ESTATE; /* led elsewhere now: maybe committed, maybe not */
	set_put(b->set, res);
	free(b);
	if (l->detached && l->inflight == 0)
		free(l);
}

void rmq_olog_hw(struct rmq_olog *l)
{
	while (l->whead && l->whead->end <= l->part->hw) {
		struct obatch *b = l->whead;
		l->whead = b->next;
		if (!l->whead)
			l->wtail = NULL;
		set_put(b->set, 0);
		free(b);
	}
}

/* Fails every set still queued or waiting with res. */
static void fail_pending(struct rmq_olog *l, int res)
{
	while (l->qhead) {
		struct obatch *b = l->qhead;
		l->qhead = b->next;
		set_put(b->set, res);
		free(b);
	}
	l->qtail = NULL;
	while (l->whead) {
		struct obatch *b = l->whead;
		l->whead = b->next;
		set_put(b->set, res);
		free(b);
	}
	l->wtail = NULL;
}

void rmq_olog_detach(struct rmq_olog *l)
{
	if (!l)
		return;
	RMQ_ASSERT(l->part);
	l->detached = true;
	fail_pending(l, RMQ_ESTATE);
	if (l->inflight == 0)
		free(l);
}

bool rmq_olog_short(const struct rmq_olog *l, uint32_t *nisr, uint32_t *min)
{
	*nisr = *min = 0;
	if (!l->part || !l->part->topic || !l->part->topic->parts)
		return false;
	*nisr = l->part->topic->parts[l->part->index].nisr;
	*min = l->part->topic->cfg.min_insync_replicas;
	return *min > *nisr;
}

bool rmq_olog_replicated(const struct rmq_olog *l)
{
	return l->part != NULL;
}

uint32_t rmq_olog_epoch(const struct rmq_olog *l)
{
	return l->epoch;
}

/* Hands queued batches to the log in order until it is full. */
static void submit(struct rmq_olog *l)
{
	while (l->qhead) {
		struct obatch *b = l->qhead;
		if (b->set->res < 0) {
			/* An earlier batch of the set failed: drop the rest. */
			l->qhead = b->next;
			set_put(b->set, 0);
			free(b);
			continue;
		}
		if (!still_leading(l)) {
			l->qhead = b->next;
			set_put(b->set, RMQ_ESTATE);
			free(b);
			continue;
		}
		rmq_batch_hdr_init(&b->a.hdr);
		b->a.hdr.record_count = b->count;
		/* Every stored batch carries the epoch of the leader that wrote
		 * it (docs/replication.md, rule 6); 0 for the node's own log,
		 * as before. */
		if (l->part)
			b->a.hdr.leader_epoch = l->epoch;
		b->a.cb = batch_acked;
		struct iovec iov = {b->data, b->len};
		int rc = rmq_log_append(l->log, &b->a, &iov, 1);
		if (rc == RMQ_EFULL)
			break; /* space frees as writes complete: next cycle */
		l->qhead = b->next;
		if (rc < 0) {
			rmq_warn("%s-%u: append failed: %s", RMQ_OFFSETS_TOPIC, l->index, rmq_strerror(rc));
			set_put(b->set, rc);
			free(b);
			continue;
		}
		b->end = b->a.hdr.base_offset + b->count;
		l->inflight++;
		if (l->part)
			rmq_partition_mark_dirty(l->part); /* flushed, and sent to the followers */
	}
	if (!l->qhead)
		l->qtail = NULL;
}

static size_t rec_len(const struct rmq_orec *r)
{
	size_t body = 1 + rmq_pb_varint_len(r->klen) + r->klen;
	if (r->vlen)
		body += 1 + rmq_pb_varint_len(r->vlen) + r->vlen;
	return 1 + rmq_pb_varint_len(body) + body;
}

static size_t put_rec(uint8_t *p, const struct rmq_orec *r)
{
	size_t body = 1 + rmq_pb_varint_len(r->klen) + r->klen;
	if (r->vlen)
		body += 1 + rmq_pb_varint_len(r->vlen) + r->vlen;
	uint8_t *q = p;
	q += rmq_pb_put_len(q, 7, body);
	q += rmq_pb_put_len(q, 1, r->klen);
	memcpy(q, r->key, r->klen);
	q += r->klen;
	if (r->vlen) {
		q += rmq_pb_put_len(q, 2, r->vlen);
		memcpy(q, r->val, r->vlen);
		q += r->vlen;
	}
	return (size_t)(q - p);
}

int rmq_olog_append(struct rmq_olog *l, const struct rmq_orec *recs, size_t n,
		    void (*done)(void *arg, int res), void *arg)
{
	struct oset *set = calloc(1, sizeof(*set));
	struct obatch *first = NULL, *last = NULL;
	if (!set)
		return -ENOMEM;
	set->done = done;
	set->arg = arg;
	for (size_t i = 0; i < n;) {
		size_t bytes = 0, j = i;
		while (j < n && (j == i || bytes + rec_len(&recs[j]) <= OBATCH_BYTES))
			bytes += rec_len(&recs[j++]);
		struct obatch *b = malloc(sizeof(*b) + bytes);
		if (!b) {
			while (first) {
				struct obatch *nx = first->next;
				free(first);
				first = nx;
			}
			free(set);
			return -ENOMEM;
		}
		memset(b, 0, sizeof(*b));
		b->l = l;
		b->set = set;
		b->count = (uint32_t)(j - i);
		for (; i < j; i++)
			b->len += put_rec(b->data + b->len, &recs[i]);
		if (last)
			last->next = b;
		else
			first = b;
		last = b;
		set->pending++;
	}
	if (!first) {
		free(set);
		done(arg, 0);
		return 0;
	}
	if (l->qtail)
		l->qtail->next = first;
	else
		l->qhead = first;
	l->qtail = last;
	submit(l);
	return 0;
}

void rmq_olog_flush(struct rmq_olog *l)
{
	if (l->qhead)
		submit(l);
	if (!l->part)
		rmq_log_flush(l->log); /* attached: the partition's cycle flushes it */
}

bool rmq_olog_idle(const struct rmq_olog *l)
{
	return !l->qhead && l->inflight == 0 && !l->whead && (l->part || rmq_log_idle(l->log));
}

bool rmq_olog_settled(const struct rmq_olog *l)
{
	return !l->qhead && l->inflight == 0 && !l->whead;
}

void rmq_olog_close(struct rmq_olog *l)
{
	if (!l)
		return;
	RMQ_ASSERT(!l->part);
	/* Queued batches that never reached the log fail. */
	while (l->qhead) {
		struct obatch *b = l->qhead;
		l->qhead = b->next;
		set_put(b->set, RMQ_ESTATE);
		free(b);
	}
	int rc = rmq_log_close(l->log);
	if (rc < 0)
		rmq_warn("closing %s-%u: %s", RMQ_OFFSETS_TOPIC, l->index, rmq_strerror(rc));
	free(l);
}

uint64_t rmq_olog_size(const struct rmq_olog *l)
{
	return rmq_log_size_bytes(l->log);
}

uint64_t rmq_olog_end(const struct rmq_olog *l)
{
	return rmq_log_end_offset(l->log);
}

uint32_t rmq_olog_index(const struct rmq_olog *l)
{
	return l->index;
}

int rmq_olog_delete_before(struct rmq_olog *l, uint64_t offset)
{
	return rmq_log_delete_before(l->log, offset);
}
