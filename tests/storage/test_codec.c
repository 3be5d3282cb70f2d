/* SPDX-License-Identifier: Apache-2.0 */
/*
 * test_codec.c - unit tests of src/storage/codec.c.
 *
 * Inputs come from a fixed-seed PRNG, so every run sees the same bytes
 * and a failure reproduces.  Corrupt frames are built from real frames
 * (flipped bytes, truncations, appended bytes) plus pure garbage and a
 * few hand-made frames the codec must refuse: skippable frames, frames
 * without a content size, and frames declaring far more than the caller's
 * buffer.  Under ASan/UBSan an out-of-bounds access fails the test even
 * when the return code looks right.
 */
#include "storage/codec.h"

#include "core/error.h"

#include <criterion/criterion.h>
#include <errno.h>
#include <limits.h>
#include <lz4frame.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <zstd.h>

#define MIB ((size_t)1 << 20)

static const int all_codecs[] = {
	RMQ_CODEC_NONE,
	RMQ_CODEC_LZ4,
	RMQ_CODEC_ZSTD,
	RMQ_CODEC_SNAPPY,
};

/* Codecs with a format to corrupt; none copies whatever it is given. */
static const int framed_codecs[] = {
	RMQ_CODEC_LZ4,
	RMQ_CODEC_ZSTD,
	RMQ_CODEC_SNAPPY,
};

#define ARRAY_SIZE(a) (sizeof(a) / sizeof((a)[0]))

/* ---- inputs ----------------------------------------------------------- */

static uint64_t splitmix64(uint64_t *state)
{
	uint64_t z = (*state += 0x9E3779B97F4A7C15ULL);

	z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ULL;
	z = (z ^ (z >> 27)) * 0x94D049BB133111EBULL;
	return z ^ (z >> 31);
}

static void fill_random(unsigned char *p, size_t len, uint64_t seed)
{
	uint64_t state = seed;

	for (size_t i = 0; i < len; i++)
		p[i] = (unsigned char)splitmix64(&state);
}

/* Log-like records: repetitive structure with varying numbers, the kind
 * of payload batches carry. */
static void fill_text(unsigned char *p, size_t len, uint64_t seed)
{
	static const char *const events[] = { "click", "view", "purchase",
					      "logout" };
	uint64_t state = seed;
	size_t off = 0;
	char line[160];

	for (uint64_t i = 0; off < len; i++) {
		uint64_t r = splitmix64(&state);
		int n = snprintf(line, sizeof(line),
				 "{\"id\":%llu,\"user\":\"user-%llu\","
				 "\"event\":\"%s\",\"ms\":%llu}\n",
				 (unsigned long long)i,
				 (unsigned long long)(r % 5000),
				 events[(r >> 32) % 4],
				 (unsigned long long)(r >> 40));
		size_t take = (size_t)n < len - off ? (size_t)n : len - off;

		memcpy(p + off, line, take);
		off += take;
	}
}

static unsigned char *xmalloc(size_t len)
{
	/* Never malloc(0): a NULL would mean "no buffer" to the codec. */
	unsigned char *p = malloc(len ? len : 1);

	cr_assert_not_null(p, "malloc(%zu) failed", len);
	return p;
}

/* Compresses src with a buffer of exactly rmq_codec_bound() bytes and
 * returns it; the length goes to *out_len. */
static unsigned char *compress_ok(int codec, const void *src, size_t len,
				  size_t *out_len)
{
	size_t bound = rmq_codec_bound(codec, len);
	unsigned char *dst = xmalloc(bound);
	ssize_t n = rmq_codec_compress(codec, src, len, dst, bound);

	cr_assert_geq(n, 0, "%s: compressing %zu bytes failed: %s",
		      rmq_codec_name(codec), len, rmq_errname((int)n));
	cr_assert_leq((size_t)n, bound, "%s: %zd bytes exceed the bound %zu",
		      rmq_codec_name(codec), n, bound);
	*out_len = (size_t)n;
	return dst;
}

/* Decompresses buf and requires an error; checks decompressed_size()
 * alongside, which may accept (it reads headers only) but must not
 * crash or claim more than the frame could produce when it does. */
static void expect_refused(int codec, const unsigned char *buf, size_t len,
			   size_t dst_cap, const char *what)
{
	unsigned char *dst = xmalloc(dst_cap);
	size_t declared = 0;
	ssize_t n;

	(void)rmq_codec_decompressed_size(codec, buf, len, &declared);
	n = rmq_codec_decompress(codec, buf, len, dst, dst_cap);
	cr_assert_lt(n, 0, "%s: %s (%zu bytes) was accepted (returned %zd)",
		     rmq_codec_name(codec), what, len, n);
	free(dst);
}

/* ---- names and ids ---------------------------------------------------- */

Test(codec, name_parse_round_trip)
{
	static const char *const names[] = { "none", "lz4", "zstd",
					     "snappy" };

	for (int id = 0; id < RMQ_CODEC_COUNT; id++) {
		const char *name = rmq_codec_name(id);

		cr_assert_not_null(name, "codec %d has no name", id);
		cr_assert_str_eq(name, names[id], "codec %d is named %s",
				 id, name);
		cr_assert_eq(rmq_codec_parse(name), id,
			     "parse(\"%s\") did not give %d", name, id);
	}
	cr_assert_eq(RMQ_CODEC_NONE, 0, "ids follow CompressionType");
	cr_assert_eq(RMQ_CODEC_LZ4, 1, "ids follow CompressionType");
	cr_assert_eq(RMQ_CODEC_ZSTD, 2, "ids follow CompressionType");
	cr_assert_eq(RMQ_CODEC_SNAPPY, 3, "ids follow CompressionType");
}

Test(codec, parse_unknown)
{
	static const char *const bad[] = { "", "gzip", "LZ4", "zstd ",
					   "snapp", "nonee", "lz4\n" };

	for (size_t i = 0; i < ARRAY_SIZE(bad); i++) {
		int r = rmq_codec_parse(bad[i]);

		cr_assert_eq(r, RMQ_EUNSUPPORTED,
			     "parse(\"%s\") gave %d, want RMQ_EUNSUPPORTED",
			     bad[i], r);
	}
	cr_assert_eq(rmq_codec_parse(NULL), RMQ_EUNSUPPORTED,
		     "parse(NULL) must be RMQ_EUNSUPPORTED");
}

Test(codec, unknown_id)
{
	static const int bad[] = { -1, RMQ_CODEC_COUNT, 5, 100, INT_MAX,
				   INT_MIN };
	unsigned char src[16] = "0123456789abcde";
	unsigned char dst[64];
	size_t out = 12345;

	for (size_t i = 0; i < ARRAY_SIZE(bad); i++) {
		int id = bad[i];
		ssize_t n;
		int r;

		cr_assert_null(rmq_codec_name(id), "codec %d has a name", id);
		cr_assert_eq(rmq_codec_bound(id, sizeof(src)), 0,
			     "codec %d has a bound", id);
		n = rmq_codec_compress(id, src, sizeof(src), dst, sizeof(dst));
		cr_assert_eq(n, RMQ_EUNSUPPORTED,
			     "compress with codec %d gave %s", id,
			     rmq_errname((int)n));
		n = rmq_codec_decompress(id, src, sizeof(src), dst,
					 sizeof(dst));
		cr_assert_eq(n, RMQ_EUNSUPPORTED,
			     "decompress with codec %d gave %s", id,
			     rmq_errname((int)n));
		r = rmq_codec_decompressed_size(id, src, sizeof(src), &out);
		cr_assert_eq(r, RMQ_EUNSUPPORTED,
			     "decompressed_size with codec %d gave %s", id,
			     rmq_errname(r));
		cr_assert_eq(out, 12345, "out_len written on failure");
	}
}

/* ---- round trips ------------------------------------------------------ */

/* Compresses src, checks the declared size, decompresses into a buffer
 * of exactly len bytes and into a larger one, and compares.  Returns the
 * compressed size. */
static size_t round_trip(int codec, const unsigned char *src, size_t len)
{
	const char *name = rmq_codec_name(codec);
	size_t clen, declared = SIZE_MAX;
	unsigned char *c = compress_ok(codec, src, len, &clen);
	unsigned char *out = xmalloc(len + 64);
	ssize_t n;
	int r;

	r = rmq_codec_decompressed_size(codec, c, clen, &declared);
	cr_assert_eq(r, 0, "%s: decompressed_size failed: %s", name,
		     rmq_errname(r));
	cr_assert_eq(declared, len, "%s: declares %zu bytes, want %zu", name,
		     declared, len);

	n = rmq_codec_decompress(codec, c, clen, out, len);
	cr_assert_eq(n, (ssize_t)len, "%s: exact-size decompress gave %zd (%s)",
		     name, n, rmq_errname((int)n));
	cr_assert(len == 0 || memcmp(out, src, len) == 0,
		  "%s: %zu bytes came back different", name, len);

	memset(out, 0xA5, len + 64);
	n = rmq_codec_decompress(codec, c, clen, out, len + 64);
	cr_assert_eq(n, (ssize_t)len, "%s: roomy decompress gave %zd (%s)",
		     name, n, rmq_errname((int)n));
	cr_assert(len == 0 || memcmp(out, src, len) == 0,
		  "%s: %zu bytes came back different", name, len);
	for (size_t i = len; i < len + 64; i++)
		cr_assert_eq(out[i], 0xA5, "%s: wrote past the output (%zu)",
			     name, i);

	if (len > 0) {
		n = rmq_codec_decompress(codec, c, clen, out, len - 1);
		cr_assert_eq(n, RMQ_ETOOBIG,
			     "%s: dst_cap one short gave %s, want RMQ_ETOOBIG",
			     name, rmq_errname((int)n));
	}
	free(out);
	free(c);
	return clen;
}

Test(codec, round_trip_empty)
{
	unsigned char buf[64];

	for (size_t i = 0; i < ARRAY_SIZE(all_codecs); i++) {
		int codec = all_codecs[i];
		const char *name = rmq_codec_name(codec);
		size_t bound = rmq_codec_bound(codec, 0);
		size_t declared = SIZE_MAX;
		ssize_t clen, n;
		int r;

		cr_assert_leq(bound, sizeof(buf), "%s: bound(0) = %zu", name,
			      bound);
		/* NULL with length 0 is a valid empty input. */
		clen = rmq_codec_compress(codec, NULL, 0, buf, bound);
		cr_assert_geq(clen, 0, "%s: compressing nothing failed: %s",
			      name, rmq_errname((int)clen));
		cr_assert_leq((size_t)clen, bound, "%s: %zd > bound %zu",
			      name, clen, bound);
		if (codec == RMQ_CODEC_NONE)
			cr_assert_eq(clen, 0, "none: empty copy is %zd", clen);
		else
			cr_assert_gt(clen, 0, "%s: an empty frame has a header",
				     name);

		r = rmq_codec_decompressed_size(codec, buf, (size_t)clen,
						&declared);
		cr_assert_eq(r, 0, "%s: decompressed_size: %s", name,
			     rmq_errname(r));
		cr_assert_eq(declared, 0, "%s: empty frame declares %zu", name,
			     declared);
		n = rmq_codec_decompress(codec, buf, (size_t)clen, NULL, 0);
		cr_assert_eq(n, 0, "%s: decompress into NULL/0 gave %zd (%s)",
			     name, n, rmq_errname((int)n));

		unsigned char out[8];

		n = rmq_codec_decompress(codec, buf, (size_t)clen, out,
					 sizeof(out));
		cr_assert_eq(n, 0, "%s: decompress into 8 bytes gave %zd (%s)",
			     name, n, rmq_errname((int)n));
		round_trip(codec, (const unsigned char *)"", 0);
	}
}

Test(codec, empty_frame_input)
{
	/* A zero-length compressed buffer is not a frame of any format, but
	 * for none it is simply the empty payload. */
	for (size_t i = 0; i < ARRAY_SIZE(all_codecs); i++) {
		int codec = all_codecs[i];
		const char *name = rmq_codec_name(codec);
		size_t declared = SIZE_MAX;
		int r = rmq_codec_decompressed_size(codec, NULL, 0, &declared);
		ssize_t n = rmq_codec_decompress(codec, NULL, 0, NULL, 0);

		if (codec == RMQ_CODEC_NONE) {
			cr_assert_eq(r, 0, "none: size of nothing: %s",
				     rmq_errname(r));
			cr_assert_eq(declared, 0, "none: declares %zu",
				     declared);
			cr_assert_eq(n, 0, "none: decompress of nothing: %zd",
				     n);
		} else {
			cr_assert_eq(r, RMQ_ECODEC,
				     "%s: size of 0 bytes gave %s", name,
				     rmq_errname(r));
			cr_assert_eq(n, RMQ_ECODEC,
				     "%s: decompress of 0 bytes gave %s", name,
				     rmq_errname((int)n));
		}
	}
}

Test(codec, round_trip_tiny)
{
	static const unsigned char one[1] = { 'x' };
	static const unsigned char ten[10] = "0123456789";

	for (size_t i = 0; i < ARRAY_SIZE(all_codecs); i++) {
		round_trip(all_codecs[i], one, sizeof(one));
		round_trip(all_codecs[i], ten, sizeof(ten));
	}
}

Test(codec, round_trip_incompressible_1mib)
{
	unsigned char *src = xmalloc(MIB);

	fill_random(src, MIB, 0x5eed0001);
	for (size_t i = 0; i < ARRAY_SIZE(all_codecs); i++)
		round_trip(all_codecs[i], src, MIB);
	free(src);
}

Test(codec, round_trip_compressible_1mib)
{
	unsigned char *src = xmalloc(MIB);

	fill_text(src, MIB, 0x5eed0002);
	for (size_t i = 0; i < ARRAY_SIZE(all_codecs); i++) {
		int codec = all_codecs[i];
		size_t clen = round_trip(codec, src, MIB);

		if (codec == RMQ_CODEC_NONE)
			cr_assert_eq(clen, MIB, "none changed the length");
		else
			cr_assert_lt(clen, MIB / 2,
				     "%s: text shrank only to %zu bytes",
				     rmq_codec_name(codec), clen);
	}
	free(src);
}

Test(codec, round_trip_sizes)
{
	/* Around the 64 KiB lz4 block and snappy fragment boundaries. */
	static const size_t sizes[] = { 2, 3, 15, 16, 17, 255, 256, 1000,
					4096, 65535, 65536, 65537, 131072,
					200000 };
	unsigned char *src = xmalloc(200000);

	for (size_t s = 0; s < ARRAY_SIZE(sizes); s++) {
		for (size_t i = 0; i < ARRAY_SIZE(all_codecs); i++) {
			fill_random(src, sizes[s], 7 + s);
			round_trip(all_codecs[i], src, sizes[s]);
			fill_text(src, sizes[s], 7 + s);
			round_trip(all_codecs[i], src, sizes[s]);
		}
	}
	free(src);
}

/* ---- bounds on the compressed side ------------------------------------ */

Test(codec, bound_respected)
{
	static const size_t sizes[] = { 0, 1, 10, 100, 4096, 65536, 65537,
					MIB };
	unsigned char *src = xmalloc(MIB);
	const size_t guard = 64;

	for (size_t s = 0; s < ARRAY_SIZE(sizes); s++) {
		size_t len = sizes[s];

		fill_random(src, len, 100 + s);
		for (size_t i = 0; i < ARRAY_SIZE(all_codecs); i++) {
			int codec = all_codecs[i];
			const char *name = rmq_codec_name(codec);
			size_t bound = rmq_codec_bound(codec, len);
			unsigned char *dst = xmalloc(bound + guard);
			ssize_t n;

			if (codec == RMQ_CODEC_NONE)
				cr_assert_eq(bound, len,
					     "none: bound(%zu) = %zu", len,
					     bound);
			else
				cr_assert_geq(bound, len,
					      "%s: bound(%zu) = %zu < len",
					      name, len, bound);
			memset(dst, 0x5A, bound + guard);
			/* Random bytes are the worst case: the bound must
			 * still hold with dst_cap exactly equal to it. */
			n = rmq_codec_compress(codec, src, len, dst, bound);
			cr_assert_geq(n, 0, "%s: %zu bytes into bound %zu: %s",
				      name, len, bound, rmq_errname((int)n));
			cr_assert_leq((size_t)n, bound,
				      "%s: %zd bytes over bound %zu", name, n,
				      bound);
			for (size_t g = bound; g < bound + guard; g++)
				cr_assert_eq(dst[g], 0x5A,
					     "%s: wrote past dst_cap at %zu",
					     name, g);
			free(dst);
		}
	}
	free(src);
}

Test(codec, dst_too_small)
{
	unsigned char src[4096];
	unsigned char dst[8192];

	fill_random(src, sizeof(src), 42);
	for (size_t i = 0; i < ARRAY_SIZE(all_codecs); i++) {
		int codec = all_codecs[i];
		const char *name = rmq_codec_name(codec);
		size_t bound = rmq_codec_bound(codec, sizeof(src));
		ssize_t n;

		cr_assert_leq(bound, sizeof(dst), "%s: bound %zu", name, bound);
		/* Random data cannot shrink, so half the input never fits,
		 * whatever a codec's policy below its bound. */
		n = rmq_codec_compress(codec, src, sizeof(src), dst,
				       sizeof(src) / 2);
		cr_assert_eq(n, RMQ_ETOOBIG, "%s: half-size dst gave %s", name,
			     rmq_errname((int)n));
		n = rmq_codec_compress(codec, src, sizeof(src), NULL, 0);
		cr_assert_eq(n, RMQ_ETOOBIG, "%s: NULL/0 dst gave %s", name,
			     rmq_errname((int)n));
		if (codec != RMQ_CODEC_ZSTD) {
			/* lz4 and snappy want the full bound up front. */
			n = rmq_codec_compress(codec, src, sizeof(src), dst,
					       bound - 1);
			cr_assert_eq(n, RMQ_ETOOBIG,
				     "%s: bound-1 dst gave %s", name,
				     rmq_errname((int)n));
		}
	}
}

Test(codec, src_max)
{
	/* snappy's preamble is 32 bits; a larger input must be refused
	 * before any byte of src is read (src here is far smaller than the
	 * length, so reading it would trip ASan). */
	unsigned char src[16] = { 0 };
	unsigned char dst[64];
	size_t big = (size_t)UINT32_MAX + 1;
	ssize_t n;

	cr_assert_eq(rmq_codec_bound(RMQ_CODEC_SNAPPY, big), 0,
		     "snappy: bound of 4 GiB is %zu",
		     rmq_codec_bound(RMQ_CODEC_SNAPPY, big));
	n = rmq_codec_compress(RMQ_CODEC_SNAPPY, src, big, dst, sizeof(dst));
	cr_assert_eq(n, RMQ_ETOOBIG, "snappy: 4 GiB input gave %s",
		     rmq_errname((int)n));
	cr_assert_eq(rmq_codec_bound(RMQ_CODEC_LZ4, SIZE_MAX), 0,
		     "lz4: bound of SIZE_MAX is not 0");
	cr_assert_eq(rmq_codec_bound(RMQ_CODEC_ZSTD, SIZE_MAX), 0,
		     "zstd: bound of SIZE_MAX is not 0");
}

Test(codec, null_buffers_with_length)
{
	unsigned char buf[64] = { 0 };
	size_t out;

	for (size_t i = 0; i < ARRAY_SIZE(all_codecs); i++) {
		int codec = all_codecs[i];
		const char *name = rmq_codec_name(codec);
		ssize_t n;

		n = rmq_codec_compress(codec, NULL, 10, buf, sizeof(buf));
		cr_assert_eq(n, -EINVAL, "%s: NULL src with length gave %s",
			     name, rmq_errname((int)n));
		n = rmq_codec_compress(codec, buf, 10, NULL, 64);
		cr_assert_eq(n, -EINVAL, "%s: NULL dst with capacity gave %s",
			     name, rmq_errname((int)n));
		n = rmq_codec_decompress(codec, NULL, 10, buf, sizeof(buf));
		cr_assert_eq(n, -EINVAL, "%s: NULL src with length gave %s",
			     name, rmq_errname((int)n));
		n = rmq_codec_decompress(codec, buf, 10, NULL, 64);
		cr_assert_eq(n, -EINVAL, "%s: NULL dst with capacity gave %s",
			     name, rmq_errname((int)n));
		n = rmq_codec_decompressed_size(codec, NULL, 10, &out);
		cr_assert_eq(n, -EINVAL, "%s: NULL src with length gave %s",
			     name, rmq_errname((int)n));
		n = rmq_codec_decompressed_size(codec, buf, 10, NULL);
		cr_assert_eq(n, -EINVAL, "%s: NULL out_len gave %s", name,
			     rmq_errname((int)n));
	}
}

/* ---- declared size against dst_cap ------------------------------------ */

Test(codec, declared_size_over_dst_cap)
{
	unsigned char src[1000];
	unsigned char out[1000];

	fill_text(src, sizeof(src), 9);
	for (size_t i = 0; i < ARRAY_SIZE(all_codecs); i++) {
		int codec = all_codecs[i];
		const char *name = rmq_codec_name(codec);
		size_t clen;
		unsigned char *c = compress_ok(codec, src, sizeof(src), &clen);
		ssize_t n;

		memset(out, 0xEE, sizeof(out));
		n = rmq_codec_decompress(codec, c, clen, out, sizeof(out) - 1);
		cr_assert_eq(n, RMQ_ETOOBIG, "%s: 999-byte dst gave %s", name,
			     rmq_errname((int)n));
		n = rmq_codec_decompress(codec, c, clen, out, 1);
		cr_assert_eq(n, RMQ_ETOOBIG, "%s: 1-byte dst gave %s", name,
			     rmq_errname((int)n));
		n = rmq_codec_decompress(codec, c, clen, NULL, 0);
		cr_assert_eq(n, RMQ_ETOOBIG, "%s: NULL/0 dst gave %s", name,
			     rmq_errname((int)n));
		/* Refused before decoding: not one byte written. */
		for (size_t b = 0; b < sizeof(out); b++)
			cr_assert_eq(out[b], 0xEE, "%s: wrote dst[%zu]", name,
				     b);
		free(c);
	}
}

Test(codec, decompression_bomb)
{
	const size_t big = 16 * MIB;
	const size_t cap = MIB;
	unsigned char *zeros = calloc(1, big);
	unsigned char *out = xmalloc(cap);

	cr_assert_not_null(zeros, "calloc(16 MiB) failed");
	for (size_t i = 0; i < ARRAY_SIZE(framed_codecs); i++) {
		int codec = framed_codecs[i];
		const char *name = rmq_codec_name(codec);
		size_t clen, declared = 0;
		unsigned char *c = compress_ok(codec, zeros, big, &clen);
		ssize_t n;
		int r;

		cr_assert_lt(clen, cap, "%s: 16 MiB of zeros took %zu bytes",
			     name, clen);
		r = rmq_codec_decompressed_size(codec, c, clen, &declared);
		cr_assert_eq(r, 0, "%s: size: %s", name, rmq_errname(r));
		cr_assert_eq(declared, big, "%s: declares %zu", name, declared);
		n = rmq_codec_decompress(codec, c, clen, out, cap);
		cr_assert_eq(n, RMQ_ETOOBIG, "%s: 16 MiB into 1 MiB gave %s",
			     name, rmq_errname((int)n));
		free(c);
	}
	free(out);
	free(zeros);
}

Test(codec, crafted_huge_declared_size)
{
	unsigned char out[256];
	size_t declared = 0;
	ssize_t n;
	int r;

	/* snappy: a preamble of 2^32-1 and nothing else. */
	static const unsigned char snappy_bomb[] = { 0xFF, 0xFF, 0xFF, 0xFF,
						     0x0F, 0x00, 'a' };
	r = rmq_codec_decompressed_size(RMQ_CODEC_SNAPPY, snappy_bomb,
					sizeof(snappy_bomb), &declared);
	cr_assert_eq(r, 0, "snappy: size: %s", rmq_errname(r));
	cr_assert_eq(declared, (size_t)UINT32_MAX, "snappy: declares %zu",
		     declared);
	n = rmq_codec_decompress(RMQ_CODEC_SNAPPY, snappy_bomb,
				 sizeof(snappy_bomb), out, sizeof(out));
	cr_assert_eq(n, RMQ_ETOOBIG, "snappy: 4 GiB preamble gave %s",
		     rmq_errname((int)n));

	/* lz4: a genuine frame header declaring 1 TiB, then an end mark and
	 * a checksum that cannot match. */
	LZ4F_cctx *cctx;
	LZ4F_preferences_t prefs = {
		.frameInfo = {
			.contentSize = (unsigned long long)1 << 40,
			.contentChecksumFlag = LZ4F_contentChecksumEnabled,
		},
	};
	unsigned char frame[LZ4F_HEADER_SIZE_MAX + 8] = { 0 };
	size_t hdr;

	cr_assert(!LZ4F_isError(LZ4F_createCompressionContext(&cctx,
							      LZ4F_VERSION)),
		  "LZ4F_createCompressionContext failed");
	hdr = LZ4F_compressBegin(cctx, frame, sizeof(frame), &prefs);
	cr_assert(!LZ4F_isError(hdr), "LZ4F_compressBegin: %s",
		  LZ4F_getErrorName(hdr));
	LZ4F_freeCompressionContext(cctx);
	r = rmq_codec_decompressed_size(RMQ_CODEC_LZ4, frame, hdr + 8,
					&declared);
	cr_assert_eq(r, 0, "lz4: size: %s", rmq_errname(r));
	cr_assert_eq(declared, (size_t)1 << 40, "lz4: declares %zu", declared);
	n = rmq_codec_decompress(RMQ_CODEC_LZ4, frame, hdr + 8, out,
				 sizeof(out));
	cr_assert_eq(n, RMQ_ETOOBIG, "lz4: 1 TiB header gave %s",
		     rmq_errname((int)n));
}

/* ---- corrupt input ---------------------------------------------------- */

/*
 * lz4 and zstd frames carry a content checksum (lz4 a header checksum
 * too), so a changed byte is refused unless it leaves the decoded bytes
 * unchanged: a match offset redirected to an identical earlier copy, say,
 * which no checksum can see and which does no harm.  The property checked
 * is therefore "refused, or exactly the original records", with refusal
 * required for nearly all changes and always for the magic number and the
 * trailing content checksum.  snappy has no checksum: a changed literal
 * decodes to other bytes of the same length, so for snappy only "refused,
 * or exactly the declared length, and no crash" holds.
 */
static void flip_every_byte(int codec, const unsigned char *src, size_t len,
			    size_t stride)
{
	static const unsigned char masks[] = { 0x01, 0x80, 0xFF };
	const char *name = rmq_codec_name(codec);
	size_t clen;
	unsigned char *c = compress_ok(codec, src, len, &clen);
	unsigned char *bad = xmalloc(clen);
	unsigned char *out = xmalloc(len + 16);
	size_t tries = 0, refused = 0;

	for (size_t pos = 0; pos < clen; pos += stride) {
		for (size_t m = 0; m < ARRAY_SIZE(masks); m++) {
			size_t declared;
			ssize_t n;

			memcpy(bad, c, clen);
			bad[pos] ^= masks[m];
			(void)rmq_codec_decompressed_size(codec, bad, clen,
							  &declared);
			n = rmq_codec_decompress(codec, bad, clen, out,
						 len + 16);
			tries++;
			if (n < 0) {
				refused++;
				continue;
			}
			cr_assert_eq((size_t)n, len,
				     "%s: byte %zu of %zu ^0x%02x gave %zd "
				     "bytes, want %zu",
				     name, pos, clen, masks[m], n, len);
			if (codec == RMQ_CODEC_SNAPPY)
				continue;
			cr_assert(memcmp(out, src, len) == 0,
				  "%s: byte %zu of %zu ^0x%02x returned "
				  "different records",
				  name, pos, clen, masks[m]);
		}
	}
	if (codec != RMQ_CODEC_SNAPPY)
		cr_assert_geq(refused * 100, tries * 95,
			      "%s: only %zu of %zu changes refused", name,
			      refused, tries);

	/* The magic number and the content checksum must never pass. */
	for (size_t k = 0; k < 8 && codec != RMQ_CODEC_SNAPPY; k++) {
		size_t pos = k < 4 ? k : clen - 8 + k;
		ssize_t n;

		memcpy(bad, c, clen);
		bad[pos] ^= 0x01;
		n = rmq_codec_decompress(codec, bad, clen, out, len + 16);
		cr_assert_lt(n, 0, "%s: byte %zu of %zu ^0x01 accepted", name,
			     pos, clen);
	}
	free(out);
	free(bad);
	free(c);
}

Test(codec, flipped_bytes)
{
	unsigned char *text = xmalloc(256 * 1024);
	unsigned char rnd[300];

	fill_text(text, 256 * 1024, 11);
	fill_random(rnd, sizeof(rnd), 12);
	for (size_t i = 0; i < ARRAY_SIZE(framed_codecs); i++) {
		int codec = framed_codecs[i];

		flip_every_byte(codec, text, 2000, 1);
		flip_every_byte(codec, rnd, sizeof(rnd), 1);
		flip_every_byte(codec, text, 256 * 1024, 97);
	}
	free(text);
}

Test(codec, snappy_structure_flips)
{
	/* Where snappy's structure lives, a change is always refused: the
	 * preamble (declared length) and the first element's tag. */
	unsigned char src[2000];
	unsigned char out[2100];
	size_t clen;
	unsigned char *c;

	fill_text(src, sizeof(src), 13);
	c = compress_ok(RMQ_CODEC_SNAPPY, src, sizeof(src), &clen);
	for (size_t pos = 0; pos < 2; pos++) { /* 2000 is a 2-byte varint */
		static const unsigned char masks[] = { 0x01, 0x02, 0x40 };

		for (size_t m = 0; m < ARRAY_SIZE(masks); m++) {
			ssize_t n;

			c[pos] ^= masks[m];
			n = rmq_codec_decompress(RMQ_CODEC_SNAPPY, c, clen, out,
						 sizeof(out));
			c[pos] ^= masks[m];
			cr_assert_lt(n, 0, "snappy: preamble byte %zu ^0x%02x "
				     "accepted (%zd)", pos, masks[m], n);
		}
	}
	free(c);
}

Test(codec, truncated)
{
	unsigned char src[3000];

	fill_text(src, sizeof(src), 21);
	for (size_t i = 0; i < ARRAY_SIZE(framed_codecs); i++) {
		int codec = framed_codecs[i];
		size_t clen;
		unsigned char *c = compress_ok(codec, src, sizeof(src), &clen);

		for (size_t cut = 0; cut < clen; cut++) {
			/* A private copy of the prefix so ASan sees any read
			 * past the truncated end. */
			unsigned char *part = xmalloc(cut);

			memcpy(part, c, cut);
			expect_refused(codec, part, cut, sizeof(src) + 16,
				       "truncated frame");
			free(part);
		}
		free(c);

		/* The empty input's frame, truncated, too. */
		c = compress_ok(codec, "", 0, &clen);
		for (size_t cut = 0; cut < clen; cut++)
			expect_refused(codec, c, cut, 16,
				       "truncated empty frame");
		free(c);
	}
}

Test(codec, trailing_bytes)
{
	unsigned char src[1000];

	fill_text(src, sizeof(src), 31);
	for (size_t i = 0; i < ARRAY_SIZE(framed_codecs); i++) {
		int codec = framed_codecs[i];
		size_t clen;
		unsigned char *c = compress_ok(codec, src, sizeof(src), &clen);
		unsigned char *buf = xmalloc(2 * clen + 16);

		/* Every possible single trailing byte. */
		for (int b = 0; b < 256; b++) {
			memcpy(buf, c, clen);
			buf[clen] = (unsigned char)b;
			expect_refused(codec, buf, clen + 1, 2 * sizeof(src),
				       "frame + 1 trailing byte");
		}
		/* Runs of zeros and a whole second frame. */
		for (size_t extra = 2; extra <= 16; extra *= 2) {
			memcpy(buf, c, clen);
			memset(buf + clen, 0, extra);
			expect_refused(codec, buf, clen + extra,
				       2 * sizeof(src), "frame + zero bytes");
		}
		memcpy(buf, c, clen);
		memcpy(buf + clen, c, clen);
		expect_refused(codec, buf, 2 * clen, 2 * sizeof(src),
			       "two concatenated frames");

		/* The same for the empty input's frame. */
		size_t elen;
		unsigned char *e = compress_ok(codec, "", 0, &elen);

		memcpy(buf, e, elen);
		buf[elen] = 0;
		expect_refused(codec, buf, elen + 1, 16,
			       "empty frame + 1 trailing byte");
		memcpy(buf + elen, e, elen);
		expect_refused(codec, buf, 2 * elen, 16,
			       "two concatenated empty frames");
		free(e);
		free(buf);
		free(c);
	}
}

Test(codec, garbage)
{
	unsigned char buf[4096];

	for (size_t i = 0; i < ARRAY_SIZE(framed_codecs); i++) {
		int codec = framed_codecs[i];

		for (size_t len = 1; len <= 64; len++) {
			for (uint64_t seed = 0; seed < 8; seed++) {
				fill_random(buf, len, seed * 1000 + len);
				expect_refused(codec, buf, len, 8192,
					       "random bytes");
			}
		}
		fill_random(buf, sizeof(buf), 77);
		expect_refused(codec, buf, sizeof(buf), 1 << 20,
			       "4 KiB of random bytes");
		memset(buf, 0, sizeof(buf));
		expect_refused(codec, buf, sizeof(buf), 1 << 20,
			       "4 KiB of zeros");
		memset(buf, 0xFF, sizeof(buf));
		expect_refused(codec, buf, sizeof(buf), 1 << 20,
			       "4 KiB of 0xFF");
	}

	/* Right magic number, garbage after it. */
	static const unsigned char lz4_magic[4] = { 0x04, 0x22, 0x4D, 0x18 };
	static const unsigned char zstd_magic[4] = { 0x28, 0xB5, 0x2F, 0xFD };

	for (size_t len = 4; len <= 512; len += 7) {
		for (uint64_t seed = 0; seed < 4; seed++) {
			fill_random(buf, len, seed * 7777 + len);
			memcpy(buf, lz4_magic, 4);
			expect_refused(RMQ_CODEC_LZ4, buf, len, 8192,
				       "lz4 magic + random bytes");
			memcpy(buf, zstd_magic, 4);
			expect_refused(RMQ_CODEC_ZSTD, buf, len, 8192,
				       "zstd magic + random bytes");
		}
	}
}

Test(codec, skippable_frames)
{
	/* Magic 0x184D2A50 (both lz4 and zstd use that range), a 4-byte
	 * length of 4, four bytes of user data. */
	static const unsigned char skip[12] = { 0x50, 0x2A, 0x4D, 0x18,
						0x04, 0x00, 0x00, 0x00,
						'r',  'm',  'q',  '!' };
	unsigned char buf[256];
	size_t clen;
	unsigned char *c;

	expect_refused(RMQ_CODEC_LZ4, skip, sizeof(skip), 64,
		       "a skippable frame");
	expect_refused(RMQ_CODEC_ZSTD, skip, sizeof(skip), 64,
		       "a skippable frame");

	/* A valid frame followed by a skippable one is still trailing
	 * bytes. */
	c = compress_ok(RMQ_CODEC_ZSTD, "hello", 5, &clen);
	cr_assert_leq(clen + sizeof(skip), sizeof(buf), "zstd frame is %zu",
		      clen);
	memcpy(buf, c, clen);
	memcpy(buf + clen, skip, sizeof(skip));
	expect_refused(RMQ_CODEC_ZSTD, buf, clen + sizeof(skip), 64,
		       "zstd frame + skippable frame");
	free(c);
	c = compress_ok(RMQ_CODEC_LZ4, "hello", 5, &clen);
	memcpy(buf, c, clen);
	memcpy(buf + clen, skip, sizeof(skip));
	expect_refused(RMQ_CODEC_LZ4, buf, clen + sizeof(skip), 64,
		       "lz4 frame + skippable frame");
	free(c);
}

Test(codec, frames_without_content_size)
{
	unsigned char src[1000];
	unsigned char frame[4096];
	size_t declared;
	ssize_t n;
	int r;

	fill_text(src, sizeof(src), 41);

	/* lz4: a well-formed frame whose header omits the size. */
	LZ4F_preferences_t prefs = {
		.frameInfo = {
			.contentChecksumFlag = LZ4F_contentChecksumEnabled,
		},
	};
	size_t len = LZ4F_compressFrame(frame, sizeof(frame), src, sizeof(src),
					&prefs);

	cr_assert(!LZ4F_isError(len), "LZ4F_compressFrame: %s",
		  LZ4F_getErrorName(len));
	r = rmq_codec_decompressed_size(RMQ_CODEC_LZ4, frame, len, &declared);
	cr_assert_eq(r, RMQ_ECODEC, "lz4: sizeless frame size gave %s",
		     rmq_errname(r));
	n = rmq_codec_decompress(RMQ_CODEC_LZ4, frame, len, src, sizeof(src));
	cr_assert_eq(n, RMQ_ECODEC, "lz4: sizeless frame gave %s",
		     rmq_errname((int)n));

	/* zstd: a streamed frame that never learned its size. */
	ZSTD_CCtx *cctx = ZSTD_createCCtx();
	ZSTD_inBuffer in = { src, sizeof(src), 0 };
	ZSTD_outBuffer out = { frame, sizeof(frame), 0 };
	size_t rest;

	cr_assert_not_null(cctx, "ZSTD_createCCtx failed");
	ZSTD_CCtx_setParameter(cctx, ZSTD_c_contentSizeFlag, 0);
	rest = ZSTD_compressStream2(cctx, &out, &in, ZSTD_e_end);
	cr_assert_eq(rest, 0, "zstd stream did not finish: %zu", rest);
	ZSTD_freeCCtx(cctx);
	r = rmq_codec_decompressed_size(RMQ_CODEC_ZSTD, frame, out.pos,
					&declared);
	cr_assert_eq(r, RMQ_ECODEC, "zstd: sizeless frame size gave %s",
		     rmq_errname(r));
	n = rmq_codec_decompress(RMQ_CODEC_ZSTD, frame, out.pos, src,
				 sizeof(src));
	cr_assert_eq(n, RMQ_ECODEC, "zstd: sizeless frame gave %s",
		     rmq_errname((int)n));
}

Test(codec, frames_from_other_settings)
{
	/* Producers pick their own frame options; any checked, sized frame
	 * must decode: lz4 without checksum, with block checksums and 4 MiB
	 * independent blocks; zstd at another level without checksum. */
	unsigned char *src = xmalloc(300000);
	unsigned char *frame = xmalloc(400000);
	unsigned char *out = xmalloc(300000);
	ssize_t n;

	fill_text(src, 300000, 51);
	LZ4F_preferences_t prefs = {
		.frameInfo = {
			.blockSizeID = LZ4F_max4MB,
			.blockMode = LZ4F_blockIndependent,
			.contentSize = 300000,
			.blockChecksumFlag = LZ4F_blockChecksumEnabled,
		},
		.compressionLevel = 9,
	};
	size_t len = LZ4F_compressFrame(frame, 400000, src, 300000, &prefs);

	cr_assert(!LZ4F_isError(len), "LZ4F_compressFrame: %s",
		  LZ4F_getErrorName(len));
	n = rmq_codec_decompress(RMQ_CODEC_LZ4, frame, len, out, 300000);
	cr_assert_eq(n, 300000, "lz4: foreign frame gave %s",
		     rmq_errname((int)n));
	cr_assert(memcmp(out, src, 300000) == 0, "lz4: foreign frame differs");

	len = ZSTD_compress(frame, 400000, src, 300000, 19);
	cr_assert(!ZSTD_isError(len), "ZSTD_compress: %s",
		  ZSTD_getErrorName(len));
	n = rmq_codec_decompress(RMQ_CODEC_ZSTD, frame, len, out, 300000);
	cr_assert_eq(n, 300000, "zstd: foreign frame gave %s",
		     rmq_errname((int)n));
	cr_assert(memcmp(out, src, 300000) == 0, "zstd: foreign frame differs");
	free(out);
	free(frame);
	free(src);
}
