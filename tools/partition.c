/* SPDX-License-Identifier: Apache-2.0 */
/*
 * partition.c - rmq partition status: each partition of a topic as its
 * leader sees it (BrokerReplicationService.GetISR, asked of the leader
 * through route.h): leader and epochs, ISR (and one asked for), high
 * watermark and log end, and every replica's progress.
 *
 * rmq partition transfer and elect-leaders move leaderships
 * (TransferLeadership, ElectLeaders): sent to the bootstrap node, which
 * carries them to the controller's leader.
 *
 * rmq partition reassign moves a partition to other brokers
 * (ControllerBrokerService.ReassignPartitions, asked of the controller's
 * leader) and prints its progress until it is over; rmq partition state
 * shows the replicas one broker hosts (PartitionManagementService.
 * GetPartitionState).
 */
#include "cli.h"
#include "commands.h"
#include "query.h"
#include "route.h"

#include "broker/partition.pb-c.h"
#include "broker/replication.pb-c.h"
#include "controller/admin.pb-c.h"
#include "controller/cluster.pb-c.h"
#include "core/util.h"

#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

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

static int partition_transfer(int argc, char **argv)
{
	uint64_t p;
	const char *to;
	const struct rmq_flag flags[] = {
		{"partition", RMQ_FLAG_UINT, &p, "0", "the partition", 0, PARTITION_ANY - 1, NULL},
		{"to", RMQ_FLAG_STRING, &to, "", "the broker id to lead it, an in-sync replica (the first in-sync follower in preferred order when not given)", 0, 0, NULL},
	};
	const struct cmd_spec cs = {"partition transfer", "partition transfer TOPIC [--partition N] [--to BROKER]",
				    "Moves a partition's leadership to an in-sync replica, in a new leader "
				    "epoch.",
				    flags, 2, 1, 1, false, false};
	int npos;
	parse_args(&cs, argc, argv, &npos);
	Rustmq__Common__TopicPartition tp = RUSTMQ__COMMON__TOPIC_PARTITION__INIT;
	Rustmq__Broker__TransferLeadershipRequest req = RUSTMQ__BROKER__TRANSFER_LEADERSHIP_REQUEST__INIT;
	tp.topic = argv[1];
	tp.partition = (uint32_t)p;
	req.version = &api_v1;
	req.topic_partition = &tp;
	req.target_broker_id = (char *)to;
	connect_broker();
	Rustmq__Broker__TransferLeadershipResponse *r =
		PB_CALL("TransferLeadership", "/rustmq.broker.BrokerReplicationService/TransferLeadership",
			&req, Rustmq__Broker__TransferLeadershipResponse,
			rustmq__broker__transfer_leadership_response__descriptor);
	if (r->error_code)
		die_code("TransferLeadership", argv[1], r->error_code, r->error_message);
	printf("partition %" PRIu32 "\tleader %s\tepoch %" PRIu32 "\n", tp.partition, r->leader_id,
	       r->leader_epoch);
	protobuf_c_message_free_unpacked(&r->base, NULL);
	return 0;
}

/* The partitions of topic to name in a request: all n, or only `only`
 * (PARTITION_ANY: all).  *tps and *tpp are the caller's to free. */
static size_t partition_list(const char *topic, uint64_t only, uint32_t n,
			     Rustmq__Common__TopicPartition **tps,
			     Rustmq__Common__TopicPartition ***tpp)
{
	size_t k = 0;
	*tps = xmalloc((n + 1) * sizeof(**tps));
	*tpp = xmalloc((n + 1) * sizeof(**tpp));
	for (uint32_t p = 0; p < n; p++) {
		if (only != PARTITION_ANY && only != p)
			continue;
		rustmq__common__topic_partition__init(&(*tps)[k]);
		(*tps)[k].topic = (char *)topic;
		(*tps)[k].partition = p;
		(*tpp)[k] = &(*tps)[k];
		k++;
	}
	return k;
}

static int partition_elect_leaders(int argc, char **argv)
{
	uint64_t only;
	bool unclean;
	const struct rmq_flag flags[] = {
		{"partition", RMQ_FLAG_UINT, &only, "4294967295", "one partition of TOPIC only (all of its partitions when not given)", 0, PARTITION_ANY, NULL},
		{"unclean", RMQ_FLAG_BOOL, &unclean, "false", "elect a running replica outside the ISR for leaderless partitions (the topic must set unclean.leader.election.enable=true; committed records may be lost)", 0, 0, NULL},
	};
	const struct cmd_spec cs = {"partition elect-leaders", "partition elect-leaders [TOPIC] [--partition N] [--unclean]",
				    "Makes each partition's preferred replica (its first) lead again where it "
				    "is in sync and running: of TOPIC, or of every topic.",
				    flags, 2, 0, 1, false, false};
	int npos;
	parse_args(&cs, argc, argv, &npos);
	const char *topic = npos ? argv[1] : NULL;
	if (!topic && (unclean || only != PARTITION_ANY))
		usage_error("--unclean and --partition need a TOPIC");
	connect_broker();
	Rustmq__Controller__ElectLeadersRequest req = RUSTMQ__CONTROLLER__ELECT_LEADERS_REQUEST__INIT;
	req.version = &api_v1;
	req.election_type = unclean ? RUSTMQ__CONTROLLER__ELECTION_TYPE__ELECTION_TYPE_UNCLEAN
				    : RUSTMQ__CONTROLLER__ELECTION_TYPE__ELECTION_TYPE_PREFERRED;
	uint32_t n = topic ? topic_partitions(topic) : 0;
	if (topic)
		topic_check_partition(topic, only, n);
	Rustmq__Common__TopicPartition *tps, **tpp;
	req.n_topic_partitions = partition_list(topic, only, n, &tps, &tpp);
	req.topic_partitions = tpp;
	Rustmq__Controller__ElectLeadersResponse *r =
		PB_CALL("ElectLeaders", "/rustmq.controller.AdminService/ElectLeaders", &req,
			Rustmq__Controller__ElectLeadersResponse,
			rustmq__controller__elect_leaders_response__descriptor);
	free(tps);
	free(tpp);
	if (r->error_code)
		die_code("ElectLeaders", topic, r->error_code, r->error_message);
	int failed = 0;
	for (size_t i = 0; i < r->n_partitions; i++) {
		const Rustmq__Controller__ElectLeadersResult *e = r->partitions[i];
		const char *t = e->topic_partition ? e->topic_partition->topic : "?";
		uint32_t p = e->topic_partition ? e->topic_partition->partition : 0;
		printf("%s-%" PRIu32 "\tleader %s\tepoch %" PRIu32 "\t%s%s%s\n", t, p,
		       e->leader_id[0] ? e->leader_id : "-", e->leader_epoch,
		       e->error_code ? ec_name(e->error_code) : "elected",
		       e->error_message[0] ? ": " : "", e->error_message);
		/* Already led by the one asked for is not a failure. */
		failed += e->error_code && e->error_code != EC(ELECTION_NOT_NEEDED);
	}
	if (r->n_partitions == 0)
		printf("no partition needed an election\n");
	protobuf_c_message_free_unpacked(&r->base, NULL);
	return failed ? 1 : 0;
}

/* ---- reassign ----------------------------------------------------------- */

#define RPHASE(x) RUSTMQ__CONTROLLER__REASSIGNMENT_PHASE__REASSIGNMENT_PHASE_##x

/* "2,3" into ids (xstrdup'ed pieces); the count. */
static size_t split_ids(const char *list, char **ids, size_t max)
{
	size_t n = 0;
	char *copy = xstrdup(list), *save = NULL;
	for (char *t = strtok_r(copy, ",", &save); t; t = strtok_r(NULL, ",", &save)) {
		if (n == max)
			usage_error("--replicas: at most %zu brokers", max);
		ids[n++] = xstrdup(t);
	}
	free(copy);
	return n;
}

/* An enum value's name without the prefix its enum repeats in each. */
static const char *short_name(const ProtobufCEnumDescriptor *d, int value, const char *prefix)
{
	const char *name = enum_name(d, value, "-");
	size_t n = strlen(prefix);
	return strncmp(name, prefix, n) == 0 ? name + n : name;
}

/* Prints one status line; returns its phase. */
static int print_move(const Rustmq__Controller__ReassignmentStatus *st)
{
	printf("%s-%" PRIu32 "\t%s", st->topic_partition ? st->topic_partition->topic : "?",
	       st->topic_partition ? st->topic_partition->partition : 0,
	       short_name(&rustmq__controller__reassignment_phase__descriptor, st->phase,
			  "REASSIGNMENT_PHASE_"));
	print_ids("replicas", st->replica_ids, st->n_replica_ids);
	if (st->n_adding_replica_ids)
		print_ids("adding", st->adding_replica_ids, st->n_adding_replica_ids);
	if (st->n_removing_replica_ids)
		print_ids("removing", st->removing_replica_ids, st->n_removing_replica_ids);
	if (st->error_code)
		printf("\t%s: %s", ec_name(st->error_code), st->error_message);
	printf("\n");
	fflush(stdout);
	return st->phase;
}

static int partition_reassign(int argc, char **argv)
{
	uint64_t p;
	const char *replicas;
	bool cancel;
	const struct rmq_flag flags[] = {
		{"partition", RMQ_FLAG_UINT, &p, "0", "the partition", 0, PARTITION_ANY - 1, NULL},
		{"replicas", RMQ_FLAG_STRING, &replicas, "", "the broker ids to hold it, comma-separated, the preferred leader first", 0, 0, NULL},
		{"cancel", RMQ_FLAG_BOOL, &cancel, "false", "cancel the partition's reassignment: its original replicas stay", 0, 0, NULL},
	};
	const struct cmd_spec cs = {"partition reassign", "partition reassign TOPIC [--partition N] (--replicas B1,B2,... | --cancel)",
				    "Moves a partition to other brokers (KIP-455) and prints its progress "
				    "until the move completes, is cancelled or fails.",
				    flags, 3, 1, 1, false, false};
	int npos;
	parse_args(&cs, argc, argv, &npos);
	if (cancel == (replicas[0] != '\0'))
		usage_error("give --replicas or --cancel");
	char *ids[16];
	size_t n = cancel ? 0 : split_ids(replicas, ids, RMQ_ARRAY_SIZE(ids));
	Rustmq__Common__TopicPartition tp = RUSTMQ__COMMON__TOPIC_PARTITION__INIT;
	Rustmq__Controller__PartitionReassignment pr = RUSTMQ__CONTROLLER__PARTITION_REASSIGNMENT__INIT;
	Rustmq__Controller__PartitionReassignment *prp = &pr;
	Rustmq__Controller__ReassignPartitionsRequest req =
		RUSTMQ__CONTROLLER__REASSIGN_PARTITIONS_REQUEST__INIT;
	Google__Protobuf__Duration every = pb_duration(1000ULL * 1000 * 1000);
	tp.topic = argv[1];
	tp.partition = (uint32_t)p;
	pr.topic_partition = &tp;
	pr.target_replica_ids = ids;
	pr.n_target_replica_ids = n;
	pr.cancel = cancel;
	req.version = &api_v1;
	req.partitions = &prp;
	req.n_partitions = 1;
	req.progress_interval = &every;
	size_t len = protobuf_c_message_get_packed_size(&req.base);
	uint8_t *buf = xmalloc(len);
	protobuf_c_message_pack(&req.base, buf);
	connect_broker();
	int phase = 0;
	for (bool again = true; again;) {
		again = false;
		struct rmq_rpc_call c = {.path = "/rustmq.controller.ControllerBrokerService/ReassignPartitions",
					 .req = buf, .len = len, .stream = true};
		rmq_rpc_submit(cli.rpc, &c);
		uint8_t *msg;
		size_t mlen;
		while (!again && rmq_rpc_next(&c, &msg, &mlen)) {
			Rustmq__Controller__ReassignPartitionsProgress *r =
				rustmq__controller__reassign_partitions_progress__unpack(NULL, mlen, msg);
			free(msg);
			if (!r)
				die("ReassignPartitions: a progress message does not parse");
			char why[400];
			snprintf(why, sizeof(why), "node %s at %s does", r->leader_id, r->leader_hint);
			if (r->error_code && r->leader_hint[0] && follow_controller(r->error_code, why)) {
				again = true; /* ask the controller's leader */
			} else if (r->error_code) {
				die_code("ReassignPartitions", argv[1], r->error_code, r->error_message);
			}
			for (size_t i = 0; !again && i < r->n_partitions; i++)
				phase = print_move(r->partitions[i]);
			rustmq__controller__reassign_partitions_progress__free_unpacked(r, NULL);
		}
		if (again) {
			rmq_rpc_call_reset(&c); /* the stream of the node left ends with it */
			continue;
		}
		if (rmq_rpc_wait(&c) != RMQ_GRPC_OK)
			die_status("ReassignPartitions", c.status, c.message);
		rmq_rpc_call_reset(&c);
	}
	free(buf);
	for (size_t i = 0; i < n; i++)
		free(ids[i]);
	return phase == (cancel ? RPHASE(CANCELLED) : RPHASE(COMPLETED)) ? 0 : 1;
}

/* ---- state -------------------------------------------------------------- */

static int partition_state(int argc, char **argv)
{
	uint64_t only;
	const struct rmq_flag flags[] = {
		{"partition", RMQ_FLAG_UINT, &only, "4294967295", "one partition of TOPIC only", 0, PARTITION_ANY, NULL},
	};
	const struct cmd_spec cs = {"partition state", "partition state [TOPIC] [--partition N]",
				    "Shows the replicas the --bootstrap broker hosts (of TOPIC, or all): "
				    "role, leader, ISR, offsets and size, from its own logs.",
				    flags, 1, 0, 1, false, false};
	int npos;
	parse_args(&cs, argc, argv, &npos);
	const char *topic = npos ? argv[1] : NULL;
	if (!topic && only != PARTITION_ANY)
		usage_error("--partition needs a TOPIC");
	connect_broker();
	uint32_t n = topic ? topic_partitions(topic) : 0;
	if (topic)
		topic_check_partition(topic, only, n);
	Rustmq__Broker__GetPartitionStateRequest req = RUSTMQ__BROKER__GET_PARTITION_STATE_REQUEST__INIT;
	Rustmq__Common__TopicPartition *tps, **tpp;
	req.n_topic_partitions = partition_list(topic, only, n, &tps, &tpp);
	req.version = &api_v1;
	req.topic_partitions = tpp;
	Rustmq__Broker__GetPartitionStateResponse *r =
		PB_CALL("GetPartitionState", "/rustmq.broker.PartitionManagementService/GetPartitionState",
			&req, Rustmq__Broker__GetPartitionStateResponse,
			rustmq__broker__get_partition_state_response__descriptor);
	free(tps);
	free(tpp);
	if (r->error_code)
		die_code("GetPartitionState", topic, r->error_code, r->error_message);
	printf("broker %s\n", r->broker_id);
	for (size_t i = 0; i < r->n_partitions; i++) {
		const Rustmq__Broker__PartitionState *st = r->partitions[i];
		printf("  %s-%" PRIu32, st->topic_partition ? st->topic_partition->topic : "?",
		       st->topic_partition ? st->topic_partition->partition : 0);
		if (st->error_code && !st->n_replica_ids) {
			printf("\t%s: %s\n", ec_name(st->error_code), st->error_message);
			continue;
		}
		printf("\t%s\t%s\tleader %s\tepoch %" PRIu32,
		       short_name(&rustmq__broker__partition_role__descriptor, st->role,
				  "PARTITION_ROLE_"),
		       short_name(&rustmq__broker__replica_state__descriptor, st->state,
				  "REPLICA_STATE_"),
		       st->leader_id[0] ? st->leader_id : "-", st->leader_epoch);
		print_ids("replicas", st->replica_ids, st->n_replica_ids);
		print_ids("isr", st->isr_ids, st->n_isr_ids);
		if (st->error_code)
			printf("\t%s: %s\n", ec_name(st->error_code), st->error_message);
		else
			printf("\tstart %" PRIu64 "\tend %" PRIu64 "\thw %" PRIu64 "\tbytes %" PRIu64 "\n",
			       st->log_start_offset, st->log_end_offset, st->high_watermark,
			       st->size_bytes);
	}
	protobuf_c_message_free_unpacked(&r->base, NULL);
	return 0;
}

static const struct command partition_cmds[] = {
	{"status", partition_status, "ISR and replica progress: rmq partition status TOPIC [--partition N]"},
	{"transfer", partition_transfer, "move a leadership: rmq partition transfer TOPIC [--partition N] [--to BROKER]"},
	{"reassign", partition_reassign, "move to other brokers, with progress: rmq partition reassign TOPIC [--partition N] (--replicas B1,B2 | --cancel)"},
	{"state", partition_state, "the replicas a broker hosts: rmq partition state [TOPIC] [--partition N]"},
	{"elect-leaders", partition_elect_leaders, "preferred (or --unclean) leader elections: rmq partition elect-leaders [TOPIC] [--partition N] [--unclean]"},
};

int cmd_partition(int argc, char **argv)
{
	return run_subcommand("partition", partition_cmds, RMQ_ARRAY_SIZE(partition_cmds), NULL,
			      argc, argv);
}
