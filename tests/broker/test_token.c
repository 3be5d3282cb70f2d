/* SPDX-License-Identifier: Apache-2.0 */
/*
 * test_token.c - session tokens (token.h) and principal names
 * (principal.h): round trips, expiry, forged, truncated and garbage
 * tokens each refused with its own error.
 */
#include "broker/principal.h"
#include "broker/token.h"

#include "core/base64.h"
#include "core/error.h"

#include <criterion/criterion.h>
#include <openssl/evp.h>
#include <openssl/hmac.h>
#include <errno.h>
#include <string.h>

static const uint8_t key[32] = "cluster secret, 32 bytes long..";
static const uint8_t other[32] = "another secret, 32 bytes long..";

#define NOW 1765152000000ull /* Dec 8 2025, ms */
#define HOUR 3600000ull

static int make(const char *principal, uint64_t now, uint64_t ttl, char *out)
{
	return rmq_token_make(key, sizeof(key), principal, strlen(principal), now, ttl, NULL, out,
			      RMQ_TOKEN_TEXT_MAX + 1);
}

static int check(const char *t, size_t len, uint64_t now, struct rmq_token *tok)
{
	return rmq_token_check(key, sizeof(key), t, len, now, tok);
}

Test(token, round_trip)
{
	char t[RMQ_TOKEN_TEXT_MAX + 1];
	int n = make("alice", NOW, HOUR, t);
	cr_assert_gt(n, 0);
	cr_assert_eq((size_t)n, strlen(t));
	cr_assert_eq(strspn(t, "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_"),
		     (size_t)n, "%s", t);
	struct rmq_token tok;
	cr_assert_eq(check(t, (size_t)n, NOW, &tok), 0);
	cr_assert_str_eq(tok.principal, "alice");
	cr_assert_eq(tok.principal_len, 5);
	cr_assert_eq(tok.issued_ms, NOW);
	cr_assert_eq(tok.expires_ms, NOW + HOUR);
	/* Two tokens of one principal differ by their random ids. */
	char u[RMQ_TOKEN_TEXT_MAX + 1];
	cr_assert_eq(make("alice", NOW, HOUR, u), n);
	cr_assert_str_neq(t, u);

	/* The longest principal fits the text bound; ids given are kept. */
	char name[RMQ_PRINCIPAL_MAX + 1];
	memset(name, 'z', RMQ_PRINCIPAL_MAX);
	name[RMQ_PRINCIPAL_MAX] = '\0';
	uint8_t id[RMQ_TOKEN_ID_LEN] = {1, 2, 3};
	n = rmq_token_make(key, sizeof(key), name, RMQ_PRINCIPAL_MAX, NOW, HOUR, id, t, sizeof(t));
	cr_assert_eq(n, RMQ_TOKEN_TEXT_MAX);
	cr_assert_eq(check(t, (size_t)n, NOW + HOUR - 1, &tok), 0);
	cr_assert_eq(tok.principal_len, RMQ_PRINCIPAL_MAX);
	cr_assert_eq(memcmp(tok.id, id, sizeof(id)), 0);
	cr_assert_eq(rmq_token_make(key, sizeof(key), name, RMQ_PRINCIPAL_MAX, NOW, HOUR, id, t,
				    RMQ_TOKEN_TEXT_MAX),
		     -ENOSPC);
	/* UTF-8 principals. */
	n = make("J\xc3\xbcrgen", NOW, HOUR, t);
	cr_assert_eq(check(t, (size_t)n, NOW, &tok), 0);
	cr_assert_str_eq(tok.principal, "J\xc3\xbcrgen");
}

Test(token, expiry)
{
	char t[RMQ_TOKEN_TEXT_MAX + 1];
	int n = make("alice", NOW, HOUR, t);
	struct rmq_token tok;
	cr_assert_eq(check(t, (size_t)n, NOW + HOUR - 1, &tok), 0);
	cr_assert_eq(check(t, (size_t)n, NOW + HOUR, &tok), -EKEYEXPIRED);
	cr_assert_eq(check(t, (size_t)n, UINT64_MAX, &tok), -EKEYEXPIRED);
	n = make("alice", NOW, 1, t);
	cr_assert_eq(check(t, (size_t)n, NOW + 1, &tok), -EKEYEXPIRED);
}

Test(token, make_refuses_bad_arguments)
{
	char t[RMQ_TOKEN_TEXT_MAX + 1];
	cr_assert_eq(make("", NOW, HOUR, t), -EINVAL);
	cr_assert_eq(make("al\nice", NOW, HOUR, t), -EINVAL);
	cr_assert_eq(make("alice", NOW, 0, t), -EINVAL);
	cr_assert_eq(make("alice", UINT64_MAX - 5, 6, t), -EINVAL);
	cr_assert_eq(rmq_token_make(key, 31, "alice", 5, NOW, HOUR, NULL, t, sizeof(t)), -EINVAL);
	char name[RMQ_PRINCIPAL_MAX + 2];
	memset(name, 'z', sizeof(name) - 1);
	name[sizeof(name) - 1] = '\0';
	cr_assert_eq(make(name, NOW, HOUR, t), -EINVAL);
}

Test(token, forged)
{
	char t[RMQ_TOKEN_TEXT_MAX + 1];
	int n = make("alice", NOW, HOUR, t);
	struct rmq_token tok;
	/* Signed with another secret. */
	cr_assert_eq(rmq_token_check(other, sizeof(other), t, (size_t)n, NOW, &tok), -EKEYREJECTED);
	/* Any field changed, re-encoded properly: the signature no longer fits. */
	uint8_t b[RMQ_TOKEN_BYTES_MAX];
	int bl = rmq_b64_decode(RMQ_B64_URL, t, (size_t)n, b, sizeof(b));
	cr_assert_gt(bl, 0);
	for (int i = 0; i < bl; i++) {
		uint8_t c[RMQ_TOKEN_BYTES_MAX];
		char f[RMQ_TOKEN_TEXT_MAX + 1];
		memcpy(c, b, (size_t)bl);
		c[i] ^= 0x01;
		size_t fl = rmq_b64_encode(RMQ_B64_URL, c, (size_t)bl, f);
		int rc = check(f, fl, NOW, &tok);
		cr_assert(rc == -EKEYREJECTED || (i == 33 && rc == RMQ_ECORRUPT),
			  "byte %d changed: %s", i, rmq_errname(rc));
	}
	/* Another principal with alice's signature, and a longer expiry. */
	uint8_t c[RMQ_TOKEN_BYTES_MAX];
	memcpy(c, b, (size_t)bl);
	memcpy(c + RMQ_TOKEN_HDR_LEN, "admin", 5);
	char f[RMQ_TOKEN_TEXT_MAX + 1];
	size_t fl = rmq_b64_encode(RMQ_B64_URL, c, (size_t)bl, f);
	cr_assert_eq(check(f, fl, NOW, &tok), -EKEYREJECTED);
	memcpy(c, b, (size_t)bl);
	c[9] = 0x7f;
	fl = rmq_b64_encode(RMQ_B64_URL, c, (size_t)bl, f);
	cr_assert_eq(check(f, fl, NOW, &tok), -EKEYREJECTED);
	/* The principal's signature cut off. */
	fl = rmq_b64_encode(RMQ_B64_URL, b, (size_t)bl - 32, f);
	cr_assert_neq(check(f, fl, NOW, &tok), 0);
}

Test(token, truncated_and_garbage)
{
	char t[RMQ_TOKEN_TEXT_MAX + 1];
	int n = make("alice", NOW, HOUR, t);
	struct rmq_token tok;
	for (int i = 0; i < n; i++) {
		int rc = check(t, (size_t)i, NOW, &tok);
		cr_assert(rc == RMQ_ECORRUPT || rc == -EKEYREJECTED, "prefix %d: %s", i,
			  rmq_errname(rc));
	}
	/* A token with a character appended, padding, whitespace, the
	 * standard alphabet. */
	char g[RMQ_TOKEN_TEXT_MAX + 8];
	memcpy(g, t, (size_t)n);
	g[n] = 'A';
	cr_assert_neq(check(g, (size_t)n + 1, NOW, &tok), 0);
	g[n] = '=';
	cr_assert_eq(check(g, (size_t)n + 1, NOW, &tok), RMQ_ECORRUPT);
	g[n] = ' ';
	cr_assert_eq(check(g, (size_t)n + 1, NOW, &tok), RMQ_ECORRUPT);
	memcpy(g, t, (size_t)n);
	g[3] = '+';
	cr_assert_eq(check(g, (size_t)n, NOW, &tok), RMQ_ECORRUPT);
	const char *garbage[] = {"", "Bearer x", "not a token", "....", "\xff\xfe", "A"};
	for (size_t i = 0; i < sizeof(garbage) / sizeof(garbage[0]); i++)
		cr_assert_eq(check(garbage[i], strlen(garbage[i]), NOW, &tok), RMQ_ECORRUPT, "%s",
			     garbage[i]);
	static char huge[4096];
	memset(huge, 'A', sizeof(huge));
	cr_assert_eq(check(huge, sizeof(huge), NOW, &tok), RMQ_ECORRUPT);
	cr_assert_eq(check(huge, RMQ_TOKEN_TEXT_MAX, NOW, &tok), -EKEYREJECTED);
	cr_assert_eq(rmq_token_check(key, 16, t, (size_t)n, NOW, &tok), -EINVAL);
}

Test(token, signed_but_malformed_fields)
{
	/* A holder of the secret signing nonsense still gets RMQ_ECORRUPT. */
	uint8_t b[RMQ_TOKEN_BYTES_MAX];
	char t[RMQ_TOKEN_TEXT_MAX + 1];
	struct rmq_token tok;
	int n = make("alice", NOW, HOUR, t);
	int bl = rmq_b64_decode(RMQ_B64_URL, t, (size_t)n, b, sizeof(b));
	cr_assert_gt(bl, 0);
	struct {
		int at;
		uint8_t val;
	} edits[] = {{0, 2}, {33, 4}, {34, 0x01}, {9, 0}};
	for (size_t i = 0; i < sizeof(edits) / sizeof(edits[0]); i++) {
		uint8_t c[RMQ_TOKEN_BYTES_MAX];
		memcpy(c, b, (size_t)bl);
		c[edits[i].at] = edits[i].val;
		if (edits[i].at == 9)
			memset(c + 9, 0, 8); /* expires at 0, before issue */
		size_t sl = (size_t)bl - RMQ_TOKEN_MAC_LEN;
		unsigned int ml = 0;
		cr_assert_not_null(HMAC(EVP_sha256(), key, sizeof(key), c, sl, c + sl, &ml));
		char f[RMQ_TOKEN_TEXT_MAX + 1];
		size_t fl = rmq_b64_encode(RMQ_B64_URL, c, (size_t)bl, f);
		cr_assert_eq(check(f, fl, NOW, &tok), RMQ_ECORRUPT, "edit %zu", i);
	}
}

Test(principal, rule)
{
	cr_assert_eq(rmq_principal_check("alice", 5), 0);
	cr_assert_eq(rmq_principal_check("a,b=c d", 7), 0);
	cr_assert_eq(rmq_principal_check("\xe2\x82\xac", 3), 0);          /* € */
	cr_assert_eq(rmq_principal_check("\xf0\x9f\x98\x80", 4), 0);      /* U+1F600 */
	cr_assert_eq(rmq_principal_check("", 0), -EINVAL);
	cr_assert_eq(rmq_principal_check("a\0b", 3), -EINVAL);
	cr_assert_eq(rmq_principal_check("a\tb", 3), -EINVAL);
	cr_assert_eq(rmq_principal_check("a\x7f", 2), -EINVAL);
	cr_assert_eq(rmq_principal_check("\xc2\x85", 2), -EINVAL);         /* NEL, a C1 control */
	cr_assert_eq(rmq_principal_check("\xc0\xaf", 2), -EINVAL);         /* overlong '/' */
	cr_assert_eq(rmq_principal_check("\xed\xa0\x80", 3), -EINVAL);     /* surrogate */
	cr_assert_eq(rmq_principal_check("\xf4\x90\x80\x80", 4), -EINVAL); /* > U+10FFFF */
	cr_assert_eq(rmq_principal_check("\xe2\x82", 2), -EINVAL);         /* truncated */
	cr_assert_eq(rmq_principal_check("\x80", 1), -EINVAL);
	cr_assert_eq(rmq_principal_check("\xff", 1), -EINVAL);
	char name[RMQ_PRINCIPAL_MAX + 1];
	memset(name, 'n', sizeof(name));
	cr_assert_eq(rmq_principal_check(name, RMQ_PRINCIPAL_MAX), 0);
	cr_assert_eq(rmq_principal_check(name, RMQ_PRINCIPAL_MAX + 1), -EINVAL);
}
