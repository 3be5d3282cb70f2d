/* SPDX-License-Identifier: Apache-2.0 */
/*
 * net_int.h - what server.c, h2.c, grpc.c, conn.c, client.c, wire.c and
 * bufring.c share.  Not for other modules: the broker sees only server.h
 * and grpc.h, the load generator client.h.
 *
 * Who calls whom.  Arrows point one way; nothing calls back up except
 * through callbacks (nghttp2's, io_uring completions, and the ops table a
 * connection's owner gives conn.c):
 *
 *   server.c ──► h2.c ──► grpc.c ──► conn.c ──► bufring.c
 *      │                    │
 *      │                    └──► wire.c
 *      ├──► grpc.c (call pool, detach, drains)
 *      └──► conn.c, bufring.c
 *   client.c ──► conn.c, wire.c, bufring.c
 *
 * Ownership, per shard:
 *
 *   struct rmq_server ──┬─ conns[max_connections]   (pool; live / free lists)
 *                       │     └─ struct conn: a struct net_conn (fd, output
 *                       │        chain, recv and send ops), the nghttp2
 *                       │        session, timer, list of its calls
 *                       ├─ calls[max_calls]         (pool; free list)
 *                       │     └─ struct rmq_call: request reassembly, send
 *                       │        queue, status, deadline timer, refcount
 *                       └─ provided-buffer ring     (recv_buffers x recv_buffer_bytes)
 *
 * A call is on its connection's list while its stream is open (the
 * connection holds one reference); detaching it (stream closed, connection
 * lost) drops that reference, and the call returns to the pool when the
 * application has dropped its own.
 */
#ifndef RMQ_NET_NET_INT_H
#define RMQ_NET_NET_INT_H

#include "core/io.h"
#include "core/shard.h"
#include "net/grpc.h"
#include "net/server.h"

#include <nghttp2/nghttp2.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/socket.h>

/* Bytes of output buffered per connection (one send gathers at most this).
 * The buffers of all connections are one mapping made at start; a page is
 * committed only once a connection has used it. */
#define RMQ_NET_SENDBUF_BYTES (256u << 10)
/* The largest chunk nghttp2_session_mem_send() returns at once
 * (NGHTTP2_FRAMEBUF_CHUNKLEN: 9-byte header, 1 pad-length byte, 16 KiB),
 * and the largest NO_COPY DATA frame (we never pad).  A flush only asks
 * nghttp2 for more while this much room is left. */
#define RMQ_NET_FRAME_MAX (9u + 1u + 16384u)
/* SETTINGS_MAX_HEADER_LIST_SIZE we announce and enforce per header block
 * (RFC 7541 size: name + value + 32 per field). */
#define RMQ_NET_HEADER_LIST_MAX (16u << 10)
/* Accepted sockets that may wait for the slot of a connection evicted
 * from a full pool (server.c). */
#define NET_PENDING_MAX 64u
/* How long a closing connection may take to flush its last bytes (GOAWAY,
 * 505) and to be read to EOF before it is cut. */
#define RMQ_NET_LINGER_NS (1000ULL * 1000 * 1000)
/* Provided-buffer group id of the network's buffer ring (the next ids are
 * tried when another module took it on the same ring). */
#define RMQ_NET_BGID 0x6e74
/* Per-call request and send buffers grow on demand (to max_message_bytes
 * and send_queue_bytes) and are kept across calls up to this size. */
#define RMQ_CALL_KEEP_BYTES (16u << 10)
/* The request path kept for error messages. */
#define RMQ_CALL_PATH_MAX 128
/* gRPC message prefix: flag + 4-byte length. */
#define RMQ_GRPC_PREFIX 5
/* grpc-message is cut at this many raw bytes (before percent-encoding). */
#define NET_STATUS_MSG_MAX 1024
/* Room a NO_COPY DATA frame leaves in a connection's output for the control
 * frames and header blocks nghttp2 may return in the same mem_send (our
 * header blocks stay far below it: grpc-message is cut at
 * NET_STATUS_MSG_MAX, request headers are a path and four short fields). */
#define RMQ_NET_CTRL_RESERVE (8u << 10)
_Static_assert(RMQ_NET_CTRL_RESERVE >= 3 * NET_STATUS_MSG_MAX + 512, "trailers fit the reserve");
_Static_assert(RMQ_NET_FRAME_MAX + RMQ_NET_CTRL_RESERVE <= RMQ_NET_SENDBUF_BYTES, "reserve fits");

_Static_assert(RMQ_NET_SENDBUF_BYTES >= 4 * RMQ_NET_FRAME_MAX, "send buffer holds frames");
/* A connection's output is a chain of pieces, each either bytes in its
 * send buffer or bytes a response references (rmq_call_sendv_ref); one
 * SENDMSG takes at most this many. */
#define RMQ_NET_OUT_PIECES 256u
/* Pieces a NO_COPY DATA frame leaves free for what else nghttp2 returns in
 * the same flush (each returned chunk is one piece). */
#define RMQ_NET_PIECES_RESERVE 8u
/* Referenced bytes gathered into one connection's output before the flush
 * stops asking nghttp2 for more: a send moves at most about this much. */
#define RMQ_NET_OUT_REF_MAX (4u << 20)
/* The largest DATA frame the server sends when the peer allows it (h2.c). */
#define RMQ_NET_DATA_FRAME_MAX (1u << 20)
/* A referenced iovec shorter than this is copied instead: a piece costs
 * more than copying a few hundred bytes. */
#define RMQ_NET_REF_MIN 512u
_Static_assert(RMQ_NET_OUT_PIECES >= 4 * RMQ_NET_PIECES_RESERVE, "pieces for frames");
_Static_assert(RMQ_CALL_PATH_MAX >= 64, "paths are named in errors");

/* ---- intrusive doubly linked list ---------------------------------------- */

struct rmq_list {
	struct rmq_list *prev, *next;
};

static inline void rmq_list_init(struct rmq_list *l)
{
	l->prev = l->next = l;
}

static inline bool rmq_list_empty(const struct rmq_list *l)
{
	return l->next == l;
}

static inline bool rmq_list_linked(const struct rmq_list *n)
{
	return n->next != NULL && n->next != n;
}

static inline void rmq_list_add_tail(struct rmq_list *head, struct rmq_list *n)
{
	n->prev = head->prev;
	n->next = head;
	head->prev->next = n;
	head->prev = n;
}

static inline void rmq_list_add(struct rmq_list *head, struct rmq_list *n)
{
	rmq_list_add_tail(head->next, n);
}

static inline void rmq_list_del(struct rmq_list *n)
{
	n->prev->next = n->next;
	n->next->prev = n->prev;
	n->prev = n->next = n;
}

/* ---- wire.c: gRPC framing and headers, both directions ----------------------- */

/* Reassembles the messages of one direction of a call (see wire.c). */
struct net_grpc_reader {
	uint8_t pfx[RMQ_GRPC_PREFIX];
	uint8_t pfx_len;        /* prefix bytes collected; 5 while reading a body */
	uint32_t need;          /* the current (or last) message's length */
	uint32_t have;          /* body bytes of it in buf */
	uint32_t nmsg;          /* messages completed */
	uint8_t *buf;           /* grows to the largest message, at most `limit` */
	size_t cap;
};

enum { NET_RD_MORE = 0, NET_RD_MSG = 1 };

/* Writes the 5-byte prefix of an uncompressed message of len bytes. */
static inline void net_grpc_prefix(uint8_t *p, uint32_t len)
{
	p[0] = 0;
	p[1] = (uint8_t)(len >> 24);
	p[2] = (uint8_t)(len >> 16);
	p[3] = (uint8_t)(len >> 8);
	p[4] = (uint8_t)len;
}

/* Clears the state for a new call, keeping the buffer. */
void net_grpc_reader_reset(struct net_grpc_reader *r);
/* Frees the buffer when it grew beyond keep bytes. */
void net_grpc_reader_trim(struct net_grpc_reader *r, size_t keep);
void net_grpc_reader_free(struct net_grpc_reader *r);
/* True inside a message (some prefix or body bytes read, not all). */
static inline bool net_grpc_reader_partial(const struct net_grpc_reader *r)
{
	return r->pfx_len != 0;
}

/*
 * Consumes input [*data, *data + *len) up to the end of the next complete
 * message, advancing *data and *len past what it used.  A message lying
 * whole in the input is returned in place when `inplace`, else from
 * r->buf; either way *msg is valid until the next call (in place: as long
 * as the input).  max_msgs > 0 refuses a prefix beyond that many messages.
 * Returns NET_RD_MSG with *msg and *msg_len set, NET_RD_MORE once the
 * input is used up, or (r->pfx[0] and r->need say what was read):
 *   RMQ_EUNSUPPORTED  the compressed flag (no grpc-encoding is supported)
 *   RMQ_EPROTO        a flags byte other than 0 and 1
 *   RMQ_ETOOBIG       a length above limit, refused before buffering
 *   RMQ_ESTATE        a message beyond max_msgs
 *   -ENOMEM           the buffer could not grow
 * After an error the reader must be reset before it is used again.
 */
int net_grpc_read(struct net_grpc_reader *r, const uint8_t **data, size_t *len, uint64_t limit,
		  uint32_t max_msgs, bool inplace, const uint8_t **msg, size_t *msg_len);

/* grpc-status value: 0..16, anything else UNKNOWN (as the spec says). */
enum rmq_grpc_status net_grpc_status_parse(const uint8_t *v, size_t len);
/* The status of an HTTP answer without grpc-status (gRPC's mapping). */
enum rmq_grpc_status net_grpc_status_from_http(unsigned http_status);
/* Percent-encodes msg (bytes outside 0x20..0x7E, and '%'), cut at
 * NET_STATUS_MSG_MAX raw bytes.  Returns a malloc'd string or NULL. */
char *net_pct_encode(const char *msg);
/* Decodes a grpc-message value into out (capacity cap, NUL-terminated,
 * truncated to fit).  Returns the decoded length. */
size_t net_pct_decode(const uint8_t *in, size_t len, char *out, size_t cap);
/* grpc-timeout: 1 to 8 digits and a unit (H M S m u n).  Returns ns
 * (saturated, at least 1), or 0 when malformed. */
uint64_t net_grpc_timeout_parse(const uint8_t *v, size_t len);
/* Formats ns as a grpc-timeout value (rounded up to fit 8 digits).
 * Returns the length written, or 0 when cap is too small (16 is enough). */
size_t net_grpc_timeout_format(uint64_t ns, char *buf, size_t cap);

/* ---- bufring.c: the provided-buffer ring of multishot receives -------------- */

struct net_bufring {
	struct io_uring_buf_ring *br;
	size_t br_bytes;
	uint8_t *bufs;
	size_t bufs_bytes;
	uint32_t count;         /* power of 2 */
	uint32_t size;          /* bytes per buffer */
	int bgid;               /* -1 until registered */
};

/* Maps count buffers of size bytes and registers them under a free group
 * id (RMQ_NET_BGID and the next 15).  Returns 0 or a negated errno; on
 * failure net_bufring_teardown() releases what was set up. */
int net_bufring_setup(struct net_bufring *r, struct rmq_io *io, uint32_t count, uint32_t size);
void net_bufring_teardown(struct net_bufring *r, struct rmq_io *io);
/* Gives buffer bid back to the kernel. */
void net_bufring_recycle(struct net_bufring *r, unsigned bid);
static inline void *net_bufring_addr(const struct net_bufring *r, unsigned bid)
{
	return r->bufs + (size_t)bid * r->size;
}

/* ---- objects -------------------------------------------------------------- */

struct net_out_piece {
	const uint8_t *ext;         /* NULL: bytes of conn->out at off */
	struct rmq_send_ref *ref;   /* ext only: one count held */
	uint32_t off;
	uint32_t len;
};

/* One entry of a call's send queue: len bytes of sbuf (from shead, in
 * order) or len referenced bytes at ext. */
struct net_sq_ent {
	const uint8_t *ext;         /* NULL: inline bytes in sbuf */
	struct rmq_send_ref *ref;   /* ext only: one count held */
	uint32_t len;
};

/* ---- conn.c: one connection's socket I/O (server and client) ---------------- */

struct net_conn;

/* What a connection's owner (server.c, client.c) is told by conn.c. */
struct net_conn_ops {
	/* n bytes received, valid only during the call.  May cut the
	 * connection, or even free it and reuse the slot. */
	void (*input)(struct net_conn *nc, const uint8_t *p, size_t n);
	/* The connection cannot go on: why is 0 for the peer's EOF, else the
	 * error of a recv or a send (-EPIPE for a send that took nothing), or
	 * of a failed re-arm.  The owner cuts it (net_conn_cut). */
	void (*lost)(struct net_conn *nc, int why);
	/* Cut, and neither op is in flight any more: the owner frees it
	 * (net_conn_close).  May run inside net_conn_cut. */
	void (*idle)(struct net_conn *nc);
};

/*
 * Splice (rmq_net_config.splice).  A shard's pool of pipes, each lent to
 * one connection while referenced file bytes move through it from the
 * page cache into the socket (conn.c, "Splice").  Pipes are made on first
 * need, at most RMQ_NET_PIPES_MAX per shard; a connection that finds none
 * free sends by copy as without splice.
 */
#define RMQ_NET_PIPES_MAX 64
#define RMQ_NET_PIPE_BYTES (1u << 20) /* asked for; the kernel may give less */

struct net_pipe {
	int r, w;      /* -1: none */
	uint32_t cap;  /* bytes the pipe holds */
};

struct net_pipes {
	struct net_pipe free[RMQ_NET_PIPES_MAX];
	uint32_t nfree;          /* idle, on the stack above */
	uint32_t lent;           /* held by connections now */
	uint64_t *spliced_bytes; /* the owner's count of file bytes spliced */
};

/* Closes the idle pipes (the lent ones go with their connections). */
void net_pipes_destroy(struct net_pipes *pp);

struct net_conn_init_args {
	const struct net_conn_ops *ops;
	struct rmq_io *io;
	struct net_bufring *rx;         /* the owner's provided-buffer ring */
	struct rmq_list *dirty_list;    /* the owner's connections to flush */
	uint64_t *rx_bytes, *tx_bytes;  /* the owner's byte counters */
	uint8_t *out;                   /* RMQ_NET_SENDBUF_BYTES */
	struct net_out_piece *pieces;   /* RMQ_NET_OUT_PIECES */
	struct iovec *iov;              /* RMQ_NET_OUT_PIECES */
	struct net_pipes *pipes;        /* the owner's pool, or NULL: no splice */
};

struct net_conn {
	const struct net_conn_ops *ops;
	struct rmq_io *io;
	struct net_bufring *rx;
	struct rmq_list *dirty_list;
	uint64_t *rx_bytes, *tx_bytes;
	int fd;
	uint32_t gen;           /* bumped by net_conn_close */
	bool live;              /* between net_conn_open and net_conn_close */
	bool cut;               /* net_conn_cut ran: waiting for the ops */
	bool flushable;         /* net_conn_mark_dirty queues it */

	struct rmq_io_op recv_op;
	struct rmq_io_op send_op;
	bool recv_armed;
	bool recv_paused;       /* net_conn_pause_recv: not re-armed */
	bool recv_cancel_sent;
	bool send_inflight;

	/* The output chain (see conn.c). */
	uint8_t *out;
	uint32_t out_head, out_tail;
	struct net_out_piece *pieces;  /* RMQ_NET_OUT_PIECES */
	struct iovec *iov;             /* RMQ_NET_OUT_PIECES, the send's */
	uint32_t pc_head, pc_tail, pc_inflight;
	uint64_t out_ref_bytes;        /* referenced bytes queued */
	struct msghdr msg;
	struct net_tls *tls;           /* TLS (tls.c), or NULL: plaintext */

	/* Splice (conn.c): a round's syscalls run in net_conn_send, their
	 * results are applied from send_op's completion. */
	struct net_pipes *pipes;       /* NULL: never splice */
	struct net_pipe pipe;          /* lent while bytes move through it */
	uint32_t pipe_fill;            /* bytes in the pipe, not in the socket */
	uint32_t pre_len, in_len;      /* bytes the round writes, splices in */
	int pre_res, in_res, out_res;  /* what they did (-errno) */
	bool splice_round;             /* send_op is a round's NOP or POLL */
	bool splice_skip;              /* the next head piece goes by copy */
	bool nonblock;                 /* fd is O_NONBLOCK (set to splice) */

	struct rmq_list dirty;  /* on *dirty_list while it wants a flush */
};

/* server.c: one more (or one less) reason for conn to stop reading. */
struct conn;
void net_conn_mute(struct conn *conn, bool mute);

/* ---- tls.c: TLS between the socket and the owner (tls.h) ------------------------- */

struct rmq_tls_ctx;

/* Makes nc a TLS connection (a server's or a client's, as ctx is; host:
 * the name a client asks for and verifies, or NULL), before any I/O
 * (net_conn_open keeps it; net_conn_close ends it).  0 or -ENOMEM. */
/* Binds host:port (server.c).  shared: with SO_REUSEPORT, and listening
 * (a shard's gRPC listener); else bound only, for the caller to listen on
 * or to probe the address with.  Returns the fd and the bound port, or a
 * negated errno. */
int net_bind(const char *host, uint16_t port, bool shared, uint16_t *bound);

/* nghttp2's data_source_read_length callback of both ends (wire.c). */
ssize_t net_h2_read_length(nghttp2_session *s, uint8_t frame_type, int32_t stream_id,
			   int32_t session_window, int32_t stream_window, uint32_t max_frame,
			   void *ud);

int net_tls_start(struct net_conn *nc, struct rmq_tls_ctx *ctx, const char *host);
void net_tls_end(struct net_conn *nc);
/* Ciphertext received: its plaintext goes to ops->input; a fatal error
 * (a bad record, a refused handshake) goes to ops->lost. */
void net_tls_input(struct net_conn *nc, const uint8_t *p, size_t n);
/* Encrypts up to one record of the len bytes at p into the TLS buffer:
 * the bytes taken, 0 when not now (the buffer is full, or the handshake
 * must finish first), or -EPROTO (a fatal error; the caller ends the
 * connection). */
int net_tls_write(struct net_conn *nc, const uint8_t *p, size_t len);
/* Records waiting to be sent, and their sending. */
bool net_tls_pending(const struct net_conn *nc);
const uint8_t *net_tls_out(const struct net_conn *nc, size_t *len);
void net_tls_sent(struct net_conn *nc, size_t n);
/* A verified client certificate's identity (tls.c take_peer), or NULL. */
const char *net_tls_peer(const struct net_conn *nc);

/* Sets up a pool slot (once, at start). */
void net_conn_init(struct net_conn *nc, const struct net_conn_init_args *a);
/* Takes fd (closed by net_conn_close).  Output empty, no op armed, not
 * flushable until the owner says so. */
void net_conn_open(struct net_conn *nc, int fd);
/* Ends the slot's connection: drops queued pieces (their references),
 * closes the fd, bumps gen.  Only when neither op is in flight
 * (net_conn_idle). */
void net_conn_close(struct net_conn *nc);
bool net_conn_idle(const struct net_conn *nc);
/* Cuts the connection: shutdown(RDWR), cancels the ops, then ops->idle
 * once neither is in flight (at once when none is).  Idempotent. */
void net_conn_cut(struct net_conn *nc);
/* Whether net_conn_mark_dirty queues the connection for the owner's
 * flush (never once cut). */
void net_conn_set_flushable(struct net_conn *nc, bool on);
void net_conn_mark_dirty(struct net_conn *nc);
/* Room left at the tail of the send buffer. */
size_t net_conn_out_room(const struct net_conn *nc);
/* Pieces left in the output chain. */
static inline uint32_t net_conn_pieces_room(const struct net_conn *nc)
{
	return RMQ_NET_OUT_PIECES - nc->pc_tail;
}
/* Appends a copy (the caller checked the room: bytes, and one piece). */
void net_conn_out_append(struct net_conn *nc, const void *p, size_t len);
/* Appends a referenced piece; takes one count of ref (checked room). */
void net_conn_out_append_ref(struct net_conn *nc, const uint8_t *p, size_t len,
			     struct rmq_send_ref *ref);
/* Drops every queued piece (no send may be in flight). */
void net_conn_out_reset(struct net_conn *nc);
bool net_conn_out_pending(const struct net_conn *nc);
/*
 * Compacts the chain (when no send is in flight) and appends what the
 * session has to send while a whole chunk (or NO_COPY DATA frame) fits the
 * send buffer, pieces are left, and fewer than RMQ_NET_OUT_REF_MAX
 * referenced bytes are queued (a session's send_data callback checks the
 * same: nghttp2 cannot be told how much room there is).  Returns 0, a
 * negative nghttp2 error (the session is broken), or RMQ_ETOOBIG when a
 * chunk does not fit (never with our frame sizes).
 */
int net_conn_gather(struct net_conn *nc, nghttp2_session *h2);
/* Starts one send of the whole chain when output is queued and no send is
 * in flight.  Returns 0, or -EBUSY when the ring takes no SQE. */
int net_conn_send(struct net_conn *nc);
/* Arms the multishot recv.  Returns 0, or -EBUSY. */
int net_conn_arm_recv(struct net_conn *nc);
/* Stops reading: cancels the multishot recv and keeps it unarmed; bytes
 * already received still reach ops->input.  A no-op when paused or cut. */
void net_conn_pause_recv(struct net_conn *nc);
/* Reads again.  Returns 0, or -EBUSY when the recv could not be armed
 * (the owner cuts the connection). */
int net_conn_resume_recv(struct net_conn *nc);

/* ---- server.c's objects ------------------------------------------------------ */

enum conn_state {
	CONN_FREE,    /* in the pool */
	CONN_OPEN,    /* reading and writing */
	CONN_LINGER,  /* output done and write side shut: reading to EOF */
	CONN_CLOSING, /* cut: waiting for the recv and send ops to finish */
};

/* A server connection. */
struct conn {
	struct net_conn nc;     /* fd, output chain, recv and send */
	struct rmq_server *srv;
	enum conn_state state;
	nghttp2_session *h2;

	bool preface_ok;        /* the 24-byte client magic was accepted */
	bool peer_settings;     /* the client's SETTINGS arrived (h2.c) */
	bool handshake_ok;      /* both: the client preface is complete */
	uint32_t mutes;         /* calls that stopped its reading (rmq_call_mute) */
	bool h2_dead;           /* no more nghttp2 input or output */
	bool raw;               /* out holds a raw HTTP/1.1 answer */
	bool closing;           /* flush what is queued, then close */
	bool counted_error;     /* protocol_errors counted once */

	uint8_t first[16];      /* first input bytes, to recognise HTTP/1.x */
	uint32_t nfirst;
	uint64_t nrecv;         /* bytes received */
	uint64_t opened_ns;     /* accepted at */
	uint64_t last_rx_ns;
	uint64_t last_ping_ns;
	uint64_t close_by_ns;   /* while closing: cut at this time */
	size_t hdr_bytes;       /* size of the header block being received */

	struct rmq_timer timer;
	struct rmq_list calls;  /* struct rmq_call.link */
	struct rmq_list link;   /* server's live or free list */
	struct rmq_list unready; /* server's conns_unready until the handshake */
};

#define NET_AUTHZ_MAX 1024       /* an authorization header's value, at most */
#define NET_PRINCIPAL_MAX 255

struct rmq_call {
	struct rmq_server *srv;
	struct conn *conn;      /* NULL once the stream is gone */
	int32_t stream_id;
	uint32_t refs;
	const struct rmq_grpc_method *method;
	void *ctx;
	uint64_t timeout_ns;    /* from grpc-timeout; 0 = none */
	uint64_t deadline_ns;
	struct rmq_timer deadline;
	struct rmq_list link;   /* conn->calls, or the server's free list */
	struct rmq_call *drain_next;

	/* request headers */
	bool hdr_post;
	bool hdr_ct_seen;
	bool hdr_ct_grpc;
	bool hdr_timeout_bad;
	bool hdr_authz_long;    /* an authorization value over NET_AUTHZ_MAX */
	uint16_t authz_len;     /* the authorization header's value, ... */
	char authz[NET_AUTHZ_MAX + 1];
	char principal[NET_PRINCIPAL_MAX + 1]; /* who the call is (rmq_call_set_principal) */
	uint32_t throttle_ms;   /* how long the app held it for a quota */

	/* state */
	bool in_use;
	bool headers_ok;        /* request headers accepted, app may see it */
	bool app_seen;          /* a callback of the method has run */
	bool req_done;          /* request side over: further DATA is ignored */
	bool finished;          /* status decided (app or layer) */
	bool cancelled;         /* ended without the app's finish */
	bool resp_headers;      /* response HEADERS submitted */
	bool trailers_sent;     /* trailers (or a trailers-only answer) submitted */
	bool deferred;          /* the data provider returned DEFERRED */
	bool want_drain;        /* a send returned RMQ_EFULL */
	bool drain_queued;

	/* request reassembly (wire.c) */
	struct net_grpc_reader rd;

	/* request memory counted in the server's sums (grpc.c) */
	uint64_t charged;       /* rmq_call_charge */
	size_t rd_counted;      /* rd.cap as counted */
	size_t rd_input;        /* ... of it while the request is still read */

	/* send queue: entries sq[sq_head, sq_tail) in order, squeued bytes in
	 * all; the inline ones are [shead, stail) of sbuf.  The first
	 * sreserved bytes were promised to nghttp2 (NO_COPY) and go to the
	 * connection's output at send time: inline bytes copied, referenced
	 * ones as pieces of the chain. */
	uint8_t *sbuf;
	size_t scap, shead, stail, sreserved, squeued;
	struct net_sq_ent *sq;
	uint32_t sq_cap, sq_head, sq_tail;

	enum rmq_grpc_status status;
	char status_str[4];
	char *status_msg;       /* percent-encoded, malloc'd; NULL = none */

	char path[RMQ_CALL_PATH_MAX];
};

struct rmq_server {
	struct rmq_shard *shard;
	struct rmq_io *io;
	struct rmq_net_config cfg;
	const struct rmq_grpc_method **methods; /* sorted by path */
	size_t nmethods;
	void *app;

	int listen_fd;
	uint16_t port;
	bool port_owner;        /* published the ephemeral port for its runtime */
	const void *port_key;   /* ... under this key (the app's method table) */
	struct rmq_io_op accept_op;
	bool accept_armed;
	struct rmq_timer accept_retry;
	bool shutting_down;

	struct net_bufring rx;

	struct conn *conns;
	uint8_t *sendbufs;
	size_t sendbufs_bytes;
	struct rmq_list conns_free, conns_live, conns_dirty;
	struct rmq_list conns_unready;  /* in their handshake, oldest first */
	int pending[NET_PENDING_MAX];   /* accepted, waiting for an evicted
					   connection's slot (a ring) */
	uint32_t pending_head, npending;

	struct rmq_call *calls;
	struct rmq_list calls_free;
	struct rmq_call *drain_head;

	struct net_out_piece *pieces;  /* RMQ_NET_OUT_PIECES per connection */
	struct iovec *iovs;            /* the same */
	size_t pieces_bytes, iovs_bytes;

	nghttp2_session_callbacks *cbs;
	nghttp2_option *opt;

	struct rmq_server_stats stats;
	struct net_pipes pipes;    /* cfg.splice: the pool (conn.c) */
	bool hooked;               /* its flush hook is registered (server.c) */

	/* Read backpressure.  grpc.c keeps the sums (stats.request_bytes
	 * and req_input_bytes); server.c decides from them, in its flush
	 * hook, and applies the pause to the connections. */
	uint64_t req_input_bytes;  /* buffers of requests still arriving */
	uint32_t pause_mask;       /* RMQ_SERVER_PAUSE_APP_MASK bits, NET_PAUSE_BUDGET */
	bool reads_paused;         /* the pause as applied to the connections */
};

/* The pause reason of request memory over request_bytes_max. */
#define NET_PAUSE_BUDGET 0x80000000u
_Static_assert((NET_PAUSE_BUDGET & RMQ_SERVER_PAUSE_APP_MASK) == 0, "a reason of its own");

/* ---- h2.c ------------------------------------------------------------------ */

int net_h2_init(struct rmq_server *srv);
void net_h2_fini(struct rmq_server *srv);
/* Creates conn->h2 and queues the server preface (SETTINGS, window). */
int net_h2_session_new(struct conn *conn);

/* ---- grpc.c ---------------------------------------------------------------- */

int net_calls_init(struct rmq_server *srv);
void net_calls_fini(struct rmq_server *srv);
/* A call for a new stream, or NULL when the pool is empty. */
struct rmq_call *net_call_open(struct conn *conn, int32_t stream_id);
void net_call_header(struct rmq_call *c, const uint8_t *name, size_t namelen,
		     const uint8_t *value, size_t valuelen);
void net_call_headers_done(struct rmq_call *c, bool end_stream);
void net_call_data(struct rmq_call *c, const uint8_t *data, size_t len);
void net_call_end_stream(struct rmq_call *c);
/* The stream closed (RST_STREAM, both sides done) or the connection is
 * gone: detaches the call and drops the connection's reference. */
void net_call_detach(struct rmq_call *c);
/* Answers a stream that got no call (pool empty): trailers-only
 * RESOURCE_EXHAUSTED. */
void net_refuse_stream(struct conn *conn, int32_t stream_id);
/* nghttp2 NO_COPY DATA: writes the frame into the connection's output. */
int net_call_send_data(struct conn *conn, nghttp2_frame *frame, const uint8_t *framehd,
		       size_t length, nghttp2_data_source *source);
/* Runs the on_drain callbacks queued while flushing. */
void net_run_drains(struct rmq_server *srv);

#endif /* RMQ_NET_NET_INT_H */
