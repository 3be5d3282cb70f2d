/* SPDX-License-Identifier: Apache-2.0 */
/*
 * recover.h - a new leader's recovery: before it takes a produce or moves
 * the high watermark, the leader of a new leader epoch hears from enough
 * replicas to know it holds every record acks MAJORITY may have answered,
 * and hands its leadership to a replica that holds more (docs/replication.md,
 * "The rules", 9).
 *
 * A record acknowledged with acks MAJORITY lives, durable, on m = n / 2 + 1
 * of the partition's n replicas.  Any h replicas (this one among them)
 * therefore hold it on at least k = m - (n - h) of them: once h reaches
 * n - m + 1 (ceil(n / 2)), k is at least 1, and a record that would be
 * lost is a record fewer than k of the replicas heard hold.
 *
 *   rmq_lead_sync: new leadership ── rmq_recover_begin ──► probes (lead.c,
 *       without the leader's end, so no follower cuts its tail)
 *   each first answer ── rmq_recover_answer ──► heard[]
 *   timer: rmq_recover_decide
 *       WAIT       fewer than ceil(n / 2) - 1 running followers heard
 *       DONE       this log holds every record k of the heard hold:
 *                  it serves (produce, the high watermark, batches out)
 *       HAND_OVER  a heard replica's log is newer (its last batch of a later
 *                  epoch than this log's last: Raft's order) or holds
 *                  this log and more that k replicas hold: UpdateISR with new_leader_id makes it the leader
 *                  (next leader epoch), and this one follows it and takes
 *                  its records as any follower does
 *
 * The decision is pure (rmq_recover_decide, tested in
 * tests/broker/test_recover.c); the rest is glue on the partition's shard.
 */
#ifndef RMQ_BROKER_RECOVER_H
#define RMQ_BROKER_RECOVER_H

#include "broker/replication.pb-c.h"

#include <stdbool.h>
#include <stdint.h>

#define RMQ_RECOVER_REPLICAS_MAX 8 /* meta.h's RMQ_REPLICAS_MAX */

struct rmq_partition;

/* What a follower's first decisive answer said of its log, next to this
 * one's (a probe at offset P, with this log's epoch at P - 1). */
enum rmq_recover_kind {
	RMQ_RECOVER_PREFIX, /* it holds this log up to its own end, no more */
	RMQ_RECOVER_TAIL,   /* it holds all of this log, and more: to `end` */
	RMQ_RECOVER_OLDER,  /* it leaves this log at P - 1, and its last epoch is
			     * no newer than this log's */
	RMQ_RECOVER_NEWER,  /* its last batch is of an epoch after this log's
			     * last: its log is newer (Raft's order) */
};

struct rmq_recover_heard {
	uint32_t broker;
	enum rmq_recover_kind kind;
	uint64_t end;      /* its log end offset */
	uint32_t epoch;    /* the epoch of its last batch (last_epoch) */
	bool running;      /* the metadata names its broker running */
};

enum rmq_recover_verdict { RMQ_RECOVER_WAIT, RMQ_RECOVER_DONE, RMQ_RECOVER_HAND_OVER };

/*
 * Pure: what a leader of n replicas whose log ends at own_end does, having
 * heard h[0..nh) (followers only; those not running are not counted).
 * *target: the broker to hand over to (HAND_OVER); *needed: the end that
 * k of the heard hold (DONE and HAND_OVER), for the log.
 */
enum rmq_recover_verdict rmq_recover_decide(uint32_t n, uint64_t own_end,
					    const struct rmq_recover_heard *h, uint32_t nh,
					    uint32_t *target, uint64_t *needed);

/* How many followers of n replicas must be heard (ceil(n / 2) - 1). */
uint32_t rmq_recover_quorum(uint32_t n);

/* p starts leading in a new leader epoch (lead.c, before its slots send
 * their probes): it recovers, unless it needs to hear from nobody. */
void rmq_recover_begin(struct rmq_partition *p);
/* p's leadership ends or changes epoch, or p closes: the recovery, if
 * any, is abandoned (a handover out is answered into nothing). */
void rmq_recover_drop(struct rmq_partition *p);
/* The answer of follower `broker` to a probe at offset `probe` (its first
 * decisive one counts: OK, matching or diverging). */
void rmq_recover_answer(struct rmq_partition *p, uint32_t broker, uint64_t probe,
			const Rustmq__Broker__ReplicateDataResponse *resp);

#endif /* RMQ_BROKER_RECOVER_H */
