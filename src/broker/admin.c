/* SPDX-License-Identifier: Apache-2.0 */
/*
 * admin.c - AdminService's topic RPCs (CreateTopics, DeleteTopics,
 * ListTopics, DescribeTopics, AlterConfigs, DescribeConfigs,
 * DescribeCluster), AuthService, and the answer of RPCs whose capability
 * this node does not serve yet.
 *
 * Changes go through shard 0 (topics.h); descriptions are answered from
 * the receiving shard's own snapshot (describe.h).  The group RPCs of
 * AdminService are in group_admin.c.
 */
#include "broker/auth.h"
#include "broker/methods.h"
#include "broker/broker.h"
#include "broker/cluster.h"
#include "broker/describe.h"
#include "broker/forward.h"
#include "broker/topics.h"

#include "client/metadata.pb-c.h"
#include "controller/admin.pb-c.h"
#include "core/error.h"
#include "core/log.h"
#include "core/util.h"

#include <errno.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* ---- AdminService: topics ----------------------------------------------------------- */

static void create_done(struct rmq_topic_change *ch)
{
	struct rmq_bshard *bs = rmq_bshard_current();
	Rustmq__Controller__CreateTopicsResponse r = RUSTMQ__CONTROLLER__CREATE_TOPICS_RESPONSE__INIT;
	Rustmq__Controller__CreateTopicResult *rs = calloc(ch->n ? ch->n : 1, sizeof(*rs));
	Rustmq__Controller__CreateTopicResult **rp = calloc(ch->n ? ch->n : 1, sizeof(*rp));
	struct rmq_arena *arenas = calloc(ch->n ? ch->n : 1, sizeof(*arenas));
	if (!rs || !rp || !arenas) {
		rmq_call_finish(ch->call, RMQ_GRPC_RESOURCE_EXHAUSTED, "out of memory");
		goto out;
	}
	for (size_t i = 0; i < ch->n; i++) {
		struct rmq_change_item *it = &ch->items[i];
		rustmq__controller__create_topic_result__init(&rs[i]);
		rs[i].name = it->name;
		rs[i].error_code = (Rustmq__Common__ErrorCode)it->code;
		rs[i].error_message = it->err;
		size_t off = it->code == EC_OK && !ch->validate_only
				     ? rmq_offline_count(bs->b->offline, it->result.id)
				     : 0;
		if (off > 0) {
			/* Created, but not every partition serves: say so. */
			char first[200] = "";
			for (uint32_t p = 0; p < it->result.partitions && !first[0]; p++)
				rmq_offline_lookup(bs->b->offline, it->result.id, p, first, sizeof(first));
			rs[i].error_code = EC_STORAGE_ERROR;
			snprintf(it->err, sizeof(it->err),
				 "topic created, but %zu of its %u partitions could not be opened; %s", off,
				 it->result.partitions, first);
		}
		if (it->code == EC_OK) {
			rs[i].topic_id = ch->validate_only ? "" : it->result.id;
			rs[i].partitions = it->result.partitions;
			rs[i].replication_factor = it->result.replication_factor;
			rs[i].configs = rmq_describe_configs(&it->result, &arenas[i], &rs[i].n_configs);
		}
		rp[i] = &rs[i];
	}
	r.topics = rp;
	r.n_topics = ch->n;
	rmq_reply_pb(ch->call, &r.base);
out:
	for (size_t i = 0; arenas && i < ch->n; i++)
		rmq_arena_free(&arenas[i]);
	free(arenas);
	free(rs);
	free(rp);
	rmq_call_unref(ch->call);
	rmq_topic_change_free(ch);
}

/* ACLs are checked where the call arrived, before it is forwarded to the
 * controller's leader (which sees the forwarding broker's principal):
 * every topic named needs op (creating one: on it or CLUSTER CREATE).
 * Returns false after refusing c and freeing msg with free_fn. */
static bool topics_allowed(struct rmq_call *c, void *msg, void (*free_fn)(void *),
			   const char *const *names, size_t n, enum rmq_acl_op op)
{
	char why[600];
	for (size_t i = 0; i < n; i++) {
		if (rmq_auth_allowed(c, RMQ_ACL_TOPIC, names[i] ? names[i] : "", op, why, sizeof(why)))
			continue;
		if (op == RMQ_ACL_CREATE &&
		    rmq_auth_allowed(c, RMQ_ACL_CLUSTER, RMQ_ACL_CLUSTER_NAME, op, why, sizeof(why)))
			continue;
		free_fn(msg);
		rmq_refuse(c, EC_UNAUTHORIZED, "%s", why);
		return false;
	}
	return true;
}

static void free_create(void *m)
{
	rustmq__controller__create_topics_request__free_unpacked(m, NULL);
}

static void free_delete(void *m)
{
	rustmq__controller__delete_topics_request__free_unpacked(m, NULL);
}

static void free_alter(void *m)
{
	rustmq__controller__alter_configs_request__free_unpacked(m, NULL);
}

void rmq_admin_create_topics(struct rmq_call *c, void *msg)
{
	Rustmq__Controller__CreateTopicsRequest *cr = msg;
	for (size_t i = 0; i < cr->n_topics; i++) {
		const char *name = cr->topics[i]->name;
		if (!topics_allowed(c, msg, free_create, &name, 1, RMQ_ACL_CREATE))
			return;
	}
	if (rmq_forward_admin(c, msg, rmq_admin_create_topics))
		return; /* another node leads the controller */
	struct rmq_bshard *bs = rmq_call_app(c);
	Rustmq__Controller__CreateTopicsRequest *req = msg;
	struct rmq_topic_change *ch = rmq_topic_change_new(bs, RMQ_CHANGE_CREATE, req->n_topics);
	if (!ch)
		goto nomem;
	ch->validate_only = req->validate_only;
	for (size_t i = 0; i < req->n_topics; i++) {
		const Rustmq__Controller__CreatableTopic *t = req->topics[i];
		struct rmq_change_item *it = &ch->items[i];
		snprintf(it->name, sizeof(it->name), "%s", t->name);
		it->partitions = t->partitions;
		it->replication_factor = t->replication_factor;
		if (t->n_assignments > 0 && it->code == EC_OK) {
			it->code = EC_INVALID_REQUEST;
			snprintf(it->err, sizeof(it->err), "manual replica assignments need a cluster; leave them empty");
		}
		if (rmq_topic_change_configs(it, t->n_configs) < 0)
			goto nomem;
		for (size_t k = 0; k < t->n_configs; k++) {
			snprintf(it->keys[k], sizeof(it->keys[k]), "%s", t->configs[k]->name);
			snprintf(it->vals[k], sizeof(it->vals[k]), "%s", t->configs[k]->value);
		}
	}
	rustmq__controller__create_topics_request__free_unpacked(req, NULL);
	if (ch->n == 0) {
		Rustmq__Controller__CreateTopicsResponse r = RUSTMQ__CONTROLLER__CREATE_TOPICS_RESPONSE__INIT;
		rmq_reply_pb(c, &r.base);
		rmq_topic_change_free(ch);
		return;
	}
	ch->call = c;
	rmq_call_ref(c);
	ch->done = create_done;
	rmq_topic_change_submit(bs, ch);
	return;
nomem:
	if (ch)
		rmq_topic_change_free(ch);
	rustmq__controller__create_topics_request__free_unpacked(req, NULL);
	rmq_call_finish(c, RMQ_GRPC_RESOURCE_EXHAUSTED, "out of memory");
}

static void create_one_done(struct rmq_topic_change *ch)
{
	ch->cb(ch->cb_arg, ch->items[0].code, ch->items[0].err);
	rmq_topic_change_free(ch);
}

int rmq_admin_create_one(struct rmq_bshard *bs, const char *name, uint32_t partitions,
			 void (*cb)(void *arg, int code, const char *msg), void *arg)
{
	struct rmq_topic_change *ch = rmq_topic_change_new(bs, RMQ_CHANGE_CREATE, 1);
	if (!ch)
		return -ENOMEM;
	snprintf(ch->items[0].name, sizeof(ch->items[0].name), "%s", name);
	ch->items[0].partitions = partitions;
	ch->done = create_one_done;
	ch->cb = cb;
	ch->cb_arg = arg;
	rmq_topic_change_submit(bs, ch);
	return 0;
}

static void delete_done(struct rmq_topic_change *ch)
{
	Rustmq__Controller__DeleteTopicsResponse r = RUSTMQ__CONTROLLER__DELETE_TOPICS_RESPONSE__INIT;
	Rustmq__Controller__DeleteTopicResult *rs = calloc(ch->n ? ch->n : 1, sizeof(*rs));
	Rustmq__Controller__DeleteTopicResult **rp = calloc(ch->n ? ch->n : 1, sizeof(*rp));
	if (!rs || !rp) {
		rmq_call_finish(ch->call, RMQ_GRPC_RESOURCE_EXHAUSTED, "out of memory");
	} else {
		for (size_t i = 0; i < ch->n; i++) {
			struct rmq_change_item *it = &ch->items[i];
			rustmq__controller__delete_topic_result__init(&rs[i]);
			rs[i].name = it->code == EC_OK ? it->result.name : it->name;
			rs[i].topic_id = it->code == EC_OK ? it->result.id : it->id;
			rs[i].error_code = (Rustmq__Common__ErrorCode)it->code;
			rs[i].error_message = it->err;
			rp[i] = &rs[i];
		}
		r.topics = rp;
		r.n_topics = ch->n;
		rmq_reply_pb(ch->call, &r.base);
	}
	free(rs);
	free(rp);
	rmq_call_unref(ch->call);
	rmq_topic_change_free(ch);
}

void rmq_admin_delete_topics(struct rmq_call *c, void *msg)
{
	Rustmq__Controller__DeleteTopicsRequest *dr = msg;
	if (!topics_allowed(c, msg, free_delete, (const char *const *)dr->names, dr->n_names,
			    RMQ_ACL_DELETE))
		return;
	if (dr->n_topic_ids) {
		/* By id: the name is the controller's to resolve; DELETE on
		 * every topic then. */
		static const char *const any[] = {"*"};
		if (!topics_allowed(c, msg, free_delete, any, 1, RMQ_ACL_DELETE))
			return;
	}
	if (rmq_forward_admin(c, msg, rmq_admin_delete_topics))
		return; /* another node leads the controller */
	struct rmq_bshard *bs = rmq_call_app(c);
	Rustmq__Controller__DeleteTopicsRequest *req = msg;
	size_t n = req->n_names + req->n_topic_ids;
	struct rmq_topic_change *ch = rmq_topic_change_new(bs, RMQ_CHANGE_DELETE, n);
	if (!ch) {
		rustmq__controller__delete_topics_request__free_unpacked(req, NULL);
		rmq_call_finish(c, RMQ_GRPC_RESOURCE_EXHAUSTED, "out of memory");
		return;
	}
	for (size_t i = 0; i < req->n_names; i++)
		snprintf(ch->items[i].name, sizeof(ch->items[i].name), "%s", req->names[i]);
	for (size_t i = 0; i < req->n_topic_ids; i++)
		snprintf(ch->items[req->n_names + i].id, sizeof(ch->items[0].id), "%s", req->topic_ids[i]);
	rustmq__controller__delete_topics_request__free_unpacked(req, NULL);
	ch->call = c;
	rmq_call_ref(c);
	ch->done = delete_done;
	if (n == 0) {
		delete_done(ch);
		return;
	}
	rmq_topic_change_submit(bs, ch);
}

void rmq_admin_list_topics(struct rmq_call *c, void *msg)
{
	struct rmq_bshard *bs = rmq_call_app(c);
	Rustmq__Controller__ListTopicsRequest *req = msg;
	Rustmq__Controller__ListTopicsResponse r = RUSTMQ__CONTROLLER__LIST_TOPICS_RESPONSE__INIT;
	size_t n = bs->meta->ntopics, k = 0;
	Rustmq__Controller__TopicListing *ls = calloc(n ? n : 1, sizeof(*ls));
	Rustmq__Controller__TopicListing **lp = calloc(n ? n : 1, sizeof(*lp));
	if (!ls || !lp) {
		rmq_call_finish(c, RMQ_GRPC_RESOURCE_EXHAUSTED, "out of memory");
		goto out;
	}
	char why[600];
	for (size_t i = 0; i < n; i++) {
		const struct rmq_topic *t = &bs->meta->topics[i];
		if ((t->internal && !req->include_internal) ||
		    strncmp(t->name, req->name_prefix, strlen(req->name_prefix)) != 0 ||
		    !rmq_auth_allowed(c, RMQ_ACL_TOPIC, t->name, RMQ_ACL_DESCRIBE, why, sizeof(why)))
			continue;
		rustmq__controller__topic_listing__init(&ls[k]);
		ls[k].name = (char *)t->name;
		ls[k].topic_id = (char *)t->id;
		ls[k].is_internal = t->internal;
		ls[k].partitions = t->partitions;
		ls[k].replication_factor = t->replication_factor;
		lp[k] = &ls[k];
		k++;
	}
	r.topics = lp;
	r.n_topics = k;
	r.metadata_offset = bs->meta->version;
	rmq_reply_pb(c, &r.base);
out:
	free(ls);
	free(lp);
	rustmq__controller__list_topics_request__free_unpacked(req, NULL);
}

void rmq_admin_describe_topics(struct rmq_call *c, void *msg)
{
	struct rmq_bshard *bs = rmq_call_app(c);
	Rustmq__Controller__DescribeTopicsRequest *req = msg;
	Rustmq__Controller__DescribeTopicsResponse r = RUSTMQ__CONTROLLER__DESCRIBE_TOPICS_RESPONSE__INIT;
	struct rmq_md_list l;
	if (rmq_describe_topics(bs, req->names, req->n_names, req->include_configs, true, NULL, &l) < 0) {
		rmq_call_finish(c, RMQ_GRPC_RESOURCE_EXHAUSTED, "out of memory");
	} else {
		rmq_auth_filter_topics(c, &l, req->n_names > 0);
		r.topics = l.v;
		r.n_topics = l.n;
		r.metadata_offset = bs->meta->version;
		rmq_reply_pb(c, &r.base);
	}
	rmq_md_list_free(&l);
	rustmq__controller__describe_topics_request__free_unpacked(req, NULL);
}

/* ---- AdminService: configs and cluster ----------------------------------------------- */

static void alter_done(struct rmq_topic_change *ch)
{
	Rustmq__Controller__AlterConfigsResponse r = RUSTMQ__CONTROLLER__ALTER_CONFIGS_RESPONSE__INIT;
	Rustmq__Controller__AlterConfigsResult *rs = calloc(ch->n ? ch->n : 1, sizeof(*rs));
	Rustmq__Controller__AlterConfigsResult **rp = calloc(ch->n ? ch->n : 1, sizeof(*rp));
	Rustmq__Controller__ConfigResource *res = calloc(ch->n ? ch->n : 1, sizeof(*res));
	if (!rs || !rp || !res) {
		rmq_call_finish(ch->call, RMQ_GRPC_RESOURCE_EXHAUSTED, "out of memory");
	} else {
		for (size_t i = 0; i < ch->n; i++) {
			rustmq__controller__alter_configs_result__init(&rs[i]);
			rustmq__controller__config_resource__init(&res[i]);
			res[i].type = ch->items[i].partitions == 0 ? RUSTMQ__CONTROLLER__CONFIG_RESOURCE_TYPE__CONFIG_RESOURCE_TYPE_TOPIC
								   : (Rustmq__Controller__ConfigResourceType)ch->items[i].partitions;
			res[i].name = ch->items[i].name;
			rs[i].resource = &res[i];
			rs[i].error_code = (Rustmq__Common__ErrorCode)ch->items[i].code;
			rs[i].error_message = ch->items[i].err;
			rp[i] = &rs[i];
		}
		r.resources = rp;
		r.n_resources = ch->n;
		rmq_reply_pb(ch->call, &r.base);
	}
	free(rs);
	free(rp);
	free(res);
	rmq_call_unref(ch->call);
	rmq_topic_change_free(ch);
}

void rmq_admin_alter_configs(struct rmq_call *c, void *msg)
{
	Rustmq__Controller__AlterConfigsRequest *ar0 = msg;
	for (size_t i = 0; i < ar0->n_resources; i++) {
		const Rustmq__Controller__ConfigResource *res = ar0->resources[i]->resource;
		const char *name = res ? res->name : "";
		char why[600];
		if (res && res->type != RUSTMQ__CONTROLLER__CONFIG_RESOURCE_TYPE__CONFIG_RESOURCE_TYPE_TOPIC) {
			/* A broker's or the cluster's settings. */
			if (!rmq_auth_allowed(c, RMQ_ACL_CLUSTER, RMQ_ACL_CLUSTER_NAME,
					      RMQ_ACL_ALTER_CONFIGS, why, sizeof(why))) {
				free_alter(msg);
				rmq_refuse(c, EC_UNAUTHORIZED, "%s", why);
				return;
			}
		} else if (!topics_allowed(c, msg, free_alter, &name, 1, RMQ_ACL_ALTER_CONFIGS)) {
			return;
		}
	}
	if (rmq_forward_admin(c, msg, rmq_admin_alter_configs))
		return; /* another node leads the controller */
	struct rmq_bshard *bs = rmq_call_app(c);
	Rustmq__Controller__AlterConfigsRequest *req = msg;
	struct rmq_topic_change *ch = rmq_topic_change_new(bs, RMQ_CHANGE_ALTER, req->n_resources);
	if (!ch)
		goto nomem;
	ch->validate_only = req->validate_only;
	for (size_t i = 0; i < req->n_resources; i++) {
		const Rustmq__Controller__AlterConfigsResource *ar = req->resources[i];
		struct rmq_change_item *it = &ch->items[i];
		const Rustmq__Controller__ConfigResource *res = ar->resource;
		if (res)
			snprintf(it->name, sizeof(it->name), "%s", res->name);
		if (!res || res->type != RUSTMQ__CONTROLLER__CONFIG_RESOURCE_TYPE__CONFIG_RESOURCE_TYPE_TOPIC) {
			/* partitions carries the resource type back to the answer. */
			it->partitions = res ? (uint32_t)res->type : 0;
			it->code = EC_POLICY_VIOLATION;
			snprintf(it->err, sizeof(it->err),
				 "only topic configurations can be altered; broker settings are rmqd flags");
		}
		if (rmq_topic_change_configs(it, ar->n_configs) < 0)
			goto nomem;
		for (size_t k = 0; k < ar->n_configs; k++) {
			snprintf(it->keys[k], sizeof(it->keys[k]), "%s", ar->configs[k]->name);
			snprintf(it->vals[k], sizeof(it->vals[k]), "%s", ar->configs[k]->value);
			it->ops[k] = ar->configs[k]->op;
		}
	}
	rustmq__controller__alter_configs_request__free_unpacked(req, NULL);
	/* Items already refused are answered as they are; shard 0 skips them. */
	ch->call = c;
	rmq_call_ref(c);
	ch->done = alter_done;
	rmq_topic_change_submit(bs, ch);
	return;
nomem:
	if (ch)
		rmq_topic_change_free(ch);
	rustmq__controller__alter_configs_request__free_unpacked(req, NULL);
	rmq_call_finish(c, RMQ_GRPC_RESOURCE_EXHAUSTED, "out of memory");
}

void rmq_admin_describe_configs(struct rmq_call *c, void *msg)
{
	struct rmq_bshard *bs = rmq_call_app(c);
	Rustmq__Controller__DescribeConfigsRequest *req = msg;
	Rustmq__Controller__DescribeConfigsResponse r = RUSTMQ__CONTROLLER__DESCRIBE_CONFIGS_RESPONSE__INIT;
	size_t n = req->n_resources;
	Rustmq__Controller__DescribeConfigsResult *rs = calloc(n ? n : 1, sizeof(*rs));
	Rustmq__Controller__DescribeConfigsResult **rp = calloc(n ? n : 1, sizeof(*rp));
	struct rmq_arena *arenas = calloc(n ? n : 1, sizeof(*arenas));
	char(*errs)[200] = calloc(n ? n : 1, 200);
	if (!rs || !rp || !arenas || !errs) {
		rmq_call_finish(c, RMQ_GRPC_RESOURCE_EXHAUSTED, "out of memory");
		goto out;
	}
	for (size_t i = 0; i < n; i++) {
		const Rustmq__Controller__DescribeConfigsResource *dr = req->resources[i];
		rustmq__controller__describe_configs_result__init(&rs[i]);
		rs[i].resource = dr->resource;
		rp[i] = &rs[i];
		if (!dr->resource || dr->resource->type != RUSTMQ__CONTROLLER__CONFIG_RESOURCE_TYPE__CONFIG_RESOURCE_TYPE_TOPIC) {
			rs[i].error_code = EC_INVALID_REQUEST;
			snprintf(errs[i], 200, "only topic configurations are described; broker settings are rmqd flags (rmqd --help)");
			rs[i].error_message = errs[i];
			continue;
		}
		if (!rmq_auth_allowed(c, RMQ_ACL_TOPIC, dr->resource->name ? dr->resource->name : "",
				      RMQ_ACL_DESCRIBE_CONFIGS, errs[i], 200)) {
			rs[i].error_code = EC_UNAUTHORIZED;
			rs[i].error_message = errs[i];
			continue;
		}
		long k = rmq_meta_find(bs->meta, dr->resource->name);
		if (k < 0) {
			rs[i].error_code = EC_TOPIC_NOT_FOUND;
			snprintf(errs[i], 200, "unknown topic '%s'", dr->resource->name);
			rs[i].error_message = errs[i];
			continue;
		}
		size_t nc;
		Rustmq__Common__ConfigEntry **all = rmq_describe_configs(&bs->meta->topics[k], &arenas[i], &nc);
		if (!all)
			continue;
		if (dr->n_names > 0) {
			/* Only the keys asked for, in request order. */
			size_t m = 0;
			for (size_t q = 0; q < dr->n_names; q++)
				for (size_t j = 0; j < nc; j++)
					if (strcmp(all[j]->name, dr->names[q]) == 0 && m < nc) {
						Rustmq__Common__ConfigEntry *tmp = all[m];
						all[m] = all[j];
						all[j] = tmp;
						m++;
						break;
					}
			nc = m;
		}
		if (!req->include_documentation)
			for (size_t j = 0; j < nc; j++)
				all[j]->documentation = "";
		rs[i].configs = all;
		rs[i].n_configs = nc;
	}
	r.resources = rp;
	r.n_resources = n;
	rmq_reply_pb(c, &r.base);
out:
	for (size_t i = 0; arenas && i < n; i++)
		rmq_arena_free(&arenas[i]);
	free(arenas);
	free(errs);
	free(rs);
	free(rp);
	rustmq__controller__describe_configs_request__free_unpacked(req, NULL);
}

void rmq_admin_describe_cluster(struct rmq_call *c, void *msg)
{
	struct rmq_bshard *bs = rmq_call_app(c);
	Rustmq__Controller__DescribeClusterRequest *req = msg;
	Rustmq__Controller__DescribeClusterResponse r = RUSTMQ__CONTROLLER__DESCRIBE_CLUSTER_RESPONSE__INIT;
	struct rmq_brokers brokers;
	struct rmq_quorum q;
	char *voters[RMQ_QUORUM_MAX];
	rmq_cluster_quorum(bs, &q);
	for (uint32_t i = 0; i < q.n; i++)
		voters[i] = q.ids[i];
	if (rmq_describe_brokers(bs, &brokers) < 0) {
		rmq_brokers_free(&brokers);
		rmq_call_finish(c, RMQ_GRPC_RESOURCE_EXHAUSTED, "out of memory");
		rustmq__controller__describe_cluster_request__free_unpacked(req, NULL);
		return;
	}
	r.cluster_id = (char *)rmq_cluster_id(bs);
	r.controller_id = q.leader_id;
	r.controller_epoch = q.term;
	r.brokers = brokers.v;
	r.n_brokers = brokers.n;
	r.controller_voter_ids = voters;
	r.n_controller_voter_ids = q.n;
	r.metadata_offset = bs->meta->version;
	r.topic_count = (uint32_t)bs->meta->ntopics;
	for (size_t i = 0; i < bs->meta->ntopics; i++)
		r.partition_count += bs->meta->topics[i].partitions;
	rmq_reply_pb(c, &r.base);
	rmq_brokers_free(&brokers);
	rustmq__controller__describe_cluster_request__free_unpacked(req, NULL);
}

/* ---- what this node does not serve yet --------------------------------------------- */

static const struct {
	const char *prefix;
	const char *what;
} not_served[] = {
	{"/rustmq.client.ProducerService/", "transactions (CommitTransaction, AbortTransaction) are not served by this version of rmq yet; InitTransaction without a transactional id gives an idempotent producer id"},
	{"/rustmq.streaming.StreamingService/", "the streaming service (InteractiveQuery, Subscribe, BulkLoad) is not served by this version of rmq yet; use ConsumerService.Subscribe and ProducerService.ProduceStream"},
};

void rmq_not_served(struct rmq_call *c, const uint8_t *msg, size_t len)
{
	const char *path = rmq_call_method(c)->path;
	(void)msg;
	(void)len;
	for (size_t i = 0; i < RMQ_ARRAY_SIZE(not_served); i++) {
		if (strncmp(path, not_served[i].prefix, strlen(not_served[i].prefix)) == 0) {
			rmq_call_finishf(c, RMQ_GRPC_UNIMPLEMENTED, "%s: %s", path, not_served[i].what);
			return;
		}
	}
	rmq_call_finishf(c, RMQ_GRPC_UNIMPLEMENTED, "%s is not served by this version of rmq", path);
}

