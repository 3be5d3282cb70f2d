/* SPDX-License-Identifier: Apache-2.0 */
/*
 * coldread.h - reading log data that is not in memory, and reading ahead of
 * a consumer that goes through it in order.
 *
 * A page fault on a segment mapping is a synchronous disk read that stalls
 * the whole shard, and under fsync=always the log writes with O_DIRECT, so
 * even the freshest data is not in the page cache.  The fetch path sends
 * from the mapping only what rmq_cold_resident() says is in memory and
 * hands the rest here: the slices of a log read (storage/log.h) are read
 * into one aligned buffer with io_uring READs on the partition's shard,
 * O_DIRECT (rmq_log_slice_direct_fd), RMQ_COLD_CHUNK bytes each with up to
 * RMQ_COLD_DEPTH in flight.  Buffered READs ran at ~400 MB/s on the
 * development VM (the kernel filling the page cache), direct ones at
 * 1.1 GB/s one at a time and 2.2 GB/s eight deep (fio; docs/benchmarks-notes.md
 * "Reading cold data").  Direct reads move whole 4 KiB blocks, so each cold
 * slice is read as the aligned blocks around it and answered from inside.
 * Every batch read is CRC-checked before it is handed out.
 *
 * Read-ahead.  A consumer reading cold data in order waits for the disk on
 * every fetch, and the disk idles while the answer travels.  When a cold
 * read starts where the partition's previous one ended, the next range of
 * the same size (the consumer's budget, at most RMQ_COLD_AHEAD_MAX) is read
 * at once into a buffer the partition holds; the next fetch at that offset
 * takes it (or waits for it) instead of reading.  One read-ahead per
 * partition, at most rmqd --read-ahead bytes per shard; a fetch at any
 * other offset drops it.
 *
 *   rmq_cold_read_start ── read-ahead covers it ──► take it (done now), or
 *        │                                          wait for it (pending)
 *        └── allocate, copy resident slices, READ the cold blocks
 *            ─► pending: the partition counts it in reads; when the last
 *            READ is in: CRC-check, unpin, maybe read ahead, cb
 *
 * Shard-local: everything runs on the log's shard.  The fetch path
 * (broker) reads this way today; replication will read disk the same way.
 */
#ifndef RMQ_STORAGE_COLDREAD_H
#define RMQ_STORAGE_COLDREAD_H

#include "core/io.h"
#include "storage/log.h"

#include <stdbool.h>
#include <stdint.h>
#include <sys/uio.h>

#define RMQ_COLD_CHUNK (512u << 10)       /* bytes per READ */
#define RMQ_COLD_DEPTH 4                  /* READs in flight per read */
#define RMQ_COLD_AHEAD_MAX (8u << 20)     /* bytes one read-ahead reads */

struct rmq_cold_read;
struct rmq_cold_ahead;

/* What the cold reads of one shard share: the read-ahead budget and the
 * counters (GetMetrics). */
struct rmq_cold_budget {
	uint64_t ahead_max;           /* bytes read-aheads may hold (--read-ahead) */
	uint64_t ahead_held;          /* held now */
	uint64_t disk_bytes;          /* batch bytes read from the disk */
	uint64_t ahead_bytes;         /* batch bytes taken from a read-ahead */
};

/* Per-log state (the owner embeds it next to the log; rmq_cold_init). */
struct rmq_cold_state {
	struct rmq_log *log;
	struct rmq_io *io;            /* the log's shard's ring */
	struct rmq_cold_budget *budget;
	uint32_t reads;               /* pending reads, read-ahead included */
	struct rmq_cold_ahead *ahead; /* the read-ahead, or NULL */
	uint64_t next;                /* where the last cold read ended */
	bool closed;                  /* rmq_cold_close ran: no more read-ahead */
};

/* Sets cs up for reads of log on io, sharing budget. */
void rmq_cold_init(struct rmq_cold_state *cs, struct rmq_log *log, struct rmq_io *io,
		   struct rmq_cold_budget *budget);

struct rmq_cold_chunk {
	struct rmq_io_op op;
	struct rmq_cold_read *cr;
	int fd;
	uint64_t pos;   /* file position (aligned) */
	uint32_t len;   /* bytes asked for; 0 = slot free */
	uint32_t need;  /* of them, bytes the answer uses (EOF may cut the rest) */
	uint32_t done;  /* bytes in so far */
	uint8_t *buf;
};

struct rmq_cold_read {
	/* Set by the caller before rmq_cold_read_start(). */
	struct rmq_cold_state *cs;
	struct rmq_log_read lr;  /* pinned slices: the read unpins them */
	uint32_t ahead_bytes;    /* read-ahead size if this read is in order (0: none) */
	void (*cb)(struct rmq_cold_read *cr); /* a pending read is done */

	/* The result, once done. */
	uint8_t *data;           /* the batches' buffer (the caller frees), or NULL */
	struct iovec iov[RMQ_LOG_SLICES_MAX]; /* the batches, inside data */
	unsigned niov;
	size_t len;              /* bytes of checked batches from the start */
	uint64_t first_offset, next_offset; /* the offsets they cover */
	/* 0 (a bad batch after good ones only shortens len), or: a negated
	 * errno (the READ failed), -ENOMEM, RMQ_ECRC (the first batch fails
	 * its CRC-32C) or RMQ_ECORRUPT (it does not parse); bad_offset names
	 * the batch. */
	int err;
	uint64_t bad_offset;
	bool cut;                /* a bad batch ended the result early */

	/* Private. */
	unsigned cold;           /* bit i: slice i is read, not copied */
	size_t at[RMQ_LOG_SLICES_MAX];
	unsigned ri;             /* the slice being issued */
	uint64_t rnext;          /* its next aligned position to READ */
	unsigned inflight;
	int rerr;
	struct rmq_cold_chunk chunk[RMQ_COLD_DEPTH];
};

/*
 * True when every page of [data, data + len) of a segment mapping is in
 * memory, so touching it cannot fault (mincore(), which never faults).
 */
bool rmq_cold_resident(const uint8_t *data, uint32_t len);

/*
 * Reads cr->lr's batches into a buffer: resident slices copied, cold ones
 * read from the disk, or taken from the log's read-ahead.  Returns
 * false when the result is already there (cb is not called), true when it
 * is pending (cb runs on this shard when it is in).  Either way cr->lr is
 * unpinned by then.  The result may cover less than cr->lr asked for (a
 * shorter read-ahead, a bad batch after good ones).
 */
bool rmq_cold_read_start(struct rmq_cold_read *cr);

/* The log is closing: drop its read-ahead, start no other.  Pending reads
 * still complete: the caller waits for cs->reads to reach 0 before it
 * closes the log. */
void rmq_cold_close(struct rmq_cold_state *cs);

#endif
