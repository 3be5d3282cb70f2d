/* SPDX-License-Identifier: Apache-2.0 */
/*
 * fuzz_group - consumer groups: JoinGroup, SyncGroup, Heartbeat,
 * LeaveGroup, CommitOffsets, FetchOffsets and the AdminService group RPCs
 * (src/broker/group.c, group_offsets.c, group_admin.c, offsets.c), through
 * a real node (fuzz_node.h).
 *
 * Input: a script (fuzz_node.h) of calls on one connection, with the
 * FZ_SEL_* flags (in flight, cancel, 1 ms deadline); the method is
 * (sel & 0x1f) % 11 in the order of methods[] below, each body one request.
 *
 * A member id is the coordinator's to hand out, so no mutation would find
 * one.  The harness remembers, per group id, the member id and generation
 * the last JoinGroup answered (with OK or MEMBER_ID_REQUIRED), and a
 * request for that group that carries no member id field gets them
 * appended (a JoinGroup the member id only): so rejoining, syncing and
 * heartbeating work.  A member_id field that is present, even empty, is
 * left alone: that is how an input adds another member.
 *
 * The node has topics t1 (1 partition) and t3 (3 partitions) with records;
 * session timeouts are limited to 10 ms..2 s and group calls carry a 2 s
 * deadline, so a join that waits for a rebalance ends in bounded time.
 * After each input the harness makes the members it knows leave and
 * deletes every group; a member whose join was held when the connection
 * closed times out within 2 s (so an input may still see a group an
 * earlier one left behind for that long).
 *
 * Reproduce: build/fuzz/tests/fuzz/fuzz_group <input file>
 */
#include "fuzz_node.h"

#include "core/pbwire.h"

#include <stdio.h>
#include <string.h>

#define GROUP_CALL_MS 2000

enum {
	M_JOIN,
	M_SYNC,
	M_HEARTBEAT,
	M_LEAVE,
	M_COMMIT,
	M_FETCH_OFFSETS,
	M_LIST,
	M_DESCRIBE,
	M_DELETE,
	M_RESET,
	M_FIND,
};

static const struct fz_method methods[] = {
	[M_JOIN] = {"/rustmq.client.ConsumerService/JoinGroup", FZ_UNARY, GROUP_CALL_MS},
	[M_SYNC] = {"/rustmq.client.ConsumerService/SyncGroup", FZ_UNARY, GROUP_CALL_MS},
	[M_HEARTBEAT] = {"/rustmq.client.ConsumerService/Heartbeat", FZ_UNARY, GROUP_CALL_MS},
	[M_LEAVE] = {"/rustmq.client.ConsumerService/LeaveGroup", FZ_UNARY, GROUP_CALL_MS},
	[M_COMMIT] = {"/rustmq.client.ConsumerService/CommitOffsets", FZ_UNARY, GROUP_CALL_MS},
	[M_FETCH_OFFSETS] = {"/rustmq.client.ConsumerService/FetchOffsets", FZ_UNARY, GROUP_CALL_MS},
	[M_LIST] = {"/rustmq.controller.AdminService/ListGroups", FZ_UNARY, GROUP_CALL_MS},
	[M_DESCRIBE] = {"/rustmq.controller.AdminService/DescribeGroups", FZ_UNARY, GROUP_CALL_MS},
	[M_DELETE] = {"/rustmq.controller.AdminService/DeleteGroups", FZ_UNARY, GROUP_CALL_MS},
	[M_RESET] = {"/rustmq.controller.AdminService/ResetGroupOffsets", FZ_UNARY, GROUP_CALL_MS},
	[M_FIND] = {"/rustmq.client.MetadataService/FindCoordinator", FZ_UNARY, GROUP_CALL_MS},
};
#define NMETHODS (sizeof(methods) / sizeof(methods[0]))

/* Field numbers of group_id, generation_id and member_id in each request
 * (0: the request has none). */
static const struct {
	uint8_t group, generation, member;
} fields[NMETHODS] = {
	[M_JOIN] = {3, 0, 4},
	[M_SYNC] = {3, 4, 5},
	[M_HEARTBEAT] = {3, 4, 5},
	[M_LEAVE] = {3, 0, 4},
	[M_COMMIT] = {3, 4, 5},
};

#define MEMBERS_MAX 16
#define MEMBER_ID_MAX 256

static struct member {
	char group[MEMBER_ID_MAX];
	char id[MEMBER_ID_MAX];
	int64_t generation;
	bool used;
} members[MEMBERS_MAX];

static struct member *find(const uint8_t *g, size_t glen, bool create)
{
	struct member *free_slot = NULL;
	for (size_t i = 0; i < MEMBERS_MAX; i++) {
		struct member *m = &members[i];
		if (m->used && strlen(m->group) == glen && memcmp(m->group, g, glen) == 0)
			return m;
		if (!m->used && !free_slot)
			free_slot = m;
	}
	if (!create || glen >= MEMBER_ID_MAX)
		return NULL;
	if (!free_slot)
		free_slot = &members[0];
	memset(free_slot, 0, sizeof(*free_slot));
	memcpy(free_slot->group, g, glen);
	free_slot->used = true;
	return free_slot;
}

static void patch(unsigned method, const struct fz_step *st, struct fz_buf *out)
{
	if (!fields[method].member)
		return;
	const uint8_t *g = (const uint8_t *)"";
	size_t glen = 0;
	fz_pb_find(st->body, st->len, fields[method].group, NULL, &g, &glen);
	struct member *m = find(g, glen, false);
	if (!m || !m->id[0] || fz_pb_find(st->body, st->len, fields[method].member, NULL, NULL, NULL))
		return;
	fz_buf_put(out, st->body, st->len);
	fz_pb_str(out, fields[method].member, m->id);
	if (fields[method].generation &&
	    !fz_pb_find(st->body, st->len, fields[method].generation, NULL, NULL, NULL))
		fz_pb_uint(out, fields[method].generation, (uint64_t)m->generation);
}

/* JoinGroup answers: remember the member id and generation for the
 * request's group. */
static void answered(unsigned method, const struct fz_step *st, struct fz_call *k)
{
	if (method != M_JOIN || fz_call_status(k) != 0 || fz_call_nmsgs(k) != 1)
		return;
	size_t len;
	const uint8_t *r = fz_call_msg(k, 0, &len);
	uint64_t ec = 0, gen = 0;
	const uint8_t *id = NULL;
	size_t idlen = 0;
	fz_pb_find(r, len, 1, &ec, NULL, NULL);
	fz_pb_find(r, len, 3, &gen, NULL, NULL);
	if (!fz_pb_find(r, len, 4, NULL, &id, &idlen) || idlen == 0 || idlen >= MEMBER_ID_MAX)
		return;
	if (ec != 0 && ec != 56 /* MEMBER_ID_REQUIRED */)
		return;
	const uint8_t *g = (const uint8_t *)"";
	size_t glen = 0;
	fz_pb_find(st->body, st->len, fields[M_JOIN].group, NULL, &g, &glen);
	struct member *m = find(g, glen, true);
	if (!m)
		return;
	memcpy(m->id, id, idlen);
	m->id[idlen] = '\0';
	m->generation = (int32_t)gen;
}

static void version(struct fz_buf *b)
{
	struct fz_buf v = {0};
	fz_pb_uint(&v, 1, 1);
	fz_pb_msg(b, 1, &v);
	fz_buf_free(&v);
}

/* Every known member leaves; every group is deleted. */
static void reset(void)
{
	struct fz_conn *c = fz_conn_open();
	struct fz_buf req = {0}, resp = {0}, del = {0};
	for (size_t i = 0; i < MEMBERS_MAX; i++) {
		struct member *m = &members[i];
		if (m->used && m->id[0]) {
			fz_buf_reset(&req);
			version(&req);
			fz_pb_str(&req, 3, m->group);
			fz_pb_str(&req, 4, m->id);
			fz_unary(c, methods[M_LEAVE].path, req.p, req.len, NULL);
		}
		memset(m, 0, sizeof(*m));
	}
	fz_buf_reset(&req);
	version(&req);
	int st = fz_unary(c, methods[M_LIST].path, req.p, req.len, &resp);
	if (st != 0)
		fz_fail("ListGroups: status %d", st);
	version(&del);
	const uint8_t *p = resp.p, *end = resp.p + resp.len;
	size_t n = 0;
	while (p < end) {
		uint32_t f, w;
		uint64_t num = 0;
		const uint8_t *val = NULL;
		size_t vlen = 0;
		size_t k = rmq_pb_next(p, end, &f, &w, &num, &val, &vlen);
		if (k == 0)
			fz_fail("ListGroups answered malformed protobuf");
		const uint8_t *g;
		size_t glen;
		if (f == 3 && w == RMQ_PB_LEN && fz_pb_find(val, vlen, 1, NULL, &g, &glen)) {
			fz_pb_bytes(&del, 2, g, glen);
			n++;
		}
		p += k;
	}
	if (n > 0)
		fz_unary(c, methods[M_DELETE].path, del.p, del.len, NULL);
	fz_buf_free(&req);
	fz_buf_free(&resp);
	fz_buf_free(&del);
	fz_conn_close(c);
}

static void setup(void)
{
	fz_node_start(NULL);
	struct fz_conn *c = fz_conn_open();
	fz_create_topic(c, "t1", 1, NULL);
	fz_create_topic(c, "t3", 3, NULL);
	for (unsigned i = 0; i < 20; i++) {
		fz_produce_records(c, "t1", 0, 5, 20, 0);
		fz_produce_records(c, "t3", i % 3, 5, 20, 0);
	}
	fz_conn_close(c);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	static bool ready;
	if (!ready) {
		setup();
		ready = true;
	}
	static const struct fz_script_ops ops = {methods, NMETHODS, NULL, patch, answered};
	fz_run_script(data, size, &ops);
	reset();
	return 0;
}
