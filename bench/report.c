/* SPDX-License-Identifier: Apache-2.0 */
/*
 * report.c - what every rmq-bench driver shows (rmq's own and the
 * peers'), so that their output compares line for line: the summary
 * lines, the JSON summary's header and results, and the progress line.
 */
#include "bench.h"
#include "hist.h"

#include "core/shard.h" /* rmq_now_ns */

#include <inttypes.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

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

static void print_section(const char *name, uint64_t msgs, uint64_t bytes,
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

void bench_print_sections(const struct bench_section *main_s, const struct bench_section *extra,
			  double secs, uint64_t warmup_ns, bool produce_mode)
{
	printf("\n  measured %.2f s after %.2f s of warm-up\n", secs, (double)warmup_ns / 1e9);
	if (extra)
		print_section(extra->name, extra->msgs, extra->bytes, extra->hist, secs, "ack");
	print_section(main_s->name, main_s->msgs, main_s->bytes, main_s->hist, secs,
		      produce_mode ? "ack" : "delivery");
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

void bench_json_string(FILE *f, const char *s)
{
	fputc('"', f);
	for (; *s; s++) {
		unsigned char ch = (unsigned char)*s;
		if (ch == '"' || ch == '\\')
			fprintf(f, "\\%c", ch);
		else if (ch < 0x20)
			fprintf(f, "\\u%04x", ch);
		else
			fputc(ch, f);
	}
	fputc('"', f);
}

void bench_json_header(FILE *f, const struct bench_opts *o, const char *system,
		       unsigned partitions, const char *produce_rpc, const char *consume_rpc,
		       int readers, double secs)
{
	fprintf(f, "{\"mode\":\"%s\"", o->mode_name);
	if (system)
		fprintf(f, ",\"system\":\"%s\"", system);
	fprintf(f, ",\"target\":");
	bench_json_string(f, o->target);
	fprintf(f, ",\"topic\":");
	bench_json_string(f, o->topic);
	fprintf(f,
		",\"partitions\":%u,\"threads\":%" PRIu64 ",\"connections\":%" PRIu64
		",\"streams\":%" PRIu64 ",\"msg_bytes\":%" PRIu64 ",\"batch\":%" PRIu64
		",\"acks\":\"%s\",\"compression\":\"%s\",\"produce_rpc\":\"%s\","
		"\"consume_rpc\":\"%s\"",
		partitions, o->threads, o->connections, o->streams, o->msg_bytes, o->batch,
		o->acks_name, o->compression_name, produce_rpc, consume_rpc);
	if (readers >= 0)
		fprintf(f, ",\"readers\":%d", readers);
	fprintf(f, ",\"rate\":%" PRIu64 ",\"warmup_s\":%.3f,\"duration_s\":%.3f", o->rate,
		(double)o->warmup_ns / 1e9, secs);
}

void bench_catch_signals(void (*on_stop)(int))
{
	struct sigaction sa;
	memset(&sa, 0, sizeof(sa));
	sa.sa_handler = on_stop;
	sigemptyset(&sa.sa_mask);
	sigaction(SIGINT, &sa, NULL);
	sigaction(SIGTERM, &sa, NULL);
	signal(SIGPIPE, SIG_IGN);
}

int64_t bench_wall_offset_ns(void)
{
	struct timespec rt, mono;
	clock_gettime(CLOCK_REALTIME, &rt);
	clock_gettime(CLOCK_MONOTONIC, &mono);
	return ((int64_t)rt.tv_sec - (int64_t)mono.tv_sec) * 1000000000LL +
	       ((int64_t)rt.tv_nsec - (int64_t)mono.tv_nsec);
}

/* One section of the progress line: rate since the last line, p99 so far. */
static int progress_section(char *line, size_t cap, const char *name, uint64_t msgs,
			    uint64_t bytes, const struct rmq_hist *h, double dt)
{
	char q[32];
	bench_fmt_ns(q, sizeof(q), rmq_hist_quantile(h, 0.99));
	return snprintf(line, cap, "  %s %9.0f msgs/s %8.1f MB/s p99 %s", name, (double)msgs / dt,
			(double)bytes / dt / 1e6, h->count ? q : "-");
}

void *bench_progress_main(void *arg)
{
	const struct bench_progress *pg = arg;
	struct rmq_hist *hp = malloc(sizeof(*hp)), *hc = malloc(sizeof(*hc));
	struct bench_progress_totals now_t, last = {0};
	uint64_t last_t = 0;

	if (!hp || !hc)
		goto out;
	while (!atomic_load(pg->finished)) {
		struct timespec ts = {0, 100 * 1000 * 1000};
		nanosleep(&ts, NULL);
		uint64_t t_start = atomic_load(pg->t_start), now = rmq_now_ns();
		if (t_start == 0 || now < last_t + 1000000000ULL)
			continue;
		if (last_t == 0) {
			last_t = t_start;
			continue;
		}
		now_t = (struct bench_progress_totals){.prod_hist = hp, .cons_hist = hc};
		rmq_hist_reset(hp);
		rmq_hist_reset(hc);
		pg->collect(pg->arg, &now_t);
		double dt = (double)(now - last_t) / 1e9;
		char line[512];
		int n = snprintf(line, sizeof(line), "rmq-bench: %5.1fs%s", (double)(now - t_start) / 1e9,
				 now < atomic_load(pg->t_warm) ? " warm-up" : "");
		if (pg->produce)
			n += progress_section(line + n, sizeof(line) - (size_t)n, "produce",
					      now_t.prod_msgs - last.prod_msgs,
					      now_t.prod_bytes - last.prod_bytes, hp, dt);
		if (pg->consume)
			n += progress_section(line + n, sizeof(line) - (size_t)n, "consume",
					      now_t.cons_msgs - last.cons_msgs,
					      now_t.cons_bytes - last.cons_bytes, hc, dt);
		snprintf(line + n, sizeof(line) - (size_t)n, "  errors %" PRIu64 "\n", now_t.errors);
		fputs(line, stderr);
		last = now_t;
		last_t = now;
	}
out:
	free(hp);
	free(hc);
	return NULL;
}
