/* SPDX-License-Identifier: Apache-2.0 */
/*
 * partition.c - the partitions a shard owns: tables, lifecycle and
 * leadership (partition.h).
 *
 * Tables.  bs->local[i].parts[p] points at partition p of topic
 * bs->meta->topics[i] when this shard owns it (in any state but the
 * closing ones), else NULL.  An apply builds new tables for the new
 * snapshot: partitions of surviving topics move over, new ones are
 * created OPENING, the rest leave the tables and go to the closing list.
 *
 * Helper threads do the blocking steps (core/offload.h): the open
 * (recovery reads every segment's index and scans the newest) with the
 * producer-id replay, and the close (the final fdatasync, unmapping) with
 * the removal of a deleted partition's files.  While a step runs on a
 * helper the partition belongs to it: the shard does not touch its log.
 */
#include "broker/partition.h"

#include "broker/broker.h"
#include "broker/lead.h"
#include "broker/cluster.h"
#include "broker/dedup.h"
#include "broker/group.h"
#include "core/assert.h"
#include "core/error.h"
#include "core/log.h"
#include "core/util.h"

#include <errno.h>
#include <fcntl.h>
#include <ftw.h>
#include <inttypes.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

/* ---- the offline list ---------------------------------------------------------- */

struct offline_entry {
	char topic_id[40];
	uint32_t partition;
	int error;                /* negated errno or RMQ_E* */
};

struct rmq_offline {
	pthread_mutex_t mu;
	struct offline_entry *v;
	size_t n, cap;
};

int rmq_offline_create(struct rmq_offline **out)
{
	struct rmq_offline *o = calloc(1, sizeof(*o));
	if (!o)
		return -ENOMEM;
	pthread_mutex_init(&o->mu, NULL);
	*out = o;
	return 0;
}

void rmq_offline_destroy(struct rmq_offline *o)
{
	if (!o)
		return;
	pthread_mutex_destroy(&o->mu);
	free(o->v);
	free(o);
}

static struct offline_entry *offline_find(struct rmq_offline *o, const char *topic_id, uint32_t p)
{
	for (size_t i = 0; i < o->n; i++)
		if (o->v[i].partition == p && strcmp(o->v[i].topic_id, topic_id) == 0)
			return &o->v[i];
	return NULL;
}

/* p is offline with error (0: serves again). */
static void offline_note(struct rmq_partition *p, int error)
{
	struct rmq_offline *o = p->bs->b->offline;
	pthread_mutex_lock(&o->mu);
	struct offline_entry *e = offline_find(o, p->topic_id, p->index);
	if (error == 0 && e) {
		*e = o->v[--o->n];
	} else if (error != 0 && e) {
		e->error = error;
	} else if (error != 0) {
		if (o->n == o->cap) {
			size_t cap = o->cap ? 2 * o->cap : 16;
			struct offline_entry *v = realloc(o->v, cap * sizeof(*v));
			if (v) {
				o->v = v;
				o->cap = cap;
			}
		}
		if (o->n < o->cap) { /* else out of memory: the log still says it */
			e = &o->v[o->n++];
			snprintf(e->topic_id, sizeof(e->topic_id), "%s", p->topic_id);
			e->partition = p->index;
			e->error = error;
		}
	}
	pthread_mutex_unlock(&o->mu);
}

int rmq_offline_lookup(struct rmq_offline *o, const char *topic_id, uint32_t p, char *why,
		       size_t len)
{
	pthread_mutex_lock(&o->mu);
	const struct offline_entry *e = o->n ? offline_find(o, topic_id, p) : NULL;
	int error = e ? e->error : 0;
	pthread_mutex_unlock(&o->mu);
	if (error && why)
		snprintf(why, len, "partition %u could not be opened: %s (retried every %llu s)", p,
			 rmq_strerror(error), (unsigned long long)(RMQ_PART_RETRY_NS / 1000000000ULL));
	return error;
}

size_t rmq_offline_count(struct rmq_offline *o, const char *topic_id)
{
	size_t n = 0;
	pthread_mutex_lock(&o->mu);
	for (size_t i = 0; i < o->n; i++)
		n += !topic_id || strcmp(o->v[i].topic_id, topic_id) == 0;
	pthread_mutex_unlock(&o->mu);
	return n;
}

/* ---- applying a snapshot -------------------------------------------------------- */

/* One snapshot being applied on this shard. */
struct part_apply {
	int pending;             /* partitions not at their state yet, +1 while applying */
	void (*done)(void *arg);
	void *arg;
};

/* What a helper thread needs to open a partition's log. */
struct part_open {
	char dir[4096];
	char owner[96];            /* "topic-id generation": what the directory must hold */
	bool owner_later;          /* a new partition: its owner file is written after the open */
	struct rmq_log_config lc;
	struct rmq_log *log;
	struct rmq_dedup *dedup;
	int rc;
};

static void apply_put(struct part_apply *a)
{
	if (!a || --a->pending > 0)
		return;
	void (*done)(void *) = a->done;
	void *arg = a->arg;
	free(a);
	done(arg);
}

/* p reached the state its apply waited for. */
static void settle(struct rmq_partition *p)
{
	struct part_apply *a = p->apply;
	p->apply = NULL;
	apply_put(a);
}

static void log_config_for(struct rmq_bshard *bs, const struct rmq_topic *t,
			   struct rmq_log_config *lc)
{
	const struct rmq_broker *b = bs->b;

	rmq_log_config_default(lc);
	lc->segment_bytes = t->cfg.segment_bytes;
	lc->segment_ms = t->cfg.segment_ms;
	lc->retention_bytes = t->cfg.retention_bytes;
	lc->retention_ms = t->cfg.retention_ms;
	lc->index_interval_bytes = (uint32_t)b->cfg.index_interval_bytes;
	lc->write_buffer_bytes = (uint32_t)b->cfg.write_buffer_bytes;
	lc->fsync = b->cfg.fsync;
	lc->prealloc = b->cfg.prealloc;
	lc->dsync_writes = b->cfg.dsync_writes;
	lc->recycle_segments = b->cfg.recycle_segments;
	lc->metrics = &bs->log_metrics;
	lc->wpool = bs->wpool;
}

/* ---- leadership ------------------------------------------------------------ */

static void on_durable(void *arg, uint64_t end)
{
	struct rmq_partition *p = arg;
	/* This node is the whole ISR of every partition it leads until
	 * replication says otherwise: what is durable here is committed. */
	if (p->role == RMQ_ROLE_LEADER && p->nslots == 0)
		rmq_partition_set_hw(p, end);
	else if (p->role == RMQ_ROLE_LEADER)
		rmq_lead_durable(p); /* the ISR decides */
}

void rmq_partition_set_role(struct rmq_partition *p, enum rmq_role role, uint32_t leader_epoch)
{
	RMQ_ASSERT(leader_epoch >= p->leader_epoch);
	if (role != RMQ_ROLE_LEADER || leader_epoch != p->leader_epoch)
		rmq_produce_fail_replicated(p); /* led here no more, or in another epoch */
	p->role = role;
	p->leader_epoch = leader_epoch;
	rmq_lead_sync(p);
	if (role == RMQ_ROLE_LEADER && p->nslots == 0 && p->log)
		rmq_partition_set_hw(p, rmq_log_high_watermark(p->log));
	rmq_groups_partition_changed(p); /* __consumer_offsets: the coordinator moves */
}

void rmq_partition_set_hw(struct rmq_partition *p, uint64_t hw)
{
	if (hw <= p->hw)
		return;
	p->hw = hw;
	rmq_fetch_wake(p);
	rmq_groups_partition_hw(p); /* __consumer_offsets: commits it passed */
}

/* ---- opening ------------------------------------------------------------------ */

static int replay_producer(void *arg, const uint8_t *entry, const struct rmq_batch_view *v)
{
	struct part_open *o = arg;
	(void)entry;
	if (v->hdr.producer_id <= 0 || v->hdr.base_sequence < 0)
		return 0;
	if (!o->dedup && !(o->dedup = rmq_dedup_new()))
		return -ENOMEM;
	rmq_dedup_replay(o->dedup, v->hdr.producer_id, v->hdr.producer_epoch, v->hdr.base_sequence,
			 v->hdr.record_count, v->hdr.base_offset);
	return 0;
}

/* Helper thread: opens and recovers the log, then feeds the producer ids,
 * epochs and sequences of its newest segment to dedup so that a retry
 * across a restart is still recognised (dedup is made only when a batch
 * has a producer id). */
/* "DIR.owner": which topic and making of the partition DIR holds. */
static void owner_path(char *buf, size_t len, const char *dir)
{
	snprintf(buf, len, "%s.owner", dir);
}

static int rm_entry(const char *path, const struct stat *st, int type, struct FTW *ftw);

/* Whether owner lines a and b ("topic-id generation") name one partition:
 * the same topic id, and generations equal or one of them unknown (0: a
 * state written before generations, or imported from one). */
static bool same_owner(const char *a, const char *b)
{
	char ida[64], idb[64];
	unsigned long long ga, gb;
	if (sscanf(a, "%63s %llu", ida, &ga) != 2 || sscanf(b, "%63s %llu", idb, &gb) != 2)
		return false;
	return strcmp(ida, idb) == 0 && (ga == gb || ga == 0 || gb == 0);
}

/* Helper thread: writes the owner file of DIR (not synced: a crash that
 * loses it leaves a directory taken for its partition's, as before owner
 * files). */
static void write_owner(const char *dir, const char *owner)
{
	char path[4200];
	owner_path(path, sizeof(path), dir);
	int fd = open(path, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
	if (fd >= 0) {
		if (write(fd, owner, strlen(owner)) < 0)
			rmq_warn("cannot write %s: %s", path, rmq_strerror(-errno));
		close(fd);
	}
}

/* Helper thread: a directory left by another topic of the name, or
 * another making of the partition (deleted while this node was away, or in
 * a change it saw as one with the new one), is removed before the open:
 * its records are not this partition's.  Then the owner file says whose
 * it is.  A new partition (no directory, no owner file) gets it after its
 * open (owner_later): making an inode costs milliseconds on this
 * machine's ext4, which CreateTopics need not wait for. */
static void claim_dir(struct part_open *o)
{
	char path[4200], had[96] = "";
	struct stat st;
	owner_path(path, sizeof(path), o->dir);
	int fd = open(path, O_RDONLY | O_CLOEXEC);
	if (fd < 0 && errno == ENOENT && stat(o->dir, &st) < 0 && errno == ENOENT) {
		o->owner_later = true;
		return;
	}
	if (fd >= 0) {
		ssize_t n = read(fd, had, sizeof(had) - 1);
		had[n > 0 ? n : 0] = '\0';
		close(fd);
		if (strcmp(had, o->owner) == 0)
			return;
		if (!same_owner(had, o->owner) && stat(o->dir, &st) == 0) {
			rmq_warn("%s held %s, not %s: removing it", o->dir, had, o->owner);
			if (nftw(o->dir, rm_entry, 8, FTW_DEPTH | FTW_PHYS) != 0 && errno != ENOENT)
				rmq_warn("could not remove %s: %s", o->dir, rmq_strerror(-errno));
		}
	}
	write_owner(o->dir, o->owner);
}

static void owner_work(struct rmq_offload *job)
{
	struct rmq_partition *p = RMQ_CONTAINER_OF(job, struct rmq_partition, owner_job);
	char dir[4096];
	rmq_partition_dir(dir, sizeof(dir), p->bs->b->cfg.data_dir, p->topic_name, p->index);
	write_owner(dir, p->owner_line);
}

/* The owner file is written: the partition may close (step_closing). */
static void owner_done(struct rmq_offload *job)
{
	struct rmq_partition *p = RMQ_CONTAINER_OF(job, struct rmq_partition, owner_job);
	free(p->owner_line);
	p->owner_line = NULL;
}

static void open_work(struct rmq_offload *job)
{
	struct rmq_partition *p = RMQ_CONTAINER_OF(job, struct rmq_partition, job);
	struct part_open *o = p->opening;
	claim_dir(o);
	o->rc = rmq_log_open(NULL, o->dir, &o->lc, &o->log);
	if (o->rc == 0 && rmq_log_scan(o->log, rmq_log_active_base(o->log), replay_producer, o) < 0)
		rmq_warn("partition %s-%u: no memory for producer deduplication", p->topic_name, p->index);
}

static void start_open(struct rmq_partition *p);
static void start_close(struct rmq_partition *p, bool remove);

static void retry_open(struct rmq_timer *t)
{
	struct rmq_partition *p = RMQ_CONTAINER_OF(t, struct rmq_partition, retry);
	if (p->state == RMQ_PART_FAILED)
		start_open(p);
}

static void open_done(struct rmq_offload *job)
{
	struct rmq_partition *p = RMQ_CONTAINER_OF(job, struct rmq_partition, job);
	struct rmq_bshard *bs = p->bs;
	struct part_open *o = p->opening;
	p->opening = NULL;
	if (o->rc < 0) {
		if (p->error != o->rc)
			rmq_error("cannot open partition %s-%u in %s: %s (retried every %llus)",
				  p->topic_name, p->index, o->dir, rmq_strerror(o->rc),
				  (unsigned long long)(RMQ_PART_RETRY_NS / 1000000000ULL));
		p->error = o->rc;
		p->state = RMQ_PART_FAILED;
		offline_note(p, p->error);
		free(o);
		if (p->close_wanted) {
			start_close(p, p->remove);
			return;
		}
		rmq_timer_start(bs->s, &p->retry, rmq_now_ns() + RMQ_PART_RETRY_NS, retry_open);
		settle(p);
		return;
	}
	if (p->error) {
		rmq_info("partition %s-%u opened after %s", p->topic_name, p->index,
			 rmq_strerror(p->error));
		offline_note(p, 0);
	}
	p->error = 0;
	p->log = o->log;
	p->dedup = o->dedup;
	if (o->owner_later && (p->owner_line = strdup(o->owner))) {
		p->owner_job.work = owner_work;
		p->owner_job.done = owner_done;
		rmq_offload(bs->b->offload, bs->s, &p->owner_job);
	} else if (o->owner_later) {
		/* Out of memory: without the file the directory is taken for
		 * this partition's, as before owner files. */
		rmq_warn("partition %s-%u: no memory to write its owner file", p->topic_name, p->index);
	}
	free(o);
	rmq_log_attach(p->log, rmq_shard_io(bs->s));
	rmq_cold_init(&p->cold, p->log, rmq_shard_io(bs->s), &bs->cold);
	rmq_log_set_hw_listener(p->log, on_durable, p);
	p->state = RMQ_PART_ONLINE;
	if (p->close_wanted) {
		start_close(p, p->remove); /* its topic went meanwhile */
		return;
	}
	struct rmq_leader l = rmq_cluster_leader(bs, p->topic, p->index);
	rmq_partition_set_role(p, l.self ? RMQ_ROLE_LEADER : RMQ_ROLE_FOLLOWER, l.epoch);
	settle(p);
}

static void start_open(struct rmq_partition *p)
{
	struct rmq_bshard *bs = p->bs;
	struct part_open *o = calloc(1, sizeof(*o));
	if (!o) {
		p->error = -ENOMEM;
		p->state = RMQ_PART_FAILED;
		offline_note(p, p->error);
		rmq_timer_start(bs->s, &p->retry, rmq_now_ns() + RMQ_PART_RETRY_NS, retry_open);
		settle(p);
		return;
	}
	rmq_partition_dir(o->dir, sizeof(o->dir), bs->b->cfg.data_dir, p->topic_name, p->index);
	snprintf(o->owner, sizeof(o->owner), "%s %" PRIu64 "\n", p->topic_id,
		 p->topic->parts ? p->topic->parts[p->index].gen : 0);
	log_config_for(bs, p->topic, &o->lc);
	p->opening = o;
	p->state = RMQ_PART_OPENING;
	p->job.work = open_work;
	p->job.done = open_done;
	rmq_offload(bs->b->offload, bs->s, &p->job);
}

static struct rmq_partition *part_new(struct rmq_bshard *bs, const struct rmq_topic *t,
				      uint32_t index, struct part_apply *a)
{
	struct rmq_partition *p = calloc(1, sizeof(*p));
	if (!p)
		return NULL;
	p->bs = bs;
	p->topic = t;
	p->index = index;
	p->replicas = t->replication_factor ? t->replication_factor : 1;
	snprintf(p->topic_name, sizeof(p->topic_name), "%s", t->name);
	snprintf(p->topic_id, sizeof(p->topic_id), "%s", t->id);
	p->apply = a;
	a->pending++;
	p->state = RMQ_PART_OPENING; /* opened by the apply (open_new) */
	return p;
}

/* A closing partition of the same directory as p (a topic deleted and
 * made again by one change, a partition deleted and added back), or
 * NULL. */
static struct rmq_partition *same_dir_closing(struct rmq_bshard *bs, const struct rmq_partition *p)
{
	for (struct rmq_partition *c = bs->closing; c; c = c->closing_next)
		if (c->index == p->index && strcmp(c->topic_name, p->topic_name) == 0 && !c->successor)
			return c;
	return NULL;
}

/* Opens p, or, when its directory is still being closed (and maybe
 * removed), once that is done. */
static void open_new(struct rmq_partition *p, struct rmq_partition *const *closing, size_t n)
{
	for (size_t i = 0; i < n; i++) {
		struct rmq_partition *c = closing[i];
		if (c->index == p->index && strcmp(c->topic_name, p->topic_name) == 0 && !c->successor) {
			c->successor = p;
			return;
		}
	}
	struct rmq_partition *c = same_dir_closing(p->bs, p);
	if (c)
		c->successor = p;
	else
		start_open(p);
}

/* ---- closing ------------------------------------------------------------------ */

static int rm_entry(const char *path, const struct stat *st, int type, struct FTW *ftw)
{
	(void)st;
	(void)ftw;
	return (type == FTW_DP ? rmdir(path) : unlink(path)) < 0 ? -errno : 0;
}

/* Helper thread: syncs and closes the log, frees dedup, and removes a
 * deleted partition's directory (flat segment files, log.c), deepest
 * first, without following links. */
static void close_work(struct rmq_offload *job)
{
	struct rmq_partition *p = RMQ_CONTAINER_OF(job, struct rmq_partition, job);
	if (p->log) {
		int rc = rmq_log_close(p->log);
		if (rc < 0)
			rmq_warn("closing partition %s-%u: %s", p->topic_name, p->index, rmq_strerror(rc));
		p->log = NULL;
	}
	rmq_dedup_free(p->dedup);
	p->dedup = NULL;
	if (p->remove) {
		char dir[4096], owner[4200];
		rmq_partition_dir(dir, sizeof(dir), p->bs->b->cfg.data_dir, p->topic_name, p->index);
		if (nftw(dir, rm_entry, 8, FTW_DEPTH | FTW_PHYS) != 0 && errno != ENOENT)
			rmq_warn("could not remove %s: %s", dir, rmq_strerror(-errno));
		owner_path(owner, sizeof(owner), dir);
		if (unlink(owner) < 0 && errno != ENOENT)
			rmq_warn("could not remove %s: %s", owner, rmq_strerror(-errno));
	}
}

static void close_done(struct rmq_offload *job)
{
	struct rmq_partition *p = RMQ_CONTAINER_OF(job, struct rmq_partition, job);
	struct rmq_bshard *bs = p->bs;
	struct part_apply *a = p->apply;
	struct rmq_partition *next = p->successor;
	bs->nclosing--;
	free(p);
	if (next && next->close_wanted) {
		/* Gone before it opened (the node stops): close it as it is. */
		next->state = RMQ_PART_FAILED;
		start_close(next, next->remove);
	} else if (next) {
		start_open(next); /* its directory is free now */
	}
	apply_put(a);
}

/* Leaves the tables' world: no new work reaches p.  It is freed by the
 * cycle once quiet (step_closing). */
static void start_close(struct rmq_partition *p, bool remove)
{
	struct rmq_bshard *bs = p->bs;
	p->remove = remove;
	if (p->state == RMQ_PART_OPENING) {
		/* The helper owns it: close when the open is back. */
		p->close_wanted = true;
		return;
	}
	rmq_timer_cancel(bs->s, &p->retry);
	if (p->error)
		offline_note(p, 0); /* gone: no longer a failure to report */
	rmq_follow_drop(p);
	rmq_produce_fail_replicated(p);
	rmq_lead_drop(p);
	p->state = RMQ_PART_CLOSING;
	p->role = RMQ_ROLE_NONE;
	rmq_groups_partition_changed(p);
	if (p->log) {
		/* Long polls are answered, appends waiting for buffer space
		 * fail; what is buffered goes to the disk. */
		rmq_fetch_drop_waiters(p);
		rmq_produce_fail_backlog(p);
		rmq_log_flush(p->log);
	}
	p->closing_next = bs->closing;
	bs->closing = p;
	bs->nclosing++;
}

/* The cycle: partitions whose cold reads and log I/O are done go to a
 * helper thread to be closed (and removed). */
static void step_closing(struct rmq_bshard *bs)
{
	struct rmq_partition **pp = &bs->closing;
	while (*pp) {
		struct rmq_partition *p = *pp;
		bool quiet = !p->dirty && p->cold.reads == 0 && !p->owner_line && !p->follow_head &&
			     (!p->log || rmq_log_quiet(p->log));
		if (!quiet) {
			if (p->log && !rmq_log_idle(p->log))
				rmq_log_flush(p->log);
			pp = &p->closing_next;
			continue;
		}
		*pp = p->closing_next;
		if (p->log)
			rmq_log_detach(p->log);
		p->state = RMQ_PART_DELETING;
		p->job.work = close_work;
		p->job.done = close_done;
		rmq_offload(bs->b->offload, bs->s, &p->job);
	}
}

/* ---- tables -------------------------------------------------------------------- */

struct rmq_partition *rmq_partition_find(struct rmq_bshard *bs, const char *topic, uint32_t p,
					 int *code)
{
	long i = rmq_meta_find(bs->meta, topic);
	if (i < 0) {
		*code = EC_TOPIC_NOT_FOUND;
		return NULL;
	}
	if (p >= bs->meta->topics[i].partitions) {
		*code = EC_PARTITION_NOT_FOUND;
		return NULL;
	}
	struct rmq_partition *part = bs->local[i].parts ? bs->local[i].parts[p] : NULL;
	if (!part || part->state != RMQ_PART_ONLINE) {
		*code = EC_NOT_AVAILABLE;
		return NULL;
	}
	return part;
}

const char *rmq_partition_unavailable(struct rmq_bshard *bs, const char *topic, uint32_t p)
{
	long i = rmq_meta_find(bs->meta, topic);
	struct rmq_partition *part = i >= 0 && p < bs->meta->topics[i].partitions && bs->local[i].parts
					     ? bs->local[i].parts[p]
					     : NULL;
	if (!part)
		return "is not on this shard";
	switch (part->state) {
	case RMQ_PART_OPENING:
		return "is being opened (recovering its log): retry";
	case RMQ_PART_FAILED:
		return rmq_strerror(part->error);
	default:
		return "is closing";
	}
}

int rmq_route(struct rmq_bshard *bs, const char *topic, uint32_t p, int *code)
{
	return rmq_route_topic(bs, topic, p, code, NULL);
}

int rmq_route_topic(struct rmq_bshard *bs, const char *topic, uint32_t p, int *code,
		    const struct rmq_topic **found)
{
	long i = rmq_meta_find(bs->meta, topic);
	if (i < 0) {
		*code = EC_TOPIC_NOT_FOUND;
		return -1;
	}
	const struct rmq_topic *t = &bs->meta->topics[i];
	if (found)
		*found = t;
	if (p >= t->partitions) {
		*code = EC_PARTITION_NOT_FOUND;
		return -1;
	}
	uint32_t leader = rmq_cluster_leader_id(t, p);
	if (leader != bs->b->self) {
		*code = leader ? EC_NOT_LEADER : EC_LEADER_NOT_AVAILABLE;
		return -1;
	}
	if (!rmq_cluster_leads(bs, bs->meta, t, p)) {
		*code = EC_LEADER_NOT_AVAILABLE; /* until this process's registration */
		return -1;
	}
	return (int)rmq_partition_shard(topic, p, bs->nshards);
}

const char *rmq_route_error(struct rmq_bshard *bs, const char *topic, uint32_t p, int code,
			    char *buf, size_t len)
{
	long i = rmq_meta_find(bs->meta, topic);
	switch (code) {
	case EC_TOPIC_NOT_FOUND:
		snprintf(buf, len, "unknown topic '%s'", topic);
		break;
	case EC_PARTITION_NOT_FOUND:
		snprintf(buf, len, "partition %u of topic '%s' does not exist", p, topic);
		break;
	case EC_NOT_LEADER: {
		struct rmq_leader l = rmq_cluster_leader(bs, &bs->meta->topics[i], p);
		snprintf(buf, len, "this broker does not lead %s-%u: broker %s at %s does (leader epoch %u)",
			 topic, p, l.id_str, rmq_cluster_endpoint(bs, l.id), l.epoch);
		break;
	}
	case EC_LEADER_NOT_AVAILABLE:
		if (i >= 0 && rmq_cluster_leader_id(&bs->meta->topics[i], p) == bs->b->self)
			snprintf(buf, len, "this broker restarted: it leads %s-%u again once the "
					   "controller renews the leadership in a new epoch; retry",
				 topic, p);
		else
			snprintf(buf, len, "%s-%u has no leader now: its replicas' brokers are fenced "
					   "or gone; retry",
				 topic, p);
		break;
	default:
		snprintf(buf, len, "%s-%u cannot be served here", topic, p);
	}
	return buf;
}

void rmq_partition_mark_dirty(struct rmq_partition *p)
{
	if (p->dirty)
		return;
	p->dirty = true;
	p->dirty_next = p->bs->dirty;
	p->bs->dirty = p;
}

static bool same_gen(const struct rmq_topic *a, const struct rmq_topic *b, uint32_t p)
{
	return (a->parts ? a->parts[p].gen : 0) == (b->parts ? b->parts[p].gen : 0);
}

int rmq_partitions_apply(struct rmq_bshard *bs, struct rmq_meta *m, bool remove_gone,
			 void (*done)(void *arg), void *arg)
{
	struct rmq_tlocal *local = calloc(m->ntopics ? m->ntopics : 1, sizeof(*local));
	struct part_apply *a = calloc(1, sizeof(*a));
	struct rmq_meta *old = bs->meta;
	struct rmq_tlocal *old_local = bs->local;
	size_t nnew = 0, nold = 0, nfresh = 0, nclosing = 0;
	for (size_t i = 0; i < m->ntopics; i++)
		nnew += m->topics[i].partitions;
	for (size_t i = 0; old && i < old->ntopics; i++)
		nold += old->topics[i].partitions;
	/* Partitions made, and closed, by this apply: a new one opens once a
	 * closing one of its directory is closed. */
	struct rmq_partition **fresh = calloc(nnew + 1, sizeof(*fresh));
	struct rmq_partition **closing = calloc(nold + 1, sizeof(*closing));

	if (!local || !a || !fresh || !closing)
		goto nomem;
	for (size_t i = 0; i < m->ntopics; i++) {
		if (!(local[i].parts = calloc(m->topics[i].partitions, sizeof(*local[i].parts))))
			goto nomem;
	}
	/* Nothing can fail from here: the old tables are taken apart. */
	a->pending = 1;
	a->done = done;
	a->arg = arg;
	for (size_t i = 0; i < m->ntopics; i++) {
		const struct rmq_topic *t = &m->topics[i];
		long oi = old ? rmq_meta_find(old, t->name) : -1;
		bool same = oi >= 0 && strcmp(old->topics[oi].id, t->id) == 0;
		for (uint32_t p = 0; p < t->partitions; p++) {
			if (rmq_partition_shard(t->name, p, bs->nshards) != bs->id ||
			    !rmq_meta_is_replica(t, p, bs->b->self))
				continue;
			struct rmq_partition *part = NULL;
			/* The same making of the partition (a DeletePartitions and a
			 * CreatePartitions seen as one change make another). */
			if (same && p < old->topics[oi].partitions && old_local[oi].parts &&
			    same_gen(&old->topics[oi], t, p)) {
				part = old_local[oi].parts[p];
				old_local[oi].parts[p] = NULL; /* moved */
			}
			if (part) {
				part->topic = t;
				/* m, not bs->meta yet: whether this process
				 * registered is m's to say (cluster.h). */
				const uint32_t epoch = t->parts ? t->parts[p].leader_epoch : 0;
				if (part->state == RMQ_PART_ONLINE && epoch >= part->leader_epoch)
					rmq_partition_set_role(part,
							       rmq_cluster_leads(bs, m, t, p) ? RMQ_ROLE_LEADER
											: RMQ_ROLE_FOLLOWER,
							       epoch);
				/* AlterConfigs: the log takes the new limits. */
				if (part->log && part->state == RMQ_PART_ONLINE)
					rmq_log_set_limits(part->log, t->cfg.segment_bytes, t->cfg.segment_ms,
							   t->cfg.retention_bytes, t->cfg.retention_ms);
			} else {
				part = part_new(bs, t, p, a);
				if (!part)
					rmq_error("partition %s-%u: out of memory", t->name, p);
				else
					fresh[nfresh++] = part;
			}
			local[i].parts[p] = part;
		}
	}
	/* What is left in the old tables is gone. */
	for (size_t i = 0; old && i < old->ntopics; i++) {
		if (!old_local[i].parts)
			continue;
		long ni = rmq_meta_find(m, old->topics[i].name);
		bool gone = ni < 0 || strcmp(m->topics[ni].id, old->topics[i].id) != 0;
		for (uint32_t p = 0; p < old->topics[i].partitions; p++) {
			struct rmq_partition *part = old_local[i].parts[p];
			if (!part)
				continue;
			/* Its topic, or the partition (DeletePartitions), went, or
			 * this broker holds it no more (a reassignment moved it
			 * away, or one that would have brought it was cancelled). */
			bool deleted = gone || p >= m->topics[ni].partitions ||
				       !same_gen(&old->topics[i], &m->topics[ni], p) ||
				       !rmq_meta_is_replica(&m->topics[ni], p, bs->b->self);
			/* Its topic's record goes with the old snapshot. */
			part->topic = NULL;
			if (part->apply)
				settle(part); /* an earlier apply stops waiting for it */
			part->apply = a;
			a->pending++;
			start_close(part, remove_gone && deleted);
			closing[nclosing++] = part;
		}
		free(old_local[i].parts);
	}
	free(old_local);
	for (size_t i = 0; i < nfresh; i++)
		open_new(fresh[i], closing, nclosing);
	free(fresh);
	free(closing);
	bs->local = local;
	bs->meta = m;
	rmq_meta_ref(m);
	if (old)
		rmq_meta_unref(old);
	apply_put(a);
	return 0;
nomem:
	free(fresh);
	free(closing);
	for (size_t i = 0; local && i < m->ntopics; i++)
		free(local[i].parts);
	free(local);
	free(a);
	return -ENOMEM;
}

/* ---- the cycle ---------------------------------------------------------------------- */

static void retain_one(struct rmq_partition *p)
{
	int n = rmq_log_retain(p->log);
	if (n < 0)
		rmq_warn("retention of %s-%u: %s", p->topic_name, p->index, rmq_strerror(n));
}

void rmq_partitions_cycle(struct rmq_bshard *bs)
{
	struct rmq_partition *p = bs->dirty;
	bs->dirty = NULL;
	while (p) {
		struct rmq_partition *next = p->dirty_next;
		p->dirty = false;
		if (p->backlog_head)
			rmq_produce_retry_backlog(p);
		if (p->follow_room)
			rmq_follow_resume(p);
		rmq_log_flush(p->log);
		if (p->role == RMQ_ROLE_LEADER && p->nslots)
			rmq_lead_send(p);
		if (p->backlog_head)
			rmq_partition_mark_dirty(p); /* try again next cycle */
		if (p->state == RMQ_PART_ONLINE && rmq_log_stats(p->log)->rolls != p->rolls_retained) {
			/* Retention at each roll too, not only every
			 * --retention-check: in steady state one segment goes
			 * per roll, and the next segment reuses its file. */
			p->rolls_retained = rmq_log_stats(p->log)->rolls;
			retain_one(p);
		}
		p = next;
	}
	if (bs->closing)
		step_closing(bs);
}

void rmq_partitions_for_each(struct rmq_bshard *bs, void (*fn)(struct rmq_partition *p))
{
	for (size_t i = 0; i < bs->meta->ntopics; i++)
		for (uint32_t p = 0; bs->local[i].parts && p < bs->meta->topics[i].partitions; p++)
			if (bs->local[i].parts[p] && bs->local[i].parts[p]->state == RMQ_PART_ONLINE)
				fn(bs->local[i].parts[p]);
}

void rmq_partitions_count(const struct rmq_bshard *bs, uint64_t count[RMQ_PART_DELETING + 1])
{
	memset(count, 0, sizeof(uint64_t) * (RMQ_PART_DELETING + 1));
	for (size_t i = 0; i < bs->meta->ntopics; i++)
		for (uint32_t p = 0; bs->local[i].parts && p < bs->meta->topics[i].partitions; p++)
			if (bs->local[i].parts[p])
				count[bs->local[i].parts[p]->state]++;
	count[RMQ_PART_CLOSING] += bs->nclosing;
}

static void stopped_nothing(void *arg)
{
	(void)arg;
}

bool rmq_partitions_stopped(struct rmq_bshard *bs)
{
	if (!bs->stopping_parts) {
		/* An empty snapshot: every partition closes (files kept). */
		struct rmq_meta *none = rmq_meta_new(0);
		if (!none || rmq_partitions_apply(bs, none, false, stopped_nothing, NULL) < 0) {
			if (none) {
				free(none->topics);
				free(none);
			}
			return false; /* out of memory: try again next cycle */
		}
		bs->stopping_parts = true;
	}
	return bs->nclosing == 0 && rmq_offload_pending(bs->b->offload, bs->s) == 0;
}
