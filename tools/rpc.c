/* SPDX-License-Identifier: Apache-2.0 */
/*
 * rpc.c - blocking calls over the shard's gRPC client (see rpc.h).
 *
 * Lifecycle:
 *
 *   rmq_rpc_open ─► thread: rmq_runtime_run ─► init: client, connect,
 *                   eventfd read posted
 *     waits for on_connect ◄──────────────────────┘ (or init failing)
 *   rmq_rpc_close ─► closing = true, eventfd written ─► the read completes,
 *                   is not re-posted, rmq_runtime_stop ─► fini: client
 *                   destroyed ─► thread joined, runtime destroyed
 */
#include "rpc.h"

#include "broker/scram.h"
#include "common/types.pb-c.h"
#include "core/error.h"
#include "core/shard.h"
#include "core/util.h"
#include "net/client.h"

#include <errno.h>
#include <openssl/crypto.h>
#include <pthread.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/eventfd.h>
#include <unistd.h>

enum { CONN_PENDING = 1, CONN_UP = 0 }; /* else a negative error */

struct rmq_rpc {
	struct rmq_client_config cfg;
	struct rmq_runtime *rt;
	pthread_t thread;
	int run_rc;
	struct rmq_shard *s;
	struct rmq_client *cl;
	struct rmq_client_conn *cc;     /* NULL once lost */
	int efd;
	struct rmq_io_op efd_op;
	uint64_t efd_val;
	/* Shared with the main thread, under mu. */
	pthread_mutex_t mu;
	pthread_cond_t cv;
	int conn_state;                 /* CONN_PENDING, CONN_UP, or -error */
	bool exited;                    /* the runtime returned */
	bool closing;
	struct rmq_rpc_call *head, *tail;
};

/* A stream's response message, queued for the main thread. */
struct rmq_rpc_msg {
	struct rmq_rpc_msg *next;
	size_t len;
	uint8_t data[];
};

/* What connections opened from now on use (rmq_rpc_use_*). */
static struct rmq_tls_ctx *rpc_tls;
static char rpc_authz[1025];

static char *dup_str(const char *s)
{
	char *d = strdup(s ? s : "");
	return d; /* NULL on ENOMEM: the printers treat it as "" */
}

/* Runs on the shard: the answer, copied for the main thread. */
static void call_done(void *arg, enum rmq_grpc_status status, const char *message,
		      const uint8_t *resp, size_t resp_len)
{
	struct rmq_rpc_call *c = arg;
	struct rmq_rpc *rpc = c->rpc;
	uint8_t *copy = NULL;

	if (status == RMQ_GRPC_OK && !c->stream) {
		copy = malloc(resp_len ? resp_len : 1);
		if (!copy) {
			status = RMQ_GRPC_RESOURCE_EXHAUSTED;
			message = "out of memory copying the response";
		} else {
			memcpy(copy, resp, resp_len);
		}
	}
	char *msg = dup_str(message);
	pthread_mutex_lock(&rpc->mu);
	c->status = status;
	c->message = msg;
	c->resp = copy;
	c->resp_len = copy ? resp_len : 0;
	c->done = true;
	pthread_cond_broadcast(&rpc->cv);
	pthread_mutex_unlock(&rpc->mu);
}

static void fail_call(struct rmq_rpc_call *c, enum rmq_grpc_status st, const char *why)
{
	call_done(c, st, why, NULL, 0);
}

/* Runs on the shard: one message of a stream, copied for the main thread.
 * Out of memory ends the call: a report missed must not pass unseen. */
static void stream_message(struct rmq_ccall *cc, void *arg, const uint8_t *msg, size_t len)
{
	struct rmq_rpc_call *c = arg;
	struct rmq_rpc_msg *m = malloc(sizeof(*m) + len);
	if (!m) {
		rmq_ccall_cancel(cc);
		return;
	}
	m->next = NULL;
	m->len = len;
	memcpy(m->data, msg, len);
	pthread_mutex_lock(&c->rpc->mu);
	if (c->msgs_tail)
		c->msgs_tail->next = m;
	else
		c->msgs = m;
	c->msgs_tail = m;
	pthread_cond_broadcast(&c->rpc->cv);
	pthread_mutex_unlock(&c->rpc->mu);
}

static void stream_close(struct rmq_ccall *cc, void *arg, enum rmq_grpc_status status,
			 const char *message)
{
	(void)cc;
	call_done(arg, status, message, NULL, 0);
}

static const struct rmq_ccall_ops stream_ops = {stream_message, stream_close};

static int arm_efd(struct rmq_rpc *rpc)
{
	struct io_uring_sqe *sqe = rmq_io_sqe(rmq_shard_io(rpc->s), &rpc->efd_op);
	if (!sqe)
		return -EBUSY;
	io_uring_prep_read(sqe, rpc->efd, &rpc->efd_val, sizeof(rpc->efd_val), 0);
	return 0;
}

/* The eventfd was written: start what was queued, or stop. */
static void on_efd(struct rmq_io_op *op, int res, unsigned flags)
{
	struct rmq_rpc *rpc = RMQ_CONTAINER_OF(op, struct rmq_rpc, efd_op);
	(void)flags;

	pthread_mutex_lock(&rpc->mu);
	struct rmq_rpc_call *list = rpc->head;
	rpc->head = rpc->tail = NULL;
	bool closing = rpc->closing;
	pthread_mutex_unlock(&rpc->mu);

	while (list) {
		struct rmq_rpc_call *c = list;
		list = c->next;
		if (!rpc->cc || !rmq_client_conn_ok(rpc->cc)) {
			fail_call(c, RMQ_GRPC_UNAVAILABLE, "connection to the broker lost");
			continue;
		}
		struct rmq_ccall *sc;
		int rc = c->stream ? rmq_client_server_stream(rpc->cc, c->path, c->req, c->len,
							      c->timeout_ns, &stream_ops, c, &sc)
				   : rmq_client_unary(rpc->cc, c->path, c->req, c->len,
						      c->timeout_ns, call_done, c, NULL);
		if (rc < 0)
			fail_call(c, RMQ_GRPC_UNAVAILABLE, rmq_strerror(rc));
	}
	if (closing || (res < 0 && res != -EINTR && res != -EAGAIN) || arm_efd(rpc) < 0)
		rmq_runtime_stop(rpc->rt);
}

static void on_connect(struct rmq_client_conn *cc, void *arg, int res)
{
	struct rmq_rpc *rpc = arg;
	if (res < 0)
		rpc->cc = NULL;
	pthread_mutex_lock(&rpc->mu);
	rpc->conn_state = res < 0 ? res : CONN_UP;
	pthread_cond_broadcast(&rpc->cv);
	pthread_mutex_unlock(&rpc->mu);
}

static void on_conn_close(struct rmq_client_conn *cc, void *arg, int why)
{
	struct rmq_rpc *rpc = arg;
	(void)cc;
	(void)why;
	rpc->cc = NULL;
}

static const struct rmq_client_conn_ops conn_ops = {on_connect, on_conn_close};

static int shard_init(struct rmq_shard *s, void *arg)
{
	struct rmq_rpc *rpc = arg;
	rpc->s = s;
	rpc->efd_op.cb = on_efd;
	int rc = rmq_client_create(s, &rpc->cfg, &rpc->cl);
	if (rc == 0)
		rc = rmq_client_set_authorization(rpc->cl, rpc_authz);
	if (rc < 0)
		return rc;
	rc = arm_efd(rpc);
	if (rc == 0)
		rc = rmq_client_connect(rpc->cl, &conn_ops, rpc, &rpc->cc);
	if (rc < 0) {
		rpc->cc = NULL;
		return rc;
	}
	return 0;
}

static void shard_fini(struct rmq_shard *s, void *arg)
{
	struct rmq_rpc *rpc = arg;
	(void)s;
	rmq_client_destroy(rpc->cl);
	rpc->cl = NULL;
}

static void *run_thread(void *arg)
{
	struct rmq_rpc *rpc = arg;
	int rc = rmq_runtime_run(rpc->rt, shard_init, shard_fini, rpc);
	pthread_mutex_lock(&rpc->mu);
	rpc->run_rc = rc;
	rpc->exited = true;
	if (rpc->conn_state == CONN_PENDING)
		rpc->conn_state = rc < 0 ? rc : RMQ_ECLOSED;
	/* Anything still queued will never be started. */
	struct rmq_rpc_call *list = rpc->head;
	rpc->head = rpc->tail = NULL;
	pthread_mutex_unlock(&rpc->mu);
	while (list) {
		struct rmq_rpc_call *c = list;
		list = c->next;
		fail_call(c, RMQ_GRPC_UNAVAILABLE, "client stopped");
	}
	return NULL;
}

void rmq_rpc_use_tls(struct rmq_tls_ctx *tls)
{
	rpc_tls = tls;
}

void rmq_rpc_use_authorization(const char *value)
{
	snprintf(rpc_authz, sizeof(rpc_authz), "%s", value ? value : "");
}

int rmq_rpc_open(const char *host, uint16_t port, uint64_t connect_timeout_ns,
		 struct rmq_rpc **out)
{
	struct rmq_rpc *rpc = calloc(1, sizeof(*rpc));
	if (!rpc)
		return -ENOMEM;
	int rc;
	rmq_client_config_default(&rpc->cfg);
	rpc->cfg.host = host;
	rpc->cfg.port = port;
	rpc->cfg.connections_max = 1;
	rpc->cfg.calls_max = 64;
	rpc->cfg.recv_buffers = 64;
	rpc->cfg.connect_timeout_ns = connect_timeout_ns;
	rpc->cfg.tls = rpc_tls;
	rpc->conn_state = CONN_PENDING;
	pthread_mutex_init(&rpc->mu, NULL);
	pthread_cond_init(&rpc->cv, NULL);
	rpc->efd = eventfd(0, EFD_CLOEXEC);
	if (rpc->efd < 0) {
		rc = -errno;
		goto err_free;
	}
	struct rmq_runtime_config rcfg = {
		.shards = 1, .ring_entries = 256, .xshard_capacity = 64, .timers_max = 1024,
	};
	rc = rmq_runtime_create(&rcfg, &rpc->rt);
	if (rc < 0)
		goto err_efd;
	/* The shard thread starts with every signal blocked, so SIGINT and
	 * SIGTERM reach the main thread's handlers (rmq consume commits and
	 * leaves its group on them) and never interrupt the ring's waits. */
	sigset_t all, old;
	sigfillset(&all);
	pthread_sigmask(SIG_SETMASK, &all, &old);
	rc = -pthread_create(&rpc->thread, NULL, run_thread, rpc);
	pthread_sigmask(SIG_SETMASK, &old, NULL);
	if (rc < 0)
		goto err_rt;
	pthread_mutex_lock(&rpc->mu);
	while (rpc->conn_state == CONN_PENDING)
		pthread_cond_wait(&rpc->cv, &rpc->mu);
	rc = rpc->conn_state;
	pthread_mutex_unlock(&rpc->mu);
	if (rc < 0) {
		rmq_rpc_close(rpc);
		return rc;
	}
	*out = rpc;
	return 0;
err_rt:
	rmq_runtime_destroy(rpc->rt);
err_efd:
	close(rpc->efd);
err_free:
	pthread_cond_destroy(&rpc->cv);
	pthread_mutex_destroy(&rpc->mu);
	free(rpc);
	return rc;
}

static void kick(struct rmq_rpc *rpc)
{
	uint64_t one = 1;
	ssize_t n = write(rpc->efd, &one, sizeof(one));
	(void)n; /* an eventfd write fails only on overflow: it is readable then */
}

void rmq_rpc_submit(struct rmq_rpc *rpc, struct rmq_rpc_call *c)
{
	c->rpc = rpc;
	c->next = NULL;
	c->done = false;
	c->message = NULL;
	c->resp = NULL;
	c->resp_len = 0;
	c->msgs = c->msgs_tail = NULL;
	pthread_mutex_lock(&rpc->mu);
	bool exited = rpc->exited;
	if (!exited) {
		if (rpc->tail)
			rpc->tail->next = c;
		else
			rpc->head = c;
		rpc->tail = c;
	}
	pthread_mutex_unlock(&rpc->mu);
	if (exited)
		fail_call(c, RMQ_GRPC_UNAVAILABLE, "client stopped");
	else
		kick(rpc);
}

enum rmq_grpc_status rmq_rpc_wait(struct rmq_rpc_call *c)
{
	struct rmq_rpc *rpc = c->rpc;
	pthread_mutex_lock(&rpc->mu);
	while (!c->done)
		pthread_cond_wait(&rpc->cv, &rpc->mu);
	pthread_mutex_unlock(&rpc->mu);
	return c->status;
}

bool rmq_rpc_next(struct rmq_rpc_call *c, uint8_t **msg, size_t *len)
{
	struct rmq_rpc *rpc = c->rpc;
	pthread_mutex_lock(&rpc->mu);
	while (!c->msgs && !c->done)
		pthread_cond_wait(&rpc->cv, &rpc->mu);
	struct rmq_rpc_msg *m = c->msgs;
	if (m) {
		c->msgs = m->next;
		if (!c->msgs)
			c->msgs_tail = NULL;
	}
	pthread_mutex_unlock(&rpc->mu);
	if (!m)
		return false;
	/* The message's bytes move to the front of its own allocation: one
	 * buffer for the caller to free. */
	*len = m->len;
	memmove(m, m->data, m->len);
	*msg = (uint8_t *)m;
	return true;
}

void rmq_rpc_call_reset(struct rmq_rpc_call *c)
{
	while (c->msgs) {
		struct rmq_rpc_msg *m = c->msgs;
		c->msgs = m->next;
		free(m);
	}
	c->msgs_tail = NULL;
	free(c->message);
	free(c->resp);
	c->message = NULL;
	c->resp = NULL;
	c->resp_len = 0;
	c->done = false;
}

enum rmq_grpc_status rmq_rpc_unary(struct rmq_rpc *rpc, struct rmq_rpc_call *c)
{
	rmq_rpc_submit(rpc, c);
	return rmq_rpc_wait(c);
}

void rmq_rpc_close(struct rmq_rpc *rpc)
{
	if (!rpc)
		return;
	pthread_mutex_lock(&rpc->mu);
	rpc->closing = true;
	pthread_mutex_unlock(&rpc->mu);
	kick(rpc);
	pthread_join(rpc->thread, NULL);
	rmq_runtime_destroy(rpc->rt);
	close(rpc->efd);
	pthread_cond_destroy(&rpc->cv);
	pthread_mutex_destroy(&rpc->mu);
	free(rpc);
}

/* ---- logging in ------------------------------------------------------------------ */

/* One round of AuthService.Authenticate: the answer, or NULL with err. */
static Rustmq__Common__AuthenticationResponse *auth_round(struct rmq_rpc *rpc, const char *mech,
							   const void *data, size_t len,
							   ProtobufCBinaryData sid, char *err,
							   size_t errlen)
{
	static const Rustmq__Common__ApiVersion v1 = {PROTOBUF_C_MESSAGE_INIT(
		&rustmq__common__api_version__descriptor), 1, 0, 0};
	Rustmq__Common__AuthenticationRequest req = RUSTMQ__COMMON__AUTHENTICATION_REQUEST__INIT;
	req.version = (Rustmq__Common__ApiVersion *)&v1;
	req.mechanism = (char *)mech;
	req.auth_data.data = (uint8_t *)data;
	req.auth_data.len = len;
	req.session_id = sid;
	size_t n = rustmq__common__authentication_request__get_packed_size(&req);
	uint8_t *buf = malloc(n ? n : 1);
	if (!buf) {
		snprintf(err, errlen, "out of memory");
		return NULL;
	}
	rustmq__common__authentication_request__pack(&req, buf);
	struct rmq_rpc_call c = {.path = "/rustmq.client.AuthService/Authenticate", .req = buf,
				 .len = n, .timeout_ns = 30ULL * 1000 * 1000 * 1000};
	enum rmq_grpc_status st = rmq_rpc_unary(rpc, &c);
	OPENSSL_cleanse(buf, n);
	free(buf);
	Rustmq__Common__AuthenticationResponse *r =
		st == RMQ_GRPC_OK ? rustmq__common__authentication_response__unpack(NULL, c.resp_len,
										      c.resp)
				  : NULL;
	if (st != RMQ_GRPC_OK)
		snprintf(err, errlen, "Authenticate: %s %s", rmq_grpc_status_name(st),
			 c.message ? c.message : "");
	else if (!r)
		snprintf(err, errlen, "Authenticate: the answer does not parse");
	else if (r->error_code)
		snprintf(err, errlen, "%s", r->error_message);
	rmq_rpc_call_reset(&c);
	if (r && r->error_code) {
		rustmq__common__authentication_response__free_unpacked(r, NULL);
		r = NULL;
	}
	return r;
}

int rmq_rpc_login(struct rmq_rpc *rpc, const char *user, const char *pw, size_t pw_len,
		  const char *mech, char *authz, size_t cap, char *err, size_t errlen)
{
	char out[RMQ_SCRAM_OUT_MAX];
	size_t out_len;
	ProtobufCBinaryData none = {0, NULL};
	Rustmq__Common__AuthenticationResponse *r = NULL;
	enum rmq_scram_mech sm;
	if (strcmp(mech, "PLAIN") == 0) {
		size_t un = strlen(user);
		if (un + pw_len + 2 > sizeof(out)) {
			snprintf(err, errlen, "the user and its password are too long");
			return -1;
		}
		out[0] = '\0';
		memcpy(out + 1, user, un);
		out[1 + un] = '\0';
		memcpy(out + 2 + un, pw, pw_len);
		r = auth_round(rpc, mech, out, un + pw_len + 2, none, err, errlen);
	} else if (rmq_scram_mech_parse(mech, strlen(mech), &sm) == 0) {
		struct rmq_scram_client sc = {0};
		if (rmq_scram_client_start(&sc, sm, user, strlen(user), pw, pw_len, out, sizeof(out),
					   &out_len) < 0) {
			snprintf(err, errlen, "%s", rmq_scram_client_why(&sc));
		} else if ((r = auth_round(rpc, mech, out, out_len, none, err, errlen))) {
			Rustmq__Common__AuthenticationResponse *first = r;
			r = NULL;
			if (rmq_scram_client_final(&sc, first->challenge.data, first->challenge.len, out,
						   sizeof(out), &out_len) < 0)
				snprintf(err, errlen, "%s", rmq_scram_client_why(&sc));
			else
				r = auth_round(rpc, mech, out, out_len, first->session_id, err, errlen);
			rustmq__common__authentication_response__free_unpacked(first, NULL);
			if (r && rmq_scram_client_finish(&sc, r->challenge.data, r->challenge.len) < 0) {
				snprintf(err, errlen, "the broker's signature does not verify (%s)",
					 rmq_scram_client_why(&sc));
				rustmq__common__authentication_response__free_unpacked(r, NULL);
				r = NULL;
			}
		}
		rmq_scram_client_clear(&sc);
	} else {
		snprintf(err, errlen, "mechanism %s: SCRAM-SHA-256, SCRAM-SHA-512 or PLAIN", mech);
	}
	OPENSSL_cleanse(out, sizeof(out));
	if (!r)
		return -1;
	int rc = 0;
	if (!r->authenticated || !r->session_token.len ||
	    (size_t)snprintf(authz, cap, "Bearer %.*s", (int)r->session_token.len,
			     (const char *)r->session_token.data) >= cap) {
		snprintf(err, errlen, "the broker answered no usable token");
		rc = -1;
	}
	rustmq__common__authentication_response__free_unpacked(r, NULL);
	return rc;
}
