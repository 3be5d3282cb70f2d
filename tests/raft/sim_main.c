/* SPDX-License-Identifier: Apache-2.0 */
/*
 * sim_main.c - raft_sim, the simulator (sim.h) from the command line:
 * many seeds for a soak run, or one seed traced step by step to replay a
 * failure.  `tools/dev sim [SEEDS] [FIRST_SEED]` runs it from the release
 * tree; docs/raft-simulation.md explains the output.
 *
 *   raft_sim [--seeds N] [--first S] [--trace] [--stop]
 *            [--nodes 3|5] [--max-append N] [--crash-rate N] [--fault-time N]
 *            [--no-liveness] [--no-membership] [--torn-any] [--unsafe] [--figure8]
 *
 * Exits 0 when every seed passed, 1 when one failed, 2 on bad usage.
 */
#include "sim.h"

#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

static void usage(void)
{
	fprintf(stderr,
		"usage: raft_sim [--seeds N] [--first S] [--trace] [--stop] [--nodes 3|5]\n"
		"                [--max-append N] [--crash-rate N] [--fault-time N] [--no-liveness]\n"
		"                [--no-membership] [--torn-any] [--unsafe] [--figure8]\n"
		"  --seeds N       how many seeds (default 1000), from --first (default 1)\n"
		"  --trace         print every step (for replaying one seed)\n"
		"  --stop          stop at the first failing seed\n"
		"  --torn-any      a torn Ready keeps its hard state and any prefix of its entries\n"
		"                  independently (default: entries first, as a write-ahead log)\n"
		"  --no-membership keep the first configuration (three worlds in four add and\n"
		"                  remove servers, some starting with nodes that wait to be added)\n"
		"  --unsafe        disable the current-term commit rule (the planted bug)\n"
		"  --figure8       --unsafe with 3 nodes, --max-append 1, --crash-rate 20,\n"
		"                  --fault-time 20000, --no-liveness, --no-membership: the\n"
		"                  planted-bug test's world\n");
	exit(2);
}

static uint64_t arg_u64(int argc, char **argv, int *i)
{
	if (*i + 1 >= argc)
		usage();
	char *end;
	const char *s = argv[++*i];
	unsigned long long v = strtoull(s, &end, 0);
	if (!*s || *end)
		usage();
	return v;
}

int main(int argc, char **argv)
{
	uint64_t seeds = 1000, first = 1;
	bool trace = false, stop = false;
	struct sim_opts o = {0};
	for (int i = 1; i < argc; i++) {
		const char *a = argv[i];
		if (!strcmp(a, "--seeds"))
			seeds = arg_u64(argc, argv, &i);
		else if (!strcmp(a, "--first"))
			first = arg_u64(argc, argv, &i);
		else if (!strcmp(a, "--trace"))
			trace = true;
		else if (!strcmp(a, "--stop"))
			stop = true;
		else if (!strcmp(a, "--nodes"))
			o.n_nodes = (uint32_t)arg_u64(argc, argv, &i);
		else if (!strcmp(a, "--max-append"))
			o.max_append_entries = (uint32_t)arg_u64(argc, argv, &i);
		else if (!strcmp(a, "--crash-rate"))
			o.crash_rate = (uint32_t)arg_u64(argc, argv, &i);
		else if (!strcmp(a, "--fault-time"))
			o.fault_time = arg_u64(argc, argv, &i);
		else if (!strcmp(a, "--no-liveness"))
			o.no_liveness = true;
		else if (!strcmp(a, "--no-membership"))
			o.no_membership = true;
		else if (!strcmp(a, "--torn-any"))
			o.torn_any = true;
		else if (!strcmp(a, "--unsafe"))
			o.unsafe_commit_any_term = true;
		else if (!strcmp(a, "--figure8"))
			o = SIM_OPTS_FIGURE8;
		else
			usage();
	}
	if (o.n_nodes != 0 && o.n_nodes != 3 && o.n_nodes != 5)
		usage();
	if (trace)
		o.trace = stdout;
	struct timespec t0, t1;
	clock_gettime(CLOCK_MONOTONIC, &t0);
	uint64_t failed = 0, ran = 0, steps = 0, crashes = 0, torn = 0, changes = 0;
	for (uint64_t seed = first; seed < first + seeds; seed++) {
		struct sim_result r;
		char why[1024];
		enum sim_verdict v = sim_run(seed, &o, &r, why, sizeof(why));
		ran++;
		steps += r.steps;
		crashes += r.crashes;
		changes += r.conf_changes;
		torn += r.torn;
		if (trace)
			printf("seed %" PRIu64 ": %s, %" PRIu64 " steps, trace hash %016" PRIx64
			       ", max term %" PRIu64 ", applied %" PRIu64 "\n",
			       seed, sim_verdict_name(v), r.steps, r.trace_hash, r.max_term, r.applied);
		if (v != SIM_PASS) {
			failed++;
			printf("FAIL %s\n", why);
			fflush(stdout);
			if (stop)
				break;
		}
	}
	clock_gettime(CLOCK_MONOTONIC, &t1);
	double s = (double)(t1.tv_sec - t0.tv_sec) + (double)(t1.tv_nsec - t0.tv_nsec) / 1e9;
	printf("%" PRIu64 " seeds from %" PRIu64 ": %" PRIu64 " passed, %" PRIu64
	       " failed; %" PRIu64 " steps, %" PRIu64 " crashes (%" PRIu64
	       " torn), %" PRIu64 " membership changes in %.1f s\n",
	       ran, first, ran - failed, failed, steps, crashes, torn, changes, s);
	return failed ? 1 : 0;
}
