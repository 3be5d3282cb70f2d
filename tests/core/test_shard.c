/* SPDX-License-Identifier: Apache-2.0 */
#include "core/error.h"
#include "core/shard.h"
#include "core/util.h"

#include <criterion/criterion.h>
#include <stdatomic.h>
#include <pthread.h>
#include <stdlib.h>
#include <time.h>

/* ---- timers: fire in deadline order, cancel removes ---------------------- */

#define NT 2000
static struct rmq_timer timers[NT];
static uint64_t fired_deadline[NT];
static int nfired;
static int ncancelled;
static int cancelled_fired;

static void on_timer(struct rmq_timer *t)
{
	size_t i = (size_t)(t - timers);
	if (i % 7 == 3)
		cancelled_fired++;
	fired_deadline[nfired++] = t->deadline_ns;
	if (nfired == NT - ncancelled)
		rmq_runtime_stop(rmq_shard_runtime(rmq_shard_current()));
}

static int timers_init(struct rmq_shard *s, void *arg)
{
	(void)arg;
	uint64_t base = rmq_now_ns() + 1000000;
	srand(42);
	for (int i = 0; i < NT; i++)
		cr_assert_eq(rmq_timer_start(s, &timers[i], base + (uint64_t)(rand() % 20000) * 1000,
					     on_timer), 0);
	for (int i = 3; i < NT; i += 7) {
		rmq_timer_cancel(s, &timers[i]);
		ncancelled++;
	}
	/* Re-arming moves a timer rather than adding it twice. */
	cr_assert_eq(rmq_timer_start(s, &timers[0], base, on_timer), 0);
	return 0;
}

Test(shard, timers_fire_in_order_and_cancel)
{
	struct rmq_runtime_config cfg = {.shards = 1, .ring_entries = 64, .timers_max = NT};
	struct rmq_runtime *rt;
	cr_assert_eq(rmq_runtime_create(&cfg, &rt), 0);
	rmq_runtime_on_stop(rt, NULL);
	cr_assert_eq(rmq_runtime_run(rt, timers_init, NULL, NULL), 0);
	cr_assert_eq(cancelled_fired, 0);
	cr_assert_eq(nfired, NT - ncancelled);
	for (int i = 1; i < nfired; i++)
		cr_assert_leq(fired_deadline[i - 1], fired_deadline[i], "timer %d out of order", i);
	rmq_runtime_destroy(rt);
}

/* ---- mail: ping-pong among shards ---------------------------------------- */

#define ROUNDS 20000
struct ping {
	struct rmq_xmsg m;
	int hops;
};
static struct ping pings[4];
static _Atomic int done_pings;

static void on_ping(struct rmq_xmsg *m)
{
	struct ping *p = RMQ_CONTAINER_OF(m, struct ping, m);
	struct rmq_shard *s = rmq_shard_current();
	cr_assert_neq(s, NULL);
	if (++p->hops == ROUNDS) {
		if (atomic_fetch_add(&done_pings, 1) + 1 == 4)
			rmq_runtime_stop(rmq_shard_runtime(s));
		return;
	}
	unsigned to = (rmq_shard_id(s) + 1) % rmq_shard_count(s);
	int rc;
	while ((rc = rmq_shard_post(s, to, m)) == RMQ_EFULL)
		;
	cr_assert_eq(rc, 0);
}

static int ping_init(struct rmq_shard *s, void *arg)
{
	(void)arg;
	/* Shards 0 and 1 each start two balls, one to itself, one across. */
	if (rmq_shard_id(s) < 2) {
		for (int k = 0; k < 2; k++) {
			struct ping *p = &pings[rmq_shard_id(s) * 2 + k];
			p->m.fn = on_ping;
			cr_assert_eq(rmq_shard_post(s, (rmq_shard_id(s) + (unsigned)k) % 3, &p->m), 0);
		}
	}
	return 0;
}

Test(shard, messages_cross_shards_in_order_without_loss)
{
	struct rmq_runtime_config cfg = {.shards = 3, .ring_entries = 64, .xshard_capacity = 16};
	struct rmq_runtime *rt;
	cr_assert_eq(rmq_runtime_create(&cfg, &rt), 0);
	cr_assert_eq(rmq_runtime_run(rt, ping_init, NULL, NULL), 0);
	for (int i = 0; i < 4; i++)
		cr_assert_eq(pings[i].hops, ROUNDS);
	rmq_runtime_destroy(rt);
}

/* ---- stop from outside; a failing init is reported ----------------------- */

static void *stopper(void *rt)
{
	struct timespec ts = {0, 20 * 1000 * 1000};
	nanosleep(&ts, NULL);
	rmq_runtime_stop(rt);
	return NULL;
}

Test(shard, stop_from_another_thread)
{
	struct rmq_runtime_config cfg = {.shards = 2, .ring_entries = 32, .pin = true};
	struct rmq_runtime *rt;
	pthread_t t;
	cr_assert_eq(rmq_runtime_create(&cfg, &rt), 0);
	pthread_create(&t, NULL, stopper, rt);
	cr_assert_eq(rmq_runtime_run(rt, NULL, NULL, NULL), 0);
	pthread_join(t, NULL);
	rmq_runtime_destroy(rt);
}

static int failing_init(struct rmq_shard *s, void *arg)
{
	(void)arg;
	return rmq_shard_id(s) == 1 ? -EADDRINUSE : 0;
}

Test(shard, init_failure_stops_all_and_is_returned)
{
	struct rmq_runtime_config cfg = {.shards = 2, .ring_entries = 32};
	struct rmq_runtime *rt;
	cr_assert_eq(rmq_runtime_create(&cfg, &rt), 0);
	cr_assert_eq(rmq_runtime_run(rt, failing_init, NULL, NULL), -EADDRINUSE);
	rmq_runtime_destroy(rt);
}

Test(shard, bad_config_is_refused)
{
	struct rmq_runtime *rt;
	struct rmq_runtime_config zero = {.shards = 0};
	struct rmq_runtime_config odd = {.shards = 2, .xshard_capacity = 100};
	cr_assert_eq(rmq_runtime_create(&zero, &rt), -EINVAL);
	cr_assert_eq(rmq_runtime_create(&odd, &rt), -EINVAL);
}
