/* SPDX-License-Identifier: Apache-2.0 */
/*
 * group.h - consumer groups: the coordinator and committed offsets.
 *
 * Each shard coordinates the groups whose __consumer_offsets partition it
 * owns (offsets.h).  A group RPC arriving on any shard is posted to the
 * group's coordinator shard and answered from there:
 *
 *   origin (connection's shard)            coordinator shard
 *   unpack, route by group id ─ greq ────► group state machine; may hold
 *                                          (JoinGroup until the rebalance
 *                                          completes), look offsets up on
 *                                          partition owners (lookup.h), or
 *                                          append to the offsets log and
 *                                          wait until it is durable
 *        ◄──────────── packed answer ───── reply
 *   send, finish
 *
 * AdminService's ListGroups, DescribeGroups and DeleteGroups visit every
 * shard in turn with one message (a tour) and answer from the origin.
 * The state machine, timeouts and assignment rules are in docs/groups.md.
 */
#ifndef RMQ_BROKER_GROUP_H
#define RMQ_BROKER_GROUP_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

struct rmq_bshard;
struct rmq_call;

/* Settles --offsets-partitions against what data_dir was set up with
 * (DATA_DIR/meta/offsets-partitions, written on first start): 0 takes
 * the stored count (16 for a new directory); a different count is refused
 * with RMQ_EBADFLAG, as groups would move and lose their offsets.  Runs
 * before the shards start.  Returns 0 or an error. */
int rmq_groups_layout(const char *data_dir, uint32_t *partitions);

/* Opens the offsets partitions this shard owns and rebuilds its groups
 * from them.  Returns 0 or a negated errno. */
int rmq_groups_init(struct rmq_bshard *bs);
/* Per cycle: submits queued offsets appends. */
void rmq_groups_flush(struct rmq_bshard *bs);
/* While stopping: answers held joins at once; true when nothing this
 * shard sent or holds is still waiting. */
bool rmq_groups_drained(struct rmq_bshard *bs);
void rmq_groups_fini(struct rmq_bshard *bs);

/* After a metadata change: stable groups subscribed to a topic that was
 * created, deleted or re-created rebalance. */
struct rmq_meta;
void rmq_groups_meta_changed(struct rmq_bshard *bs, const struct rmq_meta *old,
			     const struct rmq_meta *m);
/* Deletes the offsets of groups empty for longer than --offsets-retention
 * (Kafka's offsets.retention.minutes); on the retention timer. */
void rmq_groups_retain(struct rmq_bshard *bs);

/* Whether the node runs in a cluster (--controller-voters): then
 * __consumer_offsets is a replicated topic, and a group is coordinated by
 * the leader of its partition (docs/replication.md, "Group coordinator");
 * alone, by this node from its own log. */
struct rmq_broker;
bool rmq_groups_replicated(const struct rmq_broker *b);
/* A cluster: whether this process's own registration is in the shard's
 * snapshot, RUNNING.  Until then a restarted broker's snapshot is the one
 * it stopped with: it neither coordinates nor names itself coordinator. */
bool rmq_groups_registered(const struct rmq_bshard *bs);

/* partition.c, on a partition of __consumer_offsets in a cluster: its
 * role, epoch or state changed (the groups of a partition led here now are
 * loaded from its log; those of one led here no more are dropped), or its
 * high watermark moved (commits it passed are answered). */
struct rmq_partition;
void rmq_groups_partition_changed(struct rmq_partition *p);
void rmq_groups_partition_hw(struct rmq_partition *p);

/* Shard 0, from the controller's tick: creates __consumer_offsets when
 * this node leads the controller of a cluster and it does not exist yet
 * (offsets_topic.c). */
void rmq_offsets_topic_tick(struct rmq_bshard *bs);

/* Groups this shard coordinates. */
size_t rmq_groups_count(struct rmq_bshard *bs);

/* The offsets partition of a group, and the shard coordinating it. */
uint32_t rmq_group_partition(const struct rmq_bshard *bs, const char *group);
unsigned rmq_group_shard(const struct rmq_bshard *bs, const char *group);

/* ConsumerService */
void rmq_group_join(struct rmq_call *c, void *req);
void rmq_group_sync(struct rmq_call *c, void *req);
void rmq_group_heartbeat(struct rmq_call *c, void *req);
void rmq_group_leave(struct rmq_call *c, void *req);
void rmq_group_commit(struct rmq_call *c, void *req);
void rmq_group_fetch_offsets(struct rmq_call *c, void *req);
/* AdminService */
void rmq_group_list(struct rmq_call *c, void *req);
void rmq_group_describe(struct rmq_call *c, void *req);
void rmq_group_delete(struct rmq_call *c, void *req);
void rmq_group_reset(struct rmq_call *c, void *req);

#endif /* RMQ_BROKER_GROUP_H */
