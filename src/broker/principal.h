/* SPDX-License-Identifier: Apache-2.0 */
/*
 * principal.h - what a principal (an authenticated user name) may be.
 *
 * One rule for every place a name enters: a SCRAM or PLAIN user name, the
 * principal inside a session token, and later ACL entries and
 * `rmq user add`.  A principal is 1..RMQ_PRINCIPAL_MAX bytes of valid
 * UTF-8 (no overlong forms, no surrogates, nothing above U+10FFFF) without
 * control characters (U+0000..U+001F, U+007F, U+0080..U+009F), so it can
 * be printed in a log line or an error message as it is.
 */
#ifndef RMQ_BROKER_PRINCIPAL_H
#define RMQ_BROKER_PRINCIPAL_H

#include <stddef.h>

#define RMQ_PRINCIPAL_MAX 255

/* Returns 0 when name[0..len) is a valid principal, -EINVAL when not. */
int rmq_principal_check(const char *name, size_t len);

#endif /* RMQ_BROKER_PRINCIPAL_H */
