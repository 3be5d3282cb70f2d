/* SPDX-License-Identifier: Apache-2.0 */
/*
 * follow.h - a follower's side of replication: what it does with its
 * leader's ReplicateData (proto/broker/replication.proto, "ReplicateData /
 * ReplicateStream"; docs/replication.md).
 *
 * rmq_follow_plan decides, reading the log only: refuse (an older or newer
 * leader epoch, a gap, a malformed request), report where the log leaves
 * the leader's (diverging_epoch: nothing written), or which of the
 * request's batches to append after cutting the log where a batch it holds
 * differs from the leader's.  The caller carries the plan out (truncation
 * when the log is idle, replica appends) and answers once the appends are
 * durable.
 */
#ifndef RMQ_BROKER_FOLLOW_H
#define RMQ_BROKER_FOLLOW_H

#include "storage/batch.h"
#include "storage/log.h"

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

/* A ReplicateData request as the plan needs it. */
struct rmq_follow_req {
	uint32_t leader_epoch;             /* the sender's */
	uint64_t prev_end;                 /* prev_log_end_offset */
	uint32_t prev_epoch;               /* prev_leader_epoch */
	size_t n;
	const struct rmq_batch_hdr *hdrs;  /* its batches' headers, in order */
};

struct rmq_follow_plan {
	int code;                          /* EC_OK, or why nothing is written */
	char why[200];                     /* for error_message */
	bool diverging;                    /* OK, nothing written: the log leaves the
					    * leader's before prev_end */
	uint32_t div_epoch;                /* ... the epoch of the log's batch at
					    * prev_end - 1, and where that epoch's
					    * batches start and end here */
	uint64_t div_start, div_end;
	uint64_t truncate_to;              /* UINT64_MAX: no cut */
	size_t first;                      /* the batches before it are held already */
};

/* Decides what the follower of log, whose metadata names leader epoch
 * `known`, does with req. */
void rmq_follow_plan(struct rmq_log *log, uint32_t known, const struct rmq_follow_req *req,
		     struct rmq_follow_plan *out);

#endif /* RMQ_BROKER_FOLLOW_H */
