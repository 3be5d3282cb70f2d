/* SPDX-License-Identifier: Apache-2.0 */
/*
 * test_assign.c - the partition assignors (src/broker/assign.c): Kafka's
 * documented examples, edge cases, sticky movement after joins and
 * leaves, rmq_assign_choose(), and a seeded property test that checks
 * every assignor's invariants over a few hundred random groups (range and
 * roundrobin also against naive reference implementations).
 */
#include "broker/assign.h"

#include <criterion/criterion.h>
#include <errno.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define NOWN 0xffffffffu

/* "t0-0,t0-1,t1-0" from a member's out, into buf. */
static const char *fmt(const struct rmq_assign_member *m, char *buf, size_t len)
{
	size_t off = 0;

	buf[0] = '\0';
	for (size_t i = 0; i < m->nout && off < len; i++)
		off += (size_t)snprintf(buf + off, len - off, "%s%s-%u", i ? "," : "",
					m->out[i].topic, m->out[i].partition);
	return buf;
}

#define EXPECT(m, want)                                                          \
	do {                                                                     \
		char buf_[1024];                                                 \
		cr_expect_str_eq(fmt((m), buf_, sizeof(buf_)), (want), "%s",    \
				 (m)->member_id);                                \
	} while (0)

static const char *const t01[] = {"t0", "t1"};
static const struct rmq_assign_topic two_by_three[] = {{"t0", 3}, {"t1", 3}};

Test(assign, names_parse_and_print)
{
	cr_expect_eq(rmq_assignor_parse("range"), RMQ_ASSIGN_RANGE);
	cr_expect_eq(rmq_assignor_parse("roundrobin"), RMQ_ASSIGN_ROUNDROBIN);
	cr_expect_eq(rmq_assignor_parse("sticky"), RMQ_ASSIGN_STICKY);
	cr_expect_eq(rmq_assignor_parse("cooperative-sticky"), -1);
	cr_expect_eq(rmq_assignor_parse("Range"), -1);
	cr_expect_eq(rmq_assignor_parse(NULL), -1);
	cr_expect_str_eq(rmq_assignor_name(RMQ_ASSIGN_STICKY), "sticky");
	cr_expect_null(rmq_assignor_name((enum rmq_assignor)7));
}

Test(assign, range_two_members_two_topics)
{
	struct rmq_assign_member m[] = {{.member_id = "C1", .topics = t01, .ntopics = 2},
					{.member_id = "C0", .topics = t01, .ntopics = 2}};

	cr_assert_eq(rmq_assign(RMQ_ASSIGN_RANGE, two_by_three, 2, m, 2), 0);
	EXPECT(&m[1], "t0-0,t0-1,t1-0,t1-1");
	EXPECT(&m[0], "t0-2,t1-2");
	/* out points at the table's names. */
	cr_expect_eq(m[1].out[0].topic, two_by_three[0].name);
	cr_expect_eq(m[1].out[2].topic, two_by_three[1].name);
	rmq_assign_free(m, 2);
	cr_expect_null(m[0].out);
	cr_expect_eq(m[0].nout, 0);
}

Test(assign, roundrobin_two_members_two_topics)
{
	struct rmq_assign_member m[] = {{.member_id = "C0", .topics = t01, .ntopics = 2},
					{.member_id = "C1", .topics = t01, .ntopics = 2}};

	cr_assert_eq(rmq_assign(RMQ_ASSIGN_ROUNDROBIN, two_by_three, 2, m, 2), 0);
	EXPECT(&m[0], "t0-0,t0-2,t1-1");
	EXPECT(&m[1], "t0-1,t1-0,t1-2");
	rmq_assign_free(m, 2);
}

/* Kafka's RoundRobinAssignor documentation: C0 subscribes t0, C1 t0 and
 * t1, C2 t0, t1 and t2; the topics have 1, 2 and 3 partitions. */
Test(assign, mixed_subscriptions)
{
	static const char *const s0[] = {"t0"}, *const s1[] = {"t0", "t1"},
				 *const s2[] = {"t0", "t1", "t2"};
	static const struct rmq_assign_topic tt[] = {{"t2", 3}, {"t1", 2}, {"t0", 1}};
	struct rmq_assign_member m[] = {{.member_id = "C0", .topics = s0, .ntopics = 1},
					{.member_id = "C1", .topics = s1, .ntopics = 2},
					{.member_id = "C2", .topics = s2, .ntopics = 3}};

	cr_assert_eq(rmq_assign(RMQ_ASSIGN_ROUNDROBIN, tt, 3, m, 3), 0);
	EXPECT(&m[0], "t0-0");
	EXPECT(&m[1], "t1-0");
	EXPECT(&m[2], "t1-1,t2-0,t2-1,t2-2");
	rmq_assign_free(m, 3);

	cr_assert_eq(rmq_assign(RMQ_ASSIGN_RANGE, tt, 3, m, 3), 0);
	EXPECT(&m[0], "t0-0");
	EXPECT(&m[1], "t1-0");
	EXPECT(&m[2], "t1-1,t2-0,t2-1,t2-2");
	rmq_assign_free(m, 3);

	/* Sticky balances: C2 takes t2, C1 both of t1, C0 t0. */
	cr_assert_eq(rmq_assign(RMQ_ASSIGN_STICKY, tt, 3, m, 3), 0);
	EXPECT(&m[0], "t0-0");
	EXPECT(&m[1], "t1-0,t1-1");
	EXPECT(&m[2], "t2-0,t2-1,t2-2");
	rmq_assign_free(m, 3);
}

Test(assign, unknown_and_repeated_topics_are_ignored)
{
	static const char *const s[] = {"nope", "t1", NULL, "t1", "t0"};
	static const struct rmq_assign_topic tt[] = {{"t0", 2}, {"t1", 1}, {"t0", 9}};
	struct rmq_assign_member m[] = {{.member_id = "a", .topics = s, .ntopics = 5}};

	for (int a = 0; a < 3; a++) {
		cr_assert_eq(rmq_assign(a, tt, 3, m, 1), 0);
		EXPECT(&m[0], "t0-0,t0-1,t1-0");
		cr_expect_eq(m[0].out[0].topic, tt[0].name, "first of duplicate names");
		rmq_assign_free(m, 1);
	}
}

Test(assign, nothing_to_assign)
{
	static const char *const s[] = {"t0", "t1"};
	static const struct rmq_assign_topic tt[] = {{"t0", 0}, {"t1", 0}};
	struct rmq_assign_member m[] = {{.member_id = "a", .topics = s, .ntopics = 2},
					{.member_id = "b"}};

	for (int a = 0; a < 3; a++) {
		cr_assert_eq(rmq_assign(a, NULL, 0, NULL, 0), 0);
		cr_assert_eq(rmq_assign(a, tt, 2, m, 2), 0);
		cr_expect_eq(m[0].nout + m[1].nout, 0);
		cr_expect_null(m[0].out);
		cr_assert_eq(rmq_assign(a, two_by_three, 2, m, 2), 0);
		cr_expect_eq(m[0].nout, 6, "the subscriber takes everything");
		cr_expect_eq(m[1].nout, 0, "no subscription, no partitions");
		rmq_assign_free(m, 2);
	}
}

Test(assign, more_members_than_partitions)
{
	static const char *const s[] = {"t0"};
	static const struct rmq_assign_topic tt[] = {{"t0", 2}};
	struct rmq_assign_member m[5];

	for (int i = 0; i < 5; i++)
		m[i] = (struct rmq_assign_member){.member_id = (const char *[]){"e", "d", "c", "b", "a"}[i],
						  .topics = s, .ntopics = 1};
	for (int a = 0; a < 3; a++) {
		cr_assert_eq(rmq_assign(a, tt, 1, m, 5), 0);
		EXPECT(&m[4], "t0-0");
		EXPECT(&m[3], "t0-1");
		for (int i = 0; i < 3; i++)
			cr_expect_eq(m[i].nout, 0);
		rmq_assign_free(m, 5);
	}
}

Test(assign, bad_arguments)
{
	static const struct rmq_assign_topic huge[] = {{"a", 0xC0000000u}, {"b", 0xC0000000u}};
	struct rmq_assign_member m[] = {{.member_id = "a", .topics = t01, .ntopics = 2}};

	m[0].out = (struct rmq_assign_tp *)1; /* overwritten, never freed */
	m[0].nout = 3;
	cr_expect_eq(rmq_assign((enum rmq_assignor)3, two_by_three, 2, m, 1), -EINVAL);
	cr_expect_null(m[0].out);
	cr_expect_eq(m[0].nout, 0);
	cr_expect_eq(rmq_assign(RMQ_ASSIGN_RANGE, huge, 2, m, 1), -ENOMEM);
	cr_expect_null(m[0].out);
}

/* ---- sticky ------------------------------------------------------------- */

static const char *const only_t0[] = {"t0"};

static void member(struct rmq_assign_member *m, const char *id, const char *const *topics,
		   size_t ntopics, const struct rmq_assign_tp *prev, size_t nprev)
{
	*m = (struct rmq_assign_member){.member_id = id, .topics = topics, .ntopics = ntopics,
					.prev = prev, .nprev = nprev};
}

/* How many of prev's entries m still holds. */
static size_t still_held(const struct rmq_assign_member *m, const struct rmq_assign_tp *prev,
			 size_t nprev)
{
	size_t n = 0;

	for (size_t j = 0; j < nprev; j++)
		for (size_t i = 0; i < m->nout; i++)
			if (strcmp(m->out[i].topic, prev[j].topic) == 0 &&
			    m->out[i].partition == prev[j].partition)
				n++;
	return n;
}

Test(sticky, a_leaving_member_moves_nothing_else)
{
	static const struct rmq_assign_topic tt[] = {{"t0", 12}};
	struct rmq_assign_member m[3], old[3];
	const char *ids[] = {"a", "b", "c"};

	for (int i = 0; i < 3; i++)
		member(&m[i], ids[i], only_t0, 1, NULL, 0);
	cr_assert_eq(rmq_assign(RMQ_ASSIGN_STICKY, tt, 1, m, 3), 0);
	for (int i = 0; i < 3; i++)
		cr_assert_eq(m[i].nout, 4);
	memcpy(old, m, sizeof(m));
	/* b leaves: a and c keep their four and share b's. */
	member(&m[0], "a", only_t0, 1, old[0].out, old[0].nout);
	member(&m[1], "c", only_t0, 1, old[2].out, old[2].nout);
	cr_assert_eq(rmq_assign(RMQ_ASSIGN_STICKY, tt, 1, m, 2), 0);
	cr_expect_eq(m[0].nout, 6);
	cr_expect_eq(m[1].nout, 6);
	cr_expect_eq(still_held(&m[0], old[0].out, old[0].nout), 4);
	cr_expect_eq(still_held(&m[1], old[2].out, old[2].nout), 4);
	rmq_assign_free(m, 2);
	rmq_assign_free(old, 3);
}

Test(sticky, a_joining_member_takes_only_the_excess)
{
	static const struct rmq_assign_topic tt[] = {{"t0", 7}, {"t1", 7}};
	struct rmq_assign_member m[4], old[3];
	const char *ids[] = {"b", "c", "d"};

	for (int i = 0; i < 3; i++)
		member(&m[i], ids[i], t01, 2, NULL, 0);
	cr_assert_eq(rmq_assign(RMQ_ASSIGN_STICKY, tt, 2, m, 3), 0);
	memcpy(old, m, sizeof(old));
	for (int i = 0; i < 3; i++)
		member(&m[i], ids[i], t01, 2, old[i].out, old[i].nout);
	/* "a" sorts first: a newcomer must not win ties against owners. */
	member(&m[3], "a", t01, 2, NULL, 0);
	cr_assert_eq(rmq_assign(RMQ_ASSIGN_STICKY, tt, 2, m, 4), 0);
	/* 14 over 3 was 5,5,4; over 4 it is 4,4,3,3: the two with five shed
	 * one each, whoever had four sheds one, and a takes those three. */
	size_t moved = 0, min = 99, max = 0;
	for (int i = 0; i < 4; i++) {
		min = m[i].nout < min ? m[i].nout : min;
		max = m[i].nout > max ? m[i].nout : max;
	}
	for (int i = 0; i < 3; i++) {
		size_t kept = still_held(&m[i], old[i].out, old[i].nout);
		cr_expect_eq(kept, m[i].nout, "%s gained nothing new", ids[i]);
		moved += old[i].nout - kept;
	}
	cr_expect_eq(max - min, 1);
	cr_expect_eq(moved, 3);
	cr_expect_eq(m[3].nout, 3);
	rmq_assign_free(m, 4);
	rmq_assign_free(old, 3);
}

Test(sticky, vanished_and_contested_prev)
{
	static const struct rmq_assign_topic tt[] = {{"t0", 4}};
	static const struct rmq_assign_tp pa[] = {{"t0", 0}, {"t0", 1}, {"gone", 0}, {"t0", 9}};
	static const struct rmq_assign_tp pb[] = {{"t0", 1}, {"t0", 2}, {"t0", 7}, {"t0", 2}};
	static const char *const s[] = {"t0", "gone"};
	struct rmq_assign_member m[2];

	/* a wins t0-1 (smaller member_id) whatever the array order. */
	member(&m[0], "b", s, 2, pb, 4);
	member(&m[1], "a", s, 2, pa, 4);
	cr_assert_eq(rmq_assign(RMQ_ASSIGN_STICKY, tt, 1, m, 2), 0);
	EXPECT(&m[1], "t0-0,t0-1");
	EXPECT(&m[0], "t0-2,t0-3");
	rmq_assign_free(m, 2);

	/* prev of a topic no longer subscribed is dropped. */
	member(&m[0], "b", s, 2, pb, 4);
	member(&m[1], "a", (const char *const[]){"t1"}, 1, pa, 4);
	cr_assert_eq(rmq_assign(RMQ_ASSIGN_STICKY, tt, 1, m, 2), 0);
	EXPECT(&m[1], "");
	EXPECT(&m[0], "t0-0,t0-1,t0-2,t0-3");
	rmq_assign_free(m, 2);
}

/* Mixed subscriptions: the member that alone reads t1 holds all of it and
 * the balance of t0 follows, keeping what each had. */
Test(sticky, mixed_subscriptions_stay_put)
{
	static const struct rmq_assign_topic tt[] = {{"t0", 6}, {"t1", 4}};
	static const struct rmq_assign_tp pa[] = {{"t0", 0}, {"t0", 1}, {"t0", 2}, {"t0", 3}, {"t0", 4}};
	static const struct rmq_assign_tp pb[] = {{"t0", 5}};
	struct rmq_assign_member m[2];

	member(&m[0], "a", only_t0, 1, pa, 5);
	member(&m[1], "b", t01, 2, pb, 1);
	cr_assert_eq(rmq_assign(RMQ_ASSIGN_STICKY, tt, 2, m, 2), 0);
	EXPECT(&m[0], "t0-0,t0-1,t0-2,t0-3,t0-4");
	EXPECT(&m[1], "t0-5,t1-0,t1-1,t1-2,t1-3");
	rmq_assign_free(m, 2);
	/* Without t1 both quotas are three: a sheds its two largest. */
	member(&m[0], "a", only_t0, 1, pa, 5);
	member(&m[1], "b", only_t0, 1, pb, 1);
	cr_assert_eq(rmq_assign(RMQ_ASSIGN_STICKY, tt, 2, m, 2), 0);
	EXPECT(&m[0], "t0-0,t0-1,t0-2");
	EXPECT(&m[1], "t0-3,t0-4,t0-5");
	rmq_assign_free(m, 2);
}

/* 100k partitions over 999 members, then a thousandth joins: it takes one
 * from each of the 100 members that had 101, nothing else moves. */
Test(sticky, large_group_join)
{
	enum { M = 1000, P = 100000 };
	static const struct rmq_assign_topic tt[] = {{"t0", P}};
	static struct rmq_assign_member m[M], old[M];
	static char ids[M][8];

	for (int i = 0; i < M; i++) {
		snprintf(ids[i], sizeof(ids[i]), "m%04d", i);
		member(&m[i], ids[i], only_t0, 1, NULL, 0);
	}
	cr_assert_eq(rmq_assign(RMQ_ASSIGN_STICKY, tt, 1, m, M - 1), 0);
	memcpy(old, m, sizeof(m));
	for (int i = 0; i < M - 1; i++)
		member(&m[i], ids[i], only_t0, 1, old[i].out, old[i].nout);
	cr_assert_eq(rmq_assign(RMQ_ASSIGN_STICKY, tt, 1, m, M), 0);
	size_t moved = 0;
	for (int i = 0; i < M; i++)
		cr_assert_eq(m[i].nout, P / M);
	for (int i = 0; i < M - 1; i++)
		moved += old[i].nout - still_held(&m[i], old[i].out, old[i].nout);
	cr_expect_eq(moved, P / M);
	rmq_assign_free(m, M);
	rmq_assign_free(old, M - 1);
}

/* ---- rmq_assign_choose ---------------------------------------------------- */

#define LIST(...) (const char *const[]){__VA_ARGS__}, sizeof((const char *[]){__VA_ARGS__}) / sizeof(char *)

static struct rmq_assign_member pref(const char *const *list, size_t n)
{
	return (struct rmq_assign_member){.member_id = "x", .assignors = list, .nassignors = n};
}

Test(choose, common_preference)
{
	struct rmq_assign_member m[] = {pref(LIST("range", "sticky")),
					pref(LIST("sticky", "range")),
					pref(LIST("sticky", "roundrobin", "range"))};

	cr_expect_eq(rmq_assign_choose(m, 3), RMQ_ASSIGN_STICKY);
	cr_expect_eq(rmq_assign_choose(m, 1), RMQ_ASSIGN_RANGE);
	cr_expect_eq(rmq_assign_choose(m, 0), -1);
}

Test(choose, first_common_choice_counts)
{
	/* roundrobin is everyone's favourite but a lacks it, so b and c vote
	 * for their first common choice, sticky. */
	struct rmq_assign_member m[] = {pref(LIST("range", "sticky")),
					pref(LIST("roundrobin", "sticky", "range")),
					pref(LIST("roundrobin", "sticky", "range"))};

	cr_expect_eq(rmq_assign_choose(m, 3), RMQ_ASSIGN_STICKY);
}

Test(choose, ties_go_to_the_oldest_members_order)
{
	struct rmq_assign_member m[] = {pref(LIST("roundrobin", "sticky", "range")),
					pref(LIST("sticky", "roundrobin")),
					pref(LIST("roundrobin", "sticky")),
					pref(LIST("sticky", "roundrobin"))};

	cr_expect_eq(rmq_assign_choose(m, 4), RMQ_ASSIGN_ROUNDROBIN, "2 to 2, roundrobin first in m[0]");
	m[0] = pref(LIST("sticky", "roundrobin"));
	m[2] = pref(LIST("roundrobin", "sticky"));
	m[3] = pref(LIST("roundrobin", "sticky"));
	m[1] = pref(LIST("roundrobin", "range", "sticky"));
	cr_expect_eq(rmq_assign_choose(m, 4), RMQ_ASSIGN_ROUNDROBIN, "3 votes to 1");
	m[1] = pref(LIST("sticky", "roundrobin"));
	cr_expect_eq(rmq_assign_choose(m, 4), RMQ_ASSIGN_STICKY, "2 to 2, sticky first in m[0]");
}

Test(choose, nothing_common)
{
	struct rmq_assign_member m[] = {pref(LIST("sticky")), pref(LIST("roundrobin")),
					pref(LIST("bogus"))};

	cr_expect_eq(rmq_assign_choose(m, 2), -1);
	cr_expect_eq(rmq_assign_choose(m + 2, 1), -1, "only unknown names");
}

Test(choose, empty_list_means_range)
{
	struct rmq_assign_member m[] = {pref(LIST("sticky", "range")), pref(NULL, 0)};

	cr_expect_eq(rmq_assign_choose(m, 2), RMQ_ASSIGN_RANGE);
	m[0] = pref(LIST("sticky"));
	cr_expect_eq(rmq_assign_choose(m, 2), -1);
	cr_expect_eq(rmq_assign_choose(m + 1, 1), RMQ_ASSIGN_RANGE);
}

Test(choose, unknown_names_are_skipped)
{
	struct rmq_assign_member m[] = {pref(LIST("cooperative-sticky", "roundrobin", "range")),
					pref(LIST("custom", "roundrobin")),
					pref(LIST("roundrobin", "x", "range"))};

	cr_expect_eq(rmq_assign_choose(m, 3), RMQ_ASSIGN_ROUNDROBIN);
}

/* ---- property test --------------------------------------------------------- */

#define MAXT 6
#define MAXM 9
#define MAXP 12
#define MAXPREV (MAXT * MAXP + 8)

struct scene {
	char tname[MAXT][4];
	struct rmq_assign_topic topics[MAXT];
	size_t nt;
	char id[MAXM][4];
	const char *subs[MAXM][MAXT + 1];
	struct rmq_assign_tp prev[MAXM][MAXPREV];
	struct rmq_assign_member m[MAXM];
	size_t n;
};

static uint64_t rng;

static uint32_t rnd(uint32_t n)
{
	rng ^= rng << 13;
	rng ^= rng >> 7;
	rng ^= rng << 17;
	return n ? (uint32_t)(rng % n) : 0;
}

static bool subscribes(const struct rmq_assign_member *m, const char *topic)
{
	for (size_t j = 0; j < m->ntopics; j++)
		if (strcmp(m->topics[j], topic) == 0)
			return true;
	return false;
}

/* Whether every member subscribes to the same topics of the table. */
static bool same_subs(const struct scene *s)
{
	for (size_t i = 1; i < s->n; i++)
		for (size_t t = 0; t < s->nt; t++)
			if (subscribes(&s->m[i], s->tname[t]) != subscribes(&s->m[0], s->tname[t]))
				return false;
	return true;
}

/* Members in member_id order. */
static void by_id(const struct scene *s, size_t *ord)
{
	for (size_t i = 0; i < s->n; i++)
		ord[i] = i;
	for (size_t i = 1; i < s->n; i++)
		for (size_t j = i; j > 0 && strcmp(s->m[ord[j - 1]].member_id, s->m[ord[j]].member_id) > 0; j--) {
			size_t x = ord[j];
			ord[j] = ord[j - 1];
			ord[j - 1] = x;
		}
}

/* owner[t][p] from the outs, checking each out is sorted, points into the
 * table, and names each partition once. */
static void owners(const struct scene *s, uint32_t owner[MAXT][MAXP])
{
	for (size_t t = 0; t < MAXT; t++)
		for (size_t p = 0; p < MAXP; p++)
			owner[t][p] = NOWN;
	for (size_t i = 0; i < s->n; i++) {
		const struct rmq_assign_member *m = &s->m[i];
		for (size_t j = 0; j < m->nout; j++) {
			size_t t = 0;
			while (t < s->nt && m->out[j].topic != s->topics[t].name)
				t++;
			cr_assert_lt(t, s->nt, "out names a table entry");
			cr_assert_lt(m->out[j].partition, s->topics[t].partitions);
			cr_assert_eq(owner[t][m->out[j].partition], NOWN, "assigned twice");
			owner[t][m->out[j].partition] = (uint32_t)i;
			if (j)
				cr_assert(strcmp(m->out[j - 1].topic, m->out[j].topic) < 0 ||
					  (m->out[j - 1].topic == m->out[j].topic &&
					   m->out[j - 1].partition < m->out[j].partition), "sorted");
		}
	}
}

static void random_scene(struct scene *s)
{
	uint32_t perm[MAXM];

	memset(s, 0, sizeof(*s));
	s->nt = rnd(MAXT + 1);
	for (size_t t = 0; t < s->nt; t++) {
		s->tname[t][0] = 't';
		s->tname[t][1] = (char)('0' + s->nt - 1 - t);
		s->topics[t] = (struct rmq_assign_topic){s->tname[t], rnd(4) ? rnd(MAXP + 1) : 0};
	}
	s->n = rnd(MAXM + 1);
	for (uint32_t i = 0; i < MAXM; i++)
		perm[i] = i;
	for (uint32_t i = MAXM; i > 1; i--) {
		uint32_t j = rnd(i), x = perm[i - 1];
		perm[i - 1] = perm[j];
		perm[j] = x;
	}
	bool uniform = rnd(3) == 0;
	for (size_t i = 0; i < s->n; i++) {
		struct rmq_assign_member *m = &s->m[i];
		s->id[i][0] = 'm';
		s->id[i][1] = (char)('0' + perm[i]);
		m->member_id = s->id[i];
		m->topics = s->subs[i];
		for (size_t t = 0; t < MAXT; t++)
			if (uniform ? (t % 2 == 0) : rnd(2))
				s->subs[i][m->ntopics++] = (const char *[]){"t0", "t1", "t2", "t3", "t4", "t5"}[t];
		if (!uniform && rnd(4) == 0)
			s->subs[i][m->ntopics++] = "gone";
		/* prev: random partitions, some out of range or of unknown
		 * topics, some claimed by several members. */
		m->prev = s->prev[i];
		uint32_t np = rnd(MAXPREV);
		for (uint32_t j = 0; j < np; j++)
			s->prev[i][m->nprev++] = (struct rmq_assign_tp){
				rnd(8) ? (const char *[]){"t0", "t1", "t2", "t3", "t4", "t5"}[rnd(MAXT)] : "gone",
				rnd(MAXP + 2)};
	}
}

/* Kafka's range and roundrobin, written the slow obvious way. */
static void reference(const struct scene *s, int a, uint32_t want[MAXT][MAXP])
{
	size_t ord[MAXM], turn = 0;

	by_id(s, ord);
	/* Topics in name order: the table here lists them descending. */
	for (size_t ti = s->nt; ti-- > 0;) {
		size_t sub[MAXM], nsub = 0;
		uint32_t parts = s->topics[ti].partitions;
		for (size_t i = 0; i < s->n; i++)
			if (subscribes(&s->m[ord[i]], s->topics[ti].name))
				sub[nsub++] = ord[i];
		for (uint32_t p = 0; p < MAXP; p++)
			want[ti][p] = NOWN;
		for (uint32_t p = 0; p < parts && nsub; p++) {
			if (a == RMQ_ASSIGN_RANGE) {
				uint32_t q = parts / nsub, r = parts % nsub;
				uint32_t k = p < r * (q + 1) ? p / (q + 1) : r + (p - r * (q + 1)) / q;
				want[ti][p] = (uint32_t)sub[k];
				continue;
			}
			while (!subscribes(&s->m[ord[turn % s->n]], s->topics[ti].name))
				turn++;
			want[ti][p] = (uint32_t)ord[turn++ % s->n];
		}
	}
}

static size_t count(const uint32_t owner[MAXT][MAXP], const struct scene *s, uint32_t i)
{
	size_t c = 0;

	for (size_t t = 0; t < s->nt; t++)
		for (uint32_t p = 0; p < s->topics[t].partitions; p++)
			c += owner[t][p] == i;
	return c;
}

static void check_invariants(const struct scene *s, int a, uint32_t owner[MAXT][MAXP])
{
	size_t cnt[MAXM];

	owners(s, owner);
	for (uint32_t i = 0; i < s->n; i++)
		cnt[i] = count(owner, s, i);
	for (size_t t = 0; t < s->nt; t++) {
		bool any = false;
		for (size_t i = 0; i < s->n; i++)
			any |= subscribes(&s->m[i], s->topics[t].name);
		for (uint32_t p = 0; p < s->topics[t].partitions; p++) {
			uint32_t o = owner[t][p];
			cr_assert_eq(o != NOWN, any, "%s-%u owned iff subscribed", s->tname[t], p);
			if (o == NOWN)
				continue;
			cr_assert(subscribes(&s->m[o], s->topics[t].name), "eligible owner");
			for (size_t i = 0; a == RMQ_ASSIGN_STICKY && i < s->n; i++)
				if (subscribes(&s->m[i], s->topics[t].name))
					cr_assert_geq(cnt[i] + 1, cnt[o], "%s-%u could move %s → %s",
						      s->tname[t], p, s->id[o], s->id[i]);
		}
	}
	if (a == RMQ_ASSIGN_RANGE)
		return;
	/* With identical subscriptions every assignor but range is even. */
	bool same = same_subs(s);
	for (size_t i = 0; same && i < s->n; i++)
		for (size_t j = 0; j < s->n; j++)
			cr_assert_leq(cnt[i], cnt[j] + 1, "even");
}

/* Sticky: the claims that prev makes valid (first claimant by member_id),
 * as claim[t][p]; and, with identical subscriptions, the fewest kept
 * partitions any balanced assignment must move. */
static size_t claims(const struct scene *s, uint32_t claim[MAXT][MAXP], bool *same)
{
	size_t ord[MAXM], kept[MAXM] = {0}, total = 0, least = 0;

	by_id(s, ord);
	for (size_t t = 0; t < MAXT; t++)
		for (size_t p = 0; p < MAXP; p++)
			claim[t][p] = NOWN;
	for (size_t i = 0; i < s->n; i++) {
		const struct rmq_assign_member *m = &s->m[ord[i]];
		for (size_t j = 0; j < m->nprev; j++)
			for (size_t t = 0; t < s->nt; t++)
				if (strcmp(m->prev[j].topic, s->tname[t]) == 0 && subscribes(m, s->tname[t]) &&
				    m->prev[j].partition < s->topics[t].partitions &&
				    claim[t][m->prev[j].partition] == NOWN) {
					claim[t][m->prev[j].partition] = (uint32_t)ord[i];
					kept[ord[i]]++;
				}
	}
	*same = s->n > 0 && same_subs(s);
	for (size_t t = 0; *same && t < s->nt; t++)
		if (subscribes(&s->m[0], s->tname[t]))
			total += s->topics[t].partitions;
	/* The P%M members with the most kept keep one more. */
	for (size_t r = 0; *same && r < s->n; r++) {
		size_t best = 0;
		for (size_t i = 1; i < s->n; i++)
			best = kept[i] > kept[best] ? i : best;
		size_t quota = total / s->n + (r < total % s->n);
		least += kept[best] > quota ? kept[best] - quota : 0;
		kept[best] = 0;
	}
	return least;
}

static bool same_outs(const struct rmq_assign_member *x, const struct rmq_assign_member *y)
{
	if (x->nout != y->nout)
		return false;
	for (size_t i = 0; i < x->nout; i++)
		if (x->out[i].topic != y->out[i].topic || x->out[i].partition != y->out[i].partition)
			return false;
	return true;
}

Test(property, random_groups)
{
	static struct scene s, p;
	uint32_t owner[MAXT][MAXP], want[MAXT][MAXP], claim[MAXT][MAXP];

	rng = 0x9E3779B97F4A7C15ull;
	for (int iter = 0; iter < 400; iter++) {
		random_scene(&s);
		for (int a = 0; a < 3; a++) {
			cr_assert_eq(rmq_assign(a, s.topics, s.nt, s.m, s.n), 0);
			check_invariants(&s, a, owner);
			if (a != RMQ_ASSIGN_STICKY) {
				reference(&s, a, want);
				for (size_t t = 0; t < s.nt; t++)
					cr_assert_arr_eq(owner[t], want[t], sizeof(want[t]),
							 "case %d: %s differs from Kafka's", iter,
							 rmq_assignor_name(a));
			} else {
				bool same;
				size_t least = claims(&s, claim, &same), moved = 0;
				for (size_t t = 0; t < s.nt; t++)
					for (uint32_t q = 0; q < s.topics[t].partitions; q++)
						moved += claim[t][q] != NOWN && claim[t][q] != owner[t][q];
				/* Nobody gives up a partition of its own while it
				 * holds someone else's of the same topic. */
				for (size_t t = 0; t < s.nt; t++) {
					for (uint32_t i = 0; i < s.n; i++) {
						bool lost = false, other = false;
						for (uint32_t q = 0; q < s.topics[t].partitions; q++) {
							lost |= claim[t][q] == i && owner[t][q] != i;
							other |= owner[t][q] == i && claim[t][q] != i;
						}
						cr_assert(!lost || !other, "case %d: %s swaps %s", iter,
							  s.id[i], s.tname[t]);
					}
				}
				if (same)
					cr_assert_eq(moved, least, "case %d: moved %zu, needed %zu", iter,
						     moved, least);
			}
			/* The same members in reverse order get the same result. */
			p = s;
			for (size_t i = 0; i < s.n; i++) {
				p.m[i] = s.m[s.n - 1 - i];
				p.m[i].out = NULL;
			}
			cr_assert_eq(rmq_assign(a, p.topics, p.nt, p.m, p.n), 0);
			for (size_t i = 0; i < s.n; i++)
				cr_assert(same_outs(&s.m[s.n - 1 - i], &p.m[i]), "case %d: order matters",
					  iter);
			rmq_assign_free(p.m, p.n);
			/* Sticky on its own balanced output moves nothing. */
			if (a == RMQ_ASSIGN_STICKY) {
				for (size_t i = 0; i < s.n; i++) {
					p.m[i] = s.m[i];
					p.m[i].prev = s.m[i].out;
					p.m[i].nprev = s.m[i].nout;
				}
				cr_assert_eq(rmq_assign(a, p.topics, p.nt, p.m, p.n), 0);
				for (size_t i = 0; i < s.n; i++)
					cr_assert(same_outs(&s.m[i], &p.m[i]), "case %d: not stable", iter);
				rmq_assign_free(p.m, p.n);
			}
			rmq_assign_free(s.m, s.n);
		}
	}
}
