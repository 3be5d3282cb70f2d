/* SPDX-License-Identifier: Apache-2.0 */
/*
 * segment.h - one segment of a partition log and its two indexes.
 *
 * Files of a segment whose first offset is B (20 zero-padded digits):
 *
 *   B.log        entries as batch.h draws them, back to back from position
 *                0; then zeros up to the preallocated size.  Sealed
 *                segments are cut to their data length.
 *   B.index      sparse offset index: struct rmq_index_entry[], one per
 *                index_interval_bytes of log data (and one for the first
 *                batch), strictly increasing in both fields
 *   B.timeindex  time index: struct rmq_time_entry[], added beside an offset
 *                index entry when the segment's greatest timestamp grew
 *   B.recycled   empty marker: B.log is a recycled file (below), so the
 *                bytes after its data are an older segment's, not zeros
 *   spare.log    (one per log at most) the data file of a segment that
 *                retention deleted, kept for the next new segment
 *
 * Lent pages.  A server that splices fetch answers (net/conn.c, "Splice")
 * hands the socket the page cache's pages of B.log themselves, and the
 * socket may hold them long after the fetch's pin is gone (a slow reader,
 * retransmissions).  Recycling that file would write the new segment's
 * bytes into those same pages (page-cache writes, fsync=never; and an
 * O_DIRECT write falls back to the page cache when the kernel cannot drop
 * a cached page first), and the reader would get them instead of the
 * batches it was answered.  So a segment whose pages were lent
 * (rmq_segment.lent) is deleted, never recycled.  Finding out whether any
 * page is still held (drop the file's cache, then mincore) was measured at
 * 15 ms per 256 MiB on the shard, too much for every retention step.
 * A truncation drops the file's pages instead of writing into them.
 *
 * Recycling.  A new segment takes spare.log when there is one instead of
 * creating and fallocating a file: its blocks are already written, so
 * O_DIRECT and synced writes into it are plain overwrites, without the
 * extent conversions (and their journal commits) that writes into
 * fallocated space cost.  Its old bytes can never pass for data: every
 * batch in them has a base offset below the log's start, so recovery stops
 * at the first one, and B.recycled tells it that what follows the data is
 * old bytes, not damage.  Sealing or cutting the file drops the old bytes
 * and the marker.
 *
 *   rmq_index_entry (8 bytes, little-endian, as mmapped)
 *     OFFSET SIZE MEANING
 *     0      4    relative offset: base offset of an entry's batch - B
 *     4      4    position of that entry in B.log
 *
 *   rmq_time_entry (16 bytes)
 *     OFFSET SIZE MEANING
 *     0      8    greatest batch timestamp (ms since the epoch) up to and
 *                 including the batch below
 *     8      4    relative offset of that batch
 *     12     4    zero (keeps entries 8-byte aligned in the mapping)
 *
 * Both index files are mmapped read-write with room for every entry the
 * segment can need, and are rebuilt from B.log whenever they fail
 * validation, so they are never trusted blindly.  They are fsynced only
 * after their entries were rewritten rather than appended (at open, when
 * recovery rebuilt them; at a cut), never on the append path nor at the
 * seal: every entry a crash leaves on disk then belongs to the data, and a
 * lost one costs a rebuild, never a wrong answer.  B.log is mmapped read-only: readers see what the log wrote
 * through io_uring (the page cache is coherent with the mapping).
 *
 * Lifecycle:
 *
 *   create ──► active (appends; indexes grow) ──► sealed (B.log cut to
 *   open   ──► recover/validate ──┤                its data and synced)
 *   init_unmade ─► (files made by  │
 *     the log) ─► adopt ───────────┘ └──► deleted (retention, truncation)
 *
 * A segment belongs to one log on one shard; nothing here is thread-safe.
 */
#ifndef RMQ_STORAGE_SEGMENT_H
#define RMQ_STORAGE_SEGMENT_H

#include <stdatomic.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

struct rmq_index_entry {
	uint32_t rel_offset;
	uint32_t position;
};
_Static_assert(sizeof(struct rmq_index_entry) == 8, "on-disk offset index entry");

struct rmq_time_entry {
	int64_t timestamp_ms;
	uint32_t rel_offset;
	uint32_t zero;
};
_Static_assert(sizeof(struct rmq_time_entry) == 16, "on-disk time index entry");

/* Preallocation of a new segment's data file. */
enum rmq_prealloc {
	RMQ_PREALLOC_NONE,      /* grow by appending */
	RMQ_PREALLOC_FALLOCATE, /* fallocate(): unwritten extents */
	RMQ_PREALLOC_ZERO,      /* fallocate(), then, when it writes through
				 * the page cache, the log writes zeros ahead
				 * of the data so syncs overwrite written
				 * extents (see log_write.c for why and the numbers) */
};

#define RMQ_SEGMENT_NAME_LEN 20 /* digits in a file name */
/* In rmq_segment.pins: the log no longer holds the segment. */
#define RMQ_SEG_DOOMED 0x80000000u

struct rmq_segment {
	uint64_t base_offset;
	uint64_t next_offset;     /* offset after the last batch written */
	uint64_t size;            /* bytes of entries written (next position) */
	uint64_t visible_size;    /* bytes readers may see (acknowledged) */
	uint64_t map_len;         /* bytes mapped at map */
	const uint8_t *map;       /* B.log, read-only */
	int fd;                   /* B.log, O_RDWR */
	int rfd;                  /* B.log, O_RDONLY|O_DIRECT for cold reads,
				   * opened on first use by the owner
				   * (rmq_segment_direct_fd); -1 not yet,
				   * -2 the filesystem refused O_DIRECT */

	struct rmq_index_entry *idx;
	uint32_t idx_count, idx_cap;
	struct rmq_time_entry *tim;
	uint32_t tim_count, tim_cap;
	int idx_fd, tim_fd;       /* -1 but while opening, creating or cutting:
				   * the indexes are written and read through
				   * their mappings, and three descriptors per
				   * segment capped the segments (so the
				   * partitions) a node could hold */
	uint64_t bytes_since_index;
	bool index_rewritten;     /* an entry was written over a different,
				   * nonzero one (recovery: the files changed
				   * where they held entries, rmq_segment_open
				   * syncs them) */
	uint64_t zeroed;          /* [0, zeroed) needs no zeroing: zero-ahead
				   * wrote it, or (recycled file) it holds
				   * written blocks */
	uint64_t prealloc_end;    /* data file allocated up to here */
	bool unsynced;            /* written since its last sync */

	int64_t max_timestamp_ms; /* greatest batch timestamp; -1 = empty */
	int64_t created_ms;       /* append time of the first batch, for
				   * segment.ms rolls; -1 = empty */
	bool sealed;
	bool recycled;            /* B.recycled exists: old bytes after size */
	bool lent;                /* its pages may have been spliced: never
				   * recycled (above, "Lent pages"); owner
				   * thread only */
	/* Every batch below size passed its CRC check: written by this
	 * process, or the newest segment, scanned whole at open.  An older
	 * segment is opened on its indexes' word; truncation that makes it
	 * the newest checks it first (rmq_segment_check). */
	bool checked;
	/* Recovery found corruption at fenced_pos: nothing at or after it is
	 * served, and offsets from next_offset to the next segment are
	 * reported as fenced. */
	bool fenced;
	/* Readers holding slices, plus RMQ_SEG_DOOMED once the log let go
	 * of the segment (deleted, or the log closed): whoever takes the
	 * word to exactly RMQ_SEG_DOOMED frees it.  Atomic because a fetch
	 * answered by reference drops its pin on the connection's shard
	 * when the socket has taken the bytes (log.h,
	 * rmq_log_read_release). */
	_Atomic uint32_t pins;
	char path[4096 - 128];    /* directory + "/" + B, without extension */
};

/*
 * The descriptor cold reads of s use: B.log opened O_RDONLY|O_DIRECT on the
 * first call, so a read goes from the disk into the reader's buffer without
 * passing through (and filling) the page cache; the O_RDWR descriptor when
 * the filesystem has no O_DIRECT.  Reads through it must be 4096-aligned in
 * position, length and buffer address.  Owner thread only; closed with s.
 */
int rmq_segment_direct_fd(struct rmq_segment *s);

/* What recovery of one segment found. */
struct rmq_segment_recovery {
	uint64_t batches;         /* valid batches */
	uint64_t records;
	uint64_t valid_bytes;
	uint64_t discarded_bytes; /* past the first bad entry (0 = clean) */
	int error;                /* 0, or what ended the scan: RMQ_ETORN,
				   * RMQ_ECORRUPT, RMQ_ECRC */
	bool index_rebuilt;
	/* The newest segment's files hold no data at all (segment.c
	 * no_data: no written extent, no cached page; the index files no
	 * block): it was opened without reading, rebuilding or syncing
	 * anything, and nothing after its (empty) data needs cutting. */
	bool untouched;
};

/* The spare data file's name in a log directory. */
#define RMQ_SEGMENT_SPARE "spare.log"

/*
 * Creates the files of a new, empty segment of capacity bytes at dir/B.*,
 * preallocating RMQ_PREALLOC_MIN of data file as prealloc says, and maps
 * them.  With spare
 * (a path, normally dir/RMQ_SEGMENT_SPARE), B.log is that file renamed
 * (after B.recycled is created) rather than a new one.
 * Returns 0, RMQ_EEXIST if B.log exists, or a negated errno (-ENOENT: no
 * spare).  A failure after the rename deletes the file it took.
 */
int rmq_segment_create(struct rmq_segment *s, const char *dir, uint64_t base_offset,
		       uint64_t capacity, uint32_t index_interval_bytes,
		       enum rmq_prealloc prealloc, const char *spare);

/*
 * A segment made in two steps, its files created by the caller through the
 * ring (a new log's first segment, made at its first append: log.h):
 * rmq_segment_init_unmade() sets s up as an empty segment at base_offset
 * in dir with no file, descriptor or mapping (rmq_segment_close() is
 * harmless on it); once the caller has created B.log (empty), B.index
 * and B.timeindex (zeros, of the sizes rmq_segment_index_sizes() gives),
 * all O_RDWR, rmq_segment_adopt() takes the three descriptors (in every
 * case: on failure they are closed) and maps the files.  Nothing is
 * preallocated.  rmq_segment_adopt returns 0 or a negated errno (a
 * mapping failed; s is closed).
 */
void rmq_segment_init_unmade(struct rmq_segment *s, const char *dir, uint64_t base_offset);
void rmq_segment_index_sizes(uint64_t capacity, uint32_t index_interval_bytes,
			     uint64_t *idx_bytes, uint64_t *tim_bytes);
int rmq_segment_adopt(struct rmq_segment *s, int fd, int idx_fd, int tim_fd, uint64_t capacity,
		      uint32_t index_interval_bytes);

/*
 * Closes the segment, unlinks its index files and renames B.log to path
 * (which must not exist): to keep it as the spare, or to unlink it later
 * off the shard (the unlink that frees a big file's blocks is slow).
 * Only for a segment no reader pins.  Returns 0, or a negated errno with
 * the segment closed and B.log possibly still there (rmq_segment_unlink).
 */
int rmq_segment_detach(struct rmq_segment *s, const char *path);

/*
 * Opens the existing segment dir/B.log.  With full_scan (the newest
 * segment) every entry is parsed and CRC-checked from position 0 and the
 * indexes are rebuilt; otherwise the indexes are validated (monotonic,
 * within the data, last entry on a batch boundary) and only the entries
 * after the last index entry are scanned, with a full rebuild when the
 * indexes are missing or invalid (a time index too: empty, or followed by
 * anything but zeros).  The scan stops at the first zero byte, torn entry,
 * corrupt entry or CRC mismatch, or at an offset gap; a zero byte with
 * data in the 64 KiB after it counts as corruption, not as the end.  In a
 * recycled newest segment (B.recycled) whatever follows the data is the
 * end, except a batch of the expected offset whose CRC fails (a torn
 * write: RMQ_ECRC).  An older segment's stale marker is removed.  A newest
 * segment whose files hold no data at all (an empty partition's) is opened
 * without reading or writing anything (rec->untouched).
 * capacity is the mapping size wanted for appends (ignored when sealed).
 * Returns 0 with *rec describing the scan (rec->error says whether the
 * data after valid_bytes is bad), or a negated errno when a file cannot
 * be opened or mapped.
 */
int rmq_segment_open(struct rmq_segment *s, const char *dir, uint64_t base_offset,
		     uint64_t capacity, uint32_t index_interval_bytes, bool full_scan,
		     struct rmq_segment_recovery *rec);

/* Releases mappings and descriptors (does not sync). */
void rmq_segment_close(struct rmq_segment *s);

/* Closes and unlinks the three files.  Returns 0 or a negated errno. */
int rmq_segment_delete(struct rmq_segment *s);

/* Unlinks the three files but keeps the mappings and descriptors, so that
 * readers holding slices go on reading; rmq_segment_close() releases them
 * later.  Frees the names at once for a new segment with the same base.
 * Returns 0 or a negated errno. */
int rmq_segment_unlink(struct rmq_segment *s);

/*
 * Cuts B.log to exactly size bytes (dropping everything after, so stale
 * entries can never be resurrected by a later recovery), drops index
 * entries at or beyond it, and preallocates RMQ_PREALLOC_MIN past it (at
 * most up to capacity) when prealloc asks.  The greatest timestamp is recomputed from what is left
 * (re-reading the batches after the last index entry), and the age
 * (created_ms) restarts when nothing is.  Synchronous; for recovery,
 * truncation and sealing.
 * Returns 0 or a negated errno.
 */
int rmq_segment_cut(struct rmq_segment *s, uint64_t size, uint64_t capacity,
		    enum rmq_prealloc prealloc);

/*
 * Preallocation follows the data: a new segment (and one cut by recovery
 * or truncation) reserves RMQ_PREALLOC_MIN synchronously; the log reserves
 * the rest ahead of its appends through the ring (log_write.c,
 * "Preallocation"), about as much again as the segment holds, at least
 * RMQ_PREALLOC_MIN and at most RMQ_PREALLOC_STEP at a time.  A partition
 * holding little data thus holds little disk: 1,000 empty partitions
 * took 64 GB when every segment reserved RMQ_PREALLOC_STEP at creation.
 */
#define RMQ_PREALLOC_MIN (512ULL << 10)
#define RMQ_PREALLOC_STEP (64ULL << 20)

/*
 * Checks the batches in the first `limit` bytes as recovery checks the
 * newest segment: each parses, continues the offsets and has a correct
 * CRC-32C.  Returns the position of the first that does not (limit when
 * all do), with the offset the log ends at there in *end.  Reads those
 * bytes: for truncation into an older segment, which is rare.
 */
uint64_t rmq_segment_check(const struct rmq_segment *s, uint64_t limit, uint64_t *end);

/* Records an appended batch in the indexes (called in offset order). */
void rmq_segment_index_batch(struct rmq_segment *s, uint64_t base_offset, uint64_t position,
			     uint32_t entry_len, int64_t timestamp_ms,
			     uint32_t index_interval_bytes);

/*
 * Finds the position of the batch holding offset (base <= offset <
 * next_offset) among the first `limit` bytes, and its header in *v when v
 * is not NULL.  Returns the position, or
 * RMQ_ERANGE when offset is not in the segment, or RMQ_ECORRUPT when the
 * data there does not parse.  O(log n) in index entries plus a scan of at
 * most index_interval_bytes of batch headers.
 */
struct rmq_batch_view;
int64_t rmq_segment_find(const struct rmq_segment *s, uint64_t offset, uint64_t limit,
			 struct rmq_batch_view *v);

/*
 * Reading by the offset index alone (its entries are batch starts), so
 * that cold data is not touched just to find batch boundaries:
 * rmq_segment_index_exact returns the entry whose offset is exactly
 * offset, rmq_segment_index_upto the last entry whose position lies in
 * (after, upto]; each returns the entry's index or -1.
 */
int64_t rmq_segment_index_exact(const struct rmq_segment *s, uint64_t offset);
int64_t rmq_segment_index_upto(const struct rmq_segment *s, uint64_t after, uint64_t upto);

/* Position of the first batch whose timestamp is >= ts_ms, with its base
 * offset in *offset; RMQ_ENOTFOUND when none is. */
int64_t rmq_segment_find_time(const struct rmq_segment *s, int64_t ts_ms, uint64_t limit,
			      uint64_t *offset);

/*
 * Sealing, in two halves around the caller's fdatasync of fd (the log's
 * roll runs it with io_uring, off the shard's thread):
 * rmq_segment_seal_cut() cuts B.log to its data length, releasing the
 * preallocation (returns 0 or a negated errno); once the data file is
 * synced, rmq_segment_sealed() marks the segment sealed.  The index files
 * are not synced: rmq_segment_open() keeps an older segment's indexes only
 * as far as they check out against the data and rebuilds the rest.
 */
int rmq_segment_seal_cut(struct rmq_segment *s);
void rmq_segment_sealed(struct rmq_segment *s);

/* The file name (no directory) of base_offset's file of kind (0 log,
 * 1 index, 2 timeindex, 3 recycled marker) into buf; returns buf. */
#define RMQ_SEGMENT_KIND_LOG 0
#define RMQ_SEGMENT_KIND_INDEX 1
#define RMQ_SEGMENT_KIND_TIMEINDEX 2
#define RMQ_SEGMENT_KIND_RECYCLED 3
char *rmq_segment_name(char *buf, size_t len, uint64_t base_offset, int kind);

/* "dir/%020lu" into buf; returns buf. */
char *rmq_segment_path(char *buf, size_t len, const char *dir, uint64_t base_offset);

/* Parses a segment file name "%020lu.log" etc.  Returns 0 and the base
 * offset and kind (0 log, 1 index, 2 timeindex, 3 recycled marker), or
 * RMQ_ENOTFOUND. */
int rmq_segment_parse_name(const char *name, uint64_t *base_offset, int *kind);

#endif /* RMQ_STORAGE_SEGMENT_H */
