/* SPDX-License-Identifier: Apache-2.0 */
/*
 * base64.h - strict base64 (RFC 4648) for the authentication formats:
 * SCRAM messages and verifiers use the standard alphabet with padding
 * (section 4), session tokens the URL alphabet without padding (section 5),
 * so they travel in an HTTP header untouched.
 *
 * Decoding is strict, so that every byte string has exactly one text and a
 * comparison of texts is a comparison of bytes: no whitespace, no line
 * breaks, padding exactly where section 4 puts it (and none in the URL
 * form), and the unused low bits of the last character zero (section 3.5).
 * Anything else is RMQ_ECORRUPT.
 *
 * Pure functions; nothing allocates.
 */
#ifndef RMQ_CORE_BASE64_H
#define RMQ_CORE_BASE64_H

#include <stddef.h>
#include <stdint.h>

enum rmq_b64 {
	RMQ_B64_STD, /* A-Z a-z 0-9 + /, padded with '=' to a multiple of 4 */
	RMQ_B64_URL, /* A-Z a-z 0-9 - _, no padding */
};

/* Characters the encoding of n bytes takes (without a terminating NUL). */
size_t rmq_b64_encoded_len(enum rmq_b64 kind, size_t n);

/* Writes the encoding of in[0..n) and a NUL to out, which holds at least
 * rmq_b64_encoded_len(kind, n) + 1 bytes.  Returns the characters written
 * (without the NUL). */
size_t rmq_b64_encode(enum rmq_b64 kind, const uint8_t *in, size_t n, char *out);

/*
 * Decodes in[0..n) into out (cap bytes).  Returns the number of bytes
 * decoded, RMQ_ECORRUPT (not a strict encoding of kind), or RMQ_ETOOBIG
 * (more than cap bytes).  Reads nothing past in[n - 1].
 */
int rmq_b64_decode(enum rmq_b64 kind, const char *in, size_t n, uint8_t *out, size_t cap);

#endif /* RMQ_CORE_BASE64_H */
