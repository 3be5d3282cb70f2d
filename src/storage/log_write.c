/* SPDX-License-Identifier: Apache-2.0 */
/*
 * log_write.c - the partition log's write path: from bytes in the write
 * buffer to acknowledged appends (log.h draws the pipeline).
 *
 * Write buffer.  Appends are copied into a ring the log takes from the
 * shard's write pool (wpool.h: one region registered once as a fixed
 * buffer, so writes are WRITE_FIXED) when it has bytes to write, and gives
 * back once they are all written, so an idle partition holds none:
 *
 *      0        head             pend        fill            len
 *      |  free  |### in flight ###|# pending #|     free      |
 *
 *   - entries never wrap: an entry that does not fit before len starts a
 *     new lap at 0, once the pending bytes are cut into a write (the last
 *     write of the old lap is marked; the ring is unwrapped when it
 *     retires);
 *   - "pending" bytes (appended since the last flush) always belong to the
 *     active segment; a roll or a wrap first cuts them into a write;
 *   - writes complete in any order but are retired in FIFO order, which
 *     is what frees ring space and advances the written offset;
 *   - the ring is write_buffer_bytes, or less when the pool is short (at
 *     most half of its free chunks, at least what the entry needs), so a
 *     few hot partitions cannot take all of it; when the pool is empty an
 *     append meets RMQ_EFULL, as for a full ring: backpressure.
 * A ring, not a list of extents: under fsync=always a log has one write
 * in flight at a time (O_DIRECT writes share a block, cut_pending()), so
 * a cycle's appends pile up as pending bytes meanwhile, and only a ring
 * lets them use the whole buffer while the older lap is written; extents
 * cut them at every extent's end and cost 7-10% of produce throughput
 * (docs/storage.md).  A log opened without a pool (cfg.wpool NULL) makes
 * one of its own, of write_buffer_bytes.
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
 * Large entries.  An entry larger than half the largest ring (the log's
 * write_buffer_bytes or the pool's rmq_wpool_run_max()) does not go
 * through the ring: log_reserve_large() cuts what is pending into
 * writes first, takes a buffer of the entry's size from the pool's bounded
 * allowance for large entries (whole blocks, with the lead bytes of its
 * first block in front, under O_DIRECT), the append copies the entry
 * there, and log_queue_large() queues its write in the same FIFO as the
 * others, so it is retired, synced and acknowledged in offset order like
 * any write; retiring it gives the buffer back.  One large write per log
 * is in flight at a time (the next waits with RMQ_EFULL), and the pool
 * bounds them all (always letting one through).  The tail of its last block is kept in
 * lead[] for the write after it, which re-writes that block.  A batch is
 * thus bounded by the segment size and RMQ_BATCH_BYTES_MAX, never by the
 * write buffer (rmq_log_batch_bytes_max).
 *
 * Preallocation follows the data (segment.h): a new segment reserves
 * RMQ_PREALLOC_MIN, and log_reserve_space() reserves the rest ahead of the
 * appends with IORING_OP_FALLOCATE, off the shard's thread: about as much
 * again as the segment holds (at least RMQ_PREALLOC_MIN, at most
 * RMQ_PREALLOC_STEP), issued when less than half of that is left, so a
 * steady writer never waits for it.  An append beyond the reserved space
 * waits (RMQ_EFULL) for the reservation in flight; one that fails refuses
 * the append that needs the space.  Zero-ahead never goes past it.
 *
 * A full disk.  ENOSPC (or EDQUOT) where space is taken puts the log in a
 * full state instead of failing it: a reservation that fails (FULL_RESERVE)
 * refuses the appends that need space beyond what is reserved; a data write
 * that fails (FULL_WRITE, where nothing was reserved: prealloc none, or a
 * filesystem that needs room to overwrite) is parked, neither failed nor
 * retired, and new appends are refused; a segment that cannot be created
 * (FULL_ROLL, log_roll.c) refuses the appends that need the roll.  Refused
 * appends get -ENOSPC, distinct from a failed log's RMQ_ESTATE.  Reads,
 * retention, compaction and truncation go on.  What failed is tried again
 * by later appends and flushes at most every RMQ_LOG_FULL_RETRY_MS, and at
 * once when retention or compaction deleted a segment; the log leaves the
 * state when it works, and parked appends are acknowledged as usual.
 * Nothing is lost: a parked write still holds its bytes, and ENOSPC from a
 * write means nothing of it was written (a partial write returns a count).
 * An fdatasync's ENOSPC is not this: the kernel may have dropped the data,
 * and the log fails as for EIO.  At close, parked writes get one more try
 * and then fail the log.
 *
 * Zeroing.  A 1 MiB buffered write followed by fdatasync reaches
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
#include "storage/log_int.h"

#include "core/assert.h"
#include "core/error.h"
#include "core/log.h"

#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <string.h>
#include <sys/mman.h>
#include <unistd.h>

static const uint8_t zero_chunk[RMQ_ZERO_CHUNK / RMQ_ZERO_IOV] __attribute__((aligned(4096)));

/* ---- acknowledgement --------------------------------------------------- */

void log_ack_to(struct rmq_log *log, uint64_t offset)
{
	bool moved = false;
	uint64_t now = 0;

	if (log->dir_unsynced)
		return; /* the segment's file may not survive a crash yet */
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
		log_active(log)->unsynced = true;
		submit_sync(log);
		return;
	}
	if (res < 0) {
		log_fail(log, res, "fdatasync");
		return;
	}
	log->stats.syncs++;
	RECORD_LAT(log, sync, s->start_ns);
	if (s->target > log->synced)
		log->synced = s->target;
	if (log->cfg.fsync == RMQ_FSYNC_ALWAYS)
		log_ack_to(log, log->synced);
	if (log->written > log->synced && log_active(log)->unsynced)
		submit_sync(log);
}

/* Issues one fdatasync of the active segment covering everything written
 * so far, unless one is in flight (its completion issues the next). */
static void submit_sync(struct rmq_log *log)
{
	struct sync_op *s = &log->sync;
	struct rmq_segment *seg = log_active(log);

	if (s->inflight || log->failed || !seg->unsynced)
		return;
	struct io_uring_sqe *sqe = rmq_io_sqe(log->io, &s->op);
	/* No SQE now (a full SQ the kernel would not take, or -EBUSY):
	 * sync_done() retries it next cycle, as after -EAGAIN.  It counts as
	 * in flight meanwhile, so a roll waits for it as for a real one. */
	if (sqe)
		io_uring_prep_fsync(sqe, seg->fd, IORING_FSYNC_DATASYNC);
	else
		rmq_io_defer(log->io, &s->op);
	s->seg = seg;
	s->target = log->written;
	s->start_ns = log_lat_start(log);
	s->inflight = true;
	seg->unsynced = false;
}

/* ---- writes ------------------------------------------------------------ */

static void flush_pending(struct rmq_log *log);
static void zero_ahead(struct rmq_log *log);

static void submit_wop(struct rmq_log *log, struct wop *w)
{
	struct io_uring_sqe *sqe = rmq_io_sqe(log->io, &w->op);
	const uint8_t *p = w->base + w->io_off + w->done_len;
	uint32_t n = w->io_len - w->done_len;
	int slot = rmq_wpool_slot(log->pool);

	if (!sqe) {
		/* No SQE now: write_done() gets -EAGAIN next cycle and submits
		 * it again (or retires it, should the log fail meanwhile), so
		 * it stays in the FIFO as in flight and close waits for it. */
		rmq_io_defer(log->io, &w->op);
		return;
	}
	if (slot >= 0 && !w->ext)
		io_uring_prep_write_fixed(sqe, w->fd, p, n, w->io_pos + w->done_len, slot);
	else
		io_uring_prep_write(sqe, w->fd, p, n, w->io_pos + w->done_len);
	if (log->dsync)
		sqe->rw_flags = RWF_DSYNC;
	log->stats.writes++;
}

/* Queues w, whose data are the next w->len pending bytes, and submits it. */
static void start_wop(struct rmq_log *log, struct wop *w)
{
	RMQ_DASSERT(log->ring.base);
	w->base = log->ring.base;
	w->ext = NULL;
	w->wrap_last = false;
	log->ring_writes++;
	w->done_len = 0;
	w->done = false;
	w->start_ns = log_lat_start(log);
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
		return; /* the next retired write asks again */
	io_uring_prep_sync_file_range(sqe, log->wb_seg->fd, (unsigned)(log->wr_pos - log->wb_pos),
				      log->wb_pos, SYNC_FILE_RANGE_WRITE);
	log->wb_pos = log->wr_pos;
	b->inflight = true;
}

/* Retires finished writes in FIFO order: frees their buffer space and
 * advances the written offset, then acknowledges or syncs. */
void log_retire_writes(struct rmq_log *log)
{
	bool moved = false;

	while (log->wq_len > 0) {
		struct wop *w = &log->wops[log->wq_head];
		if (!w->done)
			break;
		log->written = w->end_offset;
		log->wr_seg = w->seg;
		log->wr_pos = w->file_pos + w->len;
		if (w->ext) {
			rmq_wpool_large_put(log->pool, w->ext, w->ext_len);
			w->ext = NULL;
			log->nlarge--;
		} else {
			RMQ_DASSERT(log->ring_writes > 0);
			log->ring_writes--;
			if (w->wrap_last)
				log->wrapped = false;
		}
		log->wq_head = (log->wq_head + 1) % log->nwops;
		log->wq_len--;
		moved = true;
	}
	log_release_ring(log, false);
	if (!moved || log->failed)
		return;
	if (log->cfg.fsync == RMQ_FSYNC_ALWAYS) {
		if (log->dsync && log->synced < log->written)
			log->synced = log->written;
		log_ack_to(log, log->synced);
		submit_sync(log);
	} else {
		log_ack_to(log, log->written);
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
	if (!log->failed && is_enospc(res)) {
		/* Nothing of it was written (a partial write returns its
		 * count): it waits for space, in flight as far as the FIFO
		 * is concerned, and goes again then ("A full disk"). */
		w->parked = true;
		log->parked++;
		log_full_enter(log, FULL_WRITE, res, "writing");
		return;
	}
	if (!log->failed && res <= 0)
		log_fail(log, res < 0 ? res : -EIO, "write");
	if (log->failed) {
		/* Only retire it, so close() can free the buffer. */
		w->done = true;
		log_retire_writes(log);
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
	log_retire_writes(log);
	/* Space or a write slot may have been waiting. */
	flush_pending(log);
	zero_ahead(log);
}

static void queue_direct(struct rmq_log *log, struct rmq_segment *seg, uint32_t len,
			 uint64_t end_offset);

/* log_cut_pending() through the page cache: writes of whole appends, as many
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
		w->io_off = log->pend;
		w->len = w->io_len = n;
		w->end_offset = end_offset;
		start_wop(log, w);
	}
	return log->pend == log->fill ? 0 : RMQ_EFULL;
}

/* Turns the pending bytes into a write.  Returns 0, or RMQ_EFULL when no
 * write slot is free or (direct) the previous write still owns the block
 * this one starts in (the pending bytes stay pending). */
int log_cut_pending(struct rmq_log *log)
{
	if (log->fill == log->pend)
		return 0;
	if (log->wq_len == log->nwops)
		return RMQ_EFULL;
	struct rmq_segment *seg = log_active(log);
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
		int rc = log_dio_open(log, seg);
		if (rc < 0) {
			log_fail(log, rc, "opening the data file for O_DIRECT");
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
	uint8_t *buf = log_buf(log);
	uint32_t io_end = (uint32_t)dio_up(log->fill);
	memset(buf + log->fill, 0, io_end - log->fill);
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
	/* The next write re-writes the block this one ends in. */
	uint32_t tail = (uint32_t)(log->pend_file_pos % RMQ_DIO_ALIGN);
	memcpy(log->lead, buf + log->fill - tail, tail);
	log->lead_in_map = false;
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
		(void)log_cut_pending(log);
}

void rmq_log_flush(struct rmq_log *log)
{
	flush_pending(log);
	zero_ahead(log);
	log_release_ring(log, false);
	log_full_retry(log, false);
}

void rmq_log_sync_tick(struct rmq_log *log)
{
	if (log->written > log->synced)
		submit_sync(log);
}

/* ---- O_DIRECT descriptor ------------------------------------------------ */

void log_dio_close(struct rmq_log *log)
{
	if (log->dfd >= 0)
		close(log->dfd);
	log->dfd = -1;
	log->dfd_seg = NULL;
}

/* Opens the O_DIRECT descriptor data writes use for seg.  Returns 0 or a
 * negated errno (-EINVAL: the filesystem has no O_DIRECT). */
int log_dio_open(struct rmq_log *log, struct rmq_segment *seg)
{
	char name[sizeof(seg->path) + 8];

	log_dio_close(log);
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
	struct rmq_segment *seg = log_active(log);

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
	uint64_t floor = log->pend_file_pos + (log->fill - log->pend) + log->buf_max;
	floor = (floor + 4095) & ~4095ULL;
	if (seg->zeroed < floor)
		seg->zeroed = floor;
	uint64_t limit = seg->size + log->cfg.zero_ahead_bytes;
	if (limit > log->cfg.segment_bytes)
		limit = log->cfg.segment_bytes;
	if (limit > seg->map_len)
		limit = seg->map_len;
	if (limit > seg->prealloc_end)
		limit = seg->prealloc_end; /* zeros follow the reservation, not lead it */
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
		return; /* the next flush or completion asks again */
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

/* The ring's bytes (where fill and pend point). */
uint8_t *log_buf(struct rmq_log *log)
{
	RMQ_DASSERT(log->ring.base);
	return log->ring.base;
}

/*
 * Takes a ring of at least need bytes from the pool: write_buffer_bytes
 * (within the pool's largest run), or less when that is more than half of
 * the pool's free chunks.  Returns 0, or RMQ_EFULL (no such run free).
 */
static int take_ring(struct rmq_log *log, uint64_t need)
{
	uint32_t cb = rmq_wpool_chunk_bytes(log->pool);
	uint32_t n = (uint32_t)((need + cb - 1) / cb);
	uint64_t max = rmq_wpool_run_max(log->pool);
	struct rmq_wpool_stats st;
	uint8_t *base;

	RMQ_DASSERT(!log->ring.base && log->ring_writes == 0);
	if (max > log->buf_max)
		max = log->buf_max;
	rmq_wpool_stats(log->pool, &st);
	uint32_t want = (uint32_t)(max / cb);
	if (want > st.chunks_free / 2)
		want = st.chunks_free / 2;
	int64_t first = rmq_wpool_get_upto(log->pool, want, n, &n, &base);
	if (first < 0)
		return RMQ_EFULL;
	log->ring = (struct ring){base, (uint32_t)first, n, n * cb};
	return 0;
}

/* Gives the ring back to the pool when nothing in it is live (no write
 * cut from it in flight, nothing pending), or (all) in any case, at close
 * and truncation, with no write in flight. */
void log_release_ring(struct rmq_log *log, bool all)
{
	if (!log->ring.base)
		return;
	if (!all && (log->ring_writes > 0 || log->fill != log->pend))
		return;
	RMQ_ASSERT(log->ring_writes == 0);
	rmq_wpool_put(log->pool, log->ring.first, log->ring.nchunks);
	log->ring = (struct ring){0};
	log->fill = log->pend = 0;
	log->wrapped = false;
}

/* Makes sure the log holds a ring.  Returns 1 when nothing in it is live
 * (fill and pend are put at 0; an idle ring smaller than need is
 * exchanged), 0 when it has live bytes, or RMQ_EFULL (no ring free). */
static int ring_ready(struct rmq_log *log, uint64_t need)
{
	if (log->ring.base && (log->ring_writes > 0 || log->fill != log->pend))
		return 0;
	if (log->ring.base && need > log->ring.len)
		log_release_ring(log, true);
	if (!log->ring.base && take_ring(log, need) < 0)
		return RMQ_EFULL;
	log->fill = log->pend = 0; /* nothing live: start over at 0 */
	log->wrapped = false;
	return 1;
}

/* Where the ring's live bytes start: the oldest write cut from it still
 * in the FIFO (large entries' writes are not in the ring), else the
 * pending bytes' block. */
static uint32_t ring_head(const struct rmq_log *log)
{
	for (uint32_t i = 0; i < log->wq_len; i++) {
		const struct wop *w = &log->wops[(log->wq_head + i) % log->nwops];
		if (!w->ext)
			return w->io_off;
	}
	return (uint32_t)dio_down(log->pend);
}

/* A new lap: the newest ring write is the old lap's last. */
static void ring_wrap(struct rmq_log *log)
{
	for (uint32_t i = log->wq_len; i-- > 0;) {
		struct wop *w = &log->wops[(log->wq_head + i) % log->nwops];
		if (!w->ext) {
			w->wrap_last = true;
			log->wrapped = true;
			break;
		}
	}
	log->fill = log->pend = 0;
}

static int64_t reserve_direct(struct rmq_log *log, uint32_t n);

/* Where the lead bytes (the head of the file block at pend_file_pos, lead
 * long) of the next O_DIRECT write are found. */
static const uint8_t *lead_src(struct rmq_log *log, uint32_t lead)
{
	if (log->lead_in_map)
		return log_active(log)->map + (log->pend_file_pos - lead);
	return log->lead;
}

/* Reserves n contiguous bytes at the ring's fill point.  Returns their
 * offset in it (log_buf()), or RMQ_EFULL. */
int64_t log_reserve(struct rmq_log *log, uint32_t n)
{
	if (log->direct)
		return reserve_direct(log, n);
	int rc = ring_ready(log, n);
	if (rc != 0)
		return rc < 0 ? rc : 0;
	if (!log->wrapped) {
		if ((uint64_t)log->fill + n <= log->ring.len)
			return log->fill;
		if (n >= ring_head(log))
			return RMQ_EFULL;
		/* New lap: the pending bytes must become a write first so that
		 * no write spans the wrap. */
		if (log_cut_pending(log) < 0)
			return RMQ_EFULL;
		ring_wrap(log);
		return 0;
	}
	if ((uint64_t)log->fill + n < ring_head(log))
		return log->fill;
	return RMQ_EFULL;
}

/*
 * log_reserve() for O_DIRECT writes, which move whole blocks between the
 * buffer and the file.  Pending bytes grow contiguously while the blocks
 * they end in fit.  A write cut before them ends in a partial block that
 * the next write must carry again, so the first entry after a cut starts
 * a fresh buffer block: the head of the file block (`lead` bytes, kept in
 * lead[] by the cut, or from the map after open and truncation) goes
 * first and the entry after it, so that buffer offset and file position
 * agree modulo RMQ_DIO_ALIGN.  A fresh block each time, rather than
 * appending into the block the previous write is still reading, keeps an
 * in-flight write's bytes stable.  It costs a copy of at most one block
 * per write, and up to two blocks of buffer.  A crash with writes in
 * flight may leave the newest segment with any of them missing (the head
 * block and the rest go as two writes): data, zeros, maybe data again,
 * all of it unacknowledged; recovery cuts the segment at the first bad
 * entry.
 */
static int64_t reserve_direct(struct rmq_log *log, uint32_t n)
{
	if (log->ring.base && log->fill != log->pend) {
		uint64_t limit = log->wrapped ? ring_head(log) : log->ring.len;
		if (dio_up((uint64_t)log->fill + n) <= limit)
			return log->fill;
		if (log_cut_pending(log) < 0)
			return RMQ_EFULL;
	}
	uint32_t lead = (uint32_t)(log->pend_file_pos % RMQ_DIO_ALIGN);
	uint64_t need = dio_up((uint64_t)lead + n);
	int rc = ring_ready(log, need);
	if (rc < 0)
		return rc;
	uint64_t dst = 0;
	if (rc == 0) {
		/* Writes from the ring are in flight: after them, or a new lap
		 * before the oldest. */
		uint32_t head = ring_head(log);
		dst = dio_up(log->fill);
		if (dst + need > (log->wrapped ? head : log->ring.len)) {
			if (log->wrapped || need > head)
				return RMQ_EFULL;
			ring_wrap(log);
			dst = 0;
		}
	}
	memcpy(log->ring.base + dst, lead_src(log, lead), lead);
	log->fill = log->pend = (uint32_t)dst + lead;
	return log->fill;
}

/* Opens the log's write buffers: the shard's pool from the config, or one
 * of its own.  Returns 0 or a negated errno. */
int log_buffers_open(struct rmq_log *log)
{
	log->buf_max = log->cfg.write_buffer_bytes & ~(uint64_t)(RMQ_DIO_ALIGN - 1);
	if (log->cfg.wpool) {
		log->pool = log->cfg.wpool;
		return 0;
	}
	if (!log->io)
		return -EINVAL; /* opened off its shard (io NULL): needs the shard's pool */
	/* Chunks of a quarter of the buffer (64 KiB .. 1 MiB), the log may
	 * take them all. */
	struct rmq_wpool_config pc;
	rmq_wpool_config_default(&pc);
	pc.chunk_bytes = 64u << 10;
	while (pc.chunk_bytes < (1u << 20) && (uint64_t)pc.chunk_bytes * 8 <= log->buf_max)
		pc.chunk_bytes *= 2;
	pc.chunks = (uint32_t)(log->buf_max / pc.chunk_bytes);
	if (pc.chunks < 2)
		pc.chunks = 2;
	pc.run_max_chunks = pc.chunks;
	pc.large_bytes_max = 0;
	int rc = rmq_wpool_create(log->io, &pc, &log->own_pool);
	if (rc < 0)
		return rc;
	log->pool = log->own_pool;
	return 0;
}

/* Gives back the ring (no write may be in flight) and the own pool. */
void log_buffers_close(struct rmq_log *log)
{
	if (!log->pool)
		return;
	log_release_ring(log, true);
	rmq_wpool_destroy(log->own_pool);
	log->own_pool = NULL;
	log->pool = NULL;
}

/* ---- disk space ----------------------------------------------------------- */

static void submit_falloc(struct rmq_log *log, struct rmq_segment *seg, uint64_t end);

static void falloc_done(struct rmq_io_op *op, int res, unsigned flags)
{
	struct falloc_op *f = (struct falloc_op *)op;
	struct rmq_log *log = f->log;

	(void)flags;
	f->inflight = false;
	if (res == -EAGAIN || res == -EINTR) {
		submit_falloc(log, f->seg, f->end);
		return;
	}
	if (res == -EOPNOTSUPP) {
		/* No fallocate here: files grow as they are written. */
		log->cfg.prealloc = RMQ_PREALLOC_NONE;
		return;
	}
	if (res < 0) {
		f->err = res;
		if (is_enospc(res))
			log_full_enter(log, FULL_RESERVE, res, "reserving space");
		return;
	}
	f->err = 0;
	if (f->seg->prealloc_end < f->end)
		f->seg->prealloc_end = f->end;
	log_full_leave(log, FULL_RESERVE);
}

/* Allocates the active segment's data file up to end through the ring. */
static void submit_falloc(struct rmq_log *log, struct rmq_segment *seg, uint64_t end)
{
	struct falloc_op *f = &log->falloc;
	struct io_uring_sqe *sqe = rmq_io_sqe(log->io, &f->op);

	f->seg = seg;
	f->end = end;
	f->inflight = true;
	if (sqe)
		io_uring_prep_fallocate(sqe, seg->fd, 0, 0, (off_t)end);
	else
		rmq_io_defer(log->io, &f->op); /* falloc_done: -EAGAIN */
}

/*
 * Makes sure the active segment's data file is allocated up to `upto`
 * before an append takes [size, upto): "disk space first", so that a full
 * disk refuses the append instead of tearing it.  Reserves ahead through
 * the ring when less than half of the distance ahead is left, so the
 * appends rarely wait.  Returns 0 when the space is there (or nothing is
 * preallocated), RMQ_EFULL while a reservation it needs is under way, or
 * the error the last reservation failed with (once; the next call tries
 * again).
 */
int log_reserve_space(struct rmq_log *log, struct rmq_segment *seg, uint64_t upto)
{
	struct falloc_op *f = &log->falloc;
	uint64_t cap = log->cfg.segment_bytes < seg->map_len ? log->cfg.segment_bytes : seg->map_len;

	if (log->cfg.prealloc == RMQ_PREALLOC_NONE)
		return 0;
	if (is_enospc(f->err) && upto > seg->prealloc_end) {
		/* Full: refused until a reservation works again, tried at
		 * most every RMQ_LOG_FULL_RETRY_MS ("A full disk"). */
		log_full_retry(log, false);
		return -ENOSPC;
	}
	if (f->err && upto > seg->prealloc_end) {
		int err = f->err;
		f->err = 0;
		return err;
	}
	uint64_t ahead = seg->size < RMQ_PREALLOC_MIN	? RMQ_PREALLOC_MIN
			 : seg->size > RMQ_PREALLOC_STEP ? RMQ_PREALLOC_STEP
							 : seg->size;
	uint64_t want = upto + ahead < cap ? upto + ahead : cap;
	if (!f->inflight && seg->prealloc_end < cap && seg->prealloc_end < upto + ahead / 2)
		submit_falloc(log, seg, want > upto ? want : upto);
	return upto <= seg->prealloc_end ? 0 : RMQ_EFULL;
}

/* ---- a full disk ------------------------------------------------------------ */

/* The log cannot get space (why: FULL_*): appends are refused with
 * -ENOSPC until it can.  Logged once per episode. */
void log_full_enter(struct rmq_log *log, unsigned why, int err, const char *what)
{
	if (!log->full)
		rmq_warn("log %s: %s: %s; appends are refused until space returns (reads, "
			 "retention and deletion go on)",
			 log->dir, what, rmq_strerror(err));
	log->full |= why;
	log->full_retry_ms = log_now_ms(log) + RMQ_LOG_FULL_RETRY_MS;
}

void log_full_leave(struct rmq_log *log, unsigned why)
{
	if (!(log->full & why))
		return;
	log->full &= ~why;
	if (!log->full)
		rmq_info("log %s: space is back; appends resume", log->dir);
}

/* Resubmits the parked writes, oldest first. */
static void retry_parked(struct rmq_log *log)
{
	for (uint32_t i = 0; i < log->wq_len && log->parked > 0; i++) {
		struct wop *w = &log->wops[(log->wq_head + i) % log->nwops];
		if (!w->parked)
			continue;
		w->parked = false;
		log->parked--;
		submit_wop(log, w);
	}
	log_full_leave(log, FULL_WRITE); /* back if a retry fails again */
}

/*
 * Tries again what a full disk stopped: the parked writes, the failed
 * reservation and a new log's files (a failed roll is tried again by the
 * next append that rolls).  At most every RMQ_LOG_FULL_RETRY_MS, or at once (at_once: a
 * deletion just freed space).
 */
void log_full_retry(struct rmq_log *log, bool at_once)
{
	if (!log->full || log->failed)
		return;
	uint64_t now = log_now_ms(log);
	if (!at_once && now < log->full_retry_ms)
		return;
	log->full_retry_ms = now + RMQ_LOG_FULL_RETRY_MS;
	if (at_once)
		log->roll_retry_ms = 0;
	if (log->full & FULL_WRITE)
		retry_parked(log);
	/* A new log whose files could not be made: tried again here too, so
	 * that one no append reaches leaves the full state once space is back
	 * (log_create.c). */
	if ((log->full & FULL_ROLL) && log->unmade)
		(void)log_make(log);
	struct falloc_op *f = &log->falloc;
	if ((log->full & FULL_RESERVE) && !f->inflight) {
		struct rmq_segment *seg = log_active(log);
		uint64_t cap = log->cfg.segment_bytes < seg->map_len ? log->cfg.segment_bytes
								     : seg->map_len;
		uint64_t want = seg->size + RMQ_PREALLOC_MIN;
		submit_falloc(log, seg, want < cap ? want : cap);
	}
}

/* ---- large entries ------------------------------------------------------ */

bool log_is_large(const struct rmq_log *log, uint64_t n)
{
	uint64_t max = rmq_wpool_run_max(log->pool);
	if (max > log->buf_max)
		max = log->buf_max;
	return n + RMQ_DIO_ALIGN > max / 2;
}

/* Room for a large entry of n bytes in a buffer of its own, behind
 * everything appended before it (see "Large entries" above).  Returns
 * where the entry's bytes go, or NULL (RMQ_EFULL: a large write is in
 * flight, no write slot is free, the pool's bound on large buffers is
 * reached, or, with O_DIRECT, the last write still owns the block this
 * one starts in; the pending bytes were cut; or the log failed). */
uint8_t *log_reserve_large(struct rmq_log *log, uint32_t n)
{
	struct rmq_segment *seg = log_active(log);

	RMQ_ASSERT(!log->large_buf);
	if (log->nlarge > 0 || log_cut_pending(log) < 0 || log->wq_len == log->nwops)
		return NULL;
	if (log->zero.inflight && log->zero.seg == seg && log->pend_file_pos + n > log->zero.pos)
		return NULL;
	uint32_t lead = log->direct ? (uint32_t)(log->pend_file_pos % RMQ_DIO_ALIGN) : 0;
	if (log->direct && log->wq_len > 0) {
		const struct wop *last = &log->wops[(log->wq_head + log->wq_len - 1) % log->nwops];
		if (!last->done && last->seg == seg &&
		    last->io_pos + last->io_len > log->pend_file_pos - lead)
			return NULL;
	}
	if (log->direct && log->dfd_seg != seg) {
		int rc = log_dio_open(log, seg);
		if (rc < 0) {
			log_fail(log, rc, "opening the data file for O_DIRECT");
			return NULL;
		}
	}
	size_t len = log->direct ? dio_up((uint64_t)lead + n) : n;
	log->large_buf = rmq_wpool_large_get(log->pool, len);
	if (!log->large_buf)
		return NULL;
	log->large_len = len;
	if (lead)
		memcpy(log->large_buf, lead_src(log, lead), lead);
	return log->large_buf + lead;
}

/* The reserved large entry was not appended after all: frees its buffer. */
void log_drop_large(struct rmq_log *log)
{
	rmq_wpool_large_put(log->pool, log->large_buf, log->large_len);
	log->large_buf = NULL;
}

/* Queues and submits the write of the large entry just copied to the
 * reserved buffer: n bytes at the segment's next position, end_offset
 * the log offset after it. */
void log_queue_large(struct rmq_log *log, struct rmq_segment *seg, uint32_t n,
		     uint64_t end_offset)
{
	struct wop *w = &log->wops[(log->wq_head + log->wq_len) % log->nwops];
	uint32_t lead = log->direct ? (uint32_t)(log->pend_file_pos % RMQ_DIO_ALIGN) : 0;

	RMQ_ASSERT(!log->direct || log->dfd_seg == seg); /* log_reserve_large */
	w->seg = seg;
	w->fd = log->direct ? log->dfd : seg->fd;
	w->file_pos = log->pend_file_pos;
	w->len = n;
	w->ext = w->base = log->large_buf;
	w->ext_len = log->large_len;
	w->wrap_last = false;
	w->io_off = 0;
	w->io_pos = log->pend_file_pos - lead;
	/* The buffer may be a little longer (room for the longest prefix). */
	w->io_len = log->direct ? (uint32_t)dio_up((uint64_t)lead + n) : n;
	w->end_offset = end_offset;
	w->done_len = 0;
	w->done = false;
	w->start_ns = log_lat_start(log);
	log->large_buf = NULL;
	log->nlarge++;
	log->wq_len++;
	log->pend_file_pos += n;
	if (log->direct) {
		/* The next write re-writes the block this one ends in. */
		uint32_t tail = (uint32_t)(log->pend_file_pos % RMQ_DIO_ALIGN);
		memcpy(log->lead, w->ext + lead + n - tail, tail);
		log->lead_in_map = false;
	}
	submit_wop(log, w);
}

/* Binds the write path's operations to log (at open, before recovery). */
void log_write_init(struct rmq_log *log)
{
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
	log->falloc.op.cb = falloc_done;
	log->falloc.log = log;
	log->zero.fd = -1;
	log->dfd = -1;
}
