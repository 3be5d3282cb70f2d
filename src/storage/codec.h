/* SPDX-License-Identifier: Apache-2.0 */
/*
 * codec.h - batch-level compression of a RecordBatch's records payload.
 *
 * A compressed batch stores, in RecordBatch.compressed_records, the
 * compression of the concatenated encoded `records` elements (field 7,
 * key byte 0x3A, varint length, Record bytes) exactly as an uncompressed
 * batch would carry them.  Decompressing therefore yields bytes that parse
 * as a RecordBatch holding only its records.  The batch CRC32C covers the
 * stored (compressed) bytes, so the broker checks integrity without
 * decompressing.
 *
 * Every format is self-describing, so the decompressed size is known
 * before any output is written and a decompression bomb is refused:
 *
 *   codec    format                       size known from
 *   lz4      LZ4 frame (LZ4F), content     frame header content size
 *            size and checksum enabled
 *   zstd     one zstd frame                ZSTD_getFrameContentSize
 *   snappy   raw snappy (snappy-c.h)        varint preamble
 *
 * The codec ids equal rustmq.common.CompressionType.  The functions are
 * stateless and thread-safe; they allocate nothing but the codecs' own
 * short-lived contexts.
 */
#ifndef RMQ_STORAGE_CODEC_H
#define RMQ_STORAGE_CODEC_H

#include <stddef.h>
#include <sys/types.h>

enum rmq_codec {
	RMQ_CODEC_NONE = 0,
	RMQ_CODEC_LZ4 = 1,
	RMQ_CODEC_ZSTD = 2,
	RMQ_CODEC_SNAPPY = 3,
};

#define RMQ_CODEC_COUNT 4

/* "none", "lz4", "zstd", "snappy"; NULL for an unknown id. */
const char *rmq_codec_name(int codec);

/* Parses a codec name as above.  Returns the id, or RMQ_EUNSUPPORTED. */
int rmq_codec_parse(const char *name);

/* Upper bound of the compressed size of src_len bytes; 0 for an unknown
 * codec.  For RMQ_CODEC_NONE it is src_len. */
size_t rmq_codec_bound(int codec, size_t src_len);

/*
 * Compresses src into dst (capacity dst_cap, at least rmq_codec_bound()
 * to be sure to fit).  RMQ_CODEC_NONE copies.
 * Returns the compressed length, or:
 *   RMQ_EUNSUPPORTED  unknown codec id
 *   RMQ_ETOOBIG       dst_cap below rmq_codec_bound() (lz4, snappy check
 *                     up front), output does not fit, or src_len above the
 *                     codec's input limit (snappy: 4 GiB - 1)
 *   RMQ_ECODEC        the codec library failed
 *   -ENOMEM           the codec could not allocate its context
 *   -EINVAL           NULL src or dst with a nonzero length
 */
ssize_t rmq_codec_compress(int codec, const void *src, size_t src_len,
			   void *dst, size_t dst_cap);

/*
 * Reads the decompressed size that src declares into *out_len.
 * Returns 0, or:
 *   RMQ_EUNSUPPORTED  unknown codec id
 *   RMQ_ECODEC        src is not a valid frame, or declares no size
 */
int rmq_codec_decompressed_size(int codec, const void *src, size_t src_len,
				size_t *out_len);

/*
 * Decompresses src into dst.  The declared size must fit dst_cap (callers
 * bound it by their message-size limit before allocating dst) and the
 * output must have exactly that size.
 * Returns the decompressed length, or:
 *   RMQ_EUNSUPPORTED  unknown codec id
 *   RMQ_ETOOBIG       the declared size exceeds dst_cap
 *   RMQ_ECODEC        src is corrupt, truncated or has trailing bytes
 *   -ENOMEM           the codec could not allocate its context
 *   -EINVAL           NULL src or dst with a nonzero length
 */
ssize_t rmq_codec_decompress(int codec, const void *src, size_t src_len,
			     void *dst, size_t dst_cap);

#endif /* RMQ_STORAGE_CODEC_H */
