/* SPDX-License-Identifier: Apache-2.0 */
/*
 * ctrl_wire.h - the Raft core's messages (raft/raft.h) as calls of
 * ControllerRaftService (proto/controller/raft.proto), both ways:
 *
 *   core message   RPC and request                   its response, as a core message
 *   PREVOTE        PreVote(PreVoteRequest)            PREVOTE_RESP
 *   VOTE           RequestVote(VoteRequest)           VOTE_RESP
 *   APPEND         AppendEntries(AppendEntriesRequest) APPEND_RESP
 *   TIMEOUT_NOW    TimeoutNow(TimeoutNowRequest)      none (an acknowledgement)
 *
 * (SNAPSHOT travels as the InstallSnapshot stream, chunked by the
 * transport.)  Node ids are decimal strings on the wire.  A granted
 * PreVoteResponse carries the term of the pre-vote, as the core expects
 * (etcd does the same).  Requests of another cluster (a non-empty
 * cluster_id that is not ours) are refused before they reach the core.
 *
 * Pure functions: no I/O, nothing kept between calls.
 */
#ifndef RMQ_BROKER_CTRL_WIRE_H
#define RMQ_BROKER_CTRL_WIRE_H

#include "controller/raft.pb-c.h"
#include "raft/raft.h"

#include <stddef.h>
#include <stdint.h>

enum rmq_ctrl_rpc {
	RMQ_CTRL_RPC_PREVOTE,
	RMQ_CTRL_RPC_VOTE,
	RMQ_CTRL_RPC_APPEND,
	RMQ_CTRL_RPC_TIMEOUT_NOW,
	RMQ_CTRL_RPC_SNAPSHOT,  /* InstallSnapshot (a client stream; answers only here) */
	RMQ_CTRL_RPC_COUNT,
};

/* "/rustmq.controller.ControllerRaftService/<Method>" */
const char *rmq_ctrl_rpc_path(enum rmq_ctrl_rpc rpc);

/* The RPC that carries a request message of type t, or -1 (responses,
 * SNAPSHOT). */
int rmq_ctrl_rpc_of(enum rmq_raft_msg_type t);

/* Request message m as its RPC's request (malloc'd into *buf).  Returns 0,
 * -EINVAL (not a request of ctrl_rpc_of), -ENOMEM. */
int rmq_ctrl_wire_encode_request(const struct rmq_raft_msg *m, const char *cluster_id,
				 uint8_t **buf, size_t *len);

/* What a decoded request holds on to: its entries point into it. */
struct rmq_ctrl_wire_hold {
	void *unpacked;
	struct rmq_raft_entry *entries;
};
void rmq_ctrl_wire_release(struct rmq_ctrl_wire_hold *hold);

/*
 * A request of rpc, received by node self, as a core message (to step);
 * release *hold once stepped.  Returns 0, RMQ_ECORRUPT (does not decode,
 * a node id that is not a number, more entries than fit a message), or
 * RMQ_EPROTO (another cluster's).
 */
int rmq_ctrl_wire_decode_request(enum rmq_ctrl_rpc rpc, const uint8_t *p, size_t len,
				 const char *cluster_id, uint32_t self, struct rmq_raft_msg *m,
				 struct rmq_ctrl_wire_hold *hold);

/*
 * The answer to a request of rpc: from the core's response message m
 * (NULL: the core answered nothing, e.g. a vote it ignored within a
 * leader's lease, or TimeoutNow), refused with code (a rustmq ErrorCode,
 * 0 = OK) and why.  term is the answering node's current term, self its
 * id.  Returns 0 or -ENOMEM.
 */
int rmq_ctrl_wire_encode_response(enum rmq_ctrl_rpc rpc, const struct rmq_raft_msg *m,
				  uint64_t term, uint32_t self, int code, const char *why,
				  uint8_t **buf, size_t *len);

/*
 * The answer to a request of rpc that self sent to node `to`, as a core
 * message to step.  Returns 0, 1 (nothing to step: an acknowledgement, a
 * refusal, or an answer without a decision), or RMQ_ECORRUPT.
 */
int rmq_ctrl_wire_decode_response(enum rmq_ctrl_rpc rpc, const uint8_t *p, size_t len,
				  uint32_t to, uint32_t self, struct rmq_raft_msg *m);

/* "12" -> 12; 0 for anything but a number from 1 to 2^32 - 1. */
uint32_t rmq_ctrl_node_id(const char *s);

/* A configuration as a RaftConfiguration (pointing into w) and back
 * (RMQ_ECORRUPT for one that is not valid). */
struct rmq_ctrl_wire_conf {
	Rustmq__Controller__RaftConfiguration pb;
	Rustmq__Controller__RaftServer sv[RMQ_RAFT_SERVERS_MAX];
	Rustmq__Controller__RaftServer *sp[RMQ_RAFT_SERVERS_MAX];
	char ids[RMQ_RAFT_SERVERS_MAX][12];
};
void rmq_ctrl_wire_conf_to_pb(const struct rmq_raft_conf *c, struct rmq_ctrl_wire_conf *w);
int rmq_ctrl_wire_conf_from_pb(const Rustmq__Controller__RaftConfiguration *pb,
			       struct rmq_raft_conf *c);

/* InstallSnapshot: snapshot m (SNAPSHOT, with its conf) of data[0..len)
 * as chunks of at most RMQ_CTRL_SNAPSHOT_CHUNK bytes of data, each encoded
 * into bufs[i] (malloc'd; *n of them, at most max).  Returns 0, RMQ_ETOOBIG
 * (more than max chunks), -ENOMEM. */
#define RMQ_CTRL_SNAPSHOT_CHUNK (1u << 20)
int rmq_ctrl_wire_snapshot_chunks(const struct rmq_raft_msg *m, const uint8_t *data, size_t len,
				  const char *cluster_id, uint8_t **bufs, size_t *lens, size_t max,
				  size_t *n);

#endif /* RMQ_BROKER_CTRL_WIRE_H */
