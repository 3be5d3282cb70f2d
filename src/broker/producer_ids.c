/* SPDX-License-Identifier: Apache-2.0 */
/*
 * producer_ids.c - ProducerService.InitTransaction for idempotent
 * producers: a producer id no other producer of the cluster was given.
 *
 * The controller's state holds the last id given (state.proto
 * producer_ids).  A call goes to the controller's leader (forward.h), which
 * decides the next id as a change of that state: an id is never given
 * twice, across restarts and controller failovers, as Kafka gave them from
 * ZooKeeper before KIP-730.  One commit per call (a few milliseconds, and
 * batched with other changes): a producer initialises once per session.
 *
 * A producer that initialises again (producer_id given) is given a new id
 * at epoch 0 rather than its old id at a higher epoch: its sequences start
 * again either way, and nothing has to remember the old one.  Transactions
 * (a transactional id) are not served: UNIMPLEMENTED, as CommitTransaction.
 */
#include "broker/broker.h"
#include "broker/controller.h"
#include "broker/errcode.h"
#include "broker/forward.h"
#include "broker/methods.h"
#include "broker/reply.h"
#include "client/producer.pb-c.h"
#include "core/util.h"

#include <stdint.h>
#include <stdlib.h>

struct pid_req {
	struct rmq_ctrl_req req;      /* req.code: the controller's answer */
	struct rmq_call *call;
	int64_t id;                   /* decided; 0 when it could not be */
};

/* On the controller's leader: the state with one more id given. */
static struct rmq_meta *pid_build(struct rmq_ctrl_req *req, const struct rmq_meta *cur)
{
	struct pid_req *q = RMQ_CONTAINER_OF(req, struct pid_req, req);
	if (cur->producer_ids >= INT64_MAX)
		return NULL; /* every id given: q->id stays 0 */
	struct rmq_meta *m = rmq_meta_copy(cur, 0);
	if (!m)
		return NULL;
	m->producer_ids = cur->producer_ids + 1;
	q->id = (int64_t)m->producer_ids;
	return m;
}

static void pid_back(struct rmq_ctrl_req *req)
{
	struct pid_req *q = RMQ_CONTAINER_OF(req, struct pid_req, req);
	if (req->code == EC_NOT_CONTROLLER)
		rmq_refuse(q->call, EC_NOT_CONTROLLER,
			   "the controller's leader changed before the id was given; retry");
	else if (req->code == EC_TIMEOUT)
		rmq_refuse(q->call, EC_TIMEOUT,
			   "the controller did not commit the id in time; retry (an id may go unused)");
	else if (req->code != EC_OK || q->id == 0)
		rmq_refuse(q->call, req->code != EC_OK ? req->code : EC_RESOURCE_EXHAUSTED,
			   "no producer id could be given (the controller's store, memory, or every "
			   "id given)");
	else {
		Rustmq__Client__InitTransactionResponse r =
			RUSTMQ__CLIENT__INIT_TRANSACTION_RESPONSE__INIT;
		r.producer_id = q->id;
		r.producer_epoch = 0;
		rmq_reply_pb(q->call, &r.base);
	}
	rmq_call_unref(q->call);
	free(q);
}

void rmq_producer_init(struct rmq_call *c, void *msg)
{
	Rustmq__Client__InitTransactionRequest *req = msg;
	if (req->transactional_id[0]) {
		rmq_call_finish(c, RMQ_GRPC_UNIMPLEMENTED,
				"transactions are not served by this version of rmq: InitTransaction "
				"with an empty transactional_id gives an idempotent producer id");
		goto out;
	}
	if (rmq_forward_admin(c, msg, rmq_producer_init))
		return; /* another node leads the controller */
	struct pid_req *q = calloc(1, sizeof(*q));
	if (!q) {
		rmq_call_finish(c, RMQ_GRPC_RESOURCE_EXHAUSTED, "out of memory");
		goto out;
	}
	q->call = c;
	rmq_call_ref(c);
	q->req.build = pid_build;
	q->req.back = pid_back;
	rmq_ctrl_submit_from(rmq_call_app(c), &q->req);
out:
	protobuf_c_message_free_unpacked(msg, NULL);
}
