/* SPDX-License-Identifier: Apache-2.0 */
/*
 * shard.c - shard threads, their loop, timers and mail (see shard.h).
 *
 * Wake-ups.  A poster pushes into the pair's queue and then, unless the
 * target already has a wake-up on its way (wake_pending), submits an
 * IORING_OP_MSG_RING from its own ring to the target's ring.  The target's
 * completion clears wake_pending *before* draining:
 *
 *   poster:  push (release)  ; xchg(wake_pending, 1) == 0 → MSG_RING
 *   target:  xchg(wake_pending, 0) ; drain every queue
 *
 * Both exchanges are sequentially consistent, so either the drain sees the
 * message or the poster sees 0 and sends another wake-up: no message is
 * left behind by a sleeping shard.  The loop also drains once per cycle.
 *
 * Backlogs.  rmq_shard_post() never waits for room.  A message for a full
 * queue (or for a queue that already has a backlog, to keep the pair's
 * order) is linked at the end of the sender's backlog for that target;
 * every cycle, before the mail is drained, the backlogs move into their
 * queues as far as room allows.  While a backlog is left the cycle sleeps
 * at most RMQ_SHARD_BACKLOG_RETRY_NS.  Posts to the own shard are a plain
 * list run in the next cycle's drain.  So no shard ever waits on another:
 * two shards flooding each other both keep draining their own queues.
 *
 * Stop.  rmq_runtime_stop() (signal handlers may call it) sets a flag and
 * writes each shard's eventfd; a pending read on it completes and the loop
 * starts draining (see rmq_runtime_on_stop).
 */
#include "core/shard.h"

#include "core/assert.h"
#include "core/error.h"
#include "core/log.h"
#include "core/util.h"
#include "core/xshard.h"

#include <errno.h>
#include <pthread.h>
#include <sched.h> /* pin_to_cpu */
#include <stdlib.h>
#include <string.h>
#include <sys/eventfd.h>
#include <time.h>
#include <unistd.h>

/* Longest a shard sleeps without a timer: bounds the delay of a lost
 * wake-up (a MSG_RING refused by a full CQ) at a cost of ~10 wake-ups/s. */
#define RMQ_SHARD_MAX_SLEEP_NS (100ULL * 1000 * 1000)
/* Longest a shard sleeps while a backlog waits for room in a queue: the
 * target frees room as it drains, without telling the sender. */
#define RMQ_SHARD_BACKLOG_RETRY_NS (50ULL * 1000)

/* Messages linked through rmq_xmsg.next, oldest first. */
struct mlist {
	struct rmq_xmsg *head, *tail;
};

struct hook {
	rmq_hook_fn fn;
	void *arg;
};

struct rmq_shard {
	struct rmq_runtime *rt;
	unsigned id;
	pthread_t thread;
	struct rmq_io *io;
	int ring_fd;
	void *data;

	struct rmq_timer **heap;
	uint32_t nheap, heap_cap;

	struct hook hooks[RMQ_SHARD_HOOKS_MAX];
	unsigned nhooks;

	/* out[to]: messages waiting for room in the queue to `to`;
	 * out[id]: own posts for the next cycle.  See "Backlogs" above. */
	struct mlist *out;
	size_t nremote, nlocal;

	_Atomic int wake_pending;
	struct rmq_io_op wake_op;    /* target of MSG_RING wake-ups */
	struct rmq_io_op msg_ring_op; /* completions of MSG_RINGs we send */
	int stop_fd;
	uint64_t stop_buf;
	struct rmq_io_op stop_op;
	/* Mail from other threads (rmq_runtime_post): a locked list and an
	 * eventfd the ring reads. */
	pthread_mutex_t inbox_mu;
	struct mlist inbox;
	int inbox_fd;
	uint64_t inbox_buf;
	struct rmq_io_op inbox_op;
	bool stop_seen;
	bool drained;        /* counted in rt->ndrained */
	int init_rc;
};

struct rmq_runtime {
	struct rmq_runtime_config cfg;
	unsigned n;
	struct rmq_shard *shards;
	struct rmq_xq *queues; /* [from * n + to] */
	_Atomic bool stopping;
	_Atomic unsigned ndrained; /* shards whose drain check has passed */
	pthread_mutex_t ready_mu;
	pthread_cond_t ready_cv;
	unsigned ready;         /* shards whose ring is up (or failed); ready_mu */
	bool (*drained)(struct rmq_shard *s, void *arg);
	int (*init)(struct rmq_shard *s, void *arg);
	void (*fini)(struct rmq_shard *s, void *arg);
	void *arg;
};

static _Thread_local struct rmq_shard *current;

uint64_t rmq_now_ns(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (uint64_t)ts.tv_sec * 1000000000ULL + (uint64_t)ts.tv_nsec;
}

/* ---- timers: a binary min-heap on deadline ------------------------------ */

static void heap_set(struct rmq_shard *s, uint32_t i, struct rmq_timer *t)
{
	s->heap[i] = t;
	t->heap_index = i + 1;
}

static void heap_up(struct rmq_shard *s, uint32_t i)
{
	struct rmq_timer *t = s->heap[i];
	while (i > 0) {
		uint32_t p = (i - 1) / 2;
		if (s->heap[p]->deadline_ns <= t->deadline_ns)
			break;
		heap_set(s, i, s->heap[p]);
		i = p;
	}
	heap_set(s, i, t);
}

static void heap_down(struct rmq_shard *s, uint32_t i)
{
	struct rmq_timer *t = s->heap[i];
	for (;;) {
		uint32_t c = 2 * i + 1;
		if (c >= s->nheap)
			break;
		if (c + 1 < s->nheap && s->heap[c + 1]->deadline_ns < s->heap[c]->deadline_ns)
			c++;
		if (t->deadline_ns <= s->heap[c]->deadline_ns)
			break;
		heap_set(s, i, s->heap[c]);
		i = c;
	}
	heap_set(s, i, t);
}

void rmq_timer_cancel(struct rmq_shard *s, struct rmq_timer *t)
{
	if (t->heap_index == 0)
		return;
	uint32_t i = t->heap_index - 1;
	RMQ_DASSERT(s->heap[i] == t);
	t->heap_index = 0;
	s->nheap--;
	if (i == s->nheap)
		return;
	struct rmq_timer *m = s->heap[s->nheap];
	heap_set(s, i, m);
	heap_down(s, i);
	heap_up(s, m->heap_index - 1);
}

int rmq_timer_start(struct rmq_shard *s, struct rmq_timer *t, uint64_t deadline_ns,
		    rmq_timer_fn fn)
{
	rmq_timer_cancel(s, t);
	if (s->nheap == s->heap_cap)
		return RMQ_EFULL;
	t->fn = fn;
	t->deadline_ns = deadline_ns;
	heap_set(s, s->nheap++, t);
	heap_up(s, s->nheap - 1);
	return 0;
}

static void run_timers(struct rmq_shard *s, uint64_t now)
{
	while (s->nheap > 0 && s->heap[0]->deadline_ns <= now) {
		struct rmq_timer *t = s->heap[0];
		rmq_timer_cancel(s, t);
		t->fn(t);
	}
}

/* ---- mail ---------------------------------------------------------------- */

static struct rmq_xq *queue(struct rmq_runtime *rt, unsigned from, unsigned to)
{
	return &rt->queues[from * rt->n + to];
}

static void mlist_add(struct mlist *l, struct rmq_xmsg *m)
{
	m->next = NULL;
	if (l->tail)
		l->tail->next = m;
	else
		l->head = m;
	l->tail = m;
}

/* Wakes shard `to` unless a wake-up is on its way already. */
static void wake(struct rmq_shard *from, unsigned to)
{
	struct rmq_shard *t = &from->rt->shards[to];
	if (atomic_exchange(&t->wake_pending, 1) != 0)
		return;
	struct io_uring_sqe *sqe = rmq_io_sqe(from->io, &from->msg_ring_op);
	if (sqe)
		io_uring_prep_msg_ring(sqe, t->ring_fd, 0, (uint64_t)(uintptr_t)&t->wake_op, 0);
	/* else: the target's bounded sleep picks the message up. */
}

/* Moves each backlog into its queue as far as there is room. */
static void flush_backlogs(struct rmq_shard *s)
{
	struct rmq_runtime *rt = s->rt;
	for (unsigned to = 0; to < rt->n && s->nremote > 0; to++) {
		struct mlist *l = &s->out[to];
		bool pushed = false;
		if (to == s->id)
			continue;
		while (l->head) {
			struct rmq_xmsg *m = l->head, *next = m->next;
			/* Once pushed, m belongs to the target: read next first. */
			if (!rmq_xq_push(queue(rt, s->id, to), m))
				break;
			l->head = next;
			s->nremote--;
			pushed = true;
		}
		if (!l->head)
			l->tail = NULL;
		if (pushed)
			wake(s, to);
	}
}

static void drain_mail(struct rmq_shard *s)
{
	struct rmq_runtime *rt = s->rt;
	flush_backlogs(s);
	for (unsigned from = 0; from < rt->n; from++) {
		struct rmq_xq *q = queue(rt, from, s->id);
		struct rmq_xmsg *m;
		while ((m = rmq_xq_pop(q)) != NULL)
			m->fn(m);
	}
	/* Own posts: those made while these run wait for the next cycle. */
	struct rmq_xmsg *m = s->out[s->id].head;
	s->out[s->id].head = s->out[s->id].tail = NULL;
	s->nlocal = 0;
	while (m) {
		struct rmq_xmsg *next = m->next;
		m->fn(m);
		m = next;
	}
}

static void wake_done(struct rmq_io_op *op, int res, unsigned flags)
{
	struct rmq_shard *s = RMQ_CONTAINER_OF(op, struct rmq_shard, wake_op);
	(void)res;
	(void)flags;
	atomic_exchange(&s->wake_pending, 0); /* before draining: see the top */
	drain_mail(s);
}

static void msg_ring_done(struct rmq_io_op *op, int res, unsigned flags)
{
	(void)op;
	(void)flags;
	/* A refused wake-up is recovered by the target's bounded sleep. */
	if (res < 0 && res != -EOVERFLOW)
		rmq_debug("MSG_RING wake-up failed: %s", rmq_strerror(res));
}

void rmq_shard_post(struct rmq_shard *from, unsigned to, struct rmq_xmsg *m)
{
	struct rmq_runtime *rt = from->rt;

	RMQ_ASSERT(to < rt->n);
	RMQ_DASSERT(from == current);
	m->from = (uint16_t)from->id;
	if (to == from->id) {
		mlist_add(&from->out[to], m);
		from->nlocal++;
		return;
	}
	if (from->out[to].head == NULL && rmq_xq_push(queue(rt, from->id, to), m)) {
		wake(from, to);
		return;
	}
	mlist_add(&from->out[to], m);
	from->nremote++;
}

size_t rmq_shard_backlog(const struct rmq_shard *s)
{
	return s->nremote + s->nlocal;
}

/* ---- accessors ------------------------------------------------------------ */

struct rmq_shard *rmq_shard_current(void)
{
	return current;
}

unsigned rmq_shard_id(const struct rmq_shard *s)
{
	return s->id;
}

unsigned rmq_shard_count(const struct rmq_shard *s)
{
	return s->rt->n;
}

struct rmq_io *rmq_shard_io(struct rmq_shard *s)
{
	return s->io;
}

struct rmq_runtime *rmq_shard_runtime(struct rmq_shard *s)
{
	return s->rt;
}

void rmq_shard_set_data(struct rmq_shard *s, void *data)
{
	s->data = data;
}

void *rmq_shard_data(const struct rmq_shard *s)
{
	return s->data;
}

int rmq_shard_add_hook(struct rmq_shard *s, rmq_hook_fn fn, void *arg)
{
	if (s->nhooks == RMQ_SHARD_HOOKS_MAX)
		return RMQ_EFULL;
	s->hooks[s->nhooks++] = (struct hook){fn, arg};
	return 0;
}

void rmq_shard_remove_hook(struct rmq_shard *s, rmq_hook_fn fn, void *arg)
{
	for (unsigned i = 0; i < s->nhooks; i++) {
		if (s->hooks[i].fn == fn && s->hooks[i].arg == arg) {
			memmove(&s->hooks[i], &s->hooks[i + 1], (s->nhooks - i - 1) * sizeof(s->hooks[0]));
			s->nhooks--;
			return;
		}
	}
}

bool rmq_runtime_stopping(const struct rmq_runtime *rt)
{
	return atomic_load_explicit(&rt->stopping, memory_order_relaxed);
}

void rmq_runtime_on_stop(struct rmq_runtime *rt, bool (*drained)(struct rmq_shard *s, void *arg))
{
	rt->drained = drained;
}

/* ---- the loop -------------------------------------------------------------- */

/* Arms a read of an eventfd; a moment without an SQE defers it (the
 * callback then sees -EAGAIN and arms again). */
static void arm_eventfd_read(struct rmq_shard *s, struct rmq_io_op *op, int fd, uint64_t *buf)
{
	struct io_uring_sqe *sqe = rmq_io_sqe(s->io, op);
	if (sqe)
		io_uring_prep_read(sqe, fd, buf, sizeof(*buf), 0);
	else
		rmq_io_defer(s->io, op);
}

static void arm_stop_read(struct rmq_shard *s)
{
	arm_eventfd_read(s, &s->stop_op, s->stop_fd, &s->stop_buf);
}

static void arm_inbox_read(struct rmq_shard *s)
{
	arm_eventfd_read(s, &s->inbox_op, s->inbox_fd, &s->inbox_buf);
}

/* Mail from threads that are not shards (rmq_runtime_post). */
static void inbox_done(struct rmq_io_op *op, int res, unsigned flags)
{
	struct rmq_shard *s = RMQ_CONTAINER_OF(op, struct rmq_shard, inbox_op);
	(void)res;
	(void)flags;
	/* Re-arm before draining: a post after the drain's swap writes the
	 * eventfd again, and the read armed here sees it. */
	arm_inbox_read(s);
	pthread_mutex_lock(&s->inbox_mu);
	struct rmq_xmsg *m = s->inbox.head;
	s->inbox.head = s->inbox.tail = NULL;
	pthread_mutex_unlock(&s->inbox_mu);
	while (m) {
		struct rmq_xmsg *next = m->next;
		m->fn(m);
		m = next;
	}
}

void rmq_runtime_post(struct rmq_runtime *rt, unsigned to, struct rmq_xmsg *m)
{
	struct rmq_shard *t = &rt->shards[to];
	uint64_t one = 1;
	RMQ_ASSERT(to < rt->n);
	pthread_mutex_lock(&t->inbox_mu);
	mlist_add(&t->inbox, m);
	pthread_mutex_unlock(&t->inbox_mu);
	ssize_t w = write(t->inbox_fd, &one, sizeof(one)); /* a full counter still wakes */
	(void)w;
}

static void stop_done(struct rmq_io_op *op, int res, unsigned flags)
{
	struct rmq_shard *s = RMQ_CONTAINER_OF(op, struct rmq_shard, stop_op);
	(void)flags;
	if (res == -EINTR || res == -EAGAIN) {
		arm_stop_read(s);
		return;
	}
	s->stop_seen = true;
}

static int pin_to_cpu(unsigned index)
{
	cpu_set_t allowed, one;
	if (sched_getaffinity(0, sizeof(allowed), &allowed) < 0)
		return -errno;
	int cpu = -1, seen = 0, count = CPU_COUNT(&allowed);
	if (count == 0)
		return -EINVAL;
	unsigned want = index % (unsigned)count;
	for (int c = 0; c < CPU_SETSIZE; c++) {
		if (CPU_ISSET(c, &allowed) && (unsigned)seen++ == want) {
			cpu = c;
			break;
		}
	}
	CPU_ZERO(&one);
	CPU_SET(cpu, &one);
	int rc = pthread_setaffinity_np(pthread_self(), sizeof(one), &one);
	return -rc;
}

/* This shard's ring is up (or failed): one less for the others to wait on. */
static void ring_ready(struct rmq_runtime *rt)
{
	pthread_mutex_lock(&rt->ready_mu);
	rt->ready++;
	pthread_cond_broadcast(&rt->ready_cv);
	pthread_mutex_unlock(&rt->ready_mu);
}

static void *shard_main(void *p)
{
	struct rmq_shard *s = p;
	struct rmq_runtime *rt = s->rt;
	struct rmq_io_config ic = {
		.entries = rt->cfg.ring_entries,
		.fixed_buffers = rt->cfg.fixed_buffers,
	};
	int rc;

	current = s;
	rmq_log_set_shard((int)s->id);
	if (rt->cfg.pin) {
		rc = pin_to_cpu(s->id);
		if (rc < 0)
			rmq_warn("cannot pin shard %u: %s", s->id, rmq_strerror(rc));
	}
	rc = rmq_io_create(&ic, &s->io);
	if (rc < 0) {
		rmq_error("shard %u: io_uring setup failed: %s", s->id, rmq_strerror(rc));
		s->init_rc = rc;
		ring_ready(rt);
		rmq_runtime_stop(rt);
		return NULL;
	}
	s->ring_fd = rmq_io_ring(s->io)->ring_fd;
	arm_stop_read(s);
	arm_inbox_read(s);
	/* Every ring must exist before anyone posts: MSG_RING targets fds. */
	ring_ready(rt);
	pthread_mutex_lock(&rt->ready_mu);
	while (rt->ready < rt->n)
		pthread_cond_wait(&rt->ready_cv, &rt->ready_mu);
	pthread_mutex_unlock(&rt->ready_mu);

	if (rt->init) {
		rc = rt->init(s, rt->arg);
		if (rc < 0) {
			s->init_rc = rc;
			rmq_runtime_stop(rt);
		}
	}
	for (;;) {
		uint64_t now = rmq_now_ns();
		run_timers(s, now);
		drain_mail(s);
		if (s->stop_seen || rmq_runtime_stopping(rt)) {
			/* A drained shard keeps serving mail until every shard
			 * is drained: another shard's call may still post work
			 * here, and a shard that left its loop would never
			 * answer it.  Nor does it leave with mail unsent. */
			bool idle = rmq_shard_backlog(s) == 0;
			if (!s->drained && idle && (!rt->drained || rt->drained(s, rt->arg))) {
				s->drained = true;
				atomic_fetch_add(&rt->ndrained, 1);
			}
			if (s->drained && idle && atomic_load(&rt->ndrained) == rt->n)
				break;
		}
		for (unsigned i = 0; i < s->nhooks; i++)
			s->hooks[i].fn(s, s->hooks[i].arg);
		uint64_t wait = RMQ_SHARD_MAX_SLEEP_NS;
		if (s->nheap > 0) {
			uint64_t d = s->heap[0]->deadline_ns;
			now = rmq_now_ns();
			wait = d <= now ? 1 : d - now;
			if (wait > RMQ_SHARD_MAX_SLEEP_NS)
				wait = RMQ_SHARD_MAX_SLEEP_NS;
		}
		if (s->nremote > 0 && wait > RMQ_SHARD_BACKLOG_RETRY_NS)
			wait = RMQ_SHARD_BACKLOG_RETRY_NS;
		if (s->nlocal > 0) {
			/* Own posts run in the next cycle: do not sleep. */
			rc = rmq_io_poll(s->io);
		} else {
			/* Busy-poll a little first: waking a sleeping thread
			 * costs tens of µs on a VM, more than a short
			 * request's work. */
			if (rt->cfg.poll_ns && !s->drained)
				(void)rmq_io_spin(s->io, rt->cfg.poll_ns < wait ? rt->cfg.poll_ns : wait);
			rc = rmq_io_wait(s->io, wait);
		}
		if (rc < 0) {
			rmq_error("shard %u: io_uring wait failed: %s", s->id, rmq_strerror(rc));
			rmq_runtime_stop(rt);
			break;
		}
	}
	if (rt->fini)
		rt->fini(s, rt->arg);
	/* Let the kernel finish what was submitted before the ring goes. */
	rmq_io_poll(s->io);
	return NULL;
}

int rmq_runtime_create(const struct rmq_runtime_config *cfg, struct rmq_runtime **out)
{
	struct rmq_runtime *rt = calloc(1, sizeof(*rt));
	unsigned cap = cfg->xshard_capacity ? cfg->xshard_capacity : 1024;
	int rc = -ENOMEM;

	if (!rt)
		return -ENOMEM;
	if (cfg->shards == 0 || cfg->shards > 1024 || (cap & (cap - 1)) != 0) {
		free(rt);
		return -EINVAL;
	}
	rt->cfg = *cfg;
	pthread_mutex_init(&rt->ready_mu, NULL);
	pthread_cond_init(&rt->ready_cv, NULL);
	rt->n = cfg->shards;
	rt->shards = calloc(rt->n, sizeof(*rt->shards));
	rt->queues = aligned_alloc(64, sizeof(*rt->queues) * rt->n * rt->n);
	if (!rt->shards || !rt->queues)
		goto err;
	memset(rt->queues, 0, sizeof(*rt->queues) * rt->n * rt->n);
	for (unsigned i = 0; i < rt->n * rt->n; i++) {
		rt->queues[i].mask = cap - 1;
		rt->queues[i].slots = calloc(cap, sizeof(struct rmq_xmsg *));
		if (!rt->queues[i].slots)
			goto err;
	}
	for (unsigned i = 0; i < rt->n; i++) {
		struct rmq_shard *s = &rt->shards[i];
		s->rt = rt;
		s->id = i;
		s->wake_op.cb = wake_done;
		s->msg_ring_op.cb = msg_ring_done;
		s->stop_op.cb = stop_done;
		s->inbox_op.cb = inbox_done;
		pthread_mutex_init(&s->inbox_mu, NULL);
		s->inbox_fd = eventfd(0, EFD_CLOEXEC);
		s->heap_cap = cfg->timers_max ? cfg->timers_max : 65536;
		s->heap = calloc(s->heap_cap, sizeof(*s->heap));
		s->out = calloc(rt->n, sizeof(*s->out));
		s->stop_fd = eventfd(0, EFD_CLOEXEC);
		if (!s->heap || !s->out || s->stop_fd < 0 || s->inbox_fd < 0) {
			rc = s->stop_fd < 0 || s->inbox_fd < 0 ? -errno : -ENOMEM;
			goto err;
		}
	}
	*out = rt;
	return 0;
err:
	rmq_runtime_destroy(rt);
	return rc;
}

int rmq_runtime_run(struct rmq_runtime *rt, int (*init)(struct rmq_shard *s, void *arg),
		    void (*fini)(struct rmq_shard *s, void *arg), void *arg)
{
	int rc = 0;

	rt->init = init;
	rt->fini = fini;
	rt->arg = arg;
	for (unsigned i = 0; i < rt->n; i++) {
		int e = pthread_create(&rt->shards[i].thread, NULL, shard_main, &rt->shards[i]);
		if (e != 0) {
			rmq_runtime_stop(rt);
			for (unsigned k = 0; k < i; k++)
				pthread_join(rt->shards[k].thread, NULL);
			return -e;
		}
	}
	for (unsigned i = 0; i < rt->n; i++) {
		pthread_join(rt->shards[i].thread, NULL);
		if (rt->shards[i].init_rc < 0 && rc == 0)
			rc = rt->shards[i].init_rc;
	}
	for (unsigned i = 0; i < rt->n; i++) {
		rmq_io_destroy(rt->shards[i].io);
		rt->shards[i].io = NULL;
	}
	return rc;
}

void rmq_runtime_stop(struct rmq_runtime *rt)
{
	uint64_t one = 1;
	atomic_store(&rt->stopping, true);
	for (unsigned i = 0; i < rt->n; i++) {
		/* write(2) is async-signal-safe; a full counter still wakes. */
		ssize_t w = write(rt->shards[i].stop_fd, &one, sizeof(one));
		(void)w;
	}
}

void rmq_runtime_destroy(struct rmq_runtime *rt)
{
	if (!rt)
		return;
	if (rt->queues) {
		for (unsigned i = 0; i < rt->n * rt->n; i++)
			free(rt->queues[i].slots);
		free(rt->queues);
	}
	if (rt->shards) {
		for (unsigned i = 0; i < rt->n; i++) {
			free(rt->shards[i].heap);
			free(rt->shards[i].out);
			if (rt->shards[i].stop_fd > 0)
				close(rt->shards[i].stop_fd);
			if (rt->shards[i].inbox_fd > 0)
				close(rt->shards[i].inbox_fd);
			pthread_mutex_destroy(&rt->shards[i].inbox_mu);
		}
		free(rt->shards);
	}
	pthread_cond_destroy(&rt->ready_cv);
	pthread_mutex_destroy(&rt->ready_mu);
	free(rt);
}
