/* SPDX-License-Identifier: Apache-2.0 */
/*
 * bench.h - the pieces of rmq-bench that its tests reach: the options
 * (bench_opts.c) and the request/response encodings (bench_wire.c).
 * rmq_bench.c is the program: runtime, connections, workload, report.
 */
#ifndef RMQ_BENCH_BENCH_H
#define RMQ_BENCH_BENCH_H

#include <stdatomic.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>

/* ---- options -------------------------------------------------------------- */

enum bench_mode { BENCH_PRODUCE, BENCH_CONSUME, BENCH_E2E };

/* Which system --target names, by its scheme (bench_peer.c drives the peers). */
enum bench_system { BENCH_RMQ, BENCH_NATS, BENCH_REDIS };

/* Bounds of the flags (also what the help prints). */
#define BENCH_THREADS_MAX 256
#define BENCH_CONNECTIONS_MAX 1024      /* per thread */
#define BENCH_STREAMS_MAX 1024          /* per connection */
#define BENCH_PARTITIONS_MAX 4096
#define BENCH_BATCH_MAX 100000
#define BENCH_MSG_BYTES_MAX (16u << 20)
#define BENCH_BATCH_BYTES_MAX (64u << 20) /* batch x msg-bytes */
#define BENCH_SLOTS_MAX 65536u            /* requests in flight, all threads */
#define BENCH_MEMORY_MAX (8ULL << 30)     /* producers' batch buffers, all threads */
/* A record value carries "RMQB" and the send time (8 bytes, little-
 * endian ns) when it is at least this long; e2e needs it. */
#define BENCH_STAMP_MAGIC "RMQB"
#define BENCH_STAMP_BYTES 12u
/* With --unique-values the stamp is followed by the record's producer id
 * (8 bytes), partition (4) and sequence (4), little-endian: no two records
 * written once are alike. */
#define BENCH_UNIQUE_BYTES 28u

struct bench_opts {
	char host[256];
	uint16_t port;
	const char *target;
	enum bench_system system;       /* rmq:// (or no scheme), nats://, redis:// */
	uint64_t threads, connections, streams;
	enum bench_mode mode;
	const char *mode_name;
	const char *topic;
	bool create_topic;
	uint64_t partitions;
	uint64_t replication_factor;    /* of a created topic */
	uint64_t msg_bytes, batch;
	int acks;                       /* rustmq.common.AcknowledgmentLevel */
	const char *acks_name;
	int compression;                /* rustmq.common.CompressionType */
	const char *compression_name;
	uint64_t duration_ns;           /* 0 = until --messages */
	uint64_t messages;              /* 0 = until --duration */
	uint64_t warmup_ns;
	uint64_t rate;                  /* msgs/s, 0 = closed loop */
	bool json;
	bool progress;
	bool pin;
	uint64_t poll_ns;      /* busy-poll before sleeping (rmq runtime) */
	bool produce_stream;            /* --produce-rpc=stream */
	bool produce_unary;             /* --produce-rpc=unary: Produce with `records` */
	const char *produce_rpc_name;   /* batch, stream, unary */
	bool consume_subscribe;         /* --consume-rpc=subscribe */
	bool from_latest;
	const char *from_name;
	uint64_t fetch_wait_ns;
	uint64_t fetch_max_bytes;
	uint64_t partition_max_bytes;
	uint64_t timeout_ns;            /* deadline of a produce or setup call */
	bool idempotent;                /* producers number their batches (InitTransaction) */
	bool unique_values;             /* values carry producer id, partition, sequence */
	const char *tls_ca, *tls_cert, *tls_key; /* TLS to rmq when any is set ("" = unset) */
	const char *user, *password_file, *sasl; /* log in first, a token on every call */
	const char *group;              /* --group: readers are its members; "" = none */
	uint64_t commit_interval_ns;    /* --group: how often members commit */
};

/*
 * Parses argv into *o (defaults first), then checks the combination.
 * Returns 0, 1 for --help (nothing else checked), or RMQ_EBADFLAG with a
 * one-line reason in err (without the program name).
 */
int bench_opts_parse(int argc, char **argv, struct bench_opts *o, char *err, size_t errlen);

/* The flags and their defaults, one per line. */
void bench_opts_usage(FILE *out);

/*
 * Splits "rmq://host:port" (the scheme may be left out; an IPv6 host goes
 * in brackets; nats:// and redis:// name a peer) into host and port.
 * Returns 0 or RMQ_EBADFLAG with err set.
 */
int bench_parse_target(const char *s, char *host, size_t hostlen, uint16_t *port, char *err,
		       size_t errlen);

/* ---- encodings (pbwire: no protobuf-c on the hot path) ---------------------- */

/* Bytes before a batch's payload that the request headers may take. */
#define BENCH_HEADROOM 512u

/*
 * A producer's batch: batch x records, each a Record whose value is
 * msg_bytes long, [RMQB][send time][filler letters], built once; per send
 * the stamps are rewritten, the payload compressed (when asked) and the
 * CRC-32C computed, and the request headers are written in front of the
 * payload inside the same buffer.
 */
struct bench_batch {
	uint32_t records;
	uint32_t msg_bytes;
	int compression;
	bool unary;            /* field-4 elements of a ProduceRequest: no CRC */
	uint8_t *raw;          /* the field-7 elements (uncompressed records bytes) */
	size_t raw_len;
	uint32_t elem_bytes;   /* one field-7 element */
	uint32_t stamp_at;     /* offset of the stamp inside an element */
	uint8_t *buf;          /* BENCH_HEADROOM + payload capacity */
	size_t cap;
	size_t payload_len;    /* at buf + BENCH_HEADROOM */
	uint32_t crc;
	/* An idempotent producer's numbering of the next encoding
	 * (RecordBatch 11-13, or ProduceRequest 9-11 for a unary Produce):
	 * producer_id 0 = not idempotent.  The caller sets them. */
	int64_t producer_id;
	int32_t producer_epoch;
	int32_t base_sequence;
	/* bench_batch_seal writes producer_id, partition and base_sequence + i
	 * into record i's value after its stamp (values of at least
	 * BENCH_UNIQUE_BYTES). */
	bool unique;
	uint32_t partition;
};

/* Allocates and fills a batch (the only allocation; reused for every
 * send).  Returns 0 or -ENOMEM, RMQ_EUNSUPPORTED. */
int bench_batch_init(struct bench_batch *b, uint32_t records, uint32_t msg_bytes, int compression,
		     uint32_t seed);
/* The same for a unary Produce: the records are ProduceRequest.records
 * (field-4 elements), never compressed and without a CRC; encode them with
 * bench_encode_produce_records. */
int bench_batch_init_unary(struct bench_batch *b, uint32_t records, uint32_t msg_bytes,
			   uint32_t seed);
void bench_batch_free(struct bench_batch *b);

/* Stamps every record with stamp_ns (when values are long enough) and,
 * when b->unique, its producer id, partition and sequence, and makes the
 * payload: compressed or not, CRC-32C computed.  Returns 0 or a codec
 * error. */
int bench_batch_seal(struct bench_batch *b, uint64_t stamp_ns);

/*
 * Writes the request headers in front of the sealed payload and returns
 * where the encoded request starts (inside b->buf); *len is its length.
 * ProduceBatchRequest (one partition) or, for a stream, ProduceRequest.
 */
const uint8_t *bench_encode_produce_batch(struct bench_batch *b, const char *topic,
					  uint32_t partition, int acks, uint64_t correlation_id,
					  size_t *len);
const uint8_t *bench_encode_produce(struct bench_batch *b, const char *topic, uint32_t partition,
				    int acks, uint64_t correlation_id, size_t *len);
/* A unary Produce's ProduceRequest with the records in `records` (field 4),
 * from a batch made by bench_batch_init_unary (answered by a
 * ProduceResponse). */
const uint8_t *bench_encode_produce_records(struct bench_batch *b, const char *topic,
					    uint32_t partition, int acks, uint64_t correlation_id,
					    size_t *len);

/* Result of one produce answer. */
struct bench_produce_result {
	int code;               /* first non-OK rustmq ErrorCode, or 0 */
	uint32_t ok_records;    /* records acknowledged */
	uint64_t correlation_id;
	char leader[128];       /* NOT_LEADER: the leader's "host:port" when named, else "" */
};

/* Parses a ProduceBatchResponse / ProduceResponse.  Returns 0 or
 * RMQ_ECORRUPT (malformed). */
int bench_parse_produce_batch_response(const uint8_t *p, size_t len, struct bench_produce_result *r);
int bench_parse_produce_response(const uint8_t *p, size_t len, struct bench_produce_result *r);

/* One partition a reader follows. */
struct bench_rpart {
	uint32_t partition;
	uint64_t offset;        /* next offset wanted */
};

/* Encodes a FetchRequest for parts into buf (capacity cap).  Returns the
 * length, or RMQ_ETOOBIG. */
int bench_encode_fetch(uint8_t *buf, size_t cap, const char *topic, const struct bench_rpart *parts,
		       uint32_t nparts, uint64_t max_wait_ns, uint32_t max_bytes,
		       uint32_t partition_max_bytes);
/* Encodes a SubscribeRequest starting at each part's offset. */
int bench_encode_subscribe(uint8_t *buf, size_t cap, const char *topic,
			   const struct bench_rpart *parts, uint32_t nparts, uint32_t max_bytes,
			   uint32_t partition_max_bytes);

/* What a consumer learns from one FetchResponse. */
struct bench_fetch_sink {
	/* Per record past the part's offset: value and its length. */
	void (*record)(void *arg, const uint8_t *value, size_t len);
	/* Per error: a rustmq ErrorCode, or one of BENCH_ERR_* below. */
	void (*error)(void *arg, int code);
	void *arg;
	/* Decompression scratch, grown on demand up to scratch_max. */
	uint8_t *scratch;
	size_t scratch_cap, scratch_max;
};

/* Errors the consumer finds itself (beyond rustmq ErrorCode values). */
enum {
	BENCH_ERR_BAD_RESPONSE = 1000, /* a response that does not parse */
	BENCH_ERR_CRC = 1001,          /* a batch whose CRC-32C does not match */
	BENCH_ERR_CODEC = 1002,        /* a batch that does not decompress */
};

/*
 * Walks a FetchResponse: for each partition of parts (matched by index),
 * checks every batch's CRC-32C, decompresses it when needed, hands each
 * record at or past the part's offset to sink->record, and moves the
 * offset past the batch.  OFFSET_OUT_OF_RANGE moves the offset to the log
 * start (or the high watermark when past it).  Returns the number of
 * records delivered, or RMQ_ECORRUPT.
 */
int bench_parse_fetch_response(const uint8_t *p, size_t len, struct bench_rpart *parts,
			       uint32_t nparts, struct bench_fetch_sink *sink);

/* ---- peers: NATS JetStream and Redis Streams (bench_peer.c) ------------------ */

/*
 * The peers are driven on plain threads through their own client
 * libraries (libnats, hiredis), not on rmqd's runtime: one thread per
 * connection (--threads x --connections), each with its own client
 * connection.  bench_peer.c owns the threads, the measurement window, the
 * progress line and the report (the same text and JSON as rmq's); a driver
 * only moves messages and calls bench_peer_account() for each one.
 *
 *   main ─ driver->setup (stream exists, consumer created)
 *        ─ workers: driver->produce or driver->consume, until
 *          bench_peer_running() turns false
 *        ─ driver->teardown, report
 */
struct bench_peer_worker;

struct bench_driver {
	const char *name;               /* "nats", "redis" */
	const char *produce_rpc;        /* what the JSON's produce_rpc says */
	const char *consume_rpc;
	/* Once, before the workers: connect, create the stream and consumer.
	 * Returns 0 or a negative error with a reason in err. */
	int (*setup)(const struct bench_opts *o, char *err, size_t errlen);
	/* A worker's whole life: open its connection, load until
	 * bench_peer_running() is false, then drain and close.  Failures are
	 * counted with bench_peer_error(); returns 0, or a negative error when
	 * the connection could not be opened. */
	int (*produce)(struct bench_peer_worker *w);
	int (*consume)(struct bench_peer_worker *w);
	/* Most readers the driver can split a stream between (0 = any). */
	unsigned readers_max;
	/* Once, after the workers returned, and after a setup that failed:
	 * closes what setup opened and waits (bounded) for the client
	 * library's own threads.  Returns 0, or a negative error when one may
	 * still run: the harness then keeps the workers' memory, which a
	 * library callback may still be given. */
	int (*teardown)(const struct bench_opts *o);
};

extern const struct bench_driver bench_driver_nats, bench_driver_redis;

/* Runs the whole benchmark against a peer; returns the exit status. */
int bench_peer_main(const struct bench_opts *o);

const struct bench_opts *bench_peer_opts(const struct bench_peer_worker *w);
/* This worker's index among the producers or the readers. */
unsigned bench_peer_index(const struct bench_peer_worker *w);
/* False once the run is over (time, --messages, or a signal). */
bool bench_peer_running(const struct bench_peer_worker *w);
/* Writes the stamp (BENCH_STAMP_MAGIC + stamp_ns) into a value of len bytes
 * (nothing when it is shorter than BENCH_STAMP_BYTES). */
void bench_peer_stamp(uint8_t *value, size_t len, uint64_t stamp_ns);
/* The stamp of a value, or 0 when it carries none. */
uint64_t bench_peer_stamp_of(const uint8_t *value, size_t len);
/* CLOCK_MONOTONIC in ns plus the offset to CLOCK_REALTIME: what stamps
 * carry, comparable between processes. */
uint64_t bench_peer_wall_ns(void);
/*
 * Counts n messages of bytes value bytes answered or delivered now, with
 * one latency sample of latency_ns (none when latency_ns is 0).  Thread-
 * safe (a library's callback thread may call it).
 */
void bench_peer_account(struct bench_peer_worker *w, uint64_t n, uint64_t bytes,
			uint64_t latency_ns);
/* Counts one error by name ("nats:TIMEOUT", "redis:ERR ...", cut at 47). */
void bench_peer_error(struct bench_peer_worker *w, const char *name);

/* ---- report.c: what every driver shows (rmq's own and the peers') ---------- */

struct rmq_hist;
void bench_fmt_ns(char *buf, size_t len, uint64_t ns);

/* What was measured of one side (produce or consume). */
struct bench_section {
	const char *name;
	uint64_t msgs, bytes;
	struct rmq_hist *hist;
};

/* The summary's "measured ..." line and its sections: extra (e2e's
 * produce side, NULL otherwise) before main_s; produce_mode: main_s's
 * latencies are acks, else deliveries. */
void bench_print_sections(const struct bench_section *main_s, const struct bench_section *extra,
			  double secs, uint64_t warmup_ns, bool produce_mode);
/* s as a JSON string, quoted and escaped. */
void bench_json_string(FILE *f, const char *s);
/* The JSON summary's opening, up to "duration_s" (no closing brace): the
 * options of o, then system (NULL: rmq, no key), the partition count, the
 * RPCs, readers (< 0: no key). */
void bench_json_header(FILE *f, const struct bench_opts *o, const char *system,
		       unsigned partitions, const char *produce_rpc, const char *consume_rpc,
		       int readers, double secs);
/* The JSON summary's results: ,"messages":...,"latency_us":{...} and, in
 * e2e (produce_hist not NULL), the produce side's object. */
void bench_json_results(FILE *f, uint64_t msgs, uint64_t bytes, const struct rmq_hist *h,
			const char *kind, uint64_t produce_msgs, uint64_t produce_bytes,
			const struct rmq_hist *produce_hist, double secs);

/* CLOCK_REALTIME minus CLOCK_MONOTONIC now, in ns: added to rmq_now_ns(),
 * the wall-clock time that stamps carry between processes. */
int64_t bench_wall_offset_ns(void);

/* SIGINT and SIGTERM run on_stop (which ends the run); SIGPIPE is ignored. */
void bench_catch_signals(void (*on_stop)(int));

/* What the progress line shows: totals so far (warm-up included) and the
 * latencies measured so far (collect fills both histograms). */
struct bench_progress_totals {
	uint64_t prod_msgs, prod_bytes, cons_msgs, cons_bytes, errors;
	struct rmq_hist *prod_hist, *cons_hist;
};

struct bench_progress {
	bool produce, consume;              /* the sections the line has */
	_Atomic bool *finished;             /* the line stops when it is set */
	_Atomic uint64_t *t_start, *t_warm; /* 0 until the run starts */
	void (*collect)(void *arg, struct bench_progress_totals *t);
	void *arg;
};

/* A thread's body (arg: a struct bench_progress): from the start of the
 * run until *finished, one line a second on stderr with the rates since
 * the line before and the p99 latencies so far. */
void *bench_progress_main(void *arg);

#endif /* RMQ_BENCH_BENCH_H */
