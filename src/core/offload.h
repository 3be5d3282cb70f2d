/* SPDX-License-Identifier: Apache-2.0 */
/*
 * offload.h - blocking file work off the shard threads: a small, bounded
 * pool of helper threads.
 *
 * A shard never makes a call that may block on the disk for long (removing
 * a deleted partition's files, writing and syncing a metadata file,
 * opening and recovering a log).  It hands such work to the pool and goes
 * on serving; the job's done() runs back on the shard that submitted it:
 *
 *   shard s                          helper thread
 *   rmq_offload(pool, s, job) ─────► job->work(job)     blocking calls only:
 *      (returns at once)             (FIFO, n threads)  no shard state, no ring
 *   job->done(job)  ◄──── rmq_runtime_post (locked inbox + eventfd)
 *      (a later cycle of s)
 *
 * Jobs are caller-owned (embed struct rmq_offload in the object that
 * waits); the queue links them, so submitting allocates nothing and never
 * fails.  The callers bound how many jobs exist (one per partition being
 * opened or deleted, one metadata write at a time).  work() runs on some
 * helper thread, in submission order per pool; done() runs on s in the
 * order the jobs finished.
 */
#ifndef RMQ_CORE_OFFLOAD_H
#define RMQ_CORE_OFFLOAD_H

#include "core/shard.h"

#include <stddef.h>

struct rmq_offload;
struct rmq_offload_pool;
typedef void (*rmq_offload_fn)(struct rmq_offload *job);

struct rmq_offload {
	rmq_offload_fn work;       /* on a helper thread */
	rmq_offload_fn done;       /* then on the submitting shard */
	/* Private. */
	struct rmq_offload *next;
	struct rmq_offload_pool *pool;
	unsigned shard;
	struct rmq_xmsg msg;
};

/* Starts n (>= 1) helper threads for the shards of rt.  Returns 0 and
 * *out, or a negated errno. */
int rmq_offload_pool_create(struct rmq_runtime *rt, unsigned n, struct rmq_offload_pool **out);

/* Waits for the jobs already queued to run, stops the threads and frees
 * the pool.  Call after the shards stopped (their done() calls are then
 * not run: nothing is left to run them). */
void rmq_offload_pool_destroy(struct rmq_offload_pool *pool);

/* Queues job from shard s (the calling shard).  Never fails. */
void rmq_offload(struct rmq_offload_pool *pool, struct rmq_shard *s, struct rmq_offload *job);

/* Jobs shard s submitted whose done() has not run yet (s's own count). */
size_t rmq_offload_pending(const struct rmq_offload_pool *pool, const struct rmq_shard *s);

#endif /* RMQ_CORE_OFFLOAD_H */
