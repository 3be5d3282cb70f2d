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
	rmq_shard_post(s, to, m);
}

static int ping_init(struct rmq_shard *s, void *arg)
{
	(void)arg;
	/* Shards 0 and 1 each start two balls, one to itself, one across. */
	if (rmq_shard_id(s) < 2) {
		for (int k = 0; k < 2; k++) {
			struct ping *p = &pings[rmq_shard_id(s) * 2 + k];
			p->m.fn = on_ping;
			rmq_shard_post(s, (rmq_shard_id(s) + (unsigned)k) % 3, &p->m);
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

/* ---- floods: full queues never make a shard wait ------------------------- */

/*
 * Each of two shards posts FLOOD messages to the other and FLOOD to itself
 * from inside one message, through queues of 16 slots: far more than fit.
 * A shard that waited for room (the old rmq_shard_post callers spun) would
 * never drain its own queue, and both would hang.  Every message arrives,
 * in the order it was posted.
 */
#define FLOOD 20000
struct flood_msg {
	struct rmq_xmsg m;
	unsigned seq;
};
static struct flood_msg flood_out[2][2][FLOOD]; /* [from][to == from][seq] */
static struct rmq_xmsg flood_start[2];
static unsigned flood_next[2][2];               /* [to][from]: next seq expected */
static _Atomic unsigned flood_got;

static void on_flood(struct rmq_xmsg *m)
{
	struct flood_msg *f = RMQ_CONTAINER_OF(m, struct flood_msg, m);
	struct rmq_shard *s = rmq_shard_current();
	unsigned to = rmq_shard_id(s);
	cr_assert_eq(f->seq, flood_next[to][m->from], "shard %u from %u: got %u, expected %u", to,
		     m->from, f->seq, flood_next[to][m->from]);
	flood_next[to][m->from]++;
	if (atomic_fetch_add(&flood_got, 1) + 1 == 4 * FLOOD)
		rmq_runtime_stop(rmq_shard_runtime(s));
}

static void on_flood_start(struct rmq_xmsg *m)
{
	struct rmq_shard *s = rmq_shard_current();
	unsigned me = rmq_shard_id(s);
	(void)m;
	for (unsigned i = 0; i < FLOOD; i++) {
		for (unsigned self = 0; self < 2; self++) {
			struct flood_msg *f = &flood_out[me][self][i];
			f->m.fn = on_flood;
			f->seq = i;
			rmq_shard_post(s, self ? me : 1 - me, &f->m);
		}
	}
	cr_assert_gt(rmq_shard_backlog(s), 0, "the queues were meant to overflow");
}

static int flood_init(struct rmq_shard *s, void *arg)
{
	(void)arg;
	flood_start[rmq_shard_id(s)].fn = on_flood_start;
	rmq_shard_post(s, rmq_shard_id(s), &flood_start[rmq_shard_id(s)]);
	return 0;
}

Test(shard, floods_in_both_directions_are_delivered_in_order)
{
	struct rmq_runtime_config cfg = {.shards = 2, .ring_entries = 64, .xshard_capacity = 16};
	struct rmq_runtime *rt;
	cr_assert_eq(rmq_runtime_create(&cfg, &rt), 0);
	cr_assert_eq(rmq_runtime_run(rt, flood_init, NULL, NULL), 0);
	cr_assert_eq(atomic_load(&flood_got), 4 * FLOOD);
	for (unsigned to = 0; to < 2; to++)
		for (unsigned from = 0; from < 2; from++)
			cr_assert_eq(flood_next[to][from], FLOOD);
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
