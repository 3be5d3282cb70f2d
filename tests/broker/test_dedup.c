/* SPDX-License-Identifier: Apache-2.0 */
#include "broker/dedup.h"

#include <criterion/criterion.h>
#include <string.h>

static struct rmq_dedup_result result(uint64_t off, uint32_t n)
{
	struct rmq_dedup_result r = {off, n, 1000, 2000};
	return r;
}

Test(dedup, sequences_new_duplicate_in_flight_out_of_order)
{
	struct rmq_dedup *d = rmq_dedup_new();
	struct rmq_dedup_result res, r;
	struct rmq_dedup_ticket t, t2;

	cr_assert_eq(rmq_dedup_seq(d, 7, 0, 0, 3, &res, &t), RMQ_DEDUP_NEW);
	/* A retry before the first is acknowledged must wait. */
	cr_assert_eq(rmq_dedup_seq(d, 7, 0, 0, 3, &res, &t2), RMQ_DEDUP_IN_FLIGHT);
	r = result(100, 3);
	rmq_dedup_done(d, &t, true, &r);
	cr_assert_eq(rmq_dedup_seq(d, 7, 0, 0, 3, &res, &t2), RMQ_DEDUP_DUPLICATE);
	cr_assert_eq(res.base_offset, 100);
	/* A gap, and a sequence from the future, are out of order. */
	cr_assert_eq(rmq_dedup_seq(d, 7, 0, 4, 1, &res, &t2), RMQ_DEDUP_OUT_OF_ORDER);
	cr_assert_eq(rmq_dedup_seq(d, 7, 0, 3, 2, &res, &t2), RMQ_DEDUP_NEW);
	r = result(103, 2);
	rmq_dedup_done(d, &t2, true, &r);
	/* An older epoch is fenced; a newer one starts over. */
	cr_assert_eq(rmq_dedup_seq(d, 7, 0, 5, 1, &res, &t2), RMQ_DEDUP_NEW);
	rmq_dedup_done(d, &t2, false, NULL);
	cr_assert_eq(rmq_dedup_seq(d, 7, 1, 0, 1, &res, &t2), RMQ_DEDUP_NEW);
	cr_assert_eq(rmq_dedup_seq(d, 7, 0, 5, 1, &res, &t), RMQ_DEDUP_FENCED);
	rmq_dedup_free(d);
}

Test(dedup, failed_append_lets_the_retry_through)
{
	struct rmq_dedup *d = rmq_dedup_new();
	struct rmq_dedup_result res;
	struct rmq_dedup_ticket t;

	cr_assert_eq(rmq_dedup_seq(d, 9, 0, 10, 5, &res, &t), RMQ_DEDUP_NEW);
	rmq_dedup_done(d, &t, false, NULL);
	cr_assert_eq(rmq_dedup_seq(d, 9, 0, 10, 5, &res, &t), RMQ_DEDUP_NEW);
	rmq_dedup_free(d);
}

Test(dedup, sequences_wrap_and_replay)
{
	struct rmq_dedup *d = rmq_dedup_new();
	struct rmq_dedup_result res;
	struct rmq_dedup_ticket t;

	rmq_dedup_replay(d, 3, 2, INT32_MAX - 1, 2, 500);
	cr_assert_eq(rmq_dedup_seq(d, 3, 2, INT32_MAX - 1, 2, &res, &t), RMQ_DEDUP_DUPLICATE);
	cr_assert_eq(res.base_offset, 500);
	cr_assert_eq(rmq_dedup_seq(d, 3, 2, 0, 1, &res, &t), RMQ_DEDUP_NEW, "wraps to 0");
	rmq_dedup_free(d);
}

/* A follower replays what it appends and forgets what it cuts: a retry
 * of a batch still stored is a duplicate on the new leader, one of a batch
 * cut away appends again, and a producer all of whose batches were cut
 * goes on from the sequence it sends. */
Test(dedup, truncation_forgets_the_batches_cut)
{
	struct rmq_dedup *d = rmq_dedup_new();
	struct rmq_dedup_result res;
	struct rmq_dedup_ticket t;

	rmq_dedup_replay(d, 5, 0, 0, 10, 100);
	rmq_dedup_replay(d, 5, 0, 10, 10, 110);
	rmq_dedup_replay(d, 5, 0, 20, 10, 120);
	rmq_dedup_replay(d, 6, 0, 0, 4, 130);
	rmq_dedup_truncate(d, 120);
	cr_assert_eq(rmq_dedup_seq(d, 5, 0, 10, 10, &res, &t), RMQ_DEDUP_DUPLICATE);
	cr_assert_eq(res.base_offset, 110);
	cr_assert_eq(rmq_dedup_seq(d, 5, 0, 30, 10, &res, &t), RMQ_DEDUP_OUT_OF_ORDER,
		     "expects the sequence after its last batch kept");
	cr_assert_eq(rmq_dedup_seq(d, 5, 0, 20, 10, &res, &t), RMQ_DEDUP_NEW, "the cut batch again");
	rmq_dedup_done(d, &t, false, NULL);
	cr_assert_eq(rmq_dedup_seq(d, 6, 0, 9, 1, &res, &t), RMQ_DEDUP_NEW,
		     "nothing of producer 6 is left: any sequence");
	cr_assert_eq(rmq_dedup_seq(d, 6, 0, 11, 1, &res, &t), RMQ_DEDUP_OUT_OF_ORDER,
		     "then in order again");
	/* A pending append stays for its ticket. */
	cr_assert_eq(rmq_dedup_seq(d, 5, 0, 20, 10, &res, &t), RMQ_DEDUP_NEW);
	rmq_dedup_truncate(d, 0);
	cr_assert_eq(rmq_dedup_seq(d, 5, 0, 20, 10, &res, &t), RMQ_DEDUP_IN_FLIGHT);
	rmq_dedup_free(d);
}

Test(dedup, idempotency_keys)
{
	struct rmq_dedup *d = rmq_dedup_new();
	struct rmq_dedup_result res, r = result(42, 1);
	struct rmq_dedup_ticket t;

	cr_assert_eq(rmq_dedup_key(d, "k1", 2, 1000, &res, &t), RMQ_DEDUP_NEW);
	cr_assert_eq(rmq_dedup_key(d, "k1", 2, 1001, &res, &t), RMQ_DEDUP_IN_FLIGHT);
	struct rmq_dedup_ticket t1;
	cr_assert_eq(rmq_dedup_key(d, "k2", 2, 1000, &res, &t1), RMQ_DEDUP_NEW);
	rmq_dedup_done(d, &t1, true, &r);
	cr_assert_eq(rmq_dedup_key(d, "k2", 2, 1000 + 1000, &res, &t), RMQ_DEDUP_DUPLICATE);
	cr_assert_eq(res.base_offset, 42);
	/* After the window the key is new again. */
	cr_assert_eq(rmq_dedup_key(d, "k2", 2, 1000 + RMQ_DEDUP_KEY_TTL_MS + 1, &res, &t), RMQ_DEDUP_NEW);
	rmq_dedup_free(d);
}

Test(dedup, many_producers_evict_the_least_recent)
{
	struct rmq_dedup *d = rmq_dedup_new();
	struct rmq_dedup_result res, r = result(1, 1);
	struct rmq_dedup_ticket t;

	for (int64_t pid = 1; pid <= 3 * RMQ_DEDUP_PRODUCERS; pid++) {
		cr_assert_eq(rmq_dedup_seq(d, pid, 0, 0, 1, &res, &t), RMQ_DEDUP_NEW);
		rmq_dedup_done(d, &t, true, &r);
	}
	/* The newest are remembered. */
	cr_assert_eq(rmq_dedup_seq(d, 3 * RMQ_DEDUP_PRODUCERS, 0, 0, 1, &res, &t), RMQ_DEDUP_DUPLICATE);
	rmq_dedup_free(d);
}
