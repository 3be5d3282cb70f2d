/* SPDX-License-Identifier: Apache-2.0 */
/*
 * fuzz_node.c - the in-process node, the HTTP/2 client and the script of
 * the network harnesses (see fuzz_node.h).
 */
#include "fuzz_node.h"

#include "core/crc32c.h"
#include "core/pbwire.h"
#include "storage/batch.h"
#include "storage/codec.h"

#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <ftw.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <nghttp2/nghttp2.h>
#include <openssl/err.h>
#include <openssl/ssl.h>
#include <openssl/x509v3.h>
#include <poll.h>
#include <pthread.h>
#include <signal.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

/* rmqd's main(), compiled into the harness under this name (CMakeLists). */
int rmqd_main(int argc, char **argv);


static uint64_t now_ms(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (uint64_t)ts.tv_sec * 1000 + (uint64_t)ts.tv_nsec / 1000000;
}

/* ---- byte buffers and protobuf ---------------------------------------------------- */

void fz_buf_put(struct fz_buf *b, const void *p, size_t n)
{
	if (b->len + n > b->cap || !b->p) {
		size_t cap = b->cap ? b->cap : 256;
		while (cap < b->len + n)
			cap *= 2;
		uint8_t *q = realloc(b->p, cap);
		if (!q)
			fz_fail("out of memory");
		b->p = q;
		b->cap = cap;
	}
	if (n)
		memcpy(b->p + b->len, p, n);
	b->len += n;
}

void fz_buf_reset(struct fz_buf *b)
{
	b->len = 0;
}

void fz_buf_free(struct fz_buf *b)
{
	free(b->p);
	memset(b, 0, sizeof(*b));
}

void fz_pb_uint(struct fz_buf *b, uint32_t field, uint64_t v)
{
	uint8_t tmp[2 * RMQ_PB_VARINT_MAX];
	fz_buf_put(b, tmp, rmq_pb_put_uint(tmp, field, v));
}

void fz_pb_bytes(struct fz_buf *b, uint32_t field, const void *p, size_t n)
{
	uint8_t tmp[2 * RMQ_PB_VARINT_MAX];
	fz_buf_put(b, tmp, rmq_pb_put_len(tmp, field, n));
	fz_buf_put(b, p, n);
}

void fz_pb_str(struct fz_buf *b, uint32_t field, const char *s)
{
	fz_pb_bytes(b, field, s, strlen(s));
}

void fz_pb_msg(struct fz_buf *b, uint32_t field, const struct fz_buf *m)
{
	fz_pb_bytes(b, field, m->p, m->len);
}

bool fz_pb_find(const uint8_t *p, size_t len, uint32_t field, uint64_t *num, const uint8_t **val,
		size_t *vlen)
{
	const uint8_t *end = p + len;
	bool found = false;
	while (p < end) {
		uint32_t f, w;
		uint64_t n = 0;
		const uint8_t *v = NULL;
		size_t vl = 0;
		size_t k = rmq_pb_next(p, end, &f, &w, &n, &v, &vl);
		if (k == 0)
			break;
		if (f == field) {
			found = true;
			if (num)
				*num = n;
			if (val)
				*val = v;
			if (vlen)
				*vlen = vl;
		}
		p += k;
	}
	return found;
}

/* ---- the node ----------------------------------------------------------------------- */

static struct {
	pthread_t thread;
	uint16_t port;
	char dir[256];
	int argc;
	char *argv[64];
	bool started;
	struct sigaction rmqd_term; /* rmqd's handler, for the shutdown at exit */
} node;


static int rm_entry(const char *path, const struct stat *st, int flag, struct FTW *ftw)
{
	(void)st;
	(void)flag;
	(void)ftw;
	return remove(path);
}

/* A port nobody listens on now (rmqd refuses a port in use, and takes
 * this one a few microseconds later). */
static uint16_t free_port(void)
{
	int fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
	struct sockaddr_in a = {.sin_family = AF_INET, .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
	socklen_t alen = sizeof(a);
	if (fd < 0 || bind(fd, (struct sockaddr *)&a, sizeof(a)) < 0 ||
	    getsockname(fd, (struct sockaddr *)&a, &alen) < 0)
		fz_fail("cannot find a free port: %s", strerror(errno));
	close(fd);
	return ntohs(a.sin_port);
}

static void add_arg(const char *fmt, ...)
{
	char buf[512];
	va_list ap;
	va_start(ap, fmt);
	vsnprintf(buf, sizeof(buf), fmt, ap);
	va_end(ap);
	if (node.argc + 1 >= (int)(sizeof(node.argv) / sizeof(node.argv[0])))
		fz_fail("too many rmqd flags");
	node.argv[node.argc++] = strdup(buf);
}

/*
 * At exit (libFuzzer's -runs or -max_total_time end, or a reproduction run
 * ends): stop rmqd as SIGTERM would, so LeakSanitizer's final check sees a
 * node that freed what it owns, and remove the data directory.
 */
static void node_stop(void)
{
	if (!node.started)
		return;
	node.started = false;
	if (node.rmqd_term.sa_handler != SIG_DFL && node.rmqd_term.sa_handler != SIG_IGN &&
	    node.rmqd_term.sa_handler != NULL) {
		node.rmqd_term.sa_handler(SIGTERM);
		struct timespec ts;
		clock_gettime(CLOCK_REALTIME, &ts);
		ts.tv_sec += 15;
		/* A node that cannot drain (a call reference kept) never
		 * returns; the per-input idle check usually names the input
		 * first, as this one cannot. */
		int rc = pthread_timedjoin_np(node.thread, NULL, &ts);
		if (rc == ETIMEDOUT)
			fz_fail("rmqd did not stop within 15 s of SIGTERM");
	}
	if (getenv("FZ_KEEP_DATA") == NULL)
		nftw(node.dir, rm_entry, 16, FTW_DEPTH | FTW_PHYS);
}

void fz_fail(const char *fmt, ...)
{
	va_list ap;
	fprintf(stderr, "fuzz: ");
	va_start(ap, fmt);
	vfprintf(stderr, fmt, ap);
	va_end(ap);
	fprintf(stderr, "\n");
	if (node.dir[0])
		fprintf(stderr, "fuzz: the node's data directory is kept: %s\n", node.dir);
	abort();
}

static void *node_main(void *arg)
{
	(void)arg;
	int rc = rmqd_main(node.argc, node.argv);
	if (node.started)
		fz_fail("rmqd returned %d while the harness ran (its log says why)", rc);
	if (rc != 0)
		fz_fail("rmqd stopped with status %d after SIGTERM", rc);
	return NULL;
}

/* The TLS mode's client context (fz_node_start_tls); NULL: plaintext. */
static SSL_CTX *tls_client;

/*
 * Resumption: a full handshake (ECDHE, the node's ECDSA signature, our
 * verification) costs the harness more than the rest of an input, so 15
 * connections in 16 resume the last session the node gave a ticket for
 * (PSK with ECDHE: the node's resumption path is fuzzed too).  Tickets
 * arrive on relay threads.
 */
#define TLS_FULL_EVERY 16
static pthread_mutex_t tls_sess_mu = PTHREAD_MUTEX_INITIALIZER;
static SSL_SESSION *tls_sess;
static unsigned tls_conns;
static bool tls_key_updates;

void fz_tls_key_updates(bool on)
{
	tls_key_updates = on;
}

static int keep_session(SSL *ssl, SSL_SESSION *sess)
{
	(void)ssl;
	pthread_mutex_lock(&tls_sess_mu);
	SSL_SESSION *old = tls_sess;
	tls_sess = sess;
	pthread_mutex_unlock(&tls_sess_mu);
	SSL_SESSION_free(old);
	return 1; /* the reference is ours */
}

static void node_start(const char *const *extra, const char *cert, const char *key);

void fz_node_start(const char *const *extra)
{
	node_start(extra, NULL, NULL);
}

void fz_node_start_tls(const char *cert, const char *key, const char *const *extra)
{
	if (node.started)
		return;
	SSL_CTX *ctx = SSL_CTX_new(TLS_client_method());
	static const unsigned char h2[] = {2, 'h', '2'};
	if (!ctx || SSL_CTX_set_min_proto_version(ctx, TLS1_3_VERSION) != 1 ||
	    SSL_CTX_set_alpn_protos(ctx, h2, sizeof(h2)) != 0 ||
	    SSL_CTX_load_verify_locations(ctx, cert, NULL) != 1)
		fz_fail("the relay's TLS context (trusting %s): %s", cert,
			ERR_reason_error_string(ERR_get_error()));
	SSL_CTX_set_verify(ctx, SSL_VERIFY_PEER, NULL);
	SSL_CTX_set_session_cache_mode(ctx, SSL_SESS_CACHE_CLIENT | SSL_SESS_CACHE_NO_INTERNAL_STORE);
	SSL_CTX_sess_set_new_cb(ctx, keep_session);
	X509_VERIFY_PARAM_set1_ip_asc(SSL_CTX_get0_param(ctx), "127.0.0.1");
	tls_client = ctx;
	node_start(extra, cert, key);
}

static void node_start(const char *const *extra, const char *cert, const char *key)
{
	if (node.started)
		return;
	snprintf(node.dir, sizeof(node.dir), "%s/rmq-fuzz-XXXXXX", fz_tmp_root());
	if (!mkdtemp(node.dir))
		fz_fail("mkdtemp %s: %s", node.dir, strerror(errno));
	node.port = free_port();
	const char *level = getenv("FZ_LOG_LEVEL");

	add_arg("rmqd");
	add_arg("--listen=127.0.0.1:%u", node.port);
	add_arg("--data-dir=%s", node.dir);
	add_arg("--cores=1");
	add_arg("--pin=false");
	add_arg("--log-level=%s", level && *level ? level : "error");
	/* Small and fast: page-cache writes, no preallocation, segments that
	 * roll under the fuzzer's load, retention that bounds the disk. */
	add_arg("--fsync=never");
	add_arg("--prealloc=none");
	add_arg("--segment-bytes=64KiB");
	add_arg("--retention-bytes=1MiB");
	add_arg("--retention-check=1s");
	add_arg("--write-buffer=256KiB");
	add_arg("--index-interval=1KiB");
	add_arg("--recv-buffers=64");
	add_arg("--recv-buffer-bytes=16KiB");
	add_arg("--max-connections=64");
	add_arg("--max-fetch-wait=100ms");
	add_arg("--read-ahead=1MiB");
	add_arg("--offsets-partitions=2");
	add_arg("--offsets-segment-bytes=64KiB");
	add_arg("--group-initial-rebalance-delay=0s");
	add_arg("--group-min-session-timeout=10ms");
	add_arg("--group-max-session-timeout=2s");
	if (cert) {
		add_arg("--tls-cert=%s", cert);
		add_arg("--tls-key=%s", key);
	}
	for (size_t i = 0; extra && extra[i]; i++)
		add_arg("%s", extra[i]);
	node.argv[node.argc] = NULL;

	/* rmqd installs its SIGINT/SIGTERM handlers; libFuzzer's (Ctrl-C
	 * ends the run and prints stats) are put back once rmqd serves. */
	struct sigaction fz_int, fz_term;
	sigaction(SIGINT, NULL, &fz_int);
	sigaction(SIGTERM, NULL, &fz_term);
	node.started = true;
	if (pthread_create(&node.thread, NULL, node_main, NULL) != 0)
		fz_fail("pthread_create failed");

	/* Ready when a health check over a fresh connection says SERVING. */
	uint64_t until = now_ms() + 30000;
	for (;;) {
		int fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
		struct sockaddr_in a = {.sin_family = AF_INET, .sin_port = htons(node.port),
					.sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
		int rc = connect(fd, (struct sockaddr *)&a, sizeof(a));
		close(fd);
		if (rc == 0)
			break;
		if (now_ms() > until)
			fz_fail("rmqd did not listen on 127.0.0.1:%u within 30 s", node.port);
		usleep(2000);
	}
	struct fz_conn *c = fz_conn_open();
	struct fz_buf resp = {0};
	int st = fz_unary(c, "/grpc.health.v1.Health/Check", "", 0, &resp);
	uint64_t serving = 0;
	if (st != 0 || !fz_pb_find(resp.p, resp.len, 1, &serving, NULL, NULL) || serving != 1)
		fz_fail("rmqd's health check answered status %d, serving %llu", st,
			(unsigned long long)serving);
	fz_buf_free(&resp);
	fz_conn_close(c);

	sigaction(SIGTERM, NULL, &node.rmqd_term);
	sigaction(SIGINT, &fz_int, NULL);
	sigaction(SIGTERM, &fz_term, NULL);
	atexit(node_stop);
	if (getenv("FZ_VERBOSE"))
		fprintf(stderr, "fuzz: rmqd on 127.0.0.1:%u, data in %s\n", node.port, node.dir);
}

uint16_t fz_node_port(void)
{
	return node.port;
}

/*
 * libFuzzer's leak check after each input assumes that what an input
 * allocates is freed by the time it returns.  A node allocates and frees
 * on its own threads and timers, so the counts rarely match, and libFuzzer
 * then runs a whole LeakSanitizer pass after nearly every input (40 inputs
 * a second instead of 1500).  The network harnesses default to
 * -detect_leaks=0: LeakSanitizer still checks at exit, after the node was
 * shut down, so a leak is reported with its allocation stack.  An explicit
 * -detect_leaks=1 wins.
 */
int LLVMFuzzerInitialize(int *argc, char ***argv)
{
	for (int i = 1; i < *argc; i++)
		if (strncmp((*argv)[i], "-detect_leaks=", 14) == 0)
			return 0;
	char **v = calloc((size_t)*argc + 2, sizeof(*v));
	if (!v)
		return 0;
	memcpy(v, *argv, (size_t)*argc * sizeof(*v));
	v[*argc] = "-detect_leaks=0";
	*argc += 1;
	*argv = v; /* kept for the life of the process, as argv is */
	return 0;
}

/* ---- the HTTP/2 client ------------------------------------------------------------------ */

struct fz_call {
	struct fz_conn *conn;
	struct fz_call *next;       /* the connection's calls */
	int32_t id;
	bool closed;
	bool eof_after;             /* END_STREAM after the request bytes */
	int status;                 /* grpc-status, -1 = none */
	uint64_t start_ms;
	struct fz_buf req;          /* framed request messages */
	size_t req_off;
	struct fz_buf resp;         /* framed response messages, as received */
	size_t *offs;               /* message i at resp.p + offs[i] (payload) */
	size_t *lens;
	size_t nmsgs, msgs_cap, parsed; /* parsed: resp bytes split so far */
};

struct fz_conn {
	int fd;
	nghttp2_session *s;
	bool dead;
	struct fz_call *calls;
};

static ssize_t send_cb(nghttp2_session *s, const uint8_t *data, size_t len, int flags, void *ud)
{
	struct fz_conn *c = ud;
	(void)s;
	(void)flags;
	ssize_t n = send(c->fd, data, len, MSG_NOSIGNAL | MSG_DONTWAIT);
	if (n < 0)
		return errno == EAGAIN || errno == EWOULDBLOCK ? NGHTTP2_ERR_WOULDBLOCK
							       : NGHTTP2_ERR_CALLBACK_FAILURE;
	return n;
}

static ssize_t recv_cb(nghttp2_session *s, uint8_t *buf, size_t len, int flags, void *ud)
{
	struct fz_conn *c = ud;
	(void)s;
	(void)flags;
	ssize_t n = recv(c->fd, buf, len, MSG_DONTWAIT);
	if (n == 0)
		return NGHTTP2_ERR_EOF;
	if (n < 0)
		return errno == EAGAIN || errno == EWOULDBLOCK ? NGHTTP2_ERR_WOULDBLOCK
							       : NGHTTP2_ERR_CALLBACK_FAILURE;
	return n;
}

static struct fz_call *stream_call(nghttp2_session *s, int32_t id)
{
	return nghttp2_session_get_stream_user_data(s, id);
}

static int header_cb(nghttp2_session *s, const nghttp2_frame *f, const uint8_t *name, size_t nlen,
		     const uint8_t *value, size_t vlen, uint8_t flags, void *ud)
{
	(void)flags;
	(void)ud;
	struct fz_call *k = stream_call(s, f->hd.stream_id);
	if (k && nlen == 11 && memcmp(name, "grpc-status", 11) == 0) {
		int st = 0;
		for (size_t i = 0; i < vlen && i < 4; i++)
			st = st * 10 + (value[i] >= '0' && value[i] <= '9' ? value[i] - '0' : 0);
		k->status = st;
	}
	return 0;
}

static int data_cb(nghttp2_session *s, uint8_t flags, int32_t id, const uint8_t *data, size_t len,
		   void *ud)
{
	(void)flags;
	(void)ud;
	struct fz_call *k = stream_call(s, id);
	if (k)
		fz_buf_put(&k->resp, data, len);
	return 0;
}

static int close_cb(nghttp2_session *s, int32_t id, uint32_t error_code, void *ud)
{
	(void)error_code;
	(void)ud;
	struct fz_call *k = stream_call(s, id);
	if (k) {
		k->closed = true;
		nghttp2_session_set_stream_user_data(s, id, NULL);
	}
	return 0;
}

static int frame_cb(nghttp2_session *s, const nghttp2_frame *f, void *ud)
{
	(void)s;
	struct fz_conn *c = ud;
	if (f->hd.type == NGHTTP2_GOAWAY)
		c->dead = true;
	return 0;
}

static ssize_t read_req(nghttp2_session *s, int32_t id, uint8_t *buf, size_t len,
			uint32_t *flags, nghttp2_data_source *src, void *ud)
{
	(void)s;
	(void)id;
	(void)ud;
	struct fz_call *k = src->ptr;
	size_t n = k->req.len - k->req_off;
	if (n > len)
		n = len;
	if (n)
		memcpy(buf, k->req.p + k->req_off, n);
	k->req_off += n;
	if (k->req_off == k->req.len) {
		if (!k->eof_after)
			return n ? (ssize_t)n : NGHTTP2_ERR_DEFERRED;
		*flags |= NGHTTP2_DATA_FLAG_EOF;
	}
	return (ssize_t)n;
}

static void conn_lost(struct fz_conn *c)
{
	c->dead = true;
	for (struct fz_call *k = c->calls; k; k = k->next)
		k->closed = true;
}

/* One round: send what nghttp2 has, wait up to ms for input, read it. */
static void pump(struct fz_conn *c, int ms)
{
	if (c->fd < 0)
		return;
	if (nghttp2_session_send(c->s) != 0) {
		conn_lost(c);
		return;
	}
	struct pollfd p = {.fd = c->fd, .events = POLLIN};
	if (nghttp2_session_want_write(c->s))
		p.events |= POLLOUT;
	if (poll(&p, 1, ms) <= 0)
		return;
	if (p.revents & (POLLIN | POLLHUP | POLLERR)) {
		int rv = nghttp2_session_recv(c->s);
		if (rv != 0) {
			conn_lost(c);
			return;
		}
	}
	if (nghttp2_session_send(c->s) != 0)
		conn_lost(c);
	if (!nghttp2_session_want_read(c->s) && !nghttp2_session_want_write(c->s))
		conn_lost(c);
}

int fz_connect_tcp(void)
{
	int fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
	struct sockaddr_in a = {.sin_family = AF_INET, .sin_port = htons(node.port),
				.sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
	if (fd < 0)
		fz_fail("socket: %s", strerror(errno));
	if (connect(fd, (struct sockaddr *)&a, sizeof(a)) < 0) {
		/* libFuzzer's timers interrupt system calls: the connect
		 * goes on without us, so wait for it. */
		int err = errno;
		if (err == EINTR || err == EINPROGRESS) {
			struct pollfd p = {.fd = fd, .events = POLLOUT};
			socklen_t elen = sizeof(err);
			while (poll(&p, 1, FZ_HANG_MS) < 0 && errno == EINTR)
				;
			if (getsockopt(fd, SOL_SOCKET, SO_ERROR, &err, &elen) < 0)
				err = errno;
		}
		if (err != 0)
			fz_fail("cannot connect to rmqd on 127.0.0.1:%u: %s", node.port, strerror(err));
	}
	int one = 1;
	setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
	return fd;
}

/* ---- the TLS relay (fz_node_start_tls) ------------------------------------------------- */

struct relay {
	SSL *ssl;
	int tcp;          /* to the node: TLS records */
	int end;          /* the harness's peer end: plaintext */
	uint8_t up[16384];    /* from the harness, to SSL_write */
	size_t up_len, up_off;
	uint8_t down[16384];  /* from SSL_read, to the harness */
	size_t down_len, down_off;
	bool up_eof;      /* the harness shut its side */
	bool shut_sent;   /* ... and the node got close_notify and our FIN */
	bool node_gone;   /* the node closed, or TLS failed: no more records */
	bool end_shut;    /* the harness got its EOF */
	bool want_out;    /* the last SSL call wants the socket writable */
	bool key_updates; /* fz_tls_key_updates */
};

/* One SSL call's outcome: true when it may go on later (WANT_*). */
static bool relay_retry(struct relay *r, int rc)
{
	int e = SSL_get_error(r->ssl, rc);
	if (e == SSL_ERROR_WANT_READ)
		return true;
	if (e == SSL_ERROR_WANT_WRITE) {
		r->want_out = true;
		return true;
	}
	/* close_notify, the node's FIN or reset, a TLS alert: the node is
	 * done with this connection. */
	ERR_clear_error();
	r->node_gone = true;
	return false;
}

/* Moves what can move without waiting; true when something did. */
static bool relay_step(struct relay *r)
{
	bool moved = false;
	r->want_out = false;
	/* Harness -> node. */
	if (!r->up_eof && r->up_off == r->up_len) {
		ssize_t n = recv(r->end, r->up, sizeof(r->up), MSG_DONTWAIT);
		if (n > 0) {
			r->up_len = (size_t)n;
			r->up_off = 0;
			moved = true;
		} else if (n == 0 || (errno != EAGAIN && errno != EWOULDBLOCK && errno != EINTR)) {
			r->up_eof = true;
			moved = true;
		}
	}
	if (r->node_gone) {
		r->up_off = r->up_len; /* nobody to take them: dropped, as a
					* reset connection drops them */
	} else if (r->up_off < r->up_len) {
		/* Refused while one is still pending: then with a later record. */
		if (r->key_updates && SSL_key_update(r->ssl, SSL_KEY_UPDATE_REQUESTED) != 1)
			ERR_clear_error();
		int n = SSL_write(r->ssl, r->up + r->up_off, (int)(r->up_len - r->up_off));
		if (n > 0) {
			r->up_off += (size_t)n;
			moved = true;
		} else if (!relay_retry(r, n)) {
			moved = true;
		}
	}
	if (r->up_eof && r->up_off == r->up_len && !r->shut_sent && !r->node_gone) {
		int n = SSL_shutdown(r->ssl); /* 0: sent, the node's not seen yet */
		if (n >= 0 || !relay_retry(r, n)) {
			shutdown(r->tcp, SHUT_WR);
			r->shut_sent = true;
			moved = true;
		}
	}
	/* Node -> harness.  SSL_read is tried on every step, so records
	 * OpenSSL holds (SSL_pending) never wait for the socket. */
	if (!r->node_gone && r->down_off == r->down_len) {
		int n = SSL_read(r->ssl, r->down, sizeof(r->down));
		if (n > 0) {
			r->down_len = (size_t)n;
			r->down_off = 0;
			moved = true;
		} else if (!relay_retry(r, n)) {
			moved = true;
		}
	}
	if (r->down_off < r->down_len) {
		ssize_t n = send(r->end, r->down + r->down_off, r->down_len - r->down_off,
				 MSG_DONTWAIT | MSG_NOSIGNAL);
		if (n > 0) {
			r->down_off += (size_t)n;
			moved = true;
		} else if (n < 0 && errno != EAGAIN && errno != EWOULDBLOCK && errno != EINTR) {
			r->down_off = r->down_len; /* the harness closed: dropped */
			moved = true;
		}
	}
	if (r->node_gone && r->down_off == r->down_len && !r->end_shut) {
		shutdown(r->end, SHUT_WR);
		r->end_shut = true;
		moved = true;
	}
	return moved;
}

/* Carries bytes both ways until the node is done and the harness closed
 * its end (which it always does), then frees the connection. */
static void *relay_main(void *arg)
{
	struct relay *r = arg;
	while (!(r->node_gone && r->end_shut && r->up_eof)) {
		if (relay_step(r))
			continue;
		struct pollfd p[2] = {{.fd = r->tcp}, {.fd = r->end}};
		if (!r->node_gone)
			p[0].events = (short)(POLLIN | (r->want_out ? POLLOUT : 0));
		else
			p[0].fd = -1;
		if (!r->up_eof && r->up_off == r->up_len)
			p[1].events |= POLLIN;
		if (r->down_off < r->down_len)
			p[1].events |= POLLOUT;
		poll(p, 2, 1000);
	}
	SSL_free(r->ssl);
	ERR_clear_error();
	close(r->tcp);
	close(r->end);
	free(r);
	return NULL;
}

static int relay_open(void)
{
	int sv[2];
	if (socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, sv) < 0)
		fz_fail("socketpair: %s", strerror(errno));
	struct relay *r = calloc(1, sizeof(*r));
	if (!r)
		fz_fail("out of memory");
	r->end = sv[1];
	r->key_updates = tls_key_updates;
	r->tcp = fz_connect_tcp();
	fcntl(r->tcp, F_SETFL, fcntl(r->tcp, F_GETFL) | O_NONBLOCK);
	r->ssl = SSL_new(tls_client);
	if (!r->ssl || SSL_set_fd(r->ssl, r->tcp) != 1)
		fz_fail("SSL_new failed");
	SSL_set_connect_state(r->ssl);
	if (tls_conns++ % TLS_FULL_EVERY != 0) {
		pthread_mutex_lock(&tls_sess_mu);
		if (tls_sess)
			SSL_set_session(r->ssl, tls_sess); /* takes its own reference */
		pthread_mutex_unlock(&tls_sess_mu);
	}
	/* The handshake here, so a node that refuses it fails the input
	 * that asked for the connection. */
	uint64_t until = now_ms() + FZ_HANG_MS;
	for (;;) {
		int rc = SSL_connect(r->ssl);
		if (rc == 1)
			break;
		int e = SSL_get_error(r->ssl, rc);
		if (e != SSL_ERROR_WANT_READ && e != SSL_ERROR_WANT_WRITE) {
			unsigned long code = ERR_get_error();
			long v = SSL_get_verify_result(r->ssl);
			fz_fail("TLS handshake with rmqd failed (SSL error %d): %s%s%s", e,
				code ? ERR_reason_error_string(code) : "the connection closed",
				v != X509_V_OK ? ": " : "",
				v != X509_V_OK ? X509_verify_cert_error_string(v) : "");
		}
		uint64_t t = now_ms();
		if (t >= until)
			fz_fail("HANG: rmqd did not finish a TLS handshake within %d ms", FZ_HANG_MS);
		struct pollfd p = {.fd = r->tcp,
				   .events = e == SSL_ERROR_WANT_WRITE ? POLLOUT : POLLIN};
		poll(&p, 1, (int)(until - t));
	}
	const unsigned char *alpn = NULL;
	unsigned alpn_len = 0;
	SSL_get0_alpn_selected(r->ssl, &alpn, &alpn_len);
	if (alpn_len != 2 || memcmp(alpn, "h2", 2) != 0)
		fz_fail("rmqd's TLS handshake did not select ALPN h2");
	pthread_t th;
	pthread_attr_t at;
	pthread_attr_init(&at);
	pthread_attr_setdetachstate(&at, PTHREAD_CREATE_DETACHED);
	if (pthread_create(&th, &at, relay_main, r) != 0)
		fz_fail("pthread_create failed");
	pthread_attr_destroy(&at);
	return sv[0];
}

int fz_connect(void)
{
	if (tls_client)
		return relay_open();
	return fz_connect_tcp();
}

struct fz_conn *fz_conn_open(void)
{
	struct fz_conn *c = calloc(1, sizeof(*c));
	if (!c)
		fz_fail("out of memory");
	c->fd = fz_connect();

	nghttp2_session_callbacks *cb;
	nghttp2_session_callbacks_new(&cb);
	nghttp2_session_callbacks_set_send_callback(cb, send_cb);
	nghttp2_session_callbacks_set_recv_callback(cb, recv_cb);
	nghttp2_session_callbacks_set_on_header_callback(cb, header_cb);
	nghttp2_session_callbacks_set_on_data_chunk_recv_callback(cb, data_cb);
	nghttp2_session_callbacks_set_on_stream_close_callback(cb, close_cb);
	nghttp2_session_callbacks_set_on_frame_recv_callback(cb, frame_cb);
	if (nghttp2_session_client_new(&c->s, cb, c) != 0)
		fz_fail("nghttp2_session_client_new failed");
	nghttp2_session_callbacks_del(cb);
	nghttp2_settings_entry iv[] = {
		{NGHTTP2_SETTINGS_INITIAL_WINDOW_SIZE, 16u << 20},
		{NGHTTP2_SETTINGS_MAX_CONCURRENT_STREAMS, 1024},
	};
	nghttp2_submit_settings(c->s, NGHTTP2_FLAG_NONE, iv, sizeof(iv) / sizeof(iv[0]));
	nghttp2_session_set_local_window_size(c->s, NGHTTP2_FLAG_NONE, 0, 1 << 30);
	pump(c, 0);
	return c;
}

bool fz_conn_dead(const struct fz_conn *c)
{
	return c->dead;
}

void fz_call_free(struct fz_call *k)
{
	struct fz_conn *c = k->conn;
	for (struct fz_call **pp = &c->calls; *pp; pp = &(*pp)->next) {
		if (*pp == k) {
			*pp = k->next;
			break;
		}
	}
	if (!k->closed && c->s)
		nghttp2_session_set_stream_user_data(c->s, k->id, NULL);
	fz_buf_free(&k->req);
	fz_buf_free(&k->resp);
	free(k->offs);
	free(k->lens);
	free(k);
}

void fz_conn_close(struct fz_conn *c)
{
	while (c->calls)
		fz_call_free(c->calls);
	nghttp2_session_del(c->s);
	c->s = NULL;
	/* Our FIN, then the node's: it has torn the connection down (calls
	 * cancelled, buffers returned) once it closes its side. */
	shutdown(c->fd, SHUT_WR);
	uint64_t until = now_ms() + FZ_HANG_MS;
	uint8_t buf[16384];
	for (;;) {
		struct pollfd p = {.fd = c->fd, .events = POLLIN};
		uint64_t t = now_ms();
		if (t >= until)
			fz_fail("HANG: rmqd did not close a connection within %d ms of the client's FIN",
				FZ_HANG_MS);
		if (poll(&p, 1, (int)(until - t)) <= 0)
			continue;
		ssize_t n = recv(c->fd, buf, sizeof(buf), 0);
		if (n <= 0)
			break;
	}
	close(c->fd);
	free(c);
}

struct fz_call *fz_call_start(struct fz_conn *c, const char *path, const uint8_t *const *msgs,
			      const size_t *lens, size_t n, uint64_t timeout_ms, bool keep_open)
{
	if (c->dead)
		return NULL;
	struct fz_call *k = calloc(1, sizeof(*k));
	if (!k)
		fz_fail("out of memory");
	k->conn = c;
	k->status = -1;
	k->start_ms = now_ms();
	k->eof_after = !keep_open;
	for (size_t i = 0; i < n; i++) {
		uint8_t pre[5] = {0, (uint8_t)(lens[i] >> 24), (uint8_t)(lens[i] >> 16),
				  (uint8_t)(lens[i] >> 8), (uint8_t)lens[i]};
		fz_buf_put(&k->req, pre, 5);
		fz_buf_put(&k->req, msgs[i], lens[i]);
	}
	char tmo[32];
	nghttp2_nv nv[7];
	size_t nnv = 0;
#define NV(n, v)                                                                              \
	nv[nnv++] = (nghttp2_nv){(uint8_t *)(n), (uint8_t *)(v), strlen(n), strlen(v),        \
				 NGHTTP2_NV_FLAG_NONE}
	NV(":method", "POST");
	NV(":scheme", "http");
	NV(":authority", "127.0.0.1");
	NV(":path", path);
	NV("content-type", "application/grpc");
	NV("te", "trailers");
	if (timeout_ms) {
		snprintf(tmo, sizeof(tmo), "%llum", (unsigned long long)timeout_ms);
		NV("grpc-timeout", tmo);
	}
#undef NV
	nghttp2_data_provider dp = {.source.ptr = k, .read_callback = read_req};
	int32_t id = nghttp2_submit_request(c->s, NULL, nv, nnv, &dp, k);
	if (id < 0) {
		fz_buf_free(&k->req);
		free(k);
		return NULL;
	}
	k->id = id;
	k->next = c->calls;
	c->calls = k;
	pump(c, 0);
	return k;
}

void fz_call_cancel(struct fz_call *k)
{
	struct fz_conn *c = k->conn;
	if (k->closed || c->dead)
		return;
	nghttp2_submit_rst_stream(c->s, NGHTTP2_FLAG_NONE, k->id, NGHTTP2_CANCEL);
	pump(c, 0);
}

static void split_resp(struct fz_call *k)
{
	while (k->resp.len - k->parsed >= 5) {
		const uint8_t *p = k->resp.p + k->parsed;
		size_t len = (size_t)p[1] << 24 | (size_t)p[2] << 16 | (size_t)p[3] << 8 | p[4];
		if (k->resp.len - k->parsed - 5 < len)
			break;
		if (k->nmsgs == k->msgs_cap) {
			size_t cap = k->msgs_cap ? 2 * k->msgs_cap : 8;
			size_t *o = realloc(k->offs, cap * sizeof(*o));
			size_t *l = o ? realloc(k->lens, cap * sizeof(*l)) : NULL;
			if (!o || !l)
				fz_fail("out of memory");
			k->offs = o;
			k->lens = l;
			k->msgs_cap = cap;
		}
		k->offs[k->nmsgs] = k->parsed + 5;
		k->lens[k->nmsgs] = len;
		k->nmsgs++;
		k->parsed += 5 + len;
	}
}

void fz_call_wait(struct fz_call *k)
{
	uint64_t until = now_ms() + FZ_HANG_MS;
	while (!k->closed) {
		uint64_t t = now_ms();
		if (t >= until)
			fz_fail("HANG: a call (stream %d) was not answered within %d ms", k->id,
				FZ_HANG_MS);
		pump(k->conn, (int)(until - t < 100 ? until - t : 100));
	}
	split_resp(k);
}

size_t fz_call_wait_messages(struct fz_call *k, size_t n, uint64_t ms)
{
	uint64_t until = now_ms() + ms;
	split_resp(k);
	while (!k->closed && k->nmsgs < n) {
		uint64_t t = now_ms();
		if (t >= until)
			break;
		pump(k->conn, (int)(until - t < 50 ? until - t : 50));
		split_resp(k);
	}
	return k->nmsgs;
}

void fz_conn_wait_all(struct fz_conn *c)
{
	uint64_t until = now_ms() + FZ_HANG_MS;
	for (;;) {
		struct fz_call *open = NULL;
		for (struct fz_call *k = c->calls; k; k = k->next)
			if (!k->closed)
				open = k;
		if (!open)
			break;
		uint64_t t = now_ms();
		if (t >= until)
			fz_fail("HANG: a call (stream %d) was not answered within %d ms", open->id,
				FZ_HANG_MS);
		pump(c, (int)(until - t < 100 ? until - t : 100));
	}
	for (struct fz_call *k = c->calls; k; k = k->next)
		split_resp(k);
}

int fz_call_status(const struct fz_call *k)
{
	return k->status;
}

size_t fz_call_nmsgs(const struct fz_call *k)
{
	return k->nmsgs;
}

const uint8_t *fz_call_msg(const struct fz_call *k, size_t i, size_t *len)
{
	if (i >= k->nmsgs)
		return NULL;
	*len = k->lens[i];
	return k->resp.p + k->offs[i];
}

int fz_unary(struct fz_conn *c, const char *path, const void *req, size_t len,
	     struct fz_buf *resp)
{
	const uint8_t *m = req;
	if (resp)
		fz_buf_reset(resp);
	if (resp)
		fz_buf_put(resp, "", 0); /* never NULL, even when empty */
	struct fz_call *k = fz_call_start(c, path, &m, &len, 1, 0, false);
	if (!k)
		return -1;
	fz_call_wait(k);
	int st = k->status;
	size_t rl;
	const uint8_t *r = fz_call_msg(k, 0, &rl);
	if (resp && r)
		fz_buf_put(resp, r, rl);
	fz_call_free(k);
	return st;
}

/* ---- the script ------------------------------------------------------------------------- */

void fz_script_init(struct fz_script *s, const uint8_t *data, size_t size)
{
	s->p = data;
	s->end = data + size;
}

bool fz_script_next(struct fz_script *s, struct fz_step *st)
{
	if (s->end - s->p < 3)
		return false;
	st->sel = s->p[0];
	size_t len = (size_t)s->p[1] | (size_t)s->p[2] << 8;
	s->p += 3;
	if (len > (size_t)(s->end - s->p))
		len = (size_t)(s->end - s->p);
	st->body = s->p;
	st->len = len;
	s->p += len;
	return true;
}

size_t fz_split_messages(const uint8_t *body, size_t len, const uint8_t **msgs, size_t *lens,
			 size_t max)
{
	size_t n = 0;
	const uint8_t *p = body, *end = body + len;
	while (n < max && end - p >= 2) {
		size_t l = (size_t)p[0] | (size_t)p[1] << 8;
		p += 2;
		if (l > (size_t)(end - p))
			l = (size_t)(end - p);
		msgs[n] = p;
		lens[n] = l;
		n++;
		p += l;
	}
	return n;
}

#define INFLIGHT_MAX 64

struct pending {
	struct fz_call *k;
	unsigned method;
	struct fz_step st; /* as the input has it: its bytes outlive the call */
};

/* FZ_TRACE=1: one line per call, to see what an input does. */
static void trace(const struct fz_script_ops *ops, const struct pending *p)
{
	static int on = -1;
	if (on < 0)
		on = getenv("FZ_TRACE") != NULL;
	if (!on)
		return;
	size_t len = 0;
	uint64_t ec = 0;
	const uint8_t *m = fz_call_msg(p->k, 0, &len);
	const uint8_t *text = NULL;
	size_t tlen = 0;
	if (m) {
		fz_pb_find(m, len, 1, &ec, NULL, NULL);
		fz_pb_find(m, len, 2, NULL, &text, &tlen);
	}
	fprintf(stderr, "fuzz: %s: %llu ms, grpc-status %d, %zu message(s), error_code %llu %.*s\n",
		ops->methods[p->method].path, (unsigned long long)(now_ms() - p->k->start_ms),
		p->k->status, p->k->nmsgs, (unsigned long long)ec,
		(int)(tlen > 120 ? 120 : tlen), text ? (const char *)text : "");
}

static void finish(const struct fz_script_ops *ops, struct pending *p)
{
	fz_call_wait(p->k);
	trace(ops, p);
	if (ops->answered)
		ops->answered(p->method, &p->st, p->k);
	fz_call_free(p->k);
}

void fz_run_script(const uint8_t *data, size_t size, const struct fz_script_ops *ops)
{
	struct fz_conn *c = fz_conn_open();
	struct pending inflight[INFLIGHT_MAX];
	size_t ninflight = 0;
	struct fz_buf patched = {0};
	struct fz_script s;
	struct fz_step st;

	fz_script_init(&s, data, size);
	while (fz_script_next(&s, &st)) {
		if (fz_conn_dead(c) || ninflight == INFLIGHT_MAX) {
			for (size_t i = 0; i < ninflight; i++)
				finish(ops, &inflight[i]);
			ninflight = 0;
		}
		if (fz_conn_dead(c)) {
			fz_conn_close(c);
			c = fz_conn_open();
		}
		unsigned m = (unsigned)(st.sel & FZ_SEL_METHOD) % (unsigned)ops->nmethods;
		const struct fz_method *meth = &ops->methods[m];
		if (meth->kind == FZ_LOCAL) {
			ops->local(c, &st);
			continue;
		}
		struct fz_step orig = st;
		fz_buf_reset(&patched);
		if (ops->patch)
			ops->patch(m, &st, &patched);
		if (patched.len) {
			st.body = patched.p;
			st.len = patched.len;
		}
		const uint8_t *msgs[16];
		size_t lens[16], n = 1;
		msgs[0] = st.body;
		lens[0] = st.len;
		bool open = meth->kind == FZ_STREAM_OPEN;
		if (meth->kind == FZ_STREAM || open)
			n = fz_split_messages(st.body, st.len, msgs, lens, 16);
		struct fz_call *k = fz_call_start(c, meth->path, msgs, lens, n,
						  st.sel & FZ_SEL_DEADLINE ? 1 : meth->timeout_ms, open);
		if (!k)
			continue;
		if (st.sel & FZ_SEL_CANCEL)
			fz_call_cancel(k);
		if (meth->kind == FZ_SERVER_STREAM) {
			fz_call_wait_messages(k, 1, 20);
			fz_call_cancel(k);
		}
		if (open) {
			continue; /* ends with the connection */
		}
		struct pending p = {k, m, orig};
		if (st.sel & FZ_SEL_INFLIGHT)
			inflight[ninflight++] = p;
		else
			finish(ops, &p);
	}
	for (size_t i = 0; i < ninflight; i++)
		finish(ops, &inflight[i]);
	fz_buf_free(&patched);
	fz_conn_close(c);
}

/* ---- shared setup and checks --------------------------------------------------------------- */

static void version(struct fz_buf *b)
{
	struct fz_buf v = {0};
	fz_pb_uint(&v, 1, 1);
	fz_pb_msg(b, 1, &v);
	fz_buf_free(&v);
}

/* error_code (field 1) of a response, 0 when absent. */
static uint64_t error_code(const struct fz_buf *r, uint32_t field)
{
	uint64_t ec = 0;
	fz_pb_find(r->p, r->len, field, &ec, NULL, NULL);
	return ec;
}

void fz_create_topic(struct fz_conn *c, const char *name, uint32_t partitions,
		     const char *const *configs)
{
	struct fz_buf req = {0}, t = {0}, e = {0}, resp = {0};
	version(&req);
	fz_pb_str(&t, 1, name);
	fz_pb_uint(&t, 2, partitions);
	fz_pb_uint(&t, 3, 1);
	for (size_t i = 0; configs && configs[i]; i++) {
		const char *eq = strchr(configs[i], '=');
		if (!eq)
			fz_fail("config '%s' is not key=value", configs[i]);
		fz_buf_reset(&e);
		fz_pb_bytes(&e, 1, configs[i], (size_t)(eq - configs[i]));
		fz_pb_str(&e, 2, eq + 1);
		fz_pb_msg(&t, 4, &e);
	}
	fz_pb_msg(&req, 2, &t);
	int st = fz_unary(c, "/rustmq.controller.AdminService/CreateTopics", req.p, req.len, &resp);
	/* CreateTopicsResponse.topics[0].error_code: OK or TOPIC_ALREADY_EXISTS (15). */
	const uint8_t *res = NULL;
	size_t rlen = 0;
	uint64_t ec = 0;
	if (st == 0 && fz_pb_find(resp.p, resp.len, 3, NULL, &res, &rlen))
		fz_pb_find(res, rlen, 2, &ec, NULL, NULL);
	if (st != 0 || error_code(&resp, 1) != 0 || (ec != 0 && ec != 15))
		fz_fail("CreateTopics %s: status %d, error %llu/%llu", name, st,
			(unsigned long long)error_code(&resp, 1), (unsigned long long)ec);
	fz_buf_free(&req);
	fz_buf_free(&t);
	fz_buf_free(&e);
	fz_buf_free(&resp);
}

int fz_delete_topics_except(struct fz_conn *c, const char *const *keep)
{
	struct fz_buf req = {0}, resp = {0}, del = {0};
	version(&req);
	int st = fz_unary(c, "/rustmq.controller.AdminService/ListTopics", req.p, req.len, &resp);
	if (st != 0)
		fz_fail("ListTopics: status %d", st);
	version(&del);
	int n = 0;
	const uint8_t *p = resp.p, *end = resp.p + resp.len;
	while (p < end) {
		uint32_t f, w;
		uint64_t num = 0;
		const uint8_t *val = NULL;
		size_t vlen = 0;
		size_t k = rmq_pb_next(p, end, &f, &w, &num, &val, &vlen);
		if (k == 0)
			fz_fail("ListTopics answered malformed protobuf");
		p += k;
		if (f != 3 || w != RMQ_PB_LEN)
			continue;
		const uint8_t *name = NULL;
		size_t nlen = 0;
		uint64_t internal = 0;
		fz_pb_find(val, vlen, 1, NULL, &name, &nlen);
		fz_pb_find(val, vlen, 3, &internal, NULL, NULL);
		if (!name || internal)
			continue;
		bool kept = false;
		for (size_t i = 0; keep && keep[i]; i++)
			if (strlen(keep[i]) == nlen && memcmp(keep[i], name, nlen) == 0)
				kept = true;
		if (!kept) {
			fz_pb_bytes(&del, 2, name, nlen);
			n++;
		}
	}
	if (n > 0) {
		st = fz_unary(c, "/rustmq.controller.AdminService/DeleteTopics", del.p, del.len, &resp);
		if (st != 0 || error_code(&resp, 1) != 0)
			fz_fail("DeleteTopics of %d topics: status %d, error %llu", n, st,
				(unsigned long long)error_code(&resp, 1));
	}
	fz_buf_free(&req);
	fz_buf_free(&resp);
	fz_buf_free(&del);
	return n;
}

void fz_produce_records(struct fz_conn *c, const char *topic, uint32_t partition, unsigned n,
			size_t size, unsigned compression)
{
	struct fz_buf recs = {0}, rec = {0}, req = {0}, tp = {0}, batch = {0}, resp = {0};
	uint8_t value[256];
	static uint64_t seq;
	if (size > sizeof(value))
		size = sizeof(value);
	for (unsigned i = 0; i < n; i++) {
		char key[32];
		snprintf(key, sizeof(key), "k%llu", (unsigned long long)seq++);
		memset(value, 'a' + (int)(i % 26), size);
		fz_buf_reset(&rec);
		fz_pb_str(&rec, 1, key);
		fz_pb_bytes(&rec, 2, value, size);
		fz_pb_msg(&recs, 7, &rec); /* RecordBatch.records elements */
	}
	version(&req);
	fz_pb_str(&tp, 1, topic);
	fz_pb_uint(&tp, 2, partition);
	fz_pb_msg(&req, 3, &tp);
	fz_pb_uint(&req, 5, 1); /* acks=LEADER */
	fz_pb_uint(&batch, 1, 2);
	if (compression) {
		size_t cap = rmq_codec_bound((int)compression, recs.len);
		uint8_t *z = malloc(cap ? cap : 1);
		ssize_t zl = z ? rmq_codec_compress((int)compression, recs.p, recs.len, z, cap) : -1;
		if (zl < 0)
			fz_fail("compressing with codec %u failed: %zd", compression, zl);
		fz_pb_uint(&batch, 2, compression);
		fz_pb_uint(&batch, 8, rmq_crc32c(0, z, (size_t)zl));
		fz_pb_bytes(&batch, 9, z, (size_t)zl);
		free(z);
	} else {
		fz_buf_put(&batch, recs.p, recs.len);
		fz_pb_uint(&batch, 8, rmq_crc32c(0, recs.p, recs.len));
	}
	fz_pb_uint(&batch, 10, n);
	fz_pb_msg(&req, 15, &batch);
	int st = fz_unary(c, "/rustmq.client.ProducerService/Produce", req.p, req.len, &resp);
	if (st != 0 || error_code(&resp, 1) != 0)
		fz_fail("Produce of %u records to %s/%u: status %d, error %llu", n, topic, partition,
			st, (unsigned long long)error_code(&resp, 1));
	fz_buf_free(&recs);
	fz_buf_free(&rec);
	fz_buf_free(&req);
	fz_buf_free(&tp);
	fz_buf_free(&batch);
	fz_buf_free(&resp);
}

/* Records (field-7 elements) in uncompressed records bytes; -1 when they
 * are not exactly such elements. */
static long count_records(const uint8_t *p, size_t len)
{
	const uint8_t *end = p + len;
	long n = 0;
	while (p < end) {
		uint32_t f, w;
		uint64_t num = 0;
		const uint8_t *val = NULL;
		size_t vlen = 0;
		size_t k = rmq_pb_next(p, end, &f, &w, &num, &val, &vlen);
		if (k == 0 || f != 7 || w != RMQ_PB_LEN)
			return -1;
		n++;
		p += k;
	}
	return n;
}

uint64_t fz_check_partition(struct fz_conn *c, const char *topic, uint32_t partition,
			    uint64_t from, int codec)
{
	struct fz_buf req = {0}, fp = {0}, tp = {0}, resp = {0};
	uint64_t next = from;
	for (int round = 0; round < 10000; round++) {
		fz_buf_reset(&req);
		fz_buf_reset(&fp);
		fz_buf_reset(&tp);
		version(&req);
		fz_pb_str(&tp, 1, topic);
		fz_pb_uint(&tp, 2, partition);
		fz_pb_msg(&fp, 1, &tp);
		fz_pb_uint(&fp, 2, next);
		fz_pb_uint(&fp, 4, 1u << 20);
		fz_pb_uint(&req, 6, 4u << 20);
		fz_pb_msg(&req, 7, &fp);
		int st = fz_unary(c, "/rustmq.client.ConsumerService/Fetch", req.p, req.len, &resp);
		if (st != 0 || error_code(&resp, 1) != 0)
			fz_fail("Fetch %s/%u at %llu: status %d, error %llu", topic, partition,
				(unsigned long long)next, st, (unsigned long long)error_code(&resp, 1));
		const uint8_t *pr = NULL;
		size_t prlen = 0;
		if (!fz_pb_find(resp.p, resp.len, 3, NULL, &pr, &prlen))
			fz_fail("Fetch %s/%u answered no partition", topic, partition);
		uint64_t ec = 0, hw = 0, start = 0;
		fz_pb_find(pr, prlen, 2, &ec, NULL, NULL);
		fz_pb_find(pr, prlen, 3, &hw, NULL, NULL);
		fz_pb_find(pr, prlen, 5, &start, NULL, NULL);
		if (ec == 11 && next < start) { /* OFFSET_OUT_OF_RANGE: retention moved on */
			next = start;
			continue;
		}
		if (ec != 0)
			fz_fail("Fetch %s/%u at %llu: partition error %llu", topic, partition,
				(unsigned long long)next, (unsigned long long)ec);
		/* Each field 6 of FetchPartitionResponse is a stored entry,
		 * key and length included: exactly what batch.h parses. */
		const uint8_t *p = pr, *end = pr + prlen;
		unsigned batches = 0;
		while (p < end) {
			uint32_t f, w;
			uint64_t num = 0;
			const uint8_t *val = NULL;
			size_t vlen = 0;
			size_t k = rmq_pb_next(p, end, &f, &w, &num, &val, &vlen);
			if (k == 0)
				fz_fail("Fetch %s/%u answered malformed protobuf", topic, partition);
			if (f == 6) {
				struct rmq_batch_view v;
				int rc = rmq_batch_parse(p, k, &v);
				if (rc != (int)k)
					fz_fail("%s/%u: a served batch near offset %llu does not parse (%d)",
						topic, partition, (unsigned long long)next, rc);
				if (rmq_batch_check_crc(p, &v) != 0)
					fz_fail("%s/%u: the batch at offset %llu has a wrong CRC-32C",
						topic, partition, (unsigned long long)v.hdr.base_offset);
				if (v.hdr.base_offset + v.hdr.record_count <= next ||
				    (batches > 0 && v.hdr.base_offset != next))
					fz_fail("%s/%u: batch at offset %llu (%u records) after offset %llu",
						topic, partition, (unsigned long long)v.hdr.base_offset,
						v.hdr.record_count, (unsigned long long)next);
				if (codec >= 0 && v.hdr.compression != (uint32_t)codec)
					fz_fail("%s/%u: the batch at offset %llu uses codec %u, the topic forces %d",
						topic, partition, (unsigned long long)v.hdr.base_offset,
						v.hdr.compression, codec);
				if (v.hdr.compression == 0) {
					long nrec = count_records(p + v.records_pos, v.records_len);
					if (nrec != (long)v.hdr.record_count)
						fz_fail("%s/%u: the batch at offset %llu says %u records and holds %ld",
							topic, partition, (unsigned long long)v.hdr.base_offset,
							v.hdr.record_count, nrec);
				}
				next = v.hdr.base_offset + v.hdr.record_count;
				batches++;
			}
			p += k;
		}
		if (next >= hw || batches == 0)
			break;
	}
	fz_buf_free(&req);
	fz_buf_free(&fp);
	fz_buf_free(&tp);
	fz_buf_free(&resp);
	return next;
}

/* Sum of the samples of metric name in a MetricsResponse. */
static double metric_sum(const struct fz_buf *r, const char *name)
{
	double sum = 0;
	const uint8_t *p = r->p, *end = r->p + r->len;
	while (p < end) {
		uint32_t f, w;
		uint64_t num = 0;
		const uint8_t *val = NULL;
		size_t vlen = 0;
		size_t k = rmq_pb_next(p, end, &f, &w, &num, &val, &vlen);
		if (k == 0)
			fz_fail("GetMetrics answered malformed protobuf");
		const uint8_t *n = NULL;
		size_t nlen = 0;
		uint64_t bits = 0;
		if (f == 1 && w == RMQ_PB_LEN && fz_pb_find(val, vlen, 1, NULL, &n, &nlen) &&
		    nlen == strlen(name) && memcmp(n, name, nlen) == 0 &&
		    fz_pb_find(val, vlen, 2, &bits, NULL, NULL)) {
			double d;
			memcpy(&d, &bits, sizeof(d)); /* double: wire type fixed64 */
			sum += d;
		}
		p += k;
	}
	return sum;
}

void fz_wait_idle(struct fz_conn *c, uint64_t ms)
{
	struct fz_buf req = {0}, resp = {0};
	fz_pb_str(&req, 1, "rmq_calls");
	fz_pb_str(&req, 1, "rmq_connections");
	uint64_t until = now_ms() + ms;
	for (;;) {
		int st = fz_unary(c, "/rustmq.broker.BrokerHealthService/GetMetrics", req.p, req.len,
				  &resp);
		if (st != 0)
			fz_fail("GetMetrics: status %d", st);
		double calls = metric_sum(&resp, "rmq_calls");
		double conns = metric_sum(&resp, "rmq_connections");
		if (calls <= 1 && conns <= 1)
			break;
		if (now_ms() > until)
			fz_fail("%.0f calls and %.0f connections still held %llu ms after the input's "
				"clients left (1 and 1 are the check's own): a leaked reference",
				calls, conns, (unsigned long long)ms);
		usleep(1000);
	}
	fz_buf_free(&req);
	fz_buf_free(&resp);
}
