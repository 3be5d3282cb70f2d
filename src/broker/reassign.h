/* SPDX-License-Identifier: Apache-2.0 */
/*
 * reassign.h - moving a partition to other brokers (KIP-455's shape),
 * decided by the controller's leader.
 *
 *   ReassignPartitions(target)        replicas = original + adding
 *     (reassign.c)                    (the targets not among them),
 *                                     target recorded: phase COPYING
 *   the adding replicas join the ISR  (replication: they catch up)
 *   rmq_move_advance                  replicas = target, ISR within it,
 *                                     the leader target[0] when in sync:
 *                                     COMPLETED; the removed replicas
 *                                     delete their copies (partition.c)
 *   cancel                            replicas = original: CANCELLED; the
 *                                     adding replicas delete their copies
 *
 * While a move runs the partition's leader stays among its original
 * replicas, so produce and fetch go on where they went.  A reassignment
 * lives in the controller's state (state.proto PartitionMove): a new
 * controller leader carries it on, and any node reports its progress.
 */
#ifndef RMQ_BROKER_REASSIGN_H
#define RMQ_BROKER_REASSIGN_H

#include "broker/meta.h"

#include <stdbool.h>

/* On the controller's leader, in a change's build: completes pa's
 * reassignment when every replica it adds is in sync (the ISR changed, or
 * it adds none).  Returns whether pa changed. */
bool rmq_move_advance(const struct rmq_meta *m, struct rmq_passign *pa);

#endif /* RMQ_BROKER_REASSIGN_H */
