/* SPDX-License-Identifier: Apache-2.0 */
/*
 * partmgmt.h - PartitionManagementService (proto/broker/partition.proto)
 * on the reassignment machinery (reassign.h): no second way to copy a log.
 *
 *   AssignPartition     a move of the partition to its replicas plus
 *                       adding_replica_ids (the receiving broker when
 *                       none), minus removing_replica_ids: the added ones
 *                       get empty copies the leader fills (lead.c), join
 *                       the ISR, and the move completes
 *   RemovePartition     a move to its replicas minus removing_replica_ids
 *                       (the receiving broker when none): completes at once,
 *                       the removed brokers delete their copies
 *   MigratePartition    a move from source_broker_id to target_broker_id,
 *                       its progress streamed from the controller's state
 *                       and, where the controller's leader leads the
 *                       partition, the leader's view of the new copy
 *                       (rmq_lead_view)
 *   GetPartitionState   the replicas this broker hosts, from its metadata
 *                       and their logs (lookup.h)
 *   UpdatePartitionConfig  a partition's configuration is its topic's: the
 *                       topics' overrides replaced by AlterConfigs' change
 *
 *   any node ── fills in itself ── forward.h ──► controller's leader
 *       build: target = replicas ± brokers; rmq_move_start ──► Raft entry
 *
 * Every command but GetPartitionState (answered from this broker) is sent
 * to any node and carried to the controller's leader
 * (forward.h): Assign and Remove name the receiving broker first, so the
 * leader knows whom "the receiving broker" meant; MigratePartition's
 * stream is relayed back, and cancelling it cancels the leader's.
 */
#ifndef RMQ_BROKER_PARTMGMT_H
#define RMQ_BROKER_PARTMGMT_H

struct rmq_call;

/* The RPC handlers (methods.c). */
void rmq_pm_assign(struct rmq_call *c, void *req);
void rmq_pm_remove(struct rmq_call *c, void *req);
void rmq_pm_migrate(struct rmq_call *c, void *req);
void rmq_pm_migrate_cancel(struct rmq_call *c);
void rmq_pm_state(struct rmq_call *c, void *req);
void rmq_pm_config(struct rmq_call *c, void *req);

#endif /* RMQ_BROKER_PARTMGMT_H */
