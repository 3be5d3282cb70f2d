/* SPDX-License-Identifier: Apache-2.0 */
/* elect.c - leadership moves (elect.h). */
#include "broker/elect.h"

#include "broker/broker.h"
#include "broker/controller.h"
#include "broker/ctrl_wire.h"
#include "broker/errcode.h"
#include "broker/forward.h"
#include "broker/methods.h"
#include "broker/reply.h"
#include "broker/replication.pb-c.h"
#include "common/metadata.pb-c.h"
#include "controller/admin.pb-c.h"
#include "core/log.h"
#include "core/util.h"

#include <inttypes.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define RUNNING RUSTMQ__COMMON__BROKER_STATE__BROKER_RUNNING

static bool has(const uint32_t *v, uint32_t n, uint32_t id)
{
	for (uint32_t i = 0; i < n; i++)
		if (v[i] == id)
			return true;
	return false;
}

static bool running(const struct rmq_meta *m, uint32_t id)
{
	const struct rmq_broker_rec *r = rmq_meta_broker(m, id);
	return r && r->state == RUNNING;
}

/* The first replica, in preferred order, that is in the ISR (or any, when
 * !isr_only), runs, and is not skip; 0 when none is. */
static uint32_t first_running(const struct rmq_meta *m, const struct rmq_passign *pa, bool isr_only,
			      uint32_t skip)
{
	for (uint32_t i = 0; i < pa->nreplicas; i++) {
		uint32_t id = pa->replicas[i];
		if (id != skip && (!isr_only || has(pa->isr, pa->nisr, id)) && running(m, id))
			return id;
	}
	return 0;
}

static int refuse(char *why, size_t len, int code, const char *fmt, ...)
	__attribute__((format(printf, 4, 5)));
static int refuse(char *why, size_t len, int code, const char *fmt, ...)
{
	va_list ap;
	va_start(ap, fmt);
	vsnprintf(why, len, fmt, ap);
	va_end(ap);
	return code;
}

int rmq_elect_choose(const struct rmq_meta *m, const struct rmq_topic *t,
		     const struct rmq_passign *pa, enum rmq_elect_kind kind, uint32_t target,
		     uint32_t *leader, char *why, size_t len)
{
	*leader = 0;
	why[0] = '\0';
	switch (kind) {
	case RMQ_ELECT_TRANSFER:
		if (target == 0) {
			*leader = first_running(m, pa, true, pa->leader);
			return *leader ? EC_OK
				       : refuse(why, len, EC_NOT_ENOUGH_REPLICAS,
						"no in-sync replica but the leader (broker %" PRIu32
						") runs",
						pa->leader);
		}
		if (!has(pa->replicas, pa->nreplicas, target))
			return refuse(why, len, EC_REPLICA_NOT_AVAILABLE,
				      "broker %" PRIu32 " is not a replica of the partition", target);
		if (pa->leader == target)
			return refuse(why, len, EC_ELECTION_NOT_NEEDED,
				      "broker %" PRIu32 " leads the partition already", target);
		if (!has(pa->isr, pa->nisr, target))
			return refuse(why, len, EC_NOT_ENOUGH_REPLICAS,
				      "broker %" PRIu32 " is not in the ISR: it may lack committed "
				      "records",
				      target);
		if (!running(m, target))
			return refuse(why, len, EC_BROKER_NOT_AVAILABLE,
				      "broker %" PRIu32 " is fenced or not registered", target);
		*leader = target;
		return EC_OK;
	case RMQ_ELECT_PREFERRED: {
		uint32_t pref = pa->nreplicas ? pa->replicas[0] : 0;
		if (pa->leader == pref)
			return refuse(why, len, EC_ELECTION_NOT_NEEDED,
				      "the preferred replica (broker %" PRIu32 ") leads already", pref);
		if (!has(pa->isr, pa->nisr, pref))
			return refuse(why, len, EC_NOT_ENOUGH_REPLICAS,
				      "the preferred replica (broker %" PRIu32 ") is not in the ISR",
				      pref);
		if (!running(m, pref))
			return refuse(why, len, EC_NOT_ENOUGH_REPLICAS,
				      "the preferred replica (broker %" PRIu32 ") is fenced", pref);
		*leader = pref;
		return EC_OK;
	}
	case RMQ_ELECT_UNCLEAN:
		if (pa->leader)
			return refuse(why, len, EC_ELECTION_NOT_NEEDED,
				      "the partition has a leader (broker %" PRIu32 ")", pa->leader);
		if (!t->cfg.unclean_election)
			return refuse(why, len, EC_POLICY_VIOLATION,
				      "the topic does not set unclean.leader.election.enable=true");
		/* An in-sync replica that runs loses nothing; only then one
		 * outside the ISR. */
		*leader = first_running(m, pa, true, 0);
		if (!*leader)
			*leader = first_running(m, pa, false, 0);
		return *leader ? EC_OK
			       : refuse(why, len, EC_NOT_ENOUGH_REPLICAS,
					"no replica of the partition runs");
	}
	return refuse(why, len, EC_INVALID_REQUEST, "unknown election kind %d", (int)kind);
}

void rmq_elect_apply(struct rmq_passign *pa, uint32_t leader, enum rmq_elect_kind kind)
{
	pa->leader = leader;
	if (kind == RMQ_ELECT_UNCLEAN && !has(pa->isr, pa->nisr, leader)) {
		pa->isr[0] = leader;
		pa->nisr = 1;
	}
	pa->leader_epoch++;
	pa->part_epoch++;
}

size_t rmq_elect_balance(struct rmq_meta *m)
{
	size_t moved = 0;
	char why[160];
	for (size_t t = 0; t < m->ntopics; t++) {
		struct rmq_topic *tp = &m->topics[t];
		for (uint32_t p = 0; tp->parts && p < tp->partitions; p++) {
			uint32_t leader;
			if (rmq_elect_choose(m, tp, &tp->parts[p], RMQ_ELECT_PREFERRED, 0, &leader, why,
					     sizeof(why)) == EC_OK) {
				rmq_elect_apply(&tp->parts[p], leader, RMQ_ELECT_PREFERRED);
				moved++;
			}
		}
	}
	return moved;
}

/* ---- TransferLeadership and ElectLeaders ------------------------------------------- */

struct elect_item {
	char topic[RMQ_TOPIC_NAME_MAX + 2];
	uint32_t partition;
	int code;
	char err[200];
	bool found;                    /* leader and leader_epoch are the state after */
	uint32_t leader, leader_epoch;
};

struct elect_op {
	struct rmq_ctrl_req req;       /* req.code: the controller's answer */
	struct rmq_call *call;
	enum rmq_elect_kind kind;
	uint32_t target;               /* TRANSFER: 0 = choose */
	uint32_t expect_epoch;         /* TRANSFER: 0 = not checked */
	bool all;                      /* PREFERRED of every partition that can take it */
	size_t n;
	struct elect_item *items;      /* the request's, or (all) those moved */
};

static struct elect_op *op_new(struct rmq_call *c, enum rmq_elect_kind kind, size_t n)
{
	struct elect_op *op = calloc(1, sizeof(*op));
	if (op && n)
		op->items = calloc(n, sizeof(*op->items));
	if (!op || (n && !op->items)) {
		free(op);
		rmq_call_finish(c, RMQ_GRPC_RESOURCE_EXHAUSTED, "out of memory");
		return NULL;
	}
	op->kind = kind;
	op->n = n;
	op->call = c;
	rmq_call_ref(c);
	return op;
}

static void op_free(struct elect_op *op)
{
	rmq_call_unref(op->call);
	free(op->items);
	free(op);
}

static void item_of(struct elect_item *it, const Rustmq__Common__TopicPartition *tp)
{
	it->code = EC_OK;
	if (!tp || !tp->topic[0]) {
		it->code = EC_INVALID_REQUEST;
		snprintf(it->err, sizeof(it->err), "give the partition's topic and index");
		return;
	}
	/* One byte over the longest name: still not found, never cut to one. */
	snprintf(it->topic, sizeof(it->topic), "%.*s", RMQ_TOPIC_NAME_MAX + 1, tp->topic);
	it->partition = tp->partition;
}

/* ElectLeaders of every partition: an item for each one that moves. */
static bool items_of_all(struct elect_op *op, const struct rmq_meta *m)
{
	char why[160];
	size_t n = 0;
	for (int pass = 0; pass < 2; pass++) {
		for (size_t t = 0; t < m->ntopics; t++) {
			const struct rmq_topic *tp = &m->topics[t];
			for (uint32_t p = 0; tp->parts && p < tp->partitions; p++) {
				uint32_t leader;
				if (rmq_elect_choose(m, tp, &tp->parts[p], op->kind, 0, &leader, why,
						     sizeof(why)) != EC_OK)
					continue;
				if (pass == 1) {
					snprintf(op->items[n].topic, sizeof(op->items[n].topic), "%s",
						 tp->name);
					op->items[n].partition = p;
				}
				n++;
			}
		}
		if (pass == 0) {
			op->items = calloc(n + 1, sizeof(*op->items));
			if (!op->items)
				return false;
			n = 0;
		}
	}
	op->n = n;
	return true;
}

/* On the controller's leader: the state with every move made, or NULL
 * when none is. */
static struct rmq_meta *elect_build(struct rmq_ctrl_req *req, const struct rmq_meta *cur)
{
	struct elect_op *op = RMQ_CONTAINER_OF(req, struct elect_op, req);
	struct rmq_meta *m = rmq_meta_copy(cur, 0);
	if (m && op->all && !items_of_all(op, m)) {
		rmq_meta_free(m);
		m = NULL;
	}
	bool changed = false;
	for (size_t i = 0; i < op->n; i++) {
		struct elect_item *it = &op->items[i];
		if (it->code != EC_OK)
			continue;
		if (!m) {
			it->code = EC_RESOURCE_EXHAUSTED;
			snprintf(it->err, sizeof(it->err), "out of memory");
			continue;
		}
		long ti = rmq_meta_find(m, it->topic);
		struct rmq_topic *t = ti < 0 ? NULL : &m->topics[ti];
		if (!t) {
			it->code = EC_TOPIC_NOT_FOUND;
			snprintf(it->err, sizeof(it->err), "no such topic");
			continue;
		}
		if (!t->parts || it->partition >= t->partitions) {
			it->code = EC_PARTITION_NOT_FOUND;
			snprintf(it->err, sizeof(it->err), "the topic has %" PRIu32 " partitions",
				 t->partitions);
			continue;
		}
		struct rmq_passign *pa = &t->parts[it->partition];
		uint32_t leader = 0;
		if (op->expect_epoch && op->expect_epoch != pa->leader_epoch) {
			it->code = EC_STALE_EPOCH;
			snprintf(it->err, sizeof(it->err), "the partition is in leader epoch %" PRIu32,
				 pa->leader_epoch);
		} else {
			it->code = rmq_elect_choose(m, t, pa, op->kind, op->target, &leader, it->err,
						    sizeof(it->err));
		}
		if (it->code == EC_OK) {
			rmq_elect_apply(pa, leader, op->kind);
			changed = true;
		}
		it->found = true;
		it->leader = pa->leader;
		it->leader_epoch = pa->leader_epoch;
	}
	if (m && !changed) {
		rmq_meta_free(m);
		m = NULL;
	}
	return m;
}

/* The answer of item it, given the controller's answer code. */
static int item_code(const struct elect_op *op, const struct elect_item *it, const char **msg)
{
	*msg = it->err;
	if (op->req.code == EC_OK || it->code != EC_OK)
		return op->req.code == EC_OK ? it->code : op->req.code;
	*msg = op->req.code == EC_NOT_CONTROLLER ? "this node does not lead the controller; retry"
	       : op->req.code == EC_TIMEOUT ? "not committed in time: the move may still happen"
					    : "the controller could not take the change; retry";
	return op->req.code;
}

static void transfer_reply(struct rmq_ctrl_req *req)
{
	struct elect_op *op = RMQ_CONTAINER_OF(req, struct elect_op, req);
	const struct elect_item *it = &op->items[0];
	Rustmq__Broker__TransferLeadershipResponse r =
		RUSTMQ__BROKER__TRANSFER_LEADERSHIP_RESPONSE__INIT;
	Rustmq__Common__TopicPartition tp = RUSTMQ__COMMON__TOPIC_PARTITION__INIT;
	char leader[12] = "";
	const char *msg;
	r.error_code = (Rustmq__Common__ErrorCode)item_code(op, it, &msg);
	r.error_message = (char *)msg;
	tp.topic = (char *)it->topic;
	tp.partition = it->partition;
	r.topic_partition = &tp;
	if (it->found && it->leader)
		snprintf(leader, sizeof(leader), "%" PRIu32, it->leader);
	r.leader_id = leader;
	r.leader_epoch = it->found ? it->leader_epoch : 0;
	if (r.error_code == EC_OK)
		rmq_info("partition %s-%" PRIu32 ": leadership transferred to broker %s in epoch %" PRIu32,
			 it->topic, it->partition, leader, it->leader_epoch);
	rmq_reply_pb(op->call, &r.base);
	op_free(op);
}

static void elect_reply(struct rmq_ctrl_req *req)
{
	struct elect_op *op = RMQ_CONTAINER_OF(req, struct elect_op, req);
	Rustmq__Controller__ElectLeadersResponse r = RUSTMQ__CONTROLLER__ELECT_LEADERS_RESPONSE__INIT;
	size_t n = op->n;
	Rustmq__Controller__ElectLeadersResult *rs = calloc(n + 1, sizeof(*rs));
	Rustmq__Controller__ElectLeadersResult **rp = calloc(n + 1, sizeof(*rp));
	Rustmq__Common__TopicPartition *tps = calloc(n + 1, sizeof(*tps));
	char(*ids)[12] = calloc(n + 1, sizeof(*ids));
	if (!rs || !rp || !tps || !ids) {
		rmq_call_finish(op->call, RMQ_GRPC_RESOURCE_EXHAUSTED, "out of memory");
		goto out;
	}
	if (op->all && op->req.code != EC_OK) {
		const char *msg;
		struct elect_item none = {.code = EC_OK};
		r.error_code = (Rustmq__Common__ErrorCode)item_code(op, &none, &msg);
		r.error_message = (char *)msg;
	}
	size_t moved = 0;
	for (size_t i = 0; i < n; i++) {
		const struct elect_item *it = &op->items[i];
		const char *msg;
		rustmq__controller__elect_leaders_result__init(&rs[i]);
		rustmq__common__topic_partition__init(&tps[i]);
		tps[i].topic = (char *)it->topic;
		tps[i].partition = it->partition;
		rs[i].topic_partition = &tps[i];
		rs[i].error_code = (Rustmq__Common__ErrorCode)item_code(op, it, &msg);
		rs[i].error_message = (char *)msg;
		if (it->found && it->leader)
			snprintf(ids[i], sizeof(ids[i]), "%" PRIu32, it->leader);
		rs[i].leader_id = ids[i];
		rs[i].leader_epoch = it->found ? it->leader_epoch : 0;
		moved += rs[i].error_code == EC_OK;
		rp[i] = &rs[i];
	}
	if (moved)
		rmq_info("ElectLeaders %s: %zu partitions have a new leader",
			 op->kind == RMQ_ELECT_UNCLEAN ? "UNCLEAN" : "PREFERRED", moved);
	r.partitions = rp;
	r.n_partitions = n;
	rmq_reply_pb(op->call, &r.base);
out:
	free(rs);
	free(rp);
	free(tps);
	free(ids);
	op_free(op);
}

static void submit(struct rmq_call *c, struct elect_op *op, void (*back)(struct rmq_ctrl_req *r))
{
	op->req.build = elect_build;
	op->req.back = back;
	rmq_ctrl_submit_from(rmq_call_app(c), &op->req);
}

void rmq_elect_transfer(struct rmq_call *c, void *msg)
{
	if (rmq_forward_admin(c, msg, rmq_elect_transfer))
		return; /* another node leads the controller */
	Rustmq__Broker__TransferLeadershipRequest *req = msg;
	uint32_t target = req->target_broker_id[0] ? rmq_ctrl_node_id(req->target_broker_id) : 0;
	struct elect_op *op = NULL;
	if (req->target_broker_id[0] && !target)
		rmq_refuse(c, EC_INVALID_REQUEST, "target_broker_id '%s' is not a broker id",
			   req->target_broker_id);
	else if ((op = op_new(c, RMQ_ELECT_TRANSFER, 1))) {
		op->target = target;
		op->expect_epoch = req->leader_epoch;
		item_of(&op->items[0], req->topic_partition);
		submit(c, op, transfer_reply);
	}
	protobuf_c_message_free_unpacked(msg, NULL);
}

void rmq_elect_leaders(struct rmq_call *c, void *msg)
{
	if (rmq_forward_admin(c, msg, rmq_elect_leaders))
		return;
	Rustmq__Controller__ElectLeadersRequest *req = msg;
	bool unclean = req->election_type == RUSTMQ__CONTROLLER__ELECTION_TYPE__ELECTION_TYPE_UNCLEAN;
	struct elect_op *op = NULL;
	if (!unclean && req->election_type != RUSTMQ__CONTROLLER__ELECTION_TYPE__ELECTION_TYPE_PREFERRED)
		rmq_refuse(c, EC_INVALID_REQUEST, "unknown election_type %d", (int)req->election_type);
	else if (unclean && req->n_topic_partitions == 0)
		rmq_refuse(c, EC_INVALID_REQUEST,
			   "an UNCLEAN election names its partitions (it may lose committed records)");
	else if ((op = op_new(c, unclean ? RMQ_ELECT_UNCLEAN : RMQ_ELECT_PREFERRED,
			      req->n_topic_partitions))) {
		op->all = req->n_topic_partitions == 0;
		for (size_t i = 0; i < op->n; i++)
			item_of(&op->items[i], req->topic_partitions[i]);
		submit(c, op, elect_reply);
	}
	protobuf_c_message_free_unpacked(msg, NULL);
}

/* ---- preferred-leader balancing ------------------------------------------------------ */

static struct rmq_meta *balance_build(void *arg, const struct rmq_meta *cur)
{
	size_t *moved = arg;
	struct rmq_meta *m = rmq_meta_copy(cur, 0);
	*moved = m ? rmq_elect_balance(m) : 0;
	if (m && !*moved) {
		rmq_meta_free(m);
		m = NULL;
	}
	return m;
}

static void balance_applied(void *arg, int code)
{
	size_t *moved = arg;
	struct rmq_bshard *bs = rmq_bshard_current();
	if (code == EC_OK && *moved)
		rmq_info("preferred-leader balancing: %zu partitions led by their preferred replica "
			 "again",
			 *moved);
	bs->balance_pending = false;
}

void rmq_elect_tick(struct rmq_bshard *bs)
{
	uint64_t every = bs->b->cfg.leader_rebalance_ns, now = rmq_now_ns();
	char addr[8];
	if (!every || (uint32_t)rmq_ctrl_leader(bs, addr, sizeof(addr)) != bs->b->self ||
	    rmq_runtime_stopping(bs->b->rt)) {
		bs->balance_due_ns = 0; /* a new leader waits a whole interval */
		return;
	}
	if (!bs->balance_due_ns) {
		bs->balance_due_ns = now + every;
		return;
	}
	if (now < bs->balance_due_ns || bs->balance_pending)
		return;
	bs->balance_due_ns = now + every;
	bs->balance_pending = true;
	rmq_ctrl_submit(bs, balance_build, balance_applied, &bs->balance_moved);
}
