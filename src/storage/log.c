/* SPDX-License-Identifier: Apache-2.0 */
/*
 * log.c - the partition log's public face (log.h draws the append
 * pipeline): configuration defaults, rmq_log_append, reads by offset and
 * time, close, the accessors, and failing the log.
 *
 * An append copies the entry into the write buffer and queues itself for
 * acknowledgement; log_write.c turns buffered bytes into writes and
 * acknowledges them; log_roll.c starts a new segment when the active one
 * is full or old; log_recover.c opens the log.  log_int.h holds the state
 * they share.
 *
 * Reads never touch the write path: they see segments up to each one's
 * visible_size (what was acknowledged) and pin the segments they return.
 */
#include "storage/log_int.h"
#include "storage/sysfile.h"

#include "core/assert.h"
#include "core/crc32c.h"
#include "core/error.h"
#include "core/log.h"
#include "core/pbwire.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <unistd.h>

uint64_t rmq_log_batch_bytes_max(uint64_t segment_bytes)
{
	uint64_t entry_max = segment_bytes < RMQ_BATCH_BYTES_MAX ? segment_bytes : RMQ_BATCH_BYTES_MAX;
	return entry_max > RMQ_BATCH_PREFIX_MAX ? entry_max - RMQ_BATCH_PREFIX_MAX : 0;
}

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

/* ---- failure ----------------------------------------------------------- */

/* Fails the log: every waiting append completes with err, in order. */
void log_fail(struct rmq_log *log, int err, const char *what)
{
	if (!log->failed) {
		rmq_error("log %s: %s failed: %s; the log is offline until reopened", log->dir,
			  what, rmq_strerror(err));
		log->failed = err;
	}
	/* Parked writes are not in flight: they retire with the rest. */
	for (uint32_t i = 0; i < log->wq_len && log->parked > 0; i++) {
		struct wop *w = &log->wops[(log->wq_head + i) % log->nwops];
		if (w->parked) {
			w->parked = false;
			w->done = true;
			log->parked--;
		}
	}
	log->full = 0;
	log_retire_writes(log);
	log->aq_uncut = NULL;
	while (log->aq_head) {
		struct rmq_append *a = log->aq_head;
		log->aq_head = a->next;
		if (!log->aq_head)
			log->aq_tail = NULL;
		a->cb(a, err);
	}
}

/* ---- append ------------------------------------------------------------ */

int rmq_log_append(struct rmq_log *log, struct rmq_append *a, const struct iovec *recs,
		   int nrecs)
{
	uint8_t prefix[RMQ_BATCH_PREFIX_MAX];
	struct rmq_batch_hdr *h = &a->hdr;
	size_t rlen = 0;
	int rc;

	if (log->failed)
		return RMQ_ESTATE;
	if (h->record_count == 0)
		return RMQ_EPROTO;
	if (log->full & FULL_WRITE) {
		/* Writes wait for space: take nothing more meanwhile. */
		log_full_retry(log, false);
		return -ENOSPC;
	}
	if (log->roll.stage != ROLL_IDLE) {
		log->stats.buffer_full++; /* the old segment is being sealed */
		return RMQ_EFULL;
	}
	if (log->unmade) {
		/* A new log's files are still being made (log_create.c), or
		 * the last attempt failed: this returns why, or tries again. */
		rc = log_make(log);
		if (rc == RMQ_EFULL)
			log->stats.buffer_full++;
		return rc;
	}
	if (a->replica) {
		/* The leader's batch as it is: nothing is assigned here. */
		uint32_t last;
		if (h->base_offset != log->next_offset)
			return RMQ_ERANGE;
		if (h->crc32 == 0)
			return RMQ_ECRC;
		if (rmq_log_last_epoch(log, &last) == 0 && h->leader_epoch < last)
			return RMQ_EPROTO;
	}
	for (int i = 0; i < nrecs; i++)
		rlen += recs[i].iov_len;
	/* Room first, the CRC-32C after: an append refused for room (and
	 * retried every cycle until there is some) must not cost a pass over
	 * its records each time.  The prefix's length depends on the CRC (a
	 * varint), so room is made for the longest; the entry takes only what
	 * it needs. */
	const uint32_t given_crc = h->crc32;
	h->crc32 = UINT32_MAX;
	if (!a->replica) {
		h->base_offset = log->next_offset;
		h->log_append_time_ms = log_now_ms(log);
	}
	int plen = rmq_batch_encode_prefix(h, rlen, prefix);
	h->crc32 = given_crc;
	if (plen < 0)
		return plen;
	const uint64_t room = (uint64_t)plen + rlen;
	if (room > log->cfg.segment_bytes)
		return RMQ_ETOOBIG;

	struct rmq_segment *seg = log_active(log);
	bool too_old = log->cfg.segment_ms && seg->created_ms >= 0 &&
		       h->log_append_time_ms >= (uint64_t)seg->created_ms + log->cfg.segment_ms;
	/* A segment never outgrows its mapping, even when segment_bytes was
	 * raised after it was created (rmq_log_set_limits). */
	uint64_t cap = log->cfg.segment_bytes < seg->map_len ? log->cfg.segment_bytes : seg->map_len;
	if (seg->size > 0 && (seg->size + room > cap || too_old)) {
		rc = log_roll(log);
		if (rc < 0) {
			if (rc == RMQ_EFULL)
				log->stats.buffer_full++;
			return rc;
		}
		seg = log_active(log);
	}
	/* Disk space first: a full disk refuses the append, it never tears it. */
	rc = log_reserve_space(log, seg, seg->size + room);
	if (rc < 0) {
		if (rc == RMQ_EFULL)
			log->stats.buffer_full++;
		return rc;
	}
	/* A large entry is written from a buffer of its own (log_write.c,
	 * "Large entries"), so the write buffer does not bound a batch. */
	bool large = log_is_large(log, room);
	int64_t off = 0;
	uint8_t *entry;
	if (large) {
		entry = log_reserve_large(log, (uint32_t)room);
		if (!entry && log->failed)
			return RMQ_ESTATE;
		if (!entry) {
			log->stats.buffer_full++;
			return RMQ_EFULL;
		}
	} else {
		off = log_reserve(log, (uint32_t)room);
		if (off < 0) {
			log->stats.buffer_full++;
			return (int)off;
		}
		entry = log_buf(log) + off;
	}
	/* Check the producer's CRC before anything is written (nothing is
	 * committed yet: what the reservation did is harmless, see below). */
	uint32_t crc = 0;
	for (int i = 0; i < nrecs; i++)
		crc = rmq_crc32c(crc, recs[i].iov_base, recs[i].iov_len);
	if (given_crc != 0 && given_crc != crc) {
		if (large)
			log_drop_large(log);
		return RMQ_ECRC;
	}
	h->crc32 = crc;
	plen = rmq_batch_encode_prefix(h, rlen, prefix);
	RMQ_DASSERT(plen > 0);
	RMQ_DASSERT((uint64_t)plen + rlen <= room);
	const uint64_t len = (uint64_t)plen + rlen;
	uint8_t *dst = entry;
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
	if (rmq_batch_parse(entry, len, &v) != (int)len) {
		if (large)
			log_drop_large(log);
		return RMQ_EPROTO;
	}
	/* segment.ms ages a segment by the broker's clock, never by a
	 * timestamp the producer chose; recovery reads the same value back
	 * from the first batch's log_append_time_ms. */
	if (seg->created_ms < 0)
		seg->created_ms = (int64_t)h->log_append_time_ms;
	int64_t ts = h->max_timestamp_ms >= 0 ? h->max_timestamp_ms : (int64_t)h->log_append_time_ms;
	rmq_segment_index_batch(seg, h->base_offset, seg->size, (uint32_t)len, ts,
				log->cfg.index_interval_bytes);
	if (!large)
		log->fill = (uint32_t)off + (uint32_t)len;
	seg->size += len;
	log_epoch_note(log, h->leader_epoch, h->base_offset);
	log->next_offset += h->record_count;
	seg->next_offset = log->next_offset;

	a->next = NULL;
	a->end_offset = log->next_offset;
	a->seg = seg;
	a->end_pos = seg->size;
	a->start_ns = log_lat_start(log);
	if (log->aq_tail)
		log->aq_tail->next = a;
	else
		log->aq_head = a;
	log->aq_tail = a;
	if (large)
		log_queue_large(log, seg, (uint32_t)len, log->next_offset); /* in a write now */
	else if (!log->aq_uncut)
		log->aq_uncut = a;
	log->stats.appends++;
	log->stats.appended_bytes += len;
	if (log->tail)
		rmq_tail_put(log->tail, entry, (size_t)len, h->base_offset, log->next_offset);
	return 0;
}

/* ---- reads ------------------------------------------------------------- */

/* Index of the segment holding offset: the last with base <= offset. */
int64_t log_find_segment(const struct rmq_log *log, uint64_t offset)
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
	return rmq_log_read_below(log, offset, max_bytes, UINT64_MAX, r);
}

/* Where the batch starting at offset `at` lies in the segment holding it
 * (at is a batch boundary below the log's HW), for a read that stops
 * there: *seg and *pos.  Returns 0 or a negative error. */
static int boundary(struct rmq_log *log, uint64_t at, struct rmq_segment **seg, uint64_t *pos)
{
	int64_t si = log_find_segment(log, at);
	if (si < 0)
		return RMQ_ERANGE;
	struct rmq_segment *s = log->segs[si];
	int64_t e = rmq_segment_index_exact(s, at);
	struct rmq_batch_view v;
	int64_t p;
	if (at == s->base_offset)
		p = 0;
	else if (e >= 0)
		p = s->idx[e].position;
	else if ((p = rmq_segment_find(s, at, s->visible_size, &v)) >= 0 && v.hdr.base_offset != at)
		return RMQ_ECORRUPT; /* not a batch boundary */
	if (p < 0)
		return (int)p;
	*seg = s;
	*pos = (uint64_t)p;
	return 0;
}

int rmq_log_read_below(struct rmq_log *log, uint64_t offset, uint64_t max_bytes, uint64_t limit,
		       struct rmq_log_read *r)
{
	const uint64_t hw = limit < log->hw ? limit : log->hw;
	memset(r, 0, sizeof(*r));
	r->high_watermark = hw;
	r->log_start_offset = log->log_start;
	r->first_offset = r->next_offset = offset;
	if (offset < log->log_start || offset > hw)
		return RMQ_ERANGE;
	if (offset == hw)
		return 0;
	/* A limit below the log's HW ends the read in its segment. */
	struct rmq_segment *hw_seg = NULL;
	uint64_t hw_pos = 0;
	if (hw < log->hw) {
		int rc = boundary(log, hw, &hw_seg, &hw_pos);
		if (rc < 0)
			return rc;
	}
#define VISIBLE(s) ((s) == hw_seg ? hw_pos : (s)->visible_size)

	int64_t si = log_find_segment(log, offset);
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
	if (e >= 0 && seg->idx[e].position < VISIBLE(seg)) {
		pos = seg->idx[e].position;
	} else {
		pos = rmq_segment_find(seg, offset, VISIBLE(seg), &v);
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
		const uint64_t vis = VISIBLE(seg);
		if (upto >= vis && vis > start) {
			p = vis;
			next = seg == hw_seg ? hw : p == seg->size ? seg->next_offset : log->hw;
		} else if ((j = rmq_segment_index_upto(seg, start, upto < vis ? upto : vis)) >= 0) {
			p = seg->idx[j].position;
			next = seg->base_offset + seg->idx[j].rel_offset;
		} else {
			walk = true;
		}
		while (walk && p < vis) {
			uint32_t n = entry_len_at(seg->map + p, vis - p);
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
		if (p < vis || seg == hw_seg || r->bytes >= max_bytes ||
		    r->nslices == RMQ_LOG_SLICES_MAX || (size_t)si + 1 >= log->nsegs)
			break;
		struct rmq_segment *nx = log->segs[si + 1];
		if (nx->base_offset != next || nx->fenced || VISIBLE(nx) == 0)
			break;
		seg = nx;
		si++;
		pos = 0;
		v_pos = UINT64_MAX;
	}
	r->next_offset = next;
	return 0;
#undef VISIBLE
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

void rmq_log_read_lend(struct rmq_log_read *r)
{
	for (unsigned i = 0; i < r->nslices; i++)
		r->slices[i].seg->lent = true;
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
			log_free_segment(s); /* unlinked when dropped */
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

bool rmq_log_idle(const struct rmq_log *log)
{
	return log->aq_head == NULL && log->wq_len == 0 && !log->sync.inflight &&
	       !log->zero.inflight && !log->falloc.inflight && !log_dirsync_inflight(log) &&
	       log->fill == log->pend && log->roll.stage == ROLL_IDLE && !log_make_inflight(log);
}

void rmq_log_attach(struct rmq_log *log, struct rmq_io *io)
{
	RMQ_ASSERT(log->io == NULL);
	log->io = io;
	if (log->unmade)
		(void)log_make(log); /* a new log's files, in the background */
}

bool rmq_log_quiet(const struct rmq_log *log)
{
	return rmq_log_idle(log) && !log->wb.inflight && log->unlinks == 0 && !log->roll.inflight;
}

void rmq_log_detach(struct rmq_log *log)
{
	/* The ring goes back to the shard's pool, which only its shard
	 * touches (quiet: no write holds it). */
	log_buffers_close(log);
}

int rmq_log_close(struct rmq_log *log)
{
	int rc;

	log_make_unqueue(log); /* its turn to make its files never comes */

	/* Drain: everything appended is written and acknowledged (or the log
	 * fails and the appends complete with the error).  Writes parked on a
	 * full disk get one more try. */
	bool retried = false;
	while (!log->failed && !rmq_log_idle(log)) {
		if (log->parked > 0 && log->wq_len == log->parked) {
			if (retried) {
				log_fail(log, -ENOSPC, "writing at close (the disk is full)");
				break;
			}
			log_full_retry(log, true);
			retried = true;
		}
		rmq_log_flush(log);
		if (log->cfg.fsync != RMQ_FSYNC_ALWAYS)
			rmq_log_sync_tick(log);
		rc = rmq_io_wait(log->io, 100ULL * 1000 * 1000);
		if (rc < 0) {
			log_fail(log, rc, "waiting for I/O at close");
			break;
		}
	}
	for (;;) {
		log_retire_writes(log); /* those that never went out (submit_wop) */
		if (!log->zero.inflight && !log->sync.inflight && !log->wb.inflight &&
		    !log->falloc.inflight && !log_dirsync_inflight(log) && log->wq_len == 0 &&
		    log->unlinks == 0 && !log->roll.inflight && !log_make_inflight(log))
			break;
		/* A failed log still has to let the kernel finish with its
		 * buffers before they are freed. */
		if (rmq_io_wait(log->io, 100ULL * 1000 * 1000) < 0)
			break;
	}
	log_make_unqueue(log); /* queued again while draining */
	rc = log->failed;
	/* Only what was written and not synced yet (fsync=never/interval):
	 * an fdatasync with nothing to write still flushes the disk's cache,
	 * once per partition when a node with many stops. */
	if (!rc && log->nsegs > 0 &&
	    (log->synced < log->written || log_active(log)->unsynced) &&
	    rmq_sys_fdatasync(log_active(log)->fd) < 0)
		rc = -errno;
	if (log->zero.fd >= 0)
		close(log->zero.fd);
	log_dio_close(log);
	for (size_t i = 0; i < log->nsegs; i++) {
		struct rmq_segment *s = log->segs[i];
		/* A reader still holding it (a fetch answer being sent by
		 * reference) frees it when done; never unmap under it. */
		if (atomic_fetch_or_explicit(&s->pins, RMQ_SEG_DOOMED, memory_order_acq_rel) == 0)
			log_free_segment(s);
	}
	free(log->segs);
	free(log->wops);
	free(log->epochs);
	rmq_tail_free(log->tail);
	if (log->wq_len == 0)
		log_buffers_close(log);
	else /* the kernel may still read them: leak rather than reuse */
		rmq_error("log %s: closed with writes in flight; their buffers are not reused",
			  log->dir);
	if (log->dir_fd >= 0)
		close(log->dir_fd);
	if (log->parent_fd >= 0)
		close(log->parent_fd);
	free(log);
	return rc;
}

int rmq_log_keep_tail(struct rmq_log *log, size_t bytes)
{
	rmq_tail_free(log->tail);
	log->tail = NULL;
	if (bytes && !(log->tail = rmq_tail_new(bytes)))
		return -ENOMEM;
	return 0;
}

struct rmq_tail *rmq_log_tail(const struct rmq_log *log)
{
	return log->tail;
}

uint64_t rmq_log_high_watermark(const struct rmq_log *log)
{
	return log->hw;
}

const char *rmq_log_dir(const struct rmq_log *log)
{
	return log->dir;
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

size_t rmq_log_segment_count(const struct rmq_log *log)
{
	return log->nsegs;
}

void rmq_log_set_hw_listener(struct rmq_log *log, rmq_log_hw_cb cb, void *arg)
{
	log->hw_cb = cb;
	log->hw_arg = arg;
}

bool rmq_log_disk_full(const struct rmq_log *log)
{
	return log->full != 0;
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
	return log_active(log)->base_offset;
}
