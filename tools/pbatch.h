/* SPDX-License-Identifier: Apache-2.0 */
/*
 * pbatch.h - a producer's batch for the rmq command-line client: records
 * appended one by one (key, value, headers, timestamp), then encoded as one
 * ProduceBatchRequest for one partition, written with pbwire the way
 * bench/bench_wire.c does (the CRC-32C must cover the exact record bytes
 * sent, which protobuf-c structs would not let us see).
 *
 *   raw:  [0x3A len Record]...            the field-7 elements, grown on demand
 *   Record  1 key (when not empty)  2 value  3 Header{1 key, 2 value}...
 *           4 Timestamp{1 seconds, 2 nanos}
 *
 *   req:  ProduceBatchRequest
 *           1 version {1: 1}  2 client_id "rmq"  4 acks
 *           3 partitions { 1 topic_partition {1 topic, 2 partition}
 *                          2 batch { 1 magic 2, 2 compression, 8 crc32,
 *                                    10 record_count,
 *                                    7 records... | 9 compressed_records } }
 */
#ifndef RMQ_TOOLS_PBATCH_H
#define RMQ_TOOLS_PBATCH_H

#include <stddef.h>
#include <stdint.h>

struct rmq_header_kv {
	const char *key;
	size_t key_len;
	const char *value;
	size_t value_len;
};

struct rmq_pbatch {
	uint8_t *raw;          /* field-7 elements */
	size_t raw_len, raw_cap;
	uint32_t records;
	uint8_t *req;          /* the encoded request (rmq_pbatch_encode) */
	size_t req_cap;
	const uint8_t *out;    /* where the encoded request starts, inside req */
};

/* Appends one record (key_len 0 = no key).  Returns 0 or -ENOMEM. */
int rmq_pbatch_add(struct rmq_pbatch *b, const void *key, size_t key_len, const void *value,
		   size_t value_len, const struct rmq_header_kv *headers, size_t nheaders,
		   uint64_t timestamp_ms);

/* An idempotent producer's numbering of a batch (RecordBatch 11-13). */
struct rmq_pbatch_seq {
	int64_t producer_id;   /* from InitTransaction, >= 1 */
	int32_t producer_epoch;
	int32_t base_sequence; /* of the batch's first record */
};

/*
 * Encodes the request for the records added (compressing them with the
 * storage codec `compression`, an enum rmq_codec) into b->req; the request
 * starts at b->out.  seq: the batch's producer numbering, or NULL (not
 * idempotent).  Returns its length, or -ENOMEM, or a codec error.  The
 * records stay; call rmq_pbatch_clear before reusing the batch.
 */
long rmq_pbatch_encode(struct rmq_pbatch *b, const char *topic, uint32_t partition, int acks,
		       int compression, const struct rmq_pbatch_seq *seq);

void rmq_pbatch_clear(struct rmq_pbatch *b);
void rmq_pbatch_free(struct rmq_pbatch *b);

#endif /* RMQ_TOOLS_PBATCH_H */
