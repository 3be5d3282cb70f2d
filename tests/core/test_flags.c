/* SPDX-License-Identifier: Apache-2.0 */
#include "core/error.h"
#include "core/flags.h"

#include <criterion/criterion.h>
#include <string.h>

Test(flags, sizes)
{
	static const struct {
		const char *in;
		uint64_t out;
	} ok[] = {
		{"0", 0},          {"4096", 4096},        {"64KiB", 65536},
		{"64MiB", 64ULL << 20}, {"2GiB", 2ULL << 30}, {"1TiB", 1ULL << 40},
		{"10kB", 10000},   {"5MB", 5000000},      {"1GB", 1000000000},
		{"7B", 7},
	};
	for (size_t i = 0; i < sizeof(ok) / sizeof(ok[0]); i++) {
		uint64_t v = 1;
		char err[128];
		cr_assert_eq(rmq_parse_size(ok[i].in, &v, err, sizeof(err)), 0, "%s: %s",
			     ok[i].in, err);
		cr_assert_eq(v, ok[i].out, "%s", ok[i].in);
	}
}

Test(flags, bad_sizes_are_refused_with_reason)
{
	static const char *const bad[] = {
		"", "-1", "+5", " 5", "5 ", "64mib", "64M", "1.5GiB", "0x10", "MiB",
		"99999999999999999999", "20000000TiB", "64MiBs",
	};
	for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
		uint64_t v = 77;
		char err[128] = "";
		cr_assert_eq(rmq_parse_size(bad[i], &v, err, sizeof(err)), RMQ_EBADFLAG, "'%s'",
			     bad[i]);
		cr_assert_eq(v, 77, "output untouched on error for '%s'", bad[i]);
		cr_assert_neq(err[0], '\0', "a reason for '%s'", bad[i]);
	}
}

Test(flags, durations)
{
	static const struct {
		const char *in;
		uint64_t ns;
	} ok[] = {
		{"0s", 0},
		{"500ms", 500000000ULL},
		{"250us", 250000ULL},
		{"100ns", 100},
		{"10s", 10000000000ULL},
		{"1m30s", 90000000000ULL},
		{"2h", 7200000000000ULL},
		{"7d", 604800000000000ULL},
		{"1h1m1s1ms", 3661001000000ULL},
	};
	for (size_t i = 0; i < sizeof(ok) / sizeof(ok[0]); i++) {
		uint64_t v;
		char err[128];
		cr_assert_eq(rmq_parse_duration(ok[i].in, &v, err, sizeof(err)), 0, "%s: %s",
			     ok[i].in, err);
		cr_assert_eq(v, ok[i].ns, "%s", ok[i].in);
	}
	static const char *const bad[] = {"", "500", "5x", "ms", "-1s", "1.5s", "10 s",
					  "99999999999d", "1s ", "s1"};
	for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
		uint64_t v;
		char err[160] = "";
		cr_assert_eq(rmq_parse_duration(bad[i], &v, err, sizeof(err)), RMQ_EBADFLAG,
			     "'%s'", bad[i]);
		cr_assert_neq(err[0], '\0');
	}
	char err[160];
	uint64_t v;
	rmq_parse_duration("500", &v, err, sizeof(err));
	cr_assert(strstr(err, "needs a unit") != NULL, "%s", err);
}

Test(flags, uint_and_bool)
{
	uint64_t v;
	bool b;
	char err[128];
	cr_assert_eq(rmq_parse_uint("42", 1, 64, &v, err, sizeof(err)), 0);
	cr_assert_eq(v, 42);
	cr_assert_eq(rmq_parse_uint("0", 1, 64, &v, err, sizeof(err)), RMQ_EBADFLAG);
	cr_assert_eq(rmq_parse_uint("65", 1, 64, &v, err, sizeof(err)), RMQ_EBADFLAG);
	cr_assert_eq(rmq_parse_uint("4x", 0, 0, &v, err, sizeof(err)), RMQ_EBADFLAG);
	cr_assert_eq(rmq_parse_uint("18446744073709551616", 0, 0, &v, err, sizeof(err)),
		     RMQ_EBADFLAG);
	cr_assert_eq(rmq_parse_bool("yes", &b, err, sizeof(err)), 0);
	cr_assert(b);
	cr_assert_eq(rmq_parse_bool("off", &b, err, sizeof(err)), 0);
	cr_assert(!b);
	cr_assert_eq(rmq_parse_bool("maybe", &b, err, sizeof(err)), RMQ_EBADFLAG);
}

Test(flags, format_round_trips)
{
	char buf[64];
	uint64_t v;
	char err[128];
	cr_assert_str_eq(rmq_format_size(64ULL << 20, buf, sizeof(buf)), "64MiB");
	cr_assert_str_eq(rmq_format_size(1000, buf, sizeof(buf)), "1000");
	cr_assert_str_eq(rmq_format_duration(90000000000ULL, buf, sizeof(buf)), "1m30s");
	cr_assert_str_eq(rmq_format_duration(0, buf, sizeof(buf)), "0s");
	cr_assert_str_eq(rmq_format_duration(1500000ULL, buf, sizeof(buf)), "1ms500us");
	cr_assert_eq(rmq_parse_duration(buf, &v, err, sizeof(err)), 0);
	cr_assert_eq(v, 1500000ULL);
}

struct opts {
	uint64_t seg;
	uint64_t wait;
	uint64_t cores;
	bool verbose;
	const char *dir;
	const char *fsync;
};

static int parse(struct opts *o, int argc, char **argv, int *npos, char *err, size_t errlen)
{
	const struct rmq_flag flags[] = {
		{"segment-bytes", RMQ_FLAG_SIZE, &o->seg, "1GiB", "segment size", 4096, 0, NULL},
		{"max-wait", RMQ_FLAG_DURATION, &o->wait, "500ms", "long poll", 0, 0, NULL},
		{"cores", RMQ_FLAG_UINT, &o->cores, "2", "shards", 1, 256, NULL},
		{"verbose", RMQ_FLAG_BOOL, &o->verbose, "false", "chatty", 0, 0, NULL},
		{"data-dir", RMQ_FLAG_STRING, &o->dir, "/var/lib/rmq", "data", 0, 0, NULL},
		{"fsync", RMQ_FLAG_CHOICE, &o->fsync, "always", "policy", 0, 0,
		 "always|never|interval:"},
	};
	return rmq_flags_parse(argc, argv, flags, sizeof(flags) / sizeof(flags[0]), npos, err,
			       errlen);
}

Test(flags, table_defaults_and_overrides)
{
	struct opts o;
	char err[256];
	int npos = -1;
	char *argv[] = {"prog", "--segment-bytes=64MiB", "pos1", "--max-wait", "2s",
			"--verbose", "--fsync=interval:10ms", "--data-dir=", "--", "--cores"};
	int argc = sizeof(argv) / sizeof(argv[0]);
	cr_assert_eq(parse(&o, argc, argv, &npos, err, sizeof(err)), 0, "%s", err);
	cr_assert_eq(o.seg, 64ULL << 20);
	cr_assert_eq(o.wait, 2000000000ULL);
	cr_assert_eq(o.cores, 2);
	cr_assert(o.verbose);
	cr_assert_str_eq(o.dir, "");
	cr_assert_str_eq(o.fsync, "interval:10ms");
	cr_assert_eq(npos, 2);
	cr_assert_str_eq(argv[1], "pos1");
	cr_assert_str_eq(argv[2], "--cores");
}

Test(flags, table_errors_name_the_flag)
{
	static const struct {
		const char *arg;
		const char *want;
	} cases[] = {
		{"--bogus=1", "unknown flag --bogus"},
		{"--segment-bytes=12", "--segment-bytes: '12' is outside"},
		{"--segment-bytes=lots", "--segment-bytes: size 'lots'"},
		{"--cores=0", "--cores: 0 is outside"},
		{"--fsync=sometimes", "--fsync: 'sometimes' is not one of"},
		{"--fsync=interval:", "--fsync: 'interval:' is not one of"},
		{"--max-wait", "--max-wait needs a value"},
		{"--verbose=perhaps", "--verbose: 'perhaps' is not a boolean"},
	};
	for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
		struct opts o;
		char err[256] = "";
		char *argv[] = {"prog", (char *)cases[i].arg};
		cr_assert_eq(parse(&o, 2, argv, NULL, err, sizeof(err)), RMQ_EBADFLAG, "%s",
			     cases[i].arg);
		cr_assert(strstr(err, cases[i].want) != NULL, "'%s' gave '%s'", cases[i].arg, err);
	}
	struct opts o;
	char err[64];
	char *argv[] = {"prog", "--help"};
	cr_assert_eq(parse(&o, 2, argv, NULL, err, sizeof(err)), 1);
}
