/* SPDX-License-Identifier: Apache-2.0 */
/*
 * test_scram.c - SCRAM-SHA-256/512 (scram.h) and PLAIN (plain.h): the
 * RFC 7677 exchange byte for byte on both sides, round trips, and every
 * kind of bad message refused.
 */
#include "broker/plain.h"
#include "broker/scram.h"

#include "core/base64.h"
#include "core/error.h"

#include <criterion/criterion.h>
#include <errno.h>
#include <stdio.h>
#include <string.h>

/* RFC 7677 section 3. */
#define RFC_CFIRST "n,,n=user,r=rOprNGfwEbeRWgbNEkqO"
#define RFC_SNONCE "%hvYDpWUa2RaTCAfuxFIlj)hNlF$k0"
#define RFC_SALT "W22ZaJ0SNY7soEsUEjb6gQ=="
#define RFC_SFIRST "r=rOprNGfwEbeRWgbNEkqO" RFC_SNONCE ",s=" RFC_SALT ",i=4096"
#define RFC_CFINAL                                                                             \
	"c=biws,r=rOprNGfwEbeRWgbNEkqO" RFC_SNONCE                                             \
	",p=dHzbZapWIk4jUhN+Ute9ytag9zjfMHgsqmmiz7AndVQ="
#define RFC_SFINAL "v=6rriTRBi23WpRR/wtup+mMhUZUn/dB5nLTJRsjl95G4="

static const uint8_t secret[32] = "a server secret of 32 bytes....";

static const uint8_t *u8(const char *s)
{
	return (const uint8_t *)s;
}

static void rfc_verifier(struct rmq_scram_verifier *v)
{
	uint8_t salt[32];
	int n = rmq_b64_decode(RMQ_B64_STD, RFC_SALT, strlen(RFC_SALT), salt, sizeof(salt));
	cr_assert_eq(n, 16);
	cr_assert_eq(rmq_scram_verifier_make_salted(RMQ_SCRAM_SHA_256, "pencil", 6, salt, (size_t)n,
						    4096, v),
		     0);
}

Test(scram, rfc7677_server_side_byte_for_byte)
{
	struct rmq_scram_verifier v;
	rfc_verifier(&v);
	struct rmq_scram_server s;
	rmq_scram_server_init(&s, RMQ_SCRAM_SHA_256);
	rmq_scram_server_test_nonce(&s, RFC_SNONCE);
	const char *user = NULL;
	cr_assert_eq(rmq_scram_server_client_first(&s, u8(RFC_CFIRST), strlen(RFC_CFIRST), &user), 0);
	cr_assert_str_eq(user, "user");
	char out[RMQ_SCRAM_OUT_MAX];
	size_t n;
	cr_assert_eq(rmq_scram_server_first(&s, &v, secret, sizeof(secret), out, sizeof(out), &n), 0);
	cr_assert_str_eq(out, RFC_SFIRST);
	cr_assert_eq(n, strlen(RFC_SFIRST));
	int rc = rmq_scram_server_client_final(&s, u8(RFC_CFINAL), strlen(RFC_CFINAL), out,
					       sizeof(out), &n);
	cr_assert_eq(rc, 0, "%s: %s", rmq_errname(rc), rmq_scram_server_why(&s));
	cr_assert_str_eq(out, RFC_SFINAL);
	cr_assert_eq(n, strlen(RFC_SFINAL));
	/* Done: nothing more is taken, the same message least of all. */
	cr_assert_eq(rmq_scram_server_client_final(&s, u8(RFC_CFINAL), strlen(RFC_CFINAL), out,
						   sizeof(out), &n),
		     RMQ_ESTATE);
	rmq_scram_server_clear(&s);
}

Test(scram, rfc7677_client_side_byte_for_byte)
{
	struct rmq_scram_client c;
	rmq_scram_client_clear(&c);
	rmq_scram_client_test_nonce(&c, "rOprNGfwEbeRWgbNEkqO");
	char out[RMQ_SCRAM_OUT_MAX];
	size_t n;
	cr_assert_eq(rmq_scram_client_start(&c, RMQ_SCRAM_SHA_256, "user", 4, "pencil", 6, out,
					    sizeof(out), &n),
		     0);
	cr_assert_str_eq(out, RFC_CFIRST);
	cr_assert_eq(n, strlen(RFC_CFIRST));
	cr_assert_eq(rmq_scram_client_final(&c, u8(RFC_SFIRST), strlen(RFC_SFIRST), out, sizeof(out),
					    &n),
		     0, "%s", rmq_scram_client_why(&c));
	cr_assert_str_eq(out, RFC_CFINAL);
	cr_assert_eq(rmq_scram_client_finish(&c, u8(RFC_SFINAL), strlen(RFC_SFINAL)), 0);
	rmq_scram_client_clear(&c);
}

Test(scram, client_refuses_a_wrong_server_signature)
{
	struct rmq_scram_client c;
	rmq_scram_client_clear(&c);
	rmq_scram_client_test_nonce(&c, "rOprNGfwEbeRWgbNEkqO");
	char out[RMQ_SCRAM_OUT_MAX];
	size_t n;
	cr_assert_eq(rmq_scram_client_start(&c, RMQ_SCRAM_SHA_256, "user", 4, "pencil", 6, out,
					    sizeof(out), &n),
		     0);
	cr_assert_eq(rmq_scram_client_final(&c, u8(RFC_SFIRST), strlen(RFC_SFIRST), out, sizeof(out),
					    &n),
		     0);
	/* The RFC's signature with its first character changed. */
	const char *bad = "v=7rriTRBi23WpRR/wtup+mMhUZUn/dB5nLTJRsjl95G4=";
	cr_assert_eq(rmq_scram_client_finish(&c, u8(bad), strlen(bad)), -EACCES);
	cr_assert(strstr(rmq_scram_client_why(&c), "server signature"));
}

Test(scram, client_reports_the_servers_refusal)
{
	struct rmq_scram_client c;
	rmq_scram_client_clear(&c);
	rmq_scram_client_test_nonce(&c, "rOprNGfwEbeRWgbNEkqO");
	char out[RMQ_SCRAM_OUT_MAX];
	size_t n;
	cr_assert_eq(rmq_scram_client_start(&c, RMQ_SCRAM_SHA_256, "user", 4, "pencil", 6, out,
					    sizeof(out), &n),
		     0);
	cr_assert_eq(rmq_scram_client_final(&c, u8(RFC_SFIRST), strlen(RFC_SFIRST), out, sizeof(out),
					    &n),
		     0);
	cr_assert_eq(rmq_scram_client_finish(&c, u8("e=invalid-proof"), 15), -EACCES);
	cr_assert_str_eq(c.server_error, "invalid-proof");
}

/* Runs the client side of RFC 7677 against a server-first built by hand;
 * returns what rmq_scram_client_final answers. */
static int client_against(const char *sfirst)
{
	struct rmq_scram_client c;
	rmq_scram_client_clear(&c);
	rmq_scram_client_test_nonce(&c, "rOprNGfwEbeRWgbNEkqO");
	char out[RMQ_SCRAM_OUT_MAX];
	size_t n;
	cr_assert_eq(rmq_scram_client_start(&c, RMQ_SCRAM_SHA_256, "user", 4, "pencil", 6, out,
					    sizeof(out), &n),
		     0);
	int rc = rmq_scram_client_final(&c, u8(sfirst), strlen(sfirst), out, sizeof(out), &n);
	rmq_scram_client_clear(&c);
	return rc;
}

Test(scram, client_refuses_bad_server_first)
{
	cr_assert_eq(client_against("r=rOprNGfwEbeRWgbNEkqOxyz,s=" RFC_SALT ",i=4095"), -EINVAL);
	cr_assert_eq(client_against("r=rOprNGfwEbeRWgbNEkqOxyz,s=" RFC_SALT ",i=1000001"), -EINVAL);
	cr_assert_eq(client_against("r=rOprNGfwEbeRWgbNEkqOxyz,s=" RFC_SALT ",i=99999999"),
		     RMQ_EPROTO);
	cr_assert_eq(client_against("r=rOprNGfwEbeRWgbNEkqOxyz,s=" RFC_SALT ",i=04096"), RMQ_EPROTO);
	cr_assert_eq(client_against("r=XOprNGfwEbeRWgbNEkqOxyz,s=" RFC_SALT ",i=4096"), RMQ_EPROTO);
	cr_assert_eq(client_against("r=rOprNGfwEbeRWgbNEkqO,s=" RFC_SALT ",i=4096"), RMQ_EPROTO);
	cr_assert_eq(client_against("r=rOprNGfw,s=" RFC_SALT ",i=4096"), RMQ_EPROTO);
	cr_assert_eq(client_against("m=x,r=rOprNGfwEbeRWgbNEkqOxyz,s=" RFC_SALT ",i=4096"),
		     RMQ_EUNSUPPORTED);
	cr_assert_eq(client_against("r=rOprNGfwEbeRWgbNEkqOxyz,s=W22ZaJ0SNY7soEsUEjb6gQ,i=4096"),
		     RMQ_EPROTO);
	cr_assert_eq(client_against("r=rOprNGfwEbeRWgbNEkqOxyz,s=,i=4096"), RMQ_EPROTO);
	cr_assert_eq(client_against("r=rOprNGfwEbeRWgbNEkqOxyz,i=4096,s=" RFC_SALT), RMQ_EPROTO);
	cr_assert_eq(client_against("r=rOprNGfwEbeRWgbNEkqOxyz,s=" RFC_SALT), RMQ_EPROTO);
	cr_assert_eq(client_against("r=rOprNGfwEbeRWgbNEkqOxyz,s=" RFC_SALT ",i=4096,"), RMQ_EPROTO);
	cr_assert_eq(client_against(""), RMQ_EPROTO);
	/* Extensions after i= are skipped. */
	cr_assert_eq(client_against("r=rOprNGfwEbeRWgbNEkqOxyz,s=" RFC_SALT ",i=4096,x=1"), 0);
}

/* One exchange from both sides with fresh random nonces.  Returns the
 * server's answer to client-final; *client_rc what the client says of the
 * server-final. */
static int exchange(enum rmq_scram_mech mech, const char *user, const char *stored_pw,
		    const char *client_pw, bool known, int *client_rc)
{
	struct rmq_scram_verifier v;
	cr_assert_eq(rmq_scram_verifier_make(mech, stored_pw, strlen(stored_pw),
					     RMQ_SCRAM_ITER_MIN, &v),
		     0);
	struct rmq_scram_client c;
	struct rmq_scram_server s;
	rmq_scram_client_clear(&c);
	rmq_scram_server_init(&s, mech);
	char cm[RMQ_SCRAM_OUT_MAX], sm[RMQ_SCRAM_OUT_MAX];
	size_t cn, sn;
	const char *got_user;
	cr_assert_eq(rmq_scram_client_start(&c, mech, user, strlen(user), client_pw,
					    strlen(client_pw), cm, sizeof(cm), &cn),
		     0);
	cr_assert_eq(rmq_scram_server_client_first(&s, u8(cm), cn, &got_user), 0, "%s",
		     rmq_scram_server_why(&s));
	cr_assert_str_eq(got_user, user);
	cr_assert_eq(rmq_scram_server_first(&s, known ? &v : NULL, secret, sizeof(secret), sm,
					    sizeof(sm), &sn),
		     0);
	cr_assert_eq(rmq_scram_client_final(&c, u8(sm), sn, cm, sizeof(cm), &cn), 0, "%s",
		     rmq_scram_client_why(&c));
	int rc = rmq_scram_server_client_final(&s, u8(cm), cn, sm, sizeof(sm), &sn);
	cr_assert_gt(sn, 0);
	*client_rc = rmq_scram_client_finish(&c, u8(sm), sn);
	if (rc == 0)
		cr_assert_str_eq(rmq_scram_server_why(&s), "");
	rmq_scram_client_clear(&c);
	rmq_scram_server_clear(&s);
	return rc;
}

Test(scram, sha512_and_sha256_round_trips)
{
	int crc;
	cr_assert_eq(exchange(RMQ_SCRAM_SHA_512, "alice", "correct horse", "correct horse", true,
			      &crc),
		     0);
	cr_assert_eq(crc, 0);
	cr_assert_eq(exchange(RMQ_SCRAM_SHA_256, "bob", "battery staple", "battery staple", true,
			      &crc),
		     0);
	cr_assert_eq(crc, 0);
	/* Names with ',' and '=' travel escaped (=2C, =3D) and come back whole;
	 * so do UTF-8 names. */
	cr_assert_eq(exchange(RMQ_SCRAM_SHA_512, "o,dd=name", "pw", "pw", true, &crc), 0);
	cr_assert_eq(crc, 0);
	cr_assert_eq(exchange(RMQ_SCRAM_SHA_256, "J\xc3\xbcrgen", "pw", "pw", true, &crc), 0);
	cr_assert_eq(crc, 0);
}

Test(scram, wrong_password_and_unknown_user_are_refused_alike)
{
	int crc;
	cr_assert_eq(exchange(RMQ_SCRAM_SHA_512, "alice", "right", "wrong", true, &crc), -EACCES);
	cr_assert_eq(crc, -EACCES);
	cr_assert_eq(exchange(RMQ_SCRAM_SHA_256, "alice", "right", "wrong", true, &crc), -EACCES);
	cr_assert_eq(crc, -EACCES);
	/* No verifier at all, even with the right password: same answer. */
	cr_assert_eq(exchange(RMQ_SCRAM_SHA_256, "ghost", "right", "right", false, &crc), -EACCES);
	cr_assert_eq(crc, -EACCES);
	cr_assert_eq(exchange(RMQ_SCRAM_SHA_512, "ghost", "right", "right", false, &crc), -EACCES);
	cr_assert_eq(crc, -EACCES);
}

/* The server-first for user (NULL verifier) and the message it ends with. */
static void unknown_first(const char *user, enum rmq_scram_mech mech, char *sfirst,
			  char *sfinal, const char **why)
{
	static struct rmq_scram_server s;
	char cfirst[600];
	snprintf(cfirst, sizeof(cfirst), "n,,n=%s,r=fixednonce", user);
	rmq_scram_server_init(&s, mech);
	rmq_scram_server_test_nonce(&s, "SRV");
	const char *u;
	size_t n;
	cr_assert_eq(rmq_scram_server_client_first(&s, u8(cfirst), strlen(cfirst), &u), 0);
	cr_assert_eq(rmq_scram_server_first(&s, NULL, secret, sizeof(secret), sfirst,
					    RMQ_SCRAM_OUT_MAX, &n),
		     0);
	size_t kl = rmq_scram_key_len(mech);
	uint8_t zero[64] = {0};
	char proof[100], cfinal[400];
	rmq_b64_encode(RMQ_B64_STD, zero, kl, proof);
	snprintf(cfinal, sizeof(cfinal), "c=biws,r=fixednonceSRV,p=%s", proof);
	cr_assert_eq(rmq_scram_server_client_final(&s, u8(cfinal), strlen(cfinal), sfinal,
						   RMQ_SCRAM_OUT_MAX, &n),
		     -EACCES);
	*why = rmq_scram_server_why(&s);
}

Test(scram, unknown_user_looks_like_a_user)
{
	char a[RMQ_SCRAM_OUT_MAX], b[RMQ_SCRAM_OUT_MAX], c[RMQ_SCRAM_OUT_MAX];
	char fa[RMQ_SCRAM_OUT_MAX], fb[RMQ_SCRAM_OUT_MAX], fc[RMQ_SCRAM_OUT_MAX];
	const char *wa, *wb, *wc;
	unknown_first("ghost", RMQ_SCRAM_SHA_256, a, fa, &wa);
	unknown_first("ghost", RMQ_SCRAM_SHA_256, b, fb, &wb);
	unknown_first("spook", RMQ_SCRAM_SHA_256, c, fc, &wc);
	/* The same salt every time for one name, another for another name,
	 * the iterations new users get, and the answer a wrong password gets. */
	cr_assert_str_eq(a, b);
	cr_assert_str_neq(a, c);
	cr_assert(strstr(a, ",i=8192"), "%s", a);
	cr_assert_eq(strlen(a), strlen("r=fixednonceSRV,s=,i=8192") + 24);
	cr_assert_str_eq(fa, "e=invalid-proof");
	cr_assert_str_eq(fc, "e=invalid-proof");
	/* The reason logged is the one a wrong password gets (exchange()). */
	cr_assert_str_eq(wa, "invalid proof: wrong password or unknown user");
	cr_assert_str_eq(wa, wc);
	cr_assert_str_eq(wa, wb);
}

/* A server that has sent the RFC's server-first and waits for client-final. */
static void rfc_server_waiting(struct rmq_scram_server *s)
{
	struct rmq_scram_verifier v;
	rfc_verifier(&v);
	rmq_scram_server_init(s, RMQ_SCRAM_SHA_256);
	rmq_scram_server_test_nonce(s, RFC_SNONCE);
	const char *u;
	char out[RMQ_SCRAM_OUT_MAX];
	size_t n;
	cr_assert_eq(rmq_scram_server_client_first(s, u8(RFC_CFIRST), strlen(RFC_CFIRST), &u), 0);
	cr_assert_eq(rmq_scram_server_first(s, &v, secret, sizeof(secret), out, sizeof(out), &n), 0);
}

static int final_to_rfc_server(const char *msg, size_t len, char *out)
{
	static struct rmq_scram_server s;
	rfc_server_waiting(&s);
	size_t n;
	int rc = rmq_scram_server_client_final(&s, u8(msg), len, out, RMQ_SCRAM_OUT_MAX, &n);
	if (rc)
		cr_assert_neq(strcmp(rmq_scram_server_why(&s), ""), 0);
	return rc;
}

Test(scram, truncated_client_final_is_refused)
{
	char out[RMQ_SCRAM_OUT_MAX];
	size_t len = strlen(RFC_CFINAL);
	for (size_t i = 0; i < len; i++) {
		int rc = final_to_rfc_server(RFC_CFINAL, i, out);
		cr_assert_neq(rc, 0, "a prefix of %zu bytes was taken", i);
		cr_assert(rc == RMQ_EPROTO || rc == -EACCES, "prefix %zu: %s", i, rmq_errname(rc));
	}
	cr_assert_eq(final_to_rfc_server(RFC_CFINAL, len, out), 0);
}

Test(scram, forged_client_final_is_refused)
{
	char out[RMQ_SCRAM_OUT_MAX];
	char m[sizeof(RFC_CFINAL)];
	size_t len = strlen(RFC_CFINAL);
	/* Every single-byte change anywhere in the message. */
	for (size_t i = 0; i < len; i++) {
		memcpy(m, RFC_CFINAL, sizeof(m));
		m[i] = m[i] == 'A' ? 'B' : 'A';
		int rc = final_to_rfc_server(m, len, out);
		cr_assert_neq(rc, 0, "a change at byte %zu was taken", i);
	}
	/* A proof of the right length that is not the proof. */
	cr_assert_eq(final_to_rfc_server("c=biws,r=rOprNGfwEbeRWgbNEkqO" RFC_SNONCE
					 ",p=AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA=",
					 strlen(RFC_CFINAL), out),
		     -EACCES);
	cr_assert_str_eq(out, "e=invalid-proof");
	/* Channel binding claimed though the header said n. */
	const char *cb = "c=cCx0bHMtdW5pcXVlLCw=,r=rOprNGfwEbeRWgbNEkqO" RFC_SNONCE
			 ",p=dHzbZapWIk4jUhN+Ute9ytag9zjfMHgsqmmiz7AndVQ=";
	cr_assert_eq(final_to_rfc_server(cb, strlen(cb), out), RMQ_EPROTO);
	cr_assert_str_eq(out, "e=channel-bindings-dont-match");
	/* p= not last, attributes reordered, proof given twice. */
	const char *notlast = "c=biws,r=rOprNGfwEbeRWgbNEkqO" RFC_SNONCE
			      ",p=dHzbZapWIk4jUhN+Ute9ytag9zjfMHgsqmmiz7AndVQ=,x=1";
	cr_assert_eq(final_to_rfc_server(notlast, strlen(notlast), out), RMQ_EPROTO);
	const char *reordered = "r=rOprNGfwEbeRWgbNEkqO" RFC_SNONCE
				",c=biws,p=dHzbZapWIk4jUhN+Ute9ytag9zjfMHgsqmmiz7AndVQ=";
	cr_assert_eq(final_to_rfc_server(reordered, strlen(reordered), out), RMQ_EPROTO);
	/* An extension before p= is part of what the proof signs: the RFC's
	 * proof does not cover it. */
	const char *ext = "c=biws,r=rOprNGfwEbeRWgbNEkqO" RFC_SNONCE
			  ",x=1,p=dHzbZapWIk4jUhN+Ute9ytag9zjfMHgsqmmiz7AndVQ=";
	cr_assert_eq(final_to_rfc_server(ext, strlen(ext), out), -EACCES);
	/* NUL inside, and too long. */
	char nul[sizeof(RFC_CFINAL)];
	memcpy(nul, RFC_CFINAL, sizeof(nul));
	nul[10] = '\0';
	cr_assert_eq(final_to_rfc_server(nul, len, out), RMQ_EPROTO);
	static char big[RMQ_SCRAM_MSG_MAX + 2];
	memset(big, 'a', sizeof(big) - 1);
	cr_assert_eq(final_to_rfc_server(big, sizeof(big) - 1, out), RMQ_ETOOBIG);
}

Test(scram, replayed_client_final_is_refused)
{
	/* A client-final that worked once, sent to a new exchange with the
	 * same client-first: the new server nonce differs, so it is refused. */
	struct rmq_scram_verifier v;
	rfc_verifier(&v);
	struct rmq_scram_server s;
	rmq_scram_server_init(&s, RMQ_SCRAM_SHA_256);
	const char *u;
	char out[RMQ_SCRAM_OUT_MAX];
	size_t n;
	cr_assert_eq(rmq_scram_server_client_first(&s, u8(RFC_CFIRST), strlen(RFC_CFIRST), &u), 0);
	cr_assert_eq(rmq_scram_server_first(&s, &v, secret, sizeof(secret), out, sizeof(out), &n), 0);
	cr_assert_eq(strncmp(out, "r=rOprNGfwEbeRWgbNEkqO", 22), 0);
	cr_assert_eq(n, strlen("r=rOprNGfwEbeRWgbNEkqO,s=" RFC_SALT ",i=4096") + 24);
	cr_assert_eq(rmq_scram_server_client_final(&s, u8(RFC_CFINAL), strlen(RFC_CFINAL), out,
						   sizeof(out), &n),
		     RMQ_EPROTO);
	cr_assert(strstr(rmq_scram_server_why(&s), "replayed"));
	cr_assert_str_eq(out, "e=other-error");
	/* Refused once: nothing more is taken. */
	cr_assert_eq(rmq_scram_server_client_final(&s, u8(RFC_CFINAL), strlen(RFC_CFINAL), out,
						   sizeof(out), &n),
		     RMQ_ESTATE);
}

Test(scram, steps_out_of_order_are_refused)
{
	struct rmq_scram_verifier v;
	rfc_verifier(&v);
	struct rmq_scram_server s;
	char out[RMQ_SCRAM_OUT_MAX];
	size_t n;
	const char *u;
	/* client-final first */
	rmq_scram_server_init(&s, RMQ_SCRAM_SHA_256);
	cr_assert_eq(rmq_scram_server_client_final(&s, u8(RFC_CFINAL), strlen(RFC_CFINAL), out,
						   sizeof(out), &n),
		     RMQ_ESTATE);
	/* client-first twice */
	rmq_scram_server_init(&s, RMQ_SCRAM_SHA_256);
	cr_assert_eq(rmq_scram_server_client_first(&s, u8(RFC_CFIRST), strlen(RFC_CFIRST), &u), 0);
	cr_assert_eq(rmq_scram_server_client_first(&s, u8(RFC_CFIRST), strlen(RFC_CFIRST), &u),
		     RMQ_ESTATE);
	/* client-final before the server answered */
	rmq_scram_server_init(&s, RMQ_SCRAM_SHA_256);
	cr_assert_eq(rmq_scram_server_client_first(&s, u8(RFC_CFIRST), strlen(RFC_CFIRST), &u), 0);
	cr_assert_eq(rmq_scram_server_client_final(&s, u8(RFC_CFINAL), strlen(RFC_CFINAL), out,
						   sizeof(out), &n),
		     RMQ_ESTATE);
	/* a verifier of the other mechanism, a short secret */
	rmq_scram_server_init(&s, RMQ_SCRAM_SHA_512);
	cr_assert_eq(rmq_scram_server_client_first(&s, u8(RFC_CFIRST), strlen(RFC_CFIRST), &u), 0);
	cr_assert_eq(rmq_scram_server_first(&s, &v, secret, sizeof(secret), out, sizeof(out), &n),
		     -EINVAL);
	rmq_scram_server_init(&s, RMQ_SCRAM_SHA_256);
	cr_assert_eq(rmq_scram_server_client_first(&s, u8(RFC_CFIRST), strlen(RFC_CFIRST), &u), 0);
	cr_assert_eq(rmq_scram_server_first(&s, NULL, secret, 8, out, sizeof(out), &n), -EINVAL);
	/* an uninitialised (zeroed) server */
	memset(&s, 0, sizeof(s));
	cr_assert_eq(rmq_scram_server_client_first(&s, u8(RFC_CFIRST), strlen(RFC_CFIRST), &u),
		     RMQ_ESTATE);
	/* the client: server-final before server-first, start twice */
	struct rmq_scram_client c;
	rmq_scram_client_clear(&c);
	cr_assert_eq(rmq_scram_client_finish(&c, u8(RFC_SFINAL), strlen(RFC_SFINAL)), RMQ_ESTATE);
	rmq_scram_client_clear(&c);
	cr_assert_eq(rmq_scram_client_start(&c, RMQ_SCRAM_SHA_256, "user", 4, "pencil", 6, out,
					    sizeof(out), &n),
		     0);
	cr_assert_eq(rmq_scram_client_start(&c, RMQ_SCRAM_SHA_256, "user", 4, "pencil", 6, out,
					    sizeof(out), &n),
		     RMQ_ESTATE);
	cr_assert_eq(rmq_scram_client_finish(&c, u8(RFC_SFINAL), strlen(RFC_SFINAL)), RMQ_ESTATE);
}

static int first(const char *msg, size_t len, const char **user)
{
	static struct rmq_scram_server s;
	rmq_scram_server_init(&s, RMQ_SCRAM_SHA_256);
	const char *u = NULL;
	int rc = rmq_scram_server_client_first(&s, u8(msg), len, &u);
	if (user)
		*user = u;
	if (rc)
		cr_assert_neq(strcmp(rmq_scram_server_why(&s), ""), 0);
	return rc;
}
#define FIRST(s) first(s, strlen(s), NULL)

Test(scram, client_first_grammar)
{
	const char *u;
	cr_assert_eq(first("y,,n=user,r=abc", 15, &u), 0);
	cr_assert_str_eq(u, "user");
	cr_assert_eq(first("n,a=user,n=user,r=abc", 21, &u), 0);
	cr_assert_eq(first("n,,n==2C=3D,r=abc", 17, &u), 0);
	cr_assert_str_eq(u, ",=");
	cr_assert_eq(first("n,a==2C,n==2C,r=abc", 19, &u), 0);
	cr_assert_eq(FIRST("n,,n=user,r=abc,x=ext,y=2"), 0);

	cr_assert_eq(FIRST("p=tls-unique,,n=user,r=abc"), RMQ_EUNSUPPORTED);
	cr_assert_eq(FIRST("n,,m=ext,n=user,r=abc"), RMQ_EUNSUPPORTED);
	cr_assert_eq(FIRST("n,a=root,n=user,r=abc"), RMQ_EUNSUPPORTED);
	const char *bad[] = {
		"",
		"n",
		"n,",
		"n,,",
		"x,,n=user,r=abc",
		"nn,,n=user,r=abc",
		"n,,n=us=2Xer,r=abc",
		"n,,n=user=,r=abc",
		"n,,n=user=2,r=abc",
		"n,,n=user=2c,r=abc",
		"n,,n=,r=abc",
		"n,,n=user",
		"n,,n=user,",
		"n,,n=user,r=",
		"n,,n=user,r=abc,",
		"n,,n=user,r=ab\x7f",
		"n,,n=user,r=ab c",
		"n,,r=abc,n=user",
		"n,,n=user,x=1,r=abc",
		"n,,N=user,r=abc",
		"n,a=,n=user,r=abc",
		"n,b=user,n=user,r=abc",
		"n,a=user,,n=user,r=abc",
		"n,,n=us\x01r,r=abc",
		"n,,n=us\xc3r,r=abc",
		"n,,n=user,r=abc,1=x",
		"n,,n=user,r=abc,,x=1",
		",,n=user,r=abc",
	};
	for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++)
		cr_assert_eq(FIRST(bad[i]), RMQ_EPROTO, "'%s' gave %s", bad[i],
			     rmq_errname(FIRST(bad[i])));
	cr_assert_eq(first("n,,n=user\0x,r=abc", 17, NULL), RMQ_EPROTO);
	/* Bounds: a message over 1 KiB, a nonce over 255, a name over 255. */
	static char big[RMQ_SCRAM_MSG_MAX + 64];
	memset(big, 'a', sizeof(big));
	memcpy(big, "n,,n=user,r=", 12);
	cr_assert_eq(first(big, RMQ_SCRAM_MSG_MAX + 1, NULL), RMQ_ETOOBIG);
	cr_assert_eq(first(big, 12 + 255, NULL), 0);
	cr_assert_eq(first(big, 12 + 256, NULL), RMQ_ETOOBIG);
	memset(big, 'a', sizeof(big));
	memcpy(big, "n,,n=", 5);
	memcpy(big + 5 + 256, ",r=abc", 6);
	cr_assert_eq(first(big, 5 + 256 + 6, NULL), RMQ_EPROTO);
	memcpy(big + 5 + 255, ",r=abc", 6);
	cr_assert_eq(first(big, 5 + 255 + 6, &u), 0);
	cr_assert_eq(strlen(u), 255);
}

Test(scram, verifier_text_round_trip)
{
	struct rmq_scram_verifier v, w;
	rfc_verifier(&v);
	char t[RMQ_SCRAM_VERIFIER_TEXT_MAX];
	int n = rmq_scram_verifier_encode(&v, t, sizeof(t));
	cr_assert_gt(n, 0);
	cr_assert_eq(strncmp(t, "SCRAM-SHA-256:4096:" RFC_SALT ":", 44), 0, "%s", t);
	cr_assert_eq(strstr(t, "pencil"), NULL);
	cr_assert_eq(rmq_scram_verifier_decode(t, (size_t)n, &w), 0);
	cr_assert_eq(memcmp(&v, &w, sizeof(v)), 0);
	cr_assert_eq(rmq_scram_verifier_encode(&v, t, 20), -ENOSPC);

	/* The largest verifier fits the bound. */
	uint8_t salt[RMQ_SCRAM_SALT_MAX] = {1};
	cr_assert_eq(rmq_scram_verifier_make_salted(RMQ_SCRAM_SHA_512, "pw", 2, salt, sizeof(salt),
						    RMQ_SCRAM_ITER_MIN, &v),
		     0);
	v.iterations = RMQ_SCRAM_ITER_MAX;
	n = rmq_scram_verifier_encode(&v, t, sizeof(t));
	cr_assert_gt(n, 0);
	cr_assert_eq(rmq_scram_verifier_decode(t, (size_t)n, &w), 0);
	cr_assert_eq(memcmp(&v, &w, sizeof(v)), 0);

	const char *bad[] = {
		"",
		"SCRAM-SHA-256",
		"SCRAM-SHA-256:4096:" RFC_SALT ":AAAA:AAAA",
		"SCRAM-SHA-256:4095:" RFC_SALT
		":AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA=:AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA=",
		"SCRAM-SHA-256:04096:" RFC_SALT
		":AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA=:AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA=",
		"SCRAM-SHA-256:4096::"
		"AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA=:AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA=",
		"SCRAM-SHA-256:4096:" RFC_SALT
		":AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA=:AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA=:",
		"SCRAM-SHA-256:4096:" RFC_SALT
		":AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAB=:AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA=",
	};
	for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++)
		cr_assert_eq(rmq_scram_verifier_decode(bad[i], strlen(bad[i]), &w), RMQ_ECORRUPT,
			     "'%s'", bad[i]);
	const char *ok = "SCRAM-SHA-256:4096:" RFC_SALT
			 ":AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA=:AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA=";
	cr_assert_eq(rmq_scram_verifier_decode(ok, strlen(ok), &w), 0);
	const char *md5 = "SCRAM-MD5:4096:" RFC_SALT
			  ":AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA=:AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA=";
	cr_assert_eq(rmq_scram_verifier_decode(md5, strlen(md5), &w), RMQ_EUNSUPPORTED);
}

Test(scram, verifier_make_bounds)
{
	struct rmq_scram_verifier v, w;
	cr_assert_eq(rmq_scram_verifier_make(RMQ_SCRAM_SHA_256, "pw", 2, 4095, &v), -EINVAL);
	cr_assert_eq(rmq_scram_verifier_make(RMQ_SCRAM_SHA_256, "pw", 2, 1000001, &v), -EINVAL);
	cr_assert_eq(rmq_scram_verifier_make(RMQ_SCRAM_SHA_256, "", 0, 4096, &v), -EINVAL);
	cr_assert_eq(rmq_scram_verifier_make(RMQ_SCRAM_SHA_256, "p\0w", 3, 4096, &v), -EINVAL);
	cr_assert_eq(rmq_scram_verifier_make((enum rmq_scram_mech)7, "pw", 2, 4096, &v), -EINVAL);
	/* Two verifiers of one password differ (random salts). */
	cr_assert_eq(rmq_scram_verifier_make(RMQ_SCRAM_SHA_256, "pw", 2, 4096, &v), 0);
	cr_assert_eq(rmq_scram_verifier_make(RMQ_SCRAM_SHA_256, "pw", 2, 4096, &w), 0);
	cr_assert_eq(v.salt_len, RMQ_SCRAM_SALT_LEN);
	cr_assert_neq(memcmp(v.salt, w.salt, RMQ_SCRAM_SALT_LEN), 0);
	cr_assert_neq(memcmp(v.stored_key, w.stored_key, 32), 0);
	enum rmq_scram_mech m;
	cr_assert_eq(rmq_scram_mech_parse("SCRAM-SHA-512", 13, &m), 0);
	cr_assert_eq(m, RMQ_SCRAM_SHA_512);
	cr_assert_eq(rmq_scram_mech_parse("scram-sha-512", 13, &m), RMQ_EUNSUPPORTED);
	cr_assert_eq(rmq_scram_mech_parse("SCRAM-SHA-5", 11, &m), RMQ_EUNSUPPORTED);
}

/* ---- PLAIN ---------------------------------------------------------------- */

static int plain(const char *msg, size_t len, struct rmq_plain *p)
{
	const char *why;
	int rc = rmq_plain_parse(u8(msg), len, p, &why);
	if (rc)
		cr_assert_neq(strcmp(why, ""), 0);
	return rc;
}

Test(plain, parse)
{
	struct rmq_plain p;
	cr_assert_eq(plain("\0alice\0secret", 13, &p), 0);
	cr_assert_eq(p.user_len, 5);
	cr_assert_eq(memcmp(p.user, "alice", 5), 0);
	cr_assert_eq(p.pw_len, 6);
	cr_assert_eq(memcmp(p.pw, "secret", 6), 0);
	cr_assert_eq(plain("alice\0alice\0secret", 18, &p), 0);
	cr_assert_eq(plain("root\0alice\0secret", 17, &p), RMQ_EUNSUPPORTED);
	cr_assert_eq(plain("", 0, &p), RMQ_EPROTO);
	cr_assert_eq(plain("alice", 5, &p), RMQ_EPROTO);
	cr_assert_eq(plain("\0alice", 6, &p), RMQ_EPROTO);
	cr_assert_eq(plain("\0alice\0", 7, &p), RMQ_EPROTO);
	cr_assert_eq(plain("\0\0secret", 8, &p), RMQ_EPROTO);
	cr_assert_eq(plain("\0alice\0sec\0ret", 14, &p), RMQ_EPROTO);
	cr_assert_eq(plain("\0al\x01ice\0secret", 14, &p), RMQ_EPROTO);
	static char big[RMQ_PLAIN_MSG_MAX + 1];
	memset(big, 'x', sizeof(big));
	big[0] = '\0';
	big[2] = '\0';
	cr_assert_eq(plain(big, sizeof(big), &p), RMQ_ETOOBIG);
	cr_assert_eq(plain(big, 3 + RMQ_SCRAM_PASSWORD_MAX, &p), 0);
	cr_assert_eq(plain(big, 3 + RMQ_SCRAM_PASSWORD_MAX + 1, &p), RMQ_ETOOBIG);
}

Test(plain, passwords_against_verifiers)
{
	struct rmq_scram_verifier v256, v512;
	cr_assert_eq(rmq_scram_verifier_make(RMQ_SCRAM_SHA_256, "pencil", 6, 4096, &v256), 0);
	cr_assert_eq(rmq_scram_verifier_make(RMQ_SCRAM_SHA_512, "pencil", 6, 4096, &v512), 0);
	cr_assert_eq(rmq_plain_check(&v256, "pencil", 6), 0);
	cr_assert_eq(rmq_plain_check(&v512, "pencil", 6), 0);
	cr_assert_eq(rmq_plain_check(&v256, "pencil ", 7), -EACCES);
	cr_assert_eq(rmq_plain_check(&v256, "Pencil", 6), -EACCES);
	cr_assert_eq(rmq_plain_check(&v512, "pen", 3), -EACCES);
	cr_assert_eq(rmq_plain_check(&v256, "", 0), -EACCES);
	cr_assert_eq(rmq_plain_check(NULL, "pencil", 6), -EACCES);
	/* The RFC 7677 user, by PLAIN. */
	struct rmq_scram_verifier v;
	rfc_verifier(&v);
	struct rmq_plain p;
	cr_assert_eq(plain("\0user\0pencil", 12, &p), 0);
	cr_assert_eq(rmq_plain_check(&v, p.pw, p.pw_len), 0);
}
