/* SPDX-License-Identifier: Apache-2.0 */
/*
 * wpool.h - a shard's pool of write buffers, shared by its partition logs.
 *
 * Every log used to own a write buffer of write_buffer_bytes, registered
 * with the ring (pinned) whether or not the partition was written: 1,000
 * partitions held 2 GB.  Now one region per shard is cut into chunks of
 * chunk_bytes and registered once as one fixed buffer; a log takes a run of
 * contiguous chunks (its ring, log_write.c) when it has bytes to write and
 * gives it back when they are written, so an idle partition holds none and the
 * shard's write buffers are bounded by the pool, whatever the partition
 * count.
 *
 *   region (chunks x chunk_bytes, one fixed buffer)
 *   +-------+-------+-------+-------+-------+-------+-------+-------+
 *   | log A | log A |       | log B |       | log C | log C | log C |
 *   +-------+-------+-------+-------+-------+-------+-------+-------+
 *     run of 2                1               run of 3
 *
 * Entries too large for the pool (rmq_wpool_run_max()) are written from
 * buffers of their own, mapped per entry; their bytes are bounded by
 * large_bytes_max per pool (one is always allowed when none is out, so a
 * batch of any size makes progress).
 *
 * When the pool is empty a log's append meets RMQ_EFULL and retries after
 * completions run, as for a full buffer: backpressure, never growth.
 * A pool belongs to one shard (one ring); nothing here is thread-safe.
 */
#ifndef RMQ_STORAGE_WPOOL_H
#define RMQ_STORAGE_WPOOL_H

#include "core/io.h"

#include <stddef.h>
#include <stdint.h>

struct rmq_wpool;

struct rmq_wpool_config {
	uint32_t chunk_bytes;     /* a power of two, 64 KiB .. 64 MiB */
	uint32_t chunks;          /* 2 .. 65536 */
	uint32_t run_max_chunks;  /* most chunks one run takes; 0 = a
				   * quarter of them (at least one) */
	uint64_t large_bytes_max; /* buffers of large entries out at once;
				   * 0 = the pool's size */
};

/* Defaults: 256 KiB chunks, 256 of them (64 MiB), runs up to a quarter
 * of that, large entries up to the pool's size. */
void rmq_wpool_config_default(struct rmq_wpool_config *cfg);

/*
 * Maps the region and registers it with io as one fixed buffer (plain
 * writes when no slot is free or the kernel refuses; the pages are then
 * not pinned).  io must outlive the pool.  Returns 0 and *out, or
 * RMQ_EBADFLAG (bad config), or -ENOMEM.
 */
int rmq_wpool_create(struct rmq_io *io, const struct rmq_wpool_config *cfg,
		     struct rmq_wpool **out);

/* Unregisters and unmaps the region.  Every log using the pool must be
 * closed first; if a chunk is still out (a log closed with writes in
 * flight), the region is left mapped and an error logged. */
void rmq_wpool_destroy(struct rmq_wpool *p);

uint32_t rmq_wpool_chunk_bytes(const struct rmq_wpool *p);
/* The largest run a log may take (its ring's bound, log_write.c). */
uint64_t rmq_wpool_run_max(const struct rmq_wpool *p);
/* The fixed-buffer slot of the region, or -1. */
int rmq_wpool_slot(const struct rmq_wpool *p);

/*
 * Takes n contiguous free chunks (first fit).  Returns the index of the
 * first and *base its address, or -1 when no such run is free.  O(chunks).
 */
int64_t rmq_wpool_get(struct rmq_wpool *p, uint32_t n, uint8_t **base);
/* Takes want contiguous chunks if such a run is free, else min (at least
 * one); only a failure to get min counts as refused.  Returns the first
 * index and *n, the chunks taken, or -1. */
int64_t rmq_wpool_get_upto(struct rmq_wpool *p, uint32_t want, uint32_t min, uint32_t *n,
			   uint8_t **base);
/* Gives back the n chunks from first on. */
void rmq_wpool_put(struct rmq_wpool *p, uint32_t first, uint32_t n);

/*
 * A buffer of len bytes (page-aligned, zeroed) for one large entry, within
 * large_bytes_max (or the only one out).  Returns it, or NULL (over the
 * bound, or no memory: retry later).  rmq_wpool_large_put() unmaps it.
 */
uint8_t *rmq_wpool_large_get(struct rmq_wpool *p, size_t len);
void rmq_wpool_large_put(struct rmq_wpool *p, uint8_t *buf, size_t len);

struct rmq_wpool_stats {
	uint32_t chunks, chunks_free;
	uint64_t large_bytes;   /* large-entry buffers out */
	uint64_t refused;       /* gets that found no free run */
};
void rmq_wpool_stats(const struct rmq_wpool *p, struct rmq_wpool_stats *out);

#endif /* RMQ_STORAGE_WPOOL_H */
