/* SPDX-License-Identifier: Apache-2.0 */
/* base64.c - strict base64, standard and URL alphabets (base64.h). */
#include "core/base64.h"

#include "core/error.h"

#include <limits.h>

static const char std_chars[64] =
	"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
static const char url_chars[64] =
	"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_";

size_t rmq_b64_encoded_len(enum rmq_b64 kind, size_t n)
{
	if (kind == RMQ_B64_STD)
		return (n + 2) / 3 * 4;
	return n / 3 * 4 + (n % 3 ? n % 3 + 1 : 0);
}

size_t rmq_b64_encode(enum rmq_b64 kind, const uint8_t *in, size_t n, char *out)
{
	const char *chars = kind == RMQ_B64_STD ? std_chars : url_chars;
	size_t o = 0, i = 0;
	for (; i + 3 <= n; i += 3) {
		uint32_t v = (uint32_t)in[i] << 16 | (uint32_t)in[i + 1] << 8 | in[i + 2];
		out[o++] = chars[v >> 18];
		out[o++] = chars[v >> 12 & 63];
		out[o++] = chars[v >> 6 & 63];
		out[o++] = chars[v & 63];
	}
	if (n - i == 1) {
		uint32_t v = (uint32_t)in[i] << 16;
		out[o++] = chars[v >> 18];
		out[o++] = chars[v >> 12 & 63];
		if (kind == RMQ_B64_STD) {
			out[o++] = '=';
			out[o++] = '=';
		}
	} else if (n - i == 2) {
		uint32_t v = (uint32_t)in[i] << 16 | (uint32_t)in[i + 1] << 8;
		out[o++] = chars[v >> 18];
		out[o++] = chars[v >> 12 & 63];
		out[o++] = chars[v >> 6 & 63];
		if (kind == RMQ_B64_STD)
			out[o++] = '=';
	}
	out[o] = '\0';
	return o;
}

/* The value of character c in kind's alphabet, or -1. */
static int value_of(enum rmq_b64 kind, char c)
{
	if (c >= 'A' && c <= 'Z')
		return c - 'A';
	if (c >= 'a' && c <= 'z')
		return c - 'a' + 26;
	if (c >= '0' && c <= '9')
		return c - '0' + 52;
	if (c == (kind == RMQ_B64_STD ? '+' : '-'))
		return 62;
	if (c == (kind == RMQ_B64_STD ? '/' : '_'))
		return 63;
	return -1;
}

int rmq_b64_decode(enum rmq_b64 kind, const char *in, size_t n, uint8_t *out, size_t cap)
{
	size_t chars = n; /* characters that carry bits */
	if (kind == RMQ_B64_STD) {
		if (n % 4)
			return RMQ_ECORRUPT;
		if (n >= 1 && in[n - 1] == '=')
			chars--;
		if (n >= 2 && in[n - 2] == '=')
			chars--;
	}
	if (chars % 4 == 1)
		return RMQ_ECORRUPT;
	size_t len = chars / 4 * 3 + (chars % 4 ? chars % 4 - 1 : 0);
	if (len > cap)
		return RMQ_ETOOBIG;
	if (len > INT_MAX)
		return RMQ_ETOOBIG;
	uint32_t acc = 0;
	int bits = 0;
	size_t o = 0;
	for (size_t i = 0; i < chars; i++) {
		int v = value_of(kind, in[i]);
		if (v < 0)
			return RMQ_ECORRUPT; /* includes a '=' before the end */
		acc = acc << 6 | (uint32_t)v;
		bits += 6;
		if (bits >= 8) {
			bits -= 8;
			out[o++] = (uint8_t)(acc >> bits);
			acc &= (1u << bits) - 1;
		}
	}
	if (acc != 0)
		return RMQ_ECORRUPT; /* unused bits set: not the canonical text */
	return (int)o;
}
