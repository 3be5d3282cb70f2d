/* SPDX-License-Identifier: Apache-2.0 */
/* quota.c - token buckets per principal (quota.h). */
#include "broker/quota.h"

#include "broker/acl.h"
#include "broker/broker.h"
#include "core/log.h"
#include "core/shard.h"

#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define BUCKETS_MAX 4096                 /* principals with a quota, at most */
#define BURST_NS (1000ULL * 1000 * 1000) /* a bucket holds one second of its rate */

struct bucket {
	char principal[RMQ_SEC_NAME_MAX + 8];
	double tokens[RMQ_QUOTA_KINDS];  /* negative: debt */
	uint64_t last_ns;
};

struct rmq_quotas {
	pthread_mutex_t mu;
	struct bucket *b;                 /* BUCKETS_MAX, open addressing */
	bool full_warned;
};

void rmq_quota_init(struct rmq_broker *b)
{
	struct rmq_quotas *q = calloc(1, sizeof(*q));
	if (q && !(q->b = calloc(BUCKETS_MAX, sizeof(*q->b)))) {
		free(q);
		q = NULL;
	}
	if (q)
		pthread_mutex_init(&q->mu, NULL);
	else
		rmq_warn("quotas: out of memory; no quota will be enforced");
	b->quotas = q;
}

void rmq_quota_fini(struct rmq_broker *b)
{
	struct rmq_quotas *q = b->quotas;
	if (!q)
		return;
	pthread_mutex_destroy(&q->mu);
	free(q->b);
	free(q);
	b->quotas = NULL;
}

bool rmq_quota_any(const struct rmq_bshard *bs)
{
	const struct rmq_quota *qs;
	return bs->b->quotas && rmq_sec_quotas(bs->meta, &qs) > 0;
}

static uint64_t hash(const char *s)
{
	uint64_t h = 1469598103934665603ULL;
	for (; *s; s++)
		h = (h ^ (uint8_t)*s) * 1099511628211ULL;
	return h;
}

/* principal's bucket, made (full) on first use; NULL when the table is full. */
static struct bucket *bucket_of(struct rmq_quotas *q, const char *principal, const double *rate,
				uint64_t now)
{
	uint64_t h = hash(principal);
	for (uint32_t i = 0; i < BUCKETS_MAX; i++) {
		struct bucket *b = &q->b[(h + i) % BUCKETS_MAX];
		if (b->principal[0] && strcmp(b->principal, principal) == 0)
			return b;
		if (!b->principal[0]) {
			snprintf(b->principal, sizeof(b->principal), "%s", principal);
			for (int k = 0; k < RMQ_QUOTA_KINDS; k++)
				b->tokens[k] = rate[k];
			b->last_ns = now;
			return b;
		}
	}
	return NULL;
}

uint64_t rmq_quota_charge(struct rmq_bshard *bs, const char *principal, uint64_t produce_bytes,
			  uint64_t fetch_bytes, bool request)
{
	struct rmq_quotas *q = bs->b->quotas;
	struct rmq_quota lim;
	if (!q || !rmq_quota_for(bs->meta, principal, &lim))
		return 0;
	const double rate[RMQ_QUOTA_KINDS] = {(double)lim.produce_bps, (double)lim.fetch_bps,
					      (double)lim.request_rate};
	const double charge[RMQ_QUOTA_KINDS] = {(double)produce_bytes, (double)fetch_bytes,
						request ? 1.0 : 0.0};
	const uint64_t now = rmq_now_ns();
	uint64_t wait = 0;
	pthread_mutex_lock(&q->mu);
	struct bucket *b = bucket_of(q, principal, rate, now);
	if (!b) {
		if (!q->full_warned)
			rmq_warn("quotas: more than %d principals with a quota; those beyond are not "
				 "throttled",
				 BUCKETS_MAX);
		q->full_warned = true;
		pthread_mutex_unlock(&q->mu);
		return 0;
	}
	const double dt = (double)(now - b->last_ns) / 1e9;
	b->last_ns = now;
	for (int k = 0; k < RMQ_QUOTA_KINDS; k++) {
		if (rate[k] <= 0) {
			b->tokens[k] = 0; /* unlimited */
			continue;
		}
		b->tokens[k] += rate[k] * dt;
		if (b->tokens[k] > rate[k] * ((double)BURST_NS / 1e9))
			b->tokens[k] = rate[k] * ((double)BURST_NS / 1e9);
		b->tokens[k] -= charge[k];
		if (b->tokens[k] < 0) {
			uint64_t w = (uint64_t)(-b->tokens[k] / rate[k] * 1e9);
			if (w > wait)
				wait = w;
		}
	}
	pthread_mutex_unlock(&q->mu);
	return wait;
}
