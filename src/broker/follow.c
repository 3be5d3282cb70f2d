/* SPDX-License-Identifier: Apache-2.0 */
/* follow.c - a follower's side of replication (follow.h). */
#include "broker/follow.h"

#include "broker/broker.h"
#include "broker/dedup.h"
#include "broker/errcode.h"
#include "broker/meta.h"
#include "broker/partition.h"
#include "broker/reply.h"
#include "broker/replication.pb-c.h"
#include "core/assert.h"
#include "core/error.h"
#include "core/log.h"
#include "core/pbwire.h"
#include "core/util.h"
#include "net/grpc.h"

#include <errno.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* ReplicateDataRequest's fields. */
enum {
	F_VERSION = 1, F_LEADER_ID, F_LEADER_EPOCH, F_TOPIC_PARTITION, F_BATCHES,
	F_PREV_END, F_PREV_EPOCH, F_HW, F_LOG_START, F_CORRELATION, F_FOLLOWER_ID,
	F_LEADER_BROKER_EPOCH, F_LEADER_LEO, F_PARTS, F_STORED,
};
#define BATCHES_KEY RMQ_PB_KEY(F_BATCHES, RMQ_PB_LEN)

/* A broker id as the protocol writes it (a decimal string from 1). */
static bool parse_id(const uint8_t *p, size_t len, uint32_t *id)
{
	uint64_t v = 0;
	if (len == 0 || len > 10)
		return false;
	for (size_t i = 0; i < len; i++) {
		if (p[i] < '0' || p[i] > '9')
			return false;
		v = v * 10 + (p[i] - '0');
	}
	if (v == 0 || v > UINT32_MAX)
		return false;
	*id = (uint32_t)v;
	return true;
}

void rmq_follow_msg_free(struct rmq_follow_msg *m)
{
	free((void *)m->req.hdrs);
	free(m->records);
	m->req.hdrs = NULL;
	m->records = NULL;
}

/* The batch element of n bytes at q (its key must be `key`), appended to
 * out's batches (the room was counted); false when it does not parse. */
static bool take_batch(const uint8_t *q, size_t n, uint8_t key, struct rmq_follow_msg *out,
		       char *why, size_t whylen)
{
	struct rmq_batch_view bv;
	size_t i = out->req.n;
	int r = rmq_batch_parse_elem(q, n, key, &bv);
	if (r != (int)n) {
		snprintf(why, whylen, "batch %zu does not parse (%s)", i,
			 rmq_strerror(r < 0 ? r : RMQ_ECORRUPT));
		return false;
	}
	((struct rmq_batch_hdr *)out->req.hdrs)[i] = bv.hdr;
	out->records[i].p = q + bv.records_pos;
	out->records[i].len = bv.records_len;
	out->req.n++;
	return true;
}

int rmq_follow_parse(const uint8_t *msg, size_t len, size_t max_batches,
		     struct rmq_follow_msg *out, char *why, size_t whylen)
{
	const uint8_t *end = msg + len;
	size_t nb = 0;
	bool tp = false;
	int rc = RMQ_EPROTO;

	memset(out, 0, sizeof(*out));
	snprintf(why, whylen, "malformed ReplicateDataRequest");
	/* Count the batches first: one allocation. */
	for (const uint8_t *q = msg; q < end;) {
		uint32_t field, wire;
		uint64_t num;
		const uint8_t *val;
		size_t vlen, n = rmq_pb_next(q, end, &field, &wire, &num, &val, &vlen);
		if (n == 0)
			return RMQ_EPROTO;
		nb += field == F_BATCHES;
		if (field == F_STORED && wire == RMQ_PB_LEN) {
			/* Stored entries, each a field-6 element. */
			for (const uint8_t *v = val; v < val + vlen;) {
				uint32_t f2, w2;
				uint64_t n2;
				const uint8_t *v2;
				size_t l2, k = rmq_pb_next(v, val + vlen, &f2, &w2, &n2, &v2, &l2);
				if (k == 0)
					return RMQ_EPROTO;
				nb++;
				v += k;
			}
		}
		if (field == F_CORRELATION && wire == RMQ_PB_VARINT)
			out->correlation_id = num;
		q += n;
	}
	if (nb > max_batches) {
		snprintf(why, whylen, "%zu batches in one request; at most %zu", nb, max_batches);
		return RMQ_ETOOBIG;
	}
	struct rmq_batch_hdr *hdrs = calloc(nb ? nb : 1, sizeof(*hdrs));
	out->records = calloc(nb ? nb : 1, sizeof(*out->records));
	out->req.hdrs = hdrs;
	if (!hdrs || !out->records) {
		rmq_follow_msg_free(out);
		return -ENOMEM;
	}
	for (const uint8_t *q = msg; q < end;) {
		uint32_t field = 0, wire = 0;
		uint64_t num = 0;
		const uint8_t *val = NULL;
		size_t vlen = 0, n = rmq_pb_next(q, end, &field, &wire, &num, &val, &vlen);
		if (n == 0)
			goto bad; /* the first pass read it: cannot happen */
		bool is_len = wire == RMQ_PB_LEN, is_var = wire == RMQ_PB_VARINT;
		switch (field) {
		case F_VERSION:
			if (!is_len)
				goto bad;
			for (const uint8_t *v = val; v < val + vlen;) {
				uint32_t f2, w2;
				uint64_t n2 = 0;
				const uint8_t *v2;
				size_t l2, k = rmq_pb_next(v, val + vlen, &f2, &w2, &n2, &v2, &l2);
				if (k == 0)
					goto bad;
				if (f2 == 1 && w2 == RMQ_PB_VARINT)
					out->major = n2;
				v += k;
			}
			break;
		case F_LEADER_ID:
		case F_FOLLOWER_ID:
			if (!is_len || !parse_id(val, vlen, field == F_LEADER_ID ? &out->leader_id
									   : &out->follower_id)) {
				snprintf(why, whylen, "%s is not a broker id",
					 field == F_LEADER_ID ? "leader_id" : "follower_id");
				goto bad;
			}
			break;
		case F_TOPIC_PARTITION:
			if (!is_len)
				goto bad;
			for (const uint8_t *v = val; v < val + vlen;) {
				uint32_t f2, w2;
				uint64_t n2 = 0;
				const uint8_t *v2 = NULL;
				size_t l2 = 0, k = rmq_pb_next(v, val + vlen, &f2, &w2, &n2, &v2, &l2);
				if (k == 0)
					goto bad;
				if (f2 == 1 && w2 == RMQ_PB_LEN) {
					if (l2 >= sizeof(out->topic)) {
						snprintf(why, whylen, "topic name of %zu bytes", l2);
						goto bad;
					}
					memcpy(out->topic, v2, l2);
					out->topic[l2] = '\0';
				} else if (f2 == 2 && w2 == RMQ_PB_VARINT) {
					if (n2 > UINT32_MAX)
						goto bad;
					out->partition = (uint32_t)n2;
				}
				v += k;
			}
			tp = true;
			break;
		case F_BATCHES:
			if (!take_batch(q, n, BATCHES_KEY, out, why, whylen)) {
				rc = RMQ_ECORRUPT;
				goto bad;
			}
			break;
		case F_STORED:
			if (!is_len)
				goto bad;
			for (const uint8_t *v = val; v < val + vlen;) {
				uint32_t f2, w2;
				uint64_t n2;
				const uint8_t *v2;
				size_t l2, k = rmq_pb_next(v, val + vlen, &f2, &w2, &n2, &v2, &l2);
				if (k == 0)
					goto bad; /* the first pass read it: cannot happen */
				if (!take_batch(v, k, RMQ_BATCH_KEY, out, why, whylen)) {
					rc = RMQ_ECORRUPT;
					goto bad;
				}
				v += k;
			}
			break;
		default:
			if (field <= F_LEADER_LEO && !is_var)
				goto bad;
			switch (field) {
			case F_LEADER_EPOCH:
			case F_PREV_EPOCH:
				if (num > UINT32_MAX)
					goto bad;
				*(field == F_LEADER_EPOCH ? &out->req.leader_epoch : &out->req.prev_epoch) =
					(uint32_t)num;
				break;
			case F_PREV_END: out->req.prev_end = num; break;
			case F_HW: out->high_watermark = num; break;
			case F_LOG_START: out->log_start_offset = num; break;
			case F_CORRELATION: out->correlation_id = num; break;
			case F_LEADER_BROKER_EPOCH: out->leader_broker_epoch = num; break;
			case F_LEADER_LEO:
				out->leader_log_end_offset = out->req.leader_end = num;
				out->req.has_leader_end = true;
				break;
			default: break; /* a newer field: skipped */
			}
		}
		q += n;
	}
	if (!tp || !out->topic[0]) {
		snprintf(why, whylen, "no topic_partition");
		goto bad;
	}
	return 0;
bad:
	rmq_follow_msg_free(out);
	return rc;
}

static void refuse(struct rmq_follow_plan *out, int code, const char *fmt, uint64_t a, uint64_t b)
{
	out->code = code;
	snprintf(out->why, sizeof(out->why), fmt, a, b);
}

/* The request's batches continue one another from prev_end, in epochs
 * that never decrease and none above the sender's. */
static bool well_formed(const struct rmq_follow_req *req, struct rmq_follow_plan *out)
{
	uint64_t next = req->prev_end;
	uint32_t epoch = 0;
	for (size_t i = 0; i < req->n; i++) {
		const struct rmq_batch_hdr *h = &req->hdrs[i];
		if (h->base_offset != next) {
			refuse(out, EC_INVALID_REQUEST,
			       "batch at offset %" PRIu64 " does not continue from %" PRIu64,
			       h->base_offset, next);
			return false;
		}
		if (h->leader_epoch < epoch || h->leader_epoch > req->leader_epoch) {
			refuse(out, EC_INVALID_REQUEST,
			       "batch at offset %" PRIu64 " has leader epoch %" PRIu64
			       ", out of order or above the sender's",
			       h->base_offset, h->leader_epoch);
			return false;
		}
		epoch = h->leader_epoch;
		next = rmq_batch_last_offset(h) + 1;
	}
	return true;
}

static void storage_error(struct rmq_follow_plan *out, int rc, uint64_t offset)
{
	out->code = EC_STORAGE_ERROR;
	snprintf(out->why, sizeof(out->why), "this replica cannot read its log at offset %" PRIu64
		 ": %s", offset, rmq_strerror(rc));
}

void rmq_follow_plan(struct rmq_log *log, uint32_t known, const struct rmq_follow_req *req,
		     struct rmq_follow_plan *out)
{
	*out = (struct rmq_follow_plan){.code = EC_OK, .truncate_to = UINT64_MAX};
	if (req->leader_epoch < known) {
		refuse(out, EC_STALE_EPOCH, "leader epoch %" PRIu64 " is older than %" PRIu64,
		       req->leader_epoch, known);
		return;
	}
	if (req->leader_epoch > known) {
		refuse(out, EC_UNKNOWN_LEADER_EPOCH,
		       "leader epoch %" PRIu64 " is newer than this replica knows (%" PRIu64 ")",
		       req->leader_epoch, known);
		return;
	}
	if (!well_formed(req, out))
		return;
	const uint64_t start = rmq_log_start_offset(log), end = rmq_log_end_offset(log);
	if (req->prev_end < start || (req->prev_end > start && end < req->prev_end)) {
		refuse(out, EC_OFFSET_OUT_OF_RANGE,
		       "this replica holds offsets from %" PRIu64 " to %" PRIu64 ", which the request "
		       "does not continue",
		       start, end);
		return;
	}
	uint32_t epoch;
	uint64_t from, to;
	int rc;
	/* Log matching: the batch before prev_end is of the leader's epoch
	 * there, or the log left the leader's. */
	if (req->prev_end > start) {
		rc = rmq_log_epoch_at(log, req->prev_end - 1, &epoch, &from, &to);
		if (rc < 0) {
			storage_error(out, rc, req->prev_end - 1);
			return;
		}
		if (epoch != req->prev_epoch) {
			out->diverging = true;
			out->div_epoch = epoch;
			out->div_start = from;
			out->div_end = to;
			return;
		}
	}
	/* Batches held already are kept: a batch of the same epoch at the same
	 * offset is the same batch (one leader per epoch wrote it).  From the
	 * first that differs, the log is cut and the rest appended. */
	size_t i = 0;
	for (; i < req->n && req->hdrs[i].base_offset < end; i++) {
		rc = rmq_log_epoch_at(log, req->hdrs[i].base_offset, &epoch, &from, &to);
		if (rc < 0) {
			storage_error(out, rc, req->hdrs[i].base_offset);
			return;
		}
		if (epoch != req->hdrs[i].leader_epoch) {
			out->truncate_to = req->hdrs[i].base_offset;
			break;
		}
	}
	out->first = i;
	/* Held all, and more than the leader has: what lies past the
	 * leader's log end came from another leader, and goes. */
	uint64_t req_end = req->n ? rmq_batch_last_offset(&req->hdrs[req->n - 1]) + 1 : req->prev_end;
	out->matched = req_end;
	if (i == req->n && req->has_leader_end && end > req->leader_end && req_end <= req->leader_end)
		out->truncate_to = req->leader_end;
}

/* ---- the RPCs: ReplicateData and ReplicateStream ------------------------------------ */

#define QUEUE_MAX 64                       /* requests waiting per partition */
#define RETRY_NS (1000ULL * 1000)          /* the log is busy: look again */

/* A ReplicateStream's state (the call's context). */
struct fstream {
	uint32_t open;                     /* requests not answered yet */
	bool half_closed, cancelled;
};

struct fapp {
	struct rmq_append a;               /* first: the log's callback gets &a */
	struct rmq_frep *r;
};

/* One request: a ReplicateData call, or one message of a stream. */
struct rmq_frep {
	struct rmq_call *call;             /* a reference held */
	struct rmq_bshard *bs;
	struct fstream *st;                /* NULL: unary */
	struct rmq_partition *p;           /* queued on it; NULL before */
	uint8_t *buf;                      /* the request's bytes (msg points into them) */
	struct rmq_follow_msg msg;
	struct rmq_follow_plan plan;
	bool planned;
	bool issued;                       /* every append it makes is made */
	bool finished;                     /* decided: answered in its turn */
	int code;                          /* the answer's, once not OK */
	char why[200];
	size_t next;                       /* the next batch to append */
	uint32_t acks;                     /* appends not called back yet */
	struct fapp *apps;
	struct rmq_timer retry;
	struct rmq_frep *q_next;
};

static void frep_free(struct rmq_frep *r)
{
	rmq_timer_cancel(r->bs->s, &r->retry); /* armed when it waited, and decided since */
	rmq_follow_msg_free(&r->msg);
	free(r->apps);
	free(r->buf);
	rmq_call_unref(r->call);
	free(r);
}

/* A stream with nothing left to answer after its client half-closed
 * ends; one whose call ended is let go. */
static void stream_settle(struct rmq_call *c, struct fstream *st)
{
	if (st->open > 0)
		return;
	if (st->cancelled) {
		free(st);
	} else if (st->half_closed) {
		rmq_call_set_ctx(c, NULL);
		free(st);
		rmq_call_finish(c, RMQ_GRPC_OK, NULL);
	}
}

static void answer(struct rmq_frep *r)
{
	struct rmq_bshard *bs = r->bs;
	struct rmq_partition *p = r->p;
	Rustmq__Broker__ReplicateDataResponse resp = RUSTMQ__BROKER__REPLICATE_DATA_RESPONSE__INIT;
	Rustmq__Common__TopicPartition tp = RUSTMQ__COMMON__TOPIC_PARTITION__INIT;
	Rustmq__Broker__DivergingEpoch div = RUSTMQ__BROKER__DIVERGING_EPOCH__INIT;
	char self[12];
	snprintf(self, sizeof(self), "%" PRIu32, bs->b->self);
	resp.follower_id = self;
	resp.error_code = (Rustmq__Common__ErrorCode)r->code;
	resp.error_message = r->why;
	tp.topic = r->msg.topic;
	tp.partition = r->msg.partition;
	resp.topic_partition = &tp;
	resp.correlation_id = r->msg.correlation_id;
	if (p && p->log) {
		/* Its durable end: requests after this one may have appends
		 * reserved and not yet durable, which the leader must not
		 * count (answers go in request order, so this one's are in). */
		resp.log_end_offset = rmq_log_high_watermark(p->log);
		resp.log_start_offset = rmq_log_start_offset(p->log);
		resp.leader_epoch = p->leader_epoch;
		/* The epoch its log ends in: a recovering leader's measure of
		 * which log is newer (recover.h). */
		uint32_t last;
		uint64_t from, to;
		if (resp.log_end_offset > resp.log_start_offset &&
		    rmq_log_epoch_at(p->log, resp.log_end_offset - 1, &last, &from, &to) == 0)
			resp.last_epoch = last;
		/* What it holds of the leader's committed records: never past
		 * what this request showed to be the leader's, as a replica
		 * may hold another leader's uncommitted tail past it (a paused
		 * old leader, probed at where the logs meet: its tail's
		 * records must not be read as committed before it is cut). */
		uint64_t hw = r->msg.high_watermark < resp.log_end_offset ? r->msg.high_watermark
									  : resp.log_end_offset;
		if (hw > r->plan.matched)
			hw = r->plan.matched;
		if (r->code == EC_OK && !r->plan.diverging) {
			rmq_partition_set_hw(p, hw);
			/* Step 6 of replication.proto: the log start follows the
			 * leader's (its retention, or the group coordinator's
			 * compaction of __consumer_offsets), by whole segments
			 * and never past what is committed here. */
			uint64_t start = r->msg.log_start_offset < hw ? r->msg.log_start_offset : hw;
			if (start > resp.log_start_offset && rmq_log_delete_before(p->log, start) > 0)
				resp.log_start_offset = rmq_log_start_offset(p->log);
		}
		resp.high_watermark = p->hw;
	}
	if (r->code == EC_OK && r->plan.diverging) {
		div.epoch = r->plan.div_epoch;
		div.start_offset = r->plan.div_start;
		div.end_offset = r->plan.div_end;
		resp.diverging_epoch = &div;
	}
	if (!r->st) {
		rmq_reply_pb(r->call, &resp.base);
	} else if (!r->st->cancelled) {
		int rc = rmq_send_pb(r->call, &resp.base);
		if (rc < 0 && rc != RMQ_ECLOSED)
			rmq_call_finishf(r->call, RMQ_GRPC_RESOURCE_EXHAUSTED,
					 "the answer could not be queued: %s", rmq_strerror(rc));
	}
	if (r->st) {
		r->st->open--;
		stream_settle(r->call, r->st);
	}
}

static void advance(struct rmq_partition *p);

/* r is decided: answered now when it was never queued, else in its turn
 * (advance: answers go out in request order). */
static void done(struct rmq_frep *r)
{
	struct rmq_partition *p = r->p;
	r->finished = true;
	if (!p) {
		answer(r);
		frep_free(r);
		return;
	}
	advance(p);
}

static void refuse_now(struct rmq_frep *r, int code, const char *why)
{
	r->code = code;
	snprintf(r->why, sizeof(r->why), "%s", why);
	done(r);
}

static int append_error(int rc, char *why, size_t len)
{
	snprintf(why, len, "append: %s", rmq_strerror(rc));
	switch (rc) {
	case RMQ_ECRC:
		return EC_CORRUPT_MESSAGE;
	case RMQ_ERANGE:
		return EC_OFFSET_OUT_OF_RANGE;
	case RMQ_EPROTO:
	case RMQ_ETOOBIG:
		return EC_INVALID_REQUEST;
	default:
		return EC_STORAGE_ERROR;
	}
}

static void app_cb(struct rmq_append *a, int res)
{
	struct rmq_frep *r = ((struct fapp *)a)->r;
	r->acks--;
	if (res < 0 && r->code == EC_OK)
		r->code = append_error(res, r->why, sizeof(r->why));
	if (r->acks == 0 && r->issued)
		done(r);
}

/* The producer of a batch appended here is remembered as the leader
 * remembered it, so that its retry is recognised if this replica leads
 * when it comes (dedup.h). */
static void note_producer(struct rmq_partition *p, const struct rmq_batch_hdr *h)
{
	if (h->producer_id <= 0 || h->base_sequence < 0)
		return;
	if (!p->dedup && !(p->dedup = rmq_dedup_new())) {
		rmq_warn("partition %s-%u: no memory for producer deduplication", p->topic_name,
			 p->index);
		return;
	}
	rmq_dedup_replay(p->dedup, h->producer_id, h->producer_epoch, h->base_sequence,
			 h->record_count, h->base_offset);
}

static void retry_fn(struct rmq_timer *t)
{
	struct rmq_frep *r = RMQ_CONTAINER_OF(t, struct rmq_frep, retry);
	advance(r->p);
}

static void retry_later(struct rmq_frep *r)
{
	if (rmq_timer_start(r->bs->s, &r->retry, rmq_now_ns() + RETRY_NS, retry_fn) < 0) {
		r->code = EC_NOT_AVAILABLE;
		snprintf(r->why, sizeof(r->why), "this replica has no timer left; retry");
		r->issued = true; /* nothing more of it is written */
		if (r->acks == 0)
			r->finished = true;
	}
}

/* Plans r and writes its batches, from where it stopped.  Requests are
 * pipelined: the next one is planned on the log as this one left it
 * (its appends reserved), while they are made durable together.  A cut
 * waits until r is the oldest and the log idle.  Returns whether r is
 * issued (the next one may go). */
static bool issue(struct rmq_frep *r)
{
	struct rmq_partition *p = r->p;
	if (!r->planned) {
		rmq_follow_plan(p->log, p->leader_epoch, &r->msg.req, &r->plan);
		r->planned = true;
		r->code = r->plan.code;
		memcpy(r->why, r->plan.why, sizeof(r->why));
		r->next = r->plan.first;
		if (r->code != EC_OK || r->plan.diverging ||
		    (r->next == r->msg.req.n && r->plan.truncate_to == UINT64_MAX)) {
			r->issued = r->finished = true;
			return true;
		}
		r->apps = calloc(r->msg.req.n ? r->msg.req.n : 1, sizeof(*r->apps));
		if (!r->apps) {
			r->code = EC_NOT_AVAILABLE;
			snprintf(r->why, sizeof(r->why), "this replica is out of memory; retry");
			r->issued = r->finished = true;
			return true;
		}
	}
	if (r->plan.truncate_to != UINT64_MAX) {
		/* A tail the leader never had: cut before appending its own. */
		if (p->follow_head != r || !rmq_log_idle(p->log)) {
			retry_later(r);
			return r->issued;
		}
		int rc = rmq_log_truncate(p->log, r->plan.truncate_to);
		if (rc < 0) {
			r->code = EC_STORAGE_ERROR;
			snprintf(r->why, sizeof(r->why), "truncating to %" PRIu64 ": %s",
				 r->plan.truncate_to, rmq_strerror(rc));
			r->issued = r->finished = true;
			return true;
		}
		if (p->dedup)
			rmq_dedup_truncate(p->dedup, r->plan.truncate_to);
		r->plan.truncate_to = UINT64_MAX;
	}
	while (r->next < r->msg.req.n && r->code == EC_OK) {
		struct fapp *fa = &r->apps[r->next];
		fa->r = r;
		fa->a.hdr = r->msg.req.hdrs[r->next];
		fa->a.replica = true;
		fa->a.cb = app_cb;
		struct iovec iov = {(void *)r->msg.records[r->next].p, r->msg.records[r->next].len};
		int rc = rmq_log_append(p->log, &fa->a, &iov, 1);
		if (rc == RMQ_EFULL) {
			/* The buffer drains as writes complete: tried again
			 * each cycle (rmq_follow_resume), as produce's backlog. */
			p->follow_room = true;
			rmq_partition_mark_dirty(p);
			return r->issued;
		}
		if (rc == -ENOSPC) {
			rmq_partition_mark_dirty(p);
			retry_later(r); /* the disk frees */
			return r->issued;
		}
		if (rc < 0) {
			r->code = append_error(rc, r->why, sizeof(r->why));
			break;
		}
		note_producer(p, &fa->a.hdr);
		r->acks++;
		r->next++;
	}
	rmq_partition_mark_dirty(p);
	r->issued = true;
	if (r->acks == 0)
		r->finished = true;
	return true;
}

/* The partition's queue moves on: the requests decided are answered from
 * the oldest, in order, and the next ones are issued. */
static void advance(struct rmq_partition *p)
{
	if (p->follow_busy)
		return; /* an answer below came back here */
	p->follow_busy = true;
	for (;;) {
		struct rmq_frep *r = p->follow_head;
		while (r && r->finished) {
			p->follow_head = r->q_next;
			if (!p->follow_head)
				p->follow_tail = NULL;
			p->follow_queued--;
			answer(r);
			frep_free(r);
			r = p->follow_head;
		}
		bool progress = false;
		for (r = p->follow_head; r; r = r->q_next) {
			if (r->issued)
				continue;
			if (!issue(r))
				break;
			progress = true;
		}
		if (!progress || !p->follow_head || !p->follow_head->finished)
			break;
	}
	p->follow_busy = false;
}

void rmq_follow_resume(struct rmq_partition *p)
{
	p->follow_room = false;
	advance(p);
}

/* A request of this shard, read: queued on its partition. */
static void take(struct rmq_frep *r)
{
	struct rmq_bshard *bs = r->bs;
	int code;
	if (r->msg.follower_id != bs->b->self) {
		refuse_now(r, EC_INVALID_REQUEST, "follower_id is not this broker");
		return;
	}
	unsigned shard = rmq_partition_shard(r->msg.topic, r->msg.partition, bs->nshards);
	if (shard != bs->id) {
		char why[160];
		snprintf(why, sizeof(why),
			 "the partition is on shard %u of this broker, and the connection reached "
			 "shard %u (source port steering, docs/net.md)",
			 shard, bs->id);
		refuse_now(r, EC_REPLICA_NOT_AVAILABLE, why);
		return;
	}
	struct rmq_partition *p = rmq_partition_find(bs, r->msg.topic, r->msg.partition, &code);
	if (!p || p->role != RMQ_ROLE_FOLLOWER) {
		refuse_now(r, EC_REPLICA_NOT_AVAILABLE,
			   !p ? "no replica of the partition serves on this broker"
			      : p->role == RMQ_ROLE_LEADER ? "this broker leads the partition"
							     : "this replica is not in service");
		return;
	}
	if (p->follow_queued >= QUEUE_MAX) {
		refuse_now(r, EC_NOT_AVAILABLE, "too many requests wait for this replica; retry");
		return;
	}
	r->p = p;
	p->follow_queued++;
	if (p->follow_tail)
		p->follow_tail->q_next = r;
	else
		p->follow_head = r;
	p->follow_tail = r;
	advance(p);
}

static struct rmq_frep *frep_new(struct rmq_call *c, struct fstream *st, const uint8_t *msg,
				 size_t len)
{
	struct rmq_frep *r = calloc(1, sizeof(*r));
	if (r)
		r->buf = malloc(len ? len : 1);
	if (!r || !r->buf) {
		free(r);
		return NULL;
	}
	memcpy(r->buf, msg, len);
	r->call = c;
	rmq_call_ref(c);
	r->bs = rmq_call_app(c);
	r->st = st;
	r->code = EC_OK;
	int rc = rmq_follow_parse(r->buf, len, RMQ_FOLLOW_BATCHES_MAX, &r->msg, r->why, sizeof(r->why));
	if (rc < 0)
		r->code = rc == RMQ_ECORRUPT ? EC_CORRUPT_MESSAGE : EC_INVALID_REQUEST;
	return r;
}

static void start(struct rmq_frep *r)
{
	if (r->code != EC_OK)
		done(r);
	else
		take(r);
}

void rmq_follow_replicate(struct rmq_call *c, const uint8_t *msg, size_t len)
{
	struct rmq_frep *r = frep_new(c, NULL, msg, len);
	if (!r) {
		rmq_call_finish(c, RMQ_GRPC_RESOURCE_EXHAUSTED, "out of memory");
		return;
	}
	start(r);
}

/* One request of a stream; false when the stream ended for want of
 * memory. */
static bool stream_take(struct rmq_call *c, struct fstream *st, const uint8_t *msg, size_t len)
{
	struct rmq_frep *r = frep_new(c, st, msg, len);
	if (!r) {
		rmq_call_finish(c, RMQ_GRPC_RESOURCE_EXHAUSTED, "out of memory");
		return false;
	}
	st->open++;
	start(r);
	return !rmq_call_done(c);
}

void rmq_follow_stream_msg(struct rmq_call *c, const uint8_t *msg, size_t len)
{
	if (rmq_call_done(c))
		return;
	struct fstream *st = rmq_call_get_ctx(c);
	if (!st) {
		if (!(st = calloc(1, sizeof(*st)))) {
			rmq_call_finish(c, RMQ_GRPC_RESOURCE_EXHAUSTED, "out of memory");
			return;
		}
		rmq_call_set_ctx(c, st);
	}
	/* A bundle's parts, each a request; else the message is one. */
	const uint8_t *end = msg + len;
	bool bundle = false;
	for (const uint8_t *q = msg; q < end;) {
		uint32_t field, wire;
		uint64_t num;
		const uint8_t *val;
		size_t vlen, n = rmq_pb_next(q, end, &field, &wire, &num, &val, &vlen);
		if (n == 0)
			break; /* malformed: refused as one request below */
		if (field == F_PARTS && wire == RMQ_PB_LEN) {
			bundle = true;
			if (!stream_take(c, st, val, vlen))
				return;
		}
		q += n;
	}
	if (!bundle)
		(void)stream_take(c, st, msg, len);
}

void rmq_follow_stream_half_close(struct rmq_call *c)
{
	struct fstream *st = rmq_call_get_ctx(c);
	if (!st) {
		rmq_call_finish(c, RMQ_GRPC_OK, NULL); /* no request came */
		return;
	}
	st->half_closed = true;
	stream_settle(c, st);
}

void rmq_follow_cancel(struct rmq_call *c)
{
	struct fstream *st = rmq_call_get_ctx(c);
	if (!st)
		return; /* unary: its request finishes and answers into nothing */
	rmq_call_set_ctx(c, NULL);
	st->cancelled = true;
	stream_settle(c, st);
}

void rmq_follow_drop(struct rmq_partition *p)
{
	/* Requests not issued go now; those with appends in flight finish
	 * with them (the log completes them before it closes), answered
	 * "closing" in their turn. */
	for (struct rmq_frep *r = p->follow_head; r; r = r->q_next) {
		rmq_timer_cancel(p->bs->s, &r->retry);
		r->code = EC_REPLICA_NOT_AVAILABLE;
		snprintf(r->why, sizeof(r->why), "the replica is closing");
		r->issued = true;
		if (r->acks == 0)
			r->finished = true;
	}
	if (p->follow_head)
		advance(p);
}
