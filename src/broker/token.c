/* SPDX-License-Identifier: Apache-2.0 */
/* token.c - signed session tokens (token.h). */
#include "broker/token.h"

#include "core/base64.h"
#include "core/error.h"

#include <errno.h>
#include <stdbool.h>
#include <string.h>

#include <openssl/crypto.h>
#include <openssl/evp.h>
#include <openssl/hmac.h>
#include <openssl/rand.h>

_Static_assert(RMQ_TOKEN_TEXT_MAX == 428, "the text bound token.h states");
_Static_assert(RMQ_TOKEN_HDR_LEN == 1 + 8 + 8 + RMQ_TOKEN_ID_LEN + 1, "the layout of token.h");

static void put64(uint8_t *p, uint64_t v)
{
	for (int i = 7; i >= 0; i--, v >>= 8)
		p[i] = (uint8_t)v;
}

static uint64_t get64(const uint8_t *p)
{
	uint64_t v = 0;
	for (int i = 0; i < 8; i++)
		v = v << 8 | p[i];
	return v;
}

static int mac(const uint8_t *secret, size_t secret_len, const uint8_t *p, size_t n,
	       uint8_t out[RMQ_TOKEN_MAC_LEN])
{
	unsigned int l = 0;
	if (!HMAC(EVP_sha256(), secret, (int)secret_len, p, n, out, &l) || l != RMQ_TOKEN_MAC_LEN)
		return -EIO;
	return 0;
}

int rmq_token_make(const uint8_t *secret, size_t secret_len, const char *principal,
		   size_t principal_len, uint64_t now_ms, uint64_t ttl_ms, const uint8_t *id,
		   char *out, size_t cap)
{
	if (!secret || secret_len < RMQ_TOKEN_SECRET_MIN || secret_len > RMQ_TOKEN_SECRET_MAX)
		return -EINVAL;
	if (rmq_principal_check(principal, principal_len))
		return -EINVAL;
	if (ttl_ms == 0 || now_ms > UINT64_MAX - ttl_ms)
		return -EINVAL;
	uint8_t b[RMQ_TOKEN_BYTES_MAX];
	b[0] = RMQ_TOKEN_VERSION;
	put64(b + 1, now_ms);
	put64(b + 9, now_ms + ttl_ms);
	if (id)
		memcpy(b + 17, id, RMQ_TOKEN_ID_LEN);
	else if (RAND_bytes(b + 17, RMQ_TOKEN_ID_LEN) != 1)
		return -EIO;
	b[33] = (uint8_t)principal_len;
	memcpy(b + RMQ_TOKEN_HDR_LEN, principal, principal_len);
	size_t n = RMQ_TOKEN_HDR_LEN + principal_len;
	if (mac(secret, secret_len, b, n, b + n))
		return -EIO;
	n += RMQ_TOKEN_MAC_LEN;
	if (cap < rmq_b64_encoded_len(RMQ_B64_URL, n) + 1)
		return -ENOSPC;
	return (int)rmq_b64_encode(RMQ_B64_URL, b, n, out);
}

int rmq_token_check(const uint8_t *secret, size_t secret_len, const char *text, size_t len,
		    uint64_t now_ms, struct rmq_token *out)
{
	if (!secret || secret_len < RMQ_TOKEN_SECRET_MIN || secret_len > RMQ_TOKEN_SECRET_MAX)
		return -EINVAL;
	if (len > RMQ_TOKEN_TEXT_MAX)
		return RMQ_ECORRUPT;
	uint8_t b[RMQ_TOKEN_BYTES_MAX];
	int n = rmq_b64_decode(RMQ_B64_URL, text, len, b, sizeof(b));
	if (n < 0)
		return RMQ_ECORRUPT;
	if ((size_t)n < RMQ_TOKEN_HDR_LEN + 1 + RMQ_TOKEN_MAC_LEN)
		return RMQ_ECORRUPT;
	size_t signed_len = (size_t)n - RMQ_TOKEN_MAC_LEN;
	uint8_t want[RMQ_TOKEN_MAC_LEN];
	if (mac(secret, secret_len, b, signed_len, want))
		return -EIO;
	bool good = CRYPTO_memcmp(want, b + signed_len, RMQ_TOKEN_MAC_LEN) == 0;
	OPENSSL_cleanse(want, sizeof(want));
	if (!good)
		return -EKEYREJECTED;
	/* Signed by a holder of the secret: now the fields. */
	size_t pl = b[33];
	if (b[0] != RMQ_TOKEN_VERSION || RMQ_TOKEN_HDR_LEN + pl != signed_len)
		return RMQ_ECORRUPT;
	const char *p = (const char *)b + RMQ_TOKEN_HDR_LEN;
	if (rmq_principal_check(p, pl))
		return RMQ_ECORRUPT;
	uint64_t issued = get64(b + 1), expires = get64(b + 9);
	if (expires <= issued)
		return RMQ_ECORRUPT;
	if (now_ms >= expires)
		return -EKEYEXPIRED;
	memcpy(out->principal, p, pl);
	out->principal[pl] = '\0';
	out->principal_len = pl;
	out->issued_ms = issued;
	out->expires_ms = expires;
	memcpy(out->id, b + 17, RMQ_TOKEN_ID_LEN);
	return 0;
}
