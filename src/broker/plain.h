/* SPDX-License-Identifier: Apache-2.0 */
/*
 * plain.h - SASL PLAIN (RFC 4616), checked against SCRAM verifiers.
 *
 * The one message, NUL-separated:
 *
 *   FIELD     SIZE                        MEANING
 *   authzid   0..255 bytes                empty, or equal to authcid (acting
 *                                         as another user is not supported)
 *   NUL       1
 *   authcid   1..255 bytes, a principal   the user (principal.h)
 *   NUL       1
 *   passwd    1..RMQ_SCRAM_PASSWORD_MAX   the password, no NUL
 *
 * The node stores no passwords, only SCRAM verifiers (scram.h): a PLAIN
 * password is checked by deriving SaltedPassword with the verifier's salt
 * and iterations and comparing the StoredKey it gives, in constant time.
 * That costs one PBKDF2 per attempt (about as much as a SCRAM client
 * pays); a user without a verifier costs one PBKDF2-SHA-256 at
 * RMQ_SCRAM_ITER_DEFAULT iterations, what a user made with the defaults
 * costs, so the time of an answer does not say whether the user exists.
 *
 * PLAIN sends the password itself: only over TLS.  Nothing here allocates.
 */
#ifndef RMQ_BROKER_PLAIN_H
#define RMQ_BROKER_PLAIN_H

#include "broker/principal.h"
#include "broker/scram.h"

#include <stddef.h>

#define RMQ_PLAIN_MSG_MAX (RMQ_PRINCIPAL_MAX + 1 + RMQ_PRINCIPAL_MAX + 1 + RMQ_SCRAM_PASSWORD_MAX)

/* A parsed message: pointers into the message given to rmq_plain_parse,
 * valid as long as it is.  Neither name nor password is NUL-terminated. */
struct rmq_plain {
	const char *user;
	size_t user_len;
	const char *pw;
	size_t pw_len;
};

/*
 * Parses msg[0..len).  Returns 0, RMQ_ETOOBIG (longer than
 * RMQ_PLAIN_MSG_MAX), RMQ_EPROTO (not three NUL-separated fields, an empty
 * user or password, a user that is no principal), RMQ_EUNSUPPORTED (an
 * authzid other than the user).  *why (static) says what was wrong.
 */
int rmq_plain_parse(const uint8_t *msg, size_t len, struct rmq_plain *out, const char **why);

/*
 * Checks password pw[0..pw_len) against v, the user's verifier of either
 * SCRAM mechanism, or NULL when the user does not exist.  Returns 0 (the
 * password is right), -EACCES (wrong password, or no such user), -EIO
 * (OpenSSL failed).
 */
int rmq_plain_check(const struct rmq_scram_verifier *v, const char *pw, size_t pw_len);

#endif /* RMQ_BROKER_PLAIN_H */
