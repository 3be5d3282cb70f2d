/* SPDX-License-Identifier: Apache-2.0 */
/*
 * io.c - the shard's io_uring ring and completion dispatch (see io.h), with
 * the deferred-op list and the fault layer tests arm.
 *
 * Deferred ops.  An op that got no SQE waits on a FIFO list; each dispatch
 * takes the list as it stands and runs those callbacks with -EAGAIN after
 * the completions it reaped.  Ops deferred again during that pass wait for
 * the next one, so a ring that keeps refusing costs one retry per cycle,
 * never a loop.
 *
 * Fault layer (armed only).  Before each submission the SQEs queued since
 * the last one are looked at (SQ indexes [scanned, sqe_tail)): an op whose
 * SQE a completion rule picks is remembered, with what to do, in `picks`.
 * When its CQE is reaped the result is rewritten, or the completion moved
 * to `held` for some dispatch passes, before its callback runs.
 */
#include "core/io.h"

#include "core/assert.h"
#include "core/error.h"
#include "core/log.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

/* Ops whose completion a rule changes, remembered from submission to
 * completion; and completions held back.  Bounded: past the bound an
 * operation simply goes unfaulted (or undelayed). */
#define FAULT_PICKS_MAX 256
#define FAULT_HELD_MAX 256

struct fault_pick {
	struct rmq_io_op *op;
	int res;              /* 0 = keep */
	uint32_t short_align; /* 0 = not short */
	uint32_t delay_cycles;
};

struct fault {
	struct rmq_io_fault_rule rules[RMQ_IO_FAULT_RULES_MAX];
	unsigned nrules;
	uint64_t rng;
	unsigned scanned; /* SQ index: SQEs before it were looked at */
	struct fault_pick picks[FAULT_PICKS_MAX];
	unsigned npicks;
};

struct held {
	struct rmq_io_op *op;
	int res;
	unsigned flags;
	uint32_t cycles;
};

struct rmq_io {
	struct io_uring ring;
	bool defer_taskrun;
	unsigned nbuf;       /* fixed-buffer table size (0 = none registered) */
	uint8_t *buf_used;   /* nbuf flags */
	struct rmq_io_op *defer_head, *defer_tail;
	struct fault *fault; /* NULL = unarmed */
	struct held *held;   /* FAULT_HELD_MAX, allocated when first armed */
	unsigned nheld;
};

/* The ring whose rules rmq_io_fault_sys() applies on this thread. */
static _Thread_local struct rmq_io *sys_armed;

struct reaped {
	struct rmq_io_op *op;
	int res;
	unsigned flags;
};

int rmq_io_create(const struct rmq_io_config *cfg, struct rmq_io **out)
{
	static const struct {
		unsigned flags;
		const char *what;
	} tries[] = {
		{IORING_SETUP_SINGLE_ISSUER | IORING_SETUP_DEFER_TASKRUN, NULL},
		{IORING_SETUP_SINGLE_ISSUER, "DEFER_TASKRUN"},
		{0, "SINGLE_ISSUER"},
	};
	struct rmq_io *io = calloc(1, sizeof(*io));
	int rc = -EINVAL;

	if (!io)
		return -ENOMEM;
	for (size_t i = 0; i < sizeof(tries) / sizeof(tries[0]); i++) {
		struct io_uring_params p;
		memset(&p, 0, sizeof(p));
		p.flags = tries[i].flags | IORING_SETUP_CQSIZE;
		p.cq_entries = cfg->entries * 4;
		rc = io_uring_queue_init_params(cfg->entries, &io->ring, &p);
		if (rc == 0) {
			io->defer_taskrun = (tries[i].flags & IORING_SETUP_DEFER_TASKRUN) != 0;
			break;
		}
		if (rc != -EINVAL)
			goto err_free;
		if (i + 1 < sizeof(tries) / sizeof(tries[0]))
			rmq_warn("io_uring: kernel lacks %s, falling back", tries[i + 1].what);
	}
	if (rc < 0)
		goto err_free;
	if (cfg->fixed_buffers > 0) {
		io->buf_used = calloc(cfg->fixed_buffers, 1);
		if (!io->buf_used) {
			rc = -ENOMEM;
			goto err_ring;
		}
		rc = io_uring_register_buffers_sparse(&io->ring, cfg->fixed_buffers);
		if (rc < 0) {
			/* Old kernels: run with plain reads and writes. */
			rmq_warn("io_uring: no sparse fixed buffers (%s), using plain I/O",
				 rmq_strerror(rc));
			free(io->buf_used);
			io->buf_used = NULL;
		} else {
			io->nbuf = cfg->fixed_buffers;
		}
	}
	*out = io;
	return 0;

err_ring:
	io_uring_queue_exit(&io->ring);
err_free:
	free(io);
	return rc;
}

void rmq_io_destroy(struct rmq_io *io)
{
	if (!io)
		return;
	if (sys_armed == io)
		sys_armed = NULL;
	io_uring_queue_exit(&io->ring);
	free(io->buf_used);
	free(io->fault);
	free(io->held);
	free(io);
}

struct io_uring *rmq_io_ring(struct rmq_io *io)
{
	return &io->ring;
}

bool rmq_io_defer_taskrun(const struct rmq_io *io)
{
	return io->defer_taskrun;
}

/* ---- fault layer ----------------------------------------------------------- */

static uint64_t fault_rand(struct fault *f)
{
	/* xorshift64*: deterministic per seed, good enough for picking. */
	f->rng ^= f->rng >> 12;
	f->rng ^= f->rng << 25;
	f->rng ^= f->rng >> 27;
	return f->rng * 2685821657736338717ULL;
}

static bool path_matches(const struct rmq_io_fault_rule *r, int fd, const char *path)
{
	char buf[4096];

	if (!r->path_suffix)
		return true;
	if (!path) {
		char link[64];
		if (fd < 0)
			return false;
		snprintf(link, sizeof(link), "/proc/self/fd/%d", fd);
		ssize_t n = readlink(link, buf, sizeof(buf) - 1);
		if (n < 0)
			return false;
		buf[n] = '\0';
		path = buf;
	}
	size_t lp = strlen(path), ls = strlen(r->path_suffix);
	return lp >= ls && strcmp(path + lp - ls, r->path_suffix) == 0;
}

/* Counts a match of r and decides whether it is picked. */
static bool fault_pick(struct fault *f, struct rmq_io_fault_rule *r)
{
	r->matched++;
	if (r->matched <= r->skip || (r->count && r->fired >= r->count))
		return false;
	bool yes = r->every ? (r->matched - r->skip) % r->every == 0
			    : fault_rand(f) % 1000000 < r->ppm;
	if (yes)
		r->fired++;
	return yes;
}

/* The first rule of kind matching (opcode, fd, path) that picks this one;
 * opcode -1 for calls that are not ring operations. */
static struct rmq_io_fault_rule *fault_match(struct fault *f, enum rmq_io_fault_kind kind,
					     int opcode, int fd, const char *path)
{
	for (unsigned i = 0; i < f->nrules; i++) {
		struct rmq_io_fault_rule *r = &f->rules[i];
		if (r->kind != kind)
			continue;
		if (r->opcodes && (opcode < 0 || !(r->opcodes & (1ULL << opcode))))
			continue;
		if (path_matches(r, fd, path) && fault_pick(f, r))
			return r;
	}
	return NULL;
}

static int opcode_kind(uint8_t opcode)
{
	switch (opcode) {
	case IORING_OP_WRITE:
	case IORING_OP_WRITEV:
	case IORING_OP_WRITE_FIXED:
		return RMQ_IO_FAULT_WRITE;
	case IORING_OP_READ:
	case IORING_OP_READV:
	case IORING_OP_READ_FIXED:
		return RMQ_IO_FAULT_READ;
	case IORING_OP_FSYNC:
		return RMQ_IO_FAULT_FSYNC;
	case IORING_OP_FALLOCATE:
		return RMQ_IO_FAULT_FALLOCATE;
	default:
		return -1;
	}
}

/* Looks at the SQEs queued since the last submission and remembers the
 * ops whose completion a rule changes. */
static void fault_scan(struct rmq_io *io)
{
	struct fault *f = io->fault;
	struct io_uring_sq *sq = &io->ring.sq;
	unsigned from = f->scanned;

	if (sq->sqe_tail - from > sq->sqe_tail - sq->sqe_head)
		from = sq->sqe_head; /* submitted without a scan, or first scan */
	for (unsigned i = from; i != sq->sqe_tail; i++) {
		const struct io_uring_sqe *sqe = &sq->sqes[i & sq->ring_mask];
		struct rmq_io_op *op = (struct rmq_io_op *)(uintptr_t)sqe->user_data;
		int kind = opcode_kind(sqe->opcode);
		if (!op || kind < 0 || f->npicks == FAULT_PICKS_MAX)
			continue;
		int fd = (sqe->flags & IOSQE_FIXED_FILE) ? -1 : sqe->fd;
		struct rmq_io_fault_rule *r =
			fault_match(f, (enum rmq_io_fault_kind)kind, sqe->opcode, fd, NULL);
		if (!r)
			continue;
		f->picks[f->npicks++] = (struct fault_pick){
			.op = op,
			.res = r->res,
			.short_align = r->short_io ? (r->short_align ? r->short_align : 4096) : 0,
			.delay_cycles = r->delay_cycles,
		};
	}
	f->scanned = sq->sqe_tail;
}

/* Before a submission: returns true when it must be refused (as if
 * io_uring_enter had answered -EBUSY). */
static inline bool submit_refused(struct rmq_io *io)
{
	if (__builtin_expect(io->fault == NULL, 1))
		return false;
	fault_scan(io);
	if (io->ring.sq.sqe_tail == io->ring.sq.sqe_head)
		return false; /* nothing to submit */
	return fault_match(io->fault, RMQ_IO_FAULT_SUBMIT, -1, -1, NULL) != NULL;
}

/* Applies a pick to a reaped completion.  Returns false when the
 * completion was held back (its callback runs later). */
static bool fault_apply(struct rmq_io *io, struct reaped *c)
{
	struct fault *f = io->fault;

	for (unsigned i = 0; i < f->npicks; i++) {
		if (f->picks[i].op != c->op)
			continue;
		struct fault_pick p = f->picks[i];
		f->picks[i] = f->picks[--f->npicks];
		if (p.short_align && c->res > 0) {
			int cut = (int)((uint32_t)(c->res / 2) / p.short_align * p.short_align);
			if (cut > 0)
				c->res = cut;
		}
		if (p.res)
			c->res = p.res;
		if (p.delay_cycles && io->nheld < FAULT_HELD_MAX) {
			io->held[io->nheld++] = (struct held){c->op, c->res, c->flags, p.delay_cycles};
			return false;
		}
		return true;
	}
	return true;
}

int rmq_io_fault_arm(struct rmq_io *io, const struct rmq_io_fault_rule *rules, unsigned n,
		     uint64_t seed)
{
	if (n > RMQ_IO_FAULT_RULES_MAX)
		return -EINVAL;
	if (!io->held) {
		io->held = calloc(FAULT_HELD_MAX, sizeof(*io->held));
		if (!io->held)
			return -ENOMEM;
	}
	struct fault *f = calloc(1, sizeof(*f));
	if (!f)
		return -ENOMEM;
	memcpy(f->rules, rules, n * sizeof(*rules));
	for (unsigned i = 0; i < n; i++)
		f->rules[i].matched = f->rules[i].fired = 0;
	f->nrules = n;
	f->rng = seed ? seed : 0x9E3779B97F4A7C15ULL;
	f->scanned = io->ring.sq.sqe_head;
	free(io->fault);
	io->fault = f;
	sys_armed = io;
	return 0;
}

const struct rmq_io_fault_rule *rmq_io_fault_rules(const struct rmq_io *io, unsigned *n)
{
	*n = io->fault ? io->fault->nrules : 0;
	return io->fault ? io->fault->rules : NULL;
}

void rmq_io_fault_disarm(struct rmq_io *io)
{
	free(io->fault);
	io->fault = NULL;
	if (sys_armed == io)
		sys_armed = NULL;
}

int rmq_io_fault_sys(enum rmq_io_fault_kind kind, int fd, const char *path)
{
	struct rmq_io *io = sys_armed;

	if (__builtin_expect(io == NULL, 1) || !io->fault)
		return 0;
	struct rmq_io_fault_rule *r = fault_match(io->fault, kind, -1, fd, path);
	return r ? r->res : 0;
}

/* ---- SQEs and dispatch -------------------------------------------------------- */

struct io_uring_sqe *rmq_io_sqe(struct rmq_io *io, struct rmq_io_op *op)
{
	struct io_uring_sqe *sqe;

	if (__builtin_expect(io->fault != NULL, 0) &&
	    fault_match(io->fault, RMQ_IO_FAULT_SQE, -1, -1, NULL))
		return NULL;
	sqe = io_uring_get_sqe(&io->ring);
	if (!sqe) {
		if (submit_refused(io))
			return NULL;
		int rc = io_uring_submit(&io->ring);
		if (rc < 0)
			return NULL; /* -EBUSY, -EAGAIN: the caller defers */
		sqe = io_uring_get_sqe(&io->ring);
		if (!sqe)
			return NULL;
	}
	io_uring_sqe_set_data(sqe, op);
	return sqe;
}

void rmq_io_defer(struct rmq_io *io, struct rmq_io_op *op)
{
	op->defer_next = NULL;
	if (io->defer_tail)
		io->defer_tail->defer_next = op;
	else
		io->defer_head = op;
	io->defer_tail = op;
}

/* True when a callback is waiting for a later cycle: deferred or held. */
static inline bool later_work(const struct rmq_io *io)
{
	return io->defer_head != NULL || io->nheld > 0;
}

/* Runs, once per dispatch, the ops deferred before it began and the held
 * completions whose time came.  Returns how many callbacks ran. */
static int run_later(struct rmq_io *io)
{
	struct reaped due[FAULT_HELD_MAX];
	unsigned ndue = 0, keep = 0;
	int total = 0;

	for (unsigned i = 0; i < io->nheld; i++) {
		struct held *h = &io->held[i];
		if (--h->cycles == 0)
			due[ndue++] = (struct reaped){h->op, h->res, h->flags};
		else
			io->held[keep++] = *h;
	}
	io->nheld = keep;
	struct rmq_io_op *op = io->defer_head;
	io->defer_head = io->defer_tail = NULL;
	for (unsigned i = 0; i < ndue; i++)
		due[i].op->cb(due[i].op, due[i].res, due[i].flags);
	while (op) {
		struct rmq_io_op *next = op->defer_next;
		op->defer_next = NULL;
		op->cb(op, -EAGAIN, 0);
		op = next;
		total++;
	}
	return total + (int)ndue;
}

/* Copies ready CQEs out, advances the ring, then runs the callbacks; then
 * what waited for a later cycle. */
static int dispatch(struct rmq_io *io)
{
	struct reaped list[RMQ_IO_REAP_MAX];
	struct io_uring_cqe *cqes[RMQ_IO_REAP_MAX];
	int total = 0;

	for (;;) {
		unsigned n = io_uring_peek_batch_cqe(&io->ring, cqes, RMQ_IO_REAP_MAX);
		if (n == 0)
			break;
		for (unsigned i = 0; i < n; i++) {
			list[i].op = io_uring_cqe_get_data(cqes[i]);
			list[i].res = cqes[i]->res;
			list[i].flags = cqes[i]->flags;
		}
		io_uring_cq_advance(&io->ring, n);
		for (unsigned i = 0; i < n; i++) {
			if (!list[i].op)
				continue;
			if (__builtin_expect(io->fault != NULL, 0) && !fault_apply(io, &list[i]))
				continue;
			list[i].op->cb(list[i].op, list[i].res, list[i].flags);
		}
		total += (int)n;
		if (n < RMQ_IO_REAP_MAX)
			break;
	}
	if (__builtin_expect(later_work(io), 0))
		total += run_later(io);
	return total;
}

int rmq_io_poll(struct rmq_io *io)
{
	int rc = submit_refused(io) ? -EBUSY : io_uring_submit_and_get_events(&io->ring);

	if (rc < 0 && rc != -EINTR && rc != -EAGAIN && rc != -EBUSY)
		return rc;
	return dispatch(io);
}

bool rmq_io_spin(struct rmq_io *io, uint64_t budget_ns)
{
	if (io_uring_cq_ready(&io->ring) || later_work(io))
		return true;
	/* What the cycle queued goes out now. */
	int rc = submit_refused(io) ? -EBUSY : io_uring_submit(&io->ring);
	if (rc < 0 && rc != -EINTR && rc != -EAGAIN && rc != -EBUSY)
		return false;
	struct timespec t0, t;
	clock_gettime(CLOCK_MONOTONIC, &t0);
	for (;;) {
		/* With DEFER_TASKRUN completions are only posted when this
		 * thread asks; otherwise they appear by themselves. */
		if (io->defer_taskrun)
			(void)io_uring_get_events(&io->ring);
		if (io_uring_cq_ready(&io->ring))
			return true;
		clock_gettime(CLOCK_MONOTONIC, &t);
		uint64_t spent = (uint64_t)(t.tv_sec - t0.tv_sec) * 1000000000ULL +
				 (uint64_t)(t.tv_nsec - t0.tv_nsec);
		if (spent >= budget_ns)
			return false;
	}
}

int rmq_io_wait(struct rmq_io *io, uint64_t timeout_ns)
{
	struct io_uring_cqe *cqe;
	int rc;

	/* A deferred op is retried next cycle, and SQEs a refused submission
	 * left queued go out then: sleep no longer than that. */
	bool refused = submit_refused(io);
	if ((refused || later_work(io)) && (timeout_ns == 0 || timeout_ns > RMQ_IO_DEFER_WAIT_NS))
		timeout_ns = RMQ_IO_DEFER_WAIT_NS;
	if (io_uring_cq_ready(&io->ring) == 0) {
		struct __kernel_timespec ts = {
			.tv_sec = (long long)(timeout_ns / 1000000000ULL),
			.tv_nsec = (long long)(timeout_ns % 1000000000ULL),
		};
		if (refused) /* wait for completions, submitting nothing */
			rc = timeout_ns ? io_uring_wait_cqe_timeout(&io->ring, &cqe, &ts)
					: io_uring_wait_cqe(&io->ring, &cqe);
		else if (timeout_ns)
			rc = io_uring_submit_and_wait_timeout(&io->ring, &cqe, 1, &ts, NULL);
		else
			rc = io_uring_submit_and_wait(&io->ring, 1);
		/* -ETIME: the timeout passed; -EINTR: a signal; both are a
		 * normal return with whatever completions exist. */
		if (rc < 0 && rc != -ETIME && rc != -EINTR && rc != -EAGAIN && rc != -EBUSY)
			return rc;
	} else {
		rc = refused ? -EBUSY : io_uring_submit(&io->ring);
		if (rc < 0 && rc != -EINTR && rc != -EAGAIN && rc != -EBUSY)
			return rc;
	}
	return dispatch(io);
}

int rmq_io_buffer_register(struct rmq_io *io, void *base, size_t len)
{
	for (unsigned i = 0; i < io->nbuf; i++) {
		if (io->buf_used[i])
			continue;
		struct iovec iov = {.iov_base = base, .iov_len = len};
		__u64 tag = 0;
		int rc = io_uring_register_buffers_update_tag(&io->ring, i, &iov, &tag, 1);
		if (rc < 0)
			return rc;
		io->buf_used[i] = 1;
		return (int)i;
	}
	return RMQ_EFULL;
}

void rmq_io_buffer_unregister(struct rmq_io *io, int slot)
{
	RMQ_ASSERT(slot >= 0);
	RMQ_ASSERT((unsigned)slot < io->nbuf);
	struct iovec iov = {.iov_base = NULL, .iov_len = 0};
	__u64 tag = 0;
	/* An empty iovec returns the slot to the sparse state. */
	(void)io_uring_register_buffers_update_tag(&io->ring, (unsigned)slot, &iov, &tag, 1);
	io->buf_used[slot] = 0;
}
