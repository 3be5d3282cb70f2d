/* SPDX-License-Identifier: Apache-2.0 */
/*
 * log.c - the partition log (see log.h for the append pipeline).
 *
 * Write buffer.  One buffer per log, registered with the ring when a slot is
 * free (WRITE_FIXED, else plain WRITE), used as a ring of whole entries:
 *
 *      0        head             pend        fill            W
 *      |  free  |### in flight ###|# pending #|     free      |
 *
 *   - entries never wrap: an entry that does not fit before W starts a new
 *     lap at 0 (wrap_end marks where the old lap's data ends);
 *   - "pending" bytes (appended since the last flush) always belong to the
 *     active segment; a roll or a wrap first cuts them into a write;
 *   - writes complete in any order but are retired in FIFO order, which is
 *     what frees buffer space and advances the written offset.
 *
 * Offsets, in order:  acked (= HW) <= synced <= written <= next_offset.
 *
 * Direct writes (fsync=always).  Measured on this machine (docs/storage.md,
 * "Write path and durability: measurements"), the page-cache path was bound
 * by the kernel copying into page-cache pages, not by the disk: a guest page
 * touched for the first time since the host took it back (virtio-balloon
 * free page reporting) costs a host fault, so fresh memory fills at
 * 0.4-0.7 GB/s against ~8 GB/s for resident memory, and buffered writes
 * plus fdatasync reached 370-460 MB/s (median 0.35 x fio direct).  Under
 * fsync=always every byte must reach the disk before its ack anyway, so the
 * page cache absorbs nothing: the data goes from the registered write
 * buffer straight to the disk with O_DIRECT (730-1160 MB/s, median 0.94 x
 * fio direct, same runs).  O_DIRECT moves whole blocks, so a write starts at
 * the block holding its first byte, re-writing the head of that block (the
 * previous write's tail, byte for byte), and ends padded with zeros; two
 * writes of one block are never in flight together (reserve_direct(),
 * cut_pending()).  The cost: written data is not in the page cache, so a
 * read of the tail through the map faults it in from the disk (a random
 * lookup ~40-55 us instead of ~3-7 us; sequential reads run at readahead
 * speed, 2-5 GB/s here).  fsync=never/interval keep the page cache, which
 * absorbs bursts and serves tailing consumers; a filesystem without
 * O_DIRECT falls back to it too.
 *
 * Each direct write carries RWF_DSYNC (dsync_writes): it is durable when it
 * completes, so no fdatasync follows.  An fdatasync always goes to one of
 * io_uring's workers, so one operation instead of two halves the hand-offs:
 * closed-loop produce (1 KiB x 100, --cores 2) medians of 6 interleaved
 * runs 722k msgs/s against 644k with write + group-commit fdatasync, open
 * loop at 310k p50 1.0 against 1.13 ms (p99 alike, 4.0 and 3.8 ms).
 *
 * A write that re-writes the head block is issued as two (cut_pending()):
 * ext4 serves an O_DIRECT write without blocking only when its blocks are
 * all written or all unwritten, and io_uring hands any other write to a
 * worker thread; that was every write (io_uring_queue_async_work traced),
 * ~20% of rmqd's CPU at half the peak rate (docs/storage.md).
 *
 * Preallocation.  A 1 MiB buffered write followed by fdatasync reaches
 * ~180 MB/s into fallocated (unwritten) extents, because every sync must
 * also commit the extent conversion, but ~1 GB/s when overwriting blocks
 * already written.  So on the page-cache path the default mode fallocates
 * each segment (space is reserved, reads return zeros) and then writes zeros
 * in RMQ_ZERO_CHUNK pieces ahead of the data (zero_ahead_bytes): the
 * conversion is paid once per chunk, not per sync.  A zero write never
 * overlaps data: it starts at least write_buffer_bytes beyond the data, and
 * a flush whose data would reach an in-flight zero write waits for it.
 * Direct writes skip the zeros: O_DIRECT + fdatasync costs only ~0.1 ms
 * more per sync into unwritten extents (fio, 4 MiB: 1342 against 1665 MB/s
 * pre-written), while the zeros double the bytes the disk must take.
 */
#include "storage/log.h"

#include "core/assert.h"
#include "core/crc32c.h"
#include "core/error.h"
#include "core/log.h"
#include "core/pbwire.h"
#include "core/shard.h"
#include "core/util.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#define RMQ_ZERO_CHUNK (4u << 20)
#define RMQ_ZERO_IOV 4
/* Largest page-cache write: whole appends up to this many bytes (at least
 * one).  Buffered writes of 256 KiB and more ran at 0.4-0.5 GB/s on this
 * machine against 1.4-1.9 GB/s for 128 KiB and less (fio, same minute;
 * likely larger folios drawn from memory the host had reclaimed), and a
 * write per few appends lets acks flow while the rest is copied:
 * fsync=never went from 343/497 to 642/610 MB/s (docs/storage.md). */
#define RMQ_BUF_CHUNK (128u << 10)
/* O_DIRECT alignment of file positions, lengths and buffer addresses: the
 * filesystem block, which also keeps ext4 off its unaligned-DIO path. */
#define RMQ_DIO_ALIGN 4096u

static inline uint64_t dio_up(uint64_t n)
{
	return (n + RMQ_DIO_ALIGN - 1) & ~(uint64_t)(RMQ_DIO_ALIGN - 1);
}

static inline uint32_t dio_down(uint32_t n)
{
	return n & ~(RMQ_DIO_ALIGN - 1);
}

struct wop {
	struct rmq_io_op op;
	struct rmq_log *log;
	struct rmq_segment *seg;
	uint64_t file_pos;   /* data: [file_pos, +len) at wbuf + buf_off */
	uint32_t buf_off;
	uint32_t len;
	/* The I/O: the data, or with O_DIRECT the whole blocks around it
	 * (the head of the first block re-written, the tail padded with
	 * zeros).  done_len counts I/O bytes. */
	int fd;
	uint64_t io_pos;
	uint32_t io_off;
	uint32_t io_len;
	uint32_t done_len;
	uint64_t end_offset; /* offset after the last batch of this write */
	uint64_t start_ns;   /* first submitted */
	bool done;
};

struct sync_op {
	struct rmq_io_op op;
	struct rmq_log *log;
	uint64_t target;     /* offsets below are durable when it completes */
	struct rmq_segment *seg;
	uint64_t start_ns;
	bool inflight;
};

struct zero_op {
	struct rmq_io_op op;
	struct rmq_log *log;
	struct rmq_segment *seg;
	struct rmq_segment *fd_seg; /* the segment fd is open on */
	int fd;                     /* O_DIRECT descriptor of fd_seg's data file */
	uint64_t pos;
	uint32_t len;
	uint32_t done_len;
	bool inflight;
	struct iovec iov[RMQ_ZERO_IOV];
};

enum roll_stage {
	ROLL_IDLE,
	ROLL_SEALING,  /* the old segment's data file is being synced */
	ROLL_CREATING, /* the new segment's directory entry is being synced */
};

/* A roll under way (roll() below). */
struct roll {
	struct rmq_io_op op;      /* the stage's sync */
	struct rmq_log *log;
	int fd;
	unsigned fsync_flags;
	bool inflight;
	enum roll_stage stage;
	struct rmq_segment *next; /* ROLL_CREATING: the new segment, not listed yet */
	uint64_t start_ns;
	int failed;               /* why the last roll did not happen, for the
				   * next roll() to return once */
};

/* Starts writeback of written data (fsync=never/interval). */
struct wb_op {
	struct rmq_io_op op;
	struct rmq_log *log;
	bool inflight;
};

struct rmq_log {
	struct rmq_io *io;
	struct rmq_log_config cfg;
	char dir[3072];
	int dir_fd;
	char spare[3072 + 64];     /* dir/spare.log */
	bool has_spare;
	uint64_t deleted_seq;      /* names deleted files (unlink_later) */
	uint32_t unlinks;          /* IORING_OP_UNLINKAT in flight */

	struct rmq_segment **segs; /* oldest first; segs[nsegs-1] is active */
	size_t nsegs, segs_cap;

	uint64_t next_offset; /* next offset to assign */
	uint64_t written;     /* writes retired up to here */
	uint64_t synced;      /* durable up to here */
	uint64_t hw;          /* acknowledged up to here */
	uint64_t log_start;

	/* Write buffer ring. */
	uint8_t *wbuf;
	uint32_t wcap;
	int wslot;            /* fixed-buffer slot, or -1 */
	uint32_t fill, pend, wrap_end;
	bool wrapped;
	uint64_t pend_file_pos;

	/* O_DIRECT data writes (fsync=always, see "Direct writes" above). */
	bool direct;
	bool dsync;                 /* direct writes carry RWF_DSYNC: no fdatasync */
	int dfd;                    /* O_DIRECT descriptor of dfd_seg's data file */
	struct rmq_segment *dfd_seg;
	bool lead_in_map;           /* the partial block before pend_file_pos is
				     * not in the buffer: copy it from the map */

	/* Write FIFO: wops[(wq_head + i) % nwops], i < wq_len. */
	struct wop *wops;
	uint32_t nwops, wq_head, wq_len;

	struct sync_op sync;
	struct zero_op zero;
	struct wb_op wb;
	struct roll roll;
	struct rmq_segment *wr_seg; /* where the last retired write ended */
	uint64_t wr_pos;
	struct rmq_segment *wb_seg; /* writeback started up to wb_pos */
	uint64_t wb_pos;

	/* Appends waiting for acknowledgement, in offset order; aq_uncut is
	 * the first whose bytes are still pending (not yet in a write). */
	struct rmq_append *aq_head, *aq_tail, *aq_uncut;

	int failed;           /* first I/O error; 0 = healthy */
	rmq_log_hw_cb hw_cb;
	void *hw_arg;
	struct rmq_log_stats stats;
};

static const uint8_t zero_chunk[RMQ_ZERO_CHUNK / RMQ_ZERO_IOV] __attribute__((aligned(4096)));

static uint64_t now_ms(const struct rmq_log *log)
{
	if (log->cfg.now_ms)
		return log->cfg.now_ms();
	struct timespec ts;
	clock_gettime(CLOCK_REALTIME, &ts);
	return (uint64_t)ts.tv_sec * 1000 + (uint64_t)ts.tv_nsec / 1000000;
}

/* The start of a timed operation: the clock only when latencies are
 * recorded. */
static inline uint64_t lat_start(const struct rmq_log *log)
{
	return log->cfg.metrics ? rmq_now_ns() : 0;
}

/* Records the time since start_ns in the shard's histogram `which`. */
#define RECORD_LAT(log, which, start_ns)                                                  \
	do {                                                                              \
		if ((log)->cfg.metrics)                                                   \
			rmq_lat_since(&(log)->cfg.metrics->which, (start_ns), rmq_now_ns()); \
	} while (0)

void rmq_log_config_default(struct rmq_log_config *cfg)
{
	memset(cfg, 0, sizeof(*cfg));
	cfg->segment_bytes = 1ULL << 30;
	cfg->segment_ms = 7ULL * 24 * 3600 * 1000;
	cfg->retention_bytes = -1;
	cfg->retention_ms = 7LL * 24 * 3600 * 1000;
	cfg->index_interval_bytes = 4096;
	cfg->write_buffer_bytes = 8u << 20;
	cfg->max_inflight_writes = 64;
	cfg->fsync = RMQ_FSYNC_ALWAYS;
	cfg->prealloc = RMQ_PREALLOC_ZERO;
	cfg->zero_ahead_bytes = 64ULL << 20;
	cfg->direct_writes = true;
	cfg->dsync_writes = true;
	cfg->recycle_segments = true;
}

static struct rmq_segment *active(const struct rmq_log *log)
{
	return log->segs[log->nsegs - 1];
}

/* ---- failure ----------------------------------------------------------- */

/* Fails the log: every waiting append completes with err, in order. */
static void fail_log(struct rmq_log *log, int err, const char *what)
{
	if (!log->failed) {
		rmq_error("log %s: %s failed: %s; the log is offline until reopened", log->dir,
			  what, rmq_strerror(err));
		log->failed = err;
	}
	log->aq_uncut = NULL;
	while (log->aq_head) {
		struct rmq_append *a = log->aq_head;
		log->aq_head = a->next;
		if (!log->aq_head)
			log->aq_tail = NULL;
		a->cb(a, err);
	}
}

/* ---- acknowledgement --------------------------------------------------- */

static void ack_to(struct rmq_log *log, uint64_t offset)
{
	bool moved = false;
	uint64_t now = 0;

	while (log->aq_head && log->aq_head->end_offset <= offset) {
		struct rmq_append *a = log->aq_head;
		log->aq_head = a->next;
		if (!log->aq_head)
			log->aq_tail = NULL;
		a->seg->visible_size = a->end_pos;
		log->hw = a->end_offset;
		moved = true;
		if (log->cfg.metrics) {
			if (!now)
				now = rmq_now_ns();
			rmq_lat_since(&log->cfg.metrics->ack, a->start_ns, now);
		}
		a->cb(a, 0);
	}
	if (moved && log->hw_cb)
		log->hw_cb(log->hw_arg, log->hw);
}

/* ---- sync -------------------------------------------------------------- */

static void submit_sync(struct rmq_log *log);

static void sync_done(struct rmq_io_op *op, int res, unsigned flags)
{
	struct sync_op *s = (struct sync_op *)op;
	struct rmq_log *log = s->log;

	(void)flags;
	s->inflight = false;
	if (res == -EINTR || res == -EAGAIN) {
		/* Retry on the active segment, which submit_sync() syncs.  Not
		 * s->seg: when that is an older segment, the roll's seal already
		 * synced it and retention may have freed it since. */
		active(log)->unsynced = true;
		submit_sync(log);
		return;
	}
	if (res < 0) {
		fail_log(log, res, "fdatasync");
		return;
	}
	log->stats.syncs++;
	RECORD_LAT(log, sync, s->start_ns);
	if (s->target > log->synced)
		log->synced = s->target;
	if (log->cfg.fsync == RMQ_FSYNC_ALWAYS)
		ack_to(log, log->synced);
	if (log->written > log->synced && active(log)->unsynced)
		submit_sync(log);
}

/* Issues one fdatasync of the active segment covering everything written
 * so far, unless one is in flight (its completion issues the next). */
static void submit_sync(struct rmq_log *log)
{
	struct sync_op *s = &log->sync;
	struct rmq_segment *seg = active(log);

	if (s->inflight || log->failed || !seg->unsynced)
		return;
	struct io_uring_sqe *sqe = rmq_io_sqe(log->io, &s->op);
	if (!sqe) {
		fail_log(log, -EBUSY, "queueing fdatasync");
		return;
	}
	io_uring_prep_fsync(sqe, seg->fd, IORING_FSYNC_DATASYNC);
	s->seg = seg;
	s->target = log->written;
	s->start_ns = lat_start(log);
	s->inflight = true;
	seg->unsynced = false;
}

/* ---- writes ------------------------------------------------------------ */

static void flush_pending(struct rmq_log *log);
static void zero_ahead(struct rmq_log *log);

static void submit_wop(struct rmq_log *log, struct wop *w)
{
	struct io_uring_sqe *sqe = rmq_io_sqe(log->io, &w->op);
	const uint8_t *p = log->wbuf + w->io_off + w->done_len;
	uint32_t n = w->io_len - w->done_len;

	if (!sqe) {
		/* Nothing in flight: retired as a failed write would be
		 * (write_done), by the next completion or at close. */
		fail_log(log, -EBUSY, "queueing a write");
		w->done = true;
		return;
	}
	if (log->wslot >= 0)
		io_uring_prep_write_fixed(sqe, w->fd, p, n, w->io_pos + w->done_len, log->wslot);
	else
		io_uring_prep_write(sqe, w->fd, p, n, w->io_pos + w->done_len);
	if (log->dsync)
		sqe->rw_flags = RWF_DSYNC;
	log->stats.writes++;
}

/* Queues w, whose data are the next w->len pending bytes, and submits it. */
static void start_wop(struct rmq_log *log, struct wop *w)
{
	w->done_len = 0;
	w->done = false;
	w->start_ns = lat_start(log);
	log->wq_len++;
	log->pend_file_pos += w->len;
	log->pend += w->len;
	submit_wop(log, w);
}

/*
 * fsync=never/interval: starts writeback (sync_file_range WRITE, which does
 * not wait) of every RMQ_WRITEBACK_BYTES of retired data.  Otherwise up to a
 * whole segment of dirty pages waited for the fdatasync that seals it, in
 * the append that rolled (the kernel's own flusher starts only at
 * dirty_background_ratio, gigabytes later): the worst ack took 550-640 ms
 * before, 200-370 ms after, and fsync=never went from 502-646 to 721-808
 * MB/s (docs/storage.md).
 */
#define RMQ_WRITEBACK_BYTES (16u << 20)

static void wb_done(struct rmq_io_op *op, int res, unsigned flags)
{
	struct wb_op *b = (struct wb_op *)op;

	(void)flags;
	(void)res; /* a writeback error surfaces at the next fdatasync */
	b->inflight = false;
}

static void kick_writeback(struct rmq_log *log)
{
	struct wb_op *b = &log->wb;

	if (log->cfg.fsync == RMQ_FSYNC_ALWAYS || b->inflight || log->failed || !log->wr_seg)
		return;
	if (log->wb_seg != log->wr_seg) {
		log->wb_seg = log->wr_seg;
		log->wb_pos = 0;
	}
	if (log->wr_pos < log->wb_pos + RMQ_WRITEBACK_BYTES)
		return;
	struct io_uring_sqe *sqe = rmq_io_sqe(log->io, &b->op);
	if (!sqe)
		return;
	io_uring_prep_sync_file_range(sqe, log->wb_seg->fd, (unsigned)(log->wr_pos - log->wb_pos),
				      log->wb_pos, SYNC_FILE_RANGE_WRITE);
	log->wb_pos = log->wr_pos;
	b->inflight = true;
}

/* Retires finished writes in FIFO order: frees their buffer space and
 * advances the written offset, then acknowledges or syncs. */
static void retire_writes(struct rmq_log *log)
{
	bool moved = false;

	while (log->wq_len > 0) {
		struct wop *w = &log->wops[log->wq_head];
		if (!w->done)
			break;
		log->written = w->end_offset;
		log->wr_seg = w->seg;
		log->wr_pos = w->file_pos + w->len;
		if (log->wrapped && w->buf_off + w->len == log->wrap_end)
			log->wrapped = false;
		log->wq_head = (log->wq_head + 1) % log->nwops;
		log->wq_len--;
		moved = true;
	}
	if (!moved || log->failed)
		return;
	if (log->cfg.fsync == RMQ_FSYNC_ALWAYS) {
		if (log->dsync && log->synced < log->written)
			log->synced = log->written;
		ack_to(log, log->synced);
		submit_sync(log);
	} else {
		ack_to(log, log->written);
		kick_writeback(log);
	}
}

static void write_done(struct rmq_io_op *op, int res, unsigned flags)
{
	struct wop *w = (struct wop *)op;
	struct rmq_log *log = w->log;

	(void)flags;
	if (!log->failed && (res == -EINTR || res == -EAGAIN)) {
		submit_wop(log, w);
		return;
	}
	if (!log->failed && res <= 0)
		fail_log(log, res < 0 ? res : -EIO, "write");
	if (log->failed) {
		/* Only retire it, so close() can free the buffer. */
		w->done = true;
		retire_writes(log);
		return;
	}
	w->done_len += (uint32_t)res;
	if (w->done_len < w->io_len) {
		submit_wop(log, w); /* short write: the rest */
		return;
	}
	w->done = true;
	RECORD_LAT(log, write, w->start_ns);
	if (log->dsync)
		log->stats.syncs++; /* the write was its own sync */
	else
		w->seg->unsynced = true;
	retire_writes(log);
	/* Space or a write slot may have been waiting. */
	flush_pending(log);
	zero_ahead(log);
}

static int dio_open(struct rmq_log *log, struct rmq_segment *seg);
static void queue_direct(struct rmq_log *log, struct rmq_segment *seg, uint32_t len,
			 uint64_t end_offset);

/* cut_pending() through the page cache: writes of whole appends, as many
 * as fit in RMQ_BUF_CHUNK (at least one), each acknowledging exactly those.
 * Returns 0, or RMQ_EFULL when the write slots ran out first. */
static int cut_buffered(struct rmq_log *log, struct rmq_segment *seg)
{
	while (log->pend < log->fill && log->wq_len < log->nwops) {
		struct wop *w = &log->wops[(log->wq_head + log->wq_len) % log->nwops];
		uint64_t at = log->pend_file_pos, end = at;
		uint64_t end_offset = log->next_offset;
		struct rmq_append *a = log->aq_uncut;
		while (a && a->seg == seg) {
			if (end > at && a->end_pos - at > RMQ_BUF_CHUNK)
				break;
			end = a->end_pos;
			end_offset = a->end_offset;
			a = a->next;
		}
		RMQ_DASSERT(end > at); /* every pending byte belongs to an append */
		if (end == at) {
			end = at + (log->fill - log->pend);
			end_offset = log->next_offset;
		}
		log->aq_uncut = a;
		uint32_t n = (uint32_t)(end - at);
		w->seg = seg;
		w->fd = seg->fd;
		w->file_pos = w->io_pos = log->pend_file_pos;
		w->buf_off = w->io_off = log->pend;
		w->len = w->io_len = n;
		w->end_offset = end_offset;
		start_wop(log, w);
	}
	return log->pend == log->fill ? 0 : RMQ_EFULL;
}

/* Turns the pending bytes into a write.  Returns 0, or RMQ_EFULL when no
 * write slot is free or (direct) the previous write still owns the block
 * this one starts in (the pending bytes stay pending). */
static int cut_pending(struct rmq_log *log)
{
	if (log->fill == log->pend)
		return 0;
	if (log->wq_len == log->nwops)
		return RMQ_EFULL;
	struct rmq_segment *seg = active(log);
	/* A zero write in flight must land before data overlapping it. */
	if (log->zero.inflight && log->zero.seg == seg &&
	    log->pend_file_pos + (log->fill - log->pend) > log->zero.pos)
		return RMQ_EFULL;
	if (!log->direct)
		return cut_buffered(log, seg);

	uint32_t lead = (uint32_t)(log->pend_file_pos % RMQ_DIO_ALIGN);
	/* Two writes of one block in flight could land in either order: the
	 * older must complete before the newer is issued. */
	if (log->wq_len > 0) {
		const struct wop *last = &log->wops[(log->wq_head + log->wq_len - 1) % log->nwops];
		if (!last->done && last->seg == seg &&
		    last->io_pos + last->io_len > log->pend_file_pos - lead)
			return RMQ_EFULL;
	}
	if (log->dfd_seg != seg) {
		int rc = dio_open(log, seg);
		if (rc < 0) {
			fail_log(log, rc, "opening the data file for O_DIRECT");
			return rc;
		}
	}
	/* reserve_direct() placed the data so that buffer and file offsets
	 * agree modulo the block size, with the head of the first block
	 * copied in front of it; the tail of the last block is padded with
	 * zeros.  One write per cut (two when it re-writes a head block, see
	 * below): splitting it into 256 KiB..1 MiB writes in flight together
	 * measured no better (docs/storage.md). */
	RMQ_DASSERT(log->pend % RMQ_DIO_ALIGN == lead);
	uint32_t io_end = (uint32_t)dio_up(log->fill);
	memset(log->wbuf + log->fill, 0, io_end - log->fill);
	/* A write that starts inside the block the previous one ended in
	 * spans a written block and unwritten ones; ext4 cannot do that
	 * without blocking, so io_uring would hand every such write to a
	 * worker thread.  The head block goes as a write of its own (a pure
	 * overwrite) and the rest as another (all unwritten), both at once:
	 * they do not overlap, and each is durable on completion.  In a
	 * recycled file every block below seg->zeroed is written already, so
	 * a write there is one overwrite (with RWF_DSYNC, one cache flush
	 * instead of two). */
	if (lead && io_end - (log->pend - lead) > RMQ_DIO_ALIGN && log->wq_len + 2 <= log->nwops &&
	    log->pend_file_pos + (io_end - log->pend) > seg->zeroed) {
		uint64_t before = log->wq_len ? log->wops[(log->wq_head + log->wq_len - 1) %
							  log->nwops].end_offset
					      : log->written;
		uint32_t head_len = RMQ_DIO_ALIGN - lead;
		queue_direct(log, seg, head_len, before);
	}
	queue_direct(log, seg, log->fill - log->pend, log->next_offset);
	log->aq_uncut = NULL; /* every append is in a write now */
	return 0;
}

/* Queues and submits an O_DIRECT write of the next len pending bytes with
 * the whole blocks around them; end_offset is the log offset written when
 * it (and every write before it) completes. */
static void queue_direct(struct rmq_log *log, struct rmq_segment *seg, uint32_t len,
			 uint64_t end_offset)
{
	uint32_t lead = (uint32_t)(log->pend_file_pos % RMQ_DIO_ALIGN);
	struct wop *w = &log->wops[(log->wq_head + log->wq_len) % log->nwops];

	w->seg = seg;
	w->fd = log->dfd;
	w->file_pos = log->pend_file_pos;
	w->buf_off = log->pend;
	w->len = len;
	w->io_off = log->pend - lead;
	w->io_pos = log->pend_file_pos - lead;
	w->io_len = (uint32_t)dio_up((uint64_t)log->pend + len) - w->io_off;
	w->end_offset = end_offset;
	start_wop(log, w);
}

static void flush_pending(struct rmq_log *log)
{
	if (!log->failed)
		(void)cut_pending(log);
}

void rmq_log_flush(struct rmq_log *log)
{
	flush_pending(log);
	zero_ahead(log);
}

/* ---- O_DIRECT descriptor ------------------------------------------------ */

static void dio_close(struct rmq_log *log)
{
	if (log->dfd >= 0)
		close(log->dfd);
	log->dfd = -1;
	log->dfd_seg = NULL;
}

/* Opens the O_DIRECT descriptor data writes use for seg.  Returns 0 or a
 * negated errno (-EINVAL: the filesystem has no O_DIRECT). */
static int dio_open(struct rmq_log *log, struct rmq_segment *seg)
{
	char name[sizeof(seg->path) + 8];

	dio_close(log);
	snprintf(name, sizeof(name), "%s.log", seg->path);
	int fd = open(name, O_WRONLY | O_DIRECT | O_CLOEXEC);
	if (fd < 0)
		return -errno;
	log->dfd = fd;
	log->dfd_seg = seg;
	return 0;
}

/* ---- zero-ahead -------------------------------------------------------- */

static void zero_done(struct rmq_io_op *op, int res, unsigned flags)
{
	struct zero_op *z = (struct zero_op *)op;
	struct rmq_log *log = z->log;

	(void)flags;
	z->inflight = false;
	if (log->failed)
		return;
	if (res < 0 && res != -EINTR && res != -EAGAIN) {
		/* Zeroing only speeds up syncs; the extents stay fallocated. */
		rmq_warn("log %s: zero-ahead write failed (%s); continuing without",
			 log->dir, rmq_strerror(res));
		log->cfg.prealloc = RMQ_PREALLOC_FALLOCATE;
		return;
	}
	if (res > 0) {
		z->done_len += (uint32_t)res;
		if (z->seg->zeroed < z->pos + z->done_len)
			z->seg->zeroed = z->pos + z->done_len;
	}
	flush_pending(log); /* a flush may have waited for this chunk */
	zero_ahead(log);
}

/* Zeros are written with O_DIRECT: they go to the disk now, beside the
 * data, instead of sitting dirty in the page cache until the next
 * fdatasync has to write them together with the data it waits for. */
static int zero_open(struct rmq_log *log, struct rmq_segment *seg)
{
	struct zero_op *z = &log->zero;
	char name[sizeof(seg->path) + 8];

	if (z->fd >= 0)
		close(z->fd);
	z->fd = -1;
	z->fd_seg = NULL;
	snprintf(name, sizeof(name), "%s.log", seg->path);
	z->fd = open(name, O_WRONLY | O_DIRECT | O_CLOEXEC);
	if (z->fd < 0) {
		int rc = -errno;
		rmq_warn("log %s: no O_DIRECT for zero-ahead (%s); continuing without", log->dir,
			 rmq_strerror(rc));
		log->cfg.prealloc = RMQ_PREALLOC_FALLOCATE;
		return rc;
	}
	z->fd_seg = seg;
	return 0;
}

static void zero_ahead(struct rmq_log *log)
{
	struct zero_op *z = &log->zero;
	struct rmq_segment *seg = active(log);

	/* Only syncs gain from zeroing; without them it doubles the page
	 * cache writes for nothing. */
	if (log->cfg.prealloc != RMQ_PREALLOC_ZERO || log->cfg.fsync != RMQ_FSYNC_ALWAYS ||
	    z->inflight || log->failed || log->roll.stage != ROLL_IDLE)
		return;
	/* With O_DIRECT data writes the zeros only double the disk traffic:
	 * 710-770 MB/s with them against 1010-1260 MB/s without
	 * (docs/storage.md). */
	if (log->direct)
		return;
	/* Never closer to the data than a full write buffer can reach. */
	uint64_t floor = log->pend_file_pos + (log->fill - log->pend) + log->wcap;
	floor = (floor + 4095) & ~4095ULL;
	if (seg->zeroed < floor)
		seg->zeroed = floor;
	uint64_t limit = seg->size + log->cfg.zero_ahead_bytes;
	if (limit > log->cfg.segment_bytes)
		limit = log->cfg.segment_bytes;
	if (limit > seg->map_len)
		limit = seg->map_len;
	if (seg->zeroed >= limit)
		return;
	uint64_t len = limit - seg->zeroed;
	if (len > RMQ_ZERO_CHUNK)
		len = RMQ_ZERO_CHUNK;
	len &= ~4095ULL; /* O_DIRECT: whole blocks */
	if (len == 0)
		return;
	if (z->fd_seg != seg && zero_open(log, seg) < 0)
		return;
	struct io_uring_sqe *sqe = rmq_io_sqe(log->io, &z->op);
	if (!sqe)
		return;
	unsigned n = 0;
	for (uint64_t left = len; left > 0 && n < RMQ_ZERO_IOV; n++) {
		uint64_t k = left < sizeof(zero_chunk) ? left : sizeof(zero_chunk);
		z->iov[n].iov_base = (void *)zero_chunk;
		z->iov[n].iov_len = k;
		left -= k;
	}
	io_uring_prep_writev(sqe, z->fd, z->iov, n, seg->zeroed);
	z->seg = seg;
	z->pos = seg->zeroed;
	z->len = (uint32_t)len;
	z->done_len = 0;
	z->inflight = true;
}

/* ---- buffer space ------------------------------------------------------ */

static int64_t reserve_direct(struct rmq_log *log, uint32_t n);

/* Reserves n contiguous bytes at the buffer's fill point.  Returns the
 * buffer offset, or RMQ_EFULL. */
static int64_t reserve(struct rmq_log *log, uint32_t n)
{
	if (log->direct)
		return reserve_direct(log, n);
	if (log->wq_len == 0 && log->fill == log->pend) {
		/* Nothing live: start over at 0. */
		log->fill = log->pend = 0;
		log->wrapped = false;
	}
	uint32_t head = log->wq_len ? log->wops[log->wq_head].buf_off : log->pend;
	if (!log->wrapped) {
		if ((uint64_t)log->fill + n <= log->wcap)
			return log->fill;
		if (n >= head)
			return RMQ_EFULL;
		/* New lap: the pending bytes must become a write first so that
		 * no write spans the wrap. */
		if (cut_pending(log) < 0)
			return RMQ_EFULL;
		log->wrapped = true;
		log->wrap_end = log->fill;
		log->fill = log->pend = 0;
		return 0;
	}
	if ((uint64_t)log->fill + n < head)
		return log->fill;
	return RMQ_EFULL;
}

/*
 * reserve() for O_DIRECT writes, which move whole blocks between the
 * buffer and the file.  Pending bytes grow contiguously while the blocks
 * they end in fit.  A write cut before them ends in a partial block that
 * the next write must carry again, so the first entry after a cut starts
 * a fresh buffer block: the head of the file block (`lead` bytes, copied
 * from the previous write's tail, or from the map after open and
 * truncation) goes first and the entry after it, so that buffer offset and
 * file position agree modulo RMQ_DIO_ALIGN.  A fresh block each time,
 * rather than appending into the block the previous write is still
 * reading, keeps an in-flight write's bytes stable.  It costs a copy of at
 * most one block per write, and up to two blocks of buffer.  A crash with
 * writes in flight may leave the newest segment with any of them missing
 * (the head block and the rest go as two writes): data, zeros, maybe data
 * again, all of it unacknowledged; recovery cuts the segment at the first
 * bad entry.
 */
static int64_t reserve_direct(struct rmq_log *log, uint32_t n)
{
	uint32_t head = log->wq_len ? dio_down(log->wops[log->wq_head].buf_off) : 0;

	if (log->fill != log->pend) {
		uint64_t limit = log->wrapped ? head : log->wcap;
		if (dio_up((uint64_t)log->fill + n) <= limit)
			return log->fill;
		if (cut_pending(log) < 0)
			return RMQ_EFULL;
		head = dio_down(log->wops[log->wq_head].buf_off);
	}
	uint32_t lead = (uint32_t)(log->pend_file_pos % RMQ_DIO_ALIGN);
	const uint8_t *src = log->lead_in_map ? active(log)->map + (log->pend_file_pos - lead)
					      : log->wbuf + log->pend - lead;
	uint64_t dst;
	if (log->wq_len == 0) {
		dst = 0; /* nothing live: start over at 0 */
		log->wrapped = false;
	} else {
		dst = dio_up(log->fill);
		uint64_t limit = log->wrapped ? head : log->wcap;
		if (dio_up(dst + lead + n) > limit) {
			if (log->wrapped || dio_up((uint64_t)lead + n) > head)
				return RMQ_EFULL;
			/* New lap; the live writes end at fill. */
			log->wrapped = true;
			log->wrap_end = log->fill;
			dst = 0;
		}
	}
	memmove(log->wbuf + dst, src, lead);
	log->fill = log->pend = (uint32_t)dst + lead;
	log->lead_in_map = false;
	return log->fill;
}

/* ---- segments ---------------------------------------------------------- */

static int push_segment(struct rmq_log *log, struct rmq_segment *s)
{
	if (log->nsegs == log->segs_cap) {
		size_t cap = log->segs_cap ? log->segs_cap * 2 : 8;
		struct rmq_segment **n = realloc(log->segs, cap * sizeof(*n));
		if (!n)
			return -ENOMEM;
		log->segs = n;
		log->segs_cap = cap;
	}
	log->segs[log->nsegs++] = s;
	/* Readers touch the mapping only for batch headers and for slices
	 * that mincore() shows resident (broker/fetch.c reads the rest with
	 * io_uring and checks its CRCs).  Without this, a header's page fault
	 * reads ahead ~128 KiB around it: a longer synchronous stall, and
	 * neighbouring batches become resident without a CRC check, so a
	 * fetch would serve them from the mapping unverified.  MADV_RANDOM
	 * makes such a fault read the one page; read()'s own readahead (on
	 * the file, not the mapping) is unaffected.  Advice only: ignore
	 * failure. */
	if (s->map && s->map_len)
		(void)madvise((void *)(uintptr_t)s->map, s->map_len, MADV_RANDOM);
	return 0;
}

/* Creates the files of a new segment at base, in the spare's file when
 * there is one.  The directory is not synced and the segment not listed:
 * the callers do both (new_segment, roll_step). */
static int create_segment(struct rmq_log *log, uint64_t base, struct rmq_segment **out)
{
	struct rmq_segment *s = malloc(sizeof(*s));
	int rc;

	if (!s)
		return -ENOMEM;
	rc = -ENOENT;
	if (log->has_spare && log->cfg.recycle_segments) {
		rc = rmq_segment_create(s, log->dir, base, log->cfg.segment_bytes,
					log->cfg.index_interval_bytes, log->cfg.prealloc,
					log->spare);
		if (rc != RMQ_EEXIST)
			log->has_spare = false; /* taken, or not usable */
		if (rc == 0)
			log->stats.recycled_segments++;
		else if (rc != RMQ_EEXIST && rc != -ENOENT)
			rmq_warn("log %s: cannot reuse %s (%s); creating a new file", log->dir,
				 log->spare, rmq_strerror(rc));
	}
	if (rc < 0 && rc != RMQ_EEXIST)
		rc = rmq_segment_create(s, log->dir, base, log->cfg.segment_bytes,
					log->cfg.index_interval_bytes, log->cfg.prealloc, NULL);
	if (rc < 0) {
		free(s);
		return rc;
	}
	*out = s;
	return 0;
}

/* Deletes a created segment that never made it into the list.  Its file
 * may already be on disk (its directory entry even synced): the deletion
 * must be durable before the older segment takes appends again, or a crash
 * could bring the empty newer file back, and recovery would fence the
 * older segment's acknowledged tail as a gap.  s NULL: the creation
 * failed, and rmq_segment_create() removed what it had made; that removal
 * must be durable all the same.  Returns 0 or a negated errno (the caller
 * fails the log). */
static int discard_segment(struct rmq_log *log, struct rmq_segment *s)
{
	if (s) {
		rmq_segment_delete(s);
		free(s);
	}
	return fsync(log->dir_fd) < 0 ? -errno : 0;
}

/* The first segment of an empty log, synchronously (at open). */
static int new_segment(struct rmq_log *log, uint64_t base)
{
	struct rmq_segment *s;
	int rc = create_segment(log, base, &s);
	if (rc < 0)
		return rc;
	/* The new file must survive a crash before any data in it is
	 * acknowledged. */
	rc = fsync(log->dir_fd) < 0 ? -errno : push_segment(log, s);
	if (rc < 0) {
		(void)discard_segment(log, s); /* the open fails anyway */
		return rc;
	}
	log->stats.segments++;
	return 0;
}

/*
 * Rolling: a new active segment at next_offset.
 *
 * The old segment is sealed (every data and zero write retired, the data
 * file cut to length and synced) before the new segment's file is
 * created, so a newer file on disk always means the older segments are
 * whole.  Recovery depends on that: it cuts a torn tail only in the newest
 * segment and fences a short or bad older one as corruption.  Creating
 * the new file while writes to the old one were still in flight let a
 * crash leave the old segment short of the new one's base; recovery then
 * fenced the gap below a high watermark that covered it, served the
 * never-acknowledged batches after it, and appends went on past a hole no
 * reader could cross (tests/storage/test_crash.c).  Waiting costs one
 * write latency per roll.
 *
 * The two syncs run on the ring, off the shard's thread, which serves its
 * other partitions meanwhile:
 *
 *   roll()         cut the data file to length (ftruncate),
 *     │            FSYNC(DATASYNC) of it
 *     ▼
 *   ROLL_SEALING ── done ──► mark it sealed; create the new files (the
 *     │                      spare's or new ones; not listed yet),
 *     ▼                      FSYNC of the directory
 *   ROLL_CREATING ─ done ──► list it: appends go there
 *
 * The index files are neither cut nor synced here: recovery keeps an
 * older segment's indexes only up to their last entry that sits on the
 * right batch and rebuilds the rest from the data, so an entry a crash
 * lost costs a scan at the next open, never a wrong answer (segment.h says
 * where they are synced, and why).  The shard used to
 * run the seal's three syncs and the directory's itself, holding all its
 * partitions for 2.5-3 ms per roll (docs/storage.md).
 *
 * Appends meet RMQ_EFULL from the start of a roll to its end, as for a
 * full buffer.  A failed sync of the old segment fails the log; a failed
 * creation leaves the old segment active (its cuts undone) and the next
 * roll() returns the error once, so one append fails with it.
 */
static void roll_step(struct rmq_log *log, int err);
static int roll_sync(struct rmq_log *log, int fd, unsigned fsync_flags);

static void roll_op_done(struct rmq_io_op *op, int res, unsigned flags)
{
	struct rmq_log *log = RMQ_CONTAINER_OF(op, struct roll, op)->log;

	(void)flags;
	if (res == -EINTR || res == -EAGAIN)
		res = roll_sync(log, log->roll.fd, log->roll.fsync_flags); /* 1: again */
	if (res <= 0)
		roll_step(log, res);
}

/* Starts an fsync of fd for the current stage.  Returns 1 when it went
 * out (roll_step runs at its completion), or -EBUSY. */
static int roll_sync(struct rmq_log *log, int fd, unsigned fsync_flags)
{
	struct roll *r = &log->roll;
	struct io_uring_sqe *sqe = rmq_io_sqe(log->io, &r->op);

	if (!sqe)
		return -EBUSY;
	r->op.cb = roll_op_done;
	r->log = log;
	r->fd = fd;
	r->fsync_flags = fsync_flags;
	r->inflight = true;
	io_uring_prep_fsync(sqe, fd, fsync_flags);
	return 1;
}

/* A roll whose new segment s (NULL: not created) could not be made,
 * synced or listed: s goes, durably (or the log fails), and the old
 * segment stays active with the seal's cuts undone; the next roll()
 * returns err once. */
static void roll_undo(struct rmq_log *log, struct rmq_segment *s, int err)
{
	int d = discard_segment(log, s);
	if (d < 0)
		fail_log(log, d, "removing a new segment after a failed roll");
	log->roll.stage = ROLL_IDLE;
	if (log->failed)
		return;
	struct rmq_segment *old = active(log);
	int cut = rmq_segment_cut(old, old->size, log->cfg.segment_bytes, log->cfg.prealloc);
	if (cut < 0)
		fail_log(log, cut, "reopening a segment after a failed roll");
	old->zeroed = 0;
	log->roll.failed = err;
}

/* Runs when the stage's sync is done (err 0) or failed. */
static void roll_step(struct rmq_log *log, int err)
{
	struct roll *r = &log->roll;
	struct rmq_segment *old = active(log);

	r->inflight = false;
	if (r->stage == ROLL_SEALING) {
		if (err < 0 || log->failed) {
			r->stage = ROLL_IDLE;
			if (err < 0)
				fail_log(log, err, "sealing a segment");
			return;
		}
		rmq_segment_sealed(old);
		old->unsynced = false;
		if (log->dfd_seg == old)
			dio_close(log);
		if (log->zero.fd_seg == old) {
			/* Done zeroing it; a later segment may reuse its address. */
			close(log->zero.fd);
			log->zero.fd = -1;
			log->zero.fd_seg = NULL;
		}
		if (log->synced < old->next_offset)
			log->synced = old->next_offset;
		if (log->cfg.fsync == RMQ_FSYNC_ALWAYS)
			ack_to(log, log->synced);
		int rc = create_segment(log, log->next_offset, &r->next);
		if (rc == 0) {
			/* The new file must survive a crash before any data
			 * in it is acknowledged. */
			r->stage = ROLL_CREATING;
			rc = roll_sync(log, log->dir_fd, 0);
		}
		if (rc < 0) {
			struct rmq_segment *s = r->next;
			r->next = NULL;
			roll_undo(log, s, rc);
		}
		return;
	}
	RMQ_ASSERT(r->stage == ROLL_CREATING);
	struct rmq_segment *s = r->next;
	r->next = NULL;
	if (err == 0 && !log->failed)
		err = push_segment(log, s);
	if (err == 0 && !log->failed) {
		r->stage = ROLL_IDLE;
		log->stats.segments++;
		log->pend_file_pos = 0;
		log->stats.rolls++;
		RECORD_LAT(log, roll, r->start_ns);
		return;
	}
	roll_undo(log, s, err);
}

/* Starts a roll.  Returns RMQ_EFULL while writes to the old segment are in
 * flight or a roll is under way (the caller retries after completions
 * run, as for a full buffer), or a negated errno: cutting the old
 * segment's files failed (the log fails too), or the last roll could not
 * create the new segment. */
static int roll(struct rmq_log *log)
{
	struct roll *r = &log->roll;
	struct rmq_segment *old = active(log);

	if (r->stage != ROLL_IDLE)
		return RMQ_EFULL;
	if (r->failed) {
		int err = r->failed;
		r->failed = 0;
		return err;
	}
	int rc = cut_pending(log);
	if (rc < 0)
		return rc;
	/* A zero-ahead write landing after the seal would extend the cut
	 * file, or touch the segment after retention freed it.  A group
	 * commit's fdatasync of it must finish first too: a writeback error
	 * is reported to one fsync of an open file, and the seal's, if it
	 * came back first, would acknowledge data the other then reports
	 * lost. */
	if (log->written < log->next_offset || (log->zero.inflight && log->zero.seg == old) ||
	    (log->sync.inflight && log->sync.seg == old))
		return RMQ_EFULL;
	r->start_ns = lat_start(log);
	rc = rmq_segment_seal_cut(old);
	if (rc == 0) {
		r->stage = ROLL_SEALING;
		rc = roll_sync(log, old->fd, IORING_FSYNC_DATASYNC);
	}
	if (rc < 0) {
		r->stage = ROLL_IDLE;
		fail_log(log, rc, "sealing a segment");
		return rc;
	}
	return RMQ_EFULL;
}

static void free_segment(struct rmq_segment *s)
{
	rmq_segment_close(s);
	free(s);
}

/* ---- deleting files off the shard ----------------------------------------- */

/* A deleted data file is renamed to DELETED_PREFIX<n>.log and unlinked with
 * IORING_OP_UNLINKAT, which runs in an io_uring worker: freeing the blocks
 * of a big file is synchronous in the unlink that drops its last link
 * (83-98 ms for 256 MiB here, docs/storage.md), and the shard's appends
 * would wait that long.  Names starting with '.' are never segments; a
 * crash leaves such files behind and the next open removes them. */
#define DELETED_PREFIX ".deleted-"

struct unlink_op {
	struct rmq_io_op op;
	struct rmq_log *log;
	char path[sizeof(((struct rmq_log *)0)->spare)];
};

static void unlink_done(struct rmq_io_op *op, int res, unsigned flags)
{
	struct unlink_op *u = (struct unlink_op *)op;

	(void)flags;
	/* Kernels before 5.11 have no IORING_OP_UNLINKAT: unlink here. */
	if ((res == -EINVAL || res == -EOPNOTSUPP) && unlink(u->path) < 0)
		res = -errno;
	else if (res == -EINVAL || res == -EOPNOTSUPP)
		res = 0;
	if (res < 0 && res != -ENOENT)
		rmq_warn("log %s: cannot delete %s: %s", u->log->dir, u->path, rmq_strerror(res));
	u->log->unlinks--;
	free(u);
}

/* Deletes the files of s (not pinned; its struct is the caller's). */
static void unlink_later(struct rmq_log *log, struct rmq_segment *s)
{
	struct unlink_op *u = malloc(sizeof(*u));
	struct io_uring_sqe *sqe = NULL;
	int rc = -ENOMEM;

	if (u) {
		snprintf(u->path, sizeof(u->path), "%s/" DELETED_PREFIX "%" PRIu64 ".log", log->dir,
			 log->deleted_seq++);
		rc = rmq_segment_detach(s, u->path);
		if (rc == 0) {
			u->op.cb = unlink_done;
			u->log = log;
			sqe = rmq_io_sqe(log->io, &u->op);
		}
	} else {
		rmq_segment_close(s);
	}
	if (sqe) {
		io_uring_prep_unlinkat(sqe, AT_FDCWD, u->path, 0);
		log->unlinks++;
		return;
	}
	/* Here, then: the renamed file, or what is left of the segment. */
	if (rc == 0 && unlink(u->path) < 0)
		rc = -errno;
	else if (rc < 0)
		rc = rmq_segment_unlink(s);
	if (rc < 0)
		rmq_warn("log %s: cannot delete segment %020" PRIu64 ": %s", log->dir,
			 s->base_offset, rmq_strerror(rc));
	free(u);
}

/*
 * Removes segs[i] from the list and its files from the directory at once.
 * A segment readers still pin stays open and mapped (unlinked files live
 * on) and is freed by the last rmq_log_read_done().  Unlinking only then
 * was wrong: after a truncation, appends re-create a segment with the same
 * base, which failed with RMQ_EEXIST on the old files, and the late
 * release would then have deleted the new segment's files.
 */
static void drop_segment(struct rmq_log *log, size_t i, bool recycle)
{
	struct rmq_segment *s = log->segs[i];
	memmove(&log->segs[i], &log->segs[i + 1], (log->nsegs - i - 1) * sizeof(*log->segs));
	log->nsegs--;
	log->stats.deleted_segments++;
	if (log->dfd_seg == s)
		dio_close(log);
	if (log->wr_seg == s)
		log->wr_seg = NULL;
	if (log->wb_seg == s)
		log->wb_seg = NULL;
	if (log->zero.fd_seg == s) {
		close(log->zero.fd);
		log->zero.fd = -1;
		log->zero.fd_seg = NULL;
	}
	if (atomic_load_explicit(&s->pins, memory_order_acquire) > 0) {
		int rc = rmq_segment_unlink(s);
		if (rc < 0)
			rmq_warn("log %s: cannot delete segment %020" PRIu64 ": %s", log->dir,
				 s->base_offset, rmq_strerror(rc));
		/* The last reader frees it, on whichever shard it is; when it
		 * left between the load and here, we do. */
		if (atomic_fetch_or_explicit(&s->pins, RMQ_SEG_DOOMED, memory_order_acq_rel) == 0)
			free_segment(s);
	} else if (recycle && s->sealed && log->cfg.recycle_segments && !log->has_spare &&
		   rmq_segment_detach(s, log->spare) == 0) {
		log->has_spare = true;
		free(s);
	} else {
		unlink_later(log, s);
		free(s);
	}
}

/* ---- append ------------------------------------------------------------ */

int rmq_log_append(struct rmq_log *log, struct rmq_append *a, const struct iovec *recs,
		   int nrecs)
{
	uint8_t prefix[RMQ_BATCH_PREFIX_MAX];
	struct rmq_batch_hdr *h = &a->hdr;
	size_t rlen = 0;
	uint32_t crc = 0;
	int rc;

	if (log->failed)
		return RMQ_ESTATE;
	if (h->record_count == 0)
		return RMQ_EPROTO;
	if (log->roll.stage != ROLL_IDLE) {
		log->stats.buffer_full++; /* the old segment is being sealed */
		return RMQ_EFULL;
	}
	for (int i = 0; i < nrecs; i++) {
		rlen += recs[i].iov_len;
		crc = rmq_crc32c(crc, recs[i].iov_base, recs[i].iov_len);
	}
	/* Check the producer's CRC before anything is written. */
	if (h->crc32 != 0 && h->crc32 != crc)
		return RMQ_ECRC;
	h->crc32 = crc;
	h->base_offset = log->next_offset;
	h->log_append_time_ms = now_ms(log);
	int plen = rmq_batch_encode_prefix(h, rlen, prefix);
	if (plen < 0)
		return plen;
	uint64_t len = (uint64_t)plen + rlen;
	if (len > log->cfg.segment_bytes || len > log->wcap / 2)
		return RMQ_ETOOBIG;

	struct rmq_segment *seg = active(log);
	bool too_old = log->cfg.segment_ms && seg->created_ms >= 0 &&
		       h->log_append_time_ms >= (uint64_t)seg->created_ms + log->cfg.segment_ms;
	/* A segment never outgrows its mapping, even when segment_bytes was
	 * raised after it was created (rmq_log_set_limits). */
	uint64_t cap = log->cfg.segment_bytes < seg->map_len ? log->cfg.segment_bytes : seg->map_len;
	if (seg->size > 0 && (seg->size + len > cap || too_old)) {
		rc = roll(log);
		if (rc < 0) {
			if (rc == RMQ_EFULL)
				log->stats.buffer_full++;
			return rc;
		}
		seg = active(log);
	}
	/* Disk space first: a full disk refuses the append, it never tears it. */
	rc = rmq_segment_reserve(seg, seg->size + len, log->cfg.segment_bytes, log->cfg.prealloc);
	if (rc < 0)
		return rc;
	int64_t off = reserve(log, (uint32_t)len);
	if (off < 0) {
		log->stats.buffer_full++;
		return (int)off;
	}
	uint8_t *dst = log->wbuf + off;
	memcpy(dst, prefix, (size_t)plen);
	dst += plen;
	for (int i = 0; i < nrecs; i++) {
		memcpy(dst, recs[i].iov_base, recs[i].iov_len);
		dst += recs[i].iov_len;
	}
	/* Refuse an entry that could never be read back: records bytes that
	 * are not whole field-7 elements (none, truncated, stray fields) would
	 * be written, then fail every read with RMQ_ECORRUPT and make recovery
	 * cut the log there, taking every later batch with them.  Parsing the
	 * copy checks exactly the bytes the write will carry; it walks record
	 * keys and lengths only.  Nothing is committed yet, so returning here
	 * leaves no trace (a roll or a new buffer lap just done is harmless). */
	struct rmq_batch_view v;
	if (rmq_batch_parse(log->wbuf + off, len, &v) != (int)len)
		return RMQ_EPROTO;
	/* segment.ms ages a segment by the broker's clock, never by a
	 * timestamp the producer chose; recovery reads the same value back
	 * from the first batch's log_append_time_ms. */
	if (seg->created_ms < 0)
		seg->created_ms = (int64_t)h->log_append_time_ms;
	int64_t ts = h->max_timestamp_ms >= 0 ? h->max_timestamp_ms : (int64_t)h->log_append_time_ms;
	rmq_segment_index_batch(seg, h->base_offset, seg->size, (uint32_t)len, ts,
				log->cfg.index_interval_bytes);
	log->fill = (uint32_t)off + (uint32_t)len;
	seg->size += len;
	log->next_offset += h->record_count;
	seg->next_offset = log->next_offset;

	a->next = NULL;
	a->end_offset = log->next_offset;
	a->seg = seg;
	a->end_pos = seg->size;
	a->start_ns = lat_start(log);
	if (log->aq_tail)
		log->aq_tail->next = a;
	else
		log->aq_head = a;
	log->aq_tail = a;
	if (!log->aq_uncut)
		log->aq_uncut = a;
	log->stats.appends++;
	log->stats.appended_bytes += len;
	return 0;
}

void rmq_log_sync_tick(struct rmq_log *log)
{
	if (log->written > log->synced)
		submit_sync(log);
}

/* ---- reads ------------------------------------------------------------- */

/* Index of the segment holding offset: the last with base <= offset. */
static int64_t find_segment(const struct rmq_log *log, uint64_t offset)
{
	size_t lo = 0, hi = log->nsegs;
	while (lo < hi) {
		size_t mid = lo + (hi - lo) / 2;
		if (log->segs[mid]->base_offset <= offset)
			lo = mid + 1;
		else
			hi = mid;
	}
	return (int64_t)lo - 1;
}

/* Length of the entry at p (key + varint + body) from its prefix alone;
 * 0 when it does not fit in avail or is not an entry. */
static uint32_t entry_len_at(const uint8_t *p, uint64_t avail)
{
	uint64_t body;

	if (avail < 2 || p[0] != RMQ_BATCH_KEY)
		return 0;
	size_t k = rmq_pb_get_varint(p + 1, p + (avail < 6 ? avail : 6), &body);
	if (k == 0 || body > avail - 1 - k)
		return 0;
	return (uint32_t)(1 + k + body);
}

int rmq_log_read(struct rmq_log *log, uint64_t offset, uint64_t max_bytes,
		 struct rmq_log_read *r)
{
	memset(r, 0, sizeof(*r));
	r->high_watermark = log->hw;
	r->log_start_offset = log->log_start;
	r->first_offset = r->next_offset = offset;
	if (offset < log->log_start || offset > log->hw)
		return RMQ_ERANGE;
	if (offset == log->hw)
		return 0;

	int64_t si = find_segment(log, offset);
	if (si < 0)
		return RMQ_ERANGE;
	struct rmq_segment *seg = log->segs[si];
	if (offset >= seg->next_offset)
		return RMQ_EFENCED; /* a gap left by a fenced segment */
	/* A read starting where an earlier one ended is at a batch the
	 * index knows: no need to touch (perhaps cold) data to find it. */
	struct rmq_batch_view v;
	int64_t pos, e = rmq_segment_index_exact(seg, offset);
	uint64_t v_pos = UINT64_MAX; /* where v was parsed in seg */
	if (e >= 0 && seg->idx[e].position < seg->visible_size) {
		pos = seg->idx[e].position;
	} else {
		pos = rmq_segment_find(seg, offset, seg->visible_size, &v);
		if (pos < 0)
			return pos == RMQ_ERANGE ? RMQ_EFENCED : (int)pos;
		offset = v.hdr.base_offset;
		v_pos = (uint64_t)pos;
	}
	r->first_offset = offset;

	uint64_t next = offset;
	for (;;) {
		uint64_t start = (uint64_t)pos, p = start, last = UINT64_MAX;
		/* Whole batches only; at least one in all, found without
		 * touching the (perhaps cold) data where possible, since a
		 * page fault on the mapping is a disk read on the shard:
		 * - the budget reaches the visible end: take it all; the
		 *   offset there is the segment's end, or the HW in the one
		 *   segment still being acknowledged;
		 * - else the furthest index entry within the budget: entries
		 *   are batch starts, so the batches before it fit (the read
		 *   comes back short by less than an index interval);
		 * - else (the first batch alone passes the index's reach):
		 *   walk the batch headers.  Stepping needs each entry's
		 *   length; the last one's header gives the offset the read
		 *   ends at. */
		uint64_t upto = start + (max_bytes - r->bytes);
		int64_t j;
		bool walk = false;
		if (upto >= seg->visible_size && seg->visible_size > start) {
			p = seg->visible_size;
			next = p == seg->size ? seg->next_offset : log->hw;
		} else if ((j = rmq_segment_index_upto(seg, start, upto < seg->visible_size
									? upto : seg->visible_size)) >= 0) {
			p = seg->idx[j].position;
			next = seg->base_offset + seg->idx[j].rel_offset;
		} else {
			walk = true;
		}
		while (walk && p < seg->visible_size) {
			uint32_t n = entry_len_at(seg->map + p, seg->visible_size - p);
			if (n == 0)
				break;
			if (r->bytes + (p - start) + n > max_bytes && (r->bytes > 0 || p > start))
				break;
			last = p;
			p += n;
		}
		if (last != UINT64_MAX) {
			if (last == v_pos) {
				next = v.hdr.base_offset + v.hdr.record_count;
			} else if (rmq_batch_parse_header(seg->map + last, p - last, &v) > 0) {
				next = v.hdr.base_offset + v.hdr.record_count;
			} else {
				p = last; /* unparsable: stop before it */
			}
		}
		if (p > start) {
			struct rmq_log_slice *sl = &r->slices[r->nslices++];
			sl->seg = seg;
			sl->data = seg->map + start;
			sl->fd = seg->fd;
			sl->pos = start;
			sl->len = (uint32_t)(p - start);
			atomic_fetch_add_explicit(&seg->pins, 1, memory_order_relaxed);
			r->bytes += sl->len;
		}
		/* Continue into the next segment if this one was exhausted. */
		if (p < seg->visible_size || r->bytes >= max_bytes ||
		    r->nslices == RMQ_LOG_SLICES_MAX || (size_t)si + 1 >= log->nsegs)
			break;
		struct rmq_segment *nx = log->segs[si + 1];
		if (nx->base_offset != next || nx->fenced || nx->visible_size == 0)
			break;
		seg = nx;
		si++;
		pos = 0;
		v_pos = UINT64_MAX;
	}
	r->next_offset = next;
	return 0;
}

int64_t rmq_log_scan(struct rmq_log *log, uint64_t from,
		     int (*fn)(void *arg, const uint8_t *entry, const struct rmq_batch_view *v),
		     void *arg)
{
	uint64_t off = from, skipped = 0;
	while (off < log->hw) {
		struct rmq_log_read r;
		if (rmq_log_read(log, off, 4u << 20, &r) < 0 || r.nslices == 0) {
			/* Unreadable: go on at the next segment, if any. */
			size_t i = 0;
			while (i < log->nsegs && log->segs[i]->base_offset <= off)
				i++;
			uint64_t next = i < log->nsegs ? log->segs[i]->base_offset : log->hw;
			skipped += next - off;
			off = next;
			continue;
		}
		int rc = 0;
		for (unsigned i = 0; i < r.nslices && rc >= 0; i++) {
			const uint8_t *q = r.slices[i].data, *end = q + r.slices[i].len;
			while (q < end && rc >= 0) {
				struct rmq_batch_view v;
				int n = rmq_batch_parse_header(q, (size_t)(end - q), &v);
				if (n <= 0)
					break;
				rc = fn(arg, q, &v);
				q += n;
			}
		}
		off = r.next_offset;
		rmq_log_read_done(log, &r);
		if (rc < 0)
			return rc;
	}
	return (int64_t)skipped;
}

int rmq_log_slice_direct_fd(const struct rmq_log_slice *sl)
{
	return rmq_segment_direct_fd(sl->seg);
}

void rmq_log_read_release(struct rmq_log_read *r)
{
	for (unsigned i = 0; i < r->nslices; i++) {
		struct rmq_segment *s = r->slices[i].seg;
		/* acq_rel: our reads of the mapping happen before a free by
		 * another shard, and we see its DOOMED mark before freeing. */
		uint32_t was = atomic_fetch_sub_explicit(&s->pins, 1, memory_order_acq_rel);
		RMQ_ASSERT((was & ~RMQ_SEG_DOOMED) > 0);
		if (was == (RMQ_SEG_DOOMED | 1u))
			free_segment(s); /* unlinked when dropped */
	}
	r->nslices = 0;
}

void rmq_log_read_done(struct rmq_log *log, struct rmq_log_read *r)
{
	(void)log;
	rmq_log_read_release(r);
}

int rmq_log_offset_for_time(struct rmq_log *log, int64_t ts_ms, uint64_t *offset)
{
	for (size_t i = 0; i < log->nsegs; i++) {
		struct rmq_segment *s = log->segs[i];
		if (s->max_timestamp_ms < ts_ms || s->fenced)
			continue;
		int64_t pos = rmq_segment_find_time(s, ts_ms, s->visible_size, offset);
		if (pos >= 0)
			return 0;
	}
	return RMQ_ENOTFOUND;
}

int rmq_log_max_timestamp(const struct rmq_log *log, int64_t *ts_ms)
{
	int64_t max = -1;
	for (size_t i = 0; i < log->nsegs; i++)
		if (!log->segs[i]->fenced && log->segs[i]->max_timestamp_ms > max)
			max = log->segs[i]->max_timestamp_ms;
	if (max < 0)
		return RMQ_ENOTFOUND;
	*ts_ms = max;
	return 0;
}

/* ---- retention and truncation ----------------------------------------- */

/*
 * Whether retention or compaction may delete s (the oldest segment) now:
 * sealed (or fenced), every append in it acknowledged, and not the file
 * of the fdatasync in flight.  Under group commit a roll seals the old
 * segment while its appends still wait for that sync, whose completion
 * acknowledges them through their segment: deleting it then closed the
 * file under the sync (EBADF took the log offline) or freed the segment
 * the acknowledgement wrote to.
 */
static bool droppable(const struct rmq_log *log, const struct rmq_segment *s)
{
	if (!s->sealed && !s->fenced)
		return false; /* writes still in flight */
	if (s->next_offset > log->hw)
		return false;
	return !(log->sync.inflight && log->sync.seg == s);
}

int rmq_log_retain(struct rmq_log *log)
{
	uint64_t now = now_ms(log);
	uint64_t total = rmq_log_size_bytes(log);
	int deleted = 0;

	struct rmq_segment *act = active(log);
	/* Not on a failed log, and not when the last roll failed: that error
	 * is for the next append to report. */
	if (log->cfg.segment_ms && act->size > 0 && act->created_ms >= 0 &&
	    now >= (uint64_t)act->created_ms + log->cfg.segment_ms && !log->failed &&
	    !log->roll.failed)
		(void)roll(log); /* RMQ_EFULL: try again next time */

	while (log->nsegs > 1) {
		struct rmq_segment *s = log->segs[0];
		if (!droppable(log, s))
			break;
		bool by_size = log->cfg.retention_bytes >= 0 &&
			       total - s->size >= (uint64_t)log->cfg.retention_bytes;
		bool by_time = log->cfg.retention_ms >= 0 && s->max_timestamp_ms >= 0 &&
			       (uint64_t)s->max_timestamp_ms + (uint64_t)log->cfg.retention_ms < now;
		if (!by_size && !by_time)
			break;
		total -= s->size;
		rmq_info("log %s: retention deletes segment %" PRIu64 " (%" PRIu64 " bytes, %s)",
			 log->dir, s->base_offset, s->size, by_size ? "size" : "time");
		drop_segment(log, 0, true);
		log->log_start = log->segs[0]->base_offset;
		deleted++;
	}
	return deleted;
}

int rmq_log_delete_before(struct rmq_log *log, uint64_t offset)
{
	int deleted = 0;
	while (log->nsegs > 1) {
		struct rmq_segment *s = log->segs[0];
		if (!droppable(log, s) || log->segs[1]->base_offset > offset)
			break;
		rmq_info("log %s: compaction deletes segment %" PRIu64 " (%" PRIu64 " bytes)",
			 log->dir, s->base_offset, s->size);
		drop_segment(log, 0, true);
		log->log_start = log->segs[0]->base_offset;
		deleted++;
	}
	return deleted;
}

bool rmq_log_idle(const struct rmq_log *log)
{
	return log->aq_head == NULL && log->wq_len == 0 && !log->sync.inflight &&
	       !log->zero.inflight && log->fill == log->pend && log->roll.stage == ROLL_IDLE;
}

int rmq_log_truncate(struct rmq_log *log, uint64_t offset)
{
	int rc;

	if (log->failed || !rmq_log_idle(log))
		return RMQ_ESTATE;
	if (offset >= log->next_offset)
		return 0;
	if (offset < log->log_start)
		return RMQ_ERANGE;
	/* Find the cut before changing anything, so that an error leaves the
	 * log as it was (dropping segments first, then failing to find the
	 * batch, left a log whose end no segment matched). */
	int64_t si = find_segment(log, offset);
	RMQ_ASSERT(si >= 0); /* offset >= log_start = segs[0]->base_offset */
	struct rmq_segment *s = log->segs[si];
	uint64_t pos = 0, end = s->base_offset;
	if (offset >= s->next_offset) {
		/* In the gap after a fenced segment's valid data: nothing there
		 * was readable, so the log ends where the valid data does. */
		pos = s->size;
		end = s->next_offset;
	} else if (offset > s->base_offset) {
		struct rmq_batch_view v;
		int64_t p = rmq_segment_find(s, offset, s->size, &v);
		if (p < 0)
			return (int)p;
		pos = (uint64_t)p;
		end = v.hdr.base_offset;
	}
	bool dropped = log->nsegs > (size_t)si + 1;
	while (log->nsegs > (size_t)si + 1)
		drop_segment(log, log->nsegs - 1, false);
	s->next_offset = end;
	rc = rmq_segment_cut(s, pos, log->cfg.segment_bytes, log->cfg.prealloc);
	if (rc < 0) {
		/* Segments may be gone already: the log no longer matches
		 * its files. */
		fail_log(log, rc, "truncating");
		return rc;
	}
	s->zeroed = 0;
	s->fenced = false;
	log->next_offset = log->written = log->synced = end;
	if (log->hw > end)
		log->hw = end;
	log->fill = log->pend = 0;
	log->wrapped = false;
	log->pend_file_pos = pos;
	log->lead_in_map = true;
	log->wr_seg = log->wb_seg = NULL;
	log->roll.failed = 0; /* about a segment that is gone or whole again */
	/* The deletions must be durable too: a later segment reappearing
	 * after a crash would resurrect the batches truncation removed. */
	if (dropped && fsync(log->dir_fd) < 0) {
		rc = -errno;
		fail_log(log, rc, "truncating");
		return rc;
	}
	rmq_info("log %s: truncated to offset %" PRIu64 " (asked %" PRIu64 ")", log->dir, end,
		 offset);
	return 0;
}

/* ---- open / close ------------------------------------------------------ */

static int cmp_u64(const void *a, const void *b)
{
	uint64_t x = *(const uint64_t *)a, y = *(const uint64_t *)b;
	return x < y ? -1 : x > y;
}

/* Lists the base offsets of B.log files; warns about everything else. */
static int list_segments(struct rmq_log *log, uint64_t **out, size_t *n)
{
	DIR *d = fdopendir(dup(log->dir_fd));
	uint64_t *v = NULL;
	size_t len = 0, cap = 0;

	if (!d)
		return -errno;
	struct dirent *e;
	while ((e = readdir(d)) != NULL) {
		uint64_t base;
		int kind;
		if (strncmp(e->d_name, DELETED_PREFIX, strlen(DELETED_PREFIX)) == 0) {
			/* deleted before a crash, not yet unlinked */
			if (unlinkat(log->dir_fd, e->d_name, 0) < 0)
				rmq_warn("log %s: cannot delete '%s': %s", log->dir, e->d_name,
					 rmq_strerror(-errno));
			continue;
		}
		if (e->d_name[0] == '.')
			continue;
		bool spare = strcmp(e->d_name, RMQ_SEGMENT_SPARE) == 0;
		if (!spare && rmq_segment_parse_name(e->d_name, &base, &kind) < 0) {
			rmq_warn("log %s: ignoring stray file '%s'", log->dir, e->d_name);
			continue;
		}
		if (!spare && kind != 0)
			continue;
		/* Only a regular file is a segment (or the spare): opening a
		 * directory (or a FIFO...) named like one failed the whole log
		 * with EISDIR. */
		struct stat st;
		if (e->d_type != DT_REG &&
		    (e->d_type == DT_DIR || fstatat(log->dir_fd, e->d_name, &st, 0) < 0 ||
		     !S_ISREG(st.st_mode))) {
			rmq_warn("log %s: ignoring '%s': not a regular file", log->dir, e->d_name);
			continue;
		}
		if (spare && log->cfg.recycle_segments) {
			log->has_spare = true;
			continue;
		}
		if (spare) {
			/* kept by a run with --recycle-segments; not wanted now */
			if (unlinkat(log->dir_fd, e->d_name, 0) < 0)
				rmq_warn("log %s: cannot delete '%s': %s", log->dir, e->d_name,
					 rmq_strerror(-errno));
			continue;
		}
		if (len == cap) {
			cap = cap ? cap * 2 : 16;
			uint64_t *nv = realloc(v, cap * sizeof(*v));
			if (!nv) {
				free(v);
				closedir(d);
				return -ENOMEM;
			}
			v = nv;
		}
		v[len++] = base;
	}
	closedir(d);
	if (len > 1)
		qsort(v, len, sizeof(*v), cmp_u64);
	*out = v;
	*n = len;
	return 0;
}

static int recover(struct rmq_log *log)
{
	uint64_t *bases = NULL;
	size_t n = 0;
	int rc = list_segments(log, &bases, &n);

	if (rc < 0)
		return rc;
	for (size_t i = 0; i < n; i++) {
		bool last = i + 1 == n;
		struct rmq_segment *s = malloc(sizeof(*s));
		struct rmq_segment_recovery rec;
		if (!s) {
			rc = -ENOMEM;
			goto out;
		}
		rc = rmq_segment_open(s, log->dir, bases[i], log->cfg.segment_bytes,
				      log->cfg.index_interval_bytes, last, &rec);
		if (rc < 0) {
			rmq_error("log %s: cannot open segment %020" PRIu64 ": %s", log->dir,
				  bases[i], rmq_strerror(rc));
			free(s);
			goto out;
		}
		log->stats.recovered_batches += rec.batches;
		if (!last) {
			/* Opening an older segment reads its first batch and the
			 * tail after its last index entry through the mapping,
			 * before push_segment() advises MADV_RANDOM, so the fault
			 * read ahead (up to the device's read_ahead_kb: MiBs) pages
			 * nobody CRC-checked.  A fetch serves resident pages from
			 * the mapping unchecked, so drop them: the first fetch
			 * reads them cold, with the CRC check.  The newest segment
			 * was fully scanned, CRCs included, and keeps its pages.
			 * Unmapping our pages first is what lets fadvise evict
			 * them.  Advice only: ignore failure. */
			(void)madvise((void *)(uintptr_t)s->map, s->map_len, MADV_DONTNEED);
			(void)posix_fadvise(s->fd, 0, 0, POSIX_FADV_DONTNEED);
		}
		if (rec.index_rebuilt)
			rmq_warn("log %s: rebuilt the indexes of segment %020" PRIu64, log->dir,
				 bases[i]);
		if (rec.error && last) {
			rmq_warn("log %s: segment %020" PRIu64 ": %s at position %" PRIu64
				 "; kept %" PRIu64 " batches (%" PRIu64 " records, %" PRIu64
				 " bytes, offsets %" PRIu64 "..%" PRIu64 "), truncated %" PRIu64
				 " bytes after it",
				 log->dir, bases[i], rmq_strerror(rec.error), rec.valid_bytes,
				 rec.batches, rec.records, rec.valid_bytes, s->base_offset,
				 s->next_offset, rec.discarded_bytes);
			log->stats.truncated_bytes += rec.discarded_bytes;
		} else if (rec.error) {
			rmq_error("log %s: segment %020" PRIu64 " is corrupt (%s) at position %" PRIu64
				  ": offsets from %" PRIu64 " to the next segment are fenced; %" PRIu64
				  " bytes kept on disk for inspection",
				  log->dir, bases[i], rmq_strerror(rec.error), rec.valid_bytes,
				  s->next_offset, rec.discarded_bytes);
			s->fenced = true;
		}
		if (!last && !rec.error && i + 1 < n && s->next_offset != bases[i + 1]) {
			rmq_error("log %s: segment %020" PRIu64 " ends at offset %" PRIu64
				  " but the next starts at %" PRIu64 "; the gap is fenced",
				  log->dir, bases[i], s->next_offset, bases[i + 1]);
			s->fenced = true;
		}
		if (!last)
			s->sealed = true;
		rc = push_segment(log, s);
		if (rc < 0) {
			free_segment(s);
			goto out;
		}
	}
	if (log->nsegs == 0) {
		rc = new_segment(log, 0);
		if (rc < 0)
			goto out;
	} else {
		/* The newest segment takes appends again: drop anything after
		 * its valid data for good and restore its preallocation. */
		struct rmq_segment *s = active(log);
		rc = rmq_segment_cut(s, s->size, log->cfg.segment_bytes, log->cfg.prealloc);
		if (rc < 0)
			goto out;
	}
	log->next_offset = active(log)->next_offset;
	log->written = log->synced = log->hw = log->next_offset;
	log->log_start = log->segs[0]->base_offset;
	log->pend_file_pos = active(log)->size;
	rc = 0;
out:
	free(bases);
	return rc;
}

int rmq_log_open(struct rmq_io *io, const char *dir, const struct rmq_log_config *cfg,
		 struct rmq_log **out)
{
	struct rmq_log *log;
	int rc;

	if (cfg->segment_bytes < 4096 || cfg->segment_bytes > (1ULL << 32) - 1 ||
	    cfg->write_buffer_bytes < 8192 || cfg->max_inflight_writes == 0 ||
	    cfg->index_interval_bytes == 0)
		return RMQ_EBADFLAG;
	if (strlen(dir) >= sizeof(log->dir))
		return -ENAMETOOLONG;
	log = calloc(1, sizeof(*log));
	if (!log)
		return -ENOMEM;
	log->io = io;
	log->cfg = *cfg;
	log->wslot = -1;
	log->dir_fd = -1;
	snprintf(log->dir, sizeof(log->dir), "%s", dir);
	snprintf(log->spare, sizeof(log->spare), "%s/" RMQ_SEGMENT_SPARE, log->dir);
	if (mkdir(dir, 0755) < 0 && errno != EEXIST) {
		rc = -errno;
		goto err;
	}
	log->dir_fd = open(dir, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
	if (log->dir_fd < 0) {
		rc = -errno;
		goto err;
	}
	/* Whole blocks, for O_DIRECT. */
	log->wcap = cfg->write_buffer_bytes & ~(RMQ_DIO_ALIGN - 1);
	log->wbuf = mmap(NULL, log->wcap, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS,
			 -1, 0);
	if (log->wbuf == MAP_FAILED) {
		log->wbuf = NULL;
		rc = -ENOMEM;
		goto err;
	}
	int slot = rmq_io_buffer_register(io, log->wbuf, log->wcap);
	log->wslot = slot >= 0 ? slot : -1;
	log->nwops = cfg->max_inflight_writes;
	log->wops = calloc(log->nwops, sizeof(*log->wops));
	if (!log->wops) {
		rc = -ENOMEM;
		goto err;
	}
	for (uint32_t i = 0; i < log->nwops; i++) {
		log->wops[i].op.cb = write_done;
		log->wops[i].log = log;
	}
	log->sync.op.cb = sync_done;
	log->sync.log = log;
	log->zero.op.cb = zero_done;
	log->zero.log = log;
	log->wb.op.cb = wb_done;
	log->wb.log = log;
	log->zero.fd = -1;
	log->dfd = -1;
	rc = recover(log);
	if (rc < 0)
		goto err;
	log->lead_in_map = true;
	log->direct = cfg->direct_writes && cfg->fsync == RMQ_FSYNC_ALWAYS;
	log->dsync = log->direct && cfg->dsync_writes;
	if (log->direct) {
		rc = dio_open(log, active(log));
		if (rc < 0) {
			rmq_warn("log %s: no O_DIRECT (%s); writing through the page cache", log->dir,
				 rmq_strerror(rc));
			log->direct = false;
		}
	}
	*out = log;
	return 0;
err:
	for (size_t i = 0; i < log->nsegs; i++)
		free_segment(log->segs[i]);
	free(log->segs);
	free(log->wops);
	if (log->wslot >= 0)
		rmq_io_buffer_unregister(io, log->wslot);
	if (log->wbuf)
		munmap(log->wbuf, log->wcap);
	if (log->dir_fd >= 0)
		close(log->dir_fd);
	free(log);
	return rc;
}

int rmq_log_close(struct rmq_log *log)
{
	int rc;

	/* Drain: everything appended is written and acknowledged (or the log
	 * fails and the appends complete with the error). */
	while (!log->failed && !rmq_log_idle(log)) {
		rmq_log_flush(log);
		if (log->cfg.fsync != RMQ_FSYNC_ALWAYS)
			rmq_log_sync_tick(log);
		rc = rmq_io_wait(log->io, 100ULL * 1000 * 1000);
		if (rc < 0) {
			fail_log(log, rc, "waiting for I/O at close");
			break;
		}
	}
	for (;;) {
		retire_writes(log); /* those that never went out (submit_wop) */
		if (!log->zero.inflight && !log->sync.inflight && !log->wb.inflight &&
		    log->wq_len == 0 && log->unlinks == 0 && !log->roll.inflight)
			break;
		/* A failed log still has to let the kernel finish with its
		 * buffers before they are freed. */
		if (rmq_io_wait(log->io, 100ULL * 1000 * 1000) < 0)
			break;
	}
	rc = log->failed;
	if (!rc && log->nsegs > 0 && fdatasync(active(log)->fd) < 0)
		rc = -errno;
	if (log->zero.fd >= 0)
		close(log->zero.fd);
	dio_close(log);
	for (size_t i = 0; i < log->nsegs; i++) {
		struct rmq_segment *s = log->segs[i];
		/* A reader still holding it (a fetch answer being sent by
		 * reference) frees it when done; never unmap under it. */
		if (atomic_fetch_or_explicit(&s->pins, RMQ_SEG_DOOMED, memory_order_acq_rel) == 0)
			free_segment(s);
	}
	free(log->segs);
	free(log->wops);
	if (log->wslot >= 0)
		rmq_io_buffer_unregister(log->io, log->wslot);
	munmap(log->wbuf, log->wcap);
	close(log->dir_fd);
	free(log);
	return rc;
}

uint64_t rmq_log_high_watermark(const struct rmq_log *log)
{
	return log->hw;
}

uint64_t rmq_log_start_offset(const struct rmq_log *log)
{
	return log->log_start;
}

uint64_t rmq_log_end_offset(const struct rmq_log *log)
{
	return log->next_offset;
}

uint64_t rmq_log_size_bytes(const struct rmq_log *log)
{
	uint64_t n = 0;
	for (size_t i = 0; i < log->nsegs; i++)
		n += log->segs[i]->size;
	return n;
}

void rmq_log_set_hw_listener(struct rmq_log *log, rmq_log_hw_cb cb, void *arg)
{
	log->hw_cb = cb;
	log->hw_arg = arg;
}

const struct rmq_log_stats *rmq_log_stats(const struct rmq_log *log)
{
	return &log->stats;
}

void rmq_log_set_limits(struct rmq_log *log, uint64_t segment_bytes, uint64_t segment_ms,
			int64_t retention_bytes, int64_t retention_ms)
{
	if (segment_bytes >= 4096 && segment_bytes <= (1ULL << 32) - 1)
		log->cfg.segment_bytes = segment_bytes;
	log->cfg.segment_ms = segment_ms;
	log->cfg.retention_bytes = retention_bytes;
	log->cfg.retention_ms = retention_ms;
}

uint64_t rmq_log_active_base(const struct rmq_log *log)
{
	return active(log)->base_offset;
}
