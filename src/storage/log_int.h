/* SPDX-License-Identifier: Apache-2.0 */
/*
 * log_int.h - the partition log's private state, shared by the four files
 * that implement log.h (as SQLite's btreeInt.h serves btree.c).  Nothing
 * outside src/storage/log*.c includes it.
 *
 *   log.c          the public API: configuration, append, reads, close,
 *                  accessors, and failing the log
 *   log_write.c    the write path: write buffer, page-cache and O_DIRECT
 *                  (RWF_DSYNC) writes, group commit, writeback, zero-ahead,
 *                  acknowledgement
 *   log_roll.c     segments come and go: creation, the roll (seal, create,
 *                  list), recycling, retention and compaction deletion,
 *                  truncation
 *   log_recover.c  opening: the directory listed, every segment opened,
 *                  the newest scanned and its torn tail cut
 *   log_create.c   a new log's first segment, whose files are made through
 *                  the ring at its first append
 *
 * Offsets, in order:  acked (= HW) <= synced <= written <= next_offset.
 *
 * Internal functions shared between the files are named log_<verb>; each
 * is documented where it is defined.
 */
#ifndef RMQ_STORAGE_LOG_INT_H
#define RMQ_STORAGE_LOG_INT_H

#include "core/lathist.h"
#include "core/shard.h"
#include "storage/log.h"
#include "storage/tail.h"
#include "storage/wpool.h"

#include <errno.h>
#include <stdbool.h>
#include <stdint.h>
#include <sys/uio.h>
#include <time.h>

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
	uint64_t file_pos;   /* data: [file_pos, +len) */
	uint32_t len;
	/* The I/O: the data, or with O_DIRECT the whole blocks around it
	 * (the head of the first block re-written, the tail padded with
	 * zeros), at base + io_off: in the log's ring, or (a large entry) in
	 * ext.  done_len counts I/O bytes. */
	uint8_t *base;
	bool wrap_last;      /* the last ring write before the ring wrapped */
	int fd;
	uint64_t io_pos;
	uint32_t io_off;
	uint32_t io_len;
	uint32_t done_len;
	uint64_t end_offset; /* offset after the last batch of this write */
	uint64_t start_ns;   /* first submitted */
	bool done;
	bool parked;         /* failed with ENOSPC: resubmitted when space returns */
	/* A large entry's write (log_write.c, "Large entries"): its own
	 * buffer of ext_len bytes, given back when the write retires. */
	uint8_t *ext;
	size_t ext_len;
};

/* The run of the shard's write pool (wpool.h) a log holds as its ring. */
struct ring {
	uint8_t *base;           /* NULL: none held */
	uint32_t first, nchunks; /* in the pool */
	uint32_t len;            /* bytes */
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

/* Reserves disk ahead of the data: IORING_OP_FALLOCATE of the active
 * segment's data file up to `end` (log_write.c, "Preallocation"). */
struct falloc_op {
	struct rmq_io_op op;
	struct rmq_log *log;
	struct rmq_segment *seg;
	uint64_t end;
	bool inflight;
	int err;                    /* the last reservation's error, for the
				     * append that needs the space (once) */
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

/* Making a new log's first segment (log_create.c): its three files
 * created, then the index files sized and (direct writes) B.log opened
 * for O_DIRECT, each step a few ring operations at once. */
enum make_stage {
	MAKE_DIR,     /* MKDIRAT of the directory (when it does not exist),
		       * OPENAT of its parent */
	MAKE_OPENING, /* OPENAT of the directory (idem), B.log, B.index,
		       * B.timeindex */
	MAKE_SIZING,  /* FALLOCATE of each index file's last page;
		       * OPENAT of B.log with O_DIRECT */
};

/* ops[] and fds[]: 0..2 the segment's files by kind (segment.h), then: */
#define MAKE_DIO 3    /* B.log opened for O_DIRECT writes */
#define MAKE_MKDIR 4  /* the log's directory made (no descriptor) */
#define MAKE_DIRFD 5  /* the log's directory opened */
#define MAKE_PARENT 6 /* its parent opened (for its sync) */
#define MAKE_OPS 7

#define LOG_DIR_MAX 3072 /* bytes of a log's directory path, with its NUL */

struct make_op {
	struct rmq_io_op op;
	struct rmq_log *log;
	char *path;         /* OPENAT, MKDIRAT: path_len bytes (struct make) */
	int flags;          /* OPENAT */
	uint64_t pos;       /* sizing: the index file's last page */
	bool write;         /* sizing: by a zero byte written there (the
			     * filesystem has no fallocate) */
	int res;            /* descriptor or count, or a negated errno */
	bool inflight;
};

/* Allocated while an attempt runs: an empty log does not carry its
 * paths. */
struct make {
	size_t path_len;    /* bytes of each op's path buffer, which follow */
	enum make_stage stage;
	struct make_op ops[MAKE_OPS];
	int fds[MAKE_OPS];  /* descriptors opened so far, -1 none */
	unsigned created;   /* 1 << kind: files this attempt created */
};

struct dirsync_op {
	struct rmq_io_op op;
	struct rmq_log *log;
	bool inflight;
	bool done;
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
	char dir[LOG_DIR_MAX];
	int dir_fd;                /* -1 while the directory is not made */
	char spare[LOG_DIR_MAX + 64]; /* dir/spare.log */
	bool has_spare;
	uint64_t deleted_seq;      /* names deleted files (unlink_later) */
	uint32_t unlinks;          /* IORING_OP_UNLINKAT in flight */

	struct rmq_segment **segs; /* oldest first; segs[nsegs-1] is active */
	size_t nsegs, segs_cap;
	/* The active segment is a new log's first, whose files are not made
	 * yet (log_create.c): appends wait (RMQ_EFULL) while make runs. */
	bool unmade;
	struct make *make;         /* an attempt under way, or NULL */
	bool make_queued;          /* waiting for a turn to make (log_create.c) */
	struct rmq_log *make_next; /* the next log waiting, while queued */
	int make_err;              /* why the last attempt failed, for the next
				    * append to return (once; ENOSPC: until
				    * roll_retry_ms) */

	uint64_t next_offset; /* next offset to assign */
	uint64_t written;     /* writes retired up to here */
	uint64_t synced;      /* durable up to here */
	uint64_t hw;          /* acknowledged up to here */
	uint64_t log_start;

	/* Write buffer (log_write.c, "Write buffer"): a ring taken from the
	 * pool while the log has bytes to write; fill and pend are offsets
	 * in it. */
	struct rmq_wpool *pool;     /* the shard's (cfg.wpool), or own_pool */
	struct rmq_wpool *own_pool; /* made at open when cfg.wpool is NULL */
	uint64_t buf_max;           /* the ring's largest size (write_buffer_bytes) */
	struct ring ring;
	uint32_t ring_writes;       /* writes in the FIFO cut from the ring */
	bool wrapped;               /* the older lap's writes are still in flight */
	uint32_t fill, pend;
	uint64_t pend_file_pos;

	/* O_DIRECT data writes (fsync=always, see "Direct writes" above). */
	bool direct;
	bool dsync;                 /* direct writes carry RWF_DSYNC: no fdatasync */
	int dfd;                    /* O_DIRECT descriptor of dfd_seg's data file */
	struct rmq_segment *dfd_seg;
	bool lead_in_map;           /* the partial block before pend_file_pos is
				     * in the map (after open, truncation); else
				     * in lead[] */
	uint8_t lead[RMQ_DIO_ALIGN]; /* that block, kept at every cut */

	/* A large entry between log_reserve_large() and log_queue_large():
	 * its own buffer of large_len bytes. */
	uint8_t *large_buf;
	size_t large_len;
	uint32_t nlarge;            /* large writes in the FIFO */

	/* Write FIFO: wops[(wq_head + i) % nwops], i < wq_len. */
	struct wop *wops;
	uint32_t nwops, wq_head, wq_len;

	struct sync_op sync;
	struct falloc_op falloc;
	/* A new log's directory and its parent (log_sync_dir): [0] syncs
	 * dir_fd, [1] parent_fd (open from the segment's making until then). */
	struct dirsync_op dirsync[2];
	int parent_fd;
	bool dir_unsynced;           /* acknowledge nothing until both are synced */
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

	struct rmq_tail *tail;      /* the newest entries in memory, or NULL (tail.h) */

	int failed;           /* first I/O error; 0 = healthy */
	/* A full disk (log_write.c, "A full disk"): which of FULL_* holds,
	 * the parked writes, and when to try again (log clock). */
	unsigned full;
	uint32_t parked;
	uint64_t full_retry_ms;
	uint64_t roll_retry_ms;
	rmq_log_hw_cb hw_cb;
	void *hw_arg;
	struct rmq_log_stats stats;

	/* Leader epochs (log_epoch.c): where each starts, for the offsets
	 * from epochs_from on, epochs in increasing order. */
	struct log_epoch *epochs;
	uint32_t nepochs, epochs_cap;
	uint64_t epochs_from;
	bool epochs_lost;     /* a note failed (no memory): walk again */
};

struct log_epoch {
	uint32_t epoch;
	uint64_t start;       /* its first batch's base offset */
};

/* Why a log refuses appends for want of space (rmq_log.full). */
#define FULL_RESERVE 1u /* a reservation (FALLOCATE) failed with ENOSPC */
#define FULL_ROLL 2u    /* creating the next segment did */
#define FULL_WRITE 4u   /* a data write did: it is parked */
/* A log that is full tries again at most this often (log clock), and at
 * once when retention or compaction deleted a segment. */
#define RMQ_LOG_FULL_RETRY_MS 100

static inline bool is_enospc(int err)
{
	return err == -ENOSPC || err == -EDQUOT;
}

/* A deleted data file's name starts with this (log_roll.c says why). */
#define DELETED_PREFIX ".deleted-"

static inline uint64_t log_now_ms(const struct rmq_log *log)
{
	if (log->cfg.now_ms)
		return log->cfg.now_ms();
	struct timespec ts;
	clock_gettime(CLOCK_REALTIME, &ts);
	return (uint64_t)ts.tv_sec * 1000 + (uint64_t)ts.tv_nsec / 1000000;
}

/* The start of a timed operation: the clock only when latencies are
 * recorded. */
static inline uint64_t log_lat_start(const struct rmq_log *log)
{
	return log->cfg.metrics ? rmq_now_ns() : 0;
}

/* Records the time since start_ns in the shard's histogram `which`. */
#define RECORD_LAT(log, which, start_ns)                                                  \
	do {                                                                              \
		if ((log)->cfg.metrics)                                                   \
			rmq_lat_since(&(log)->cfg.metrics->which, (start_ns), rmq_now_ns()); \
	} while (0)

static inline struct rmq_segment *log_active(const struct rmq_log *log)
{
	return log->segs[log->nsegs - 1];
}

/* log.c */
void log_fail(struct rmq_log *log, int err, const char *what);
int64_t log_find_segment(const struct rmq_log *log, uint64_t offset);

/* log_write.c */
void log_write_init(struct rmq_log *log);
void log_full_enter(struct rmq_log *log, unsigned why, int err, const char *what);
void log_full_leave(struct rmq_log *log, unsigned why);
void log_full_retry(struct rmq_log *log, bool at_once);
void log_ack_to(struct rmq_log *log, uint64_t offset);
void log_retire_writes(struct rmq_log *log);
int log_cut_pending(struct rmq_log *log);
int64_t log_reserve(struct rmq_log *log, uint32_t n);
uint8_t *log_buf(struct rmq_log *log);
void log_release_ring(struct rmq_log *log, bool all);
int log_buffers_open(struct rmq_log *log);
void log_buffers_close(struct rmq_log *log);
int log_reserve_space(struct rmq_log *log, struct rmq_segment *seg, uint64_t upto);
bool log_is_large(const struct rmq_log *log, uint64_t n);
uint8_t *log_reserve_large(struct rmq_log *log, uint32_t n);
void log_queue_large(struct rmq_log *log, struct rmq_segment *seg, uint32_t n,
		     uint64_t end_offset);
void log_drop_large(struct rmq_log *log);
int log_dio_open(struct rmq_log *log, struct rmq_segment *seg);
void log_dio_close(struct rmq_log *log);

/* log_roll.c */
int log_push_segment(struct rmq_log *log, struct rmq_segment *s);
int log_roll(struct rmq_log *log);
void log_sync_dir(struct rmq_log *log);
bool log_dirsync_inflight(const struct rmq_log *log);
void log_free_segment(struct rmq_segment *s);
/* Drops an older segment's pages from the page cache (advice: a fetch
 * serves resident pages unchecked, so pages read through the mapping
 * without a CRC check must not stay). */
void log_drop_cache(struct rmq_segment *s);
/* Leader epochs (log_epoch.c): an append's batch; the list made anew from
 * the newest segment (open, or a truncation into an older one: 0 or a
 * negated errno); after a truncation; after the log start moved. */
void log_epoch_note(struct rmq_log *log, uint32_t epoch, uint64_t start);
int log_epoch_rebuild(struct rmq_log *log);
void log_epoch_truncated(struct rmq_log *log);
void log_epoch_started(struct rmq_log *log);

/* log_create.c */
void log_create_init(struct rmq_log *log);
int log_new_segment(struct rmq_log *log, uint64_t base, bool fresh);
int log_make(struct rmq_log *log);
void log_make_unqueue(struct rmq_log *log); /* a log waiting for its turn that closes */
bool log_make_inflight(const struct rmq_log *log);
void log_parent_path(char *buf, size_t len, const char *dir);

#endif /* RMQ_STORAGE_LOG_INT_H */
