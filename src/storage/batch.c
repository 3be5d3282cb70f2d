/* SPDX-License-Identifier: Apache-2.0 */
/*
 * batch.c - encoding and parsing of stored batches (see batch.h).
 *
 * Parsing walks the fields in place with pbwire.h: a read or a recovery
 * costs a few dozen byte comparisons per batch, independent of how many
 * records it holds.
 */
#include "storage/batch.h"

#include "core/crc32c.h"
#include "core/error.h"
#include "core/pbwire.h"

#include <string.h>

/* RecordBatch field numbers (common/types.proto). */
enum {
	F_MAGIC = 1,
	F_COMPRESSION = 2,
	F_BASE_OFFSET = 3,
	F_LAST_DELTA = 4,
	F_FIRST_TS = 5,
	F_MAX_TS = 6,
	F_RECORDS = 7,
	F_CRC = 8,
	F_COMPRESSED = 9,
	F_COUNT = 10,
	F_PRODUCER_ID = 11,
	F_PRODUCER_EPOCH = 12,
	F_BASE_SEQUENCE = 13,
	F_LEADER_EPOCH = 14,
	F_APPEND_TIME = 15,
	F_TRANSACTIONAL = 16,
	F_CONTROL = 17,
};

_Static_assert(RMQ_BATCH_KEY == RMQ_PB_KEY(6, RMQ_PB_LEN), "stored entry key is field 6");
_Static_assert(RMQ_BATCH_RECORD_KEY == RMQ_PB_KEY(F_RECORDS, RMQ_PB_LEN), "records key");
_Static_assert(RMQ_BATCH_COMPRESSED_KEY == RMQ_PB_KEY(F_COMPRESSED, RMQ_PB_LEN),
	       "compressed records key");
_Static_assert(RMQ_BATCH_BYTES_MAX < (1u << 31), "lengths fit index fields");

void rmq_batch_hdr_init(struct rmq_batch_hdr *h)
{
	memset(h, 0, sizeof(*h));
	h->producer_id = -1;
	h->producer_epoch = -1;
	h->base_sequence = -1;
	h->first_timestamp_ms = -1;
	h->max_timestamp_ms = -1;
}

/* google.protobuf.Timestamp {1: seconds, 2: nanos} from milliseconds. */
static size_t put_timestamp(uint8_t *dst, uint32_t field, int64_t ms)
{
	uint8_t body[2 * (1 + RMQ_PB_VARINT_MAX)];
	int64_t sec = ms / 1000;
	int64_t nanos = (ms % 1000) * 1000000;
	size_t n = 0;

	if (nanos < 0) {
		sec -= 1;
		nanos += 1000000000;
	}
	if (sec != 0)
		n += rmq_pb_put_uint(body + n, 1, (uint64_t)sec);
	if (nanos != 0)
		n += rmq_pb_put_uint(body + n, 2, (uint64_t)nanos);
	size_t k = rmq_pb_put_len(dst, field, n);
	memcpy(dst + k, body, n);
	return k + n;
}

static size_t encode_header(const struct rmq_batch_hdr *h, uint8_t *dst)
{
	size_t n = 0;
	uint64_t delta = h->record_count ? h->record_count - 1 : 0;
	int64_t first = h->first_timestamp_ms >= 0 ? h->first_timestamp_ms
						    : (int64_t)h->log_append_time_ms;
	int64_t max = h->max_timestamp_ms >= 0 ? h->max_timestamp_ms
					       : (int64_t)h->log_append_time_ms;

	n += rmq_pb_put_uint(dst + n, F_MAGIC, RMQ_BATCH_MAGIC);
	if (h->compression)
		n += rmq_pb_put_uint(dst + n, F_COMPRESSION, h->compression);
	if (h->base_offset)
		n += rmq_pb_put_uint(dst + n, F_BASE_OFFSET, h->base_offset);
	if (delta)
		n += rmq_pb_put_uint(dst + n, F_LAST_DELTA, delta);
	n += put_timestamp(dst + n, F_FIRST_TS, first);
	n += put_timestamp(dst + n, F_MAX_TS, max);
	if (h->crc32)
		n += rmq_pb_put_uint(dst + n, F_CRC, h->crc32);
	n += rmq_pb_put_uint(dst + n, F_COUNT, h->record_count);
	/* int64/int32 fields: negative values are 10-byte varints, as
	 * protobuf encodes them. */
	if (h->producer_id)
		n += rmq_pb_put_uint(dst + n, F_PRODUCER_ID, (uint64_t)h->producer_id);
	if (h->producer_epoch)
		n += rmq_pb_put_uint(dst + n, F_PRODUCER_EPOCH, (uint64_t)(int64_t)h->producer_epoch);
	if (h->base_sequence)
		n += rmq_pb_put_uint(dst + n, F_BASE_SEQUENCE, (uint64_t)(int64_t)h->base_sequence);
	if (h->leader_epoch)
		n += rmq_pb_put_uint(dst + n, F_LEADER_EPOCH, h->leader_epoch);
	if (h->log_append_time_ms)
		n += rmq_pb_put_uint(dst + n, F_APPEND_TIME, h->log_append_time_ms);
	if (h->is_transactional)
		n += rmq_pb_put_uint(dst + n, F_TRANSACTIONAL, 1);
	if (h->is_control)
		n += rmq_pb_put_uint(dst + n, F_CONTROL, 1);
	return n;
}

int rmq_batch_encode_prefix(const struct rmq_batch_hdr *h, size_t records_len, uint8_t *buf)
{
	uint8_t hdr[RMQ_BATCH_PREFIX_MAX];
	size_t hlen = encode_header(h, hdr);
	size_t body = hlen + records_len;
	size_t n = 0;

	if (h->compression)
		body += 1 + rmq_pb_varint_len(records_len);
	if (records_len > RMQ_BATCH_BYTES_MAX || body > RMQ_BATCH_BYTES_MAX)
		return RMQ_ETOOBIG;
	buf[n++] = RMQ_BATCH_KEY;
	n += rmq_pb_put_varint(buf + n, body);
	memcpy(buf + n, hdr, hlen);
	n += hlen;
	if (h->compression) {
		buf[n++] = RMQ_BATCH_COMPRESSED_KEY;
		n += rmq_pb_put_varint(buf + n, records_len);
	}
	return (int)n;
}

static int parse_timestamp(const uint8_t *p, size_t len, int64_t *ms)
{
	return rmq_pb_timestamp_ms(p, len, ms) < 0 ? RMQ_ECORRUPT : 0;
}

/* check_records: walk every record element after the first (recovery);
 * otherwise trust the writer's "payload last" layout and stop there, which
 * keeps a lookup independent of the batch's size. */
static int parse_entry(const uint8_t *p, size_t avail, struct rmq_batch_view *v,
		       bool check_records, uint8_t key)
{
	uint64_t body_len;
	size_t k;

	if (avail == 0 || p[0] == 0)
		return 0;
	if (p[0] != key)
		return RMQ_ECORRUPT;
	k = rmq_pb_get_varint(p + 1, p + (avail < 6 ? avail : 6), &body_len);
	if (k == 0)
		return avail < 6 ? RMQ_ETORN : RMQ_ECORRUPT;
	if (body_len > RMQ_BATCH_BYTES_MAX)
		return RMQ_ECORRUPT;
	if (1 + k + body_len > avail)
		return RMQ_ETORN;

	struct rmq_batch_hdr *h = &v->hdr;
	const uint8_t *start = p + 1 + k;
	const uint8_t *end = start + body_len;
	const uint8_t *q = start;
	const uint8_t *records = NULL;
	bool magic = false, have_count = false, compressed_seen = false;
	uint64_t last_delta = 0;

	/* Absent fields decode as zero, as protobuf decodes them.  The encoder
	 * omits zero values, so starting from the "none" values (-1) would
	 * turn a producer id, epoch or base sequence of 0 into -1. */
	memset(h, 0, sizeof(*h));
	while (q < end) {
		uint32_t field, wire;
		uint64_t num = 0;
		const uint8_t *val = NULL;
		size_t vlen = 0;
		size_t n = rmq_pb_next(q, end, &field, &wire, &num, &val, &vlen);
		if (n == 0)
			return RMQ_ECORRUPT;
		if (records && !check_records)
			break;
		if (records) {
			/* After the payload starts only more records may follow. */
			if (field != F_RECORDS || wire != RMQ_PB_LEN || compressed_seen)
				return RMQ_ECORRUPT;
			q += n;
			continue;
		}
		bool is_len = wire == RMQ_PB_LEN, is_var = wire == RMQ_PB_VARINT;
		switch (field) {
		case F_RECORDS:
			if (!is_len)
				return RMQ_ECORRUPT;
			records = q;
			break;
		case F_COMPRESSED:
			if (!is_len)
				return RMQ_ECORRUPT;
			records = val;
			compressed_seen = true;
			break;
		case F_MAGIC:
			if (!is_var || num != RMQ_BATCH_MAGIC)
				return RMQ_ECORRUPT;
			magic = true;
			break;
		case F_FIRST_TS:
		case F_MAX_TS:
			if (!is_len || parse_timestamp(val, vlen, field == F_FIRST_TS
									  ? &h->first_timestamp_ms
									  : &h->max_timestamp_ms) < 0)
				return RMQ_ECORRUPT;
			break;
		default:
			if (!is_var)
				return RMQ_ECORRUPT;
			switch (field) {
			case F_COMPRESSION: h->compression = (uint32_t)num; break;
			case F_BASE_OFFSET: h->base_offset = num; break;
			case F_LAST_DELTA: last_delta = num; break;
			case F_CRC: h->crc32 = (uint32_t)num; break;
			case F_COUNT:
				if (num > UINT32_MAX)
					return RMQ_ECORRUPT; /* would wrap to a small count */
				h->record_count = (uint32_t)num;
				have_count = true;
				break;
			case F_PRODUCER_ID: h->producer_id = (int64_t)num; break;
			case F_PRODUCER_EPOCH: h->producer_epoch = (int32_t)num; break;
			case F_BASE_SEQUENCE: h->base_sequence = (int32_t)num; break;
			case F_LEADER_EPOCH: h->leader_epoch = (uint32_t)num; break;
			case F_APPEND_TIME: h->log_append_time_ms = num; break;
			case F_TRANSACTIONAL: h->is_transactional = num != 0; break;
			case F_CONTROL: h->is_control = num != 0; break;
			default: return RMQ_ECORRUPT; /* the log writes no other field */
			}
		}
		q += n;
	}
	if (!magic || !have_count || !records || h->record_count == 0 ||
	    last_delta != h->record_count - 1U)
		return RMQ_ECORRUPT;
	if ((h->compression != 0) != compressed_seen)
		return RMQ_ECORRUPT;
	v->entry_len = (uint32_t)(1 + k + body_len);
	v->records_pos = (uint32_t)(records - p);
	v->records_len = (uint32_t)(end - records);
	return (int)v->entry_len;
}

int rmq_batch_parse(const uint8_t *p, size_t avail, struct rmq_batch_view *v)
{
	return parse_entry(p, avail, v, true, RMQ_BATCH_KEY);
}

int rmq_batch_parse_elem(const uint8_t *p, size_t avail, uint8_t key, struct rmq_batch_view *v)
{
	return parse_entry(p, avail, v, true, key);
}

int rmq_batch_parse_header(const uint8_t *p, size_t avail, struct rmq_batch_view *v)
{
	return parse_entry(p, avail, v, false, RMQ_BATCH_KEY);
}

int rmq_batch_check_crc(const uint8_t *entry, const struct rmq_batch_view *v)
{
	uint32_t crc = rmq_crc32c(0, entry + v->records_pos, v->records_len);
	return crc == v->hdr.crc32 ? 0 : RMQ_ECRC;
}
