/* SPDX-License-Identifier: Apache-2.0 */
/*
 * tail.h - a copy of a log's newest entries in memory, for a leader to send
 * its followers what it has just appended without reading it back.
 *
 * Under fsync=always the log writes with O_DIRECT (docs/storage.md, "Direct
 * writes"), which leaves nothing in the page cache: a leader that read the
 * batches it had just written through the segment mapping took a disk read
 * per request, inside a page fault on its shard, which stalled every other
 * connection of that shard (docs/replication.md, "Figures").  The tail is a
 * byte ring of whole stored entries, in offset order and without gaps,
 * filled as they are appended (rmq_log_append copies each one in, one more
 * memcpy of the bytes), the oldest dropped to make room.  A follower that
 * keeps up asks for offsets the tail holds; one further behind gets a miss
 * and is served from the log.
 *
 * A leader sends those bytes to its followers by reference (holds, below),
 * so they are copied once in user space, at the append.  Nothing here
 * allocates after rmq_tail_new(); not thread-safe (one log, one shard).
 */
#ifndef RMQ_STORAGE_TAIL_H
#define RMQ_STORAGE_TAIL_H

#include <stddef.h>
#include <stdint.h>
#include <sys/uio.h>

struct rmq_tail;

/* A ring of `bytes` bytes (at least 4 KiB), holding up to bytes / 256
 * entries.  Returns NULL when out of memory. */
struct rmq_tail *rmq_tail_new(size_t bytes);
/* Frees it now, or at the last rmq_tail_release() while holds remain. */
void rmq_tail_free(struct rmq_tail *t);

/* The entry of len bytes holding offsets [base, next) was appended.  An
 * entry that does not follow the newest held (a gap: the log was cut, or
 * entries were missed) empties the tail first; one larger than the whole
 * ring empties it and is not kept. */
void rmq_tail_put(struct rmq_tail *t, const void *entry, size_t len, uint64_t base,
		  uint64_t next);

/* Forgets everything (the log was cut). */
void rmq_tail_clear(struct rmq_tail *t);

/*
 * Whole entries from offset `offset` (which must be an entry's base) up to
 * offset `limit`, at most max_entries of them and at most max_bytes (but
 * at least the first entry, if it ends at or below limit): their length in
 * *len and the offset after them in *next.  Returns 0, or -1 when the tail
 * does not hold an entry starting at offset (a miss) or none ends at or
 * below limit.
 */
int rmq_tail_span(const struct rmq_tail *t, uint64_t offset, uint64_t limit, size_t max_bytes,
		  uint32_t max_entries, size_t *len, uint64_t *next);

/*
 * A hold on bytes of the tail, for sending them by reference: while it is
 * held they are never overwritten (an entry that would overwrite held
 * bytes is not kept: the tail empties and followers are served from the
 * log until the holds go), and rmq_tail_free() leaves the ring to the
 * last release.  The caller owns the struct; a handful are held at once.
 */
struct rmq_tail_hold {
	struct rmq_tail *t;
	uint64_t pos;                        /* the first byte held */
	struct rmq_tail_hold *prev, *next;
};

/* The len bytes rmq_tail_span() found from offset (nothing was put or
 * cleared in between), as one or two pieces (the ring wraps): iov[0] and
 * iov[1] (iov[1] empty when it does not wrap), held by h until
 * rmq_tail_release(h). */
void rmq_tail_hold(struct rmq_tail *t, uint64_t offset, size_t len, struct iovec iov[2],
		   struct rmq_tail_hold *h);
void rmq_tail_release(struct rmq_tail_hold *h);

#endif /* RMQ_STORAGE_TAIL_H */
