/* SPDX-License-Identifier: Apache-2.0 */
/*
 * assert.h - the two assertion tiers (after haproxy's BUG_ON / BUG_ON_HOT).
 *
 *   RMQ_ASSERT(cond)   always compiled in.  For invariants off the hot path,
 *                      where a broken invariant must stop the process
 *                      before it writes bad data.
 *   RMQ_DASSERT(cond)  compiled in debug and sanitizer builds only
 *                      (RMQ_DEBUG defined, or NDEBUG undefined).  For checks
 *                      on the per-record and per-request hot paths.
 *
 * Assertions are for programmer errors only.  Bad input (a malformed frame,
 * a corrupt segment) is an error code, never an assertion.  Keep conditions
 * simple (split compound ones so the failing half is named) and free of side
 * effects: RMQ_DASSERT's condition is not evaluated in release builds.
 */
#ifndef RMQ_CORE_ASSERT_H
#define RMQ_CORE_ASSERT_H

_Noreturn void rmq_assert_fail(const char *cond, const char *file, int line,
			       const char *func);

#define RMQ_LIKELY(x) __builtin_expect(!!(x), 1)
#define RMQ_UNLIKELY(x) __builtin_expect(!!(x), 0)

#define RMQ_ASSERT(cond)                                                       \
	do {                                                                   \
		if (RMQ_UNLIKELY(!(cond)))                                     \
			rmq_assert_fail(#cond, __FILE__, __LINE__, __func__);  \
	} while (0)

#if defined(RMQ_DEBUG) || !defined(NDEBUG)
#define RMQ_DASSERT(cond) RMQ_ASSERT(cond)
#else
#define RMQ_DASSERT(cond) ((void)sizeof(!(cond)))
#endif

#endif /* RMQ_CORE_ASSERT_H */
