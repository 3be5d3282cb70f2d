/* SPDX-License-Identifier: Apache-2.0 */
/*
 * codec.c - batch compression through lz4 (frame), zstd and snappy.
 *
 * Each codec is one row of codec_table[], indexed by its id; the public
 * functions check the id and the pointers once and then dispatch.  A row
 * has five parts:
 *
 *   bound       worst-case compressed size of src_len bytes
 *   compress    src -> dst, one self-describing unit
 *   size        the decompressed size src declares (headers only)
 *   decompress  src -> dst, told exactly how many bytes to expect
 *   src_max     the largest src_len the row accepts (see below)
 *
 * Decompression never trusts the input and never writes more than it was
 * promised:
 *
 *   src --size()--> declared --(declared > dst_cap)--> RMQ_ETOOBIG
 *                      |
 *                      v
 *   decompress(src, dst, room = declared)   a longer output cannot fit
 *                      |
 *                      v
 *   produced == declared and src fully consumed, else RMQ_ECODEC
 *
 * What each format gives us:
 *
 *   codec   compress                           size check / end of input
 *   none    copy                               src_len itself
 *   lz4     LZ4F_compressFrame, content size   LZ4F_getFrameInfo; the
 *           and content checksum on            decoder must reach the
 *                                              frame end and consume all
 *                                              of src
 *   zstd    ZSTD_compress2, level 3, content   ZSTD_getFrameContentSize;
 *           size and XXH64 checksum on         ZSTD_findFrameCompressedSize
 *                                              must equal src_len
 *   snappy  snappy_compress (raw format)       varint preamble; the decoder
 *                                              fails unless the elements
 *                                              produce exactly that many
 *                                              bytes, so trailing bytes
 *                                              (each element yields >= 1
 *                                              byte) are refused too
 *
 * Four format details shape the code:
 *
 * - LZ4F writes the content-size field only when it is non-zero, so an
 *   empty input yields a frame that declares no size.  A frame without a
 *   size is therefore taken to declare 0 bytes and is decoded into zero
 *   bytes of room: an empty frame completes, anything holding data fails
 *   with RMQ_ECODEC.  Skippable frames and frames that need a dictionary
 *   are refused.
 * - zstd one-shot decoding accepts concatenated and skippable frames and
 *   legacy formats.  Checking the magic number and that the first frame
 *   spans all of src keeps it to exactly one current-format frame.
 * - snappy_uncompress() runs the same bounds-checked decoder as
 *   snappy_validate_compressed_buffer() and refuses the same inputs, so
 *   validating first would only decode everything twice.
 * - The lz4 and snappy compressors refuse up front a dst_cap below their
 *   bound, even when the output would fit; zstd only fails when it does
 *   not.  All three report that as RMQ_ETOOBIG.
 *
 * src_max exists because each library has a limit it does not check
 * itself: snappy's preamble is a 32-bit varint (snappy_compress silently
 * truncates larger lengths), LZ4F counts blocks in an unsigned int when
 * bounding (2^32 blocks of 64 KiB), and every length must fit the ssize_t
 * return.  Inputs above src_max get RMQ_ETOOBIG and a bound of 0.
 *
 * Integrity of stored batches is the batch CRC32C's job; the codec
 * checksums are kept so that decompressing a frame that skipped the CRC
 * check is still very unlikely to return corrupted records.  snappy has
 * no checksum: a flipped literal byte decodes "successfully".
 *
 * Memory: the libraries allocate their contexts per call (a zstd
 * context; an LZ4F decompression context whose buffers take ~256 KiB for
 * the 64 KiB linked blocks we write, ~8 MiB for a producer's 4 MiB
 * ones).  Allocation failures come back as -ENOMEM, never as RMQ_ECODEC,
 * so a caller does not mistake memory pressure for a corrupt batch.
 * snappy's C wrapper cannot report one (std::bad_alloc would reach C
 * frames and terminate the process); its working memory is small and
 * bounded.
 */
/* For LZ4F_getErrorCode(), which Debian's liblz4 1.9.4 exports. */
#define LZ4F_STATIC_LINKING_ONLY
#include "storage/codec.h"

#include "core/error.h"

#include <errno.h>
#include <lz4frame.h>
#include <snappy-c.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>
#include <zstd.h>
#include <zstd_errors.h>

#define ZSTD_LEVEL 3

/* The largest length a ssize_t return can carry.  SSIZE_MAX needs POSIX
 * feature macros; on every Linux ABI ssize_t is as wide as ptrdiff_t. */
#define CODEC_LEN_MAX ((uint64_t)PTRDIFF_MAX)
_Static_assert(sizeof(ssize_t) == sizeof(ptrdiff_t), "ssize_t width");

#define CODEC_MIN(a, b) ((a) < (b) ? (a) : (b))

struct codec_ops {
	const char *name;
	uint64_t src_max;
	size_t (*bound)(size_t src_len);
	ssize_t (*compress)(const void *src, size_t src_len, void *dst,
			    size_t dst_cap);
	int (*size)(const void *src, size_t src_len, uint64_t *declared);
	/* Called only with room == the declared size, already checked
	 * against the caller's dst_cap. */
	ssize_t (*decompress)(const void *src, size_t src_len, void *dst,
			      size_t room);
};

/* ---- none ------------------------------------------------------------- */

static size_t none_bound(size_t src_len)
{
	return src_len;
}

static ssize_t none_compress(const void *src, size_t src_len, void *dst,
			     size_t dst_cap)
{
	if (dst_cap < src_len)
		return RMQ_ETOOBIG;
	if (src_len > 0)
		memcpy(dst, src, src_len);
	return (ssize_t)src_len;
}

static int none_size(const void *src, size_t src_len, uint64_t *declared)
{
	(void)src;
	*declared = src_len;
	return 0;
}

static ssize_t none_decompress(const void *src, size_t src_len, void *dst,
			       size_t room)
{
	return none_compress(src, src_len, dst, room);
}

/* ---- lz4 (frame format) ----------------------------------------------- */

/* Block size and mode stay at LZ4F's defaults (64 KiB, linked): larger
 * blocks barely help batch-sized inputs and cost the decoder more. */
static LZ4F_preferences_t lz4_prefs(size_t src_len)
{
	LZ4F_preferences_t prefs = {
		.frameInfo = {
			.contentSize = src_len,
			.contentChecksumFlag = LZ4F_contentChecksumEnabled,
		},
	};
	return prefs;
}

static int lz4_err(size_t code)
{
	if (LZ4F_getErrorCode(code) == LZ4F_ERROR_allocation_failed)
		return -ENOMEM;
	return RMQ_ECODEC;
}

static size_t lz4_bound(size_t src_len)
{
	LZ4F_preferences_t prefs = lz4_prefs(src_len);

	return LZ4F_compressFrameBound(src_len, &prefs);
}

static ssize_t lz4_compress(const void *src, size_t src_len, void *dst,
			    size_t dst_cap)
{
	LZ4F_preferences_t prefs = lz4_prefs(src_len);
	size_t n;

	/* LZ4F_compressFrame() refuses anything below the bound anyway. */
	if (dst_cap < LZ4F_compressFrameBound(src_len, &prefs))
		return RMQ_ETOOBIG;
	n = LZ4F_compressFrame(dst, dst_cap, src, src_len, &prefs);
	if (LZ4F_isError(n))
		return lz4_err(n);
	return (ssize_t)n;
}

/* Decodes the frame header into dctx.  On success *hdr_len is the header's
 * size and *declared the content size (0 when the frame carries none). */
static int lz4_open(LZ4F_dctx *dctx, const void *src, size_t src_len,
		    size_t *hdr_len, uint64_t *declared)
{
	LZ4F_frameInfo_t info;
	size_t n = src_len;
	size_t r = LZ4F_getFrameInfo(dctx, &info, src, &n);

	if (LZ4F_isError(r))
		return lz4_err(r);
	if (info.frameType != LZ4F_frame)
		return RMQ_ECODEC; /* a skippable frame holds no records */
	if (info.dictID != 0)
		return RMQ_ECODEC; /* we have no dictionary to decode it */
	*hdr_len = n;
	*declared = info.contentSize;
	return 0;
}

/* Runs the decoder over the rest of the frame into dst[0, room).  Returns
 * the bytes produced, or an error when the frame is corrupt, does not
 * reach its end within room, or is followed by more bytes. */
static ssize_t lz4_run(LZ4F_dctx *dctx, const unsigned char *src,
		       size_t src_len, unsigned char *dst, size_t room)
{
	/* dst is never moved or modified between calls, so LZ4F may keep
	 * its history there rather than copying it aside. */
	const LZ4F_decompressOptions_t opts = { .stableDst = 1 };
	size_t in_done = 0;
	size_t out_done = 0;

	for (;;) {
		size_t in = src_len - in_done;
		size_t out = room - out_done;
		size_t hint = LZ4F_decompress(dctx, dst + out_done, &out,
					      src + in_done, &in, &opts);

		if (LZ4F_isError(hint))
			return lz4_err(hint);
		in_done += in;
		out_done += out;
		if (hint == 0)
			break; /* the frame is complete and checked */
		/* Every pass consumes input or produces output, so this
		 * loop ends: without progress the input is truncated or the
		 * frame holds more than room. */
		if (in == 0 && out == 0)
			return RMQ_ECODEC;
	}
	if (in_done != src_len)
		return RMQ_ECODEC; /* trailing bytes after the frame */
	return (ssize_t)out_done;
}

static int lz4_size(const void *src, size_t src_len, uint64_t *declared)
{
	LZ4F_dctx *dctx;
	unsigned char spare;
	size_t hdr_len;
	ssize_t n;
	int err;

	if (LZ4F_isError(LZ4F_createDecompressionContext(&dctx, LZ4F_VERSION)))
		return -ENOMEM;
	err = lz4_open(dctx, src, src_len, &hdr_len, declared);
	if (err)
		goto out;
	if (*declared == 0) {
		/* No size field: acceptable only for an empty frame, which
		 * costs a few bytes to confirm. */
		n = lz4_run(dctx, (const unsigned char *)src + hdr_len,
			    src_len - hdr_len, &spare, 0);
		if (n < 0)
			err = (int)n;
	}
out:
	LZ4F_freeDecompressionContext(dctx);
	return err;
}

static ssize_t lz4_decompress(const void *src, size_t src_len, void *dst,
			      size_t room)
{
	LZ4F_dctx *dctx;
	uint64_t declared;
	size_t hdr_len;
	ssize_t n;

	if (LZ4F_isError(LZ4F_createDecompressionContext(&dctx, LZ4F_VERSION)))
		return -ENOMEM;
	n = lz4_open(dctx, src, src_len, &hdr_len, &declared);
	if (n < 0)
		goto out;
	if (declared != room) {
		n = RMQ_ECODEC; /* src changed since size() read it */
		goto out;
	}
	n = lz4_run(dctx, (const unsigned char *)src + hdr_len,
		    src_len - hdr_len, dst, room);
out:
	LZ4F_freeDecompressionContext(dctx);
	return n;
}

/* ---- zstd ------------------------------------------------------------- */

static int zstd_err(size_t code)
{
	if (ZSTD_getErrorCode(code) == ZSTD_error_memory_allocation)
		return -ENOMEM;
	return RMQ_ECODEC;
}

static size_t zstd_bound(size_t src_len)
{
	size_t n = ZSTD_compressBound(src_len);

	return ZSTD_isError(n) ? 0 : n;
}

static ssize_t zstd_compress(const void *src, size_t src_len, void *dst,
			     size_t dst_cap)
{
	ZSTD_CCtx *cctx = ZSTD_createCCtx();
	ssize_t ret;
	size_t n;

	if (!cctx)
		return -ENOMEM;
	/* ZSTD_compress2() knows src_len, so the frame declares its content
	 * size (also for 0 bytes); contentSizeFlag is on by default. */
	n = ZSTD_CCtx_setParameter(cctx, ZSTD_c_compressionLevel, ZSTD_LEVEL);
	if (!ZSTD_isError(n))
		n = ZSTD_CCtx_setParameter(cctx, ZSTD_c_checksumFlag, 1);
	if (!ZSTD_isError(n))
		n = ZSTD_compress2(cctx, dst, dst_cap, src, src_len);
	if (!ZSTD_isError(n))
		ret = (ssize_t)n;
	else if (ZSTD_getErrorCode(n) == ZSTD_error_dstSize_tooSmall)
		ret = RMQ_ETOOBIG;
	else
		ret = zstd_err(n);
	ZSTD_freeCCtx(cctx);
	return ret;
}

static int zstd_size(const void *src, size_t src_len, uint64_t *declared)
{
	const unsigned char *p = src;
	unsigned long long fcs;
	uint32_t magic;
	size_t frame_len;

	if (src_len < 4)
		return RMQ_ECODEC;
	magic = (uint32_t)p[0] | (uint32_t)p[1] << 8 | (uint32_t)p[2] << 16 |
		(uint32_t)p[3] << 24;
	if (magic != ZSTD_MAGICNUMBER)
		return RMQ_ECODEC; /* skippable, legacy or not zstd at all */
	fcs = ZSTD_getFrameContentSize(src, src_len);
	if (fcs == ZSTD_CONTENTSIZE_UNKNOWN || fcs == ZSTD_CONTENTSIZE_ERROR)
		return RMQ_ECODEC;
	/* Walks the block headers, O(blocks); catches truncation and
	 * trailing bytes before any output is written. */
	frame_len = ZSTD_findFrameCompressedSize(src, src_len);
	if (ZSTD_isError(frame_len) || frame_len != src_len)
		return RMQ_ECODEC;
	*declared = fcs;
	return 0;
}

static ssize_t zstd_decompress(const void *src, size_t src_len, void *dst,
			       size_t room)
{
	size_t n = ZSTD_decompress(dst, room, src, src_len);

	if (ZSTD_isError(n))
		return zstd_err(n);
	return (ssize_t)n;
}

/* ---- snappy (raw format) ---------------------------------------------- */

static size_t snappy_bound(size_t src_len)
{
	return snappy_max_compressed_length(src_len);
}

static ssize_t snappy_compress_(const void *src, size_t src_len, void *dst,
				size_t dst_cap)
{
	size_t n = dst_cap;

	/* snappy_compress() answers SNAPPY_BUFFER_TOO_SMALL below the bound
	 * without trying; say so without calling it. */
	if (dst_cap < snappy_max_compressed_length(src_len))
		return RMQ_ETOOBIG;
	if (snappy_compress(src, src_len, dst, &n) != SNAPPY_OK)
		return RMQ_ECODEC;
	return (ssize_t)n;
}

static int snappy_size(const void *src, size_t src_len, uint64_t *declared)
{
	size_t n;

	if (snappy_uncompressed_length(src, src_len, &n) != SNAPPY_OK)
		return RMQ_ECODEC;
	*declared = n;
	return 0;
}

static ssize_t snappy_decompress(const void *src, size_t src_len, void *dst,
				 size_t room)
{
	size_t n = room;

	if (snappy_uncompress(src, src_len, dst, &n) != SNAPPY_OK)
		return RMQ_ECODEC;
	return (ssize_t)n;
}

/* ---- dispatch --------------------------------------------------------- */

static const struct codec_ops codec_table[] = {
	[RMQ_CODEC_NONE] = {
		.name = "none",
		.src_max = CODEC_LEN_MAX,
		.bound = none_bound,
		.compress = none_compress,
		.size = none_size,
		.decompress = none_decompress,
	},
	[RMQ_CODEC_LZ4] = {
		.name = "lz4",
		.src_max = CODEC_MIN(CODEC_LEN_MAX / 2, (uint64_t)1 << 47),
		.bound = lz4_bound,
		.compress = lz4_compress,
		.size = lz4_size,
		.decompress = lz4_decompress,
	},
	[RMQ_CODEC_ZSTD] = {
		.name = "zstd",
		.src_max = CODEC_LEN_MAX / 2,
		.bound = zstd_bound,
		.compress = zstd_compress,
		.size = zstd_size,
		.decompress = zstd_decompress,
	},
	[RMQ_CODEC_SNAPPY] = {
		.name = "snappy",
		.src_max = CODEC_MIN(CODEC_LEN_MAX / 2, UINT32_MAX),
		.bound = snappy_bound,
		.compress = snappy_compress_,
		.size = snappy_size,
		.decompress = snappy_decompress,
	},
};

_Static_assert(sizeof(codec_table) / sizeof(codec_table[0]) ==
		       RMQ_CODEC_COUNT,
	       "one codec_table row per codec id");

static const struct codec_ops *codec_find(int codec)
{
	if (codec < 0 || codec >= RMQ_CODEC_COUNT)
		return NULL;
	return &codec_table[codec];
}

const char *rmq_codec_name(int codec)
{
	const struct codec_ops *ops = codec_find(codec);

	return ops ? ops->name : NULL;
}

int rmq_codec_parse(const char *name)
{
	if (!name)
		return RMQ_EUNSUPPORTED;
	for (int i = 0; i < RMQ_CODEC_COUNT; i++) {
		if (strcmp(name, codec_table[i].name) == 0)
			return i;
	}
	return RMQ_EUNSUPPORTED;
}

size_t rmq_codec_bound(int codec, size_t src_len)
{
	const struct codec_ops *ops = codec_find(codec);

	if (!ops || src_len > ops->src_max)
		return 0;
	return ops->bound(src_len);
}

/*
 * A NULL buffer is accepted only with a zero length; the libraries then
 * get a valid pointer they will not touch, since some of them reject or
 * assert on NULL even for empty buffers.  A NULL with a length is a
 * caller bug, reported as -EINVAL rather than a crash.
 */
static int codec_buffers(const void **src, size_t src_len, void **dst,
			 size_t dst_cap, void *spare)
{
	if (!*src && src_len > 0)
		return -EINVAL;
	if (!*dst && dst_cap > 0)
		return -EINVAL;
	if (!*src)
		*src = spare;
	if (!*dst)
		*dst = spare;
	return 0;
}

ssize_t rmq_codec_compress(int codec, const void *src, size_t src_len,
			   void *dst, size_t dst_cap)
{
	const struct codec_ops *ops = codec_find(codec);
	unsigned char spare;
	int err;

	if (!ops)
		return RMQ_EUNSUPPORTED;
	err = codec_buffers(&src, src_len, &dst, dst_cap, &spare);
	if (err)
		return err;
	if (src_len > ops->src_max)
		return RMQ_ETOOBIG;
	/* The result must fit a ssize_t; no real buffer is larger anyway. */
	dst_cap = (size_t)CODEC_MIN((uint64_t)dst_cap, CODEC_LEN_MAX);
	return ops->compress(src, src_len, dst, dst_cap);
}

int rmq_codec_decompressed_size(int codec, const void *src, size_t src_len,
				size_t *out_len)
{
	const struct codec_ops *ops = codec_find(codec);
	void *dst = NULL;
	unsigned char spare;
	uint64_t declared;
	int err;

	if (!ops)
		return RMQ_EUNSUPPORTED;
	if (!out_len)
		return -EINVAL;
	err = codec_buffers(&src, src_len, &dst, 0, &spare);
	if (err)
		return err;
	err = ops->size(src, src_len, &declared);
	if (err)
		return err;
	if (declared > SIZE_MAX)
		return RMQ_ECODEC; /* only possible where size_t is 32-bit */
	*out_len = (size_t)declared;
	return 0;
}

ssize_t rmq_codec_decompress(int codec, const void *src, size_t src_len,
			     void *dst, size_t dst_cap)
{
	const struct codec_ops *ops = codec_find(codec);
	unsigned char spare;
	uint64_t declared;
	ssize_t n;
	int err;

	if (!ops)
		return RMQ_EUNSUPPORTED;
	err = codec_buffers(&src, src_len, &dst, dst_cap, &spare);
	if (err)
		return err;
	err = ops->size(src, src_len, &declared);
	if (err)
		return err;
	if (declared > dst_cap || declared > CODEC_LEN_MAX)
		return RMQ_ETOOBIG;
	n = ops->decompress(src, src_len, dst, (size_t)declared);
	if (n < 0)
		return n;
	if ((uint64_t)n != declared)
		return RMQ_ECODEC;
	return n;
}
