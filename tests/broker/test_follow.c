/* SPDX-License-Identifier: Apache-2.0 */
/*
 * test_follow.c - a follower's decisions on its leader's ReplicateData
 * (broker/follow.c), on a real log.
 *
 * The follower's log holds the storage tests' batch sequence 0..119
 * (su_gen_batch: batch i in leader epoch i / 50, so epochs 0, 1 and 2);
 * requests are made of those batches' headers, some changed.
 */
#include "../storage/storage_util.h"

#include "broker/errcode.h"
#include "broker/follow.h"
#include "core/error.h"
#include "core/pbwire.h"

#include <criterion/criterion.h>
#include <inttypes.h>
#include <stdlib.h>
#include <string.h>

#define N 120

static struct su_env env;
static struct su_batches m;

static void setup(void)
{
	su_env_init(&env);
	cr_assert_eq(su_open(&env), 0);
	m = (struct su_batches){0};
	su_append_seq(&env, 0, N, 2000, true, 10, &m);
	su_wait_idle(&env);
}

static void teardown(void)
{
	su_batches_free(&m);
	su_env_fini(&env);
}

TestSuite(follow, .init = setup, .fini = teardown, .timeout = 60);

static uint64_t end_of(size_t i)
{
	return rmq_batch_last_offset(&m.v[i].hdr) + 1;
}

/* A request of the model's batches [a, b), sent in epoch `epoch`. */
static struct rmq_follow_plan plan(size_t a, size_t b, uint32_t epoch, uint32_t known,
				   struct rmq_batch_hdr *hdrs)
{
	struct rmq_follow_req req = {
		.leader_epoch = epoch,
		.prev_end = a ? end_of(a - 1) : 0,
		.prev_epoch = a ? m.v[a - 1].hdr.leader_epoch : 0,
		.n = b - a,
		.hdrs = hdrs,
	};
	for (size_t i = a; i < b; i++)
		hdrs[i - a] = m.v[i].hdr;
	struct rmq_follow_plan p;
	rmq_follow_plan(env.log, known, &req, &p);
	return p;
}

static struct rmq_batch_hdr hdrs[N];

Test(follow, epochs_older_or_newer_than_known_are_refused)
{
	struct rmq_follow_plan p = plan(N, N, 3, 4, hdrs);
	cr_assert_eq(p.code, EC_STALE_EPOCH, "%s", p.why);
	p = plan(N, N, 5, 4, hdrs);
	cr_assert_eq(p.code, EC_UNKNOWN_LEADER_EPOCH, "%s", p.why);
}

Test(follow, the_next_batches_are_appended)
{
	/* A probe at the log's end, then batches after it (the leader's
	 * own, in epoch 3). */
	struct rmq_follow_plan p = plan(N, N, 3, 3, hdrs);
	cr_assert_eq(p.code, EC_OK, "%s", p.why);
	cr_assert(!p.diverging);
	cr_assert_eq(p.truncate_to, UINT64_MAX);
	struct rmq_batch_hdr next = m.v[N - 1].hdr;
	next.base_offset = end_of(N - 1);
	next.leader_epoch = 3;
	struct rmq_follow_req req = {.leader_epoch = 3, .prev_end = end_of(N - 1),
				     .prev_epoch = 2, .n = 1, .hdrs = &next};
	rmq_follow_plan(env.log, 3, &req, &p);
	cr_assert_eq(p.code, EC_OK, "%s", p.why);
	cr_assert_eq(p.first, 0);
	cr_assert_eq(p.truncate_to, UINT64_MAX);
}

Test(follow, a_gap_is_refused)
{
	struct rmq_batch_hdr next = m.v[N - 1].hdr;
	next.base_offset = end_of(N - 1) + 5;
	struct rmq_follow_req req = {.leader_epoch = 3, .prev_end = next.base_offset,
				     .prev_epoch = 2, .n = 1, .hdrs = &next};
	struct rmq_follow_plan p;
	rmq_follow_plan(env.log, 3, &req, &p);
	cr_assert_eq(p.code, EC_OFFSET_OUT_OF_RANGE, "%s", p.why);
}

Test(follow, batches_held_already_are_skipped)
{
	struct rmq_follow_plan p = plan(100, N, 3, 3, hdrs);
	cr_assert_eq(p.code, EC_OK, "%s", p.why);
	cr_assert(!p.diverging);
	cr_assert_eq(p.truncate_to, UINT64_MAX);
	cr_assert_eq(p.first, N - 100, "every batch held: none to append");
}

/* The leader's log has epoch 3 from batch 110 on where this replica's has
 * epoch 2: it cuts there and appends the leader's. */
Test(follow, a_differing_batch_cuts_the_log)
{
	struct rmq_follow_req req;
	for (size_t i = 100; i < N; i++) {
		hdrs[i - 100] = m.v[i].hdr;
		if (i >= 110)
			hdrs[i - 100].leader_epoch = 3;
	}
	req = (struct rmq_follow_req){.leader_epoch = 3, .prev_end = end_of(99),
				      .prev_epoch = 1, .n = N - 100, .hdrs = hdrs};
	struct rmq_follow_plan p;
	rmq_follow_plan(env.log, 3, &req, &p);
	cr_assert_eq(p.code, EC_OK, "%s", p.why);
	cr_assert(!p.diverging);
	cr_assert_eq(p.truncate_to, m.v[110].hdr.base_offset);
	cr_assert_eq(p.first, 10);
}

/* The leader's batch before prev_end has another epoch than this
 * replica's: nothing is written, and the answer says which epoch of this
 * log conflicts and where it lies here. */
Test(follow, a_diverging_log_says_where)
{
	struct rmq_follow_req req = {.leader_epoch = 3, .prev_end = end_of(N - 1),
				     .prev_epoch = 1, .n = 0, .hdrs = hdrs};
	struct rmq_follow_plan p;
	rmq_follow_plan(env.log, 3, &req, &p);
	cr_assert_eq(p.code, EC_OK, "%s", p.why);
	cr_assert(p.diverging);
	cr_assert_eq(p.div_epoch, 2);
	cr_assert_eq(p.div_start, m.v[100].hdr.base_offset);
	cr_assert_eq(p.div_end, end_of(N - 1));
	cr_assert_eq(p.truncate_to, UINT64_MAX);
}

Test(follow, malformed_requests_are_refused)
{
	struct rmq_follow_plan p;
	/* Batches that do not continue one another. */
	for (size_t i = 0; i < 3; i++)
		hdrs[i] = m.v[100 + i].hdr;
	hdrs[1].base_offset++;
	struct rmq_follow_req req = {.leader_epoch = 3, .prev_end = end_of(99), .prev_epoch = 1,
				     .n = 3, .hdrs = hdrs};
	rmq_follow_plan(env.log, 3, &req, &p);
	cr_assert_eq(p.code, EC_INVALID_REQUEST, "%s", p.why);
	/* An epoch above the sender's. */
	hdrs[1] = m.v[101].hdr;
	hdrs[2].leader_epoch = 4;
	rmq_follow_plan(env.log, 3, &req, &p);
	cr_assert_eq(p.code, EC_INVALID_REQUEST, "%s", p.why);
	/* Epochs going backwards. */
	hdrs[2] = m.v[102].hdr;
	hdrs[1].leader_epoch = 3;
	rmq_follow_plan(env.log, 3, &req, &p);
	cr_assert_eq(p.code, EC_INVALID_REQUEST, "%s", p.why);
}

/* An empty replica takes the leader's first batches with nothing to match. */
Test(follow, an_empty_log_takes_the_first_batches)
{
	su_close(&env);
	su_rm_rf(env.dir);
	cr_assert_eq(su_open(&env), 0);
	struct rmq_follow_plan p = plan(0, 5, 1, 1, hdrs);
	cr_assert_eq(p.code, EC_OK, "%s", p.why);
	cr_assert_eq(p.first, 0);
	cr_assert_eq(p.truncate_to, UINT64_MAX);
}

/* A probe from a leader whose log ends before this replica's: the tail past
 * the leader's end goes. */
Test(follow, a_tail_past_the_leader_end_goes)
{
	uint64_t lend = m.v[110].hdr.base_offset;
	struct rmq_follow_req req = {.leader_epoch = 3, .prev_end = lend, .prev_epoch = 2,
				     .leader_end = lend, .has_leader_end = true, .n = 0,
				     .hdrs = hdrs};
	struct rmq_follow_plan p;
	rmq_follow_plan(env.log, 3, &req, &p);
	cr_assert_eq(p.code, EC_OK, "%s", p.why);
	cr_assert(!p.diverging);
	cr_assert_eq(p.truncate_to, lend);
	/* Without the leader's end: kept (the next batches decide). */
	req.has_leader_end = false;
	rmq_follow_plan(env.log, 3, &req, &p);
	cr_assert_eq(p.truncate_to, UINT64_MAX);
	/* A leader whose log is empty: everything here goes. */
	req = (struct rmq_follow_req){.leader_epoch = 3, .leader_end = 0, .has_leader_end = true};
	rmq_follow_plan(env.log, 3, &req, &p);
	cr_assert_eq(p.code, EC_OK, "%s", p.why);
	cr_assert_eq(p.truncate_to, 0);
}

/* How far a request shows the log to be the leader's, which bounds the
 * high watermark the follower takes from it: a probe, to where it probes,
 * though the log goes on (another leader's tail may lie past it); batches,
 * to the last one's end. */
Test(follow, what_a_request_matches_bounds_the_high_watermark)
{
	struct rmq_follow_plan p = plan(100, 100, 3, 3, hdrs);
	cr_assert_eq(p.code, EC_OK, "%s", p.why);
	cr_assert(!p.diverging);
	cr_assert_eq(p.matched, end_of(99), "a probe matches to prev_end, not to the log's end");
	cr_assert_lt(p.matched, end_of(N - 1));
	p = plan(100, 110, 3, 3, hdrs);
	cr_assert_eq(p.code, EC_OK, "%s", p.why);
	cr_assert_eq(p.matched, end_of(109));
	p = plan(0, 0, 3, 3, hdrs);
	cr_assert_eq(p.matched, 0, "an empty probe at 0 vouches for nothing");
}

/* ---- reading a ReplicateDataRequest ---------------------------------------------- */

/* Appends field `field` (LEN) with the bytes p[0..len). */
static size_t put_bytes(uint8_t *dst, uint32_t field, const void *p, size_t len)
{
	size_t n = rmq_pb_put_len(dst, field, len);
	memcpy(dst + n, p, len);
	return n + len;
}

/* A request for batches 100..109: as field 5 elements (each stored entry
 * given field 5's key), or as field 15, the stored entries verbatim. */
static size_t request(uint8_t *buf, bool stored)
{
	size_t n = 0;
	uint8_t tp[300], ver[8];
	size_t tpn = put_bytes(tp, 1, "orders", 6);
	tpn += rmq_pb_put_uint(tp + tpn, 2, 7);
	size_t vn = rmq_pb_put_uint(ver, 1, 1);
	n += put_bytes(buf + n, 1, ver, vn);
	n += put_bytes(buf + n, 2, "3", 1);
	n += rmq_pb_put_uint(buf + n, 3, 9);
	n += put_bytes(buf + n, 4, tp, tpn);
	static uint8_t entries[2 << 20];
	size_t en = 0;
	struct rmq_log_read r;
	uint64_t off = m.v[100].hdr.base_offset;
	for (size_t nb = 0; nb < 10; nb++) {
		cr_assert_eq(rmq_log_read(env.log, off, 1, &r), 0);
		const uint8_t *e = r.slices[0].data;
		struct rmq_batch_view v;
		int len = rmq_batch_parse(e, r.slices[0].len, &v);
		cr_assert_gt(len, 0);
		memcpy(entries + en, e, (size_t)len);
		if (!stored)
			entries[en] = RMQ_PB_KEY(5, RMQ_PB_LEN);
		en += (size_t)len;
		off = r.next_offset;
		rmq_log_read_done(env.log, &r);
	}
	if (stored) {
		n += put_bytes(buf + n, 15, entries, en);
	} else {
		memcpy(buf + n, entries, en);
		n += en;
	}
	n += rmq_pb_put_uint(buf + n, 6, m.v[100].hdr.base_offset);
	n += rmq_pb_put_uint(buf + n, 7, 1);
	n += rmq_pb_put_uint(buf + n, 8, 42);
	n += rmq_pb_put_uint(buf + n, 10, 77);
	n += put_bytes(buf + n, 11, "2", 1);
	n += rmq_pb_put_uint(buf + n, 99, 5); /* a field from a newer version */
	return n;
}

/* The follower reads the leader's stored batches back to their headers
 * and records bytes, from field 5 or from field 15. */
static void read_in_place(bool stored)
{
	static uint8_t buf[4 << 20];
	size_t n = request(buf, stored);
	struct rmq_follow_msg msg;
	char why[200];
	int rc = rmq_follow_parse(buf, n, 100, &msg, why, sizeof(why));
	cr_assert_eq(rc, 0, "%s: %s", rmq_errname(rc), why);
	cr_assert_eq(msg.major, 1);
	cr_assert_str_eq(msg.topic, "orders");
	cr_assert_eq(msg.partition, 7);
	cr_assert_eq(msg.leader_id, 3);
	cr_assert_eq(msg.follower_id, 2);
	cr_assert_eq(msg.req.leader_epoch, 9);
	cr_assert_eq(msg.req.prev_end, m.v[100].hdr.base_offset);
	cr_assert_eq(msg.req.prev_epoch, 1);
	cr_assert_eq(msg.high_watermark, 42);
	cr_assert_eq(msg.correlation_id, 77);
	cr_assert_eq(msg.req.n, 10);
	for (size_t i = 0; i < 10; i++) {
		const struct rmq_batch_hdr *h = &msg.req.hdrs[i], *w = &m.v[100 + i].hdr;
		cr_assert_eq(h->base_offset, w->base_offset);
		cr_assert_eq(h->record_count, w->record_count);
		cr_assert_eq(h->leader_epoch, w->leader_epoch);
		cr_assert_eq(h->log_append_time_ms, w->log_append_time_ms);
		cr_assert_eq(msg.records[i].len, m.v[100 + i].records_len);
		cr_assert(memcmp(msg.records[i].p, m.v[100 + i].records, msg.records[i].len) == 0);
	}
	rmq_follow_msg_free(&msg);

	/* Limits and damage. */
	rc = rmq_follow_parse(buf, n, 9, &msg, why, sizeof(why));
	cr_assert_eq(rc, RMQ_ETOOBIG, "%s", rmq_errname(rc));
	/* Its refusal names the request: a leader that waits for the answer
	 * to correlation 77 gets it (it would stall on an answer of 0). */
	cr_assert_eq(msg.correlation_id, 77);
	rc = rmq_follow_parse(buf, n - 4, 100, &msg, why, sizeof(why));
	cr_assert_eq(rc, RMQ_EPROTO, "a cut message: %s", rmq_errname(rc));
	uint8_t bad[16];
	size_t bn = put_bytes(bad, 2, "x1", 2);
	rc = rmq_follow_parse(bad, bn, 100, &msg, why, sizeof(why));
	cr_assert_eq(rc, RMQ_EPROTO, "a leader id that is not a number: %s", rmq_errname(rc));
	rc = rmq_follow_parse(buf + n - 2, 0, 100, &msg, why, sizeof(why));
	cr_assert_eq(rc, RMQ_EPROTO, "no topic_partition: %s", rmq_errname(rc));
}

Test(follow, a_request_is_read_in_place)
{
	read_in_place(false);
}

Test(follow, stored_batches_are_read_in_place)
{
	read_in_place(true);
}
