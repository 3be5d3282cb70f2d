/* SPDX-License-Identifier: Apache-2.0 */
/*
 * test_wire.c - rmq-bench's encodings: a produce request decodes with
 * protobuf-c into the batch the broker expects (CRC-32C of the records
 * bytes, record_count, compressed_records for codecs), a FetchResponse
 * built the way the broker stores batches walks back to the same records
 * and stamps, and offsets and errors move as a consumer needs.
 */
#include "bench.h"

#include "client/consumer.pb-c.h"
#include "client/producer.pb-c.h"
#include "core/crc32c.h"
#include "core/pbwire.h"
#include "storage/codec.h"

#include <criterion/criterion.h>
#include <stdlib.h>
#include <string.h>

struct got {
	uint64_t records, bytes, stamped, errors, last_error;
	uint64_t stamp;
};

static void on_record(void *arg, const uint8_t *v, size_t len)
{
	struct got *g = arg;
	g->records++;
	g->bytes += len;
	if (len >= BENCH_STAMP_BYTES && memcmp(v, BENCH_STAMP_MAGIC, 4) == 0) {
		uint64_t s = 0;
		for (int i = 7; i >= 0; i--)
			s = s << 8 | v[4 + i];
		g->stamped++;
		g->stamp = s;
	}
}

static void on_error(void *arg, int code)
{
	struct got *g = arg;
	g->errors++;
	g->last_error = (uint64_t)code;
}

static void check_request(int codec)
{
	struct bench_batch b;
	cr_assert_eq(bench_batch_init(&b, 50, 300, codec, 7), 0);
	cr_assert_eq(bench_batch_seal(&b, 0x0102030405060708ULL), 0);
	size_t len;
	const uint8_t *req = bench_encode_produce_batch(&b, "t-1", 3, 1, 42, &len);
	Rustmq__Client__ProduceBatchRequest *r =
		rustmq__client__produce_batch_request__unpack(NULL, len, req);
	cr_assert_not_null(r, "codec %d: the request does not decode", codec);
	cr_assert_eq(r->acks, 1);
	cr_assert_eq(r->correlation_id, 42);
	cr_assert_eq(r->n_partitions, 1);
	cr_assert_str_eq(r->partitions[0]->topic_partition->topic, "t-1");
	cr_assert_eq(r->partitions[0]->topic_partition->partition, 3);
	const Rustmq__Common__RecordBatch *rb = r->partitions[0]->batch;
	cr_assert_eq(rb->magic, 2);
	cr_assert_eq(rb->compression_type, (unsigned)codec);
	cr_assert_eq(rb->record_count, 50);
	if (codec == 0) {
		cr_assert_eq(rb->n_records, 50);
		cr_assert_eq(rb->records[0]->value.len, 300);
		cr_assert_eq(memcmp(rb->records[49]->value.data, "RMQB\x08\x07\x06\x05\x04\x03\x02\x01", 12), 0);
		/* The CRC covers the field-7 elements: here, all of raw. */
		cr_assert_eq(rb->crc32, rmq_crc32c(0, b.raw, b.raw_len));
	} else {
		cr_assert_eq(rb->n_records, 0);
		cr_assert_eq(rb->crc32, rmq_crc32c(0, rb->compressed_records.data, rb->compressed_records.len));
		uint8_t *raw = malloc(b.raw_len);
		ssize_t n = rmq_codec_decompress(codec, rb->compressed_records.data,
						 rb->compressed_records.len, raw, b.raw_len);
		cr_assert_eq(n, (ssize_t)b.raw_len);
		cr_assert_eq(memcmp(raw, b.raw, b.raw_len), 0, "decompresses to the records");
		free(raw);
	}
	rustmq__client__produce_batch_request__free_unpacked(r, NULL);

	/* The stream form carries the same batch in ProduceRequest.batch. */
	req = bench_encode_produce(&b, "t-1", 0, 0, 9, &len);
	Rustmq__Client__ProduceRequest *pr = rustmq__client__produce_request__unpack(NULL, len, req);
	cr_assert_not_null(pr);
	cr_assert_eq(pr->correlation_id, 9);
	cr_assert_eq(pr->batch->record_count, 50);
	cr_assert_eq(pr->topic_partition->partition, 0);
	rustmq__client__produce_request__free_unpacked(pr, NULL);
	bench_batch_free(&b);
}

/* An idempotent producer's batch carries its producer id, epoch and base
 * sequence; --unique-values writes them per record after the stamp. */
Test(wire, produce_request_numbers_the_batch)
{
	struct bench_batch b;
	cr_assert_eq(bench_batch_init(&b, 3, 40, 0, 7), 0);
	b.producer_id = 0x123456789;
	b.producer_epoch = 2;
	b.base_sequence = INT32_MAX - 1; /* the third record's wraps to 0 */
	b.unique = true;
	b.partition = 5;
	cr_assert_eq(bench_batch_seal(&b, 1), 0);
	size_t len;
	const uint8_t *req = bench_encode_produce_batch(&b, "t-1", 5, 3, 1, &len);
	Rustmq__Client__ProduceBatchRequest *r =
		rustmq__client__produce_batch_request__unpack(NULL, len, req);
	cr_assert_not_null(r);
	const Rustmq__Common__RecordBatch *rb = r->partitions[0]->batch;
	cr_assert_eq(rb->producer_id, 0x123456789);
	cr_assert_eq(rb->producer_epoch, 2);
	cr_assert_eq(rb->base_sequence, INT32_MAX - 1);
	cr_assert_eq(rb->crc32, rmq_crc32c(0, b.raw, b.raw_len));
	static const uint32_t seqs[3] = {INT32_MAX - 1, INT32_MAX, 0};
	for (int i = 0; i < 3; i++) {
		const uint8_t *v = rb->records[i]->value.data;
		uint8_t want[16] = {0x89, 0x67, 0x45, 0x23, 0x01, 0, 0, 0, 5, 0, 0, 0};
		for (int k = 0; k < 4; k++)
			want[12 + k] = (uint8_t)(seqs[i] >> (8 * k));
		cr_assert_eq(memcmp(v + BENCH_STAMP_BYTES, want, 16), 0, "record %d's numbers", i);
	}
	rustmq__client__produce_batch_request__free_unpacked(r, NULL);

	/* A unary Produce names them in the ProduceRequest. */
	struct bench_batch u;
	cr_assert_eq(bench_batch_init_unary(&u, 2, 40, 7), 0);
	u.producer_id = 9;
	u.base_sequence = 100;
	cr_assert_eq(bench_batch_seal(&u, 1), 0);
	req = bench_encode_produce_records(&u, "t-1", 0, 1, 2, &len);
	Rustmq__Client__ProduceRequest *pr = rustmq__client__produce_request__unpack(NULL, len, req);
	cr_assert_not_null(pr);
	cr_assert_eq(pr->producer_id, 9);
	cr_assert_eq(pr->base_sequence, 100);
	cr_assert_eq(pr->n_records, 2);
	rustmq__client__produce_request__free_unpacked(pr, NULL);
	bench_batch_free(&u);

	/* Not idempotent: no numbers. */
	b.producer_id = 0;
	b.unique = false;
	cr_assert_eq(bench_batch_seal(&b, 1), 0);
	req = bench_encode_produce_batch(&b, "t-1", 5, 3, 1, &len);
	r = rustmq__client__produce_batch_request__unpack(NULL, len, req);
	cr_assert_not_null(r);
	cr_assert_eq(r->partitions[0]->batch->producer_id, 0);
	cr_assert_eq(r->partitions[0]->batch->base_sequence, 0);
	rustmq__client__produce_batch_request__free_unpacked(r, NULL);
	bench_batch_free(&b);
}

Test(wire, produce_request_decodes)
{
	for (int codec = 0; codec < RMQ_CODEC_COUNT; codec++)
		check_request(codec);
}

Test(wire, short_values_carry_no_stamp)
{
	struct bench_batch b;
	cr_assert_eq(bench_batch_init(&b, 3, 5, 0, 1), 0);
	cr_assert_eq(bench_batch_seal(&b, 77), 0);
	for (size_t i = 0; i < b.raw_len; i++)
		cr_assert_neq(b.raw[i], 77, "no stamp byte in a 5-byte value");
	bench_batch_free(&b);
}

/* A FetchResponse with one partition holding the batch as the broker
 * stores it: the RecordBatch header with base_offset, then the payload. */
static size_t fetch_response(uint8_t *out, const struct bench_batch *b, uint32_t partition,
			     uint64_t base, uint32_t crc)
{
	uint8_t rb[256], fpr[512];
	size_t n = 0;
	n += rmq_pb_put_uint(rb + n, 1, 2);
	if (b->compression)
		n += rmq_pb_put_uint(rb + n, 2, (uint64_t)b->compression);
	if (base)
		n += rmq_pb_put_uint(rb + n, 3, base);
	n += rmq_pb_put_uint(rb + n, 8, crc);
	n += rmq_pb_put_uint(rb + n, 10, b->records);
	if (b->compression)
		n += rmq_pb_put_len(rb + n, 9, b->payload_len);
	size_t batch_len = n + b->payload_len;

	size_t m = 0;
	uint8_t tp[64];
	size_t tpl = rmq_pb_put_len(tp, 1, 1);
	tp[tpl++] = 't';
	tpl += rmq_pb_put_uint(tp + tpl, 2, partition);
	m += rmq_pb_put_len(fpr + m, 1, tpl);
	memcpy(fpr + m, tp, tpl);
	m += tpl;
	m += rmq_pb_put_uint(fpr + m, 3, base + b->records); /* high watermark */
	m += rmq_pb_put_len(fpr + m, 6, batch_len);

	size_t o = rmq_pb_put_len(out, 3, m + batch_len);
	memcpy(out + o, fpr, m);
	o += m;
	memcpy(out + o, rb, n);
	o += n;
	memcpy(out + o, b->buf + BENCH_HEADROOM, b->payload_len);
	return o + b->payload_len;
}

static void check_fetch(int codec)
{
	struct bench_batch b;
	cr_assert_eq(bench_batch_init(&b, 20, 100, codec, 3), 0);
	cr_assert_eq(bench_batch_seal(&b, 123456789), 0);
	uint8_t *resp = malloc(b.payload_len + 1024);
	size_t len = fetch_response(resp, &b, 2, 1000, b.crc);

	struct got g = {0};
	struct bench_fetch_sink sink = {on_record, on_error, &g, NULL, 0, 1u << 20};
	struct bench_rpart parts[2] = {{1, 0}, {2, 1005}};
	int n = bench_parse_fetch_response(resp, len, parts, 2, &sink);
	cr_assert_eq(n, 15, "codec %d: records before the fetch offset are skipped", codec);
	cr_assert_eq(g.records, 15);
	cr_assert_eq(g.bytes, 15 * 100);
	cr_assert_eq(g.stamped, 15);
	cr_assert_eq(g.stamp, 123456789);
	cr_assert_eq(g.errors, 0);
	cr_assert_eq(parts[1].offset, 1020, "next offset after the batch");
	cr_assert_eq(parts[0].offset, 0, "other partitions untouched");

	/* A corrupted CRC is reported, and the batch is not asked for again. */
	memset(&g, 0, sizeof(g));
	parts[1].offset = 1000;
	len = fetch_response(resp, &b, 2, 1000, b.crc ^ 1);
	n = bench_parse_fetch_response(resp, len, parts, 2, &sink);
	cr_assert_eq(n, 0);
	cr_assert_eq(g.errors, 1);
	cr_assert_eq(g.last_error, BENCH_ERR_CRC);
	cr_assert_eq(parts[1].offset, 1020);
	free(sink.scratch);
	free(resp);
	bench_batch_free(&b);
}

Test(wire, fetch_response_walks_back_to_the_records)
{
	for (int codec = 0; codec < RMQ_CODEC_COUNT; codec++)
		check_fetch(codec);
}

/* A stored batch whose compressed_records (field 9) is not length-delimited
 * is a broken batch: reported, and never read through bytes it does not
 * carry (the old walk took the pointer of a varint field). */
Test(wire, fetch_response_batch_with_a_varint_field_9)
{
	uint8_t rb[32], out[128];
	size_t n = 0;
	n += rmq_pb_put_uint(rb + n, 1, 2);
	n += rmq_pb_put_uint(rb + n, 2, RMQ_CODEC_LZ4);
	n += rmq_pb_put_uint(rb + n, 3, 10);
	n += rmq_pb_put_uint(rb + n, 10, 1);
	n += rmq_pb_put_uint(rb + n, 9, 5);

	uint8_t fpr[64];
	size_t m = 0, tpl = 0;
	uint8_t tp[16];
	tpl += rmq_pb_put_len(tp, 1, 1);
	tp[tpl++] = 't';
	tpl += rmq_pb_put_uint(tp + tpl, 2, 0);
	m += rmq_pb_put_len(fpr + m, 1, tpl);
	memcpy(fpr + m, tp, tpl);
	m += tpl;
	m += rmq_pb_put_len(fpr + m, 6, n);
	memcpy(fpr + m, rb, n);
	m += n;
	size_t o = rmq_pb_put_len(out, 3, m);
	memcpy(out + o, fpr, m);
	o += m;

	struct got g = {0};
	struct bench_fetch_sink sink = {on_record, on_error, &g, NULL, 0, 1u << 20};
	struct bench_rpart parts[1] = {{0, 10}};
	cr_assert_eq(bench_parse_fetch_response(out, o, parts, 1, &sink), 0);
	cr_assert_eq(g.records, 0);
	cr_assert_eq(g.errors, 1);
	cr_assert_eq(g.last_error, BENCH_ERR_BAD_RESPONSE);
	cr_assert_eq(parts[0].offset, 11, "the broken batch is not asked for again");
	free(sink.scratch);
}

Test(wire, fetch_request_decodes)
{
	uint8_t buf[1024];
	struct bench_rpart parts[3] = {{0, 0}, {4, 77}, {8, 1ULL << 40}};
	int len = bench_encode_fetch(buf, sizeof(buf), "topic", parts, 3, 1500000000ULL, 1 << 20, 4096);
	cr_assert_gt(len, 0);
	Rustmq__Client__FetchRequest *r = rustmq__client__fetch_request__unpack(NULL, (size_t)len, buf);
	cr_assert_not_null(r);
	cr_assert_eq(r->min_bytes, 1);
	cr_assert_eq(r->max_bytes, 1 << 20);
	cr_assert_eq(r->max_wait->seconds, 1);
	cr_assert_eq(r->max_wait->nanos, 500000000);
	cr_assert_eq(r->n_partitions, 3);
	cr_assert_eq(r->partitions[1]->topic_partition->partition, 4);
	cr_assert_eq(r->partitions[1]->fetch_offset, 77);
	cr_assert_eq(r->partitions[2]->fetch_offset, 1ULL << 40);
	cr_assert_eq(r->partitions[2]->partition_max_bytes, 4096);
	rustmq__client__fetch_request__free_unpacked(r, NULL);

	len = bench_encode_subscribe(buf, sizeof(buf), "topic", parts, 3, 1 << 20, 4096);
	Rustmq__Client__SubscribeRequest *s =
		rustmq__client__subscribe_request__unpack(NULL, (size_t)len, buf);
	cr_assert_not_null(s);
	cr_assert_eq(s->n_partitions, 3);
	/* offset 0 is set explicitly: the oneof says "from offset 0", not
	 * "from the latest". */
	cr_assert_eq(s->partitions[0]->start_case, RUSTMQ__CLIENT__SUBSCRIBE_PARTITION__START_OFFSET);
	cr_assert_eq(s->partitions[0]->offset, 0);
	cr_assert_eq(s->partitions[1]->offset, 77);
	rustmq__client__subscribe_request__free_unpacked(s, NULL);

	cr_assert_lt(bench_encode_fetch(buf, 64, "topic", parts, 3, 0, 1, 1), 0, "too small a buffer");
}

Test(wire, produce_responses)
{
	Rustmq__Client__ProduceResponse p1 = RUSTMQ__CLIENT__PRODUCE_RESPONSE__INIT, p2 = p1;
	Rustmq__Client__ProduceResponse *ps[2] = {&p1, &p2};
	Rustmq__Client__ProduceBatchResponse r = RUSTMQ__CLIENT__PRODUCE_BATCH_RESPONSE__INIT;
	uint8_t buf[256];
	struct bench_produce_result res;

	p1.record_count = 100;
	p2.record_count = 100;
	r.partitions = ps;
	r.n_partitions = 2;
	r.correlation_id = 5;
	size_t len = rustmq__client__produce_batch_response__pack(&r, buf);
	cr_assert_eq(bench_parse_produce_batch_response(buf, len, &res), 0);
	cr_assert_eq(res.code, 0);
	cr_assert_eq(res.ok_records, 200);
	cr_assert_eq(res.correlation_id, 5);

	p2.error_code = RUSTMQ__COMMON__ERROR_CODE__NOT_LEADER;
	len = rustmq__client__produce_batch_response__pack(&r, buf);
	cr_assert_eq(bench_parse_produce_batch_response(buf, len, &res), 0);
	cr_assert_eq(res.code, (int)RUSTMQ__COMMON__ERROR_CODE__NOT_LEADER);
	cr_assert_eq(res.ok_records, 100, "the other partition still counts");

	len = rustmq__client__produce_response__pack(&p1, buf);
	cr_assert_eq(bench_parse_produce_response(buf, len, &res), 0);
	cr_assert_eq(res.ok_records, 100);

	uint8_t junk[] = {0x0a, 0x10, 0x01};
	cr_assert_lt(bench_parse_produce_batch_response(junk, sizeof(junk), &res), 0);
}

Test(wire, unary_produce_request_decodes)
{
	/* --produce-rpc=unary: a ProduceRequest with the records themselves
	 * in `records`, each value stamped, and no batch. */
	struct bench_batch b;
	cr_assert_eq(bench_batch_init_unary(&b, 7, 100, 5), 0);
	cr_assert_eq(bench_batch_seal(&b, 0x1122334455667788ULL), 0);
	size_t len;
	const uint8_t *req = bench_encode_produce_records(&b, "topic-u", 3, 1, 42, &len);
	Rustmq__Client__ProduceRequest *pr = rustmq__client__produce_request__unpack(NULL, len, req);
	cr_assert_not_null(pr, "ProduceRequest does not decode");
	cr_assert_null(pr->batch, "no batch: the broker builds it");
	cr_assert_eq(pr->n_records, 7);
	cr_assert_str_eq(pr->topic_partition->topic, "topic-u");
	cr_assert_eq(pr->topic_partition->partition, 3);
	cr_assert_eq(pr->acks, 1);
	cr_assert_eq(pr->correlation_id, 42);
	cr_assert_str_eq(pr->client_id, "rmq-bench");
	for (size_t i = 0; i < pr->n_records; i++) {
		struct got g = {0};
		cr_assert_eq(pr->records[i]->value.len, 100);
		on_record(&g, pr->records[i]->value.data, pr->records[i]->value.len);
		cr_assert_eq(g.stamped, 1);
		cr_assert_eq(g.stamp, 0x1122334455667788ULL);
	}
	rustmq__client__produce_request__free_unpacked(pr, NULL);
	bench_batch_free(&b);
}

Test(wire, unary_produce_response)
{
	uint8_t buf[64];
	size_t n = rmq_pb_put_uint(buf, 3, 10);  /* offset */
	n += rmq_pb_put_uint(buf + n, 9, 7);      /* record_count */
	n += rmq_pb_put_uint(buf + n, 10, 42);    /* correlation_id */
	struct bench_produce_result r;
	cr_assert_eq(bench_parse_produce_response(buf, n, &r), 0);
	cr_assert_eq(r.code, 0);
	cr_assert_eq(r.ok_records, 7);
	cr_assert_eq(r.correlation_id, 42);
}
