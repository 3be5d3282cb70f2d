/* SPDX-License-Identifier: Apache-2.0 */
/*
 * acl_bench - the cost of one ACL check (src/broker/acl.h rmq_acl_allowed)
 * against a cluster's worth of entries, next to a scan of every entry (what
 * an unindexed check would cost).
 *
 *   build/release/bench/acl_bench [ENTRIES] [CHECKS]     (10000, 1000000)
 *
 * Entries: principals User:u0..u999, TOPIC and GROUP, LITERAL names of 20
 * to 40 bytes and a fifth PREFIXED, random operations, a tenth DENY.
 * Checks: random principals, resource types, topic names and operations.
 */
#include "broker/acl.h"
#include "broker/meta.h"

#include <stdio.h>
#include <stdlib.h>
#include <time.h>

static uint64_t now_ns(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (uint64_t)ts.tv_sec * 1000000000ULL + (uint64_t)ts.tv_nsec;
}

static void name_of(char *buf, size_t cap, unsigned k)
{
	snprintf(buf, cap, "orders.region-%u.events-%u", k % 97, k);
}

int main(int argc, char **argv)
{
	unsigned entries = argc > 1 ? (unsigned)strtoul(argv[1], NULL, 10) : 10000;
	unsigned checks = argc > 2 ? (unsigned)strtoul(argv[2], NULL, 10) : 1000000;
	struct rmq_meta *m = rmq_meta_new(0);
	struct rmq_sec_builder *b = m ? rmq_sec_edit(m) : NULL;
	if (!b)
		return 1;
	srand(1);
	char err[256];
	for (unsigned i = 0; i < entries; i++) {
		char p[32], n[64];
		snprintf(p, sizeof(p), "User:u%d", rand() % 1000);
		name_of(n, sizeof(n), (unsigned)rand() % 5000);
		bool prefixed = rand() % 5 == 0;
		if (prefixed)
			n[14] = '\0'; /* "orders.region-" + a digit or two */
		struct rmq_acl e = {p, n, (uint8_t)(RMQ_ACL_TOPIC + rand() % 2),
				    (uint8_t)(prefixed ? RMQ_ACL_PREFIXED : RMQ_ACL_LITERAL),
				    (uint8_t)(RMQ_ACL_ALL + rand() % 11),
				    (uint8_t)(rand() % 10 ? RMQ_ACL_ALLOW : RMQ_ACL_DENY)};
		if (rmq_sec_add_acl(b, &e, err, sizeof(err)) < 0)
			return 1;
	}
	if (rmq_sec_done(b, m) < 0)
		return 1;
	const struct rmq_acl *acls;
	size_t n = rmq_sec_acls(m, &acls);
	enum { Q = 4096 };
	static char ps[Q][32], ns[Q][64];
	static int res[Q], ops[Q];
	for (unsigned i = 0; i < Q; i++) {
		snprintf(ps[i], sizeof(ps[i]), "User:u%d", rand() % 1000);
		name_of(ns[i], sizeof(ns[i]), (unsigned)rand() % 5000);
		res[i] = RMQ_ACL_TOPIC + rand() % 2;
		ops[i] = RMQ_ACL_READ + rand() % 10;
	}
	unsigned allowed = 0;
	uint64_t t0 = now_ns();
	for (unsigned i = 0; i < checks; i++) {
		unsigned q = i % Q;
		allowed += rmq_acl_allowed(m, ps[q], res[q], ns[q], ops[q], false);
	}
	uint64_t t1 = now_ns();
	unsigned scans = checks / 100 ? checks / 100 : 1, agree = 0;
	for (unsigned i = 0; i < scans; i++) {
		unsigned q = i % Q;
		bool deny = false, allow = false;
		for (size_t k = 0; k < n; k++) {
			if (!rmq_acl_matches(&acls[k], ps[q], res[q], ns[q], ops[q]))
				continue;
			deny |= acls[k].perm == RMQ_ACL_DENY;
			allow |= acls[k].perm == RMQ_ACL_ALLOW;
		}
		agree += (!deny && allow) == rmq_acl_allowed(m, ps[q], res[q], ns[q], ops[q], false);
	}
	uint64_t t2 = now_ns();
	printf("entries %zu\tchecks %u\tallowed %u\tindexed %.0f ns/check\tscan %.0f ns/check\t"
	       "agree %u/%u\n",
	       n, checks, allowed, (double)(t1 - t0) / checks, (double)(t2 - t1) / scans, agree, scans);
	rmq_meta_free(m);
	return agree == scans ? 0 : 1;
}
