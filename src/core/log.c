/* SPDX-License-Identifier: Apache-2.0 */
/* log.c - the levelled logger (see log.h). */
#include "core/log.h"

#include "core/assert.h"
#include "core/error.h"

#include <stdarg.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <time.h>
#include <unistd.h>

static _Atomic int rmq_log_level_cur = RMQ_LOG_INFO;
static _Atomic int rmq_log_fd = 2;
static _Thread_local int rmq_log_shard = -1;

static const char *const rmq_log_names[] = {
	[RMQ_LOG_DEBUG] = "debug",
	[RMQ_LOG_INFO] = "info",
	[RMQ_LOG_WARN] = "warn",
	[RMQ_LOG_ERROR] = "error",
	[RMQ_LOG_OFF] = "off",
};

static const char *const rmq_log_tags[] = {
	[RMQ_LOG_DEBUG] = "DEBUG",
	[RMQ_LOG_INFO] = "INFO ",
	[RMQ_LOG_WARN] = "WARN ",
	[RMQ_LOG_ERROR] = "ERROR",
	[RMQ_LOG_OFF] = "OFF  ",
};

void rmq_log_set_level(enum rmq_log_level level)
{
	atomic_store_explicit(&rmq_log_level_cur, (int)level, memory_order_relaxed);
}

enum rmq_log_level rmq_log_get_level(void)
{
	return (enum rmq_log_level)atomic_load_explicit(&rmq_log_level_cur,
							 memory_order_relaxed);
}

int rmq_log_parse_level(const char *name)
{
	for (int i = 0; i <= RMQ_LOG_OFF; i++) {
		if (strcasecmp(name, rmq_log_names[i]) == 0)
			return i;
	}
	return RMQ_EBADFLAG;
}

void rmq_log_set_shard(int shard_id)
{
	rmq_log_shard = shard_id;
}

void rmq_log_set_fd(int fd)
{
	atomic_store_explicit(&rmq_log_fd, fd, memory_order_relaxed);
}

void rmq_log_write(enum rmq_log_level level, const char *fmt, ...)
{
	char line[RMQ_LOG_LINE_MAX];
	struct timespec ts;
	struct tm tm;
	size_t n;
	int w;

	if (level < RMQ_LOG_DEBUG || level >= RMQ_LOG_OFF)
		return;
	clock_gettime(CLOCK_REALTIME, &ts);
	gmtime_r(&ts.tv_sec, &tm);
	n = strftime(line, sizeof(line), "%Y-%m-%dT%H:%M:%S", &tm);
	if (rmq_log_shard >= 0)
		w = snprintf(line + n, sizeof(line) - n, ".%06ldZ %s [s%d] ",
			     ts.tv_nsec / 1000, rmq_log_tags[level], rmq_log_shard);
	else
		w = snprintf(line + n, sizeof(line) - n, ".%06ldZ %s [--] ",
			     ts.tv_nsec / 1000, rmq_log_tags[level]);
	RMQ_ASSERT(w > 0);
	n += (size_t)w;

	va_list ap;
	va_start(ap, fmt);
	w = vsnprintf(line + n, sizeof(line) - n - 1, fmt, ap);
	va_end(ap);
	if (w < 0)
		w = 0;
	if ((size_t)w >= sizeof(line) - n - 1) {
		/* Cut: mark it so a reader knows the line was longer. */
		n = sizeof(line) - 5;
		memcpy(line + n, "...", 3);
		n += 3;
	} else {
		n += (size_t)w;
	}
	line[n++] = '\n';

	int fd = atomic_load_explicit(&rmq_log_fd, memory_order_relaxed);
	const char *p = line;
	while (n > 0) {
		ssize_t k = write(fd, p, n);
		if (k <= 0)
			break; /* Nowhere to report a failing log sink. */
		p += k;
		n -= (size_t)k;
	}
}

_Noreturn void rmq_assert_fail(const char *cond, const char *file, int line,
			       const char *func)
{
	rmq_log_write(RMQ_LOG_ERROR, "assertion failed: %s (%s:%d, %s)", cond,
		      file, line, func);
	abort();
}
