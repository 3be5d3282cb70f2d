/* SPDX-License-Identifier: Apache-2.0 */
/*
 * scram_verifier.h - a SCRAM verifier made from a password on the client
 * (RFC 5802 section 3, RFC 7677), so that `rmq user add` never sends the
 * password:
 *
 *   SaltedPassword = PBKDF2-HMAC-H(password, salt, iterations)
 *   ClientKey      = HMAC-H(SaltedPassword, "Client Key")
 *   StoredKey      = H(ClientKey)
 *   ServerKey      = HMAC-H(SaltedPassword, "Server Key")
 *   verifier       = "<mechanism>:<iterations>:<b64 salt>:<b64 StoredKey>:<b64 ServerKey>"
 *
 * H is SHA-256 or SHA-512 by the mechanism; rmq user add's salt is 16
 * random bytes.
 * The password is used as given (no SASLprep: an ASCII password is its
 * own SASLprep form).  One small file so that it can give way to the
 * broker's shared SCRAM module when that exists.
 */
#ifndef RMQ_TOOLS_SCRAM_VERIFIER_H
#define RMQ_TOOLS_SCRAM_VERIFIER_H

#include <stddef.h>
#include <stdint.h>

/* Room for the longest verifier (SCRAM-SHA-512's). */
#define SCRAM_VERIFIER_MAX 400

#define SCRAM_SALT_BYTES 16

/* Fills salt with SCRAM_SALT_BYTES random bytes.  Returns 0 or -EIO. */
int scram_salt(uint8_t salt[SCRAM_SALT_BYTES]);

/* Writes the verifier of password (len bytes) with salt (saltlen bytes,
 * 1..64) for mechanism ("SCRAM-SHA-256" or "SCRAM-SHA-512") into out.
 * Returns 0, -EINVAL (an unknown mechanism, 0 iterations, a bad salt
 * length, out too small) or -EIO (OpenSSL failed).  Intermediate secrets
 * are wiped. */
int scram_verifier_make(const char *mechanism, const char *password, size_t len,
			const uint8_t *salt, size_t saltlen, uint32_t iterations, char *out,
			size_t outlen);

#endif /* RMQ_TOOLS_SCRAM_VERIFIER_H */
