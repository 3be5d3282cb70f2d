/* SPDX-License-Identifier: Apache-2.0 */
/*
 * meta.h - the node's topic metadata: an immutable, reference-counted
 * snapshot, its validation rules, its file, and partition placement.
 *
 * Ownership.  Shard 0 owns the metadata: topic changes are forwarded to
 * it, it commits the new snapshot through the controller (controller.h:
 * an encoded rustmq.common.ClusterMetadata in a Raft entry) and posts the
 * snapshot to every shard.  A shard reads only its own current pointer;
 * the snapshot's reference count (one per shard holding it) is the only
 * shared state, touched once per shard per change.
 *
 * Placement.  The controller places each partition on brokers (its
 * replicas, rmq_passign) and names its leader; on each of its brokers,
 * partition p of topic t lives on shard
 *     (fnv1a32(t) + p) % shards
 * so a topic's partitions spread over consecutive shards; GetTopicMetadata
 * reports it.
 */
#ifndef RMQ_BROKER_META_H
#define RMQ_BROKER_META_H

#include <stdatomic.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>

#define RMQ_TOPIC_NAME_MAX 249
#define RMQ_PARTITIONS_MAX 10000

/* Topic-level configuration (the keys of controller/admin.proto). */
struct rmq_topic_config {
	int64_t retention_ms;      /* -1 = forever */
	int64_t retention_bytes;   /* -1 = unlimited */
	uint64_t segment_bytes;
	uint64_t segment_ms;
	int compression;           /* -1 = keep the producer's, else a codec id */
	uint32_t min_insync_replicas;
	uint64_t max_message_bytes;
	bool log_append_time;      /* message.timestamp.type=LogAppendTime */
	bool unclean_election;     /* unclean.leader.election.enable (elect.h) */
	uint32_t overrides;        /* bit per key set on the topic (not defaults) */
};

/* Where a partition lives and who leads it (the controller decides). */
#define RMQ_REPLICAS_MAX 8
struct rmq_passign {
	uint32_t leader;           /* broker id; 0 = none (LEADER_NOT_AVAILABLE) */
	uint32_t leader_epoch;     /* bumped by every change of leader */
	uint64_t gen;              /* which making of partition p of the topic (0: before
				    * generations); a new one holds none of an older's records */
	uint32_t part_epoch;       /* raised by every change of leader or ISR (UpdateISR) */
	uint32_t nreplicas, nisr;
	uint32_t replicas[RMQ_REPLICAS_MAX]; /* broker ids, preferred leader first */
	uint32_t isr[RMQ_REPLICAS_MAX];
	/* A reassignment under way (reassign.h), ntarget = 0 when none: the
	 * last nadding replicas are the ones it adds; replicas become target
	 * once they are in sync. */
	uint32_t ntarget, nadding;
	uint32_t target[RMQ_REPLICAS_MAX];
};

struct rmq_topic {
	char name[RMQ_TOPIC_NAME_MAX + 1];
	char id[40];               /* random UUID, new on every create */
	uint32_t partitions;
	uint32_t replication_factor;
	uint64_t created_ms;
	bool internal;
	struct rmq_topic_config cfg;
	struct rmq_passign *parts; /* [partitions], owned by the snapshot */
};

/* A registered broker (rustmq.common.BrokerInfo's stored part). */
#define RMQ_BROKER_HOST_MAX 255
struct rmq_broker_rec {
	uint32_t id;
	uint32_t port;
	uint32_t shards;
	uint32_t state;            /* RUSTMQ__COMMON__BROKER_STATE__BROKER_* */
	uint64_t epoch;            /* bumped by every registration of a new process */
	char host[RMQ_BROKER_HOST_MAX + 1];
	char rack[64];
	char incarnation[40];      /* the process that registered */
	char version[32];
	/* Derived by rmq_meta_set_broker, for answers: the id as text and
	 * "host:port" ("[host]:port" for an IPv6 address). */
	char id_str[12];
	char endpoint[RMQ_BROKER_HOST_MAX + 24];
};

struct rmq_sec;

struct rmq_meta {
	_Atomic uint32_t refs;
	uint64_t version;          /* the controller's index of this state */
	char cluster_id[40];
	/* What a topic has where it sets nothing: the node's flags, then the
	 * cluster's configuration (UpdateClusterConfig; those keys' bits in
	 * defaults.overrides); num.partitions (0 = --default-partitions). */
	struct rmq_topic_config defaults;
	uint32_t num_partitions;
	uint64_t gens;             /* the last partition generation given */
	uint64_t producer_ids;     /* the last producer id given (producer_ids.c) */
	size_t ntopics;
	struct rmq_topic *topics;  /* sorted by name */
	size_t nbrokers;
	struct rmq_broker_rec *brokers; /* sorted by id */
	struct rmq_sec *sec;       /* users, ACLs, quotas (acl.h): shared by copies; NULL = none */
};

/* The configuration keys, in the order DescribeConfigs lists them. */
#define RMQ_TOPIC_CONFIG_KEYS 10
extern const char *const rmq_topic_config_keys[RMQ_TOPIC_CONFIG_KEYS];
extern const char *const rmq_topic_config_docs[RMQ_TOPIC_CONFIG_KEYS];

/* Checks a topic name like Kafka: 1..249 of [a-zA-Z0-9._-], not "." or
 * "..".  Returns 0, or -1 with the reason in why (static string). */
int rmq_topic_name_check(const char *name, const char **why);

/* Sets key to value in cfg (and its override bit).  Returns 0, or -1 with
 * a one-line reason in err. */
int rmq_topic_config_set(struct rmq_topic_config *cfg, const char *key, const char *value,
			 char *err, size_t errlen);

/*
 * Keeps max.message.bytes within what the topic can store: one batch must
 * fit one segment (storage/log.h, rmq_log_batch_bytes_max(segment.bytes))
 * and arrive in one gRPC message (node_max, --max-message-bytes).  A value
 * the topic did not set (the node's default) is lowered to the limit; a
 * value it set above the limit is refused: returns -1 with a reason naming
 * the limit in err, else 0.
 */
int rmq_topic_config_fit(struct rmq_topic_config *cfg, uint64_t node_max, char *err,
			 size_t errlen);

/* Formats the value of key i (0..RMQ_TOPIC_CONFIG_KEYS-1) into buf. */
void rmq_topic_config_get(const struct rmq_topic_config *cfg, unsigned i, char *buf,
			  size_t len);

/* A new snapshot with refs = 0 (defaults zeroed: the caller's).  Returns
 * NULL on allocation failure. */
struct rmq_meta *rmq_meta_new(size_t ntopics);

/* A copy of m (its partitions and brokers too) with room for `extra` more
 * topics and one more broker (refs = 0). */
struct rmq_meta *rmq_meta_copy(const struct rmq_meta *m, size_t extra);

/* Frees a snapshot nobody holds (refs = 0, never published). */
void rmq_meta_free(struct rmq_meta *m);

/* Inserts t keeping the order (room must exist); m takes t->parts over.
 * Returns the index. */
size_t rmq_meta_insert(struct rmq_meta *m, const struct rmq_topic *t);

/* Removes topic i (and frees its partitions). */
void rmq_meta_remove(struct rmq_meta *m, size_t i);

/* The broker of id, or NULL. */
const struct rmq_broker_rec *rmq_meta_broker(const struct rmq_meta *m, uint32_t id);
/* Adds or replaces broker r (rmq_meta_copy left room for one more), its
 * derived strings made. */
void rmq_meta_set_broker(struct rmq_meta *m, const struct rmq_broker_rec *r);
/* r as the protocol's BrokerInfo, into bi and id (the strings point into
 * r). */
struct Rustmq__Common__BrokerInfo;
struct Rustmq__Common__BrokerId;
void rmq_meta_broker_info(const struct rmq_broker_rec *r, struct Rustmq__Common__BrokerInfo *bi,
			  struct Rustmq__Common__BrokerId *id);

/* t's own fields (name, id, internal, created, partition count and
 * replication factor) as the protocol's TopicMetadata (tm->config = tc,
 * tm->created = ts; partitions and configs left to the caller). */
struct Rustmq__Common__TopicMetadata;
struct Rustmq__Common__TopicConfig;
struct Google__Protobuf__Timestamp;
void rmq_meta_topic_pb(const struct rmq_topic *t, struct Rustmq__Common__TopicMetadata *tm,
		       struct Rustmq__Common__TopicConfig *tc, struct Google__Protobuf__Timestamp *ts);

/* Whether broker id is a replica of partition p of t. */
bool rmq_meta_is_replica(const struct rmq_topic *t, uint32_t p, uint32_t id);

/* The cluster's configuration keys beyond the topic keys. */
#define RMQ_CLUSTER_NUM_PARTITIONS "num.partitions"

/* Sets (value) or, value NULL, reverts to node (the node's flags) cluster
 * configuration key in m, and gives every topic the new value where it
 * sets none.  Returns 0, or -1 with a one-line reason in err (m
 * unchanged). */
int rmq_meta_cluster_config(struct rmq_meta *m, const struct rmq_topic_config *node,
			    const char *key, const char *value, char *err, size_t errlen);

/* Index of topic name, or -1. */
long rmq_meta_find(const struct rmq_meta *m, const char *name);
/* Partition p of topic name's assignment (its topic into *t), or NULL. */
struct rmq_passign *rmq_meta_passign(struct rmq_meta *m, const char *name, uint32_t p,
				     struct rmq_topic **t);

void rmq_meta_ref(struct rmq_meta *m);
void rmq_meta_unref(struct rmq_meta *m);

/* Reads data_dir/meta/topics, where versions before the controller kept
 * the topics (controller.c imports it; their partitions are self's).  A
 * missing file is an empty snapshot.  Returns 0 and *out (refs = 0), or
 * RMQ_ECORRUPT, or a negated errno. */
int rmq_meta_load(const char *data_dir, const struct rmq_topic_config *defaults, uint32_t self,
		  struct rmq_meta **out);

/* m as an encoded rustmq.controller.ControllerState (the controller's
 * commands and snapshots): *buf is malloc'd with headroom bytes free in
 * front of the *len bytes of the encoding (for what goes before it: a
 * command byte, an answer's fields), so it is never copied.  Returns 0 or
 * -ENOMEM. */
int rmq_meta_encode(const struct rmq_meta *m, size_t headroom, uint8_t **buf, size_t *len);
/* The reverse (refs = 0), on the node's defaults: RMQ_ECORRUPT for bytes
 * that are not a valid state (repeated or invalid topics or brokers,
 * partitions missing). */
int rmq_meta_decode(const uint8_t *buf, size_t len, const struct rmq_topic_config *defaults,
		    struct rmq_meta **out);
/* An encoded rustmq.common.ClusterMetadata of topics only, as versions
 * before the brokers kept it (meta/topics, the first SET_TOPICS commands):
 * every partition becomes broker self's, led by it in epoch 1. */
int rmq_meta_decode_topics(const uint8_t *buf, size_t len,
			   const struct rmq_topic_config *defaults, uint32_t self,
			   struct rmq_meta **out);

/* The shard that owns partition p of topic name. */
unsigned rmq_partition_shard(const char *name, uint32_t p, unsigned shards);

/* "data_dir/<topic>-<p>" */
void rmq_partition_dir(char *buf, size_t len, const char *data_dir, const char *topic, uint32_t p);

/* Fills id with a random UUID v4 string. */
void rmq_uuid(char id[40]);

/* Small files of DATA_DIR/meta: written whole (temporary file, fsync,
 * rename, directory fsync), read whole.  Return 0 / the bytes read, or a
 * negated errno (-ENOENT: never written).  A write that finds the
 * filesystem full uses the room kept by rmq_meta_reserve (so that a full
 * disk still takes the DeleteTopics that frees it), and reserves it again
 * after a later write. */
int rmq_meta_write_file(const char *data_dir, const char *name, const void *buf, size_t len);
ssize_t rmq_meta_read_file(const char *data_dir, const char *name, void *buf, size_t len);

/* DATA_DIR/meta/cluster_joined: present once the cluster this node
 * registered with has written its id into meta/cluster_id (heartbeat.c);
 * from then on the node is refused by the controller of another cluster. */
#define RMQ_META_CLUSTER_JOINED "cluster_joined"

/* Keeps RMQ_META_RESERVE_BYTES allocated in DATA_DIR/meta/reserve for the
 * metadata files (above).  Returns 0, or a negated errno (-ENOSPC: no room
 * now; tried again at the next metadata write).  Blocking file calls: at
 * start or on a helper thread. */
#define RMQ_META_RESERVE "reserve"
#define RMQ_META_RESERVE_BYTES (8u << 20)
int rmq_meta_reserve(const char *data_dir);

#endif /* RMQ_BROKER_META_H */
