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
#include "google/protobuf/duration.pb-c.h"

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

/* On the controller's leader, in a change's build: completes pa's
 * reassignment when every replica it adds is in sync (the ISR changed, or
 * it adds none).  Returns whether pa changed. */
bool rmq_move_advance(const struct rmq_meta *m, struct rmq_passign *pa);

/* On the controller's leader, in a change's build: starts moving pa (of
 * state m) to the replicas target[0..ntarget), preferred leader first, and
 * completes it at once when nothing is to be copied.  *changed is set when
 * pa changed (not when it has those replicas already, or the same move
 * runs).  Returns EC_OK, or a rustmq ErrorCode with the reason in why:
 *   EC_REASSIGNMENT_IN_PROGRESS    a move to another target runs
 *   EC_BROKER_NOT_AVAILABLE        a target is not a registered broker
 *   EC_INVALID_REPLICATION_FACTOR  more than RMQ_REPLICAS_MAX while it moves */
int rmq_move_start(const struct rmq_meta *m, struct rmq_passign *pa, const uint32_t *target,
		   uint32_t ntarget, bool *changed, char *why, size_t len);

/* In a change's build: puts back pa's original replicas (pa->ntarget set),
 * the added ones deleting their copies. */
void rmq_move_cancel(const struct rmq_meta *m, struct rmq_passign *pa);

/* A progress_interval (ReassignPartitions, MigratePartition) in ns: 1 s
 * when d is NULL, else d within [100 ms, 1 h].  false: d is not a
 * duration (negative, or nanos out of range). */
bool rmq_move_interval(const Google__Protobuf__Duration *d, uint64_t *ns);

/* Pure: where the move of pa to target[0..ntarget) stands, a
 * rustmq.controller.ReassignmentPhase: COPYING (an added replica is not in
 * sync), ELECTING (all are, the change is being made), COMPLETED (pa has
 * the target), CANCELLED (pa moves elsewhere, or not at all). */
int rmq_move_phase(const struct rmq_passign *pa, const uint32_t *target, uint32_t ntarget);

#endif /* RMQ_BROKER_REASSIGN_H */
