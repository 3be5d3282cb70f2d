/* SPDX-License-Identifier: Apache-2.0 */
/*
 * pbwire.h - the protobuf wire format at the byte level.
 *
 * protobuf-c decodes whole messages into structs; the produce and fetch hot
 * paths must not (records are stored and sent as the producer encoded them).
 * These inline helpers read and write single keys and varints so that the
 * storage and broker modules can walk an encoded message in place.
 *
 *   key     = varint (field_number << 3 | wire_type)
 *   varint  = 1..10 bytes, 7 bits each, little-endian groups, MSB = more
 *   wire types: 0 varint, 1 fixed64, 2 length-delimited, 5 fixed32
 *
 * Readers take [p, end) and never read past end: they return the number of
 * bytes consumed, or 0 when the input is truncated or malformed.
 */
#ifndef RMQ_CORE_PBWIRE_H
#define RMQ_CORE_PBWIRE_H

#include <stddef.h>
#include <stdint.h>
#include <string.h>

enum rmq_pb_wire {
	RMQ_PB_VARINT = 0,
	RMQ_PB_FIXED64 = 1,
	RMQ_PB_LEN = 2,
	RMQ_PB_FIXED32 = 5,
};

#define RMQ_PB_VARINT_MAX 10
#define RMQ_PB_KEY(field, wire) ((uint32_t)(field) << 3 | (uint32_t)(wire))

/* Reads a varint.  Returns bytes consumed (1..10), or 0 if truncated or
 * longer than 10 bytes. */
static inline size_t rmq_pb_get_varint(const uint8_t *p, const uint8_t *end, uint64_t *out)
{
	if (p < end && !(p[0] & 0x80)) { /* keys and small values: one byte */
		*out = p[0];
		return 1;
	}
	uint64_t v = 0;
	for (size_t i = 0; i < RMQ_PB_VARINT_MAX && p + i < end; i++) {
		v |= (uint64_t)(p[i] & 0x7f) << (7 * i);
		if (!(p[i] & 0x80)) {
			*out = v;
			return i + 1;
		}
	}
	return 0;
}

/* Writes v as a varint; dst must have RMQ_PB_VARINT_MAX bytes.  Returns the
 * length written. */
static inline size_t rmq_pb_put_varint(uint8_t *dst, uint64_t v)
{
	size_t n = 0;
	while (v >= 0x80) {
		dst[n++] = (uint8_t)(v | 0x80);
		v >>= 7;
	}
	dst[n++] = (uint8_t)v;
	return n;
}

static inline size_t rmq_pb_varint_len(uint64_t v)
{
	size_t n = 1;
	while (v >= 0x80) {
		v >>= 7;
		n++;
	}
	return n;
}

/* Writes a key and a varint value. */
static inline size_t rmq_pb_put_uint(uint8_t *dst, uint32_t field, uint64_t v)
{
	size_t n = rmq_pb_put_varint(dst, RMQ_PB_KEY(field, RMQ_PB_VARINT));
	return n + rmq_pb_put_varint(dst + n, v);
}

/* Writes the key and length prefix of a length-delimited field. */
static inline size_t rmq_pb_put_len(uint8_t *dst, uint32_t field, uint64_t len)
{
	size_t n = rmq_pb_put_varint(dst, RMQ_PB_KEY(field, RMQ_PB_LEN));
	return n + rmq_pb_put_varint(dst + n, len);
}

/*
 * Reads one field at p: its number, wire type, and for length-delimited
 * fields the value's bounds [*val, *val + *val_len); for varints the value
 * in *num.  Returns the total bytes of the field (key + value), or 0 when
 * truncated or malformed (unknown wire type, group, field number 0).
 */
static inline size_t rmq_pb_next(const uint8_t *p, const uint8_t *end, uint32_t *field,
				 uint32_t *wire, uint64_t *num, const uint8_t **val,
				 size_t *val_len)
{
	uint64_t key, v;
	size_t k = rmq_pb_get_varint(p, end, &key);
	if (k == 0 || (key >> 3) == 0 || (key >> 3) > 0x1fffffff)
		return 0;
	*field = (uint32_t)(key >> 3);
	*wire = (uint32_t)(key & 7);
	const uint8_t *q = p + k;
	switch (*wire) {
	case RMQ_PB_VARINT: {
		size_t n = rmq_pb_get_varint(q, end, &v);
		if (n == 0)
			return 0;
		*num = v;
		return k + n;
	}
	case RMQ_PB_FIXED64:
		if (end - q < 8)
			return 0;
		memcpy(num, q, 8);
		return k + 8;
	case RMQ_PB_FIXED32: {
		uint32_t w;
		if (end - q < 4)
			return 0;
		memcpy(&w, q, 4);
		*num = w;
		return k + 4;
	}
	case RMQ_PB_LEN: {
		size_t n = rmq_pb_get_varint(q, end, &v);
		if (n == 0 || v > (uint64_t)(end - q - (ptrdiff_t)n))
			return 0;
		*val = q + n;
		*val_len = (size_t)v;
		return k + n + (size_t)v;
	}
	default:
		return 0;
	}
}

/*
 * Decodes the body of a google.protobuf.Timestamp {1: seconds, 2: nanos}
 * into milliseconds since the epoch.  Returns 0, or -1 when it is
 * malformed, nanos is outside [0, 1e9), or the milliseconds do not fit an
 * int64 (garbage, not a time: refused rather than overflowed).
 */
static inline int rmq_pb_timestamp_ms(const uint8_t *p, size_t len, int64_t *ms)
{
	const uint8_t *end = p + len;
	int64_t sec = 0, nanos = 0;

	while (p < end) {
		uint32_t field, wire;
		uint64_t num = 0;
		const uint8_t *val;
		size_t vlen;
		size_t k = rmq_pb_next(p, end, &field, &wire, &num, &val, &vlen);
		if (k == 0)
			return -1;
		if (field == 1 && wire == RMQ_PB_VARINT)
			sec = (int64_t)num;
		else if (field == 2 && wire == RMQ_PB_VARINT)
			nanos = (int64_t)num;
		p += k;
	}
	if (nanos < 0 || nanos >= 1000000000)
		return -1;
	if (sec > (INT64_MAX - 999) / 1000 || sec < INT64_MIN / 1000)
		return -1;
	*ms = sec * 1000 + nanos / 1000000;
	return 0;
}

#endif /* RMQ_CORE_PBWIRE_H */
