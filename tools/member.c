/* SPDX-License-Identifier: Apache-2.0 */
/*
 * member.c - rmq consume --group: one member of a consumer group, driven
 * from the one main thread (the calls block; the fetch's max_wait is kept
 * below the heartbeat interval so the heartbeat is never late):
 *
 *   JoinGroup ──MEMBER_ID_REQUIRED──► JoinGroup with the id given, held
 *   until the generation forms ──► SyncGroup: this member's partitions ──►
 *   FetchOffsets: the group's committed positions; a partition without
 *   one starts at --offset (the reset policy, Kafka's auto.offset.reset)
 *       │
 *       ▼
 *   loop: Fetch ─► print ─► every --commit-interval: CommitOffsets
 *         every heartbeat_interval: Heartbeat
 *           REBALANCE_IN_PROGRESS ───────────► commit, JoinGroup (same id)
 *           UNKNOWN_MEMBER_ID, ILLEGAL_GENERATION ► JoinGroup with no id
 *   end (--max, --timeout, SIGINT/SIGTERM, stdout closed):
 *         CommitOffsets of exactly what was printed, LeaveGroup
 *
 * Delivery is at least once: the records printed since the last commit
 * that succeeded go to the partition's next owner again when a commit is
 * refused (the member was removed for missing its session timeout) or the
 * process is killed.  A clean stop loses nothing and repeats nothing.
 *
 * The fetching and printing are consume.c's, on the consumer this file is
 * handed; what is here is the membership around them.
 */
#include "cli.h"
#include "consume.h"

#include "client/consumer.pb-c.h"
#include "core/shard.h"

#include <inttypes.h>
#include <stdlib.h>
#include <string.h>

#define EC_COORDINATOR_NOT_AVAILABLE 23
#define EC_NOT_COORDINATOR 24
#define EC_COORDINATOR_LOAD_IN_PROGRESS 25
#define EC_UNKNOWN_MEMBER_ID 26
#define EC_ILLEGAL_GENERATION 27
#define EC_REBALANCE_IN_PROGRESS 28
#define EC_INCONSISTENT_GROUP_PROTOCOL 29
#define EC_INVALID_SESSION_TIMEOUT 31
#define EC_MEMBER_ID_REQUIRED 56

#define GROUP_POLL_NS (500 * MS) /* longest fetch wait: SIGINT is seen this fast */
#define GROUP_RETRIES_MAX 100    /* coordinator loading / moving, 100 ms apart */

/* The member, for the length of member_run. */
static struct {
	struct member_opts opt;
	struct consumer *c;     /* its parts: this generation's assignment */
	char *member_id;        /* heap; "" before the first join */
	int32_t generation;     /* -1 = not in a generation */
	uint64_t heartbeat_ns;
	uint64_t *committed;    /* per c->parts[i]: the group's offset, UINT64_MAX = none */
} M;

static void set_member_id(const char *id)
{
	free(M.member_id);
	M.member_id = xstrdup(id ? id : "");
}

/* The coordinator is loading or moving: the call may be retried. */
static bool group_retriable(int code)
{
	return code == EC_COORDINATOR_NOT_AVAILABLE || code == EC_NOT_COORDINATOR ||
	       code == EC_COORDINATOR_LOAD_IN_PROGRESS;
}

/* The member is out of step with the generation: it rejoins. */
static bool group_rejoinable(int code)
{
	return code == EC_REBALANCE_IN_PROGRESS || code == EC_ILLEGAL_GENERATION ||
	       code == EC_UNKNOWN_MEMBER_ID;
}

/* Positions printed past the group's committed offsets. */
static bool group_uncommitted(void)
{
	for (uint32_t i = 0; i < M.c->nparts; i++)
		if (M.c->parts[i].offset != M.committed[i])
			return true;
	return false;
}

/* Joins (or rejoins) the group and takes this generation's partitions,
 * each at its committed offset or the reset policy's.  Returns with
 * M.generation -1 when interrupted before a generation formed. */
static void group_join(void)
{
	int tries = 0;
	free(M.c->parts);
	free(M.committed);
	M.c->parts = NULL;
	M.committed = NULL;
	M.c->nparts = 0;
	M.generation = -1;
again:
	if (consumer_interrupted())
		return;
	if (tries++ > GROUP_RETRIES_MAX)
		die("group '%s': the coordinator did not settle (retry in a moment)", M.opt.group);
	char *topics[1] = {(char *)M.c->topic};
	char *assignors[1] = {(char *)M.opt.assignor};
	Google__Protobuf__Duration session = pb_duration(M.opt.session_ns);
	Rustmq__Client__JoinGroupRequest jq = RUSTMQ__CLIENT__JOIN_GROUP_REQUEST__INIT;
	jq.version = &api_v1;
	jq.client_id = "rmq";
	jq.group_id = (char *)M.opt.group;
	jq.member_id = M.member_id;
	jq.session_timeout = &session;
	jq.rebalance_timeout = &session;
	jq.n_topics = 1;
	jq.topics = topics;
	jq.n_assignors = 1;
	jq.assignors = assignors;
	jq.reason = "rmq consume";
	/* Held until the generation forms: at most the longest rebalance
	 * timeout of the members (ours is the session timeout) after the
	 * initial delay, which is itself bounded by it. */
	Rustmq__Client__JoinGroupResponse *jr = (Rustmq__Client__JoinGroupResponse *)pb_call(
		"JoinGroup", "/rustmq.client.ConsumerService/JoinGroup", &jq.base,
		&rustmq__client__join_group_response__descriptor, 2 * M.opt.session_ns + CALL_TIMEOUT_NS);
	int code = jr->error_code;
	char msg[256];
	snprintf(msg, sizeof(msg), "%s", jr->error_message);
	if (code == 0 || code == EC_MEMBER_ID_REQUIRED)
		set_member_id(jr->member_id);
	if (code == 0) {
		M.generation = jr->generation_id;
		M.heartbeat_ns = jr->heartbeat_interval
					 ? (uint64_t)jr->heartbeat_interval->seconds * NS +
						   (uint64_t)jr->heartbeat_interval->nanos
					 : 0;
		if (M.heartbeat_ns == 0 || M.heartbeat_ns > M.opt.session_ns / 3)
			M.heartbeat_ns = M.opt.session_ns / 3;
	}
	protobuf_c_message_free_unpacked(&jr->base, NULL);
	if (code == EC_MEMBER_ID_REQUIRED || code == EC_REBALANCE_IN_PROGRESS)
		goto again;
	if (code == EC_UNKNOWN_MEMBER_ID) {
		set_member_id("");
		goto again;
	}
	if (group_retriable(code)) {
		sleep_ns(100 * MS);
		goto again;
	}
	if (code == EC_INVALID_SESSION_TIMEOUT)
		die("group '%s': the broker refuses --session-timeout %" PRIu64 "ms: %s", M.opt.group,
		    (uint64_t)(M.opt.session_ns / MS), msg);
	if (code == EC_INCONSISTENT_GROUP_PROTOCOL)
		die("group '%s' runs another assignor than --assignor %s (give the one its members use)",
		    M.opt.group, M.opt.assignor);
	if (code)
		die_group("JoinGroup", M.opt.group, M.c->topic, code, msg);

	Rustmq__Client__SyncGroupRequest sq = RUSTMQ__CLIENT__SYNC_GROUP_REQUEST__INIT;
	sq.version = &api_v1;
	sq.client_id = "rmq";
	sq.group_id = (char *)M.opt.group;
	sq.generation_id = M.generation;
	sq.member_id = M.member_id;
	Rustmq__Client__SyncGroupResponse *sr =
		PB_CALL("SyncGroup", "/rustmq.client.ConsumerService/SyncGroup", &sq,
			Rustmq__Client__SyncGroupResponse,
			rustmq__client__sync_group_response__descriptor);
	code = sr->error_code;
	if (code == 0) {
		M.c->parts = xmalloc(sizeof(*M.c->parts) * (sr->n_assignment ? sr->n_assignment : 1));
		for (size_t i = 0; i < sr->n_assignment; i++) {
			const Rustmq__Common__TopicPartition *tp = sr->assignment[i];
			if (tp && strcmp(tp->topic, M.c->topic) == 0)
				M.c->parts[M.c->nparts++] = (struct cpart){tp->partition, UINT64_MAX};
		}
	}
	snprintf(msg, sizeof(msg), "%s", sr->error_message);
	protobuf_c_message_free_unpacked(&sr->base, NULL);
	if (group_rejoinable(code) || group_retriable(code)) {
		if (code == EC_UNKNOWN_MEMBER_ID)
			set_member_id("");
		M.generation = -1;
		goto again;
	}
	if (code)
		die_group("SyncGroup", M.opt.group, M.c->topic, code, msg);

	M.committed = xmalloc(sizeof(*M.committed) * (M.c->nparts ? M.c->nparts : 1));
	for (uint32_t i = 0; i < M.c->nparts; i++)
		M.committed[i] = UINT64_MAX;
	if (M.c->nparts == 0)
		return;
	Rustmq__Common__TopicPartition *tps = xmalloc(sizeof(*tps) * M.c->nparts);
	Rustmq__Common__TopicPartition **tpp = xmalloc(sizeof(*tpp) * M.c->nparts);
	for (uint32_t i = 0; i < M.c->nparts; i++) {
		rustmq__common__topic_partition__init(&tps[i]);
		tps[i].topic = (char *)M.c->topic;
		tps[i].partition = M.c->parts[i].partition;
		tpp[i] = &tps[i];
	}
	Rustmq__Client__FetchOffsetsRequest fq = RUSTMQ__CLIENT__FETCH_OFFSETS_REQUEST__INIT;
	fq.version = &api_v1;
	fq.client_id = "rmq";
	fq.group_id = (char *)M.opt.group;
	fq.n_partitions = M.c->nparts;
	fq.partitions = tpp;
	Rustmq__Client__FetchOffsetsResponse *fr =
		PB_CALL("FetchOffsets", "/rustmq.client.ConsumerService/FetchOffsets", &fq,
			Rustmq__Client__FetchOffsetsResponse,
			rustmq__client__fetch_offsets_response__descriptor);
	free(tps);
	free(tpp);
	if (fr->error_code)
		die_group("FetchOffsets", M.opt.group, M.c->topic, fr->error_code, fr->error_message);
	for (size_t i = 0; i < fr->n_partitions; i++) {
		const Rustmq__Client__OffsetFetchPartition *op = fr->partitions[i];
		if (op->error_code)
			die_group("FetchOffsets", M.opt.group, M.c->topic, op->error_code, op->error_message);
		if (!op->topic_partition ||
		    op->committed_case != RUSTMQ__CLIENT__OFFSET_FETCH_PARTITION__COMMITTED_OFFSET)
			continue;
		for (uint32_t k = 0; k < M.c->nparts; k++) {
			if (M.c->parts[k].partition != op->topic_partition->partition)
				continue;
			M.c->parts[k].offset = op->offset;
			M.committed[k] = op->offset;
		}
	}
	protobuf_c_message_free_unpacked(&fr->base, NULL);
	/* No committed offset: the reset policy.  The position it gives is
	 * committed like any other, so the next member resumes there. */
	if (M.opt.reset_spec < 0) {
		for (uint32_t i = 0; i < M.c->nparts; i++)
			if (M.c->parts[i].offset == UINT64_MAX)
				M.c->parts[i].offset = M.opt.reset_at;
	} else {
		consumer_list_offsets(M.c, M.opt.reset_spec, M.opt.reset_at);
	}
}

/* Commits the positions that moved since the last commit.  Returns 0, or
 * the group error that refused the whole commit (the caller rejoins or
 * retries); a partition refused alone is reported on stderr. */
static int group_commit(void)
{
	if (M.generation < 0 || !group_uncommitted())
		return 0;
	Rustmq__Client__OffsetCommitPartition *op = xmalloc(sizeof(*op) * M.c->nparts);
	Rustmq__Client__OffsetCommitPartition **opp = xmalloc(sizeof(*opp) * M.c->nparts);
	Rustmq__Common__TopicPartition *tps = xmalloc(sizeof(*tps) * M.c->nparts);
	size_t n = 0;
	for (uint32_t i = 0; i < M.c->nparts; i++) {
		if (M.c->parts[i].offset == M.committed[i])
			continue;
		rustmq__client__offset_commit_partition__init(&op[n]);
		rustmq__common__topic_partition__init(&tps[n]);
		tps[n].topic = (char *)M.c->topic;
		tps[n].partition = M.c->parts[i].partition;
		op[n].topic_partition = &tps[n];
		op[n].offset = M.c->parts[i].offset;
		opp[n] = &op[n];
		n++;
	}
	Rustmq__Client__CommitOffsetsRequest req = RUSTMQ__CLIENT__COMMIT_OFFSETS_REQUEST__INIT;
	req.version = &api_v1;
	req.client_id = "rmq";
	req.group_id = (char *)M.opt.group;
	req.generation_id = M.generation;
	req.member_id = M.member_id;
	req.n_partitions = n;
	req.partitions = opp;
	Rustmq__Client__CommitOffsetsResponse *r =
		PB_CALL("CommitOffsets", "/rustmq.client.ConsumerService/CommitOffsets", &req,
			Rustmq__Client__CommitOffsetsResponse,
			rustmq__client__commit_offsets_response__descriptor);
	int code = r->error_code;
	if (code && !group_rejoinable(code) && !group_retriable(code))
		die_group("CommitOffsets", M.opt.group, M.c->topic, code, r->error_message);
	for (size_t i = 0; code == 0 && i < r->n_partitions && i < n; i++) {
		const Rustmq__Client__OffsetCommitPartitionResponse *pr = r->partitions[i];
		for (uint32_t k = 0; k < M.c->nparts; k++) {
			if (M.c->parts[k].partition != tps[i].partition)
				continue;
			if (pr->error_code == 0)
				M.committed[k] = op[i].offset;
			else
				fprintf(stderr, "rmq: group %s: commit of %s/%" PRIu32 " at %" PRIu64
					" refused: %s%s%s\n", M.opt.group, M.c->topic, tps[i].partition,
					op[i].offset, ec_name(pr->error_code),
					*pr->error_message ? ": " : "", pr->error_message);
		}
	}
	protobuf_c_message_free_unpacked(&r->base, NULL);
	free(op);
	free(opp);
	free(tps);
	return code;
}

/* A call said the member is out of step: rejoin.  REBALANCE_IN_PROGRESS
 * keeps the member id (commits of the ending generation still count);
 * UNKNOWN_MEMBER_ID and ILLEGAL_GENERATION start over with an empty one. */
static void group_recover(int code)
{
	if (code == EC_REBALANCE_IN_PROGRESS) {
		int c2 = group_commit();
		if (c2 == EC_UNKNOWN_MEMBER_ID || c2 == EC_ILLEGAL_GENERATION)
			code = c2;
		else if (c2)
			fprintf(stderr, "rmq: group %s: commit refused (%s); rejoining: records printed "
				"since the last commit may be delivered again\n", M.opt.group, ec_name(c2));
	}
	if (code == EC_UNKNOWN_MEMBER_ID || code == EC_ILLEGAL_GENERATION) {
		if (M.c->nparts && group_uncommitted())
			fprintf(stderr, "rmq: group %s: %s; rejoining: records printed since the last "
				"commit may be delivered again\n", M.opt.group, ec_name(code));
		set_member_id("");
	}
	group_join();
}

static int group_heartbeat(void)
{
	Rustmq__Client__GroupHeartbeatRequest req = RUSTMQ__CLIENT__GROUP_HEARTBEAT_REQUEST__INIT;
	req.version = &api_v1;
	req.client_id = "rmq";
	req.group_id = (char *)M.opt.group;
	req.generation_id = M.generation;
	req.member_id = M.member_id;
	Rustmq__Client__GroupHeartbeatResponse *r =
		PB_CALL("Heartbeat", "/rustmq.client.ConsumerService/Heartbeat", &req,
			Rustmq__Client__GroupHeartbeatResponse,
			rustmq__client__group_heartbeat_response__descriptor);
	int code = r->error_code;
	if (code == 0 && r->rebalance_in_progress)
		code = EC_REBALANCE_IN_PROGRESS;
	if (code && !group_rejoinable(code) && !group_retriable(code))
		die_group("Heartbeat", M.opt.group, M.c->topic, code, r->error_message);
	protobuf_c_message_free_unpacked(&r->base, NULL);
	return code;
}

static void group_leave(void)
{
	if (!M.member_id || !*M.member_id)
		return;
	Rustmq__Client__LeaveGroupRequest req = RUSTMQ__CLIENT__LEAVE_GROUP_REQUEST__INIT;
	req.version = &api_v1;
	req.client_id = "rmq";
	req.group_id = (char *)M.opt.group;
	req.member_id = M.member_id;
	req.reason = "rmq consume stopped";
	Rustmq__Client__LeaveGroupResponse *r =
		PB_CALL("LeaveGroup", "/rustmq.client.ConsumerService/LeaveGroup", &req,
			Rustmq__Client__LeaveGroupResponse,
			rustmq__client__leave_group_response__descriptor);
	/* UNKNOWN_MEMBER_ID: the coordinator removed us already; nothing to do. */
	protobuf_c_message_free_unpacked(&r->base, NULL);
	set_member_id("");
}

/* The group member's loop (see the diagram above). */
int member_run(struct consumer *c, const struct member_opts *o)
{
	M.opt = *o;
	M.c = c;
	uint64_t timeout_ns = o->timeout_ns, commit_ns = o->commit_ns;
	set_member_id("");
	group_join();
	uint64_t now = rmq_now_ns();
	uint64_t last_record = now; /* --timeout counts from the first assignment */
	uint64_t next_commit = now + commit_ns, next_heartbeat = now + M.heartbeat_ns;
	while (!consumer_interrupted() && M.generation >= 0 && (c->max == 0 || c->got < c->max)) {
		now = rmq_now_ns();
		uint64_t wait = GROUP_POLL_NS;
		if (wait > M.heartbeat_ns)
			wait = M.heartbeat_ns;
		if (!consumer_idle_wait(now - last_record, timeout_ns, &wait))
			break;
		uint64_t before = c->got;
		if (c->nparts)
			consumer_fetch(c, wait);
		else
			sleep_ns(wait); /* more members than partitions: stand by */
		now = rmq_now_ns();
		if (c->got != before)
			last_record = now;
		if (consumer_stdout_closed())
			break;
		int code = 0;
		if (now >= next_commit) {
			fflush(stdout); /* commit only what the reader was given */
			code = group_commit();
			next_commit = now + commit_ns;
		}
		if (code == 0 && now >= next_heartbeat) {
			code = group_heartbeat();
			next_heartbeat = now + M.heartbeat_ns;
		}
		if (code && !group_retriable(code)) {
			group_recover(code);
			now = rmq_now_ns();
			next_commit = now + commit_ns;
			next_heartbeat = now + M.heartbeat_ns;
		}
	}
	fflush(stdout);
	int rc = 0;
	for (int tries = 0; M.generation >= 0 && tries < 10; tries++) {
		int code = group_commit();
		if (code == 0)
			break;
		if (group_retriable(code)) {
			sleep_ns(100 * MS);
			continue;
		}
		fprintf(stderr, "rmq: group %s: the last commit was refused (%s): records printed "
			"since the one before may be delivered again\n", M.opt.group, ec_name(code));
		rc = 1;
		break;
	}
	group_leave();
	free(M.committed);
	free(M.member_id);
	M.committed = NULL;
	M.member_id = NULL;
	M.c = NULL;
	return rc;
}
