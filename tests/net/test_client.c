/* SPDX-License-Identifier: Apache-2.0 */
/*
 * test_client.c - src/net/client.c against the echo_server the Python
 * suites use (a server built on src/net): unary calls of every size, many
 * more calls than the server's stream limit, server streams, bidi streams
 * with requests by reference, deadlines, cancellation, status and
 * percent-encoded messages, the response size limit, a refused connect,
 * and a server that dies mid-call.  A second suite runs the echo_server
 * with a 1 MiB request-memory budget: read backpressure (server.h) blocks
 * a streaming client while the budget is exceeded or the application
 * pauses reading, and the client resumes and loses nothing.
 *
 * Each test runs a one-shard runtime; the scenario starts from on_connect
 * and its callbacks record what they saw; the runtime stops when nothing
 * is pending (or after 20 s), and the assertions run afterwards on the
 * test's own thread.
 */
#include "core/error.h"
#include "core/shard.h"
#include "core/util.h"
#include "net/client.h"

#include <arpa/inet.h>
#include <criterion/criterion.h>
#include <errno.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/prctl.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#define MS 1000000ULL

/* ---- the echo_server child -------------------------------------------------------- */

static pid_t server_pid;
static uint16_t server_port;
static char server_out[64];
static const char *server_shards = "1";

static void server_start_args(const char *const *extra)
{
	snprintf(server_out, sizeof(server_out), "/tmp/rmq-client-test-XXXXXX");
	int fd = mkstemp(server_out);
	cr_assert_geq(fd, 0);
	server_pid = fork();
	cr_assert_geq(server_pid, 0);
	if (server_pid == 0) {
		prctl(PR_SET_PDEATHSIG, SIGKILL);
		dup2(fd, 1);
		const char *argv[16] = {ECHO_SERVER_PATH, "--shards", server_shards, "--max-streams",
					"100"};
		size_t n = 5;
		for (size_t i = 0; extra && extra[i] && n < RMQ_ARRAY_SIZE(argv) - 1; i++)
			argv[n++] = extra[i];
		execv(ECHO_SERVER_PATH, (char *const *)argv);
		_exit(127);
	}
	close(fd);
	for (int i = 0; i < 1500 && !server_port; i++) {
		char buf[128] = "";
		FILE *f = fopen(server_out, "r");
		if (f) {
			if (fgets(buf, sizeof(buf), f) && strncmp(buf, "PORT ", 5) == 0)
				server_port = (uint16_t)atoi(buf + 5);
			fclose(f);
		}
		struct timespec ts = {0, 10 * 1000 * 1000};
		nanosleep(&ts, NULL);
	}
	cr_assert_neq(server_port, 0, "echo_server did not report its port");
}

static void server_start(void)
{
	server_start_args(NULL);
}

static void server_stop(void)
{
	if (server_pid > 0) {
		kill(server_pid, SIGKILL);
		waitpid(server_pid, NULL, 0);
		server_pid = 0;
	}
	unlink(server_out);
	server_port = 0;
}

TestSuite(client, .init = server_start, .fini = server_stop, .timeout = 60);

/* ---- the harness ------------------------------------------------------------------- */

struct h;
typedef void (*scenario_fn)(struct h *h);

struct h {
	struct rmq_runtime *rt;
	struct rmq_shard *s;
	struct rmq_client *cl;
	struct rmq_client_conn *cc;
	struct rmq_client_config cfg;
	scenario_fn start;
	int pending;                /* operations the scenario waits for */
	struct rmq_timer guard, timer;
	bool timed_out;
	/* what was seen */
	int connect_res;
	int conn_closed;            /* on_close count */
	int conn_why;
	int unary_ok, unary_bad;
	enum rmq_grpc_status status;
	char message[1100];
	uint64_t elapsed_ns, t0;
	int msgs;
	bool order_ok;
	/* request buffers that must outlive their calls */
	uint8_t *bufs[600];
	size_t lens[600];
	struct rmq_ccall *call;
	size_t sent;
	bool half_closed;
};

static void done_one(struct h *h)
{
	if (--h->pending == 0)
		rmq_runtime_stop(h->rt);
}

static void guard_fn(struct rmq_timer *t)
{
	struct h *h = RMQ_CONTAINER_OF(t, struct h, guard);
	h->timed_out = true;
	rmq_runtime_stop(h->rt);
}

static void on_connect(struct rmq_client_conn *cc, void *arg, int res)
{
	struct h *h = arg;
	(void)cc;
	h->connect_res = res;
	if (res < 0) {
		h->cc = NULL;
		done_one(h);
		return;
	}
	h->start(h);
	done_one(h); /* the connect itself */
}

static void on_conn_close(struct rmq_client_conn *cc, void *arg, int why)
{
	struct h *h = arg;
	(void)cc;
	h->conn_closed++;
	h->conn_why = why;
	h->cc = NULL;
}

static const struct rmq_client_conn_ops conn_ops = {on_connect, on_conn_close};

static int init(struct rmq_shard *s, void *arg)
{
	struct h *h = arg;
	h->s = s;
	int rc = rmq_client_create(s, &h->cfg, &h->cl);
	if (rc < 0)
		return rc;
	h->pending = 1;
	rc = rmq_timer_start(s, &h->guard, rmq_now_ns() + 20000 * MS, guard_fn);
	if (rc == 0)
		rc = rmq_client_connect(h->cl, &conn_ops, h, &h->cc);
	return rc;
}

static void fini(struct rmq_shard *s, void *arg)
{
	struct h *h = arg;
	rmq_timer_cancel(s, &h->guard);
	rmq_timer_cancel(s, &h->timer);
	rmq_client_destroy(h->cl);
}

/* Runs a scenario; port 0 means the echo_server's. */
static void run(struct h *h, scenario_fn start, uint16_t port)
{
	struct rmq_runtime_config rc = {.shards = 1, .ring_entries = 256, .timers_max = 4096};
	if (!h->cfg.host)
		rmq_client_config_default(&h->cfg);
	h->cfg.port = port ? port : server_port;
	h->cfg.calls_max = 1024;
	h->start = start;
	h->order_ok = true;
	cr_assert_eq(rmq_runtime_create(&rc, &h->rt), 0);
	int r = rmq_runtime_run(h->rt, init, fini, h);
	rmq_runtime_destroy(h->rt);
	cr_assert_eq(r, 0, "runtime: %s", rmq_strerror(r));
	cr_assert(!h->timed_out, "the scenario did not finish in 20 s (%d pending)", h->pending);
}

static void h_free(struct h *h)
{
	for (size_t i = 0; i < RMQ_ARRAY_SIZE(h->bufs); i++)
		free(h->bufs[i]);
}

static uint8_t *pattern(size_t len, unsigned seed)
{
	uint8_t *p = malloc(len ? len : 1);
	for (size_t i = 0; i < len; i++)
		p[i] = (uint8_t)(i * 31 + seed);
	return p;
}

static void put_be32(uint8_t *p, uint32_t v)
{
	p[0] = (uint8_t)(v >> 24);
	p[1] = (uint8_t)(v >> 16);
	p[2] = (uint8_t)(v >> 8);
	p[3] = (uint8_t)v;
}

/* ---- unary -------------------------------------------------------------------------- */

struct echo_req {
	struct h *h;
	size_t i;
};
static struct echo_req reqs[600];

static void echo_done(void *arg, enum rmq_grpc_status st, const char *msg, const uint8_t *resp,
		      size_t len)
{
	struct echo_req *r = arg;
	struct h *h = r->h;
	(void)msg;
	if (st == RMQ_GRPC_OK && len == h->lens[r->i] && (len == 0 || memcmp(resp, h->bufs[r->i], len) == 0))
		h->unary_ok++;
	else
		h->unary_bad++;
	done_one(h);
}

static const size_t sizes[] = {0, 1, 5, 16383, 16384, 100000, 3u << 20};

static void start_sizes(struct h *h)
{
	for (size_t i = 0; i < RMQ_ARRAY_SIZE(sizes); i++) {
		h->lens[i] = sizes[i];
		h->bufs[i] = pattern(sizes[i], (unsigned)i);
		reqs[i] = (struct echo_req){h, i};
		int rc = rmq_client_unary(h->cc, "/test.Echo/Unary", h->bufs[i], sizes[i], 10000 * MS,
					  echo_done, &reqs[i], NULL);
		cr_assert_eq(rc, 0);
		h->pending++;
	}
}

Test(client, unary_every_size)
{
	struct h h = {0};
	run(&h, start_sizes, 0);
	cr_assert_eq(h.connect_res, 0);
	cr_assert_eq(h.unary_ok, (int)RMQ_ARRAY_SIZE(sizes), "%d bad", h.unary_bad);
	h_free(&h);
}

static void start_many(struct h *h)
{
	/* 500 calls at once on one connection whose server allows 100
	 * streams: nghttp2 holds the rest until streams close. */
	for (size_t i = 0; i < 500; i++) {
		h->lens[i] = 64 + i;
		h->bufs[i] = pattern(h->lens[i], (unsigned)i);
		reqs[i] = (struct echo_req){h, i};
		cr_assert_eq(rmq_client_unary(h->cc, "/test.Echo/Unary", h->bufs[i], h->lens[i],
					      10000 * MS, echo_done, &reqs[i], NULL),
			     0);
		h->pending++;
	}
}

Test(client, more_calls_than_the_server_stream_limit)
{
	struct h h = {0};
	run(&h, start_many, 0);
	cr_assert_eq(h.unary_ok, 500, "%d bad", h.unary_bad);
	h_free(&h);
}

/* ---- statuses ------------------------------------------------------------------------ */

static void status_done(void *arg, enum rmq_grpc_status st, const char *msg, const uint8_t *resp,
			size_t len)
{
	struct h *h = arg;
	(void)resp;
	(void)len;
	h->status = st;
	snprintf(h->message, sizeof(h->message), "%s", msg);
	h->elapsed_ns = rmq_now_ns() - h->t0;
	done_one(h);
}

static void start_fail(struct h *h)
{
	static const char text[] = "\x05not here: 100% gone \xc3\xa9";
	h->t0 = rmq_now_ns();
	cr_assert_eq(rmq_client_unary(h->cc, "/test.Echo/Fail", text, sizeof(text) - 1, 0,
				      status_done, h, NULL),
		     0);
	h->pending++;
}

Test(client, status_and_percent_encoded_message)
{
	struct h h = {0};
	run(&h, start_fail, 0);
	cr_assert_eq(h.status, RMQ_GRPC_NOT_FOUND);
	cr_assert_str_eq(h.message, "not here: 100% gone \xc3\xa9");
}

static void start_unknown(struct h *h)
{
	cr_assert_eq(rmq_client_unary(h->cc, "/test.Echo/Nope", "x", 1, 0, status_done, h, NULL), 0);
	h->pending++;
}

Test(client, unknown_method)
{
	struct h h = {0};
	run(&h, start_unknown, 0);
	cr_assert_eq(h.status, RMQ_GRPC_UNIMPLEMENTED);
	cr_assert(strstr(h.message, "/test.Echo/Nope"), "%s", h.message);
}

static void start_slow_deadline(struct h *h)
{
	static uint8_t req[8];
	put_be32(req, 5000);
	h->t0 = rmq_now_ns();
	cr_assert_eq(rmq_client_unary(h->cc, "/test.Echo/Slow", req, sizeof(req), 100 * MS,
				      status_done, h, NULL),
		     0);
	h->pending++;
}

Test(client, deadline)
{
	struct h h = {0};
	run(&h, start_slow_deadline, 0);
	cr_assert_eq(h.status, RMQ_GRPC_DEADLINE_EXCEEDED, "%s", rmq_grpc_status_name(h.status));
	cr_assert_lt(h.elapsed_ns, 4000 * MS, "ended by the deadline, not the answer");
}

static void cancel_fn(struct rmq_timer *t)
{
	struct h *h = RMQ_CONTAINER_OF(t, struct h, timer);
	rmq_ccall_cancel(h->call);
	rmq_ccall_cancel(h->call); /* twice is harmless */
}

static void start_slow_cancel(struct h *h)
{
	static uint8_t req[8];
	put_be32(req, 5000);
	h->t0 = rmq_now_ns();
	cr_assert_eq(rmq_client_unary(h->cc, "/test.Echo/Slow", req, sizeof(req), 0, status_done, h,
				      &h->call),
		     0);
	h->pending++;
	cr_assert_eq(rmq_timer_start(h->s, &h->timer, rmq_now_ns() + 50 * MS, cancel_fn), 0);
}

Test(client, cancel)
{
	struct h h = {0};
	run(&h, start_slow_cancel, 0);
	cr_assert_eq(h.status, RMQ_GRPC_CANCELLED, "%s", rmq_grpc_status_name(h.status));
	cr_assert_lt(h.elapsed_ns, 4000 * MS);
}

static void start_too_big(struct h *h)
{
	h->bufs[0] = pattern(4096, 1);
	cr_assert_eq(rmq_client_unary(h->cc, "/test.Echo/Unary", h->bufs[0], 4096, 0, status_done,
				      h, NULL),
		     0);
	h->pending++;
}

Test(client, response_over_the_limit)
{
	struct h h = {0};
	rmq_client_config_default(&h.cfg);
	h.cfg.max_message_bytes = 1024;
	run(&h, start_too_big, 0);
	cr_assert_eq(h.status, RMQ_GRPC_RESOURCE_EXHAUSTED, "%s", rmq_grpc_status_name(h.status));
	cr_assert(strstr(h.message, "4096"), "%s", h.message);
	h_free(&h);
}

/* ---- streams ------------------------------------------------------------------------- */

static void stream_msg(struct rmq_ccall *c, void *arg, const uint8_t *msg, size_t len)
{
	struct h *h = arg;
	(void)c;
	size_t i = (size_t)h->msgs;
	/* Server stream: copies of bufs[0]; bidi: echoes of bufs[i]. */
	size_t k = h->lens[1] ? i : 0;
	if (k >= RMQ_ARRAY_SIZE(h->bufs) || !h->bufs[k] || len != h->lens[k] ||
	    memcmp(msg, h->bufs[k], len) != 0)
		h->order_ok = false;
	h->msgs++;
}

static void stream_close(struct rmq_ccall *c, void *arg, enum rmq_grpc_status st, const char *msg)
{
	struct h *h = arg;
	(void)c;
	h->status = st;
	snprintf(h->message, sizeof(h->message), "%s", msg);
	done_one(h);
}

static const struct rmq_ccall_ops stream_ops = {stream_msg, stream_close};
static uint8_t ss_req[4 + 1000];

static void start_server_stream(struct h *h)
{
	put_be32(ss_req, 300);
	h->bufs[0] = pattern(1000, 9);
	h->lens[0] = 1000;
	memcpy(ss_req + 4, h->bufs[0], 1000);
	struct rmq_ccall *c;
	cr_assert_eq(rmq_client_server_stream(h->cc, "/test.Echo/ServerStream", ss_req, sizeof(ss_req),
					      10000 * MS, &stream_ops, h, &c),
		     0);
	h->pending++;
}

Test(client, server_stream)
{
	struct h h = {0};
	run(&h, start_server_stream, 0);
	cr_assert_eq(h.status, RMQ_GRPC_OK, "%s: %s", rmq_grpc_status_name(h.status), h.message);
	cr_assert_eq(h.msgs, 300);
	cr_assert(h.order_ok);
	h_free(&h);
}

/* Keeps the bounded queue full from the echoes, then half-closes. */
static void bidi_more(struct rmq_ccall *c, void *arg, const uint8_t *msg, size_t len)
{
	struct h *h = arg;
	stream_msg(c, arg, msg, len);
	while (h->sent < 200 && rmq_ccall_send(c, h->bufs[h->sent], h->lens[h->sent]) == 0)
		h->sent++;
	if (h->sent == 200 && !h->half_closed) {
		h->half_closed = true;
		cr_assert_eq(rmq_ccall_half_close(c), 0);
		cr_assert_eq(rmq_ccall_half_close(c), RMQ_ECLOSED, "only once");
	}
}

static const struct rmq_ccall_ops bidi_ops = {bidi_more, stream_close};

static void start_bidi(struct h *h)
{
	h->lens[1] = 1; /* stream_msg: echoes of bufs[i] */
	struct rmq_ccall *c;
	cr_assert_eq(rmq_ccall_start(h->cc, "/test.Echo/Bidi", 10000 * MS, &bidi_ops, h, &c), 0);
	h->pending++;
	for (size_t i = 0; i < 200; i++) {
		h->lens[i] = 1 + i * 97;
		h->bufs[i] = pattern(h->lens[i], (unsigned)i);
	}
	/* By reference and bounded: the 65th waits until some were written. */
	while (h->sent < 200 && rmq_ccall_send(c, h->bufs[h->sent], h->lens[h->sent]) == 0)
		h->sent++;
	cr_assert_eq(h->sent, 64, "the queue holds send_queue_max messages");
	cr_assert_eq(rmq_ccall_written(c), 0, "nothing written before the flush");
}

Test(client, bidi_with_a_bounded_queue)
{
	struct h h = {0};
	rmq_client_config_default(&h.cfg);
	h.cfg.send_queue_max = 64;
	run(&h, start_bidi, 0);
	cr_assert_eq(h.status, RMQ_GRPC_OK, "%s: %s", rmq_grpc_status_name(h.status), h.message);
	cr_assert_eq(h.msgs, 200);
	cr_assert(h.order_ok, "echoes in order, each intact");
	h_free(&h);
}

/* Messages gathered from pieces, some referenced (rmq_ccall_sendv_ref):
 * echoed whole and in order, and every reference given back once. */
struct tref {
	struct rmq_send_ref ref;
	int released;
};
static struct tref trefs[200];

static void tref_release(struct rmq_send_ref *r)
{
	((struct tref *)r)->released++;
}

static int send_gathered(struct rmq_ccall *c, struct h *h, size_t i)
{
	/* A copied head, a referenced middle (large), a referenced tail that
	 * is tiny for the larger messages (copied by the layer), and an
	 * empty piece between. */
	size_t len = h->lens[i], a = len / 3, b = len - a - (len > 600 ? 100 : 0);
	struct iovec iov[4] = {{h->bufs[i], a}, {h->bufs[i] + a, 0}, {h->bufs[i] + a, b - a},
			       {h->bufs[i] + b, len - b}};
	struct rmq_send_ref *refs[4] = {NULL, NULL, &trefs[i].ref, &trefs[i].ref};
	trefs[i] = (struct tref){{.release = tref_release, .count = 1}, 0}; /* a refused try counted nothing */
	int rc = rmq_ccall_sendv_ref(c, iov, refs, 4);
	rmq_send_ref_put(&trefs[i].ref); /* the layer holds its own now */
	return rc;
}

static void gather_more(struct rmq_ccall *c, void *arg, const uint8_t *msg, size_t len)
{
	struct h *h = arg;
	stream_msg(c, arg, msg, len);
	while (h->sent < 200 && send_gathered(c, h, h->sent) == 0)
		h->sent++;
	if (h->sent == 200 && !h->half_closed) {
		h->half_closed = true;
		cr_assert_eq(rmq_ccall_half_close(c), 0);
	}
}

static const struct rmq_ccall_ops gather_ops = {gather_more, stream_close};

static void start_gather(struct h *h)
{
	h->lens[1] = 1; /* stream_msg: echoes of bufs[i] */
	struct rmq_ccall *c;
	cr_assert_eq(rmq_ccall_start(h->cc, "/test.Echo/Bidi", 10000 * MS, &gather_ops, h, &c), 0);
	h->pending++;
	for (size_t i = 0; i < 200; i++) {
		h->lens[i] = 1 + i * 397;
		h->bufs[i] = pattern(h->lens[i], (unsigned)i);
	}
	while (h->sent < 200 && send_gathered(c, h, h->sent) == 0)
		h->sent++;
	cr_assert_lt(h->sent, 200, "the queue is bounded by pieces");
}

Test(client, gathered_messages_with_references)
{
	struct h h = {0};
	rmq_client_config_default(&h.cfg);
	h.cfg.send_queue_max = 64;
	run(&h, start_gather, 0);
	cr_assert_eq(h.status, RMQ_GRPC_OK, "%s: %s", rmq_grpc_status_name(h.status), h.message);
	cr_assert_eq(h.msgs, 200);
	cr_assert(h.order_ok, "echoes in order, each intact");
	for (size_t i = 0; i < 200; i++)
		cr_assert_eq(trefs[i].released, 1, "message %zu: released %d times", i,
			     trefs[i].released);
	h_free(&h);
}

/* A call cut while referenced pieces wait unsent gives them back. */
static void start_gather_cancel(struct h *h)
{
	struct rmq_ccall *c;
	cr_assert_eq(rmq_ccall_start(h->cc, "/test.Echo/Bidi", 10000 * MS, &stream_ops, h, &c), 0);
	h->pending++;
	for (size_t i = 0; i < 8; i++) {
		h->lens[i] = 3u << 20;
		h->bufs[i] = pattern(h->lens[i], (unsigned)i);
		cr_assert_eq(send_gathered(c, h, i), 0);
	}
	rmq_ccall_cancel(c);
}

Test(client, references_given_back_when_a_call_is_cancelled)
{
	struct h h = {0};
	run(&h, start_gather_cancel, 0);
	cr_assert_eq(h.status, RMQ_GRPC_CANCELLED, "%s", rmq_grpc_status_name(h.status));
	for (size_t i = 0; i < 8; i++)
		cr_assert_eq(trefs[i].released, 1, "message %zu: released %d times", i,
			     trefs[i].released);
	h_free(&h);
}

/* ---- the authorization header ------------------------------------------------------- */

static void server_start_token(void)
{
	static const char *const extra[] = {"--token=s3cret", NULL};
	server_start_args(extra);
}

TestSuite(client_auth, .init = server_start_token, .fini = server_stop, .timeout = 60);

static void whoami_done(void *arg, enum rmq_grpc_status st, const char *msg, const uint8_t *resp,
			size_t len)
{
	struct h *h = arg;
	h->status = st;
	snprintf(h->message, sizeof(h->message), "%s|%.*s", msg, (int)len, (const char *)resp);
	done_one(h);
}

static void start_whoami(struct h *h)
{
	cr_assert_eq(rmq_client_unary(h->cc, "/test.Echo/Whoami", "", 0, 0, whoami_done, h, NULL), 0);
	h->pending++;
}

static void start_whoami_token(struct h *h)
{
	char big[1100];
	memset(big, 'x', sizeof(big) - 1);
	big[sizeof(big) - 1] = '\0';
	cr_assert_eq(rmq_client_set_authorization(h->cl, big), RMQ_ETOOBIG, "over 1 KiB");
	cr_assert_eq(rmq_client_set_authorization(h->cl, "Bearer s3cret"), 0);
	start_whoami(h);
}

Test(client_auth, calls_carry_the_authorization_header)
{
	struct h h = {0};
	run(&h, start_whoami, 0);
	cr_assert_eq(h.status, RMQ_GRPC_UNAUTHENTICATED, "%s", h.message);
	struct h t = {0};
	run(&t, start_whoami_token, 0);
	cr_assert_eq(t.status, RMQ_GRPC_OK, "%s", t.message);
	cr_assert_str_eq(t.message, "|bearer");
}

/* ---- connections ----------------------------------------------------------------------- */

static void start_nothing(struct h *h)
{
	(void)h;
}

Test(client, refused_connect)
{
	int fd = socket(AF_INET, SOCK_STREAM, 0);
	struct sockaddr_in a = {.sin_family = AF_INET, .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
	socklen_t al = sizeof(a);
	cr_assert_eq(bind(fd, (struct sockaddr *)&a, sizeof(a)), 0);
	cr_assert_eq(getsockname(fd, (struct sockaddr *)&a, &al), 0);
	struct h h = {0};
	run(&h, start_nothing, ntohs(a.sin_port));
	close(fd);
	cr_assert_eq(h.connect_res, -ECONNREFUSED, "%s", rmq_strerror(h.connect_res));
	cr_assert_eq(h.conn_closed, 0, "on_close is only for connections that opened");
}

static void kill_fn(struct rmq_timer *t)
{
	(void)t;
	kill(server_pid, SIGKILL);
}

static void start_then_die(struct h *h)
{
	static uint8_t req[8];
	put_be32(req, 5000);
	cr_assert_eq(rmq_client_unary(h->cc, "/test.Echo/Slow", req, sizeof(req), 0, status_done, h,
				      NULL),
		     0);
	h->pending++;
	cr_assert_eq(rmq_timer_start(h->s, &h->timer, rmq_now_ns() + 100 * MS, kill_fn), 0);
}

Test(client, server_dies_mid_call)
{
	struct h h = {0};
	run(&h, start_then_die, 0);
	cr_assert_eq(h.status, RMQ_GRPC_UNAVAILABLE, "%s: %s", rmq_grpc_status_name(h.status),
		     h.message);
	cr_assert_eq(h.conn_closed, 1);
	cr_assert_lt(h.conn_why, 0, "a reset or EOF, not a close we asked for");
}

/* ---- read backpressure ------------------------------------------------------------------- */

/* A 1 MiB request-memory budget per shard (low-water mark 768 KiB). */
static void server_start_budget(void)
{
	static const char *const extra[] = {"--request-bytes-max", "1MiB", NULL};
	server_start_args(extra);
}

TestSuite(backpressure, .init = server_start_budget, .fini = server_stop, .timeout = 60);

#define BP_MSGS 512
#define BP_MSG_BYTES 16384

/* What the backpressure scenarios saw. */
struct bp {
	struct h *h;
	uint32_t hold_bytes;        /* charged by Hold; 0: rmq_server_pause_reads */
	uint8_t hold_req[8];
	bool held;                  /* Hold's first message arrived */
	enum rmq_grpc_status hold_status;
	struct rmq_ccall *bidi;
	int echoes_at_release;      /* bidi echoes seen when Hold let go */
	uint64_t written_at_release;
	bool released;
	int stats_done;
	char stats[512];
};
static struct bp bp;

static void bp_bidi_msg(struct rmq_ccall *c, void *arg, const uint8_t *msg, size_t len)
{
	stream_msg(c, arg, msg, len);
}

static const struct rmq_ccall_ops bp_bidi_ops = {bp_bidi_msg, stream_close};

/* Hold's "held": the shard has stopped reading.  Start a bidi stream of
 * 8 MiB on the same connection, all queued at once: the server reads
 * none of it until Hold lets go, and the client can write no more than
 * the HTTP/2 stream window (4 MiB) meanwhile. */
static void bp_hold_msg(struct rmq_ccall *c, void *arg, const uint8_t *msg, size_t len)
{
	struct h *h = arg;
	(void)c;
	cr_assert_eq(len, 4);
	cr_assert_eq(memcmp(msg, "held", 4), 0);
	bp.held = true;
	h->lens[1] = 1; /* stream_msg: echoes of bufs[i] */
	cr_assert_eq(rmq_ccall_start(h->cc, "/test.Echo/Bidi", 20000 * MS, &bp_bidi_ops, h, &bp.bidi),
		     0);
	h->pending++;
	for (size_t i = 0; i < BP_MSGS; i++) {
		h->lens[i] = BP_MSG_BYTES;
		h->bufs[i] = pattern(BP_MSG_BYTES, (unsigned)i);
		cr_assert_eq(rmq_ccall_send(bp.bidi, h->bufs[i], h->lens[i]), 0);
	}
	cr_assert_eq(rmq_ccall_half_close(bp.bidi), 0);
}

static void bp_hold_close(struct rmq_ccall *c, void *arg, enum rmq_grpc_status st, const char *msg)
{
	struct h *h = arg;
	(void)c;
	(void)msg;
	bp.hold_status = st;
	bp.released = true;
	/* The trailers left the server before it read again, on this same
	 * TCP stream: no echo can come before them. */
	bp.echoes_at_release = h->msgs;
	bp.written_at_release = bp.bidi ? rmq_ccall_written(bp.bidi) : 0;
	done_one(h);
}

static const struct rmq_ccall_ops bp_hold_ops = {bp_hold_msg, bp_hold_close};

static void bp_put(uint8_t *p, uint32_t ms, uint32_t bytes)
{
	put_be32(p, ms);
	put_be32(p + 4, bytes);
}

static void start_hold(struct h *h)
{
	struct rmq_ccall *c;
	bp_put(bp.hold_req, 1000, bp.hold_bytes);
	cr_assert_eq(rmq_client_server_stream(h->cc, "/test.Echo/Hold", bp.hold_req,
					      sizeof(bp.hold_req), 20000 * MS, &bp_hold_ops, h, &c),
		     0);
	h->pending++;
}

static void stats_got(void *arg, enum rmq_grpc_status st, const char *msg, const uint8_t *resp,
		      size_t len)
{
	struct h *h = arg;
	(void)msg;
	if (st == RMQ_GRPC_OK && len < sizeof(bp.stats)) {
		memcpy(bp.stats, resp, len);
		bp.stats[len] = '\0';
	}
	bp.stats_done++;
	done_one(h);
}

static void start_stats(struct h *h)
{
	cr_assert_eq(rmq_client_unary(h->cc, "/test.Echo/Stats", "", 0, 10000 * MS, stats_got, h,
				      NULL),
		     0);
	h->pending++;
}

/* The value of key= in the Stats line. */
static unsigned long long stat_of(const char *key)
{
	char pat[64];
	snprintf(pat, sizeof(pat), "%s=", key);
	const char *p = strstr(bp.stats, pat);
	cr_assert(p, "no %s in '%s'", key, bp.stats);
	return strtoull(p + strlen(pat), NULL, 10);
}

static void check_blocked_then_whole(struct h *h)
{
	cr_assert_eq(h->connect_res, 0);
	cr_assert(bp.held, "Hold started");
	cr_assert_eq(bp.hold_status, RMQ_GRPC_OK, "%s", rmq_grpc_status_name(bp.hold_status));
	cr_assert_eq(bp.echoes_at_release, 0, "nothing was read while reading was stopped");
	cr_assert_lt(bp.written_at_release, (uint64_t)BP_MSGS,
		     "the client was blocked by flow control (%llu of %d written)",
		     (unsigned long long)bp.written_at_release, BP_MSGS);
	cr_assert_eq(h->status, RMQ_GRPC_OK, "bidi: %s: %s", rmq_grpc_status_name(h->status),
		     h->message);
	cr_assert_eq(h->msgs, BP_MSGS, "every message echoed");
	cr_assert(h->order_ok, "echoes in order, each intact");
}

static void check_stats_after(void)
{
	struct h h = {0};
	run(&h, start_stats, 0);
	cr_assert_eq(bp.stats_done, 1);
	cr_assert_geq(stat_of("pauses"), 1, "%s", bp.stats);
	cr_assert_eq(stat_of("paused"), 0, "%s", bp.stats);
	/* Only the Stats call's own (kept, at most 16 KiB) buffer. */
	cr_assert_leq(stat_of("request_bytes"), 16384, "%s", bp.stats);
}

Test(backpressure, over_the_budget_blocks_the_client_then_resumes_losing_nothing)
{
	struct h h = {0};
	rmq_client_config_default(&h.cfg);
	h.cfg.send_queue_max = BP_MSGS;
	bp = (struct bp){.h = &h, .hold_bytes = 2u << 20};
	run(&h, start_hold, 0);
	check_blocked_then_whole(&h);
	h_free(&h);
	check_stats_after();
}

Test(backpressure, application_pause_blocks_the_client_then_resumes_losing_nothing)
{
	struct h h = {0};
	rmq_client_config_default(&h.cfg);
	h.cfg.send_queue_max = BP_MSGS;
	bp = (struct bp){.h = &h, .hold_bytes = 0};
	run(&h, start_hold, 0);
	check_blocked_then_whole(&h);
	h_free(&h);
	check_stats_after();
}

/* Four 3 MiB requests at once against a 1 MiB budget: the budget is
 * exceeded by requests still arriving (which only reading can finish) and
 * by requests handed to the application; neither may stop the server
 * for good. */
static void start_big(struct h *h)
{
	for (size_t i = 0; i < 4; i++) {
		h->lens[i] = 3u << 20;
		h->bufs[i] = pattern(h->lens[i], (unsigned)i + 40);
		reqs[i] = (struct echo_req){h, i};
		cr_assert_eq(rmq_client_unary(h->cc, "/test.Echo/Unary", h->bufs[i], h->lens[i],
					      20000 * MS, echo_done, &reqs[i], NULL),
			     0);
		h->pending++;
	}
}

Test(backpressure, requests_larger_than_the_budget_still_complete)
{
	struct h h = {0};
	bp = (struct bp){.h = &h};
	run(&h, start_big, 0);
	cr_assert_eq(h.unary_ok, 4, "%d bad", h.unary_bad);
	h_free(&h);
	check_stats_after();
}

/* ---- shard steering ----------------------------------------------------------------- */

static void four_shards(void)
{
	server_shards = "4";
	server_start();
}

TestSuite(steering, .init = four_shards, .fini = server_stop, .timeout = 60);

static char shard_seen[16];

static void shard_done(void *arg, enum rmq_grpc_status st, const char *msg, const uint8_t *resp,
		       size_t len)
{
	struct h *h = arg;
	(void)msg;
	if (st == RMQ_GRPC_OK && len < sizeof(shard_seen)) {
		memcpy(shard_seen, resp, len);
		shard_seen[len] = '\0';
		h->unary_ok++;
	} else {
		h->unary_bad++;
	}
	done_one(h);
}

static void start_shard(struct h *h)
{
	cr_assert_eq(rmq_client_unary(h->cc, "/test.Echo/Shard", NULL, 0, 10000 * MS, shard_done, h,
				      NULL),
		     0);
	h->pending++;
}

/* The shard one new connection reaches (steered to k when k >= 0). */
static unsigned shard_of_a_connection(int k)
{
	struct h h = {0};
	rmq_client_config_default(&h.cfg);
	if (k >= 0) {
		h.cfg.source_port_mod = 4;
		h.cfg.source_port_rem = (uint32_t)k;
	}
	run(&h, start_shard, 0);
	cr_assert_eq(h.connect_res, 0, "connect: %s", rmq_strerror(h.connect_res));
	cr_assert_eq(h.unary_ok, 1);
	return (unsigned)atoi(shard_seen);
}

/* A client that binds a source port p with (p / 2) % 4 == k reaches shard
 * k of a node of 4 shards (server.c, steer_by_source_port), every time. */
Test(steering, a_source_port_picks_the_shard)
{
	for (int k = 0; k < 4; k++)
		for (int i = 0; i < 10; i++)
			cr_assert_eq(shard_of_a_connection(k), (unsigned)k,
				     "connection %d for shard %d", i, k);
}

/* Ordinary clients still reach every shard.  (Linux's connect() picks
 * even source ports only: steering by port % 4 sent them all to shards 0
 * and 2.)  40 connections miss a shard with a chance of 4 * (3/4)^40. */
Test(steering, ordinary_connections_reach_every_shard)
{
	unsigned seen[4] = {0};
	for (int i = 0; i < 40; i++)
		seen[shard_of_a_connection(-1)]++;
	for (int k = 0; k < 4; k++)
		cr_assert_gt(seen[k], 0, "no connection on shard %d of 4 (%u %u %u %u)", k, seen[0],
			     seen[1], seen[2], seen[3]);
}
