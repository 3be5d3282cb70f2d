/* SPDX-License-Identifier: Apache-2.0 */
/*
 * flags.h - strict command-line parsing for rmqd, rmq-bench and the tools.
 *
 * Value syntax (no spaces, no signs, no trailing junk; overflow refused):
 *
 *   kind       examples                      meaning
 *   size       4096  64KiB  1MiB  2GiB  1TiB bytes; IEC units are powers of
 *              10kB  5MB  1GB                1024, SI units powers of 1000
 *   duration   500ms  10s  1m30s  2h  7d     a sum of number+unit terms,
 *              250us  100ns  0s              units ns us ms s m h d; a bare
 *                                            number is refused (ambiguous)
 *   uint       0  42  1000000                decimal, within [min, max]
 *   bool       true false 1 0 yes no on off  "--name" alone means true
 *   string     anything                      "--name=" gives ""
 *   choice     one of a |-separated list     e.g. "always|never"
 *
 * A table of struct rmq_flag describes a program's flags; rmq_flags_parse()
 * accepts "--name value" and "--name=value", applies each flag's default
 * first, and refuses unknown flags, missing values and bad values with a
 * message naming the flag, the value and what was expected.  "--" ends the
 * flags; the rest are positional arguments.
 */
#ifndef RMQ_CORE_FLAGS_H
#define RMQ_CORE_FLAGS_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>

/* Each parser returns 0, or RMQ_EBADFLAG with a one-line reason written to
 * err (capacity errlen, always NUL-terminated when errlen > 0). */
int rmq_parse_size(const char *s, uint64_t *out_bytes, char *err, size_t errlen);
int rmq_parse_duration(const char *s, uint64_t *out_ns, char *err, size_t errlen);
int rmq_parse_uint(const char *s, uint64_t min, uint64_t max, uint64_t *out,
		   char *err, size_t errlen);
int rmq_parse_bool(const char *s, bool *out, char *err, size_t errlen);

/* Formats a size ("64MiB" when exact, else bytes) and a duration ("1m30s",
 * "500ms") the way the parsers read them.  Returns buf. */
char *rmq_format_size(uint64_t bytes, char *buf, size_t buflen);
char *rmq_format_duration(uint64_t ns, char *buf, size_t buflen);

enum rmq_flag_kind {
	RMQ_FLAG_SIZE,     /* uint64_t *, bytes */
	RMQ_FLAG_DURATION, /* uint64_t *, nanoseconds */
	RMQ_FLAG_UINT,     /* uint64_t * */
	RMQ_FLAG_BOOL,     /* bool * */
	RMQ_FLAG_STRING,   /* const char ** (points into argv or def) */
	RMQ_FLAG_CHOICE,   /* const char ** (points into argv or def) */
};

struct rmq_flag {
	const char *name;  /* without the leading "--" */
	enum rmq_flag_kind kind;
	void *dst;
	const char *def;   /* default, parsed like a command-line value; NULL = none */
	const char *help;  /* one line, ends without a period */
	uint64_t min;      /* RMQ_FLAG_UINT/SIZE/DURATION bounds (inclusive) */
	uint64_t max;      /* 0 = no upper bound */
	const char *choices; /* RMQ_FLAG_CHOICE: "a|b|c"; a choice may end in ':'
			      * to take a suffix, e.g. "interval:" accepts
			      * "interval:10ms" */
};

/*
 * Parses argv[1..argc-1] against flags[0..nflags-1].  Positional arguments
 * are moved, in order, to the front of argv starting at argv[1], and their
 * count is returned through *npos.  "--help" returns 1 without parsing
 * further (the caller prints usage and exits 0).
 * Returns 0, 1 for --help, or RMQ_EBADFLAG with the reason in err.
 */
int rmq_flags_parse(int argc, char **argv, const struct rmq_flag *flags,
		    size_t nflags, int *npos, char *err, size_t errlen);

/* Prints one line per flag: "  --name=<kind>  help (default: def)". */
void rmq_flags_usage(FILE *out, const struct rmq_flag *flags, size_t nflags);

#endif /* RMQ_CORE_FLAGS_H */
