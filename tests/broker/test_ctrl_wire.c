/* SPDX-License-Identifier: Apache-2.0 */
/*
 * test_ctrl_wire.c - Raft messages as ControllerRaftService calls
 * (ctrl_wire.h): every request and answer the core sends comes back as the
 * same core message, and what is not one is refused.
 */
#include "broker/ctrl_wire.h"

#include "core/error.h"

#include <criterion/criterion.h>
#include <errno.h>
#include <stdlib.h>
#include <string.h>

/* m sent by its m->from as a request, received by m->to. */
static void request_roundtrip(const struct rmq_raft_msg *m)
{
	uint8_t *buf;
	size_t len;
	int rpc = rmq_ctrl_rpc_of(m->type);
	cr_assert_geq(rpc, 0);
	cr_assert_not_null(rmq_ctrl_rpc_path(rpc));
	cr_assert_eq(rmq_ctrl_wire_encode_request(m, "cluster-a", &buf, &len), 0);
	struct rmq_raft_msg got;
	struct rmq_ctrl_wire_hold hold;
	cr_assert_eq(rmq_ctrl_wire_decode_request(rpc, buf, len, "cluster-a", m->to, &got, &hold), 0);
	cr_assert_eq(got.type, m->type);
	cr_assert_eq(got.from, m->from);
	cr_assert_eq(got.to, m->to);
	cr_assert_eq(got.term, m->term);
	cr_assert_eq(got.index, m->index);
	cr_assert_eq(got.log_term, m->log_term);
	cr_assert_eq(got.commit, m->commit);
	cr_assert_eq(got.seq, m->seq);
	cr_assert_eq(got.transfer, m->transfer);
	cr_assert_eq(got.n_entries, m->n_entries);
	for (uint32_t i = 0; i < m->n_entries; i++) {
		cr_assert_eq(got.entries[i].term, m->entries[i].term);
		cr_assert_eq(got.entries[i].index, m->entries[i].index);
		cr_assert_eq(got.entries[i].type, m->entries[i].type);
		cr_assert_eq(got.entries[i].len, m->entries[i].len);
		if (m->entries[i].len)
			cr_assert_eq(memcmp(got.entries[i].data, m->entries[i].data, m->entries[i].len), 0);
	}
	rmq_ctrl_wire_release(&hold);
	/* Another cluster's request never reaches the core. */
	cr_assert_eq(rmq_ctrl_wire_decode_request(rpc, buf, len, "cluster-b", m->to, &got, &hold),
		     RMQ_EPROTO);
	rmq_ctrl_wire_release(&hold);
	free(buf);
}

Test(ctrl_wire, requests_come_back_as_they_were_sent)
{
	request_roundtrip(&(struct rmq_raft_msg){.type = RMQ_RAFT_MSG_PREVOTE, .from = 2, .to = 1,
						 .term = 8, .index = 40, .log_term = 7});
	request_roundtrip(&(struct rmq_raft_msg){.type = RMQ_RAFT_MSG_VOTE, .from = 3, .to = 1,
						 .term = 9, .index = 41, .log_term = 8,
						 .transfer = true});
	struct rmq_raft_entry e[3] = {
		{.term = 5, .index = 11, .type = RMQ_RAFT_ENTRY_NOOP},
		{.term = 5, .index = 12, .type = RMQ_RAFT_ENTRY_NORMAL, .len = 3, .data = (uint8_t *)"abc"},
		{.term = 6, .index = 13, .type = RMQ_RAFT_ENTRY_CONF, .len = 2, .data = (uint8_t *)"\x01\x00"},
	};
	request_roundtrip(&(struct rmq_raft_msg){.type = RMQ_RAFT_MSG_APPEND, .from = 1, .to = 4,
						 .term = 6, .index = 10, .log_term = 5, .commit = 9,
						 .seq = 77, .n_entries = 3, .entries = e});
	request_roundtrip(&(struct rmq_raft_msg){.type = RMQ_RAFT_MSG_APPEND, .from = 1, .to = 2,
						 .term = 6, .index = 13, .log_term = 6, .commit = 13});
	request_roundtrip(&(struct rmq_raft_msg){.type = RMQ_RAFT_MSG_TIMEOUT_NOW, .from = 1,
						 .to = 2, .term = 6});
	uint8_t *buf;
	size_t len;
	cr_assert_eq(rmq_ctrl_wire_encode_request(
			     &(struct rmq_raft_msg){.type = RMQ_RAFT_MSG_VOTE_RESP, .from = 1, .to = 2},
			     NULL, &buf, &len),
		     -EINVAL, "an answer is not a request");
}

/* rsp answered by rsp->from to the request it sent to it. */
static void response_roundtrip(enum rmq_ctrl_rpc rpc, const struct rmq_raft_msg *rsp)
{
	uint8_t *buf;
	size_t len;
	cr_assert_eq(rmq_ctrl_wire_encode_response(rpc, rsp, 99, rsp->from, 0, "why", &buf, &len), 0);
	struct rmq_raft_msg got;
	cr_assert_eq(rmq_ctrl_wire_decode_response(rpc, buf, len, rsp->from, rsp->to, &got), 0);
	cr_assert_eq(got.type, rsp->type);
	cr_assert_eq(got.from, rsp->from);
	cr_assert_eq(got.to, rsp->to);
	cr_assert_eq(got.term, rsp->term);
	cr_assert_eq(got.reject, rsp->reject);
	cr_assert_eq(got.index, rsp->index);
	cr_assert_eq(got.hint, rsp->hint);
	cr_assert_eq(got.seq, rsp->seq);
	free(buf);
}

Test(ctrl_wire, answers_come_back_as_they_were_given)
{
	response_roundtrip(RMQ_CTRL_RPC_PREVOTE, &(struct rmq_raft_msg){
		.type = RMQ_RAFT_MSG_PREVOTE_RESP, .from = 1, .to = 2, .term = 8});
	response_roundtrip(RMQ_CTRL_RPC_PREVOTE, &(struct rmq_raft_msg){
		.type = RMQ_RAFT_MSG_PREVOTE_RESP, .from = 1, .to = 2, .term = 7, .reject = true});
	response_roundtrip(RMQ_CTRL_RPC_VOTE, &(struct rmq_raft_msg){
		.type = RMQ_RAFT_MSG_VOTE_RESP, .from = 1, .to = 3, .term = 9});
	response_roundtrip(RMQ_CTRL_RPC_VOTE, &(struct rmq_raft_msg){
		.type = RMQ_RAFT_MSG_VOTE_RESP, .from = 1, .to = 3, .term = 9, .reject = true});
	response_roundtrip(RMQ_CTRL_RPC_APPEND, &(struct rmq_raft_msg){
		.type = RMQ_RAFT_MSG_APPEND_RESP, .from = 4, .to = 1, .term = 6, .index = 13,
		.seq = 77});
	response_roundtrip(RMQ_CTRL_RPC_APPEND, &(struct rmq_raft_msg){
		.type = RMQ_RAFT_MSG_APPEND_RESP, .from = 4, .to = 1, .term = 6, .index = 10,
		.reject = true, .hint = 8, .seq = 3});
}

/* No core message: a vote ignored within a lease is refused with the
 * voter's term; TimeoutNow and refusals with an error code step nothing. */
Test(ctrl_wire, answers_without_a_core_message)
{
	uint8_t *buf;
	size_t len;
	struct rmq_raft_msg got;
	cr_assert_eq(rmq_ctrl_wire_encode_response(RMQ_CTRL_RPC_VOTE, NULL, 5, 1, 0, "in a lease",
						   &buf, &len), 0);
	cr_assert_eq(rmq_ctrl_wire_decode_response(RMQ_CTRL_RPC_VOTE, buf, len, 1, 2, &got), 0);
	cr_assert(got.reject);
	cr_assert_eq(got.term, 5);
	free(buf);
	cr_assert_eq(rmq_ctrl_wire_encode_response(RMQ_CTRL_RPC_TIMEOUT_NOW, NULL, 5, 1, 0, NULL,
						   &buf, &len), 0);
	cr_assert_eq(rmq_ctrl_wire_decode_response(RMQ_CTRL_RPC_TIMEOUT_NOW, buf, len, 1, 2, &got), 1);
	free(buf);
	cr_assert_eq(rmq_ctrl_wire_encode_response(RMQ_CTRL_RPC_APPEND, NULL, 5, 1, 2,
						   "another cluster", &buf, &len), 0);
	cr_assert_eq(rmq_ctrl_wire_decode_response(RMQ_CTRL_RPC_APPEND, buf, len, 1, 2, &got), 1);
	free(buf);
}

Test(ctrl_wire, what_is_not_a_message_is_refused)
{
	struct rmq_raft_msg got;
	struct rmq_ctrl_wire_hold hold;
	static const uint8_t junk[] = {0xff, 0xff, 0xff};
	for (int rpc = 0; rpc < RMQ_CTRL_RPC_COUNT; rpc++) {
		cr_assert_eq(rmq_ctrl_wire_decode_request(rpc, junk, sizeof(junk), NULL, 1, &got, &hold),
			     RMQ_ECORRUPT);
		rmq_ctrl_wire_release(&hold);
		cr_assert_eq(rmq_ctrl_wire_decode_response(rpc, junk, sizeof(junk), 2, 1, &got),
			     RMQ_ECORRUPT);
	}
	/* A node id that is not a number. */
	uint8_t *buf;
	size_t len;
	cr_assert_eq(rmq_ctrl_wire_encode_request(&(struct rmq_raft_msg){.type = RMQ_RAFT_MSG_VOTE,
									 .from = 2, .to = 1, .term = 3},
						  NULL, &buf, &len), 0);
	/* field 2 (candidate_id) is "2": make it "x" */
	for (size_t i = 0; i + 2 < len; i++)
		if (buf[i] == 0x12 && buf[i + 1] == 1 && buf[i + 2] == '2')
			buf[i + 2] = 'x';
	cr_assert_eq(rmq_ctrl_wire_decode_request(RMQ_CTRL_RPC_VOTE, buf, len, NULL, 1, &got, &hold),
		     RMQ_ECORRUPT);
	rmq_ctrl_wire_release(&hold);
	free(buf);
	cr_assert_eq(rmq_ctrl_node_id("12"), 12);
	cr_assert_eq(rmq_ctrl_node_id("0"), 0);
	cr_assert_eq(rmq_ctrl_node_id("4294967296"), 0);
	cr_assert_eq(rmq_ctrl_node_id("-1"), 0);
	cr_assert_eq(rmq_ctrl_node_id(""), 0);
	cr_assert_eq(rmq_ctrl_node_id("7a"), 0);
}

/* InstallSnapshot: chunks of at most 1 MiB, the configuration in the
 * first, done and the CRC-32C of the whole in the last; the answer comes
 * back as the core's APPEND_RESP. */
Test(ctrl_wire, a_snapshot_as_chunks_and_its_answer)
{
	size_t len = (5u << 20) / 2; /* 2.5 MiB: three chunks */
	uint8_t *data = malloc(len);
	for (size_t i = 0; i < len; i++)
		data[i] = (uint8_t)(i * 7);
	struct rmq_raft_conf conf = {.n = 2};
	conf.servers[0] = (struct rmq_raft_server){.id = 1, .role = RMQ_RAFT_VOTER, .addr = "h:1"};
	conf.servers[1] = (struct rmq_raft_server){.id = 2, .role = RMQ_RAFT_LEARNER, .addr = "h:2"};
	struct rmq_raft_msg m = {.type = RMQ_RAFT_MSG_SNAPSHOT, .from = 1, .to = 2, .term = 4,
				 .index = 99, .log_term = 3, .conf = &conf};
	uint8_t *bufs[4];
	size_t lens[4], n;
	cr_assert_eq(rmq_ctrl_wire_snapshot_chunks(&m, data, len, NULL, bufs, lens, 2, &n), RMQ_ETOOBIG);
	cr_assert_eq(rmq_ctrl_wire_snapshot_chunks(&m, data, len, NULL, bufs, lens, 4, &n), 0);
	cr_assert_eq(n, 3);
	size_t off = 0;
	for (size_t i = 0; i < n; i++) {
		Rustmq__Controller__InstallSnapshotRequest *r =
			rustmq__controller__install_snapshot_request__unpack(NULL, lens[i], bufs[i]);
		cr_assert_not_null(r);
		cr_assert_eq(r->offset, off);
		cr_assert_eq(r->total_size, len);
		cr_assert_eq(r->last_included_index, 99);
		cr_assert_eq(r->done, i == n - 1);
		cr_assert_eq(memcmp(r->data.data, data + off, r->data.len), 0);
		if (i == 0) {
			struct rmq_raft_conf back;
			cr_assert_eq(rmq_ctrl_wire_conf_from_pb(r->configuration, &back), 0);
			cr_assert_eq(memcmp(&back, &conf, sizeof(conf)), 0);
		}
		off += r->data.len;
		rustmq__controller__install_snapshot_request__free_unpacked(r, NULL);
		free(bufs[i]);
	}
	cr_assert_eq(off, len);
	free(data);

	uint8_t *buf;
	size_t blen;
	struct rmq_raft_msg ack = {.type = RMQ_RAFT_MSG_APPEND_RESP, .from = 2, .to = 1, .term = 4,
				   .index = 99};
	cr_assert_eq(rmq_ctrl_wire_encode_response(RMQ_CTRL_RPC_SNAPSHOT, &ack, 4, 2, 0, NULL, &buf,
						   &blen), 0);
	struct rmq_raft_msg got;
	cr_assert_eq(rmq_ctrl_wire_decode_response(RMQ_CTRL_RPC_SNAPSHOT, buf, blen, 2, 1, &got), 0);
	cr_assert_eq(got.type, RMQ_RAFT_MSG_APPEND_RESP);
	cr_assert_eq(got.index, 99);
	cr_assert_not(got.reject);
	free(buf);
}
