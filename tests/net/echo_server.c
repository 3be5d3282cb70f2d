/* SPDX-License-Identifier: Apache-2.0 */
/*
 * echo_server - a gRPC server on src/net for the Python tests.
 *
 * Starts a runtime of --shards shards, each serving 127.0.0.1 on one
 * ephemeral port (SO_REUSEPORT), prints "PORT <n>" once every shard
 * listens, and on SIGTERM/SIGINT stops gracefully: GOAWAY, --grace for the
 * calls in flight, then the rest is cancelled; exits 0.
 *
 * Methods (requests and responses are raw bytes):
 *   /test.Echo/Unary          the request
 *   /test.Echo/ServerStream   request = 4-byte BE count + payload: count copies
 *                             of the payload (waits on on_drain when full)
 *   /test.Echo/ClientStream   the concatenation, at half-close
 *   /test.Echo/Bidi           each message echoed as it arrives (a backlog
 *                             waits for on_drain while the queue is full)
 *   /test.Echo/Slow           request = 4-byte BE milliseconds + payload:
 *                             the payload after that long (a shard timer)
 *   /test.Echo/Fail           request = 1 status byte + text: finishes with
 *                             that status and message
 *   /test.Echo/Hold           request = 4-byte BE milliseconds + 4-byte BE
 *                             bytes: a server stream that holds the shard's
 *                             reads back for that long, by charging that
 *                             many bytes to the call (rmq_call_charge), or
 *                             with 0 bytes by rmq_server_pause_reads; sends
 *                             one message ("held") at once, and finishes OK
 *                             when it lets go
 *   /test.Echo/Shard          the serving shard's id, as text
 *   /test.Echo/Stats          one line of text, every shard's server stats
 *                             summed (gathered by cross-shard messages):
 *                             "connections=.. accepted=.. closed=.. calls=..
 *                             calls_total=.. protocol_errors=.. refused=..
 *                             cancels=.. request_bytes=.. paused=..
 *                             pauses=.. preface_timeouts=.. evicted=..
 *                             shards=.."; calls counts this Stats call
 *                             too, so an idle server says 1
 */
#include "core/error.h"
#include "core/flags.h"
#include "core/log.h"
#include "core/shard.h"
#include "core/util.h"
#include "net/server.h"

#include <signal.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

struct shard_state {
	struct rmq_server *srv;
	bool stopping;
	uint64_t stop_ns;
	uint64_t cancels;  /* on_cancel calls seen by the methods */
};

static struct rmq_runtime *g_rt;
static struct shard_state *g_states;
static unsigned g_nshards;
static _Atomic unsigned g_listening;
static struct rmq_net_config g_cfg;
static uint64_t g_grace_ns;

static struct shard_state *state(void)
{
	return &g_states[rmq_shard_id(rmq_shard_current())];
}

static uint32_t be32(const uint8_t *p)
{
	return (uint32_t)p[0] << 24 | (uint32_t)p[1] << 16 | (uint32_t)p[2] << 8 | p[3];
}

static void count_cancel(struct rmq_call *c)
{
	(void)c;
	state()->cancels++;
}

/* ---- Unary ----------------------------------------------------------------- */

static void unary_msg(struct rmq_call *c, const uint8_t *msg, size_t len)
{
	int rc = rmq_call_send(c, msg, len);
	if (rc < 0)
		rmq_call_finishf(c, RMQ_GRPC_INTERNAL, "send: %s", rmq_strerror(rc));
	else
		rmq_call_finish(c, RMQ_GRPC_OK, NULL);
}

/* Shard: the id of the shard serving the connection, as text. */
static void shard_msg(struct rmq_call *c, const uint8_t *msg, size_t len)
{
	char id[16];
	(void)msg;
	(void)len;
	int n = snprintf(id, sizeof(id), "%u", rmq_shard_id(rmq_shard_current()));
	int rc = rmq_call_send(c, id, (size_t)n);
	if (rc < 0)
		rmq_call_finishf(c, RMQ_GRPC_INTERNAL, "send: %s", rmq_strerror(rc));
	else
		rmq_call_finish(c, RMQ_GRPC_OK, NULL);
}

/* ---- ServerStream: flow-controlled by on_drain ------------------------------ */

struct sstream {
	uint32_t left;
	size_t len;
	uint8_t data[];
};

static void sstream_pump(struct rmq_call *c)
{
	struct sstream *st = rmq_call_get_ctx(c);
	int rc = 0;

	while (st->left > 0) {
		rc = rmq_call_send(c, st->data, st->len);
		if (rc == RMQ_EFULL)
			return; /* on_drain calls us again */
		if (rc < 0)
			break;
		st->left--;
	}
	if (rc < 0)
		rmq_call_finishf(c, RMQ_GRPC_INTERNAL, "send: %s", rmq_strerror(rc));
	else
		rmq_call_finish(c, RMQ_GRPC_OK, NULL);
	rmq_call_set_ctx(c, NULL);
	free(st);
	rmq_call_unref(c);
}

static void sstream_msg(struct rmq_call *c, const uint8_t *msg, size_t len)
{
	if (len < 4) {
		rmq_call_finish(c, RMQ_GRPC_INVALID_ARGUMENT, "need a 4-byte count");
		return;
	}
	struct sstream *st = malloc(sizeof(*st) + len - 4);
	if (!st) {
		rmq_call_finish(c, RMQ_GRPC_RESOURCE_EXHAUSTED, "no memory");
		return;
	}
	st->left = be32(msg);
	st->len = len - 4;
	memcpy(st->data, msg + 4, len - 4);
	rmq_call_set_ctx(c, st);
	rmq_call_ref(c);
	sstream_pump(c);
}

static void sstream_cancel(struct rmq_call *c)
{
	struct sstream *st = rmq_call_get_ctx(c);
	count_cancel(c);
	if (st) {
		rmq_call_set_ctx(c, NULL);
		free(st);
		rmq_call_unref(c);
	}
}

/* ---- ClientStream ------------------------------------------------------------- */

struct concat {
	size_t len, cap;
	uint8_t *p;
};

static void cstream_msg(struct rmq_call *c, const uint8_t *msg, size_t len)
{
	struct concat *cc = rmq_call_get_ctx(c);
	if (!cc) {
		cc = calloc(1, sizeof(*cc));
		if (!cc) {
			rmq_call_finish(c, RMQ_GRPC_RESOURCE_EXHAUSTED, "no memory");
			return;
		}
		rmq_call_set_ctx(c, cc);
	}
	if (cc->len + len > g_cfg.max_message_bytes) {
		rmq_call_finish(c, RMQ_GRPC_RESOURCE_EXHAUSTED, "concatenation too large");
		return;
	}
	if (cc->len + len > cc->cap) {
		size_t cap = cc->cap ? cc->cap * 2 : 4096;
		while (cap < cc->len + len)
			cap *= 2;
		uint8_t *p = realloc(cc->p, cap);
		if (!p) {
			rmq_call_finish(c, RMQ_GRPC_RESOURCE_EXHAUSTED, "no memory");
			return;
		}
		cc->p = p;
		cc->cap = cap;
	}
	if (len)
		memcpy(cc->p + cc->len, msg, len);
	cc->len += len;
}

static void concat_free(struct rmq_call *c)
{
	struct concat *cc = rmq_call_get_ctx(c);
	if (cc) {
		free(cc->p);
		free(cc);
		rmq_call_set_ctx(c, NULL);
	}
}

static void cstream_half_close(struct rmq_call *c)
{
	struct concat *cc = rmq_call_get_ctx(c);
	if (!rmq_call_done(c)) {
		int rc = rmq_call_send(c, cc ? cc->p : (const uint8_t *)"", cc ? cc->len : 0);
		if (rc < 0)
			rmq_call_finishf(c, RMQ_GRPC_INTERNAL, "send: %s", rmq_strerror(rc));
		else
			rmq_call_finish(c, RMQ_GRPC_OK, NULL);
	}
	concat_free(c);
}

static void cstream_cancel(struct rmq_call *c)
{
	count_cancel(c);
	concat_free(c);
}

/* ---- Bidi: echoes, keeping a backlog while the send queue is full ---------------- */

struct pending {
	struct pending *next;
	size_t len;
	uint8_t data[];
};

struct bidi {
	struct pending *head, **tail;
	bool half_closed;
};

static void bidi_free(struct rmq_call *c)
{
	struct bidi *b = rmq_call_get_ctx(c);
	if (!b)
		return;
	while (b->head) {
		struct pending *p = b->head;
		b->head = p->next;
		free(p);
	}
	free(b);
	rmq_call_set_ctx(c, NULL);
}

/* Sends the backlog; finishes once it is empty after the half-close. */
static void bidi_pump(struct rmq_call *c)
{
	struct bidi *b = rmq_call_get_ctx(c);
	if (!b || rmq_call_done(c))
		return;
	while (b->head) {
		int rc = rmq_call_send(c, b->head->data, b->head->len);
		if (rc == RMQ_EFULL)
			return; /* on_drain calls us again */
		if (rc < 0) {
			rmq_call_finishf(c, RMQ_GRPC_INTERNAL, "send: %s", rmq_strerror(rc));
			bidi_free(c);
			return;
		}
		struct pending *p = b->head;
		b->head = p->next;
		if (!b->head)
			b->tail = &b->head;
		free(p);
	}
	if (b->half_closed) {
		rmq_call_finish(c, RMQ_GRPC_OK, NULL);
		bidi_free(c);
	}
}

static void bidi_msg(struct rmq_call *c, const uint8_t *msg, size_t len)
{
	struct bidi *b = rmq_call_get_ctx(c);
	if (!b) {
		b = calloc(1, sizeof(*b));
		if (!b) {
			rmq_call_finish(c, RMQ_GRPC_RESOURCE_EXHAUSTED, "no memory");
			return;
		}
		b->tail = &b->head;
		rmq_call_set_ctx(c, b);
	}
	struct pending *p = malloc(sizeof(*p) + len);
	if (!p) {
		rmq_call_finish(c, RMQ_GRPC_RESOURCE_EXHAUSTED, "no memory");
		bidi_free(c);
		return;
	}
	p->next = NULL;
	p->len = len;
	if (len)
		memcpy(p->data, msg, len);
	*b->tail = p;
	b->tail = &p->next;
	bidi_pump(c);
}

static void bidi_half_close(struct rmq_call *c)
{
	struct bidi *b = rmq_call_get_ctx(c);
	if (!b) {
		if (!rmq_call_done(c))
			rmq_call_finish(c, RMQ_GRPC_OK, NULL);
		return;
	}
	b->half_closed = true;
	bidi_pump(c);
}

static void bidi_cancel(struct rmq_call *c)
{
	count_cancel(c);
	bidi_free(c);
}

/* ---- Slow: answers from a timer, so deadlines and cancels can hit it -------------- */

struct slow {
	struct rmq_timer timer;
	struct rmq_call *call;
	size_t len;
	uint8_t data[];
};

static void slow_fire(struct rmq_timer *t)
{
	struct slow *sl = RMQ_CONTAINER_OF(t, struct slow, timer);
	struct rmq_call *c = sl->call;

	if (!rmq_call_done(c)) {
		rmq_call_send(c, sl->data, sl->len);
		rmq_call_finish(c, RMQ_GRPC_OK, NULL);
	}
	rmq_call_set_ctx(c, NULL);
	free(sl);
	rmq_call_unref(c);
}

static void slow_msg(struct rmq_call *c, const uint8_t *msg, size_t len)
{
	uint32_t ms = len >= 4 ? be32(msg) : 0;
	size_t plen = len >= 4 ? len - 4 : 0;
	struct slow *sl = calloc(1, sizeof(*sl) + plen);

	if (!sl) {
		rmq_call_finish(c, RMQ_GRPC_RESOURCE_EXHAUSTED, "no memory");
		return;
	}
	sl->call = c;
	sl->len = plen;
	if (plen)
		memcpy(sl->data, msg + 4, plen);
	if (rmq_timer_start(rmq_shard_current(), &sl->timer, rmq_now_ns() + ms * 1000000ULL,
			    slow_fire) < 0) {
		free(sl);
		rmq_call_finish(c, RMQ_GRPC_UNAVAILABLE, "no timer");
		return;
	}
	rmq_call_set_ctx(c, sl);
	rmq_call_ref(c);
}

static void slow_cancel(struct rmq_call *c)
{
	struct slow *sl = rmq_call_get_ctx(c);
	count_cancel(c);
	if (sl) {
		rmq_timer_cancel(rmq_shard_current(), &sl->timer);
		rmq_call_set_ctx(c, NULL);
		free(sl);
		rmq_call_unref(c);
	}
}

/* ---- Fail ------------------------------------------------------------------------- */

static void fail_msg(struct rmq_call *c, const uint8_t *msg, size_t len)
{
	char text[1100];
	size_t n = len > 1 ? len - 1 : 0;

	if (n >= sizeof(text))
		n = sizeof(text) - 1;
	if (n)
		memcpy(text, msg + 1, n);
	text[n] = '\0';
	rmq_call_finish(c, len ? (enum rmq_grpc_status)msg[0] : RMQ_GRPC_UNKNOWN, n ? text : NULL);
}

/* ---- Hold: read backpressure from the application --------------------------------- */

#define HOLD_REASON 1u

struct hold {
	struct rmq_timer timer;
	struct rmq_call *call;
	uint32_t bytes;
};

/* Lets go of the shard's reads: the charge, or the pause. */
static void hold_release(struct rmq_call *c, struct hold *h)
{
	if (h->bytes)
		rmq_call_uncharge(c, h->bytes);
	else if (state()->srv)
		rmq_server_resume_reads(state()->srv, HOLD_REASON);
	rmq_call_set_ctx(c, NULL);
	free(h);
	rmq_call_unref(c);
}

static void hold_fire(struct rmq_timer *t)
{
	struct hold *h = RMQ_CONTAINER_OF(t, struct hold, timer);
	struct rmq_call *c = h->call;

	rmq_call_ref(c);
	hold_release(c, h);
	if (!rmq_call_done(c))
		rmq_call_finish(c, RMQ_GRPC_OK, NULL);
	rmq_call_unref(c);
}

static void hold_msg(struct rmq_call *c, const uint8_t *msg, size_t len)
{
	if (len != 8) {
		rmq_call_finish(c, RMQ_GRPC_INVALID_ARGUMENT, "need 4-byte ms and 4-byte bytes");
		return;
	}
	struct hold *h = calloc(1, sizeof(*h));
	if (!h) {
		rmq_call_finish(c, RMQ_GRPC_RESOURCE_EXHAUSTED, "no memory");
		return;
	}
	h->call = c;
	h->bytes = be32(msg + 4);
	if (rmq_timer_start(rmq_shard_current(), &h->timer,
			    rmq_now_ns() + be32(msg) * 1000000ULL, hold_fire) < 0) {
		free(h);
		rmq_call_finish(c, RMQ_GRPC_UNAVAILABLE, "no timer");
		return;
	}
	rmq_call_ref(c);
	rmq_call_set_ctx(c, h);
	if (h->bytes)
		rmq_call_charge(c, h->bytes);
	else
		rmq_server_pause_reads(state()->srv, HOLD_REASON);
	rmq_call_send(c, "held", 4);
}

static void hold_cancel(struct rmq_call *c)
{
	struct hold *h = rmq_call_get_ctx(c);
	count_cancel(c);
	if (h) {
		rmq_timer_cancel(rmq_shard_current(), &h->timer);
		hold_release(c, h);
	}
}

/* ---- Stats: every shard's counters, gathered by message ------------------------------ */

struct stats_req;

struct stats_part {
	struct rmq_xmsg m;
	struct stats_req *req;
	struct rmq_server_stats st;
	uint64_t cancels;
};

struct stats_req {
	struct rmq_call *call;
	unsigned home;
	unsigned pending;
	struct stats_part parts[];
};

static void stats_back(struct rmq_xmsg *m)
{
	struct stats_part *part = RMQ_CONTAINER_OF(m, struct stats_part, m);
	struct stats_req *req = part->req;
	char text[512];

	if (--req->pending > 0)
		return;
	struct rmq_server_stats sum = {0};
	uint64_t cancels = 0;
	for (unsigned i = 0; i < g_nshards; i++) {
		const struct rmq_server_stats *st = &req->parts[i].st;
		sum.connections += st->connections;
		sum.accepted += st->accepted;
		sum.closed += st->closed;
		sum.calls += st->calls;
		sum.calls_total += st->calls_total;
		sum.protocol_errors += st->protocol_errors;
		sum.refused += st->refused;
		sum.request_bytes += st->request_bytes;
		sum.paused_connections += st->paused_connections;
		sum.pauses += st->pauses;
		sum.preface_timeouts += st->preface_timeouts;
		sum.evicted += st->evicted;
		cancels += req->parts[i].cancels;
	}
	int n = snprintf(text, sizeof(text),
			 "connections=%llu accepted=%llu closed=%llu calls=%llu calls_total=%llu "
			 "protocol_errors=%llu refused=%llu cancels=%llu request_bytes=%llu "
			 "paused=%llu pauses=%llu preface_timeouts=%llu evicted=%llu shards=%u\n",
			 (unsigned long long)sum.connections, (unsigned long long)sum.accepted,
			 (unsigned long long)sum.closed, (unsigned long long)sum.calls,
			 (unsigned long long)sum.calls_total,
			 (unsigned long long)sum.protocol_errors, (unsigned long long)sum.refused,
			 (unsigned long long)cancels, (unsigned long long)sum.request_bytes,
			 (unsigned long long)sum.paused_connections, (unsigned long long)sum.pauses,
			 (unsigned long long)sum.preface_timeouts, (unsigned long long)sum.evicted,
			 g_nshards);
	if (!rmq_call_done(req->call)) {
		rmq_call_send(req->call, text, (size_t)n);
		rmq_call_finish(req->call, RMQ_GRPC_OK, NULL);
	}
	rmq_call_unref(req->call);
	free(req);
}

static void stats_collect(struct rmq_xmsg *m)
{
	struct stats_part *part = RMQ_CONTAINER_OF(m, struct stats_part, m);
	struct shard_state *st = state();

	if (st->srv)
		part->st = *rmq_server_stats(st->srv);
	part->cancels = st->cancels;
	part->m.fn = stats_back;
	rmq_shard_post(rmq_shard_current(), part->req->home, &part->m);
}

static void stats_msg(struct rmq_call *c, const uint8_t *msg, size_t len)
{
	(void)msg;
	(void)len;
	struct stats_req *req = calloc(1, sizeof(*req) + g_nshards * sizeof(req->parts[0]));
	if (!req) {
		rmq_call_finish(c, RMQ_GRPC_RESOURCE_EXHAUSTED, "no memory");
		return;
	}
	req->call = c;
	req->home = rmq_shard_id(rmq_shard_current());
	req->pending = g_nshards;
	rmq_call_ref(c);
	for (unsigned i = 0; i < g_nshards; i++) {
		req->parts[i].req = req;
		req->parts[i].m.fn = stats_collect;
		rmq_shard_post(rmq_shard_current(), i, &req->parts[i].m);
	}
}

/* --token T: every call but /test.Echo/Shard needs "authorization: Bearer
 * T" (src/net's authorize hook); its principal is "bearer", or the TLS
 * client certificate's identity.  /test.Echo/Whoami answers it. */
static const char *g_token;

static enum rmq_grpc_status authorize(struct rmq_call *c, char *why, size_t whylen)
{
	bool too_long;
	const char *a = rmq_call_authorization(c, &too_long);
	if (strcmp(rmq_call_method(c)->path, "/test.Echo/Shard") == 0)
		return RMQ_GRPC_OK;
	if (too_long) {
		snprintf(why, whylen, "authorization header too long");
		return RMQ_GRPC_UNAUTHENTICATED;
	}
	if (!a || strncmp(a, "Bearer ", 7) != 0 || strcmp(a + 7, g_token) != 0) {
		snprintf(why, whylen, "%s", a ? "bad token" : "no authorization header");
		return RMQ_GRPC_UNAUTHENTICATED;
	}
	rmq_call_set_principal(c, "bearer");
	return RMQ_GRPC_OK;
}

static void whoami_msg(struct rmq_call *c, const uint8_t *msg, size_t len)
{
	(void)msg;
	(void)len;
	const char *p = rmq_call_principal(c);
	rmq_call_send(c, p ? p : "", p ? strlen(p) : 0);
	rmq_call_finish(c, RMQ_GRPC_OK, NULL);
}

static const struct rmq_grpc_method methods[] = {
	{"/test.Echo/Whoami", RMQ_GRPC_UNARY, whoami_msg, NULL, count_cancel, NULL},
	{"/test.Echo/Unary", RMQ_GRPC_UNARY, unary_msg, NULL, count_cancel, NULL},
	{"/test.Echo/ServerStream", RMQ_GRPC_SERVER_STREAM, sstream_msg, NULL, sstream_cancel,
	 sstream_pump},
	{"/test.Echo/ClientStream", RMQ_GRPC_CLIENT_STREAM, cstream_msg, cstream_half_close,
	 cstream_cancel, NULL},
	{"/test.Echo/Bidi", RMQ_GRPC_BIDI, bidi_msg, bidi_half_close, bidi_cancel, bidi_pump},
	{"/test.Echo/Slow", RMQ_GRPC_UNARY, slow_msg, NULL, slow_cancel, NULL},
	{"/test.Echo/Fail", RMQ_GRPC_UNARY, fail_msg, NULL, count_cancel, NULL},
	{"/test.Echo/Hold", RMQ_GRPC_SERVER_STREAM, hold_msg, NULL, hold_cancel, NULL},
	{"/test.Echo/Stats", RMQ_GRPC_UNARY, stats_msg, NULL, NULL, NULL},
	{"/test.Echo/Shard", RMQ_GRPC_UNARY, shard_msg, NULL, count_cancel, NULL},
};

/* ---- runtime ------------------------------------------------------------------------------ */

static int shard_init(struct rmq_shard *s, void *arg)
{
	(void)arg;
	struct shard_state *st = &g_states[rmq_shard_id(s)];
	int rc = rmq_server_start(s, &g_cfg, methods, RMQ_ARRAY_SIZE(methods), NULL, &st->srv);
	if (rc < 0) {
		fprintf(stderr, "echo_server: shard %u: %s\n", rmq_shard_id(s), rmq_strerror(rc));
		return rc;
	}
	if (atomic_fetch_add(&g_listening, 1) + 1 == g_nshards) {
		printf("PORT %u\n", (unsigned)rmq_server_port(st->srv));
		fflush(stdout);
	}
	return 0;
}

static bool shard_drained(struct rmq_shard *s, void *arg)
{
	(void)arg;
	struct shard_state *st = &g_states[rmq_shard_id(s)];
	uint64_t now = rmq_now_ns();

	if (!st->srv)
		return true;
	if (!st->stopping) {
		st->stopping = true;
		st->stop_ns = now;
		rmq_server_shutdown(st->srv);
	}
	return rmq_server_drained(st->srv, now - st->stop_ns >= g_grace_ns);
}

static void shard_fini(struct rmq_shard *s, void *arg)
{
	(void)arg;
	struct shard_state *st = &g_states[rmq_shard_id(s)];
	rmq_server_destroy(st->srv);
	st->srv = NULL;
}

static void on_signal(int sig)
{
	(void)sig;
	if (g_rt)
		rmq_runtime_stop(g_rt);
}

int main(int argc, char **argv)
{
	uint64_t shards, max_streams, max_calls, max_conns;
	uint64_t max_message, send_queue, idle_ns, keepalive_ns, request_max, preface_ns;
	const char *log_level;
	const struct rmq_flag flags[] = {
		{"shards", RMQ_FLAG_UINT, &shards, "2", "shard threads", 1, 64, NULL},
		{"max-message", RMQ_FLAG_SIZE, &max_message, "8MiB", "gRPC message limit", 1,
		 0xffffffffULL, NULL},
		{"max-streams", RMQ_FLAG_UINT, &max_streams, "100", "streams per connection", 1,
		 1u << 20, NULL},
		{"max-calls", RMQ_FLAG_UINT, &max_calls, "1024", "calls per shard", 1, 1u << 20,
		 NULL},
		{"max-connections", RMQ_FLAG_UINT, &max_conns, "256", "connections per shard", 1,
		 1u << 20, NULL},
		{"send-queue", RMQ_FLAG_SIZE, &send_queue, "1MiB", "queued response bytes per call",
		 1, 0, NULL},
		{"request-bytes-max", RMQ_FLAG_SIZE, &request_max, "256MiB",
		 "request memory per shard before reading stops (0 = no limit)", 0, 0, NULL},
		{"idle-timeout", RMQ_FLAG_DURATION, &idle_ns, "30s",
		 "close connections silent this long (0s = never)", 0, 0, NULL},
		{"keepalive", RMQ_FLAG_DURATION, &keepalive_ns, "10s",
		 "PING connections silent this long (0s = never)", 0, 0, NULL},
		{"preface-timeout", RMQ_FLAG_DURATION, &preface_ns, "1s",
		 "close connections that sent no client preface this long after the accept "
		 "(0s = only the idle timeout)", 0, 0, NULL},
		{"grace", RMQ_FLAG_DURATION, &g_grace_ns, "2s",
		 "on SIGTERM, time given to calls in flight", 0, 0, NULL},
		{"log-level", RMQ_FLAG_CHOICE, &log_level, "warn", "log threshold", 0, 0,
		 "debug|info|warn|error|off"},
		{"token", RMQ_FLAG_STRING, &g_token, "", "calls need authorization: Bearer TOKEN", 0,
		 0, NULL},
	};
	char err[256];
	int npos = 0;
	int rc = rmq_flags_parse(argc, argv, flags, RMQ_ARRAY_SIZE(flags), &npos, err, sizeof(err));

	if (rc == 1) {
		rmq_flags_usage(stdout, flags, RMQ_ARRAY_SIZE(flags));
		return 0;
	}
	if (rc < 0) {
		fprintf(stderr, "echo_server: %s\n", err);
		return 2;
	}
	rmq_log_set_level((enum rmq_log_level)rmq_log_parse_level(log_level));

	rmq_net_config_default(&g_cfg);
	g_cfg.host = "127.0.0.1";
	g_cfg.port = 0;
	g_cfg.max_connections = (uint32_t)max_conns;
	g_cfg.max_streams = (uint32_t)max_streams;
	g_cfg.max_calls = (uint32_t)max_calls;
	g_cfg.max_message_bytes = max_message;
	g_cfg.send_queue_bytes = send_queue;
	g_cfg.idle_timeout_ns = idle_ns;
	g_cfg.keepalive_ns = keepalive_ns;
	g_cfg.request_bytes_max = request_max;
	g_cfg.preface_timeout_ns = preface_ns;
	if (g_token[0])
		g_cfg.authorize = authorize;
	g_nshards = (unsigned)shards;

	g_states = calloc(g_nshards, sizeof(*g_states));
	if (!g_states)
		return 1;
	struct rmq_runtime_config rc_cfg = {
		.shards = g_nshards,
		.ring_entries = 512,
		.xshard_capacity = 1024,
		.timers_max = 65536,
	};
	rc = rmq_runtime_create(&rc_cfg, &g_rt);
	if (rc < 0) {
		fprintf(stderr, "echo_server: runtime: %s\n", rmq_strerror(rc));
		return 1;
	}
	rmq_runtime_on_stop(g_rt, shard_drained);

	struct sigaction sa;
	memset(&sa, 0, sizeof(sa));
	sa.sa_handler = on_signal;
	sigemptyset(&sa.sa_mask);
	sigaction(SIGTERM, &sa, NULL);
	sigaction(SIGINT, &sa, NULL);
	signal(SIGPIPE, SIG_IGN);

	rc = rmq_runtime_run(g_rt, shard_init, shard_fini, NULL);
	signal(SIGTERM, SIG_IGN);
	signal(SIGINT, SIG_IGN);
	rmq_runtime_destroy(g_rt);
	free(g_states);
	if (rc < 0) {
		fprintf(stderr, "echo_server: %s\n", rmq_strerror(rc));
		return 1;
	}
	return 0;
}
