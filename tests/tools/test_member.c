/* SPDX-License-Identifier: Apache-2.0 */
/*
 * test_member.c - the consumer group member of tools/member.c, which rmq
 * consume --group and rmq-bench --group both drive, fed answers by hand:
 * the join (MEMBER_ID_REQUIRED, then a generation), the assignment of its
 * topic only, committed positions and the caller's reset policy, commits
 * of what moved only, a rebalance (commit once the read is back, rejoin
 * with the same id), a forgotten member (rejoin with no id, its uncommitted
 * reads reported), the last commit retried while the coordinator loads,
 * a refused last commit, and failed calls retried after a pause.
 */
#include "ec.h"
#include "member.h"

#include "client/consumer.pb-c.h"

#include <criterion/criterion.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define NS 1000000000ULL
#define MS 1000000ULL

struct seen {
	int errors, last_code, joined, committed, refused, lost;
	enum rmq_grpc_status last_status;
	enum rmq_member_loss last_loss;
	char last_what[32];
};

static void on_error(void *arg, const char *what, enum rmq_grpc_status status, int code,
		     const char *message)
{
	struct seen *s = arg;
	(void)message;
	s->errors++;
	s->last_code = code;
	s->last_status = status;
	snprintf(s->last_what, sizeof(s->last_what), "%s", what);
}

static void on_joined(void *arg)
{
	((struct seen *)arg)->joined++;
}

static void on_committed(void *arg)
{
	((struct seen *)arg)->committed++;
}

static void on_refused(void *arg, uint32_t partition, uint64_t offset, int code, const char *m)
{
	(void)partition;
	(void)offset;
	(void)code;
	(void)m;
	((struct seen *)arg)->refused++;
}

static void on_lost(void *arg, enum rmq_member_loss why, int code)
{
	struct seen *s = arg;
	s->lost++;
	s->last_loss = why;
	s->last_code = code;
}

static const struct rmq_member_ops ops = {on_error, on_joined, on_committed, on_refused, on_lost};

static const struct rmq_member_config cfg = {
	.group = "g",
	.topic = "t",
	.client_id = "test",
	.assignor = "range",
	.session_ns = 3 * NS,
	.commit_ns = 5 * NS,
	.call_timeout_ns = 10 * NS,
};

static struct rmq_member m;
static struct seen seen;
static struct rmq_member_call call;
static uint64_t now = 1000 * NS;

/* The next step must be a call to path; returns its request unpacked. */
static void *expect_call(const char *what, const ProtobufCMessageDescriptor *d)
{
	uint64_t wake;
	int step = rmq_member_next(&m, now, false, &call, &wake);
	cr_assert_eq(step, RMQ_MEMBER_CALL, "want %s, step %d", what, step);
	cr_assert_str_eq(call.what, what);
	cr_assert(strstr(call.path, what), "%s", call.path);
	void *req = protobuf_c_message_unpack(d, NULL, call.len, call.req);
	cr_assert_not_null(req, "the %s request decodes", what);
	return req;
}

static void answer(const ProtobufCMessage *resp)
{
	size_t n = protobuf_c_message_get_packed_size(resp);
	uint8_t *buf = malloc(n ? n : 1);
	protobuf_c_message_pack(resp, buf);
	rmq_member_answer(&m, now, RMQ_GRPC_OK, NULL, buf, n);
	free(buf);
}

static int step(bool reading, uint64_t *wake)
{
	return rmq_member_next(&m, now, reading, &call, wake);
}

static void join(const char *id_given)
{
	Rustmq__Client__JoinGroupRequest *jq =
		expect_call("JoinGroup", &rustmq__client__join_group_request__descriptor);
	cr_assert_str_eq(jq->group_id, "g");
	cr_assert_eq(jq->n_topics, 1);
	cr_assert_str_eq(jq->topics[0], "t");
	cr_assert_str_eq(jq->assignors[0], "range");
	cr_assert_eq(jq->session_timeout->seconds, 3);
	cr_assert_str_eq(jq->member_id, id_given);
	rustmq__client__join_group_request__free_unpacked(jq, NULL);
	cr_assert_geq(call.timeout_ns, 10 * NS + 2 * 3 * NS, "held for the generation to form");
}

static void join_ok(const char *id, int32_t generation)
{
	Rustmq__Client__JoinGroupResponse jr = RUSTMQ__CLIENT__JOIN_GROUP_RESPONSE__INIT;
	Google__Protobuf__Duration hb = GOOGLE__PROTOBUF__DURATION__INIT;
	hb.seconds = 5; /* more than session / 3: the member keeps session / 3 */
	jr.member_id = (char *)id;
	jr.generation_id = generation;
	jr.heartbeat_interval = &hb;
	answer(&jr.base);
}

static void join_code(const char *id, int code)
{
	Rustmq__Client__JoinGroupResponse jr = RUSTMQ__CLIENT__JOIN_GROUP_RESPONSE__INIT;
	jr.member_id = (char *)id;
	jr.error_code = code;
	answer(&jr.base);
}

/* Sync: the member gets t/0, t/2 (and other/1, not its topic). */
static void sync_two(const char *id, int32_t generation)
{
	Rustmq__Client__SyncGroupRequest *sq =
		expect_call("SyncGroup", &rustmq__client__sync_group_request__descriptor);
	cr_assert_str_eq(sq->member_id, id);
	cr_assert_eq(sq->generation_id, generation);
	rustmq__client__sync_group_request__free_unpacked(sq, NULL);
	Rustmq__Common__TopicPartition tp[3], *tpp[3];
	const char *topics[3] = {"t", "other", "t"};
	uint32_t parts[3] = {0, 1, 2};
	for (int i = 0; i < 3; i++) {
		rustmq__common__topic_partition__init(&tp[i]);
		tp[i].topic = (char *)topics[i];
		tp[i].partition = parts[i];
		tpp[i] = &tp[i];
	}
	Rustmq__Client__SyncGroupResponse sr = RUSTMQ__CLIENT__SYNC_GROUP_RESPONSE__INIT;
	sr.n_assignment = 3;
	sr.assignment = tpp;
	answer(&sr.base);
	cr_assert_eq(m.nparts, 2, "its topic's partitions only");
	cr_assert_eq(m.parts[0].partition, 0);
	cr_assert_eq(m.parts[1].partition, 2);
}

/* FetchOffsets: t/0 committed at 5, t/2 never. */
static void offsets_one_committed(void)
{
	Rustmq__Client__FetchOffsetsRequest *fq =
		expect_call("FetchOffsets", &rustmq__client__fetch_offsets_request__descriptor);
	cr_assert_eq(fq->n_partitions, 2);
	rustmq__client__fetch_offsets_request__free_unpacked(fq, NULL);
	Rustmq__Common__TopicPartition tp[2];
	Rustmq__Client__OffsetFetchPartition op[2], *opp[2];
	for (int i = 0; i < 2; i++) {
		rustmq__common__topic_partition__init(&tp[i]);
		tp[i].topic = "t";
		tp[i].partition = (uint32_t)(2 * i);
		rustmq__client__offset_fetch_partition__init(&op[i]);
		op[i].topic_partition = &tp[i];
		opp[i] = &op[i];
	}
	op[0].committed_case = RUSTMQ__CLIENT__OFFSET_FETCH_PARTITION__COMMITTED_OFFSET;
	op[0].offset = 5;
	Rustmq__Client__FetchOffsetsResponse fr = RUSTMQ__CLIENT__FETCH_OFFSETS_RESPONSE__INIT;
	fr.n_partitions = 2;
	fr.partitions = opp;
	answer(&fr.base);
}

/* From a fresh member to a stable one holding t/0 at 5 and t/2 at 7. */
static void to_stable(void)
{
	join("");
	join_code("m1", EC(MEMBER_ID_REQUIRED));
	cr_assert_eq(seen.joined, 0);
	join("m1");
	join_ok("m1", 3);
	cr_assert_eq(seen.joined, 1);
	sync_two("m1", 3);
	offsets_one_committed();
	uint64_t wake;
	cr_assert_eq(step(false, &wake), RMQ_MEMBER_POSITION);
	cr_assert_eq(m.parts[0].offset, 5, "the group's commit");
	cr_assert_eq(m.parts[1].offset, RMQ_MEMBER_NO_OFFSET, "for the reset policy");
	cr_assert_not(rmq_member_readable(&m));
	m.parts[1].offset = 7;
	rmq_member_positioned(&m, now);
	cr_assert(rmq_member_readable(&m));
	cr_assert_eq(m.tries, 0);
	cr_assert_eq(step(false, &wake), RMQ_MEMBER_WAIT);
	cr_assert_eq(wake, now + 1 * NS, "heartbeat at session / 3, before the commit");
}

static void commit_ok(size_t n)
{
	Rustmq__Client__OffsetCommitPartitionResponse pr[4], *prp[4];
	for (size_t i = 0; i < n; i++) {
		rustmq__client__offset_commit_partition_response__init(&pr[i]);
		prp[i] = &pr[i];
	}
	Rustmq__Client__CommitOffsetsResponse r = RUSTMQ__CLIENT__COMMIT_OFFSETS_RESPONSE__INIT;
	r.n_partitions = n;
	r.partitions = prp;
	answer(&r.base);
}

static void commit_code(int code)
{
	Rustmq__Client__CommitOffsetsResponse r = RUSTMQ__CLIENT__COMMIT_OFFSETS_RESPONSE__INIT;
	r.error_code = code;
	answer(&r.base);
}

static void heartbeat(int code, bool rebalance)
{
	Rustmq__Client__GroupHeartbeatRequest *hq =
		expect_call("Heartbeat", &rustmq__client__group_heartbeat_request__descriptor);
	rustmq__client__group_heartbeat_request__free_unpacked(hq, NULL);
	Rustmq__Client__GroupHeartbeatResponse r = RUSTMQ__CLIENT__GROUP_HEARTBEAT_RESPONSE__INIT;
	r.error_code = code;
	r.rebalance_in_progress = rebalance;
	answer(&r.base);
}

static void setup(void)
{
	memset(&seen, 0, sizeof(seen));
	now = 1000 * NS;
	cr_assert_eq(rmq_member_init(&m, &cfg, &ops, &seen), 0);
}

static void teardown(void)
{
	rmq_member_free(&m);
}

TestSuite(member, .init = setup, .fini = teardown);

Test(member, joins_syncs_and_places_its_partitions)
{
	to_stable();
	cr_assert_eq(seen.errors, 0);
}

Test(member, commits_what_moved_and_heartbeats)
{
	to_stable();
	uint64_t wake;
	now += 1 * NS;
	heartbeat(0, false);
	cr_assert_eq(step(false, &wake), RMQ_MEMBER_WAIT);
	/* At the commit interval: t/2 (placed by the reset policy) and t/0
	 * (moved from 5 to 9) go; then nothing moved, nothing is sent. */
	m.parts[0].offset = 9;
	now += 4 * NS;
	Rustmq__Client__CommitOffsetsRequest *cq =
		expect_call("CommitOffsets", &rustmq__client__commit_offsets_request__descriptor);
	cr_assert_eq(cq->n_partitions, 2);
	cr_assert_eq(cq->partitions[0]->offset, 9);
	cr_assert_eq(cq->partitions[1]->offset, 7);
	cr_assert_eq(cq->generation_id, 3);
	cr_assert_str_eq(cq->member_id, "m1");
	rustmq__client__commit_offsets_request__free_unpacked(cq, NULL);
	commit_ok(2);
	cr_assert_eq(seen.committed, 1);
	heartbeat(0, false); /* due too */
	now += 5 * NS;
	heartbeat(0, false); /* the commit interval passed with nothing moved */
	m.parts[1].offset = 8;
	now += 5 * NS;
	cq = expect_call("CommitOffsets", &rustmq__client__commit_offsets_request__descriptor);
	cr_assert_eq(cq->n_partitions, 1, "only what moved");
	cr_assert_eq(cq->partitions[0]->topic_partition->partition, 2);
	rustmq__client__commit_offsets_request__free_unpacked(cq, NULL);
	/* One partition refused: reported, and sent again next time. */
	Rustmq__Client__OffsetCommitPartitionResponse pr = RUSTMQ__CLIENT__OFFSET_COMMIT_PARTITION_RESPONSE__INIT,
						      *prp[1] = {&pr};
	pr.error_code = EC(OFFSET_METADATA_TOO_LARGE);
	Rustmq__Client__CommitOffsetsResponse r = RUSTMQ__CLIENT__COMMIT_OFFSETS_RESPONSE__INIT;
	r.n_partitions = 1;
	r.partitions = prp;
	answer(&r.base);
	cr_assert_eq(seen.refused, 1);
	cr_assert_eq(seen.committed, 1);
	heartbeat(0, false);
	now += 5 * NS;
	cq = expect_call("CommitOffsets", &rustmq__client__commit_offsets_request__descriptor);
	cr_assert_eq(cq->n_partitions, 1);
	rustmq__client__commit_offsets_request__free_unpacked(cq, NULL);
	commit_ok(1);
	cr_assert_eq(seen.errors, 0);
}

Test(member, rebalance_commits_once_the_read_is_back_and_rejoins_with_its_id)
{
	to_stable();
	now += 1 * NS;
	m.parts[0].offset = 6;
	heartbeat(0, true);
	cr_assert_not(rmq_member_readable(&m), "no new read during a rebalance");
	uint64_t wake;
	cr_assert_eq(step(true, &wake), RMQ_MEMBER_WAIT, "waits for the read in flight");
	Rustmq__Client__CommitOffsetsRequest *cq =
		expect_call("CommitOffsets", &rustmq__client__commit_offsets_request__descriptor);
	rustmq__client__commit_offsets_request__free_unpacked(cq, NULL);
	commit_code(EC(REBALANCE_IN_PROGRESS));
	cr_assert_eq(seen.lost, 1, "the commit before the rejoin was refused");
	cr_assert_eq(seen.last_loss, RMQ_MEMBER_LOSS_REJOIN);
	uint32_t before = m.assignments;
	join("m1");
	cr_assert_neq(m.assignments, before, "the partitions are given up");
	cr_assert_eq(m.nparts, 0);
	join_ok("m1", 4);
	sync_two("m1", 4);
}

Test(member, forgotten_member_rejoins_with_no_id)
{
	to_stable();
	now += 1 * NS;
	m.parts[1].offset = 8;
	heartbeat(EC(UNKNOWN_MEMBER_ID), false);
	join("");
	cr_assert_eq(seen.lost, 1, "what it read since the last commit may come again");
	cr_assert_eq(seen.last_loss, RMQ_MEMBER_LOSS_FORGOTTEN);
	cr_assert_eq(seen.last_code, EC(UNKNOWN_MEMBER_ID));
	cr_assert_eq(seen.errors, 0);
}

Test(member, leave_retries_the_last_commit_then_leaves)
{
	to_stable();
	m.parts[0].offset = 10;
	rmq_member_leave(&m);
	cr_assert_not(rmq_member_readable(&m));
	uint64_t wake;
	cr_assert_eq(step(true, &wake), RMQ_MEMBER_WAIT, "waits for the read in flight");
	Rustmq__Client__CommitOffsetsRequest *cq =
		expect_call("CommitOffsets", &rustmq__client__commit_offsets_request__descriptor);
	rustmq__client__commit_offsets_request__free_unpacked(cq, NULL);
	commit_code(EC(COORDINATOR_LOAD_IN_PROGRESS));
	cr_assert_eq(step(false, &wake), RMQ_MEMBER_WAIT);
	cr_assert_eq(wake, now + RMQ_MEMBER_RETRY_NS);
	now = wake;
	cq = expect_call("CommitOffsets", &rustmq__client__commit_offsets_request__descriptor);
	rustmq__client__commit_offsets_request__free_unpacked(cq, NULL);
	commit_ok(2);
	Rustmq__Client__LeaveGroupRequest *lq =
		expect_call("LeaveGroup", &rustmq__client__leave_group_request__descriptor);
	cr_assert_str_eq(lq->member_id, "m1");
	rustmq__client__leave_group_request__free_unpacked(lq, NULL);
	Rustmq__Client__LeaveGroupResponse lr = RUSTMQ__CLIENT__LEAVE_GROUP_RESPONSE__INIT;
	lr.error_code = EC(UNKNOWN_MEMBER_ID); /* removed already: not an error */
	answer(&lr.base);
	cr_assert_eq(step(false, &wake), RMQ_MEMBER_DONE);
	cr_assert_eq(m.last_commit_code, 0);
	cr_assert_eq(seen.errors, 0);
	cr_assert_eq(seen.lost, 0);
}

Test(member, refused_last_commit_is_reported_and_it_still_leaves)
{
	to_stable();
	m.parts[0].offset = 10;
	rmq_member_leave(&m);
	Rustmq__Client__CommitOffsetsRequest *cq =
		expect_call("CommitOffsets", &rustmq__client__commit_offsets_request__descriptor);
	rustmq__client__commit_offsets_request__free_unpacked(cq, NULL);
	commit_code(EC(ILLEGAL_GENERATION));
	cr_assert_eq(m.last_commit_code, EC(ILLEGAL_GENERATION));
	cr_assert_eq(seen.last_loss, RMQ_MEMBER_LOSS_LAST_COMMIT);
	Rustmq__Client__LeaveGroupRequest *lq =
		expect_call("LeaveGroup", &rustmq__client__leave_group_request__descriptor);
	rustmq__client__leave_group_request__free_unpacked(lq, NULL);
}

Test(member, failed_calls_are_reported_and_retried_after_a_pause)
{
	join("");
	rmq_member_answer(&m, now, RMQ_GRPC_UNAVAILABLE, "gone", NULL, 0);
	cr_assert_eq(seen.errors, 1);
	cr_assert_eq(seen.last_status, RMQ_GRPC_UNAVAILABLE);
	cr_assert_str_eq(seen.last_what, "JoinGroup");
	uint64_t wake;
	cr_assert_eq(step(false, &wake), RMQ_MEMBER_WAIT);
	cr_assert_eq(wake, now + RMQ_MEMBER_RETRY_NS);
	now = wake;
	join("");
	rmq_member_answer(&m, now, RMQ_GRPC_OK, NULL, (const uint8_t *)"\xff", 1);
	cr_assert_eq(seen.errors, 2);
	cr_assert_eq(seen.last_code, -1, "an answer that does not parse");
	now += RMQ_MEMBER_RETRY_NS;
	join("");
	join_code("", EC(COORDINATOR_LOAD_IN_PROGRESS));
	cr_assert_eq(seen.errors, 2, "a coordinator loading is waited out, not reported");
	now += RMQ_MEMBER_RETRY_NS;
	join("");
	join_code("", EC(INVALID_SESSION_TIMEOUT));
	cr_assert_eq(seen.errors, 3);
	cr_assert_eq(seen.last_code, EC(INVALID_SESSION_TIMEOUT));
	cr_assert_eq(m.tries, 4, "the caller decides when to give up");
	/* Leaving before it ever joined: nothing to commit, no id to leave. */
	rmq_member_leave(&m);
	cr_assert_eq(step(false, &wake), RMQ_MEMBER_DONE);
}
