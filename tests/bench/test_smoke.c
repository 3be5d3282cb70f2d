/* SPDX-License-Identifier: Apache-2.0 */
/*
 * test_smoke.c - rmq-bench against a real rmqd, one short bounded run per
 * mode: produce, consume, e2e, open loop (--rate), zstd, the streaming
 * RPCs, unary Produce and consumer groups.  Each starts `rmqd --listen 127.0.0.1:0 --cores 2` in a temporary
 * directory, reads its port from the start-up line, runs rmq-bench with
 * --json, and checks the exit status and that the summary reports
 * messages and no errors.  It is a run, never a timing assertion.
 */
#include "bench_test_util.h"

#include <criterion/criterion.h>
#include <stdio.h>
#include <string.h>

#define OUT_MAX (64u << 10)

static struct bt_rmqd rmqd;
static char out[OUT_MAX], errs[OUT_MAX];

static void start(void)
{
	cr_assert_eq(bt_rmqd_start(&rmqd), 0, "rmqd did not start");
}

static void stop(void)
{
	int st = bt_rmqd_stop(&rmqd);
	cr_expect_eq(st, 0, "rmqd stopped with status %d", st);
}

/* Runs rmq-bench with --json (and, with defaults, a 1 s run after 200 ms
 * of warm-up) plus extra args (NULL-ended); checks exit 0, no errors and
 * one JSON line.  Returns the messages measured, which may be 0. */
static double bench_run(bool defaults, const char *const *extra)
{
	const char *argv[48] = {RMQ_BENCH_PATH, "--target", rmqd.target, "--json",
				"--progress=false", "--duration", "1s", "--warmup", "200ms"};
	int n = defaults ? 9 : 5;
	for (int i = 0; extra[i]; i++)
		argv[n++] = extra[i];
	argv[n] = NULL;
	struct bt_proc p;
	int st = bt_run(argv, 90, out, sizeof(out), errs, sizeof(errs), &p);
	cr_assert_eq(st, 0, "rmq-bench exit status %d\nstdout: %s\nstderr: %s", st, out, errs);
	double msgs = -1, errors = -1;
	cr_assert(bt_json_num(out, NULL, "messages", &msgs), "no messages in: %s", out);
	cr_assert(bt_json_num(out, "\"errors\"", "total", &errors), "no error total in: %s", out);
	cr_assert_eq(errors, 0, "errors reported: %s\nstderr: %s", out, errs);
	cr_assert_eq(strchr(out, '\n'), out + strlen(out) - 1, "one JSON object, one line: %s", out);
	return msgs;
}

/* The same with the defaults, and at least one message measured. */
static double bench(const char *const *extra)
{
	double msgs = bench_run(true, extra);
	cr_assert_gt(msgs, 0, "no message measured: %s\nstderr: %s", out, errs);
	return msgs;
}

#define BENCH(...) bench((const char *const[]){__VA_ARGS__, NULL})

TestSuite(smoke, .init = start, .fini = stop, .timeout = 240);

Test(smoke, produce)
{
	BENCH("--mode", "produce");
}

Test(smoke, consume)
{
	/* Something to read first, then read it from the start. */
	BENCH("--mode", "produce", "--messages", "20000", "--duration", "0s", "--warmup", "0s");
	double msgs = BENCH("--mode", "consume", "--from", "earliest", "--warmup", "0s");
	cr_assert_geq(msgs, 1, "consumed what was produced");
}

Test(smoke, e2e)
{
	BENCH("--mode", "e2e");
	double p;
	cr_assert(bt_json_num(out, "\"produce\"", "messages", &p), "%s", out);
	cr_assert_gt(p, 0, "%s", out);
	cr_assert(strstr(out, "\"latency_kind\":\"delivery\""), "%s", out);
}

Test(smoke, rate)
{
	BENCH("--mode", "produce", "--rate", "20000", "--batch", "10");
	cr_assert(strstr(out, "\"rate\":20000"), "%s", out);
}

Test(smoke, zstd)
{
	/* Both ways: the producer compresses, the consumer decompresses
	 * (and checks every batch's CRC-32C). */
	BENCH("--mode", "e2e", "--compression", "zstd");
	cr_assert(strstr(out, "\"compression\":\"zstd\""), "%s", out);
}

Test(smoke, streaming_rpcs)
{
	BENCH("--mode", "e2e", "--produce-rpc", "stream", "--consume-rpc", "subscribe",
	      "--threads", "2", "--connections", "1", "--streams", "4");
}

Test(smoke, unary_produce)
{
	/* Produce calls with the records in `records`, several in flight. */
	BENCH("--mode", "produce", "--produce-rpc", "unary", "--batch", "10", "--msg-bytes", "100",
	      "--connections", "2", "--streams", "4");
	cr_assert(strstr(out, "\"produce_rpc\":\"unary\""), "%s", out);
}

Test(smoke, single_record_polling)
{
	/* One call in flight, the bench's ring busy-polling (--poll). */
	BENCH("--mode", "produce", "--produce-rpc", "unary", "--batch", "1", "--msg-bytes", "100",
	      "--connections", "1", "--streams", "1", "--poll", "50us");
	double n;
	cr_assert(bt_json_num(out, NULL, "messages", &n) && n > 0, "%s", out);
}

Test(smoke, consumer_group)
{
	/* The topic's records (a produce run writes a little more than it
	 * measures): a plain consume from the start counts them. */
	BENCH("--mode", "produce", "--messages", "20000", "--duration", "0s", "--warmup", "0s");
	double total = BENCH("--mode", "consume", "--from", "earliest", "--warmup", "0s");
	/* Members of one group split the partitions and commit as they go;
	 * the first run stops part-way. */
	double a = BENCH("--mode", "consume", "--group", "smoke-g", "--messages", "12000",
			 "--duration", "0s", "--warmup", "0s", "--commit-interval", "100ms");
	double commits, joins;
	cr_assert(bt_json_num(out, "\"group\"", "commits", &commits) && commits >= 1, "%s", out);
	cr_assert(bt_json_num(out, "\"group\"", "joins", &joins) && joins >= 1, "%s", out);
	/* The second starts at the first's commits (not at --from's
	 * earliest), so between them no record is read twice (the first may
	 * have read, and committed, a little past what it measured); the
	 * third finds nothing left. */
	double b = bench_run(false, (const char *const[]){"--mode", "consume", "--group", "smoke-g",
						   "--duration", "1s", "--warmup", "0s", NULL});
	cr_assert_leq(a + b, total, "the group read %.0f + %.0f of %.0f records", a, b, total);
	double c = bench_run(false, (const char *const[]){"--mode", "consume", "--group", "smoke-g",
						   "--duration", "500ms", "--warmup", "0s", NULL});
	cr_assert_eq(c, 0, "a third run of the group read %.0f records", c);
	/* e2e with a group: members reading what the producers write. */
	BENCH("--mode", "e2e", "--group", "smoke-e2e");
}

Test(smoke, unary_produce_e2e)
{
	/* What unary Produce wrote reads back, stamped and CRC-checked. */
	BENCH("--mode", "e2e", "--produce-rpc", "unary", "--batch", "1", "--msg-bytes", "100");
	double p;
	cr_assert(bt_json_num(out, "\"produce\"", "messages", &p), "%s", out);
	cr_assert_gt(p, 0, "%s", out);
}
