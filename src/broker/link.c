/* SPDX-License-Identifier: Apache-2.0 */
/* link.c - a kept connection to another node (link.h). */
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

struct rmq_link {
	struct rmq_shard *s;
	char what[48];
	uint32_t calls_max, send_queue_max, stream_window;
	char addr[ADDR_MAX];
	struct rmq_client *cl;
	struct rmq_client_conn *conn;
	bool connecting, logged_down;
	uint64_t next_try_ns;
};

struct rmq_link *rmq_link_new(struct rmq_shard *s, const char *what, uint32_t calls_max,
			      uint32_t send_queue_max, uint32_t stream_window)
{
	struct rmq_link *l = calloc(1, sizeof(*l));
	if (l) {
		l->s = s;
		snprintf(l->what, sizeof(l->what), "%s", what);
		l->calls_max = calls_max;
		l->send_queue_max = send_queue_max;
		l->stream_window = stream_window;
	}
	return l;
}

static void drop(struct rmq_link *l)
{
	if (l->cl)
		rmq_client_destroy(l->cl); /* calls end (CANCELLED) */
	l->cl = NULL;
	l->conn = NULL;
	l->connecting = false;
}

void rmq_link_free(struct rmq_link *l)
{
	if (!l)
		return;
	drop(l);
	free(l);
}

static void on_connect(struct rmq_client_conn *cc, void *arg, int res)
{
	struct rmq_link *l = arg;
	(void)cc;
	l->connecting = false;
	if (res < 0) {
		l->conn = NULL;
		l->next_try_ns = rmq_now_ns() + RMQ_LINK_RETRY_NS;
		if (!l->logged_down)
			rmq_info("%s: cannot reach %s: %s (retrying)", l->what, l->addr, rmq_strerror(res));
		l->logged_down = true;
		return;
	}
	if (l->logged_down)
		rmq_info("%s: %s is reachable", l->what, l->addr);
	l->logged_down = false;
}

static void on_close(struct rmq_client_conn *cc, void *arg, int why)
{
	struct rmq_link *l = arg;
	(void)cc;
	(void)why;
	l->conn = NULL;
	l->next_try_ns = rmq_now_ns() + RMQ_LINK_RETRY_NS;
}

static const struct rmq_client_conn_ops conn_ops = {.on_connect = on_connect, .on_close = on_close};

/* The client for addr, made anew when the address changed. */
static int client_for(struct rmq_link *l, const char *addr)
{
	if (l->cl && strcmp(l->addr, addr) == 0)
		return 0;
	drop(l);
	const char *colon = strrchr(addr, ':');
	char host[ADDR_MAX];
	size_t hn = colon ? (size_t)(colon - addr) : 0;
	if (!colon || hn == 0 || hn >= sizeof(host) || strlen(addr) >= sizeof(l->addr))
		return -EINVAL;
	if (addr[0] == '[' && hn >= 2 && addr[hn - 1] == ']') { /* [v6]:port */
		memcpy(host, addr + 1, hn - 2);
		host[hn - 2] = '\0';
	} else {
		memcpy(host, addr, hn);
		host[hn] = '\0';
	}
	int port = atoi(colon + 1);
	if (port <= 0 || port > 65535)
		return -EINVAL;
	struct rmq_client_config cfg;
	rmq_client_config_default(&cfg);
	cfg.host = host;
	cfg.port = (uint16_t)port;
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
	int rc = rmq_client_create(l->s, &cfg, &l->cl);
	if (rc < 0) {
		l->cl = NULL;
		return rc;
	}
	snprintf(l->addr, sizeof(l->addr), "%s", addr);
	l->next_try_ns = 0;
	return 0;
}

struct rmq_client_conn *rmq_link_conn(struct rmq_link *l, const char *addr)
{
	if (client_for(l, addr) < 0)
		return NULL;
	if (l->conn && rmq_client_conn_ok(l->conn) && !l->connecting)
		return l->conn;
	if (!l->connecting && rmq_now_ns() >= l->next_try_ns) {
		l->conn = NULL;
		if (rmq_client_connect(l->cl, &conn_ops, l, &l->conn) == 0)
			l->connecting = true;
		else
			l->next_try_ns = rmq_now_ns() + RMQ_LINK_RETRY_NS;
	}
	return NULL;
}

int rmq_link_unary(struct rmq_link *l, const char *addr, const char *path, const void *req,
		   size_t len, uint64_t timeout_ns, rmq_client_unary_cb done, void *arg)
{
	int rc = client_for(l, addr);
	if (rc < 0)
		return rc;
	struct rmq_client_conn *cc = rmq_link_conn(l, addr);
	if (!cc)
		return -EAGAIN;
	return rmq_client_unary(cc, path, req, len, timeout_ns, done, arg, NULL);
}
