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
#include <sys/stat.h>
#include <unistd.h>

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

/* ---- a driver that keeps every append's outcome ----------------------------- */

#define DRV_MAX 4096

struct tapp {
	struct rmq_append a;
	uint64_t seq;  /* su_gen_batch() number */
	size_t rlen;
	bool done;
	int res;
	int order;     /* callback order */
};

static struct tapp apps[DRV_MAX];
static size_t napps;
static int ncallbacks;

static void tapp_cb(struct rmq_append *a, int res)
{
	struct tapp *t = (struct tapp *)a;
	cr_assert_not(t->done, "append callback ran twice");
	t->done = true;
	t->res = res;
	t->order = ++ncallbacks;
}

/*
 * Appends batch seq without waiting for it, retrying on RMQ_EFULL after
 * running completions (at most 200 cycles).  Returns rmq_log_append's
 * final result; on 0 the append is tracked and its callback will run.
 */
static int drv_append(uint64_t seq)
{
	struct tapp *t = &apps[napps];
	struct iovec iov;
	int rc;

	cr_assert_lt(napps, DRV_MAX);
	memset(t, 0, sizeof(*t));
	su_clock_ms += 10;
	t->seq = seq;
	t->rlen = su_gen_batch(seq, VMAX, &t->a.hdr);
	t->a.cb = tapp_cb;
	iov = (struct iovec){su_recs_buf, t->rlen};
	for (int cycles = 0;; cycles++) {
		rc = rmq_log_append(env.log, &t->a, &iov, 1);
		if (rc != RMQ_EFULL)
			break;
		cr_assert_lt(cycles, 200, "RMQ_EFULL never cleared");
		rmq_log_flush(env.log);
		cr_assert_geq(rmq_io_wait(env.io, 20ULL * 1000 * 1000), 0);
	}
	if (rc == 0)
		napps++;
	return rc;
}

/* Runs cycles until every tracked append has called back. */
static void drv_wait(void)
{
	for (int cycles = 0;; cycles++) {
		size_t left = 0;
		for (size_t i = 0; i < napps; i++)
			left += !apps[i].done;
		if (!left)
			return;
		cr_assert_lt(cycles, 2000, "%zu appends never called back", left);
		rmq_log_flush(env.log);
		if (env.cfg.fsync == RMQ_FSYNC_INTERVAL)
			rmq_log_sync_tick(env.log);
		cr_assert_geq(rmq_io_wait(env.io, 20ULL * 1000 * 1000), 0);
	}
}

/* Appends n batches from seq on (pipelined, flushing every few), returns
 * the next seq.  Appends refused at once are not tracked. */
static uint64_t drv_append_n(uint64_t seq, size_t n)
{
	for (size_t k = 0; k < n; k++, seq++) {
		int rc = drv_append(seq);
		if (rc < 0)
			return seq;
		if (k % 3 == 2)
			rmq_log_flush(env.log);
	}
	return seq;
}

/*
 * The acknowledged appends, in offset order, into model; asserts what
 * log.h promises about outcomes: callbacks in offset order, and once one
 * fails every later one fails (nothing acknowledged after a failure).
 * Returns how many failed, with the first error in *first_err.
 */
static size_t drv_model(struct su_batches *model, int *first_err)
{
	size_t failed = 0;
	*first_err = 0;
	for (size_t i = 0; i < napps; i++) {
		struct tapp *t = &apps[i];
		cr_assert(t->done);
		if (i > 0)
			cr_assert_gt(t->order, apps[i - 1].order, "callbacks out of offset order");
		if (t->res < 0) {
			if (!failed)
				*first_err = t->res;
			failed++;
			continue;
		}
		cr_assert_eq(t->res, 0);
		cr_assert_eq(failed, 0, "append %zu acknowledged after one failed", i);
		struct rmq_batch_hdr h;
		cr_assert_eq(su_gen_batch(t->seq, VMAX, &h), t->rlen);
		su_model_push(model, &t->a.hdr, t->rlen);
	}
	return failed;
}

/* drv_model() over the appends that called back so far (a prefix). */
static size_t drv_model_done(struct su_batches *model, int *first_err)
{
	size_t n = napps, done = 0;
	while (done < n && apps[done].done)
		done++;
	napps = done;
	size_t failed = drv_model(model, first_err);
	napps = n;
	return failed;
}

/* Reopens the log (without faults) and checks that it starts with every
 * acknowledged append, byte for byte; appends that failed may follow
 * (their bytes may have reached the disk), nothing else. */
static void check_survivors(const struct su_batches *model)
{
	if (env.log)
		(void)su_close(&env);
	rmq_io_fault_disarm(env.io);
	open_log(&env);
	struct su_batches got = {0};
	cr_assert_eq(su_collect(env.log, rmq_log_start_offset(env.log), 1 << 20, &got), 0);
	cr_assert_geq(got.n, model->n, "acknowledged appends lost: %zu of %zu survive", got.n,
		      model->n);
	cr_assert_leq(got.n, napps, "batches nobody appended");
	struct su_batches prefix = got;
	prefix.n = model->n;
	su_assert_same(&prefix, model, true);
	su_batches_free(&got);
}

/* Resets the driver and the directory between the modes of one test. */
static void next_mode(enum mode m)
{
	if (env.log)
		(void)su_close(&env);
	rmq_io_fault_disarm(env.io);
	su_rm_rf(env.dir);
	cr_assert_not_null(mkdtemp(strcpy(env.dir, "/tmp/rmq-storage-XXXXXX")));
	napps = 0;
	ncallbacks = 0;
	configure(&env, m);
	open_log(&env);
	su_wait_idle(&env);
}

/* A new log syncs its directory at its first append (log_new_segment):
 * that append is made here, before a test arms a rule for the directory
 * syncs that come later.  Returns the next seq. */
static uint64_t drv_first_append(void)
{
	cr_assert_eq(drv_append(0), 0);
	drv_wait();
	cr_assert_eq(apps[napps - 1].res, 0);
	return 1;
}

/* Appends until the log has rolled once more; all must be acknowledged. */
static uint64_t drv_until_roll(uint64_t seq)
{
	uint64_t rolls = rmq_log_stats(env.log)->rolls;
	while (rmq_log_stats(env.log)->rolls == rolls) {
		cr_assert_eq(drv_append(seq++), 0);
		drv_wait();
		cr_assert_eq(apps[napps - 1].res, 0);
	}
	return seq;
}

/* ---- write path -------------------------------------------------------------- */

/* EIO from a data write fails the log (log.h): the appends waiting for it
 * and after it complete with -EIO, later appends are refused with
 * RMQ_ESTATE, close reports the error, nothing acknowledged is lost. */
Test(faults, write_eio_fails_the_log)
{
	for (int m = 0; m < NMODES; m++) {
		struct su_batches model = {0};
		next_mode((enum mode)m);
		uint64_t seq = drv_append_n(0, 30);
		drv_wait();
		struct rmq_io_fault_rule r = {.kind = RMQ_IO_FAULT_WRITE, .res = -EIO, .every = 1,
					      .count = 1, .path_suffix = ".log"};
		arm(&r, 1);
		seq = drv_append_n(seq, 10);
		drv_wait();
		cr_assert_eq(fired(0), 1, "%s", mode_name[m]);
		int err;
		cr_assert_gt(drv_model(&model, &err), 0, "%s: nothing failed", mode_name[m]);
		cr_assert_eq(err, -EIO, "%s: %s", mode_name[m], rmq_errname(err));
		cr_assert_eq(drv_append(seq), RMQ_ESTATE, "%s", mode_name[m]);
		cr_assert_eq(su_close(&env), -EIO, "%s", mode_name[m]);
		check_survivors(&model);
		su_batches_free(&model);
	}
}

/* A short write is resubmitted for the rest (STYLE.md): every append is
 * acknowledged and reads back whole, across rolls. */
Test(faults, short_writes_are_completed)
{
	for (int m = 0; m < NMODES; m++) {
		struct su_batches model = {0};
		next_mode((enum mode)m);
		bool direct = m == DIRECT_DSYNC || m == DIRECT_GROUP;
		struct rmq_io_fault_rule r = {.kind = RMQ_IO_FAULT_WRITE, .short_io = true,
					      .short_align = direct ? 4096 : 1, .every = 2,
					      .opcodes = (1ULL << IORING_OP_WRITE) |
							 (1ULL << IORING_OP_WRITE_FIXED)};
		arm(&r, 1);
		uint64_t seq = drv_append_n(0, 80);
		drv_wait();
		cr_assert_gt(fired(0), 0, "%s", mode_name[m]);
		cr_assert_gt(rmq_log_stats(env.log)->rolls, 0);
		int err;
		cr_assert_eq(drv_model(&model, &err), 0, "%s: %s", mode_name[m], rmq_errname(err));
		(void)seq;
		check_survivors(&model);
		cr_assert_eq(model.n, napps);
		su_batches_free(&model);
	}
}

/* Writes and syncs that complete late and out of order: acknowledgements
 * still come in offset order, and only for what is durable. */
Test(faults, delayed_completions_keep_acks_in_order)
{
	for (int m = 0; m < NMODES; m++) {
		struct su_batches model = {0};
		next_mode((enum mode)m);
		struct rmq_io_fault_rule r[] = {
			{.kind = RMQ_IO_FAULT_WRITE, .delay_cycles = 4, .every = 2},
			{.kind = RMQ_IO_FAULT_FSYNC, .delay_cycles = 3, .every = 3},
		};
		arm(r, 2);
		drv_append_n(0, 80);
		drv_wait();
		cr_assert_gt(fired(0), 0);
		int err;
		cr_assert_eq(drv_model(&model, &err), 0, "%s: %s", mode_name[m], rmq_errname(err));
		check_survivors(&model);
		cr_assert_eq(model.n, napps);
		su_batches_free(&model);
	}
}

/* A group commit's fdatasync reporting EIO fails the log: after an fsync
 * error the kernel may have dropped the dirty pages, so nothing it covered
 * is acknowledged, and no retry pretends otherwise. */
Test(faults, fdatasync_eio_fails_the_log)
{
	static const enum mode group[] = {DIRECT_GROUP, PAGE_GROUP};
	for (size_t g = 0; g < 2; g++) {
		struct su_batches model = {0};
		next_mode(group[g]);
		uint64_t seq = drv_append_n(0, 20);
		drv_wait();
		struct rmq_io_fault_rule r = {.kind = RMQ_IO_FAULT_FSYNC, .res = -EIO, .every = 1,
					      .count = 1, .path_suffix = ".log"};
		arm(&r, 1);
		seq = drv_append_n(seq, 10);
		drv_wait();
		cr_assert_eq(fired(0), 1);
		int err;
		cr_assert_gt(drv_model(&model, &err), 0);
		cr_assert_eq(err, -EIO);
		cr_assert_eq(drv_append(seq), RMQ_ESTATE);
		check_survivors(&model);
		su_batches_free(&model);
	}
}

/*
 * Review path 1: a roll while the group commit's fdatasync of the old
 * segment is in flight, and that sync reports a writeback error.  The roll
 * must wait for it (a writeback error is reported to one fsync only: had
 * the seal's own sync come back first, it would have acknowledged data
 * that the other then reports lost).  The sync fails, the log fails, and
 * the appends it covered are never acknowledged.
 */
Test(faults, roll_waits_for_a_failing_group_commit)
{
	static const enum mode group[] = {DIRECT_GROUP, PAGE_GROUP};
	for (size_t g = 0; g < 2; g++) {
		struct su_batches model = {0};
		next_mode(group[g]);
		uint64_t seq = drv_until_roll(0);
		uint64_t rolls = rmq_log_stats(env.log)->rolls;
		/* The next group commit's sync is held back, then fails. */
		struct rmq_io_fault_rule r = {.kind = RMQ_IO_FAULT_FSYNC, .res = -EIO,
					      .delay_cycles = 50, .every = 1, .count = 1,
					      .path_suffix = ".log"};
		arm(&r, 1);
		size_t covered = napps;
		cr_assert_eq(drv_append(seq++), 0);
		rmq_log_flush(env.log);
		for (int k = 0; k < 3; k++) /* its write completes, the sync goes out */
			cr_assert_geq(rmq_io_wait(env.io, 20ULL * 1000 * 1000), 0);
		/* Fill the segment: the append that rolls meets RMQ_EFULL until
		 * the sync is back, and then the log has failed. */
		int rc = 0;
		for (int k = 0; k < 60 && rc == 0; k++) {
			rc = drv_append(seq++);
			if (k % 3 == 2)
				rmq_log_flush(env.log);
		}
		drv_wait();
		cr_assert_eq(fired(0), 1);
		cr_assert_eq(rc, RMQ_ESTATE, "%s: %s", mode_name[group[g]], rmq_errname(rc));
		cr_assert_eq(rmq_log_stats(env.log)->rolls, rolls, "sealed under a failing sync");
		cr_assert_eq(apps[covered].res, -EIO, "an append the failed sync covered was "
						      "acknowledged (%s)", rmq_errname(apps[covered].res));
		int err;
		(void)drv_model(&model, &err);
		check_survivors(&model);
		su_batches_free(&model);
	}
}

/* ---- rolls --------------------------------------------------------------------- */

/* Appends one at a time until an append fails or the log rolls; returns
 * that append's rmq_log_append result or callback error (0 = rolled). */
static int append_until_roll_or_error(uint64_t *seq)
{
	uint64_t rolls = rmq_log_stats(env.log)->rolls;
	for (int k = 0; k < 200; k++) {
		int rc = drv_append((*seq)++);
		if (rc < 0)
			return rc;
		drv_wait();
		if (apps[napps - 1].res < 0)
			return apps[napps - 1].res;
		if (rmq_log_stats(env.log)->rolls != rolls)
			return 0;
	}
	cr_assert_fail("never rolled");
	return 0;
}

/* The seal's fdatasync of the old segment fails: the log fails (the old
 * segment's data is not known to be durable), the rolling append gets
 * RMQ_ESTATE. */
Test(faults, seal_sync_eio_fails_the_log)
{
	struct su_batches model = {0};
	next_mode(DIRECT_DSYNC); /* no group commit: the only data-file sync is the seal's */
	uint64_t seq = 0;
	struct rmq_io_fault_rule r = {.kind = RMQ_IO_FAULT_FSYNC, .res = -EIO, .every = 1,
				      .count = 1, .path_suffix = ".log"};
	arm(&r, 1);
	cr_assert_eq(append_until_roll_or_error(&seq), RMQ_ESTATE);
	cr_assert_eq(fired(0), 1);
	cr_assert_eq(rmq_log_stats(env.log)->rolls, 0);
	int err;
	cr_assert_eq(drv_model(&model, &err), 0);
	check_survivors(&model);
	su_batches_free(&model);
}

/* The new segment's directory entry cannot be synced: the roll is undone
 * (the new file removed, durably), the old segment takes appends again,
 * and the append that rolled fails with the error, once.  The next roll
 * works and nothing is lost. */
Test(faults, new_segment_dir_sync_eio_undoes_the_roll)
{
	for (int m = 0; m < NMODES; m++) {
		struct su_batches model = {0};
		next_mode((enum mode)m);
		uint64_t seq = drv_first_append();
		struct rmq_io_fault_rule r = {.kind = RMQ_IO_FAULT_FSYNC, .res = -EIO, .every = 1,
					      .count = 1, .path_suffix = env.dir};
		arm(&r, 1);
		cr_assert_eq(append_until_roll_or_error(&seq), -EIO, "%s", mode_name[m]);
		cr_assert_eq(fired(0), 1);
		cr_assert_eq(rmq_log_stats(env.log)->rolls, 0);
		cr_assert_eq(append_until_roll_or_error(&seq), 0, "%s", mode_name[m]);
		drv_append_n(seq, 20);
		drv_wait();
		int err;
		cr_assert_eq(drv_model(&model, &err), 0, "%s: %s", mode_name[m], rmq_errname(err));
		cr_assert_eq(model.n, napps);
		check_survivors(&model);
		su_batches_free(&model);
	}
}

/*
 * Review path 2: a failed segment creation must make the removal of what
 * it made durable (sync the directory) before the old segment takes
 * appends again, or a crash could bring the empty newer file back and
 * recovery would fence the old segment's acknowledged tail as a gap.  When
 * that directory sync fails, the log fails; when it works, the append that
 * rolled fails once and appends go on in the old segment.
 */
Test(faults, failed_creation_syncs_the_directory_first)
{
	for (int dir_fails = 0; dir_fails < 2; dir_fails++) {
		struct su_batches model = {0};
		next_mode(DIRECT_DSYNC);
		uint64_t seq = drv_first_append();
		/* B.log is created, then B.index fails: create removes B.log. */
		struct rmq_io_fault_rule r[] = {
			{.kind = RMQ_IO_FAULT_CREATE, .res = -EIO, .every = 1, .count = 1,
			 .path_suffix = ".index"},
			{.kind = RMQ_IO_FAULT_FSYNC, .res = -EIO, .every = 1, .count = 1,
			 .path_suffix = env.dir},
		};
		arm(r, dir_fails ? 2 : 1);
		int rc = append_until_roll_or_error(&seq);
		cr_assert_eq(fired(0), 1);
		if (dir_fails) {
			cr_assert_eq(fired(1), 1, "the directory was not synced");
			cr_assert_eq(rc, RMQ_ESTATE, "%s", rmq_errname(rc));
		} else {
			cr_assert_eq(rc, -EIO, "%s", rmq_errname(rc));
			cr_assert_eq(append_until_roll_or_error(&seq), 0);
		}
		int err;
		(void)drv_model(&model, &err);
		check_survivors(&model);
		su_batches_free(&model);
	}
}

/*
 * Review path 3: a write that gets no SQE stays in flight until it is
 * retired, so close cannot hang: here the log fails (an earlier write
 * reports EIO) while the next write waits for an SQE; the waiting write
 * is retired with the error and close returns it.
 */
Test(faults, deferred_write_is_retired_when_the_log_fails)
{
	struct su_batches model = {0};
	/* Page-cache writes: the second does not wait for the first's block. */
	next_mode(PAGE_GROUP);
	uint64_t seq = drv_append_n(0, 5);
	drv_wait();
	size_t first = napps;
	cr_assert_eq(drv_append(seq++), 0);
	rmq_log_flush(env.log); /* its write is queued, not yet submitted */
	struct rmq_io_fault_rule r[] = {
		{.kind = RMQ_IO_FAULT_WRITE, .res = -EIO, .every = 1, .count = 1,
		 .opcodes = (1ULL << IORING_OP_WRITE) | (1ULL << IORING_OP_WRITE_FIXED)},
		{.kind = RMQ_IO_FAULT_SQE, .every = 1, .count = 5},
	};
	arm(r, 2);
	cr_assert_eq(drv_append(seq++), 0);
	rmq_log_flush(env.log); /* no SQE: deferred */
	cr_assert_geq(fired(1), 1);
	cr_assert_eq(su_close(&env), -EIO);
	cr_assert(apps[first].done && apps[first + 1].done);
	cr_assert_eq(apps[first].res, -EIO);
	cr_assert_eq(apps[first + 1].res, -EIO);
	int err;
	(void)drv_model(&model, &err);
	check_survivors(&model);
	su_batches_free(&model);
}

/* ---- truncation ------------------------------------------------------------------ */

/*
 * Review path 4: truncation drops the later segments first and then cuts
 * the segment holding the offset; when the cut fails the log no longer
 * matches its files, so it fails (appends RMQ_ESTATE) rather than append
 * after a cut that did not happen.  Reopened, everything below the offset
 * is intact.
 */
Test(faults, failed_cut_after_dropping_segments_fails_the_log)
{
	static const enum rmq_io_fault_kind kinds[] = {RMQ_IO_FAULT_FTRUNCATE, RMQ_IO_FAULT_FSYNC};
	for (size_t k = 0; k < 2; k++) {
		struct su_batches model = {0};
		next_mode(DIRECT_DSYNC);
		uint64_t seq = 0;
		for (int i = 0; i < 3; i++)
			seq = drv_until_roll(seq);
		int err;
		cr_assert_eq(drv_model(&model, &err), 0);
		/* An offset in the middle of the first segment. */
		uint64_t cut = model.v[model.n / 8].hdr.base_offset;
		struct rmq_io_fault_rule r = {.kind = kinds[k], .res = -EIO, .every = 1, .count = 1,
					      .path_suffix = ".log"};
		arm(&r, 1);
		cr_assert_eq(rmq_log_truncate(env.log, cut), -EIO);
		cr_assert_eq(fired(0), 1);
		cr_assert_eq(drv_append(seq), RMQ_ESTATE);
		(void)su_close(&env);
		rmq_io_fault_disarm(env.io);
		open_log(&env);
		/* Below the offset everything is there; the rest may be gone. */
		struct su_batches got = {0};
		cr_assert_eq(su_collect(env.log, 0, 1 << 20, &got), 0);
		size_t keep = model.n / 8;
		cr_assert_geq(got.n, keep);
		struct su_batches g = got, w = model;
		g.n = w.n = keep;
		su_assert_same(&g, &w, true);
		su_batches_free(&got);
		su_batches_free(&model);
	}
}

/* The directory sync that makes truncation's deletions durable fails: the
 * log fails (a later segment could come back after a crash). */
Test(faults, truncation_dir_sync_eio_fails_the_log)
{
	struct su_batches model = {0};
	next_mode(DIRECT_DSYNC);
	uint64_t seq = 0;
	for (int i = 0; i < 2; i++)
		seq = drv_until_roll(seq);
	int err;
	cr_assert_eq(drv_model(&model, &err), 0);
	struct rmq_io_fault_rule r = {.kind = RMQ_IO_FAULT_FSYNC, .res = -EIO, .every = 1,
				      .count = 1, .path_suffix = env.dir};
	arm(&r, 1);
	cr_assert_eq(rmq_log_truncate(env.log, model.v[2].hdr.base_offset), -EIO);
	cr_assert_eq(drv_append(seq), RMQ_ESTATE);
	su_batches_free(&model);
}

/* ---- preallocation, zero-ahead, close, open ---------------------------------------- */

/* A failed zero-ahead write only costs speed: the log warns, goes on
 * without zeroing, and every append is acknowledged. */
Test(faults, zero_ahead_failure_is_harmless)
{
	struct su_batches model = {0};
	next_mode(PAGE_GROUP);
	/* Room for zeros ahead of the data (log_write.c, zero_ahead). */
	(void)su_close(&env);
	su_rm_rf(env.dir);
	env.cfg.segment_bytes = 1 << 20;
	env.cfg.write_buffer_bytes = 64 << 10;
	env.cfg.zero_ahead_bytes = 512 << 10;
	struct rmq_io_fault_rule r = {.kind = RMQ_IO_FAULT_WRITE, .res = -EIO, .every = 1,
				      .opcodes = 1ULL << IORING_OP_WRITEV};
	arm(&r, 1);
	open_log(&env); /* a new log: the zeros start with its first flush */
	int fd = su_capture_start();
	drv_append_n(0, 60);
	drv_wait();
	char *out = su_capture_end(fd);
	cr_assert_gt(fired(0), 0, "no zero-ahead write was made");
	cr_assert_not_null(strstr(out, "zero-ahead write failed"), "%s", out);
	free(out);
	int err;
	cr_assert_eq(drv_model(&model, &err), 0, "%s", rmq_errname(err));
	check_survivors(&model);
	su_batches_free(&model);
}

/* close's final fdatasync fails: close reports it. */
Test(faults, close_sync_eio_is_reported)
{
	next_mode(NEVER);
	drv_append_n(0, 10);
	drv_wait();
	struct rmq_io_fault_rule r = {.kind = RMQ_IO_FAULT_FSYNC, .res = -EIO, .every = 1,
				      .count = 1, .path_suffix = ".log"};
	arm(&r, 1);
	cr_assert_eq(su_close(&env), -EIO);
}

/* A segment that cannot be opened fails the open with the error and
 * changes nothing: the next open works. */
Test(faults, open_failure_leaves_the_log_as_it_was)
{
	struct su_batches model = {0};
	next_mode(DIRECT_DSYNC);
	uint64_t seq = drv_until_roll(0);
	(void)seq;
	int err;
	cr_assert_eq(drv_model(&model, &err), 0);
	cr_assert_eq(su_close(&env), 0);
	struct rmq_io_fault_rule r = {.kind = RMQ_IO_FAULT_CREATE, .res = -EIO, .every = 1,
				      .count = 1, .path_suffix = ".timeindex"};
	arm(&r, 1);
	cr_assert_eq(su_open(&env), -EIO);
	cr_assert_null(env.log);
	check_survivors(&model);
	cr_assert_eq(model.n, napps);
	su_batches_free(&model);
}

/* ---- disk space ------------------------------------------------------------------ */

/* Reservations through the ring (IORING_OP_FALLOCATE) fail until the
 * reserved space runs out: the append that needs the space is refused
 * with the error and nothing of it is appended; once reservations work
 * again the next append reserves and goes on. */
Test(faults, failed_reservation_refuses_the_append_that_needs_it)
{
	struct su_batches model = {0};
	next_mode(DIRECT_DSYNC);
	(void)su_close(&env);
	env.cfg.segment_bytes = 4 << 20; /* room to reserve ahead */
	open_log(&env);
	su_wait_idle(&env);
	struct rmq_io_fault_rule r = {.kind = RMQ_IO_FAULT_FALLOCATE, .res = -EIO, .every = 1,
				      .opcodes = 1ULL << IORING_OP_FALLOCATE};
	arm(&r, 1);
	uint64_t seq = 0;
	int rc = 0;
	for (int k = 0; k < 2000 && rc == 0; k++) {
		uint64_t end = rmq_log_end_offset(env.log);
		rc = drv_append(seq++);
		if (rc < 0)
			cr_assert_eq(rmq_log_end_offset(env.log), end, "a refused append left a trace");
		if (k % 8 == 7)
			drv_wait();
	}
	cr_assert_eq(rc, -EIO, "%s", rmq_errname(rc));
	cr_assert_gt(fired(0), 0);
	cr_assert_leq(rmq_log_size_bytes(env.log), RMQ_PREALLOC_MIN, "appended past the reservation");
	rmq_io_fault_disarm(env.io);
	drv_append_n(seq, 100);
	drv_wait();
	int err;
	cr_assert_eq(drv_model(&model, &err), 0, "%s", rmq_errname(err));
	check_survivors(&model);
	cr_assert_eq(model.n, napps);
	su_batches_free(&model);
}

/* ---- a new log's directory entry -------------------------------------------------- */

/* A new log's first segment is synced into its directory through the ring:
 * appends may start at once, but none is acknowledged before that sync
 * completes (a crash could lose the file). */
Test(faults, new_log_acknowledges_after_its_directory_sync)
{
	su_rm_rf(env.dir);
	configure(&env, DIRECT_DSYNC);
	struct rmq_io_fault_rule r = {.kind = RMQ_IO_FAULT_FSYNC, .delay_cycles = 30, .every = 1,
				      .count = 1, .path_suffix = env.dir};
	arm(&r, 1);
	open_log(&env); /* creates the directory and its first segment */
	cr_assert_eq(drv_append(0), 0);
	rmq_log_flush(env.log);
	int cycles = 0;
	while (!apps[0].done) {
		cr_assert_lt(cycles, 200);
		cr_assert_geq(rmq_io_wait(env.io, 20ULL * 1000 * 1000), 0);
		if (++cycles < 25)
			cr_assert_not(apps[0].done, "acknowledged before the directory sync");
	}
	cr_assert_eq(fired(0), 1);
	cr_assert_eq(apps[0].res, 0);
	cr_assert_eq(rmq_log_high_watermark(env.log), rmq_log_end_offset(env.log));
}

/* That sync fails: the log fails, its appends with it. */
Test(faults, new_log_directory_sync_failure_fails_the_log)
{
	su_rm_rf(env.dir);
	configure(&env, DIRECT_DSYNC);
	struct rmq_io_fault_rule r = {.kind = RMQ_IO_FAULT_FSYNC, .res = -EIO, .delay_cycles = 5,
				      .every = 1, .count = 1, .path_suffix = env.dir};
	arm(&r, 1);
	open_log(&env);
	cr_assert_eq(drv_append(0), 0);
	drv_wait();
	cr_assert_eq(apps[0].res, -EIO);
	cr_assert_eq(drv_append(1), RMQ_ESTATE);
	cr_assert_eq(su_close(&env), -EIO);
}

/* The directory's parent holds the new directory's entry: it is synced too
 * before the first acknowledgement (a crash could otherwise lose the whole
 * directory with an acknowledged batch in it), and its failure fails the
 * log. */
Test(faults, new_log_acknowledges_after_its_parent_directory_sync)
{
	char parent[sizeof(env.dir)];
	snprintf(parent, sizeof(parent), "%s", env.dir);
	*strrchr(parent, '/') = '\0'; /* "/tmp" */
	for (int fail = 0; fail < 2; fail++) {
		if (env.log)
			cr_assert_eq(su_close(&env), 0);
		su_rm_rf(env.dir);
		configure(&env, DIRECT_DSYNC);
		napps = 0;
		ncallbacks = 0;
		struct rmq_io_fault_rule r = {.kind = RMQ_IO_FAULT_FSYNC, .res = fail ? -EIO : 0,
					      .delay_cycles = 30, .every = 1, .count = 1,
					      .path_suffix = parent};
		arm(&r, 1);
		open_log(&env);
		cr_assert_eq(drv_append(0), 0);
		rmq_log_flush(env.log);
		int cycles = 0;
		while (!apps[0].done) {
			cr_assert_lt(cycles, 200);
			cr_assert_geq(rmq_io_wait(env.io, 20ULL * 1000 * 1000), 0);
			if (++cycles < 25)
				cr_assert_not(apps[0].done, "acknowledged before its parent's sync");
		}
		cr_assert_eq(fired(0), 1, "the parent directory was not synced");
		rmq_io_fault_disarm(env.io);
		if (!fail) {
			cr_assert_eq(apps[0].res, 0);
			continue;
		}
		cr_assert_eq(apps[0].res, -EIO);
		cr_assert_eq(drv_append(1), RMQ_ESTATE);
		cr_assert_eq(su_close(&env), -EIO);
	}
}

/* Making a new log's files fails part way (here: sizing its offset index):
 * what the attempt created is removed, the append waiting for it fails once
 * with the error, the next attempt makes them, and nothing is lost. */
Test(faults, failed_making_is_undone_and_tried_again)
{
	struct su_batches model = {0};
	char p[160];
	su_rm_rf(env.dir);
	configure(&env, DIRECT_DSYNC);
	struct rmq_io_fault_rule r = {.kind = RMQ_IO_FAULT_FALLOCATE, .res = -EIO, .every = 1,
				      .count = 1, .path_suffix = ".index",
				      .opcodes = 1ULL << IORING_OP_FALLOCATE};
	arm(&r, 1);
	int fd = su_capture_start();
	open_log(&env);
	int rc = drv_append(0);
	char *out = su_capture_end(fd);
	cr_assert_eq(rc, -EIO, "%s", rmq_errname(rc));
	cr_assert_eq(fired(0), 1);
	cr_assert_not_null(strstr(out, "sizing the first segment's index files failed"), "%s", out);
	free(out);
	static const char *const ext[] = {".log", ".index", ".timeindex"};
	for (int k = 0; k < 3; k++)
		cr_assert_eq(access(su_seg_file(p, sizeof(p), env.dir, 0, ext[k]), F_OK), -1,
			     "the failed attempt left %s", p);
	cr_assert_not(rmq_log_disk_full(env.log), "EIO is not a full disk");
	drv_append_n(0, 30);
	drv_wait();
	int err;
	cr_assert_eq(drv_model(&model, &err), 0, "%s", rmq_errname(err));
	cr_assert_eq(model.n, napps);
	check_survivors(&model);
	su_batches_free(&model);
}

/* A name the new segment needs is taken (a directory stands there) when the
 * log, opened by a helper thread, gets its ring: making fails with EEXIST,
 * the files it created are removed, each append that finds it failed gets
 * the error and the next one tries again; once the name is free the files
 * are made and appends go on. */
Test(faults, taken_name_fails_making_until_freed)
{
	struct su_batches model = {0};
	struct rmq_wpool_config wc;
	struct rmq_wpool *pool;
	char p[160], blocker[160];
	rmq_wpool_config_default(&wc);
	wc.chunks = 64;
	cr_assert_eq(rmq_wpool_create(env.io, &wc, &pool), 0);
	su_rm_rf(env.dir);
	configure(&env, DIRECT_DSYNC);
	env.cfg.wpool = pool;
	cr_assert_eq(rmq_log_open(NULL, env.dir, &env.cfg, &env.log), 0);
	cr_assert_eq(mkdir(env.dir, 0755), 0);
	cr_assert_eq(mkdir(su_seg_file(blocker, sizeof(blocker), env.dir, 0, ".timeindex"), 0755),
		     0);
	rmq_log_attach(env.log, env.io);
	for (int k = 0; k < 2; k++) {
		int rc = drv_append(0);
		cr_assert_eq(rc, -EEXIST, "%s", rmq_errname(rc));
		cr_assert_eq(access(su_seg_file(p, sizeof(p), env.dir, 0, ".log"), F_OK), -1);
		cr_assert_eq(access(su_seg_file(p, sizeof(p), env.dir, 0, ".index"), F_OK), -1);
	}
	cr_assert_eq(rmdir(blocker), 0);
	drv_append_n(0, 30);
	drv_wait();
	int err;
	cr_assert_eq(drv_model(&model, &err), 0, "%s", rmq_errname(err));
	cr_assert_eq(model.n, napps);
	check_survivors(&model);
	cr_assert_eq(su_close(&env), 0);
	rmq_wpool_destroy(pool);
	env.cfg.wpool = NULL;
	su_batches_free(&model);
}

/* ---- a full disk (issue 14 item 12, storage half) ---------------------------------- */

/* Appends (advancing the clock) until one succeeds, every refusal being
 * -ENOSPC (never RMQ_ESTATE: the log has not failed).  Returns how many
 * were refused. */
static int append_through_enospc(uint64_t *seq)
{
	int refused = 0;
	for (int k = 0; k < 500; k++) {
		int rc = drv_append(*seq);
		if (rc == 0) {
			(*seq)++;
			return refused;
		}
		cr_assert_eq(rc, -ENOSPC, "refused with %s", rmq_errname(rc));
		refused++;
		su_clock_ms += 50;
		rmq_log_flush(env.log);
		cr_assert_geq(rmq_io_wait(env.io, 20ULL * 1000 * 1000), 0);
	}
	cr_assert_fail("appends never resumed");
	return refused;
}

/* Reads everything acknowledged so far and checks it against the model. */
static void check_readable(void)
{
	struct su_batches model = {0}, got = {0};
	int err;
	(void)drv_model_done(&model, &err);
	cr_assert_eq(su_collect(env.log, 0, 1 << 20, &got), 0);
	cr_assert_geq(got.n, model.n);
	struct su_batches g = got;
	g.n = model.n;
	su_assert_same(&g, &model, true);
	su_batches_free(&got);
	su_batches_free(&model);
}

/*
 * Reservations fail with ENOSPC: the log is full, not failed.  Appends that
 * need space are refused with -ENOSPC (again and again, not once), reads
 * work, rmq_log_disk_full() says so; when space returns, a later append
 * reserves again and appends resume by themselves.  Nothing is lost.
 */
Test(faults, full_disk_at_reservation)
{
	struct su_batches model = {0};
	next_mode(DIRECT_DSYNC);
	(void)su_close(&env);
	env.cfg.segment_bytes = 4 << 20;
	open_log(&env);
	su_wait_idle(&env);
	struct rmq_io_fault_rule r = {.kind = RMQ_IO_FAULT_FALLOCATE, .res = -ENOSPC, .every = 1,
				      .opcodes = 1ULL << IORING_OP_FALLOCATE};
	arm(&r, 1);
	uint64_t seq = 0;
	int rc = 0;
	for (int k = 0; k < 2000 && rc == 0; k++) {
		rc = drv_append(seq++);
		if (k % 8 == 7)
			drv_wait();
	}
	drv_wait();
	cr_assert_eq(rc, -ENOSPC, "%s", rmq_errname(rc));
	cr_assert(rmq_log_disk_full(env.log));
	/* Still full a while later, and still refusing with -ENOSPC. */
	for (int k = 0; k < 5; k++) {
		su_clock_ms += 200;
		rmq_log_flush(env.log);
		cr_assert_geq(rmq_io_wait(env.io, 20ULL * 1000 * 1000), 0);
		cr_assert_eq(drv_append(seq), -ENOSPC);
	}
	check_readable();
	/* Space returns. */
	rmq_io_fault_disarm(env.io);
	cr_assert_gt(append_through_enospc(&seq), 0);
	cr_assert_not(rmq_log_disk_full(env.log));
	drv_append_n(seq, 50);
	drv_wait();
	int err;
	cr_assert_eq(drv_model(&model, &err), 0, "%s", rmq_errname(err));
	check_survivors(&model);
	cr_assert_eq(model.n, napps);
	su_batches_free(&model);
}

/*
 * The next segment cannot be created (ENOSPC): the log is full; the appends
 * that need the roll are refused with -ENOSPC, and the roll is tried again
 * (not at every append: every RMQ_LOG_FULL_RETRY_MS); when space returns
 * the roll happens and appends resume.
 */
Test(faults, full_disk_at_segment_creation)
{
	for (int m = 0; m < NMODES; m++) {
		struct su_batches model = {0};
		next_mode((enum mode)m);
		struct rmq_io_fault_rule r = {.kind = RMQ_IO_FAULT_CREATE, .res = -ENOSPC,
					      .every = 1, .path_suffix = ".log"};
		arm(&r, 1);
		uint64_t seq = 0, rolls = rmq_log_stats(env.log)->rolls;
		int rc = append_until_roll_or_error(&seq);
		cr_assert_eq(rc, -ENOSPC, "%s: %s", mode_name[m], rmq_errname(rc));
		cr_assert(rmq_log_disk_full(env.log));
		uint32_t tries = fired(0);
		/* Appends in the same 100 ms do not try again. */
		for (int k = 0; k < 10; k++) {
			cr_assert_eq(drv_append(seq - 1), -ENOSPC);
			su_clock_ms -= 10; /* drv_append's step */
		}
		cr_assert_eq(fired(0), tries, "%s: a creation per refused append", mode_name[m]);
		check_readable();
		cr_assert_geq(rmq_log_retain(env.log), 0, "retention goes on");
		rmq_io_fault_disarm(env.io);
		/* Batches that fit the old segment go in without a roll; the
		 * first that does not is refused until the roll is tried
		 * again (100 ms of the log's clock later). */
		for (int k = 0; k < 30; k++)
			append_through_enospc(&seq);
		drv_wait();
		cr_assert_gt(rmq_log_stats(env.log)->rolls, rolls, "%s", mode_name[m]);
		cr_assert_not(rmq_log_disk_full(env.log));
		int err;
		cr_assert_eq(drv_model(&model, &err), 0, "%s: %s", mode_name[m], rmq_errname(err));
		check_survivors(&model);
		cr_assert_eq(model.n, napps);
		su_batches_free(&model);
	}
}

/*
 * A data write fails with ENOSPC (nothing was reserved: prealloc none): the
 * write is parked, its appends are neither acknowledged nor failed, new
 * appends are refused with -ENOSPC; when space returns the write goes
 * again and every append is acknowledged.
 */
Test(faults, full_disk_at_a_write)
{
	for (int m = 0; m < NMODES; m++) {
		struct su_batches model = {0};
		next_mode((enum mode)m);
		(void)su_close(&env);
		env.cfg.prealloc = RMQ_PREALLOC_NONE;
		open_log(&env);
		su_wait_idle(&env);
		uint64_t seq = drv_append_n(0, 10);
		drv_wait();
		struct rmq_io_fault_rule r = {.kind = RMQ_IO_FAULT_WRITE, .res = -ENOSPC,
					      .every = 1, .path_suffix = ".log",
					      .opcodes = (1ULL << IORING_OP_WRITE) |
							 (1ULL << IORING_OP_WRITE_FIXED)};
		arm(&r, 1);
		size_t first = napps;
		cr_assert_eq(drv_append(seq++), 0);
		rmq_log_flush(env.log);
		for (int k = 0; k < 20; k++)
			cr_assert_geq(rmq_io_wait(env.io, 20ULL * 1000 * 1000), 0);
		cr_assert_gt(fired(0), 0, "%s", mode_name[m]);
		cr_assert(rmq_log_disk_full(env.log));
		cr_assert_not(apps[first].done, "%s: a parked append completed", mode_name[m]);
		cr_assert_eq(drv_append(seq), -ENOSPC, "%s", mode_name[m]);
		check_readable();
		rmq_io_fault_disarm(env.io);
		append_through_enospc(&seq);
		drv_append_n(seq, 20);
		drv_wait();
		cr_assert_eq(apps[first].res, 0, "%s: %s", mode_name[m], rmq_errname(apps[first].res));
		int err;
		cr_assert_eq(drv_model(&model, &err), 0, "%s: %s", mode_name[m], rmq_errname(err));
		check_survivors(&model);
		cr_assert_eq(model.n, napps);
		su_batches_free(&model);
	}
}

/* Retention that deletes a segment while the log is full tries again at
 * once: appends resume without waiting out the retry interval. */
Test(faults, full_disk_retention_retries_at_once)
{
	struct su_batches model = {0};
	next_mode(DIRECT_DSYNC);
	uint64_t seq = 0;
	for (int i = 0; i < 3; i++)
		seq = drv_until_roll(seq);
	struct rmq_io_fault_rule r = {.kind = RMQ_IO_FAULT_CREATE, .res = -ENOSPC, .every = 1,
				      .path_suffix = ".log"};
	arm(&r, 1);
	cr_assert_eq(append_until_roll_or_error(&seq), -ENOSPC);
	cr_assert(rmq_log_disk_full(env.log));
	/* Retention frees the oldest segment (and with it the space). */
	rmq_io_fault_disarm(env.io);
	rmq_log_set_limits(env.log, env.cfg.segment_bytes, 0, 1, -1);
	cr_assert_gt(rmq_log_retain(env.log), 0);
	/* Same clock: no retry interval has passed. */
	cr_assert_eq(drv_append(seq - 1), 0, "appends did not resume after retention");
	drv_wait();
	cr_assert_not(rmq_log_disk_full(env.log));
	int err;
	(void)drv_model(&model, &err);
	su_batches_free(&model);
}
