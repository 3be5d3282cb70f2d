/* SPDX-License-Identifier: Apache-2.0 */
/* fleet.c - the brokers as the controller's leader keeps them (fleet.h). */
#include "broker/fleet.h"

#include "broker/broker.h"
#include "broker/cluster.h"
#include "broker/controller.h"
#include "broker/ctrl_wire.h"
#include "broker/errcode.h"
#include "broker/methods.h"
#include "broker/reply.h"
#include "common/metadata.pb-c.h"
#include "controller/cluster.pb-c.h"
#include "core/log.h"
#include "core/util.h"

#include <errno.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define RUNNING RUSTMQ__COMMON__BROKER_STATE__BROKER_RUNNING
#define FENCED RUSTMQ__COMMON__BROKER_STATE__BROKER_FENCED

/* A broker's session on this leader. */
struct session {
	uint32_t id;
	uint64_t seen_ns;   /* its last heartbeat (or when this leader began) */
	uint64_t catch_up;  /* the metadata it must run with before it is unfenced */
	bool pending;       /* a fence or unfence of it is being decided */
};

struct rmq_fleet {
	uint64_t term;      /* the controller term the sessions began in */
	size_t n, cap;
	struct session *v;
};

enum op_kind { OP_REGISTER, OP_FENCE, OP_UNFENCE, OP_UNREGISTER };

/* A change of one broker, decided by the controller. */
struct fleet_op {
	enum op_kind kind;
	struct rmq_broker_rec rec;
	uint64_t epoch;              /* FENCE, UNFENCE, UNREGISTER: of this registration */
	char cluster_id[40];
	struct rmq_fleet_call *fc;   /* answered once applied; NULL for the leader's own */
	bool silent;                 /* FENCE: its session ran out (not asked for) */
	bool outside;                /* REGISTER: a broker outside the controller's
				      * configuration (it does not apply the log) */
	/* What build decided. */
	int code;
	char err[200];
	uint64_t epoch_out;
	bool fenced;
};

static struct rmq_fleet *fleet_of(struct rmq_bshard *bs)
{
	if (!bs->fleet)
		bs->fleet = calloc(1, sizeof(*bs->fleet));
	return bs->fleet;
}

void rmq_fleet_free(struct rmq_bshard *bs)
{
	if (bs->fleet)
		free(bs->fleet->v);
	free(bs->fleet);
	bs->fleet = NULL;
}

/* Broker id's session (begun now when new), or NULL when out of memory.
 * A new leader begins every session afresh. */
static struct session *session_of(struct rmq_bshard *bs, uint32_t id, uint64_t now)
{
	struct rmq_fleet *f = fleet_of(bs);
	if (!f)
		return NULL;
	struct rmq_quorum q;
	rmq_cluster_quorum(bs, &q);
	if (q.term != f->term) {
		f->term = q.term;
		for (size_t i = 0; i < f->n; i++)
			f->v[i] = (struct session){.id = f->v[i].id, .seen_ns = now};
	}
	for (size_t i = 0; i < f->n; i++)
		if (f->v[i].id == id)
			return &f->v[i];
	if (f->n == f->cap) {
		size_t cap = f->cap ? 2 * f->cap : 16;
		struct session *v = realloc(f->v, cap * sizeof(*v));
		if (!v)
			return NULL;
		f->v = v;
		f->cap = cap;
	}
	f->v[f->n] = (struct session){.id = id, .seen_ns = now};
	return &f->v[f->n++];
}

/* Whether broker id heartbeated within its session on this leader. */
static bool fresh_session(struct rmq_bshard *bs, uint32_t id)
{
	uint64_t now = rmq_now_ns();
	struct rmq_fleet *f = bs->fleet;
	for (size_t i = 0; f && i < f->n; i++)
		if (f->v[i].id == id)
			return now - f->v[i].seen_ns < bs->b->cfg.broker_session_ns;
	return false;
}

static bool in_isr(const struct rmq_passign *pa, uint32_t id)
{
	for (uint32_t i = 0; i < pa->nisr; i++)
		if (pa->isr[i] == id)
			return true;
	return false;
}

static bool is_replica(const struct rmq_passign *pa, uint32_t id)
{
	for (uint32_t i = 0; i < pa->nreplicas; i++)
		if (pa->replicas[i] == id)
			return true;
	return false;
}

/* Broker id takes the leaderless partitions it is an in-sync replica of
 * (and, renew: those it led, in a new epoch: a new process leads them). */
static void take_leaderships(struct rmq_meta *m, uint32_t id, bool renew)
{
	for (size_t t = 0; t < m->ntopics; t++) {
		for (uint32_t p = 0; m->topics[t].parts && p < m->topics[t].partitions; p++) {
			struct rmq_passign *pa = &m->topics[t].parts[p];
			if (!is_replica(pa, id) || !in_isr(pa, id))
				continue;
			if (pa->leader == 0 || (renew && pa->leader == id)) {
				pa->leader = id;
				pa->leader_epoch++;
				pa->part_epoch++;
			}
		}
	}
}

/* Broker id leads nothing: each partition it led goes to another in-sync
 * replica on a running broker, or to none.  And it leaves every ISR it is
 * in, but as the last member (the partition then comes back with it, not
 * with a replica that may lack what it acknowledged): its followers' high
 * watermark no longer waits for it (docs/replication.md, rule 3). */
static void drop_leaderships(struct rmq_meta *m, uint32_t id)
{
	for (size_t t = 0; t < m->ntopics; t++) {
		for (uint32_t p = 0; m->topics[t].parts && p < m->topics[t].partitions; p++) {
			struct rmq_passign *pa = &m->topics[t].parts[p];
			if (pa->nisr > 1 && in_isr(pa, id)) {
				uint32_t n = 0;
				for (uint32_t i = 0; i < pa->nisr; i++)
					if (pa->isr[i] != id)
						pa->isr[n++] = pa->isr[i];
				pa->nisr = n;
				pa->part_epoch++;
			}
			if (pa->leader != id)
				continue;
			pa->leader = 0;
			for (uint32_t i = 0; i < pa->nisr && !pa->leader; i++) {
				const struct rmq_broker_rec *r = rmq_meta_broker(m, pa->isr[i]);
				if (pa->isr[i] != id && r && r->state == RUNNING)
					pa->leader = pa->isr[i];
			}
			pa->leader_epoch++;
			pa->part_epoch++;
		}
	}
}

static void remove_broker(struct rmq_meta *m, uint32_t id)
{
	for (size_t i = 0; i < m->nbrokers; i++) {
		if (m->brokers[i].id != id)
			continue;
		memmove(&m->brokers[i], &m->brokers[i + 1], (m->nbrokers - i - 1) * sizeof(*m->brokers));
		m->nbrokers--;
		return;
	}
}

/* The controller's leader decides op on the committed state cur. */
static struct rmq_meta *op_build(void *arg, const struct rmq_meta *cur)
{
	struct fleet_op *op = arg;
	const struct rmq_broker_rec *ex = rmq_meta_broker(cur, op->rec.id);
	bool same = ex && strcmp(ex->incarnation, op->rec.incarnation) == 0;
	op->code = EC_OK;
	switch (op->kind) {
	case OP_REGISTER:
		if (same && (ex->state == RUNNING || op->outside) &&
		    strcmp(ex->host, op->rec.host) == 0 && ex->port == op->rec.port) {
			op->epoch_out = ex->epoch; /* a retry: nothing changes */
			return NULL;
		}
		break;
	case OP_FENCE:
	case OP_UNFENCE:
		if (!ex || ex->epoch != op->epoch || ex->state != (op->kind == OP_FENCE ? RUNNING : FENCED))
			return NULL; /* decided already, or another registration since */
		if (op->silent && fresh_session(rmq_bshard_current(), op->rec.id))
			return NULL; /* it heartbeated while the fence waited */
		break;
	case OP_UNREGISTER:
		if (!ex) {
			op->code = EC_BROKER_NOT_AVAILABLE;
			snprintf(op->err, sizeof(op->err), "broker %u is not registered", op->rec.id);
			return NULL;
		}
		if (op->epoch && ex->epoch != op->epoch) {
			op->code = EC_STALE_EPOCH;
			snprintf(op->err, sizeof(op->err),
				 "broker %u registered again (epoch %" PRIu64 ", not %" PRIu64 ")",
				 op->rec.id, ex->epoch, op->epoch);
			return NULL;
		}
		break;
	}
	struct rmq_meta *m = rmq_meta_copy(cur, 0);
	if (!m) {
		op->code = EC_RESOURCE_EXHAUSTED;
		snprintf(op->err, sizeof(op->err), "out of memory");
		return NULL;
	}
	struct rmq_broker_rec r = ex ? *ex : op->rec;
	switch (op->kind) {
	case OP_REGISTER:
		/* A broker outside the controller learns the metadata from its
		 * heartbeats: fenced (leading nothing) until it runs with the
		 * state of its registration (cluster.proto); one that applies the
		 * log runs at once. */
		r = op->rec;
		r.epoch = ex ? ex->epoch + !same : 1;
		r.state = op->outside ? FENCED : RUNNING;
		rmq_meta_set_broker(m, &r);
		if (!m->cluster_id[0])
			memcpy(m->cluster_id, op->cluster_id, sizeof(m->cluster_id));
		if (op->outside)
			drop_leaderships(m, r.id);
		else
			take_leaderships(m, r.id, !same);
		op->epoch_out = r.epoch;
		break;
	case OP_FENCE:
		r.state = FENCED;
		rmq_meta_set_broker(m, &r);
		drop_leaderships(m, r.id);
		break;
	case OP_UNFENCE:
		r.state = RUNNING;
		rmq_meta_set_broker(m, &r);
		take_leaderships(m, r.id, false);
		break;
	case OP_UNREGISTER:
		remove_broker(m, r.id);
		drop_leaderships(m, r.id);
		break;
	}
	return m;
}

static void op_applied(void *arg, int code)
{
	struct fleet_op *op = arg;
	struct rmq_bshard *bs = rmq_bshard_current();
	static const char *const what[] = {"registered", "fenced", "unfenced", "unregistered"};
	if (code == EC_OK && op->code == EC_OK && (op->kind != OP_REGISTER || op->epoch_out))
		rmq_info("broker %u %s%s", op->rec.id, what[op->kind],
			 op->kind == OP_FENCE && !op->fc ? " (its session timed out)" : "");
	if (!op->fc) {
		/* The leader's own: the broker's session may be decided again. */
		struct session *s = bs->fleet ? session_of(bs, op->rec.id, rmq_now_ns()) : NULL;
		if (s)
			s->pending = false;
		free(op);
		return;
	}
	struct rmq_fleet_call *fc = op->fc;
	if (op->kind == OP_REGISTER && code == EC_OK && op->code == EC_OK) {
		/* Unfenced once its heartbeats say it runs with this state. */
		struct session *s = session_of(bs, op->rec.id, rmq_now_ns());
		if (s)
			s->catch_up = op->outside ? bs->meta->version : 0;
	}
	fc->code = code == EC_OK ? op->code : code;
	snprintf(fc->err, sizeof(fc->err), "%s",
		 code == EC_OK ? op->err
		 : code == EC_NOT_CONTROLLER ? "this node stopped leading the controller; ask the new leader"
		 : code == EC_TIMEOUT ? "not committed in time (the controller lost its majority?)"
				      : "the controller could not take the change");
	fc->epoch_out = op->epoch_out;
	fc->metadata_offset = bs->meta->version;
	snprintf(fc->cluster_id, sizeof(fc->cluster_id), "%s", bs->meta->cluster_id);
	free(op);
	fc->done(fc);
}

/* Submits op kind for broker rec (silent: a FENCE of a session that ran
 * out; outside: a REGISTER of a broker outside the configuration).  The
 * controller may decide it inside this call. */
static void submit(struct rmq_bshard *bs, enum op_kind kind, const struct rmq_broker_rec *rec,
		   uint64_t epoch, struct rmq_fleet_call *fc, bool silent, bool outside)
{
	struct fleet_op *op = calloc(1, sizeof(*op));
	if (!op) {
		if (fc) {
			fc->code = EC_RESOURCE_EXHAUSTED;
			snprintf(fc->err, sizeof(fc->err), "out of memory");
			fc->done(fc);
		}
		return;
	}
	op->kind = kind;
	op->silent = silent;
	op->outside = outside;
	op->rec = *rec;
	op->epoch = epoch;
	op->fc = fc;
	snprintf(op->cluster_id, sizeof(op->cluster_id), "%s", bs->b->cluster_id);
	if (kind == OP_REGISTER && rec->id == bs->b->self)
		rmq_ctrl_submit_first(bs, op_build, op_applied, op); /* what it decides may need it */
	else
		rmq_ctrl_submit(bs, op_build, op_applied, op);
}

/* Answered at once (never inside rmq_fleet_call: the next cycle). */
static void answer_later(struct rmq_xmsg *x);

struct later {
	struct rmq_xmsg msg;
	struct rmq_fleet_call *fc;
};

static void answer_later(struct rmq_xmsg *x)
{
	struct later *l = RMQ_CONTAINER_OF(x, struct later, msg);
	struct rmq_fleet_call *fc = l->fc;
	free(l);
	fc->done(fc);
}

static void answer_now(struct rmq_bshard *bs, struct rmq_fleet_call *fc)
{
	struct later *l = malloc(sizeof(*l));
	if (!l) {
		fc->done(fc); /* out of memory: inside the call, rather than never */
		return;
	}
	l->fc = fc;
	l->msg.fn = answer_later;
	rmq_shard_post(bs->s, bs->id, &l->msg);
}

void rmq_fleet_call(struct rmq_bshard *bs, struct rmq_fleet_call *fc)
{
	uint64_t now = rmq_now_ns();
	fc->code = EC_OK;
	fc->err[0] = '\0';
	fc->leader = (uint32_t)rmq_ctrl_leader(bs, fc->leader_addr, sizeof(fc->leader_addr));
	fc->metadata_offset = bs->meta->version;
	if (fc->leader != bs->b->self) {
		fc->code = EC_NOT_CONTROLLER;
		snprintf(fc->err, sizeof(fc->err), "this node does not lead the controller%s",
			 fc->leader ? "" : ", and no leader is known yet");
		answer_now(bs, fc);
		return;
	}
	struct session *s = session_of(bs, fc->rec.id, now);
	const struct rmq_broker_rec *ex = rmq_meta_broker(bs->meta, fc->rec.id);
	switch (fc->kind) {
	case RMQ_FLEET_REGISTER:
		if (fc->cluster_id[0] && bs->meta->cluster_id[0] &&
		    strcmp(fc->cluster_id, bs->meta->cluster_id) != 0) {
			fc->code = EC_INVALID_REQUEST;
			snprintf(fc->err, sizeof(fc->err),
				 "the broker's storage belongs to cluster %s, not %s: give it an empty "
				 "data directory to join this one",
				 fc->cluster_id, bs->meta->cluster_id);
			answer_now(bs, fc);
			return;
		}
		/* Another process of a broker whose session is live: two nodes
		 * given one --node-id (cluster.proto: INVALID_REQUEST).  A
		 * restarted node waits for its old session to end; not this
		 * one: its data directory's lock says no other process runs. */
		if (ex && ex->state == RUNNING && strcmp(ex->incarnation, fc->rec.incarnation) != 0 &&
		    fc->rec.id != bs->b->self && fresh_session(bs, fc->rec.id)) {
			fc->code = EC_INVALID_REQUEST;
			snprintf(fc->err, sizeof(fc->err),
				 "broker %u is registered by another live process (its session ends "
				 "%" PRIu64 " ms after its last heartbeat): two nodes with one --node-id?",
				 fc->rec.id, bs->b->cfg.broker_session_ns / 1000000);
			answer_now(bs, fc);
			return;
		}
		if (s)
			s->seen_ns = now;
		submit(bs, OP_REGISTER, &fc->rec, 0, fc, false, !rmq_ctrl_has_member(bs, fc->rec.id));
		return;
	case RMQ_FLEET_UNREGISTER:
		submit(bs, OP_UNREGISTER, &fc->rec, fc->epoch, fc, false, false);
		return;
	case RMQ_FLEET_HEARTBEAT:
		break;
	}
	if (!ex) {
		fc->code = EC_BROKER_NOT_AVAILABLE;
		snprintf(fc->err, sizeof(fc->err), "broker %u is not registered: register", fc->rec.id);
	} else if (ex->epoch != fc->epoch) {
		fc->code = EC_STALE_EPOCH;
		snprintf(fc->err, sizeof(fc->err),
			 "broker %u is registered in epoch %" PRIu64 ", not %" PRIu64 ": register again",
			 fc->rec.id, ex->epoch, fc->epoch);
	} else {
		fc->epoch_out = ex->epoch;
		fc->fenced = ex->state == FENCED;
		/* A controlled shutdown is a fencing the broker asks for: its
		 * leaderships move to in-sync followers, and it leaves the ISRs
		 * (drop_leaderships); once that is committed it may stop. */
		fc->should_shut_down = fc->want_shut_down && ex->state == FENCED;
		/* A broker outside the controller learns the metadata here. */
		fc->image = !rmq_ctrl_has_member(bs, fc->rec.id) &&
			    fc->applied_offset < bs->meta->version;
		if (s) {
			s->seen_ns = now;
			bool off = fc->want_fence || fc->want_shut_down;
			bool change = off ? ex->state == RUNNING
					  : ex->state == FENCED && fc->applied_offset >= s->catch_up;
			if (change && !s->pending) {
				s->pending = true;
				submit(bs, off ? OP_FENCE : OP_UNFENCE, ex, ex->epoch, NULL, false, false);
			}
		}
	}
	answer_now(bs, fc);
}

void rmq_fleet_tick(struct rmq_bshard *bs)
{
	char addr[8];
	/* A stopping node no longer hears heartbeats (its listener is
	 * closed): silence then says nothing about the brokers. */
	if ((uint32_t)rmq_ctrl_leader(bs, addr, sizeof(addr)) != bs->b->self ||
	    rmq_runtime_stopping(bs->b->rt))
		return;
	uint64_t now = rmq_now_ns();
	const struct rmq_meta *m = bs->meta;
	for (size_t i = 0; i < m->nbrokers; i++) {
		const struct rmq_broker_rec *r = &m->brokers[i];
		struct session *s = session_of(bs, r->id, now);
		if (!s || s->pending || r->state != RUNNING ||
		    now - s->seen_ns < bs->b->cfg.broker_session_ns)
			continue;
		rmq_warn("broker %u: no heartbeat for %" PRIu64 " ms: fencing it", r->id,
			 (now - s->seen_ns) / 1000000);
		s->pending = true; /* decided only if it is still silent then: */
		submit(bs, OP_FENCE, r, r->epoch, NULL, true, false);
	}
}

/* ---- ControllerBrokerService ------------------------------------------------------ */

struct fleet_rpc {
	struct rmq_xmsg msg;          /* origin -> shard 0 -> origin */
	struct rmq_call *call;
	unsigned origin;
	struct rmq_fleet_call fc;
};

static void duration_of(Google__Protobuf__Duration *d, uint64_t ns)
{
	google__protobuf__duration__init(d);
	d->seconds = (int64_t)(ns / 1000000000);
	d->nanos = (int32_t)(ns % 1000000000);
}

/* The heartbeat answer r with the state m as its MetadataImage (field 10):
 * an encoded ControllerState is one (proto/controller/state.proto), so its
 * bytes follow r's as that field. */
static void reply_with_image(struct rmq_call *c, Rustmq__Controller__BrokerHeartbeatResponse *r,
			     const struct rmq_meta *m)
{
	/* The state encoded after room for r, the tag and the length. */
	size_t rlen = rustmq__controller__broker_heartbeat_response__get_packed_size(r);
	size_t room = rlen + 11;
	uint8_t *buf, hdr[11];
	size_t ilen, h = 0;
	if (rmq_meta_encode(m, room, &buf, &ilen) < 0) {
		rmq_reply_pb(c, &r->base); /* out of memory: the next beat asks again */
		return;
	}
	hdr[h++] = (10 << 3) | 2; /* field 10, length-delimited */
	for (uint64_t v = ilen;; v >>= 7) {
		hdr[h++] = (uint8_t)(v & 0x7f) | (v > 0x7f ? 0x80 : 0);
		if (v <= 0x7f)
			break;
	}
	uint8_t *start = buf + room - h - rlen;
	rustmq__controller__broker_heartbeat_response__pack(r, start);
	memcpy(start + rlen, hdr, h);
	rmq_reply_bytes(c, start, rlen + h + ilen);
	free(buf);
}

static void rpc_reply(struct rmq_xmsg *x)
{
	struct fleet_rpc *fr = RMQ_CONTAINER_OF(x, struct fleet_rpc, msg);
	struct rmq_fleet_call *fc = &fr->fc;
	struct rmq_bshard *bs = rmq_bshard_current();
	char leader[12] = "";
	if (fc->code == EC_NOT_CONTROLLER && fc->leader)
		snprintf(leader, sizeof(leader), "%u", fc->leader);
	char *hint = fc->code == EC_NOT_CONTROLLER ? fc->leader_addr : "";
	Google__Protobuf__Duration hb, session;
	duration_of(&hb, bs->b->cfg.broker_heartbeat_ns);
	duration_of(&session, bs->b->cfg.broker_session_ns);
	if (fc->kind == RMQ_FLEET_REGISTER) {
		Rustmq__Controller__RegisterBrokerResponse r =
			RUSTMQ__CONTROLLER__REGISTER_BROKER_RESPONSE__INIT;
		r.error_code = fc->code;
		r.error_message = fc->err;
		r.leader_id = leader;
		r.leader_hint = hint;
		r.broker_epoch = fc->epoch_out;
		r.cluster_id = fc->code == EC_OK ? fc->cluster_id : (char *)rmq_cluster_id(bs);
		r.metadata_offset = fc->metadata_offset;
		r.heartbeat_interval = &hb;
		r.session_timeout = &session;
		rmq_reply_pb(fr->call, &r.base);
	} else if (fc->kind == RMQ_FLEET_HEARTBEAT) {
		Rustmq__Controller__BrokerHeartbeatResponse r =
			RUSTMQ__CONTROLLER__BROKER_HEARTBEAT_RESPONSE__INIT;
		r.error_code = fc->code;
		r.error_message = fc->err;
		r.leader_id = leader;
		r.leader_hint = hint;
		r.is_fenced = fc->fenced;
		r.should_shut_down = fc->should_shut_down;
		r.is_caught_up = !fc->image;
		r.metadata_offset = fc->metadata_offset;
		r.heartbeat_interval = &hb;
		if (fc->image)
			reply_with_image(fr->call, &r, bs->meta);
		else
			rmq_reply_pb(fr->call, &r.base);
	} else {
		Rustmq__Controller__UnregisterBrokerResponse r =
			RUSTMQ__CONTROLLER__UNREGISTER_BROKER_RESPONSE__INIT;
		r.error_code = fc->code;
		r.error_message = fc->err;
		r.leader_id = leader;
		r.leader_hint = hint;
		rmq_reply_pb(fr->call, &r.base);
	}
	rmq_call_unref(fr->call);
	free(fr);
}

static void rpc_done(struct rmq_fleet_call *fc)
{
	struct fleet_rpc *fr = RMQ_CONTAINER_OF(fc, struct fleet_rpc, fc);
	fr->msg.fn = rpc_reply;
	rmq_shard_post(rmq_shard_current(), fr->origin, &fr->msg);
}

static void rpc_at_shard0(struct rmq_xmsg *x)
{
	struct fleet_rpc *fr = RMQ_CONTAINER_OF(x, struct fleet_rpc, msg);
	rmq_fleet_call(rmq_bshard_current(), &fr->fc);
}

static struct fleet_rpc *rpc_new(struct rmq_call *c, enum rmq_fleet_kind kind, const char *id)
{
	uint32_t n = rmq_ctrl_node_id(id);
	if (!n) {
		rmq_refuse(c, EC_INVALID_REQUEST, "a broker id is a number from 1, not '%s'", id);
		return NULL;
	}
	struct fleet_rpc *fr = calloc(1, sizeof(*fr));
	if (!fr) {
		rmq_call_finish(c, RMQ_GRPC_RESOURCE_EXHAUSTED, "out of memory");
		return NULL;
	}
	fr->fc.kind = kind;
	fr->fc.rec.id = n;
	fr->fc.done = rpc_done;
	return fr;
}

static void rpc_send(struct rmq_call *c, struct fleet_rpc *fr)
{
	struct rmq_bshard *bs = rmq_bshard_current();
	fr->call = c;
	rmq_call_ref(c);
	fr->origin = bs->id;
	fr->msg.fn = rpc_at_shard0;
	rmq_shard_post(bs->s, 0, &fr->msg);
}

void rmq_fleet_rpc_register(struct rmq_call *c, void *req)
{
	Rustmq__Controller__RegisterBrokerRequest *r = req;
	const Rustmq__Common__BrokerInfo *bi = r->broker;
	struct fleet_rpc *fr = NULL;
	if (!bi || !bi->id || !bi->host[0] || bi->port == 0 || bi->port > 65535 ||
	    strlen(bi->host) > RMQ_BROKER_HOST_MAX || !r->incarnation_id[0] ||
	    strlen(r->incarnation_id) >= sizeof(fr->fc.rec.incarnation)) {
		rmq_refuse(c, EC_INVALID_REQUEST,
			   "RegisterBroker needs broker.id, broker.host (at most %d bytes), broker.port "
			   "and an incarnation_id of at most 39 bytes",
			   RMQ_BROKER_HOST_MAX);
	} else if ((fr = rpc_new(c, RMQ_FLEET_REGISTER, bi->id->id))) {
		struct rmq_broker_rec *rec = &fr->fc.rec;
		rec->port = bi->port;
		rec->shards = bi->shards;
		snprintf(rec->host, sizeof(rec->host), "%s", bi->host);
		snprintf(rec->rack, sizeof(rec->rack), "%s", bi->id->rack_id);
		snprintf(rec->incarnation, sizeof(rec->incarnation), "%s", r->incarnation_id);
		snprintf(rec->version, sizeof(rec->version), "%s", bi->version);
		snprintf(fr->fc.cluster_id, sizeof(fr->fc.cluster_id), "%s", r->cluster_id);
		rpc_send(c, fr);
	}
	protobuf_c_message_free_unpacked(req, NULL);
}

void rmq_fleet_rpc_heartbeat(struct rmq_call *c, void *req)
{
	Rustmq__Controller__BrokerHeartbeatRequest *r = req;
	struct fleet_rpc *fr = rpc_new(c, RMQ_FLEET_HEARTBEAT, r->broker_id);
	if (fr) {
		fr->fc.epoch = r->broker_epoch;
		fr->fc.want_fence = r->want_fence;
		fr->fc.want_shut_down = r->want_shut_down;
		fr->fc.applied_offset = r->current_metadata_offset;
		rpc_send(c, fr);
	}
	protobuf_c_message_free_unpacked(req, NULL);
}

void rmq_fleet_rpc_unregister(struct rmq_call *c, void *req)
{
	Rustmq__Controller__UnregisterBrokerRequest *r = req;
	struct fleet_rpc *fr = rpc_new(c, RMQ_FLEET_UNREGISTER, r->broker_id);
	if (fr) {
		fr->fc.epoch = r->broker_epoch;
		rpc_send(c, fr);
	}
	protobuf_c_message_free_unpacked(req, NULL);
}
