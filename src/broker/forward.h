/* SPDX-License-Identifier: Apache-2.0 */
/*
 * forward.h - calls that change the cluster (CreateTopics, DeleteTopics,
 * AlterConfigs, CreatePartitions, DeletePartitions, UpdateClusterConfig,
 * leadership and partition moves: TransferLeadership, MigratePartition, ...),
 * sent to any node, are carried to the controller's leader and its answer
 * relayed, so a client needs no knowledge of who leads.
 *
 * On the shard that received the call: when this node knows another node
 * leads the controller, the request goes there as the same call over a
 * link of this shard (link.h), with what is left of the call's deadline
 * (at most RMQ_FORWARD_NS); while the link connects, or no leader is
 * known, it is retried every 20 ms, each time to the leader known then.  It is sent once: if the answer is lost (the leader died, the
 * connection broke, the deadline passed) the call ends UNAVAILABLE saying
 * the change may have taken effect, never sent a second time (a second
 * CreateTopics could be refused as a duplicate of a first that
 * succeeded).  The leader decides it as if it had been sent there (an
 * answer NOT_CONTROLLER means it was never decided).
 *
 * Forwarding cannot loop: a node forwards to the leader of its current
 * term, terms only grow, and a leader knows it leads its own term, so a
 * cycle of nodes each forwarding to the next would need two leaders of
 * one term; each hop's deadline is shorter than the one before anyway.
 */
#ifndef RMQ_BROKER_FORWARD_H
#define RMQ_BROKER_FORWARD_H

#include <stdbool.h>

struct rmq_call;
struct rmq_bshard;

#define RMQ_FORWARD_NS (15ULL * 1000 * 1000 * 1000)

/* Takes call c (its decoded request req) to the controller's leader when
 * that is another node: returns true (req is taken, c answered later;
 * local(c, req) runs instead if this node is elected before it is sent),
 * or false (this node leads, or no leader is known: decide it here). */
bool rmq_forward_admin(struct rmq_call *c, void *req,
		       void (*local)(struct rmq_call *c, void *req));

/*
 * The same for a server-streaming call (MigratePartition): each message of
 * the leader's stream is relayed to c and its end ends c, so a client
 * follows a change the leader streams from any node.  ended(arg) runs once
 * when the relay is over (the stream ended, it was never sent, or this node
 * was elected: then before local(c, req) runs); until then *handle is the
 * relay, for rmq_forward_stream_cancel when c is cancelled (the leader's
 * call is cancelled; ended follows).  Returns what rmq_forward_admin
 * returns; with true, ended may already have run.
 */
struct rmq_fwd;
bool rmq_forward_stream(struct rmq_call *c, void *req,
			void (*local)(struct rmq_call *c, void *req), void (*ended)(void *arg),
			void *arg, struct rmq_fwd **handle);
void rmq_forward_stream_cancel(struct rmq_fwd *handle);

/* Shard teardown: the shard's link (its calls end). */
void rmq_forward_fini(struct rmq_bshard *bs);

#endif /* RMQ_BROKER_FORWARD_H */
