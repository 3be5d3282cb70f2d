/* SPDX-License-Identifier: Apache-2.0 */
/*
 * test_io.c - the ring wrapper (src/core/io.c): deferred ops and the fault
 * layer, on a real io_uring ring with NOPs, writes, reads and fsyncs on a
 * temp file.
 */
#include "core/error.h"
#include "core/io.h"

#include <criterion/criterion.h>
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

static struct rmq_io *io;
static char path[64];
static int fd = -1;

static void setup(void)
{
	struct rmq_io_config ic = {.entries = 8, .fixed_buffers = 0};
	int rc = rmq_io_create(&ic, &io);
	if (rc == -ENOSYS || rc == -EPERM)
		cr_skip_test("io_uring unavailable: %s", rmq_strerror(rc));
	cr_assert_eq(rc, 0);
	snprintf(path, sizeof(path), "/tmp/rmq-io-XXXXXX");
	fd = mkstemp(path);
	cr_assert_geq(fd, 0);
}

static void teardown(void)
{
	if (fd >= 0) {
		close(fd);
		unlink(path);
		fd = -1;
	}
	rmq_io_destroy(io);
	io = NULL;
}

TestSuite(io, .init = setup, .fini = teardown, .timeout = 30);

struct rec {
	struct rmq_io_op op;
	int calls;
	int res[8];
	int order;
};

static int seq;

static void on_done(struct rmq_io_op *op, int res, unsigned flags)
{
	struct rec *r = (struct rec *)op;
	(void)flags;
	if (r->calls < 8)
		r->res[r->calls] = res;
	r->calls++;
	r->order = ++seq;
}

/* Runs cycles until every op has been called back at least once. */
static void run_until(struct rec *v, int n)
{
	for (int spins = 0; spins < 1000; spins++) {
		int left = 0;
		for (int i = 0; i < n; i++)
			left += v[i].calls == 0;
		if (!left)
			return;
		cr_assert_geq(rmq_io_wait(io, 50ULL * 1000 * 1000), 0);
	}
	cr_assert_fail("callbacks never ran");
}

Test(io, deferred_ops_run_next_cycle_in_order_with_eagain)
{
	struct rec v[3] = {{.op.cb = on_done}, {.op.cb = on_done}, {.op.cb = on_done}};
	for (int i = 0; i < 3; i++)
		rmq_io_defer(io, &v[i].op);
	cr_assert_eq(v[0].calls, 0, "deferral runs nothing at once");
	/* Nothing in flight: the wait must not sleep its full timeout. */
	cr_assert_eq(rmq_io_wait(io, 0), 3);
	for (int i = 0; i < 3; i++) {
		cr_assert_eq(v[i].calls, 1);
		cr_assert_eq(v[i].res[0], -EAGAIN);
	}
	cr_assert(v[0].order < v[1].order && v[1].order < v[2].order, "FIFO");
}

/* A callback that defers again waits for the next dispatch: one retry per
 * cycle, never a loop inside one. */
static void defer_again(struct rmq_io_op *op, int res, unsigned flags)
{
	struct rec *r = (struct rec *)op;
	on_done(op, res, flags);
	if (r->calls < 5)
		rmq_io_defer(io, op);
}

Test(io, redeferral_waits_for_the_next_cycle)
{
	struct rec r = {.op.cb = defer_again};
	rmq_io_defer(io, &r.op);
	for (int cycle = 1; cycle <= 5; cycle++) {
		cr_assert_geq(rmq_io_poll(io), 1);
		cr_assert_eq(r.calls, cycle);
	}
	cr_assert_eq(rmq_io_poll(io), 0);
}

Test(io, sqe_rule_refuses_every_nth)
{
	struct rmq_io_fault_rule rule = {.kind = RMQ_IO_FAULT_SQE, .every = 3, .skip = 1, .count = 2};
	cr_assert_eq(rmq_io_fault_arm(io, &rule, 1, 1), 0);
	int refused = 0;
	struct rec v[10];
	memset(v, 0, sizeof(v));
	for (int i = 0; i < 10; i++) {
		v[i].op.cb = on_done;
		struct io_uring_sqe *sqe = rmq_io_sqe(io, &v[i].op);
		if (!sqe) {
			refused |= 1 << i;
			rmq_io_defer(io, &v[i].op);
			continue;
		}
		io_uring_prep_nop(sqe);
	}
	/* Matches 1..10; the first skipped; picks at 4 and 7 (3rd and 6th
	 * after the skip); at most 2. */
	cr_assert_eq(refused, (1 << 3) | (1 << 6), "refused mask %#x", refused);
	run_until(v, 10);
	unsigned n;
	const struct rmq_io_fault_rule *r = rmq_io_fault_rules(io, &n);
	cr_assert_eq(n, 1);
	cr_assert_eq(r[0].matched, 10);
	cr_assert_eq(r[0].fired, 2);
}

Test(io, submit_rule_keeps_sqes_queued)
{
	struct rmq_io_fault_rule rule = {.kind = RMQ_IO_FAULT_SUBMIT, .every = 1, .count = 3};
	cr_assert_eq(rmq_io_fault_arm(io, &rule, 1, 1), 0);
	struct rec v = {.op.cb = on_done};
	struct io_uring_sqe *sqe = rmq_io_sqe(io, &v.op);
	cr_assert_not_null(sqe);
	io_uring_prep_nop(sqe);
	for (int i = 0; i < 3; i++) {
		cr_assert_eq(rmq_io_poll(io), 0, "refused submission %d ran something", i);
		cr_assert_eq(v.calls, 0);
	}
	run_until(&v, 1);
	cr_assert_eq(v.res[0], 0);
}

static struct rec *prep_write(struct rec *r, const void *buf, unsigned len, uint64_t pos)
{
	r->op.cb = on_done;
	struct io_uring_sqe *sqe = rmq_io_sqe(io, &r->op);
	cr_assert_not_null(sqe);
	io_uring_prep_write(sqe, fd, buf, len, pos);
	return r;
}

Test(io, completion_rules_rewrite_results)
{
	static char buf[16384];
	memset(buf, 'x', sizeof(buf));
	char suffix[32];
	snprintf(suffix, sizeof(suffix), "%s", strrchr(path, '/'));
	struct rmq_io_fault_rule rules[] = {
		{.kind = RMQ_IO_FAULT_WRITE, .res = -EIO, .every = 1, .count = 1, .path_suffix = suffix},
		{.kind = RMQ_IO_FAULT_WRITE, .short_io = true, .every = 1, .count = 1},
		{.kind = RMQ_IO_FAULT_FSYNC, .res = -ENOSPC, .every = 1, .count = 1},
		{.kind = RMQ_IO_FAULT_READ, .res = -EIO, .every = 1, .count = 1,
		 .path_suffix = "/no-such-file"},
	};
	cr_assert_eq(rmq_io_fault_arm(io, rules, 4, 1), 0);
	struct rec w[3];
	memset(w, 0, sizeof(w));
	prep_write(&w[0], buf, sizeof(buf), 0);
	prep_write(&w[1], buf, sizeof(buf), 0);
	prep_write(&w[2], buf, sizeof(buf), 0);
	struct rec s = {.op.cb = on_done}, rd = {.op.cb = on_done};
	struct io_uring_sqe *sqe = rmq_io_sqe(io, &s.op);
	io_uring_prep_fsync(sqe, fd, IORING_FSYNC_DATASYNC);
	static char back[4096];
	sqe = rmq_io_sqe(io, &rd.op);
	io_uring_prep_read(sqe, fd, back, sizeof(back), 0);
	while (!(w[0].calls && w[1].calls && w[2].calls && s.calls && rd.calls))
		cr_assert_geq(rmq_io_wait(io, 50ULL * 1000 * 1000), 0);
	cr_assert_eq(w[0].res[0], -EIO);
	cr_assert_eq(w[1].res[0], 8192, "short write: half, in whole blocks");
	cr_assert_eq(w[2].res[0], (int)sizeof(buf));
	cr_assert_eq(s.res[0], -ENOSPC);
	cr_assert_geq(rd.res[0], 0, "the path rule must not match");
}

Test(io, delayed_completion_runs_cycles_later)
{
	struct rmq_io_fault_rule rule = {.kind = RMQ_IO_FAULT_FSYNC, .delay_cycles = 3, .every = 1};
	cr_assert_eq(rmq_io_fault_arm(io, &rule, 1, 1), 0);
	struct rec s = {.op.cb = on_done};
	struct io_uring_sqe *sqe = rmq_io_sqe(io, &s.op);
	io_uring_prep_fsync(sqe, fd, 0);
	int cycles = 0;
	while (s.calls == 0) {
		cr_assert_lt(cycles, 100);
		cr_assert_geq(rmq_io_wait(io, 50ULL * 1000 * 1000), 0);
		cycles++;
	}
	cr_assert_geq(cycles, 3, "held for %d cycles", cycles);
	cr_assert_eq(s.res[0], 0);
}

Test(io, sys_rules_apply_on_the_arming_thread)
{
	struct rmq_io_fault_rule rules[] = {
		{.kind = RMQ_IO_FAULT_FALLOCATE, .res = -ENOSPC, .every = 2},
		{.kind = RMQ_IO_FAULT_CREATE, .res = -EIO, .every = 1, .path_suffix = ".log"},
	};
	cr_assert_eq(rmq_io_fault_sys(RMQ_IO_FAULT_FALLOCATE, fd, NULL), 0, "unarmed");
	cr_assert_eq(rmq_io_fault_arm(io, rules, 2, 1), 0);
	cr_assert_eq(rmq_io_fault_sys(RMQ_IO_FAULT_FALLOCATE, fd, NULL), 0);
	cr_assert_eq(rmq_io_fault_sys(RMQ_IO_FAULT_FALLOCATE, fd, NULL), -ENOSPC);
	cr_assert_eq(rmq_io_fault_sys(RMQ_IO_FAULT_CREATE, -1, "/x/1.index"), 0);
	cr_assert_eq(rmq_io_fault_sys(RMQ_IO_FAULT_CREATE, -1, "/x/1.log"), -EIO);
	rmq_io_fault_disarm(io);
	cr_assert_eq(rmq_io_fault_sys(RMQ_IO_FAULT_CREATE, -1, "/x/1.log"), 0);
}

Test(io, too_many_rules)
{
	struct rmq_io_fault_rule rules[RMQ_IO_FAULT_RULES_MAX + 1];
	memset(rules, 0, sizeof(rules));
	cr_assert_eq(rmq_io_fault_arm(io, rules, RMQ_IO_FAULT_RULES_MAX + 1, 1), -EINVAL);
}
