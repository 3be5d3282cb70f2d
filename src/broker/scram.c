/* SPDX-License-Identifier: Apache-2.0 */
/*
 * scram.c - SCRAM-SHA-256/512 verifiers, server and client (scram.h).
 *
 * Every message is parsed through one cursor (struct cur) that never looks
 * past its length; attributes are "<letter>=<value>" separated by ','.
 * Secrets (salted passwords, keys, signatures) live on the stack only as
 * long as a step runs and are wiped with OPENSSL_cleanse before it
 * returns; comparisons of secrets use CRYPTO_memcmp.
 */
#include "broker/scram.h"

#include "core/base64.h"
#include "core/error.h"

#include <errno.h>
#include <stdio.h>
#include <string.h>

#include <openssl/crypto.h>
#include <openssl/evp.h>
#include <openssl/hmac.h>
#include <openssl/rand.h>

enum {
	S_START = 1,  /* init'd: waiting for client-first */
	S_GOT_FIRST,  /* client-first parsed: waiting for the verifier */
	S_SENT_FIRST, /* server-first written: waiting for client-final */
	S_DONE,       /* authenticated */
	S_FAILED,     /* refused: nothing more is accepted */
};

enum {
	C_FRESH = 0, /* zeroed or cleared */
	C_SENT_FIRST,
	C_SENT_FINAL,
	C_DONE,
	C_FAILED,
};

/* Salt and keys of users that do not exist come from the server secret
 * under these labels, so they cannot collide with anything else made
 * from it. */
#define FAKE_SALT_LABEL "rmq scram unknown-user salt"
#define FAKE_STORED_LABEL "rmq scram unknown-user stored-key"
#define FAKE_SERVER_LABEL "rmq scram unknown-user server-key"

/* The longest AuthMessage: each of its three parts is at most
 * RMQ_SCRAM_OUT_MAX bytes. */
#define AUTH_MSG_MAX (3 * RMQ_SCRAM_OUT_MAX + 2)

/* ---- mechanisms and primitives ------------------------------------------ */

const char *rmq_scram_mech_name(enum rmq_scram_mech mech)
{
	switch (mech) {
	case RMQ_SCRAM_SHA_256:
		return "SCRAM-SHA-256";
	case RMQ_SCRAM_SHA_512:
		return "SCRAM-SHA-512";
	}
	return NULL;
}

int rmq_scram_mech_parse(const char *name, size_t len, enum rmq_scram_mech *mech)
{
	static const enum rmq_scram_mech all[] = {RMQ_SCRAM_SHA_256, RMQ_SCRAM_SHA_512};
	for (size_t i = 0; i < sizeof(all) / sizeof(all[0]); i++) {
		const char *n = rmq_scram_mech_name(all[i]);
		if (strlen(n) == len && memcmp(n, name, len) == 0) {
			*mech = all[i];
			return 0;
		}
	}
	return RMQ_EUNSUPPORTED;
}

size_t rmq_scram_key_len(enum rmq_scram_mech mech)
{
	switch (mech) {
	case RMQ_SCRAM_SHA_256:
		return 32;
	case RMQ_SCRAM_SHA_512:
		return 64;
	}
	return 0;
}

static const EVP_MD *md_of(enum rmq_scram_mech mech)
{
	return mech == RMQ_SCRAM_SHA_512 ? EVP_sha512() : EVP_sha256();
}

/* out = HMAC-H(key, data); rmq_scram_key_len(mech) bytes.  0 or -EIO. */
static int hmac(enum rmq_scram_mech mech, const uint8_t *key, size_t key_len, const void *data,
		size_t len, uint8_t *out)
{
	unsigned int n = 0;
	if (!HMAC(md_of(mech), key, (int)key_len, data, len, out, &n))
		return -EIO;
	return n == rmq_scram_key_len(mech) ? 0 : -EIO;
}

/* out = H(data).  0 or -EIO. */
static int hash(enum rmq_scram_mech mech, const uint8_t *data, size_t len, uint8_t *out)
{
	unsigned int n = 0;
	if (!EVP_Digest(data, len, out, &n, md_of(mech), NULL))
		return -EIO;
	return n == rmq_scram_key_len(mech) ? 0 : -EIO;
}

/* SaltedPassword, ClientKey, StoredKey and ServerKey of a password. */
struct keys {
	uint8_t salted[RMQ_SCRAM_KEY_MAX];
	uint8_t client[RMQ_SCRAM_KEY_MAX];
	uint8_t stored[RMQ_SCRAM_KEY_MAX];
	uint8_t server[RMQ_SCRAM_KEY_MAX];
};

static int derive_keys(enum rmq_scram_mech mech, const char *pw, size_t pw_len,
		       const uint8_t *salt, size_t salt_len, uint32_t iterations, struct keys *k)
{
	size_t kl = rmq_scram_key_len(mech);
	if (!PKCS5_PBKDF2_HMAC(pw, (int)pw_len, salt, (int)salt_len, (int)iterations, md_of(mech),
			       (int)kl, k->salted))
		return -EIO;
	int rc = hmac(mech, k->salted, kl, "Client Key", 10, k->client);
	if (rc == 0)
		rc = hash(mech, k->client, kl, k->stored);
	if (rc == 0)
		rc = hmac(mech, k->salted, kl, "Server Key", 10, k->server);
	return rc;
}

static bool password_ok(const char *pw, size_t pw_len)
{
	return pw_len >= 1 && pw_len <= RMQ_SCRAM_PASSWORD_MAX && !memchr(pw, '\0', pw_len);
}

/* ---- verifiers ---------------------------------------------------------- */

int rmq_scram_verifier_make_salted(enum rmq_scram_mech mech, const char *pw, size_t pw_len,
				   const uint8_t *salt, size_t salt_len, uint32_t iterations,
				   struct rmq_scram_verifier *out)
{
	if (!rmq_scram_key_len(mech) || !password_ok(pw, pw_len))
		return -EINVAL;
	if (iterations < RMQ_SCRAM_ITER_MIN || iterations > RMQ_SCRAM_ITER_MAX)
		return -EINVAL;
	if (salt_len < 1 || salt_len > RMQ_SCRAM_SALT_MAX)
		return -EINVAL;
	struct keys k;
	int rc = derive_keys(mech, pw, pw_len, salt, salt_len, iterations, &k);
	if (rc == 0) {
		memset(out, 0, sizeof(*out));
		out->mech = mech;
		out->iterations = iterations;
		out->salt_len = (uint8_t)salt_len;
		memcpy(out->salt, salt, salt_len);
		memcpy(out->stored_key, k.stored, rmq_scram_key_len(mech));
		memcpy(out->server_key, k.server, rmq_scram_key_len(mech));
	}
	OPENSSL_cleanse(&k, sizeof(k));
	return rc;
}

int rmq_scram_verifier_make(enum rmq_scram_mech mech, const char *pw, size_t pw_len,
			    uint32_t iterations, struct rmq_scram_verifier *out)
{
	uint8_t salt[RMQ_SCRAM_SALT_LEN];
	if (RAND_bytes(salt, sizeof(salt)) != 1)
		return -EIO;
	return rmq_scram_verifier_make_salted(mech, pw, pw_len, salt, sizeof(salt), iterations,
					      out);
}

static bool verifier_ok(const struct rmq_scram_verifier *v)
{
	return rmq_scram_key_len(v->mech) && v->iterations >= RMQ_SCRAM_ITER_MIN &&
	       v->iterations <= RMQ_SCRAM_ITER_MAX && v->salt_len >= 1 &&
	       v->salt_len <= RMQ_SCRAM_SALT_MAX;
}

int rmq_scram_verifier_encode(const struct rmq_scram_verifier *v, char *out, size_t cap)
{
	if (!verifier_ok(v))
		return -EINVAL;
	size_t kl = rmq_scram_key_len(v->mech);
	char salt[RMQ_SCRAM_SALT_MAX / 3 * 4 + 8], stored[RMQ_SCRAM_KEY_MAX / 3 * 4 + 8],
		server[RMQ_SCRAM_KEY_MAX / 3 * 4 + 8];
	rmq_b64_encode(RMQ_B64_STD, v->salt, v->salt_len, salt);
	rmq_b64_encode(RMQ_B64_STD, v->stored_key, kl, stored);
	rmq_b64_encode(RMQ_B64_STD, v->server_key, kl, server);
	int n = snprintf(out, cap, "%s:%u:%s:%s:%s", rmq_scram_mech_name(v->mech), v->iterations,
			 salt, stored, server);
	if (n < 0 || (size_t)n >= cap)
		return -ENOSPC;
	return n;
}

/* The decimal in s[0..n): digits only, no leading zero, at most 7 digits.
 * Returns it, or -1. */
static long parse_decimal(const char *s, size_t n)
{
	if (n < 1 || n > 7 || (s[0] == '0' && n > 1))
		return -1;
	long v = 0;
	for (size_t i = 0; i < n; i++) {
		if (s[i] < '0' || s[i] > '9')
			return -1;
		v = v * 10 + (s[i] - '0');
	}
	return v;
}

int rmq_scram_verifier_decode(const char *text, size_t len, struct rmq_scram_verifier *out)
{
	const char *f[5];
	size_t fl[5], nf = 0, start = 0;
	if (len >= RMQ_SCRAM_VERIFIER_TEXT_MAX)
		return RMQ_ECORRUPT;
	for (size_t i = 0; i <= len; i++) {
		if (i < len && text[i] != ':')
			continue;
		if (nf == 5)
			return RMQ_ECORRUPT;
		f[nf] = text + start;
		fl[nf++] = i - start;
		start = i + 1;
	}
	if (nf != 5)
		return RMQ_ECORRUPT;
	struct rmq_scram_verifier v;
	memset(&v, 0, sizeof(v));
	int rc = rmq_scram_mech_parse(f[0], fl[0], &v.mech);
	if (rc)
		return rc;
	long it = parse_decimal(f[1], fl[1]);
	if (it < RMQ_SCRAM_ITER_MIN || it > RMQ_SCRAM_ITER_MAX)
		return RMQ_ECORRUPT;
	v.iterations = (uint32_t)it;
	int n = rmq_b64_decode(RMQ_B64_STD, f[2], fl[2], v.salt, sizeof(v.salt));
	if (n < 1)
		return RMQ_ECORRUPT;
	v.salt_len = (uint8_t)n;
	size_t kl = rmq_scram_key_len(v.mech);
	n = rmq_b64_decode(RMQ_B64_STD, f[3], fl[3], v.stored_key, sizeof(v.stored_key));
	if (n < 0 || (size_t)n != kl)
		return RMQ_ECORRUPT;
	n = rmq_b64_decode(RMQ_B64_STD, f[4], fl[4], v.server_key, sizeof(v.server_key));
	if (n < 0 || (size_t)n != kl)
		return RMQ_ECORRUPT;
	*out = v;
	OPENSSL_cleanse(&v, sizeof(v));
	return 0;
}

/* ---- message parsing ---------------------------------------------------- */

/* A cursor over one received message. */
struct cur {
	const char *p;
	size_t n;
	size_t i;
};

/* The next attribute "<letter>=<value>" up to ',' or the end; the cursor
 * moves past the ','.  Returns 0, or -1 when there is no attribute. */
static int next_attr(struct cur *c, char *name, const char **val, size_t *val_len)
{
	if (c->i + 2 > c->n)
		return -1;
	char a = c->p[c->i];
	if (!((a >= 'a' && a <= 'z') || (a >= 'A' && a <= 'Z')) || c->p[c->i + 1] != '=')
		return -1;
	size_t v = c->i + 2, e = v;
	while (e < c->n && c->p[e] != ',')
		e++;
	*name = a;
	*val = c->p + v;
	*val_len = e - v;
	c->i = e < c->n ? e + 1 : e;
	/* A trailing ',' with nothing after it is not an attribute list. */
	if (e < c->n && e + 1 == c->n)
		return -1;
	return 0;
}

static bool at_end(const struct cur *c)
{
	return c->i >= c->n;
}

/* A nonce: printable ASCII other than ','. */
static bool nonce_ok(const char *s, size_t n)
{
	for (size_t i = 0; i < n; i++)
		if (s[i] < 0x21 || s[i] > 0x7E || s[i] == ',')
			return false;
	return n > 0;
}

/* The saslname s[0..n) unescaped into out (cap bytes, NUL-terminated).
 * Returns its length, or -1 (an '=' that is not =2C or =3D, empty, too
 * long). */
static int unescape_name(const char *s, size_t n, char *out, size_t cap)
{
	size_t o = 0;
	for (size_t i = 0; i < n; i++) {
		char ch = s[i];
		if (ch == '=') {
			if (i + 2 >= n)
				return -1;
			if (s[i + 1] == '2' && s[i + 2] == 'C')
				ch = ',';
			else if (s[i + 1] == '3' && s[i + 2] == 'D')
				ch = '=';
			else
				return -1;
			i += 2;
		}
		if (o + 1 >= cap)
			return -1;
		out[o++] = ch;
	}
	out[o] = '\0';
	return o ? (int)o : -1;
}

/* Skips the extensions that end a message ("," attr-val ...), each of
 * which must be well formed.  Returns 0 or -1. */
static int skip_extensions(struct cur *c)
{
	while (!at_end(c)) {
		char a;
		const char *v;
		size_t vl;
		if (next_attr(c, &a, &v, &vl))
			return -1;
	}
	return 0;
}

/* ---- server ------------------------------------------------------------- */

void rmq_scram_server_init(struct rmq_scram_server *s, enum rmq_scram_mech mech)
{
	OPENSSL_cleanse(s, sizeof(*s));
	s->mech = mech;
	s->state = S_START;
	s->why = "";
}

void rmq_scram_server_clear(struct rmq_scram_server *s)
{
	OPENSSL_cleanse(s, sizeof(*s));
	s->why = "";
}

const char *rmq_scram_server_why(const struct rmq_scram_server *s)
{
	return s->why ? s->why : "";
}

void rmq_scram_server_test_nonce(struct rmq_scram_server *s, const char *snonce)
{
	size_t n = strnlen(snonce, RMQ_SCRAM_SNONCE_MAX);
	memcpy(s->snonce, snonce, n);
	s->snonce[n] = '\0';
}

static int server_refuse(struct rmq_scram_server *s, int rc, const char *why)
{
	s->state = S_FAILED;
	s->why = why;
	OPENSSL_cleanse(&s->v, sizeof(s->v));
	return rc;
}

/* A received message: bounded and free of NUL bytes. */
static int message_ok(const uint8_t *msg, size_t len, const char **why)
{
	if (len > RMQ_SCRAM_MSG_MAX) {
		*why = "message longer than 1024 bytes";
		return RMQ_ETOOBIG;
	}
	if (len == 0) {
		*why = "empty message";
		return RMQ_EPROTO;
	}
	if (memchr(msg, '\0', len)) {
		*why = "message holds a NUL byte";
		return RMQ_EPROTO;
	}
	return 0;
}

int rmq_scram_server_client_first(struct rmq_scram_server *s, const uint8_t *msg, size_t len,
				  const char **user)
{
	const char *why = "";
	if (s->state != S_START || !rmq_scram_key_len(s->mech))
		return server_refuse(s, RMQ_ESTATE, "client-first out of order");
	int rc = message_ok(msg, len, &why);
	if (rc)
		return server_refuse(s, rc, why);
	const char *m = (const char *)msg;
	struct cur c = {m, len, 0};

	/* gs2-header: cbind-flag "," [authzid] "," */
	if (m[0] == 'p')
		return server_refuse(s, RMQ_EUNSUPPORTED,
				     "channel binding (p=) is not supported: use n or y");
	if ((m[0] != 'n' && m[0] != 'y') || len < 3 || m[1] != ',')
		return server_refuse(s, RMQ_EPROTO, "GS2 header is not n,, or y,,");
	c.i = 2;
	char authz[RMQ_PRINCIPAL_MAX + 1] = "";
	int authz_len = 0;
	if (m[2] != ',') {
		char a;
		const char *v;
		size_t vl;
		if (next_attr(&c, &a, &v, &vl) || a != 'a')
			return server_refuse(s, RMQ_EPROTO, "GS2 header: an authzid is not a=<name>");
		authz_len = unescape_name(v, vl, authz, sizeof(authz));
		if (authz_len < 0)
			return server_refuse(s, RMQ_EPROTO, "GS2 header: authzid is not a valid saslname");
		/* next_attr consumed the ',' that ends the header */
	} else {
		c.i = 3;
	}
	if (c.i < 3 || m[c.i - 1] != ',')
		return server_refuse(s, RMQ_EPROTO, "GS2 header is not terminated by ','");
	s->gs2_len = c.i;
	memcpy(s->gs2, m, c.i);

	/* client-first-message-bare: [m=..,] n=<saslname>,r=<nonce>[,ext...] */
	size_t bare_at = c.i;
	char a;
	const char *v;
	size_t vl;
	if (next_attr(&c, &a, &v, &vl))
		return server_refuse(s, RMQ_EPROTO, "client-first: no n= attribute");
	if (a == 'm')
		return server_refuse(s, RMQ_EUNSUPPORTED,
				     "client-first: mandatory extension m= is not supported");
	if (a != 'n')
		return server_refuse(s, RMQ_EPROTO, "client-first: the first attribute is not n=");
	if (vl > 3 * RMQ_PRINCIPAL_MAX)
		return server_refuse(s, RMQ_ETOOBIG, "client-first: user name too long");
	int ul = unescape_name(v, vl, s->user, sizeof(s->user));
	if (ul < 0)
		return server_refuse(s, RMQ_EPROTO,
				     "client-first: user name is not a saslname (empty, too long, "
				     "or '=' not followed by 2C or 3D)");
	if (rmq_principal_check(s->user, (size_t)ul))
		return server_refuse(s, RMQ_EPROTO,
				     "client-first: user name is not valid UTF-8 without control "
				     "characters");
	s->user_len = (size_t)ul;
	if (authz_len > 0 &&
	    ((size_t)authz_len != s->user_len || memcmp(authz, s->user, s->user_len) != 0))
		return server_refuse(s, RMQ_EUNSUPPORTED,
				     "an authzid other than the user name is not supported");
	size_t r_at = c.i;
	if (next_attr(&c, &a, &v, &vl) || a != 'r')
		return server_refuse(s, RMQ_EPROTO, "client-first: no r= attribute after n=");
	if (vl > RMQ_SCRAM_CNONCE_MAX)
		return server_refuse(s, RMQ_ETOOBIG, "client-first: nonce longer than 255 characters");
	if (!nonce_ok(v, vl))
		return server_refuse(s, RMQ_EPROTO,
				     "client-first: nonce is empty or not printable ASCII");
	if (skip_extensions(&c))
		return server_refuse(s, RMQ_EPROTO, "client-first: malformed extension");
	s->bare_len = len - bare_at;
	memcpy(s->bare, m + bare_at, s->bare_len);
	s->cnonce_at = r_at + 2 - bare_at;
	s->cnonce_len = vl;
	s->state = S_GOT_FIRST;
	*user = s->user;
	return 0;
}

/* The made-up salt and keys of a user without a verifier. */
static int fake_part(const uint8_t *secret, size_t secret_len, const char *label,
		     enum rmq_scram_mech mech, const char *user, size_t user_len, uint8_t *out,
		     size_t out_len)
{
	uint8_t buf[sizeof(FAKE_STORED_LABEL) + 16 + RMQ_PRINCIPAL_MAX];
	uint8_t md[64];
	size_t n = 0, ll = strlen(label) + 1; /* with its NUL: a separator */
	const char *mn = rmq_scram_mech_name(mech);
	memcpy(buf, label, ll);
	n += ll;
	memcpy(buf + n, mn, strlen(mn) + 1);
	n += strlen(mn) + 1;
	memcpy(buf + n, user, user_len);
	n += user_len;
	unsigned int mdl = 0;
	if (!HMAC(EVP_sha512(), secret, (int)secret_len, buf, n, md, &mdl) || mdl != 64)
		return -EIO;
	memcpy(out, md, out_len);
	OPENSSL_cleanse(md, sizeof(md));
	return 0;
}

static int fake_verifier(struct rmq_scram_server *s, const uint8_t *secret, size_t secret_len)
{
	struct rmq_scram_verifier *v = &s->v;
	size_t kl = rmq_scram_key_len(s->mech);
	memset(v, 0, sizeof(*v));
	v->mech = s->mech;
	v->iterations = RMQ_SCRAM_ITER_DEFAULT;
	v->salt_len = RMQ_SCRAM_SALT_LEN;
	int rc = fake_part(secret, secret_len, FAKE_SALT_LABEL, s->mech, s->user, s->user_len,
			   v->salt, RMQ_SCRAM_SALT_LEN);
	if (rc == 0)
		rc = fake_part(secret, secret_len, FAKE_STORED_LABEL, s->mech, s->user, s->user_len,
			       v->stored_key, kl);
	if (rc == 0)
		rc = fake_part(secret, secret_len, FAKE_SERVER_LABEL, s->mech, s->user, s->user_len,
			       v->server_key, kl);
	return rc;
}

int rmq_scram_server_first(struct rmq_scram_server *s, const struct rmq_scram_verifier *v,
			   const uint8_t *secret, size_t secret_len, char *out, size_t cap,
			   size_t *out_len)
{
	*out_len = 0;
	if (s->state != S_GOT_FIRST)
		return server_refuse(s, RMQ_ESTATE, "server-first out of order");
	if (!secret || secret_len < RMQ_SCRAM_SECRET_MIN || secret_len > RMQ_SCRAM_SECRET_MAX)
		return server_refuse(s, -EINVAL, "server secret not 16..1024 bytes");
	if (v && (v->mech != s->mech || !verifier_ok(v)))
		return server_refuse(s, -EINVAL, "verifier of another mechanism, or invalid");
	/* The made-up verifier is derived for every user, then replaced by
	 * the real one when there is one: both paths cost the same. */
	int rc = fake_verifier(s, secret, secret_len);
	if (rc)
		return server_refuse(s, rc, "OpenSSL failed");
	s->fake = v == NULL;
	if (v)
		s->v = *v;
	if (s->snonce[0] == '\0') {
		uint8_t r[RMQ_SCRAM_SNONCE_LEN / 4 * 3];
		if (RAND_bytes(r, sizeof(r)) != 1)
			return server_refuse(s, -EIO, "no random bytes for the server nonce");
		rmq_b64_encode(RMQ_B64_STD, r, sizeof(r), s->snonce);
	}
	char salt[RMQ_SCRAM_SALT_MAX / 3 * 4 + 8];
	rmq_b64_encode(RMQ_B64_STD, s->v.salt, s->v.salt_len, salt);
	int n = snprintf(s->first, sizeof(s->first), "r=%.*s%s,s=%s,i=%u", (int)s->cnonce_len,
			 s->bare + s->cnonce_at, s->snonce, salt, s->v.iterations);
	if (n < 0 || (size_t)n >= sizeof(s->first) || (size_t)n >= cap)
		return server_refuse(s, -ENOSPC, "no room for server-first");
	s->first_len = (size_t)n;
	memcpy(out, s->first, s->first_len + 1);
	*out_len = s->first_len;
	s->state = S_SENT_FIRST;
	return 0;
}

/* Writes "e=<err>" as the server-final-message when it fits. */
static void server_error(char *out, size_t cap, size_t *out_len, const char *err)
{
	int n = snprintf(out, cap, "e=%s", err);
	*out_len = n > 0 && (size_t)n < cap ? (size_t)n : 0;
}

int rmq_scram_server_client_final(struct rmq_scram_server *s, const uint8_t *msg, size_t len,
				  char *out, size_t cap, size_t *out_len)
{
	*out_len = 0;
	if (cap)
		out[0] = '\0';
	if (s->state != S_SENT_FIRST)
		return server_refuse(s, RMQ_ESTATE, "client-final out of order");
	const char *why = "";
	int rc = message_ok(msg, len, &why);
	if (rc) {
		server_error(out, cap, out_len, "invalid-encoding");
		return server_refuse(s, rc, why);
	}
	const char *m = (const char *)msg;
	struct cur c = {m, len, 0};
	char a;
	const char *v;
	size_t vl;

	/* c=<base64 of the GS2 header>: compared as text, which base64's
	 * strictness makes the same as comparing bytes. */
	char cb[RMQ_SCRAM_MSG_MAX / 3 * 4 + 8];
	size_t cbl = rmq_b64_encode(RMQ_B64_STD, (const uint8_t *)s->gs2, s->gs2_len, cb);
	if (next_attr(&c, &a, &v, &vl) || a != 'c') {
		server_error(out, cap, out_len, "invalid-encoding");
		return server_refuse(s, RMQ_EPROTO, "client-final: the first attribute is not c=");
	}
	if (vl != cbl || memcmp(v, cb, cbl) != 0) {
		server_error(out, cap, out_len, "channel-bindings-dont-match");
		return server_refuse(s, RMQ_EPROTO,
				     "client-final: c= is not the GS2 header of client-first");
	}
	if (next_attr(&c, &a, &v, &vl) || a != 'r') {
		server_error(out, cap, out_len, "invalid-encoding");
		return server_refuse(s, RMQ_EPROTO, "client-final: no r= after c=");
	}
	size_t sl = strlen(s->snonce);
	if (vl != s->cnonce_len + sl || memcmp(v, s->bare + s->cnonce_at, s->cnonce_len) != 0 ||
	    memcmp(v + s->cnonce_len, s->snonce, sl) != 0) {
		server_error(out, cap, out_len, "other-error");
		return server_refuse(s, RMQ_EPROTO,
				     "client-final: nonce is not this exchange's (replayed or "
				     "from another exchange)");
	}
	/* Extensions, then p= as the last attribute. */
	size_t without_proof = 0;
	const char *proof_text = NULL;
	size_t proof_len = 0;
	while (!at_end(&c)) {
		size_t at = c.i;
		if (next_attr(&c, &a, &v, &vl)) {
			server_error(out, cap, out_len, "invalid-encoding");
			return server_refuse(s, RMQ_EPROTO, "client-final: malformed attribute");
		}
		if (a == 'p') {
			if (!at_end(&c)) {
				server_error(out, cap, out_len, "invalid-encoding");
				return server_refuse(s, RMQ_EPROTO,
						     "client-final: p= is not the last attribute");
			}
			without_proof = at - 1; /* without the ',' before p= */
			proof_text = v;
			proof_len = vl;
		}
	}
	if (!proof_text) {
		server_error(out, cap, out_len, "invalid-encoding");
		return server_refuse(s, RMQ_EPROTO, "client-final: no proof (p=)");
	}
	size_t kl = rmq_scram_key_len(s->mech);
	uint8_t proof[RMQ_SCRAM_KEY_MAX];
	int pl = rmq_b64_decode(RMQ_B64_STD, proof_text, proof_len, proof, sizeof(proof));
	if (pl < 0 || (size_t)pl != kl) {
		server_error(out, cap, out_len, "invalid-encoding");
		return server_refuse(s, RMQ_EPROTO,
				     "client-final: proof is not base64 of the hash's length");
	}

	/* AuthMessage = client-first-bare "," server-first "," without-proof */
	_Static_assert(AUTH_MSG_MAX >= 3 * RMQ_SCRAM_MSG_MAX + 2, "room for AuthMessage");
	char am[AUTH_MSG_MAX];
	size_t aml = 0;
	memcpy(am, s->bare, s->bare_len);
	aml += s->bare_len;
	am[aml++] = ',';
	memcpy(am + aml, s->first, s->first_len);
	aml += s->first_len;
	am[aml++] = ',';
	memcpy(am + aml, m, without_proof);
	aml += without_proof;

	uint8_t sig[RMQ_SCRAM_KEY_MAX], ckey[RMQ_SCRAM_KEY_MAX], stored[RMQ_SCRAM_KEY_MAX];
	rc = hmac(s->mech, s->v.stored_key, kl, am, aml, sig);
	for (size_t i = 0; i < kl; i++)
		ckey[i] = proof[i] ^ sig[i];
	if (rc == 0)
		rc = hash(s->mech, ckey, kl, stored);
	/* Both paths compare and build the signature: a made-up verifier
	 * costs what a real one does. */
	bool match = rc == 0 && CRYPTO_memcmp(stored, s->v.stored_key, kl) == 0;
	bool ok = match && !s->fake;
	if (rc == 0)
		rc = hmac(s->mech, s->v.server_key, kl, am, aml, sig);
	OPENSSL_cleanse(ckey, sizeof(ckey));
	OPENSSL_cleanse(stored, sizeof(stored));
	if (rc) {
		OPENSSL_cleanse(sig, sizeof(sig));
		server_error(out, cap, out_len, "other-error");
		return server_refuse(s, rc, "OpenSSL failed");
	}
	if (!ok) {
		OPENSSL_cleanse(sig, sizeof(sig));
		server_error(out, cap, out_len, "invalid-proof");
		return server_refuse(s, -EACCES, "invalid proof: wrong password or unknown user");
	}
	char vs[RMQ_SCRAM_KEY_MAX / 3 * 4 + 8];
	size_t vsl = rmq_b64_encode(RMQ_B64_STD, sig, kl, vs);
	OPENSSL_cleanse(sig, sizeof(sig));
	if (cap < vsl + 3)
		return server_refuse(s, -ENOSPC, "no room for server-final");
	memcpy(out, "v=", 2);
	memcpy(out + 2, vs, vsl + 1);
	*out_len = vsl + 2;
	s->state = S_DONE;
	s->why = "";
	OPENSSL_cleanse(&s->v, sizeof(s->v));
	return 0;
}

/* ---- client ------------------------------------------------------------- */

void rmq_scram_client_clear(struct rmq_scram_client *c)
{
	OPENSSL_cleanse(c, sizeof(*c));
	c->why = "";
}

const char *rmq_scram_client_why(const struct rmq_scram_client *c)
{
	return c->why ? c->why : "";
}

void rmq_scram_client_test_nonce(struct rmq_scram_client *c, const char *cnonce)
{
	size_t n = strnlen(cnonce, RMQ_SCRAM_CNONCE_MAX);
	memcpy(c->cnonce, cnonce, n);
	c->cnonce[n] = '\0';
	c->cnonce_len = n;
}

static int client_fail(struct rmq_scram_client *c, int rc, const char *why)
{
	OPENSSL_cleanse(c->pw, sizeof(c->pw));
	OPENSSL_cleanse(c->server_sig, sizeof(c->server_sig));
	c->pw_len = 0;
	c->state = C_FAILED;
	c->why = why;
	return rc;
}

int rmq_scram_client_start(struct rmq_scram_client *c, enum rmq_scram_mech mech,
			   const char *user, size_t user_len, const char *pw, size_t pw_len,
			   char *out, size_t cap, size_t *out_len)
{
	*out_len = 0;
	if (c->state != C_FRESH)
		return client_fail(c, RMQ_ESTATE, "client used twice: clear it first");
	if (!rmq_scram_key_len(mech))
		return client_fail(c, -EINVAL, "unknown mechanism");
	if (rmq_principal_check(user, user_len))
		return client_fail(c, -EINVAL,
				   "user name is not 1..255 bytes of UTF-8 without control characters");
	if (!password_ok(pw, pw_len))
		return client_fail(c, -EINVAL, "password is empty, longer than 1024 bytes, or has a NUL");
	c->mech = mech;
	if (c->cnonce_len == 0) {
		uint8_t r[18];
		if (RAND_bytes(r, sizeof(r)) != 1)
			return client_fail(c, -EIO, "no random bytes for the nonce");
		c->cnonce_len = rmq_b64_encode(RMQ_B64_STD, r, sizeof(r), c->cnonce);
	}
	/* client-first-message-bare: n=<saslname>,r=<cnonce> */
	size_t o = 0;
	memcpy(c->bare, "n=", 2);
	o = 2;
	for (size_t i = 0; i < user_len; i++) {
		if (user[i] == ',') {
			memcpy(c->bare + o, "=2C", 3);
			o += 3;
		} else if (user[i] == '=') {
			memcpy(c->bare + o, "=3D", 3);
			o += 3;
		} else {
			c->bare[o++] = user[i];
		}
	}
	_Static_assert(2 + 3 * RMQ_PRINCIPAL_MAX + 3 + RMQ_SCRAM_CNONCE_MAX < RMQ_SCRAM_OUT_MAX,
		      "client-first fits");
	memcpy(c->bare + o, ",r=", 3);
	o += 3;
	memcpy(c->bare + o, c->cnonce, c->cnonce_len);
	o += c->cnonce_len;
	c->bare_len = o;
	if (cap < 3 + o + 1)
		return client_fail(c, -ENOSPC, "no room for client-first");
	memcpy(out, "n,,", 3);
	memcpy(out + 3, c->bare, o);
	out[3 + o] = '\0';
	*out_len = 3 + o;
	memcpy(c->pw, pw, pw_len);
	c->pw_len = pw_len;
	c->why = "";
	c->state = C_SENT_FIRST;
	return 0;
}

int rmq_scram_client_final(struct rmq_scram_client *c, const uint8_t *msg, size_t len,
			   char *out, size_t cap, size_t *out_len)
{
	*out_len = 0;
	if (c->state != C_SENT_FIRST)
		return client_fail(c, RMQ_ESTATE, "server-first out of order");
	const char *why = "";
	int rc = message_ok(msg, len, &why);
	if (rc)
		return client_fail(c, rc, why);
	const char *m = (const char *)msg;
	struct cur cu = {m, len, 0};
	char a;
	const char *v, *nonce;
	size_t vl, nonce_len;
	if (next_attr(&cu, &a, &v, &vl))
		return client_fail(c, RMQ_EPROTO, "server-first: malformed");
	if (a == 'm')
		return client_fail(c, RMQ_EUNSUPPORTED,
				   "server-first: mandatory extension m= is not supported");
	if (a != 'r')
		return client_fail(c, RMQ_EPROTO, "server-first: the first attribute is not r=");
	if (vl <= c->cnonce_len || vl > RMQ_SCRAM_NONCE_MAX || !nonce_ok(v, vl) ||
	    memcmp(v, c->cnonce, c->cnonce_len) != 0)
		return client_fail(c, RMQ_EPROTO,
				   "server-first: nonce does not extend the client's nonce");
	nonce = v;
	nonce_len = vl;
	if (next_attr(&cu, &a, &v, &vl) || a != 's')
		return client_fail(c, RMQ_EPROTO, "server-first: no s= after r=");
	uint8_t salt[RMQ_SCRAM_SALT_MAX];
	int sl = rmq_b64_decode(RMQ_B64_STD, v, vl, salt, sizeof(salt));
	if (sl < 1)
		return client_fail(c, RMQ_EPROTO, "server-first: salt is not base64 of 1..64 bytes");
	if (next_attr(&cu, &a, &v, &vl) || a != 'i')
		return client_fail(c, RMQ_EPROTO, "server-first: no i= after s=");
	long it = parse_decimal(v, vl);
	if (it < 0)
		return client_fail(c, RMQ_EPROTO, "server-first: iteration count is not a number");
	if (it < RMQ_SCRAM_ITER_MIN || it > RMQ_SCRAM_ITER_MAX)
		return client_fail(c, -EINVAL,
				   "server-first: iteration count outside 4096..1000000");
	if (skip_extensions(&cu))
		return client_fail(c, RMQ_EPROTO, "server-first: malformed extension");

	/* client-final-message-without-proof: c=biws,r=<nonce> ("biws" is
	 * base64 of "n,,", the only GS2 header this client sends). */
	char wp[RMQ_SCRAM_OUT_MAX];
	_Static_assert(9 + RMQ_SCRAM_NONCE_MAX < RMQ_SCRAM_OUT_MAX, "client-final fits");
	size_t wpl = 0;
	memcpy(wp, "c=biws,r=", 9);
	wpl = 9;
	memcpy(wp + wpl, nonce, nonce_len);
	wpl += nonce_len;

	char am[AUTH_MSG_MAX];
	size_t aml = 0;
	memcpy(am, c->bare, c->bare_len);
	aml += c->bare_len;
	am[aml++] = ',';
	memcpy(am + aml, m, len);
	aml += len;
	am[aml++] = ',';
	memcpy(am + aml, wp, wpl);
	aml += wpl;

	size_t kl = rmq_scram_key_len(c->mech);
	struct keys k;
	uint8_t sig[RMQ_SCRAM_KEY_MAX], proof[RMQ_SCRAM_KEY_MAX];
	rc = derive_keys(c->mech, c->pw, c->pw_len, salt, (size_t)sl, (uint32_t)it, &k);
	if (rc == 0)
		rc = hmac(c->mech, k.stored, kl, am, aml, sig);
	for (size_t i = 0; i < kl; i++)
		proof[i] = k.client[i] ^ sig[i];
	if (rc == 0)
		rc = hmac(c->mech, k.server, kl, am, aml, c->server_sig);
	OPENSSL_cleanse(&k, sizeof(k));
	OPENSSL_cleanse(sig, sizeof(sig));
	OPENSSL_cleanse(c->pw, sizeof(c->pw));
	c->pw_len = 0;
	if (rc) {
		OPENSSL_cleanse(proof, sizeof(proof));
		return client_fail(c, rc, "OpenSSL failed");
	}
	char pb[RMQ_SCRAM_KEY_MAX / 3 * 4 + 8];
	size_t pbl = rmq_b64_encode(RMQ_B64_STD, proof, kl, pb);
	OPENSSL_cleanse(proof, sizeof(proof));
	if (cap < wpl + 3 + pbl + 1)
		return client_fail(c, -ENOSPC, "no room for client-final");
	memcpy(out, wp, wpl);
	memcpy(out + wpl, ",p=", 3);
	memcpy(out + wpl + 3, pb, pbl + 1);
	*out_len = wpl + 3 + pbl;
	c->state = C_SENT_FINAL;
	return 0;
}

int rmq_scram_client_finish(struct rmq_scram_client *c, const uint8_t *msg, size_t len)
{
	if (c->state != C_SENT_FINAL)
		return client_fail(c, RMQ_ESTATE, "server-final out of order");
	const char *why = "";
	int rc = message_ok(msg, len, &why);
	if (rc)
		return client_fail(c, rc, why);
	struct cur cu = {(const char *)msg, len, 0};
	char a;
	const char *v;
	size_t vl;
	if (next_attr(&cu, &a, &v, &vl))
		return client_fail(c, RMQ_EPROTO, "server-final: malformed");
	if (a == 'e') {
		size_t n = 0;
		for (; n < vl && n < sizeof(c->server_error) - 1; n++)
			c->server_error[n] = v[n] >= 0x20 && v[n] < 0x7F ? v[n] : '?';
		c->server_error[n] = '\0';
		return client_fail(c, -EACCES, "the server refused the exchange (see server_error)");
	}
	if (a != 'v')
		return client_fail(c, RMQ_EPROTO, "server-final: neither v= nor e=");
	size_t kl = rmq_scram_key_len(c->mech);
	uint8_t sig[RMQ_SCRAM_KEY_MAX];
	int n = rmq_b64_decode(RMQ_B64_STD, v, vl, sig, sizeof(sig));
	if (n < 0 || (size_t)n != kl)
		return client_fail(c, RMQ_EPROTO,
				   "server-final: signature is not base64 of the hash's length");
	if (skip_extensions(&cu))
		return client_fail(c, RMQ_EPROTO, "server-final: malformed extension");
	bool ok = CRYPTO_memcmp(sig, c->server_sig, kl) == 0;
	OPENSSL_cleanse(sig, sizeof(sig));
	if (!ok)
		return client_fail(c, -EACCES,
				   "wrong server signature: the server does not know the verifier");
	OPENSSL_cleanse(c->server_sig, sizeof(c->server_sig));
	c->state = C_DONE;
	c->why = "";
	return 0;
}
