/* SPDX-License-Identifier: Apache-2.0 */
/*
 * rpc.h - blocking gRPC calls for the rmq command-line client.
 *
 * The client of net/client.h lives on a shard and speaks in callbacks; a
 * command-line tool wants to send a request and wait for the answer.  This
 * module runs a one-shard runtime on a background thread with one client
 * and one connection, and hands calls across with a mutex-protected queue
 * and an eventfd the shard keeps a read posted on:
 *
 *   main thread                          shard thread (io_uring)
 *   rmq_rpc_submit(call) ─► queue ─► eventfd ─► read completes:
 *                                              rmq_client_unary(each queued)
 *   rmq_rpc_wait(call)   ◄─ cond ◄─ done: response copied to the heap
 *
 * Several calls may be in flight at once (the producer keeps a window of
 * ProduceBatch requests); each is waited for separately.  Nothing here is
 * on a hot path: one copy of each response is the price of the simplicity.
 *
 * A server-streaming call (stream set) queues each response message for
 * the main thread, which takes them in order with rmq_rpc_next():
 *
 *   shard: on_message ─► copy appended to c's messages ─► cond
 *   main:  rmq_rpc_next(c) ◄─ the oldest, or false once the call ended
 *
 * A slow reader holds what the server sent in memory; the streams the tool
 * asks for (progress reports) send a message a second or so.
 */
#ifndef RMQ_TOOLS_RPC_H
#define RMQ_TOOLS_RPC_H

#include "net/grpc.h"

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

struct rmq_rpc;
struct rmq_rpc_msg;

/* One call.  The caller owns it and its request buffer until
 * rmq_rpc_wait() returned; then rmq_rpc_call_reset() frees the answer. */
struct rmq_rpc_call {
	const char *path;             /* "/pkg.Service/Method" */
	const void *req;
	size_t len;
	uint64_t timeout_ns;          /* 0 = none */
	bool stream;                  /* server-streaming: read with rmq_rpc_next */
	/* Filled in before rmq_rpc_wait returns (a stream: once
	 * rmq_rpc_next returned false; resp stays NULL). */
	enum rmq_grpc_status status;
	char *message;                /* grpc-message, "" when none (heap) */
	uint8_t *resp;                /* the response message with OK (heap), else NULL */
	size_t resp_len;
	/* private */
	struct rmq_rpc *rpc;
	struct rmq_rpc_call *next;
	struct rmq_rpc_msg *msgs, *msgs_tail; /* stream: not taken yet */
	bool done;
};

/*
 * Connects to host:port (blocking, at most connect_timeout_ns).  Returns 0
 * and *out, or a negated errno (-ECONNREFUSED, -ETIMEDOUT,
 * -EADDRNOTAVAIL when host does not resolve, ...) or an rmq error.
 */
int rmq_rpc_open(const char *host, uint16_t port, uint64_t connect_timeout_ns,
		 struct rmq_rpc **out);

/* TLS (a client context of net/tls.h) for every connection opened after
 * it, or NULL: plaintext.  The caller keeps it alive. */
struct rmq_tls_ctx;
void rmq_rpc_use_tls(struct rmq_tls_ctx *tls);
/* The authorization header (e.g. "Bearer <token>") of every call on the
 * connections opened after it; NULL: none.  Copied. */
void rmq_rpc_use_authorization(const char *value);

/*
 * Logs in on rpc with AuthService.Authenticate as user with password
 * pw[0..pw_len): mech "SCRAM-SHA-256", "SCRAM-SHA-512" (the broker's
 * signature checked) or "PLAIN".  Writes "Bearer <token>" into authz (cap
 * bytes; 1100 suffice).  Returns 0, or -1 with why in err.
 */
int rmq_rpc_login(struct rmq_rpc *rpc, const char *user, const char *pw, size_t pw_len,
		  const char *mech, char *authz, size_t cap, char *err, size_t errlen);

/* Queues c (path, req, len, timeout_ns set by the caller). */
void rmq_rpc_submit(struct rmq_rpc *rpc, struct rmq_rpc_call *c);

/* Blocks until c is answered; returns c->status. */
enum rmq_grpc_status rmq_rpc_wait(struct rmq_rpc_call *c);

/* A stream's next response message: true and *msg (heap: the caller
 * frees it), *len; false when the call is over (c->status, c->message).
 * Blocks until one of them. */
bool rmq_rpc_next(struct rmq_rpc_call *c, uint8_t **msg, size_t *len);

/* Frees what the answer holds (a stream's messages not taken too); c may
 * be submitted again. */
void rmq_rpc_call_reset(struct rmq_rpc_call *c);

/* Submit and wait. */
enum rmq_grpc_status rmq_rpc_unary(struct rmq_rpc *rpc, struct rmq_rpc_call *c);

/* Stops the shard (calls still in flight end CANCELLED) and frees rpc. */
void rmq_rpc_close(struct rmq_rpc *rpc);

#endif /* RMQ_TOOLS_RPC_H */
