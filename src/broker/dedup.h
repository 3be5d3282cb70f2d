/* SPDX-License-Identifier: Apache-2.0 */
/*
 * dedup.h - retries that must not append twice: idempotent producer
 * sequences and idempotency keys, per partition, on the partition's shard.
 *
 * Producer sequences (Kafka's idempotent producer).  For each producer id
 * the partition remembers its epoch, the next sequence it expects, and the
 * last RMQ_DEDUP_RECENT batches (base sequence, record count, offsets):
 *
 *   epoch < known epoch                    → FENCED (INVALID_PRODUCER_EPOCH)
 *   base sequence of a remembered batch    → DUPLICATE (its original offsets),
 *                                            or IN_FLIGHT while it is not yet
 *                                            acknowledged (retry later)
 *   base sequence != the expected one      → OUT_OF_ORDER
 *   otherwise                              → NEW (remembered, pending)
 *
 * A producer seen for the first time (or with a new epoch) starts at the
 * sequence it sends.  The table holds RMQ_DEDUP_PRODUCERS producers per
 * partition; the least recently used is forgotten first.  On start the
 * broker replays the newest segment's batch headers into it
 * (rmq_dedup_replay), so a retry across a restart is still recognised when
 * its batch is in that segment.  A follower replays the batches it appends,
 * and forgets those it cuts (rmq_dedup_truncate), so a retry after a
 * failover is recognised by the new leader too.
 *
 * Idempotency keys (ProduceRequest.idempotency_key): the last
 * RMQ_DEDUP_KEYS keys of the partition within RMQ_DEDUP_KEY_TTL_MS map to
 * their result; a retry with the same key answers DUPLICATE_REQUEST with
 * it.  Keys live in memory only.
 *
 * Nothing here allocates after rmq_dedup_new(); no function is
 * thread-safe (one partition, one shard).
 */
#ifndef RMQ_BROKER_DEDUP_H
#define RMQ_BROKER_DEDUP_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#define RMQ_DEDUP_RECENT 5
#define RMQ_DEDUP_PRODUCERS 256
#define RMQ_DEDUP_KEYS 1024
#define RMQ_DEDUP_KEY_TTL_MS (15ULL * 60 * 1000)

enum rmq_dedup_verdict {
	RMQ_DEDUP_NEW,
	RMQ_DEDUP_DUPLICATE,
	RMQ_DEDUP_IN_FLIGHT,
	RMQ_DEDUP_OUT_OF_ORDER,
	RMQ_DEDUP_FENCED,
};

/* What the original append answered. */
struct rmq_dedup_result {
	uint64_t base_offset;
	uint32_t count;
	int64_t first_ts_ms;
	uint64_t append_ms;
};

struct rmq_dedup;

/* Returns NULL when out of memory. */
struct rmq_dedup *rmq_dedup_new(void);
void rmq_dedup_free(struct rmq_dedup *d);

/* A pending entry, to complete with rmq_dedup_done() once the append's
 * outcome is known. */
struct rmq_dedup_ticket {
	int kind;        /* 0 none, 1 sequence, 2 key */
	uint32_t slot;
	uint32_t index;
	uint64_t id;     /* the producer id or key hash, to notice a slot reused meanwhile */
};

/*
 * Checks a batch of producer pid (epoch, base sequence seq, count
 * records).  On NEW the batch is remembered as pending and *t identifies
 * it; on DUPLICATE *res holds the original result.
 */
enum rmq_dedup_verdict rmq_dedup_seq(struct rmq_dedup *d, int64_t pid, int32_t epoch,
				     int32_t seq, uint32_t count, struct rmq_dedup_result *res,
				     struct rmq_dedup_ticket *t);

/* Same for an idempotency key of len bytes at time now_ms (NEW,
 * DUPLICATE or IN_FLIGHT only). */
enum rmq_dedup_verdict rmq_dedup_key(struct rmq_dedup *d, const void *key, size_t len,
				     uint64_t now_ms, struct rmq_dedup_result *res,
				     struct rmq_dedup_ticket *t);

/* The append the ticket stands for succeeded (ok, with its result) or
 * failed (then it is forgotten, so a retry appends). */
void rmq_dedup_done(struct rmq_dedup *d, const struct rmq_dedup_ticket *t, bool ok,
		    const struct rmq_dedup_result *res);

/* Replays a stored batch (at start-up, and as a follower appends its
 * leader's batches: in offset order), so that a producer's retry is
 * recognised by whichever replica leads when it arrives. */
void rmq_dedup_replay(struct rmq_dedup *d, int64_t pid, int32_t epoch, int32_t seq,
		      uint32_t count, uint64_t base_offset);

/* The log was cut at offset (a follower's divergent tail): the batches at
 * and above it are forgotten, and each producer expects the sequence after
 * its newest batch still stored, or, when none is remembered, whatever
 * sequence it sends next (as a producer seen for the first time). */
void rmq_dedup_truncate(struct rmq_dedup *d, uint64_t offset);

#endif /* RMQ_BROKER_DEDUP_H */
