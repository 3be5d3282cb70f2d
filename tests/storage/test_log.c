/* SPDX-License-Identifier: Apache-2.0 */
/*
 * test_log.c - tests of the partition log (src/storage/log.c, with
 * segment.c and batch.c under it), driven through the real io_uring ring.
 *
 * Every test appends a deterministic sequence of batches (su_gen_batch(): the
 * seed picks record count, key/value bytes and header fields) while keeping
 * a model of what it appended, then reads everything back and compares it
 * byte for byte.  Segments are 64 KiB so that a few hundred batches roll
 * a dozen times.  Time comes from a fake clock (cfg.now_ms) that the test
 * advances per batch; nothing sleeps or measures time.
 */
#include "storage/log.h"

#include "core/crc32c.h"
#include "core/error.h"
#include "core/pbwire.h"
#include "storage_util.h"

#include <criterion/criterion.h>
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/stat.h>
#include <unistd.h>

#define MAX_SEGS 256
/* Largest record value: batches average ~2.5 KiB, a 64 KiB segment holds
 * a couple of dozen. */
#define VMAX 2000

static struct su_env env;

static void setup(void)
{
	su_env_init(&env);
}

static void teardown(void)
{
	su_env_fini(&env);
}

TestSuite(log, .init = setup, .fini = teardown, .timeout = 120);

static void open_log(struct su_env *e)
{
	int rc = su_open(e);
	cr_assert_eq(rc, 0, "open: %s", rmq_errname(rc));
}

/* The base offsets of the segments on disk, oldest first. */
static size_t segments(struct su_env *e, uint64_t *bases)
{
	size_t n = su_list_segments(e->dir, bases, MAX_SEGS);
	cr_assert_leq(n, MAX_SEGS);
	return n;
}

/* ---- round trips ----------------------------------------------------------- */

Test(log, empty_log)
{
	open_log(&env);
	cr_assert_eq(rmq_log_high_watermark(env.log), 0);
	cr_assert_eq(rmq_log_end_offset(env.log), 0);
	cr_assert_eq(rmq_log_start_offset(env.log), 0);
	/* Idle once the new directory entry is synced (on the ring). */
	su_wait_idle(&env);
	cr_assert(rmq_log_idle(env.log));
	struct rmq_log_read r;
	cr_assert_eq(rmq_log_read(env.log, 0, 1000, &r), 0);
	cr_assert_eq(r.nslices, 0);
	cr_assert_eq(rmq_log_read(env.log, 1, 1000, &r), RMQ_ERANGE);
	uint64_t off;
	cr_assert_eq(rmq_log_offset_for_time(env.log, 0, &off), RMQ_ENOTFOUND);
	su_reopen(&env);
	cr_assert_eq(rmq_log_end_offset(env.log), 0);
}

/* Descriptors this process holds on files of dir whose names end in
 * suffix. */
static size_t open_files_ending(const char *dir, const char *suffix)
{
	DIR *d = opendir("/proc/self/fd");
	size_t n = 0, dl = strlen(dir), sl = strlen(suffix);
	cr_assert(d);
	for (struct dirent *e; (e = readdir(d));) {
		char link[300], target[4096];
		snprintf(link, sizeof(link), "/proc/self/fd/%s", e->d_name);
		ssize_t len = readlink(link, target, sizeof(target) - 1);
		if (len <= 0)
			continue;
		target[len] = '\0';
		n += (size_t)len > dl + sl && strncmp(target, dir, dl) == 0 &&
		     strcmp(target + len - sl, suffix) == 0;
	}
	closedir(d);
	return n;
}

Test(log, roundtrip_across_many_rolls)
{
	struct su_batches model = {0};
	open_log(&env);
	su_append_seq(&env, 0, 150, VMAX, false, 10, &model);
	su_append_seq(&env, 150, 350, VMAX, true, 10, &model);
	const struct rmq_log_stats *st = rmq_log_stats(env.log);
	cr_assert_geq(st->rolls, 10, "only %" PRIu64 " rolls", st->rolls);
	cr_assert_eq(st->appends, 500);
	uint64_t bases[MAX_SEGS];
	cr_assert_eq(segments(&env, bases), st->rolls + 1);
	su_check_content(&env, &model, 0);
	/* Index files are used through their mappings: no segment holds
	 * their descriptors, here and after a reopen (recovery). */
	char real[4096];
	cr_assert(realpath(env.dir, real));
	cr_assert_eq(open_files_ending(real, ".index"), 0);
	cr_assert_eq(open_files_ending(real, ".timeindex"), 0);
	su_reopen(&env);
	cr_assert_eq(open_files_ending(real, ".index"), 0, "after recovery");
	cr_assert_eq(open_files_ending(real, ".timeindex"), 0, "after recovery");
	su_check_content(&env, &model, 0);
	/* Every sealed segment's data file is cut to its data. */
	struct su_batches got = {0};
	cr_assert_eq(su_collect(env.log, 0, 1 << 20, &got), 0);
	size_t nseg = segments(&env, bases);
	for (size_t s = 0; s + 1 < nseg; s++) {
		uint64_t bytes = 0;
		for (size_t i = 0; i < got.n; i++) {
			uint64_t b = got.v[i].hdr.base_offset;
			if (b >= bases[s] && b < bases[s + 1])
				bytes += got.v[i].entry_len;
		}
		char p[128];
		cr_assert_eq(su_file_size(su_seg_file(p, sizeof(p), env.dir, bases[s], ".log")),
			     (long long)bytes, "segment %" PRIu64, bases[s]);
		cr_assert_leq(bytes, env.cfg.segment_bytes);
	}
	su_batches_free(&got);
	su_batches_free(&model);
}

/* A write buffer barely twice the largest entry, two writes in flight: the
 * buffer wraps constantly and appends meet RMQ_EFULL. */
Test(log, roundtrip_small_write_buffer_wraps)
{
	struct su_batches model = {0};
	env.cfg.write_buffer_bytes = 16 << 10;
	env.cfg.max_inflight_writes = 2;
	env.cfg.fsync = RMQ_FSYNC_ALWAYS;
	open_log(&env);
	su_append_seq(&env, 1000, 300, 900, true, 1, &model);
	su_check_content(&env, &model, 0);
	su_reopen(&env);
	su_check_content(&env, &model, 0);
	su_batches_free(&model);
}

Test(log, close_and_reopen_is_identical)
{
	struct su_batches model = {0};
	open_log(&env);
	su_append_seq(&env, 0, 300, VMAX, true, 10, &model);
	uint64_t hw = rmq_log_high_watermark(env.log), end = rmq_log_end_offset(env.log);
	uint64_t start = rmq_log_start_offset(env.log), size = rmq_log_size_bytes(env.log);
	uint64_t times[32], offs[32];
	for (int i = 0; i < 32; i++) {
		times[i] = model.v[(size_t)i * 9].hdr.max_timestamp_ms + (uint64_t)(i % 3) - 1;
		cr_assert_eq(rmq_log_offset_for_time(env.log, (int64_t)times[i], &offs[i]), 0);
	}
	for (int k = 0; k < 2; k++) {
		su_reopen(&env);
		cr_assert_eq(rmq_log_high_watermark(env.log), hw);
		cr_assert_eq(rmq_log_end_offset(env.log), end);
		cr_assert_eq(rmq_log_start_offset(env.log), start);
		cr_assert_eq(rmq_log_size_bytes(env.log), size);
		su_check_content(&env, &model, 0);
		for (int i = 0; i < 32; i++) {
			uint64_t off;
			cr_assert_eq(rmq_log_offset_for_time(env.log, (int64_t)times[i], &off), 0);
			cr_assert_eq(off, offs[i], "time %" PRIu64 " after reopen", times[i]);
		}
	}
	/* Appends continue where the log ended. */
	su_append_seq(&env, 300, 20, VMAX, false, 10, &model);
	su_reopen(&env);
	su_check_content(&env, &model, 0);
	su_batches_free(&model);
}

/* ---- lookups ------------------------------------------------------------- */

Test(log, index_lookups_at_every_boundary)
{
	struct su_batches model = {0};
	env.cfg.index_interval_bytes = 2048;
	open_log(&env);
	su_append_seq(&env, 0, 400, VMAX, true, 10, &model);
	for (size_t i = 0; i < model.n; i++) {
		const struct rmq_batch_hdr *h = &model.v[i].hdr;
		su_check_read_one(&env, &model, h->base_offset);
		su_check_read_one(&env, &model, rmq_batch_last_offset(h));
		if (h->record_count > 2)
			su_check_read_one(&env, &model, h->base_offset + h->record_count / 2);
	}
	uint64_t bases[MAX_SEGS];
	size_t nseg = segments(&env, bases);
	cr_assert_geq(nseg, 5);
	for (size_t s = 0; s < nseg; s++) {
		su_check_read_one(&env, &model, bases[s]);
		if (bases[s] > 0)
			su_check_read_one(&env, &model, bases[s] - 1);
	}
	uint64_t hw = rmq_log_high_watermark(env.log);
	su_check_read_one(&env, &model, hw - 1);
	struct rmq_log_read r;
	cr_assert_eq(rmq_log_read(env.log, hw, 1 << 20, &r), 0);
	cr_assert_eq(r.nslices, 0);
	cr_assert_eq(r.bytes, 0);
	cr_assert_eq(r.high_watermark, hw);
	cr_assert_eq(rmq_log_read(env.log, hw + 1, 1 << 20, &r), RMQ_ERANGE);
	cr_assert_eq(r.high_watermark, hw);
	cr_assert_eq(rmq_log_read(env.log, UINT64_MAX, 1 << 20, &r), RMQ_ERANGE);

	/* Below the log start once retention moved it. */
	su_close(&env);
	env.cfg.retention_bytes = 0;
	open_log(&env);
	cr_assert_eq(rmq_log_retain(env.log), (int)nseg - 1);
	uint64_t start = rmq_log_start_offset(env.log);
	cr_assert_eq(start, bases[nseg - 1]);
	cr_assert_eq(rmq_log_read(env.log, start - 1, 1 << 20, &r), RMQ_ERANGE);
	cr_assert_eq(r.log_start_offset, start);
	cr_assert_eq(rmq_log_read(env.log, 0, 1 << 20, &r), RMQ_ERANGE);
	su_check_read_one(&env, &model, start);
	su_batches_free(&model);
}

Test(log, max_bytes_whole_batches_at_least_one)
{
	struct su_batches model = {0}, got = {0};
	open_log(&env);
	su_append_seq(&env, 0, 200, VMAX, true, 10, &model);
	cr_assert_eq(su_collect(env.log, 0, 1 << 30, &got), 0);
	uint64_t bases[MAX_SEGS];
	size_t nseg = segments(&env, bases);

	uint32_t longest = 0;
	for (size_t i = 0; i < got.n; i++)
		if (got.v[i].entry_len > longest)
			longest = got.v[i].entry_len;

	for (size_t i = 0; i < got.n; i += 7) {
		uint64_t off = got.v[i].hdr.base_offset;
		uint64_t sum = 0;
		for (size_t k = i; k < got.n && k < i + 12; k++) {
			sum += got.v[k].entry_len;
			/* Exactly the sum of k-i+1 batches, then one byte less. */
			for (int less = 0; less < 2; less++) {
				uint64_t max = sum - (uint64_t)less;
				struct rmq_log_read r;
				cr_assert_eq(rmq_log_read(env.log, off, max, &r), 0);
				size_t fit = k - i + 1 - (size_t)less; /* what would fit */
				uint64_t fit_bytes = 0;
				for (size_t j = i; j < i + fit; j++)
					fit_bytes += got.v[j].entry_len;
				/* Whole batches from off: find how many r holds. */
				size_t n = 0;
				uint64_t bytes = 0;
				while (bytes < r.bytes && i + n < got.n)
					bytes += got.v[i + n++].entry_len;
				cr_assert_eq(bytes, r.bytes, "off %" PRIu64 " max %" PRIu64 ": not whole batches",
					     off, max);
				cr_assert_geq(n, 1, "at least one batch, even if too big");
				cr_assert(n == 1 || r.bytes <= max, "over the budget");
				/* The read stops at an index entry where it can (cold data
				 * is not touched), so it may come back short, but by less
				 * than an index interval plus a batch; slices never exceed
				 * RMQ_LOG_SLICES_MAX segments. */
				if (r.nslices < RMQ_LOG_SLICES_MAX && fit > 0)
					cr_assert_lt(fit_bytes - r.bytes,
						     (uint64_t)env.cfg.index_interval_bytes + longest,
						     "off %" PRIu64 " max %" PRIu64 ": %" PRIu64 " of %" PRIu64,
						     off, max, r.bytes, fit_bytes);
				cr_assert_eq(r.next_offset, got.v[i + n - 1].hdr.base_offset +
								    got.v[i + n - 1].hdr.record_count);
				cr_assert_leq(r.nslices, RMQ_LOG_SLICES_MAX);
				rmq_log_read_done(env.log, &r);
			}
		}
	}
	/* max_bytes 0 still returns one batch. */
	struct rmq_log_read r;
	cr_assert_eq(rmq_log_read(env.log, 0, 0, &r), 0);
	cr_assert_eq(r.bytes, got.v[0].entry_len);
	rmq_log_read_done(env.log, &r);
	/* A huge max_bytes crosses segments, up to RMQ_LOG_SLICES_MAX. */
	cr_assert_geq(nseg, RMQ_LOG_SLICES_MAX + 1);
	cr_assert_eq(rmq_log_read(env.log, 0, 1 << 30, &r), 0);
	cr_assert_eq(r.nslices, RMQ_LOG_SLICES_MAX);
	cr_assert_eq(r.next_offset, bases[RMQ_LOG_SLICES_MAX]);
	for (unsigned s = 0; s < r.nslices; s++)
		cr_assert_eq(r.slices[s].pos, 0, "slices after the first start their segment");
	rmq_log_read_done(env.log, &r);
	su_batches_free(&got);
	su_batches_free(&model);
}

/* Appended but not yet written: the HW does not move and reads stop at it. */
Test(log, reads_never_pass_the_high_watermark)
{
	struct su_batches model = {0};
	env.cfg.fsync = RMQ_FSYNC_ALWAYS;
	open_log(&env);
	su_append_seq(&env, 0, 40, 500, false, 10, &model);
	uint64_t hw = rmq_log_high_watermark(env.log);
	struct su_append apps[30];
	memset(apps, 0, sizeof(apps));
	for (int i = 0; i < 30; i++) {
		size_t rlen = su_gen_batch(100 + (uint64_t)i, 500, &apps[i].a.hdr);
		cr_assert_eq(su_append_async(&env, &apps[i], su_recs_buf, rlen), 0);
	}
	cr_assert_gt(rmq_log_end_offset(env.log), hw);
	cr_assert_eq(rmq_log_high_watermark(env.log), hw, "HW moved without I/O");
	struct su_batches got = {0};
	cr_assert_eq(su_collect(env.log, 0, 1 << 30, &got), 0);
	su_assert_same(&got, &model, true);
	struct rmq_log_read r;
	cr_assert_eq(rmq_log_read(env.log, hw, 1 << 20, &r), 0);
	cr_assert_eq(r.nslices, 0);
	cr_assert_eq(rmq_log_read(env.log, hw + 1, 1 << 20, &r), RMQ_ERANGE);
	su_drain(&env, apps, 30);
	cr_assert_eq(rmq_log_high_watermark(env.log), rmq_log_end_offset(env.log));
	su_batches_free(&got);
	su_batches_free(&model);
}

/* A read bounded below the log's high watermark (a partition's HW with
 * replication) ends there, at every batch boundary, in any segment. */
Test(log, reads_stop_at_a_limit)
{
	struct su_batches model = {0};
	open_log(&env);
	su_append_seq(&env, 0, 120, VMAX, true, 10, &model);
	for (size_t lim = 0; lim < model.n; lim += 7) {
		uint64_t limit = model.v[lim].hdr.base_offset;
		uint64_t off = rmq_log_start_offset(env.log);
		size_t at = 0;
		while (off < limit) {
			struct rmq_log_read r;
			cr_assert_eq(rmq_log_read_below(env.log, off, 9000, limit, &r), 0);
			cr_assert_gt(r.nslices, 0);
			cr_assert_leq(r.next_offset, limit, "read past the limit %" PRIu64, limit);
			for (unsigned i = 0; i < r.nslices; i++) {
				const uint8_t *q = r.slices[i].data, *end = q + r.slices[i].len;
				while (q < end) {
					struct rmq_batch_view v;
					int n = rmq_batch_parse(q, (size_t)(end - q), &v);
					cr_assert_gt(n, 0);
					cr_assert_eq(v.hdr.base_offset, model.v[at].hdr.base_offset);
					at++;
					q += n;
				}
			}
			off = r.next_offset;
			rmq_log_read_done(env.log, &r);
		}
		cr_assert_eq(at, lim, "limit %" PRIu64 ": every batch below it", limit);
		struct rmq_log_read r;
		cr_assert_eq(rmq_log_read_below(env.log, limit, 9000, limit, &r), 0);
		cr_assert_eq(r.nslices, 0, "nothing at the limit");
		cr_assert_eq(rmq_log_read_below(env.log, limit + 1, 9000, limit, &r), RMQ_ERANGE);
	}
	su_batches_free(&model);
}

Test(log, time_lookups)
{
	struct su_batches model = {0};
	env.cfg.index_interval_bytes = 4096;
	open_log(&env);
	su_append_seq(&env, 0, 300, VMAX, true, 10, &model);
	su_check_times(&env, &model);
	su_reopen(&env);
	su_check_times(&env, &model);
	su_batches_free(&model);
}

/* Many small batches per index interval, producer timestamps out of
 * order: at a reopen, an older segment's greatest timestamp may sit on a
 * batch between its last two index entries, which recovery does not read
 * again.  Reopening used to drop that maximum (time lookups then missed
 * the batch, and time retention could delete the segment early). */
Test(log, time_lookups_after_reopen_with_small_batches)
{
	struct su_batches model = {0};
	env.cfg.index_interval_bytes = 4096;
	open_log(&env);
	su_append_seq(&env, 0, 3000, 40, true, 10, &model);
	uint64_t b[MAX_SEGS];
	cr_assert_geq(segments(&env, b), 5);
	int64_t want = INT64_MIN, got;
	for (size_t i = 0; i < model.n; i++)
		if (model.v[i].hdr.max_timestamp_ms > want)
			want = model.v[i].hdr.max_timestamp_ms;
	su_check_times(&env, &model);
	su_reopen(&env);
	cr_assert_eq(rmq_log_max_timestamp(env.log, &got), 0);
	cr_assert_eq(got, want);
	su_check_times(&env, &model);
	su_batches_free(&model);
}

/* ---- retention ----------------------------------------------------------- */

/* Sizes of each segment's data, from the segment files of a log whose
 * sealed segments are cut to their data. */
static uint64_t seg_bytes(struct su_env *e, uint64_t base)
{
	char p[128];
	long long n = su_file_size(su_seg_file(p, sizeof(p), e->dir, base, ".log"));
	cr_assert_geq(n, 0);
	return (uint64_t)n;
}

Test(log, retention_by_size)
{
	struct su_batches model = {0};
	open_log(&env);
	su_append_seq(&env, 0, 400, VMAX, true, 10, &model);
	uint64_t bases[MAX_SEGS];
	size_t nseg = segments(&env, bases);
	cr_assert_geq(nseg, 8);
	uint64_t total = rmq_log_size_bytes(env.log);
	cr_assert_eq(rmq_log_retain(env.log), 0, "unlimited retention deletes nothing");

	/* Keep about half: Kafka's rule, delete the oldest while what remains
	 * without it is still at least retention.bytes. */
	int64_t keep = (int64_t)(total / 2);
	size_t want = 0;
	uint64_t left = total;
	while (want + 1 < nseg && left - seg_bytes(&env, bases[want]) >= (uint64_t)keep)
		left -= seg_bytes(&env, bases[want++]);
	cr_assert_gt(want, 0);
	su_close(&env);
	env.cfg.retention_bytes = keep;
	open_log(&env);
	cr_assert_eq(rmq_log_retain(env.log), (int)want);
	cr_assert_eq(rmq_log_start_offset(env.log), bases[want]);
	cr_assert_eq(rmq_log_size_bytes(env.log), left);
	cr_assert_eq(rmq_log_stats(env.log)->deleted_segments, want);
	for (size_t s = 0; s < want; s++) {
		char p[128];
		cr_assert_eq(su_file_size(su_seg_file(p, sizeof(p), env.dir, bases[s], ".log")), -1);
		cr_assert_eq(su_file_size(su_seg_file(p, sizeof(p), env.dir, bases[s], ".index")), -1);
		cr_assert_eq(su_file_size(su_seg_file(p, sizeof(p), env.dir, bases[s], ".timeindex")),
			     -1);
	}
	su_check_content(&env, &model, su_batch_of(&model, bases[want]));
	cr_assert_eq(rmq_log_retain(env.log), 0, "retention is idempotent");

	/* retention.bytes 0: everything but the active segment goes. */
	su_close(&env);
	env.cfg.retention_bytes = 0;
	open_log(&env);
	cr_assert_eq(rmq_log_retain(env.log), (int)(nseg - 1 - want));
	cr_assert_eq(rmq_log_start_offset(env.log), bases[nseg - 1]);
	cr_assert_eq(segments(&env, bases), 1);
	su_check_content(&env, &model, su_batch_of(&model, rmq_log_start_offset(env.log)));
	cr_assert_eq(rmq_log_retain(env.log), 0, "the active segment is never deleted");
	/* The log keeps working and reopens at the same start. */
	su_append_seq(&env, 400, 60, VMAX, false, 10, &model);
	cr_assert_geq(rmq_log_retain(env.log), 1);
	uint64_t start = rmq_log_start_offset(env.log);
	su_reopen(&env);
	cr_assert_eq(rmq_log_start_offset(env.log), start);
	su_check_content(&env, &model, su_batch_of(&model, start));
	su_batches_free(&model);
}

/* ---- recycling ------------------------------------------------------------ */

static ino_t inode_of(const char *path)
{
	struct stat st;
	cr_assert_eq(stat(path, &st), 0, "%s", path);
	return st.st_ino;
}

static bool exists(const char *path)
{
	return access(path, F_OK) == 0;
}

/* Retention keeps one deleted segment's data file as spare.log; the next
 * roll's segment is that file (same inode), marked B.recycled while it
 * holds old bytes; everything reads back, across a clean reopen (which
 * logs nothing and cuts the old bytes) and more rolls. */
static void recycle_roundtrip(enum rmq_fsync fsync, enum rmq_prealloc prealloc)
{
	struct su_batches model = {0};
	char p[128], spare[160];
	env.cfg.fsync = fsync;
	env.cfg.prealloc = prealloc;
	env.cfg.retention_bytes = 0; /* applied when the test calls retain */
	open_log(&env);
	su_append_seq(&env, 0, 300, VMAX, true, 10, &model);
	uint64_t bases[MAX_SEGS];
	size_t nseg = segments(&env, bases);
	cr_assert_geq(nseg, 6);
	ino_t first = inode_of(su_seg_file(p, sizeof(p), env.dir, bases[0], ".log"));
	snprintf(spare, sizeof(spare), "%s/%s", env.dir, RMQ_SEGMENT_SPARE);

	cr_assert_eq(rmq_log_retain(env.log), (int)nseg - 1);
	cr_assert(exists(spare), "no spare after retention");
	cr_assert_eq(inode_of(spare), first, "the spare is the oldest segment's file");
	cr_assert_not(exists(su_seg_file(p, sizeof(p), env.dir, bases[0], ".index")));
	cr_assert_not(exists(su_seg_file(p, sizeof(p), env.dir, bases[0], ".log")));
	for (size_t i = 1; i + 1 < nseg; i++)
		cr_assert_not(exists(su_seg_file(p, sizeof(p), env.dir, bases[i], ".log")));

	/* Appends until exactly one roll: the new segment is the spare. */
	uint64_t next = su_append_until_roll(&env, 300, VMAX, &model);
	cr_assert_eq(rmq_log_stats(env.log)->recycled_segments, 1);
	cr_assert_not(exists(spare));
	size_t n = segments(&env, bases);
	uint64_t active = bases[n - 1];
	cr_assert_eq(inode_of(su_seg_file(p, sizeof(p), env.dir, active, ".log")), first);
	cr_assert(exists(su_seg_file(p, sizeof(p), env.dir, active, ".recycled")));
	uint64_t start = rmq_log_start_offset(env.log);
	su_check_content(&env, &model, su_batch_of(&model, start));

	/* A clean close leaves the old bytes after the data: the reopen
	 * must find the end without calling it damage. */
	uint64_t end = rmq_log_end_offset(env.log);
	su_close(&env);
	int fd = su_capture_start();
	cr_assert_eq(su_open(&env), 0);
	char *out = su_capture_end(fd);
	cr_assert_null(strstr(out, "truncat"), "reopen reported damage:\n%s", out);
	cr_assert_null(strstr(out, "corrupt"), "reopen reported damage:\n%s", out);
	free(out);
	cr_assert_eq(rmq_log_stats(env.log)->truncated_bytes, 0);
	cr_assert_eq(rmq_log_end_offset(env.log), end);
	cr_assert_not(exists(su_seg_file(p, sizeof(p), env.dir, active, ".recycled")),
		      "recovery cut the old bytes; the marker should be gone");
	su_check_content(&env, &model, su_batch_of(&model, start));

	/* And the log goes on: more rolls, retention, recycling. */
	su_append_seq(&env, next, 150, VMAX, true, 10, &model);
	cr_assert_geq(rmq_log_retain(env.log), 1);
	su_append_seq(&env, next + 150, 150, VMAX, true, 10, &model);
	start = rmq_log_start_offset(env.log);
	su_check_content(&env, &model, su_batch_of(&model, start));
	cr_assert_geq(rmq_log_stats(env.log)->recycled_segments, 1);
	su_reopen(&env);
	su_check_content(&env, &model, su_batch_of(&model, start));
	su_batches_free(&model);
}

Test(log, recycle_direct_writes)
{
	recycle_roundtrip(RMQ_FSYNC_ALWAYS, RMQ_PREALLOC_FALLOCATE);
}

/* Through the page cache with zero-ahead, which a recycled file needs not. */
Test(log, recycle_page_cache_zero_ahead)
{
	env.cfg.direct_writes = false;
	recycle_roundtrip(RMQ_FSYNC_ALWAYS, RMQ_PREALLOC_ZERO);
}

Test(log, recycle_fsync_never)
{
	recycle_roundtrip(RMQ_FSYNC_NEVER, RMQ_PREALLOC_NONE);
}

/*
 * Lent pages (segment.h): the oldest segment's first bytes are spliced
 * into a pipe, as a server splicing a fetch answer does, and the read is
 * released while the pipe still holds the pages.  Retention must not
 * recycle that file (fsync=never rewrites a recycled file through the page
 * cache, in those very pages; without the rule the pipe read the new
 * segment's bytes): the pipe still reads what was written after the next
 * segments were written over the spare.  The next, unlent, segment is
 * the one recycled.
 */
Test(log, lent_pages_are_never_written_over)
{
	struct su_batches model = {0};
	char p[128], spare[160];
	env.cfg.fsync = RMQ_FSYNC_NEVER;
	env.cfg.prealloc = RMQ_PREALLOC_NONE;
	env.cfg.retention_bytes = 0;
	open_log(&env);
	su_append_seq(&env, 0, 300, VMAX, true, 10, &model);
	uint64_t bases[MAX_SEGS];
	size_t nseg = segments(&env, bases);
	cr_assert_geq(nseg, 6);
	ino_t first = inode_of(su_seg_file(p, sizeof(p), env.dir, bases[0], ".log"));
	ino_t second = inode_of(su_seg_file(p, sizeof(p), env.dir, bases[1], ".log"));
	snprintf(spare, sizeof(spare), "%s/%s", env.dir, RMQ_SEGMENT_SPARE);

	struct rmq_log_read r;
	cr_assert_eq(rmq_log_read(env.log, 0, 16384, &r), 0);
	cr_assert_eq(r.nslices, 1);
	uint32_t len = r.slices[0].len;
	uint8_t *want = malloc(len), *got = malloc(len);
	cr_assert(want && got);
	memcpy(want, r.slices[0].data, len);
	int pfd[2];
	cr_assert_eq(pipe(pfd), 0);
	cr_assert_geq(fcntl(pfd[1], F_SETPIPE_SZ, 1 << 20), (int)len);
	rmq_log_read_lend(&r);
	loff_t off = (loff_t)r.slices[0].pos;
	cr_assert_eq(splice(r.slices[0].fd, &off, pfd[1], NULL, len, 0), (ssize_t)len);
	rmq_log_read_done(env.log, &r);

	cr_assert_eq(rmq_log_retain(env.log), (int)nseg - 1);
	cr_assert(exists(spare), "no spare after retention");
	cr_assert_neq(inode_of(spare), first, "a file whose pages were lent was recycled");
	cr_assert_eq(inode_of(spare), second, "the next segment's file is the spare");
	/* Rolls until the spare is written over, and past it. */
	uint64_t next = su_append_until_roll(&env, 300, VMAX, &model);
	su_append_seq(&env, next, 150, VMAX, true, 10, &model);
	cr_assert_geq(rmq_log_stats(env.log)->recycled_segments, 1);
	cr_assert_eq(read(pfd[0], got, len), (ssize_t)len);
	cr_assert_eq(memcmp(got, want, len), 0, "the spliced pages changed under the pipe");
	su_check_content(&env, &model, su_batch_of(&model, rmq_log_start_offset(env.log)));
	close(pfd[0]);
	close(pfd[1]);
	free(want);
	free(got);
	su_batches_free(&model);
}

/* The latency histograms (cfg.metrics) count what the log did: an ack
 * sample per acknowledged append, a write sample per completed data write,
 * a sync sample per group-commit fdatasync, a roll sample per roll. */
static void metrics_count(bool direct, bool dsync)
{
	static struct rmq_log_metrics m;
	memset(&m, 0, sizeof(m));
	env.cfg.fsync = RMQ_FSYNC_ALWAYS;
	env.cfg.direct_writes = direct;
	env.cfg.dsync_writes = dsync;
	env.cfg.prealloc = RMQ_PREALLOC_FALLOCATE;
	env.cfg.metrics = &m;
	open_log(&env);
	su_append_seq(&env, 0, 150, VMAX, true, 10, NULL);
	su_append_seq(&env, 150, 50, VMAX, false, 10, NULL);
	su_wait_idle(&env);
	const struct rmq_log_stats *st = rmq_log_stats(env.log);
	cr_assert_eq(m.ack.count, st->appends, "%lu ack samples, %lu appends", m.ack.count,
		     st->appends);
	cr_assert_eq(m.write.count, st->writes, "%lu write samples, %lu writes", m.write.count,
		     st->writes);
	cr_assert_gt(st->rolls, 2);
	cr_assert_eq(m.roll.count, st->rolls);
	if (dsync && direct)
		cr_assert_eq(m.sync.count, 0, "RWF_DSYNC writes need no fdatasync");
	else
		cr_assert_gt(m.sync.count, 0, "group commit syncs");
	uint64_t n = 0;
	for (unsigned i = 0; i < RMQ_LAT_BUCKETS; i++)
		n += m.ack.n[i];
	cr_assert_eq(n, m.ack.count, "the buckets hold every sample");
	cr_assert_eq(su_close(&env), 0);
}

Test(log, metrics_count_direct_dsync)
{
	metrics_count(true, true);
}

Test(log, metrics_count_group_commit)
{
	metrics_count(false, false);
}

/* Group commit (write, then fdatasync): a roll seals the old segment while
 * its append still waits for the sync in flight.  Retention right then
 * (the broker runs it after every roll) must not delete that segment: it
 * closed the file under the sync (EBADF, log offline) or freed the segment
 * the sync's acknowledgement writes to (ASan: use after free). */
static void retain_after_roll(bool direct)
{
	static uint8_t value[10000], body[12 << 10];
	env.cfg.fsync = RMQ_FSYNC_ALWAYS;
	env.cfg.dsync_writes = false;
	env.cfg.direct_writes = direct;
	env.cfg.segment_bytes = 16 << 10;
	env.cfg.retention_ms = 1000;
	cr_assert_eq(su_open(&env), 0);
	memset(value, 'v', sizeof(value));
	struct su_record r = {"k", 1, value, sizeof(value)};
	size_t len = su_records(body, sizeof(body), &r, 1);
	cr_assert_gt(len, 0);
	struct su_append a[2];
	memset(a, 0, sizeof(a));
	for (int i = 0; i < 2; i++) {
		rmq_batch_hdr_init(&a[i].a.hdr);
		a[i].a.hdr.record_count = 1;
	}
	cr_assert_eq(su_append_async(&env, &a[0], body, len), 0);
	rmq_log_flush(env.log);
	/* The write completes and the sync is queued or in flight. */
	cr_assert_geq(rmq_io_wait(env.io, 1000000000ULL), 0);
	cr_assert_eq(su_append_async(&env, &a[1], body, len), 0);
	cr_assert_eq(rmq_log_stats(env.log)->rolls, 1, "the second append should roll");
	su_clock_ms += 3600 * 1000; /* every segment is past retention.ms */
	int deleted = rmq_log_retain(env.log);
	cr_assert_geq(deleted, 0);
	su_wait_idle(&env);
	for (int i = 0; i < 2; i++) {
		cr_assert(a[i].done, "append %d never completed", i);
		cr_assert_eq(a[i].res, 0, "append %d: %s", i, rmq_errname(a[i].res));
	}
	/* Once acknowledged, the old segment goes at the next retention. */
	cr_assert_eq(rmq_log_retain(env.log) + deleted, 1);
	cr_assert_eq(rmq_log_start_offset(env.log), 1);
}

Test(log, retain_after_roll_waits_for_the_group_commit)
{
	retain_after_roll(true);
}

Test(log, retain_after_roll_waits_for_the_group_commit_page_cache)
{
	retain_after_roll(false);
}

/* Truncation removes segments above a cut: their offsets come back, so
 * their bytes must never be reused (they would read as valid data). */
Test(log, truncation_does_not_recycle)
{
	struct su_batches model = {0};
	char spare[160], p[160];
	env.cfg.fsync = RMQ_FSYNC_ALWAYS;
	env.cfg.retention_bytes = 0; /* applied when the test calls retain */
	open_log(&env);
	su_append_seq(&env, 0, 200, VMAX, true, 10, &model);
	/* Retention keeps one old segment as the spare, the next roll takes
	 * it: the active segment is recycled (marker present). */
	cr_assert_geq(rmq_log_retain(env.log), 1);
	su_append_until_roll(&env, 200, VMAX, &model);
	cr_assert_eq(rmq_log_stats(env.log)->recycled_segments, 1);
	uint64_t bases[MAX_SEGS];
	size_t nseg = segments(&env, bases);
	cr_assert_eq(nseg, 2);
	cr_assert(exists(su_seg_file(p, sizeof(p), env.dir, bases[1], ".recycled")));

	/* A cut into the older segment drops the recycled one. */
	cr_assert_eq(rmq_log_truncate(env.log, bases[0] + 1), 0);
	snprintf(spare, sizeof(spare), "%s/%s", env.dir, RMQ_SEGMENT_SPARE);
	cr_assert_not(exists(spare), "a truncated segment became the spare");
	cr_assert_not(exists(su_seg_file(p, sizeof(p), env.dir, bases[1], ".recycled")),
		      "the dropped segment's marker was left behind");
	su_batches_free(&model);
}

/* A directory where the spare would be: ignored with a warning, segments
 * are deleted instead of kept, rolls create new files, nothing fails. */
Test(log, spare_name_taken_by_a_directory)
{
	struct su_batches model = {0};
	char spare[160];
	snprintf(spare, sizeof(spare), "%s/%s", env.dir, RMQ_SEGMENT_SPARE);
	cr_assert_eq(mkdir(spare, 0755), 0);
	env.cfg.fsync = RMQ_FSYNC_ALWAYS;
	env.cfg.retention_bytes = 0;
	int fd = su_capture_start();
	cr_assert_eq(su_open(&env), 0);
	char *out = su_capture_end(fd);
	cr_assert_not_null(strstr(out, "not a regular file"), "no warning:\n%s", out);
	free(out);
	su_append_seq(&env, 0, 150, VMAX, true, 10, &model);
	cr_assert_geq(rmq_log_retain(env.log), 1);
	su_append_seq(&env, 150, 150, VMAX, true, 10, &model);
	cr_assert_geq(rmq_log_stats(env.log)->rolls, 2);
	cr_assert_eq(rmq_log_stats(env.log)->recycled_segments, 0);
	struct stat st;
	cr_assert_eq(stat(spare, &st), 0);
	cr_assert(S_ISDIR(st.st_mode), "the directory was replaced");
	su_check_content(&env, &model, su_batch_of(&model, rmq_log_start_offset(env.log)));
	su_batches_free(&model);
}

static size_t count_deleted(const char *dir)
{
	char cmd[256];
	snprintf(cmd, sizeof(cmd), "ls -A %s | grep -c '^\\.deleted-'", dir);
	FILE *f = popen(cmd, "r");
	cr_assert_not_null(f);
	size_t n = 0;
	cr_assert_eq(fscanf(f, "%zu", &n), 1);
	pclose(f);
	return n;
}

/* Recycling off: retention deletes every file, no spare, no reuse.  The
 * deleted data files are unlinked by the ring (off the shard): none is
 * left once the log closed, and one a crash left behind goes at open. */
Test(log, recycle_off_deletes_off_the_shard)
{
	struct su_batches model = {0};
	char p[160], spare[160];
	env.cfg.recycle_segments = false;
	env.cfg.retention_bytes = 0;
	open_log(&env);
	su_append_seq(&env, 0, 200, VMAX, true, 10, &model);
	uint64_t bases[MAX_SEGS];
	size_t nseg = segments(&env, bases);
	cr_assert_eq(rmq_log_retain(env.log), (int)nseg - 1);
	for (size_t i = 0; i + 1 < nseg; i++)
		cr_assert_not(exists(su_seg_file(p, sizeof(p), env.dir, bases[i], ".log")));
	snprintf(spare, sizeof(spare), "%s/%s", env.dir, RMQ_SEGMENT_SPARE);
	cr_assert_not(exists(spare));
	su_append_seq(&env, 200, 100, VMAX, true, 10, &model);
	cr_assert_eq(rmq_log_stats(env.log)->recycled_segments, 0);
	cr_assert_eq(su_close(&env), 0);
	cr_assert_eq(count_deleted(env.dir), 0, "close left deleted files behind");

	snprintf(p, sizeof(p), "%s/.deleted-7.log", env.dir);
	FILE *f = fopen(p, "w");
	cr_assert_not_null(f);
	fputs("left by a crash", f);
	fclose(f);
	f = fopen(spare, "w"); /* kept by an earlier run that recycled */
	cr_assert_not_null(f);
	fclose(f);
	open_log(&env);
	cr_assert_not(exists(p), "open did not remove a leftover deleted file");
	cr_assert_not(exists(spare), "open kept a spare that recycling off will never use");
	su_check_content(&env, &model, su_batch_of(&model, rmq_log_start_offset(env.log)));
	su_batches_free(&model);
}

/* A roll whose new segment cannot be created (a directory holds its name)
 * keeps the old segment active and fails the one append that rolled with
 * the error; appends go on in the old segment, and the next roll, once
 * the name is free, works.  Nothing appended is lost. */
Test(log, failed_roll_keeps_the_old_segment)
{
	struct su_batches model = {0};
	char p[160];
	open_log(&env);
	uint64_t i = su_append_until_roll(&env, 0, VMAX, &model);
	uint64_t rolls = rmq_log_stats(env.log)->rolls;
	int rc = 0;
	/* Block the name of whatever segment the next append would create. */
	while (rc == 0) {
		cr_assert_lt(i, 1000, "never rolled");
		uint64_t end = rmq_log_end_offset(env.log);
		su_seg_file(p, sizeof(p), env.dir, end, ".log");
		cr_assert_eq(mkdir(p, 0755), 0);
		struct rmq_batch_hdr h;
		size_t len = su_gen_batch(i, VMAX, &h);
		rc = su_append(&env, &h, su_recs_buf, len);
		if (rc == 0) {
			su_model_push(&model, &h, len);
			i++;
			cr_assert_eq(rmdir(p), 0);
		}
	}
	cr_assert_eq(rc, RMQ_EEXIST, "the rolling append failed with %s", rmq_errname(rc));
	cr_assert_eq(rmq_log_stats(env.log)->rolls, rolls);
	su_check_content(&env, &model, 0);
	/* The old segment is whole again: a small batch still fits in it. */
	struct rmq_batch_hdr h;
	size_t len = su_gen_batch(i, 10, &h);
	cr_assert_eq(su_append(&env, &h, su_recs_buf, len), 0);
	su_model_push(&model, &h, len);
	cr_assert_eq(rmdir(p), 0);
	i = su_append_until_roll(&env, i + 1, VMAX, &model);
	cr_assert_eq(rmq_log_stats(env.log)->rolls, rolls + 1);
	su_append_seq(&env, i, 20, VMAX, true, 10, &model);
	su_check_content(&env, &model, 0);
	su_reopen(&env);
	su_check_content(&env, &model, 0);
	su_batches_free(&model);
}

Test(log, retention_by_time)
{
	struct su_batches model = {0};
	env.cfg.retention_ms = 60000;
	open_log(&env);
	/* Batches 1 s apart: a 64 KiB segment spans about half a minute. */
	su_append_seq(&env, 0, 300, VMAX, true, 1000, &model);
	uint64_t bases[MAX_SEGS];
	size_t nseg = segments(&env, bases);
	cr_assert_geq(nseg, 8);
	uint64_t end_ms = su_clock_ms;
	su_clock_ms = model.v[0].hdr.log_append_time_ms;
	cr_assert_eq(rmq_log_retain(env.log), 0, "nothing is older than a minute yet");
	su_clock_ms = end_ms;

	/* Per segment, its newest timestamp. */
	int64_t segmax[MAX_SEGS];
	for (size_t s = 0; s < nseg; s++)
		segmax[s] = -1;
	for (size_t i = 0, s = 0; i < model.n; i++) {
		while (s + 1 < nseg && model.v[i].hdr.base_offset >= bases[s + 1])
			s++;
		if (model.v[i].hdr.max_timestamp_ms > segmax[s])
			segmax[s] = model.v[i].hdr.max_timestamp_ms;
	}
	/* Move the clock so that the first few segments expire. */
	su_clock_ms = (uint64_t)segmax[3] + 60000 + 1;
	size_t want = 0;
	while (want + 1 < nseg && segmax[want] + 60000 < (int64_t)su_clock_ms)
		want++;
	cr_assert_geq(want, 1);
	cr_assert_lt(want, nseg - 1);
	cr_assert_eq(rmq_log_retain(env.log), (int)want);
	cr_assert_eq(rmq_log_start_offset(env.log), bases[want]);
	su_check_content(&env, &model, su_batch_of(&model, bases[want]));

	/* Far in the future: all but the active segment, which stays. */
	su_clock_ms += 10ULL * 24 * 3600 * 1000;
	cr_assert_eq(rmq_log_retain(env.log), (int)(nseg - 1 - want));
	cr_assert_eq(rmq_log_start_offset(env.log), bases[nseg - 1]);
	su_check_content(&env, &model, su_batch_of(&model, bases[nseg - 1]));
	su_batches_free(&model);
}

/* Slices handed to a reader stay valid after retention deletes their
 * segments, until rmq_log_read_done(). */
Test(log, pinned_slices_survive_retention)
{
	struct su_batches model = {0};
	env.cfg.retention_bytes = 0;
	open_log(&env);
	su_append_seq(&env, 0, 200, VMAX, true, 10, &model);
	uint64_t bases[MAX_SEGS];
	size_t nseg = segments(&env, bases);
	cr_assert_geq(nseg, RMQ_LOG_SLICES_MAX + 1);

	struct rmq_log_read r;
	cr_assert_eq(rmq_log_read(env.log, 0, 1 << 30, &r), 0);
	cr_assert_eq(r.nslices, RMQ_LOG_SLICES_MAX);
	cr_assert_eq(rmq_log_retain(env.log), (int)nseg - 1);
	char p[128];
	cr_assert_eq(su_file_size(su_seg_file(p, sizeof(p), env.dir, bases[0], ".log")), -1,
		     "retention removed the files of pinned segments from the directory");
	/* The pinned data is still there and still what was written. */
	size_t i = 0;
	for (unsigned s = 0; s < r.nslices; s++) {
		for (uint32_t pos = 0; pos < r.slices[s].len;) {
			struct rmq_batch_view v;
			int n = rmq_batch_parse(r.slices[s].data + pos, r.slices[s].len - pos, &v);
			cr_assert_gt(n, 0);
			cr_assert_eq(v.hdr.base_offset, model.v[i].hdr.base_offset);
			cr_assert_eq(memcmp(r.slices[s].data + pos + v.records_pos, model.v[i].records,
					    model.v[i].records_len),
				     0);
			pos += (uint32_t)n;
			i++;
		}
	}
	/* New reads below the new start are refused meanwhile. */
	struct rmq_log_read r2;
	cr_assert_eq(rmq_log_read(env.log, 0, 100, &r2), RMQ_ERANGE);
	rmq_log_read_done(env.log, &r);
	cr_assert_eq(r.nslices, 0);
	su_check_content(&env, &model, su_batch_of(&model, bases[nseg - 1]));
	su_reopen(&env);
	cr_assert_eq(rmq_log_start_offset(env.log), bases[nseg - 1]);
	su_batches_free(&model);
}

/* ---- segment.ms ------------------------------------------------------- */

/* Expected segment bases when rolls happen only by age: a batch starts a
 * new segment when its append time is segment_ms past the first append of
 * the current one. */
static size_t expected_age_rolls(const struct su_batches *m, uint64_t segment_ms, uint64_t *bases)
{
	size_t n = 0;
	uint64_t created = 0;
	for (size_t i = 0; i < m->n; i++) {
		uint64_t t = m->v[i].hdr.log_append_time_ms;
		if (i == 0 || t >= created + segment_ms) {
			bases[n++] = m->v[i].hdr.base_offset;
			created = t;
		}
	}
	return n;
}

Test(log, segment_ms_rolls_by_append_time)
{
	struct su_batches model = {0};
	env.cfg.segment_bytes = 8 << 20;
	env.cfg.segment_ms = 1000;
	open_log(&env);
	su_append_seq(&env, 0, 250, 100, false, 30, &model);
	uint64_t want[MAX_SEGS], got[MAX_SEGS];
	size_t nw = expected_age_rolls(&model, 1000, want);
	cr_assert_geq(nw, 5);
	cr_assert_eq(segments(&env, got), nw);
	for (size_t s = 0; s < nw; s++)
		cr_assert_eq(got[s], want[s], "segment %zu", s);

	/* retain() rolls an active segment that is old enough, once (the
	 * roll completes on the ring). */
	uint64_t end = rmq_log_end_offset(env.log);
	su_clock_ms += 5000;
	cr_assert_geq(rmq_log_retain(env.log), 0);
	su_wait_idle(&env);
	cr_assert_eq(segments(&env, got), nw + 1);
	cr_assert_eq(got[nw], end);
	cr_assert_geq(rmq_log_retain(env.log), 0);
	su_wait_idle(&env);
	cr_assert_eq(segments(&env, got), nw + 1, "an empty active segment does not roll");
	su_append_seq(&env, 250, 3, 100, false, 10, &model);
	cr_assert_eq(segments(&env, got), nw + 1);
	su_reopen(&env);
	su_check_content(&env, &model, 0);
	su_batches_free(&model);
}

/* segment.ms counts from the broker's append time, not from timestamps a
 * producer chose: old producer timestamps must not roll every batch. */
Test(log, segment_ms_ignores_producer_timestamps)
{
	struct su_batches model = {0};
	env.cfg.segment_bytes = 8 << 20;
	env.cfg.segment_ms = 1000;
	open_log(&env);
	for (int i = 0; i < 100; i++) {
		su_clock_ms += 30;
		struct rmq_batch_hdr h;
		size_t rlen = su_gen_batch((uint64_t)i, 100, &h);
		h.first_timestamp_ms = 5;  /* a replay of old data */
		h.max_timestamp_ms = 6 + i;
		cr_assert_eq(su_append(&env, &h, su_recs_buf, rlen), 0);
		su_model_push(&model, &h, rlen);
	}
	uint64_t want[MAX_SEGS], got[MAX_SEGS];
	size_t nw = expected_age_rolls(&model, 1000, want);
	cr_assert_eq(nw, 3);
	cr_assert_eq(segments(&env, got), nw, "rolled by producer timestamps");
	/* Reopened, the age still comes from the append time. */
	su_reopen(&env);
	for (int i = 0; i < 10; i++) {
		su_clock_ms += 30;
		struct rmq_batch_hdr h;
		size_t rlen = su_gen_batch(100 + (uint64_t)i, 100, &h);
		h.max_timestamp_ms = 7;
		cr_assert_eq(su_append(&env, &h, su_recs_buf, rlen), 0);
		su_model_push(&model, &h, rlen);
	}
	nw = expected_age_rolls(&model, 1000, want);
	cr_assert_eq(segments(&env, got), nw);
	for (size_t s = 0; s < nw; s++)
		cr_assert_eq(got[s], want[s], "segment %zu", s);
	su_batches_free(&model);
}

/* ---- truncation ----------------------------------------------------------- */

/* Truncates at offset and checks: the end becomes `end`, everything before
 * it reads back unchanged, appends continue at `end`, and a reopen shows
 * the same. */
static void check_truncate(struct su_batches *model, uint64_t offset, uint64_t end)
{
	su_wait_idle(&env);
	int rc = rmq_log_truncate(env.log, offset);
	cr_assert_eq(rc, 0, "truncate %" PRIu64 ": %s", offset, rmq_errname(rc));
	cr_assert_eq(rmq_log_end_offset(env.log), end);
	cr_assert_eq(rmq_log_high_watermark(env.log), end);
	size_t keep = 0;
	while (keep < model->n && model->v[keep].hdr.base_offset < end)
		keep++;
	for (size_t i = keep; i < model->n; i++)
		free(model->v[i].records);
	model->n = keep;
	su_check_content(&env, model, 0);
	struct rmq_log_read r;
	cr_assert_eq(rmq_log_read(env.log, end + 1, 100, &r), RMQ_ERANGE);

	su_append_seq(&env, 5000 + end, 30, VMAX, true, 10, model);
	cr_assert_eq(model->v[keep].hdr.base_offset, end, "appends continue at the cut");
	su_check_content(&env, model, 0);
	su_check_times(&env, model);
	su_reopen(&env);
	su_check_content(&env, model, 0);
	su_check_times(&env, model);
}

Test(log, truncate_in_the_middle_of_a_segment)
{
	struct su_batches model = {0};
	open_log(&env);
	su_append_seq(&env, 0, 300, VMAX, true, 10, &model);
	uint64_t bases[MAX_SEGS];
	size_t nseg = segments(&env, bases);
	cr_assert_geq(nseg, 6);
	/* A batch boundary in the middle of segment 3. */
	size_t first = su_batch_of(&model, bases[3]), last = su_batch_of(&model, bases[4]) - 1;
	uint64_t off = model.v[(first + last) / 2].hdr.base_offset;
	check_truncate(&model, off, off);
	su_batches_free(&model);
}

/* Truncation into an older segment: it was opened on its indexes' word
 * (its CRCs never read) and becomes the newest, which the next start scans
 * whole.  A damaged batch below the cut must end the log now, or the next
 * start cuts it there with every append made after the truncation. */
Test(log, truncate_into_an_older_segment_ends_at_damage)
{
	struct su_batches model = {0};
	open_log(&env);
	su_append_seq(&env, 0, 300, VMAX, true, 10, &model);
	uint64_t bases[MAX_SEGS];
	size_t nseg = segments(&env, bases);
	cr_assert_geq(nseg, 4);
	cr_assert_eq(su_close(&env), 0);

	/* A record byte of the fourth batch of segment 1, under its CRC. */
	char path[128];
	snprintf(path, sizeof(path), "%s/%020" PRIu64 ".log", env.dir, bases[1]);
	int fd = open(path, O_RDWR);
	cr_assert_geq(fd, 0);
	static uint8_t data[256 << 10];
	ssize_t len = pread(fd, data, sizeof(data), 0);
	cr_assert_gt(len, 0);
	struct rmq_batch_view v;
	uint64_t pos = 0;
	for (int i = 0; i < 4; i++) {
		int n = rmq_batch_parse(data + pos, (size_t)len - pos, &v);
		cr_assert_gt(n, 0);
		if (i < 3)
			pos += (uint64_t)n;
	}
	uint8_t flip = data[pos + v.records_pos] ^ 0x5a;
	cr_assert_eq(pwrite(fd, &flip, 1, (off_t)(pos + v.records_pos)), 1);
	close(fd);
	cr_assert_eq(su_open(&env), 0);

	uint64_t off = model.v[su_batch_of(&model, bases[2]) - 1].hdr.base_offset;
	cr_assert_gt(off, v.hdr.base_offset);
	check_truncate(&model, off, v.hdr.base_offset);
	su_batches_free(&model);
}

/* With O_DIRECT writes the appends after the cut re-write the cut's
 * partial block, whose head comes from the file, not the buffer. */
Test(log, truncate_with_direct_writes)
{
	struct su_batches model = {0};
	env.cfg.fsync = RMQ_FSYNC_ALWAYS;
	env.cfg.direct_writes = true;
	env.cfg.prealloc = RMQ_PREALLOC_FALLOCATE;
	env.cfg.write_buffer_bytes = 64 << 10; /* wraps often */
	open_log(&env);
	su_append_seq(&env, 0, 300, VMAX, true, 10, &model);
	uint64_t bases[MAX_SEGS];
	size_t nseg = segments(&env, bases);
	cr_assert_geq(nseg, 4);
	size_t first = su_batch_of(&model, bases[2]), last = su_batch_of(&model, bases[3]) - 1;
	uint64_t off = model.v[(first + last) / 2].hdr.base_offset;
	check_truncate(&model, off, off);
	su_batches_free(&model);
}

/* Truncating into a sealed segment makes it the active one again, and the
 * appends after the cut add more index entries than it had when sealed:
 * the index files must have room for them (files sealed by earlier
 * versions were cut to their entries; the cut grows them back), or the
 * entries land past the end of the mapped file (lost, or SIGBUS a page
 * further). */
Test(log, truncate_into_a_sealed_segment_then_index_past_its_seal)
{
	struct su_batches model = {0};
	env.cfg.segment_bytes = 256 << 10;
	env.cfg.index_interval_bytes = 64; /* an index entry per batch */
	open_log(&env);
	/* Big batches first: few entries, so the sealed index is short. */
	uint64_t next = su_append_until_roll(&env, 0, 8000, &model);
	size_t sealed_entries = model.n;
	uint64_t off = model.v[2].hdr.base_offset;
	su_wait_idle(&env);
	cr_assert_eq(rmq_log_truncate(env.log, off), 0);
	char real[4096];
	cr_assert(realpath(env.dir, real));
	cr_assert_eq(open_files_ending(real, ".index"), 0, "the cut opened them for a while only");
	for (size_t i = 2; i < model.n; i++)
		free(model.v[i].records);
	model.n = 2;
	/* Fill it again with small batches: pages of index past the seal. */
	su_append_until_roll(&env, next, 60, &model);
	cr_assert_gt(model.n, sealed_entries + 1024, "%zu batches after %zu: pages past the seal",
		     model.n, sealed_entries);
	su_check_content(&env, &model, 0);
	su_reopen(&env);
	su_check_content(&env, &model, 0);
	for (size_t i = 0; i < model.n; i += 97)
		su_check_read_one(&env, &model, model.v[i].hdr.base_offset);
	su_batches_free(&model);
}

Test(log, truncate_at_a_segment_boundary)
{
	struct su_batches model = {0};
	open_log(&env);
	su_append_seq(&env, 0, 300, VMAX, true, 10, &model);
	uint64_t bases[MAX_SEGS];
	size_t nseg = segments(&env, bases);
	cr_assert_geq(nseg, 6);
	check_truncate(&model, bases[4], bases[4]);
	/* The active segment starting at the cut is kept, emptied. */
	uint64_t now[MAX_SEGS];
	cr_assert_geq(segments(&env, now), 5);
	cr_assert_eq(now[4], bases[4]);
	su_batches_free(&model);
}

Test(log, truncate_inside_a_batch_cuts_at_its_base)
{
	struct su_batches model = {0};
	open_log(&env);
	su_append_seq(&env, 0, 300, VMAX, true, 10, &model);
	size_t i = 150;
	while (model.v[i].hdr.record_count < 3)
		i++;
	const struct rmq_batch_hdr *h = &model.v[i].hdr;
	uint64_t base = h->base_offset;
	check_truncate(&model, base + 1, base);
	su_batches_free(&model);
}

Test(log, truncate_the_active_segment_and_to_the_log_start)
{
	struct su_batches model = {0};
	open_log(&env);
	su_append_seq(&env, 0, 120, VMAX, true, 10, &model);
	/* A batch in the active segment. */
	check_truncate(&model, model.v[model.n - 2].hdr.base_offset,
		       model.v[model.n - 2].hdr.base_offset);
	/* Everything. */
	check_truncate(&model, 0, 0);
	su_batches_free(&model);
}

Test(log, truncate_edge_cases)
{
	struct su_batches model = {0};
	env.cfg.retention_bytes = 0;
	open_log(&env);
	su_append_seq(&env, 0, 150, VMAX, true, 10, &model);
	uint64_t end = rmq_log_end_offset(env.log);
	cr_assert_eq(rmq_log_truncate(env.log, end), 0, "at the end: nothing to do");
	cr_assert_eq(rmq_log_truncate(env.log, end + 100), 0);
	cr_assert_eq(rmq_log_end_offset(env.log), end);
	/* In flight: refused. */
	struct su_append a;
	memset(&a, 0, sizeof(a));
	size_t rlen = su_gen_batch(999, 100, &a.a.hdr);
	cr_assert_eq(su_append_async(&env, &a, su_recs_buf, rlen), 0);
	cr_assert_eq(rmq_log_truncate(env.log, 0), RMQ_ESTATE);
	su_drain(&env, &a, 1);
	/* Below the start: refused. */
	cr_assert_geq(rmq_log_retain(env.log), 1);
	uint64_t start = rmq_log_start_offset(env.log);
	su_wait_idle(&env);
	cr_assert_eq(rmq_log_truncate(env.log, start - 1), RMQ_ERANGE);
	cr_assert_eq(rmq_log_end_offset(env.log), end + a.a.hdr.record_count);
	cr_assert_eq(rmq_log_truncate(env.log, start), 0);
	cr_assert_eq(rmq_log_end_offset(env.log), start);
	su_batches_free(&model);
}

/* A segment emptied by truncation is young again: segment.ms counts from
 * its next first batch, not from the batches truncation removed. */
Test(log, truncate_resets_the_age_of_an_emptied_segment)
{
	struct su_batches model = {0};
	env.cfg.segment_bytes = 8 << 20;
	env.cfg.segment_ms = 1000;
	open_log(&env);
	su_append_seq(&env, 0, 5, VMAX, false, 10, &model);
	su_clock_ms += 5000;
	su_wait_idle(&env);
	cr_assert_eq(rmq_log_truncate(env.log, 0), 0);
	su_batches_free(&model);
	su_append_seq(&env, 10, 5, VMAX, false, 10, &model);
	uint64_t b[MAX_SEGS];
	cr_assert_eq(segments(&env, b), 1, "rolled by the age of truncated batches");
	su_batches_free(&model);
}

/* Time retention must not keep a segment for a timestamp that truncation
 * removed from it. */
Test(log, truncate_forgets_the_timestamps_it_removed)
{
	struct su_batches model = {0};
	env.cfg.retention_ms = 60000;
	open_log(&env);
	su_append_seq(&env, 0, 10, VMAX, false, 10, &model);
	struct rmq_batch_hdr h;
	size_t rlen = su_gen_batch(10, VMAX, &h);
	h.max_timestamp_ms = (int64_t)su_clock_ms + 10LL * 24 * 3600 * 1000; /* a bad clock */
	cr_assert_eq(su_append(&env, &h, su_recs_buf, rlen), 0);
	su_wait_idle(&env);
	cr_assert_eq(rmq_log_truncate(env.log, h.base_offset), 0);
	su_append_seq(&env, 11, 60, VMAX, false, 10, &model);
	uint64_t b[MAX_SEGS];
	size_t nseg = segments(&env, b);
	cr_assert_geq(nseg, 3);
	int64_t seg0_max = 0;
	for (size_t i = 0; i < model.n && model.v[i].hdr.base_offset < b[1]; i++)
		if (model.v[i].hdr.max_timestamp_ms > seg0_max)
			seg0_max = model.v[i].hdr.max_timestamp_ms;
	su_clock_ms = (uint64_t)seg0_max + 60000 + 1;
	cr_assert_geq(rmq_log_retain(env.log), 1, "the first segment outlived its retention");
	cr_assert_geq(rmq_log_start_offset(env.log), b[1]);
	su_batches_free(&model);
}

/* Truncation deletes a segment a reader still holds; appending again then
 * re-creates a segment with the same base offset.  The reader's late
 * release must not delete the new segment's files. */
Test(log, truncate_with_a_pinned_read_then_reappend)
{
	struct su_batches model = {0};
	open_log(&env);
	su_append_seq(&env, 0, 200, VMAX, false, 10, &model);
	uint64_t bases[MAX_SEGS];
	size_t nseg = segments(&env, bases);
	cr_assert_geq(nseg, 5);
	/* Pin segment 3; truncate at the last batch of segment 2. */
	struct rmq_log_read r;
	cr_assert_eq(rmq_log_read(env.log, bases[3], 100, &r), 0);
	cr_assert_eq(r.slices[0].seg->base_offset, bases[3]);
	size_t cut = su_batch_of(&model, bases[3]) - 1;
	const struct su_batch *again = &model.v[cut];
	su_wait_idle(&env);
	cr_assert_eq(rmq_log_truncate(env.log, again->hdr.base_offset), 0);
	cr_assert_eq(rmq_log_end_offset(env.log), again->hdr.base_offset);
	uint64_t now[MAX_SEGS];
	cr_assert_eq(segments(&env, now), 3, "segments 3.. are gone from the directory");

	/* Re-append the very same batches at the same times: the first ends
	 * where segment 2 ended and the second, which did not fit there
	 * before, rolls to bases[3] again. */
	struct su_batches redo = {0};
	for (size_t i = cut; i < cut + 2; i++)
		su_batches_push(&redo, &model.v[i].hdr, 0, model.v[i].records,
				model.v[i].records_len);
	for (size_t i = cut; i < model.n; i++)
		free(model.v[i].records);
	model.n = cut;
	for (size_t k = 0; k < redo.n; k++) {
		struct rmq_batch_hdr h = redo.v[k].hdr;
		su_clock_ms = h.log_append_time_ms;
		if (h.first_timestamp_ms == (int64_t)h.log_append_time_ms)
			h.first_timestamp_ms = -1;
		if (h.max_timestamp_ms == (int64_t)h.log_append_time_ms)
			h.max_timestamp_ms = -1;
		h.crc32 = 0;
		memcpy(su_recs_buf, redo.v[k].records, redo.v[k].records_len);
		int rc = su_append(&env, &h, su_recs_buf, redo.v[k].records_len);
		cr_assert_eq(rc, 0, "re-append %zu: %s", k, rmq_errname(rc));
		cr_assert_eq(h.base_offset, redo.v[k].hdr.base_offset);
		su_model_push(&model, &h, redo.v[k].records_len);
	}
	su_batches_free(&redo);
	su_append_seq(&env, 777, 3, VMAX, false, 10, &model);
	size_t n2 = segments(&env, now);
	cr_assert_eq(n2, 4, "%zu segments", n2);
	cr_assert_eq(now[3], bases[3]);

	/* The old reader lets go: the new segment must survive. */
	rmq_log_read_done(env.log, &r);
	char p[128];
	cr_assert_gt(su_file_size(su_seg_file(p, sizeof(p), env.dir, bases[3], ".log")), 0,
		     "the late release deleted the new segment");
	su_check_content(&env, &model, 0);
	su_reopen(&env);
	su_check_content(&env, &model, 0);
	su_batches_free(&model);
}

/* ---- fsync and preallocation ---------------------------------------------- */

static const enum rmq_prealloc preallocs[] = {RMQ_PREALLOC_NONE, RMQ_PREALLOC_FALLOCATE,
					       RMQ_PREALLOC_ZERO};

/* Appends the same sequence under the fsync policy and each
 * preallocation mode, each in its own directory, and checks that every
 * combination stores byte-identical segments and reads back the same.
 * Under fsync=always each mode runs twice, with O_DIRECT data writes (the
 * default) and through the page cache, so both paths must agree byte for
 * byte; the appends after a reopen continue a partial block, which direct
 * writes re-read from the file. */
static void check_policy(enum rmq_fsync fsync)
{
	struct su_batches first = {0};
	uint8_t *ref_data[MAX_SEGS] = {0};
	long long ref_len[MAX_SEGS];
	uint64_t ref_bases[MAX_SEGS];
	size_t ref_nseg = 0;

	size_t nprealloc = sizeof(preallocs) / sizeof(preallocs[0]);
	size_t nconf = fsync == RMQ_FSYNC_ALWAYS ? 2 * nprealloc : nprealloc;
	for (size_t k = 0; k < nconf; k++) {
		struct su_env m = env;
		struct su_batches model = {0};
		m.log = NULL;
		int w = snprintf(m.dir, sizeof(m.dir), "%.40s/p%zu", env.dir, k);
		cr_assert_lt((size_t)w, sizeof(m.dir));
		m.cfg.fsync = fsync;
		m.cfg.prealloc = preallocs[k % nprealloc];
		m.cfg.direct_writes = k < nprealloc;
		/* Direct writes both ways: RWF_DSYNC, and write + fdatasync. */
		m.cfg.dsync_writes = k % 2 == 0;
		/* Zero-ahead starts a write buffer past the data and runs to
		 * the segment's end, so zero writes happen in every segment. */
		m.cfg.zero_ahead_bytes = 64 << 10;
		m.cfg.write_buffer_bytes = 16 << 10;
		su_clock_ms = 1700000000000ULL;
		cr_assert_eq(su_open(&m), 0);
		su_append_seq(&m, 0, 120, 900, true, 10, &model);
		su_append_seq(&m, 120, 20, 900, false, 10, &model);
		su_wait_idle(&m);
		if (fsync == RMQ_FSYNC_INTERVAL) {
			uint64_t before = rmq_log_stats(m.log)->syncs;
			/* Make sure something is unsynced, then tick. */
			su_append_seq(&m, 140, 1, 900, false, 10, &model);
			rmq_log_sync_tick(m.log);
			su_wait_idle(&m);
			cr_assert_gt(rmq_log_stats(m.log)->syncs, before, "sync_tick did not sync");
		} else {
			su_append_seq(&m, 140, 1, 900, false, 10, &model);
			su_wait_idle(&m);
		}
		if (fsync == RMQ_FSYNC_ALWAYS)
			cr_assert_gt(rmq_log_stats(m.log)->syncs, 0);
		su_check_content(&m, &model, 0);

		/* Byte-identical segment data; sealed files cut to it; the
		 * active one has only zeros after its data. */
		uint64_t bases[MAX_SEGS];
		size_t nseg = su_list_segments(m.dir, bases, MAX_SEGS);
		cr_assert_geq(nseg, 3);
		struct su_batches got = {0};
		cr_assert_eq(su_collect(m.log, 0, 1 << 30, &got), 0);
		for (size_t s = 0; s < nseg; s++) {
			long long data = 0;
			for (size_t i = 0; i < got.n; i++) {
				uint64_t b = got.v[i].hdr.base_offset;
				if (b >= bases[s] && (s + 1 == nseg || b < bases[s + 1]))
					data += got.v[i].entry_len;
			}
			char p[128];
			su_seg_file(p, sizeof(p), m.dir, bases[s], ".log");
			long long fsize = su_file_size(p);
			if (s + 1 < nseg)
				cr_assert_eq(fsize, data, "sealed segment %zu: %lld bytes, data %lld",
					     s, fsize, data);
			else
				cr_assert_geq(fsize, data);
			FILE *f = fopen(p, "rb");
			cr_assert_not_null(f);
			uint8_t *buf = malloc((size_t)fsize + 1);
			cr_assert_eq(fread(buf, 1, (size_t)fsize, f), (size_t)fsize);
			fclose(f);
			for (long long z = data; z < fsize; z++)
				cr_assert_eq(buf[z], 0, "garbage after the data at %lld", z);
			if (k == 0) {
				ref_data[s] = buf;
				ref_len[s] = data;
				ref_bases[s] = bases[s];
			} else {
				cr_assert_eq(nseg, ref_nseg);
				cr_assert_eq(bases[s], ref_bases[s]);
				cr_assert_eq(data, ref_len[s]);
				cr_assert_eq(memcmp(buf, ref_data[s], (size_t)data), 0,
					     "segment %zu differs under prealloc %d, direct %d", s,
					     (int)m.cfg.prealloc, (int)m.cfg.direct_writes);
				free(buf);
			}
		}
		if (k == 0)
			ref_nseg = nseg;
		su_batches_free(&got);

		cr_assert_eq(su_close(&m), 0);
		cr_assert_eq(su_open(&m), 0);
		su_check_content(&m, &model, 0);
		su_append_seq(&m, 141, 30, 900, true, 10, &model);
		su_wait_idle(&m);
		su_check_content(&m, &model, 0);
		su_reopen(&m);
		su_check_content(&m, &model, 0);
		if (k == 0)
			first = model;
		else {
			su_assert_same(&model, &first, true);
			su_batches_free(&model);
		}
		cr_assert_eq(su_close(&m), 0);
	}
	for (size_t s = 0; s < ref_nseg; s++)
		free(ref_data[s]);
	su_batches_free(&first);
}

Test(log, fsync_always_every_prealloc)
{
	check_policy(RMQ_FSYNC_ALWAYS);
}

Test(log, fsync_interval_every_prealloc)
{
	check_policy(RMQ_FSYNC_INTERVAL);
}

Test(log, fsync_never_every_prealloc)
{
	check_policy(RMQ_FSYNC_NEVER);
}

/* ---- refused appends -------------------------------------------------------- */

/* Appends that must be refused with err, leaving no trace. */
static void refused_cb(struct rmq_append *a, int res)
{
	(void)a;
	cr_assert_fail("a refused append called back with %d", res);
}

static void check_refused(struct rmq_batch_hdr *h, const void *recs, size_t len, int err)
{
	/* Static: should the log wrongly keep it, it must outlive this call. */
	static struct su_append a;
	struct iovec iov = {(void *)recs, len};
	uint64_t end = rmq_log_end_offset(env.log);
	uint64_t appends = rmq_log_stats(env.log)->appends;

	memset(&a, 0, sizeof(a));
	a.a.hdr = *h;
	a.a.cb = refused_cb;
	int rc = rmq_log_append(env.log, &a.a, &iov, 1);
	cr_assert_eq(rc, err, "append returned %s, want %s", rmq_errname(rc), rmq_errname(err));
	cr_assert_eq(rmq_log_end_offset(env.log), end);
	cr_assert_eq(rmq_log_stats(env.log)->appends, appends);
	su_wait_idle(&env);
	cr_assert_eq(rmq_log_high_watermark(env.log), end);
}

Test(log, producer_crc_mismatch_is_refused)
{
	struct su_batches model = {0};
	open_log(&env);
	su_append_seq(&env, 0, 10, 500, false, 10, &model);
	struct rmq_batch_hdr h;
	size_t rlen = su_gen_batch(50, 500, &h);
	uint32_t crc = rmq_crc32c(0, su_recs_buf, rlen);
	h.crc32 = crc ^ 0x10;
	check_refused(&h, su_recs_buf, rlen, RMQ_ECRC);
	/* A corrupted payload under its original CRC. */
	h.crc32 = crc;
	su_recs_buf[rlen / 2] ^= 1;
	check_refused(&h, su_recs_buf, rlen, RMQ_ECRC);
	su_recs_buf[rlen / 2] ^= 1;
	cr_assert_eq(su_append(&env, &h, su_recs_buf, rlen), 0);
	su_model_push(&model, &h, rlen);
	su_reopen(&env);
	su_check_content(&env, &model, 0);
	su_batches_free(&model);
}

Test(log, oversized_and_malformed_appends_are_refused)
{
	struct su_batches model = {0};
	static uint8_t big[96 << 10];
	env.cfg.write_buffer_bytes = 512 << 10;
	open_log(&env);
	su_append_seq(&env, 0, 10, 500, false, 10, &model);
	struct rmq_batch_hdr h;

	/* Bigger than a segment. */
	rmq_batch_hdr_init(&h);
	h.record_count = 1;
	struct su_record rec = {"k", 1, big, 70 << 10};
	uint8_t *recs = malloc(80 << 10);
	size_t rlen = su_records(recs, 80 << 10, &rec, 1);
	cr_assert_gt(rlen, 0);
	check_refused(&h, recs, rlen, RMQ_ETOOBIG);
	/* Just under a segment: accepted, alone in its segment. */
	rec.value_len = (64 << 10) - 300;
	rlen = su_records(recs, 80 << 10, &rec, 1);
	memcpy(su_recs_buf, recs, rlen);
	cr_assert_eq(su_append(&env, &h, su_recs_buf, rlen), 0);
	su_model_push(&model, &h, rlen);
	free(recs);

	/* No records. */
	rmq_batch_hdr_init(&h);
	rlen = su_gen_batch(60, 100, &h);
	h.record_count = 0;
	check_refused(&h, su_recs_buf, rlen, RMQ_EPROTO);
	/* Records bytes that are not field-7 elements, or none at all: the
	 * log could never parse such an entry back. */
	rmq_batch_hdr_init(&h);
	h.record_count = 1;
	check_refused(&h, "garbage!", 8, RMQ_EPROTO);
	check_refused(&h, "", 0, RMQ_EPROTO);
	static const uint8_t half[] = {0x3A, 0x05, 0x12, 0x01};
	check_refused(&h, half, sizeof(half), RMQ_EPROTO);

	/* The log is unharmed. */
	su_append_seq(&env, 70, 5, 500, false, 10, &model);
	su_check_content(&env, &model, 0);
	su_reopen(&env);
	su_check_content(&env, &model, 0);
	su_batches_free(&model);
}

/* ---- large batches (issue 14 item 10) ------------------------------------------ */

/* One record whose value makes the records bytes exactly n long (n >= 16). */
static size_t large_records(uint8_t *buf, size_t n, uint64_t seed)
{
	size_t v = n;
	for (;;) {
		size_t body = 1 + rmq_pb_varint_len(v) + v;
		size_t total = 1 + rmq_pb_varint_len(body) + body;
		if (total <= n) {
			v += n - total;
			body = 1 + rmq_pb_varint_len(v) + v;
			if (1 + rmq_pb_varint_len(body) + body == n)
				break;
		}
		v--;
	}
	size_t body = 1 + rmq_pb_varint_len(v) + v;
	size_t k = rmq_pb_put_len(buf, 7, body);
	k += rmq_pb_put_len(buf + k, 2, v);
	su_fill_random(buf + k, v, seed);
	cr_assert_eq(k + v, n);
	return n;
}

/*
 * Batches of 1x, 2x and 4x the write buffer (and a hair over the old limit
 * of half of it), between small ones, under every write path: each is
 * stored (written from a buffer of its own), acknowledged in order with the
 * small ones around it, rolls where it must, and reads back byte for byte
 * after a restart.  Before, anything over half the buffer was RMQ_ETOOBIG.
 */
Test(log, batches_larger_than_the_write_buffer)
{
	static const struct {
		enum rmq_fsync fsync;
		bool direct, dsync;
		enum rmq_prealloc prealloc;
	} modes[] = {
		{RMQ_FSYNC_ALWAYS, true, true, RMQ_PREALLOC_FALLOCATE},
		{RMQ_FSYNC_ALWAYS, true, false, RMQ_PREALLOC_NONE},
		{RMQ_FSYNC_ALWAYS, false, false, RMQ_PREALLOC_ZERO},
		{RMQ_FSYNC_NEVER, false, false, RMQ_PREALLOC_NONE},
	};
	const uint32_t wbuf = 64 << 10;
	static const size_t mult[] = {2, 4, 8, 1}; /* halves of the buffer: 1x, 2x, 4x, 0.5x */
	size_t cap = 4 * (size_t)wbuf + 64;
	uint8_t *recs = malloc(cap);
	cr_assert_not_null(recs);
	for (size_t m = 0; m < sizeof(modes) / sizeof(modes[0]); m++) {
		struct su_batches model = {0};
		if (m > 0) {
			su_env_fini(&env);
			su_env_init(&env);
		}
		env.cfg.fsync = modes[m].fsync;
		env.cfg.direct_writes = modes[m].direct;
		env.cfg.dsync_writes = modes[m].dsync;
		env.cfg.prealloc = modes[m].prealloc;
		env.cfg.write_buffer_bytes = wbuf;
		env.cfg.segment_bytes = 1 << 20;
		open_log(&env);
		struct su_append apps[48];
		memset(apps, 0, sizeof(apps));
		uint64_t seq = 0;
		for (int round = 0; round < 3; round++) {
			for (size_t k = 0; k < sizeof(mult) / sizeof(mult[0]); k++) {
				/* A small one, then a large one, pipelined. */
				size_t i = (size_t)round * 8 + k * 2;
				struct rmq_batch_hdr h;
				size_t len = su_gen_batch(seq++, 500, &h);
				apps[i].a.hdr = h;
				cr_assert_eq(su_append_async(&env, &apps[i], su_recs_buf, len), 0);
				su_model_push(&model, &apps[i].a.hdr, len);
				size_t n = mult[k] * wbuf / 2 + (k == 3 ? 1000 : 0);
				large_records(recs, n, seq);
				rmq_batch_hdr_init(&apps[i + 1].a.hdr);
				apps[i + 1].a.hdr.record_count = 1;
				cr_assert_eq(su_append_async(&env, &apps[i + 1], recs, n), 0,
					     "mode %zu: a batch of %zu bytes", m, n);
				su_batches_push(&model, &apps[i + 1].a.hdr, 0, recs, n);
				struct su_batch *b = &model.v[model.n - 1];
				b->hdr.first_timestamp_ms = b->hdr.max_timestamp_ms =
					(int64_t)b->hdr.log_append_time_ms;
				rmq_log_flush(env.log);
			}
		}
		su_drain(&env, apps, 24);
		cr_assert_gt(rmq_log_stats(env.log)->rolls, 0);
		su_check_content(&env, &model, 0);
		su_reopen(&env);
		su_check_content(&env, &model, 0);
		/* And appends go on after them, across the restart. */
		su_append_seq(&env, seq, 10, 500, true, 10, &model);
		su_check_content(&env, &model, 0);
		su_batches_free(&model);
	}
	free(recs);
}

/* Bytes of disk a file holds (allocated blocks). */
static long long allocated(const char *path)
{
	struct stat st;
	cr_assert_eq(stat(path, &st), 0, "%s", path);
	return (long long)st.st_blocks * 512;
}

/*
 * Preallocation follows the data (issue 14 item 9): a new log holds no
 * segment file at all until its first append; then a 64 MiB segment size
 * reserves RMQ_PREALLOC_MIN ahead of the data, not 64 MiB, and the
 * reservation grows through the ring with what the segment holds, about
 * as much again, never a whole segment up front.  Every append is
 * acknowledged; none waits forever for space.
 */
Test(log, preallocation_follows_the_data)
{
	char p[160];
	env.cfg.segment_bytes = 64 << 20;
	env.cfg.prealloc = RMQ_PREALLOC_FALLOCATE;
	env.cfg.fsync = RMQ_FSYNC_ALWAYS;
	env.cfg.write_buffer_bytes = 1 << 20;
	open_log(&env);
	su_seg_file(p, sizeof(p), env.dir, 0, ".log");
	cr_assert_eq(access(p, F_OK), -1, "a new log made %s before its first append", p);
	struct su_batches model = {0};
	uint64_t seq = 0;
	su_append_seq(&env, seq++, 1, 100, false, 1, &model);
	cr_assert_leq(allocated(p), (long long)RMQ_PREALLOC_MIN + (8 << 10),
		      "a segment holding one batch holds %lld", allocated(p));
	for (int round = 1; round <= 4; round++) {
		while (rmq_log_size_bytes(env.log) < (uint64_t)round << 20) {
			su_append_seq(&env, seq, 20, VMAX, true, 1, &model);
			seq += 20;
		}
		long long data = (long long)rmq_log_size_bytes(env.log);
		long long got = allocated(p);
		cr_assert_geq(got, data, "the data must sit in reserved space");
		cr_assert_leq(got, 2 * data + (long long)RMQ_PREALLOC_MIN + (256 << 10),
			      "%lld reserved for %lld of data", got, data);
	}
	cr_assert_eq(rmq_log_stats(env.log)->rolls, 0);
	su_reopen(&env);
	su_check_content(&env, &model, 0);
	su_batches_free(&model);
}

/* The limit the broker validates max.message.bytes against. */
Test(log, largest_batch)
{
	cr_assert_eq(rmq_log_batch_bytes_max(1 << 20), (1 << 20) - RMQ_BATCH_PREFIX_MAX);
	cr_assert_eq(rmq_log_batch_bytes_max(1ULL << 30), RMQ_BATCH_BYTES_MAX - RMQ_BATCH_PREFIX_MAX);
	/* A batch of exactly that size is stored in a segment of that size. */
	env.cfg.segment_bytes = 256 << 10;
	env.cfg.write_buffer_bytes = 16 << 10;
	open_log(&env);
	uint64_t n = rmq_log_batch_bytes_max(env.cfg.segment_bytes);
	uint8_t *recs = malloc(n + RMQ_BATCH_PREFIX_MAX);
	cr_assert_not_null(recs);
	large_records(recs, n, 7);
	struct rmq_batch_hdr h;
	rmq_batch_hdr_init(&h);
	h.record_count = 1;
	cr_assert_eq(su_append(&env, &h, recs, n), 0);
	large_records(recs, n + RMQ_BATCH_PREFIX_MAX, 8);
	rmq_batch_hdr_init(&h);
	h.record_count = 1;
	check_refused(&h, recs, n + RMQ_BATCH_PREFIX_MAX, RMQ_ETOOBIG);
	su_reopen(&env);
	free(recs);
}

Test(log, open_rejects_bad_config)
{
	struct rmq_log_config c = env.cfg;
	struct rmq_log *log;
	c.segment_bytes = 100;
	cr_assert_eq(rmq_log_open(env.io, env.dir, &c, &log), RMQ_EBADFLAG);
	c = env.cfg;
	c.index_interval_bytes = 0;
	cr_assert_eq(rmq_log_open(env.io, env.dir, &c, &log), RMQ_EBADFLAG);
	c = env.cfg;
	c.max_inflight_writes = 0;
	cr_assert_eq(rmq_log_open(env.io, env.dir, &c, &log), RMQ_EBADFLAG);
	c = env.cfg;
	c.write_buffer_bytes = 100;
	cr_assert_eq(rmq_log_open(env.io, env.dir, &c, &log), RMQ_EBADFLAG);
}

/* ---- the HW listener ---------------------------------------------------- */

static uint64_t hw_calls, hw_last;

static void on_hw(void *arg, uint64_t hw)
{
	cr_assert_eq(arg, &hw_calls);
	cr_assert_gt(hw, hw_last, "the HW only moves forward");
	hw_last = hw;
	hw_calls++;
}

Test(log, hw_listener_fires)
{
	struct su_batches model = {0};
	env.cfg.fsync = RMQ_FSYNC_ALWAYS;
	open_log(&env);
	rmq_log_set_hw_listener(env.log, on_hw, &hw_calls);
	su_append_seq(&env, 0, 5, 500, false, 10, &model);
	cr_assert_eq(hw_calls, 5, "one call per synchronous append");
	cr_assert_eq(hw_last, rmq_log_high_watermark(env.log));
	su_append_seq(&env, 5, 100, 500, true, 10, &model);
	cr_assert_geq(hw_calls, 6);
	cr_assert_leq(hw_calls, 105);
	cr_assert_eq(hw_last, rmq_log_high_watermark(env.log));
	cr_assert_eq(hw_last, rmq_log_end_offset(env.log));
	rmq_log_set_hw_listener(env.log, NULL, NULL);
	su_append_seq(&env, 105, 2, 500, false, 10, &model);
	cr_assert_lt(hw_last, rmq_log_high_watermark(env.log));
	su_batches_free(&model);
}

/* ---- a new log's files (log_create.c) ---------------------------------------- */

static long long file_blocks(const char *path)
{
	struct stat st;
	cr_assert_eq(stat(path, &st), 0, "%s: %s", path, strerror(errno));
	return (long long)st.st_blocks;
}

/*
 * Opening a new log makes nothing (issue 14 item 9: a 1,000-partition topic
 * was 4,000 inodes made while CreateTopics waited): not even its directory.
 * Given its ring, it makes the directory and the first segment's three
 * files in the background; none of them holds data or reserves more than
 * the index files' last pages.  Appends then work and survive a reopen.
 */
Test(log, new_log_is_made_once_it_has_its_ring)
{
	char p[200];
	struct rmq_wpool_config wc;
	struct rmq_wpool *pool;
	struct su_batches model = {0};

	rmq_wpool_config_default(&wc);
	wc.chunks = 64;
	cr_assert_eq(rmq_wpool_create(env.io, &wc, &pool), 0);
	env.cfg.wpool = pool;
	env.cfg.fsync = RMQ_FSYNC_ALWAYS;
	env.cfg.prealloc = RMQ_PREALLOC_FALLOCATE;
	su_rm_rf(env.dir);
	/* As a broker's helper thread opens it: no ring. */
	int rc = rmq_log_open(NULL, env.dir, &env.cfg, &env.log);
	cr_assert_eq(rc, 0, "open: %s", rmq_errname(rc));
	cr_assert_eq(access(env.dir, F_OK), -1, "open made %s", env.dir);
	cr_assert_eq(errno, ENOENT);
	cr_assert(rmq_log_idle(env.log));
	cr_assert(rmq_log_quiet(env.log));
	rmq_log_attach(env.log, env.io);
	cr_assert_not(rmq_log_idle(env.log), "nothing started at attach");
	su_wait_idle(&env);
	uint64_t idx_len, tim_len;
	rmq_segment_index_sizes(env.cfg.segment_bytes, env.cfg.index_interval_bytes, &idx_len,
				&tim_len);
	cr_assert_eq(su_file_size(su_seg_file(p, sizeof(p), env.dir, 0, ".log")), 0);
	cr_assert_eq(file_blocks(p), 0, "%s holds blocks", p);
	cr_assert_eq(su_file_size(su_seg_file(p, sizeof(p), env.dir, 0, ".index")),
		     (long long)idx_len);
	cr_assert_leq(file_blocks(p), 8, "%s holds %lld blocks", p, file_blocks(p));
	cr_assert_eq(su_file_size(su_seg_file(p, sizeof(p), env.dir, 0, ".timeindex")),
		     (long long)tim_len);
	cr_assert_leq(file_blocks(p), 8, "%s holds %lld blocks", p, file_blocks(p));
	cr_assert_eq(rmq_log_end_offset(env.log), 0);

	su_append_seq(&env, 0, 40, VMAX, true, 10, &model);
	su_check_content(&env, &model, 0);
	cr_assert_eq(rmq_log_close(env.log), 0);
	env.log = NULL;
	open_log(&env);
	su_check_content(&env, &model, 0);
	cr_assert_eq(su_close(&env), 0);
	rmq_wpool_destroy(pool);
	su_batches_free(&model);
}

static int open_fds(void)
{
	int n = 0;
	DIR *d = opendir("/proc/self/fd");
	cr_assert_not_null(d);
	while (readdir(d))
		n++;
	closedir(d);
	return n - 3; /* ., .. and the directory's own descriptor */
}

/*
 * A topic of 4,096 partitions made its files all at once and ran rmqd out
 * of descriptors (some logs failed with EMFILE, their appends answered
 * STORAGE_ERROR): a log holds up to six while it makes its files.  Now a
 * thread makes at most 64 logs' files at once and the rest wait their
 * turn.  Under a descriptor limit that 200 logs making at once exceed
 * (about 6 each) and that 64 at a time fit (3 each once made, 6 while
 * making), every log of 200 is made and takes its append; logs closed
 * while waiting for their turn leave nothing behind.
 */
static int acked;

static void count_ack(struct rmq_append *a, int res)
{
	(void)a;
	cr_assert_eq(res, 0, "an append failed: %s", rmq_errname(res));
	acked++;
}

Test(log, many_new_logs_make_their_files_a_few_at_a_time)
{
	enum { N = 200, CLOSED_EARLY = 100 };
	static struct rmq_log *logs[N + CLOSED_EARLY];
	static struct rmq_append apps[N];
	char dir[256];
	struct rlimit old, lim;
	cr_assert_eq(getrlimit(RLIMIT_NOFILE, &old), 0);
	lim = old;
	lim.rlim_cur = (rlim_t)open_fds() + 1000;
	if (lim.rlim_cur > old.rlim_max)
		cr_skip_test("the hard descriptor limit is below %lu", (unsigned long)lim.rlim_cur);
	cr_assert_eq(setrlimit(RLIMIT_NOFILE, &lim), 0);
	env.cfg.fsync = RMQ_FSYNC_ALWAYS; /* O_DIRECT: a twin descriptor each */
	for (int i = 0; i < N + CLOSED_EARLY; i++) {
		snprintf(dir, sizeof(dir), "%s/p%d", env.dir, i);
		cr_assert_eq(rmq_log_open(env.io, dir, &env.cfg, &logs[i]), 0);
	}
	/* The last ones close before their turn can have come. */
	for (int i = N; i < N + CLOSED_EARLY; i++)
		cr_assert_eq(rmq_log_close(logs[i]), 0);
	for (int i = 0; i < N; i++) {
		struct rmq_batch_hdr h;
		size_t len = su_gen_batch(0, 100, &h);
		struct iovec iov = {su_recs_buf, len};
		apps[i].hdr = h;
		apps[i].cb = count_ack;
		int rc, cycles = 0;
		while ((rc = rmq_log_append(logs[i], &apps[i], &iov, 1)) == RMQ_EFULL) {
			cr_assert_lt(cycles++, 2000, "log %d: RMQ_EFULL never cleared", i);
			cr_assert_geq(rmq_io_wait(env.io, 10ULL * 1000 * 1000), 0);
		}
		cr_assert_eq(rc, 0, "log %d: %s", i, rmq_errname(rc));
		rmq_log_flush(logs[i]);
	}
	for (int i = 0; i < N; i++)
		cr_assert_eq(rmq_log_close(logs[i]), 0);
	cr_assert_eq(acked, N, "appends acknowledged");
	cr_assert_eq(setrlimit(RLIMIT_NOFILE, &old), 0);
	for (int i = N; i < N + CLOSED_EARLY; i++) {
		snprintf(dir, sizeof(dir), "%s/p%d/%020d.log", env.dir, i, 0);
		cr_assert_eq(access(dir, F_OK), -1, "a log closed before its turn made %s", dir);
	}
}

/* An append that comes before the files are made waits for them
 * (RMQ_EFULL), then is acknowledged like any other; so is one made to a log
 * whose directory exists but holds no segment. */
Test(log, append_before_the_files_are_made_waits)
{
	struct su_batches model = {0};
	for (int existing = 0; existing < 2; existing++) {
		struct rmq_batch_hdr h;
		su_rm_rf(env.dir);
		if (existing)
			cr_assert_eq(mkdir(env.dir, 0755), 0);
		open_log(&env);
		size_t len = su_gen_batch(0, VMAX, &h);
		struct rmq_append a = {.hdr = h, .cb = NULL};
		struct iovec iov = {su_recs_buf, len};
		cr_assert_eq(rmq_log_append(env.log, &a, &iov, 1), RMQ_EFULL,
			     "appended before the files existed");
		cr_assert_eq(rmq_log_end_offset(env.log), 0);
		su_append_seq(&env, 0, 10, VMAX, existing, 10, &model);
		su_check_content(&env, &model, 0);
		su_reopen(&env);
		su_check_content(&env, &model, 0);
		cr_assert_eq(su_close(&env), 0);
		su_batches_free(&model);
		memset(&model, 0, sizeof(model));
	}
}
