/* SPDX-License-Identifier: Apache-2.0 */
/*
 * conn.c - one connection's socket I/O, shared by the server's connections
 * (server.c) and the client's (client.c): the output chain, the send and
 * the multishot recv, and the flush that moves nghttp2's output into the
 * chain.
 *
 *   owner (server.c / client.c)
 *     │ net_conn_open(fd) ... net_conn_arm_recv()
 *     ▼
 *   fd ── multishot RECV, provided buffers ──► ops->input(bytes)
 *            │ each buffer goes back to the ring right after
 *            │ -ENOBUFS, -ECANCELED of a pause, no F_MORE: re-armed
 *            │ (not while paused: net_conn_pause_recv)
 *            └ EOF, error ──► ops->lost(why)
 *   net_conn_gather(h2) ── nghttp2_session_mem_send() ──► output chain
 *   net_conn_send() ── one SEND / SENDMSG of the chain ──► completion
 *            consumes pieces by bytes sent; an error ──► ops->lost(why)
 *   net_conn_cut() ── shutdown, cancel both ops; once neither is in
 *            flight ──► ops->idle() ──► owner frees ──► net_conn_close()
 *
 * The output chain: pieces[pc_head, pc_tail) in order; a piece is either
 * bytes of the connection's send buffer `out` (ext NULL: [off, off + len),
 * all within [out_head, out_tail)) or referenced bytes (ext, holding one
 * count of ref).  While a send is in flight it covers the first
 * pc_inflight pieces as they were then (iov), and only bytes past
 * out_tail and pieces past pc_tail may be added; the completion consumes
 * pieces by the bytes sent, so a short send resends the rest and
 * references are dropped only once the kernel has taken their bytes.
 *
 * Pausing.  A paused connection's multishot recv is cancelled and not
 * re-armed: what the kernel had already put in provided buffers still
 * reaches input (never dropped), the rest waits in the socket, and TCP's
 * window (and the HTTP/2 windows nghttp2 no longer refills) push back on
 * the peer.  Resuming re-arms it, at once or when the cancel's -ECANCELED
 * completion arrives.
 *
 * Layering: conn.c calls bufring.c and core only.  It reaches its owner
 * through the ops table (callbacks), and nghttp2 reaches the owner's
 * send_data callback (h2.c → grpc.c on the server, client.c on the client)
 * from inside net_conn_gather(); nothing here names server.c, grpc.c,
 * h2.c or client.c.
 */
#include "net/net_int.h"

#include "core/assert.h"
#include "core/error.h"
#include "core/util.h"

#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

static void recv_done(struct rmq_io_op *op, int res, unsigned flags);
static void send_done(struct rmq_io_op *op, int res, unsigned flags);
static void pipe_give_back(struct net_conn *nc);

/* ---- lifecycle ---------------------------------------------------------------- */

void net_conn_init(struct net_conn *nc, const struct net_conn_init_args *a)
{
	memset(nc, 0, sizeof(*nc));
	nc->ops = a->ops;
	nc->io = a->io;
	nc->rx = a->rx;
	nc->dirty_list = a->dirty_list;
	nc->rx_bytes = a->rx_bytes;
	nc->tx_bytes = a->tx_bytes;
	nc->out = a->out;
	nc->pieces = a->pieces;
	nc->iov = a->iov;
	nc->fd = -1;
	nc->recv_op.cb = recv_done;
	nc->send_op.cb = send_done;
	nc->pipes = a->pipes;
	nc->pipe = (struct net_pipe){-1, -1, 0};
	rmq_list_init(&nc->dirty);
}

void net_conn_open(struct net_conn *nc, int fd)
{
	RMQ_ASSERT(!nc->live);
	nc->fd = fd;
	nc->live = true;
	nc->cut = false;
	nc->flushable = false;
	nc->recv_armed = nc->recv_paused = nc->recv_cancel_sent = false;
	nc->send_inflight = false;
	nc->out_head = nc->out_tail = 0;
	nc->pc_head = nc->pc_tail = nc->pc_inflight = 0;
	nc->out_ref_bytes = 0;
	nc->pipe_fill = 0;
	nc->splice_round = nc->splice_skip = false;
	nc->nonblock = false;
}

void net_conn_close(struct net_conn *nc)
{
	RMQ_ASSERT(nc->live);
	RMQ_ASSERT(!nc->recv_armed);
	RMQ_ASSERT(!nc->send_inflight);
	if (rmq_list_linked(&nc->dirty))
		rmq_list_del(&nc->dirty);
	net_conn_out_reset(nc); /* references of bytes never sent go back */
	pipe_give_back(nc);     /* closed if bytes are left in it */
	net_tls_end(nc);
	if (nc->fd >= 0)
		close(nc->fd);
	nc->fd = -1;
	nc->live = false;
	nc->flushable = false;
	nc->gen++;
}

static void cancel_op(struct net_conn *nc, struct rmq_io_op *op)
{
	struct io_uring_sqe *sqe = rmq_io_sqe(nc->io, NULL);
	if (sqe)
		io_uring_prep_cancel(sqe, op, 0);
}

bool net_conn_idle(const struct net_conn *nc)
{
	return !nc->recv_armed && !nc->send_inflight;
}

void net_conn_cut(struct net_conn *nc)
{
	if (!nc->live || nc->cut)
		return;
	nc->cut = true;
	nc->flushable = false;
	if (rmq_list_linked(&nc->dirty))
		rmq_list_del(&nc->dirty);
	if (nc->fd >= 0)
		shutdown(nc->fd, SHUT_RDWR); /* wakes the pending recv and send */
	if (nc->recv_armed && !nc->recv_cancel_sent) {
		nc->recv_cancel_sent = true;
		cancel_op(nc, &nc->recv_op);
	}
	if (nc->send_inflight)
		cancel_op(nc, &nc->send_op);
	if (net_conn_idle(nc))
		nc->ops->idle(nc);
}

/* ---- output ------------------------------------------------------------------- */

void net_conn_mark_dirty(struct net_conn *nc)
{
	if (!nc->flushable || rmq_list_linked(&nc->dirty))
		return;
	rmq_list_add_tail(nc->dirty_list, &nc->dirty);
}

void net_conn_set_flushable(struct net_conn *nc, bool on)
{
	nc->flushable = on && nc->live && !nc->cut;
	if (!nc->flushable && rmq_list_linked(&nc->dirty))
		rmq_list_del(&nc->dirty);
}

size_t net_conn_out_room(const struct net_conn *nc)
{
	return RMQ_NET_SENDBUF_BYTES - nc->out_tail;
}

void net_conn_out_append(struct net_conn *nc, const void *p, size_t len)
{
	RMQ_DASSERT(len <= net_conn_out_room(nc));
	if (len == 0)
		return;
	memcpy(nc->out + nc->out_tail, p, len);
	struct net_out_piece *last = nc->pc_tail > nc->pc_head ? &nc->pieces[nc->pc_tail - 1] : NULL;
	if (last && !last->ext && last->off + last->len == nc->out_tail) {
		/* Contiguous with the last piece (even one in flight: the send
		 * took its length, and the completion consumes by bytes). */
		last->len += (uint32_t)len;
	} else {
		RMQ_ASSERT(nc->pc_tail < RMQ_NET_OUT_PIECES);
		nc->pieces[nc->pc_tail++] =
			(struct net_out_piece){.off = nc->out_tail, .len = (uint32_t)len};
	}
	nc->out_tail += (uint32_t)len;
}

void net_conn_out_append_ref(struct net_conn *nc, const uint8_t *p, size_t len,
			     struct rmq_send_ref *ref)
{
	RMQ_ASSERT(nc->pc_tail < RMQ_NET_OUT_PIECES);
	rmq_send_ref_get(ref);
	nc->pieces[nc->pc_tail++] = (struct net_out_piece){.ext = p, .ref = ref, .len = (uint32_t)len};
	nc->out_ref_bytes += len;
}

void net_conn_out_reset(struct net_conn *nc)
{
	RMQ_ASSERT(!nc->send_inflight);
	for (uint32_t i = nc->pc_head; i < nc->pc_tail; i++)
		if (nc->pieces[i].ext)
			rmq_send_ref_put(nc->pieces[i].ref);
	nc->pc_head = nc->pc_tail = nc->pc_inflight = 0;
	nc->out_head = nc->out_tail = 0;
	nc->out_ref_bytes = 0;
}

bool net_conn_out_pending(const struct net_conn *nc)
{
	return nc->pc_tail > nc->pc_head || nc->pipe_fill > 0 || net_tls_pending(nc);
}

/* The kernel took n bytes from the front of the chain: drop what is done
 * (references included), keep the rest of a piece sent in part. */
static void out_consume(struct net_conn *nc, size_t n)
{
	while (n > 0) {
		RMQ_ASSERT(nc->pc_head < nc->pc_tail);
		struct net_out_piece *pc = &nc->pieces[nc->pc_head];
		size_t take = pc->len < n ? pc->len : n;
		if (pc->ext) {
			pc->ext += take;
			nc->out_ref_bytes -= take;
		} else {
			pc->off += (uint32_t)take;
			nc->out_head = pc->off;
		}
		pc->len -= (uint32_t)take;
		n -= take;
		if (pc->len > 0)
			break;
		if (pc->ext)
			rmq_send_ref_put(pc->ref);
		nc->pc_head++;
	}
	RMQ_ASSERT(n == 0);
	if (nc->pc_head == nc->pc_tail) {
		nc->pc_head = nc->pc_tail = 0;
		nc->out_head = nc->out_tail = 0;
	}
}

/* With no send in flight: moves the queued bytes and pieces to the front,
 * so the buffer and the chain have their full room again. */
static void out_compact(struct net_conn *nc)
{
	RMQ_DASSERT(!nc->send_inflight);
	if (nc->pc_head > 0) {
		memmove(nc->pieces, nc->pieces + nc->pc_head,
			(nc->pc_tail - nc->pc_head) * sizeof(*nc->pieces));
		nc->pc_tail -= nc->pc_head;
		nc->pc_head = 0;
	}
	if (nc->out_head > 0) {
		memmove(nc->out, nc->out + nc->out_head, nc->out_tail - nc->out_head);
		for (uint32_t i = 0; i < nc->pc_tail; i++)
			if (!nc->pieces[i].ext)
				nc->pieces[i].off -= nc->out_head;
		nc->out_tail -= nc->out_head;
		nc->out_head = 0;
	}
}

int net_conn_gather(struct net_conn *nc, nghttp2_session *h2)
{
	if (!nc->send_inflight)
		out_compact(nc);
	while (net_conn_out_room(nc) >= RMQ_NET_FRAME_MAX &&
	       net_conn_pieces_room(nc) > RMQ_NET_PIECES_RESERVE &&
	       nc->out_ref_bytes < RMQ_NET_OUT_REF_MAX) {
		const uint8_t *p;
		ssize_t n = nghttp2_session_mem_send(h2, &p);
		if (n < 0)
			return (int)n;
		if (n == 0)
			break;
		if ((size_t)n > net_conn_out_room(nc) || net_conn_pieces_room(nc) == 0)
			return RMQ_ETOOBIG;
		net_conn_out_append(nc, p, (size_t)n);
	}
	return 0;
}

/*
 * One send of the whole chain: a plain SEND when it is one piece, else a
 * SENDMSG gathering the send buffer's bytes and the referenced ones (the
 * kernel copies them into the socket either way; SEND_ZC would not on
 * loopback, see docs/net.md).  The iovecs stay in the connection until the
 * completion.
 */
/*
 * TLS: the chain's plaintext is encrypted into the TLS buffer, each piece
 * straight from where it is (a referenced piece from its segment mapping),
 * and consumed as encrypted; then one SEND of the records.  Only while no
 * send is in flight, so the completion consumes records alone.
 */
static int tls_send(struct net_conn *nc)
{
	while (nc->pc_head < nc->pc_tail) {
		const struct net_out_piece *pc = &nc->pieces[nc->pc_head];
		const uint8_t *p = pc->ext ? pc->ext : nc->out + pc->off;
		size_t len = pc->len;
		/* Copied bytes lie end to end in the buffer (a frame's header
		 * and its payload, frame after frame): written together, they
		 * make full records instead of a record per piece. */
		for (uint32_t i = nc->pc_head + 1; !pc->ext && i < nc->pc_tail && len < 16384; i++) {
			const struct net_out_piece *q = &nc->pieces[i];
			if (q->ext || nc->out + q->off != p + len)
				break;
			len += q->len;
		}
		int n = net_tls_write(nc, p, len);
		if (n < 0)
			return n;
		if (n == 0)
			break;
		out_consume(nc, (size_t)n);
	}
	size_t len;
	const uint8_t *p = net_tls_out(nc, &len);
	if (len == 0)
		return 0;
	struct io_uring_sqe *sqe = rmq_io_sqe(nc->io, &nc->send_op);
	if (!sqe)
		return -EBUSY;
	io_uring_prep_send(sqe, nc->fd, p, len, MSG_NOSIGNAL);
	nc->send_inflight = true;
	return 0;
}

/*
 * Splice.  Referenced bytes whose ref names their file (rmq_send_ref.file:
 * fetch answers from resident segment pages) go from the page cache into
 * the socket without being copied.  A round, on the shard's thread:
 *
 *   write(pipe, the copied piece before them)     (frame header, if any)
 *   splice(file → pipe)      the pages, by reference, a pipe's worth
 *   splice(pipe → socket)    O_NONBLOCK: what the socket has room for
 *
 * then a NOP whose completion applies the results as a send's completion
 * does (so nothing here runs the owner's callbacks from inside
 * net_conn_send).  The chain is consumed by what reached the pipe:
 * references are dropped once the pipe holds the pages (the page cache
 * keeps them, and the log does not rewrite a file whose pages may still
 * be lent: storage/segment.h, "Lent pages").  What the socket did not take
 * stays in the pipe and goes first, after a POLL for room when the socket
 * had none.  io_uring's own SPLICE was measured too: it always runs in an
 * io-wq worker, a thread hand-off per op, and cost more CPU than this
 * (docs/net.md, "Splice").  A file page that is not resident makes the
 * splice read it, as a copy from the mapping would fault it in.
 */
#define RMQ_NET_SPLICE_MIN 16384u /* smaller pieces are copied */
#define PIPE_PAGE 4096u

static bool pipe_take(struct net_conn *nc)
{
	struct net_pipes *pp = nc->pipes;
	if (nc->pipe.r >= 0)
		return true;
	if (!nc->nonblock) {
		int fl = fcntl(nc->fd, F_GETFL);
		if (fl < 0 || fcntl(nc->fd, F_SETFL, fl | O_NONBLOCK) < 0)
			return false;
		nc->nonblock = true;
	}
	if (pp->nfree > 0) {
		nc->pipe = pp->free[--pp->nfree];
		pp->lent++;
		return true;
	}
	if (pp->lent >= RMQ_NET_PIPES_MAX)
		return false;
	int fds[2];
	if (pipe2(fds, O_CLOEXEC | O_NONBLOCK) < 0)
		return false;
	int cap = fcntl(fds[1], F_SETPIPE_SZ, (int)RMQ_NET_PIPE_BYTES);
	if (cap < 0)
		cap = fcntl(fds[1], F_GETPIPE_SZ); /* over the user's pipe quota */
	if (cap < (int)(16 * PIPE_PAGE)) {
		close(fds[0]);
		close(fds[1]);
		return false;
	}
	nc->pipe = (struct net_pipe){fds[0], fds[1], (uint32_t)cap};
	pp->lent++;
	return true;
}

/* The pipe goes back to the pool when empty; one with bytes left (the
 * connection is gone) is closed, dropping them. */
static void pipe_give_back(struct net_conn *nc)
{
	struct net_pipes *pp = nc->pipes;
	if (nc->pipe.r < 0)
		return;
	pp->lent--;
	if (nc->pipe_fill == 0 && pp->nfree < RMQ_NET_PIPES_MAX) {
		pp->free[pp->nfree++] = nc->pipe;
	} else {
		close(nc->pipe.r);
		close(nc->pipe.w);
	}
	nc->pipe = (struct net_pipe){-1, -1, 0};
	nc->pipe_fill = 0;
}

void net_pipes_destroy(struct net_pipes *pp)
{
	while (pp->nfree > 0) {
		struct net_pipe *p = &pp->free[--pp->nfree];
		close(p->r);
		close(p->w);
	}
}

/* Whether piece i may be spliced, and from where. */
static bool piece_file(const struct net_conn *nc, uint32_t i, int *fd, uint64_t *off)
{
	const struct net_out_piece *pc = &nc->pieces[i];
	return pc->ext && pc->len >= RMQ_NET_SPLICE_MIN && pc->ref->file &&
	       pc->ref->file(pc->ref, pc->ext, pc->len, fd, off);
}

/* The round's results go to round_finish through a completion, as a
 * send's do: sqe (taken before the syscalls, so they are never done with
 * no way to report them) becomes a NOP, or a POLL for room when the
 * socket had none. */
static void round_complete(struct net_conn *nc, struct io_uring_sqe *sqe, bool poll)
{
	if (poll)
		io_uring_prep_poll_add(sqe, nc->fd, POLLOUT);
	else
		io_uring_prep_nop(sqe);
	nc->splice_round = true;
	nc->send_inflight = true;
}

static int splice_call(int in, loff_t *off, int out, uint32_t len)
{
	ssize_t n = splice(in, off, out, NULL, len, SPLICE_F_NONBLOCK);
	return n < 0 ? -errno : (int)n;
}

/* The pipe's leftover bytes: at once when the socket took bytes last
 * time, else after a POLL for room. */
static int splice_flush(struct net_conn *nc)
{
	struct io_uring_sqe *sqe = rmq_io_sqe(nc->io, &nc->send_op);
	if (!sqe)
		return -EBUSY;
	nc->pre_len = nc->in_len = 0;
	if (nc->out_res == -EAGAIN) {
		nc->out_res = -EINTR; /* nothing sent: the next flush tries */
		round_complete(nc, sqe, true);
		return 0;
	}
	nc->out_res = splice_call(nc->pipe.r, NULL, nc->fd, nc->pipe_fill);
	round_complete(nc, sqe, false);
	return 0;
}

/* A round for piece k, whose bytes are at off in fd, with the piece before
 * it (the head, copied) when k is not the head. */
static int splice_round(struct net_conn *nc, uint32_t k, int fd, uint64_t off)
{
	const struct net_out_piece *pre = k > nc->pc_head ? &nc->pieces[nc->pc_head] : NULL;
	uint32_t pre_len = pre ? pre->len : 0;
	/* Every page a piece touches takes one of the pipe's slots. */
	uint32_t slots = nc->pipe.cap / PIPE_PAGE;
	uint32_t pre_slots = pre ? pre_len / PIPE_PAGE + 2 : 0;
	uint64_t room = (uint64_t)(slots - pre_slots) * PIPE_PAGE - off % PIPE_PAGE;
	uint32_t len = nc->pieces[k].len < room ? nc->pieces[k].len : (uint32_t)room;

	struct io_uring_sqe *sqe = rmq_io_sqe(nc->io, &nc->send_op);
	if (!sqe)
		return -EBUSY;
	nc->pre_len = pre_len;
	nc->in_len = len;
	nc->pre_res = nc->in_res = nc->out_res = -EAGAIN;
	if (pre) {
		ssize_t w = write(nc->pipe.w, nc->out + pre->off, pre_len);
		nc->pre_res = w < 0 ? -errno : (int)w;
	}
	if (!pre || nc->pre_res == (int)pre_len) {
		loff_t o = (loff_t)off;
		nc->in_res = splice_call(fd, &o, nc->pipe.w, len);
	}
	uint32_t fill = (nc->pre_res > 0 ? (uint32_t)nc->pre_res : 0) +
			(nc->in_res > 0 ? (uint32_t)nc->in_res : 0);
	if (fill > 0)
		nc->out_res = splice_call(nc->pipe.r, NULL, nc->fd, fill);
	nc->pc_inflight = k - nc->pc_head + 1;
	round_complete(nc, sqe, false);
	return 0;
}

/* Starts a splice round or flush and returns 0 or -EBUSY, or returns 1:
 * send the first *n pieces by SENDMSG instead (*n = 0: all of them). */
static int splice_send(struct net_conn *nc, uint32_t *n)
{
	*n = 0;
	if (nc->pipe_fill > 0)
		return splice_flush(nc);
	if (nc->splice_skip) {
		/* The last round could not move its file bytes: the head
		 * piece goes by copy (which faults a page in if it must). */
		nc->splice_skip = false;
		*n = 1;
		return 1;
	}
	uint32_t k;
	int fd = -1;
	uint64_t off = 0;
	for (k = nc->pc_head; k < nc->pc_tail; k++)
		if (piece_file(nc, k, &fd, &off))
			break;
	if (k == nc->pc_tail)
		return 1;
	/* What comes before it: one copied piece goes into the pipe with it
	 * (the buffer's bytes between two referenced pieces are one piece);
	 * anything else is sent first. */
	bool pre_ok = k == nc->pc_head ||
		      (k == nc->pc_head + 1 && !nc->pieces[nc->pc_head].ext &&
		       nc->pieces[nc->pc_head].len <= RMQ_NET_SPLICE_MIN);
	if (!pre_ok) {
		*n = k - nc->pc_head;
		return 1;
	}
	if (!pipe_take(nc))
		return 1;
	return splice_round(nc, k, fd, off);
}

/* A round's results (from its completion, send_done). */
static void round_finish(struct net_conn *nc)
{
	/* What reached the pipe has left the chain. */
	size_t moved = 0;
	int err = 0;
	if (nc->pre_len > 0) {
		if (nc->pre_res > 0)
			moved += (size_t)nc->pre_res;
		else if (nc->pre_res != -EAGAIN)
			err = nc->pre_res < 0 ? nc->pre_res : -EIO;
	}
	if (nc->in_len > 0 && !err && (nc->pre_len == 0 || nc->pre_res == (int)nc->pre_len)) {
		if (nc->in_res > 0) {
			moved += (size_t)nc->in_res;
			*nc->pipes->spliced_bytes += (uint64_t)nc->in_res;
		} else if (nc->in_res == -EAGAIN || nc->in_res == -EINTR) {
			nc->splice_skip = true;
		} else {
			err = nc->in_res < 0 ? nc->in_res : -EIO; /* the file ended early */
		}
	}
	if (moved > 0) {
		out_consume(nc, moved);
		nc->pipe_fill += (uint32_t)moved;
	}
	int res = nc->out_res;
	if (res > 0) {
		*nc->tx_bytes += (uint64_t)res;
		nc->pipe_fill -= (uint32_t)res;
	} else if (res != -EAGAIN && res != -EINTR && !err && nc->pipe_fill > 0) {
		err = res == 0 ? -EPIPE : res; /* the peer is gone */
	}
	if (err) {
		/* Part of a frame may be in the pipe: the connection cannot go
		 * on without it. */
		nc->ops->lost(nc, err);
		return;
	}
	if (nc->pipe_fill == 0)
		pipe_give_back(nc);
	net_conn_mark_dirty(nc);
}

int net_conn_send(struct net_conn *nc)
{
	if (nc->send_inflight || !net_conn_out_pending(nc))
		return 0;
	if (nc->tls)
		return tls_send(nc);
	uint32_t n = 0;
	if (nc->pipes) {
		int rc = splice_send(nc, &n);
		if (rc <= 0)
			return rc;
	}
	struct io_uring_sqe *sqe = rmq_io_sqe(nc->io, &nc->send_op);
	if (!sqe)
		return -EBUSY;
	if (n == 0)
		n = nc->pc_tail - nc->pc_head;
	for (uint32_t i = 0; i < n; i++) {
		const struct net_out_piece *pc = &nc->pieces[nc->pc_head + i];
		nc->iov[i].iov_base = pc->ext ? (void *)pc->ext : nc->out + pc->off;
		nc->iov[i].iov_len = pc->len;
	}
	nc->pc_inflight = n;
	if (n == 1) {
		io_uring_prep_send(sqe, nc->fd, nc->iov[0].iov_base, nc->iov[0].iov_len,
				   MSG_NOSIGNAL);
	} else {
		nc->msg = (struct msghdr){.msg_iov = nc->iov, .msg_iovlen = n};
		io_uring_prep_sendmsg(sqe, nc->fd, &nc->msg, MSG_NOSIGNAL);
	}
	nc->send_inflight = true;
	return 0;
}

static void send_done(struct rmq_io_op *op, int res, unsigned flags)
{
	struct net_conn *nc = RMQ_CONTAINER_OF(op, struct net_conn, send_op);
	(void)flags;

	RMQ_ASSERT(nc->send_inflight);
	bool round = nc->splice_round; /* this is its NOP or POLL */
	nc->send_inflight = false;
	nc->splice_round = false;
	nc->pc_inflight = 0;
	if (nc->cut) {
		if (net_conn_idle(nc))
			nc->ops->idle(nc);
		return;
	}
	if (round) {
		round_finish(nc);
		return;
	}
	if (res > 0) {
		*nc->tx_bytes += (uint64_t)res;
		if (nc->tls)
			net_tls_sent(nc, (size_t)res); /* its records, the rest again */
		else
			out_consume(nc, (size_t)res); /* a short send resends the rest */
		net_conn_mark_dirty(nc);
		return;
	}
	if (res == -EAGAIN || res == -EINTR) {
		net_conn_mark_dirty(nc);
		return;
	}
	/* 0 for a non-empty send, -EPIPE, -ECONNRESET, ...: the peer is gone. */
	nc->ops->lost(nc, res == 0 ? -EPIPE : res);
}

/* ---- input -------------------------------------------------------------------- */

int net_conn_arm_recv(struct net_conn *nc)
{
	RMQ_ASSERT(!nc->recv_armed);
	struct io_uring_sqe *sqe = rmq_io_sqe(nc->io, &nc->recv_op);
	if (!sqe)
		return -EBUSY;
	io_uring_prep_recv_multishot(sqe, nc->fd, NULL, 0, 0);
	sqe->flags |= IOSQE_BUFFER_SELECT;
	sqe->buf_group = (uint16_t)nc->rx->bgid;
	nc->recv_armed = true;
	nc->recv_cancel_sent = false;
	return 0;
}

void net_conn_pause_recv(struct net_conn *nc)
{
	if (!nc->live || nc->cut || nc->recv_paused)
		return;
	nc->recv_paused = true;
	/* The multishot recv keeps posting what the kernel already has
	 * until the cancel lands; those bytes are still handed to input. */
	if (nc->recv_armed && !nc->recv_cancel_sent) {
		nc->recv_cancel_sent = true;
		cancel_op(nc, &nc->recv_op);
	}
}

int net_conn_resume_recv(struct net_conn *nc)
{
	if (!nc->live || nc->cut || !nc->recv_paused)
		return 0;
	nc->recv_paused = false;
	/* A cancel still in flight ends the multishot with -ECANCELED; its
	 * completion re-arms it then. */
	if (nc->recv_armed)
		return 0;
	return net_conn_arm_recv(nc);
}

static void recv_done(struct rmq_io_op *op, int res, unsigned flags)
{
	struct net_conn *nc = RMQ_CONTAINER_OF(op, struct net_conn, recv_op);
	struct net_bufring *rx = nc->rx;
	uint32_t gen = nc->gen;

	if (!(flags & IORING_CQE_F_MORE)) {
		nc->recv_armed = false;
		nc->recv_cancel_sent = false;
	}
	if (flags & IORING_CQE_F_BUFFER) {
		unsigned bid = flags >> IORING_CQE_BUFFER_SHIFT;
		RMQ_ASSERT(bid < rx->count);
		if (res > 0 && nc->live && !nc->cut) {
			*nc->rx_bytes += (uint64_t)res;
			if (nc->tls)
				net_tls_input(nc, net_bufring_addr(rx, bid), (size_t)res);
			else
				nc->ops->input(nc, net_bufring_addr(rx, bid), (size_t)res);
		}
		/* The input consumed all of it (or it was dropped): the buffer
		 * goes straight back to the kernel. */
		net_bufring_recycle(rx, bid);
	}
	/* The input may have freed the connection (an owner's callback may
	 * even have reused the slot for a new one). */
	if (nc->gen != gen || !nc->live)
		return;
	if (nc->cut) {
		if (net_conn_idle(nc))
			nc->ops->idle(nc);
		return;
	}
	if (res == 0) {
		nc->ops->lost(nc, 0); /* EOF */
		return;
	}
	if (res < 0 && res != -ENOBUFS && res != -EAGAIN && res != -EINTR && res != -ECANCELED) {
		nc->ops->lost(nc, res);
		return;
	}
	/* -ENOBUFS ended the multishot (the buffers were recycled above, in
	 * CQE order), a pause cancelled it (or a stale pause cancel hit a
	 * later recv), or the kernel ended it: re-arm unless reading is
	 * paused. */
	if (!nc->recv_armed && !nc->recv_paused) {
		int rc = net_conn_arm_recv(nc);
		if (rc < 0)
			nc->ops->lost(nc, rc);
	}
}
