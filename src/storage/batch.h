/* SPDX-License-Identifier: Apache-2.0 */
/*
 * batch.h - one stored record batch: the unit of a segment.
 *
 * A segment is a sequence of ready-to-send protobuf.  Each entry is exactly
 * one encoded `batches` element of rustmq.client.FetchPartitionResponse:
 *
 *   OFFSET   SIZE    MEANING
 *   0        1       0x32 = key of field 6 (batches), wire type LEN
 *   1        1..5    varint L: length of the RecordBatch that follows
 *   1+v      L       RecordBatch encoding (rustmq.common.RecordBatch):
 *                      header fields, in field-number order, zero values
 *                      omitted: 1 magic(=2) 2 compression_type 3 base_offset
 *                      4 last_offset_delta 5 first_timestamp 6 max_timestamp
 *                      8 crc32 10 record_count 11 producer_id
 *                      12 producer_epoch 13 base_sequence
 *                      14 partition_leader_epoch 15 log_append_time_ms
 *                      16 is_transactional 17 is_control
 *                    then the records payload, last and contiguous:
 *                      uncompressed: the producer's field-7 elements
 *                        (0x3A, varint len, Record), copied verbatim
 *                      compressed:   one field 9 (0x4A, varint len, bytes)
 *
 * A zero byte where an entry's key should be marks the end of the data:
 * segments are preallocated with zeros and protobuf keys are never 0.
 *
 * The CRC-32C in field 8 covers the "records bytes": for an uncompressed
 * batch every field-7 element including its key and length; for a
 * compressed one the value bytes of field 9.  It is checked when a producer
 * sends the batch, written, and checked again on recovery and on cold reads.
 */
#ifndef RMQ_STORAGE_BATCH_H
#define RMQ_STORAGE_BATCH_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#define RMQ_BATCH_KEY 0x32u          /* field 6, LEN */
#define RMQ_BATCH_RECORD_KEY 0x3Au   /* RecordBatch field 7, LEN */
#define RMQ_BATCH_COMPRESSED_KEY 0x4Au /* RecordBatch field 9, LEN */
#define RMQ_BATCH_MAGIC 2u
/* Largest header (every field at its widest) plus the entry and field-9
 * prefixes; the encoder's buffers have this size. */
#define RMQ_BATCH_PREFIX_MAX 192u
/* Largest RecordBatch the log accepts: bounded well below 2^31 so that
 * positions and lengths fit 32-bit index fields. */
#define RMQ_BATCH_BYTES_MAX (256u << 20)

/* Header of a batch: what the producer supplies plus what the log assigns. */
struct rmq_batch_hdr {
	uint32_t compression;      /* CompressionType of the records payload */
	uint32_t record_count;     /* >= 1 */
	uint32_t crc32;            /* of the records bytes; 0 = compute at append */
	int64_t producer_id;       /* -1 = none */
	int32_t producer_epoch;    /* -1 = none */
	int32_t base_sequence;     /* -1 = none */
	uint32_t leader_epoch;
	int64_t first_timestamp_ms; /* -1 = unset (the log uses append time) */
	int64_t max_timestamp_ms;   /* -1 = unset */
	bool is_transactional;
	bool is_control;
	/* Assigned by the log at append: */
	uint64_t base_offset;
	uint64_t log_append_time_ms;
};

/* Sets the "none" values (-1) of a header; callers then fill what they have. */
void rmq_batch_hdr_init(struct rmq_batch_hdr *h);

/* A parsed entry.  Positions are relative to the start of the entry. */
struct rmq_batch_view {
	struct rmq_batch_hdr hdr;
	uint32_t entry_len;    /* key + varint + L */
	uint32_t records_pos;  /* first byte of the records bytes (CRC input) */
	uint32_t records_len;
};

static inline uint64_t rmq_batch_last_offset(const struct rmq_batch_hdr *h)
{
	return h->base_offset + h->record_count - 1;
}

/*
 * Encodes the entry prefix (key, length, header fields, and for compressed
 * batches field 9's key and length) of a batch whose records bytes are
 * records_len long.  buf has RMQ_BATCH_PREFIX_MAX bytes.  The entry is the
 * prefix followed by the records bytes.
 * Returns the prefix length, or RMQ_ETOOBIG when the batch would exceed
 * RMQ_BATCH_BYTES_MAX.
 */
int rmq_batch_encode_prefix(const struct rmq_batch_hdr *h, size_t records_len, uint8_t *buf);

/*
 * Parses the entry at p, of which avail bytes are readable.
 * Returns the entry length (> 0) with *v filled, or:
 *   0             p[0] is zero: the end of the data
 *   RMQ_ETORN     the entry's length runs past avail (a torn tail)
 *   RMQ_ECORRUPT  bad key, malformed field, missing or misplaced records,
 *                 record_count 0, or a length above RMQ_BATCH_BYTES_MAX
 * Fields absent from the encoding come back as 0, as protobuf decodes
 * them (the encoder omits zeros), so every header round-trips exactly.
 * Does not check the CRC (see rmq_batch_check_crc).
 */
int rmq_batch_parse(const uint8_t *p, size_t avail, struct rmq_batch_view *v);

/* The same for a RecordBatch that is an element of another message's
 * repeated field, whose key byte is `key` (ReplicateDataRequest.batches:
 * a leader's stored batch sent to its follower). */
int rmq_batch_parse_elem(const uint8_t *p, size_t avail, uint8_t key, struct rmq_batch_view *v);

/*
 * Like rmq_batch_parse(), but stops at the first records element and takes
 * the rest of the body as the records bytes, without walking them: O(header)
 * instead of O(records).  For reads and lookups of entries that recovery or
 * the append path already validated.
 */
int rmq_batch_parse_header(const uint8_t *p, size_t avail, struct rmq_batch_view *v);

/* Checks the CRC-32C of a parsed entry.  Returns 0 or RMQ_ECRC. */
int rmq_batch_check_crc(const uint8_t *entry, const struct rmq_batch_view *v);

#endif /* RMQ_STORAGE_BATCH_H */
