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

#include "broker/auth.h"
#include "broker/quota.h"
#include "broker/cluster.h"
#include "common/metadata.pb-c.h"
#include "broker/isr.h"
#include "broker/lead.h"

#include "broker/controller.h"
#include "broker/ctrl_wire.h"
#include "broker/dedup.h"
#include "broker/forward.h"
#include "broker/group.h"
#include "broker/heartbeat.h"
#include "broker/methods.h"
#include "common/errors.pb-c.h"
#include "core/error.h"
#include "core/log.h"
#include "core/assert.h"
#include "core/pbwire.h"
#include "core/util.h"
#include "net/http1.h"

#include <errno.h>
#include <ftw.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

/* errcode.h follows proto/common/errors.proto: its ends and a middle. */
_Static_assert(EC_UNKNOWN == (int)RUSTMQ__COMMON__ERROR_CODE__UNKNOWN_ERROR, "errcode.h");
_Static_assert(EC_STORAGE_ERROR == (int)RUSTMQ__COMMON__ERROR_CODE__STORAGE_ERROR, "errcode.h");
_Static_assert(EC_INVALID_OFFSET == (int)RUSTMQ__COMMON__ERROR_CODE__INVALID_OFFSET, "errcode.h");

uint64_t rmq_wall_ms(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_REALTIME, &ts);
	return (uint64_t)ts.tv_sec * 1000 + (uint64_t)ts.tv_nsec / 1000000;
}

/* ---- metadata ---------------------------------------------------------------- */

struct apply_ctx {
	struct rmq_bshard *bs;
	struct rmq_meta *old;
	void (*done)(void *arg);
	void *arg;
};

static void applied(void *arg)
{
	struct apply_ctx *c = arg;
	rmq_groups_meta_changed(c->bs, c->old, c->bs->meta);
	rmq_meta_unref(c->old);
	void (*done)(void *) = c->done;
	void *darg = c->arg;
	free(c);
	done(darg);
}

int rmq_broker_apply_meta(struct rmq_bshard *bs, struct rmq_meta *m, void (*done)(void *arg),
			  void *arg)
{
	struct apply_ctx *c = malloc(sizeof(*c));
	if (!c)
		return -ENOMEM;
	*c = (struct apply_ctx){bs, bs->meta, done, arg};
	rmq_meta_ref(c->old);
	int rc = rmq_partitions_apply(bs, m, true, applied, c);
	if (rc < 0) {
		rmq_meta_unref(c->old);
		free(c);
	}
	return rc;
}

/* ---- the cycle ----------------------------------------------------------------- */

/* While more messages than one cross-shard queue holds wait in this
 * shard's backlog (core/shard.h), its connections stop reading: the work
 * already taken in is what keeps the other shards busy. */
#define XSHARD_CAPACITY 8192u
#define BACKLOG_PAUSE 1u
#define BACKLOG_HIGH XSHARD_CAPACITY
#define BACKLOG_LOW (BACKLOG_HIGH / 4)

static void before_wait(struct rmq_shard *s, void *arg)
{
	struct rmq_bshard *bs = arg;
	rmq_partitions_cycle(bs);
	rmq_groups_flush(bs);
	rmq_lead_flush(bs); /* before the clients' hooks (added later) send it */
	size_t backlog = rmq_shard_backlog(s);
	if (bs->srv && !bs->backlog_paused && backlog > BACKLOG_HIGH) {
		bs->backlog_paused = true;
		bs->backlog_pauses++;
		rmq_server_pause_reads(bs->srv, BACKLOG_PAUSE);
	} else if (bs->backlog_paused && backlog <= BACKLOG_LOW) {
		bs->backlog_paused = false;
		rmq_server_resume_reads(bs->srv, BACKLOG_PAUSE);
	}
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
	rmq_partitions_for_each(bs, retain_one);
	rmq_groups_retain(bs);
	rmq_timer_start(bs->s, t, rmq_now_ns() + bs->b->cfg.retention_check_ns, on_retention_timer);
}

static void on_fsync_timer(struct rmq_timer *t)
{
	struct rmq_bshard *bs = RMQ_CONTAINER_OF(t, struct rmq_bshard, fsync_timer);
	rmq_partitions_for_each(bs, sync_one);
	rmq_timer_start(bs->s, t, rmq_now_ns() + bs->b->cfg.fsync_interval_ns, on_fsync_timer);
}

/* ---- start and stop ------------------------------------------------------------- */

/*
 * Start-up, without waiting anywhere: every shard opens its partitions
 * (helper threads recover the logs in parallel) and, once they are
 * open, posts its ready message to shard 0.  When every shard is ready,
 * shard 0 binds the listening address (port 0 resolves to one port for
 * all), prints the start-up line and sends each ready message back with
 * the port; each shard then listens too.  So when the line is printed
 * every partition serves.
 */
static void fail_start(struct rmq_bshard *bs, int rc)
{
	int zero = 0;
	atomic_compare_exchange_strong(&bs->b->start_rc, &zero, rc);
	rmq_runtime_stop(bs->b->rt);
}

static int listen_here(struct rmq_bshard *bs)
{
	struct rmq_broker *b = bs->b;
	struct rmq_net_config net = b->cfg.net;
	net.authorize = rmq_auth_authorize; /* tokens, principals, ACLs (auth.h) */
	if (bs->id != 0)
		net.port = atomic_load(&b->port);
	int rc = rmq_server_start(bs->s, &net, rmq_broker_methods, rmq_broker_nmethods, bs, &bs->srv);
	if (rc < 0) {
		rmq_error("cannot listen on %s:%u: %s", net.host, net.port, rmq_strerror(rc));
		fail_start(bs, rc);
	}
	return rc;
}

static void listen_msg(struct rmq_xmsg *m)
{
	struct rmq_bshard *bs = RMQ_CONTAINER_OF(m, struct rmq_bshard, ready_msg);
	if (!rmq_runtime_stopping(bs->b->rt))
		(void)listen_here(bs);
}

static void ready_msg(struct rmq_xmsg *m)
{
	struct rmq_bshard *bs = rmq_bshard_current(); /* shard 0 */
	struct rmq_broker *b = bs->b;
	m->next = bs->ready_list; /* sent back below, with the port */
	bs->ready_list = m;
	if (++bs->nready < bs->nshards || rmq_runtime_stopping(b->rt))
		return;
	/* Every shard runs with the recovered topics: the controller takes
	 * over from there. */
	int rc = rmq_ctrl_start(bs);
	if (rc == 0)
		rc = rmq_heartbeat_start(bs);
	if (rc < 0) {
		rmq_error("cannot start the controller: %s", rmq_strerror(rc));
		atomic_store(&b->start_rc, rc);
		rmq_runtime_stop(b->rt);
		return;
	}
	if (listen_here(bs) < 0)
		return;
	atomic_store(&b->port, rmq_server_port(bs->srv));
	if (b->cfg.metrics_host) {
		uint16_t mport = 0;
		rc = rmq_http1_start(bs->s, b->cfg.metrics_host, b->cfg.metrics_port,
				     rmq_metrics_http, bs, &bs->metrics, &mport);
		if (rc < 0) {
			rmq_error("--metrics-listen: cannot listen on %s:%u: %s", b->cfg.metrics_host,
				  b->cfg.metrics_port, rmq_strerror(rc));
			fail_start(bs, rc);
			return;
		}
		rmq_info("Prometheus metrics on http://%s:%u/metrics", b->cfg.metrics_host, mport);
	}
	rmq_info("rmqd %s serving on %s:%u with %u shards, data dir %s, fsync=%s, %zu topics",
		 RMQ_VERSION, b->cfg.net.host, rmq_server_port(bs->srv), bs->nshards, b->cfg.data_dir,
		 b->fsync_name ? b->fsync_name : "always", bs->meta->ntopics);
	for (struct rmq_xmsg *r = bs->ready_list, *next; r; r = next) {
		next = r->next;
		if (r->from == 0)
			continue; /* shard 0's own: it listens already */
		r->fn = listen_msg;
		rmq_shard_post(bs->s, r->from, r);
	}
}

static void initial_applied(void *arg)
{
	struct rmq_bshard *bs = arg;
	bs->ready_msg.fn = ready_msg;
	rmq_shard_post(bs->s, 0, &bs->ready_msg);
}

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
	bs->cold.ahead_max = b->cfg.read_ahead_bytes;
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
	/* The logs open on helper threads; the rest of the start-up follows
	 * from initial_applied. */
	return rmq_partitions_apply(bs, b->initial_meta, false, initial_applied, bs);
}

/* How long a stopping broker waits for the controller to move its
 * leaderships (usually a heartbeat or two). */
#define HANDOFF_NS (5ULL * 1000 * 1000 * 1000)

/* Whether this broker leads a partition that another running in-sync
 * replica could lead. */
static bool has_handoff(const struct rmq_bshard *bs)
{
	const struct rmq_meta *m = bs->meta;
	for (size_t t = 0; m && t < m->ntopics; t++) {
		for (uint32_t p = 0; m->topics[t].parts && p < m->topics[t].partitions; p++) {
			const struct rmq_passign *pa = &m->topics[t].parts[p];
			if (pa->leader != bs->b->self)
				continue;
			for (uint32_t i = 0; i < pa->nisr; i++) {
				const struct rmq_broker_rec *r = rmq_meta_broker(m, pa->isr[i]);
				if (pa->isr[i] != bs->b->self && r &&
				    r->state == RUSTMQ__COMMON__BROKER_STATE__BROKER_RUNNING)
					return true;
			}
		}
	}
	return false;
}

static bool shard_drained(struct rmq_shard *s, void *arg)
{
	struct rmq_bshard *bs = rmq_shard_data(s);
	(void)arg;
	if (!bs)
		return true;
	static _Thread_local uint64_t handoff_began, stop_began;
	uint64_t now = rmq_now_ns();
	if (handoff_began == 0) {
		/* Controlled shutdown: with other brokers to take them, this
		 * broker's leaderships move first (the controller fences it at
		 * its request, heartbeat.c) while it goes on serving, so that
		 * clients find the new leaders before it is gone. */
		handoff_began = now;
		struct rmq_quorum q;
		rmq_cluster_quorum(bs, &q);
		int idle = 0;
		if (q.leader && has_handoff(bs))
			atomic_compare_exchange_strong(&bs->b->handing_off, &idle, 1);
		if (bs->id == 0 && atomic_load(&bs->b->handing_off) == 1)
			rmq_heartbeat_kick(bs);
	}
	if (atomic_load(&bs->b->handing_off) == 1 && now - handoff_began < HANDOFF_NS)
		return false;
	if (stop_began == 0) {
		stop_began = now;
		atomic_store(&bs->b->serving, 0);
		if (bs->srv)
			rmq_server_shutdown(bs->srv);
	}
	/* In-flight calls get a grace period to finish, then are cancelled. */
	bool force = now - stop_began > 5ULL * 1000 * 1000 * 1000;
	bool groups = rmq_groups_drained(bs);
	bool calls = groups && (!bs->srv || rmq_server_drained(bs->srv, force)) &&
		     (!bs->metrics || rmq_http1_stop(bs->metrics));
	bool parts = calls && rmq_partitions_stopped(bs);
	/* An operator waiting for the stop is told what it waits for. */
	static _Thread_local uint64_t last_said;
	if (!parts && now - stop_began > 10ULL * 1000 * 1000 * 1000 &&
	    now - last_said > 10ULL * 1000 * 1000 * 1000) {
		last_said = now;
		rmq_warn("stopping for %" PRIu64 " s: waiting for %s (%" PRIu64 " calls held, %u "
			 "partitions closing)",
			 (uint64_t)((now - stop_began) / 1000000000ULL),
			 !groups ? "consumer group writes" : !calls ? "calls to end" : "partitions to close",
			 bs->srv ? (uint64_t)rmq_server_stats(bs->srv)->calls : 0, bs->nclosing);
	}
	return parts;
}

static void shard_fini(struct rmq_shard *s, void *arg)
{
	struct rmq_bshard *bs = rmq_shard_data(s);
	(void)arg;
	if (!bs)
		return;
	rmq_timer_cancel(s, &bs->retention_timer);
	rmq_timer_cancel(s, &bs->fsync_timer);
	rmq_heartbeat_stop(bs);
	rmq_ctrl_stop(bs);
	rmq_forward_fini(bs);
	rmq_lead_fini(bs);
	rmq_auth_fini(bs);
	rmq_methods_fini(bs);
	rmq_isr_fini(bs);
	if (bs->srv) {
		rmq_server_drained(bs->srv, true);
		rmq_server_destroy(bs->srv);
	}
	rmq_http1_free(bs->metrics);
	rmq_groups_fini(bs);
	if (bs->meta) {
		/* Empty since rmq_partitions_stopped. */
		for (size_t i = 0; i < bs->meta->ntopics; i++)
			free(bs->local[i].parts);
		free(bs->local);
		rmq_meta_unref(bs->meta);
	}
	rmq_wpool_destroy(bs->wpool);
	rmq_shard_set_data(s, NULL);
	free(bs);
}

int rmq_broker_run(struct rmq_broker *b)
{
	struct rmq_runtime_config rc_cfg = {
		.shards = b->cfg.shards,
		.ring_entries = 4096,
		.fixed_buffers = 256,
		.xshard_capacity = XSHARD_CAPACITY,
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
	b->self = rmq_ctrl_node_id(b->cfg.node_id);
	rmq_uuid(b->incarnation);
	rc = rmq_ctrl_recover(b, &b->initial_meta);
	if (rc < 0)
		return rc;
	rmq_meta_ref(b->initial_meta);
	rc = rmq_groups_layout(b->cfg.data_dir, &b->cfg.offsets_partitions);
	if (rc < 0) {
		if (rc != RMQ_EBADFLAG && rc != RMQ_ECORRUPT)
			rmq_error("cannot read %s/meta/offsets-partitions: %s", b->cfg.data_dir,
				  rmq_strerror(rc));
		rmq_meta_unref(b->initial_meta);
		return rc;
	}
	rc = rmq_meta_reserve(b->cfg.data_dir);
	if (rc < 0)
		rmq_warn("cannot reserve %u MiB for metadata in %s/meta: %s (tried again at each change)",
			 RMQ_META_RESERVE_BYTES >> 20, b->cfg.data_dir, rmq_strerror(rc));
	b->started_ms = rmq_wall_ms();
	rc = rmq_runtime_create(&rc_cfg, &b->rt);
	if (rc < 0) {
		rmq_meta_unref(b->initial_meta);
		return rc;
	}
	rc = rmq_offline_create(&b->offline);
	if (rc == 0)
		rc = rmq_offload_pool_create(b->rt, b->cfg.io_helpers, &b->offload);
	if (rc < 0) {
		rmq_error("cannot start helper threads: %s", rmq_strerror(rc));
		rmq_offline_destroy(b->offline);
		rmq_runtime_destroy(b->rt);
		rmq_meta_unref(b->initial_meta);
		return rc;
	}
	rmq_runtime_on_stop(b->rt, shard_drained);
	atomic_store(&b->serving, 1);
	rmq_methods_init();
	rmq_quota_init(b);
	rc = rmq_runtime_run(b->rt, shard_init, shard_fini, b);
	if (rc == 0)
		rc = atomic_load(&b->start_rc);
	rmq_offload_pool_destroy(b->offload);
	b->offload = NULL;
	rmq_quota_fini(b);
	rmq_offline_destroy(b->offline);
	b->offline = NULL;
	rmq_runtime_destroy(b->rt);
	b->rt = NULL;
	rmq_meta_unref(b->initial_meta);
	return rc;
}
