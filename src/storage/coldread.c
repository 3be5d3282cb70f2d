/* SPDX-License-Identifier: Apache-2.0 */
/*
 * coldread.c - reading log data that is not in memory (see coldread.h).
 */
#include "storage/coldread.h"

#include "core/assert.h"
#include "core/error.h"
#include "core/log.h"
#include "core/util.h"
#include "storage/batch.h"

#include <errno.h>
#include <fcntl.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <unistd.h>

#define ALIGN 4096u /* O_DIRECT: positions, lengths and buffers */

struct rmq_cold_ahead {
	struct rmq_cold_read cr;
	struct rmq_cold_read *waiter; /* a read waiting for this one, or NULL */
	size_t bytes;                 /* counted in the budget's ahead_held */
	bool done;
	bool dropped;                 /* in flight when dropped: frees itself */
};

bool rmq_cold_resident(const uint8_t *data, uint32_t len)
{
	static __thread unsigned char vec[4096];
	static __thread size_t page;
	if (len == 0)
		return true;
	if (!page)
		page = (size_t)sysconf(_SC_PAGESIZE);
	uintptr_t a = (uintptr_t)data & ~(uintptr_t)(page - 1);
	uintptr_t end = (uintptr_t)data + len;
	while (a < end) {
		size_t pages = (end - a + page - 1) / page;
		if (pages > sizeof(vec))
			pages = sizeof(vec);
		if (mincore((void *)a, pages * page, vec) < 0)
			return false; /* cannot tell: take the safe path */
		for (size_t i = 0; i < pages; i++)
			if (!(vec[i] & 1))
				return false;
		a += pages * page;
	}
	return true;
}

static uint64_t align_down(uint64_t x)
{
	return x & ~(uint64_t)(ALIGN - 1);
}

static uint64_t align_up(uint64_t x)
{
	return align_down(x + ALIGN - 1);
}

/* ---- the READs ------------------------------------------------------------- */

static void chunk_done(struct rmq_io_op *op, int res, unsigned flags);
static void read_finish(struct rmq_cold_read *cr);

/* Moves cr->ri to the next cold slice at or after i and cr->rnext to its
 * first block; cr->ri == nslices when there is none. */
static void next_slice(struct rmq_cold_read *cr, unsigned i)
{
	while (i < cr->lr.nslices && !(cr->cold & (1u << i)))
		i++;
	cr->ri = i;
	if (i < cr->lr.nslices)
		cr->rnext = align_down(cr->lr.slices[i].pos);
}

/* Submits (or resubmits the rest of) chunk c.  Returns 0 or -EBUSY. */
static int chunk_submit(struct rmq_cold_chunk *c)
{
	struct io_uring_sqe *sqe = rmq_io_sqe(c->cr->cs->io, &c->op);
	if (!sqe)
		return -EBUSY;
	io_uring_prep_read(sqe, c->fd, c->buf + c->done, c->len - c->done, c->pos + c->done);
	return 0;
}

/* Starts READs until RMQ_COLD_DEPTH are out or every cold block is asked
 * for.  Returns 0, or -EBUSY when the ring took none and none is out. */
static int issue(struct rmq_cold_read *cr)
{
	for (unsigned k = 0; k < RMQ_COLD_DEPTH && cr->ri < cr->lr.nslices; k++) {
		struct rmq_cold_chunk *c = &cr->chunk[k];
		if (c->len)
			continue;
		const struct rmq_log_slice *sl = &cr->lr.slices[cr->ri];
		uint64_t base = align_down(sl->pos), data_end = sl->pos + sl->len;
		uint64_t end = align_up(data_end);
		c->cr = cr;
		c->op.cb = chunk_done;
		c->fd = rmq_log_slice_direct_fd(sl);
		c->pos = cr->rnext;
		c->len = (uint32_t)(end - c->pos < RMQ_COLD_CHUNK ? end - c->pos : RMQ_COLD_CHUNK);
		c->need = (uint32_t)((c->pos + c->len < data_end ? c->pos + c->len : data_end) - c->pos);
		c->done = 0;
		c->buf = cr->data + cr->at[cr->ri] - (sl->pos - base) + (c->pos - base);
		if (chunk_submit(c) < 0) {
			c->len = 0;
			return cr->inflight ? 0 : -EBUSY;
		}
		cr->inflight++;
		cr->rnext += c->len;
		if (cr->rnext >= end)
			next_slice(cr, cr->ri + 1);
	}
	return 0;
}

static void chunk_done(struct rmq_io_op *op, int res, unsigned flags)
{
	struct rmq_cold_chunk *c = RMQ_CONTAINER_OF(op, struct rmq_cold_chunk, op);
	struct rmq_cold_read *cr = c->cr;
	(void)flags;
	if (res == -EAGAIN || res == -EINTR)
		res = 0; /* requeue the same range */
	else if (res == 0 && c->done < c->need)
		res = -EIO; /* end of file inside data the log says is there */
	else if (res == 0)
		c->done = c->len; /* end of file in the padding after the data */
	if (res > 0)
		c->done += (uint32_t)res;
	if (res >= 0 && c->done < c->len && !cr->rerr && chunk_submit(c) == 0)
		return;
	if (res < 0 && !cr->rerr)
		cr->rerr = res;
	if (res >= 0 && c->done < c->len && !cr->rerr)
		cr->rerr = -EBUSY; /* the ring had no room for the rest */
	c->len = 0;
	cr->inflight--;
	if (!cr->rerr) {
		int rc = issue(cr);
		if (rc < 0)
			cr->rerr = rc;
	}
	if (cr->inflight == 0)
		read_finish(cr);
}

/* Cuts the result at byte q of slice i (the batches before it stay). */
static void cut_at(struct rmq_cold_read *cr, unsigned i, size_t q)
{
	cr->iov[i].iov_len = q;
	cr->len = 0;
	for (unsigned k = 0; k < cr->niov; k++) {
		if (k > i)
			cr->iov[k].iov_len = 0;
		cr->len += cr->iov[k].iov_len;
	}
}

/*
 * Checks the CRC-32C of every batch the READs brought in.  On the first
 * bad one: cuts the result before it (an error when nothing precedes it)
 * and logs it.  O(bytes read): cold data costs a disk read anyway.
 */
static void verify(struct rmq_cold_read *cr)
{
	for (unsigned i = 0; i < cr->lr.nslices; i++) {
		if (!(cr->cold & (1u << i)))
			continue;
		const uint8_t *b = cr->data + cr->at[i];
		size_t q = 0, end = cr->lr.slices[i].len;
		while (q < end) {
			struct rmq_batch_view v;
			int n = rmq_batch_parse_header(b + q, end - q, &v);
			bool parsed = n > 0;
			if (parsed && rmq_batch_check_crc(b + q, &v) == 0) {
				q += (size_t)n;
				continue;
			}
			uint64_t at = parsed ? v.hdr.base_offset : cr->first_offset;
			rmq_error("log %s: %s at offset %lu (segment position %lu) on a cold read: "
				  "not served",
				  rmq_log_dir(cr->cs->log),
				  parsed ? "batch fails its CRC-32C" : "batch does not parse",
				  (unsigned long)at, (unsigned long)(cr->lr.slices[i].pos + q));
			/* Without O_DIRECT the READ left the bad bytes in the
			 * page cache, where the next fetch would find them
			 * resident and send them unchecked: evict the slice (our
			 * own mapping of it first, or fadvise cannot), so every
			 * read of it is cold and checked again. */
			const struct rmq_log_slice *sl = &cr->lr.slices[i];
			uintptr_t pg = (uintptr_t)sysconf(_SC_PAGESIZE);
			uintptr_t a = (uintptr_t)sl->data & ~(pg - 1);
			(void)madvise((void *)a, (uintptr_t)sl->data + sl->len - a, MADV_DONTNEED);
			(void)posix_fadvise(sl->fd, (off_t)sl->pos, sl->len, POSIX_FADV_DONTNEED);
			cut_at(cr, i, q);
			cr->cut = true;
			cr->bad_offset = at;
			if (cr->len > 0 && parsed)
				cr->next_offset = at; /* the next fetch gets the error */
			else
				cr->err = parsed ? RMQ_ECRC : RMQ_ECORRUPT;
			return;
		}
	}
}

/* Allocates the buffer, copies the resident slices and starts the READs
 * of the cold ones.  Returns true when READs are out, false when the
 * result is complete (nothing cold) or failed (cr->err). */
static bool read_submit(struct rmq_cold_read *cr)
{
	struct rmq_log_read *r = &cr->lr;
	/* A resident slice's bytes as they are, a cold one's whole blocks
	 * (aligned in the buffer as on the disk). */
	size_t size = 0;
	cr->cold = 0;
	for (unsigned i = 0; i < r->nslices; i++) {
		const struct rmq_log_slice *sl = &r->slices[i];
		if (rmq_cold_resident(sl->data, sl->len)) {
			cr->at[i] = size;
			size += sl->len;
		} else {
			cr->cold |= 1u << i;
			size = align_up(size);
			cr->at[i] = size + (sl->pos - align_down(sl->pos));
			size += align_up(sl->pos + sl->len) - align_down(sl->pos);
		}
	}
	if (posix_memalign((void **)&cr->data, ALIGN, size ? size : ALIGN) != 0) {
		cr->data = NULL;
		cr->err = -ENOMEM;
		return false;
	}
	for (unsigned i = 0; i < r->nslices; i++) {
		if (!(cr->cold & (1u << i)))
			memcpy(cr->data + cr->at[i], r->slices[i].data, r->slices[i].len);
		cr->iov[i] = (struct iovec){cr->data + cr->at[i], r->slices[i].len};
	}
	cr->niov = r->nslices;
	cr->len = r->bytes;
	if (!cr->cold)
		return false;
	cr->inflight = 0;
	cr->rerr = 0;
	for (unsigned k = 0; k < RMQ_COLD_DEPTH; k++)
		cr->chunk[k].len = 0;
	next_slice(cr, 0);
	cr->err = issue(cr);
	return cr->err == 0;
}

/* The result is final: drop the buffer of a failed read, unpin. */
static void settle(struct rmq_cold_read *cr)
{
	if (cr->err) {
		free(cr->data);
		cr->data = NULL;
		cr->len = 0;
		cr->niov = 0;
		cr->next_offset = cr->first_offset;
	}
	rmq_log_read_done(cr->cs->log, &cr->lr);
}

/* ---- read-ahead ------------------------------------------------------------ */

static void ahead_done(struct rmq_cold_read *acr);

static void ahead_free(struct rmq_cold_ahead *a)
{
	a->cr.cs->budget->ahead_held -= a->bytes;
	free(a->cr.data);
	free(a);
}

static void ahead_drop(struct rmq_cold_state *cs)
{
	struct rmq_cold_ahead *a = cs->ahead;
	if (!a)
		return;
	cs->ahead = NULL;
	RMQ_ASSERT(!a->waiter);
	if (a->done)
		ahead_free(a);
	else
		a->dropped = true;
}

/* After a read that ended at cr->next_offset: read the next range ahead
 * when this one continued the previous. */
static void ahead_start(struct rmq_cold_read *cr)
{
	struct rmq_cold_state *cs = cr->cs;
	bool in_order = cs->next == cr->first_offset;
	cs->next = cr->next_offset;
	if (!in_order || cr->err || cr->len == 0 || !cr->ahead_bytes || cs->ahead ||
	    cs->closed)
		return;
	size_t want = cr->ahead_bytes < RMQ_COLD_AHEAD_MAX ? cr->ahead_bytes : RMQ_COLD_AHEAD_MAX;
	if (cs->budget->ahead_held + want > cs->budget->ahead_max)
		return;
	struct rmq_cold_ahead *a = calloc(1, sizeof(*a));
	if (!a)
		return;
	struct rmq_cold_read *acr = &a->cr;
	if (rmq_log_read(cs->log, cr->next_offset, want, &acr->lr) < 0 || acr->lr.nslices == 0) {
		free(a); /* nothing pinned */
		return;
	}
	bool cold = false;
	for (unsigned i = 0; i < acr->lr.nslices && !cold; i++)
		cold = !rmq_cold_resident(acr->lr.slices[i].data, acr->lr.slices[i].len);
	if (!cold) { /* the next fetch sends from memory anyway */
		rmq_log_read_done(cs->log, &acr->lr);
		free(a);
		return;
	}
	acr->cs = cs;
	acr->cb = ahead_done;
	acr->first_offset = acr->lr.first_offset;
	acr->next_offset = acr->lr.next_offset;
	a->bytes = acr->lr.bytes;
	cs->budget->ahead_held += a->bytes;
	cs->ahead = a;
	if (read_submit(acr)) {
		cs->reads++;
		return;
	}
	settle(acr);
	a->done = true;
	if (acr->err)
		ahead_drop(cs);
}

/* Does the read-ahead start where want does?  Both are whole batches from
 * the same offset of the log, so the shorter is a prefix of the longer
 * (with the same segment boundaries). */
static bool ahead_covers(const struct rmq_cold_ahead *a, const struct rmq_cold_read *want)
{
	return want->lr.nslices > 0 && a->cr.first_offset == want->lr.first_offset;
}

/* Hands a's finished (good) result to want: the shorter of the two ranges. */
static void ahead_take(struct rmq_cold_ahead *a, struct rmq_cold_read *want)
{
	struct rmq_cold_read *acr = &a->cr;
	const struct rmq_log_read *y = &want->lr;
	if (acr->len > y->bytes) { /* want asked for less: its own end */
		size_t left = y->bytes;
		for (unsigned i = 0; i < acr->niov; i++) {
			size_t n = acr->iov[i].iov_len < left ? acr->iov[i].iov_len : left;
			acr->iov[i].iov_len = n;
			left -= n;
		}
		acr->len = y->bytes;
		acr->next_offset = y->next_offset;
	}
	want->data = acr->data;
	acr->data = NULL;
	memcpy(want->iov, acr->iov, sizeof(want->iov));
	want->niov = acr->niov;
	want->len = acr->len;
	want->next_offset = acr->next_offset;
	want->err = 0;
	want->cs->budget->ahead_bytes += want->len;
	rmq_log_read_done(want->cs->log, &want->lr);
}

static void ahead_done(struct rmq_cold_read *acr)
{
	struct rmq_cold_ahead *a = RMQ_CONTAINER_OF(acr, struct rmq_cold_ahead, cr);
	struct rmq_cold_state *cs = acr->cs;
	a->done = true;
	if (a->dropped) {
		ahead_free(a);
		return;
	}
	struct rmq_cold_read *w = a->waiter;
	if (!w) {
		if (acr->err || acr->cut)
			ahead_drop(cs); /* the fetch that reaches it reads and reports */
		return;
	}
	a->waiter = NULL;
	cs->ahead = NULL;
	cs->reads--; /* the waiter's */
	if (acr->err || acr->cut) {
		/* Bad data: the waiter reads for itself, so the error is its
		 * own and named for its offset. */
		ahead_free(a);
		if (read_submit(w)) {
			cs->reads++;
			return;
		}
		settle(w);
	} else {
		ahead_take(a, w);
		ahead_free(a);
	}
	ahead_start(w);
	w->cb(w);
}

/* ---- the reads ---------------------------------------------------------------- */

/* The last READ of cr is in (or failed). */
static void read_finish(struct rmq_cold_read *cr)
{
	if (cr->rerr) {
		cr->err = cr->rerr;
		rmq_error("log %s: reading offset %lu from disk: %s", rmq_log_dir(cr->cs->log),
			  (unsigned long)cr->first_offset, rmq_strerror(cr->rerr));
	} else {
		for (unsigned i = 0; i < cr->lr.nslices; i++)
			if (cr->cold & (1u << i))
				cr->cs->budget->disk_bytes += cr->lr.slices[i].len;
		verify(cr);
	}
	settle(cr);
	RMQ_ASSERT(cr->cs->reads > 0);
	cr->cs->reads--;
	if (cr->cb != ahead_done)
		ahead_start(cr);
	cr->cb(cr);
}

bool rmq_cold_read_start(struct rmq_cold_read *cr)
{
	struct rmq_cold_state *cs = cr->cs;
	cr->data = NULL;
	cr->niov = 0;
	cr->len = 0;
	cr->err = 0;
	cr->cut = false;
	cr->bad_offset = 0;
	cr->first_offset = cr->lr.first_offset;
	cr->next_offset = cr->lr.next_offset;
	/* A read-ahead some read already waits for stays; so does its one
	 * waiter slot. */
	struct rmq_cold_ahead *a = cs->ahead;
	if (a && !a->waiter && ahead_covers(a, cr)) {
		if (!a->done) {
			a->waiter = cr;
			cs->reads++;
			return true;
		}
		cs->ahead = NULL;
		ahead_take(a, cr);
		ahead_free(a);
		ahead_start(cr);
		return false;
	}
	if (a && !a->waiter)
		ahead_drop(cs);
	if (read_submit(cr)) {
		cs->reads++;
		return true;
	}
	settle(cr); /* nothing was cold (--fetch-copy), or it failed */
	return false;
}

void rmq_cold_close(struct rmq_cold_state *cs)
{
	cs->closed = true;
	if (cs->ahead && !cs->ahead->waiter)
		ahead_drop(cs); /* else it completes into its waiter */
}

void rmq_cold_init(struct rmq_cold_state *cs, struct rmq_log *log, struct rmq_io *io,
		   struct rmq_cold_budget *budget)
{
	*cs = (struct rmq_cold_state){.log = log, .io = io, .budget = budget};
}
