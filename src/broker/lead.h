/* SPDX-License-Identifier: Apache-2.0 */
/*
 * lead.h - a leader's side of replication (docs/replication.md): it pushes
 * its partitions' batches to their followers and keeps the high watermark.
 *
 * Each shard keeps one ReplicateStream to each (follower broker, follower
 * shard) it shares partitions with, on a connection that lands on that
 * shard (the client binds a steering source port: docs/net.md), and for
 * each follower replica of a partition it leads a slot: the next offset to
 * send, and the follower's durable log end as it last said.  A slot has up
 * to 4 requests in flight, each carrying up to 1 MiB of the leader's
 * stored batches: from the log's tail (in memory) as soon as appended, or
 * from the log once durable.  The first request of a leadership is a probe
 * at the leader's end, whose answer says where the follower is (its log
 * end when behind, or where its log leaves the leader's: the leader then
 * resolves the cut from its own epochs, KIP-101).
 *
 * Requests go in bundles: what a cycle of the shard has for one follower
 * shard, every partition's request a part of one message, flushed by the
 * shard's before-wait hook (rmq_lead_flush).  A part's stored batches are
 * referenced, never copied in user space: tail bytes held (tail.h), segment
 * slices pinned, or a cold read's buffer, until the kernel took them.
 *
 * The high watermark is the smallest durable end over the ISR; produce
 * calls with acks ALL, MAJORITY or CUSTOM wait for it (produce.c,
 * rmq_produce_replicated).  The leader asks the controller to shrink or
 * grow the ISR (isr.h) by Kafka's rules (docs/replication.md).
 */
#ifndef RMQ_BROKER_LEAD_H
#define RMQ_BROKER_LEAD_H

#include <stdbool.h>
#include <stdint.h>

#define RMQ_REPLICAS_MAX_LEAD 8 /* meta.h's RMQ_REPLICAS_MAX */

struct rmq_bshard;
struct rmq_partition;

/* Makes p's slots match its role and replicas (after a role or metadata
 * change on its shard). */
void rmq_lead_sync(struct rmq_partition *p);
/* p's durable end advanced: the high watermark may, and followers get it. */
void rmq_lead_durable(struct rmq_partition *p);
/* p was appended to (once per cycle): followers get the new batches from
 * the log's tail without waiting for this log's sync. */
void rmq_lead_send(struct rmq_partition *p);
/* Sends what the cycle gathered: one message per follower shard, with a
 * part for every partition that had something for it (the shard's
 * before-wait hook). */
void rmq_lead_flush(struct rmq_bshard *bs);
/* p closes: its slots go. */
void rmq_lead_drop(struct rmq_partition *p);
/* How many replicas, this one included, hold p's records below end
 * durably (acks MAJORITY and CUSTOM). */
uint32_t rmq_lead_holding(const struct rmq_partition *p, uint64_t end);
/* What GetISR reports of a partition led here: each replica's progress as
 * this leader knows it, and an ISR asked for and not settled. */
struct rmq_isr_view {
	uint64_t log_end;                  /* this log's end offset */
	uint32_t n;
	struct {
		uint32_t broker;
		uint64_t end;              /* its durable end as it last said (this one's own) */
		uint64_t caught_ms;        /* wall clock when it last had all of this log; 0: never */
	} r[RMQ_REPLICAS_MAX_LEAD];
	uint32_t npend;
	uint32_t pend[RMQ_REPLICAS_MAX_LEAD];
};
void rmq_lead_view(const struct rmq_partition *p, struct rmq_isr_view *v);

/* The shard stops: streams and connections go. */
void rmq_lead_fini(struct rmq_bshard *bs);

#endif /* RMQ_BROKER_LEAD_H */
