/* SPDX-License-Identifier: Apache-2.0 */
/* storage_util.c - helpers shared by the storage tests (see storage_util.h). */
#include "storage_util.h"

#include "core/crc32c.h"
#include "core/error.h"
#include "core/log.h"
#include "core/pbwire.h"

#include <criterion/criterion.h>
#include <dirent.h>
#include <fcntl.h>
#include <ftw.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

/* Guards against a hang when a completion never comes: a wait that sees
 * no completion for SU_WAIT_NS, SU_STALLS_MAX times in a row, fails the
 * test.  Never reached by a passing test. */
#define SU_WAIT_NS (1000ULL * 1000 * 1000)
#define SU_STALLS_MAX 10

/* One blocking wait on the ring; *stalls counts waits in a row that ran
 * no completion. */
void su_wait_once(struct su_env *e, int *stalls, const char *what)
{
	int n = rmq_io_wait(e->io, SU_WAIT_NS);
	cr_assert_geq(n, 0, "rmq_io_wait: %s", rmq_strerror(n));
	*stalls = n > 0 ? 0 : *stalls + 1;
	cr_assert_lt(*stalls, SU_STALLS_MAX, "%s: no completion for %d s", what, SU_STALLS_MAX);
}

/* ---- deterministic inputs ------------------------------------------- */

uint64_t su_rand(uint64_t *state)
{
	uint64_t z = (*state += 0x9E3779B97F4A7C15ULL);

	z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ULL;
	z = (z ^ (z >> 27)) * 0x94D049BB133111EBULL;
	return z ^ (z >> 31);
}

void su_fill_random(uint8_t *p, size_t len, uint64_t seed)
{
	uint64_t st = seed;

	for (size_t i = 0; i < len; i++)
		p[i] = (uint8_t)su_rand(&st);
}

size_t su_records(uint8_t *buf, size_t cap, const struct su_record *r, unsigned n)
{
	size_t off = 0;

	for (unsigned i = 0; i < n; i++) {
		size_t body = 0;
		if (r[i].key_len)
			body += 1 + rmq_pb_varint_len(r[i].key_len) + r[i].key_len;
		if (r[i].value_len)
			body += 1 + rmq_pb_varint_len(r[i].value_len) + r[i].value_len;
		if (off + 1 + RMQ_PB_VARINT_MAX + body > cap)
			return 0;
		off += rmq_pb_put_len(buf + off, 7, body);
		if (r[i].key_len) {
			off += rmq_pb_put_len(buf + off, 1, r[i].key_len);
			memcpy(buf + off, r[i].key, r[i].key_len);
			off += r[i].key_len;
		}
		if (r[i].value_len) {
			off += rmq_pb_put_len(buf + off, 2, r[i].value_len);
			memcpy(buf + off, r[i].value, r[i].value_len);
			off += r[i].value_len;
		}
	}
	return off;
}

size_t su_records_gen(uint8_t *buf, size_t cap, uint64_t seed, unsigned count, size_t value_max)
{
	uint64_t st = seed;
	size_t off = 0;

	for (unsigned j = 0; j < count; j++) {
		char key[48];
		uint8_t value[4096];
		size_t vlen = value_max ? (size_t)(su_rand(&st) % (value_max + 1)) : 0;
		if (vlen > sizeof(value))
			vlen = sizeof(value);
		su_fill_random(value, vlen, su_rand(&st));
		int klen = snprintf(key, sizeof(key), "k%" PRIu64 "-%u", seed, j);
		struct su_record r = {key, (size_t)klen, value, vlen};
		size_t n = su_records(buf + off, cap - off, &r, 1);
		if (n == 0)
			return 0;
		off += n;
	}
	return off;
}

/* ---- fake clock ------------------------------------------------------- */

uint64_t su_clock_ms = 1700000000000ULL;

uint64_t su_now_ms(void)
{
	return su_clock_ms;
}

/* ---- environment ------------------------------------------------------ */

void su_config(struct rmq_log_config *cfg)
{
	rmq_log_config_default(cfg);
	cfg->segment_bytes = 64 << 10;
	cfg->segment_ms = 0;
	cfg->retention_bytes = -1;
	cfg->retention_ms = -1;
	cfg->index_interval_bytes = 1024;
	cfg->write_buffer_bytes = 256 << 10;
	cfg->max_inflight_writes = 8;
	cfg->fsync = RMQ_FSYNC_NEVER;
	cfg->prealloc = RMQ_PREALLOC_NONE;
	cfg->zero_ahead_bytes = 32 << 10;
	cfg->now_ms = su_now_ms;
}

void su_env_init(struct su_env *e)
{
	struct rmq_io_config ic = {.entries = 256, .fixed_buffers = 4};

	memset(e, 0, sizeof(*e));
	int rc = rmq_io_create(&ic, &e->io);
	if (rc == -ENOSYS || rc == -EPERM)
		cr_skip_test("io_uring unavailable: %s", rmq_strerror(rc));
	cr_assert_eq(rc, 0, "rmq_io_create: %s", rmq_strerror(rc));
	snprintf(e->dir, sizeof(e->dir), "/tmp/rmq-storage-XXXXXX");
	cr_assert_not_null(mkdtemp(e->dir), "mkdtemp");
	su_config(&e->cfg);
	su_clock_ms = 1700000000000ULL;
	/* Only warnings and errors: the tests that assert on them capture. */
	rmq_log_set_level(RMQ_LOG_WARN);
}

void su_env_fini(struct su_env *e)
{
	if (e->log) {
		rmq_log_close(e->log);
		e->log = NULL;
	}
	if (e->io) {
		rmq_io_destroy(e->io);
		e->io = NULL;
	}
	if (e->dir[0]) {
		su_rm_rf(e->dir);
		e->dir[0] = '\0';
	}
}

int su_open(struct su_env *e)
{
	cr_assert_null(e->log, "log already open");
	return rmq_log_open(e->io, e->dir, &e->cfg, &e->log);
}

int su_close(struct su_env *e)
{
	int rc = rmq_log_close(e->log);
	e->log = NULL;
	return rc;
}

void su_reopen(struct su_env *e)
{
	int rc = su_close(e);
	cr_assert_eq(rc, 0, "close: %s", rmq_strerror(rc));
	rc = su_open(e);
	cr_assert_eq(rc, 0, "reopen: %s", rmq_strerror(rc));
}

/* ---- appends ------------------------------------------------------------ */

static void su_append_cb(struct rmq_append *a, int res)
{
	struct su_append *sa = (struct su_append *)a;

	cr_assert_not(sa->done, "append callback ran twice");
	sa->done = true;
	sa->res = res;
}

int su_append_async(struct su_env *e, struct su_append *sa, const void *recs, size_t len)
{
	struct iovec iov = {(void *)recs, len};
	int rc;

	sa->a.cb = su_append_cb;
	sa->done = false;
	sa->res = 1;
	for (int stalls = 0;;) {
		rc = rmq_log_append(e->log, &sa->a, &iov, 1);
		if (rc != RMQ_EFULL)
			break;
		rmq_log_flush(e->log);
		su_wait_once(e, &stalls, "RMQ_EFULL never cleared");
	}
	return rc;
}

int su_append(struct su_env *e, struct rmq_batch_hdr *hdr, const void *recs, size_t len)
{
	return su_append_as(e, hdr, recs, len, false);
}

int su_append_as(struct su_env *e, struct rmq_batch_hdr *hdr, const void *recs, size_t len,
		 bool replica)
{
	struct su_append sa;

	memset(&sa, 0, sizeof(sa));
	sa.a.hdr = *hdr;
	sa.a.replica = replica;
	int rc = su_append_async(e, &sa, recs, len);
	if (rc < 0)
		return rc;
	*hdr = sa.a.hdr;
	for (int stalls = 0; !sa.done;) {
		rmq_log_flush(e->log);
		if (e->cfg.fsync == RMQ_FSYNC_INTERVAL)
			rmq_log_sync_tick(e->log);
		su_wait_once(e, &stalls, "append callback never ran");
	}
	return sa.res;
}

void su_wait_idle(struct su_env *e)
{
	for (int stalls = 0;;) {
		rmq_log_flush(e->log);
		if (rmq_log_idle(e->log))
			return;
		su_wait_once(e, &stalls, "log never went idle");
	}
}

/* ---- reading everything ---------------------------------------------- */

void su_batches_push(struct su_batches *b, const struct rmq_batch_hdr *hdr, uint32_t entry_len,
		     const void *records, size_t records_len)
{
	if (b->n == b->cap) {
		b->cap = b->cap ? b->cap * 2 : 64;
		b->v = realloc(b->v, b->cap * sizeof(*b->v));
		cr_assert_not_null(b->v);
	}
	struct su_batch *x = &b->v[b->n++];
	x->hdr = *hdr;
	x->entry_len = entry_len;
	x->records_len = (uint32_t)records_len;
	x->records = malloc(records_len ? records_len : 1);
	cr_assert_not_null(x->records);
	memcpy(x->records, records, records_len);
}

void su_batches_free(struct su_batches *b)
{
	for (size_t i = 0; i < b->n; i++)
		free(b->v[i].records);
	free(b->v);
	memset(b, 0, sizeof(*b));
}

int su_collect(struct rmq_log *log, uint64_t from, uint64_t max_bytes, struct su_batches *out)
{
	uint64_t off = from;

	for (;;) {
		struct rmq_log_read r;
		int rc = rmq_log_read(log, off, max_bytes, &r);
		if (rc < 0)
			return rc;
		if (r.nslices == 0) {
			cr_assert_eq(off, r.high_watermark, "no slices below the HW at %" PRIu64, off);
			return 0;
		}
		cr_assert_leq(r.first_offset, off);
		cr_assert_leq(r.next_offset, r.high_watermark, "read past the HW");
		uint64_t expect = r.first_offset, bytes = 0;
		for (unsigned i = 0; i < r.nslices; i++) {
			const struct rmq_log_slice *sl = &r.slices[i];
			bytes += sl->len;
			for (uint32_t p = 0; p < sl->len;) {
				struct rmq_batch_view v;
				int n = rmq_batch_parse(sl->data + p, sl->len - p, &v);
				cr_assert_gt(n, 0, "slice %u at %u does not parse: %s", i, p,
					     rmq_errname(n));
				cr_assert_eq(rmq_batch_check_crc(sl->data + p, &v), 0);
				cr_assert_eq(v.hdr.base_offset, expect, "offsets not continuous");
				if (out)
					su_batches_push(out, &v.hdr, v.entry_len,
							sl->data + p + v.records_pos, v.records_len);
				expect = rmq_batch_last_offset(&v.hdr) + 1;
				p += (uint32_t)n;
			}
		}
		cr_assert_eq(bytes, r.bytes);
		cr_assert_eq(expect, r.next_offset);
		cr_assert_gt(r.next_offset, off, "a read did not progress");
		if (r.bytes > max_bytes) {
			/* Only a single batch may exceed max_bytes. */
			cr_assert_eq(r.nslices, 1);
			struct rmq_batch_view v;
			cr_assert_eq(rmq_batch_parse(r.slices[0].data, r.slices[0].len, &v),
				     (int)r.bytes);
		}
		off = r.next_offset;
		rmq_log_read_done(log, &r);
	}
}

void su_assert_same(const struct su_batches *got, const struct su_batches *want, bool check_hdr)
{
	cr_assert_eq(got->n, want->n, "batch count: got %zu want %zu", got->n, want->n);
	for (size_t i = 0; i < got->n; i++) {
		const struct su_batch *g = &got->v[i], *w = &want->v[i];
		const struct rmq_batch_hdr *a = &g->hdr, *b = &w->hdr;
		cr_assert_eq(a->base_offset, b->base_offset, "batch %zu base", i);
		cr_assert_eq(a->record_count, b->record_count, "batch %zu count", i);
		cr_assert_eq(g->records_len, w->records_len, "batch %zu records length", i);
		cr_assert_eq(memcmp(g->records, w->records, g->records_len), 0,
			     "batch %zu records differ", i);
		if (!check_hdr)
			continue;
		cr_assert_eq(a->compression, b->compression, "batch %zu", i);
		cr_assert_eq(a->crc32, b->crc32, "batch %zu", i);
		cr_assert_eq(a->producer_id, b->producer_id, "batch %zu", i);
		cr_assert_eq(a->producer_epoch, b->producer_epoch, "batch %zu", i);
		cr_assert_eq(a->base_sequence, b->base_sequence, "batch %zu", i);
		cr_assert_eq(a->leader_epoch, b->leader_epoch, "batch %zu", i);
		cr_assert_eq(a->first_timestamp_ms, b->first_timestamp_ms, "batch %zu", i);
		cr_assert_eq(a->max_timestamp_ms, b->max_timestamp_ms, "batch %zu", i);
		cr_assert_eq(a->log_append_time_ms, b->log_append_time_ms, "batch %zu", i);
		cr_assert_eq(a->is_transactional, b->is_transactional, "batch %zu", i);
		cr_assert_eq(a->is_control, b->is_control, "batch %zu", i);
	}
}

/* ---- files ------------------------------------------------------------ */

char *su_seg_file(char *buf, size_t len, const char *dir, uint64_t base, const char *ext)
{
	snprintf(buf, len, "%s/%020" PRIu64 "%s", dir, base, ext);
	return buf;
}

static int cmp_u64(const void *a, const void *b)
{
	uint64_t x = *(const uint64_t *)a, y = *(const uint64_t *)b;
	return x < y ? -1 : x > y;
}

size_t su_list_segments(const char *dir, uint64_t *bases, size_t cap)
{
	DIR *d = opendir(dir);
	size_t n = 0;

	cr_assert_not_null(d, "opendir %s", dir);
	struct dirent *de;
	while ((de = readdir(d)) != NULL) {
		size_t l = strlen(de->d_name);
		if (l != 24 || strcmp(de->d_name + 20, ".log") != 0 || de->d_type != DT_REG)
			continue;
		if (n < cap)
			bases[n] = strtoull(de->d_name, NULL, 10);
		n++;
	}
	closedir(d);
	qsort(bases, n < cap ? n : cap, sizeof(*bases), cmp_u64);
	return n;
}

long long su_file_size(const char *path)
{
	struct stat st;
	return stat(path, &st) < 0 ? -1 : (long long)st.st_size;
}

void su_write_byte(const char *path, long long pos, uint8_t v)
{
	int fd = open(path, O_WRONLY);
	cr_assert_geq(fd, 0, "open %s", path);
	cr_assert_eq(pwrite(fd, &v, 1, pos), 1);
	close(fd);
}

void su_flip_byte(const char *path, long long pos, uint8_t mask)
{
	int fd = open(path, O_RDWR);
	uint8_t v;

	cr_assert_geq(fd, 0, "open %s", path);
	cr_assert_eq(pread(fd, &v, 1, pos), 1, "%s has no byte %lld", path, pos);
	v ^= mask;
	cr_assert_eq(pwrite(fd, &v, 1, pos), 1);
	close(fd);
}

void su_truncate_file(const char *path, long long len)
{
	cr_assert_eq(truncate(path, len), 0, "truncate %s", path);
}

void su_garbage_file(const char *path, size_t len, uint64_t seed)
{
	uint8_t *buf = malloc(len ? len : 1);
	int fd = open(path, O_WRONLY | O_TRUNC | O_CREAT, 0644);

	cr_assert_not_null(buf);
	cr_assert_geq(fd, 0, "open %s", path);
	su_fill_random(buf, len, seed);
	cr_assert_eq(write(fd, buf, len), (ssize_t)len);
	close(fd);
	free(buf);
}

static int rm_one(const char *path, const struct stat *st, int flag, struct FTW *ftw)
{
	(void)st;
	(void)flag;
	(void)ftw;
	return remove(path);
}

int su_rm_rf(const char *path)
{
	return nftw(path, rm_one, 16, FTW_DEPTH | FTW_PHYS);
}

/* ---- log capture ------------------------------------------------------- */

int su_capture_start(void)
{
	int fd = memfd_create("rmq-log", MFD_CLOEXEC);
	cr_assert_geq(fd, 0, "memfd_create");
	rmq_log_set_fd(fd);
	return fd;
}

char *su_capture_end(int fd)
{
	rmq_log_set_fd(2);
	off_t len = lseek(fd, 0, SEEK_END);
	cr_assert_geq(len, 0);
	char *s = malloc((size_t)len + 1);
	cr_assert_not_null(s);
	cr_assert_eq(pread(fd, s, (size_t)len, 0), (ssize_t)len);
	s[len] = '\0';
	close(fd);
	return s;
}

/* ---- the test sequence ------------------------------------------------- */

uint8_t su_recs_buf[64 << 10];

/* Batch number i of a test's sequence: its header (producer fields only)
 * and records bytes. */
size_t su_gen_batch(uint64_t i, size_t value_max, struct rmq_batch_hdr *h)
{
	uint64_t st = i * 7919 + 17;
	unsigned count = 1 + (unsigned)(su_rand(&st) % 8);
	size_t vmax = value_max ? (size_t)(su_rand(&st) % (value_max + 1)) : 0;

	rmq_batch_hdr_init(h);
	h->record_count = count;
	h->leader_epoch = (uint32_t)(i / 50); /* never decreasing, as in a log */
	if (i % 13 == 5) {
		/* An opaque "compressed" payload: the log never decompresses. */
		h->compression = 2;
		size_t n = 50 + (size_t)(su_rand(&st) % (vmax * count + 1));
		su_fill_random(su_recs_buf, n, i);
		return n;
	}
	size_t n = su_records_gen(su_recs_buf, sizeof(su_recs_buf), i + 1, count, vmax);
	cr_assert_gt(n, 0);
	switch (i % 4) {
	case 1:
		h->producer_id = (int64_t)(i / 4) + 1;
		h->producer_epoch = (int32_t)(i % 3);
		h->base_sequence = (int32_t)i;
		break;
	case 2:
		h->producer_id = 0;
		h->producer_epoch = 0;
		h->base_sequence = 0;
		break;
	default:
		break;
	}
	/* Producer timestamps, not monotonic, on some batches. */
	if (i % 3 == 1) {
		h->first_timestamp_ms = (int64_t)su_clock_ms - 3000 + (int64_t)(su_rand(&st) % 2000);
		h->max_timestamp_ms = h->first_timestamp_ms + (int64_t)(su_rand(&st) % 5000);
	}
	if (i % 5 == 0)
		h->crc32 = rmq_crc32c(0, su_recs_buf, n);
	h->is_transactional = i % 11 == 3;
	h->is_control = i % 17 == 4;
	return n;
}

/* What a reader must see for an appended batch. */
void su_model_push(struct su_batches *m, const struct rmq_batch_hdr *appended, size_t rlen)
{
	struct rmq_batch_hdr h = *appended;

	if (h.first_timestamp_ms < 0)
		h.first_timestamp_ms = (int64_t)h.log_append_time_ms;
	if (h.max_timestamp_ms < 0)
		h.max_timestamp_ms = (int64_t)h.log_append_time_ms;
	su_batches_push(m, &h, 0, su_recs_buf, rlen);
}

/* Runs completions until every append of apps[0..n) has called back. */
void su_drain(struct su_env *e, struct su_append *apps, size_t n)
{
	for (int stalls = 0;;) {
		size_t pending = 0;
		for (size_t i = 0; i < n; i++)
			pending += !apps[i].done;
		if (pending == 0)
			break;
		rmq_log_flush(e->log);
		if (e->cfg.fsync == RMQ_FSYNC_INTERVAL)
			rmq_log_sync_tick(e->log);
		su_wait_once(e, &stalls, "appends never completed");
	}
	for (size_t i = 0; i < n; i++)
		cr_assert_eq(apps[i].res, 0, "append %zu failed: %s", i, rmq_errname(apps[i].res));
}

/* Appends batches first..first+n-1 of the sequence, pipelined (many in
 * flight, flushing every few) or one at a time, advancing the clock by
 * clock_step_ms before each. */
void su_append_seq(struct su_env *e, uint64_t first, size_t n, size_t value_max,
		       bool pipelined, uint64_t clock_step_ms, struct su_batches *model)
{
	struct su_append *apps = calloc(n ? n : 1, sizeof(*apps));
	cr_assert_not_null(apps);
	for (size_t k = 0; k < n; k++) {
		su_clock_ms += clock_step_ms;
		struct rmq_batch_hdr h;
		size_t rlen = su_gen_batch(first + k, value_max, &h);
		uint64_t end = rmq_log_end_offset(e->log);
		int rc;
		if (pipelined) {
			apps[k].a.hdr = h;
			rc = su_append_async(e, &apps[k], su_recs_buf, rlen);
			cr_assert_eq(rc, 0, "append %zu: %s", k, rmq_errname(rc));
			h = apps[k].a.hdr;
			if (k % 3 == 0)
				rmq_log_flush(e->log);
			if (k % 7 == 0)
				rmq_io_poll(e->io);
		} else {
			rc = su_append(e, &h, su_recs_buf, rlen);
			cr_assert_eq(rc, 0, "append %zu: %s", k, rmq_errname(rc));
			apps[k].done = true;
		}
		cr_assert_eq(h.base_offset, end, "offsets are assigned in order");
		cr_assert_eq(h.log_append_time_ms, su_clock_ms);
		cr_assert_eq(rmq_log_end_offset(e->log), end + h.record_count);
		if (model)
			su_model_push(model, &h, rlen);
	}
	if (pipelined)
		su_drain(e, apps, n);
	free(apps);
	cr_assert_eq(rmq_log_high_watermark(e->log), rmq_log_end_offset(e->log));
}

uint64_t su_append_until_roll(struct su_env *e, uint64_t first, size_t value_max,
			      struct su_batches *model)
{
	uint64_t rolls = rmq_log_stats(e->log)->rolls;
	while (rmq_log_stats(e->log)->rolls == rolls)
		su_append_seq(e, first++, 1, value_max, false, 10, model);
	return first;
}

/* Checks that everything readable from the log start equals the model's
 * batches from index `from` on, reading with several max_bytes. */
void su_check_content(struct su_env *e, const struct su_batches *model, size_t from)
{
	static const uint64_t sizes[] = {0, 3000, 40000, 1 << 20};
	struct su_batches want = {0};

	for (size_t i = from; i < model->n; i++)
		su_batches_push(&want, &model->v[i].hdr, 0, model->v[i].records,
				model->v[i].records_len);
	for (size_t s = 0; s < sizeof(sizes) / sizeof(sizes[0]); s++) {
		struct su_batches got = {0};
		int rc = su_collect(e->log, rmq_log_start_offset(e->log), sizes[s], &got);
		cr_assert_eq(rc, 0, "collect: %s", rmq_errname(rc));
		su_assert_same(&got, &want, true);
		su_batches_free(&got);
	}
	su_batches_free(&want);
}

/* Index in the model of the batch holding offset. */
size_t su_batch_of(const struct su_batches *m, uint64_t offset)
{
	for (size_t i = 0; i < m->n; i++) {
		if (offset <= rmq_batch_last_offset(&m->v[i].hdr))
			return i;
	}
	cr_assert_fail("offset %" PRIu64 " not in the model", offset);
	return 0;
}

/* Reads exactly one batch at offset (max_bytes 1) and checks it is the
 * model's batch holding that offset. */
void su_check_read_one(struct su_env *e, const struct su_batches *m, uint64_t offset)
{
	struct rmq_log_read r;
	const struct su_batch *b = &m->v[su_batch_of(m, offset)];
	int rc = rmq_log_read(e->log, offset, 1, &r);

	cr_assert_eq(rc, 0, "read %" PRIu64 ": %s", offset, rmq_errname(rc));
	cr_assert_eq(r.nslices, 1);
	cr_assert_eq(r.first_offset, b->hdr.base_offset, "read %" PRIu64, offset);
	cr_assert_eq(r.next_offset, b->hdr.base_offset + b->hdr.record_count);
	struct rmq_batch_view v;
	cr_assert_eq(rmq_batch_parse(r.slices[0].data, r.slices[0].len, &v), (int)r.bytes);
	cr_assert_eq(v.records_len, b->records_len);
	cr_assert_eq(memcmp(r.slices[0].data + v.records_pos, b->records, v.records_len), 0);
	cr_assert_eq(r.high_watermark, rmq_log_high_watermark(e->log));
	cr_assert_eq(r.log_start_offset, rmq_log_start_offset(e->log));
	rmq_log_read_done(e->log, &r);
}

/* The first batch (in offset order) whose max timestamp is >= ts. */
int su_model_time(const struct su_batches *m, int64_t ts, uint64_t *off)
{
	for (size_t i = 0; i < m->n; i++) {
		if (m->v[i].hdr.max_timestamp_ms >= ts) {
			*off = m->v[i].hdr.base_offset;
			return 0;
		}
	}
	return RMQ_ENOTFOUND;
}

void su_check_times(struct su_env *e, const struct su_batches *m)
{
	int64_t maxts = 0;
	for (size_t i = 0; i < m->n; i++) {
		int64_t t = m->v[i].hdr.max_timestamp_ms;
		maxts = t > maxts ? t : maxts;
		for (int64_t d = -1; d <= 1; d++) {
			uint64_t got = 0, want = 0;
			int rc = rmq_log_offset_for_time(e->log, t + d, &got);
			cr_assert_eq(rc, su_model_time(m, t + d, &want), "ts %" PRId64, t + d);
			if (rc == 0)
				cr_assert_eq(got, want, "ts %" PRId64 ": got %" PRIu64 " want %" PRIu64,
					     t + d, got, want);
		}
	}
	uint64_t got;
	cr_assert_eq(rmq_log_offset_for_time(e->log, maxts + 1, &got), RMQ_ENOTFOUND);
	cr_assert_eq(rmq_log_offset_for_time(e->log, 0, &got), 0);
	cr_assert_eq(got, rmq_log_start_offset(e->log));
	cr_assert_eq(rmq_log_offset_for_time(e->log, INT64_MIN, &got), 0);
	cr_assert_eq(got, rmq_log_start_offset(e->log));
}

