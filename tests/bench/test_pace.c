/* SPDX-License-Identifier: Apache-2.0 */
/*
 * test_pace.c - bench/pace.h: intended send times for a rate, senders
 * interleaved, no drift over long runs, the backlog when behind, and
 * latency measured from the intended time (a simulated stall shows up in
 * the percentiles, as it must without coordinated omission).
 */
#include "hist.h"
#include "pace.h"

#include <criterion/criterion.h>
#include <stdlib.h>

#define MS 1000000ULL
#define S 1000000000ULL

Test(pace, one_sender_even_period)
{
	struct rmq_pace p;
	/* 1000 msgs/s in batches of 10: one batch every 10 ms. */
	rmq_pace_init(&p, 5 * S, 1000, 10, 1, 0);
	for (uint64_t k = 0; k < 1000; k++)
		cr_assert_eq(rmq_pace_time(&p, k), 5 * S + k * 10 * MS, "k=%llu", (unsigned long long)k);
}

Test(pace, senders_interleave_into_the_total_rate)
{
	/* 4 senders share 1000 msgs/s, batches of 10: each sends every
	 * 40 ms, offset by 10 ms from the previous one, so together they
	 * send every 10 ms. */
	struct rmq_pace p[4];
	for (uint32_t i = 0; i < 4; i++)
		rmq_pace_init(&p[i], 0, 1000, 10, 4, i);
	for (uint64_t k = 0; k < 100; k++)
		for (uint32_t i = 0; i < 4; i++)
			cr_assert_eq(rmq_pace_time(&p[i], k), (k * 4 + i) * 10 * MS);
}

Test(pace, fractional_period_does_not_drift)
{
	/* 3 msgs/s, batch 1: 333333333.3 ns apart.  Rounding each step
	 * would drift; the exact ratio lands on whole seconds. */
	struct rmq_pace p;
	rmq_pace_init(&p, 0, 3, 1, 1, 0);
	cr_assert_eq(rmq_pace_time(&p, 1), 333333333);
	cr_assert_eq(rmq_pace_time(&p, 2), 666666666);
	cr_assert_eq(rmq_pace_time(&p, 3), 1 * S);
	cr_assert_eq(rmq_pace_time(&p, 3000000), 1000000 * S); /* 11.6 days */
	/* 7 senders at 1e6 msgs/s in batches of 3 never lose a nanosecond
	 * per sender either. */
	rmq_pace_init(&p, 0, 1000000, 3, 7, 0);
	cr_assert_eq(rmq_pace_time(&p, 1000000), 21 * S);
}

Test(pace, take_only_what_is_due)
{
	struct rmq_pace p;
	uint64_t t;
	rmq_pace_init(&p, 100 * MS, 100, 1, 1, 0); /* every 10 ms from 100 ms */
	cr_assert(!rmq_pace_take(&p, 99 * MS, &t), "not before t0");
	cr_assert_eq(rmq_pace_peek(&p), 100 * MS);
	cr_assert(rmq_pace_take(&p, 100 * MS, &t));
	cr_assert_eq(t, 100 * MS);
	cr_assert(!rmq_pace_take(&p, 109 * MS, &t));
	cr_assert_eq(rmq_pace_peek(&p), 110 * MS);
	cr_assert(rmq_pace_take(&p, 110 * MS, &t));
	cr_assert_eq(t, 110 * MS);
}

Test(pace, behind_schedule_sends_the_backlog_with_past_intended_times)
{
	struct rmq_pace p;
	uint64_t t, now = 205 * MS;
	rmq_pace_init(&p, 100 * MS, 100, 1, 1, 0); /* due at 100, 110, ..., 200 */
	cr_assert_eq(rmq_pace_backlog(&p, now), 11);
	for (uint64_t k = 0; k < 11; k++) {
		cr_assert(rmq_pace_take(&p, now, &t), "k=%llu", (unsigned long long)k);
		cr_assert_eq(t, 100 * MS + k * 10 * MS, "intended, not actual");
	}
	cr_assert(!rmq_pace_take(&p, now, &t));
	cr_assert_eq(rmq_pace_backlog(&p, now), 0);
	cr_assert_eq(rmq_pace_backlog(&p, 99 * MS), 0);
}

Test(pace, backlog_matches_counting)
{
	/* Against brute force, with periods that are not whole ns. */
	static const uint64_t rates[] = {3, 7, 1000, 12345, 999999};
	for (size_t r = 0; r < sizeof(rates) / sizeof(rates[0]); r++) {
		struct rmq_pace p;
		rmq_pace_init(&p, 1000, rates[r], 3, 5, 2);
		for (uint64_t now = 0; now < 5 * S; now += 7919 * 1013) {
			uint64_t due = 0;
			while (rmq_pace_time(&p, due) <= now)
				due++;
			cr_assert_eq(rmq_pace_backlog(&p, now), due, "rate %llu now %llu",
				     (unsigned long long)rates[r], (unsigned long long)now);
		}
	}
}

Test(pace, latency_from_intended_time)
{
	cr_assert_eq(rmq_pace_latency(100, 350), 250);
	cr_assert_eq(rmq_pace_latency(100, 100), 0);
	cr_assert_eq(rmq_pace_latency(350, 100), 0, "never negative");
}

/*
 * A server that answers at once, except for one 1-second stall, loaded at
 * 1000 requests/s through one request slot for 10 s.  Measured from the
 * intended times, the ~1000 requests that were due during the stall carry
 * it (waits of 1 s down to 0), so p95 is hundreds of ms; a closed-loop
 * measurement would have seen one slow request.
 */
Test(pace, stall_shows_in_percentiles)
{
	struct rmq_pace p;
	struct rmq_hist *open = malloc(sizeof(*open)), *closed = malloc(sizeof(*closed));
	cr_assert_not_null(open);
	cr_assert_not_null(closed);
	rmq_hist_reset(open);
	rmq_hist_reset(closed);
	rmq_pace_init(&p, 0, 1000, 1, 1, 0);

	const uint64_t service = 50000, stall_at = 3 * S, stall = 1 * S;
	uint64_t now = 0, intended;
	while (now < 10 * S) {
		if (!rmq_pace_take(&p, now, &intended)) {
			now = rmq_pace_peek(&p); /* idle until the next is due */
			continue;
		}
		uint64_t sent = now;
		uint64_t done = sent + service;
		if (sent <= stall_at && done > stall_at)
			done = stall_at + stall;
		rmq_hist_record(open, rmq_pace_latency(intended, done));
		rmq_hist_record(closed, done - sent);
		now = done; /* the single slot is busy until then */
	}
	cr_assert_geq(open->count, 9999);
	cr_assert_geq(rmq_hist_quantile(open, 0.95), 400 * MS, "the stall is charged to ~10%% of requests");
	cr_assert_geq(rmq_hist_quantile(open, 0.99), 800 * MS);
	cr_assert_leq(rmq_hist_quantile(closed, 0.99), 1 * MS, "what coordinated omission reports");
	cr_assert_geq(closed->max, stall - service, "closed loop sees just one slow request");
	free(open);
	free(closed);
}
