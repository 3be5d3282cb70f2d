/* SPDX-License-Identifier: Apache-2.0 */
/*
 * lathist.h - the broker's latency histograms, as GetMetrics reports them.
 *
 * Observations are microseconds.  Bucket bounds are fixed for every
 * histogram and every node, four per power of two (each about 19% above
 * the one before): 0, 1, 2, 3, then [4,5), [5,6), [6,7), [7,8), [8,10), ...
 * up to 2^RMQ_LAT_TOP_BIT µs (about 67 s); anything longer lands in the
 * last (+Inf) bucket.  Recording is O(1) and a histogram has a fixed size
 * with no allocation (about 830 bytes).  Readers merge shards' histograms
 * bucket by bucket, since the bounds are the same (tools/rmq.c).
 *
 * Not thread-safe: one shard records into its own histograms; readers copy
 * them on that shard (broker/admin.c's gather).
 */
#ifndef RMQ_CORE_LATHIST_H
#define RMQ_CORE_LATHIST_H

#include <stdint.h>

#define RMQ_LAT_TOP_BIT 26
/* 4 exact buckets (0..3 µs), 4 per power of two from 2^2 to 2^TOP_BIT, +Inf. */
#define RMQ_LAT_BUCKETS (4 + 4 * (RMQ_LAT_TOP_BIT - 2) + 1)

struct rmq_lat_hist {
	uint64_t count;
	uint64_t sum_us;
	uint64_t max_us;
	uint64_t n[RMQ_LAT_BUCKETS]; /* per bucket, not cumulative */
};

/* Records one observation of us microseconds. */
void rmq_lat_record(struct rmq_lat_hist *h, uint64_t us);

/* Records the time from start_ns to now_ns (rmq_now_ns clock), in µs. */
static inline void rmq_lat_since(struct rmq_lat_hist *h, uint64_t start_ns, uint64_t now_ns)
{
	rmq_lat_record(h, now_ns > start_ns ? (now_ns - start_ns) / 1000 : 0);
}

/* Bucket i's inclusive upper bound in µs; UINT64_MAX for the last (+Inf). */
uint64_t rmq_lat_bound(unsigned i);

/* The bucket an observation of us falls in. */
unsigned rmq_lat_bucket(uint64_t us);

#endif /* RMQ_CORE_LATHIST_H */
