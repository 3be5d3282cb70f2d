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

static void latency_json(FILE *f, const struct rmq_hist *h)
{
	fprintf(f,
		"{\"count\":%" PRIu64 ",\"mean\":%.1f,\"p50\":%.1f,\"p90\":%.1f,\"p99\":%.1f,"
		"\"p999\":%.1f,\"max\":%.1f}",
		h->count, h->count ? h->sum / (double)h->count / 1e3 : 0.0,
		(double)rmq_hist_quantile(h, 0.50) / 1e3, (double)rmq_hist_quantile(h, 0.90) / 1e3,
		(double)rmq_hist_quantile(h, 0.99) / 1e3, (double)rmq_hist_quantile(h, 0.999) / 1e3,
		(double)(h->count ? h->max : 0) / 1e3);
}

void bench_json_results(FILE *f, uint64_t msgs, uint64_t bytes, const struct rmq_hist *h,
			const char *kind, uint64_t produce_msgs, uint64_t produce_bytes,
			const struct rmq_hist *produce_hist, double secs)
{
	fprintf(f,
		",\"messages\":%" PRIu64 ",\"bytes\":%" PRIu64 ",\"msgs_per_s\":%.1f,"
		"\"mb_per_s\":%.3f,\"latency_kind\":\"%s\",\"latency_us\":",
		msgs, bytes, (double)msgs / secs, (double)bytes / secs / 1e6, kind);
	latency_json(f, h);
	if (produce_hist) {
		fprintf(f,
			",\"produce\":{\"messages\":%" PRIu64 ",\"bytes\":%" PRIu64
			",\"msgs_per_s\":%.1f,\"mb_per_s\":%.3f,\"latency_kind\":\"ack\","
			"\"latency_us\":",
			produce_msgs, produce_bytes, (double)produce_msgs / secs,
			(double)produce_bytes / secs / 1e6);
		latency_json(f, produce_hist);
		fputc('}', f);
	}
}
