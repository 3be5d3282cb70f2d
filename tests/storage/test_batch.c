/* SPDX-License-Identifier: Apache-2.0 */
/*
 * test_batch.c - unit tests of src/storage/batch.c.
 *
 * Every entry handed to rmq_batch_parse() lives in a malloc'd buffer of
 * exactly the size passed as avail, so under ASan a read one byte past the
 * data fails the test even when the return code looks right.  Hand-made
 * entries are built field by field with pbwire.h.  Inputs that need
 * randomness come from a fixed-seed PRNG.
 */
#include "storage/batch.h"

#include "core/crc32c.h"
#include "core/error.h"
#include "core/pbwire.h"
#include "storage_util.h"

#include <criterion/criterion.h>
#include <inttypes.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#define ARRAY_SIZE(a) (sizeof(a) / sizeof((a)[0]))

/* ---- helpers ------------------------------------------------------------ */

/* Copies len bytes into a buffer of exactly len bytes. */
static uint8_t *exact(const void *p, size_t len)
{
	uint8_t *b = malloc(len ? len : 1);
	cr_assert_not_null(b);
	memcpy(b, p, len);
	return b;
}

/* A stored entry: prefix + records bytes, in an exact-size buffer. */
static uint8_t *make_entry(const struct rmq_batch_hdr *h, const uint8_t *recs, size_t rlen,
			   size_t *len_out, size_t *plen_out)
{
	uint8_t prefix[RMQ_BATCH_PREFIX_MAX];
	int plen = rmq_batch_encode_prefix(h, rlen, prefix);
	cr_assert_gt(plen, 0, "encode_prefix: %s", rmq_errname(plen));
	cr_assert_leq((size_t)plen, RMQ_BATCH_PREFIX_MAX);
	uint8_t *e = malloc((size_t)plen + rlen);
	cr_assert_not_null(e);
	memcpy(e, prefix, (size_t)plen);
	memcpy(e + plen, recs, rlen);
	*len_out = (size_t)plen + rlen;
	if (plen_out)
		*plen_out = (size_t)plen;
	return e;
}

/* Hand-made entries: a body built with pbwire, wrapped in key + length. */
struct body {
	uint8_t b[512];
	size_t n;
};

static void put_uint(struct body *b, uint32_t field, uint64_t v)
{
	b->n += rmq_pb_put_uint(b->b + b->n, field, v);
}

static void put_bytes(struct body *b, uint32_t field, const void *p, size_t len)
{
	b->n += rmq_pb_put_len(b->b + b->n, field, len);
	memcpy(b->b + b->n, p, len);
	b->n += len;
}

static void put_raw(struct body *b, const void *p, size_t len)
{
	memcpy(b->b + b->n, p, len);
	b->n += len;
}

/* A record element {7: Record{2: "v"}} */
static void put_record(struct body *b)
{
	static const uint8_t rec[] = {0x12, 0x01, 'v'};
	put_bytes(b, 7, rec, sizeof(rec));
}

static uint8_t *wrap(const struct body *b, size_t *len)
{
	uint8_t tmp[600];
	size_t n = 0;
	tmp[n++] = RMQ_BATCH_KEY;
	n += rmq_pb_put_varint(tmp + n, b->n);
	memcpy(tmp + n, b->b, b->n);
	n += b->n;
	*len = n;
	return exact(tmp, n);
}

static int parse_body(const struct body *b)
{
	size_t len;
	uint8_t *e = wrap(b, &len);
	struct rmq_batch_view v;
	int rc = rmq_batch_parse(e, len, &v);
	if (rc > 0)
		cr_assert_eq((size_t)rc, len);
	free(e);
	return rc;
}

/* magic=2, count=1, then a record: the smallest valid body. */
static void minimal(struct body *b)
{
	memset(b, 0, sizeof(*b));
	put_uint(b, 1, RMQ_BATCH_MAGIC);
	put_uint(b, 10, 1);
}

/* ---- round trips --------------------------------------------------------- */

struct hdr_case {
	uint32_t compression, count;
	int64_t producer_id;
	int32_t epoch, seq;
	uint32_t leader_epoch;
	int64_t first_ts, max_ts;
	uint64_t base, append_ms;
	bool txn, ctl;
};

static const struct hdr_case hdr_cases[] = {
	{0, 1, -1, -1, -1, 0, -1, -1, 0, 1700000000000ULL, false, false},
	{0, 3, 0, 0, 0, 0, 0, 0, 0, 0, false, false},
	{0, 7, 1, 0, 0, 1, 1, 999, 1, 1700000000001ULL, true, false},
	{0, 100000, INT64_MAX, INT32_MAX, INT32_MAX, UINT32_MAX, 1000, 1001, 12345678901ULL,
	 1700000000999ULL, false, true},
	{1, 2, INT64_MIN, INT32_MIN, INT32_MIN, 7, 1699999999999LL, 1700000000000LL, 1ULL << 40,
	 42, true, true},
	{2, 1, 5, -1, 17, 0, -1, 1700000000123LL, UINT64_MAX - 100000, 1700000000456ULL, false,
	 false},
	{3, 65536, 9, 3, -1, 1, 1700000000123LL, -1, 77, 1, false, false},
};

static void check_roundtrip(const struct hdr_case *c, const uint8_t *recs, size_t rlen)
{
	struct rmq_batch_hdr h;
	rmq_batch_hdr_init(&h);
	h.compression = c->compression;
	h.record_count = c->count;
	h.producer_id = c->producer_id;
	h.producer_epoch = c->epoch;
	h.base_sequence = c->seq;
	h.leader_epoch = c->leader_epoch;
	h.first_timestamp_ms = c->first_ts;
	h.max_timestamp_ms = c->max_ts;
	h.is_transactional = c->txn;
	h.is_control = c->ctl;
	h.base_offset = c->base;
	h.log_append_time_ms = c->append_ms;
	h.crc32 = rmq_crc32c(0, recs, rlen);

	size_t len, plen;
	uint8_t *e = make_entry(&h, recs, rlen, &len, &plen);
	struct rmq_batch_view v;
	memset(&v, 0xA5, sizeof(v));
	int n = rmq_batch_parse(e, len, &v);
	cr_assert_eq(n, (int)len, "parse: %d (%s), entry %zu bytes", n, rmq_errname(n), len);
	cr_assert_eq(v.entry_len, len);
	cr_assert_eq(v.records_pos, plen, "records start right after the prefix");
	cr_assert_eq(v.records_len, rlen);
	cr_assert_eq(memcmp(e + v.records_pos, recs, rlen), 0);
	cr_assert_eq(rmq_batch_check_crc(e, &v), 0);

	const struct rmq_batch_hdr *g = &v.hdr;
	cr_assert_eq(g->compression, h.compression);
	cr_assert_eq(g->record_count, h.record_count);
	cr_assert_eq(g->crc32, h.crc32);
	cr_assert_eq(g->producer_id, h.producer_id, "producer_id %" PRId64 " -> %" PRId64,
		     h.producer_id, g->producer_id);
	cr_assert_eq(g->producer_epoch, h.producer_epoch, "producer_epoch %d -> %d",
		     h.producer_epoch, g->producer_epoch);
	cr_assert_eq(g->base_sequence, h.base_sequence, "base_sequence %d -> %d", h.base_sequence,
		     g->base_sequence);
	cr_assert_eq(g->leader_epoch, h.leader_epoch);
	/* Unset producer timestamps are stored as the append time. */
	int64_t first = c->first_ts >= 0 ? c->first_ts : (int64_t)c->append_ms;
	int64_t max = c->max_ts >= 0 ? c->max_ts : (int64_t)c->append_ms;
	cr_assert_eq(g->first_timestamp_ms, first);
	cr_assert_eq(g->max_timestamp_ms, max);
	cr_assert_eq(g->base_offset, h.base_offset);
	cr_assert_eq(g->log_append_time_ms, h.log_append_time_ms);
	cr_assert_eq(g->is_transactional, h.is_transactional);
	cr_assert_eq(g->is_control, h.is_control);
	cr_assert_eq(rmq_batch_last_offset(g), h.base_offset + h.record_count - 1);
	free(e);
}

Test(batch, hdr_init_sets_none_values)
{
	struct rmq_batch_hdr h;
	memset(&h, 0x5A, sizeof(h));
	rmq_batch_hdr_init(&h);
	cr_assert_eq(h.producer_id, -1);
	cr_assert_eq(h.producer_epoch, -1);
	cr_assert_eq(h.base_sequence, -1);
	cr_assert_eq(h.first_timestamp_ms, -1);
	cr_assert_eq(h.max_timestamp_ms, -1);
	cr_assert_eq(h.record_count, 0);
	cr_assert_eq(h.crc32, 0);
	cr_assert_eq(h.base_offset, 0);
	cr_assert_not(h.is_transactional);
}

Test(batch, roundtrip_uncompressed_every_header)
{
	static uint8_t recs[64 << 10];
	for (size_t i = 0; i < ARRAY_SIZE(hdr_cases); i++) {
		if (hdr_cases[i].compression)
			continue;
		size_t rlen = su_records_gen(recs, sizeof(recs), i + 1, 1 + (unsigned)i * 5, 300);
		cr_assert_gt(rlen, 0);
		check_roundtrip(&hdr_cases[i], recs, rlen);
	}
}

Test(batch, roundtrip_compressed_every_header)
{
	static uint8_t payload[70000];
	/* Payload sizes around varint length boundaries of field 9. */
	static const size_t sizes[] = {0, 1, 127, 128, 16383, 16384, 70000};
	for (size_t i = 0; i < ARRAY_SIZE(hdr_cases); i++) {
		struct hdr_case c = hdr_cases[i];
		if (!c.compression)
			c.compression = 1 + (uint32_t)i % 3;
		for (size_t s = 0; s < ARRAY_SIZE(sizes); s++) {
			su_fill_random(payload, sizes[s], 100 + i * 10 + s);
			check_roundtrip(&c, payload, sizes[s]);
		}
	}
}

Test(batch, roundtrip_records_with_given_keys_and_values)
{
	uint8_t recs[1024];
	static const char big[300] = {'x'};
	struct su_record r[] = {
		{"a", 1, "value-a", 7},
		{NULL, 0, "no key", 6},
		{"empty value", 11, NULL, 0},
		{NULL, 0, NULL, 0},
		{"k", 1, big, sizeof(big)},
	};
	size_t rlen = su_records(recs, sizeof(recs), r, ARRAY_SIZE(r));
	cr_assert_gt(rlen, 0);
	struct hdr_case c = {0, ARRAY_SIZE(r), 7, 1, 100, 3, 5, 9, 1000, 11, false, false};
	check_roundtrip(&c, recs, rlen);
}

Test(batch, timestamps_roundtrip)
{
	static const int64_t ts[] = {0, 1, 999, 1000, 1001, 59999, 1700000000000LL,
				     1700000000001LL, 4102444800999LL, INT64_MAX / 1000 - 1};
	uint8_t recs[64];
	size_t rlen = su_records_gen(recs, sizeof(recs), 9, 1, 10);
	for (size_t i = 0; i < ARRAY_SIZE(ts); i++) {
		for (size_t j = 0; j < ARRAY_SIZE(ts); j++) {
			struct hdr_case c = {0, 1, -1, -1, -1, 0, ts[i], ts[j], 5, 123, false,
					     false};
			check_roundtrip(&c, recs, rlen);
		}
	}
}

Test(batch, prefix_max_covers_the_widest_header)
{
	struct rmq_batch_hdr h;
	uint8_t buf[RMQ_BATCH_PREFIX_MAX];
	rmq_batch_hdr_init(&h);
	h.compression = UINT32_MAX;
	h.record_count = UINT32_MAX;
	h.crc32 = UINT32_MAX;
	h.producer_id = INT64_MIN;
	h.producer_epoch = INT32_MIN;
	h.base_sequence = INT32_MIN;
	h.leader_epoch = UINT32_MAX;
	h.first_timestamp_ms = INT64_MAX - 1;
	h.max_timestamp_ms = INT64_MAX - 1;
	h.base_offset = UINT64_MAX;
	h.log_append_time_ms = UINT64_MAX;
	h.is_transactional = h.is_control = true;
	int n = rmq_batch_encode_prefix(&h, RMQ_BATCH_BYTES_MAX / 2, buf);
	cr_assert_gt(n, 0);
	cr_assert_leq((unsigned)n, RMQ_BATCH_PREFIX_MAX);
}

Test(batch, encode_refuses_too_big)
{
	struct rmq_batch_hdr h;
	uint8_t buf[RMQ_BATCH_PREFIX_MAX];
	rmq_batch_hdr_init(&h);
	h.record_count = 1;
	cr_assert_eq(rmq_batch_encode_prefix(&h, (size_t)RMQ_BATCH_BYTES_MAX + 1, buf), RMQ_ETOOBIG);
	/* The header itself pushes the body over the limit. */
	cr_assert_eq(rmq_batch_encode_prefix(&h, RMQ_BATCH_BYTES_MAX, buf), RMQ_ETOOBIG);
	h.compression = 2;
	cr_assert_eq(rmq_batch_encode_prefix(&h, RMQ_BATCH_BYTES_MAX - 20, buf), RMQ_ETOOBIG);
	cr_assert_gt(rmq_batch_encode_prefix(&h, RMQ_BATCH_BYTES_MAX - 200, buf), 0);
}

/* ---- CRC ----------------------------------------------------------------- */

Test(batch, crc_catches_every_flipped_record_byte)
{
	uint8_t recs[2048];
	size_t rlen = su_records_gen(recs, sizeof(recs), 77, 6, 200);
	struct rmq_batch_hdr h;
	rmq_batch_hdr_init(&h);
	h.record_count = 6;
	h.crc32 = rmq_crc32c(0, recs, rlen);
	size_t len, plen;
	uint8_t *e = make_entry(&h, recs, rlen, &len, &plen);
	static const uint8_t masks[] = {0x01, 0x80, 0xFF};

	for (size_t pos = plen; pos < len; pos++) {
		for (size_t m = 0; m < ARRAY_SIZE(masks); m++) {
			struct rmq_batch_view v;
			e[pos] ^= masks[m];
			int n = rmq_batch_parse(e, len, &v);
			if (n > 0)
				cr_assert_eq(rmq_batch_check_crc(e, &v), RMQ_ECRC,
					     "flip at %zu mask %#x went unnoticed", pos, masks[m]);
			e[pos] ^= masks[m];
		}
	}
	/* A wrong stored CRC is caught too. */
	struct rmq_batch_view v;
	cr_assert_eq(rmq_batch_parse(e, len, &v), (int)len);
	v.hdr.crc32 ^= 1;
	cr_assert_eq(rmq_batch_check_crc(e, &v), RMQ_ECRC);
	free(e);
}

/* ---- framing errors ----------------------------------------------------- */

Test(batch, zero_byte_is_the_end)
{
	struct rmq_batch_view v;
	uint8_t *z = calloc(1, 16);
	cr_assert_not_null(z);
	cr_assert_eq(rmq_batch_parse(z, 16, &v), 0);
	cr_assert_eq(rmq_batch_parse(z, 1, &v), 0);
	cr_assert_eq(rmq_batch_parse(z, 0, &v), 0, "nothing available is the end too");
	free(z);
}

Test(batch, torn_at_every_length)
{
	static uint8_t recs[64 << 10];
	/* Entries whose length varint takes 1, 2 and 3 bytes. */
	static const unsigned counts[] = {1, 3, 40};
	static const size_t value_max[] = {50, 600, 1000};
	static const size_t min_len[] = {2, 130, 16400};
	for (size_t c = 0; c < ARRAY_SIZE(counts); c++) {
		size_t rlen = su_records_gen(recs, sizeof(recs), 5 + c, counts[c], value_max[c]);
		cr_assert_gt(rlen, 0);
		struct rmq_batch_hdr h;
		rmq_batch_hdr_init(&h);
		h.record_count = counts[c];
		h.base_offset = 1000;
		size_t len;
		uint8_t *e = make_entry(&h, recs, rlen, &len, NULL);
		cr_assert_geq(len, min_len[c]);
		struct rmq_batch_view whole;
		cr_assert_eq(rmq_batch_parse(e, len, &whole), (int)len);
		for (size_t cut = 1; cut < len; cut++) {
			uint8_t *t = exact(e, cut);
			struct rmq_batch_view v;
			int rc = rmq_batch_parse(t, cut, &v);
			cr_assert_eq(rc, RMQ_ETORN, "entry of %zu cut at %zu: %s", len, cut,
				     rmq_errname(rc));
			free(t);
		}
		/* Extra bytes after the entry are not part of it. */
		uint8_t *big = malloc(len + 7);
		memcpy(big, e, len);
		memset(big + len, 0x32, 7);
		struct rmq_batch_view v;
		cr_assert_eq(rmq_batch_parse(big, len + 7, &v), (int)len);
		free(big);
		free(e);
	}
}

Test(batch, bad_key_is_corrupt)
{
	static const uint8_t keys[] = {0x33, 0x0A, 0x3A, 0x4A, 0xFF, 0x01, 0x80};
	struct body b;
	minimal(&b);
	put_record(&b);
	size_t len;
	uint8_t *e = wrap(&b, &len);
	for (size_t i = 0; i < ARRAY_SIZE(keys); i++) {
		struct rmq_batch_view v;
		e[0] = keys[i];
		cr_assert_eq(rmq_batch_parse(e, len, &v), RMQ_ECORRUPT, "key %#x", keys[i]);
		uint8_t *one = exact(e, 1);
		cr_assert_eq(rmq_batch_parse(one, 1, &v), RMQ_ECORRUPT, "lone key %#x", keys[i]);
		free(one);
	}
	free(e);
}

Test(batch, minimal_entry_parses)
{
	struct body b;
	minimal(&b);
	put_record(&b);
	cr_assert_gt(parse_body(&b), 0);
}

Test(batch, bad_magic_is_corrupt)
{
	struct body b;
	static const uint64_t magics[] = {0, 1, 3, 0x102};

	for (size_t i = 0; i < ARRAY_SIZE(magics); i++) {
		memset(&b, 0, sizeof(b));
		put_uint(&b, 1, magics[i]);
		put_uint(&b, 10, 1);
		put_record(&b);
		cr_assert_eq(parse_body(&b), RMQ_ECORRUPT, "magic %" PRIu64, magics[i]);
	}
	/* Missing magic. */
	memset(&b, 0, sizeof(b));
	put_uint(&b, 10, 1);
	put_record(&b);
	cr_assert_eq(parse_body(&b), RMQ_ECORRUPT);
	/* Magic with the wrong wire type. */
	memset(&b, 0, sizeof(b));
	put_bytes(&b, 1, "\x02", 1);
	put_uint(&b, 10, 1);
	put_record(&b);
	cr_assert_eq(parse_body(&b), RMQ_ECORRUPT);
}

Test(batch, records_must_be_last)
{
	struct body b;

	/* A header field after the records. */
	minimal(&b);
	put_record(&b);
	put_uint(&b, 11, 5);
	cr_assert_eq(parse_body(&b), RMQ_ECORRUPT);

	/* Records, then a header field, then records again. */
	minimal(&b);
	put_record(&b);
	put_uint(&b, 8, 5);
	put_record(&b);
	cr_assert_eq(parse_body(&b), RMQ_ECORRUPT);

	/* Anything after a compressed payload. */
	minimal(&b);
	put_uint(&b, 2, 1);
	put_bytes(&b, 9, "zz", 2);
	put_record(&b);
	cr_assert_eq(parse_body(&b), RMQ_ECORRUPT);
	minimal(&b);
	put_uint(&b, 2, 1);
	put_bytes(&b, 9, "zz", 2);
	put_bytes(&b, 9, "zz", 2);
	cr_assert_eq(parse_body(&b), RMQ_ECORRUPT);

	/* No records at all. */
	minimal(&b);
	cr_assert_eq(parse_body(&b), RMQ_ECORRUPT);

	/* Several records then nothing else: fine. */
	minimal(&b);
	put_uint(&b, 10, 3); /* a later count wins, as in protobuf */
	put_uint(&b, 4, 2);
	put_record(&b);
	put_record(&b);
	put_record(&b);
	cr_assert_gt(parse_body(&b), 0);
}

Test(batch, compression_must_match_the_payload_kind)
{
	struct body b;

	/* Compression set but plain records. */
	minimal(&b);
	put_uint(&b, 2, 1);
	put_record(&b);
	cr_assert_eq(parse_body(&b), RMQ_ECORRUPT);
	/* A compressed payload without a compression type. */
	minimal(&b);
	put_bytes(&b, 9, "zz", 2);
	cr_assert_eq(parse_body(&b), RMQ_ECORRUPT);
	/* Compressed payload of the wrong wire type. */
	minimal(&b);
	put_uint(&b, 2, 1);
	put_uint(&b, 9, 5);
	cr_assert_eq(parse_body(&b), RMQ_ECORRUPT);
}

Test(batch, record_count_zero_or_inconsistent_is_corrupt)
{
	struct body b;

	memset(&b, 0, sizeof(b));
	put_uint(&b, 1, 2);
	put_uint(&b, 10, 0);
	put_record(&b);
	cr_assert_eq(parse_body(&b), RMQ_ECORRUPT, "count 0");

	memset(&b, 0, sizeof(b));
	put_uint(&b, 1, 2);
	put_record(&b);
	cr_assert_eq(parse_body(&b), RMQ_ECORRUPT, "count missing");

	memset(&b, 0, sizeof(b));
	put_uint(&b, 1, 2);
	put_uint(&b, 4, 1); /* last_offset_delta 1 with one record */
	put_uint(&b, 10, 1);
	put_record(&b);
	cr_assert_eq(parse_body(&b), RMQ_ECORRUPT, "delta mismatch");

	/* A count that does not fit 32 bits must not wrap to a small one. */
	memset(&b, 0, sizeof(b));
	put_uint(&b, 1, 2);
	put_uint(&b, 10, (1ULL << 32) + 1);
	put_record(&b);
	cr_assert_eq(parse_body(&b), RMQ_ECORRUPT, "count above 2^32");
}

Test(batch, unknown_fields_and_wire_types_are_corrupt)
{
	struct body b;

	minimal(&b);
	put_uint(&b, 18, 1);
	put_record(&b);
	cr_assert_eq(parse_body(&b), RMQ_ECORRUPT, "unknown field 18");

	minimal(&b);
	put_bytes(&b, 11, "ab", 2); /* producer_id as LEN */
	put_record(&b);
	cr_assert_eq(parse_body(&b), RMQ_ECORRUPT);

	minimal(&b);
	put_uint(&b, 5, 1); /* first_timestamp as a varint */
	put_record(&b);
	cr_assert_eq(parse_body(&b), RMQ_ECORRUPT);

	minimal(&b);
	put_uint(&b, 7, 1); /* records as a varint */
	cr_assert_eq(parse_body(&b), RMQ_ECORRUPT);

	minimal(&b);
	put_raw(&b, "\x5B", 1); /* field 11, wire type 3 (group) */
	put_record(&b);
	cr_assert_eq(parse_body(&b), RMQ_ECORRUPT);

	minimal(&b);
	put_raw(&b, "\x58", 1); /* field 11 with its varint cut off by the end */
	cr_assert_eq(parse_body(&b), RMQ_ECORRUPT);
}

Test(batch, bad_timestamps_are_corrupt_not_undefined)
{
	struct body b, ts;

	/* nanos out of range */
	memset(&ts, 0, sizeof(ts));
	put_uint(&ts, 1, 5);
	put_uint(&ts, 2, 1000000000);
	minimal(&b);
	put_bytes(&b, 5, ts.b, ts.n);
	put_record(&b);
	cr_assert_eq(parse_body(&b), RMQ_ECORRUPT);

	/* Seconds whose milliseconds do not fit int64 (would overflow). */
	static const uint64_t secs[] = {(uint64_t)INT64_MAX, (uint64_t)INT64_MAX / 1000 + 1,
					(uint64_t)INT64_MIN, UINT64_MAX / 2 + 12345};
	for (size_t i = 0; i < ARRAY_SIZE(secs); i++) {
		memset(&ts, 0, sizeof(ts));
		put_uint(&ts, 1, secs[i]);
		put_uint(&ts, 2, 999999999);
		minimal(&b);
		put_bytes(&b, 6, ts.b, ts.n);
		put_record(&b);
		cr_assert_eq(parse_body(&b), RMQ_ECORRUPT, "seconds %" PRIu64, secs[i]);
	}

	/* A timestamp body that does not parse. */
	minimal(&b);
	put_bytes(&b, 5, "\x08", 1);
	put_record(&b);
	cr_assert_eq(parse_body(&b), RMQ_ECORRUPT);
}

Test(batch, length_above_max_is_corrupt)
{
	struct rmq_batch_view v;
	uint8_t tmp[16];
	size_t n = 0;

	tmp[n++] = RMQ_BATCH_KEY;
	n += rmq_pb_put_varint(tmp + n, (uint64_t)RMQ_BATCH_BYTES_MAX + 1);
	memset(tmp + n, 0x08, sizeof(tmp) - n);
	for (size_t avail = n; avail <= sizeof(tmp); avail++) {
		uint8_t *e = exact(tmp, avail);
		cr_assert_eq(rmq_batch_parse(e, avail, &v), RMQ_ECORRUPT, "avail %zu", avail);
		free(e);
	}
	/* A 10-byte varint length: corrupt once 6 bytes are there. */
	uint8_t huge[12] = {RMQ_BATCH_KEY, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0x01, 0};
	uint8_t *e = exact(huge, sizeof(huge));
	cr_assert_eq(rmq_batch_parse(e, sizeof(huge), &v), RMQ_ECORRUPT);
	free(e);
	/* Exactly the maximum is a length, not corruption: torn here. */
	n = 1 + rmq_pb_put_varint(tmp + 1, RMQ_BATCH_BYTES_MAX);
	e = exact(tmp, n);
	cr_assert_eq(rmq_batch_parse(e, n, &v), RMQ_ETORN);
	free(e);
}

/* Random mutations of valid entries: whatever parse says, it stays inside
 * the buffer (ASan) and a positive result is a consistent view. */
Test(batch, mutations_never_read_past_avail)
{
	uint8_t recs[4096];
	uint64_t st = 2024;

	for (int iter = 0; iter < 4000; iter++) {
		unsigned count = 1 + (unsigned)(su_rand(&st) % 5);
		size_t rlen = su_records_gen(recs, sizeof(recs), su_rand(&st), count, 100);
		struct rmq_batch_hdr h;
		rmq_batch_hdr_init(&h);
		h.record_count = count;
		h.base_offset = su_rand(&st) % 1000000;
		h.producer_id = (int64_t)(su_rand(&st) % 3) - 1;
		h.crc32 = rmq_crc32c(0, recs, rlen);
		if (su_rand(&st) % 4 == 0)
			h.compression = 1;
		size_t len;
		uint8_t *e = make_entry(&h, recs, rlen, &len, NULL);
		unsigned flips = 1 + (unsigned)(su_rand(&st) % 4);
		for (unsigned f = 0; f < flips; f++)
			e[su_rand(&st) % len] ^= (uint8_t)(1u << (su_rand(&st) % 8));
		size_t avail = su_rand(&st) % 3 == 0 ? (size_t)(su_rand(&st) % len) : len;
		uint8_t *t = exact(e, avail);
		struct rmq_batch_view v;
		int n = rmq_batch_parse(t, avail, &v);
		if (n > 0) {
			cr_assert_leq((size_t)n, avail);
			cr_assert_eq(v.entry_len, (uint32_t)n);
			cr_assert_leq((size_t)v.records_pos + v.records_len, (size_t)n);
			cr_assert_geq(v.hdr.record_count, 1);
			(void)rmq_batch_check_crc(t, &v);
		} else {
			cr_assert(n == 0 || n == RMQ_ETORN || n == RMQ_ECORRUPT, "parse returned %d",
				  n);
		}
		free(t);
		free(e);
	}
}
