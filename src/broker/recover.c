/* SPDX-License-Identifier: Apache-2.0 */
/* recover.c - a new leader's recovery (recover.h). */
#include "broker/recover.h"

#include "broker/broker.h"
#include "broker/errcode.h"
#include "broker/isr.h"
#include "broker/lead.h"
#include "broker/meta.h"
#include "common/metadata.pb-c.h"
#include "core/log.h"
#include "core/util.h"
#include "storage/log.h"

#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define RUNNING RUSTMQ__COMMON__BROKER_STATE__BROKER_RUNNING
#define TICK_NS (50ULL * 1000 * 1000)            /* a recovery looks again */
#define ASK_RETRY_NS (1000ULL * 1000 * 1000)     /* after a refused handover */
#define WAIT_LOG_NS (5ULL * 1000 * 1000 * 1000)  /* a recovery that waits says so */

_Static_assert(RMQ_RECOVER_REPLICAS_MAX == RMQ_REPLICAS_MAX, "one bound for replicas");

struct rmq_recover {
	struct rmq_partition *p;
	struct rmq_timer timer;
	uint32_t epoch;                    /* the leadership it is for */
	uint64_t started_ns, logged_ns;
	uint64_t retry_at;                 /* no handover asked before then */
	bool asking;                       /* a handover is out */
	uint32_t nheard;
	struct rmq_recover_heard heard[RMQ_RECOVER_REPLICAS_MAX];
};

/* ---- the decision -------------------------------------------------------------------- */

uint32_t rmq_recover_quorum(uint32_t n)
{
	return n <= 1 ? 0 : (n + 1) / 2 - 1;
}

enum rmq_recover_verdict rmq_recover_decide(uint32_t n, uint64_t own_end,
					    const struct rmq_recover_heard *h, uint32_t nh,
					    uint32_t *target, uint64_t *needed)
{
	*target = 0;
	*needed = own_end;
	uint32_t heard = 0;
	const struct rmq_recover_heard *newer = NULL, *longest = NULL;
	uint64_t ends[RMQ_RECOVER_REPLICAS_MAX + 1];
	ends[0] = own_end;
	for (uint32_t i = 0; i < nh && heard < RMQ_RECOVER_REPLICAS_MAX; i++) {
		const struct rmq_recover_heard *x = &h[i];
		if (!x->running)
			continue;
		heard++;
		/* What it holds of this log's lineage: an older epoch where
		 * this log ends holds none of what lies past it. */
		ends[heard] = x->kind == RMQ_RECOVER_TAIL || x->kind == RMQ_RECOVER_PREFIX ? x->end : 0;
		if (x->kind == RMQ_RECOVER_NEWER &&
		    (!newer || x->epoch > newer->epoch ||
		     (x->epoch == newer->epoch && x->end > newer->end)))
			newer = x;
		if (x->kind == RMQ_RECOVER_TAIL && (!longest || x->end > longest->end))
			longest = x;
	}
	if (heard < rmq_recover_quorum(n))
		return RMQ_RECOVER_WAIT;
	if (newer) {
		/* Its log went on in an epoch after this log's last one: the
		 * leader of that epoch held every record a majority held
		 * before it, and this log's tail past where they part is
		 * not one (docs/replication.md, rule 10). */
		*target = newer->broker;
		*needed = newer->end;
		return RMQ_RECOVER_HAND_OVER;
	}
	/* A record a majority holds is on k of the heard, this one
	 * included: the k-th largest end is where such records may reach. */
	const uint32_t m = n / 2 + 1, hh = heard + 1;
	const uint32_t k = m + hh > n ? m + hh - n : 1;
	for (uint32_t i = 1; i < hh; i++) /* insertion sort, descending: at most 9 */
		for (uint32_t j = i; j > 0 && ends[j] > ends[j - 1]; j--) {
			uint64_t t = ends[j];
			ends[j] = ends[j - 1];
			ends[j - 1] = t;
		}
	*needed = ends[(k <= hh ? k : hh) - 1];
	if (*needed <= own_end || !longest) {
		*needed = own_end;
		return RMQ_RECOVER_DONE;
	}
	*target = longest->broker;
	return RMQ_RECOVER_HAND_OVER;
}

/* ---- on the partition's shard ---------------------------------------------------------- */

static const struct rmq_passign *assign_of(const struct rmq_partition *p)
{
	return p->topic && p->topic->parts && p->index < p->topic->partitions
		       ? &p->topic->parts[p->index]
		       : NULL;
}

static bool running(const struct rmq_partition *p, uint32_t id)
{
	const struct rmq_broker_rec *r = rmq_meta_broker(p->bs->meta, id);
	return r && r->state == RUNNING;
}

static void on_tick(struct rmq_timer *t);

static void arm(struct rmq_recover *r, uint64_t after_ns)
{
	struct rmq_shard *s = r->p->bs->s;
	uint64_t at = rmq_now_ns() + after_ns;
	if (rmq_timer_armed(&r->timer) && r->timer.deadline_ns <= at)
		return;
	rmq_timer_cancel(s, &r->timer);
	if (rmq_timer_start(s, &r->timer, at, on_tick) < 0)
		rmq_warn("%s-%u: no timer for the new leader's recovery; it goes on at the next "
			 "answer",
			 r->p->topic_name, r->p->index);
}

void rmq_recover_begin(struct rmq_partition *p)
{
	const struct rmq_passign *pa = assign_of(p);
	rmq_recover_drop(p);
	/* One replica, or two: this one holds all a majority holds.  The
	 * first epoch: no leader came before, nothing was acknowledged. */
	if (!pa || !p->log || rmq_recover_quorum(pa->nreplicas) == 0 || p->leader_epoch <= 1)
		return;
	struct rmq_recover *r = calloc(1, sizeof(*r));
	if (!r) {
		/* Serving without it is what the code did before: say so. */
		rmq_warn("%s-%u: no memory to recover as the new leader; serving its log as it is",
			 p->topic_name, p->index);
		return;
	}
	r->p = p;
	r->epoch = p->leader_epoch;
	r->started_ns = r->logged_ns = rmq_now_ns();
	p->recover = r;
	rmq_info("%s-%u: leading in epoch %" PRIu32 " from offset %" PRIu64 "; produce waits until "
		 "%" PRIu32 " of the other %" PRIu32 " replicas say what they hold",
		 p->topic_name, p->index, p->leader_epoch, rmq_log_end_offset(p->log),
		 rmq_recover_quorum(pa->nreplicas), pa->nreplicas - 1);
	arm(r, TICK_NS);
}

void rmq_recover_drop(struct rmq_partition *p)
{
	struct rmq_recover *r = p->recover;
	if (!r)
		return;
	rmq_timer_cancel(p->bs->s, &r->timer);
	free(r);
	p->recover = NULL;
}

void rmq_recover_answer(struct rmq_partition *p, uint32_t broker, uint64_t probe,
			const Rustmq__Broker__ReplicateDataResponse *resp)
{
	struct rmq_recover *r = p->recover;
	if (!r || resp->error_code != EC_OK || !p->log)
		return; /* not decisive: OFFSET_OUT_OF_RANGE probes again at its end */
	for (uint32_t i = 0; i < r->nheard; i++)
		if (r->heard[i].broker == broker)
			return;
	if (r->nheard == RMQ_RECOVER_REPLICAS_MAX)
		return;
	struct rmq_recover_heard x = {.broker = broker, .end = resp->log_end_offset};
	const uint64_t own_end = rmq_log_end_offset(p->log);
	/* Raft's "more up to date": the log whose last batch has the later
	 * epoch.  The epoch where the two part would not do: a follower may
	 * leave this log in an older epoch and go on in a newer one. */
	uint32_t mine = 0;
	uint64_t a, b;
	if (own_end > rmq_log_start_offset(p->log) &&
	    rmq_log_epoch_at(p->log, own_end - 1, &mine, &a, &b) < 0)
		return; /* not counted: the recovery waits for others */
	x.epoch = resp->last_epoch;
	if (resp->last_epoch > mine) {
		x.kind = RMQ_RECOVER_NEWER;
	} else if (resp->diverging_epoch) {
		x.kind = RMQ_RECOVER_OLDER;
	} else if (x.end > probe && probe >= own_end) {
		x.kind = RMQ_RECOVER_TAIL;
	} else {
		/* It matches here up to the probe; past it, nothing was
		 * compared (a probe below this log's end, after a gap). */
		x.kind = RMQ_RECOVER_PREFIX;
		if (x.end > probe)
			x.end = probe;
	}
	r->heard[r->nheard++] = x;
	rmq_debug("%s-%u: recovering: broker %" PRIu32 " ends at %" PRIu64 " (%s), this log at %" PRIu64,
		  p->topic_name, p->index, broker, x.end,
		  x.kind == RMQ_RECOVER_TAIL     ? "holds this log and more"
		  : x.kind == RMQ_RECOVER_PREFIX ? "holds part of this log"
		  : x.kind == RMQ_RECOVER_NEWER  ? "leaves it in a newer epoch"
						 : "leaves it in an older epoch",
		  own_end);
	arm(r, 0);
}

/* A handover asked of the controller, out. */
struct hand_ask {
	struct rmq_bshard *bs;
	char topic[RMQ_TOPIC_NAME_MAX + 1];
	uint32_t partition, epoch, target;
};

static void hand_answered(void *arg, int code)
{
	struct hand_ask *a = arg;
	int c;
	struct rmq_partition *p = rmq_partition_find(a->bs, a->topic, a->partition, &c);
	struct rmq_recover *r = p ? p->recover : NULL;
	if (r && r->epoch == a->epoch) {
		r->asking = false;
		if (code != EC_OK) {
			rmq_warn("%s-%u: the controller refused the leadership to broker %" PRIu32
				 " (ErrorCode %d%s); asking again in 1 s",
				 a->topic, a->partition, a->target, code,
				 code == EC_STALE_EPOCH ? ", STALE_EPOCH: the partition changed" : "");
			r->retry_at = rmq_now_ns() + ASK_RETRY_NS;
			arm(r, ASK_RETRY_NS);
		}
		/* Else the metadata brings the new leader, and this one follows. */
	}
	free(a);
}

static void hand_over(struct rmq_recover *r, uint32_t target, uint64_t needed)
{
	struct rmq_partition *p = r->p;
	struct rmq_bshard *bs = p->bs;
	const struct rmq_passign *pa = assign_of(p);
	uint64_t now = rmq_now_ns();
	if (r->asking || now < r->retry_at || !pa)
		return;
	/* The new ISR: the target (it holds all of this log), this one,
	 * and the members that run (the controller takes no other). */
	uint32_t isr[RMQ_REPLICAS_MAX], n = 0;
	isr[n++] = target;
	if (target != bs->b->self)
		isr[n++] = bs->b->self;
	for (uint32_t i = 0; i < pa->nisr && n < RMQ_REPLICAS_MAX; i++)
		if (pa->isr[i] != target && pa->isr[i] != bs->b->self && running(p, pa->isr[i]))
			isr[n++] = pa->isr[i];
	struct hand_ask *a = calloc(1, sizeof(*a));
	int rc = -ENOMEM;
	if (a) {
		a->bs = bs;
		snprintf(a->topic, sizeof(a->topic), "%s", p->topic_name);
		a->partition = p->index;
		a->epoch = r->epoch;
		a->target = target;
		rc = rmq_isr_hand_over(bs, p, pa->part_epoch, isr, n, target, hand_answered, a);
	}
	if (rc < 0) {
		free(a);
		r->retry_at = now + ASK_RETRY_NS;
		arm(r, ASK_RETRY_NS);
		return;
	}
	r->asking = true;
	rmq_warn("%s-%u: broker %" PRIu32 " holds records to offset %" PRIu64 " that this log (to %" PRIu64
		 ") lacks and a majority may hold: asking the controller to make it the leader",
		 p->topic_name, p->index, target, needed, rmq_log_end_offset(p->log));
}

static void on_tick(struct rmq_timer *t)
{
	struct rmq_recover *r = RMQ_CONTAINER_OF(t, struct rmq_recover, timer);
	struct rmq_partition *p = r->p;
	const struct rmq_passign *pa = assign_of(p);
	if (!pa || !p->log || p->role != RMQ_ROLE_LEADER || p->leader_epoch != r->epoch)
		return; /* the metadata moved on: rmq_lead_sync drops this */
	/* Counted: replicas still named (a reassignment may have removed
	 * one), on brokers the metadata names running. */
	for (uint32_t i = 0; i < r->nheard; i++) {
		bool named = false;
		for (uint32_t k = 0; k < pa->nreplicas; k++)
			named |= pa->replicas[k] == r->heard[i].broker;
		r->heard[i].running = named && running(p, r->heard[i].broker);
	}
	uint32_t target;
	uint64_t needed, now = rmq_now_ns();
	const uint64_t own_end = rmq_log_end_offset(p->log);
	switch (rmq_recover_decide(pa->nreplicas, own_end, r->heard, r->nheard, &target, &needed)) {
	case RMQ_RECOVER_WAIT:
		if (p->topic->cfg.unclean_election && now - r->started_ns >= WAIT_LOG_NS) {
			/* The topic chose availability over acknowledged records
			 * (rule 4's exception): it gets it here too. */
			rmq_warn("%s-%u: no majority of its replicas answered in %" PRIu64 " s and the topic "
				 "sets unclean.leader.election.enable: serving this log as it is; records "
				 "acks MAJORITY answered on the others may be lost",
				 p->topic_name, p->index, (now - r->started_ns) / 1000000000);
			rmq_recover_drop(p);
			rmq_lead_durable(p);
			return;
		}
		if (now - r->logged_ns >= WAIT_LOG_NS) {
			r->logged_ns = now;
			rmq_warn("%s-%u: leader in epoch %" PRIu32 " for %" PRIu64 " s and heard from %" PRIu32
				 " of the %" PRIu32 " other replicas it needs: produce waits, since the "
				 "others may hold records acks MAJORITY answered",
				 p->topic_name, p->index, r->epoch, (now - r->started_ns) / 1000000000,
				 r->nheard, rmq_recover_quorum(pa->nreplicas));
		}
		break;
	case RMQ_RECOVER_HAND_OVER:
		hand_over(r, target, needed);
		break;
	case RMQ_RECOVER_DONE: {
		/* Who said what, for the operator who wonders why it served. */
		static const char *const kinds[] = {"prefix", "more", "older", "newer"};
		char who[RMQ_RECOVER_REPLICAS_MAX * 48] = "";
		size_t w = 0;
		for (uint32_t i = 0; i < r->nheard && w < sizeof(who); i++) {
			const struct rmq_recover_heard *x = &r->heard[i];
			int k = snprintf(who + w, sizeof(who) - w, "%s%" PRIu32 " (%s to %" PRIu64 "%s)",
					 i ? ", " : "", x->broker, kinds[x->kind], x->end,
					 x->running ? "" : ", not running");
			w += k > 0 ? (size_t)k : 0;
		}
		rmq_info("%s-%u: recovered as the leader in epoch %" PRIu32 " in %" PRIu64 " ms: this log "
			 "(to %" PRIu64 ") holds all a majority may hold; heard from brokers %s",
			 p->topic_name, p->index, r->epoch, (now - r->started_ns) / 1000000, own_end,
			 who);
		rmq_recover_drop(p);
		rmq_lead_durable(p); /* the high watermark, waiting followers, batches out */
		return;
	}
	}
	arm(r, TICK_NS);
}
