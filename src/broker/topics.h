/* SPDX-License-Identifier: Apache-2.0 */
/*
 * topics.h - topic changes (create, delete, alter configs), decided by
 * the controller's leader on its shard 0.
 *
 *   origin shard               shard 0                            every shard
 *   rmq_topic_change_submit ─► rmq_ctrl_submit (controller.h):
 *                              on the leader, validated against
 *                              the committed state, which is
 *                              built anew (partitions placed:
 *                              placement.h); once committed and
 *                              applied: rmq_topics_publish ──────► open and close
 *                                                                  its partitions
 *                              ◄──────────────────────── ack ────
 *   ch->done(ch) ◄──────────── every shard applied (or nothing
 *                              changed, or refused: NOT_CONTROLLER
 *                              on a node that does not lead)
 *
 * So when CreateTopics answers OK on the leader, every partition of the
 * topic that the leader hosts is open and accepts produce.  Each item
 * gets its own result (code, err, and the topic as created or altered).
 */
#ifndef RMQ_BROKER_TOPICS_H
#define RMQ_BROKER_TOPICS_H

#include "broker/meta.h"
#include "core/offload.h"
#include "core/shard.h"

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

struct rmq_bshard;
struct rmq_call;

enum rmq_change_kind {
	RMQ_CHANGE_CREATE,
	RMQ_CHANGE_DELETE,
	RMQ_CHANGE_ALTER,
	RMQ_CHANGE_GROW,   /* CreatePartitions: partitions = the new total */
	RMQ_CHANGE_SHRINK, /* DeletePartitions: partitions = the new total */
};

struct rmq_change_item {
	/* In. */
	char name[RMQ_TOPIC_NAME_MAX + 2]; /* +1: over-long names are refused, not cut */
	char id[40];               /* delete by topic id when name is empty */
	uint32_t partitions;       /* create (0 = the node's default); grow, shrink: the total */
	uint32_t replication_factor;
	size_t nconf;              /* create and alter: configuration entries */
	char (*keys)[64];
	char (*vals)[256];
	int *ops;                  /* alter: AlterConfigOp per entry */
	bool internal;             /* create: the broker's own __consumer_offsets
				    * (its reserved name allowed, marked internal) */
	/* Out: code is a rustmq ErrorCode (the origin may set one before
	 * submitting: shard 0 then skips the item). */
	int code;
	char err[320];
	struct rmq_topic result;   /* the topic created, deleted or altered */
	uint32_t before;           /* grow, shrink: its partitions before */
};

struct rmq_topic_change {
	/* In. */
	enum rmq_change_kind kind;
	bool validate_only;
	bool allow_nonempty;       /* shrink: partitions with records may go */
	size_t n;
	struct rmq_change_item *items;
	void (*done)(struct rmq_topic_change *ch); /* on the origin; frees ch */
	/* For done's use. */
	struct rmq_call *call;
	void (*cb)(void *arg, int code, const char *msg);
	void *cb_arg;
	/* Private. */
	struct rmq_xmsg msg;       /* origin -> shard 0 -> origin */
	unsigned origin;
	struct rmq_topic_change *next;
};


/* Shard 0: sends a topics snapshot to every shard (rmq_broker_apply_meta);
 * done(arg) once every shard runs with it.  p is the caller's, made ready
 * once by rmq_topics_publish_init (0 or -ENOMEM), then used for one
 * publish at a time; rmq_topics_publish_fini frees it. */
struct topic_apply;
struct rmq_topics_publish {
	struct rmq_meta *meta;
	struct topic_apply *applies; /* one per shard */
	unsigned pending;
	void (*done)(void *arg);
	void *arg;
};
int rmq_topics_publish_init(struct rmq_bshard *bs, struct rmq_topics_publish *p);
void rmq_topics_publish(struct rmq_bshard *bs, struct rmq_meta *m, struct rmq_topics_publish *p,
			void (*done)(void *arg), void *arg);
void rmq_topics_publish_fini(struct rmq_topics_publish *p);

/* A change of n items (zeroed), or NULL when out of memory. */
struct rmq_topic_change *rmq_topic_change_new(struct rmq_bshard *bs, enum rmq_change_kind kind,
					      size_t n);
/* Gives it room for n configuration entries.  Returns 0 or -ENOMEM. */
int rmq_topic_change_configs(struct rmq_change_item *it, size_t n);
/* Sends ch to shard 0; ch->done runs on this shard when it is decided. */
void rmq_topic_change_submit(struct rmq_bshard *bs, struct rmq_topic_change *ch);
void rmq_topic_change_free(struct rmq_topic_change *ch);

#endif /* RMQ_BROKER_TOPICS_H */
