/* SPDX-License-Identifier: Apache-2.0 */
/*
 * crc32c.h - CRC-32C (Castagnoli), the checksum of record batches.
 *
 * The standard CRC-32C: reflected polynomial 0x82F63B78, initial value
 * 0xFFFFFFFF, final XOR 0xFFFFFFFF; rmq_crc32c(0, "123456789", 9) is
 * 0xE3069283.  Computed with isa-l's SIMD crc32_iscsi().
 *
 * Chaining works like zlib's crc32(): pass the previous result to continue,
 * so rmq_crc32c(rmq_crc32c(0, a, n), b, m) is the CRC of a followed by b.
 */
#ifndef RMQ_CORE_CRC32C_H
#define RMQ_CORE_CRC32C_H

#include <stddef.h>
#include <stdint.h>

uint32_t rmq_crc32c(uint32_t crc, const void *buf, size_t len);

#endif /* RMQ_CORE_CRC32C_H */
