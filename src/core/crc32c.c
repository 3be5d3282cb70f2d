/* SPDX-License-Identifier: Apache-2.0 */
/* crc32c.c - CRC-32C through isa-l (see crc32c.h). */
#include "core/crc32c.h"

#include <isa-l/crc.h>
#include <limits.h>

uint32_t rmq_crc32c(uint32_t crc, const void *buf, size_t len)
{
	/* isa-l keeps the CRC register un-inverted between calls and takes an
	 * int length, so undo the final XOR, feed at most INT_MAX at a time,
	 * and redo it. */
	unsigned char *p = (unsigned char *)buf;
	uint32_t reg = ~crc;

	while (len > 0) {
		int n = len > (size_t)INT_MAX ? INT_MAX : (int)len;
		reg = crc32_iscsi(p, n, reg);
		p += n;
		len -= (size_t)n;
	}
	return ~reg;
}
