/* SPDX-License-Identifier: Apache-2.0 */
/*
 * test_log_fullfs.c - the partition log (src/storage/log*.c) on a real full
 * disk: a 64 MiB ext4 image, loop-mounted in a temp directory, filled to
 * the last block (issue 14 item 12, the storage half).  The fault layer's
 * tests (test_log_faults.c) inject ENOSPC; this one lets ext4 report it.
 *
 * It needs mkfs.ext4 and permission to mount (root, or a container that
 * allows loop devices); without them it is skipped with the reason.
 * Everything it made is unmounted and removed at the end, failed or not.
 */
#include "storage/log.h"

#include "core/error.h"
#include "core/io.h"
#include "storage_util.h"

#include <criterion/criterion.h>
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/statvfs.h>
#include <unistd.h>

#define IMAGE_BYTES (64ULL << 20)
#define VMAX 6000
#define MAX_APPENDS 4096

static struct su_env env;
static char root[64], image[128], mnt[128], logdir[160], filler[160];
static bool mounted;

static int sh(const char *fmt, const char *a, const char *b)
{
	char cmd[512];
	snprintf(cmd, sizeof(cmd), fmt, a, b);
	return system(cmd);
}

static void setup(void)
{
	su_env_init(&env);
	snprintf(root, sizeof(root), "/tmp/rmq-fullfs-XXXXXX");
	cr_assert_not_null(mkdtemp(root));
	snprintf(image, sizeof(image), "%s/fs.img", root);
	snprintf(mnt, sizeof(mnt), "%s/mnt", root);
	snprintf(logdir, sizeof(logdir), "%s/log", mnt);
	snprintf(filler, sizeof(filler), "%s/filler", mnt);
	cr_assert_eq(mkdir(mnt, 0755), 0);
	int fd = open(image, O_RDWR | O_CREAT | O_EXCL, 0644);
	cr_assert_geq(fd, 0);
	cr_assert_eq(ftruncate(fd, (off_t)IMAGE_BYTES), 0);
	close(fd);
	if (sh("mkfs.ext4 -q -F -m 0 -b 4096 '%s' >/dev/null 2>&1%s", image, "") != 0)
		cr_skip_test("mkfs.ext4 is not available");
	if (sh("mount -o loop '%s' '%s' >/dev/null 2>&1", image, mnt) != 0)
		cr_skip_test("mounting a loop device is not permitted here");
	mounted = true;
}

static void teardown(void)
{
	if (env.log) {
		(void)rmq_log_close(env.log);
		env.log = NULL;
	}
	if (mounted && sh("umount '%s'%s", mnt, "") != 0)
		(void)sh("umount -l '%s'%s", mnt, "");
	mounted = false;
	if (root[0])
		su_rm_rf(root);
	root[0] = '\0';
	su_env_fini(&env);
}

TestSuite(fullfs, .init = setup, .fini = teardown, .timeout = 120);

static struct su_append apps[MAX_APPENDS];
static size_t napps;
static struct su_batches model; /* everything appended, in order */

/* Appends batch seq: returns rmq_log_append's result (after RMQ_EFULL
 * retries); tracked and modelled on 0. */
static int append(uint64_t seq)
{
	struct rmq_batch_hdr h;
	cr_assert_lt(napps, MAX_APPENDS);
	su_clock_ms += 10;
	size_t len = su_gen_batch(seq, VMAX, &h);
	struct su_append *a = &apps[napps];
	memset(a, 0, sizeof(*a));
	a->a.hdr = h;
	int rc = su_append_async(&env, a, su_recs_buf, len);
	if (rc == 0) {
		napps++;
		su_model_push(&model, &a->a.hdr, len);
	}
	return rc;
}

static void wait_all(void)
{
	int stalls = 0;
	for (;;) {
		size_t left = 0;
		for (size_t i = 0; i < napps; i++)
			left += !apps[i].done;
		if (!left)
			return;
		rmq_log_flush(env.log);
		su_wait_once(&env, &stalls, "appends never completed");
	}
}

/* Every append made so far reads back, as acknowledged. */
static void check_all(void)
{
	struct su_batches got = {0};
	for (size_t i = 0; i < napps; i++)
		cr_assert(apps[i].done && apps[i].res == 0, "append %zu: %s", i,
			  rmq_errname(apps[i].res));
	cr_assert_eq(su_collect(env.log, rmq_log_start_offset(env.log), 1 << 20, &got), 0);
	su_assert_same(&got, &model, true);
	su_batches_free(&got);
}

/*
 * The disk fills up under appends: the log refuses them with -ENOSPC and
 * says it is full, but it has not failed (reads work, nothing acknowledged
 * is lost); once a file is deleted, appends resume by themselves, and
 * everything reads back after a reopen.
 */
Test(fullfs, appends_stop_and_resume)
{
	env.cfg.segment_bytes = 2 << 20;
	env.cfg.fsync = RMQ_FSYNC_ALWAYS;
	env.cfg.prealloc = RMQ_PREALLOC_FALLOCATE;
	env.cfg.write_buffer_bytes = 1 << 20;
	env.cfg.recycle_segments = false;
	int rc = rmq_log_open(env.io, logdir, &env.cfg, &env.log);
	cr_assert_eq(rc, 0, "open: %s", rmq_errname(rc));
	/* Leave about 6 MiB free: a few segments' worth. */
	struct statvfs sv;
	cr_assert_eq(statvfs(mnt, &sv), 0);
	uint64_t free_bytes = (uint64_t)sv.f_bavail * sv.f_frsize;
	cr_assert_gt(free_bytes, 12ULL << 20);
	int fd = open(filler, O_RDWR | O_CREAT, 0644);
	cr_assert_geq(fd, 0);
	cr_assert_eq(fallocate(fd, 0, 0, (off_t)(free_bytes - (6ULL << 20))), 0);
	close(fd);

	uint64_t seq = 0;
	for (int k = 0; k < MAX_APPENDS - 100 && rc == 0; k++) {
		rc = append(seq++);
		if (k % 4 == 3)
			wait_all();
	}
	cr_assert_eq(rc, -ENOSPC, "the disk never filled: %s", rmq_errname(rc));
	cr_assert(rmq_log_disk_full(env.log));
	wait_all();
	check_all();
	/* Still full: refused again, not failed. */
	for (int k = 0; k < 3; k++) {
		su_clock_ms += 200;
		rmq_log_flush(env.log);
		cr_assert_geq(rmq_io_wait(env.io, 20ULL * 1000 * 1000), 0);
		rc = append(seq);
		cr_assert(rc == -ENOSPC || rc == 0, "%s", rmq_errname(rc));
		if (rc == 0)
			seq++;
	}
	wait_all();
	check_all();

	/* Space returns. */
	cr_assert_eq(unlink(filler), 0);
	size_t before = napps;
	for (int k = 0; k < 500 && napps < before + 40; k++) {
		rc = append(seq);
		cr_assert(rc == 0 || rc == -ENOSPC, "%s", rmq_errname(rc));
		if (rc == 0)
			seq++;
		su_clock_ms += 50;
		rmq_log_flush(env.log);
		cr_assert_geq(rmq_io_wait(env.io, 5ULL * 1000 * 1000), 0);
	}
	cr_assert_geq(napps, before + 40, "appends did not resume");
	wait_all();
	cr_assert_not(rmq_log_disk_full(env.log));
	check_all();
	cr_assert_eq(rmq_log_close(env.log), 0);
	env.log = NULL;
	rc = rmq_log_open(env.io, logdir, &env.cfg, &env.log);
	cr_assert_eq(rc, 0, "reopen: %s", rmq_errname(rc));
	check_all();
	su_batches_free(&model);
}

/*
 * A new log on a disk with no block left: opening it makes nothing, so it
 * opens; making its directory and files then fails with ENOSPC, and appends
 * are refused with -ENOSPC (full, not failed) until space returns, when the
 * log makes them by itself (no append needed) and takes appends; everything
 * reads back after a reopen.
 */
Test(fullfs, new_log_on_a_full_disk)
{
	env.cfg.segment_bytes = 2 << 20;
	env.cfg.fsync = RMQ_FSYNC_ALWAYS;
	env.cfg.prealloc = RMQ_PREALLOC_FALLOCATE;
	env.cfg.write_buffer_bytes = 1 << 20;
	struct statvfs sv;
	cr_assert_eq(statvfs(mnt, &sv), 0);
	int fd = open(filler, O_RDWR | O_CREAT, 0644);
	cr_assert_geq(fd, 0);
	/* Every block (fallocate stops short of the last few: fill them). */
	(void)fallocate(fd, 0, 0, (off_t)((uint64_t)sv.f_bavail * sv.f_frsize));
	static uint8_t block[4096];
	while (write(fd, block, sizeof(block)) > 0)
		;
	close(fd);
	int rc = rmq_log_open(env.io, logdir, &env.cfg, &env.log);
	cr_assert_eq(rc, 0, "open: %s", rmq_errname(rc));
	uint64_t seq = 0;
	rc = append(seq);
	cr_assert_eq(rc, -ENOSPC, "%s", rmq_errname(rc));
	cr_assert(rmq_log_disk_full(env.log));
	cr_assert_eq(access(logdir, F_OK), -1, "a directory was made on a full disk");
	/* Still full: refused again, not failed. */
	for (int k = 0; k < 3; k++) {
		su_clock_ms += 200;
		rmq_log_flush(env.log);
		cr_assert_geq(rmq_io_wait(env.io, 20ULL * 1000 * 1000), 0);
		rc = append(seq);
		cr_assert_eq(rc, -ENOSPC, "%s", rmq_errname(rc));
	}
	/* Space returns: the retention timer's rmq_log_retain() (the broker
	 * runs it every --retention-check) makes the files without waiting
	 * for an append, so a partition nobody writes to leaves the full
	 * state too. */
	cr_assert_eq(unlink(filler), 0);
	for (int k = 0; k < 100 && rmq_log_disk_full(env.log); k++) {
		su_clock_ms += 200;
		cr_assert_geq(rmq_log_retain(env.log), 0);
		cr_assert_geq(rmq_io_wait(env.io, 20ULL * 1000 * 1000), 0);
	}
	cr_assert_not(rmq_log_disk_full(env.log), "still full after space returned");
	cr_assert_eq(access(logdir, F_OK), 0, "no directory made once space returned");
	for (int k = 0; k < 500 && napps < 20; k++) {
		rc = append(seq);
		cr_assert(rc == 0 || rc == -ENOSPC, "%s", rmq_errname(rc));
		if (rc == 0)
			seq++;
		su_clock_ms += 50;
		rmq_log_flush(env.log);
		cr_assert_geq(rmq_io_wait(env.io, 5ULL * 1000 * 1000), 0);
	}
	cr_assert_eq(napps, 20, "appends did not resume");
	wait_all();
	cr_assert_not(rmq_log_disk_full(env.log));
	check_all();
	cr_assert_eq(rmq_log_close(env.log), 0);
	env.log = NULL;
	rc = rmq_log_open(env.io, logdir, &env.cfg, &env.log);
	cr_assert_eq(rc, 0, "reopen: %s", rmq_errname(rc));
	check_all();
	su_batches_free(&model);
}
