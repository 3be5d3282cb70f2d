/* SPDX-License-Identifier: Apache-2.0 */
/*
 * xshard.h - the single-producer single-consumer queue between two shards.
 *
 * One queue per ordered pair (from, to).  Slots hold pointers to
 * struct rmq_xmsg owned by the sender.
 *
 *   producer (shard `from`)               consumer (shard `to`)
 *   t = tail (own, relaxed)               h = head (own, relaxed)
 *   h = load_acquire(head)   ──pairs──►   store_release(head, h+1)  [B]
 *   full if t - h == cap                  t = load_acquire(tail)    [A']
 *   slot[t & mask] = m                    m = slot[h & mask]
 *   store_release(tail, t+1)  [A] ─pairs─► (A' sees the slot written)
 *
 * [A]/[A'] make the slot's pointer (and everything the sender wrote into
 * the message before posting) visible to the consumer; [B] and the
 * producer's acquire of head keep a slot from being reused before the
 * consumer has read it.  Head and tail live on separate cache lines.
 */
#ifndef RMQ_CORE_XSHARD_H
#define RMQ_CORE_XSHARD_H

#include <stdalign.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdint.h>

struct rmq_xmsg;

struct rmq_xq {
	alignas(64) _Atomic uint32_t head; /* written by the consumer only */
	alignas(64) _Atomic uint32_t tail; /* written by the producer only */
	alignas(64) uint32_t mask;
	struct rmq_xmsg **slots;
};

/* Producer side.  Returns false when full. */
static inline bool rmq_xq_push(struct rmq_xq *q, struct rmq_xmsg *m)
{
	uint32_t t = atomic_load_explicit(&q->tail, memory_order_relaxed);
	uint32_t h = atomic_load_explicit(&q->head, memory_order_acquire); /* pairs with [B] */
	if (t - h > q->mask)
		return false;
	q->slots[t & q->mask] = m;
	atomic_store_explicit(&q->tail, t + 1, memory_order_release); /* [A] */
	return true;
}

/* Consumer side.  Returns NULL when empty. */
static inline struct rmq_xmsg *rmq_xq_pop(struct rmq_xq *q)
{
	uint32_t h = atomic_load_explicit(&q->head, memory_order_relaxed);
	uint32_t t = atomic_load_explicit(&q->tail, memory_order_acquire); /* [A'] pairs with [A] */
	if (h == t)
		return NULL;
	struct rmq_xmsg *m = q->slots[h & q->mask];
	atomic_store_explicit(&q->head, h + 1, memory_order_release); /* [B] */
	return m;
}

#endif /* RMQ_CORE_XSHARD_H */
