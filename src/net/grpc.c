/* SPDX-License-Identifier: Apache-2.0 */
/*
 * grpc.c - gRPC calls on HTTP/2 streams: framing, status, deadlines (see
 * grpc.h for the wire format and the call's life as the app sees it).
 *
 * A call's life inside the layer:
 *
 *   on_begin_headers ─► open (pool; the connection holds 1 ref)
 *   headers done ─► checks, in order: :method POST (else HTTP 405),
 *       content-type application/grpc[+x|;x] (else HTTP 415), known
 *       :path (else UNIMPLEMENTED naming it), grpc-timeout well formed
 *       (else INTERNAL); then the deadline timer is armed
 *   DATA ─► 5-byte prefixes and messages, split or packed in any way:
 *       flag 1 (no encoding is ever negotiated) UNIMPLEMENTED; a length
 *       over max_message_bytes RESOURCE_EXHAUSTED at once, before any
 *       byte of it is buffered; a streaming request's message goes to
 *       on_message as soon as it is complete (straight from nghttp2's
 *       input when it lies in one chunk), a unary request's is kept
 *   END_STREAM ─► unary/server-stream: on_message once (none or two
 *       messages: INVALID_ARGUMENT); streaming: on_half_close
 *   rmq_call_send ─► send queue ─► response HEADERS + data provider
 *       (DEFERRED while empty, resumed by the next send or the finish)
 *   rmq_call_finish ─► trailers after the queue, or trailers-only
 *   stream closed / connection lost ─► detach (on_cancel unless finished),
 *       the connection's ref dropped; back to the pool at the last unref
 *
 * An error the layer answers ("layer end") discards what is queued but not
 * yet promised to nghttp2, sends the status (trailers-only when nothing was
 * sent), stops reading the request, and gives the app on_cancel when it had
 * already seen the call.  The send queue and the request buffer grow on
 * demand, up to send_queue_bytes (plus one message) and max_message_bytes,
 * and are kept across calls up to RMQ_CALL_KEEP_BYTES.
 *
 * Layering: grpc.c is called by h2.c (stream events, NO_COPY DATA), by
 * server.c (the pool, detaching calls of a lost connection, on_drain) and
 * by the application (grpc.h).  It calls conn.c (the connection's output
 * chain) and wire.c, never server.c or h2.c.
 */
#include "net/net_int.h"

#include "core/assert.h"
#include "core/error.h"
#include "core/log.h"
#include "core/util.h"

#include <arpa/inet.h>
#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>

/* The framing, the status and timeout headers and the percent-encoding
 * live in wire.c, shared with the client. */
#define STATUS_MSG_MAX NET_STATUS_MSG_MAX

#define NV(n, v)                                                                          \
	{(uint8_t *)(n), (uint8_t *)(v), sizeof(n) - 1, sizeof(v) - 1,                    \
	 NGHTTP2_NV_FLAG_NO_COPY_NAME | NGHTTP2_NV_FLAG_NO_COPY_VALUE}

static void call_end_by_layer(struct rmq_call *c, enum rmq_grpc_status status, const char *msg);
static void call_account(struct rmq_call *c);

/* ---- pool and references -------------------------------------------------- */

int net_calls_init(struct rmq_server *srv)
{
	srv->calls = calloc(srv->cfg.max_calls, sizeof(*srv->calls));
	if (!srv->calls)
		return -ENOMEM;
	for (uint32_t i = 0; i < srv->cfg.max_calls; i++) {
		struct rmq_call *c = &srv->calls[i];
		c->srv = srv;
		rmq_list_add_tail(&srv->calls_free, &c->link);
	}
	return 0;
}

void net_calls_fini(struct rmq_server *srv)
{
	if (!srv->calls)
		return;
	for (uint32_t i = 0; i < srv->cfg.max_calls; i++) {
		net_grpc_reader_free(&srv->calls[i].rd);
		free(srv->calls[i].sbuf);
		free(srv->calls[i].sq);
		free(srv->calls[i].status_msg);
	}
	free(srv->calls);
	srv->calls = NULL;
}

struct rmq_call *net_call_open(struct conn *conn, int32_t stream_id)
{
	struct rmq_server *srv = conn->srv;

	if (rmq_list_empty(&srv->calls_free))
		return NULL;
	struct rmq_call *c = RMQ_CONTAINER_OF(srv->calls_free.next, struct rmq_call, link);
	rmq_list_del(&c->link);
	/* Reset everything but the buffers kept for reuse. */
	struct net_grpc_reader rd = c->rd;
	uint8_t *sbuf = c->sbuf;
	size_t scap = c->scap;
	struct net_sq_ent *sq = c->sq;
	uint32_t sq_cap = c->sq_cap;
	memset(c, 0, sizeof(*c));
	c->srv = srv;
	c->rd = rd;
	net_grpc_reader_reset(&c->rd);
	c->sbuf = sbuf;
	c->scap = scap;
	c->sq = sq;
	c->sq_cap = sq_cap;
	c->in_use = true;
	c->conn = conn;
	c->stream_id = stream_id;
	c->refs = 1;
	rmq_list_add_tail(&conn->calls, &c->link);
	srv->stats.calls++;
	srv->stats.calls_total++;
	call_account(c); /* the buffer kept from an earlier call */
	return c;
}

static void sq_discard(struct rmq_call *c, size_t keep);

static void call_release(struct rmq_call *c)
{
	struct rmq_server *srv = c->srv;

	RMQ_ASSERT(c->conn == NULL);
	RMQ_ASSERT(!c->drain_queued);
	sq_discard(c, 0); /* detach emptied it; kept for clarity */
	if (c->sq_cap > RMQ_CALL_KEEP_BYTES / sizeof(*c->sq)) {
		free(c->sq);
		c->sq = NULL;
		c->sq_cap = 0;
	}
	rmq_timer_cancel(srv->shard, &c->deadline);
	free(c->status_msg);
	c->status_msg = NULL;
	net_grpc_reader_trim(&c->rd, RMQ_CALL_KEEP_BYTES);
	/* Its request memory goes back (a kept buffer is a free call's). */
	srv->stats.request_bytes -= c->rd_counted + c->charged;
	srv->req_input_bytes -= c->rd_input;
	c->rd_counted = c->rd_input = 0;
	c->charged = 0;
	if (c->scap > RMQ_CALL_KEEP_BYTES) {
		free(c->sbuf);
		c->sbuf = NULL;
		c->scap = 0;
	}
	c->in_use = false;
	rmq_list_add_tail(&srv->calls_free, &c->link);
	srv->stats.calls--;
}

void rmq_call_ref(struct rmq_call *c)
{
	RMQ_ASSERT(c->in_use);
	c->refs++;
}

void rmq_call_unref(struct rmq_call *c)
{
	RMQ_ASSERT(c->in_use);
	RMQ_ASSERT(c->refs > 0);
	if (--c->refs == 0)
		call_release(c);
}

void rmq_call_charge(struct rmq_call *c, size_t bytes)
{
	RMQ_ASSERT(c->in_use);
	c->charged += bytes;
	c->srv->stats.request_bytes += bytes;
}

void rmq_call_uncharge(struct rmq_call *c, size_t bytes)
{
	RMQ_ASSERT(c->in_use);
	if (bytes > c->charged)
		bytes = c->charged;
	c->charged -= bytes;
	c->srv->stats.request_bytes -= bytes;
}

/* Runs an app callback with a reference held, so the call outlives it. */
#define APP_CALLBACK(c, fn, ...)                                                          \
	do {                                                                              \
		rmq_call_ref(c);                                                          \
		(c)->app_seen = true;                                                     \
		(c)->method->fn((c), ##__VA_ARGS__);                                      \
		rmq_call_unref(c);                                                        \
	} while (0)

/* ---- accessors ------------------------------------------------------------ */

bool rmq_call_done(const struct rmq_call *c)
{
	return c->finished || c->cancelled;
}

uint64_t rmq_call_deadline_ns(const struct rmq_call *c)
{
	return c->deadline_ns;
}

const struct rmq_grpc_method *rmq_call_method(const struct rmq_call *c)
{
	return c->method;
}

void *rmq_call_app(const struct rmq_call *c)
{
	return c->srv->app;
}

void *rmq_call_get_ctx(const struct rmq_call *c)
{
	return c->ctx;
}

void rmq_call_set_ctx(struct rmq_call *c, void *ctx)
{
	c->ctx = ctx;
}

/* ---- status ------------------------------------------------------------- */

static size_t status_nv(struct rmq_call *c, nghttp2_nv *nv)
{
	size_t n = 0;
	nv[n++] = (nghttp2_nv){(uint8_t *)"grpc-status", (uint8_t *)c->status_str, 11,
			       strlen(c->status_str), NGHTTP2_NV_FLAG_NO_COPY_NAME};
	if (c->status_msg)
		nv[n++] = (nghttp2_nv){(uint8_t *)"grpc-message", (uint8_t *)c->status_msg, 12,
				       strlen(c->status_msg), NGHTTP2_NV_FLAG_NO_COPY_NAME};
	return n;
}

static void submit_trailers_only(struct rmq_call *c)
{
	nghttp2_nv nv[4] = {NV(":status", "200"), NV("content-type", "application/grpc")};
	size_t n = 2 + status_nv(c, nv + 2);
	int rv = nghttp2_submit_response(c->conn->h2, c->stream_id, nv, n, NULL);
	if (rv != 0)
		rmq_debug("net: stream %d: trailers-only answer not queued: %s", c->stream_id,
			  nghttp2_strerror(rv));
	c->resp_headers = true;
	c->trailers_sent = true;
}

static void submit_trailers(struct rmq_call *c)
{
	nghttp2_nv nv[2];
	size_t n = status_nv(c, nv);
	int rv = nghttp2_submit_trailer(c->conn->h2, c->stream_id, nv, n);
	if (rv != 0)
		rmq_debug("net: stream %d: trailers not queued: %s", c->stream_id,
			  nghttp2_strerror(rv));
	c->trailers_sent = true;
}

static void finish_common(struct rmq_call *c, enum rmq_grpc_status status, const char *msg,
			  bool discard)
{
	c->finished = true;
	c->req_done = c->req_done || discard;
	c->status = status;
	snprintf(c->status_str, sizeof(c->status_str), "%d", (int)status);
	free(c->status_msg);
	c->status_msg = msg ? net_pct_encode(msg) : NULL;
	rmq_timer_cancel(c->srv->shard, &c->deadline);
	call_account(c);
	if (!c->conn)
		return;
	if (discard)
		sq_discard(c, c->sreserved); /* keep what nghttp2 was promised */
	if (!c->resp_headers) {
		submit_trailers_only(c);
	} else if (c->deferred) {
		c->deferred = false;
		nghttp2_session_resume_data(c->conn->h2, c->stream_id);
	}
	net_conn_mark_dirty(&c->conn->nc);
}

/* The layer ends the call with status: see the top of the file. */
static void call_end_by_layer(struct rmq_call *c, enum rmq_grpc_status status, const char *msg)
{
	if (c->finished)
		return;
	bool notify = c->app_seen && !c->cancelled;
	if (c->app_seen)
		c->cancelled = true;
	finish_common(c, status, msg, true);
	if (notify && c->method->on_cancel)
		APP_CALLBACK(c, on_cancel);
}

static void layer_fail(struct rmq_call *c, enum rmq_grpc_status status, const char *fmt, ...)
	__attribute__((format(printf, 3, 4)));

static void layer_fail(struct rmq_call *c, enum rmq_grpc_status status, const char *fmt, ...)
{
	char msg[STATUS_MSG_MAX + 1];
	va_list ap;

	va_start(ap, fmt);
	vsnprintf(msg, sizeof(msg), fmt, ap);
	va_end(ap);
	rmq_debug("net: stream %d: %s", c->stream_id, msg);
	call_end_by_layer(c, status, msg);
}

/* A plain HTTP answer for requests that are not gRPC at all. */
static void http_error(struct rmq_call *c, const char *status)
{
	nghttp2_nv nv[] = {{(uint8_t *)":status", (uint8_t *)status, 7, 3,
			    NGHTTP2_NV_FLAG_NO_COPY_NAME | NGHTTP2_NV_FLAG_NO_COPY_VALUE}};
	nghttp2_submit_response(c->conn->h2, c->stream_id, nv, 1, NULL);
	c->finished = true;
	c->req_done = true;
	c->resp_headers = true;
	c->trailers_sent = true;
	call_account(c);
	net_conn_mark_dirty(&c->conn->nc);
}

void net_refuse_stream(struct conn *conn, int32_t stream_id)
{
	nghttp2_nv nv[] = {
		NV(":status", "200"),
		NV("content-type", "application/grpc"),
		NV("grpc-status", "8"),
		NV("grpc-message", "too many calls in flight on this server shard"),
	};
	_Static_assert(RMQ_GRPC_RESOURCE_EXHAUSTED == 8, "grpc-status literal");
	nghttp2_submit_response(conn->h2, stream_id, nv, RMQ_ARRAY_SIZE(nv), NULL);
	net_conn_mark_dirty(&conn->nc);
}

/* ---- request headers ------------------------------------------------------- */

static bool name_is(const uint8_t *name, size_t len, const char *lit)
{
	return strlen(lit) == len && memcmp(name, lit, len) == 0;
}

static const struct rmq_grpc_method *method_find(const struct rmq_server *srv, const char *path)
{
	size_t lo = 0, hi = srv->nmethods;
	while (lo < hi) {
		size_t mid = lo + (hi - lo) / 2;
		int cmp = strcmp(path, srv->methods[mid]->path);
		if (cmp == 0)
			return srv->methods[mid];
		if (cmp < 0)
			hi = mid;
		else
			lo = mid + 1;
	}
	return NULL;
}

void net_call_header(struct rmq_call *c, const uint8_t *name, size_t namelen,
		     const uint8_t *value, size_t valuelen)
{
	if (name_is(name, namelen, ":method")) {
		c->hdr_post = valuelen == 4 && memcmp(value, "POST", 4) == 0;
	} else if (name_is(name, namelen, ":path")) {
		size_t n = valuelen < sizeof(c->path) - 1 ? valuelen : sizeof(c->path) - 1;
		memcpy(c->path, value, n);
		c->path[n] = '\0';
		/* nghttp2 NUL-terminates header values. */
		c->method = method_find(c->srv, (const char *)value);
	} else if (name_is(name, namelen, "content-type")) {
		c->hdr_ct_seen = true;
		c->hdr_ct_grpc = valuelen >= 16 && memcmp(value, "application/grpc", 16) == 0 &&
				 (valuelen == 16 || value[16] == '+' || value[16] == ';');
	} else if (name_is(name, namelen, "grpc-timeout")) {
		c->timeout_ns = net_grpc_timeout_parse(value, valuelen);
		c->hdr_timeout_bad = c->timeout_ns == 0;
	} else if (name_is(name, namelen, "authorization")) {
		c->hdr_authz_long = valuelen > NET_AUTHZ_MAX;
		c->authz_len = c->hdr_authz_long ? 0 : (uint16_t)valuelen;
		memcpy(c->authz, value, c->authz_len);
		c->authz[c->authz_len] = '\0';
	}
}

static void deadline_fn(struct rmq_timer *t)
{
	struct rmq_call *c = RMQ_CONTAINER_OF(t, struct rmq_call, deadline);
	if (!c->conn || c->finished)
		return;
	call_end_by_layer(c, RMQ_GRPC_DEADLINE_EXCEEDED, "deadline exceeded");
}

void net_call_headers_done(struct rmq_call *c, bool end_stream)
{
	if (!c->hdr_post) {
		http_error(c, "405");
		return;
	}
	if (!c->hdr_ct_grpc) {
		http_error(c, "415");
		return;
	}
	if (!c->method) {
		layer_fail(c, RMQ_GRPC_UNIMPLEMENTED, "unknown method %s", c->path);
		return;
	}
	if (c->hdr_timeout_bad) {
		layer_fail(c, RMQ_GRPC_INTERNAL, "malformed grpc-timeout");
		return;
	}
	if (c->srv->cfg.authorize) {
		char why[256] = "";
		enum rmq_grpc_status st = c->srv->cfg.authorize(c, why, sizeof(why));
		if (st != RMQ_GRPC_OK) {
			layer_fail(c, st, "%s", why);
			return;
		}
	}
	c->headers_ok = true;
	if (c->timeout_ns) {
		uint64_t now = rmq_now_ns();
		c->deadline_ns = now + c->timeout_ns;
		if (rmq_timer_start(c->srv->shard, &c->deadline, c->deadline_ns, deadline_fn) < 0) {
			layer_fail(c, RMQ_GRPC_RESOURCE_EXHAUSTED, "no timer left for the deadline");
			return;
		}
	}
	if (end_stream)
		net_call_end_stream(c);
}

/* ---- request messages ----------------------------------------------------- */

static bool streaming_request(const struct rmq_call *c)
{
	return c->method->kind == RMQ_GRPC_CLIENT_STREAM || c->method->kind == RMQ_GRPC_BIDI;
}

/* False once the call no longer wants request messages. */
static bool reading(const struct rmq_call *c)
{
	return c->conn && !c->req_done && !c->finished && !c->cancelled;
}

/*
 * Brings the server's request-memory sums up to date for c: its reader's
 * buffer counts in stats.request_bytes, and in req_input_bytes too while
 * the request is still being read (only reading can finish it, so it must
 * never keep reading stopped; server.h, "Read backpressure").  Called
 * wherever the buffer or reading(c) may change.
 */
static void call_account(struct rmq_call *c)
{
	struct rmq_server *srv = c->srv;
	size_t cap = c->rd.cap;
	size_t input = reading(c) ? cap : 0;

	srv->stats.request_bytes += cap;
	srv->stats.request_bytes -= c->rd_counted;
	srv->req_input_bytes += input;
	srv->req_input_bytes -= c->rd_input;
	c->rd_counted = cap;
	c->rd_input = input;
}

static void deliver(struct rmq_call *c, const uint8_t *msg, size_t len)
{
	static const uint8_t empty[1];
	APP_CALLBACK(c, on_message, msg && len ? msg : empty, len);
}

static void data_in(struct rmq_call *c, const uint8_t *data, size_t len)
{
	const uint64_t limit = c->srv->cfg.max_message_bytes;

	if (!c->headers_ok || !reading(c))
		return;
	/* A unary request's single message is kept until END_STREAM; a
	 * streaming request's go to on_message as soon as they are complete,
	 * straight from nghttp2's input when they lie in one chunk. */
	const bool streaming = streaming_request(c);
	while (len > 0) {
		const uint8_t *msg;
		size_t mlen;
		int rc = net_grpc_read(&c->rd, &data, &len, limit, streaming ? 0 : 1, streaming,
				       &msg, &mlen);
		switch (rc) {
		case NET_RD_MORE:
			return;
		case NET_RD_MSG:
			if (streaming) {
				deliver(c, msg, mlen);
				/* A stream may stay open for long between
				 * messages: it does not keep a large buffer
				 * (request memory) meanwhile. */
				net_grpc_reader_trim(&c->rd, RMQ_CALL_KEEP_BYTES);
				if (!reading(c))
					return;
			}
			continue;
		case RMQ_EUNSUPPORTED:
			layer_fail(c, RMQ_GRPC_UNIMPLEMENTED,
				   "compressed message, but no grpc-encoding is supported");
			return;
		case RMQ_EPROTO:
			layer_fail(c, RMQ_GRPC_INTERNAL, "invalid message flags 0x%02x", c->rd.pfx[0]);
			return;
		case RMQ_ETOOBIG:
			layer_fail(c, RMQ_GRPC_RESOURCE_EXHAUSTED,
				   "request message of %u bytes exceeds the limit of %llu bytes",
				   c->rd.need, (unsigned long long)limit);
			return;
		case RMQ_ESTATE:
			layer_fail(c, RMQ_GRPC_INVALID_ARGUMENT, "more than one request message for %s",
				   c->path);
			return;
		default:
			layer_fail(c, RMQ_GRPC_RESOURCE_EXHAUSTED, "no memory for a %u-byte message",
				   c->rd.need);
			return;
		}
	}
}

void net_call_data(struct rmq_call *c, const uint8_t *data, size_t len)
{
	data_in(c, data, len);
	call_account(c);
}

static void end_stream(struct rmq_call *c)
{
	if (!c->headers_ok || !reading(c))
		return;
	if (net_grpc_reader_partial(&c->rd)) {
		layer_fail(c, RMQ_GRPC_INTERNAL, "request ended inside a message");
		return;
	}
	if (!streaming_request(c) && c->rd.nmsg != 1) {
		layer_fail(c, RMQ_GRPC_INVALID_ARGUMENT, "no request message for %s", c->path);
		return;
	}
	c->req_done = true;
	if (!streaming_request(c)) {
		deliver(c, c->rd.buf, c->rd.need);
		return;
	}
	if (c->method->on_half_close)
		APP_CALLBACK(c, on_half_close);
	else
		c->app_seen = true;
}

void net_call_end_stream(struct rmq_call *c)
{
	rmq_call_ref(c); /* the app may drop its references in a callback */
	end_stream(c);
	call_account(c);
	rmq_call_unref(c);
}

void net_call_detach(struct rmq_call *c)
{
	if (!c->conn)
		return;
	rmq_list_del(&c->link);
	c->conn = NULL;
	c->req_done = true;
	/* Nothing queued can be sent any more: references go back now, not
	 * when the app drops the call. */
	c->sreserved = 0;
	sq_discard(c, 0);
	rmq_timer_cancel(c->srv->shard, &c->deadline);
	if (!c->finished && !c->cancelled) {
		c->cancelled = true;
		if (c->app_seen && c->method->on_cancel)
			APP_CALLBACK(c, on_cancel);
	}
	call_account(c);
	rmq_call_unref(c); /* the connection's reference */
}

/* ---- responses -------------------------------------------------------------- */

/*
 * How much of the queue the next DATA frame may take, at most length (the
 * window and the peer's SETTINGS_MAX_FRAME_SIZE): referenced bytes go out
 * in frames as large as that, up to the end of their entry; bytes that are
 * copied into the connection's output in frames of at most 16 KiB, so a
 * frame always fits an emptied send buffer.  O(entries before the first
 * unpromised byte), a handful.
 */
static size_t frame_len(const struct rmq_call *c, size_t length)
{
	size_t at = c->sreserved;
	for (uint32_t i = c->sq_head; i < c->sq_tail; i++) {
		const struct net_sq_ent *e = &c->sq[i];
		if (at >= e->len) {
			at -= e->len;
			continue;
		}
		size_t cap = e->ext ? e->len - at : 16384;
		return cap < length ? cap : length;
	}
	return 0;
}

static ssize_t read_cb(nghttp2_session *s, int32_t stream_id, uint8_t *buf, size_t length,
		       uint32_t *data_flags, nghttp2_data_source *source, void *ud)
{
	struct rmq_call *c = source->ptr;
	(void)s;
	(void)stream_id;
	(void)buf;
	(void)ud;

	if (!c || !c->conn)
		return NGHTTP2_ERR_TEMPORAL_CALLBACK_FAILURE;
	size_t avail = c->squeued - c->sreserved;
	if (avail > 0) {
		size_t n = frame_len(c, avail < length ? avail : length);
		RMQ_DASSERT(n > 0 && n <= avail);
		c->sreserved += n;
		*data_flags |= NGHTTP2_DATA_FLAG_NO_COPY;
		if (c->finished && n == avail) {
			*data_flags |= NGHTTP2_DATA_FLAG_EOF | NGHTTP2_DATA_FLAG_NO_END_STREAM;
			submit_trailers(c);
		}
		return (ssize_t)n;
	}
	if (c->finished) {
		*data_flags |= NGHTTP2_DATA_FLAG_EOF | NGHTTP2_DATA_FLAG_NO_END_STREAM;
		submit_trailers(c);
		return 0;
	}
	c->deferred = true;
	return NGHTTP2_ERR_DEFERRED;
}

/* ---- the send queue ----------------------------------------------------------- */

/*
 * Drops everything queued after the first keep bytes (references go back),
 * cutting the entry that straddles the boundary.  O(entries).
 */
static void sq_discard(struct rmq_call *c, size_t keep)
{
	size_t seen = 0, inline_kept = 0;
	uint32_t i = c->sq_head, cut = c->sq_tail;

	for (; i < c->sq_tail; i++) {
		struct net_sq_ent *e = &c->sq[i];
		if (seen + e->len <= keep) {
			seen += e->len;
			inline_kept += e->ext ? 0 : e->len;
			continue;
		}
		if (seen < keep) {
			/* Straddles: keep its head. */
			e->len = (uint32_t)(keep - seen);
			inline_kept += e->ext ? 0 : e->len;
			seen = keep;
			cut = i + 1;
			i++;
		} else {
			cut = i;
		}
		break;
	}
	for (; i < c->sq_tail; i++) {
		struct net_sq_ent *e = &c->sq[i];
		if (e->ext)
			rmq_send_ref_put(e->ref);
	}
	if (cut < c->sq_tail)
		c->sq_tail = cut;
	c->squeued = seen;
	c->stail = c->shead + inline_kept;
	if (c->squeued == 0) {
		c->shead = c->stail = 0;
		c->sq_head = c->sq_tail = 0;
	}
}

int net_call_send_data(struct conn *conn, nghttp2_frame *frame, const uint8_t *framehd,
		       size_t length, nghttp2_data_source *source)
{
	struct rmq_call *c = source->ptr;
	struct rmq_server *srv = conn->srv;

	RMQ_ASSERT(frame->data.padlen == 0);
	RMQ_ASSERT(length <= c->sreserved);
	/* What the frame needs in the connection's output: the header and
	 * the inline bytes copied, one piece per entry it spans.  A frame
	 * that does not fit, or output already holding enough referenced
	 * bytes for one send, waits for the next flush. */
	size_t copy = 9, left = length;
	uint32_t pieces = 1;
	for (uint32_t i = c->sq_head; left > 0; i++) {
		RMQ_DASSERT(i < c->sq_tail);
		size_t take = c->sq[i].len < left ? c->sq[i].len : left;
		copy += c->sq[i].ext ? 0 : take;
		pieces++;
		left -= take;
	}
	struct net_conn *nc = &conn->nc;
	if (net_conn_out_room(nc) < copy + RMQ_NET_CTRL_RESERVE ||
	    net_conn_pieces_room(nc) < pieces + RMQ_NET_PIECES_RESERVE ||
	    nc->out_ref_bytes >= RMQ_NET_OUT_REF_MAX)
		return NGHTTP2_ERR_WOULDBLOCK;
	net_conn_out_append(nc, framehd, 9);
	left = length;
	while (left > 0) {
		struct net_sq_ent *e = &c->sq[c->sq_head];
		size_t take = e->len < left ? e->len : left;
		if (e->ext) {
			net_conn_out_append_ref(nc, e->ext, take, e->ref);
			e->ext += take;
		} else {
			net_conn_out_append(nc, c->sbuf + c->shead, take);
			c->shead += take;
		}
		e->len -= (uint32_t)take;
		left -= take;
		if (e->len == 0) {
			if (e->ext)
				rmq_send_ref_put(e->ref); /* the piece holds its own */
			c->sq_head++;
		}
	}
	c->sreserved -= length;
	c->squeued -= length;
	if (c->squeued == 0) {
		RMQ_DASSERT(c->sq_head == c->sq_tail && c->shead == c->stail);
		c->shead = c->stail = 0;
		c->sq_head = c->sq_tail = 0;
	}
	if (c->want_drain && !c->drain_queued && c->squeued <= srv->cfg.send_queue_bytes / 2) {
		/* on_drain runs after the flush, not inside nghttp2. */
		c->want_drain = false;
		c->drain_queued = true;
		rmq_call_ref(c);
		c->drain_next = srv->drain_head;
		srv->drain_head = c;
	}
	return 0;
}

void net_run_drains(struct rmq_server *srv)
{
	struct rmq_call *c;
	while ((c = srv->drain_head) != NULL) {
		srv->drain_head = c->drain_next;
		c->drain_next = NULL;
		c->drain_queued = false;
		if (!rmq_call_done(c) && c->conn && c->method->on_drain)
			c->method->on_drain(c);
		rmq_call_unref(c);
	}
}

/* Makes room for need more bytes at the tail of the inline buffer. */
static int sendq_reserve(struct rmq_call *c, size_t need)
{
	size_t queued = c->stail - c->shead;

	if (c->stail + need <= c->scap)
		return 0;
	if (c->shead > 0) {
		/* Entries count bytes from shead, so moving the bytes promised
		 * to nghttp2 (NO_COPY) is safe. */
		memmove(c->sbuf, c->sbuf + c->shead, queued);
		c->shead = 0;
		c->stail = queued;
		if (queued + need <= c->scap)
			return 0;
	}
	size_t cap = c->scap ? c->scap * 2 : 4096;
	if (cap < queued + need)
		cap = queued + need;
	uint8_t *p = realloc(c->sbuf, cap);
	if (!p)
		return -ENOMEM;
	c->sbuf = p;
	c->scap = cap;
	return 0;
}

/* Makes room for need more entries. */
static int sq_reserve(struct rmq_call *c, uint32_t need)
{
	uint32_t used = c->sq_tail - c->sq_head;

	if (c->sq_tail + need <= c->sq_cap)
		return 0;
	if (c->sq_head > 0) {
		memmove(c->sq, c->sq + c->sq_head, used * sizeof(*c->sq));
		c->sq_head = 0;
		c->sq_tail = used;
		if (used + need <= c->sq_cap)
			return 0;
	}
	uint32_t cap = c->sq_cap ? c->sq_cap * 2 : 16;
	if (cap < used + need)
		cap = used + need;
	struct net_sq_ent *p = realloc(c->sq, (size_t)cap * sizeof(*p));
	if (!p)
		return -ENOMEM;
	c->sq = p;
	c->sq_cap = cap;
	return 0;
}

/* Queues len inline bytes already written at stail, merging with an
 * inline entry before them. */
static void sq_push_inline(struct rmq_call *c, size_t len)
{
	if (len == 0)
		return;
	struct net_sq_ent *last = c->sq_tail > c->sq_head ? &c->sq[c->sq_tail - 1] : NULL;
	if (last && !last->ext && (uint64_t)last->len + len <= UINT32_MAX)
		last->len += (uint32_t)len;
	else
		c->sq[c->sq_tail++] = (struct net_sq_ent){.len = (uint32_t)len};
	c->stail += len;
	c->squeued += len;
}

static bool by_ref(struct rmq_send_ref *const *refs, const struct iovec *iov, int i)
{
	return refs && refs[i] && iov[i].iov_len >= RMQ_NET_REF_MIN;
}

int rmq_call_sendv_ref(struct rmq_call *c, const struct iovec *iov,
		       struct rmq_send_ref *const *refs, int iovcnt)
{
	const struct rmq_net_config *cfg = &c->srv->cfg;
	size_t total = 0, copied = RMQ_GRPC_PREFIX;
	int rc;

	if (rmq_call_done(c) || !c->conn)
		return RMQ_ECLOSED;
	for (int i = 0; i < iovcnt; i++) {
		total += iov[i].iov_len;
		if (!by_ref(refs, iov, i))
			copied += iov[i].iov_len;
	}
	if (total > cfg->max_message_bytes)
		return RMQ_ETOOBIG;
	/* An empty queue takes one message of any allowed size. */
	if (c->squeued > 0 && c->squeued + RMQ_GRPC_PREFIX + total > cfg->send_queue_bytes) {
		c->want_drain = true;
		return RMQ_EFULL;
	}
	/* Room first, so nothing below can fail once the response is
	 * submitted: a referenced iovec takes an entry, and so may each run
	 * of copied bytes between them. */
	rc = sendq_reserve(c, copied);
	if (rc == 0)
		rc = sq_reserve(c, 2 * (uint32_t)iovcnt + 1);
	if (rc < 0)
		return rc;
	if (!c->resp_headers) {
		nghttp2_nv nv[] = {NV(":status", "200"), NV("content-type", "application/grpc")};
		nghttp2_data_provider prd = {.source.ptr = c, .read_callback = read_cb};
		int rv = nghttp2_submit_response(c->conn->h2, c->stream_id, nv, RMQ_ARRAY_SIZE(nv),
						 &prd);
		if (rv != 0)
			return rv == NGHTTP2_ERR_NOMEM ? -ENOMEM : RMQ_ECLOSED;
		c->resp_headers = true;
	} else if (c->deferred) {
		c->deferred = false;
		nghttp2_session_resume_data(c->conn->h2, c->stream_id);
	}
	uint8_t *p = c->sbuf + c->stail;
	net_grpc_prefix(p, (uint32_t)total);
	size_t run = RMQ_GRPC_PREFIX; /* inline bytes written since stail */
	for (int i = 0; i < iovcnt; i++) {
		if (iov[i].iov_len == 0)
			continue;
		if (!by_ref(refs, iov, i)) {
			memcpy(p + run, iov[i].iov_base, iov[i].iov_len);
			run += iov[i].iov_len;
			continue;
		}
		sq_push_inline(c, run);
		p = c->sbuf + c->stail;
		run = 0;
		rmq_send_ref_get(refs[i]);
		c->sq[c->sq_tail++] = (struct net_sq_ent){
			.ext = iov[i].iov_base, .ref = refs[i], .len = (uint32_t)iov[i].iov_len};
		c->squeued += iov[i].iov_len;
	}
	sq_push_inline(c, run);
	net_conn_mark_dirty(&c->conn->nc);
	return 0;
}

int rmq_call_sendv(struct rmq_call *c, const struct iovec *iov, int iovcnt)
{
	return rmq_call_sendv_ref(c, iov, NULL, iovcnt);
}

int rmq_call_send(struct rmq_call *c, const void *msg, size_t len)
{
	struct iovec iov = {.iov_base = (void *)msg, .iov_len = len};
	return rmq_call_sendv(c, &iov, 1);
}

int rmq_call_finish(struct rmq_call *c, enum rmq_grpc_status status, const char *msg)
{
	if (rmq_call_done(c) || !c->conn)
		return RMQ_ECLOSED;
	finish_common(c, status, msg, false);
	return 0;
}

int rmq_call_finishf(struct rmq_call *c, enum rmq_grpc_status status, const char *fmt, ...)
{
	char msg[STATUS_MSG_MAX + 1];
	va_list ap;

	va_start(ap, fmt);
	vsnprintf(msg, sizeof(msg), fmt, ap);
	va_end(ap);
	return rmq_call_finish(c, status, msg);
}

const char *rmq_call_authorization(const struct rmq_call *c, bool *too_long)
{
	if (too_long)
		*too_long = c->hdr_authz_long;
	return c->authz_len ? c->authz : NULL;
}

const char *rmq_call_tls_peer(const struct rmq_call *c)
{
	return c->conn ? net_tls_peer(&c->conn->nc) : NULL;
}

void rmq_call_set_principal(struct rmq_call *c, const char *principal)
{
	snprintf(c->principal, sizeof(c->principal), "%s", principal ? principal : "");
}

void rmq_call_mute(struct rmq_call *c, bool mute)
{
	if (c->conn)
		net_conn_mute(c->conn, mute);
}

void rmq_call_set_throttle_ms(struct rmq_call *c, uint32_t ms)
{
	if (ms > c->throttle_ms)
		c->throttle_ms = ms;
}

uint32_t rmq_call_throttle_ms(const struct rmq_call *c)
{
	return c->throttle_ms;
}

const char *rmq_call_principal(const struct rmq_call *c)
{
	return c->principal[0] ? c->principal : NULL;
}

int rmq_call_peer(const struct rmq_call *c, char *buf, size_t len)
{
	struct sockaddr_storage ss;
	socklen_t sl = sizeof(ss);
	char host[INET6_ADDRSTRLEN];
	if (!c->conn || getpeername(c->conn->nc.fd, (struct sockaddr *)&ss, &sl) < 0)
		return -ENOTCONN;
	const void *a = ss.ss_family == AF_INET6 ? (const void *)&((struct sockaddr_in6 *)&ss)->sin6_addr
						 : (const void *)&((struct sockaddr_in *)&ss)->sin_addr;
	if (!inet_ntop(ss.ss_family, a, host, sizeof(host)))
		return -errno;
	snprintf(buf, len, "%s", host);
	return 0;
}
