/* SPDX-License-Identifier: Apache-2.0 */
/*
 * server.c - a shard's listener and connections (see server.h).
 *
 * Everything here runs on the shard's ring.  The sockets and the bytes
 * (the socket I/O itself is conn.c's, shared with the client):
 *
 *   listen fd ── multishot ACCEPT ──► conn_open()          (re-armed when
 *                                                           the kernel ends it)
 *   conn fd ──── multishot RECV (conn.c) ──► conn_on_input()
 *                    ──► nghttp2_session_mem_recv() (h2.c, grpc.c)
 *   flush hook (before the shard waits), per dirty connection:
 *       net_conn_gather() ──► the output chain ──► net_conn_send()
 *
 * Connection lifecycle:
 *
 *   FREE ─accept─► OPEN ──(error, GOAWAY done, idle, 505 sent)──► closing
 *                   │        flush what is queued (bounded by
 *                   │        RMQ_NET_LINGER_NS), then shutdown(SHUT_WR)
 *                   │                      ▼
 *                   │                   LINGER: read and drop to EOF
 *                   │                      │ (EOF, error or linger timer)
 *                   └──(EOF, reset, send error, force)──► CLOSING
 *                                          shutdown(RDWR), cancel the ops,
 *                                          calls cancelled; once neither
 *                                          op is in flight: close, FREE
 *
 * Timers: one per connection, armed for the earliest of its keepalive
 * PING (keepalive_ns without input), its idle close (idle_timeout_ns
 * without input), its handshake deadline (preface_timeout_ns after the
 * accept, until the client preface and its SETTINGS frame were read,
 * however slowly bytes trickle in) and, while closing, its cut-off.  Input
 * only stamps last_rx_ns; the timer re-arms itself lazily when it fires
 * early.  A live client answers the keepalive PINGs, so only dead or
 * silent peers reach the idle timeout (streams they leave open are bounded
 * by max_streams per connection until then).
 *
 * A full pool.  Connections still in their handshake are listed in accept
 * order (conns_unready).  An accepted socket that finds no free slot cuts
 * the oldest of them and waits in a small queue (NET_PENDING_MAX) until
 * the slot is free, normally by the next ring cycle; when the queue is
 * full or no open connection is left in its handshake, the oldest socket
 * waiting in the queue is closed instead; with neither, the newcomer is
 * refused (closed).
 * So a flood of connections that send nothing cannot lock a real client
 * out: each lives at most preface_timeout_ns, and a newcomer displaces
 * the oldest.
 *
 * HTTP/1.x.  Nothing is sent before the client preface is verified.  A
 * connection whose first bytes are an HTTP/1.x request line gets a minimal
 * "HTTP/1.1 505 HTTP Version Not Supported" (with Connection: close) and is
 * closed; any other bad preface is closed without an answer.
 *
 * Listening.  Shard 0 binds first and publishes its port (keyed by runtime
 * and method table) in a small process-wide table; the other shards wait
 * for it, then bind the same port with SO_REUSEPORT.  With port 0 that
 * makes one ephemeral port for all.  With a fixed port, shard 0 first
 * binds the address without SO_REUSEPORT, which fails while any socket
 * listens there: SO_REUSEPORT would let this server share the port with
 * another process of the same user, or with the listener of a process
 * that just died and whose io_uring the kernel is still tearing down (its
 * sockets outlive it by some milliseconds, more under I/O load), each
 * taking some of the connections.  While the address is in use, shard 0
 * retries every 10 ms for up to listen_retry_ns (a successor restarted
 * at once after a crash: its predecessor's sockets are about to close),
 * then fails with -EADDRINUSE.  The other shards then listen one after the
 * other, in shard order, and the last attaches the program that steers a
 * connection to a shard by its source port (steer_by_source_port).  The
 * table is the only state shared between shards here, and only at
 * start-up; the waits block the shard thread, which serves nothing yet,
 * and end early when the runtime stops.
 */
#include "net/net_int.h"

#include "core/assert.h"
#include "core/error.h"
#include "core/log.h"
#include "core/util.h"

#include <arpa/inet.h>
#include <errno.h>
#include <netdb.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <linux/filter.h>
#include <sys/socket.h>
#include <unistd.h>

#define ACCEPT_RETRY_NS (100ULL * 1000 * 1000)
#define PORT_WAIT_NS (10ULL * 1000 * 1000 * 1000)
#define LISTEN_RETRY_STEP_NS (10L * 1000 * 1000)
#define DESTROY_WAIT_NS (5ULL * 1000 * 1000 * 1000)

static const char http1_505[] =
	"HTTP/1.1 505 HTTP Version Not Supported\r\n"
	"Content-Type: text/plain\r\n"
	"Content-Length: 58\r\n"
	"Connection: close\r\n"
	"\r\n"
	"this port speaks gRPC over HTTP/2 only (prior knowledge)\r\n";
_Static_assert(sizeof("this port speaks gRPC over HTTP/2 only (prior knowledge)\r\n") - 1 == 58,
	       "Content-Length of the 505 body");

static void conn_flush(struct conn *c);
static void conn_abort(struct conn *c, int why);
static int conn_arm_timer(struct conn *c);
static void conn_timer_fn(struct rmq_timer *t);
static void conn_close_soon(struct conn *c, bool protocol_error);
static void conn_open(struct rmq_server *srv, int fd);
static void admit_pending(struct rmq_server *srv);
static int conn_resume(struct conn *c);
static void conn_pause(struct conn *c);
static void reads_update(struct rmq_server *srv);

/* ---- config ---------------------------------------------------------------- */

void rmq_net_config_default(struct rmq_net_config *cfg)
{
	*cfg = (struct rmq_net_config){
		.host = "127.0.0.1",
		.port = 9092,
		.max_connections = 1024,
		.max_streams = 100,
		.max_calls = 4096,
		.max_message_bytes = 16u << 20,
		.stream_window = 4u << 20,
		.conn_window = 32u << 20,
		.recv_buffers = 256,
		.recv_buffer_bytes = 32u << 10,
		.send_queue_bytes = 1u << 20,
		.keepalive_ns = 30ULL * 1000 * 1000 * 1000,
		.idle_timeout_ns = 120ULL * 1000 * 1000 * 1000,
		.request_bytes_max = 256u << 20,
		.preface_timeout_ns = 1000ULL * 1000 * 1000,
		.listen_retry_ns = 0,
	};
}

static int config_check(const struct rmq_net_config *cfg)
{
	if (!cfg->host || cfg->max_connections == 0 || cfg->max_streams == 0 || cfg->max_calls == 0)
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
	if (cfg->send_queue_bytes == 0)
		return -EINVAL;
	return 0;
}

/* ---- the port of an ephemeral listener, shared at start-up ------------------ */

struct port_entry {
	const void *rt, *key;
	int port;               /* > 0: the port; < 0: a shard failed */
	unsigned listened;      /* shards listening: they do so in shard order */
};

static pthread_mutex_t port_mu = PTHREAD_MUTEX_INITIALIZER;
static pthread_cond_t port_cv = PTHREAD_COND_INITIALIZER;
static struct port_entry port_tab[32];

static void port_publish(const void *rt, const void *key, int port)
{
	pthread_mutex_lock(&port_mu);
	/* A stale entry (an earlier runtime at the same address whose
	 * shard 0 failed) is replaced. */
	for (size_t i = 0; i < RMQ_ARRAY_SIZE(port_tab); i++) {
		if (port_tab[i].rt == rt && port_tab[i].key == key)
			port_tab[i] = (struct port_entry){0};
	}
	for (size_t i = 0; i < RMQ_ARRAY_SIZE(port_tab); i++) {
		if (port_tab[i].rt == NULL) {
			port_tab[i] = (struct port_entry){rt, key, port, port > 0};
			break;
		}
	}
	pthread_cond_broadcast(&port_cv);
	pthread_mutex_unlock(&port_mu);
}

/* A shard after shard 0 listens (rc 0), or failed to (rc < 0: the shards
 * after it stop waiting). */
static void port_listened(const void *rt, const void *key, int rc)
{
	pthread_mutex_lock(&port_mu);
	for (size_t i = 0; i < RMQ_ARRAY_SIZE(port_tab); i++) {
		if (port_tab[i].rt == rt && port_tab[i].key == key) {
			if (rc < 0)
				port_tab[i].port = rc;
			else
				port_tab[i].listened++;
		}
	}
	pthread_cond_broadcast(&port_cv);
	pthread_mutex_unlock(&port_mu);
}

static void port_forget(const void *rt, const void *key)
{
	pthread_mutex_lock(&port_mu);
	for (size_t i = 0; i < RMQ_ARRAY_SIZE(port_tab); i++) {
		if (port_tab[i].rt == rt && port_tab[i].key == key)
			port_tab[i] = (struct port_entry){0};
	}
	pthread_mutex_unlock(&port_mu);
}

/* Waits (bounded: extra_ns more than PORT_WAIT_NS) for shard 0's port and
 * for the shards before `turn` to listen.  Returns the port, or a negative
 * error. */
static int port_wait(struct rmq_runtime *rt, const void *key, uint64_t extra_ns, unsigned turn)
{
	uint64_t until = rmq_now_ns() + PORT_WAIT_NS + extra_ns;
	int rc = -ETIMEDOUT;

	pthread_mutex_lock(&port_mu);
	for (;;) {
		for (size_t i = 0; i < RMQ_ARRAY_SIZE(port_tab); i++) {
			if (port_tab[i].rt == rt && port_tab[i].key == key &&
			    (port_tab[i].port < 0 || port_tab[i].listened >= turn)) {
				rc = port_tab[i].port;
				goto out;
			}
		}
		if (rmq_runtime_stopping(rt)) {
			rc = -ECANCELED;
			break;
		}
		if (rmq_now_ns() >= until)
			break;
		struct timespec ts;
		clock_gettime(CLOCK_REALTIME, &ts);
		ts.tv_nsec += 50 * 1000 * 1000;
		if (ts.tv_nsec >= 1000000000L) {
			ts.tv_sec++;
			ts.tv_nsec -= 1000000000L;
		}
		pthread_cond_timedwait(&port_cv, &port_mu, &ts);
	}
out:
	pthread_mutex_unlock(&port_mu);
	return rc;
}

/* ---- the shard's flush hook: one per thread, serving its servers ----------- */


static void flush_server(struct rmq_server *srv)
{
	/* Request memory changed during the cycle (calls released,
	 * requests read, charges): stop or resume reading. */
	reads_update(srv);
	for (;;) {
		while (!rmq_list_empty(&srv->conns_dirty)) {
			struct conn *c = RMQ_CONTAINER_OF(srv->conns_dirty.next, struct conn, nc.dirty);
			rmq_list_del(&c->nc.dirty);
			conn_flush(c);
		}
		if (!srv->drain_head)
			break;
		/* on_drain may queue more output: flush again. */
		net_run_drains(srv);
	}
}

static void flush_hook(struct rmq_shard *s, void *arg)
{
	(void)s;
	flush_server(arg);
}

/* One before-wait hook per rmq_server: it sends what the cycle queued. */
static int hook_attach(struct rmq_server *srv)
{
	int rc = rmq_shard_add_hook(srv->shard, flush_hook, srv);
	if (rc == 0)
		srv->hooked = true;
	return rc;
}

static void hook_detach(struct rmq_server *srv)
{
	if (srv->hooked)
		rmq_shard_remove_hook(srv->shard, flush_hook, srv);
	srv->hooked = false;
}

/* ---- output ------------------------------------------------------------------ */

static void conn_linger(struct conn *c)
{
	/* Read to EOF even while the shard is paused: the input is dropped,
	 * and unread bytes would make the close a reset. */
	if (conn_resume(c) < 0)
		return;
	if (rmq_list_linked(&c->unready))
		rmq_list_del(&c->unready);
	c->state = CONN_LINGER;
	net_conn_set_flushable(&c->nc, false);
	if (!c->nc.recv_armed || shutdown(c->nc.fd, SHUT_WR) < 0) {
		conn_abort(c, 0);
		return;
	}
	c->close_by_ns = rmq_now_ns() + RMQ_NET_LINGER_NS;
	if (conn_arm_timer(c) < 0)
		conn_abort(c, RMQ_EFULL);
}

/*
 * Gathers what nghttp2 has to say into the output buffer and starts one
 * send when none is in flight.  Closes the connection once everything
 * queued went out and either a close was asked or nghttp2 is done
 * (GOAWAY exchanged and no stream left).
 */
static void conn_flush(struct conn *c)
{
	if (c->state != CONN_OPEN)
		return;
	if (c->preface_ok && !c->h2_dead && !c->raw) {
		int rc = net_conn_gather(&c->nc, c->h2);
		if (rc == RMQ_ETOOBIG) {
			/* Cannot happen with our frame sizes (see
			 * RMQ_NET_CTRL_RESERVE); never overrun. */
			rmq_error("net: fd %d: an nghttp2 chunk does not fit the output", c->nc.fd);
			c->h2_dead = true;
			conn_close_soon(c, false);
		} else if (rc < 0) {
			rmq_debug("net: nghttp2 send failed: %s", nghttp2_strerror(rc));
			c->h2_dead = true;
			conn_close_soon(c, true);
		}
		if (c->state != CONN_OPEN)
			return;
	}
	int rc = net_conn_send(&c->nc);
	if (rc < 0) {
		conn_abort(c, rc);
		return;
	}
	if (c->nc.send_inflight || net_conn_out_pending(&c->nc))
		return;
	if (c->closing || c->raw)
		conn_linger(c);
	else if (c->preface_ok && !c->h2_dead && !nghttp2_session_want_read(c->h2) &&
		 !nghttp2_session_want_write(c->h2))
		conn_linger(c);
}

static void conn_close_soon(struct conn *c, bool protocol_error)
{
	if (protocol_error && !c->counted_error) {
		c->counted_error = true;
		c->srv->stats.protocol_errors++;
	}
	if (c->state != CONN_OPEN || c->closing)
		return;
	c->closing = true;
	c->close_by_ns = rmq_now_ns() + RMQ_NET_LINGER_NS;
	if (rmq_list_linked(&c->unready))
		rmq_list_del(&c->unready); /* on its way out: not a victim */
	/* From now on input is dropped: reading it costs nothing.  (Never
	 * cut here, inside nghttp2 callbacks: when the re-arm fails, the
	 * linger step finds the recv unarmed and cuts it.) */
	if (c->nc.recv_paused) {
		c->srv->stats.paused_connections--;
		(void)net_conn_resume_recv(&c->nc);
	}
	/* May run inside nghttp2 callbacks: never cut here.  Without a
	 * timer, the flush's linger step fails again and cuts it. */
	(void)conn_arm_timer(c);
	net_conn_mark_dirty(&c->nc);
}

/* ---- input ----------------------------------------------------------------- */

static bool looks_http1(const uint8_t *p, size_t n)
{
	size_t i = 0;
	while (i < n && i < 8 && p[i] >= 'A' && p[i] <= 'Z')
		i++;
	if (i < 3 || i >= n || p[i] != ' ')
		return false;
	return !(i == 3 && memcmp(p, "PRI", 3) == 0);
}

static void conn_input(struct conn *c, const uint8_t *p, size_t n)
{
	c->last_rx_ns = rmq_now_ns();
	if (c->closing || c->raw || c->h2_dead)
		return; /* closing: what comes now is dropped */
	while (c->nfirst < sizeof(c->first) && c->nfirst < c->nrecv + n) {
		c->first[c->nfirst] = p[c->nfirst - c->nrecv];
		c->nfirst++;
	}
	c->nrecv += n;
	ssize_t rv = nghttp2_session_mem_recv(c->h2, p, n);
	if (rv == NGHTTP2_ERR_BAD_CLIENT_MAGIC) {
		c->h2_dead = true;
		if (looks_http1(c->first, c->nfirst)) {
			c->raw = true;
			if (!c->nc.send_inflight)
				net_conn_out_reset(&c->nc); /* nothing was sent before the preface */
			net_conn_out_append(&c->nc, http1_505, sizeof(http1_505) - 1);
		}
		rmq_debug("net: fd %d: not an HTTP/2 client preface%s", c->nc.fd,
			  c->raw ? " (HTTP/1.x: 505)" : "");
		conn_close_soon(c, true);
		return;
	}
	if (rv < 0) {
		rmq_debug("net: fd %d: HTTP/2 input failed: %s", c->nc.fd, nghttp2_strerror((int)rv));
		/* Tell the peer when nghttp2 still can (FLOODED, callback
		 * failures); otherwise the connection just closes. */
		if (nghttp2_session_terminate_session(c->h2, NGHTTP2_PROTOCOL_ERROR) != 0)
			c->h2_dead = true;
		conn_close_soon(c, true);
		return;
	}
	if (!c->preface_ok && c->nrecv >= NGHTTP2_CLIENT_MAGIC_LEN)
		c->preface_ok = true; /* nghttp2 took the magic: we may answer */
	if (!c->handshake_ok && c->peer_settings) {
		/* The preface is complete (magic and SETTINGS): from now on
		 * the idle timeout and keepalive apply, and the shard's read
		 * pause; the connection can no longer be evicted. */
		c->handshake_ok = true;
		rmq_list_del(&c->unready);
		(void)conn_arm_timer(c);
		if (c->srv->reads_paused)
			conn_pause(c);
	}
	net_conn_mark_dirty(&c->nc);
}

/* conn.c: bytes received.  Dropped unless the connection is open (a
 * lingering one reads to EOF only). */
static void conn_on_input(struct net_conn *nc, const uint8_t *p, size_t n)
{
	struct conn *c = RMQ_CONTAINER_OF(nc, struct conn, nc);
	if (c->state == CONN_OPEN)
		conn_input(c, p, n);
}

/* conn.c: EOF (the peer is gone, or done lingering), or an I/O error. */
static void conn_on_lost(struct net_conn *nc, int why)
{
	conn_abort(RMQ_CONTAINER_OF(nc, struct conn, nc), why);
}

static void conn_free(struct conn *c);

/* conn.c: cut and nothing in flight. */
static void conn_on_idle(struct net_conn *nc)
{
	conn_free(RMQ_CONTAINER_OF(nc, struct conn, nc));
}

static const struct net_conn_ops conn_ops = {
	.input = conn_on_input,
	.lost = conn_on_lost,
	.idle = conn_on_idle,
};

/* ---- timers -------------------------------------------------------------- */


/* When c is closed for silence and when it is PINGed next (UINT64_MAX:
 * never).  Neither while its reading is paused: that silence is ours. */
static void conn_deadlines(const struct conn *c, uint64_t *idle_at, uint64_t *ping_at)
{
	const struct rmq_net_config *cfg = &c->srv->cfg;

	*idle_at = *ping_at = UINT64_MAX;
	if (!c->handshake_ok && cfg->preface_timeout_ns)
		*idle_at = c->opened_ns + cfg->preface_timeout_ns;
	if (c->nc.recv_paused)
		return; /* never before the handshake */
	if (cfg->idle_timeout_ns && c->last_rx_ns + cfg->idle_timeout_ns < *idle_at)
		*idle_at = c->last_rx_ns + cfg->idle_timeout_ns;
	if (cfg->keepalive_ns && c->preface_ok && !c->h2_dead) {
		uint64_t base = c->last_rx_ns > c->last_ping_ns ? c->last_rx_ns : c->last_ping_ns;
		*ping_at = base + cfg->keepalive_ns;
	}
}

/* Returns 0, or RMQ_EFULL when the shard's timer heap is full (the caller
 * cuts the connection: without a timer it could never be reaped). */
static int conn_arm_timer(struct conn *c)
{
	uint64_t d, ping_at;

	if (c->state == CONN_LINGER || c->closing) {
		d = c->close_by_ns;
	} else {
		conn_deadlines(c, &d, &ping_at);
		if (ping_at < d)
			d = ping_at;
	}
	if (d == UINT64_MAX) {
		rmq_timer_cancel(c->srv->shard, &c->timer);
		return 0;
	}
	int rc = rmq_timer_start(c->srv->shard, &c->timer, d, conn_timer_fn);
	if (rc < 0)
		rmq_warn("net: timer heap full, closing a connection");
	return rc;
}

static void conn_timer_fn(struct rmq_timer *t)
{
	struct conn *c = RMQ_CONTAINER_OF(t, struct conn, timer);
	uint64_t now = rmq_now_ns();
	uint64_t idle_at, ping_at;

	if (c->state == CONN_LINGER || (c->state == CONN_OPEN && c->closing)) {
		if (now >= c->close_by_ns || conn_arm_timer(c) < 0)
			conn_abort(c, -ETIMEDOUT);
		return;
	}
	if (c->state != CONN_OPEN)
		return;
	conn_deadlines(c, &idle_at, &ping_at);
	if (now >= idle_at) {
		if (!c->handshake_ok) {
			c->srv->stats.preface_timeouts++;
			rmq_debug("net: fd %d: no client preface within %llu ms, closing", c->nc.fd,
				  (unsigned long long)((now - c->opened_ns) / 1000000));
		} else {
			rmq_debug("net: fd %d idle for %llu ms, closing", c->nc.fd,
				  (unsigned long long)((now - c->last_rx_ns) / 1000000));
		}
		if (c->preface_ok && !c->h2_dead)
			nghttp2_session_terminate_session(c->h2, NGHTTP2_NO_ERROR);
		conn_close_soon(c, false);
		return;
	}
	if (now >= ping_at) {
		uint8_t opaque[8] = "rmq-ka\0";
		if (nghttp2_submit_ping(c->h2, NGHTTP2_FLAG_NONE, opaque) == 0)
			net_conn_mark_dirty(&c->nc);
		c->last_ping_ns = now;
	}
	if (conn_arm_timer(c) < 0)
		conn_abort(c, RMQ_EFULL);
}

/* ---- read backpressure ------------------------------------------------------- */

/* Stops c reading (server.h, "Read backpressure").  Only connections past
 * their handshake, open and not closing: before it a connection holds no
 * request memory (and its handshake deadline must still run), and a
 * closing one drops its input anyway. */
static void conn_pause(struct conn *c)
{
	if (c->state != CONN_OPEN || c->closing || !c->handshake_ok || c->nc.recv_paused)
		return;
	net_conn_pause_recv(&c->nc);
	c->srv->stats.paused_connections++;
	(void)conn_arm_timer(c); /* no idle deadline while paused */
}

/* Returns 0, or the error that cut c. */
static int conn_resume(struct conn *c)
{
	if (!c->nc.recv_paused || c->nc.cut)
		return 0;
	c->srv->stats.paused_connections--;
	int rc = net_conn_resume_recv(&c->nc);
	if (rc < 0) {
		conn_abort(c, rc);
		return rc;
	}
	c->last_rx_ns = rmq_now_ns(); /* the silence was ours */
	if (conn_arm_timer(c) < 0) {
		conn_abort(c, RMQ_EFULL);
		return RMQ_EFULL;
	}
	return 0;
}

/*
 * Decides whether the shard reads (the application's reasons, and the
 * request memory against request_bytes_max with a low-water mark at three
 * quarters), and applies a change to every live connection: O(connections)
 * per change, which the hysteresis keeps rare.
 */
static void reads_update(struct rmq_server *srv)
{
	const uint64_t max = srv->cfg.request_bytes_max;

	if (max) {
		const uint64_t low = max - max / 4;
		const uint64_t held = srv->stats.request_bytes;
		/* What the application will release without more input; the
		 * rest is requests still arriving, which only reading ends. */
		const uint64_t app = held - srv->req_input_bytes;
		if (!(srv->pause_mask & NET_PAUSE_BUDGET)) {
			if (held > max && app > low)
				srv->pause_mask |= NET_PAUSE_BUDGET;
		} else if (held <= low || app <= low) {
			srv->pause_mask &= ~NET_PAUSE_BUDGET;
		}
	}
	bool paused = srv->pause_mask != 0;
	if (paused == srv->reads_paused)
		return;
	srv->reads_paused = paused;
	if (paused)
		srv->stats.pauses++;
	rmq_debug("net: shard %u %s reading (request memory %llu bytes, reasons 0x%x)",
		  rmq_shard_id(srv->shard), paused ? "stops" : "resumes",
		  (unsigned long long)srv->stats.request_bytes, srv->pause_mask);
	struct rmq_list *l, *next;
	for (l = srv->conns_live.next; l != &srv->conns_live; l = next) {
		next = l->next; /* a failed resume frees its connection */
		struct conn *c = RMQ_CONTAINER_OF(l, struct conn, link);
		if (paused)
			conn_pause(c);
		else if (!c->mutes)
			(void)conn_resume(c);
	}
}

void net_conn_mute(struct conn *c, bool mute)
{
	if (mute) {
		if (c->mutes++ == 0)
			conn_pause(c);
	} else if (c->mutes > 0 && --c->mutes == 0 && !c->srv->reads_paused) {
		(void)conn_resume(c);
	}
}

void rmq_server_pause_reads(struct rmq_server *srv, uint32_t reason)
{
	srv->pause_mask |= reason & RMQ_SERVER_PAUSE_APP_MASK;
	reads_update(srv);
}

void rmq_server_resume_reads(struct rmq_server *srv, uint32_t reason)
{
	srv->pause_mask &= ~(reason & RMQ_SERVER_PAUSE_APP_MASK);
	reads_update(srv);
}

/* ---- connection lifecycle ------------------------------------------------------ */

static void conn_free(struct conn *c)
{
	struct rmq_server *srv = c->srv;

	RMQ_ASSERT(rmq_list_empty(&c->calls));
	rmq_timer_cancel(srv->shard, &c->timer);
	net_conn_close(&c->nc); /* references of bytes never sent go back */
	if (c->h2) {
		nghttp2_session_del(c->h2);
		c->h2 = NULL;
	}
	c->state = CONN_FREE;
	rmq_list_del(&c->link);
	rmq_list_add_tail(&srv->conns_free, &c->link);
	srv->stats.connections--;
	srv->stats.closed++;
	admit_pending(srv);
}

/*
 * Cuts the connection: cancels its calls, shuts the socket down (which
 * wakes the pending recv and send), cancels the ops, and frees the
 * connection once neither op is in flight.  Called again from the ops'
 * completions until then.
 */
static void conn_abort(struct conn *c, int why)
{
	struct rmq_server *srv = c->srv;

	if (c->state == CONN_FREE || c->state == CONN_CLOSING)
		return; /* conn.c calls conn_on_idle once the ops are back */
	if (why < 0 && why != -ECONNRESET && why != -EPIPE)
		rmq_debug("net: fd %d closed: %s", c->nc.fd, rmq_strerror(why));
	c->state = CONN_CLOSING;
	if (rmq_list_linked(&c->unready))
		rmq_list_del(&c->unready);
	if (c->nc.recv_paused)
		srv->stats.paused_connections--;
	rmq_timer_cancel(srv->shard, &c->timer);
	while (!rmq_list_empty(&c->calls)) {
		struct rmq_call *call = RMQ_CONTAINER_OF(c->calls.next, struct rmq_call, link);
		net_call_detach(call);
	}
	net_conn_cut(&c->nc); /* frees it now when no op is in flight */
}

/*
 * The pool is full: cuts the oldest connection still in its handshake and
 * queues fd for its slot (conn_free admits it).  When the queue is full,
 * or no open connection is in its handshake (their slots are all being
 * freed for queued sockets already), the oldest queued socket (never
 * read, so in its handshake too) is closed to make room in the queue.
 * Returns false when there is neither (the caller refuses fd).
 */
static bool evict_for(struct rmq_server *srv, int fd)
{
	if (srv->npending < NET_PENDING_MAX && !rmq_list_empty(&srv->conns_unready)) {
		srv->pending[(srv->pending_head + srv->npending++) % NET_PENDING_MAX] = fd;
		struct conn *victim = RMQ_CONTAINER_OF(srv->conns_unready.next, struct conn, unready);
		srv->stats.evicted++;
		rmq_debug("net: fd %d: pool full, closing it (no client preface after %llu ms)",
			  victim->nc.fd,
			  (unsigned long long)((rmq_now_ns() - victim->opened_ns) / 1000000));
		conn_abort(victim, RMQ_EFULL); /* may free it, and admit fd, at once */
		return true;
	}
	if (srv->npending == 0)
		return false;
	close(srv->pending[srv->pending_head]);
	srv->pending_head = (srv->pending_head + 1) % NET_PENDING_MAX;
	srv->npending--;
	srv->stats.evicted++;
	srv->pending[(srv->pending_head + srv->npending++) % NET_PENDING_MAX] = fd;
	return true;
}

/* Opens the queued sockets while slots are free (refuses them once the
 * server is shutting down). */
static void admit_pending(struct rmq_server *srv)
{
	while (srv->npending > 0 && (srv->shutting_down || !rmq_list_empty(&srv->conns_free))) {
		int fd = srv->pending[srv->pending_head];
		srv->pending_head = (srv->pending_head + 1) % NET_PENDING_MAX;
		srv->npending--;
		if (srv->shutting_down) {
			srv->stats.refused++;
			close(fd);
		} else {
			conn_open(srv, fd);
		}
	}
}

static void conn_open(struct rmq_server *srv, int fd)
{
	int one = 1;
	int rc;

	if (rmq_list_empty(&srv->conns_free)) {
		if (evict_for(srv, fd))
			return;
		srv->stats.refused++;
		close(fd);
		return;
	}
	struct conn *c = RMQ_CONTAINER_OF(srv->conns_free.next, struct conn, link);
	setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
	net_conn_open(&c->nc, fd);
	if (srv->cfg.tls && net_tls_start(&c->nc, srv->cfg.tls, NULL) < 0) {
		c->state = CONN_FREE;
		net_conn_close(&c->nc); /* closes fd */
		srv->stats.refused++;
		return;
	}
	c->state = CONN_OPEN;
	c->preface_ok = c->h2_dead = c->raw = c->closing = c->counted_error = false;
	c->handshake_ok = c->peer_settings = false;
	c->mutes = 0;
	c->nfirst = 0;
	c->nrecv = 0;
	c->opened_ns = rmq_now_ns();
	c->last_rx_ns = c->opened_ns;
	c->last_ping_ns = 0;
	c->hdr_bytes = 0;
	rc = net_h2_session_new(c);
	if (rc < 0)
		goto err_refuse;
	rmq_list_del(&c->link);
	rmq_list_add_tail(&srv->conns_live, &c->link);
	rmq_list_add_tail(&srv->conns_unready, &c->unready);
	srv->stats.accepted++;
	srv->stats.connections++;
	net_conn_set_flushable(&c->nc, true);
	rc = net_conn_arm_recv(&c->nc);
	if (rc == 0)
		rc = conn_arm_timer(c);
	if (rc < 0)
		conn_abort(c, rc);
	return;

err_refuse:
	c->state = CONN_FREE;
	net_conn_close(&c->nc); /* closes fd */
	srv->stats.refused++;
}

/* ---- listener ---------------------------------------------------------------- */

static void accept_done(struct rmq_io_op *op, int res, unsigned flags);

static int arm_accept(struct rmq_server *srv)
{
	struct io_uring_sqe *sqe = rmq_io_sqe(srv->io, &srv->accept_op);
	if (!sqe)
		return -EBUSY;
	io_uring_prep_multishot_accept(sqe, srv->listen_fd, NULL, NULL, SOCK_CLOEXEC);
	srv->accept_armed = true;
	return 0;
}

static void close_listener(struct rmq_server *srv)
{
	if (srv->listen_fd >= 0) {
		close(srv->listen_fd);
		srv->listen_fd = -1;
	}
}

static void accept_retry_fn(struct rmq_timer *t)
{
	struct rmq_server *srv = RMQ_CONTAINER_OF(t, struct rmq_server, accept_retry);
	if (srv->shutting_down || srv->accept_armed)
		return;
	if (arm_accept(srv) < 0 &&
	    rmq_timer_start(srv->shard, &srv->accept_retry, rmq_now_ns() + ACCEPT_RETRY_NS,
			    accept_retry_fn) < 0)
		rmq_error("net: cannot re-arm accept; the listener on shard %u is dead",
			  rmq_shard_id(srv->shard));
}

static void accept_done(struct rmq_io_op *op, int res, unsigned flags)
{
	struct rmq_server *srv = RMQ_CONTAINER_OF(op, struct rmq_server, accept_op);
	bool backoff = false;

	if (!(flags & IORING_CQE_F_MORE))
		srv->accept_armed = false;
	if (res >= 0) {
		if (srv->shutting_down) {
			srv->stats.refused++;
			close(res);
		} else {
			conn_open(srv, res);
		}
	} else if (res != -ECANCELED && res != -EINTR && res != -EAGAIN &&
		   res != -ECONNABORTED) {
		/* -EMFILE, -ENFILE, -ENOMEM, ...: wait a little rather than
		 * spin on a failing accept. */
		rmq_warn("net: accept failed: %s", rmq_strerror(res));
		backoff = true;
	}
	if (srv->accept_armed)
		return;
	if (srv->shutting_down) {
		close_listener(srv);
		return;
	}
	if (backoff || arm_accept(srv) < 0) {
		if (rmq_timer_start(srv->shard, &srv->accept_retry, rmq_now_ns() + ACCEPT_RETRY_NS,
				    accept_retry_fn) < 0)
			rmq_error("net: cannot re-arm accept on shard %u", rmq_shard_id(srv->shard));
	}
}

/*
 * Hands each new connection of the reuseport group fd belongs to to
 * listener ((TCP source port / 2) % n): a client that wants shard k of a
 * node of n shards binds a source port p with (p / 2) % n == k (client.h:
 * source_port_mod), and lands there without another thread's help
 * (docs/replication.md, "Landing on the right shard").  An ordinary
 * client's port spreads its connections over the shards as the kernel's
 * hash did: halved, because Linux's connect() picks even ports only (with
 * port % 2, every ordinary connection went to shard 0 of a node of 2).
 * A reuseport program's packet data starts after the TCP header, so the
 * port is read relative to the network header: IPv6 (also on an IPv6
 * socket: +40), or IPv4 (+4 * IHL, IP options included; also IPv4-mapped
 * on an IPv6 socket).  One program serves the whole group; it is attached
 * once every listener has joined, in shard order (a socket joins the
 * group at listen()).  Failing, the kernel's hash stays: logged.
 */
static void steer_by_source_port(int fd, unsigned n)
{
	struct sock_filter code[] = {
		BPF_STMT(BPF_LD | BPF_B | BPF_ABS, (uint32_t)SKF_NET_OFF), /* version, IHL */
		BPF_STMT(BPF_ALU | BPF_RSH | BPF_K, 4),
		BPF_JUMP(BPF_JMP | BPF_JEQ | BPF_K, 6, 0, 2),
		BPF_STMT(BPF_LD | BPF_H | BPF_ABS, (uint32_t)SKF_NET_OFF + 40), /* IPv6 */
		BPF_JUMP(BPF_JMP | BPF_JA, 2, 0, 0),
		BPF_STMT(BPF_LDX | BPF_B | BPF_MSH, (uint32_t)SKF_NET_OFF),     /* X = 4 * IHL */
		BPF_STMT(BPF_LD | BPF_H | BPF_IND, (uint32_t)SKF_NET_OFF),     /* IPv4 */
		BPF_STMT(BPF_ALU | BPF_RSH | BPF_K, 1),
		BPF_STMT(BPF_ALU | BPF_MOD | BPF_K, n),
		BPF_STMT(BPF_RET | BPF_A, 0),
	};
	struct sock_fprog prog = {.len = RMQ_ARRAY_SIZE(code), .filter = code};
	if (setsockopt(fd, SOL_SOCKET, SO_ATTACH_REUSEPORT_CBPF, &prog, sizeof(prog)) < 0)
		rmq_warn("net: connections cannot be steered to shards by source port (%s): "
			 "replication between brokers crosses shards",
			 rmq_strerror(-errno));
}

/*
 * Binds host:port.  shared: with SO_REUSEPORT, and listens (a shard's
 * listener).  Not shared: a probe, bound without SO_REUSEPORT, which fails
 * with -EADDRINUSE while any socket listens there (TIME_WAIT connections
 * do not count: SO_REUSEADDR).  Returns the fd and the bound port, or a
 * negated errno.
 */
int net_bind(const char *host, uint16_t port, bool shared, uint16_t *bound)
{
	struct addrinfo hints = {
		.ai_family = AF_UNSPEC,
		.ai_socktype = SOCK_STREAM,
		.ai_flags = AI_PASSIVE | AI_NUMERICSERV,
	};
	struct addrinfo *ai = NULL;
	char service[8];
	int one = 1;
	int fd = -1;
	int rc;

	snprintf(service, sizeof(service), "%u", (unsigned)port);
	rc = getaddrinfo(host[0] ? host : NULL, service, &hints, &ai);
	if (rc != 0) {
		rmq_error("net: cannot resolve listen address %s: %s", host, gai_strerror(rc));
		return -EADDRNOTAVAIL;
	}
	fd = socket(ai->ai_family, SOCK_STREAM | SOCK_CLOEXEC, 0);
	if (fd < 0) {
		rc = -errno;
		goto err_ai;
	}
	if (setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof(one)) < 0 ||
	    (shared && setsockopt(fd, SOL_SOCKET, SO_REUSEPORT, &one, sizeof(one)) < 0)) {
		rc = -errno;
		goto err_fd;
	}
	if (bind(fd, ai->ai_addr, ai->ai_addrlen) < 0 || (shared && listen(fd, 1024) < 0)) {
		rc = -errno;
		goto err_fd;
	}
	struct sockaddr_storage ss;
	socklen_t sl = sizeof(ss);
	if (getsockname(fd, (struct sockaddr *)&ss, &sl) < 0) {
		rc = -errno;
		goto err_fd;
	}
	*bound = ntohs(ss.ss_family == AF_INET6 ? ((struct sockaddr_in6 *)&ss)->sin6_port
						: ((struct sockaddr_in *)&ss)->sin_port);
	freeaddrinfo(ai);
	return fd;

err_fd:
	close(fd);
err_ai:
	freeaddrinfo(ai);
	return rc;
}

/*
 * Shard 0 with a fixed port: waits until no socket listens on the address
 * (see the top of the file), for at most cfg->listen_retry_ns.  Returns 0,
 * -EADDRINUSE (logged, in the words an operator needs), -ECANCELED when the
 * runtime stops meanwhile, or another negated errno from the probe.
 */
static int claim_address(struct rmq_runtime *rt, const struct rmq_net_config *cfg)
{
	const uint64_t start = rmq_now_ns();
	bool waited = false;

	for (;;) {
		uint16_t bound;
		int fd = net_bind(cfg->host, cfg->port, false, &bound);
		uint64_t now = rmq_now_ns();
		if (fd >= 0) {
			close(fd);
			if (waited)
				rmq_info("net: %s:%u was released after %llu ms", cfg->host,
					 (unsigned)cfg->port,
					 (unsigned long long)((now - start) / 1000000));
			return 0;
		}
		if (fd != -EADDRINUSE)
			return fd;
		if (rmq_runtime_stopping(rt))
			return -ECANCELED;
		if (now - start >= cfg->listen_retry_ns) {
			if (waited)
				rmq_error("net: cannot listen on %s:%u: the port is in use by another "
					  "process (still after %llu ms)",
					  cfg->host, (unsigned)cfg->port,
					  (unsigned long long)((now - start) / 1000000));
			else
				rmq_error("net: cannot listen on %s:%u: the port is in use by another "
					  "process", cfg->host, (unsigned)cfg->port);
			return -EADDRINUSE;
		}
		if (!waited)
			rmq_warn("net: %s:%u is in use; retrying for up to %llu ms (the sockets of "
				 "a process that just died close late)", cfg->host,
				 (unsigned)cfg->port,
				 (unsigned long long)(cfg->listen_retry_ns / 1000000));
		waited = true;
		struct timespec ts = {0, LISTEN_RETRY_STEP_NS};
		nanosleep(&ts, NULL);
	}
}

/* ---- start / stop ----------------------------------------------------------------- */

static int method_cmp(const void *a, const void *b)
{
	const struct rmq_grpc_method *const *x = a, *const *y = b;
	return strcmp((*x)->path, (*y)->path);
}

static void server_free(struct rmq_server *srv)
{
	hook_detach(srv);
	if (srv->port_owner)
		port_forget(rmq_shard_runtime(srv->shard), srv->port_key);
	rmq_timer_cancel(srv->shard, &srv->accept_retry);
	close_listener(srv);
	while (srv->npending > 0) {
		close(srv->pending[srv->pending_head]);
		srv->pending_head = (srv->pending_head + 1) % NET_PENDING_MAX;
		srv->npending--;
	}
	net_bufring_teardown(&srv->rx, srv->io);
	net_pipes_destroy(&srv->pipes);
	net_calls_fini(srv);
	net_h2_fini(srv);
	if (srv->sendbufs)
		munmap(srv->sendbufs, srv->sendbufs_bytes);
	if (srv->pieces)
		munmap(srv->pieces, srv->pieces_bytes);
	if (srv->iovs)
		munmap(srv->iovs, srv->iovs_bytes);
	free(srv->conns);
	free(srv->methods);
	free(srv);
}

int rmq_server_start(struct rmq_shard *s, const struct rmq_net_config *cfg,
		     const struct rmq_grpc_method *methods, size_t nmethods, void *app,
		     struct rmq_server **out)
{
	struct rmq_runtime *rt = rmq_shard_runtime(s);
	bool publisher = rmq_shard_id(s) == 0;
	uint16_t port = cfg->port;
	int rc;

	rc = config_check(cfg);
	if (rc < 0)
		goto err_publish;
	if (!publisher) {
		rc = port_wait(rt, methods, cfg->listen_retry_ns, rmq_shard_id(s));
		if (rc < 0)
			return rc;
		port = (uint16_t)rc;
	} else if (cfg->port != 0) {
		rc = claim_address(rt, cfg);
		if (rc < 0)
			goto err_publish;
	}
	struct rmq_server *srv = calloc(1, sizeof(*srv));
	if (!srv) {
		rc = -ENOMEM;
		goto err_publish;
	}
	srv->shard = s;
	srv->io = rmq_shard_io(s);
	srv->cfg = *cfg;
	srv->pipes.spliced_bytes = &srv->stats.spliced_bytes;
	srv->app = app;
	srv->stats.request_bytes_max = cfg->request_bytes_max;
	srv->listen_fd = -1;
	srv->rx.bgid = -1;
	srv->accept_op.cb = accept_done;
	rmq_list_init(&srv->conns_free);
	rmq_list_init(&srv->conns_live);
	rmq_list_init(&srv->conns_dirty);
	rmq_list_init(&srv->conns_unready);
	rmq_list_init(&srv->calls_free);

	rc = -ENOMEM;
	srv->methods = calloc(nmethods ? nmethods : 1, sizeof(*srv->methods));
	if (!srv->methods)
		goto err_srv;
	for (size_t i = 0; i < nmethods; i++)
		srv->methods[i] = &methods[i];
	qsort(srv->methods, nmethods, sizeof(*srv->methods), method_cmp);
	srv->nmethods = nmethods;

	srv->conns = calloc(cfg->max_connections, sizeof(*srv->conns));
	if (!srv->conns)
		goto err_srv;
	srv->sendbufs_bytes = (size_t)cfg->max_connections * RMQ_NET_SENDBUF_BYTES;
	srv->sendbufs = mmap(NULL, srv->sendbufs_bytes, PROT_READ | PROT_WRITE,
			     MAP_PRIVATE | MAP_ANONYMOUS | MAP_NORESERVE, -1, 0);
	if (srv->sendbufs == MAP_FAILED) {
		srv->sendbufs = NULL;
		goto err_srv;
	}
	/* The output chains, committed as connections use them, like the
	 * send buffers. */
	srv->pieces_bytes = (size_t)cfg->max_connections * RMQ_NET_OUT_PIECES * sizeof(*srv->pieces);
	srv->pieces = mmap(NULL, srv->pieces_bytes, PROT_READ | PROT_WRITE,
			   MAP_PRIVATE | MAP_ANONYMOUS | MAP_NORESERVE, -1, 0);
	if (srv->pieces == MAP_FAILED) {
		srv->pieces = NULL;
		goto err_srv;
	}
	srv->iovs_bytes = (size_t)cfg->max_connections * RMQ_NET_OUT_PIECES * sizeof(*srv->iovs);
	srv->iovs = mmap(NULL, srv->iovs_bytes, PROT_READ | PROT_WRITE,
			 MAP_PRIVATE | MAP_ANONYMOUS | MAP_NORESERVE, -1, 0);
	if (srv->iovs == MAP_FAILED) {
		srv->iovs = NULL;
		goto err_srv;
	}
	for (uint32_t i = 0; i < cfg->max_connections; i++) {
		struct conn *c = &srv->conns[i];
		net_conn_init(&c->nc, &(struct net_conn_init_args){
			.ops = &conn_ops,
			.io = srv->io,
			.rx = &srv->rx,
			.dirty_list = &srv->conns_dirty,
			.rx_bytes = &srv->stats.bytes_received,
			.tx_bytes = &srv->stats.bytes_sent,
			.out = srv->sendbufs + (size_t)i * RMQ_NET_SENDBUF_BYTES,
			.pieces = srv->pieces + (size_t)i * RMQ_NET_OUT_PIECES,
			.iov = srv->iovs + (size_t)i * RMQ_NET_OUT_PIECES,
			.pipes = cfg->splice ? &srv->pipes : NULL,
		});
		c->srv = srv;
		rmq_list_init(&c->calls);
		rmq_list_init(&c->unready);
		rmq_list_add_tail(&srv->conns_free, &c->link);
	}
	rc = net_calls_init(srv);
	if (rc < 0)
		goto err_srv;
	rc = net_h2_init(srv);
	if (rc < 0)
		goto err_srv;
	rc = net_bufring_setup(&srv->rx, srv->io, cfg->recv_buffers, cfg->recv_buffer_bytes);
	if (rc < 0)
		goto err_srv;
	rc = net_bind(cfg->host, port, true, &srv->port);
	if (rc < 0) {
		rmq_error("net: cannot listen on %s:%u: %s", cfg->host, (unsigned)port,
			  rmq_strerror(rc));
		goto err_srv;
	}
	srv->listen_fd = rc;
	if (!publisher)
		port_listened(rt, methods, 0);
	/* Every shard listens now, in shard order: listener i of the group
	 * is shard i, which the program that picks one needs. */
	if (rmq_shard_id(s) + 1 == rmq_shard_count(s) && rmq_shard_count(s) > 1)
		steer_by_source_port(srv->listen_fd, rmq_shard_count(s));
	rc = hook_attach(srv);
	if (rc < 0)
		goto err_srv;
	rc = arm_accept(srv);
	if (rc < 0)
		goto err_srv;
	if (publisher) {
		port_publish(rt, methods, srv->port);
		srv->port_owner = true;
		srv->port_key = methods;
	}
	rmq_debug("net: shard %u listening on %s:%u", rmq_shard_id(s), cfg->host,
		  (unsigned)srv->port);
	*out = srv;
	return 0;

err_srv:
	if (srv->accept_armed) {
		/* Cannot happen after a successful arm; kept for clarity. */
		srv->accept_armed = false;
	}
	server_free(srv);
err_publish:
	if (publisher)
		port_publish(rt, methods, rc);
	else
		port_listened(rt, methods, rc);
	return rc;
}

uint16_t rmq_server_port(const struct rmq_server *srv)
{
	return srv->port;
}

const struct rmq_server_stats *rmq_server_stats(const struct rmq_server *srv)
{
	return &srv->stats;
}

void rmq_server_shutdown(struct rmq_server *srv)
{
	if (srv->shutting_down)
		return;
	srv->shutting_down = true;
	if (srv->accept_armed) {
		struct io_uring_sqe *sqe = rmq_io_sqe(srv->io, NULL);
		if (sqe)
			io_uring_prep_cancel(sqe, &srv->accept_op, 0);
		/* the listener closes when the accept's last CQE arrives */
	} else {
		rmq_timer_cancel(srv->shard, &srv->accept_retry);
		close_listener(srv);
	}
	admit_pending(srv); /* refuses the sockets waiting for a slot */
	struct rmq_list *l, *next;
	for (l = srv->conns_live.next; l != &srv->conns_live; l = next) {
		next = l->next;
		struct conn *c = RMQ_CONTAINER_OF(l, struct conn, link);
		if (c->state != CONN_OPEN)
			continue;
		if (!c->preface_ok || c->h2_dead) {
			conn_close_soon(c, false);
			continue;
		}
		/* Streams up to the last one we saw finish; later ones are
		 * refused and the client retries them elsewhere. */
		nghttp2_submit_goaway(c->h2, NGHTTP2_FLAG_NONE,
				      nghttp2_session_get_last_proc_stream_id(c->h2),
				      NGHTTP2_NO_ERROR, NULL, 0);
		net_conn_mark_dirty(&c->nc);
	}
}

bool rmq_server_drained(struct rmq_server *srv, bool force)
{
	rmq_server_shutdown(srv);
	if (force) {
		struct rmq_list *l, *next;
		for (l = srv->conns_live.next; l != &srv->conns_live; l = next) {
			next = l->next;
			conn_abort(RMQ_CONTAINER_OF(l, struct conn, link), RMQ_ECLOSED);
		}
	}
	return !srv->accept_armed && srv->listen_fd < 0 && rmq_list_empty(&srv->conns_live) &&
	       srv->stats.calls == 0;
}

void rmq_server_destroy(struct rmq_server *srv)
{
	if (!srv)
		return;
	uint64_t until = rmq_now_ns() + DESTROY_WAIT_NS;
	while (!rmq_server_drained(srv, true)) {
		if (rmq_now_ns() >= until) {
			/* The kernel may still write into our buffers, or the
			 * app still holds calls: leak rather than corrupt. */
			rmq_error("net: server on shard %u not drained (%llu calls held); leaking it",
				  rmq_shard_id(srv->shard), (unsigned long long)srv->stats.calls);
			hook_detach(srv);
			return;
		}
		rmq_io_wait(srv->io, 10 * 1000 * 1000);
	}
	server_free(srv);
}
