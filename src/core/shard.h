/* SPDX-License-Identifier: Apache-2.0 */
/*
 * shard.h - the thread-per-core runtime: shards, their loop, timers and
 * cross-shard messages.
 *
 *   rmqd ──┬─ shard 0: thread pinned to CPU 0, one rmq_io ring, timers,
 *          │           the partitions and connections it owns
 *          ├─ shard 1 ...
 *          └─ shard N-1
 *
 * A shard's loop, each cycle:
 *
 *     ┌─► run expired timers
 *     │   run "before wait" hooks (log flushes, connection send flushes)
 *     │   rmq_io_wait(until the next timer)  ── completions run callbacks,
 *     │                                          including cross-shard mail
 *     └── (until rmq_runtime_stop)
 *
 * Shared nothing: a shard's objects are touched only by its own thread.
 * Another shard reaches them with rmq_shard_post(): the message (a struct
 * the sender owns until the receiver is done with it) goes through the
 * single-producer single-consumer queue of that ordered pair (xshard.h)
 * and the receiver is woken with IORING_OP_MSG_RING.  The message's
 * function then runs on the receiving shard.
 *
 * An idle shard blocks in io_uring_enter: no busy loop, ~0% CPU.
 */
#ifndef RMQ_CORE_SHARD_H
#define RMQ_CORE_SHARD_H

#include "core/io.h"

#include <stdbool.h>
#include <stdint.h>

struct rmq_shard;
struct rmq_runtime;

/* ---- timers ------------------------------------------------------------- */

struct rmq_timer;
typedef void (*rmq_timer_fn)(struct rmq_timer *t);

/* A caller-owned timer; embed it in the object that waits. */
struct rmq_timer {
	rmq_timer_fn fn;
	uint64_t deadline_ns;   /* CLOCK_MONOTONIC */
	uint32_t heap_index;    /* private: position in the shard's heap + 1; 0 = idle */
};

/* Monotonic clock in ns. */
uint64_t rmq_now_ns(void);

/* Arms t to run fn on the current shard at deadline_ns (re-arms if armed).
 * Returns 0, or RMQ_EFULL when the shard's timer heap is full. */
int rmq_timer_start(struct rmq_shard *s, struct rmq_timer *t, uint64_t deadline_ns,
		    rmq_timer_fn fn);
/* Disarms t; a no-op when idle.  Safe from inside any callback. */
void rmq_timer_cancel(struct rmq_shard *s, struct rmq_timer *t);
static inline bool rmq_timer_armed(const struct rmq_timer *t)
{
	return t->heap_index != 0;
}

/* ---- cross-shard messages ---------------------------------------------- */

struct rmq_xmsg;
typedef void (*rmq_xmsg_fn)(struct rmq_xmsg *m);

/* A message; embed it in a sender-owned struct.  fn runs on the target. */
struct rmq_xmsg {
	rmq_xmsg_fn fn;
	struct rmq_xmsg *next;  /* private: the sender's backlog */
	uint16_t from;          /* set by rmq_shard_post() */
};

/*
 * Posts m to shard `to`; fn(m) then runs on that shard.  Must be called on
 * a shard thread.  Never fails, never blocks, never yields:
 *
 *   - to == the current shard: m runs at the start of the next cycle, never
 *     re-entrantly (the caller may still be using what m points at);
 *   - another shard: m goes into the pair's queue, or, while that queue is
 *     full or already has a backlog, to the end of this shard's backlog for
 *     `to`, which later cycles move into the queue in order.
 *
 * Messages from one shard to another arrive in the order they were posted.
 * The backlog needs no memory of its own (it links the messages), so a
 * reply always has room; what bounds it is what bounds the objects the
 * messages are embedded in (requests admitted by the server).  A shard
 * whose backlog grows past what it wants asks its connections to stop
 * reading (rmq_shard_backlog()).
 */
void rmq_shard_post(struct rmq_shard *from, unsigned to, struct rmq_xmsg *m);

/*
 * Posts m to shard `to` from a thread that is not a shard (a helper
 * thread, offload.h): fn(m) runs on that shard soon after.  Takes a lock
 * and writes an eventfd; for work that is rare next to shard mail.
 */
void rmq_runtime_post(struct rmq_runtime *rt, unsigned to, struct rmq_xmsg *m);

/* Messages this shard posted that have not reached a queue yet: its own
 * posts for the next cycle and the backlogs for full queues. */
size_t rmq_shard_backlog(const struct rmq_shard *s);

/* ---- shards ------------------------------------------------------------- */

typedef void (*rmq_hook_fn)(struct rmq_shard *s, void *arg);

struct rmq_runtime_config {
	unsigned shards;            /* >= 1 */
	unsigned ring_entries;      /* SQ entries per ring */
	unsigned fixed_buffers;     /* sparse registered-buffer slots per ring */
	unsigned xshard_capacity;   /* messages per ordered pair (power of 2) */
	unsigned timers_max;        /* timer heap capacity per shard */
	bool pin;                   /* pin shard i to the i-th allowed CPU */
	uint64_t poll_ns;           /* busy-poll this long before sleeping; 0 = never */
};

/* The calling thread's shard, or NULL outside shard threads. */
struct rmq_shard *rmq_shard_current(void);
unsigned rmq_shard_id(const struct rmq_shard *s);
unsigned rmq_shard_count(const struct rmq_shard *s);
struct rmq_io *rmq_shard_io(struct rmq_shard *s);
struct rmq_runtime *rmq_shard_runtime(struct rmq_shard *s);

/* Per-shard slot for the application (the broker's shard state). */
void rmq_shard_set_data(struct rmq_shard *s, void *data);
void *rmq_shard_data(const struct rmq_shard *s);

/* Registers fn to run every cycle just before the shard waits (flush
 * logs, send what connections queued).  At most RMQ_SHARD_HOOKS_MAX. */
#define RMQ_SHARD_HOOKS_MAX 16
int rmq_shard_add_hook(struct rmq_shard *s, rmq_hook_fn fn, void *arg);
/* Removes the hook added with exactly (fn, arg); a no-op when absent.  Not
 * from inside a hook. */
void rmq_shard_remove_hook(struct rmq_shard *s, rmq_hook_fn fn, void *arg);

/* Creates the runtime (no threads yet).  Returns 0 or a negated errno. */
int rmq_runtime_create(const struct rmq_runtime_config *cfg, struct rmq_runtime **out);

/*
 * Starts one thread per shard; each creates its ring, sets itself current,
 * calls init(shard, arg) and runs its loop.  Blocks until every shard has
 * stopped, then returns 0, or the first error an init returned (the other
 * shards are stopped).
 */
int rmq_runtime_run(struct rmq_runtime *rt, int (*init)(struct rmq_shard *s, void *arg),
		    void (*fini)(struct rmq_shard *s, void *arg), void *arg);

/*
 * Asks every shard to stop.  Async-signal-safe (writes an eventfd each
 * shard watches).  Each shard runs its stop hook (rmq_runtime_on_stop)
 * and leaves its loop once the hook says it has drained.
 */
void rmq_runtime_stop(struct rmq_runtime *rt);

/* True once stop was requested (check in long-running handlers). */
bool rmq_runtime_stopping(const struct rmq_runtime *rt);

/*
 * Sets the drain check: while stopping, a shard keeps looping (serving
 * completions) until drained(shard, arg) returns true, then fini runs and
 * the thread exits.  Default: drained at once.
 */
void rmq_runtime_on_stop(struct rmq_runtime *rt, bool (*drained)(struct rmq_shard *s, void *arg));

void rmq_runtime_destroy(struct rmq_runtime *rt);

#endif /* RMQ_CORE_SHARD_H */
