/* SPDX-License-Identifier: Apache-2.0 */
/* cluster.c - what this node knows of the cluster (cluster.h). */
#include "broker/cluster.h"

#include "broker/broker.h"

#include <stdatomic.h>
#include <stdio.h>
#include <string.h>

const char *rmq_cluster_self(const struct rmq_bshard *bs)
{
	return bs->b->cfg.node_id;
}

uint64_t rmq_cluster_broker_epoch(const struct rmq_bshard *bs)
{
	const struct rmq_broker_rec *r = rmq_meta_broker(bs->meta, bs->b->self);
	return r ? r->epoch : 0;
}

const char *rmq_cluster_id(const struct rmq_bshard *bs)
{
	return bs->meta->cluster_id[0] ? bs->meta->cluster_id : bs->b->cluster_id;
}

const char *rmq_cluster_endpoint(const struct rmq_bshard *bs, uint32_t id)
{
	const struct rmq_broker_rec *r = id ? rmq_meta_broker(bs->meta, id) : NULL;
	return r ? r->endpoint : "";
}

void rmq_cluster_quorum(const struct rmq_bshard *bs, struct rmq_quorum *q)
{
	const struct rmq_broker *b = bs->b;
	/* A few tries for a consistent copy, never a wait on shard 0 (which
	 * may be descheduled mid-write): after them, what was read (an
	 * answer about the quorum, at worst a moment stale or mixed). */
	for (int tries = 0; tries < 4; tries++) {
		uint64_t seq = atomic_load_explicit(&b->ctrl_seq, memory_order_acquire);
		q->leader = atomic_load_explicit(&b->ctrl_leader, memory_order_relaxed);
		q->term = atomic_load_explicit(&b->ctrl_term, memory_order_relaxed);
		q->n = atomic_load_explicit(&b->ctrl_nvoters, memory_order_relaxed);
		for (uint32_t i = 0; i < q->n && i < RMQ_QUORUM_MAX; i++)
			q->voters[i] = atomic_load_explicit(&b->ctrl_voters[i], memory_order_relaxed);
		for (size_t i = 0; i < 8; i++) {
			uint64_t w = atomic_load_explicit(&b->ctrl_leader_addr[i], memory_order_relaxed);
			memcpy(q->leader_addr + 8 * i, &w, 8);
		}
		atomic_thread_fence(memory_order_acquire);
		if (!(seq & 1) && atomic_load_explicit(&b->ctrl_seq, memory_order_relaxed) == seq)
			break;
	}
	if (q->n > RMQ_QUORUM_MAX)
		q->n = RMQ_QUORUM_MAX;
	q->leader_addr[sizeof(q->leader_addr) - 1] = '\0';
	for (uint32_t i = 0; i < q->n; i++)
		snprintf(q->ids[i], sizeof(q->ids[i]), "%u", q->voters[i]);
	if (q->leader)
		snprintf(q->leader_id, sizeof(q->leader_id), "%u", q->leader);
	else
		q->leader_id[0] = '\0';
}

const char *rmq_cluster_controller(const struct rmq_bshard *bs)
{
	static _Thread_local struct rmq_quorum q; /* valid until the next call here */
	rmq_cluster_quorum(bs, &q);
	return q.leader_id;
}

uint64_t rmq_cluster_controller_epoch(const struct rmq_bshard *bs)
{
	struct rmq_quorum q;
	rmq_cluster_quorum(bs, &q);
	return q.term;
}

uint32_t rmq_cluster_leader_id(const struct rmq_topic *t, uint32_t p)
{
	return t->parts && p < t->partitions ? t->parts[p].leader : 0;
}

/* A replicated partition is led by this process only in an epoch the
 * controller gave it: its registration renews the broker's leaderships in
 * new epochs (fleet.c).  In an epoch of an earlier process, whose
 * followers may hold records it sent before they were durable here and a
 * crash took, this one would append other records at their offsets in the
 * same epoch, which log matching cannot tell apart (docs/replication.md,
 * finding 6). */
bool rmq_cluster_leads(const struct rmq_bshard *bs, const struct rmq_meta *m,
		       const struct rmq_topic *t, uint32_t p)
{
	if (!t->parts || p >= t->partitions || t->parts[p].leader != bs->b->self ||
	    bs->b->self == 0)
		return false;
	return t->parts[p].nreplicas <= 1 || rmq_cluster_registration(bs, m) != NULL;
}

const struct rmq_broker_rec *rmq_cluster_registration(const struct rmq_bshard *bs,
						      const struct rmq_meta *m)
{
	const struct rmq_broker_rec *me = rmq_meta_broker(m, bs->b->self);
	return me && strcmp(me->incarnation, bs->b->incarnation) == 0 ? me : NULL;
}

struct rmq_leader rmq_cluster_leader(const struct rmq_bshard *bs, const struct rmq_topic *t,
				     uint32_t p)
{
	struct rmq_leader l = {0};
	if (!t->parts || p >= t->partitions)
		return l;
	l.id = rmq_cluster_leader_id(t, p);
	l.epoch = t->parts[p].leader_epoch;
	l.broker = l.id ? rmq_meta_broker(bs->meta, l.id) : NULL;
	l.self = rmq_cluster_leads(bs, bs->meta, t, p);
	if (l.id)
		snprintf(l.id_str, sizeof(l.id_str), "%u", l.id);
	return l;
}

static size_t ids_of(const uint32_t *v, uint32_t n, char (*ids)[RMQ_ID_CHARS], size_t max)
{
	for (uint32_t i = 0; i < n && i < max; i++)
		snprintf(ids[i], RMQ_ID_CHARS, "%u", v[i]);
	return n < max ? n : max;
}

size_t rmq_cluster_replicas(const struct rmq_bshard *bs, const struct rmq_topic *t, uint32_t p,
			    char (*ids)[RMQ_ID_CHARS], size_t max)
{
	(void)bs;
	if (!t->parts || p >= t->partitions)
		return 0;
	return ids_of(t->parts[p].replicas, t->parts[p].nreplicas, ids, max);
}

size_t rmq_cluster_isr(const struct rmq_bshard *bs, const struct rmq_topic *t, uint32_t p,
		       char (*ids)[RMQ_ID_CHARS], size_t max)
{
	(void)bs;
	if (!t->parts || p >= t->partitions)
		return 0;
	return ids_of(t->parts[p].isr, t->parts[p].nisr, ids, max);
}
