/* SPDX-License-Identifier: Apache-2.0 */
/*
 * fuzz_produce - ProducerService request decoding and validation
 * (src/broker/produce.c), through a real node (fuzz_node.h).
 *
 * Input: a script (fuzz_node.h) of calls on one connection, with the
 * FZ_SEL_* flags (in flight, cancel, 1 ms deadline).
 *
 *   method      body
 *   0 Produce        one ProduceRequest
 *   1 ProduceBatch   one ProduceBatchRequest
 *   2 ProduceStream  ProduceRequests (2-byte lengths, fz_split_messages),
 *                    then END_STREAM
 *   3 ProduceStream  the same, left open: the connection's close ends it
 *
 * The node auto-creates topics.  It starts with topics t1 (1 partition),
 * t3 (3), tn (compression.type=none: the broker decompresses and stores
 * uncompressed), tz (compression.type=zstd: the broker re-codes) and tl
 * (LogAppendTime); topics an input creates are deleted after it.
 *
 * After each input every partition of those topics is read from where the
 * last check ended (fz_check_partition): whatever the node acknowledged or
 * not, every batch it stored must parse, carry a correct CRC-32C, hold
 * record_count records, and continue the offsets before it.
 *
 * Reproduce: build/fuzz/tests/fuzz/fuzz_produce <input file>
 */
#include "fuzz_node.h"

static const struct fz_method methods[] = {
	{"/rustmq.client.ProducerService/Produce", FZ_UNARY, 0},
	{"/rustmq.client.ProducerService/ProduceBatch", FZ_UNARY, 0},
	{"/rustmq.client.ProducerService/ProduceStream", FZ_STREAM, 0},
	{"/rustmq.client.ProducerService/ProduceStream", FZ_STREAM_OPEN, 0},
};

static const char *const keep[] = {"t1", "t3", "tn", "tz", "tl", NULL};

static const struct {
	const char *topic;
	uint32_t partition;
	int codec; /* forced by the topic; -1 = the producer's */
} parts[] = {
	{"t1", 0, -1}, {"t3", 0, -1}, {"t3", 1, -1}, {"t3", 2, -1},
	{"tn", 0, 0}, {"tz", 0, 2}, {"tl", 0, -1},
};
#define NPARTS (sizeof(parts) / sizeof(parts[0]))
static uint64_t checked[NPARTS];

static void setup(void)
{
	static const char *const flags[] = {"--auto-create-topics=true", NULL};
	static const char *const none[] = {"compression.type=none", NULL};
	static const char *const zstd[] = {"compression.type=zstd", NULL};
	static const char *const lat[] = {"message.timestamp.type=LogAppendTime", NULL};
	fz_node_start(flags);
	struct fz_conn *c = fz_conn_open();
	fz_create_topic(c, "t1", 1, NULL);
	fz_create_topic(c, "t3", 3, NULL);
	fz_create_topic(c, "tn", 1, none);
	fz_create_topic(c, "tz", 1, zstd);
	fz_create_topic(c, "tl", 1, lat);
	fz_conn_close(c);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	static bool ready;
	if (!ready) {
		setup();
		ready = true;
	}
	static const struct fz_script_ops ops = {methods, sizeof(methods) / sizeof(methods[0]),
						 NULL, NULL, NULL};
	fz_run_script(data, size, &ops);

	struct fz_conn *check = fz_conn_open();
	fz_delete_topics_except(check, keep);
	for (size_t i = 0; i < NPARTS; i++)
		checked[i] = fz_check_partition(check, parts[i].topic, parts[i].partition,
						 checked[i], parts[i].codec);
	fz_wait_idle(check, 10000);
	fz_conn_close(check);
	return 0;
}
