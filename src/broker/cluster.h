/* SPDX-License-Identifier: Apache-2.0 */
/*
 * cluster.h - what this node knows of the cluster, in one place: its own
 * id and broker epoch, which node is the controller and in which epoch,
 * and who leads each partition in which leader epoch.
 *
 * Every answer that names a leader, a leader epoch, the controller or a
 * broker epoch asks here; nothing else writes "this node" or "epoch 1".
 * Leaders, replicas, epochs and brokers come from the shard's metadata
 * snapshot (the controller's state, meta.h); the controller's quorum from
 * what shard 0 publishes (controller.c).
 */
#ifndef RMQ_BROKER_CLUSTER_H
#define RMQ_BROKER_CLUSTER_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

struct rmq_bshard;
struct rmq_meta;
struct rmq_topic;
struct rmq_broker_rec;

/* This node's broker id (a static string). */
const char *rmq_cluster_self(const struct rmq_bshard *bs);
uint64_t rmq_cluster_broker_epoch(const struct rmq_bshard *bs);

/* The controller's quorum as it last told every shard: its leader (0:
 * none known, during an election), the leader's term, and the voters. */
#define RMQ_QUORUM_MAX 9
struct rmq_quorum {
	uint32_t leader;
	uint64_t term;
	uint32_t n, voters[RMQ_QUORUM_MAX];
	char leader_id[12];              /* "" when leader is 0 */
	char leader_addr[64];            /* its "host:port" ("" unknown) */
	char ids[RMQ_QUORUM_MAX][12];    /* the voters as strings */
};
void rmq_cluster_quorum(const struct rmq_bshard *bs, struct rmq_quorum *q);

/* The active controller's id ("" during an election; a per-thread
 * string, valid until the next call on this thread) and epoch (its term). */
const char *rmq_cluster_controller(const struct rmq_bshard *bs);
uint64_t rmq_cluster_controller_epoch(const struct rmq_bshard *bs);

/* Who leads partition p of t, as this shard's snapshot says. */
#define RMQ_ID_CHARS 12
struct rmq_leader {
	uint32_t id;                 /* 0 = no leader (LEADER_NOT_AVAILABLE) */
	char id_str[RMQ_ID_CHARS];   /* "" = no leader */
	uint32_t epoch;
	bool self;                   /* this node */
	const struct rmq_broker_rec *broker; /* its registration; NULL: unknown */
};
struct rmq_leader rmq_cluster_leader(const struct rmq_bshard *bs, const struct rmq_topic *t,
				     uint32_t p);

/* Whether this process leads partition p of t, a topic of m (the leader
 * named, and for a replicated partition in an epoch given since this
 * process registered). */
bool rmq_cluster_leads(const struct rmq_bshard *bs, const struct rmq_meta *m,
		       const struct rmq_topic *t, uint32_t p);

/* This process's registration in m, or NULL while m holds none or an
 * earlier process's (the broker restarted and has not registered yet). */
const struct rmq_broker_rec *rmq_cluster_registration(const struct rmq_bshard *bs,
						      const struct rmq_meta *m);

/* Only the leader's id (0: none), for the paths every produce and fetch
 * takes. */
uint32_t rmq_cluster_leader_id(const struct rmq_topic *t, uint32_t p);

/* "host:port" of broker id as this shard's snapshot knows it ("" when
 * unknown; valid while the snapshot is). */
const char *rmq_cluster_endpoint(const struct rmq_bshard *bs, uint32_t id);

/* The replicas of partition p of t (preferred leader first) and its
 * in-sync replicas, into ids[0..max): returns how many there are. */
size_t rmq_cluster_replicas(const struct rmq_bshard *bs, const struct rmq_topic *t, uint32_t p,
			    char (*ids)[RMQ_ID_CHARS], size_t max);
size_t rmq_cluster_isr(const struct rmq_bshard *bs, const struct rmq_topic *t, uint32_t p,
		       char (*ids)[RMQ_ID_CHARS], size_t max);

/* The cluster's id: the controller's, or this node's data directory's
 * until the controller has one. */
const char *rmq_cluster_id(const struct rmq_bshard *bs);

#endif /* RMQ_BROKER_CLUSTER_H */
