/* SPDX-License-Identifier: Apache-2.0 */
/*
 * assign.c - the partition assignors (assign.h says what they compute).
 *
 * Every assignor works on one flattened, order-independent view of the
 * input, built by ctx_build():
 *
 *   topic t    the distinct table names, sorted; its partitions have the
 *              global ids g = base[t] .. base[t+1]-1, so ascending g is the
 *              output order (topic, partition)
 *   member i   members sorted by member_id; mord[i] indexes members[]
 *   pair k     one (member, subscribed existing topic): member i's pairs are
 *              moff[i] .. moff[i+1]-1, by topic; topic t's subscribers are
 *              the pairs tsub[toff[t] .. toff[t+1]-1], by member
 *   owner[g]   the member holding g, or NONE
 *
 * An assignor only fills owner[]; emit() turns it into the out arrays.
 */
#include "broker/assign.h"

#include <errno.h>
#include <stdbool.h>
#include <stdlib.h>
#include <string.h>

#define NONE UINT32_MAX

static const char *const assignor_names[] = {
	[RMQ_ASSIGN_RANGE] = "range",
	[RMQ_ASSIGN_ROUNDROBIN] = "roundrobin",
	[RMQ_ASSIGN_STICKY] = "sticky",
};
#define NASSIGNORS (sizeof(assignor_names) / sizeof(assignor_names[0]))

int rmq_assignor_parse(const char *name)
{
	for (size_t a = 0; name && a < NASSIGNORS; a++)
		if (strcmp(name, assignor_names[a]) == 0)
			return (int)a;
	return -1;
}

const char *rmq_assignor_name(enum rmq_assignor a)
{
	return (size_t)a < NASSIGNORS ? assignor_names[a] : NULL;
}

/* A member's effective preference list: its own, or ["range"]. */
static size_t prefs(const struct rmq_assign_member *m, const char *const **list)
{
	static const char *const range_only[] = {"range"};

	*list = m->nassignors ? m->assignors : range_only;
	return m->nassignors ? m->nassignors : 1;
}

int rmq_assign_choose(const struct rmq_assign_member *members, size_t n)
{
	size_t listed[NASSIGNORS] = {0}, votes[NASSIGNORS] = {0};
	const char *const *list;
	int best = -1;

	for (size_t i = 0; i < n; i++) {
		bool seen[NASSIGNORS] = {false};
		size_t len = prefs(&members[i], &list);

		for (size_t j = 0; j < len; j++) {
			int a = rmq_assignor_parse(list[j]);
			if (a >= 0 && !seen[a]) {
				seen[a] = true;
				listed[a]++;
			}
		}
	}
	for (size_t i = 0; i < n; i++) {
		size_t len = prefs(&members[i], &list);

		for (size_t j = 0; j < len; j++) {
			int a = rmq_assignor_parse(list[j]);
			if (a >= 0 && listed[a] == n) {
				votes[a]++;
				break;
			}
		}
	}
	/* Walking members[0]'s list and replacing only on more votes leaves
	 * ties with the entry it names first. */
	size_t len = n ? prefs(&members[0], &list) : 0;
	for (size_t j = 0; j < len; j++) {
		int a = rmq_assignor_parse(list[j]);
		if (a >= 0 && listed[a] == n && (best < 0 || votes[a] > votes[best]))
			best = a;
	}
	return best;
}

struct ctx {
	const struct rmq_assign_topic *topics;
	struct rmq_assign_member *members;
	uint32_t nt, nm, np, P;    /* topics, members, pairs, partitions */
	uint32_t *tidx;            /* [nt] topic t is topics[tidx[t]] */
	uint32_t *base;            /* [nt+1] */
	uint32_t *mord;            /* [nm] member i is members[mord[i]] */
	uint32_t *moff;            /* [nm+1] */
	uint32_t *ptopic;          /* [np] */
	uint32_t *pmember;         /* [np] */
	uint32_t *toff;            /* [nt+1] */
	uint32_t *tsub;            /* [np] */
	uint32_t *owner;           /* [P] */
	uint32_t *cnt;             /* [nm] partitions each member holds */
	uint32_t *held;            /* [np] sticky: partitions each pair holds */
};

struct named {
	const char *s;
	uint32_t i;
};

static int cmp_named(const void *a, const void *b)
{
	const struct named *x = a, *y = b;
	int r = strcmp(x->s, y->s);

	return r ? r : (x->i > y->i) - (x->i < y->i);
}

static int cmp_u32(const void *a, const void *b)
{
	uint32_t x = *(const uint32_t *)a, y = *(const uint32_t *)b;

	return (x > y) - (x < y);
}

static int cmp_u64(const void *a, const void *b)
{
	uint64_t x = *(const uint64_t *)a, y = *(const uint64_t *)b;

	return (x > y) - (x < y);
}

static uint32_t *alloc_u32(size_t n)
{
	return malloc((n ? n : 1) * sizeof(uint32_t));
}

static void ctx_free(struct ctx *c)
{
	uint32_t **arrays[] = {&c->tidx, &c->base, &c->mord, &c->moff, &c->ptopic,
			       &c->pmember, &c->toff, &c->tsub, &c->owner, &c->cnt, &c->held};

	for (size_t i = 0; i < sizeof(arrays) / sizeof(arrays[0]); i++) {
		free(*arrays[i]);
		*arrays[i] = NULL;
	}
}

/* The sorted topic called name, or NONE.  O(log T) comparisons. */
static uint32_t topic_find(const struct ctx *c, const char *name)
{
	uint32_t lo = 0, hi = c->nt;

	while (name && lo < hi) {
		uint32_t mid = lo + (hi - lo) / 2;
		int r = strcmp(name, c->topics[c->tidx[mid]].name);
		if (r == 0)
			return mid;
		if (r < 0)
			hi = mid;
		else
			lo = mid + 1;
	}
	return NONE;
}

/* Member i's pair for topic t, or NONE when i does not subscribe to t. */
static uint32_t pair_find(const struct ctx *c, uint32_t i, uint32_t t)
{
	uint32_t lo = c->moff[i], hi = c->moff[i + 1];

	while (lo < hi) {
		uint32_t mid = lo + (hi - lo) / 2;
		if (c->ptopic[mid] == t)
			return mid;
		if (c->ptopic[mid] < t)
			lo = mid + 1;
		else
			hi = mid;
	}
	return NONE;
}

static int ctx_build(struct ctx *c, const struct rmq_assign_topic *topics, size_t ntopics,
		     struct rmq_assign_member *members, size_t n)
{
	size_t subs = 0, nsort = ntopics > n ? ntopics : n;
	struct named *sorted = NULL;
	uint64_t P = 0;

	if (ntopics >= NONE || n >= NONE)
		return -ENOMEM;
	for (size_t i = 0; i < n; i++) {
		if (members[i].ntopics >= NONE - subs)
			return -ENOMEM;
		subs += members[i].ntopics;
	}
	c->topics = topics;
	c->members = members;
	c->nm = (uint32_t)n;
	sorted = malloc((nsort ? nsort : 1) * sizeof(*sorted));
	c->tidx = alloc_u32(ntopics);
	c->base = alloc_u32(ntopics + 1);
	c->mord = alloc_u32(n);
	c->moff = alloc_u32(n + 1);
	c->ptopic = alloc_u32(subs);
	c->pmember = alloc_u32(subs);
	c->tsub = alloc_u32(subs);
	c->toff = calloc(ntopics + 1, sizeof(uint32_t));
	c->cnt = calloc(n ? n : 1, sizeof(uint32_t));
	if (!sorted || !c->tidx || !c->base || !c->mord || !c->moff || !c->ptopic ||
	    !c->pmember || !c->tsub || !c->toff || !c->cnt)
		goto nomem;

	for (size_t i = 0; i < ntopics; i++)
		sorted[i] = (struct named){topics[i].name ? topics[i].name : "", (uint32_t)i};
	qsort(sorted, ntopics, sizeof(*sorted), cmp_named);
	for (size_t i = 0; i < ntopics; i++) {
		if (!topics[sorted[i].i].name ||
		    (c->nt && strcmp(sorted[i].s, topics[c->tidx[c->nt - 1]].name) == 0))
			continue;
		c->tidx[c->nt] = sorted[i].i;
		c->base[c->nt++] = (uint32_t)P;
		P += topics[sorted[i].i].partitions;
		if (P >= NONE)
			goto nomem;
	}
	c->base[c->nt] = c->P = (uint32_t)P;

	for (size_t i = 0; i < n; i++)
		sorted[i] = (struct named){members[i].member_id, (uint32_t)i};
	qsort(sorted, n, sizeof(*sorted), cmp_named);
	for (uint32_t i = 0; i < n; i++) {
		const struct rmq_assign_member *m = &members[sorted[i].i];
		uint32_t start = c->np;

		c->mord[i] = sorted[i].i;
		c->moff[i] = start;
		for (size_t j = 0; j < m->ntopics; j++) {
			uint32_t t = topic_find(c, m->topics[j]);
			if (t != NONE)
				c->ptopic[c->np++] = t;
		}
		uint32_t end = c->np;
		qsort(c->ptopic + start, end - start, sizeof(uint32_t), cmp_u32);
		c->np = start;
		for (uint32_t k = start; k < end; k++)
			if (c->np == start || c->ptopic[c->np - 1] != c->ptopic[k])
				c->ptopic[c->np++] = c->ptopic[k];
		for (uint32_t k = start; k < c->np; k++)
			c->pmember[k] = i;
	}
	c->moff[n] = c->np;

	/* Counting sort of the pairs by topic; pairs are in member order, so
	 * each topic's subscribers come out in member order too. */
	for (uint32_t k = 0; k < c->np; k++)
		c->toff[c->ptopic[k] + 1]++;
	for (uint32_t t = 0; t < c->nt; t++)
		c->toff[t + 1] += c->toff[t];
	for (uint32_t k = 0; k < c->np; k++)
		c->tsub[c->toff[c->ptopic[k]]++] = k;
	for (uint32_t t = c->nt; t > 0; t--)
		c->toff[t] = c->toff[t - 1];
	c->toff[0] = 0;

	c->owner = alloc_u32(c->P);
	if (!c->owner)
		goto nomem;
	for (uint32_t g = 0; g < c->P; g++)
		c->owner[g] = NONE;
	free(sorted);
	return 0;
nomem:
	free(sorted);
	ctx_free(c);
	return -ENOMEM;
}

static int assign_range(struct ctx *c)
{
	for (uint32_t t = 0; t < c->nt; t++) {
		uint32_t nsub = c->toff[t + 1] - c->toff[t], g = c->base[t];
		uint32_t parts = c->base[t + 1] - c->base[t];

		for (uint32_t s = 0; s < nsub; s++) {
			uint32_t take = parts / nsub + (s < parts % nsub);
			while (take--)
				c->owner[g++] = c->pmember[c->tsub[c->toff[t] + s]];
		}
	}
	return 0;
}

static int assign_roundrobin(struct ctx *c)
{
	uint32_t turn = 0;  /* the member the circular iterator is at */

	for (uint32_t t = 0; t < c->nt; t++) {
		const uint32_t *sub = c->tsub + c->toff[t];
		uint32_t nsub = c->toff[t + 1] - c->toff[t], s = 0;

		/* The first subscriber at or after turn, else the first; within
		 * the topic the iterator then visits its subscribers in turn. */
		while (s < nsub && c->pmember[sub[s]] < turn)
			s++;
		for (uint32_t g = c->base[t]; nsub && g < c->base[t + 1]; g++, s++) {
			if (s == nsub)
				s = 0;
			c->owner[g] = c->pmember[sub[s]];
			turn = c->owner[g] + 1;
		}
	}
	return 0;
}

/*
 * Sticky works on counts: held[k] is how many partitions of its topic pair
 * k is to hold, and cnt[i] their sum over member i.  Steps 1-4 (see
 * assign.h) only change counts; sticky_place() then picks the partitions,
 * which lets each member keep as many of its own as its counts allow.
 */

/* Step 1: claims in member order into owner[], counted per pair. */
static void sticky_keep(struct ctx *c)
{
	for (uint32_t i = 0; i < c->nm; i++) {
		const struct rmq_assign_member *m = &c->members[c->mord[i]];

		for (size_t j = 0; j < m->nprev; j++) {
			uint32_t t = topic_find(c, m->prev[j].topic), p = m->prev[j].partition;
			if (t != NONE && p < c->base[t + 1] - c->base[t] && pair_find(c, i, t) != NONE &&
			    c->owner[c->base[t] + p] == NONE)
				c->owner[c->base[t] + p] = i;
		}
	}
	for (uint32_t t = 0; t < c->nt; t++) {
		for (uint32_t g = c->base[t]; g < c->base[t + 1]; g++) {
			if (c->owner[g] != NONE) {
				c->held[pair_find(c, c->owner[g], t)]++;
				c->cnt[c->owner[g]]++;
			}
		}
	}
}

/* Step 2, only when every member has the same subscription. */
static int sticky_shed(struct ctx *c)
{
	uint32_t w = c->moff[1] - c->moff[0];
	uint64_t parts = 0, *order;

	for (uint32_t i = 1; i < c->nm; i++)
		if (c->moff[i + 1] - c->moff[i] != w ||
		    memcmp(c->ptopic + c->moff[i], c->ptopic, w * sizeof(uint32_t)))
			return 0;
	for (uint32_t k = 0; k < w; k++)
		parts += c->base[c->ptopic[k] + 1] - c->base[c->ptopic[k]];
	order = malloc(c->nm * sizeof(*order));
	if (!order)
		return -ENOMEM;
	/* Most kept first, then by member_id: the P%M members that get the
	 * larger quota are those that would otherwise shed the most. */
	for (uint32_t i = 0; i < c->nm; i++)
		order[i] = (uint64_t)(NONE - c->cnt[i]) << 32 | i;
	qsort(order, c->nm, sizeof(*order), cmp_u64);
	for (uint32_t j = 0; j < c->nm; j++) {
		uint32_t i = (uint32_t)order[j];
		uint32_t quota = (uint32_t)(parts / c->nm + (j < parts % c->nm));

		for (uint32_t k = c->moff[i + 1]; k-- > c->moff[i] && c->cnt[i] > quota;) {
			uint32_t shed = c->cnt[i] - quota < c->held[k] ? c->cnt[i] - quota : c->held[k];
			c->held[k] -= shed;
			c->cnt[i] -= shed;
		}
	}
	free(order);
	return 0;
}

/* Heap order of pairs: fewer partitions first, then smaller member_id. */
static bool lighter(const struct ctx *c, uint32_t a, uint32_t b)
{
	uint32_t x = c->pmember[a], y = c->pmember[b];

	return c->cnt[x] < c->cnt[y] || (c->cnt[x] == c->cnt[y] && x < y);
}

static void sift_down(const struct ctx *c, uint32_t *h, uint32_t n, uint32_t j)
{
	for (;;) {
		uint32_t min = j, l = 2 * j + 1, r = l + 1;
		if (l < n && lighter(c, h[l], h[min]))
			min = l;
		if (r < n && lighter(c, h[r], h[min]))
			min = r;
		if (min == j)
			return;
		uint32_t tmp = h[j];
		h[j] = h[min];
		h[min] = tmp;
		j = min;
	}
}

/* Step 3: per topic, a heap of its subscribers; only the root's count
 * changes while the topic's unassigned partitions are dealt. */
static void sticky_fill(struct ctx *c, uint32_t *heap)
{
	for (uint32_t t = 0; t < c->nt; t++) {
		uint32_t nsub = c->toff[t + 1] - c->toff[t], left = c->base[t + 1] - c->base[t];

		for (uint32_t s = c->toff[t]; s < c->toff[t + 1]; s++)
			left -= c->held[c->tsub[s]];
		if (!nsub || !left)
			continue;
		memcpy(heap, c->tsub + c->toff[t], nsub * sizeof(uint32_t));
		for (uint32_t j = nsub / 2; j-- > 0;)
			sift_down(c, heap, nsub, j);
		while (left--) {
			c->held[heap[0]]++;
			c->cnt[c->pmember[heap[0]]]++;
			sift_down(c, heap, nsub, 0);
		}
	}
}

struct worklist {
	uint32_t *q, head, len, cap;
	bool *queued;
};

static void enqueue(struct worklist *w, uint32_t t)
{
	if (!w->queued[t]) {
		w->queued[t] = true;
		w->q[(w->head + w->len++) % w->cap] = t;
	}
}

/*
 * Step 4.  A topic is rechecked whenever a count changes that could
 * allow a move in it: a giver's count fell (it may now be the lightest
 * subscriber of any of its topics) or a taker's rose (it may now be the
 * heaviest holder of any topic it holds).  Each move lowers the sum of
 * the squared counts by at least 2, so the loop ends; a move costs
 * O(M + T).
 */
static void sticky_balance(struct ctx *c, struct worklist *w)
{
	for (uint32_t t = 0; t < c->nt; t++)
		if (c->toff[t + 1] > c->toff[t])
			enqueue(w, t);
	while (w->len) {
		uint32_t t = w->q[w->head];

		w->head = (w->head + 1) % w->cap;
		w->len--;
		w->queued[t] = false;
		for (;;) {
			uint32_t lo = NONE, hi = NONE;
			for (uint32_t s = c->toff[t]; s < c->toff[t + 1]; s++) {
				uint32_t k = c->tsub[s], i = c->pmember[k];
				if (lo == NONE || c->cnt[i] < c->cnt[c->pmember[lo]])
					lo = k;
				if (c->held[k] && (hi == NONE || c->cnt[i] > c->cnt[c->pmember[hi]]))
					hi = k;
			}
			if (hi == NONE || c->cnt[c->pmember[hi]] < c->cnt[c->pmember[lo]] + 2)
				break;
			c->held[hi]--;
			c->cnt[c->pmember[hi]]--;
			c->held[lo]++;
			c->cnt[c->pmember[lo]]++;
			for (uint32_t k = c->moff[c->pmember[hi]]; k < c->moff[c->pmember[hi] + 1]; k++)
				if (c->ptopic[k] != t)
					enqueue(w, c->ptopic[k]);
			for (uint32_t k = c->moff[c->pmember[lo]]; k < c->moff[c->pmember[lo] + 1]; k++)
				if (c->ptopic[k] != t && c->held[k])
					enqueue(w, c->ptopic[k]);
		}
	}
}

/* Step 5: per topic, each claim stays while its claimant's count allows
 * (smallest partitions first); the other partitions fill the remaining
 * counts in member_id order.  Given the counts, no choice keeps more. */
static void sticky_place(struct ctx *c)
{
	for (uint32_t t = 0; t < c->nt; t++) {
		uint32_t s = c->toff[t];

		for (uint32_t g = c->base[t]; g < c->base[t + 1]; g++) {
			uint32_t k = c->owner[g] == NONE ? NONE : pair_find(c, c->owner[g], t);
			if (k != NONE && c->held[k])
				c->held[k]--;
			else
				c->owner[g] = NONE;
		}
		for (uint32_t g = c->base[t]; g < c->base[t + 1]; g++) {
			while (s < c->toff[t + 1] && !c->held[c->tsub[s]])
				s++;
			if (c->owner[g] != NONE || s == c->toff[t + 1])
				continue;
			c->held[c->tsub[s]]--;
			c->owner[g] = c->pmember[c->tsub[s]];
		}
	}
}

static int assign_sticky(struct ctx *c)
{
	struct worklist w = {.cap = c->nt};
	uint32_t *heap = alloc_u32(c->nm);
	int err = -ENOMEM;

	c->held = calloc(c->np ? c->np : 1, sizeof(uint32_t));
	w.q = alloc_u32(c->nt);
	w.queued = calloc(c->nt ? c->nt : 1, sizeof(bool));
	if (!c->held || !heap || !w.q || !w.queued)
		goto out;
	err = 0;
	if (c->nm == 0)
		goto out;
	sticky_keep(c);
	err = sticky_shed(c);
	if (err)
		goto out;
	sticky_fill(c, heap);
	sticky_balance(c, &w);
	sticky_place(c);
out:
	free(w.queued);
	free(w.q);
	free(heap);
	return err;
}

/* owner[] → the out arrays, in one pass over g so each comes out sorted. */
static int emit(struct ctx *c)
{
	memset(c->cnt, 0, c->nm * sizeof(uint32_t));
	for (uint32_t g = 0; g < c->P; g++)
		if (c->owner[g] != NONE)
			c->cnt[c->owner[g]]++;
	for (uint32_t i = 0; i < c->nm; i++) {
		struct rmq_assign_member *m = &c->members[c->mord[i]];
		if (c->cnt[i] && !(m->out = malloc(c->cnt[i] * sizeof(*m->out)))) {
			rmq_assign_free(c->members, c->nm);
			return -ENOMEM;
		}
	}
	for (uint32_t t = 0; t < c->nt; t++) {
		for (uint32_t g = c->base[t]; g < c->base[t + 1]; g++) {
			if (c->owner[g] == NONE)
				continue;
			struct rmq_assign_member *m = &c->members[c->mord[c->owner[g]]];
			m->out[m->nout++] = (struct rmq_assign_tp){
				c->topics[c->tidx[t]].name, g - c->base[t]};
		}
	}
	return 0;
}

static int (*const assignors[])(struct ctx *) = {
	[RMQ_ASSIGN_RANGE] = assign_range,
	[RMQ_ASSIGN_ROUNDROBIN] = assign_roundrobin,
	[RMQ_ASSIGN_STICKY] = assign_sticky,
};
_Static_assert(sizeof(assignors) / sizeof(assignors[0]) == NASSIGNORS,
	       "one function per assignor name");

int rmq_assign(enum rmq_assignor a, const struct rmq_assign_topic *topics, size_t ntopics,
	       struct rmq_assign_member *members, size_t n)
{
	struct ctx c = {0};
	int err;

	for (size_t i = 0; i < n; i++) {
		members[i].out = NULL;
		members[i].nout = 0;
	}
	if ((size_t)a >= NASSIGNORS)
		return -EINVAL;
	err = ctx_build(&c, topics, ntopics, members, n);
	if (err)
		return err;
	err = assignors[a](&c);
	if (!err)
		err = emit(&c);
	ctx_free(&c);
	return err;
}

void rmq_assign_free(struct rmq_assign_member *members, size_t n)
{
	for (size_t i = 0; i < n; i++) {
		free(members[i].out);
		members[i].out = NULL;
		members[i].nout = 0;
	}
}
