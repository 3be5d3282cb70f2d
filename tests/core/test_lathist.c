/* SPDX-License-Identifier: Apache-2.0 */
#include "core/lathist.h"

#include <criterion/criterion.h>
#include <stdint.h>

/* Bucket i holds exactly the values in (bound(i-1), bound(i)]: checked for
 * every value up to 2^16 and around every bound above. */
static void check_value(uint64_t v)
{
	unsigned b = rmq_lat_bucket(v);
	cr_assert_lt(b, RMQ_LAT_BUCKETS);
	cr_assert_geq(rmq_lat_bound(b), v, "value %lu above its bucket %u's bound", v, b);
	if (b > 0)
		cr_assert_lt(rmq_lat_bound(b - 1), v, "value %lu belongs below bucket %u", v, b);
}

Test(lathist, buckets_and_bounds_agree)
{
	for (uint64_t v = 0; v < (1u << 16); v++)
		check_value(v);
	for (unsigned i = 0; i + 1 < RMQ_LAT_BUCKETS; i++) {
		uint64_t b = rmq_lat_bound(i);
		check_value(b);
		check_value(b + 1);
		if (b > 0)
			check_value(b - 1);
	}
}

Test(lathist, bounds_grow_by_at_most_a_quarter)
{
	for (unsigned i = 0; i < 4; i++)
		cr_assert_eq(rmq_lat_bound(i), i, "0..3 us are exact");
	for (unsigned i = 4; i + 1 < RMQ_LAT_BUCKETS; i++) {
		uint64_t lo = rmq_lat_bound(i - 1) + 1, hi = rmq_lat_bound(i);
		cr_assert_gt(hi + 1, lo);
		cr_assert_leq((hi + 1 - lo) * 4, lo, "bucket %u [%lu, %lu] wider than 1/4", i, lo,
			      hi);
	}
	cr_assert_eq(rmq_lat_bound(RMQ_LAT_BUCKETS - 2), (1ULL << RMQ_LAT_TOP_BIT) - 1);
	cr_assert_eq(rmq_lat_bound(RMQ_LAT_BUCKETS - 1), UINT64_MAX, "the last is +Inf");
	cr_assert_eq(rmq_lat_bucket(1ULL << RMQ_LAT_TOP_BIT), RMQ_LAT_BUCKETS - 1);
	cr_assert_eq(rmq_lat_bucket(UINT64_MAX), RMQ_LAT_BUCKETS - 1);
}

Test(lathist, record_counts_sums_and_keeps_the_max)
{
	struct rmq_lat_hist h = {0};
	rmq_lat_record(&h, 5);
	rmq_lat_record(&h, 5);
	rmq_lat_record(&h, 1000);
	rmq_lat_since(&h, 2000000, 2999999); /* 999.999 us: 999 */
	rmq_lat_since(&h, 10, 5);            /* a clock step back: 0 */
	cr_assert_eq(h.count, 5);
	cr_assert_eq(h.sum_us, 5 + 5 + 1000 + 999);
	cr_assert_eq(h.max_us, 1000);
	cr_assert_eq(h.n[rmq_lat_bucket(5)], 2);
	cr_assert_eq(h.n[0], 1);
	cr_assert_eq(h.n[rmq_lat_bucket(1000)], rmq_lat_bucket(999) == rmq_lat_bucket(1000) ? 2 : 1);
}
