/* SPDX-License-Identifier: Apache-2.0 */
/*
 * member.c - a consumer group member without I/O (see member.h for the
 * protocol it follows and how it is driven).
 *
 * One call at a time.  The state is where the member stands in the
 * protocol; the call in flight (inflight) says which answer comes next:
 *
 *   ST_JOIN ─► ST_SYNC ─► ST_OFFSETS ─► ST_POSITION ─► ST_STABLE
 *      ▲                                                   │
 *      └────── rejoin (code), once the read is back ───────┘
 *   leave: from any state, once no call and no read is out ─► ST_DONE
 *
 * It builds every request with protobuf-c into one buffer it owns, and
 * allocates when an assignment is larger than any before it: nothing per
 * read.
 */
#include "member.h"

#include "ec.h"

#include "client/consumer.pb-c.h"
#include "core/util.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>

#define NS 1000000000ULL

enum { ST_JOIN, ST_SYNC, ST_OFFSETS, ST_POSITION, ST_STABLE, ST_DONE };

enum { CALL_NONE, CALL_JOIN, CALL_SYNC, CALL_OFFSETS, CALL_COMMIT, CALL_HEARTBEAT, CALL_LEAVE };

static const struct {
	const char *what, *path;
} calls[] = {
	[CALL_JOIN] = {"JoinGroup", "/rustmq.client.ConsumerService/JoinGroup"},
	[CALL_SYNC] = {"SyncGroup", "/rustmq.client.ConsumerService/SyncGroup"},
	[CALL_OFFSETS] = {"FetchOffsets", "/rustmq.client.ConsumerService/FetchOffsets"},
	[CALL_COMMIT] = {"CommitOffsets", "/rustmq.client.ConsumerService/CommitOffsets"},
	[CALL_HEARTBEAT] = {"Heartbeat", "/rustmq.client.ConsumerService/Heartbeat"},
	[CALL_LEAVE] = {"LeaveGroup", "/rustmq.client.ConsumerService/LeaveGroup"},
};

static Rustmq__Common__ApiVersion api_v1 = {
	PROTOBUF_C_MESSAGE_INIT(&rustmq__common__api_version__descriptor), 1, 0, 0};

/* The fields every group request has (the protobuf-c types differ, the
 * names agree), and those of a member in a generation. */
#define GROUP_REQ(req, m)                                                                      \
	((req).version = &api_v1, (req).client_id = (char *)(m)->cfg.client_id,                \
	 (req).group_id = (char *)(m)->cfg.group)
#define GROUP_MEMBER(req, m) ((req).generation_id = (m)->generation, (req).member_id = (m)->id)

/* The coordinator is loading or moving: the call may be retried. */
static bool retriable(int code)
{
	return code == EC(COORDINATOR_NOT_AVAILABLE) || code == EC(NOT_COORDINATOR) ||
	       code == EC(COORDINATOR_LOAD_IN_PROGRESS);
}

/* The member is out of step with the generation: it rejoins. */
static bool rejoinable(int code)
{
	return code == EC(REBALANCE_IN_PROGRESS) || code == EC(ILLEGAL_GENERATION) ||
	       code == EC(UNKNOWN_MEMBER_ID);
}

static int set_id(struct rmq_member *m, const char *id)
{
	char *c = strdup(id ? id : "");
	if (!c) {
		m->oom = true;
		return -ENOMEM;
	}
	free(m->id);
	m->id = c;
	return 0;
}

/* Room for n parts (and the commit bookkeeping that goes with them). */
static int reserve(struct rmq_member *m, uint32_t n)
{
	if (n <= m->cap)
		return 0;
	struct rmq_member_part *p = realloc(m->parts, sizeof(*p) * n);
	if (p)
		m->parts = p;
	uint64_t *c = realloc(m->committed, sizeof(*c) * n);
	if (c)
		m->committed = c;
	uint32_t *si = realloc(m->sent_idx, sizeof(*si) * n);
	if (si)
		m->sent_idx = si;
	uint64_t *so = realloc(m->sent_off, sizeof(*so) * n);
	if (so)
		m->sent_off = so;
	if (!p || !c || !si || !so) {
		m->oom = true;
		return -ENOMEM;
	}
	m->cap = n;
	return 0;
}

int rmq_member_init(struct rmq_member *m, const struct rmq_member_config *cfg,
		    const struct rmq_member_ops *ops, void *arg)
{
	static const struct rmq_member_ops none;
	memset(m, 0, sizeof(*m));
	m->cfg = *cfg;
	m->ops = ops ? ops : &none;
	m->arg = arg;
	m->st = ST_JOIN;
	m->generation = -1;
	return set_id(m, "");
}

void rmq_member_free(struct rmq_member *m)
{
	free(m->parts);
	free(m->committed);
	free(m->sent_idx);
	free(m->sent_off);
	free(m->req);
	free(m->id);
	memset(m, 0, sizeof(*m));
}

bool rmq_member_readable(const struct rmq_member *m)
{
	return m->st == ST_STABLE && !m->rejoin && !m->leaving;
}

void rmq_member_leave(struct rmq_member *m)
{
	m->leaving = true;
}

/* Positions read past the group's committed offsets. */
static bool uncommitted(const struct rmq_member *m)
{
	for (uint32_t i = 0; i < m->nparts; i++)
		if (m->parts[i].offset != m->committed[i])
			return true;
	return false;
}

/* ---- requests ------------------------------------------------------------ */

/* Packs msg into m->req and describes the call. */
static int pack(struct rmq_member *m, int kind, const ProtobufCMessage *msg,
		struct rmq_member_call *call)
{
	size_t n = protobuf_c_message_get_packed_size(msg);
	if (n > m->req_cap) {
		uint8_t *b = realloc(m->req, n);
		if (!b) {
			m->oom = true;
			return -ENOMEM;
		}
		m->req = b;
		m->req_cap = n;
	}
	protobuf_c_message_pack(msg, m->req);
	*call = (struct rmq_member_call){calls[kind].what, calls[kind].path, m->req, n,
					 m->cfg.call_timeout_ns};
	m->inflight = kind;
	return RMQ_MEMBER_CALL;
}

static Google__Protobuf__Duration duration(uint64_t ns)
{
	Google__Protobuf__Duration d = GOOGLE__PROTOBUF__DURATION__INIT;
	d.seconds = (int64_t)(ns / NS);
	d.nanos = (int32_t)(ns % NS);
	return d;
}

static int join_call(struct rmq_member *m, struct rmq_member_call *call)
{
	char *topics[1] = {(char *)m->cfg.topic};
	char *assignors[1] = {(char *)m->cfg.assignor};
	Google__Protobuf__Duration session = duration(m->cfg.session_ns);
	Google__Protobuf__Duration rebalance = duration(m->cfg.rebalance_ns);
	Rustmq__Client__JoinGroupRequest req = RUSTMQ__CLIENT__JOIN_GROUP_REQUEST__INIT;
	GROUP_REQ(req, m);
	req.member_id = m->id;
	req.session_timeout = &session;
	if (m->cfg.rebalance_ns)
		req.rebalance_timeout = &rebalance;
	req.n_topics = 1;
	req.topics = topics;
	if (m->cfg.assignor) {
		req.n_assignors = 1;
		req.assignors = assignors;
	}
	if (m->cfg.join_reason)
		req.reason = (char *)m->cfg.join_reason;
	int rc = pack(m, CALL_JOIN, &req.base, call);
	/* Held until the generation forms: at most the longest rebalance
	 * timeout of the members after the initial delay, which is itself
	 * bounded by it. */
	uint64_t hold = m->cfg.rebalance_ns > m->cfg.session_ns ? m->cfg.rebalance_ns
								 : m->cfg.session_ns;
	call->timeout_ns += 2 * hold;
	return rc;
}

static int sync_call(struct rmq_member *m, struct rmq_member_call *call)
{
	Rustmq__Client__SyncGroupRequest req = RUSTMQ__CLIENT__SYNC_GROUP_REQUEST__INIT;
	GROUP_REQ(req, m);
	GROUP_MEMBER(req, m);
	return pack(m, CALL_SYNC, &req.base, call);
}

static int offsets_call(struct rmq_member *m, struct rmq_member_call *call)
{
	Rustmq__Common__TopicPartition *tps = malloc(sizeof(*tps) * (m->nparts ? m->nparts : 1));
	Rustmq__Common__TopicPartition **tpp = malloc(sizeof(*tpp) * (m->nparts ? m->nparts : 1));
	int rc = -ENOMEM;
	if (tps && tpp) {
		for (uint32_t i = 0; i < m->nparts; i++) {
			rustmq__common__topic_partition__init(&tps[i]);
			tps[i].topic = (char *)m->cfg.topic;
			tps[i].partition = m->parts[i].partition;
			tpp[i] = &tps[i];
		}
		Rustmq__Client__FetchOffsetsRequest req = RUSTMQ__CLIENT__FETCH_OFFSETS_REQUEST__INIT;
		GROUP_REQ(req, m);
		req.n_partitions = m->nparts;
		req.partitions = tpp;
		rc = pack(m, CALL_OFFSETS, &req.base, call);
	} else {
		m->oom = true;
	}
	free(tps);
	free(tpp);
	return rc;
}

/* CommitOffsets of the positions that moved; final: the last one. */
static int commit_call(struct rmq_member *m, bool final, struct rmq_member_call *call)
{
	uint32_t n = m->nparts ? m->nparts : 1;
	Rustmq__Client__OffsetCommitPartition *op = malloc(sizeof(*op) * n);
	Rustmq__Client__OffsetCommitPartition **opp = malloc(sizeof(*opp) * n);
	Rustmq__Common__TopicPartition *tps = malloc(sizeof(*tps) * n);
	int rc = -ENOMEM;
	if (op && opp && tps) {
		m->nsent = 0;
		for (uint32_t i = 0; i < m->nparts; i++) {
			if (m->parts[i].offset == m->committed[i])
				continue;
			uint32_t k = m->nsent++;
			rustmq__client__offset_commit_partition__init(&op[k]);
			rustmq__common__topic_partition__init(&tps[k]);
			tps[k].topic = (char *)m->cfg.topic;
			tps[k].partition = m->parts[i].partition;
			op[k].topic_partition = &tps[k];
			op[k].offset = m->parts[i].offset;
			opp[k] = &op[k];
			m->sent_idx[k] = i;
			m->sent_off[k] = m->parts[i].offset;
		}
		Rustmq__Client__CommitOffsetsRequest req = RUSTMQ__CLIENT__COMMIT_OFFSETS_REQUEST__INIT;
		GROUP_REQ(req, m);
		GROUP_MEMBER(req, m);
		req.n_partitions = m->nsent;
		req.partitions = opp;
		rc = pack(m, CALL_COMMIT, &req.base, call);
		m->final = final;
	} else {
		m->oom = true;
	}
	free(op);
	free(opp);
	free(tps);
	return rc;
}

static int heartbeat_call(struct rmq_member *m, struct rmq_member_call *call)
{
	Rustmq__Client__GroupHeartbeatRequest req = RUSTMQ__CLIENT__GROUP_HEARTBEAT_REQUEST__INIT;
	GROUP_REQ(req, m);
	GROUP_MEMBER(req, m);
	return pack(m, CALL_HEARTBEAT, &req.base, call);
}

static int leave_call(struct rmq_member *m, struct rmq_member_call *call)
{
	Rustmq__Client__LeaveGroupRequest req = RUSTMQ__CLIENT__LEAVE_GROUP_REQUEST__INIT;
	GROUP_REQ(req, m);
	req.member_id = m->id;
	if (m->cfg.leave_reason)
		req.reason = (char *)m->cfg.leave_reason;
	return pack(m, CALL_LEAVE, &req.base, call);
}

/* ---- the next step ------------------------------------------------------- */

static void become_stable(struct rmq_member *m, uint64_t now_ns)
{
	m->st = ST_STABLE;
	m->tries = 0;
	m->assignments++;
	m->next_commit_ns = now_ns + m->cfg.commit_ns;
	m->next_heartbeat_ns = now_ns + m->heartbeat_ns;
}

/* Starts over at JoinGroup (no sooner than not_before_ns). */
static void restart(struct rmq_member *m, uint64_t not_before_ns)
{
	m->st = ST_JOIN;
	m->generation = -1;
	if (m->nparts)
		m->assignments++; /* the partitions are given up */
	m->nparts = 0;
	m->rejoin = 0;
	m->revoked = false;
	m->not_before_ns = not_before_ns;
}

static int leave_step(struct rmq_member *m, uint64_t now_ns, bool reading,
		      struct rmq_member_call *call, uint64_t *wake_ns)
{
	if (m->st == ST_STABLE && reading)
		return RMQ_MEMBER_WAIT; /* its positions are about to move */
	if (m->st == ST_STABLE && uncommitted(m)) {
		if (now_ns < m->not_before_ns) {
			*wake_ns = m->not_before_ns; /* the coordinator was loading or moving */
			return RMQ_MEMBER_WAIT;
		}
		return commit_call(m, true, call);
	}
	if (m->st != ST_DONE && m->id[0]) {
		m->st = ST_DONE;
		return leave_call(m, call);
	}
	m->st = ST_DONE;
	return RMQ_MEMBER_DONE;
}

static int stable_step(struct rmq_member *m, uint64_t now_ns, bool reading,
		       struct rmq_member_call *call, uint64_t *wake_ns)
{
	if (m->rejoin) {
		if (reading)
			return RMQ_MEMBER_WAIT;
		/* Commit what was read before giving the partitions up, so
		 * their next owners do not read it again. */
		if (m->rejoin == EC(REBALANCE_IN_PROGRESS) && !m->revoked && uncommitted(m)) {
			m->revoked = true;
			return commit_call(m, false, call);
		}
		if (m->rejoin != EC(REBALANCE_IN_PROGRESS)) {
			if (uncommitted(m) && m->ops->uncommitted)
				m->ops->uncommitted(m->arg, RMQ_MEMBER_LOSS_FORGOTTEN, m->rejoin);
			if (set_id(m, "") < 0)
				return -ENOMEM;
		}
		restart(m, 0);
		m->tries++;
		return join_call(m, call);
	}
	if (now_ns >= m->next_commit_ns) {
		m->next_commit_ns = now_ns + m->cfg.commit_ns;
		if (uncommitted(m))
			return commit_call(m, false, call);
	}
	if (now_ns >= m->next_heartbeat_ns) {
		m->next_heartbeat_ns = now_ns + m->heartbeat_ns;
		return heartbeat_call(m, call);
	}
	*wake_ns = m->next_commit_ns < m->next_heartbeat_ns ? m->next_commit_ns
							    : m->next_heartbeat_ns;
	return RMQ_MEMBER_WAIT;
}

int rmq_member_next(struct rmq_member *m, uint64_t now_ns, bool reading,
		    struct rmq_member_call *call, uint64_t *wake_ns)
{
	*wake_ns = UINT64_MAX;
	if (m->oom)
		return -ENOMEM;
	if (m->inflight)
		return RMQ_MEMBER_WAIT;
	if (m->st == ST_DONE)
		return RMQ_MEMBER_DONE;
	if (m->leaving)
		return leave_step(m, now_ns, reading, call, wake_ns);
	if (m->st == ST_STABLE)
		return stable_step(m, now_ns, reading, call, wake_ns);
	if (m->st == ST_POSITION)
		return RMQ_MEMBER_POSITION;
	if (now_ns < m->not_before_ns) {
		*wake_ns = m->not_before_ns;
		return RMQ_MEMBER_WAIT;
	}
	m->tries++;
	if (m->st == ST_JOIN)
		return join_call(m, call);
	if (m->st == ST_SYNC)
		return sync_call(m, call);
	return offsets_call(m, call);
}

void rmq_member_positioned(struct rmq_member *m, uint64_t now_ns)
{
	if (m->st == ST_POSITION)
		become_stable(m, now_ns);
}

/* ---- answers ------------------------------------------------------------- */

static void report(struct rmq_member *m, int kind, enum rmq_grpc_status status, int code,
		   const char *message)
{
	if (m->ops->error)
		m->ops->error(m->arg, calls[kind].what, status, code, message ? message : "");
}

static void join_answer(struct rmq_member *m, uint64_t now_ns,
			const Rustmq__Client__JoinGroupResponse *r)
{
	int code = r->error_code;
	if (code == 0 || code == EC(MEMBER_ID_REQUIRED))
		set_id(m, r->member_id);
	if (code == 0) {
		m->generation = r->generation_id;
		const Google__Protobuf__Duration *hb = r->heartbeat_interval;
		m->heartbeat_ns = hb ? (uint64_t)hb->seconds * NS + (uint64_t)hb->nanos : 0;
		if (m->heartbeat_ns == 0 || m->heartbeat_ns > m->cfg.session_ns / 3)
			m->heartbeat_ns = m->cfg.session_ns / 3;
		m->st = ST_SYNC;
		if (m->ops->joined)
			m->ops->joined(m->arg);
		return;
	}
	if (code == EC(UNKNOWN_MEMBER_ID))
		set_id(m, "");
	if (code == EC(MEMBER_ID_REQUIRED) || code == EC(REBALANCE_IN_PROGRESS) ||
	    code == EC(UNKNOWN_MEMBER_ID))
		return; /* join again at once */
	if (!retriable(code))
		report(m, CALL_JOIN, RMQ_GRPC_OK, code, r->error_message);
	m->not_before_ns = now_ns + RMQ_MEMBER_RETRY_NS;
}

/* A joining step that failed with code: start over, at once when the
 * member is only out of step, after a pause otherwise. */
static void join_again(struct rmq_member *m, uint64_t now_ns, int kind, int code,
		       const char *message)
{
	if (code == EC(UNKNOWN_MEMBER_ID))
		set_id(m, "");
	if (rejoinable(code)) {
		restart(m, 0);
		return;
	}
	if (!retriable(code))
		report(m, kind, RMQ_GRPC_OK, code, message);
	restart(m, now_ns + RMQ_MEMBER_RETRY_NS);
}

static void sync_answer(struct rmq_member *m, uint64_t now_ns,
			const Rustmq__Client__SyncGroupResponse *r)
{
	if (r->error_code) {
		join_again(m, now_ns, CALL_SYNC, r->error_code, r->error_message);
		return;
	}
	if (reserve(m, (uint32_t)r->n_assignment) < 0)
		return;
	m->nparts = 0;
	for (size_t i = 0; i < r->n_assignment; i++) {
		const Rustmq__Common__TopicPartition *tp = r->assignment[i];
		if (!tp || strcmp(tp->topic, m->cfg.topic) != 0)
			continue;
		m->committed[m->nparts] = RMQ_MEMBER_NO_OFFSET;
		m->parts[m->nparts++] = (struct rmq_member_part){tp->partition, RMQ_MEMBER_NO_OFFSET};
	}
	if (m->nparts == 0)
		become_stable(m, now_ns); /* more members than partitions: stand by */
	else
		m->st = ST_OFFSETS;
}

static void offsets_answer(struct rmq_member *m, uint64_t now_ns,
			   const Rustmq__Client__FetchOffsetsResponse *r)
{
	if (r->error_code) {
		join_again(m, now_ns, CALL_OFFSETS, r->error_code, r->error_message);
		return;
	}
	for (size_t i = 0; i < r->n_partitions; i++) {
		const Rustmq__Client__OffsetFetchPartition *op = r->partitions[i];
		if (op->error_code) {
			/* That partition starts where the reset policy says. */
			report(m, CALL_OFFSETS, RMQ_GRPC_OK, op->error_code, op->error_message);
			continue;
		}
		if (!op->topic_partition ||
		    op->committed_case != RUSTMQ__CLIENT__OFFSET_FETCH_PARTITION__COMMITTED_OFFSET)
			continue;
		for (uint32_t k = 0; k < m->nparts; k++) {
			if (m->parts[k].partition != op->topic_partition->partition)
				continue;
			m->parts[k].offset = op->offset;
			m->committed[k] = op->offset;
		}
	}
	/* No committed offset: the caller's reset policy.  The position it
	 * gives is committed like any other, so the next member resumes
	 * there. */
	for (uint32_t k = 0; k < m->nparts; k++) {
		if (m->parts[k].offset == RMQ_MEMBER_NO_OFFSET) {
			m->st = ST_POSITION;
			return;
		}
	}
	become_stable(m, now_ns);
}

/* A commit's answer: code 0 with per-partition results in r (in the
 * order they were sent), or the error that refused it all (-1: the call
 * failed). */
static void commit_answer(struct rmq_member *m, uint64_t now_ns, int code,
			  const Rustmq__Client__CommitOffsetsResponse *r)
{
	bool all = code == 0;
	for (size_t i = 0; code == 0 && i < r->n_partitions && i < m->nsent; i++) {
		const Rustmq__Client__OffsetCommitPartitionResponse *pr = r->partitions[i];
		if (pr->error_code == 0) {
			m->committed[m->sent_idx[i]] = m->sent_off[i];
			continue;
		}
		all = false;
		if (m->ops->commit_refused)
			m->ops->commit_refused(m->arg, m->parts[m->sent_idx[i]].partition,
					       m->sent_off[i], pr->error_code, pr->error_message);
	}
	if (all && m->ops->committed)
		m->ops->committed(m->arg);
	if (m->final) {
		m->final = false;
		if (code > 0 && retriable(code) && ++m->final_tries < RMQ_MEMBER_LAST_COMMIT_TRIES) {
			m->not_before_ns = now_ns + RMQ_MEMBER_RETRY_NS;
			return; /* leave_step commits again */
		}
		if (code) {
			m->last_commit_code = code;
			if (m->ops->uncommitted)
				m->ops->uncommitted(m->arg, RMQ_MEMBER_LOSS_LAST_COMMIT, code);
		}
		/* Whatever came of it, the next step is LeaveGroup. */
		for (uint32_t k = 0; k < m->nparts; k++)
			m->committed[k] = m->parts[k].offset;
		return;
	}
	if (m->revoked) {
		/* The commit before a rejoin: the rejoin follows whatever it
		 * said (revoked keeps stable_step from committing again); one
		 * that says the member was forgotten makes it rejoin with no
		 * id. */
		if (code == EC(UNKNOWN_MEMBER_ID) || code == EC(ILLEGAL_GENERATION))
			m->rejoin = code;
		else if (code && m->ops->uncommitted)
			m->ops->uncommitted(m->arg, RMQ_MEMBER_LOSS_REJOIN, code);
		return;
	}
	if (code > 0 && rejoinable(code) && !m->rejoin)
		m->rejoin = code;
}

void rmq_member_answer(struct rmq_member *m, uint64_t now_ns, enum rmq_grpc_status status,
		       const char *message, const uint8_t *resp, size_t len)
{
	static const ProtobufCMessageDescriptor *const descs[] = {
		[CALL_JOIN] = &rustmq__client__join_group_response__descriptor,
		[CALL_SYNC] = &rustmq__client__sync_group_response__descriptor,
		[CALL_OFFSETS] = &rustmq__client__fetch_offsets_response__descriptor,
		[CALL_COMMIT] = &rustmq__client__commit_offsets_response__descriptor,
		[CALL_HEARTBEAT] = &rustmq__client__group_heartbeat_response__descriptor,
		[CALL_LEAVE] = &rustmq__client__leave_group_response__descriptor,
	};
	int kind = m->inflight;
	if (kind == CALL_NONE)
		return;
	m->inflight = CALL_NONE;
	ProtobufCMessage *a = NULL;
	if (status == RMQ_GRPC_OK) {
		a = protobuf_c_message_unpack(descs[kind], NULL, len, resp);
		if (!a)
			report(m, kind, RMQ_GRPC_OK, -1, "the broker's answer does not parse");
	} else {
		report(m, kind, status, 0, message);
	}
	switch (kind) {
	case CALL_JOIN:
		if (a)
			join_answer(m, now_ns, (const Rustmq__Client__JoinGroupResponse *)a);
		else
			m->not_before_ns = now_ns + RMQ_MEMBER_RETRY_NS;
		break;
	case CALL_SYNC:
		if (a)
			sync_answer(m, now_ns, (const Rustmq__Client__SyncGroupResponse *)a);
		else
			restart(m, now_ns + RMQ_MEMBER_RETRY_NS);
		break;
	case CALL_OFFSETS:
		if (a)
			offsets_answer(m, now_ns, (const Rustmq__Client__FetchOffsetsResponse *)a);
		else
			restart(m, now_ns + RMQ_MEMBER_RETRY_NS);
		break;
	case CALL_COMMIT: {
		const Rustmq__Client__CommitOffsetsResponse *r =
			(const Rustmq__Client__CommitOffsetsResponse *)a;
		int code = !a ? -1 : (int)r->error_code;
		if (code > 0 && !rejoinable(code) && !retriable(code))
			report(m, kind, RMQ_GRPC_OK, code, r->error_message);
		commit_answer(m, now_ns, code, r);
		break;
	}
	case CALL_HEARTBEAT: {
		const Rustmq__Client__GroupHeartbeatResponse *r =
			(const Rustmq__Client__GroupHeartbeatResponse *)a;
		int code = !a ? 0 : (int)r->error_code;
		if (code == 0 && a && r->rebalance_in_progress)
			code = EC(REBALANCE_IN_PROGRESS);
		if (rejoinable(code) && !m->rejoin)
			m->rejoin = code;
		else if (code && !rejoinable(code) && !retriable(code))
			report(m, kind, RMQ_GRPC_OK, code, r->error_message);
		break;
	}
	case CALL_LEAVE: {
		/* UNKNOWN_MEMBER_ID: the coordinator removed us already. */
		const Rustmq__Client__LeaveGroupResponse *r =
			(const Rustmq__Client__LeaveGroupResponse *)a;
		if (a && r->error_code && r->error_code != EC(UNKNOWN_MEMBER_ID))
			report(m, kind, RMQ_GRPC_OK, r->error_code, r->error_message);
		set_id(m, "");
		break;
	}
	}
	if (a)
		protobuf_c_message_free_unpacked(a, NULL);
}
