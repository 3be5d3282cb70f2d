/* SPDX-License-Identifier: Apache-2.0 */
/* ctrl_net.c - the controller's transport (ctrl_net.h). */
#include "broker/ctrl_net.h"

#include "broker/broker.h"
#include "core/error.h"
#include "core/log.h"
#include "core/util.h"
#include "net/client.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define PEER_CALLS_MAX 64                      /* in flight per peer; more are dropped */
#define CALL_TIMEOUT_NS (2000ULL * 1000 * 1000)
#define RECONNECT_NS (200ULL * 1000 * 1000)    /* between attempts to connect */

/* ---- in ------------------------------------------------------------------------- */

static void inbound_reply(struct rmq_xmsg *x)
{
	struct rmq_ctrl_inbound *in = RMQ_CONTAINER_OF(x, struct rmq_ctrl_inbound, msg);
	if (in->buf) {
		if (rmq_call_send(in->call, in->buf, in->len) == 0)
			rmq_call_finish(in->call, RMQ_GRPC_OK, NULL);
	} else {
		rmq_call_finish(in->call, (enum rmq_grpc_status)in->len,
				"the controller cannot take this call now");
	}
	rmq_call_unref(in->call);
	free(in->buf);
	free(in);
}

static void inbound_arrive(struct rmq_xmsg *x)
{
	struct rmq_ctrl_inbound *in = RMQ_CONTAINER_OF(x, struct rmq_ctrl_inbound, msg);
	rmq_ctrl_receive(rmq_bshard_current(), in);
}

void rmq_ctrl_answer(struct rmq_bshard *bs, struct rmq_ctrl_inbound *in, uint8_t *buf, size_t len,
		     int status)
{
	rmq_ctrl_wire_release(&in->hold);
	free(in->buf);
	in->buf = buf;
	in->len = buf ? len : (size_t)status;
	in->msg.fn = inbound_reply;
	rmq_shard_post(bs->s, in->origin, &in->msg);
}

static void receive(struct rmq_call *c, enum rmq_ctrl_rpc rpc, const uint8_t *msg, size_t len)
{
	struct rmq_bshard *bs = rmq_bshard_current();
	struct rmq_ctrl_inbound *in = calloc(1, sizeof(*in));
	uint8_t *copy = malloc(len ? len : 1);
	if (!in || !copy) {
		free(in);
		free(copy);
		rmq_call_finish(c, RMQ_GRPC_RESOURCE_EXHAUSTED, "out of memory");
		return;
	}
	memcpy(copy, msg, len);
	in->call = c;
	rmq_call_ref(c);
	in->origin = bs->id;
	in->rpc = rpc;
	in->buf = copy;
	in->len = len;
	in->msg.fn = inbound_arrive;
	rmq_shard_post(bs->s, 0, &in->msg);
}

void rmq_ctrl_rpc_prevote(struct rmq_call *c, const uint8_t *msg, size_t len)
{
	receive(c, RMQ_CTRL_RPC_PREVOTE, msg, len);
}

void rmq_ctrl_rpc_vote(struct rmq_call *c, const uint8_t *msg, size_t len)
{
	receive(c, RMQ_CTRL_RPC_VOTE, msg, len);
}

void rmq_ctrl_rpc_append(struct rmq_call *c, const uint8_t *msg, size_t len)
{
	receive(c, RMQ_CTRL_RPC_APPEND, msg, len);
}

void rmq_ctrl_rpc_timeout_now(struct rmq_call *c, const uint8_t *msg, size_t len)
{
	receive(c, RMQ_CTRL_RPC_TIMEOUT_NOW, msg, len);
}

/* ---- out ------------------------------------------------------------------------ */

struct peer {
	struct rmq_ctrl_peers *ps;
	uint32_t id;
	char addr[RMQ_RAFT_ADDR_MAX];
	struct rmq_client *cl;
	struct rmq_client_conn *conn;
	bool connecting;
	uint64_t next_try_ns;
	unsigned inflight;
	bool logged_down;
};

struct out_call {
	struct peer *p;
	enum rmq_ctrl_rpc rpc;
	size_t len;
	uint8_t buf[];
};

struct rmq_ctrl_peers {
	struct rmq_bshard *bs;
	uint32_t self;
	char cluster_id[64];
	void (*on_answer)(void *arg, const struct rmq_raft_msg *m);
	void *arg;
	bool closing;
	size_t n;
	struct peer peers[RMQ_RAFT_SERVERS_MAX];
};

int rmq_ctrl_peers_new(struct rmq_bshard *bs, uint32_t self, const char *cluster_id,
		       void (*on_answer)(void *arg, const struct rmq_raft_msg *m), void *arg,
		       struct rmq_ctrl_peers **out)
{
	struct rmq_ctrl_peers *ps = calloc(1, sizeof(*ps));
	if (!ps)
		return -ENOMEM;
	ps->bs = bs;
	ps->self = self;
	snprintf(ps->cluster_id, sizeof(ps->cluster_id), "%s", cluster_id ? cluster_id : "");
	ps->on_answer = on_answer;
	ps->arg = arg;
	*out = ps;
	return 0;
}

static void peer_close(struct peer *p)
{
	if (p->cl)
		rmq_client_destroy(p->cl); /* calls end (CANCELLED): their done runs */
	p->cl = NULL;
	p->conn = NULL;
	p->connecting = false;
}

void rmq_ctrl_peers_free(struct rmq_ctrl_peers *ps)
{
	if (!ps)
		return;
	ps->closing = true;
	for (size_t i = 0; i < ps->n; i++)
		peer_close(&ps->peers[i]);
	free(ps);
}

static void on_connect(struct rmq_client_conn *cc, void *arg, int res)
{
	struct peer *p = arg;
	(void)cc;
	p->connecting = false;
	if (res < 0) {
		p->conn = NULL;
		p->next_try_ns = rmq_now_ns() + RECONNECT_NS;
		if (!p->logged_down)
			rmq_info("controller: cannot reach node %u at %s: %s (retrying)", p->id, p->addr,
				 rmq_strerror(res));
		p->logged_down = true;
		return;
	}
	if (p->logged_down)
		rmq_info("controller: node %u at %s is reachable", p->id, p->addr);
	p->logged_down = false;
}

static void on_conn_close(struct rmq_client_conn *cc, void *arg, int why)
{
	struct peer *p = arg;
	(void)cc;
	(void)why;
	p->conn = NULL;
	p->next_try_ns = rmq_now_ns() + RECONNECT_NS;
}

static const struct rmq_client_conn_ops conn_ops = {.on_connect = on_connect,
						     .on_close = on_conn_close};

/* The peer of id at addr, its client made (or remade for a new address). */
static struct peer *peer_of(struct rmq_ctrl_peers *ps, uint32_t id, const char *addr)
{
	struct peer *p = NULL;
	for (size_t i = 0; i < ps->n; i++)
		if (ps->peers[i].id == id)
			p = &ps->peers[i];
	if (p && strcmp(p->addr, addr) != 0)
		peer_close(p);
	if (!p) {
		if (ps->n == RMQ_RAFT_SERVERS_MAX)
			return NULL;
		p = &ps->peers[ps->n++];
		*p = (struct peer){.ps = ps, .id = id};
	}
	if (p->cl)
		return p;
	snprintf(p->addr, sizeof(p->addr), "%s", addr);
	const char *colon = strrchr(addr, ':');
	char host[RMQ_RAFT_ADDR_MAX];
	if (!colon || colon == addr || (size_t)(colon - addr) >= sizeof(host))
		return NULL;
	memcpy(host, addr, (size_t)(colon - addr));
	host[colon - addr] = '\0';
	struct rmq_client_config cfg;
	rmq_client_config_default(&cfg);
	cfg.host = host;
	cfg.port = (uint16_t)atoi(colon + 1);
	cfg.connections_max = 2;
	cfg.calls_max = PEER_CALLS_MAX;
	cfg.send_queue_max = 4;
	cfg.recv_buffers = 16;
	cfg.stream_window = 16u << 20;
	cfg.conn_window = 64u << 20;
	cfg.connect_timeout_ns = 1000ULL * 1000 * 1000;
	int rc = rmq_client_create(ps->bs->s, &cfg, &p->cl);
	if (rc < 0) {
		p->cl = NULL;
		return NULL;
	}
	return p;
}

static void call_done(void *arg, enum rmq_grpc_status status, const char *message,
		      const uint8_t *resp, size_t len)
{
	struct out_call *oc = arg;
	struct peer *p = oc->p;
	struct rmq_ctrl_peers *ps = p->ps;
	(void)message;
	p->inflight--;
	if (status == RMQ_GRPC_OK && !ps->closing) {
		struct rmq_raft_msg m;
		if (rmq_ctrl_wire_decode_response(oc->rpc, resp, len, p->id, ps->self, &m) == 0)
			ps->on_answer(ps->arg, &m);
	}
	free(oc);
}

void rmq_ctrl_peers_send(struct rmq_ctrl_peers *ps, const struct rmq_raft_msg *m, const char *addr)
{
	int rpc = rmq_ctrl_rpc_of(m->type);
	struct peer *p = rpc < 0 ? NULL : peer_of(ps, m->to, addr);
	if (!p)
		return;
	if (!p->conn || !rmq_client_conn_ok(p->conn)) {
		if (!p->connecting && rmq_now_ns() >= p->next_try_ns) {
			p->conn = NULL;
			if (rmq_client_connect(p->cl, &conn_ops, p, &p->conn) == 0)
				p->connecting = true;
			else
				p->next_try_ns = rmq_now_ns() + RECONNECT_NS;
		}
		return; /* lost, as the network may lose it: Raft sends again */
	}
	if (p->connecting || p->inflight >= PEER_CALLS_MAX)
		return;
	uint8_t *buf;
	size_t len;
	if (rmq_ctrl_wire_encode_request(m, ps->cluster_id, &buf, &len) < 0)
		return;
	struct out_call *oc = malloc(sizeof(*oc) + len);
	if (!oc) {
		free(buf);
		return;
	}
	oc->p = p;
	oc->rpc = (enum rmq_ctrl_rpc)rpc;
	oc->len = len;
	memcpy(oc->buf, buf, len);
	free(buf);
	if (rmq_client_unary(p->conn, rmq_ctrl_rpc_path(oc->rpc), oc->buf, oc->len, CALL_TIMEOUT_NS,
			     call_done, oc, NULL) < 0) {
		free(oc);
		return;
	}
	p->inflight++;
}
