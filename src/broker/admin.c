/* SPDX-License-Identifier: Apache-2.0 */
/*
 * admin.c - AdminService (topics, configs, cluster), MetadataService,
 * health (grpc.health.v1 and BrokerHealthService with GetMetrics), and the
 * answer of RPCs whose capability this node does not serve yet.
 *
 * Topic changes run on shard 0, one at a time (meta.h): the origin shard
 * posts a struct meta_change; shard 0 validates every item against its
 * snapshot, builds and saves the new snapshot, posts it to every shard
 * (each opens or closes the partitions it owns), waits for all of them,
 * then posts the result back.  So when CreateTopics answers OK, every
 * partition of the topic is open and accepts produce on every shard.
 *
 * Descriptions are answered from the receiving shard's own snapshot.  On
 * one node, this node leads every partition, is the controller and the
 * coordinator of everything, and says so.
 */
#include "broker/broker.h"

#include "broker/health.pb-c.h"
#include "client/metadata.pb-c.h"
#include "controller/admin.pb-c.h"
#include "core/error.h"
#include "core/log.h"
#include "core/util.h"
#include "grpc/health/v1/health.pb-c.h"

#include <errno.h>
#include <inttypes.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

int rmq_broker_apply_meta(struct rmq_bshard *bs, struct rmq_meta *m);

/* ---- describing this node and its topics ----------------------------------- */

struct self_info {
	Rustmq__Common__BrokerInfo bi;
	Rustmq__Common__BrokerId id;
	Google__Protobuf__Timestamp hb;
};

static void fill_self(struct rmq_bshard *bs, struct self_info *s)
{
	struct rmq_broker *b = bs->b;
	rustmq__common__broker_info__init(&s->bi);
	rustmq__common__broker_id__init(&s->id);
	google__protobuf__timestamp__init(&s->hb);
	s->id.id = (char *)b->cfg.node_id;
	s->bi.id = &s->id;
	s->bi.host = (char *)(b->cfg.advertised_host ? b->cfg.advertised_host : b->cfg.net.host);
	s->bi.port = atomic_load(&b->port);
	s->bi.state = atomic_load(&b->serving) ? RUSTMQ__COMMON__BROKER_STATE__BROKER_RUNNING
					       : RUSTMQ__COMMON__BROKER_STATE__BROKER_SHUTTING_DOWN;
	s->bi.epoch = 1;
	s->bi.shards = bs->nshards;
	s->bi.is_controller = true;
	uint64_t now = rmq_wall_ms();
	s->hb.seconds = (int64_t)(now / 1000);
	s->hb.nanos = (int32_t)(now % 1000) * 1000000;
	s->bi.last_heartbeat = &s->hb;
	s->bi.version = RMQ_VERSION;
}

/* TopicMetadata for topic t, allocated in a (freed by the caller). */
static Rustmq__Common__TopicMetadata *topic_md(struct rmq_bshard *bs, struct rmq_arena *a,
					       const struct rmq_topic *t, bool configs)
{
	Rustmq__Common__TopicMetadata *tm = rmq_arena_alloc(a, sizeof(*tm));
	Rustmq__Common__TopicConfig *tc = rmq_arena_alloc(a, sizeof(*tc));
	Google__Protobuf__Timestamp *ts = rmq_arena_alloc(a, sizeof(*ts));
	size_t n = t->partitions;
	Rustmq__Common__PartitionMetadata *pms = rmq_arena_alloc(a, n * sizeof(*pms));
	Rustmq__Common__PartitionMetadata **pps = rmq_arena_alloc(a, n * sizeof(*pps));
	Rustmq__Common__TopicPartition *tps = rmq_arena_alloc(a, n * sizeof(*tps));
	char **self = rmq_arena_alloc(a, sizeof(char *));
	Rustmq__Common__ConfigEntry *ces = rmq_arena_alloc(a, RMQ_TOPIC_CONFIG_KEYS * sizeof(*ces));
	Rustmq__Common__ConfigEntry **cps = rmq_arena_alloc(a, RMQ_TOPIC_CONFIG_KEYS * sizeof(*cps));
	char(*vals)[32] = rmq_arena_alloc(a, RMQ_TOPIC_CONFIG_KEYS * 32);
	if (!tm || !tc || !ts || !pms || !pps || !tps || !self || !ces || !cps || !vals)
		return NULL;
	rustmq__common__topic_metadata__init(tm);
	rustmq__common__topic_config__init(tc);
	google__protobuf__timestamp__init(ts);
	*self = (char *)bs->b->cfg.node_id;
	tm->name = (char *)t->name;
	tm->topic_id = (char *)t->id;
	tm->is_internal = t->internal;
	ts->seconds = (int64_t)(t->created_ms / 1000);
	ts->nanos = (int32_t)(t->created_ms % 1000) * 1000000;
	tm->created = ts;
	tc->partitions = t->partitions;
	tc->replication_factor = t->replication_factor;
	if (configs) {
		for (unsigned k = 0; k < RMQ_TOPIC_CONFIG_KEYS; k++) {
			rustmq__common__config_entry__init(&ces[k]);
			ces[k].name = (char *)rmq_topic_config_keys[k];
			rmq_topic_config_get(&t->cfg, k, vals[k], 32);
			ces[k].value = vals[k];
			ces[k].is_default = !(t->cfg.overrides & (1u << k));
			ces[k].documentation = (char *)rmq_topic_config_docs[k];
			cps[k] = &ces[k];
		}
		tc->configs = cps;
		tc->n_configs = RMQ_TOPIC_CONFIG_KEYS;
	}
	tm->config = tc;
	for (size_t p = 0; p < n; p++) {
		rustmq__common__partition_metadata__init(&pms[p]);
		rustmq__common__topic_partition__init(&tps[p]);
		tps[p].topic = (char *)t->name;
		tps[p].partition = (uint32_t)p;
		pms[p].topic_partition = &tps[p];
		pms[p].leader_id = (char *)bs->b->cfg.node_id;
		pms[p].leader_epoch = 1;
		pms[p].replica_ids = self;
		pms[p].n_replica_ids = 1;
		pms[p].isr_ids = self;
		pms[p].n_isr_ids = 1;
		pms[p].shard = rmq_partition_shard(t->name, (uint32_t)p, bs->nshards);
		pps[p] = &pms[p];
	}
	tm->partitions = pps;
	tm->n_partitions = n;
	return tm;
}

/* A TopicMetadata saying name is not found. */
static Rustmq__Common__TopicMetadata *missing_md(struct rmq_arena *a, const char *name)
{
	Rustmq__Common__TopicMetadata *tm = rmq_arena_alloc(a, sizeof(*tm));
	if (!tm)
		return NULL;
	rustmq__common__topic_metadata__init(tm);
	tm->name = (char *)name;
	tm->error_code = RUSTMQ__COMMON__ERROR_CODE__TOPIC_NOT_FOUND;
	return tm;
}

/* Fills topics[] for `names` (or every topic when n == 0).  Large answers
 * allocate per topic; arenas are chained in a list. */
struct md_list {
	Rustmq__Common__TopicMetadata **v;
	size_t n;
	struct rmq_arena *arenas;
	size_t narenas;
};

static int md_collect(struct rmq_bshard *bs, char **names, size_t nnames, bool configs,
		      bool internal, const char *prefix, struct md_list *out)
{
	size_t n = nnames ? nnames : bs->meta->ntopics;
	memset(out, 0, sizeof(*out));
	out->v = calloc(n ? n : 1, sizeof(*out->v));
	out->arenas = calloc(n ? n : 1, sizeof(*out->arenas));
	if (!out->v || !out->arenas)
		return -ENOMEM;
	for (size_t i = 0; i < n; i++) {
		struct rmq_arena *a = &out->arenas[out->narenas++];
		Rustmq__Common__TopicMetadata *tm;
		if (nnames) {
			long k = rmq_meta_find(bs->meta, names[i]);
			tm = k < 0 ? missing_md(a, names[i]) : topic_md(bs, a, &bs->meta->topics[k], configs);
		} else {
			const struct rmq_topic *t = &bs->meta->topics[i];
			if ((t->internal && !internal) || (prefix && strncmp(t->name, prefix, strlen(prefix)) != 0))
				continue;
			tm = topic_md(bs, a, t, configs);
		}
		if (!tm)
			return -ENOMEM;
		out->v[out->n++] = tm;
	}
	return 0;
}

static void md_free(struct md_list *l)
{
	for (size_t i = 0; i < l->narenas; i++)
		rmq_arena_free(&l->arenas[i]);
	free(l->arenas);
	free(l->v);
}

/* ---- MetadataService ----------------------------------------------------------- */

void rmq_md_topic_metadata(struct rmq_call *c, void *msg)
{
	struct rmq_bshard *bs = rmq_call_app(c);
	Rustmq__Client__GetTopicMetadataRequest *req = msg;
	Rustmq__Client__GetTopicMetadataResponse r = RUSTMQ__CLIENT__GET_TOPIC_METADATA_RESPONSE__INIT;
	struct self_info self;
	Rustmq__Common__BrokerInfo *brokers[1];
	struct md_list l;
	fill_self(bs, &self);
	brokers[0] = &self.bi;
	if (md_collect(bs, req->topics, req->n_topics, req->include_configs, true, NULL, &l) < 0) {
		rmq_call_finish(c, RMQ_GRPC_RESOURCE_EXHAUSTED, "out of memory");
	} else {
		r.topics = l.v;
		r.n_topics = l.n;
		r.brokers = brokers;
		r.n_brokers = 1;
		r.cluster_id = bs->b->cluster_id;
		r.controller_id = (char *)bs->b->cfg.node_id;
		r.metadata_version = bs->meta->version;
		rmq_reply_pb(c, &r.base);
	}
	md_free(&l);
	rustmq__client__get_topic_metadata_request__free_unpacked(req, NULL);
}

void rmq_md_list_topics(struct rmq_call *c, void *msg)
{
	struct rmq_bshard *bs = rmq_call_app(c);
	Rustmq__Client__ListTopicsRequest *req = msg;
	Rustmq__Client__ListTopicsResponse r = RUSTMQ__CLIENT__LIST_TOPICS_RESPONSE__INIT;
	struct md_list l;
	if (md_collect(bs, NULL, 0, false, req->include_internal,
		       req->name_prefix[0] ? req->name_prefix : NULL, &l) < 0) {
		rmq_call_finish(c, RMQ_GRPC_RESOURCE_EXHAUSTED, "out of memory");
	} else {
		/* metadata.proto: "partitions and config.configs empty". */
		for (size_t i = 0; i < l.n; i++)
			l.v[i]->n_partitions = 0;
		r.topics = l.v;
		r.n_topics = l.n;
		r.metadata_version = bs->meta->version;
		rmq_reply_pb(c, &r.base);
	}
	md_free(&l);
	rustmq__client__list_topics_request__free_unpacked(req, NULL);
}

void rmq_md_broker_list(struct rmq_call *c, void *msg)
{
	struct rmq_bshard *bs = rmq_call_app(c);
	Rustmq__Client__GetBrokerListRequest *req = msg;
	Rustmq__Client__GetBrokerListResponse r = RUSTMQ__CLIENT__GET_BROKER_LIST_RESPONSE__INIT;
	struct self_info self;
	Rustmq__Common__BrokerInfo *brokers[1];
	fill_self(bs, &self);
	brokers[0] = &self.bi;
	r.brokers = brokers;
	r.n_brokers = 1;
	r.cluster_id = bs->b->cluster_id;
	r.controller_id = (char *)bs->b->cfg.node_id;
	r.metadata_version = bs->meta->version;
	rmq_reply_pb(c, &r.base);
	rustmq__client__get_broker_list_request__free_unpacked(req, NULL);
}

void rmq_md_partition_leader(struct rmq_call *c, void *msg)
{
	struct rmq_bshard *bs = rmq_call_app(c);
	Rustmq__Client__GetPartitionLeaderRequest *req = msg;
	Rustmq__Client__GetPartitionLeaderResponse r = RUSTMQ__CLIENT__GET_PARTITION_LEADER_RESPONSE__INIT;
	struct self_info self;
	struct rmq_arena a = {.n = 0};
	char err[300];
	long k = req->topic_partition ? rmq_meta_find(bs->meta, req->topic_partition->topic) : -1;
	r.metadata_version = bs->meta->version;
	if (!req->topic_partition) {
		rmq_call_finish(c, RMQ_GRPC_INVALID_ARGUMENT, "topic_partition is required");
		goto out;
	}
	if (k < 0) {
		r.error_code = RUSTMQ__COMMON__ERROR_CODE__TOPIC_NOT_FOUND;
		snprintf(err, sizeof(err), "unknown topic '%s'", req->topic_partition->topic);
		r.error_message = err;
	} else if (req->topic_partition->partition >= bs->meta->topics[k].partitions) {
		r.error_code = RUSTMQ__COMMON__ERROR_CODE__PARTITION_NOT_FOUND;
		snprintf(err, sizeof(err), "topic '%s' has %u partitions", req->topic_partition->topic,
			 bs->meta->topics[k].partitions);
		r.error_message = err;
	} else {
		Rustmq__Common__TopicMetadata *tm = topic_md(bs, &a, &bs->meta->topics[k], false);
		if (!tm) {
			rmq_call_finish(c, RMQ_GRPC_RESOURCE_EXHAUSTED, "out of memory");
			goto out;
		}
		r.partition = tm->partitions[req->topic_partition->partition];
		fill_self(bs, &self);
		r.leader = &self.bi;
	}
	rmq_reply_pb(c, &r.base);
out:
	rmq_arena_free(&a);
	rustmq__client__get_partition_leader_request__free_unpacked(req, NULL);
}

void rmq_md_cluster_metadata(struct rmq_call *c, void *msg)
{
	struct rmq_bshard *bs = rmq_call_app(c);
	Rustmq__Client__GetClusterMetadataRequest *req = msg;
	Rustmq__Client__GetClusterMetadataResponse r = RUSTMQ__CLIENT__GET_CLUSTER_METADATA_RESPONSE__INIT;
	Rustmq__Common__ClusterMetadata cm = RUSTMQ__COMMON__CLUSTER_METADATA__INIT;
	struct self_info self;
	Rustmq__Common__BrokerInfo *brokers[1];
	struct md_list l = {0};
	fill_self(bs, &self);
	brokers[0] = &self.bi;
	cm.cluster_id = bs->b->cluster_id;
	cm.controller_id = (char *)bs->b->cfg.node_id;
	cm.controller_epoch = 1;
	cm.brokers = brokers;
	cm.n_brokers = 1;
	cm.metadata_version = bs->meta->version;
	if (req->include_topics && md_collect(bs, NULL, 0, false, true, NULL, &l) < 0) {
		rmq_call_finish(c, RMQ_GRPC_RESOURCE_EXHAUSTED, "out of memory");
	} else {
		cm.topics = l.v;
		cm.n_topics = l.n;
		r.metadata = &cm;
		rmq_reply_pb(c, &r.base);
	}
	md_free(&l);
	rustmq__client__get_cluster_metadata_request__free_unpacked(req, NULL);
}

void rmq_md_find_coordinator(struct rmq_call *c, void *msg)
{
	struct rmq_bshard *bs = rmq_call_app(c);
	Rustmq__Client__FindCoordinatorRequest *req = msg;
	Rustmq__Client__FindCoordinatorResponse r = RUSTMQ__CLIENT__FIND_COORDINATOR_RESPONSE__INIT;
	struct self_info self;
	size_t n = req->n_keys;
	Rustmq__Client__CoordinatorInfo *cs = calloc(n ? n : 1, sizeof(*cs));
	Rustmq__Client__CoordinatorInfo **cp = calloc(n ? n : 1, sizeof(*cp));
	if (!cs || !cp) {
		rmq_call_finish(c, RMQ_GRPC_RESOURCE_EXHAUSTED, "out of memory");
		goto out;
	}
	fill_self(bs, &self);
	for (size_t i = 0; i < n; i++) {
		rustmq__client__coordinator_info__init(&cs[i]);
		cs[i].key = req->keys[i];
		if (req->keys[i][0] == '\0') {
			cs[i].error_code = RUSTMQ__COMMON__ERROR_CODE__INVALID_REQUEST;
			cs[i].error_message = "empty key";
		} else {
			cs[i].broker = &self.bi; /* one node coordinates everything */
		}
		cp[i] = &cs[i];
	}
	r.coordinators = cp;
	r.n_coordinators = n;
	rmq_reply_pb(c, &r.base);
out:
	free(cs);
	free(cp);
	rustmq__client__find_coordinator_request__free_unpacked(req, NULL);
}

/* ---- topic changes on shard 0 ------------------------------------------------------- */

enum change_kind { CH_CREATE, CH_DELETE, CH_ALTER };

struct change_item {
	char name[RMQ_TOPIC_NAME_MAX + 2]; /* +1: over-long names are refused, not cut */
	char id[40];
	uint32_t partitions;
	uint32_t replication_factor;
	size_t nconf;
	char (*keys)[64];
	char (*vals)[256];
	int *ops;                  /* AlterConfigOp per entry (alter) */
	/* Result */
	int code;
	char err[320];
	struct rmq_topic result;   /* created / altered topic */
	bool found;
};

struct meta_change {
	struct rmq_xmsg msg;       /* origin -> shard 0 -> origin */
	enum change_kind kind;
	unsigned origin;
	bool validate_only;
	size_t n;
	struct change_item *items;
	struct rmq_meta *new_meta; /* NULL when nothing changes */
	int pending;               /* shards still applying */
	struct meta_change *next;  /* shard 0's queue */
	struct rmq_xmsg *applies;  /* one per shard */
	void (*done)(struct meta_change *ch); /* on the origin */
	struct rmq_call *call;
	void (*cb)(void *arg, int code, const char *msg); /* rmq_admin_create_one */
	void *cb_arg;
};

static struct meta_change *ch_head, *ch_tail; /* shard 0 only */
static bool ch_busy;                            /* shard 0 only */

static void change_free(struct meta_change *ch)
{
	for (size_t i = 0; i < ch->n; i++) {
		free(ch->items[i].keys);
		free(ch->items[i].vals);
		free(ch->items[i].ops);
	}
	free(ch->items);
	free(ch->applies);
	free(ch);
}

static void change_next(void);

static void change_back(struct rmq_xmsg *m)
{
	struct meta_change *ch = RMQ_CONTAINER_OF(m, struct meta_change, msg);
	ch->done(ch);
}

/* Shard 0: the change is complete everywhere (or failed validation). */
static void change_finish(struct meta_change *ch)
{
	if (ch->new_meta)
		rmq_meta_unref(ch->new_meta); /* shard 0's build reference */
	ch->msg.fn = change_back;
	rmq_shard_post(rmq_shard_current(), ch->origin, &ch->msg);
	ch_busy = false;
	change_next();
}

static void apply_ack(struct rmq_xmsg *m)
{
	struct meta_change *ch = *(struct meta_change **)(m + 1);
	(void)m;
	if (--ch->pending == 0)
		change_finish(ch);
}

/* Runs on every shard with the new snapshot. */
static void apply_here(struct rmq_xmsg *m)
{
	struct meta_change *ch = *(struct meta_change **)(m + 1);
	struct rmq_bshard *bs = rmq_bshard_current();
	int rc = rmq_broker_apply_meta(bs, ch->new_meta);
	if (rc < 0)
		rmq_error("applying topic metadata v%" PRIu64 ": %s", ch->new_meta->version,
			  rmq_strerror(rc));
	m->fn = apply_ack;
	rmq_shard_post(rmq_shard_current(), 0, m);
}

static bool valid_create(struct rmq_bshard *bs, const struct rmq_meta *m, struct change_item *it)
{
	const char *why;
	if (strlen(it->name) > RMQ_TOPIC_NAME_MAX || rmq_topic_name_check(it->name, &why) < 0) {
		it->code = EC_INVALID_TOPIC;
		snprintf(it->err, sizeof(it->err), "%s", strlen(it->name) > RMQ_TOPIC_NAME_MAX
								  ? "topic name is longer than 249 characters"
								  : why);
		return false;
	}
	if (rmq_meta_find(m, it->name) >= 0) {
		it->code = EC_TOPIC_ALREADY_EXISTS;
		snprintf(it->err, sizeof(it->err), "topic '%s' already exists", it->name);
		return false;
	}
	uint32_t parts = it->partitions ? it->partitions : bs->b->cfg.default_partitions;
	if (parts == 0 || parts > RMQ_PARTITIONS_MAX) {
		it->code = EC_INVALID_PARTITIONS;
		snprintf(it->err, sizeof(it->err), "partitions must be between 1 and %d", RMQ_PARTITIONS_MAX);
		return false;
	}
	uint32_t rf = it->replication_factor ? it->replication_factor : 1;
	if (rf != 1) {
		it->code = EC_INVALID_REPLICATION_FACTOR;
		snprintf(it->err, sizeof(it->err),
			 "replication factor %u exceeds the 1 broker of this cluster", rf);
		return false;
	}
	struct rmq_topic *t = &it->result;
	memset(t, 0, sizeof(*t));
	/* The name was checked (at most RMQ_TOPIC_NAME_MAX): it fits. */
	snprintf(t->name, sizeof(t->name), "%.*s", RMQ_TOPIC_NAME_MAX, it->name);
	rmq_uuid(t->id);
	t->partitions = parts;
	t->replication_factor = rf;
	t->created_ms = rmq_wall_ms();
	t->cfg = bs->b->cfg.topic_defaults;
	t->cfg.overrides = 0;
	for (size_t k = 0; k < it->nconf; k++) {
		if (rmq_topic_config_set(&t->cfg, it->keys[k], it->vals[k], it->err, sizeof(it->err)) < 0) {
			it->code = EC_INVALID_CONFIG;
			return false;
		}
	}
	return true;
}

static bool valid_alter(struct rmq_bshard *bs, struct rmq_meta *m, struct change_item *it)
{
	long k = rmq_meta_find(m, it->name);
	if (k < 0) {
		it->code = EC_TOPIC_NOT_FOUND;
		snprintf(it->err, sizeof(it->err), "unknown topic '%s'", it->name);
		return false;
	}
	struct rmq_topic t = m->topics[k];
	for (size_t i = 0; i < it->nconf; i++) {
		if (it->ops[i] == RUSTMQ__CONTROLLER__ALTER_CONFIG_OP__ALTER_CONFIG_OP_DELETE) {
			/* Back to the broker default for that key. */
			char v[64];
			unsigned key;
			for (key = 0; key < RMQ_TOPIC_CONFIG_KEYS; key++)
				if (strcmp(it->keys[i], rmq_topic_config_keys[key]) == 0)
					break;
			if (key == RMQ_TOPIC_CONFIG_KEYS) {
				it->code = EC_INVALID_CONFIG;
				snprintf(it->err, sizeof(it->err), "unknown configuration key '%s'", it->keys[i]);
				return false;
			}
			rmq_topic_config_get(&bs->b->cfg.topic_defaults, key, v, sizeof(v));
			uint32_t keep = t.cfg.overrides & ~(1u << key);
			rmq_topic_config_set(&t.cfg, it->keys[i], v, it->err, sizeof(it->err));
			t.cfg.overrides = keep;
		} else if (it->ops[i] == RUSTMQ__CONTROLLER__ALTER_CONFIG_OP__ALTER_CONFIG_OP_SET) {
			if (rmq_topic_config_set(&t.cfg, it->keys[i], it->vals[i], it->err, sizeof(it->err)) < 0) {
				it->code = EC_INVALID_CONFIG;
				return false;
			}
		} else {
			it->code = EC_INVALID_CONFIG;
			snprintf(it->err, sizeof(it->err), "'%s' is not a list-valued key: use SET or DELETE",
				 it->keys[i]);
			return false;
		}
	}
	it->result = t;
	return true;
}

/* Shard 0: validates ch against the current snapshot and, unless nothing
 * changes, builds, saves and fans out the new one. */
static void change_run(struct meta_change *ch)
{
	struct rmq_bshard *bs = rmq_bshard_current();
	struct rmq_meta *m = bs->meta;
	size_t ok = 0;

	ch_busy = true;
	struct rmq_meta *nm = rmq_meta_copy(m, ch->kind == CH_CREATE ? ch->n : 0);
	if (!nm) {
		for (size_t i = 0; i < ch->n; i++) {
			ch->items[i].code = EC_RESOURCE_EXHAUSTED;
			snprintf(ch->items[i].err, sizeof(ch->items[i].err), "out of memory");
		}
		change_finish(ch);
		return;
	}
	for (size_t i = 0; i < ch->n; i++) {
		struct change_item *it = &ch->items[i];
		if (it->code != EC_OK)
			continue; /* refused by the origin already */
		switch (ch->kind) {
		case CH_CREATE:
			if (valid_create(bs, nm, it)) {
				ok++;
				if (!ch->validate_only)
					rmq_meta_insert(nm, &it->result);
			}
			break;
		case CH_DELETE: {
			long k = it->name[0] ? rmq_meta_find(nm, it->name) : -1;
			if (k < 0 && it->id[0]) {
				for (size_t j = 0; j < nm->ntopics; j++)
					if (strcmp(nm->topics[j].id, it->id) == 0)
						k = (long)j;
			}
			if (k < 0) {
				it->code = EC_TOPIC_NOT_FOUND;
				snprintf(it->err, sizeof(it->err), "unknown topic '%s'", it->name[0] ? it->name : it->id);
			} else if (nm->topics[k].internal) {
				it->code = EC_POLICY_VIOLATION;
				snprintf(it->err, sizeof(it->err), "internal topics cannot be deleted");
			} else {
				it->result = nm->topics[k];
				rmq_meta_remove(nm, (size_t)k);
				ok++;
			}
			break;
		}
		case CH_ALTER:
			if (valid_alter(bs, nm, it)) {
				ok++;
				if (!ch->validate_only)
					nm->topics[rmq_meta_find(nm, it->name)] = it->result;
			}
			break;
		}
	}
	if (ok == 0 || ch->validate_only) {
		free(nm->topics);
		free(nm);
		change_finish(ch);
		return;
	}
	int rc = rmq_meta_save(bs->b->cfg.data_dir, nm);
	if (rc < 0) {
		rmq_error("cannot save topic metadata: %s", rmq_strerror(rc));
		for (size_t i = 0; i < ch->n; i++) {
			if (ch->items[i].code == EC_OK) {
				ch->items[i].code = EC_STORAGE_ERROR;
				snprintf(ch->items[i].err, sizeof(ch->items[i].err),
					 "metadata could not be saved: %s", rmq_strerror(rc));
			}
		}
		free(nm->topics);
		free(nm);
		change_finish(ch);
		return;
	}
	for (size_t i = 0; i < ch->n; i++) {
		if (ch->items[i].code == EC_OK)
			rmq_info("topic %s %s (%u partitions)", ch->items[i].result.name,
				 ch->kind == CH_CREATE ? "created" : ch->kind == CH_DELETE ? "deleted" : "altered",
				 ch->items[i].result.partitions);
	}
	ch->new_meta = nm;
	rmq_meta_ref(nm); /* shard 0's build reference, dropped in change_finish */
	ch->pending = (int)bs->nshards;
	for (unsigned s = 0; s < bs->nshards; s++) {
		struct rmq_xmsg *am = (struct rmq_xmsg *)((char *)ch->applies + s * (sizeof(struct rmq_xmsg) + sizeof(void *)));
		*(struct meta_change **)(am + 1) = ch;
		am->fn = apply_here;
		rmq_shard_post(rmq_shard_current(), s, am);
	}
}

static void change_next(void)
{
	if (ch_busy || !ch_head)
		return;
	struct meta_change *ch = ch_head;
	ch_head = ch->next;
	if (!ch_head)
		ch_tail = NULL;
	change_run(ch);
}

static void change_arrive(struct rmq_xmsg *m)
{
	struct meta_change *ch = RMQ_CONTAINER_OF(m, struct meta_change, msg);
	ch->next = NULL;
	if (ch_tail)
		ch_tail->next = ch;
	else
		ch_head = ch;
	ch_tail = ch;
	change_next();
}

static struct meta_change *change_new(struct rmq_bshard *bs, enum change_kind kind, size_t n)
{
	struct meta_change *ch = calloc(1, sizeof(*ch));
	if (!ch)
		return NULL;
	ch->items = calloc(n ? n : 1, sizeof(*ch->items));
	ch->applies = calloc(bs->nshards, sizeof(struct rmq_xmsg) + sizeof(void *));
	if (!ch->items || !ch->applies) {
		free(ch->items);
		free(ch->applies);
		free(ch);
		return NULL;
	}
	ch->kind = kind;
	ch->n = n;
	ch->origin = bs->id;
	return ch;
}

static void change_submit(struct rmq_bshard *bs, struct meta_change *ch)
{
	ch->msg.fn = change_arrive;
	rmq_shard_post(bs->s, 0, &ch->msg);
}

static int item_configs(struct change_item *it, size_t n)
{
	it->nconf = n;
	it->keys = calloc(n ? n : 1, sizeof(*it->keys));
	it->vals = calloc(n ? n : 1, sizeof(*it->vals));
	it->ops = calloc(n ? n : 1, sizeof(*it->ops));
	return it->keys && it->vals && it->ops ? 0 : -ENOMEM;
}

/* ---- AdminService: topics ----------------------------------------------------------- */

static int config_entry_cmp(const void *x, const void *y)
{
	const Rustmq__Common__ConfigEntry *const *a = x, *const *b = y;
	return strcmp((*a)->name, (*b)->name);
}

/* Every key of t's configuration, by name (admin.proto: "effective values,
 * by name"). */
static Rustmq__Common__ConfigEntry **effective_configs(const struct rmq_topic *t, struct rmq_arena *a,
						       size_t *n)
{
	Rustmq__Common__ConfigEntry *ces = rmq_arena_alloc(a, RMQ_TOPIC_CONFIG_KEYS * sizeof(*ces));
	Rustmq__Common__ConfigEntry **cps = rmq_arena_alloc(a, RMQ_TOPIC_CONFIG_KEYS * sizeof(*cps));
	char(*vals)[32] = rmq_arena_alloc(a, RMQ_TOPIC_CONFIG_KEYS * 32);
	if (!ces || !cps || !vals)
		return NULL;
	for (unsigned k = 0; k < RMQ_TOPIC_CONFIG_KEYS; k++) {
		rustmq__common__config_entry__init(&ces[k]);
		ces[k].name = (char *)rmq_topic_config_keys[k];
		rmq_topic_config_get(&t->cfg, k, vals[k], 32);
		ces[k].value = vals[k];
		ces[k].is_default = !(t->cfg.overrides & (1u << k));
		ces[k].documentation = (char *)rmq_topic_config_docs[k];
		cps[k] = &ces[k];
	}
	qsort(cps, RMQ_TOPIC_CONFIG_KEYS, sizeof(*cps), config_entry_cmp);
	*n = RMQ_TOPIC_CONFIG_KEYS;
	return cps;
}

static void create_done(struct meta_change *ch)
{
	Rustmq__Controller__CreateTopicsResponse r = RUSTMQ__CONTROLLER__CREATE_TOPICS_RESPONSE__INIT;
	Rustmq__Controller__CreateTopicResult *rs = calloc(ch->n ? ch->n : 1, sizeof(*rs));
	Rustmq__Controller__CreateTopicResult **rp = calloc(ch->n ? ch->n : 1, sizeof(*rp));
	struct rmq_arena *arenas = calloc(ch->n ? ch->n : 1, sizeof(*arenas));
	if (!rs || !rp || !arenas) {
		rmq_call_finish(ch->call, RMQ_GRPC_RESOURCE_EXHAUSTED, "out of memory");
		goto out;
	}
	for (size_t i = 0; i < ch->n; i++) {
		struct change_item *it = &ch->items[i];
		rustmq__controller__create_topic_result__init(&rs[i]);
		rs[i].name = it->name;
		rs[i].error_code = (Rustmq__Common__ErrorCode)it->code;
		rs[i].error_message = it->err;
		if (it->code == EC_OK) {
			rs[i].topic_id = ch->validate_only ? "" : it->result.id;
			rs[i].partitions = it->result.partitions;
			rs[i].replication_factor = it->result.replication_factor;
			rs[i].configs = effective_configs(&it->result, &arenas[i], &rs[i].n_configs);
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
	change_free(ch);
}

void rmq_admin_create_topics(struct rmq_call *c, void *msg)
{
	struct rmq_bshard *bs = rmq_call_app(c);
	Rustmq__Controller__CreateTopicsRequest *req = msg;
	struct meta_change *ch = change_new(bs, CH_CREATE, req->n_topics);
	if (!ch)
		goto nomem;
	ch->validate_only = req->validate_only;
	for (size_t i = 0; i < req->n_topics; i++) {
		const Rustmq__Controller__CreatableTopic *t = req->topics[i];
		struct change_item *it = &ch->items[i];
		snprintf(it->name, sizeof(it->name), "%s", t->name);
		it->partitions = t->partitions;
		it->replication_factor = t->replication_factor;
		if (t->n_assignments > 0 && it->code == EC_OK) {
			it->code = EC_INVALID_REQUEST;
			snprintf(it->err, sizeof(it->err), "manual replica assignments need a cluster; leave them empty");
		}
		if (item_configs(it, t->n_configs) < 0)
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
		change_free(ch);
		return;
	}
	ch->call = c;
	rmq_call_ref(c);
	ch->done = create_done;
	change_submit(bs, ch);
	return;
nomem:
	if (ch)
		change_free(ch);
	rustmq__controller__create_topics_request__free_unpacked(req, NULL);
	rmq_call_finish(c, RMQ_GRPC_RESOURCE_EXHAUSTED, "out of memory");
}

static void create_one_done(struct meta_change *ch)
{
	ch->cb(ch->cb_arg, ch->items[0].code, ch->items[0].err);
	change_free(ch);
}

int rmq_admin_create_one(struct rmq_bshard *bs, const char *name, uint32_t partitions,
			 void (*cb)(void *arg, int code, const char *msg), void *arg)
{
	struct meta_change *ch = change_new(bs, CH_CREATE, 1);
	if (!ch)
		return -ENOMEM;
	snprintf(ch->items[0].name, sizeof(ch->items[0].name), "%s", name);
	ch->items[0].partitions = partitions;
	ch->done = create_one_done;
	ch->cb = cb;
	ch->cb_arg = arg;
	change_submit(bs, ch);
	return 0;
}

static void delete_done(struct meta_change *ch)
{
	Rustmq__Controller__DeleteTopicsResponse r = RUSTMQ__CONTROLLER__DELETE_TOPICS_RESPONSE__INIT;
	Rustmq__Controller__DeleteTopicResult *rs = calloc(ch->n ? ch->n : 1, sizeof(*rs));
	Rustmq__Controller__DeleteTopicResult **rp = calloc(ch->n ? ch->n : 1, sizeof(*rp));
	if (!rs || !rp) {
		rmq_call_finish(ch->call, RMQ_GRPC_RESOURCE_EXHAUSTED, "out of memory");
	} else {
		for (size_t i = 0; i < ch->n; i++) {
			struct change_item *it = &ch->items[i];
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
	change_free(ch);
}

void rmq_admin_delete_topics(struct rmq_call *c, void *msg)
{
	struct rmq_bshard *bs = rmq_call_app(c);
	Rustmq__Controller__DeleteTopicsRequest *req = msg;
	size_t n = req->n_names + req->n_topic_ids;
	struct meta_change *ch = change_new(bs, CH_DELETE, n);
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
	change_submit(bs, ch);
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
	for (size_t i = 0; i < n; i++) {
		const struct rmq_topic *t = &bs->meta->topics[i];
		if ((t->internal && !req->include_internal) ||
		    strncmp(t->name, req->name_prefix, strlen(req->name_prefix)) != 0)
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
	struct md_list l;
	if (md_collect(bs, req->names, req->n_names, req->include_configs, true, NULL, &l) < 0) {
		rmq_call_finish(c, RMQ_GRPC_RESOURCE_EXHAUSTED, "out of memory");
	} else {
		r.topics = l.v;
		r.n_topics = l.n;
		r.metadata_offset = bs->meta->version;
		rmq_reply_pb(c, &r.base);
	}
	md_free(&l);
	rustmq__controller__describe_topics_request__free_unpacked(req, NULL);
}

/* ---- AdminService: configs and cluster ----------------------------------------------- */

static void alter_done(struct meta_change *ch)
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
	change_free(ch);
}

void rmq_admin_alter_configs(struct rmq_call *c, void *msg)
{
	struct rmq_bshard *bs = rmq_call_app(c);
	Rustmq__Controller__AlterConfigsRequest *req = msg;
	struct meta_change *ch = change_new(bs, CH_ALTER, req->n_resources);
	if (!ch)
		goto nomem;
	ch->validate_only = req->validate_only;
	for (size_t i = 0; i < req->n_resources; i++) {
		const Rustmq__Controller__AlterConfigsResource *ar = req->resources[i];
		struct change_item *it = &ch->items[i];
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
		if (item_configs(it, ar->n_configs) < 0)
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
	change_submit(bs, ch);
	return;
nomem:
	if (ch)
		change_free(ch);
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
			rs[i].error_code = RUSTMQ__COMMON__ERROR_CODE__INVALID_REQUEST;
			snprintf(errs[i], 200, "only topic configurations are described; broker settings are rmqd flags (rmqd --help)");
			rs[i].error_message = errs[i];
			continue;
		}
		long k = rmq_meta_find(bs->meta, dr->resource->name);
		if (k < 0) {
			rs[i].error_code = RUSTMQ__COMMON__ERROR_CODE__TOPIC_NOT_FOUND;
			snprintf(errs[i], 200, "unknown topic '%s'", dr->resource->name);
			rs[i].error_message = errs[i];
			continue;
		}
		size_t nc;
		Rustmq__Common__ConfigEntry **all = effective_configs(&bs->meta->topics[k], &arenas[i], &nc);
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
	struct self_info self;
	Rustmq__Common__BrokerInfo *brokers[1];
	char *voters[1] = {(char *)bs->b->cfg.node_id};
	fill_self(bs, &self);
	brokers[0] = &self.bi;
	r.cluster_id = bs->b->cluster_id;
	r.controller_id = (char *)bs->b->cfg.node_id;
	r.controller_epoch = 1;
	r.brokers = brokers;
	r.n_brokers = 1;
	r.controller_voter_ids = voters;
	r.n_controller_voter_ids = 1;
	r.metadata_offset = bs->meta->version;
	r.topic_count = (uint32_t)bs->meta->ntopics;
	for (size_t i = 0; i < bs->meta->ntopics; i++)
		r.partition_count += bs->meta->topics[i].partitions;
	rmq_reply_pb(c, &r.base);
	rustmq__controller__describe_cluster_request__free_unpacked(req, NULL);
}

void rmq_admin_cancel(struct rmq_call *c)
{
	(void)c; /* topic changes complete anyway; the answer is dropped */
}

/* ---- health ---------------------------------------------------------------------- */

/* Per-shard numbers, gathered by message (each shard reads only its own). */
struct shard_numbers {
	uint64_t produce_requests, produce_records, fetch_requests, fetch_bytes, errors;
	uint64_t fetch_disk_bytes, fetch_ahead_bytes;
	uint64_t partitions, connections, calls, protocol_errors;
	uint64_t log_bytes, segment_rolls, segments_recycled, segments_deleted;
	struct rmq_lat_hist produce_latency;
	struct rmq_log_metrics log;
};

struct gather {
	struct rmq_call *call;
	unsigned origin, n;
	int pending;
	struct shard_numbers *nums;
	struct rmq_xmsg *msgs;           /* one per shard, followed by a back pointer */
	void (*done)(struct gather *g);
	void *req;                       /* the decoded request */
};

static void gather_back(struct rmq_xmsg *m)
{
	struct gather *g = *(struct gather **)(m + 1);
	if (--g->pending == 0)
		g->done(g);
}

static void gather_here(struct rmq_xmsg *m)
{
	struct gather *g = *(struct gather **)(m + 1);
	struct rmq_bshard *bs = rmq_bshard_current();
	struct shard_numbers *n = &g->nums[bs->id];
	n->produce_requests = bs->produce_requests;
	n->produce_records = bs->produce_records;
	n->fetch_requests = bs->fetch_requests;
	n->fetch_bytes = bs->fetch_bytes;
	n->fetch_disk_bytes = bs->fetch_disk_bytes;
	n->fetch_ahead_bytes = bs->fetch_ahead_bytes;
	n->errors = bs->errors;
	n->produce_latency = bs->produce_latency;
	n->log = bs->log_metrics;
	for (size_t i = 0; i < bs->meta->ntopics; i++)
		for (uint32_t p = 0; bs->local[i].parts && p < bs->meta->topics[i].partitions; p++)
			if (bs->local[i].parts[p]) {
				const struct rmq_log *log = bs->local[i].parts[p]->log;
				n->partitions++;
				n->log_bytes += rmq_log_size_bytes(log);
				n->segment_rolls += rmq_log_stats(log)->rolls;
				n->segments_recycled += rmq_log_stats(log)->recycled_segments;
				n->segments_deleted += rmq_log_stats(log)->deleted_segments;
			}
	if (bs->srv) {
		const struct rmq_server_stats *st = rmq_server_stats(bs->srv);
		n->connections = st->connections;
		n->calls = st->calls;
		n->protocol_errors = st->protocol_errors;
	}
	m->fn = gather_back;
	rmq_shard_post(rmq_shard_current(), g->origin, m);
}

static int gather_start(struct rmq_bshard *bs, struct rmq_call *c, void *req,
			void (*done)(struct gather *g))
{
	struct gather *g = calloc(1, sizeof(*g));
	size_t stride = sizeof(struct rmq_xmsg) + sizeof(void *);
	if (!g)
		return -ENOMEM;
	g->nums = calloc(bs->nshards, sizeof(*g->nums));
	g->msgs = calloc(bs->nshards, stride);
	if (!g->nums || !g->msgs) {
		free(g->nums);
		free(g->msgs);
		free(g);
		return -ENOMEM;
	}
	g->call = c;
	rmq_call_ref(c);
	g->origin = bs->id;
	g->n = bs->nshards;
	g->pending = (int)bs->nshards;
	g->done = done;
	g->req = req;
	for (unsigned s = 0; s < bs->nshards; s++) {
		struct rmq_xmsg *m = (struct rmq_xmsg *)((char *)g->msgs + s * stride);
		*(struct gather **)(m + 1) = g;
		m->fn = gather_here;
		rmq_shard_post(rmq_shard_current(), s, m);
	}
	return 0;
}

static void gather_free(struct gather *g)
{
	rmq_call_unref(g->call);
	free(g->nums);
	free(g->msgs);
	free(g);
}

/* grpc.health.v1: "" and every served service name are SERVING while the
 * node accepts calls, NOT_SERVING while it shuts down. */
static const char *const served_services[] = {
	"rustmq.client.ProducerService", "rustmq.client.ConsumerService",
	"rustmq.client.MetadataService", "rustmq.controller.AdminService",
	"rustmq.broker.BrokerHealthService", "grpc.health.v1.Health",
};

static int health_of(struct rmq_bshard *bs, const char *service)
{
	bool known = service[0] == '\0';
	for (size_t i = 0; i < RMQ_ARRAY_SIZE(served_services) && !known; i++)
		known = strcmp(service, served_services[i]) == 0;
	if (!known)
		return GRPC__HEALTH__V1__HEALTH_CHECK_RESPONSE__SERVING_STATUS__SERVICE_UNKNOWN;
	return atomic_load(&bs->b->serving) ? GRPC__HEALTH__V1__HEALTH_CHECK_RESPONSE__SERVING_STATUS__SERVING
					    : GRPC__HEALTH__V1__HEALTH_CHECK_RESPONSE__SERVING_STATUS__NOT_SERVING;
}

void rmq_health_check(struct rmq_call *c, void *msg)
{
	struct rmq_bshard *bs = rmq_call_app(c);
	Grpc__Health__V1__HealthCheckRequest *req = msg;
	int st = health_of(bs, req->service);
	if (st == GRPC__HEALTH__V1__HEALTH_CHECK_RESPONSE__SERVING_STATUS__SERVICE_UNKNOWN) {
		/* The standard says: NOT_FOUND for an unknown service on Check. */
		rmq_call_finishf(c, RMQ_GRPC_NOT_FOUND, "unknown service '%s'", req->service);
	} else {
		Grpc__Health__V1__HealthCheckResponse r = GRPC__HEALTH__V1__HEALTH_CHECK_RESPONSE__INIT;
		r.status = st;
		rmq_reply_pb(c, &r.base);
	}
	grpc__health__v1__health_check_request__free_unpacked(req, NULL);
}

/* Watch: the current status now, then again when it changes; the node's
 * status changes once, when it starts shutting down, and the stream ends
 * with the server's shutdown. */
void rmq_health_watch(struct rmq_call *c, void *msg)
{
	struct rmq_bshard *bs = rmq_call_app(c);
	Grpc__Health__V1__HealthCheckRequest *req = msg;
	Grpc__Health__V1__HealthCheckResponse r = GRPC__HEALTH__V1__HEALTH_CHECK_RESPONSE__INIT;
	r.status = health_of(bs, req->service);
	grpc__health__v1__health_check_request__free_unpacked(req, NULL);
	int rc = rmq_send_pb(c, &r.base);
	if (rc < 0 && rc != RMQ_ECLOSED)
		rmq_call_finishf(c, RMQ_GRPC_INTERNAL, "watch: %s", rmq_strerror(rc));
	/* Left open: the call ends when the client cancels or at shutdown
	 * (rmq_server_drained cancels it after sending NOT_SERVING below). */
}

void rmq_health_watch_cancel(struct rmq_call *c)
{
	(void)c;
}

static void broker_health_done(struct gather *g)
{
	struct rmq_bshard *bs = rmq_bshard_current();
	Rustmq__Broker__HealthCheckRequest *req = g->req;
	Rustmq__Broker__HealthCheckResponse r = RUSTMQ__BROKER__HEALTH_CHECK_RESPONSE__INIT;
	Google__Protobuf__Timestamp now = GOOGLE__PROTOBUF__TIMESTAMP__INIT;
	size_t nc = 2 + g->n;
	Rustmq__Broker__ComponentHealth *cs = calloc(nc, sizeof(*cs));
	Rustmq__Broker__ComponentHealth **cp = calloc(nc, sizeof(*cp));
	Rustmq__Broker__ComponentHealth__DetailsEntry *de = calloc(nc * 4, sizeof(*de));
	Rustmq__Broker__ComponentHealth__DetailsEntry **dp = calloc(nc * 4, sizeof(*dp));
	char(*vals)[32] = calloc(nc * 4, 32);
	char(*names)[24] = calloc(nc, 24);
	bool serving = atomic_load(&bs->b->serving);
	uint64_t wall = rmq_wall_ms();

	if (!cs || !cp || !de || !dp || !vals || !names) {
		rmq_call_finish(g->call, RMQ_GRPC_RESOURCE_EXHAUSTED, "out of memory");
		goto out;
	}
	uint64_t parts = 0, bytes = 0, conns = 0, calls = 0;
	for (unsigned s = 0; s < g->n; s++) {
		parts += g->nums[s].partitions;
		bytes += g->nums[s].log_bytes;
		conns += g->nums[s].connections;
		calls += g->nums[s].calls;
	}
	size_t d = 0, k = 0;
#define DETAIL(comp, name_, fmt, val)                                                 \
	do {                                                                          \
		rustmq__broker__component_health__details_entry__init(&de[d]);        \
		de[d].key = name_;                                                    \
		snprintf(vals[d], 32, fmt, val);                                      \
		de[d].value = vals[d];                                                \
		dp[d] = &de[d];                                                       \
		if (!(comp)->details)                                                 \
			(comp)->details = &dp[d];                                     \
		(comp)->n_details++;                                                  \
		d++;                                                                  \
	} while (0)
	int status = serving ? RUSTMQ__BROKER__HEALTH_STATUS__HEALTH_STATUS_SERVING
			     : RUSTMQ__BROKER__HEALTH_STATUS__HEALTH_STATUS_NOT_SERVING;
	/* storage */
	rustmq__broker__component_health__init(&cs[k]);
	cs[k].component = RUSTMQ__BROKER__HEALTH_COMPONENT__HEALTH_COMPONENT_STORAGE;
	cs[k].name = "storage";
	cs[k].status = status;
	if (req->include_details) {
		DETAIL(&cs[k], "partitions", "%" PRIu64, parts);
		DETAIL(&cs[k], "log_bytes", "%" PRIu64, bytes);
	}
	cp[k] = &cs[k];
	k++;
	/* network */
	rustmq__broker__component_health__init(&cs[k]);
	cs[k].component = RUSTMQ__BROKER__HEALTH_COMPONENT__HEALTH_COMPONENT_NETWORK;
	cs[k].name = "network";
	cs[k].status = status;
	if (req->include_details) {
		DETAIL(&cs[k], "connections", "%" PRIu64, conns);
		DETAIL(&cs[k], "calls", "%" PRIu64, calls);
	}
	cp[k] = &cs[k];
	k++;
	for (unsigned s = 0; s < g->n; s++) {
		rustmq__broker__component_health__init(&cs[k]);
		cs[k].component = RUSTMQ__BROKER__HEALTH_COMPONENT__HEALTH_COMPONENT_SHARD;
		snprintf(names[s], 24, "shard-%u", s);
		cs[k].name = names[s];
		cs[k].shard = s;
		cs[k].status = status;
		if (req->include_details) {
			DETAIL(&cs[k], "partitions", "%" PRIu64, g->nums[s].partitions);
			DETAIL(&cs[k], "connections", "%" PRIu64, g->nums[s].connections);
		}
		cp[k] = &cs[k];
		k++;
	}
#undef DETAIL
	r.status = status;
	r.broker_id = (char *)bs->b->cfg.node_id;
	r.broker_epoch = 1;
	r.broker_state = serving ? RUSTMQ__COMMON__BROKER_STATE__BROKER_RUNNING
				 : RUSTMQ__COMMON__BROKER_STATE__BROKER_SHUTTING_DOWN;
	r.uptime_ms = wall - bs->b->started_ms;
	now.seconds = (int64_t)(wall / 1000);
	now.nanos = (int32_t)(wall % 1000) * 1000000;
	r.checked_at = &now;
	r.components = cp;
	r.n_components = k;
	r.software_version = RMQ_VERSION;
	rmq_reply_pb(g->call, &r.base);
out:
	free(cs);
	free(cp);
	free(de);
	free(dp);
	free(vals);
	free(names);
	rustmq__broker__health_check_request__free_unpacked(req, NULL);
	gather_free(g);
}

void rmq_broker_health(struct rmq_call *c, void *msg)
{
	struct rmq_bshard *bs = rmq_call_app(c);
	Rustmq__Broker__HealthCheckRequest *req = msg;
	if (gather_start(bs, c, req, broker_health_done) < 0) {
		rustmq__broker__health_check_request__free_unpacked(req, NULL);
		rmq_call_finish(c, RMQ_GRPC_RESOURCE_EXHAUSTED, "out of memory");
	}
}

struct metric_def {
	const char *name, *help, *unit;
	int type;
	size_t off; /* in struct shard_numbers */
};

#define MDEF(n, h, u, t, f) {n, h, u, t, offsetof(struct shard_numbers, f)}
static const struct metric_def metric_defs[] = {
	MDEF("rmq_produce_requests_total", "produce appends handled", "requests", 1, produce_requests),
	MDEF("rmq_produce_records_total", "records appended", "records", 1, produce_records),
	MDEF("rmq_fetch_requests_total", "fetch requests answered", "requests", 1, fetch_requests),
	MDEF("rmq_fetch_bytes_total", "batch bytes read for fetches", "bytes", 1, fetch_bytes),
	MDEF("rmq_fetch_disk_bytes_total", "batch bytes fetches read from the disk (not in memory), read-ahead included", "bytes", 1, fetch_disk_bytes),
	MDEF("rmq_fetch_ahead_bytes_total", "batch bytes fetches took from a read-ahead", "bytes", 1, fetch_ahead_bytes),
	MDEF("rmq_request_errors_total", "produce requests answered with an error", "requests", 1, errors),
	MDEF("rmq_partitions", "partitions owned", "partitions", 2, partitions),
	MDEF("rmq_log_bytes", "bytes stored in partition logs", "bytes", 2, log_bytes),
	MDEF("rmq_segment_rolls_total", "segments rolled, partitions open now, since they opened", "segments", 1, segment_rolls),
	MDEF("rmq_segments_recycled_total", "new segments that took a deleted segment's file (--recycle-segments), partitions open now, since they opened", "segments", 1, segments_recycled),
	MDEF("rmq_segments_deleted_total", "segments deleted by retention, compaction or truncation, partitions open now, since they opened", "segments", 1, segments_deleted),
	MDEF("rmq_connections", "open client connections", "connections", 2, connections),
	MDEF("rmq_calls", "gRPC calls in flight", "calls", 2, calls),
	MDEF("rmq_protocol_errors_total", "connections closed for bad input", "connections", 1, protocol_errors),
	MDEF("rmq_produce_latency_us", "a produce append, from its request's arrival on the connection's shard to its answer (acknowledged appends only)", "us", 3, produce_latency),
	MDEF("rmq_log_ack_latency_us", "an append in a partition log, from the write buffer to acknowledged (write and sync per --fsync)", "us", 3, log.ack),
	MDEF("rmq_log_write_latency_us", "one data write of a partition log (with --dsync-writes: durable when done)", "us", 3, log.write),
	MDEF("rmq_log_sync_latency_us", "one fdatasync of a partition log (group commit)", "us", 3, log.sync),
	MDEF("rmq_segment_roll_latency_us", "a segment roll, from its start to the new segment taking appends (the partition's appends wait meanwhile)", "us", 3, log.roll),
};

/* Fills m's histogram fields from h: every bucket, cumulative, the last
 * +Inf (bounds are lathist.h's, the same on every node and every call, so a
 * scraper sees the same series each time).  bk and bp have room for
 * RMQ_LAT_BUCKETS.  Returns the buckets used. */
static size_t fill_histogram(Rustmq__Broker__Metric *m, const struct rmq_lat_hist *h,
			     Rustmq__Broker__HistogramBucket *bk, Rustmq__Broker__HistogramBucket **bp)
{
	uint64_t cum = 0;
	size_t k;

	for (k = 0; k < RMQ_LAT_BUCKETS; k++) {
		cum += h->n[k];
		rustmq__broker__histogram_bucket__init(&bk[k]);
		bk[k].upper_bound = k == RMQ_LAT_BUCKETS - 1 ? INFINITY : (double)rmq_lat_bound((unsigned)k);
		bk[k].cumulative_count = cum;
		bp[k] = &bk[k];
	}
	m->buckets = bp;
	m->n_buckets = k;
	m->sample_count = h->count;
	m->sample_sum = (double)h->sum_us;
	m->value = h->count ? (double)h->sum_us / (double)h->count : 0;
	return k;
}

static void metrics_done(struct gather *g)
{
	Rustmq__Broker__MetricsRequest *req = g->req;
	Rustmq__Broker__MetricsResponse r = RUSTMQ__BROKER__METRICS_RESPONSE__INIT;
	size_t nd = RMQ_ARRAY_SIZE(metric_defs), max = nd * g->n;
	Rustmq__Broker__Metric *ms = calloc(max, sizeof(*ms));
	Rustmq__Broker__Metric **mp = calloc(max, sizeof(*mp));
	Rustmq__Broker__Metric__LabelsEntry *ls = calloc(max, sizeof(*ls));
	Rustmq__Broker__Metric__LabelsEntry **lp = calloc(max, sizeof(*lp));
	char(*shard)[12] = calloc(g->n, 12);
	size_t nh = 0, kb = 0; /* histogram samples; buckets used */
	for (size_t i = 0; i < nd; i++)
		nh += metric_defs[i].type == RUSTMQ__BROKER__METRIC_TYPE__METRIC_TYPE_HISTOGRAM;
	nh *= g->n;
	Rustmq__Broker__HistogramBucket *bk = calloc(nh * RMQ_LAT_BUCKETS, sizeof(*bk));
	Rustmq__Broker__HistogramBucket **bp = calloc(nh * RMQ_LAT_BUCKETS, sizeof(*bp));
	Google__Protobuf__Timestamp now = GOOGLE__PROTOBUF__TIMESTAMP__INIT;
	uint64_t wall = rmq_wall_ms();
	size_t k = 0;

	if (!ms || !mp || !ls || !lp || !shard || !bk || !bp) {
		rmq_call_finish(g->call, RMQ_GRPC_RESOURCE_EXHAUSTED, "out of memory");
		goto out;
	}
	now.seconds = (int64_t)(wall / 1000);
	now.nanos = (int32_t)(wall % 1000) * 1000000;
	for (size_t i = 0; i < nd; i++) {
		const struct metric_def *md = &metric_defs[i];
		bool want = req->n_metric_names == 0;
		for (size_t q = 0; q < req->n_metric_names && !want; q++)
			want = strcmp(req->metric_names[q], md->name) == 0;
		if (!want || strncmp(md->name, req->name_prefix, strlen(req->name_prefix)) != 0)
			continue;
		for (unsigned s = 0; s < g->n; s++) {
			snprintf(shard[s], 12, "%u", s);
			/* label_filter: only "shard" exists. */
			bool keep = true;
			for (size_t f = 0; f < req->n_label_filter; f++)
				if (strcmp(req->label_filter[f]->key, "shard") != 0 ||
				    strcmp(req->label_filter[f]->value, shard[s]) != 0)
					keep = false;
			if (!keep)
				continue;
			rustmq__broker__metric__init(&ms[k]);
			rustmq__broker__metric__labels_entry__init(&ls[k]);
			ms[k].name = (char *)md->name;
			const char *field = (const char *)&g->nums[s] + md->off;
			if (md->type == RUSTMQ__BROKER__METRIC_TYPE__METRIC_TYPE_HISTOGRAM)
				kb += fill_histogram(&ms[k], (const struct rmq_lat_hist *)field,
						     &bk[kb], &bp[kb]);
			else
				ms[k].value = (double)*(const uint64_t *)field;
			ls[k].key = "shard";
			ls[k].value = shard[s];
			lp[k] = &ls[k];
			ms[k].labels = &lp[k];
			ms[k].n_labels = 1;
			ms[k].timestamp = &now;
			ms[k].type = md->type;
			if (req->include_help) {
				ms[k].help = (char *)md->help;
				ms[k].unit = (char *)md->unit;
			}
			mp[k] = &ms[k];
			k++;
		}
	}
	r.metrics = mp;
	r.n_metrics = k;
	rmq_reply_pb(g->call, &r.base);
out:
	free(ms);
	free(mp);
	free(ls);
	free(lp);
	free(shard);
	free(bk);
	free(bp);
	rustmq__broker__metrics_request__free_unpacked(req, NULL);
	gather_free(g);
}

void rmq_broker_metrics(struct rmq_call *c, void *msg)
{
	struct rmq_bshard *bs = rmq_call_app(c);
	Rustmq__Broker__MetricsRequest *req = msg;
	if (req->start_time) {
		rustmq__broker__metrics_request__free_unpacked(req, NULL);
		rmq_call_finish(c, RMQ_GRPC_INVALID_ARGUMENT,
				"this node keeps no metric history: leave start_time unset for current values");
		return;
	}
	if (gather_start(bs, c, req, metrics_done) < 0) {
		rustmq__broker__metrics_request__free_unpacked(req, NULL);
		rmq_call_finish(c, RMQ_GRPC_RESOURCE_EXHAUSTED, "out of memory");
	}
}

/* ---- what this node does not serve yet --------------------------------------------- */

static const struct {
	const char *prefix;
	const char *what;
} not_served[] = {
	{"/rustmq.client.ProducerService/", "transactions and producer ids (InitTransaction, CommitTransaction, AbortTransaction) are not served by this version of rmq yet; produce without a producer id works, and sequences sent with one are stored but not deduplicated"},
	{"/rustmq.controller.AdminService/", "leader elections (ElectLeaders) are not served: this rmq node runs alone and leads every partition"},
	{"/rustmq.broker.BrokerReplicationService/", "replication between brokers is not served: this rmq node runs alone"},
	{"/rustmq.broker.PartitionManagementService/", "partition assignment and migration are not served: this rmq node runs alone"},
	{"/rustmq.controller.ControllerRaftService/", "the Raft controller quorum is not served: this rmq node runs alone"},
	{"/rustmq.controller.ControllerBrokerService/", "broker registration with a controller is not served: this rmq node runs alone"},
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

/* AuthService.Authenticate: no SASL mechanism is configured on this node,
 * so every exchange is refused with the application error the protocol
 * defines for it (not a transport error: clients handle it as such). */
void rmq_auth_authenticate(struct rmq_call *c, void *msg)
{
	Rustmq__Common__AuthenticationRequest *req = msg;
	Rustmq__Common__AuthenticationResponse r = RUSTMQ__COMMON__AUTHENTICATION_RESPONSE__INIT;
	char err[300];
	r.authenticated = false;
	r.error_code = RUSTMQ__COMMON__ERROR_CODE__UNSUPPORTED_SASL_MECHANISM;
	snprintf(err, sizeof(err),
		 "mechanism '%s' is not enabled: this node runs without authentication, connect without credentials",
		 req->mechanism);
	r.error_message = err;
	rmq_reply_pb(c, &r.base);
	rustmq__common__authentication_request__free_unpacked(req, NULL);
}
