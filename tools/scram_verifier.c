/* SPDX-License-Identifier: Apache-2.0 */
/* scram_verifier.c - a SCRAM verifier from a password (see scram_verifier.h). */
#include "scram_verifier.h"

#include <errno.h>
#include <openssl/crypto.h>
#include <openssl/evp.h>
#include <openssl/hmac.h>
#include <openssl/rand.h>
#include <stdio.h>
#include <string.h>

#define SALT_MAX 64

int scram_salt(uint8_t salt[SCRAM_SALT_BYTES])
{
	return RAND_bytes(salt, SCRAM_SALT_BYTES) == 1 ? 0 : -EIO;
}

int scram_verifier_make(const char *mechanism, const char *password, size_t len,
			const uint8_t *salt, size_t saltlen, uint32_t iterations, char *out,
			size_t outlen)
{
	const EVP_MD *md = strcmp(mechanism, "SCRAM-SHA-256") == 0 ? EVP_sha256()
			   : strcmp(mechanism, "SCRAM-SHA-512") == 0 ? EVP_sha512()
								     : NULL;
	if (!md || iterations == 0 || iterations > INT32_MAX || len > (size_t)INT32_MAX ||
	    saltlen == 0 || saltlen > SALT_MAX)
		return -EINVAL;
	unsigned char salted[EVP_MAX_MD_SIZE], client[EVP_MAX_MD_SIZE];
	unsigned char stored[EVP_MAX_MD_SIZE], server[EVP_MAX_MD_SIZE];
	/* Base64 of each field: 4 bytes per 3, and a NUL. */
	char b_salt[4 * ((SALT_MAX + 2) / 3) + 1], b_stored[4 * ((EVP_MAX_MD_SIZE + 2) / 3) + 1],
		b_server[sizeof(b_stored)];
	unsigned n = (unsigned)EVP_MD_get_size(md), ln = 0, sn = 0;
	int rc = -EIO;
	if (PKCS5_PBKDF2_HMAC(password, (int)len, salt, (int)saltlen, (int)iterations, md, (int)n,
			      salted) != 1 ||
	    !HMAC(md, salted, (int)n, (const unsigned char *)"Client Key", 10, client, &ln) ||
	    EVP_Digest(client, ln, stored, &sn, md, NULL) != 1 ||
	    !HMAC(md, salted, (int)n, (const unsigned char *)"Server Key", 10, server, &ln))
		goto out;
	EVP_EncodeBlock((unsigned char *)b_salt, salt, (int)saltlen);
	EVP_EncodeBlock((unsigned char *)b_stored, stored, (int)sn);
	EVP_EncodeBlock((unsigned char *)b_server, server, (int)ln);
	int w = snprintf(out, outlen, "%s:%u:%s:%s:%s", mechanism, iterations, b_salt, b_stored,
			 b_server);
	rc = w > 0 && (size_t)w < outlen ? 0 : -EINVAL;
out:
	OPENSSL_cleanse(salted, sizeof(salted));
	OPENSSL_cleanse(client, sizeof(client));
	return rc;
}
