/* SPDX-License-Identifier: Apache-2.0 */
/*
 * bench_opts.c - rmq-bench's flags: one table (core/flags.h does the
 * strict parsing), then the checks that involve several flags.
 */
#include "bench.h"

#include "core/assert.h"
#include "core/error.h"
#include "core/flags.h"
#include "storage/codec.h"

#include <inttypes.h>
#include <stdarg.h>
#include <string.h>

__attribute__((format(printf, 3, 4))) static int fail(char *err, size_t errlen, const char *fmt,
						      ...)
{
	if (errlen > 0) {
		va_list ap;
		va_start(ap, fmt);
		vsnprintf(err, errlen, fmt, ap);
		va_end(ap);
	}
	return RMQ_EBADFLAG;
}

/* Raw values the table fills; bench_opts_parse turns them into opts. */
struct raw {
	const char *target, *mode, *acks, *compression, *produce_rpc, *consume_rpc, *from;
};

#define NFLAGS 44 /* capacity of the table; flag_table() checks it */

static size_t flag_table(struct rmq_flag *f, struct bench_opts *o, struct raw *r)
{
	size_t n = 0;
#define F(...) f[n++] = (struct rmq_flag){__VA_ARGS__}
	F("target", RMQ_FLAG_STRING, &r->target, "rmq://127.0.0.1:9092", "broker to load: rmq://host:port, or a peer: nats://host:port (JetStream), redis://host:port (Streams)", 0, 0, NULL);
	F("mode", RMQ_FLAG_CHOICE, &r->mode, "produce", "produce, consume, or e2e (both at once; latency from send to delivery)", 0, 0, "produce|consume|e2e");
	F("threads", RMQ_FLAG_UINT, &o->threads, "1", "shard threads, each with its own ring and connections", 1, BENCH_THREADS_MAX, NULL);
	F("connections", RMQ_FLAG_UINT, &o->connections, "2", "connections per thread", 1, BENCH_CONNECTIONS_MAX, NULL);
	F("streams", RMQ_FLAG_UINT, &o->streams, "8", "calls (requests) in flight per connection", 1, BENCH_STREAMS_MAX, NULL);
	F("topic", RMQ_FLAG_STRING, &o->topic, "rmq-bench", "topic to produce to and consume from", 0, 0, NULL);
	F("create-topic", RMQ_FLAG_BOOL, &o->create_topic, "true", "create the topic with --partitions when it is missing", 0, 0, NULL);
	F("partitions", RMQ_FLAG_UINT, &o->partitions, "4", "partitions of a created topic (an existing topic keeps its own)", 1, BENCH_PARTITIONS_MAX, NULL);
	F("replication-factor", RMQ_FLAG_UINT, &o->replication_factor, "1", "replicas of each partition of a created topic, on as many brokers", 1, 8, NULL);
	F("msg-bytes", RMQ_FLAG_SIZE, &o->msg_bytes, "1KiB", "value bytes per record (e2e: at least 12)", 1, BENCH_MSG_BYTES_MAX, NULL);
	F("batch", RMQ_FLAG_UINT, &o->batch, "100", "records per batch (one batch per produce request)", 1, BENCH_BATCH_MAX, NULL);
	F("acks", RMQ_FLAG_CHOICE, &r->acks, "leader", "acknowledgement a produce waits for: none, the leader's log, a majority of the replicas, every in-sync replica", 0, 0, "none|leader|majority|all");
	F("compression", RMQ_FLAG_CHOICE, &r->compression, "none", "codec of each batch's records, compressed by the producer", 0, 0, "none|lz4|zstd|snappy");
	F("duration", RMQ_FLAG_DURATION, &o->duration_ns, NULL, "measured time after the warm-up (default: 10s, or unbounded with --messages)", 0, 0, NULL);
	F("messages", RMQ_FLAG_UINT, &o->messages, "0", "stop after this many measured messages (0 = by --duration)", 0, 0, NULL);
	F("warmup", RMQ_FLAG_DURATION, &o->warmup_ns, "1s", "load before the measurement starts, excluded from results", 0, 3600ULL * 1000000000ULL, NULL);
	F("rate", RMQ_FLAG_UINT, &o->rate, "0", "open loop: messages per second in total, latency from the intended send time (0 = closed loop)", 0, 0, NULL);
	F("json", RMQ_FLAG_BOOL, &o->json, "false", "print the summary as one JSON object on stdout", 0, 0, NULL);
	F("progress", RMQ_FLAG_BOOL, &o->progress, "true", "print live progress once a second on stderr", 0, 0, NULL);
	F("pin", RMQ_FLAG_BOOL, &o->pin, "false", "pin thread i to the i-th allowed CPU", 0, 0, NULL);
	F("poll", RMQ_FLAG_DURATION, &o->poll_ns, "0s", "busy-poll each thread's ring this long before it sleeps (as rmqd --poll)", 0, 0, NULL);
	F("produce-rpc", RMQ_FLAG_CHOICE, &r->produce_rpc, "batch", "ProduceBatch calls, one ProduceStream per connection, or unary Produce calls with --batch records each", 0, 0, "batch|stream|unary");
	F("consume-rpc", RMQ_FLAG_CHOICE, &r->consume_rpc, "fetch", "Fetch long polls, or one Subscribe stream per reader", 0, 0, "fetch|subscribe");
	F("from", RMQ_FLAG_CHOICE, &r->from, NULL, "where consumers start (default: earliest for consume, latest for e2e)", 0, 0, "earliest|latest");
	F("fetch-wait", RMQ_FLAG_DURATION, &o->fetch_wait_ns, "500ms", "a Fetch's max_wait (long poll)", 0, 60ULL * 1000000000ULL, NULL);
	F("fetch-max-bytes", RMQ_FLAG_SIZE, &o->fetch_max_bytes, "8MiB", "a Fetch's max_bytes", 1024, 1ULL << 30, NULL);
	F("partition-max-bytes", RMQ_FLAG_SIZE, &o->partition_max_bytes, "2MiB", "a Fetch's partition_max_bytes", 1024, 1ULL << 30, NULL);
	F("group", RMQ_FLAG_STRING, &o->group, "", "consumers join this consumer group and read what it assigns them, starting at its commits (else --from), committing as they go; \"\" = each reader reads a fixed share", 0, 0, NULL);
	F("commit-interval", RMQ_FLAG_DURATION, &o->commit_interval_ns, "1s", "with --group: how often each member commits its positions", 1000000ULL, 3600ULL * 1000000000ULL, NULL);
	F("idempotent", RMQ_FLAG_BOOL, &o->idempotent, "true", "each producer stream numbers its batches with a producer id (InitTransaction): a call lost with its leader is sent again to the next one, and a batch the old leader had written is not written twice", 0, 0, NULL);
	F("tls-ca", RMQ_FLAG_STRING, &o->tls_ca, "", "rmq over TLS, trusting these PEM CAs (docs/security.md)", 0, 0, NULL);
	F("tls-cert", RMQ_FLAG_STRING, &o->tls_cert, "", "TLS: a PEM client certificate (mutual TLS), with --tls-key", 0, 0, NULL);
	F("tls-key", RMQ_FLAG_STRING, &o->tls_key, "", "TLS: the PEM private key of --tls-cert", 0, 0, NULL);
	F("user", RMQ_FLAG_STRING, &o->user, "", "log in as this user (AuthService.Authenticate) and send the session token on every call", 0, 0, NULL);
	F("password-file", RMQ_FLAG_STRING, &o->password_file, "", "the --user's password: the file's first line", 0, 0, NULL);
	F("sasl-mechanism", RMQ_FLAG_STRING, &o->sasl, "SCRAM-SHA-256", "SCRAM-SHA-256, SCRAM-SHA-512 or PLAIN (sends the password: only over TLS)", 0, 0, NULL);
	F("unique-values", RMQ_FLAG_BOOL, &o->unique_values, "false", "each record's value carries its producer id, partition and sequence after the send time (needs --idempotent and --msg-bytes of at least 28): a reader can tell a duplicate", 0, 0, NULL);
	F("timeout", RMQ_FLAG_DURATION, &o->timeout_ns, "30s", "deadline of a produce or setup call", 1000000ULL, 3600ULL * 1000000000ULL, NULL);
#undef F
	RMQ_ASSERT(n <= NFLAGS);
	return n;
}

void bench_opts_usage(FILE *out)
{
	struct rmq_flag f[NFLAGS];
	struct bench_opts o;
	struct raw r;
	size_t n = flag_table(f, &o, &r);
	rmq_flags_usage(out, f, n);
}

int bench_parse_target(const char *s, char *host, size_t hostlen, uint16_t *port, char *err,
		       size_t errlen)
{
	const char *p = s;
	const char *h, *hend, *colon;
	char why[192];
	uint64_t v;

	if (strncmp(p, "rmq://", 6) == 0 || strncmp(p, "nats://", 7) == 0)
		p = strstr(p, "://") + 3;
	else if (strncmp(p, "redis://", 8) == 0)
		p += 8;
	else if (strstr(p, "://"))
		return fail(err, errlen, "--target: '%s': the scheme must be rmq://, nats:// or redis://", s);
	if (*p == '[') {
		h = p + 1;
		hend = strchr(h, ']');
		if (!hend || hend[1] != ':')
			return fail(err, errlen, "--target: '%s' is not rmq://[ipv6]:port", s);
		colon = hend + 1;
	} else {
		h = p;
		colon = strrchr(p, ':');
		if (!colon)
			return fail(err, errlen, "--target: '%s' has no port (rmq://host:port)", s);
		hend = colon;
		if (memchr(h, ':', (size_t)(hend - h)))
			return fail(err, errlen, "--target: '%s': put an IPv6 host in brackets", s);
	}
	if (hend == h)
		return fail(err, errlen, "--target: '%s' has no host", s);
	if ((size_t)(hend - h) >= hostlen)
		return fail(err, errlen, "--target: the host of '%s' is too long", s);
	if (strchr(colon + 1, '/'))
		return fail(err, errlen, "--target: '%s': no path after the port", s);
	if (rmq_parse_uint(colon + 1, 1, 65535, &v, why, sizeof(why)) < 0)
		return fail(err, errlen, "--target: port of '%s': %s", s, why);
	memcpy(host, h, (size_t)(hend - h));
	host[hend - h] = '\0';
	*port = (uint16_t)v;
	return 0;
}

int bench_opts_parse(int argc, char **argv, struct bench_opts *o, char *err, size_t errlen)
{
	struct rmq_flag f[NFLAGS];
	struct raw r;
	int npos = 0;

	memset(o, 0, sizeof(*o));
	memset(&r, 0, sizeof(r));
	o->duration_ns = UINT64_MAX; /* "not given": no default in the table */
	size_t n = flag_table(f, o, &r);
	int rc = rmq_flags_parse(argc, argv, f, n, &npos, err, errlen);
	if (rc != 0)
		return rc;
	if (npos > 0)
		return fail(err, errlen, "unexpected argument '%s' (flags start with --)", argv[1]);
	rc = bench_parse_target(r.target, o->host, sizeof(o->host), &o->port, err, errlen);
	if (rc < 0)
		return rc;
	o->target = r.target;
	o->system = strncmp(r.target, "nats://", 7) == 0    ? BENCH_NATS
		    : strncmp(r.target, "redis://", 8) == 0 ? BENCH_REDIS
							    : BENCH_RMQ;
	o->mode_name = r.mode;
	o->mode = strcmp(r.mode, "produce") == 0 ? BENCH_PRODUCE
		  : strcmp(r.mode, "consume") == 0 ? BENCH_CONSUME
						   : BENCH_E2E;
	o->acks_name = r.acks;
	/* rustmq.common.AcknowledgmentLevel: NONE 0, LEADER 1, ALL 3. */
	o->acks = strcmp(r.acks, "none") == 0     ? 0
		  : strcmp(r.acks, "leader") == 0   ? 1
		  : strcmp(r.acks, "majority") == 0 ? 2
						    : 3;
	o->compression_name = r.compression;
	o->compression = rmq_codec_parse(r.compression);
	o->produce_stream = strcmp(r.produce_rpc, "stream") == 0;
	o->produce_unary = strcmp(r.produce_rpc, "unary") == 0;
	o->produce_rpc_name = r.produce_rpc;
	o->consume_subscribe = strcmp(r.consume_rpc, "subscribe") == 0;

	if (o->duration_ns == UINT64_MAX)
		o->duration_ns = o->messages ? 0 : 10ULL * 1000000000ULL;
	else if (o->duration_ns == 0 && o->messages == 0)
		return fail(err, errlen, "--duration 0s needs --messages (the run would never end)");
	size_t tlen = strlen(o->topic);
	if (tlen == 0 || tlen > 249 || strspn(o->topic, "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789._-") != tlen ||
	    strcmp(o->topic, ".") == 0 || strcmp(o->topic, "..") == 0)
		return fail(err, errlen, "--topic: '%s' is not 1..249 characters of [a-zA-Z0-9._-]", o->topic);
	if (o->msg_bytes * o->batch > BENCH_BATCH_BYTES_MAX)
		return fail(err, errlen, "--batch %" PRIu64 " x --msg-bytes %" PRIu64 " exceeds %u MiB per batch",
			    o->batch, o->msg_bytes, BENCH_BATCH_BYTES_MAX >> 20);
	/* Every request slot owns a batch buffer, allocated up front. */
	uint64_t slots = o->threads * o->connections * o->streams;
	uint64_t slot_bytes = o->batch * (o->msg_bytes + 8) * (o->compression ? 2 : 1);
	if (slots > BENCH_SLOTS_MAX)
		return fail(err, errlen, "--threads x --connections x --streams is %" PRIu64 " requests in flight; at most %u",
			    slots, BENCH_SLOTS_MAX);
	if (o->mode != BENCH_CONSUME && slots * slot_bytes > BENCH_MEMORY_MAX)
		return fail(err, errlen, "--batch x --msg-bytes x --streams x --connections x --threads needs %" PRIu64 " MiB of batch buffers; at most %llu",
			    slots * slot_bytes >> 20, BENCH_MEMORY_MAX >> 20);
	if (o->mode == BENCH_E2E && o->msg_bytes < BENCH_STAMP_BYTES)
		return fail(err, errlen, "--mode e2e needs --msg-bytes of at least %u (the send time travels in the value)",
			    BENCH_STAMP_BYTES);
	if (o->rate && o->mode == BENCH_CONSUME)
		return fail(err, errlen, "--rate paces producers: use it with --mode produce or e2e");
	if (r.from && o->mode == BENCH_PRODUCE)
		return fail(err, errlen, "--from applies to --mode consume and e2e");
	if (!r.from)
		o->from_latest = o->mode == BENCH_E2E;
	else
		o->from_latest = strcmp(r.from, "latest") == 0;
	o->from_name = o->from_latest ? "latest" : "earliest";
	/* The peer drivers send plain values and pace nothing. */
	if (o->system != BENCH_RMQ && o->rate)
		return fail(err, errlen, "--rate is not implemented for nats:// and redis:// targets");
	if (o->system != BENCH_RMQ && o->compression)
		return fail(err, errlen, "--compression applies to rmq:// targets only");
	/* Produce's `records` are plain Records: the broker makes the batch
	 * (and compresses it with the topic's codec), not the producer. */
	if (o->produce_unary && o->compression)
		return fail(err, errlen, "--produce-rpc=unary sends plain records: use --compression=none");
	if (o->produce_unary && o->system != BENCH_RMQ)
		return fail(err, errlen, "--produce-rpc=unary applies to rmq:// targets only");
	if (o->group[0] && (o->mode == BENCH_PRODUCE || o->system != BENCH_RMQ))
		return fail(err, errlen, "--group applies to --mode consume and e2e against rmq:// targets");
	if (o->group[0] && o->consume_subscribe)
		return fail(err, errlen, "--group reads with Fetch: use --consume-rpc=fetch");
	if (o->unique_values && (!o->idempotent || o->system != BENCH_RMQ))
		return fail(err, errlen, "--unique-values numbers records by producer id: it needs --idempotent and an rmq:// target");
	if (o->unique_values && o->msg_bytes < BENCH_UNIQUE_BYTES)
		return fail(err, errlen, "--unique-values needs --msg-bytes of at least %u", BENCH_UNIQUE_BYTES);
	if (o->group[0] && strlen(o->group) > 255)
		return fail(err, errlen, "--group: at most 255 characters");
	return 0;
}
