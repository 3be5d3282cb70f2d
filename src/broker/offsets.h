/* SPDX-License-Identifier: Apache-2.0 */
/*
 * offsets.h - the group coordinator's internal log: one partition of
 * __consumer_offsets, on the storage engine.
 *
 * Group g lives in partition fnv1a(g) % --offsets-partitions, and that
 * partition's shard (rmq_partition_shard("__consumer_offsets", p)) is the
 * group's coordinator.  The log holds one record per change, keyed so that
 * a later record with the same key supersedes an earlier one:
 *
 *   key   = 0x01 'O' u16be len, group, u16be len, topic, u32be partition
 *           0x01 'G' u16be len, group
 *   value = 'O': rustmq.client.OffsetFetchPartition (offset, metadata,
 *                leader_epoch, commit_time) without topic_partition
 *           'G': rustmq.controller.GroupDescription (generation_id,
 *                protocol, leader_member_id) of the last generation formed
 *           empty: a tombstone, the key is gone (a deleted group)
 *
 * Batches are plain RecordBatches (uncompressed), each record a
 * rustmq.common.Record {1: key, 2: value}, so `rmq consume
 * __consumer_offsets`-style tools could read them; the directory is
 * DATA_DIR/__consumer_offsets-P and the name is reserved for topics.
 *
 * Compaction (docs/groups.md): the coordinator rewrites its live records
 * at the tail and then drops the segments wholly before that rewrite
 * (rmq_log_delete_before), so the log stays within about twice the live
 * set plus two segments.
 *
 * Appends are queued in order; a record set larger than one batch is split
 * and `done` runs once, after the last of its batches is durable per the
 * broker's fsync policy.  Everything runs on the owning shard.
 *
 * In a cluster (docs/replication.md, "Group coordinator") the log is not
 * the node's own but partition `index` of the replicated topic
 * __consumer_offsets, attached while this node leads it
 * (rmq_olog_attach): `done` then waits for the partition's high
 * watermark, and leadership lost fails what waits (rmq_olog_detach).
 * Compaction runs on the leader as on one node; followers drop the same
 * prefix when the leader's log start reaches them (follow.c).
 */
#ifndef RMQ_BROKER_OFFSETS_H
#define RMQ_BROKER_OFFSETS_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#define RMQ_OFFSETS_TOPIC "__consumer_offsets"

struct rmq_bshard;
struct rmq_olog;

struct rmq_orec {
	const uint8_t *key;
	size_t klen;
	const uint8_t *val;   /* NULL / 0 = tombstone */
	size_t vlen;
};

typedef void (*rmq_orec_fn)(void *arg, const struct rmq_orec *r);

/*
 * Opens partition `index` of the internal log under the broker's data
 * directory and replays it, calling apply for every record in log order.
 * Returns 0 and *out, or a negated errno / RMQ_E* from rmq_log_open.
 */
int rmq_olog_open(struct rmq_bshard *bs, uint32_t index, uint64_t segment_bytes,
		  rmq_orec_fn apply, void *arg, struct rmq_olog **out);

/* Flushes, waits for queued appends, closes (the node's own log only). */
void rmq_olog_close(struct rmq_olog *l);

/*
 * Cluster: the log of partition part of __consumer_offsets, which this
 * node leads (ONLINE, leader): replays it (every record in log order, up
 * to its durable end) and appends to it in part's current leader epoch.
 * The partition must outlive the log until rmq_olog_detach.  Returns 0 and
 * *out, or -ENOMEM.
 */
struct rmq_partition;
int rmq_olog_attach(struct rmq_bshard *bs, struct rmq_partition *part, rmq_orec_fn apply,
		    void *arg, struct rmq_olog **out);
/* The partition is led here no more (or closes): every set not yet done
 * fails with RMQ_ESTATE (now or, for batches the partition's log still
 * holds, when they come back), and the log is freed after the last.  The
 * caller drops its pointer.  NULL: nothing. */
void rmq_olog_detach(struct rmq_olog *l);
/* Attached: the partition's high watermark moved; sets it passed are done. */
void rmq_olog_hw(struct rmq_olog *l);
/* Attached: whether the partition's ISR is smaller than its topic's
 * min.insync.replicas (the cluster's default unless the topic sets it),
 * so that a commit must be refused before it is appended (Kafka's
 * NOT_ENOUGH_REPLICAS for acks=all); *nisr and *min say how.  False for
 * the node's own log. */
bool rmq_olog_short(const struct rmq_olog *l, uint32_t *nisr, uint32_t *min);
/* Whether l is attached, and the leader epoch it was attached in. */
bool rmq_olog_replicated(const struct rmq_olog *l);
uint32_t rmq_olog_epoch(const struct rmq_olog *l);

/*
 * Queues recs[0..n) for append (copied: the caller may free them on
 * return).  done(arg, res) runs once every batch is durable (res 0) or on
 * the first failure (res < 0: nothing later in this set is appended);
 * it may run before rmq_olog_append returns on an immediate failure.
 * Returns 0, or -ENOMEM (done will not run).
 */
int rmq_olog_append(struct rmq_olog *l, const struct rmq_orec *recs, size_t n,
		    void (*done)(void *arg, int res), void *arg);

/* Submits queued appends; call once per shard cycle. */
void rmq_olog_flush(struct rmq_olog *l);

/* True when nothing is queued or in flight. */
bool rmq_olog_idle(const struct rmq_olog *l);
/* True when every append handed in has been acknowledged (its done ran):
 * the log then holds exactly what its users applied. */
bool rmq_olog_settled(const struct rmq_olog *l);

uint64_t rmq_olog_size(const struct rmq_olog *l);    /* bytes on disk */
uint64_t rmq_olog_end(const struct rmq_olog *l);     /* next offset */
uint32_t rmq_olog_index(const struct rmq_olog *l);
/* Drops the segments wholly before offset (after a compaction rewrite). */
int rmq_olog_delete_before(struct rmq_olog *l, uint64_t offset);

/* Keys (see above).  Return the key length written into buf (which holds
 * RMQ_OKEY_MAX bytes). */
#define RMQ_OKEY_MAX (2 + 2 + 255 + 2 + 255 + 4)
size_t rmq_okey_offset(uint8_t *buf, const char *group, const char *topic, uint32_t partition);
size_t rmq_okey_group(uint8_t *buf, const char *group);

/* Parses a key: kind 'O' or 'G' with the parts (not NUL-terminated:
 * lengths given), or returns -1 for a key this version does not know. */
struct rmq_okey {
	char kind;
	const char *group, *topic;
	size_t glen, tlen;
	uint32_t partition;
};
int rmq_okey_parse(const uint8_t *key, size_t len, struct rmq_okey *k);

#endif /* RMQ_BROKER_OFFSETS_H */
