/* SPDX-License-Identifier: Apache-2.0 */
/*
 * partition.c - rmq partition status: each partition of a topic as its
 * leader sees it (BrokerReplicationService.GetISR, asked of the leader
 * through route.h): leader and epochs, ISR (and one asked for), high
 * watermark and log end, and every replica's progress.
 */
#include "cli.h"
#include "commands.h"
#include "query.h"
#include "route.h"

#include "broker/replication.pb-c.h"
#include "core/util.h"

#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>

static void print_ids(const char *what, char **ids, size_t n)
{
	printf("\t%s ", what);
	for (size_t i = 0; i < n; i++)
		printf("%s%s", i ? "," : "", ids[i]);
	if (n == 0)
		printf("-");
}

/* Partition p of topic, from its leader (following it when it moved). */
static void status_of(const char *topic, uint32_t p)
{
	int tries = 0;
	for (;;) {
		Rustmq__Common__TopicPartition tp = RUSTMQ__COMMON__TOPIC_PARTITION__INIT;
		Rustmq__Common__TopicPartition *tpp = &tp;
		Rustmq__Broker__GetISRRequest req = RUSTMQ__BROKER__GET_ISRREQUEST__INIT;
		tp.topic = (char *)topic;
		tp.partition = p;
		req.version = &api_v1;
		req.topic_partitions = &tpp;
		req.n_topic_partitions = 1;
		Rustmq__Broker__GetISRResponse *r = (Rustmq__Broker__GetISRResponse *)pb_call_on(
			route_rpc(topic, p), "GetISR", "/rustmq.broker.BrokerReplicationService/GetISR",
			&req.base, &rustmq__broker__get_isrresponse__descriptor, CALL_TIMEOUT_NS);
		if (r->error_code)
			die_code("GetISR", topic, r->error_code, r->error_message);
		const Rustmq__Broker__IsrState *st = r->n_partitions ? r->partitions[0] : NULL;
		int code = st ? st->error_code : EC(PARTITION_NOT_FOUND);
		if (code && route_retry(topic, p, code, "", &tries)) {
			protobuf_c_message_free_unpacked(&r->base, NULL);
			continue;
		}
		if (code)
			die_code("GetISR", topic, code, st ? st->error_message : "");
		printf("  partition %" PRIu32 "\tleader %s\tepoch %" PRIu32 "\tpartition epoch %" PRIu64
		       "\thw %" PRIu64 "\tlog end %" PRIu64,
		       p, st->leader_id, st->leader_epoch, st->partition_epoch, st->high_watermark,
		       st->log_end_offset);
		print_ids("isr", st->isr_ids, st->n_isr_ids);
		if (st->n_pending_isr_ids)
			print_ids("asked", st->pending_isr_ids, st->n_pending_isr_ids);
		printf("\n");
		for (size_t i = 0; i < st->n_replicas; i++) {
			const Rustmq__Broker__ReplicaProgress *rp = st->replicas[i];
			printf("    replica %s\tend %" PRIu64 "\tlag %" PRIu64 "\t%s\n", rp->broker_id,
			       rp->log_end_offset, rp->lag_records, rp->in_sync ? "in sync" : "out of sync");
		}
		protobuf_c_message_free_unpacked(&r->base, NULL);
		return;
	}
}

static int partition_status(int argc, char **argv)
{
	uint64_t only;
	const struct rmq_flag flags[] = {
		{"partition", RMQ_FLAG_UINT, &only, "4294967295", "one partition only (all when not given)", 0,
		 PARTITION_ANY, NULL},
	};
	const struct cmd_spec cs = {"partition status", "partition status TOPIC [--partition N]",
				    "Shows each partition as its leader sees it: ISR, high watermark, "
				    "and every replica's progress.",
				    flags, 1, 1, 1, false, false};
	int npos;
	parse_args(&cs, argc, argv, &npos);
	const char *topic = argv[1];
	connect_broker();
	uint32_t n = topic_partitions(topic);
	topic_check_partition(topic, only, n);
	printf("topic %s\tpartitions %" PRIu32 "\n", topic, n);
	for (uint32_t p = 0; p < n; p++)
		if (only == PARTITION_ANY || only == p)
			status_of(topic, p);
	route_close();
	return 0;
}

static const struct command partition_cmds[] = {
	{"status", partition_status, "ISR and replica progress: rmq partition status TOPIC [--partition N]"},
};

int cmd_partition(int argc, char **argv)
{
	return run_subcommand("partition", partition_cmds, RMQ_ARRAY_SIZE(partition_cmds), NULL,
			      argc, argv);
}
