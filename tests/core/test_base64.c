/* SPDX-License-Identifier: Apache-2.0 */
/* test_base64.c - strict base64 (base64.h): RFC 4648's vectors, both
 * alphabets, and every non-canonical text refused. */
#include "core/base64.h"

#include "core/error.h"

#include <criterion/criterion.h>
#include <string.h>

Test(base64, rfc4648_vectors)
{
	static const char *in[] = {"", "f", "fo", "foo", "foob", "fooba", "foobar"};
	static const char *std[] = {"", "Zg==", "Zm8=", "Zm9v", "Zm9vYg==", "Zm9vYmE=", "Zm9vYmFy"};
	static const char *url[] = {"", "Zg", "Zm8", "Zm9v", "Zm9vYg", "Zm9vYmE", "Zm9vYmFy"};
	for (size_t i = 0; i < 7; i++) {
		char t[16];
		uint8_t b[16];
		size_t n = strlen(in[i]);
		cr_assert_eq(rmq_b64_encoded_len(RMQ_B64_STD, n), strlen(std[i]));
		cr_assert_eq(rmq_b64_encoded_len(RMQ_B64_URL, n), strlen(url[i]));
		rmq_b64_encode(RMQ_B64_STD, (const uint8_t *)in[i], n, t);
		cr_assert_str_eq(t, std[i]);
		rmq_b64_encode(RMQ_B64_URL, (const uint8_t *)in[i], n, t);
		cr_assert_str_eq(t, url[i]);
		cr_assert_eq(rmq_b64_decode(RMQ_B64_STD, std[i], strlen(std[i]), b, sizeof(b)), (int)n);
		cr_assert_eq(memcmp(b, in[i], n), 0);
		cr_assert_eq(rmq_b64_decode(RMQ_B64_URL, url[i], strlen(url[i]), b, sizeof(b)), (int)n);
		cr_assert_eq(memcmp(b, in[i], n), 0);
	}
}

Test(base64, alphabets_and_bounds)
{
	const uint8_t x[] = {0xfb, 0xff, 0xbf};
	char t[8];
	uint8_t b[8];
	rmq_b64_encode(RMQ_B64_STD, x, 3, t);
	cr_assert_str_eq(t, "+/+/");
	rmq_b64_encode(RMQ_B64_URL, x, 3, t);
	cr_assert_str_eq(t, "-_-_");
	cr_assert_eq(rmq_b64_decode(RMQ_B64_STD, "-_-_", 4, b, sizeof(b)), RMQ_ECORRUPT);
	cr_assert_eq(rmq_b64_decode(RMQ_B64_URL, "+/+/", 4, b, sizeof(b)), RMQ_ECORRUPT);
	cr_assert_eq(rmq_b64_decode(RMQ_B64_STD, "Zm9vYmFy", 8, b, 5), RMQ_ETOOBIG);
	cr_assert_eq(rmq_b64_decode(RMQ_B64_STD, "Zm9vYmFy", 8, b, 6), 6);
}

Test(base64, non_canonical_texts_are_refused)
{
	uint8_t b[16];
	const char *std_bad[] = {"Zg=", "Zg", "Z===", "Zh==", "Zm9=", "Zg==Zg==", "Zm 9v",
				 "Zm9v\n", "=Zm9", "Zm=v", "Z", "Zm9vY"};
	for (size_t i = 0; i < sizeof(std_bad) / sizeof(std_bad[0]); i++)
		cr_assert_eq(rmq_b64_decode(RMQ_B64_STD, std_bad[i], strlen(std_bad[i]), b, sizeof(b)),
			     RMQ_ECORRUPT, "'%s'", std_bad[i]);
	const char *url_bad[] = {"Zg==", "Zh", "Z", "Zm9vY", "Zm9", "Zm+v"};
	for (size_t i = 0; i < sizeof(url_bad) / sizeof(url_bad[0]); i++)
		cr_assert_eq(rmq_b64_decode(RMQ_B64_URL, url_bad[i], strlen(url_bad[i]), b, sizeof(b)),
			     RMQ_ECORRUPT, "'%s'", url_bad[i]);
	/* "Zm9" sets unused bits; "fo" is "Zm8". */
	cr_assert_eq(rmq_b64_decode(RMQ_B64_URL, "Zm8", 3, b, sizeof(b)), 2);
}
