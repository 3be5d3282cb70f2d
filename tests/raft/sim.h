/* SPDX-License-Identifier: Apache-2.0 */
/*
 * sim.h - a deterministic simulator for rmq's Raft core (src/raft/raft.h),
 * in the manner of TigerBeetle's VOPR and FoundationDB's simulation.
 *
 * One seed makes one world: 3 or 5 replicas, each a core (struct rmq_raft)
 * over a simulated durable store and a state machine, joined by a simulated
 * network.  Everything random comes from the seed through one PRNG, and
 * nothing reads a clock, an address or the environment, so a seed that
 * fails fails again, step for step.
 *
 *   time ─────────────────────────────────────────────────────────────────►
 *   │ fault period (fault_time units)          │ healed (liveness bound)   │
 *   │ drop, duplicate, reorder, partitions,    │ links restored, nodes up, │
 *   │ crashes (also mid-Ready), clock drift,   │ no drops: a leader and a  │
 *   │ client proposals, membership changes     │ fresh commit on every     │
 *   │                                          │ member                    │
 *
 * After every step (one tick, delivery, proposal, crash, restart or
 * partition change) it checks Election Safety, Log Matching, Leader
 * Completeness and State Machine Safety (Raft paper, Figure 3); at the end,
 * liveness.  docs/raft-simulation.md describes the model in full.
 */
#ifndef RMQ_TESTS_RAFT_SIM_H
#define RMQ_TESTS_RAFT_SIM_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>

/* A run's verdict: 0 passes, the others name what broke.  (A verdict, not
 * an error code: the simulator itself does not fail.) */
enum sim_verdict {
	SIM_PASS = 0,
	SIM_ELECTION_SAFETY,     /* two leaders in one term */
	SIM_LOG_MATCHING,        /* same index and term, different prefixes */
	SIM_LEADER_COMPLETENESS, /* a new leader lacks an applied entry */
	SIM_STATE_MACHINE_SAFETY, /* two different entries applied at one index */
	SIM_APPLY_ORDER,         /* committed entries handed out out of order */
	SIM_DURABILITY,          /* a message sent before its term or vote was durable */
	SIM_READ,                /* a ReadIndex read missed an earlier commit */
	SIM_MEMBERSHIP,          /* a change of more than one voter, or a leader not a voter */
	SIM_LIVENESS,            /* no leader or no commit after the faults */
	SIM_CORE_ERROR,          /* rmq_raft_new refused a durable state, or -ENOMEM */
};

const char *sim_verdict_name(enum sim_verdict v);

struct sim_opts {
	uint32_t n_nodes;            /* 3 or 5; 0: chosen by the seed */
	uint32_t max_append_entries; /* 0: 1..8 chosen by the seed */
	uint64_t fault_time;         /* time units of faults; 0: 10000 */
	/* Crashes per 10000 time units per world; 0: chosen by the seed
	 * (2..20).  A crash hits the leader half of the time. */
	uint32_t crash_rate;
	bool unsafe_commit_any_term; /* plant the bug of section 3.6.2 */
	/* A torn Ready keeps any prefix of its entries and, independently,
	 * its hard state or not.  Off (the default), storage is a write-ahead
	 * log: entries, then the hard state, so a hard state survives only
	 * with all its entries. */
	bool torn_any;
	bool no_liveness;            /* stop after the fault period */
	bool no_membership;          /* keep the first configuration (all nodes voters) */
	FILE *trace;                 /* every step printed here; NULL: none */
};

/* The planted-bug world (raft_sim --figure8, sim::planted_bug): the
 * current-term commit rule off, three nodes, one entry per APPEND, long
 * fault periods with frequent crashes: Figure 8 of the Raft paper becomes
 * likely. */
#define SIM_OPTS_FIGURE8                                                              \
	(struct sim_opts)                                                             \
	{                                                                             \
		.n_nodes = 3, .max_append_entries = 1, .crash_rate = 20, .fault_time = 20000, \
		.unsafe_commit_any_term = true, .no_liveness = true, .no_membership = true \
	}

struct sim_result {
	uint64_t trace_hash; /* FNV-1a over every step: equal runs, equal hash */
	uint64_t steps;
	uint64_t time;       /* time units simulated */
	uint64_t max_term;
	uint64_t applied;    /* highest index applied anywhere */
	uint32_t n_nodes;
	uint32_t crashes;
	uint32_t torn;       /* crashes in the middle of a Ready */
	uint32_t leaders;    /* terms that had a leader */
	uint32_t conf_changes; /* AddPeer and RemovePeer calls that proposed a change */
};

/*
 * Runs the world of seed with o (NULL: all defaults).  Returns SIM_PASS or
 * the first invariant broken; then why (if not NULL) holds one line naming
 * the seed, the step and the details.  res (may be NULL) is filled either
 * way.
 */
enum sim_verdict sim_run(uint64_t seed, const struct sim_opts *o, struct sim_result *res,
			 char *why, size_t whylen);

#endif /* RMQ_TESTS_RAFT_SIM_H */
