/* SPDX-License-Identifier: Apache-2.0 */
/*
 * quota.h - per-principal produce and fetch byte rates and request rates
 * (`rmq quota set`, acl.h rmq_quota_for), enforced as Kafka does: by
 * delaying, never refusing (docs/security.md, "Quotas").
 *
 * A principal with a quota has a token bucket per limit in the broker,
 * shared by its shards (one mutex, taken only while some quota is set):
 * refilled at the limit, holding at most one second of it.  A call
 * arriving while any of its principal's buckets is in debt waits, before
 * its method runs, until the debt is paid (methods.c); its answer says how
 * long (throttle_time).  A produce request's bytes and every request are
 * charged on arrival, a fetch answer's bytes when it is built (the next
 * call waits for them).  Over any span the principal gets at most the
 * limit plus one second of it, and one request's worth.
 */
#ifndef RMQ_BROKER_QUOTA_H
#define RMQ_BROKER_QUOTA_H

#include <stdbool.h>
#include <stdint.h>

struct rmq_bshard;
struct rmq_broker;

enum rmq_quota_kind { RMQ_QUOTA_PRODUCE, RMQ_QUOTA_FETCH, RMQ_QUOTA_REQUESTS, RMQ_QUOTA_KINDS };

/* Whether any quota is set (the metadata the shard holds). */
bool rmq_quota_any(const struct rmq_bshard *bs);

/*
 * Charges principal's buckets (produce bytes, fetch bytes, and a request
 * when request is true) and returns how long, in ns, the call must wait
 * before it goes on: the longest debt, 0 when none.
 */
uint64_t rmq_quota_charge(struct rmq_bshard *bs, const char *principal, uint64_t produce_bytes,
			  uint64_t fetch_bytes, bool request);

void rmq_quota_init(struct rmq_broker *b);
void rmq_quota_fini(struct rmq_broker *b);

#endif /* RMQ_BROKER_QUOTA_H */
