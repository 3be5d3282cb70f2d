/* SPDX-License-Identifier: Apache-2.0 */
/* hist.c - log-linear histogram (see hist.h). */
#include "hist.h"

#include <string.h>

void rmq_hist_reset(struct rmq_hist *h)
{
	memset(h, 0, sizeof(*h));
	h->min = UINT64_MAX;
}

/* Values below RMQ_HIST_SUB land in bucket 0 exactly (one per value);
 * above, bucket b = position of the top bit minus SUB_BITS. */
static void locate(uint64_t v, unsigned *b, unsigned *s)
{
	if (v < RMQ_HIST_SUB) {
		*b = 0;
		*s = (unsigned)v;
		return;
	}
	unsigned top = 63u - (unsigned)__builtin_clzll(v);
	*b = top - RMQ_HIST_SUB_BITS + 1;
	*s = (unsigned)(v >> (top - RMQ_HIST_SUB_BITS)) & (RMQ_HIST_SUB - 1);
}

static uint64_t upper_edge(unsigned b, unsigned s)
{
	if (b == 0)
		return s;
	unsigned shift = b - 1;
	return (((uint64_t)RMQ_HIST_SUB | s) << shift) + ((1ULL << shift) - 1);
}

void rmq_hist_record(struct rmq_hist *h, uint64_t ns)
{
	unsigned b, s;
	locate(ns, &b, &s);
	h->n[b][s]++;
	h->count++;
	h->sum += (double)ns;
	if (ns < h->min)
		h->min = ns;
	if (ns > h->max)
		h->max = ns;
}

void rmq_hist_merge(struct rmq_hist *dst, const struct rmq_hist *src)
{
	for (unsigned b = 0; b < RMQ_HIST_BUCKETS; b++)
		for (unsigned s = 0; s < RMQ_HIST_SUB; s++)
			dst->n[b][s] += src->n[b][s];
	dst->count += src->count;
	dst->sum += src->sum;
	if (src->min < dst->min)
		dst->min = src->min;
	if (src->max > dst->max)
		dst->max = src->max;
}

uint64_t rmq_hist_quantile(const struct rmq_hist *h, double q)
{
	if (h->count == 0)
		return 0;
	uint64_t rank = (uint64_t)(q * (double)h->count + 0.5);
	if (rank < 1)
		rank = 1;
	if (rank > h->count)
		rank = h->count;
	uint64_t seen = 0;
	for (unsigned b = 0; b < RMQ_HIST_BUCKETS; b++) {
		for (unsigned s = 0; s < RMQ_HIST_SUB; s++) {
			seen += h->n[b][s];
			if (seen >= rank) {
				uint64_t v = upper_edge(b, s);
				return v > h->max ? h->max : v;
			}
		}
	}
	return h->max;
}
