/* SPDX-License-Identifier: Apache-2.0 */
/*
 * fuzz_token - session token parsing (src/broker/token.c).
 *
 * Input: the token text as it would follow "authorization: Bearer ".
 * It is checked at a fixed time against the harness's secret.
 *
 * Besides "no crash, no sanitizer report", each input checks properties:
 * - a token that checks has a valid principal, expires after it was
 *   issued and after the time of the check, and is the only text of its
 *   fields: rmq_token_make with them gives the input back byte for byte;
 * - the same text is refused as forged (-EKEYREJECTED) or malformed under
 *   another secret, never accepted;
 * - a refusal is one of the documented errors.
 *
 * The seeds (tests/fuzz/corpus/fuzz_token) are tokens signed with this
 * harness's secret, so mutations start from texts that check.
 *
 * Reproduce: build/fuzz/tests/fuzz/fuzz_token <input file>
 */
#include "broker/token.h"

#include "core/error.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* Both 32 bytes; tests/fuzz/make_corpus.py signs the seeds with the first. */
static const uint8_t secret[32] = "fuzz_token's cluster secret....";
static const uint8_t other[32] = "another cluster's secret.......";
#define NOW_MS 1765152000000ull

static void fail(const char *what)
{
	fprintf(stderr, "fuzz_token: %s\n", what);
	abort();
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	const char *text = (const char *)data;
	struct rmq_token tok;
	int rc = rmq_token_check(secret, sizeof(secret), text, size, NOW_MS, &tok);
	if (rc != 0 && rc != RMQ_ECORRUPT && rc != -EKEYREJECTED && rc != -EKEYEXPIRED)
		fail("an undocumented error");
	int orc = rmq_token_check(other, sizeof(other), text, size, NOW_MS, &tok);
	if (orc == 0 || orc == -EKEYEXPIRED)
		fail("a token taken under another secret");
	if (rc != 0)
		return 0;
	rc = rmq_token_check(secret, sizeof(secret), text, size, NOW_MS, &tok);
	if (rc != 0)
		fail("a check that does not repeat");
	if (rmq_principal_check(tok.principal, tok.principal_len) ||
	    strlen(tok.principal) != tok.principal_len)
		fail("a token with a bad principal");
	if (tok.expires_ms <= tok.issued_ms || tok.expires_ms <= NOW_MS)
		fail("a token past its expiry");
	char again[RMQ_TOKEN_TEXT_MAX + 1];
	int n = rmq_token_make(secret, sizeof(secret), tok.principal, tok.principal_len,
			       tok.issued_ms, tok.expires_ms - tok.issued_ms, tok.id, again,
			       sizeof(again));
	if (n < 0 || (size_t)n != size || memcmp(again, text, size) != 0)
		fail("a token that is not the only text of its fields");
	return 0;
}
