/* SPDX-License-Identifier: Apache-2.0 */
/*
 * test_scram_verifier.c - tools/scram_verifier.c against verifiers computed
 * independently by Python's hashlib.pbkdf2_hmac and hmac (RFC 5802:
 * StoredKey = H(HMAC(SaltedPassword, "Client Key")), ServerKey =
 * HMAC(SaltedPassword, "Server Key")), and its refusals.
 */
#include "scram_verifier.h"

#include <criterion/criterion.h>
#include <errno.h>
#include <string.h>

Test(scram_verifier, sha256_matches_an_independent_computation)
{
	char v[SCRAM_VERIFIER_MAX];
	cr_assert_eq(scram_verifier_make("SCRAM-SHA-256", "pencil", 6,
					 (const uint8_t *)"0123456789abcdef", 16, 4096, v, sizeof(v)), 0);
	cr_assert_str_eq(v, "SCRAM-SHA-256:4096:MDEyMzQ1Njc4OWFiY2RlZg==:"
			    "nQpbZ77WudtqufPwikHXGRt6g2QJ4zns8bZLw273DRM=:"
			    "jn2amWP1q1h+jgjy0YTO14S6/F02SV7taipOeB7ef20=");
}

Test(scram_verifier, sha512_matches_an_independent_computation)
{
	char v[SCRAM_VERIFIER_MAX];
	cr_assert_eq(scram_verifier_make("SCRAM-SHA-512", "pencil", 6, (const uint8_t *)"saltsalt", 8,
					 10000, v, sizeof(v)), 0);
	cr_assert_str_eq(v, "SCRAM-SHA-512:10000:c2FsdHNhbHQ=:"
			    "IdAHCcWLSWTnlF6HS/TsqdRm+8ixXunKDumKmsr0M4w4mQkwSm2sd7EpE6S8crMOa6HysmIm9u2eEq1/INErvQ==:"
			    "ik8tMB4byIISsaQvbt2zrpXJSzaUlo4PV2p3dQ+/Ak/9KHfjlOA/lcWaqI4yv/x0HoLFKJY4VEvFBqnv2CdStA==");
}

Test(scram_verifier, refusals)
{
	char v[SCRAM_VERIFIER_MAX], small[40];
	const uint8_t *s = (const uint8_t *)"salt";
	cr_assert_eq(scram_verifier_make("SCRAM-SHA-1", "p", 1, s, 4, 4096, v, sizeof(v)), -EINVAL);
	cr_assert_eq(scram_verifier_make("SCRAM-SHA-256", "p", 1, s, 4, 0, v, sizeof(v)), -EINVAL);
	cr_assert_eq(scram_verifier_make("SCRAM-SHA-256", "p", 1, s, 0, 4096, v, sizeof(v)), -EINVAL);
	cr_assert_eq(scram_verifier_make("SCRAM-SHA-256", "p", 1, s, 4, 4096, small, sizeof(small)),
		     -EINVAL);
	uint8_t a[SCRAM_SALT_BYTES], b[SCRAM_SALT_BYTES];
	cr_assert_eq(scram_salt(a), 0);
	cr_assert_eq(scram_salt(b), 0);
	cr_assert_neq(memcmp(a, b, sizeof(a)), 0);
}
