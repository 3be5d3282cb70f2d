/* SPDX-License-Identifier: Apache-2.0 */
/*
 * lookup.h - offset lookups of partitions on the shards that own them.
 *
 * ListOffsets, GetLeaderEpoch, the group coordinator's commit checks (a
 * committed offset above the high watermark is refused), DescribeGroups'
 * lag and ResetGroupOffsets all need a partition's log start, high watermark or
 * offset-for-time, which only the partition's shard may read.  A lookup
 * set is posted part by part to the owners and gathered back on the
 * calling shard:
 *
 *   caller shard                         owner shard(s)
 *   rmq_lookup_start ── part.msg ──────► read log start / HW / offset for
 *                                        time (never blocks)
 *        ◄──────────────── part.msg ──── reply
 *   every part back → done(arg)
 *
 * The caller owns the array until done runs; done runs on the calling
 * shard, possibly before rmq_lookup_start returns (every part unknown).
 */
#ifndef RMQ_BROKER_LOOKUP_H
#define RMQ_BROKER_LOOKUP_H

#include "broker/meta.h"
#include "core/shard.h"

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

struct rmq_bshard;
struct rmq_lookup_set;

/* What to look up (rustmq.client.OffsetSpec values). */
enum rmq_lookup_spec {
	RMQ_LOOKUP_EARLIEST = 1,
	RMQ_LOOKUP_LATEST = 2,
	RMQ_LOOKUP_TIMESTAMP = 3,
	RMQ_LOOKUP_MAX_TIMESTAMP = 4,
	/* Not an OffsetSpec: where leader epoch `epoch` ends in the leader's
	 * log (GetLeaderEpoch): offset, and epoch_found, the largest epoch
	 * <= it there (0: none, offset the log start). */
	RMQ_LOOKUP_EPOCH_END = 100,
	/* GetISR: the partition's replicas' progress into *isr. */
	RMQ_LOOKUP_ISR = 101,
	/* GetPartitionState: log_end and size_bytes (with log_start, hw). */
	RMQ_LOOKUP_STATE = 102,
};
struct rmq_isr_view;

struct rmq_lookup {
	/* In. */
	char topic[RMQ_TOPIC_NAME_MAX + 1];
	uint32_t partition;
	int spec;            /* enum rmq_lookup_spec; anything else: INVALID_REQUEST */
	int64_t ts_ms;       /* for RMQ_LOOKUP_TIMESTAMP */
	uint32_t epoch;      /* for RMQ_LOOKUP_EPOCH_END */
	struct rmq_isr_view *isr; /* for RMQ_LOOKUP_ISR (the caller's) */
	bool hosted;         /* route to the replica hosted here, led or not
			      * (else to the leader's: NOT_LEADER when another
			      * broker leads); REPLICA_NOT_AVAILABLE when it is
			      * not hosted here */
	/* Out: code is a rustmq ErrorCode; on OK, offset is the answer and
	 * log_start / hw describe the partition; for the timestamp specs
	 * ts_found is the timestamp of the record at offset. */
	int code;
	char err[320];
	uint64_t offset, log_start, hw;
	uint64_t log_end, size_bytes; /* the log's end offset and size, for every spec */
	uint32_t segments;            /* and its number of segments */
	uint32_t leader_epoch;
	uint32_t epoch_found; /* RMQ_LOOKUP_EPOCH_END */
	int64_t ts_found;
	/* Private. */
	struct rmq_xmsg msg;
	struct rmq_lookup_set *set;
};

/*
 * Looks up v[0..n) and calls done(arg) on this shard once all answered.
 * Returns 0, or -ENOMEM (done will not run).
 */
int rmq_lookup_start(struct rmq_bshard *bs, struct rmq_lookup *v, size_t n,
		     void (*done)(void *arg), void *arg);

/*
 * What replica `broker` holds of a partition, from an RMQ_LOOKUP_ISR
 * answered OK (v->isr filled by the partition's leader): its durable end
 * as the leader last heard it (0 when the leader tracks no such replica)
 * and the bytes of the leader's log it has, estimated from offsets over
 * the log's size (records of one log are about alike).  MigratePartition
 * and ReassignPartitions report it as their copies' progress.
 */
struct rmq_copy_progress {
	uint64_t source_end;   /* the leader's log end offset */
	uint64_t target_end;   /* the replica's durable end */
	uint64_t bytes_copied; /* <= bytes_total */
	uint64_t bytes_total;  /* the leader's log size */
	uint64_t lag_records;  /* source_end - target_end */
};
void rmq_lookup_copied(const struct rmq_lookup *v, uint32_t broker, struct rmq_copy_progress *out);

/*
 * On the partition's shard: the offset of the first record whose timestamp
 * is >= ts_ms (max: of the record with the greatest timestamp), its
 * timestamp into *ts_found when not NULL; the high watermark (and -1) when
 * no record matches.
 */
struct rmq_partition;
uint64_t rmq_lookup_time(struct rmq_partition *p, bool max, int64_t ts_ms, int64_t *ts_found);

#endif /* RMQ_BROKER_LOOKUP_H */
