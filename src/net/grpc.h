/* SPDX-License-Identifier: Apache-2.0 */
/*
 * grpc.h - the server side of gRPC over HTTP/2, on a shard's ring.
 *
 * Framing (the gRPC over HTTP/2 spec), per message in DATA frames:
 *
 *   OFFSET SIZE MEANING
 *   0      1    compressed flag: 0, or 1 with a negotiated grpc-encoding
 *   1      4    message length N, big-endian
 *   5      N    the protobuf message
 *
 * Messages may be split across DATA frames and several may share one.
 * A call is an HTTP/2 stream:
 *
 *   client HEADERS (:method POST, :path /pkg.Service/Method,
 *                   content-type application/grpc[+proto], te trailers,
 *                   grpc-timeout?)   ──► method lookup in the table
 *   client DATA*  (request messages) ──► on_message() per message
 *   client END_STREAM                ──► on_half_close()
 *   server HEADERS (:status 200, content-type application/grpc)
 *   server DATA*  (rmq_call_send*)
 *   server trailers (grpc-status, grpc-message percent-encoded)
 *                                    ◄── rmq_call_finish()
 *
 * An error before any response message is sent goes out as a
 * trailers-only response (one HEADERS frame with :status 200,
 * content-type and grpc-status).  Unknown path: UNIMPLEMENTED.  A message
 * above max_message_bytes either way: RESOURCE_EXHAUSTED.  A compressed
 * message without a negotiated encoding: UNIMPLEMENTED.  grpc-timeout
 * expiry: DEADLINE_EXCEEDED, and the handler sees on_cancel.  RST_STREAM
 * from the client, or the connection closing: on_cancel.
 *
 * Calls are reference counted: the connection holds one reference while
 * the stream is open; a handler that answers later (after work on another
 * shard) takes its own with rmq_call_ref() and drops it with
 * rmq_call_unref().  After on_cancel, sends return RMQ_ECLOSED and the
 * handler only has to drop its reference.  Everything runs on the shard
 * that accepted the connection; none of this is thread-safe.
 */
#ifndef RMQ_NET_GRPC_H
#define RMQ_NET_GRPC_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/uio.h>

/* gRPC status codes (grpc/status.h). */
enum rmq_grpc_status {
	RMQ_GRPC_OK = 0,
	RMQ_GRPC_CANCELLED = 1,
	RMQ_GRPC_UNKNOWN = 2,
	RMQ_GRPC_INVALID_ARGUMENT = 3,
	RMQ_GRPC_DEADLINE_EXCEEDED = 4,
	RMQ_GRPC_NOT_FOUND = 5,
	RMQ_GRPC_ALREADY_EXISTS = 6,
	RMQ_GRPC_PERMISSION_DENIED = 7,
	RMQ_GRPC_RESOURCE_EXHAUSTED = 8,
	RMQ_GRPC_FAILED_PRECONDITION = 9,
	RMQ_GRPC_ABORTED = 10,
	RMQ_GRPC_OUT_OF_RANGE = 11,
	RMQ_GRPC_UNIMPLEMENTED = 12,
	RMQ_GRPC_INTERNAL = 13,
	RMQ_GRPC_UNAVAILABLE = 14,
	RMQ_GRPC_DATA_LOSS = 15,
	RMQ_GRPC_UNAUTHENTICATED = 16,
};
#define RMQ_GRPC_STATUS_COUNT 17

/* "OK", "CANCELLED", ... as grpc names them; "UNKNOWN" outside 0..16.
 * A static string. */
const char *rmq_grpc_status_name(int status);

enum rmq_grpc_kind {
	RMQ_GRPC_UNARY,         /* one request, one response */
	RMQ_GRPC_SERVER_STREAM, /* one request, a stream of responses */
	RMQ_GRPC_CLIENT_STREAM, /* a stream of requests, one response */
	RMQ_GRPC_BIDI,          /* both */
};

struct rmq_call;

struct rmq_grpc_method {
	const char *path;        /* "/rustmq.client.ProducerService/Produce" */
	enum rmq_grpc_kind kind;
	/*
	 * One request message; msg is valid only during the call.  For
	 * UNARY and SERVER_STREAM it runs exactly once, after the request's
	 * END_STREAM; a request with a second message, or with none, is
	 * answered INVALID_ARGUMENT by the layer and never reaches it.
	 */
	void (*on_message)(struct rmq_call *c, const uint8_t *msg, size_t len);
	/* The client finished sending (streaming requests only; may be NULL). */
	void (*on_half_close)(struct rmq_call *c);
	/* The call ended without rmq_call_finish(): client RST_STREAM,
	 * deadline, connection closed or shutting down.  May be NULL. */
	void (*on_cancel)(struct rmq_call *c);
	/* Queued response bytes fell below the low-water mark after an
	 * RMQ_EFULL from a send (server streams).  May be NULL. */
	void (*on_drain)(struct rmq_call *c);
};

/*
 * Queues one response message (copied; the 5-byte prefix is added).
 * Returns 0, or:
 *   RMQ_ECLOSED  the call was cancelled or finished
 *   RMQ_ETOOBIG  len exceeds max_message_bytes (the call is not changed)
 *   RMQ_EFULL    more than the per-call send limit is queued: wait for
 *                on_drain (the message was not queued)
 */
int rmq_call_send(struct rmq_call *c, const void *msg, size_t len);

/* Like rmq_call_send(), the message being the concatenation of iov[]. */
int rmq_call_sendv(struct rmq_call *c, const struct iovec *iov, int iovcnt);

/*
 * Bytes a response refers to instead of copying (zero-copy sends).  The
 * sender sets release and count = 1 (its own count), and drops its count
 * with rmq_send_ref_put() when it no longer needs the bytes itself; the
 * layer holds a count for every queued piece that points at them.
 * release runs once, on the call's shard, when the last count goes: after
 * the kernel has taken every referenced byte (send completion; a short
 * send keeps the rest), or when the call or its connection is dropped
 * (cancel, reset, deadline, lost connection) with bytes still queued.
 * Counts are not atomic: only the call's shard touches them once queued.
 */
struct rmq_send_ref {
	void (*release)(struct rmq_send_ref *r);
	/* Optional (NULL: never): where [p, p + len) of the referenced bytes
	 * lie in a file, so a server with splice on (rmq_net_config.splice)
	 * may move them from the page cache into the socket without copying
	 * them.  Returns true with *fd and *off when the range is one
	 * stretch of a file whose pages hold exactly these bytes now; the
	 * descriptor must stay open while the reference is held. */
	bool (*file)(const struct rmq_send_ref *r, const uint8_t *p, size_t len, int *fd,
		     uint64_t *off);
	uint32_t count;
};

static inline void rmq_send_ref_get(struct rmq_send_ref *r)
{
	r->count++;
}

static inline void rmq_send_ref_put(struct rmq_send_ref *r)
{
	if (--r->count == 0)
		r->release(r);
}

/*
 * Like rmq_call_sendv(), but iov[i] is referenced, not copied, when
 * refs[i] is not NULL (and it is not tiny): its bytes must stay unchanged
 * until refs[i] is released (see above).  refs may be NULL (all copied).
 * On an error nothing is queued and no count is taken.
 */
int rmq_call_sendv_ref(struct rmq_call *c, const struct iovec *iov,
		       struct rmq_send_ref *const *refs, int iovcnt);

/*
 * Ends the call with grpc-status (and grpc-message when msg is not NULL,
 * percent-encoded by the layer).  After queued messages are sent, the
 * trailers follow; with nothing sent it is a trailers-only response.
 * Returns 0, or RMQ_ECLOSED when already cancelled or finished.
 */
int rmq_call_finish(struct rmq_call *c, enum rmq_grpc_status status, const char *msg);

/* printf-style message for rmq_call_finish (truncated at 1 KiB). */
int rmq_call_finishf(struct rmq_call *c, enum rmq_grpc_status status, const char *fmt, ...)
	__attribute__((format(printf, 3, 4)));

bool rmq_call_done(const struct rmq_call *c);   /* cancelled or finished */
uint64_t rmq_call_deadline_ns(const struct rmq_call *c); /* 0 = none */
const struct rmq_grpc_method *rmq_call_method(const struct rmq_call *c);
void *rmq_call_app(const struct rmq_call *c);   /* the server's app pointer */
void *rmq_call_get_ctx(const struct rmq_call *c);
void rmq_call_set_ctx(struct rmq_call *c, void *ctx);
/* The client's address (no port) into buf.  Returns 0, or -ENOTCONN
 * once the connection is gone. */
int rmq_call_peer(const struct rmq_call *c, char *buf, size_t len);
/* The request's `authorization` header (NUL-terminated), or NULL when it
 * has none; *too_long (may be NULL) says one was sent over 1 KiB, which
 * is dropped. */
const char *rmq_call_authorization(const struct rmq_call *c, bool *too_long);
/* The identity of the connection's verified TLS client certificate, or
 * NULL (no TLS, no certificate). */
const char *rmq_call_tls_peer(const struct rmq_call *c);
/* Who the call is, as the server's authorize hook decided (server.h);
 * NULL when it set none. */
void rmq_call_set_principal(struct rmq_call *c, const char *principal);
const char *rmq_call_principal(const struct rmq_call *c);
/* Stops (true) or lets go (false) the reading of the call's connection,
 * counted per connection (Kafka's muted channel: a quota's hold must not
 * let a client pile requests up in the node).  Every stop needs its let
 * go while the call lives; a connection gone drops them. */
void rmq_call_mute(struct rmq_call *c, bool mute);
/* How long the app held the call for a quota (the longest it noted), for
 * the answer's throttle_time. */
void rmq_call_set_throttle_ms(struct rmq_call *c, uint32_t ms);
uint32_t rmq_call_throttle_ms(const struct rmq_call *c);
void rmq_call_ref(struct rmq_call *c);
void rmq_call_unref(struct rmq_call *c);

/*
 * Counts bytes the application holds for this call (a request it keeps,
 * work it queued) in the shard's request memory (server.h, "Read
 * backpressure"); above the limit the server stops reading.  Charges go
 * back when the call returns to the pool, or earlier with
 * rmq_call_uncharge (at most what was charged).  Charge only memory that is
 * released without further input from this client, or reading could stay
 * stopped for good.  Never fails; valid until the last unref.
 */
void rmq_call_charge(struct rmq_call *c, size_t bytes);
void rmq_call_uncharge(struct rmq_call *c, size_t bytes);

#endif /* RMQ_NET_GRPC_H */
