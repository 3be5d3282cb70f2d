/* SPDX-License-Identifier: Apache-2.0 */
/*
 * error.h - the one error convention of rmq.
 *
 * Every function that can fail returns 0 (or a non-negative count) on
 * success and a negative error on failure, as liburing does:
 *
 *   -1 .. -4095      a negated errno value (-ENOMEM, -EIO, a cqe->res, ...)
 *   <= -4097         a project error from enum rmq_err below
 *
 * Never read the global errno after another call has run: capture it at
 * once as -errno, or use the cqe->res that io_uring already negated.
 * rmq_strerror() names either kind.
 */
#ifndef RMQ_CORE_ERROR_H
#define RMQ_CORE_ERROR_H

/* X-macro: name, value, message.  Values never change once released:
 * they appear in logs and tests. */
#define RMQ_ERRORS(X)                                                          \
	X(RMQ_ECORRUPT, -4097, "data is corrupt (bad framing or length)")      \
	X(RMQ_ECRC, -4098, "checksum mismatch")                                \
	X(RMQ_ETORN, -4099, "torn write: entry ends past the end of data")    \
	X(RMQ_ERANGE, -4100, "offset out of range")                            \
	X(RMQ_ENOTFOUND, -4101, "not found")                                   \
	X(RMQ_EFULL, -4102, "pool or queue is full")                           \
	X(RMQ_ETOOBIG, -4103, "size exceeds the configured limit")            \
	X(RMQ_EPROTO, -4104, "protocol violation")                             \
	X(RMQ_ECODEC, -4105, "compression codec failed or input is malformed") \
	X(RMQ_EUNSUPPORTED, -4106, "not supported")                            \
	X(RMQ_EFENCED, -4107, "segment is fenced after corruption")           \
	X(RMQ_ESTATE, -4108, "operation not valid in the current state")      \
	X(RMQ_EEXIST, -4109, "already exists")                                 \
	X(RMQ_EBADFLAG, -4110, "invalid command-line flag or value")          \
	X(RMQ_ECLOSED, -4111, "closed or shutting down")

enum rmq_err {
#define RMQ_ERR_ENUM(name, value, msg) name = (value),
	RMQ_ERRORS(RMQ_ERR_ENUM)
#undef RMQ_ERR_ENUM
};

/* The lowest errno magnitude rmq reserves for itself; -errno never
 * reaches it (Linux errno values are below 4096). */
#define RMQ_ERR_BASE (-4096)

/*
 * Describes err: a negated errno, an rmq_err, or 0 ("success").
 * Returns a static string, valid for the life of the process; never NULL.
 * Thread-safe (does not use strerror()'s shared buffer).
 */
const char *rmq_strerror(int err);

/* Returns the symbolic name ("RMQ_ECRC", "ENOENT", ...) of err, for logs
 * and test messages; "UNKNOWN" when unrecognised.  Static string. */
const char *rmq_errname(int err);

#endif /* RMQ_CORE_ERROR_H */
