/* SPDX-License-Identifier: Apache-2.0 */
/*
 * metadata.c - MetadataService: topics, brokers, partition leaders, the
 * cluster, group coordinators.
 *
 * Answered from the receiving shard's own metadata snapshot, without
 * messages to other shards (describe.h builds the messages).
 */
#include "broker/auth.h"
#include "broker/broker.h"
#include "broker/cluster.h"
#include "broker/describe.h"
#include "broker/forward.h"
#include "broker/group.h"
#include "broker/offsets.h"

#include "client/metadata.pb-c.h"
#include "core/util.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

void rmq_md_topic_metadata(struct rmq_call *c, void *msg)
{
	struct rmq_bshard *bs = rmq_call_app(c);
	Rustmq__Client__GetTopicMetadataRequest *req = msg;
	Rustmq__Client__GetTopicMetadataResponse r = RUSTMQ__CLIENT__GET_TOPIC_METADATA_RESPONSE__INIT;
	struct rmq_brokers brokers;
	struct rmq_md_list l = {0};
	int rc = rmq_describe_brokers(bs, &brokers);
	if (rc < 0 ||
	    rmq_describe_topics(bs, req->topics, req->n_topics, req->include_configs, true, NULL, &l) < 0) {
		rmq_call_finish(c, RMQ_GRPC_RESOURCE_EXHAUSTED, "out of memory");
	} else {
		rmq_auth_filter_topics(c, &l, req->n_topics > 0);
		r.topics = l.v;
		r.n_topics = l.n;
		r.brokers = brokers.v;
		r.n_brokers = brokers.n;
		r.cluster_id = (char *)rmq_cluster_id(bs);
		r.controller_id = (char *)rmq_cluster_controller(bs);
		r.metadata_version = bs->meta->version;
		rmq_reply_pb(c, &r.base);
	}
	rmq_md_list_free(&l);
	rmq_brokers_free(&brokers);
	rustmq__client__get_topic_metadata_request__free_unpacked(req, NULL);
}

void rmq_md_list_topics(struct rmq_call *c, void *msg)
{
	struct rmq_bshard *bs = rmq_call_app(c);
	Rustmq__Client__ListTopicsRequest *req = msg;
	Rustmq__Client__ListTopicsResponse r = RUSTMQ__CLIENT__LIST_TOPICS_RESPONSE__INIT;
	struct rmq_md_list l;
	if (rmq_describe_topics(bs, NULL, 0, false, req->include_internal,
		       req->name_prefix[0] ? req->name_prefix : NULL, &l) < 0) {
		rmq_call_finish(c, RMQ_GRPC_RESOURCE_EXHAUSTED, "out of memory");
	} else {
		rmq_auth_filter_topics(c, &l, false);
		/* metadata.proto: "partitions and config.configs empty". */
		for (size_t i = 0; i < l.n; i++)
			l.v[i]->n_partitions = 0;
		r.topics = l.v;
		r.n_topics = l.n;
		r.metadata_version = bs->meta->version;
		rmq_reply_pb(c, &r.base);
	}
	rmq_md_list_free(&l);
	rustmq__client__list_topics_request__free_unpacked(req, NULL);
}

void rmq_md_broker_list(struct rmq_call *c, void *msg)
{
	struct rmq_bshard *bs = rmq_call_app(c);
	Rustmq__Client__GetBrokerListRequest *req = msg;
	Rustmq__Client__GetBrokerListResponse r = RUSTMQ__CLIENT__GET_BROKER_LIST_RESPONSE__INIT;
	struct rmq_brokers brokers;
	if (rmq_describe_brokers(bs, &brokers) < 0) {
		rmq_call_finish(c, RMQ_GRPC_RESOURCE_EXHAUSTED, "out of memory");
	} else {
		r.brokers = brokers.v;
		r.n_brokers = brokers.n;
		r.cluster_id = (char *)rmq_cluster_id(bs);
		r.controller_id = (char *)rmq_cluster_controller(bs);
		r.metadata_version = bs->meta->version;
		rmq_reply_pb(c, &r.base);
	}
	rmq_brokers_free(&brokers);
	rustmq__client__get_broker_list_request__free_unpacked(req, NULL);
}

void rmq_md_partition_leader(struct rmq_call *c, void *msg)
{
	struct rmq_bshard *bs = rmq_call_app(c);
	Rustmq__Client__GetPartitionLeaderRequest *req = msg;
	Rustmq__Client__GetPartitionLeaderResponse r = RUSTMQ__CLIENT__GET_PARTITION_LEADER_RESPONSE__INIT;
	struct rmq_brokers brokers = {0};
	struct rmq_arena a = {.n = 0};
	char err[300];
	long k = req->topic_partition ? rmq_meta_find(bs->meta, req->topic_partition->topic) : -1;
	r.metadata_version = bs->meta->version;
	if (!req->topic_partition) {
		rmq_call_finish(c, RMQ_GRPC_INVALID_ARGUMENT, "topic_partition is required");
		goto out;
	}
	if (k < 0) {
		r.error_code = EC_TOPIC_NOT_FOUND;
		snprintf(err, sizeof(err), "unknown topic '%s'", req->topic_partition->topic);
		r.error_message = err;
	} else if (req->topic_partition->partition >= bs->meta->topics[k].partitions) {
		r.error_code = EC_PARTITION_NOT_FOUND;
		snprintf(err, sizeof(err), "topic '%s' has %u partitions", req->topic_partition->topic,
			 bs->meta->topics[k].partitions);
		r.error_message = err;
	} else {
		Rustmq__Common__TopicMetadata *tm = rmq_describe_topic(bs, &a, &bs->meta->topics[k], false);
		if (!tm) {
			rmq_call_finish(c, RMQ_GRPC_RESOURCE_EXHAUSTED, "out of memory");
			goto out;
		}
		r.partition = tm->partitions[req->topic_partition->partition];
		r.error_code = r.partition->error_code;
		if (rmq_describe_brokers(bs, &brokers) < 0) {
			rmq_call_finish(c, RMQ_GRPC_RESOURCE_EXHAUSTED, "out of memory");
			goto out;
		}
		for (size_t i = 0; i < brokers.n; i++)
			if (strcmp(brokers.v[i]->id->id, r.partition->leader_id) == 0)
				r.leader = brokers.v[i];
		if (!r.leader) {
			r.error_code = EC_LEADER_NOT_AVAILABLE;
			r.error_message = "the partition has no leader now: its replicas' brokers are "
					  "fenced or gone";
		}
	}
	rmq_reply_pb(c, &r.base);
out:
	rmq_brokers_free(&brokers);
	rmq_arena_free(&a);
	rustmq__client__get_partition_leader_request__free_unpacked(req, NULL);
}

void rmq_md_cluster_metadata(struct rmq_call *c, void *msg)
{
	struct rmq_bshard *bs = rmq_call_app(c);
	Rustmq__Client__GetClusterMetadataRequest *req = msg;
	Rustmq__Client__GetClusterMetadataResponse r = RUSTMQ__CLIENT__GET_CLUSTER_METADATA_RESPONSE__INIT;
	Rustmq__Common__ClusterMetadata cm = RUSTMQ__COMMON__CLUSTER_METADATA__INIT;
	struct rmq_brokers brokers;
	struct rmq_md_list l = {0};
	int rc = rmq_describe_brokers(bs, &brokers);
	cm.cluster_id = (char *)rmq_cluster_id(bs);
	cm.controller_id = (char *)rmq_cluster_controller(bs);
	cm.controller_epoch = rmq_cluster_controller_epoch(bs);
	cm.brokers = brokers.v;
	cm.n_brokers = brokers.n;
	cm.metadata_version = bs->meta->version;
	if (rc < 0 ||
	    (req->include_topics && rmq_describe_topics(bs, NULL, 0, false, true, NULL, &l) < 0)) {
		rmq_call_finish(c, RMQ_GRPC_RESOURCE_EXHAUSTED, "out of memory");
	} else {
		rmq_auth_filter_topics(c, &l, false);
		cm.topics = l.v;
		cm.n_topics = l.n;
		r.metadata = &cm;
		rmq_reply_pb(c, &r.base);
	}
	rmq_md_list_free(&l);
	rmq_brokers_free(&brokers);
	rustmq__client__get_cluster_metadata_request__free_unpacked(req, NULL);
}

/*
 * The coordinator of group `key`.  Alone: this node.  In a cluster
 * (docs/replication.md, "Group coordinator"): the leader of the group's
 * partition of __consumer_offsets, as this node's snapshot says;
 * COORDINATOR_NOT_AVAILABLE while the topic is not created or the
 * partition has no leader (the client asks again).  What serves the group
 * RPCs is that broker's own view: a client sent to a broker that just lost
 * the partition gets NOT_COORDINATOR and asks here again.
 */
static void coordinator_of(struct rmq_bshard *bs, const char *key, struct rmq_self_info *self,
			   Rustmq__Common__BrokerInfo *bi, Rustmq__Common__BrokerId *id,
			   Rustmq__Client__CoordinatorInfo *ci, char *why, size_t len)
{
	if (!rmq_groups_replicated(bs->b)) {
		ci->broker = &self->bi; /* one node coordinates everything */
		return;
	}
	uint32_t part = rmq_group_partition(bs, key);
	long ti = rmq_meta_find(bs->meta, RMQ_OFFSETS_TOPIC);
	const struct rmq_topic *t = ti >= 0 ? &bs->meta->topics[ti] : NULL;
	struct rmq_leader l = {0};
	if (t && t->partitions == bs->b->cfg.offsets_partitions)
		l = rmq_cluster_leader(bs, t, part);
	if (l.self && rmq_groups_registered(bs)) {
		ci->broker = &self->bi;
	} else if (l.id && !l.self && l.broker) {
		rmq_meta_broker_info(l.broker, bi, id);
		ci->broker = bi;
	} else {
		ci->error_code = EC_COORDINATOR_NOT_AVAILABLE;
		if (!t)
			snprintf(why, len, "%s is being created (by the controller's leader, once "
					   "--offsets-replication-factor brokers run): retry",
				 RMQ_OFFSETS_TOPIC);
		else if (l.self)
			snprintf(why, len, "this broker is (re)joining the cluster: its metadata may be "
					   "old; retry");
		else if (t->partitions != bs->b->cfg.offsets_partitions)
			snprintf(why, len, "%s has %u partitions, this node's --offsets-partitions is "
					   "%u: ask another node",
				 RMQ_OFFSETS_TOPIC, t->partitions, bs->b->cfg.offsets_partitions);
		else
			snprintf(why, len, "%s-%u, which holds the group, has no leader now: retry",
				 RMQ_OFFSETS_TOPIC, part);
		ci->error_message = why;
	}
}

void rmq_md_find_coordinator(struct rmq_call *c, void *msg)
{
	struct rmq_bshard *bs = rmq_call_app(c);
	Rustmq__Client__FindCoordinatorRequest *req = msg;
	Rustmq__Client__FindCoordinatorResponse r = RUSTMQ__CLIENT__FIND_COORDINATOR_RESPONSE__INIT;
	struct rmq_self_info self;
	size_t n = req->n_keys;
	if (rmq_groups_replicated(bs->b) && rmq_meta_find(bs->meta, RMQ_OFFSETS_TOPIC) < 0) {
		/* Kafka creates its offsets topic at the first FindCoordinator:
		 * the controller's leader does it here, so the call goes there
		 * (its answer, COORDINATOR_NOT_AVAILABLE until the topic is
		 * made, is relayed). */
		if (rmq_forward_admin(c, msg, rmq_md_find_coordinator))
			return;
		atomic_store(&bs->b->offsets_wanted, 1);
	}
	Rustmq__Client__CoordinatorInfo *cs = calloc(n ? n : 1, sizeof(*cs));
	Rustmq__Client__CoordinatorInfo **cp = calloc(n ? n : 1, sizeof(*cp));
	Rustmq__Common__BrokerInfo *bis = calloc(n ? n : 1, sizeof(*bis));
	Rustmq__Common__BrokerId *ids = calloc(n ? n : 1, sizeof(*ids));
	char (*whys)[200] = calloc(n ? n : 1, sizeof(*whys));
	if (!cs || !cp || !bis || !ids || !whys) {
		rmq_call_finish(c, RMQ_GRPC_RESOURCE_EXHAUSTED, "out of memory");
		goto out;
	}
	rmq_describe_self(bs, &self);
	for (size_t i = 0; i < n; i++) {
		rustmq__client__coordinator_info__init(&cs[i]);
		cs[i].key = req->keys[i];
		if (req->keys[i][0] == '\0') {
			cs[i].error_code = EC_INVALID_REQUEST;
			cs[i].error_message = "empty key";
		} else {
			coordinator_of(bs, req->keys[i], &self, &bis[i], &ids[i], &cs[i], whys[i],
				       sizeof(whys[i]));
		}
		cp[i] = &cs[i];
	}
	r.coordinators = cp;
	r.n_coordinators = n;
	rmq_reply_pb(c, &r.base);
out:
	free(cs);
	free(cp);
	free(bis);
	free(ids);
	free(whys);
	rustmq__client__find_coordinator_request__free_unpacked(req, NULL);
}
