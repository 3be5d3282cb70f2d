/* SPDX-License-Identifier: Apache-2.0 */
/*
 * group.c - the group coordinator (group.h): the groups of each shard,
 * the request path to the coordinator shard, the membership state machine
 * and its RPCs (JoinGroup, SyncGroup, Heartbeat, LeaveGroup).  Committed
 * offsets are in group_offsets.c, the AdminService calls in group_admin.c.
 *
 * A group's life (Kafka's classic protocol, with the assignment computed
 * by the broker, so SyncGroup answers at once):
 *
 *   EMPTY ──join──► PREPARING ──every member rejoined, or the rebalance
 *     ▲                 ▲       timeout passed (laggards are removed)──┐
 *     │                 │                                              │
 *     │   join with new topics/assignors, leave, session timeout      │
 *     │                 └────────────────── STABLE ◄── generation + 1,─┘
 *     └──── last member leaves or times out ──┘        assignment
 *
 * Held JoinGroup calls are answered when the generation forms.  A group
 * that starts from EMPTY waits --group-initial-rebalance-delay (extended
 * by each new member, up to the rebalance timeout) so that consumers
 * starting together land in one generation.  Members without a held join
 * must heartbeat within their session timeout or are removed.
 *
 * Offsets and generations are records in the offsets log (offsets.h);
 * memory is only changed when the record is durable, in log order, so a
 * restart (which replays the log) rebuilds exactly what was answered.
 */
#include "broker/group_int.h"
#include "broker/auth.h"
#include "broker/methods.h"
#include "broker/request.h"

#include "broker/cluster.h"
#include "broker/lookup.h"
#include "client/consumer.pb-c.h"
#include "common/metadata.pb-c.h"
#include "controller/admin.pb-c.h"
#include "core/assert.h"
#include "core/error.h"
#include "core/log.h"
#include "core/util.h"

#include <errno.h>
#include <inttypes.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define NS_PER_MS ((uint64_t)1000000)
#define DEFAULT_SESSION_NS (45000 * NS_PER_MS)

uint64_t group_now_ms(void)
{
	return rmq_wall_ms();
}

static uint32_t fnv1a(const char *s)
{
	uint32_t h = 2166136261u;
	for (const unsigned char *c = (const unsigned char *)s; *c; c++)
		h = (h ^ *c) * 16777619u;
	return h;
}

bool rmq_groups_replicated(const struct rmq_broker *b)
{
	return b->cfg.controller_voters && b->cfg.controller_voters[0];
}

bool rmq_groups_registered(const struct rmq_bshard *bs)
{
	const struct rmq_broker_rec *r = rmq_cluster_registration(bs, bs->meta);
	return r && r->state == RUSTMQ__COMMON__BROKER_STATE__BROKER_RUNNING;
}

uint32_t rmq_group_partition(const struct rmq_bshard *bs, const char *group)
{
	return fnv1a(group) % bs->b->cfg.offsets_partitions;
}

unsigned rmq_group_shard(const struct rmq_bshard *bs, const char *group)
{
	return rmq_partition_shard(RMQ_OFFSETS_TOPIC, rmq_group_partition(bs, group), bs->nshards);
}

static uint64_t dur_ns(const Google__Protobuf__Duration *d, uint64_t def)
{
	if (!d || (d->seconds == 0 && d->nanos == 0))
		return def;
	if (d->seconds < 0 || d->nanos < 0)
		return 0;
	return (uint64_t)d->seconds * 1000000000ULL + (uint64_t)d->nanos;
}

/* ---- groups and offsets in memory --------------------------------------------- */

struct group *group_find(struct rmq_gshard *gs, const char *id)
{
	for (struct group *g = gs->tab[fnv1a(id) & (gs->tcap - 1)]; g; g = g->hnext)
		if (strcmp(g->id, id) == 0)
			return g;
	return NULL;
}

static void on_group_timer(struct rmq_timer *t);

struct group *group_get(struct rmq_gshard *gs, const char *id)
{
	struct group *g = group_find(gs, id);
	if (g)
		return g;
	if (gs->ngroups >= gs->tcap) { /* grow: keep chains short */
		size_t cap = gs->tcap * 2;
		struct group **tab = calloc(cap, sizeof(*tab));
		if (!tab)
			return NULL;
		for (size_t i = 0; i < gs->tcap; i++) {
			while (gs->tab[i]) {
				struct group *x = gs->tab[i];
				gs->tab[i] = x->hnext;
				size_t h = fnv1a(x->id) & (cap - 1);
				x->hnext = tab[h];
				tab[h] = x;
			}
		}
		free(gs->tab);
		gs->tab = tab;
		gs->tcap = cap;
	}
	g = calloc(1, sizeof(*g));
	if (!g || !(g->id = strdup(id))) {
		free(g);
		return NULL;
	}
	g->part = rmq_group_partition(gs->bs, id);
	g->state = GS_EMPTY;
	g->assignor = -1;
	size_t h = fnv1a(id) & (gs->tcap - 1);
	g->hnext = gs->tab[h];
	gs->tab[h] = g;
	gs->ngroups++;
	return g;
}

size_t rmq_groups_count(struct rmq_bshard *bs)
{
	return gs_of(bs) ? gs_of(bs)->ngroups : 0;
}

bool group_refuse_new(struct rmq_gshard *gs, struct greq *r, const char *id)
{
	const struct rmq_bshard *bs = gs->bs;
	uint32_t max = bs->b->cfg.max_groups, share = (max + bs->nshards - 1) / bs->nshards;
	if (gs->ngroups < share || group_find(gs, id))
		return false;
	greq_err(r, EC_RESOURCE_EXHAUSTED,
		 "this node keeps at most %u consumer groups (--max-groups; this shard's share is "
		 "full): delete unused groups (DeleteGroups) or raise the limit", max);
	return true;
}

static void member_free(struct member *m)
{
	free(m->id);
	free(m->instance_id);
	free(m->client_id);
	free(m->host);
	for (size_t i = 0; i < m->ntopics; i++)
		free(m->topics[i]);
	free(m->topics);
	for (size_t i = 0; i < m->nassignors; i++)
		free(m->assignors[i]);
	free(m->assignors);
	for (size_t i = 0; i < m->nassign; i++)
		free((char *)m->assign[i].topic);
	free(m->assign);
	free(m);
}

/* Ids handed out with MEMBER_ID_REQUIRED, valid for a session timeout. */
struct pending {
	struct pending *next;
	uint64_t expires_ns;
	char id[];
};

static void pending_purge(struct group *g, bool all)
{
	uint64_t now = rmq_now_ns();
	for (struct pending **pp = &g->pending; *pp;) {
		struct pending *x = *pp;
		if (all || x->expires_ns <= now) {
			*pp = x->next;
			free(x);
			g->npending--;
		} else {
			pp = &x->next;
		}
	}
}

/* True (and forgets it) when id was handed out and has not expired. */
static bool pending_take(struct group *g, const char *id)
{
	pending_purge(g, false);
	for (struct pending **pp = &g->pending; *pp; pp = &(*pp)->next) {
		if (strcmp((*pp)->id, id) == 0) {
			struct pending *x = *pp;
			*pp = x->next;
			free(x);
			g->npending--;
			return true;
		}
	}
	return false;
}

void group_remove(struct rmq_gshard *gs, struct group *g)
{
	RMQ_ASSERT(g->nmembers == 0);
	struct group **pp = &gs->tab[fnv1a(g->id) & (gs->tcap - 1)];
	while (*pp != g)
		pp = &(*pp)->hnext;
	*pp = g->hnext;
	gs->ngroups--;
	rmq_timer_cancel(gs->bs->s, &g->timer);
	pending_purge(g, true);
	for (size_t i = 0; i < g->noffs; i++)
		offent_clear(&g->offs[i]);
	free(g->offs);
	free(g->leader);
	free(g->id);
	free(g);
}

/* ---- the request path ------------------------------------------------------------ */

enum gkind { K_JOIN, K_SYNC, K_HEARTBEAT, K_LEAVE, K_COMMIT, K_FETCH, K_RESET };

static const ProtobufCMessageDescriptor *const resp_desc[] = {
	[K_JOIN] = &rustmq__client__join_group_response__descriptor,
	[K_SYNC] = &rustmq__client__sync_group_response__descriptor,
	[K_HEARTBEAT] = &rustmq__client__group_heartbeat_response__descriptor,
	[K_LEAVE] = &rustmq__client__leave_group_response__descriptor,
	[K_COMMIT] = &rustmq__client__commit_offsets_response__descriptor,
	[K_FETCH] = &rustmq__client__fetch_offsets_response__descriptor,
	[K_RESET] = &rustmq__controller__reset_group_offsets_response__descriptor,
};

static void greq_back(struct rmq_xmsg *m)
{
	struct greq *r = RMQ_CONTAINER_OF(m, struct greq, msg);
	struct rmq_gshard *gs = gs_of(rmq_bshard_current());
	if (!rmq_call_done(r->call)) {
		if (r->status != RMQ_GRPC_OK) {
			rmq_call_finish(r->call, r->status, r->smsg);
		} else {
			int rc = rmq_call_send(r->call, r->resp, r->resp_len);
			rmq_call_finish(r->call, rc < 0 ? RMQ_GRPC_INTERNAL : RMQ_GRPC_OK,
					rc < 0 ? rmq_strerror(rc) : NULL);
		}
	}
	rmq_call_unref(r->call);
	protobuf_c_message_free_unpacked(r->req, NULL);
	free(r->resp);
	free(r);
	gs->out--;
}

void greq_reply(struct greq *r, const ProtobufCMessage *m)
{
	size_t n = protobuf_c_message_get_packed_size(m);
	r->resp = malloc(n ? n : 1);
	if (!r->resp) {
		r->status = RMQ_GRPC_RESOURCE_EXHAUSTED;
		snprintf(r->smsg, sizeof(r->smsg), "out of memory");
	} else {
		r->resp_len = protobuf_c_message_pack(m, r->resp);
	}
	r->msg.fn = greq_back;
	rmq_shard_post(rmq_shard_current(), r->origin, &r->msg);
}

void greq_fail(struct greq *r, int status, const char *msg)
{
	r->status = status;
	snprintf(r->smsg, sizeof(r->smsg), "%s", msg);
	r->msg.fn = greq_back;
	rmq_shard_post(rmq_shard_current(), r->origin, &r->msg);
}

/*
 * Answers with the kind's response carrying only an error: every group
 * response has error_code as field 1 and error_message as field 2 (and a
 * JoinGroupResponse says generation -1).
 */
void greq_err(struct greq *r, int code, const char *fmt, ...)
{
	const ProtobufCMessageDescriptor *d = resp_desc[r->kind];
	char text[400];
	va_list ap;
	va_start(ap, fmt);
	vsnprintf(text, sizeof(text), fmt, ap);
	va_end(ap);
	ProtobufCMessage *m = calloc(1, d->sizeof_message);
	if (!m) {
		greq_fail(r, RMQ_GRPC_RESOURCE_EXHAUSTED, "out of memory");
		return;
	}
	d->message_init(m);
	for (unsigned i = 0; i < d->n_fields; i++) {
		char *at = (char *)m + d->fields[i].offset;
		if (d->fields[i].id == 1)
			*(int *)at = code;
		else if (d->fields[i].id == 2)
			*(char **)at = text;
	}
	if (r->kind == K_JOIN)
		((Rustmq__Client__JoinGroupResponse *)m)->generation_id = -1;
	greq_reply(r, m);
	free(m);
}

static void do_join(struct rmq_gshard *gs, struct greq *r);
static void do_sync(struct rmq_gshard *gs, struct greq *r);
static void do_heartbeat(struct rmq_gshard *gs, struct greq *r);
static void do_leave(struct rmq_gshard *gs, struct greq *r);

int group_coordinator_check(struct rmq_gshard *gs, const char *gid, char *why, size_t len)
{
	struct rmq_bshard *bs = gs->bs;
	uint32_t part = rmq_group_partition(bs, gid);
	if (!gs->replicated || gs->ologs[part])
		return EC_OK;
	long ti = rmq_meta_find(bs->meta, RMQ_OFFSETS_TOPIC);
	if (ti < 0) {
		snprintf(why, len, "%s is not created yet (FindCoordinator has the controller "
				   "create it): retry",
			 RMQ_OFFSETS_TOPIC);
		return EC_COORDINATOR_NOT_AVAILABLE;
	}
	const struct rmq_topic *t = &bs->meta->topics[ti];
	if (t->partitions != gs->nparts) {
		snprintf(why, len, "%s has %u partitions, this node's --offsets-partitions is %u: "
				   "start it with the cluster's count",
			 RMQ_OFFSETS_TOPIC, t->partitions, gs->nparts);
		return EC_COORDINATOR_NOT_AVAILABLE;
	}
	struct rmq_leader l = rmq_cluster_leader(bs, t, part);
	if (!l.id) {
		snprintf(why, len, "%s-%u, which holds group %s, has no leader now: retry",
			 RMQ_OFFSETS_TOPIC, part, gid);
		return EC_COORDINATOR_NOT_AVAILABLE;
	}
	if (l.self && !rmq_groups_registered(bs)) {
		snprintf(why, len, "this broker is (re)joining the cluster: its metadata may be old; "
				   "retry FindCoordinator");
		return EC_COORDINATOR_NOT_AVAILABLE;
	}
	if (!l.self) {
		snprintf(why, len, "this broker does not coordinate group %s: broker %s at %s does "
				   "(it leads %s-%u); ask FindCoordinator",
			 gid, l.id_str, rmq_cluster_endpoint(bs, l.id), RMQ_OFFSETS_TOPIC, part);
		return EC_NOT_COORDINATOR;
	}
	snprintf(why, len, "%s-%u is led here but not loaded yet (%s): retry", RMQ_OFFSETS_TOPIC,
		 part, rmq_partition_unavailable(bs, RMQ_OFFSETS_TOPIC, part));
	return EC_COORDINATOR_LOAD_IN_PROGRESS;
}

static void greq_exec(struct rmq_xmsg *m)
{
	struct greq *r = RMQ_CONTAINER_OF(m, struct greq, msg);
	struct rmq_gshard *gs = gs_of(rmq_bshard_current());
	char why[400];
	if (gs->stopping) {
		greq_err(r, EC_COORDINATOR_NOT_AVAILABLE, "the coordinator is shutting down: retry");
		return;
	}
	int code = group_coordinator_check(gs, greq_group_id(r), why, sizeof(why));
	if (code != EC_OK) {
		greq_err(r, code, "%s", why);
		return;
	}
	switch (r->kind) {
	case K_JOIN: do_join(gs, r); break;
	case K_SYNC: do_sync(gs, r); break;
	case K_HEARTBEAT: do_heartbeat(gs, r); break;
	case K_LEAVE: do_leave(gs, r); break;
	case K_COMMIT: group_commit_exec(gs, r); break;
	case K_FETCH: group_fetch_offsets_exec(gs, r); break;
	case K_RESET: group_reset_exec(gs, r); break;
	}
}

/* The group_id of each request kind (field 3 of the consumer requests,
 * field 2 of ResetGroupOffsetsRequest). */
static const char *group_id_of(int kind, const ProtobufCMessage *q)
{
	switch (kind) {
	case K_JOIN: return ((const Rustmq__Client__JoinGroupRequest *)q)->group_id;
	case K_SYNC: return ((const Rustmq__Client__SyncGroupRequest *)q)->group_id;
	case K_HEARTBEAT: return ((const Rustmq__Client__GroupHeartbeatRequest *)q)->group_id;
	case K_LEAVE: return ((const Rustmq__Client__LeaveGroupRequest *)q)->group_id;
	case K_COMMIT: return ((const Rustmq__Client__CommitOffsetsRequest *)q)->group_id;
	case K_FETCH: return ((const Rustmq__Client__FetchOffsetsRequest *)q)->group_id;
	default: return ((const Rustmq__Controller__ResetGroupOffsetsRequest *)q)->group_id;
	}
}

const char *greq_group_id(const struct greq *r)
{
	return group_id_of(r->kind, r->req);
}

static void submit(struct rmq_call *c, ProtobufCMessage *req, int kind)
{
	struct rmq_bshard *bs = rmq_call_app(c);
	struct greq *r = calloc(1, sizeof(*r));
	if (!r) {
		protobuf_c_message_free_unpacked(req, NULL);
		rmq_call_finish(c, RMQ_GRPC_RESOURCE_EXHAUSTED, "out of memory");
		return;
	}
	r->call = c;
	r->origin = bs->id;
	r->kind = kind;
	r->req = req;
	if (rmq_call_peer(c, r->host, sizeof(r->host)) < 0)
		r->host[0] = '\0';
	rmq_call_ref(c);
	gs_of(bs)->out++;
	const char *gid = group_id_of(kind, req);
	size_t glen = strlen(gid);
	char why[600];
	if (glen == 0 || glen > RMQ_GROUP_ID_MAX) {
		greq_err(r, EC_INVALID_REQUEST, glen ? "group_id is longer than %d bytes"
						     : "group_id is empty", RMQ_GROUP_ID_MAX);
		return;
	}
	/* Kafka's: a member's calls, commits and resets need READ on the
	 * group, reading its offsets DESCRIBE. */
	if (!rmq_auth_allowed(c, RMQ_ACL_GROUP, gid, kind == K_FETCH ? RMQ_ACL_DESCRIBE : RMQ_ACL_READ,
			      why, sizeof(why))) {
		greq_err(r, EC_UNAUTHORIZED, "%s", why);
		return;
	}
	r->msg.fn = greq_exec;
	rmq_shard_post(rmq_shard_current(), rmq_group_shard(bs, gid), &r->msg);
}

void rmq_group_join(struct rmq_call *c, void *req)
{
	submit(c, req, K_JOIN);
}

void rmq_group_sync(struct rmq_call *c, void *req)
{
	submit(c, req, K_SYNC);
}

void rmq_group_heartbeat(struct rmq_call *c, void *req)
{
	submit(c, req, K_HEARTBEAT);
}

void rmq_group_leave(struct rmq_call *c, void *req)
{
	submit(c, req, K_LEAVE);
}

void rmq_group_commit(struct rmq_call *c, void *req)
{
	Rustmq__Client__CommitOffsetsRequest *q = req;
	char err[400];
	int code = rmq_request_tps(rmq_call_app(c), (void *const *)q->partitions, q->n_partitions,
				   offsetof(Rustmq__Client__OffsetCommitPartition, topic_partition), true, err,
				   sizeof(err));
	if (code == EC_OK)
		code = rmq_auth_topics(c, (void *const *)q->partitions, q->n_partitions,
				       offsetof(Rustmq__Client__OffsetCommitPartition, topic_partition),
				       RMQ_ACL_READ, err, sizeof(err));
	if (code != EC_OK) {
		protobuf_c_message_free_unpacked(req, NULL);
		rmq_refuse(c, code, "%s", err);
		return;
	}
	submit(c, req, K_COMMIT);
}

void rmq_group_fetch_offsets(struct rmq_call *c, void *req)
{
	submit(c, req, K_FETCH);
}

void rmq_group_reset(struct rmq_call *c, void *req)
{
	submit(c, req, K_RESET);
}

/* ---- membership ------------------------------------------------------------------ */

static struct member *member_find(const struct group *g, const char *id)
{
	for (struct member *m = g->members; m; m = m->next)
		if (strcmp(m->id, id) == 0)
			return m;
	return NULL;
}

static struct member *member_by_instance(const struct group *g, const char *inst)
{
	for (struct member *m = g->members; m; m = m->next)
		if (m->instance_id[0] && strcmp(m->instance_id, inst) == 0)
			return m;
	return NULL;
}

static void arm(struct rmq_gshard *gs, struct group *g)
{
	uint64_t next = UINT64_MAX;
	for (struct member *m = g->members; m; m = m->next)
		if (!m->join && m->deadline_ns < next)
			next = m->deadline_ns;
	if (g->state == GS_PREPARING) {
		if (g->rebalance_deadline < next)
			next = g->rebalance_deadline;
		if (g->initial_until && g->initial_until < next)
			next = g->initial_until;
	}
	if (next == UINT64_MAX)
		rmq_timer_cancel(gs->bs->s, &g->timer);
	else
		rmq_timer_start(gs->bs->s, &g->timer, next, on_group_timer);
}

static void remove_member(struct group *g, struct member *m, const char *why)
{
	struct member **pp = &g->members;
	while (*pp != m)
		pp = &(*pp)->next;
	*pp = m->next;
	g->nmembers--;
	rmq_info("group %s: member %s leaves (%s)", g->id, m->id, why);
	if (m->join)
		greq_err(m->join, EC_UNKNOWN_MEMBER_ID, "member %s was removed from group %s (%s)",
			 m->id, g->id, why);
	if (g->leader && strcmp(g->leader, m->id) == 0) {
		free(g->leader);
		g->leader = NULL;
	}
	member_free(m);
}

static void start_rebalance(struct rmq_gshard *gs, struct group *g, const char *why)
{
	uint64_t now = rmq_now_ns(), maxrb = 0;
	for (struct member *m = g->members; m; m = m->next)
		if (m->rebalance_ns > maxrb)
			maxrb = m->rebalance_ns;
	uint64_t delay = gs->bs->b->cfg.group_initial_delay_ns;
	g->initial_until = g->state == GS_EMPTY ? now + (delay < maxrb ? delay : maxrb) : 0;
	g->rebalance_deadline = now + maxrb;
	g->state = GS_PREPARING;
	rmq_info("group %s: rebalancing after generation %d (%s), %zu members", g->id,
		 g->generation, why, g->nmembers);
}

/* The assignor inputs of the members (longest-standing first). */
static struct rmq_assign_member *assign_view(const struct group *g)
{
	struct rmq_assign_member *v = calloc(g->nmembers ? g->nmembers : 1, sizeof(*v));
	size_t i = 0;
	if (!v)
		return NULL;
	for (const struct member *m = g->members; m; m = m->next, i++) {
		v[i].member_id = m->id;
		v[i].topics = (const char *const *)m->topics;
		v[i].ntopics = m->ntopics;
		v[i].assignors = (const char *const *)m->assignors;
		v[i].nassignors = m->nassignors;
		v[i].prev = m->assign;
		v[i].nprev = m->nassign;
	}
	return v;
}

static void answer_join(struct group *g, struct member *m, struct greq *r);

/* Forms the next generation from the members that rejoined. */
static void complete_rebalance(struct rmq_gshard *gs, struct group *g)
{
	for (struct member *m = g->members, *next; m; m = next) {
		next = m->next;
		if (!m->join)
			remove_member(g, m, "did not rejoin within the rebalance timeout");
	}
	g->initial_until = g->rebalance_deadline = 0;
	if (g->nmembers == 0) {
		g->state = GS_EMPTY;
		g->empty_since_ms = group_now_ms();
		return;
	}
	struct rmq_assign_member *v = assign_view(g);
	const struct rmq_meta *meta = gs->bs->meta;
	struct rmq_assign_topic *topics = calloc(meta->ntopics ? meta->ntopics : 1, sizeof(*topics));
	int a = v ? rmq_assign_choose(v, g->nmembers) : -1;
	if (a < 0)
		a = RMQ_ASSIGN_RANGE; /* joins were checked: only after odd leaves */
	for (size_t i = 0; topics && i < meta->ntopics; i++)
		topics[i] = (struct rmq_assign_topic){meta->topics[i].name, meta->topics[i].partitions};
	if (!v || !topics || rmq_assign(a, topics, meta->ntopics, v, g->nmembers) < 0) {
		for (struct member *m = g->members; m; m = m->next)
			if (m->join) {
				greq_err(m->join, EC_COORDINATOR_NOT_AVAILABLE,
					 "out of memory computing the assignment: rejoin");
				m->join = NULL;
			}
		free(v);
		free(topics);
		start_rebalance(gs, g, "assignment failed");
		return;
	}
	size_t i = 0;
	uint64_t now = rmq_now_ns();
	for (struct member *m = g->members; m; m = m->next, i++) {
		for (size_t j = 0; j < m->nassign; j++)
			free((char *)m->assign[j].topic);
		free(m->assign);
		m->assign = v[i].out;
		m->nassign = v[i].nout;
		for (size_t j = 0; j < m->nassign; j++)
			m->assign[j].topic = xstrdup(m->assign[j].topic);
		v[i].out = NULL;
		v[i].nout = 0;
		m->deadline_ns = now + m->session_ns;
	}
	free(v);
	free(topics);
	g->generation++;
	g->assignor = a;
	free(g->leader);
	g->leader = xstrdup(g->members->id);
	g->state = GS_STABLE;
	rmq_info("group %s: generation %d formed with %zu members (%s)", g->id, g->generation,
		 g->nmembers, rmq_assignor_name(a));
	for (struct member *m = g->members; m; m = m->next) {
		if (m->join) {
			struct greq *r = m->join;
			m->join = NULL;
			answer_join(g, m, r);
		}
	}
	group_store_generation(gs, g);
}

static void maybe_complete(struct rmq_gshard *gs, struct group *g)
{
	if (g->state != GS_PREPARING)
		return;
	uint64_t now = rmq_now_ns();
	if (g->initial_until && now < g->initial_until)
		return;
	bool all = true;
	for (struct member *m = g->members; m; m = m->next)
		all = all && m->join;
	if (all || now >= g->rebalance_deadline)
		complete_rebalance(gs, g);
}

/* After members went away: what the group does next. */
static void members_changed(struct rmq_gshard *gs, struct group *g, const char *why)
{
	if (g->nmembers == 0) {
		g->state = GS_EMPTY;
		g->initial_until = g->rebalance_deadline = 0;
		g->empty_since_ms = group_now_ms();
	} else if (g->state == GS_STABLE) {
		start_rebalance(gs, g, why);
	} else {
		maybe_complete(gs, g);
	}
}

static void on_group_timer(struct rmq_timer *t)
{
	struct group *g = RMQ_CONTAINER_OF(t, struct group, timer);
	struct rmq_gshard *gs = gs_of(rmq_bshard_current());
	uint64_t now = rmq_now_ns();
	bool gone = false;
	for (struct member *m = g->members, *next; m; m = next) {
		next = m->next;
		if (!m->join && m->deadline_ns <= now) {
			remove_member(g, m, "session timeout");
			gone = true;
		}
	}
	if (gone)
		members_changed(gs, g, "session timeout");
	else
		maybe_complete(gs, g);
	arm(gs, g);
}

static void answer_join(struct group *g, struct member *m, struct greq *r)
{
	Rustmq__Client__JoinGroupResponse a = RUSTMQ__CLIENT__JOIN_GROUP_RESPONSE__INIT;
	Google__Protobuf__Duration hb = GOOGLE__PROTOBUF__DURATION__INIT;
	Rustmq__Client__GroupMember *ms = calloc(g->nmembers, sizeof(*ms));
	Rustmq__Client__GroupMember **mp = calloc(g->nmembers, sizeof(*mp));
	if (!ms || !mp) {
		free(ms);
		free(mp);
		greq_err(r, EC_COORDINATOR_NOT_AVAILABLE, "out of memory: rejoin");
		return;
	}
	size_t i = 0;
	for (struct member *x = g->members; x; x = x->next, i++) {
		rustmq__client__group_member__init(&ms[i]);
		ms[i].member_id = x->id;
		ms[i].group_instance_id = x->instance_id;
		ms[i].client_id = x->client_id;
		ms[i].client_host = x->host;
		ms[i].topics = x->topics;
		ms[i].n_topics = x->ntopics;
		mp[i] = &ms[i];
	}
	uint64_t hb_ns = m->session_ns / 3;
	if (hb_ns > 3000 * NS_PER_MS)
		hb_ns = 3000 * NS_PER_MS;
	hb.seconds = (int64_t)(hb_ns / 1000000000ULL);
	hb.nanos = (int32_t)(hb_ns % 1000000000ULL);
	a.generation_id = g->generation;
	a.member_id = m->id;
	a.leader_member_id = g->leader ? g->leader : "";
	a.assignor = (char *)rmq_assignor_name(g->assignor);
	a.members = mp;
	a.n_members = g->nmembers;
	a.heartbeat_interval = &hb;
	greq_reply(r, &a.base);
	free(ms);
	free(mp);
}

static int copy_strings(char ***dst, size_t *n, char **src, size_t ns)
{
	char **v = calloc(ns ? ns : 1, sizeof(*v));
	if (!v)
		return -ENOMEM;
	for (size_t i = 0; i < ns; i++) {
		if (!(v[i] = strdup(src[i]))) {
			while (i--)
				free(v[i]);
			free(v);
			return -ENOMEM;
		}
	}
	for (size_t i = 0; i < *n; i++)
		free((*dst)[i]);
	free(*dst);
	*dst = v;
	*n = ns;
	return 0;
}

static bool same_strings(char **a, size_t na, char **b, size_t nb)
{
	if (na != nb)
		return false;
	for (size_t i = 0; i < na; i++)
		if (strcmp(a[i], b[i]) != 0)
			return false;
	return true;
}

static bool lists_known_assignor(char **v, size_t n)
{
	if (n == 0)
		return true; /* ["range"] */
	for (size_t i = 0; i < n; i++)
		if (rmq_assignor_parse(v[i]) >= 0)
			return true;
	return false;
}

/* Would the group still share an assignor with m listing `as`? */
static bool protocol_fits(const struct group *g, const struct member *m, char **as, size_t nas)
{
	struct rmq_assign_member *v = assign_view(g);
	size_t n = 0;
	bool fits = true;
	if (!v)
		return true; /* decided again when the generation forms */
	for (const struct member *x = g->members; x; x = x->next, n++) {
		if (x == m) {
			v[n].assignors = (const char *const *)as;
			v[n].nassignors = nas;
		}
	}
	if (!m || !member_find(g, m->id)) {
		struct rmq_assign_member *w = realloc(v, (n + 1) * sizeof(*v));
		if (!w) {
			free(v);
			return true;
		}
		v = w;
		memset(&v[n], 0, sizeof(v[n]));
		v[n].member_id = "";
		v[n].assignors = (const char *const *)as;
		v[n].nassignors = nas;
		n++;
	}
	fits = rmq_assign_choose(v, n) >= 0;
	free(v);
	return fits;
}

static char *new_member_id(const char *client_id)
{
	char uuid[40];
	rmq_uuid(uuid);
	size_t n = strlen(client_id) + 48;
	char *id = malloc(n);
	if (id)
		snprintf(id, n, "%s-%s", client_id[0] ? client_id : "member", uuid);
	return id;
}

static void answer_member_id_required(struct rmq_gshard *gs, struct group *g, struct greq *r,
				      uint64_t session_ns)
{
	const Rustmq__Client__JoinGroupRequest *q = (const void *)r->req;
	uint32_t max = gs->bs->b->cfg.group_max_pending;
	pending_purge(g, false);
	if (g->npending >= max) {
		greq_err(r, EC_GROUP_MAX_SIZE_REACHED,
			 "group %s has %u member ids handed out that have not joined yet "
			 "(--group-max-pending-members): retry once they join or expire",
			 q->group_id, g->npending);
		return;
	}
	char *id = new_member_id(q->client_id);
	struct pending *x = id ? malloc(sizeof(*x) + strlen(id) + 1) : NULL;
	if (!x) {
		free(id);
		greq_err(r, EC_COORDINATOR_NOT_AVAILABLE, "out of memory");
		return;
	}
	strcpy(x->id, id);
	x->expires_ns = rmq_now_ns() + session_ns;
	x->next = g->pending;
	g->pending = x;
	g->npending++;
	Rustmq__Client__JoinGroupResponse a = RUSTMQ__CLIENT__JOIN_GROUP_RESPONSE__INIT;
	a.error_code = EC_MEMBER_ID_REQUIRED;
	a.error_message = "join again with the member_id given";
	a.generation_id = -1;
	a.member_id = id;
	greq_reply(r, &a.base);
	free(id);
}

static void do_join(struct rmq_gshard *gs, struct greq *r)
{
	const Rustmq__Client__JoinGroupRequest *q = (const void *)r->req;
	const struct rmq_broker_config *cfg = &gs->bs->b->cfg;
	uint64_t session = dur_ns(q->session_timeout, DEFAULT_SESSION_NS);
	if (session < cfg->group_min_session_ns || session > cfg->group_max_session_ns) {
		greq_err(r, EC_INVALID_SESSION_TIMEOUT,
			 "session_timeout %" PRIu64 " ms is outside this broker's %" PRIu64 "..%" PRIu64
			 " ms (--group-min-session-timeout, --group-max-session-timeout)",
			 session / NS_PER_MS, cfg->group_min_session_ns / NS_PER_MS,
			 cfg->group_max_session_ns / NS_PER_MS);
		return;
	}
	uint64_t rebalance = dur_ns(q->rebalance_timeout, session);
	if (q->n_topics == 0) {
		greq_err(r, EC_INVALID_REQUEST, "a member must subscribe to at least one topic");
		return;
	}
	if (!lists_known_assignor(q->assignors, q->n_assignors)) {
		greq_err(r, EC_INCONSISTENT_GROUP_PROTOCOL,
			 "none of the member's assignors is supported: use range, roundrobin or sticky");
		return;
	}
	if (group_refuse_new(gs, r, q->group_id))
		return;
	struct group *g = group_get(gs, q->group_id);
	if (!g) {
		greq_err(r, EC_COORDINATOR_NOT_AVAILABLE, "out of memory");
		return;
	}
	struct member *m = NULL;
	char *id = NULL;           /* a new member's id */
	if (q->member_id[0]) {
		m = member_find(g, q->member_id);
		if (!m && !pending_take(g, q->member_id)) {
			greq_err(r, EC_UNKNOWN_MEMBER_ID,
				 "member %s is not in group %s (removed after a timeout, or the "
				 "coordinator restarted): rejoin with an empty member_id",
				 q->member_id, q->group_id);
			return;
		}
		if (!m)
			id = strdup(q->member_id); /* the id MEMBER_ID_REQUIRED gave */
	} else if (q->group_instance_id[0]) {
		/* Static membership: the instance is known by its instance id;
		 * it gets a new member id and the old one is fenced. */
		id = new_member_id(q->client_id);
		m = member_by_instance(g, q->group_instance_id);
		if (m && id) {
			if (m->join) {
				greq_err(m->join, EC_UNKNOWN_MEMBER_ID,
					 "member %s was replaced by a newer join of instance %s", m->id,
					 m->instance_id);
				m->join = NULL;
			}
			if (g->leader && strcmp(g->leader, m->id) == 0) {
				free(g->leader);
				g->leader = xstrdup(id);
			}
			free(m->id);
			m->id = id;
			id = NULL;
		}
	} else {
		/* A dynamic member's first join: its id now, the join itself
		 * next, so a call the client gave up on never becomes a member. */
		answer_member_id_required(gs, g, r, session);
		return;
	}
	bool fresh = !m;
	if (fresh) {
		if (cfg->group_max_size && g->nmembers >= cfg->group_max_size) {
			free(id);
			greq_err(r, EC_GROUP_MAX_SIZE_REACHED, "group %s has its maximum of %u members",
				 q->group_id, cfg->group_max_size);
			return;
		}
		m = calloc(1, sizeof(*m));
		if (!m || !id) {
			free(m);
			free(id);
			greq_err(r, EC_COORDINATOR_NOT_AVAILABLE, "out of memory");
			return;
		}
		m->id = id;
	}
	if (!protocol_fits(g, fresh ? NULL : m, q->assignors, q->n_assignors)) {
		if (fresh)
			member_free(m);
		greq_err(r, EC_INCONSISTENT_GROUP_PROTOCOL,
			 "the member's assignors share none with the other members of group %s",
			 q->group_id);
		return;
	}
	bool changed = fresh || !same_strings(m->topics, m->ntopics, q->topics, q->n_topics) ||
		       !same_strings(m->assignors, m->nassignors, q->assignors, q->n_assignors);
	char *cid = xstrdup(q->client_id), *host = xstrdup(r->host), *inst = xstrdup(q->group_instance_id);
	if (!cid || !host || !inst || copy_strings(&m->topics, &m->ntopics, q->topics, q->n_topics) < 0 ||
	    copy_strings(&m->assignors, &m->nassignors, q->assignors, q->n_assignors) < 0) {
		free(cid);
		free(host);
		free(inst);
		if (fresh)
			member_free(m);
		greq_err(r, EC_COORDINATOR_NOT_AVAILABLE, "out of memory");
		return;
	}
	free(m->client_id);
	free(m->host);
	free(m->instance_id);
	m->client_id = cid;
	m->host = host;
	m->instance_id = inst;
	m->session_ns = session;
	m->rebalance_ns = rebalance;
	if (fresh) {
		struct member **pp = &g->members;
		while (*pp)
			pp = &(*pp)->next;
		*pp = m;
		g->nmembers++;
		rmq_info("group %s: member %s joins from %s", g->id, m->id, m->host);
	}
	if (g->state == GS_STABLE && !changed) {
		/* A member that lost its answer asks again: same generation. */
		m->deadline_ns = rmq_now_ns() + m->session_ns;
		answer_join(g, m, r);
		arm(gs, g);
		return;
	}
	if (m->join)
		greq_err(m->join, EC_REBALANCE_IN_PROGRESS,
			 "superseded by a newer JoinGroup of the same member");
	m->join = r;
	if (g->state != GS_PREPARING) {
		start_rebalance(gs, g, fresh ? "a member joined" : "a member changed its subscription");
	} else if (fresh && g->initial_until) {
		uint64_t until = rmq_now_ns() + cfg->group_initial_delay_ns;
		g->initial_until = until < g->rebalance_deadline ? until : g->rebalance_deadline;
	}
	if (m->rebalance_ns && rmq_now_ns() + m->rebalance_ns > g->rebalance_deadline)
		g->rebalance_deadline = rmq_now_ns() + m->rebalance_ns;
	maybe_complete(gs, g);
	arm(gs, g);
}

/* Finds the calling member; answers the error and returns NULL when it
 * is not one. */
struct member *member_of(struct rmq_gshard *gs, struct greq *r, const char *gid,
				const char *mid, struct group **gp)
{
	struct group *g = group_find(gs, gid);
	struct member *m = g ? member_find(g, mid) : NULL;
	if (!m) {
		greq_err(r, EC_UNKNOWN_MEMBER_ID,
			 "member %s is not in group %s: rejoin with an empty member_id", mid, gid);
		return NULL;
	}
	if (!m->join)
		m->deadline_ns = rmq_now_ns() + m->session_ns;
	arm(gs, g);
	*gp = g;
	return m;
}

bool generation_ok(struct greq *r, const struct group *g, int32_t gen)
{
	if (gen == g->generation)
		return true;
	greq_err(r, EC_ILLEGAL_GENERATION, "generation %d is not group %s's current %d: rejoin", gen,
		 g->id, g->generation);
	return false;
}

static void do_sync(struct rmq_gshard *gs, struct greq *r)
{
	const Rustmq__Client__SyncGroupRequest *q = (const void *)r->req;
	struct group *g;
	struct member *m = member_of(gs, r, q->group_id, q->member_id, &g);
	if (!m)
		return;
	if (g->state == GS_PREPARING) {
		greq_err(r, EC_REBALANCE_IN_PROGRESS, "group %s is rebalancing: rejoin", g->id);
		return;
	}
	if (!generation_ok(r, g, q->generation_id))
		return;
	Rustmq__Client__SyncGroupResponse a = RUSTMQ__CLIENT__SYNC_GROUP_RESPONSE__INIT;
	Rustmq__Common__TopicPartition *tps = calloc(m->nassign ? m->nassign : 1, sizeof(*tps));
	Rustmq__Common__TopicPartition **tpp = calloc(m->nassign ? m->nassign : 1, sizeof(*tpp));
	if (!tps || !tpp) {
		free(tps);
		free(tpp);
		greq_err(r, EC_COORDINATOR_NOT_AVAILABLE, "out of memory");
		return;
	}
	for (size_t i = 0; i < m->nassign; i++) {
		rustmq__common__topic_partition__init(&tps[i]);
		tps[i].topic = (char *)m->assign[i].topic;
		tps[i].partition = m->assign[i].partition;
		tpp[i] = &tps[i];
	}
	a.assignment = tpp;
	a.n_assignment = m->nassign;
	a.assignor = (char *)rmq_assignor_name(g->assignor);
	a.generation_id = g->generation;
	greq_reply(r, &a.base);
	free(tps);
	free(tpp);
}

static void do_heartbeat(struct rmq_gshard *gs, struct greq *r)
{
	const Rustmq__Client__GroupHeartbeatRequest *q = (const void *)r->req;
	struct group *g;
	struct member *m = member_of(gs, r, q->group_id, q->member_id, &g);
	if (!m)
		return;
	Rustmq__Client__GroupHeartbeatResponse a = RUSTMQ__CLIENT__GROUP_HEARTBEAT_RESPONSE__INIT;
	if (g->state == GS_PREPARING) {
		a.error_code = EC_REBALANCE_IN_PROGRESS;
		a.error_message = "the group is rebalancing: commit, then rejoin";
		a.rebalance_in_progress = true;
	} else if (!generation_ok(r, g, q->generation_id)) {
		return;
	}
	greq_reply(r, &a.base);
}

static void do_leave(struct rmq_gshard *gs, struct greq *r)
{
	const Rustmq__Client__LeaveGroupRequest *q = (const void *)r->req;
	struct group *g = group_find(gs, q->group_id);
	struct member *m = NULL;
	if (g)
		m = q->member_id[0] ? member_find(g, q->member_id)
				    : q->group_instance_id[0] ? member_by_instance(g, q->group_instance_id)
							      : NULL;
	if (!m) {
		greq_err(r, EC_UNKNOWN_MEMBER_ID, "member %s is not in group %s",
			 q->member_id[0] ? q->member_id : q->group_instance_id, q->group_id);
		return;
	}
	remove_member(g, m, q->reason[0] ? q->reason : "left the group");
	members_changed(gs, g, "a member left");
	arm(gs, g);
	Rustmq__Client__LeaveGroupResponse a = RUSTMQ__CLIENT__LEAVE_GROUP_RESPONSE__INIT;
	greq_reply(r, &a.base);
}

/* ---- topics and time ----------------------------------------------------------- */

static bool topic_changed(const struct rmq_meta *old, const struct rmq_meta *m, const char *t)
{
	long a = rmq_meta_find(old, t), b = rmq_meta_find(m, t);
	if (a < 0 || b < 0)
		return (a < 0) != (b < 0);
	return old->topics[a].partitions != m->topics[b].partitions ||
	       strcmp(old->topics[a].id, m->topics[b].id) != 0;
}

void rmq_groups_meta_changed(struct rmq_bshard *bs, const struct rmq_meta *old,
			     const struct rmq_meta *m)
{
	struct rmq_gshard *gs = gs_of(bs);
	if (!gs || !old)
		return;
	for (size_t i = 0; i < gs->tcap; i++) {
		for (struct group *g = gs->tab[i]; g; g = g->hnext) {
			if (g->state != GS_STABLE)
				continue;
			bool changed = false;
			for (struct member *x = g->members; x && !changed; x = x->next)
				for (size_t j = 0; j < x->ntopics && !changed; j++)
					changed = topic_changed(old, m, x->topics[j]);
			if (changed) {
				start_rebalance(gs, g, "a subscribed topic was created, deleted or changed");
				arm(gs, g);
			}
		}
	}
}

static void expired_deleted(void *arg, int res)
{
	char *gid = arg;
	if (res < 0)
		rmq_warn("group %s: its expired offsets were not deleted: %s", gid, rmq_strerror(res));
	free(gid);
}

void rmq_groups_retain(struct rmq_bshard *bs)
{
	struct rmq_gshard *gs = gs_of(bs);
	uint64_t keep = bs->b->cfg.offsets_retention_ms, now = group_now_ms();
	if (!gs || keep == 0 || gs->stopping)
		return;
	for (size_t i = 0; i < gs->tcap; i++) {
		for (struct group *g = gs->tab[i], *next; g; g = next) {
			next = g->hnext;
			if (g->nmembers || g->expiring)
				continue;
			uint64_t last = g->empty_since_ms;
			for (size_t j = 0; j < g->noffs; j++)
				if (g->offs[j].commit_ms > last)
					last = g->offs[j].commit_ms;
			if (last + keep > now)
				continue;
			char *gid = strdup(g->id);
			rmq_info("group %s: empty since %" PRIu64 " ms ago, longer than --offsets-retention: "
				 "its offsets are deleted", g->id, now - last);
			if (gid && group_delete_append(gs, g, expired_deleted, gid) == 0)
				g->expiring = true;
			else
				free(gid);
		}
	}
}

/* ---- leadership of the offsets partitions (a cluster) ------------------------------ */

/* Partition part is no longer coordinated here: its groups go (held joins
 * answered NOT_COORDINATOR, so members find the new coordinator and
 * rejoin there), and appends not yet committed fail. */
static void unload(struct rmq_gshard *gs, uint32_t part, const char *why)
{
	size_t n = 0;
	for (size_t i = 0; i < gs->tcap; i++) {
		for (struct group *g = gs->tab[i], *next; g; g = next) {
			next = g->hnext;
			if (g->part != part)
				continue;
			while (g->members) {
				struct member *m = g->members;
				g->members = m->next;
				g->nmembers--;
				if (m->join)
					greq_err(m->join, EC_NOT_COORDINATOR,
						 "group %s is coordinated elsewhere now (%s): ask "
						 "FindCoordinator and rejoin",
						 g->id, why);
				member_free(m);
			}
			group_remove(gs, g);
			n++;
		}
	}
	/* Gone before the sets fail: their callbacks (and any append or
	 * compaction they would start) find the partition not coordinated. */
	struct rmq_olog *l = gs->ologs[part];
	gs->ologs[part] = NULL;
	gs->live[part] = 0;
	gs->compacting[part] = false;
	rmq_olog_detach(l);
	rmq_info("%s-%u: no longer coordinated here (%s): %zu groups dropped", RMQ_OFFSETS_TOPIC,
		 part, why, n);
}

void rmq_groups_partition_changed(struct rmq_partition *p)
{
	struct rmq_gshard *gs = gs_of(p->bs);
	if (!gs || !gs->replicated || p->index >= gs->nparts ||
	    strcmp(p->topic_name, RMQ_OFFSETS_TOPIC) != 0)
		return;
	uint32_t part = p->index;
	/* Only once this process runs registered: a restarted broker's first
	 * snapshot is the one it stopped with, which may still name it leader
	 * of partitions that moved while it was away (it would serve old
	 * offsets until the next metadata).  Every snapshot applied comes
	 * back here (rmq_partitions_apply sets the roles again). */
	bool leads = p->state == RMQ_PART_ONLINE && p->role == RMQ_ROLE_LEADER && !gs->stopping &&
		     rmq_groups_registered(p->bs);
	struct rmq_olog *l = gs->ologs[part];
	if (l && (!leads || rmq_olog_epoch(l) != p->leader_epoch))
		unload(gs, part, !leads ? "its leadership moved" : "a new leader epoch");
	if (!leads || gs->ologs[part])
		return;
	/* Led here: the groups of the partition come from its log, as a
	 * restart rebuilds them from the node's own. */
	uint64_t t0 = rmq_now_ns();
	size_t before = gs->ngroups;
	int rc = rmq_olog_attach(p->bs, p, group_replay_record, gs, &gs->ologs[part]);
	if (rc < 0) {
		rmq_error("%s-%u: cannot load its groups: %s", RMQ_OFFSETS_TOPIC, part, rmq_strerror(rc));
		return;
	}
	rmq_info("%s-%u: coordinated here in leader epoch %u: %zu groups loaded from offsets "
		 "%" PRIu64 "-%" PRIu64 " in %" PRIu64 " ms",
		 RMQ_OFFSETS_TOPIC, part, p->leader_epoch, gs->ngroups - before,
		 rmq_log_start_offset(p->log), rmq_log_end_offset(p->log),
		 (rmq_now_ns() - t0) / 1000000);
}

void rmq_groups_partition_hw(struct rmq_partition *p)
{
	struct rmq_gshard *gs = gs_of(p->bs);
	if (!gs || !gs->replicated || p->index >= gs->nparts || !gs->ologs[p->index] ||
	    strcmp(p->topic_name, RMQ_OFFSETS_TOPIC) != 0)
		return;
	rmq_olog_hw(gs->ologs[p->index]);
}

/* ---- shard life ------------------------------------------------------------------ */

#define DEFAULT_OFFSETS_PARTITIONS 16

int rmq_groups_layout(const char *data_dir, uint32_t *partitions)
{
	char buf[32];
	ssize_t n = rmq_meta_read_file(data_dir, "offsets-partitions", buf, sizeof(buf) - 1);
	if (n == -ENOENT) {
		if (*partitions == 0)
			*partitions = DEFAULT_OFFSETS_PARTITIONS;
		int len = snprintf(buf, sizeof(buf), "%u\n", *partitions);
		return rmq_meta_write_file(data_dir, "offsets-partitions", buf, (size_t)len);
	}
	if (n < 0)
		return (int)n;
	buf[n] = '\0';
	char *end;
	unsigned long stored = strtoul(buf, &end, 10);
	if (end == buf || stored == 0 || stored > 1024) {
		rmq_error("%s/meta/offsets-partitions does not hold a partition count", data_dir);
		return RMQ_ECORRUPT;
	}
	if (*partitions && *partitions != stored) {
		rmq_error("--offsets-partitions=%u, but the groups of %s live in %lu partitions: "
			  "changing it would lose their committed offsets (drop the flag)",
			  *partitions, data_dir, stored);
		return RMQ_EBADFLAG;
	}
	*partitions = (uint32_t)stored;
	return 0;
}

int rmq_groups_init(struct rmq_bshard *bs)
{
	struct rmq_gshard *gs = calloc(1, sizeof(*gs));
	uint32_t n = bs->b->cfg.offsets_partitions;
	if (!gs)
		return -ENOMEM;
	gs->bs = bs;
	gs->nparts = n;
	gs->tcap = 64;
	gs->tab = calloc(gs->tcap, sizeof(*gs->tab));
	gs->ologs = calloc(n, sizeof(*gs->ologs));
	gs->live = calloc(n, sizeof(*gs->live));
	gs->compacting = calloc(n, sizeof(*gs->compacting));
	bs->groups = gs;
	if (!gs->tab || !gs->ologs || !gs->live || !gs->compacting)
		return -ENOMEM;
	/* In a cluster the logs are the replicated topic's partitions, loaded
	 * when this node comes to lead them (rmq_groups_partition_changed). */
	gs->replicated = rmq_groups_replicated(bs->b);
	for (uint32_t p = 0; p < n && !gs->replicated; p++) {
		if (rmq_partition_shard(RMQ_OFFSETS_TOPIC, p, bs->nshards) != bs->id)
			continue;
		int rc = rmq_olog_open(bs, p, bs->b->cfg.offsets_segment_bytes, group_replay_record, gs,
				       &gs->ologs[p]);
		if (rc < 0)
			return rc;
	}
	return 0;
}

void rmq_groups_flush(struct rmq_bshard *bs)
{
	struct rmq_gshard *gs = gs_of(bs);
	for (uint32_t p = 0; gs && p < gs->nparts; p++)
		if (gs->ologs[p])
			rmq_olog_flush(gs->ologs[p]);
}

bool rmq_groups_drained(struct rmq_bshard *bs)
{
	struct rmq_gshard *gs = gs_of(bs);
	if (!gs)
		return true;
	if (!gs->stopping) {
		gs->stopping = true;
		for (size_t i = 0; i < gs->tcap; i++)
			for (struct group *g = gs->tab[i]; g; g = g->hnext)
				for (struct member *m = g->members; m; m = m->next)
					if (m->join) {
						greq_err(m->join, EC_COORDINATOR_NOT_AVAILABLE,
							 "the coordinator is shutting down: rejoin");
						m->join = NULL;
					}
		/* A cluster: commits waiting for followers that may never
		 * answer (stopped too) fail now; their members go to the next
		 * coordinator. */
		for (uint32_t p = 0; gs->replicated && p < gs->nparts; p++)
			if (gs->ologs[p])
				unload(gs, p, "this node stops");
	}
	if (gs->out || gs->busy)
		return false;
	for (uint32_t p = 0; p < gs->nparts; p++)
		if (gs->ologs[p] && !rmq_olog_idle(gs->ologs[p]))
			return false;
	return true;
}

void rmq_groups_fini(struct rmq_bshard *bs)
{
	struct rmq_gshard *gs = gs_of(bs);
	if (!gs)
		return;
	for (uint32_t p = 0; gs->ologs && p < gs->nparts; p++) {
		struct rmq_olog *l = gs->ologs[p];
		gs->ologs[p] = NULL;
		if (gs->replicated)
			rmq_olog_detach(l); /* none left: unloaded when stopping */
		else
			rmq_olog_close(l);
	}
	for (size_t i = 0; gs->tab && i < gs->tcap; i++) {
		while (gs->tab[i]) {
			struct group *g = gs->tab[i];
			while (g->members) {
				struct member *m = g->members;
				g->members = m->next;
				g->nmembers--;
				member_free(m); /* held joins were answered when stopping */
			}
			group_remove(gs, g);
		}
	}
	free(gs->tab);
	free(gs->ologs);
	free(gs->live);
	free(gs->compacting);
	free(gs);
	bs->groups = NULL;
}
