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
	memset(c, 0, sizeof(*c));
	c->srv = srv;
	c->rd = rd;
	net_grpc_reader_reset(&c->rd);
	c->sbuf = sbuf;
	c->scap = scap;
	c->in_use = true;
	c->conn = conn;
	c->stream_id = stream_id;
	c->refs = 1;
	rmq_list_add_tail(&conn->calls, &c->link);
	srv->stats.calls++;
	srv->stats.calls_total++;
	return c;
}

static void call_release(struct rmq_call *c)
{
	struct rmq_server *srv = c->srv;

	RMQ_ASSERT(c->conn == NULL);
	RMQ_ASSERT(!c->drain_queued);
	rmq_timer_cancel(srv->shard, &c->deadline);
	free(c->status_msg);
	c->status_msg = NULL;
	net_grpc_reader_trim(&c->rd, RMQ_CALL_KEEP_BYTES);
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
	if (!c->conn)
		return;
	if (discard)
		c->stail = c->shead + c->sreserved; /* keep what nghttp2 was promised */
	if (!c->resp_headers) {
		submit_trailers_only(c);
	} else if (c->deferred) {
		c->deferred = false;
		nghttp2_session_resume_data(c->conn->h2, c->stream_id);
	}
	net_conn_mark_dirty(c->conn);
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
	net_conn_mark_dirty(c->conn);
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
	net_conn_mark_dirty(conn);
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

static void deliver(struct rmq_call *c, const uint8_t *msg, size_t len)
{
	static const uint8_t empty[1];
	APP_CALLBACK(c, on_message, msg && len ? msg : empty, len);
}

void net_call_data(struct rmq_call *c, const uint8_t *data, size_t len)
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

void net_call_end_stream(struct rmq_call *c)
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

void net_call_detach(struct rmq_call *c)
{
	if (!c->conn)
		return;
	rmq_list_del(&c->link);
	c->conn = NULL;
	c->req_done = true;
	rmq_timer_cancel(c->srv->shard, &c->deadline);
	if (!c->finished && !c->cancelled) {
		c->cancelled = true;
		if (c->app_seen && c->method->on_cancel)
			APP_CALLBACK(c, on_cancel);
	}
	rmq_call_unref(c); /* the connection's reference */
}

/* ---- responses -------------------------------------------------------------- */

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
	size_t avail = c->stail - c->shead - c->sreserved;
	if (avail > 0) {
		size_t n = avail < length ? avail : length;
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

int net_call_send_data(struct conn *conn, nghttp2_frame *frame, const uint8_t *framehd,
		       size_t length, nghttp2_data_source *source)
{
	struct rmq_call *c = source->ptr;
	struct rmq_server *srv = conn->srv;

	if (net_conn_out_room(conn) < 9 + length + RMQ_NET_CTRL_RESERVE)
		return NGHTTP2_ERR_WOULDBLOCK;
	RMQ_ASSERT(frame->data.padlen == 0);
	RMQ_ASSERT(length <= c->sreserved);
	net_conn_out_append(conn, framehd, 9);
	net_conn_out_append(conn, c->sbuf + c->shead, length);
	c->shead += length;
	c->sreserved -= length;
	if (c->shead == c->stail)
		c->shead = c->stail = 0;
	if (c->want_drain && !c->drain_queued &&
	    c->stail - c->shead <= srv->cfg.send_queue_bytes / 2) {
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

/* Makes room for need more bytes at the tail of the send queue. */
static int sendq_reserve(struct rmq_call *c, size_t need)
{
	size_t queued = c->stail - c->shead;

	if (c->stail + need <= c->scap)
		return 0;
	if (c->shead > 0) {
		/* Offsets count from shead, so moving the bytes promised to
		 * nghttp2 (NO_COPY) is safe. */
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

int rmq_call_sendv(struct rmq_call *c, const struct iovec *iov, int iovcnt)
{
	const struct rmq_net_config *cfg = &c->srv->cfg;
	size_t total = 0;
	int rc;

	if (rmq_call_done(c) || !c->conn)
		return RMQ_ECLOSED;
	for (int i = 0; i < iovcnt; i++)
		total += iov[i].iov_len;
	if (total > cfg->max_message_bytes)
		return RMQ_ETOOBIG;
	size_t queued = c->stail - c->shead;
	/* An empty queue takes one message of any allowed size. */
	if (queued > 0 && queued + RMQ_GRPC_PREFIX + total > cfg->send_queue_bytes) {
		c->want_drain = true;
		return RMQ_EFULL;
	}
	rc = sendq_reserve(c, RMQ_GRPC_PREFIX + total);
	if (rc < 0)
		return rc;
	uint8_t *p = c->sbuf + c->stail;
	net_grpc_prefix(p, (uint32_t)total);
	p += RMQ_GRPC_PREFIX;
	for (int i = 0; i < iovcnt; i++) {
		if (iov[i].iov_len) {
			memcpy(p, iov[i].iov_base, iov[i].iov_len);
			p += iov[i].iov_len;
		}
	}
	c->stail += RMQ_GRPC_PREFIX + total;
	if (!c->resp_headers) {
		nghttp2_nv nv[] = {NV(":status", "200"), NV("content-type", "application/grpc")};
		nghttp2_data_provider prd = {.source.ptr = c, .read_callback = read_cb};
		int rv = nghttp2_submit_response(c->conn->h2, c->stream_id, nv, RMQ_ARRAY_SIZE(nv),
						 &prd);
		if (rv != 0) {
			c->stail -= RMQ_GRPC_PREFIX + total;
			return rv == NGHTTP2_ERR_NOMEM ? -ENOMEM : RMQ_ECLOSED;
		}
		c->resp_headers = true;
	} else if (c->deferred) {
		c->deferred = false;
		nghttp2_session_resume_data(c->conn->h2, c->stream_id);
	}
	net_conn_mark_dirty(c->conn);
	return 0;
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

int rmq_call_peer(const struct rmq_call *c, char *buf, size_t len)
{
	struct sockaddr_storage ss;
	socklen_t sl = sizeof(ss);
	char host[INET6_ADDRSTRLEN];
	if (!c->conn || getpeername(c->conn->fd, (struct sockaddr *)&ss, &sl) < 0)
		return -ENOTCONN;
	const void *a = ss.ss_family == AF_INET6 ? (const void *)&((struct sockaddr_in6 *)&ss)->sin6_addr
						 : (const void *)&((struct sockaddr_in *)&ss)->sin_addr;
	if (!inet_ntop(ss.ss_family, a, host, sizeof(host)))
		return -errno;
	snprintf(buf, len, "%s", host);
	return 0;
}
