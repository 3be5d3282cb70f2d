/* SPDX-License-Identifier: Apache-2.0 */
/*
 * broker.h - the broker: per-shard state, partitions, and the services.
 *
 *   rmqd main ── struct rmq_broker (read-only after start: flags, paths)
 *                  │
 *                  ├─ shard 0: struct rmq_bshard ── partitions it owns,
 *                  │            metadata owner (topic changes), server
 *                  └─ shard i: struct rmq_bshard ── partitions, server
 *
 * A request arrives on the shard that accepted its connection.  Work on a
 * partition runs on the partition's shard (rmq_partition_shard()): the
 * handler posts a message there and the answer comes back by message.
 * Handlers live in produce.c (ProducerService), fetch.c (ConsumerService's
 * fetches, Subscribe), lookup.c (ListOffsets), group.c and group_admin.c
 * (consumer groups and their AdminService RPCs), admin.c (AdminService, MetadataService,
 * health, and the RPCs of capabilities this node does not serve yet).
 */
#ifndef RMQ_BROKER_BROKER_H
#define RMQ_BROKER_BROKER_H

#include "broker/coldread.h"
#include "broker/meta.h"
#include "core/shard.h"
#include "net/server.h"
#include "storage/log.h"

#include <stdbool.h>
#include <stdint.h>

struct rmq_broker_config {
	const char *data_dir;
	const char *node_id;
	const char *advertised_host;   /* what metadata tells clients; default: listen host */
	unsigned shards;
	bool pin;
	uint64_t poll_ns;              /* shard busy-poll before sleeping */
	enum rmq_fsync fsync;
	uint64_t fsync_interval_ns;
	bool dsync_writes;             /* fsync=always: RWF_DSYNC writes, no fdatasync */
	bool recycle_segments;         /* new segments reuse deleted ones' files */
	enum rmq_prealloc prealloc;
	uint64_t write_buffer_bytes;   /* per partition */
	uint64_t index_interval_bytes;
	struct rmq_topic_config topic_defaults;
	uint32_t default_partitions;
	bool auto_create_topics;
	uint64_t retention_check_ns;
	uint64_t max_fetch_wait_ns;    /* cap on a fetch's max_wait */
	bool fetch_copy;               /* answer fetches by copy, not by reference (fetch.c) */
	uint64_t read_ahead_bytes;     /* read-ahead held per shard; 0 = none (coldread.h) */
	uint64_t produce_timeout_ns;   /* default when a request sets none */
	uint32_t max_inflight_produce; /* per shard */
	/* Consumer groups (group.h). */
	uint32_t offsets_partitions;   /* of __consumer_offsets; fixed once used */
	uint64_t offsets_segment_bytes;
	uint64_t group_min_session_ns, group_max_session_ns;
	uint64_t group_initial_delay_ns;
	uint32_t group_max_size;       /* 0 = unlimited */
	uint32_t offset_metadata_max;
	uint64_t offsets_retention_ms; /* of empty groups; 0 = forever */
	struct rmq_net_config net;
};

struct rmq_broker {
	struct rmq_broker_config cfg;
	struct rmq_runtime *rt;
	struct rmq_meta *initial_meta; /* loaded before the shards start */
	char cluster_id[40];
	const char *fsync_name;        /* for the start-up line */
	uint64_t started_ms;
	_Atomic uint16_t port;         /* bound port (ephemeral ports) */
	_Atomic int serving;           /* 1 while accepting calls */
};

struct rmq_bshard;
struct rmq_fetch_waiter;

/* A partition owned by this shard. */
struct rmq_partition {
	struct rmq_bshard *bs;
	const struct rmq_topic *topic; /* in bs->meta; refreshed on swaps */
	char topic_name[RMQ_TOPIC_NAME_MAX + 1];
	char topic_id[40];
	uint32_t index;
	struct rmq_log *log;
	struct rmq_partition *dirty_next; /* appended this cycle: flush list */
	bool dirty;
	struct rmq_produce *backlog_head, *backlog_tail; /* waiting for buffer space */
	struct rmq_fetch_waiter *waiters;  /* long polls on this partition */
	uint64_t produced_records, produced_bytes, fetched_bytes;
	struct rmq_cold_state cold;        /* reads from the disk (coldread.h) */
	struct rmq_dedup *dedup;           /* retries that must not append twice */
	uint64_t rolls_retained;           /* log rolls when retention last ran */
};

/* Per-topic table of the partitions this shard owns (NULL elsewhere). */
struct rmq_tlocal {
	struct rmq_partition **parts;  /* [topic->partitions] */
};

struct rmq_bshard {
	struct rmq_broker *b;
	struct rmq_shard *s;
	unsigned id, nshards;
	struct rmq_server *srv;
	struct rmq_meta *meta;         /* this shard's current snapshot */
	struct rmq_tlocal *local;      /* parallel to meta->topics */
	struct rmq_partition *dirty;   /* partitions to flush before waiting */
	struct rmq_timer retention_timer;
	struct rmq_timer fsync_timer;
	uint32_t inflight_produce;
	uint64_t cold_ahead_bytes;     /* held by read-aheads (coldread.h) */
	struct rmq_gshard *groups;     /* groups this shard coordinates */
	/* Counters (GetMetrics). */
	uint64_t produce_requests, produce_records, produce_bytes;
	uint64_t fetch_requests, fetch_bytes;
	uint64_t fetch_disk_bytes, fetch_ahead_bytes; /* coldread.h */
	uint64_t errors;
	/* Latencies (GetMetrics): a produce append, from its request's arrival
	 * on this (the connection's) shard to its answer; and the partition
	 * logs' own (the offsets log's are not recorded). */
	struct rmq_lat_hist produce_latency;
	struct rmq_log_metrics log_metrics;
	struct rmq_wpool *wpool;       /* the partition logs' write buffers */
};

/* The shard's broker state (from rmq_shard_data). */
static inline struct rmq_bshard *rmq_bshard_current(void)
{
	return rmq_shard_data(rmq_shard_current());
}

/* Finds a partition of this shard.  Returns NULL and sets *code to
 * TOPIC_NOT_FOUND or PARTITION_NOT_FOUND (rustmq.common.ErrorCode) when it
 * does not exist, or NOT_AVAILABLE when it exists but this shard does not
 * own it (a programming error in routing: callers route first). */
struct rmq_partition *rmq_partition_find(struct rmq_bshard *bs, const char *topic, uint32_t p,
					 int *code);

/* Routes (topic, p) to its shard: returns the shard id, or -1 with *code
 * set when the topic or partition does not exist on this shard's view. */
int rmq_route(struct rmq_bshard *bs, const char *topic, uint32_t p, int *code);

/* Marks p for a flush before the shard waits. */
void rmq_partition_mark_dirty(struct rmq_partition *p);

/* Milliseconds since the epoch. */
uint64_t rmq_wall_ms(void);

/* The method table of every service (broker.c, built at start), and its
 * size. */
extern struct rmq_grpc_method rmq_broker_methods[];
extern const size_t rmq_broker_nmethods;

/* Runs the broker until a signal stops it.  Returns 0 or an error. */
int rmq_broker_run(struct rmq_broker *b);

/* Handlers, by file (each file's comment explains its service). */
void rmq_produce_unary(struct rmq_call *c, const uint8_t *msg, size_t len);
void rmq_produce_batch(struct rmq_call *c, const uint8_t *msg, size_t len);
void rmq_produce_stream_msg(struct rmq_call *c, const uint8_t *msg, size_t len);
void rmq_produce_stream_half_close(struct rmq_call *c);
void rmq_produce_cancel(struct rmq_call *c);
void rmq_produce_retry_backlog(struct rmq_partition *p);
void rmq_produce_fail_backlog(struct rmq_partition *p);

void rmq_fetch_unary(struct rmq_call *c, const uint8_t *msg, size_t len);
void rmq_fetch_batch(struct rmq_call *c, const uint8_t *msg, size_t len);
void rmq_fetch_subscribe(struct rmq_call *c, const uint8_t *msg, size_t len);
void rmq_fetch_cancel(struct rmq_call *c);
void rmq_fetch_drain(struct rmq_call *c);
void rmq_list_offsets(struct rmq_call *c, const uint8_t *msg, size_t len);
void rmq_fetch_wake(struct rmq_partition *p); /* HW advanced */
void rmq_fetch_drop_waiters(struct rmq_partition *p); /* partition closing */

void rmq_admin_create_topics(struct rmq_call *c, const uint8_t *msg, size_t len);
void rmq_admin_delete_topics(struct rmq_call *c, const uint8_t *msg, size_t len);
void rmq_admin_list_topics(struct rmq_call *c, const uint8_t *msg, size_t len);
void rmq_admin_describe_topics(struct rmq_call *c, const uint8_t *msg, size_t len);
void rmq_admin_alter_configs(struct rmq_call *c, const uint8_t *msg, size_t len);
void rmq_admin_describe_configs(struct rmq_call *c, const uint8_t *msg, size_t len);
void rmq_admin_describe_cluster(struct rmq_call *c, const uint8_t *msg, size_t len);
void rmq_admin_cancel(struct rmq_call *c);
void rmq_md_topic_metadata(struct rmq_call *c, const uint8_t *msg, size_t len);
void rmq_md_list_topics(struct rmq_call *c, const uint8_t *msg, size_t len);
void rmq_md_broker_list(struct rmq_call *c, const uint8_t *msg, size_t len);
void rmq_md_partition_leader(struct rmq_call *c, const uint8_t *msg, size_t len);
void rmq_md_cluster_metadata(struct rmq_call *c, const uint8_t *msg, size_t len);
void rmq_md_find_coordinator(struct rmq_call *c, const uint8_t *msg, size_t len);
void rmq_health_check(struct rmq_call *c, const uint8_t *msg, size_t len);
void rmq_health_watch(struct rmq_call *c, const uint8_t *msg, size_t len);
void rmq_health_watch_cancel(struct rmq_call *c);
void rmq_broker_health(struct rmq_call *c, const uint8_t *msg, size_t len);
void rmq_broker_metrics(struct rmq_call *c, const uint8_t *msg, size_t len);
void rmq_not_served(struct rmq_call *c, const uint8_t *msg, size_t len);
void rmq_auth_authenticate(struct rmq_call *c, const uint8_t *msg, size_t len);

/* Creates (auto_create) a topic through shard 0 for a produce to an
 * unknown topic; cb runs on this shard with a rustmq ErrorCode. */
struct rmq_topic_request;
int rmq_admin_create_one(struct rmq_bshard *bs, const char *name, uint32_t partitions,
			 void (*cb)(void *arg, int code, const char *msg), void *arg);

/* Packs a protobuf-c message and sends it on c.  Returns what
 * rmq_call_send returns, or -ENOMEM. */
struct ProtobufCMessage;
int rmq_send_pb(struct rmq_call *c, const struct ProtobufCMessage *m);
/* rmq_send_pb then rmq_call_finish(OK) */
void rmq_reply_pb(struct rmq_call *c, const struct ProtobufCMessage *m);

#endif /* RMQ_BROKER_BROKER_H */
