/* SPDX-License-Identifier: Apache-2.0 */
/*
 * log_roll.c - segments come and go: a new segment is created (recycling
 * the spare file when there is one), the active segment rolls (sealed,
 * then the next one created and listed, on the ring), old segments are
 * dropped by retention, compaction and truncation, and their files are
 * deleted off the shard's thread.
 *
 *   create ──► active ──roll──► sealed ──retention──► spare.log (recycled)
 *                                   └──truncation──► .deleted-N ──► unlinked
 *
 * The roll's own design comment (below, above log_roll) says why the old
 * segment is sealed before the new file exists.
 */
#include "storage/log_int.h"
#include "storage/sysfile.h"

#include "core/assert.h"
#include "core/error.h"
#include "core/log.h"
#include "core/util.h"

#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <unistd.h>

/* ---- segments ---------------------------------------------------------- */

int log_push_segment(struct rmq_log *log, struct rmq_segment *s)
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
 * the caller does both (roll_step).  A new log's first segment is made
 * otherwise (log_create.c). */
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
	return rmq_sys_fsync(log->dir_fd) < 0 ? -errno : 0;
}

static void submit_dirsync(struct rmq_log *log, int i);

/* The descriptor dirsync[i] syncs: the log's directory, then its parent. */
static int dirsync_fd(const struct rmq_log *log, int i)
{
	return i == 0 ? log->dir_fd : log->parent_fd;
}

static void dirsync_done(struct rmq_io_op *op, int res, unsigned flags)
{
	struct dirsync_op *d = RMQ_CONTAINER_OF(op, struct dirsync_op, op);
	struct rmq_log *log = d->log;
	int i = (int)(d - log->dirsync);

	(void)flags;
	d->inflight = false;
	if (res == -EAGAIN || res == -EINTR) {
		submit_dirsync(log, i);
		return;
	}
	if (res < 0) {
		log_fail(log, res, i == 0 ? "syncing the directory of a new log"
					  : "syncing the parent directory of a new log");
		return;
	}
	d->done = true;
	if (!log->dirsync[0].done || !log->dirsync[1].done)
		return;
	log->dir_unsynced = false;
	if (log->parent_fd >= 0)
		close(log->parent_fd);
	log->parent_fd = -1;
	/* What waited for the directory entries is acknowledged now. */
	log_ack_to(log, log->cfg.fsync == RMQ_FSYNC_ALWAYS ? log->synced : log->written);
}

static void submit_dirsync(struct rmq_log *log, int i)
{
	struct dirsync_op *d = &log->dirsync[i];
	struct io_uring_sqe *sqe = rmq_io_sqe(log->io, &d->op);

	d->op.cb = dirsync_done;
	d->log = log;
	d->inflight = true;
	if (sqe)
		io_uring_prep_fsync(sqe, dirsync_fd(log, i), 0);
	else
		rmq_io_defer(log->io, &d->op); /* dirsync_done: -EAGAIN */
}

/* Starts the syncs a new log's first segment waits for, once its files are
 * made (log_create.c): its directory (the files' entries) and that
 * directory's parent (the directory's own entry), at once. */
void log_sync_dir(struct rmq_log *log)
{
	if (!log->dir_unsynced)
		return;
	for (int i = 0; i < 2; i++) {
		struct dirsync_op *d = &log->dirsync[i];
		if (!d->done && !d->inflight)
			submit_dirsync(log, i);
	}
}

bool log_dirsync_inflight(const struct rmq_log *log)
{
	return log->dirsync[0].inflight || log->dirsync[1].inflight;
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
 *   log_roll()         cut the data file to length (ftruncate),
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
 * log_roll() returns the error once, so one append fails with it.
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

/* Starts an fsync of fd for the current stage.  Returns 1: roll_step runs
 * at its completion.  Without an SQE now, the sync is deferred to the next
 * cycle (roll_op_done gets -EAGAIN and tries again): a ring that cannot
 * take an SQE for a moment delays the roll, it does not fail it. */
static int roll_sync(struct rmq_log *log, int fd, unsigned fsync_flags)
{
	struct roll *r = &log->roll;
	struct io_uring_sqe *sqe = rmq_io_sqe(log->io, &r->op);

	r->op.cb = roll_op_done;
	r->log = log;
	r->fd = fd;
	r->fsync_flags = fsync_flags;
	r->inflight = true;
	if (sqe)
		io_uring_prep_fsync(sqe, fd, fsync_flags);
	else
		rmq_io_defer(log->io, &r->op);
	return 1;
}

/* A roll whose new segment s (NULL: not created) could not be made,
 * synced or listed: s goes, durably (or the log fails), and the old
 * segment stays active with the seal's cuts undone; the next log_roll()
 * returns err once. */
static void roll_undo(struct rmq_log *log, struct rmq_segment *s, int err)
{
	int d = discard_segment(log, s);
	if (d < 0)
		log_fail(log, d, "removing a new segment after a failed roll");
	log->roll.stage = ROLL_IDLE;
	if (log->failed)
		return;
	struct rmq_segment *old = log_active(log);
	int cut = rmq_segment_cut(old, old->size, log->cfg.segment_bytes, log->cfg.prealloc);
	if (cut < 0)
		log_fail(log, cut, "reopening a segment after a failed roll");
	old->zeroed = 0;
	log->roll.failed = err;
	if (is_enospc(err)) {
		/* A full disk: the appends that need the roll are refused
		 * until a later one creates the segment (log_write.c, "A full
		 * disk"). */
		log_full_enter(log, FULL_ROLL, err, "creating a segment");
		log->roll_retry_ms = log_now_ms(log) + RMQ_LOG_FULL_RETRY_MS;
	}
}

/* Runs when the stage's sync is done (err 0) or failed. */
static void roll_step(struct rmq_log *log, int err)
{
	struct roll *r = &log->roll;
	struct rmq_segment *old = log_active(log);

	r->inflight = false;
	if (r->stage == ROLL_SEALING) {
		if (err < 0 || log->failed) {
			r->stage = ROLL_IDLE;
			if (err < 0)
				log_fail(log, err, "sealing a segment");
			return;
		}
		rmq_segment_sealed(old);
		old->unsynced = false;
		if (log->dfd_seg == old)
			log_dio_close(log);
		if (log->zero.fd_seg == old) {
			/* Done zeroing it; a later segment may reuse its address. */
			close(log->zero.fd);
			log->zero.fd = -1;
			log->zero.fd_seg = NULL;
		}
		if (log->synced < old->next_offset)
			log->synced = old->next_offset;
		if (log->cfg.fsync == RMQ_FSYNC_ALWAYS)
			log_ack_to(log, log->synced);
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
		err = log_push_segment(log, s);
	if (err == 0 && !log->failed) {
		r->stage = ROLL_IDLE;
		log->stats.segments++;
		log->pend_file_pos = 0;
		log->stats.rolls++;
		RECORD_LAT(log, roll, r->start_ns);
		log_full_leave(log, FULL_ROLL);
		return;
	}
	roll_undo(log, s, err);
}

/* Starts a roll.  Returns RMQ_EFULL while writes to the old segment are in
 * flight or a roll is under way (the caller retries after completions
 * run, as for a full buffer), or a negated errno: cutting the old
 * segment's files failed (the log fails too), or the last roll could not
 * create the new segment. */
int log_roll(struct rmq_log *log)
{
	struct roll *r = &log->roll;
	struct rmq_segment *old = log_active(log);

	if (r->stage != ROLL_IDLE)
		return RMQ_EFULL;
	if (is_enospc(r->failed) && log_now_ms(log) < log->roll_retry_ms)
		return -ENOSPC; /* full: tried again every RMQ_LOG_FULL_RETRY_MS */
	if (r->failed && !is_enospc(r->failed)) {
		int err = r->failed;
		r->failed = 0;
		return err;
	}
	r->failed = 0;
	int rc = log_cut_pending(log);
	if (rc < 0)
		return rc;
	/* A zero-ahead write or a reservation landing after the seal would
	 * extend the cut file, or touch the segment after retention freed
	 * it.  A group
	 * commit's fdatasync of it must finish first too: a writeback error
	 * is reported to one fsync of an open file, and the seal's, if it
	 * came back first, would acknowledge data the other then reports
	 * lost. */
	if (log->written < log->next_offset || (log->zero.inflight && log->zero.seg == old) ||
	    (log->sync.inflight && log->sync.seg == old) || log->falloc.inflight ||
	    log->dir_unsynced)
		return RMQ_EFULL;
	r->start_ns = log_lat_start(log);
	rc = rmq_segment_seal_cut(old);
	if (rc == 0) {
		r->stage = ROLL_SEALING;
		rc = roll_sync(log, old->fd, IORING_FSYNC_DATASYNC);
	}
	if (rc < 0) {
		r->stage = ROLL_IDLE;
		log_fail(log, rc, "sealing a segment");
		return rc;
	}
	return RMQ_EFULL;
}

void log_free_segment(struct rmq_segment *s)
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

struct unlink_op {
	struct rmq_io_op op;
	struct rmq_log *log;
	char path[sizeof(((struct rmq_log *)0)->spare)];
};

static void submit_unlink(struct unlink_op *u)
{
	struct io_uring_sqe *sqe = rmq_io_sqe(u->log->io, &u->op);

	if (sqe)
		io_uring_prep_unlinkat(sqe, AT_FDCWD, u->path, 0);
	else
		rmq_io_defer(u->log->io, &u->op); /* unlink_done: -EAGAIN */
}

static void unlink_done(struct rmq_io_op *op, int res, unsigned flags)
{
	struct unlink_op *u = (struct unlink_op *)op;

	(void)flags;
	if (res == -EAGAIN || res == -EINTR) {
		submit_unlink(u);
		return;
	}
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
	int rc = -ENOMEM;

	if (u) {
		snprintf(u->path, sizeof(u->path), "%s/" DELETED_PREFIX "%" PRIu64 ".log", log->dir,
			 log->deleted_seq++);
		rc = rmq_segment_detach(s, u->path);
		if (rc == 0) {
			u->op.cb = unlink_done;
			u->log = log;
			log->unlinks++;
			submit_unlink(u);
			return;
		}
	} else {
		rmq_segment_close(s);
	}
	/* Here, then: what is left of the segment. */
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
		log_dio_close(log);
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
			log_free_segment(s);
	} else if (recycle && s->sealed && log->cfg.recycle_segments && !log->has_spare &&
		   !s->lent && /* segment.h, "Lent pages" */
		   rmq_segment_detach(s, log->spare) == 0) {
		log->has_spare = true;
		free(s);
	} else {
		unlink_later(log, s);
		free(s);
	}
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
	uint64_t now = log_now_ms(log);
	uint64_t total = rmq_log_size_bytes(log);
	int deleted = 0;

	struct rmq_segment *act = log_active(log);
	/* Not on a failed log, and not when the last roll failed: that error
	 * is for the next append to report. */
	if (log->cfg.segment_ms && act->size > 0 && act->created_ms >= 0 &&
	    now >= (uint64_t)act->created_ms + log->cfg.segment_ms && !log->failed &&
	    !log->roll.failed)
		(void)log_roll(log); /* RMQ_EFULL: try again next time */

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
	log_epoch_started(log);
	/* A full log tries again: at once when space was just freed. */
	log_full_retry(log, deleted > 0);
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
	log_epoch_started(log);
	/* A full log tries again: at once when space was just freed. */
	log_full_retry(log, deleted > 0);
	return deleted;
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
	if (log->tail)
		rmq_tail_clear(log->tail);
	/* Find the cut before changing anything, so that an error leaves the
	 * log as it was (dropping segments first, then failing to find the
	 * batch, left a log whose end no segment matched). */
	int64_t si = log_find_segment(log, offset);
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
	if (!s->checked) {
		/* An older segment, opened on its indexes' word, becomes the
		 * newest, which the next start scans whole: a damaged batch
		 * in it would then cut everything after it, including what is
		 * appended from here on.  The log ends before the damage now,
		 * as it would after that restart. */
		uint64_t good_end;
		uint64_t good = rmq_segment_check(s, pos, &good_end);
		if (good < pos) {
			rmq_warn("log %s: segment %020" PRIu64 ": damaged batch at position %" PRIu64
				 " (offset %" PRIu64 "): truncating to it, not to offset %" PRIu64,
				 log->dir, s->base_offset, good, good_end, end);
			pos = good;
			end = good_end;
		}
	}
	bool dropped = log->nsegs > (size_t)si + 1;
	while (log->nsegs > (size_t)si + 1)
		drop_segment(log, log->nsegs - 1, false);
	s->next_offset = end;
	rc = rmq_segment_cut(s, pos, log->cfg.segment_bytes, log->cfg.prealloc);
	if (rc < 0) {
		/* Segments may be gone already: the log no longer matches
		 * its files. */
		log_fail(log, rc, "truncating");
		return rc;
	}
	s->zeroed = 0;
	s->fenced = false;
	s->checked = true;
	log->next_offset = log->written = log->synced = end;
	if (log->hw > end)
		log->hw = end;
	log_release_ring(log, true); /* idle: no write uses it */
	log->pend_file_pos = pos;
	log->lead_in_map = true;
	log->wr_seg = log->wb_seg = NULL;
	log->roll.failed = 0; /* about a segment that is gone or whole again */
	/* The deletions must be durable too: a later segment reappearing
	 * after a crash would resurrect the batches truncation removed. */
	if (dropped && rmq_sys_fsync(log->dir_fd) < 0) {
		rc = -errno;
		log_fail(log, rc, "truncating");
		return rc;
	}
	log_epoch_truncated(log);
	rmq_info("log %s: truncated to offset %" PRIu64 " (asked %" PRIu64 ")", log->dir, end,
		 offset);
	return 0;
}
