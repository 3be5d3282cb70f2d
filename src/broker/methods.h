/* SPDX-License-Identifier: Apache-2.0 */
/*
 * methods.h - the method table: every RPC of proto/ rmqd answers, what it
 * is (recorded as data), its request type and its handler.
 *
 *   gRPC layer (net/)                 methods.c                 handler
 *   :path ─► struct rmq_grpc_method ─► dispatch():
 *                                      ApiVersion.major check
 *                                      (UNSUPPORTED_VERSION in
 *                                      the method's response)
 *                                      decode with the route's
 *                                      descriptor (bad protobuf:
 *                                      INVALID_ARGUMENT)      ─► on_request(c, req)
 *                                      or, for routes that parse     handler owns req
 *                                      in place (produce):   ─► on_bytes(c, msg, len)
 *
 * A call's route says what it is (rmq_call_rpc): cancellation and anything
 * else that must know the kind of a call asks that, never compares handler
 * pointers (the table wraps every handler in dispatch()).
 */
#ifndef RMQ_BROKER_METHODS_H
#define RMQ_BROKER_METHODS_H

#include "net/grpc.h"

#include <protobuf-c/protobuf-c.h>
#include <stddef.h>
#include <stdint.h>

/* What a call is.  One per served RPC; RMQ_RPC_NOT_SERVED for the RPCs of
 * capabilities this node does not serve. */
enum rmq_rpc {
	RMQ_RPC_NOT_SERVED,
	RMQ_RPC_PRODUCE,
	RMQ_RPC_PRODUCE_BATCH,
	RMQ_RPC_PRODUCE_STREAM,
	RMQ_RPC_FETCH,
	RMQ_RPC_FETCH_BATCH,
	RMQ_RPC_SUBSCRIBE,
	RMQ_RPC_LIST_OFFSETS,
	RMQ_RPC_JOIN_GROUP,
	RMQ_RPC_LEAVE_GROUP,
	RMQ_RPC_COMMIT_OFFSETS,
	RMQ_RPC_HEARTBEAT,
	RMQ_RPC_SYNC_GROUP,
	RMQ_RPC_FETCH_OFFSETS,
	RMQ_RPC_TOPIC_METADATA,
	RMQ_RPC_MD_LIST_TOPICS,
	RMQ_RPC_BROKER_LIST,
	RMQ_RPC_PARTITION_LEADER,
	RMQ_RPC_CLUSTER_METADATA,
	RMQ_RPC_FIND_COORDINATOR,
	RMQ_RPC_AUTHENTICATE,
	RMQ_RPC_CREATE_TOPICS,
	RMQ_RPC_DELETE_TOPICS,
	RMQ_RPC_LIST_TOPICS,
	RMQ_RPC_DESCRIBE_TOPICS,
	RMQ_RPC_ALTER_CONFIGS,
	RMQ_RPC_DESCRIBE_CONFIGS,
	RMQ_RPC_DESCRIBE_CLUSTER,
	RMQ_RPC_LIST_GROUPS,
	RMQ_RPC_DESCRIBE_GROUPS,
	RMQ_RPC_DELETE_GROUPS,
	RMQ_RPC_RESET_GROUP_OFFSETS,
	RMQ_RPC_HEALTH_CHECK,
	RMQ_RPC_HEALTH_WATCH,
	RMQ_RPC_BROKER_HEALTH,
	RMQ_RPC_METRICS,
	RMQ_RPC_RAFT, /* ControllerRaftService's Raft messages (ctrl_net.h) */
	RMQ_RPC_FLEET, /* ControllerBrokerService's broker calls (fleet.h) */
	RMQ_RPC_REPLICATE, /* BrokerReplicationService's data, a follower's side (follow.h) */
	/* AdminService's users, ACLs and quotas (sec_admin.h) */
	RMQ_RPC_UPSERT_USERS,
	RMQ_RPC_DELETE_USERS,
	RMQ_RPC_LIST_USERS,
	RMQ_RPC_CREATE_ACLS,
	RMQ_RPC_DELETE_ACLS,
	RMQ_RPC_DESCRIBE_ACLS,
	RMQ_RPC_ALTER_QUOTAS,
	RMQ_RPC_DESCRIBE_QUOTAS,
};

/* A handler of a decoded request.  It owns req: it frees it with
 * protobuf_c_message_free_unpacked() once done (which may be later, on
 * another shard's reply). */
typedef void (*rmq_rpc_fn)(struct rmq_call *c, void *req);
/* A handler that parses the request bytes in place; msg is valid only
 * during the call. */
typedef void (*rmq_rpc_bytes_fn)(struct rmq_call *c, const uint8_t *msg, size_t len);

/* The served table (built at start by rmq_methods_init) and its size. */
extern struct rmq_grpc_method rmq_broker_methods[];
extern const size_t rmq_broker_nmethods;

/* Builds rmq_broker_methods from the routes.  Idempotent. */
void rmq_methods_init(void);
/* The shard stops: calls a quota holds go (their messages unread). */
struct rmq_bshard;
void rmq_methods_fini(struct rmq_bshard *bs);

/* What call c is (c must be a call of rmq_broker_methods). */
enum rmq_rpc rmq_call_rpc(const struct rmq_call *c);

/* Answers c with its method's response holding only error_code = code
 * and error_message (reply.h's rmq_reply_error), and ends the call. */
void rmq_refuse(struct rmq_call *c, int code, const char *fmt, ...)
	__attribute__((format(printf, 3, 4)));

#endif /* RMQ_BROKER_METHODS_H */
