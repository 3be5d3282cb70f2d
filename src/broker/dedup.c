/* SPDX-License-Identifier: Apache-2.0 */
/* dedup.c - idempotent producers and idempotency keys (see dedup.h). */
#include "broker/dedup.h"

#include <stdlib.h>
#include <string.h>

struct seq_entry {
	int32_t seq;
	uint32_t count;
	bool acked;
	struct rmq_dedup_result res;
};

struct producer {
	int64_t pid;              /* 0 = free slot */
	int32_t epoch;
	int64_t next_seq;         /* expected base sequence of the next batch; -1: any */
	uint64_t used;            /* LRU clock */
	uint8_t n, head;          /* recent[] ring */
	struct seq_entry recent[RMQ_DEDUP_RECENT];
};

struct key_entry {
	uint64_t hash;            /* 0 = free */
	uint32_t len;
	uint64_t expires_ms;
	bool acked;
	struct rmq_dedup_result res;
};

struct rmq_dedup {
	uint64_t clock;
	struct producer producers[RMQ_DEDUP_PRODUCERS];
	uint32_t next_key;        /* ring position */
	struct key_entry keys[RMQ_DEDUP_KEYS];
};

struct rmq_dedup *rmq_dedup_new(void)
{
	return calloc(1, sizeof(struct rmq_dedup));
}

void rmq_dedup_free(struct rmq_dedup *d)
{
	free(d);
}

/* The slot of pid, or the slot to take for it (a free one or the least
 * recently used).  O(RMQ_DEDUP_PRODUCERS) worst case, short in practice. */
static struct producer *find_producer(struct rmq_dedup *d, int64_t pid, bool *found)
{
	uint32_t start = (uint32_t)((uint64_t)pid * 0x9E3779B97F4A7C15ULL >> 56) % RMQ_DEDUP_PRODUCERS;
	struct producer *lru = NULL;
	for (uint32_t i = 0; i < RMQ_DEDUP_PRODUCERS; i++) {
		struct producer *p = &d->producers[(start + i) % RMQ_DEDUP_PRODUCERS];
		if (p->pid == pid) {
			*found = true;
			return p;
		}
		if (p->pid == 0) {
			*found = false;
			return p;
		}
		if (!lru || p->used < lru->used)
			lru = p;
	}
	*found = false;
	return lru;
}

static void reset_producer(struct producer *p, int64_t pid, int32_t epoch, int64_t next)
{
	memset(p, 0, sizeof(*p));
	p->pid = pid;
	p->epoch = epoch;
	p->next_seq = next;
}

static struct seq_entry *push_recent(struct producer *p)
{
	struct seq_entry *e = &p->recent[p->head];
	p->head = (uint8_t)((p->head + 1) % RMQ_DEDUP_RECENT);
	if (p->n < RMQ_DEDUP_RECENT)
		p->n++;
	memset(e, 0, sizeof(*e));
	return e;
}

static int64_t after(int32_t seq, uint32_t count)
{
	/* Sequences wrap from INT32_MAX to 0 (producer.proto). */
	return ((int64_t)seq + count) % ((int64_t)INT32_MAX + 1);
}

enum rmq_dedup_verdict rmq_dedup_seq(struct rmq_dedup *d, int64_t pid, int32_t epoch,
				     int32_t seq, uint32_t count, struct rmq_dedup_result *res,
				     struct rmq_dedup_ticket *t)
{
	bool found;
	struct producer *p = find_producer(d, pid, &found);

	t->kind = 0;
	if (found && epoch < p->epoch)
		return RMQ_DEDUP_FENCED;
	if (!found || epoch > p->epoch)
		reset_producer(p, pid, epoch, seq);
	p->used = ++d->clock;
	for (uint8_t i = 0; i < p->n; i++) {
		struct seq_entry *e = &p->recent[i];
		if (e->seq == seq && e->count == count) {
			if (!e->acked)
				return RMQ_DEDUP_IN_FLIGHT;
			*res = e->res;
			return RMQ_DEDUP_DUPLICATE;
		}
	}
	if (p->next_seq >= 0 && seq != p->next_seq)
		return RMQ_DEDUP_OUT_OF_ORDER;
	struct seq_entry *e = push_recent(p);
	e->seq = seq;
	e->count = count;
	p->next_seq = after(seq, count);
	t->kind = 1;
	t->id = (uint64_t)pid;
	t->slot = (uint32_t)(p - d->producers);
	t->index = (uint32_t)(e - p->recent);
	return RMQ_DEDUP_NEW;
}

static uint64_t hash_key(const void *key, size_t len)
{
	const unsigned char *k = key;
	uint64_t h = 1469598103934665603ULL;
	for (size_t i = 0; i < len; i++)
		h = (h ^ k[i]) * 1099511628211ULL;
	return h ? h : 1;
}

enum rmq_dedup_verdict rmq_dedup_key(struct rmq_dedup *d, const void *key, size_t len,
				     uint64_t now_ms, struct rmq_dedup_result *res,
				     struct rmq_dedup_ticket *t)
{
	uint64_t h = hash_key(key, len);

	t->kind = 0;
	/* O(RMQ_DEDUP_KEYS), only for requests that carry a key. */
	for (uint32_t i = 0; i < RMQ_DEDUP_KEYS; i++) {
		struct key_entry *e = &d->keys[i];
		if (e->hash != h || e->len != len || e->expires_ms < now_ms)
			continue;
		if (!e->acked)
			return RMQ_DEDUP_IN_FLIGHT;
		*res = e->res;
		return RMQ_DEDUP_DUPLICATE;
	}
	struct key_entry *e = &d->keys[d->next_key];
	t->kind = 2;
	t->id = h;
	t->index = d->next_key;
	d->next_key = (d->next_key + 1) % RMQ_DEDUP_KEYS;
	memset(e, 0, sizeof(*e));
	e->hash = h;
	e->len = (uint32_t)len;
	e->expires_ms = now_ms + RMQ_DEDUP_KEY_TTL_MS;
	return RMQ_DEDUP_NEW;
}

void rmq_dedup_done(struct rmq_dedup *d, const struct rmq_dedup_ticket *t, bool ok,
		    const struct rmq_dedup_result *res)
{
	if (t->kind == 1) {
		struct producer *p = &d->producers[t->slot];
		struct seq_entry *e = &p->recent[t->index];
		if ((uint64_t)p->pid != t->id)
			return; /* evicted meanwhile */
		if (ok) {
			e->acked = true;
			e->res = *res;
		} else {
			/* Forget it: the producer's retry must append.  The next
			 * expected sequence goes back to this batch's. */
			p->next_seq = e->seq;
			e->seq = -1;
			e->count = 0;
		}
	} else if (t->kind == 2) {
		struct key_entry *e = &d->keys[t->index];
		if (e->hash != t->id)
			return; /* overwritten meanwhile */
		if (ok) {
			e->acked = true;
			e->res = *res;
		} else {
			e->hash = 0;
		}
	}
}

void rmq_dedup_replay(struct rmq_dedup *d, int64_t pid, int32_t epoch, int32_t seq,
		      uint32_t count, uint64_t base_offset)
{
	bool found;
	struct producer *p = find_producer(d, pid, &found);
	if (found && epoch < p->epoch)
		return;
	if (!found || epoch > p->epoch)
		reset_producer(p, pid, epoch, seq);
	p->used = ++d->clock;
	struct seq_entry *e = push_recent(p);
	e->seq = seq;
	e->count = count;
	e->acked = true;
	e->res.base_offset = base_offset;
	e->res.count = count;
	e->res.first_ts_ms = -1;
	p->next_seq = after(seq, count);
}

void rmq_dedup_truncate(struct rmq_dedup *d, uint64_t offset)
{
	for (uint32_t i = 0; i < RMQ_DEDUP_PRODUCERS; i++) {
		struct producer *p = &d->producers[i];
		if (p->pid == 0)
			continue;
		/* recent[] is in offset order from the oldest: drop its newest
		 * entries while they are at or above the cut, or failed.  A
		 * pending one stays for its ticket (a deposed leader's are
		 * failed before its log is cut). */
		while (p->n > 0) {
			uint8_t last = (uint8_t)((p->head + RMQ_DEDUP_RECENT - 1) % RMQ_DEDUP_RECENT);
			struct seq_entry *e = &p->recent[last];
			if (!e->acked && e->seq >= 0)
				break;
			if (e->acked && e->res.base_offset < offset) {
				p->next_seq = after(e->seq, e->count);
				break;
			}
			p->head = last;
			p->n--;
		}
		if (p->n == 0)
			p->next_seq = -1;
	}
}
