/* SPDX-License-Identifier: Apache-2.0 */
/* lathist.c - fixed-bound latency histograms (see lathist.h). */
#include "core/lathist.h"

unsigned rmq_lat_bucket(uint64_t us)
{
	if (us < 4)
		return (unsigned)us;
	unsigned top = 63u - (unsigned)__builtin_clzll(us);
	if (top >= RMQ_LAT_TOP_BIT)
		return RMQ_LAT_BUCKETS - 1;
	unsigned sub = (unsigned)(us >> (top - 2)) & 3u;
	return 4 * (top - 1) + sub;
}

uint64_t rmq_lat_bound(unsigned i)
{
	if (i < 4)
		return i;
	if (i >= RMQ_LAT_BUCKETS - 1)
		return UINT64_MAX;
	unsigned top = i / 4 + 1, sub = i % 4;
	return ((uint64_t)(5 + sub) << (top - 2)) - 1;
}

void rmq_lat_record(struct rmq_lat_hist *h, uint64_t us)
{
	h->n[rmq_lat_bucket(us)]++;
	h->count++;
	h->sum_us += us;
	if (us > h->max_us)
		h->max_us = us;
}
