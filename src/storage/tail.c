/* SPDX-License-Identifier: Apache-2.0 */
/* tail.c - the newest entries of a log, in memory (tail.h). */
#include "storage/tail.h"

#include <stdbool.h>
#include <stdlib.h>
#include <string.h>

#define TAIL_MIN 4096u
#define ENTRY_BYTES 256u /* the smallest mean entry the index keeps up with */

struct tail_ent {
	uint64_t base, next; /* its offsets */
	uint64_t pos;        /* where it starts in the ring's byte stream */
	size_t len;
};

struct rmq_tail {
	uint8_t *buf;
	size_t cap;
	uint64_t start, end;       /* the byte stream held: [start, end) */
	struct tail_ent *ents;     /* ents[(head + i) % ecap], i < n: oldest first */
	uint32_t ecap, head, n;
	struct rmq_tail_hold *holds; /* bytes sent by reference, not yet sent */
	bool freed;                /* rmq_tail_free ran: the last release frees */
};

struct rmq_tail *rmq_tail_new(size_t bytes)
{
	if (bytes < TAIL_MIN)
		bytes = TAIL_MIN;
	struct rmq_tail *t = calloc(1, sizeof(*t));
	if (!t)
		return NULL;
	t->cap = bytes;
	t->ecap = (uint32_t)(bytes / ENTRY_BYTES);
	t->buf = malloc(bytes);
	t->ents = calloc(t->ecap, sizeof(*t->ents));
	if (!t->buf || !t->ents) {
		rmq_tail_free(t);
		return NULL;
	}
	return t;
}

void rmq_tail_free(struct rmq_tail *t)
{
	if (!t)
		return;
	if (t->holds) {
		t->freed = true;
		return;
	}
	free(t->buf);
	free(t->ents);
	free(t);
}

void rmq_tail_clear(struct rmq_tail *t)
{
	t->n = 0;
	t->head = 0;
	t->start = t->end;
}

static struct tail_ent *ent(const struct rmq_tail *t, uint32_t i)
{
	return &t->ents[(t->head + i) % t->ecap];
}

static void drop_oldest(struct rmq_tail *t)
{
	struct tail_ent *e = ent(t, 0);
	t->start = e->pos + e->len;
	t->head = (t->head + 1) % t->ecap;
	t->n--;
}

/* The ring's byte stream position pos, as an index into buf, and how many
 * bytes of len fit before the ring wraps. */
static size_t at_pos(const struct rmq_tail *t, uint64_t pos, size_t len, size_t *first)
{
	size_t at = (size_t)(pos % t->cap);
	*first = len < t->cap - at ? len : t->cap - at;
	return at;
}

void rmq_tail_put(struct rmq_tail *t, const void *entry, size_t len, uint64_t base,
		  uint64_t next)
{
	if (t->n > 0 && ent(t, t->n - 1)->next != base)
		rmq_tail_clear(t);
	if (len > t->cap) {
		rmq_tail_clear(t);
		return;
	}
	/* Writing it overwrites the bytes before end + len - cap. */
	for (const struct rmq_tail_hold *h = t->holds; h; h = h->next) {
		if (h->pos + t->cap < t->end + len) {
			rmq_tail_clear(t); /* held: not overwritten, and a gap */
			return;
		}
	}
	while (t->n > 0 && (t->end + len - t->start > t->cap || t->n == t->ecap))
		drop_oldest(t);
	if (t->n == 0)
		t->start = t->end;
	size_t first, at = at_pos(t, t->end, len, &first);
	memcpy(t->buf + at, entry, first);
	memcpy(t->buf, (const uint8_t *)entry + first, len - first);
	*ent(t, t->n) = (struct tail_ent){base, next, t->end, len};
	t->n++;
	t->end += len;
}

/* The index of the entry starting at offset, or -1. */
static int64_t find(const struct rmq_tail *t, uint64_t offset)
{
	uint32_t lo = 0, hi = t->n;
	while (lo < hi) {
		uint32_t mid = lo + (hi - lo) / 2;
		if (ent(t, mid)->base < offset)
			lo = mid + 1;
		else
			hi = mid;
	}
	return lo < t->n && ent(t, lo)->base == offset ? (int64_t)lo : -1;
}

int rmq_tail_span(const struct rmq_tail *t, uint64_t offset, uint64_t limit, size_t max_bytes,
		  uint32_t max_entries, size_t *len, uint64_t *next)
{
	int64_t i = find(t, offset);
	if (i < 0 || ent(t, (uint32_t)i)->next > limit)
		return -1;
	size_t total = 0;
	uint64_t at = offset;
	for (uint32_t k = (uint32_t)i; k < t->n; k++) {
		const struct tail_ent *e = ent(t, k);
		if (e->next > limit ||
		    (total > 0 && (total + e->len > max_bytes || k - (uint32_t)i >= max_entries)))
			break;
		total += e->len;
		at = e->next;
	}
	*len = total;
	*next = at;
	return 0;
}

void rmq_tail_hold(struct rmq_tail *t, uint64_t offset, size_t len, struct iovec iov[2],
		   struct rmq_tail_hold *h)
{
	int64_t i = find(t, offset);
	uint64_t pos = i < 0 ? t->end : ent(t, (uint32_t)i)->pos;
	size_t first, at = at_pos(t, pos, len, &first);
	iov[0] = (struct iovec){t->buf + at, first};
	iov[1] = (struct iovec){t->buf, len - first};
	*h = (struct rmq_tail_hold){.t = t, .pos = pos, .next = t->holds};
	if (t->holds)
		t->holds->prev = h;
	t->holds = h;
}

void rmq_tail_release(struct rmq_tail_hold *h)
{
	struct rmq_tail *t = h->t;
	if (h->prev)
		h->prev->next = h->next;
	else
		t->holds = h->next;
	if (h->next)
		h->next->prev = h->prev;
	h->t = NULL;
	if (t->freed && !t->holds) {
		t->freed = false;
		rmq_tail_free(t);
	}
}
