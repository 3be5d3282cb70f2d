/* SPDX-License-Identifier: Apache-2.0 */
/* ctrl_net.c - the controller's transport (ctrl_net.h). */
#include "broker/ctrl_net.h"

#include "broker/broker.h"
#include "core/crc32c.h"
#include "core/error.h"
#include "core/log.h"
#include "core/util.h"
#include "broker/link.h"
#include "net/client.h"

#include <errno.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define PEER_CALLS_MAX 64                      /* in flight per peer; more are dropped */
#define CALL_TIMEOUT_NS (2000ULL * 1000 * 1000)
#define SNAPSHOT_CHUNKS_MAX 64                 /* chunks of a snapshot: 64 MiB */
#define SNAPSHOT_TIMEOUT_NS (30ULL * 1000 * 1000 * 1000)

/* ---- in ------------------------------------------------------------------------- */

static void inbound_reply(struct rmq_xmsg *x)
{
	struct rmq_ctrl_inbound *in = RMQ_CONTAINER_OF(x, struct rmq_ctrl_inbound, msg);
	if (in->buf) {
		rmq_reply_bytes(in->call, in->buf, in->len);
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

/* InstallSnapshot: chunks gathered on the connection's shard, checked
 * (order, header, size, CRC-32C), then handed to shard 0 whole. */
struct snap_in {
	struct rmq_ctrl_inbound *in;  /* m, conf; buf grows with the data */
	size_t cap;
	uint64_t total;
	bool done;
	uint32_t crc;
	const char *bad;              /* the first refusal */
};

static void snap_in_free(struct snap_in *si)
{
	if (!si)
		return;
	free(si->in->buf);
	free(si->in);
	free(si);
}

void rmq_ctrl_snapshot_chunk(struct rmq_call *c, const uint8_t *msg, size_t len)
{
	struct snap_in *si = rmq_call_get_ctx(c);
	if (!si) {
		si = calloc(1, sizeof(*si));
		struct rmq_ctrl_inbound *in = calloc(1, sizeof(*in));
		if (!si || !in) {
			free(si);
			free(in);
			rmq_call_finish(c, RMQ_GRPC_RESOURCE_EXHAUSTED, "out of memory");
			return;
		}
		si->in = in;
		rmq_call_set_ctx(c, si);
	}
	if (si->bad)
		return;
	Rustmq__Controller__InstallSnapshotRequest *r =
		rustmq__controller__install_snapshot_request__unpack(NULL, len, msg);
	struct rmq_raft_msg *m = &si->in->m;
	if (!r) {
		si->bad = "a chunk does not decode";
		return;
	}
	if (si->in->len == 0 && !si->total && !si->done) {
		/* The first chunk: the header, and the configuration. */
		*m = (struct rmq_raft_msg){.type = RMQ_RAFT_MSG_SNAPSHOT,
					   .from = rmq_ctrl_node_id(r->leader_id),
					   .term = r->term,
					   .index = r->last_included_index,
					   .log_term = r->last_included_term,
					   .conf = &si->in->conf};
		si->total = r->total_size;
		if (!m->from || rmq_ctrl_wire_conf_from_pb(r->configuration, &si->in->conf) < 0 ||
		    si->total > (uint64_t)SNAPSHOT_CHUNKS_MAX * RMQ_CTRL_SNAPSHOT_CHUNK)
			si->bad = "the first chunk's header or configuration is not valid";
	}
	if (!si->bad && (r->offset != si->in->len || r->term != m->term ||
			 r->last_included_index != m->index || r->last_included_term != m->log_term ||
			 r->total_size != si->total || si->done ||
			 r->data.len > RMQ_CTRL_SNAPSHOT_CHUNK || si->in->len + r->data.len > si->total))
		si->bad = "a chunk out of order, or with another header";
	if (!si->bad && r->data.len) {
		if (si->in->len + r->data.len > si->cap) {
			size_t cap = si->total ? si->total : r->data.len;
			uint8_t *b = realloc(si->in->buf, cap);
			if (!b) {
				si->bad = "out of memory";
			} else {
				si->in->buf = b;
				si->cap = cap;
			}
		}
		if (!si->bad) {
			memcpy(si->in->buf + si->in->len, r->data.data, r->data.len);
			si->in->len += r->data.len;
		}
	}
	if (!si->bad && r->done) {
		si->done = true;
		si->crc = r->crc32c;
	}
	rustmq__controller__install_snapshot_request__free_unpacked(r, NULL);
}

static void snap_refuse(struct rmq_call *c, const char *why)
{
	uint8_t *buf;
	size_t len;
	Rustmq__Controller__InstallSnapshotResponse r = RUSTMQ__CONTROLLER__INSTALL_SNAPSHOT_RESPONSE__INIT;
	r.error_code = RUSTMQ__COMMON__ERROR_CODE__INVALID_REQUEST;
	r.error_message = (char *)why;
	len = rustmq__controller__install_snapshot_response__get_packed_size(&r);
	buf = malloc(len ? len : 1);
	if (buf) {
		rustmq__controller__install_snapshot_response__pack(&r, buf);
		if (rmq_call_send(c, buf, len) == 0)
			rmq_call_finish(c, RMQ_GRPC_OK, NULL);
		free(buf);
	} else {
		rmq_call_finish(c, RMQ_GRPC_RESOURCE_EXHAUSTED, "out of memory");
	}
}

void rmq_ctrl_snapshot_end(struct rmq_call *c)
{
	struct snap_in *si = rmq_call_get_ctx(c);
	rmq_call_set_ctx(c, NULL);
	const char *bad = !si ? "no chunk" : si->bad;
	if (!bad && (!si->done || si->in->len != si->total))
		bad = "the stream ended before its last chunk";
	if (!bad && rmq_crc32c(0, si->in->buf, si->in->len) != si->crc)
		bad = "the snapshot's CRC-32C does not match";
	if (bad) {
		snap_refuse(c, bad);
		snap_in_free(si);
		return;
	}
	struct rmq_ctrl_inbound *in = si->in;
	free(si);
	struct rmq_bshard *bs = rmq_bshard_current();
	in->call = c;
	rmq_call_ref(c);
	in->origin = bs->id;
	in->rpc = RMQ_CTRL_RPC_SNAPSHOT;
	in->m.to = 0; /* set at shard 0 */
	in->msg.fn = inbound_arrive;
	rmq_shard_post(bs->s, 0, &in->msg);
}

void rmq_ctrl_snapshot_cancel(struct rmq_call *c)
{
	snap_in_free(rmq_call_get_ctx(c));
	rmq_call_set_ctx(c, NULL);
}

/* ---- out ------------------------------------------------------------------------ */

struct peer {
	struct rmq_ctrl_peers *ps;
	uint32_t id;
	struct rmq_link *link;                  /* made at the first message */
	unsigned inflight;
	bool snapshotting;                      /* an InstallSnapshot in flight */
};

struct out_call {
	struct peer *p;
	enum rmq_ctrl_rpc rpc;
	uint8_t *buf;              /* the request, sent by reference until done */
	size_t len;
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

void rmq_ctrl_peers_free(struct rmq_ctrl_peers *ps)
{
	if (!ps)
		return;
	ps->closing = true;
	for (size_t i = 0; i < ps->n; i++)
		rmq_link_free(ps->peers[i].link); /* calls end (CANCELLED): their done runs */
	free(ps);
}

/* The peer of id (its link made on first use). */
static struct peer *peer_of(struct rmq_ctrl_peers *ps, uint32_t id)
{
	struct peer *p = NULL;
	for (size_t i = 0; i < ps->n; i++)
		if (ps->peers[i].id == id)
			p = &ps->peers[i];
	if (!p) {
		if (ps->n == RMQ_RAFT_SERVERS_MAX)
			return NULL;
		p = &ps->peers[ps->n++];
		*p = (struct peer){.ps = ps, .id = id};
	}
	if (!p->link) {
		char what[48];
		snprintf(what, sizeof(what), "controller: node %u", id);
		p->link = rmq_link_new(ps->bs->s, what, ps->bs->b->cfg.peer_tls, ps->bs->b->cfg.peer_authz, PEER_CALLS_MAX, SNAPSHOT_CHUNKS_MAX, 16u << 20);
	}
	return p->link ? p : NULL;
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
	free(oc->buf);
	free(oc);
}

void rmq_ctrl_peers_send(struct rmq_ctrl_peers *ps, const struct rmq_raft_msg *m, const char *addr)
{
	/* What cannot go now (no connection yet: being made) is lost, as the
	 * network may lose it, and Raft sends again. */
	int rpc = rmq_ctrl_rpc_of(m->type);
	struct peer *p = rpc < 0 ? NULL : peer_of(ps, m->to);
	struct rmq_client_conn *cc = p ? rmq_link_conn(p->link, addr) : NULL;
	if (!cc || p->inflight >= PEER_CALLS_MAX)
		return;
	struct out_call *oc = malloc(sizeof(*oc));
	if (!oc)
		return;
	oc->p = p;
	oc->rpc = (enum rmq_ctrl_rpc)rpc;
	if (rmq_ctrl_wire_encode_request(m, ps->cluster_id, &oc->buf, &oc->len) < 0) {
		free(oc);
		return;
	}
	if (rmq_client_unary(cc, rmq_ctrl_rpc_path(oc->rpc), oc->buf, oc->len, CALL_TIMEOUT_NS,
			     call_done, oc, NULL) < 0) {
		free(oc->buf);
		free(oc);
		return;
	}
	p->inflight++;
}

/* One InstallSnapshot stream: its encoded chunks live until on_close. */
struct snap_out {
	struct peer *p;
	size_t n;
	bool answered;
	uint8_t *bufs[SNAPSHOT_CHUNKS_MAX];
	size_t lens[SNAPSHOT_CHUNKS_MAX];
};

static void snap_answer(struct rmq_ccall *call, void *arg, const uint8_t *msg, size_t len)
{
	struct snap_out *so = arg;
	struct rmq_ctrl_peers *ps = so->p->ps;
	struct rmq_raft_msg m;
	(void)call;
	if (so->answered || ps->closing)
		return;
	so->answered = true;
	if (rmq_ctrl_wire_decode_response(RMQ_CTRL_RPC_SNAPSHOT, msg, len, so->p->id, ps->self, &m) ==
	    0)
		ps->on_answer(ps->arg, &m);
}

static void snap_closed(struct rmq_ccall *call, void *arg, enum rmq_grpc_status status,
			const char *message)
{
	struct snap_out *so = arg;
	(void)call;
	if (status != RMQ_GRPC_OK && !so->p->ps->closing)
		rmq_warn("controller: sending a snapshot to node %u failed: %s %s", so->p->id,
			 rmq_grpc_status_name(status), message);
	so->p->snapshotting = false;
	for (size_t i = 0; i < so->n; i++)
		free(so->bufs[i]);
	free(so);
}

static const struct rmq_ccall_ops snap_ops = {.on_message = snap_answer, .on_close = snap_closed};

void rmq_ctrl_peers_send_snapshot(struct rmq_ctrl_peers *ps, const struct rmq_raft_msg *m,
				  const char *addr, const uint8_t *data, size_t len)
{
	struct peer *p = peer_of(ps, m->to);
	struct rmq_client_conn *cc = p && !p->snapshotting ? rmq_link_conn(p->link, addr) : NULL;
	if (!cc)
		return;
	struct snap_out *so = calloc(1, sizeof(*so));
	if (!so)
		return;
	so->p = p;
	int rc = rmq_ctrl_wire_snapshot_chunks(m, data, len, ps->cluster_id, so->bufs, so->lens,
					       SNAPSHOT_CHUNKS_MAX, &so->n);
	if (rc < 0) {
		if (rc == RMQ_ETOOBIG)
			rmq_error("controller: a snapshot of %zu bytes is more than InstallSnapshot "
				  "carries (%u chunks of %u bytes)",
				  len, SNAPSHOT_CHUNKS_MAX, RMQ_CTRL_SNAPSHOT_CHUNK);
		free(so);
		return;
	}
	struct rmq_ccall *call;
	if (rmq_ccall_start(cc, rmq_ctrl_rpc_path(RMQ_CTRL_RPC_SNAPSHOT), SNAPSHOT_TIMEOUT_NS,
			    &snap_ops, so, &call) < 0) {
		for (size_t i = 0; i < so->n; i++)
			free(so->bufs[i]);
		free(so);
		return;
	}
	p->snapshotting = true;
	for (size_t i = 0; i < so->n; i++)
		(void)rmq_ccall_send(call, so->bufs[i], so->lens[i]); /* send_queue_max: all fit */
	(void)rmq_ccall_half_close(call);
	rmq_info("controller: sending node %u the snapshot at %" PRIu64 " (%zu bytes)", p->id,
		 m->index, len);
}
