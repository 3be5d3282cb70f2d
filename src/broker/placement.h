/* SPDX-License-Identifier: Apache-2.0 */
/*
 * placement.h - where the controller puts a new topic's partitions: on the
 * running brokers, rack-aware, the least loaded first.
 *
 * The running brokers are ordered rack by rack in turn (Kafka's
 * rack-alternated list: a1 b1 c1 a2 b2 c2 ... for racks a, b, c), so
 * consecutive brokers of the list are in different racks while racks
 * last.  A topic starts at the broker holding the fewest replicas, and
 * replica k of partition p is broker (start + p + k) of the list: the
 * topic's partitions spread over every broker, their replicas over
 * racks, and their leaders (replica 0) over brokers.  On each broker a
 * partition's shard is meta.h's rmq_partition_shard.
 */
#ifndef RMQ_BROKER_PLACEMENT_H
#define RMQ_BROKER_PLACEMENT_H

#include "broker/meta.h"

#include <stddef.h>
#include <stdint.h>

/* Whether rf replicas can be placed in m now.  Returns 0, or -EINVAL with
 * the reason in err. */
int rmq_place_check(const struct rmq_meta *m, uint32_t rf, char *err, size_t len);

/* Places `partitions` partitions of rf replicas each: *out (malloc'd) gets
 * one assignment per partition, led by its first replica in epoch 1, every
 * replica in sync.  Returns 0, -EINVAL (err says why), or -ENOMEM. */
int rmq_place(const struct rmq_meta *m, uint32_t partitions, uint32_t rf,
	      struct rmq_passign **out, char *err, size_t len);

#endif /* RMQ_BROKER_PLACEMENT_H */
