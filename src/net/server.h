/* SPDX-License-Identifier: Apache-2.0 */
/*
 * server.h - a shard's gRPC server: listener, connections, HTTP/2.
 *
 * Each shard runs one rmq_server: its own SO_REUSEPORT listening socket
 * on the shared address (the kernel spreads connections across shards),
 * a multishot accept, and per connection a multishot recv into the shard's
 * provided-buffer ring (re-armed on -ENOBUFS and whenever the kernel ends
 * the multishot), an nghttp2 server session driven bytes-in/bytes-out, and
 * one send per connection per ring cycle (a shard hook gathers what every
 * session produced).  Nothing here knows partitions or topics: requests
 * reach the broker through the method table.
 *
 * Bounds (all per shard, allocated at start): connections, streams per
 * connection (SETTINGS_MAX_CONCURRENT_STREAMS; more are refused with
 * RST_STREAM REFUSED_STREAM by nghttp2), calls, receive buffers, the
 * queued send bytes per connection, and the bytes of request memory.
 * A connection must send its client preface within preface_timeout_ns;
 * when the pool is full, a new connection displaces the oldest one that
 * has not (it is closed), so silent connections cannot lock clients out.
 *
 * Read backpressure.  Request memory is the reassembly buffers of live
 * calls plus what the application charges to calls (rmq_call_charge in
 * grpc.h).  Above request_bytes_max, or while the application holds a
 * pause (rmq_server_pause_reads), every connection past its client
 * preface stops reading: its multishot recv is cancelled and not re-armed,
 * bytes already received are still processed, and the kernel's TCP window
 * and the HTTP/2 windows (no longer refilled) push back on the clients.
 * Reading resumes once the memory is at or below three quarters of the
 * limit and no pause is held.  Buffers of requests still arriving can only
 * shrink by reading, so they never keep reading stopped on their own:
 * reading also resumes when what the application holds (charges and
 * requests it was handed) is at or below that mark.  A paused connection's
 * idle timeout and keepalive wait until it reads again.  The shard never
 * spins and never waits inside this: the pause is a state, applied to the
 * connections when it changes.  A connection over its limits, with a
 * bad preface, an HTTP/1.x request or an HTTP/2 protocol error is sent a
 * GOAWAY (when it spoke HTTP/2) and closed; other connections are
 * unaffected.
 */
#ifndef RMQ_NET_SERVER_H
#define RMQ_NET_SERVER_H

#include "core/shard.h"
#include "net/grpc.h"

#include <stddef.h>
#include <stdint.h>

struct rmq_tls_ctx;

struct rmq_net_config {
	const char *host;            /* listen address, e.g. "127.0.0.1" */
	uint16_t port;               /* 0 = ephemeral: shard 0 binds, the
					rest reuse its port (rmq_server_port) */
	uint32_t max_connections;    /* per shard */
	uint32_t max_streams;        /* concurrent streams per connection */
	uint32_t max_calls;          /* calls in flight per shard */
	uint64_t max_message_bytes;  /* gRPC message limit, both directions */
	uint32_t stream_window;      /* HTTP/2 initial stream window */
	uint32_t conn_window;        /* HTTP/2 connection window */
	uint32_t recv_buffers;       /* provided buffers per shard (power of 2) */
	uint32_t recv_buffer_bytes;  /* bytes per provided buffer */
	uint64_t send_queue_bytes;   /* queued response bytes per call before RMQ_EFULL */
	uint64_t keepalive_ns;       /* PING an idle connection after; 0 = never */
	uint64_t idle_timeout_ns;    /* close a connection idle this long; 0 = never */
	uint64_t request_bytes_max;  /* request memory per shard before reading
					stops (see above); 0 = no limit */
	uint64_t preface_timeout_ns; /* close a connection that has not sent the
					client preface (magic and SETTINGS) this
					long after its accept; 0 = only the idle
					timeout applies */
	struct rmq_tls_ctx *tls;     /* TLS for every connection (tls.h), or
					NULL: plaintext */
	/* Decides, once a call's headers are in and its method is known,
	 * whether it goes on: RMQ_GRPC_OK (it may set the call's principal),
	 * or the status it is refused with (UNAUTHENTICATED,
	 * PERMISSION_DENIED), why in why.  Runs on the call's shard before
	 * the app sees the call.  NULL: every call goes on. */
	enum rmq_grpc_status (*authorize)(struct rmq_call *c, char *why, size_t whylen);
	bool splice;                 /* referenced bytes whose ref names their
					file (rmq_send_ref.file) are spliced
					from the page cache into plaintext
					sockets instead of copied by SENDMSG */
	uint64_t listen_retry_ns;    /* a fixed port some socket still listens
					on is retried this long before start
					fails with -EADDRINUSE; 0 = fail at once
					(see rmq_server_start) */
};

/* Sensible defaults for all of the above (port 9092 on 127.0.0.1). */
void rmq_net_config_default(struct rmq_net_config *cfg);

struct rmq_server;

struct rmq_server_stats {
	uint64_t connections;        /* open now */
	uint64_t accepted, closed;
	uint64_t calls;              /* open now (pool in use) */
	uint64_t calls_total;
	uint64_t protocol_errors;    /* connections closed for bad input */
	uint64_t refused;            /* connections refused at the limit */
	uint64_t bytes_received, bytes_sent;
	uint64_t spliced_bytes;      /* of bytes_sent, moved by splice */
	uint64_t request_bytes;      /* request memory held now */
	uint64_t request_bytes_max;  /* the limit (config); 0 = none */
	uint64_t paused_connections; /* connections not reading now */
	uint64_t pauses;             /* times the shard stopped reading */
	uint64_t preface_timeouts;   /* closed for no client preface in time */
	uint64_t evicted;            /* closed in their handshake to admit a
					newer connection to a full pool */
};

/*
 * Starts serving on shard s: binds (SO_REUSEPORT), listens, arms the
 * multishot accept, registers the send hook.  methods[] (sorted or not;
 * looked up by path) and app must outlive the server.  Shard 0 binds
 * first; the others wait for it (at most 10 s + listen_retry_ns), then
 * share its port.  With a fixed port, shard 0 first makes sure no other
 * socket listens on the address (SO_REUSEPORT would share it), retrying
 * for up to listen_retry_ns: the listener of a process that was just
 * killed outlives it while the kernel tears its io_uring down, so a
 * successor started at once needs a moment.  Those waits block the
 * calling thread (start-up only).
 * Returns 0 and *out, or a negated errno: -EADDRINUSE (the port is held by
 * another socket, still after listen_retry_ns; logged), -ECANCELED (the
 * runtime stopped while waiting), -ENOMEM, ...
 */
int rmq_server_start(struct rmq_shard *s, const struct rmq_net_config *cfg,
		     const struct rmq_grpc_method *methods, size_t nmethods, void *app,
		     struct rmq_server **out);

/* The bound port (useful with port 0). */
uint16_t rmq_server_port(const struct rmq_server *srv);

/* Shutdown, step 1: stop accepting, send GOAWAY on every connection; calls
 * in flight continue. */
void rmq_server_shutdown(struct rmq_server *srv);

/* Shutdown, step 2: cancels every remaining call (on_cancel) and closes
 * connections.  Returns true once everything is closed and every call
 * reference is dropped (poll it from the runtime's drain check). */
bool rmq_server_drained(struct rmq_server *srv, bool force);

/* Frees the server.  Call it on the server's shard while its ring still
 * exists (the runtime's fini), after rmq_server_drained() returned true;
 * otherwise it forces the drain itself, serving the ring for up to 5 s. */
void rmq_server_destroy(struct rmq_server *srv);

const struct rmq_server_stats *rmq_server_stats(const struct rmq_server *srv);

/* The application's own pause reasons: any bits of this mask. */
#define RMQ_SERVER_PAUSE_APP_MASK 0x7fffffffu

/*
 * Stops reading on every connection of srv (see "Read backpressure"
 * above) until rmq_server_resume_reads() clears every reason bit given
 * here; reasons are independent bits of RMQ_SERVER_PAUSE_APP_MASK (other
 * bits are ignored), so separate holders do not release each other's
 * pause.  Meant for a full backlog: the application keeps serving what it
 * already has and resumes once it drained.  Takes effect at once (a cancel
 * per connection); calls in flight are unaffected.  Never blocks.
 */
void rmq_server_pause_reads(struct rmq_server *srv, uint32_t reason);
void rmq_server_resume_reads(struct rmq_server *srv, uint32_t reason);

#endif /* RMQ_NET_SERVER_H */
