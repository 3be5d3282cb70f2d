/* SPDX-License-Identifier: Apache-2.0 */
/*
 * reassign.c - ControllerBrokerService.ReassignPartitions (reassign.h):
 * the moves decided on the controller's leader, their progress then
 * streamed from the answering node's own copy of the state, which every
 * node has.
 *
 * The leader copies its batches to a replica a move adds (lead.c) and asks
 * the controller to take it into the ISR once it has caught up (UpdateISR,
 * isr.c), which completes the move.  throttle_bytes_per_sec is not applied
 * yet.
 *
 * The bytes a move has copied are the leader's view of its replicas
 * (rmq_lookup_copied), looked up on the partition's shard before each
 * progress message when this node leads the partition; the progress
 * streamed from a node that does not lead it carries none.
 */
#include "broker/reassign.h"

#include "broker/broker.h"
#include "broker/cluster.h"
#include "broker/controller.h"
#include "broker/lead.h"
#include "broker/lookup.h"
#include "broker/reply.h"
#include "common/metadata.pb-c.h"
#include "controller/cluster.pb-c.h"
#include "core/util.h"

#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define MS (1000ULL * 1000)
#define TICK_NS (100 * MS)                 /* how often the state is looked at */
#define INTERVAL_MIN_NS (100 * MS)
#define INTERVAL_DEFAULT_NS (1000 * MS)
#define INTERVAL_MAX_NS (3600 * 1000 * MS)

#define RUNNING RUSTMQ__COMMON__BROKER_STATE__BROKER_RUNNING
#define PHASE(x) RUSTMQ__CONTROLLER__REASSIGNMENT_PHASE__REASSIGNMENT_PHASE_##x

static bool has(const uint32_t *v, uint32_t n, uint32_t id)
{
	for (uint32_t i = 0; i < n; i++)
		if (v[i] == id)
			return true;
	return false;
}

static bool same_ids(const uint32_t *a, uint32_t na, const uint32_t *b, uint32_t nb)
{
	return na == nb && memcmp(a, b, na * sizeof(*a)) == 0;
}

/* After pa's replicas changed: its ISR within them, and its leader an
 * in-sync replica on a running broker (or none).  The leader stays unless
 * it must go, or prefer and the first replica can lead. */
static void settle(const struct rmq_meta *m, struct rmq_passign *pa, bool prefer)
{
	uint32_t n = 0;
	for (uint32_t i = 0; i < pa->nisr; i++)
		if (has(pa->replicas, pa->nreplicas, pa->isr[i]))
			pa->isr[n++] = pa->isr[i];
	pa->nisr = n;
	uint32_t first = 0;
	for (uint32_t i = 0; i < pa->nreplicas && !first; i++) {
		const struct rmq_broker_rec *r = rmq_meta_broker(m, pa->replicas[i]);
		if (r && r->state == RUNNING && has(pa->isr, pa->nisr, pa->replicas[i]))
			first = pa->replicas[i];
	}
	bool keep = pa->leader && has(pa->isr, pa->nisr, pa->leader) &&
		    !(prefer && first && first == pa->replicas[0]);
	uint32_t leader = keep ? pa->leader : first;
	if (leader != pa->leader) {
		pa->leader = leader;
		pa->leader_epoch++;
	}
	pa->part_epoch++;
}

bool rmq_move_advance(const struct rmq_meta *m, struct rmq_passign *pa)
{
	if (!pa->ntarget)
		return false;
	for (uint32_t i = pa->nreplicas - pa->nadding; i < pa->nreplicas; i++)
		if (!has(pa->isr, pa->nisr, pa->replicas[i]))
			return false;
	/* A move that drops replicas waits for one it keeps to be in sync. */
	bool synced = false;
	for (uint32_t i = 0; i < pa->ntarget && !synced; i++)
		synced = has(pa->isr, pa->nisr, pa->target[i]);
	if (!synced)
		return false;
	memcpy(pa->replicas, pa->target, pa->ntarget * sizeof(*pa->target));
	pa->nreplicas = pa->ntarget;
	pa->ntarget = pa->nadding = 0;
	settle(m, pa, true);
	return true;
}

bool rmq_move_interval(const Google__Protobuf__Duration *d, uint64_t *ns)
{
	*ns = INTERVAL_DEFAULT_NS;
	if (!d)
		return true;
	if (d->seconds < 0 || d->nanos < 0 || d->nanos >= 1000000000)
		return false;
	*ns = (uint64_t)d->seconds > INTERVAL_MAX_NS / 1000000000
		      ? INTERVAL_MAX_NS
		      : (uint64_t)d->seconds * 1000000000 + (uint64_t)d->nanos;
	*ns = *ns < INTERVAL_MIN_NS ? INTERVAL_MIN_NS : *ns;
	return true;
}

/* ---- one request -------------------------------------------------------------------- */

struct rp_item {
	/* In. */
	char topic[RMQ_TOPIC_NAME_MAX + 2]; /* +1: over-long names are refused, not cut */
	uint32_t partition;
	bool cancel;
	uint32_t ntarget, target[RMQ_REPLICAS_MAX]; /* cancel: the original replicas, once decided */
	/* The decision (a rustmq ErrorCode), and which making of the
	 * partition it was about. */
	int code;
	char err[320];
	char topic_id[40];
	uint64_t gen;
	/* What was last sent. */
	int phase;
	uint64_t shape;
	/* The copy as the leader saw it before this message (viewed), and
	 * the log's size when last seen (the total once completed). */
	bool viewed;
	uint64_t copied, total, lag;
	uint64_t total_seen;
};

struct rp {
	struct rmq_ctrl_req req;   /* req.code: the controller's answer */
	struct rmq_call *call;
	bool away;                 /* at shard 0, or a lookup is out */
	bool cancelled;            /* the call ended while away */
	bool all;                  /* the report the lookup is for: every item */
	struct rmq_timer timer;
	uint64_t interval_ns, next_all_ns, version;
	/* The leader's view of the moves led here: lk[k] is of items[at[k]]. */
	struct rmq_lookup *lk;
	struct rmq_isr_view *views;
	size_t *at;
	size_t n;
	struct rp_item items[];
};

static void rp_free(struct rp *r)
{
	rmq_call_unref(r->call);
	free(r->lk);
	free(r->views);
	free(r->at);
	free(r);
}

static bool terminal(int phase)
{
	return phase == PHASE(COMPLETED) || phase == PHASE(CANCELLED) || phase == PHASE(FAILED);
}

int rmq_move_start(const struct rmq_meta *m, struct rmq_passign *pa, const uint32_t *target,
		   uint32_t ntarget, bool *changed, char *why, size_t len)
{
	if (pa->ntarget) {
		if (same_ids(pa->target, pa->ntarget, target, ntarget))
			return EC_OK; /* the same move: it runs */
		snprintf(why, len, "the partition is being moved to other brokers: cancel that first");
		return EC_REASSIGNMENT_IN_PROGRESS;
	}
	for (uint32_t i = 0; i < ntarget; i++) {
		if (!rmq_meta_broker(m, target[i])) {
			snprintf(why, len, "broker %" PRIu32 " is not registered", target[i]);
			return EC_BROKER_NOT_AVAILABLE;
		}
	}
	if (same_ids(pa->replicas, pa->nreplicas, target, ntarget))
		return EC_OK; /* there already */
	uint32_t n = pa->nreplicas;
	for (uint32_t i = 0; i < ntarget; i++)
		n += !has(pa->replicas, pa->nreplicas, target[i]);
	if (n > RMQ_REPLICAS_MAX) {
		snprintf(why, len,
			 "the partition would have %" PRIu32 " replicas while it moves; at most %d", n,
			 RMQ_REPLICAS_MAX);
		return EC_INVALID_REPLICATION_FACTOR;
	}
	pa->nadding = n - pa->nreplicas;
	for (uint32_t i = 0; i < ntarget; i++)
		if (!has(pa->replicas, pa->nreplicas, target[i]))
			pa->replicas[pa->nreplicas++] = target[i];
	pa->ntarget = ntarget;
	memcpy(pa->target, target, ntarget * sizeof(*target));
	pa->part_epoch++;
	rmq_move_advance(m, pa);
	*changed = true;
	return EC_OK;
}

void rmq_move_cancel(const struct rmq_meta *m, struct rmq_passign *pa)
{
	pa->nreplicas -= pa->nadding;
	pa->ntarget = pa->nadding = 0;
	settle(m, pa, false);
}

int rmq_move_phase(const struct rmq_passign *pa, const uint32_t *target, uint32_t ntarget)
{
	if (!pa->ntarget)
		return same_ids(pa->replicas, pa->nreplicas, target, ntarget) ? PHASE(COMPLETED)
									     : PHASE(CANCELLED);
	if (!same_ids(pa->target, pa->ntarget, target, ntarget))
		return PHASE(CANCELLED); /* cancelled, and another one runs */
	for (uint32_t i = pa->nreplicas - pa->nadding; i < pa->nreplicas; i++)
		if (!has(pa->isr, pa->nisr, pa->replicas[i]))
			return PHASE(COPYING);
	return PHASE(ELECTING);
}

/* On the controller's leader: the state with every accepted item decided,
 * or NULL when nothing changes. */
static struct rmq_meta *rp_build(struct rmq_ctrl_req *req, const struct rmq_meta *cur)
{
	struct rp *r = RMQ_CONTAINER_OF(req, struct rp, req);
	struct rmq_meta *m = rmq_meta_copy(cur, 0);
	bool changed = false;
	for (size_t i = 0; i < r->n; i++) {
		struct rp_item *it = &r->items[i];
		if (it->code != EC_OK)
			continue; /* refused by the origin */
		if (!m) {
			it->code = EC_RESOURCE_EXHAUSTED;
			snprintf(it->err, sizeof(it->err), "out of memory");
			continue;
		}
		struct rmq_topic *t;
		struct rmq_passign *pa = rmq_meta_passign(m, it->topic, it->partition, &t);
		if (!pa) {
			it->code = EC_PARTITION_NOT_FOUND;
			snprintf(it->err, sizeof(it->err), "no such partition");
			continue;
		}
		snprintf(it->topic_id, sizeof(it->topic_id), "%s", t->id);
		it->gen = pa->gen;
		if (it->cancel) {
			if (!pa->ntarget) {
				it->code = EC_NO_REASSIGNMENT_IN_PROGRESS;
				snprintf(it->err, sizeof(it->err), "no reassignment of the partition runs");
				continue;
			}
			rmq_move_cancel(m, pa);
			it->ntarget = pa->nreplicas;
			memcpy(it->target, pa->replicas, pa->nreplicas * sizeof(*pa->replicas));
			changed = true;
		} else {
			it->code = rmq_move_start(m, pa, it->target, it->ntarget, &changed, it->err,
						  sizeof(it->err));
		}
	}
	if (m && !changed) {
		rmq_meta_free(m);
		m = NULL;
	}
	return m;
}

/* ---- progress ----------------------------------------------------------------------- */

/* Where item it stands in m: its phase, and the partition (NULL when gone). */
static int phase_of(const struct rmq_meta *m, struct rp_item *it, const struct rmq_passign **out)
{
	*out = NULL;
	if (it->code != EC_OK)
		return PHASE(FAILED);
	long k = rmq_meta_find(m, it->topic);
	const struct rmq_topic *t = k >= 0 ? &m->topics[k] : NULL;
	if (!t || strcmp(t->id, it->topic_id) != 0 || it->partition >= t->partitions || !t->parts ||
	    t->parts[it->partition].gen != it->gen) {
		it->code = EC_PARTITION_NOT_FOUND;
		snprintf(it->err, sizeof(it->err), "the partition was deleted during its reassignment");
		return PHASE(FAILED);
	}
	const struct rmq_passign *pa = &t->parts[it->partition];
	*out = pa;
	if (it->cancel)
		return PHASE(CANCELLED);
	return rmq_move_phase(pa, it->target, it->ntarget);
}

static uint64_t shape_of(const struct rmq_passign *pa)
{
	if (!pa)
		return 0;
	uint64_t h = 1469598103934665603ULL;
	const uint32_t *parts[] = {&pa->leader, &pa->nreplicas, pa->replicas, &pa->nisr, pa->isr};
	const uint32_t lens[] = {1, 1, pa->nreplicas, 1, pa->nisr};
	for (size_t i = 0; i < RMQ_ARRAY_SIZE(parts); i++)
		for (uint32_t j = 0; j < lens[i]; j++)
			h = (h ^ parts[i][j]) * 1099511628211ULL;
	return h;
}

/* Room for one status's broker ids. */
struct ids {
	char *ptr[4][RMQ_REPLICAS_MAX];
	char str[4][RMQ_REPLICAS_MAX][12];
};

static char **ids_of(struct ids *s, int list, const uint32_t *v, uint32_t n, size_t *count)
{
	for (uint32_t i = 0; i < n; i++) {
		snprintf(s->str[list][i], sizeof(s->str[list][i]), "%" PRIu32, v[i]);
		s->ptr[list][i] = s->str[list][i];
	}
	*count = n;
	return s->ptr[list];
}

/* The status of it in phase, pa its partition (or NULL). */
static void status_pb(const struct rp_item *it, int phase, const struct rmq_passign *pa,
		      Rustmq__Controller__ReassignmentStatus *st, Rustmq__Common__TopicPartition *tp,
		      struct ids *s)
{
	rustmq__controller__reassignment_status__init(st);
	rustmq__common__topic_partition__init(tp);
	tp->topic = (char *)it->topic;
	tp->partition = it->partition;
	st->topic_partition = tp;
	st->error_code = (Rustmq__Common__ErrorCode)it->code;
	st->error_message = (char *)it->err;
	st->phase = (Rustmq__Controller__ReassignmentPhase)phase;
	st->target_replica_ids = ids_of(s, 1, it->target, it->ntarget, &st->n_target_replica_ids);
	if (!pa)
		return;
	st->replica_ids = ids_of(s, 0, pa->replicas, pa->nreplicas, &st->n_replica_ids);
	if (phase == PHASE(COMPLETED) && it->total_seen) {
		/* Every added replica joined the ISR: it holds the whole log. */
		st->bytes_copied = st->bytes_total = it->total_seen;
	}
	if (terminal(phase) || !pa->ntarget)
		return;
	if (it->viewed) {
		st->bytes_copied = it->copied;
		st->bytes_total = it->total;
		st->lag_records = it->lag;
	}
	uint32_t adding[RMQ_REPLICAS_MAX], removing[RMQ_REPLICAS_MAX], na = 0, nr = 0;
	uint32_t original = pa->nreplicas - pa->nadding;
	for (uint32_t i = 0; i < pa->nreplicas; i++) {
		uint32_t id = pa->replicas[i];
		if (i >= original && !has(pa->isr, pa->nisr, id))
			adding[na++] = id;
		if (i < original && !has(pa->target, pa->ntarget, id))
			removing[nr++] = id;
	}
	st->adding_replica_ids = ids_of(s, 2, adding, na, &st->n_adding_replica_ids);
	st->removing_replica_ids = ids_of(s, 3, removing, nr, &st->n_removing_replica_ids);
}

/* Sends the items whose phase or partition changed since the last message
 * (all: those not finished too).  Returns whether every item has reached
 * a terminal phase, and said so. */
static bool report(struct rp *r, bool all)
{
	struct rmq_bshard *bs = rmq_bshard_current();
	size_t n = 0;
	int *phase = calloc(r->n, sizeof(*phase));
	uint64_t *shape = calloc(r->n, sizeof(*shape));
	Rustmq__Controller__ReassignmentStatus *st = calloc(r->n, sizeof(*st));
	Rustmq__Controller__ReassignmentStatus **sp = calloc(r->n, sizeof(*sp));
	Rustmq__Common__TopicPartition *tp = calloc(r->n, sizeof(*tp));
	struct ids *ids = calloc(r->n, sizeof(*ids));
	bool done = true;
	if (!phase || !shape || !st || !sp || !tp || !ids) {
		done = false; /* out of memory: the next tick tries again */
		goto out;
	}
	for (size_t i = 0; i < r->n; i++) {
		struct rp_item *it = &r->items[i];
		if (terminal(it->phase))
			continue; /* said */
		const struct rmq_passign *pa;
		phase[i] = phase_of(bs->meta, it, &pa);
		shape[i] = shape_of(pa);
		done &= terminal(phase[i]);
		if (all || phase[i] != it->phase || shape[i] != it->shape) {
			status_pb(it, phase[i], pa, &st[n], &tp[n], &ids[n]);
			sp[n] = &st[n];
			n++;
		} else {
			phase[i] = 0; /* nothing to send */
		}
	}
	if (n > 0) {
		Rustmq__Controller__ReassignPartitionsProgress msg =
			RUSTMQ__CONTROLLER__REASSIGN_PARTITIONS_PROGRESS__INIT;
		msg.partitions = sp;
		msg.n_partitions = n;
		if (rmq_send_pb(r->call, &msg.base) < 0) {
			done = false; /* queue full, or the call is ending: not said */
			goto out;
		}
		for (size_t i = 0; i < r->n; i++) {
			if (phase[i]) {
				r->items[i].phase = phase[i];
				r->items[i].shape = shape[i];
			}
		}
	}
out:
	free(phase);
	free(shape);
	free(st);
	free(sp);
	free(tp);
	free(ids);
	return done;
}

static void finish(struct rp *r)
{
	rmq_call_set_ctx(r->call, NULL);
	rmq_call_finish(r->call, RMQ_GRPC_OK, NULL);
	rp_free(r);
}

static void on_tick(struct rmq_timer *t);

static void rearm(struct rp *r)
{
	struct rmq_bshard *bs = rmq_bshard_current();
	if (rmq_timer_start(bs->s, &r->timer, rmq_now_ns() + TICK_NS, on_tick) < 0) {
		rmq_call_set_ctx(r->call, NULL);
		rmq_call_finish(r->call, RMQ_GRPC_RESOURCE_EXHAUSTED,
				"no timer left on this shard to follow the reassignment");
		rp_free(r);
	}
}

/* Reports, then finishes or waits for the next tick. */
static void step(struct rp *r, bool all)
{
	if (report(r, all))
		finish(r);
	else
		rearm(r);
}

/* The leader's views are back: each moving item led here takes its copy's
 * progress, the sum over the replicas the move adds. */
static void looked(void *arg)
{
	struct rp *r = arg;
	r->away = false;
	if (r->cancelled) {
		rp_free(r);
		return;
	}
	struct rmq_meta *m = rmq_bshard_current()->meta;
	for (size_t k = 0; k < r->n && r->at[k] < r->n; k++) {
		struct rp_item *it = &r->items[r->at[k]];
		struct rmq_topic *t;
		const struct rmq_passign *pa = rmq_meta_passign(m, it->topic, it->partition, &t);
		if (r->lk[k].code != EC_OK || !pa || pa->gen != it->gen || !pa->ntarget)
			continue;
		it->viewed = true;
		for (uint32_t i = pa->nreplicas - pa->nadding; i < pa->nreplicas; i++) {
			struct rmq_copy_progress cp;
			rmq_lookup_copied(&r->lk[k], pa->replicas[i], &cp);
			it->copied += cp.bytes_copied;
			it->total += cp.bytes_total;
			it->lag = cp.lag_records > it->lag ? cp.lag_records : it->lag;
		}
		it->total_seen = it->total;
	}
	step(r, r->all);
}

/* Looks at the moves this node leads (on their shards), then reports. */
static void look(struct rp *r, bool all)
{
	struct rmq_bshard *bs = rmq_bshard_current();
	size_t k = 0;
	for (size_t i = 0; i < r->n; i++) {
		struct rp_item *it = &r->items[i];
		it->viewed = false;
		it->copied = it->total = it->lag = 0;
		struct rmq_topic *t;
		const struct rmq_passign *pa =
			terminal(it->phase) || it->code != EC_OK
				? NULL
				: rmq_meta_passign(bs->meta, it->topic, it->partition, &t);
		if (!pa || pa->gen != it->gen || !pa->ntarget || pa->leader != bs->b->self)
			continue;
		struct rmq_lookup *v = &r->lk[k];
		memset(v, 0, sizeof(*v));
		snprintf(v->topic, sizeof(v->topic), "%.*s", RMQ_TOPIC_NAME_MAX, it->topic);
		v->partition = it->partition;
		v->spec = RMQ_LOOKUP_ISR;
		v->isr = &r->views[k];
		r->at[k++] = i;
	}
	if (k < r->n)
		r->at[k] = r->n; /* the end */
	r->all = all;
	if (k > 0) {
		r->away = true;
		if (rmq_lookup_start(bs, r->lk, k, looked, r) == 0)
			return;
		r->away = false; /* out of memory: reported without */
	}
	step(r, all);
}

static void on_tick(struct rmq_timer *t)
{
	struct rp *r = RMQ_CONTAINER_OF(t, struct rp, timer);
	struct rmq_bshard *bs = rmq_bshard_current();
	uint64_t now = rmq_now_ns();
	bool all = now >= r->next_all_ns;
	if (all)
		r->next_all_ns = now + r->interval_ns;
	if (all || bs->meta->version != r->version) {
		r->version = bs->meta->version;
		look(r, all);
		return;
	}
	rearm(r);
}

/* A whole-request answer: one message, no partitions. */
static void refuse_all(struct rmq_call *c, int code, const char *why)
{
	rmq_reply_error(c, &rustmq__controller__reassign_partitions_progress__descriptor, code, "%s",
			why);
}

static void rp_back(struct rmq_ctrl_req *req)
{
	struct rp *r = RMQ_CONTAINER_OF(req, struct rp, req);
	struct rmq_bshard *bs = rmq_bshard_current();
	r->away = false;
	if (r->cancelled) {
		rp_free(r);
		return;
	}
	if (r->req.code == EC_NOT_CONTROLLER) {
		struct rmq_quorum q;
		char why[160];
		rmq_cluster_quorum(bs, &q);
		Rustmq__Controller__ReassignPartitionsProgress msg =
			RUSTMQ__CONTROLLER__REASSIGN_PARTITIONS_PROGRESS__INIT;
		msg.error_code = RUSTMQ__COMMON__ERROR_CODE__NOT_CONTROLLER;
		if (q.leader && q.leader != bs->b->self)
			snprintf(why, sizeof(why), "node %s at %s leads the controller: ask it",
				 q.leader_id, q.leader_addr);
		else
			snprintf(why, sizeof(why), "no controller leader is known now: retry");
		msg.error_message = why;
		msg.leader_id = q.leader != bs->b->self ? q.leader_id : (char *)"";
		msg.leader_hint = q.leader != bs->b->self ? q.leader_addr : (char *)"";
		rmq_call_set_ctx(r->call, NULL);
		rmq_reply_pb(r->call, &msg.base);
		rp_free(r);
		return;
	}
	for (size_t i = 0; r->req.code != EC_OK && i < r->n; i++) {
		struct rp_item *it = &r->items[i];
		if (it->code != EC_OK)
			continue;
		it->code = r->req.code;
		snprintf(it->err, sizeof(it->err), "%s",
			 r->req.code == EC_TIMEOUT ? "not committed in time: it may still take effect; ask "
						 "again with the same target to follow it"
			 : r->req.code == EC_STORAGE_ERROR ? "the controller's store failed"
						       : "the controller could not take the change");
	}
	r->version = bs->meta->version;
	r->next_all_ns = rmq_now_ns() + r->interval_ns;
	look(r, true);
}

/* Reads item i of req into it; a refusal goes into it->code. */
static void item_in(const Rustmq__Controller__PartitionReassignment *in, struct rp_item *it)
{
	if (!in->topic_partition) {
		it->code = EC_PARTITION_NOT_FOUND;
		snprintf(it->err, sizeof(it->err), "no topic_partition given");
		return;
	}
	snprintf(it->topic, sizeof(it->topic), "%.*s", RMQ_TOPIC_NAME_MAX + 1, in->topic_partition->topic);
	it->partition = in->topic_partition->partition;
	it->cancel = in->cancel;
	if (it->cancel)
		return;
	if (in->n_target_replica_ids == 0 || in->n_target_replica_ids > RMQ_REPLICAS_MAX) {
		it->code = EC_INVALID_REPLICATION_FACTOR;
		snprintf(it->err, sizeof(it->err), "give 1 to %d target replicas (%zu given)",
			 RMQ_REPLICAS_MAX, in->n_target_replica_ids);
		return;
	}
	for (size_t i = 0; i < in->n_target_replica_ids; i++) {
		const char *s = in->target_replica_ids[i];
		char *end;
		unsigned long v = strtoul(s, &end, 10);
		if (!*s || *end || v == 0 || v > UINT32_MAX) {
			it->code = EC_BROKER_NOT_AVAILABLE;
			snprintf(it->err, sizeof(it->err), "'%.40s' is not a broker id", s);
			return;
		}
		if (has(it->target, it->ntarget, (uint32_t)v)) {
			it->code = EC_INVALID_REPLICATION_FACTOR;
			snprintf(it->err, sizeof(it->err), "broker %lu is named twice", v);
			return;
		}
		it->target[it->ntarget++] = (uint32_t)v;
	}
}

void rmq_reassign_partitions(struct rmq_call *c, void *msg)
{
	Rustmq__Controller__ReassignPartitionsRequest *req = msg;
	struct rmq_bshard *bs = rmq_call_app(c);
	uint64_t interval;
	if (!rmq_move_interval(req->progress_interval, &interval)) {
		refuse_all(c, EC_INVALID_REQUEST, "progress_interval must be a positive duration");
		goto out;
	}
	if (req->n_partitions == 0) {
		refuse_all(c, EC_INVALID_REQUEST, "no partitions given");
		goto out;
	}
	struct rp *r = calloc(1, sizeof(*r) + req->n_partitions * sizeof(r->items[0]));
	if (!r) {
		rmq_call_finish(c, RMQ_GRPC_RESOURCE_EXHAUSTED, "out of memory");
		goto out;
	}
	r->n = req->n_partitions;
	r->interval_ns = interval;
	r->lk = calloc(r->n, sizeof(*r->lk));
	r->views = calloc(r->n, sizeof(*r->views));
	r->at = calloc(r->n, sizeof(*r->at));
	if (!r->lk || !r->views || !r->at) {
		rmq_call_finish(c, RMQ_GRPC_RESOURCE_EXHAUSTED, "out of memory");
		free(r->lk);
		free(r->views);
		free(r->at);
		free(r);
		goto out;
	}
	for (size_t i = 0; i < r->n; i++) {
		item_in(req->partitions[i], &r->items[i]);
		for (size_t j = 0; j < i; j++) {
			if (r->items[i].topic[0] && r->items[j].partition == r->items[i].partition &&
			    strcmp(r->items[j].topic, r->items[i].topic) == 0) {
				char why[300];
				snprintf(why, sizeof(why), "partition %.200s-%" PRIu32 " is given twice",
					 r->items[i].topic, r->items[i].partition);
				refuse_all(c, EC_INVALID_REQUEST, why);
				free(r->lk);
				free(r->views);
				free(r->at);
				free(r);
				goto out;
			}
		}
	}
	r->call = c;
	rmq_call_ref(c);
	r->away = true;
	rmq_call_set_ctx(c, r);
	r->req.build = rp_build;
	r->req.back = rp_back;
	rmq_ctrl_submit_from(bs, &r->req);
out:
	protobuf_c_message_free_unpacked(msg, NULL);
}

void rmq_reassign_cancel(struct rmq_call *c)
{
	struct rp *r = rmq_call_get_ctx(c);
	if (!r)
		return;
	rmq_call_set_ctx(c, NULL);
	if (r->away) {
		r->cancelled = true; /* freed when it comes back */
		return;
	}
	rmq_timer_cancel(rmq_bshard_current()->s, &r->timer);
	rp_free(r);
}
