/* SPDX-License-Identifier: Apache-2.0 */
/*
 * io.h - one io_uring ring and its completion dispatch.
 *
 * Each shard owns exactly one struct rmq_io; every module that does I/O on
 * that shard (storage, network, timers) submits through it.  Nothing here is
 * thread-safe: the ring is set up SINGLE_ISSUER, so only the creating thread
 * may touch it.
 *
 * Caller-owned completions (TigerBeetle's Completion): the object waiting
 * for I/O embeds a struct rmq_io_op and passes it when preparing the SQE;
 * its address travels as user_data.  A CQE whose user_data is 0 has no
 * owner and is dropped (used for fire-and-forget cancels).
 *
 * Lifecycle of a cycle:
 *
 *     callers prep SQEs ──► rmq_io_wait()/rmq_io_poll()
 *                               │ submit, enter the kernel (task work runs)
 *                               │ copy up to RMQ_IO_REAP_MAX CQEs to a list
 *                               │ advance the CQ ring
 *                               └► run each op's callback, in CQE order
 *
 * No callback runs inside the reaping loop, so a callback may prepare and
 * submit new SQEs freely.  A multishot operation's callback runs once per
 * CQE; IORING_CQE_F_MORE in cqe_flags says whether more will follow.
 */
#ifndef RMQ_CORE_IO_H
#define RMQ_CORE_IO_H

#include <liburing.h>
#include <stdbool.h>
#include <stdint.h>

struct rmq_io;
struct rmq_io_op;

/* res is cqe->res: a count, or a negated errno (never read errno). */
typedef void (*rmq_io_cb)(struct rmq_io_op *op, int res, unsigned cqe_flags);

struct rmq_io_op {
	rmq_io_cb cb;
	struct rmq_io_op *defer_next; /* private: rmq_io_defer()'s list */
};

struct rmq_io_config {
	unsigned entries;       /* SQ size; CQ is sized 4x for multishot bursts */
	unsigned fixed_buffers; /* slots in the sparse registered-buffer table */
};

/* CQEs copied out per reap pass; more are reaped in further passes. */
#define RMQ_IO_REAP_MAX 256

/*
 * Creates a ring on the calling thread.  Tries SINGLE_ISSUER|DEFER_TASKRUN
 * first, then SINGLE_ISSUER, then no flags, logging each fallback once.
 * Returns 0 and *out, or a negated errno (-ENOMEM, -ENOSYS when io_uring is
 * unavailable, -EPERM when it is disabled by sysctl).
 */
int rmq_io_create(const struct rmq_io_config *cfg, struct rmq_io **out);

/* Tears the ring down.  In-flight operations are abandoned: callers cancel
 * and drain their own operations first. */
void rmq_io_destroy(struct rmq_io *io);

/* The underlying ring, for io_uring_prep_*() calls. */
struct io_uring *rmq_io_ring(struct rmq_io *io);

/*
 * Returns a free SQE bound to op (op may be NULL for fire-and-forget).
 * When the SQ is full it first submits what is queued.  Returns NULL when
 * no SQE can be had now: the SQ is full and the kernel did not take its
 * entries (io_uring_enter answered -EBUSY or -EAGAIN: a transient state,
 * e.g. completions waiting to be reaped), or the fault layer refused
 * (below).  That is never a reason to fail anything: the caller defers op
 * with rmq_io_defer() and tries again when its callback runs.
 */
struct io_uring_sqe *rmq_io_sqe(struct rmq_io *io, struct rmq_io_op *op);

/*
 * Parks op for the next cycle, for an operation that got no SQE: op's
 * callback runs with res -EAGAIN from the next rmq_io_poll()/rmq_io_wait()
 * (after the completions that call reaps, which is what frees SQ and CQ
 * room), and the callback prepares its SQE again, or defers again.  Every
 * callback that defers must therefore treat -EAGAIN as "try again".  An op
 * waits on at most one list; it must stay alive until its callback ran, so
 * its owner counts it as in flight.  While ops are deferred rmq_io_wait()
 * sleeps at most RMQ_IO_DEFER_WAIT_NS: the retry is waited out, neither
 * spun on nor forgotten.  O(1).
 */
void rmq_io_defer(struct rmq_io *io, struct rmq_io_op *op);

/* The longest rmq_io_wait() sleeps while an op is deferred. */
#define RMQ_IO_DEFER_WAIT_NS (1000ULL * 1000)

/* Submits queued SQEs and runs the callbacks of completions already
 * available, without blocking.  Returns the number of callbacks run, or a
 * negated errno from io_uring_enter. */
int rmq_io_poll(struct rmq_io *io);

/*
 * Busy-polls the ring for up to budget_ns: submits what is queued, then
 * asks for completions (and, under DEFER_TASKRUN, runs the kernel's task
 * work) until one is ready.  Returns true when completions are ready.
 * Trades CPU for the wake-up latency of a sleeping thread (tens of µs on
 * a VM); the caller then runs rmq_io_wait, which does not block when
 * something is ready.
 */
bool rmq_io_spin(struct rmq_io *io, uint64_t budget_ns);

/* Like rmq_io_poll(), but blocks until at least one completion arrives or
 * timeout_ns passes (0 = wait without a timeout). */
int rmq_io_wait(struct rmq_io *io, uint64_t timeout_ns);

/*
 * Registers [base, base+len) in a free fixed-buffer slot, for
 * IORING_OP_READ_FIXED / WRITE_FIXED.  Returns the slot index, or
 * RMQ_EFULL (no free slot), or a negated errno from the kernel.  Callers
 * that get an error fall back to plain reads and writes.
 */
int rmq_io_buffer_register(struct rmq_io *io, void *base, size_t len);

/* Frees a slot; no operation may still use it. */
void rmq_io_buffer_unregister(struct rmq_io *io, int slot);

/* True when the ring was created with IORING_SETUP_DEFER_TASKRUN. */
bool rmq_io_defer_taskrun(const struct rmq_io *io);

/*
 * Fault injection, for tests (TigerBeetle's and SQLite's storage tests).
 *
 * A test arms a ring with a small table of rules; each rule names the
 * operations it matches (kind, and optionally the file) and what happens
 * to the ones it picks (every Nth, or with a seeded probability, after
 * `skip` matches, at most `count` times):
 *
 *   kind        where it is applied             what the caller sees
 *   SQE         rmq_io_sqe()                    NULL: no free SQE
 *   SUBMIT      each submission in this file    io_uring_enter said -EBUSY:
 *                                               the SQEs stay queued
 *   WRITE       completions of WRITE, WRITEV,   res rewritten before the
 *   READ          WRITE_FIXED / READ, READV,    callback runs: rule.res (an
 *   FSYNC         READ_FIXED / FSYNC /          error), or (short) a
 *   FALLOCATE     FALLOCATE                     part of what was done;
 *                                               and/or the callback held
 *                                               back delay_cycles cycles
 *   FSYNC,      rmq_io_fault_sys(), which       that call fails with
 *   FALLOCATE,    storage calls before its      rule.res
 *   FTRUNCATE,    synchronous fsync, fallocate,
 *   CREATE        ftruncate and file creation
 *
 * The operation itself still runs (a write reported failed may have
 * landed, as after a real EIO); only what its owner is told changes.  A
 * completion rule decides when the SQE is submitted, so it applies to the
 * operations submitted after arming.  Unarmed, each place costs one
 * predictable branch.  Not for production: nothing but tests arms a ring.
 */
enum rmq_io_fault_kind {
	RMQ_IO_FAULT_SQE,
	RMQ_IO_FAULT_SUBMIT,
	RMQ_IO_FAULT_WRITE,
	RMQ_IO_FAULT_READ,
	RMQ_IO_FAULT_FSYNC,     /* ring FSYNC (data and directory), and fsync()/fdatasync() */
	RMQ_IO_FAULT_FALLOCATE, /* ring FALLOCATE, and fallocate() */
	RMQ_IO_FAULT_FTRUNCATE, /* ftruncate() (synchronous only) */
	RMQ_IO_FAULT_CREATE,    /* creating a file (synchronous only) */
};

struct rmq_io_fault_rule {
	enum rmq_io_fault_kind kind;
	int res;                 /* the error reported (negated errno); 0 = none
				  * (with short_io or delay_cycles alone) */
	bool short_io;           /* WRITE/READ: report about half of what was
				  * done, rounded down to short_align (no fault
				  * when that is 0) */
	uint32_t short_align;    /* 0 = 4096 (O_DIRECT blocks) */
	uint32_t delay_cycles;   /* completions: run the callback this many
				  * dispatch passes later */
	uint32_t every;          /* pick every Nth match (1 = each); 0 = by
				  * probability */
	uint32_t ppm;            /* with every 0: picked with this probability
				  * in parts per million (seeded PRNG) */
	uint32_t skip;           /* matches let through before picking starts */
	uint32_t count;          /* at most this many picks; 0 = no limit */
	const char *path_suffix; /* only files whose path ends so (the path
				  * of the SQE's or the call's descriptor);
				  * NULL = any.  Not for SQE and SUBMIT. */
	uint64_t opcodes;        /* completions: only these opcodes (bit
				  * 1ULL << IORING_OP_*); 0 = all of the kind */
	/* Out: */
	uint32_t matched, fired;
};

#define RMQ_IO_FAULT_RULES_MAX 16

/*
 * Arms io with n rules (copied; at most RMQ_IO_FAULT_RULES_MAX), the PRNG
 * seeded with seed, replacing earlier rules.  Also makes io the ring whose
 * rules rmq_io_fault_sys() applies on this thread.  Returns 0, -EINVAL
 * (too many rules) or -ENOMEM.
 */
int rmq_io_fault_arm(struct rmq_io *io, const struct rmq_io_fault_rule *rules, unsigned n,
		     uint64_t seed);

/* The rule table with its counters (NULL when unarmed); valid until the
 * next arm or disarm. */
const struct rmq_io_fault_rule *rmq_io_fault_rules(const struct rmq_io *io, unsigned *n);

/* Removes the rules.  Completions already held back still run later. */
void rmq_io_fault_disarm(struct rmq_io *io);

/*
 * For a synchronous file call about to be made on fd (-1 when there is no
 * descriptor yet; a path rule then matches path): returns 0, or the error
 * a rule of this thread's armed ring injects, which the caller reports as
 * if the call had failed with it.  One thread-local load when unarmed.
 */
int rmq_io_fault_sys(enum rmq_io_fault_kind kind, int fd, const char *path);

#endif /* RMQ_CORE_IO_H */
