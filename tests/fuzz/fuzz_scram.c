/* SPDX-License-Identifier: Apache-2.0 */
/*
 * fuzz_scram - the SASL mechanisms (src/broker/scram.c, plain.c) reading
 * hostile messages, on both sides.
 *
 * Input: one selector byte, a 2-byte big-endian length n, then message A
 * (n bytes, cut to what is there) and message B (the rest).
 *
 *   selector bits  meaning
 *   0              mechanism: 0 SCRAM-SHA-256, 1 SCRAM-SHA-512
 *   1..2           0, 1: server side: A is client-first, B client-final
 *                  2:    client side (user "user", nonce "rOprNGfwEbeRWgbNEkqO",
 *                        password "pencil"): A is server-first, B server-final
 *                  3:    A is a verifier's text, B a PLAIN message
 *   3              server side: the user "user" exists (password "pencil",
 *                  RFC 7677's salt, 4096 iterations); otherwise no user does
 *   4              server side: the RFC 7677 server nonce instead of a random
 *                  one, so RFC 7677's client-final can succeed
 *
 * Besides "no crash, no sanitizer report", each input checks properties:
 * - a server authenticates only a user that exists, only as the name it
 *   returned from client-first, and only once; after any refusal or success
 *   every further step is RMQ_ESTATE;
 * - whatever a side writes fits its buffer and is as long as it says, and a
 *   server's refusal of client-final that it answers is an "e=" message;
 * - a client accepts a server-final only if it holds the signature the
 *   real server (the RFC 7677 verifier) would have sent;
 * - a verifier text that decodes encodes back to the same text (one text
 *   per verifier); a PLAIN message that parses has its fields inside it.
 *
 * Server-first messages asking for more than 5000 iterations are skipped:
 * the client would spend up to a second in PBKDF2 on them, and their
 * parsing is covered by tests/broker/test_scram.c.
 *
 * Reproduce: build/fuzz/tests/fuzz/fuzz_scram <input file>
 */
#include "broker/plain.h"
#include "broker/scram.h"

#include "core/base64.h"
#include "core/error.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define RFC_SNONCE "%hvYDpWUa2RaTCAfuxFIlj)hNlF$k0"
#define RFC_SALT "W22ZaJ0SNY7soEsUEjb6gQ=="

static const uint8_t secret[32] = "fuzz_scram's server secret.....";

static void fail(const char *what)
{
	fprintf(stderr, "fuzz_scram: %s\n", what);
	abort();
}

/* The RFC 7677 user's verifier in each mechanism, made once. */
static const struct rmq_scram_verifier *user_verifier(enum rmq_scram_mech mech)
{
	static struct rmq_scram_verifier v[3];
	static bool made[3];
	if (!made[mech]) {
		uint8_t salt[16];
		if (rmq_b64_decode(RMQ_B64_STD, RFC_SALT, strlen(RFC_SALT), salt, sizeof(salt)) != 16)
			fail("salt");
		if (rmq_scram_verifier_make_salted(mech, "pencil", 6, salt, 16, 4096, &v[mech]))
			fail("verifier");
		made[mech] = true;
	}
	return &v[mech];
}

static void check_out(const char *out, size_t cap, size_t len)
{
	if (len >= cap || strlen(out) != len)
		fail("a message longer than its buffer or than it says");
}

static void server_side(enum rmq_scram_mech mech, bool exists, bool rfc_nonce, const uint8_t *a,
			size_t al, const uint8_t *b, size_t bl)
{
	static struct rmq_scram_server s;
	char out[RMQ_SCRAM_OUT_MAX];
	size_t n = 0;
	const char *user = NULL;
	rmq_scram_server_init(&s, mech);
	if (rfc_nonce)
		rmq_scram_server_test_nonce(&s, RFC_SNONCE);
	if (rmq_scram_server_client_first(&s, a, al, &user)) {
		if (rmq_scram_server_client_final(&s, b, bl, out, sizeof(out), &n) != RMQ_ESTATE)
			fail("a refused exchange went on");
		return;
	}
	if (!user || rmq_principal_check(user, strlen(user)))
		fail("client-first gave a name that is no principal");
	char name[RMQ_PRINCIPAL_MAX + 1];
	snprintf(name, sizeof(name), "%s", user);
	bool known = exists && strcmp(name, "user") == 0;
	if (rmq_scram_server_first(&s, known ? user_verifier(mech) : NULL, secret, sizeof(secret),
				   out, sizeof(out), &n))
		fail("server-first failed after a good client-first");
	check_out(out, sizeof(out), n);
	int rc = rmq_scram_server_client_final(&s, b, bl, out, sizeof(out), &n);
	if (n)
		check_out(out, sizeof(out), n);
	if (rc == 0) {
		if (!known)
			fail("a user without a verifier was authenticated");
		if (strcmp(s.user, name) != 0)
			fail("authenticated as another name than client-first's");
		if (strncmp(out, "v=", 2) != 0)
			fail("success without v=");
	} else if (rc != RMQ_ESTATE && n && strncmp(out, "e=", 2) != 0) {
		fail("a refusal answered with something else than e=");
	}
	if (rmq_scram_server_client_final(&s, b, bl, out, sizeof(out), &n) != RMQ_ESTATE)
		fail("a finished exchange took another client-final");
	rmq_scram_server_clear(&s);
}

/* Larger iteration counts than the harness lets the client spend time on. */
static bool slow(const uint8_t *m, size_t len)
{
	for (size_t i = 0; i + 2 < len; i++) {
		if (m[i] != 'i' || m[i + 1] != '=')
			continue;
		unsigned long v = 0;
		for (size_t k = i + 2; k < len && m[k] >= '0' && m[k] <= '9' && v <= 5000; k++)
			v = v * 10 + (unsigned long)(m[k] - '0');
		if (v > 5000)
			return true;
	}
	return false;
}

static void client_side(enum rmq_scram_mech mech, const uint8_t *a, size_t al, const uint8_t *b,
			size_t bl)
{
	if (slow(a, al))
		return;
	static struct rmq_scram_client c;
	char out[RMQ_SCRAM_OUT_MAX];
	size_t n = 0;
	rmq_scram_client_clear(&c);
	rmq_scram_client_test_nonce(&c, "rOprNGfwEbeRWgbNEkqO");
	if (rmq_scram_client_start(&c, mech, "user", 4, "pencil", 6, out, sizeof(out), &n))
		fail("client-first");
	check_out(out, sizeof(out), n);
	char cfirst[RMQ_SCRAM_OUT_MAX];
	memcpy(cfirst, out, n + 1);
	size_t cfirst_len = n;
	int rc = rmq_scram_client_final(&c, a, al, out, sizeof(out), &n);
	if (rc) {
		if (rmq_scram_client_finish(&c, b, bl) != RMQ_ESTATE)
			fail("a refused exchange went on");
		return;
	}
	check_out(out, sizeof(out), n);
	char cfinal[RMQ_SCRAM_OUT_MAX];
	memcpy(cfinal, out, n + 1);
	size_t cfinal_len = n;
	rc = rmq_scram_client_finish(&c, b, bl);
	if (rc == 0) {
		/* The signature a server holding the verifier sends for this very
		 * exchange: the client took B, so B must carry it. */
		static struct rmq_scram_server s;
		const char *u;
		char sf[RMQ_SCRAM_OUT_MAX], fin[RMQ_SCRAM_OUT_MAX];
		size_t sl, fl;
		rmq_scram_server_init(&s, mech);
		if (rmq_scram_server_client_first(&s, (const uint8_t *)cfirst, cfirst_len, &u))
			fail("the client's own client-first refused");
		/* The server must echo the nonce and salt of A: build its state
		 * from A instead of its own (only r= differs, and A's r= extends
		 * the client's nonce). */
		const char *r = memchr(a, ',', al);
		size_t nonce_len = r ? (size_t)(r - (const char *)a) - 2 : 0;
		size_t cn = strlen("rOprNGfwEbeRWgbNEkqO");
		char sn[RMQ_SCRAM_SNONCE_MAX + 1];
		if (nonce_len < cn || nonce_len - cn > RMQ_SCRAM_SNONCE_MAX)
			return; /* a server nonce longer than our server makes: not comparable */
		memcpy(sn, a + 2 + cn, nonce_len - cn);
		sn[nonce_len - cn] = '\0';
		rmq_scram_server_test_nonce(&s, sn);
		if (rmq_scram_server_first(&s, user_verifier(mech), secret, sizeof(secret), sf,
					   sizeof(sf), &sl))
			fail("server-first");
		if (sl != al || memcmp(sf, a, al) != 0)
			return; /* A had extensions, or another salt: not comparable */
		if (rmq_scram_server_client_final(&s, (const uint8_t *)cfinal, cfinal_len, fin,
						  sizeof(fin), &fl))
			fail("the server refused the client's proof");
		const char *comma = memchr(b, ',', bl);
		size_t vl = comma ? (size_t)(comma - (const char *)b) : bl;
		if (vl != fl || memcmp(b, fin, fl) != 0)
			fail("the client took a server-final without the right signature");
	}
	rmq_scram_client_clear(&c);
}

static void text_side(const uint8_t *a, size_t al, const uint8_t *b, size_t bl)
{
	struct rmq_scram_verifier v;
	if (rmq_scram_verifier_decode((const char *)a, al, &v) == 0) {
		char t[RMQ_SCRAM_VERIFIER_TEXT_MAX];
		int n = rmq_scram_verifier_encode(&v, t, sizeof(t));
		if (n < 0 || (size_t)n != al || memcmp(t, a, al) != 0)
			fail("a verifier text that is not its verifier's only text");
	}
	struct rmq_plain p;
	const char *why;
	if (rmq_plain_parse(b, bl, &p, &why) == 0) {
		const char *lo = (const char *)b, *hi = lo + bl;
		if (p.user < lo || p.user + p.user_len > hi || p.pw < lo || p.pw + p.pw_len > hi)
			fail("PLAIN fields outside the message");
		if (rmq_principal_check(p.user, p.user_len) || p.pw_len == 0)
			fail("PLAIN took a bad user or an empty password");
	}
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	if (size < 3)
		return 0;
	uint8_t sel = data[0];
	size_t n = (size_t)data[1] << 8 | data[2];
	const uint8_t *a = data + 3;
	size_t rest = size - 3;
	if (n > rest)
		n = rest;
	const uint8_t *b = a + n;
	size_t bl = rest - n;
	enum rmq_scram_mech mech = sel & 1 ? RMQ_SCRAM_SHA_512 : RMQ_SCRAM_SHA_256;
	switch (sel >> 1 & 3) {
	case 0:
	case 1:
		server_side(mech, sel & 8, sel & 16, a, n, b, bl);
		break;
	case 2:
		client_side(mech, a, n, b, bl);
		break;
	default:
		text_side(a, n, b, bl);
		break;
	}
	return 0;
}
