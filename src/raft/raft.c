/* SPDX-License-Identifier: Apache-2.0 */
/*
 * raft.c - the Raft core (raft.h): roles, elections, replication and the
 * commit rule, as pure functions of ticks, messages and proposals.
 *
 * The log is an array of the entries after the snapshot: log[i] holds
 * index snap_index + 1 + i (the snapshot stands for every entry up to
 * snap_index, whose term is snap_term).  Marks move along it:
 *
 *   snap_index ... applied ........ commit ........ stable ........ last
 *                                                 ^ unstable_from - 1
 *
 *   - entries after stable have not been handed out to be made durable
 *     (or were cut: a follower whose uncommitted tail conflicts with the
 *     leader's cuts it, and the next Ready replaces the durable log from
 *     unstable_from on);
 *   - commit may pass stable on a follower (the leader says an entry is
 *     committed before this node made it durable; the Ready makes it
 *     durable before it is applied), never on the leader, which counts
 *     only its durable entries;
 *   - applied trails commit by what the last Ready handed out.
 *
 * Outgoing messages are queued without their entries (index and count
 * only); rmq_raft_get_ready() points them into the log, so a proposal that
 * grows the log between a send and the Ready cannot leave them dangling,
 * and drops an APPEND this node no longer has the standing to send (it
 * lost the term or the leadership meanwhile).
 *
 * Membership: conf is the newest configuration of the log (or the
 * snapshot's), prs[i] the leader's progress of conf.servers[i].  Every
 * change to the log's tail that adds or cuts a CONF entry goes through
 * conf_follow_log(), so conf always matches the log.
 */
#include "raft/raft.h"

#include "core/assert.h"
#include "core/error.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>

_Static_assert(RMQ_RAFT_VOTERS_MAX <= 32 && RMQ_RAFT_SERVERS_MAX <= 255,
	       "votes are bits of a word; a configuration's count is a byte");

struct progress {
	uint32_t id;
	uint64_t next;  /* the next index to send */
	uint64_t match; /* known to be replicated up to here */
	bool active;    /* heard from since the last check-quorum */
	/* A SNAPSHOT was sent up to this index and no answer covered it
	 * yet: no other is sent for snapshot_ticks < 2 election timeouts
	 * (the caller streams the snapshot, which takes a while). */
	uint64_t snapshot;
	uint32_t snapshot_ticks;
	uint64_t seq; /* the highest read round it answered */
	bool promote; /* a learner to make a voter once it caught up */
};

#define READS_MAX 1024

struct pending_read {
	struct rmq_raft_read rd;
	uint64_t seq; /* confirmed once a majority answered this round */
};

struct rmq_raft {
	struct rmq_raft_config cfg;
	enum rmq_raft_role role;
	uint64_t term;
	uint32_t vote;
	uint32_t leader;
	uint64_t commit;
	uint64_t applied;

	struct rmq_raft_entry *log;
	size_t n_log, cap_log;
	uint64_t snap_index, snap_term; /* what the snapshot covers */
	struct rmq_raft_conf snap_conf; /* ... and its configuration */
	struct rmq_raft_conf conf;      /* in effect: the log's newest */
	uint64_t conf_index;            /* its entry (snap_index: the snapshot's) */
	bool was_voter;                 /* a voter of the configuration before it */
	bool installed;                 /* a snapshot to install in the next Ready */
	bool install_keeps_log;         /* ... keeping the durable entries after it */
	uint64_t stable;        /* durable up to here */
	uint64_t unstable_from; /* the next Ready's entries start here */
	struct rmq_raft_hard_state hs_prev; /* the hard state last handed out */

	uint32_t elapsed;  /* ticks since a leader was heard (leader: since
			    * the last check-quorum) */
	uint32_t timeout;  /* this round's randomized election timeout */
	uint32_t hb_elapsed;
	uint32_t transfer_to;      /* leader: the voter leadership goes to, 0 */
	uint32_t transfer_elapsed; /* ticks since that began */
	uint32_t granted, rejected; /* votes, a bit per server slot */
	struct progress prs[RMQ_RAFT_SERVERS_MAX]; /* by slot of conf.servers */
	uint64_t rng;

	struct rmq_raft_msg *msgs;
	size_t n_msgs, cap_msgs;

	/* Reads: waiting for their round (pending), then confirmed. */
	uint64_t seq;
	struct pending_read pending[READS_MAX];
	size_t n_pending;
	struct rmq_raft_read ready_reads[READS_MAX];
	size_t n_ready_reads, rd_reads;

	/* The Ready handed out and not yet advanced. */
	bool in_ready;
	struct rmq_raft_hard_state rd_hs;
	uint64_t rd_last, rd_commit;
	size_t rd_msgs;
};

/* ---- small helpers ------------------------------------------------------ */

static uint64_t rng_next(struct rmq_raft *r)
{
	/* splitmix64 */
	uint64_t z = (r->rng += 0x9E3779B97F4A7C15ULL);
	z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ULL;
	z = (z ^ (z >> 27)) * 0x94D049BB133111EBULL;
	return z ^ (z >> 31);
}

static void reset_timeout(struct rmq_raft *r)
{
	r->elapsed = 0;
	r->timeout = r->cfg.election_ticks + (uint32_t)(rng_next(r) % r->cfg.election_ticks);
}

static uint64_t last_index(const struct rmq_raft *r)
{
	return r->snap_index + r->n_log;
}

/* The entry at index, which must be in the log (after the snapshot). */
static struct rmq_raft_entry *entry(const struct rmq_raft *r, uint64_t index)
{
	RMQ_DASSERT(index > r->snap_index && index <= last_index(r));
	return &r->log[index - r->snap_index - 1];
}

/* The term of the entry at index: the snapshot's at snap_index, 0 past
 * the end or before the snapshot (unknown: it matches nothing). */
static uint64_t term_at(const struct rmq_raft *r, uint64_t index)
{
	if (index == r->snap_index)
		return r->snap_term;
	if (index < r->snap_index || index > last_index(r))
		return 0;
	return entry(r, index)->term;
}

static bool voter_at(const struct rmq_raft *r, uint32_t slot)
{
	return r->conf.servers[slot].role == RMQ_RAFT_VOTER;
}

static uint32_t n_voters(const struct rmq_raft_conf *c)
{
	uint32_t n = 0;
	for (uint32_t i = 0; i < c->n; i++)
		n += c->servers[i].role == RMQ_RAFT_VOTER;
	return n;
}

static uint32_t quorum(const struct rmq_raft *r)
{
	return n_voters(&r->conf) / 2 + 1;
}

static int conf_slot(const struct rmq_raft_conf *c, uint32_t id)
{
	for (uint32_t i = 0; i < c->n; i++)
		if (c->servers[i].id == id)
			return (int)i;
	return -1;
}

static int slot_of(const struct rmq_raft *r, uint32_t id)
{
	return conf_slot(&r->conf, id);
}

static bool is_voter(const struct rmq_raft *r, uint32_t id)
{
	int s = slot_of(r, id);
	return s >= 0 && voter_at(r, (uint32_t)s);
}

static struct progress *progress_of(struct rmq_raft *r, uint32_t id)
{
	int s = slot_of(r, id);
	return s < 0 ? NULL : &r->prs[s];
}

static uint32_t popcount(uint32_t v)
{
	return (uint32_t)__builtin_popcount(v);
}

/* ---- configurations -------------------------------------------------------- */

static bool conf_valid(const struct rmq_raft_conf *c)
{
	if (c->n > RMQ_RAFT_SERVERS_MAX || n_voters(c) > RMQ_RAFT_VOTERS_MAX)
		return false;
	for (uint32_t i = 0; i < c->n; i++) {
		const struct rmq_raft_server *sv = &c->servers[i];
		if (sv->id == 0 || (i > 0 && sv->id <= c->servers[i - 1].id) ||
		    sv->role < RMQ_RAFT_VOTER || sv->role > RMQ_RAFT_SPARE ||
		    !memchr(sv->addr, 0, sizeof(sv->addr)))
			return false;
	}
	return true;
}

size_t rmq_raft_conf_encode(const struct rmq_raft_conf *c, uint8_t *buf)
{
	size_t k = 0;
	buf[k++] = 1;
	buf[k++] = (uint8_t)c->n;
	for (uint32_t i = 0; i < c->n; i++) {
		const struct rmq_raft_server *sv = &c->servers[i];
		size_t al = strnlen(sv->addr, RMQ_RAFT_ADDR_MAX - 1);
		for (int b = 0; b < 4; b++)
			buf[k++] = (uint8_t)(sv->id >> (8 * b));
		buf[k++] = (uint8_t)sv->role;
		buf[k++] = (uint8_t)al;
		memcpy(buf + k, sv->addr, al);
		k += al;
	}
	return k;
}

int rmq_raft_conf_decode(const uint8_t *p, size_t len, struct rmq_raft_conf *c)
{
	size_t k = 2;

	if (len < 2 || p[0] != 1 || p[1] > RMQ_RAFT_SERVERS_MAX)
		return RMQ_ECORRUPT;
	memset(c, 0, sizeof(*c));
	c->n = p[1];
	for (uint32_t i = 0; i < c->n; i++) {
		struct rmq_raft_server *sv = &c->servers[i];
		if (len - k < 6)
			return RMQ_ECORRUPT;
		sv->id = (uint32_t)p[k] | (uint32_t)p[k + 1] << 8 | (uint32_t)p[k + 2] << 16 |
			 (uint32_t)p[k + 3] << 24;
		sv->role = p[k + 4];
		size_t al = p[k + 5];
		k += 6;
		if (al >= RMQ_RAFT_ADDR_MAX || len - k < al || memchr(p + k, 0, al))
			return RMQ_ECORRUPT;
		memcpy(sv->addr, p + k, al);
		k += al;
	}
	return k == len && conf_valid(c) ? 0 : RMQ_ECORRUPT;
}

const struct rmq_raft_server *rmq_raft_conf_find(const struct rmq_raft_conf *c, uint32_t id)
{
	int s = conf_slot(c, id);
	return s < 0 ? NULL : &c->servers[s];
}

/* Puts c in effect (its entry at index), keeping the progress of the
 * servers that stay. */
static void use_conf(struct rmq_raft *r, const struct rmq_raft_conf *c, uint64_t index)
{
	struct progress old[RMQ_RAFT_SERVERS_MAX];
	uint32_t n_old = r->conf.n;

	memcpy(old, r->prs, sizeof(old));
	r->was_voter = is_voter(r, r->cfg.id);
	r->conf = *c;
	r->conf_index = index;
	for (uint32_t i = 0; i < c->n; i++) {
		uint32_t id = c->servers[i].id, j = 0;
		while (j < n_old && old[j].id != id)
			j++;
		if (j < n_old)
			r->prs[i] = old[j];
		else
			r->prs[i] = (struct progress){.id = id, .next = last_index(r) + 1};
		if (c->servers[i].role != RMQ_RAFT_LEARNER)
			r->prs[i].promote = false;
	}
}

/* The newest configuration at or before index (in the log, or the
 * snapshot's), into *c; returns the index of its entry. */
static uint64_t conf_as_of(const struct rmq_raft *r, uint64_t index, struct rmq_raft_conf *c)
{
	for (uint64_t i = index; i > r->snap_index; i--) {
		const struct rmq_raft_entry *e = entry(r, i);
		if (e->type == RMQ_RAFT_ENTRY_CONF &&
		    rmq_raft_conf_decode(e->data, e->len, c) == 0)
			return i;
	}
	*c = r->snap_conf;
	return r->snap_index;
}

/* Whether this node may campaign: as a voter of its configuration, or as a
 * voter of the one before while the change that removed it (or made it a
 * learner) is not known to have committed.  It may be the one node whose
 * log holds that change, which the others then cannot elect anyone
 * without (thesis section 4.2.2): a leader that removed itself and lost
 * its majority before the change committed left two voters, one without
 * the change, and the other removed.  Its own vote does not count. */
static bool may_campaign(const struct rmq_raft *r)
{
	return is_voter(r, r->cfg.id) || (r->was_voter && r->conf_index > r->commit);
}

/* ---- the log -------------------------------------------------------------- */

static int log_reserve(struct rmq_raft *r, size_t n)
{
	if (r->n_log + n <= r->cap_log)
		return 0;
	size_t cap = r->cap_log ? r->cap_log : 64;
	while (cap < r->n_log + n)
		cap *= 2;
	struct rmq_raft_entry *l = realloc(r->log, cap * sizeof(*l));
	if (!l)
		return -ENOMEM;
	r->log = l;
	r->cap_log = cap;
	return 0;
}

/* Appends a copy of e as index last + 1; a configuration takes effect. */
static int log_push(struct rmq_raft *r, uint64_t term, uint32_t type, const void *data,
		    uint32_t len)
{
	struct rmq_raft_conf c;

	if (type == RMQ_RAFT_ENTRY_CONF && rmq_raft_conf_decode(data, len, &c) < 0)
		return RMQ_ECORRUPT; /* valid() and rmq_raft_new() refuse these first */
	if (log_reserve(r, 1) < 0)
		return -ENOMEM;
	uint8_t *copy = NULL;
	if (len > 0) {
		copy = malloc(len);
		if (!copy)
			return -ENOMEM;
		memcpy(copy, data, len);
	}
	r->log[r->n_log] = (struct rmq_raft_entry){
		.term = term, .index = last_index(r) + 1, .type = type, .len = len, .data = copy};
	r->n_log++;
	if (type == RMQ_RAFT_ENTRY_CONF)
		use_conf(r, &c, last_index(r));
	return 0;
}

/* Frees the entries after index (at least snap_index). */
static void log_drop_after(struct rmq_raft *r, uint64_t index)
{
	RMQ_ASSERT(index >= r->snap_index);
	while (last_index(r) > index) {
		r->n_log--;
		free(r->log[r->n_log].data);
	}
}

/* Drops the entries up to index (in the log) behind a snapshot there. */
static void log_compact(struct rmq_raft *r, uint64_t index)
{
	uint64_t term = term_at(r, index);
	size_t drop = (size_t)(index - r->snap_index);
	struct rmq_raft_conf c;
	(void)conf_as_of(r, index, &c);
	r->snap_conf = c;
	for (size_t i = 0; i < drop; i++)
		free(r->log[i].data);
	memmove(r->log, r->log + drop, (r->n_log - drop) * sizeof(*r->log));
	r->n_log -= drop;
	r->snap_index = index;
	r->snap_term = term;
}

/* Cuts the log after index (an uncommitted tail a leader replaces). */
static void log_cut(struct rmq_raft *r, uint64_t index)
{
	if (index < r->commit) {
		/* A committed entry is never cut, but with the planted bug
		 * it is: forget it was committed and applied, so that the
		 * simulator sees this node apply another entry there. */
		RMQ_ASSERT(r->cfg.unsafe_commit_any_term);
		r->commit = index;
		if (r->applied > index)
			r->applied = index;
	}
	log_drop_after(r, index);
	if (r->conf_index > index) {
		/* the configuration was in the cut tail: the one before it is
		 * back in effect */
		struct rmq_raft_conf c;
		uint64_t at = conf_as_of(r, index, &c);
		use_conf(r, &c, at);
	}
	if (r->stable > index)
		r->stable = index;
	if (r->unstable_from > index + 1)
		r->unstable_from = index + 1;
}

/* ---- messages -------------------------------------------------------------- */

static struct rmq_raft_msg *msg_new(struct rmq_raft *r, enum rmq_raft_msg_type type, uint32_t to)
{
	if (r->n_msgs == r->cap_msgs) {
		size_t cap = r->cap_msgs ? r->cap_msgs * 2 : 16;
		struct rmq_raft_msg *m = realloc(r->msgs, cap * sizeof(*m));
		if (!m)
			return NULL; /* the message is lost, as the network may lose it */
		r->msgs = m;
		r->cap_msgs = cap;
	}
	struct rmq_raft_msg *m = &r->msgs[r->n_msgs++];
	*m = (struct rmq_raft_msg){.type = type, .from = r->cfg.id, .to = to, .term = r->term};
	return m;
}

/* Sends to follower pr what it lacks from pr->next on (or a heartbeat):
 * entries, or the snapshot when they are compacted away. */
static void send_append(struct rmq_raft *r, struct progress *pr)
{
	if (pr->next <= r->snap_index) {
		if (pr->snapshot)
			return; /* one is on its way */
		struct rmq_raft_msg *m = msg_new(r, RMQ_RAFT_MSG_SNAPSHOT, pr->id);
		if (!m)
			return;
		m->index = r->snap_index; /* brought up to date by the Ready */
		m->log_term = r->snap_term;
		m->commit = r->commit;
		pr->snapshot = r->snap_index;
		pr->snapshot_ticks = 0;
		return;
	}
	struct rmq_raft_msg *m = msg_new(r, RMQ_RAFT_MSG_APPEND, pr->id);
	if (!m)
		return;
	uint64_t prev = pr->next - 1;
	uint64_t n = last_index(r) - prev;
	if (n > r->cfg.max_append_entries)
		n = r->cfg.max_append_entries;
	m->index = prev;
	m->log_term = term_at(r, prev);
	m->commit = r->commit;
	m->seq = r->seq;
	m->n_entries = (uint32_t)n;
	/* Optimistic: the next message goes on from here; a rejection or
	 * the next heartbeat's probe brings it back. */
	pr->next = prev + n + 1;
}

/* To every voter and learner. */
static void broadcast_append(struct rmq_raft *r)
{
	for (uint32_t i = 0; i < r->conf.n; i++)
		if (r->prs[i].id != r->cfg.id && r->conf.servers[i].role != RMQ_RAFT_SPARE)
			send_append(r, &r->prs[i]);
}

/* ---- roles ----------------------------------------------------------------- */

static void become_follower(struct rmq_raft *r, uint64_t term, uint32_t leader)
{
	if (term > r->term) {
		r->term = term;
		r->vote = 0;
	}
	r->role = RMQ_RAFT_FOLLOWER;
	r->leader = leader;
	r->transfer_to = 0;
	r->n_pending = 0; /* reads waiting: the caller times them out */
	reset_timeout(r);
}

static void become_leader(struct rmq_raft *r)
{
	r->role = RMQ_RAFT_LEADER;
	r->leader = r->cfg.id;
	r->elapsed = 0;
	r->hb_elapsed = 0;
	r->transfer_to = 0;
	for (uint32_t i = 0; i < r->conf.n; i++)
		r->prs[i] = (struct progress){.id = r->prs[i].id, .next = last_index(r) + 1};
	r->seq = 0;
	r->n_pending = 0;
	/* A no-op of this term: entries of earlier terms commit with it
	 * (section 3.6.2), and at once rather than at the next proposal. */
	if (log_push(r, r->term, RMQ_RAFT_ENTRY_NOOP, NULL, 0) < 0) {
		become_follower(r, r->term, 0); /* no memory: let another lead */
		return;
	}
	struct progress *me = progress_of(r, r->cfg.id);
	if (me)
		me->match = r->stable; /* not when it leads a change that removed it */
	broadcast_append(r);
}

/* Counts one vote; returns +1 on a majority granted, -1 on a majority
 * refused, 0 while undecided. */
static int count_vote(struct rmq_raft *r, uint32_t from, bool granted)
{
	int s = slot_of(r, from);
	if (s >= 0 && voter_at(r, (uint32_t)s)) {
		if (granted)
			r->granted |= 1u << s;
		else
			r->rejected |= 1u << s;
	}
	if (popcount(r->granted) >= quorum(r))
		return 1;
	if (popcount(r->rejected) >= quorum(r))
		return -1;
	return 0;
}

static void campaign(struct rmq_raft *r, bool pre, bool transfer)
{
	uint64_t term = r->term + 1;

	if (pre) {
		r->role = RMQ_RAFT_PRECANDIDATE; /* the term stays */
	} else {
		r->role = RMQ_RAFT_CANDIDATE;
		r->term = term;
		r->vote = r->cfg.id;
	}
	r->leader = 0;
	r->granted = r->rejected = 0;
	reset_timeout(r);
	if (count_vote(r, r->cfg.id, true) > 0) {
		/* One voter: its own vote is a majority. */
		if (pre)
			campaign(r, false, transfer);
		else
			become_leader(r);
		return;
	}
	for (uint32_t i = 0; i < r->conf.n; i++) {
		if (r->prs[i].id == r->cfg.id || !voter_at(r, i))
			continue;
		struct rmq_raft_msg *m =
			msg_new(r, pre ? RMQ_RAFT_MSG_PREVOTE : RMQ_RAFT_MSG_VOTE, r->prs[i].id);
		if (!m)
			continue;
		m->term = term;
		m->index = last_index(r);
		m->log_term = term_at(r, last_index(r));
		m->transfer = transfer;
	}
}

/* The leader commits the highest index a majority holds, if it is of the
 * current term (unless the planted bug is on).  Returns true if it moved. */
static bool maybe_commit(struct rmq_raft *r)
{
	uint64_t m[RMQ_RAFT_SERVERS_MAX];
	uint32_t n = 0;

	/* A leader that removed itself is no voter: it does not count. */
	for (uint32_t i = 0; i < r->conf.n; i++)
		if (voter_at(r, i))
			m[n++] = r->prs[i].match;
	if (n == 0)
		return false;
	/* Insertion sort, descending: a handful of voters. */
	for (uint32_t i = 1; i < n; i++)
		for (uint32_t j = i; j > 0 && m[j] > m[j - 1]; j--) {
			uint64_t t = m[j];
			m[j] = m[j - 1];
			m[j - 1] = t;
		}
	uint64_t q = m[quorum(r) - 1];
	if (q <= r->commit)
		return false;
	if (term_at(r, q) != r->term && !r->cfg.unsafe_commit_any_term)
		return false;
	r->commit = q;
	return true;
}

/* ---- membership ------------------------------------------------------------ */

/* Appends c as a CONF entry of this term and sends it. */
static int64_t propose_conf(struct rmq_raft *r, const struct rmq_raft_conf *c)
{
	uint8_t buf[RMQ_RAFT_CONF_ENCODED_MAX];
	size_t len = rmq_raft_conf_encode(c, buf);
	int rc = log_push(r, r->term, RMQ_RAFT_ENTRY_CONF, buf, (uint32_t)len);
	if (rc < 0)
		return rc;
	broadcast_append(r);
	return (int64_t)last_index(r);
}

/* Whether the leader may propose a change now (see rmq_raft_add_peer). */
static int change_allowed(const struct rmq_raft *r)
{
	if (!rmq_raft_leads_committed(r) || r->transfer_to)
		return RMQ_ESTATE;
	if (r->conf_index > r->commit)
		return -EBUSY;
	return 0;
}

/* Promotes the learner of slot s if it is to be promoted and caught up
 * with the commit index (within what one round of APPENDs carries).
 * Returns the index of the change, 0 if not now. */
static int64_t maybe_promote(struct rmq_raft *r, uint32_t s)
{
	struct progress *pr = &r->prs[s];
	if (!pr->promote || pr->match < r->commit || change_allowed(r) < 0 ||
	    n_voters(&r->conf) >= RMQ_RAFT_VOTERS_MAX)
		return 0;
	struct rmq_raft_conf c = r->conf;
	c.servers[s].role = RMQ_RAFT_VOTER;
	pr->promote = false;
	int64_t idx = propose_conf(r, &c);
	return idx > 0 ? idx : 0;
}

/* The leader's commit index moved: tell the followers, promote learners
 * that caught up, and step down once a change that removed this node
 * committed, handing over to the most caught-up voter. */
static void commit_moved(struct rmq_raft *r)
{
	broadcast_append(r);
	if (r->commit >= r->conf_index && !is_voter(r, r->cfg.id)) {
		struct progress *best = NULL;
		for (uint32_t i = 0; i < r->conf.n; i++)
			if (voter_at(r, i) && (!best || r->prs[i].match > best->match))
				best = &r->prs[i];
		if (best && best->match == last_index(r))
			msg_new(r, RMQ_RAFT_MSG_TIMEOUT_NOW, best->id);
		become_follower(r, r->term, 0);
		return;
	}
	for (uint32_t i = 0; i < r->conf.n; i++)
		if (maybe_promote(r, i) > 0)
			break; /* one change at a time */
}

/* ---- reads ----------------------------------------------------------------- */

/* Hands out the pending reads whose round a majority answered. */
static void confirm_reads(struct rmq_raft *r)
{
	size_t k = 0;
	for (size_t i = 0; i < r->n_pending; i++) {
		struct pending_read *p = &r->pending[i];
		uint32_t acks = 0;
		for (uint32_t v = 0; v < r->conf.n; v++)
			acks += voter_at(r, v) && (r->prs[v].id == r->cfg.id || r->prs[v].seq >= p->seq);
		if (acks >= quorum(r) && r->n_ready_reads < READS_MAX)
			r->ready_reads[r->n_ready_reads++] = p->rd;
		else
			r->pending[k++] = *p;
	}
	r->n_pending = k;
}

/* ---- messages in ---------------------------------------------------------- */

static bool log_up_to_date(const struct rmq_raft *r, uint64_t index, uint64_t term)
{
	uint64_t lt = term_at(r, last_index(r));
	return term > lt || (term == lt && index >= last_index(r));
}

static bool in_lease(const struct rmq_raft *r)
{
	return r->cfg.check_quorum && r->leader != 0 && r->elapsed < r->cfg.election_ticks;
}

static void on_vote(struct rmq_raft *r, const struct rmq_raft_msg *m)
{
	bool pre = m->type == RMQ_RAFT_MSG_PREVOTE;
	bool grant;

	if (pre)
		grant = m->term > r->term && log_up_to_date(r, m->index, m->log_term);
	else
		grant = m->term == r->term && (r->vote == 0 || r->vote == m->from) &&
			log_up_to_date(r, m->index, m->log_term);
	struct rmq_raft_msg *out =
		msg_new(r, pre ? RMQ_RAFT_MSG_PREVOTE_RESP : RMQ_RAFT_MSG_VOTE_RESP, m->from);
	if (!out)
		return;
	out->reject = !grant;
	if (grant && pre)
		out->term = m->term;
	if (grant && !pre) {
		r->vote = m->from;
		reset_timeout(r);
	}
}

static void on_vote_resp(struct rmq_raft *r, const struct rmq_raft_msg *m)
{
	bool pre = m->type == RMQ_RAFT_MSG_PREVOTE_RESP;

	/* Answers to an earlier campaign are stale.  A refused pre-vote
	 * carries the voter's term, a granted one the campaign's. */
	if (pre && (r->role != RMQ_RAFT_PRECANDIDATE || (!m->reject && m->term != r->term + 1)))
		return;
	if (!pre && (r->role != RMQ_RAFT_CANDIDATE || m->term != r->term))
		return;
	int res = count_vote(r, m->from, !m->reject);
	if (res > 0) {
		if (pre)
			campaign(r, false, false);
		else
			become_leader(r);
	} else if (res < 0) {
		become_follower(r, r->term, 0);
	}
}

/* Where the leader should probe next after this node refused prev: its
 * last index when prev is past it, else the index before the run of
 * entries of prev's (conflicting) term, so that one round trip skips a
 * whole term instead of one entry (thesis section 5.3).  Entries up to
 * commit match the leader's: the hint never goes below it. */
static uint64_t reject_hint(const struct rmq_raft *r, uint64_t prev)
{
	if (prev > last_index(r))
		return last_index(r);
	uint64_t conflict = term_at(r, prev), i = prev;
	while (i - 1 > r->commit && i - 1 > r->snap_index && term_at(r, i - 1) == conflict)
		i--;
	return i - 1;
}

/* A message from this term's leader (APPEND, SNAPSHOT): follow it, and
 * start the answer. */
static struct rmq_raft_msg *heard_leader(struct rmq_raft *r, const struct rmq_raft_msg *m)
{
	if (r->role != RMQ_RAFT_FOLLOWER || r->leader != m->from)
		become_follower(r, r->term, m->from);
	r->elapsed = 0;
	return msg_new(r, RMQ_RAFT_MSG_APPEND_RESP, m->from);
}

static void on_append(struct rmq_raft *r, const struct rmq_raft_msg *m)
{
	struct rmq_raft_msg *out = heard_leader(r, m);

	if (out)
		out->seq = m->seq;
	if (m->index < r->commit) {
		/* Everything up to commit matches already. */
		if (out)
			out->index = r->commit;
		return;
	}
	if (m->index > last_index(r) || term_at(r, m->index) != m->log_term) {
		if (out) {
			out->reject = true;
			out->index = m->index;
			out->hint = reject_hint(r, m->index);
		}
		return;
	}
	for (uint32_t i = 0; i < m->n_entries; i++) {
		const struct rmq_raft_entry *e = &m->entries[i];
		if (e->index <= last_index(r)) {
			if (term_at(r, e->index) == e->term)
				continue; /* already have it */
			log_cut(r, e->index - 1);
		}
		if (log_push(r, e->term, e->type, e->data, e->len) < 0) {
			if (out)
				out->index = e->index - 1; /* what was taken */
			return;
		}
	}
	uint64_t last_new = m->index + m->n_entries;
	if (m->commit > r->commit)
		r->commit = m->commit < last_new ? m->commit : last_new;
	if (out)
		out->index = last_new;
}

/* The leader's snapshot (its data arrived beside the message), unless
 * this node has everything it covers already. */
static void on_snapshot(struct rmq_raft *r, const struct rmq_raft_msg *m)
{
	struct rmq_raft_msg *out = heard_leader(r, m);
	if (m->index <= r->commit) {
		if (out)
			out->index = r->commit; /* nothing to install */
		return;
	}
	if (m->index <= r->stable && term_at(r, m->index) == m->log_term) {
		/* The durable log holds the snapshot's last entry: what follows
		 * it matches the leader's and may have been acknowledged, so it
		 * stays, durable as it was (Figure 13, step 6). */
		log_compact(r, m->index);
		if (r->unstable_from <= m->index)
			r->unstable_from = m->index + 1;
		r->install_keeps_log = true;
		r->snap_conf = *m->conf; /* the leader's, equal to the log's there */
		if (r->conf_index <= r->snap_index)
			use_conf(r, &r->snap_conf, r->snap_index); /* none newer kept */
	} else {
		/* The log restarts after the snapshot.  (Not log_cut(): entries
		 * up to commit go too, covered by the snapshot.)  Until the
		 * install is durable, what the disk holds past the old commit
		 * may be stale: no commit index past it is persisted. */
		if (r->stable > r->commit)
			r->stable = r->commit;
		log_drop_after(r, r->snap_index);
		r->snap_index = m->index;
		r->snap_term = m->log_term;
		r->unstable_from = m->index + 1;
		r->install_keeps_log = false;
		r->snap_conf = *m->conf;
		use_conf(r, &r->snap_conf, r->snap_index);
	}
	r->commit = r->applied = m->index;
	r->installed = true;
	if (out)
		out->index = m->index;
}

static void on_append_resp(struct rmq_raft *r, const struct rmq_raft_msg *m)
{
	struct progress *pr = progress_of(r, m->from);

	if (r->role != RMQ_RAFT_LEADER || !pr)
		return;
	pr->active = true;
	if (m->seq > pr->seq) {
		pr->seq = m->seq;
		confirm_reads(r);
	}
	if (m->reject) {
		if (m->index < pr->match)
			return; /* stale */
		uint64_t next = m->hint + 1 < m->index ? m->hint + 1 : m->index;
		if (next <= pr->match)
			next = pr->match + 1;
		if (next < 1)
			next = 1;
		pr->next = next;
		send_append(r, pr);
		return;
	}
	if (m->index > last_index(r))
		return; /* not an index of this log: ignore */
	if (m->index > pr->match)
		pr->match = m->index;
	if (pr->next <= pr->match)
		pr->next = pr->match + 1;
	if (pr->snapshot && pr->match >= pr->snapshot)
		pr->snapshot = 0; /* installed */
	if (r->transfer_to == m->from && pr->match == last_index(r))
		msg_new(r, RMQ_RAFT_MSG_TIMEOUT_NOW, m->from); /* caught up */
	if (maybe_commit(r)) {
		commit_moved(r);
		return;
	}
	if (pr->next <= last_index(r))
		send_append(r, pr);
	(void)maybe_promote(r, (uint32_t)(pr - r->prs));
}

static bool valid(const struct rmq_raft *r, const struct rmq_raft_msg *m)
{
	/* From any node, in the configuration or not: a leader's log may
	 * add this node, a candidate's may hold a newer configuration. */
	if (m->to != r->cfg.id || m->from == 0 || m->from == r->cfg.id)
		return false;
	if (m->type < RMQ_RAFT_MSG_PREVOTE || m->type > RMQ_RAFT_MSG_SNAPSHOT)
		return false;
	if (m->type == RMQ_RAFT_MSG_SNAPSHOT)
		return m->n_entries == 0 && m->index > 0 && m->log_term > 0 &&
		       m->log_term <= m->term && m->conf && conf_valid(m->conf);
	if (m->type != RMQ_RAFT_MSG_APPEND)
		return m->n_entries == 0;
	if ((m->n_entries > 0 && !m->entries) || (m->index == 0 && m->log_term != 0))
		return false;
	uint64_t t = m->log_term;
	for (uint32_t i = 0; i < m->n_entries; i++) {
		const struct rmq_raft_entry *e = &m->entries[i];
		struct rmq_raft_conf c;
		if (e->index != m->index + 1 + i || e->term < t || e->term > m->term ||
		    (e->len > 0 && !e->data) || e->type > RMQ_RAFT_ENTRY_NOOP ||
		    (e->type == RMQ_RAFT_ENTRY_CONF && rmq_raft_conf_decode(e->data, e->len, &c) < 0))
			return false;
		t = e->term;
	}
	return true;
}

int rmq_raft_step(struct rmq_raft *r, const struct rmq_raft_msg *m)
{
	RMQ_ASSERT(!r->in_ready);
	if (!valid(r, m))
		return RMQ_EPROTO;
	bool vote_req = m->type == RMQ_RAFT_MSG_PREVOTE || m->type == RMQ_RAFT_MSG_VOTE;

	if (m->term > r->term) {
		/* A node that heard from its leader within the election timeout
		 * ignores votes (check-quorum): a partitioned node rejoining
		 * cannot depose a working leader. */
		if (vote_req && in_lease(r) && !m->transfer)
			return 0;
		if (m->type == RMQ_RAFT_MSG_PREVOTE ||
		    (m->type == RMQ_RAFT_MSG_PREVOTE_RESP && !m->reject)) {
			/* A pre-vote moves no term. */
		} else {
			bool from_leader = m->type == RMQ_RAFT_MSG_APPEND ||
					   m->type == RMQ_RAFT_MSG_SNAPSHOT;
			bool keep_timer = vote_req && r->role != RMQ_RAFT_LEADER;
			uint32_t elapsed = r->elapsed, timeout = r->timeout;
			become_follower(r, m->term, from_leader ? m->from : 0);
			if (keep_timer) {
				/* Only a granted vote restarts the election timer
				 * (Figure 2): a node that keeps campaigning with a
				 * log nobody votes for (one removed from the
				 * configuration without knowing it) must not keep
				 * the others from campaigning. */
				r->elapsed = elapsed;
				r->timeout = timeout;
			}
		}
	} else if (m->term < r->term) {
		/* A stale leader learns the term from the answer and steps
		 * down; a stale pre-candidate from the refusal. */
		if (m->type == RMQ_RAFT_MSG_APPEND || m->type == RMQ_RAFT_MSG_SNAPSHOT) {
			struct rmq_raft_msg *out = msg_new(r, RMQ_RAFT_MSG_APPEND_RESP, m->from);
			if (out) {
				out->reject = true;
				out->index = m->index;
				out->hint = last_index(r);
			}
		} else if (m->type == RMQ_RAFT_MSG_PREVOTE || m->type == RMQ_RAFT_MSG_VOTE) {
			/* Refused with this node's term (Figure 2), which a
			 * candidate takes up: one that never heard of the term
			 * would go on campaigning below it, and wait for a voter
			 * that a removed node keeps raising. */
			struct rmq_raft_msg *out = msg_new(
				r, m->type == RMQ_RAFT_MSG_VOTE ? RMQ_RAFT_MSG_VOTE_RESP
								 : RMQ_RAFT_MSG_PREVOTE_RESP,
				m->from);
			if (out)
				out->reject = true;
		}
		return 0;
	}
	switch (m->type) {
	case RMQ_RAFT_MSG_PREVOTE:
	case RMQ_RAFT_MSG_VOTE:
		on_vote(r, m);
		break;
	case RMQ_RAFT_MSG_PREVOTE_RESP:
	case RMQ_RAFT_MSG_VOTE_RESP:
		on_vote_resp(r, m);
		break;
	case RMQ_RAFT_MSG_APPEND:
		on_append(r, m);
		break;
	case RMQ_RAFT_MSG_APPEND_RESP:
		on_append_resp(r, m);
		break;
	case RMQ_RAFT_MSG_SNAPSHOT:
		on_snapshot(r, m);
		break;
	case RMQ_RAFT_MSG_TIMEOUT_NOW:
		/* From this term's leader: campaign at once, without a
		 * pre-vote (the leader vouches that this log is up to date). */
		if (r->role == RMQ_RAFT_FOLLOWER && r->leader == m->from && is_voter(r, r->cfg.id))
			campaign(r, false, true);
		break;
	}
	return 0;
}

/* ---- ticks and proposals ---------------------------------------------------- */

void rmq_raft_tick(struct rmq_raft *r)
{
	RMQ_ASSERT(!r->in_ready);
	if (r->role != RMQ_RAFT_LEADER) {
		/* The only voter has nobody to wait for: it campaigns at once
		 * (a one-node cluster leads again one tick after a restart). */
		bool alone = quorum(r) == 1 && is_voter(r, r->cfg.id);
		if (++r->elapsed < r->timeout && !alone)
			return;
		if (may_campaign(r))
			campaign(r, r->cfg.pre_vote, false);
		else
			become_follower(r, r->term, 0); /* a learner: waits for a leader */
		return;
	}
	for (uint32_t i = 0; i < r->conf.n; i++)
		if (r->prs[i].snapshot && ++r->prs[i].snapshot_ticks >= 2 * r->cfg.election_ticks)
			r->prs[i].snapshot = 0; /* no answer: the next heartbeat sends again */
	if (r->transfer_to && ++r->transfer_elapsed >= r->cfg.election_ticks)
		r->transfer_to = 0; /* the successor did not take over: lead on */
	if (++r->hb_elapsed >= r->cfg.heartbeat_ticks) {
		r->hb_elapsed = 0;
		broadcast_append(r);
	}
	if (r->cfg.check_quorum && ++r->elapsed >= r->cfg.election_ticks) {
		r->elapsed = 0;
		uint32_t active = 0;
		for (uint32_t i = 0; i < r->conf.n; i++) {
			active += voter_at(r, i) && (r->prs[i].active || r->prs[i].id == r->cfg.id);
			r->prs[i].active = false;
		}
		if (active < quorum(r))
			become_follower(r, r->term, 0); /* cut off from a majority */
	}
}

int64_t rmq_raft_propose(struct rmq_raft *r, const void *data, uint32_t len)
{
	RMQ_ASSERT(!r->in_ready);
	if (r->role != RMQ_RAFT_LEADER || r->transfer_to)
		return RMQ_ESTATE;
	if (log_push(r, r->term, RMQ_RAFT_ENTRY_NORMAL, data, len) < 0)
		return -ENOMEM;
	broadcast_append(r);
	return (int64_t)last_index(r);
}

int rmq_raft_read_index(struct rmq_raft *r, uint64_t ctx)
{
	RMQ_ASSERT(!r->in_ready);
	/* Until an entry of its term commits, a new leader does not know
	 * the commit index of the term before (section 6.4, step 1). */
	if (!rmq_raft_leads_committed(r))
		return RMQ_ESTATE;
	if (r->n_pending == READS_MAX)
		return RMQ_EFULL;
	r->pending[r->n_pending++] = (struct pending_read){{ctx, r->commit}, ++r->seq};
	if (quorum(r) == 1)
		confirm_reads(r);
	else
		broadcast_append(r); /* the round that confirms it */
	return 0;
}

int64_t rmq_raft_add_peer(struct rmq_raft *r, uint32_t id, const char *addr,
			  enum rmq_raft_server_role role)
{
	RMQ_ASSERT(!r->in_ready);
	int rc = change_allowed(r);
	if (rc < 0)
		return rc;
	if (id == 0 || !addr || strlen(addr) >= RMQ_RAFT_ADDR_MAX || role < RMQ_RAFT_VOTER ||
	    role > RMQ_RAFT_SPARE)
		return -EINVAL;
	struct rmq_raft_conf c = r->conf;
	int s = slot_of(r, id);
	if (s >= 0) {
		struct rmq_raft_server *sv = &c.servers[s];
		if (strcmp(sv->addr, addr) != 0)
			return -EINVAL; /* remove it first */
		if (sv->role == (uint32_t)role) {
			r->prs[s].promote = false; /* a learner asked to stay one */
			return 0;
		}
		if (role == RMQ_RAFT_VOTER && sv->role == RMQ_RAFT_LEARNER) {
			r->prs[s].promote = true;
			return maybe_promote(r, (uint32_t)s);
		}
		if (sv->role == RMQ_RAFT_VOTER && n_voters(&c) == 1)
			return -EINVAL; /* the last voter */
		sv->role = role == RMQ_RAFT_VOTER ? RMQ_RAFT_LEARNER : role;
	} else {
		if (c.n == RMQ_RAFT_SERVERS_MAX)
			return -EINVAL;
		uint32_t at = 0;
		while (at < c.n && c.servers[at].id < id)
			at++;
		memmove(&c.servers[at + 1], &c.servers[at], (c.n - at) * sizeof(c.servers[0]));
		c.servers[at] = (struct rmq_raft_server){
			.id = id, .role = role == RMQ_RAFT_VOTER ? RMQ_RAFT_LEARNER : role};
		memcpy(c.servers[at].addr, addr, strlen(addr) + 1);
		c.n++;
		s = (int)at;
	}
	if (role == RMQ_RAFT_VOTER && n_voters(&c) >= RMQ_RAFT_VOTERS_MAX)
		return -EINVAL;
	int64_t idx = propose_conf(r, &c);
	if (idx > 0 && role == RMQ_RAFT_VOTER)
		r->prs[s].promote = true; /* a learner now: voter once caught up */
	return idx;
}

int64_t rmq_raft_remove_peer(struct rmq_raft *r, uint32_t id)
{
	RMQ_ASSERT(!r->in_ready);
	int rc = change_allowed(r);
	if (rc < 0)
		return rc;
	int s = slot_of(r, id);
	if (s < 0)
		return 0;
	struct rmq_raft_conf c = r->conf;
	if (c.servers[s].role == RMQ_RAFT_VOTER && n_voters(&c) == 1)
		return -EINVAL;
	memmove(&c.servers[s], &c.servers[s + 1], (c.n - (uint32_t)s - 1) * sizeof(c.servers[0]));
	c.n--;
	return propose_conf(r, &c);
}

int rmq_raft_compact(struct rmq_raft *r, uint64_t index)
{
	RMQ_ASSERT(!r->in_ready);
	if (index <= r->snap_index)
		return 0;
	if (index > r->applied || index > r->stable)
		return RMQ_ERANGE;
	log_compact(r, index);
	return 0;
}

int rmq_raft_transfer_leader(struct rmq_raft *r, uint32_t to)
{
	RMQ_ASSERT(!r->in_ready);
	if (r->role != RMQ_RAFT_LEADER)
		return RMQ_ESTATE;
	struct progress *pr = progress_of(r, to);
	if (!pr || !is_voter(r, to))
		return RMQ_ENOTFOUND;
	if (to == r->cfg.id)
		return 0;
	r->transfer_to = to;
	r->transfer_elapsed = 0;
	if (pr->match == last_index(r))
		msg_new(r, RMQ_RAFT_MSG_TIMEOUT_NOW, to);
	else
		send_append(r, pr);
	return 0;
}

/* ---- Ready ------------------------------------------------------------------ */

/* The commit index persisted never passes the durable log: a Ready's
 * hard state and entries may then be written in any order (a crash that
 * kept a commit index with the entries it covered lost would apply stale
 * entries after the restart).  A follower's commit reaches the disk one
 * Ready after its entries. */
static struct rmq_raft_hard_state hard_state(const struct rmq_raft *r)
{
	uint64_t commit = r->commit < r->stable ? r->commit : r->stable;
	return (struct rmq_raft_hard_state){.term = r->term, .vote = r->vote, .commit = commit};
}

static bool hs_equal(const struct rmq_raft_hard_state *a, const struct rmq_raft_hard_state *b)
{
	return a->term == b->term && a->vote == b->vote && a->commit == b->commit;
}

bool rmq_raft_has_ready(const struct rmq_raft *r)
{
	struct rmq_raft_hard_state hs = hard_state(r);
	return !hs_equal(&hs, &r->hs_prev) || r->unstable_from <= last_index(r) || r->n_msgs > 0 ||
	       r->commit > r->applied || r->installed || r->n_ready_reads > 0;
}

void rmq_raft_get_ready(struct rmq_raft *r, struct rmq_raft_ready *rd)
{
	RMQ_ASSERT(!r->in_ready);
	*rd = (struct rmq_raft_ready){0};
	r->rd_hs = hard_state(r);
	rd->hs_changed = !hs_equal(&r->rd_hs, &r->hs_prev);
	rd->hs = r->rd_hs;
	if (r->installed) {
		rd->snapshot = true;
		rd->snapshot_index = r->snap_index;
		rd->snapshot_term = r->snap_term;
		rd->snapshot_keeps_log = r->install_keeps_log;
		rd->snapshot_conf = &r->snap_conf;
	}
	r->rd_last = last_index(r);
	if (r->unstable_from <= r->rd_last) {
		rd->entries = entry(r, r->unstable_from);
		rd->n_entries = r->rd_last - r->unstable_from + 1;
	}
	/* Point the APPENDs into the log, dropping those this node may no
	 * longer send (see the top of this file). */
	size_t k = 0;
	for (size_t i = 0; i < r->n_msgs; i++) {
		struct rmq_raft_msg *m = &r->msgs[i];
		bool lead = r->role == RMQ_RAFT_LEADER && m->term == r->term;
		if (m->type == RMQ_RAFT_MSG_APPEND) {
			if (!lead || m->index < r->snap_index || m->index > last_index(r) ||
			    term_at(r, m->index) != m->log_term)
				continue;
			if (m->index + m->n_entries > last_index(r))
				m->n_entries = (uint32_t)(last_index(r) - m->index);
			m->entries = m->n_entries ? entry(r, m->index + 1) : NULL;
		} else if (m->type == RMQ_RAFT_MSG_SNAPSHOT) {
			if (!lead)
				continue;
			m->index = r->snap_index; /* the caller sends its newest */
			m->log_term = r->snap_term;
			m->conf = &r->snap_conf;
		}
		r->msgs[k++] = *m;
	}
	r->n_msgs = k;
	rd->msgs = r->msgs;
	rd->n_msgs = k;
	r->rd_msgs = k;
	r->rd_commit = r->commit;
	if (r->commit > r->applied) {
		rd->committed = entry(r, r->applied + 1);
		rd->n_committed = r->commit - r->applied;
	}
	rd->reads = r->ready_reads;
	rd->n_reads = r->n_ready_reads;
	r->rd_reads = r->n_ready_reads;
	r->in_ready = true;
}

void rmq_raft_advance(struct rmq_raft *r)
{
	RMQ_ASSERT(r->in_ready);
	r->in_ready = false;
	r->installed = false;
	r->hs_prev = r->rd_hs;
	r->stable = r->rd_last;
	r->unstable_from = r->rd_last + 1;
	r->applied = r->rd_commit;
	RMQ_ASSERT(r->n_msgs == r->rd_msgs);
	r->n_msgs = 0;
	RMQ_ASSERT(r->n_ready_reads == r->rd_reads);
	r->n_ready_reads = 0;
	if (r->role == RMQ_RAFT_LEADER) {
		struct progress *me = progress_of(r, r->cfg.id);
		if (me)
			me->match = r->stable;
		if (maybe_commit(r))
			commit_moved(r);
	}
}

/* ---- life ------------------------------------------------------------------- */

struct rmq_raft *rmq_raft_new(const struct rmq_raft_config *cfg,
			      const struct rmq_raft_hard_state *hs,
			      const struct rmq_raft_entry *log, size_t n)
{
	if (cfg->id == 0 || !conf_valid(&cfg->conf) || cfg->election_ticks == 0 ||
	    cfg->heartbeat_ticks == 0 || cfg->max_append_entries == 0 ||
	    (cfg->snap_index == 0) != (cfg->snap_term == 0))
		return NULL;
	struct rmq_raft *r = calloc(1, sizeof(*r));
	if (!r)
		return NULL;
	r->cfg = *cfg;
	r->snap_index = cfg->snap_index;
	r->snap_term = cfg->snap_term;
	/* Before index 1 there is no configuration: the first is entry 1. */
	if (cfg->snap_index > 0) {
		r->snap_conf = cfg->conf;
		use_conf(r, &cfg->conf, cfg->snap_index);
	}
	for (size_t i = 0; i < n; i++) {
		uint64_t prev_term = i > 0 ? log[i - 1].term : r->snap_term;
		if (log[i].index != r->snap_index + i + 1 || log[i].term < prev_term ||
		    log_push(r, log[i].term, log[i].type, log[i].data, log[i].len) < 0)
			goto fail;
	}
	r->rng = cfg->seed ^ ((uint64_t)cfg->id << 32);
	uint64_t last = last_index(r);
	if (hs) {
		r->term = hs->term;
		r->vote = hs->vote;
		r->commit = hs->commit < last ? hs->commit : last;
		r->hs_prev = *hs;
	}
	/* The snapshot is applied and committed by definition. */
	r->applied = cfg->applied < last ? cfg->applied : last;
	if (r->applied < r->snap_index)
		r->applied = r->snap_index;
	if (r->commit < r->applied)
		r->commit = r->applied;
	r->stable = last;
	r->unstable_from = last + 1;
	if (last == 0 && cfg->conf.n > 0) {
		/* A first member of a new cluster: the first configuration
		 * becomes entry 1, of term 1, alike on every first member and
		 * so committed (as etcd bootstraps).  The log then tells a node
		 * added later, and every snapshot, who is in the cluster. */
		uint8_t buf[RMQ_RAFT_CONF_ENCODED_MAX];
		size_t len = rmq_raft_conf_encode(&cfg->conf, buf);
		if (log_push(r, 1, RMQ_RAFT_ENTRY_CONF, buf, (uint32_t)len) < 0)
			goto fail;
		if (r->term == 0)
			r->term = 1;
		r->commit = 1;
	}
	r->role = RMQ_RAFT_FOLLOWER;
	reset_timeout(r);
	return r;
fail:
	rmq_raft_free(r);
	return NULL;
}

void rmq_raft_free(struct rmq_raft *r)
{
	if (!r)
		return;
	log_drop_after(r, r->snap_index);
	free(r->log);
	free(r->msgs);
	free(r);
}

enum rmq_raft_role rmq_raft_role(const struct rmq_raft *r)
{
	return r->role;
}

uint64_t rmq_raft_term(const struct rmq_raft *r)
{
	return r->term;
}

uint32_t rmq_raft_leader(const struct rmq_raft *r)
{
	return r->leader;
}

uint64_t rmq_raft_commit(const struct rmq_raft *r)
{
	return r->commit;
}

bool rmq_raft_leads_committed(const struct rmq_raft *r)
{
	return r->role == RMQ_RAFT_LEADER && term_at(r, r->commit) == r->term;
}

uint64_t rmq_raft_last_index(const struct rmq_raft *r)
{
	return last_index(r);
}

const struct rmq_raft_entry *rmq_raft_entry_at(const struct rmq_raft *r, uint64_t index)
{
	if (index <= r->snap_index || index > last_index(r))
		return NULL;
	return entry(r, index);
}

uint64_t rmq_raft_snapshot_index(const struct rmq_raft *r)
{
	return r->snap_index;
}

const struct rmq_raft_conf *rmq_raft_snapshot_conf(const struct rmq_raft *r)
{
	return &r->snap_conf;
}

const struct rmq_raft_conf *rmq_raft_conf(const struct rmq_raft *r, uint64_t *index)
{
	if (index)
		*index = r->conf_index;
	return &r->conf;
}

int rmq_raft_progress(const struct rmq_raft *r, uint32_t id, struct rmq_raft_progress *out)
{
	if (r->role != RMQ_RAFT_LEADER)
		return RMQ_ESTATE;
	int s = slot_of(r, id);
	if (s < 0 || r->conf.servers[s].role == RMQ_RAFT_SPARE)
		return RMQ_ENOTFOUND;
	const struct progress *pr = &r->prs[s];
	*out = (struct rmq_raft_progress){
		.match = pr->match, .next = pr->next, .active = pr->active, .promoting = pr->promote};
	return 0;
}
