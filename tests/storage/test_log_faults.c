/* SPDX-License-Identifier: Apache-2.0 */
/*
 * test_log_faults.c - the partition log (src/storage/log*.c) under injected
 * I/O faults (core/io.h, "Fault injection"), as TigerBeetle and SQLite test
 * their storage: every failure path is driven to the outcome log.h
 * documents, and then the log is reopened and every acknowledged append
 * read back.
 *
 * Each test keeps a model of the appends that were acknowledged (callback
 * with 0) and checks after a reopen that the log holds exactly those,
 * byte for byte, possibly followed by appends that failed (an append that
 * failed may have reached the disk: that is allowed, as in Kafka; losing
 * one that was acknowledged is not).
 */
#include "storage/log.h"

#include "core/error.h"
#include "core/io.h"
#include "storage_util.h"

#include <criterion/criterion.h>
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define VMAX 2000

static struct su_env env;

static void setup(void)
{
	su_env_init(&env);
}

static void teardown(void)
{
	if (env.io)
		rmq_io_fault_disarm(env.io);
	su_env_fini(&env);
}

TestSuite(faults, .init = setup, .fini = teardown, .timeout = 120);

/* The write paths of log.h, each a configuration. */
enum mode { DIRECT_DSYNC, DIRECT_GROUP, PAGE_GROUP, NEVER, NMODES };
static const char *const mode_name[] = {"direct+dsync", "direct+group commit",
					"page cache+group commit", "fsync=never"};

static void configure(struct su_env *e, enum mode m)
{
	su_config(&e->cfg);
	e->cfg.fsync = m == NEVER ? RMQ_FSYNC_NEVER : RMQ_FSYNC_ALWAYS;
	e->cfg.direct_writes = m == DIRECT_DSYNC || m == DIRECT_GROUP;
	e->cfg.dsync_writes = m == DIRECT_DSYNC;
	e->cfg.prealloc = m == PAGE_GROUP ? RMQ_PREALLOC_ZERO : RMQ_PREALLOC_FALLOCATE;
}

static void open_log(struct su_env *e)
{
	int rc = su_open(e);
	cr_assert_eq(rc, 0, "open: %s", rmq_errname(rc));
}

static void arm(const struct rmq_io_fault_rule *rules, unsigned n)
{
	cr_assert_eq(rmq_io_fault_arm(env.io, rules, n, 42), 0);
}

/* How often rule i fired. */
static uint32_t fired(unsigned i)
{
	unsigned n;
	const struct rmq_io_fault_rule *r = rmq_io_fault_rules(env.io, &n);
	cr_assert_lt(i, n);
	return r[i].fired;
}

/* ---- transient: no SQE, -EBUSY from submit (issue item 8) ------------------- */

/*
 * A ring that hands out no SQE, or whose submission answers -EBUSY, for a
 * while is a transient state: every append still completes with 0, rolls
 * go on, and the log is whole after a reopen.  Before the fix the first
 * refused write or fdatasync failed the log for good (RMQ_ESTATE until
 * reopened) and the append with it.
 */
static void transient_refusals(enum rmq_io_fault_kind kind)
{
	for (int m = 0; m < NMODES; m++) {
		struct su_batches model = {0};
		configure(&env, (enum mode)m);
		open_log(&env);
		struct rmq_io_fault_rule r = {.kind = kind, .res = -EBUSY, .every = 2, .count = 200};
		arm(&r, 1);
		uint64_t rolls = rmq_log_stats(env.log)->rolls;
		su_append_seq(&env, 0, 60, VMAX, true, 10, &model);   /* pipelined */
		su_append_seq(&env, 60, 30, VMAX, false, 10, &model); /* one at a time */
		cr_assert_gt(fired(0), 0, "%s: the rule never fired", mode_name[m]);
		cr_assert_gt(rmq_log_stats(env.log)->rolls, rolls, "%s: never rolled", mode_name[m]);
		rmq_io_fault_disarm(env.io);
		su_check_content(&env, &model, 0);
		su_reopen(&env);
		su_check_content(&env, &model, 0);
		su_close(&env);
		su_rm_rf(env.dir);
		cr_assert_not_null(mkdtemp(strcpy(env.dir, "/tmp/rmq-storage-XXXXXX")));
		su_batches_free(&model);
	}
}

Test(faults, no_sqe_is_waited_out)
{
	transient_refusals(RMQ_IO_FAULT_SQE);
}

Test(faults, submit_ebusy_is_waited_out)
{
	transient_refusals(RMQ_IO_FAULT_SUBMIT);
}

/* Every SQE refused for a long stretch: the log neither fails nor spins;
 * each cycle retries once, and the appends complete when SQEs return. */
Test(faults, long_sqe_drought)
{
	struct su_batches model = {0};
	configure(&env, DIRECT_GROUP);
	open_log(&env);
	struct rmq_io_fault_rule r = {.kind = RMQ_IO_FAULT_SQE, .every = 1, .count = 300};
	arm(&r, 1);
	su_append_seq(&env, 0, 40, VMAX, true, 10, &model);
	cr_assert_eq(fired(0), 300);
	su_check_content(&env, &model, 0);
	su_reopen(&env);
	su_check_content(&env, &model, 0);
	su_batches_free(&model);
}

/* Close with a write, a sync and a roll's sync all waiting for an SQE:
 * close waits them out (nothing hangs) and every append is acknowledged
 * and on disk. */
Test(faults, close_with_deferred_ops)
{
	struct su_batches model = {0};
	configure(&env, DIRECT_GROUP);
	open_log(&env);
	su_append_seq(&env, 0, 10, VMAX, false, 10, &model);
	struct rmq_io_fault_rule r = {.kind = RMQ_IO_FAULT_SQE, .every = 1, .count = 20};
	arm(&r, 1);
	struct su_append apps[8];
	memset(apps, 0, sizeof(apps));
	for (int k = 0; k < 8; k++) {
		struct rmq_batch_hdr h;
		size_t len = su_gen_batch(10 + (uint64_t)k, 200, &h);
		apps[k].a.hdr = h;
		cr_assert_eq(su_append_async(&env, &apps[k], su_recs_buf, len), 0);
		su_model_push(&model, &apps[k].a.hdr, len);
	}
	rmq_log_flush(env.log);
	cr_assert_eq(su_close(&env), 0);
	for (int k = 0; k < 8; k++) {
		cr_assert(apps[k].done, "append %d never completed", k);
		cr_assert_eq(apps[k].res, 0, "append %d: %s", k, rmq_errname(apps[k].res));
	}
	rmq_io_fault_disarm(env.io);
	open_log(&env);
	su_check_content(&env, &model, 0);
	su_batches_free(&model);
}
