/* SPDX-License-Identifier: Apache-2.0 */
/* bench_test_util.c - see bench_test_util.h. */
#include "bench_test_util.h"

#include <errno.h>
#include <fcntl.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/prctl.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

static void sleep_ms(long ms)
{
	struct timespec ts = {ms / 1000, (ms % 1000) * 1000000L};
	nanosleep(&ts, NULL);
}

static size_t read_file(const char *path, char *buf, size_t len)
{
	size_t n = 0;
	FILE *f = fopen(path, "r");
	if (len == 0)
		return 0;
	if (f) {
		n = fread(buf, 1, len - 1, f);
		fclose(f);
	}
	buf[n] = '\0';
	return n;
}

/* Forks argv with stdout and stderr going to files; the child dies with
 * the test process (PR_SET_PDEATHSIG), so a failed test leaves nothing. */
static pid_t spawn(const char *const *argv, const char *out_path, const char *err_path)
{
	pid_t pid = fork();
	if (pid != 0)
		return pid;
	prctl(PR_SET_PDEATHSIG, SIGKILL);
	int o = open(out_path, O_WRONLY | O_CREAT | O_TRUNC, 0644);
	int e = open(err_path, O_WRONLY | O_CREAT | O_TRUNC, 0644);
	int n = open("/dev/null", O_RDONLY);
	if (o < 0 || e < 0 || n < 0)
		_exit(126);
	dup2(n, 0);
	dup2(o, 1);
	dup2(e, 2);
	execv(argv[0], (char *const *)argv);
	_exit(127);
}

/* Waits for pid up to timeout_ms; kills it after.  Returns the status. */
static int wait_for(pid_t pid, long timeout_ms)
{
	int st;
	for (long waited = 0;; waited += 20) {
		pid_t r = waitpid(pid, &st, WNOHANG);
		if (r == pid)
			break;
		if (r < 0)
			return -1;
		if (waited >= timeout_ms) {
			kill(pid, SIGKILL);
			waitpid(pid, &st, 0);
			break;
		}
		sleep_ms(20);
	}
	if (WIFEXITED(st))
		return WEXITSTATUS(st);
	return 128 + WTERMSIG(st);
}

int bt_run(const char *const *argv, int timeout_s, char *out, size_t outlen, char *err,
	   size_t errlen, struct bt_proc *p)
{
	char dir[] = "/tmp/rmq-bt-run-XXXXXX", op[64], ep[64];
	if (!mkdtemp(dir))
		return -1;
	snprintf(op, sizeof(op), "%s/out", dir);
	snprintf(ep, sizeof(ep), "%s/err", dir);
	p->pid = spawn(argv, op, ep);
	if (p->pid < 0)
		return -1;
	int st = wait_for(p->pid, timeout_s * 1000L);
	read_file(op, out, outlen);
	read_file(ep, err, errlen);
	unlink(op);
	unlink(ep);
	rmdir(dir);
	return st;
}

int bt_rmqd_start(struct bt_rmqd *d)
{
	char log[300], data[300], text[65536];
	memset(d, 0, sizeof(*d));
	snprintf(d->dir, sizeof(d->dir), "/tmp/rmq-bt-rmqd-XXXXXX");
	if (!mkdtemp(d->dir))
		return -1;
	snprintf(log, sizeof(log), "%s/rmqd.log", d->dir);
	snprintf(data, sizeof(data), "%s/data", d->dir);
	/* No initial rebalance delay: a --group run forms its generation
	 * as soon as its members are in. */
	const char *argv[] = {RMQD_PATH, "--listen", "127.0.0.1:0", "--data-dir", data,
			      "--cores", "2", "--group-initial-rebalance-delay", "0s", NULL};
	d->pid = spawn(argv, log, log);
	if (d->pid < 0)
		return -1;
	for (int i = 0; i < 750; i++) { /* 15 s */
		read_file(log, text, sizeof(text));
		const char *s = strstr(text, "serving on 127.0.0.1:");
		if (s) {
			d->port = (uint16_t)atoi(s + strlen("serving on 127.0.0.1:"));
			snprintf(d->target, sizeof(d->target), "rmq://127.0.0.1:%u", d->port);
			return d->port ? 0 : -1;
		}
		if (waitpid(d->pid, NULL, WNOHANG) == d->pid) {
			fprintf(stderr, "rmqd exited at start:\n%s\n", text);
			d->pid = 0;
			return -1;
		}
		sleep_ms(20);
	}
	fprintf(stderr, "rmqd did not say where it serves within 15 s:\n%s\n", text);
	bt_rmqd_stop(d);
	return -1;
}

int bt_rmqd_stop(struct bt_rmqd *d)
{
	int st = 0;
	if (d->pid > 0) {
		kill(d->pid, SIGTERM);
		st = wait_for(d->pid, 10000);
		d->pid = 0;
	}
	if (d->dir[0]) {
		char cmd[400];
		snprintf(cmd, sizeof(cmd), "rm -rf '%s'", d->dir);
		if (system(cmd) != 0)
			fprintf(stderr, "cannot remove %s\n", d->dir);
		d->dir[0] = '\0';
	}
	return st;
}

bool bt_json_num(const char *json, const char *after, const char *key, double *out)
{
	char pat[128];
	const char *from = json;
	if (after) {
		from = strstr(json, after);
		if (!from)
			return false;
	}
	snprintf(pat, sizeof(pat), "\"%s\":", key);
	const char *s = strstr(from, pat);
	if (!s)
		return false;
	char *end;
	*out = strtod(s + strlen(pat), &end);
	return end != s + strlen(pat);
}
