/* SPDX-License-Identifier: Apache-2.0 */
/*
 * fuzz_grpc - the server's input path: HTTP/2 frames and gRPC framing
 * (src/net: the connection input, nghttp2's session, the gRPC message
 * reader, deadlines and cancellation), through a real node (fuzz_node.h).
 *
 * The harness speaks raw HTTP/2 on a plain socket: the client preface,
 * then frames built from the input, so it can send what no client library
 * would (bad flags, even stream ids, DATA on closed streams, a message
 * prefix that lies about its length, a compressed flag without an
 * encoding).  Input: a sequence of frames,
 *
 *   OFFSET  SIZE  MEANING
 *   0       1     op % 8 (below)
 *   1       1     stream id (0..255: odd, even and 0 alike)
 *   2       1     frame flags (as given)
 *   3       2     payload length L, little-endian (clipped)
 *   5       L     payload
 *
 *   op  frame sent
 *   0   HEADERS of a call, built from the payload (HPACK literals, no
 *       Huffman): payload[0] % NPATHS picks :path (the last entry takes
 *       the path from the payload), payload[1] picks optional headers
 *       (HDR_* below), the rest are NUL-separated values for them
 *   1   DATA, the payload as is (gRPC prefixes included, or not)
 *   2   DATA carrying one gRPC message: a valid 5-byte prefix + payload
 *   3   RST_STREAM, error code from the payload
 *   4   WINDOW_UPDATE, increment from the payload
 *   5   SETTINGS, the payload as its entries
 *   6   PING, then wait for its ACK (everything before it was read)
 *   7   raw bytes: any frame, any HPACK, garbage (from then on the
 *       harness waits for no PING ACK: the node may rightly take the PING
 *       as the rest of a frame the raw bytes began)
 *
 * Like a client, the harness ACKs the node's SETTINGS and PINGs.  At the
 * end it sends a PING and waits for the ACK (unless the node closed), then
 * closes; the node must close its side too (fz_conn_close's rule), within
 * FZ_HANG_MS, or the input is reported as a HANG.
 *
 * fuzz_tls runs the same frames over TLS (fz_grpc_frames, this file
 * compiled again with FZ_GRPC_NO_MAIN).
 *
 * Reproduce: build/fuzz/tests/fuzz/fuzz_grpc <input file>
 */
#include "fuzz_node.h"

#include <errno.h>
#include <poll.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

static const char *const paths[] = {
	"/rustmq.client.ProducerService/Produce",
	"/rustmq.client.ProducerService/ProduceStream",
	"/rustmq.client.ConsumerService/Fetch",
	"/rustmq.client.ConsumerService/Subscribe",
	"/rustmq.client.ConsumerService/ListOffsets",
	"/rustmq.client.MetadataService/ListTopics",
	"/grpc.health.v1.Health/Check",
	"/grpc.health.v1.Health/Watch",
	"/rustmq.broker.BrokerHealthService/GetMetrics",
	"/rustmq.controller.ControllerRaftService/InstallSnapshot", /* a client stream */
	"/rustmq.controller.ControllerRaftService/AppendEntries",
	"/rustmq.streaming.StreamingService/BulkLoad", /* not served */
	"/no.Such/Method",
	NULL, /* from the payload */
};
#define NPATHS (sizeof(paths) / sizeof(paths[0]))

enum {
	HDR_CT = 0x01,        /* content-type: application/grpc */
	HDR_CT_PROTO = 0x02,  /* ... or application/grpc+proto (else a value) */
	HDR_TE = 0x04,        /* te: trailers */
	HDR_TIMEOUT = 0x08,   /* grpc-timeout: <value> */
	HDR_ENCODING = 0x10,  /* grpc-encoding: <value> */
	HDR_META = 0x20,      /* x-fz-meta: <value> */
	HDR_GET = 0x40,       /* :method GET */
	HDR_NO_SCHEME = 0x80, /* no :scheme, :authority */
};

static uint64_t now_ms(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (uint64_t)ts.tv_sec * 1000 + (uint64_t)ts.tv_nsec / 1000000;
}

struct conn {
	int fd;
	bool closed;           /* the node closed (EOF or error) */
	bool goaway;
	uint8_t in[1 << 16];
	size_t inlen;
	uint64_t ping_seq;     /* opaque of the PING we wait for */
	bool ping_acked;
	bool raw;              /* raw bytes were sent: the node may be in the
				* middle of a frame they began, and read a
				* PING as that frame's payload */
};

static void send_all(struct conn *c, const void *p, size_t len)
{
	const uint8_t *b = p;
	uint64_t until = now_ms() + FZ_HANG_MS;
	while (len > 0 && !c->closed) {
		ssize_t n = send(c->fd, b, len, MSG_NOSIGNAL | MSG_DONTWAIT);
		if (n > 0) {
			b += n;
			len -= (size_t)n;
			continue;
		}
		if (n < 0 && errno != EAGAIN && errno != EWOULDBLOCK) {
			c->closed = true; /* reset by the node: allowed */
			return;
		}
		if (now_ms() > until)
			fz_fail("HANG: the node read nothing for %d ms", FZ_HANG_MS);
		/* Full: read what the node sends meanwhile (it may be
		 * waiting for us to take its output). */
		struct pollfd pf = {.fd = c->fd, .events = POLLOUT | POLLIN};
		poll(&pf, 1, 100);
		if (pf.revents & POLLIN) {
			uint8_t sink[16384];
			ssize_t r = recv(c->fd, sink, sizeof(sink), MSG_DONTWAIT);
			if (r == 0)
				c->closed = true;
		}
	}
}

static void frame(struct conn *c, uint8_t type, uint8_t flags, uint32_t stream,
		  const uint8_t *payload, size_t len)
{
	uint8_t hd[9] = {(uint8_t)(len >> 16), (uint8_t)(len >> 8), (uint8_t)len, type, flags,
			 (uint8_t)(stream >> 24 & 0x7f), (uint8_t)(stream >> 16),
			 (uint8_t)(stream >> 8), (uint8_t)stream};
	send_all(c, hd, sizeof(hd));
	send_all(c, payload, len);
}

/* Reads what is there (waiting up to ms), answering SETTINGS and PING. */
static void service(struct conn *c, int ms)
{
	if (c->closed)
		return;
	struct pollfd p = {.fd = c->fd, .events = POLLIN};
	if (poll(&p, 1, ms) <= 0)
		return;
	ssize_t n = recv(c->fd, c->in + c->inlen, sizeof(c->in) - c->inlen, MSG_DONTWAIT);
	if (n == 0 || (n < 0 && errno != EAGAIN && errno != EWOULDBLOCK)) {
		c->closed = true;
		return;
	}
	if (n < 0)
		return;
	c->inlen += (size_t)n;
	size_t off = 0;
	while (c->inlen - off >= 9) {
		const uint8_t *h = c->in + off;
		size_t len = (size_t)h[0] << 16 | (size_t)h[1] << 8 | h[2];
		if (9 + len > sizeof(c->in))
			fz_fail("the node sent a frame of %zu bytes, above the 16 KiB it may", len);
		if (c->inlen - off < 9 + len)
			break;
		uint8_t type = h[3], flags = h[4];
		const uint8_t *pl = h + 9;
		if (type == 4 && !(flags & 1)) { /* SETTINGS: ACK it */
			frame(c, 4, 1, 0, NULL, 0);
		} else if (type == 6 && len == 8) { /* PING */
			if (!(flags & 1)) {
				frame(c, 6, 1, 0, pl, 8);
			} else {
				uint64_t v;
				memcpy(&v, pl, 8);
				if (v == c->ping_seq)
					c->ping_acked = true;
			}
		} else if (type == 7) { /* GOAWAY */
			c->goaway = true;
		}
		off += 9 + len;
	}
	memmove(c->in, c->in + off, c->inlen - off);
	c->inlen -= off;
}

/* PING and wait for its ACK: the node has read everything sent before. */
static void sync_ping(struct conn *c)
{
	static uint64_t seq;
	c->ping_seq = ++seq;
	c->ping_acked = false;
	frame(c, 6, 0, 0, (const uint8_t *)&c->ping_seq, 8);
	uint64_t until = now_ms() + FZ_HANG_MS;
	while (!c->ping_acked && !c->closed && !c->goaway && !c->raw) {
		if (now_ms() > until)
			fz_fail("HANG: the node did not answer a PING within %d ms", FZ_HANG_MS);
		service(c, 50);
	}
}

/* HPACK: literal header field without indexing, new name, no Huffman. */
static void hpack_int(struct fz_buf *b, uint8_t first, unsigned prefix_bits, size_t v)
{
	size_t max = (1u << prefix_bits) - 1;
	if (v < max) {
		uint8_t x = (uint8_t)(first | v);
		fz_buf_put(b, &x, 1);
		return;
	}
	uint8_t x = (uint8_t)(first | max);
	fz_buf_put(b, &x, 1);
	v -= max;
	while (v >= 128) {
		x = (uint8_t)(v % 128 + 128);
		fz_buf_put(b, &x, 1);
		v /= 128;
	}
	x = (uint8_t)v;
	fz_buf_put(b, &x, 1);
}

static void hpack(struct fz_buf *b, const char *name, const void *value, size_t vlen)
{
	uint8_t zero = 0;
	fz_buf_put(b, &zero, 1);
	hpack_int(b, 0, 7, strlen(name));
	fz_buf_put(b, name, strlen(name));
	hpack_int(b, 0, 7, vlen);
	fz_buf_put(b, value, vlen);
}

/* Next NUL-separated value of the payload. */
static void token(const uint8_t **p, const uint8_t *end, const uint8_t **v, size_t *vlen)
{
	const uint8_t *q = *p;
	while (q < end && *q != 0)
		q++;
	*v = *p;
	*vlen = (size_t)(q - *p);
	*p = q < end ? q + 1 : q;
}

static void headers(struct conn *c, uint32_t stream, uint8_t flags, const uint8_t *p, size_t len)
{
	struct fz_buf b = {0};
	const uint8_t *end = p + len;
	unsigned idx = len > 0 ? p[0] % NPATHS : 0;
	unsigned opts = len > 1 ? p[1] : HDR_CT | HDR_TE;
	const uint8_t *q = p + (len > 2 ? 2 : len);
	const uint8_t *v;
	size_t vl;

	hpack(&b, ":method", opts & HDR_GET ? "GET" : "POST", opts & HDR_GET ? 3 : 4);
	if (!(opts & HDR_NO_SCHEME)) {
		hpack(&b, ":scheme", "http", 4);
		hpack(&b, ":authority", "127.0.0.1", 9);
	}
	if (paths[idx]) {
		hpack(&b, ":path", paths[idx], strlen(paths[idx]));
	} else {
		token(&q, end, &v, &vl);
		hpack(&b, ":path", v, vl);
	}
	if (opts & HDR_CT)
		hpack(&b, "content-type", "application/grpc", 16);
	else if (opts & HDR_CT_PROTO)
		hpack(&b, "content-type", "application/grpc+proto", 22);
	if (opts & HDR_TE)
		hpack(&b, "te", "trailers", 8);
	if (opts & HDR_TIMEOUT) {
		token(&q, end, &v, &vl);
		hpack(&b, "grpc-timeout", v, vl);
	}
	if (opts & HDR_ENCODING) {
		token(&q, end, &v, &vl);
		hpack(&b, "grpc-encoding", v, vl);
	}
	if (opts & HDR_META) {
		token(&q, end, &v, &vl);
		hpack(&b, "x-fz-meta", v, vl);
	}
	/* Without END_HEADERS nghttp2 waits for CONTINUATION: the raw op
	 * can send one.  The flags are the input's otherwise. */
	frame(c, 1, flags, stream, b.p, b.len);
	fz_buf_free(&b);
}

static uint32_t be32(const uint8_t *p, size_t len)
{
	uint32_t v = 0;
	for (size_t i = 0; i < 4; i++)
		v = v << 8 | (i < len ? p[i] : 0);
	return v;
}

int fz_grpc_frames(const uint8_t *data, size_t size)
{
	struct conn *c = calloc(1, sizeof(*c));
	if (!c)
		return 0;
	c->fd = fz_connect();
	send_all(c, "PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n", 24);
	frame(c, 4, 0, 0, NULL, 0); /* our SETTINGS: the defaults */

	const uint8_t *p = data, *end = data + size;
	while (end - p >= 5 && !c->closed) {
		unsigned op = p[0] % 8;
		uint32_t stream = p[1];
		uint8_t flags = p[2];
		size_t len = (size_t)p[3] | (size_t)p[4] << 8;
		p += 5;
		if (len > (size_t)(end - p))
			len = (size_t)(end - p);
		const uint8_t *pl = p;
		p += len;
		switch (op) {
		case 0:
			headers(c, stream, flags, pl, len);
			break;
		case 1:
			frame(c, 0, flags, stream, pl, len);
			break;
		case 2: {
			uint8_t *m = malloc(len + 5);
			if (!m)
				break;
			m[0] = 0;
			m[1] = (uint8_t)(len >> 24);
			m[2] = (uint8_t)(len >> 16);
			m[3] = (uint8_t)(len >> 8);
			m[4] = (uint8_t)len;
			memcpy(m + 5, pl, len);
			frame(c, 0, flags, stream, m, len + 5);
			free(m);
			break;
		}
		case 3: {
			uint8_t code[4];
			uint32_t v = be32(pl, len);
			code[0] = (uint8_t)(v >> 24);
			code[1] = (uint8_t)(v >> 16);
			code[2] = (uint8_t)(v >> 8);
			code[3] = (uint8_t)v;
			frame(c, 3, flags, stream, code, 4);
			break;
		}
		case 4: {
			uint8_t inc[4];
			uint32_t v = be32(pl, len);
			inc[0] = (uint8_t)(v >> 24);
			inc[1] = (uint8_t)(v >> 16);
			inc[2] = (uint8_t)(v >> 8);
			inc[3] = (uint8_t)v;
			frame(c, 8, flags, stream, inc, 4);
			break;
		}
		case 5:
			frame(c, 4, flags & 1, stream, pl, len);
			break;
		case 6:
			sync_ping(c);
			break;
		case 7:
			send_all(c, pl, len);
			c->raw = true;
			break;
		}
		service(c, 0);
	}
	if (!c->closed && !c->goaway)
		sync_ping(c);
	/* Close: our FIN; the node must close its side in bounded time. */
	shutdown(c->fd, SHUT_WR);
	uint64_t until = now_ms() + FZ_HANG_MS;
	while (!c->closed) {
		if (now_ms() > until)
			fz_fail("HANG: the node did not close the connection within %d ms of the client's FIN",
				FZ_HANG_MS);
		c->inlen = 0; /* what comes now is only read, not parsed */
		struct pollfd pf = {.fd = c->fd, .events = POLLIN};
		if (poll(&pf, 1, 100) <= 0)
			continue;
		uint8_t sink[16384];
		ssize_t r = recv(c->fd, sink, sizeof(sink), MSG_DONTWAIT);
		if (r == 0 || (r < 0 && errno != EAGAIN && errno != EWOULDBLOCK))
			c->closed = true;
	}
	close(c->fd);
	free(c);
	struct fz_conn *check = fz_conn_open();
	fz_wait_idle(check, 10000);
	fz_conn_close(check);
	return 0;
}

#ifndef FZ_GRPC_NO_MAIN /* fuzz_tls links these frames with its own entry */
int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	fz_node_start(NULL);
	return fz_grpc_frames(data, size);
}
#endif
