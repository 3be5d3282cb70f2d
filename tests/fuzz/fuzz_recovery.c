/* SPDX-License-Identifier: Apache-2.0 */
/*
 * fuzz_recovery - opening a partition directory whose files are the input
 * (src/storage: log.c recovery, segment.c, the indexes).
 *
 * Input:
 *
 *   OFFSET  SIZE  MEANING
 *   0       1     options: bit 0 recycle_segments, bit 1 fsync=always with
 *                 O_DIRECT writes, bit 2 retention down to the active
 *                 segment after opening, bit 3 rmq_log_truncate() after
 *                 opening, bits 4-7 how far past the log start it cuts
 *   then files, each:
 *   0       1     kind % 6: 0 B.log, 1 B.index, 2 B.timeindex,
 *                 3 B.recycled, 4 spare.log, 5 a file rmq does not know
 *   1       8     B, the segment's base offset, little-endian
 *   9       2     length L, little-endian (clipped to what remains)
 *   11      L     the file's bytes
 *
 * Each input: write the files into an empty directory, rmq_log_open() it
 * (recovery), then check what the log promises (log.h, segment.h):
 * - every batch of the newest segment up to the high watermark parses,
 *   carries a correct CRC-32C and continues the offsets before it (recovery
 *   scanned it whole: nothing else may be served);
 * - rmq_log_scan walks every segment without fault; time lookups answer;
 * - one append after recovery gets the offset the log said was next and
 *   reads back;
 * - closing and opening the directory again finds the same high watermark
 *   and cuts nothing: recovery leaves a log that needs no recovery.
 *
 * Seeds: FZ_RECOVERY_SEEDS=<dir> fuzz_recovery writes real logs with the
 * storage API (rolls, compressed payloads, recycled segments, retention)
 * and packs their directories into <dir> in the format above.
 *
 * Reproduce: build/fuzz/tests/fuzz/fuzz_recovery <input file>
 */
#include "fuzz_node.h" /* fz_tmp_root() only: this harness runs no node */

#include "core/crc32c.h"
#include "core/error.h"
#include "core/io.h"
#include "core/log.h"
#include "core/pbwire.h"
#include "storage/batch.h"
#include "storage/log.h"
#include "storage/segment.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <ftw.h>
#include <inttypes.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#define WAIT_MS_MAX 20000

static struct rmq_io *io;
static char root[256], dir[320];

__attribute__((noreturn, format(printf, 1, 2))) static void fail(const char *fmt, ...)
{
	va_list ap;
	fprintf(stderr, "fuzz_recovery: ");
	va_start(ap, fmt);
	vfprintf(stderr, fmt, ap);
	va_end(ap);
	fprintf(stderr, "\n");
	abort();
}

static uint64_t clock_ms = 1700000000000ULL;
static uint64_t fake_now_ms(void)
{
	return clock_ms;
}

static uint64_t mono_ms(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (uint64_t)ts.tv_sec * 1000 + (uint64_t)ts.tv_nsec / 1000000;
}

static int rm_entry(const char *path, const struct stat *st, int flag, struct FTW *ftw)
{
	(void)st;
	(void)flag;
	return ftw->level > 0 ? remove(path) : 0; /* keep the directory itself */
}

static void empty_dir(const char *d)
{
	nftw(d, rm_entry, 16, FTW_DEPTH | FTW_PHYS);
}

static void remove_root(void)
{
	nftw(root, rm_entry, 16, FTW_DEPTH | FTW_PHYS);
	rmdir(root);
}

static void config(struct rmq_log_config *cfg, unsigned opts)
{
	rmq_log_config_default(cfg);
	cfg->segment_bytes = 16 << 10; /* small files, several segments */
	cfg->segment_ms = 0;
	cfg->retention_bytes = -1;
	cfg->retention_ms = -1;
	cfg->index_interval_bytes = 512;
	cfg->write_buffer_bytes = 64 << 10;
	cfg->max_inflight_writes = 8;
	cfg->fsync = opts & 2 ? RMQ_FSYNC_ALWAYS : RMQ_FSYNC_NEVER;
	cfg->direct_writes = (opts & 2) != 0;
	cfg->dsync_writes = (opts & 2) != 0;
	cfg->prealloc = RMQ_PREALLOC_NONE;
	cfg->recycle_segments = (opts & 1) != 0;
	cfg->now_ms = fake_now_ms;
}

/* ---- appends ----------------------------------------------------------------------- */

struct append {
	struct rmq_append a;
	bool done;
	int res;
};

static void append_cb(struct rmq_append *a, int res)
{
	struct append *x = (struct append *)a;
	x->done = true;
	x->res = res;
}

/* Runs the ring until pred(arg) holds; bounded. */
static void run_until(struct rmq_log *log, bool (*pred)(void *), void *arg, const char *what)
{
	uint64_t until = mono_ms() + WAIT_MS_MAX;
	while (!pred(arg)) {
		rmq_log_flush(log);
		if (mono_ms() > until)
			fail("HANG: %s did not complete within %d ms", what, WAIT_MS_MAX);
		int rc = rmq_io_wait(io, 50ULL * 1000000);
		if (rc < 0 && rc != -EINTR && rc != -ETIME)
			fail("rmq_io_wait: %s", rmq_strerror(rc));
	}
}

static bool append_done(void *arg)
{
	return ((struct append *)arg)->done;
}

static bool log_idle(void *arg)
{
	return rmq_log_idle(arg);
}

/* n records of a few bytes as field-7 elements into buf. */
static size_t make_records(uint8_t *buf, size_t cap, unsigned n, uint64_t seed, int64_t ts_ms)
{
	size_t len = 0;
	for (unsigned i = 0; i < n; i++) {
		uint8_t rec[128];
		size_t r = 0;
		char key[24];
		int kl = snprintf(key, sizeof(key), "k%" PRIu64 "-%u", seed, i);
		r += rmq_pb_put_len(rec + r, 1, (size_t)kl);
		memcpy(rec + r, key, (size_t)kl);
		r += (size_t)kl;
		size_t vl = (size_t)((seed * 7 + i * 13) % 48);
		r += rmq_pb_put_len(rec + r, 2, vl);
		memset(rec + r, 'a' + (int)(i % 26), vl);
		r += vl;
		if (ts_ms >= 0) {
			uint8_t t[24];
			size_t tl = rmq_pb_put_uint(t, 1, (uint64_t)(ts_ms / 1000));
			r += rmq_pb_put_len(rec + r, 4, tl);
			memcpy(rec + r, t, tl);
			r += tl;
		}
		if (len + 1 + RMQ_PB_VARINT_MAX + r > cap)
			break;
		len += rmq_pb_put_len(buf + len, 7, r);
		memcpy(buf + len, rec, r);
		len += r;
	}
	return len;
}

/* Appends one batch and waits for it.  Returns the append's result. */
static int append_one(struct rmq_log *log, unsigned nrec, uint64_t seed, bool compressed_like,
		      uint64_t *base)
{
	static uint8_t recs[16 << 10];
	struct append x;
	memset(&x, 0, sizeof(x));
	rmq_batch_hdr_init(&x.a.hdr);
	size_t len = make_records(recs, sizeof(recs), nrec, seed, (int64_t)clock_ms - 5000);
	if (compressed_like) {
		/* An opaque payload: the log stores compressed bytes unread. */
		x.a.hdr.compression = 2;
		x.a.hdr.record_count = nrec;
	} else {
		x.a.hdr.record_count = nrec;
	}
	x.a.hdr.crc32 = rmq_crc32c(0, recs, len);
	x.a.cb = append_cb;
	struct iovec iov = {recs, len};
	int rc;
	uint64_t until = mono_ms() + WAIT_MS_MAX;
	for (;;) {
		rc = rmq_log_append(log, &x.a, &iov, 1);
		if (rc != RMQ_EFULL)
			break;
		if (mono_ms() > until)
			fail("HANG: an append stayed RMQ_EFULL for %d ms", WAIT_MS_MAX);
		rmq_log_flush(log);
		rmq_io_wait(io, 10ULL * 1000000);
	}
	if (rc < 0)
		return rc;
	run_until(log, append_done, &x, "an append");
	*base = x.a.hdr.base_offset;
	return x.res;
}

/* ---- checks -------------------------------------------------------------------------- */

static long count_records(const uint8_t *p, size_t len)
{
	const uint8_t *end = p + len;
	long n = 0;
	while (p < end) {
		uint32_t f, w;
		uint64_t num = 0;
		const uint8_t *val = NULL;
		size_t vlen = 0;
		size_t k = rmq_pb_next(p, end, &f, &w, &num, &val, &vlen);
		if (k == 0 || f != 7 || w != RMQ_PB_LEN)
			return -1;
		n++;
		p += k;
	}
	return n;
}

/* Every batch from `from` to the HW: whole, CRC-checked, in order. */
static void check_reads(struct rmq_log *log, uint64_t from)
{
	uint64_t next = from, hw = rmq_log_high_watermark(log);
	while (next < hw) {
		struct rmq_log_read r;
		int rc = rmq_log_read(log, next, 4096, &r);
		if (rc < 0)
			fail("reading the newest segment at offset %" PRIu64 " (HW %" PRIu64 "): %s",
			     next, hw, rmq_strerror(rc));
		if (r.nslices == 0)
			fail("a read at offset %" PRIu64 " below the HW %" PRIu64 " returned nothing",
			     next, hw);
		for (unsigned i = 0; i < r.nslices; i++) {
			const uint8_t *p = r.slices[i].data;
			uint32_t pos = 0;
			while (pos < r.slices[i].len) {
				struct rmq_batch_view v;
				int n = rmq_batch_parse(p + pos, r.slices[i].len - pos, &v);
				if (n <= 0)
					fail("a served batch at offset %" PRIu64 " does not parse: %s", next,
					     rmq_strerror(n));
				if (rmq_batch_check_crc(p + pos, &v) != 0)
					fail("the served batch at offset %" PRIu64 " has a wrong CRC-32C",
					     v.hdr.base_offset);
				if (v.hdr.base_offset > next ||
				    v.hdr.base_offset + v.hdr.record_count <= next)
					fail("a read at offset %" PRIu64 " served offsets %" PRIu64
					     "..%" PRIu64,
					     next, v.hdr.base_offset,
					     v.hdr.base_offset + v.hdr.record_count - 1);
				if (v.hdr.compression == 0 &&
				    count_records(p + pos + v.records_pos, v.records_len) !=
					    (long)v.hdr.record_count)
					fail("the batch at offset %" PRIu64 " holds another number of records than it says",
					     v.hdr.base_offset);
				next = v.hdr.base_offset + v.hdr.record_count;
				pos += (uint32_t)n;
			}
		}
		if (r.next_offset != next)
			fail("a read says it ends at %" PRIu64 " but its batches end at %" PRIu64,
			     r.next_offset, next);
		rmq_log_read_done(log, &r);
		if (next > hw)
			fail("a read served offset %" PRIu64 " past the HW %" PRIu64, next - 1, hw);
	}
}

static int scan_one(void *arg, const uint8_t *entry, const struct rmq_batch_view *v)
{
	(void)arg;
	struct rmq_batch_view w;
	(void)rmq_batch_parse(entry, v->entry_len, &w); /* bounded by the entry: no fault */
	return 0;
}

/* ---- the harness ------------------------------------------------------------------------ */

static void write_file(const char *name, const uint8_t *p, size_t len)
{
	char path[512];
	snprintf(path, sizeof(path), "%s/%s", dir, name);
	int fd = open(path, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
	if (fd < 0)
		fail("create %s: %s", path, strerror(errno));
	size_t off = 0;
	while (off < len) {
		ssize_t n = write(fd, p + off, len - off);
		if (n <= 0)
			fail("write %s: %s", path, strerror(errno));
		off += (size_t)n;
	}
	close(fd);
}

static const char *const kinds[] = {".log", ".index", ".timeindex", ".recycled"};

static void unpack(const uint8_t *p, const uint8_t *end)
{
	while (end - p >= 11) {
		unsigned kind = p[0] % 6;
		uint64_t base = 0;
		for (int i = 7; i >= 0; i--)
			base = base << 8 | p[1 + i];
		size_t len = (size_t)p[9] | (size_t)p[10] << 8;
		p += 11;
		if (len > (size_t)(end - p))
			len = (size_t)(end - p);
		char name[64];
		if (kind < 4)
			snprintf(name, sizeof(name), "%020" PRIu64 "%s", base, kinds[kind]);
		else if (kind == 4)
			snprintf(name, sizeof(name), "%s", RMQ_SEGMENT_SPARE);
		else
			snprintf(name, sizeof(name), "%" PRIu64 ".tmp", base);
		write_file(name, p, len);
		p += len;
	}
}

static void run_input(unsigned opts, const uint8_t *files, size_t len)
{
	struct rmq_log_config cfg;
	struct rmq_log *log = NULL;
	config(&cfg, opts);
	empty_dir(dir);
	unpack(files, files + len);

	int rc = rmq_log_open(io, dir, &cfg, &log);
	if (rc < 0)
		return; /* refusing a directory is allowed; crashing is not */
	uint64_t start = rmq_log_start_offset(log), hw = rmq_log_high_watermark(log);
	uint64_t active = rmq_log_active_base(log), end = rmq_log_end_offset(log);
	if (start > active || active > hw || hw != end)
		fail("after recovery: start %" PRIu64 ", active segment %" PRIu64 ", HW %" PRIu64
		     ", end %" PRIu64,
		     start, active, hw, end);
	check_reads(log, active);
	(void)rmq_log_scan(log, start, scan_one, NULL);
	int64_t maxts;
	if (rmq_log_max_timestamp(log, &maxts) == 0) {
		uint64_t off;
		(void)rmq_log_offset_for_time(log, maxts, &off);
		(void)rmq_log_offset_for_time(log, maxts - 1000, &off);
	}
	uint64_t off;
	(void)rmq_log_offset_for_time(log, 0, &off);

	if (opts & 4) {
		rmq_log_set_limits(log, cfg.segment_bytes, 0, 1, -1);
		(void)rmq_log_retain(log);
	}
	if (opts & 8) {
		uint64_t s = rmq_log_start_offset(log);
		(void)rmq_log_truncate(log, s + ((opts >> 4) & 15));
	}

	uint64_t next = rmq_log_end_offset(log), base = 0;
	rc = append_one(log, 3, next, false, &base);
	if (rc == 0) {
		if (base != next)
			fail("an append after recovery got offset %" PRIu64 ", the log said %" PRIu64,
			     base, next);
		check_reads(log, base);
	}
	run_until(log, log_idle, log, "the log going idle");
	hw = rmq_log_high_watermark(log);
	rc = rmq_log_close(log);
	log = NULL;
	if (rc < 0)
		return; /* a failed log: its files are recovery's business again */

	/* Recovery must leave a log that needs none. */
	rc = rmq_log_open(io, dir, &cfg, &log);
	if (rc < 0)
		fail("reopening what recovery left failed: %s", rmq_strerror(rc));
	const struct rmq_log_stats *st = rmq_log_stats(log);
	if (rmq_log_high_watermark(log) != hw || st->truncated_bytes != 0)
		fail("reopening what recovery left: HW %" PRIu64 " (was %" PRIu64 "), %" PRIu64
		     " bytes cut",
		     rmq_log_high_watermark(log), hw, st->truncated_bytes);
	check_reads(log, rmq_log_active_base(log));
	rmq_log_close(log);
}

/* ---- seeds --------------------------------------------------------------------------- */

static void pack_dir(const char *out_path, unsigned opts)
{
	FILE *out = fopen(out_path, "wb");
	if (!out)
		fail("cannot write %s", out_path);
	fputc((int)opts, out);
	DIR *d = opendir(dir);
	struct dirent *e;
	while ((e = readdir(d)) != NULL) {
		const char *name = e->d_name;
		unsigned kind;
		uint64_t base = 0;
		const char *dot = strchr(name, '.');
		if (!dot || name[0] == '.')
			continue;
		if (strcmp(name, RMQ_SEGMENT_SPARE) == 0) {
			kind = 4;
		} else {
			for (kind = 0; kind < 4; kind++)
				if (strcmp(dot, kinds[kind]) == 0)
					break;
			if (kind == 4)
				continue;
			base = strtoull(name, NULL, 10);
		}
		char path[512];
		snprintf(path, sizeof(path), "%s/%s", dir, name);
		FILE *f = fopen(path, "rb");
		static uint8_t buf[1 << 16];
		size_t n = f ? fread(buf, 1, sizeof(buf), f) : 0;
		if (f)
			fclose(f);
		uint8_t hdr[11];
		hdr[0] = (uint8_t)kind;
		for (int i = 0; i < 8; i++)
			hdr[1 + i] = (uint8_t)(base >> (8 * i));
		hdr[9] = (uint8_t)n;
		hdr[10] = (uint8_t)(n >> 8);
		fwrite(hdr, 1, sizeof(hdr), out);
		fwrite(buf, 1, n, out);
	}
	closedir(d);
	fclose(out);
}

static void make_seeds(const char *out_dir)
{
	struct {
		const char *name;
		unsigned opts, batches, records;
		bool compressed, retain;
	} seeds[] = {
		{"empty", 0, 0, 1, false, false},
		{"one-batch", 0, 1, 3, false, false},
		{"few-batches", 0, 12, 5, false, false},
		{"compressed-payloads", 0, 10, 4, true, false},
		{"rolled", 0, 100, 8, false, false},
		{"rolled-retained-recycled", 1 | 4, 150, 8, false, true},
		{"direct-writes", 2, 30, 4, false, false},
		{"truncate", 8 | (3 << 4), 40, 2, false, false},
	};
	for (size_t i = 0; i < sizeof(seeds) / sizeof(seeds[0]); i++) {
		struct rmq_log_config cfg;
		struct rmq_log *log;
		config(&cfg, seeds[i].opts);
		empty_dir(dir);
		if (rmq_log_open(io, dir, &cfg, &log) < 0)
			fail("seed %s: open", seeds[i].name);
		for (unsigned b = 0; b < seeds[i].batches; b++) {
			uint64_t base;
			clock_ms += 10;
			int rc = append_one(log, seeds[i].records, b, seeds[i].compressed && b % 2, &base);
			if (rc < 0)
				fail("seed %s: append: %s", seeds[i].name, rmq_strerror(rc));
			if (seeds[i].retain && b % 50 == 49) {
				rmq_log_set_limits(log, cfg.segment_bytes, 0, 24 << 10, -1);
				(void)rmq_log_retain(log);
			}
		}
		run_until(log, log_idle, log, "seed: idle");
		rmq_log_close(log);
		char path[512];
		snprintf(path, sizeof(path), "%s/%s", out_dir, seeds[i].name);
		pack_dir(path, seeds[i].opts);
	}
}

int LLVMFuzzerInitialize(int *argc, char ***argv)
{
	(void)argc;
	(void)argv;
	const char *level = getenv("FZ_LOG_LEVEL");
	rmq_log_set_level(level ? (enum rmq_log_level)rmq_log_parse_level(level) : RMQ_LOG_OFF);
	struct rmq_io_config ic = {.entries = 256, .fixed_buffers = 4};
	int rc = rmq_io_create(&ic, &io);
	if (rc < 0)
		fail("rmq_io_create: %s (io_uring is required)", rmq_strerror(rc));
	snprintf(root, sizeof(root), "%s/rmq-fuzz-recovery-XXXXXX", fz_tmp_root());
	if (!mkdtemp(root))
		fail("mkdtemp: %s", strerror(errno));
	snprintf(dir, sizeof(dir), "%s/p", root);
	if (mkdir(dir, 0755) < 0)
		fail("mkdir %s: %s", dir, strerror(errno));
	atexit(remove_root);
	const char *seeds = getenv("FZ_RECOVERY_SEEDS");
	if (seeds) {
		make_seeds(seeds);
		exit(0);
	}
	return 0;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	if (size < 1)
		return 0;
	run_input(data[0], data + 1, size - 1);
	return 0;
}
