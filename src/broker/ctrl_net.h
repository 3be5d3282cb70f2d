/* SPDX-License-Identifier: Apache-2.0 */
/*
 * ctrl_net.h - the controller's transport: its Raft messages between
 * nodes as ControllerRaftService calls (ctrl_wire.h), both ways.
 *
 * Out (shard 0): a request message of a Ready goes to its voter as a unary
 * call over a connection kept per peer (net/client.h); the answer comes
 * back as a core message through on_answer.  A message that cannot go now
 * (no connection yet, too many calls in flight) is dropped: Raft sends
 * again.
 *
 *   In: connection's shard            shard 0 (controller.c)
 *   rmq_ctrl_rpc(call, bytes) ──────► rmq_ctrl_receive(in): decoded, stepped
 *                                     before the next Ready; its answer is
 *   reply ◄──── rmq_ctrl_answer ◄──── the core's message to the caller in
 *                                     that Ready, once it is durable
 */
#ifndef RMQ_BROKER_CTRL_NET_H
#define RMQ_BROKER_CTRL_NET_H

#include "broker/ctrl_wire.h"
#include "core/shard.h"

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

struct rmq_bshard;
struct rmq_call;

/* One received call, owned by shard 0 from rmq_ctrl_receive until
 * rmq_ctrl_answer. */
struct rmq_ctrl_inbound {
	struct rmq_xmsg msg;             /* origin -> shard 0 -> origin */
	struct rmq_call *call;           /* referenced; on the origin shard */
	unsigned origin;
	enum rmq_ctrl_rpc rpc;
	uint8_t *buf;                    /* the request, then the answer */
	size_t len;
	/* For the controller. */
	struct rmq_raft_msg m;
	struct rmq_ctrl_wire_hold hold;
	struct rmq_raft_conf conf;       /* SNAPSHOT: m.conf; buf holds its data */
	bool stepped;
	struct rmq_ctrl_inbound *next;
};

/* The handlers of PreVote, RequestVote, AppendEntries and TimeoutNow
 * (methods.c), on the connection's shard. */
void rmq_ctrl_rpc_prevote(struct rmq_call *c, const uint8_t *msg, size_t len);
void rmq_ctrl_rpc_vote(struct rmq_call *c, const uint8_t *msg, size_t len);
void rmq_ctrl_rpc_append(struct rmq_call *c, const uint8_t *msg, size_t len);
void rmq_ctrl_rpc_timeout_now(struct rmq_call *c, const uint8_t *msg, size_t len);
/* InstallSnapshot, a client stream: its chunks, its end, its cancel. */
void rmq_ctrl_snapshot_chunk(struct rmq_call *c, const uint8_t *msg, size_t len);
void rmq_ctrl_snapshot_end(struct rmq_call *c);
void rmq_ctrl_snapshot_cancel(struct rmq_call *c);

/* Provided by controller.c: a call arrived at shard 0. */
void rmq_ctrl_receive(struct rmq_bshard *bs, struct rmq_ctrl_inbound *in);

/* Shard 0: answers in with the encoded answer (taken over, malloc'd; NULL
 * with status: the call ends with that gRPC status) and lets go of it. */
void rmq_ctrl_answer(struct rmq_bshard *bs, struct rmq_ctrl_inbound *in, uint8_t *buf, size_t len,
		     int status);

/* ---- out ---------------------------------------------------------------------- */

struct rmq_ctrl_peers;

/* Peers of node self on shard 0 (bs); on_answer(arg, m) gets each answer
 * as a core message to step.  Returns 0 or -ENOMEM. */
int rmq_ctrl_peers_new(struct rmq_bshard *bs, uint32_t self, const char *cluster_id,
		       void (*on_answer)(void *arg, const struct rmq_raft_msg *m), void *arg,
		       struct rmq_ctrl_peers **out);
/* Closes every connection (calls in flight end; their answers are
 * dropped) and frees. */
void rmq_ctrl_peers_free(struct rmq_ctrl_peers *ps);

/* Sends request message m to node m->to at addr ("host:port"). */
void rmq_ctrl_peers_send(struct rmq_ctrl_peers *ps, const struct rmq_raft_msg *m, const char *addr);

/* Sends snapshot m (SNAPSHOT) with its data (the state machine's bytes,
 * copied) as the InstallSnapshot stream; its answer comes through
 * on_answer as an APPEND_RESP.  At most one per peer at a time. */
void rmq_ctrl_peers_send_snapshot(struct rmq_ctrl_peers *ps, const struct rmq_raft_msg *m,
				  const char *addr, const uint8_t *data, size_t len);

#endif /* RMQ_BROKER_CTRL_NET_H */
