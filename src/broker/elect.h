/* SPDX-License-Identifier: Apache-2.0 */
/*
 * elect.h - leadership moves, decided by the controller's leader on its
 * committed state (docs/replication.md, "Leadership moves"):
 *
 *   TransferLeadership  one partition to a named in-sync replica, or to the
 *                       first in-sync running follower in preferred order
 *   ElectLeaders        PREFERRED: the first assigned replica leads again
 *                       when it is in sync and running; UNCLEAN: a
 *                       leaderless partition whose topic sets
 *                       unclean.leader.election.enable=true gets a running
 *                       replica outside the ISR (committed records may be
 *                       lost)
 *   balancing           every --leader-rebalance-interval, PREFERRED for
 *                       every partition that can take it
 *
 * Every move is Kafka's election: the controller names the new leader in a
 * new leader epoch (and partition epoch); the old leader learns it from its
 * metadata and answers NOT_LEADER from then on, its followers refuse its
 * older epoch (STALE_EPOCH), and the new leader's followers cut any tail
 * it lacks by epochs (rule 6).  An in-sync replica holds every committed
 * record, so a clean move loses no record acknowledged with acks ALL.
 *
 *   any node ── forward.h ──► controller's leader: rmq_ctrl_submit_from
 *       build: choose (rmq_elect_choose) and move (rmq_elect_apply) on the
 *       committed state ──► Raft entry ──► applied on every shard ──► answer
 */
#ifndef RMQ_BROKER_ELECT_H
#define RMQ_BROKER_ELECT_H

#include "broker/meta.h"

#include <stddef.h>
#include <stdint.h>

struct rmq_bshard;
struct rmq_call;

enum rmq_elect_kind {
	RMQ_ELECT_TRANSFER,  /* to target, or (target 0) the best in-sync follower */
	RMQ_ELECT_PREFERRED, /* to replicas[0] */
	RMQ_ELECT_UNCLEAN,   /* a leaderless partition, to any running replica */
};

/*
 * Pure: who would lead partition pa of topic t in state m after a move of
 * kind (target: TRANSFER's named broker, 0 = choose).  Returns EC_OK and
 * *leader, or a rustmq ErrorCode with the reason in why:
 *   EC_ELECTION_NOT_NEEDED    the broker asked for leads already (UNCLEAN:
 *                             the partition has a leader)
 *   EC_REPLICA_NOT_AVAILABLE  TRANSFER: target is not a replica
 *   EC_NOT_ENOUGH_REPLICAS    the broker is not in the ISR; TRANSFER with no
 *                             target, PREFERRED, UNCLEAN: none can lead
 *   EC_BROKER_NOT_AVAILABLE   TRANSFER: target is fenced or not registered
 *   EC_POLICY_VIOLATION       UNCLEAN: the topic does not allow it
 */
int rmq_elect_choose(const struct rmq_meta *m, const struct rmq_topic *t,
		     const struct rmq_passign *pa, enum rmq_elect_kind kind, uint32_t target,
		     uint32_t *leader, char *why, size_t len);

/* Makes leader lead pa in the next leader epoch and partition epoch;
 * UNCLEAN: the ISR becomes the new leader alone. */
void rmq_elect_apply(struct rmq_passign *pa, uint32_t leader, enum rmq_elect_kind kind);

/* Pure: PREFERRED for every partition of m that can take it (m is
 * changed).  Returns how many moved.  O(partitions * replicas). */
size_t rmq_elect_balance(struct rmq_meta *m);

/* The RPC handlers (methods.c): BrokerReplicationService.TransferLeadership
 * and AdminService.ElectLeaders, sent to any node. */
void rmq_elect_transfer(struct rmq_call *c, void *req);
void rmq_elect_leaders(struct rmq_call *c, void *req);

/* From the controller's tick (shard 0): when this node leads the
 * controller, balances the leaders every --leader-rebalance-interval (0:
 * never), one change in flight at a time. */
void rmq_elect_tick(struct rmq_bshard *bs);

#endif /* RMQ_BROKER_ELECT_H */
