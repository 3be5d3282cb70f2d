/* SPDX-License-Identifier: Apache-2.0 */
/*
 * cluster_config.c - ControllerBrokerService UpdateClusterConfig and
 * GetClusterConfig: the cluster-wide configuration, kept in the
 * controller's state (meta.h: defaults, num_partitions).
 *
 * The keys are the topic keys (retention.ms, segment.bytes, ...: the
 * cluster's defaults for every topic that does not set them, which take
 * the new value at once) and num.partitions (partitions of a topic created
 * without a count).  A key removed goes back to the node's flag.  A
 * request's changes are decided together on the controller's leader
 * (forwarded there from any node): all of them, or none with the refused
 * keys named.  Per-broker overrides are not supported: broker_id must be
 * empty.  GetClusterConfig answers from the node's own copy.
 */
#include "broker/broker.h"
#include "broker/cluster.h"
#include "broker/controller.h"
#include "broker/ctrl_wire.h"
#include "broker/forward.h"
#include "broker/methods.h"
#include "broker/reply.h"
#include "controller/cluster.pb-c.h"
#include "core/util.h"

#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define KEYS (RMQ_TOPIC_CONFIG_KEYS + 1) /* the topic keys and num.partitions */

static const char *key_name(unsigned k)
{
	return k < RMQ_TOPIC_CONFIG_KEYS ? rmq_topic_config_keys[k] : RMQ_CLUSTER_NUM_PARTITIONS;
}

static const char *key_doc(unsigned k)
{
	return k < RMQ_TOPIC_CONFIG_KEYS ? rmq_topic_config_docs[k]
					 : "partitions of a topic created without a count";
}

/* One UpdateClusterConfig: the keys set (value) and removed (NULL). */
struct ucc {
	struct rmq_ctrl_req req;      /* req.code: the controller's answer */
	struct rmq_call *call;
	bool validate_only;
	size_t n;
	struct {
		char name[64];
		char *value;          /* NULL: removed */
		int code;
		char err[256];
	} *keys;
};

static void ucc_free(struct ucc *u)
{
	for (size_t i = 0; i < u->n; i++)
		free(u->keys[i].value);
	free(u->keys);
	rmq_call_unref(u->call);
	free(u);
}

static void ucc_reply(struct rmq_ctrl_req *req)
{
	struct ucc *u = RMQ_CONTAINER_OF(req, struct ucc, req);
	struct rmq_bshard *bs = rmq_bshard_current();
	Rustmq__Controller__UpdateClusterConfigResponse r =
		RUSTMQ__CONTROLLER__UPDATE_CLUSTER_CONFIG_RESPONSE__INIT;
	Rustmq__Controller__ClusterConfigResult *rs = calloc(u->n + 1, sizeof(*rs));
	Rustmq__Controller__ClusterConfigResult **rp = calloc(u->n + 1, sizeof(*rp));
	if (!rs || !rp) {
		rmq_call_finish(u->call, RMQ_GRPC_RESOURCE_EXHAUSTED, "out of memory");
		goto out;
	}
	bool refused = false;
	for (size_t i = 0; i < u->n; i++) {
		rustmq__controller__cluster_config_result__init(&rs[i]);
		rs[i].name = u->keys[i].name;
		rs[i].error_code = (Rustmq__Common__ErrorCode)u->keys[i].code;
		rs[i].error_message = u->keys[i].err;
		refused |= u->keys[i].code == EC_INVALID_CONFIG;
		rp[i] = &rs[i];
	}
	r.error_code = (Rustmq__Common__ErrorCode)(refused ? EC_INVALID_CONFIG : u->req.code);
	r.error_message = refused ? "a key was refused: nothing changed (see configs)"
			  : u->req.code == EC_OK ? ""
						 : u->keys[0].err;
	r.configs = rp;
	r.n_configs = u->n;
	r.metadata_offset = u->req.code == EC_OK && !refused && !u->validate_only ? bs->meta->version : 0;
	rmq_reply_pb(u->call, &r.base);
out:
	free(rs);
	free(rp);
	ucc_free(u);
}

/* On the controller's leader: the state with every key changed, or NULL
 * (a key refused, or validate_only). */
static struct rmq_meta *ucc_build(struct rmq_ctrl_req *req, const struct rmq_meta *cur)
{
	struct ucc *u = RMQ_CONTAINER_OF(req, struct ucc, req);
	const struct rmq_topic_config *node = &rmq_bshard_current()->b->cfg.topic_defaults;
	struct rmq_meta *m = rmq_meta_copy(cur, 0);
	if (!m) {
		for (size_t i = 0; i < u->n; i++) {
			u->keys[i].code = EC_RESOURCE_EXHAUSTED;
			snprintf(u->keys[i].err, sizeof(u->keys[i].err), "out of memory");
		}
		return NULL;
	}
	bool refused = false;
	for (size_t i = 0; i < u->n; i++) {
		if (rmq_meta_cluster_config(m, node, u->keys[i].name, u->keys[i].value, u->keys[i].err,
					    sizeof(u->keys[i].err)) < 0) {
			u->keys[i].code = EC_INVALID_CONFIG;
			refused = true;
		}
	}
	if (refused || u->validate_only) {
		rmq_meta_free(m);
		return NULL;
	}
	return m;
}

/* The controller's answer given to the keys not refused already. */
static void ucc_back(struct rmq_ctrl_req *req)
{
	struct ucc *u = RMQ_CONTAINER_OF(req, struct ucc, req);
	int code = req->code;
	if (code != EC_OK) {
		for (size_t i = 0; i < u->n; i++) {
			if (u->keys[i].code != EC_OK)
				continue;
			u->keys[i].code = code;
			snprintf(u->keys[i].err, sizeof(u->keys[i].err), "%s",
				 code == EC_NOT_CONTROLLER ? "this node stopped leading the controller: "
							     "nothing changed; retry"
				 : code == EC_TIMEOUT	   ? "not committed in time: it may still take "
							     "effect; check before retrying"
							   : "the controller could not take the change");
		}
	}
	ucc_reply(req);
}

void rmq_cluster_update_config(struct rmq_call *c, void *msg)
{
	if (rmq_forward_admin(c, msg, rmq_cluster_update_config))
		return; /* another node leads the controller */
	Rustmq__Controller__UpdateClusterConfigRequest *req = msg;
	struct rmq_bshard *bs = rmq_call_app(c);
	struct ucc *u = NULL;
	size_t n = req->n_set_entries + req->n_remove_names;
	if (req->broker_id[0]) {
		rmq_refuse(c, EC_INVALID_CONFIG,
			   "per-broker configuration is not supported: leave broker_id empty for the "
			   "cluster-wide values");
		goto out;
	}
	if (n == 0) {
		rmq_refuse(c, EC_INVALID_CONFIG, "nothing to change: give set_entries or remove_names");
		goto out;
	}
	u = calloc(1, sizeof(*u));
	if (u)
		u->keys = calloc(n, sizeof(*u->keys));
	if (!u || !u->keys)
		goto nomem;
	u->n = n;
	u->validate_only = req->validate_only;
	for (size_t i = 0; i < n; i++) {
		bool set = i < req->n_set_entries;
		const char *name = set ? req->set_entries[i]->name : req->remove_names[i - req->n_set_entries];
		snprintf(u->keys[i].name, sizeof(u->keys[i].name), "%s", name);
		if (set && !(u->keys[i].value = strdup(req->set_entries[i]->value)))
			goto nomem;
	}
	u->call = c;
	rmq_call_ref(c);
	u->req.build = ucc_build;
	u->req.back = ucc_back;
	rmq_ctrl_submit_from(bs, &u->req);
	u = NULL;
	goto out;
nomem:
	rmq_call_finish(c, RMQ_GRPC_RESOURCE_EXHAUSTED, "out of memory");
out:
	if (u) {
		for (size_t i = 0; u->keys && i < u->n; i++)
			free(u->keys[i].value);
		free(u->keys);
		free(u);
	}
	protobuf_c_message_free_unpacked(msg, NULL);
}

void rmq_cluster_get_config(struct rmq_call *c, void *msg)
{
	Rustmq__Controller__GetClusterConfigRequest *req = msg;
	struct rmq_bshard *bs = rmq_call_app(c);
	const struct rmq_meta *m = bs->meta;
	Rustmq__Controller__GetClusterConfigResponse r =
		RUSTMQ__CONTROLLER__GET_CLUSTER_CONFIG_RESPONSE__INIT;
	Rustmq__Common__ConfigEntry es[KEYS], *ep[KEYS];
	char vals[KEYS][64];
	bool want[KEYS];
	for (unsigned k = 0; k < KEYS; k++)
		want[k] = req->n_names == 0;
	for (size_t i = 0; i < req->n_names; i++) {
		unsigned k = 0;
		while (k < KEYS && strcmp(req->names[i], key_name(k)) != 0)
			k++;
		if (k == KEYS) {
			rmq_refuse(c, EC_INVALID_CONFIG, "unknown configuration key '%s' (the topic keys "
				   "and %s)", req->names[i], RMQ_CLUSTER_NUM_PARTITIONS);
			goto out;
		}
		want[k] = true;
	}
	if (req->broker_id[0] && !rmq_meta_broker(m, rmq_ctrl_node_id(req->broker_id))) {
		rmq_refuse(c, EC_BROKER_NOT_AVAILABLE, "broker '%s' is not registered", req->broker_id);
		goto out;
	}
	for (unsigned k = 0; k < KEYS; k++) {
		if (!want[k])
			continue;
		Rustmq__Common__ConfigEntry *e = &es[r.n_configs];
		rustmq__common__config_entry__init(e);
		e->name = (char *)key_name(k);
		if (k < RMQ_TOPIC_CONFIG_KEYS) {
			rmq_topic_config_get(&m->defaults, k, vals[k], sizeof(vals[k]));
			e->is_default = !(m->defaults.overrides & (1u << k));
		} else {
			snprintf(vals[k], sizeof(vals[k]), "%" PRIu32,
				 m->num_partitions ? m->num_partitions : bs->b->cfg.default_partitions);
			e->is_default = m->num_partitions == 0;
		}
		e->value = vals[k];
		if (req->include_documentation)
			e->documentation = (char *)key_doc(k);
		ep[r.n_configs++] = e;
	}
	r.configs = ep;
	r.metadata_offset = m->version;
	rmq_reply_pb(c, &r.base);
out:
	protobuf_c_message_free_unpacked(msg, NULL);
}
