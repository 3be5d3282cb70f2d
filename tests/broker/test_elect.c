/* SPDX-License-Identifier: Apache-2.0 */
/*
 * test_elect.c - who may lead after a leadership move (src/broker/elect.c):
 * rmq_elect_choose for a transfer (named or not), a preferred and an
 * unclean election, rmq_elect_apply's epochs and ISR, and
 * rmq_elect_balance over a small cluster state built by hand.
 */
#include "broker/elect.h"
#include "broker/errcode.h"

#include "common/metadata.pb-c.h"

#include <criterion/criterion.h>
#include <string.h>

#define RUNNING RUSTMQ__COMMON__BROKER_STATE__BROKER_RUNNING
#define FENCED RUSTMQ__COMMON__BROKER_STATE__BROKER_FENCED

static struct rmq_broker_rec brokers[4];
static struct rmq_passign parts[3];
static struct rmq_topic topic;
static struct rmq_meta meta;

/* Brokers 1-4 running; topic t of 3 partitions on replicas {1,2,3},
 * {2,3,1}, {3,1,2}, each led by its preferred replica, all in sync. */
static void setup(void)
{
	memset(brokers, 0, sizeof(brokers));
	memset(parts, 0, sizeof(parts));
	memset(&topic, 0, sizeof(topic));
	memset(&meta, 0, sizeof(meta));
	for (uint32_t i = 0; i < 4; i++) {
		brokers[i].id = i + 1;
		brokers[i].state = RUNNING;
	}
	for (uint32_t p = 0; p < 3; p++) {
		struct rmq_passign *pa = &parts[p];
		pa->nreplicas = pa->nisr = 3;
		for (uint32_t k = 0; k < 3; k++)
			pa->replicas[k] = pa->isr[k] = (p + k) % 3 + 1;
		pa->leader = pa->replicas[0];
		pa->leader_epoch = 1;
		pa->part_epoch = 1;
	}
	strcpy(topic.name, "t");
	topic.partitions = 3;
	topic.replication_factor = 3;
	topic.parts = parts;
	meta.topics = &topic;
	meta.ntopics = 1;
	meta.brokers = brokers;
	meta.nbrokers = 4;
}

static int choose(uint32_t p, enum rmq_elect_kind kind, uint32_t target, uint32_t *leader)
{
	char why[160];
	return rmq_elect_choose(&meta, &topic, &parts[p], kind, target, leader, why, sizeof(why));
}

static void drop_isr(struct rmq_passign *pa, uint32_t id)
{
	uint32_t n = 0;
	for (uint32_t i = 0; i < pa->nisr; i++)
		if (pa->isr[i] != id)
			pa->isr[n++] = pa->isr[i];
	pa->nisr = n;
}

TestSuite(elect, .init = setup);

Test(elect, transfer_to_a_named_in_sync_replica)
{
	uint32_t leader;
	cr_expect_eq(choose(0, RMQ_ELECT_TRANSFER, 3, &leader), EC_OK);
	cr_expect_eq(leader, 3);
}

Test(elect, transfer_refusals)
{
	uint32_t leader = 9;
	char why[160];
	cr_expect_eq(choose(0, RMQ_ELECT_TRANSFER, 1, &leader), EC_ELECTION_NOT_NEEDED);
	cr_expect_eq(leader, 0, "no leader on a refusal");
	cr_expect_eq(rmq_elect_choose(&meta, &topic, &parts[0], RMQ_ELECT_TRANSFER, 4, &leader, why,
				      sizeof(why)),
		     EC_REPLICA_NOT_AVAILABLE);
	cr_expect_str_eq(why, "broker 4 is not a replica of the partition");
	drop_isr(&parts[0], 2);
	cr_expect_eq(choose(0, RMQ_ELECT_TRANSFER, 2, &leader), EC_NOT_ENOUGH_REPLICAS,
		     "out of the ISR");
	brokers[2].state = FENCED; /* broker 3, still named in the ISR */
	cr_expect_eq(choose(0, RMQ_ELECT_TRANSFER, 3, &leader), EC_BROKER_NOT_AVAILABLE);
	cr_expect_eq(choose(0, RMQ_ELECT_TRANSFER, 0, &leader), EC_NOT_ENOUGH_REPLICAS,
		     "nobody but the leader can lead");
}

Test(elect, transfer_without_target_takes_the_first_in_sync_follower)
{
	uint32_t leader;
	cr_expect_eq(choose(0, RMQ_ELECT_TRANSFER, 0, &leader), EC_OK);
	cr_expect_eq(leader, 2, "replicas {1,2,3} led by 1: broker 2");
	drop_isr(&parts[0], 2);
	cr_expect_eq(choose(0, RMQ_ELECT_TRANSFER, 0, &leader), EC_OK);
	cr_expect_eq(leader, 3, "broker 2 out of the ISR: broker 3");
	parts[0].leader = 3;
	cr_expect_eq(choose(0, RMQ_ELECT_TRANSFER, 0, &leader), EC_OK);
	cr_expect_eq(leader, 1, "led by 3: the preferred replica, in sync");
}

Test(elect, preferred)
{
	uint32_t leader;
	cr_expect_eq(choose(1, RMQ_ELECT_PREFERRED, 0, &leader), EC_ELECTION_NOT_NEEDED);
	parts[1].leader = 3;
	cr_expect_eq(choose(1, RMQ_ELECT_PREFERRED, 0, &leader), EC_OK);
	cr_expect_eq(leader, 2);
	brokers[1].state = FENCED;
	cr_expect_eq(choose(1, RMQ_ELECT_PREFERRED, 0, &leader), EC_NOT_ENOUGH_REPLICAS,
		     "the preferred replica is fenced");
	brokers[1].state = RUNNING;
	drop_isr(&parts[1], 2);
	cr_expect_eq(choose(1, RMQ_ELECT_PREFERRED, 0, &leader), EC_NOT_ENOUGH_REPLICAS,
		     "the preferred replica is out of the ISR");
}

Test(elect, unclean)
{
	uint32_t leader;
	cr_expect_eq(choose(2, RMQ_ELECT_UNCLEAN, 0, &leader), EC_ELECTION_NOT_NEEDED,
		     "the partition has a leader");
	/* {3,1,2}: broker 3 the last in-sync replica, fenced; no leader. */
	parts[2].leader = 0;
	parts[2].isr[0] = 3;
	parts[2].nisr = 1;
	brokers[2].state = FENCED;
	cr_expect_eq(choose(2, RMQ_ELECT_UNCLEAN, 0, &leader), EC_POLICY_VIOLATION);
	topic.cfg.unclean_election = true;
	cr_expect_eq(choose(2, RMQ_ELECT_UNCLEAN, 0, &leader), EC_OK);
	cr_expect_eq(leader, 1, "the first running replica in preferred order");
	rmq_elect_apply(&parts[2], leader, RMQ_ELECT_UNCLEAN);
	cr_expect_eq(parts[2].leader, 1);
	cr_expect_eq(parts[2].nisr, 1);
	cr_expect_eq(parts[2].isr[0], 1, "the new leader is the ISR alone");
	cr_expect_eq(parts[2].leader_epoch, 2);
	cr_expect_eq(parts[2].part_epoch, 2);
	parts[2].leader = 0;
	brokers[0].state = brokers[1].state = FENCED;
	cr_expect_eq(choose(2, RMQ_ELECT_UNCLEAN, 0, &leader), EC_NOT_ENOUGH_REPLICAS,
		     "no replica runs");
}

Test(elect, unclean_prefers_a_running_in_sync_replica)
{
	uint32_t leader;
	topic.cfg.unclean_election = true;
	parts[0].leader = 0;
	drop_isr(&parts[0], 1);
	drop_isr(&parts[0], 2); /* ISR {3} */
	cr_expect_eq(choose(0, RMQ_ELECT_UNCLEAN, 0, &leader), EC_OK);
	cr_expect_eq(leader, 3, "in sync beats preferred order");
	rmq_elect_apply(&parts[0], leader, RMQ_ELECT_UNCLEAN);
	cr_expect_eq(parts[0].nisr, 1);
}

Test(elect, apply_keeps_the_isr_of_a_clean_move)
{
	rmq_elect_apply(&parts[0], 2, RMQ_ELECT_TRANSFER);
	cr_expect_eq(parts[0].leader, 2);
	cr_expect_eq(parts[0].nisr, 3);
	cr_expect_eq(parts[0].leader_epoch, 2);
	cr_expect_eq(parts[0].part_epoch, 2);
}

Test(elect, balance_moves_what_can_move)
{
	cr_expect_eq(rmq_elect_balance(&meta), 0, "balanced already");
	/* Partition 0 led by 2 (its preferred replica 1 back in sync);
	 * partition 2 led by 1, its preferred replica 3 fenced. */
	parts[0].leader = 2;
	parts[0].leader_epoch = 4;
	parts[2].leader = 1;
	brokers[2].state = FENCED;
	cr_expect_eq(rmq_elect_balance(&meta), 1);
	cr_expect_eq(parts[0].leader, 1);
	cr_expect_eq(parts[0].leader_epoch, 5);
	cr_expect_eq(parts[2].leader, 1, "its preferred replica is fenced: it stays");
	brokers[2].state = RUNNING;
	cr_expect_eq(rmq_elect_balance(&meta), 1);
	cr_expect_eq(parts[2].leader, 3);
	cr_expect_eq(rmq_elect_balance(&meta), 0);
}
