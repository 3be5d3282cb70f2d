/* SPDX-License-Identifier: Apache-2.0 */
/*
 * bufring.c - a provided-buffer ring for multishot recv, shared by the
 * server's and the client's connections on a shard.
 *
 *   one mapping of count x size bytes ──► buffer ids 0..count-1, handed to
 *   the kernel through a registered io_uring_buf_ring (group bgid)
 *
 *   multishot RECV (IOSQE_BUFFER_SELECT, bgid) ── CQE names the buffer id
 *       ──► the bytes are fed to nghttp2 at once ──► net_bufring_recycle()
 *
 * A buffer is owned by the kernel except between its CQE and the recycle
 * that follows in the same callback, so no buffer is ever held across ring
 * cycles.  liburing 2.3 has no io_uring_setup_buf_ring(): the ring is
 * mapped here and registered with io_uring_register_buf_ring().
 */
#include "net/net_int.h"

#include "core/error.h"
#include "core/log.h"

#include <errno.h>
#include <sys/mman.h>
#include <unistd.h>

int net_bufring_setup(struct net_bufring *r, struct rmq_io *io, uint32_t count, uint32_t size)
{
	struct io_uring *ring = rmq_io_ring(io);
	size_t page = (size_t)sysconf(_SC_PAGESIZE);
	int rc = -EEXIST;

	r->bgid = -1;
	r->count = count;
	r->size = size;
	r->br_bytes = (count * sizeof(struct io_uring_buf) + page - 1) & ~(page - 1);
	r->br = mmap(NULL, r->br_bytes, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
	if (r->br == MAP_FAILED) {
		r->br = NULL;
		return -ENOMEM;
	}
	r->bufs_bytes = (size_t)count * size;
	r->bufs = mmap(NULL, r->bufs_bytes, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS,
		       -1, 0);
	if (r->bufs == MAP_FAILED) {
		r->bufs = NULL;
		return -ENOMEM;
	}
	/* Another module may hold the first group id on the same ring. */
	for (int bgid = RMQ_NET_BGID; bgid < RMQ_NET_BGID + 16 && rc == -EEXIST; bgid++) {
		struct io_uring_buf_reg reg = {
			.ring_addr = (uint64_t)(uintptr_t)r->br,
			.ring_entries = count,
			.bgid = (uint16_t)bgid,
		};
		rc = io_uring_register_buf_ring(ring, &reg, 0);
		if (rc == 0)
			r->bgid = bgid;
	}
	if (rc < 0) {
		rmq_error("net: cannot register a receive buffer ring: %s", rmq_strerror(rc));
		return rc;
	}
	io_uring_buf_ring_init(r->br);
	for (unsigned i = 0; i < count; i++)
		io_uring_buf_ring_add(r->br, net_bufring_addr(r, i), size, (unsigned short)i,
				      io_uring_buf_ring_mask(count), (int)i);
	io_uring_buf_ring_advance(r->br, (int)count);
	return 0;
}

void net_bufring_teardown(struct net_bufring *r, struct rmq_io *io)
{
	if (r->bgid >= 0) {
		io_uring_unregister_buf_ring(rmq_io_ring(io), r->bgid);
		r->bgid = -1;
	}
	if (r->br)
		munmap(r->br, r->br_bytes);
	if (r->bufs)
		munmap(r->bufs, r->bufs_bytes);
	r->br = NULL;
	r->bufs = NULL;
}

void net_bufring_recycle(struct net_bufring *r, unsigned bid)
{
	io_uring_buf_ring_add(r->br, net_bufring_addr(r, bid), r->size, (unsigned short)bid,
			      io_uring_buf_ring_mask(r->count), 0);
	io_uring_buf_ring_advance(r->br, 1);
}
