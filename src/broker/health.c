/* SPDX-License-Identifier: Apache-2.0 */
/*
 * health.c - grpc.health.v1.Health (Check, Watch) and BrokerHealthService
 * (HealthCheck, GetMetrics).
 *
 * A shard reads only its own counters, so HealthCheck and GetMetrics
 * gather them by message: one struct shard_numbers per shard, filled on
 * that shard, answered on the origin once every shard is back.
 */
#include "broker/broker.h"
#include "broker/cluster.h"
#include "broker/group.h"

#include "broker/health.pb-c.h"
#include "core/error.h"
#include "core/util.h"
#include "net/http1.h"
#include "grpc/health/v1/health.pb-c.h"

#include <errno.h>
#include <inttypes.h>
#include <math.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/statvfs.h>

/* A partition's numbers, for Prometheus (its series are per partition). */
struct part_row {
	char topic[RMQ_TOPIC_NAME_MAX + 1];
	uint32_t partition, replicas, isr;
	bool leader;
	uint64_t start, end, hw, bytes;
};

/* Per-shard numbers, gathered by message (each shard reads only its own). */
struct shard_numbers {
	uint64_t produce_requests, produce_records, fetch_requests, fetch_bytes, errors;
	uint64_t fetch_disk_bytes, fetch_ahead_bytes;
	uint64_t partitions, connections, calls, protocol_errors;
	uint64_t net_bytes_sent, net_bytes_spliced;
	uint64_t parts_by_state[RMQ_PART_DELETING + 1];
	uint64_t request_bytes, request_bytes_max, paused_connections, read_pauses;
	uint64_t backlog, backlog_pauses, groups, helper_jobs;
	uint64_t repl_msgs, repl_parts, repl_bytes, repl_beats;
	uint64_t logs_no_space;
	uint64_t wpool_bytes, wpool_used_bytes, wpool_refused, read_ahead_bytes, read_ahead_max;
	uint64_t log_bytes, segment_rolls, segments_recycled, segments_deleted;
	uint64_t log_writes, log_buffer_full;
	struct rmq_lat_hist produce_latency;
	struct rmq_log_metrics log;
	struct part_row *rows;           /* with gather.rows_max: malloc'd on the shard */
	size_t nrows, rows_omitted;
};

struct gather {
	struct rmq_call *call;           /* a gRPC call's, or NULL */
	struct rmq_http1_req *http;      /* an HTTP request's, or NULL */
	size_t rows_max;                 /* partition rows wanted, of each shard and in all */
	unsigned origin, n;
	int pending;
	struct shard_numbers *nums;
	struct rmq_xmsg *msgs;           /* one per shard, followed by a back pointer */
	void (*done)(struct gather *g);
	void *req;                       /* the decoded request */
};

static void gather_back(struct rmq_xmsg *m)
{
	struct gather *g = *(struct gather **)(m + 1);
	if (--g->pending == 0)
		g->done(g);
}

/* Up to max rows of the partitions this shard serves. */
static void gather_rows(struct rmq_bshard *bs, struct shard_numbers *n, size_t max)
{
	size_t cap = 0;
	for (size_t i = 0; i < bs->meta->ntopics; i++)
		for (uint32_t p = 0; bs->local[i].parts && p < bs->meta->topics[i].partitions; p++) {
			const struct rmq_partition *part = bs->local[i].parts[p];
			if (!part || part->state != RMQ_PART_ONLINE || !part->log)
				continue;
			if (n->nrows == cap) {
				size_t c = cap ? 2 * cap : 64;
				if (c > max)
					c = max;
				struct part_row *v =
					n->nrows < max ? realloc(n->rows, c * sizeof(*v)) : NULL;
				if (!v) {
					n->rows_omitted++; /* past the cap (or out of memory) */
					continue;
				}
				n->rows = v;
				cap = c;
			}
			struct part_row *r = &n->rows[n->nrows++];
			const struct rmq_passign *pa = &bs->meta->topics[i].parts[p];
			snprintf(r->topic, sizeof(r->topic), "%s", part->topic_name);
			r->partition = p;
			r->leader = part->role == RMQ_ROLE_LEADER;
			r->replicas = pa->nreplicas ? pa->nreplicas : 1;
			r->isr = pa->nreplicas ? pa->nisr : 1;
			r->start = rmq_log_start_offset(part->log);
			r->end = rmq_log_high_watermark(part->log);
			r->hw = part->hw;
			r->bytes = rmq_log_size_bytes(part->log);
		}
}

static void gather_here(struct rmq_xmsg *m)
{
	struct gather *g = *(struct gather **)(m + 1);
	struct rmq_bshard *bs = rmq_bshard_current();
	struct shard_numbers *n = &g->nums[bs->id];
	n->produce_requests = bs->produce_requests;
	n->produce_records = bs->produce_records;
	n->fetch_requests = bs->fetch_requests;
	n->fetch_bytes = bs->fetch_bytes;
	n->fetch_disk_bytes = bs->cold.disk_bytes;
	n->fetch_ahead_bytes = bs->cold.ahead_bytes;
	n->errors = bs->errors;
	n->produce_latency = bs->produce_latency;
	n->log = bs->log_metrics;
	for (size_t i = 0; i < bs->meta->ntopics; i++)
		for (uint32_t p = 0; bs->local[i].parts && p < bs->meta->topics[i].partitions; p++) {
			const struct rmq_partition *part = bs->local[i].parts[p];
			if (!part || part->state != RMQ_PART_ONLINE)
				continue;
			n->partitions++;
			n->log_bytes += rmq_log_size_bytes(part->log);
			const struct rmq_log_stats *ls = rmq_log_stats(part->log);
			n->segment_rolls += ls->rolls;
			n->segments_recycled += ls->recycled_segments;
			n->segments_deleted += ls->deleted_segments;
			n->log_writes += ls->writes;
			n->log_buffer_full += ls->buffer_full;
			n->logs_no_space += rmq_log_disk_full(part->log);
		}
	rmq_partitions_count(bs, n->parts_by_state);
	if (g->http)
		gather_rows(bs, n, g->rows_max); /* Prometheus's per-partition series */
	if (bs->srv) {
		const struct rmq_server_stats *st = rmq_server_stats(bs->srv);
		n->connections = st->connections;
		n->calls = st->calls;
		n->protocol_errors = st->protocol_errors;
		n->net_bytes_sent = st->bytes_sent;
		n->net_bytes_spliced = st->spliced_bytes;
		n->request_bytes = st->request_bytes;
		n->request_bytes_max = st->request_bytes_max;
		n->paused_connections = st->paused_connections;
		n->read_pauses = st->pauses;
	}
	if (bs->wpool) {
		struct rmq_wpool_stats ws;
		uint64_t chunk = rmq_wpool_chunk_bytes(bs->wpool);
		rmq_wpool_stats(bs->wpool, &ws);
		n->wpool_bytes = (uint64_t)ws.chunks * chunk;
		n->wpool_used_bytes = (uint64_t)(ws.chunks - ws.chunks_free) * chunk + ws.large_bytes;
		n->wpool_refused = ws.refused;
	}
	n->read_ahead_bytes = bs->cold.ahead_held;
	n->read_ahead_max = bs->cold.ahead_max;
	n->backlog = rmq_shard_backlog(bs->s);
	n->backlog_pauses = bs->backlog_pauses;
	n->repl_msgs = bs->repl_msgs;
	n->repl_parts = bs->repl_parts;
	n->repl_bytes = bs->repl_bytes;
	n->repl_beats = bs->repl_beats;
	n->groups = rmq_groups_count(bs);
	n->helper_jobs = rmq_offload_pending(bs->b->offload, bs->s);
	m->fn = gather_back;
	rmq_shard_post(rmq_shard_current(), g->origin, m);
}

static int gather_start(struct rmq_bshard *bs, struct rmq_call *c, struct rmq_http1_req *http,
			size_t rows_max, void *req, void (*done)(struct gather *g))
{
	struct gather *g = calloc(1, sizeof(*g));
	size_t stride = sizeof(struct rmq_xmsg) + sizeof(void *);
	if (!g)
		return -ENOMEM;
	g->nums = calloc(bs->nshards, sizeof(*g->nums));
	g->msgs = calloc(bs->nshards, stride);
	if (!g->nums || !g->msgs) {
		free(g->nums);
		free(g->msgs);
		free(g);
		return -ENOMEM;
	}
	g->call = c;
	if (c)
		rmq_call_ref(c);
	g->http = http;
	g->rows_max = rows_max;
	g->origin = bs->id;
	g->n = bs->nshards;
	g->pending = (int)bs->nshards;
	g->done = done;
	g->req = req;
	for (unsigned s = 0; s < bs->nshards; s++) {
		struct rmq_xmsg *m = (struct rmq_xmsg *)((char *)g->msgs + s * stride);
		*(struct gather **)(m + 1) = g;
		m->fn = gather_here;
		rmq_shard_post(rmq_shard_current(), s, m);
	}
	return 0;
}

static void gather_free(struct gather *g)
{
	if (g->call)
		rmq_call_unref(g->call);
	for (unsigned s = 0; s < g->n; s++)
		free(g->nums[s].rows);
	free(g->nums);
	free(g->msgs);
	free(g);
}

/* grpc.health.v1: "" and every served service name are SERVING while the
 * node accepts calls, NOT_SERVING while it shuts down. */
static const char *const served_services[] = {
	"rustmq.client.ProducerService", "rustmq.client.ConsumerService",
	"rustmq.client.MetadataService", "rustmq.controller.AdminService",
	"rustmq.broker.BrokerHealthService", "grpc.health.v1.Health",
};

static int health_of(struct rmq_bshard *bs, const char *service)
{
	bool known = service[0] == '\0';
	for (size_t i = 0; i < RMQ_ARRAY_SIZE(served_services) && !known; i++)
		known = strcmp(service, served_services[i]) == 0;
	if (!known)
		return GRPC__HEALTH__V1__HEALTH_CHECK_RESPONSE__SERVING_STATUS__SERVICE_UNKNOWN;
	return atomic_load(&bs->b->serving) ? GRPC__HEALTH__V1__HEALTH_CHECK_RESPONSE__SERVING_STATUS__SERVING
					    : GRPC__HEALTH__V1__HEALTH_CHECK_RESPONSE__SERVING_STATUS__NOT_SERVING;
}

void rmq_health_check(struct rmq_call *c, void *msg)
{
	struct rmq_bshard *bs = rmq_call_app(c);
	Grpc__Health__V1__HealthCheckRequest *req = msg;
	int st = health_of(bs, req->service);
	if (st == GRPC__HEALTH__V1__HEALTH_CHECK_RESPONSE__SERVING_STATUS__SERVICE_UNKNOWN) {
		/* The standard says: NOT_FOUND for an unknown service on Check. */
		rmq_call_finishf(c, RMQ_GRPC_NOT_FOUND, "unknown service '%s'", req->service);
	} else {
		Grpc__Health__V1__HealthCheckResponse r = GRPC__HEALTH__V1__HEALTH_CHECK_RESPONSE__INIT;
		r.status = st;
		rmq_reply_pb(c, &r.base);
	}
	grpc__health__v1__health_check_request__free_unpacked(req, NULL);
}

/* Watch: the current status now, then again when it changes; the node's
 * status changes once, when it starts shutting down, and the stream ends
 * with the server's shutdown. */
void rmq_health_watch(struct rmq_call *c, void *msg)
{
	struct rmq_bshard *bs = rmq_call_app(c);
	Grpc__Health__V1__HealthCheckRequest *req = msg;
	Grpc__Health__V1__HealthCheckResponse r = GRPC__HEALTH__V1__HEALTH_CHECK_RESPONSE__INIT;
	r.status = health_of(bs, req->service);
	grpc__health__v1__health_check_request__free_unpacked(req, NULL);
	int rc = rmq_send_pb(c, &r.base);
	if (rc < 0 && rc != RMQ_ECLOSED)
		rmq_call_finishf(c, RMQ_GRPC_INTERNAL, "watch: %s", rmq_strerror(rc));
	/* Left open: the call ends when the client cancels or at shutdown
	 * (rmq_server_drained cancels it after sending NOT_SERVING below). */
}

void rmq_health_watch_cancel(struct rmq_call *c)
{
	(void)c;
}

static void broker_health_done(struct gather *g)
{
	struct rmq_bshard *bs = rmq_bshard_current();
	Rustmq__Broker__HealthCheckRequest *req = g->req;
	Rustmq__Broker__HealthCheckResponse r = RUSTMQ__BROKER__HEALTH_CHECK_RESPONSE__INIT;
	Google__Protobuf__Timestamp now = GOOGLE__PROTOBUF__TIMESTAMP__INIT;
	size_t nc = 2 + g->n;
	Rustmq__Broker__ComponentHealth *cs = calloc(nc, sizeof(*cs));
	Rustmq__Broker__ComponentHealth **cp = calloc(nc, sizeof(*cp));
	Rustmq__Broker__ComponentHealth__DetailsEntry *de = calloc(nc * 4, sizeof(*de));
	Rustmq__Broker__ComponentHealth__DetailsEntry **dp = calloc(nc * 4, sizeof(*dp));
	char(*vals)[32] = calloc(nc * 4, 32);
	char(*names)[24] = calloc(nc, 24);
	bool serving = atomic_load(&bs->b->serving);
	uint64_t wall = rmq_wall_ms();

	if (!cs || !cp || !de || !dp || !vals || !names) {
		rmq_call_finish(g->call, RMQ_GRPC_RESOURCE_EXHAUSTED, "out of memory");
		goto out;
	}
	uint64_t parts = 0, bytes = 0, conns = 0, calls = 0;
	for (unsigned s = 0; s < g->n; s++) {
		parts += g->nums[s].partitions;
		bytes += g->nums[s].log_bytes;
		conns += g->nums[s].connections;
		calls += g->nums[s].calls;
	}
	size_t d = 0, k = 0;
#define DETAIL(comp, name_, fmt, val)                                                 \
	do {                                                                          \
		rustmq__broker__component_health__details_entry__init(&de[d]);        \
		de[d].key = name_;                                                    \
		snprintf(vals[d], 32, fmt, val);                                      \
		de[d].value = vals[d];                                                \
		dp[d] = &de[d];                                                       \
		if (!(comp)->details)                                                 \
			(comp)->details = &dp[d];                                     \
		(comp)->n_details++;                                                  \
		d++;                                                                  \
	} while (0)
	int status = serving ? RUSTMQ__BROKER__HEALTH_STATUS__HEALTH_STATUS_SERVING
			     : RUSTMQ__BROKER__HEALTH_STATUS__HEALTH_STATUS_NOT_SERVING;
	/* storage: degraded while a partition cannot serve for a storage
	 * failure (its log could not be opened, or the disk is full) */
	char why[320] = "";
	uint64_t offline = rmq_offline_count(bs->b->offline, NULL), nospace = 0, failed = 0;
	for (unsigned s = 0; s < g->n; s++) {
		nospace += g->nums[s].logs_no_space;
		failed += g->nums[s].parts_by_state[RMQ_PART_FAILED];
	}
	struct statvfs fs;
	uint64_t free_bytes = statvfs(bs->b->cfg.data_dir, &fs) == 0 ? (uint64_t)fs.f_bavail * fs.f_frsize : 0;
	rustmq__broker__component_health__init(&cs[k]);
	cs[k].component = RUSTMQ__BROKER__HEALTH_COMPONENT__HEALTH_COMPONENT_STORAGE;
	cs[k].name = "storage";
	cs[k].status = status;
	if (serving && (offline > 0 || nospace > 0)) {
		cs[k].status = RUSTMQ__BROKER__HEALTH_STATUS__HEALTH_STATUS_DEGRADED;
		if (nospace > 0)
			snprintf(why, sizeof(why),
				 "%" PRIu64 " partition logs refuse appends: no space left on the data directory's "
				 "filesystem (%" PRIu64 " bytes free); they take appends again once space is freed",
				 nospace, free_bytes);
		else
			snprintf(why, sizeof(why),
				 "%" PRIu64 " partitions could not be opened (retried every %llu s; the log says why)",
				 offline, (unsigned long long)(RMQ_PART_RETRY_NS / 1000000000ULL));
		cs[k].message = why;
	}
	if (req->include_details) {
		DETAIL(&cs[k], "partitions", "%" PRIu64, parts);
		DETAIL(&cs[k], "log_bytes", "%" PRIu64, bytes);
		DETAIL(&cs[k], "offline_partitions", "%" PRIu64, offline > failed ? offline : failed);
		DETAIL(&cs[k], "free_bytes", "%" PRIu64, free_bytes);
	}
	cp[k] = &cs[k];
	k++;
	/* network */
	rustmq__broker__component_health__init(&cs[k]);
	cs[k].component = RUSTMQ__BROKER__HEALTH_COMPONENT__HEALTH_COMPONENT_NETWORK;
	cs[k].name = "network";
	cs[k].status = status;
	if (req->include_details) {
		DETAIL(&cs[k], "connections", "%" PRIu64, conns);
		DETAIL(&cs[k], "calls", "%" PRIu64, calls);
	}
	cp[k] = &cs[k];
	k++;
	for (unsigned s = 0; s < g->n; s++) {
		rustmq__broker__component_health__init(&cs[k]);
		cs[k].component = RUSTMQ__BROKER__HEALTH_COMPONENT__HEALTH_COMPONENT_SHARD;
		snprintf(names[s], 24, "shard-%u", s);
		cs[k].name = names[s];
		cs[k].shard = s;
		cs[k].status = status;
		if (req->include_details) {
			DETAIL(&cs[k], "partitions", "%" PRIu64, g->nums[s].partitions);
			DETAIL(&cs[k], "connections", "%" PRIu64, g->nums[s].connections);
		}
		cp[k] = &cs[k];
		k++;
	}
#undef DETAIL
	/* The node is as healthy as its storage (the first component). */
	r.status = cs[0].status;
	r.broker_id = (char *)rmq_cluster_self(bs);
	r.broker_epoch = rmq_cluster_broker_epoch(bs);
	r.broker_state = serving ? RUSTMQ__COMMON__BROKER_STATE__BROKER_RUNNING
				 : RUSTMQ__COMMON__BROKER_STATE__BROKER_SHUTTING_DOWN;
	r.uptime_ms = wall - bs->b->started_ms;
	now.seconds = (int64_t)(wall / 1000);
	now.nanos = (int32_t)(wall % 1000) * 1000000;
	r.checked_at = &now;
	r.components = cp;
	r.n_components = k;
	r.software_version = RMQ_VERSION;
	rmq_reply_pb(g->call, &r.base);
out:
	free(cs);
	free(cp);
	free(de);
	free(dp);
	free(vals);
	free(names);
	rustmq__broker__health_check_request__free_unpacked(req, NULL);
	gather_free(g);
}

void rmq_broker_health(struct rmq_call *c, void *msg)
{
	struct rmq_bshard *bs = rmq_call_app(c);
	Rustmq__Broker__HealthCheckRequest *req = msg;
	if (gather_start(bs, c, NULL, 0, req, broker_health_done) < 0) {
		rustmq__broker__health_check_request__free_unpacked(req, NULL);
		rmq_call_finish(c, RMQ_GRPC_RESOURCE_EXHAUSTED, "out of memory");
	}
}

struct metric_def {
	const char *name, *help, *unit;
	int type;
	size_t off; /* in struct shard_numbers */
};

#define MDEF(n, h, u, t, f) {n, h, u, t, offsetof(struct shard_numbers, f)}
static const struct metric_def metric_defs[] = {
	MDEF("rmq_produce_requests_total", "produce appends handled", "requests", 1, produce_requests),
	MDEF("rmq_produce_records_total", "records appended", "records", 1, produce_records),
	MDEF("rmq_fetch_requests_total", "fetch requests answered", "requests", 1, fetch_requests),
	MDEF("rmq_fetch_bytes_total", "batch bytes read for fetches", "bytes", 1, fetch_bytes),
	MDEF("rmq_fetch_disk_bytes_total", "batch bytes fetches read from the disk (not in memory), read-ahead included", "bytes", 1, fetch_disk_bytes),
	MDEF("rmq_fetch_ahead_bytes_total", "batch bytes fetches took from a read-ahead", "bytes", 1, fetch_ahead_bytes),
	MDEF("rmq_request_errors_total", "produce requests answered with an error", "requests", 1, errors),
	MDEF("rmq_partitions", "partitions owned and serving (ONLINE)", "partitions", 2, partitions),
	MDEF("rmq_partitions_opening", "partitions being opened (their logs recovered on a helper thread)", "partitions", 2, parts_by_state[RMQ_PART_OPENING]),
	MDEF("rmq_partitions_failed", "partitions that could not be opened (retried every 5 s; the log says why)", "partitions", 2, parts_by_state[RMQ_PART_FAILED]),
	MDEF("rmq_partitions_closing", "partitions closing or being removed", "partitions", 2, parts_by_state[RMQ_PART_CLOSING]),
	MDEF("rmq_partitions_disk_full", "partitions refusing appends for want of disk space (they take appends again once space is freed)", "partitions", 2, logs_no_space),
	MDEF("rmq_request_memory_bytes", "memory held for requests being received or worked on (--max-request-memory)", "bytes", 2, request_bytes),
	MDEF("rmq_request_memory_limit_bytes", "--max-request-memory: above it the shard stops reading", "bytes", 2, request_bytes_max),
	MDEF("rmq_paused_connections", "connections not being read now (request memory or backlog above its limit)", "connections", 2, paused_connections),
	MDEF("rmq_read_pauses_total", "times the shard stopped reading for request memory or an application pause", "pauses", 1, read_pauses),
	MDEF("rmq_write_pool_bytes", "the shard's write buffers, shared by its partitions (8 x --write-buffer)", "bytes", 2, wpool_bytes),
	MDEF("rmq_write_pool_used_bytes", "of them, held by partitions with bytes to write (and large batches)", "bytes", 2, wpool_used_bytes),
	MDEF("rmq_write_pool_refused_total", "appends that found the write pool full and waited", "appends", 1, wpool_refused),
	MDEF("rmq_read_ahead_bytes", "memory held by read-aheads of cold data (at most --read-ahead)", "bytes", 2, read_ahead_bytes),
	MDEF("rmq_read_ahead_limit_bytes", "--read-ahead", "bytes", 2, read_ahead_max),
	MDEF("rmq_xshard_backlog", "messages to other shards waiting for room in a queue, and posts to itself for the next cycle", "messages", 2, backlog),
	MDEF("rmq_xshard_backlog_pauses_total", "times the shard stopped reading because its backlog passed one queue", "pauses", 1, backlog_pauses),
	MDEF("rmq_replication_messages_total", "ReplicateStream messages sent as a leader (each a bundle of partitions for one follower shard)", "messages", 1, repl_msgs),
	MDEF("rmq_replication_parts_total", "partition requests in those messages", "requests", 1, repl_parts),
	MDEF("rmq_replication_bytes_total", "stored batch bytes sent to followers, by reference", "bytes", 1, repl_bytes),
	MDEF("rmq_replication_heartbeats_total", "SendHeartbeat calls made for idle followers", "calls", 1, repl_beats),
	MDEF("rmq_groups", "consumer groups this shard coordinates (--max-groups)", "groups", 2, groups),
	MDEF("rmq_helper_jobs", "blocking file work this shard handed to helper threads, not back yet (--io-helpers)", "jobs", 2, helper_jobs),
	MDEF("rmq_log_bytes", "bytes stored in partition logs", "bytes", 2, log_bytes),
	MDEF("rmq_segment_rolls_total", "segments rolled, partitions open now, since they opened", "segments", 1, segment_rolls),
	MDEF("rmq_segments_recycled_total", "new segments that took a deleted segment's file (--recycle-segments), partitions open now, since they opened", "segments", 1, segments_recycled),
	MDEF("rmq_segments_deleted_total", "segments deleted by retention, compaction or truncation, partitions open now, since they opened", "segments", 1, segments_deleted),
	MDEF("rmq_log_writes_total", "data writes of partition logs, partitions open now, since they opened", "writes", 1, log_writes),
	MDEF("rmq_log_buffer_full_total", "appends that found their partition's write buffers full (or its segment being rolled) and waited, partitions open now, since they opened", "appends", 1, log_buffer_full),
	MDEF("rmq_connections", "open client connections", "connections", 2, connections),
	MDEF("rmq_calls", "gRPC calls in flight", "calls", 2, calls),
	MDEF("rmq_protocol_errors_total", "connections closed for bad input", "connections", 1, protocol_errors),
	MDEF("rmq_net_sent_bytes_total", "bytes the gRPC server's sockets took (TLS records with TLS)", "bytes", 1, net_bytes_sent),
	MDEF("rmq_net_spliced_bytes_total", "batch bytes fetch answers moved from the page cache into sockets by splice (--fetch-send splice)", "bytes", 1, net_bytes_spliced),
	MDEF("rmq_produce_latency_us", "a produce append, from its request's arrival on the connection's shard to its answer (acknowledged appends only)", "us", 3, produce_latency),
	MDEF("rmq_log_ack_latency_us", "an append in a partition log, from the write buffer to acknowledged (write and sync per --fsync)", "us", 3, log.ack),
	MDEF("rmq_log_write_latency_us", "one data write of a partition log (with --dsync-writes: durable when done)", "us", 3, log.write),
	MDEF("rmq_log_sync_latency_us", "one fdatasync of a partition log (group commit)", "us", 3, log.sync),
	MDEF("rmq_segment_roll_latency_us", "a segment roll, from its start to the new segment taking appends (the partition's appends wait meanwhile)", "us", 3, log.roll),
};

/* Fills m's histogram fields from h: every bucket, cumulative, the last
 * +Inf (bounds are lathist.h's, the same on every node and every call, so a
 * scraper sees the same series each time).  bk and bp have room for
 * RMQ_LAT_BUCKETS.  Returns the buckets used. */
static size_t fill_histogram(Rustmq__Broker__Metric *m, const struct rmq_lat_hist *h,
			     Rustmq__Broker__HistogramBucket *bk, Rustmq__Broker__HistogramBucket **bp)
{
	uint64_t cum = 0;
	size_t k;

	for (k = 0; k < RMQ_LAT_BUCKETS; k++) {
		cum += h->n[k];
		rustmq__broker__histogram_bucket__init(&bk[k]);
		bk[k].upper_bound = k == RMQ_LAT_BUCKETS - 1 ? INFINITY : (double)rmq_lat_bound((unsigned)k);
		bk[k].cumulative_count = cum;
		bp[k] = &bk[k];
	}
	m->buckets = bp;
	m->n_buckets = k;
	m->sample_count = h->count;
	m->sample_sum = (double)h->sum_us;
	m->value = h->count ? (double)h->sum_us / (double)h->count : 0;
	return k;
}

static void metrics_done(struct gather *g)
{
	Rustmq__Broker__MetricsRequest *req = g->req;
	Rustmq__Broker__MetricsResponse r = RUSTMQ__BROKER__METRICS_RESPONSE__INIT;
	size_t nd = RMQ_ARRAY_SIZE(metric_defs), max = nd * g->n;
	Rustmq__Broker__Metric *ms = calloc(max, sizeof(*ms));
	Rustmq__Broker__Metric **mp = calloc(max, sizeof(*mp));
	Rustmq__Broker__Metric__LabelsEntry *ls = calloc(max, sizeof(*ls));
	Rustmq__Broker__Metric__LabelsEntry **lp = calloc(max, sizeof(*lp));
	char(*shard)[12] = calloc(g->n, 12);
	size_t nh = 0, kb = 0; /* histogram samples; buckets used */
	for (size_t i = 0; i < nd; i++)
		nh += metric_defs[i].type == RUSTMQ__BROKER__METRIC_TYPE__METRIC_TYPE_HISTOGRAM;
	nh *= g->n;
	Rustmq__Broker__HistogramBucket *bk = calloc(nh * RMQ_LAT_BUCKETS, sizeof(*bk));
	Rustmq__Broker__HistogramBucket **bp = calloc(nh * RMQ_LAT_BUCKETS, sizeof(*bp));
	Google__Protobuf__Timestamp now = GOOGLE__PROTOBUF__TIMESTAMP__INIT;
	uint64_t wall = rmq_wall_ms();
	size_t k = 0;

	if (!ms || !mp || !ls || !lp || !shard || !bk || !bp) {
		rmq_call_finish(g->call, RMQ_GRPC_RESOURCE_EXHAUSTED, "out of memory");
		goto out;
	}
	now.seconds = (int64_t)(wall / 1000);
	now.nanos = (int32_t)(wall % 1000) * 1000000;
	for (size_t i = 0; i < nd; i++) {
		const struct metric_def *md = &metric_defs[i];
		bool want = req->n_metric_names == 0;
		for (size_t q = 0; q < req->n_metric_names && !want; q++)
			want = strcmp(req->metric_names[q], md->name) == 0;
		if (!want || strncmp(md->name, req->name_prefix, strlen(req->name_prefix)) != 0)
			continue;
		for (unsigned s = 0; s < g->n; s++) {
			snprintf(shard[s], 12, "%u", s);
			/* label_filter: only "shard" exists. */
			bool keep = true;
			for (size_t f = 0; f < req->n_label_filter; f++)
				if (strcmp(req->label_filter[f]->key, "shard") != 0 ||
				    strcmp(req->label_filter[f]->value, shard[s]) != 0)
					keep = false;
			if (!keep)
				continue;
			rustmq__broker__metric__init(&ms[k]);
			rustmq__broker__metric__labels_entry__init(&ls[k]);
			ms[k].name = (char *)md->name;
			const char *field = (const char *)&g->nums[s] + md->off;
			if (md->type == RUSTMQ__BROKER__METRIC_TYPE__METRIC_TYPE_HISTOGRAM)
				kb += fill_histogram(&ms[k], (const struct rmq_lat_hist *)field,
						     &bk[kb], &bp[kb]);
			else
				ms[k].value = (double)*(const uint64_t *)field;
			ls[k].key = "shard";
			ls[k].value = shard[s];
			lp[k] = &ls[k];
			ms[k].labels = &lp[k];
			ms[k].n_labels = 1;
			ms[k].timestamp = &now;
			ms[k].type = md->type;
			if (req->include_help) {
				ms[k].help = (char *)md->help;
				ms[k].unit = (char *)md->unit;
			}
			mp[k] = &ms[k];
			k++;
		}
	}
	r.metrics = mp;
	r.n_metrics = k;
	rmq_reply_pb(g->call, &r.base);
out:
	free(ms);
	free(mp);
	free(ls);
	free(lp);
	free(shard);
	free(bk);
	free(bp);
	rustmq__broker__metrics_request__free_unpacked(req, NULL);
	gather_free(g);
}

void rmq_broker_metrics(struct rmq_call *c, void *msg)
{
	struct rmq_bshard *bs = rmq_call_app(c);
	Rustmq__Broker__MetricsRequest *req = msg;
	if (req->start_time) {
		rustmq__broker__metrics_request__free_unpacked(req, NULL);
		rmq_call_finish(c, RMQ_GRPC_INVALID_ARGUMENT,
				"this node keeps no metric history: leave start_time unset for current values");
		return;
	}
	if (gather_start(bs, c, NULL, 0, req, metrics_done) < 0) {
		rustmq__broker__metrics_request__free_unpacked(req, NULL);
		rmq_call_finish(c, RMQ_GRPC_RESOURCE_EXHAUSTED, "out of memory");
	}
}

/* ---- Prometheus (--metrics-listen) ------------------------------------------------ */

/* A growing text buffer; out of memory sticks (and is answered 503). */
struct text {
	char *p;
	size_t len, cap;
	bool oom;
};

__attribute__((format(printf, 2, 3)))
static void text_add(struct text *t, const char *fmt, ...)
{
	for (int tries = 0; !t->oom && tries < 2; tries++) {
		va_list ap;
		va_start(ap, fmt);
		int n = vsnprintf(t->p ? t->p + t->len : NULL, t->p ? t->cap - t->len : 0, fmt, ap);
		va_end(ap);
		if (n < 0) {
			t->oom = true;
			return;
		}
		if (t->p && t->len + (size_t)n < t->cap) {
			t->len += (size_t)n;
			return;
		}
		size_t cap = t->cap ? t->cap : 64 << 10;
		while (cap <= t->len + (size_t)n)
			cap *= 2;
		char *q = realloc(t->p, cap);
		if (!q) {
			t->oom = true;
			return;
		}
		t->p = q;
		t->cap = cap;
	}
}

/* A label value as the text format wants it: \\, \" and \n escaped. */
static void text_label(struct text *t, const char *v)
{
	for (; *v; v++) {
		if (*v == '\\' || *v == '"')
			text_add(t, "\\%c", *v);
		else if (*v == '\n')
			text_add(t, "\\n");
		else
			text_add(t, "%c", *v);
	}
}

static const char *prom_type(int type)
{
	return type == RUSTMQ__BROKER__METRIC_TYPE__METRIC_TYPE_COUNTER	 ? "counter"
	       : type == RUSTMQ__BROKER__METRIC_TYPE__METRIC_TYPE_GAUGE ? "gauge"
									 : "histogram";
}

static void prom_histogram(struct text *t, const char *name, unsigned shard,
			   const struct rmq_lat_hist *h)
{
	uint64_t cum = 0;
	for (unsigned k = 0; k < RMQ_LAT_BUCKETS; k++) {
		cum += h->n[k];
		if (k == RMQ_LAT_BUCKETS - 1)
			text_add(t, "%s_bucket{shard=\"%u\",le=\"+Inf\"} %" PRIu64 "\n", name, shard,
				 cum);
		else
			text_add(t, "%s_bucket{shard=\"%u\",le=\"%" PRIu64 "\"} %" PRIu64 "\n", name,
				 shard, (uint64_t)rmq_lat_bound(k), cum);
	}
	text_add(t, "%s_sum{shard=\"%u\"} %" PRIu64 "\n", name, shard, (uint64_t)h->sum_us);
	text_add(t, "%s_count{shard=\"%u\"} %" PRIu64 "\n", name, shard, (uint64_t)h->count);
}

/* The per-partition series: name, help, and the row's field. */
enum prow { PR_START, PR_END, PR_HW, PR_BYTES, PR_LEADER, PR_REPLICAS, PR_ISR };
static const struct {
	const char *name, *help;
	enum prow f;
} prow_defs[] = {
	{"rmq_partition_log_start_offset", "the first offset the partition's log holds", PR_START},
	{"rmq_partition_log_end_offset", "the end of what the log holds durably (per --fsync)", PR_END},
	{"rmq_partition_high_watermark", "the end of what consumers may read (committed)", PR_HW},
	{"rmq_partition_log_bytes", "bytes in the partition's segments", PR_BYTES},
	{"rmq_partition_leader", "1 where this node leads the partition, else 0 (a follower)", PR_LEADER},
	{"rmq_partition_replicas", "replicas the controller assigned (1: not replicated)", PR_REPLICAS},
	{"rmq_partition_in_sync_replicas", "replicas in sync (ISR), as the controller's metadata says: fewer than rmq_partition_replicas on a leader is under-replicated", PR_ISR},
};

static uint64_t prow_value(const struct part_row *r, enum prow f)
{
	switch (f) {
	case PR_START: return r->start;
	case PR_END: return r->end;
	case PR_HW: return r->hw;
	case PR_BYTES: return r->bytes;
	case PR_LEADER: return r->leader;
	case PR_REPLICAS: return r->replicas;
	case PR_ISR: return r->isr;
	}
	return 0;
}

static void prom_done(struct gather *g)
{
	struct text t = {0};
	/* At most --metrics-partitions-max rows in all, in shard order. */
	uint64_t omitted = 0, budget = g->rows_max;
	for (unsigned s = 0; s < g->n; s++) {
		size_t keep = g->nums[s].nrows < budget ? g->nums[s].nrows : (size_t)budget;
		omitted += g->nums[s].rows_omitted + (g->nums[s].nrows - keep);
		g->nums[s].nrows = keep;
		budget -= keep;
	}
	for (size_t i = 0; i < RMQ_ARRAY_SIZE(metric_defs); i++) {
		const struct metric_def *md = &metric_defs[i];
		text_add(&t, "# HELP %s %s\n# TYPE %s %s\n", md->name, md->help, md->name,
			 prom_type(md->type));
		for (unsigned s = 0; s < g->n; s++) {
			const char *field = (const char *)&g->nums[s] + md->off;
			if (md->type == RUSTMQ__BROKER__METRIC_TYPE__METRIC_TYPE_HISTOGRAM)
				prom_histogram(&t, md->name, s, (const struct rmq_lat_hist *)field);
			else
				text_add(&t, "%s{shard=\"%u\"} %" PRIu64 "\n", md->name, s,
					 *(const uint64_t *)field);
		}
	}
	for (size_t i = 0; i < RMQ_ARRAY_SIZE(prow_defs); i++) {
		text_add(&t, "# HELP %s %s\n# TYPE %s gauge\n", prow_defs[i].name, prow_defs[i].help,
			 prow_defs[i].name);
		for (unsigned s = 0; s < g->n; s++)
			for (size_t k = 0; k < g->nums[s].nrows; k++) {
				const struct part_row *r = &g->nums[s].rows[k];
				text_add(&t, "%s{shard=\"%u\",topic=\"", prow_defs[i].name, s);
				text_label(&t, r->topic);
				text_add(&t, "\",partition=\"%" PRIu32 "\"} %" PRIu64 "\n", r->partition,
					 prow_value(r, prow_defs[i].f));
			}
	}
	text_add(&t,
		 "# HELP rmq_metrics_partitions_omitted partitions served here whose series this "
		 "scrape leaves out (--metrics-partitions-max)\n"
		 "# TYPE rmq_metrics_partitions_omitted gauge\n"
		 "rmq_metrics_partitions_omitted %" PRIu64 "\n",
		 omitted);
	if (t.oom)
		rmq_http1_answer(g->http, 503, "text/plain; charset=utf-8", "out of memory\n", 14);
	else
		rmq_http1_answer(g->http, 200, "text/plain; version=0.0.4; charset=utf-8", t.p, t.len);
	free(t.p);
	gather_free(g);
}

void rmq_metrics_http(void *arg, struct rmq_http1_req *r, const char *path)
{
	struct rmq_bshard *bs = arg;
	static const char nf[] = "not found: this endpoint serves /metrics\n";
	if (strcmp(path, "/metrics") != 0) {
		rmq_http1_answer(r, 404, "text/plain; charset=utf-8", nf, sizeof(nf) - 1);
		return;
	}
	/* Each shard may serve them all: rows for up to the cap from each,
	 * cut to the cap in all when they are back. */
	uint32_t max = bs->b->cfg.metrics_partitions_max;
	if (gather_start(bs, NULL, r, max, NULL, prom_done) < 0)
		rmq_http1_answer(r, 503, "text/plain; charset=utf-8", "out of memory\n", 14);
}
