/* SPDX-License-Identifier: Apache-2.0 */
/*
 * test_wpool.c - the shard's shared write buffers (src/storage/wpool.c),
 * alone and under many partition logs at once.
 */
#include "storage/wpool.h"

#include "core/error.h"
#include "core/io.h"
#include "storage/log.h"
#include "storage_util.h"

#include <criterion/criterion.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static struct su_env env;

static void setup(void)
{
	su_env_init(&env);
}

static void teardown(void)
{
	su_env_fini(&env);
}

TestSuite(wpool, .init = setup, .fini = teardown, .timeout = 120);

static struct rmq_wpool *pool_of(uint32_t chunk, uint32_t chunks, uint32_t run_max,
				 uint64_t large_max)
{
	struct rmq_wpool_config c = {chunk, chunks, run_max, large_max};
	struct rmq_wpool *p;
	cr_assert_eq(rmq_wpool_create(env.io, &c, &p), 0);
	return p;
}

static uint32_t free_chunks(const struct rmq_wpool *p)
{
	struct rmq_wpool_stats st;
	rmq_wpool_stats(p, &st);
	return st.chunks_free;
}

Test(wpool, runs_first_fit_and_back)
{
	struct rmq_wpool *p = pool_of(64 << 10, 130, 130, 0);
	uint8_t *a, *b, *c, *d;
	cr_assert_eq(rmq_wpool_get(p, 3, &a), 0);
	cr_assert_eq(rmq_wpool_get(p, 1, &b), 3);
	cr_assert_eq(rmq_wpool_get(p, 70, &c), 4, "a run across a 64-chunk word");
	cr_assert_eq(b, a + 3 * (64 << 10));
	cr_assert_eq(free_chunks(p), 130 - 74);
	/* A hole of 3 at the start takes a run of 2; a run of 4 goes after c. */
	rmq_wpool_put(p, 0, 3);
	cr_assert_eq(rmq_wpool_get(p, 2, &d), 0);
	cr_assert_eq(rmq_wpool_get(p, 4, &d), 74);
	cr_assert_eq(rmq_wpool_get(p, 60, &d), -1, "only 52 left");
	cr_assert_eq(rmq_wpool_get(p, 52, &d), 78);
	cr_assert_eq(rmq_wpool_get(p, 1, &d), 2);
	cr_assert_eq(free_chunks(p), 0);
	cr_assert_eq(rmq_wpool_get(p, 1, &d), -1);
	/* Everything back. */
	rmq_wpool_put(p, 0, 2);
	rmq_wpool_put(p, 2, 1);
	rmq_wpool_put(p, 3, 1);
	rmq_wpool_put(p, 4, 70);
	rmq_wpool_put(p, 74, 4);
	rmq_wpool_put(p, 78, 52);
	cr_assert_eq(free_chunks(p), 130);
	struct rmq_wpool_stats st;
	rmq_wpool_stats(p, &st);
	cr_assert_eq(st.refused, 2);
	rmq_wpool_destroy(p);
}

Test(wpool, large_buffers_are_bounded_but_one_always_goes)
{
	struct rmq_wpool *p = pool_of(64 << 10, 4, 0, 1 << 20);
	cr_assert_eq(rmq_wpool_run_max(p), 64 << 10, "a quarter of the pool");
	uint8_t *a = rmq_wpool_large_get(p, 3 << 20);
	cr_assert_not_null(a, "one buffer is always allowed, whatever its size");
	cr_assert_null(rmq_wpool_large_get(p, 4096), "over the bound");
	rmq_wpool_large_put(p, a, 3 << 20);
	uint8_t *b = rmq_wpool_large_get(p, 512 << 10);
	uint8_t *c = rmq_wpool_large_get(p, 512 << 10);
	cr_assert(b && c);
	cr_assert_null(rmq_wpool_large_get(p, 4096));
	rmq_wpool_large_put(p, b, 512 << 10);
	rmq_wpool_large_put(p, c, 512 << 10);
	rmq_wpool_destroy(p);
}

Test(wpool, bad_configs)
{
	struct rmq_wpool *p;
	struct rmq_wpool_config c;
	rmq_wpool_config_default(&c);
	c.chunk_bytes = 100 << 10;
	cr_assert_eq(rmq_wpool_create(env.io, &c, &p), RMQ_EBADFLAG, "not a power of two");
	rmq_wpool_config_default(&c);
	c.chunks = 1;
	cr_assert_eq(rmq_wpool_create(env.io, &c, &p), RMQ_EBADFLAG);
	rmq_wpool_config_default(&c);
	c.run_max_chunks = c.chunks + 1;
	cr_assert_eq(rmq_wpool_create(env.io, &c, &p), RMQ_EBADFLAG);
}

/* ---- many logs on one small pool ---------------------------------------------- */

#define NLOGS 40
#define PER_LOG 12

struct mapp {
	struct rmq_append a;
	bool done;
	int res;
};

static void mapp_cb(struct rmq_append *a, int res)
{
	struct mapp *m = (struct mapp *)a;
	m->done = true;
	m->res = res;
}

/*
 * Forty logs share a pool of 8 chunks of 64 KiB under every write path:
 * far fewer chunks than logs, so appends meet RMQ_EFULL and retry after
 * completions, and every one of them is stored and reads back after a
 * reopen.  Idle logs hold no buffer: when all are idle every chunk is back
 * in the pool, and an opened log takes none.
 */
Test(wpool, many_logs_share_a_small_pool)
{
	static const struct {
		enum rmq_fsync fsync;
		bool direct, dsync;
	} modes[] = {
		{RMQ_FSYNC_ALWAYS, true, true},
		{RMQ_FSYNC_ALWAYS, true, false},
		{RMQ_FSYNC_ALWAYS, false, false},
		{RMQ_FSYNC_NEVER, false, false},
	};
	for (size_t m = 0; m < sizeof(modes) / sizeof(modes[0]); m++) {
		struct rmq_wpool *pool = pool_of(64 << 10, 8, 4, 0);
		struct rmq_log *logs[NLOGS];
		struct su_batches model[NLOGS];
		static struct mapp apps[NLOGS][PER_LOG];
		char dir[256];
		memset(model, 0, sizeof(model));
		memset(apps, 0, sizeof(apps));
		struct rmq_log_config cfg = env.cfg;
		cfg.wpool = pool;
		cfg.fsync = modes[m].fsync;
		cfg.direct_writes = modes[m].direct;
		cfg.dsync_writes = modes[m].dsync;
		cfg.write_buffer_bytes = 128 << 10;
		for (int i = 0; i < NLOGS; i++) {
			snprintf(dir, sizeof(dir), "%s/m%zu-p%d", env.dir, m, i);
			cr_assert_eq(rmq_log_open(env.io, dir, &cfg, &logs[i]), 0);
		}
		cr_assert_eq(free_chunks(pool), 8, "an opened log holds no buffer");
		uint64_t seq = 0;
		int refusals = 0;
		for (int k = 0; k < PER_LOG; k++) {
			for (int i = 0; i < NLOGS; i++) {
				struct rmq_batch_hdr h;
				size_t len = su_gen_batch(seq++, 3000, &h);
				struct iovec iov = {su_recs_buf, len};
				struct mapp *a = &apps[i][k];
				a->a.hdr = h;
				a->a.cb = mapp_cb;
				int rc, cycles = 0;
				while ((rc = rmq_log_append(logs[i], &a->a, &iov, 1)) == RMQ_EFULL) {
					refusals++;
					cr_assert_lt(cycles++, 500, "RMQ_EFULL never cleared");
					for (int j = 0; j < NLOGS; j++)
						rmq_log_flush(logs[j]);
					cr_assert_geq(rmq_io_wait(env.io, 20ULL * 1000 * 1000), 0);
				}
				cr_assert_eq(rc, 0, "%s", rmq_errname(rc));
				su_model_push(&model[i], &a->a.hdr, len);
			}
			/* One flush per log per cycle, as the broker's shard does. */
			for (int i = 0; i < NLOGS; i++)
				rmq_log_flush(logs[i]);
			cr_assert_geq(rmq_io_poll(env.io), 0);
		}
		for (int cycles = 0;; cycles++) {
			bool idle = true;
			for (int i = 0; i < NLOGS; i++) {
				rmq_log_flush(logs[i]);
				idle &= rmq_log_idle(logs[i]);
			}
			if (idle)
				break;
			cr_assert_lt(cycles, 2000);
			cr_assert_geq(rmq_io_wait(env.io, 20ULL * 1000 * 1000), 0);
		}
		cr_assert_gt(refusals, 0, "the pool never ran short: the test tests nothing");
		for (int i = 0; i < NLOGS; i++)
			for (int k = 0; k < PER_LOG; k++)
				cr_assert(apps[i][k].done && apps[i][k].res == 0);
		cr_assert_eq(free_chunks(pool), 8, "idle logs still hold buffers");
		for (int i = 0; i < NLOGS; i++) {
			cr_assert_eq(rmq_log_close(logs[i]), 0);
			snprintf(dir, sizeof(dir), "%s/m%zu-p%d", env.dir, m, i);
			cr_assert_eq(rmq_log_open(env.io, dir, &cfg, &logs[i]), 0);
			struct su_batches got = {0};
			cr_assert_eq(su_collect(logs[i], 0, 1 << 20, &got), 0);
			su_assert_same(&got, &model[i], true);
			su_batches_free(&got);
			su_batches_free(&model[i]);
			cr_assert_eq(rmq_log_close(logs[i]), 0);
		}
		rmq_wpool_destroy(pool);
	}
}
