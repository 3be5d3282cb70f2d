/* SPDX-License-Identifier: Apache-2.0 */
/*
 * pace.h - open-loop pacing without coordinated omission.
 *
 * With --rate R msgs/s, B records per batch and S senders (connections
 * that produce), each sender owes one batch every
 *
 *     period = B * S / R  seconds           (kept as the exact ratio
 *                                             num/den = B*S*1e9 / R ns)
 *
 * and sender i's k-th batch has the *intended* send time
 *
 *     t(k) = t0 + (i / S) * period + k * period
 *
 * (the offset spreads the senders evenly over one period instead of firing
 * them together).  A batch is sent at t(k) when a request slot is free, or
 * as soon as one frees up; its latency is always measured from t(k), not
 * from when it actually left.  A stalled server therefore shows up as the
 * whole queue of late batches, each charged the time it waited for a slot,
 * not as one slow request followed by fast ones (the coordinated omission
 * that closed-loop generators suffer, Gil Tene; wrk2's fix).
 *
 * The intended time of every batch follows from k alone, so falling behind
 * needs no memory: the backlog is a count, not a queue.  All times are
 * CLOCK_MONOTONIC nanoseconds.  Header-only so that the tests can check
 * the arithmetic directly.
 */
#ifndef RMQ_BENCH_PACE_H
#define RMQ_BENCH_PACE_H

#include <stdbool.h>
#include <stdint.h>

struct rmq_pace {
	uint64_t t0_ns;         /* intended time of batch 0, offset included */
	uint64_t num, den;      /* period = num / den ns */
	uint64_t next;          /* index of the next batch to send */
};

/*
 * Sender `index` of `senders`, each batch `batch` records, together
 * rate_msgs msgs/s, starting at t0_ns.  rate_msgs, batch and senders must
 * be > 0 and index < senders.
 */
static inline void rmq_pace_init(struct rmq_pace *p, uint64_t t0_ns, uint64_t rate_msgs,
				 uint32_t batch, uint32_t senders, uint32_t index)
{
	p->num = (uint64_t)batch * senders * 1000000000ULL;
	p->den = rate_msgs;
	p->next = 0;
	/* index/senders of a period: index * num / (den * senders). */
	unsigned __int128 off = (unsigned __int128)index * p->num / ((unsigned __int128)p->den * senders);
	p->t0_ns = t0_ns + (uint64_t)off;
}

/* The intended send time of batch k. */
static inline uint64_t rmq_pace_time(const struct rmq_pace *p, uint64_t k)
{
	return p->t0_ns + (uint64_t)((unsigned __int128)k * p->num / p->den);
}

/* The intended time of the next batch (due or not). */
static inline uint64_t rmq_pace_peek(const struct rmq_pace *p)
{
	return rmq_pace_time(p, p->next);
}

/* When the next batch is due at now: takes it, sets *intended_ns and
 * returns true.  Otherwise returns false (nothing taken). */
static inline bool rmq_pace_take(struct rmq_pace *p, uint64_t now_ns, uint64_t *intended_ns)
{
	uint64_t t = rmq_pace_peek(p);
	if (t > now_ns)
		return false;
	*intended_ns = t;
	p->next++;
	return true;
}

/* Batches due at now and not taken yet: how far behind the sender is. */
static inline uint64_t rmq_pace_backlog(const struct rmq_pace *p, uint64_t now_ns)
{
	if (now_ns < p->t0_ns)
		return 0;
	/* t(k) <= now  <=>  floor(k*num/den) <= d  <=>  k*num < (d+1)*den,
	 * so ceil((d+1)*den / num) batches are due. */
	unsigned __int128 d1 = (unsigned __int128)(now_ns - p->t0_ns) + 1;
	uint64_t due = (uint64_t)((d1 * p->den + p->num - 1) / p->num);
	return due > p->next ? due - p->next : 0;
}

/* Latency of a batch intended at intended_ns whose answer came at done_ns
 * (0 if the clock says it came first). */
static inline uint64_t rmq_pace_latency(uint64_t intended_ns, uint64_t done_ns)
{
	return done_ns > intended_ns ? done_ns - intended_ns : 0;
}

#endif /* RMQ_BENCH_PACE_H */
