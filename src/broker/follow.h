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
	uint64_t leader_end;               /* leader_log_end_offset ... */
	bool has_leader_end;               /* ... when sent (an empty leader's is 0) */
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
	uint64_t matched;                  /* OK: the log is the leader's below this
					    * (prev_end, or the request's last batch's
					    * end); what lies past it is unchecked */
};

/*
 * A ReplicateDataRequest as sent (proto/broker/replication.proto), read in
 * place: its batches are the leader's stored RecordBatches, kept as bytes
 * (each parsed and its records walked; the CRC is the append's to check).
 * Pointers are into the message, which must outlive the view.
 */
struct rmq_follow_msg {
	uint64_t major;                    /* version.major (0: unset) */
	char topic[256];                   /* topic_partition (over-long: refused) */
	uint32_t partition;
	uint32_t leader_id, follower_id;   /* broker ids; 0 when absent */
	uint64_t high_watermark, log_start_offset, correlation_id;
	uint64_t leader_broker_epoch, leader_log_end_offset;
	struct rmq_follow_req req;         /* hdrs: the batches' headers (owned) */
	struct rmq_follow_bytes {
		const uint8_t *p;
		size_t len;
	} *records;                        /* per batch: its records bytes (owned array) */
};

/* The batches a follower takes in one request (its headers are held in
 * memory while they are written); a leader sends no more (lead.c). */
#define RMQ_FOLLOW_BATCHES_MAX 4096

/* Reads msg into out (out's arrays malloc'd: rmq_follow_msg_free).
 * Returns 0, RMQ_EPROTO (a field of the wrong type, no topic_partition, an
 * id that is not a number, a name too long), RMQ_ECORRUPT (a batch that
 * does not parse), RMQ_ETOOBIG (more than max_batches), or -ENOMEM; `why`
 * (len bytes) says which.  A refused request still has its correlation
 * id in out when it came before the fault, and always for RMQ_ETOOBIG:
 * the refusal answers that request, and its leader knows which. */
int rmq_follow_parse(const uint8_t *msg, size_t len, size_t max_batches,
		     struct rmq_follow_msg *out, char *why, size_t whylen);
void rmq_follow_msg_free(struct rmq_follow_msg *m);

/* Decides what the follower of log, whose metadata names leader epoch
 * `known`, does with req. */
void rmq_follow_plan(struct rmq_log *log, uint32_t known, const struct rmq_follow_req *req,
		     struct rmq_follow_plan *out);

#endif /* RMQ_BROKER_FOLLOW_H */
