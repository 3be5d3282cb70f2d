/* SPDX-License-Identifier: Apache-2.0 */
/*
 * hist.h - a log-linear latency histogram (HdrHistogram's layout, simplified).
 *
 * Values are nanoseconds.  Bucket b covers [2^b, 2^(b+1)) split into
 * RMQ_HIST_SUB linear sub-buckets, so every recorded value is reported
 * within 1/RMQ_HIST_SUB (about 1.6%) of its true value, from 1 ns to
 * 2^RMQ_HIST_BUCKETS ns, in a fixed 32 KiB with O(1) recording.
 */
#ifndef RMQ_BENCH_HIST_H
#define RMQ_BENCH_HIST_H

#include <stdint.h>

#define RMQ_HIST_SUB_BITS 6
#define RMQ_HIST_SUB (1u << RMQ_HIST_SUB_BITS)
#define RMQ_HIST_BUCKETS 64

struct rmq_hist {
	uint64_t count;
	uint64_t min, max;
	double sum;
	uint64_t n[RMQ_HIST_BUCKETS][RMQ_HIST_SUB];
};

void rmq_hist_reset(struct rmq_hist *h);
void rmq_hist_record(struct rmq_hist *h, uint64_t ns);
/* Adds every count of src to dst. */
void rmq_hist_merge(struct rmq_hist *dst, const struct rmq_hist *src);
/* The value at quantile q in [0, 1] (upper edge of its sub-bucket, capped
 * at max); 0 for an empty histogram. */
uint64_t rmq_hist_quantile(const struct rmq_hist *h, double q);

#endif
