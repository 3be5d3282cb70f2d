/* SPDX-License-Identifier: Apache-2.0 */
/*
 * test_opts.c - rmq-bench's arguments: defaults, targets, every refusal
 * with a reason naming the flag, and the program's exit status for bad
 * flags (2, one line on stderr) and a refused connection (1).
 */
#include "bench.h"
#include "bench_test_util.h"

#include "core/error.h"

#include <arpa/inet.h>
#include <criterion/criterion.h>
#include <netinet/in.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

/* Parses a NULL-terminated argument list (argv[0] is added). */
static int parse(struct bench_opts *o, char *err, size_t errlen, const char *const *args)
{
	char *argv[64] = {"rmq-bench"};
	int argc = 1;
	for (; args[argc - 1]; argc++)
		argv[argc] = (char *)args[argc - 1];
	return bench_opts_parse(argc, argv, o, err, errlen);
}

#define PARSE(o, err, ...) parse(o, err, sizeof(err), (const char *const[]){__VA_ARGS__, NULL})

Test(opts, defaults)
{
	struct bench_opts o;
	char err[256] = "";
	cr_assert_eq(PARSE(&o, err, "--json"), 0, "%s", err);
	cr_assert_str_eq(o.host, "127.0.0.1");
	cr_assert_eq(o.port, 9092);
	cr_assert_eq(o.mode, BENCH_PRODUCE);
	cr_assert_str_eq(o.topic, "rmq-bench");
	cr_assert(o.create_topic);
	cr_assert_eq(o.threads, 1);
	cr_assert_eq(o.msg_bytes, 1024);
	cr_assert_eq(o.batch, 100);
	cr_assert_eq(o.acks, 1, "leader");
	cr_assert_eq(o.compression, 0);
	cr_assert_eq(o.duration_ns, 10ULL * 1000000000ULL);
	cr_assert_eq(o.warmup_ns, 1000000000ULL);
	cr_assert_eq(o.rate, 0);
	cr_assert(o.json);
	cr_assert(!o.produce_stream);
	cr_assert(!o.produce_unary);
	cr_assert_str_eq(o.produce_rpc_name, "batch");
	cr_assert(!o.consume_subscribe);
	cr_assert(o.idempotent);
	cr_assert(!o.unique_values);
}

Test(opts, produce_rpc_unary)
{
	struct bench_opts o;
	char err[256] = "";
	cr_assert_eq(PARSE(&o, err, "--produce-rpc=unary"), 0, "%s", err);
	cr_assert(o.produce_unary);
	cr_assert(!o.produce_stream);
	cr_assert_str_eq(o.produce_rpc_name, "unary");
	cr_assert_eq(PARSE(&o, err, "--produce-rpc", "unary", "--batch", "1", "--msg-bytes", "100",
			   "--streams", "64", "--connections", "4"), 0, "%s", err);
	cr_assert_eq(o.batch, 1);
	cr_assert_eq(o.streams, 64);
	cr_assert_eq(PARSE(&o, err, "--produce-rpc=unary", "--mode", "e2e", "--rate", "1000",
			   "--acks", "all"), 0, "%s", err);
	cr_assert(o.produce_unary);
	cr_assert_eq(PARSE(&o, err, "--produce-rpc=unary", "--compression=none"), 0, "%s", err);
	cr_assert_eq(PARSE(&o, err, "--produce-rpc=stream"), 0, "%s", err);
	cr_assert(!o.produce_unary);
	cr_assert_str_eq(o.produce_rpc_name, "stream");
}

Test(opts, modes_and_choices)
{
	struct bench_opts o;
	char err[256] = "";
	cr_assert_eq(PARSE(&o, err, "--mode", "consume"), 0, "%s", err);
	cr_assert_eq(o.mode, BENCH_CONSUME);
	cr_assert(!o.from_latest, "consume starts at the earliest offset");
	cr_assert_eq(PARSE(&o, err, "--mode=e2e"), 0, "%s", err);
	cr_assert_eq(o.mode, BENCH_E2E);
	cr_assert(o.from_latest, "e2e reads what it produces");
	cr_assert_eq(PARSE(&o, err, "--mode=consume", "--from=latest", "--consume-rpc=subscribe"), 0);
	cr_assert(o.from_latest);
	cr_assert(o.consume_subscribe);
	cr_assert_eq(PARSE(&o, err, "--acks", "all", "--compression", "zstd", "--produce-rpc", "stream"), 0);
	cr_assert_eq(o.acks, 3);
	cr_assert_eq(o.compression, 2);
	cr_assert(o.produce_stream);
	cr_assert_eq(PARSE(&o, err, "--acks=none", "--compression=snappy"), 0);
	cr_assert_eq(o.acks, 0);
	cr_assert_eq(o.compression, 3);
	cr_assert_eq(PARSE(&o, err, "--messages", "5000"), 0);
	cr_assert_eq(o.duration_ns, 0, "--messages alone: no time limit");
	cr_assert_eq(PARSE(&o, err, "--messages", "5000", "--duration", "3s"), 0);
	cr_assert_eq(o.duration_ns, 3000000000ULL, "both bounds");
	cr_assert_eq(PARSE(&o, err, "--rate", "20000", "--mode", "e2e", "--msg-bytes", "12"), 0, "%s", err);
	cr_assert_eq(o.rate, 20000);
	cr_assert_eq(PARSE(&o, err, "--mode", "consume", "--group", "g1", "--commit-interval", "250ms"), 0,
		     "%s", err);
	cr_assert_str_eq(o.group, "g1");
	cr_assert_eq(o.commit_interval_ns, 250000000ULL);
	cr_assert_eq(PARSE(&o, err, "--mode", "e2e"), 0, "%s", err);
	cr_assert_str_eq(o.group, "", "no group by default");
}

Test(opts, targets)
{
	static const struct {
		const char *in, *host;
		uint16_t port;
	} ok[] = {
		{"rmq://127.0.0.1:9092", "127.0.0.1", 9092},
		{"rmq://localhost:1", "localhost", 1},
		{"broker-1.example.com:65535", "broker-1.example.com", 65535},
		{"rmq://[::1]:9093", "::1", 9093},
		{"nats://127.0.0.1:4222", "127.0.0.1", 4222},
		{"redis://localhost:6379", "localhost", 6379},
	};
	for (size_t i = 0; i < sizeof(ok) / sizeof(ok[0]); i++) {
		char host[256], err[256] = "";
		uint16_t port = 0;
		cr_assert_eq(bench_parse_target(ok[i].in, host, sizeof(host), &port, err, sizeof(err)), 0,
			     "%s: %s", ok[i].in, err);
		cr_assert_str_eq(host, ok[i].host);
		cr_assert_eq(port, ok[i].port);
	}
	static const char *const bad[] = {
		"", "rmq://", "rmq://host", "rmq://:9092", "rmq://host:", "rmq://host:0",
		"rmq://host:65536", "rmq://host:-1", "rmq://host:92x", "http://host:9092", "nats://host", "redis://:6379",
		"rmq://::1:9092", "rmq://[::1]9092", "rmq://host:9092/path",
	};
	for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
		char host[256], err[256] = "";
		uint16_t port = 0;
		cr_assert_eq(bench_parse_target(bad[i], host, sizeof(host), &port, err, sizeof(err)),
			     RMQ_EBADFLAG, "'%s' accepted", bad[i]);
		cr_assert(strstr(err, "--target"), "'%s': reason names the flag: %s", bad[i], err);
	}
}

/* Each refused argument list, and a word its reason must contain. */
Test(opts, refusals_name_the_flag)
{
	static const struct {
		const char *args[8]; /* NULL-terminated */
		const char *why;
	} bad[] = {
		{{"--bogus"}, "--bogus"},
		{{"--threads", "0"}, "--threads"},
		{{"--threads", "100000"}, "--threads"},
		{{"--connections", "x"}, "--connections"},
		{{"--streams", "0"}, "--streams"},
		{{"--mode", "replay"}, "--mode"},
		{{"--acks", "quorum"}, "--acks"},
		{{"--replication-factor", "9"}, "--replication-factor"},
		{{"--compression", "gzip"}, "--compression"},
		{{"--msg-bytes", "0"}, "--msg-bytes"},
		{{"--msg-bytes", "1Q"}, "--msg-bytes"},
		{{"--batch", "0"}, "--batch"},
		{{"--unique-values", "--idempotent=false"}, "--unique-values"},
		{{"--unique-values", "--msg-bytes", "27"}, "--unique-values"},
		{{"--batch", "100000", "--msg-bytes", "1MiB"}, "--batch"},
		{{"--partitions", "0"}, "--partitions"},
		{{"--connections", "1000", "--streams", "1000"}, "--streams"},
		{{"--connections", "64", "--streams", "64", "--batch", "3000"}, "MiB of batch buffers"},
		{{"--duration", "10"}, "--duration"},
		{{"--duration", "0s"}, "--duration"},
		{{"--warmup", "-1s"}, "--warmup"},
		{{"--rate", "1.5"}, "--rate"},
		{{"--rate", "1000", "--mode", "consume"}, "--rate"},
		{{"--from", "earliest"}, "--from"},
		{{"--produce-rpc", "rpc"}, "--produce-rpc"},
		{{"--produce-rpc=unary", "--compression", "zstd"}, "--produce-rpc=unary"},
		{{"--produce-rpc=unary", "--compression=lz4", "--mode", "e2e"}, "--compression=none"},
		{{"--produce-rpc=unary", "--target", "nats://127.0.0.1:4222"}, "--produce-rpc=unary"},
		{{"--produce-rpc=unary", "--target", "redis://127.0.0.1:6379"}, "rmq://"},
		{{"--from", "middle", "--mode", "consume"}, "--from"},
		{{"--mode", "e2e", "--msg-bytes", "8"}, "--msg-bytes"},
		{{"--topic", "a/b"}, "--topic"},
		{{"--topic", ""}, "--topic"},
		{{"--target", "rmq://host"}, "--target"},
		{{"--json=maybe"}, "--json"},
		{{"--json", "maybe"}, "unexpected argument 'maybe'"},
		{{"--create-topic=2"}, "--create-topic"},
		{{"--threads"}, "--threads"},
		{{"produce"}, "unexpected argument"},
		{{"--group", "g"}, "--group"},
		{{"--group", "g", "--mode", "consume", "--consume-rpc", "subscribe"}, "--consume-rpc=fetch"},
		{{"--group", "g", "--mode", "e2e", "--target", "nats://127.0.0.1:4222"}, "--group"},
		{{"--commit-interval", "0s", "--group", "g", "--mode", "consume"}, "--commit-interval"},
	};
	for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
		struct bench_opts o;
		char err[256] = "";
		const char *const *a = bad[i].args;
		int rc = parse(&o, err, sizeof(err), a);
		cr_assert_eq(rc, RMQ_EBADFLAG, "case %zu (%s %s) accepted", i, a[0], a[1] ? a[1] : "");
		cr_assert(strstr(err, bad[i].why), "case %zu: '%s' does not mention %s", i, err,
			  bad[i].why);
		cr_assert_null(strchr(err, '\n'), "one line");
	}
}

Test(opts, help)
{
	struct bench_opts o;
	char err[256] = "";
	cr_assert_eq(PARSE(&o, err, "--threads", "2", "--help"), 1);
}

Test(opts, program_exits_2_on_a_bad_flag, .timeout = 60)
{
	struct bt_proc p;
	const char *args[] = {RMQ_BENCH_PATH, "--threads", "zero", NULL};
	char out[4096], errs[4096];
	int st = bt_run(args, 30, out, sizeof(out), errs, sizeof(errs), &p);
	cr_assert_eq(st, 2, "exit status %d; stderr: %s", st, errs);
	cr_assert(strstr(errs, "rmq-bench: --threads"), "%s", errs);
	cr_assert_eq(strchr(errs, '\n'), errs + strlen(errs) - 1, "exactly one line: %s", errs);
	cr_assert_eq(out[0], '\0', "nothing on stdout");
}

Test(opts, program_exits_1_when_the_connection_is_refused, .timeout = 60)
{
	/* A bound socket that does not listen: connecting to it is refused. */
	int fd = socket(AF_INET, SOCK_STREAM, 0);
	struct sockaddr_in a = {.sin_family = AF_INET, .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
	socklen_t al = sizeof(a);
	cr_assert_eq(bind(fd, (struct sockaddr *)&a, sizeof(a)), 0);
	cr_assert_eq(getsockname(fd, (struct sockaddr *)&a, &al), 0);
	char target[64];
	snprintf(target, sizeof(target), "rmq://127.0.0.1:%u", ntohs(a.sin_port));

	struct bt_proc p;
	const char *args[] = {RMQ_BENCH_PATH, "--target", target, "--duration", "1s", NULL};
	char out[4096], errs[4096];
	int st = bt_run(args, 30, out, sizeof(out), errs, sizeof(errs), &p);
	close(fd);
	cr_assert_eq(st, 1, "exit status %d; stderr: %s", st, errs);
	cr_assert(strstr(errs, "cannot connect to 127.0.0.1:"), "%s", errs);
	cr_assert(strstr(errs, "Connection refused"), "%s", errs);
}
