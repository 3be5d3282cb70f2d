/* SPDX-License-Identifier: Apache-2.0 */
/*
 * fuzz_admin - AdminService (topics and configs), MetadataService,
 * AuthService, the health services and an RPC the node does not serve
 * (src/broker/admin.c, meta.c), through a real node (fuzz_node.h).
 *
 * Input: a script (fuzz_node.h) of calls on one connection, with the
 * FZ_SEL_* flags (in flight, cancel, 1 ms deadline); the method is
 * (sel & 0x1f) % 20 in the order of methods[] below, each body one request.
 * grpc.health.v1 Watch is a server stream: its first answer is read, then
 * it is reset.
 *
 * Every input starts from a node without topics and the harness deletes
 * the topics it created afterwards, so an input replays alone.
 *
 * One filter, for a known limitation rather than a bug to find again: a
 * CreateTopics asking for more than FILTER_PARTITIONS partitions in all is
 * not sent.  Each partition costs a write buffer and files up front today
 * (issue 14, "Cost that follows the data"), so such requests only measure
 * memory; raise the bound once that is fixed.
 *
 * Reproduce: build/fuzz/tests/fuzz/fuzz_admin <input file>
 */
#include "fuzz_node.h"

#include "core/pbwire.h"

#define FILTER_PARTITIONS 64

static const struct fz_method methods[] = {
	{"/rustmq.controller.AdminService/CreateTopics", FZ_UNARY, 0},
	{"/rustmq.controller.AdminService/DeleteTopics", FZ_UNARY, 0},
	{"/rustmq.controller.AdminService/ListTopics", FZ_UNARY, 0},
	{"/rustmq.controller.AdminService/DescribeTopics", FZ_UNARY, 0},
	{"/rustmq.controller.AdminService/AlterConfigs", FZ_UNARY, 0},
	{"/rustmq.controller.AdminService/DescribeConfigs", FZ_UNARY, 0},
	{"/rustmq.controller.AdminService/DescribeCluster", FZ_UNARY, 0},
	{"/rustmq.controller.AdminService/ElectLeaders", FZ_UNARY, 0},
	{"/rustmq.client.MetadataService/GetTopicMetadata", FZ_UNARY, 0},
	{"/rustmq.client.MetadataService/ListTopics", FZ_UNARY, 0},
	{"/rustmq.client.MetadataService/GetBrokerList", FZ_UNARY, 0},
	{"/rustmq.client.MetadataService/GetPartitionLeader", FZ_UNARY, 0},
	{"/rustmq.client.MetadataService/GetClusterMetadata", FZ_UNARY, 0},
	{"/rustmq.client.MetadataService/FindCoordinator", FZ_UNARY, 0},
	{"/rustmq.client.AuthService/Authenticate", FZ_UNARY, 0},
	{"/grpc.health.v1.Health/Check", FZ_UNARY, 0},
	{"/grpc.health.v1.Health/Watch", FZ_SERVER_STREAM, 0},
	{"/rustmq.broker.BrokerHealthService/HealthCheck", FZ_UNARY, 0},
	{"/rustmq.broker.BrokerHealthService/GetMetrics", FZ_UNARY, 0},
	{"/rustmq.broker.BrokerReplicationService/ReplicateData", FZ_UNARY, 0},
};

/* Partitions a CreateTopicsRequest asks for, topics without a count
 * counted as one; as protobuf would decode it (a malformed request counts
 * 0: the node refuses it before creating anything). */
static uint64_t partitions_asked(const uint8_t *p, size_t len)
{
	const uint8_t *end = p + len;
	uint64_t total = 0;
	while (p < end) {
		uint32_t f, w;
		uint64_t num = 0;
		const uint8_t *val = NULL;
		size_t vlen = 0;
		size_t k = rmq_pb_next(p, end, &f, &w, &num, &val, &vlen);
		if (k == 0)
			return 0;
		if (f == 2 && w == RMQ_PB_LEN) {
			uint64_t n = 0;
			if (!fz_pb_find(val, vlen, 2, &n, NULL, NULL) || n == 0)
				n = 1;
			total += n;
		}
		p += k;
	}
	return total;
}

static void patch(unsigned method, const struct fz_step *st, struct fz_buf *out)
{
	/* Replace an over-large CreateTopics by an empty one (still a call). */
	if (method == 0 && partitions_asked(st->body, st->len) > FILTER_PARTITIONS)
		fz_pb_uint(out, 4, 1); /* validate_only, nothing else */
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	fz_node_start(NULL);
	static const struct fz_script_ops ops = {methods, sizeof(methods) / sizeof(methods[0]),
						 NULL, patch, NULL};
	fz_run_script(data, size, &ops);
	struct fz_conn *c = fz_conn_open();
	fz_delete_topics_except(c, NULL);
	fz_wait_idle(c, 10000);
	fz_conn_close(c);
	return 0;
}
