/* SPDX-License-Identifier: Apache-2.0 */
#include "core/error.h"
#include "core/log.h"

#include <criterion/criterion.h>
#include <regex.h>
#include <string.h>
#include <unistd.h>

static size_t capture(char *buf, size_t cap, void (*emit)(void))
{
	int fds[2];
	cr_assert_eq(pipe(fds), 0);
	rmq_log_set_fd(fds[1]);
	emit();
	rmq_log_set_fd(2);
	close(fds[1]);
	ssize_t n = read(fds[0], buf, cap - 1);
	close(fds[0]);
	cr_assert_geq(n, 0);
	buf[n] = '\0';
	return (size_t)n;
}

static void emit_info_in_shard(void)
{
	rmq_log_set_level(RMQ_LOG_INFO);
	rmq_log_set_shard(3);
	rmq_info("hello %d", 42);
	rmq_debug("dropped below threshold");
	rmq_log_set_shard(-1);
	rmq_warn("outside");
}

Test(log, line_format_level_and_shard)
{
	char buf[4096];
	capture(buf, sizeof(buf), emit_info_in_shard);
	regex_t re;
	cr_assert_eq(regcomp(&re,
			     "^[0-9]{4}-[0-9]{2}-[0-9]{2}T[0-9]{2}:[0-9]{2}:[0-9]{2}\\.[0-9]{6}Z INFO  \\[s3\\] hello 42\n"
			     "[0-9T:.Z-]+ WARN  \\[--\\] outside\n$",
			     REG_EXTENDED),
		     0);
	cr_assert_eq(regexec(&re, buf, 0, NULL, 0), 0, "unexpected log output: %s", buf);
	regfree(&re);
}

static void emit_long(void)
{
	char big[3000];
	memset(big, 'x', sizeof(big) - 1);
	big[sizeof(big) - 1] = '\0';
	rmq_log_set_level(RMQ_LOG_INFO);
	rmq_info("%s", big);
}

Test(log, long_lines_are_cut_and_marked)
{
	char buf[4096];
	size_t n = capture(buf, sizeof(buf), emit_long);
	cr_assert_eq(n, RMQ_LOG_LINE_MAX - 1);
	cr_assert_eq(memcmp(buf + n - 4, "...\n", 4), 0);
}

Test(log, parse_level)
{
	cr_assert_eq(rmq_log_parse_level("debug"), RMQ_LOG_DEBUG);
	cr_assert_eq(rmq_log_parse_level("WARN"), RMQ_LOG_WARN);
	cr_assert_eq(rmq_log_parse_level("off"), RMQ_LOG_OFF);
	cr_assert_eq(rmq_log_parse_level("verbose"), RMQ_EBADFLAG);
}
