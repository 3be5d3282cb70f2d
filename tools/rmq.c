/* SPDX-License-Identifier: Apache-2.0 */
/*
 * rmq - the command-line client: topics, produce from stdin, consume to
 * stdout (alone or as a consumer group member), consumer groups, cluster
 * and health, over gRPC (the RustMQ protocol).
 *
 *   rmq topic create|list|describe|delete|alter ...   AdminService (topic.c)
 *   rmq produce TOPIC    stdin lines ─► ProduceBatch (per partition, up to
 *                        1000 records / 1 MiB each, one in flight per
 *                        partition so a partition keeps the input order)
 *                        (produce.c)
 *   rmq consume TOPIC    ListOffsets ─► Fetch long polls ─► stdout (consume.c)
 *     --group G          JoinGroup, SyncGroup, FetchOffsets ─► Fetch, Heartbeat,
 *                        CommitOffsets ─► LeaveGroup (member.c)
 *   rmq group list|describe|reset|delete ...          AdminService (group.c)
 *   rmq cluster          DescribeCluster + GetClusterMetadata
 *   rmq health           grpc.health.v1 Check + BrokerHealthService
 *   rmq metrics          BrokerHealthService.GetMetrics
 *
 * This file holds main and the dispatch, the options every command takes,
 * the error and exit helpers, the protobuf-c calls, and the two commands
 * too small for a file of their own (cluster, health); cli.h declares what
 * the other files use.
 *
 * Conventions (kcat, kafka-console-*, nats): --bootstrap host:port or
 * RMQ_BOOTSTRAP (default 127.0.0.1:9092); exit 0 ok, 1 error, 2 usage;
 * every error is one line on stderr that says what to do next.  The global
 * flags (global_flags[]) go before the command, as `nats -s` and `kcat -b`
 * users type them, or among the command's own flags; the last one wins.
 *
 * The calls are blocking (rpc.h runs the io_uring gRPC client on a
 * background shard); protobuf-c encodes everything except the produce
 * requests, whose CRC-32C must cover the exact record bytes (pbatch.h).
 */
#include "cli.h"

#include "bench.h"
#include "broker/health.pb-c.h"
#include "client/metadata.pb-c.h"
#include "common/errors.pb-c.h"
#include "controller/admin.pb-c.h"
#include "core/error.h"
#include "core/log.h"
#include "core/util.h"
#include "grpc/health/v1/health.pb-c.h"

#include <inttypes.h>
#include <math.h>
#include <signal.h>
#include <stdarg.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#define DEFAULT_BOOTSTRAP "127.0.0.1:9092"
#define CONNECT_TIMEOUT_NS (5 * NS)

#define EC_TOPIC_ALREADY_EXISTS 15

struct cli cli;

Rustmq__Common__ApiVersion api_v1 = {
	PROTOBUF_C_MESSAGE_INIT(&rustmq__common__api_version__descriptor), 1, 0, 0};

/* ---- errors -------------------------------------------------------------- */

static __attribute__((noreturn)) void finish(int code)
{
	fflush(stdout);
	rmq_rpc_close(cli.rpc);
	cli.rpc = NULL;
	exit(code);
}

void die(const char *fmt, ...)
{
	va_list ap;
	fflush(stdout);
	fputs("rmq: ", stderr);
	va_start(ap, fmt);
	vfprintf(stderr, fmt, ap);
	va_end(ap);
	fputc('\n', stderr);
	finish(1);
}

void usage_error(const char *fmt, ...)
{
	va_list ap;
	/* Before the command is known (a global flag ahead of it), the
	 * error is the program's. */
	const char *sp = cli.cmd ? " " : "", *cmd = cli.cmd ? cli.cmd : "";
	fprintf(stderr, "rmq%s%s: ", sp, cmd);
	va_start(ap, fmt);
	vfprintf(stderr, fmt, ap);
	va_end(ap);
	fprintf(stderr, " (see rmq%s%s --help)\n", sp, cmd);
	exit(EXIT_USAGE);
}

/* The name of value in an enum, or fallback. */
static const char *enum_name(const ProtobufCEnumDescriptor *desc, int value, const char *fallback)
{
	const ProtobufCEnumValue *v = protobuf_c_enum_descriptor_get_value(desc, value);
	return v ? v->name : fallback;
}

const char *ec_name(int code)
{
	return enum_name(&rustmq__common__error_code__descriptor, code, "UNKNOWN_ERROR");
}

void die_code(const char *what, const char *topic, int code, const char *msg)
{
	if (code == EC_TOPIC_NOT_FOUND && topic)
		die("topic '%s' not found (create it with: rmq topic create %s)", topic, topic);
	if (code == EC_TOPIC_ALREADY_EXISTS && topic)
		die("topic '%s' already exists (see it with: rmq topic describe %s)", topic, topic);
	die("%s: %s%s%s", what, ec_name(code), msg && *msg ? ": " : "", msg ? msg : "");
}

bool report_group_error(const char *group, int code)
{
	if (code == EC_GROUP_ID_NOT_FOUND)
		fprintf(stderr, "rmq: no such group '%s' (see the groups with: rmq group list)\n",
			group);
	else if (code == EC_GROUP_NOT_EMPTY)
		fprintf(stderr, "rmq: group '%s' has active members: stop the group's consumers "
				"first (see them with: rmq group describe %s)\n",
			group, group);
	else
		return false;
	return true;
}

void die_group(const char *what, const char *group, const char *topic, int code, const char *msg)
{
	fflush(stdout);
	if (report_group_error(group, code))
		finish(1);
	die_code(what, topic, code, msg);
}

void *xmalloc(size_t n)
{
	void *p = malloc(n ? n : 1);
	if (!p)
		die("out of memory");
	return p;
}

char *xstrdup(const char *s)
{
	char *p = strdup(s);
	if (!p)
		die("out of memory");
	return p;
}

void sleep_ns(uint64_t ns)
{
	struct timespec ts = {(time_t)(ns / NS), (long)(ns % NS)};
	nanosleep(&ts, NULL);
}

Google__Protobuf__Duration pb_duration(uint64_t ns)
{
	Google__Protobuf__Duration d = GOOGLE__PROTOBUF__DURATION__INIT;
	d.seconds = (int64_t)(ns / NS);
	d.nanos = (int32_t)(ns % NS);
	return d;
}

Google__Protobuf__Timestamp pb_timestamp(uint64_t ms)
{
	Google__Protobuf__Timestamp ts = GOOGLE__PROTOBUF__TIMESTAMP__INIT;
	ts.seconds = (int64_t)(ms / 1000);
	ts.nanos = (int32_t)(ms % 1000) * 1000000;
	return ts;
}

/* ---- connection and calls ------------------------------------------------ */

void connect_broker(void)
{
	char err[256];
	if (bench_parse_target(cli.bootstrap, cli.host, sizeof(cli.host), &cli.port, err,
			       sizeof(err)) < 0) {
		fprintf(stderr, "rmq: bad bootstrap address '%s': %s (expected host:port)\n",
			cli.bootstrap, err);
		exit(EXIT_USAGE);
	}
	int rc = rmq_rpc_open(cli.host, cli.port, CONNECT_TIMEOUT_NS, &cli.rpc);
	if (rc < 0) {
		char why[128];
		snprintf(why, sizeof(why), "%s", rmq_strerror(rc));
		if (why[0] >= 'A' && why[0] <= 'Z')
			why[0] = (char)(why[0] - 'A' + 'a');
		die("cannot connect to %s: %s (is rmqd running? set --bootstrap or RMQ_BOOTSTRAP)",
		    cli.bootstrap, why);
	}
}

/* Sends a call and returns its answer, or dies naming the gRPC status. */
static void call_or_die(const char *what, struct rmq_rpc_call *c)
{
	enum rmq_grpc_status st = rmq_rpc_unary(cli.rpc, c);
	if (st == RMQ_GRPC_OK)
		return;
	const char *hint = "";
	if (st == RMQ_GRPC_UNAVAILABLE)
		hint = " (is rmqd still running? check --bootstrap)";
	else if (st == RMQ_GRPC_UNIMPLEMENTED)
		hint = " (this rmqd does not serve it yet)";
	die("%s failed: %s%s%s%s", what, rmq_grpc_status_name((int)st),
	    c->message && *c->message ? ": " : "", c->message ? c->message : "", hint);
}

ProtobufCMessage *pb_call(const char *what, const char *path, const ProtobufCMessage *req,
			  const ProtobufCMessageDescriptor *resp_desc, uint64_t timeout_ns)
{
	size_t len = protobuf_c_message_get_packed_size(req);
	uint8_t *buf = xmalloc(len);
	protobuf_c_message_pack(req, buf);
	struct rmq_rpc_call c = {.path = path, .req = buf, .len = len, .timeout_ns = timeout_ns};
	call_or_die(what, &c);
	free(buf);
	ProtobufCMessage *m = protobuf_c_message_unpack(resp_desc, NULL, c.resp_len, c.resp);
	rmq_rpc_call_reset(&c);
	if (!m)
		die("%s: the broker's answer does not parse (is --bootstrap an rmqd?)", what);
	return m;
}

/* ---- argument parsing ---------------------------------------------------- */

/* Usage lines in the columns of rmq_flags_usage(). */
static void print_flag(FILE *out, const char *left, const char *help)
{
	fprintf(out, "  %-32s %s\n", left, help);
}

/* The flags every command takes, accepted before the command and among its
 * own flags alike: each is a string, as --name VALUE or --name=VALUE. */
static const struct global_flag {
	const char *name;
	const char **value;
	const char *arg; /* what the value is, for usage */
	const char *help;
} global_flags[] = {
	{"bootstrap", &cli.bootstrap, "host:port",
	 "the broker (default: $RMQ_BOOTSTRAP, else " DEFAULT_BOOTSTRAP ")"},
};

/* When argv[i] is a global flag, stores its value and returns how many
 * arguments it took (1 or 2); returns 0 for anything else. */
static int take_global_flag(int argc, char **argv, int i)
{
	const char *a = argv[i];
	if (strncmp(a, "--", 2) != 0)
		return 0;
	for (size_t k = 0; k < RMQ_ARRAY_SIZE(global_flags); k++) {
		const struct global_flag *g = &global_flags[k];
		size_t n = strlen(g->name);
		if (strncmp(a + 2, g->name, n) != 0)
			continue;
		if (a[2 + n] == '=') {
			*g->value = a + 3 + n;
			return 1;
		}
		if (a[2 + n] == '\0') {
			if (i + 1 >= argc)
				usage_error("%s needs a value", a);
			*g->value = argv[i + 1];
			return 2;
		}
	}
	return 0;
}

static void print_global_flags(FILE *out)
{
	for (size_t k = 0; k < RMQ_ARRAY_SIZE(global_flags); k++) {
		const struct global_flag *g = &global_flags[k];
		char left[64];
		snprintf(left, sizeof(left), "--%s=<%s>", g->name, g->arg);
		print_flag(out, left, g->help);
	}
}

static void print_usage(const struct cmd_spec *cs, FILE *out)
{
	fprintf(out, "usage: rmq %s\n\n%s\n\nflags:\n", cs->synopsis, cs->about);
	rmq_flags_usage(out, cs->flags, cs->nflags);
	if (cs->takes_config)
		print_flag(out, "--config=<k=v>", "a topic config, repeatable (e.g. retention.ms=3600000)");
	if (cs->takes_verbose)
		print_flag(out, "-v, --verbose", "print partition and offsets of each batch on stderr");
	print_global_flags(out);
}

void parse_args(const struct cmd_spec *cs, int argc, char **argv, int *npos)
{
	cli.cmd = cs->name;
	/* The global flags, --config and -v are common: take them out first. */
	int out = 1;
	bool rest = false;
	for (int i = 1; i < argc; i++) {
		char *a = argv[i];
		if (rest || strcmp(a, "--") == 0) {
			rest = true;
			argv[out++] = a;
			continue;
		}
		int took = take_global_flag(argc, argv, i);
		if (took > 0) {
			i += took - 1;
			continue;
		}
		const char *v = NULL;
		if (cs->takes_config && strcmp(a, "--config") == 0) {
			if (i + 1 >= argc)
				usage_error("%s needs a value", a);
			v = argv[++i];
		} else if (cs->takes_config && strncmp(a, "--config=", 9) == 0) {
			v = a + 9;
		} else if (cs->takes_verbose && (strcmp(a, "-v") == 0 || strcmp(a, "--verbose") == 0)) {
			cli.verbose = true;
			continue;
		} else if (strcmp(a, "-h") == 0) {
			print_usage(cs, stdout);
			exit(0);
		} else {
			argv[out++] = a;
			continue;
		}
		if (!strchr(v, '=') || v[0] == '=')
			usage_error("--config wants key=value, not '%s'", v);
		if (cli.nconfigs == CONFIGS_MAX)
			usage_error("at most %d --config", CONFIGS_MAX);
		cli.configs[cli.nconfigs++] = v;
	}
	argc = out;
	char err[256];
	int rc = rmq_flags_parse(argc, argv, cs->flags, cs->nflags, npos, err, sizeof(err));
	if (rc == 1) {
		print_usage(cs, stdout);
		exit(0);
	}
	if (rc < 0)
		usage_error("%s", err);
	for (int i = 1; i <= *npos; i++)
		if (argv[i][0] == '-' && argv[i][1] != '\0')
			usage_error("unknown flag %s", argv[i]);
	if (*npos < cs->pos_min)
		usage_error("missing argument: usage: rmq %s", cs->synopsis);
	if (*npos > cs->pos_max)
		usage_error("unexpected argument '%s'", argv[cs->pos_max + 1]);
}

/* ---- cluster and health -------------------------------------------------- */

static const char *broker_state(int s)
{
	return enum_name(&rustmq__common__broker_state__descriptor, s, "?");
}

static const char *health_status(int s)
{
	return enum_name(&rustmq__broker__health_status__descriptor, s, "?");
}

static int cmd_cluster(int argc, char **argv)
{
	const struct cmd_spec cs = {"cluster", "cluster",
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
	printf("cluster %s\tcontroller %s\ttopics %" PRIu32 "\tpartitions %" PRIu32
	       "\toffline %" PRIu32 "\n",
	       d->cluster_id, *d->controller_id ? d->controller_id : "-", d->topic_count,
	       d->partition_count, d->offline_partition_count);
	printf("brokers\n");
	for (size_t i = 0; i < d->n_brokers; i++) {
		const Rustmq__Common__BrokerInfo *b = d->brokers[i];
		printf("  %s\t%s:%" PRIu32 "\t%s\tshards %" PRIu32 "%s%s%s\n",
		       b->id && b->id->id ? b->id->id : "?", b->host, b->port, broker_state(b->state),
		       b->shards, b->is_controller ? "\tcontroller" : "", *b->version ? "\tversion " : "",
		       b->version);
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
	{"produce", cmd_produce, "send stdin lines as records: rmq produce TOPIC"},
	{"consume", cmd_consume, "print records: rmq consume TOPIC --offset earliest [--group G]"},
	{"cluster", cmd_cluster, "brokers, controller, topics, partitions and leaders"},
	{"health", cmd_health, "is the broker serving? (exit 0 when SERVING)"},
	{"metrics", cmd_metrics, "the broker's counters and gauges (GetMetrics)"},
	{"group", cmd_group, "list, describe, reset and delete consumer groups"},
};

static void list_commands(FILE *out, const struct command *cmds, size_t n)
{
	for (size_t i = 0; i < n; i++)
		fprintf(out, "  %-10s %s\n", cmds[i].name, cmds[i].about);
}

static void main_usage(FILE *out)
{
	fprintf(out, "usage: rmq [--bootstrap host:port] COMMAND [ARGS]\n\n"
		     "The rmq command-line client (the RustMQ protocol over gRPC).\n\ncommands:\n");
	list_commands(out, commands, sizeof(commands) / sizeof(commands[0]));
	fprintf(out, "\nglobal flags, before the command or after it (the last one given wins):\n");
	print_global_flags(out);
	fprintf(out, "\nrmq COMMAND --help describes each command.  Exit status: 0 ok, 1 error, 2 usage.\n");
}

static int dispatch(const struct command *cmds, size_t n, const char *what, int argc, char **argv)
{
	for (size_t i = 0; i < n; i++)
		if (strcmp(argv[0], cmds[i].name) == 0)
			return cmds[i].run(argc, argv);
	fprintf(stderr, "rmq: unknown %s '%s' (see rmq --help)\n", what, argv[0]);
	return EXIT_USAGE;
}

int run_subcommand(const char *name, const struct command *cmds, size_t n, const char *footer,
		   int argc, char **argv)
{
	if (argc < 2 || strcmp(argv[1], "--help") == 0 || strcmp(argv[1], "-h") == 0) {
		FILE *out = argc < 2 ? stderr : stdout;
		fprintf(out, "usage: rmq %s SUBCOMMAND ...\n\nsubcommands:\n", name);
		list_commands(out, cmds, n);
		if (footer)
			fputs(footer, out);
		return argc < 2 ? EXIT_USAGE : 0;
	}
	char what[64];
	snprintf(what, sizeof(what), "%s subcommand", name);
	return dispatch(cmds, n, what, argc - 1, argv + 1);
}

int main(int argc, char **argv)
{
	rmq_log_set_level(RMQ_LOG_ERROR);
	signal(SIGPIPE, SIG_IGN);
	cli.bootstrap = getenv("RMQ_BOOTSTRAP");
	if (!cli.bootstrap || !*cli.bootstrap)
		cli.bootstrap = DEFAULT_BOOTSTRAP;
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
	finish(dispatch(commands, sizeof(commands) / sizeof(commands[0]), "command", argc - i,
			argv + i));
}
