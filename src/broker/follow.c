/* SPDX-License-Identifier: Apache-2.0 */
/* follow.c - a follower's side of replication (follow.h). */
#include "broker/follow.h"

#include "broker/errcode.h"
#include "core/error.h"

#include <inttypes.h>
#include <stdio.h>

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
