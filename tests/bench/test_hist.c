/* SPDX-License-Identifier: Apache-2.0 */
/*
 * test_hist.c - bench/hist.c: percentiles of known distributions, the
 * histogram's precision bound, merging, and the edges (empty, one value,
 * zero, huge values, q = 0 and 1).
 */
#include "hist.h"

#include <criterion/criterion.h>
#include <stdlib.h>

static struct rmq_hist *h_new(void)
{
	struct rmq_hist *h = malloc(sizeof(*h));
	cr_assert_not_null(h);
	rmq_hist_reset(h);
	return h;
}

/* v is reported within [v, v * (1 + 1/RMQ_HIST_SUB)]. */
static void assert_close(uint64_t got, uint64_t want, const char *what)
{
	cr_assert_geq(got, want, "%s: %llu below %llu", what, (unsigned long long)got,
		      (unsigned long long)want);
	cr_assert_leq(got, want + want / RMQ_HIST_SUB + 1, "%s: %llu too far above %llu", what,
		      (unsigned long long)got, (unsigned long long)want);
}

Test(hist, empty_reports_zero)
{
	struct rmq_hist *h = h_new();
	cr_assert_eq(rmq_hist_quantile(h, 0.0), 0);
	cr_assert_eq(rmq_hist_quantile(h, 0.5), 0);
	cr_assert_eq(rmq_hist_quantile(h, 1.0), 0);
	cr_assert_eq(h->count, 0);
	free(h);
}

Test(hist, one_value_is_every_quantile)
{
	struct rmq_hist *h = h_new();
	rmq_hist_record(h, 123456789);
	/* The sub-bucket's upper edge is capped at the maximum seen. */
	cr_assert_eq(rmq_hist_quantile(h, 0.0), 123456789);
	cr_assert_eq(rmq_hist_quantile(h, 0.5), 123456789);
	cr_assert_eq(rmq_hist_quantile(h, 0.999), 123456789);
	cr_assert_eq(rmq_hist_quantile(h, 1.0), 123456789);
	cr_assert_eq(h->min, 123456789);
	cr_assert_eq(h->max, 123456789);
	free(h);
}

Test(hist, small_values_are_exact)
{
	/* Below 2 * RMQ_HIST_SUB every value has its own slot. */
	struct rmq_hist *h = h_new();
	for (uint64_t v = 1; v <= 100; v++)
		rmq_hist_record(h, v);
	cr_assert_eq(rmq_hist_quantile(h, 0.50), 50);
	cr_assert_eq(rmq_hist_quantile(h, 0.90), 90);
	cr_assert_eq(rmq_hist_quantile(h, 0.99), 99);
	cr_assert_eq(rmq_hist_quantile(h, 1.0), 100);
	cr_assert_eq(rmq_hist_quantile(h, 0.0), 1);
	free(h);
}

Test(hist, zero_is_a_value)
{
	struct rmq_hist *h = h_new();
	rmq_hist_record(h, 0);
	rmq_hist_record(h, 0);
	rmq_hist_record(h, 10);
	cr_assert_eq(rmq_hist_quantile(h, 0.5), 0);
	cr_assert_eq(rmq_hist_quantile(h, 1.0), 10);
	cr_assert_eq(h->min, 0);
	free(h);
}

Test(hist, uniform_million_within_precision)
{
	struct rmq_hist *h = h_new();
	for (uint64_t v = 1; v <= 1000000; v++)
		rmq_hist_record(h, v * 1000); /* 1 us .. 1 s */
	assert_close(rmq_hist_quantile(h, 0.50), 500000ULL * 1000, "p50");
	assert_close(rmq_hist_quantile(h, 0.90), 900000ULL * 1000, "p90");
	assert_close(rmq_hist_quantile(h, 0.99), 990000ULL * 1000, "p99");
	assert_close(rmq_hist_quantile(h, 0.999), 999000ULL * 1000, "p99.9");
	cr_assert_eq(rmq_hist_quantile(h, 1.0), 1000000ULL * 1000, "max is exact");
	cr_assert_eq(h->count, 1000000);
	cr_assert_float_eq(h->sum / (double)h->count, 500000.5 * 1000, 1.0, "mean");
	free(h);
}

Test(hist, bimodal_tail)
{
	/* 99% at 1 ms, 1% at 100 ms: p99 is the fast mode, p99.1 the slow. */
	struct rmq_hist *h = h_new();
	for (int i = 0; i < 990; i++)
		rmq_hist_record(h, 1000000);
	for (int i = 0; i < 10; i++)
		rmq_hist_record(h, 100000000);
	assert_close(rmq_hist_quantile(h, 0.50), 1000000, "p50");
	assert_close(rmq_hist_quantile(h, 0.99), 1000000, "p99");
	assert_close(rmq_hist_quantile(h, 0.991), 100000000, "p99.1");
	assert_close(rmq_hist_quantile(h, 0.999), 100000000, "p99.9");
	cr_assert_eq(rmq_hist_quantile(h, 1.0), 100000000);
	free(h);
}

Test(hist, every_power_of_two_keeps_its_precision)
{
	for (unsigned k = 0; k < 62; k++) {
		struct rmq_hist *h = h_new();
		uint64_t v = (1ULL << k) + (k > 3 ? (1ULL << (k - 3)) : 0);
		rmq_hist_record(h, v);
		rmq_hist_record(h, v * 2);
		assert_close(rmq_hist_quantile(h, 0.5), v, "2^k");
		free(h);
	}
}

Test(hist, huge_values)
{
	struct rmq_hist *h = h_new();
	rmq_hist_record(h, UINT64_MAX / 2);
	rmq_hist_record(h, 1);
	cr_assert_eq(rmq_hist_quantile(h, 1.0), UINT64_MAX / 2);
	cr_assert_eq(rmq_hist_quantile(h, 0.5), 1);
	free(h);
}

Test(hist, merge_equals_recording_together)
{
	struct rmq_hist *a = h_new(), *b = h_new(), *all = h_new();
	uint64_t x = 88172645463325252ULL;
	for (int i = 0; i < 100000; i++) {
		x ^= x << 13;
		x ^= x >> 7;
		x ^= x << 17;
		uint64_t v = x % 50000000;
		rmq_hist_record(i % 3 ? a : b, v);
		rmq_hist_record(all, v);
	}
	rmq_hist_merge(a, b);
	cr_assert_eq(a->count, all->count);
	cr_assert_eq(a->min, all->min);
	cr_assert_eq(a->max, all->max);
	static const double qs[] = {0.0, 0.1, 0.5, 0.9, 0.99, 0.999, 0.9999, 1.0};
	for (size_t i = 0; i < sizeof(qs) / sizeof(qs[0]); i++)
		cr_assert_eq(rmq_hist_quantile(a, qs[i]), rmq_hist_quantile(all, qs[i]), "q=%g", qs[i]);
	/* Merging an empty histogram changes nothing. */
	struct rmq_hist *empty = h_new();
	rmq_hist_merge(a, empty);
	cr_assert_eq(a->min, all->min);
	cr_assert_eq(rmq_hist_quantile(a, 0.5), rmq_hist_quantile(all, 0.5));
	free(a);
	free(b);
	free(all);
	free(empty);
}
