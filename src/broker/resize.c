/* SPDX-License-Identifier: Apache-2.0 */
/*
 * resize.c - ControllerBrokerService CreatePartitions and DeletePartitions:
 * a topic's partition count changed by the controller's leader (topics.h:
 * RMQ_CHANGE_GROW, RMQ_CHANGE_SHRINK), forwarded there from any node
 * (forward.h).  New partitions are placed like a new topic's (placement.h)
 * and led by their first replica; deleted ones go with their records, so
 * DeletePartitions needs allow_nonempty.
 */
#include "broker/broker.h"
#include "broker/describe.h"
#include "broker/forward.h"
#include "broker/methods.h"
#include "broker/reply.h"
#include "broker/topics.h"
#include "controller/cluster.pb-c.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static void grow_done(struct rmq_topic_change *ch)
{
	struct rmq_bshard *bs = rmq_bshard_current();
	Rustmq__Controller__CreatePartitionsResponse r =
		RUSTMQ__CONTROLLER__CREATE_PARTITIONS_RESPONSE__INIT;
	size_t n = ch->n ? ch->n : 1;
	Rustmq__Controller__CreatePartitionsTopicResult *rs = calloc(n, sizeof(*rs));
	Rustmq__Controller__CreatePartitionsTopicResult **rp = calloc(n, sizeof(*rp));
	struct rmq_arena *arenas = calloc(n, sizeof(*arenas));
	if (!rs || !rp || !arenas) {
		rmq_call_finish(ch->call, RMQ_GRPC_RESOURCE_EXHAUSTED, "out of memory");
		goto out;
	}
	for (size_t i = 0; i < ch->n; i++) {
		struct rmq_change_item *it = &ch->items[i];
		rustmq__controller__create_partitions_topic_result__init(&rs[i]);
		rs[i].topic = it->name;
		rs[i].error_code = (Rustmq__Common__ErrorCode)it->code;
		rs[i].error_message = it->err;
		/* The partitions made, as this shard's metadata (every shard
		 * runs with the change now) describes them. */
		long k = it->code == EC_OK && !ch->validate_only ? rmq_meta_find(bs->meta, it->name) : -1;
		Rustmq__Common__TopicMetadata *tm =
			k >= 0 ? rmq_describe_topic(bs, &arenas[i], &bs->meta->topics[k], false) : NULL;
		if (tm && tm->n_partitions > it->before) {
			rs[i].partitions = tm->partitions + it->before;
			rs[i].n_partitions = tm->n_partitions - it->before;
		}
		rp[i] = &rs[i];
	}
	r.topics = rp;
	r.n_topics = ch->n;
	rmq_reply_pb(ch->call, &r.base);
out:
	for (size_t i = 0; arenas && i < ch->n; i++)
		rmq_arena_free(&arenas[i]);
	free(arenas);
	free(rs);
	free(rp);
	rmq_call_unref(ch->call);
	rmq_topic_change_free(ch);
}

static void shrink_done(struct rmq_topic_change *ch)
{
	Rustmq__Controller__DeletePartitionsResponse r =
		RUSTMQ__CONTROLLER__DELETE_PARTITIONS_RESPONSE__INIT;
	size_t n = ch->n ? ch->n : 1, total = 0;
	for (size_t i = 0; i < ch->n; i++)
		if (ch->items[i].code == EC_OK && ch->items[i].before > ch->items[i].partitions)
			total += ch->items[i].before - ch->items[i].partitions;
	Rustmq__Controller__DeletePartitionsTopicResult *rs = calloc(n, sizeof(*rs));
	Rustmq__Controller__DeletePartitionsTopicResult **rp = calloc(n, sizeof(*rp));
	uint32_t *ids = calloc(total + 1, sizeof(*ids));
	if (!rs || !rp || !ids) {
		rmq_call_finish(ch->call, RMQ_GRPC_RESOURCE_EXHAUSTED, "out of memory");
	} else {
		uint32_t *next = ids;
		for (size_t i = 0; i < ch->n; i++) {
			struct rmq_change_item *it = &ch->items[i];
			rustmq__controller__delete_partitions_topic_result__init(&rs[i]);
			rs[i].topic = it->name;
			rs[i].error_code = (Rustmq__Common__ErrorCode)it->code;
			rs[i].error_message = it->err;
			if (it->code == EC_OK) {
				rs[i].deleted_partitions = next;
				for (uint32_t p = it->partitions; p < it->before; p++)
					next[rs[i].n_deleted_partitions++] = p;
				next += rs[i].n_deleted_partitions;
			}
			rp[i] = &rs[i];
		}
		r.topics = rp;
		r.n_topics = ch->n;
		rmq_reply_pb(ch->call, &r.base);
	}
	free(ids);
	free(rs);
	free(rp);
	rmq_call_unref(ch->call);
	rmq_topic_change_free(ch);
}

/* A change of n topics (at most --max-request-names: methods.c), or NULL
 * (the call answered). */
static struct rmq_topic_change *change_new(struct rmq_call *c, enum rmq_change_kind kind, size_t n)
{
	struct rmq_topic_change *ch = rmq_topic_change_new(rmq_call_app(c), kind, n);
	if (!ch)
		rmq_call_finish(c, RMQ_GRPC_RESOURCE_EXHAUSTED, "out of memory");
	return ch;
}

static void submit(struct rmq_call *c, struct rmq_topic_change *ch,
		   void (*done)(struct rmq_topic_change *ch))
{
	ch->call = c;
	rmq_call_ref(c);
	ch->done = done;
	if (ch->n == 0)
		done(ch);
	else
		rmq_topic_change_submit(rmq_call_app(c), ch);
}

void rmq_resize_create_partitions(struct rmq_call *c, void *msg)
{
	if (rmq_forward_admin(c, msg, rmq_resize_create_partitions))
		return; /* another node leads the controller */
	Rustmq__Controller__CreatePartitionsRequest *req = msg;
	struct rmq_topic_change *ch = change_new(c, RMQ_CHANGE_GROW, req->n_topics);
	if (ch) {
		ch->validate_only = req->validate_only;
		for (size_t i = 0; i < req->n_topics; i++) {
			struct rmq_change_item *it = &ch->items[i];
			snprintf(it->name, sizeof(it->name), "%s", req->topics[i]->topic);
			it->partitions = req->topics[i]->new_total_count;
			if (req->topics[i]->n_assignments > 0) {
				it->code = EC_INVALID_REQUEST;
				snprintf(it->err, sizeof(it->err),
					 "manual replica assignments are not taken yet: leave them empty "
					 "and the controller places the partitions");
			}
		}
	}
	protobuf_c_message_free_unpacked(msg, NULL);
	if (ch)
		submit(c, ch, grow_done);
}

void rmq_resize_delete_partitions(struct rmq_call *c, void *msg)
{
	if (rmq_forward_admin(c, msg, rmq_resize_delete_partitions))
		return; /* another node leads the controller */
	Rustmq__Controller__DeletePartitionsRequest *req = msg;
	struct rmq_topic_change *ch = change_new(c, RMQ_CHANGE_SHRINK, req->n_topics);
	if (ch) {
		ch->validate_only = req->validate_only;
		ch->allow_nonempty = req->allow_nonempty;
		for (size_t i = 0; i < req->n_topics; i++) {
			snprintf(ch->items[i].name, sizeof(ch->items[i].name), "%s",
				 req->topics[i]->topic);
			ch->items[i].partitions = req->topics[i]->new_total_count;
		}
	}
	protobuf_c_message_free_unpacked(msg, NULL);
	if (ch)
		submit(c, ch, shrink_done);
}
