/* SPDX-License-Identifier: Apache-2.0 */
/*
 * group_offsets.c - committed offsets (group.h): kept in memory per group,
 * stored as records of the offsets log (offsets.h) and rebuilt from it,
 * compaction, and the RPCs that read and write them: CommitOffsets,
 * FetchOffsets, ResetGroupOffsets.
 *
 * A commit or reset is checked on the coordinator, the partitions are
 * looked up on their shards (existence, log start, high watermark:
 * lookup.h), the records appended, and memory changed only once they are
 * durable, in log order:
 *
 *   check ─► rmq_lookup_start ─► offsets_looked_up ─► group_commit_append
 *                                                          │ durable
 *                       answer ◄── pwork done ◄─ commit_appended (applies)
 */
#include "broker/group_int.h"

#include "broker/lookup.h"
#include "client/consumer.pb-c.h"
#include "controller/admin.pb-c.h"
#include "core/error.h"
#include "core/log.h"

#include <errno.h>
#include <inttypes.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* ---- offsets in memory ------------------------------------------------------------ */

void offent_clear(struct offent *e)
{
	free(e->topic);
	free(e->metadata);
}

static int offent_cmp(const char *topic, uint32_t p, const struct offent *e)
{
	int c = strcmp(topic, e->topic);
	return c ? c : (p < e->partition ? -1 : p > e->partition);
}

/* Index of (topic, p) in g->offs, or -(insertion point) - 1. */
static long offent_search(const struct group *g, const char *topic, uint32_t p)
{
	size_t lo = 0, hi = g->noffs;
	while (lo < hi) {
		size_t mid = (lo + hi) / 2;
		int c = offent_cmp(topic, p, &g->offs[mid]);
		if (c == 0)
			return (long)mid;
		if (c < 0)
			hi = mid;
		else
			lo = mid + 1;
	}
	return -(long)lo - 1;
}

struct offent *offent_find(struct group *g, const char *topic, uint32_t partition)
{
	long i = offent_search(g, topic, partition);
	return i >= 0 ? &g->offs[i] : NULL;
}

/* Bytes a live offset record takes in the log (compaction's estimate). */
static uint64_t offent_bytes(const struct group *g, const struct offent *e)
{
	return 40 + strlen(g->id) + strlen(e->topic) + strlen(e->metadata);
}

/* Sets (or, with e->topic only, deletes when del) an offset in memory. */
static int offent_put(struct rmq_gshard *gs, struct group *g, const struct offent *e)
{
	long i = offent_search(g, e->topic, e->partition);
	char *md = xstrdup(e->metadata);
	if (!md)
		return -ENOMEM;
	if (i >= 0) {
		struct offent *x = &g->offs[i];
		gs->live[g->part] -= offent_bytes(g, x);
		free(x->metadata);
		x->metadata = md;
		x->offset = e->offset;
		x->leader_epoch = e->leader_epoch;
		x->commit_ms = e->commit_ms;
		gs->live[g->part] += offent_bytes(g, x);
		return 0;
	}
	if (g->noffs == g->capoffs) {
		size_t cap = g->capoffs ? g->capoffs * 2 : 8;
		struct offent *v = realloc(g->offs, cap * sizeof(*v));
		if (!v) {
			free(md);
			return -ENOMEM;
		}
		g->offs = v;
		g->capoffs = cap;
	}
	char *t = xstrdup(e->topic);
	if (!t) {
		free(md);
		return -ENOMEM;
	}
	size_t at = (size_t)(-i - 1);
	memmove(&g->offs[at + 1], &g->offs[at], (g->noffs - at) * sizeof(*g->offs));
	g->offs[at] = *e;
	g->offs[at].topic = t;
	g->offs[at].metadata = md;
	g->noffs++;
	gs->live[g->part] += offent_bytes(g, &g->offs[at]);
	return 0;
}

static void offent_del(struct rmq_gshard *gs, struct group *g, const char *topic, uint32_t p)
{
	long i = offent_search(g, topic, p);
	if (i < 0)
		return;
	gs->live[g->part] -= offent_bytes(g, &g->offs[i]);
	offent_clear(&g->offs[i]);
	memmove(&g->offs[i], &g->offs[i + 1], (g->noffs - (size_t)i - 1) * sizeof(*g->offs));
	g->noffs--;
}

/* ---- records of the offsets log ------------------------------------------------ */

static size_t encode_offset_value(const struct offent *e, uint8_t **out)
{
	Rustmq__Client__OffsetFetchPartition v = RUSTMQ__CLIENT__OFFSET_FETCH_PARTITION__INIT;
	Google__Protobuf__Timestamp ts = GOOGLE__PROTOBUF__TIMESTAMP__INIT;
	v.committed_case = RUSTMQ__CLIENT__OFFSET_FETCH_PARTITION__COMMITTED_OFFSET;
	v.offset = e->offset;
	v.metadata = e->metadata ? e->metadata : "";
	if (e->leader_epoch >= 0) {
		v.leader_epoch_opt_case = RUSTMQ__CLIENT__OFFSET_FETCH_PARTITION__LEADER_EPOCH_OPT_LEADER_EPOCH;
		v.leader_epoch = (uint32_t)e->leader_epoch;
	}
	ts.seconds = (int64_t)(e->commit_ms / 1000);
	ts.nanos = (int32_t)(e->commit_ms % 1000) * 1000000;
	v.commit_time = &ts;
	size_t n = rustmq__client__offset_fetch_partition__get_packed_size(&v);
	*out = malloc(n ? n : 1);
	if (!*out)
		return 0;
	return rustmq__client__offset_fetch_partition__pack(&v, *out);
}

static size_t encode_group_value(const struct group *g, uint8_t **out)
{
	Rustmq__Controller__GroupDescription v = RUSTMQ__CONTROLLER__GROUP_DESCRIPTION__INIT;
	v.group_id = g->id;
	v.generation_id = g->generation;
	v.protocol = g->assignor >= 0 ? (char *)rmq_assignor_name(g->assignor) : "";
	v.leader_member_id = g->leader ? g->leader : "";
	v.protocol_type = "consumer";
	size_t n = rustmq__controller__group_description__get_packed_size(&v);
	*out = malloc(n ? n : 1);
	if (!*out)
		return 0;
	return rustmq__controller__group_description__pack(&v, *out);
}

/* Replay and runtime apply one record of partition `part`. */
void group_replay_record(void *arg, const struct rmq_orec *r)
{
	struct rmq_gshard *gs = arg;
	struct rmq_okey k;
	char gid[RMQ_GROUP_ID_MAX + 1], topic[256];
	if (rmq_okey_parse(r->key, r->klen, &k) < 0 || k.glen > RMQ_GROUP_ID_MAX || k.tlen > 255) {
		rmq_warn("%s: a record with an unknown key (%zu bytes) was skipped", RMQ_OFFSETS_TOPIC,
			 r->klen);
		return;
	}
	snprintf(gid, sizeof(gid), "%.*s", (int)k.glen, k.group);
	struct group *g = group_find(gs, gid);
	if (k.kind == 'G') {
		if (!r->val) {
			if (g && g->nmembers == 0) {
				while (g->noffs)
					offent_del(gs, g, g->offs[0].topic, g->offs[0].partition);
				group_remove(gs, g);
			}
			return;
		}
		Rustmq__Controller__GroupDescription *d =
			rustmq__controller__group_description__unpack(NULL, r->vlen, r->val);
		if (!d)
			return;
		if ((g = group_get(gs, gid)) && d->generation_id > g->generation) {
			g->generation = d->generation_id;
			g->assignor = rmq_assignor_parse(d->protocol);
		}
		rustmq__controller__group_description__free_unpacked(d, NULL);
		return;
	}
	snprintf(topic, sizeof(topic), "%.*s", (int)k.tlen, k.topic);
	if (!r->val) {
		if (g)
			offent_del(gs, g, topic, k.partition);
		return;
	}
	Rustmq__Client__OffsetFetchPartition *v =
		rustmq__client__offset_fetch_partition__unpack(NULL, r->vlen, r->val);
	if (!v)
		return;
	struct offent e = {
		.topic = topic,
		.partition = k.partition,
		.offset = v->offset,
		.metadata = v->metadata,
		.leader_epoch = v->leader_epoch_opt_case ? (int64_t)v->leader_epoch : -1,
		.commit_ms = v->commit_time ? (uint64_t)v->commit_time->seconds * 1000 +
						 (uint64_t)v->commit_time->nanos / 1000000 : 0,
	};
	if ((g = group_get(gs, gid)))
		(void)offent_put(gs, g, &e);
	rustmq__client__offset_fetch_partition__free_unpacked(v, NULL);
}


/* Records under construction: keys and values owned until appended. */
struct recs {
	struct rmq_orec *v;
	size_t n, cap;
	bool oom;
};

static void recs_add(struct recs *rs, const uint8_t *key, size_t klen, uint8_t *val, size_t vlen)
{
	if (rs->oom)
		goto fail;
	if (rs->n == rs->cap) {
		size_t cap = rs->cap ? rs->cap * 2 : 16;
		struct rmq_orec *v = realloc(rs->v, cap * sizeof(*v));
		if (!v) {
			rs->oom = true;
			goto fail;
		}
		rs->v = v;
		rs->cap = cap;
	}
	uint8_t *k = malloc(klen);
	if (!k) {
		rs->oom = true;
		goto fail;
	}
	memcpy(k, key, klen);
	rs->v[rs->n++] = (struct rmq_orec){k, klen, val, vlen};
	return;
fail:
	free(val);
}

static void recs_free(struct recs *rs)
{
	for (size_t i = 0; i < rs->n; i++) {
		free((void *)rs->v[i].key);
		free((void *)rs->v[i].val);
	}
	free(rs->v);
}

static void add_offset_rec(struct recs *rs, const char *gid, const struct offent *e, bool tomb)
{
	uint8_t key[RMQ_OKEY_MAX], *val = NULL;
	size_t klen = rmq_okey_offset(key, gid, e->topic, e->partition), vlen = 0;
	if (!tomb && (vlen = encode_offset_value(e, &val)) == 0) {
		rs->oom = true;
		return;
	}
	recs_add(rs, key, klen, val, vlen);
}

static void add_group_rec(struct recs *rs, const struct group *g, bool tomb)
{
	uint8_t key[RMQ_OKEY_MAX], *val = NULL;
	size_t klen = rmq_okey_group(key, g->id), vlen = 0;
	if (!tomb && (vlen = encode_group_value(g, &val)) == 0) {
		rs->oom = true;
		return;
	}
	recs_add(rs, key, klen, val, vlen);
}

/* ---- compaction ---------------------------------------------------------------- */

struct compaction {
	struct rmq_gshard *gs;
	uint32_t part;
	uint64_t start;
};

static void compaction_done(void *arg, int res)
{
	struct compaction *c = arg;
	struct rmq_gshard *gs = c->gs;
	gs->busy--;
	gs->compacting[c->part] = false;
	if (res == 0 && gs->ologs[c->part]) {
		int n = rmq_olog_delete_before(gs->ologs[c->part], c->start);
		rmq_debug("%s-%u: compacted, %d segments deleted", RMQ_OFFSETS_TOPIC, c->part, n);
	}
	free(c);
}

/*
 * Rewrites partition part's live records at the tail once the log holds
 * more than twice them plus two segments; then the segments before the
 * rewrite are superseded and go (compaction_done).  Records appended
 * meanwhile land after the rewrite's start, so nothing live is dropped.
 * In a cluster the rewrite is replicated like any commit and is done
 * once the ISR has it; the leader then drops its prefix, and each
 * follower drops its own when the leader's next request carries the new
 * log start (follow.c, replication.proto's step 6).
 */
static void maybe_compact(struct rmq_gshard *gs, uint32_t part)
{
	struct rmq_olog *l = gs->ologs[part];
	uint64_t seg = gs->bs->b->cfg.offsets_segment_bytes;
	/* Only when settled: an append in flight is below the rewrite's
	 * start but not yet in memory, so the rewrite would miss it. */
	if (!l || gs->compacting[part] || gs->stopping || !rmq_olog_settled(l) ||
	    rmq_olog_size(l) <= 2 * gs->live[part] + 2 * seg)
		return;
	struct compaction *c = malloc(sizeof(*c));
	struct recs rs = {0};
	if (!c)
		return;
	*c = (struct compaction){gs, part, rmq_olog_end(l)};
	for (size_t i = 0; i < gs->tcap; i++) {
		for (struct group *g = gs->tab[i]; g; g = g->hnext) {
			if (g->part != part)
				continue;
			if (g->generation > 0)
				add_group_rec(&rs, g, false);
			for (size_t j = 0; j < g->noffs; j++)
				add_offset_rec(&rs, g->id, &g->offs[j], false);
		}
	}
	if (rs.oom || rmq_olog_append(l, rs.v, rs.n, compaction_done, c) < 0) {
		free(c);
	} else {
		gs->compacting[part] = true;
		gs->busy++;
	}
	recs_free(&rs);
}

/* ---- appends of commits and deletions ------------------------------------------ */

struct gappend {
	struct rmq_gshard *gs;
	char *gid;
	uint32_t part;
	struct offent *v;     /* commits to apply once durable */
	size_t n;
	void (*done)(void *arg, int res); /* NULL: nobody waits */
	void *arg;
};

static void gappend_free(struct gappend *a)
{
	for (size_t i = 0; i < a->n; i++)
		offent_clear(&a->v[i]);
	free(a->v);
	free(a->gid);
	free(a);
}

static struct gappend *gappend_new(struct rmq_gshard *gs, const char *group,
				   void (*done)(void *arg, int res), void *arg)
{
	struct gappend *a = calloc(1, sizeof(*a));
	if (!a || !(a->gid = strdup(group))) {
		free(a);
		return NULL;
	}
	a->gs = gs;
	a->part = rmq_group_partition(gs->bs, group);
	a->done = done;
	a->arg = arg;
	return a;
}

/* Appends rs (then freed) for a; cb runs once durable.  On failure a is
 * freed, nothing was appended, and the error is returned. */
static int gappend_submit(struct gappend *a, struct recs *rs, void (*cb)(void *arg, int res))
{
	struct rmq_gshard *gs = a->gs;
	int rc = rs->oom ? -ENOMEM : 0;
	if (rc == 0 && !gs->ologs[a->part])
		rc = RMQ_ESTATE; /* a cluster: its partition is led elsewhere now */
	if (rc == 0) {
		gs->busy++;
		rc = rmq_olog_append(gs->ologs[a->part], rs->v, rs->n, cb, a);
		if (rc < 0)
			gs->busy--;
	}
	recs_free(rs);
	if (rc < 0)
		gappend_free(a);
	return rc;
}

/* The end of every append's callback. */
static void gappend_finish(struct gappend *a, int res)
{
	if (a->done)
		a->done(a->arg, res);
	maybe_compact(a->gs, a->part);
	gappend_free(a);
}

static void commit_appended(void *arg, int res)
{
	struct gappend *a = arg;
	struct rmq_gshard *gs = a->gs;
	gs->busy--;
	if (res == 0) {
		struct group *g = group_get(gs, a->gid);
		for (size_t i = 0; g && i < a->n; i++)
			if (offent_put(gs, g, &a->v[i]) < 0)
				rmq_warn("group %s: no memory to keep a durable commit in memory", a->gid);
	}
	gappend_finish(a, res);
}

int group_commit_append(struct rmq_gshard *gs, const char *group, const struct offent *v,
			size_t n, void (*done)(void *arg, int res), void *arg)
{
	struct gappend *a = gappend_new(gs, group, done, arg);
	struct recs rs = {0};
	if (!a || !(a->v = calloc(n ? n : 1, sizeof(*a->v)))) {
		if (a)
			gappend_free(a);
		return -ENOMEM;
	}
	for (size_t i = 0; i < n; i++) {
		a->v[i] = v[i];
		a->v[i].topic = xstrdup(v[i].topic);
		a->v[i].metadata = xstrdup(v[i].metadata);
		a->n++;
		if (!a->v[i].topic || !a->v[i].metadata)
			rs.oom = true;
		add_offset_rec(&rs, group, &v[i], false);
	}
	return gappend_submit(a, &rs, commit_appended);
}

static void delete_appended(void *arg, int res)
{
	struct gappend *a = arg;
	struct rmq_gshard *gs = a->gs;
	gs->busy--;
	struct group *g = group_find(gs, a->gid);
	if (g)
		g->expiring = false;
	if (res == 0 && g) {
		while (g->noffs)
			offent_del(gs, g, g->offs[0].topic, g->offs[0].partition);
		if (g->nmembers == 0)
			group_remove(gs, g);
	}
	gappend_finish(a, res);
}

int group_delete_append(struct rmq_gshard *gs, struct group *g,
			void (*done)(void *arg, int res), void *arg)
{
	struct gappend *a = gappend_new(gs, g->id, done, arg);
	struct recs rs = {0};
	if (!a)
		return -ENOMEM;
	for (size_t i = 0; i < g->noffs; i++)
		add_offset_rec(&rs, g->id, &g->offs[i], true);
	add_group_rec(&rs, g, true);
	return gappend_submit(a, &rs, delete_appended);
}

static void generation_appended(void *arg, int res)
{
	struct gappend *a = arg;
	a->gs->busy--;
	if (res < 0)
		rmq_warn("group %s: the new generation was not stored: %s", a->gid, rmq_strerror(res));
	gappend_finish(a, res);
}

/* Stores the generation just formed, so a restart continues the count. */
void group_store_generation(struct rmq_gshard *gs, struct group *g)
{
	struct gappend *a = gappend_new(gs, g->id, NULL, NULL);
	struct recs rs = {0};
	if (!a)
		return;
	add_group_rec(&rs, g, false);
	(void)gappend_submit(a, &rs, generation_appended);
}

/* ---- offsets ------------------------------------------------------------------- */

/*
 * A commit or a reset in progress, one entry per requested partition:
 * checked, looked up on the partitions' shards, resolved to the offset to
 * store (or refused), appended, answered.
 */
struct pwork {
	struct rmq_gshard *gs;
	struct greq *r;
	size_t n;
	struct rmq_lookup *lk;     /* the partition, and what to look up */
	int *codes;                /* EC_OK until something refuses the entry */
	char (*errs)[400];
	int64_t *prev;             /* reset: the committed offset before; -1 = none */
	struct offent *v;          /* resolved: what to store */
	bool dry_run;
	bool remote_ok;            /* commits in a cluster: see remote_ok() */
	/* After the lookup, for an entry still OK: fills v[i] or refuses. */
	void (*resolve)(struct pwork *w, size_t i);
	/* Builds and sends the answer (then the work is freed). */
	void (*answer)(struct pwork *w);
};

static void pwork_free(struct pwork *w)
{
	free(w->lk);
	free(w->codes);
	free(w->errs);
	free(w->prev);
	free(w->v);
	free(w);
}

static struct pwork *pwork_new(struct rmq_gshard *gs, struct greq *r, size_t n)
{
	struct pwork *w = calloc(1, sizeof(*w));
	size_t cn = n ? n : 1;
	if (!w)
		return NULL;
	w->lk = calloc(cn, sizeof(*w->lk));
	w->codes = calloc(cn, sizeof(*w->codes));
	w->errs = calloc(cn, sizeof(*w->errs));
	w->prev = calloc(cn, sizeof(*w->prev));
	w->v = calloc(cn, sizeof(*w->v));
	if (!w->lk || !w->codes || !w->errs || !w->prev || !w->v) {
		pwork_free(w);
		return NULL;
	}
	w->gs = gs;
	w->r = r;
	w->n = n;
	for (size_t i = 0; i < n; i++)
		w->prev[i] = -1;
	return w;
}

static void pwork_refuse(struct pwork *w, size_t i, int code, const char *fmt, ...)
	__attribute__((format(printf, 4, 5)));
static void pwork_refuse(struct pwork *w, size_t i, int code, const char *fmt, ...)
{
	va_list ap;
	w->codes[i] = code;
	va_start(ap, fmt);
	vsnprintf(w->errs[i], sizeof(w->errs[i]), fmt, ap);
	va_end(ap);
}

/* Names entry i's partition (tp may be NULL or nameless: refused). */
static bool pwork_partition(struct pwork *w, size_t i, const Rustmq__Common__TopicPartition *tp)
{
	struct rmq_lookup *lk = &w->lk[i];
	if (!tp || !tp->topic[0]) {
		snprintf(lk->topic, sizeof(lk->topic), "?");
		pwork_refuse(w, i, EC_INVALID_REQUEST, "topic_partition is missing");
		return false;
	}
	snprintf(lk->topic, sizeof(lk->topic), "%s", tp->topic);
	lk->partition = tp->partition;
	return true;
}

static void pwork_done(void *arg, int res)
{
	struct pwork *w = arg;
	for (size_t i = 0; res < 0 && i < w->n; i++) {
		if (w->codes[i] != EC_OK)
			continue;
		if (res == RMQ_ESTATE && w->gs->replicated)
			/* Kafka's answer to a commit whose coordinator moved
			 * before the ISR had it: it may or may not be stored. */
			pwork_refuse(w, i, EC_NOT_COORDINATOR,
				     "this broker stopped coordinating group %s before the commit was "
				     "replicated: ask FindCoordinator and commit again",
				     greq_group_id(w->r));
		else
			pwork_refuse(w, i, EC_STORAGE_ERROR, "the offsets log failed: %s",
				     rmq_strerror(res));
	}
	w->answer(w);
	pwork_free(w);
}

/* A cluster: a commit for a partition another broker leads (or none does
 * now) is stored without the high-watermark check, which only its leader
 * could make; Kafka makes none.  The topic and partition must exist
 * (rmq_route said so before NOT_LEADER). */
static bool remote_ok(const struct pwork *w, size_t i)
{
	return w->remote_ok &&
	       (w->lk[i].code == EC_NOT_LEADER || w->lk[i].code == EC_LEADER_NOT_AVAILABLE);
}

static void pwork_looked_up(void *arg)
{
	struct pwork *w = arg;
	struct offent *store = calloc(w->n ? w->n : 1, sizeof(*store));
	size_t nv = 0;
	w->gs->busy--;
	for (size_t i = 0; i < w->n; i++) {
		if (w->codes[i] == EC_OK && w->lk[i].code != EC_OK &&
		    w->lk[i].code != EC_OFFSET_NOT_AVAILABLE && !remote_ok(w, i))
			pwork_refuse(w, i, w->lk[i].code, "%s", w->lk[i].err);
		if (w->codes[i] == EC_OK)
			w->resolve(w, i);
		if (w->codes[i] == EC_OK && store)
			store[nv++] = w->v[i];
	}
	/* Kafka appends commits with acks=all: an ISR below the offsets
	 * topic's min.insync.replicas refuses them before anything is
	 * stored, so memory (what FetchOffsets answers) keeps the offset
	 * committed before. */
	const struct rmq_olog *l = w->gs->ologs[rmq_group_partition(w->gs->bs, greq_group_id(w->r))];
	uint32_t nisr, min;
	if (store && !w->dry_run && nv > 0 && l && rmq_olog_short(l, &nisr, &min)) {
		for (size_t i = 0; i < w->n; i++)
			if (w->codes[i] == EC_OK)
				pwork_refuse(w, i, EC_NOT_ENOUGH_REPLICAS,
					     "min.insync.replicas=%u but %u replicas of %s-%u are in sync: "
					     "not stored; retry once its replicas are back",
					     min, nisr, RMQ_OFFSETS_TOPIC, rmq_olog_index(l));
		nv = 0;
	}
	int rc = !store ? -ENOMEM
		 : (w->dry_run || nv == 0)
		     ? 0
		     : group_commit_append(w->gs, greq_group_id(w->r), store, nv, pwork_done, w);
	free(store); /* group_commit_append copied it */
	if (rc < 0 || w->dry_run || nv == 0)
		pwork_done(w, rc);
}

static void pwork_start(struct pwork *w)
{
	w->gs->busy++;
	if (rmq_lookup_start(w->gs->bs, w->lk, w->n, pwork_looked_up, w) < 0) {
		w->gs->busy--;
		pwork_done(w, -ENOMEM);
	}
}

/* ---- CommitOffsets ----------------------------------------------------------------- */

static void commit_resolve(struct pwork *w, size_t i)
{
	const Rustmq__Client__CommitOffsetsRequest *q = (const void *)w->r->req;
	const Rustmq__Client__OffsetCommitPartition *p = q->partitions[i];
	const struct rmq_lookup *lk = &w->lk[i];
	if (lk->code == EC_OK && p->offset > lk->hw) {
		pwork_refuse(w, i, EC_INVALID_OFFSET,
			     "offset %" PRIu64 " is above the high watermark %" PRIu64 " of %s-%u",
			     p->offset, lk->hw, lk->topic, lk->partition);
		return;
	}
	w->v[i] = (struct offent){
		.topic = (char *)lk->topic,
		.partition = lk->partition,
		.offset = p->offset,
		.metadata = p->metadata,
		.leader_epoch = p->leader_epoch_opt_case ? (int64_t)p->leader_epoch : -1,
		.commit_ms = group_now_ms(),
	};
}

static void commit_answer(struct pwork *w)
{
	const Rustmq__Client__CommitOffsetsRequest *q = (const void *)w->r->req;
	Rustmq__Client__CommitOffsetsResponse a = RUSTMQ__CLIENT__COMMIT_OFFSETS_RESPONSE__INIT;
	Rustmq__Client__OffsetCommitPartitionResponse *ps = calloc(w->n ? w->n : 1, sizeof(*ps));
	Rustmq__Client__OffsetCommitPartitionResponse **pp = calloc(w->n ? w->n : 1, sizeof(*pp));
	if (!ps || !pp) {
		greq_err(w->r, EC_COORDINATOR_NOT_AVAILABLE, "out of memory");
	} else {
		for (size_t i = 0; i < w->n; i++) {
			rustmq__client__offset_commit_partition_response__init(&ps[i]);
			ps[i].topic_partition = q->partitions[i]->topic_partition;
			ps[i].error_code = w->codes[i];
			ps[i].error_message = w->errs[i];
			pp[i] = &ps[i];
		}
		a.partitions = pp;
		a.n_partitions = w->n;
		greq_reply(w->r, &a.base);
	}
	free(ps);
	free(pp);
}

void group_commit_exec(struct rmq_gshard *gs, struct greq *r)
{
	const Rustmq__Client__CommitOffsetsRequest *q = (const void *)r->req;
	struct group *g = group_find(gs, q->group_id);
	if (!g && group_refuse_new(gs, r, q->group_id))
		return;
	if (q->generation_id < 0 && !q->member_id[0]) {
		if (g && g->nmembers > 0) {
			greq_err(r, EC_ILLEGAL_GENERATION,
				 "group %s has members: commit as one of them (generation and member id)",
				 q->group_id);
			return;
		}
	} else {
		struct member *m = member_of(gs, r, q->group_id, q->member_id, &g);
		if (!m || !generation_ok(r, g, q->generation_id))
			return;
	}
	struct pwork *w = pwork_new(gs, r, q->n_partitions);
	if (!w) {
		greq_err(r, EC_COORDINATOR_NOT_AVAILABLE, "out of memory");
		return;
	}
	w->resolve = commit_resolve;
	w->answer = commit_answer;
	w->remote_ok = gs->replicated;
	uint32_t mdmax = gs->bs->b->cfg.offset_metadata_max;
	for (size_t i = 0; i < w->n; i++) {
		const Rustmq__Client__OffsetCommitPartition *p = q->partitions[i];
		w->lk[i].spec = RMQ_LOOKUP_LATEST;
		if (pwork_partition(w, i, p->topic_partition) && strlen(p->metadata) > mdmax)
			pwork_refuse(w, i, EC_OFFSET_METADATA_TOO_LARGE,
				     "metadata of %zu bytes exceeds --offset-metadata-max-bytes (%u)",
				     strlen(p->metadata), mdmax);
	}
	pwork_start(w);
}

/* ---- FetchOffsets ----------------------------------------------------------------- */

static void fill_fetched(Rustmq__Client__OffsetFetchPartition *o, Google__Protobuf__Timestamp *ts,
			 const struct offent *e)
{
	if (!e)
		return;
	o->committed_case = RUSTMQ__CLIENT__OFFSET_FETCH_PARTITION__COMMITTED_OFFSET;
	o->offset = e->offset;
	o->metadata = e->metadata;
	if (e->leader_epoch >= 0) {
		o->leader_epoch_opt_case = RUSTMQ__CLIENT__OFFSET_FETCH_PARTITION__LEADER_EPOCH_OPT_LEADER_EPOCH;
		o->leader_epoch = (uint32_t)e->leader_epoch;
	}
	ts->seconds = (int64_t)(e->commit_ms / 1000);
	ts->nanos = (int32_t)(e->commit_ms % 1000) * 1000000;
	o->commit_time = ts;
}

void group_fetch_offsets_exec(struct rmq_gshard *gs, struct greq *r)
{
	const Rustmq__Client__FetchOffsetsRequest *q = (const void *)r->req;
	struct group *g = group_find(gs, q->group_id);
	size_t n = q->n_partitions ? q->n_partitions : g ? g->noffs : 0;
	Rustmq__Client__FetchOffsetsResponse a = RUSTMQ__CLIENT__FETCH_OFFSETS_RESPONSE__INIT;
	Rustmq__Client__OffsetFetchPartition *ps = calloc(n ? n : 1, sizeof(*ps));
	Rustmq__Client__OffsetFetchPartition **pp = calloc(n ? n : 1, sizeof(*pp));
	Rustmq__Common__TopicPartition *tps = calloc(n ? n : 1, sizeof(*tps));
	Google__Protobuf__Timestamp *ts = calloc(n ? n : 1, sizeof(*ts));
	if (!ps || !pp || !tps || !ts) {
		greq_err(r, EC_COORDINATOR_NOT_AVAILABLE, "out of memory");
		goto out;
	}
	for (size_t i = 0; i < n; i++) {
		rustmq__client__offset_fetch_partition__init(&ps[i]);
		google__protobuf__timestamp__init(&ts[i]);
		const struct offent *e;
		if (q->n_partitions) {
			const Rustmq__Common__TopicPartition *tp = q->partitions[i];
			ps[i].topic_partition = (Rustmq__Common__TopicPartition *)tp;
			e = g ? offent_find(g, tp->topic, tp->partition) : NULL;
		} else {
			e = &g->offs[i];
			rustmq__common__topic_partition__init(&tps[i]);
			tps[i].topic = e->topic;
			tps[i].partition = e->partition;
			ps[i].topic_partition = &tps[i];
		}
		fill_fetched(&ps[i], &ts[i], e);
		pp[i] = &ps[i];
	}
	a.partitions = pp;
	a.n_partitions = n;
	greq_reply(r, &a.base);
out:
	free(ps);
	free(pp);
	free(tps);
	free(ts);
}

/* ---- ResetGroupOffsets ------------------------------------------------------------ */

static void reset_resolve(struct pwork *w, size_t i)
{
	const Rustmq__Controller__ResetGroupOffsetsRequest *q = (const void *)w->r->req;
	const Rustmq__Controller__OffsetResetSpec *s = q->partitions[i];
	struct rmq_lookup *lk = &w->lk[i];
	uint64_t off = lk->code == EC_OFFSET_NOT_AVAILABLE ? lk->hw : lk->offset; /* no later record: the end */
	if (s->target_case == RUSTMQ__CONTROLLER__OFFSET_RESET_SPEC__TARGET_TO_OFFSET) {
		if (s->to_offset < lk->log_start || s->to_offset > lk->hw) {
			pwork_refuse(w, i, EC_OFFSET_OUT_OF_RANGE,
				     "offset %" PRIu64 " is outside %s-%u's %" PRIu64 "..%" PRIu64,
				     s->to_offset, lk->topic, lk->partition, lk->log_start, lk->hw);
			return;
		}
		off = s->to_offset;
	}
	w->v[i] = (struct offent){.topic = lk->topic, .partition = lk->partition, .offset = off,
				  .metadata = "", .leader_epoch = -1, .commit_ms = group_now_ms()};
}

static void reset_answer(struct pwork *w)
{
	const Rustmq__Controller__ResetGroupOffsetsRequest *q = (const void *)w->r->req;
	Rustmq__Controller__ResetGroupOffsetsResponse a = RUSTMQ__CONTROLLER__RESET_GROUP_OFFSETS_RESPONSE__INIT;
	Rustmq__Controller__OffsetResetResult *rs = calloc(w->n ? w->n : 1, sizeof(*rs));
	Rustmq__Controller__OffsetResetResult **rp = calloc(w->n ? w->n : 1, sizeof(*rp));
	if (!rs || !rp) {
		greq_fail(w->r, RMQ_GRPC_RESOURCE_EXHAUSTED, "out of memory");
	} else {
		for (size_t i = 0; i < w->n; i++) {
			rustmq__controller__offset_reset_result__init(&rs[i]);
			rs[i].topic_partition = q->partitions[i]->topic_partition;
			rs[i].error_code = w->codes[i];
			rs[i].error_message = w->errs[i];
			rs[i].previous_offset = w->prev[i];
			if (w->codes[i] == EC_OK)
				rs[i].new_offset = w->v[i].offset;
			rp[i] = &rs[i];
		}
		a.partitions = rp;
		a.n_partitions = w->n;
		greq_reply(w->r, &a.base);
	}
	free(rs);
	free(rp);
}

void group_reset_exec(struct rmq_gshard *gs, struct greq *r)
{
	const Rustmq__Controller__ResetGroupOffsetsRequest *q = (const void *)r->req;
	struct group *g = group_find(gs, q->group_id);
	if (g && g->nmembers) {
		Rustmq__Controller__ResetGroupOffsetsResponse a =
			RUSTMQ__CONTROLLER__RESET_GROUP_OFFSETS_RESPONSE__INIT;
		a.error_code = EC_GROUP_NOT_EMPTY;
		a.error_message = "the group has active members: stop its consumers first";
		greq_reply(r, &a.base);
		return;
	}
	struct pwork *w = pwork_new(gs, r, q->n_partitions);
	if (!w) {
		greq_fail(r, RMQ_GRPC_RESOURCE_EXHAUSTED, "out of memory");
		return;
	}
	w->resolve = reset_resolve;
	w->answer = reset_answer;
	w->dry_run = q->dry_run;
	for (size_t i = 0; i < w->n; i++) {
		const Rustmq__Controller__OffsetResetSpec *s = q->partitions[i];
		struct rmq_lookup *lk = &w->lk[i];
		lk->spec = RMQ_LOOKUP_LATEST;
		if (!pwork_partition(w, i, s->topic_partition))
			continue;
		const struct offent *e = g ? offent_find(g, lk->topic, lk->partition) : NULL;
		if (e)
			w->prev[i] = (int64_t)e->offset;
		switch (s->target_case) {
		case RUSTMQ__CONTROLLER__OFFSET_RESET_SPEC__TARGET_TO_EARLIEST:
			lk->spec = RMQ_LOOKUP_EARLIEST;
			break;
		case RUSTMQ__CONTROLLER__OFFSET_RESET_SPEC__TARGET_TO_LATEST:
		case RUSTMQ__CONTROLLER__OFFSET_RESET_SPEC__TARGET_TO_OFFSET:
			break;
		case RUSTMQ__CONTROLLER__OFFSET_RESET_SPEC__TARGET_TO_TIMESTAMP:
			lk->spec = RMQ_LOOKUP_TIMESTAMP;
			lk->ts_ms = s->to_timestamp ? s->to_timestamp->seconds * 1000 +
							      s->to_timestamp->nanos / 1000000
						    : 0;
			break;
		default:
			pwork_refuse(w, i, EC_INVALID_REQUEST,
				     "set exactly one of to_earliest, to_latest, to_offset, to_timestamp");
		}
	}
	pwork_start(w);
}
