/* SPDX-License-Identifier: Apache-2.0 */
/*
 * fuzz_batch - stored batches and their codecs (src/storage/batch.c, codec.c).
 *
 * Input: one selector byte, then the bytes.
 *
 *   selector % 4   what the bytes are
 *   0              segment data: entries as batch.h draws them, parsed one
 *                  after the other as recovery walks a segment
 *   1, 2, 3        a compressed payload of codec lz4, zstd, snappy
 *
 * Besides "no crash, no sanitizer report", each input checks properties:
 * - rmq_batch_parse_header agrees with rmq_batch_parse on every entry that
 *   parses (the read path trusts the one, recovery runs the other);
 * - an entry that parses re-encodes (rmq_batch_encode_prefix + its records
 *   bytes) into an entry that parses to the same header and records;
 * - a payload that decompresses does so to exactly its declared size, and
 *   compressing that and decompressing again gives it back;
 * - a decompression into a buffer one byte short of the declared size is
 *   refused with RMQ_ETOOBIG, never written past (ASan sees the buffer's
 *   exact size).
 *
 * Reproduce: build/fuzz/tests/fuzz/fuzz_batch <input file>
 */
#include "core/error.h"
#include "core/pbwire.h"
#include "storage/batch.h"
#include "storage/codec.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* Larger declared sizes are refused by the broker's message limit first;
 * here they would only make the fuzzer slow. */
#define DECLARED_MAX (4u << 20)

static void fail(const char *what)
{
	fprintf(stderr, "fuzz_batch: %s\n", what);
	abort();
}

static bool same_hdr(const struct rmq_batch_hdr *a, const struct rmq_batch_hdr *b)
{
	return a->compression == b->compression && a->record_count == b->record_count &&
	       a->crc32 == b->crc32 && a->producer_id == b->producer_id &&
	       a->producer_epoch == b->producer_epoch && a->base_sequence == b->base_sequence &&
	       a->leader_epoch == b->leader_epoch &&
	       a->first_timestamp_ms == b->first_timestamp_ms &&
	       a->max_timestamp_ms == b->max_timestamp_ms &&
	       a->is_transactional == b->is_transactional && a->is_control == b->is_control &&
	       a->base_offset == b->base_offset && a->log_append_time_ms == b->log_append_time_ms;
}

/* Decompresses payload with codec; returns the output (malloc'd, exact
 * size) or NULL when the codec refuses it. */
static uint8_t *decompress(int codec, const uint8_t *p, size_t len, size_t *out_len)
{
	size_t declared;
	if (rmq_codec_decompressed_size(codec, p, len, &declared) < 0 || declared > DECLARED_MAX)
		return NULL;
	/* One byte short: must be refused before anything is written. */
	if (declared > 0) {
		uint8_t *small = malloc(declared - 1 ? declared - 1 : 1);
		if (!small)
			return NULL;
		ssize_t r = rmq_codec_decompress(codec, p, len, small, declared - 1);
		free(small);
		if (r >= 0)
			fail("decompression into a buffer below the declared size succeeded");
	}
	uint8_t *out = malloc(declared ? declared : 1);
	if (!out)
		return NULL;
	ssize_t n = rmq_codec_decompress(codec, p, len, out, declared);
	if (n < 0) {
		free(out);
		return NULL;
	}
	if ((size_t)n != declared)
		fail("decompressed size differs from the declared size");
	*out_len = (size_t)n;
	return out;
}

static void check_codec(int codec, const uint8_t *p, size_t len)
{
	size_t n;
	uint8_t *plain = decompress(codec, p, len, &n);
	if (!plain)
		return;
	size_t cap = rmq_codec_bound(codec, n);
	uint8_t *z = malloc(cap ? cap : 1);
	if (!z)
		fail("out of memory");
	ssize_t zl = rmq_codec_compress(codec, plain, n, z, cap);
	if (zl < 0)
		fail("compressing what was decompressed failed");
	size_t n2;
	uint8_t *again = decompress(codec, z, (size_t)zl, &n2);
	if (!again || n2 != n || memcmp(again, plain, n) != 0)
		fail("compress then decompress did not give the input back");
	free(again);
	free(z);
	free(plain);
}

static void check_entry(const uint8_t *p, const struct rmq_batch_view *v)
{
	struct rmq_batch_view h;
	int rc = rmq_batch_parse_header(p, v->entry_len, &h);
	if (rc != (int)v->entry_len || h.records_pos != v->records_pos ||
	    h.records_len != v->records_len || !same_hdr(&h.hdr, &v->hdr))
		fail("rmq_batch_parse_header disagrees with rmq_batch_parse");
	(void)rmq_batch_check_crc(p, v);

	/* Re-encode.  The encoder writes the append time where a timestamp
	 * is unset (negative), so only non-negative ones round-trip. */
	if (v->hdr.first_timestamp_ms < 0 || v->hdr.max_timestamp_ms < 0)
		return;
	uint8_t prefix[RMQ_BATCH_PREFIX_MAX];
	int plen = rmq_batch_encode_prefix(&v->hdr, v->records_len, prefix);
	if (plen < 0)
		fail("a parsed header does not encode");
	size_t total = (size_t)plen + v->records_len;
	uint8_t *e = malloc(total);
	if (!e)
		fail("out of memory");
	memcpy(e, prefix, (size_t)plen);
	memcpy(e + plen, p + v->records_pos, v->records_len);
	struct rmq_batch_view w;
	rc = rmq_batch_parse(e, total, &w);
	if (rc != (int)total)
		fail("a re-encoded entry does not parse");
	if (!same_hdr(&w.hdr, &v->hdr) || w.records_len != v->records_len ||
	    memcmp(e + w.records_pos, p + v->records_pos, v->records_len) != 0)
		fail("a re-encoded entry parses to another header or records");
	free(e);

	if (v->hdr.compression >= 1 && v->hdr.compression < RMQ_CODEC_COUNT)
		check_codec((int)v->hdr.compression, p + v->records_pos, v->records_len);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	if (size < 1)
		return 0;
	unsigned sel = data[0] % 4;
	data++;
	size--;
	if (sel != 0) {
		check_codec((int)sel, data, size);
		return 0;
	}
	/* A copy of exactly the input's size: a read past it is an ASan
	 * report, as a read past a segment's mapping would be a fault. */
	uint8_t *seg = malloc(size ? size : 1);
	if (!seg)
		return 0;
	memcpy(seg, data, size);
	size_t pos = 0;
	while (pos < size) {
		struct rmq_batch_view v;
		int rc = rmq_batch_parse(seg + pos, size - pos, &v);
		if (rc <= 0)
			break;
		if ((size_t)rc > size - pos || v.records_pos > v.entry_len ||
		    v.records_len > v.entry_len - v.records_pos)
			fail("a parsed entry's bounds lie outside it");
		check_entry(seg + pos, &v);
		pos += (size_t)rc;
	}
	free(seg);
	return 0;
}
