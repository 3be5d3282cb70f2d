/* SPDX-License-Identifier: Apache-2.0 */
/*
 * broker.c - shard start-up and shutdown, the partitions each shard owns,
 * metadata distribution, and the method table.
 *
 * Metadata changes (admin.c decides them on shard 0) reach every shard as
 * an "apply" message carrying the new snapshot.  Applying diffs the old
 * and new topic lists by name and topic id: partitions of new topics that
 * this shard owns are opened (recovering their logs), partitions of topics
 * that went away are closed and, when deleted, their directories removed;
 * config changes are applied to open logs by reopening nothing (retention
 * and roll settings are read from the snapshot on each check).
 *
 * Per cycle (the shard hook) every partition appended to since the last
 * cycle flushes its log once: that is the group commit of log.h.
 */
#include "broker/broker.h"

#include "broker/dedup.h"
#include "broker/group.h"
#include "core/error.h"
#include "core/log.h"
#include "core/assert.h"
#include "core/pbwire.h"
#include "core/util.h"

#include <errno.h>
#include <ftw.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

uint64_t rmq_wall_ms(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_REALTIME, &ts);
	return (uint64_t)ts.tv_sec * 1000 + (uint64_t)ts.tv_nsec / 1000000;
}

/* ---- partitions ------------------------------------------------------------ */

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

static void on_hw(void *arg, uint64_t hw)
{
	(void)hw;
	rmq_fetch_wake(arg);
}

static int replay_producer(void *arg, const uint8_t *entry, const struct rmq_batch_view *v)
{
	struct rmq_partition *p = arg;
	(void)entry;
	if (v->hdr.producer_id > 0 && v->hdr.base_sequence >= 0)
		rmq_dedup_replay(p->dedup, v->hdr.producer_id, v->hdr.producer_epoch,
				 v->hdr.base_sequence, v->hdr.record_count, v->hdr.base_offset);
	return 0;
}

/* Feeds the producer ids, epochs and sequences of the newest segment's
 * batches to dedup, so a retry across a restart is still recognised.
 * Reads headers only; the segment was just scanned by recovery. */
static void replay_producers(struct rmq_partition *p)
{
	(void)rmq_log_scan(p->log, rmq_log_active_base(p->log), replay_producer, p);
}

static struct rmq_partition *open_partition(struct rmq_bshard *bs, const struct rmq_topic *t,
					    uint32_t index)
{
	struct rmq_partition *p = calloc(1, sizeof(*p));
	struct rmq_log_config lc;
	char dir[4096];
	int rc;

	if (!p)
		return NULL;
	p->bs = bs;
	p->topic = t;
	p->index = index;
	snprintf(p->topic_name, sizeof(p->topic_name), "%s", t->name);
	snprintf(p->topic_id, sizeof(p->topic_id), "%s", t->id);
	rmq_partition_dir(dir, sizeof(dir), bs->b->cfg.data_dir, t->name, index);
	log_config_for(bs, t, &lc);
	rc = rmq_log_open(rmq_shard_io(bs->s), dir, &lc, &p->log);
	if (rc < 0) {
		rmq_error("cannot open partition %s-%u in %s: %s", t->name, index, dir, rmq_strerror(rc));
		free(p);
		return NULL;
	}
	rmq_log_set_hw_listener(p->log, on_hw, p);
	p->dedup = rmq_dedup_new();
	if (p->dedup)
		replay_producers(p);
	else
		rmq_warn("partition %s-%u: no memory for producer deduplication", t->name, index);
	return p;
}

static int rm_entry(const char *path, const struct stat *st, int type, struct FTW *ftw)
{
	(void)st;
	(void)ftw;
	return (type == FTW_DP ? rmdir(path) : unlink(path)) < 0 ? -errno : 0;
}

/* Removes a deleted partition's directory (flat segment files, log.c),
 * deepest first, without following links.  Returns 0 or a negated errno. */
static int rm_tree(const char *dir)
{
	int rc = nftw(dir, rm_entry, 8, FTW_DEPTH | FTW_PHYS);
	return rc < 0 ? (errno ? -errno : -EIO) : rc;
}

static void close_partition(struct rmq_bshard *bs, struct rmq_partition *p, bool remove)
{
	char dir[4096];

	rmq_fetch_drop_waiters(p);
	/* Appends waiting for buffer space fail as the partition goes. */
	rmq_produce_fail_backlog(p);
	int rc = rmq_log_close(p->log);
	if (rc < 0)
		rmq_warn("closing partition %s-%u: %s", p->topic_name, p->index, rmq_strerror(rc));
	rmq_dedup_free(p->dedup);
	if (remove) {
		rmq_partition_dir(dir, sizeof(dir), bs->b->cfg.data_dir, p->topic_name, p->index);
		if (rm_tree(dir) < 0)
			rmq_warn("could not remove %s", dir);
	}
	free(p);
}

struct rmq_partition *rmq_partition_find(struct rmq_bshard *bs, const char *topic, uint32_t p,
					 int *code)
{
	long i = rmq_meta_find(bs->meta, topic);
	if (i < 0) {
		*code = 9; /* TOPIC_NOT_FOUND */
		return NULL;
	}
	if (p >= bs->meta->topics[i].partitions) {
		*code = 10; /* PARTITION_NOT_FOUND */
		return NULL;
	}
	struct rmq_partition *part = bs->local[i].parts ? bs->local[i].parts[p] : NULL;
	if (!part)
		*code = 4; /* NOT_AVAILABLE */
	return part;
}

int rmq_route(struct rmq_bshard *bs, const char *topic, uint32_t p, int *code)
{
	long i = rmq_meta_find(bs->meta, topic);
	if (i < 0) {
		*code = 9;
		return -1;
	}
	if (p >= bs->meta->topics[i].partitions) {
		*code = 10;
		return -1;
	}
	return (int)rmq_partition_shard(topic, p, bs->nshards);
}

void rmq_partition_mark_dirty(struct rmq_partition *p)
{
	if (p->dirty)
		return;
	p->dirty = true;
	p->dirty_next = p->bs->dirty;
	p->bs->dirty = p;
}

/* Builds this shard's partition tables for snapshot m, reusing partitions
 * of `old` whose topic (same id) survives.  Partitions of topics not in m
 * are closed, their files removed when `remove_gone`. */
static int apply_meta(struct rmq_bshard *bs, struct rmq_meta *m, bool remove_gone)
{
	struct rmq_tlocal *local = calloc(m->ntopics ? m->ntopics : 1, sizeof(*local));
	struct rmq_meta *old = bs->meta;
	struct rmq_tlocal *old_local = bs->local;

	if (!local)
		return -ENOMEM;
	for (size_t i = 0; i < m->ntopics; i++) {
		const struct rmq_topic *t = &m->topics[i];
		long oi = old ? rmq_meta_find(old, t->name) : -1;
		bool same = oi >= 0 && strcmp(old->topics[oi].id, t->id) == 0;
		local[i].parts = calloc(t->partitions, sizeof(*local[i].parts));
		if (!local[i].parts)
			return -ENOMEM;
		for (uint32_t p = 0; p < t->partitions; p++) {
			if (rmq_partition_shard(t->name, p, bs->nshards) != bs->id)
				continue;
			struct rmq_partition *part = NULL;
			if (same && p < old->topics[oi].partitions && old_local[oi].parts) {
				part = old_local[oi].parts[p];
				old_local[oi].parts[p] = NULL; /* moved */
			}
			if (!part) {
				part = open_partition(bs, t, p);
			} else {
				/* AlterConfigs: the log takes the new limits. */
				rmq_log_set_limits(part->log, t->cfg.segment_bytes, t->cfg.segment_ms,
						   t->cfg.retention_bytes, t->cfg.retention_ms);
			}
			if (part)
				part->topic = t;
			local[i].parts[p] = part;
		}
	}
	/* What is left in the old tables is gone. */
	if (old) {
		for (size_t i = 0; i < old->ntopics; i++) {
			if (!old_local[i].parts)
				continue;
			long ni = rmq_meta_find(m, old->topics[i].name);
			bool deleted = ni < 0 || strcmp(m->topics[ni].id, old->topics[i].id) != 0;
			for (uint32_t p = 0; p < old->topics[i].partitions; p++) {
				if (old_local[i].parts[p])
					close_partition(bs, old_local[i].parts[p], remove_gone && deleted);
			}
			free(old_local[i].parts);
		}
		free(old_local);
	}
	/* The dirty list may name closed partitions: rebuild it lazily by
	 * flushing everything once. */
	bs->dirty = NULL;
	for (size_t i = 0; i < m->ntopics; i++)
		for (uint32_t p = 0; local[i].parts && p < m->topics[i].partitions; p++)
			if (local[i].parts[p]) {
				local[i].parts[p]->dirty = false;
				rmq_partition_mark_dirty(local[i].parts[p]);
			}
	bs->local = local;
	bs->meta = m;
	rmq_meta_ref(m);
	if (old)
		rmq_meta_unref(old);
	return 0;
}

/* Exposed to admin.c through this small wrapper. */
int rmq_broker_apply_meta(struct rmq_bshard *bs, struct rmq_meta *m);
int rmq_broker_apply_meta(struct rmq_bshard *bs, struct rmq_meta *m)
{
	struct rmq_meta *old = bs->meta;
	rmq_meta_ref(old);
	int rc = apply_meta(bs, m, true);
	if (rc == 0)
		rmq_groups_meta_changed(bs, old, m);
	rmq_meta_unref(old);
	return rc;
}

/* ---- the cycle ----------------------------------------------------------------- */

static void retain_one(struct rmq_partition *p);

static void before_wait(struct rmq_shard *s, void *arg)
{
	struct rmq_bshard *bs = arg;
	(void)s;
	struct rmq_partition *p = bs->dirty;
	bs->dirty = NULL;
	while (p) {
		struct rmq_partition *next = p->dirty_next;
		p->dirty = false;
		if (p->backlog_head)
			rmq_produce_retry_backlog(p);
		rmq_log_flush(p->log);
		if (p->backlog_head)
			rmq_partition_mark_dirty(p); /* try again next cycle */
		if (rmq_log_stats(p->log)->rolls != p->rolls_retained) {
			/* Retention at each roll too, not only every
			 * --retention-check: in steady state one segment goes
			 * per roll, and the next segment reuses its file. */
			p->rolls_retained = rmq_log_stats(p->log)->rolls;
			retain_one(p);
		}
		p = next;
	}
	rmq_groups_flush(bs);
}

static void for_each_partition(struct rmq_bshard *bs, void (*fn)(struct rmq_partition *p))
{
	for (size_t i = 0; i < bs->meta->ntopics; i++)
		for (uint32_t p = 0; bs->local[i].parts && p < bs->meta->topics[i].partitions; p++)
			if (bs->local[i].parts[p])
				fn(bs->local[i].parts[p]);
}

static void retain_one(struct rmq_partition *p)
{
	int n = rmq_log_retain(p->log);
	if (n < 0)
		rmq_warn("retention of %s-%u: %s", p->topic_name, p->index, rmq_strerror(n));
}

static void sync_one(struct rmq_partition *p)
{
	rmq_log_sync_tick(p->log);
	rmq_partition_mark_dirty(p);
}

static void on_retention_timer(struct rmq_timer *t)
{
	struct rmq_bshard *bs = RMQ_CONTAINER_OF(t, struct rmq_bshard, retention_timer);
	for_each_partition(bs, retain_one);
	rmq_groups_retain(bs);
	rmq_timer_start(bs->s, t, rmq_now_ns() + bs->b->cfg.retention_check_ns, on_retention_timer);
}

static void on_fsync_timer(struct rmq_timer *t)
{
	struct rmq_bshard *bs = RMQ_CONTAINER_OF(t, struct rmq_bshard, fsync_timer);
	for_each_partition(bs, sync_one);
	rmq_timer_start(bs->s, t, rmq_now_ns() + bs->b->cfg.fsync_interval_ns, on_fsync_timer);
}

/* ---- start and stop ------------------------------------------------------------- */

static int shard_init(struct rmq_shard *s, void *arg)
{
	struct rmq_broker *b = arg;
	struct rmq_bshard *bs = calloc(1, sizeof(*bs));
	int rc;

	if (!bs)
		return -ENOMEM;
	bs->b = b;
	bs->s = s;
	bs->id = rmq_shard_id(s);
	bs->nshards = rmq_shard_count(s);
	rmq_shard_set_data(s, bs);
	/* The shard's write buffers, shared by its partitions (storage/
	 * wpool.h): 8 x --write-buffer, a partition holding at most one. */
	struct rmq_wpool_config wc;
	rmq_wpool_config_default(&wc);
	uint64_t chunks = 8 * b->cfg.write_buffer_bytes / wc.chunk_bytes;
	wc.chunks = chunks < 16 ? 16 : chunks > 65536 ? 65536 : (uint32_t)chunks;
	rc = rmq_wpool_create(rmq_shard_io(s), &wc, &bs->wpool);
	if (rc < 0)
		return rc;
	rc = apply_meta(bs, b->initial_meta, false);
	if (rc < 0)
		return rc;
	rc = rmq_groups_init(bs);
	if (rc < 0) {
		rmq_error("cannot load consumer groups: %s", rmq_strerror(rc));
		return rc;
	}
	rmq_shard_add_hook(s, before_wait, bs);
	rmq_timer_start(s, &bs->retention_timer, rmq_now_ns() + b->cfg.retention_check_ns,
			on_retention_timer);
	if (b->cfg.fsync == RMQ_FSYNC_INTERVAL)
		rmq_timer_start(s, &bs->fsync_timer, rmq_now_ns() + b->cfg.fsync_interval_ns,
				on_fsync_timer);

	/* Shard 0 binds first so that port 0 resolves to one port for all. */
	struct rmq_net_config net = b->cfg.net;
	if (bs->id != 0) {
		while (atomic_load(&b->port) == 0 && !rmq_runtime_stopping(b->rt))
			sched_yield();
		net.port = atomic_load(&b->port);
	}
	rc = rmq_server_start(s, &net, rmq_broker_methods, rmq_broker_nmethods, bs, &bs->srv);
	if (rc < 0) {
		rmq_error("cannot listen on %s:%u: %s", net.host, net.port, rmq_strerror(rc));
		if (bs->id == 0)
			atomic_store(&b->port, 1); /* release the others; run stops */
		return rc;
	}
	if (bs->id == 0) {
		atomic_store(&b->port, rmq_server_port(bs->srv));
		rmq_info("rmqd %s serving on %s:%u with %u shards, data dir %s, fsync=%s, %zu topics",
			 RMQ_VERSION, net.host, rmq_server_port(bs->srv), bs->nshards, b->cfg.data_dir,
			 b->fsync_name ? b->fsync_name : "always", bs->meta->ntopics);
	}
	return 0;
}

static bool shard_drained(struct rmq_shard *s, void *arg)
{
	struct rmq_bshard *bs = rmq_shard_data(s);
	(void)arg;
	if (!bs || !bs->srv)
		return true;
	static _Thread_local uint64_t stop_began;
	if (stop_began == 0) {
		stop_began = rmq_now_ns();
		atomic_store(&bs->b->serving, 0);
		rmq_server_shutdown(bs->srv);
	}
	/* In-flight calls get a grace period to finish, then are cancelled. */
	bool force = rmq_now_ns() - stop_began > 5ULL * 1000 * 1000 * 1000;
	if (!rmq_groups_drained(bs) || !rmq_server_drained(bs->srv, force))
		return false;
	/* Appends still buffered reach the disk before the logs close. */
	for (size_t i = 0; i < bs->meta->ntopics; i++)
		for (uint32_t p = 0; bs->local[i].parts && p < bs->meta->topics[i].partitions; p++)
			if (bs->local[i].parts[p] && !rmq_log_idle(bs->local[i].parts[p]->log))
				return false;
	return true;
}

static void shard_fini(struct rmq_shard *s, void *arg)
{
	struct rmq_bshard *bs = rmq_shard_data(s);
	(void)arg;
	if (!bs)
		return;
	rmq_timer_cancel(s, &bs->retention_timer);
	rmq_timer_cancel(s, &bs->fsync_timer);
	if (bs->srv) {
		rmq_server_drained(bs->srv, true);
		rmq_server_destroy(bs->srv);
	}
	rmq_groups_fini(bs);
	if (bs->meta) {
		for (size_t i = 0; i < bs->meta->ntopics; i++) {
			for (uint32_t p = 0; bs->local[i].parts && p < bs->meta->topics[i].partitions; p++)
				if (bs->local[i].parts[p])
					close_partition(bs, bs->local[i].parts[p], false);
			free(bs->local[i].parts);
		}
		free(bs->local);
		rmq_meta_unref(bs->meta);
	}
	rmq_wpool_destroy(bs->wpool);
	rmq_shard_set_data(s, NULL);
	free(bs);
}

static void build_methods(void);

int rmq_broker_run(struct rmq_broker *b)
{
	struct rmq_runtime_config rc_cfg = {
		.shards = b->cfg.shards,
		.ring_entries = 4096,
		.fixed_buffers = 256,
		.xshard_capacity = 8192,
		.timers_max = 1u << 17,
		.pin = b->cfg.pin,
		.poll_ns = b->cfg.poll_ns,
	};
	int rc;

	if (mkdir(b->cfg.data_dir, 0755) < 0 && errno != EEXIST) {
		rc = -errno;
		rmq_error("cannot create data directory %s: %s", b->cfg.data_dir, rmq_strerror(rc));
		return rc;
	}
	rc = rmq_meta_load(b->cfg.data_dir, &b->cfg.topic_defaults, &b->initial_meta);
	if (rc < 0) {
		rmq_error("cannot load topic metadata from %s/meta: %s", b->cfg.data_dir,
			  rmq_strerror(rc));
		return rc;
	}
	rmq_meta_ref(b->initial_meta);
	rc = rmq_groups_layout(b->cfg.data_dir, &b->cfg.offsets_partitions);
	if (rc < 0) {
		if (rc != RMQ_EBADFLAG && rc != RMQ_ECORRUPT)
			rmq_error("cannot read %s/meta/offsets-partitions: %s", b->cfg.data_dir,
				  rmq_strerror(rc));
		rmq_meta_unref(b->initial_meta);
		return rc;
	}
	b->started_ms = rmq_wall_ms();
	rc = rmq_runtime_create(&rc_cfg, &b->rt);
	if (rc < 0) {
		rmq_meta_unref(b->initial_meta);
		return rc;
	}
	rmq_runtime_on_stop(b->rt, shard_drained);
	atomic_store(&b->serving, 1);
	build_methods();
	rc = rmq_runtime_run(b->rt, shard_init, shard_fini, b);
	rmq_runtime_destroy(b->rt);
	b->rt = NULL;
	rmq_meta_unref(b->initial_meta);
	return rc;
}

/* ---- the method table ------------------------------------------------------------ */

#define U RMQ_GRPC_UNARY
#define SS RMQ_GRPC_SERVER_STREAM
#define CS RMQ_GRPC_CLIENT_STREAM
#define BI RMQ_GRPC_BIDI
#define NS(path, kind) {{path, kind, rmq_not_served, NULL, NULL, NULL}, 0}

/*
 * Each route is a method plus the field number of its request's
 * rustmq.common.ApiVersion (0: not checked).  The served table is built
 * from the routes with every on_message replaced by versioned(), which
 * refuses a major version this node does not speak before the handler
 * runs, so no handler has to remember to.
 */
struct route {
	struct rmq_grpc_method m;
	uint8_t version_field;
};

static const struct route routes[] = {
	/* ProducerService */
	{{"/rustmq.client.ProducerService/Produce", U, rmq_produce_unary, NULL, NULL, NULL}, 1},
	{{"/rustmq.client.ProducerService/ProduceBatch", U, rmq_produce_batch, NULL, NULL, NULL}, 1},
	{{"/rustmq.client.ProducerService/ProduceStream", BI, rmq_produce_stream_msg,
	 rmq_produce_stream_half_close, rmq_produce_cancel, NULL}, 1},
	NS("/rustmq.client.ProducerService/InitTransaction", U),
	NS("/rustmq.client.ProducerService/CommitTransaction", U),
	NS("/rustmq.client.ProducerService/AbortTransaction", U),
	/* ConsumerService */
	{{"/rustmq.client.ConsumerService/Fetch", U, rmq_fetch_unary, NULL, rmq_fetch_cancel, NULL}, 1},
	{{"/rustmq.client.ConsumerService/FetchBatch", U, rmq_fetch_batch, NULL, rmq_fetch_cancel, NULL}, 1},
	{{"/rustmq.client.ConsumerService/Subscribe", SS, rmq_fetch_subscribe, NULL, rmq_fetch_cancel,
	 rmq_fetch_drain}, 1},
	{{"/rustmq.client.ConsumerService/ListOffsets", U, rmq_list_offsets, NULL, NULL, NULL}, 1},
	{{"/rustmq.client.ConsumerService/JoinGroup", U, rmq_group_join, NULL, NULL, NULL}, 1},
	{{"/rustmq.client.ConsumerService/LeaveGroup", U, rmq_group_leave, NULL, NULL, NULL}, 1},
	{{"/rustmq.client.ConsumerService/CommitOffsets", U, rmq_group_commit, NULL, NULL, NULL}, 1},
	{{"/rustmq.client.ConsumerService/Heartbeat", U, rmq_group_heartbeat, NULL, NULL, NULL}, 1},
	{{"/rustmq.client.ConsumerService/SyncGroup", U, rmq_group_sync, NULL, NULL, NULL}, 1},
	{{"/rustmq.client.ConsumerService/FetchOffsets", U, rmq_group_fetch_offsets, NULL, NULL, NULL}, 1},
	/* MetadataService, AuthService */
	{{"/rustmq.client.MetadataService/GetTopicMetadata", U, rmq_md_topic_metadata, NULL, NULL, NULL}, 1},
	{{"/rustmq.client.MetadataService/ListTopics", U, rmq_md_list_topics, NULL, NULL, NULL}, 1},
	{{"/rustmq.client.MetadataService/GetBrokerList", U, rmq_md_broker_list, NULL, NULL, NULL}, 1},
	{{"/rustmq.client.MetadataService/GetPartitionLeader", U, rmq_md_partition_leader, NULL, NULL, NULL}, 1},
	{{"/rustmq.client.MetadataService/GetClusterMetadata", U, rmq_md_cluster_metadata, NULL, NULL, NULL}, 1},
	{{"/rustmq.client.MetadataService/FindCoordinator", U, rmq_md_find_coordinator, NULL, NULL, NULL}, 1},
	{{"/rustmq.client.AuthService/Authenticate", U, rmq_auth_authenticate, NULL, NULL, NULL}, 3},
	/* AdminService */
	{{"/rustmq.controller.AdminService/CreateTopics", U, rmq_admin_create_topics, NULL, NULL, NULL}, 1},
	{{"/rustmq.controller.AdminService/DeleteTopics", U, rmq_admin_delete_topics, NULL, NULL, NULL}, 1},
	{{"/rustmq.controller.AdminService/ListTopics", U, rmq_admin_list_topics, NULL, NULL, NULL}, 1},
	{{"/rustmq.controller.AdminService/DescribeTopics", U, rmq_admin_describe_topics, NULL, NULL, NULL}, 1},
	{{"/rustmq.controller.AdminService/AlterConfigs", U, rmq_admin_alter_configs, NULL, NULL, NULL}, 1},
	{{"/rustmq.controller.AdminService/DescribeConfigs", U, rmq_admin_describe_configs, NULL, NULL, NULL}, 1},
	{{"/rustmq.controller.AdminService/DescribeCluster", U, rmq_admin_describe_cluster, NULL, NULL, NULL}, 1},
	{{"/rustmq.controller.AdminService/ListGroups", U, rmq_group_list, NULL, NULL, NULL}, 1},
	{{"/rustmq.controller.AdminService/DescribeGroups", U, rmq_group_describe, NULL, NULL, NULL}, 1},
	{{"/rustmq.controller.AdminService/DeleteGroups", U, rmq_group_delete, NULL, NULL, NULL}, 1},
	{{"/rustmq.controller.AdminService/ResetGroupOffsets", U, rmq_group_reset, NULL, NULL, NULL}, 1},
	NS("/rustmq.controller.AdminService/ElectLeaders", U),
	/* Health */
	{{"/grpc.health.v1.Health/Check", U, rmq_health_check, NULL, NULL, NULL}, 0},
	{{"/grpc.health.v1.Health/Watch", SS, rmq_health_watch, NULL, rmq_health_watch_cancel, NULL}, 0},
	{{"/rustmq.broker.BrokerHealthService/HealthCheck", U, rmq_broker_health, NULL, NULL, NULL}, 1},
	{{"/rustmq.broker.BrokerHealthService/GetMetrics", U, rmq_broker_metrics, NULL, NULL, NULL}, 4},
	/* Capabilities of a cluster (replication, Raft) and streaming. */
	NS("/rustmq.broker.BrokerReplicationService/ReplicateData", U),
	NS("/rustmq.broker.BrokerReplicationService/ReplicateStream", BI),
	NS("/rustmq.broker.BrokerReplicationService/SendHeartbeat", U),
	NS("/rustmq.broker.BrokerReplicationService/TransferLeadership", U),
	NS("/rustmq.broker.BrokerReplicationService/GetLeaderEpoch", U),
	NS("/rustmq.broker.BrokerReplicationService/UpdateISR", U),
	NS("/rustmq.broker.BrokerReplicationService/GetISR", U),
	NS("/rustmq.broker.PartitionManagementService/AssignPartition", U),
	NS("/rustmq.broker.PartitionManagementService/RemovePartition", U),
	NS("/rustmq.broker.PartitionManagementService/MigratePartition", SS),
	NS("/rustmq.broker.PartitionManagementService/GetPartitionState", U),
	NS("/rustmq.broker.PartitionManagementService/UpdatePartitionConfig", U),
	NS("/rustmq.controller.ControllerRaftService/RequestVote", U),
	NS("/rustmq.controller.ControllerRaftService/AppendEntries", U),
	NS("/rustmq.controller.ControllerRaftService/InstallSnapshot", CS),
	NS("/rustmq.controller.ControllerRaftService/PreVote", U),
	NS("/rustmq.controller.ControllerRaftService/TimeoutNow", U),
	NS("/rustmq.controller.ControllerRaftService/AddPeer", U),
	NS("/rustmq.controller.ControllerRaftService/RemovePeer", U),
	NS("/rustmq.controller.ControllerRaftService/GetConfiguration", U),
	NS("/rustmq.controller.ControllerBrokerService/RegisterBroker", U),
	NS("/rustmq.controller.ControllerBrokerService/UnregisterBroker", U),
	NS("/rustmq.controller.ControllerBrokerService/HeartbeatBroker", U),
	NS("/rustmq.controller.ControllerBrokerService/CreatePartitions", U),
	NS("/rustmq.controller.ControllerBrokerService/DeletePartitions", U),
	NS("/rustmq.controller.ControllerBrokerService/ReassignPartitions", SS),
	NS("/rustmq.controller.ControllerBrokerService/UpdateClusterConfig", U),
	NS("/rustmq.controller.ControllerBrokerService/GetClusterConfig", U),
	NS("/rustmq.streaming.StreamingService/InteractiveQuery", BI),
	NS("/rustmq.streaming.StreamingService/Subscribe", SS),
	NS("/rustmq.streaming.StreamingService/BulkLoad", CS),
};

#define NROUTES (sizeof(routes) / sizeof(routes[0]))

struct rmq_grpc_method rmq_broker_methods[NROUTES];
const size_t rmq_broker_nmethods = NROUTES;

/* The API major version this node speaks. */
#define RMQ_API_MAJOR 1

/* Reads ApiVersion.major from field `field` of an encoded request; 0 when
 * absent (an unversioned request is taken as the current version). */
static uint64_t api_major(const uint8_t *msg, size_t len, uint32_t field)
{
	const uint8_t *p = msg, *end = msg + len;
	while (p < end) {
		uint32_t f, w;
		uint64_t num = 0;
		const uint8_t *val = NULL;
		size_t vlen = 0;
		size_t n = rmq_pb_next(p, end, &f, &w, &num, &val, &vlen);
		if (n == 0)
			return 0; /* malformed: the handler's decoder says so */
		if (f == field && w == RMQ_PB_LEN) {
			const uint8_t *q = val, *qe = val + vlen;
			while (q < qe) {
				uint32_t f2, w2;
				uint64_t v2 = 0;
				const uint8_t *x;
				size_t xl;
				size_t k = rmq_pb_next(q, qe, &f2, &w2, &v2, &x, &xl);
				if (k == 0)
					return 0;
				if (f2 == 1 && w2 == RMQ_PB_VARINT)
					return v2;
				q += k;
			}
			return 0;
		}
		p += n;
	}
	return 0;
}

static void versioned(struct rmq_call *c, const uint8_t *msg, size_t len)
{
	size_t i = (size_t)(rmq_call_method(c) - rmq_broker_methods);
	RMQ_ASSERT(i < NROUTES);
	uint64_t major = api_major(msg, len, routes[i].version_field);
	if (major > RMQ_API_MAJOR) {
		/* An application error (ErrorCode UNSUPPORTED_VERSION) in the
		 * method's own response: every response of the protocol keeps
		 * error_code and error_message at fixed fields (1 and 2; the
		 * authentication response at 4 and 5). */
		char text[160];
		uint8_t out[256];
		int n = snprintf(text, sizeof(text),
				 "API major version %llu is not spoken by this node (it speaks %d.x)",
				 (unsigned long long)major, RMQ_API_MAJOR);
		if (routes[i].version_field == 4) {
			/* MetricsResponse has no error field (the design's message). */
			rmq_call_finishf(c, RMQ_GRPC_FAILED_PRECONDITION, "UNSUPPORTED_VERSION: %s", text);
			return;
		}
		uint32_t ec = routes[i].version_field == 3 ? 4 : 1;
		size_t k = rmq_pb_put_uint(out, ec, 33 /* UNSUPPORTED_VERSION */);
		k += rmq_pb_put_len(out + k, ec + 1, (size_t)n);
		memcpy(out + k, text, (size_t)n);
		k += (size_t)n;
		if (rmq_call_send(c, out, k) == 0)
			rmq_call_finish(c, RMQ_GRPC_OK, NULL);
		return;
	}
	routes[i].m.on_message(c, msg, len);
}

static void build_methods(void)
{
	for (size_t i = 0; i < NROUTES; i++) {
		rmq_broker_methods[i] = routes[i].m;
		if (routes[i].version_field)
			rmq_broker_methods[i].on_message = versioned;
	}
}
