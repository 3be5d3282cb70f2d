/* SPDX-License-Identifier: Apache-2.0 */
#include "core/offload.h"
#include "core/shard.h"
#include "core/util.h"

#include <criterion/criterion.h>
#include <pthread.h>
#include <stdatomic.h>
#include <time.h>

/*
 * Each of two shards hands JOBS blocking jobs to a pool of two helper
 * threads.  Every done() runs on the shard that submitted the job, after
 * its work, and the shards keep running timers while the helpers sleep
 * (a shard that blocked would miss them).
 */
#define JOBS 200
struct job {
	struct rmq_offload off;
	unsigned owner;
	_Atomic int worked;
	pthread_t worker;
};
static struct job jobs[2][JOBS];
static struct rmq_offload_pool *pool;
static _Atomic int done_count;
static _Atomic int ticks[2];
static struct rmq_timer tick_timer[2];

static void work(struct rmq_offload *o)
{
	struct job *j = RMQ_CONTAINER_OF(o, struct job, off);
	struct timespec ts = {0, 200 * 1000};
	nanosleep(&ts, NULL); /* a blocking call: never on a shard */
	j->worker = pthread_self();
	atomic_store(&j->worked, 1);
}

static void done(struct rmq_offload *o)
{
	struct job *j = RMQ_CONTAINER_OF(o, struct job, off);
	struct rmq_shard *s = rmq_shard_current();
	cr_assert_neq(s, NULL, "done() runs on a shard");
	cr_assert_eq(rmq_shard_id(s), j->owner, "done() runs on the submitting shard");
	cr_assert_eq(atomic_load(&j->worked), 1, "done() after work()");
	if (atomic_fetch_add(&done_count, 1) + 1 == 2 * JOBS)
		rmq_runtime_stop(rmq_shard_runtime(s));
}

static void on_tick(struct rmq_timer *t)
{
	struct rmq_shard *s = rmq_shard_current();
	atomic_fetch_add(&ticks[rmq_shard_id(s)], 1);
	rmq_timer_start(s, t, rmq_now_ns() + 1000 * 1000, on_tick);
}

static int init(struct rmq_shard *s, void *arg)
{
	unsigned id = rmq_shard_id(s);
	(void)arg;
	for (int i = 0; i < JOBS; i++) {
		jobs[id][i].owner = id;
		jobs[id][i].off.work = work;
		jobs[id][i].off.done = done;
		rmq_offload(pool, s, &jobs[id][i].off);
	}
	cr_assert_eq(rmq_offload_pending(pool, s), JOBS);
	rmq_timer_start(s, &tick_timer[id], rmq_now_ns() + 1000 * 1000, on_tick);
	return 0;
}

static void fini(struct rmq_shard *s, void *arg)
{
	(void)arg;
	cr_assert_eq(rmq_offload_pending(pool, s), 0);
	rmq_timer_cancel(s, &tick_timer[rmq_shard_id(s)]);
}

Test(offload, jobs_run_on_helpers_and_finish_on_their_shard)
{
	struct rmq_runtime_config cfg = {.shards = 2, .ring_entries = 64};
	struct rmq_runtime *rt;
	cr_assert_eq(rmq_runtime_create(&cfg, &rt), 0);
	cr_assert_eq(rmq_offload_pool_create(rt, 2, &pool), 0);
	cr_assert_eq(rmq_runtime_run(rt, init, fini, NULL), 0);
	rmq_offload_pool_destroy(pool);
	cr_assert_eq(atomic_load(&done_count), 2 * JOBS);
	for (int s = 0; s < 2; s++) {
		cr_assert_gt(atomic_load(&ticks[s]), 5, "shard %d kept running its timers", s);
		for (int i = 0; i < JOBS; i++)
			cr_assert(!pthread_equal(jobs[s][i].worker, pthread_self()));
	}
	rmq_runtime_destroy(rt);
}
