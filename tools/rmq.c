/* SPDX-License-Identifier: Apache-2.0 */
/*
 * rmq - the command-line client: topics, produce from stdin, consume to
 * stdout (alone or as a consumer group member), consumer groups, cluster
 * and health, over gRPC (the RustMQ protocol).
 *
 *   rmq topic create|list|describe|delete|alter ...   AdminService (topic.c)
 *   rmq partition status TOPIC   GetISR of each partition's leader (partition.c)
 *   rmq partition transfer|elect-leaders ...  TransferLeadership, ElectLeaders
 *   rmq produce TOPIC    stdin lines ─► ProduceBatch (per partition, up to
 *                        1000 records / 1 MiB each, one in flight per
 *                        partition so a partition keeps the input order)
 *                        (produce.c)
 *   rmq consume TOPIC    ListOffsets ─► Fetch long polls ─► stdout (consume.c)
 *     --group G          JoinGroup, SyncGroup, FetchOffsets ─► Fetch, Heartbeat,
 *                        CommitOffsets ─► LeaveGroup (member.c)
 *   rmq group list|describe|reset|delete ...          AdminService (group.c)
 *   rmq user|acl|quota ...   users, ACLs and quotas: AdminService (security.c)
 *   rmq cluster          DescribeCluster + GetClusterMetadata
 *   rmq health           grpc.health.v1 Check + BrokerHealthService
 *   rmq metrics          BrokerHealthService.GetMetrics
 *
 * This file holds main, the table of commands, and the commands too small
 * for a file of their own (cluster, health, metrics); cli.h draws how the
 * other files sit below it and holds the conventions.
 *
 * The calls are blocking (rpc.h runs the io_uring gRPC client on a
 * background shard); protobuf-c encodes everything except the produce
 * requests, whose CRC-32C must cover the exact record bytes (pbatch.h).
 */
#include "cli.h"
#include "commands.h"
#include "query.h"

#include "broker/health.pb-c.h"
#include "client/metadata.pb-c.h"
#include "common/metadata.pb-c.h"
#include "controller/admin.pb-c.h"
#include "controller/raft.pb-c.h"
#include "core/log.h"
#include "core/util.h"
#include "grpc/health/v1/health.pb-c.h"

#include <inttypes.h>
#include <math.h>
#include <signal.h>
#include <stdlib.h>
#include <string.h>

/* ---- cluster and health -------------------------------------------------- */

static const char *broker_state(int s)
{
	return enum_name(&rustmq__common__broker_state__descriptor, s, "?");
}

static const char *health_status(int s)
{
	return enum_name(&rustmq__broker__health_status__descriptor, s, "?");
}

static int cluster_show(int argc, char **argv)
{
	const struct cmd_spec cs = {"cluster", "cluster [show]",
				    "Shows the cluster: brokers, controller, topics, partitions and leaders.",
				    NULL, 0, 0, 0, false, false};
	int npos;
	parse_args(&cs, argc, argv, &npos);
	connect_broker();
	Rustmq__Controller__DescribeClusterRequest dreq = RUSTMQ__CONTROLLER__DESCRIBE_CLUSTER_REQUEST__INIT;
	dreq.version = &api_v1;
	Rustmq__Controller__DescribeClusterResponse *d =
		PB_CALL("DescribeCluster", "/rustmq.controller.AdminService/DescribeCluster", &dreq,
			Rustmq__Controller__DescribeClusterResponse,
			rustmq__controller__describe_cluster_response__descriptor);
	if (d->error_code)
		die_code("DescribeCluster", NULL, d->error_code, d->error_message);
	printf("cluster %s\ttopics %" PRIu32 "\tpartitions %" PRIu32 "\toffline %" PRIu32
	       "\tmetadata version %" PRIu64 "\n",
	       d->cluster_id, d->topic_count, d->partition_count, d->offline_partition_count,
	       d->metadata_offset);
	printf("controller\tleader %s\tepoch %" PRIu64 "\tvoters",
	       *d->controller_id ? d->controller_id : "- (an election)", d->controller_epoch);
	for (size_t i = 0; i < d->n_controller_voter_ids; i++)
		printf("%s%s", i ? "," : " ", d->controller_voter_ids[i]);
	printf("\nbrokers\n");
	for (size_t i = 0; i < d->n_brokers; i++) {
		const Rustmq__Common__BrokerInfo *b = d->brokers[i];
		const char *rack = b->id && *b->id->rack_id ? b->id->rack_id : "-";
		printf("  %s\t%s:%" PRIu32 "\t%s\tepoch %" PRIu64 "\track %s\tshards %" PRIu32
		       "%s%s%s\n",
		       b->id && b->id->id ? b->id->id : "?", b->host, b->port, broker_state(b->state),
		       b->epoch, rack, b->shards, b->is_controller ? "\tvoter" : "",
		       *b->version ? "\tversion " : "", b->version);
	}
	protobuf_c_message_free_unpacked(&d->base, NULL);

	Rustmq__Client__GetClusterMetadataRequest mreq = RUSTMQ__CLIENT__GET_CLUSTER_METADATA_REQUEST__INIT;
	mreq.version = &api_v1;
	mreq.client_id = "rmq";
	mreq.include_topics = true;
	Rustmq__Client__GetClusterMetadataResponse *m =
		PB_CALL("GetClusterMetadata", "/rustmq.client.MetadataService/GetClusterMetadata",
			&mreq, Rustmq__Client__GetClusterMetadataResponse,
			rustmq__client__get_cluster_metadata_response__descriptor);
	if (m->error_code)
		die_code("GetClusterMetadata", NULL, m->error_code, m->error_message);
	printf("topics\n");
	if (m->metadata) {
		for (size_t i = 0; i < m->metadata->n_topics; i++) {
			const Rustmq__Common__TopicMetadata *t = m->metadata->topics[i];
			printf(" %s\tpartitions %zu\n", t->name, t->n_partitions);
			for (size_t k = 0; k < t->n_partitions; k++)
				topic_print_partition(t->partitions[k], NULL, NULL);
		}
	}
	protobuf_c_message_free_unpacked(&m->base, NULL);
	return 0;
}

/* AddPeer or RemovePeer on the controller's leader (the bootstrap node, or
 * the leader it names); prints the voters after it. */
static int voter_change(bool add, const char *id, const char *addr)
{
	connect_broker();
	Rustmq__Controller__AddPeerRequest areq = RUSTMQ__CONTROLLER__ADD_PEER_REQUEST__INIT;
	Rustmq__Controller__RemovePeerRequest rreq = RUSTMQ__CONTROLLER__REMOVE_PEER_REQUEST__INIT;
	areq.id = rreq.id = (char *)id;
	areq.address = (char *)addr;
	areq.role = RUSTMQ__CONTROLLER__RAFT_SERVER_ROLE__RAFT_SERVER_ROLE_VOTER;
	for (int tries = 0;; tries++) {
		ProtobufCMessage *m =
			add ? pb_call("AddPeer", "/rustmq.controller.ControllerRaftService/AddPeer",
				      &areq.base, &rustmq__controller__add_peer_response__descriptor,
				      60 * NS)
			    : pb_call("RemovePeer", "/rustmq.controller.ControllerRaftService/RemovePeer",
				      &rreq.base, &rustmq__controller__remove_peer_response__descriptor,
				      60 * NS);
		/* The two answers share their first fields' meaning. */
		Rustmq__Controller__AddPeerResponse *ar = add ? (void *)m : NULL;
		Rustmq__Controller__RemovePeerResponse *rr = add ? NULL : (void *)m;
		int code = add ? ar->error_code : rr->error_code;
		const char *msg = add ? ar->error_message : rr->error_message;
		const char *hint = add ? ar->leader_hint : rr->leader_hint;
		Rustmq__Controller__RaftConfiguration *conf = add ? ar->configuration : rr->configuration;
		if (code == EC(NOT_CONTROLLER) && *hint && tries == 0) {
			static char leader[256];
			snprintf(leader, sizeof(leader), "%s", hint);
			protobuf_c_message_free_unpacked(m, NULL);
			rmq_rpc_close(cli.rpc);
			cli.rpc = NULL;
			cli.bootstrap = leader; /* ask the leader it names */
			connect_broker();
			continue;
		}
		if (code)
			die_code(add ? "AddPeer" : "RemovePeer", NULL, code, msg);
		printf("%s voter %s; voters now:", add ? "added" : "removed", id);
		for (size_t i = 0; conf && i < conf->n_servers; i++)
			if (conf->servers[i]->role ==
			    RUSTMQ__CONTROLLER__RAFT_SERVER_ROLE__RAFT_SERVER_ROLE_VOTER)
				printf(" %s@%s", conf->servers[i]->id, conf->servers[i]->address);
		printf("\n");
		protobuf_c_message_free_unpacked(m, NULL);
		return 0;
	}
}

static int cluster_add_voter(int argc, char **argv)
{
	const struct cmd_spec cs = {"cluster add-voter", "cluster add-voter ID HOST:PORT",
				    "Makes node ID (started outside --controller-voters, serving at "
				    "HOST:PORT) a voter of the controller: it catches up as a learner, "
				    "then votes.",
				    NULL, 0, 2, 2, false, false};
	int npos;
	parse_args(&cs, argc, argv, &npos);
	return voter_change(true, argv[1], argv[2]);
}

static int cluster_remove_voter(int argc, char **argv)
{
	const struct cmd_spec cs = {"cluster remove-voter", "cluster remove-voter ID",
				    "Removes node ID from the controller's voters (the leader may "
				    "remove itself: it hands over).",
				    NULL, 0, 1, 1, false, false};
	int npos;
	parse_args(&cs, argc, argv, &npos);
	return voter_change(false, argv[1], "");
}

static const struct command cluster_cmds[] = {
	{"show", cluster_show, "brokers, controller, topics, partitions and leaders (the default)"},
	{"add-voter", cluster_add_voter, "make a node a controller voter: add-voter ID HOST:PORT"},
	{"remove-voter", cluster_remove_voter, "remove a controller voter: remove-voter ID"},
};

static int cmd_cluster(int argc, char **argv)
{
	if (argc < 2 || argv[1][0] == '-')
		return cluster_show(argc, argv);
	return run_subcommand("cluster", cluster_cmds, RMQ_ARRAY_SIZE(cluster_cmds), NULL, argc,
			      argv);
}

static int cmd_health(int argc, char **argv)
{
	const struct cmd_spec cs = {"health", "health",
				    "Checks the broker: grpc.health.v1 and BrokerHealthService; exits 0 when SERVING.",
				    NULL, 0, 0, 0, false, false};
	int npos;
	parse_args(&cs, argc, argv, &npos);
	connect_broker();
	Grpc__Health__V1__HealthCheckRequest greq = GRPC__HEALTH__V1__HEALTH_CHECK_REQUEST__INIT;
	greq.service = "";
	Grpc__Health__V1__HealthCheckResponse *gr =
		PB_CALL("Health.Check", "/grpc.health.v1.Health/Check", &greq,
			Grpc__Health__V1__HealthCheckResponse,
			grpc__health__v1__health_check_response__descriptor);
	bool ok = gr->status == GRPC__HEALTH__V1__HEALTH_CHECK_RESPONSE__SERVING_STATUS__SERVING;
	printf("grpc.health.v1\t%s\n",
	       enum_name(&grpc__health__v1__health_check_response__serving_status__descriptor,
			 gr->status, "?"));
	protobuf_c_message_free_unpacked(&gr->base, NULL);

	Rustmq__Broker__HealthCheckRequest breq = RUSTMQ__BROKER__HEALTH_CHECK_REQUEST__INIT;
	breq.version = &api_v1;
	breq.include_details = true;
	Rustmq__Broker__HealthCheckResponse *br =
		PB_CALL("BrokerHealthService.HealthCheck", "/rustmq.broker.BrokerHealthService/HealthCheck",
			&breq, Rustmq__Broker__HealthCheckResponse,
			rustmq__broker__health_check_response__descriptor);
	if (br->error_code)
		die_code("HealthCheck", NULL, br->error_code, br->error_message);
	ok = ok && br->status == RUSTMQ__BROKER__HEALTH_STATUS__HEALTH_STATUS_SERVING;
	printf("broker %s\t%s\t%s\tuptime %" PRIu64 "s\tversion %s\n", br->broker_id,
	       health_status(br->status), broker_state(br->broker_state), br->uptime_ms / 1000,
	       br->software_version);
	for (size_t i = 0; i < br->n_components; i++) {
		const Rustmq__Broker__ComponentHealth *c = br->components[i];
		printf("  %s\t%s%s%s\n", c->name, health_status(c->status), *c->message ? "\t" : "",
		       c->message);
	}
	protobuf_c_message_free_unpacked(&br->base, NULL);
	if (!ok)
		fprintf(stderr, "rmq: the broker at %s is not SERVING\n", cli.bootstrap);
	return ok ? 0 : 1;
}

/* The upper bound of the bucket holding quantile q of `n` histogram samples
 * taken together.  rmqd sends every sample with the same bounds; a shorter
 * list (another server) is read as holding all its samples from its +Inf
 * bucket on. */
static double hist_quantile(Rustmq__Broker__Metric *const *ms, size_t n, double q)
{
	uint64_t total = 0;
	size_t longest = 0;
	for (size_t k = 0; k < n; k++) {
		total += ms[k]->sample_count;
		if (ms[k]->n_buckets > longest)
			longest = ms[k]->n_buckets;
	}
	if (total == 0)
		return 0;
	uint64_t rank = (uint64_t)(q * (double)total + 0.5);
	if (rank < 1)
		rank = 1;
	for (size_t i = 0; i < longest; i++) {
		uint64_t cum = 0;
		double bound = INFINITY;
		for (size_t k = 0; k < n; k++) {
			const Rustmq__Broker__Metric *m = ms[k];
			/* Past a sample's last finite bucket it holds all it has. */
			if (i + 1 < m->n_buckets) {
				cum += m->buckets[i]->cumulative_count;
				bound = m->buckets[i]->upper_bound;
			} else {
				cum += m->sample_count;
			}
		}
		if (cum >= rank)
			return bound;
	}
	return INFINITY;
}

/* Prints the value (the mean) and count and quantiles of n histogram
 * samples taken together. */
static void print_histogram(Rustmq__Broker__Metric *const *ms, size_t n)
{
	uint64_t count = 0;
	double sum = 0;
	for (size_t k = 0; k < n; k++) {
		count += ms[k]->sample_count;
		sum += ms[k]->sample_sum;
	}
	printf(" %.17g count=%" PRIu64, count ? sum / (double)count : 0, count);
	static const struct {
		const char *name;
		double q;
	} qs[] = {{"p50", 0.5}, {"p90", 0.9}, {"p99", 0.99}, {"p99.9", 0.999}, {"max", 1}};
	for (size_t i = 0; i < RMQ_ARRAY_SIZE(qs); i++)
		printf(" %s<=%.0f", qs[i].name, hist_quantile(ms, n, qs[i].q));
	printf("\n");
}

static int cmd_metrics(int argc, char **argv)
{
	bool total;
	const struct rmq_flag flags[] = {
		{"total", RMQ_FLAG_BOOL, &total, "false", "one line per metric: the sum over its label sets (shards)", 0, 0, NULL},
	};
	const struct cmd_spec cs = {"metrics", "metrics [PREFIX] [--total]",
				    "Prints the broker's metrics (BrokerHealthService.GetMetrics) whose names start with PREFIX, one sample per line: name{labels} value; a histogram's value is its mean, followed by count= and the upper bounds of the buckets holding p50, p90, p99, p99.9 and the largest observation.",
				    flags, 1, 0, 1, false, false};
	int npos;
	parse_args(&cs, argc, argv, &npos);
	connect_broker();
	Rustmq__Broker__MetricsRequest req = RUSTMQ__BROKER__METRICS_REQUEST__INIT;
	req.version = &api_v1;
	req.name_prefix = npos >= 1 ? argv[1] : "";
	Rustmq__Broker__MetricsResponse *r =
		PB_CALL("GetMetrics", "/rustmq.broker.BrokerHealthService/GetMetrics", &req,
			Rustmq__Broker__MetricsResponse, rustmq__broker__metrics_response__descriptor);
	if (r->error_code)
		die_code("GetMetrics", NULL, r->error_code, r->error_message);
	for (size_t i = 0; i < r->n_metrics; i++) {
		const Rustmq__Broker__Metric *m = r->metrics[i];
		if (total) {
			/* The broker lists a metric's label sets together. */
			if (i > 0 && strcmp(r->metrics[i - 1]->name, m->name) == 0)
				continue;
			double sum = 0;
			size_t k = i;
			for (; k < r->n_metrics && strcmp(r->metrics[k]->name, m->name) == 0; k++)
				sum += r->metrics[k]->value;
			printf("%s", m->name);
			if (m->type == RUSTMQ__BROKER__METRIC_TYPE__METRIC_TYPE_HISTOGRAM)
				print_histogram(&r->metrics[i], k - i);
			else
				printf(" %.17g\n", sum);
			continue;
		}
		printf("%s", m->name);
		for (size_t k = 0; k < m->n_labels; k++)
			printf("%s%s=\"%s\"", k ? "," : "{", m->labels[k]->key, m->labels[k]->value);
		printf("%s", m->n_labels ? "}" : "");
		if (m->type == RUSTMQ__BROKER__METRIC_TYPE__METRIC_TYPE_HISTOGRAM)
			print_histogram(&r->metrics[i], 1);
		else
			printf(" %.17g\n", m->value);
	}
	if (r->n_metrics == 0 && npos >= 1)
		fprintf(stderr, "rmq: no metric starts with '%s'\n", argv[1]);
	protobuf_c_message_free_unpacked(&r->base, NULL);
	return 0;
}

/* ---- dispatch ------------------------------------------------------------ */

static const struct command commands[] = {
	{"topic", cmd_topic, "create, list, describe, delete and alter topics"},
	{"partition", cmd_partition, "status: each partition's ISR and replicas as its leader sees them"},
	{"produce", cmd_produce, "send stdin lines as records: rmq produce TOPIC"},
	{"consume", cmd_consume, "print records: rmq consume TOPIC --offset earliest [--group G]"},
	{"cluster", cmd_cluster, "brokers, controller, topics, partitions and leaders; add-voter, remove-voter"},
	{"health", cmd_health, "is the broker serving? (exit 0 when SERVING)"},
	{"metrics", cmd_metrics, "the broker's counters and gauges (GetMetrics)"},
	{"group", cmd_group, "list, describe, reset and delete consumer groups"},
	{"user", cmd_user, "add, list and delete users (SCRAM verifiers made here from a password file)"},
	{"acl", cmd_acl, "add, list and remove ACL entries (kafka-acls' flags)"},
	{"quota", cmd_quota, "set and list per-user and default quotas"},
};

static void main_usage(FILE *out)
{
	fprintf(out, "usage: rmq [--bootstrap host:port] COMMAND [ARGS]\n\n"
		     "The rmq command-line client (the RustMQ protocol over gRPC).\n\ncommands:\n");
	list_commands(out, commands, RMQ_ARRAY_SIZE(commands));
	fprintf(out, "\nglobal flags, before the command or after it (the last one given wins):\n");
	print_global_flags(out);
	fprintf(out, "\nrmq COMMAND --help describes each command.  Exit status: 0 ok, 1 error, 2 usage.\n");
}

int main(int argc, char **argv)
{
	rmq_log_set_level(RMQ_LOG_ERROR);
	signal(SIGPIPE, SIG_IGN);
	cli_init();
	/* The global flags before the command. */
	int i = 1;
	for (int took; i < argc && (took = take_global_flag(argc, argv, i)) > 0;)
		i += took;
	if (i >= argc) {
		main_usage(stderr);
		return EXIT_USAGE;
	}
	const char *a = argv[i];
	if (strcmp(a, "--help") == 0 || strcmp(a, "-h") == 0 || strcmp(a, "help") == 0) {
		main_usage(stdout);
		return 0;
	}
	if (strcmp(a, "--version") == 0) {
		printf("rmq %s\n", RMQ_VERSION);
		return 0;
	}
	if (a[0] == '-') {
		fprintf(stderr, "rmq: unknown flag %s before the command: a command's own flags go "
				"after it (see rmq --help)\n", a);
		return EXIT_USAGE;
	}
	cli_exit(run_command(commands, RMQ_ARRAY_SIZE(commands), "command", argc - i, argv + i));
}
