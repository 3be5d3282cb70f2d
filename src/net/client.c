/* SPDX-License-Identifier: Apache-2.0 */
/*
 * client.c - the gRPC client on a shard's ring (see client.h).
 *
 * The bytes, like the server's (server.c), through the same socket I/O
 * (conn.c):
 *
 *   socket ── CONNECT ──► nghttp2 client session (preface, SETTINGS,
 *                         connection window) ──► on_connect
 *   fd ── multishot RECV (conn.c) ──► nghttp2_session_mem_recv()
 *   flush hook (before the shard waits), per dirty connection:
 *       net_conn_gather() ──► the output chain ──► one SEND in flight
 *
 * Calls.  rmq_ccall_start submits the request HEADERS with a data provider
 * over the call's send queue: a ring of (pointer, length, 5-byte prefix)
 * entries referring to the caller's buffers.  The provider answers with
 * NGHTTP2_DATA_FLAG_NO_COPY, and nghttp2's send_data callback copies the
 * frame header, prefixes and message bytes straight into the connection's
 * output: one copy from the caller's buffer to the socket's.  Pieces the
 * caller references (rmq_ccall_sendv_ref: a leader's stored batches) join
 * the output as references, as a server's fetch answer does: the kernel's
 * copy into the socket is the only one.
 *
 * Responses are reassembled by the server's reader (wire.c): a streaming
 * response's messages go to on_message in place when they lie whole in one
 * DATA chunk; a unary response is kept in the call's buffer until the
 * trailers, then handed to the unary callback with the status.
 *
 * Stale references.  nghttp2 keeps a stream's user data and its data
 * source pointer until the stream is gone, and a call slot may be reused
 * before that (a cancel closes the call at once and resets the stream
 * later).  Every nghttp2 callback therefore checks that the slot still
 * belongs to that connection and stream id (ids only grow on a
 * connection) before touching it; a stale DATA frame is refused with
 * TEMPORAL_CALLBACK_FAILURE, which resets that stream only.
 *
 * Where on_close runs.  Ends the peer decides (trailers, resets, a
 * connection lost) run it from the completion that saw them; ends the
 * application asks for (cancel, conn close) are queued and run from the
 * flush hook, so no app callback ever runs inside an API call.
 *
 * Layering: client.c calls conn.c (socket I/O, the output chain), wire.c
 * (framing, status, timeouts) and bufring.c; nothing of the server.
 */
#include "net/client.h"

#include "net/net_int.h"

#include "core/assert.h"
#include "core/error.h"
#include "core/log.h"
#include "core/util.h"

#include <errno.h>
#include <netdb.h>
#include <stdarg.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/random.h>
#include <sys/socket.h>
#include <unistd.h>

#define CALL_PATH_MAX 256
#define CALL_MSG_MAX 512        /* decoded grpc-message kept per call */
#define DESTROY_WAIT_NS (5ULL * 1000 * 1000 * 1000)
/* Source ports a steered connection binds (bind_steered): below 32768,
 * where Linux's ephemeral range starts by default. */
#define STEER_PORT_LO 10000u
#define STEER_PORT_HI 32768u
#define STEER_MOD_MAX 1024u  /* shards of the node connected to */
#define STEER_TRIES 64u

_Static_assert(CALL_MSG_MAX >= 128, "room for our own messages");

enum cconn_state {
	CC_FREE,
	CC_CONNECTING,
	CC_OPEN,
	CC_CLOSING,  /* cut: waiting for the ops to come back */
};

/* One piece of a request message: the first carries the message's
 * prefix; the caller's bytes (valid until written), or referenced ones
 * (ref: one count held while queued, the output's pieces hold their own). */
struct sendq_ent {
	const uint8_t *p;
	struct rmq_send_ref *ref;
	uint32_t len;
	uint32_t done;          /* bytes of prefix and piece taken out */
	uint8_t pfx_len;        /* RMQ_GRPC_PREFIX for a message's first piece, else 0 */
	bool last;              /* the message's last piece */
	uint8_t pfx[RMQ_GRPC_PREFIX];
};

struct rmq_ccall {
	struct rmq_client *cl;
	struct rmq_client_conn *cc;     /* NULL when free */
	int32_t stream_id;
	const struct rmq_ccall_ops *ops;
	void *arg;
	rmq_client_unary_cb unary_done;
	void *unary_arg;
	bool unary;
	bool in_use;
	bool half_closed;
	bool deferred;                  /* the data provider returned DEFERRED */
	bool ending;                    /* on the client's deferred-close list */
	bool closed;                    /* on_close is running */

	/* response headers and trailers */
	unsigned http_status;
	bool ct_grpc;
	bool status_seen;
	enum rmq_grpc_status status;
	char message[CALL_MSG_MAX];
	/* a status decided here (cancel, deadline, framing); wins over the
	 * peer's when the call ends */
	bool local_end;
	enum rmq_grpc_status local_status;

	struct net_grpc_reader rd;

	/* request messages: ring of send_queue_max entries */
	struct sendq_ent *q;
	uint32_t qhead, qcount;
	uint64_t unsent;                /* bytes not yet taken into the output */
	uint64_t reserved;              /* ... of which promised to nghttp2 */
	uint64_t written;               /* messages fully taken out */

	struct rmq_timer deadline;
	struct rmq_list link;           /* conn's calls, or the free list */
	struct rmq_list end_link;       /* the client's deferred-close list */
	char path[CALL_PATH_MAX];
};

struct rmq_client_conn {
	struct net_conn nc;             /* fd, output chain, recv and send */
	struct rmq_client *cl;
	enum cconn_state state;
	nghttp2_session *h2;
	const struct rmq_client_conn_ops *ops;
	void *arg;
	bool connected;                 /* on_connect(0) ran */
	bool goaway;                    /* GOAWAY received: no new calls */
	bool close_asked;
	int why;                        /* why it is closing */

	struct rmq_io_op connect_op;
	bool connect_inflight;

	struct rmq_timer timer;         /* connect timeout */
	bool timed_out;
	size_t hdr_bytes;

	struct rmq_list calls;
	struct rmq_list link;           /* the client's live or free list */
};

struct rmq_client {
	struct rmq_shard *shard;
	struct rmq_io *io;
	struct rmq_client_config cfg;
	uint32_t steer_next;            /* bind_steered's next try */
	struct sockaddr_storage addr;
	socklen_t addrlen;
	int family;
	char authority[300];            /* host:port, for :authority */
	char host[256];                 /* cfg.host, kept (the caller's may go) */
	char authz[NET_AUTHZ_MAX + 1];  /* the authorization header of new calls, or "" */
	size_t authority_len;

	struct net_bufring rx;
	struct rmq_client_conn *conns;
	uint8_t *sendbufs;
	size_t sendbufs_bytes;
	struct net_out_piece *pieces;   /* RMQ_NET_OUT_PIECES per connection */
	struct iovec *iovs;             /* the same */
	size_t pieces_bytes, iovs_bytes;
	struct rmq_list conns_free, conns_live, conns_dirty;

	struct rmq_ccall *calls;
	struct sendq_ent *qents;
	struct rmq_list calls_free;
	struct rmq_list calls_ending;

	nghttp2_session_callbacks *cbs;
	nghttp2_option *opt;

	struct rmq_client_stats stats;
	bool hooked;               /* its flush hook is registered */
};

static void conn_abort(struct rmq_client_conn *cc, int why);
static void call_close(struct rmq_ccall *c, enum rmq_grpc_status status, const char *msg);

void rmq_client_config_default(struct rmq_client_config *cfg)
{
	*cfg = (struct rmq_client_config){
		.host = "127.0.0.1",
		.port = 9092,
		.connections_max = 64,
		.calls_max = 4096,
		.send_queue_max = 256,
		.max_message_bytes = 64u << 20,
		.stream_window = 16u << 20,
		.conn_window = 64u << 20,
		.recv_buffers = 256,
		.recv_buffer_bytes = 64u << 10,
		.connect_timeout_ns = 10ULL * 1000 * 1000 * 1000,
	};
}

const struct rmq_client_stats *rmq_client_stats(const struct rmq_client *cl)
{
	return &cl->stats;
}

/* ---- the shard's flush hook: one per thread, serving its clients ---------- */


static void conn_flush(struct rmq_client_conn *cc);

/* Queues cc for the flush (only while open: conn.c's flushable). */
static void mark_dirty(struct rmq_client_conn *cc)
{
	net_conn_mark_dirty(&cc->nc);
}

/* Runs the ends the application asked for, then flushes; again while
 * either produced more work. */
static void flush_client(struct rmq_client *cl)
{
	while (!rmq_list_empty(&cl->calls_ending) || !rmq_list_empty(&cl->conns_dirty)) {
		while (!rmq_list_empty(&cl->calls_ending)) {
			struct rmq_ccall *c =
				RMQ_CONTAINER_OF(cl->calls_ending.next, struct rmq_ccall, end_link);
			rmq_list_del(&c->end_link);
			c->ending = false;
			call_close(c, c->local_status, c->message);
		}
		while (!rmq_list_empty(&cl->conns_dirty)) {
			struct rmq_client_conn *cc =
				RMQ_CONTAINER_OF(cl->conns_dirty.next, struct rmq_client_conn, nc.dirty);
			rmq_list_del(&cc->nc.dirty);
			conn_flush(cc);
		}
	}
}

static void flush_hook(struct rmq_shard *s, void *arg)
{
	(void)s;
	flush_client(arg);
}

/* One before-wait hook per rmq_client: it sends what the cycle queued. */
static int hook_attach(struct rmq_client *cl)
{
	int rc = rmq_shard_add_hook(cl->shard, flush_hook, cl);
	if (rc == 0)
		cl->hooked = true;
	return rc;
}

static void hook_detach(struct rmq_client *cl)
{
	if (cl->hooked)
		rmq_shard_remove_hook(cl->shard, flush_hook, cl);
	cl->hooked = false;
}

/* ---- calls ------------------------------------------------------------------ */

/* In flight and not ending: the app may still act on it. */
static bool call_live(const struct rmq_ccall *c)
{
	return c->in_use && !c->ending && !c->closed;
}

/* The call behind a stream of cc, or NULL when the slot moved on. */
static struct rmq_ccall *stream_call(struct rmq_client_conn *cc, int32_t stream_id)
{
	struct rmq_ccall *c = nghttp2_session_get_stream_user_data(cc->h2, stream_id);
	if (!c || !call_live(c) || c->cc != cc || c->stream_id != stream_id)
		return NULL;
	return c;
}

static void call_release(struct rmq_ccall *c)
{
	struct rmq_client *cl = c->cl;

	/* Pieces never sent give their references back. */
	for (; c->qcount > 0; c->qcount--, c->qhead = (c->qhead + 1) % cl->cfg.send_queue_max)
		if (c->q[c->qhead].ref)
			rmq_send_ref_put(c->q[c->qhead].ref);

	rmq_timer_cancel(cl->shard, &c->deadline);
	rmq_list_del(&c->link);
	c->cc = NULL;
	c->in_use = false;
	c->stream_id = 0;
	rmq_list_add_tail(&cl->calls_free, &c->link);
	cl->stats.calls--;
}

/* Ends the call: its on_close (or the unary callback), then back to the
 * pool.  msg may point into c->message. */
static void call_close(struct rmq_ccall *c, enum rmq_grpc_status status, const char *msg)
{
	char text[CALL_MSG_MAX];

	RMQ_ASSERT(c->in_use);
	RMQ_ASSERT(!c->closed);
	c->closed = true;
	if (c->ending) {
		rmq_list_del(&c->end_link);
		c->ending = false;
	}
	/* The slot is free for reuse once the callback returns: copy the
	 * text out of it first. */
	snprintf(text, sizeof(text), "%s", msg ? msg : "");
	const uint8_t *resp = NULL;
	size_t resp_len = 0;
	if (c->unary && status == RMQ_GRPC_OK) {
		if (c->rd.nmsg == 1 && !net_grpc_reader_partial(&c->rd)) {
			resp = c->rd.buf ? c->rd.buf : (const uint8_t *)"";
			resp_len = c->rd.need;
		} else {
			status = RMQ_GRPC_INTERNAL;
			snprintf(text, sizeof(text), "%s", c->rd.nmsg == 0 ? "no response message"
								 : "response ended inside a message");
		}
	}
	rmq_timer_cancel(c->cl->shard, &c->deadline);
	/* Unlinked from the connection before the callback, so a conn close
	 * from inside it does not see the call again; the slot itself stays
	 * in use (the response buffer is still being read) until it returns. */
	rmq_list_del(&c->link);
	rmq_list_init(&c->link);
	c->stream_id = -1;
	if (c->unary)
		c->unary_done(c->unary_arg, status, text, resp, resp_len);
	else if (c->ops->on_close)
		c->ops->on_close(c, c->arg, status, text);
	call_release(c);
}

/* An end decided here: reset the stream and queue the close for the flush
 * hook (never inside the API call or nghttp2 callback that decided it). */
static void call_end_local(struct rmq_ccall *c, enum rmq_grpc_status status, const char *fmt, ...)
	__attribute__((format(printf, 3, 4)));

static void call_end_local(struct rmq_ccall *c, enum rmq_grpc_status status, const char *fmt, ...)
{
	va_list ap;

	if (!call_live(c))
		return;
	c->local_end = true;
	c->local_status = status;
	va_start(ap, fmt);
	vsnprintf(c->message, sizeof(c->message), fmt, ap);
	va_end(ap);
	if (c->cc && c->cc->h2 && c->stream_id > 0) {
		nghttp2_submit_rst_stream(c->cc->h2, NGHTTP2_FLAG_NONE, c->stream_id,
					  NGHTTP2_CANCEL);
		mark_dirty(c->cc);
	}
	c->ending = true;
	rmq_list_add_tail(&c->cl->calls_ending, &c->end_link);
}

static void deadline_fn(struct rmq_timer *t)
{
	struct rmq_ccall *c = RMQ_CONTAINER_OF(t, struct rmq_ccall, deadline);
	call_end_local(c, RMQ_GRPC_DEADLINE_EXCEEDED, "deadline exceeded");
}

/* The status of a stream nghttp2 closed. */
static void call_stream_closed(struct rmq_ccall *c, uint32_t error_code)
{
	enum rmq_grpc_status st;
	char msg[CALL_MSG_MAX];

	if (c->status_seen) {
		st = c->status;
		snprintf(msg, sizeof(msg), "%s", c->message);
		if (st == RMQ_GRPC_OK && net_grpc_reader_partial(&c->rd)) {
			st = RMQ_GRPC_INTERNAL;
			snprintf(msg, sizeof(msg), "response ended inside a message");
		}
	} else if (error_code == NGHTTP2_REFUSED_STREAM) {
		st = RMQ_GRPC_UNAVAILABLE;
		snprintf(msg, sizeof(msg), "the server refused the stream");
	} else if (c->http_status != 0 && c->http_status != 200) {
		st = net_grpc_status_from_http(c->http_status);
		snprintf(msg, sizeof(msg), "HTTP status %u", c->http_status);
	} else if (error_code == NGHTTP2_CANCEL) {
		st = RMQ_GRPC_CANCELLED;
		snprintf(msg, sizeof(msg), "stream cancelled by the server");
	} else if (error_code != NGHTTP2_NO_ERROR) {
		st = RMQ_GRPC_INTERNAL;
		snprintf(msg, sizeof(msg), "stream reset by the server: %s",
			 nghttp2_http2_strerror(error_code));
	} else if (c->http_status == 200 && !c->ct_grpc) {
		st = RMQ_GRPC_UNKNOWN;
		snprintf(msg, sizeof(msg), "the response is not gRPC (content-type)");
	} else {
		st = RMQ_GRPC_INTERNAL;
		snprintf(msg, sizeof(msg), "the response ended without grpc-status");
	}
	call_close(c, st, msg);
}

/* ---- request data (NO_COPY) ------------------------------------------------- */

/* The next DATA frame's length, at most length: to the end of a
 * referenced piece (a frame of any size costs one header and one piece),
 * else at most 16 KiB of copied bytes, which the connection's output must
 * hold (as the server's frame_len, grpc.c). */
static size_t frame_len(const struct rmq_ccall *c, size_t length)
{
	const uint32_t qmax = c->cl->cfg.send_queue_max;
	size_t skip = c->reserved;
	for (uint32_t i = 0; i < c->qcount; i++) {
		const struct sendq_ent *e = &c->q[(c->qhead + i) % qmax];
		size_t pos = e->done, end = (size_t)e->pfx_len + e->len;
		if (skip >= end - pos) {
			skip -= end - pos;
			continue;
		}
		pos += skip;
		size_t cap = e->ref && pos >= e->pfx_len ? end - pos : 16384;
		return cap < length ? cap : length;
	}
	return length < 16384 ? length : 16384;
}

static ssize_t read_cb(nghttp2_session *s, int32_t stream_id, uint8_t *buf, size_t length,
		       uint32_t *data_flags, nghttp2_data_source *source, void *ud)
{
	struct rmq_client_conn *cc = ud;
	struct rmq_ccall *c = source->ptr;
	(void)s;
	(void)buf;

	if (!c || !call_live(c) || c->cc != cc || c->stream_id != stream_id)
		return NGHTTP2_ERR_TEMPORAL_CALLBACK_FAILURE;
	uint64_t avail = c->unsent - c->reserved;
	if (avail > 0) {
		size_t n = frame_len(c, avail < length ? (size_t)avail : length);
		c->reserved += n;
		*data_flags |= NGHTTP2_DATA_FLAG_NO_COPY;
		if (c->half_closed && n == avail)
			*data_flags |= NGHTTP2_DATA_FLAG_EOF;
		return (ssize_t)n;
	}
	if (c->half_closed) {
		*data_flags |= NGHTTP2_DATA_FLAG_EOF;
		return 0;
	}
	c->deferred = true;
	return NGHTTP2_ERR_DEFERRED;
}

/* How much of e the next frame takes from its piece's bytes (prefix
 * first), at most left. */
static size_t ent_take(const struct sendq_ent *e, size_t left)
{
	size_t have = e->done < e->pfx_len ? e->pfx_len - e->done : e->pfx_len + e->len - e->done;
	return have < left ? have : left;
}

/* Whether e's bytes from its current position go out by reference: a
 * referenced piece, past its prefix, not tiny (a tiny one is copied, as
 * the server does: a piece costs more than the bytes). */
static bool ent_by_ref(const struct sendq_ent *e, size_t take)
{
	return e->ref && e->done >= e->pfx_len && take >= RMQ_NET_REF_MIN;
}

static int send_data_cb(nghttp2_session *s, nghttp2_frame *frame, const uint8_t *framehd,
			size_t length, nghttp2_data_source *source, void *ud)
{
	struct rmq_client_conn *cc = ud;
	struct rmq_ccall *c = source->ptr;
	const uint32_t qmax = c ? c->cl->cfg.send_queue_max : 1;
	(void)s;

	if (!c || !call_live(c) || c->cc != cc || c->stream_id != frame->hd.stream_id)
		return NGHTTP2_ERR_TEMPORAL_CALLBACK_FAILURE;
	RMQ_ASSERT(frame->data.padlen == 0);
	RMQ_ASSERT(length <= c->reserved);
	/* What the frame needs of the connection's output: the header and
	 * the bytes copied, and a piece per run of them and per reference
	 * (as the server's, grpc.c net_call_send_data).  A frame that does
	 * not fit waits for the next flush. */
	size_t copy = 9, left = length;
	uint32_t pieces = 1;
	struct sendq_ent probe;
	for (uint32_t i = 0; left > 0; i++) {
		RMQ_ASSERT(i < c->qcount);
		probe = c->q[(c->qhead + i) % qmax];
		while (left > 0 && probe.done < probe.pfx_len + probe.len) {
			size_t take = ent_take(&probe, left);
			if (ent_by_ref(&probe, take))
				pieces++;
			else
				copy += take;
			pieces++;
			probe.done += (uint32_t)take;
			left -= take;
		}
	}
	struct net_conn *nc = &cc->nc;
	if (net_conn_out_room(nc) < copy + RMQ_NET_CTRL_RESERVE ||
	    net_conn_pieces_room(nc) < pieces + RMQ_NET_PIECES_RESERVE ||
	    nc->out_ref_bytes >= RMQ_NET_OUT_REF_MAX)
		return NGHTTP2_ERR_WOULDBLOCK;
	net_conn_out_append(nc, framehd, 9);
	left = length;
	while (left > 0) {
		RMQ_ASSERT(c->qcount > 0);
		struct sendq_ent *e = &c->q[c->qhead];
		size_t take = ent_take(e, left);
		if (e->done < e->pfx_len)
			net_conn_out_append(nc, e->pfx + e->done, take);
		else if (ent_by_ref(e, take))
			net_conn_out_append_ref(nc, e->p + (e->done - e->pfx_len), take, e->ref);
		else
			net_conn_out_append(nc, e->p + (e->done - e->pfx_len), take);
		e->done += (uint32_t)take;
		left -= take;
		if (e->done == e->pfx_len + e->len) {
			if (e->ref)
				rmq_send_ref_put(e->ref); /* its pieces hold their own */
			c->written += e->last;
			c->qhead = (c->qhead + 1) % qmax;
			c->qcount--;
		}
	}
	c->unsent -= length;
	c->reserved -= length;
	return 0;
}

/* ---- nghttp2 callbacks -------------------------------------------------------- */

static bool name_is(const uint8_t *name, size_t len, const char *lit)
{
	return strlen(lit) == len && memcmp(name, lit, len) == 0;
}

static int on_begin_headers(nghttp2_session *s, const nghttp2_frame *f, void *ud)
{
	struct rmq_client_conn *cc = ud;
	(void)s;
	(void)f;
	cc->hdr_bytes = 0;
	return 0;
}

static int on_header(nghttp2_session *s, const nghttp2_frame *f, const uint8_t *name,
		     size_t namelen, const uint8_t *value, size_t valuelen, uint8_t flags,
		     void *ud)
{
	struct rmq_client_conn *cc = ud;
	(void)s;
	(void)flags;

	cc->hdr_bytes += namelen + valuelen + 32;
	if (cc->hdr_bytes > RMQ_NET_HEADER_LIST_MAX)
		return NGHTTP2_ERR_TEMPORAL_CALLBACK_FAILURE; /* resets this stream */
	if (f->hd.type != NGHTTP2_HEADERS)
		return 0;
	struct rmq_ccall *c = stream_call(cc, f->hd.stream_id);
	if (!c)
		return 0;
	if (f->headers.cat == NGHTTP2_HCAT_RESPONSE && name_is(name, namelen, ":status")) {
		unsigned st = 0;
		for (size_t i = 0; i < valuelen && i < 3; i++)
			st = st * 10 + (unsigned)(value[i] - '0');
		c->http_status = st;
	} else if (f->headers.cat == NGHTTP2_HCAT_RESPONSE &&
		   name_is(name, namelen, "content-type")) {
		c->ct_grpc = valuelen >= 16 && memcmp(value, "application/grpc", 16) == 0 &&
			     (valuelen == 16 || value[16] == '+' || value[16] == ';');
	} else if (name_is(name, namelen, "grpc-status")) {
		c->status_seen = true;
		c->status = net_grpc_status_parse(value, valuelen);
	} else if (name_is(name, namelen, "grpc-message")) {
		net_pct_decode(value, valuelen, c->message, sizeof(c->message));
	}
	return 0;
}

static int on_frame_recv(nghttp2_session *s, const nghttp2_frame *f, void *ud)
{
	struct rmq_client_conn *cc = ud;
	(void)s;
	if (f->hd.type == NGHTTP2_GOAWAY) {
		/* Streams above last_stream_id are closed by nghttp2 with
		 * REFUSED_STREAM; the others finish.  No new calls here. */
		cc->goaway = true;
		mark_dirty(cc);
	}
	return 0;
}

static int on_data_chunk_recv(nghttp2_session *s, uint8_t flags, int32_t stream_id,
			      const uint8_t *data, size_t len, void *ud)
{
	struct rmq_client_conn *cc = ud;
	struct rmq_ccall *c = stream_call(cc, stream_id);
	(void)s;
	(void)flags;

	if (!c || (c->http_status != 200 && c->http_status != 0))
		return 0;
	while (len > 0) {
		const uint8_t *msg;
		size_t mlen;
		int rc = net_grpc_read(&c->rd, &data, &len, cc->cl->cfg.max_message_bytes,
				       c->unary ? 1 : 0, !c->unary, &msg, &mlen);
		if (rc == NET_RD_MORE)
			return 0;
		if (rc == NET_RD_MSG) {
			if (!c->unary && c->ops->on_message) {
				c->ops->on_message(c, c->arg, msg ? msg : (const uint8_t *)"", mlen);
				/* The app may have cancelled it (the slot stays
				 * ours until the flush hook closes it). */
				if (!call_live(c))
					return 0;
			}
			continue;
		}
		switch (rc) {
		case RMQ_ETOOBIG:
			call_end_local(c, RMQ_GRPC_RESOURCE_EXHAUSTED,
				       "response message of %u bytes exceeds the limit of %llu bytes",
				       c->rd.need, (unsigned long long)cc->cl->cfg.max_message_bytes);
			break;
		case RMQ_EUNSUPPORTED:
			call_end_local(c, RMQ_GRPC_INTERNAL,
				       "compressed response message, but no grpc-encoding was asked for");
			break;
		case RMQ_ESTATE:
			call_end_local(c, RMQ_GRPC_INTERNAL, "more than one response message for %s",
				       c->path);
			break;
		case RMQ_EPROTO:
			call_end_local(c, RMQ_GRPC_INTERNAL, "invalid message flags 0x%02x",
				       c->rd.pfx[0]);
			break;
		default:
			call_end_local(c, RMQ_GRPC_RESOURCE_EXHAUSTED,
				       "no memory for a %u-byte response message", c->rd.need);
			break;
		}
		return 0;
	}
	return 0;
}

static int on_stream_close(nghttp2_session *s, int32_t stream_id, uint32_t error_code, void *ud)
{
	struct rmq_client_conn *cc = ud;
	struct rmq_ccall *c = stream_call(cc, stream_id);
	(void)s;
	if (c)
		call_stream_closed(c, error_code);
	return 0;
}

static int on_frame_not_send(nghttp2_session *s, const nghttp2_frame *f, int lib_error, void *ud)
{
	struct rmq_client_conn *cc = ud;
	(void)s;
	if (f->hd.type != NGHTTP2_HEADERS)
		return 0;
	/* The request never left (GOAWAY received, stream ids used up, ...):
	 * nghttp2 may not report a close for a stream it never opened. */
	struct rmq_ccall *c = stream_call(cc, f->hd.stream_id);
	if (c)
		call_end_local(c, RMQ_GRPC_UNAVAILABLE, "request not sent: %s",
			       nghttp2_strerror(lib_error));
	return 0;
}

static int on_invalid_frame_recv(nghttp2_session *s, const nghttp2_frame *f, int lib_error,
				 void *ud)
{
	struct rmq_client_conn *cc = ud;
	(void)s;
	rmq_debug("client: fd %d: invalid frame type %u on stream %d: %s", cc->nc.fd,
		  (unsigned)f->hd.type, f->hd.stream_id, nghttp2_strerror(lib_error));
	return 0;
}

static int h2_init(struct rmq_client *cl)
{
	if (nghttp2_session_callbacks_new(&cl->cbs) != 0)
		return -ENOMEM;
	if (nghttp2_option_new(&cl->opt) != 0)
		return -ENOMEM;
	nghttp2_session_callbacks *cbs = cl->cbs;
	nghttp2_session_callbacks_set_on_begin_headers_callback(cbs, on_begin_headers);
	nghttp2_session_callbacks_set_on_header_callback(cbs, on_header);
	nghttp2_session_callbacks_set_on_frame_recv_callback(cbs, on_frame_recv);
	nghttp2_session_callbacks_set_on_data_chunk_recv_callback(cbs, on_data_chunk_recv);
	nghttp2_session_callbacks_set_on_stream_close_callback(cbs, on_stream_close);
	nghttp2_session_callbacks_set_on_frame_not_send_callback(cbs, on_frame_not_send);
	nghttp2_session_callbacks_set_send_data_callback(cbs, send_data_cb);
	nghttp2_session_callbacks_set_data_source_read_length_callback(cbs, net_h2_read_length);
	nghttp2_session_callbacks_set_on_invalid_frame_recv_callback(cbs, on_invalid_frame_recv);
	nghttp2_option_set_no_closed_streams(cl->opt, 1);
	return 0;
}

/* SETTINGS_MAX_FRAME_SIZE we announce (RFC 9113 allows up to 2^24 - 1). */
#define RMQ_CLIENT_MAX_FRAME_BYTES (1u << 20)

/* Creates the session and queues the preface: the client magic (sent by
 * nghttp2 itself), SETTINGS and the connection window. */
static int h2_session_new(struct rmq_client_conn *cc)
{
	const struct rmq_client_config *cfg = &cc->cl->cfg;
	nghttp2_settings_entry iv[] = {
		{NGHTTP2_SETTINGS_ENABLE_PUSH, 0},
		{NGHTTP2_SETTINGS_INITIAL_WINDOW_SIZE, cfg->stream_window},
		{NGHTTP2_SETTINGS_MAX_HEADER_LIST_SIZE, RMQ_NET_HEADER_LIST_MAX},
		{NGHTTP2_SETTINGS_NO_RFC7540_PRIORITIES, 1},
		/* Large DATA frames: an rmqd answers referenced batches in
		 * frames up to this (grpc.c, frame_len), so fewer frames to
		 * parse here and fewer to build there than 16 KiB ones. */
		{NGHTTP2_SETTINGS_MAX_FRAME_SIZE, RMQ_CLIENT_MAX_FRAME_BYTES},
	};
	int rv = nghttp2_session_client_new2(&cc->h2, cc->cl->cbs, cc, cc->cl->opt);
	if (rv != 0)
		return -ENOMEM;
	rv = nghttp2_submit_settings(cc->h2, NGHTTP2_FLAG_NONE, iv, RMQ_ARRAY_SIZE(iv));
	if (rv == 0)
		rv = nghttp2_session_set_local_window_size(cc->h2, NGHTTP2_FLAG_NONE, 0,
							   (int32_t)cfg->conn_window);
	if (rv != 0) {
		nghttp2_session_del(cc->h2);
		cc->h2 = NULL;
		return -ENOMEM;
	}
	return 0;
}

/* ---- connection I/O ------------------------------------------------------------ */

static void conn_free(struct rmq_client_conn *cc)
{
	struct rmq_client *cl = cc->cl;

	RMQ_ASSERT(!cc->connect_inflight);
	RMQ_ASSERT(rmq_list_empty(&cc->calls));
	rmq_timer_cancel(cl->shard, &cc->timer);
	net_conn_close(&cc->nc); /* closes the fd, bumps the slot's gen */
	if (cc->h2) {
		nghttp2_session_del(cc->h2);
		cc->h2 = NULL;
	}
	bool was_connected = cc->connected;
	if (was_connected)
		cl->stats.connections--;
	cc->state = CC_FREE;
	rmq_list_del(&cc->link);
	/* Back to the pool only after the callback: the handle is valid
	 * during it. */
	if (!was_connected)
		cc->ops->on_connect(cc, cc->arg, cc->why < 0 ? cc->why : -ECONNABORTED);
	else if (cc->ops->on_close)
		cc->ops->on_close(cc, cc->arg, cc->why == RMQ_ECLOSED ? 0 : cc->why);
	rmq_list_add_tail(&cl->conns_free, &cc->link);
}

/* Frees a closing connection once no operation is in flight. */
static void conn_try_free(struct rmq_client_conn *cc)
{
	if (cc->state == CC_CLOSING && !cc->connect_inflight && net_conn_idle(&cc->nc))
		conn_free(cc);
}

static void cancel_op(struct rmq_client *cl, struct rmq_io_op *op)
{
	struct io_uring_sqe *sqe = rmq_io_sqe(cl->io, NULL);
	if (sqe)
		io_uring_prep_cancel(sqe, op, 0);
}

/*
 * Cuts the connection: every call ends (CANCELLED when the application
 * closed it, else UNAVAILABLE), the socket is shut down, the ops are
 * cancelled, and the connection is freed once none is in flight (conn.c's
 * idle callback, or the connect completion).
 */
static void conn_abort(struct rmq_client_conn *cc, int why)
{
	struct rmq_client *cl = cc->cl;

	if (cc->state == CC_FREE || cc->state == CC_CLOSING)
		return;
	cc->state = CC_CLOSING;
	cc->why = why;
	if (why < 0 && why != RMQ_ECLOSED)
		rmq_debug("client: fd %d closed: %s", cc->nc.fd, rmq_strerror(why));
	rmq_timer_cancel(cl->shard, &cc->timer);
	while (!rmq_list_empty(&cc->calls)) {
		struct rmq_ccall *c = RMQ_CONTAINER_OF(cc->calls.next, struct rmq_ccall, link);
		if (c->local_end)
			call_close(c, c->local_status, c->message);
		else if (why == RMQ_ECLOSED)
			call_close(c, RMQ_GRPC_CANCELLED, "the connection was closed");
		else if (why == 0)
			call_close(c, RMQ_GRPC_UNAVAILABLE, "the server closed the connection");
		else
			call_close(c, RMQ_GRPC_UNAVAILABLE, rmq_strerror(why));
	}
	if (cc->connect_inflight)
		cancel_op(cl, &cc->connect_op);
	net_conn_cut(&cc->nc); /* conn_on_idle frees it once nothing is in flight */
}

static void conn_flush(struct rmq_client_conn *cc)
{
	if (cc->state != CC_OPEN)
		return;
	if (cc->close_asked) {
		conn_abort(cc, RMQ_ECLOSED);
		return;
	}
	int rc = net_conn_gather(&cc->nc, cc->h2);
	if (rc < 0) {
		rmq_warn("client: fd %d: HTTP/2 output failed: %s", cc->nc.fd,
			 rc == RMQ_ETOOBIG ? "a frame does not fit" : nghttp2_strerror(rc));
		conn_abort(cc, RMQ_EPROTO);
		return;
	}
	if (cc->state != CC_OPEN)
		return;
	rc = net_conn_send(&cc->nc);
	if (rc < 0) {
		conn_abort(cc, rc);
		return;
	}
	if (!cc->nc.send_inflight && !net_conn_out_pending(&cc->nc) &&
	    !nghttp2_session_want_read(cc->h2) && !nghttp2_session_want_write(cc->h2)) {
		/* GOAWAY exchanged and every stream done. */
		conn_abort(cc, 0);
	}
}

static void conn_input(struct rmq_client_conn *cc, const uint8_t *p, size_t n)
{
	ssize_t rv = nghttp2_session_mem_recv(cc->h2, p, n);
	if (rv < 0) {
		rmq_warn("client: fd %d: HTTP/2 input failed: %s", cc->nc.fd,
			 nghttp2_strerror((int)rv));
		/* Tell the server when nghttp2 still can; the connection goes
		 * either way. */
		nghttp2_session_terminate_session(cc->h2, NGHTTP2_PROTOCOL_ERROR);
		conn_abort(cc, RMQ_EPROTO);
		return;
	}
	mark_dirty(cc);
}

/* conn.c: bytes received (the input may free the connection). */
static void conn_on_input(struct net_conn *nc, const uint8_t *p, size_t n)
{
	struct rmq_client_conn *cc = RMQ_CONTAINER_OF(nc, struct rmq_client_conn, nc);
	if (cc->state == CC_OPEN)
		conn_input(cc, p, n);
}

/* conn.c: the server closed the connection (EOF), or an I/O error. */
static void conn_on_lost(struct net_conn *nc, int why)
{
	conn_abort(RMQ_CONTAINER_OF(nc, struct rmq_client_conn, nc), why == 0 ? -ECONNRESET : why);
}

/* conn.c: cut and neither recv nor send in flight. */
static void conn_on_idle(struct net_conn *nc)
{
	conn_try_free(RMQ_CONTAINER_OF(nc, struct rmq_client_conn, nc));
}

static const struct net_conn_ops conn_ops = {
	.input = conn_on_input,
	.lost = conn_on_lost,
	.idle = conn_on_idle,
};

static void connect_timer_fn(struct rmq_timer *t)
{
	struct rmq_client_conn *cc = RMQ_CONTAINER_OF(t, struct rmq_client_conn, timer);
	if (cc->state == CC_CONNECTING && cc->connect_inflight) {
		cc->timed_out = true;
		cancel_op(cc->cl, &cc->connect_op);
	}
}

static void connect_done(struct rmq_io_op *op, int res, unsigned flags)
{
	struct rmq_client_conn *cc = RMQ_CONTAINER_OF(op, struct rmq_client_conn, connect_op);
	struct rmq_client *cl = cc->cl;
	int one = 1;
	(void)flags;

	cc->connect_inflight = false;
	rmq_timer_cancel(cl->shard, &cc->timer);
	if (cc->state == CC_CLOSING) {
		conn_try_free(cc);
		return;
	}
	if (res == -ECANCELED && cc->timed_out)
		res = -ETIMEDOUT;
	if (res < 0) {
		conn_abort(cc, res);
		return;
	}
	setsockopt(cc->nc.fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
	int rc = h2_session_new(cc);
	if (rc == 0)
		rc = net_conn_arm_recv(&cc->nc);
	if (rc < 0) {
		conn_abort(cc, rc);
		return;
	}
	cc->state = CC_OPEN;
	cc->connected = true;
	cl->stats.connections++;
	net_conn_set_flushable(&cc->nc, true);
	mark_dirty(cc);
	cc->ops->on_connect(cc, cc->arg, 0);
}

/*
 * Binds fd to a source port p with (p / 2) % mod == rem (config: source
 * port steering; server.c, steer_by_source_port), from the ports below the
 * kernel's usual ephemeral range (a port an ordinary connect holds cannot
 * be bound), trying the next one of the same remainder while one is taken
 * (another connection, or TIME_WAIT).  Each client starts at its own
 * place, so that clients do not all try the same ports first.  Returns 0
 * or a negated errno.
 */
static int bind_steered(struct rmq_client *cl, int fd)
{
	const uint32_t mod = cl->cfg.source_port_mod;
	/* p = 2 * ((first + k) * mod + rem) */
	const uint32_t first = (STEER_PORT_LO / 2 + mod - 1) / mod;
	const uint32_t span = (STEER_PORT_HI / 2 - cl->cfg.source_port_rem) / mod - first;
	struct sockaddr_storage ss = {.ss_family = (sa_family_t)cl->family};
	socklen_t len = cl->family == AF_INET6 ? sizeof(struct sockaddr_in6)
					       : sizeof(struct sockaddr_in);
	for (uint32_t tries = 0; tries < STEER_TRIES && tries < span; tries++) {
		uint16_t p = (uint16_t)(2 * ((first + cl->steer_next++ % span) * mod +
					     cl->cfg.source_port_rem));
		if (cl->family == AF_INET6)
			((struct sockaddr_in6 *)&ss)->sin6_port = htons(p);
		else
			((struct sockaddr_in *)&ss)->sin_port = htons(p);
		if (bind(fd, (struct sockaddr *)&ss, len) == 0)
			return 0;
		if (errno != EADDRINUSE)
			return -errno;
	}
	return -EADDRINUSE;
}

int rmq_client_connect(struct rmq_client *cl, const struct rmq_client_conn_ops *ops, void *arg,
		       struct rmq_client_conn **out)
{
	if (rmq_list_empty(&cl->conns_free))
		return RMQ_EFULL;
	struct rmq_client_conn *cc = RMQ_CONTAINER_OF(cl->conns_free.next, struct rmq_client_conn, link);
	int fd = socket(cl->family, SOCK_STREAM | SOCK_CLOEXEC, 0);
	if (fd < 0)
		return -errno;
	if (cl->cfg.source_port_mod) {
		int rc = bind_steered(cl, fd);
		if (rc < 0) {
			close(fd);
			return rc;
		}
	}
	if (cl->cfg.tls && net_tls_start(&cc->nc, cl->cfg.tls, cl->cfg.host) < 0) {
		close(fd);
		return -ENOMEM;
	}
	struct io_uring_sqe *sqe = rmq_io_sqe(cl->io, &cc->connect_op);
	if (!sqe) {
		net_tls_end(&cc->nc);
		close(fd);
		return -EBUSY;
	}
	io_uring_prep_connect(sqe, fd, (struct sockaddr *)&cl->addr, cl->addrlen);
	rmq_list_del(&cc->link);
	rmq_list_add_tail(&cl->conns_live, &cc->link);
	net_conn_open(&cc->nc, fd); /* keeps the TLS started above */
	cc->state = CC_CONNECTING;
	cc->ops = ops;
	cc->arg = arg;
	cc->connected = cc->goaway = cc->close_asked = cc->timed_out = false;
	cc->why = 0;
	cc->connect_inflight = true;
	cc->hdr_bytes = 0;
	if (cl->cfg.connect_timeout_ns &&
	    rmq_timer_start(cl->shard, &cc->timer, rmq_now_ns() + cl->cfg.connect_timeout_ns,
			    connect_timer_fn) < 0)
		rmq_warn("client: no timer left for the connect timeout");
	*out = cc;
	return 0;
}

void rmq_client_conn_close(struct rmq_client_conn *cc)
{
	if (cc->state == CC_FREE || cc->state == CC_CLOSING || cc->close_asked)
		return;
	cc->close_asked = true;
	if (cc->state == CC_CONNECTING) {
		/* Cut now: the connect completion frees it (on_connect with
		 * -ECANCELED), never inside this call. */
		cc->state = CC_CLOSING;
		cc->why = -ECANCELED;
		rmq_timer_cancel(cc->cl->shard, &cc->timer);
		cancel_op(cc->cl, &cc->connect_op);
		net_conn_cut(&cc->nc); /* nothing armed: conn_try_free waits */
		return;
	}
	mark_dirty(cc);
}

bool rmq_client_conn_ok(const struct rmq_client_conn *cc)
{
	return cc->state == CC_OPEN && !cc->goaway && !cc->close_asked;
}

/* ---- the call API ------------------------------------------------------------- */

int rmq_ccall_start(struct rmq_client_conn *cc, const char *path, uint64_t timeout_ns,
		    const struct rmq_ccall_ops *ops, void *arg, struct rmq_ccall **out)
{
	struct rmq_client *cl = cc->cl;
	char tmo[16];
	size_t plen = strlen(path);

	if (!rmq_client_conn_ok(cc))
		return RMQ_ECLOSED;
	if (plen >= CALL_PATH_MAX)
		return RMQ_ETOOBIG;
	if (rmq_list_empty(&cl->calls_free))
		return RMQ_EFULL;
	struct rmq_ccall *c = RMQ_CONTAINER_OF(cl->calls_free.next, struct rmq_ccall, link);

	/* Reset everything but the buffers kept for reuse; the slot stays on
	 * the free list until nghttp2 took the request. */
	rmq_list_del(&c->link);
	struct net_grpc_reader rd = c->rd;
	struct sendq_ent *q = c->q;
	memset(c, 0, sizeof(*c));
	c->cl = cl;
	c->q = q;
	c->rd = rd;
	net_grpc_reader_reset(&c->rd);
	rmq_list_init(&c->end_link);
	rmq_list_add(&cl->calls_free, &c->link);
	memcpy(c->path, path, plen + 1);
	c->ops = ops;
	c->arg = arg;

	nghttp2_nv nv[8];
	size_t n = 0;
#define NVS(name, value, vlen)                                                               \
	nv[n++] = (nghttp2_nv){(uint8_t *)(name), (uint8_t *)(value), sizeof(name) - 1, (vlen), \
			       NGHTTP2_NV_FLAG_NO_COPY_NAME}
	NVS(":method", "POST", 4);
	if (cl->cfg.tls)
		NVS(":scheme", "https", 5);
	else
		NVS(":scheme", "http", 4);
	NVS(":path", c->path, plen);
	NVS(":authority", cl->authority, cl->authority_len);
	NVS("content-type", "application/grpc", 16);
	NVS("te", "trailers", 8);
	if (cl->authz[0])
		NVS("authorization", cl->authz, strlen(cl->authz));
	if (timeout_ns) {
		size_t tl = net_grpc_timeout_format(timeout_ns, tmo, sizeof(tmo));
		NVS("grpc-timeout", tmo, tl);
	}
#undef NVS
	nghttp2_data_provider prd = {.source.ptr = c, .read_callback = read_cb};
	int32_t id = nghttp2_submit_request(cc->h2, NULL, nv, n, &prd, c);
	if (id < 0)
		return id == NGHTTP2_ERR_NOMEM ? -ENOMEM : RMQ_ECLOSED;
	rmq_list_del(&c->link);
	rmq_list_add_tail(&cc->calls, &c->link);
	c->in_use = true;
	c->cc = cc;
	c->stream_id = id;
	if (timeout_ns &&
	    rmq_timer_start(cl->shard, &c->deadline, rmq_now_ns() + timeout_ns, deadline_fn) < 0) {
		/* Unbounded waiting is worse than a refused call. */
		call_end_local(c, RMQ_GRPC_RESOURCE_EXHAUSTED, "no timer left for the deadline");
	}
	cl->stats.calls++;
	cl->stats.calls_total++;
	mark_dirty(cc);
	*out = c;
	return 0;
}

static void resume(struct rmq_ccall *c)
{
	if (c->deferred) {
		c->deferred = false;
		nghttp2_session_resume_data(c->cc->h2, c->stream_id);
	}
	mark_dirty(c->cc);
}

int rmq_ccall_sendv_ref(struct rmq_ccall *c, const struct iovec *iov,
			struct rmq_send_ref *const *refs, int iovcnt)
{
	const uint32_t qmax = c->cl->cfg.send_queue_max;
	if (!call_live(c) || c->half_closed || !c->cc || c->cc->state != CC_OPEN)
		return RMQ_ECLOSED;
	size_t total = 0;
	uint32_t pieces = 0;
	for (int i = 0; i < iovcnt; i++) {
		total += iov[i].iov_len;
		pieces += iov[i].iov_len > 0;
	}
	if (total >= (1ULL << 32) - RMQ_GRPC_PREFIX || pieces > qmax)
		return RMQ_ETOOBIG;
	if (c->qcount + (pieces ? pieces : 1) > qmax)
		return RMQ_EFULL;
	struct sendq_ent *e = NULL;
	for (int i = 0; i < iovcnt || !e; i++) {
		if (i < iovcnt && iov[i].iov_len == 0)
			continue;
		const bool first = !e;
		e = &c->q[(c->qhead + c->qcount++) % qmax];
		*e = (struct sendq_ent){.pfx_len = first ? RMQ_GRPC_PREFIX : 0};
		if (first)
			net_grpc_prefix(e->pfx, (uint32_t)total);
		if (i < iovcnt) {
			e->p = iov[i].iov_base;
			e->len = (uint32_t)iov[i].iov_len;
			if (refs && refs[i]) {
				e->ref = refs[i];
				rmq_send_ref_get(e->ref);
			}
		}
	}
	e->last = true;
	c->unsent += RMQ_GRPC_PREFIX + total;
	resume(c);
	return 0;
}

int rmq_ccall_send(struct rmq_ccall *c, const void *msg, size_t len)
{
	struct iovec iov = {.iov_base = (void *)msg, .iov_len = len};
	return rmq_ccall_sendv_ref(c, &iov, NULL, 1);
}

int rmq_ccall_half_close(struct rmq_ccall *c)
{
	if (!call_live(c) || c->half_closed || !c->cc || c->cc->state != CC_OPEN)
		return RMQ_ECLOSED;
	c->half_closed = true;
	resume(c);
	return 0;
}

int rmq_client_set_authorization(struct rmq_client *cl, const char *value)
{
	size_t len = value ? strlen(value) : 0;
	if (len > NET_AUTHZ_MAX)
		return RMQ_ETOOBIG;
	memcpy(cl->authz, value ? value : "", len);
	cl->authz[len] = '\0';
	return 0;
}

uint32_t rmq_ccall_send_room(const struct rmq_ccall *c)
{
	return c->cl->cfg.send_queue_max - c->qcount;
}

uint64_t rmq_ccall_written(const struct rmq_ccall *c)
{
	return c->written;
}

void rmq_ccall_cancel(struct rmq_ccall *c)
{
	call_end_local(c, RMQ_GRPC_CANCELLED, "cancelled by the client");
}

static const struct rmq_ccall_ops unary_ops = {NULL, NULL};

int rmq_client_unary(struct rmq_client_conn *cc, const char *path, const void *req, size_t len,
		     uint64_t timeout_ns, rmq_client_unary_cb done, void *arg,
		     struct rmq_ccall **out)
{
	struct rmq_ccall *c;
	int rc = rmq_ccall_start(cc, path, timeout_ns, &unary_ops, NULL, &c);
	if (rc < 0)
		return rc;
	c->unary = true;
	c->unary_done = done;
	c->unary_arg = arg;
	/* Cannot fail: the queue is empty and the call just started. */
	rc = rmq_ccall_send(c, req, len);
	if (rc == 0)
		rc = rmq_ccall_half_close(c);
	if (rc < 0)
		call_end_local(c, RMQ_GRPC_INTERNAL, "request not queued: %s", rmq_strerror(rc));
	if (out)
		*out = c;
	return 0;
}

int rmq_client_server_stream(struct rmq_client_conn *cc, const char *path, const void *req,
			     size_t len, uint64_t timeout_ns, const struct rmq_ccall_ops *ops,
			     void *arg, struct rmq_ccall **out)
{
	int rc = rmq_ccall_start(cc, path, timeout_ns, ops, arg, out);
	if (rc < 0)
		return rc;
	rc = rmq_ccall_send(*out, req, len);
	if (rc == 0)
		rc = rmq_ccall_half_close(*out);
	if (rc < 0)
		call_end_local(*out, RMQ_GRPC_INTERNAL, "request not queued: %s", rmq_strerror(rc));
	return 0;
}

/* ---- create / destroy ------------------------------------------------------------ */

static int config_check(const struct rmq_client_config *cfg)
{
	if (!cfg->host || strlen(cfg->host) >= sizeof(((struct rmq_client *)0)->host) ||
	    cfg->connections_max == 0 || cfg->calls_max == 0 ||
	    cfg->send_queue_max == 0)
		return -EINVAL;
	if (cfg->max_message_bytes == 0 || cfg->max_message_bytes > UINT32_MAX)
		return -EINVAL;
	if (cfg->stream_window == 0 || cfg->stream_window > NGHTTP2_MAX_WINDOW_SIZE)
		return -EINVAL;
	if (cfg->conn_window < NGHTTP2_INITIAL_CONNECTION_WINDOW_SIZE ||
	    cfg->conn_window > NGHTTP2_MAX_WINDOW_SIZE)
		return -EINVAL;
	if (cfg->recv_buffers == 0 || cfg->recv_buffers > 32768 ||
	    (cfg->recv_buffers & (cfg->recv_buffers - 1)) != 0)
		return -EINVAL;
	if (cfg->recv_buffer_bytes < 1024 || cfg->recv_buffer_bytes > (1u << 24))
		return -EINVAL;
	if (cfg->source_port_mod > STEER_MOD_MAX || cfg->source_port_rem >= (cfg->source_port_mod ? cfg->source_port_mod : 1))
		return -EINVAL;
	return 0;
}

static int resolve(struct rmq_client *cl)
{
	struct addrinfo hints = {
		.ai_family = AF_UNSPEC,
		.ai_socktype = SOCK_STREAM,
		.ai_flags = AI_NUMERICSERV,
	};
	struct addrinfo *ai = NULL;
	char service[8];

	snprintf(service, sizeof(service), "%u", (unsigned)cl->cfg.port);
	int rc = getaddrinfo(cl->cfg.host, service, &hints, &ai);
	if (rc != 0 || !ai) {
		rmq_debug("client: cannot resolve %s: %s", cl->cfg.host, gai_strerror(rc));
		return -EADDRNOTAVAIL;
	}
	/* HTTP/2 servers (nghttp2 among them) want :authority or host. */
	int w = snprintf(cl->authority, sizeof(cl->authority),
			 strchr(cl->cfg.host, ':') ? "[%s]:%u" : "%s:%u", cl->cfg.host,
			 (unsigned)cl->cfg.port);
	cl->authority_len = w > 0 && (size_t)w < sizeof(cl->authority) ? (size_t)w : 0;
	memcpy(&cl->addr, ai->ai_addr, ai->ai_addrlen);
	cl->addrlen = ai->ai_addrlen;
	cl->family = ai->ai_family;
	freeaddrinfo(ai);
	return 0;
}

static void client_free(struct rmq_client *cl)
{
	hook_detach(cl);
	net_bufring_teardown(&cl->rx, cl->io);
	if (cl->calls) {
		for (uint32_t i = 0; i < cl->cfg.calls_max; i++)
			net_grpc_reader_free(&cl->calls[i].rd);
	}
	free(cl->calls);
	free(cl->qents);
	if (cl->sendbufs)
		munmap(cl->sendbufs, cl->sendbufs_bytes);
	if (cl->pieces)
		munmap(cl->pieces, cl->pieces_bytes);
	if (cl->iovs)
		munmap(cl->iovs, cl->iovs_bytes);
	free(cl->conns);
	if (cl->cbs)
		nghttp2_session_callbacks_del(cl->cbs);
	if (cl->opt)
		nghttp2_option_del(cl->opt);
	free(cl);
}

int rmq_client_create(struct rmq_shard *s, const struct rmq_client_config *cfg,
		      struct rmq_client **out)
{
	int rc = config_check(cfg);
	if (rc < 0)
		return rc;
	struct rmq_client *cl = calloc(1, sizeof(*cl));
	if (!cl)
		return -ENOMEM;
	cl->shard = s;
	cl->io = rmq_shard_io(s);
	cl->cfg = *cfg;
	snprintf(cl->host, sizeof(cl->host), "%s", cfg->host);
	cl->cfg.host = cl->host; /* the caller's string may not outlive the call */
	cl->rx.bgid = -1;
	/* Where bind_steered starts: apart for each client. */
	if (getrandom(&cl->steer_next, sizeof(cl->steer_next), GRND_NONBLOCK) < 0)
		cl->steer_next = (uint32_t)rmq_now_ns();
	rmq_list_init(&cl->conns_free);
	rmq_list_init(&cl->conns_live);
	rmq_list_init(&cl->conns_dirty);
	rmq_list_init(&cl->calls_free);
	rmq_list_init(&cl->calls_ending);

	rc = resolve(cl);
	if (rc < 0)
		goto err;
	rc = -ENOMEM;
	cl->conns = calloc(cfg->connections_max, sizeof(*cl->conns));
	cl->calls = calloc(cfg->calls_max, sizeof(*cl->calls));
	cl->qents = calloc((size_t)cfg->calls_max * cfg->send_queue_max, sizeof(*cl->qents));
	if (!cl->conns || !cl->calls || !cl->qents)
		goto err;
	/* Pages of an output buffer are committed only once used. */
	cl->sendbufs_bytes = (size_t)cfg->connections_max * RMQ_NET_SENDBUF_BYTES;
	cl->sendbufs = mmap(NULL, cl->sendbufs_bytes, PROT_READ | PROT_WRITE,
			    MAP_PRIVATE | MAP_ANONYMOUS | MAP_NORESERVE, -1, 0);
	if (cl->sendbufs == MAP_FAILED) {
		cl->sendbufs = NULL;
		goto err;
	}
	cl->pieces_bytes = (size_t)cfg->connections_max * RMQ_NET_OUT_PIECES * sizeof(*cl->pieces);
	cl->pieces = mmap(NULL, cl->pieces_bytes, PROT_READ | PROT_WRITE,
			  MAP_PRIVATE | MAP_ANONYMOUS | MAP_NORESERVE, -1, 0);
	if (cl->pieces == MAP_FAILED) {
		cl->pieces = NULL;
		goto err;
	}
	cl->iovs_bytes = (size_t)cfg->connections_max * RMQ_NET_OUT_PIECES * sizeof(*cl->iovs);
	cl->iovs = mmap(NULL, cl->iovs_bytes, PROT_READ | PROT_WRITE,
			MAP_PRIVATE | MAP_ANONYMOUS | MAP_NORESERVE, -1, 0);
	if (cl->iovs == MAP_FAILED) {
		cl->iovs = NULL;
		goto err;
	}
	for (uint32_t i = 0; i < cfg->connections_max; i++) {
		struct rmq_client_conn *cc = &cl->conns[i];
		net_conn_init(&cc->nc, &(struct net_conn_init_args){
			.ops = &conn_ops,
			.io = cl->io,
			.rx = &cl->rx,
			.dirty_list = &cl->conns_dirty,
			.rx_bytes = &cl->stats.bytes_received,
			.tx_bytes = &cl->stats.bytes_sent,
			.out = cl->sendbufs + (size_t)i * RMQ_NET_SENDBUF_BYTES,
			.pieces = cl->pieces + (size_t)i * RMQ_NET_OUT_PIECES,
			.iov = cl->iovs + (size_t)i * RMQ_NET_OUT_PIECES,
		});
		cc->cl = cl;
		cc->connect_op.cb = connect_done;
		rmq_list_init(&cc->calls);
		rmq_list_add_tail(&cl->conns_free, &cc->link);
	}
	for (uint32_t i = 0; i < cfg->calls_max; i++) {
		struct rmq_ccall *c = &cl->calls[i];
		c->cl = cl;
		c->q = cl->qents + (size_t)i * cfg->send_queue_max;
		rmq_list_add_tail(&cl->calls_free, &c->link);
	}
	rc = h2_init(cl);
	if (rc < 0)
		goto err;
	rc = net_bufring_setup(&cl->rx, cl->io, cfg->recv_buffers, cfg->recv_buffer_bytes);
	if (rc < 0)
		goto err;
	rc = hook_attach(cl);
	if (rc < 0)
		goto err;
	*out = cl;
	return 0;

err:
	client_free(cl);
	return rc;
}

void rmq_client_destroy(struct rmq_client *cl)
{
	if (!cl)
		return;
	uint64_t until = rmq_now_ns() + DESTROY_WAIT_NS;
	for (;;) {
		flush_client(cl);
		struct rmq_list *l, *next;
		for (l = cl->conns_live.next; l != &cl->conns_live; l = next) {
			next = l->next;
			struct rmq_client_conn *cc = RMQ_CONTAINER_OF(l, struct rmq_client_conn, link);
			if (cc->state == CC_CONNECTING) {
				rmq_client_conn_close(cc);
			} else if (cc->state == CC_OPEN) {
				cc->close_asked = true;
				conn_abort(cc, RMQ_ECLOSED);
			}
		}
		if (rmq_list_empty(&cl->conns_live) && rmq_list_empty(&cl->calls_ending))
			break;
		if (rmq_now_ns() >= until) {
			/* The kernel may still write into our buffers: leak
			 * rather than corrupt. */
			rmq_error("client: connections not drained after 5 s; leaking the client");
			hook_detach(cl);
			return;
		}
		rmq_io_wait(cl->io, 10 * 1000 * 1000);
	}
	client_free(cl);
}
