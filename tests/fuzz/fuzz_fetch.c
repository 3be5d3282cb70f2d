/* SPDX-License-Identifier: Apache-2.0 */
/*
 * fuzz_fetch - ConsumerService's reads: Fetch, FetchBatch, Subscribe and
 * ListOffsets (src/broker/fetch.c, lookup.c, coldread.c), through a real
 * node (fuzz_node.h).
 *
 * Input: a script (fuzz_node.h) of calls on one connection, with the
 * FZ_SEL_* flags (in flight, cancel, 1 ms deadline).
 *
 *   method         body
 *   0 Fetch        one FetchRequest (long polls are capped at 100 ms)
 *   1 FetchBatch   one FetchBatchRequest
 *   2 Subscribe    one SubscribeRequest; the first answer is read (or
 *                  20 ms pass), then the stream is reset
 *   3 ListOffsets  one ListOffsetsRequest
 *   4 produce      not a call: the harness appends valid records, so that
 *                  long polls and subscriptions in flight wake up.  body[0]
 *                  picks the partition, body[1] % 16 + 1 records, body[2] % 4
 *                  the codec
 *
 * The node starts with topics t1 (1 partition) and t3 (3 partitions)
 * holding a few hundred batches of every codec across several segments,
 * with retention already past the first ones (log start > 0), and tl
 * (LogAppendTime) with a few batches.
 *
 * Answers are checked too: every batch a Fetch (or FetchBatch, or
 * Subscribe) serves must parse and carry a correct CRC-32C.
 *
 * Reproduce: build/fuzz/tests/fuzz/fuzz_fetch <input file>
 */
#include "fuzz_node.h"

#include "core/pbwire.h"
#include "storage/batch.h"

static const struct fz_method methods[] = {
	{"/rustmq.client.ConsumerService/Fetch", FZ_UNARY, 0},
	{"/rustmq.client.ConsumerService/FetchBatch", FZ_UNARY, 0},
	{"/rustmq.client.ConsumerService/Subscribe", FZ_SERVER_STREAM, 0},
	{"/rustmq.client.ConsumerService/ListOffsets", FZ_UNARY, 0},
	{NULL, FZ_LOCAL, 0},
};

static const struct {
	const char *topic;
	uint32_t partition;
} parts[] = {{"t1", 0}, {"t3", 0}, {"t3", 1}, {"t3", 2}, {"tl", 0}};
#define NPARTS (sizeof(parts) / sizeof(parts[0]))

static void local(struct fz_conn *c, const struct fz_step *st)
{
	unsigned p = st->len > 0 ? st->body[0] % NPARTS : 0;
	unsigned n = st->len > 1 ? st->body[1] % 16 + 1 : 1;
	unsigned codec = st->len > 2 ? st->body[2] % 4 : 0;
	fz_produce_records(c, parts[p].topic, parts[p].partition, n, 20, codec);
}

/* Checks the batches of one FetchResponse (or a FetchBatchResponse's
 * responses: depth 1). */
static void check_fetch(const uint8_t *p, size_t len, int depth)
{
	const uint8_t *end = p + len;
	while (p < end) {
		uint32_t f, w;
		uint64_t num = 0;
		const uint8_t *val = NULL;
		size_t vlen = 0;
		size_t k = rmq_pb_next(p, end, &f, &w, &num, &val, &vlen);
		if (k == 0)
			fz_fail("a fetch answer is malformed protobuf");
		if (f == 3 && w == RMQ_PB_LEN && depth == 1) {
			check_fetch(val, vlen, 0);
		} else if (f == 3 && w == RMQ_PB_LEN) {
			/* FetchPartitionResponse: its field-6 elements are the
			 * stored entries. */
			const uint8_t *q = val, *qe = val + vlen;
			while (q < qe) {
				uint32_t f2, w2;
				uint64_t n2 = 0;
				const uint8_t *v2 = NULL;
				size_t l2 = 0;
				size_t k2 = rmq_pb_next(q, qe, &f2, &w2, &n2, &v2, &l2);
				if (k2 == 0)
					fz_fail("a FetchPartitionResponse is malformed protobuf");
				if (f2 == 6) {
					struct rmq_batch_view v;
					if (rmq_batch_parse(q, k2, &v) != (int)k2)
						fz_fail("a fetched batch does not parse");
					if (rmq_batch_check_crc(q, &v) != 0)
						fz_fail("the fetched batch at offset %llu has a wrong CRC-32C",
							(unsigned long long)v.hdr.base_offset);
				}
				q += k2;
			}
		}
		p += k;
	}
}

static void answered(unsigned method, const struct fz_step *st, struct fz_call *k)
{
	(void)st;
	/* Subscribe ends reset by the harness: check what it got. */
	if (method > 2 || (method != 2 && fz_call_status(k) != 0))
		return;
	for (size_t i = 0; i < fz_call_nmsgs(k); i++) {
		size_t len;
		const uint8_t *m = fz_call_msg(k, i, &len);
		check_fetch(m, len, method == 1 ? 1 : 0);
	}
}

static void setup(void)
{
	static const char *const lat[] = {"message.timestamp.type=LogAppendTime", NULL};
	fz_node_start(NULL);
	struct fz_conn *c = fz_conn_open();
	fz_create_topic(c, "t1", 1, NULL);
	fz_create_topic(c, "t3", 3, NULL);
	fz_create_topic(c, "tl", 1, lat);
	/* ~1.5 MiB into t1: a few segments, and retention (1 MiB) moves the
	 * log start past the first ones. */
	for (unsigned i = 0; i < 300; i++)
		fz_produce_records(c, "t1", 0, 20, 240, i % 4);
	for (unsigned p = 0; p < 3; p++)
		for (unsigned i = 0; i < 40; i++)
			fz_produce_records(c, "t3", p, 1 + i % 5, 30, (i + p) % 4);
	for (unsigned i = 0; i < 10; i++)
		fz_produce_records(c, "tl", 0, 3, 10, 0);
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
						 local, NULL, answered};
	fz_run_script(data, size, &ops);
	struct fz_conn *c = fz_conn_open();
	fz_wait_idle(c, 10000);
	fz_conn_close(c);
	return 0;
}
