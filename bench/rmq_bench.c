/* SPDX-License-Identifier: Apache-2.0 */
/*
 * rmq-bench - the load generator: produce, consume, or both at once (e2e)
 * against one rmqd or a cluster over gRPC, and report throughput and
 * latency percentiles without coordinated omission.  In a cluster it
 * connects to every broker and follows partitions' leaders as they move;
 * its producers are idempotent (see "lost calls" below).
 *
 * It runs on the same thread-per-core runtime as rmqd (core/shard.h):
 * --threads shard threads, each with its own io_uring ring, its own
 * gRPC client (net/client.h) and --connections connections.
 *
 *   thread t ─ client ─┬─ connection c ─ producer slots [--streams]: one
 *                      │                 request in flight each, its batch
 *                      │                 buffer preallocated (pslot)
 *                      │               ─ readers: Fetch long polls or a
 *                      │                 Subscribe stream (reader)
 *                      └─ ...
 *
 * Phases (the runtime's cross-shard messages carry the hand-offs):
 *
 *   every thread: connect all its connections
 *   thread 0:     CreateTopics (--create-topic), GetTopicMetadata
 *                 ──setup──► every thread
 *   every thread: connect to the other brokers; producer ids
 *                 (InitTransaction, --idempotent); readers look up
 *                 their start offsets (ListOffsets
 *                 EARLIEST or LATEST) ──ready──► thread 0
 *   thread 0:     t_start = now; warm-up ends at t_start + --warmup; the
 *                 run at + --duration ──go──► every thread
 *   every thread: load until t_end (or --messages measured: ──stop──►),
 *                 then drain: readers cancel, producers wait for their
 *                 answers (bounded), and the last thread stops the runtime
 *
 * With --group the readers are members of a consumer group, the same
 * member as `rmq consume --group` (tools/member.h; see "consumer group"
 * below).
 *
 * Measurement.  A message counts when its answer (produce) or delivery
 * (consume) happens inside [end of warm-up, end of run).  Latency:
 *   produce   per request, request started → its answer (ProduceBatch,
 *             ProduceStream or, with --produce-rpc=unary, Produce) (with
 *             --rate: from the intended send time, see pace.h)
 *   consume   per record, send time carried in the value → delivery to
 *   e2e       the consumer (a record not stamped by rmq-bench has none)
 * Each thread keeps its own histograms (hist.h); they are merged at the end.
 *
 * Nothing is allocated per message: each producer slot owns its batch
 * buffer (records built once, stamped, compressed and CRC'd per send, the
 * request headers written in front), each reader its request buffer and
 * decompression scratch, and the client its pools (see client.h).
 */
#include "bench.h"
#include "ec.h"
#include "hist.h"
#include "member.h"
#include "pace.h"

#include "client/consumer.pb-c.h"
#include "client/metadata.pb-c.h"
#include "client/producer.pb-c.h"
#include "common/errors.pb-c.h"
#include "controller/admin.pb-c.h"
#include "core/error.h"
#include "core/log.h"
#include "core/shard.h"
#include "core/util.h"
#include "net/client.h"
#include "net/tls.h"
#include "rpc.h"

#include <errno.h>
#include <openssl/crypto.h>
#include <inttypes.h>
#include <pthread.h>
#include <signal.h>
#include <stdarg.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#define PATH_PRODUCE "/rustmq.client.ProducerService/Produce"
#define PATH_PRODUCE_BATCH "/rustmq.client.ProducerService/ProduceBatch"
#define PATH_PRODUCE_STREAM "/rustmq.client.ProducerService/ProduceStream"
#define PATH_FETCH "/rustmq.client.ConsumerService/Fetch"
#define PATH_SUBSCRIBE "/rustmq.client.ConsumerService/Subscribe"
#define PATH_LIST_OFFSETS "/rustmq.client.ConsumerService/ListOffsets"
#define PATH_CREATE_TOPICS "/rustmq.controller.AdminService/CreateTopics"
#define PATH_TOPIC_METADATA "/rustmq.client.MetadataService/GetTopicMetadata"
#define PATH_INIT_TRANSACTION "/rustmq.client.ProducerService/InitTransaction"

#define NS 1000000000ULL
#define RETRY_NS (100ULL * 1000 * 1000)       /* after a failed call */
#define DRAIN_NS (10ULL * NS)                 /* answers awaited after the end */
#define SETUP_TRIES 50                        /* x RETRY_NS for a new topic's metadata */
#define SCRATCH_MAX (256u << 20)              /* a decompressed batch */
#define LOST_TRIES_MAX 300                    /* x RETRY_NS: a batch's lost sends (a failover) */
#define META_TIMEOUT_NS (2ULL * NS)           /* a metadata look-up during the run */
#define SEQ_MEMORY_MAX (256ULL << 20)         /* producers' sequence tables, all threads */

#define GROUP_SESSION_NS (10ULL * NS)         /* --group members' session timeout */
#define BROKERS_MAX 16                        /* brokers leading the topic's partitions */

/* Error counters: gRPC statuses, rustmq ErrorCodes, and our own. */
#define ERR_GRPC 0
#define ERR_RMQ 32
#define ERR_RMQ_MAX 128
#define ERR_LOCAL (ERR_RMQ + ERR_RMQ_MAX)
#define ERR_LOCAL_N 4 /* BAD_RESPONSE, CRC, CODEC, CLIENT */
#define ERR_SLOTS (ERR_LOCAL + ERR_LOCAL_N)
_Static_assert(RMQ_GRPC_STATUS_COUNT <= ERR_RMQ, "gRPC codes fit");

enum phase { PH_CONNECT, PH_SETUP, PH_RUN, PH_DRAIN, PH_DONE };

struct stats {
	uint64_t msgs, bytes;      /* measured */
	struct rmq_hist hist;      /* measured latencies, ns */
};

struct bthread;
struct bconn;

/* One produce request in flight, with its preallocated batch.  With
 * --idempotent each slot is a producer of its own (see "lost calls"). */
struct pslot {
	struct bconn *bc;
	uint32_t partition;        /* of the request in flight */
	struct bench_batch batch;  /* .producer_id: this slot's, 0 = none */
	uint64_t t0;               /* started (closed loop) or intended (paced) */
	struct pslot *next_free;
	int32_t *seq;              /* per partition: the next batch's base sequence */
	unsigned tries;            /* sends of the batch in flight lost so far */
	struct rmq_timer retry;    /* the next send of a lost batch; InitTransaction again */
};

/* A consumer of some partitions, over one connection. */
struct reader {
	struct bthread *t;
	struct bconn *bc;
	struct bench_rpart *parts;
	uint32_t nparts;
	uint8_t *req;
	size_t req_cap;
	struct bench_fetch_sink sink;
	struct rmq_ccall *call;    /* Fetch or Subscribe in flight, or NULL */
	struct bench_rpart *fparts; /* what the call in flight reads: parts, or sub */
	uint32_t fn;
	struct bench_rpart *sub;   /* the parts one broker leads, when they are split */
	uint32_t turn;             /* split parts: whose leader is asked next */
	bool moved;                /* a partition's leader moved (look it up again) */
	struct rmq_timer retry;
	uint64_t now;              /* while a response is walked */
	uint64_t got_msgs, got_bytes;
	bool in_window;
	/* ListOffsets at setup */
	uint8_t *lo_req;
	size_t lo_len;
	int lo_tries;
	/* --group membership ("consumer group" below) */
	struct gmember *m;
	uint32_t parts_cap;
};

/* --group: a reader's membership (see "consumer group" below). */
struct gmember {
	struct rmq_member core;  /* the protocol (tools/member.h) */
	struct reader *r;
	struct rmq_timer wake;   /* the member's next deadline */
	uint32_t held;           /* the core's assignment r->parts holds */
	bool calling;            /* a group call, or the ListOffsets placing parts, is out */
	bool quiet;              /* a call not sent: counted already */
	bool counted;            /* setup: reported ready */
};

struct bconn {
	struct bthread *t;
	unsigned index;            /* within the thread */
	unsigned broker;           /* g.brokers[broker]: where it connects */
	unsigned global;           /* among every thread's producing connections */
	uint32_t rr;               /* produce: round robin over its broker's partitions */
	struct rmq_client_conn *cc;
	bool up;
	struct pslot *slots;
	struct pslot *free;
	unsigned busy;
	bool paced;
	struct rmq_pace pace;
	struct rmq_timer pace_timer;
	/* --produce-rpc=stream: the ProduceStream and its answers' order */
	struct rmq_ccall *pstream;
	struct pslot **fifo;
	unsigned fifo_head, fifo_count;
	struct rmq_timer restart;
	bool half_closed;
};

struct bthread {
	unsigned id;
	struct rmq_shard *s;
	struct rmq_client *cl;     /* to the bootstrap broker (g.brokers[0]) */
	struct rmq_client *cls[BROKERS_MAX]; /* to the others, made at setup */
	struct bconn *conns;       /* --connections per broker, broker 0's first */
	/* Which partitions each broker leads, as this thread knows (copied
	 * from g.brokers at setup; a NOT_LEADER naming another broker moves a
	 * partition to its list). */
	uint32_t *lead_parts[BROKERS_MAX];
	uint32_t lead_n[BROKERS_MAX];
	uint32_t *part_broker;     /* partition -> the broker whose list holds it */
	bool followed;             /* said once that a partition moved */
	/* The topic's metadata looked up again during the run (leaders moved) */
	bool meta_busy;
	uint64_t meta_at;          /* when the last look-up started */
	unsigned meta_rr;          /* the connection it goes over, in turn */
	uint8_t *meta_req;
	size_t meta_len;
	uint64_t retries;          /* produce calls sent again; reader calls lost to a move */
	uint64_t rewritten;        /* resends answered DUPLICATE_SEQUENCE (written before) */
	bool cut;                  /* the drain timed out: lost calls are not sent again */
	/* InitTransaction at setup (--idempotent), one per producer slot */
	unsigned pid_next, pid_out, pid_done, pid_total;
	uint8_t pid_req[64];
	size_t pid_len;
	bool pids_ready;
	unsigned nconns;           /* in use */
	unsigned conns_up;         /* the bootstrap's */
	unsigned extra_up;         /* the other brokers' */
	bool extra_started;
	struct reader *readers;
	unsigned nreaders;
	unsigned resolving;
	bool setup_seen;
	enum phase phase;
	uint64_t corr;
	uint64_t inflight;         /* workload calls open */
	struct stats prod, cons;
	uint64_t err[ERR_SLOTS];
	struct rmq_timer tick, end_timer, drain_timer;
	struct rmq_xmsg setup_msg, ready_msg, go_msg, stop_msg;
	/* setup (thread 0) */
	int setup_tries;
	uint8_t *setup_req;
	/* published for the progress line */
	_Atomic uint64_t all_prod_msgs, all_prod_bytes, all_cons_msgs, all_cons_bytes, all_errors;
	pthread_mutex_t mu;
	struct rmq_hist pub_prod, pub_cons;
};

static struct {
	struct bench_opts o;
	struct rmq_tls_ctx *tls;        /* --tls-*: TLS to every broker, or NULL */
	char authz[1100];               /* --user: "Bearer <token>", or "" */
	struct rmq_runtime *rt;
	struct bthread *th;
	unsigned nthreads;
	unsigned total_conns;      /* producing connections (pacing splits the rate) */
	_Atomic unsigned open_conns; /* every connection (a run ends when all are lost) */
	uint32_t partitions;       /* written by thread 0 before "setup" */
	/* The brokers that lead the topic's partitions (written by thread 0
	 * before "setup"): 0 is --target; each has the partitions it leads. */
	unsigned nbrokers;
	struct {
		char host[256];
		uint16_t port;
		uint32_t *parts;
		uint32_t nparts;
		unsigned active;   /* among the brokers that lead some */
	} brokers[BROKERS_MAX];
	bool topic_existed;
	unsigned ready;            /* thread 0 only */
	_Atomic uint64_t t_start, t_warm, t_end, t_stop;
	_Atomic uint64_t measured;
	_Atomic int stop_posted;
	_Atomic unsigned conns_lost;
	_Atomic bool all_lost;
	_Atomic unsigned done;
	_Atomic int fatal;
	char fatal_msg[512];
	int64_t wall_offset_ns;    /* CLOCK_REALTIME - CLOCK_MONOTONIC at start */
	_Atomic bool finished;
	_Atomic uint64_t commits, joins;   /* --group: acknowledged commits, generations joined */
	_Atomic bool pids_unsupported;     /* InitTransaction UNIMPLEMENTED: plain producers */
} g;

/* ---- small helpers -------------------------------------------------------------- */

/* The ApiVersion every protobuf-c request (setup and group calls; the hot
 * path encodes with pbwire) is written against. */
static Rustmq__Common__ApiVersion api_v1 = {
	PROTOBUF_C_MESSAGE_INIT(&rustmq__common__api_version__descriptor), 1, 0, 0};

static __attribute__((format(printf, 1, 2))) void fatal(const char *fmt, ...)
{
	int zero = 0;
	if (atomic_compare_exchange_strong(&g.fatal, &zero, 1)) {
		va_list ap;
		va_start(ap, fmt);
		vsnprintf(g.fatal_msg, sizeof(g.fatal_msg), fmt, ap);
		va_end(ap);
	}
	rmq_runtime_stop(g.rt);
}

static uint64_t wall_stamp(uint64_t mono_ns)
{
	return (uint64_t)((int64_t)mono_ns + g.wall_offset_ns);
}

static bool measuring(uint64_t now)
{
	return now >= atomic_load_explicit(&g.t_warm, memory_order_relaxed) &&
	       now < atomic_load_explicit(&g.t_stop, memory_order_relaxed);
}

static void count_error(struct bthread *t, int slot)
{
	if (slot < 0 || slot >= ERR_SLOTS)
		slot = ERR_LOCAL; /* BAD_RESPONSE */
	t->err[slot]++;
	atomic_fetch_add_explicit(&t->all_errors, 1, memory_order_relaxed);
}

static void err_grpc(struct bthread *t, enum rmq_grpc_status st)
{
	/* Our own cancellations at the end are not errors. */
	if (st == RMQ_GRPC_CANCELLED && t->phase >= PH_DRAIN)
		return;
	count_error(t, ERR_GRPC + (int)st);
}

static void err_rmq(struct bthread *t, int code)
{
	if (code >= 1000)
		count_error(t, ERR_LOCAL + (code - 1000));
	else if (code > 0 && code < ERR_RMQ_MAX)
		count_error(t, ERR_RMQ + code);
	else
		count_error(t, ERR_LOCAL);
}

static void err_client(struct bthread *t, int rc)
{
	(void)rc;
	count_error(t, ERR_LOCAL + 3);
}

static const char *err_name(int slot, char *buf, size_t len)
{
	static const char *const local[ERR_LOCAL_N] = {"BAD_RESPONSE", "CRC_MISMATCH",
							"DECOMPRESS_FAILED", "CLIENT_ERROR"};
	if (slot < ERR_RMQ) {
		snprintf(buf, len, "grpc:%s", rmq_grpc_status_name(slot - ERR_GRPC));
	} else if (slot < ERR_LOCAL) {
		const ProtobufCEnumValue *v = protobuf_c_enum_descriptor_get_value(
			&rustmq__common__error_code__descriptor, slot - ERR_RMQ);
		if (v)
			snprintf(buf, len, "rmq:%s", v->name);
		else
			snprintf(buf, len, "rmq:%d", slot - ERR_RMQ);
	} else {
		snprintf(buf, len, "bench:%s", local[slot - ERR_LOCAL]);
	}
	return buf;
}

/* Ends the run on every thread (once): the measurement stops at t_stop. */
static void stop_everyone(struct bthread *t, uint64_t t_stop)
{
	if (atomic_exchange(&g.stop_posted, 1) != 0)
		return;
	if (t_stop < atomic_load(&g.t_stop))
		atomic_store(&g.t_stop, t_stop);
	for (unsigned i = 0; i < g.nthreads; i++)
		rmq_shard_post(t->s, i, &g.th[i].stop_msg);
}

/* Counts n messages of `bytes` for a stats block; true when measured. */
static bool account(struct bthread *t, struct stats *st, bool consume, uint64_t now, uint64_t n,
		    uint64_t bytes)
{
	if (consume) {
		atomic_fetch_add_explicit(&t->all_cons_msgs, n, memory_order_relaxed);
		atomic_fetch_add_explicit(&t->all_cons_bytes, bytes, memory_order_relaxed);
	} else {
		atomic_fetch_add_explicit(&t->all_prod_msgs, n, memory_order_relaxed);
		atomic_fetch_add_explicit(&t->all_prod_bytes, bytes, memory_order_relaxed);
	}
	if (!measuring(now))
		return false;
	st->msgs += n;
	st->bytes += bytes;
	/* --messages counts what the mode reports: produced, or consumed. */
	bool counts = (g.o.mode == BENCH_PRODUCE) != consume;
	if (g.o.messages && counts) {
		uint64_t total = atomic_fetch_add(&g.measured, n) + n;
		if (total >= g.o.messages)
			stop_everyone(t, now + 1);
	}
	return true;
}

static void check_drained(struct bthread *t);

/* True while calls may start on bc (a lost connection leaves cc NULL). */
static bool conn_ok(const struct bconn *bc)
{
	return bc->cc && rmq_client_conn_ok(bc->cc);
}

/* ---- producers ---------------------------------------------------------------- */

/*
 * Lost calls (--idempotent, the default).  Each producer slot is a producer
 * of its own: InitTransaction gives it an id at setup, and it numbers its
 * batches per partition (RecordBatch producer_id and base_sequence, as
 * `rmq produce` does).  A slot has one call in flight, so a partition's
 * batches from one producer are in order with nothing between them: the
 * broker's rule (dedup.h: a batch follows the producer's last one, and its
 * last RMQ_DEDUP_RECENT batches are remembered) always holds.
 *
 *   sent ─► answered OK, or DUPLICATE_SEQUENCE (written before: success)
 *        ─► lost: UNAVAILABLE, DEADLINE_EXCEEDED, its stream closed, or
 *           NOT_LEADER / LEADER_NOT_AVAILABLE / NOT_AVAILABLE
 *             ─► the topic's metadata looked up again (meta_refresh), and
 *                after RETRY_NS the same batch, same sequence, as a unary
 *                call to the partition's leader then (prod_resend); at
 *                most LOST_TRIES_MAX times, then an error
 *        ─► refused otherwise: an error.  Refused before it was written
 *           (MESSAGE_TOO_LARGE, NOT_ENOUGH_REPLICAS, ...: the broker forgets
 *           the sequence), the next batch takes its sequence; after a
 *           refusal that may follow the write (NOT_ENOUGH_REPLICAS_AFTER_
 *           APPEND, TIMEOUT, a sequence or epoch refused) or a failed call
 *           the slot takes a new producer id, its next sequence not known
 *
 * A resend counts in the summary's retries, not in its errors.
 */

static void prod_kick(struct bconn *bc);
static void meta_refresh(struct bthread *t);
static void pid_ask(struct pslot *sl);

/* The next partition bc produces to: those its broker leads, in turn. */
static uint32_t next_partition(struct bconn *bc)
{
	const struct bthread *t = bc->t;
	return t->lead_parts[bc->broker][bc->rr++ % t->lead_n[bc->broker]];
}

/* The broker at host (hlen bytes):port among g.brokers, else g.nbrokers. */
static unsigned broker_find(const char *host, size_t hlen, unsigned long port)
{
	for (unsigned b = 0; b < g.nbrokers; b++)
		if (g.brokers[b].port == port && strlen(g.brokers[b].host) == hlen &&
		    memcmp(g.brokers[b].host, host, hlen) == 0)
			return b;
	return g.nbrokers;
}

/* Partition p goes to broker `to`'s list in thread t: its producers pick
 * it there, readers ask that broker.  Every broker of a cluster has
 * connections (route_partitions). */
static void move_partition(struct bthread *t, uint32_t p, unsigned to)
{
	if (p >= g.partitions || to >= g.nbrokers || t->part_broker[p] == to)
		return;
	unsigned from = t->part_broker[p];
	uint32_t *v = t->lead_parts[from];
	for (uint32_t i = 0; i < t->lead_n[from]; i++) {
		if (v[i] == p) {
			v[i] = v[--t->lead_n[from]];
			break;
		}
	}
	t->lead_parts[to][t->lead_n[to]++] = p;
	t->part_broker[p] = to;
	if (!t->followed && t->id == 0)
		fprintf(stderr, "rmq-bench: partition %u is led by %s:%u now; following it\n", p,
			g.brokers[to].host, (unsigned)g.brokers[to].port);
	t->followed = true;
	for (unsigned i = 0; i < t->nconns; i++)
		if (t->conns[i].broker == to)
			prod_kick(&t->conns[i]); /* it may have had nothing to send */
}

/* A NOT_LEADER answer named partition p's leader at host:port. */
static void follow_leader(struct bthread *t, uint32_t p, const char *endpoint)
{
	const char *colon = strrchr(endpoint, ':');
	if (colon)
		move_partition(t, p,
			       broker_find(endpoint, (size_t)(colon - endpoint),
					   strtoul(colon + 1, NULL, 10)));
}

/* A connection of thread t to broker b that can take calls (the search
 * starts at salt), or NULL. */
static struct bconn *conn_to(struct bthread *t, unsigned b, unsigned salt)
{
	for (unsigned i = 0; i < t->nconns; i++) {
		struct bconn *c = &t->conns[(i + salt) % t->nconns];
		if (c->broker == b && conn_ok(c))
			return c;
	}
	return NULL;
}

/* A call that failed this way may have been lost with its leader. */
static bool lost_status(enum rmq_grpc_status st)
{
	return st == RMQ_GRPC_UNAVAILABLE || st == RMQ_GRPC_DEADLINE_EXCEEDED;
}

/* A refusal after which the broker may hold the batch (or its producer
 * state differs from ours): the producer's next sequence is not known. */
static bool outcome_unknown(int code)
{
	/* RESOURCE_EXHAUSTED: the broker may have taken the sequence before
	 * it ran out of memory (src/broker/produce.c exec_on_owner). */
	return code == EC(NOT_ENOUGH_REPLICAS_AFTER_APPEND) || code == EC(TIMEOUT) ||
	       code == EC(OUT_OF_ORDER_SEQUENCE) || code == EC(INVALID_PRODUCER_EPOCH) ||
	       code == EC(UNKNOWN_PRODUCER_ID) || code == EC(RESOURCE_EXHAUSTED);
}

/* A refusal that the partition's next leader (or a moment) cures. */
static bool moved_code(int code)
{
	return code == EC(NOT_LEADER) || code == EC(LEADER_NOT_AVAILABLE) ||
	       code == EC(NOT_AVAILABLE);
}

static void prod_free(struct bconn *bc, struct pslot *sl)
{
	sl->next_free = bc->free;
	bc->free = sl;
	bc->busy--;
}

/* sl's batch is given up (its error counted).  A plain slot is free again;
 * an idempotent one takes a new producer id first, during the run, and is
 * set aside after it. */
static void prod_drop(struct pslot *sl)
{
	struct bthread *t = sl->bc->t;
	if (!sl->batch.producer_id) {
		prod_free(sl->bc, sl);
		return;
	}
	sl->batch.producer_id = 0;
	sl->tries = 0;
	if (t->phase == PH_RUN)
		pid_ask(sl);
	else
		sl->bc->busy--;
}

static void prod_resend_fn(struct rmq_timer *tm);

/* sl's batch was lost on its way, or refused by a broker that does not
 * lead its partition: sent again after RETRY_NS (see "lost calls"), or
 * counted as an error (st, else code) when it cannot be. */
static void prod_lost(struct pslot *sl, enum rmq_grpc_status st, int code)
{
	struct bthread *t = sl->bc->t;
	if (!sl->batch.producer_id || t->cut || t->phase == PH_DONE ||
	    ++sl->tries > LOST_TRIES_MAX) {
		if (st != RMQ_GRPC_OK)
			err_grpc(t, st);
		else
			err_rmq(t, code);
		prod_drop(sl);
		return;
	}
	t->retries++;
	meta_refresh(t);
	if (rmq_timer_start(t->s, &sl->retry, rmq_now_ns() + RETRY_NS, prod_resend_fn) < 0) {
		fatal("timer heap full");
		return;
	}
	t->inflight++; /* the drain waits for the resend */
}

/* An answer for slot sl (or its failure, code BENCH_ERR_BAD_RESPONSE):
 * counted, and the slot free again, or its batch sent again. */
static void prod_result(struct bconn *bc, struct pslot *sl, const struct bench_produce_result *r)
{
	struct bthread *t = bc->t;
	uint64_t now = rmq_now_ns();
	uint32_t ok_records = r->ok_records;
	int code = r->code;

	if (sl->batch.producer_id) {
		if (code == EC(DUPLICATE_SEQUENCE)) {
			code = 0; /* a resend the old leader had written */
			ok_records = sl->batch.records;
			t->rewritten++;
		}
		if (moved_code(code)) {
			if (code == EC(NOT_LEADER) && r->leader[0])
				follow_leader(t, sl->partition, r->leader);
			prod_lost(sl, RMQ_GRPC_OK, code);
			return;
		}
	}
	if (ok_records) {
		if (account(t, &t->prod, false, now, ok_records,
			    (uint64_t)ok_records * g.o.msg_bytes))
			rmq_hist_record(&t->prod.hist, rmq_pace_latency(sl->t0, now));
	}
	if (code == 0) {
		sl->tries = 0;
		prod_free(bc, sl);
		return;
	}
	err_rmq(t, code);
	if (code == EC(NOT_LEADER) && r->leader[0])
		follow_leader(t, sl->partition, r->leader);
	if (sl->batch.producer_id && !outcome_unknown(code)) {
		/* Refused before it was written, and forgotten by the broker
		 * (dedup.h): the same sequence goes to the next batch. */
		sl->seq[sl->partition] = sl->batch.base_sequence;
		prod_free(bc, sl);
		return;
	}
	prod_drop(sl);
}

static void prod_unary_done(void *arg, enum rmq_grpc_status status, const char *message,
			    const uint8_t *resp, size_t len)
{
	struct pslot *sl = arg;
	struct bconn *bc = sl->bc;
	struct bthread *t = bc->t;
	(void)message;

	t->inflight--;
	if (t->phase == PH_DONE)
		return; /* torn down */
	if (status != RMQ_GRPC_OK) {
		if (lost_status(status)) {
			prod_lost(sl, status, 0);
		} else {
			err_grpc(t, status);
			prod_drop(sl);
		}
	} else {
		struct bench_produce_result r;
		/* A resend of a stream's batch is a ProduceBatch. */
		int prc = g.o.produce_unary ? bench_parse_produce_response(resp, len, &r)
					    : bench_parse_produce_batch_response(resp, len, &r);
		if (prc < 0) {
			err_rmq(t, BENCH_ERR_BAD_RESPONSE);
			prod_drop(sl);
		} else {
			prod_result(bc, sl, &r);
		}
	}
	if (t->phase == PH_RUN)
		prod_kick(bc);
	else
		check_drained(t);
}

/* Sends sl's batch again, the same bytes behind new request headers, as a
 * unary call to its partition's leader as this thread knows it. */
static void prod_resend(struct pslot *sl)
{
	struct bthread *t = sl->bc->t;
	struct bconn *via = conn_to(t, t->part_broker[sl->partition], sl->tries);
	size_t len;
	const uint8_t *req;
	int rc = RMQ_ECLOSED; /* no connection to its leader (yet) */

	if (via) {
		req = g.o.produce_unary
			      ? bench_encode_produce_records(&sl->batch, g.o.topic, sl->partition,
							     g.o.acks, ++t->corr, &len)
			      : bench_encode_produce_batch(&sl->batch, g.o.topic, sl->partition,
							   g.o.acks, ++t->corr, &len);
		rc = rmq_client_unary(via->cc, g.o.produce_unary ? PATH_PRODUCE : PATH_PRODUCE_BATCH,
				      req, len, g.o.timeout_ns, prod_unary_done, sl, NULL);
	}
	if (rc == 0)
		t->inflight++;
	else
		prod_lost(sl, RMQ_GRPC_UNAVAILABLE, 0);
}

static void prod_resend_fn(struct rmq_timer *tm)
{
	struct pslot *sl = RMQ_CONTAINER_OF(tm, struct pslot, retry);
	struct bthread *t = sl->bc->t;
	t->inflight--;
	if (t->phase == PH_DONE)
		return;
	prod_resend(sl);
	check_drained(t);
}

static void pstream_open(struct bconn *bc);

static void pstream_message(struct rmq_ccall *c, void *arg, const uint8_t *msg, size_t len)
{
	struct bconn *bc = arg;
	struct bthread *t = bc->t;
	(void)c;

	if (bc->fifo_count == 0) {
		err_rmq(t, BENCH_ERR_BAD_RESPONSE); /* an answer nobody asked for */
		return;
	}
	struct pslot *sl = bc->fifo[bc->fifo_head];
	bc->fifo_head = (bc->fifo_head + 1) % (unsigned)g.o.streams;
	bc->fifo_count--;
	struct bench_produce_result r;
	if (bench_parse_produce_response(msg, len, &r) < 0) {
		err_rmq(t, BENCH_ERR_BAD_RESPONSE);
		prod_drop(sl);
	} else {
		prod_result(bc, sl, &r);
	}
	if (t->phase == PH_RUN) {
		prod_kick(bc);
	} else if (bc->fifo_count == 0 && !bc->half_closed && bc->pstream) {
		bc->half_closed = true;
		rmq_ccall_half_close(bc->pstream);
	}
}

static void pstream_restart_fn(struct rmq_timer *tm)
{
	struct bconn *bc = RMQ_CONTAINER_OF(tm, struct bconn, restart);
	if (bc->t->phase == PH_RUN) {
		pstream_open(bc);
		prod_kick(bc);
	}
}

static void pstream_close(struct rmq_ccall *c, void *arg, enum rmq_grpc_status status,
			  const char *message)
{
	struct bconn *bc = arg;
	struct bthread *t = bc->t;
	(void)c;
	(void)message;

	t->inflight--;
	bc->pstream = NULL;
	if (t->phase == PH_DONE)
		return; /* torn down */
	/* A stream lost with its broker is no error when its batches are
	 * sent again. */
	if (status != RMQ_GRPC_OK && !(g.o.idempotent && lost_status(status)))
		err_grpc(t, status);
	/* Requests still waiting for an answer are lost with the stream. */
	while (bc->fifo_count > 0) {
		struct pslot *sl = bc->fifo[bc->fifo_head];
		bc->fifo_head = (bc->fifo_head + 1) % (unsigned)g.o.streams;
		bc->fifo_count--;
		if (sl->batch.producer_id)
			prod_lost(sl, status != RMQ_GRPC_OK ? status : RMQ_GRPC_UNAVAILABLE, 0);
		else
			prod_free(bc, sl);
	}
	if (t->phase == PH_RUN) {
		if (rmq_timer_start(t->s, &bc->restart, rmq_now_ns() + RETRY_NS, pstream_restart_fn) < 0)
			fatal("timer heap full");
	} else {
		check_drained(t);
	}
}

static const struct rmq_ccall_ops pstream_ops = {pstream_message, pstream_close};

static void pstream_open(struct bconn *bc)
{
	struct bthread *t = bc->t;
	if (bc->pstream || !conn_ok(bc))
		return;
	int rc = rmq_ccall_start(bc->cc, PATH_PRODUCE_STREAM, 0, &pstream_ops, bc, &bc->pstream);
	if (rc < 0) {
		err_client(t, rc);
		bc->pstream = NULL;
		return;
	}
	bc->half_closed = false;
	bc->fifo_head = bc->fifo_count = 0;
	t->inflight++;
}

/* Sends one batch from slot sl, intended (or started) at t0. */
static void prod_send(struct bconn *bc, struct pslot *sl, uint64_t t0)
{
	struct bthread *t = bc->t;
	size_t len;
	const uint8_t *req;

	sl->t0 = t0;
	uint32_t p = next_partition(bc);
	sl->partition = p;
	sl->tries = 0;
	if (sl->batch.producer_id) {
		/* Sequences wrap from INT32_MAX to 0 (producer.proto). */
		sl->batch.base_sequence = sl->seq[p];
		sl->seq[p] = (int32_t)(((uint32_t)sl->seq[p] + sl->batch.records) & INT32_MAX);
	}
	sl->batch.partition = p;
	sl->batch.unique = g.o.unique_values && sl->batch.producer_id;
	int rc = bench_batch_seal(&sl->batch, wall_stamp(t0));
	if (rc < 0) {
		err_rmq(t, BENCH_ERR_CODEC);
		if (sl->batch.producer_id)
			sl->seq[p] = sl->batch.base_sequence; /* not sent */
		prod_free(bc, sl);
		return;
	}
	if (g.o.produce_stream) {
		req = bench_encode_produce(&sl->batch, g.o.topic, p, g.o.acks, ++t->corr, &len);
		rc = bc->pstream ? rmq_ccall_send(bc->pstream, req, len) : RMQ_ECLOSED;
		if (rc == 0) {
			unsigned at = (bc->fifo_head + bc->fifo_count) % (unsigned)g.o.streams;
			bc->fifo[at] = sl;
			bc->fifo_count++;
			return;
		}
	} else {
		/* ProduceBatch, or Produce with the records themselves */
		if (g.o.produce_unary)
			req = bench_encode_produce_records(&sl->batch, g.o.topic, p, g.o.acks, ++t->corr,
							   &len);
		else
			req = bench_encode_produce_batch(&sl->batch, g.o.topic, p, g.o.acks, ++t->corr,
							 &len);
		rc = rmq_client_unary(bc->cc, g.o.produce_unary ? PATH_PRODUCE : PATH_PRODUCE_BATCH, req,
				      len, g.o.timeout_ns, prod_unary_done, sl, NULL);
		if (rc == 0) {
			t->inflight++;
			return;
		}
	}
	err_client(t, rc);
	if (sl->batch.producer_id)
		sl->seq[p] = sl->batch.base_sequence; /* not sent: the sequence is free again */
	prod_free(bc, sl);
}

static void pace_fn(struct rmq_timer *tm)
{
	prod_kick(RMQ_CONTAINER_OF(tm, struct bconn, pace_timer));
}

/* Fills free slots: at once (closed loop), or as batches fall due. */
static void prod_kick(struct bconn *bc)
{
	struct bthread *t = bc->t;

	if (t->phase != PH_RUN || !conn_ok(bc) || t->lead_n[bc->broker] == 0)
		return;
	if (g.o.produce_stream && !bc->pstream)
		return; /* reopened by its timer */
	while (bc->free) {
		uint64_t now = rmq_now_ns(), t0 = now;
		if (bc->paced && !rmq_pace_take(&bc->pace, now, &t0)) {
			if (rmq_timer_start(t->s, &bc->pace_timer, rmq_pace_peek(&bc->pace), pace_fn) < 0)
				fatal("timer heap full");
			return;
		}
		struct pslot *sl = bc->free;
		bc->free = sl->next_free;
		bc->busy++;
		prod_send(bc, sl, t0);
		if (t->phase != PH_RUN || (g.o.produce_stream && !bc->pstream))
			return;
	}
}

/* ---- leaders looked up again (every thread, during the run) ------------------------ */

static void meta_done(void *arg, enum rmq_grpc_status status, const char *message,
		      const uint8_t *resp, size_t len)
{
	struct bthread *t = arg;
	(void)message;

	t->inflight--;
	t->meta_busy = false;
	if (t->phase == PH_DONE)
		return;
	Rustmq__Client__GetTopicMetadataResponse *mr =
		status == RMQ_GRPC_OK ? rustmq__client__get_topic_metadata_response__unpack(NULL, len, resp)
				      : NULL;
	if (mr && mr->error_code == 0 && mr->n_topics == 1 && mr->topics[0]->error_code == 0) {
		const Rustmq__Common__TopicMetadata *tm = mr->topics[0];
		for (size_t p = 0; p < tm->n_partitions && p < g.partitions; p++) {
			const char *leader = tm->partitions[p]->leader_id;
			for (size_t k = 0; *leader && k < mr->n_brokers; k++) {
				const Rustmq__Common__BrokerInfo *bi = mr->brokers[k];
				if (!bi->id || strcmp(bi->id->id, leader) != 0 || !bi->host)
					continue;
				/* One broker is --target, whatever name it advertises. */
				unsigned b = mr->n_brokers == 1 ? 0
								: broker_find(bi->host, strlen(bi->host),
									      bi->port);
				move_partition(t, (uint32_t)p, b);
			}
		}
	}
	if (mr)
		rustmq__client__get_topic_metadata_response__free_unpacked(mr, NULL);
	check_drained(t);
}

/* Asks for the topic's leaders again (one look-up in flight per thread, at
 * most one per RETRY_NS), over the next connection that can take it. */
static void meta_refresh(struct bthread *t)
{
	uint64_t now = rmq_now_ns();
	if (t->meta_busy || now < t->meta_at + RETRY_NS || t->phase == PH_DONE || t->cut)
		return;
	if (!t->meta_req) {
		Rustmq__Client__GetTopicMetadataRequest req =
			RUSTMQ__CLIENT__GET_TOPIC_METADATA_REQUEST__INIT;
		char *topics[1] = {(char *)g.o.topic};
		req.version = &api_v1;
		req.client_id = "rmq-bench";
		req.topics = topics;
		req.n_topics = 1;
		t->meta_len = rustmq__client__get_topic_metadata_request__get_packed_size(&req);
		t->meta_req = malloc(t->meta_len);
		if (!t->meta_req)
			return;
		rustmq__client__get_topic_metadata_request__pack(&req, t->meta_req);
	}
	for (unsigned i = 0; i < t->nconns; i++) {
		struct bconn *c = &t->conns[t->meta_rr++ % t->nconns];
		if (!conn_ok(c))
			continue;
		if (rmq_client_unary(c->cc, PATH_TOPIC_METADATA, t->meta_req, t->meta_len,
				     META_TIMEOUT_NS, meta_done, t, NULL) == 0) {
			t->meta_busy = true;
			t->meta_at = now;
			t->inflight++;
		}
		return;
	}
}

/* ---- producer ids (--idempotent, at setup) -------------------------------------- */

static void setup_readers(struct bthread *t);

/* Producer slot k of thread t, counting every connection's. */
static struct pslot *slot_at(struct bthread *t, unsigned k)
{
	return &t->conns[k / (unsigned)g.o.streams].slots[k % (unsigned)g.o.streams];
}

/* Asks InitTransaction for producer ids, a window of --streams at a time;
 * the readers' setup follows the last. */
static void pid_pump(struct bthread *t)
{
	while (t->pid_out < (unsigned)g.o.streams && t->pid_next < t->pid_total) {
		struct pslot *sl = slot_at(t, t->pid_next++);
		if (atomic_load(&g.pids_unsupported)) {
			t->pid_done++;
			continue;
		}
		t->pid_out++;
		pid_ask(sl);
	}
	if (t->pid_done == t->pid_total && t->phase == PH_SETUP && !t->pids_ready) {
		t->pids_ready = true;
		setup_readers(t);
	}
}

/* sl has its producer id (0: the broker gives none). */
static void pid_got(struct pslot *sl, int64_t id)
{
	struct bthread *t = sl->bc->t;
	sl->batch.producer_id = id;
	sl->tries = 0;
	memset(sl->seq, 0, (size_t)g.partitions * sizeof(*sl->seq));
	if (t->phase == PH_SETUP) {
		t->pid_out--;
		t->pid_done++;
		pid_pump(t);
		return;
	}
	prod_free(sl->bc, sl); /* a new id during the run */
	if (t->phase == PH_RUN)
		prod_kick(sl->bc);
	else
		check_drained(t);
}

static void pid_retry_fn(struct rmq_timer *tm)
{
	struct pslot *sl = RMQ_CONTAINER_OF(tm, struct pslot, retry);
	struct bthread *t = sl->bc->t;
	t->inflight--;
	if (t->phase == PH_SETUP || t->phase == PH_RUN)
		pid_ask(sl);
	else if (t->phase == PH_DRAIN) {
		sl->bc->busy--; /* set aside */
		check_drained(t);
	}
}

static void pid_answer(void *arg, enum rmq_grpc_status status, const char *message,
		       const uint8_t *resp, size_t len)
{
	struct pslot *sl = arg;
	struct bthread *t = sl->bc->t;

	t->inflight--;
	if (t->phase == PH_DONE)
		return;
	Rustmq__Client__InitTransactionResponse *r =
		status == RMQ_GRPC_OK ? rustmq__client__init_transaction_response__unpack(NULL, len, resp)
				      : NULL;
	int code = r ? (int)r->error_code : -1;
	int64_t id = r && code == 0 ? r->producer_id : 0;
	if (r)
		rustmq__client__init_transaction_response__free_unpacked(r, NULL);
	if (id > 0 || status == RMQ_GRPC_UNIMPLEMENTED) {
		if (id == 0 && !atomic_exchange(&g.pids_unsupported, true))
			fprintf(stderr, "rmq-bench: the broker gives no producer ids (an older rmqd): "
					"producers are not idempotent\n");
		pid_got(sl, id);
		return;
	}
	/* The controller electing a leader, or slow to commit: again. */
	bool again = lost_status(status) || code == EC(NOT_CONTROLLER) || code == EC(TIMEOUT);
	unsigned max = t->phase == PH_SETUP ? SETUP_TRIES : LOST_TRIES_MAX;
	if (!again || ++sl->tries > max || (t->phase != PH_SETUP && t->phase != PH_RUN)) {
		if (t->phase == PH_SETUP) {
			fatal("InitTransaction failed: %s", status != RMQ_GRPC_OK
								? rmq_grpc_status_name(status)
								: r ? "an error code" : message);
			return;
		}
		if (status != RMQ_GRPC_OK)
			err_grpc(t, status);
		else
			err_rmq(t, code < 0 ? BENCH_ERR_BAD_RESPONSE : code);
		sl->bc->busy--; /* set aside: no id */
		check_drained(t);
		return;
	}
	if (rmq_timer_start(t->s, &sl->retry, rmq_now_ns() + RETRY_NS, pid_retry_fn) < 0) {
		fatal("timer heap full");
		return;
	}
	t->inflight++;
}

/* InitTransaction for slot sl, over a connection that can take it. */
static void pid_ask(struct pslot *sl)
{
	struct bthread *t = sl->bc->t;
	int rc = RMQ_ECLOSED;
	for (unsigned i = 0; i < t->nconns && rc != 0; i++) {
		struct bconn *c = &t->conns[(i + sl->tries) % t->nconns];
		if (conn_ok(c))
			rc = rmq_client_unary(c->cc, PATH_INIT_TRANSACTION, t->pid_req, t->pid_len,
					      g.o.timeout_ns, pid_answer, sl, NULL);
	}
	t->inflight++;
	if (rc != 0)
		pid_answer(sl, RMQ_GRPC_UNAVAILABLE, "not sent", NULL, 0);
}

/* Gives every producer slot of thread t its producer id, then goes on
 * with the readers' setup.  Returns 0 or -1 (fatal). */
static int pids_start(struct bthread *t)
{
	uint64_t slots = (uint64_t)t->nconns * g.o.streams;
	if (slots * g.nthreads * g.partitions * sizeof(int32_t) > SEQ_MEMORY_MAX) {
		fatal("--idempotent: %" PRIu64 " producers x %u partitions need more than %llu MiB of "
		      "sequence tables (use --idempotent=false)",
		      slots * g.nthreads, g.partitions, SEQ_MEMORY_MAX >> 20);
		return -1;
	}
	for (unsigned k = 0; k < slots; k++) {
		struct pslot *sl = slot_at(t, (unsigned)k);
		sl->seq = calloc(g.partitions, sizeof(*sl->seq));
		if (!sl->seq) {
			fatal("out of memory");
			return -1;
		}
	}
	Rustmq__Client__InitTransactionRequest q = RUSTMQ__CLIENT__INIT_TRANSACTION_REQUEST__INIT;
	q.version = &api_v1;
	q.client_id = "rmq-bench";
	t->pid_len = rustmq__client__init_transaction_request__pack(&q, t->pid_req);
	t->pid_total = (unsigned)slots;
	pid_pump(t);
	return 0;
}

/* ---- consumers ------------------------------------------------------------------- */

static void reader_issue(struct reader *r);
static void member_drive(struct reader *r);
static void member_took(struct reader *r);
static bool member_may_read(const struct reader *r);
static void member_placed(struct reader *r);

static void sink_record(void *arg, const uint8_t *value, size_t len)
{
	struct reader *r = arg;
	struct bthread *t = r->t;

	r->got_msgs++;
	r->got_bytes += len;
	if (!r->in_window)
		return;
	if (len >= BENCH_STAMP_BYTES && memcmp(value, BENCH_STAMP_MAGIC, 4) == 0) {
		uint64_t stamp = 0;
		for (int i = 7; i >= 0; i--)
			stamp = stamp << 8 | value[4 + i];
		rmq_hist_record(&t->cons.hist, rmq_pace_latency(stamp, wall_stamp(r->now)));
	}
}

static void sink_error(void *arg, int code)
{
	struct reader *r = arg;
	/* A partition whose leader moved: looked up again, read on from the
	 * same offset at the next leader (reader_issue). */
	if (moved_code(code)) {
		r->moved = true;
		return;
	}
	err_rmq(r->t, code);
}

/* Walks one FetchResponse; returns the records delivered. */
static int reader_take(struct reader *r, const uint8_t *msg, size_t len)
{
	struct bthread *t = r->t;
	r->now = rmq_now_ns();
	r->in_window = measuring(r->now);
	r->got_msgs = r->got_bytes = 0;
	int n = bench_parse_fetch_response(msg, len, r->fparts, r->fn, &r->sink);
	if (n < 0)
		err_rmq(t, BENCH_ERR_BAD_RESPONSE);
	if (r->got_msgs)
		account(t, &t->cons, true, r->now, r->got_msgs, r->got_bytes);
	return n;
}

static void retry_fn(struct rmq_timer *tm)
{
	struct reader *r = RMQ_CONTAINER_OF(tm, struct reader, retry);
	if (r->m)
		member_drive(r);
	else if (r->t->phase == PH_RUN)
		reader_issue(r);
}

static void reader_retry_later(struct reader *r)
{
	if (rmq_timer_start(r->t->s, &r->retry, rmq_now_ns() + RETRY_NS, retry_fn) < 0)
		fatal("timer heap full");
}

/* The call that read r->sub is over: its offsets go back to r->parts. */
static void reader_settle(struct reader *r)
{
	if (r->fparts != r->sub)
		return;
	for (uint32_t i = 0; i < r->fn; i++)
		for (uint32_t k = 0; k < r->nparts; k++)
			if (r->parts[k].partition == r->sub[i].partition)
				r->parts[k].offset = r->sub[i].offset;
	r->fparts = r->parts;
	r->fn = r->nparts;
}

/* A reader call ended with status: true when the reader lost it to a
 * leader that moved (or went away); its leaders are then looked up again. */
static bool reader_lost(struct reader *r, enum rmq_grpc_status status)
{
	struct bthread *t = r->t;
	if (status != RMQ_GRPC_OK && lost_status(status) && t->phase == PH_RUN && !r->m)
		r->moved = true;
	else if (status != RMQ_GRPC_OK)
		err_grpc(t, status);
	if (!r->moved)
		return false;
	r->moved = false;
	t->retries++;
	meta_refresh(t);
	return true;
}

static void fetch_done(void *arg, enum rmq_grpc_status status, const char *message,
		       const uint8_t *resp, size_t len)
{
	struct reader *r = arg;
	struct bthread *t = r->t;
	(void)message;

	t->inflight--;
	r->call = NULL;
	int n = 0;
	uint64_t errs = atomic_load_explicit(&t->all_errors, memory_order_relaxed);
	if (status == RMQ_GRPC_OK)
		n = reader_take(r, resp, len);
	reader_settle(r);
	bool lost = reader_lost(r, status);
	if (r->m)
		member_took(r);
	if (t->phase != PH_RUN || (r->m && !member_may_read(r))) {
		if (r->m)
			member_drive(r); /* the group's next step waited for this Fetch */
		check_drained(t);
		return;
	}
	/* Back off after failures that brought nothing, not to spin. */
	if (lost ||
	    (n <= 0 && atomic_load_explicit(&t->all_errors, memory_order_relaxed) != errs))
		reader_retry_later(r);
	else
		reader_issue(r);
}

static void sub_message(struct rmq_ccall *c, void *arg, const uint8_t *msg, size_t len)
{
	(void)c;
	reader_take(arg, msg, len);
}

static void sub_close(struct rmq_ccall *c, void *arg, enum rmq_grpc_status status,
		      const char *message)
{
	struct reader *r = arg;
	struct bthread *t = r->t;
	(void)c;
	(void)message;

	t->inflight--;
	r->call = NULL;
	reader_settle(r);
	if (t->phase != PH_RUN) {
		check_drained(t);
		return;
	}
	/* A subscription ends only on failure (or when every partition
	 * failed): count it (unless its leader moved) and subscribe again
	 * from where it got to. */
	(void)reader_lost(r, status);
	reader_retry_later(r);
}

static const struct rmq_ccall_ops sub_ops = {sub_message, sub_close};

static void reader_issue(struct reader *r)
{
	struct bthread *t = r->t;
	const struct bench_opts *o = &g.o;
	int len, rc;

	if (t->phase != PH_RUN || r->call)
		return;
	if (r->m && (!member_may_read(r) || r->nparts == 0))
		return; /* the group's next step first (member_drive), or idle */
	r->fparts = r->parts;
	r->fn = r->nparts;
	if (!r->m && r->nparts > 0) {
		/* Ask the broker that leads the parts, as this thread knows
		 * (their leaders move); parts split between brokers are read
		 * from each in turn. */
		unsigned b = t->part_broker[r->parts[r->turn % r->nparts].partition];
		bool split = false;
		for (uint32_t i = 0; i < r->nparts && !split; i++)
			split = t->part_broker[r->parts[i].partition] != b;
		if (split) {
			r->turn++;
			r->fn = 0;
			for (uint32_t i = 0; i < r->nparts; i++)
				if (t->part_broker[r->parts[i].partition] == b)
					r->sub[r->fn++] = r->parts[i];
			r->fparts = r->sub;
		}
		if (r->bc->broker != b || !conn_ok(r->bc)) {
			struct bconn *c = conn_to(t, b, (unsigned)(r - t->readers));
			if (!c) {
				r->fparts = r->parts; /* nothing read */
				meta_refresh(t);
				reader_retry_later(r);
				return;
			}
			r->bc = c;
		}
	}
	if (!conn_ok(r->bc))
		return;
	if (o->consume_subscribe) {
		len = bench_encode_subscribe(r->req, r->req_cap, o->topic, r->fparts, r->fn,
					     (uint32_t)o->fetch_max_bytes,
					     (uint32_t)o->partition_max_bytes);
		rc = len < 0 ? len
			     : rmq_client_server_stream(r->bc->cc, PATH_SUBSCRIBE, r->req, (size_t)len,
							0, &sub_ops, r, &r->call);
	} else {
		len = bench_encode_fetch(r->req, r->req_cap, o->topic, r->fparts, r->fn,
					 o->fetch_wait_ns, (uint32_t)o->fetch_max_bytes,
					 (uint32_t)o->partition_max_bytes);
		rc = len < 0 ? len
			     : rmq_client_unary(r->bc->cc, PATH_FETCH, r->req, (size_t)len,
						o->fetch_wait_ns + o->timeout_ns, fetch_done, r, &r->call);
	}
	if (rc < 0) {
		r->call = NULL;
		r->fparts = r->parts;
		err_client(t, rc);
		reader_retry_later(r);
		return;
	}
	t->inflight++;
}

/* ---- setup: start offsets (every thread) -------------------------------------------- */

static void post_ready(struct bthread *t)
{
	rmq_shard_post(t->s, 0, &t->ready_msg);
}

static int list_offsets_start(struct reader *r);

static void lo_retry_fn(struct rmq_timer *tm)
{
	struct reader *r = RMQ_CONTAINER_OF(tm, struct reader, retry);
	int rc = list_offsets_start(r);
	if (rc < 0)
		fatal("ListOffsets not sent: %s", rmq_strerror(rc));
}

static void list_offsets_done(void *arg, enum rmq_grpc_status status, const char *message,
			      const uint8_t *resp, size_t len)
{
	struct reader *r = arg;
	struct bthread *t = r->t;

	free(r->lo_req);
	r->lo_req = NULL;
	if (r->m) {
		t->inflight--;
		r->m->calling = false;
		if (t->phase >= PH_DRAIN) {
			member_drive(r);
			check_drained(t);
			return;
		}
	}
	if (status != RMQ_GRPC_OK) {
		fatal("ListOffsets failed: %s%s%s", rmq_grpc_status_name(status),
		      message[0] ? ": " : "", message);
		return;
	}
	Rustmq__Client__ListOffsetsResponse *lr =
		rustmq__client__list_offsets_response__unpack(NULL, len, resp);
	if (!lr) {
		fatal("ListOffsets: the answer does not parse");
		return;
	}
	if (lr->error_code != 0 || lr->n_partitions != r->nparts) {
		fatal("ListOffsets: error %d: %s", (int)lr->error_code, lr->error_message);
		rustmq__client__list_offsets_response__free_unpacked(lr, NULL);
		return;
	}
	for (size_t i = 0; i < lr->n_partitions; i++) {
		const Rustmq__Client__ListOffsetsPartitionResponse *pr = lr->partitions[i];
		/* A topic just created reaches its partitions' leaders a moment
		 * after the node that created it answered: ask again. */
		bool early = pr->error_code == EC(TOPIC_NOT_FOUND) ||
			     pr->error_code == EC(PARTITION_NOT_FOUND) ||
			     pr->error_code == EC(LEADER_NOT_AVAILABLE) ||
			     pr->error_code == EC(NOT_AVAILABLE); /* still opening its log */
		if (early && !r->m && ++r->lo_tries < SETUP_TRIES) {
			rustmq__client__list_offsets_response__free_unpacked(lr, NULL);
			if (rmq_timer_start(t->s, &r->retry, rmq_now_ns() + RETRY_NS, lo_retry_fn) < 0)
				fatal("timer heap full");
			return;
		}
		if (pr->error_code != 0) {
			fatal("ListOffsets: partition %u: error %d: %s", r->parts[i].partition,
			      (int)pr->error_code, pr->error_message);
			break;
		}
		r->parts[i].offset = pr->offset;
	}
	rustmq__client__list_offsets_response__free_unpacked(lr, NULL);
	if (r->m)
		member_placed(r); /* where the group has no commits */
	else if (--t->resolving == 0)
		post_ready(t);
}

/* Packs a ListOffsets request for r's partitions (setup time: protobuf-c). */
static int list_offsets_start(struct reader *r)
{
	Rustmq__Client__ListOffsetsRequest req = RUSTMQ__CLIENT__LIST_OFFSETS_REQUEST__INIT;
	Rustmq__Client__ListOffsetsPartition *lp = calloc(r->nparts, sizeof(*lp));
	Rustmq__Client__ListOffsetsPartition **lpp = calloc(r->nparts, sizeof(*lpp));
	Rustmq__Common__TopicPartition *tp = calloc(r->nparts, sizeof(*tp));
	int rc = -ENOMEM;

	if (!lp || !lpp || !tp)
		goto out;
	req.version = &api_v1;
	req.client_id = "rmq-bench";
	for (uint32_t i = 0; i < r->nparts; i++) {
		rustmq__common__topic_partition__init(&tp[i]);
		tp[i].topic = (char *)g.o.topic;
		tp[i].partition = r->parts[i].partition;
		rustmq__client__list_offsets_partition__init(&lp[i]);
		lp[i].topic_partition = &tp[i];
		lp[i].spec = g.o.from_latest ? RUSTMQ__CLIENT__OFFSET_SPEC__OFFSET_SPEC_LATEST
					     : RUSTMQ__CLIENT__OFFSET_SPEC__OFFSET_SPEC_EARLIEST;
		lpp[i] = &lp[i];
	}
	req.partitions = lpp;
	req.n_partitions = r->nparts;
	r->lo_len = rustmq__client__list_offsets_request__get_packed_size(&req);
	r->lo_req = malloc(r->lo_len ? r->lo_len : 1);
	if (!r->lo_req)
		goto out;
	rustmq__client__list_offsets_request__pack(&req, r->lo_req);
	rc = rmq_client_unary(r->bc->cc, PATH_LIST_OFFSETS, r->lo_req, r->lo_len, g.o.timeout_ns,
			      list_offsets_done, r, NULL);
	if (rc < 0) {
		free(r->lo_req);
		r->lo_req = NULL;
	}
out:
	free(lp);
	free(lpp);
	free(tp);
	return rc;
}

/* ---- consumer group (--group) -------------------------------------------------------- */

/*
 * With --group every reader is a member of the group, the same member as
 * `rmq consume --group` (tools/member.h, which draws the protocol): it
 * reads the partitions the coordinator assigns it from the group's commits
 * (else --from), commits the positions that moved every --commit-interval,
 * heartbeats, rejoins when the group rebalances (once its Fetch is back),
 * and at the end commits and leaves.  The member says what comes next;
 * member_drive sends its calls on the reader's connection (one at a time),
 * places the partitions without a commit with ListOffsets (--from), keeps
 * a timer at the member's next deadline, and lets the reader fetch while
 * the member is stable.
 *
 * Delivery is at least once, as for any Kafka consumer: what a member read
 * after its last commit that went through is read again by the
 * partition's next owner (a member removed for a missed session).
 * Group calls count in t->inflight, so the drain waits for them.
 */

static void member_error(void *arg, const char *what, enum rmq_grpc_status status, int code,
			 const char *message)
{
	struct reader *r = arg;
	(void)what;
	(void)message;
	if (r->m->quiet)
		return;
	if (status != RMQ_GRPC_OK)
		err_grpc(r->t, status);
	else
		err_rmq(r->t, code < 0 ? BENCH_ERR_BAD_RESPONSE : code);
}

static void member_joined(void *arg)
{
	(void)arg;
	atomic_fetch_add(&g.joins, 1);
}

static void member_committed(void *arg)
{
	(void)arg;
	atomic_fetch_add(&g.commits, 1);
}

static void member_commit_refused(void *arg, uint32_t partition, uint64_t offset, int code,
				  const char *message)
{
	struct reader *r = arg;
	(void)partition;
	(void)offset;
	(void)message;
	err_rmq(r->t, code);
}

static const struct rmq_member_ops member_ops = {
	.error = member_error,
	.joined = member_joined,
	.committed = member_committed,
	.commit_refused = member_commit_refused,
};

static int member_create(struct reader *r)
{
	const struct rmq_member_config cfg = {
		.group = g.o.group,
		.topic = g.o.topic,
		.client_id = "rmq-bench",
		.leave_reason = "rmq-bench run ended",
		.session_ns = GROUP_SESSION_NS,
		.commit_ns = g.o.commit_interval_ns,
		.call_timeout_ns = g.o.timeout_ns,
	};
	r->m = calloc(1, sizeof(*r->m));
	if (!r->m)
		return -ENOMEM;
	r->m->r = r;
	return rmq_member_init(&r->m->core, &cfg, &member_ops, r);
}

/* The reader may fetch: the member is stable and r->parts is its
 * assignment. */
static bool member_may_read(const struct reader *r)
{
	return rmq_member_readable(&r->m->core) && r->m->held == r->m->core.assignments;
}

/* A Fetch came back: the positions it moved are the member's to commit. */
static void member_took(struct reader *r)
{
	struct rmq_member *m = &r->m->core;
	if (r->m->held != m->assignments || r->nparts != m->nparts)
		return; /* read under an assignment the member has given up */
	for (uint32_t i = 0; i < r->nparts; i++)
		m->parts[i].offset = r->parts[i].offset;
}

/* r->parts becomes the member's partitions at their positions. */
static bool member_take_parts(struct reader *r)
{
	struct rmq_member *m = &r->m->core;
	if (m->nparts > r->parts_cap) {
		fatal("group '%s' assigned %" PRIu32 " partitions of a topic of %" PRIu32, g.o.group,
		      m->nparts, r->parts_cap);
		return false;
	}
	for (uint32_t i = 0; i < m->nparts; i++)
		r->parts[i] = (struct bench_rpart){m->parts[i].partition, m->parts[i].offset};
	r->nparts = m->nparts;
	return true;
}

static void member_wake_fn(struct rmq_timer *tm)
{
	member_drive(RMQ_CONTAINER_OF(tm, struct gmember, wake)->r);
}

static void member_call_done(void *arg, enum rmq_grpc_status status, const char *message,
			     const uint8_t *resp, size_t len)
{
	struct reader *r = arg;
	struct bthread *t = r->t;
	t->inflight--;
	r->m->calling = false;
	rmq_member_answer(&r->m->core, rmq_now_ns(), status, message, resp, len);
	member_drive(r);
	check_drained(t);
}

static void member_send(struct reader *r, const struct rmq_member_call *call)
{
	struct gmember *gm = r->m;
	struct bthread *t = r->t;
	/* A failure that lasts through the set-up is fatal. */
	if (!gm->counted && gm->core.tries > SETUP_TRIES) {
		fatal("could not join group '%s' (see the errors counted)", g.o.group);
		return;
	}
	int rc = conn_ok(r->bc) ? rmq_client_unary(r->bc->cc, call->path, call->req, call->len,
						   call->timeout_ns, member_call_done, r, NULL)
				: -ENOTCONN;
	if (rc == 0) {
		gm->calling = true;
		t->inflight++;
		return;
	}
	/* Not sent: counted here, answered as failed (the member retries it
	 * in its time), driven again after RETRY_NS. */
	err_client(t, rc);
	gm->quiet = true;
	rmq_member_answer(&gm->core, rmq_now_ns(), RMQ_GRPC_UNAVAILABLE, "not sent", NULL, 0);
	gm->quiet = false;
	if (rmq_timer_start(t->s, &gm->wake, rmq_now_ns() + RETRY_NS, member_wake_fn) < 0)
		fatal("timer heap full");
}

/* The partitions the group never committed start at --from. */
static void member_place(struct reader *r)
{
	struct bthread *t = r->t;
	if (!member_take_parts(r))
		return;
	int rc = list_offsets_start(r);
	if (rc < 0) {
		fatal("ListOffsets not sent: %s", rmq_strerror(rc));
		return;
	}
	r->m->calling = true;
	t->inflight++;
}

/* ListOffsets answered (into r->parts): the partitions without a commit
 * take its offsets. */
static void member_placed(struct reader *r)
{
	struct rmq_member *m = &r->m->core;
	for (uint32_t i = 0; i < m->nparts && i < r->nparts; i++)
		if (m->parts[i].offset == RMQ_MEMBER_NO_OFFSET)
			m->parts[i].offset = r->parts[i].offset;
	rmq_member_positioned(m, rmq_now_ns());
	member_drive(r);
}

/*
 * The member's next step, after any of its calls or its reader's Fetch
 * came back or its timer fired: one group call at a time; the member
 * itself waits for the reader's Fetch before it changes what is read.
 */
static void member_drive(struct reader *r)
{
	struct gmember *gm = r->m;
	struct bthread *t = r->t;
	struct rmq_member *m = &gm->core;
	if (gm->calling || t->phase == PH_DONE)
		return;
	struct rmq_member_call call;
	uint64_t wake;
	int step = rmq_member_next(m, rmq_now_ns(), r->call != NULL, &call, &wake);
	switch (step) {
	case RMQ_MEMBER_CALL:
		member_send(r, &call);
		return;
	case RMQ_MEMBER_POSITION:
		member_place(r);
		return;
	case RMQ_MEMBER_DONE:
		check_drained(t);
		return;
	case RMQ_MEMBER_WAIT:
		break;
	default:
		fatal("out of memory for group '%s'", g.o.group);
		return;
	}
	if (wake != UINT64_MAX && rmq_timer_start(t->s, &gm->wake, wake, member_wake_fn) < 0)
		fatal("timer heap full");
	if (!rmq_member_readable(m))
		return;
	if (gm->held != m->assignments) {
		if (!member_take_parts(r))
			return;
		gm->held = m->assignments;
	}
	if (!gm->counted) {
		gm->counted = true;
		if (--t->resolving == 0)
			post_ready(t);
	} else {
		reader_issue(r);
	}
}

/* Partition p goes to reader p % R of the R readers of every thread. */
/* The readers of this thread: per broker leading some partitions, one per
 * connection to it (e2e) or per stream slot (consume), each striping that
 * broker's partitions over every thread's readers. */
static int readers_create(struct bthread *t)
{
	const struct bench_opts *o = &g.o;
	unsigned per_thread = (unsigned)(o->mode == BENCH_E2E ? o->connections
							      : o->connections * o->streams);
	unsigned total = per_thread * g.nthreads;

	if (o->group[0] && g.nbrokers > 1) {
		fatal("--group: the topic's partitions are led by %u brokers; a group member here "
		      "reads over one connection (use a topic led by one broker)",
		      g.nbrokers);
		return -EINVAL;
	}
	t->readers = calloc((size_t)per_thread * g.nbrokers, sizeof(*t->readers));
	if (!t->readers)
		return -ENOMEM;
	for (unsigned b = 0; b < g.nbrokers; b++) {
		const uint32_t *bparts = g.brokers[b].parts;
		uint32_t bn = g.brokers[b].nparts;
		for (unsigned j = 0; j < per_thread; j++) {
			unsigned gid = t->id * per_thread + j;
			uint32_t n = 0;
			for (uint32_t q = gid; q < bn; q += total)
				n++;
			if (n == 0)
				break;
			struct reader *r = &t->readers[t->nreaders++];
			r->t = t;
			r->bc = &t->conns[b * (unsigned)o->connections + j % (unsigned)o->connections];
			/* A group member may be given any number of partitions. */
			uint32_t cap = o->group[0] ? g.partitions : n;
			r->parts = calloc(cap, sizeof(*r->parts));
			r->sub = calloc(cap, sizeof(*r->sub));
			r->parts_cap = cap;
			r->req_cap = 128 + (size_t)cap * (strlen(o->topic) + 64);
			r->req = malloc(r->req_cap);
			if (!r->parts || !r->sub || !r->req)
				return -ENOMEM;
			r->fparts = r->parts;
			if (o->group[0]) {
				if (member_create(r) < 0)
					return -ENOMEM;
			} else {
				r->nparts = n;
				n = 0;
				for (uint32_t q = gid; q < bn; q += total)
					r->parts[n++].partition = bparts[q];
			}
			r->sink = (struct bench_fetch_sink){
				.record = sink_record,
				.error = sink_error,
				.arg = r,
				.scratch_max = SCRATCH_MAX,
			};
		}
	}
	return 0;
}

static int conn_init(struct bthread *t, struct bconn *bc, unsigned index, unsigned broker);
static const struct rmq_client_conn_ops conn_ops;

/* Connects --connections to each broker but the bootstrap that leads some
 * of the topic's partitions; each conn_connected counts. */
static int extra_connect(struct bthread *t)
{
	const struct bench_opts *o = &g.o;
	for (unsigned b = 1; b < g.nbrokers; b++) {
		struct rmq_client_config cc;
		rmq_client_config_default(&cc);
		cc.host = g.brokers[b].host;
		cc.port = g.brokers[b].port;
		cc.tls = g.tls;
		cc.connections_max = (uint32_t)o->connections;
		cc.calls_max = (uint32_t)(2 * o->connections * o->streams + 8);
		cc.send_queue_max = (uint32_t)o->streams + 1;
		int rc = rmq_client_create(t->s, &cc, &t->cls[b]);
		if (rc == 0)
			rc = rmq_client_set_authorization(t->cls[b], g.authz);
		if (rc < 0) {
			fatal("cannot set up a client for broker %s:%u: %s", g.brokers[b].host,
			      (unsigned)g.brokers[b].port, rmq_strerror(rc));
			return rc;
		}
		for (unsigned i = 0; i < o->connections; i++) {
			struct bconn *bc = &t->conns[t->nconns];
			rc = conn_init(t, bc, t->nconns, b);
			if (rc == 0)
				rc = rmq_client_connect(t->cls[b], &conn_ops, bc, &bc->cc);
			if (rc < 0) {
				bc->cc = NULL;
				fatal("cannot connect to broker %s:%u: %s", g.brokers[b].host,
				      (unsigned)g.brokers[b].port, rmq_strerror(rc));
				return rc;
			}
			t->nconns++;
		}
	}
	return 0;
}

static void on_setup(struct rmq_xmsg *m)
{
	struct bthread *t = RMQ_CONTAINER_OF(m, struct bthread, setup_msg);

	if (!t->setup_seen) {
		for (unsigned b = 0; b < g.nbrokers; b++) {
			t->lead_parts[b] = calloc(g.partitions ? g.partitions : 1, sizeof(uint32_t));
			if (!t->lead_parts[b]) {
				fatal("out of memory");
				return;
			}
			memcpy(t->lead_parts[b], g.brokers[b].parts,
			       g.brokers[b].nparts * sizeof(uint32_t));
			t->lead_n[b] = g.brokers[b].nparts;
		}
		t->part_broker = calloc(g.partitions ? g.partitions : 1, sizeof(uint32_t));
		if (!t->part_broker) {
			fatal("out of memory");
			return;
		}
		for (unsigned b = 0; b < g.nbrokers; b++)
			for (uint32_t i = 0; i < g.brokers[b].nparts; i++)
				t->part_broker[g.brokers[b].parts[i]] = b;
	}
	t->setup_seen = true;
	if (t->conns_up < g.o.connections || t->phase != PH_CONNECT)
		return; /* on_connect continues when all are up */
	if (!t->extra_started) {
		t->extra_started = true;
		if (extra_connect(t) < 0)
			return;
	}
	if (t->extra_up < t->nconns - (unsigned)g.o.connections)
		return; /* the other brokers' connections: conn_connected continues */
	t->phase = PH_SETUP;
	if (g.o.mode != BENCH_CONSUME && g.o.idempotent) {
		(void)pids_start(t); /* setup_readers follows */
		return;
	}
	setup_readers(t);
}

/* The rest of a thread's setup, once its producers have their ids. */
static void setup_readers(struct bthread *t)
{
	if (g.o.mode == BENCH_PRODUCE) {
		post_ready(t);
		return;
	}
	if (readers_create(t) < 0) {
		fatal("out of memory for the readers");
		return;
	}
	t->resolving = t->nreaders;
	if (t->nreaders == 0) {
		post_ready(t);
		return;
	}
	for (unsigned i = 0; i < t->nreaders; i++) {
		struct reader *r = &t->readers[i];
		if (r->m) {
			member_drive(r); /* JoinGroup */
			continue;
		}
		int rc = list_offsets_start(r);
		if (rc < 0) {
			fatal("ListOffsets not sent: %s", rmq_strerror(rc));
			return;
		}
	}
}

/* ---- setup: the topic (thread 0) ------------------------------------------------------ */

static void topic_metadata_start(struct bthread *t);

/* The broker of host:port, added when new; -1 when there are too many. */
static int broker_index(const char *host, uint32_t port)
{
	for (unsigned b = 0; b < g.nbrokers; b++)
		if (g.brokers[b].port == port && strcmp(g.brokers[b].host, host) == 0)
			return (int)b;
	if (g.nbrokers == BROKERS_MAX || strlen(host) >= sizeof(g.brokers[0].host))
		return -1;
	unsigned b = g.nbrokers++;
	snprintf(g.brokers[b].host, sizeof(g.brokers[b].host), "%s", host);
	g.brokers[b].port = (uint16_t)port;
	return (int)b;
}

/* Which broker leads each partition (the metadata's leader and broker
 * list): producers and readers talk to it.  A partition with no leader
 * known now goes to --target, which answers LEADER_NOT_AVAILABLE (counted
 * as errors).  Returns 0 or -1 (fatal). */
static int route_partitions(const Rustmq__Client__GetTopicMetadataResponse *mr)
{
	const Rustmq__Common__TopicMetadata *tm = mr->topics[0];
	g.nbrokers = 0;
	(void)broker_index(g.o.host, g.o.port);
	unsigned *of = calloc(tm->n_partitions, sizeof(*of));
	if (!of) {
		fatal("out of memory");
		return -1;
	}
	/* Every running broker of a cluster gets connections, so that a
	 * producer can follow a partition whose leader moves to one that led
	 * none (a fenced one may be down: connecting would fail the run). */
	for (size_t k = 0; mr->n_brokers > 1 && k < mr->n_brokers; k++) {
		const Rustmq__Common__BrokerInfo *bi = mr->brokers[k];
		if (bi->state == RUSTMQ__COMMON__BROKER_STATE__BROKER_RUNNING && bi->host &&
		    *bi->host && bi->port && broker_index(bi->host, bi->port) < 0) {
			fatal("the cluster has more than %d brokers", BROKERS_MAX);
			free(of);
			return -1;
		}
	}
	for (size_t p = 0; p < tm->n_partitions; p++) {
		const char *leader = tm->partitions[p]->leader_id;
		for (size_t k = 0; *leader && k < mr->n_brokers; k++) {
			const Rustmq__Common__BrokerInfo *bi = mr->brokers[k];
			if (!bi->id || strcmp(bi->id->id, leader) != 0)
				continue;
			/* One broker is --target, whatever name it advertises. */
			int b = mr->n_brokers == 1 ? 0 : broker_index(bi->host, bi->port);
			if (b < 0) {
				fatal("the topic's partitions are led by more than %d brokers", BROKERS_MAX);
				free(of);
				return -1;
			}
			of[p] = (unsigned)b;
		}
	}
	unsigned active = 0;
	for (unsigned b = 0; b < g.nbrokers; b++) {
		free(g.brokers[b].parts);
		g.brokers[b].parts = calloc(tm->n_partitions, sizeof(uint32_t));
		g.brokers[b].nparts = 0;
		if (!g.brokers[b].parts) {
			fatal("out of memory");
			free(of);
			return -1;
		}
		for (size_t p = 0; p < tm->n_partitions; p++)
			if (of[p] == b)
				g.brokers[b].parts[g.brokers[b].nparts++] = (uint32_t)p;
		g.brokers[b].active = active;
		active += g.brokers[b].nparts > 0;
	}
	free(of);
	g.total_conns = g.nthreads * (unsigned)g.o.connections * active;
	atomic_store(&g.open_conns, g.nthreads * (unsigned)g.o.connections * g.nbrokers);
	if (g.nbrokers > 1)
		fprintf(stderr, "rmq-bench: the topic's partitions are led by %u brokers; connecting "
				"to each\n",
			g.nbrokers);
	return 0;
}

static void setup_retry_fn(struct rmq_timer *tm)
{
	struct bthread *t = RMQ_CONTAINER_OF(tm, struct bthread, tick);
	topic_metadata_start(t);
}

static void topic_metadata_done(void *arg, enum rmq_grpc_status status, const char *message,
				const uint8_t *resp, size_t len)
{
	struct bthread *t = arg;

	free(t->setup_req);
	t->setup_req = NULL;
	if (status != RMQ_GRPC_OK) {
		fatal("GetTopicMetadata failed: %s%s%s", rmq_grpc_status_name(status),
		      message[0] ? ": " : "", message);
		return;
	}
	Rustmq__Client__GetTopicMetadataResponse *mr =
		rustmq__client__get_topic_metadata_response__unpack(NULL, len, resp);
	if (!mr) {
		fatal("GetTopicMetadata: the answer does not parse");
		return;
	}
	int code = mr->error_code;
	size_t nparts = 0;
	if (code == 0 && mr->n_topics == 1) {
		code = mr->topics[0]->error_code;
		nparts = mr->topics[0]->n_partitions;
	}
	if (code == 0 && nparts > 0 && route_partitions(mr) < 0) {
		rustmq__client__get_topic_metadata_response__free_unpacked(mr, NULL);
		return;
	}
	rustmq__client__get_topic_metadata_response__free_unpacked(mr, NULL);
	if ((code != 0 || nparts == 0) && g.o.create_topic && ++t->setup_tries < SETUP_TRIES) {
		/* A topic just created may take a moment to show. */
		if (rmq_timer_start(t->s, &t->tick, rmq_now_ns() + RETRY_NS, setup_retry_fn) < 0)
			fatal("timer heap full");
		return;
	}
	if (code == EC(TOPIC_NOT_FOUND)) {
		fatal("topic %s does not exist (leave --create-topic on to create it)", g.o.topic);
		return;
	}
	if (code != 0 || nparts == 0) {
		fatal("topic %s: metadata error %d", g.o.topic, code);
		return;
	}
	g.partitions = (uint32_t)nparts;
	if (g.topic_existed && g.o.create_topic && nparts != g.o.partitions)
		fprintf(stderr, "rmq-bench: topic %s exists with %zu partitions; using them\n",
			g.o.topic, nparts);
	for (unsigned i = 0; i < g.nthreads; i++)
		rmq_shard_post(t->s, i, &g.th[i].setup_msg);
}

static void topic_metadata_start(struct bthread *t)
{
	Rustmq__Client__GetTopicMetadataRequest req = RUSTMQ__CLIENT__GET_TOPIC_METADATA_REQUEST__INIT;
	char *topics[1] = {(char *)g.o.topic};

	req.version = &api_v1;
	req.client_id = "rmq-bench";
	req.topics = topics;
	req.n_topics = 1;
	size_t len = rustmq__client__get_topic_metadata_request__get_packed_size(&req);
	t->setup_req = malloc(len);
	if (!t->setup_req) {
		fatal("out of memory");
		return;
	}
	rustmq__client__get_topic_metadata_request__pack(&req, t->setup_req);
	int rc = rmq_client_unary(t->conns[0].cc, PATH_TOPIC_METADATA, t->setup_req, len,
				  g.o.timeout_ns, topic_metadata_done, t, NULL);
	if (rc < 0)
		fatal("GetTopicMetadata not sent: %s", rmq_strerror(rc));
}

static void create_topics_done(void *arg, enum rmq_grpc_status status, const char *message,
			       const uint8_t *resp, size_t len)
{
	struct bthread *t = arg;

	free(t->setup_req);
	t->setup_req = NULL;
	if (status != RMQ_GRPC_OK) {
		fatal("CreateTopics failed: %s%s%s", rmq_grpc_status_name(status),
		      message[0] ? ": " : "", message);
		return;
	}
	Rustmq__Controller__CreateTopicsResponse *cr =
		rustmq__controller__create_topics_response__unpack(NULL, len, resp);
	if (!cr) {
		fatal("CreateTopics: the answer does not parse");
		return;
	}
	int code = cr->error_code;
	const char *why = cr->error_message;
	if (code == 0 && cr->n_topics == 1) {
		code = cr->topics[0]->error_code;
		why = cr->topics[0]->error_message;
	}
	if (code == EC(TOPIC_ALREADY_EXISTS)) {
		g.topic_existed = true;
	} else if (code != 0) {
		fatal("CreateTopics %s: error %d: %s", g.o.topic, code, why);
		rustmq__controller__create_topics_response__free_unpacked(cr, NULL);
		return;
	}
	rustmq__controller__create_topics_response__free_unpacked(cr, NULL);
	topic_metadata_start(t);
}

static void setup_start(struct bthread *t)
{
	if (!g.o.create_topic) {
		g.topic_existed = true;
		topic_metadata_start(t);
		return;
	}
	Rustmq__Controller__CreateTopicsRequest req = RUSTMQ__CONTROLLER__CREATE_TOPICS_REQUEST__INIT;
	Rustmq__Controller__CreatableTopic ct = RUSTMQ__CONTROLLER__CREATABLE_TOPIC__INIT;
	Rustmq__Controller__CreatableTopic *cts[1] = {&ct};

	req.version = &api_v1;
	ct.name = (char *)g.o.topic;
	ct.partitions = (uint32_t)g.o.partitions;
	ct.replication_factor = (uint32_t)g.o.replication_factor;
	req.topics = cts;
	req.n_topics = 1;
	size_t len = rustmq__controller__create_topics_request__get_packed_size(&req);
	t->setup_req = malloc(len);
	if (!t->setup_req) {
		fatal("out of memory");
		return;
	}
	rustmq__controller__create_topics_request__pack(&req, t->setup_req);
	int rc = rmq_client_unary(t->conns[0].cc, PATH_CREATE_TOPICS, t->setup_req, len,
				  g.o.timeout_ns, create_topics_done, t, NULL);
	if (rc < 0)
		fatal("CreateTopics not sent: %s", rmq_strerror(rc));
}

/* ---- run and drain ------------------------------------------------------------------ */

static void begin_drain(struct bthread *t);

static void publish(struct bthread *t)
{
	pthread_mutex_lock(&t->mu);
	t->pub_prod = t->prod.hist;
	t->pub_cons = t->cons.hist;
	pthread_mutex_unlock(&t->mu);
}

static void tick_fn(struct rmq_timer *tm)
{
	struct bthread *t = RMQ_CONTAINER_OF(tm, struct bthread, tick);
	if (t->phase != PH_RUN)
		return;
	publish(t);
	if (rmq_timer_start(t->s, &t->tick, rmq_now_ns() + NS, tick_fn) < 0)
		fatal("timer heap full");
}

static void end_fn(struct rmq_timer *tm)
{
	begin_drain(RMQ_CONTAINER_OF(tm, struct bthread, end_timer));
}

static void drain_timeout_fn(struct rmq_timer *tm)
{
	struct bthread *t = RMQ_CONTAINER_OF(tm, struct bthread, drain_timer);
	/* Answers that did not come in time: cut the connections (their
	 * calls end CANCELLED, not counted; batches waiting to be sent again
	 * are counted as errors). */
	t->cut = true;
	for (unsigned i = 0; i < t->nconns; i++)
		if (t->conns[i].cc)
			rmq_client_conn_close(t->conns[i].cc);
}

static void on_go(struct rmq_xmsg *m)
{
	struct bthread *t = RMQ_CONTAINER_OF(m, struct bthread, go_msg);
	const struct bench_opts *o = &g.o;
	uint64_t t_start = atomic_load(&g.t_start);

	t->phase = PH_RUN;
	if (rmq_timer_start(t->s, &t->tick, rmq_now_ns() + NS, tick_fn) < 0)
		fatal("timer heap full");
	uint64_t t_end = atomic_load(&g.t_end);
	if (t_end != UINT64_MAX && rmq_timer_start(t->s, &t->end_timer, t_end, end_fn) < 0)
		fatal("timer heap full");
	for (unsigned i = 0; i < t->nreaders; i++)
		reader_issue(&t->readers[i]);
	if (o->mode == BENCH_CONSUME)
		return;
	for (unsigned i = 0; i < t->nconns; i++) {
		struct bconn *bc = &t->conns[i];
		if (g.brokers[bc->broker].nparts == 0)
			continue; /* setup calls only */
		if (o->rate) {
			bc->paced = true;
			rmq_pace_init(&bc->pace, t_start, o->rate, (uint32_t)o->batch, g.total_conns,
				      bc->global);
		}
		if (o->produce_stream)
			pstream_open(bc);
		prod_kick(bc);
	}
}

static void on_stop(struct rmq_xmsg *m)
{
	begin_drain(RMQ_CONTAINER_OF(m, struct bthread, stop_msg));
}

static void check_drained(struct bthread *t)
{
	if (t->phase != PH_DRAIN || t->inflight > 0)
		return;
	t->phase = PH_DONE;
	rmq_timer_cancel(t->s, &t->drain_timer);
	publish(t);
	if (atomic_fetch_add(&g.done, 1) + 1 == g.nthreads)
		rmq_runtime_stop(g.rt);
}

static void begin_drain(struct bthread *t)
{
	if (t->phase != PH_RUN)
		return;
	t->phase = PH_DRAIN;
	rmq_timer_cancel(t->s, &t->end_timer);
	rmq_timer_cancel(t->s, &t->tick);
	if (rmq_timer_start(t->s, &t->drain_timer, rmq_now_ns() + DRAIN_NS, drain_timeout_fn) < 0)
		fatal("timer heap full");
	for (unsigned i = 0; i < t->nreaders; i++) {
		struct reader *r = &t->readers[i];
		rmq_timer_cancel(t->s, &r->retry);
		if (r->m)
			rmq_member_leave(&r->m->core); /* a last commit, LeaveGroup */
		if (r->call)
			rmq_ccall_cancel(r->call); /* fetch_done drives the member on */
		else if (r->m)
			member_drive(r);
	}
	for (unsigned i = 0; i < t->nconns; i++) {
		struct bconn *bc = &t->conns[i];
		rmq_timer_cancel(t->s, &bc->pace_timer);
		rmq_timer_cancel(t->s, &bc->restart);
		if (bc->pstream && bc->fifo_count == 0 && !bc->half_closed) {
			bc->half_closed = true;
			rmq_ccall_half_close(bc->pstream);
		}
	}
	check_drained(t);
}

static void on_ready(struct rmq_xmsg *m)
{
	struct bthread *t0 = &g.th[0];
	(void)m;

	if (++g.ready < g.nthreads)
		return;
	uint64_t now = rmq_now_ns();
	uint64_t warm = now + g.o.warmup_ns;
	uint64_t end = g.o.duration_ns ? warm + g.o.duration_ns : UINT64_MAX;
	atomic_store(&g.t_start, now);
	atomic_store(&g.t_warm, warm);
	atomic_store(&g.t_end, end);
	atomic_store(&g.t_stop, end);
	for (unsigned i = 0; i < g.nthreads; i++)
		rmq_shard_post(t0->s, i, &g.th[i].go_msg);
}

/* ---- connections -------------------------------------------------------------------- */

static void conn_connected(struct rmq_client_conn *cc, void *arg, int res)
{
	struct bconn *bc = arg;
	struct bthread *t = bc->t;
	(void)cc;

	if (t->phase == PH_DONE)
		return; /* torn down before it connected */
	if (res < 0) {
		bc->cc = NULL;
		fatal("cannot connect to %s:%u: %s", g.brokers[bc->broker].host,
		      (unsigned)g.brokers[bc->broker].port, rmq_strerror(res));
		return;
	}
	bc->up = true;
	if (bc->broker != 0) { /* another broker's, at setup */
		t->extra_up++;
		on_setup(&t->setup_msg);
		return;
	}
	if (++t->conns_up < g.o.connections)
		return;
	if (t->id == 0)
		setup_start(t);
	if (t->setup_seen)
		on_setup(&t->setup_msg);
}

static void conn_closed(struct rmq_client_conn *cc, void *arg, int why)
{
	struct bconn *bc = arg;
	struct bthread *t = bc->t;
	(void)cc;

	bc->up = false;
	bc->cc = NULL;
	if (t->phase == PH_RUN) {
		/* The rest of the run goes on over the other connections; when
		 * none is left it ends here.  In a cluster the partitions it
		 * served move to other brokers (their calls are sent again
		 * there): counted with them, not as an error. */
		if (g.nbrokers == 1)
			count_error(t, ERR_GRPC + RMQ_GRPC_UNAVAILABLE);
		fprintf(stderr, "rmq-bench: a connection to %s:%u was lost: %s\n",
			g.brokers[bc->broker].host, (unsigned)g.brokers[bc->broker].port,
			why ? rmq_strerror(why) : "closed by the server");
		if (atomic_fetch_add(&g.conns_lost, 1) + 1 == atomic_load(&g.open_conns)) {
			atomic_store(&g.all_lost, true);
			stop_everyone(t, rmq_now_ns());
		}
	} else if (t->phase < PH_RUN) {
		fatal("the connection to %s:%u closed during setup: %s", g.brokers[bc->broker].host,
		      (unsigned)g.brokers[bc->broker].port, why ? rmq_strerror(why) : "closed by the server");
	}
}

static const struct rmq_client_conn_ops conn_ops = {conn_connected, conn_closed};

/* ---- threads -------------------------------------------------------------------------- */

static int thread_init(struct rmq_shard *s, void *arg)
{
	const struct bench_opts *o = &g.o;
	struct bthread *t = &g.th[rmq_shard_id(s)];
	struct rmq_client_config cc;
	int rc;
	(void)arg;

	t->s = s;
	rmq_client_config_default(&cc);
	cc.host = o->host;
	cc.port = o->port;
	cc.tls = g.tls;
	cc.connections_max = (uint32_t)o->connections;
	/* producer slots + readers (at most one per stream) + setup calls */
	cc.calls_max = (uint32_t)(2 * o->connections * o->streams + 8);
	cc.send_queue_max = (uint32_t)o->streams + 1;
	rc = rmq_client_create(s, &cc, &t->cl);
	if (rc == 0)
		rc = rmq_client_set_authorization(t->cl, g.authz);
	if (rc < 0) {
		fatal("cannot set up a client for %s:%u: %s", o->host, (unsigned)o->port,
		      rmq_strerror(rc));
		return rc;
	}
	for (unsigned i = 0; i < o->connections; i++) {
		struct bconn *bc = &t->conns[i];
		rc = rmq_client_connect(t->cl, &conn_ops, bc, &bc->cc);
		if (rc < 0) {
			bc->cc = NULL;
			fatal("cannot connect to %s:%u: %s", o->host, (unsigned)o->port,
			      rmq_strerror(rc));
			return rc;
		}
	}
	return 0;
}

static void thread_fini(struct rmq_shard *s, void *arg)
{
	struct bthread *t = &g.th[rmq_shard_id(s)];
	(void)arg;

	if (t->phase != PH_DONE)
		publish(t);
	t->phase = PH_DONE; /* callbacks from the teardown start nothing */
	rmq_timer_cancel(s, &t->tick);
	rmq_timer_cancel(s, &t->end_timer);
	rmq_timer_cancel(s, &t->drain_timer);
	for (unsigned i = 0; i < t->nreaders; i++) {
		struct reader *r = &t->readers[i];
		rmq_timer_cancel(s, &r->retry);
		if (r->m)
			rmq_timer_cancel(s, &r->m->wake);
	}
	for (unsigned i = 0; i < t->nconns; i++) {
		rmq_timer_cancel(s, &t->conns[i].pace_timer);
		rmq_timer_cancel(s, &t->conns[i].restart);
		for (unsigned k = 0; t->conns[i].slots && k < g.o.streams; k++)
			rmq_timer_cancel(s, &t->conns[i].slots[k].retry);
	}
	rmq_client_destroy(t->cl);
	t->cl = NULL;
	for (unsigned b = 1; b < BROKERS_MAX; b++) {
		if (t->cls[b])
			rmq_client_destroy(t->cls[b]);
		t->cls[b] = NULL;
	}
}

/* Makes bc, connection index of thread t to broker b, ready: its producer
 * slots and their buffers (all of the hot path's memory). */
static int conn_init(struct bthread *t, struct bconn *bc, unsigned index, unsigned broker)
{
	const struct bench_opts *o = &g.o;
	bc->t = t;
	bc->index = index;
	bc->broker = broker;
	unsigned i = index % (unsigned)o->connections;
	bc->global = (g.brokers[broker].active * g.nthreads + t->id) * (unsigned)o->connections + i;
	bc->rr = t->id * 7 + i; /* connections start on different partitions */
	if (o->mode == BENCH_CONSUME)
		return 0;
	bc->slots = calloc(o->streams, sizeof(*bc->slots));
	bc->fifo = calloc(o->streams, sizeof(*bc->fifo));
	if (!bc->slots || !bc->fifo)
		return -ENOMEM;
	for (unsigned k = 0; k < o->streams; k++) {
		struct pslot *sl = &bc->slots[k];
		sl->bc = bc;
		uint64_t seed = (uint64_t)(broker * 100000 + bc->global) * 1000 + k;
		int rc = o->produce_unary
				 ? bench_batch_init_unary(&sl->batch, (uint32_t)o->batch,
							  (uint32_t)o->msg_bytes, seed)
				 : bench_batch_init(&sl->batch, (uint32_t)o->batch, (uint32_t)o->msg_bytes,
						    o->compression, seed);
		if (rc < 0)
			return rc;
		sl->next_free = bc->free;
		bc->free = sl;
	}
	return 0;
}

/* Allocates a thread's connections to the bootstrap broker and their
 * producer slots (before the runtime starts); room for those to the other
 * brokers, made at setup. */
static int thread_alloc(struct bthread *t, unsigned id)
{
	const struct bench_opts *o = &g.o;

	t->id = id;
	pthread_mutex_init(&t->mu, NULL);
	rmq_hist_reset(&t->prod.hist);
	rmq_hist_reset(&t->cons.hist);
	rmq_hist_reset(&t->pub_prod);
	rmq_hist_reset(&t->pub_cons);
	t->setup_msg.fn = on_setup;
	t->ready_msg.fn = on_ready;
	t->go_msg.fn = on_go;
	t->stop_msg.fn = on_stop;
	t->conns = calloc((size_t)BROKERS_MAX * o->connections, sizeof(*t->conns));
	if (!t->conns)
		return -ENOMEM;
	for (unsigned i = 0; i < o->connections; i++) {
		int rc = conn_init(t, &t->conns[i], i, 0);
		if (rc < 0)
			return rc;
		t->nconns++;
	}
	return 0;
}

static void thread_free(struct bthread *t)
{
	if (t->conns) {
		for (unsigned i = 0; i < t->nconns; i++) {
			struct bconn *bc = &t->conns[i];
			for (unsigned k = 0; bc->slots && k < g.o.streams; k++) {
				bench_batch_free(&bc->slots[k].batch);
				free(bc->slots[k].seq);
			}
			free(bc->slots);
			free(bc->fifo);
		}
	}
	for (unsigned i = 0; i < t->nreaders; i++) {
		free(t->readers[i].parts);
		free(t->readers[i].sub);
		free(t->readers[i].req);
		free(t->readers[i].sink.scratch);
		free(t->readers[i].lo_req);
		if (t->readers[i].m) {
			rmq_member_free(&t->readers[i].m->core);
			free(t->readers[i].m);
		}
	}
	free(t->readers);
	free(t->conns);
	for (unsigned b = 0; b < BROKERS_MAX; b++)
		free(t->lead_parts[b]);
	free(t->part_broker);
	free(t->meta_req);
	free(t->setup_req);
	pthread_mutex_destroy(&t->mu);
}

/* ---- progress ---------------------------------------------------------------------------- */


/* Sums every thread's published counts and histograms. */
static void progress_collect(void *arg, struct bench_progress_totals *tot)
{
	(void)arg;
	for (unsigned i = 0; i < g.nthreads; i++) {
		struct bthread *t = &g.th[i];
		tot->prod_msgs += atomic_load_explicit(&t->all_prod_msgs, memory_order_relaxed);
		tot->prod_bytes += atomic_load_explicit(&t->all_prod_bytes, memory_order_relaxed);
		tot->cons_msgs += atomic_load_explicit(&t->all_cons_msgs, memory_order_relaxed);
		tot->cons_bytes += atomic_load_explicit(&t->all_cons_bytes, memory_order_relaxed);
		tot->errors += atomic_load_explicit(&t->all_errors, memory_order_relaxed);
		pthread_mutex_lock(&t->mu);
		rmq_hist_merge(tot->prod_hist, &t->pub_prod);
		rmq_hist_merge(tot->cons_hist, &t->pub_cons);
		pthread_mutex_unlock(&t->mu);
	}
}

/* ---- report ---------------------------------------------------------------------------- */

static void report(double secs, const struct bench_section *main_s,
		   const struct bench_section *extra,
		   const uint64_t *err, uint64_t errors, uint64_t retries, uint64_t rewritten,
		   uint64_t acked)
{
	const struct bench_opts *o = &g.o;
	const char *kind = o->mode == BENCH_PRODUCE ? "ack" : "delivery";
	char name[96];

	if (o->json) {
		FILE *f = stdout;
		bench_json_header(f, o, NULL, g.partitions, o->produce_rpc_name,
				  o->consume_subscribe ? "subscribe" : "fetch", -1, secs);
		bench_json_results(f, main_s->msgs, main_s->bytes, main_s->hist, kind,
				   extra ? extra->msgs : 0, extra ? extra->bytes : 0,
				   extra ? extra->hist : NULL, secs);
		if (o->group[0]) {
			fprintf(f, ",\"group\":{\"name\":");
			bench_json_string(f, o->group);
			fprintf(f, ",\"commits\":%" PRIu64 ",\"joins\":%" PRIu64 "}",
				atomic_load(&g.commits), atomic_load(&g.joins));
		}
		fprintf(f, ",\"errors\":{\"total\":%" PRIu64 ",\"by_code\":{", errors);
		bool first = true;
		for (int i = 0; i < ERR_SLOTS; i++) {
			if (!err[i])
				continue;
			fprintf(f, "%s\"%s\":%" PRIu64, first ? "" : ",", err_name(i, name, sizeof(name)),
				err[i]);
			first = false;
		}
		fprintf(f, "}},\"retries\":%" PRIu64 ",\"retries_already_written\":%" PRIu64, retries,
			rewritten);
		if (o->mode != BENCH_CONSUME)
			fprintf(f, ",\"acknowledged_records\":%" PRIu64, acked);
		fprintf(f, "}\n");
		fflush(f);
		return;
	}
	printf("rmq-bench %s: %s, topic %s (%u partitions), %" PRIu64 " thread(s) x %" PRIu64
	       " connection(s) x %" PRIu64 " stream(s)\n",
	       o->mode_name, o->target, o->topic, g.partitions, o->threads, o->connections, o->streams);
	printf("  %" PRIu64 " B records, %" PRIu64 " per batch, acks=%s, compression=%s, %s",
	       o->msg_bytes, o->batch, o->acks_name, o->compression_name,
	       o->mode == BENCH_CONSUME ? "" : (o->produce_stream  ? "ProduceStream"
					   : o->produce_unary ? "Produce"
							      : "ProduceBatch"));
	if (o->mode != BENCH_PRODUCE)
		printf("%s%s from %s", o->mode == BENCH_CONSUME ? "" : ", ",
		       o->consume_subscribe ? "Subscribe" : "Fetch", o->from_name);
	if (o->rate)
		printf(", open loop at %" PRIu64 " msgs/s", o->rate);
	bench_print_sections(main_s, extra, secs, o->warmup_ns, o->mode == BENCH_PRODUCE);
	if (o->group[0])
		printf("  group    %s: %" PRIu64 " commits, %" PRIu64 " generations joined\n", o->group,
		       atomic_load(&g.commits), atomic_load(&g.joins));
	printf("  errors   %" PRIu64 "\n", errors);
	for (int i = 0; i < ERR_SLOTS; i++)
		if (err[i])
			printf("           %-28s %" PRIu64 "\n", err_name(i, name, sizeof(name)), err[i]);
	if (o->mode != BENCH_CONSUME)
		printf("  acked    %" PRIu64 " records in all (warm-up and drain included)\n", acked);
	if (retries)
		printf("  retries  %" PRIu64 " calls lost (timed out, cut, or their leader moved) sent "
		       "again; %" PRIu64 " answered DUPLICATE_SEQUENCE (written before)\n",
		       retries, rewritten);
}

/* ---- main -------------------------------------------------------------------------------- */

static void on_signal(int sig)
{
	(void)sig;
	if (g.rt)
		rmq_runtime_stop(g.rt);
}

/* --user: a login on a connection of its own (tools/rpc.h); every client
 * then sends its token. */
static int login(const struct bench_opts *o, char *err, size_t errlen)
{
	char pw[1100];
	FILE *f = o->password_file[0] ? fopen(o->password_file, "r") : NULL;
	if (!f) {
		snprintf(err, errlen, "--password-file %s: %s", o->password_file,
			 o->password_file[0] ? strerror(errno) : "needed with --user");
		return -1;
	}
	size_t n = fgets(pw, sizeof(pw), f) ? strcspn(pw, "\r\n") : 0;
	fclose(f);
	struct rmq_rpc *rpc;
	rmq_rpc_use_tls(g.tls);
	int rc = rmq_rpc_open(o->host, o->port, 10ULL * 1000 * 1000 * 1000, &rpc);
	if (rc < 0) {
		snprintf(err, errlen, "cannot connect to %s:%u: %s", o->host, (unsigned)o->port,
			 rmq_strerror(rc));
	} else {
		rc = rmq_rpc_login(rpc, o->user, pw, n, o->sasl, g.authz, sizeof(g.authz), err,
				   errlen);
		rmq_rpc_close(rpc);
	}
	OPENSSL_cleanse(pw, sizeof(pw));
	return rc;
}

int main(int argc, char **argv)
{
	char err[512];
	int rc;

	rmq_log_set_level(RMQ_LOG_WARN);
	rc = bench_opts_parse(argc, argv, &g.o, err, sizeof(err));
	if (rc == 1) {
		printf("usage: rmq-bench [flags]\n\n"
		       "Loads an rmqd with produce, consume or end-to-end (e2e) traffic over gRPC and\n"
		       "reports throughput and latency percentiles (coordinated-omission free with\n"
		       "--rate).  Exit status: 0 after a run; 1 when the run could not happen\n"
		       "(connection refused, topic setup failed) or lost every connection; 2 for\n"
		       "bad flags.\n\nflags:\n");
		bench_opts_usage(stdout);
		return 0;
	}
	if (rc < 0) {
		fprintf(stderr, "rmq-bench: %s\n", err);
		return 2;
	}
	const struct bench_opts *o = &g.o;
	if (o->system != BENCH_RMQ)
		return bench_peer_main(o);

	if (o->tls_ca[0] || o->tls_cert[0] || o->tls_key[0]) {
		struct rmq_tls_config tc = {.ca = o->tls_ca[0] ? o->tls_ca : NULL,
					    .cert = o->tls_cert[0] ? o->tls_cert : NULL,
					    .key = o->tls_key[0] ? o->tls_key : NULL};
		if (rmq_tls_ctx_new(&tc, &g.tls, err, sizeof(err)) < 0) {
			fprintf(stderr, "rmq-bench: --tls-ca/--tls-cert/--tls-key: %s\n", err);
			return 2;
		}
	}
	if (o->user[0] && login(o, err, sizeof(err)) < 0) {
		fprintf(stderr, "rmq-bench: logging in as --user %s: %s\n", o->user, err);
		return 1;
	}
	g.wall_offset_ns = bench_wall_offset_ns();
	g.nthreads = (unsigned)o->threads;
	g.total_conns = (unsigned)(o->threads * o->connections);
	atomic_store(&g.open_conns, g.total_conns);
	g.nbrokers = 1;
	snprintf(g.brokers[0].host, sizeof(g.brokers[0].host), "%s", o->host);
	g.brokers[0].port = o->port;
	g.th = calloc(g.nthreads, sizeof(*g.th));
	if (!g.th) {
		fprintf(stderr, "rmq-bench: out of memory\n");
		return 1;
	}
	for (unsigned i = 0; i < g.nthreads; i++) {
		rc = thread_alloc(&g.th[i], i);
		if (rc < 0) {
			fprintf(stderr, "rmq-bench: cannot allocate the producers' buffers: %s\n",
				rmq_strerror(rc));
			return 1;
		}
	}
	struct rmq_runtime_config rc_cfg = {
		.shards = g.nthreads,
		.ring_entries = 1024,
		.xshard_capacity = 64,
		.timers_max = (unsigned)(BROKERS_MAX * (4 * o->connections * o->streams +
							 4 * o->connections) + 64),
		.pin = o->pin,
		.poll_ns = o->poll_ns,
	};
	rc = rmq_runtime_create(&rc_cfg, &g.rt);
	if (rc < 0) {
		fprintf(stderr, "rmq-bench: cannot create the runtime: %s\n", rmq_strerror(rc));
		return 1;
	}
	bench_catch_signals(on_signal);

	pthread_t progress;
	struct bench_progress pg = {
		.produce = o->mode != BENCH_CONSUME,
		.consume = o->mode != BENCH_PRODUCE,
		.finished = &g.finished,
		.t_start = &g.t_start,
		.t_warm = &g.t_warm,
		.collect = progress_collect,
	};
	bool have_progress = o->progress &&
			     pthread_create(&progress, NULL, bench_progress_main, &pg) == 0;
	rc = rmq_runtime_run(g.rt, thread_init, thread_fini, NULL);
	atomic_store(&g.finished, true);
	if (have_progress)
		pthread_join(progress, NULL);

	int status = 0;
	if (atomic_load(&g.fatal)) {
		fprintf(stderr, "rmq-bench: %s\n", g.fatal_msg);
		status = 1;
	} else if (rc < 0) {
		fprintf(stderr, "rmq-bench: %s\n", rmq_strerror(rc));
		status = 1;
	} else if (atomic_load(&g.t_start) == 0) {
		fprintf(stderr, "rmq-bench: interrupted before the run started\n");
		status = 1;
	} else {
		struct rmq_hist *hp = malloc(sizeof(*hp)), *hc = malloc(sizeof(*hc));
		uint64_t errv[ERR_SLOTS] = {0}, errors = 0, retries = 0, rewritten = 0, acked = 0;
		struct bench_section prod = {"produce", 0, 0, hp}, cons = {"consume", 0, 0, hc};
		if (!hp || !hc) {
			fprintf(stderr, "rmq-bench: out of memory\n");
			return 1;
		}
		rmq_hist_reset(hp);
		rmq_hist_reset(hc);
		for (unsigned i = 0; i < g.nthreads; i++) {
			struct bthread *t = &g.th[i];
			prod.msgs += t->prod.msgs;
			prod.bytes += t->prod.bytes;
			cons.msgs += t->cons.msgs;
			cons.bytes += t->cons.bytes;
			rmq_hist_merge(hp, &t->prod.hist);
			rmq_hist_merge(hc, &t->cons.hist);
			retries += t->retries;
			rewritten += t->rewritten;
			acked += atomic_load(&t->all_prod_msgs);
			for (int k = 0; k < ERR_SLOTS; k++) {
				errv[k] += t->err[k];
				errors += t->err[k];
			}
		}
		uint64_t warm = atomic_load(&g.t_warm), stop = atomic_load(&g.t_stop);
		uint64_t now = rmq_now_ns();
		if (stop > now)
			stop = now; /* interrupted */
		double secs = stop > warm ? (double)(stop - warm) / 1e9 : 0.0;
		if (secs <= 0) {
			fprintf(stderr, "rmq-bench: stopped before the warm-up ended\n");
			status = 1;
		} else if (o->mode == BENCH_PRODUCE) {
			report(secs, &prod, NULL, errv, errors, retries, rewritten, acked);
		} else if (o->mode == BENCH_CONSUME) {
			report(secs, &cons, NULL, errv, errors, retries, rewritten, acked);
		} else {
			report(secs, &cons, &prod, errv, errors, retries, rewritten, acked);
		}
		free(hp);
		free(hc);
		if (atomic_load(&g.all_lost)) {
			fprintf(stderr, "rmq-bench: lost every connection to %s:%u; the run ended early\n",
				o->host, (unsigned)o->port);
			status = 1;
		}
	}
	for (unsigned i = 0; i < g.nthreads; i++)
		thread_free(&g.th[i]);
	free(g.th);
	rmq_runtime_destroy(g.rt);
	rmq_tls_ctx_free(g.tls);
	return status;
}
