/* SPDX-License-Identifier: Apache-2.0 */
/*
 * log.h - a partition log: an ordered list of segments, the append path
 * with group commit, reads as byte ranges, retention and recovery.
 *
 * Append path (per ring cycle):
 *
 *   rmq_log_append()     assigns offsets and the append time, copies the
 *        │               entry (prefix + records bytes, verbatim, their
 *        │               CRC checked) into a write buffer (a ring from the
 *        │               shard's pool, wpool.h, registered once), parses
 *        │               the copy
 *        ▼
 *   rmq_log_flush()      called once per ring cycle by the shard loop:
 *        │               WRITE(_FIXED)s of all bytes appended since the last
 *        │               flush, at the segment's next position: under
 *        │               fsync=always one O_DIRECT write of whole blocks,
 *        │               otherwise page-cache writes of whole appends, at
 *        │               most 128 KiB each (log_write.c says why)
 *        ▼
 *   write completes ───► fsync=never/interval: appends acknowledged
 *        │
 *        ▼ (fsync=always)
 *   one FSYNC(DATASYNC) per log in flight, covering every write completed
 *   before it was issued (group commit); when it completes, the appends it
 *   covers are acknowledged, in offset order.
 *
 * The high watermark (HW) is the offset after the last acknowledged batch:
 * readers see exactly what producers were told is stored.  Under
 * fsync=always nothing that a crash could lose is ever served.
 *
 * A write or sync error fails the log: every waiting append completes with
 * the error, later appends are refused (RMQ_ESTATE), and the log must be
 * reopened (recovery decides what survived).  After an fsync error Linux may
 * have dropped the dirty pages, so retrying would claim durability falsely.
 * Reads go on (what was acknowledged stays readable), close returns the
 * error, and every acknowledged append survives the reopen.
 *
 * Each failure and its outcome (tests/storage/test_log_faults.c drives
 * every one through the fault layer of core/io.h):
 *
 *   what fails                            outcome
 *   no SQE, submit -EBUSY/-EAGAIN,        deferred and retried next cycle;
 *     a completion -EAGAIN/-EINTR           nothing fails (below)
 *   a short write                         the rest is written
 *   a data write (EIO, ...)               the log fails
 *   a data write: ENOSPC, EDQUOT          the write is parked, the log is
 *                                           full (below)
 *   a group commit's fdatasync            the log fails; a roll waits for an
 *                                           fdatasync of the old segment in
 *                                           flight, so none is acknowledged
 *   the seal (cutting, syncing the old    the log fails
 *     segment)
 *   creating the new segment, or          the roll is undone: what it made is
 *     syncing its directory entry           removed and the directory synced
 *                                           before the old segment takes
 *                                           appends again; the append that
 *                                           rolled fails once with the error
 *                                           (ENOSPC, EDQUOT: the log is full,
 *                                           below)
 *   undoing a roll (that directory        the log fails
 *     sync, re-cutting the old segment)
 *   reserving space ahead (FALLOCATE      ENOSPC, EDQUOT: the log is full
 *     on the ring)                          (below); else the append that
 *                                           needs the space is refused with
 *                                           the error, nothing appended, and
 *                                           the next one reserves again
 *   a zero-ahead write                    a warning; zeroing stops
 *   a writeback hint, the unlink of a     a warning at most
 *     deleted segment
 *   truncation, before it cuts            the error, nothing changed
 *   truncation's cut or its syncs         the log fails
 *   close's final fdatasync               close returns the error
 *   opening a segment                     the open fails, nothing changed
 *
 * A full disk never fails the log either.  ENOSPC (or EDQUOT) where the log
 * takes space (reserving ahead of the appends, creating a segment, a data
 * write into space nothing reserved) puts it in a full state:
 * rmq_log_append() refuses what needs space with -ENOSPC (an append that
 * fits what is reserved still goes in), a write that hit it is parked (its
 * appends neither acknowledged nor failed), and reads, retention,
 * compaction and truncation go on.  What failed is tried again by later
 * appends and flushes, at most every RMQ_LOG_FULL_RETRY_MS (100 ms), and at
 * once when retention or compaction deleted a segment; appends resume by
 * themselves once it works, and no acknowledged append is lost.
 * rmq_log_disk_full() says whether the log is full.  An fdatasync's ENOSPC
 * is not this: the kernel may have dropped the data, so the log fails as
 * for EIO.  At close, parked writes get one more try, then fail the log.
 *
 * A transient state of the ring never fails the log: an operation that
 * gets no SQE (the SQ is full and io_uring_enter answered -EBUSY or
 * -EAGAIN) is deferred to the next cycle (core/io.h rmq_io_defer) and
 * retried there, as are completions with -EAGAIN or -EINTR; it counts as
 * in flight meanwhile (appends wait, close waits).  No storage function
 * spins or runs the event loop itself to wait one out (rmq_log_close
 * excepted: see there).
 *
 * One log belongs to one shard: no function is thread-safe, and completion
 * callbacks run inside rmq_io_poll()/rmq_io_wait() of the shard's ring.
 */
#ifndef RMQ_STORAGE_LOG_H
#define RMQ_STORAGE_LOG_H

#include "core/io.h"
#include "core/lathist.h"
#include "storage/batch.h"
#include "storage/segment.h"
#include "storage/wpool.h"

#include <stdbool.h>
#include <stdint.h>
#include <sys/uio.h>

enum rmq_fsync {
	RMQ_FSYNC_ALWAYS,   /* acknowledge after fdatasync (group commit) */
	RMQ_FSYNC_INTERVAL, /* acknowledge after write; sync every interval */
	RMQ_FSYNC_NEVER,    /* acknowledge after write; the kernel syncs */
};

struct rmq_log_config {
	uint64_t segment_bytes;        /* roll when the next batch would not fit */
	uint64_t segment_ms;           /* roll when the segment is older; 0 = never */
	int64_t retention_bytes;       /* delete oldest segments above; -1 = unlimited */
	int64_t retention_ms;          /* delete segments older than; -1 = forever */
	uint32_t index_interval_bytes; /* log bytes between offset index entries */
	uint32_t write_buffer_bytes;   /* the largest ring the log takes from
					* its pool (log_write.c) */
	uint32_t max_inflight_writes;  /* write operations in flight */
	enum rmq_fsync fsync;
	enum rmq_prealloc prealloc;
	uint64_t zero_ahead_bytes;     /* RMQ_PREALLOC_ZERO: zeros kept this far
					* ahead of the data */
	bool direct_writes;            /* fsync=always: write data with O_DIRECT
					* (falls back to the page cache when the
					* filesystem refuses O_DIRECT) */
	bool dsync_writes;             /* with direct writes: each write carries
					* RWF_DSYNC (durable when it completes)
					* instead of a group-commit fdatasync */
	bool recycle_segments;         /* keep the data file of a segment that
					* retention (or compaction) deleted for
					* the next new segment (segment.h,
					* "Recycling") */
	/* Clock in ms since the epoch; NULL = CLOCK_REALTIME.  For tests. */
	uint64_t (*now_ms)(void);
	/* Where the log records its latencies (one per shard, shared by the
	 * shard's logs and owned by the caller, who must keep it alive until
	 * the logs close); NULL = not recorded. */
	struct rmq_log_metrics *metrics;
	/* The shard's write buffers (wpool.h), shared by its logs and owned
	 * by the caller, on the same ring, alive until the logs close; NULL =
	 * the log makes a pool of its own of write_buffer_bytes. */
	struct rmq_wpool *wpool;
};

/* Latencies of the log's work, in µs (GetMetrics: rmq_log_*_latency_us). */
struct rmq_log_metrics {
	struct rmq_lat_hist ack;   /* rmq_log_append() to the append's callback
				    * with res 0: buffer wait, write, sync */
	struct rmq_lat_hist write; /* one data write, submitted to completed
				    * (with RWF_DSYNC: durable) */
	struct rmq_lat_hist sync;  /* one fdatasync, submitted to completed */
	struct rmq_lat_hist roll;  /* a roll's work on the shard: seal the
				    * old segment, create the new one */
};

/* Defaults: 1 GiB segments, 7-day segment.ms and retention, unlimited
 * retention bytes, 4 KiB index interval, 8 MiB write buffer, 64 writes in
 * flight, fsync=always with O_DIRECT data writes, zero-ahead preallocation
 * 64 MiB ahead (for the page-cache path; direct writes only fallocate). */
void rmq_log_config_default(struct rmq_log_config *cfg);

struct rmq_log;
struct rmq_append;
struct rmq_tail;

/* Called when an append is acknowledged (res 0) or failed (res < 0). */
typedef void (*rmq_append_cb)(struct rmq_append *a, int res);

/* A caller-owned append; it must stay alive until its callback runs. */
struct rmq_append {
	struct rmq_batch_hdr hdr; /* in: producer fields; out: base_offset and
				   * log_append_time_ms (set by rmq_log_append) */
	bool replica;             /* in: a follower's copy of its leader's batch:
				   * hdr is the leader's, kept as it is (see
				   * rmq_log_append) */
	rmq_append_cb cb;
	/* Private to the log: */
	struct rmq_append *next;
	uint64_t end_offset;
	struct rmq_segment *seg;
	uint64_t end_pos;
	uint64_t start_ns;
};

/* Called when the high watermark advances (to wake long polls). */
typedef void (*rmq_log_hw_cb)(void *arg, uint64_t high_watermark);

struct rmq_log_stats {
	uint64_t appends, appended_bytes;
	uint64_t writes, syncs;
	uint64_t segments, rolls, deleted_segments;
	uint64_t recycled_segments; /* new segments that took the spare file */
	uint64_t recovered_batches, truncated_bytes;
	uint64_t buffer_full;  /* appends refused with RMQ_EFULL */
};

/*
 * The largest batch (records bytes, recs of rmq_log_append) a log with
 * segments of segment_bytes stores: its entry must fit one segment and the
 * batch RMQ_BATCH_BYTES_MAX (less the largest prefix, so it is exact to
 * within 192 bytes, on the safe side).  The write buffer does not limit
 * it.  For validating max.message.bytes against segment.bytes.
 */
uint64_t rmq_log_batch_bytes_max(uint64_t segment_bytes);

/*
 * Opens (creating if absent) the log in directory dir, recovering it:
 * every segment is opened (rmq_segment_open; the newest one fully
 * scanned, unless none of its files holds data: an empty partition's log
 * opens without writing or syncing anything), a torn or corrupt tail of
 * the newest segment is cut and the cut is logged with counts, a corrupt
 * older segment is fenced and logged, files that are not segment files
 * are skipped with a warning.
 * io is the shard's ring; it must outlive the log.  A new log (dir absent,
 * or holding no segment) is not created here: its directory and first
 * segment's files are made through the ring once the log has its ring, and
 * its directory and the directory's parent synced (log_create.c).  Appends
 * wait for the files (RMQ_EFULL) and none is acknowledged before the syncs
 * (whose failure fails the log); the log is not idle until they are done.
 * dir's parent must be writable (else -EACCES or -EROFS now).
 * Memory: no write buffer is held until there is something to write
 * (cfg.wpool); disk: nothing is preallocated before the first append.
 * With io NULL the log is opened without touching any ring, so that a
 * helper thread may open it (the recovery reads are blocking file I/O);
 * cfg.wpool is then required, and the shard calls rmq_log_attach() before
 * anything else.
 * Returns 0 and *out, or a negated errno (directory or files unusable),
 * RMQ_EBADFLAG (inconsistent config).
 */
int rmq_log_open(struct rmq_io *io, const char *dir, const struct rmq_log_config *cfg,
		 struct rmq_log **out);

/* Gives a log opened with io NULL its shard's ring (and starts making a
 * new log's files).  On the shard. */
void rmq_log_attach(struct rmq_log *log, struct rmq_io *io);

/*
 * True when nothing of the log is in flight on the ring: no append, write,
 * sync, roll, zeroing, writeback hint or unlink.  Then rmq_log_detach()
 * may run, and after it rmq_log_close() touches no ring: a helper thread
 * may run it (its final fdatasync, the unmapping and closes are blocking
 * calls).
 */
bool rmq_log_quiet(const struct rmq_log *log);

/* Takes a quiet log off its shard: its write buffers go back to the
 * shard's pool.  On the shard; the log takes no more appends. */
void rmq_log_detach(struct rmq_log *log);

/*
 * Flushes and syncs what is buffered, waiting on the ring (running other
 * completions of that ring meanwhile), then closes the files.  Appends
 * still waiting complete first.  Returns 0, or the log's failure error.
 */
int rmq_log_close(struct rmq_log *log);

/*
 * Appends one batch.  recs is the records bytes exactly as batch.h defines
 * them (field-7 elements, or a compressed payload when hdr.compression is
 * set), possibly split across iovecs.  Sets a->hdr.base_offset and
 * log_append_time_ms before returning 0; a->cb runs later, once the batch
 * is acknowledged per the fsync policy.
 * Any batch up to rmq_log_batch_bytes_max(segment_bytes) is stored,
 * whatever write_buffer_bytes is: an entry too large for the write
 * buffers is copied to a buffer of its own and written from there (one at
 * a time per log), in order with the rest and with the same durability
 * and acknowledgement.
 * Returns 0, or (with nothing appended and no callback):
 *   RMQ_ECRC      hdr.crc32 is nonzero and differs from the records' CRC
 *   RMQ_ETOOBIG   the entry exceeds the segment size, or the batch
 *                 RMQ_BATCH_BYTES_MAX (batch.h)
 *   RMQ_EFULL     the write buffer is full, or a roll waits for the old
 *                 segment's writes, or a large entry waits for the one
 *                 before it: retry after completions run
 *   RMQ_EPROTO    record_count is 0, or (uncompressed) recs are not whole
 *                 field-7 elements, so the entry would not parse back
 *   RMQ_ESTATE    the log has failed (see above) or is closing
 *   -ENOSPC       the disk is full (see "A full disk"): retry later; the
 *                 log tries again by itself
 *   negated errno from sealing the old segment or creating the new one
 *                 during a roll (a failed seal also fails the log)
 */
int rmq_log_append(struct rmq_log *log, struct rmq_append *a, const struct iovec *recs,
		   int nrecs);
/*
 * A replica append (a->replica, for replication) assigns nothing: hdr is
 * the leader's whole header (base offset, append time, leader epoch, CRC),
 * so the entry written is the leader's byte for byte (the encoding is
 * canonical: batch.h).  Besides the errors above it returns, with nothing
 * appended:
 *   RMQ_ERANGE    hdr.base_offset is not the log end offset
 *   RMQ_ECRC      hdr.crc32 is 0 (a leader's batch always has one)
 *   RMQ_EPROTO    hdr.leader_epoch is below the log's last epoch
 */

/*
 * Leader epochs (KIP-101).  Every batch carries the epoch of the leader
 * that appended it, and along a log epochs never decrease.  The log knows
 * where each epoch starts (log_epoch.c: from the batches themselves,
 * nothing kept beside them); older segments are read the first time a
 * question reaches below the newest one (blocking reads of the mapping,
 * as truncation does).  Both return 0 or a negated errno.
 */
/* The epoch of the log's last batch; 0 for an empty log. */
int rmq_log_last_epoch(struct rmq_log *log, uint32_t *epoch);
/* Where epoch `epoch` ends here: *end = the first offset of a batch of a
 * larger epoch (the log end offset when none), *floor = the largest epoch
 * <= `epoch` of the log's batches.  Returns RMQ_ENOTFOUND when the log
 * holds no batch of `epoch` or below (*floor = 0, *end = where its first
 * batch, of a later epoch, starts, or its end when empty). */
int rmq_log_epoch_end(struct rmq_log *log, uint32_t epoch, uint32_t *floor, uint64_t *end);
/* The epoch of the batch holding offset, and where that epoch's batches
 * start and end in this log.  Returns RMQ_ERANGE for an offset outside
 * [log start, log end), RMQ_ENOTFOUND where the log cannot be read (a
 * fenced segment). */
int rmq_log_epoch_at(struct rmq_log *log, uint64_t offset, uint32_t *epoch, uint64_t *start,
		     uint64_t *end);

/* Submits buffered appends (one write).  Call once per ring cycle, before
 * waiting on the ring. */
void rmq_log_flush(struct rmq_log *log);

/* For fsync=interval: issues a sync if written data is unsynced.  Call from
 * a timer every interval. */
void rmq_log_sync_tick(struct rmq_log *log);

/* One contiguous range of a segment's data file. */
struct rmq_log_slice {
	struct rmq_segment *seg;  /* pinned until rmq_log_read_done() */
	const uint8_t *data;      /* seg->map + pos: resident if recently written */
	int fd;                   /* for splice / READ_FIXED of cold data */
	uint64_t pos;
	uint32_t len;
};

#define RMQ_LOG_SLICES_MAX 4

struct rmq_log_read {
	struct rmq_log_slice slices[RMQ_LOG_SLICES_MAX];
	unsigned nslices;
	uint64_t bytes;            /* sum of the slices */
	uint64_t first_offset;     /* base offset of the first batch returned */
	uint64_t next_offset;      /* offset after the last batch returned */
	uint64_t high_watermark;
	uint64_t log_start_offset;
};

/*
 * Finds the whole batches from the one holding offset, up to max_bytes of
 * entries but at least one batch (so a consumer always progresses), never
 * past the high watermark, across at most RMQ_LOG_SLICES_MAX segments.
 * The end is found from the offset index where it can, so the data itself
 * (perhaps not in memory) is not touched: the read may stop short of
 * max_bytes by less than an index interval plus one batch.
 * The slices stay valid (segments pinned against retention and truncation)
 * until rmq_log_read_done().
 * Returns 0 (nslices == 0 when offset == HW: nothing new yet), or:
 *   RMQ_ERANGE    offset < log start or > HW (r has both, for the reply)
 *   RMQ_EFENCED   offset lies in a segment fenced after corruption
 *   RMQ_ECORRUPT  the data at offset does not parse
 */
int rmq_log_read(struct rmq_log *log, uint64_t offset, uint64_t max_bytes,
		 struct rmq_log_read *r);
/* The same, never past limit either (a partition's high watermark below
 * the log's durable end, replication): limit is a batch boundary. */
int rmq_log_read_below(struct rmq_log *log, uint64_t offset, uint64_t max_bytes, uint64_t limit,
		       struct rmq_log_read *r);

/* Unpins the slices of r. */
void rmq_log_read_done(struct rmq_log *log, struct rmq_log_read *r);

/*
 * The same, callable on any thread, even after the log was closed: a
 * reader that hands its slices to another shard (a fetch answer sent by
 * reference from the connection's shard) releases them there.  The last
 * release of a segment the log has deleted or closed unmaps and frees it.
 * A pinned segment is never unmapped, but note that rmq_log_truncate()
 * may still shorten the active segment's file under it (replication only).
 */
void rmq_log_read_release(struct rmq_log_read *r);

/* The pages of r's slices may be spliced into sockets, which can hold them
 * past the release: their segments are deleted, never recycled (segment.h,
 * "Lent pages").  Owner thread, before the release. */
void rmq_log_read_lend(struct rmq_log_read *r);

/*
 * A descriptor for reading sl's bytes from the disk without the page cache
 * (O_DIRECT, opened on first use; segment.h rmq_segment_direct_fd): reads
 * through it must be 4096-aligned in position, length and buffer address.
 * Falls back to sl->fd where the filesystem has no O_DIRECT (then the
 * alignment is harmless).  The log's owner thread only, while pinned.
 */
int rmq_log_slice_direct_fd(const struct rmq_log_slice *sl);

/* The log's directory (for messages). */
const char *rmq_log_dir(const struct rmq_log *log);

/*
 * Offset of the first batch whose timestamp is >= ts_ms (Kafka's
 * ListOffsets by timestamp, at batch granularity).  Returns 0 with *offset,
 * or RMQ_ENOTFOUND when every batch is older.
 */
int rmq_log_offset_for_time(struct rmq_log *log, int64_t ts_ms, uint64_t *offset);

/* The greatest batch timestamp of the log (ListOffsets MAX_TIMESTAMP finds
 * its batch with rmq_log_offset_for_time).  Returns 0 with *ts_ms, or
 * RMQ_ENOTFOUND when the log is empty. */
int rmq_log_max_timestamp(const struct rmq_log *log, int64_t *ts_ms);

/*
 * Calls fn(arg, entry, v) for every batch from offset `from` up to the high
 * watermark, in offset order, with the entry's bytes and its header
 * (rmq_batch_parse_header: records not walked, CRC not checked).  Ranges
 * that cannot be read (a fenced segment) are skipped to the next segment.
 * For start-up replays: it reads through the mapping.  Returns the number
 * of offsets skipped, or the first negative value fn returned (the scan
 * stops there).
 */
struct rmq_batch_view;
int64_t rmq_log_scan(struct rmq_log *log, uint64_t from,
		     int (*fn)(void *arg, const uint8_t *entry, const struct rmq_batch_view *v),
		     void *arg);

/*
 * Removes every batch from offset on (for replication): later segments are
 * deleted, the segment holding offset is cut at the batch boundary at or
 * before offset, and the cut and the deletions are synced.  The log end
 * becomes that boundary.  An offset in the unreadable range of a fenced
 * segment cuts at the end of its valid data (and unfences it).  Cutting
 * into an older segment first checks its batches below the cut (their
 * CRCs were never read: see rmq_segment_check) and cuts at the first
 * damaged one, so the end may come out below offset; rmq_log_end_offset()
 * says where it is.  Nothing
 * changes when an error is found before cutting; an error from the cut or
 * the syncs fails the log (it no longer matches its files).
 * Must run with no append in flight (rmq_log_idle()).
 * Returns 0, or RMQ_ESTATE (appends in flight, or the log failed),
 * RMQ_ERANGE (offset below the log start), or a negated errno.
 */
int rmq_log_truncate(struct rmq_log *log, uint64_t offset);

/*
 * Applies retention: deletes whole sealed segments, oldest first, while
 * the log exceeds retention_bytes or a segment's newest timestamp is older
 * than now - retention_ms; advances the log start offset.  The active
 * segment is never deleted.  Also rolls the active segment when it is older
 * than segment_ms.  Returns the number of segments deleted, or a negated
 * errno.
 */
int rmq_log_retain(struct rmq_log *log);

/*
 * Deletes whole sealed segments, oldest first, while every batch of the
 * segment lies below offset (a compacted log's superseded prefix: the
 * group coordinator rewrites the live records and then drops what came
 * before them).  The active segment is never deleted.  Advances the log
 * start offset.  Returns the number of segments deleted.
 */
int rmq_log_delete_before(struct rmq_log *log, uint64_t offset);

/*
 * Changes the roll and retention limits of an open log (a topic's altered
 * configuration).  segment_bytes applies to segments created from now on;
 * the active segment keeps the size it was mapped with when that is
 * smaller.  Retention applies at the next rmq_log_retain().
 */
void rmq_log_set_limits(struct rmq_log *log, uint64_t segment_bytes, uint64_t segment_ms,
			int64_t retention_bytes, int64_t retention_ms);

/* Keeps a copy of the newest `bytes` bytes of entries in memory from the
 * next append on (storage/tail.h), replacing any kept before; 0 stops.
 * Returns 0 or -ENOMEM (then none is kept). */
int rmq_log_keep_tail(struct rmq_log *log, size_t bytes);
/* That copy (read with rmq_tail_span and rmq_tail_hold), or NULL. */
struct rmq_tail *rmq_log_tail(const struct rmq_log *log);

uint64_t rmq_log_high_watermark(const struct rmq_log *log);
/* First offset of the active (newest) segment. */
uint64_t rmq_log_active_base(const struct rmq_log *log);
uint64_t rmq_log_start_offset(const struct rmq_log *log);
uint64_t rmq_log_end_offset(const struct rmq_log *log); /* next offset to assign */
uint64_t rmq_log_size_bytes(const struct rmq_log *log);
size_t rmq_log_segment_count(const struct rmq_log *log); /* the active one included */
/* True while the log refuses appends with -ENOSPC for want of disk space
 * (see "A full disk" above): for health and metrics. */
bool rmq_log_disk_full(const struct rmq_log *log);
/* True when no append waits for I/O and nothing of the log is in flight on
 * the ring (a roll, a reservation, a new log's directory sync). */
bool rmq_log_idle(const struct rmq_log *log);
void rmq_log_set_hw_listener(struct rmq_log *log, rmq_log_hw_cb cb, void *arg);
const struct rmq_log_stats *rmq_log_stats(const struct rmq_log *log);

#endif /* RMQ_STORAGE_LOG_H */
