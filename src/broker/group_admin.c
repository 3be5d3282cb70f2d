/* SPDX-License-Identifier: Apache-2.0 */
/*
 * group_admin.c - AdminService's ListGroups, DescribeGroups and
 * DeleteGroups: a tour of every shard.  (ResetGroupOffsets writes offsets
 * on the group's coordinator: group_offsets.c.)
 *
 * A tour is one message that visits shard 0, 1, ... N-1 in turn and then
 * returns to the origin; on each shard it reads (or deletes) the groups
 * that shard coordinates.  Only the shard holding the message touches the
 * tour, so the results need no locking, and a shard that must wait (a
 * deletion's tombstones becoming durable) simply sends the tour on later.
 */
#include "broker/auth.h"
#include "broker/cluster.h"
#include "broker/group_int.h"

#include "broker/lookup.h"
#include "broker/methods.h"
#include "controller/admin.pb-c.h"
#include "core/error.h"
#include "core/util.h"

#include <errno.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* Allocations of an answer under construction, freed together. */
struct bag {
	void **v;
	size_t n, cap;
	bool oom;
};

static void *bag_add(struct bag *b, void *p)
{
	if (!p) {
		b->oom = true;
		return NULL;
	}
	if (b->n == b->cap) {
		size_t cap = b->cap ? b->cap * 2 : 32;
		void **v = realloc(b->v, cap * sizeof(*v));
		if (!v) {
			free(p);
			b->oom = true;
			return NULL;
		}
		b->v = v;
		b->cap = cap;
	}
	return b->v[b->n++] = p;
}

static void *bag_calloc(struct bag *b, size_t n, size_t size)
{
	return bag_add(b, calloc(n ? n : 1, size));
}

static char *bag_str(struct bag *b, const char *s)
{
	return bag_add(b, strdup(s ? s : ""));
}

static void bag_free(struct bag *b)
{
	for (size_t i = 0; i < b->n; i++)
		free(b->v[i]);
	free(b->v);
}

/* ---- tours ------------------------------------------------------------------------ */

struct tour;
typedef void (*tour_fn)(struct rmq_gshard *gs, struct tour *t);

struct tour {
	struct rmq_xmsg msg;
	struct rmq_call *call;
	unsigned origin, at, nshards;
	ProtobufCMessage *req;
	tour_fn visit;              /* on each shard; calls tour_next when done */
	tour_fn finish;             /* on the origin; answers and frees */
	struct bag bag;             /* the answer's allocations */
	/* ListGroups */
	Rustmq__Controller__GroupListing **listings;
	size_t nlistings, caplistings;
	/* DescribeGroups, DeleteGroups: one result per requested group */
	Rustmq__Controller__GroupDescription **descs;
	Rustmq__Controller__DeleteGroupResult **dels;
	unsigned waiting;           /* deletions in flight on the current shard */
	struct rmq_lookup *lk;      /* DescribeGroups' log end offsets */
	size_t nlk;
};

static void tour_step(struct rmq_xmsg *m);

static void tour_next(struct tour *t)
{
	t->at++;
	t->msg.fn = tour_step;
	rmq_shard_post(rmq_shard_current(), t->at < t->nshards ? t->at : t->origin, &t->msg);
}

static void tour_step(struct rmq_xmsg *m)
{
	struct tour *t = RMQ_CONTAINER_OF(m, struct tour, msg);
	struct rmq_gshard *gs = gs_of(rmq_bshard_current());
	if (t->at >= t->nshards)
		t->finish(gs, t);
	else
		t->visit(gs, t);
}

static void tour_free(struct rmq_gshard *gs, struct tour *t)
{
	rmq_call_unref(t->call);
	protobuf_c_message_free_unpacked(t->req, NULL);
	bag_free(&t->bag);
	free(t->lk);
	free(t);
	gs->out--;
}

static void tour_start(struct rmq_call *c, ProtobufCMessage *req, tour_fn visit, tour_fn finish)
{
	struct rmq_bshard *bs = rmq_call_app(c);
	struct tour *t = calloc(1, sizeof(*t));
	if (!t) {
		protobuf_c_message_free_unpacked(req, NULL);
		rmq_call_finish(c, RMQ_GRPC_RESOURCE_EXHAUSTED, "out of memory");
		return;
	}
	t->call = c;
	t->origin = bs->id;
	t->nshards = bs->nshards;
	t->req = req;
	t->visit = visit;
	t->finish = finish;
	rmq_call_ref(c);
	gs_of(bs)->out++;
	t->at = 0;
	t->msg.fn = tour_step;
	rmq_shard_post(rmq_shard_current(), 0, &t->msg);
}

static void tour_reply(struct rmq_gshard *gs, struct tour *t, const ProtobufCMessage *m)
{
	if (t->bag.oom)
		rmq_call_finish(t->call, RMQ_GRPC_RESOURCE_EXHAUSTED, "out of memory");
	else
		rmq_reply_pb(t->call, m);
	tour_free(gs, t);
}

static Rustmq__Common__TopicPartition *bag_tp(struct bag *b, const char *topic, uint32_t p)
{
	Rustmq__Common__TopicPartition *tp = bag_calloc(b, 1, sizeof(*tp));
	if (tp) {
		rustmq__common__topic_partition__init(tp);
		tp->topic = bag_str(b, topic);
		tp->partition = p;
		if (!tp->topic)
			tp->topic = "";
	}
	return tp;
}

/* ---- ListGroups -------------------------------------------------------------------- */

static bool state_wanted(const Rustmq__Controller__ListGroupsRequest *q, int state)
{
	if (q->n_states == 0)
		return true;
	for (size_t i = 0; i < q->n_states; i++)
		if ((int)q->states[i] == state)
			return true;
	return false;
}

static void list_visit(struct rmq_gshard *gs, struct tour *t)
{
	const Rustmq__Controller__ListGroupsRequest *q = (const void *)t->req;
	for (size_t i = 0; i < gs->tcap; i++) {
		for (struct group *g = gs->tab[i]; g; g = g->hnext) {
			if (!state_wanted(q, g->state))
				continue;
			if (t->nlistings == t->caplistings) {
				size_t cap = t->caplistings ? t->caplistings * 2 : 16;
				void *v = bag_calloc(&t->bag, cap, sizeof(*t->listings));
				if (!v)
					break;
				if (t->nlistings)
					memcpy(v, t->listings, t->nlistings * sizeof(*t->listings));
				t->listings = v;
				t->caplistings = cap;
			}
			Rustmq__Controller__GroupListing *l = bag_calloc(&t->bag, 1, sizeof(*l));
			if (!l)
				break;
			rustmq__controller__group_listing__init(l);
			l->group_id = bag_str(&t->bag, g->id);
			l->protocol_type = "consumer";
			l->state = g->state;
			l->coordinator_id = (char *)rmq_cluster_self(gs->bs);
			t->listings[t->nlistings++] = l;
		}
	}
	tour_next(t);
}

static int listing_cmp(const void *a, const void *b)
{
	const Rustmq__Controller__GroupListing *x = *(void *const *)a, *y = *(void *const *)b;
	return strcmp(x->group_id ? x->group_id : "", y->group_id ? y->group_id : "");
}

static void list_finish(struct rmq_gshard *gs, struct tour *t)
{
	Rustmq__Controller__ListGroupsResponse a = RUSTMQ__CONTROLLER__LIST_GROUPS_RESPONSE__INIT;
	if (t->nlistings)
		qsort(t->listings, t->nlistings, sizeof(*t->listings), listing_cmp);
	a.groups = t->listings;
	a.n_groups = t->nlistings;
	tour_reply(gs, t, &a.base);
}

void rmq_group_list(struct rmq_call *c, void *req)
{
	tour_start(c, req, list_visit,
		   list_finish);
}

/* ---- DescribeGroups ---------------------------------------------------------------- */

static Rustmq__Controller__GroupDescription *describe_one(struct rmq_gshard *gs, struct bag *b,
							  const struct group *g, bool offsets)
{
	Rustmq__Controller__GroupDescription *d = bag_calloc(b, 1, sizeof(*d));
	if (!d)
		return NULL;
	rustmq__controller__group_description__init(d);
	d->group_id = bag_str(b, g->id);
	d->state = g->state;
	d->protocol_type = "consumer";
	d->protocol = g->state == GS_STABLE ? (char *)rmq_assignor_name(g->assignor) : "";
	d->coordinator_id = (char *)rmq_cluster_self(gs->bs);
	d->generation_id = g->generation ? g->generation : -1;
	d->leader_member_id = bag_str(b, g->leader);
	d->members = bag_calloc(b, g->nmembers, sizeof(*d->members));
	size_t i = 0;
	for (const struct member *m = g->members; m && d->members; m = m->next) {
		Rustmq__Controller__GroupMemberDescription *md = bag_calloc(b, 1, sizeof(*md));
		if (!md)
			break;
		rustmq__controller__group_member_description__init(md);
		md->member_id = bag_str(b, m->id);
		md->group_instance_id = bag_str(b, m->instance_id);
		md->client_id = bag_str(b, m->client_id);
		md->client_host = bag_str(b, m->host);
		md->session_timeout_ms = m->session_ns / 1000000;
		md->assigned_partitions = bag_calloc(b, m->nassign, sizeof(*md->assigned_partitions));
		for (size_t j = 0; j < m->nassign && md->assigned_partitions; j++)
			md->assigned_partitions[md->n_assigned_partitions++] =
				bag_tp(b, m->assign[j].topic, m->assign[j].partition);
		d->members[i++] = md;
	}
	d->n_members = i;
	if (offsets) {
		d->offsets = bag_calloc(b, g->noffs, sizeof(*d->offsets));
		for (size_t j = 0; j < g->noffs && d->offsets; j++) {
			Rustmq__Controller__GroupPartitionOffset *o = bag_calloc(b, 1, sizeof(*o));
			if (!o)
				break;
			rustmq__controller__group_partition_offset__init(o);
			o->topic_partition = bag_tp(b, g->offs[j].topic, g->offs[j].partition);
			o->committed_offset = (int64_t)g->offs[j].offset;
			o->metadata = bag_str(b, g->offs[j].metadata);
			d->offsets[d->n_offsets++] = o;
		}
	}
	return d;
}

/* In a cluster, a group this node does not coordinate: its description
 * carrying the coordinator error (NOT_COORDINATOR naming the broker that
 * does, ...), as a Kafka broker answers DescribeGroups; NULL when this
 * node coordinates it (then it has no such group) or out of memory. */
static Rustmq__Controller__GroupDescription *not_here(struct rmq_gshard *gs, struct bag *b,
						       const char *id)
{
	char why[400];
	int code = group_coordinator_check(gs, id, why, sizeof(why));
	if (code == EC_OK)
		return NULL;
	Rustmq__Controller__GroupDescription *d = bag_calloc(b, 1, sizeof(*d));
	if (!d)
		return NULL;
	rustmq__controller__group_description__init(d);
	d->group_id = bag_str(b, id);
	d->error_code = (Rustmq__Common__ErrorCode)code;
	d->error_message = bag_str(b, why);
	d->state = GS_DEAD;
	d->generation_id = -1;
	return d;
}

static void describe_visit(struct rmq_gshard *gs, struct tour *t)
{
	const Rustmq__Controller__DescribeGroupsRequest *q = (const void *)t->req;
	for (size_t i = 0; i < q->n_group_ids; i++) {
		const char *id = q->group_ids[i];
		if (!id[0] || strlen(id) > RMQ_GROUP_ID_MAX || rmq_group_shard(gs->bs, id) != t->at)
			continue;
		struct group *g = group_find(gs, id);
		if (g)
			t->descs[i] = describe_one(gs, &t->bag, g, q->include_offsets);
		else
			t->descs[i] = not_here(gs, &t->bag, id);
	}
	tour_next(t);
}

static void describe_answer(void *arg)
{
	struct tour *t = arg;
	struct rmq_gshard *gs = gs_of(rmq_bshard_current());
	const Rustmq__Controller__DescribeGroupsRequest *q = (const void *)t->req;
	size_t k = 0;
	gs->busy -= t->lk != NULL;
	for (size_t i = 0; i < q->n_group_ids; i++) {
		Rustmq__Controller__GroupDescription *d = t->descs[i];
		if (!d || !d->group_id || d->error_code)
			continue;
		for (size_t j = 0; j < d->n_offsets; j++, k++) {
			Rustmq__Controller__GroupPartitionOffset *o = d->offsets[j];
			if (!o || !t->lk || t->lk[k].code)
				continue;
			o->log_end_offset = t->lk[k].hw;
			o->lag = (int64_t)t->lk[k].hw - o->committed_offset;
		}
	}
	Rustmq__Controller__DescribeGroupsResponse a = RUSTMQ__CONTROLLER__DESCRIBE_GROUPS_RESPONSE__INIT;
	a.groups = t->descs;
	a.n_groups = q->n_group_ids;
	tour_reply(gs, t, &a.base);
}

static void describe_finish(struct rmq_gshard *gs, struct tour *t)
{
	const Rustmq__Controller__DescribeGroupsRequest *q = (const void *)t->req;
	size_t nlk = 0;
	for (size_t i = 0; i < q->n_group_ids; i++) {
		if (t->descs[i] && t->descs[i]->group_id) {
			nlk += t->descs[i]->n_offsets;
			continue;
		}
		Rustmq__Controller__GroupDescription *d = bag_calloc(&t->bag, 1, sizeof(*d));
		if (!d)
			continue;
		rustmq__controller__group_description__init(d);
		d->group_id = q->group_ids[i];
		d->error_code = EC_GROUP_ID_NOT_FOUND;
		d->error_message = "no such group";
		d->state = GS_DEAD;
		d->generation_id = -1;
		t->descs[i] = d;
	}
	/* Lag needs each partition's high watermark from its owner. */
	if (nlk && (t->lk = calloc(nlk, sizeof(*t->lk)))) {
		size_t k = 0;
		for (size_t i = 0; i < q->n_group_ids; i++) {
			const Rustmq__Controller__GroupDescription *d = t->descs[i];
			for (size_t j = 0; d && !d->error_code && j < d->n_offsets; j++, k++) {
				const Rustmq__Controller__GroupPartitionOffset *o = d->offsets[j];
				t->lk[k].spec = RMQ_LOOKUP_LATEST;
				if (o && o->topic_partition) {
					snprintf(t->lk[k].topic, sizeof(t->lk[k].topic), "%s",
						 o->topic_partition->topic);
					t->lk[k].partition = o->topic_partition->partition;
				}
			}
		}
		gs->busy++;
		if (rmq_lookup_start(gs->bs, t->lk, nlk, describe_answer, t) == 0)
			return;
		gs->busy--;
		free(t->lk);
		t->lk = NULL;
	}
	describe_answer(t);
}


/* The per-group arrays are sized once the request is known: on the first
 * visit (shard 0) before anything else. */
static void describe_visit_first(struct rmq_gshard *gs, struct tour *t)
{
	const Rustmq__Controller__DescribeGroupsRequest *q = (const void *)t->req;
	if (!t->descs)
		t->descs = bag_calloc(&t->bag, q->n_group_ids, sizeof(*t->descs));
	if (!t->descs) {
		t->at = t->nshards - 1; /* straight back: out of memory */
		tour_next(t);
		return;
	}
	describe_visit(gs, t);
}

/* Every group named needs op (checked before the tour). */
static bool groups_allowed(struct rmq_call *c, void *req, char **ids, size_t n, enum rmq_acl_op op)
{
	char why[600];
	for (size_t i = 0; i < n; i++) {
		if (rmq_auth_allowed(c, RMQ_ACL_GROUP, ids[i], op, why, sizeof(why)))
			continue;
		protobuf_c_message_free_unpacked(req, NULL);
		rmq_refuse(c, EC_UNAUTHORIZED, "%s", why);
		return false;
	}
	return true;
}

void rmq_group_describe(struct rmq_call *c, void *req)
{
	Rustmq__Controller__DescribeGroupsRequest *q = req;
	if (groups_allowed(c, req, q->group_ids, q->n_group_ids, RMQ_ACL_DESCRIBE))
		tour_start(c, req, describe_visit_first, describe_finish);
}

/* ---- DeleteGroups ------------------------------------------------------------------ */

struct del_wait {
	struct tour *t;
	size_t i;
};

static void delete_done(void *arg, int res)
{
	struct del_wait *w = arg;
	struct tour *t = w->t;
	if (res < 0) {
		t->dels[w->i]->error_code = EC_STORAGE_ERROR;
		t->dels[w->i]->error_message = "the offsets log failed";
	}
	free(w);
	if (--t->waiting == 0)
		tour_next(t);
}

static void delete_visit(struct rmq_gshard *gs, struct tour *t)
{
	const Rustmq__Controller__DeleteGroupsRequest *q = (const void *)t->req;
	if (!t->dels && !(t->dels = bag_calloc(&t->bag, q->n_group_ids, sizeof(*t->dels)))) {
		t->at = t->nshards - 1;
		tour_next(t);
		return;
	}
	t->waiting = 1; /* held while starting */
	for (size_t i = 0; i < q->n_group_ids; i++) {
		const char *id = q->group_ids[i];
		bool valid = id[0] && strlen(id) <= RMQ_GROUP_ID_MAX;
		if (valid && rmq_group_shard(gs->bs, id) != t->at)
			continue;
		if (!valid && t->at != 0)
			continue;
		Rustmq__Controller__DeleteGroupResult *r = bag_calloc(&t->bag, 1, sizeof(*r));
		if (!r)
			continue;
		rustmq__controller__delete_group_result__init(r);
		r->group_id = q->group_ids[i];
		t->dels[i] = r;
		struct group *g = valid ? group_find(gs, id) : NULL;
		Rustmq__Controller__GroupDescription *nh;
		if (!valid) {
			r->error_code = EC_INVALID_REQUEST;
			r->error_message = "group_id is empty or too long";
		} else if (!g && (nh = not_here(gs, &t->bag, id))) {
			r->error_code = nh->error_code; /* a cluster: coordinated elsewhere */
			r->error_message = nh->error_message;
		} else if (!g) {
			r->error_code = EC_GROUP_ID_NOT_FOUND;
			r->error_message = "no such group";
		} else if (g->nmembers) {
			r->error_code = EC_GROUP_NOT_EMPTY;
			r->error_message = "the group has active members: stop its consumers first";
		} else {
			struct del_wait *w = malloc(sizeof(*w));
			if (w) {
				*w = (struct del_wait){t, i};
				t->waiting++;
				if (group_delete_append(gs, g, delete_done, w) == 0)
					continue;
				t->waiting--;
				free(w);
			}
			r->error_code = EC_COORDINATOR_NOT_AVAILABLE;
			r->error_message = "out of memory";
		}
	}
	if (--t->waiting == 0)
		tour_next(t);
}

static void delete_finish(struct rmq_gshard *gs, struct tour *t)
{
	const Rustmq__Controller__DeleteGroupsRequest *q = (const void *)t->req;
	Rustmq__Controller__DeleteGroupsResponse a = RUSTMQ__CONTROLLER__DELETE_GROUPS_RESPONSE__INIT;
	for (size_t i = 0; t->dels && i < q->n_group_ids; i++)
		if (!t->dels[i])
			t->bag.oom = true;
	a.groups = t->dels;
	a.n_groups = t->dels ? q->n_group_ids : 0;
	tour_reply(gs, t, &a.base);
}

void rmq_group_delete(struct rmq_call *c, void *req)
{
	Rustmq__Controller__DeleteGroupsRequest *q = req;
	if (groups_allowed(c, req, q->group_ids, q->n_group_ids, RMQ_ACL_DELETE))
		tour_start(c, req, delete_visit, delete_finish);
}
