/* SPDX-License-Identifier: Apache-2.0 */
/*
 * test_raft.c - the Raft core's rules one by one (Figure 2 of the Raft
 * paper, pre-vote, check-quorum, the current-term commit rule, hard state
 * before messages), on a tiny synchronous cluster: every Ready is handled
 * at once and every message delivered unless the link is cut.  The
 * randomized fault search is tests/raft/test_sim.c.
 */
#include "raft/raft.h"

#include "core/error.h"

#include <criterion/criterion.h>
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define N_MAX 5
#define Q_MAX 4096

struct cluster {
	int n;
	struct rmq_raft *r[N_MAX];
	bool cut[N_MAX][N_MAX]; /* messages from i to j are lost */
	struct rmq_raft_msg q[Q_MAX];
	int nq;
	uint64_t applied[N_MAX];
	char last_applied[N_MAX][32];
	int snapshots[N_MAX]; /* snapshots installed */
	uint64_t read_ctx[N_MAX], read_index[N_MAX]; /* the last read confirmed */
	bool hs_before_vote_resp; /* every granted VOTE_RESP came with its vote in the same Ready */
};

/* Servers 1..n, voters; "127.0.0.1:<9000 + id>" for an address. */
static struct rmq_raft_conf voters(int n)
{
	struct rmq_raft_conf c = {.n = (uint32_t)n};
	for (int i = 0; i < n; i++) {
		c.servers[i].id = (uint32_t)(i + 1);
		c.servers[i].role = RMQ_RAFT_VOTER;
		snprintf(c.servers[i].addr, sizeof(c.servers[i].addr), "127.0.0.1:%d", 9001 + i);
	}
	return c;
}

static struct rmq_raft_config config(int n, int id)
{
	struct rmq_raft_config c = {.id = (uint32_t)id,
				    .conf = voters(n),
				    .election_ticks = 10,
				    .heartbeat_ticks = 2,
				    .max_append_entries = 4,
				    .pre_vote = true,
				    .check_quorum = true,
				    .seed = 42};
	return c;
}

/* Entry 1 of a new cluster of n voters, as rmq_raft_new writes it. */
static struct rmq_raft_entry first_entry(int n)
{
	static uint8_t buf[RMQ_RAFT_CONF_ENCODED_MAX];
	struct rmq_raft_conf c = voters(n);
	size_t len = rmq_raft_conf_encode(&c, buf);
	return (struct rmq_raft_entry){
		.term = 1, .index = 1, .type = RMQ_RAFT_ENTRY_CONF, .len = (uint32_t)len, .data = buf};
}

static void cluster_init(struct cluster *c, int n)
{
	memset(c, 0, sizeof(*c));
	c->n = n;
	c->hs_before_vote_resp = true;
	for (int i = 0; i < n; i++) {
		struct rmq_raft_config cfg = config(n, i + 1);
		c->r[i] = rmq_raft_new(&cfg, NULL, NULL, 0);
		cr_assert_not_null(c->r[i]);
	}
}

static void msg_free(struct rmq_raft_msg *m)
{
	for (uint32_t k = 0; k < m->n_entries; k++)
		free(m->entries[k].data);
	free(m->entries);
	free((void *)m->conf);
}

static void cluster_free(struct cluster *c)
{
	for (int i = 0; i < c->n; i++)
		rmq_raft_free(c->r[i]);
	for (int i = 0; i < c->nq; i++)
		msg_free(&c->q[i]);
}

/* Handles node i's Ready: entries are "durable" at once (the core keeps
 * them), messages are copied into the queue, committed entries applied. */
static void handle_ready(struct cluster *c, int i)
{
	struct rmq_raft_ready rd;
	rmq_raft_get_ready(c->r[i], &rd);
	for (size_t k = 0; k < rd.n_msgs; k++) {
		const struct rmq_raft_msg *m = &rd.msgs[k];
		if (m->type == RMQ_RAFT_MSG_VOTE_RESP && !m->reject &&
		    !(rd.hs_changed && rd.hs.vote == m->to))
			c->hs_before_vote_resp = false;
		cr_assert_lt(c->nq, Q_MAX);
		struct rmq_raft_msg *copy = &c->q[c->nq++];
		*copy = *m;
		copy->entries = NULL;
		if (m->conf) {
			struct rmq_raft_conf *conf = malloc(sizeof(*conf));
			*conf = *m->conf;
			copy->conf = conf;
		}
		if (m->n_entries) {
			copy->entries = calloc(m->n_entries, sizeof(*copy->entries));
			for (uint32_t e = 0; e < m->n_entries; e++) {
				copy->entries[e] = m->entries[e];
				if (m->entries[e].len) {
					copy->entries[e].data = malloc(m->entries[e].len);
					memcpy(copy->entries[e].data, m->entries[e].data,
					       m->entries[e].len);
				}
			}
		}
	}
	for (size_t k = 0; k < rd.n_reads; k++) {
		c->read_ctx[i] = rd.reads[k].ctx;
		c->read_index[i] = rd.reads[k].index;
	}
	if (rd.snapshot) {
		/* The snapshot's data travels beside the message; here the
		 * state machine is just its applied index. */
		c->applied[i] = rd.snapshot_index;
		c->snapshots[i]++;
	}
	for (size_t k = 0; k < rd.n_committed; k++) {
		const struct rmq_raft_entry *e = &rd.committed[k];
		cr_assert_eq(e->index, c->applied[i] + 1, "applied in order");
		c->applied[i] = e->index;
		if (e->type == RMQ_RAFT_ENTRY_NORMAL) {
			size_t len = e->len < 31 ? e->len : 31;
			memcpy(c->last_applied[i], e->data, len);
			c->last_applied[i][len] = 0;
		}
	}
	rmq_raft_advance(c->r[i]);
}

/* Runs until nothing is left to do. */
static void settle(struct cluster *c)
{
	for (int round = 0; round < 10000; round++) {
		bool busy = false;
		for (int i = 0; i < c->n; i++)
			if (c->r[i] && rmq_raft_has_ready(c->r[i])) {
				handle_ready(c, i);
				busy = true;
			}
		int nq = c->nq;
		struct rmq_raft_msg *q = malloc(sizeof(*q) * (size_t)(nq ? nq : 1));
		memcpy(q, c->q, sizeof(*q) * (size_t)nq);
		c->nq = 0;
		for (int k = 0; k < nq; k++) {
			int from = (int)q[k].from - 1, to = (int)q[k].to - 1;
			if (c->r[to] && !c->cut[from][to])
				rmq_raft_step(c->r[to], &q[k]);
			msg_free(&q[k]);
			busy = true;
		}
		free(q);
		if (!busy)
			return;
	}
	cr_assert_fail("the cluster did not settle");
}

static void ticks(struct cluster *c, int n)
{
	for (int t = 0; t < n; t++) {
		for (int i = 0; i < c->n; i++)
			if (c->r[i])
				rmq_raft_tick(c->r[i]);
		settle(c);
	}
}

static int leader_of(struct cluster *c)
{
	int found = -1;
	for (int i = 0; i < c->n; i++)
		if (c->r[i] && rmq_raft_role(c->r[i]) == RMQ_RAFT_LEADER) {
			if (found >= 0 && rmq_raft_term(c->r[i]) == rmq_raft_term(c->r[found]))
				cr_assert_fail("two leaders in term %llu",
					(unsigned long long)rmq_raft_term(c->r[i]));
			if (found < 0 || rmq_raft_term(c->r[i]) > rmq_raft_term(c->r[found]))
				found = i;
		}
	return found;
}

/* A fresh cluster of n nodes with its first leader elected: its slot. */
static int cluster_elect(struct cluster *c, int n)
{
	cluster_init(c, n);
	ticks(c, 40);
	int l = leader_of(c);
	cr_assert_geq(l, 0, "a leader within 40 ticks");
	return l;
}

static void isolate(struct cluster *c, int i, bool cut)
{
	for (int j = 0; j < c->n; j++) {
		c->cut[i][j] = cut;
		c->cut[j][i] = cut;
	}
}

Test(raft, one_node_elects_itself_and_commits)
{
	struct cluster c;
	cluster_init(&c, 1);
	ticks(&c, 25);
	cr_assert_eq(rmq_raft_role(c.r[0]), RMQ_RAFT_LEADER);
	cr_assert_gt(rmq_raft_propose(c.r[0], "x", 1), 0);
	settle(&c);
	cr_assert_str_eq(c.last_applied[0], "x");
	cluster_free(&c);
}

Test(raft, three_nodes_elect_one_leader_and_replicate)
{
	struct cluster c;
	int l = cluster_elect(&c, 3);
	cr_assert_gt(rmq_raft_propose(c.r[l], "hello", 5), 0);
	settle(&c);
	ticks(&c, 3); /* the commit index reaches the followers */
	for (int i = 0; i < 3; i++) {
		cr_assert_str_eq(c.last_applied[i], "hello", "node %d", i + 1);
		cr_assert_eq(rmq_raft_leader(c.r[i]), (uint32_t)l + 1);
	}
	cr_assert(c.hs_before_vote_resp, "a granted vote left before the vote was durable");
	cluster_free(&c);
}

Test(raft, a_proposal_to_a_follower_is_refused)
{
	struct cluster c;
	int l = cluster_elect(&c, 3);
	cr_assert_eq(rmq_raft_propose(c.r[(l + 1) % 3], "x", 1), RMQ_ESTATE);
	cluster_free(&c);
}

/* Figure 2, RequestVote: one vote per term; a stale log gets none. */
Test(raft, one_vote_per_term_and_none_for_a_stale_log)
{
	struct rmq_raft_config cfg = config(3, 1);
	struct rmq_raft_entry log[2] = {{.term = 1, .index = 1}, {.term = 2, .index = 2}};
	struct rmq_raft_hard_state hs = {.term = 2};
	struct rmq_raft *r = rmq_raft_new(&cfg, &hs, log, 2);
	struct rmq_raft_ready rd;

	struct rmq_raft_msg v = {.type = RMQ_RAFT_MSG_VOTE, .from = 2, .to = 1, .term = 3,
				 .index = 2, .log_term = 2};
	cr_assert_eq(rmq_raft_step(r, &v), 0);
	rmq_raft_get_ready(r, &rd);
	cr_assert(rd.hs_changed);
	cr_assert_eq(rd.hs.term, 3);
	cr_assert_eq(rd.hs.vote, 2);
	cr_assert_eq(rd.n_msgs, 1);
	cr_assert(!rd.msgs[0].reject);
	rmq_raft_advance(r);

	v.from = 3; /* same term, another candidate */
	cr_assert_eq(rmq_raft_step(r, &v), 0);
	rmq_raft_get_ready(r, &rd);
	cr_assert_eq(rd.n_msgs, 1);
	cr_assert(rd.msgs[0].reject, "a second vote in term 3");
	rmq_raft_advance(r);

	/* Term 4, but the candidate's log ends in term 1: refused. */
	struct rmq_raft_msg stale = {.type = RMQ_RAFT_MSG_VOTE, .from = 3, .to = 1, .term = 4,
				     .index = 5, .log_term = 1};
	cr_assert_eq(rmq_raft_step(r, &stale), 0);
	rmq_raft_get_ready(r, &rd);
	cr_assert_eq(rd.hs.term, 4);
	cr_assert_eq(rd.hs.vote, 0);
	cr_assert(rd.msgs[0].reject);
	rmq_raft_advance(r);
	rmq_raft_free(r);
}

/* Figure 2, AppendEntries: the consistency check, and a conflicting
 * uncommitted tail replaced by the leader's. */
Test(raft, append_checks_prev_and_replaces_a_conflicting_tail)
{
	struct rmq_raft_config cfg = config(3, 2);
	struct rmq_raft_entry log[3] = {
		{.term = 1, .index = 1}, {.term = 1, .index = 2}, {.term = 2, .index = 3}};
	struct rmq_raft_hard_state hs = {.term = 2, .commit = 1};
	struct rmq_raft *r = rmq_raft_new(&cfg, &hs, log, 3);
	struct rmq_raft_ready rd;

	/* prev (5, 3) is past the end: refused, hint = the last index. */
	struct rmq_raft_msg a = {.type = RMQ_RAFT_MSG_APPEND, .from = 1, .to = 2, .term = 3,
				 .index = 5, .log_term = 3};
	cr_assert_eq(rmq_raft_step(r, &a), 0);
	rmq_raft_get_ready(r, &rd);
	cr_assert_eq(rd.n_msgs, 1);
	cr_assert(rd.msgs[0].reject);
	cr_assert_eq(rd.msgs[0].hint, 3);
	rmq_raft_advance(r);

	/* prev (2, 1) matches; entry 3 of term 3 replaces the term-2 one. */
	struct rmq_raft_entry e[2] = {{.term = 3, .index = 3, .len = 1, .data = (uint8_t *)"a"},
				      {.term = 3, .index = 4, .len = 1, .data = (uint8_t *)"b"}};
	struct rmq_raft_msg b = {.type = RMQ_RAFT_MSG_APPEND, .from = 1, .to = 2, .term = 3,
				 .index = 2, .log_term = 1, .commit = 3, .n_entries = 2,
				 .entries = e};
	cr_assert_eq(rmq_raft_step(r, &b), 0);
	rmq_raft_get_ready(r, &rd);
	cr_assert_eq(rd.n_entries, 2);
	cr_assert_eq(rd.entries[0].index, 3, "the durable log is replaced from index 3 on");
	cr_assert_eq(rd.entries[0].term, 3);
	cr_assert_eq(rd.msgs[0].index, 4);
	cr_assert(!rd.msgs[0].reject);
	cr_assert_gt(rd.n_committed, 0);
	cr_assert_eq(rd.committed[rd.n_committed - 1].index, 3, "applied up to the leader's commit");
	rmq_raft_advance(r);
	cr_assert_eq(rmq_raft_last_index(r), 4);
	cr_assert_eq(rmq_raft_commit(r), 3);

	/* A malformed APPEND (entries not following prev) is refused. */
	struct rmq_raft_msg bad = b;
	bad.index = 1;
	cr_assert_eq(rmq_raft_step(r, &bad), RMQ_EPROTO);
	rmq_raft_free(r);
}

/* Section 3.6.2: a new leader does not commit an entry of an earlier term
 * by counting replicas, only with one of its own term. */
Test(raft, an_old_term_entry_commits_only_with_one_of_the_current_term)
{
	struct rmq_raft_config cfg = config(3, 1);
	cfg.pre_vote = false;
	struct rmq_raft_entry log[2] = {first_entry(3), {.term = 2, .index = 2}};
	struct rmq_raft_hard_state hs = {.term = 3, .commit = 1};
	struct rmq_raft *r = rmq_raft_new(&cfg, &hs, log, 2);
	struct rmq_raft_ready rd;

	/* Become leader of term 4 with node 2's vote. */
	for (int t = 0; t < 30 && rmq_raft_role(r) != RMQ_RAFT_CANDIDATE; t++)
		rmq_raft_tick(r);
	cr_assert_eq(rmq_raft_role(r), RMQ_RAFT_CANDIDATE);
	rmq_raft_get_ready(r, &rd);
	rmq_raft_advance(r);
	struct rmq_raft_msg g = {.type = RMQ_RAFT_MSG_VOTE_RESP, .from = 2, .to = 1, .term = 4};
	rmq_raft_step(r, &g);
	cr_assert_eq(rmq_raft_role(r), RMQ_RAFT_LEADER);
	rmq_raft_get_ready(r, &rd);
	cr_assert_eq(rd.n_entries, 1, "the no-op of term 4");
	cr_assert_eq(rd.entries[0].type, RMQ_RAFT_ENTRY_NOOP);
	rmq_raft_advance(r);

	/* Node 2 holds entry 2 (term 2): a majority, but not of term 4. */
	struct rmq_raft_msg ack = {.type = RMQ_RAFT_MSG_APPEND_RESP, .from = 2, .to = 1, .term = 4,
				   .index = 2};
	rmq_raft_step(r, &ack);
	cr_assert_eq(rmq_raft_commit(r), 1, "entry 2 must not commit by counting replicas");
	ack.index = 3; /* now the no-op too */
	rmq_raft_step(r, &ack);
	cr_assert_eq(rmq_raft_commit(r), 3);
	rmq_raft_free(r);
}

/* Check-quorum: a leader cut off from the majority steps down; pre-vote:
 * the isolated node's term does not grow while it cannot win. */
Test(raft, an_isolated_leader_steps_down_and_prevote_keeps_the_term)
{
	struct cluster c;
	int l = cluster_elect(&c, 3);
	uint64_t term = rmq_raft_term(c.r[l]);
	isolate(&c, l, true);
	ticks(&c, 60);
	cr_assert_neq(rmq_raft_role(c.r[l]), RMQ_RAFT_LEADER, "stepped down");
	cr_assert_eq(rmq_raft_term(c.r[l]), term, "pre-vote: no term growth while isolated");
	int l2 = leader_of(&c);
	cr_assert_geq(l2, 0);
	cr_assert_neq(l2, l, "the majority elected another");
	/* Healed: the old leader follows, and does not disrupt. */
	uint64_t term2 = rmq_raft_term(c.r[l2]);
	isolate(&c, l, false);
	ticks(&c, 30);
	cr_assert_eq(leader_of(&c), l2);
	cr_assert_eq(rmq_raft_term(c.r[l2]), term2);
	cr_assert_eq(rmq_raft_leader(c.r[l]), (uint32_t)l2 + 1);
	cluster_free(&c);
}

/* A leader learning of a higher term steps down at once. */
Test(raft, a_leader_steps_down_on_a_higher_term)
{
	struct cluster c;
	int l = cluster_elect(&c, 3);
	struct rmq_raft_msg m = {.type = RMQ_RAFT_MSG_APPEND_RESP, .from = (uint32_t)((l + 1) % 3 + 1),
				 .to = (uint32_t)l + 1, .term = rmq_raft_term(c.r[l]) + 5,
				 .reject = true};
	rmq_raft_step(c.r[l], &m);
	cr_assert_eq(rmq_raft_role(c.r[l]), RMQ_RAFT_FOLLOWER);
	cr_assert_eq(rmq_raft_term(c.r[l]), m.term);
	settle(&c);
	cluster_free(&c);
}

Test(raft, a_bad_config_is_refused)
{
	struct rmq_raft_config cfg = config(3, 1);
	cfg.election_ticks = 0;
	cr_assert_null(rmq_raft_new(&cfg, NULL, NULL, 0));
	cfg = config(3, 1);
	cfg.conf.servers[2].id = 2; /* repeated */
	cr_assert_null(rmq_raft_new(&cfg, NULL, NULL, 0));
	cfg = config(3, 1);
	cfg.conf.servers[1].role = 0;
	cr_assert_null(rmq_raft_new(&cfg, NULL, NULL, 0));
	cfg = config(3, 1);
	struct rmq_raft_entry bad = {.term = 1, .index = 1, .type = RMQ_RAFT_ENTRY_CONF,
				     .len = 3, .data = (uint8_t *)"abc"};
	cr_assert_null(rmq_raft_new(&cfg, NULL, &bad, 1), "a CONF entry that does not decode");
	/* A first member of a new cluster starts with its configuration as
	 * entry 1, committed. */
	struct rmq_raft *b = rmq_raft_new(&cfg, NULL, NULL, 0);
	struct rmq_raft_ready rd;
	rmq_raft_get_ready(b, &rd);
	cr_assert_eq(rd.n_entries, 1);
	cr_assert_eq(rd.entries[0].type, RMQ_RAFT_ENTRY_CONF);
	cr_assert_eq(rd.hs.term, 1);
	cr_assert_eq(rd.n_committed, 1);
	rmq_raft_advance(b);
	cr_assert_eq(rmq_raft_conf(b, NULL)->n, 3);
	rmq_raft_free(b);
	/* A node that waits to be added: no configuration, never campaigns. */
	cfg = config(3, 4);
	cfg.conf.n = 0;
	struct rmq_raft *r = rmq_raft_new(&cfg, NULL, NULL, 0);
	cr_assert_not_null(r);
	for (int t = 0; t < 100; t++)
		rmq_raft_tick(r);
	cr_assert_eq(rmq_raft_role(r), RMQ_RAFT_FOLLOWER);
	cr_assert_eq(rmq_raft_term(r), 0);
	cr_assert_not(rmq_raft_has_ready(r));
	rmq_raft_free(r);
}

/* ---- membership (thesis chapter 4) ------------------------------------------- */

/* n nodes of which the first `members` are the voters; the others start
 * knowing no configuration, as a node that waits to be added. */
static int cluster_elect_joining(struct cluster *c, int n, int members)
{
	memset(c, 0, sizeof(*c));
	c->n = n;
	c->hs_before_vote_resp = true;
	for (int i = 0; i < n; i++) {
		struct rmq_raft_config cfg = config(members, i + 1);
		if (i >= members)
			cfg.conf.n = 0;
		c->r[i] = rmq_raft_new(&cfg, NULL, NULL, 0);
		cr_assert_not_null(c->r[i]);
	}
	ticks(c, 40);
	int l = leader_of(c);
	cr_assert(l >= 0 && l < members, "a leader among the voters");
	return l;
}

static uint32_t role_in(struct rmq_raft *r, uint32_t id)
{
	const struct rmq_raft_server *sv = rmq_raft_conf_find(rmq_raft_conf(r, NULL), id);
	return sv ? sv->role : 0;
}

Test(raft, a_configuration_encodes_and_decodes)
{
	struct rmq_raft_conf c = voters(3), d;
	c.servers[2].role = RMQ_RAFT_LEARNER;
	uint8_t buf[RMQ_RAFT_CONF_ENCODED_MAX];
	size_t len = rmq_raft_conf_encode(&c, buf);
	cr_assert_eq(rmq_raft_conf_decode(buf, len, &d), 0);
	cr_assert_eq(memcmp(&c, &d, sizeof(c)), 0);
	cr_assert_eq(rmq_raft_conf_decode(buf, len - 1, &d), RMQ_ECORRUPT, "truncated");
	buf[len] = 0;
	cr_assert_eq(rmq_raft_conf_decode(buf, len + 1, &d), RMQ_ECORRUPT, "a byte too many");
	buf[2] = 9; /* the first id after the second: unsorted */
	cr_assert_eq(rmq_raft_conf_decode(buf, len, &d), RMQ_ECORRUPT);
	buf[2] = 1;
	buf[6] = 7; /* role */
	cr_assert_eq(rmq_raft_conf_decode(buf, len, &d), RMQ_ECORRUPT);
	struct rmq_raft_conf empty = {0};
	len = rmq_raft_conf_encode(&empty, buf);
	cr_assert_eq(rmq_raft_conf_decode(buf, len, &d), 0);
	cr_assert_eq(d.n, 0);
}

/* AddPeer: the new server gets the log as a learner first, is promoted
 * once caught up, and from then on counts towards commits. */
Test(raft, a_new_voter_joins_as_a_learner_and_is_promoted)
{
	struct cluster c;
	int l = cluster_elect_joining(&c, 4, 3);
	for (int k = 0; k < 5; k++) {
		cr_assert_gt(rmq_raft_propose(c.r[l], "before", 6), 0);
		settle(&c);
	}
	cr_assert_eq(rmq_raft_add_peer(c.r[(l + 1) % 3], 4, "127.0.0.1:9004", RMQ_RAFT_VOTER),
		     RMQ_ESTATE, "only the leader changes the configuration");
	cr_assert_eq(rmq_raft_add_peer(c.r[l], 4, "", 9), -EINVAL);
	int64_t idx = rmq_raft_add_peer(c.r[l], 4, "127.0.0.1:9004", RMQ_RAFT_VOTER);
	cr_assert_gt(idx, 0);
	cr_assert_eq(role_in(c.r[l], 4), RMQ_RAFT_LEARNER, "in effect when appended");
	cr_assert_eq(rmq_raft_remove_peer(c.r[l], 2), -EBUSY, "one change at a time");
	ticks(&c, 5);
	uint64_t at;
	for (int i = 0; i < 4; i++) {
		cr_assert_eq(role_in(c.r[i], 4), RMQ_RAFT_VOTER, "node %d sees 4 a voter", i + 1);
		rmq_raft_conf(c.r[i], &at);
		cr_assert_gt(at, (uint64_t)idx, "the promotion is its own entry");
		cr_assert_str_eq(c.last_applied[i], "before", "node %d", i + 1);
	}
	cr_assert_eq(rmq_raft_add_peer(c.r[l], 4, "127.0.0.1:9004", RMQ_RAFT_VOTER), 0,
		     "the same again: a no-op");
	cr_assert_eq(rmq_raft_add_peer(c.r[l], 4, "127.0.0.1:9999", RMQ_RAFT_VOTER), -EINVAL,
		     "another address for a known id");
	/* Four voters: three make a majority, two do not. */
	int a = (l + 1) % 3, b = (l + 2) % 3;
	isolate(&c, a, true);
	cr_assert_gt(rmq_raft_propose(c.r[l], "three", 5), 0);
	settle(&c);
	cr_assert_str_eq(c.last_applied[l], "three");
	isolate(&c, b, true);
	cr_assert_gt(rmq_raft_propose(c.r[l], "two", 3), 0);
	settle(&c);
	cr_assert_str_eq(c.last_applied[l], "three", "two of four voters commit nothing");
	cluster_free(&c);
}

/* RemovePeer of the leader itself: it leads until the change commits
 * (without counting itself), then hands over and never campaigns again. */
Test(raft, a_leader_that_removes_itself_hands_over)
{
	struct cluster c;
	int l = cluster_elect(&c, 3);
	uint64_t term = rmq_raft_term(c.r[l]);
	cr_assert_gt(rmq_raft_remove_peer(c.r[l], (uint32_t)l + 1), 0);
	settle(&c);
	int n = leader_of(&c);
	cr_assert(n >= 0 && n != l, "a remaining voter leads at once (TIMEOUT_NOW)");
	cr_assert_gt(rmq_raft_term(c.r[n]), term);
	cr_assert_eq(rmq_raft_role(c.r[l]), RMQ_RAFT_FOLLOWER);
	cr_assert_eq(rmq_raft_remove_peer(c.r[n], (uint32_t)l + 1), 0,
		     "an id that is no member (any more): a no-op");
	isolate(&c, l, true);
	ticks(&c, 60);
	cr_assert_eq(rmq_raft_role(c.r[l]), RMQ_RAFT_FOLLOWER, "a removed node never campaigns");
	cr_assert_gt(rmq_raft_propose(c.r[n], "two voters", 10), 0);
	settle(&c);
	for (int i = 0; i < 3; i++)
		if (i != l)
			cr_assert_str_eq(c.last_applied[i], "two voters", "node %d", i + 1);
	int other = 3 - l - n;
	cr_assert_eq(rmq_raft_remove_peer(c.r[n], (uint32_t)other + 1) > 0, true);
	settle(&c);
	ticks(&c, 3);
	cr_assert_eq(rmq_raft_remove_peer(c.r[n], (uint32_t)n + 1), -EINVAL, "the last voter stays");
	cluster_free(&c);
}

/* A configuration in an uncommitted tail is undone when a new leader
 * cuts that tail. */
Test(raft, a_cut_configuration_is_undone)
{
	struct cluster c;
	int l = cluster_elect_joining(&c, 4, 3);
	isolate(&c, l, true);
	cr_assert_gt(rmq_raft_add_peer(c.r[l], 4, "127.0.0.1:9004", RMQ_RAFT_LEARNER), 0);
	cr_assert_eq(role_in(c.r[l], 4), RMQ_RAFT_LEARNER);
	ticks(&c, 40);
	int n = leader_of(&c);
	cr_assert(n >= 0 && n != l, "the others elect a new leader");
	cr_assert_gt(rmq_raft_propose(c.r[n], "new", 3), 0);
	settle(&c);
	isolate(&c, l, false);
	ticks(&c, 5);
	cr_assert_eq(role_in(c.r[l], 4), 0, "the old leader's uncommitted change is gone");
	cr_assert_str_eq(c.last_applied[l], "new");
	cluster_free(&c);
}

/* Section 3.10: the leader brings the successor up to date, then it
 * campaigns at once; voters within the old leader's lease still answer. */
Test(raft, leadership_transfer)
{
	struct cluster c;
	int l = cluster_elect(&c, 3);
	uint64_t term = rmq_raft_term(c.r[l]);
	int to = (l + 1) % 3;
	cr_assert_eq(rmq_raft_transfer_leader(c.r[(l + 2) % 3], (uint32_t)to + 1), RMQ_ESTATE,
		     "only the leader hands over");
	cr_assert_eq(rmq_raft_transfer_leader(c.r[l], 9), RMQ_ENOTFOUND);
	cr_assert_eq(rmq_raft_transfer_leader(c.r[l], (uint32_t)to + 1), 0);
	cr_assert_eq(rmq_raft_propose(c.r[l], "x", 1), RMQ_ESTATE, "no proposals while handing over");
	settle(&c);
	cr_assert_eq(leader_of(&c), to, "the successor leads, without waiting for a timeout");
	cr_assert_eq(rmq_raft_term(c.r[to]), term + 1);
	cr_assert_gt(rmq_raft_propose(c.r[to], "after", 5), 0);
	settle(&c);
	ticks(&c, 3);
	for (int i = 0; i < 3; i++)
		cr_assert_str_eq(c.last_applied[i], "after", "node %d", i + 1);
	cluster_free(&c);
}

/* Log compaction: a follower that was away while the leader compacted
 * its log gets the snapshot, then the entries after it. */
Test(raft, a_lagging_follower_catches_up_by_snapshot)
{
	struct cluster c;
	int l = cluster_elect(&c, 3);
	int f = (l + 1) % 3;
	isolate(&c, f, true);
	char buf[8];
	for (int k = 0; k < 10; k++) {
		snprintf(buf, sizeof(buf), "e%d", k);
		cr_assert_gt(rmq_raft_propose(c.r[l], buf, (uint32_t)strlen(buf)), 0);
		settle(&c);
	}
	ticks(&c, 3);
	uint64_t upto = rmq_raft_commit(c.r[l]);
	cr_assert_eq(rmq_raft_compact(c.r[l], upto + 1), RMQ_ERANGE, "only what is applied");
	cr_assert_eq(rmq_raft_compact(c.r[l], upto), 0);
	cr_assert_eq(rmq_raft_snapshot_index(c.r[l]), upto);
	cr_assert_null(rmq_raft_entry_at(c.r[l], upto));
	isolate(&c, f, false);
	ticks(&c, 10);
	cr_assert_eq(c.snapshots[f], 1, "the follower installed one snapshot");
	cr_assert_eq(rmq_raft_snapshot_index(c.r[f]), upto);
	cr_assert_gt(rmq_raft_propose(c.r[l], "later", 5), 0);
	settle(&c);
	ticks(&c, 3);
	for (int i = 0; i < 3; i++) {
		cr_assert_str_eq(c.last_applied[i], "later", "node %d", i + 1);
		cr_assert_eq(c.applied[i], rmq_raft_commit(c.r[l]));
	}
	cluster_free(&c);
}

/* A node added after the leader compacted its log gets the snapshot, and
 * with it the configuration it holds. */
Test(raft, a_snapshot_carries_the_configuration)
{
	struct cluster c;
	int l = cluster_elect_joining(&c, 4, 3);
	for (int k = 0; k < 6; k++) {
		cr_assert_gt(rmq_raft_propose(c.r[l], "x", 1), 0);
		settle(&c);
	}
	ticks(&c, 3);
	cr_assert_eq(rmq_raft_compact(c.r[l], rmq_raft_commit(c.r[l])), 0);
	cr_assert_gt(rmq_raft_add_peer(c.r[l], 4, "127.0.0.1:9004", RMQ_RAFT_VOTER), 0);
	ticks(&c, 10);
	cr_assert_eq(c.snapshots[3], 1, "node 4 installed the snapshot");
	const struct rmq_raft_conf *sc = rmq_raft_snapshot_conf(c.r[3]);
	cr_assert_eq(sc->n, 3, "the snapshot's configuration: the three first voters");
	cr_assert_eq(role_in(c.r[3], 4), RMQ_RAFT_VOTER, "and the log after it promoted node 4");
	cluster_free(&c);
}

/* A node restarts from its snapshot and the log after it. */
Test(raft, restart_from_a_snapshot)
{
	struct rmq_raft_config cfg = config(1, 1);
	cfg.snap_index = 5;
	cfg.snap_term = 2;
	struct rmq_raft_entry log[1] = {{.term = 3, .index = 6}};
	struct rmq_raft_hard_state hs = {.term = 3, .vote = 1, .commit = 6};
	struct rmq_raft *r = rmq_raft_new(&cfg, &hs, log, 1);
	cr_assert_not_null(r);
	cr_assert_eq(rmq_raft_last_index(r), 6);
	struct rmq_raft_ready rd;
	rmq_raft_get_ready(r, &rd);
	cr_assert_eq(rd.n_committed, 1, "entry 6 only: the snapshot is applied");
	cr_assert_eq(rd.committed[0].index, 6);
	rmq_raft_advance(r);
	rmq_raft_free(r);
	struct rmq_raft_entry gap[1] = {{.term = 3, .index = 7}};
	cr_assert_null(rmq_raft_new(&cfg, &hs, gap, 1), "the log must follow the snapshot");
}

/* ReadIndex: a read is confirmed by a majority's answer to a later round,
 * and never by a leader cut off from it. */
Test(raft, read_index_needs_a_majority_round)
{
	struct cluster c;
	int l = cluster_elect(&c, 3);
	cr_assert_eq(rmq_raft_read_index(c.r[(l + 1) % 3], 7), RMQ_ESTATE, "followers forward reads");
	cr_assert_eq(rmq_raft_read_index(c.r[l], 7), 0);
	uint64_t commit = rmq_raft_commit(c.r[l]);
	settle(&c);
	cr_assert_eq(c.read_ctx[l], 7, "the read was confirmed");
	cr_assert_eq(c.read_index[l], commit);
	struct rmq_raft_ready rd;

	/* Cut off: the read waits, then the leader steps down and drops it. */
	isolate(&c, l, true);
	cr_assert_eq(rmq_raft_read_index(c.r[l], 8), 0);
	for (int t = 0; t < 40; t++) {
		rmq_raft_tick(c.r[l]);
		while (rmq_raft_has_ready(c.r[l])) {
			rmq_raft_get_ready(c.r[l], &rd);
			cr_assert_eq(rd.n_reads, 0, "an isolated leader confirmed a read");
			rmq_raft_advance(c.r[l]);
		}
	}
	cr_assert_neq(rmq_raft_role(c.r[l]), RMQ_RAFT_LEADER);
	cluster_free(&c);
}

/* A refusal skips the whole run of the conflicting term (section 5.3). */
Test(raft, a_refusal_hints_past_the_conflicting_term)
{
	struct rmq_raft_config cfg = config(3, 2);
	struct rmq_raft_entry log[5] = {{.term = 1, .index = 1}, {.term = 1, .index = 2},
					{.term = 2, .index = 3}, {.term = 2, .index = 4},
					{.term = 2, .index = 5}};
	struct rmq_raft_hard_state hs = {.term = 2, .commit = 1};
	struct rmq_raft *r = rmq_raft_new(&cfg, &hs, log, 5);
	struct rmq_raft_ready rd;
	struct rmq_raft_msg a = {.type = RMQ_RAFT_MSG_APPEND, .from = 1, .to = 2, .term = 4,
				 .index = 5, .log_term = 3};
	cr_assert_eq(rmq_raft_step(r, &a), 0);
	rmq_raft_get_ready(r, &rd);
	cr_assert_eq(rd.n_msgs, 1);
	cr_assert(rd.msgs[0].reject);
	cr_assert_eq(rd.msgs[0].hint, 2, "probe from before term 2's entries, not from 4");
	rmq_raft_advance(r);
	rmq_raft_free(r);
}
