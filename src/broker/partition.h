/* SPDX-License-Identifier: Apache-2.0 */
/*
 * partition.h - the partitions a shard owns: their lifecycle, driven by
 * the shard's ring and helper threads, and their leadership, set in one
 * place.
 *
 * Lifecycle.  Each partition is a small state machine; nothing in it
 * blocks the shard or runs a nested event loop:
 *
 *            open on a helper thread (recovery reads the files)
 *   OPENING ───────────────────────────────────────► ONLINE ◄─┐
 *      │ the open failed (disk full, EIO, ...)          │      │ a retry
 *      └──────────────────────────────────────────► FAILED ───┘ opened it
 *                                                       │
 *   topic deleted, or the node stops                    ▼
 *   ONLINE / FAILED ─────────────────────────────► CLOSING: no new work;
 *        waiting appends fail, long polls are answered, cold reads and
 *        every write and sync in flight finish (checked each cycle)
 *                 │ quiet: the log leaves the ring; a helper thread
 *                 ▼ syncs and closes it (and removes its files when the
 *              DELETING    topic was deleted)
 *                 │
 *                 ▼ freed
 *
 * Only ONLINE partitions are found by requests (rmq_partition_find);
 * others answer NOT_AVAILABLE (retriable) with the reason.  A FAILED open
 * is retried every RMQ_PART_RETRY_NS.  A metadata change applied on a
 * shard completes (its done callback) once every partition it opened is
 * ONLINE or FAILED and every partition it removed is freed, so when
 * CreateTopics answers, the topic's partitions serve (or their failure is
 * in the answer), and a topic deleted and created again never meets its
 * old files.
 *
 * Leadership.  A partition's role, its leader epoch and its high
 * watermark are set only through rmq_partition_set_role() and
 * rmq_partition_set_hw(), which the controller and replication drive;
 * everything else reads them here.  The high watermark is the partition's,
 * not the log's: consumers read below it, and it is the log's durable end
 * only while this node is the whole ISR (one node: every partition).
 * Every batch appended carries the leader epoch of the leader that wrote
 * it.
 */
#ifndef RMQ_BROKER_PARTITION_H
#define RMQ_BROKER_PARTITION_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

struct rmq_bshard;
struct rmq_meta;
struct rmq_partition;

enum rmq_part_state {
	RMQ_PART_OPENING,
	RMQ_PART_ONLINE,
	RMQ_PART_FAILED,
	RMQ_PART_CLOSING,
	RMQ_PART_DELETING,
};

enum rmq_role {
	RMQ_ROLE_NONE,     /* not a replica in service */
	RMQ_ROLE_LEADER,   /* takes appends, serves reads */
	RMQ_ROLE_FOLLOWER, /* replicates the leader (replication) */
};

/* How often a partition that could not be opened is tried again. */
#define RMQ_PART_RETRY_NS (5ULL * 1000 * 1000 * 1000)

/*
 * Makes m this shard's snapshot: partitions of new topics it owns start
 * opening, those of topics that went (or changed id) start closing, and
 * their files are removed when remove_gone.  done(arg) runs on this shard
 * once every partition it opened is ONLINE or FAILED and every partition
 * it closed is freed (possibly before this returns).  Returns 0, or
 * -ENOMEM with nothing changed (done will not run).
 */
int rmq_partitions_apply(struct rmq_bshard *bs, struct rmq_meta *m, bool remove_gone,
			 void (*done)(void *arg), void *arg);

/* Every cycle: flushes the partitions appended to, retries their
 * backlogs, advances closing partitions. */
void rmq_partitions_cycle(struct rmq_bshard *bs);

/* Stopping: starts closing every partition (once); true once all are
 * freed. */
bool rmq_partitions_stopped(struct rmq_bshard *bs);

/* Runs fn on every ONLINE partition of this shard. */
void rmq_partitions_for_each(struct rmq_bshard *bs, void (*fn)(struct rmq_partition *p));

/* Partitions of this shard in each state (GetMetrics, health). */
void rmq_partitions_count(const struct rmq_bshard *bs, uint64_t count[RMQ_PART_DELETING + 1]);

/*
 * The node's partitions that are not serving for a failure (FAILED: the
 * open failed, or the log failed and waits to be reopened), for answers
 * given on any shard (metadata, CreateTopics, health).  The owner shard
 * writes its entries; a mutex guards the list, which is short and changes
 * only on failures and recoveries.
 */
struct rmq_offline;
int rmq_offline_create(struct rmq_offline **out);
void rmq_offline_destroy(struct rmq_offline *o);
/* The error of partition p of the topic with id topic_id, 0 when it
 * serves (or is not known); its reason into why (NUL-terminated). */
int rmq_offline_lookup(struct rmq_offline *o, const char *topic_id, uint32_t p, char *why,
		       size_t len);
/* Offline partitions of topic_id (all topics when NULL). */
size_t rmq_offline_count(struct rmq_offline *o, const char *topic_id);

/* The controller's decision (with one node: leader in epoch 1 at open). */
void rmq_partition_set_role(struct rmq_partition *p, enum rmq_role role, uint32_t leader_epoch);

/* Replication's: the new high watermark (never backwards). */
void rmq_partition_set_hw(struct rmq_partition *p, uint64_t hw);

#endif /* RMQ_BROKER_PARTITION_H */
