/* SPDX-License-Identifier: Apache-2.0 */
/*
 * produce.c - rmq produce: one record per stdin line, batched per
 * partition (up to 1000 records / 1 MiB) and sent as ProduceBatch calls.
 *
 *   stdin line ─► partition (--partition, else the key's CRC-32C, else
 *   round-robin per batch) ─► that partition's `fill` batch ─► full:
 *   swapped into `sent`, encoded (pbatch.h), submitted ─► reaped oldest
 *   first when the window (INFLIGHT_MAX calls) or the partition is busy
 *
 * One request in flight per partition keeps each partition in input
 * order; the window spans partitions.
 *
 * Idempotent: the producer id InitTransaction gives numbers every batch
 * (per partition sequences), so a call that fails on its way (the leader
 * killed, the connection lost) is sent again, same bytes, to the leader
 * the metadata names then, and a batch the old leader had appended and
 * replicated is answered DUPLICATE_SEQUENCE with its offsets rather than
 * appended twice.  A broker that gives no id (UNIMPLEMENTED: an older
 * rmqd) leaves the producer plain: such a call failing ends the command.
 */
#include "cli.h"
#include "commands.h"
#include "pbatch.h"
#include "query.h"
#include "route.h"

#include "client/producer.pb-c.h"
#include "core/crc32c.h"
#include "core/error.h"
#include "core/shard.h"
#include "storage/codec.h"

#include <errno.h>
#include <inttypes.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

/* Produce batching bounds. */
#define BATCH_RECORDS_MAX 1000
#define BATCH_BYTES_MAX (1u << 20)
#define INFLIGHT_MAX 32
#define HEADERS_MAX 64
#define LOST_TRIES_MAX 300 /* calls lost on their way, 100 ms apart: 30 s */

struct ppart {
	struct rmq_pbatch fill;       /* being filled from stdin */
	struct rmq_pbatch sent;       /* in flight (its request buffer) */
	struct rmq_rpc_call call;
	int32_t next_seq;             /* the sequence of the next batch's first record */
	bool busy;
};

static struct {
	const char *topic;
	uint32_t nparts;
	struct ppart *parts;
	uint32_t fifo[INFLIGHT_MAX];  /* partitions in flight, oldest first */
	unsigned fifo_head, fifo_count;
	int acks, compression;
	int64_t producer_id;          /* 0: not idempotent */
	uint64_t acked, sent_records;
	bool progress;
	uint64_t next_progress_ns;
} P;

/* Waits for partition pi's call; one its broker refused because another
 * leads the partition goes to that one (route.h), the same bytes again
 * (nothing was appended). */
static void produce_complete(uint32_t pi)
{
	struct ppart *pp = &P.parts[pi];
	int tries = 0, lost = 0;
	for (bool again = true; again;) {
		enum rmq_grpc_status st = rmq_rpc_wait(&pp->call);
		int fresh = 0; /* a failover takes a session timeout: LOST_TRIES_MAX, not the route's */
		if (st != RMQ_GRPC_OK && P.producer_id &&
		    (st == RMQ_GRPC_UNAVAILABLE || st == RMQ_GRPC_DEADLINE_EXCEEDED) &&
		    ++lost <= LOST_TRIES_MAX &&
		    route_retry(P.topic, pi, EC(LEADER_NOT_AVAILABLE), NULL, &fresh)) {
			/* Lost on its way: the same numbered batch again, to
			 * the leader the metadata names now. */
			rmq_rpc_call_reset(&pp->call);
			rmq_rpc_submit(route_rpc(P.topic, pi), &pp->call);
			continue;
		}
		if (st != RMQ_GRPC_OK) {
			char msg[256];
			snprintf(msg, sizeof(msg), "%s", pp->call.message ? pp->call.message : "");
			die("ProduceBatch to %s/%" PRIu32 " failed: %s%s%s", P.topic, pi,
			    rmq_grpc_status_name((int)st), *msg ? ": " : "", msg);
		}
		Rustmq__Client__ProduceBatchResponse *r = rustmq__client__produce_batch_response__unpack(
			NULL, pp->call.resp_len, pp->call.resp);
		rmq_rpc_call_reset(&pp->call);
		if (!r)
			die("ProduceBatch: the broker's answer does not parse");
		if (r->error_code)
			die_code("ProduceBatch", P.topic, r->error_code, r->error_message);
		again = false;
		for (size_t i = 0; i < r->n_partitions; i++) {
			const Rustmq__Client__ProduceResponse *pr = r->partitions[i];
			/* A resend the leader had: its first answer, as success. */
			const int code = pr->error_code == EC(DUPLICATE_SEQUENCE) && P.producer_id
						 ? 0
						 : (int)pr->error_code;
			if (code &&
			    route_retry(P.topic, pi, code, pr->leader_endpoint, &tries)) {
				again = true;
				continue;
			}
			if (code)
				die_code("ProduceBatch", P.topic, code, pr->error_message);
			P.acked += pr->record_count;
			if (cli.verbose)
				fprintf(stderr, "%s/%" PRIu32 ": %" PRIu32 " records at offsets %" PRIu64
					"..%" PRIu64 "\n",
					P.topic, pi, pr->record_count, pr->offset, pr->last_offset);
		}
		protobuf_c_message_free_unpacked(&r->base, NULL);
		if (again)
			rmq_rpc_submit(route_rpc(P.topic, pi), &pp->call);
	}
	pp->busy = false;
}

/* Waits for the oldest call in flight. */
static void produce_reap_one(void)
{
	uint32_t pi = P.fifo[P.fifo_head];
	P.fifo_head = (P.fifo_head + 1) % INFLIGHT_MAX;
	P.fifo_count--;
	produce_complete(pi);
}

static void produce_send(uint32_t pi)
{
	struct ppart *pp = &P.parts[pi];
	if (pp->fill.records == 0)
		return;
	/* One request in flight per partition keeps the partition in input
	 * order; the window spans partitions. */
	while (pp->busy || P.fifo_count == INFLIGHT_MAX)
		produce_reap_one();
	struct rmq_pbatch tmp = pp->sent;
	pp->sent = pp->fill;
	pp->fill = tmp;
	rmq_pbatch_clear(&pp->fill);
	const struct rmq_pbatch_seq seq = {P.producer_id, 0, pp->next_seq};
	long len = rmq_pbatch_encode(&pp->sent, P.topic, pi, P.acks, P.compression,
				     P.producer_id ? &seq : NULL);
	/* Sequences wrap from INT32_MAX to 0 (producer.proto). */
	pp->next_seq = (int32_t)(((uint32_t)pp->next_seq + pp->sent.records) & INT32_MAX);
	if (len < 0)
		die("cannot encode a batch: %s", rmq_strerror((int)len));
	pp->call = (struct rmq_rpc_call){.path = "/rustmq.client.ProducerService/ProduceBatch",
					 .req = pp->sent.out,
					 .len = (size_t)len,
					 .timeout_ns = CALL_TIMEOUT_NS};
	pp->busy = true;
	P.sent_records += pp->sent.records;
	rmq_rpc_submit(route_rpc(P.topic, pi), &pp->call);
	P.fifo[(P.fifo_head + P.fifo_count) % INFLIGHT_MAX] = pi;
	P.fifo_count++;
	if (P.progress) {
		uint64_t now = rmq_now_ns();
		if (now >= P.next_progress_ns) {
			fprintf(stderr, "\rproduced %" PRIu64 " records", P.acked);
			P.next_progress_ns = now + 500 * MS;
		}
	}
}

/* An idempotent producer id from InitTransaction (asked of the bootstrap
 * broker, which carries it to the controller's leader), or 0 when the
 * broker gives none. */
static int64_t producer_id(void)
{
	Rustmq__Client__InitTransactionRequest q = RUSTMQ__CLIENT__INIT_TRANSACTION_REQUEST__INIT;
	Rustmq__Common__ApiVersion v = RUSTMQ__COMMON__API_VERSION__INIT;
	v.major = 1;
	q.version = &v;
	q.client_id = "rmq";
	uint8_t buf[64];
	size_t n = rustmq__client__init_transaction_request__pack(&q, buf);
	for (int tries = 0;; tries++) {
		struct rmq_rpc_call c = {.path = "/rustmq.client.ProducerService/InitTransaction",
					 .req = buf,
					 .len = n,
					 .timeout_ns = CALL_TIMEOUT_NS};
		rmq_rpc_submit(cli.rpc, &c);
		enum rmq_grpc_status st = rmq_rpc_wait(&c);
		Rustmq__Client__InitTransactionResponse *r =
			st == RMQ_GRPC_OK ? rustmq__client__init_transaction_response__unpack(
						    NULL, c.resp_len, c.resp)
					  : NULL;
		int code = r ? (int)r->error_code : -1;
		int64_t id = r && code == 0 ? r->producer_id : 0;
		if (r)
			protobuf_c_message_free_unpacked(&r->base, NULL);
		rmq_rpc_call_reset(&c);
		if (id > 0 || st == RMQ_GRPC_UNIMPLEMENTED)
			return id;
		if (tries >= 50 || (st != RMQ_GRPC_OK && st != RMQ_GRPC_UNAVAILABLE) ||
		    (code > 0 && code != EC(NOT_CONTROLLER) && code != EC(TIMEOUT)))
			die("InitTransaction: %s",
			    st != RMQ_GRPC_OK ? rmq_grpc_status_name((int)st) : ec_name(code));
		sleep_ns(100 * MS); /* the controller elects a leader */
	}
}

/* Splits "k=v,k2=v2" into headers (in place). */
static size_t parse_headers(char *s, struct rmq_header_kv *h, size_t max)
{
	size_t n = 0;
	for (char *tok = strtok(s, ","); tok; tok = strtok(NULL, ",")) {
		char *eq = strchr(tok, '=');
		if (!eq || eq == tok)
			usage_error("--headers wants k=v[,k=v...], not '%s'", tok);
		if (n == max)
			usage_error("at most %zu headers", max);
		*eq = '\0';
		h[n++] = (struct rmq_header_kv){tok, strlen(tok), eq + 1, strlen(eq + 1)};
	}
	return n;
}

static int parse_choice(const char *v, const char *const *names, int n)
{
	for (int i = 0; i < n; i++)
		if (strcmp(v, names[i]) == 0)
			return i;
	return -1;
}

int cmd_produce(int argc, char **argv)
{
	const char *key_sep, *headers_s, *compression_s, *acks_s;
	uint64_t partition;
	const struct rmq_flag flags[] = {
		{"key-sep", RMQ_FLAG_STRING, &key_sep, "", "split each line at the first SEP: key before, value after", 0, 0, NULL},
		{"headers", RMQ_FLAG_STRING, &headers_s, "", "headers for every record: k=v,k2=v2", 0, 0, NULL},
		{"partition", RMQ_FLAG_UINT, &partition, "4294967295", "partition to write (default: hash of the key, else round-robin)", 0, 4294967295u, NULL},
		{"compression", RMQ_FLAG_CHOICE, &compression_s, "none", "codec of each batch", 0, 0, "none|lz4|zstd|snappy"},
		{"acks", RMQ_FLAG_CHOICE, &acks_s, "leader", "acknowledgement to wait for", 0, 0, "none|leader|all"},
	};
	const struct cmd_spec cs = {
		"produce", "produce TOPIC [--key-sep SEP] [--headers k=v,...] [--partition N] [-v]",
		"Sends one record per line of stdin (the value is the line without its newline).",
		flags, 5, 1, 1, false, true};
	int npos;
	parse_args(&cs, argc, argv, &npos);
	P.topic = argv[1];
	P.compression = rmq_codec_parse(compression_s);
	static const char *const acks_names[] = {"none", "leader", "", "all"};
	P.acks = parse_choice(acks_s, acks_names, 4);
	struct rmq_header_kv hdrs[HEADERS_MAX];
	char *hcopy = xstrdup(headers_s);
	size_t nh = parse_headers(hcopy, hdrs, HEADERS_MAX);
	size_t seplen = strlen(key_sep);

	connect_broker();
	P.nparts = topic_partitions(P.topic);
	P.producer_id = producer_id();
	topic_check_partition(P.topic, partition, P.nparts);
	P.parts = calloc(P.nparts, sizeof(*P.parts));
	if (!P.parts)
		die("out of memory");
	P.progress = isatty(2);

	char *line = NULL;
	size_t cap = 0;
	ssize_t n;
	uint32_t rr = 0;
	struct timespec now;
	while ((n = getline(&line, &cap, stdin)) >= 0) {
		if (n > 0 && line[n - 1] == '\n')
			n--;
		const char *key = NULL, *value = line;
		size_t klen = 0, vlen = (size_t)n;
		if (seplen) {
			char *sep = memmem(line, (size_t)n, key_sep, seplen);
			if (sep) {
				key = line;
				klen = (size_t)(sep - line);
				value = sep + seplen;
				vlen = (size_t)n - klen - seplen;
			}
		}
		uint32_t pi;
		if (partition != PARTITION_ANY)
			pi = (uint32_t)partition;
		else if (key)
			pi = rmq_crc32c(0, key, klen) % P.nparts;
		else
			pi = rr;
		clock_gettime(CLOCK_REALTIME, &now);
		uint64_t ts_ms = (uint64_t)now.tv_sec * 1000 + (uint64_t)now.tv_nsec / 1000000;
		struct ppart *pp = &P.parts[pi];
		if (rmq_pbatch_add(&pp->fill, key, klen, value, vlen, hdrs, nh, ts_ms) < 0)
			die("out of memory");
		if (pp->fill.records >= BATCH_RECORDS_MAX || pp->fill.raw_len >= BATCH_BYTES_MAX) {
			produce_send(pi);
			/* Round-robin moves on per batch (Kafka's sticky
			 * partitioner): whole batches, not one record each. */
			if (partition == PARTITION_ANY && !key)
				rr = (rr + 1) % P.nparts;
		}
	}
	if (ferror(stdin))
		die("cannot read stdin: %s", strerror(errno));
	free(line);
	for (uint32_t pi = 0; pi < P.nparts; pi++)
		produce_send(pi);
	while (P.fifo_count)
		produce_reap_one();
	if (P.progress)
		fprintf(stderr, "\rproduced %" PRIu64 " records\n", P.acked);
	for (uint32_t pi = 0; pi < P.nparts; pi++) {
		rmq_pbatch_free(&P.parts[pi].fill);
		rmq_pbatch_free(&P.parts[pi].sent);
	}
	free(P.parts);
	free(hcopy);
	return 0;
}
