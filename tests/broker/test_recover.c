/* SPDX-License-Identifier: Apache-2.0 */
/*
 * test_recover.c - a new leader's recovery (broker/recover.c): which
 * replicas it must hear from, and when it serves or hands its leadership
 * to a replica that holds more.
 *
 * The last tests put a real follower log behind the answers: the storage
 * tests' batch sequence 0..119 (epochs 0, 1 and 2), probed as lead.c
 * probes during a recovery (no leader end, so nothing is cut).
 */
#include "../storage/storage_util.h"

#include "broker/errcode.h"
#include "broker/follow.h"
#include "broker/recover.h"

#include <criterion/criterion.h>
#include <stdlib.h>

#define H(b, k, e) ((struct rmq_recover_heard){.broker = (b), .kind = (k), .end = (e), .running = true})

static enum rmq_recover_verdict decide(uint32_t n, uint64_t own, const struct rmq_recover_heard *h,
				       uint32_t nh, uint32_t *target, uint64_t *needed)
{
	return rmq_recover_decide(n, own, h, nh, target, needed);
}

Test(recover, a_majority_counts_this_replica)
{
	/* ceil(n / 2) replicas meet every majority of n: this one and
	 * ceil(n / 2) - 1 followers. */
	cr_assert_eq(rmq_recover_quorum(1), 0);
	cr_assert_eq(rmq_recover_quorum(2), 0);
	cr_assert_eq(rmq_recover_quorum(3), 1);
	cr_assert_eq(rmq_recover_quorum(4), 1);
	cr_assert_eq(rmq_recover_quorum(5), 2);
	cr_assert_eq(rmq_recover_quorum(8), 3);
}

Test(recover, two_replicas_serve_at_once)
{
	/* acks MAJORITY of 2 is both: the new leader has every such record. */
	uint32_t t;
	uint64_t need;
	cr_assert_eq(decide(2, 100, NULL, 0, &t, &need), RMQ_RECOVER_DONE);
	cr_assert_eq(need, 100);
}

Test(recover, waits_for_a_majority)
{
	uint32_t t;
	uint64_t need;
	cr_assert_eq(decide(3, 100, NULL, 0, &t, &need), RMQ_RECOVER_WAIT);
	/* A broker the metadata does not name running is not counted. */
	struct rmq_recover_heard h[2] = {H(2, RMQ_RECOVER_TAIL, 120)};
	h[0].running = false;
	cr_assert_eq(decide(3, 100, h, 1, &t, &need), RMQ_RECOVER_WAIT);
	h[1] = H(3, RMQ_RECOVER_PREFIX, 90);
	cr_assert_eq(decide(3, 100, h, 2, &t, &need), RMQ_RECOVER_DONE);
	/* Five replicas: two followers. */
	struct rmq_recover_heard f[2] = {H(2, RMQ_RECOVER_PREFIX, 100), H(3, RMQ_RECOVER_PREFIX, 100)};
	cr_assert_eq(decide(5, 100, f, 1, &t, &need), RMQ_RECOVER_WAIT);
	cr_assert_eq(decide(5, 100, f, 2, &t, &need), RMQ_RECOVER_DONE);
}

/* Finding 2: the follower that has the records acknowledged with the old
 * leader is the one heard. */
Test(recover, a_tail_the_majority_may_hold_is_handed_over)
{
	uint32_t t;
	uint64_t need;
	struct rmq_recover_heard h[1] = {H(3, RMQ_RECOVER_TAIL, 103)};
	cr_assert_eq(decide(3, 100, h, 1, &t, &need), RMQ_RECOVER_HAND_OVER);
	cr_assert_eq(t, 3);
	cr_assert_eq(need, 103);
}

Test(recover, a_tail_one_replica_holds_alone_is_not)
{
	/* Everyone heard: a record a majority holds is on two of three;
	 * the old leader's own tail (acks LEADER) is not. */
	uint32_t t;
	uint64_t need;
	struct rmq_recover_heard h[2] = {H(1, RMQ_RECOVER_TAIL, 130), H(3, RMQ_RECOVER_PREFIX, 100)};
	cr_assert_eq(decide(3, 100, h, 2, &t, &need), RMQ_RECOVER_DONE);
	cr_assert_eq(need, 100);
	/* Both followers past this log: the second longest end is held by
	 * two; the longest holder takes it (its own recovery then finds
	 * nothing more). */
	h[1] = H(3, RMQ_RECOVER_TAIL, 110);
	cr_assert_eq(decide(3, 100, h, 2, &t, &need), RMQ_RECOVER_HAND_OVER);
	cr_assert_eq(t, 1);
	cr_assert_eq(need, 110);
}

Test(recover, a_newer_log_wins_and_an_older_one_holds_nothing)
{
	uint32_t t;
	uint64_t need;
	struct rmq_recover_heard h[2] = {H(2, RMQ_RECOVER_OLDER, 500), H(3, RMQ_RECOVER_TAIL, 120)};
	h[0].epoch = 1;
	/* An older epoch where this log ends: nothing past the point where
	 * they part was held by a majority (rule 9). */
	cr_assert_eq(decide(3, 100, h, 1, &t, &need), RMQ_RECOVER_DONE);
	h[0].kind = RMQ_RECOVER_NEWER;
	h[0].epoch = 7;
	cr_assert_eq(decide(3, 100, h, 2, &t, &need), RMQ_RECOVER_HAND_OVER);
	cr_assert_eq(t, 2);
}

/* ---- on a real follower log ---------------------------------------------------------- */

#define N 120

static struct su_env env;
static struct su_batches m;

static void setup(void)
{
	su_env_init(&env);
	cr_assert_eq(su_open(&env), 0);
	m = (struct su_batches){0};
	su_append_seq(&env, 0, N, 2000, true, 10, &m);
	su_wait_idle(&env);
}

static void teardown(void)
{
	su_batches_free(&m);
	su_env_fini(&env);
}

static uint64_t end_of(size_t i)
{
	return rmq_batch_last_offset(&m.v[i].hdr) + 1;
}

/* The follower's answer to a recovery probe from a leader whose log is
 * the model's batches [0, upto), in epoch 3 (what lead.c sends: no leader
 * end), classified as recover.c does. */
static struct rmq_recover_heard probe(size_t upto)
{
	struct rmq_follow_req req = {.leader_epoch = 3,
				     .prev_end = end_of(upto - 1),
				     .prev_epoch = m.v[upto - 1].hdr.leader_epoch};
	struct rmq_follow_plan p;
	rmq_follow_plan(env.log, 3, &req, &p);
	cr_assert_eq(p.code, EC_OK, "%s", p.why);
	cr_assert_eq(p.truncate_to, UINT64_MAX, "a recovery probe cuts nothing");
	uint64_t end = rmq_log_end_offset(env.log);
	cr_assert(!p.diverging);
	return H(2, end > req.prev_end ? RMQ_RECOVER_TAIL : RMQ_RECOVER_PREFIX, end);
}

Test(recover, a_follower_log_with_more_is_kept_and_taken, .init = setup, .fini = teardown,
     .timeout = 60)
{
	/* The new leader holds batches 0..99; the follower all 120. */
	struct rmq_recover_heard h = probe(100);
	cr_assert_eq(h.kind, RMQ_RECOVER_TAIL);
	cr_assert_eq(rmq_log_end_offset(env.log), end_of(N - 1), "the tail is still there");
	uint32_t t;
	uint64_t need;
	cr_assert_eq(decide(3, end_of(99), &h, 1, &t, &need), RMQ_RECOVER_HAND_OVER);
	cr_assert_eq(t, 2);
	cr_assert_eq(need, end_of(N - 1));
	/* A leader with all of it serves. */
	h = probe(N);
	cr_assert_eq(h.kind, RMQ_RECOVER_PREFIX);
	cr_assert_eq(decide(3, end_of(N - 1), &h, 1, &t, &need), RMQ_RECOVER_DONE);
}
