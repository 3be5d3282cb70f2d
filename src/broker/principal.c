/* SPDX-License-Identifier: Apache-2.0 */
/* principal.c - the rule for principal names (principal.h). */
#include "broker/principal.h"

#include <errno.h>
#include <stdint.h>

int rmq_principal_check(const char *name, size_t len)
{
	const uint8_t *p = (const uint8_t *)name;
	if (len == 0 || len > RMQ_PRINCIPAL_MAX)
		return -EINVAL;
	for (size_t i = 0; i < len;) {
		uint32_t c = p[i];
		size_t extra;
		uint32_t min;
		if (c < 0x80) {
			extra = 0;
			min = 0;
		} else if ((c & 0xE0) == 0xC0) {
			extra = 1;
			min = 0x80;
			c &= 0x1F;
		} else if ((c & 0xF0) == 0xE0) {
			extra = 2;
			min = 0x800;
			c &= 0x0F;
		} else if ((c & 0xF8) == 0xF0) {
			extra = 3;
			min = 0x10000;
			c &= 0x07;
		} else {
			return -EINVAL; /* a continuation byte first, or 0xF8..0xFF */
		}
		if (extra > len - i - 1)
			return -EINVAL; /* truncated sequence */
		for (size_t k = 1; k <= extra; k++) {
			if ((p[i + k] & 0xC0) != 0x80)
				return -EINVAL;
			c = c << 6 | (p[i + k] & 0x3F);
		}
		if (c < min || c > 0x10FFFF || (c >= 0xD800 && c <= 0xDFFF))
			return -EINVAL; /* overlong, out of range, surrogate */
		if (c < 0x20 || (c >= 0x7F && c <= 0x9F))
			return -EINVAL; /* control character */
		i += extra + 1;
	}
	return 0;
}
