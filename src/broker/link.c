/* SPDX-License-Identifier: Apache-2.0 */
/* link.c - kept connections to other nodes (link.h). */
#include "broker/link.h"

#include "core/error.h"
#include "core/log.h"
#include "core/util.h"

#include <errno.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define ADDR_MAX 300
/* Addresses a link keeps a client for: the controller's voters (a leader
 * moves among them), so that asking another never tears down the calls in
 * flight to the one before.  Beyond them the oldest is replaced. */
#define TARGETS_MAX 9

struct target {
	struct rmq_link *l;
	char addr[ADDR_MAX];
	struct rmq_client *cl;
	struct rmq_client_conn *conn;
	bool connecting, logged_down;
	uint64_t next_try_ns;
	uint64_t used_ns;
};

struct rmq_link {
	struct rmq_shard *s;
	char what[48];
	struct rmq_tls_ctx *tls;
	const char *authz;
	uint32_t calls_max, send_queue_max, stream_window;
	size_t n;
	struct target t[TARGETS_MAX];
};

struct rmq_link *rmq_link_new(struct rmq_shard *s, const char *what, struct rmq_tls_ctx *tls,
			      const char *authz, uint32_t calls_max, uint32_t send_queue_max,
			      uint32_t stream_window)
{
	struct rmq_link *l = calloc(1, sizeof(*l));
	if (l) {
		l->s = s;
		l->tls = tls;
		l->authz = authz;
		snprintf(l->what, sizeof(l->what), "%s", what);
		l->calls_max = calls_max;
		l->send_queue_max = send_queue_max;
		l->stream_window = stream_window;
	}
	return l;
}

static void drop(struct target *t)
{
	if (t->cl)
		rmq_client_destroy(t->cl); /* calls end (CANCELLED) */
	t->cl = NULL;
	t->conn = NULL;
	t->connecting = false;
}

void rmq_link_free(struct rmq_link *l)
{
	if (!l)
		return;
	for (size_t i = 0; i < l->n; i++)
		drop(&l->t[i]);
	free(l);
}

static void on_connect(struct rmq_client_conn *cc, void *arg, int res)
{
	struct target *t = arg;
	(void)cc;
	t->connecting = false;
	if (res < 0) {
		t->conn = NULL;
		t->next_try_ns = rmq_now_ns() + RMQ_LINK_RETRY_NS;
		if (!t->logged_down)
			rmq_info("%s: cannot reach %s: %s (retrying)", t->l->what, t->addr,
				 rmq_strerror(res));
		t->logged_down = true;
		return;
	}
	if (t->logged_down)
		rmq_info("%s: %s is reachable", t->l->what, t->addr);
	t->logged_down = false;
}

static void on_close(struct rmq_client_conn *cc, void *arg, int why)
{
	struct target *t = arg;
	(void)cc;
	(void)why;
	t->conn = NULL;
	t->next_try_ns = rmq_now_ns() + RMQ_LINK_RETRY_NS;
}

static const struct rmq_client_conn_ops conn_ops = {.on_connect = on_connect, .on_close = on_close};

/* The target of addr with its client, made when new (replacing the least
 * recently used one when every slot is taken).  NULL: addr is not
 * host:port, or no client could be made. */
static struct target *target_for(struct rmq_link *l, const char *addr)
{
	struct target *t = NULL;
	for (size_t i = 0; i < l->n && !t; i++)
		if (strcmp(l->t[i].addr, addr) == 0)
			t = &l->t[i];
	if (!t) {
		const char *colon = strrchr(addr, ':');
		size_t hn = colon ? (size_t)(colon - addr) : 0;
		int port = colon ? atoi(colon + 1) : 0;
		if (!colon || hn == 0 || hn >= ADDR_MAX || strlen(addr) >= ADDR_MAX || port <= 0 ||
		    port > 65535)
			return NULL;
		if (l->n < TARGETS_MAX) {
			t = &l->t[l->n++];
		} else {
			t = &l->t[0];
			for (size_t i = 1; i < l->n; i++)
				if (l->t[i].used_ns < t->used_ns)
					t = &l->t[i];
			drop(t);
		}
		*t = (struct target){.l = l};
		snprintf(t->addr, sizeof(t->addr), "%s", addr);
	}
	t->used_ns = rmq_now_ns();
	if (t->cl)
		return t;
	char host[ADDR_MAX];
	const char *colon = strrchr(t->addr, ':');
	size_t hn = (size_t)(colon - t->addr);
	if (t->addr[0] == '[' && hn >= 2 && t->addr[hn - 1] == ']') { /* [v6]:port */
		memcpy(host, t->addr + 1, hn - 2);
		host[hn - 2] = '\0';
	} else {
		memcpy(host, t->addr, hn);
		host[hn] = '\0';
	}
	struct rmq_client_config cfg;
	rmq_client_config_default(&cfg);
	cfg.host = host;
	cfg.port = (uint16_t)atoi(colon + 1);
	cfg.tls = l->tls;
	cfg.connections_max = 2;
	cfg.calls_max = l->calls_max ? l->calls_max : 64;
	if (l->send_queue_max)
		cfg.send_queue_max = l->send_queue_max;
	if (l->stream_window) {
		cfg.stream_window = l->stream_window;
		cfg.conn_window = 4 * l->stream_window;
	}
	cfg.recv_buffers = 16;
	cfg.connect_timeout_ns = 1000ULL * 1000 * 1000;
	if (rmq_client_create(l->s, &cfg, &t->cl) < 0) {
		t->cl = NULL;
		return NULL;
	}
	(void)rmq_client_set_authorization(t->cl, l->authz); /* bounded by the caller */
	t->next_try_ns = 0;
	return t;
}

struct rmq_client_conn *rmq_link_conn(struct rmq_link *l, const char *addr)
{
	struct target *t = target_for(l, addr);
	if (!t)
		return NULL;
	if (t->conn && rmq_client_conn_ok(t->conn) && !t->connecting)
		return t->conn;
	if (!t->connecting && rmq_now_ns() >= t->next_try_ns) {
		t->conn = NULL;
		if (rmq_client_connect(t->cl, &conn_ops, t, &t->conn) == 0)
			t->connecting = true;
		else
			t->next_try_ns = rmq_now_ns() + RMQ_LINK_RETRY_NS;
	}
	return NULL;
}

int rmq_link_unary(struct rmq_link *l, const char *addr, const char *path, const void *req,
		   size_t len, uint64_t timeout_ns, rmq_client_unary_cb done, void *arg)
{
	if (!target_for(l, addr))
		return -EINVAL;
	struct rmq_client_conn *cc = rmq_link_conn(l, addr);
	if (!cc)
		return -EAGAIN;
	return rmq_client_unary(cc, path, req, len, timeout_ns, done, arg, NULL);
}

int rmq_link_server_stream(struct rmq_link *l, const char *addr, const char *path,
			   const void *req, size_t len, uint64_t timeout_ns,
			   const struct rmq_ccall_ops *ops, void *arg, struct rmq_ccall **out)
{
	if (!target_for(l, addr))
		return -EINVAL;
	struct rmq_client_conn *cc = rmq_link_conn(l, addr);
	if (!cc)
		return -EAGAIN;
	return rmq_client_server_stream(cc, path, req, len, timeout_ns, ops, arg, out);
}
