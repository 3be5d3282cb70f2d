/* SPDX-License-Identifier: Apache-2.0 */
/*
 * test_acl.c - the ACL check, quota lookup and verifier validation of
 * src/broker/acl.c, and the security state through a metadata snapshot's
 * encoding (what every command and snapshot of the controller holds).
 */
#include "broker/acl.h"
#include "broker/meta.h"

#include "core/error.h"

#include <criterion/criterion.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static struct rmq_meta *meta(void)
{
	struct rmq_meta *m = rmq_meta_new(0);
	cr_assert_not_null(m);
	return m;
}

/* m with one more entry. */
static void add(struct rmq_meta *m, const char *principal, int res, int pat, const char *name,
		int op, int perm)
{
	struct rmq_sec_builder *b = rmq_sec_edit(m);
	char err[256];
	struct rmq_acl e = {principal, name, (uint8_t)res, (uint8_t)pat, (uint8_t)op, (uint8_t)perm};
	cr_assert_eq(rmq_acl_check(&e, "*", err, sizeof(err)), 0, "%s", err);
	cr_assert_eq(rmq_sec_add_acl(b, &e, err, sizeof(err)), 0);
	cr_assert_eq(rmq_sec_done(b, m), 0);
}

#define ALLOWED(m, p, res, name, op) rmq_acl_allowed(m, p, res, name, op, false)

Test(acl, no_acl_is_denied)
{
	struct rmq_meta *m = meta();
	cr_assert_not(ALLOWED(m, "User:alice", RMQ_ACL_TOPIC, "orders", RMQ_ACL_READ));
	cr_assert_not(ALLOWED(NULL, "User:alice", RMQ_ACL_TOPIC, "orders", RMQ_ACL_READ));
	add(m, "User:bob", RMQ_ACL_TOPIC, RMQ_ACL_LITERAL, "orders", RMQ_ACL_READ, RMQ_ACL_ALLOW);
	cr_assert_not(ALLOWED(m, "User:alice", RMQ_ACL_TOPIC, "orders", RMQ_ACL_READ));
	rmq_meta_free(m);
}

Test(acl, super_user_allowed)
{
	struct rmq_meta *m = meta();
	add(m, "User:admin", RMQ_ACL_TOPIC, RMQ_ACL_LITERAL, "*", RMQ_ACL_ALL, RMQ_ACL_DENY);
	cr_assert(rmq_acl_allowed(m, "User:admin", RMQ_ACL_TOPIC, "orders", RMQ_ACL_DELETE, true));
	cr_assert(rmq_acl_allowed(NULL, "User:x", RMQ_ACL_CLUSTER, RMQ_ACL_CLUSTER_NAME,
				  RMQ_ACL_ALTER, true));
	rmq_meta_free(m);
}

Test(acl, literal)
{
	struct rmq_meta *m = meta();
	add(m, "User:alice", RMQ_ACL_TOPIC, RMQ_ACL_LITERAL, "orders", RMQ_ACL_READ, RMQ_ACL_ALLOW);
	cr_assert(ALLOWED(m, "User:alice", RMQ_ACL_TOPIC, "orders", RMQ_ACL_READ));
	cr_assert_not(ALLOWED(m, "User:alice", RMQ_ACL_TOPIC, "orders2", RMQ_ACL_READ));
	cr_assert_not(ALLOWED(m, "User:alice", RMQ_ACL_TOPIC, "order", RMQ_ACL_READ));
	cr_assert_not(ALLOWED(m, "User:alice", RMQ_ACL_TOPIC, "orders", RMQ_ACL_WRITE));
	cr_assert_not(ALLOWED(m, "User:alice", RMQ_ACL_GROUP, "orders", RMQ_ACL_READ));
	cr_assert_not(ALLOWED(m, "User:alicia", RMQ_ACL_TOPIC, "orders", RMQ_ACL_READ));
	rmq_meta_free(m);
}

Test(acl, prefixed)
{
	struct rmq_meta *m = meta();
	add(m, "User:alice", RMQ_ACL_TOPIC, RMQ_ACL_PREFIXED, "ord", RMQ_ACL_WRITE, RMQ_ACL_ALLOW);
	add(m, "User:alice", RMQ_ACL_TOPIC, RMQ_ACL_PREFIXED, "zz", RMQ_ACL_WRITE, RMQ_ACL_ALLOW);
	add(m, "User:alice", RMQ_ACL_TOPIC, RMQ_ACL_PREFIXED, "orc", RMQ_ACL_WRITE, RMQ_ACL_ALLOW);
	cr_assert(ALLOWED(m, "User:alice", RMQ_ACL_TOPIC, "orders", RMQ_ACL_WRITE));
	cr_assert(ALLOWED(m, "User:alice", RMQ_ACL_TOPIC, "ord", RMQ_ACL_WRITE));
	cr_assert(ALLOWED(m, "User:alice", RMQ_ACL_TOPIC, "orca", RMQ_ACL_WRITE));
	cr_assert_not(ALLOWED(m, "User:alice", RMQ_ACL_TOPIC, "or", RMQ_ACL_WRITE));
	cr_assert_not(ALLOWED(m, "User:alice", RMQ_ACL_TOPIC, "xorders", RMQ_ACL_WRITE));
	/* A LITERAL entry named like a prefix does not match longer names. */
	add(m, "User:bob", RMQ_ACL_TOPIC, RMQ_ACL_LITERAL, "ord", RMQ_ACL_WRITE, RMQ_ACL_ALLOW);
	cr_assert_not(ALLOWED(m, "User:bob", RMQ_ACL_TOPIC, "orders", RMQ_ACL_WRITE));
	rmq_meta_free(m);
}

Test(acl, wildcard_principal_and_name)
{
	struct rmq_meta *m = meta();
	add(m, "User:*", RMQ_ACL_TOPIC, RMQ_ACL_LITERAL, "public", RMQ_ACL_READ, RMQ_ACL_ALLOW);
	add(m, "User:carol", RMQ_ACL_GROUP, RMQ_ACL_LITERAL, "*", RMQ_ACL_READ, RMQ_ACL_ALLOW);
	cr_assert(ALLOWED(m, "User:anyone", RMQ_ACL_TOPIC, "public", RMQ_ACL_READ));
	cr_assert(ALLOWED(m, "User:carol", RMQ_ACL_TOPIC, "public", RMQ_ACL_READ));
	cr_assert_not(ALLOWED(m, "User:anyone", RMQ_ACL_TOPIC, "private", RMQ_ACL_READ));
	cr_assert(ALLOWED(m, "User:carol", RMQ_ACL_GROUP, "g1", RMQ_ACL_READ));
	cr_assert(ALLOWED(m, "User:carol", RMQ_ACL_GROUP, "*", RMQ_ACL_READ));
	cr_assert_not(ALLOWED(m, "User:dave", RMQ_ACL_GROUP, "g1", RMQ_ACL_READ));
	rmq_meta_free(m);
}

Test(acl, deny_wins)
{
	struct rmq_meta *m = meta();
	add(m, "User:*", RMQ_ACL_TOPIC, RMQ_ACL_LITERAL, "*", RMQ_ACL_ALL, RMQ_ACL_ALLOW);
	add(m, "User:eve", RMQ_ACL_TOPIC, RMQ_ACL_PREFIXED, "secret", RMQ_ACL_READ, RMQ_ACL_DENY);
	cr_assert(ALLOWED(m, "User:eve", RMQ_ACL_TOPIC, "orders", RMQ_ACL_READ));
	cr_assert_not(ALLOWED(m, "User:eve", RMQ_ACL_TOPIC, "secret-plans", RMQ_ACL_READ));
	cr_assert(ALLOWED(m, "User:eve", RMQ_ACL_TOPIC, "secret-plans", RMQ_ACL_WRITE));
	/* A deny of READ does not deny the DESCRIBE that an ALLOW implies. */
	cr_assert(ALLOWED(m, "User:eve", RMQ_ACL_TOPIC, "secret-plans", RMQ_ACL_DESCRIBE));
	cr_assert(ALLOWED(m, "User:frank", RMQ_ACL_TOPIC, "secret-plans", RMQ_ACL_READ));
	/* A DENY ALL for everyone beats a specific ALLOW. */
	add(m, "User:*", RMQ_ACL_TOPIC, RMQ_ACL_LITERAL, "locked", RMQ_ACL_ALL, RMQ_ACL_DENY);
	add(m, "User:frank", RMQ_ACL_TOPIC, RMQ_ACL_LITERAL, "locked", RMQ_ACL_READ, RMQ_ACL_ALLOW);
	cr_assert_not(ALLOWED(m, "User:frank", RMQ_ACL_TOPIC, "locked", RMQ_ACL_READ));
	rmq_meta_free(m);
}

Test(acl, implied_describe)
{
	struct rmq_meta *m = meta();
	int implies[] = {RMQ_ACL_READ, RMQ_ACL_WRITE, RMQ_ACL_DELETE, RMQ_ACL_ALTER};
	for (size_t i = 0; i < 4; i++) {
		char p[32], t[32];
		snprintf(p, sizeof(p), "User:u%zu", i);
		snprintf(t, sizeof(t), "t%zu", i);
		add(m, p, RMQ_ACL_TOPIC, RMQ_ACL_LITERAL, t, implies[i], RMQ_ACL_ALLOW);
		cr_assert(ALLOWED(m, p, RMQ_ACL_TOPIC, t, RMQ_ACL_DESCRIBE), "op %d", implies[i]);
		cr_assert_not(ALLOWED(m, p, RMQ_ACL_TOPIC, t, RMQ_ACL_DESCRIBE_CONFIGS));
	}
	add(m, "User:c", RMQ_ACL_TOPIC, RMQ_ACL_LITERAL, "x", RMQ_ACL_CREATE, RMQ_ACL_ALLOW);
	cr_assert_not(ALLOWED(m, "User:c", RMQ_ACL_TOPIC, "x", RMQ_ACL_DESCRIBE));
	add(m, "User:c", RMQ_ACL_TOPIC, RMQ_ACL_LITERAL, "x", RMQ_ACL_ALTER_CONFIGS, RMQ_ACL_ALLOW);
	cr_assert(ALLOWED(m, "User:c", RMQ_ACL_TOPIC, "x", RMQ_ACL_DESCRIBE_CONFIGS));
	cr_assert_not(ALLOWED(m, "User:c", RMQ_ACL_TOPIC, "x", RMQ_ACL_DESCRIBE));
	add(m, "User:d", RMQ_ACL_CLUSTER, RMQ_ACL_LITERAL, RMQ_ACL_CLUSTER_NAME, RMQ_ACL_ALL,
	    RMQ_ACL_ALLOW);
	cr_assert(ALLOWED(m, "User:d", RMQ_ACL_CLUSTER, RMQ_ACL_CLUSTER_NAME, RMQ_ACL_CLUSTER_ACTION));
	rmq_meta_free(m);
}

/* Many entries: the indexed check agrees with matching every entry. */
Test(acl, many_entries_agree_with_a_scan)
{
	struct rmq_meta *m = meta();
	struct rmq_sec_builder *b = rmq_sec_edit(m);
	char err[256];
	srand(7);
	for (int i = 0; i < 3000; i++) {
		char p[32], n[32];
		snprintf(p, sizeof(p), "User:u%d", rand() % 20);
		snprintf(n, sizeof(n), "t%d", rand() % 300);
		if (rand() % 10 == 0)
			snprintf(n, sizeof(n), "*");
		struct rmq_acl e = {p, n, (uint8_t)(RMQ_ACL_TOPIC + rand() % 2),
				    (uint8_t)(n[0] == '*' ? RMQ_ACL_LITERAL : RMQ_ACL_LITERAL + rand() % 2),
				    (uint8_t)(RMQ_ACL_ALL + rand() % 11),
				    (uint8_t)(RMQ_ACL_DENY + (rand() % 5 != 0))};
		cr_assert_eq(rmq_sec_add_acl(b, &e, err, sizeof(err)), 0);
	}
	cr_assert_eq(rmq_sec_done(b, m), 0);
	const struct rmq_acl *acls;
	size_t n = rmq_sec_acls(m, &acls);
	cr_assert_gt(n, 2000);
	for (int i = 0; i < 3000; i++) {
		char p[32], name[32];
		snprintf(p, sizeof(p), "User:u%d", rand() % 22);
		snprintf(name, sizeof(name), "t%d", rand() % 400);
		int res = RMQ_ACL_TOPIC + rand() % 2, op = RMQ_ACL_READ + rand() % 10;
		bool deny = false, allow = false;
		for (size_t k = 0; k < n; k++) {
			if (!rmq_acl_matches(&acls[k], p, res, name, op))
				continue;
			deny |= acls[k].perm == RMQ_ACL_DENY;
			allow |= acls[k].perm == RMQ_ACL_ALLOW;
		}
		cr_assert_eq(ALLOWED(m, p, res, name, op), !deny && allow, "%s %d %s %d", p, res, name, op);
	}
	rmq_meta_free(m);
}

Test(acl, entry_checks)
{
	char err[256];
	struct rmq_acl ok = {"User:a", "t", RMQ_ACL_TOPIC, RMQ_ACL_LITERAL, RMQ_ACL_READ, RMQ_ACL_ALLOW};
	cr_assert_eq(rmq_acl_check(&ok, "", err, sizeof(err)), 0);
	cr_assert_lt(rmq_acl_check(&ok, "10.0.0.1", err, sizeof(err)), 0);
	struct rmq_acl e = ok;
	e.principal = "alice";
	cr_assert_lt(rmq_acl_check(&e, "*", err, sizeof(err)), 0);
	e = ok;
	e.name = "";
	cr_assert_lt(rmq_acl_check(&e, "*", err, sizeof(err)), 0);
	e = ok;
	e.op = RMQ_ACL_OP_ANY;
	cr_assert_lt(rmq_acl_check(&e, "*", err, sizeof(err)), 0);
	e = ok;
	e.op = 13;
	cr_assert_lt(rmq_acl_check(&e, "*", err, sizeof(err)), 0);
	e = ok;
	e.resource = RMQ_ACL_RES_ANY;
	cr_assert_lt(rmq_acl_check(&e, "*", err, sizeof(err)), 0);
	e = ok;
	e.perm = RMQ_ACL_PERM_ANY;
	cr_assert_lt(rmq_acl_check(&e, "*", err, sizeof(err)), 0);
	e = ok;
	e.pattern = RMQ_ACL_PREFIXED;
	e.name = "*";
	cr_assert_lt(rmq_acl_check(&e, "*", err, sizeof(err)), 0);
	e = ok;
	e.resource = RMQ_ACL_CLUSTER;
	cr_assert_lt(rmq_acl_check(&e, "*", err, sizeof(err)), 0);
	char big[300];
	memset(big, 'a', sizeof(big) - 1);
	big[sizeof(big) - 1] = '\0';
	e = ok;
	e.name = big;
	cr_assert_lt(rmq_acl_check(&e, "*", err, sizeof(err)), 0);
}

Test(acl, verifier_shape)
{
	char err[256];
	int mech;
	uint32_t it;
	cr_assert_eq(rmq_sec_check_verifier("SCRAM-SHA-256:4096:c2FsdA==:AAAA:BBBB", &mech, &it, err,
					    sizeof(err)), 0, "%s", err);
	cr_assert_eq(mech, RMQ_SCRAM_SHA256);
	cr_assert_eq(it, 4096);
	cr_assert_eq(rmq_sec_check_verifier("SCRAM-SHA-512:10000:c2FsdA==:AAAA:BBBB", &mech, &it, err,
					    sizeof(err)), 0);
	cr_assert_eq(mech, RMQ_SCRAM_SHA512);
	const char *bad[] = {
		"", "secret", "SCRAM-SHA-1:4096:c2FsdA==:AAAA:BBBB", "SCRAM-SHA-256:4096:c2FsdA==:AAAA",
		"SCRAM-SHA-256:4096:c2FsdA==:AAAA:BBBB:CCCC", "SCRAM-SHA-256:x:c2FsdA==:AAAA:BBBB",
		"SCRAM-SHA-256:0:c2FsdA==:AAAA:BBBB", "SCRAM-SHA-256:4096:c2Fsd!==:AAAA:BBBB",
		"SCRAM-SHA-256:4096::AAAA:BBBB", "SCRAM-SHA-256:99999999999:c2FsdA==:AAAA:BBBB",
	};
	for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++)
		cr_assert_lt(rmq_sec_check_verifier(bad[i], &mech, &it, err, sizeof(err)), 0, "%s",
			     bad[i]);
}

Test(acl, quotas_own_then_default)
{
	struct rmq_meta *m = meta();
	struct rmq_quota q;
	cr_assert_not(rmq_quota_for(m, "User:a", &q));
	struct rmq_sec_builder *b = rmq_sec_edit(m);
	char err[256];
	cr_assert_eq(rmq_sec_set_quota(b, "", 0, 1000, err, sizeof(err)), 0);
	cr_assert_eq(rmq_sec_set_quota(b, "", 2, 50, err, sizeof(err)), 0);
	cr_assert_eq(rmq_sec_set_quota(b, "User:a", 0, 5000, err, sizeof(err)), 0);
	cr_assert_eq(rmq_sec_done(b, m), 0);
	cr_assert(rmq_quota_for(m, "User:a", &q));
	cr_assert_eq(q.produce_bps, 5000);
	cr_assert_eq(q.fetch_bps, 0);
	cr_assert_eq(q.request_rate, 50);
	cr_assert(rmq_quota_for(m, "User:b", &q));
	cr_assert_eq(q.produce_bps, 1000);
	/* Unsetting a's only key removes its entry. */
	b = rmq_sec_edit(m);
	cr_assert_eq(rmq_sec_set_quota(b, "User:a", 0, 0, err, sizeof(err)), 0);
	cr_assert_eq(rmq_sec_done(b, m), 0);
	const struct rmq_quota *qs;
	cr_assert_eq(rmq_sec_quotas(m, &qs), 1);
	rmq_meta_free(m);
}

/* Users, ACLs and quotas survive the state's encoding (commands and
 * snapshots), and copies of a snapshot share them. */
Test(acl, state_roundtrip)
{
	struct rmq_meta *m = meta();
	struct rmq_sec_builder *b = rmq_sec_edit(m);
	char err[256];
	cr_assert_eq(rmq_sec_set_verifier(b, "alice", RMQ_SCRAM_SHA256,
					  "SCRAM-SHA-256:4096:c2FsdA==:AAAA:BBBB", err, sizeof(err)), 0);
	cr_assert_eq(rmq_sec_set_verifier(b, "alice", RMQ_SCRAM_SHA512,
					  "SCRAM-SHA-512:4096:c2FsdA==:AAAA:BBBB", err, sizeof(err)), 0);
	cr_assert_eq(rmq_sec_set_verifier(b, "bob", RMQ_SCRAM_SHA256,
					  "SCRAM-SHA-256:8192:c2FsdA==:AAAA:CCCC", err, sizeof(err)), 0);
	struct rmq_acl e = {"User:alice", "orders", RMQ_ACL_TOPIC, RMQ_ACL_PREFIXED, RMQ_ACL_READ,
			    RMQ_ACL_ALLOW};
	cr_assert_eq(rmq_sec_add_acl(b, &e, err, sizeof(err)), 0);
	cr_assert_eq(rmq_sec_set_quota(b, "User:bob", 1, 77, err, sizeof(err)), 0);
	cr_assert_eq(rmq_sec_done(b, m), 0);
	struct rmq_meta *c = rmq_meta_copy(m, 0);
	cr_assert_eq(c->sec, m->sec);
	rmq_meta_free(m);
	uint8_t *buf;
	size_t len;
	cr_assert_eq(rmq_meta_encode(c, 0, &buf, &len), 0);
	struct rmq_topic_config d = {0};
	struct rmq_meta *back;
	cr_assert_eq(rmq_meta_decode(buf, len, &d, &back), 0);
	free(buf);
	const struct rmq_user *u;
	cr_assert_eq(rmq_sec_users(back, &u), 2);
	cr_assert_str_eq(u[0].name, "alice");
	cr_assert_str_eq(u[0].verifier[RMQ_SCRAM_SHA512], "SCRAM-SHA-512:4096:c2FsdA==:AAAA:BBBB");
	cr_assert_null(u[1].verifier[RMQ_SCRAM_SHA512]);
	cr_assert(ALLOWED(back, "User:alice", RMQ_ACL_TOPIC, "orders-eu", RMQ_ACL_READ));
	struct rmq_quota q;
	cr_assert(rmq_quota_for(back, "User:bob", &q));
	cr_assert_eq(q.fetch_bps, 77);
	/* Deleting a user's mechanisms one by one removes it with the last. */
	b = rmq_sec_edit(back);
	cr_assert_eq(rmq_sec_remove_user(b, "alice", RMQ_SCRAM_SHA256, err, sizeof(err)), 0);
	cr_assert_not_null(b);
	cr_assert_eq(rmq_sec_remove_user(b, "alice", RMQ_SCRAM_SHA256, err, sizeof(err)), -1);
	cr_assert_eq(rmq_sec_remove_user(b, "alice", RMQ_SCRAM_SHA512, err, sizeof(err)), 0);
	cr_assert_eq(rmq_sec_remove_user(b, "alice", -1, err, sizeof(err)), -1);
	cr_assert_eq(rmq_sec_done(b, back), 0);
	cr_assert_null(rmq_sec_user(back, "alice"));
	cr_assert_not_null(rmq_sec_user(back, "bob"));
	rmq_meta_free(back);
	rmq_meta_free(c);
}

/* Many principals on one name (the principal searched within the name),
 * and prefixes of several lengths of one name. */
Test(acl, many_principals_one_name)
{
	struct rmq_meta *m = meta();
	struct rmq_sec_builder *b = rmq_sec_edit(m);
	char err[256];
	for (int i = 0; i < 500; i++) {
		char p[32];
		snprintf(p, sizeof(p), "User:u%03d", i);
		struct rmq_acl e = {p, "pay", RMQ_ACL_TOPIC, RMQ_ACL_PREFIXED,
				    (uint8_t)(i % 2 ? RMQ_ACL_WRITE : RMQ_ACL_READ), RMQ_ACL_ALLOW};
		cr_assert_eq(rmq_sec_add_acl(b, &e, err, sizeof(err)), 0);
		e.name = "payments";
		e.pattern = RMQ_ACL_LITERAL;
		e.perm = i % 3 ? RMQ_ACL_ALLOW : RMQ_ACL_DENY;
		cr_assert_eq(rmq_sec_add_acl(b, &e, err, sizeof(err)), 0);
	}
	struct rmq_acl w = {"User:*", "paym", RMQ_ACL_TOPIC, RMQ_ACL_PREFIXED, RMQ_ACL_DESCRIBE,
			    RMQ_ACL_ALLOW};
	cr_assert_eq(rmq_sec_add_acl(b, &w, err, sizeof(err)), 0);
	cr_assert_eq(rmq_sec_done(b, m), 0);
	for (int i = 0; i < 500; i++) {
		char p[32];
		snprintf(p, sizeof(p), "User:u%03d", i);
		int op = i % 2 ? RMQ_ACL_WRITE : RMQ_ACL_READ, other = i % 2 ? RMQ_ACL_READ : RMQ_ACL_WRITE;
		cr_assert_eq(ALLOWED(m, p, RMQ_ACL_TOPIC, "payments", op), i % 3 != 0, "%s", p);
		cr_assert(ALLOWED(m, p, RMQ_ACL_TOPIC, "pay-eu", op), "%s", p);
		cr_assert_not(ALLOWED(m, p, RMQ_ACL_TOPIC, "pay-eu", other), "%s", p);
		cr_assert_not(ALLOWED(m, p, RMQ_ACL_TOPIC, "pa", op), "%s", p);
	}
	cr_assert(ALLOWED(m, "User:nobody", RMQ_ACL_TOPIC, "payments", RMQ_ACL_DESCRIBE));
	cr_assert_not(ALLOWED(m, "User:nobody", RMQ_ACL_TOPIC, "pay-eu", RMQ_ACL_DESCRIBE));
	cr_assert_not(ALLOWED(m, "User:nobody", RMQ_ACL_TOPIC, "payments", RMQ_ACL_READ));
	rmq_meta_free(m);
}
