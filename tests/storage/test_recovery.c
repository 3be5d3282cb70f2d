/* SPDX-License-Identifier: Apache-2.0 */
/*
 * test_recovery.c - recovery of a partition log from damaged files
 * (rmq_log_open over src/storage/segment.c's scan and index validation).
 *
 * Each test writes a deterministic log of about ten 64 KiB segments,
 * closes it, damages the files the way disks and crashes do (a flipped
 * byte, a cut or zeroed tail, a bad length, bad or missing index files, a
 * missing segment, stray files), reopens it with the log lines captured,
 * and checks what recovery promises:
 *
 *   newest segment damaged  the log is cut at the first bad batch, all
 *                           before it reads back intact, a warning says
 *                           so, appends continue at the cut, and the cut
 *                           data never comes back on a later open
 *   older segment damaged   the segment is fenced from the bad batch to
 *                           the next segment (RMQ_EFENCED), an error says
 *                           so, everything else stays readable
 *   index files damaged     rebuilt from the data: same reads, same time
 *                           lookups
 */
#include "storage/log.h"

#include "core/error.h"
#include "core/io.h"
#include "core/pbwire.h"
#include "storage_util.h"

#include <criterion/criterion.h>
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#define MAX_SEGS 64
#define MAX_ENTS 256
#define NBATCH 240
#define VMAX 2000

static struct su_env env;
static struct su_batches model;
static uint64_t bases[MAX_SEGS];
static size_t nseg;

static void setup(void)
{
	su_env_init(&env);
	memset(&model, 0, sizeof(model));
}

static void teardown(void)
{
	su_batches_free(&model);
	su_env_fini(&env);
}

TestSuite(recovery, .init = setup, .fini = teardown, .timeout = 120);

/* ---- helpers ------------------------------------------------------------ */

/* Writes the test log and closes it. */
static void build(void)
{
	int rc = su_open(&env);
	cr_assert_eq(rc, 0, "open: %s", rmq_errname(rc));
	su_append_seq(&env, 0, NBATCH, VMAX, true, 10, &model);
	cr_assert_eq(su_close(&env), 0);
	nseg = su_list_segments(env.dir, bases, MAX_SEGS);
	cr_assert_geq(nseg, 8, "only %zu segments", nseg);
	cr_assert_leq(nseg, MAX_SEGS);
}

/* Opens the log, returning what it logged (malloc'd). */
static char *open_capture(void)
{
	int fd = su_capture_start();
	int rc = su_open(&env);
	char *out = su_capture_end(fd);
	cr_assert_eq(rc, 0, "open: %s; log:\n%s", rmq_errname(rc), out);
	return out;
}

static void reopen_quiet(void)
{
	cr_assert_eq(su_close(&env), 0);
	free(open_capture());
}

static char *seg_path(uint64_t base, const char *ext)
{
	static char p[4][128];
	static int k;
	k = (k + 1) % 4;
	return su_seg_file(p[k], sizeof(p[k]), env.dir, base, ext);
}

/* An entry of a segment file as the test reads it from disk. */
struct ent {
	uint64_t pos;
	uint32_t len, records_pos, records_len;
	uint64_t base;
	uint32_t count;
};

/* Parses the entries of a data file from position 0 to its first zero
 * byte or bad entry. */
static size_t file_entries(const char *path, struct ent *out, size_t cap)
{
	long long size = su_file_size(path);
	cr_assert_geq(size, 0, "%s", path);
	uint8_t *buf = malloc((size_t)size + 1);
	int fd = open(path, O_RDONLY);
	cr_assert_geq(fd, 0);
	cr_assert_eq(pread(fd, buf, (size_t)size, 0), size);
	close(fd);
	size_t n = 0;
	for (uint64_t pos = 0; pos < (uint64_t)size && n < cap;) {
		struct rmq_batch_view v;
		int k = rmq_batch_parse(buf + pos, (size_t)size - pos, &v);
		if (k <= 0)
			break;
		out[n++] = (struct ent){pos, v.entry_len, v.records_pos, v.records_len,
					v.hdr.base_offset, v.hdr.record_count};
		pos += (uint64_t)k;
	}
	free(buf);
	return n;
}

/* Drops the model's batches at and after offset end. */
static void model_cut(uint64_t end)
{
	size_t keep = 0;
	while (keep < model.n && model.v[keep].hdr.base_offset < end)
		keep++;
	for (size_t i = keep; i < model.n; i++)
		free(model.v[i].records);
	model.n = keep;
}

/* Width of an entry's length varint. */
static size_t varint_width(const struct ent *e)
{
	for (size_t w = 1; w <= 5; w++) {
		if (rmq_pb_varint_len(e->len - 1 - w) == w)
			return w;
	}
	cr_assert_fail("entry of %u bytes has no consistent length", e->len);
	return 0;
}

static void assert_logged(const char *out, const char *what)
{
	cr_assert_not_null(strstr(out, what), "expected \"%s\" in the log:\n%s", what, out);
}

/* After the newest segment was damaged at entry e: the log ends at its
 * base, everything before reads back, a warning was logged, appends
 * continue there, and a second reopen agrees. */
static void check_cut_at(uint64_t end, const char *out)
{
	assert_logged(out, "WARN");
	assert_logged(out, "truncated");
	cr_assert_eq(rmq_log_end_offset(env.log), end);
	cr_assert_eq(rmq_log_high_watermark(env.log), end);
	cr_assert_eq(rmq_log_start_offset(env.log), 0);
	model_cut(end);
	su_check_content(&env, &model, 0);
	su_check_times(&env, &model);
	struct rmq_log_read r;
	cr_assert_eq(rmq_log_read(env.log, end + 1, 100, &r), RMQ_ERANGE);

	su_append_seq(&env, 1000, 6, VMAX, false, 10, &model);
	cr_assert_eq(model.v[su_batch_of(&model, end)].hdr.base_offset, end,
		     "appends continue at the cut");
	uint64_t new_end = rmq_log_end_offset(env.log);
	cr_assert_eq(su_close(&env), 0);
	char *again = open_capture();
	cr_assert_null(strstr(again, "truncated"), "the second open found damage again:\n%s",
		       again);
	free(again);
	cr_assert_eq(rmq_log_end_offset(env.log), new_end);
	su_check_content(&env, &model, 0);
	/* On disk the newest data file now holds exactly the kept and new
	 * batches: the damaged ones cannot come back. */
	struct ent ents[MAX_ENTS];
	uint64_t b[MAX_SEGS];
	size_t n = su_list_segments(env.dir, b, MAX_SEGS);
	size_t ne = file_entries(seg_path(b[n - 1], ".log"), ents, MAX_ENTS);
	cr_assert_gt(ne, 0);
	cr_assert_eq(ents[ne - 1].base + ents[ne - 1].count, new_end);
}

/* Checks reads around a fenced range [from, to): everything outside
 * reads back, everything inside is RMQ_EFENCED. */
static void check_fenced(uint64_t from, uint64_t to)
{
	struct rmq_log_read r;

	cr_assert_lt(from, to);
	for (size_t i = 0; i < model.n; i++) {
		const struct rmq_batch_hdr *h = &model.v[i].hdr;
		uint64_t last = rmq_batch_last_offset(h);
		if (last < from || h->base_offset >= to) {
			su_check_read_one(&env, &model, h->base_offset);
			su_check_read_one(&env, &model, last);
		} else {
			int rc = rmq_log_read(env.log, h->base_offset, 1 << 20, &r);
			cr_assert_eq(rc, RMQ_EFENCED, "offset %" PRIu64 ": %s", h->base_offset,
				     rmq_errname(rc));
			cr_assert_eq(rmq_log_read(env.log, last, 1, &r), RMQ_EFENCED);
		}
	}
	/* A big read running into the fenced range stops at it. */
	size_t i = su_batch_of(&model, from > 0 ? from - 1 : 0);
	if (from > 0) {
		cr_assert_eq(rmq_log_read(env.log, model.v[i].hdr.base_offset, 1 << 30, &r), 0);
		cr_assert_eq(r.next_offset, from);
		rmq_log_read_done(env.log, &r);
	}
	/* Reading everything from the start stops with RMQ_EFENCED there. */
	struct su_batches got = {0};
	cr_assert_eq(su_collect(env.log, 0, 1 << 30, &got), RMQ_EFENCED);
	cr_assert_eq(got.n, su_batch_of(&model, from));
	su_batches_free(&got);
	/* From the end of the range on, everything is there. */
	cr_assert_eq(su_collect(env.log, to, 1 << 30, NULL), 0);
	/* Time lookups never land inside the fenced range. */
	for (size_t k = 0; k < model.n; k += 5) {
		uint64_t off;
		if (rmq_log_offset_for_time(env.log, model.v[k].hdr.max_timestamp_ms, &off) == 0)
			cr_assert(off < from || off >= to, "time lookup returned fenced offset %" PRIu64,
				  off);
	}
}

/* ---- the newest segment -------------------------------------------------- */

Test(recovery, clean_reopen_logs_nothing)
{
	build();
	char *out = open_capture();
	cr_assert_eq(out[0], '\0', "a clean log logged:\n%s", out);
	free(out);
	su_check_content(&env, &model, 0);
}

Test(recovery, flipped_byte_mid_active_segment)
{
	build();
	struct ent ents[MAX_ENTS];
	size_t ne = file_entries(seg_path(bases[nseg - 1], ".log"), ents, MAX_ENTS);
	cr_assert_geq(ne, 4);
	const struct ent *e = &ents[ne / 2];
	su_flip_byte(seg_path(bases[nseg - 1], ".log"), (long long)(e->pos + e->records_pos + e->records_len / 2),
		     0x40);
	char *out = open_capture();
	assert_logged(out, rmq_strerror(RMQ_ECRC));
	cr_assert_gt(rmq_log_stats(env.log)->truncated_bytes, 0);
	check_cut_at(e->base, out);
	free(out);
}

Test(recovery, flipped_header_byte_mid_active_segment)
{
	build();
	struct ent ents[MAX_ENTS];
	size_t ne = file_entries(seg_path(bases[nseg - 1], ".log"), ents, MAX_ENTS);
	cr_assert_geq(ne, 4);
	const struct ent *e = &ents[ne / 2];
	/* The magic field's value, right after its key: 2 becomes 3. */
	su_flip_byte(seg_path(bases[nseg - 1], ".log"), (long long)(e->pos + 1 + varint_width(e) + 1),
		     0x01);
	char *out = open_capture();
	check_cut_at(e->base, out);
	free(out);
}

/* A key byte zeroed mid-way looks like the end of the data; the data after
 * it is not zeros, so it is damage and must be reported as such. */
Test(recovery, zeroed_key_byte_mid_active_segment)
{
	build();
	struct ent ents[MAX_ENTS];
	size_t ne = file_entries(seg_path(bases[nseg - 1], ".log"), ents, MAX_ENTS);
	cr_assert_geq(ne, 4);
	const struct ent *e = &ents[ne / 2];
	su_write_byte(seg_path(bases[nseg - 1], ".log"), (long long)e->pos, 0);
	char *out = open_capture();
	cr_assert_gt(rmq_log_stats(env.log)->truncated_bytes, 0, "the lost data was not counted");
	check_cut_at(e->base, out);
	free(out);
}

Test(recovery, truncated_tail_mid_entry)
{
	build();
	struct ent ents[MAX_ENTS];
	const char *p = seg_path(bases[nseg - 1], ".log");
	size_t ne = file_entries(p, ents, MAX_ENTS);
	const struct ent *e = &ents[ne - 1];
	su_truncate_file(p, (long long)(e->pos + e->len / 2));
	char *out = open_capture();
	assert_logged(out, rmq_strerror(RMQ_ETORN));
	check_cut_at(e->base, out);
	free(out);
}

Test(recovery, truncated_tail_in_the_length_prefix)
{
	build();
	struct ent ents[MAX_ENTS];
	const char *p = seg_path(bases[nseg - 1], ".log");
	size_t ne = file_entries(p, ents, MAX_ENTS);
	const struct ent *e = &ents[ne - 1];
	su_truncate_file(p, (long long)(e->pos + 2)); /* key and one varint byte */
	char *out = open_capture();
	check_cut_at(e->base, out);
	free(out);
}

Test(recovery, truncated_at_an_entry_boundary_is_clean)
{
	build();
	struct ent ents[MAX_ENTS];
	const char *p = seg_path(bases[nseg - 1], ".log");
	size_t ne = file_entries(p, ents, MAX_ENTS);
	const struct ent *e = &ents[ne - 1];
	su_truncate_file(p, (long long)e->pos);
	char *out = open_capture();
	cr_assert_null(strstr(out, "truncated"), "a clean end was reported as damage:\n%s", out);
	free(out);
	cr_assert_eq(rmq_log_end_offset(env.log), e->base);
	model_cut(e->base);
	su_check_content(&env, &model, 0);
}

/* A torn write in a preallocated file: the tail of the last entry reads
 * as zeros. */
Test(recovery, zeroed_tail_in_a_preallocated_segment)
{
	env.cfg.prealloc = RMQ_PREALLOC_FALLOCATE;
	build();
	struct ent ents[MAX_ENTS];
	const char *p = seg_path(bases[nseg - 1], ".log");
	cr_assert_eq(su_file_size(p), (long long)env.cfg.segment_bytes, "preallocated");
	size_t ne = file_entries(p, ents, MAX_ENTS);
	const struct ent *e = &ents[ne - 1];
	int fd = open(p, O_WRONLY);
	static const uint8_t zeros[64 << 10];
	size_t from = e->pos + e->len / 2;
	cr_assert_eq(pwrite(fd, zeros, e->len - e->len / 2, (off_t)from), (ssize_t)(e->len - e->len / 2));
	close(fd);
	char *out = open_capture();
	check_cut_at(e->base, out);
	free(out);
}

/* O_DIRECT writes go as two at once when the first re-writes the block
 * the previous write ended in: a crash may keep the second and lose the
 * first, which leaves the old head block (data, then zeros from the entry
 * boundary to the block's end) before later data. */
Test(recovery, lost_head_block_before_later_data)
{
	build();
	struct ent ents[MAX_ENTS];
	const char *p = seg_path(bases[nseg - 1], ".log");
	size_t ne = file_entries(p, ents, MAX_ENTS);
	const struct ent *e = NULL;
	for (size_t i = ne / 2; i + 2 < ne && !e; i++)
		if (ents[i].pos % 4096 != 0)
			e = &ents[i];
	cr_assert_not_null(e, "no entry starts inside a block");
	uint64_t to = (e->pos + 4095) & ~4095ULL;
	cr_assert_lt(to, ents[ne - 1].pos + ents[ne - 1].len, "no data after the block");
	int fd = open(p, O_WRONLY);
	static const uint8_t zeros[4096];
	cr_assert_eq(pwrite(fd, zeros, to - e->pos, (off_t)e->pos), (ssize_t)(to - e->pos));
	close(fd);
	char *out = open_capture();
	cr_assert_gt(rmq_log_stats(env.log)->truncated_bytes, 0, "the lost data was not counted");
	check_cut_at(e->base, out);
	free(out);
}

/* The newest segment is a recycled file (segment.h, "Recycling"): an
 * older segment's bytes follow its data.  A torn batch of its own is cut
 * and counted alone; the old bytes after it are not damage. */
Test(recovery, torn_batch_in_a_recycled_segment)
{
	char p[160];
	env.cfg.fsync = RMQ_FSYNC_ALWAYS;
	env.cfg.retention_bytes = 0;
	cr_assert_eq(su_open(&env), 0);
	su_append_seq(&env, 0, 100, VMAX, true, 10, &model);
	cr_assert_geq(rmq_log_retain(env.log), 1);
	uint64_t i = su_append_until_roll(&env, 100, VMAX, &model);
	su_append_seq(&env, i, 3, 200, false, 10, &model);
	cr_assert_eq(rmq_log_stats(env.log)->recycled_segments, 1);
	uint64_t start = rmq_log_start_offset(env.log);
	cr_assert_eq(su_close(&env), 0);
	nseg = su_list_segments(env.dir, bases, MAX_SEGS);
	snprintf(p, sizeof(p), "%s", seg_path(bases[nseg - 1], ".recycled"));
	cr_assert_eq(access(p, F_OK), 0, "the newest segment is not recycled");

	struct ent ents[MAX_ENTS];
	const char *log_path = seg_path(bases[nseg - 1], ".log");
	size_t ne = file_entries(log_path, ents, MAX_ENTS);
	cr_assert_geq(ne, 4);
	const struct ent *e = &ents[ne - 1];
	su_flip_byte(log_path, (long long)(e->pos + e->records_pos + e->records_len / 2), 0x40);
	char *out = open_capture();
	assert_logged(out, "WARN");
	assert_logged(out, "truncated");
	cr_assert_eq(rmq_log_stats(env.log)->truncated_bytes, e->len, "only the torn batch counts:\n%s", out);
	free(out);
	cr_assert_eq(rmq_log_end_offset(env.log), e->base);
	cr_assert_neq(access(p, F_OK), 0, "the cut dropped the old bytes and the marker");
	model_cut(e->base);
	su_check_content(&env, &model, su_batch_of(&model, start));
}

Test(recovery, length_prefix_past_the_end)
{
	build();
	struct ent ents[MAX_ENTS];
	const char *p = seg_path(bases[nseg - 1], ".log");
	size_t ne = file_entries(p, ents, MAX_ENTS);
	const struct ent *e = &ents[ne - 1];
	/* Same varint width, 1000 bytes longer: past the end of the file. */
	uint8_t var[RMQ_PB_VARINT_MAX];
	size_t w = varint_width(e);
	cr_assert_eq(rmq_pb_put_varint(var, e->len - 1 - w + 1000), w, "same width");
	for (size_t i = 0; i < w; i++)
		su_write_byte(p, (long long)(e->pos + 1 + i), var[i]);
	char *out = open_capture();
	assert_logged(out, rmq_strerror(RMQ_ETORN));
	check_cut_at(e->base, out);
	free(out);
}

Test(recovery, length_prefix_into_the_next_entry)
{
	build();
	struct ent ents[MAX_ENTS];
	const char *p = seg_path(bases[nseg - 1], ".log");
	size_t ne = file_entries(p, ents, MAX_ENTS);
	cr_assert_geq(ne, 4);
	const struct ent *e = &ents[1];
	uint8_t var[RMQ_PB_VARINT_MAX];
	size_t w = varint_width(e);
	cr_assert_eq(rmq_pb_put_varint(var, e->len - 1 - w + 40), w, "same width");
	for (size_t i = 0; i < w; i++)
		su_write_byte(p, (long long)(e->pos + 1 + i), var[i]);
	char *out = open_capture();
	check_cut_at(e->base, out);
	free(out);
}

Test(recovery, garbage_newest_segment)
{
	build();
	const char *p = seg_path(bases[nseg - 1], ".log");
	su_garbage_file(p, 5000, 99);
	char *out = open_capture();
	check_cut_at(bases[nseg - 1], out);
	free(out);
}

/* A crash right after a roll created the next segment's file. */
Test(recovery, empty_newest_segment)
{
	build();
	uint64_t end = model.v[model.n - 1].hdr.base_offset + model.v[model.n - 1].hdr.record_count;
	su_garbage_file(seg_path(end, ".log"), 0, 0);
	char *out = open_capture();
	cr_assert_null(strstr(out, "truncated"), "%s", out);
	free(out);
	cr_assert_eq(rmq_log_end_offset(env.log), end);
	su_check_content(&env, &model, 0);
	su_append_seq(&env, 500, 3, VMAX, false, 10, &model);
	reopen_quiet();
	su_check_content(&env, &model, 0);
}

/* ---- index files ------------------------------------------------------- */

/* A segment's index files are never synced (a roll syncs the data file
 * only), so a crash can leave any of these.  D_TAIL_LOST is what a crash
 * soon after a roll leaves: entries written through the mapping that never
 * reached the disk.  D_UNCUT: more zero room after the entries. */
enum damage { D_EMPTY, D_GARBAGE, D_DELETED, D_TAIL_LOST, D_UNCUT, D_COUNT };
static const char *const damage_name[] = {"empty", "garbage", "deleted", "tail lost", "uncut"};

/* Zeros [from, to) of a file. */
static void zero_range(const char *p, long long from, long long to)
{
	for (long long i = from; i < to; i++)
		su_write_byte(p, i, 0);
}

static void damage_file(const char *p, enum damage d, uint64_t seed)
{
	long long size = su_file_size(p);
	cr_assert_geq(size, 0, "%s", p);
	switch (d) {
	case D_EMPTY:
		su_truncate_file(p, 0);
		break;
	case D_GARBAGE:
		su_garbage_file(p, (size_t)(size > 0 ? size : 256), seed);
		break;
	case D_DELETED:
		cr_assert_eq(unlink(p), 0);
		break;
	case D_TAIL_LOST: /* the second half of the entries */
		zero_range(p, size / 2 & ~15LL, size);
		break;
	case D_UNCUT:
		su_truncate_file(p, size + (1 << 16));
		break;
	default:
		cr_assert_fail();
	}
}

/* Every kind of damage to each index file of an older segment and of the
 * newest one: the log opens with the same content, the same offset
 * lookups and the same time lookups. */
Test(recovery, damaged_index_files_are_rebuilt)
{
	build();
	cr_assert_eq(su_open(&env), 0);
	static const char *const exts[] = {".index", ".timeindex"};
	for (int which = 0; which < 2; which++) {
		for (int x = 0; x < 2; x++) {
			for (int d = 0; d < D_COUNT; d++) {
				uint64_t base = which == 0 ? bases[2] : bases[nseg - 1];
				cr_assert_eq(su_close(&env), 0);
				damage_file(seg_path(base, exts[x]), (enum damage)d,
					    (uint64_t)(which * 100 + x * 10 + d));
				free(open_capture());
				cr_log_info("%s %s of segment %" PRIu64, damage_name[d], exts[x], base);
				su_check_content(&env, &model, 0);
				su_check_times(&env, &model);
				for (size_t i = 0; i < model.n; i++)
					su_check_read_one(&env, &model, model.v[i].hdr.base_offset);
				/* Appends still work where an index was rebuilt. */
				if (which == 1 && x == 1 && d == D_COUNT - 1)
					su_append_seq(&env, 600, 3, VMAX, false, 10, &model);
			}
		}
	}
	/* Once rebuilt, the older segment's indexes are accepted again. */
	cr_assert_eq(su_close(&env), 0);
	char *out = open_capture();
	cr_assert_null(strstr(out, "rebuilt"), "rebuilt again:\n%s", out);
	free(out);
	su_check_content(&env, &model, 0);
	su_check_times(&env, &model);
}

/* The time index lost entries at its end (written back after the offset
 * index's, then the crash), in segments of many small batches with
 * producer timestamps out of order: a greater timestamp may sit on a batch
 * between index entries.  Recovery reads again from the last time entry
 * that survived, so each segment's greatest timestamp and every time
 * lookup come back. */
Test(recovery, lost_time_entries_of_older_segments_are_read_again)
{
	env.cfg.index_interval_bytes = 4096;
	cr_assert_eq(su_open(&env), 0);
	su_append_seq(&env, 0, 3000, 40, true, 10, &model);
	cr_assert_eq(su_close(&env), 0);
	nseg = su_list_segments(env.dir, bases, MAX_SEGS);
	cr_assert_geq(nseg, 5, "only %zu segments", nseg);
	for (size_t i = 0; i + 1 < nseg; i++)
		damage_file(seg_path(bases[i], ".timeindex"), D_TAIL_LOST, 0);
	free(open_capture());
	int64_t want = INT64_MIN, got;
	for (size_t i = 0; i < model.n; i++)
		if (model.v[i].hdr.max_timestamp_ms > want)
			want = model.v[i].hdr.max_timestamp_ms;
	cr_assert_eq(rmq_log_max_timestamp(env.log, &got), 0);
	cr_assert_eq(got, want);
	su_check_times(&env, &model);
	/* And the entries read again were written back: a second open takes
	 * the indexes as they are. */
	reopen_quiet();
	su_check_times(&env, &model);
}

/* A rejected offset index of an older segment is rebuilt, and says so. */
Test(recovery, rebuilt_older_index_is_logged)
{
	build();
	damage_file(seg_path(bases[3], ".index"), D_GARBAGE, 7);
	char *out = open_capture();
	assert_logged(out, "rebuilt");
	free(out);
	su_check_content(&env, &model, 0);
}

/* ---- older segments ------------------------------------------------------- */

Test(recovery, flipped_byte_in_an_older_segment_fences_it)
{
	build();
	size_t k = 3;
	struct ent ents[MAX_ENTS];
	const char *p = seg_path(bases[k], ".log");
	size_t ne = file_entries(p, ents, MAX_ENTS);
	cr_assert_geq(ne, 3);
	/* The last batch: recovery of an older segment re-checks the batches
	 * after its last index entry. */
	const struct ent *e = &ents[ne - 1];
	su_flip_byte(p, (long long)(e->pos + e->records_pos + 3), 0x10);
	char *out = open_capture();
	assert_logged(out, "ERROR");
	assert_logged(out, "fenced");
	free(out);
	cr_assert_eq(rmq_log_end_offset(env.log), model.v[model.n - 1].hdr.base_offset +
							  model.v[model.n - 1].hdr.record_count);
	check_fenced(e->base, bases[k + 1]);
	/* The log takes appends; a reopen fences the same range again. */
	su_append_seq(&env, 700, 3, VMAX, false, 10, &model);
	reopen_quiet();
	check_fenced(e->base, bases[k + 1]);
}

/* With the older segment's index unusable too, its full scan finds the bad
 * batch in the middle. */
Test(recovery, flipped_byte_mid_older_segment_without_index)
{
	build();
	size_t k = 2;
	struct ent ents[MAX_ENTS];
	const char *p = seg_path(bases[k], ".log");
	size_t ne = file_entries(p, ents, MAX_ENTS);
	cr_assert_geq(ne, 6);
	const struct ent *e = &ents[ne / 2];
	su_flip_byte(p, (long long)(e->pos + e->records_pos + e->records_len - 1), 0x01);
	damage_file(seg_path(bases[k], ".index"), D_EMPTY, 0);
	char *out = open_capture();
	assert_logged(out, "fenced");
	free(out);
	check_fenced(e->base, bases[k + 1]);
}

/* The first segment fenced from its first batch: nothing of it is
 * readable, the rest is. */
Test(recovery, garbage_first_segment)
{
	build();
	long long size = su_file_size(seg_path(bases[0], ".log"));
	su_garbage_file(seg_path(bases[0], ".log"), (size_t)size, 5);
	char *out = open_capture();
	assert_logged(out, "fenced");
	free(out);
	check_fenced(0, bases[1]);
}

Test(recovery, missing_middle_segment_is_a_fenced_gap)
{
	build();
	size_t k = 4;
	for (int x = 0; x < 3; x++)
		cr_assert_eq(unlink(seg_path(bases[k], x == 0 ? ".log" : x == 1 ? ".index" : ".timeindex")),
			     0);
	char *out = open_capture();
	assert_logged(out, "gap");
	free(out);
	check_fenced(bases[k], bases[k + 1]);
	cr_assert_eq(rmq_log_start_offset(env.log), 0);
}

Test(recovery, missing_middle_log_file_only)
{
	build();
	size_t k = 5;
	cr_assert_eq(unlink(seg_path(bases[k], ".log")), 0);
	char *out = open_capture();
	assert_logged(out, "gap");
	free(out);
	check_fenced(bases[k], bases[k + 1]);
}

/* Truncating into the unreadable range of a fenced segment (a replica
 * repairing itself from its leader) cuts at the last good batch. */
Test(recovery, truncate_into_a_fenced_range)
{
	build();
	size_t k = 3;
	struct ent ents[MAX_ENTS];
	const char *p = seg_path(bases[k], ".log");
	size_t ne = file_entries(p, ents, MAX_ENTS);
	const struct ent *e = &ents[ne - 1];
	su_flip_byte(p, (long long)(e->pos + e->records_pos + 3), 0x10);
	free(open_capture());
	int rc = rmq_log_truncate(env.log, e->base + e->count - 1);
	cr_assert_eq(rc, 0, "truncate: %s", rmq_errname(rc));
	cr_assert_eq(rmq_log_end_offset(env.log), e->base);
	model_cut(e->base);
	su_check_content(&env, &model, 0);
	su_append_seq(&env, 800, 20, VMAX, false, 10, &model);
	su_check_content(&env, &model, 0);
	cr_assert_eq(su_close(&env), 0);
	char *out = open_capture();
	cr_assert_null(strstr(out, "fenced"), "still fenced after the repair:\n%s", out);
	free(out);
	su_check_content(&env, &model, 0);
}

/* Truncating below a fenced segment removes it with everything after. */
Test(recovery, truncate_below_a_fenced_segment)
{
	build();
	size_t k = 3;
	struct ent ents[MAX_ENTS];
	const char *p = seg_path(bases[k], ".log");
	size_t ne = file_entries(p, ents, MAX_ENTS);
	su_flip_byte(p, (long long)(ents[ne - 1].pos + ents[ne - 1].records_pos + 3), 0x10);
	free(open_capture());
	uint64_t cut = model.v[su_batch_of(&model, bases[k]) - 2].hdr.base_offset;
	cr_assert_eq(rmq_log_truncate(env.log, cut), 0);
	model_cut(cut);
	su_check_content(&env, &model, 0);
	su_append_seq(&env, 900, 40, VMAX, true, 10, &model);
	reopen_quiet();
	su_check_content(&env, &model, 0);
}

/* ---- the directory ------------------------------------------------------- */

Test(recovery, stray_files_are_ignored)
{
	build();
	char p[256];
	static const char *const files[] = {
		"junk.txt", "123.log", "00000000000000000000.log.bak", "0000000000000000000x.log",
		"00000000000088888888.index", "000000000000000000000.log", "99999999999999999999.log~",
	};
	for (size_t i = 0; i < sizeof(files) / sizeof(files[0]); i++) {
		snprintf(p, sizeof(p), "%s/%s", env.dir, files[i]);
		su_garbage_file(p, 100, i);
	}
	static const char *const dirs[] = {"subdir", "00000000000099999999.log"};
	for (size_t i = 0; i < 2; i++) {
		snprintf(p, sizeof(p), "%s/%s", env.dir, dirs[i]);
		cr_assert_eq(mkdir(p, 0755), 0);
	}
	char *out = open_capture();
	assert_logged(out, "junk.txt");
	assert_logged(out, "123.log");
	assert_logged(out, "subdir");
	assert_logged(out, "'00000000000099999999.log': not a regular file");
	free(out);
	su_check_content(&env, &model, 0);
	su_append_seq(&env, 1100, 5, VMAX, false, 10, &model);
	reopen_quiet();
	su_check_content(&env, &model, 0);
	/* Nothing of it was touched. */
	for (size_t i = 0; i < sizeof(files) / sizeof(files[0]); i++) {
		snprintf(p, sizeof(p), "%s/%s", env.dir, files[i]);
		cr_assert_eq(su_file_size(p), 100, "%s", files[i]);
	}
	struct stat st;
	snprintf(p, sizeof(p), "%s/%s", env.dir, dirs[1]);
	cr_assert_eq(stat(p, &st), 0);
	cr_assert(S_ISDIR(st.st_mode));
}

/* ---- empty logs ------------------------------------------------------------ */

/* A new log, made (directory, files, syncs) and closed without a batch. */
static void make_empty_log(void)
{
	su_rm_rf(env.dir);
	int rc = su_open(&env);
	cr_assert_eq(rc, 0, "open: %s", rmq_errname(rc));
	su_wait_idle(&env);
	cr_assert_eq(su_close(&env), 0);
}

struct fstate {
	long long size, blocks;
	struct timespec ctime, mtime;
};

static void fstate_of(const char *p, struct fstate *f)
{
	struct stat st;
	cr_assert_eq(stat(p, &st), 0, "%s: %s", p, strerror(errno));
	f->size = (long long)st.st_size;
	f->blocks = (long long)st.st_blocks;
	f->ctime = st.st_ctim;
	f->mtime = st.st_mtim;
}

static void fstate_same(const char *p, const struct fstate *a)
{
	struct fstate b;
	fstate_of(p, &b);
	cr_assert_eq(a->size, b.size, "%s changed size", p);
	cr_assert_eq(a->blocks, b.blocks, "%s changed blocks", p);
	cr_assert(a->ctime.tv_sec == b.ctime.tv_sec && a->ctime.tv_nsec == b.ctime.tv_nsec,
		  "%s was changed (ctime)", p);
	cr_assert(a->mtime.tv_sec == b.mtime.tv_sec && a->mtime.tv_nsec == b.mtime.tv_nsec,
		  "%s was written (mtime)", p);
}

/* Runs fn with every call that writes or syncs armed to fail (fsync and
 * fdatasync, on the ring or not; ftruncate; fallocate): fn asserts that it
 * succeeds.  Returns how many such calls were made. */
static uint32_t armed(void (*fn)(void))
{
	static const struct rmq_io_fault_rule rules[] = {
		{.kind = RMQ_IO_FAULT_FSYNC, .res = -EIO, .every = 1},
		{.kind = RMQ_IO_FAULT_FTRUNCATE, .res = -EIO, .every = 1},
		{.kind = RMQ_IO_FAULT_FALLOCATE, .res = -EIO, .every = 1},
	};
	cr_assert_eq(rmq_io_fault_arm(env.io, rules, 3, 1), 0);
	fn();
	unsigned n;
	const struct rmq_io_fault_rule *r = rmq_io_fault_rules(env.io, &n);
	cr_assert_eq(n, 3);
	uint32_t calls = r[0].matched + r[1].matched + r[2].matched;
	rmq_io_fault_disarm(env.io);
	return calls;
}

static void open_and_settle(void)
{
	int rc = su_open(&env);
	cr_assert_eq(rc, 0, "reopening an empty log: %s", rmq_errname(rc));
	su_wait_idle(&env);
}

static void close_ok(void)
{
	cr_assert_eq(su_close(&env), 0);
}

/*
 * Reopening a log that holds no batch writes and syncs nothing: a node with
 * 1,000 empty partitions started in 6 s here, each partition's open
 * rebuilding and fsyncing its index files, cutting the data file and
 * fallocating it again, and fsyncing all three (five fsyncs, three
 * ftruncates); and each close fdatasynced a file with nothing to write.
 * Also with the data file preallocated (as earlier versions left it, or a
 * reservation whose appends never reached the disk).  The log then works.
 */
Test(recovery, reopened_empty_log_is_not_rewritten)
{
	static const char *const ext[] = {".log", ".index", ".timeindex"};
	env.cfg.fsync = RMQ_FSYNC_ALWAYS;
	env.cfg.prealloc = RMQ_PREALLOC_FALLOCATE;
	for (int prealloc = 0; prealloc < 2; prealloc++) {
		struct su_batches m = {0};
		struct fstate before[4];
		make_empty_log();
		if (prealloc) {
			int fd = open(seg_path(0, ".log"), O_RDWR);
			cr_assert_geq(fd, 0);
			cr_assert_eq(fallocate(fd, 0, 0, (off_t)env.cfg.segment_bytes / 2), 0);
			close(fd);
		}
		for (int k = 0; k < 3; k++)
			fstate_of(seg_path(0, ext[k]), &before[k]);
		fstate_of(env.dir, &before[3]);
		/* Later than the files' times by more than a clock tick. */
		nanosleep(&(struct timespec){0, 20 * 1000 * 1000}, NULL);
		cr_assert_eq(armed(open_and_settle), 0, "the reopen wrote or synced");
		cr_assert_eq(rmq_log_end_offset(env.log), 0);
		cr_assert_eq(armed(close_ok), 0, "closing an idle log synced");
		for (int k = 0; k < 3; k++)
			fstate_same(seg_path(0, ext[k]), &before[k]);
		fstate_same(env.dir, &before[3]);
		open_and_settle();
		su_append_seq(&env, 0, 20, VMAX, true, 10, &m);
		reopen_quiet();
		su_check_content(&env, &m, 0);
		cr_assert_eq(su_close(&env), 0);
		su_batches_free(&m);
	}
}

/*
 * An empty newest segment whose offset index holds entries (written back
 * through the mapping while their batches never reached the data file) is
 * not taken as untouched: the entries are cleared, so none can pass for
 * one of the batches appended next, and everything reads back after the
 * segment is rolled and reopened as an older one.
 */
Test(recovery, stale_index_entries_of_an_empty_segment_are_cleared)
{
	struct rmq_index_entry stale[6];
	make_empty_log();
	for (uint32_t i = 0; i < 6; i++)
		stale[i] = (struct rmq_index_entry){i * 3, i * 1500};
	int fd = open(seg_path(0, ".index"), O_RDWR);
	cr_assert_geq(fd, 0);
	cr_assert_eq(pwrite(fd, stale, sizeof(stale), 0), (ssize_t)sizeof(stale));
	close(fd);
	free(open_capture());
	uint8_t page[4096];
	fd = open(seg_path(0, ".index"), O_RDONLY);
	cr_assert_geq(fd, 0);
	cr_assert_eq(pread(fd, page, sizeof(page), 0), (ssize_t)sizeof(page));
	close(fd);
	for (size_t i = 0; i < sizeof(page); i++)
		cr_assert_eq(page[i], 0, "byte %zu of the index survived the reopen", i);
	su_append_until_roll(&env, 0, VMAX, &model);
	su_append_seq(&env, 1000, 3, VMAX, false, 10, &model);
	reopen_quiet();
	su_check_content(&env, &model, 0);
	su_check_times(&env, &model);
}
