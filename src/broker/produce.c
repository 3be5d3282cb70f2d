/* SPDX-License-Identifier: Apache-2.0 */
/*
 * produce.c - ProducerService: Produce, ProduceBatch, ProduceStream.
 *
 * One struct rmq_produce per partition append.  Its life:
 *
 *   origin shard (the connection's)          owner shard (the partition's)
 *   parse the request in place (pbwire)
 *   copy it when it must outlive the
 *   callback (forwarded, or queued)  ─post─► exec: rmq_log_append, records
 *                                              copied verbatim into the log's
 *                                              write buffer (or queued in the
 *                                              partition's backlog while the
 *                                              buffer is full)
 *   reply: ProduceResponse        ◄─post─── acks=NONE: at once; else when
 *   (in request order for streams)            the log acknowledges (fsync
 *                                              policy satisfied)
 *
 * Records are never decoded into structs: a Produce request's `records`
 * (field 4) elements are re-keyed as RecordBatch field 7 by iovecs (a
 * 1..6-byte key+length piece, then the record's own bytes); a prebuilt
 * RecordBatch's field-7 runs are passed as they are.  Each record's fields
 * are walked once, to check they parse and to find its timestamp.
 *
 * With acks=NONE the answer and the log's callback finish at different
 * times on different shards, so the struct is freed by whichever comes
 * last (an atomic count of two).
 */
#include "broker/auth.h"
#include "broker/broker.h"
#include "broker/lead.h"

#include "client/producer.pb-c.h"
#include "core/assert.h"
#include "core/error.h"
#include "core/log.h"
#include "core/pbwire.h"
#include "core/util.h"
#include "broker/cluster.h"
#include "broker/dedup.h"
#include "broker/methods.h"
#include "broker/request.h"
#include "storage/codec.h"

#include <errno.h>
#include <inttypes.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static bool is_duplicate(int code)
{
	return code == EC_DUPLICATE_SEQUENCE || code == EC_DUPLICATE_REQUEST;
}

enum { ACK_NONE = 0, ACK_LEADER, ACK_MAJORITY, ACK_ALL, ACK_CUSTOM };

/* Pieces one append takes from the stack; larger requests are gathered. */
#define RMQ_PRODUCE_IOV_MAX 1024

struct produce_group;
struct produce_stream;

struct rmq_produce {
	struct rmq_xmsg msg;
	struct rmq_append app;
	_Atomic int refs;
	struct rmq_call *call;
	struct produce_group *grp;     /* ProduceBatch: the parent */
	struct produce_stream *stream; /* ProduceStream: the stream */
	struct rmq_produce *next;      /* origin: stream order */
	struct rmq_produce *bnext;     /* owner: the partition's backlog.  Not `next`: a
					* stream's request is in its stream's order list
					* (origin) and a backlog (owner) at the same time */
	struct rmq_produce *wnext;     /* owner: waiting for the followers (acks_head) */
	unsigned origin, owner;
	int index;                     /* position in a ProduceBatch */
	uint64_t start_ns;             /* origin: when the request arrived */
	uint32_t key_off, key_len;     /* idempotency_key in req (len 0 = none) */
	struct rmq_dedup_ticket seq_ticket, key_ticket; /* owner: pending dedup entries */
	struct rmq_partition *part;    /* owner: the partition appended to */

	/* The request part this append needs. */
	char topic[RMQ_TOPIC_NAME_MAX + 1];
	uint32_t partition;
	int acks;
	uint32_t custom_acks;
	uint64_t correlation_id;
	uint8_t *own;                  /* owned copy of the request, or NULL */
	const uint8_t *req;            /* the request bytes the ranges point into */
	size_t req_len;
	/* Records: (offset, length) ranges into req, plus per-record keys. */
	uint32_t nranges, range_cap;
	uint32_t *range_off, *range_len;
	uint8_t *keys;                 /* 6 bytes per re-keyed record */
	bool rekey;                    /* ranges are Record bodies needing keys */
	uint8_t *payload;              /* broker-compressed payload, or NULL */
	size_t payload_len;

	/* Result. */
	int code;
	char err[200];
	/* NOT_LEADER: the leader this node knew of then (0: none). */
	uint32_t leader, leader_epoch;
	uint64_t base_offset, log_start;
	uint64_t append_ms;
	int64_t first_ts_ms;
	uint32_t count;
	bool early;      /* owner only: answered before the log's callback (acks=NONE) */
	bool ready;      /* origin only: the result is in (streams, batches) */
	bool timed_out;  /* origin only: answered TIMEOUT; the result is dropped when in */
	uint64_t timeout_ns;           /* the request's timeout; 0 = the node's */
	struct rmq_timer timer;        /* origin: Produce, and each ProduceStream message */
	bool fatal;      /* origin only: a malformed stream message; ends the stream */
	bool log_append_time;
};

struct produce_group {
	struct rmq_call *call;
	uint64_t correlation_id;
	int n, pending;
	struct rmq_produce **parts;
	struct rmq_timer timer;        /* the request's timeout */
	bool timed_out;                /* answered; parts still out are dropped */
};

struct produce_stream {
	struct rmq_call *call;
	struct rmq_produce *head, *tail; /* requests in arrival order */
	bool half_closed;
	bool cancelled;
};

/* ---- helpers ---------------------------------------------------------------- */

static struct rmq_produce *pr_new(struct rmq_bshard *bs, struct rmq_call *c)
{
	struct rmq_produce *pr = calloc(1, sizeof(*pr));
	if (!pr)
		return NULL;
	pr->origin = bs->id;
	pr->start_ns = rmq_now_ns();
	pr->call = c;
	rmq_call_ref(c);
	atomic_init(&pr->refs, 1);
	bs->inflight_produce++;
	return pr;
}

static void pr_free(struct rmq_produce *pr)
{
	free(pr->own);
	free(pr->range_off);
	free(pr->keys);
	free(pr->payload);
	free(pr);
}

/* Drops one of the (at most two) holders; frees with the last. */
static void pr_put(struct rmq_produce *pr)
{
	if (atomic_fetch_sub_explicit(&pr->refs, 1, memory_order_acq_rel) == 1)
		pr_free(pr);
}

__attribute__((format(printf, 3, 4))) static void pr_fail(struct rmq_produce *pr, int code,
							  const char *fmt, ...)
{
	va_list ap;
	pr->code = code;
	va_start(ap, fmt);
	vsnprintf(pr->err, sizeof(pr->err), fmt, ap);
	va_end(ap);
}

static int storage_code(int err)
{
	switch (err) {
	case RMQ_ECRC: return EC_CORRUPT_MESSAGE;
	case RMQ_ETOOBIG: return EC_MESSAGE_TOO_LARGE;
	case RMQ_EPROTO: return EC_INVALID_RECORD;
	case RMQ_EFULL: return EC_RESOURCE_EXHAUSTED;
	default: return EC_STORAGE_ERROR;
	}
}

/* ---- parsing ------------------------------------------------------------------ */

static int add_range(struct rmq_produce *pr, size_t off, size_t len)
{
	if (pr->nranges == pr->range_cap) {
		uint32_t n = pr->range_cap ? pr->range_cap * 2 : 16;
		uint32_t *o = realloc(pr->range_off, 2 * (size_t)n * sizeof(uint32_t));
		if (!o)
			return -ENOMEM;
		/* Lengths live in the second half: move them up. */
		memmove(o + n, o + pr->range_cap, (size_t)pr->nranges * sizeof(uint32_t));
		pr->range_off = o;
		pr->range_len = o + n;
		pr->range_cap = n;
	}
	pr->range_off[pr->nranges] = (uint32_t)off;
	pr->range_len[pr->nranges] = (uint32_t)len;
	pr->nranges++;
	return 0;
}

/* Walks one Record's fields: checks they parse, returns its timestamp in
 * ms (or -1 when unset). */
static int scan_record(const uint8_t *p, size_t len, int64_t *ts_ms)
{
	const uint8_t *end = p + len;
	*ts_ms = -1;
	while (p < end) {
		uint32_t field, wire;
		uint64_t num;
		const uint8_t *val;
		size_t vlen;
		size_t n = rmq_pb_next(p, end, &field, &wire, &num, &val, &vlen);
		if (n == 0)
			return -1;
		if (field == 4 && wire == RMQ_PB_LEN) {
			int64_t t;
			if (rmq_pb_timestamp_ms(val, vlen, &t) < 0)
				return -1;
			if (t >= 0)
				*ts_ms = t;
		}
		p += n;
	}
	return 0;
}

/* Counts the Records of uncompressed records bytes (field-7 elements,
 * batch.h), each checked to parse.  Returns the count, or -1. */
static int64_t count_records(const uint8_t *p, size_t len)
{
	const uint8_t *end = p + len;
	int64_t n = 0;
	while (p < end) {
		uint32_t field, wire;
		uint64_t num = 0;
		const uint8_t *val = NULL;
		size_t vlen = 0;
		int64_t ts;
		size_t k = rmq_pb_next(p, end, &field, &wire, &num, &val, &vlen);
		if (k == 0 || field != 7 || wire != RMQ_PB_LEN || scan_record(val, vlen, &ts) < 0)
			return -1;
		n++;
		p += k;
	}
	return n;
}

static void note_ts(struct rmq_produce *pr, int64_t ts)
{
	if (ts < 0)
		return;
	if (pr->app.hdr.first_timestamp_ms < 0)
		pr->app.hdr.first_timestamp_ms = ts;
	if (ts > pr->app.hdr.max_timestamp_ms)
		pr->app.hdr.max_timestamp_ms = ts;
}

static int parse_topic_partition(struct rmq_produce *pr, const uint8_t *p, size_t len)
{
	const uint8_t *end = p + len;
	while (p < end) {
		uint32_t field, wire;
		uint64_t num = 0;
		const uint8_t *val = NULL;
		size_t vlen = 0;
		size_t n = rmq_pb_next(p, end, &field, &wire, &num, &val, &vlen);
		if (n == 0)
			return -1;
		if (field == 1 && wire == RMQ_PB_LEN) {
			if (vlen > RMQ_TOPIC_NAME_MAX)
				return -1;
			memcpy(pr->topic, val, vlen);
			pr->topic[vlen] = '\0';
		} else if (field == 2 && wire == RMQ_PB_VARINT) {
			pr->partition = (uint32_t)num;
		}
		p += n;
	}
	return 0;
}

/* proto3 omits zero values: for an idempotent producer (id > 0) an absent
 * epoch or base sequence is 0, not the "none" (-1) the header starts with. */
static void idempotent_defaults(struct rmq_batch_hdr *h)
{
	if (h->producer_id <= 0)
		return;
	if (h->producer_epoch < 0)
		h->producer_epoch = 0;
	if (h->base_sequence < 0)
		h->base_sequence = 0;
}

/* Parses an encoded RecordBatch at [p, p+len) (offsets relative to req):
 * header fields into pr->app.hdr, field-7 runs or field 9 into ranges. */
static int parse_batch(struct rmq_produce *pr, const uint8_t *req, const uint8_t *p, size_t len)
{
	const uint8_t *end = p + len;
	struct rmq_batch_hdr *h = &pr->app.hdr;
	uint32_t records = 0;
	bool compressed_seen = false;
	const uint8_t *run = NULL, *run_end = NULL;

	while (p < end) {
		uint32_t field, wire;
		uint64_t num = 0;
		const uint8_t *val = NULL;
		size_t vlen = 0;
		size_t n = rmq_pb_next(p, end, &field, &wire, &num, &val, &vlen);
		if (n == 0) {
			pr_fail(pr, EC_INVALID_REQUEST, "batch: malformed protobuf");
			return -1;
		}
		if (field == 7 && wire == RMQ_PB_LEN) {
			int64_t ts;
			if (scan_record(val, vlen, &ts) < 0) {
				pr_fail(pr, EC_INVALID_RECORD, "batch: record %u does not parse", records);
				return -1;
			}
			note_ts(pr, ts);
			records++;
			if (run && run_end == p) {
				run_end = p + n;
			} else {
				if (run && add_range(pr, (size_t)(run - req), (size_t)(run_end - run)) < 0)
					goto nomem;
				run = p;
				run_end = p + n;
			}
		} else {
			switch (field) {
			case 2: h->compression = (uint32_t)num; break;
			case 8: h->crc32 = (uint32_t)num; break;
			case 9:
				if (wire != RMQ_PB_LEN || compressed_seen)
					goto bad; /* one compressed payload, checked whole */
				if (add_range(pr, (size_t)(val - req), vlen) < 0)
					goto nomem;
				compressed_seen = true;
				break;
			case 10: h->record_count = (uint32_t)num; break;
			case 11: h->producer_id = (int64_t)num; break;
			case 12: h->producer_epoch = (int32_t)num; break;
			case 13: h->base_sequence = (int32_t)num; break;
			case 16: h->is_transactional = num != 0; break;
			case 17:
				if (num) {
					pr_fail(pr, EC_INVALID_RECORD, "control batches are written by the broker, not producers");
					return -1;
				}
				break;
			case 5:
			case 6: {
				/* The producer's batch timestamps count too. */
				int64_t ts;
				if (wire == RMQ_PB_LEN && rmq_pb_timestamp_ms(val, vlen, &ts) == 0)
					note_ts(pr, ts);
				break;
			}
			default: break; /* magic, offsets, epochs: the broker's to set */
			}
		}
		p += n;
	}
	if (run && add_range(pr, (size_t)(run - req), (size_t)(run_end - run)) < 0)
		goto nomem;
	idempotent_defaults(h);
	if (h->compression >= RMQ_CODEC_COUNT) {
		pr_fail(pr, EC_UNSUPPORTED_COMPRESSION_TYPE, "unknown compression type %u", h->compression);
		return -1;
	}
	if (compressed_seen != (h->compression != 0) || (compressed_seen && records > 0)) {
		pr_fail(pr, EC_INVALID_REQUEST,
			"batch: compressed_records must be set exactly when compression_type is not NONE, and records empty then");
		return -1;
	}
	if (!compressed_seen) {
		if (h->record_count != 0 && h->record_count != records) {
			pr_fail(pr, EC_INVALID_REQUEST, "batch: record_count %u but %u records", h->record_count, records);
			return -1;
		}
		h->record_count = records;
	}
	if (h->record_count == 0) {
		pr_fail(pr, EC_INVALID_REQUEST, compressed_seen ? "batch: record_count is required for a compressed batch"
							       : "batch has no records");
		return -1;
	}
	return 0;
bad:
	pr_fail(pr, EC_INVALID_REQUEST, "batch: malformed field");
	return -1;
nomem:
	pr_fail(pr, EC_RESOURCE_EXHAUSTED, "out of memory");
	return -1;
}

/* A google.protobuf.Duration (its fields are Timestamp's), in ns; 0 when
 * malformed or not positive (the node's default then applies). */
static uint64_t duration_ns(const uint8_t *p, size_t len)
{
	int64_t ms;
	if (rmq_pb_timestamp_ms(p, len, &ms) < 0 || ms <= 0)
		return 0;
	return (uint64_t)ms * 1000000ULL;
}

/* Parses a ProduceRequest in place into pr. */
static int parse_produce(struct rmq_produce *pr, const uint8_t *req, size_t len)
{
	const uint8_t *p = req, *end = req + len;
	uint32_t records = 0;
	bool have_tp = false, have_batch = false;

	rmq_batch_hdr_init(&pr->app.hdr);
	pr->acks = ACK_LEADER;
	pr->req = req;
	pr->req_len = len;
	while (p < end) {
		uint32_t field, wire;
		uint64_t num = 0;
		const uint8_t *val = NULL;
		size_t vlen = 0;
		size_t n = rmq_pb_next(p, end, &field, &wire, &num, &val, &vlen);
		if (n == 0) {
			pr_fail(pr, EC_INVALID_REQUEST, "ProduceRequest: malformed protobuf at byte %zu", (size_t)(p - req));
			return -1;
		}
		switch (field) {
		case 3:
			if (wire != RMQ_PB_LEN || parse_topic_partition(pr, val, vlen) < 0) {
				pr_fail(pr, EC_INVALID_REQUEST, "ProduceRequest: bad topic_partition");
				return -1;
			}
			have_tp = true;
			break;
		case 4: {
			int64_t ts;
			if (wire != RMQ_PB_LEN || scan_record(val, vlen, &ts) < 0) {
				pr_fail(pr, EC_INVALID_RECORD, "ProduceRequest: record %u does not parse", records);
				return -1;
			}
			note_ts(pr, ts);
			if (add_range(pr, (size_t)(val - req), vlen) < 0) {
				pr_fail(pr, EC_RESOURCE_EXHAUSTED, "out of memory");
				return -1;
			}
			records++;
			pr->rekey = true;
			break;
		}
		case 5: pr->acks = (int)num; break;
		case 6: pr->custom_acks = (uint32_t)num; break;
		case 9: pr->app.hdr.producer_id = (int64_t)num; break;
		case 10: pr->app.hdr.producer_epoch = (int32_t)num; break;
		case 11: pr->app.hdr.base_sequence = (int32_t)num; break;
		case 8:
			if (wire == RMQ_PB_LEN && vlen > 0) {
				pr->key_off = (uint32_t)(val - req);
				pr->key_len = (uint32_t)vlen;
			}
			break;
		case 7:
			if (wire == RMQ_PB_LEN)
				pr->timeout_ns = duration_ns(val, vlen);
			break;
		case 12: pr->correlation_id = num; break;
		case 13: pr->app.hdr.compression = (uint32_t)num; break;
		case 15:
			if (wire != RMQ_PB_LEN)
				break;
			if (have_batch) {
				/* Protobuf would merge the two; a producer that
				 * means that is broken, and the merge is not what
				 * either batch says. */
				pr_fail(pr, EC_INVALID_REQUEST, "ProduceRequest: batch given twice");
				return -1;
			}
			have_batch = true;
			if (parse_batch(pr, req, val, vlen) < 0)
				return -1;
			break;
		default: break; /* version, client_id, keys: not needed here */
		}
		p += n;
	}
	if (!have_tp || pr->topic[0] == '\0') {
		pr_fail(pr, EC_INVALID_REQUEST, "ProduceRequest: topic_partition is required");
		return -1;
	}
	idempotent_defaults(&pr->app.hdr);
	if (have_batch && records > 0) {
		pr_fail(pr, EC_INVALID_REQUEST, "ProduceRequest: set either records or batch, not both");
		return -1;
	}
	if (!have_batch) {
		if (records == 0) {
			pr_fail(pr, EC_INVALID_REQUEST, "ProduceRequest: no records");
			return -1;
		}
		/* `compression` asks the broker to compress what it builds. */
		if (pr->app.hdr.compression >= RMQ_CODEC_COUNT) {
			pr_fail(pr, EC_UNSUPPORTED_COMPRESSION_TYPE, "unknown compression %u", pr->app.hdr.compression);
			return -1;
		}
		pr->app.hdr.record_count = records;
	}
	return 0;
}

/* Makes the request bytes pr needs its own (before it is queued or
 * forwarded): the span its records and idempotency key lie in, not the
 * whole request, so the parts of a ProduceBatch copy only their own
 * bytes.  Ranges are offsets: they are rebased onto the copy. */
static int pr_own(struct rmq_produce *pr)
{
	if (pr->own)
		return 0;
	size_t lo = pr->req_len, hi = 0;
	for (uint32_t i = 0; i < pr->nranges; i++) {
		lo = pr->range_off[i] < lo ? pr->range_off[i] : lo;
		hi = pr->range_off[i] + (size_t)pr->range_len[i] > hi ? pr->range_off[i] + (size_t)pr->range_len[i] : hi;
	}
	if (pr->key_len > 0) {
		lo = pr->key_off < lo ? pr->key_off : lo;
		hi = pr->key_off + (size_t)pr->key_len > hi ? pr->key_off + (size_t)pr->key_len : hi;
	}
	if (lo > hi)
		lo = hi = 0; /* nothing referenced */
	pr->own = malloc(hi > lo ? hi - lo : 1);
	if (!pr->own)
		return -ENOMEM;
	/* Request memory until the append is answered (on the call's shard;
	 * a part copied on its owner was charged as the request it came in). */
	if (pr->origin == rmq_shard_id(rmq_shard_current()))
		rmq_call_charge(pr->call, hi - lo + sizeof(*pr));
	memcpy(pr->own, pr->req + lo, hi - lo);
	for (uint32_t i = 0; i < pr->nranges; i++)
		pr->range_off[i] -= (uint32_t)lo;
	if (pr->key_len > 0)
		pr->key_off -= (uint32_t)lo;
	pr->req = pr->own;
	pr->req_len = hi - lo;
	return 0;
}

/* ---- the owner's side ---------------------------------------------------------- */

static void reply_to_origin(struct rmq_produce *pr);

/* Builds the iovecs of the records bytes.  Returns the count. */
static int build_iov(struct rmq_produce *pr, struct iovec *iov, int max)
{
	if (pr->payload) {
		iov[0].iov_base = pr->payload;
		iov[0].iov_len = pr->payload_len;
		return 1;
	}
	int n = 0;
	for (uint32_t i = 0; i < pr->nranges && n + 2 <= max; i++) {
		if (pr->rekey) {
			uint8_t *k = pr->keys + 6 * (size_t)i;
			size_t kl = rmq_pb_put_len(k, 7, pr->range_len[i]);
			iov[n].iov_base = k;
			iov[n].iov_len = kl;
			n++;
		}
		iov[n].iov_base = (void *)(pr->req + pr->range_off[i]);
		iov[n].iov_len = pr->range_len[i];
		n++;
	}
	return n;
}

static size_t records_bytes(const struct rmq_produce *pr)
{
	size_t n = 0;
	for (uint32_t i = 0; i < pr->nranges; i++)
		n += pr->range_len[i] + (pr->rekey ? 1 + rmq_pb_varint_len(pr->range_len[i]) : 0);
	return n;
}

/* The topic forces a codec: the broker compresses (or recompresses) the
 * records payload into pr->payload. */
static int convert_codec(struct rmq_produce *pr, int target, uint64_t max_bytes, bool force)
{
	struct rmq_batch_hdr *h = &pr->app.hdr;
	size_t raw_len = 0;
	uint8_t *raw = NULL;
	int rc = 0;

	if (h->compression == (uint32_t)target && !pr->rekey && !force)
		return 0;
	if (h->compression != 0 && !pr->rekey) {
		/* Prebuilt compressed batch in another codec: decompress. */
		size_t want;
		const uint8_t *src = pr->req + pr->range_off[0];
		if (rmq_codec_decompressed_size((int)h->compression, src, pr->range_len[0], &want) < 0 ||
		    want > max_bytes) {
			pr_fail(pr, EC_CORRUPT_MESSAGE, "compressed records do not decompress within max.message.bytes");
			return -1;
		}
		raw = malloc(want ? want : 1);
		if (!raw)
			goto nomem;
		ssize_t k = rmq_codec_decompress((int)h->compression, src, pr->range_len[0], raw, want);
		if (k < 0) {
			free(raw);
			pr_fail(pr, EC_CORRUPT_MESSAGE, "compressed records: %s", rmq_strerror((int)k));
			return -1;
		}
		raw_len = (size_t)k;
		/* What the producer compressed is stored open (or in the
		 * topic's codec) under its record_count: they must agree, or
		 * the batch's offsets would not match its records. */
		int64_t cnt = count_records(raw, raw_len);
		if (cnt != (int64_t)h->record_count) {
			free(raw);
			if (cnt < 0)
				pr_fail(pr, EC_CORRUPT_MESSAGE, "compressed records do not decompress to records");
			else
				pr_fail(pr, EC_CORRUPT_MESSAGE,
					"compressed records hold %" PRId64 " records, record_count says %u", cnt,
					h->record_count);
			return -1;
		}
	} else {
		/* Uncompressed: gather the field-7 bytes. */
		struct iovec iov[512];
		raw_len = records_bytes(pr);
		raw = malloc(raw_len ? raw_len : 1);
		if (!raw)
			goto nomem;
		size_t off = 0;
		uint32_t done = 0;
		while (done < pr->nranges) {
			/* build_iov handles at most 256 ranges per call */
			struct rmq_produce tmp = *pr;
			tmp.range_off = pr->range_off + done;
			tmp.range_len = pr->range_len + done;
			tmp.keys = pr->keys ? pr->keys + 6 * (size_t)done : NULL;
			tmp.nranges = pr->nranges - done > 256 ? 256 : pr->nranges - done;
			tmp.payload = NULL;
			int n = build_iov(&tmp, iov, 512);
			for (int i = 0; i < n; i++) {
				memcpy(raw + off, iov[i].iov_base, iov[i].iov_len);
				off += iov[i].iov_len;
			}
			done += tmp.nranges;
		}
	}
	if (target == 0) {
		pr->payload = raw;
		pr->payload_len = raw_len;
	} else {
		size_t bound = rmq_codec_bound(target, raw_len);
		pr->payload = malloc(bound ? bound : 1);
		if (!pr->payload) {
			free(raw);
			goto nomem;
		}
		ssize_t k = rmq_codec_compress(target, raw, raw_len, pr->payload, bound);
		free(raw);
		if (k < 0) {
			pr_fail(pr, EC_STORAGE_ERROR, "compression failed: %s", rmq_strerror((int)k));
			return -1;
		}
		pr->payload_len = (size_t)k;
	}
	h->compression = (uint32_t)target;
	h->crc32 = 0; /* the stored bytes changed: the log computes it */
	pr->rekey = false;
	return rc;
nomem:
	pr_fail(pr, EC_RESOURCE_EXHAUSTED, "out of memory");
	return -1;
}

/* Completes the dedup entries of pr (owner shard) with the outcome. */
static void dedup_done(struct rmq_produce *pr, bool ok)
{
	if (!pr->part || !pr->part->dedup)
		return;
	struct rmq_dedup_result res = {pr->base_offset, pr->count, pr->first_ts_ms, pr->append_ms};
	rmq_dedup_done(pr->part->dedup, &pr->seq_ticket, ok, &res);
	rmq_dedup_done(pr->part->dedup, &pr->key_ticket, ok, &res);
	pr->seq_ticket.kind = pr->key_ticket.kind = 0;
}

static bool waits_for_followers(const struct rmq_produce *pr);

/* Whether pr, appended here, asked for followers' copies and this broker
 * stopped leading its partition, or leads it in another epoch, while the
 * batch was written.  The demotion dropped the replication slots and
 * failed the batches already waiting (rmq_produce_fail_replicated), but
 * not one still in the log's hands: without slots, waits_for_followers()
 * would answer it on this copy alone, which the new leader may never get
 * (tests/broker/test_faults.py rolling_restart found acks ALL records
 * lost that way, acknowledged a millisecond after a controlled shutdown's
 * fence). */
static bool lead_lost_meanwhile(const struct rmq_produce *pr)
{
	const struct rmq_partition *p = pr->part;
	if (pr->acks != ACK_ALL && pr->acks != ACK_MAJORITY && pr->acks != ACK_CUSTOM)
		return false;
	return !p || p->role != RMQ_ROLE_LEADER || p->leader_epoch != pr->app.hdr.leader_epoch;
}

static void on_appended(struct rmq_append *a, int res)
{
	struct rmq_produce *pr = RMQ_CONTAINER_OF(a, struct rmq_produce, app);
	if (res == 0 && !pr->early && lead_lost_meanwhile(pr)) {
		/* Forgotten, as rmq_produce_fail_replicated does: a retry may
		 * append it again (a duplicate at worst). */
		dedup_done(pr, false);
		pr_fail(pr, EC_NOT_LEADER,
			"%s-%u is no longer led here in the epoch its records were written in: they "
			"may or may not be committed; retry on the leader",
			pr->topic, pr->partition);
		reply_to_origin(pr);
		return;
	}
	/* A batch waiting for its followers stays in flight for a retry
	 * (IN_FLIGHT: retry later) until its acks level holds: a retry
	 * answered DUPLICATE before would claim what is not committed. */
	if (res < 0 || pr->early || !waits_for_followers(pr))
		dedup_done(pr, res == 0);
	if (pr->early) {
		/* acks=NONE was answered already; only the log's hold remains. */
		if (res < 0)
			rmq_warn("acks=NONE append to %s-%u failed after the answer: %s", pr->topic,
				 pr->partition, rmq_strerror(res));
		pr_put(pr);
		return;
	}
	if (res < 0) {
		pr_fail(pr, storage_code(res), "append failed: %s", rmq_strerror(res));
	} else if (waits_for_followers(pr)) {
		/* Durable here; answered once its acks level holds (lead.c). */
		struct rmq_partition *p = pr->part;
		pr->wnext = NULL;
		if (p->acks_tail)
			p->acks_tail->wnext = pr;
		else
			p->acks_head = pr;
		p->acks_tail = pr;
		rmq_produce_replicated(p);
		return;
	}
	reply_to_origin(pr);
}

/* How many replicas must hold pr's records, this one included. */
static uint32_t replicas_needed(const struct rmq_produce *pr, const struct rmq_passign *pa)
{
	return pr->acks == ACK_CUSTOM ? pr->custom_acks : pa->nreplicas / 2 + 1;
}

/* Whether pr, appended here, waits for followers before its answer. */
static bool waits_for_followers(const struct rmq_produce *pr)
{
	const struct rmq_partition *p = pr->part;
	return p && p->nslots > 0 &&
	       (pr->acks == ACK_ALL || pr->acks == ACK_MAJORITY || pr->acks == ACK_CUSTOM);
}

void rmq_produce_replicated(struct rmq_partition *p)
{
	const struct rmq_passign *pa = p->topic && p->topic->parts && p->index < p->topic->partitions
					       ? &p->topic->parts[p->index]
					       : NULL;
	while (p->acks_head && pa) {
		struct rmq_produce *pr = p->acks_head;
		uint64_t end = pr->base_offset + pr->count;
		bool held = pr->acks == ACK_ALL ? p->hw >= end
						: rmq_lead_holding(p, end) >= replicas_needed(pr, pa);
		if (!held)
			return; /* the later ones end later */
		p->acks_head = pr->wnext;
		if (!p->acks_head)
			p->acks_tail = NULL;
		/* Committed by an ISR that shrank below min.insync.replicas while
		 * it waited (Kafka's rule): the records stay, a retry is a
		 * duplicate, but the producer learns they are on fewer replicas
		 * than it asked for. */
		if (pr->acks == ACK_ALL && p->topic->cfg.min_insync_replicas > pa->nisr)
			pr_fail(pr, EC_NOT_ENOUGH_REPLICAS_AFTER_APPEND,
				"appended at offset %" PRIu64 ", but the ISR shrank to %u replicas, "
				"below min.insync.replicas=%u, before they all had it",
				pr->base_offset, pa->nisr, p->topic->cfg.min_insync_replicas);
		dedup_done(pr, true);
		reply_to_origin(pr);
	}
}

void rmq_produce_fail_replicated(struct rmq_partition *p)
{
	while (p->acks_head) {
		struct rmq_produce *pr = p->acks_head;
		p->acks_head = pr->wnext;
		pr_fail(pr, EC_NOT_LEADER,
			"%s-%u is no longer led here before its followers had the records: they may "
			"or may not be committed; retry on the leader",
			pr->topic, pr->partition);
		/* Forgotten: a retry may append it again (a duplicate at worst,
		 * never a record claimed and lost). */
		dedup_done(pr, false);
		reply_to_origin(pr);
	}
	p->acks_tail = NULL;
}

/* Tries the append on the owner.  Returns 0 when done (answered or in the
 * log), RMQ_EFULL when it must wait for buffer space. */
static int try_append(struct rmq_partition *p, struct rmq_produce *pr)
{
	struct iovec iov[RMQ_PRODUCE_IOV_MAX];
	int n;

	n = build_iov(pr, iov, RMQ_PRODUCE_IOV_MAX);
	pr->app.cb = on_appended;
	int rc = rmq_log_append(p->log, &pr->app, iov, n);
	if (rc == RMQ_EFULL)
		return RMQ_EFULL;
	if (rc == -ENOSPC || rc == -EDQUOT) {
		pr_fail(pr, EC_STORAGE_ERROR,
			"no space left on the data directory's filesystem: %s-%u takes appends again "
			"by itself once space is freed (retention, DeleteTopics); retry",
			pr->topic, pr->partition);
		dedup_done(pr, false);
		reply_to_origin(pr);
		return 0;
	}
	if (rc < 0) {
		pr_fail(pr, storage_code(rc),
			rc == RMQ_ECRC ? "batch CRC-32C does not match its records" : "append refused: %s",
			rmq_strerror(rc));
		dedup_done(pr, false);
		reply_to_origin(pr);
		return 0;
	}
	rmq_partition_mark_dirty(p);
	pr->part = p;
	pr->base_offset = pr->app.hdr.base_offset;
	pr->append_ms = pr->app.hdr.log_append_time_ms;
	pr->count = pr->app.hdr.record_count;
	pr->log_start = rmq_log_start_offset(p->log);
	pr->first_ts_ms = pr->app.hdr.first_timestamp_ms >= 0 ? pr->app.hdr.first_timestamp_ms
							      : (int64_t)pr->append_ms;
	p->produced_records += pr->count;
	p->produced_bytes += records_bytes(pr);
	p->bs->produce_records += pr->count;
	if (pr->acks == ACK_NONE) {
		/* Two holders now: the answer and the log's callback. */
		atomic_fetch_add(&pr->refs, 1);
		pr->early = true; /* read by on_appended, on this shard */
		reply_to_origin(pr);
	}
	return 0;
}

void rmq_produce_retry_backlog(struct rmq_partition *p)
{
	while (p->backlog_head) {
		struct rmq_produce *pr = p->backlog_head;
		/* Read before try_append: an answer it sends may free pr. */
		struct rmq_produce *next = pr->bnext;
		if (try_append(p, pr) == RMQ_EFULL) {
			rmq_log_flush(p->log);
			return;
		}
		p->backlog_head = next;
		if (!p->backlog_head)
			p->backlog_tail = NULL;
	}
}

void rmq_produce_fail_backlog(struct rmq_partition *p)
{
	while (p->backlog_head) {
		struct rmq_produce *pr = p->backlog_head;
		p->backlog_head = pr->bnext;
		pr_fail(pr, EC_NOT_AVAILABLE, "partition %s-%u is closing", pr->topic, pr->partition);
		dedup_done(pr, false);
		reply_to_origin(pr);
	}
	p->backlog_tail = NULL;
}

/* Retries must not append twice (dedup.h).  Returns 0 to append, or -1
 * with pr answered-to-be (error or duplicate result filled in). */
static int dedup_check(struct rmq_partition *p, struct rmq_produce *pr)
{
	struct rmq_batch_hdr *h = &pr->app.hdr;
	struct rmq_dedup_result res;
	enum rmq_dedup_verdict v;

	pr->part = p;
	bool seq = h->producer_id > 0 && h->base_sequence >= 0;
	if (!seq && pr->key_len == 0)
		return 0;
	/* Made at the first idempotent producer or key: most partitions
	 * never see one, and the table is about 100 KiB. */
	if (!p->dedup && !(p->dedup = rmq_dedup_new())) {
		pr_fail(pr, EC_RESOURCE_EXHAUSTED, "out of memory for producer deduplication");
		return -1;
	}
	if (seq) {
		v = rmq_dedup_seq(p->dedup, h->producer_id, h->producer_epoch, h->base_sequence,
				  h->record_count, &res, &pr->seq_ticket);
		switch (v) {
		case RMQ_DEDUP_NEW:
			break;
		case RMQ_DEDUP_DUPLICATE:
			pr_fail(pr, EC_DUPLICATE_SEQUENCE,
				"producer %" PRId64 " sequence %d was already written at offset %" PRIu64,
				h->producer_id, h->base_sequence, res.base_offset);
			goto dup;
		case RMQ_DEDUP_IN_FLIGHT:
			pr_fail(pr, EC_NOT_AVAILABLE,
				"producer %" PRId64 " sequence %d is still being written; retry", h->producer_id,
				h->base_sequence);
			return -1;
		case RMQ_DEDUP_OUT_OF_ORDER:
			pr_fail(pr, EC_OUT_OF_ORDER_SEQUENCE,
				"producer %" PRId64 " sent sequence %d, which does not follow its last batch",
				h->producer_id, h->base_sequence);
			return -1;
		case RMQ_DEDUP_FENCED:
			pr_fail(pr, EC_INVALID_PRODUCER_EPOCH,
				"producer %" PRId64 " epoch %d is older than the epoch already seen", h->producer_id,
				h->producer_epoch);
			return -1;
		}
	}
	if (pr->key_len > 0) {
		v = rmq_dedup_key(p->dedup, pr->req + pr->key_off, pr->key_len, rmq_wall_ms(), &res,
				  &pr->key_ticket);
		if (v == RMQ_DEDUP_DUPLICATE) {
			dedup_done(pr, false); /* the sequence entry just taken */
			pr_fail(pr, EC_DUPLICATE_REQUEST, "idempotency_key already used at offset %" PRIu64,
				res.base_offset);
			goto dup;
		}
		if (v == RMQ_DEDUP_IN_FLIGHT) {
			dedup_done(pr, false);
			pr_fail(pr, EC_NOT_AVAILABLE, "a request with this idempotency_key is still being written; retry");
			return -1;
		}
	}
	return 0;
dup:
	pr->base_offset = res.base_offset;
	pr->count = res.count;
	pr->first_ts_ms = res.first_ts_ms >= 0 ? res.first_ts_ms : (int64_t)res.append_ms;
	pr->append_ms = res.append_ms;
	pr->log_start = rmq_log_start_offset(p->log);
	return -1;
}

/* Runs on the owner shard. */
static void exec_on_owner(struct rmq_produce *pr)
{
	struct rmq_bshard *bs = rmq_bshard_current();
	int code;
	struct rmq_partition *p = rmq_partition_find(bs, pr->topic, pr->partition, &code);

	pr->owner = bs->id;
	if (!p) {
		if (code == EC_TOPIC_NOT_FOUND)
			pr_fail(pr, code, "unknown topic '%s'", pr->topic);
		else if (code == EC_PARTITION_NOT_FOUND)
			pr_fail(pr, code, "partition %s-%u does not exist", pr->topic, pr->partition);
		else
			pr_fail(pr, code, "partition %s-%u %s", pr->topic, pr->partition,
				rmq_partition_unavailable(bs, pr->topic, pr->partition));
		reply_to_origin(pr);
		return;
	}
	if (p->role != RMQ_ROLE_LEADER) {
		pr_fail(pr, EC_NOT_LEADER, "this broker does not lead %s-%u", pr->topic, pr->partition);
		reply_to_origin(pr);
		return;
	}
	if (p->recover) {
		/* A new leader hears from its replicas first (recover.h): its
		 * log may lack records a majority holds. */
		pr_fail(pr, EC_LEADER_NOT_AVAILABLE,
			"%s-%u: its new leader is still learning what its replicas hold; retry",
			pr->topic, pr->partition);
		reply_to_origin(pr);
		return;
	}
	/* Every stored batch carries the epoch of the leader that wrote it
	 * (whatever the producer sent in the field). */
	pr->app.hdr.leader_epoch = p->leader_epoch;
	const struct rmq_topic_config *tc = &p->topic->cfg;
	pr->log_append_time = tc->log_append_time;
	if (tc->log_append_time) {
		pr->app.hdr.first_timestamp_ms = -1;
		pr->app.hdr.max_timestamp_ms = -1;
	}
	const struct rmq_passign *pa = &p->topic->parts[p->index];
	if (pr->acks == ACK_CUSTOM && (pr->custom_acks == 0 || pr->custom_acks > pa->nreplicas)) {
		pr_fail(pr, EC_INVALID_REQUEST, "acks=CUSTOM(%u) but the partition has %u replicas",
			pr->custom_acks, pa->nreplicas);
		reply_to_origin(pr);
		return;
	}
	if (pr->acks == ACK_ALL && tc->min_insync_replicas > pa->nisr) {
		pr_fail(pr, EC_NOT_ENOUGH_REPLICAS,
			"min.insync.replicas=%u but %u replicas of the partition are in sync",
			tc->min_insync_replicas, pa->nisr);
		reply_to_origin(pr);
		return;
	}
	size_t bytes = records_bytes(pr);
	if (bytes > tc->max_message_bytes) {
		pr_fail(pr, EC_MESSAGE_TOO_LARGE, "batch of %zu bytes exceeds max.message.bytes=%" PRIu64, bytes,
			tc->max_message_bytes);
		reply_to_origin(pr);
		return;
	}
	if (pr->rekey && !pr->keys) {
		pr->keys = malloc(6 * (size_t)pr->nranges);
		if (!pr->keys) {
			pr_fail(pr, EC_RESOURCE_EXHAUSTED, "out of memory");
			reply_to_origin(pr);
			return;
		}
	}
	/* A forced topic codec, or records the broker must batch with the
	 * codec the producer asked for. */
	int target = tc->compression >= 0 ? tc->compression : (pr->rekey ? (int)pr->app.hdr.compression : -1);
	if (pr->rekey && target <= 0)
		pr->app.hdr.compression = 0, target = -1;
	if (target >= 0 && convert_codec(pr, target, tc->max_message_bytes, false) < 0) {
		reply_to_origin(pr);
		return;
	}
	/* A compressed payload kept as produced must at least be a frame of
	 * its codec that declares its size: consumers would fail on it
	 * otherwise, long after the producer was told it was stored. */
	if (!pr->payload && !pr->rekey && pr->app.hdr.compression != 0 && pr->nranges == 1) {
		size_t declared;
		if (rmq_codec_decompressed_size((int)pr->app.hdr.compression, pr->req + pr->range_off[0],
						pr->range_len[0], &declared) < 0) {
			pr_fail(pr, EC_CORRUPT_MESSAGE, "compressed_records is not a valid %s frame",
				rmq_codec_name((int)pr->app.hdr.compression));
			reply_to_origin(pr);
			return;
		}
	}
	/* More pieces than one append takes: gather them into one buffer. */
	if (!pr->payload && pr->nranges * (pr->rekey ? 2u : 1u) > RMQ_PRODUCE_IOV_MAX &&
	    convert_codec(pr, (int)pr->app.hdr.compression, tc->max_message_bytes, true) < 0) {
		reply_to_origin(pr);
		return;
	}
	if (dedup_check(p, pr) < 0) {
		reply_to_origin(pr);
		return;
	}
	if (p->backlog_head || try_append(p, pr) == RMQ_EFULL) {
		if (pr_own(pr) < 0) {
			/* The sequence dedup_check took is given back: a retry
			 * of it must be appended, not refused as in flight. */
			dedup_done(pr, false);
			pr_fail(pr, EC_RESOURCE_EXHAUSTED, "out of memory");
			reply_to_origin(pr);
			return;
		}
		pr->bnext = NULL;
		if (p->backlog_tail)
			p->backlog_tail->bnext = pr;
		else
			p->backlog_head = pr;
		p->backlog_tail = pr;
		rmq_partition_mark_dirty(p);
	}
}

static void exec_msg(struct rmq_xmsg *m)
{
	exec_on_owner(RMQ_CONTAINER_OF(m, struct rmq_produce, msg));
}

/* ---- the origin's side ---------------------------------------------------------- */

/* How long a quota held the call (quota.h), as the answer's throttle_time;
 * NULL when it did not.  The shard's one Duration: each answer is packed
 * before the next is filled, and one call's parts share the value. */
static Google__Protobuf__Duration *throttle_of(const struct rmq_call *c)
{
	static _Thread_local Google__Protobuf__Duration d;
	uint32_t ms = c ? rmq_call_throttle_ms(c) : 0;
	if (!ms)
		return NULL;
	google__protobuf__duration__init(&d);
	d.seconds = ms / 1000;
	d.nanos = (int32_t)(ms % 1000) * 1000000;
	return &d;
}

static void fill_response(const struct rmq_bshard *bs, const struct rmq_produce *pr,
			  Rustmq__Client__ProduceResponse *r, Rustmq__Common__TopicPartition *tp,
			  Google__Protobuf__Timestamp *ts)
{
	rustmq__client__produce_response__init(r);
	rustmq__common__topic_partition__init(tp);
	google__protobuf__timestamp__init(ts);
	tp->topic = (char *)pr->topic;
	tp->partition = pr->partition;
	r->topic_partition = tp;
	r->leader_id = (char *)rmq_cluster_self(bs);
	r->correlation_id = pr->correlation_id;
	if (pr->timed_out) {
		/* The owner may still be writing the result fields: none is
		 * read. */
		r->error_code = (Rustmq__Common__ErrorCode)EC_TIMEOUT;
		r->error_message = "the append was not acknowledged within the request's timeout; "
				   "it may still be stored (retry with the same producer sequence or "
				   "idempotency key to keep it once)";
		return;
	}
	r->error_code = (Rustmq__Common__ErrorCode)pr->code;
	r->error_message = (char *)pr->err;
	r->leader_epoch = pr->app.hdr.leader_epoch;
	r->throttle_time = throttle_of(pr->call);
	if (pr->code == EC_NOT_LEADER) {
		/* Its broker's strings, in this shard's snapshot while the
		 * answer is packed (a leader is a registered broker). */
		const struct rmq_broker_rec *br = rmq_meta_broker(bs->meta, pr->leader);
		r->leader_id = br ? (char *)br->id_str : "";
		r->leader_endpoint = br ? (char *)br->endpoint : "";
		r->leader_epoch = pr->leader_epoch;
	}
	if (pr->code == EC_OK || is_duplicate(pr->code)) {
		r->offset = pr->base_offset;
		r->last_offset = pr->base_offset + pr->count - 1;
		r->record_count = pr->count;
		r->log_start_offset = pr->log_start;
		r->log_append_time = pr->log_append_time ? pr->append_ms : 0;
		ts->seconds = pr->first_ts_ms / 1000;
		ts->nanos = (int32_t)(pr->first_ts_ms % 1000) * 1000000;
		r->timestamp = ts;
	}
}

static void group_answer(struct rmq_bshard *bs, struct produce_group *g)
{
	Rustmq__Client__ProduceBatchResponse resp = RUSTMQ__CLIENT__PRODUCE_BATCH_RESPONSE__INIT;
	Rustmq__Client__ProduceResponse *rs = calloc((size_t)g->n, sizeof(*rs));
	Rustmq__Client__ProduceResponse **rp = calloc((size_t)g->n, sizeof(*rp));
	Rustmq__Common__TopicPartition *tps = calloc((size_t)g->n, sizeof(*tps));
	Google__Protobuf__Timestamp *tss = calloc((size_t)g->n, sizeof(*tss));

	if (rs && rp && tps && tss) {
		for (int i = 0; i < g->n; i++) {
			fill_response(bs, g->parts[i], &rs[i], &tps[i], &tss[i]);
			rp[i] = &rs[i];
		}
		resp.partitions = rp;
		resp.n_partitions = (size_t)g->n;
		resp.correlation_id = g->correlation_id;
		resp.throttle_time = throttle_of(g->call);
		rmq_reply_pb(g->call, &resp.base);
	} else {
		rmq_call_finish(g->call, RMQ_GRPC_RESOURCE_EXHAUSTED, "out of memory");
	}
	free(rs);
	free(rp);
	free(tps);
	free(tss);
}

static void group_free(struct produce_group *g)
{
	for (int i = 0; i < g->n; i++)
		pr_put(g->parts[i]);
	rmq_call_unref(g->call);
	free(g->parts);
	free(g);
}

/* ---- timeouts: the request's (or --produce-timeout), from its arrival ---- */

static void arm_timeout(struct rmq_bshard *bs, struct rmq_timer *t, uint64_t start_ns,
			uint64_t timeout_ns, rmq_timer_fn fn)
{
	uint64_t ns = timeout_ns ? timeout_ns : bs->b->cfg.produce_timeout_ns;
	if (ns)
		(void)rmq_timer_start(bs->s, t, start_ns + ns, fn); /* a full heap: no timeout */
}

static void unary_timeout(struct rmq_timer *t)
{
	struct rmq_produce *pr = RMQ_CONTAINER_OF(t, struct rmq_produce, timer);
	Rustmq__Client__ProduceResponse r;
	Rustmq__Common__TopicPartition tp;
	Google__Protobuf__Timestamp ts;
	pr->timed_out = true;
	fill_response(rmq_bshard_current(), pr, &r, &tp, &ts);
	rmq_reply_pb(pr->call, &r.base);
}

static void stream_flush(struct rmq_bshard *bs, struct produce_stream *st);

static void stream_msg_timeout(struct rmq_timer *t)
{
	struct rmq_produce *pr = RMQ_CONTAINER_OF(t, struct rmq_produce, timer);
	pr->timed_out = true;
	pr->ready = true;
	/* The stream drops its hold once the answer is sent; the owner's
	 * result still comes back to pr. */
	atomic_fetch_add(&pr->refs, 1);
	stream_flush(rmq_bshard_current(), pr->stream);
}

static void group_timeout(struct rmq_timer *t)
{
	struct produce_group *g = RMQ_CONTAINER_OF(t, struct produce_group, timer);
	g->timed_out = true;
	for (int i = 0; i < g->n; i++)
		if (!g->parts[i]->ready)
			g->parts[i]->timed_out = true;
	group_answer(rmq_bshard_current(), g);
}

/* Runs on the origin shard with pr's result. */
static void finish_on_origin(struct rmq_produce *pr)
{
	struct rmq_bshard *bs = rmq_bshard_current();
	bs->inflight_produce--;
	if (pr->code != EC_OK)
		bs->errors++;
	else
		rmq_lat_since(&bs->produce_latency, pr->start_ns, rmq_now_ns());
	if (pr->grp) {
		struct produce_group *g = pr->grp;
		pr->ready = true;
		rmq_call_unref(pr->call);
		if (--g->pending > 0)
			return;
		if (!g->timed_out) {
			rmq_timer_cancel(bs->s, &g->timer);
			group_answer(bs, g);
		}
		group_free(g);
		return;
	}
	if (pr->timed_out) {
		/* Answered TIMEOUT already (the stream sent it in order). */
		rmq_call_unref(pr->call);
		pr_put(pr);
		return;
	}
	rmq_timer_cancel(bs->s, &pr->timer);
	if (pr->stream) {
		pr->ready = true;
		rmq_call_unref(pr->call);
		stream_flush(bs, pr->stream);
		return;
	}
	Rustmq__Client__ProduceResponse r;
	Rustmq__Common__TopicPartition tp;
	Google__Protobuf__Timestamp ts;
	fill_response(bs, pr, &r, &tp, &ts);
	rmq_reply_pb(pr->call, &r.base);
	rmq_call_unref(pr->call);
	pr_put(pr);
}

static void finish_msg(struct rmq_xmsg *m)
{
	finish_on_origin(RMQ_CONTAINER_OF(m, struct rmq_produce, msg));
}

static void reply_to_origin(struct rmq_produce *pr)
{
	struct rmq_bshard *bs = rmq_bshard_current();
	if (pr->origin == bs->id) {
		finish_on_origin(pr);
		return;
	}
	pr->msg.fn = finish_msg;
	rmq_shard_post(bs->s, pr->origin, &pr->msg);
}

/* Sends pr to its owner (or runs it here). */
static void dispatch(struct rmq_bshard *bs, struct rmq_produce *pr)
{
	int code;
	const struct rmq_topic *t = NULL;
	int owner = rmq_route_topic(bs, pr->topic, pr->partition, &code, &t);
	if (t && t->internal) {
		/* Its records are the group coordinator's state (offsets.h). */
		pr_fail(pr, EC_INVALID_TOPIC, "'%s' is internal: only the group coordinator writes it",
			pr->topic);
		finish_on_origin(pr);
		return;
	}
	if (owner < 0) {
		char why[400];
		if (code == EC_TOPIC_NOT_FOUND)
			pr_fail(pr, code, "unknown topic '%s'%s", pr->topic,
				bs->b->cfg.auto_create_topics ? "" : " (automatic topic creation is off)");
		else
			pr_fail(pr, code, "%s",
				rmq_route_error(bs, pr->topic, pr->partition, code, why, sizeof(why)));
		if (code == EC_NOT_LEADER) {
			struct rmq_leader l = rmq_cluster_leader(bs, t, pr->partition);
			pr->leader = l.id;
			pr->leader_epoch = l.epoch;
		}
		finish_on_origin(pr);
		return;
	}
	if ((unsigned)owner == bs->id) {
		exec_on_owner(pr);
		return;
	}
	if (pr_own(pr) < 0) {
		pr_fail(pr, EC_RESOURCE_EXHAUSTED, "out of memory");
		finish_on_origin(pr);
		return;
	}
	pr->msg.fn = exec_msg;
	rmq_shard_post(bs->s, (unsigned)owner, &pr->msg);
}

/* Automatic creation: when the topic is unknown and allowed, create it and
 * then dispatch. */
static void after_auto_create(void *arg, int code, const char *msg)
{
	struct rmq_produce *pr = arg;
	struct rmq_bshard *bs = rmq_bshard_current();
	if (code != EC_OK && code != EC_TOPIC_ALREADY_EXISTS) {
		pr_fail(pr, code, "automatic creation of '%s' failed: %s", pr->topic, msg);
		finish_on_origin(pr);
		return;
	}
	dispatch(bs, pr);
}

static void start(struct rmq_bshard *bs, struct rmq_produce *pr)
{
	int code;
	bs->produce_requests++;
	char denied[RMQ_SEC_NAME_MAX * 2 + 64];
	if (!atomic_load(&bs->b->serving)) {
		pr_fail(pr, EC_SHUTTING_DOWN, "the node is shutting down");
		finish_on_origin(pr);
		return;
	}
	if (pr->call && !rmq_auth_allowed(pr->call, RMQ_ACL_TOPIC, pr->topic, RMQ_ACL_WRITE, denied,
					  sizeof(denied))) {
		pr_fail(pr, EC_UNAUTHORIZED, "%s", denied);
		finish_on_origin(pr);
		return;
	}
	if (rmq_route(bs, pr->topic, pr->partition, &code) < 0 && code == EC_TOPIC_NOT_FOUND &&
	    bs->b->cfg.auto_create_topics) {
		const char *why;
		if (rmq_topic_name_check(pr->topic, &why) < 0) {
			pr_fail(pr, EC_INVALID_TOPIC, "%s", why);
			finish_on_origin(pr);
			return;
		}
		if (pr_own(pr) < 0 ||
		    rmq_admin_create_one(bs, pr->topic, bs->b->cfg.default_partitions, after_auto_create, pr) < 0) {
			pr_fail(pr, EC_RESOURCE_EXHAUSTED, "cannot create topic now");
			finish_on_origin(pr);
		}
		return;
	}
	dispatch(bs, pr);
}

/* Room for n more appends in flight on this shard?  Otherwise the call is
 * answered RESOURCE_EXHAUSTED (retriable).  A request counts all its
 * appends, not one. */
static bool admit(struct rmq_bshard *bs, struct rmq_call *c, uint32_t n)
{
	uint32_t max = bs->b->cfg.max_inflight_produce;
	if (bs->inflight_produce + (uint64_t)n > max) {
		rmq_call_finishf(c, RMQ_GRPC_RESOURCE_EXHAUSTED,
				 "too many produce appends in flight on this shard (%u in flight, %u more asked, "
				 "--max-inflight-produce %u); retry",
				 bs->inflight_produce, n, max);
		return false;
	}
	return true;
}

void rmq_produce_unary(struct rmq_call *c, const uint8_t *msg, size_t len)
{
	struct rmq_bshard *bs = rmq_call_app(c);
	if (!admit(bs, c, 1))
		return;
	struct rmq_produce *pr = pr_new(bs, c);
	if (!pr) {
		rmq_call_finish(c, RMQ_GRPC_RESOURCE_EXHAUSTED, "out of memory");
		return;
	}
	if (parse_produce(pr, msg, len) < 0) {
		/* A message that does not parse is a protocol error; a bad
		 * record is an application error in the response. */
		if (pr->code == EC_INVALID_REQUEST && pr->topic[0] == '\0') {
			rmq_call_finish(c, RMQ_GRPC_INVALID_ARGUMENT, pr->err);
			bs->inflight_produce--;
			rmq_call_unref(c);
			pr_put(pr);
			return;
		}
		finish_on_origin(pr);
		return;
	}
	arm_timeout(bs, &pr->timer, pr->start_ns, pr->timeout_ns, unary_timeout);
	start(bs, pr);
}

/* Whether a ProducePartitionData's own fields and its topic_partition
 * parse.  One that does not makes the whole request malformed: a gRPC
 * INVALID_ARGUMENT, as for Produce (errors.proto: protocol failures end
 * the call with a status); a batch's content is checked per partition. */
static bool partition_data_parses(const uint8_t *p, size_t len)
{
	const uint8_t *end = p + len;
	while (p < end) {
		uint32_t field, wire;
		uint64_t num = 0;
		const uint8_t *val = NULL;
		size_t vlen = 0;
		size_t k = rmq_pb_next(p, end, &field, &wire, &num, &val, &vlen);
		if (k == 0)
			return false;
		if (field == 1) {
			if (wire != RMQ_PB_LEN)
				return false;
			const uint8_t *q = val, *qe = val + vlen;
			while (q < qe) {
				uint32_t f2, w2;
				uint64_t n2;
				const uint8_t *v2;
				size_t l2;
				size_t k2 = rmq_pb_next(q, qe, &f2, &w2, &n2, &v2, &l2);
				if (k2 == 0)
					return false;
				q += k2;
			}
		}
		p += k;
	}
	return true;
}

/* Each partition at most once in a ProduceBatch (producer.proto). */
static int batch_unique(const struct produce_group *g, char *err, size_t errlen)
{
	struct rmq_tp_ref *v = malloc((size_t)g->n * sizeof(*v));
	if (!v) {
		snprintf(err, errlen, "out of memory");
		return EC_RESOURCE_EXHAUSTED;
	}
	for (int i = 0; i < g->n; i++)
		v[i] = (struct rmq_tp_ref){g->parts[i]->topic, g->parts[i]->partition};
	int code = rmq_request_unique(v, (size_t)g->n, err, errlen);
	free(v);
	return code;
}

/* Drops a group none of whose parts started. */
static void batch_abort(struct rmq_bshard *bs, struct produce_group *g)
{
	for (int i = 0; i < g->n; i++) {
		rmq_call_unref(g->parts[i]->call);
		bs->inflight_produce--;
		pr_put(g->parts[i]);
	}
	rmq_call_unref(g->call);
	free(g->parts);
	free(g);
}

void rmq_produce_batch(struct rmq_call *c, const uint8_t *msg, size_t len)
{
	struct rmq_bshard *bs = rmq_call_app(c);
	const uint8_t *p = msg, *end = msg + len;
	int acks = ACK_LEADER, n = 0;
	uint32_t custom = 0;
	uint64_t corr = 0, timeout_ns = 0, start_ns = rmq_now_ns();
	char err[400];

	/* First pass: the request-wide fields and the partition count. */
	while (p < end) {
		uint32_t field, wire;
		uint64_t num = 0;
		const uint8_t *val = NULL;
		size_t vlen = 0;
		size_t k = rmq_pb_next(p, end, &field, &wire, &num, &val, &vlen);
		if (k == 0) {
			rmq_call_finishf(c, RMQ_GRPC_INVALID_ARGUMENT,
					 "ProduceBatchRequest: malformed protobuf at byte %zu", (size_t)(p - msg));
			return;
		}
		if (field == 3 && wire == RMQ_PB_LEN) {
			if (!partition_data_parses(val, vlen)) {
				rmq_call_finishf(c, RMQ_GRPC_INVALID_ARGUMENT,
						 "ProduceBatchRequest: partitions[%d] does not parse", n);
				return;
			}
			n++;
		} else if (field == 4)
			acks = (int)num;
		else if (field == 6)
			custom = (uint32_t)num;
		else if (field == 8)
			corr = num;
		else if (field == 5 && wire == RMQ_PB_LEN)
			timeout_ns = duration_ns(val, vlen);
		p += k;
	}
	if (n == 0) {
		rmq_call_finish(c, RMQ_GRPC_INVALID_ARGUMENT, "ProduceBatchRequest: no partitions");
		return;
	}
	int code = rmq_request_partitions(bs, (size_t)n, err, sizeof(err));
	if (code != EC_OK) {
		rmq_refuse(c, code, "%s", err);
		return;
	}
	if (!admit(bs, c, (uint32_t)n))
		return;
	struct produce_group *g = calloc(1, sizeof(*g));
	if (!g || !(g->parts = calloc((size_t)n, sizeof(*g->parts)))) {
		free(g);
		rmq_call_finish(c, RMQ_GRPC_RESOURCE_EXHAUSTED, "out of memory");
		return;
	}
	g->call = c;
	rmq_call_ref(c);
	g->correlation_id = corr;
	/* Second pass: one append per ProducePartitionData.  Every part is
	 * created before any is dispatched, so a reply cannot finish the
	 * group early. */
	p = msg;
	while (p < end && g->n < n) {
		uint32_t field, wire;
		uint64_t num = 0;
		const uint8_t *val = NULL;
		size_t vlen = 0;
		size_t k = rmq_pb_next(p, end, &field, &wire, &num, &val, &vlen);
		/* The first pass parsed every field of this message. */
		RMQ_ASSERT(k != 0);
		if (field == 3 && wire == RMQ_PB_LEN) {
			struct rmq_produce *pr = pr_new(bs, c);
			if (!pr)
				break;
			pr->grp = g;
			pr->index = g->n;
			pr->acks = acks;
			pr->custom_acks = custom;
			pr->req = msg;
			pr->req_len = len;
			rmq_batch_hdr_init(&pr->app.hdr);
			g->parts[g->n++] = pr;
			const uint8_t *q = val, *qe = val + vlen;
			bool have_batch = false;
			while (q < qe && pr->code == EC_OK) {
				uint32_t f2, w2;
				uint64_t n2 = 0;
				const uint8_t *v2 = NULL;
				size_t l2 = 0;
				size_t k2 = rmq_pb_next(q, qe, &f2, &w2, &n2, &v2, &l2);
				if (k2 == 0) {
					pr_fail(pr, EC_INVALID_REQUEST, "ProducePartitionData: malformed protobuf");
					break;
				}
				if (f2 == 1 && w2 == RMQ_PB_LEN && parse_topic_partition(pr, v2, l2) < 0)
					pr_fail(pr, EC_INVALID_REQUEST, "ProducePartitionData: bad topic_partition");
				else if (f2 == 2 && w2 == RMQ_PB_LEN && have_batch)
					pr_fail(pr, EC_INVALID_REQUEST, "ProducePartitionData: batch given twice");
				else if (f2 == 2 && w2 == RMQ_PB_LEN) {
					have_batch = true;
					parse_batch(pr, msg, v2, l2);
				}
				q += k2;
			}
			if (pr->code == EC_OK && (!have_batch || pr->topic[0] == '\0'))
				pr_fail(pr, EC_INVALID_REQUEST, "ProducePartitionData needs topic_partition and batch");
		}
		p += k;
	}
	g->pending = g->n;
	if (g->n < n) {
		/* Allocation failed midway: answer the ones we have as failed. */
		for (int i = 0; i < g->n; i++)
			pr_fail(g->parts[i], EC_RESOURCE_EXHAUSTED, "out of memory");
	} else if ((code = batch_unique(g, err, sizeof(err))) != EC_OK) {
		batch_abort(bs, g);
		rmq_refuse(c, code, "%s", err);
		return;
	}
	arm_timeout(bs, &g->timer, start_ns, timeout_ns, group_timeout);
	int total = g->n;
	for (int i = 0; i < total; i++) {
		struct rmq_produce *pr = g->parts[i];
		if (pr->code != EC_OK) {
			finish_on_origin(pr);
		} else {
			start(bs, pr);
		}
	}
}

/* ---- ProduceStream ------------------------------------------------------------------ */

/* Sends the answers at the head of the stream that are ready, in order. */
static void stream_flush(struct rmq_bshard *bs, struct produce_stream *st)
{
	while (st->head && st->head->ready) {
		struct rmq_produce *pr = st->head;
		st->head = pr->next;
		if (!st->head)
			st->tail = NULL;
		if (!st->cancelled && pr->fatal) {
			/* A protocol failure ends the stream with a status after
			 * the answers before it (producer.proto); later requests
			 * still in flight are dropped as they come back. */
			rmq_call_finish(st->call, RMQ_GRPC_INVALID_ARGUMENT, pr->err);
			st->cancelled = true;
		} else if (!st->cancelled) {
			Rustmq__Client__ProduceResponse r;
			Rustmq__Common__TopicPartition tp;
			Google__Protobuf__Timestamp ts;
			fill_response(bs, pr, &r, &tp, &ts);
			rmq_send_pb(st->call, &r.base);
		}
		pr_put(pr);
	}
	if (!st->head && (st->half_closed || st->cancelled)) {
		if (!st->cancelled)
			rmq_call_finish(st->call, RMQ_GRPC_OK, NULL);
		rmq_call_set_ctx(st->call, NULL);
		rmq_call_unref(st->call);
		free(st);
	}
}

static struct produce_stream *stream_of(struct rmq_call *c)
{
	struct produce_stream *st = rmq_call_get_ctx(c);
	if (!st) {
		st = calloc(1, sizeof(*st));
		if (!st)
			return NULL;
		st->call = c;
		rmq_call_ref(c);
		rmq_call_set_ctx(c, st);
	}
	return st;
}

void rmq_produce_stream_msg(struct rmq_call *c, const uint8_t *msg, size_t len)
{
	struct rmq_bshard *bs = rmq_call_app(c);
	if (rmq_call_done(c))
		return; /* ended by a malformed message: the rest is ignored */
	struct produce_stream *st = stream_of(c);
	if (!st) {
		rmq_call_finish(c, RMQ_GRPC_RESOURCE_EXHAUSTED, "out of memory");
		return;
	}
	if (!admit(bs, c, 1))
		return;
	struct rmq_produce *pr = pr_new(bs, c);
	if (!pr) {
		rmq_call_finish(c, RMQ_GRPC_RESOURCE_EXHAUSTED, "out of memory");
		return;
	}
	pr->stream = st;
	if (st->tail)
		st->tail->next = pr;
	else
		st->head = pr;
	st->tail = pr;
	if (parse_produce(pr, msg, len) < 0) {
		/* As for Produce: a message that does not parse is a protocol
		 * failure (the stream ends with INVALID_ARGUMENT once the
		 * answers before it are sent); a bad record an error response. */
		pr->fatal = pr->code == EC_INVALID_REQUEST && pr->topic[0] == '\0';
		finish_on_origin(pr); /* in order */
		return;
	}
	arm_timeout(bs, &pr->timer, pr->start_ns, pr->timeout_ns, stream_msg_timeout);
	start(bs, pr);
}

void rmq_produce_stream_half_close(struct rmq_call *c)
{
	struct rmq_bshard *bs = rmq_call_app(c);
	if (rmq_call_done(c))
		return;
	struct produce_stream *st = stream_of(c);
	if (!st) {
		rmq_call_finish(c, RMQ_GRPC_OK, NULL);
		return;
	}
	st->half_closed = true;
	stream_flush(bs, st);
}

void rmq_produce_cancel(struct rmq_call *c)
{
	struct produce_stream *st = rmq_call_get_ctx(c);
	if (!st)
		return;
	st->cancelled = true;
	stream_flush(rmq_call_app(c), st);
}
