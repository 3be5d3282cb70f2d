/* SPDX-License-Identifier: Apache-2.0 */
/*
 * heartbeat.h - this broker's registration with the controller, on shard
 * 0: RegisterBroker once per process (a new incarnation id each start),
 * then HeartbeatBroker every --broker-heartbeat, to the controller's
 * leader (fleet.h); to this node's own controller by a direct call when it
 * leads, else over a link (link.h).  A node outside the controller's
 * configuration (a broker only, not among --controller-voters) asks the
 * voters of --controller-voters in turn until one names the leader, and
 * learns the metadata from its heartbeat answers (a MetadataImage when it
 * is behind), which its controller publishes to its shards.
 * STALE_EPOCH or BROKER_NOT_AVAILABLE make it register again;
 * NOT_CONTROLLER goes to the leader it names.
 */
#ifndef RMQ_BROKER_HEARTBEAT_H
#define RMQ_BROKER_HEARTBEAT_H

struct rmq_bshard;

/* Shard 0, after the controller started.  Returns 0 or -ENOMEM. */
int rmq_heartbeat_start(struct rmq_bshard *bs);
/* Shard 0: beats now (this node just became the controller's leader). */
void rmq_heartbeat_kick(struct rmq_bshard *bs);
/* Shard 0, before the controller stops. */
void rmq_heartbeat_stop(struct rmq_bshard *bs);

#endif /* RMQ_BROKER_HEARTBEAT_H */
