/* SPDX-License-Identifier: Apache-2.0 */
/* follow.c - a follower's side of replication (follow.h). */
#include "broker/follow.h"

#include "broker/errcode.h"
#include "core/error.h"
#include "core/pbwire.h"

#include <errno.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* ReplicateDataRequest's fields. */
enum {
	F_VERSION = 1, F_LEADER_ID, F_LEADER_EPOCH, F_TOPIC_PARTITION, F_BATCHES,
	F_PREV_END, F_PREV_EPOCH, F_HW, F_LOG_START, F_CORRELATION, F_FOLLOWER_ID,
	F_LEADER_BROKER_EPOCH, F_LEADER_LEO,
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
		uint32_t field, wire;
		uint64_t num = 0;
		const uint8_t *val = NULL;
		size_t vlen = 0, n = rmq_pb_next(q, end, &field, &wire, &num, &val, &vlen);
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
		case F_BATCHES: {
			struct rmq_batch_view bv;
			size_t i = out->req.n;
			int r = rmq_batch_parse_elem(q, n, BATCHES_KEY, &bv);
			if (r != (int)n) {
				snprintf(why, whylen, "batch %zu does not parse (%s)", i,
					 rmq_strerror(r < 0 ? r : RMQ_ECORRUPT));
				rc = RMQ_ECORRUPT;
				goto bad;
			}
			hdrs[i] = bv.hdr;
			out->records[i].p = q + bv.records_pos;
			out->records[i].len = bv.records_len;
			out->req.n++;
			break;
		}
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
			case F_LEADER_LEO: out->leader_log_end_offset = num; break;
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
}
