/* SPDX-License-Identifier: Apache-2.0 */
/*
 * ctrl_store.c - the controller's durable Raft state (ctrl_store.h).
 *
 * The store keeps the log offset of every entry it holds after its
 * snapshot (off[i]: index base + 1 + i), which is what a cut from an index
 * and a compaction up to an index need.  A write runs in steps, each of
 * which may wait a cycle (the retry timer) for the log to be idle or to
 * take more bytes:
 *
 *   write ─► install a received snapshot (rename) ─► cut (log idle) ─┐
 *            hard state: pwrite + fdatasync, linked, on the ring ────┼─► done
 *            entries: one append each, synced by the log ────────────┘
 */
#include "broker/ctrl_store.h"

#include "core/assert.h"
#include "core/crc32c.h"
#include "core/error.h"
#include "core/log.h"
#include "core/pbwire.h"
#include "storage/batch.h"
#include "storage/log.h"

#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/uio.h>
#include <unistd.h>

#define HS_MAGIC "RMQHS001"
#define HS_SLOT 4096u
#define HS_BYTES 64u /* written whole, read whole */
#define SNAP_MAGIC "RMQSNAP1"
#define SNAP_HDR 32u
#define LOG_WRITE_BUFFER (1u << 20)
#define LOG_SEGMENT_BYTES (16u << 20) /* compaction deletes whole segments */
#define RETRY_NS (1000ULL * 1000) /* a cycle's worth: 1 ms */

struct capp {                  /* one entry's append */
	struct rmq_append a;   /* first: the log's callback gets &a */
	struct rmq_cstore *cs;
	struct capp *next;
	uint64_t term;
	size_t len;
	uint8_t data[];        /* the batch's records bytes */
};

struct rmq_cstore {
	char dir[4096];
	struct rmq_io *io;
	struct rmq_log *log;
	int hs_fd;
	uint64_t hs_seq;
	uint8_t hs_buf[64];
	bool failed;

	/* Entries held after the snapshot: base + 1 .. base + n_off. */
	uint64_t base;
	uint64_t *off;
	size_t n_off, cap_off;

	/* The write in flight. */
	bool busy;
	void (*done)(void *arg, int res);
	void *done_arg;
	int res;
	unsigned pending;      /* the hard state and appends not yet durable */
	bool cut_all;          /* a snapshot install drops every entry */
	uint64_t cut_from;     /* 0: no cut; else the first index to cut */
	struct capp *qhead;    /* appends not yet taken by the log */
	struct rmq_io_op hs_write_op, hs_sync_op, retry_op;
	bool retry_armed;
};

static void step(struct rmq_cstore *cs);
static void hs_write_done(struct rmq_io_op *op, int res, unsigned flags);
static void hs_sync_done(struct rmq_io_op *op, int res, unsigned flags);
static void retry_fired(struct rmq_io_op *op, int res, unsigned flags);

/* ---- files ------------------------------------------------------------------- */

static void put64(uint8_t *p, uint64_t v)
{
	for (int i = 0; i < 8; i++)
		p[i] = (uint8_t)(v >> (8 * i));
}

static void put32(uint8_t *p, uint32_t v)
{
	for (int i = 0; i < 4; i++)
		p[i] = (uint8_t)(v >> (8 * i));
}

static uint64_t get64(const uint8_t *p)
{
	uint64_t v = 0;
	for (int i = 7; i >= 0; i--)
		v = v << 8 | p[i];
	return v;
}

static uint32_t get32(const uint8_t *p)
{
	return (uint32_t)p[0] | (uint32_t)p[1] << 8 | (uint32_t)p[2] << 16 | (uint32_t)p[3] << 24;
}

static void path_of(char *buf, size_t len, const char *dir, const char *name)
{
	snprintf(buf, len, "%s/%s", dir, name);
}

static int fsync_dir(const char *dir)
{
	int fd = open(dir, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
	if (fd < 0)
		return -errno;
	int rc = fsync(fd) < 0 ? -errno : 0;
	close(fd);
	return rc;
}

/* Reads slot k of the hard-state file: 1 when valid (into hs, *seq). */
static int hs_read_slot(int fd, unsigned k, struct rmq_raft_hard_state *hs, uint64_t *seq)
{
	uint8_t b[64];
	if (pread(fd, b, sizeof(b), (off_t)k * HS_SLOT) != (ssize_t)sizeof(b))
		return 0;
	if (memcmp(b, HS_MAGIC, 8) != 0 || rmq_crc32c(0, b, 40) != get32(b + 40))
		return 0;
	*seq = get64(b + 8);
	hs->term = get64(b + 16);
	hs->vote = get32(b + 24);
	hs->commit = get64(b + 32);
	return 1;
}

static int hs_load(struct rmq_cstore *cs, struct rmq_raft_hard_state *hs)
{
	struct stat st;
	struct rmq_raft_hard_state h[2];
	uint64_t seq[2];
	int ok[2];

	if (fstat(cs->hs_fd, &st) < 0)
		return -errno;
	memset(hs, 0, sizeof(*hs));
	if (st.st_size == 0)
		return 0; /* new */
	for (unsigned k = 0; k < 2; k++)
		ok[k] = hs_read_slot(cs->hs_fd, k, &h[k], &seq[k]);
	if (!ok[0] && !ok[1]) {
		rmq_error("controller store %s: no valid hard state in either slot", cs->dir);
		return RMQ_ECORRUPT;
	}
	unsigned k = !ok[0] || (ok[1] && seq[1] > seq[0]) ? 1 : 0;
	*hs = h[k];
	cs->hs_seq = seq[k];
	return 0;
}

int rmq_cstore_snapshot_save(const char *dir, bool incoming, uint64_t index, uint64_t term,
			     const struct rmq_raft_conf *conf, const void *data, size_t len)
{
	uint8_t hdr[SNAP_HDR + RMQ_RAFT_CONF_ENCODED_MAX];
	size_t clen = rmq_raft_conf_encode(conf, hdr + SNAP_HDR);
	char tmp[4200], path[4200];
	int rc = 0;

	memcpy(hdr, SNAP_MAGIC, 8);
	put64(hdr + 8, index);
	put64(hdr + 16, term);
	put32(hdr + 24, (uint32_t)clen);
	put32(hdr + 28, (uint32_t)len);
	uint8_t crc[4];
	uint32_t c = rmq_crc32c(0, hdr, SNAP_HDR + clen);
	put32(crc, rmq_crc32c(c, data, len));
	path_of(tmp, sizeof(tmp), dir, "snapshot.tmp");
	path_of(path, sizeof(path), dir, incoming ? "snapshot.incoming" : "snapshot");
	int fd = open(tmp, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
	if (fd < 0)
		return -errno;
	struct iovec iov[3] = {{hdr, SNAP_HDR + clen}, {(void *)data, len}, {crc, 4}};
	size_t want = SNAP_HDR + clen + len + 4;
	ssize_t n = pwritev(fd, iov, 3, 0);
	if (n < 0)
		rc = -errno;
	else if ((size_t)n != want)
		rc = -EIO; /* a short write to a regular file: the disk is full */
	if (rc == 0 && fsync(fd) < 0)
		rc = -errno;
	close(fd);
	if (rc == 0 && rename(tmp, path) < 0)
		rc = -errno;
	if (rc == 0)
		rc = fsync_dir(dir);
	if (rc < 0)
		unlink(tmp);
	return rc;
}

/* Reads DIR/snapshot into st (absent: no snapshot). */
static int snap_load(const char *dir, struct rmq_cstore_state *st)
{
	char path[4200];
	path_of(path, sizeof(path), dir, "snapshot");
	int fd = open(path, O_RDONLY | O_CLOEXEC);
	if (fd < 0)
		return errno == ENOENT ? 0 : -errno;
	struct stat sb;
	uint8_t *buf = NULL;
	int rc = RMQ_ECORRUPT;
	if (fstat(fd, &sb) < 0) {
		rc = -errno;
		goto out;
	}
	size_t size = (size_t)sb.st_size;
	buf = malloc(size ? size : 1);
	if (!buf) {
		rc = -ENOMEM;
		goto out;
	}
	if (pread(fd, buf, size, 0) != (ssize_t)size) {
		rc = -EIO;
		goto out;
	}
	if (size < SNAP_HDR + 4 || memcmp(buf, SNAP_MAGIC, 8) != 0)
		goto out;
	size_t clen = get32(buf + 24), dlen = get32(buf + 28);
	if (clen > size || dlen > size || SNAP_HDR + clen + dlen + 4 != size ||
	    rmq_crc32c(0, buf, size - 4) != get32(buf + size - 4) ||
	    rmq_raft_conf_decode(buf + SNAP_HDR, clen, &st->snap_conf) < 0)
		goto out;
	st->snap_index = get64(buf + 8);
	st->snap_term = get64(buf + 16);
	if (st->snap_index == 0 || st->snap_term == 0)
		goto out;
	memmove(buf, buf + SNAP_HDR + clen, dlen);
	st->snap_data = buf;
	st->snap_len = dlen;
	buf = NULL;
	rc = 0;
out:
	if (rc == RMQ_ECORRUPT)
		rmq_error("controller store %s: the snapshot file fails its checks", dir);
	free(buf);
	close(fd);
	return rc;
}

/* ---- entries in the log -------------------------------------------------------- */

/* The records bytes of one entry: one Record whose value (field 2) is a
 * LogEntry {1 term, 2 index, 3 type, 4 data}.  The LogEntry's length and
 * the Record's, and the whole (returned). */
static size_t entry_size(const struct rmq_raft_entry *e, size_t *le, size_t *rec)
{
	*le = 1 + rmq_pb_varint_len(e->term) + 1 + rmq_pb_varint_len(e->index) + 1 +
	      rmq_pb_varint_len(e->type) + 1 + rmq_pb_varint_len(e->len) + e->len;
	*rec = 1 + rmq_pb_varint_len(*le) + *le;
	return 1 + rmq_pb_varint_len(*rec) + *rec;
}

static size_t entry_encode(uint8_t *p, const struct rmq_raft_entry *e)
{
	size_t le, rec;
	(void)entry_size(e, &le, &rec);
	uint8_t *q = p;
	q += rmq_pb_put_len(q, 7, rec);
	q += rmq_pb_put_len(q, 2, le);
	q += rmq_pb_put_uint(q, 1, e->term);
	q += rmq_pb_put_uint(q, 2, e->index);
	q += rmq_pb_put_uint(q, 3, e->type);
	q += rmq_pb_put_len(q, 4, e->len);
	if (e->len)
		memcpy(q, e->data, e->len);
	q += e->len;
	return (size_t)(q - p);
}

/* The entry in one batch's records bytes (data points into them). */
static int entry_decode(const uint8_t *p, size_t len, struct rmq_raft_entry *e)
{
	const uint8_t *end = p + len, *val = NULL;
	uint32_t f, w;
	uint64_t num;
	size_t vlen = 0;
	size_t k = rmq_pb_next(p, end, &f, &w, &num, &val, &vlen);
	if (k != len || f != 7 || w != RMQ_PB_LEN)
		return RMQ_ECORRUPT;
	/* The Record: its value. */
	const uint8_t *r = val, *rend = val + vlen, *le = NULL;
	size_t lelen = 0;
	while (r < rend) {
		k = rmq_pb_next(r, rend, &f, &w, &num, &val, &vlen);
		if (k == 0)
			return RMQ_ECORRUPT;
		if (f == 2 && w == RMQ_PB_LEN) {
			le = val;
			lelen = vlen;
		}
		r += k;
	}
	if (!le)
		return RMQ_ECORRUPT;
	memset(e, 0, sizeof(*e));
	for (const uint8_t *q = le, *qend = le + lelen; q < qend;) {
		k = rmq_pb_next(q, qend, &f, &w, &num, &val, &vlen);
		if (k == 0)
			return RMQ_ECORRUPT;
		if (f == 1 && w == RMQ_PB_VARINT)
			e->term = num;
		else if (f == 2 && w == RMQ_PB_VARINT)
			e->index = num;
		else if (f == 3 && w == RMQ_PB_VARINT)
			e->type = (uint32_t)num;
		else if (f == 4 && w == RMQ_PB_LEN) {
			e->data = (uint8_t *)val;
			e->len = (uint32_t)vlen;
		}
		q += k;
	}
	return e->term && e->index && e->type <= RMQ_RAFT_ENTRY_NOOP ? 0 : RMQ_ECORRUPT;
}

static int off_push(struct rmq_cstore *cs, uint64_t offset)
{
	if (cs->n_off == cs->cap_off) {
		size_t cap = cs->cap_off ? cs->cap_off * 2 : 256;
		uint64_t *o = realloc(cs->off, cap * sizeof(*o));
		if (!o)
			return -ENOMEM;
		cs->off = o;
		cs->cap_off = cap;
	}
	cs->off[cs->n_off++] = offset;
	return 0;
}

struct scan_ctx {
	struct rmq_cstore *cs;
	struct rmq_cstore_state *st;
	size_t cap;
	uint64_t prev;       /* index of the last entry read, 0: none */
	uint64_t stale_from; /* offset of the first entry to cut (UINT64_MAX: none) */
	int rc;
};

static int scan_entry(void *arg, const uint8_t *entry, const struct rmq_batch_view *hv)
{
	struct scan_ctx *x = arg;
	struct rmq_cstore_state *st = x->st;
	struct rmq_batch_view v;
	struct rmq_raft_entry e;
	if (x->stale_from != UINT64_MAX)
		return 0;
	if (rmq_batch_parse(entry, hv->entry_len, &v) <= 0 || rmq_batch_check_crc(entry, &v) < 0 ||
	    entry_decode(entry + v.records_pos, v.records_len, &e) < 0) {
		rmq_error("controller store %s: the batch at offset %" PRIu64
			  " is not a controller entry",
			  x->cs->dir, hv->hdr.base_offset);
		x->rc = RMQ_ECORRUPT;
		return -1;
	}
	/* Entries follow each other, except where a snapshot install let
	 * the log jump: from below the snapshot to right after it. */
	bool follows = x->prev == 0 || e.index == x->prev + 1 ||
		       (x->prev < st->snap_index && e.index == st->snap_index + 1);
	if (!follows) {
		rmq_error("controller store %s: entry %" PRIu64 " follows entry %" PRIu64, x->cs->dir,
			  e.index, x->prev);
		x->rc = RMQ_ECORRUPT;
		return -1;
	}
	x->prev = e.index;
	if (e.index == st->snap_index && e.term != st->snap_term) {
		/* The log diverged from the snapshot there: it and what follows
		 * are a stale tail the install did not get to cut (cut from the
		 * entry itself, so that later appends follow the snapshot). */
		x->stale_from = hv->hdr.base_offset;
		return 0;
	}
	if (e.index <= st->snap_index)
		return 0;
	if (st->n_entries == x->cap) {
		size_t cap = x->cap ? x->cap * 2 : 256;
		struct rmq_raft_entry *ne = realloc(st->entries, cap * sizeof(*ne));
		if (!ne) {
			x->rc = -ENOMEM;
			return -1;
		}
		st->entries = ne;
		x->cap = cap;
	}
	uint8_t *copy = NULL;
	if (e.len) {
		copy = malloc(e.len);
		if (!copy) {
			x->rc = -ENOMEM;
			return -1;
		}
		memcpy(copy, e.data, e.len);
	}
	e.data = copy;
	st->entries[st->n_entries++] = e;
	if (off_push(x->cs, hv->hdr.base_offset) < 0) {
		x->rc = -ENOMEM;
		return -1;
	}
	return 0;
}

/* Runs the ring until the log is idle (at open, and for tests). */
static void wait_idle(struct rmq_cstore *cs)
{
	while (!rmq_log_idle(cs->log)) {
		rmq_log_flush(cs->log);
		int rc = rmq_io_wait(cs->io, 10ULL * 1000 * 1000);
		if (rc < 0 && rc != -ETIME && rc != -EINTR)
			return;
	}
}

void rmq_cstore_state_free(struct rmq_cstore_state *st)
{
	for (size_t i = 0; i < st->n_entries; i++)
		free(st->entries[i].data);
	free(st->entries);
	free(st->snap_data);
	memset(st, 0, sizeof(*st));
}

int rmq_cstore_open(struct rmq_io *io, const char *dir, struct rmq_cstore **out,
		    struct rmq_cstore_state *st)
{
	char path[4200];
	struct rmq_log_config lc;
	int rc;

	memset(st, 0, sizeof(*st));
	if (strlen(dir) >= sizeof(((struct rmq_cstore *)0)->dir) - 32)
		return -ENAMETOOLONG;
	if (mkdir(dir, 0755) < 0 && errno != EEXIST)
		return -errno;
	struct rmq_cstore *cs = calloc(1, sizeof(*cs));
	if (!cs)
		return -ENOMEM;
	snprintf(cs->dir, sizeof(cs->dir), "%s", dir);
	cs->io = io;
	cs->hs_write_op.cb = hs_write_done;
	cs->hs_sync_op.cb = hs_sync_done;
	cs->retry_op.cb = retry_fired;
	path_of(path, sizeof(path), dir, "snapshot.tmp");
	(void)unlink(path); /* a save that did not finish */
	path_of(path, sizeof(path), dir, "hardstate");
	cs->hs_fd = open(path, O_RDWR | O_CREAT | O_CLOEXEC, 0644);
	if (cs->hs_fd < 0) {
		rc = -errno;
		free(cs);
		return rc;
	}
	rc = hs_load(cs, &st->hs);
	if (rc == 0)
		rc = snap_load(dir, st);
	if (rc < 0)
		goto fail;
	cs->base = st->snap_index;

	rmq_log_config_default(&lc);
	lc.segment_bytes = LOG_SEGMENT_BYTES;
	lc.segment_ms = 0;
	lc.retention_bytes = -1; /* compaction (rmq_cstore_compacted) bounds it */
	lc.retention_ms = -1;
	lc.write_buffer_bytes = LOG_WRITE_BUFFER;
	lc.fsync = RMQ_FSYNC_ALWAYS; /* Raft: durable before it is acknowledged */
	/* Room reserved ahead of the appends (storage/segment.h): a full
	 * disk still takes the metadata changes that free space. */
	lc.prealloc = RMQ_PREALLOC_FALLOCATE;
	path_of(path, sizeof(path), dir, "log");
	rc = rmq_log_open(io, path, &lc, &cs->log);
	if (rc < 0) {
		rmq_error("controller store %s: cannot open its log: %s", dir, rmq_strerror(rc));
		goto fail;
	}
	wait_idle(cs);
	struct scan_ctx x = {.cs = cs, .st = st, .stale_from = UINT64_MAX};
	int64_t skipped = rmq_log_scan(cs->log, rmq_log_start_offset(cs->log), scan_entry, &x);
	if (x.rc < 0) {
		rc = x.rc;
		goto fail;
	}
	if (skipped > 0) {
		rmq_error("controller store %s: %" PRId64 " offsets of its log are unreadable", dir,
			  skipped);
		rc = RMQ_ECORRUPT;
		goto fail;
	}
	if (x.stale_from != UINT64_MAX) {
		rmq_warn("controller store %s: cutting the entries after the snapshot at %" PRIu64
			 " that do not continue it",
			 dir, st->snap_index);
		rc = rmq_log_truncate(cs->log, x.stale_from);
		if (rc < 0)
			goto fail;
	}
	if (st->hs.commit > st->snap_index + st->n_entries)
		st->hs.commit = st->snap_index + st->n_entries;
	*out = cs;
	return 0;
fail:
	rmq_cstore_state_free(st);
	rmq_cstore_close(cs);
	return rc;
}

void rmq_cstore_close(struct rmq_cstore *cs)
{
	if (!cs)
		return;
	/* A write in flight finishes first (its done runs): its ring
	 * operations point into cs. */
	while (cs->busy || cs->retry_armed) {
		int rc = rmq_io_wait(cs->io, 10ULL * 1000 * 1000);
		if (rc < 0 && rc != -ETIME && rc != -EINTR)
			break;
	}
	if (cs->log) {
		wait_idle(cs);
		(void)rmq_log_close(cs->log);
	}
	while (cs->qhead) {
		struct capp *a = cs->qhead;
		cs->qhead = a->next;
		free(a);
	}
	if (cs->hs_fd >= 0)
		close(cs->hs_fd);
	free(cs->off);
	free(cs);
}

const char *rmq_cstore_dir(const struct rmq_cstore *cs)
{
	return cs->dir;
}

/* ---- writes ------------------------------------------------------------------- */

static struct rmq_cstore *of_op(struct rmq_io_op *op, size_t member)
{
	return (struct rmq_cstore *)((char *)op - member);
}

static void put_res(struct rmq_cstore *cs, int res)
{
	if (res < 0 && cs->res == 0) {
		cs->res = res;
		cs->failed = true;
		rmq_error("controller store %s: write failed: %s", cs->dir, rmq_strerror(res));
	}
	RMQ_ASSERT(cs->pending > 0);
	if (--cs->pending == 0)
		step(cs);
}

static void hs_issue_write(struct rmq_cstore *cs);
static void hs_issue_sync(struct rmq_cstore *cs);

static void hs_write_done(struct rmq_io_op *op, int res, unsigned flags)
{
	struct rmq_cstore *cs = of_op(op, offsetof(struct rmq_cstore, hs_write_op));
	(void)flags;
	if (res == -EAGAIN)
		hs_issue_write(cs); /* deferred: no SQE last cycle */
	else if (res < 0 || res != HS_BYTES)
		put_res(cs, res < 0 ? res : -EIO);
	else
		hs_issue_sync(cs);
}

static void hs_sync_done(struct rmq_io_op *op, int res, unsigned flags)
{
	struct rmq_cstore *cs = of_op(op, offsetof(struct rmq_cstore, hs_sync_op));
	(void)flags;
	if (res == -EAGAIN)
		hs_issue_sync(cs);
	else
		put_res(cs, res);
}

static void hs_issue_write(struct rmq_cstore *cs)
{
	struct io_uring_sqe *sqe = rmq_io_sqe(cs->io, &cs->hs_write_op);
	if (!sqe) {
		rmq_io_defer(cs->io, &cs->hs_write_op);
		return;
	}
	io_uring_prep_write(sqe, cs->hs_fd, cs->hs_buf, HS_BYTES, (cs->hs_seq % 2) * HS_SLOT);
}

static void hs_issue_sync(struct rmq_cstore *cs)
{
	struct io_uring_sqe *sqe = rmq_io_sqe(cs->io, &cs->hs_sync_op);
	if (!sqe) {
		rmq_io_defer(cs->io, &cs->hs_sync_op);
		return;
	}
	io_uring_prep_fsync(sqe, cs->hs_fd, IORING_FSYNC_DATASYNC);
}

/* Writes hs to the older slot, then syncs it (one pending unit). */
static void hs_start(struct rmq_cstore *cs, const struct rmq_raft_hard_state *hs)
{
	uint8_t *b = cs->hs_buf;
	memset(b, 0, sizeof(cs->hs_buf));
	memcpy(b, HS_MAGIC, 8);
	put64(b + 8, ++cs->hs_seq);
	put64(b + 16, hs->term);
	put32(b + 24, hs->vote);
	put64(b + 32, hs->commit);
	put32(b + 40, rmq_crc32c(0, b, 40));
	cs->pending++;
	hs_issue_write(cs);
}

static void entry_acked(struct rmq_append *a, int res)
{
	struct capp *c = (struct capp *)a;
	struct rmq_cstore *cs = c->cs;
	free(c);
	put_res(cs, res < 0 ? res : 0);
}

static void retry_fired(struct rmq_io_op *op, int res, unsigned flags)
{
	struct rmq_cstore *cs = of_op(op, offsetof(struct rmq_cstore, retry_op));
	(void)res;
	(void)flags;
	cs->retry_armed = false;
	step(cs);
}

/* Comes back to step() next cycle (rmq_io_defer: waited out, not spun). */
static void retry_later(struct rmq_cstore *cs)
{
	if (cs->retry_armed)
		return;
	cs->retry_armed = true;
	rmq_io_defer(cs->io, &cs->retry_op);
}

static void fail_write(struct rmq_cstore *cs, int rc)
{
	if (cs->res == 0) {
		cs->res = rc;
		cs->failed = true;
		rmq_error("controller store %s: write failed: %s", cs->dir, rmq_strerror(rc));
	}
}

/* Hands queued appends to the log in order (drops them after a failure). */
static void submit(struct rmq_cstore *cs)
{
	while (cs->qhead) {
		struct capp *c = cs->qhead;
		int rc = cs->res;
		if (rc == 0) {
			rmq_batch_hdr_init(&c->a.hdr);
			c->a.hdr.record_count = 1;
			c->a.hdr.leader_epoch = (uint32_t)c->term;
			c->a.cb = entry_acked;
			struct iovec iov = {c->data, c->len};
			rc = rmq_log_append(cs->log, &c->a, &iov, 1);
			if (rc == RMQ_EFULL) {
				retry_later(cs); /* room frees as writes complete */
				break;
			}
		}
		cs->qhead = c->next;
		if (rc < 0) {
			free(c);
			fail_write(cs, rc);
			cs->pending--;
			continue;
		}
		if (off_push(cs, c->a.hdr.base_offset) < 0)
			fail_write(cs, -ENOMEM);
	}
	rmq_log_flush(cs->log);
}

/* Removes the log's batches from offset on; the log must be idle. */
static int cut_log(struct rmq_cstore *cs, uint64_t offset)
{
	int rc = rmq_log_truncate(cs->log, offset);
	if (rc == 0 && rmq_log_end_offset(cs->log) < offset)
		rc = RMQ_ECORRUPT; /* damage below the cut: entries were lost */
	return rc;
}

/* Makes the received snapshot the stored one (blocking: a rename and a
 * directory fsync; installs are rare). */
static int install(struct rmq_cstore *cs, uint64_t index, bool keeps_log)
{
	char from[4200], to[4200];
	path_of(from, sizeof(from), cs->dir, "snapshot.incoming");
	path_of(to, sizeof(to), cs->dir, "snapshot");
	int rc = rename(from, to) < 0 ? -errno : fsync_dir(cs->dir);
	if (rc < 0)
		return rc;
	if (keeps_log) {
		/* The entries up to index are the snapshot's now. */
		size_t drop = index > cs->base ? (size_t)(index - cs->base) : 0;
		if (drop > cs->n_off)
			drop = cs->n_off;
		memmove(cs->off, cs->off + drop, (cs->n_off - drop) * sizeof(*cs->off));
		cs->n_off -= drop;
	} else {
		cs->cut_all = true; /* the old log goes (step() cuts it) */
	}
	cs->base = index;
	return 0;
}

/* Carries the write on as far as it can go now. */
static void step(struct rmq_cstore *cs)
{
	if (!cs->busy)
		return;
	if ((cs->cut_all || cs->cut_from) && cs->res == 0) {
		if (!rmq_log_idle(cs->log)) {
			rmq_log_flush(cs->log);
			retry_later(cs);
			return;
		}
		int rc = 0;
		if (cs->cut_all) {
			rc = cut_log(cs, rmq_log_start_offset(cs->log));
			cs->n_off = 0;
		} else if (cs->cut_from - cs->base - 1 < cs->n_off) {
			rc = cut_log(cs, cs->off[cs->cut_from - cs->base - 1]);
			cs->n_off = (size_t)(cs->cut_from - cs->base - 1);
		}
		cs->cut_all = false;
		cs->cut_from = 0;
		if (rc < 0)
			fail_write(cs, rc);
	}
	if (cs->qhead)
		submit(cs);
	if (cs->pending > 0 || cs->retry_armed)
		return;
	cs->busy = false;
	int res = cs->res;
	cs->res = 0;
	cs->done(cs->done_arg, res);
}

int rmq_cstore_write(struct rmq_cstore *cs, const struct rmq_raft_ready *rd,
		     void (*done)(void *arg, int res), void *arg)
{
	if (cs->busy || cs->failed)
		return RMQ_ESTATE;
	uint64_t base = rd->snapshot ? rd->snapshot_index : cs->base;
	uint64_t last = rd->snapshot && !rd->snapshot_keeps_log ? base : cs->base + cs->n_off;
	if (last < base)
		last = base;
	const struct rmq_raft_entry *e = rd->entries;
	size_t n = rd->n_entries;
	if (n > 0 && (e[0].index <= base || e[0].index > last + 1))
		return RMQ_ERANGE;
	struct capp *head = NULL, *tail = NULL;
	for (size_t i = 0; i < n; i++) {
		size_t le, rec, len = entry_size(&e[i], &le, &rec);
		struct capp *c = malloc(sizeof(*c) + len);
		if (!c) {
			while (head) {
				struct capp *x = head;
				head = x->next;
				free(x);
			}
			return -ENOMEM;
		}
		*c = (struct capp){.cs = cs, .term = e[i].term};
		c->len = entry_encode(c->data, &e[i]);
		if (tail)
			tail->next = c;
		else
			head = c;
		tail = c;
	}
	cs->busy = true;
	cs->done = done;
	cs->done_arg = arg;
	cs->res = 0;
	cs->pending = (unsigned)n;
	cs->qhead = head;
	if (rd->snapshot) {
		int rc = install(cs, rd->snapshot_index, rd->snapshot_keeps_log);
		if (rc < 0)
			fail_write(cs, rc);
	}
	if (n > 0 && e[0].index <= cs->base + cs->n_off)
		cs->cut_from = e[0].index;
	/* Term and vote must be durable; the commit index need not be (it
	 * is learned again), but a restart applies what it holds at once. */
	if (rd->hs_changed)
		hs_start(cs, &rd->hs);
	/* Not step() itself: done never runs inside this call. */
	retry_later(cs);
	return 0;
}

void rmq_cstore_compacted(struct rmq_cstore *cs, uint64_t index)
{
	if (index <= cs->base)
		return;
	size_t drop = (size_t)(index - cs->base);
	if (drop > cs->n_off)
		drop = cs->n_off;
	uint64_t keep_from = drop < cs->n_off ? cs->off[drop] : rmq_log_end_offset(cs->log);
	(void)rmq_log_delete_before(cs->log, keep_from);
	memmove(cs->off, cs->off + drop, (cs->n_off - drop) * sizeof(*cs->off));
	cs->n_off -= drop;
	cs->base = index;
}
