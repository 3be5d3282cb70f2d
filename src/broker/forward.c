/* SPDX-License-Identifier: Apache-2.0 */
/* forward.c - admin calls carried to the controller's leader (forward.h). */
#include "broker/forward.h"

#include "broker/broker.h"
#include "broker/cluster.h"
#include "broker/link.h"
#include "broker/reply.h"
#include "core/error.h"
#include "core/log.h"
#include "core/util.h"

#include <errno.h>
#include <protobuf-c/protobuf-c.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define RETRY_NS (20ULL * 1000 * 1000)
#define MARGIN_NS (50ULL * 1000 * 1000) /* the leader answers before we must */

struct rmq_fwd {
	struct rmq_call *call;
	void *msg;                 /* the decoded request, until it is sent */
	void (*local)(struct rmq_call *c, void *msg);
	struct rmq_bshard *bs;
	struct rmq_timer timer;
	uint32_t leader;
	char addr[RMQ_BROKER_HOST_MAX + 24];
	uint64_t deadline_ns;
	uint8_t *req;
	size_t len;
	/* A server-streaming call (rmq_forward_stream): the leader's call
	 * once sent, and the caller's word that the relay is over. */
	struct rmq_ccall *cc;
	void (*ended)(void *arg);
	void *arg;
};

static void fwd_free(struct rmq_fwd *f)
{
	if (f->ended)
		f->ended(f->arg);
	rmq_call_unref(f->call);
	if (f->msg)
		protobuf_c_message_free_unpacked(f->msg, NULL);
	free(f->req);
	free(f);
}

static void relayed(void *arg, enum rmq_grpc_status status, const char *message,
		    const uint8_t *resp, size_t len)
{
	struct rmq_fwd *f = arg;
	if (status == RMQ_GRPC_OK) {
		rmq_reply_bytes(f->call, resp, len);
	} else {
		rmq_call_finishf(f->call, RMQ_GRPC_UNAVAILABLE,
				 "forwarded to the controller's leader (node %u at %s), whose answer was "
				 "lost (%s: %s): the change may have taken effect; check before retrying",
				 f->leader, f->addr, rmq_grpc_status_name(status), message ? message : "");
	}
	fwd_free(f);
}

/* A stream's messages go to the call as they come; its end ends the call. */
static void relay_message(struct rmq_ccall *c, void *arg, const uint8_t *msg, size_t len)
{
	struct rmq_fwd *f = arg;
	if (rmq_call_send(f->call, msg, len) < 0)
		rmq_ccall_cancel(c); /* the call is ending, or its queue is full */
}

static void relay_close(struct rmq_ccall *c, void *arg, enum rmq_grpc_status status,
			const char *message)
{
	struct rmq_fwd *f = arg;
	(void)c;
	f->cc = NULL;
	if (rmq_call_done(f->call))
		; /* the client left first: its cancel ended the leader's call */
	else if (status == RMQ_GRPC_OK)
		rmq_call_finish(f->call, RMQ_GRPC_OK, NULL);
	else
		rmq_call_finishf(f->call, RMQ_GRPC_UNAVAILABLE,
				 "the stream from the controller's leader (node %u at %s) ended (%s: "
				 "%s): what it started may go on; check before retrying",
				 f->leader, f->addr, rmq_grpc_status_name(status), message ? message : "");
	fwd_free(f);
}

static const struct rmq_ccall_ops relay_ops = {relay_message, relay_close};

static void try_send(struct rmq_fwd *f);

static void on_retry(struct rmq_timer *t)
{
	try_send(RMQ_CONTAINER_OF(t, struct rmq_fwd, timer));
}

static struct rmq_link *link_of(struct rmq_bshard *bs)
{
	if (!bs->fwd_link)
		bs->fwd_link = rmq_link_new(bs->s, "forwarding to the controller's leader", bs->b->cfg.peer_tls, bs->b->cfg.peer_authz, 0, 0, 0);
	return bs->fwd_link;
}

/* The leader as this shard knows it now, into f; false: none known. */
static bool target(struct rmq_fwd *f)
{
	struct rmq_quorum q;
	rmq_cluster_quorum(f->bs, &q);
	f->leader = q.leader;
	snprintf(f->addr, sizeof(f->addr), "%s", q.leader != f->bs->b->self ? q.leader_addr : "");
	return q.leader != 0;
}

static void try_send(struct rmq_fwd *f)
{
	uint64_t now = rmq_now_ns();
	if (rmq_call_done(f->call)) {
		fwd_free(f); /* the client went away */
		return;
	}
	/* Until it is sent the leader may change (an election): ask the one
	 * known now, or decide here when it is this node. */
	int rc = -EAGAIN;
	if (target(f) && f->leader == f->bs->b->self) {
		void *msg = f->msg;
		f->msg = NULL;
		if (f->ended) /* told before local() takes the call over */
			f->ended(f->arg);
		f->ended = NULL;
		f->local(f->call, msg);
		fwd_free(f);
		return;
	}
	if (f->addr[0]) {
		struct rmq_link *l = link_of(f->bs);
		free(f->req);
		f->len = protobuf_c_message_get_packed_size(f->msg);
		f->req = malloc(f->len + 1);
		const char *path = rmq_call_method(f->call)->path;
		uint64_t dl = rmq_call_deadline_ns(f->call);
		if (!l || !f->req)
			rc = -ENOMEM;
		else if (now + MARGIN_NS >= f->deadline_ns)
			rc = -ETIMEDOUT;
		else if (f->ended) /* a stream lasts as long as its call allows */
			rc = rmq_link_server_stream(l, f->addr, path, f->req,
						    protobuf_c_message_pack(f->msg, f->req),
						    dl ? dl - now : 0, &relay_ops, f, &f->cc);
		else
			rc = rmq_link_unary(l, f->addr, path, f->req,
					    protobuf_c_message_pack(f->msg, f->req),
					    f->deadline_ns - now - MARGIN_NS, relayed, f);
	}
	if (rc == 0) {
		protobuf_c_message_free_unpacked(f->msg, NULL); /* sent: never again */
		f->msg = NULL;
		return;
	}
	if (rc == -EAGAIN && now + RETRY_NS < f->deadline_ns &&
	    rmq_timer_start(f->bs->s, &f->timer, now + RETRY_NS, on_retry) == 0)
		return;
	/* Never sent: nothing was decided. */
	if (!f->leader)
		rmq_call_finishf(f->call, RMQ_GRPC_UNAVAILABLE,
				 "the controller has no leader now (an election, or this node is cut "
				 "off from a majority); nothing was changed");
	else
		rmq_call_finishf(f->call, RMQ_GRPC_UNAVAILABLE,
				 "the controller's leader is node %u at %s, which this node cannot reach "
				 "(%s); nothing was changed",
				 f->leader, f->addr[0] ? f->addr : "an unknown address",
				 rc == -ETIMEDOUT || rc == -EAGAIN ? "not within the call's time"
								   : rmq_strerror(rc));
	fwd_free(f);
}

static bool forward(struct rmq_call *c, void *req, void (*local)(struct rmq_call *c, void *req),
		    void (*ended)(void *arg), void *arg, struct rmq_fwd **handle)
{
	struct rmq_bshard *bs = rmq_call_app(c);
	struct rmq_quorum q;
	rmq_cluster_quorum(bs, &q);
	if (!q.leader || q.leader == bs->b->self || !q.leader_addr[0])
		return false;
	struct rmq_fwd *f = calloc(1, sizeof(*f));
	if (!f)
		return false; /* decided here: answered NOT_CONTROLLER */
	f->msg = req;
	f->local = local;
	f->ended = ended;
	f->arg = arg;
	f->call = c;
	rmq_call_ref(c);
	f->bs = bs;
	uint64_t now = rmq_now_ns(), dl = rmq_call_deadline_ns(c);
	f->deadline_ns = dl && dl < now + RMQ_FORWARD_NS ? dl : now + RMQ_FORWARD_NS;
	if (handle)
		*handle = f;
	try_send(f);
	return true;
}

bool rmq_forward_admin(struct rmq_call *c, void *req,
		       void (*local)(struct rmq_call *c, void *req))
{
	return forward(c, req, local, NULL, NULL, NULL);
}

bool rmq_forward_stream(struct rmq_call *c, void *req,
			void (*local)(struct rmq_call *c, void *req), void (*ended)(void *arg),
			void *arg, struct rmq_fwd **handle)
{
	return forward(c, req, local, ended, arg, handle);
}

void rmq_forward_stream_cancel(struct rmq_fwd *f)
{
	if (f->cc)
		rmq_ccall_cancel(f->cc); /* its end frees f */
	/* Not sent yet: the next try sees the call over and frees f. */
}

void rmq_forward_fini(struct rmq_bshard *bs)
{
	rmq_link_free(bs->fwd_link);
	bs->fwd_link = NULL;
}
