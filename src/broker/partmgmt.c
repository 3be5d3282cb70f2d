/* SPDX-License-Identifier: Apache-2.0 */
/* partmgmt.c - PartitionManagementService (partmgmt.h). */
#include "broker/partmgmt.h"

#include "broker/broker.h"
#include "broker/cluster.h"
#include "broker/controller.h"
#include "broker/ctrl_wire.h"
#include "broker/errcode.h"
#include "broker/forward.h"
#include "broker/lead.h"
#include "broker/lookup.h"
#include "broker/methods.h"
#include "broker/reassign.h"
#include "broker/reply.h"
#include "broker/topics.h"
#include "broker/partition.pb-c.h"
#include "controller/admin.pb-c.h"
#include "controller/cluster.pb-c.h"
#include "core/log.h"
#include "core/util.h"

#include <inttypes.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define MS (1000ULL * 1000)
#define TICK_NS (100 * MS)          /* how often a migration's state is looked at */

#define RPHASE(x) RUSTMQ__CONTROLLER__REASSIGNMENT_PHASE__REASSIGNMENT_PHASE_##x
#define MPHASE(x) RUSTMQ__BROKER__MIGRATION_PHASE__MIGRATION_PHASE_##x

static bool has(const uint32_t *v, uint32_t n, uint32_t id)
{
	for (uint32_t i = 0; i < n; i++)
		if (v[i] == id)
			return true;
	return false;
}

/* ---- the decision: one partition to its replicas plus some, minus some -------------- */

struct pm_op {
	struct rmq_ctrl_req req;       /* req.code: the controller's answer */
	struct rmq_call *call;
	/* In. */
	char topic[RMQ_TOPIC_NAME_MAX + 2]; /* +1: over-long names are not found, never cut */
	uint32_t partition;
	char topic_id[40];             /* "" = any */
	uint32_t nadd, add[RMQ_REPLICAS_MAX];
	uint32_t nremove, remove[RMQ_REPLICAS_MAX];
	bool add_first;                /* the added brokers lead the list (role LEADER) */
	bool removal;                  /* RemovePartition: refuse to drop the in-sync copies */
	uint32_t leader_epoch;         /* 0: not checked */
	uint64_t broker_epoch;         /* of the one broker named; 0: not checked */
	bool cancel;                   /* MigratePartition gone: cancel the move to target */
	/* Out: a rustmq ErrorCode, and the move decided. */
	int code;
	char err[300];
	bool moving;                   /* a copy is being made */
	uint32_t leader_epoch_after;
	uint32_t ntarget, target[RMQ_REPLICAS_MAX];
	uint64_t gen;
};

/* Reads broker ids ids[0..n) into v; false (op->code set) for a bad one. */
static bool ids_in(struct pm_op *op, char **ids, size_t n, uint32_t *v, uint32_t *nv)
{
	if (n > RMQ_REPLICAS_MAX) {
		op->code = EC_INVALID_REQUEST;
		snprintf(op->err, sizeof(op->err), "at most %d brokers", RMQ_REPLICAS_MAX);
		return false;
	}
	for (size_t i = 0; i < n; i++) {
		uint32_t id = rmq_ctrl_node_id(ids[i]);
		if (!id) {
			op->code = EC_INVALID_REQUEST;
			snprintf(op->err, sizeof(op->err), "'%.40s' is not a broker id", ids[i]);
			return false;
		}
		if (!has(v, *nv, id))
			v[(*nv)++] = id;
	}
	return true;
}

static void tp_in(struct pm_op *op, const Rustmq__Common__TopicPartition *tp)
{
	if (!tp || !tp->topic[0]) {
		op->code = EC_INVALID_REQUEST;
		snprintf(op->err, sizeof(op->err), "give the partition's topic and index");
		return;
	}
	snprintf(op->topic, sizeof(op->topic), "%.*s", RMQ_TOPIC_NAME_MAX + 1, tp->topic);
	op->partition = tp->partition;
}

/* The partition and fences of an Assign or Remove request into op. */
static void op_in(struct pm_op *op, const Rustmq__Common__TopicPartition *tp, const char *topic_id,
		  uint32_t leader_epoch, uint64_t broker_epoch)
{
	tp_in(op, tp);
	snprintf(op->topic_id, sizeof(op->topic_id), "%.39s", topic_id);
	op->leader_epoch = leader_epoch;
	op->broker_epoch = broker_epoch;
}

/* The target of op in pa: its replicas (the target of the move that runs)
 * with op->add and without op->remove; the number of brokers, at most
 * 2 * RMQ_REPLICAS_MAX (target's room). */
static uint32_t target_of(const struct pm_op *op, const struct rmq_passign *pa, uint32_t *target)
{
	const uint32_t *base = pa->ntarget ? pa->target : pa->replicas;
	uint32_t nbase = pa->ntarget ? pa->ntarget : pa->nreplicas, n = 0;
	for (uint32_t i = 0; op->add_first && i < op->nadd; i++)
		target[n++] = op->add[i];
	for (uint32_t i = 0; i < nbase; i++)
		if (!has(op->remove, op->nremove, base[i]) && !has(target, n, base[i]))
			target[n++] = base[i];
	for (uint32_t i = 0; !op->add_first && i < op->nadd; i++)
		if (!has(target, n, op->add[i]))
			target[n++] = op->add[i];
	return n;
}

static int decide(struct pm_op *op, const struct rmq_meta *m, struct rmq_topic *t,
		  struct rmq_passign *pa, bool *changed)
{
	if (op->cancel) {
		if (!pa->ntarget || pa->ntarget != op->ntarget ||
		    memcmp(pa->target, op->target, op->ntarget * sizeof(*op->target)) != 0)
			return EC_OK; /* over, or another move runs: not ours to cancel */
		rmq_move_cancel(m, pa);
		*changed = true;
		return EC_OK;
	}
	if (op->topic_id[0] && strcmp(op->topic_id, t->id) != 0)
		return EC_OK; /* another making of the topic: nothing of it to remove */
	if (op->leader_epoch && op->leader_epoch < pa->leader_epoch) {
		snprintf(op->err, sizeof(op->err), "the partition is in leader epoch %" PRIu32,
			 pa->leader_epoch);
		return EC_STALE_EPOCH;
	}
	if (op->broker_epoch) {
		uint32_t id = op->nadd ? op->add[0] : op->remove[0];
		const struct rmq_broker_rec *r = rmq_meta_broker(m, id);
		if (op->nadd + op->nremove == 1 && r && r->epoch != op->broker_epoch) {
			snprintf(op->err, sizeof(op->err),
				 "broker %" PRIu32 " is in registration epoch %" PRIu64, id, r->epoch);
			return EC_STALE_EPOCH;
		}
	}
	uint32_t target[2 * RMQ_REPLICAS_MAX];
	uint32_t n = target_of(op, pa, target);
	if (n > RMQ_REPLICAS_MAX) {
		snprintf(op->err, sizeof(op->err), "the partition would have %" PRIu32
			 " replicas; at most %d", n, RMQ_REPLICAS_MAX);
		return EC_INVALID_REPLICATION_FACTOR;
	}
	if (n == 0) {
		snprintf(op->err, sizeof(op->err),
			 "the partition would have no replica: remove the topic or partition instead");
		return EC_INVALID_REPLICATION_FACTOR;
	}
	if (op->removal && pa->nisr > 0) {
		bool kept = false;
		for (uint32_t i = 0; i < n && !kept; i++)
			kept = has(pa->isr, pa->nisr, target[i]);
		if (!kept) {
			snprintf(op->err, sizeof(op->err),
				 "the brokers removed hold every in-sync copy (the ISR is %" PRIu32
				 " broker%s): add a replica and let it catch up first",
				 pa->nisr, pa->nisr == 1 ? "" : "s");
			return EC_NOT_ENOUGH_REPLICAS;
		}
	}
	op->ntarget = n;
	memcpy(op->target, target, n * sizeof(*target));
	return rmq_move_start(m, pa, target, n, changed, op->err, sizeof(op->err));
}

/* On the controller's leader: the state with op's move made, or NULL. */
static struct rmq_meta *pm_build(struct rmq_ctrl_req *req, const struct rmq_meta *cur)
{
	struct pm_op *op = RMQ_CONTAINER_OF(req, struct pm_op, req);
	if (op->code != EC_OK)
		return NULL; /* refused by the origin */
	struct rmq_meta *m = rmq_meta_copy(cur, 0);
	if (!m) {
		op->code = EC_RESOURCE_EXHAUSTED;
		snprintf(op->err, sizeof(op->err), "out of memory");
		return NULL;
	}
	long k = rmq_meta_find(m, op->topic);
	struct rmq_topic *t = k >= 0 ? &m->topics[k] : NULL;
	struct rmq_passign *pa = t && t->parts && op->partition < t->partitions
					 ? &t->parts[op->partition]
					 : NULL;
	bool changed = false;
	if (!pa) {
		op->code = t ? EC_PARTITION_NOT_FOUND : EC_TOPIC_NOT_FOUND;
		snprintf(op->err, sizeof(op->err), "no such %s", t ? "partition" : "topic");
	} else {
		op->code = decide(op, m, t, pa, &changed);
		op->moving = pa->ntarget != 0;
		op->leader_epoch_after = pa->leader_epoch;
		op->gen = pa->gen;
	}
	if (!changed) {
		rmq_meta_free(m);
		m = NULL;
	}
	return m;
}

/* op's answer: its own code, or the controller's when that failed. */
static int op_code(const struct pm_op *op, const char **msg)
{
	*msg = op->err;
	if (op->code != EC_OK || op->req.code == EC_OK)
		return op->code;
	*msg = op->req.code == EC_NOT_CONTROLLER ? "this node does not lead the controller; retry"
	       : op->req.code == EC_TIMEOUT ? "not committed in time: the move may still happen"
					    : "the controller could not take the change; retry";
	return op->req.code;
}

static struct pm_op *op_new(struct rmq_call *c, size_t size)
{
	struct pm_op *op = calloc(1, size);
	if (!op) {
		rmq_call_finish(c, RMQ_GRPC_RESOURCE_EXHAUSTED, "out of memory");
		return NULL;
	}
	op->call = c;
	rmq_call_ref(c);
	op->req.build = pm_build;
	return op;
}

static void op_free(struct pm_op *op)
{
	rmq_call_unref(op->call);
	free(op);
}

/* Whether controller_epoch is a deposed controller's (older than the term
 * this node knows; 0 = not fenced), with the reason in why. */
static bool stale_epoch(const struct rmq_bshard *bs, uint64_t epoch, char *why, size_t len)
{
	struct rmq_quorum q;
	rmq_cluster_quorum(bs, &q);
	if (!epoch || epoch >= q.term)
		return false;
	snprintf(why, len, "controller epoch %" PRIu64 " is older than %" PRIu64, epoch, q.term);
	return true;
}

/* The same for a unary call: true when refused (answered). */
static bool stale_controller(struct rmq_call *c, uint64_t epoch)
{
	char why[100];
	if (!stale_epoch(rmq_call_app(c), epoch, why, sizeof(why)))
		return false;
	rmq_refuse(c, EC_STALE_EPOCH, "%s", why);
	return true;
}

/* An empty list of brokers names the receiving broker: written into the
 * request before it is carried to the controller's leader.  false: out of
 * memory (answered). */
static bool name_self(struct rmq_call *c, char ***ids, size_t *n)
{
	struct rmq_bshard *bs = rmq_call_app(c);
	char id[12];
	if (*n)
		return true;
	snprintf(id, sizeof(id), "%" PRIu32, bs->b->self);
	*ids = malloc(sizeof(**ids));
	if (*ids && ((*ids)[0] = strdup(id))) {
		*n = 1;
		return true;
	}
	free(*ids);
	*ids = NULL;
	rmq_call_finish(c, RMQ_GRPC_RESOURCE_EXHAUSTED, "out of memory");
	return false;
}

/* ---- AssignPartition and RemovePartition -------------------------------------------- */

static void assign_back(struct rmq_ctrl_req *req)
{
	struct pm_op *op = RMQ_CONTAINER_OF(req, struct pm_op, req);
	struct rmq_bshard *bs = rmq_bshard_current();
	Rustmq__Broker__AssignPartitionResponse r = RUSTMQ__BROKER__ASSIGN_PARTITION_RESPONSE__INIT;
	Rustmq__Common__TopicPartition tp = RUSTMQ__COMMON__TOPIC_PARTITION__INIT;
	const char *msg;
	r.error_code = (Rustmq__Common__ErrorCode)op_code(op, &msg);
	r.error_message = (char *)msg;
	tp.topic = op->topic;
	tp.partition = op->partition;
	r.topic_partition = &tp;
	if (r.error_code == EC_OK) {
		const struct rmq_broker_rec *b = rmq_meta_broker(bs->meta, op->add[0]);
		r.shard = rmq_partition_shard(op->topic, op->partition, b && b->shards ? b->shards : 1);
		r.leader_epoch = op->leader_epoch_after;
		r.state = op->moving ? RUSTMQ__BROKER__REPLICA_STATE__REPLICA_STATE_RECOVERING
				     : RUSTMQ__BROKER__REPLICA_STATE__REPLICA_STATE_ONLINE;
		rmq_info("partition %s-%" PRIu32 ": AssignPartition of broker %" PRIu32 " %s",
			 op->topic, op->partition, op->add[0],
			 op->moving ? "started (its copy is being made)" : "done");
	}
	rmq_reply_pb(op->call, &r.base);
	op_free(op);
}

void rmq_pm_assign(struct rmq_call *c, void *msg)
{
	Rustmq__Broker__AssignPartitionRequest *req = msg;
	struct pm_op *op = NULL;
	if (stale_controller(c, req->controller_epoch))
		goto out;
	if (req->role != RUSTMQ__BROKER__PARTITION_ROLE__PARTITION_ROLE_LEADER &&
	    req->role != RUSTMQ__BROKER__PARTITION_ROLE__PARTITION_ROLE_FOLLOWER) {
		rmq_refuse(c, EC_INVALID_REQUEST, "give the replica's role (LEADER or FOLLOWER)");
		goto out;
	}
	if (!name_self(c, &req->adding_replica_ids, &req->n_adding_replica_ids))
		goto out;
	if (rmq_forward_admin(c, msg, rmq_pm_assign))
		return; /* another node leads the controller */
	if (!(op = op_new(c, sizeof(*op))))
		goto out;
	op_in(op, req->topic_partition, req->topic_id, req->leader_epoch, req->broker_epoch);
	if (op->code == EC_OK && ids_in(op, req->adding_replica_ids, req->n_adding_replica_ids,
					op->add, &op->nadd))
		(void)ids_in(op, req->removing_replica_ids, req->n_removing_replica_ids, op->remove,
			     &op->nremove);
	op->add_first = req->role == RUSTMQ__BROKER__PARTITION_ROLE__PARTITION_ROLE_LEADER;
	op->req.back = assign_back;
	rmq_ctrl_submit_from(rmq_call_app(c), &op->req);
out:
	protobuf_c_message_free_unpacked(msg, NULL);
}

static void remove_back(struct rmq_ctrl_req *req)
{
	struct pm_op *op = RMQ_CONTAINER_OF(req, struct pm_op, req);
	Rustmq__Broker__RemovePartitionResponse r = RUSTMQ__BROKER__REMOVE_PARTITION_RESPONSE__INIT;
	Rustmq__Common__TopicPartition tp = RUSTMQ__COMMON__TOPIC_PARTITION__INIT;
	const char *msg;
	r.error_code = (Rustmq__Common__ErrorCode)op_code(op, &msg);
	r.error_message = (char *)msg;
	tp.topic = op->topic;
	tp.partition = op->partition;
	r.topic_partition = &tp;
	if (r.error_code == EC_OK)
		rmq_info("partition %s-%" PRIu32 ": RemovePartition of broker %" PRIu32 " done",
			 op->topic, op->partition, op->remove[0]);
	rmq_reply_pb(op->call, &r.base);
	op_free(op);
}

void rmq_pm_remove(struct rmq_call *c, void *msg)
{
	Rustmq__Broker__RemovePartitionRequest *req = msg;
	struct pm_op *op = NULL;
	if (stale_controller(c, req->controller_epoch))
		goto out;
	if (!req->delete_log) {
		/* A replica no longer assigned deletes its copy (partition.c):
		 * keeping the files of a removed replica is not built. */
		rmq_refuse(c, EC_INVALID_REQUEST,
			   "delete_log must be true: a removed replica's files are always deleted");
		goto out;
	}
	if (!name_self(c, &req->removing_replica_ids, &req->n_removing_replica_ids))
		goto out;
	if (rmq_forward_admin(c, msg, rmq_pm_remove))
		return;
	if (!(op = op_new(c, sizeof(*op))))
		goto out;
	op_in(op, req->topic_partition, req->topic_id, req->leader_epoch, req->broker_epoch);
	if (op->code == EC_OK)
		(void)ids_in(op, req->removing_replica_ids, req->n_removing_replica_ids, op->remove,
			     &op->nremove);
	op->removal = true;
	op->req.back = remove_back;
	rmq_ctrl_submit_from(rmq_call_app(c), &op->req);
out:
	protobuf_c_message_free_unpacked(msg, NULL);
}

/* ---- MigratePartition -------------------------------------------------------------- */

struct mig {
	struct pm_op op;               /* first: op_new allocates the whole */
	struct rmq_fwd *relay;         /* carried to the controller's leader: the relay */
	struct rmq_timer timer;
	bool away;                     /* the decision or a lookup is out */
	bool cancelled;                /* the call ended while away */
	uint64_t interval_ns, next_ns, deadline_ns; /* deadline 0: none */
	uint64_t started_ms, version;
	int sent;                      /* the MigrationPhase last sent */
	uint64_t copy_end;             /* the leader's log end when first seen: COPYING below */
	uint64_t prev_bytes, prev_ns;  /* for bytes_per_sec */
	struct rmq_lookup lk;
	struct rmq_isr_view view;
};

static bool terminal(int phase)
{
	return phase == MPHASE(COMPLETED) || phase == MPHASE(FAILED) || phase == MPHASE(CANCELLED);
}

static void mig_free(struct mig *g)
{
	op_free(&g->op);
}

/* The call is over before the move: the move is cancelled (the proto's
 * "cancelling the call cancels the migration"), by a change of its own
 * that outlives the call. */
static void cancel_back(struct rmq_ctrl_req *req)
{
	struct pm_op *op = RMQ_CONTAINER_OF(req, struct pm_op, req);
	if (op->req.code != EC_OK)
		rmq_warn("partition %s-%" PRIu32 ": the migration's cancel was not taken (%d): "
			 "cancel it with ReassignPartitions",
			 op->topic, op->partition, op->req.code);
	free(op);
}

static void cancel_move(struct mig *g)
{
	struct pm_op *op = calloc(1, sizeof(*op));
	if (!op) {
		rmq_warn("partition %s-%" PRIu32 ": out of memory to cancel its migration",
			 g->op.topic, g->op.partition);
		return;
	}
	memcpy(op->topic, g->op.topic, sizeof(op->topic));
	op->partition = g->op.partition;
	op->cancel = true;
	op->ntarget = g->op.ntarget;
	memcpy(op->target, g->op.target, sizeof(op->target));
	op->req.build = pm_build;
	op->req.back = cancel_back;
	rmq_ctrl_submit_from(rmq_bshard_current(), &op->req);
}

/* The partition as this node knows it now, if it is still the one moved. */
static const struct rmq_passign *mig_part(const struct mig *g, const struct rmq_meta *m)
{
	long k = rmq_meta_find(m, g->op.topic);
	const struct rmq_topic *t = k >= 0 ? &m->topics[k] : NULL;
	if (!t || g->op.partition >= t->partitions || !t->parts ||
	    t->parts[g->op.partition].gen != g->op.gen)
		return NULL;
	return &t->parts[g->op.partition];
}

/* The MigrationPhase of g now, and the replica's progress into msg. */
static int mig_phase(struct mig *g, const struct rmq_passign *pa, bool viewed,
		     Rustmq__Broker__MigratePartitionProgress *msg)
{
	if (g->op.code != EC_OK)
		return MPHASE(FAILED);
	if (!pa) {
		g->op.code = EC_PARTITION_NOT_FOUND;
		snprintf(g->op.err, sizeof(g->op.err), "the partition was deleted while it moved");
		return MPHASE(FAILED);
	}
	uint32_t target = g->op.add[0];
	if (viewed && g->lk.code == EC_OK) {
		struct rmq_copy_progress cp;
		rmq_lookup_copied(&g->lk, target, &cp);
		msg->source_log_end_offset = cp.source_end;
		msg->target_log_end_offset = cp.target_end;
		msg->bytes_total = cp.bytes_total;
		msg->bytes_copied = cp.bytes_copied;
		if (!g->copy_end)
			g->copy_end = cp.source_end;
	}
	switch (rmq_move_phase(pa, g->op.target, g->op.ntarget)) {
	case RPHASE(COMPLETED):
		return MPHASE(COMPLETED);
	case RPHASE(ELECTING):
		return MPHASE(SWITCHING);
	case RPHASE(COPYING):
		return msg->target_log_end_offset < g->copy_end || !g->copy_end ? MPHASE(COPYING)
										  : MPHASE(CATCHING_UP);
	default:
		return MPHASE(CANCELLED);
	}
}

/* Sends where g stands (viewed: g->view and g->lk hold the leader's view).
 * Returns whether the phase is terminal and was said. */
static bool mig_report(struct mig *g, bool viewed)
{
	struct rmq_bshard *bs = rmq_bshard_current();
	Rustmq__Broker__MigratePartitionProgress msg = RUSTMQ__BROKER__MIGRATE_PARTITION_PROGRESS__INIT;
	Rustmq__Common__TopicPartition tp = RUSTMQ__COMMON__TOPIC_PARTITION__INIT;
	char src[12] = "", dst[12] = "";
	uint64_t now = rmq_now_ns();
	int phase = mig_phase(g, mig_part(g, bs->meta), viewed, &msg);
	if (!terminal(phase) && g->deadline_ns && now >= g->deadline_ns) {
		cancel_move(g);
		g->op.code = EC_TIMEOUT;
		snprintf(g->op.err, sizeof(g->op.err), "not done within the request's timeout: cancelled");
		phase = MPHASE(FAILED);
	}
	msg.error_code = (Rustmq__Common__ErrorCode)g->op.code;
	msg.error_message = g->op.err;
	tp.topic = g->op.topic;
	tp.partition = g->op.partition;
	msg.topic_partition = &tp;
	msg.phase = (Rustmq__Broker__MigrationPhase)phase;
	if (g->op.nremove)
		snprintf(src, sizeof(src), "%" PRIu32, g->op.remove[0]);
	if (g->op.nadd)
		snprintf(dst, sizeof(dst), "%" PRIu32, g->op.add[0]);
	msg.source_broker_id = src;
	msg.target_broker_id = dst;
	msg.started_at_ms = g->started_ms;
	if (g->prev_ns && now > g->prev_ns && msg.bytes_copied >= g->prev_bytes)
		msg.bytes_per_sec =
			(uint64_t)((double)(msg.bytes_copied - g->prev_bytes) * 1e9 / (double)(now - g->prev_ns));
	if (msg.bytes_per_sec && msg.bytes_total > msg.bytes_copied && !terminal(phase))
		msg.estimated_remaining_ms = (msg.bytes_total - msg.bytes_copied) * 1000 / msg.bytes_per_sec;
	if (viewed) {
		g->prev_bytes = msg.bytes_copied;
		g->prev_ns = now;
	}
	if (rmq_send_pb(g->op.call, &msg.base) < 0)
		return false; /* queue full, or the call is ending: the next tick tries again */
	g->sent = phase;
	return terminal(phase);
}

static void mig_tick(struct rmq_timer *t);

static void mig_rearm(struct mig *g)
{
	struct rmq_bshard *bs = rmq_bshard_current();
	if (rmq_timer_start(bs->s, &g->timer, rmq_now_ns() + TICK_NS, mig_tick) < 0) {
		rmq_call_set_ctx(g->op.call, NULL);
		rmq_call_finish(g->op.call, RMQ_GRPC_RESOURCE_EXHAUSTED,
				"no timer left on this shard to follow the migration");
		mig_free(g);
	}
}

/* Reports, then finishes or waits for the next tick. */
static void mig_step(struct mig *g, bool viewed)
{
	if (mig_report(g, viewed)) {
		rmq_call_set_ctx(g->op.call, NULL);
		rmq_call_finish(g->op.call, RMQ_GRPC_OK, NULL);
		mig_free(g);
		return;
	}
	mig_rearm(g);
}

static void mig_viewed(void *arg)
{
	struct mig *g = arg;
	g->away = false;
	if (g->cancelled) {
		mig_free(g);
		return;
	}
	mig_step(g, true);
}

static void mig_tick(struct rmq_timer *t)
{
	struct mig *g = RMQ_CONTAINER_OF(t, struct mig, timer);
	struct rmq_bshard *bs = rmq_bshard_current();
	uint64_t now = rmq_now_ns();
	const struct rmq_passign *pa = mig_part(g, bs->meta);
	bool due = now >= g->next_ns || bs->meta->version != g->version ||
		   (g->deadline_ns && now >= g->deadline_ns);
	if (!due) {
		mig_rearm(g);
		return;
	}
	g->version = bs->meta->version;
	if (now >= g->next_ns)
		g->next_ns = now + g->interval_ns;
	if (pa && pa->leader == bs->b->self && g->op.code == EC_OK) {
		/* The leader's view of the copy, from the partition's shard. */
		memset(&g->lk, 0, sizeof(g->lk));
		snprintf(g->lk.topic, sizeof(g->lk.topic), "%.*s", RMQ_TOPIC_NAME_MAX, g->op.topic);
		g->lk.partition = g->op.partition;
		g->lk.spec = RMQ_LOOKUP_ISR;
		g->lk.isr = &g->view;
		g->away = true;
		if (rmq_lookup_start(bs, &g->lk, 1, mig_viewed, g) == 0)
			return;
		g->away = false;
	}
	mig_step(g, false);
}

static void migrate_back(struct rmq_ctrl_req *req)
{
	struct mig *g = RMQ_CONTAINER_OF(req, struct mig, op.req);
	struct rmq_bshard *bs = rmq_bshard_current();
	g->away = false;
	if (g->cancelled) {
		if (g->op.code == EC_OK && g->op.req.code == EC_OK && g->op.moving)
			cancel_move(g);
		mig_free(g);
		return;
	}
	const char *msg;
	int code = op_code(&g->op, &msg);
	if (g->op.code == EC_OK && code != EC_OK) {
		g->op.code = code;
		snprintf(g->op.err, sizeof(g->op.err), "%s", msg);
	}
	if (g->op.code == EC_NOT_CONTROLLER) {
		struct rmq_quorum q;
		rmq_cluster_quorum(bs, &q);
		if (q.leader && q.leader != bs->b->self)
			snprintf(g->op.err, sizeof(g->op.err),
				 "this node does not lead the controller; node %s at %s does",
				 q.leader_id, q.leader_addr);
	}
	if (g->op.code == EC_OK)
		rmq_info("partition %s-%" PRIu32 ": migration from broker %" PRIu32 " to %" PRIu32
			 " started",
			 g->op.topic, g->op.partition, g->op.remove[0], g->op.add[0]);
	g->version = bs->meta->version;
	g->next_ns = rmq_now_ns() + g->interval_ns;
	mig_tick(&g->timer);
}

/* Reads the request into g; a refusal goes into g->op.code. */
static void migrate_in(struct mig *g, struct rmq_call *c,
		       const Rustmq__Broker__MigratePartitionRequest *req)
{
	struct rmq_bshard *bs = rmq_call_app(c);
	struct pm_op *op = &g->op;
	tp_in(op, req->topic_partition);
	if (op->code != EC_OK)
		return;
	uint32_t src = rmq_ctrl_node_id(req->source_broker_id);
	uint32_t dst = rmq_ctrl_node_id(req->target_broker_id);
	if (!req->target_broker_id[0] ||
	    (dst == bs->b->self && (!req->source_broker_id[0] || src == dst))) {
		op->code = EC_INVALID_REQUEST;
		snprintf(op->err, sizeof(op->err),
			 "shard moves are not built: name target_broker_id, another broker");
	} else if (!src || !dst || src == dst) {
		op->code = EC_INVALID_REQUEST;
		snprintf(op->err, sizeof(op->err),
			 "name two different brokers, source_broker_id and target_broker_id");
	} else if (req->throttle_bytes_per_sec) {
		op->code = EC_INVALID_REQUEST;
		snprintf(op->err, sizeof(op->err),
			 "a per-call throttle is not built: the leaders' --reassign-throttle "
			 "bounds copies");
	} else {
		op->add[op->nadd++] = dst;
		op->remove[op->nremove++] = src;
	}
	if (op->code != EC_OK)
		return;
	long k = rmq_meta_find(bs->meta, op->topic);
	const struct rmq_topic *t = k >= 0 ? &bs->meta->topics[k] : NULL;
	const struct rmq_passign *pa =
		t && t->parts && op->partition < t->partitions ? &t->parts[op->partition] : NULL;
	if (pa && !has(pa->replicas, pa->nreplicas, src) &&
	    !(pa->ntarget && has(pa->target, pa->ntarget, dst))) {
		op->code = EC_INVALID_REQUEST;
		snprintf(op->err, sizeof(op->err), "broker %" PRIu32 " hosts no replica of the partition",
			 src);
	} else if (pa && has(pa->replicas, pa->nreplicas, dst) && !pa->ntarget) {
		op->code = EC_INVALID_REQUEST;
		snprintf(op->err, sizeof(op->err), "broker %" PRIu32 " hosts a replica already", dst);
	}
}

/* The relay to the controller's leader is over (forward.h). */
static void relay_ended(void *arg)
{
	struct mig *g = arg;
	if (rmq_call_get_ctx(g->op.call) == g)
		rmq_call_set_ctx(g->op.call, NULL);
	mig_free(g);
}

void rmq_pm_migrate(struct rmq_call *c, void *msg)
{
	Rustmq__Broker__MigratePartitionRequest *req = msg;
	struct rmq_bshard *bs = rmq_call_app(c);
	struct mig *g = (struct mig *)op_new(c, sizeof(struct mig));
	if (!g)
		goto out;
	/* Decided and followed on the controller's leader, where the move is
	 * recorded; from another node the stream is relayed. */
	rmq_call_set_ctx(c, g);
	if (rmq_forward_stream(c, msg, rmq_pm_migrate, relay_ended, g, &g->relay))
		return; /* g is relay_ended's now (it may have run) */
	g->relay = NULL;
	g->started_ms = rmq_wall_ms();
	const Google__Protobuf__Duration *t = req->timeout;
	if (!rmq_move_interval(req->progress_interval, &g->interval_ns)) {
		g->op.code = EC_INVALID_REQUEST;
		snprintf(g->op.err, sizeof(g->op.err), "progress_interval must be a positive duration");
	} else if (t && (t->seconds < 0 || t->nanos < 0 || t->nanos >= 1000000000)) {
		g->op.code = EC_INVALID_REQUEST;
		snprintf(g->op.err, sizeof(g->op.err), "timeout must be a positive duration");
	} else if (t && (t->seconds || t->nanos) && t->seconds < 1000000000) {
		/* (A billion seconds and more is never.) */
		g->deadline_ns = rmq_now_ns() + (uint64_t)t->seconds * 1000000000 + (uint64_t)t->nanos;
	}
	if (g->op.code == EC_OK && stale_epoch(bs, req->controller_epoch, g->op.err, sizeof(g->op.err)))
		g->op.code = EC_STALE_EPOCH;
	if (g->op.code == EC_OK)
		migrate_in(g, c, req);
	rmq_call_set_ctx(c, g);
	g->away = true;
	g->op.req.back = migrate_back;
	rmq_ctrl_submit_from(bs, &g->op.req);
out:
	protobuf_c_message_free_unpacked(msg, NULL);
}

void rmq_pm_migrate_cancel(struct rmq_call *c)
{
	struct mig *g = rmq_call_get_ctx(c);
	if (!g)
		return;
	rmq_call_set_ctx(c, NULL);
	if (g->relay) {
		rmq_forward_stream_cancel(g->relay); /* relay_ended frees g */
		return;
	}
	if (g->away) {
		g->cancelled = true; /* freed when it comes back */
		return;
	}
	rmq_timer_cancel(rmq_bshard_current()->s, &g->timer);
	if (!terminal(g->sent) && g->op.code == EC_OK)
		cancel_move(g);
	mig_free(g);
}

/* ---- GetPartitionState -------------------------------------------------------------- */

struct pstate {
	struct rmq_call *call;
	size_t n;
	struct rmq_lookup v[];
};

/* One partition's state: the metadata's part, then its log's. */
static void state_of(const struct rmq_bshard *bs, const struct rmq_lookup *v,
		     Rustmq__Broker__PartitionState *ps, char (*ids)[RMQ_REPLICAS_MAX][12],
		     char **ptr[2], char *leader)
{
	long k = rmq_meta_find(bs->meta, v->topic);
	const struct rmq_topic *t = k >= 0 ? &bs->meta->topics[k] : NULL;
	ps->error_code = (Rustmq__Common__ErrorCode)v->code;
	ps->error_message = (char *)v->err;
	if (!t || !t->parts || v->partition >= t->partitions)
		return;
	const struct rmq_passign *pa = &t->parts[v->partition];
	ps->topic_id = (char *)t->id;
	ps->leader_epoch = pa->leader_epoch;
	ps->partition_epoch = pa->part_epoch;
	if (pa->leader)
		snprintf(leader, 12, "%" PRIu32, pa->leader);
	ps->leader_id = leader;
	const uint32_t *lists[2] = {pa->replicas, pa->isr};
	const uint32_t counts[2] = {pa->nreplicas, pa->nisr};
	for (int l = 0; l < 2; l++) {
		for (uint32_t i = 0; i < counts[l]; i++) {
			snprintf(ids[l][i], sizeof(ids[l][i]), "%" PRIu32, lists[l][i]);
			ptr[l][i] = ids[l][i];
		}
	}
	ps->replica_ids = ptr[0];
	ps->n_replica_ids = pa->nreplicas;
	ps->isr_ids = ptr[1];
	ps->n_isr_ids = pa->nisr;
	if (v->code == EC_REPLICA_NOT_AVAILABLE)
		return;
	ps->shard = rmq_partition_shard(v->topic, v->partition, bs->nshards);
	ps->role = pa->leader == bs->b->self ? RUSTMQ__BROKER__PARTITION_ROLE__PARTITION_ROLE_LEADER
					     : RUSTMQ__BROKER__PARTITION_ROLE__PARTITION_ROLE_FOLLOWER;
	if (v->code == EC_NOT_AVAILABLE) {
		ps->state = RUSTMQ__BROKER__REPLICA_STATE__REPLICA_STATE_RECOVERING;
		return;
	}
	if (v->code != EC_OK)
		return;
	ps->state = pa->ntarget && pa->leader == bs->b->self
			    ? RUSTMQ__BROKER__REPLICA_STATE__REPLICA_STATE_MIGRATING
			    : RUSTMQ__BROKER__REPLICA_STATE__REPLICA_STATE_ONLINE;
	ps->log_start_offset = v->log_start;
	ps->log_end_offset = v->log_end;
	ps->high_watermark = v->hw;
	ps->last_stable_offset = v->hw; /* no transactions: nothing open */
	ps->size_bytes = v->size_bytes;
	ps->segment_count = v->segments;
}

static void state_done(void *arg)
{
	struct pstate *st = arg;
	struct rmq_bshard *bs = rmq_bshard_current();
	size_t n = st->n;
	Rustmq__Broker__GetPartitionStateResponse r = RUSTMQ__BROKER__GET_PARTITION_STATE_RESPONSE__INIT;
	Rustmq__Broker__PartitionState *ps = calloc(n + 1, sizeof(*ps));
	Rustmq__Broker__PartitionState **pp = calloc(n + 1, sizeof(*pp));
	Rustmq__Common__TopicPartition *tps = calloc(n + 1, sizeof(*tps));
	char(*ids)[2][RMQ_REPLICAS_MAX][12] = calloc(n + 1, sizeof(*ids));
	char *(*ptr)[2][RMQ_REPLICAS_MAX] = calloc(n + 1, sizeof(*ptr));
	char(*leaders)[12] = calloc(n + 1, sizeof(*leaders));
	char self[12];
	if (!ps || !pp || !tps || !ids || !ptr || !leaders) {
		rmq_call_finish(st->call, RMQ_GRPC_RESOURCE_EXHAUSTED, "out of memory");
		goto out;
	}
	snprintf(self, sizeof(self), "%" PRIu32, bs->b->self);
	r.broker_id = self;
	for (size_t i = 0; i < n; i++) {
		rustmq__broker__partition_state__init(&ps[i]);
		rustmq__common__topic_partition__init(&tps[i]);
		tps[i].topic = st->v[i].topic;
		tps[i].partition = st->v[i].partition;
		ps[i].topic_partition = &tps[i];
		char **lists[2] = {ptr[i][0], ptr[i][1]};
		state_of(bs, &st->v[i], &ps[i], ids[i], lists, leaders[i]);
		pp[i] = &ps[i];
	}
	r.partitions = pp;
	r.n_partitions = n;
	rmq_reply_pb(st->call, &r.base);
out:
	free(ps);
	free(pp);
	free(tps);
	free(ids);
	free(ptr);
	free(leaders);
	rmq_call_unref(st->call);
	free(st);
}

void rmq_pm_state(struct rmq_call *c, void *msg)
{
	Rustmq__Broker__GetPartitionStateRequest *req = msg;
	struct rmq_bshard *bs = rmq_call_app(c);
	const struct rmq_meta *m = bs->meta;
	size_t n = req->n_topic_partitions;
	if (req->include_configs) {
		rmq_refuse(c, EC_INVALID_REQUEST,
			   "include_configs is not built: DescribeConfigs gives a topic's configuration");
		goto out;
	}
	if (n == 0) /* every replica hosted here: O(partitions * replicas) */
		for (size_t k = 0; k < m->ntopics; k++)
			for (uint32_t p = 0; m->topics[k].parts && p < m->topics[k].partitions; p++)
				n += has(m->topics[k].parts[p].replicas, m->topics[k].parts[p].nreplicas,
					 bs->b->self);
	struct pstate *st = calloc(1, sizeof(*st) + (n + 1) * sizeof(st->v[0]));
	if (!st) {
		rmq_call_finish(c, RMQ_GRPC_RESOURCE_EXHAUSTED, "out of memory");
		goto out;
	}
	st->n = n;
	if (req->n_topic_partitions) {
		for (size_t i = 0; i < n; i++) {
			const Rustmq__Common__TopicPartition *tp = req->topic_partitions[i];
			/* An over-long name is not found, never cut to another. */
			if (tp && strlen(tp->topic) <= RMQ_TOPIC_NAME_MAX)
				snprintf(st->v[i].topic, sizeof(st->v[i].topic), "%s", tp->topic);
			st->v[i].partition = tp ? tp->partition : 0;
		}
	} else {
		size_t i = 0;
		for (size_t k = 0; k < m->ntopics; k++) {
			const struct rmq_topic *t = &m->topics[k];
			for (uint32_t p = 0; t->parts && p < t->partitions; p++) {
				if (!has(t->parts[p].replicas, t->parts[p].nreplicas, bs->b->self))
					continue;
				snprintf(st->v[i].topic, sizeof(st->v[i].topic), "%s", t->name);
				st->v[i++].partition = p;
			}
		}
	}
	for (size_t i = 0; i < n; i++) {
		st->v[i].spec = RMQ_LOOKUP_STATE;
		st->v[i].hosted = true;
	}
	st->call = c;
	rmq_call_ref(c);
	if (rmq_lookup_start(bs, st->v, n, state_done, st) < 0) {
		rmq_call_finish(c, RMQ_GRPC_RESOURCE_EXHAUSTED, "out of memory");
		rmq_call_unref(c);
		free(st);
	}
out:
	protobuf_c_message_free_unpacked(msg, NULL);
}

/* ---- UpdatePartitionConfig ---------------------------------------------------------- */

/* A partition's configuration is its topic's here (rmq_topic_config):
 * UpdatePartitionConfig replaces the overrides of the topics of the
 * partitions named, through AlterConfigs' change (topics.h): every key
 * not given is deleted (back to the defaults), then each given one set. */
struct pm_config {
	size_t n;
	struct {
		char topic[RMQ_TOPIC_NAME_MAX + 2];
		uint32_t partition;
	} v[];
};

static const struct rmq_change_item *item_of_topic(const struct rmq_topic_change *ch,
						   const char *topic)
{
	for (size_t i = 0; i < ch->n; i++)
		if (strcmp(ch->items[i].name, topic) == 0)
			return &ch->items[i];
	return NULL;
}

static void config_done(struct rmq_topic_change *ch)
{
	struct pm_config *pc = ch->cb_arg;
	size_t n = pc->n;
	Rustmq__Broker__UpdatePartitionConfigResponse r =
		RUSTMQ__BROKER__UPDATE_PARTITION_CONFIG_RESPONSE__INIT;
	Rustmq__Broker__PartitionConfigResult *rs = calloc(n + 1, sizeof(*rs));
	Rustmq__Broker__PartitionConfigResult **rp = calloc(n + 1, sizeof(*rp));
	Rustmq__Common__TopicPartition *tps = calloc(n + 1, sizeof(*tps));
	if (!rs || !rp || !tps) {
		rmq_call_finish(ch->call, RMQ_GRPC_RESOURCE_EXHAUSTED, "out of memory");
		goto out;
	}
	for (size_t i = 0; i < ch->n; i++) {
		if (ch->items[i].code == EC_INVALID_CONFIG) {
			/* One set for every topic: refused for all, none took it. */
			r.error_code = RUSTMQ__COMMON__ERROR_CODE__INVALID_CONFIG;
			r.error_message = (char *)ch->items[i].err;
			rmq_reply_pb(ch->call, &r.base);
			goto out;
		}
	}
	for (size_t i = 0; i < n; i++) {
		const struct rmq_change_item *it = item_of_topic(ch, pc->v[i].topic);
		rustmq__broker__partition_config_result__init(&rs[i]);
		rustmq__common__topic_partition__init(&tps[i]);
		tps[i].topic = pc->v[i].topic;
		tps[i].partition = pc->v[i].partition;
		rs[i].topic_partition = &tps[i];
		rs[i].error_code = (Rustmq__Common__ErrorCode)it->code;
		rs[i].error_message = (char *)it->err;
		if (it->code == EC_OK && pc->v[i].partition >= it->result.partitions) {
			rs[i].error_code = RUSTMQ__COMMON__ERROR_CODE__PARTITION_NOT_FOUND;
			rs[i].error_message = (char *)"the topic has fewer partitions (its configuration "
						      "was set all the same)";
		}
		rp[i] = &rs[i];
	}
	r.partitions = rp;
	r.n_partitions = n;
	rmq_reply_pb(ch->call, &r.base);
out:
	free(rs);
	free(rp);
	free(tps);
	free(pc);
	rmq_call_unref(ch->call);
	rmq_topic_change_free(ch);
}

/* Item it: delete every key not among configs, then set each of them. */
static int config_item(struct rmq_change_item *it, Rustmq__Common__ConfigEntry **configs,
		       size_t n)
{
	if (rmq_topic_change_configs(it, RMQ_TOPIC_CONFIG_KEYS + n) < 0)
		return -1;
	size_t k = 0;
	for (unsigned key = 0; key < RMQ_TOPIC_CONFIG_KEYS; key++) {
		bool given = false;
		for (size_t i = 0; i < n && !given; i++)
			given = strcmp(configs[i]->name, rmq_topic_config_keys[key]) == 0;
		if (given)
			continue;
		snprintf(it->keys[k], sizeof(it->keys[k]), "%s", rmq_topic_config_keys[key]);
		it->ops[k++] = RUSTMQ__CONTROLLER__ALTER_CONFIG_OP__ALTER_CONFIG_OP_DELETE;
	}
	for (size_t i = 0; i < n; i++, k++) {
		snprintf(it->keys[k], sizeof(it->keys[k]), "%s", configs[i]->name);
		snprintf(it->vals[k], sizeof(it->vals[k]), "%s", configs[i]->value);
		it->ops[k] = RUSTMQ__CONTROLLER__ALTER_CONFIG_OP__ALTER_CONFIG_OP_SET;
	}
	it->nconf = k;
	return 0;
}

void rmq_pm_config(struct rmq_call *c, void *msg)
{
	Rustmq__Broker__UpdatePartitionConfigRequest *req = msg;
	struct rmq_bshard *bs = rmq_call_app(c);
	struct rmq_topic_change *ch = NULL;
	struct pm_config *pc = NULL;
	if (stale_controller(c, req->controller_epoch))
		goto out;
	if (req->n_topic_partitions == 0) {
		rmq_refuse(c, EC_INVALID_REQUEST, "no partitions given");
		goto out;
	}
	if (rmq_forward_admin(c, msg, rmq_pm_config))
		return;
	size_t n = req->n_topic_partitions, ntopics = 0;
	pc = calloc(1, sizeof(*pc) + (n + 1) * sizeof(pc->v[0]));
	if (!pc)
		goto nomem;
	pc->n = n;
	for (size_t i = 0; i < n; i++) {
		const Rustmq__Common__TopicPartition *tp = req->topic_partitions[i];
		snprintf(pc->v[i].topic, sizeof(pc->v[i].topic), "%.*s", RMQ_TOPIC_NAME_MAX + 1,
			 tp ? tp->topic : "");
		pc->v[i].partition = tp ? tp->partition : 0;
		bool seen = false;
		for (size_t j = 0; j < i && !seen; j++)
			seen = strcmp(pc->v[j].topic, pc->v[i].topic) == 0;
		ntopics += !seen;
	}
	ch = rmq_topic_change_new(bs, RMQ_CHANGE_ALTER, ntopics);
	if (!ch)
		goto nomem;
	for (size_t i = 0, k = 0; i < n; i++) {
		if (item_of_topic(ch, pc->v[i].topic))
			continue; /* its topic has an item */
		struct rmq_change_item *it = &ch->items[k++];
		snprintf(it->name, sizeof(it->name), "%s", pc->v[i].topic);
		if (config_item(it, req->configs, req->n_configs) < 0)
			goto nomem;
	}
	ch->call = c;
	rmq_call_ref(c);
	ch->cb_arg = pc;
	ch->done = config_done;
	rmq_topic_change_submit(bs, ch);
	goto out;
nomem:
	if (ch)
		rmq_topic_change_free(ch);
	free(pc);
	rmq_call_finish(c, RMQ_GRPC_RESOURCE_EXHAUSTED, "out of memory");
out:
	protobuf_c_message_free_unpacked(msg, NULL);
}
