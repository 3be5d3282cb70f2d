/* SPDX-License-Identifier: Apache-2.0 */
/*
 * report.c - the human-readable summary lines every rmq-bench driver
 * prints (rmq's own and the peers'), so that their tables compare line for
 * line.
 */
#include "bench.h"
#include "hist.h"

#include <inttypes.h>
#include <stdio.h>

void bench_fmt_ns(char *buf, size_t len, uint64_t ns)
{
	if (ns < 1000)
		snprintf(buf, len, "%" PRIu64 " ns", ns);
	else if (ns < 1000000)
		snprintf(buf, len, "%.1f us", (double)ns / 1e3);
	else if (ns < 1000000000ULL)
		snprintf(buf, len, "%.2f ms", (double)ns / 1e6);
	else
		snprintf(buf, len, "%.2f s", (double)ns / 1e9);
}

void bench_print_section(const char *name, uint64_t msgs, uint64_t bytes,
			 const struct rmq_hist *h, double secs, const char *latency_kind)
{
	char l[5][32];

	bench_fmt_ns(l[0], 32, rmq_hist_quantile(h, 0.50));
	bench_fmt_ns(l[1], 32, rmq_hist_quantile(h, 0.90));
	bench_fmt_ns(l[2], 32, rmq_hist_quantile(h, 0.99));
	bench_fmt_ns(l[3], 32, rmq_hist_quantile(h, 0.999));
	bench_fmt_ns(l[4], 32, h->count ? h->max : 0);
	printf("  %-8s %12" PRIu64 " msgs %12.0f msgs/s %10.1f MB/s\n", name, msgs,
	       (double)msgs / secs, (double)bytes / secs / 1e6);
	if (h->count)
		printf("           %s latency: p50 %s  p90 %s  p99 %s  p99.9 %s  max %s\n", latency_kind,
		       l[0], l[1], l[2], l[3], l[4]);
	else
		printf("           no latency samples\n");
}
