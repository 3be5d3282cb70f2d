/* SPDX-License-Identifier: Apache-2.0 */
/*
 * fetch.c - ConsumerService's reads: Fetch, FetchBatch, Subscribe (ListOffsets
 * is in lookup.c).
 *
 * A fetch is coordinated on the connection's shard (the origin) by a
 * struct fetch_op; each requested partition is a struct fetch_part sent
 * to the partition's shard (the owner):
 *
 *   origin                                   owner
 *   op: post every part ───────────────────► read the log at fetch_offset
 *                                            (whole batches, <= the part's
 *                                             byte cap): data or an error
 *        ◄──────────── reply (part.msg) ──── → reply at once
 *                                            no data yet and the op may
 *                                            wait → park the part on the
 *                                            partition's waiter list; an
 *                                            HW advance re-reads and replies
 *   enough bytes (>= min_bytes) or
 *   max_wait expired → for parts still
 *   parked, post a cancel (part.cmsg) ─────► parked: unpark, read, reply
 *        ◄──────────── cancel ack ─────────── always, so the origin knows
 *                                            the owner is done with the part
 *   every expected message back → answer
 *
 * This is Kafka's long poll: the answer leaves as soon as min_bytes of
 * batches are ready, or at max_wait with whatever there is; no loop polls.
 * Batches are sent as they are stored: each FetchPartitionResponse is its
 * header fields (protobuf-c) followed by the stored entries, which are
 * already encoded `batches` elements (storage/batch.h).  By default they
 * are not copied at all (see "Zero copy" below); with --fetch-copy they
 * are copied once into the part's buffer on the owner, and again into the
 * call's send queue.
 *
 * Cold reads.  A page fault on the segment mapping is a synchronous disk
 * read that stalls the whole shard, so read_part() sends from the mapping
 * only when every slice is in memory (rmq_cold_resident); otherwise the
 * batches are read into a buffer by storage/coldread.h (O_DIRECT, several READs in
 * flight, CRC-checked, read ahead for consumers going in order) and the
 * part is answered when they are in:
 *
 *   read_part ── all slices resident ──► zero copy: pin, reply (READ_DONE)
 *        │                               (--fetch-copy: copy, reply)
 *        └── some slice cold: rmq_cold_read_start ─► taken from a finished
 *            read-ahead (READ_DONE), or READ_PENDING: neither parked nor
 *            replied; the partition counts it in cold.reads
 *                 │
 *   cold_done ◄───┘ the batches are in and checked: reply.  A bad batch
 *                   is never served: first in the buffer → CORRUPT_MESSAGE
 *                   naming its offset; later → the batches before it are
 *                   answered, and the next fetch (at its offset) gets the
 *                   error.
 *
 * A cancel that arrives while the reads are in flight finds the part not
 * parked, so it only acks; the reply follows from cold_done.  The origin
 * counts both messages, so it frees the op only after the two are back.
 * A partition that closes waits for its cold reads (rmq_fetch_drop_waiters).
 *
 * Subscribe reuses one op for successive rounds: after each answer the
 * offsets move past what was sent and the next round starts, waiting for
 * new data; the stream ends when the client cancels.
 *
 * Replica reads.  A Fetch whose replica_id names a broker (node ids start
 * at 1; 0, proto3's default, and 0xFFFFFFFF are consumers) reads this
 * node's own replica of each partition, leader or follower, up to its log
 * end (what its log made durable) instead of the high watermark: Kafka's
 * follower fetch, which rmq's followers do not need (the leader pushes,
 * replication.proto) but a test does, to read back every replica.  It is
 * routed to the partition's shard whoever leads; a node without a replica
 * answers REPLICA_NOT_AVAILABLE.  It answers at once: a parked part is
 * woken by HW advances only, and a follower's log end moves without one.
 */
#include "broker/auth.h"
#include "broker/quota.h"
#include "broker/broker.h"
#include "broker/lookup.h"
#include "broker/methods.h"
#include "broker/request.h"

#include "client/consumer.pb-c.h"
#include "core/assert.h"
#include "core/error.h"
#include "core/log.h"
#include "core/pbwire.h"
#include "core/util.h"

#include <errno.h>
#include <stddef.h>
#include <stdio.h>
#include <unistd.h>
#include <stdlib.h>
#include <string.h>

#define FETCH_DEFAULT_MAX_BYTES (50u << 20)
#define FETCH_DEFAULT_PART_BYTES (1u << 20)

enum op_kind { OP_FETCH, OP_SUBSCRIBE };

/* Subscribe starting points resolved by the owner at the first read. */
enum { START_OFFSET = 0, START_EARLIEST = 1, START_LATEST = 2, START_TIME = 3, START_MAX_TIME = 4 };

struct fetch_op;

struct rmq_fetch_waiter {
	struct rmq_fetch_waiter *next, *prev;
};

struct fetch_part {
	struct rmq_xmsg msg;   /* request to the owner, then its reply */
	struct rmq_xmsg cmsg;  /* cancel to the owner, then its ack */
	struct fetch_op *op;
	struct rmq_fetch_waiter w; /* owner: on the partition's list when parked */
	struct rmq_partition *parked_on;
	char topic[RMQ_TOPIC_NAME_MAX + 1];
	uint32_t partition;
	uint64_t offset;
	uint32_t max_bytes;
	bool may_wait;
	int start;             /* first round: START_OFFSET, or a START_* the owner resolves */
	int64_t start_ts_ms;   /* START_TIME */
	bool replica;          /* a replica read: this node's log, to its end */
	unsigned origin;       /* the coordinating shard */
	bool replied;          /* origin: the reply for this round is in */
	bool cancel_sent;      /* origin: a cancel is out for this round */
	bool dropped;          /* subscribe: failed, reported, no longer read */
	unsigned owner;
	/* Owner: the log read, and the cold read of it (storage/coldread.h). */
	struct rmq_cold_read cr;
	bool reading;          /* the cold read is pending */
	/* Result (owner writes, origin reads after the reply). */
	int code;
	char err[320];
	uint64_t hw, log_start, next_offset;
	uint8_t *data;         /* copied or cold-read batches (aligned alloc), or NULL */
	size_t len;
	/* The batches as sent: slices of the segment mapping (zero copy) or
	 * their copies in data; trim_round shortens them. */
	struct iovec iov[RMQ_LOG_SLICES_MAX];
	unsigned niov;
	struct fetch_ref *ref; /* zero copy: what keeps iov valid, or NULL */
};

/*
 * Zero copy (the default; --fetch-copy turns it off).  The bytes of an
 * answer are referenced by the connection's send queue, not copied into it
 * (grpc.h, rmq_call_sendv_ref):
 *
 *   owner: every slice resident ──► pin the slices (no copy), iov = the
 *          mapping ─────────────────────────────► origin: trim, send the
 *   owner: some slice cold ──► READ + CRC into      headers copied and the
 *          data (as before) ─────────────────────►  batches by reference
 *                                                      │
 *   released (rmq_send_ref count 0) when the op is done with the round and
 *   the kernel took the last byte, or the call/connection went away first:
 *   the slices are unpinned right there on the origin (segment pins are
 *   atomic, storage/log.h rmq_log_read_release), data is freed.
 *
 * A page evicted between the mincore() check and the send makes the
 * kernel's copy fault it in: the same race the copying path had with its
 * memcpy, over a longer window (until the send).
 */
struct fetch_ref {
	struct rmq_send_ref ref;
	struct rmq_log_read lr;  /* pinned slices, or nslices 0 */
	uint8_t *data;           /* a buffer to free, or NULL */
};

static void fetch_ref_release(struct rmq_send_ref *r)
{
	struct fetch_ref *fr = RMQ_CONTAINER_OF(r, struct fetch_ref, ref);
	rmq_log_read_release(&fr->lr);
	free(fr->data);
	free(fr);
}

/* --fetch-send=splice: the slice holding [p, p + len), in its file. */
static bool fetch_ref_file(const struct rmq_send_ref *r, const uint8_t *p, size_t len, int *fd,
			   uint64_t *off)
{
	const struct fetch_ref *fr = RMQ_CONTAINER_OF(r, const struct fetch_ref, ref);
	for (unsigned i = 0; i < fr->lr.nslices; i++) {
		const struct rmq_log_slice *sl = &fr->lr.slices[i];
		if (p >= sl->data && p + len <= sl->data + sl->len) {
			*fd = sl->fd;
			*off = sl->pos + (uint64_t)(p - sl->data);
			return true;
		}
	}
	return false;
}

static struct fetch_ref *fetch_ref_new(void)
{
	struct fetch_ref *fr = calloc(1, sizeof(*fr));
	if (fr) {
		fr->ref.release = fetch_ref_release;
		fr->ref.count = 1; /* the op's, dropped in free_round */
	}
	return fr;
}

struct fetch_op {
	struct rmq_call *call;
	enum op_kind kind;
	struct fetch_batch *batch;   /* FetchBatch parent, or NULL */
	int batch_index;
	int nparts;
	struct fetch_part *parts;
	int outstanding;             /* messages still to come back */
	uint64_t bytes;              /* batch bytes in this round's replies */
	uint32_t min_bytes, max_bytes;
	uint64_t max_wait_ns;
	struct rmq_timer timer;
	bool timer_armed;
	bool expired;
	bool cancelled;              /* the call is gone (subscribe) */
	bool send_blocked;           /* subscribe: waiting for on_drain */
	int reset;                   /* subscribe: OffsetSpec for out-of-range */
	int code;                    /* request-level error */
	char err[320];
};

struct fetch_batch {
	struct rmq_call *call;
	int n, pending;
	struct fetch_op **ops;
};

/* ---- owner side ------------------------------------------------------------ */

static void reply_part(struct fetch_part *fp);

static void unpark(struct fetch_part *fp)
{
	struct rmq_partition *p = fp->parked_on;
	if (!p)
		return;
	if (fp->w.prev)
		fp->w.prev->next = fp->w.next;
	else
		p->waiters = fp->w.next;
	if (fp->w.next)
		fp->w.next->prev = fp->w.prev;
	fp->w.next = fp->w.prev = NULL;
	fp->parked_on = NULL;
}

static void park(struct rmq_partition *p, struct fetch_part *fp)
{
	fp->parked_on = p;
	fp->w.prev = NULL;
	fp->w.next = p->waiters;
	if (p->waiters)
		p->waiters->prev = &fp->w;
	p->waiters = &fp->w;
}

enum read_result {
	READ_NONE,    /* nothing to answer yet */
	READ_DONE,    /* answered (data or error): reply now */
	READ_PENDING, /* cold reads in flight: cold_done() replies */
};

/* A finished cold read's result into the part. */
static void cold_result(struct fetch_part *fp)
{
	struct rmq_cold_read *cr = &fp->cr;
	struct rmq_partition *p = RMQ_CONTAINER_OF(cr->cs, struct rmq_partition, cold);
	fp->reading = false;
	if (cr->err) {
		fp->code = cr->err == RMQ_ECRC || cr->err == RMQ_ECORRUPT ? EC_CORRUPT_MESSAGE
		    : cr->err == -ENOMEM ? EC_RESOURCE_EXHAUSTED : EC_STORAGE_ERROR;
		if (cr->err == RMQ_ECRC)
			snprintf(fp->err, sizeof(fp->err),
				 "batch at offset %lu fails its CRC-32C check: corrupt on disk",
				 (unsigned long)cr->bad_offset);
		else if (cr->err == RMQ_ECORRUPT)
			snprintf(fp->err, sizeof(fp->err),
				 "batch at or before offset %lu does not parse: corrupt on disk",
				 (unsigned long)cr->bad_offset);
		else
			snprintf(fp->err, sizeof(fp->err), "reading offset %lu: %s",
				 (unsigned long)fp->offset, rmq_strerror(cr->err));
		fp->next_offset = fp->offset;
		return;
	}
	fp->data = cr->data;
	cr->data = NULL;
	memcpy(fp->iov, cr->iov, sizeof(fp->iov));
	fp->niov = cr->niov;
	fp->len = cr->len;
	fp->next_offset = cr->next_offset;
	p->fetched_bytes += fp->len;
	p->bs->fetch_bytes += fp->len;
}

static void cold_done(struct rmq_cold_read *cr)
{
	struct fetch_part *fp = RMQ_CONTAINER_OF(cr, struct fetch_part, cr);
	cold_result(fp);
	reply_part(fp);
}

/* Reads the part's data from the log into fp->data: resident slices are
 * copied now, cold ones read by io_uring (READ_PENDING). */
static enum read_result read_part(struct rmq_partition *p, struct fetch_part *fp)
{
	struct rmq_log_read *r = &fp->cr.lr;
	RMQ_DASSERT(!fp->reading);
	if (fp->start == START_EARLIEST)
		fp->offset = rmq_log_start_offset(p->log);
	else if (fp->start == START_LATEST)
		fp->offset = p->hw;
	else if (fp->start == START_TIME || fp->start == START_MAX_TIME)
		fp->offset = rmq_lookup_time(p, fp->start == START_MAX_TIME, fp->start_ts_ms, NULL);
	fp->start = 0;
	/* Consumers read below the partition's high watermark: the log's
	 * durable end while this node is the partition's whole ISR, the
	 * smallest over the ISR with replication (lead.c).  A replica read
	 * goes to the log's own durable end. */
	int rc = rmq_log_read_below(p->log, fp->offset, fp->max_bytes,
				    fp->replica ? UINT64_MAX : p->hw, r);

	fp->hw = p->hw;
	fp->log_start = r->log_start_offset;
	fp->next_offset = fp->offset;
	if (rc == RMQ_ERANGE) {
		fp->code = EC_OFFSET_OUT_OF_RANGE;
		snprintf(fp->err, sizeof(fp->err),
			 "offset %lu is outside the log [%lu, %lu]", (unsigned long)fp->offset,
			 (unsigned long)r->log_start_offset, (unsigned long)r->high_watermark);
		return READ_DONE;
	}
	if (rc < 0) {
		fp->code = rc == RMQ_EFENCED ? EC_STORAGE_ERROR : EC_CORRUPT_MESSAGE;
		snprintf(fp->err, sizeof(fp->err), "reading offset %lu: %s",
			 (unsigned long)fp->offset, rmq_strerror(rc));
		return READ_DONE;
	}
	if (r->nslices == 0)
		return READ_NONE;
	if (p->bs->b->cfg.fetch_send != RMQ_FETCH_COPY) {
		bool all = true;
		for (unsigned i = 0; i < r->nslices && all; i++)
			all = rmq_cold_resident(r->slices[i].data, r->slices[i].len);
		struct fetch_ref *fr = all ? fetch_ref_new() : NULL;
		if (fr) {
			/* The pins move to the reference; the origin sends from
			 * the mapping. */
			fr->lr = *r;
			r->nslices = 0;
			if (p->bs->b->cfg.fetch_send == RMQ_FETCH_SPLICE) {
				/* The socket may get the page cache's pages
				 * themselves (net/conn.c, "Splice"). */
				rmq_log_read_lend(&fr->lr);
				fr->ref.file = fetch_ref_file;
			}
			for (unsigned i = 0; i < fr->lr.nslices; i++)
				fp->iov[i] = (struct iovec){(void *)fr->lr.slices[i].data,
							    fr->lr.slices[i].len};
			fp->niov = fr->lr.nslices;
			fp->ref = fr;
			fp->len = fr->lr.bytes;
			fp->next_offset = fr->lr.next_offset;
			p->fetched_bytes += fp->len;
			p->bs->fetch_bytes += fp->len;
			return READ_DONE;
		}
	}
	/* Copied (--fetch-copy, or some slice is not in memory): resident
	 * slices now, cold ones from the disk. */
	fp->cr.cs = &p->cold;
	fp->cr.ahead_bytes = fp->max_bytes;
	fp->cr.cb = cold_done;
	if (rmq_cold_read_start(&fp->cr)) {
		fp->reading = true;
		return READ_PENDING;
	}
	cold_result(fp);
	return READ_DONE;
}

static void exec_part(struct fetch_part *fp)
{
	struct rmq_bshard *bs = rmq_bshard_current();
	int code;
	struct rmq_partition *p = rmq_partition_find(bs, fp->topic, fp->partition, &code);

	fp->owner = bs->id;
	fp->code = EC_OK;
	fp->err[0] = '\0';
	fp->data = NULL;
	fp->len = 0;
	fp->niov = 0;
	fp->ref = NULL;
	if (!p && fp->replica && code == EC_NOT_AVAILABLE) {
		fp->code = EC_REPLICA_NOT_AVAILABLE;
		snprintf(fp->err, sizeof(fp->err), "no replica of %s-%u to read on broker %u: it %s",
			 fp->topic, fp->partition, bs->b->self,
			 rmq_partition_unavailable(bs, fp->topic, fp->partition));
		reply_part(fp);
		return;
	}
	if (!p) {
		fp->code = code;
		snprintf(fp->err, sizeof(fp->err), code == EC_TOPIC_NOT_FOUND ? "unknown topic '%s'"
										: "partition %s-%u does not exist",
			 fp->topic, fp->partition);
		reply_part(fp);
		return;
	}
	enum read_result rr = read_part(p, fp);
	if (rr == READ_PENDING)
		return; /* cold_done replies */
	if (rr == READ_DONE || !fp->may_wait) {
		reply_part(fp);
		return;
	}
	park(p, fp);
}

static void exec_msg(struct rmq_xmsg *m)
{
	exec_part(RMQ_CONTAINER_OF(m, struct fetch_part, msg));
}

void rmq_fetch_wake(struct rmq_partition *p)
{
	struct rmq_fetch_waiter *w = p->waiters;
	while (w) {
		struct rmq_fetch_waiter *next = w->next;
		struct fetch_part *fp = RMQ_CONTAINER_OF(w, struct fetch_part, w);
		enum read_result rr = read_part(p, fp);
		if (rr != READ_NONE)
			unpark(fp);
		if (rr == READ_DONE)
			reply_part(fp);
		w = next;
	}
}

void rmq_fetch_drop_waiters(struct rmq_partition *p)
{
	/* Cold reads still in flight write into their parts and unpin this
	 * log's segments when they complete (and reply then): the partition
	 * waits for p->cold.reads to reach 0 before its log goes
	 * (partition.c), without waiting here. */
	rmq_cold_close(&p->cold);
	while (p->waiters) {
		struct fetch_part *fp = RMQ_CONTAINER_OF(p->waiters, struct fetch_part, w);
		unpark(fp);
		fp->code = EC_NOT_AVAILABLE;
		snprintf(fp->err, sizeof(fp->err), "partition %s-%u was closed", fp->topic,
			 fp->partition);
		reply_part(fp);
	}
}

static void cancel_on_owner(struct rmq_xmsg *m);
static void cancel_ack(struct rmq_xmsg *m);

/* ---- origin side ------------------------------------------------------------- */

static void part_replied(struct rmq_xmsg *m);
static void round_start(struct fetch_op *op);
static void op_maybe_finish(struct fetch_op *op);

static void reply_part(struct fetch_part *fp)
{
	fp->msg.fn = part_replied;
	rmq_shard_post(rmq_shard_current(), fp->origin, &fp->msg);
}

static void cancel_on_owner(struct rmq_xmsg *m)
{
	struct fetch_part *fp = RMQ_CONTAINER_OF(m, struct fetch_part, cmsg);
	if (fp->parked_on) {
		struct rmq_partition *p = fp->parked_on;
		unpark(fp);
		/* Whatever there is now, possibly nothing; cold data is
		 * answered by cold_done. */
		if (read_part(p, fp) != READ_PENDING)
			reply_part(fp);
	}
	/* A part with cold reads in flight is not parked: its reply follows
	 * from cold_done, this ack goes now; the origin waits for both. */
	fp->cmsg.fn = cancel_ack;
	rmq_shard_post(rmq_shard_current(), fp->origin, &fp->cmsg);
}

static void cancel_ack(struct rmq_xmsg *m)
{
	struct fetch_part *fp = RMQ_CONTAINER_OF(m, struct fetch_part, cmsg);
	struct fetch_op *op = fp->op;
	op->outstanding--;
	op_maybe_finish(op);
}

/* Asks the owners of parts still parked to answer now. */
static void cancel_parked(struct fetch_op *op)
{
	for (int i = 0; i < op->nparts; i++) {
		struct fetch_part *fp = &op->parts[i];
		if (fp->replied || fp->cancel_sent || !fp->may_wait)
			continue;
		fp->cancel_sent = true;
		op->outstanding++;
		fp->cmsg.fn = cancel_on_owner;
		rmq_shard_post(rmq_shard_current(), fp->owner, &fp->cmsg);
	}
}

static void on_timer(struct rmq_timer *t)
{
	struct fetch_op *op = RMQ_CONTAINER_OF(t, struct fetch_op, timer);
	op->timer_armed = false;
	op->expired = true;
	cancel_parked(op);
}

static void part_replied(struct rmq_xmsg *m)
{
	struct fetch_part *fp = RMQ_CONTAINER_OF(m, struct fetch_part, msg);
	struct fetch_op *op = fp->op;
	if (!fp->ref && fp->data && fp->len) {
		if (rmq_bshard_current()->b->cfg.fetch_send != RMQ_FETCH_COPY) {
			/* Cold-read batches are sent from their buffer too. */
			struct fetch_ref *fr = fetch_ref_new();
			if (fr) {
				fr->data = fp->data;
				fp->data = NULL;
				fp->ref = fr;
			}
		}
	}
	fp->replied = true;
	op->outstanding--;
	op->bytes += fp->len;
	if (fp->code != EC_OK || op->bytes >= op->min_bytes)
		cancel_parked(op); /* enough: stop waiting on the others */
	op_maybe_finish(op);
}

/* Encodes one FetchPartitionResponse header (everything but batches). */
static size_t part_header(const struct fetch_part *fp, uint8_t **out)
{
	Rustmq__Client__FetchPartitionResponse r = RUSTMQ__CLIENT__FETCH_PARTITION_RESPONSE__INIT;
	Rustmq__Common__TopicPartition tp = RUSTMQ__COMMON__TOPIC_PARTITION__INIT;
	tp.topic = (char *)fp->topic;
	tp.partition = fp->partition;
	r.topic_partition = &tp;
	r.error_code = (Rustmq__Common__ErrorCode)fp->code;
	r.error_message = (char *)fp->err;
	r.high_watermark = fp->hw;
	r.last_stable_offset = fp->hw; /* no transactions: everything is stable */
	r.log_start_offset = fp->log_start;
	size_t n = rustmq__client__fetch_partition_response__get_packed_size(&r);
	*out = malloc(n + 1);
	if (!*out)
		return 0;
	rustmq__client__fetch_partition_response__pack(&r, *out);
	return n;
}

/* Builds the FetchResponse of this round as iovecs over the parts' data:
 * for each part, key 0x1A + length + header + stored batches.  When
 * only_data, parts with neither data nor an error are left out
 * (Subscribe).  Returns the iovec count, or -1 on allocation failure.
 * The small buffers to free are returned in bufs; refs[i] is the
 * reference that keeps iov[i] valid (zero copy), or NULL to copy it. */
static int build_response(struct fetch_op *op, bool only_data, struct iovec **iov_out,
			  struct rmq_send_ref ***refs_out, uint8_t ***bufs_out, int *nbufs)
{
	int max = (1 + RMQ_LOG_SLICES_MAX) * op->nparts + 2, n = 0, nb = 0;
	struct iovec *iov = calloc((size_t)max, sizeof(*iov));
	struct rmq_send_ref **refs = calloc((size_t)max, sizeof(*refs));
	uint8_t **bufs = calloc((size_t)op->nparts + 2, sizeof(*bufs));
	if (!iov || !bufs || !refs)
		goto nomem;
	if (op->code != EC_OK) {
		/* Request-level error: FetchResponse{error_code, error_message}. */
		Rustmq__Client__FetchResponse r = RUSTMQ__CLIENT__FETCH_RESPONSE__INIT;
		r.error_code = (Rustmq__Common__ErrorCode)op->code;
		r.error_message = op->err;
		size_t len = rustmq__client__fetch_response__get_packed_size(&r);
		bufs[nb] = malloc(len + 1);
		if (!bufs[nb])
			goto nomem;
		rustmq__client__fetch_response__pack(&r, bufs[nb]);
		iov[n++] = (struct iovec){bufs[nb++], len};
	} else {
		uint64_t bytes = 0;
		for (int i = 0; i < op->nparts; i++)
			bytes += op->parts[i].len;
		/* A fetch quota is charged what the answer carries: the
		 * principal's next call waits for it (quota.h). */
		struct rmq_bshard *cbs = rmq_call_app(op->call);
		if (bytes && rmq_quota_any(cbs)) {
			const char *who = rmq_call_principal(op->call);
			(void)rmq_quota_charge(cbs, who ? who : RMQ_AUTH_ANONYMOUS, 0, bytes, false);
		}
		uint32_t thr = rmq_call_throttle_ms(op->call);
		if (thr && !only_data) {
			/* throttle_time (4), before the partitions: fields may
			 * come in any order. */
			uint8_t dur[32], *b = malloc(48);
			size_t dn = rmq_pb_put_uint(dur, 1, thr / 1000);
			dn += rmq_pb_put_uint(dur + dn, 2, (uint64_t)(thr % 1000) * 1000000);
			if (!b)
				goto nomem;
			size_t bn = rmq_pb_put_len(b, 4, dn);
			memcpy(b + bn, dur, dn);
			bufs[nb++] = b;
			iov[n++] = (struct iovec){b, bn + dn};
		}
		for (int i = 0; i < op->nparts; i++) {
			struct fetch_part *fp = &op->parts[i];
			if (only_data && (fp->dropped || (fp->len == 0 && fp->code == EC_OK)))
				continue;
			uint8_t *hdr;
			size_t hlen = part_header(fp, &hdr);
			if (!hdr)
				goto nomem;
			/* Prefix the header with the element's key and length; the
			 * header buffer has the room at its front by moving it. */
			uint8_t pre[16];
			size_t pl = rmq_pb_put_len(pre, 3, hlen + fp->len);
			uint8_t *b = malloc(pl + hlen);
			if (!b) {
				free(hdr);
				goto nomem;
			}
			memcpy(b, pre, pl);
			memcpy(b + pl, hdr, hlen);
			free(hdr);
			bufs[nb++] = b;
			iov[n++] = (struct iovec){b, pl + hlen};
			for (unsigned k = 0; k < fp->niov; k++) {
				if (fp->iov[k].iov_len == 0)
					continue;
				refs[n] = fp->ref ? &fp->ref->ref : NULL;
				iov[n++] = fp->iov[k];
			}
		}
	}
	*iov_out = iov;
	*refs_out = refs;
	*bufs_out = bufs;
	*nbufs = nb;
	return n;
nomem:
	for (int i = 0; i < nb; i++)
		free(bufs[i]);
	free(bufs);
	free(refs);
	free(iov);
	return -1;
}

static void free_round(struct fetch_op *op)
{
	for (int i = 0; i < op->nparts; i++) {
		struct fetch_part *fp = &op->parts[i];
		free(fp->data);
		fp->data = NULL;
		fp->len = 0;
		fp->niov = 0;
		if (fp->ref) /* the send queue may hold it a while longer */
			rmq_send_ref_put(&fp->ref->ref);
		fp->ref = NULL;
	}
}

static void op_free(struct fetch_op *op)
{
	free_round(op);
	free(op->parts);
	rmq_call_unref(op->call);
	free(op);
}

static void batch_done(struct fetch_batch *fb);

/* Sends this round's answer.  Returns 0, or RMQ_EFULL (subscribe: wait for
 * on_drain), or another send error. */
static int send_round(struct fetch_op *op)
{
	struct iovec *iov;
	struct rmq_send_ref **refs;
	uint8_t **bufs;
	int nb;
	int n = build_response(op, op->kind == OP_SUBSCRIBE, &iov, &refs, &bufs, &nb);
	if (n < 0)
		return -ENOMEM;
	/* A unary answer is one message even when empty (a Fetch of no
	 * partitions); a subscription sends only rounds with something. */
	int rc = n > 0			     ? rmq_call_sendv_ref(op->call, iov, refs, n)
		 : op->kind == OP_SUBSCRIBE ? 0
					     : rmq_call_send(op->call, "", 0);
	for (int i = 0; i < nb; i++)
		free(bufs[i]);
	free(bufs);
	free(refs);
	free(iov);
	return rc;
}

/*
 * Cuts this round's data to the response's max_bytes, in request order
 * (consumer.proto): batches are never split, and the first batch of the
 * first partition with data is kept whole even when larger, so a consumer
 * always makes progress.  The owners read each partition up to its own
 * cap concurrently; only here, with every reply in, is the order known.
 * A subscription's next position follows what is kept.
 */
static void trim_round(struct fetch_op *op)
{
	uint64_t total = 0;
	bool first = true;
	for (int i = 0; i < op->nparts; i++) {
		struct fetch_part *fp = &op->parts[i];
		size_t keep = 0;
		uint64_t next = fp->offset;
		bool cut = false;
		/* Each iovec is whole entries (a slice, or the buffer). */
		for (unsigned k = 0; k < fp->niov; k++) {
			const uint8_t *b = fp->iov[k].iov_base;
			size_t len = fp->iov[k].iov_len, kk = 0;
			if (cut) {
				fp->iov[k].iov_len = 0;
				continue;
			}
			while (kk < len) {
				struct rmq_batch_view v;
				int n = rmq_batch_parse_header(b + kk, len - kk, &v);
				if (n <= 0 || (!first && total + (uint64_t)n > op->max_bytes)) {
					/* n <= 0: the log returns whole entries, not reached */
					cut = true;
					break;
				}
				first = false;
				total += (uint64_t)n;
				kk += (size_t)n;
				next = rmq_batch_last_offset(&v.hdr) + 1;
			}
			fp->iov[k].iov_len = kk;
			keep += kk;
		}
		if (keep < fp->len) {
			fp->len = keep;
			fp->next_offset = next;
		}
	}
}

static void op_maybe_finish(struct fetch_op *op)
{
	if (op->outstanding > 0)
		return;
	trim_round(op);
	if (op->timer_armed) {
		rmq_timer_cancel(rmq_shard_current(), &op->timer);
		op->timer_armed = false;
	}
	if (op->batch) {
		struct fetch_batch *fb = op->batch;
		if (--fb->pending == 0)
			batch_done(fb);
		return;
	}
	if (op->kind == OP_FETCH) {
		struct rmq_bshard *bs = rmq_bshard_current();
		bs->fetch_requests++;
		int rc = send_round(op);
		if (rc < 0 && rc != RMQ_ECLOSED)
			rmq_call_finishf(op->call, RMQ_GRPC_RESOURCE_EXHAUSTED, "fetch answer: %s",
					 rmq_strerror(rc));
		else
			rmq_call_finish(op->call, RMQ_GRPC_OK, NULL);
		rmq_call_set_ctx(op->call, NULL);
		op_free(op);
		return;
	}
	/* Subscribe: send, advance, go again. */
	if (op->cancelled || rmq_call_done(op->call)) {
		rmq_call_set_ctx(op->call, NULL);
		op_free(op);
		return;
	}
	bool any = false, failed = false;
	for (int i = 0; i < op->nparts; i++) {
		struct fetch_part *fp = &op->parts[i];
		if (fp->dropped)
			continue;
		any |= fp->len > 0 || fp->code != EC_OK;
		if (fp->code == EC_OFFSET_OUT_OF_RANGE &&
		    (op->reset == RUSTMQ__CLIENT__OFFSET_SPEC__OFFSET_SPEC_EARLIEST ||
		     op->reset == RUSTMQ__CLIENT__OFFSET_SPEC__OFFSET_SPEC_LATEST)) {
			/* Retention passed the position: continue where asked. */
			fp->start = op->reset == RUSTMQ__CLIENT__OFFSET_SPEC__OFFSET_SPEC_EARLIEST
					    ? START_EARLIEST
					    : START_LATEST;
			fp->code = EC_OK;
		} else if (fp->code != EC_OK) {
			failed = true;
		}
	}
	if (any) {
		int rc = send_round(op);
		if (rc == RMQ_EFULL) {
			op->send_blocked = true; /* resumes in rmq_fetch_drain */
			return;
		}
		if (rc < 0) {
			if (rc != RMQ_ECLOSED)
				rmq_call_finishf(op->call, RMQ_GRPC_INTERNAL, "subscribe: %s", rmq_strerror(rc));
			rmq_call_set_ctx(op->call, NULL);
			op_free(op);
			return;
		}
	}
	if (failed) {
		/* Each failed partition was reported in the message just sent
		 * and is dropped from the stream; the others go on.  With none
		 * left the stream ends with status OK (consumer.proto). */
		int left = 0;
		for (int i = 0; i < op->nparts; i++) {
			struct fetch_part *fp = &op->parts[i];
			if (!fp->dropped && fp->code != EC_OK)
				fp->dropped = true;
			left += !fp->dropped;
		}
		if (left == 0) {
			rmq_call_finish(op->call, RMQ_GRPC_OK, NULL);
			rmq_call_set_ctx(op->call, NULL);
			op_free(op);
			return;
		}
	}
	round_start(op);
}

static void round_start(struct fetch_op *op)
{
	struct rmq_bshard *bs = rmq_bshard_current();

	/* Subscribe rounds continue where the last one ended; a partition
	 * that failed was dropped (op_maybe_finish) and is not read again. */
	for (int i = 0; i < op->nparts; i++) {
		struct fetch_part *fp = &op->parts[i];
		if (op->kind == OP_SUBSCRIBE && fp->code == EC_OK && fp->len > 0)
			fp->offset = fp->next_offset;
	}
	free_round(op);
	bool routed_err = false;
	op->bytes = 0;
	op->expired = false;
	op->outstanding = op->nparts;
	/* A fetch waits when asked to; a subscription always waits for data,
	 * and uses the timer only to release a round below min_bytes. */
	bool wait = op->kind == OP_SUBSCRIBE || (op->max_wait_ns > 0 && op->min_bytes > 0);
	bool timed = op->kind == OP_FETCH ? wait : op->min_bytes > 1 && op->max_wait_ns > 0;
	if (timed) {
		uint64_t deadline = rmq_now_ns() + op->max_wait_ns;
		uint64_t call_deadline = rmq_call_deadline_ns(op->call);
		if (call_deadline && call_deadline < deadline)
			deadline = call_deadline; /* answer before the client gives up */
		if (rmq_timer_start(bs->s, &op->timer, deadline, on_timer) == 0)
			op->timer_armed = true;
		else if (op->kind == OP_FETCH)
			wait = false; /* no timer to end the wait: answer now */
	}
	for (int i = 0; i < op->nparts; i++) {
		struct fetch_part *fp = &op->parts[i];
		if (fp->dropped) {
			fp->replied = true;
			op->outstanding--;
			continue;
		}
		fp->replied = false;
		fp->cancel_sent = false;
		fp->may_wait = wait;
		fp->code = EC_OK;
		int code;
		int owner = rmq_route(bs, fp->topic, fp->partition, &code);
		if (owner < 0 && fp->replica && (code == EC_NOT_LEADER || code == EC_LEADER_NOT_AVAILABLE))
			owner = (int)rmq_partition_shard(fp->topic, fp->partition, bs->nshards);
		if (owner < 0) {
			fp->code = code;
			rmq_route_error(bs, fp->topic, fp->partition, code, fp->err, sizeof(fp->err));
			fp->hw = fp->log_start = 0;
			fp->replied = true;
			op->outstanding--;
			routed_err = true;
			continue;
		}
		fp->owner = (unsigned)owner;
		fp->origin = bs->id;
		fp->msg.fn = exec_msg;
		rmq_shard_post(rmq_shard_current(), (unsigned)owner, &fp->msg);
	}
	/* A partition that failed here answers the round at once, as one
	 * that fails on its owner does (part_replied): the parts just posted
	 * are cancelled behind their reads, which run first. */
	if (routed_err && wait)
		cancel_parked(op);
	op_maybe_finish(op);
}

/* The memory an op holds for its request. */
static size_t op_bytes(const struct fetch_op *op)
{
	return sizeof(*op) + (size_t)op->nparts * sizeof(struct fetch_part);
}

static uint64_t duration_ns(const Google__Protobuf__Duration *d)
{
	if (!d || d->seconds < 0 || d->nanos < 0)
		return 0;
	return (uint64_t)d->seconds * 1000000000ULL + (uint64_t)d->nanos;
}

/* A fetch_op from a FetchRequest.  Returns NULL and fills err on a bad
 * request. */
/* An answer must fit one gRPC message: the batches of a round are capped
 * at the message limit less room for the per-partition headers. */
static uint32_t answer_cap(const struct rmq_bshard *bs, uint32_t asked, unsigned share)
{
	uint64_t limit = bs->b->cfg.net.max_message_bytes;
	uint64_t room = limit > (128u << 10) ? limit - (64u << 10) : limit / 2;
	room /= share ? share : 1;
	return asked < room ? asked : (uint32_t)room;
}

static struct fetch_op *op_from_request(struct rmq_bshard *bs, struct rmq_call *c,
					const Rustmq__Client__FetchRequest *req, unsigned share)
{
	struct fetch_op *op = calloc(1, sizeof(*op));
	if (!op)
		return NULL;
	op->call = c;
	rmq_call_ref(c);
	op->kind = OP_FETCH;
	op->min_bytes = req->min_bytes;
	op->max_bytes = answer_cap(bs, req->max_bytes ? req->max_bytes : FETCH_DEFAULT_MAX_BYTES, share);
	op->max_wait_ns = duration_ns(req->max_wait);
	if (op->max_wait_ns > bs->b->cfg.max_fetch_wait_ns)
		op->max_wait_ns = bs->b->cfg.max_fetch_wait_ns;
	bool replica = req->replica_id != 0 && req->replica_id != UINT32_MAX;
	if (replica)
		op->max_wait_ns = 0; /* answered at once (the file's comment) */
	op->nparts = (int)req->n_partitions;
	op->parts = calloc(req->n_partitions ? req->n_partitions : 1, sizeof(*op->parts));
	if (!op->parts) {
		op_free(op);
		return NULL;
	}
	for (size_t i = 0; i < req->n_partitions; i++) {
		const Rustmq__Client__FetchPartition *fpr = req->partitions[i];
		struct fetch_part *fp = &op->parts[i];
		fp->op = op;
		if (fpr->topic_partition) {
			snprintf(fp->topic, sizeof(fp->topic), "%s", fpr->topic_partition->topic);
			fp->partition = fpr->topic_partition->partition;
		}
		fp->offset = fpr->fetch_offset;
		fp->replica = replica;
		/* Each partition reads up to its cap (never more than the whole
		 * response may hold); trim_round applies max_bytes in request
		 * order once every partition is read. */
		uint32_t cap = fpr->partition_max_bytes ? fpr->partition_max_bytes : FETCH_DEFAULT_PART_BYTES;
		fp->max_bytes = cap < op->max_bytes ? cap : op->max_bytes;
	}
	return op;
}

void rmq_fetch_unary(struct rmq_call *c, void *msg)
{
	struct rmq_bshard *bs = rmq_call_app(c);
	Rustmq__Client__FetchRequest *req = msg;
	char err[400];
	int code = rmq_request_tps(bs, (void *const *)req->partitions, req->n_partitions,
				   offsetof(Rustmq__Client__FetchPartition, topic_partition), true, err,
				   sizeof(err));
	if (code == EC_OK)
		code = rmq_auth_topics(c, (void *const *)req->partitions, req->n_partitions,
				       offsetof(Rustmq__Client__FetchPartition, topic_partition),
				       RMQ_ACL_READ, err, sizeof(err));
	if (code != EC_OK) {
		rustmq__client__fetch_request__free_unpacked(req, NULL);
		rmq_refuse(c, code, "%s", err);
		return;
	}
	struct fetch_op *op = op_from_request(bs, c, req, 1);
	rustmq__client__fetch_request__free_unpacked(req, NULL);
	if (!op) {
		rmq_call_finish(c, RMQ_GRPC_RESOURCE_EXHAUSTED, "out of memory");
		return;
	}
	/* Freed at the answer, at the latest after max_wait: request memory. */
	rmq_call_charge(c, op_bytes(op));
	rmq_call_set_ctx(c, op);
	round_start(op);
}

/* ---- FetchBatch ------------------------------------------------------------------ */

static void batch_done(struct fetch_batch *fb)
{
	/* FetchBatchResponse { responses (3): FetchResponse } : each op's
	 * round is one element. */
	struct iovec *all = NULL;
	struct rmq_send_ref **allrefs = NULL;
	int nall = 0, cap = 0;
	uint8_t **frees = NULL;
	int nfree = 0, fcap = 0;
	bool ok = true;

	for (int k = 0; k < fb->n && ok; k++) {
		struct iovec *iov;
		struct rmq_send_ref **refs;
		uint8_t **bufs;
		int nb;
		int n = build_response(fb->ops[k], false, &iov, &refs, &bufs, &nb);
		if (n < 0) {
			ok = false;
			break;
		}
		size_t inner = 0;
		for (int i = 0; i < n; i++)
			inner += iov[i].iov_len;
		if (nall + n + 1 > cap) {
			cap = (nall + n + 1) * 2;
			struct iovec *na = realloc(all, (size_t)cap * sizeof(*all));
			if (na)
				all = na;
			struct rmq_send_ref **nr = realloc(allrefs, (size_t)cap * sizeof(*allrefs));
			if (nr)
				allrefs = nr;
			if (!na || !nr) {
				free(iov);
				free(refs);
				for (int i = 0; i < nb; i++)
					free(bufs[i]);
				free(bufs);
				ok = false;
				break;
			}
		}
		if (nfree + nb + 1 > fcap) {
			fcap = (nfree + nb + 1) * 2;
			frees = realloc(frees, (size_t)fcap * sizeof(*frees));
		}
		uint8_t *pre = malloc(16);
		if (!all || !frees || !pre) {
			free(pre);
			ok = false;
			break;
		}
		allrefs[nall] = NULL;
		all[nall++] = (struct iovec){pre, rmq_pb_put_len(pre, 3, inner)};
		frees[nfree++] = pre;
		memcpy(all + nall, iov, (size_t)n * sizeof(*iov));
		memcpy(allrefs + nall, refs, (size_t)n * sizeof(*refs));
		nall += n;
		memcpy(frees + nfree, bufs, (size_t)nb * sizeof(*bufs));
		nfree += nb;
		free(iov);
		free(refs);
		free(bufs);
	}
	if (ok)
		rmq_call_sendv_ref(fb->call, all, allrefs, nall);
	rmq_call_finish(fb->call, ok ? RMQ_GRPC_OK : RMQ_GRPC_RESOURCE_EXHAUSTED,
			ok ? NULL : "out of memory");
	for (int i = 0; i < nfree; i++)
		free(frees[i]);
	free(frees);
	free(all);
	free(allrefs);
	for (int k = 0; k < fb->n; k++)
		op_free(fb->ops[k]);
	rmq_call_set_ctx(fb->call, NULL);
	rmq_call_unref(fb->call);
	free(fb->ops);
	free(fb);
}

void rmq_fetch_batch(struct rmq_call *c, void *msg)
{
	struct rmq_bshard *bs = rmq_call_app(c);
	Rustmq__Client__FetchBatchRequest *req = msg;
	char err[400];
	size_t total = 0;
	for (size_t i = 0; i < req->n_fetches; i++) {
		const Rustmq__Client__FetchRequest *f = req->fetches[i];
		total += f->n_partitions;
		int code = rmq_request_tps(bs, (void *const *)f->partitions, f->n_partitions,
				       offsetof(Rustmq__Client__FetchPartition, topic_partition), true, err,
				       sizeof(err));
		if (code == EC_OK)
			code = rmq_auth_topics(c, (void *const *)f->partitions, f->n_partitions,
					       offsetof(Rustmq__Client__FetchPartition, topic_partition),
					       RMQ_ACL_READ, err, sizeof(err));
		if (code == EC_OK)
			code = rmq_request_partitions(bs, total, err, sizeof(err));
		if (code != EC_OK) {
			rustmq__client__fetch_batch_request__free_unpacked(req, NULL);
			rmq_refuse(c, code, "fetches[%zu]: %s", i, err);
			return;
		}
	}
	struct fetch_batch *fb = calloc(1, sizeof(*fb));
	if (!fb || !(fb->ops = calloc(req->n_fetches ? req->n_fetches : 1, sizeof(*fb->ops)))) {
		free(fb);
		rustmq__client__fetch_batch_request__free_unpacked(req, NULL);
		rmq_call_finish(c, RMQ_GRPC_RESOURCE_EXHAUSTED, "out of memory");
		return;
	}
	fb->call = c;
	rmq_call_ref(c);
	for (size_t i = 0; i < req->n_fetches; i++) {
		struct fetch_op *op = op_from_request(bs, c, req->fetches[i], (unsigned)req->n_fetches);
		if (!op)
			break;
		op->batch = fb;
		op->batch_index = (int)i;
		fb->ops[fb->n++] = op;
		rmq_call_charge(c, op_bytes(op));
	}
	rustmq__client__fetch_batch_request__free_unpacked(req, NULL);
	rmq_call_set_ctx(c, fb);
	if (fb->n == 0) {
		fb->pending = 1;
		batch_done(fb);
		return;
	}
	fb->pending = fb->n;
	int n = fb->n;
	for (int i = 0; i < n; i++)
		round_start(fb->ops[i]);
}

/* ---- Subscribe ------------------------------------------------------------------ */

void rmq_fetch_subscribe(struct rmq_call *c, void *msg)
{
	struct rmq_bshard *bs = rmq_call_app(c);
	Rustmq__Client__SubscribeRequest *req = msg;
	if (req->n_partitions == 0) {
		rustmq__client__subscribe_request__free_unpacked(req, NULL);
		rmq_call_finish(c, RMQ_GRPC_INVALID_ARGUMENT, "SubscribeRequest: no partitions");
		return;
	}
	char err[400];
	int code = rmq_request_tps(bs, (void *const *)req->partitions, req->n_partitions,
				   offsetof(Rustmq__Client__SubscribePartition, topic_partition), true, err,
				   sizeof(err));
	if (code == EC_OK)
		code = rmq_auth_topics(c, (void *const *)req->partitions, req->n_partitions,
				       offsetof(Rustmq__Client__SubscribePartition, topic_partition),
				       RMQ_ACL_READ, err, sizeof(err));
	if (code != EC_OK) {
		rustmq__client__subscribe_request__free_unpacked(req, NULL);
		rmq_refuse(c, code, "%s", err);
		return;
	}
	struct fetch_op *op = calloc(1, sizeof(*op));
	if (!op || !(op->parts = calloc(req->n_partitions, sizeof(*op->parts)))) {
		free(op);
		rustmq__client__subscribe_request__free_unpacked(req, NULL);
		rmq_call_finish(c, RMQ_GRPC_RESOURCE_EXHAUSTED, "out of memory");
		return;
	}
	op->call = c;
	rmq_call_ref(c);
	op->kind = OP_SUBSCRIBE;
	op->nparts = (int)req->n_partitions;
	op->min_bytes = req->min_bytes ? req->min_bytes : 1;
	op->max_bytes = answer_cap(bs, req->max_bytes ? req->max_bytes : FETCH_DEFAULT_MAX_BYTES, 1);
	/* A subscription always waits for data; max_wait only bounds how long
	 * a partial round (below min_bytes) is held back. */
	op->max_wait_ns = duration_ns(req->max_wait);
	if (op->max_wait_ns == 0 || op->max_wait_ns > bs->b->cfg.max_fetch_wait_ns)
		op->max_wait_ns = bs->b->cfg.max_fetch_wait_ns;
	for (size_t i = 0; i < req->n_partitions; i++) {
		const Rustmq__Client__SubscribePartition *sp = req->partitions[i];
		struct fetch_part *fp = &op->parts[i];
		fp->op = op;
		if (sp->topic_partition) {
			snprintf(fp->topic, sizeof(fp->topic), "%s", sp->topic_partition->topic);
			fp->partition = sp->topic_partition->partition;
		}
		fp->max_bytes = sp->partition_max_bytes ? sp->partition_max_bytes : FETCH_DEFAULT_PART_BYTES;
		if (sp->start_case == RUSTMQ__CLIENT__SUBSCRIBE_PARTITION__START_OFFSET) {
			fp->offset = sp->offset;
		} else if (sp->start_case != RUSTMQ__CLIENT__SUBSCRIBE_PARTITION__START_START_SPEC) {
			fp->start = START_LATEST;
		} else {
			switch (sp->start_spec) {
			case RUSTMQ__CLIENT__OFFSET_SPEC__OFFSET_SPEC_EARLIEST:
				fp->start = START_EARLIEST;
				break;
			case RUSTMQ__CLIENT__OFFSET_SPEC__OFFSET_SPEC_TIMESTAMP:
				fp->start = START_TIME;
				if (sp->start_timestamp)
					fp->start_ts_ms = sp->start_timestamp->seconds * 1000 +
							  sp->start_timestamp->nanos / 1000000;
				break;
			case RUSTMQ__CLIENT__OFFSET_SPEC__OFFSET_SPEC_MAX_TIMESTAMP:
				fp->start = START_MAX_TIME;
				break;
			default: /* LATEST, UNSPECIFIED */
				fp->start = START_LATEST;
			}
		}
	}
	op->reset = req->offset_reset;
	rustmq__client__subscribe_request__free_unpacked(req, NULL);
	rmq_call_set_ctx(c, op);
	round_start(op);
}

void rmq_fetch_cancel(struct rmq_call *c)
{
	void *ctx = rmq_call_get_ctx(c);
	if (!ctx)
		return;
	switch (rmq_call_rpc(c)) {
	case RMQ_RPC_SUBSCRIBE: {
		struct fetch_op *op = ctx;
		op->cancelled = true;
		if (op->send_blocked) {
			op->send_blocked = false;
			rmq_call_set_ctx(c, NULL);
			op_free(op);
			return;
		}
		cancel_parked(op); /* the op frees itself when everything is back */
		break;
	}
	case RMQ_RPC_FETCH:
		cancel_parked(ctx);
		break;
	case RMQ_RPC_FETCH_BATCH: {
		struct fetch_batch *fb = ctx;
		for (int i = 0; i < fb->n; i++)
			cancel_parked(fb->ops[i]);
		break;
	}
	default:
		RMQ_ASSERT(!"rmq_fetch_cancel on a call that is not a fetch");
	}
}

void rmq_fetch_drain(struct rmq_call *c)
{
	struct fetch_op *op = rmq_call_get_ctx(c);
	if (!op || !op->send_blocked)
		return;
	op->send_blocked = false;
	op_maybe_finish(op); /* resends the round */
}
