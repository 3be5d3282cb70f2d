/* SPDX-License-Identifier: Apache-2.0 */
/* heartbeat.c - this broker's registration and heartbeats (heartbeat.h). */
#include "broker/heartbeat.h"

#include "broker/broker.h"
#include "broker/cluster.h"
#include "broker/controller.h"
#include "broker/ctrl_wire.h"
#include "broker/errcode.h"
#include "broker/fleet.h"
#include "broker/link.h"
#include "controller/cluster.pb-c.h"
#include "core/error.h"
#include "core/log.h"
#include "core/util.h"

#include <errno.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define PATH "/rustmq.controller.ControllerBrokerService/"

struct rmq_heartbeat {
	struct rmq_bshard *bs;
	struct rmq_timer timer;
	struct rmq_link *link;
	uint64_t epoch;              /* 0: not registered */
	bool fenced;
	bool busy;                   /* a call in flight */
	bool stopping;               /* freed when the call in flight ends */
	struct rmq_fleet_call fc;    /* the call (a local one is carried out as is) */
	uint8_t *req;                /* a remote call's request */
	/* Outside the controller's configuration (a broker only): where the
	 * calls go, the leader that last answered or else each voter of
	 * --controller-voters in turn. */
	char target[RMQ_RAFT_ADDR_MAX];
	uint32_t target_id;
	unsigned next_voter;
	unsigned unreachable;        /* beats in a row that could not be sent */
	bool refused;                /* the last registration was refused (said once) */
	char cluster_id[40];         /* the cluster this storage joined; "" until it has */
	bool unregistered;           /* UnregisterBroker: no more beats */
	struct rmq_meta *image;      /* the answer's state, to install */
};

static void schedule(struct rmq_heartbeat *h);

/* This storage now belongs to cluster id: meta/cluster_id says so, and
 * meta/cluster_joined that it was the cluster's word, so that a controller
 * of another cluster refuses it.  (Two small synced writes on shard 0,
 * once in a node's life.) */
static void join_cluster(struct rmq_heartbeat *h, const char *id)
{
	const char *dir = h->bs->b->cfg.data_dir;
	int rc = rmq_meta_write_file(dir, "cluster_id", id, strlen(id));
	if (rc == 0)
		rc = rmq_meta_write_file(dir, RMQ_META_CLUSTER_JOINED, id, strlen(id));
	if (rc < 0) {
		rmq_warn("cannot record cluster %s in %s/meta: %s (tried again when this node "
			 "registers next)", id, dir, rmq_strerror(rc));
		return;
	}
	snprintf(h->cluster_id, sizeof(h->cluster_id), "%s", id);
	rmq_info("this node belongs to cluster %s", id);
}

/* The answer of a call, local or remote. */
static void answered(struct rmq_heartbeat *h)
{
	struct rmq_fleet_call *fc = &h->fc;
	h->busy = false;
	free(h->req);
	h->req = NULL;
	if (h->stopping) {
		rmq_meta_free(h->image);
		free(h);
		return;
	}
	switch (fc->code) {
	case EC_OK:
		h->refused = false;
		if (!rmq_ctrl_is_member(h->bs)) {
			rmq_ctrl_outside_leader(h->bs, h->target_id, h->target);
			if (h->image) {
				rmq_ctrl_install_image(h->bs, h->image);
				h->image = NULL;
			}
		}
		if (fc->kind == RMQ_FLEET_REGISTER) {
			h->epoch = fc->epoch_out;
			if (!h->cluster_id[0] && fc->cluster_id[0])
				join_cluster(h, fc->cluster_id);
			rmq_info("registered with the controller as broker %u (epoch %" PRIu64 ")",
				 fc->rec.id, h->epoch);
		} else if (fc->fenced != h->fenced) {
			h->fenced = fc->fenced;
			rmq_info("the controller says this broker is %s", h->fenced ? "fenced" : "unfenced");
		}
		if (fc->should_shut_down && atomic_load(&h->bs->b->handing_off) == 1) {
			rmq_info("the controller moved this broker's leaderships away: stopping");
			atomic_store(&h->bs->b->handing_off, 2);
		}
		break;
	case EC_BROKER_NOT_AVAILABLE:
		if (h->epoch && fc->kind == RMQ_FLEET_HEARTBEAT) {
			/* Unregistered (UnregisterBroker): this broker is out of
			 * the cluster until it is restarted (cluster.proto). */
			rmq_warn("the controller unregistered this broker: it stops heartbeating and "
				 "is fenced; restart it to register again");
			h->unregistered = true;
			break;
		}
		/* fall through */
	case EC_STALE_EPOCH:
		rmq_info("the controller: %s", fc->err);
		h->epoch = 0;
		break;
	case EC_INVALID_REQUEST: /* refused: said once, asked again each beat */
		if (!h->refused)
			rmq_warn("the controller refuses this broker: %s", fc->err);
		h->refused = true;
		break;
	case EC_NOT_CONTROLLER: /* the next beat asks the leader named, or the next voter */
		h->target[0] = '\0';
		if (fc->leader && fc->leader_addr[0]) {
			h->target_id = fc->leader;
			snprintf(h->target, sizeof(h->target), "%s", fc->leader_addr);
		}
		break;
	default: /* TIMEOUT, unreachable, ...: the next beat asks again */
		if (fc->code == EC_NOT_AVAILABLE)
			h->target[0] = '\0';
		break;
	}
	rmq_meta_free(h->image);
	h->image = NULL;
}

static void local_done(struct rmq_fleet_call *fc)
{
	answered(RMQ_CONTAINER_OF(fc, struct rmq_heartbeat, fc));
}

/* The leader a NOT_CONTROLLER answer names. */
static void answer_leader(struct rmq_fleet_call *fc, const char *id, const char *hint)
{
	fc->leader = rmq_ctrl_node_id(id);
	snprintf(fc->leader_addr, sizeof(fc->leader_addr), "%s", hint);
}

/* A heartbeat answer's MetadataImage as a state: its bytes are a
 * ControllerState's first fields (proto/controller/state.proto). */
static struct rmq_meta *image_of(struct rmq_bshard *bs, const Rustmq__Controller__MetadataImage *img)
{
	struct rmq_meta *m = NULL;
	size_t len = rustmq__controller__metadata_image__get_packed_size(img);
	uint8_t *buf = malloc(len + 1);
	if (buf) {
		rustmq__controller__metadata_image__pack(img, buf);
		if (rmq_meta_decode(buf, len, &bs->b->cfg.topic_defaults, &m) < 0)
			rmq_warn("the controller's metadata image does not decode; asking again");
	}
	free(buf);
	return m;
}

static void remote_done(void *arg, enum rmq_grpc_status status, const char *message,
			const uint8_t *resp, size_t len)
{
	struct rmq_heartbeat *h = arg;
	struct rmq_fleet_call *fc = &h->fc;
	fc->code = EC_NOT_AVAILABLE;
	snprintf(fc->err, sizeof(fc->err), "%s", message ? message : "");
	if (status == RMQ_GRPC_OK && fc->kind == RMQ_FLEET_REGISTER) {
		Rustmq__Controller__RegisterBrokerResponse *r =
			rustmq__controller__register_broker_response__unpack(NULL, len, resp);
		if (r) {
			fc->code = r->error_code;
			snprintf(fc->err, sizeof(fc->err), "%s", r->error_message);
			fc->epoch_out = r->broker_epoch;
			snprintf(fc->cluster_id, sizeof(fc->cluster_id), "%s", r->cluster_id);
			answer_leader(fc, r->leader_id, r->leader_hint);
			rustmq__controller__register_broker_response__free_unpacked(r, NULL);
		}
	} else if (status == RMQ_GRPC_OK) {
		Rustmq__Controller__BrokerHeartbeatResponse *r =
			rustmq__controller__broker_heartbeat_response__unpack(NULL, len, resp);
		if (r) {
			fc->code = r->error_code;
			snprintf(fc->err, sizeof(fc->err), "%s", r->error_message);
			fc->fenced = r->is_fenced;
			fc->should_shut_down = r->should_shut_down;
			answer_leader(fc, r->leader_id, r->leader_hint);
			if (r->catch_up_case ==
			    RUSTMQ__CONTROLLER__BROKER_HEARTBEAT_RESPONSE__CATCH_UP_IMAGE)
				h->image = image_of(h->bs, r->image);
			rustmq__controller__broker_heartbeat_response__free_unpacked(r, NULL);
		}
	}
	answered(h);
}

/* The request of fc for the wire, into h->req.  Returns its length, or 0. */
static size_t encode(struct rmq_heartbeat *h)
{
	const struct rmq_fleet_call *fc = &h->fc;
	char id[12];
	snprintf(id, sizeof(id), "%u", fc->rec.id);
	size_t len;
	if (fc->kind == RMQ_FLEET_REGISTER) {
		Rustmq__Controller__RegisterBrokerRequest r =
			RUSTMQ__CONTROLLER__REGISTER_BROKER_REQUEST__INIT;
		Rustmq__Common__BrokerInfo bi = RUSTMQ__COMMON__BROKER_INFO__INIT;
		Rustmq__Common__BrokerId bid = RUSTMQ__COMMON__BROKER_ID__INIT;
		bid.id = id;
		bid.rack_id = (char *)fc->rec.rack;
		bi.id = &bid;
		bi.host = (char *)fc->rec.host;
		bi.port = fc->rec.port;
		bi.shards = fc->rec.shards;
		bi.version = (char *)fc->rec.version;
		r.broker = &bi;
		r.incarnation_id = (char *)fc->rec.incarnation;
		r.cluster_id = h->cluster_id;
		len = rustmq__controller__register_broker_request__get_packed_size(&r);
		if ((h->req = malloc(len + 1)))
			rustmq__controller__register_broker_request__pack(&r, h->req);
	} else {
		Rustmq__Controller__BrokerHeartbeatRequest r =
			RUSTMQ__CONTROLLER__BROKER_HEARTBEAT_REQUEST__INIT;
		r.broker_id = id;
		r.broker_epoch = fc->epoch;
		r.current_metadata_offset = h->bs->meta->version;
		r.want_shut_down = fc->want_shut_down;
		len = rustmq__controller__broker_heartbeat_request__get_packed_size(&r);
		if ((h->req = malloc(len + 1)))
			rustmq__controller__broker_heartbeat_request__pack(&r, h->req);
	}
	return h->req ? len : 0;
}

/* Outside the configuration: the leader that last answered, else the next
 * voter of --controller-voters ("id@host:port,..."), into addr; returns
 * its id (0: none to ask). */
static uint32_t outside_target(struct rmq_heartbeat *h, char *addr, size_t len)
{
	if (!h->target[0]) {
		struct rmq_raft_conf voters;
		if (rmq_ctrl_flag_voters(h->bs->b, &voters) < 0 || voters.n == 0)
			return 0;
		const struct rmq_raft_server *sv = &voters.servers[h->next_voter++ % voters.n];
		h->target_id = sv->id;
		snprintf(h->target, sizeof(h->target), "%s", sv->addr);
	}
	snprintf(addr, len, "%s", h->target);
	return h->target_id ? h->target_id : UINT32_MAX;
}

static void beat(struct rmq_heartbeat *h)
{
	struct rmq_bshard *bs = h->bs;
	struct rmq_broker *b = bs->b;
	char addr[RMQ_RAFT_ADDR_MAX];
	if (h->busy || h->unregistered)
		return;
	bool member = rmq_ctrl_is_member(bs);
	uint32_t leader = member ? (uint32_t)rmq_ctrl_leader(bs, addr, sizeof(addr))
				 : outside_target(h, addr, sizeof(addr));
	if (!leader)
		return;
	struct rmq_fleet_call *fc = &h->fc;
	memset(fc, 0, sizeof(*fc));
	fc->rec.id = b->self;
	if (h->epoch == 0) {
		fc->kind = RMQ_FLEET_REGISTER;
		fc->rec.port = atomic_load(&b->port);
		fc->rec.shards = bs->nshards;
		snprintf(fc->rec.host, sizeof(fc->rec.host), "%s",
			 b->cfg.advertised_host ? b->cfg.advertised_host : b->cfg.net.host);
		snprintf(fc->rec.rack, sizeof(fc->rec.rack), "%s", b->cfg.rack ? b->cfg.rack : "");
		snprintf(fc->rec.incarnation, sizeof(fc->rec.incarnation), "%s", h->bs->b->incarnation);
		snprintf(fc->rec.version, sizeof(fc->rec.version), "%s", RMQ_VERSION);
		snprintf(fc->cluster_id, sizeof(fc->cluster_id), "%s", h->cluster_id);
	} else {
		fc->kind = RMQ_FLEET_HEARTBEAT;
		fc->epoch = h->epoch;
		fc->want_shut_down = atomic_load(&b->handing_off) != 0;
	}
	h->busy = true;
	if (member && leader == b->self) {
		fc->done = local_done;
		rmq_fleet_call(bs, fc);
		return;
	}
	size_t len = encode(h);
	int rc = len ? rmq_link_unary(h->link, addr,
				      fc->kind == RMQ_FLEET_REGISTER ? PATH "RegisterBroker"
								     : PATH "HeartbeatBroker",
				      h->req, len, b->cfg.broker_heartbeat_ns * 2, remote_done, h)
		     : -ENOMEM;
	if (rc < 0) {
		h->busy = false;
		free(h->req);
		h->req = NULL;
		/* Outside the configuration, a target that cannot be reached
		 * for a few beats (the leader died) gives way to the voters. */
		if (!member && ++h->unreachable >= 4) {
			h->unreachable = 0;
			h->target[0] = '\0';
		}
	} else {
		h->unreachable = 0;
	}
}

static void on_timer(struct rmq_timer *t)
{
	struct rmq_heartbeat *h = RMQ_CONTAINER_OF(t, struct rmq_heartbeat, timer);
	beat(h);
	schedule(h);
}

static void schedule(struct rmq_heartbeat *h)
{
	/* Unregistered: soon again (a start must not wait a whole beat). */
	uint64_t every = h->epoch ? h->bs->b->cfg.broker_heartbeat_ns : RMQ_CTRL_TICK_NS;
	rmq_timer_start(h->bs->s, &h->timer, rmq_now_ns() + every, on_timer);
}

void rmq_heartbeat_kick(struct rmq_bshard *bs)
{
	if (bs->hb)
		beat(bs->hb);
}

int rmq_heartbeat_start(struct rmq_bshard *bs)
{
	struct rmq_heartbeat *h = calloc(1, sizeof(*h));
	if (!h || !(h->link = rmq_link_new(bs->s, "broker heartbeat", bs->b->cfg.peer_tls, bs->b->cfg.peer_authz, 0, 0, 0))) {
		free(h);
		return -ENOMEM;
	}
	h->bs = bs;
	if (bs->b->cluster_joined)
		snprintf(h->cluster_id, sizeof(h->cluster_id), "%s", bs->b->cluster_id);
	bs->hb = h;
	beat(h);
	schedule(h);
	return 0;
}

void rmq_heartbeat_stop(struct rmq_bshard *bs)
{
	struct rmq_heartbeat *h = bs->hb;
	if (!h)
		return;
	bs->hb = NULL;
	rmq_timer_cancel(bs->s, &h->timer);
	bool busy = h->busy;
	h->stopping = true;
	/* A call in flight frees h when it is answered: a remote one here,
	 * a local one when the controller stops. */
	rmq_link_free(h->link);
	if (!busy)
		free(h);
}
