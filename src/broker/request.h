/* SPDX-License-Identifier: Apache-2.0 */
/*
 * request.h - what every request is held to before work starts: how many
 * entries it may name, and that it names each partition at most once.
 *
 * A client decides how big a request is; these caps decide how much work
 * and memory one request may cause on the node (each partition entry
 * becomes a message to its shard and a part of the answer).  The method
 * table (methods.c) checks every repeated field of a decoded request
 * against its route's cap before the handler runs; handlers check what is
 * nested (FetchBatch's fetches together) and parsed in place (ProduceBatch):
 *
 *   --max-request-partitions  partition entries per request: Fetch,
 *                             FetchBatch (all its fetches together),
 *                             Subscribe, ListOffsets, ProduceBatch,
 *                             CommitOffsets, FetchOffsets
 *   --max-request-names       topic or group names per request: the
 *                             AdminService and MetadataService calls,
 *                             DescribeGroups, DeleteGroups
 *
 * proto/ says each partition appears at most once in Fetch, Subscribe,
 * ListOffsets, ProduceBatch and CommitOffsets; a repeated one is refused
 * with INVALID_REQUEST naming it (appending the same batch five times, or
 * answering one partition twice, is never what the client meant).
 */
#ifndef RMQ_BROKER_REQUEST_H
#define RMQ_BROKER_REQUEST_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

struct rmq_bshard;

/* One (topic, partition) entry of a request; topic is borrowed. */
struct rmq_tp_ref {
	const char *topic;
	uint32_t partition;
};

/* n partition entries within --max-request-partitions?  Returns 0, or
 * EC_INVALID_REQUEST with the reason in err. */
int rmq_request_partitions(const struct rmq_bshard *bs, size_t n, char *err, size_t errlen);

/* Each v[i] at most once?  Returns 0, EC_INVALID_REQUEST naming the first
 * repeated partition and both positions, or EC_RESOURCE_EXHAUSTED when
 * out of memory.  Expected O(n) (a hash set of indexes). */
int rmq_request_unique(const struct rmq_tp_ref *v, size_t n, char *err, size_t errlen);

/*
 * The partition entries of a decoded request: elems[0..n) are messages
 * each holding, at byte offset tp_offset, a pointer to the
 * rustmq.common.TopicPartition it names (NULL counts as topic "",
 * partition 0).  Checks the count (rmq_request_partitions), then, when
 * unique, that no partition repeats.  Returns 0 or an ErrorCode with err.
 */
int rmq_request_tps(const struct rmq_bshard *bs, void *const *elems, size_t n, size_t tp_offset,
		    bool unique, char *err, size_t errlen);

#endif /* RMQ_BROKER_REQUEST_H */
