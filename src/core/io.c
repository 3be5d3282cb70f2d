/* SPDX-License-Identifier: Apache-2.0 */
/* io.c - the shard's io_uring ring and completion dispatch (see io.h). */
#include "core/io.h"

#include "core/assert.h"
#include "core/error.h"
#include "core/log.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

struct rmq_io {
	struct io_uring ring;
	bool defer_taskrun;
	unsigned nbuf;       /* fixed-buffer table size (0 = none registered) */
	uint8_t *buf_used;   /* nbuf flags */
};

struct reaped {
	struct rmq_io_op *op;
	int res;
	unsigned flags;
};

int rmq_io_create(const struct rmq_io_config *cfg, struct rmq_io **out)
{
	static const struct {
		unsigned flags;
		const char *what;
	} tries[] = {
		{IORING_SETUP_SINGLE_ISSUER | IORING_SETUP_DEFER_TASKRUN, NULL},
		{IORING_SETUP_SINGLE_ISSUER, "DEFER_TASKRUN"},
		{0, "SINGLE_ISSUER"},
	};
	struct rmq_io *io = calloc(1, sizeof(*io));
	int rc = -EINVAL;

	if (!io)
		return -ENOMEM;
	for (size_t i = 0; i < sizeof(tries) / sizeof(tries[0]); i++) {
		struct io_uring_params p;
		memset(&p, 0, sizeof(p));
		p.flags = tries[i].flags | IORING_SETUP_CQSIZE;
		p.cq_entries = cfg->entries * 4;
		rc = io_uring_queue_init_params(cfg->entries, &io->ring, &p);
		if (rc == 0) {
			io->defer_taskrun = (tries[i].flags & IORING_SETUP_DEFER_TASKRUN) != 0;
			break;
		}
		if (rc != -EINVAL)
			goto err_free;
		if (i + 1 < sizeof(tries) / sizeof(tries[0]))
			rmq_warn("io_uring: kernel lacks %s, falling back", tries[i + 1].what);
	}
	if (rc < 0)
		goto err_free;
	if (cfg->fixed_buffers > 0) {
		io->buf_used = calloc(cfg->fixed_buffers, 1);
		if (!io->buf_used) {
			rc = -ENOMEM;
			goto err_ring;
		}
		rc = io_uring_register_buffers_sparse(&io->ring, cfg->fixed_buffers);
		if (rc < 0) {
			/* Old kernels: run with plain reads and writes. */
			rmq_warn("io_uring: no sparse fixed buffers (%s), using plain I/O",
				 rmq_strerror(rc));
			free(io->buf_used);
			io->buf_used = NULL;
		} else {
			io->nbuf = cfg->fixed_buffers;
		}
	}
	*out = io;
	return 0;

err_ring:
	io_uring_queue_exit(&io->ring);
err_free:
	free(io);
	return rc;
}

void rmq_io_destroy(struct rmq_io *io)
{
	if (!io)
		return;
	io_uring_queue_exit(&io->ring);
	free(io->buf_used);
	free(io);
}

struct io_uring *rmq_io_ring(struct rmq_io *io)
{
	return &io->ring;
}

bool rmq_io_defer_taskrun(const struct rmq_io *io)
{
	return io->defer_taskrun;
}

struct io_uring_sqe *rmq_io_sqe(struct rmq_io *io, struct rmq_io_op *op)
{
	struct io_uring_sqe *sqe = io_uring_get_sqe(&io->ring);

	if (!sqe) {
		int rc = io_uring_submit(&io->ring);
		if (rc < 0)
			return NULL;
		sqe = io_uring_get_sqe(&io->ring);
		if (!sqe)
			return NULL;
	}
	io_uring_sqe_set_data(sqe, op);
	return sqe;
}

/* Copies ready CQEs out, advances the ring, then runs the callbacks. */
static int dispatch(struct rmq_io *io)
{
	struct reaped list[RMQ_IO_REAP_MAX];
	struct io_uring_cqe *cqes[RMQ_IO_REAP_MAX];
	int total = 0;

	for (;;) {
		unsigned n = io_uring_peek_batch_cqe(&io->ring, cqes, RMQ_IO_REAP_MAX);
		if (n == 0)
			break;
		for (unsigned i = 0; i < n; i++) {
			list[i].op = io_uring_cqe_get_data(cqes[i]);
			list[i].res = cqes[i]->res;
			list[i].flags = cqes[i]->flags;
		}
		io_uring_cq_advance(&io->ring, n);
		for (unsigned i = 0; i < n; i++) {
			if (list[i].op)
				list[i].op->cb(list[i].op, list[i].res, list[i].flags);
		}
		total += (int)n;
		if (n < RMQ_IO_REAP_MAX)
			break;
	}
	return total;
}

int rmq_io_poll(struct rmq_io *io)
{
	int rc = io_uring_submit_and_get_events(&io->ring);

	if (rc < 0 && rc != -EINTR && rc != -EAGAIN && rc != -EBUSY)
		return rc;
	return dispatch(io);
}

bool rmq_io_spin(struct rmq_io *io, uint64_t budget_ns)
{
	if (io_uring_cq_ready(&io->ring))
		return true;
	int rc = io_uring_submit(&io->ring); /* what the cycle queued goes out now */
	if (rc < 0 && rc != -EINTR && rc != -EAGAIN && rc != -EBUSY)
		return false;
	struct timespec t0, t;
	clock_gettime(CLOCK_MONOTONIC, &t0);
	for (;;) {
		/* With DEFER_TASKRUN completions are only posted when this
		 * thread asks; otherwise they appear by themselves. */
		if (io->defer_taskrun)
			(void)io_uring_get_events(&io->ring);
		if (io_uring_cq_ready(&io->ring))
			return true;
		clock_gettime(CLOCK_MONOTONIC, &t);
		uint64_t spent = (uint64_t)(t.tv_sec - t0.tv_sec) * 1000000000ULL +
				 (uint64_t)(t.tv_nsec - t0.tv_nsec);
		if (spent >= budget_ns)
			return false;
	}
}

int rmq_io_wait(struct rmq_io *io, uint64_t timeout_ns)
{
	struct io_uring_cqe *cqe;
	int rc;

	if (io_uring_cq_ready(&io->ring) == 0) {
		if (timeout_ns) {
			struct __kernel_timespec ts = {
				.tv_sec = (long long)(timeout_ns / 1000000000ULL),
				.tv_nsec = (long long)(timeout_ns % 1000000000ULL),
			};
			rc = io_uring_submit_and_wait_timeout(&io->ring, &cqe, 1, &ts, NULL);
		} else {
			rc = io_uring_submit_and_wait(&io->ring, 1);
		}
		/* -ETIME: the timeout passed; -EINTR: a signal; both are a
		 * normal return with whatever completions exist. */
		if (rc < 0 && rc != -ETIME && rc != -EINTR && rc != -EAGAIN && rc != -EBUSY)
			return rc;
	} else {
		rc = io_uring_submit(&io->ring);
		if (rc < 0 && rc != -EINTR && rc != -EAGAIN && rc != -EBUSY)
			return rc;
	}
	return dispatch(io);
}

int rmq_io_buffer_register(struct rmq_io *io, void *base, size_t len)
{
	for (unsigned i = 0; i < io->nbuf; i++) {
		if (io->buf_used[i])
			continue;
		struct iovec iov = {.iov_base = base, .iov_len = len};
		__u64 tag = 0;
		int rc = io_uring_register_buffers_update_tag(&io->ring, i, &iov, &tag, 1);
		if (rc < 0)
			return rc;
		io->buf_used[i] = 1;
		return (int)i;
	}
	return RMQ_EFULL;
}

void rmq_io_buffer_unregister(struct rmq_io *io, int slot)
{
	RMQ_ASSERT(slot >= 0);
	RMQ_ASSERT((unsigned)slot < io->nbuf);
	struct iovec iov = {.iov_base = NULL, .iov_len = 0};
	__u64 tag = 0;
	/* An empty iovec returns the slot to the sparse state. */
	(void)io_uring_register_buffers_update_tag(&io->ring, (unsigned)slot, &iov, &tag, 1);
	io->buf_used[slot] = 0;
}
