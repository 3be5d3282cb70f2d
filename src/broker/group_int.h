/* SPDX-License-Identifier: Apache-2.0 */
/*
 * group_int.h - what group.c (membership, the consumer RPCs) and
 * group_admin.c (AdminService's group RPCs) share.  Everything here lives
 * on one shard: the coordinator of the groups it holds.
 */
#ifndef RMQ_BROKER_GROUP_INT_H
#define RMQ_BROKER_GROUP_INT_H

#include "broker/assign.h"
#include "broker/broker.h"
#include "broker/group.h"
#include "broker/offsets.h"
#include "core/shard.h"

#include <protobuf-c/protobuf-c.h>
#include <string.h>

#define RMQ_GROUP_ID_MAX 255

/* rustmq.controller.GroupState values. */
#define GS_EMPTY 1
#define GS_PREPARING 2
#define GS_STABLE 4
#define GS_DEAD 5

/* A committed offset. */
struct offent {
	char *topic;
	uint32_t partition;
	uint64_t offset;
	char *metadata;
	int64_t leader_epoch;   /* -1 = unknown */
	uint64_t commit_ms;
};

struct greq;

struct member {
	struct member *next;        /* join order: longest-standing first */
	char *id, *instance_id, *client_id, *host;
	uint64_t session_ns, rebalance_ns;
	uint64_t deadline_ns;       /* session expiry (not while a join is held) */
	char **topics;
	size_t ntopics;
	char **assignors;
	size_t nassignors;
	struct rmq_assign_tp *assign; /* topic strings owned */
	size_t nassign;
	struct greq *join;          /* held JoinGroup */
};

struct group {
	struct group *hnext;
	char *id;
	uint32_t part;              /* offsets partition */
	int state;                  /* GS_* */
	int32_t generation;         /* 0 = none formed yet */
	int assignor;               /* enum rmq_assignor, -1 = none */
	char *leader;
	struct member *members;
	size_t nmembers;
	struct rmq_timer timer;
	uint64_t rebalance_deadline;  /* PREPARING: complete by then */
	uint64_t initial_until;       /* PREPARING from empty: not before */
	struct offent *offs;        /* sorted by (topic, partition) */
	size_t noffs, capoffs;
	struct pending *pending;    /* member ids given with MEMBER_ID_REQUIRED (group.c) */
	uint32_t npending;          /* ... how many (--group-max-pending-members) */
	uint64_t empty_since_ms;    /* when the last member went; 0 = never had one here */
	bool expiring;              /* its deletion (offsets expired) is in flight */
};

/* Per-shard coordinator state. */
struct rmq_gshard {
	struct rmq_bshard *bs;
	uint32_t nparts;
	struct rmq_olog **ologs;    /* [nparts]; NULL where another shard owns it */
	uint64_t *live;             /* [nparts]: bytes of live records (compaction) */
	bool *compacting;           /* [nparts] */
	struct group **tab;         /* hash table, chained */
	size_t tcap, ngroups;
	unsigned out;               /* greqs/tours sent from here, not back */
	unsigned busy;              /* appends and lookups in flight here */
	bool stopping;
	/* In a cluster (docs/replication.md, "Group coordinator"): the logs
	 * are partitions of the replicated __consumer_offsets, ologs[p] set
	 * only while this node leads p, and a group is served only there. */
	bool replicated;
};

static inline struct rmq_gshard *gs_of(struct rmq_bshard *bs)
{
	return bs->groups;
}

struct group *group_find(struct rmq_gshard *gs, const char *id);
struct group *group_get(struct rmq_gshard *gs, const char *id); /* creates; NULL = ENOMEM */
/* A request would create group id beyond this shard's share of
 * --max-groups: answers r RESOURCE_EXHAUSTED and returns true. */
struct greq;
bool group_refuse_new(struct rmq_gshard *gs, struct greq *r, const char *id);
void group_remove(struct rmq_gshard *gs, struct group *g);       /* no members */
struct offent *offent_find(struct group *g, const char *topic, uint32_t partition);

/* Appends commits (one per entry of v[0..n)) to the group's offsets log;
 * once durable, applies them to g (found again by id) and calls
 * done(arg, res).  Returns 0 or -ENOMEM. */
int group_commit_append(struct rmq_gshard *gs, const char *group, const struct offent *v,
			size_t n, void (*done)(void *arg, int res), void *arg);
/* Writes tombstones for every offset of g and its group record; once
 * durable removes the group (if still memberless) and calls done. */
int group_delete_append(struct rmq_gshard *gs, struct group *g,
			void (*done)(void *arg, int res), void *arg);

/*
 * On gid's coordinator shard: EC_OK when this node coordinates group gid
 * now (alone: always; in a cluster: it leads the group's partition of
 * __consumer_offsets and has loaded it).  Else the error for the client,
 * Kafka's, with the reason in why: NOT_COORDINATOR when another broker
 * leads the partition (named; FindCoordinator names it too),
 * COORDINATOR_LOAD_IN_PROGRESS when this one leads it but has not loaded
 * it yet, COORDINATOR_NOT_AVAILABLE when none can (the topic is not created
 * yet, the partition has no leader).
 */
int group_coordinator_check(struct rmq_gshard *gs, const char *gid, char *why, size_t len);

/* The request of one group RPC on its way to and from the coordinator. */
struct greq {
	struct rmq_xmsg msg;
	struct rmq_call *call;
	unsigned origin;
	int kind;
	ProtobufCMessage *req;      /* unpacked on the origin */
	char host[64];              /* the client's address */
	/* Answer (filled on the coordinator). */
	int status;                 /* rmq_grpc_status; OK = send resp */
	char smsg[160];
	uint8_t *resp;
	size_t resp_len;
	/* Coordinator-side scratch. */
	void *work;
};

/* On the coordinator: packs m as the answer and sends r back. */
void greq_reply(struct greq *r, const ProtobufCMessage *m);
/* On the coordinator: answers with a gRPC error status. */
void greq_fail(struct greq *r, int status, const char *msg);

/* The group_id of r's request. */
const char *greq_group_id(const struct greq *r);

/* On the coordinator: answers with the kind's response carrying only
 * error_code and error_message (group.c). */
void greq_err(struct greq *r, int code, const char *fmt, ...)
	__attribute__((format(printf, 3, 4)));

/* The calling member of group gid (its session renewed); on NULL the
 * error (UNKNOWN_MEMBER_ID) was answered.  generation_ok answers
 * ILLEGAL_GENERATION and returns false when gen is not g's. */
struct member *member_of(struct rmq_gshard *gs, struct greq *r, const char *gid,
			 const char *mid, struct group **gp);
bool generation_ok(struct greq *r, const struct group *g, int32_t gen);

/* group_offsets.c: the coordinator-side RPC handlers, the offsets log's
 * replay callback (arg: the rmq_gshard), and the generation record. */
void group_commit_exec(struct rmq_gshard *gs, struct greq *r);
void group_fetch_offsets_exec(struct rmq_gshard *gs, struct greq *r);
void group_reset_exec(struct rmq_gshard *gs, struct greq *r);
void group_replay_record(void *arg, const struct rmq_orec *r);
void group_store_generation(struct rmq_gshard *gs, struct group *g);
void offent_clear(struct offent *e);

uint64_t group_now_ms(void);

static inline char *xstrdup(const char *s)
{
	return strdup(s ? s : "");
}

#endif /* RMQ_BROKER_GROUP_INT_H */
