/* SPDX-License-Identifier: Apache-2.0 */
/*
 * bench_test_util.h - child processes for the rmq-bench tests: run a
 * program with a time limit and capture its output, start an rmqd on an
 * ephemeral port (its stderr line "serving on 127.0.0.1:<port>" names the
 * port) and stop it by PID, read numbers out of the JSON summary.
 */
#ifndef RMQ_TESTS_BENCH_TEST_UTIL_H
#define RMQ_TESTS_BENCH_TEST_UTIL_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>

struct bt_proc {
	pid_t pid;
};

/*
 * Runs argv (argv[0] a path) with stdout and stderr captured (each cut to
 * its buffer, NUL-terminated), killing it after timeout_s.  Returns its
 * exit status, 128 + signal when killed, or -1 when it could not start.
 */
int bt_run(const char *const *argv, int timeout_s, char *out, size_t outlen, char *err,
	   size_t errlen, struct bt_proc *p);

struct bt_rmqd {
	pid_t pid;
	uint16_t port;
	char dir[256];     /* temporary: data dir and log */
	char target[64];   /* "rmq://127.0.0.1:<port>" */
};

/* Starts RMQD_PATH --listen 127.0.0.1:0 --data-dir <tmp> --cores 2 and
 * waits (15 s at most) for its port.  Returns 0 or -1 (with a message on
 * stderr). */
int bt_rmqd_start(struct bt_rmqd *d);
/* SIGTERM by PID, 10 s to exit, then SIGKILL; removes the directory.
 * Returns the exit status (0 for a clean stop). */
int bt_rmqd_stop(struct bt_rmqd *d);

/* The number after "\"key\":" at its first occurrence in json at or after
 * `after` (NULL = the start); false when absent. */
bool bt_json_num(const char *json, const char *after, const char *key, double *out);

#endif
