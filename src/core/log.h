/* SPDX-License-Identifier: Apache-2.0 */
/*
 * log.h - the levelled logger.
 *
 * One line per event on stderr:
 *
 *   2026-11-27T14:30:01.123456Z INFO  [s1] storage: recovered partition t-0 ...
 *   ^ UTC time, microseconds         ^ shard id ("--" outside a shard thread)
 *
 * Each line is formatted into a stack buffer and written with one write(2),
 * so lines from different shards never interleave.  Lines longer than
 * RMQ_LOG_LINE_MAX are cut and end in "...".  The level threshold is
 * process-wide and read without locking (a relaxed atomic).
 */
#ifndef RMQ_CORE_LOG_H
#define RMQ_CORE_LOG_H

enum rmq_log_level {
	RMQ_LOG_DEBUG = 0,
	RMQ_LOG_INFO = 1,
	RMQ_LOG_WARN = 2,
	RMQ_LOG_ERROR = 3,
	RMQ_LOG_OFF = 4,
};

#define RMQ_LOG_LINE_MAX 1024

/* Sets the threshold: lines below it are dropped.  Default RMQ_LOG_INFO. */
void rmq_log_set_level(enum rmq_log_level level);
enum rmq_log_level rmq_log_get_level(void);

/* Parses "debug", "info", "warn", "error" or "off".
 * Returns the level, or RMQ_EBADFLAG. */
int rmq_log_parse_level(const char *name);

/* Names the calling thread's shard in its log lines; -1 = none. */
void rmq_log_set_shard(int shard_id);

/* Redirects output to fd (default 2).  For tests. */
void rmq_log_set_fd(int fd);

void rmq_log_write(enum rmq_log_level level, const char *fmt, ...)
	__attribute__((format(printf, 2, 3)));

#define rmq_log_enabled(level) ((level) >= rmq_log_get_level())

#define RMQ_LOG(level, ...)                                                    \
	do {                                                                   \
		if (rmq_log_enabled(level))                                    \
			rmq_log_write(level, __VA_ARGS__);                     \
	} while (0)

#define rmq_debug(...) RMQ_LOG(RMQ_LOG_DEBUG, __VA_ARGS__)
#define rmq_info(...) RMQ_LOG(RMQ_LOG_INFO, __VA_ARGS__)
#define rmq_warn(...) RMQ_LOG(RMQ_LOG_WARN, __VA_ARGS__)
#define rmq_error(...) RMQ_LOG(RMQ_LOG_ERROR, __VA_ARGS__)

#endif /* RMQ_CORE_LOG_H */
