/* SPDX-License-Identifier: Apache-2.0 */
/*
 * test_reassign.c - the moves of src/broker/reassign.c on a cluster state
 * built by hand: rmq_move_start (started, there already, the same move
 * again, another one refused, unknown brokers, too many replicas, a
 * removal completing at once), rmq_move_advance once the added replicas
 * are in sync, rmq_move_phase and rmq_move_cancel; and rmq_move_interval.
 */
#include "broker/reassign.h"
#include "broker/errcode.h"

#include "common/metadata.pb-c.h"
#include "controller/cluster.pb-c.h"

#include <criterion/criterion.h>
#include <string.h>

#define RUNNING RUSTMQ__COMMON__BROKER_STATE__BROKER_RUNNING
#define PHASE(x) RUSTMQ__CONTROLLER__REASSIGNMENT_PHASE__REASSIGNMENT_PHASE_##x

static struct rmq_broker_rec brokers[RMQ_REPLICAS_MAX + 2];
static struct rmq_passign pa;
static struct rmq_topic topic;
static struct rmq_meta meta;

/* Brokers 1-4 running; one partition on {1, 2}, led by 1, both in sync. */
static void setup(void)
{
	memset(brokers, 0, sizeof(brokers));
	memset(&pa, 0, sizeof(pa));
	memset(&topic, 0, sizeof(topic));
	memset(&meta, 0, sizeof(meta));
	for (uint32_t i = 0; i < RMQ_REPLICAS_MAX + 2; i++) {
		brokers[i].id = i + 1;
		brokers[i].state = RUNNING;
	}
	pa.nreplicas = pa.nisr = 2;
	pa.replicas[0] = pa.isr[0] = 1;
	pa.replicas[1] = pa.isr[1] = 2;
	pa.leader = 1;
	pa.leader_epoch = pa.part_epoch = 1;
	strcpy(topic.name, "t");
	topic.partitions = 1;
	topic.parts = &pa;
	meta.topics = &topic;
	meta.ntopics = 1;
	meta.brokers = brokers;
	meta.nbrokers = 4;
}

static int start(const uint32_t *target, uint32_t n, bool *changed)
{
	char why[200];
	*changed = false;
	return rmq_move_start(&meta, &pa, target, n, changed, why, sizeof(why));
}

TestSuite(reassign, .init = setup);

Test(reassign, a_move_adds_then_completes_once_in_sync)
{
	const uint32_t target[] = {2, 3};
	bool changed;
	cr_assert_eq(start(target, 2, &changed), EC_OK);
	cr_expect(changed);
	/* Original replicas first, then the one added; the leader stays. */
	cr_expect_eq(pa.nreplicas, 3);
	cr_expect_eq(pa.replicas[2], 3);
	cr_expect_eq(pa.nadding, 1);
	cr_expect_eq(pa.leader, 1);
	cr_expect_eq(rmq_move_phase(&pa, target, 2), PHASE(COPYING));
	cr_expect_not(rmq_move_advance(&meta, &pa), "broker 3 is not in sync yet");
	pa.isr[pa.nisr++] = 3;
	cr_expect_eq(rmq_move_phase(&pa, target, 2), PHASE(ELECTING));
	cr_assert(rmq_move_advance(&meta, &pa));
	cr_expect_eq(pa.nreplicas, 2);
	cr_expect_eq(pa.replicas[0], 2);
	cr_expect_eq(pa.replicas[1], 3);
	cr_expect_eq(pa.ntarget, 0);
	cr_expect_eq(pa.leader, 2, "the target's first leads once in sync");
	cr_expect_eq(pa.nisr, 2, "broker 1 left the ISR with its replica");
	cr_expect_eq(rmq_move_phase(&pa, target, 2), PHASE(COMPLETED));
}

Test(reassign, there_already_the_same_again_another_refused)
{
	const uint32_t here[] = {1, 2}, target[] = {1, 3}, other[] = {1, 4};
	bool changed;
	cr_expect_eq(start(here, 2, &changed), EC_OK);
	cr_expect_not(changed, "a move to where it is changes nothing");
	cr_assert_eq(start(target, 2, &changed), EC_OK);
	cr_expect(changed);
	uint64_t epoch = pa.part_epoch;
	cr_expect_eq(start(target, 2, &changed), EC_OK);
	cr_expect_not(changed, "the same move again is followed, not started twice");
	cr_expect_eq(pa.part_epoch, epoch);
	cr_expect_eq(start(other, 2, &changed), EC_REASSIGNMENT_IN_PROGRESS);
	cr_expect_eq(rmq_move_phase(&pa, other, 2), PHASE(CANCELLED), "not the move that runs");
}

Test(reassign, refusals)
{
	const uint32_t unknown[] = {1, 9};
	uint32_t many[RMQ_REPLICAS_MAX];
	bool changed;
	cr_expect_eq(start(unknown, 2, &changed), EC_BROKER_NOT_AVAILABLE, "broker 9 is not registered");
	/* Every broker registered; a target of RMQ_REPLICAS_MAX others would
	 * have the partition on 2 more while it moves. */
	meta.nbrokers = RMQ_REPLICAS_MAX + 2;
	for (uint32_t i = 0; i < RMQ_REPLICAS_MAX; i++)
		many[i] = i + 3;
	cr_expect_eq(start(many, RMQ_REPLICAS_MAX, &changed), EC_INVALID_REPLICATION_FACTOR);
	cr_expect_not(changed);
	cr_expect_eq(pa.nreplicas, 2, "nothing changed by a refusal");
}

Test(reassign, a_removal_completes_at_once)
{
	const uint32_t target[] = {2};
	bool changed;
	cr_assert_eq(start(target, 1, &changed), EC_OK);
	cr_expect(changed);
	cr_expect_eq(pa.ntarget, 0, "nothing to copy: complete");
	cr_expect_eq(pa.nreplicas, 1);
	cr_expect_eq(pa.replicas[0], 2);
	cr_expect_eq(pa.leader, 2, "the leader removed: an in-sync replica leads");
	cr_expect_eq(pa.leader_epoch, 2);
}

Test(reassign, a_removal_waits_for_a_kept_replica_in_sync)
{
	const uint32_t target[] = {2};
	bool changed;
	pa.nisr = 1; /* only broker 1 in sync */
	cr_assert_eq(start(target, 1, &changed), EC_OK);
	cr_expect_eq(pa.ntarget, 1, "not completed: broker 2 lacks records");
	cr_expect_eq(rmq_move_phase(&pa, target, 1), PHASE(ELECTING));
}

Test(reassign, cancel_puts_back_the_original_replicas)
{
	const uint32_t target[] = {3, 4};
	bool changed;
	cr_assert_eq(start(target, 2, &changed), EC_OK);
	cr_expect_eq(pa.nreplicas, 4);
	rmq_move_cancel(&meta, &pa);
	cr_expect_eq(pa.nreplicas, 2);
	cr_expect_eq(pa.replicas[0], 1);
	cr_expect_eq(pa.replicas[1], 2);
	cr_expect_eq(pa.ntarget, 0);
	cr_expect_eq(pa.leader, 1);
	cr_expect_eq(rmq_move_phase(&pa, target, 2), PHASE(CANCELLED));
}

Test(reassign, progress_interval)
{
	uint64_t ns;
	Google__Protobuf__Duration d = GOOGLE__PROTOBUF__DURATION__INIT;
	cr_expect(rmq_move_interval(NULL, &ns));
	cr_expect_eq(ns, 1000000000ULL, "unset: 1 s");
	d.nanos = 1000;
	cr_expect(rmq_move_interval(&d, &ns));
	cr_expect_eq(ns, 100000000ULL, "at least 100 ms");
	d.nanos = 0;
	d.seconds = 1LL << 40;
	cr_expect(rmq_move_interval(&d, &ns));
	cr_expect_eq(ns, 3600ULL * 1000000000, "at most an hour");
	d.seconds = -1;
	cr_expect_not(rmq_move_interval(&d, &ns));
}
