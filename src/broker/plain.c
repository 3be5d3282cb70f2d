/* SPDX-License-Identifier: Apache-2.0 */
/* plain.c - SASL PLAIN against SCRAM verifiers (plain.h). */
#include "broker/plain.h"

#include "core/error.h"

#include <errno.h>
#include <stdbool.h>
#include <string.h>

#include <openssl/crypto.h>

int rmq_plain_parse(const uint8_t *msg, size_t len, struct rmq_plain *out, const char **why)
{
	*why = "";
	if (len > RMQ_PLAIN_MSG_MAX) {
		*why = "PLAIN message too long";
		return RMQ_ETOOBIG;
	}
	const char *m = (const char *)msg;
	const char *nul1 = len ? memchr(m, '\0', len) : NULL;
	if (!nul1) {
		*why = "PLAIN message is not authzid NUL authcid NUL passwd";
		return RMQ_EPROTO;
	}
	size_t zl = (size_t)(nul1 - m);
	const char *user = nul1 + 1;
	const char *nul2 = memchr(user, '\0', len - zl - 1);
	if (!nul2) {
		*why = "PLAIN message is not authzid NUL authcid NUL passwd";
		return RMQ_EPROTO;
	}
	size_t ul = (size_t)(nul2 - user);
	const char *pw = nul2 + 1;
	size_t pl = len - zl - 1 - ul - 1;
	if (pl == 0 || memchr(pw, '\0', pl)) {
		*why = "PLAIN password is empty or holds a NUL";
		return RMQ_EPROTO;
	}
	if (pl > RMQ_SCRAM_PASSWORD_MAX) {
		*why = "PLAIN password longer than 1024 bytes";
		return RMQ_ETOOBIG;
	}
	if (rmq_principal_check(user, ul)) {
		*why = "PLAIN user is not 1..255 bytes of UTF-8 without control characters";
		return RMQ_EPROTO;
	}
	if (zl && (zl != ul || memcmp(m, user, ul) != 0)) {
		*why = "PLAIN authzid other than the user is not supported";
		return RMQ_EUNSUPPORTED;
	}
	out->user = user;
	out->user_len = ul;
	out->pw = pw;
	out->pw_len = pl;
	return 0;
}

int rmq_plain_check(const struct rmq_scram_verifier *v, const char *pw, size_t pw_len)
{
	/* No such user: the same derivation against a fixed salt, so the
	 * answer takes as long as for a user that exists. */
	static const char nobody_salt[] = "rmq-plain-nobody";
	struct rmq_scram_verifier got;
	enum rmq_scram_mech mech = v ? v->mech : RMQ_SCRAM_SHA_256;
	const uint8_t *salt = v ? v->salt : (const uint8_t *)nobody_salt;
	size_t salt_len = v ? v->salt_len : sizeof(nobody_salt) - 1;
	uint32_t it = v ? v->iterations : RMQ_SCRAM_ITER_DEFAULT;
	int rc = rmq_scram_verifier_make_salted(mech, pw, pw_len, salt, salt_len, it, &got);
	if (rc == -EINVAL) {
		/* A password that cannot be a verifier's (empty, too long, a
		 * NUL), or a verifier out of range: never right. */
		OPENSSL_cleanse(&got, sizeof(got));
		return -EACCES;
	}
	if (rc) {
		OPENSSL_cleanse(&got, sizeof(got));
		return rc;
	}
	size_t kl = rmq_scram_key_len(mech);
	bool ok = v && CRYPTO_memcmp(got.stored_key, v->stored_key, kl) == 0;
	OPENSSL_cleanse(&got, sizeof(got));
	return ok ? 0 : -EACCES;
}
