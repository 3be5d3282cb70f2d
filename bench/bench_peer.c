/* SPDX-License-Identifier: Apache-2.0 */
/*
 * bench_peer.c - rmq-bench against a peer (NATS JetStream, Redis Streams):
 * threads, measurement window, progress and report, shared by the drivers
 * (driver_nats.c, driver_redis.c), so that the peers are measured the way
 * rmq is (the OpenMessaging Benchmark's idea: one harness, one driver per
 * system).
 *
 *   main: driver->setup ─► start producers (threads x connections, not in
 *         consume mode) and readers (consume, e2e) ─► t_start; warm-up ends
 *         at t_start + --warmup, the run at + --duration (or when
 *         --messages were measured) ─► workers see bench_peer_running()
 *         false, drain (bounded by the driver) and return ─► report
 *
 * What counts is what rmq_bench.c counts: a message answered (produce) or
 * delivered (consume) inside [end of warm-up, end of run).  Latency:
 * produce "ack" per sample the driver gives (Redis: per pipelined batch of
 * --batch XADDs, from its send to its last reply, as rmq's per request;
 * NATS: per message, from its send time to its PubAck), consume and e2e
 * "delivery" per record from the send time carried in the value.
 *
 * Workers record into their own histogram under their own mutex (a
 * library callback thread may record too); the progress thread and the
 * report merge them.  The drivers allocate what their client library
 * allocates (a message per publish in libnats, a reply per command in
 * hiredis): these paths are the peers' own clients, not rmq's.
 */
#include "bench.h"
#include "hist.h"

#include "core/shard.h" /* rmq_now_ns */

#include <inttypes.h>
#include <pthread.h>
#include <signal.h>
#include <stdatomic.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#define NS 1000000000ULL
#define ERR_NAMES_MAX 16 /* distinct error names kept per worker */
#define ERR_NAME_BYTES 48

struct peer_err {
	char name[ERR_NAME_BYTES];
	uint64_t n;
};

struct bench_peer_worker {
	unsigned index;
	bool consumer;
	pthread_t tid;
	bool started;
	int rc;
	pthread_mutex_t mu;                 /* guards everything below */
	uint64_t msgs, bytes;               /* measured */
	uint64_t all_msgs, all_bytes;       /* including the warm-up, for progress */
	uint64_t errors;
	struct rmq_hist hist;
	struct peer_err err[ERR_NAMES_MAX];
	unsigned nerr;
	uint64_t err_other;                 /* beyond ERR_NAMES_MAX names */
};

static struct {
	const struct bench_opts *o;
	const struct bench_driver *d;
	struct bench_peer_worker *w;
	unsigned nprod, ncons;
	int64_t wall_offset_ns;
	_Atomic uint64_t t_start, t_warm, t_end;
	_Atomic uint64_t measured;          /* toward --messages */
	_Atomic bool stop;
	_Atomic bool finished;
} p;

const struct bench_opts *bench_peer_opts(const struct bench_peer_worker *w)
{
	(void)w;
	return p.o;
}

unsigned bench_peer_index(const struct bench_peer_worker *w)
{
	return w->index;
}

bool bench_peer_running(const struct bench_peer_worker *w)
{
	(void)w;
	if (atomic_load_explicit(&p.stop, memory_order_relaxed))
		return false;
	uint64_t end = atomic_load_explicit(&p.t_end, memory_order_relaxed);
	return end == 0 || rmq_now_ns() < end;
}

uint64_t bench_peer_wall_ns(void)
{
	return (uint64_t)((int64_t)rmq_now_ns() + p.wall_offset_ns);
}

void bench_peer_stamp(uint8_t *value, size_t len, uint64_t stamp_ns)
{
	if (len < BENCH_STAMP_BYTES)
		return;
	memcpy(value, BENCH_STAMP_MAGIC, 4);
	for (int i = 0; i < 8; i++)
		value[4 + i] = (uint8_t)(stamp_ns >> (8 * i));
}

uint64_t bench_peer_stamp_of(const uint8_t *value, size_t len)
{
	uint64_t v = 0;
	if (len < BENCH_STAMP_BYTES || memcmp(value, BENCH_STAMP_MAGIC, 4) != 0)
		return 0;
	for (int i = 0; i < 8; i++)
		v |= (uint64_t)value[4 + i] << (8 * i);
	return v;
}

void bench_peer_account(struct bench_peer_worker *w, uint64_t n, uint64_t bytes,
			uint64_t latency_ns)
{
	uint64_t now = rmq_now_ns();
	uint64_t warm = atomic_load_explicit(&p.t_warm, memory_order_relaxed);
	uint64_t end = atomic_load_explicit(&p.t_end, memory_order_relaxed);
	bool in_window = warm != 0 && now >= warm && now < end &&
			 !atomic_load_explicit(&p.stop, memory_order_relaxed);

	pthread_mutex_lock(&w->mu);
	w->all_msgs += n;
	w->all_bytes += bytes;
	if (in_window) {
		w->msgs += n;
		w->bytes += bytes;
		if (latency_ns)
			rmq_hist_record(&w->hist, latency_ns);
	}
	pthread_mutex_unlock(&w->mu);
	/* --messages counts what the main section counts: deliveries in
	 * consume and e2e, answers in produce. */
	bool main_section = p.o->mode == BENCH_PRODUCE ? !w->consumer : w->consumer;
	if (in_window && main_section && p.o->messages) {
		uint64_t m = atomic_fetch_add(&p.measured, n) + n;
		if (m >= p.o->messages)
			atomic_store(&p.stop, true);
	}
}

void bench_peer_error(struct bench_peer_worker *w, const char *name)
{
	pthread_mutex_lock(&w->mu);
	w->errors++;
	unsigned i;
	for (i = 0; i < w->nerr; i++)
		if (strncmp(w->err[i].name, name, ERR_NAME_BYTES - 1) == 0)
			break;
	if (i == w->nerr && w->nerr < ERR_NAMES_MAX) {
		snprintf(w->err[i].name, ERR_NAME_BYTES, "%s", name);
		w->nerr++;
	}
	if (i < w->nerr)
		w->err[i].n++;
	else
		w->err_other++;
	pthread_mutex_unlock(&w->mu);
}

static void *worker_main(void *arg)
{
	struct bench_peer_worker *w = arg;
	w->rc = w->consumer ? p.d->consume(w) : p.d->produce(w);
	return NULL;
}

static void on_signal(int sig)
{
	(void)sig;
	atomic_store(&p.stop, true);
}

/* ---- progress and report ----------------------------------------------------------- */

struct peer_section {
	const char *name;
	uint64_t msgs, bytes, all_msgs, all_bytes, errors;
	struct rmq_hist *hist;
};

/* Sums the producers (consumer false) or the readers into s. */
static void collect(struct peer_section *s, bool consumer)
{
	s->msgs = s->bytes = s->all_msgs = s->all_bytes = s->errors = 0;
	rmq_hist_reset(s->hist);
	for (unsigned i = 0; i < p.nprod + p.ncons; i++) {
		struct bench_peer_worker *w = &p.w[i];
		if (w->consumer != consumer)
			continue;
		pthread_mutex_lock(&w->mu);
		s->msgs += w->msgs;
		s->bytes += w->bytes;
		s->all_msgs += w->all_msgs;
		s->all_bytes += w->all_bytes;
		s->errors += w->errors;
		rmq_hist_merge(s->hist, &w->hist);
		pthread_mutex_unlock(&w->mu);
	}
}


static void progress_collect(void *arg, struct bench_progress_totals *t)
{
	struct peer_section sp = {.hist = t->prod_hist}, sc = {.hist = t->cons_hist};
	(void)arg;
	collect(&sp, false);
	collect(&sc, true);
	t->prod_msgs = sp.all_msgs;
	t->prod_bytes = sp.all_bytes;
	t->cons_msgs = sc.all_msgs;
	t->cons_bytes = sc.all_bytes;
	t->errors = sp.errors + sc.errors;
}

/* Every worker's error names, merged (a small O(workers x names^2) walk). */
static unsigned merge_errors(struct peer_err *out, unsigned cap, uint64_t *other)
{
	unsigned n = 0;
	*other = 0;
	for (unsigned i = 0; i < p.nprod + p.ncons; i++) {
		struct bench_peer_worker *w = &p.w[i];
		*other += w->err_other;
		for (unsigned k = 0; k < w->nerr; k++) {
			unsigned j;
			for (j = 0; j < n; j++)
				if (strcmp(out[j].name, w->err[k].name) == 0)
					break;
			if (j == n && n < cap)
				out[n++] = w->err[k];
			else if (j < n)
				out[j].n += w->err[k].n;
			else
				*other += w->err[k].n;
		}
	}
	return n;
}

static void report(double secs, const struct peer_section *main_s,
		   const struct peer_section *extra)
{
	const struct bench_opts *o = p.o;
	struct peer_err errs[ERR_NAMES_MAX * 2];
	uint64_t other;
	unsigned nerr = merge_errors(errs, ERR_NAMES_MAX * 2, &other);
	uint64_t errors = main_s->errors + (extra ? extra->errors : 0);
	const char *kind = o->mode == BENCH_PRODUCE ? "ack" : "delivery";

	if (o->json) {
		FILE *f = stdout;
		bench_json_header(f, o, p.d->name, 1, p.d->produce_rpc, p.d->consume_rpc,
				  (int)p.ncons, secs);
		bench_json_results(f, main_s->msgs, main_s->bytes, main_s->hist, kind,
				   extra ? extra->msgs : 0, extra ? extra->bytes : 0,
				   extra ? extra->hist : NULL, secs);
		fprintf(f, ",\"errors\":{\"total\":%" PRIu64 ",\"by_code\":{", errors);
		for (unsigned i = 0; i < nerr; i++) {
			fputs(i ? "," : "", f);
			bench_json_string(f, errs[i].name);
			fprintf(f, ":%" PRIu64, errs[i].n);
		}
		if (other)
			fprintf(f, "%s\"other\":%" PRIu64, nerr ? "," : "", other);
		fprintf(f, "}}}\n");
		fflush(f);
		return;
	}
	printf("rmq-bench %s: %s (%s), stream %s, %" PRIu64 " thread(s) x %" PRIu64
	       " connection(s) x %" PRIu64 " stream(s)\n",
	       o->mode_name, o->target, p.d->name, o->topic, o->threads, o->connections, o->streams);
	printf("  %" PRIu64 " B records, %" PRIu64 " per batch, %s", o->msg_bytes, o->batch,
	       o->mode == BENCH_CONSUME ? "" : p.d->produce_rpc);
	if (o->mode != BENCH_PRODUCE)
		printf("%s%s from %s, %u reader(s)", o->mode == BENCH_CONSUME ? "" : ", ",
		       p.d->consume_rpc, o->from_name, p.ncons);
	const struct bench_section m = {main_s->name, main_s->msgs, main_s->bytes, main_s->hist};
	const struct bench_section x = extra ? (struct bench_section){extra->name, extra->msgs,
								      extra->bytes, extra->hist}
					     : m;
	bench_print_sections(&m, extra ? &x : NULL, secs, o->warmup_ns, o->mode == BENCH_PRODUCE);
	printf("  errors   %" PRIu64 "\n", errors);
	for (unsigned i = 0; i < nerr; i++)
		printf("           %-28s %" PRIu64 "\n", errs[i].name, errs[i].n);
	if (other)
		printf("           %-28s %" PRIu64 "\n", "other", other);
}

/* ---- main ---------------------------------------------------------------------------- */

int bench_peer_main(const struct bench_opts *o)
{
	char err[512] = "";
	int status = 0;
	bool workers_free = true; /* false while a library thread may hold one */
	struct rmq_hist *hp = NULL, *hc = NULL;

	p.o = o;
	p.d = o->system == BENCH_NATS ? &bench_driver_nats : &bench_driver_redis;
	p.wall_offset_ns = bench_wall_offset_ns();

	unsigned conns = (unsigned)(o->threads * o->connections);
	p.nprod = o->mode == BENCH_CONSUME ? 0 : conns;
	p.ncons = o->mode == BENCH_PRODUCE ? 0 : conns;
	if (p.ncons && p.d->readers_max && p.ncons > p.d->readers_max)
		p.ncons = p.d->readers_max;
	p.w = calloc(p.nprod + p.ncons, sizeof(*p.w));
	hp = malloc(sizeof(*hp));
	hc = malloc(sizeof(*hc));
	if (!p.w || !hp || !hc) {
		fprintf(stderr, "rmq-bench: out of memory\n");
		status = 1;
		goto out;
	}
	for (unsigned i = 0; i < p.nprod + p.ncons; i++) {
		struct bench_peer_worker *w = &p.w[i];
		w->consumer = i >= p.nprod;
		w->index = w->consumer ? i - p.nprod : i;
		pthread_mutex_init(&w->mu, NULL);
		rmq_hist_reset(&w->hist);
	}
	if (p.d->setup(o, err, sizeof(err)) < 0) {
		fprintf(stderr, "rmq-bench: %s: %s\n", o->target, err);
		status = 1;
		(void)p.d->teardown(o); /* what setup opened; no worker ran */
		goto out_workers;
	}

	bench_catch_signals(on_signal);

	/* Readers first, so that an e2e reader from "latest" is in place
	 * before the first message; the clock starts once all are running. */
	for (unsigned i = p.nprod + p.ncons; i-- > 0;) {
		struct bench_peer_worker *w = &p.w[i];
		if (pthread_create(&w->tid, NULL, worker_main, w) != 0) {
			fprintf(stderr, "rmq-bench: cannot start a thread\n");
			atomic_store(&p.stop, true);
			status = 1;
			break;
		}
		w->started = true;
	}
	uint64_t t0 = rmq_now_ns();
	atomic_store(&p.t_warm, t0 + o->warmup_ns);
	atomic_store(&p.t_end, o->duration_ns ? t0 + o->warmup_ns + o->duration_ns : UINT64_MAX);
	atomic_store(&p.t_start, t0);

	pthread_t progress;
	struct bench_progress pg = {
		.produce = p.nprod > 0,
		.consume = p.ncons > 0,
		.finished = &p.finished,
		.t_start = &p.t_start,
		.t_warm = &p.t_warm,
		.collect = progress_collect,
	};
	bool have_progress = o->progress &&
			     pthread_create(&progress, NULL, bench_progress_main, &pg) == 0;
	while (!atomic_load(&p.stop) && rmq_now_ns() < atomic_load(&p.t_end)) {
		struct timespec ts = {0, 10 * 1000 * 1000};
		nanosleep(&ts, NULL);
	}
	uint64_t t_stop = rmq_now_ns();
	if (t_stop > atomic_load(&p.t_end))
		t_stop = atomic_load(&p.t_end);
	/* Freeze the window: what is answered from now on is not counted. */
	atomic_store(&p.t_end, t_stop);
	atomic_store(&p.stop, true);
	unsigned failed = 0;
	for (unsigned i = 0; i < p.nprod + p.ncons; i++) {
		if (!p.w[i].started)
			continue;
		pthread_join(p.w[i].tid, NULL);
		if (p.w[i].rc < 0)
			failed++;
	}
	atomic_store(&p.finished, true);
	if (have_progress)
		pthread_join(progress, NULL);
	if (p.d->teardown(o) < 0) {
		/* Its callbacks may still be given a worker: leak them rather
		 * than free them under it (the process is about to end). */
		fprintf(stderr, "rmq-bench: the %s client library's threads did not stop\n",
			p.d->name);
		workers_free = false;
	}

	uint64_t warm = atomic_load(&p.t_warm);
	double secs = t_stop > warm ? (double)(t_stop - warm) / 1e9 : 0.0;
	if (status == 0 && failed == p.nprod + p.ncons) {
		fprintf(stderr, "rmq-bench: no connection to %s could be opened\n", o->target);
		status = 1;
	} else if (status == 0 && secs <= 0) {
		fprintf(stderr, "rmq-bench: stopped before the warm-up ended\n");
		status = 1;
	} else if (status == 0) {
		struct peer_section prod = {.name = "produce", .hist = hp};
		struct peer_section cons = {.name = "consume", .hist = hc};
		collect(&prod, false);
		collect(&cons, true);
		if (o->mode == BENCH_PRODUCE)
			report(secs, &prod, NULL);
		else if (o->mode == BENCH_CONSUME)
			report(secs, &cons, NULL);
		else
			report(secs, &cons, &prod);
		if (failed)
			fprintf(stderr, "rmq-bench: %u of %u connections to %s failed\n", failed,
				p.nprod + p.ncons, o->target);
	}
out_workers:
	if (!workers_free)
		p.w = NULL; /* leaked on purpose, mutexes and all */
	for (unsigned i = 0; p.w && i < p.nprod + p.ncons; i++)
		pthread_mutex_destroy(&p.w[i].mu);
out:
	free(p.w);
	free(hp);
	free(hc);
	return status;
}
