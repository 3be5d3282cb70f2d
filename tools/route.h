/* SPDX-License-Identifier: Apache-2.0 */
/*
 * route.h - where the rmq CLI sends a partition's produce, fetch and
 * offset calls: to the broker that leads the partition, as the cluster's
 * metadata says, over one connection per broker (opened when first
 * needed).  A NOT_LEADER answer moves the partition to the leader it
 * names; LEADER_NOT_AVAILABLE waits a moment and asks the metadata again.
 *
 *   route_rpc(topic, p) ─► the leader's connection (the bootstrap's until
 *                           the metadata was read, or when no leader is
 *                           known)
 *   answer NOT_LEADER ─► route_retry(...) ─► true: send it again there
 */
#ifndef RMQ_TOOLS_ROUTE_H
#define RMQ_TOOLS_ROUTE_H

#include "rpc.h"

#include <stdbool.h>
#include <stdint.h>

/* How many times one call follows a moved leader before giving up. */
#define ROUTE_TRIES_MAX 20

/* The connection for partition p of topic (the topic's leaders are read
 * from the bootstrap broker's metadata the first time). */
struct rmq_rpc *route_rpc(const char *topic, uint32_t p);

/* After an answer with code for partition p: NOT_LEADER (endpoint: the
 * leader it names, "" = unknown) or LEADER_NOT_AVAILABLE re-route p (for
 * the latter after a pause of 100 ms, reading the metadata again) and
 * return true while *tries stays within ROUTE_TRIES_MAX: the caller sends
 * the call again.  TOPIC_NOT_FOUND or PARTITION_NOT_FOUND from a leader
 * other than the bootstrap broker, for a partition the metadata showed,
 * is retried the same way after 100 ms (that broker applies the
 * controller's changes a moment after the one that answered them), and
 * NOT_AVAILABLE from any (the partition's log is still being opened).
 * Any other code: false. */
bool route_retry(const char *topic, uint32_t p, int code, const char *endpoint, int *tries);

/* The connection to group's coordinator, as FindCoordinator on the
 * bootstrap broker names it (a cluster: the leader of the group's
 * partition of __consumer_offsets; one node: itself), asked again when
 * refresh (after NOT_COORDINATOR and the like); the bootstrap's while none
 * is named (the coordinator is being made: its calls answer
 * COORDINATOR_NOT_AVAILABLE and are retried). */
struct rmq_rpc *route_coordinator(const char *group, bool refresh);

/* Closes the connections it opened (not cli.rpc). */
void route_close(void);

#endif /* RMQ_TOOLS_ROUTE_H */
