/* SPDX-License-Identifier: Apache-2.0 */
/* ctrl_wire.c - Raft messages as ControllerRaftService calls (ctrl_wire.h). */
#include "broker/ctrl_wire.h"

#include "broker/errcode.h"
#include "core/crc32c.h"
#include "core/error.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define ID_LEN 12 /* "4294967295" and its NUL */

const char *rmq_ctrl_rpc_path(enum rmq_ctrl_rpc rpc)
{
	static const char *const paths[RMQ_CTRL_RPC_COUNT] = {
		[RMQ_CTRL_RPC_PREVOTE] = "/rustmq.controller.ControllerRaftService/PreVote",
		[RMQ_CTRL_RPC_VOTE] = "/rustmq.controller.ControllerRaftService/RequestVote",
		[RMQ_CTRL_RPC_APPEND] = "/rustmq.controller.ControllerRaftService/AppendEntries",
		[RMQ_CTRL_RPC_TIMEOUT_NOW] = "/rustmq.controller.ControllerRaftService/TimeoutNow",
		[RMQ_CTRL_RPC_SNAPSHOT] = "/rustmq.controller.ControllerRaftService/InstallSnapshot",
	};
	return (unsigned)rpc < RMQ_CTRL_RPC_COUNT ? paths[rpc] : NULL;
}

int rmq_ctrl_rpc_of(enum rmq_raft_msg_type t)
{
	switch (t) {
	case RMQ_RAFT_MSG_PREVOTE:
		return RMQ_CTRL_RPC_PREVOTE;
	case RMQ_RAFT_MSG_VOTE:
		return RMQ_CTRL_RPC_VOTE;
	case RMQ_RAFT_MSG_APPEND:
		return RMQ_CTRL_RPC_APPEND;
	case RMQ_RAFT_MSG_TIMEOUT_NOW:
		return RMQ_CTRL_RPC_TIMEOUT_NOW;
	default:
		return -1;
	}
}

uint32_t rmq_ctrl_node_id(const char *s)
{
	char *end;
	if (!s || *s < '0' || *s > '9')
		return 0;
	unsigned long long v = strtoull(s, &end, 10);
	return *end == '\0' && v > 0 && v <= UINT32_MAX ? (uint32_t)v : 0;
}

static void id_str(char buf[ID_LEN], uint32_t id)
{
	snprintf(buf, ID_LEN, "%u", id);
}

/* Packs msg with its descriptor into a malloc'd buffer. */
static int pack(const ProtobufCMessage *msg, uint8_t **buf, size_t *len)
{
	size_t n = protobuf_c_message_get_packed_size(msg);
	*buf = malloc(n ? n : 1);
	if (!*buf)
		return -ENOMEM;
	*len = protobuf_c_message_pack(msg, *buf);
	return 0;
}

/* ---- requests ------------------------------------------------------------------- */

int rmq_ctrl_wire_encode_request(const struct rmq_raft_msg *m, const char *cluster_id,
				 uint8_t **buf, size_t *len)
{
	char from[ID_LEN];
	char *cid = (char *)(cluster_id ? cluster_id : "");
	id_str(from, m->from);
	switch (rmq_ctrl_rpc_of(m->type)) {
	case RMQ_CTRL_RPC_PREVOTE: {
		Rustmq__Controller__PreVoteRequest r = RUSTMQ__CONTROLLER__PRE_VOTE_REQUEST__INIT;
		r.term = m->term;
		r.candidate_id = from;
		r.last_log_index = m->index;
		r.last_log_term = m->log_term;
		r.cluster_id = cid;
		return pack(&r.base, buf, len);
	}
	case RMQ_CTRL_RPC_VOTE: {
		Rustmq__Controller__VoteRequest r = RUSTMQ__CONTROLLER__VOTE_REQUEST__INIT;
		r.term = m->term;
		r.candidate_id = from;
		r.last_log_index = m->index;
		r.last_log_term = m->log_term;
		r.disrupt_leader = m->transfer;
		r.cluster_id = cid;
		return pack(&r.base, buf, len);
	}
	case RMQ_CTRL_RPC_APPEND: {
		Rustmq__Controller__AppendEntriesRequest r = RUSTMQ__CONTROLLER__APPEND_ENTRIES_REQUEST__INIT;
		Rustmq__Controller__LogEntry *es = calloc(m->n_entries ? m->n_entries : 1, sizeof(*es));
		Rustmq__Controller__LogEntry **ep = calloc(m->n_entries ? m->n_entries : 1, sizeof(*ep));
		int rc = -ENOMEM;
		if (es && ep) {
			for (uint32_t i = 0; i < m->n_entries; i++) {
				const struct rmq_raft_entry *e = &m->entries[i];
				rustmq__controller__log_entry__init(&es[i]);
				es[i].term = e->term;
				es[i].index = e->index;
				es[i].type = (Rustmq__Controller__LogEntryType)e->type;
				es[i].data.data = e->data;
				es[i].data.len = e->len;
				ep[i] = &es[i];
			}
			r.term = m->term;
			r.leader_id = from;
			r.prev_log_index = m->index;
			r.prev_log_term = m->log_term;
			r.n_entries = m->n_entries;
			r.entries = ep;
			r.leader_commit = m->commit;
			r.cluster_id = cid;
			r.read_round = m->seq;
			rc = pack(&r.base, buf, len);
		}
		free(ep);
		free(es);
		return rc;
	}
	case RMQ_CTRL_RPC_TIMEOUT_NOW: {
		Rustmq__Controller__TimeoutNowRequest r = RUSTMQ__CONTROLLER__TIMEOUT_NOW_REQUEST__INIT;
		r.term = m->term;
		r.leader_id = from;
		r.last_log_index = m->index;
		r.last_log_term = m->log_term;
		r.cluster_id = cid;
		return pack(&r.base, buf, len);
	}
	default:
		return -EINVAL;
	}
}

void rmq_ctrl_wire_release(struct rmq_ctrl_wire_hold *hold)
{
	if (hold->unpacked)
		protobuf_c_message_free_unpacked(hold->unpacked, NULL);
	free(hold->entries);
	*hold = (struct rmq_ctrl_wire_hold){0};
}

static bool other_cluster(const char *theirs, const char *ours)
{
	return theirs && *theirs && ours && *ours && strcmp(theirs, ours) != 0;
}

int rmq_ctrl_wire_decode_request(enum rmq_ctrl_rpc rpc, const uint8_t *p, size_t len,
				 const char *cluster_id, uint32_t self, struct rmq_raft_msg *m,
				 struct rmq_ctrl_wire_hold *hold)
{
	static const ProtobufCMessageDescriptor *const desc[RMQ_CTRL_RPC_COUNT] = {
		[RMQ_CTRL_RPC_PREVOTE] = &rustmq__controller__pre_vote_request__descriptor,
		[RMQ_CTRL_RPC_VOTE] = &rustmq__controller__vote_request__descriptor,
		[RMQ_CTRL_RPC_APPEND] = &rustmq__controller__append_entries_request__descriptor,
		[RMQ_CTRL_RPC_TIMEOUT_NOW] = &rustmq__controller__timeout_now_request__descriptor,
	};
	*hold = (struct rmq_ctrl_wire_hold){0};
	*m = (struct rmq_raft_msg){.to = self};
	if ((unsigned)rpc >= RMQ_CTRL_RPC_COUNT || !desc[rpc])
		return RMQ_ECORRUPT;
	ProtobufCMessage *u = protobuf_c_message_unpack(desc[rpc], NULL, len, p);
	if (!u)
		return RMQ_ECORRUPT;
	hold->unpacked = u;
	const char *from = NULL, *cid = NULL;
	switch (rpc) {
	case RMQ_CTRL_RPC_PREVOTE: {
		Rustmq__Controller__PreVoteRequest *r = (void *)u;
		m->type = RMQ_RAFT_MSG_PREVOTE;
		m->term = r->term;
		m->index = r->last_log_index;
		m->log_term = r->last_log_term;
		from = r->candidate_id;
		cid = r->cluster_id;
		break;
	}
	case RMQ_CTRL_RPC_VOTE: {
		Rustmq__Controller__VoteRequest *r = (void *)u;
		m->type = r->pre_vote ? RMQ_RAFT_MSG_PREVOTE : RMQ_RAFT_MSG_VOTE;
		m->term = r->term;
		m->index = r->last_log_index;
		m->log_term = r->last_log_term;
		m->transfer = r->disrupt_leader && !r->pre_vote;
		from = r->candidate_id;
		cid = r->cluster_id;
		break;
	}
	case RMQ_CTRL_RPC_APPEND: {
		Rustmq__Controller__AppendEntriesRequest *r = (void *)u;
		m->type = RMQ_RAFT_MSG_APPEND;
		m->term = r->term;
		m->index = r->prev_log_index;
		m->log_term = r->prev_log_term;
		m->commit = r->leader_commit;
		m->seq = r->read_round;
		if (r->n_entries > UINT32_MAX)
			return RMQ_ECORRUPT;
		if (r->n_entries) {
			hold->entries = calloc(r->n_entries, sizeof(*hold->entries));
			if (!hold->entries)
				return -ENOMEM;
			for (size_t i = 0; i < r->n_entries; i++) {
				const Rustmq__Controller__LogEntry *e = r->entries[i];
				if (e->data.len > UINT32_MAX)
					return RMQ_ECORRUPT;
				hold->entries[i] = (struct rmq_raft_entry){
					.term = e->term, .index = e->index, .type = (uint32_t)e->type,
					.len = (uint32_t)e->data.len, .data = e->data.len ? e->data.data : NULL};
			}
		}
		m->n_entries = (uint32_t)r->n_entries;
		m->entries = hold->entries;
		from = r->leader_id;
		cid = r->cluster_id;
		break;
	}
	case RMQ_CTRL_RPC_TIMEOUT_NOW: {
		Rustmq__Controller__TimeoutNowRequest *r = (void *)u;
		m->type = RMQ_RAFT_MSG_TIMEOUT_NOW;
		m->term = r->term;
		m->index = r->last_log_index;
		m->log_term = r->last_log_term;
		from = r->leader_id;
		cid = r->cluster_id;
		break;
	}
	default:
		return RMQ_ECORRUPT;
	}
	if (other_cluster(cid, cluster_id))
		return RMQ_EPROTO;
	m->from = rmq_ctrl_node_id(from);
	return m->from ? 0 : RMQ_ECORRUPT;
}

/* ---- responses ------------------------------------------------------------------ */

int rmq_ctrl_wire_encode_response(enum rmq_ctrl_rpc rpc, const struct rmq_raft_msg *m,
				  uint64_t term, uint32_t self, int code, const char *why,
				  uint8_t **buf, size_t *len)
{
	char me[ID_LEN];
	char *reason = (char *)(why ? why : "");
	id_str(me, self);
	bool granted = m && !m->reject;
	uint64_t t = m ? m->term : term;
	switch (rpc) {
	case RMQ_CTRL_RPC_PREVOTE: {
		Rustmq__Controller__PreVoteResponse r = RUSTMQ__CONTROLLER__PRE_VOTE_RESPONSE__INIT;
		r.error_code = (Rustmq__Common__ErrorCode)code;
		r.error_message = code ? reason : (char *)"";
		r.term = t;
		r.vote_granted = granted;
		r.reason = granted || code ? (char *)"" : reason;
		r.voter_id = me;
		return pack(&r.base, buf, len);
	}
	case RMQ_CTRL_RPC_VOTE: {
		Rustmq__Controller__VoteResponse r = RUSTMQ__CONTROLLER__VOTE_RESPONSE__INIT;
		r.error_code = (Rustmq__Common__ErrorCode)code;
		r.error_message = code ? reason : (char *)"";
		r.term = t;
		r.vote_granted = granted;
		r.reason = granted || code ? (char *)"" : reason;
		r.voter_id = me;
		r.pre_vote = m && m->type == RMQ_RAFT_MSG_PREVOTE_RESP;
		return pack(&r.base, buf, len);
	}
	case RMQ_CTRL_RPC_APPEND: {
		Rustmq__Controller__AppendEntriesResponse r =
			RUSTMQ__CONTROLLER__APPEND_ENTRIES_RESPONSE__INIT;
		r.error_code = (Rustmq__Common__ErrorCode)code;
		r.error_message = code ? reason : (char *)"";
		r.term = t;
		r.responder_id = me;
		r.reason = (char *)"";
		if (m) {
			r.success = !m->reject;
			r.match_index = m->reject ? 0 : m->index;
			r.rejected_index = m->reject ? m->index : 0;
			r.next_index = m->reject ? m->hint + 1 : 0;
			r.read_round = m->seq;
		}
		return pack(&r.base, buf, len);
	}
	case RMQ_CTRL_RPC_TIMEOUT_NOW: {
		Rustmq__Controller__TimeoutNowResponse r = RUSTMQ__CONTROLLER__TIMEOUT_NOW_RESPONSE__INIT;
		r.error_code = (Rustmq__Common__ErrorCode)code;
		r.error_message = code ? reason : (char *)"";
		r.term = term;
		r.responder_id = me;
		r.accepted = code == 0;
		return pack(&r.base, buf, len);
	}
	case RMQ_CTRL_RPC_SNAPSHOT: {
		/* The core answers an installed snapshot as it answers an APPEND:
		 * its index when taken; without an answer, a refusal. */
		Rustmq__Controller__InstallSnapshotResponse r =
			RUSTMQ__CONTROLLER__INSTALL_SNAPSHOT_RESPONSE__INIT;
		bool taken = m && !m->reject && code == 0;
		r.term = t;
		r.error_code = (Rustmq__Common__ErrorCode)(taken ? 0 : code ? code : EC_STALE_EPOCH);
		r.error_message = taken ? (char *)"" : code ? reason : (char *)"not taken";
		r.responder_id = me;
		r.match_index = taken ? m->index : 0;
		return pack(&r.base, buf, len);
	}
	default:
		return -EINVAL;
	}
}

int rmq_ctrl_wire_decode_response(enum rmq_ctrl_rpc rpc, const uint8_t *p, size_t len,
				  uint32_t to, uint32_t self, struct rmq_raft_msg *m)
{
	*m = (struct rmq_raft_msg){.from = to, .to = self};
	int rc = 1;
	switch (rpc) {
	case RMQ_CTRL_RPC_PREVOTE: {
		Rustmq__Controller__PreVoteResponse *r =
			rustmq__controller__pre_vote_response__unpack(NULL, len, p);
		if (!r)
			return RMQ_ECORRUPT;
		if (r->error_code == 0 && r->term) {
			m->type = RMQ_RAFT_MSG_PREVOTE_RESP;
			m->term = r->term;
			m->reject = !r->vote_granted;
			rc = 0;
		}
		rustmq__controller__pre_vote_response__free_unpacked(r, NULL);
		return rc;
	}
	case RMQ_CTRL_RPC_VOTE: {
		Rustmq__Controller__VoteResponse *r = rustmq__controller__vote_response__unpack(NULL, len, p);
		if (!r)
			return RMQ_ECORRUPT;
		if (r->error_code == 0 && r->term) {
			m->type = r->pre_vote ? RMQ_RAFT_MSG_PREVOTE_RESP : RMQ_RAFT_MSG_VOTE_RESP;
			m->term = r->term;
			m->reject = !r->vote_granted;
			rc = 0;
		}
		rustmq__controller__vote_response__free_unpacked(r, NULL);
		return rc;
	}
	case RMQ_CTRL_RPC_APPEND: {
		Rustmq__Controller__AppendEntriesResponse *r =
			rustmq__controller__append_entries_response__unpack(NULL, len, p);
		if (!r)
			return RMQ_ECORRUPT;
		if (r->error_code == 0 && r->term) {
			m->type = RMQ_RAFT_MSG_APPEND_RESP;
			m->term = r->term;
			m->reject = !r->success;
			m->index = r->success ? r->match_index : r->rejected_index;
			m->hint = !r->success && r->next_index ? r->next_index - 1 : 0;
			m->seq = r->read_round;
			rc = 0;
		}
		rustmq__controller__append_entries_response__free_unpacked(r, NULL);
		return rc;
	}
	case RMQ_CTRL_RPC_TIMEOUT_NOW: {
		Rustmq__Controller__TimeoutNowResponse *r =
			rustmq__controller__timeout_now_response__unpack(NULL, len, p);
		if (!r)
			return RMQ_ECORRUPT;
		rustmq__controller__timeout_now_response__free_unpacked(r, NULL);
		return 1;
	}
	case RMQ_CTRL_RPC_SNAPSHOT: {
		Rustmq__Controller__InstallSnapshotResponse *r =
			rustmq__controller__install_snapshot_response__unpack(NULL, len, p);
		if (!r)
			return RMQ_ECORRUPT;
		if (r->term && (r->error_code == 0 || r->error_code == EC_STALE_EPOCH)) {
			/* Taken: as an APPEND's answer.  Refused for its term: the
			 * term tells a stale leader to step down. */
			m->type = RMQ_RAFT_MSG_APPEND_RESP;
			m->term = r->term;
			m->index = r->match_index;
			m->reject = r->error_code != 0;
			rc = 0;
		}
		rustmq__controller__install_snapshot_response__free_unpacked(r, NULL);
		return rc;
	}
	default:
		return RMQ_ECORRUPT;
	}
}

/* ---- configurations and snapshots --------------------------------------------------- */

static const Rustmq__Controller__RaftServerRole pb_roles[] = {
	[RMQ_RAFT_VOTER] = RUSTMQ__CONTROLLER__RAFT_SERVER_ROLE__RAFT_SERVER_ROLE_VOTER,
	[RMQ_RAFT_LEARNER] = RUSTMQ__CONTROLLER__RAFT_SERVER_ROLE__RAFT_SERVER_ROLE_LEARNER,
	[RMQ_RAFT_SPARE] = RUSTMQ__CONTROLLER__RAFT_SERVER_ROLE__RAFT_SERVER_ROLE_SPARE,
};

void rmq_ctrl_wire_conf_to_pb(const struct rmq_raft_conf *c, struct rmq_ctrl_wire_conf *w)
{
	rustmq__controller__raft_configuration__init(&w->pb);
	for (uint32_t i = 0; i < c->n && i < RMQ_RAFT_SERVERS_MAX; i++) {
		const struct rmq_raft_server *s = &c->servers[i];
		rustmq__controller__raft_server__init(&w->sv[i]);
		id_str(w->ids[i], s->id);
		w->sv[i].id = w->ids[i];
		w->sv[i].address = (char *)s->addr;
		w->sv[i].role = s->role <= RMQ_RAFT_SPARE ? pb_roles[s->role] : 0;
		w->sp[i] = &w->sv[i];
	}
	w->pb.n_servers = c->n;
	w->pb.servers = w->sp;
}

int rmq_ctrl_wire_conf_from_pb(const Rustmq__Controller__RaftConfiguration *pb,
			       struct rmq_raft_conf *c)
{
	uint8_t buf[RMQ_RAFT_CONF_ENCODED_MAX];
	memset(c, 0, sizeof(*c));
	if (!pb)
		return 0;
	if (pb->n_servers > RMQ_RAFT_SERVERS_MAX)
		return RMQ_ECORRUPT;
	for (size_t i = 0; i < pb->n_servers; i++) {
		const Rustmq__Controller__RaftServer *s = pb->servers[i];
		struct rmq_raft_server *d = &c->servers[i];
		d->id = rmq_ctrl_node_id(s->id);
		d->role = (uint32_t)s->role;
		if (strlen(s->address) >= sizeof(d->addr))
			return RMQ_ECORRUPT;
		memcpy(d->addr, s->address, strlen(s->address) + 1);
	}
	c->n = (uint32_t)pb->n_servers;
	/* The core's checks (order, roles, counts) through its encoding. */
	struct rmq_raft_conf check;
	return rmq_raft_conf_decode(buf, rmq_raft_conf_encode(c, buf), &check);
}

int rmq_ctrl_wire_snapshot_chunks(const struct rmq_raft_msg *m, const uint8_t *data, size_t len,
				  const char *cluster_id, uint8_t **bufs, size_t *lens, size_t max,
				  size_t *n)
{
	size_t chunks = len ? (len + RMQ_CTRL_SNAPSHOT_CHUNK - 1) / RMQ_CTRL_SNAPSHOT_CHUNK : 1;
	struct rmq_ctrl_wire_conf *w = malloc(sizeof(*w));
	char from[ID_LEN];
	if (chunks > max) {
		free(w);
		return RMQ_ETOOBIG;
	}
	if (!w)
		return -ENOMEM;
	rmq_ctrl_wire_conf_to_pb(m->conf, w);
	id_str(from, m->from);
	uint32_t crc = rmq_crc32c(0, data, len);
	*n = 0;
	for (size_t i = 0; i < chunks; i++) {
		Rustmq__Controller__InstallSnapshotRequest r =
			RUSTMQ__CONTROLLER__INSTALL_SNAPSHOT_REQUEST__INIT;
		size_t off = i * RMQ_CTRL_SNAPSHOT_CHUNK;
		size_t part = len - off < RMQ_CTRL_SNAPSHOT_CHUNK ? len - off : RMQ_CTRL_SNAPSHOT_CHUNK;
		r.term = m->term;
		r.leader_id = from;
		r.last_included_index = m->index;
		r.last_included_term = m->log_term;
		r.configuration = i == 0 ? &w->pb : NULL;
		r.offset = off;
		r.data.data = (uint8_t *)data + off;
		r.data.len = part;
		r.done = i + 1 == chunks;
		r.cluster_id = (char *)(cluster_id ? cluster_id : "");
		r.total_size = len;
		r.crc32c = r.done ? crc : 0;
		if (pack(&r.base, &bufs[i], &lens[i]) < 0) {
			while (i-- > 0)
				free(bufs[i]);
			free(w);
			return -ENOMEM;
		}
		(*n)++;
	}
	free(w);
	return 0;
}
