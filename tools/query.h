/* SPDX-License-Identifier: Apache-2.0 */
/*
 * query.h - what the commands ask the broker about a topic before they act
 * on it: its partition count (GetTopicMetadata), where its partitions start
 * and end (ListOffsets), and the one line that shows a partition.  Blocking
 * calls that die on an error (cli.h).
 */
#ifndef RMQ_TOOLS_QUERY_H
#define RMQ_TOOLS_QUERY_H

#include "common/metadata.pb-c.h"

#include <stdint.h>

/* A partition and a position in it: the next offset wanted, UINT64_MAX
 * when not known yet. */
struct cpart {
	uint32_t partition;
	uint64_t offset;
};

/* Partition count of topic; dies when it does not exist.  A topic just
 * created may take a moment to show its partitions: waits up to 5 s. */
uint32_t topic_partitions(const char *topic);

/* Exits 2 when --partition, unless PARTITION_ANY, is not below total. */
void topic_check_partition(const char *topic, uint64_t partition, uint32_t total);

/*
 * Positions through ListOffsets (spec an OFFSET_SPEC: EARLIEST, LATEST or
 * TIMESTAMP with at_ms) for the parts of topic that have none yet (offset
 * UINT64_MAX); the others keep theirs.  A partition with nothing at or after
 * at_ms starts at LATEST.  Dies on a broker error.
 */
void topic_list_offsets(const char *topic, struct cpart *parts, uint32_t nparts, int spec,
			uint64_t at_ms);

/* The log start offset and high watermark of partitions 0..n-1 of topic
 * (heap arrays for the caller to free; left untouched when n is 0). */
void topic_bounds(const char *topic, uint32_t n, uint64_t **start, uint64_t **end);

/* One "  partition ..." line; start..end (when not NULL, indexed by
 * partition) replace the metadata's offsets, which may lag. */
void topic_print_partition(const Rustmq__Common__PartitionMetadata *p, const uint64_t *start,
			   const uint64_t *end);

#endif /* RMQ_TOOLS_QUERY_H */
