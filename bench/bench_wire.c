/* SPDX-License-Identifier: Apache-2.0 */
/*
 * bench_wire.c - what rmq-bench puts on the wire and reads back, written
 * and walked with pbwire: no protobuf-c structs, no allocation per request.
 *
 * A produce request in its slot's buffer, built back to front around a
 * payload that is made once per send:
 *
 *   buf: [ ....... headroom (BENCH_HEADROOM) ....... ][ payload ............ ]
 *                        [ request headers ........ ][ records bytes, or the
 *                        ^ returned start            compressed records     ]
 *
 *   ProduceBatchRequest                      ProduceRequest (ProduceStream)
 *     1 version {1: 1}                         1 version {1: 1}
 *     2 client_id "rmq-bench"                  2 client_id "rmq-bench"
 *     4 acks, 8 correlation_id                 3 topic_partition {1 topic, 2 p}
 *     3 partitions {                           5 acks, 12 correlation_id
 *         1 topic_partition {1 topic, 2 p}     15 batch { header, payload }
 *         2 batch {                          
 *           1 magic 2, 2 compression, 8 crc32, 10 record_count,
 *           11 producer_id, 12 epoch, 13 base_sequence (idempotent),
 *           then 7 records... (the payload)  or  9 compressed_records
 *       } }
 *
 * --produce-rpc=unary sends a ProduceRequest to Produce with the records
 * themselves, not a batch: 1 version, 2 client_id, 3 topic_partition,
 * 5 acks, 12 correlation_id, 9-11 producer id, epoch and base sequence
 * (idempotent), then 4 records... (the payload: field-4
 * elements, never compressed, no CRC; the broker builds the batch).
 *
 * A record is Record{2: value}; its value is msg-bytes long:
 *
 *   OFFSET SIZE MEANING
 *   0      4    "RMQB"
 *   4      8    send time, ns, little-endian (the intended time when paced),
 *               CLOCK_MONOTONIC plus the process's offset to CLOCK_REALTIME,
 *               so another process on the host can measure delivery
 *   12     ...  letters A..Z, pseudo-random (compress like text, as
 *               Kafka's producer-perf-test payloads do)
 *
 * With --unique-values (values of at least 28 bytes) bytes 12..27 are the
 * record's producer id (8), partition (4) and sequence (4), little-endian.
 *
 * Values shorter than 12 bytes are all letters and carry no time.
 */
#include "bench.h"

#include "core/assert.h"
#include "core/crc32c.h"
#include "core/error.h"
#include "core/pbwire.h"
#include "storage/codec.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>

#define CLIENT_ID "rmq-bench"

/* rustmq.common.ErrorCode values the consumer acts on. */
#define EC_OFFSET_OUT_OF_RANGE 11

/* ---- the batch ---------------------------------------------------------------- */

/* field: 7 (RecordBatch.records) or 4 (ProduceRequest.records). */
static int batch_init(struct bench_batch *b, uint32_t field, uint32_t records, uint32_t msg_bytes,
		      int compression, uint32_t seed)
{
	memset(b, 0, sizeof(*b));
	if (!rmq_codec_name(compression))
		return RMQ_EUNSUPPORTED;
	b->unary = field == 4;
	b->records = records;
	b->msg_bytes = msg_bytes;
	b->compression = compression;
	size_t rec_len = 1 + rmq_pb_varint_len(msg_bytes) + msg_bytes;
	b->elem_bytes = (uint32_t)(1 + rmq_pb_varint_len(rec_len) + rec_len);
	b->stamp_at = (uint32_t)(1 + rmq_pb_varint_len(rec_len) + 1 + rmq_pb_varint_len(msg_bytes) + 4);
	b->raw_len = (size_t)records * b->elem_bytes;
	size_t payload_cap = compression ? rmq_codec_bound(compression, b->raw_len) : b->raw_len;
	b->cap = BENCH_HEADROOM + payload_cap;
	b->buf = malloc(b->cap);
	if (!b->buf)
		return -ENOMEM;
	if (compression) {
		b->raw = malloc(b->raw_len);
		if (!b->raw) {
			free(b->buf);
			b->buf = NULL;
			return -ENOMEM;
		}
	} else {
		b->raw = b->buf + BENCH_HEADROOM; /* the payload is the records */
	}
	uint32_t x = seed * 2654435761u + 1;
	uint8_t *p = b->raw;
	for (uint32_t i = 0; i < records; i++) {
		p += rmq_pb_put_len(p, field, rec_len);
		p += rmq_pb_put_len(p, 2, msg_bytes);
		uint32_t k = 0;
		if (msg_bytes >= BENCH_STAMP_BYTES) {
			memcpy(p, BENCH_STAMP_MAGIC, 4);
			memset(p + 4, 0, 8);
			k = BENCH_STAMP_BYTES;
		}
		for (; k < msg_bytes; k++) {
			x ^= x << 13;
			x ^= x >> 17;
			x ^= x << 5;
			p[k] = (uint8_t)('A' + x % 26);
		}
		p += msg_bytes;
	}
	RMQ_ASSERT((size_t)(p - b->raw) == b->raw_len);
	return 0;
}

int bench_batch_init(struct bench_batch *b, uint32_t records, uint32_t msg_bytes, int compression,
		     uint32_t seed)
{
	return batch_init(b, 7, records, msg_bytes, compression, seed);
}

int bench_batch_init_unary(struct bench_batch *b, uint32_t records, uint32_t msg_bytes,
			   uint32_t seed)
{
	return batch_init(b, 4, records, msg_bytes, 0, seed);
}

void bench_batch_free(struct bench_batch *b)
{
	if (b->compression)
		free(b->raw);
	free(b->buf);
	memset(b, 0, sizeof(*b));
}

int bench_batch_seal(struct bench_batch *b, uint64_t stamp_ns)
{
	if (b->msg_bytes >= BENCH_STAMP_BYTES) {
		uint8_t le[8];
		for (int i = 0; i < 8; i++)
			le[i] = (uint8_t)(stamp_ns >> (8 * i));
		for (uint32_t i = 0; i < b->records; i++)
			memcpy(b->raw + (size_t)i * b->elem_bytes + b->stamp_at, le, 8);
	}
	if (b->unique && b->msg_bytes >= BENCH_UNIQUE_BYTES) {
		uint8_t id[16];
		for (int i = 0; i < 8; i++)
			id[i] = (uint8_t)((uint64_t)b->producer_id >> (8 * i));
		for (int i = 0; i < 4; i++)
			id[8 + i] = (uint8_t)(b->partition >> (8 * i));
		for (uint32_t r = 0; r < b->records; r++) {
			/* Sequences wrap from INT32_MAX to 0 (producer.proto). */
			uint32_t seq = ((uint32_t)b->base_sequence + r) & INT32_MAX;
			for (int i = 0; i < 4; i++)
				id[12 + i] = (uint8_t)(seq >> (8 * i));
			memcpy(b->raw + (size_t)r * b->elem_bytes + b->stamp_at + 8, id, 16);
		}
	}
	uint8_t *payload = b->buf + BENCH_HEADROOM;
	if (b->compression) {
		ssize_t n = rmq_codec_compress(b->compression, b->raw, b->raw_len, payload,
					       b->cap - BENCH_HEADROOM);
		if (n < 0)
			return (int)n;
		b->payload_len = (size_t)n;
	} else {
		b->payload_len = b->raw_len;
	}
	/* A unary Produce's records carry no CRC: the broker makes the batch. */
	b->crc = b->unary ? 0 : rmq_crc32c(0, payload, b->payload_len);
	return 0;
}

/* The RecordBatch fields before the payload. */
static size_t batch_header(const struct bench_batch *b, uint8_t *out)
{
	size_t n = rmq_pb_put_uint(out, 1, 2); /* magic */
	if (b->compression)
		n += rmq_pb_put_uint(out + n, 2, (uint64_t)b->compression);
	n += rmq_pb_put_uint(out + n, 8, b->crc);
	n += rmq_pb_put_uint(out + n, 10, b->records);
	if (b->producer_id) {
		n += rmq_pb_put_uint(out + n, 11, (uint64_t)b->producer_id);
		if (b->producer_epoch)
			n += rmq_pb_put_uint(out + n, 12, (uint64_t)(uint32_t)b->producer_epoch);
		if (b->base_sequence)
			n += rmq_pb_put_uint(out + n, 13, (uint64_t)(uint32_t)b->base_sequence);
	}
	if (b->compression)
		n += rmq_pb_put_len(out + n, 9, b->payload_len);
	return n;
}

static size_t topic_partition(uint8_t *out, const char *topic, uint32_t partition)
{
	size_t tl = strlen(topic);
	size_t n = rmq_pb_put_len(out, 1, tl);
	memcpy(out + n, topic, tl);
	n += tl;
	if (partition)
		n += rmq_pb_put_uint(out + n, 2, partition);
	return n;
}

static size_t preamble(uint8_t *out)
{
	size_t n = rmq_pb_put_len(out, 1, 2);
	n += rmq_pb_put_uint(out + n, 1, 1); /* ApiVersion{major: 1} */
	n += rmq_pb_put_len(out + n, 2, sizeof(CLIENT_ID) - 1);
	memcpy(out + n, CLIENT_ID, sizeof(CLIENT_ID) - 1);
	return n + sizeof(CLIENT_ID) - 1;
}

/* Places hdr (hlen bytes) right before the payload and returns the start. */
static const uint8_t *place(struct bench_batch *b, const uint8_t *hdr, size_t hlen, size_t *len)
{
	RMQ_ASSERT(hlen <= BENCH_HEADROOM);
	uint8_t *start = b->buf + BENCH_HEADROOM - hlen;
	memcpy(start, hdr, hlen);
	*len = hlen + b->payload_len;
	return start;
}

const uint8_t *bench_encode_produce_batch(struct bench_batch *b, const char *topic,
					  uint32_t partition, int acks, uint64_t correlation_id,
					  size_t *len)
{
	uint8_t bh[64], tp[300], out[BENCH_HEADROOM];
	size_t bhl = batch_header(b, bh);
	size_t tpl = topic_partition(tp, topic, partition);
	size_t batch_len = bhl + b->payload_len;
	size_t ppd_len = 1 + rmq_pb_varint_len(tpl) + tpl + 1 + rmq_pb_varint_len(batch_len) + batch_len;
	size_t n = preamble(out);
	if (acks)
		n += rmq_pb_put_uint(out + n, 4, (uint64_t)acks);
	if (correlation_id)
		n += rmq_pb_put_uint(out + n, 8, correlation_id);
	n += rmq_pb_put_len(out + n, 3, ppd_len);
	n += rmq_pb_put_len(out + n, 1, tpl);
	memcpy(out + n, tp, tpl);
	n += tpl;
	n += rmq_pb_put_len(out + n, 2, batch_len);
	memcpy(out + n, bh, bhl);
	n += bhl;
	return place(b, out, n, len);
}

/* A ProduceRequest's fields before its records: version, client id,
 * topic_partition, acks, correlation id. */
static size_t produce_head(uint8_t *out, const char *topic, uint32_t partition, int acks,
			   uint64_t correlation_id)
{
	uint8_t tp[300];
	size_t tpl = topic_partition(tp, topic, partition);
	size_t n = preamble(out);
	n += rmq_pb_put_len(out + n, 3, tpl);
	memcpy(out + n, tp, tpl);
	n += tpl;
	if (acks)
		n += rmq_pb_put_uint(out + n, 5, (uint64_t)acks);
	if (correlation_id)
		n += rmq_pb_put_uint(out + n, 12, correlation_id);
	return n;
}

const uint8_t *bench_encode_produce(struct bench_batch *b, const char *topic, uint32_t partition,
				    int acks, uint64_t correlation_id, size_t *len)
{
	uint8_t bh[64], out[BENCH_HEADROOM];
	size_t bhl = batch_header(b, bh);
	size_t n = produce_head(out, topic, partition, acks, correlation_id);
	n += rmq_pb_put_len(out + n, 15, bhl + b->payload_len);
	memcpy(out + n, bh, bhl);
	n += bhl;
	return place(b, out, n, len);
}

const uint8_t *bench_encode_produce_records(struct bench_batch *b, const char *topic,
					    uint32_t partition, int acks, uint64_t correlation_id,
					    size_t *len)
{
	RMQ_ASSERT(b->unary);
	uint8_t out[BENCH_HEADROOM];
	size_t n = produce_head(out, topic, partition, acks, correlation_id);
	if (b->producer_id) {
		n += rmq_pb_put_uint(out + n, 9, (uint64_t)b->producer_id);
		if (b->producer_epoch)
			n += rmq_pb_put_uint(out + n, 10, (uint64_t)(uint32_t)b->producer_epoch);
		if (b->base_sequence)
			n += rmq_pb_put_uint(out + n, 11, (uint64_t)(uint32_t)b->base_sequence);
	}
	/* then the payload: the field-4 Record elements */
	return place(b, out, n, len);
}

/* ---- walking answers -------------------------------------------------------------- */

/* One field of a protobuf message, as rmq_pb_next reads it; val and len
 * only for a length-delimited field (NULL and 0 otherwise). */
struct field {
	uint32_t no, wire;
	uint64_t num;
	const uint8_t *val;
	size_t len;
	const uint8_t *at;      /* the whole element: key, length, value */
	size_t size;
};

/* Reads the field at *p (before end) into f and moves *p past it.
 * Returns 1, 0 at the end of the message, or RMQ_ECORRUPT. */
static int next_field(const uint8_t **p, const uint8_t *end, struct field *f)
{
	if (*p >= end)
		return 0;
	*f = (struct field){.at = *p};
	f->size = rmq_pb_next(*p, end, &f->no, &f->wire, &f->num, &f->val, &f->len);
	if (f->size == 0)
		return RMQ_ECORRUPT;
	*p += f->size;
	return 1;
}

/* ---- produce answers ------------------------------------------------------------ */

/* One ProduceResponse: its code, record count and correlation id. */
static int produce_response(const uint8_t *p, size_t len, int *code, uint32_t *count,
			    uint64_t *corr, char *leader, size_t leader_cap)
{
	const uint8_t *end = p + len;
	struct field f;
	int rc;
	*code = 0;
	*count = 0;
	*corr = 0;
	while ((rc = next_field(&p, end, &f)) > 0) {
		if (f.no == 13 && f.wire == RMQ_PB_LEN && f.len < leader_cap && !*leader) {
			memcpy(leader, f.val, f.len); /* leader_endpoint */
			leader[f.len] = '\0';
		}
		if (f.wire != RMQ_PB_VARINT)
			continue;
		if (f.no == 1)
			*code = (int)f.num;
		else if (f.no == 9)
			*count = (uint32_t)f.num;
		else if (f.no == 10)
			*corr = f.num;
	}
	return rc;
}

int bench_parse_produce_response(const uint8_t *p, size_t len, struct bench_produce_result *r)
{
	int code;
	uint32_t count;
	memset(r, 0, sizeof(*r));
	int rc = produce_response(p, len, &code, &count, &r->correlation_id, r->leader,
				  sizeof(r->leader));
	if (rc < 0)
		return rc;
	r->code = code;
	r->ok_records = code == 0 ? count : 0;
	return 0;
}

int bench_parse_produce_batch_response(const uint8_t *p, size_t len, struct bench_produce_result *r)
{
	const uint8_t *end = p + len;
	struct field f;
	int rc;
	memset(r, 0, sizeof(*r));
	while ((rc = next_field(&p, end, &f)) > 0) {
		if (f.no == 1 && f.wire == RMQ_PB_VARINT && f.num != 0 && r->code == 0) {
			r->code = (int)f.num;
		} else if (f.no == 4 && f.wire == RMQ_PB_VARINT) {
			r->correlation_id = f.num;
		} else if (f.no == 3 && f.wire == RMQ_PB_LEN) {
			int code;
			uint32_t count;
			uint64_t corr;
			if (produce_response(f.val, f.len, &code, &count, &corr, r->leader,
					     sizeof(r->leader)) < 0)
				return RMQ_ECORRUPT;
			if (code != 0 && r->code == 0)
				r->code = code;
			if (code == 0)
				r->ok_records += count;
		}
	}
	return rc;
}

/* ---- fetch and subscribe requests -------------------------------------------------- */

static size_t duration_field(uint8_t *out, uint32_t field, uint64_t ns)
{
	uint8_t d[24];
	size_t n = 0;
	if (ns / 1000000000ULL)
		n += rmq_pb_put_uint(d, 1, ns / 1000000000ULL);
	if (ns % 1000000000ULL)
		n += rmq_pb_put_uint(d + n, 2, ns % 1000000000ULL);
	size_t h = rmq_pb_put_len(out, field, n);
	memcpy(out + h, d, n);
	return h + n;
}

/* Room one partition entry may take: keys, lengths, the topic, numbers. */
static size_t part_room(const char *topic)
{
	return strlen(topic) + 64;
}

/* One FetchPartition or SubscriptionPartition: topic_partition, the offset
 * (always: when it sits in a oneof, a missing 0 would mean LATEST), the
 * byte limit at field max_field.  Appends it to buf as field `field`. */
static size_t part_entry(uint8_t *buf, uint32_t field, const char *topic,
			 const struct bench_rpart *part, bool always_offset, uint32_t max_field,
			 uint32_t max_bytes)
{
	uint8_t tp[300], e[400];
	size_t tpl = topic_partition(tp, topic, part->partition);
	size_t m = rmq_pb_put_len(e, 1, tpl);
	memcpy(e + m, tp, tpl);
	m += tpl;
	if (part->offset || always_offset)
		m += rmq_pb_put_uint(e + m, 2, part->offset);
	m += rmq_pb_put_uint(e + m, max_field, max_bytes);
	size_t n = rmq_pb_put_len(buf, field, m);
	memcpy(buf + n, e, m);
	return n + m;
}

int bench_encode_fetch(uint8_t *buf, size_t cap, const char *topic, const struct bench_rpart *parts,
		       uint32_t nparts, uint64_t max_wait_ns, uint32_t max_bytes,
		       uint32_t partition_max_bytes)
{
	if (cap < 96 + nparts * part_room(topic))
		return RMQ_ETOOBIG;
	size_t n = preamble(buf);
	if (max_wait_ns)
		n += duration_field(buf + n, 4, max_wait_ns);
	n += rmq_pb_put_uint(buf + n, 5, 1); /* min_bytes: answer once anything is there */
	n += rmq_pb_put_uint(buf + n, 6, max_bytes);
	for (uint32_t i = 0; i < nparts; i++)
		n += part_entry(buf + n, 7, topic, &parts[i], false, 4, partition_max_bytes);
	return (int)n;
}

int bench_encode_subscribe(uint8_t *buf, size_t cap, const char *topic,
			   const struct bench_rpart *parts, uint32_t nparts, uint32_t max_bytes,
			   uint32_t partition_max_bytes)
{
	if (cap < 96 + nparts * part_room(topic))
		return RMQ_ETOOBIG;
	size_t n = preamble(buf);
	n += rmq_pb_put_uint(buf + n, 7, max_bytes);
	for (uint32_t i = 0; i < nparts; i++)
		n += part_entry(buf + n, 3, topic, &parts[i], true, 5, partition_max_bytes);
	return (int)n;
}

/* ---- fetch answers ------------------------------------------------------------------ */

/* Hands every record of [p, end) (field-7 elements) with index >= skip to
 * the sink.  Returns the number of records seen, or -1 when malformed. */
static long walk_records(const uint8_t *p, const uint8_t *end, uint64_t skip,
			 struct bench_fetch_sink *sink, long *delivered)
{
	long i = 0;
	struct field rec, f;
	int rc;
	while ((rc = next_field(&p, end, &rec)) > 0) {
		if (rec.no != 7 || rec.wire != RMQ_PB_LEN)
			continue;
		if ((uint64_t)i++ < skip)
			continue;
		const uint8_t *value = NULL, *q = rec.val, *qend = rec.val + rec.len;
		size_t vlen = 0;
		while ((rc = next_field(&q, qend, &f)) > 0) {
			if (f.no == 2 && f.wire == RMQ_PB_LEN) {
				value = f.val;
				vlen = f.len;
			}
		}
		if (rc < 0)
			return -1;
		sink->record(sink->arg, value ? value : (const uint8_t *)"", vlen);
		(*delivered)++;
	}
	return rc < 0 ? -1 : i;
}

/* One stored RecordBatch: checks, decompresses, delivers.  Returns the
 * records delivered, or -1 after reporting an error to the sink. */
static long one_batch(const uint8_t *p, size_t len, struct bench_rpart *part,
		      struct bench_fetch_sink *sink)
{
	const uint8_t *end = p + len;
	uint64_t compression = 0, base = 0, crc = 0, count = 0;
	const uint8_t *comp = NULL;
	size_t comp_len = 0;
	uint32_t sum = 0;

	struct field f;
	int rc;
	for (const uint8_t *q = p; (rc = next_field(&q, end, &f)) > 0;) {
		switch (f.no) {
		case 2: compression = f.num; break;
		case 3: base = f.num; break;
		case 8: crc = f.num; break;
		case 10: count = f.num; break;
		case 7:
			/* The CRC covers each element whole: key, length, Record. */
			sum = rmq_crc32c(sum, f.at, f.size);
			break;
		case 9:
			/* Only a length-delimited field carries bytes; anything
			 * else here is a broken batch. */
			if (f.wire != RMQ_PB_LEN)
				goto bad;
			comp = f.val;
			comp_len = f.len;
			sum = rmq_crc32c(0, f.val, f.len);
			break;
		default:
			break;
		}
	}
	if (rc < 0)
		goto bad;
	if (sum != (uint32_t)crc) {
		sink->error(sink->arg, BENCH_ERR_CRC);
		goto skip;
	}
	uint64_t skip = part->offset > base ? part->offset - base : 0;
	long delivered = 0, seen;
	if (compression) {
		size_t want;
		if (!comp || rmq_codec_decompressed_size((int)compression, comp, comp_len, &want) < 0 ||
		    want > sink->scratch_max) {
			sink->error(sink->arg, BENCH_ERR_CODEC);
			goto skip;
		}
		if (want > sink->scratch_cap) {
			uint8_t *s = realloc(sink->scratch, want);
			if (!s) {
				sink->error(sink->arg, BENCH_ERR_CODEC);
				goto skip;
			}
			sink->scratch = s;
			sink->scratch_cap = want;
		}
		ssize_t got = rmq_codec_decompress((int)compression, comp, comp_len, sink->scratch, want);
		if (got < 0) {
			sink->error(sink->arg, BENCH_ERR_CODEC);
			goto skip;
		}
		seen = walk_records(sink->scratch, sink->scratch + got, skip, sink, &delivered);
	} else {
		seen = walk_records(p, end, skip, sink, &delivered);
	}
	if (seen < 0)
		goto bad;
	if (count == 0)
		count = (uint64_t)seen;
	if (base + count > part->offset)
		part->offset = base + count;
	return delivered;
bad:
	sink->error(sink->arg, BENCH_ERR_BAD_RESPONSE);
skip:
	/* Never ask for a broken batch again. */
	if (count && base + count > part->offset)
		part->offset = base + count;
	return -1;
}

static struct bench_rpart *find_part(struct bench_rpart *parts, uint32_t nparts, uint32_t partition)
{
	for (uint32_t i = 0; i < nparts; i++)
		if (parts[i].partition == partition)
			return &parts[i];
	return NULL;
}

int bench_parse_fetch_response(const uint8_t *p, size_t len, struct bench_rpart *parts,
			       uint32_t nparts, struct bench_fetch_sink *sink)
{
	const uint8_t *end = p + len;
	long total = 0;

	struct field fp, f, t;
	int rc;
	while ((rc = next_field(&p, end, &fp)) > 0) {
		if (fp.no == 1 && fp.wire == RMQ_PB_VARINT && fp.num != 0) {
			sink->error(sink->arg, (int)fp.num);
			continue;
		}
		if (fp.no != 3 || fp.wire != RMQ_PB_LEN)
			continue;
		/* FetchPartitionResponse: its identity and state first, then
		 * the batches (fields may come in any order). */
		uint64_t partition = 0, code = 0, hw = 0, log_start = 0;
		const uint8_t *fend = fp.val + fp.len;
		for (const uint8_t *q = fp.val; (rc = next_field(&q, fend, &f)) > 0;) {
			if (f.no == 1 && f.wire == RMQ_PB_LEN) {
				for (const uint8_t *tq = f.val; (rc = next_field(&tq, f.val + f.len, &t)) > 0;)
					if (t.no == 2 && t.wire == RMQ_PB_VARINT)
						partition = t.num;
				if (rc < 0)
					return RMQ_ECORRUPT;
			} else if (f.no == 2) {
				code = f.num;
			} else if (f.no == 3) {
				hw = f.num;
			} else if (f.no == 5) {
				log_start = f.num;
			}
		}
		if (rc < 0)
			return RMQ_ECORRUPT;
		struct bench_rpart *part = find_part(parts, nparts, (uint32_t)partition);
		if (!part) {
			sink->error(sink->arg, BENCH_ERR_BAD_RESPONSE);
			continue;
		}
		if (code != 0) {
			if (code == EC_OFFSET_OUT_OF_RANGE)
				part->offset = part->offset < log_start ? log_start : hw;
			sink->error(sink->arg, (int)code);
			continue;
		}
		for (const uint8_t *q = fp.val; (rc = next_field(&q, fend, &f)) > 0;) {
			if (f.no == 6 && f.wire == RMQ_PB_LEN) {
				long d = one_batch(f.val, f.len, part, sink);
				if (d > 0)
					total += d;
			}
		}
		if (rc < 0)
			return RMQ_ECORRUPT;
	}
	if (rc < 0)
		return RMQ_ECORRUPT;
	return total > INT32_MAX ? INT32_MAX : (int)total;
}
