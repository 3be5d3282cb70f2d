/* SPDX-License-Identifier: Apache-2.0 */
/*
 * client.h - a shard's gRPC client: connections to one server, calls.
 *
 * The mirror of server.h on the same machinery: each connection is a TCP
 * socket connected with IORING_OP_CONNECT (TCP_NODELAY), a multishot recv
 * into the client's provided-buffer ring, an nghttp2 *client* session
 * driven bytes-in/bytes-out, and one send per connection per ring cycle (a
 * shard hook gathers what every session produced).  The gRPC framing, the
 * status trailers and grpc-timeout are the server's (wire.c).
 *
 * Objects and lifetimes (all on the shard that created the client; none
 * of this is thread-safe):
 *
 *   struct rmq_client ──┬─ conns[connections_max]   (pool)
 *                       ├─ calls[calls_max]          (pool, shared by the
 *                       │                             connections)
 *                       └─ provided-buffer ring, nghttp2 callbacks
 *
 *   rmq_client_connect ─► CONNECTING ─► on_connect(0) ─► OPEN ─► ...
 *                              │                                 │
 *                              └► on_connect(-errno): freed       │
 *       peer closed, I/O error, GOAWAY done, rmq_client_conn_close│
 *                                                                 ▼
 *                      every call's on_close, then on_close of the conn;
 *                      the handle is freed when that returns
 *
 *   rmq_ccall_start ─► HEADERS (:path, te, content-type, grpc-timeout)
 *   rmq_ccall_send*  ─► request messages (by reference, see below)
 *   rmq_ccall_half_close ─► END_STREAM
 *   response messages ─► on_message, each
 *   trailers / reset / deadline / connection lost ─► on_close, exactly
 *                      once; the call handle is freed when it returns
 *
 * Flow control: the client announces stream_window per stream and raises
 * the connection window to conn_window, and nghttp2 returns WINDOW_UPDATEs
 * as the messages are parsed.  Bounds, all fixed at creation: connections,
 * calls in flight, messages queued per call (send_queue_max), response
 * message size (max_message_bytes), receive buffers; a full pool is
 * RMQ_EFULL, never growth.  A call's response buffer grows to its largest
 * message (at most max_message_bytes) and is kept for the next call of the
 * same slot, so a steady load allocates nothing.
 */
#ifndef RMQ_NET_CLIENT_H
#define RMQ_NET_CLIENT_H

#include "core/shard.h"
#include "net/grpc.h"

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

struct rmq_tls_ctx;

struct rmq_client_config {
	const char *host;            /* numeric address or name, e.g. "127.0.0.1" */
	uint16_t port;
	struct rmq_tls_ctx *tls;     /* TLS (tls.h, a client context), or NULL */
	uint32_t connections_max;    /* connections the client may hold */
	uint32_t calls_max;          /* calls in flight, all connections together */
	uint32_t send_queue_max;     /* request messages queued per call, unsent */
	uint64_t max_message_bytes;  /* largest response message accepted */
	uint32_t stream_window;      /* HTTP/2 initial stream window we announce */
	uint32_t conn_window;        /* HTTP/2 connection window we announce */
	uint32_t recv_buffers;       /* provided buffers (power of 2) */
	uint32_t recv_buffer_bytes;  /* bytes per provided buffer */
	uint64_t connect_timeout_ns; /* 0 = none */
	/* Shard steering (server.c, steer_by_source_port): with mod > 0, every
	 * connection binds a source port p with (p / 2) % mod == rem, so a
	 * node of mod shards hands it to its shard rem.  0 = any port. */
	uint32_t source_port_mod, source_port_rem;
};

/* Defaults: 127.0.0.1:9092, 64 connections, 4096 calls, 256 queued
 * messages per call, 64 MiB messages, 16 MiB stream and 64 MiB connection
 * windows, 256 x 64 KiB receive buffers, 10 s to connect. */
void rmq_client_config_default(struct rmq_client_config *cfg);

struct rmq_client;
struct rmq_client_conn;
struct rmq_ccall;

struct rmq_client_stats {
	uint64_t connections;        /* open now */
	uint64_t calls;              /* in flight now */
	uint64_t calls_total;
	uint64_t bytes_sent, bytes_received;
};

/*
 * Creates a client on shard s: resolves host:port (getaddrinfo, once, now),
 * allocates the pools, registers the receive buffer ring and the send hook.
 * Returns 0 and *out, or:
 *   -EINVAL          a bound is 0, recv_buffers is not a power of 2, a
 *                    window is out of HTTP/2's range
 *   -EADDRNOTAVAIL   host does not resolve
 *   -ENOMEM, or the kernel's error registering the buffer ring
 */
int rmq_client_create(struct rmq_shard *s, const struct rmq_client_config *cfg,
		      struct rmq_client **out);

/*
 * Cuts every connection (calls get on_close with CANCELLED, connections
 * on_close), waits for the ring to return every operation (serving it, at
 * most 5 s), and frees the client.  Call it on the client's shard while
 * the ring exists (the runtime's fini at the latest).  Must not be called
 * from one of the client's callbacks.
 */
void rmq_client_destroy(struct rmq_client *cl);

const struct rmq_client_stats *rmq_client_stats(const struct rmq_client *cl);

/* The `authorization` header of every call started from now on (e.g.
 * "Bearer <token>"; NULL or "": none), copied.  Returns 0, or RMQ_ETOOBIG
 * over 1 KiB. */
int rmq_client_set_authorization(struct rmq_client *cl, const char *value);

/* ---- connections ---------------------------------------------------------- */

struct rmq_client_conn_ops {
	/* The TCP connection is up and the HTTP/2 preface queued (res 0):
	 * calls may start.  Or it failed (res -ECONNREFUSED, -ETIMEDOUT,
	 * -ENETUNREACH, ...): the handle is freed when this returns. */
	void (*on_connect)(struct rmq_client_conn *cc, void *arg, int res);
	/* After a successful connect: the connection is gone (why: 0 when
	 * closed by rmq_client_conn_close or a GOAWAY that completed, else
	 * -ECONNRESET, -EPIPE, RMQ_EPROTO, ...).  Every call of it already
	 * got on_close.  The handle is freed when this returns.  May be NULL. */
	void (*on_close)(struct rmq_client_conn *cc, void *arg, int why);
};

/*
 * Starts connecting a new connection.  ops and arg must stay valid until
 * the handle is freed (see on_connect / on_close).  *out is set at once
 * and stays valid until then.
 * Returns 0, or RMQ_EFULL (connections_max in use), or a negated errno
 * from socket() or -EBUSY (no SQE).  Callbacks never run inside this call.
 */
int rmq_client_connect(struct rmq_client *cl, const struct rmq_client_conn_ops *ops, void *arg,
		       struct rmq_client_conn **out);

/*
 * Closes the connection: calls in flight end with CANCELLED, then on_close
 * runs (from the shard's next flush, never inside this call).  A no-op
 * when it is already closing.
 */
void rmq_client_conn_close(struct rmq_client_conn *cc);

/* True while calls may start on cc: connected, not closing, no GOAWAY. */
bool rmq_client_conn_ok(const struct rmq_client_conn *cc);

/* ---- calls ------------------------------------------------------------------- */

struct rmq_ccall_ops {
	/*
	 * One response message.  msg is valid only during the callback (it
	 * may point into a receive buffer).  The callback may send, half-close
	 * or cancel this call, and start others.  May be NULL (messages
	 * dropped).
	 */
	void (*on_message)(struct rmq_ccall *c, void *arg, const uint8_t *msg, size_t len);
	/*
	 * The call is over: grpc-status from the trailers (message: the
	 * decoded grpc-message, "" when none), or what the client concluded:
	 *   CANCELLED          rmq_ccall_cancel, or the connection was closed
	 *                      by rmq_client_conn_close / rmq_client_destroy
	 *   DEADLINE_EXCEEDED  the call's timeout passed (the stream is reset)
	 *   UNAVAILABLE        connection lost, or the server refused the
	 *                      stream (REFUSED_STREAM, GOAWAY)
	 *   INTERNAL           a framing error in the response, or a reset
	 *                      with another code, or no grpc-status at all
	 *   RESOURCE_EXHAUSTED a response message above max_message_bytes
	 *   others             the HTTP status mapped as gRPC specifies
	 * message is valid only during the callback.  The handle is freed when
	 * this returns: every request buffer given by reference may be reused.
	 */
	void (*on_close)(struct rmq_ccall *c, void *arg, enum rmq_grpc_status status,
			 const char *message);
};

/*
 * Starts a call of `path` ("/pkg.Service/Method", copied) on cc, with a
 * deadline timeout_ns from now (0 = none; also sent as grpc-timeout).
 * ops and arg must stay valid until on_close.  Returns 0 and *out, or:
 *   RMQ_EFULL    calls_max calls are in flight (nothing started)
 *   RMQ_ECLOSED  cc is not usable (rmq_client_conn_ok is false), or its
 *                stream ids are used up (open another connection)
 *   RMQ_ETOOBIG  path longer than 255 bytes
 *   -ENOMEM      nghttp2 could not allocate
 * on_close never runs inside this call.
 */
int rmq_ccall_start(struct rmq_client_conn *cc, const char *path, uint64_t timeout_ns,
		    const struct rmq_ccall_ops *ops, void *arg, struct rmq_ccall **out);

/*
 * Queues one request message, *by reference*: msg must stay valid and
 * unchanged until rmq_ccall_written() has counted it or on_close has run
 * (the bytes are copied straight into the connection's output, once).
 * Returns 0, or:
 *   RMQ_ECLOSED  the call is over, half-closed or cancelled
 *   RMQ_ETOOBIG  len >= 4 GiB
 *   RMQ_EFULL    send_queue_max messages are queued unsent (not queued;
 *                retry after some were written)
 */
int rmq_ccall_send(struct rmq_ccall *c, const void *msg, size_t len);

/*
 * Queues one request message made of iov[0..iovcnt), each piece a queue
 * entry (empty ones take none).  Pieces with refs[i] are referenced like a
 * server's (grpc.h rmq_send_ref): the layer takes a count while it queues
 * them and the output holds its own until the kernel took the bytes, so
 * the caller may drop its count at once; those of at least RMQ_NET_REF_MIN
 * bytes are never copied in user space.  The others are the caller's, as
 * rmq_ccall_send's.  refs may be NULL.  Errors as rmq_ccall_send's, and
 * RMQ_ETOOBIG for more pieces than send_queue_max; nothing is queued and
 * no count is taken then.
 */
int rmq_ccall_sendv_ref(struct rmq_ccall *c, const struct iovec *iov,
			struct rmq_send_ref *const *refs, int iovcnt);

/* Ends the request stream (END_STREAM after the queued messages).
 * Returns 0, or RMQ_ECLOSED when already half-closed or over. */
int rmq_ccall_half_close(struct rmq_ccall *c);

/* Queue entries free: pieces rmq_ccall_sendv_ref may queue now. */
uint32_t rmq_ccall_send_room(const struct rmq_ccall *c);

/* Messages queued with rmq_ccall_send whose bytes were all written to the
 * connection's output: their buffers may be reused. */
uint64_t rmq_ccall_written(const struct rmq_ccall *c);

/* Cancels the call: RST_STREAM(CANCEL) and on_close(CANCELLED) from the
 * shard's next flush (never inside this call).  A no-op once cancelled. */
void rmq_ccall_cancel(struct rmq_ccall *c);

/*
 * Unary call: starts it, sends req (by reference, valid until done runs)
 * and half-closes.  done runs exactly once with the status and, with OK,
 * the response message (resp NULL and resp_len 0 otherwise; OK without
 * exactly one message becomes INTERNAL).  resp and message are valid only
 * during the callback.  *out (when out is not NULL) is the call, for
 * rmq_ccall_cancel, valid until done runs.
 * Returns what rmq_ccall_start returns; done never runs inside this call.
 */
typedef void (*rmq_client_unary_cb)(void *arg, enum rmq_grpc_status status, const char *message,
				    const uint8_t *resp, size_t resp_len);
int rmq_client_unary(struct rmq_client_conn *cc, const char *path, const void *req, size_t len,
		     uint64_t timeout_ns, rmq_client_unary_cb done, void *arg,
		     struct rmq_ccall **out);

/*
 * Server-streaming call: starts it, sends req (by reference, valid until
 * on_close) and half-closes; ops->on_message runs per response message.
 * Returns what rmq_ccall_start returns, with *out set (for cancel).
 */
int rmq_client_server_stream(struct rmq_client_conn *cc, const char *path, const void *req,
			     size_t len, uint64_t timeout_ns, const struct rmq_ccall_ops *ops,
			     void *arg, struct rmq_ccall **out);

#endif /* RMQ_NET_CLIENT_H */
