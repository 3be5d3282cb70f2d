/* SPDX-License-Identifier: Apache-2.0 */
/* describe.c - this node and its topics as the protocol describes them
 * (describe.h). */
#include "broker/describe.h"

#include "broker/cluster.h"
#include "core/util.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

void rmq_describe_self(struct rmq_bshard *bs, struct rmq_self_info *s)
{
	struct rmq_broker *b = bs->b;
	rustmq__common__broker_info__init(&s->bi);
	rustmq__common__broker_id__init(&s->id);
	google__protobuf__timestamp__init(&s->hb);
	s->id.id = (char *)rmq_cluster_self(bs);
	s->bi.id = &s->id;
	s->bi.host = (char *)(b->cfg.advertised_host ? b->cfg.advertised_host : b->cfg.net.host);
	s->bi.port = atomic_load(&b->port);
	s->bi.state = atomic_load(&b->serving) ? RUSTMQ__COMMON__BROKER_STATE__BROKER_RUNNING
					       : RUSTMQ__COMMON__BROKER_STATE__BROKER_SHUTTING_DOWN;
	s->bi.epoch = rmq_cluster_broker_epoch(bs);
	s->bi.shards = bs->nshards;
	struct rmq_quorum q;
	rmq_cluster_quorum(bs, &q);
	for (uint32_t k = 0; k < q.n; k++)
		s->bi.is_controller |= q.voters[k] == b->self; /* a voter (common/metadata.proto) */
	uint64_t now = rmq_wall_ms();
	s->hb.seconds = (int64_t)(now / 1000);
	s->hb.nanos = (int32_t)(now % 1000) * 1000000;
	s->bi.last_heartbeat = &s->hb;
	s->bi.version = RMQ_VERSION;
}

int rmq_describe_brokers(struct rmq_bshard *bs, struct rmq_brokers *out)
{
	const struct rmq_meta *m = bs->meta;
	struct rmq_quorum q;
	memset(out, 0, sizeof(*out));
	rmq_cluster_quorum(bs, &q);
	size_t cap = m->nbrokers + 1;
	out->v = rmq_arena_alloc(&out->a, cap * sizeof(*out->v));
	Rustmq__Common__BrokerInfo *bis = rmq_arena_alloc(&out->a, cap * sizeof(*bis));
	Rustmq__Common__BrokerId *ids = rmq_arena_alloc(&out->a, cap * sizeof(*ids));
	if (!out->v || !bis || !ids)
		return -ENOMEM;
	bool self_listed = false;
	for (size_t i = 0; i < m->nbrokers; i++) {
		const struct rmq_broker_rec *r = &m->brokers[i];
		if (r->id == bs->b->self) {
			/* This node as it is now (serving or shutting down). */
			rmq_describe_self(bs, &out->self);
			out->self.bi.state = atomic_load(&bs->b->serving) ? (Rustmq__Common__BrokerState)r->state
									 : RUSTMQ__COMMON__BROKER_STATE__BROKER_SHUTTING_DOWN;
			out->v[out->n++] = &out->self.bi;
			self_listed = true;
			continue;
		}
		Rustmq__Common__BrokerInfo *bi = &bis[i];
		rmq_meta_broker_info(r, bi, &ids[i]);
		for (uint32_t k = 0; k < q.n; k++)
			bi->is_controller |= q.voters[k] == r->id;
		out->v[out->n++] = bi;
	}
	if (!self_listed) { /* not registered yet */
		rmq_describe_self(bs, &out->self);
		out->v[out->n++] = &out->self.bi;
	}
	return 0;
}

void rmq_brokers_free(struct rmq_brokers *b)
{
	rmq_arena_free(&b->a);
}

Rustmq__Common__TopicMetadata *rmq_describe_topic(struct rmq_bshard *bs, struct rmq_arena *a,
						  const struct rmq_topic *t, bool configs)
{
	Rustmq__Common__TopicMetadata *tm = rmq_arena_alloc(a, sizeof(*tm));
	Rustmq__Common__TopicConfig *tc = rmq_arena_alloc(a, sizeof(*tc));
	Google__Protobuf__Timestamp *ts = rmq_arena_alloc(a, sizeof(*ts));
	size_t n = t->partitions;
	Rustmq__Common__PartitionMetadata *pms = rmq_arena_alloc(a, n * sizeof(*pms));
	Rustmq__Common__PartitionMetadata **pps = rmq_arena_alloc(a, n * sizeof(*pps));
	Rustmq__Common__TopicPartition *tps = rmq_arena_alloc(a, n * sizeof(*tps));
	/* Leader, replica and ISR ids: at most RMQ_REPLICAS_MAX each. */
	size_t rf = 1;
	for (size_t p = 0; t->parts && p < n; p++)
		rf = t->parts[p].nreplicas > rf ? t->parts[p].nreplicas : rf;
	char(*ids)[RMQ_ID_CHARS] = rmq_arena_alloc(a, n * (1 + 2 * rf) * RMQ_ID_CHARS);
	char **idp = rmq_arena_alloc(a, n * 2 * rf * sizeof(char *));
	if (!tm || !tc || !ts || !pms || !pps || !tps || !ids || !idp)
		return NULL;
	rmq_meta_topic_pb(t, tm, tc, ts);
	if (configs && !(tc->configs = rmq_describe_configs(t, a, &tc->n_configs)))
		return NULL;
	for (size_t p = 0; p < n; p++) {
		rustmq__common__partition_metadata__init(&pms[p]);
		rustmq__common__topic_partition__init(&tps[p]);
		tps[p].topic = (char *)t->name;
		tps[p].partition = (uint32_t)p;
		pms[p].topic_partition = &tps[p];
		struct rmq_leader l = rmq_cluster_leader(bs, t, (uint32_t)p);
		char(*pid)[RMQ_ID_CHARS] = ids + p * (1 + 2 * rf);
		char **reps = idp + 2 * p * rf, **isr = reps + rf;
		memcpy(pid[0], l.id_str, RMQ_ID_CHARS);
		pms[p].leader_id = pid[0];
		pms[p].leader_epoch = l.epoch;
		pms[p].n_replica_ids = rmq_cluster_replicas(bs, t, (uint32_t)p, pid + 1, rf);
		pms[p].n_isr_ids = rmq_cluster_isr(bs, t, (uint32_t)p, pid + 1 + rf, rf);
		for (size_t k = 0; k < rf; k++) {
			reps[k] = pid[1 + k];
			isr[k] = pid[1 + rf + k];
		}
		pms[p].replica_ids = reps;
		pms[p].isr_ids = isr;
		if (!l.id) {
			pms[p].error_code = EC_LEADER_NOT_AVAILABLE;
			/* Its replicas' brokers are fenced or gone. */
			pms[p].offline_replica_ids = reps;
			pms[p].n_offline_replica_ids = pms[p].n_replica_ids;
		} else if (l.self &&
			   rmq_offline_lookup(bs->b->offline, t->id, (uint32_t)p, NULL, 0) != 0) {
			/* Its log could not be opened here: the replica is offline. */
			pms[p].error_code = EC_STORAGE_ERROR;
			pms[p].offline_replica_ids = &pms[p].leader_id;
			pms[p].n_offline_replica_ids = 1;
		}
		pms[p].shard = rmq_partition_shard(t->name, (uint32_t)p,
						   l.broker && l.broker->shards ? l.broker->shards
										: bs->nshards);
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
	tm->error_code = EC_TOPIC_NOT_FOUND;
	return tm;
}

int rmq_describe_topics(struct rmq_bshard *bs, char **names, size_t nnames, bool configs,
			bool internal, const char *prefix, struct rmq_md_list *out)
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
			tm = k < 0 ? missing_md(a, names[i]) : rmq_describe_topic(bs, a, &bs->meta->topics[k], configs);
		} else {
			const struct rmq_topic *t = &bs->meta->topics[i];
			if ((t->internal && !internal) || (prefix && strncmp(t->name, prefix, strlen(prefix)) != 0))
				continue;
			tm = rmq_describe_topic(bs, a, t, configs);
		}
		if (!tm)
			return -ENOMEM;
		out->v[out->n++] = tm;
	}
	return 0;
}

void rmq_md_list_free(struct rmq_md_list *l)
{
	for (size_t i = 0; i < l->narenas; i++)
		rmq_arena_free(&l->arenas[i]);
	free(l->arenas);
	free(l->v);
}

static int config_entry_cmp(const void *x, const void *y)
{
	const Rustmq__Common__ConfigEntry *const *a = x, *const *b = y;
	return strcmp((*a)->name, (*b)->name);
}

Rustmq__Common__ConfigEntry **rmq_describe_configs(const struct rmq_topic *t, struct rmq_arena *a,
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
