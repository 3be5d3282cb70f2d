/* SPDX-License-Identifier: Apache-2.0 */
#include "core/crc32c.h"

#include <criterion/criterion.h>
#include <string.h>

Test(crc32c, check_value)
{
	cr_assert_eq(rmq_crc32c(0, "123456789", 9), 0xE3069283u);
	cr_assert_eq(rmq_crc32c(0, "", 0), 0u);
}

/* RFC 3720 B.4 test vectors (iSCSI uses CRC-32C). */
Test(crc32c, rfc3720_vectors)
{
	unsigned char buf[32];

	memset(buf, 0, sizeof(buf));
	cr_assert_eq(rmq_crc32c(0, buf, 32), 0x8A9136AAu);
	memset(buf, 0xff, sizeof(buf));
	cr_assert_eq(rmq_crc32c(0, buf, 32), 0x62A8AB43u);
	for (int i = 0; i < 32; i++)
		buf[i] = (unsigned char)i;
	cr_assert_eq(rmq_crc32c(0, buf, 32), 0x46DD794Eu);
}

Test(crc32c, chaining_equals_one_pass)
{
	unsigned char buf[4096];
	for (size_t i = 0; i < sizeof(buf); i++)
		buf[i] = (unsigned char)(i * 31 + 7);
	uint32_t whole = rmq_crc32c(0, buf, sizeof(buf));
	for (size_t cut = 0; cut <= sizeof(buf); cut += 257) {
		uint32_t c = rmq_crc32c(0, buf, cut);
		c = rmq_crc32c(c, buf + cut, sizeof(buf) - cut);
		cr_assert_eq(c, whole, "split at %zu", cut);
	}
}
