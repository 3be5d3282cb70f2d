/* SPDX-License-Identifier: Apache-2.0 */
/*
 * ctrl_admin.c - ControllerRaftService's configuration calls: AddPeer,
 * RemovePeer and GetConfiguration.  Each is decoded on the connection's
 * shard, carried out on shard 0 (controller.h: rmq_ctrl_change,
 * rmq_ctrl_view) and answered back on its shard.
 */
#include "broker/broker.h"
#include "broker/controller.h"
#include "broker/ctrl_wire.h"
#include "broker/errcode.h"
#include "broker/methods.h"
#include "broker/reply.h"
#include "controller/raft.pb-c.h"
#include "core/util.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define CHANGE_TIMEOUT_NS (30ULL * 1000 * 1000 * 1000) /* when the call sets none */

enum kind { GET, ADD, REMOVE };

struct cadmin {
	struct rmq_xmsg msg;          /* origin -> shard 0 -> origin */
	struct rmq_call *call;
	unsigned origin;
	enum kind kind;
	struct rmq_ctrl_change ch;    /* ADD, REMOVE: in and out */
	struct rmq_ctrl_view view;    /* GET */
};

/* ---- the answer, on the call's shard ---------------------------------------------- */

static void reply_back(struct rmq_xmsg *x)
{
	struct cadmin *ca = RMQ_CONTAINER_OF(x, struct cadmin, msg);
	struct rmq_arena a = {0};
	char leader[12] = "";
	const struct rmq_ctrl_view *v = ca->kind == GET ? &ca->view : &ca->ch.view;
	if (v->leader)
		snprintf(leader, sizeof(leader), "%u", v->leader);
	struct rmq_ctrl_wire_conf w;
	rmq_ctrl_wire_conf_to_pb(&v->conf, &w);
	Rustmq__Controller__RaftConfiguration *conf = &w.pb;
	if (ca->kind == GET) {
		Rustmq__Controller__GetConfigurationResponse r =
			RUSTMQ__CONTROLLER__GET_CONFIGURATION_RESPONSE__INIT;
		Rustmq__Controller__RaftPeerProgress *pg =
			rmq_arena_alloc(&a, (v->n_progress + 1) * sizeof(*pg));
		Rustmq__Controller__RaftPeerProgress **pp =
			rmq_arena_alloc(&a, (v->n_progress + 1) * sizeof(*pp));
		char(*ids)[12] = rmq_arena_alloc(&a, (v->n_progress + 1) * 12);
		char self[12];
		snprintf(self, sizeof(self), "%u", v->self);
		r.error_code = v->running ? EC_OK : EC_NOT_AVAILABLE;
		r.error_message = v->running ? (char *)"" : (char *)"the controller is not running on this node";
		r.leader_id = leader;
		r.leader_hint = (char *)v->leader_addr;
		r.term = v->term;
		r.commit_index = v->commit;
		r.configuration_index = v->conf_index;
		r.configuration = conf;
		r.responder_id = self;
		for (size_t i = 0; pg && pp && ids && i < v->n_progress; i++) {
			rustmq__controller__raft_peer_progress__init(&pg[i]);
			snprintf(ids[i], 12, "%u", v->progress[i].id);
			pg[i].id = ids[i];
			pg[i].match_index = v->progress[i].pr.match;
			pg[i].next_index = v->progress[i].pr.next;
			pp[i] = &pg[i];
			r.n_progress = i + 1;
		}
		r.progress = pp;
		rmq_reply_pb(ca->call, &r.base);
	} else if (ca->kind == ADD) {
		Rustmq__Controller__AddPeerResponse r = RUSTMQ__CONTROLLER__ADD_PEER_RESPONSE__INIT;
		r.error_code = ca->ch.code;
		r.error_message = ca->ch.err;
		r.leader_id = leader;
		r.leader_hint = (char *)v->leader_addr;
		r.configuration = conf;
		r.configuration_index = v->conf_index;
		rmq_reply_pb(ca->call, &r.base);
	} else {
		Rustmq__Controller__RemovePeerResponse r = RUSTMQ__CONTROLLER__REMOVE_PEER_RESPONSE__INIT;
		r.error_code = ca->ch.code;
		r.error_message = ca->ch.err;
		r.leader_id = leader;
		r.leader_hint = (char *)v->leader_addr;
		r.configuration = conf;
		r.configuration_index = v->conf_index;
		rmq_reply_pb(ca->call, &r.base);
	}
	rmq_arena_free(&a);
	rmq_call_unref(ca->call);
	free(ca);
}

/* ---- shard 0 ------------------------------------------------------------------------- */

static void changed(struct rmq_ctrl_change *ch)
{
	struct cadmin *ca = RMQ_CONTAINER_OF(ch, struct cadmin, ch);
	ca->msg.fn = reply_back;
	rmq_shard_post(rmq_shard_current(), ca->origin, &ca->msg);
}

static void at_shard0(struct rmq_xmsg *x)
{
	struct cadmin *ca = RMQ_CONTAINER_OF(x, struct cadmin, msg);
	struct rmq_bshard *bs = rmq_bshard_current();
	if (ca->kind == GET) {
		rmq_ctrl_view(bs, &ca->view);
		ca->msg.fn = reply_back;
		rmq_shard_post(bs->s, ca->origin, &ca->msg);
		return;
	}
	ca->ch.done = changed;
	rmq_ctrl_change(bs, &ca->ch);
}

/* ---- the calls, on the connection's shard ------------------------------------------ */

static void forward(struct rmq_call *c, struct cadmin *ca)
{
	struct rmq_bshard *bs = rmq_bshard_current();
	ca->call = c;
	rmq_call_ref(c);
	ca->origin = bs->id;
	ca->msg.fn = at_shard0;
	rmq_shard_post(bs->s, 0, &ca->msg);
}

static struct cadmin *cadmin_new(struct rmq_call *c, enum kind kind)
{
	struct cadmin *ca = calloc(1, sizeof(*ca));
	if (!ca)
		rmq_call_finish(c, RMQ_GRPC_RESOURCE_EXHAUSTED, "out of memory");
	else
		ca->kind = kind;
	return ca;
}

void rmq_ctrl_get_configuration(struct rmq_call *c, void *req)
{
	protobuf_c_message_free_unpacked(req, NULL);
	struct cadmin *ca = cadmin_new(c, GET);
	if (ca)
		forward(c, ca);
}

void rmq_ctrl_add_peer(struct rmq_call *c, void *req)
{
	Rustmq__Controller__AddPeerRequest *r = req;
	uint32_t id = rmq_ctrl_node_id(r->id);
	bool role_ok = r->role >= RUSTMQ__CONTROLLER__RAFT_SERVER_ROLE__RAFT_SERVER_ROLE_VOTER &&
		       r->role <= RUSTMQ__CONTROLLER__RAFT_SERVER_ROLE__RAFT_SERVER_ROLE_SPARE;
	if (!id || !role_ok || !r->address[0] || strlen(r->address) >= RMQ_RAFT_ADDR_MAX ||
	    !strchr(r->address, ':')) {
		rmq_refuse(c, EC_INVALID_REQUEST,
			   "AddPeer needs an id (a number from 1), an address host:port of at most %d "
			   "bytes and a role (VOTER, LEARNER or SPARE)",
			   RMQ_RAFT_ADDR_MAX - 1);
		protobuf_c_message_free_unpacked(req, NULL);
		return;
	}
	struct cadmin *ca = cadmin_new(c, ADD);
	if (ca) {
		ca->ch.id = id;
		snprintf(ca->ch.addr, sizeof(ca->ch.addr), "%s", r->address);
		ca->ch.role = (uint32_t)r->role; /* the proto's values are the core's */
		ca->ch.deadline_ns = rmq_now_ns() + CHANGE_TIMEOUT_NS;
		forward(c, ca);
	}
	protobuf_c_message_free_unpacked(req, NULL);
}

void rmq_ctrl_remove_peer(struct rmq_call *c, void *req)
{
	Rustmq__Controller__RemovePeerRequest *r = req;
	uint32_t id = rmq_ctrl_node_id(r->id);
	if (!id) {
		rmq_refuse(c, EC_INVALID_REQUEST, "RemovePeer needs an id (a number from 1)");
		protobuf_c_message_free_unpacked(req, NULL);
		return;
	}
	struct cadmin *ca = cadmin_new(c, REMOVE);
	if (ca) {
		ca->ch.remove = true;
		ca->ch.id = id;
		ca->ch.deadline_ns = rmq_now_ns() + CHANGE_TIMEOUT_NS;
		forward(c, ca);
	}
	protobuf_c_message_free_unpacked(req, NULL);
}
