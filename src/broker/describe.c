/* SPDX-License-Identifier: Apache-2.0 */
/* describe.c - this node and its topics as the protocol describes them
 * (describe.h). */
#include "broker/describe.h"

#include "broker/cluster.h"
#include "core/util.h"

#include <errno.h>
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
	s->bi.is_controller = rmq_cluster_is_controller(bs);
	uint64_t now = rmq_wall_ms();
	s->hb.seconds = (int64_t)(now / 1000);
	s->hb.nanos = (int32_t)(now % 1000) * 1000000;
	s->bi.last_heartbeat = &s->hb;
	s->bi.version = RMQ_VERSION;
}

void rmq_describe_brokers(struct rmq_bshard *bs, struct rmq_brokers *out)
{
	rmq_describe_self(bs, &out->self);
	out->v[0] = &out->self.bi;
	out->n = 1;
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
	/* Replica and ISR ids: at most the replication factor each. */
	size_t rf = t->replication_factor ? t->replication_factor : 1;
	const char **ids = rmq_arena_alloc(a, 2 * n * rf * sizeof(char *));
	if (!tm || !tc || !ts || !pms || !pps || !tps || !ids)
		return NULL;
	rustmq__common__topic_metadata__init(tm);
	rustmq__common__topic_config__init(tc);
	google__protobuf__timestamp__init(ts);
	tm->name = (char *)t->name;
	tm->topic_id = (char *)t->id;
	tm->is_internal = t->internal;
	ts->seconds = (int64_t)(t->created_ms / 1000);
	ts->nanos = (int32_t)(t->created_ms % 1000) * 1000000;
	tm->created = ts;
	tc->partitions = t->partitions;
	tc->replication_factor = t->replication_factor;
	if (configs && !(tc->configs = rmq_describe_configs(t, a, &tc->n_configs)))
		return NULL;
	tm->config = tc;
	for (size_t p = 0; p < n; p++) {
		rustmq__common__partition_metadata__init(&pms[p]);
		rustmq__common__topic_partition__init(&tps[p]);
		tps[p].topic = (char *)t->name;
		tps[p].partition = (uint32_t)p;
		pms[p].topic_partition = &tps[p];
		struct rmq_leader l = rmq_cluster_leader(bs, t, (uint32_t)p);
		const char **reps = ids + 2 * p * rf, **isr = reps + rf;
		pms[p].leader_id = (char *)l.id;
		pms[p].leader_epoch = l.epoch;
		pms[p].replica_ids = (char **)reps;
		pms[p].n_replica_ids = rmq_cluster_replicas(bs, t, (uint32_t)p, reps, rf);
		pms[p].isr_ids = (char **)isr;
		pms[p].n_isr_ids = rmq_cluster_isr(bs, t, (uint32_t)p, isr, rf);
		if (rmq_offline_lookup(bs->b->offline, t->id, (uint32_t)p, NULL, 0) != 0) {
			/* Its log could not be opened here: the replica is offline. */
			pms[p].error_code = EC_STORAGE_ERROR;
			pms[p].offline_replica_ids = (char **)reps;
			pms[p].n_offline_replica_ids = 1;
		}
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
