/* SPDX-License-Identifier: Apache-2.0 */
/*
 * token.h - session tokens: what AuthService.Authenticate answers and
 * every later call carries as `authorization: Bearer <token>`.
 *
 * A token is self-contained and signed, so any node that holds the cluster
 * secret checks it without asking anyone.  Its bytes, big-endian:
 *
 *   OFFSET   SIZE  MEANING
 *   0        1     version (1)
 *   1        8     issued at, ms since the Unix epoch
 *   9        8     expires at, ms since the Unix epoch (> issued at)
 *   17       16    id: random, names this session in logs and revocations
 *   33       1     n = length of the principal (1..255)
 *   34       n     the principal (principal.h)
 *   34 + n   32    HMAC-SHA256(secret, bytes 0 .. 34 + n)
 *
 * and its text is those bytes in base64url without padding (RFC 4648
 * section 5): 68..428 characters of [A-Za-z0-9_-], safe in an HTTP header.
 *
 * Checking takes the text apart in this order: length and alphabet, the
 * signature (constant-time), then the fields; so a forged token is
 * refused as forged before any of its fields is believed.  Tokens cannot
 * be revoked before they expire (the caller may refuse a principal that
 * no longer exists); a second secret during a rotation is the caller's
 * second call.  Nothing here allocates.
 */
#ifndef RMQ_BROKER_TOKEN_H
#define RMQ_BROKER_TOKEN_H

#include "broker/principal.h"

#include <stddef.h>
#include <stdint.h>

#define RMQ_TOKEN_VERSION 1
#define RMQ_TOKEN_ID_LEN 16
#define RMQ_TOKEN_MAC_LEN 32
#define RMQ_TOKEN_SECRET_MIN 32
#define RMQ_TOKEN_SECRET_MAX 1024
#define RMQ_TOKEN_HDR_LEN 34
#define RMQ_TOKEN_BYTES_MAX (RMQ_TOKEN_HDR_LEN + RMQ_PRINCIPAL_MAX + RMQ_TOKEN_MAC_LEN)
#define RMQ_TOKEN_TEXT_MAX ((RMQ_TOKEN_BYTES_MAX * 4 + 2) / 3) /* 428 */

/* What a valid token says. */
struct rmq_token {
	char principal[RMQ_PRINCIPAL_MAX + 1]; /* NUL-terminated */
	size_t principal_len;
	uint64_t issued_ms;
	uint64_t expires_ms;
	uint8_t id[RMQ_TOKEN_ID_LEN];
};

/*
 * A token for principal (principal_len bytes) valid from now_ms for ttl_ms,
 * signed with secret (RMQ_TOKEN_SECRET_MIN..MAX bytes), written
 * with a NUL into out (cap bytes; RMQ_TOKEN_TEXT_MAX + 1 suffices).  id
 * (NULL: RMQ_TOKEN_ID_LEN random bytes) is for tests.  Returns the text's
 * length, -EINVAL (not a principal, a secret of the wrong size, ttl_ms 0 or past the
 * end of time), -ENOSPC, -EIO (no random bytes, OpenSSL failed).
 */
int rmq_token_make(const uint8_t *secret, size_t secret_len, const char *principal,
		   size_t principal_len, uint64_t now_ms, uint64_t ttl_ms, const uint8_t *id,
		   char *out, size_t cap);

/*
 * Checks the token text[0..len) at now_ms against secret.  Returns 0 and
 * fills *out, or: RMQ_ECORRUPT (malformed: length, alphabet, version,
 * principal, expiry not after issue), -EKEYREJECTED (the signature is
 * wrong: forged, altered, or signed with another secret), -EKEYEXPIRED
 * (now_ms >= its expiry), -EINVAL (a secret not
 * RMQ_TOKEN_SECRET_MIN..MAX bytes).  *out is filled only
 * on success.
 */
int rmq_token_check(const uint8_t *secret, size_t secret_len, const char *text, size_t len,
		    uint64_t now_ms, struct rmq_token *out);

#endif /* RMQ_BROKER_TOKEN_H */
