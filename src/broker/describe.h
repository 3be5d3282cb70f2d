/* SPDX-License-Identifier: Apache-2.0 */
/*
 * describe.h - this node and its topics as the protocol describes them
 * (rustmq.common BrokerInfo, TopicMetadata, ConfigEntry), for
 * MetadataService and AdminService answers.
 *
 * Everything is read from the calling shard's own metadata snapshot and
 * allocated in arenas the caller frees; strings point into the snapshot
 * and the broker's configuration, valid while the handler runs.
 */
#ifndef RMQ_BROKER_DESCRIBE_H
#define RMQ_BROKER_DESCRIBE_H

#include "broker/broker.h"
#include "common/metadata.pb-c.h"

#include <stdbool.h>
#include <stddef.h>

/* This broker's BrokerInfo (bi points into the struct). */
struct rmq_self_info {
	Rustmq__Common__BrokerInfo bi;
	Rustmq__Common__BrokerId id;
	Google__Protobuf__Timestamp hb;
};
void rmq_describe_self(struct rmq_bshard *bs, struct rmq_self_info *s);

/* Every registered broker, for answers that list them (v[0..n)); this
 * node too before it is registered.  Returns 0 or -ENOMEM; freed by
 * rmq_brokers_free either way. */
struct rmq_brokers {
	struct rmq_arena a;
	struct rmq_self_info self;
	Rustmq__Common__BrokerInfo **v;
	size_t n;
};
int rmq_describe_brokers(struct rmq_bshard *bs, struct rmq_brokers *out);
void rmq_brokers_free(struct rmq_brokers *b);

/* TopicMetadata of t (configs: with every config entry), in a; NULL when
 * out of memory. */
Rustmq__Common__TopicMetadata *rmq_describe_topic(struct rmq_bshard *bs, struct rmq_arena *a,
						  const struct rmq_topic *t, bool configs);

/* Every key of t's configuration, sorted by name (admin.proto: "effective
 * values, by name"), in a; *n is set.  NULL when out of memory. */
Rustmq__Common__ConfigEntry **rmq_describe_configs(const struct rmq_topic *t, struct rmq_arena *a,
						   size_t *n);

/* TopicMetadata of several topics, one arena each. */
struct rmq_md_list {
	Rustmq__Common__TopicMetadata **v;
	size_t n;
	struct rmq_arena *arenas;
	size_t narenas;
};

/* Fills out for `names` (a TOPIC_NOT_FOUND entry for each unknown one), or
 * with nnames == 0 for every topic (internal ones when asked; only names
 * starting with prefix when not NULL).  Returns 0 or -ENOMEM; free out
 * with rmq_md_list_free either way. */
int rmq_describe_topics(struct rmq_bshard *bs, char **names, size_t nnames, bool configs,
			bool internal, const char *prefix, struct rmq_md_list *out);
void rmq_md_list_free(struct rmq_md_list *l);

#endif /* RMQ_BROKER_DESCRIBE_H */
