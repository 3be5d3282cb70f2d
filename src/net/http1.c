/* SPDX-License-Identifier: Apache-2.0 */
/*
 * http1.c - a small HTTP/1.1 server on one shard's ring (see http1.h).
 *
 * A connection's life:
 *
 *   accept ─► READING ──head whole──► WAITING (the application) ──answer──►
 *   SENDING ──sent──► READING again (keep-alive; pipelined bytes first)
 *
 *   any error, EOF, a bad request's answer sent, Connection: close, or the
 *   timer (RMQ_HTTP1_IDLE_NS in READING or SENDING) ─► cut: shutdown(RDWR)
 *   wakes the recv or send in flight; the slot is freed once neither is,
 *   nor an answer awaited.
 *
 * Everything runs on the shard's thread; the ring does all socket I/O.
 */
#include "net/http1.h"

#include "core/assert.h"
#include "core/error.h"
#include "core/io.h"
#include "core/log.h"
#include "core/shard.h"
#include "core/util.h"
#include "net/net_int.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/socket.h>
#include <unistd.h>

#define ACCEPT_RETRY_NS (100ULL * 1000 * 1000)

struct rmq_http1_req {
	char path[RMQ_HTTP1_PATH_MAX];
};

struct hconn {
	struct rmq_http1 *h;
	int fd;                    /* -1: a free slot */
	struct rmq_io_op recv_op, send_op;
	struct rmq_timer timer;
	bool recv_busy, send_busy; /* an op in flight (or deferred) */
	bool waiting;              /* the application holds req */
	bool cut;                  /* shut down: freed once nothing is in flight */
	bool close_after;          /* Connection: close, HTTP/1.0, or an error */
	bool head_only;            /* HEAD */
	bool lingering;            /* answered and closing: reads the rest to EOF */
	uint64_t since;            /* when it last started to wait for a request */
	struct rmq_http1_req req;
	char *out;                 /* the answer being sent */
	size_t out_len, out_off;
	size_t in_len;
	char in[RMQ_HTTP1_HEAD_MAX];
};

struct rmq_http1 {
	struct rmq_shard *s;
	struct rmq_io *io;
	int fd;
	struct rmq_io_op accept_op;
	struct rmq_timer accept_retry;
	bool accept_busy, stopping, cancel_sent;
	int pending_fd;            /* accepted while every slot was taken: it gets
				    * the slot of the connection evicted for it */
	rmq_http1_handler handler;
	void *arg;
	struct hconn conns[RMQ_HTTP1_CONNS];
};

static void arm_recv(struct hconn *c);
static void process(struct hconn *c);
static void open_conn(struct rmq_http1 *h, int fd);

/* ---- a connection's end ------------------------------------------------------ */

static void maybe_free(struct hconn *c)
{
	if (!c->cut || c->recv_busy || c->send_busy || c->waiting)
		return;
	close(c->fd);
	free(c->out);
	c->out = NULL;
	c->fd = -1;
	struct rmq_http1 *h = c->h;
	if (h->pending_fd >= 0) {
		int fd = h->pending_fd;
		h->pending_fd = -1;
		open_conn(h, fd);
	}
}

static void cut(struct hconn *c)
{
	if (c->cut)
		return;
	c->cut = true;
	(void)shutdown(c->fd, SHUT_RDWR); /* wakes a recv or send in flight */
	rmq_timer_cancel(c->h->s, &c->timer);
	maybe_free(c);
}

static void timer_fn(struct rmq_timer *t)
{
	struct hconn *c = RMQ_CONTAINER_OF(t, struct hconn, timer);
	if (!c->lingering)
		rmq_debug("http: fd %d: no whole request, or the answer not taken, in %llu s: closing",
			  c->fd, (unsigned long long)(RMQ_HTTP1_IDLE_NS / 1000000000ULL));
	cut(c);
}

static void timer_restart(struct hconn *c)
{
	rmq_timer_cancel(c->h->s, &c->timer);
	if (rmq_timer_start(c->h->s, &c->timer, rmq_now_ns() + RMQ_HTTP1_IDLE_NS, timer_fn) < 0)
		cut(c); /* no timer to bound it: not served */
}

/* ---- sending ------------------------------------------------------------------- */

static void send_done(struct rmq_io_op *op, int res, unsigned flags);

static void arm_send(struct hconn *c)
{
	struct io_uring_sqe *sqe = rmq_io_sqe(c->h->io, &c->send_op);
	c->send_busy = true;
	if (!sqe) {
		rmq_io_defer(c->h->io, &c->send_op);
		return;
	}
	io_uring_prep_send(sqe, c->fd, c->out + c->out_off, c->out_len - c->out_off, MSG_NOSIGNAL);
}

static void send_done(struct rmq_io_op *op, int res, unsigned flags)
{
	struct hconn *c = RMQ_CONTAINER_OF(op, struct hconn, send_op);
	(void)flags;
	c->send_busy = false;
	if (c->cut) {
		maybe_free(c);
		return;
	}
	if (res == -EAGAIN || res == -EINTR) {
		arm_send(c);
		return;
	}
	if (res <= 0) {
		cut(c);
		return;
	}
	c->out_off += (size_t)res;
	if (c->out_off < c->out_len) {
		arm_send(c);
		return;
	}
	free(c->out);
	c->out = NULL;
	if (c->close_after) {
		/* A lingering close (as web servers do): closing with unread
		 * bytes would send a reset, which can make the client drop
		 * the answer before it reads it.  FIN now, then read to the
		 * client's EOF, for at most RMQ_HTTP1_LINGER_NS. */
		(void)shutdown(c->fd, SHUT_WR);
		c->lingering = true;
		c->in_len = 0;
		rmq_timer_cancel(c->h->s, &c->timer);
		if (rmq_timer_start(c->h->s, &c->timer, rmq_now_ns() + RMQ_HTTP1_LINGER_NS,
				    timer_fn) < 0)
			cut(c);
		else
			arm_recv(c);
		return;
	}
	timer_restart(c);
	c->since = rmq_now_ns();
	process(c); /* a pipelined request, or read on */
}

static const char *reason(int status)
{
	switch (status) {
	case 200: return "OK";
	case 400: return "Bad Request";
	case 404: return "Not Found";
	case 405: return "Method Not Allowed";
	case 414: return "URI Too Long";
	case 431: return "Request Header Fields Too Large";
	case 500: return "Internal Server Error";
	case 503: return "Service Unavailable";
	default: return "Unknown";
	}
}

static void answer(struct hconn *c, int status, const char *ctype, const char *body, size_t len)
{
	char head[256];
	int n = snprintf(head, sizeof(head),
			 "HTTP/1.1 %d %s\r\nContent-Type: %s\r\nContent-Length: %zu\r\n%s%s\r\n",
			 status, reason(status), ctype, len,
			 status == 405 ? "Allow: GET, HEAD\r\n" : "",
			 c->close_after ? "Connection: close\r\n" : "");
	size_t body_len = c->head_only ? 0 : len;
	RMQ_ASSERT(n > 0 && (size_t)n < sizeof(head));
	c->out = malloc((size_t)n + body_len);
	if (!c->out) {
		cut(c);
		return;
	}
	memcpy(c->out, head, (size_t)n);
	if (body_len)
		memcpy(c->out + n, body, body_len);
	c->out_len = (size_t)n + body_len;
	c->out_off = 0;
	timer_restart(c); /* for the client to take it */
	if (!c->cut)
		arm_send(c);
}

/* A request the application never sees: answered, then closed. */
static void refuse(struct hconn *c, int status, const char *why)
{
	c->close_after = true;
	answer(c, status, "text/plain; charset=utf-8", why, strlen(why));
}

void rmq_http1_answer(struct rmq_http1_req *r, int status, const char *content_type,
		      const char *body, size_t len)
{
	struct hconn *c = RMQ_CONTAINER_OF(r, struct hconn, req);
	RMQ_ASSERT(c->waiting);
	c->waiting = false;
	if (c->cut) {
		maybe_free(c); /* lost, or the server stopped, meanwhile */
		return;
	}
	answer(c, status, content_type, body, len);
}

/* ---- reading and parsing -------------------------------------------------------- */

static void recv_done(struct rmq_io_op *op, int res, unsigned flags);

static void arm_recv(struct hconn *c)
{
	struct io_uring_sqe *sqe = rmq_io_sqe(c->h->io, &c->recv_op);
	c->recv_busy = true;
	if (!sqe) {
		rmq_io_defer(c->h->io, &c->recv_op);
		return;
	}
	io_uring_prep_recv(sqe, c->fd, c->in + c->in_len, sizeof(c->in) - c->in_len, 0);
}

static void recv_done(struct rmq_io_op *op, int res, unsigned flags)
{
	struct hconn *c = RMQ_CONTAINER_OF(op, struct hconn, recv_op);
	(void)flags;
	c->recv_busy = false;
	if (c->cut) {
		maybe_free(c);
		return;
	}
	if (res == -EAGAIN || res == -EINTR) {
		arm_recv(c);
		return;
	}
	if (res <= 0) {
		cut(c); /* EOF or an error */
		return;
	}
	if (c->lingering) {
		arm_recv(c); /* bytes after the last answer: dropped */
		return;
	}
	c->in_len += (size_t)res;
	process(c);
}

/* Whether the header line [p, e) is "name: value" with a value that has
 * token `tok` in its comma-separated list (case-insensitive). */
static bool header_has(const char *p, const char *e, const char *name, const char *tok)
{
	size_t nl = strlen(name), tl = strlen(tok);
	if ((size_t)(e - p) <= nl || strncasecmp(p, name, nl) != 0 || p[nl] != ':')
		return false;
	for (p += nl + 1; p < e;) {
		while (p < e && (*p == ' ' || *p == '\t' || *p == ','))
			p++;
		const char *t = p;
		while (p < e && *p != ',' && *p != ' ' && *p != '\t')
			p++;
		if ((size_t)(p - t) == tl && strncasecmp(t, tok, tl) == 0)
			return true;
	}
	return false;
}

static bool header_named(const char *p, const char *e, const char *name)
{
	size_t nl = strlen(name);
	return (size_t)(e - p) > nl && strncasecmp(p, name, nl) == 0 && p[nl] == ':';
}

int rmq_http1_parse_head(const char *in, size_t len, struct rmq_http1_head *out,
			 const char **why)
{
	const char *p = in, *end = in + len - 2; /* the last CRLF ends the headers */
	*out = (struct rmq_http1_head){0};
	*why = "a malformed request line\n";
	if (len < 4 || memcmp(in + len - 4, "\r\n\r\n", 4) != 0)
		return 400;
	const char *eol = memchr(p, '\r', (size_t)(end - p));
	if (!eol || eol[1] != '\n')
		return 400;
	/* method SP target SP HTTP/1.x */
	const char *sp1 = memchr(p, ' ', (size_t)(eol - p));
	const char *sp2 = sp1 ? memchr(sp1 + 1, ' ', (size_t)(eol - sp1 - 1)) : NULL;
	if (!sp1 || !sp2 || sp1 == p || sp1[1] != '/')
		return 400;
	for (const char *m = p; m < sp1; m++)
		if (*m < 'A' || *m > 'Z')
			return 400;
	size_t vlen = (size_t)(eol - sp2 - 1);
	bool v10 = vlen == 8 && memcmp(sp2 + 1, "HTTP/1.0", 8) == 0;
	if (!v10 && !(vlen == 8 && memcmp(sp2 + 1, "HTTP/1.1", 8) == 0)) {
		*why = "only HTTP/1.0 and HTTP/1.1 are served here\n";
		return 400;
	}
	for (const char *t = sp1 + 1; t < sp2; t++)
		if ((unsigned char)*t <= ' ' || *t == 0x7f)
			return 400;
	size_t mlen = (size_t)(sp1 - p);
	out->get = mlen == 3 && memcmp(p, "GET", 3) == 0;
	out->head = mlen == 4 && memcmp(p, "HEAD", 4) == 0;
	const char *q = memchr(sp1 + 1, '?', (size_t)(sp2 - sp1 - 1));
	size_t plen = (size_t)((q ? q : sp2) - (sp1 + 1));
	if (plen >= sizeof(out->path)) {
		*why = "the path is too long\n";
		return 414;
	}
	memcpy(out->path, sp1 + 1, plen);
	out->path[plen] = '\0';
	out->close = v10;
	for (p = eol + 2; p < end; p = eol + 2) {
		eol = memchr(p, '\r', (size_t)(end - p));
		if (!eol || eol[1] != '\n' || eol == p || !memchr(p, ':', (size_t)(eol - p)) ||
		    *p == ' ' || *p == '\t') {
			*why = "a malformed header line\n";
			return 400;
		}
		if (header_has(p, eol, "connection", "close"))
			out->close = true;
		else if (v10 && header_has(p, eol, "connection", "keep-alive"))
			out->close = false;
		else if (header_named(p, eol, "transfer-encoding") ||
			 (header_named(p, eol, "content-length") &&
			  !header_has(p, eol, "content-length", "0"))) {
			*why = "requests with a body are not served here\n";
			return 400;
		}
	}
	return 0;
}

static void process(struct hconn *c)
{
	if (c->cut || c->waiting || c->out)
		return;
	const char *e = c->in_len >= 4 ? memmem(c->in, c->in_len, "\r\n\r\n", 4) : NULL;
	if (!e) {
		if (c->in_len == sizeof(c->in))
			refuse(c, 431, "the request's head is too large\n");
		else
			arm_recv(c);
		return;
	}
	size_t head = (size_t)(e - c->in) + 4;
	struct rmq_http1_head hd;
	const char *why = NULL;
	int status = rmq_http1_parse_head(c->in, head, &hd, &why);
	c->head_only = hd.head;
	c->close_after = hd.close;
	memcpy(c->req.path, hd.path, sizeof(hd.path));
	c->in_len -= head;
	memmove(c->in, c->in + head, c->in_len); /* a pipelined request's bytes */
	if (status) {
		refuse(c, status, why);
		return;
	}
	if (!hd.get && !hd.head) {
		answer(c, 405, "text/plain; charset=utf-8", "GET or HEAD only\n", 17);
		return;
	}
	rmq_timer_cancel(c->h->s, &c->timer); /* the application's time is not the client's */
	c->waiting = true;
	c->h->handler(c->h->arg, &c->req, c->req.path);
}

/* ---- the listener ---------------------------------------------------------------- */

static void accept_done(struct rmq_io_op *op, int res, unsigned flags);

static int arm_accept(struct rmq_http1 *h)
{
	struct io_uring_sqe *sqe = rmq_io_sqe(h->io, &h->accept_op);
	if (!sqe)
		return -EBUSY;
	io_uring_prep_multishot_accept(sqe, h->fd, NULL, NULL, SOCK_CLOEXEC);
	h->accept_busy = true;
	return 0;
}

static void accept_retry_fn(struct rmq_timer *t)
{
	struct rmq_http1 *h = RMQ_CONTAINER_OF(t, struct rmq_http1, accept_retry);
	if (h->stopping || h->accept_busy)
		return;
	if (arm_accept(h) < 0)
		(void)rmq_timer_start(h->s, &h->accept_retry, rmq_now_ns() + ACCEPT_RETRY_NS,
				      accept_retry_fn);
}

/* Every slot taken: the connection idle longest (waiting for a request
 * and holding none of one) is cut for fd, which waits for its slot; with
 * none idle, or one waiting already, fd is closed.  So idle connections
 * cannot lock a scraper out. */
static void evict_for(struct rmq_http1 *h, int fd)
{
	struct hconn *old = NULL;
	for (unsigned i = 0; i < RMQ_HTTP1_CONNS; i++) {
		struct hconn *c = &h->conns[i];
		if (!c->cut && !c->waiting && !c->out && c->in_len == 0 &&
		    (!old || c->since < old->since))
			old = c;
	}
	if (!old || h->pending_fd >= 0) {
		rmq_debug("http: every connection slot is busy: a connection closed at accept");
		close(fd);
		return;
	}
	h->pending_fd = fd;
	cut(old); /* its slot goes to fd once its recv is back */
}

static void open_conn(struct rmq_http1 *h, int fd)
{
	struct hconn *c = NULL;
	if (h->stopping) {
		close(fd);
		return;
	}
	for (unsigned i = 0; i < RMQ_HTTP1_CONNS && !c; i++)
		if (h->conns[i].fd < 0)
			c = &h->conns[i];
	if (!c) {
		evict_for(h, fd);
		return;
	}
	c->fd = fd;
	c->since = rmq_now_ns();
	c->cut = c->waiting = c->close_after = c->head_only = c->lingering = false;
	c->in_len = 0;
	timer_restart(c);
	if (!c->cut)
		arm_recv(c);
}

static void accept_done(struct rmq_io_op *op, int res, unsigned flags)
{
	struct rmq_http1 *h = RMQ_CONTAINER_OF(op, struct rmq_http1, accept_op);
	bool backoff = false;
	if (!(flags & IORING_CQE_F_MORE))
		h->accept_busy = false;
	if (res >= 0)
		open_conn(h, res);
	else if (res != -ECANCELED && res != -EINTR && res != -EAGAIN && res != -ECONNABORTED)
		backoff = true; /* -EMFILE, ...: waited out, not spun on */
	if (h->accept_busy || h->stopping)
		return;
	if (backoff || arm_accept(h) < 0)
		(void)rmq_timer_start(h->s, &h->accept_retry, rmq_now_ns() + ACCEPT_RETRY_NS,
				      accept_retry_fn);
}

int rmq_http1_start(struct rmq_shard *s, const char *host, uint16_t port,
		    rmq_http1_handler handler, void *arg, struct rmq_http1 **out, uint16_t *bound)
{
	struct rmq_http1 *h = calloc(1, sizeof(*h));
	if (!h)
		return -ENOMEM;
	h->s = s;
	h->io = rmq_shard_io(s);
	h->handler = handler;
	h->arg = arg;
	h->accept_op.cb = accept_done;
	h->pending_fd = -1;
	for (unsigned i = 0; i < RMQ_HTTP1_CONNS; i++) {
		struct hconn *c = &h->conns[i];
		c->h = h;
		c->fd = -1;
		c->recv_op.cb = recv_done;
		c->send_op.cb = send_done;
	}
	h->fd = net_bind(host, port, false, bound);
	if (h->fd < 0) {
		int rc = h->fd;
		free(h);
		return rc;
	}
	if (listen(h->fd, 64) < 0) {
		int rc = -errno;
		close(h->fd);
		free(h);
		return rc;
	}
	if (arm_accept(h) < 0)
		(void)rmq_timer_start(s, &h->accept_retry, rmq_now_ns() + ACCEPT_RETRY_NS,
				      accept_retry_fn);
	*out = h;
	return 0;
}

bool rmq_http1_stop(struct rmq_http1 *h)
{
	h->stopping = true;
	rmq_timer_cancel(h->s, &h->accept_retry);
	if (h->pending_fd >= 0) {
		close(h->pending_fd);
		h->pending_fd = -1;
	}
	if (h->accept_busy && !h->cancel_sent) {
		struct io_uring_sqe *sqe = rmq_io_sqe(h->io, NULL);
		if (sqe) /* else asked again at the next call */
			io_uring_prep_cancel(sqe, &h->accept_op, 0);
		h->cancel_sent = sqe != NULL;
	}
	bool idle = !h->accept_busy;
	for (unsigned i = 0; i < RMQ_HTTP1_CONNS; i++) {
		struct hconn *c = &h->conns[i];
		if (c->fd < 0)
			continue;
		cut(c);
		idle &= c->fd < 0;
	}
	return idle;
}

void rmq_http1_free(struct rmq_http1 *h)
{
	if (!h)
		return;
	for (unsigned i = 0; i < RMQ_HTTP1_CONNS; i++)
		if (h->conns[i].fd >= 0) {
			rmq_timer_cancel(h->s, &h->conns[i].timer);
			close(h->conns[i].fd);
			free(h->conns[i].out);
		}
	rmq_timer_cancel(h->s, &h->accept_retry);
	if (h->pending_fd >= 0)
		close(h->pending_fd);
	close(h->fd);
	free(h);
}
