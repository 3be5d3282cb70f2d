/* SPDX-License-Identifier: Apache-2.0 */
/*
 * offsets_topic.c - in a cluster, the controller's leader creates the
 * replicated topic __consumer_offsets (docs/replication.md, "Group
 * coordinator"), as Kafka's controller creates its internal topic.
 *
 * Created on demand, as Kafka does at the first FindCoordinator: a node
 * asked for a coordinator while the topic does not exist forwards the call
 * to the controller's leader (metadata.c), which sets offsets_wanted and
 * answers COORDINATOR_NOT_AVAILABLE; a cluster whose clients use no groups
 * never has the topic.  Then, from the controller's tick on shard 0, while
 * this node leads the controller and its state has no such topic: once as
 * many brokers run as
 * the replication factor asks (--offsets-replication-factor, at most the
 * registered brokers and at least the voters, whichever is the larger),
 * a CreateTopics of --offsets-partitions partitions, marked internal
 * (its reserved name allowed; it cannot be deleted), retained forever
 * (the coordinator's records are its whole state), goes through the
 * controller like any other.  One creation in flight at a time; after a
 * refusal the demand is forgotten until the next FindCoordinator (no
 * retry, and no warning, every tick).
 */
#include "broker/broker.h"
#include "broker/cluster.h"
#include "broker/controller.h"
#include "broker/group.h"
#include "broker/offsets.h"
#include "broker/topics.h"
#include "common/metadata.pb-c.h"
#include "core/log.h"

#include <stdio.h>

static void created(struct rmq_topic_change *ch)
{
	struct rmq_bshard *bs = rmq_bshard_current();
	struct rmq_change_item *it = &ch->items[0];
	if (it->code == EC_OK)
		rmq_info("%s created: %u partitions, replication factor %u", RMQ_OFFSETS_TOPIC,
			 it->result.partitions, it->result.replication_factor);
	else if (it->code != EC_TOPIC_ALREADY_EXISTS) {
		/* Not at every tick: the next FindCoordinator asks again. */
		rmq_warn("%s not created: %s", RMQ_OFFSETS_TOPIC, it->err);
		atomic_store(&bs->b->offsets_wanted, 0);
	}
	bs->offsets_creating = false;
	rmq_topic_change_free(ch);
}

void rmq_offsets_topic_tick(struct rmq_bshard *bs)
{
	char addr[8];
	const struct rmq_meta *m = bs->meta;
	if (!rmq_groups_replicated(bs->b) || !atomic_load(&bs->b->offsets_wanted) ||
	    bs->offsets_creating ||
	    rmq_runtime_stopping(bs->b->rt) ||
	    (uint32_t)rmq_ctrl_leader(bs, addr, sizeof(addr)) != bs->b->self ||
	    rmq_meta_find(m, RMQ_OFFSETS_TOPIC) >= 0)
		return;
	size_t running = 0;
	for (size_t i = 0; i < m->nbrokers; i++)
		running += m->brokers[i].state == RUSTMQ__COMMON__BROKER_STATE__BROKER_RUNNING;
	struct rmq_quorum q;
	rmq_cluster_quorum(bs, &q);
	size_t known = m->nbrokers > q.n ? m->nbrokers : q.n;
	uint64_t rf = bs->b->cfg.offsets_replication_factor;
	if (rf > known)
		rf = known;
	if (rf == 0 || running < rf)
		return; /* wait for the brokers (Kafka waits for offsets.topic.replication.factor) */
	struct rmq_topic_change *ch = rmq_topic_change_new(bs, RMQ_CHANGE_CREATE, 1);
	if (!ch)
		return;
	struct rmq_change_item *it = &ch->items[0];
	snprintf(it->name, sizeof(it->name), "%s", RMQ_OFFSETS_TOPIC);
	it->partitions = bs->b->cfg.offsets_partitions;
	it->replication_factor = (uint32_t)rf;
	it->internal = true;
	if (rmq_topic_change_configs(it, 3) < 0) {
		rmq_topic_change_free(ch);
		return;
	}
	snprintf(it->keys[0], sizeof(it->keys[0]), "retention.ms");
	snprintf(it->vals[0], sizeof(it->vals[0]), "-1");
	snprintf(it->keys[1], sizeof(it->keys[1]), "retention.bytes");
	snprintf(it->vals[1], sizeof(it->vals[1]), "-1");
	snprintf(it->keys[2], sizeof(it->keys[2]), "segment.bytes");
	snprintf(it->vals[2], sizeof(it->vals[2]), "%llu",
		 (unsigned long long)bs->b->cfg.offsets_segment_bytes);
	ch->done = created;
	bs->offsets_creating = true;
	rmq_info("creating %s: %u partitions, replication factor %llu (%zu brokers running)",
		 RMQ_OFFSETS_TOPIC, it->partitions, (unsigned long long)rf, running);
	rmq_topic_change_submit(bs, ch);
}
