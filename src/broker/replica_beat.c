/* SPDX-License-Identifier: Apache-2.0 */
/*
 * replica_beat.c - BrokerReplicationService.SendHeartbeat, a follower's
 * side: a leader broker lists the partitions it leads that this broker
 * follows and had nothing to replicate, with its leader epoch, high
 * watermark and log end; the follower checks each one's epoch as
 * ReplicateData does (follow.h), takes the high watermark (min of the
 * leader's and its own durable end, never backwards), and answers its log
 * end, log start and the epoch it knows.
 *
 *   leader shard ── SendHeartbeat(partitions) ──► follower shard
 *                ◄── per partition: epoch, durable end, log start ──┘
 *
 * Like ReplicateData, a partition is answered by the shard that owns it:
 * the leader reaches that shard by its connection's source port (docs/
 * replication.md, "Landing on the right shard"); a partition of another
 * shard is REPLICA_NOT_AVAILABLE.  Nothing is written, so the answer is
 * immediate.  The leader's log start is not applied here (ReplicateData
 * trims the log to it).
 */
#include "broker/broker.h"
#include "broker/ctrl_wire.h"
#include "broker/errcode.h"
#include "broker/methods.h"
#include "broker/partition.h"
#include "broker/reply.h"
#include "broker/replication.pb-c.h"
#include "core/shard.h"
#include "storage/log.h"

#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>

/* The answer for one partition of the heartbeat, into out (tp: its
 * topic_partition, echoed). */
static void beat_one(struct rmq_bshard *bs, const Rustmq__Broker__PartitionHeartbeat *ph,
		     Rustmq__Broker__PartitionHeartbeatResult *out)
{
	const Rustmq__Common__TopicPartition *tp = ph->topic_partition;
	int code = EC_OK;
	if (!tp || !tp->topic[0]) {
		out->error_code = (Rustmq__Common__ErrorCode)EC_INVALID_REQUEST;
		return;
	}
	if (rmq_partition_shard(tp->topic, tp->partition, bs->nshards) != bs->id) {
		out->error_code = (Rustmq__Common__ErrorCode)EC_REPLICA_NOT_AVAILABLE;
		return;
	}
	struct rmq_partition *p = rmq_partition_find(bs, tp->topic, tp->partition, &code);
	if (!p || p->role != RMQ_ROLE_FOLLOWER || !p->log) {
		out->error_code = (Rustmq__Common__ErrorCode)EC_REPLICA_NOT_AVAILABLE;
		return;
	}
	/* Its durable end, as a ReplicateData answer gives it. */
	uint64_t end = rmq_log_high_watermark(p->log);
	if (ph->leader_epoch < p->leader_epoch)
		code = EC_STALE_EPOCH;
	else if (ph->leader_epoch > p->leader_epoch)
		code = EC_UNKNOWN_LEADER_EPOCH;
	else
		rmq_partition_set_hw(p, ph->high_watermark < end ? ph->high_watermark : end);
	out->error_code = (Rustmq__Common__ErrorCode)code;
	out->leader_epoch = p->leader_epoch;
	out->log_end_offset = end;
	out->log_start_offset = rmq_log_start_offset(p->log);
}

void rmq_replica_heartbeat(struct rmq_call *c, void *msg)
{
	Rustmq__Broker__HeartbeatRequest *req = msg;
	struct rmq_bshard *bs = rmq_call_app(c);
	size_t n = req->n_partitions;
	Rustmq__Broker__HeartbeatResponse r = RUSTMQ__BROKER__HEARTBEAT_RESPONSE__INIT;
	Rustmq__Broker__PartitionHeartbeatResult *rs = NULL, **rp = NULL;
	char self[12];
	snprintf(self, sizeof(self), "%" PRIu32, bs->b->self);
	if (rmq_ctrl_node_id(req->follower_id) != bs->b->self) {
		rmq_refuse(c, EC_INVALID_REQUEST, "follower_id '%s' is not this broker (%s)",
			   req->follower_id, self);
		goto out;
	}
	if (rmq_runtime_stopping(bs->b->rt)) {
		rmq_refuse(c, EC_SHUTTING_DOWN, "broker %s is shutting down", self);
		goto out;
	}
	rs = calloc(n + 1, sizeof(*rs));
	rp = calloc(n + 1, sizeof(*rp));
	if (!rs || !rp) {
		rmq_call_finish(c, RMQ_GRPC_RESOURCE_EXHAUSTED, "out of memory");
		goto out;
	}
	for (size_t i = 0; i < n; i++) {
		rustmq__broker__partition_heartbeat_result__init(&rs[i]);
		rs[i].topic_partition = req->partitions[i]->topic_partition;
		beat_one(bs, req->partitions[i], &rs[i]);
		rp[i] = &rs[i];
	}
	const struct rmq_broker_rec *me = rmq_meta_broker(bs->meta, bs->b->self);
	r.follower_id = self;
	r.follower_broker_epoch = me ? me->epoch : 0;
	r.partitions = rp;
	r.n_partitions = n;
	rmq_reply_pb(c, &r.base);
out:
	free(rs);
	free(rp);
	protobuf_c_message_free_unpacked(msg, NULL);
}
