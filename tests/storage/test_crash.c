/* SPDX-License-Identifier: Apache-2.0 */
/*
 * test_crash.c - kill -9 tests of the partition log (src/storage/log.c and
 * segment.c): appends, rolls and retention cut short, then recovery.
 *
 * The storage issue's acceptance criterion: "a child process appends with
 * --fsync=always, reporting each acknowledged offset to the parent; the
 * parent kill -9s it at random moments (many rounds), reopens the log and
 * checks every acknowledged record is present with a valid CRC and nothing
 * beyond the torn point is served."
 *
 * One round:
 *
 *   parent (the Criterion test)             child (fork; never returns)
 *   ───────────────────────────             ──────────────────────────
 *   pipe, fork ───────────────────────────► rmq_io_create, rmq_log_open
 *   wait for READY ◄─────────────────────── READY {recovered end offset}
 *   read ACKs for 5..60 ms, or until a  ◄── append in a tight loop; each
 *     byte budget is acknowledged            completion callback writes
 *                                            ACK {base offset, count}
 *   kill(SIGKILL), waitpid, drain ────────► ✝
 *   rmq_log_open (recovery), check, rmq_log_close
 *
 * The next round's child reopens the same directory and appends from the
 * recovered end, so one log is killed and recovered many times over.
 * Messages are 16 bytes, below PIPE_BUF, so each write(2) is atomic.
 *
 * Content is a pure function of the offset: a batch's record count comes
 * from its base offset, each record's value length and bytes from the
 * record's offset.  The parent checks every byte it reads, acknowledged or
 * not, without being told what was written.
 *
 * After each kill the parent checks:
 *   1. every acknowledged batch is readable (from an offset inside it) with
 *      its exact content; every batch returned parses and passes its CRC;
 *   2. the high watermark is at least the end of the last acknowledged batch
 *      and equals the log end (recovery leaves nothing unacknowledged);
 *   3. reading from the log start to the high watermark returns contiguous
 *      offsets, whole batches, correct content and CRCs, including durable
 *      but unacknowledged batches past the last ack; at the high watermark
 *      nothing is returned and past it the offset is out of range;
 *   4. the next child starts exactly at the recovered end.
 *
 * What kill -9 can show: the page cache outlives the process, so every
 * write that completed survives whether or not it was synced.  The test
 * therefore covers torn writes (a write cut short by the kill), writes
 * completing out of order, rolls and deletions cut short, and an ack that
 * came before its write.  It cannot show a missing or misdirected
 * fdatasync: that needs a power cut (dm-flakey or a VM).
 *
 * Failures print "[<test> seed <seed> round <n>]".  The seed fixes every
 * choice the test makes (configuration, kill time, byte budget), but the
 * moment the kill lands relative to the I/O is timing, so a failure may
 * need a few runs to reproduce.  RMQ_CRASH_SEED=<n> changes the base seed
 * and RMQ_CRASH_ROUNDS=<n> the number of rounds (for soak runs).
 */
#include "storage/log.h"

#include "core/error.h"
#include "core/log.h"
#include "core/pbwire.h"
#include "storage/batch.h"

#include <criterion/criterion.h>
#include <criterion/logging.h>
#include <errno.h>
#include <fcntl.h>
#include <ftw.h>
#include <inttypes.h>
#include <limits.h>
#include <poll.h>
#include <signal.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/prctl.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#define KIB ((uint64_t)1 << 10)
#define MIB ((uint64_t)1 << 20)
#define SEED_BASE 0x5EEDC4A54ULL

/* Where a failure happened: test, seed and round, in every message. */
static char g_where[128] = "setup";

#define CHECK(cond, fmt, ...) cr_assert((cond), "[%s] " fmt, g_where, ##__VA_ARGS__)

/* ---- content: a pure function of the offset -------------------------- */

#define RECORDS_MAX 8
#define VALUE_MAX 255
/* field-7 key + 2-byte length, field-2 key + 2-byte length, value */
#define RECORD_BYTES_MAX (1 + 2 + 1 + 2 + VALUE_MAX)
#define RECS_BYTES_MAX (RECORDS_MAX * RECORD_BYTES_MAX)

/* splitmix64's finaliser: a good hash of a counter. */
static uint64_t mix64(uint64_t z)
{
	z += 0x9E3779B97F4A7C15ULL;
	z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ULL;
	z = (z ^ (z >> 27)) * 0x94D049BB133111EBULL;
	return z ^ (z >> 31);
}

static uint64_t rand_next(uint64_t *state)
{
	return mix64((*state)++ * 0xD1342543DE82EF95ULL);
}

/* In [lo, hi]. */
static uint64_t rand_range(uint64_t *state, uint64_t lo, uint64_t hi)
{
	return lo + rand_next(state) % (hi - lo + 1);
}

static uint32_t batch_count(uint64_t base)
{
	return 1 + (uint32_t)(mix64(base ^ 0xC0C0C0C0ULL) % RECORDS_MAX);
}

static uint32_t value_len(uint64_t offset)
{
	return 1 + (uint32_t)(mix64(offset ^ 0x1E1E1E1EULL) % VALUE_MAX);
}

/* Bytes of the field-7 element holding Record{value} at offset. */
static size_t record_len(uint64_t offset)
{
	uint32_t vlen = value_len(offset);
	size_t body = 1 + rmq_pb_varint_len(vlen) + vlen;
	return 1 + rmq_pb_varint_len(body) + body;
}

static size_t encode_record(uint64_t offset, uint8_t *dst)
{
	uint32_t vlen = value_len(offset);
	size_t body = 1 + rmq_pb_varint_len(vlen) + vlen;
	size_t n = rmq_pb_put_len(dst, 7, body);
	n += rmq_pb_put_len(dst + n, 2, vlen);
	uint64_t seed = mix64(offset ^ 0x7A7A7A7AULL);
	for (uint32_t i = 0; i < vlen; i += 8) {
		uint64_t w = mix64(seed + i);
		memcpy(dst + n + i, &w, vlen - i < 8 ? vlen - i : 8);
	}
	return n + vlen;
}

/* The records bytes of the batch at base: count field-7 elements. */
static size_t encode_batch(uint64_t base, uint32_t count, uint8_t *dst)
{
	size_t n = 0;
	for (uint32_t i = 0; i < count; i++)
		n += encode_record(base + i, dst + n);
	return n;
}

static size_t batch_len(uint64_t base, uint32_t count)
{
	size_t n = 0;
	for (uint32_t i = 0; i < count; i++)
		n += record_len(base + i);
	return n;
}

/* ---- test plans -------------------------------------------------------- */

struct crash_plan {
	const char *name;
	int rounds;
	uint64_t segment_bytes;
	/* Records bytes the parent lets the child get acknowledged before the
	 * kill (unless the random time runs out first). */
	uint64_t budget_min, budget_max;
	/* -1: no retention; else the child applies it after every append. */
	int64_t retention_bytes;
	/* The kill comes this long after the child is ready (0, 0: 5..60 ms). */
	uint64_t kill_us_min, kill_us_max;
	/* Rounds per log: every this many rounds a new log is started in a
	 * directory that does not exist yet (0: one log for all rounds). */
	int rounds_per_log;
};

/* Everything one round varies, drawn from its seed. */
struct round {
	int index;
	uint64_t seed;
	enum rmq_prealloc prealloc;
	uint32_t write_buffer_bytes;
	uint32_t max_inflight_writes;
	uint32_t index_interval_bytes;
	uint32_t flush_every; /* appends between rmq_log_flush() calls */
	uint64_t kill_after_us;
	uint64_t budget;
};

static uint64_t env_u64(const char *name, uint64_t dflt)
{
	const char *s = getenv(name);
	if (!s || !*s)
		return dflt;
	char *end;
	unsigned long long v = strtoull(s, &end, 0);
	return *end ? dflt : (uint64_t)v;
}

static void plan_round(const struct crash_plan *p, int index, struct round *r)
{
	static const enum rmq_prealloc modes[] = {
		RMQ_PREALLOC_ZERO,
		RMQ_PREALLOC_FALLOCATE,
		RMQ_PREALLOC_NONE,
	};
	/* Small buffers wrap and fill (RMQ_EFULL), and with zero-ahead they
	 * keep zero writes close behind the data; 8 MiB is the default. */
	static const uint32_t wbufs[] = {16 << 10, 64 << 10, 8 << 20};
	static const uint32_t inflight[] = {1, 4, 64};
	static const uint32_t intervals[] = {512, 4096};

	uint64_t st;
	memset(r, 0, sizeof(*r));
	r->index = index;
	r->seed = env_u64("RMQ_CRASH_SEED", SEED_BASE) + (uint64_t)index;
	st = mix64(r->seed);
	r->prealloc = modes[index % 3];
	r->write_buffer_bytes = wbufs[rand_next(&st) % 3];
	r->max_inflight_writes = inflight[rand_next(&st) % 3];
	r->index_interval_bytes = intervals[rand_next(&st) % 2];
	r->flush_every = (uint32_t)rand_range(&st, 1, 8);
	r->kill_after_us = p->kill_us_max ? rand_range(&st, p->kill_us_min, p->kill_us_max)
					  : rand_range(&st, 5000, 60000);
	r->budget = rand_range(&st, p->budget_min, p->budget_max);
	snprintf(g_where, sizeof(g_where), "%s seed %#" PRIx64 " round %d", p->name, r->seed,
		 index);
}

static void make_config(const struct crash_plan *p, const struct round *r,
			struct rmq_log_config *cfg)
{
	rmq_log_config_default(cfg);
	cfg->fsync = RMQ_FSYNC_ALWAYS;
	cfg->segment_bytes = p->segment_bytes;
	cfg->retention_bytes = p->retention_bytes;
	cfg->prealloc = r->prealloc;
	cfg->write_buffer_bytes = r->write_buffer_bytes;
	cfg->max_inflight_writes = r->max_inflight_writes;
	cfg->index_interval_bytes = r->index_interval_bytes;
	cfg->zero_ahead_bytes = 4 * r->write_buffer_bytes;
}

/* ---- the child --------------------------------------------------------- */

enum { MSG_READY = 1, MSG_ACK = 2, MSG_FAIL = 3 };

struct msg {
	uint32_t kind;
	uint32_t count; /* ACK: records; FAIL: source line */
	uint64_t value; /* READY: end offset; ACK: base offset; FAIL: error */
};
_Static_assert(sizeof(struct msg) == 16, "fixed-size pipe message");
_Static_assert(sizeof(struct msg) <= PIPE_BUF, "pipe writes of a message are atomic");

#define CHILD_APPENDS 1024

static int child_fd = -1;
static struct rmq_append *child_free[CHILD_APPENDS];
static unsigned child_nfree;

static void child_send(uint32_t kind, uint32_t count, uint64_t value)
{
	struct msg m = {.kind = kind, .count = count, .value = value};
	for (;;) {
		ssize_t n = write(child_fd, &m, sizeof(m));
		if (n == (ssize_t)sizeof(m))
			return;
		if (n < 0 && errno == EINTR)
			continue;
		_exit(4);
	}
}

static _Noreturn void child_fail(int line, int err)
{
	child_send(MSG_FAIL, (uint32_t)line, (uint64_t)(int64_t)err);
	_exit(3);
}

static void child_acked(struct rmq_append *a, int res)
{
	if (res < 0)
		child_fail(__LINE__, res);
	child_send(MSG_ACK, a->hdr.record_count, a->hdr.base_offset);
	child_free[child_nfree++] = a;
}

/* Runs in the forked child: only this loop, then death by SIGKILL.  It
 * never returns into Criterion and leaves only through _exit(). */
static _Noreturn void child_main(const struct crash_plan *p, const struct round *r,
				 const char *dir, int fd, pid_t parent)
{
	static struct rmq_append appends[CHILD_APPENDS];
	static uint8_t recs[RECS_BYTES_MAX];
	struct rmq_io_config icfg = {.entries = 256, .fixed_buffers = 4};
	struct rmq_log_config cfg;
	struct rmq_io *io;
	struct rmq_log *log;
	int rc;

	child_fd = fd;
	/* Should the test process die without killing us, die with it. */
	if (prctl(PR_SET_PDEATHSIG, SIGKILL) < 0 || getppid() != parent)
		_exit(5);
	rc = rmq_io_create(&icfg, &io);
	if (rc < 0)
		child_fail(__LINE__, rc);
	make_config(p, r, &cfg);
	rc = rmq_log_open(io, dir, &cfg, &log);
	if (rc < 0)
		child_fail(__LINE__, rc);
	child_send(MSG_READY, 0, rmq_log_end_offset(log));
	for (unsigned i = 0; i < CHILD_APPENDS; i++)
		child_free[child_nfree++] = &appends[i];

	for (uint64_t n = 1;; n++) {
		while (child_nfree == 0) {
			rmq_log_flush(log);
			rc = rmq_io_wait(io, 0);
			if (rc < 0)
				child_fail(__LINE__, rc);
		}
		struct rmq_append *a = child_free[--child_nfree];
		uint64_t base = rmq_log_end_offset(log);
		uint32_t count = batch_count(base);
		struct iovec iov = {.iov_base = recs, .iov_len = encode_batch(base, count, recs)};

		rmq_batch_hdr_init(&a->hdr);
		a->hdr.record_count = count;
		a->cb = child_acked;
		while ((rc = rmq_log_append(log, a, &iov, 1)) == RMQ_EFULL) {
			rmq_log_flush(log);
			int w = rmq_io_wait(io, 0);
			if (w < 0)
				child_fail(__LINE__, w);
		}
		if (rc < 0)
			child_fail(__LINE__, rc);
		if (a->hdr.base_offset != base)
			child_fail(__LINE__, RMQ_EPROTO);
		if (n % r->flush_every == 0) {
			rmq_log_flush(log);
			rc = rmq_io_poll(io);
			if (rc < 0)
				child_fail(__LINE__, rc);
		}
		if (p->retention_bytes >= 0) {
			rc = rmq_log_retain(log);
			if (rc < 0)
				child_fail(__LINE__, rc);
		}
	}
}

/* ---- the parent -------------------------------------------------------- */

/* The child and directory of the running test, for the fini hook: a
 * failed assertion leaves the test function at once, and no child may
 * outlive it. */
static pid_t g_child = -1;
static char g_tmp[64];

static int remove_entry(const char *path, const struct stat *sb, int flag, struct FTW *ftw)
{
	(void)sb;
	(void)flag;
	(void)ftw;
	remove(path);
	return 0;
}

static void crash_fini(void)
{
	if (g_child > 0) {
		kill(g_child, SIGKILL);
		while (waitpid(g_child, NULL, 0) < 0 && errno == EINTR)
			;
		g_child = -1;
	}
	if (g_tmp[0])
		nftw(g_tmp, remove_entry, 16, FTW_DEPTH | FTW_PHYS);
	g_tmp[0] = 0;
}

static void crash_init(void)
{
	/* Recovery warns about every torn tail it cuts: expected here. */
	rmq_log_set_level(RMQ_LOG_ERROR);
}

/* State carried across rounds, plus totals for the summary line. */
struct crash_state {
	char dir[128];
	uint64_t end;        /* recovered end (= HW) after the last round */
	uint64_t acked_end;  /* end of the last acknowledged batch, ever */
	uint64_t log_start;

	struct msg *msgs;
	size_t nmsgs, msgs_cap;

	uint64_t acked_batches, acked_bytes;
	uint64_t unacked_kept;   /* records recovered past the last ack */
	uint64_t truncated_bytes;
	unsigned killed_by_time, killed_by_budget;
	unsigned rounds;
	unsigned no_files;       /* kills that left the log without B.log */
	unsigned no_data;        /* ... with B.log but no batch */
};

static uint64_t now_us(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (uint64_t)ts.tv_sec * 1000000 + (uint64_t)ts.tv_nsec / 1000;
}

/* Reads what the pipe has into st->msgs.  Returns false at end of file. */
static bool read_msgs(struct crash_state *st, int fd, uint8_t *carry, size_t *ncarry)
{
	uint8_t buf[4096];
	ssize_t n;

	memcpy(buf, carry, *ncarry);
	do
		n = read(fd, buf + *ncarry, sizeof(buf) - *ncarry);
	while (n < 0 && errno == EINTR);
	if (n == 0)
		return false;
	if (n < 0)
		return errno == EAGAIN;
	size_t have = *ncarry + (size_t)n, used = 0;
	for (; have - used >= sizeof(struct msg); used += sizeof(struct msg)) {
		if (st->nmsgs == st->msgs_cap) {
			size_t cap = st->msgs_cap ? st->msgs_cap * 2 : 4096;
			struct msg *m = realloc(st->msgs, cap * sizeof(*m));
			/* The fini hook kills the child if this fails. */
			CHECK(m != NULL, "out of memory for %zu messages", cap);
			st->msgs = m;
			st->msgs_cap = cap;
		}
		memcpy(&st->msgs[st->nmsgs++], buf + used, sizeof(struct msg));
	}
	*ncarry = have - used;
	memcpy(carry, buf + used, *ncarry);
	return true;
}

/* Runs one child: waits for it to be ready, lets it append until the
 * round's time or byte budget runs out, kills it and collects its
 * messages.  Returns the wait status. */
static int run_child(struct crash_state *st, const struct crash_plan *p, const struct round *r)
{
	int fds[2], status;
	uint8_t carry[sizeof(struct msg)];
	size_t ncarry = 0;
	bool alive = true;

	st->nmsgs = 0;
	CHECK(pipe2(fds, O_CLOEXEC) == 0, "pipe2: %s", strerror(errno));
	pid_t self = getpid();
	pid_t pid = fork();
	CHECK(pid >= 0, "fork: %s", strerror(errno));
	if (pid == 0) {
		close(fds[0]);
		child_main(p, r, st->dir, fds[1], self);
	}
	g_child = pid;
	close(fds[1]);

	/* Recovery runs before READY; allow it plenty of time (sanitizers). */
	uint64_t ready_by = now_us() + 60ULL * 1000000;
	while (alive && st->nmsgs == 0 && now_us() < ready_by) {
		struct pollfd pfd = {.fd = fds[0], .events = POLLIN};
		if (poll(&pfd, 1, 100) > 0)
			alive = read_msgs(st, fds[0], carry, &ncarry);
	}
	uint64_t deadline = now_us() + r->kill_after_us;
	uint64_t acked = 0;
	size_t counted = 0;
	bool by_budget = false;
	for (;;) {
		for (; counted < st->nmsgs; counted++)
			if (st->msgs[counted].kind == MSG_ACK)
				acked += batch_len(st->msgs[counted].value, st->msgs[counted].count);
		if (acked >= r->budget) {
			by_budget = true;
			break;
		}
		uint64_t now = now_us();
		if (!alive || now >= deadline)
			break;
		struct timespec ts = {.tv_sec = 0, .tv_nsec = (long)(deadline - now) * 1000};
		struct pollfd pfd = {.fd = fds[0], .events = POLLIN};
		if (ppoll(&pfd, 1, &ts, NULL) > 0)
			alive = read_msgs(st, fds[0], carry, &ncarry);
	}
	kill(pid, SIGKILL);
	while (waitpid(pid, &status, 0) < 0)
		CHECK(errno == EINTR, "waitpid: %s", strerror(errno));
	g_child = -1;
	/* The write end died with the child: read to end of file. */
	while (alive)
		alive = read_msgs(st, fds[0], carry, &ncarry);
	close(fds[0]);
	if (by_budget)
		st->killed_by_budget++;
	else
		st->killed_by_time++;
	return status;
}

/* Checks one entry: CRC, header, and the exact records expected at base. */
static void check_entry(const uint8_t *entry, const struct rmq_batch_view *v, uint64_t base)
{
	static uint8_t want[RECS_BYTES_MAX];

	CHECK(v->hdr.base_offset == base, "expected the batch at offset %" PRIu64
	      ", found one at %" PRIu64, base, v->hdr.base_offset);
	CHECK(rmq_batch_check_crc(entry, v) == 0, "batch %" PRIu64 " fails its CRC", base);
	uint32_t count = batch_count(base);
	CHECK(v->hdr.record_count == count, "batch %" PRIu64 " has %u records, not %u", base,
	      v->hdr.record_count, count);
	CHECK(v->hdr.compression == 0, "batch %" PRIu64 " claims compression %u", base,
	      v->hdr.compression);
	CHECK(!v->hdr.is_control && !v->hdr.is_transactional, "batch %" PRIu64 " flags", base);
	size_t len = encode_batch(base, count, want);
	CHECK(v->records_len == len, "batch %" PRIu64 " has %u records bytes, not %zu", base,
	      v->records_len, len);
	CHECK(memcmp(entry + v->records_pos, want, len) == 0,
	      "batch %" PRIu64 ": records differ from what was appended", base);
}

/* Checks that a slice is whole batches starting at *next; advances it. */
static void check_slice(const struct rmq_log_slice *sl, uint64_t *next)
{
	uint64_t pos = 0;

	while (pos < sl->len) {
		struct rmq_batch_view v;
		int n = rmq_batch_parse(sl->data + pos, sl->len - pos, &v);
		CHECK(n > 0, "entry for offset %" PRIu64 " at slice position %" PRIu64
		      " does not parse: %s", *next, pos, rmq_errname(n));
		CHECK((uint32_t)n == v.entry_len, "entry %" PRIu64 ": length %d vs %u", *next, n,
		      v.entry_len);
		check_entry(sl->data + pos, &v, *next);
		*next += v.hdr.record_count;
		pos += (uint64_t)n;
	}
}

/* Reads the whole log, from its start to the HW, in reads of random size. */
static void check_whole_log(struct rmq_log *log, uint64_t *rnd)
{
	uint64_t start = rmq_log_start_offset(log), hw = rmq_log_high_watermark(log);
	uint64_t off = start;
	struct rmq_log_read rd;

	while (off < hw) {
		uint64_t max = rand_range(rnd, 1, 512 * KIB);
		int rc = rmq_log_read(log, off, max, &rd);
		CHECK(rc == 0, "reading offset %" PRIu64 " (log %" PRIu64 "..%" PRIu64 "): %s", off,
		      start, hw, rmq_errname(rc));
		CHECK(rd.nslices > 0, "no data at offset %" PRIu64 " below the HW %" PRIu64, off, hw);
		CHECK(rd.first_offset == off, "read at batch boundary %" PRIu64 " began at %" PRIu64,
		      off, rd.first_offset);
		uint64_t next = off;
		for (unsigned i = 0; i < rd.nslices; i++)
			check_slice(&rd.slices[i], &next);
		CHECK(next == rd.next_offset, "batches read end at %" PRIu64
		      " but the read says %" PRIu64, next, rd.next_offset);
		CHECK(next <= hw, "read past the HW: %" PRIu64 " > %" PRIu64, next, hw);
		rmq_log_read_done(log, &rd);
		off = next;
	}
	CHECK(off == hw, "the log reads to %" PRIu64 ", HW %" PRIu64, off, hw);

	/* Nothing at the HW; past it, out of range. */
	int rc = rmq_log_read(log, hw, 1 * MIB, &rd);
	CHECK(rc == 0 && rd.nslices == 0, "read at the HW %" PRIu64 ": %s, %u slices", hw,
	      rmq_errname(rc), rd.nslices);
	rmq_log_read_done(log, &rd);
	rc = rmq_log_read(log, hw + 1, 1 * MIB, &rd);
	CHECK(rc == RMQ_ERANGE, "read past the HW %" PRIu64 ": %s", hw, rmq_errname(rc));
	rmq_log_read_done(log, &rd);
	if (start > 0) {
		rc = rmq_log_read(log, start - 1, 1 * MIB, &rd);
		CHECK(rc == RMQ_ERANGE, "read below the log start %" PRIu64 ": %s", start,
		      rmq_errname(rc));
		rmq_log_read_done(log, &rd);
	}
}

/* Looks every acknowledged batch of this round up by an offset inside it. */
static void check_acked(struct crash_state *st, struct rmq_log *log, uint64_t *rnd)
{
	uint64_t start = rmq_log_start_offset(log);
	struct rmq_log_read rd;

	for (size_t i = 0; i < st->nmsgs; i++) {
		const struct msg *m = &st->msgs[i];
		if (m->kind != MSG_ACK || m->value < start)
			continue;
		uint64_t off = m->value + rand_next(rnd) % m->count;
		int rc = rmq_log_read(log, off, 1, &rd);
		CHECK(rc == 0, "acknowledged offset %" PRIu64 " (batch %" PRIu64 "+%u): %s", off,
		      m->value, m->count, rmq_errname(rc));
		CHECK(rd.nslices > 0 && rd.first_offset == m->value,
		      "acknowledged offset %" PRIu64 ": %u slices from %" PRIu64, off, rd.nslices,
		      rd.first_offset);
		struct rmq_batch_view v;
		int n = rmq_batch_parse(rd.slices[0].data, rd.slices[0].len, &v);
		CHECK(n > 0, "acknowledged batch %" PRIu64 " does not parse: %s", m->value,
		      rmq_errname(n));
		check_entry(rd.slices[0].data, &v, m->value);
		rmq_log_read_done(log, &rd);
	}
}

/* Checks the messages of one child: READY at the recovered end, then acks
 * of contiguous batches in offset order. */
static void check_msgs(struct crash_state *st, int status)
{
	for (size_t i = 0; i < st->nmsgs; i++) {
		const struct msg *m = &st->msgs[i];
		CHECK(m->kind != MSG_FAIL, "the child failed at test_crash.c:%u: %s", m->count,
		      rmq_errname((int)(int64_t)m->value));
	}
	CHECK(WIFSIGNALED(status) && WTERMSIG(status) == SIGKILL,
	      "the child ended by itself (status %#x) before the kill", status);
	CHECK(st->nmsgs > 0 && st->msgs[0].kind == MSG_READY, "the child never became ready");
	CHECK(st->msgs[0].value == st->end, "the child reopened the log at %" PRIu64
	      ", the parent recovered it to %" PRIu64, st->msgs[0].value, st->end);
	uint64_t next = st->end;
	for (size_t i = 1; i < st->nmsgs; i++) {
		const struct msg *m = &st->msgs[i];
		CHECK(m->kind == MSG_ACK, "message %zu: kind %u", i, m->kind);
		CHECK(m->value == next, "ack of batch %" PRIu64 " out of order (expected %" PRIu64 ")",
		      m->value, next);
		CHECK(m->count == batch_count(m->value), "ack of batch %" PRIu64 ": %u records",
		      m->value, m->count);
		next += m->count;
		st->acked_batches++;
		st->acked_bytes += batch_len(m->value, m->count);
	}
	if (next > st->acked_end)
		st->acked_end = next;
}

static void run_round(struct crash_state *st, const struct crash_plan *p, int index)
{
	struct round r;
	struct rmq_log_config cfg;
	struct rmq_io_config icfg = {.entries = 64, .fixed_buffers = 4};
	struct rmq_io *io;
	struct rmq_log *log;

	plan_round(p, index, &r);
	if (p->rounds_per_log && index % p->rounds_per_log == 0) {
		/* A new log: nothing of it exists. */
		snprintf(st->dir, sizeof(st->dir), "%s/log-%d", g_tmp, index);
		st->end = st->acked_end = st->log_start = 0;
	}
	int status = run_child(st, p, &r);
	check_msgs(st, status);

	char first[sizeof(st->dir) + 32];
	snprintf(first, sizeof(first), "%s/00000000000000000000.log", st->dir);
	if (access(first, F_OK) < 0)
		st->no_files++;
	else if (st->acked_end == 0)
		st->no_data++;

	/* Recover in-process, with a ring of our own. */
	int rc = rmq_io_create(&icfg, &io);
	CHECK(rc == 0, "rmq_io_create: %s", rmq_errname(rc));
	make_config(p, &r, &cfg);
	rc = rmq_log_open(io, st->dir, &cfg, &log);
	CHECK(rc == 0, "reopening the log: %s", rmq_errname(rc));

	uint64_t hw = rmq_log_high_watermark(log), start = rmq_log_start_offset(log);
	CHECK(rmq_log_end_offset(log) == hw, "recovered end %" PRIu64 " but HW %" PRIu64,
	      rmq_log_end_offset(log), hw);
	CHECK(hw >= st->acked_end, "acknowledged up to offset %" PRIu64
	      " but recovered only to %" PRIu64, st->acked_end, hw);
	if (p->retention_bytes < 0)
		CHECK(start == 0, "the log start moved to %" PRIu64 " without retention", start);
	CHECK(start >= st->log_start, "the log start went back from %" PRIu64 " to %" PRIu64,
	      st->log_start, start);
	CHECK(start <= st->acked_end, "retention deleted acknowledged data up to %" PRIu64
	      " past the last ack %" PRIu64, start, st->acked_end);

	uint64_t rnd = mix64(r.seed ^ 0xF00D);
	check_acked(st, log, &rnd);
	check_whole_log(log, &rnd);

	st->unacked_kept += hw - st->acked_end;
	st->truncated_bytes += rmq_log_stats(log)->truncated_bytes;
	st->end = hw;
	st->log_start = start;
	rc = rmq_log_close(log);
	CHECK(rc == 0, "closing the log: %s", rmq_errname(rc));
	rmq_io_destroy(io);
	st->rounds++;
}

static void run_plan(const struct crash_plan *p)
{
	struct crash_state st;
	struct rmq_io_config icfg = {.entries = 8, .fixed_buffers = 0};
	struct rmq_io *io;

	int rc = rmq_io_create(&icfg, &io);
	if (rc == -ENOSYS || rc == -EPERM)
		cr_skip_test("io_uring is unavailable: %s", rmq_strerror(rc));
	CHECK(rc == 0, "rmq_io_create: %s", rmq_errname(rc));
	rmq_io_destroy(io);

	memset(&st, 0, sizeof(st));
	snprintf(g_tmp, sizeof(g_tmp), "/tmp/rmq-crash-XXXXXX");
	CHECK(mkdtemp(g_tmp) != NULL, "mkdtemp: %s", strerror(errno));
	snprintf(st.dir, sizeof(st.dir), "%s/log", g_tmp);

	int rounds = (int)env_u64("RMQ_CRASH_ROUNDS", (uint64_t)p->rounds);
	uint64_t t0 = now_us();
	for (int i = 0; i < rounds; i++)
		run_round(&st, p, i);
	cr_log_info("%s: %u rounds in %.1f s (%u killed at the time limit, %u at the byte "
		    "budget; %u left no first segment file, %u no acknowledged batch): %" PRIu64
		    " batches (%.1f MiB) acknowledged, log end %" PRIu64 ", start %" PRIu64
		    ", %" PRIu64 " unacknowledged records recovered, %" PRIu64 " torn bytes cut",
		    p->name, st.rounds, (double)(now_us() - t0) / 1e6, st.killed_by_time,
		    st.killed_by_budget, st.no_files, st.no_data, st.acked_batches,
		    (double)st.acked_bytes / (double)MIB, st.end, st.log_start, st.unacked_kept,
		    st.truncated_bytes);
	free(st.msgs);
}

TestSuite(crash, .init = crash_init, .fini = crash_fini);

/* Appends across 256 KiB segments, a few rolls per round. */
Test(crash, kill_during_appends)
{
	static const struct crash_plan p = {
		.name = "appends",
		.rounds = 50,
		.segment_bytes = 256 * KIB,
		.budget_min = 16 * KIB,
		.budget_max = 1 * MIB,
		.retention_bytes = -1,
	};
	run_plan(&p);
}

/* 16 KiB segments hold a handful of batches: a roll (seal, new files,
 * directory sync) is in progress at a large share of the kill moments. */
Test(crash, kill_during_rolls)
{
	static const struct crash_plan p = {
		.name = "rolls",
		.rounds = 80,
		.segment_bytes = 16 * KIB,
		.budget_min = 8 * KIB,
		.budget_max = 160 * KIB,
		.retention_bytes = -1,
	};
	run_plan(&p);
}

/* Kills land on new logs: while the directory and first segment's files
 * are being made (in the background, through the ring), before and during
 * the syncs of the directory and its parent, and around the first appends;
 * the next round reopens what the kill left (nothing, a directory without
 * files, files without data, or data) and kills it again. */
Test(crash, kill_new_logs)
{
	static const struct crash_plan p = {
		.name = "new logs",
		.rounds = 120,
		.segment_bytes = 64 * KIB,
		.budget_min = 1,
		.budget_max = 64 * KIB,
		.retention_bytes = -1,
		.kill_us_min = 0,
		.kill_us_max = 1500,
		.rounds_per_log = 2,
	};
	run_plan(&p);
}

/* 32 KiB segments, retention to 128 KiB applied after every append: kills
 * land during segment deletions as well as rolls. */
Test(crash, kill_during_retention)
{
	static const struct crash_plan p = {
		.name = "retention",
		.rounds = 120,
		.segment_bytes = 32 * KIB,
		.budget_min = 32 * KIB,
		.budget_max = 512 * KIB,
		.retention_bytes = 128 * KIB,
	};
	run_plan(&p);
}
