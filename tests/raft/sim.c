/* SPDX-License-Identifier: Apache-2.0 */
/*
 * sim.c - the deterministic simulator of sim.h.
 *
 * A world runs in discrete time units.  Each unit, in this order:
 *
 *   1. faults (fault period only): a partition change, a crash, restarts
 *      that are due, a client proposal to a leader;
 *   2. every message whose delivery time has come, in (time, send order);
 *   3. every node whose next tick has come ticks (each node has its own
 *      period, 8..12 units: clock drift).
 *
 * Each of these is one step.  After a step the node it touched hands out
 * its Readies until it has none, and the invariants are checked.
 *
 * A node's Ready is carried out as a careful storage layer would: hard
 * state and entries made durable, then messages sent, then committed
 * entries applied, then advance.  A crash in the middle of a Ready (a torn
 * or unsynced write) keeps the hard state or not and a prefix of the
 * entries, sends nothing and applies nothing.  A crash between steps loses
 * only the core's volatile state.
 *
 * Cost: each step is O(nodes) plus the messages it sends; Log Matching is
 * checked with per-entry prefix hashes of the durable logs, O(divergent
 * tail) per pair whose log changed; Leader Completeness is O(applied)
 * once per new leader.
 */
#include "sim.h"

#include "raft/raft.h"

#include <stdarg.h>
#include <stdlib.h>
#include <string.h>

#define NODES_MAX 5
#define FLIGHT_MAX 4096
#define PROPOSALS_MAX 400
#define PENDING_MAX 16
#define READS_MAX 64
#define ELECTION_TICKS 10
#define TICK_UNITS_MIN 8
#define TICK_UNITS_MAX 12
#define DELAY_UNITS_MAX 5
#define REORDER_UNITS_MAX 60
#define LIVENESS_TIMEOUTS 50
#define FAULT_TIME_DEFAULT 10000

_Static_assert(NODES_MAX <= RMQ_RAFT_VOTERS_MAX, "the world fits a voter set");

/* --- PRNG: splitmix64 seeds xoshiro256** ------------------------------- */

struct rng {
	uint64_t s[4];
};

static uint64_t splitmix64(uint64_t *x)
{
	uint64_t z = (*x += 0x9e3779b97f4a7c15ULL);
	z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ULL;
	z = (z ^ (z >> 27)) * 0x94d049bb133111ebULL;
	return z ^ (z >> 31);
}

static void rng_seed(struct rng *r, uint64_t seed)
{
	for (int i = 0; i < 4; i++)
		r->s[i] = splitmix64(&seed);
}

static uint64_t rotl(uint64_t x, int k)
{
	return (x << k) | (x >> (64 - k));
}

static uint64_t rng_next(struct rng *r)
{
	uint64_t *s = r->s;
	uint64_t out = rotl(s[1] * 5, 7) * 9;
	uint64_t t = s[1] << 17;
	s[2] ^= s[0];
	s[3] ^= s[1];
	s[1] ^= s[2];
	s[0] ^= s[3];
	s[2] ^= t;
	s[3] = rotl(s[3], 45);
	return out;
}

/* Uniform in [0, n) for n >= 1 (the multiply-shift bias is below 2^-32
 * for the small n used here). */
static uint64_t rng_below(struct rng *r, uint64_t n)
{
	return (uint64_t)(((unsigned __int128)rng_next(r) * n) >> 64);
}

static bool rng_chance(struct rng *r, uint64_t num, uint64_t den)
{
	return rng_below(r, den) < num;
}

/* --- hashing ------------------------------------------------------------ */

#define FNV_OFFSET 0xcbf29ce484222325ULL
#define FNV_PRIME 0x100000001b3ULL

static uint64_t fnv_bytes(uint64_t h, const void *p, size_t n)
{
	const uint8_t *b = p;
	for (size_t i = 0; i < n; i++)
		h = (h ^ b[i]) * FNV_PRIME;
	return h;
}

static uint64_t fnv_u64(uint64_t h, uint64_t v)
{
	return fnv_bytes(h, &v, sizeof(v));
}

/* An entry's identity apart from its index: term, type and bytes. */
static uint64_t entry_hash(const struct rmq_raft_entry *e)
{
	uint64_t h = fnv_u64(FNV_OFFSET, e->term);
	h = fnv_u64(h, e->type);
	return fnv_bytes(h, e->data, e->len);
}

static bool entry_same(const struct rmq_raft_entry *a, const struct rmq_raft_entry *b)
{
	return a->term == b->term && a->type == b->type && a->len == b->len &&
	       (a->len == 0 || memcmp(a->data, b->data, a->len) == 0);
}

/* --- the world ---------------------------------------------------------- */

/* A durable log after the snapshot at base: e[i].index == base + 1 + i.
 * ph[i] hashes every entry 1..base + 1 + i (the snapshot's part comes from
 * base_ph), so two logs with equal prefix hashes at an index agree on
 * everything up to it, compacted or not. */
struct sim_log {
	struct rmq_raft_entry *e;
	uint64_t *ph;
	size_t n, cap;
	uint64_t base, base_term, base_ph;
};

struct sim_applied {
	uint64_t term, hash;
	uint32_t node; /* global map: the first node that applied it; 0: none */
	/* Global map: the lowest term any node applying it was in.  The entry
	 * was committed in that term or before (a node learns of a commit
	 * from a leader of the commit's term or a later one), so every leader
	 * of a later term must hold it. */
	uint64_t committed_by;
};

/* A durable snapshot: the state machine up to index (sm[i]: index i + 1),
 * the term of its last entry and the log's prefix hash there. */
struct sim_snap {
	uint64_t index, term, ph;
	struct sim_applied *sm;
	struct rmq_raft_conf conf; /* the configuration as of index */
};

struct sim_node {
	uint32_t id;
	bool up;
	struct rmq_raft *core;
	struct rmq_raft_config cfg;
	struct rmq_raft_hard_state hs; /* durable */
	struct sim_log log;            /* durable */
	struct sim_snap snap;          /* durable */
	struct sim_snap *incoming;     /* a leader's snapshot being stepped */
	struct sim_applied *sm;        /* sm[i]: index i + 1 */
	size_t n_sm, cap_sm;
	uint32_t tick_units;
	uint64_t next_tick, restart_at;
	uint64_t changed_from; /* lowest index its log changed at; 0: none */
};

struct sim_flight {
	uint64_t at, seq;
	struct rmq_raft_msg m;
	struct sim_snap *snap; /* SNAPSHOT: its data, streamed beside it */
};

struct sim_pending {
	uint64_t index, term, hash;
};

/* A ReadIndex read in flight: confirmed, its index must cover every entry
 * committed before it was asked (at least floor: the highest index
 * applied anywhere then). */
struct sim_read {
	uint64_t ctx, floor;
	uint32_t node;
};

struct sim_world {
	uint64_t seed;
	struct rng rng;
	struct sim_opts o;
	struct sim_result *res;
	char *why;
	size_t whylen;
	enum sim_verdict verdict;
	uint64_t now, seq;
	uint32_t n;
	struct sim_node node[NODES_MAX];
	bool cut[NODES_MAX][NODES_MAX]; /* cut[a][b]: a's messages to b lost */
	struct sim_flight *flight, *due;
	size_t n_flight;
	bool faults;
	/* Fault knobs, per world: per mille per message, or per 10000 units. */
	uint32_t drop_pm, dup_pm, reorder_pm, torn_pm;
	uint32_t part_rate, crash_rate, propose_rate, transfer_rate, compact_rate, read_rate;
	uint32_t member_rate; /* AddPeer / RemovePeer per 10000 units */
	struct rmq_raft_conf first_conf; /* entry 1: the first members' */
	uint32_t *leader_of; /* by term; 0: none seen */
	size_t cap_leader;
	struct sim_applied *applied; /* by index - 1 */
	size_t cap_applied;
	uint64_t proposals;
	struct sim_pending pending[PENDING_MAX];
	size_t n_pending;
	struct sim_read reads[READS_MAX];
	size_t n_reads;
	uint64_t read_ctx;
};

static void fail(struct sim_world *w, enum sim_verdict v, const char *fmt, ...)
	__attribute__((format(printf, 3, 4)));
static void handle_ready(struct sim_world *w, struct sim_node *nd);
static void check(struct sim_world *w);

static void fail(struct sim_world *w, enum sim_verdict v, const char *fmt, ...)
{
	if (w->verdict != SIM_PASS)
		return;
	w->verdict = v;
	char detail[512];
	va_list ap;
	va_start(ap, fmt);
	vsnprintf(detail, sizeof(detail), fmt, ap);
	va_end(ap);
	if (w->why && w->whylen)
		snprintf(w->why, w->whylen, "seed %llu step %llu t=%llu: %s: %s",
			 (unsigned long long)w->seed, (unsigned long long)w->res->steps,
			 (unsigned long long)w->now, sim_verdict_name(v), detail);
	if (w->o.trace)
		fprintf(w->o.trace, "FAIL %s: %s\n", sim_verdict_name(v), detail);
}

/* One step: counted, mixed into the trace hash, printed when tracing. */
static void step(struct sim_world *w, uint64_t kind, uint64_t a, uint64_t b, uint64_t c,
		 const char *fmt, ...) __attribute__((format(printf, 6, 7)));

static void step(struct sim_world *w, uint64_t kind, uint64_t a, uint64_t b, uint64_t c,
		 const char *fmt, ...)
{
	struct sim_result *r = w->res;
	r->steps++;
	uint64_t h = r->trace_hash;
	h = fnv_u64(h, w->now);
	h = fnv_u64(h, kind);
	h = fnv_u64(h, a);
	h = fnv_u64(h, b);
	r->trace_hash = fnv_u64(h, c);
	if (w->o.trace) {
		va_list ap;
		fprintf(w->o.trace, "%8llu t=%-6llu ", (unsigned long long)r->steps,
			(unsigned long long)w->now);
		va_start(ap, fmt);
		vfprintf(w->o.trace, fmt, ap);
		va_end(ap);
		fputc('\n', w->o.trace);
	}
}

static const char *const role_names[] = {"follower", "precandidate", "candidate", "leader"};
static const char *const msg_names[] = {
	"?", "prevote", "prevote_resp", "vote", "vote_resp", "append", "append_resp",
	"timeout_now", "snapshot",
};

static const char *msg_name(enum rmq_raft_msg_type t)
{
	return (unsigned)t < sizeof(msg_names) / sizeof(msg_names[0]) ? msg_names[t] : "?";
}

static void *grow(void *p, size_t *cap, size_t need, size_t size)
{
	if (need <= *cap)
		return p;
	size_t c = *cap ? *cap : 16;
	while (c < need)
		c *= 2;
	void *q = realloc(p, c * size);
	if (!q)
		abort(); /* a test helper: out of memory is not a verdict */
	memset((char *)q + *cap * size, 0, (c - *cap) * size);
	*cap = c;
	return q;
}

static void entry_copy(struct rmq_raft_entry *dst, const struct rmq_raft_entry *src)
{
	*dst = *src;
	dst->data = NULL;
	if (src->len) {
		dst->data = malloc(src->len);
		if (!dst->data)
			abort();
		memcpy(dst->data, src->data, src->len);
	}
}

static struct sim_snap *snap_dup(const struct sim_snap *src)
{
	struct sim_snap *d = calloc(1, sizeof(*d));
	if (!d)
		abort();
	*d = *src;
	d->sm = NULL;
	if (src->index) {
		d->sm = malloc(src->index * sizeof(*d->sm));
		if (!d->sm)
			abort();
		memcpy(d->sm, src->sm, src->index * sizeof(*d->sm));
	}
	return d;
}

static void snap_free(struct sim_snap *sn)
{
	if (sn) {
		free(sn->sm);
		free(sn);
	}
}

/* --- durable logs -------------------------------------------------------- */

static uint64_t log_last(const struct sim_log *l)
{
	return l->base + l->n;
}

/* The term at index (base..last); 0 elsewhere. */
static uint64_t log_term(const struct sim_log *l, uint64_t index)
{
	if (index == l->base)
		return l->base_term;
	return index > l->base && index <= log_last(l) ? l->e[index - l->base - 1].term : 0;
}

static uint64_t log_ph(const struct sim_log *l, uint64_t index)
{
	return index == l->base ? l->base_ph : l->ph[index - l->base - 1];
}

static const struct rmq_raft_entry *log_entry(const struct sim_log *l, uint64_t index)
{
	return index > l->base && index <= log_last(l) ? &l->e[index - l->base - 1] : NULL;
}

/* Keeps the entries up to index last. */
static void log_truncate(struct sim_log *l, uint64_t last)
{
	while (log_last(l) > last && l->n > 0)
		free(l->e[--l->n].data);
}

/* Drops the entries up to index (a snapshot covers them now). */
static void log_compact(struct sim_log *l, uint64_t index)
{
	uint64_t term = log_term(l, index), ph = log_ph(l, index);
	size_t drop = (size_t)(index - l->base);
	for (size_t i = 0; i < drop; i++)
		free(l->e[i].data);
	memmove(l->e, l->e + drop, (l->n - drop) * sizeof(*l->e));
	memmove(l->ph, l->ph + drop, (l->n - drop) * sizeof(*l->ph));
	l->n -= drop;
	l->base = index;
	l->base_term = term;
	l->base_ph = ph;
}

static void log_append(struct sim_log *l, const struct rmq_raft_entry *e)
{
	size_t cap = l->cap;
	l->e = grow(l->e, &cap, l->n + 1, sizeof(*l->e));
	cap = l->cap;
	l->ph = grow(l->ph, &cap, l->n + 1, sizeof(*l->ph));
	l->cap = cap;
	entry_copy(&l->e[l->n], e);
	uint64_t prev = l->n ? l->ph[l->n - 1] : l->base_ph;
	l->ph[l->n] = fnv_u64(prev, entry_hash(e));
	l->n++;
}

static bool is_voter_of(const struct rmq_raft_conf *c, uint32_t id)
{
	const struct rmq_raft_server *sv = rmq_raft_conf_find(c, id);
	return sv && sv->role == RMQ_RAFT_VOTER;
}

/* The voters of c that are not voters of d. */
static uint32_t voters_not_in(const struct rmq_raft_conf *c, const struct rmq_raft_conf *d)
{
	uint32_t n = 0;
	for (uint32_t i = 0; i < c->n; i++) {
		n += c->servers[i].role == RMQ_RAFT_VOTER && !is_voter_of(d, c->servers[i].id);
	}
	return n;
}

/* The configuration in nd's durable log as of index: its newest CONF
 * entry up to there, else its snapshot's (none before index 1). */
static void durable_conf(const struct sim_node *nd, uint64_t index, struct rmq_raft_conf *c)
{
	for (uint64_t i = index; i > nd->log.base; i--) {
		const struct rmq_raft_entry *p = log_entry(&nd->log, i);
		if (p && p->type == RMQ_RAFT_ENTRY_CONF && rmq_raft_conf_decode(p->data, p->len, c) == 0)
			return;
	}
	static const struct rmq_raft_conf none;
	*c = nd->snap.index ? nd->snap.conf : none;
}

/* Single-server changes (thesis section 4.1): the configuration of a CONF
 * entry differs from the one before it in the log by one voter at most. */
static void check_conf_entry(struct sim_world *w, const struct sim_node *nd,
			     const struct rmq_raft_entry *e)
{
	struct rmq_raft_conf next, prev;
	if (rmq_raft_conf_decode(e->data, e->len, &next) < 0) {
		fail(w, SIM_CORE_ERROR, "node %u: CONF entry %llu does not decode", nd->id,
		     (unsigned long long)e->index);
		return;
	}
	if (e->index == 1) {
		/* A new cluster's first configuration (rmq_raft_new) */
		if (memcmp(&next, &w->first_conf, sizeof(next)) != 0 || e->term != 1)
			fail(w, SIM_MEMBERSHIP, "node %u: entry 1 is not the first configuration",
			     nd->id);
		return;
	}
	durable_conf(nd, e->index - 1, &prev);
	if (voters_not_in(&next, &prev) + voters_not_in(&prev, &next) > 1)
		fail(w, SIM_MEMBERSHIP, "node %u: CONF entry %llu changes more than one voter",
		     nd->id, (unsigned long long)e->index);
}

/* Makes entries[0..n) durable: they replace the log from entries[0].index. */
static void persist_entries(struct sim_world *w, struct sim_node *nd,
			    const struct rmq_raft_entry *entries, size_t n)
{
	uint64_t first = entries[0].index;
	if (first <= nd->log.base || first > log_last(&nd->log) + 1) {
		fail(w, SIM_CORE_ERROR,
		     "node %u: Ready entries start at %llu, durable log holds %llu..%llu", nd->id,
		     (unsigned long long)first, (unsigned long long)nd->log.base + 1,
		     (unsigned long long)log_last(&nd->log));
		return;
	}
	for (size_t i = 0; i < n; i++) {
		if (entries[i].index != first + i) {
			fail(w, SIM_CORE_ERROR, "node %u: Ready entry %zu has index %llu, not %llu",
			     nd->id, i, (unsigned long long)entries[i].index,
			     (unsigned long long)(first + i));
			return;
		}
	}
	log_truncate(&nd->log, first - 1);
	for (size_t i = 0; i < n; i++) {
		if (entries[i].type == RMQ_RAFT_ENTRY_CONF)
			check_conf_entry(w, nd, &entries[i]);
		log_append(&nd->log, &entries[i]);
	}
	if (nd->changed_from == 0 || first < nd->changed_from)
		nd->changed_from = first;
}

/* --- the network --------------------------------------------------------- */

static void flight_free(struct sim_flight *f)
{
	snap_free(f->snap);
	for (uint32_t i = 0; i < f->m.n_entries; i++)
		free(f->m.entries[i].data);
	free(f->m.entries);
}

static void enqueue(struct sim_world *w, const struct sim_node *nd, const struct rmq_raft_msg *m,
		    uint64_t delay)
{
	if (w->n_flight == FLIGHT_MAX) {
		step(w, 10, m->from, m->to, m->type, "lost %s %u->%u (network full)",
		     msg_name(m->type), m->from, m->to);
		return;
	}
	struct sim_flight *f = &w->flight[w->n_flight++];
	f->at = w->now + delay;
	f->seq = w->seq++;
	f->m = *m;
	f->m.entries = NULL;
	f->m.conf = NULL; /* the snapshot's, set at delivery */
	f->snap = NULL;
	if (m->type == RMQ_RAFT_MSG_SNAPSHOT)
		f->snap = snap_dup(&nd->snap);
	if (m->n_entries) {
		f->m.entries = calloc(m->n_entries, sizeof(*f->m.entries));
		if (!f->m.entries)
			abort();
		for (uint32_t i = 0; i < m->n_entries; i++)
			entry_copy(&f->m.entries[i], &m->entries[i]);
	}
}

/* Sends one message of nd's Ready; its term, and a granted vote, must be
 * durable by now (PREVOTE and its answer carry a term nobody has entered). */
static void send(struct sim_world *w, const struct sim_node *nd, const struct rmq_raft_msg *m)
{
	if (m->from != nd->id || m->to == 0 || m->to > w->n || m->from == m->to) {
		fail(w, SIM_CORE_ERROR, "node %u's Ready has %s from %u to %u", nd->id,
		     msg_name(m->type), m->from, m->to);
		return;
	}
	bool pre = m->type == RMQ_RAFT_MSG_PREVOTE || m->type == RMQ_RAFT_MSG_PREVOTE_RESP;
	if (!pre && m->term > nd->hs.term) {
		fail(w, SIM_DURABILITY, "node %u sent %s of term %llu with term %llu durable", nd->id,
		     msg_name(m->type), (unsigned long long)m->term,
		     (unsigned long long)nd->hs.term);
		return;
	}
	if (m->type == RMQ_RAFT_MSG_SNAPSHOT &&
	    (m->index != nd->snap.index || m->log_term != nd->snap.term || !m->conf ||
	     memcmp(m->conf, &nd->snap.conf, sizeof(*m->conf)) != 0)) {
		fail(w, SIM_CORE_ERROR, "node %u sent a snapshot of %llu/%llu, its own is %llu/%llu",
		     nd->id, (unsigned long long)m->index, (unsigned long long)m->log_term,
		     (unsigned long long)nd->snap.index, (unsigned long long)nd->snap.term);
		return;
	}
	if (m->type == RMQ_RAFT_MSG_VOTE_RESP && !m->reject &&
	    (nd->hs.term != m->term || nd->hs.vote != m->to)) {
		fail(w, SIM_DURABILITY,
		     "node %u granted its vote of term %llu to %u with term %llu vote %u durable",
		     nd->id, (unsigned long long)m->term, m->to, (unsigned long long)nd->hs.term,
		     nd->hs.vote);
		return;
	}
	if (w->faults && rng_chance(&w->rng, w->drop_pm, 1000)) {
		step(w, 11, m->from, m->to, m->type, "drop %s %u->%u", msg_name(m->type), m->from,
		     m->to);
		return;
	}
	int copies = 1;
	if (w->faults && rng_chance(&w->rng, w->dup_pm, 1000))
		copies = 2;
	for (int i = 0; i < copies; i++) {
		uint64_t delay = 1 + rng_below(&w->rng, DELAY_UNITS_MAX);
		if (w->faults && rng_chance(&w->rng, w->reorder_pm, 1000))
			delay += rng_below(&w->rng, REORDER_UNITS_MAX);
		enqueue(w, nd, m, delay);
	}
}

/* --- state machines ------------------------------------------------------ */

static void apply(struct sim_world *w, struct sim_node *nd, const struct rmq_raft_entry *e,
		  uint64_t term)
{
	if (e->index != nd->n_sm + 1) {
		fail(w, SIM_APPLY_ORDER, "node %u was handed index %llu to apply after %zu", nd->id,
		     (unsigned long long)e->index, nd->n_sm);
		return;
	}
	uint64_t h = entry_hash(e);
	nd->sm = grow(nd->sm, &nd->cap_sm, nd->n_sm + 1, sizeof(*nd->sm));
	nd->sm[nd->n_sm++] = (struct sim_applied){e->term, h, nd->id, term};
	w->applied = grow(w->applied, &w->cap_applied, e->index, sizeof(*w->applied));
	struct sim_applied *g = &w->applied[e->index - 1];
	if (g->node != 0 && term < g->committed_by)
		g->committed_by = term;
	if (g->node == 0) {
		*g = (struct sim_applied){e->term, h, nd->id, term};
		if (e->index > w->res->applied)
			w->res->applied = e->index;
	} else if (g->term != e->term || g->hash != h) {
		fail(w, SIM_STATE_MACHINE_SAFETY,
		     "node %u applied index %llu term %llu (hash %016llx), node %u applied term %llu "
		     "(hash %016llx) there",
		     nd->id, (unsigned long long)e->index, (unsigned long long)e->term,
		     (unsigned long long)h, g->node, (unsigned long long)g->term,
		     (unsigned long long)g->hash);
	}
}

/* --- nodes --------------------------------------------------------------- */

static void crash(struct sim_world *w, struct sim_node *nd, const char *how)
{
	rmq_raft_free(nd->core);
	nd->core = NULL;
	nd->up = false;
	/* A third of the restarts are quick, within an election: a node that
	 * forgot its vote would vote again in the same term. */
	if (rng_chance(&w->rng, 1, 3))
		nd->restart_at = w->now + 1 + rng_below(&w->rng, 30);
	else
		nd->restart_at = w->now + 20 + rng_below(&w->rng, 1500);
	w->res->crashes++;
	step(w, 20, nd->id, nd->restart_at, 0, "crash node %u (%s), restart at %llu", nd->id, how,
	     (unsigned long long)nd->restart_at);
}

/* Installs the leader's snapshot nd received: its durable snapshot and
 * state machine become the leader's, its durable log restarts after it. */
static void install(struct sim_world *w, struct sim_node *nd, const struct rmq_raft_ready *rd)
{
	struct sim_snap *in = nd->incoming;
	if (!in || in->index != rd->snapshot_index || in->term != rd->snapshot_term ||
	    memcmp(rd->snapshot_conf, &in->conf, sizeof(in->conf)) != 0) {
		fail(w, SIM_CORE_ERROR, "node %u: Ready installs snapshot %llu/%llu, it received %llu/%llu",
		     nd->id, (unsigned long long)rd->snapshot_index,
		     (unsigned long long)rd->snapshot_term, in ? (unsigned long long)in->index : 0ULL,
		     in ? (unsigned long long)in->term : 0ULL);
		return;
	}
	nd->incoming = NULL;
	free(nd->snap.sm);
	nd->snap = *in;
	free(in);
	if (rd->snapshot_keeps_log) {
		/* The durable log holds the snapshot's last entry: what follows
		 * it stays. */
		if (log_last(&nd->log) < nd->snap.index || nd->snap.index < nd->log.base ||
		    log_term(&nd->log, nd->snap.index) != nd->snap.term) {
			fail(w, SIM_CORE_ERROR,
			     "node %u: Ready keeps the log after snapshot %llu/%llu, which the "
			     "durable log does not hold",
			     nd->id, (unsigned long long)nd->snap.index,
			     (unsigned long long)nd->snap.term);
			return;
		}
		log_compact(&nd->log, nd->snap.index);
	} else {
		log_truncate(&nd->log, nd->log.base);
		nd->log.base = nd->snap.index;
		nd->log.base_term = nd->snap.term;
		nd->log.base_ph = nd->snap.ph;
	}
	nd->changed_from = nd->log.base + 1;
	/* The state machine becomes the snapshot: each entry in it must be
	 * what every other node applied there. */
	nd->n_sm = 0;
	for (uint64_t i = 0; i < nd->snap.index && w->verdict == SIM_PASS; i++) {
		const struct sim_applied *a = &nd->snap.sm[i];
		w->applied = grow(w->applied, &w->cap_applied, i + 1, sizeof(*w->applied));
		const struct sim_applied *g = &w->applied[i];
		if (g->node == 0 || g->term != a->term || g->hash != a->hash)
			fail(w, SIM_STATE_MACHINE_SAFETY,
			     "node %u installed a snapshot whose index %llu is term %llu, node %u "
			     "applied term %llu there",
			     nd->id, (unsigned long long)i + 1, (unsigned long long)a->term, g->node,
			     (unsigned long long)g->term);
		nd->sm = grow(nd->sm, &nd->cap_sm, i + 1, sizeof(*nd->sm));
		nd->sm[nd->n_sm++] = *a;
	}
	step(w, 23, nd->id, nd->snap.index, nd->snap.term, "node %u installs snapshot %llu/%llu",
	     nd->id, (unsigned long long)nd->snap.index, (unsigned long long)nd->snap.term);
}

/* The state machine up to index becomes nd's durable snapshot. */
static void compact(struct sim_world *w, struct sim_node *nd)
{
	uint64_t max = nd->n_sm < log_last(&nd->log) ? nd->n_sm : log_last(&nd->log);
	if (max <= nd->snap.index)
		return;
	uint64_t index = nd->snap.index + 1 + rng_below(&w->rng, max - nd->snap.index);
	int rc = rmq_raft_compact(nd->core, index);
	step(w, 24, nd->id, index, (uint64_t)(int64_t)rc, "node %u compacts to %llu: %d", nd->id,
	     (unsigned long long)index, rc);
	if (rc != 0)
		return;
	log_compact(&nd->log, index);
	free(nd->snap.sm);
	nd->snap = (struct sim_snap){index, nd->log.base_term, nd->log.base_ph, NULL,
				     *rmq_raft_snapshot_conf(nd->core)};
	nd->snap.sm = malloc(index * sizeof(*nd->snap.sm));
	if (!nd->snap.sm)
		abort();
	memcpy(nd->snap.sm, nd->sm, index * sizeof(*nd->snap.sm));
	nd->changed_from = index + 1;
	handle_ready(w, nd);
	check(w);
}

/* Linearizable reads: a confirmed read's index covers every entry that
 * was committed before it was asked. */
static void confirm_read(struct sim_world *w, struct sim_node *nd, const struct rmq_raft_read *rd)
{
	for (size_t i = 0; i < w->n_reads; i++) {
		struct sim_read *r = &w->reads[i];
		if (r->ctx != rd->ctx)
			continue;
		step(w, 43, nd->id, rd->ctx, rd->index, "node %u confirms read %llu at index %llu",
		     nd->id, (unsigned long long)rd->ctx, (unsigned long long)rd->index);
		if (r->node != nd->id || rd->index < r->floor)
			fail(w, SIM_READ,
			     "node %u confirmed read %llu (asked of node %u) at index %llu, but index "
			     "%llu was applied before it was asked",
			     nd->id, (unsigned long long)rd->ctx, r->node,
			     (unsigned long long)rd->index, (unsigned long long)r->floor);
		w->reads[i] = w->reads[--w->n_reads];
		return;
	}
	fail(w, SIM_READ, "node %u confirmed read %llu, which nobody asked (or twice)", nd->id,
	     (unsigned long long)rd->ctx);
}

static bool granted_vote(const struct rmq_raft_ready *rd)
{
	for (size_t i = 0; i < rd->n_msgs; i++)
		if (rd->msgs[i].type == RMQ_RAFT_MSG_VOTE_RESP && !rd->msgs[i].reject)
			return true;
	return false;
}

/* Carries out every Ready of nd; a torn crash may end it. */
static void handle_ready(struct sim_world *w, struct sim_node *nd)
{
	while (nd->up && w->verdict == SIM_PASS && rmq_raft_has_ready(nd->core)) {
		struct rmq_raft_ready rd;
		uint64_t term = rmq_raft_term(nd->core);
		rmq_raft_get_ready(nd->core, &rd);
		if (rd.hs_changed)
			term = rd.hs.term;
		bool writes = rd.hs_changed || rd.n_entries || rd.snapshot;
		if (w->faults && writes && rng_chance(&w->rng, w->torn_pm, 1000)) {
			/* Storage got part of the write down before the crash; nothing
			 * was sent or applied, so nothing depended on the rest. */
			bool snap = rd.snapshot && rng_chance(&w->rng, 1, 2);
			size_t k = rng_below(&w->rng, rd.n_entries + 1);
			bool hs = rd.hs_changed && rng_chance(&w->rng, 1, 2);
			if (rd.snapshot && !snap) {
				k = 0; /* the entries follow the snapshot */
				hs = hs && w->o.torn_any;
			}
			if (snap)
				install(w, nd, &rd);
			/* A write-ahead log writes the entries, then the hard state:
			 * a torn tail keeps a prefix of that sequence.  torn_any
			 * drops the order (hard state and entries written apart). */
			if (!w->o.torn_any && k < rd.n_entries)
				hs = false;
			if (hs)
				nd->hs = rd.hs;
			if (k)
				persist_entries(w, nd, rd.entries, k);
			w->res->torn++;
			step(w, 21, nd->id, k, hs, "torn write on node %u: hs %s, %zu of %zu entries",
			     nd->id, hs ? "kept" : "lost", k, rd.n_entries);
			crash(w, nd, "mid-Ready");
			return;
		}
		if (rd.snapshot)
			install(w, nd, &rd);
		if (rd.hs_changed)
			nd->hs = rd.hs;
		if (rd.n_entries)
			persist_entries(w, nd, rd.entries, rd.n_entries);
		for (size_t i = 0; i < rd.n_msgs && w->verdict == SIM_PASS; i++)
			send(w, nd, &rd.msgs[i]);
		for (size_t i = 0; i < rd.n_committed && w->verdict == SIM_PASS; i++)
			apply(w, nd, &rd.committed[i], term);
		for (size_t i = 0; i < rd.n_reads && w->verdict == SIM_PASS; i++)
			confirm_read(w, nd, &rd.reads[i]);
		rmq_raft_advance(nd->core);
		/* A crash just after a granted vote went out, and a quick
		 * restart: a node that forgot its vote would give a second one
		 * in the same term. */
		if (w->faults && granted_vote(&rd) && rng_chance(&w->rng, 1, 3)) {
			crash(w, nd, "after granting a vote");
			nd->restart_at = w->now + 1 + rng_below(&w->rng, 10);
			return;
		}
	}
}

static void start(struct sim_world *w, struct sim_node *nd, bool keep_sm)
{
	nd->cfg.seed = rng_next(&w->rng);
	if (!keep_sm || nd->n_sm < nd->snap.index) {
		/* Back to the snapshot, and the log applied again from there. */
		nd->n_sm = 0;
		for (uint64_t i = 0; i < nd->snap.index; i++) {
			nd->sm = grow(nd->sm, &nd->cap_sm, i + 1, sizeof(*nd->sm));
			nd->sm[nd->n_sm++] = nd->snap.sm[i];
		}
	}
	nd->cfg.applied = nd->n_sm;
	nd->cfg.snap_index = nd->snap.index;
	nd->cfg.snap_term = nd->snap.term;
	nd->cfg.conf = nd->snap.conf;
	nd->core = rmq_raft_new(&nd->cfg, &nd->hs, nd->log.e, nd->log.n);
	if (!nd->core) {
		fail(w, SIM_CORE_ERROR,
		     "node %u: rmq_raft_new refused term %llu vote %u commit %llu, snapshot %llu, "
		     "%zu entries, applied %zu",
		     nd->id, (unsigned long long)nd->hs.term, nd->hs.vote,
		     (unsigned long long)nd->hs.commit, (unsigned long long)nd->snap.index,
		     nd->log.n, nd->n_sm);
		return;
	}
	nd->up = true;
	nd->next_tick = w->now + 1 + rng_below(&w->rng, nd->tick_units);
	nd->changed_from = nd->log.base + 1; /* compare the new core with its durable log */
	handle_ready(w, nd);
}

static void restart(struct sim_world *w, struct sim_node *nd)
{
	bool keep = rng_chance(&w->rng, 1, 2);
	step(w, 22, nd->id, keep, 0,
	     "restart node %u (term %llu vote %u commit %llu, snapshot %llu, %zu entries, "
	     "state machine %s)", nd->id, (unsigned long long)nd->hs.term, nd->hs.vote,
	     (unsigned long long)nd->hs.commit, (unsigned long long)nd->snap.index, nd->log.n,
	     keep ? "kept" : "reset");
	start(w, nd, keep);
}

/* --- invariants ---------------------------------------------------------- */

static struct sim_node *node_of(struct sim_world *w, uint32_t id)
{
	return id >= 1 && id <= w->n ? &w->node[id - 1] : NULL;
}

/* Leader Completeness: every entry committed in an earlier term is in a
 * new leader's log.  (A stale candidate may still win an old term after
 * later terms committed entries: those it need not hold.) */
static void check_leader_completeness(struct sim_world *w, struct sim_node *nd, uint64_t term)
{
	for (uint64_t i = 1; i <= w->res->applied && w->verdict == SIM_PASS; i++) {
		const struct sim_applied *g = &w->applied[i - 1];
		if (g->node == 0 || g->committed_by >= term)
			continue;
		if (i <= nd->snap.index) {
			/* In its snapshot: the state machine it holds there. */
			const struct sim_applied *a = &nd->snap.sm[i - 1];
			if (a->term != g->term || a->hash != g->hash)
				fail(w, SIM_LEADER_COMPLETENESS,
				     "node %u leads term %llu but its snapshot has term %llu at index "
				     "%llu; node %u applied term %llu there",
				     nd->id, (unsigned long long)term, (unsigned long long)a->term,
				     (unsigned long long)i, g->node, (unsigned long long)g->term);
			continue;
		}
		const struct rmq_raft_entry *e = rmq_raft_entry_at(nd->core, i);
		if (!e || e->term != g->term || entry_hash(e) != g->hash)
			fail(w, SIM_LEADER_COMPLETENESS,
			     "node %u leads term %llu but its index %llu is %s term %llu; node %u "
			     "applied term %llu there (committed by term %llu)",
			     nd->id, (unsigned long long)term, (unsigned long long)i,
			     e ? "an entry of" : "missing,", e ? (unsigned long long)e->term : 0ULL,
			     g->node, (unsigned long long)g->term,
			     (unsigned long long)g->committed_by);
	}
}

static void check_leaders(struct sim_world *w)
{
	for (uint32_t k = 0; k < w->n && w->verdict == SIM_PASS; k++) {
		struct sim_node *nd = &w->node[k];
		if (!nd->up)
			continue;
		uint64_t term = rmq_raft_term(nd->core);
		if (term > w->res->max_term)
			w->res->max_term = term;
		if (rmq_raft_role(nd->core) != RMQ_RAFT_LEADER)
			continue;
		w->leader_of = grow(w->leader_of, &w->cap_leader, term + 1, sizeof(*w->leader_of));
		if (w->leader_of[term] == nd->id)
			continue;
		if (w->leader_of[term] != 0) {
			fail(w, SIM_ELECTION_SAFETY, "nodes %u and %u both led term %llu",
			     w->leader_of[term], nd->id, (unsigned long long)term);
			return;
		}
		w->leader_of[term] = nd->id;
		w->res->leaders++;
		/* A leader is a voter of its configuration, or of the one
		 * before it while the change that removed it is uncommitted
		 * (raft.c, may_campaign). */
		uint64_t at;
		const struct rmq_raft_conf *c = rmq_raft_conf(nd->core, &at);
		struct rmq_raft_conf before;
		durable_conf(nd, at ? at - 1 : 0, &before);
		if (!is_voter_of(c, nd->id) &&
		    !(is_voter_of(&before, nd->id) && at > rmq_raft_commit(nd->core))) {
			fail(w, SIM_MEMBERSHIP, "node %u leads term %llu but is no voter", nd->id,
			     (unsigned long long)term);
			return;
		}
		step(w, 30, nd->id, term, rmq_raft_last_index(nd->core),
		     "node %u leads term %llu (last index %llu)", nd->id, (unsigned long long)term,
		     (unsigned long long)rmq_raft_last_index(nd->core));
		nd->changed_from = nd->log.base + 1; /* a full comparison with its durable log */
		check_leader_completeness(w, nd, term);
	}
}

/* A live core's log from index `from` on equals its durable log: whatever
 * it holds came through a Ready. */
static void check_core_log(struct sim_world *w, struct sim_node *nd, uint64_t from)
{
	uint64_t last = rmq_raft_last_index(nd->core), snap = rmq_raft_snapshot_index(nd->core);
	if (last != log_last(&nd->log) || snap != nd->log.base) {
		fail(w, SIM_LOG_MATCHING,
		     "node %u: core holds %llu..%llu, its durable log %llu..%llu", nd->id,
		     (unsigned long long)snap + 1, (unsigned long long)last,
		     (unsigned long long)nd->log.base + 1, (unsigned long long)log_last(&nd->log));
		return;
	}
	for (uint64_t i = from > snap ? from : snap + 1; i <= last; i++) {
		const struct rmq_raft_entry *e = rmq_raft_entry_at(nd->core, i);
		const struct rmq_raft_entry *d = log_entry(&nd->log, i);
		if (!e || e->index != i || !entry_same(e, d)) {
			fail(w, SIM_LOG_MATCHING,
			     "node %u: core's entry %llu differs from its durable one (term %llu)",
			     nd->id, (unsigned long long)i, (unsigned long long)d->term);
			return;
		}
	}
}

/* Log Matching between two durable logs: at the highest index where the
 * terms agree, the prefix hashes must agree too. */
static void check_pair(struct sim_world *w, const struct sim_node *a, const struct sim_node *b)
{
	const struct sim_log *la = &a->log, *lb = &b->log;
	uint64_t lo = la->base > lb->base ? la->base : lb->base;
	uint64_t i = log_last(la) < log_last(lb) ? log_last(la) : log_last(lb);
	while (i > lo && log_term(la, i) != log_term(lb, i))
		i--;
	if (i < lo || i == 0 || log_term(la, i) != log_term(lb, i) ||
	    log_ph(la, i) == log_ph(lb, i))
		return;
	uint64_t j = lo + 1;
	while (j < i && entry_same(log_entry(la, j), log_entry(lb, j)))
		j++;
	fail(w, SIM_LOG_MATCHING,
	     "nodes %u and %u agree on the term (%llu) of index %llu but not on what comes "
	     "before (first difference at or below %llu; snapshots at %llu and %llu)",
	     a->id, b->id, (unsigned long long)log_term(la, i), (unsigned long long)i,
	     (unsigned long long)j, (unsigned long long)la->base, (unsigned long long)lb->base);
}

static void check(struct sim_world *w)
{
	if (w->verdict != SIM_PASS)
		return;
	check_leaders(w);
	for (uint32_t k = 0; k < w->n && w->verdict == SIM_PASS; k++) {
		struct sim_node *nd = &w->node[k];
		if (nd->changed_from == 0)
			continue;
		if (nd->up)
			check_core_log(w, nd, nd->changed_from);
		for (uint32_t x = 0; x < w->n && w->verdict == SIM_PASS; x++)
			if (x != k)
				check_pair(w, nd, &w->node[x]);
		nd->changed_from = 0;
	}
}

/* --- events -------------------------------------------------------------- */

static int flight_cmp(const void *a, const void *b)
{
	const struct sim_flight *x = a, *y = b;
	if (x->at != y->at)
		return x->at < y->at ? -1 : 1;
	return x->seq < y->seq ? -1 : x->seq > y->seq;
}

static void deliver_due(struct sim_world *w)
{
	size_t n_due = 0;
	for (size_t i = 0; i < w->n_flight;) {
		if (w->flight[i].at <= w->now) {
			w->due[n_due++] = w->flight[i];
			w->flight[i] = w->flight[--w->n_flight];
		} else {
			i++;
		}
	}
	qsort(w->due, n_due, sizeof(*w->due), flight_cmp);
	for (size_t i = 0; i < n_due; i++) {
		struct sim_flight *f = &w->due[i];
		const struct rmq_raft_msg *m = &f->m;
		struct sim_node *dst = node_of(w, m->to);
		if (w->verdict != SIM_PASS) {
			/* freed below */
		} else if (!dst->up || w->cut[m->from - 1][m->to - 1]) {
			step(w, 12, m->from, m->to, m->type, "lost %s %u->%u (%s)", msg_name(m->type),
			     m->from, m->to, dst->up ? "partition" : "node down");
		} else {
			step(w, 13, m->from, m->to,
			     fnv_u64(fnv_u64(fnv_u64(m->type, m->term), m->index), m->n_entries),
			     "%s %u->%u term %llu index %llu log_term %llu commit %llu hint %llu %s%s"
			     "n=%u", msg_name(m->type), m->from, m->to, (unsigned long long)m->term,
			     (unsigned long long)m->index, (unsigned long long)m->log_term,
			     (unsigned long long)m->commit, (unsigned long long)m->hint,
			     m->reject ? "reject " : "", m->transfer ? "transfer " : "", m->n_entries);
			dst->incoming = f->snap;
			f->snap = NULL;
			if (dst->incoming)
				f->m.conf = &dst->incoming->conf;
			(void)rmq_raft_step(dst->core, m);
			handle_ready(w, dst);
			snap_free(dst->incoming);
			dst->incoming = NULL;
			check(w);
		}
		flight_free(f);
	}
}

static void tick_due(struct sim_world *w)
{
	for (uint32_t k = 0; k < w->n && w->verdict == SIM_PASS; k++) {
		struct sim_node *nd = &w->node[k];
		if (!nd->up || nd->next_tick > w->now)
			continue;
		nd->next_tick = w->now + nd->tick_units;
		rmq_raft_tick(nd->core);
		enum rmq_raft_role role = rmq_raft_role(nd->core);
		step(w, 14, nd->id, role, rmq_raft_term(nd->core), "tick node %u: %s term %llu",
		     nd->id, role_names[role & 3], (unsigned long long)rmq_raft_term(nd->core));
		handle_ready(w, nd);
		check(w);
	}
}

/* A live leader, chosen at random among those that think they lead. */
static struct sim_node *any_leader(struct sim_world *w)
{
	struct sim_node *cand[NODES_MAX];
	uint32_t n = 0;
	for (uint32_t k = 0; k < w->n; k++)
		if (w->node[k].up && rmq_raft_role(w->node[k].core) == RMQ_RAFT_LEADER)
			cand[n++] = &w->node[k];
	return n ? cand[rng_below(&w->rng, n)] : NULL;
}

/* Proposes a unique payload to nd; true when it took it, and then *p (if
 * not NULL) says how to recognise it applied. */
static bool propose(struct sim_world *w, struct sim_node *nd, struct sim_pending *p)
{
	char data[64];
	int len = snprintf(data, sizeof(data), "seed %llu proposal %llu",
			   (unsigned long long)w->seed, (unsigned long long)w->proposals++);
	int64_t idx = rmq_raft_propose(nd->core, data, (uint32_t)len);
	uint64_t term = rmq_raft_term(nd->core);
	step(w, 40, nd->id, (uint64_t)idx, term, "propose \"%s\" to node %u: %lld", data, nd->id,
	     (long long)idx);
	if (idx > 0 && p) {
		struct rmq_raft_entry e = {
			.term = term, .index = (uint64_t)idx, .type = RMQ_RAFT_ENTRY_NORMAL,
			.len = (uint32_t)len, .data = (uint8_t *)data,
		};
		*p = (struct sim_pending){(uint64_t)idx, term, entry_hash(&e)};
	}
	handle_ready(w, nd);
	check(w);
	return idx > 0;
}

/* AddPeer or RemovePeer of a random node, asked of a leader: a voter is
 * removed (or, a tenth of the time, demoted), anyone else added as a voter
 * (a quarter of the time as a learner). */
static void change_membership(struct sim_world *w)
{
	struct sim_node *l = any_leader(w);
	if (!l)
		return;
	uint32_t id = 1 + (uint32_t)rng_below(&w->rng, w->n);
	const struct rmq_raft_server *sv = rmq_raft_conf_find(rmq_raft_conf(l->core, NULL), id);
	int64_t rc;
	const char *what;
	if (sv && sv->role == RMQ_RAFT_VOTER && !rng_chance(&w->rng, 1, 10)) {
		what = "removes";
		rc = rmq_raft_remove_peer(l->core, id);
	} else if (sv && sv->role == RMQ_RAFT_VOTER) {
		what = "demotes";
		rc = rmq_raft_add_peer(l->core, id, "", RMQ_RAFT_LEARNER);
	} else {
		bool learner = rng_chance(&w->rng, 1, 4);
		what = learner ? "adds learner" : "adds voter";
		rc = rmq_raft_add_peer(l->core, id, "", learner ? RMQ_RAFT_LEARNER : RMQ_RAFT_VOTER);
	}
	if (rc > 0)
		w->res->conf_changes++;
	step(w, 44, l->id, id, (uint64_t)rc, "node %u %s %u: %lld", l->id, what, id,
	     (long long)rc);
	handle_ready(w, l);
	check(w);
}

static void partition_change(struct sim_world *w)
{
	uint32_t kind = (uint32_t)rng_below(&w->rng, 5);
	uint32_t a = (uint32_t)rng_below(&w->rng, w->n), b = (uint32_t)rng_below(&w->rng, w->n);
	switch (kind) {
	case 0: /* heal */
		memset(w->cut, 0, sizeof(w->cut));
		step(w, 50, 0, 0, 0, "partitions healed");
		break;
	case 1: /* isolate one node, both ways */
		for (uint32_t x = 0; x < w->n; x++)
			w->cut[a][x] = w->cut[x][a] = x != a;
		step(w, 51, a + 1, 0, 0, "node %u isolated", a + 1);
		break;
	case 2: /* one direction of one link */
		if (a != b)
			w->cut[a][b] = true;
		step(w, 52, a + 1, b + 1, 0, "link %u->%u cut", a + 1, b + 1);
		break;
	case 3: { /* two random sides */
		uint32_t side = (uint32_t)rng_next(&w->rng);
		for (uint32_t x = 0; x < w->n; x++)
			for (uint32_t y = 0; y < w->n; y++)
				w->cut[x][y] = ((side >> x) & 1) != ((side >> y) & 1);
		step(w, 53, side & 31, 0, 0, "split, sides mask %#x", side & 31);
		break;
	}
	default: { /* the leader isolated: where the interesting cases are */
		struct sim_node *l = any_leader(w);
		if (l) {
			uint32_t i = l->id - 1;
			for (uint32_t x = 0; x < w->n; x++)
				w->cut[i][x] = w->cut[x][i] = x != i;
		}
		step(w, 54, l ? l->id : 0, 0, 0, "leader %u isolated", l ? l->id : 0);
		break;
	}
	}
}

static void faults(struct sim_world *w)
{
	struct rng *r = &w->rng;
	if (rng_chance(r, w->part_rate, 10000))
		partition_change(w);
	if (rng_chance(r, w->crash_rate, 10000)) {
		struct sim_node *victim = NULL;
		if (rng_chance(r, 1, 2))
			victim = any_leader(w);
		if (!victim) {
			struct sim_node *nd = &w->node[rng_below(r, w->n)];
			victim = nd->up ? nd : NULL;
		}
		if (victim) {
			crash(w, victim, "between steps");
			check(w);
		}
	}
	if (rng_chance(r, 1, 500)) {
		struct sim_node *nd = &w->node[rng_below(r, w->n)];
		nd->tick_units = TICK_UNITS_MIN +
				 (uint32_t)rng_below(r, TICK_UNITS_MAX - TICK_UNITS_MIN + 1);
	}
	if (rng_chance(r, w->transfer_rate, 10000)) {
		struct sim_node *l = any_leader(w);
		if (l) {
			uint32_t to = 1 + (uint32_t)rng_below(r, w->n);
			int rc = rmq_raft_transfer_leader(l->core, to);
			step(w, 41, l->id, to, (uint64_t)(int64_t)rc,
			     "node %u transfers leadership to %u: %d", l->id, to, rc);
			handle_ready(w, l);
			check(w);
		}
	}
	if (rng_chance(r, w->member_rate, 10000))
		change_membership(w);
	if (rng_chance(r, w->read_rate, 10000)) {
		/* Any node that believes it leads, stale or not. */
		struct sim_node *l = any_leader(w);
		if (l && w->n_reads < READS_MAX) {
			uint64_t ctx = ++w->read_ctx;
			int rc = rmq_raft_read_index(l->core, ctx);
			step(w, 42, l->id, ctx, (uint64_t)(int64_t)rc, "read %llu asked of node %u: %d",
			     (unsigned long long)ctx, l->id, rc);
			if (rc == 0)
				w->reads[w->n_reads++] = (struct sim_read){ctx, w->res->applied, l->id};
			handle_ready(w, l);
			check(w);
		}
	}
	if (rng_chance(r, w->compact_rate, 10000)) {
		struct sim_node *nd = &w->node[rng_below(r, w->n)];
		if (nd->up)
			compact(w, nd);
	}
	if (w->proposals < PROPOSALS_MAX && rng_chance(r, w->propose_rate, 10000)) {
		struct sim_node *l = any_leader(w);
		if (l)
			propose(w, l, NULL);
	}
}

static void restarts_due(struct sim_world *w, bool all)
{
	for (uint32_t k = 0; k < w->n && w->verdict == SIM_PASS; k++) {
		struct sim_node *nd = &w->node[k];
		if (!nd->up && (all || nd->restart_at <= w->now)) {
			restart(w, nd);
			check(w);
		}
	}
}

static void one_unit(struct sim_world *w)
{
	if (w->faults)
		faults(w);
	restarts_due(w, false);
	if (w->verdict == SIM_PASS)
		deliver_due(w);
	if (w->verdict == SIM_PASS)
		tick_due(w);
}

/* --- liveness ------------------------------------------------------------ */

/* On every voter and learner of the leader's configuration (a removed
 * node gets nothing more). */
static bool committed_everywhere(struct sim_world *w, const struct sim_pending *p)
{
	struct sim_node *l = any_leader(w);
	if (!l)
		return false;
	const struct rmq_raft_conf *c = rmq_raft_conf(l->core, NULL);
	for (uint32_t i = 0; i < c->n; i++) {
		const struct sim_node *nd = node_of(w, c->servers[i].id);
		if (c->servers[i].role == RMQ_RAFT_SPARE)
			continue;
		if (nd->n_sm < p->index || nd->sm[p->index - 1].hash != p->hash)
			return false;
	}
	return true;
}

static void liveness(struct sim_world *w)
{
	memset(w->cut, 0, sizeof(w->cut));
	w->faults = false;
	step(w, 60, 0, 0, 0, "faults stop: links healed, every node restarted");
	restarts_due(w, true);
	uint64_t bound = (uint64_t)LIVENESS_TIMEOUTS * ELECTION_TICKS * TICK_UNITS_MAX;
	uint64_t retry = (uint64_t)3 * ELECTION_TICKS * TICK_UNITS_MAX;
	uint64_t end = w->now + bound, last_try = 0;
	bool tried = false;
	for (; w->now < end && w->verdict == SIM_PASS; w->now++) {
		for (size_t i = 0; i < w->n_pending; i++)
			if (committed_everywhere(w, &w->pending[i])) {
				step(w, 61, w->pending[i].index, 0, 0, "index %llu committed everywhere",
				     (unsigned long long)w->pending[i].index);
				return;
			}
		if (!tried || w->now - last_try >= retry) {
			struct sim_node *l = any_leader(w);
			struct sim_pending p;
			if (l && propose(w, l, &p)) {
				if (w->n_pending == PENDING_MAX)
					memmove(w->pending, w->pending + 1,
						(PENDING_MAX - 1) * sizeof(*w->pending));
				else
					w->n_pending++;
				w->pending[w->n_pending - 1] = p;
				tried = true;
				last_try = w->now;
			}
		}
		one_unit(w);
	}
	if (w->verdict == SIM_PASS) {
		struct sim_node *l = any_leader(w);
		fail(w, SIM_LIVENESS,
		     "%llu units after the faults stopped: %s, %zu proposals tried, none committed on "
		     "every member",
		     (unsigned long long)bound, l ? "a leader" : "no leader", w->n_pending);
	}
}

/* --- the run ------------------------------------------------------------- */

const char *sim_verdict_name(enum sim_verdict v)
{
	static const char *const names[] = {
		[SIM_PASS] = "pass",
		[SIM_ELECTION_SAFETY] = "Election Safety",
		[SIM_LOG_MATCHING] = "Log Matching",
		[SIM_LEADER_COMPLETENESS] = "Leader Completeness",
		[SIM_STATE_MACHINE_SAFETY] = "State Machine Safety",
		[SIM_APPLY_ORDER] = "apply order",
		[SIM_DURABILITY] = "durability",
		[SIM_READ] = "read linearizability",
		[SIM_MEMBERSHIP] = "membership",
		[SIM_LIVENESS] = "liveness",
		[SIM_CORE_ERROR] = "core error",
	};
	return (unsigned)v < sizeof(names) / sizeof(names[0]) ? names[v] : "?";
}

static void setup(struct sim_world *w)
{
	struct rng *r = &w->rng;
	w->n = w->o.n_nodes ? w->o.n_nodes : (rng_chance(r, 1, 2) ? 3 : 5);
	uint32_t max_append = w->o.max_append_entries
				      ? w->o.max_append_entries
				      : 1 + (uint32_t)rng_below(r, 8);
	uint32_t heartbeat = 1 + (uint32_t)rng_below(r, 3);
	bool pre_vote = rng_chance(r, 1, 2), check_quorum = rng_chance(r, 1, 2);
	w->drop_pm = (uint32_t)rng_below(r, 200);
	w->dup_pm = (uint32_t)rng_below(r, 100);
	w->reorder_pm = (uint32_t)rng_below(r, 300);
	w->torn_pm = (uint32_t)rng_below(r, 20);
	w->part_rate = (uint32_t)rng_below(r, 60);
	w->crash_rate = w->o.crash_rate ? w->o.crash_rate : 2 + (uint32_t)rng_below(r, 19);
	w->propose_rate = 200 + (uint32_t)rng_below(r, 400);
	w->transfer_rate = (uint32_t)rng_below(r, 20);
	w->compact_rate = (uint32_t)rng_below(r, 100);
	w->read_rate = (uint32_t)rng_below(r, 300);
	/* A quarter of the worlds keep their first configuration; the others
	 * change it, and some start with nodes that wait to be added. */
	uint32_t members = w->n;
	if (!w->o.no_membership && rng_chance(r, 3, 4)) {
		w->member_rate = 1 + (uint32_t)rng_below(r, 40);
		members -= (uint32_t)rng_below(r, 3);
	}
	w->first_conf.n = members;
	for (uint32_t v = 0; v < members; v++)
		w->first_conf.servers[v] = (struct rmq_raft_server){.id = v + 1, .role = RMQ_RAFT_VOTER};
	w->faults = true;
	step(w, 1, w->n, max_append, heartbeat,
	     "world: %u nodes, max_append %u, heartbeat %u, pre_vote %d, check_quorum %d, drop "
	     "%u/1000, dup %u/1000, reorder %u/1000, torn %u/1000, partitions %u/10000, crashes "
	     "%u/10000, proposals %u/10000, transfers %u/10000, compactions %u/10000, reads "
	     "%u/10000, %u first voters, membership changes %u/10000%s",
	     w->n, max_append, heartbeat, pre_vote, check_quorum, w->drop_pm, w->dup_pm,
	     w->reorder_pm, w->torn_pm, w->part_rate, w->crash_rate, w->propose_rate,
	     w->transfer_rate, w->compact_rate, w->read_rate, members, w->member_rate,
	     w->o.unsafe_commit_any_term ? ", UNSAFE commit rule" : "");
	for (uint32_t k = 0; k < w->n; k++) {
		struct sim_node *nd = &w->node[k];
		nd->id = k + 1;
		nd->cfg = (struct rmq_raft_config){
			.id = nd->id,
			.election_ticks = ELECTION_TICKS,
			.heartbeat_ticks = heartbeat,
			.max_append_entries = max_append,
			.pre_vote = pre_vote,
			.check_quorum = check_quorum,
			.unsafe_commit_any_term = w->o.unsafe_commit_any_term,
		};
		/* The first configuration, as the durable state a node
		 * starts from: the voters 1..members know it, the others wait
		 * with none. */
		if (nd->id <= members)
			nd->snap.conf = w->first_conf;
		nd->tick_units = TICK_UNITS_MIN +
				 (uint32_t)rng_below(r, TICK_UNITS_MAX - TICK_UNITS_MIN + 1);
	}
	w->res->n_nodes = w->n;
	for (uint32_t k = 0; k < w->n && w->verdict == SIM_PASS; k++)
		start(w, &w->node[k], false);
	check(w);
}

static void teardown(struct sim_world *w)
{
	for (uint32_t k = 0; k < w->n; k++) {
		struct sim_node *nd = &w->node[k];
		rmq_raft_free(nd->core);
		log_truncate(&nd->log, nd->log.base);
		free(nd->log.e);
		free(nd->snap.sm);
		snap_free(nd->incoming);
		free(nd->log.ph);
		free(nd->sm);
	}
	for (size_t i = 0; i < w->n_flight; i++)
		flight_free(&w->flight[i]);
	free(w->flight);
	free(w->due);
	free(w->leader_of);
	free(w->applied);
}

enum sim_verdict sim_run(uint64_t seed, const struct sim_opts *o, struct sim_result *res,
			 char *why, size_t whylen)
{
	static const struct sim_opts defaults;
	struct sim_result local;
	struct sim_world *w = calloc(1, sizeof(*w));
	if (!w)
		abort();
	w->seed = seed;
	w->o = o ? *o : defaults;
	w->res = res ? res : &local;
	*w->res = (struct sim_result){.trace_hash = FNV_OFFSET};
	w->why = why;
	w->whylen = whylen;
	if (why && whylen)
		why[0] = '\0';
	rng_seed(&w->rng, seed);
	w->flight = calloc(FLIGHT_MAX, sizeof(*w->flight));
	w->due = calloc(FLIGHT_MAX, sizeof(*w->due));
	if (!w->flight || !w->due)
		abort();
	uint64_t fault_time = w->o.fault_time ? w->o.fault_time : FAULT_TIME_DEFAULT;
	setup(w);
	for (; w->now < fault_time && w->verdict == SIM_PASS; w->now++)
		one_unit(w);
	if (w->verdict == SIM_PASS && !w->o.no_liveness)
		liveness(w);
	w->res->time = w->now;
	enum sim_verdict v = w->verdict;
	teardown(w);
	free(w);
	return v;
}
