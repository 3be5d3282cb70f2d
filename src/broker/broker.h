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
 * The method table (methods.c) decodes each request and calls its
 * handler; handlers live in produce.c (ProducerService), fetch.c
 * (ConsumerService's fetches, Subscribe), lookup.c (ListOffsets), group.c,
 * group_offsets.c and group_admin.c (consumer groups and their
 * AdminService RPCs), admin.c (AdminService's topic RPCs, AuthService, and
 * the RPCs of capabilities this node does not serve yet), metadata.c
 * (MetadataService) and health.c (health checks, GetMetrics).  Topic
 * changes are decided on shard 0 (topics.c); reply.c and describe.c hold
 * what every service uses to answer.
 */
#ifndef RMQ_BROKER_BROKER_H
#define RMQ_BROKER_BROKER_H

#include "broker/errcode.h"
#include "broker/meta.h"
#include "broker/topics.h"
#include "broker/reply.h"
#include "broker/partition.h"
#include "core/offload.h"
#include "core/shard.h"
#include "net/server.h"
#include "storage/coldread.h"
#include "storage/log.h"

#include <stdbool.h>
#include <stdint.h>

struct rmq_broker_config {
	const char *data_dir;
	const char *metadata_dir;      /* --metadata-dir: the controller's store; NULL: data_dir/controller */
	const char *node_id;
	const char *advertised_host;   /* what metadata tells clients; default: listen host */
	struct rmq_tls_ctx *peer_tls;  /* TLS to other brokers (a client context), or NULL */
	/* Authentication (auth.h): --auth required, the cluster's token
	 * secret (--token-secret-file; 0 bytes: no tokens), token lifetime,
	 * --super-users (comma-separated principals), and the Bearer header
	 * this broker's own calls to the others carry (a "Broker:ID" token). */
	bool auth_required;
	uint8_t token_secret[1024];
	size_t token_secret_len;
	uint64_t token_ttl_ns;
	const char *super_users;
	char peer_authz[512];
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
	/* How fetch answers carry their batches (fetch.c, "Zero copy"):
	 * referenced and sent by SENDMSG, spliced from the page cache
	 * (resident data; cfg.net.splice), or copied into each answer. */
	enum rmq_fetch_send { RMQ_FETCH_SENDMSG, RMQ_FETCH_SPLICE, RMQ_FETCH_COPY } fetch_send;
	/* --metrics-listen: Prometheus's GET /metrics on shard 0 (health.c);
	 * metrics_host NULL when off.  At most metrics_partitions_max
	 * partitions' series per scrape. */
	const char *metrics_host;
	uint16_t metrics_port;
	uint32_t metrics_partitions_max;
	uint64_t read_ahead_bytes;     /* read-ahead held per shard; 0 = none (coldread.h) */
	uint64_t produce_timeout_ns;   /* default when a request sets none */
	uint32_t max_inflight_produce; /* per shard */
	uint32_t io_helpers;           /* helper threads for blocking file work */
	uint32_t max_request_partitions; /* per request (request.h) */
	uint32_t max_request_names;    /* per request (request.h) */
	/* Consumer groups (group.h). */
	uint32_t offsets_partitions;   /* of __consumer_offsets; fixed once used */
	uint64_t offsets_segment_bytes;
	uint64_t offsets_replication_factor; /* a cluster: of __consumer_offsets (group.h) */
	uint32_t ctrl_snapshot_entries; /* --controller-snapshot-entries */
	const char *controller_voters; /* --controller-voters: "id@host:port,..." */
	const char *rack;              /* --rack: for rack-aware placement */
	uint64_t broker_heartbeat_ns;  /* --broker-heartbeat */
	uint64_t broker_session_ns;    /* --broker-session-timeout */
	uint64_t replica_lag_ns;       /* --replica-lag-max */
	uint64_t reassign_throttle;    /* --reassign-throttle: bytes/s per leader shard; 0 = none */
	uint64_t leader_rebalance_ns;  /* --leader-rebalance-interval; 0 = never (elect.h) */
	uint64_t group_min_session_ns, group_max_session_ns;
	uint64_t group_initial_delay_ns;
	uint32_t group_max_size;       /* 0 = unlimited */
	uint32_t group_max_pending;    /* member ids handed out, not yet joined, per group */
	uint32_t max_groups;           /* per node (each shard: its share) */
	uint32_t offset_metadata_max;
	uint64_t offsets_retention_ms; /* of empty groups; 0 = forever */
	struct rmq_net_config net;
};

struct rmq_broker {
	struct rmq_broker_config cfg;
	struct rmq_runtime *rt;
	uint32_t self;                 /* --node-id as a number */
	struct rmq_meta *initial_meta; /* loaded before the shards start */
	bool ctrl_import;              /* initial_meta came from an older meta/topics */
	/* What the controller last said of its quorum, for every shard:
	 * written by shard 0 under a sequence lock (odd while it writes),
	 * read by cluster.c (rmq_cluster_controller). */
	_Atomic uint64_t ctrl_seq;
	_Atomic uint32_t ctrl_leader;  /* 0: none known */
	_Atomic uint64_t ctrl_term;
	_Atomic uint32_t ctrl_nvoters;
	_Atomic uint32_t ctrl_voters[9];  /* RMQ_RAFT_VOTERS_MAX */
	_Atomic uint64_t ctrl_leader_addr[8]; /* its "host:port", NUL-padded (RMQ_RAFT_ADDR_MAX) */
	char cluster_id[40];           /* this data directory's (meta/cluster_id) */
	char incarnation[40];          /* this process, as it registers (set before the shards run) */
	bool cluster_joined;           /* ... written by a cluster it joined (meta/cluster_joined);
					* shard 0 only after the start */
	const char *fsync_name;        /* for the start-up line */
	uint64_t started_ms;
	_Atomic uint16_t port;         /* bound port (ephemeral ports) */
	struct rmq_offload_pool *offload; /* helper threads (core/offload.h) */
	struct rmq_offline *offline;   /* partitions failing to serve (partition.h) */
	struct rmq_quotas *quotas;     /* the principals' buckets (quota.h) */
	_Atomic int start_rc;          /* first error of the asynchronous start */
	_Atomic int serving;           /* 1 while accepting calls */
	/* Controlled shutdown (broker.c, heartbeat.c): 1 once the node stops
	 * and asks the controller to move its leaderships; 2 once it did. */
	_Atomic int handing_off;
	/* A cluster: a client asked for a group coordinator before
	 * __consumer_offsets existed; the controller's leader creates it
	 * (offsets_topic.c).  Set by any shard, read by shard 0. */
	_Atomic int offsets_wanted;
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
	struct rmq_dedup *dedup;           /* retries that must not append twice; made at
					    * the first producer id or idempotency key */
	uint64_t rolls_retained;           /* log rolls when retention last ran */
	/* Lifecycle (partition.h). */
	enum rmq_part_state state;
	int error;                         /* FAILED: why the open failed */
	bool close_wanted;                 /* OPENING: close once the open is back */
	bool remove;                       /* closing: remove the files too */
	struct rmq_offload job;            /* the step a helper thread runs */
	struct part_open *opening;         /* OPENING: the helper's open */
	struct rmq_timer retry;            /* FAILED: the next open */
	struct rmq_partition *closing_next;
	struct part_apply *apply;          /* the apply waiting for its state */
	struct rmq_partition *successor;   /* closing: opens its directory once it is closed */
	/* As the leader of replicas elsewhere (lead.c): one slot per follower,
	 * made in leader epoch slots_epoch; produce calls waiting for the
	 * followers (acks ALL, MAJORITY, CUSTOM: produce.c), in offset order. */
	struct rmq_rslot **slots;
	uint32_t nslots, slots_epoch;
	/* An ISR this leader asked for (UpdateISR), based on partition epoch
	 * isr_pend_epoch: until the metadata moves past that epoch, the high
	 * watermark waits for its members too (the proto's "union of the old
	 * and the proposed ISR"); nisr_pend 0: none out. */
	uint32_t nisr_pend, isr_pend_epoch;
	uint32_t isr_pend[RMQ_REPLICAS_MAX];
	uint64_t isr_retry_at;             /* no new ask before then, after a refusal */
	struct rmq_recover *recover;       /* a new leadership hearing from its replicas
					    * before it serves (recover.h); NULL: serving */
	struct rmq_produce *acks_head, *acks_tail;
	/* As a follower (follow.c): the leader's requests, the first one
	 * being carried out, the rest waiting their turn. */
	struct rmq_frep *follow_head, *follow_tail;
	uint32_t follow_queued;
	bool follow_busy;                  /* in follow.c's advance (no reentry) */
	bool follow_room;                  /* appends wait for room in the log's buffer */
	struct rmq_offload owner_job;      /* a new partition's owner file, written after its open */
	char *owner_line;                  /* ... what it says while the job is out, else NULL */
	/* Leadership (partition.h: set only there). */
	enum rmq_role role;
	uint32_t leader_epoch;
	uint32_t replicas;                 /* the topic's replication factor */
	uint64_t hw;                       /* high watermark: consumers read below */
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
	struct rmq_http1 *metrics;     /* shard 0, with --metrics-listen */
	struct rmq_meta *meta;         /* this shard's current snapshot */
	struct rmq_tlocal *local;      /* parallel to meta->topics */
	struct rmq_partition *dirty;   /* partitions to flush before waiting */
	struct rmq_partition *closing; /* closing, not yet with a helper (partition.c) */
	uint32_t nclosing;             /* closing or deleting */
	bool stopping_parts;           /* the shard's partitions were told to close */
	bool backlog_paused;           /* reads paused for the cross-shard backlog */
	uint64_t backlog_pauses;
	struct rmq_auth *auth;         /* SCRAM exchanges in progress (auth.c) */
	struct held_call *held;        /* calls waiting for a quota (methods.c) */
	/* Replication sent as a leader (lead.c): ReplicateStream messages,
	 * their parts (a request for one partition each), their stored bytes,
	 * and heartbeats. */
	uint64_t repl_msgs, repl_parts, repl_bytes, repl_beats;
	struct rmq_xmsg ready_msg;     /* start-up: to shard 0 and back (broker.c) */
	struct rmq_xmsg *ready_list;   /* shard 0: the ready messages in */
	unsigned nready;               /* shard 0: shards whose partitions are open */
	struct rmq_timer retention_timer;
	struct rmq_timer fsync_timer;
	uint32_t inflight_produce;
	struct rmq_cold_budget cold;   /* reads from the disk (storage/coldread.h) */
	struct rmq_gshard *groups;     /* groups this shard coordinates */
	struct rmq_ctrl *ctrl;         /* shard 0: the controller (controller.h) */
	struct rmq_fleet *fleet;       /* shard 0: brokers' sessions, when leading (fleet.h) */
	struct rmq_heartbeat *hb;      /* shard 0: this broker's registration (heartbeat.h) */
	struct rmq_link *fwd_link;     /* admin calls to the controller's leader (forward.h) */
	struct rmq_lead *lead;         /* streams to the followers of partitions led here (lead.h) */
	struct rmq_link *isr_link;     /* ISR changes to the controller's leader (isr.h) */
	uint64_t balance_due_ns;       /* shard 0, leading: the next leader balancing (elect.h) */
	bool balance_pending;          /* ... one is being decided */
	size_t balance_moved;          /* ... how many partitions it moves */
	bool offsets_creating;         /* shard 0, leading: __consumer_offsets being created (group.h) */
	/* Counters (GetMetrics). */
	uint64_t produce_requests, produce_records, produce_bytes;
	uint64_t fetch_requests, fetch_bytes;

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

/* Finds an ONLINE partition of this shard.  Returns NULL and sets *code to
 * TOPIC_NOT_FOUND or PARTITION_NOT_FOUND (rustmq.common.ErrorCode) when it
 * does not exist, or NOT_AVAILABLE when it is not ONLINE here (opening,
 * failed, closing: rmq_partition_unavailable says which). */
struct rmq_partition *rmq_partition_find(struct rmq_bshard *bs, const char *topic, uint32_t p,
					 int *code);

/* Why partition p of topic, which exists, is not ONLINE on this shard (a
 * static string or the open's error text). */
const char *rmq_partition_unavailable(struct rmq_bshard *bs, const char *topic, uint32_t p);

/* Routes (topic, p) to its shard: returns the shard id, or -1 with *code
 * set: TOPIC_NOT_FOUND or PARTITION_NOT_FOUND (not in this shard's view),
 * NOT_LEADER (another broker leads it), LEADER_NOT_AVAILABLE (none does,
 * or this process may not lead it yet: cluster.h rmq_cluster_leads). */
int rmq_route(struct rmq_bshard *bs, const char *topic, uint32_t p, int *code);
/* The same, with the topic in this shard's metadata in *found when it
 * exists (whatever the answer), for a caller that also needs it. */
int rmq_route_topic(struct rmq_bshard *bs, const char *topic, uint32_t p, int *code,
		    const struct rmq_topic **found);
/* The message for rmq_route's code, naming the leader and its address for
 * NOT_LEADER, into buf; returns buf. */
const char *rmq_route_error(struct rmq_bshard *bs, const char *topic, uint32_t p, int code,
			    char *buf, size_t len);

/* Makes m this shard's snapshot (rmq_partitions_apply, with the topics'
 * files removed when deleted, and the groups told); done(arg) runs when
 * the shard's partitions are in their new states.  Returns 0 or -ENOMEM
 * (done will not run). */
int rmq_broker_apply_meta(struct rmq_bshard *bs, struct rmq_meta *m, void (*done)(void *arg),
			  void *arg);

/* Marks p for a flush before the shard waits. */
void rmq_partition_mark_dirty(struct rmq_partition *p);

/* Milliseconds since the epoch. */
uint64_t rmq_wall_ms(void);

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
/* Replication progressed on p (lead.c): produce calls waiting for their
 * followers are answered when their acks level holds; and (leadership
 * lost, or the partition closes) every one left answered NOT_LEADER. */
void rmq_produce_replicated(struct rmq_partition *p);
void rmq_produce_fail_replicated(struct rmq_partition *p);

void rmq_fetch_unary(struct rmq_call *c, void *req);
void rmq_fetch_batch(struct rmq_call *c, void *req);
void rmq_fetch_subscribe(struct rmq_call *c, void *req);
void rmq_fetch_cancel(struct rmq_call *c);
void rmq_fetch_drain(struct rmq_call *c);
void rmq_list_offsets(struct rmq_call *c, void *req);
void rmq_get_leader_epoch(struct rmq_call *c, void *req); /* BrokerReplicationService (lookup.c) */
void rmq_get_isr(struct rmq_call *c, void *req);          /* the same */
void rmq_fetch_wake(struct rmq_partition *p); /* HW advanced */
/* The partition is closing: answers its long polls, stops its read-ahead
 * (its cold reads in flight still complete). */
void rmq_fetch_drop_waiters(struct rmq_partition *p);

void rmq_admin_create_topics(struct rmq_call *c, void *req);
/* ControllerBrokerService CreatePartitions, DeletePartitions (resize.c). */
void rmq_resize_create_partitions(struct rmq_call *c, void *req);
void rmq_resize_delete_partitions(struct rmq_call *c, void *req);
/* BrokerReplicationService, a follower's side (follow.c): ReplicateData,
 * ReplicateStream; and a closing partition's waiting requests answered. */
void rmq_follow_replicate(struct rmq_call *c, const uint8_t *msg, size_t len);
void rmq_follow_stream_msg(struct rmq_call *c, const uint8_t *msg, size_t len);
void rmq_follow_stream_half_close(struct rmq_call *c);
void rmq_follow_cancel(struct rmq_call *c);
void rmq_follow_drop(struct rmq_partition *p);
/* Once per cycle while p->follow_room: appends that waited for room in the
 * log's write buffer are tried again. */
void rmq_follow_resume(struct rmq_partition *p);
/* BrokerReplicationService SendHeartbeat, a follower's side (replica_beat.c). */
void rmq_replica_heartbeat(struct rmq_call *c, void *req);
/* ControllerBrokerService ReassignPartitions (reassign.c). */
void rmq_reassign_partitions(struct rmq_call *c, void *req);
void rmq_reassign_cancel(struct rmq_call *c);
/* ControllerBrokerService UpdateClusterConfig, GetClusterConfig (cluster_config.c). */
void rmq_cluster_update_config(struct rmq_call *c, void *req);
/* ProducerService.InitTransaction: an idempotent producer id (producer_ids.c). */
void rmq_producer_init(struct rmq_call *c, void *req);
void rmq_cluster_get_config(struct rmq_call *c, void *req);
void rmq_admin_delete_topics(struct rmq_call *c, void *req);
void rmq_admin_list_topics(struct rmq_call *c, void *req);
void rmq_admin_describe_topics(struct rmq_call *c, void *req);
void rmq_admin_alter_configs(struct rmq_call *c, void *req);
void rmq_admin_describe_configs(struct rmq_call *c, void *req);
void rmq_admin_describe_cluster(struct rmq_call *c, void *req);
void rmq_md_topic_metadata(struct rmq_call *c, void *req);
void rmq_md_list_topics(struct rmq_call *c, void *req);
void rmq_md_broker_list(struct rmq_call *c, void *req);
void rmq_md_partition_leader(struct rmq_call *c, void *req);
void rmq_md_cluster_metadata(struct rmq_call *c, void *req);
void rmq_md_find_coordinator(struct rmq_call *c, void *req);
void rmq_health_check(struct rmq_call *c, void *req);
void rmq_health_watch(struct rmq_call *c, void *req);
void rmq_health_watch_cancel(struct rmq_call *c);
void rmq_broker_health(struct rmq_call *c, void *req);
void rmq_broker_metrics(struct rmq_call *c, void *req);
/* --metrics-listen's handler (net/http1.h): GET /metrics in Prometheus's
 * text format, gathered from every shard as GetMetrics is. */
struct rmq_http1_req;
void rmq_metrics_http(void *arg, struct rmq_http1_req *r, const char *path);
void rmq_not_served(struct rmq_call *c, const uint8_t *msg, size_t len);
void rmq_ctrl_get_configuration(struct rmq_call *c, void *req);
void rmq_ctrl_add_peer(struct rmq_call *c, void *req);
void rmq_ctrl_remove_peer(struct rmq_call *c, void *req);

/* Creates (auto_create) a topic through shard 0 for a produce to an
 * unknown topic; cb runs on this shard with a rustmq ErrorCode. */
struct rmq_topic_request;
int rmq_admin_create_one(struct rmq_bshard *bs, const char *name, uint32_t partitions,
			 void (*cb)(void *arg, int code, const char *msg), void *arg);


#endif /* RMQ_BROKER_BROKER_H */
