/* SPDX-License-Identifier: Apache-2.0 */
/* util.h - small macros every module uses. */
#ifndef RMQ_CORE_UTIL_H
#define RMQ_CORE_UTIL_H

#include <stddef.h>

/* The struct that embeds member `member` at address ptr (the kernel's
 * container_of): how a completion finds the object it belongs to. */
#define RMQ_CONTAINER_OF(ptr, type, member) ((type *)((char *)(ptr) - offsetof(type, member)))

#define RMQ_ARRAY_SIZE(a) (sizeof(a) / sizeof((a)[0]))

#endif /* RMQ_CORE_UTIL_H */
