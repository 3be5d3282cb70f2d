/* SPDX-License-Identifier: Apache-2.0 */
/* request.c - per-request caps and repeated entries (request.h). */
#include "broker/request.h"

#include "broker/broker.h"
#include "common/types.pb-c.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

int rmq_request_partitions(const struct rmq_bshard *bs, size_t n, char *err, size_t errlen)
{
	uint32_t max = bs->b->cfg.max_request_partitions;
	if (n <= max)
		return 0;
	snprintf(err, errlen,
		 "the request names %zu partitions; this node takes at most %u per request "
		 "(--max-request-partitions): split it", n, max);
	return EC_INVALID_REQUEST;
}

static uint32_t tp_hash(const struct rmq_tp_ref *r)
{
	uint32_t h = 2166136261u; /* FNV-1a over the name, then the partition */
	for (const unsigned char *p = (const unsigned char *)r->topic; *p; p++)
		h = (h ^ *p) * 16777619u;
	return (h ^ r->partition) * 0x9E3779B1u;
}

int rmq_request_unique(const struct rmq_tp_ref *v, size_t n, char *err, size_t errlen)
{
	if (n < 2)
		return 0;
	size_t cap = 4;
	while (cap < 2 * n)
		cap <<= 1;
	uint32_t *slot = calloc(cap, sizeof(*slot)); /* index + 1; 0 = empty */
	if (!slot) {
		snprintf(err, errlen, "out of memory");
		return EC_RESOURCE_EXHAUSTED;
	}
	int rc = 0;
	for (size_t i = 0; i < n && rc == 0; i++) {
		for (size_t k = tp_hash(&v[i]) & (cap - 1);; k = (k + 1) & (cap - 1)) {
			if (slot[k] == 0) {
				slot[k] = (uint32_t)i + 1;
				break;
			}
			const struct rmq_tp_ref *o = &v[slot[k] - 1];
			if (o->partition == v[i].partition && strcmp(o->topic, v[i].topic) == 0) {
				snprintf(err, errlen,
					 "partition %.*s-%u appears twice in the request (entries %u and %zu); "
					 "each partition may appear at most once", 255, v[i].topic,
					 v[i].partition, slot[k] - 1, i);
				rc = EC_INVALID_REQUEST;
				break;
			}
		}
	}
	free(slot);
	return rc;
}

int rmq_request_tps(const struct rmq_bshard *bs, void *const *elems, size_t n, size_t tp_offset,
		    bool unique, char *err, size_t errlen)
{
	int rc = rmq_request_partitions(bs, n, err, errlen);
	if (rc != 0 || !unique || n < 2)
		return rc;
	struct rmq_tp_ref *v = malloc(n * sizeof(*v));
	if (!v) {
		snprintf(err, errlen, "out of memory");
		return EC_RESOURCE_EXHAUSTED;
	}
	for (size_t i = 0; i < n; i++) {
		const Rustmq__Common__TopicPartition *tp =
			*(Rustmq__Common__TopicPartition *const *)((const char *)elems[i] + tp_offset);
		v[i].topic = tp ? tp->topic : "";
		v[i].partition = tp ? tp->partition : 0;
	}
	rc = rmq_request_unique(v, n, err, errlen);
	free(v);
	return rc;
}
