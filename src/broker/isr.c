/* SPDX-License-Identifier: Apache-2.0 */
/*
 * isr.c - BrokerReplicationService.UpdateISR (Kafka's AlterPartition): a
 * partition's leader asks the controller to change its ISR, which the
 * controller's leader decides and commits (forwarded there from any node).
 *
 * An update is taken only from the partition's leader, in its current
 * leader epoch, on the partition epoch it saw (every change of leader or
 * ISR raises it, so an update based on an older state, say one the
 * controller changed when it fenced a broker, is refused STALE_EPOCH), for
 * a new ISR of replicas on running brokers, the leader among them.  A
 * reassignment whose added replicas are all in the ISR then completes
 * (reassign.h).  Leaders call it when a follower has caught up
 * (lead.c, rmq_isr_propose).
 *
 * With new_leader_id, the leader also hands its leadership over, in the
 * next leader epoch, to a replica the new ISR holds: a new leader that
 * found a replica whose log holds records it lacks and a majority may
 * hold (recover.c, rmq_isr_hand_over).  That replica holds all of the
 * leader's log, so it is in sync whether or not the ISR named it before.
 */
#include "broker/isr.h"

#include "broker/broker.h"
#include "broker/cluster.h"
#include "broker/controller.h"
#include "broker/elect.h"
#include "broker/errcode.h"
#include "broker/forward.h"
#include "broker/link.h"
#include "broker/reassign.h"
#include "broker/replication.pb-c.h"
#include "common/metadata.pb-c.h"
#include "broker/reply.h"
#include "core/log.h"
#include "core/util.h"

#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define RUNNING RUSTMQ__COMMON__BROKER_STATE__BROKER_RUNNING
#define PATH "/rustmq.broker.BrokerReplicationService/UpdateISR"
#define PROPOSE_TIMEOUT_NS (5ULL * 1000 * 1000 * 1000)

struct isr_item {
	/* In. */
	char topic[RMQ_TOPIC_NAME_MAX + 2];
	uint32_t partition, leader_epoch, part_epoch;
	uint32_t nisr, isr[RMQ_REPLICAS_MAX];
	uint32_t new_leader;               /* 0: the leader stays */
	/* Out. */
	int code;
	char err[200];
	struct rmq_passign after;          /* the committed state, when the partition exists */
	bool found;
};

struct isr_op {
	struct rmq_ctrl_req req;           /* req.code: the controller's answer */
	struct rmq_call *call;
	uint32_t broker;
	uint64_t broker_epoch;
	size_t n;
	struct isr_item *items;
};

static bool has(const uint32_t *v, uint32_t n, uint32_t id)
{
	for (uint32_t i = 0; i < n; i++)
		if (v[i] == id)
			return true;
	return false;
}

/* On the controller's leader: the state with every valid update made, or
 * NULL when none is. */
static struct rmq_meta *isr_build(struct rmq_ctrl_req *req, const struct rmq_meta *cur)
{
	struct isr_op *op = RMQ_CONTAINER_OF(req, struct isr_op, req);
	struct rmq_meta *m = rmq_meta_copy(cur, 0);
	const struct rmq_broker_rec *asker = m ? rmq_meta_broker(m, op->broker) : NULL;
	bool changed = false;
	for (size_t i = 0; i < op->n; i++) {
		struct isr_item *it = &op->items[i];
		if (it->code != EC_OK)
			continue;
		if (!m) {
			it->code = EC_RESOURCE_EXHAUSTED;
			snprintf(it->err, sizeof(it->err), "out of memory");
			continue;
		}
		if (!asker || asker->epoch != op->broker_epoch || asker->state != RUNNING) {
			it->code = EC_STALE_EPOCH;
			snprintf(it->err, sizeof(it->err),
				 "broker %" PRIu32 " is not registered and running in epoch %" PRIu64,
				 op->broker, op->broker_epoch);
			continue;
		}
		struct rmq_topic *t;
		struct rmq_passign *pa = rmq_meta_passign(m, it->topic, it->partition, &t);
		if (!pa) {
			it->code = EC_PARTITION_NOT_FOUND;
			snprintf(it->err, sizeof(it->err), "no such partition");
			continue;
		}
		it->found = true;
		if (pa->leader != op->broker) {
			it->code = EC_NOT_LEADER;
			snprintf(it->err, sizeof(it->err), "broker %" PRIu32 " does not lead the partition",
				 op->broker);
		} else if (pa->leader_epoch != it->leader_epoch || pa->part_epoch != it->part_epoch) {
			it->code = EC_STALE_EPOCH;
			snprintf(it->err, sizeof(it->err),
				 "the partition is in leader epoch %" PRIu32 ", partition epoch %" PRIu32,
				 pa->leader_epoch, pa->part_epoch);
		} else {
			const char *why = NULL;
			const uint32_t leader = it->new_leader ? it->new_leader : op->broker;
			if (it->nisr == 0 || !has(it->isr, it->nisr, leader))
				why = "the new ISR must hold its leader";
			for (uint32_t j = 0; j < it->nisr && !why; j++) {
				const struct rmq_broker_rec *r = rmq_meta_broker(m, it->isr[j]);
				if (!has(pa->replicas, pa->nreplicas, it->isr[j]))
					why = "a member of the new ISR is not a replica";
				else if (!r || r->state != RUNNING)
					why = "a member of the new ISR is not a running broker";
				else if (has(it->isr, j, it->isr[j]))
					why = "a member of the new ISR is named twice";
			}
			if (why) {
				it->code = EC_INVALID_REQUEST;
				snprintf(it->err, sizeof(it->err), "%s", why);
			} else if (leader != op->broker) {
				memcpy(pa->isr, it->isr, it->nisr * sizeof(*it->isr));
				pa->nisr = it->nisr;
				rmq_elect_apply(pa, leader, RMQ_ELECT_TRANSFER); /* both epochs move */
				rmq_move_advance(m, pa);
				changed = true;
				rmq_info("%s-%" PRIu32 ": broker %" PRIu32 " hands the leadership to broker %" PRIu32
					 " in epoch %" PRIu32 " (its log holds more)",
					 it->topic, it->partition, op->broker, leader, pa->leader_epoch);
			} else if (it->nisr != pa->nisr ||
				   memcmp(it->isr, pa->isr, it->nisr * sizeof(*it->isr)) != 0) {
				memcpy(pa->isr, it->isr, it->nisr * sizeof(*it->isr));
				pa->nisr = it->nisr;
				pa->part_epoch++;
				rmq_move_advance(m, pa); /* a move whose replicas are in sync ends */
				changed = true;
			}
		}
		it->after = *pa;
	}
	if (m && !changed) {
		rmq_meta_free(m);
		m = NULL;
	}
	return m;
}

static void isr_free(struct isr_op *op)
{
	rmq_call_unref(op->call);
	free(op->items);
	free(op);
}

static void isr_reply(struct rmq_ctrl_req *req)
{
	struct isr_op *op = RMQ_CONTAINER_OF(req, struct isr_op, req);
	Rustmq__Broker__UpdateISRResponse r = RUSTMQ__BROKER__UPDATE_ISRRESPONSE__INIT;
	size_t n = op->n;
	Rustmq__Broker__IsrUpdateResult *rs = calloc(n + 1, sizeof(*rs));
	Rustmq__Broker__IsrUpdateResult **rp = calloc(n + 1, sizeof(*rp));
	Rustmq__Common__TopicPartition *tps = calloc(n + 1, sizeof(*tps));
	char(*ids)[RMQ_REPLICAS_MAX + 1][12] = calloc(n + 1, sizeof(*ids));
	char **ptrs = calloc((n + 1) * (RMQ_REPLICAS_MAX + 1), sizeof(*ptrs));
	if (!rs || !rp || !tps || !ids || !ptrs) {
		rmq_call_finish(op->call, RMQ_GRPC_RESOURCE_EXHAUSTED, "out of memory");
		goto out;
	}
	if (op->req.code != EC_OK) {
		r.error_code = (Rustmq__Common__ErrorCode)op->req.code;
		r.error_message = op->req.code == EC_NOT_CONTROLLER
					  ? "this node does not lead the controller; retry"
					  : "the controller could not take the change; retry";
	}
	for (size_t i = 0; i < n; i++) {
		struct isr_item *it = &op->items[i];
		rustmq__broker__isr_update_result__init(&rs[i]);
		rustmq__common__topic_partition__init(&tps[i]);
		tps[i].topic = it->topic;
		tps[i].partition = it->partition;
		rs[i].topic_partition = &tps[i];
		rs[i].error_code = (Rustmq__Common__ErrorCode)(op->req.code != EC_OK ? op->req.code
										     : it->code);
		rs[i].error_message = it->err;
		if (it->found) {
			snprintf(ids[i][RMQ_REPLICAS_MAX], 12, "%" PRIu32, it->after.leader);
			rs[i].leader_id = it->after.leader ? ids[i][RMQ_REPLICAS_MAX] : "";
			rs[i].leader_epoch = it->after.leader_epoch;
			rs[i].partition_epoch = it->after.part_epoch;
			rs[i].isr_ids = &ptrs[i * (RMQ_REPLICAS_MAX + 1)];
			for (uint32_t j = 0; j < it->after.nisr; j++) {
				snprintf(ids[i][j], 12, "%" PRIu32, it->after.isr[j]);
				rs[i].isr_ids[rs[i].n_isr_ids++] = ids[i][j];
			}
		}
		rp[i] = &rs[i];
	}
	r.partitions = rp;
	r.n_partitions = n;
	rmq_reply_pb(op->call, &r.base);
out:
	free(rs);
	free(rp);
	free(tps);
	free(ids);
	free(ptrs);
	isr_free(op);
}

static uint32_t parse_id(const char *s)
{
	char *end;
	unsigned long v = strtoul(s, &end, 10);
	return *s && !*end && v > 0 && v <= UINT32_MAX ? (uint32_t)v : 0;
}

void rmq_isr_update(struct rmq_call *c, void *msg)
{
	if (rmq_forward_admin(c, msg, rmq_isr_update))
		return; /* another node leads the controller */
	Rustmq__Broker__UpdateISRRequest *req = msg;
	struct rmq_bshard *bs = rmq_call_app(c);
	struct isr_op *op = calloc(1, sizeof(*op));
	if (op)
		op->items = calloc(req->n_partitions + 1, sizeof(*op->items));
	if (!op || !op->items) {
		free(op);
		rmq_call_finish(c, RMQ_GRPC_RESOURCE_EXHAUSTED, "out of memory");
		goto out;
	}
	op->broker = parse_id(req->broker_id);
	op->broker_epoch = req->broker_epoch;
	op->n = req->n_partitions;
	for (size_t i = 0; i < op->n; i++) {
		const Rustmq__Broker__IsrUpdate *u = req->partitions[i];
		struct isr_item *it = &op->items[i];
		if (u->topic_partition) {
			snprintf(it->topic, sizeof(it->topic), "%.*s", RMQ_TOPIC_NAME_MAX + 1,
				 u->topic_partition->topic);
			it->partition = u->topic_partition->partition;
		}
		it->leader_epoch = u->leader_epoch;
		it->part_epoch = u->partition_epoch > UINT32_MAX ? UINT32_MAX : (uint32_t)u->partition_epoch;
		it->new_leader = u->new_leader_id[0] ? parse_id(u->new_leader_id) : 0;
		if (!u->topic_partition || u->n_new_isr == 0 || u->n_new_isr > RMQ_REPLICAS_MAX ||
		    (u->new_leader_id[0] && !it->new_leader)) {
			it->code = EC_INVALID_REQUEST;
			snprintf(it->err, sizeof(it->err), "%s",
				 u->new_leader_id[0] ? "new_leader_id is not a broker id"
						     : "give the partition and 1 to 8 ISR members");
			continue;
		}
		for (size_t j = 0; j < u->n_new_isr && it->code == EC_OK; j++) {
			uint32_t id = u->new_isr[j] ? parse_id(u->new_isr[j]->broker_id) : 0;
			if (!id) {
				it->code = EC_INVALID_REQUEST;
				snprintf(it->err, sizeof(it->err), "an ISR member is not a broker id");
			}
			it->isr[it->nisr++] = id;
		}
	}
	op->call = c;
	rmq_call_ref(c);
	op->req.build = isr_build;
	op->req.back = isr_reply;
	rmq_ctrl_submit_from(bs, &op->req);
out:
	protobuf_c_message_free_unpacked(msg, NULL);
}

/* ---- a leader's proposals ------------------------------------------------------------ */

struct proposal {
	struct rmq_bshard *bs;
	uint8_t *buf;
	size_t len;
	void (*done)(void *arg, int code);
	void *arg;
};

static void proposed(void *arg, enum rmq_grpc_status status, const char *message,
		     const uint8_t *resp, size_t len)
{
	struct proposal *pr = arg;
	int code = EC_NOT_AVAILABLE;
	(void)message;
	if (status == RMQ_GRPC_OK) {
		Rustmq__Broker__UpdateISRResponse *r =
			rustmq__broker__update_isrresponse__unpack(NULL, len, resp);
		if (r) {
			code = r->error_code != EC_OK ? (int)r->error_code
			       : r->n_partitions ? (int)r->partitions[0]->error_code
						 : EC_INVALID_REQUEST;
			rustmq__broker__update_isrresponse__free_unpacked(r, NULL);
		}
	}
	pr->done(pr->arg, code);
	free(pr->buf);
	free(pr);
}

static struct rmq_link *link_of(struct rmq_bshard *bs)
{
	if (!bs->isr_link)
		bs->isr_link = rmq_link_new(bs->s, "ISR changes to the controller's leader", bs->b->cfg.peer_tls, bs->b->cfg.peer_authz, 0, 0, 0);
	return bs->isr_link;
}

static int propose(struct rmq_bshard *bs, const struct rmq_partition *p, uint32_t part_epoch,
		   const uint32_t *isr, uint32_t nisr, uint32_t new_leader,
		   void (*done)(void *arg, int code), void *arg)
{
	struct rmq_quorum q;
	rmq_cluster_quorum(bs, &q);
	if (!q.leader)
		return -EAGAIN;
	const struct rmq_broker_rec *self = rmq_meta_broker(bs->meta, bs->b->self);
	if (!self)
		return -EAGAIN;
	Rustmq__Broker__UpdateISRRequest req = RUSTMQ__BROKER__UPDATE_ISRREQUEST__INIT;
	Rustmq__Common__ApiVersion ver = RUSTMQ__COMMON__API_VERSION__INIT;
	Rustmq__Broker__IsrUpdate u = RUSTMQ__BROKER__ISR_UPDATE__INIT;
	Rustmq__Broker__IsrUpdate *up = &u;
	Rustmq__Common__TopicPartition tp = RUSTMQ__COMMON__TOPIC_PARTITION__INIT;
	Rustmq__Broker__IsrMember mem[RMQ_REPLICAS_MAX], *memp[RMQ_REPLICAS_MAX];
	char ids[RMQ_REPLICAS_MAX + 1][12], leader[12] = "";
	ver.major = 1;
	req.version = &ver;
	snprintf(ids[RMQ_REPLICAS_MAX], 12, "%" PRIu32, bs->b->self);
	req.broker_id = ids[RMQ_REPLICAS_MAX];
	req.broker_epoch = self->epoch;
	tp.topic = (char *)p->topic_name;
	tp.partition = p->index;
	u.topic_partition = &tp;
	u.leader_epoch = p->leader_epoch;
	u.partition_epoch = part_epoch;
	for (uint32_t i = 0; i < nisr; i++) {
		rustmq__broker__isr_member__init(&mem[i]);
		snprintf(ids[i], 12, "%" PRIu32, isr[i]);
		mem[i].broker_id = ids[i];
		memp[i] = &mem[i];
	}
	u.new_isr = memp;
	u.n_new_isr = nisr;
	if (new_leader) {
		snprintf(leader, sizeof(leader), "%" PRIu32, new_leader);
		u.new_leader_id = leader;
	}
	req.partitions = &up;
	req.n_partitions = 1;
	struct proposal *pr = calloc(1, sizeof(*pr));
	size_t len = rustmq__broker__update_isrrequest__get_packed_size(&req);
	if (pr)
		pr->buf = malloc(len ? len : 1);
	if (!pr || !pr->buf) {
		free(pr);
		return -ENOMEM;
	}
	rustmq__broker__update_isrrequest__pack(&req, pr->buf);
	pr->bs = bs;
	pr->len = len;
	pr->done = done;
	pr->arg = arg;
	/* To the controller's leader: this node's own, or another. */
	const char *addr = q.leader == bs->b->self ? rmq_meta_broker(bs->meta, bs->b->self)->endpoint
						   : q.leader_addr;
	struct rmq_link *l = link_of(bs);
	int rc = l ? rmq_link_unary(l, addr, PATH, pr->buf, len, PROPOSE_TIMEOUT_NS, proposed, pr)
		   : -ENOMEM;
	if (rc < 0) {
		free(pr->buf);
		free(pr);
	}
	return rc;
}

int rmq_isr_propose(struct rmq_bshard *bs, const struct rmq_partition *p, uint32_t part_epoch,
		    const uint32_t *isr, uint32_t nisr, void (*done)(void *arg, int code),
		    void *arg)
{
	return propose(bs, p, part_epoch, isr, nisr, 0, done, arg);
}

int rmq_isr_hand_over(struct rmq_bshard *bs, const struct rmq_partition *p, uint32_t part_epoch,
		      const uint32_t *isr, uint32_t nisr, uint32_t new_leader,
		      void (*done)(void *arg, int code), void *arg)
{
	return propose(bs, p, part_epoch, isr, nisr, new_leader, done, arg);
}

void rmq_isr_fini(struct rmq_bshard *bs)
{
	rmq_link_free(bs->isr_link);
	bs->isr_link = NULL;
}
