/* SPDX-License-Identifier: Apache-2.0 */
/*
 * wire.c - the gRPC-over-HTTP/2 wire details both ends share: the 5-byte
 * message prefix and the reassembly of messages from DATA payloads, the
 * grpc-status / grpc-message / grpc-timeout headers, and the mapping of
 * HTTP answers to gRPC codes.  The server (grpc.c) reads requests and the
 * client (client.c) reads responses with the same reader, so both agree
 * on every framing error.
 *
 * The reader, per message (see grpc.h for the prefix layout):
 *
 *   prefix bytes ──► 5 collected? ── flag 1 ──────────► RMQ_EUNSUPPORTED
 *        ▲                │          flag > 1 ──────────► RMQ_EPROTO
 *        │                │          length > limit ────► RMQ_ETOOBIG
 *        │                │          one message too many ► RMQ_ESTATE
 *        │                ▼
 *        │     whole body in this input and in place allowed?
 *        │          yes: the message points into the input (no copy)
 *        │          no:  body bytes copied into r->buf: sized to the
 *        │               length at once up to NET_READER_EAGER_BYTES,
 *        │               beyond that grown as they arrive (doubling, up
 *        │               to the length, at most `limit`), so a prefix
 *        │               alone claims at most that much
 *        └────────────── message complete: NET_RD_MSG
 */
#include "net/net_int.h"

#include "core/error.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* ---- message reassembly ------------------------------------------------------ */

void net_grpc_reader_reset(struct net_grpc_reader *r)
{
	uint8_t *buf = r->buf;
	size_t cap = r->cap;
	memset(r, 0, sizeof(*r));
	r->buf = buf;
	r->cap = cap;
}

void net_grpc_reader_trim(struct net_grpc_reader *r, size_t keep)
{
	if (r->cap > keep) {
		free(r->buf);
		r->buf = NULL;
		r->cap = 0;
	}
}

void net_grpc_reader_free(struct net_grpc_reader *r)
{
	free(r->buf);
	r->buf = NULL;
	r->cap = 0;
}

/* Messages up to this size get their whole buffer at once (one
 * allocation, no copies); larger ones grow with the bytes that came. */
#define NET_READER_EAGER_BYTES (1u << 20)

/* Makes room for want <= r->need bytes: the whole message when it is
 * small, else doubling (at least NET_READER_EAGER_BYTES), at most the
 * message's length.  Amortised O(length) per message. */
static int reader_grow(struct net_grpc_reader *r, size_t want)
{
	if (want <= r->cap)
		return 0;
	size_t cap = r->cap * 2;
	if (cap < NET_READER_EAGER_BYTES)
		cap = NET_READER_EAGER_BYTES;
	if (cap < want)
		cap = want;
	if (cap > r->need)
		cap = r->need;
	uint8_t *b = realloc(r->buf, cap);
	if (!b)
		return -ENOMEM;
	r->buf = b;
	r->cap = cap;
	return 0;
}

int net_grpc_read(struct net_grpc_reader *r, const uint8_t **data, size_t *len, uint64_t limit,
		  uint32_t max_msgs, bool inplace, const uint8_t **msg, size_t *msg_len)
{
	const uint8_t *p = *data;
	size_t n = *len;

	while (n > 0) {
		if (r->pfx_len < RMQ_GRPC_PREFIX) {
			size_t take = RMQ_GRPC_PREFIX - r->pfx_len;
			if (take > n)
				take = n;
			memcpy(r->pfx + r->pfx_len, p, take);
			r->pfx_len = (uint8_t)(r->pfx_len + take);
			p += take;
			n -= take;
			if (r->pfx_len < RMQ_GRPC_PREFIX)
				break;
			r->need = (uint32_t)r->pfx[1] << 24 | (uint32_t)r->pfx[2] << 16 |
				  (uint32_t)r->pfx[3] << 8 | r->pfx[4];
			r->have = 0;
			*data = p;
			*len = n;
			if (r->pfx[0] == 1)
				return RMQ_EUNSUPPORTED;
			if (r->pfx[0] != 0)
				return RMQ_EPROTO;
			if (r->need > limit)
				return RMQ_ETOOBIG;
			if (max_msgs && r->nmsg >= max_msgs)
				return RMQ_ESTATE;
			if (inplace && n >= r->need) {
				/* Whole message in this input: no copy. */
				*msg = p;
				*msg_len = r->need;
				r->pfx_len = 0;
				r->nmsg++;
				*data = p + r->need;
				*len = n - r->need;
				return NET_RD_MSG;
			}
		}
		size_t take = r->need - r->have;
		if (take > n)
			take = n;
		if (take) {
			int rc = reader_grow(r, r->have + take);
			if (rc < 0)
				return rc;
			memcpy(r->buf + r->have, p, take);
			r->have += (uint32_t)take;
			p += take;
			n -= take;
		}
		if (r->have < r->need)
			break;
		r->pfx_len = 0;
		r->nmsg++;
		*msg = r->buf;
		*msg_len = r->need;
		*data = p;
		*len = n;
		return NET_RD_MSG;
	}
	*data = p;
	*len = 0;
	return NET_RD_MORE;
}

/* ---- status and message ------------------------------------------------------ */

static const char *const status_names[] = {
	"OK",		"CANCELLED",	      "UNKNOWN",	     "INVALID_ARGUMENT",
	"DEADLINE_EXCEEDED", "NOT_FOUND",     "ALREADY_EXISTS",	     "PERMISSION_DENIED",
	"RESOURCE_EXHAUSTED", "FAILED_PRECONDITION", "ABORTED",	     "OUT_OF_RANGE",
	"UNIMPLEMENTED", "INTERNAL",	      "UNAVAILABLE",	     "DATA_LOSS",
	"UNAUTHENTICATED",
};
_Static_assert(sizeof(status_names) / sizeof(status_names[0]) == RMQ_GRPC_STATUS_COUNT,
	       "a name per status");

const char *rmq_grpc_status_name(int status)
{
	if (status < 0 || status >= RMQ_GRPC_STATUS_COUNT)
		return "UNKNOWN";
	return status_names[status];
}

enum rmq_grpc_status net_grpc_status_parse(const uint8_t *v, size_t len)
{
	unsigned n = 0;

	if (len == 0 || len > 3)
		return RMQ_GRPC_UNKNOWN;
	for (size_t i = 0; i < len; i++) {
		if (v[i] < '0' || v[i] > '9')
			return RMQ_GRPC_UNKNOWN;
		n = n * 10 + (unsigned)(v[i] - '0');
	}
	/* The spec: a code the client does not know is UNKNOWN. */
	return n < RMQ_GRPC_STATUS_COUNT ? (enum rmq_grpc_status)n : RMQ_GRPC_UNKNOWN;
}

enum rmq_grpc_status net_grpc_status_from_http(unsigned http_status)
{
	/* gRPC's "HTTP to gRPC status code mapping" (doc/http-grpc-status-mapping.md). */
	switch (http_status) {
	case 400: return RMQ_GRPC_INTERNAL;
	case 401: return RMQ_GRPC_UNAUTHENTICATED;
	case 403: return RMQ_GRPC_PERMISSION_DENIED;
	case 404: return RMQ_GRPC_UNIMPLEMENTED;
	case 429:
	case 502:
	case 503:
	case 504: return RMQ_GRPC_UNAVAILABLE;
	default: return RMQ_GRPC_UNKNOWN;
	}
}

char *net_pct_encode(const char *msg)
{
	static const char hex[] = "0123456789ABCDEF";
	size_t n = strnlen(msg, NET_STATUS_MSG_MAX);
	char *out = malloc(3 * n + 1), *o = out;

	if (!out)
		return NULL;
	for (size_t i = 0; i < n; i++) {
		unsigned char ch = (unsigned char)msg[i];
		if (ch >= 0x20 && ch <= 0x7e && ch != '%') {
			*o++ = (char)ch;
		} else {
			*o++ = '%';
			*o++ = hex[ch >> 4];
			*o++ = hex[ch & 15];
		}
	}
	*o = '\0';
	return out;
}

static int hexval(uint8_t ch)
{
	if (ch >= '0' && ch <= '9')
		return ch - '0';
	if (ch >= 'A' && ch <= 'F')
		return ch - 'A' + 10;
	if (ch >= 'a' && ch <= 'f')
		return ch - 'a' + 10;
	return -1;
}

size_t net_pct_decode(const uint8_t *in, size_t len, char *out, size_t cap)
{
	size_t o = 0;

	if (cap == 0)
		return 0;
	for (size_t i = 0; i < len && o + 1 < cap; i++) {
		int hi, lo;
		/* A '%' not followed by two hex digits is kept as it is, as
		 * the spec asks of lenient decoders. */
		if (in[i] == '%' && i + 2 < len && (hi = hexval(in[i + 1])) >= 0 &&
		    (lo = hexval(in[i + 2])) >= 0) {
			out[o++] = (char)(hi << 4 | lo);
			i += 2;
		} else {
			out[o++] = (char)in[i];
		}
	}
	out[o] = '\0';
	return o;
}

/* ---- grpc-timeout -------------------------------------------------------------- */

uint64_t net_grpc_timeout_parse(const uint8_t *v, size_t len)
{
	uint64_t n = 0, unit;

	if (len < 2 || len > 9)
		return 0;
	for (size_t i = 0; i + 1 < len; i++) {
		if (v[i] < '0' || v[i] > '9')
			return 0;
		n = n * 10 + (uint64_t)(v[i] - '0');
	}
	switch (v[len - 1]) {
	case 'H': unit = 3600ULL * 1000000000ULL; break;
	case 'M': unit = 60ULL * 1000000000ULL; break;
	case 'S': unit = 1000000000ULL; break;
	case 'm': unit = 1000000ULL; break;
	case 'u': unit = 1000ULL; break;
	case 'n': unit = 1; break;
	default: return 0;
	}
	/* Saturate (99999999H does not fit in ns); at least 1 ns so that a
	 * zero timeout is already expired rather than "none". */
	if (n > (UINT64_MAX / 4) / unit)
		return UINT64_MAX / 4;
	return n > 0 ? n * unit : 1;
}

size_t net_grpc_timeout_format(uint64_t ns, char *buf, size_t cap)
{
	static const struct {
		char unit;
		uint64_t ns;
	} units[] = {
		{'n', 1},
		{'u', 1000ULL},
		{'m', 1000000ULL},
		{'S', 1000000000ULL},
		{'M', 60ULL * 1000000000ULL},
		{'H', 3600ULL * 1000000000ULL},
	};
	/* The smallest unit whose count fits the spec's 8 digits, rounded
	 * up so that the server's deadline is never before ours. */
	for (size_t i = 0; i < sizeof(units) / sizeof(units[0]); i++) {
		uint64_t q = ns / units[i].ns + (ns % units[i].ns != 0);
		if (q <= 99999999ULL) {
			int w = snprintf(buf, cap, "%llu%c", (unsigned long long)q, units[i].unit);
			return w > 0 && (size_t)w < cap ? (size_t)w : 0;
		}
	}
	int w = snprintf(buf, cap, "99999999H");
	return w > 0 && (size_t)w < cap ? (size_t)w : 0;
}

/*
 * DATA frames as large as the peer allows (SETTINGS_MAX_FRAME_SIZE, the
 * windows), at most RMQ_NET_DATA_FRAME_MAX: nghttp2 alone stops at 16 KiB.
 * Referenced bytes are not copied into nghttp2's frame buffer (NO_COPY),
 * so a large frame costs one header and one piece of the output chain;
 * each end's read callback still cuts copied bytes at 16 KiB per frame.
 * Fewer frames are fewer headers to build and parse, and over TLS fewer
 * records (each frame header is a record of its own otherwise).
 */
ssize_t net_h2_read_length(nghttp2_session *s, uint8_t frame_type, int32_t stream_id,
			   int32_t session_window, int32_t stream_window, uint32_t max_frame,
			   void *ud)
{
	(void)s;
	(void)frame_type;
	(void)stream_id;
	(void)ud;
	int64_t n = max_frame < RMQ_NET_DATA_FRAME_MAX ? max_frame : RMQ_NET_DATA_FRAME_MAX;
	if (session_window < n)
		n = session_window;
	if (stream_window < n)
		n = stream_window;
	return n > 0 ? (ssize_t)n : 1; /* nghttp2 caps it by the windows again */
}
