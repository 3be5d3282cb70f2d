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
 * When the SQ is full it first submits what is queued.  Returns NULL only
 * when the kernel refuses to take SQEs (the ring is broken); callers treat
 * that as -EBUSY.
 */
struct io_uring_sqe *rmq_io_sqe(struct rmq_io *io, struct rmq_io_op *op);

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

#endif /* RMQ_CORE_IO_H */
