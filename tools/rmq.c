/* SPDX-License-Identifier: Apache-2.0 */
/*
 * rmq - the command-line client: topics, produce from stdin, consume to
 * stdout (alone or as a consumer group member), consumer groups, cluster
 * and health, over gRPC (the RustMQ protocol).
 *
 *   rmq topic create|list|describe|delete|alter ...   AdminService
 *   rmq produce TOPIC    stdin lines ─► ProduceBatch (per partition, up to
 *                        1000 records / 1 MiB each, one in flight per
 *                        partition so a partition keeps the input order)
 *   rmq consume TOPIC    ListOffsets ─► Fetch long polls ─► stdout
 *     --group G          JoinGroup, SyncGroup, FetchOffsets ─► Fetch, Heartbeat,
 *                        CommitOffsets ─► LeaveGroup (see "consume --group")
 *   rmq group list|describe|reset|delete ...          AdminService
 *   rmq cluster          DescribeCluster + GetClusterMetadata
 *   rmq health           grpc.health.v1 Check + BrokerHealthService
 *
 * Conventions (kcat, kafka-console-*, nats): --bootstrap host:port or
 * RMQ_BOOTSTRAP (default 127.0.0.1:9092); exit 0 ok, 1 error, 2 usage;
 * every error is one line on stderr that says what to do next.
 *
 * The calls are blocking (rpc.h runs the io_uring gRPC client on a
 * background shard); protobuf-c encodes everything except the produce
 * requests, whose CRC-32C must cover the exact record bytes (pbatch.h).
 */
#include "pbatch.h"
#include "rpc.h"

#include "bench.h"
#include "broker/health.pb-c.h"
#include "client/consumer.pb-c.h"
#include "client/metadata.pb-c.h"
#include "client/producer.pb-c.h"
#include "common/errors.pb-c.h"
#include "controller/admin.pb-c.h"
#include "core/crc32c.h"
#include "core/error.h"
#include "core/flags.h"
#include "core/log.h"
#include "core/shard.h"
#include "grpc/health/v1/health.pb-c.h"
#include "storage/codec.h"

#include <errno.h>
#include <inttypes.h>
#include <signal.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <time.h>
#include <unistd.h>

#define NS 1000000000ULL
#define MS 1000000ULL
#define DEFAULT_BOOTSTRAP "127.0.0.1:9092"
#define CALL_TIMEOUT_NS (30 * NS)
#define CONNECT_TIMEOUT_NS (5 * NS)

#define EXIT_USAGE 2

#define EC_TOPIC_NOT_FOUND 9
#define EC_OFFSET_OUT_OF_RANGE 11
#define EC_TOPIC_ALREADY_EXISTS 15
#define EC_COORDINATOR_NOT_AVAILABLE 23
#define EC_NOT_COORDINATOR 24
#define EC_COORDINATOR_LOAD_IN_PROGRESS 25
#define EC_UNKNOWN_MEMBER_ID 26
#define EC_ILLEGAL_GENERATION 27
#define EC_REBALANCE_IN_PROGRESS 28
#define EC_INCONSISTENT_GROUP_PROTOCOL 29
#define EC_GROUP_ID_NOT_FOUND 30
#define EC_INVALID_SESSION_TIMEOUT 31
#define EC_GROUP_NOT_EMPTY 54
#define EC_MEMBER_ID_REQUIRED 56
#define EC_OFFSET_NOT_AVAILABLE 57

/* Produce batching bounds. */
#define BATCH_RECORDS_MAX 1000
#define BATCH_BYTES_MAX (1u << 20)
#define INFLIGHT_MAX 32
#define CONFIGS_MAX 64

static struct {
	const char *cmd;            /* "topic create", for usage errors */
	const char *bootstrap;
	char host[256];
	uint16_t port;
	struct rmq_rpc *rpc;
	bool verbose;
	const char *configs[CONFIGS_MAX];
	size_t nconfigs;
} g;

static volatile sig_atomic_t interrupted;

/* ---- errors ------------------------------------------------------------------- */

static void finish(int code)
{
	fflush(stdout);
	rmq_rpc_close(g.rpc);
	g.rpc = NULL;
	exit(code);
}

static __attribute__((format(printf, 1, 2), noreturn)) void die(const char *fmt, ...)
{
	va_list ap;
	fflush(stdout);
	fputs("rmq: ", stderr);
	va_start(ap, fmt);
	vfprintf(stderr, fmt, ap);
	va_end(ap);
	fputc('\n', stderr);
	finish(1);
	abort(); /* not reached */
}

static __attribute__((format(printf, 1, 2), noreturn)) void usage_error(const char *fmt, ...)
{
	va_list ap;
	fprintf(stderr, "rmq %s: ", g.cmd);
	va_start(ap, fmt);
	vfprintf(stderr, fmt, ap);
	va_end(ap);
	fprintf(stderr, " (see rmq %s --help)\n", g.cmd);
	exit(EXIT_USAGE);
}

static const char *ec_name(int code)
{
	const ProtobufCEnumValue *v =
		protobuf_c_enum_descriptor_get_value(&rustmq__common__error_code__descriptor, code);
	return v ? v->name : "UNKNOWN_ERROR";
}

/* Dies with the broker's error for `what`, naming the fix when we know one. */
static __attribute__((noreturn)) void die_code(const char *what, const char *topic, int code,
					       const char *msg)
{
	if (code == EC_TOPIC_NOT_FOUND && topic)
		die("topic '%s' not found (create it with: rmq topic create %s)", topic, topic);
	if (code == EC_TOPIC_ALREADY_EXISTS && topic)
		die("topic '%s' already exists (see it with: rmq topic describe %s)", topic, topic);
	die("%s: %s%s%s", what, ec_name(code), msg && *msg ? ": " : "", msg ? msg : "");
}

static void *xmalloc(size_t n)
{
	void *p = malloc(n ? n : 1);
	if (!p)
		die("out of memory");
	return p;
}

/* ---- connection and calls ------------------------------------------------------- */

static void connect_broker(void)
{
	char err[256];
	if (bench_parse_target(g.bootstrap, g.host, sizeof(g.host), &g.port, err, sizeof(err)) < 0) {
		fprintf(stderr, "rmq: bad bootstrap address '%s': %s (expected host:port)\n",
			g.bootstrap, err);
		exit(EXIT_USAGE);
	}
	int rc = rmq_rpc_open(g.host, g.port, CONNECT_TIMEOUT_NS, &g.rpc);
	if (rc < 0) {
		char why[128];
		snprintf(why, sizeof(why), "%s", rmq_strerror(rc));
		if (why[0] >= 'A' && why[0] <= 'Z')
			why[0] = (char)(why[0] - 'A' + 'a');
		die("cannot connect to %s: %s (is rmqd running? set --bootstrap or RMQ_BOOTSTRAP)",
		    g.bootstrap, why);
	}
}

/* Sends a call and returns its answer, or dies naming the gRPC status. */
static void call_or_die(const char *what, struct rmq_rpc_call *c)
{
	enum rmq_grpc_status st = rmq_rpc_unary(g.rpc, c);
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

/* One protobuf-c unary call.  Returns the unpacked response (free with
 * protobuf_c_message_free_unpacked) or dies. */
static ProtobufCMessage *pb_call(const char *what, const char *path, const ProtobufCMessage *req,
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

#define PB_CALL(what, path, req, T, desc)                                                      \
	((T *)pb_call(what, path, &(req)->base, &desc, CALL_TIMEOUT_NS))

static Rustmq__Common__ApiVersion api_v1 = {PROTOBUF_C_MESSAGE_INIT(&rustmq__common__api_version__descriptor), 1, 0, 0};

/* ---- argument parsing ------------------------------------------------------------- */

struct cmd_spec {
	const char *name;            /* "topic create" */
	const char *synopsis;        /* after "rmq " */
	const char *about;
	const struct rmq_flag *flags;
	size_t nflags;
	int pos_min, pos_max;
	bool takes_config;           /* --config k=v, repeatable */
	bool takes_verbose;          /* -v */
};

static void print_usage(const struct cmd_spec *cs, FILE *out)
{
	fprintf(out, "usage: rmq %s\n\n%s\n\nflags:\n", cs->synopsis, cs->about);
	rmq_flags_usage(out, cs->flags, cs->nflags);
	if (cs->takes_config)
		fprintf(out, "  --config=k=v  a topic config, repeatable (e.g. retention.ms=3600000)\n");
	if (cs->takes_verbose)
		fprintf(out, "  -v, --verbose  print partition and offsets of each batch on stderr\n");
	fprintf(out, "  --bootstrap=host:port  the broker (default: $RMQ_BOOTSTRAP, else %s)\n",
		DEFAULT_BOOTSTRAP);
}

/* Parses argv (argv[0] is the subcommand) against cs; the positionals end
 * up at argv[1..*npos].  Exits 0 for --help, 2 on a usage error. */
static void parse_args(const struct cmd_spec *cs, int argc, char **argv, int *npos)
{
	g.cmd = cs->name;
	/* --bootstrap, --config and -v are common: take them out first. */
	int out = 1;
	bool rest = false;
	for (int i = 1; i < argc; i++) {
		char *a = argv[i];
		if (rest || strcmp(a, "--") == 0) {
			rest = true;
			argv[out++] = a;
			continue;
		}
		const char *v = NULL;
		bool cfg = false;
		if (strcmp(a, "--bootstrap") == 0 || (cs->takes_config && strcmp(a, "--config") == 0)) {
			if (i + 1 >= argc)
				usage_error("%s needs a value", a);
			cfg = a[2] == 'c';
			v = argv[++i];
		} else if (strncmp(a, "--bootstrap=", 12) == 0) {
			v = a + 12;
		} else if (cs->takes_config && strncmp(a, "--config=", 9) == 0) {
			cfg = true;
			v = a + 9;
		} else if (cs->takes_verbose && (strcmp(a, "-v") == 0 || strcmp(a, "--verbose") == 0)) {
			g.verbose = true;
			continue;
		} else if (strcmp(a, "-h") == 0) {
			print_usage(cs, stdout);
			exit(0);
		} else {
			argv[out++] = a;
			continue;
		}
		if (cfg) {
			if (!strchr(v, '=') || v[0] == '=')
				usage_error("--config wants key=value, not '%s'", v);
			if (g.nconfigs == CONFIGS_MAX)
				usage_error("at most %d --config", CONFIGS_MAX);
			g.configs[g.nconfigs++] = v;
		} else {
			g.bootstrap = v;
		}
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

static int parse_choice(const char *v, const char *const *names, int n)
{
	for (int i = 0; i < n; i++)
		if (strcmp(v, names[i]) == 0)
			return i;
	return -1;
}

/* ---- topic metadata ------------------------------------------------------------------- */

/* Partition count of topic; dies when it does not exist.  A topic just
 * created may take a moment to show its partitions: wait up to 5 s. */
static uint32_t topic_partitions(const char *topic)
{
	for (int tries = 0;; tries++) {
		Rustmq__Client__GetTopicMetadataRequest req = RUSTMQ__CLIENT__GET_TOPIC_METADATA_REQUEST__INIT;
		char *names[1] = {(char *)topic};
		req.version = &api_v1;
		req.client_id = "rmq";
		req.n_topics = 1;
		req.topics = names;
		Rustmq__Client__GetTopicMetadataResponse *r =
			PB_CALL("GetTopicMetadata", "/rustmq.client.MetadataService/GetTopicMetadata",
				&req, Rustmq__Client__GetTopicMetadataResponse,
				rustmq__client__get_topic_metadata_response__descriptor);
		int code = r->error_code;
		uint32_t n = 0;
		if (code == 0 && r->n_topics == 0)
			code = EC_TOPIC_NOT_FOUND;
		if (code == 0) {
			code = r->topics[0]->error_code;
			n = (uint32_t)r->topics[0]->n_partitions;
		}
		char msg[256];
		snprintf(msg, sizeof(msg), "%s", r->error_message);
		protobuf_c_message_free_unpacked(&r->base, NULL);
		if (code != 0)
			die_code("GetTopicMetadata", topic, code, msg);
		if (n > 0)
			return n;
		if (tries >= 50)
			die("topic '%s' has no partitions yet (retry in a moment)", topic);
		struct timespec ts = {0, 100 * 1000 * 1000};
		nanosleep(&ts, NULL);
	}
}

/* ---- topic commands --------------------------------------------------------------------- */

static Rustmq__Common__ConfigEntry *config_entries(Rustmq__Common__ConfigEntry **ptrs)
{
	Rustmq__Common__ConfigEntry *e = xmalloc(sizeof(*e) * (g.nconfigs ? g.nconfigs : 1));
	for (size_t i = 0; i < g.nconfigs; i++) {
		rustmq__common__config_entry__init(&e[i]);
		char *kv = strdup(g.configs[i]);
		if (!kv)
			die("out of memory");
		char *eq = strchr(kv, '=');
		*eq = '\0';
		e[i].name = kv;
		e[i].value = eq + 1;
		ptrs[i] = &e[i];
	}
	return e;
}

static void free_entries(Rustmq__Common__ConfigEntry *e)
{
	for (size_t i = 0; i < g.nconfigs; i++)
		free(e[i].name);
	free(e);
}

static int topic_create(int argc, char **argv)
{
	uint64_t partitions;
	const struct rmq_flag flags[] = {
		{"partitions", RMQ_FLAG_UINT, &partitions, "1", "partitions of the topic", 1, 65536, NULL},
	};
	const struct cmd_spec cs = {"topic create", "topic create NAME [--partitions N] [--config k=v ...]",
				    "Creates a topic.", flags, 1, 1, 1, true, false};
	int npos;
	parse_args(&cs, argc, argv, &npos);
	const char *name = argv[1];
	connect_broker();

	Rustmq__Common__ConfigEntry *ptrs[CONFIGS_MAX];
	Rustmq__Common__ConfigEntry *entries = config_entries(ptrs);
	Rustmq__Controller__CreatableTopic t = RUSTMQ__CONTROLLER__CREATABLE_TOPIC__INIT;
	t.name = (char *)name;
	t.partitions = (uint32_t)partitions;
	t.replication_factor = 1;
	t.n_configs = g.nconfigs;
	t.configs = ptrs;
	Rustmq__Controller__CreatableTopic *tp[1] = {&t};
	Rustmq__Controller__CreateTopicsRequest req = RUSTMQ__CONTROLLER__CREATE_TOPICS_REQUEST__INIT;
	req.version = &api_v1;
	req.n_topics = 1;
	req.topics = tp;
	Rustmq__Controller__CreateTopicsResponse *r =
		PB_CALL("CreateTopics", "/rustmq.controller.AdminService/CreateTopics", &req,
			Rustmq__Controller__CreateTopicsResponse,
			rustmq__controller__create_topics_response__descriptor);
	free_entries(entries);
	if (r->error_code)
		die_code("CreateTopics", name, r->error_code, r->error_message);
	if (r->n_topics < 1)
		die("CreateTopics: the broker answered no result for '%s'", name);
	if (r->topics[0]->error_code)
		die_code("CreateTopics", name, r->topics[0]->error_code, r->topics[0]->error_message);
	printf("created topic %s (%" PRIu32 " partition%s)\n", name, r->topics[0]->partitions,
	       r->topics[0]->partitions == 1 ? "" : "s");
	protobuf_c_message_free_unpacked(&r->base, NULL);
	return 0;
}

static int topic_list(int argc, char **argv)
{
	bool long_fmt;
	const struct rmq_flag flags[] = {
		{"long", RMQ_FLAG_BOOL, &long_fmt, "false", "also print partitions and topic id", 0, 0, NULL},
	};
	const struct cmd_spec cs = {"topic list", "topic list [--long]",
				    "Lists the topics, one name per line.", flags, 1, 0, 0, false, false};
	int npos;
	parse_args(&cs, argc, argv, &npos);
	connect_broker();
	Rustmq__Controller__ListTopicsRequest req = RUSTMQ__CONTROLLER__LIST_TOPICS_REQUEST__INIT;
	req.version = &api_v1;
	Rustmq__Controller__ListTopicsResponse *r =
		PB_CALL("ListTopics", "/rustmq.controller.AdminService/ListTopics", &req,
			Rustmq__Controller__ListTopicsResponse,
			rustmq__controller__list_topics_response__descriptor);
	if (r->error_code)
		die_code("ListTopics", NULL, r->error_code, r->error_message);
	for (size_t i = 0; i < r->n_topics; i++) {
		if (long_fmt)
			printf("%s\tpartitions=%" PRIu32 "\tid=%s\n", r->topics[i]->name,
			       r->topics[i]->partitions, r->topics[i]->topic_id);
		else
			printf("%s\n", r->topics[i]->name);
	}
	protobuf_c_message_free_unpacked(&r->base, NULL);
	return 0;
}

/* start..end: the log start offset and the high watermark, from
 * ListOffsets when the caller asked it (the metadata may lag). */
static void print_partition(const Rustmq__Common__PartitionMetadata *p, const uint64_t *start,
			    const uint64_t *end)
{
	uint32_t i = p->topic_partition ? p->topic_partition->partition : 0;
	printf("  partition %" PRIu32 "\tleader %s\tshard %" PRIu32 "\tepoch %" PRIu32
	       "\toffsets %" PRIu64 "..%" PRIu64 "\n",
	       i, p->leader_id && *p->leader_id ? p->leader_id : "-", p->shard, p->leader_epoch,
	       start ? start[i] : p->log_start_offset, end ? end[i] : p->high_watermark);
}

static void partition_bounds(const char *topic, uint32_t n, uint64_t **start, uint64_t **end);

static int topic_describe(int argc, char **argv)
{
	const struct cmd_spec cs = {"topic describe", "topic describe NAME",
				    "Shows a topic's partitions (leader, shard, offsets) and configs.",
				    NULL, 0, 1, 1, false, false};
	int npos;
	parse_args(&cs, argc, argv, &npos);
	const char *name = argv[1];
	connect_broker();
	char *names[1] = {(char *)name};
	Rustmq__Controller__DescribeTopicsRequest req = RUSTMQ__CONTROLLER__DESCRIBE_TOPICS_REQUEST__INIT;
	req.version = &api_v1;
	req.n_names = 1;
	req.names = names;
	req.include_configs = true;
	Rustmq__Controller__DescribeTopicsResponse *r =
		PB_CALL("DescribeTopics", "/rustmq.controller.AdminService/DescribeTopics", &req,
			Rustmq__Controller__DescribeTopicsResponse,
			rustmq__controller__describe_topics_response__descriptor);
	if (r->error_code)
		die_code("DescribeTopics", name, r->error_code, r->error_message);
	if (r->n_topics < 1)
		die_code("DescribeTopics", name, EC_TOPIC_NOT_FOUND, "");
	const Rustmq__Common__TopicMetadata *t = r->topics[0];
	if (t->error_code)
		die_code("DescribeTopics", name, t->error_code, "");
	printf("topic %s\tid %s\tpartitions %zu\treplication %" PRIu32 "\n", t->name, t->topic_id,
	       t->n_partitions, t->config ? t->config->replication_factor : 1);
	uint64_t *start = NULL, *end = NULL;
	partition_bounds(name, (uint32_t)t->n_partitions, &start, &end);
	for (size_t i = 0; i < t->n_partitions; i++) {
		bool in = t->partitions[i]->topic_partition &&
			  t->partitions[i]->topic_partition->partition < t->n_partitions;
		print_partition(t->partitions[i], in ? start : NULL, in ? end : NULL);
	}
	free(start);
	free(end);
	if (t->config && t->config->n_configs) {
		printf("configs\n");
		for (size_t i = 0; i < t->config->n_configs; i++) {
			const Rustmq__Common__ConfigEntry *e = t->config->configs[i];
			printf("  %s=%s%s\n", e->name, e->is_sensitive ? "(hidden)" : e->value,
			       e->is_default ? "\t(default)" : "");
		}
	}
	protobuf_c_message_free_unpacked(&r->base, NULL);
	return 0;
}

static int topic_delete(int argc, char **argv)
{
	const struct cmd_spec cs = {"topic delete", "topic delete NAME",
				    "Deletes a topic and its data.", NULL, 0, 1, 1, false, false};
	int npos;
	parse_args(&cs, argc, argv, &npos);
	const char *name = argv[1];
	connect_broker();
	char *names[1] = {(char *)name};
	Rustmq__Controller__DeleteTopicsRequest req = RUSTMQ__CONTROLLER__DELETE_TOPICS_REQUEST__INIT;
	req.version = &api_v1;
	req.n_names = 1;
	req.names = names;
	Rustmq__Controller__DeleteTopicsResponse *r =
		PB_CALL("DeleteTopics", "/rustmq.controller.AdminService/DeleteTopics", &req,
			Rustmq__Controller__DeleteTopicsResponse,
			rustmq__controller__delete_topics_response__descriptor);
	if (r->error_code)
		die_code("DeleteTopics", name, r->error_code, r->error_message);
	if (r->n_topics >= 1 && r->topics[0]->error_code)
		die_code("DeleteTopics", name, r->topics[0]->error_code, r->topics[0]->error_message);
	printf("deleted topic %s\n", name);
	protobuf_c_message_free_unpacked(&r->base, NULL);
	return 0;
}

static int topic_alter(int argc, char **argv)
{
	const struct cmd_spec cs = {"topic alter", "topic alter NAME --config k=v [--config k=v ...]",
				    "Sets topic configs.", NULL, 0, 1, 1, true, false};
	int npos;
	parse_args(&cs, argc, argv, &npos);
	const char *name = argv[1];
	if (g.nconfigs == 0)
		usage_error("nothing to alter: give at least one --config k=v");
	connect_broker();
	Rustmq__Controller__AlterableConfig cfgs[CONFIGS_MAX], *ptrs[CONFIGS_MAX];
	char *kvs[CONFIGS_MAX];
	for (size_t i = 0; i < g.nconfigs; i++) {
		rustmq__controller__alterable_config__init(&cfgs[i]);
		kvs[i] = strdup(g.configs[i]);
		if (!kvs[i])
			die("out of memory");
		char *eq = strchr(kvs[i], '=');
		*eq = '\0';
		cfgs[i].name = kvs[i];
		cfgs[i].value = eq + 1;
		cfgs[i].op = RUSTMQ__CONTROLLER__ALTER_CONFIG_OP__ALTER_CONFIG_OP_SET;
		ptrs[i] = &cfgs[i];
	}
	Rustmq__Controller__ConfigResource res = RUSTMQ__CONTROLLER__CONFIG_RESOURCE__INIT;
	res.type = RUSTMQ__CONTROLLER__CONFIG_RESOURCE_TYPE__CONFIG_RESOURCE_TYPE_TOPIC;
	res.name = (char *)name;
	Rustmq__Controller__AlterConfigsResource ar = RUSTMQ__CONTROLLER__ALTER_CONFIGS_RESOURCE__INIT;
	ar.resource = &res;
	ar.n_configs = g.nconfigs;
	ar.configs = ptrs;
	Rustmq__Controller__AlterConfigsResource *arp[1] = {&ar};
	Rustmq__Controller__AlterConfigsRequest req = RUSTMQ__CONTROLLER__ALTER_CONFIGS_REQUEST__INIT;
	req.version = &api_v1;
	req.n_resources = 1;
	req.resources = arp;
	Rustmq__Controller__AlterConfigsResponse *r =
		PB_CALL("AlterConfigs", "/rustmq.controller.AdminService/AlterConfigs", &req,
			Rustmq__Controller__AlterConfigsResponse,
			rustmq__controller__alter_configs_response__descriptor);
	for (size_t i = 0; i < g.nconfigs; i++)
		free(kvs[i]);
	if (r->error_code)
		die_code("AlterConfigs", name, r->error_code, r->error_message);
	if (r->n_resources >= 1 && r->resources[0]->error_code)
		die_code("AlterConfigs", name, r->resources[0]->error_code,
			 r->resources[0]->error_message);
	printf("altered topic %s (%zu config%s)\n", name, g.nconfigs, g.nconfigs == 1 ? "" : "s");
	protobuf_c_message_free_unpacked(&r->base, NULL);
	return 0;
}

/* ---- produce -------------------------------------------------------------------------------- */

struct ppart {
	struct rmq_pbatch fill;       /* being filled from stdin */
	struct rmq_pbatch sent;       /* in flight (its request buffer) */
	struct rmq_rpc_call call;
	bool busy;
};

static struct {
	const char *topic;
	uint32_t nparts;
	struct ppart *parts;
	uint32_t fifo[INFLIGHT_MAX];  /* partitions in flight, oldest first */
	unsigned fifo_head, fifo_count;
	int acks, compression;
	uint64_t acked, sent_records;
	bool progress;
	uint64_t next_progress_ns;
} P;

static void produce_complete(uint32_t pi)
{
	struct ppart *pp = &P.parts[pi];
	enum rmq_grpc_status st = rmq_rpc_wait(&pp->call);
	pp->busy = false;
	if (st != RMQ_GRPC_OK) {
		char msg[256];
		snprintf(msg, sizeof(msg), "%s", pp->call.message ? pp->call.message : "");
		die("ProduceBatch to %s/%" PRIu32 " failed: %s%s%s", P.topic, pi,
		    rmq_grpc_status_name((int)st), *msg ? ": " : "", msg);
	}
	Rustmq__Client__ProduceBatchResponse *r = rustmq__client__produce_batch_response__unpack(
		NULL, pp->call.resp_len, pp->call.resp);
	rmq_rpc_call_reset(&pp->call);
	if (!r)
		die("ProduceBatch: the broker's answer does not parse");
	if (r->error_code)
		die_code("ProduceBatch", P.topic, r->error_code, r->error_message);
	for (size_t i = 0; i < r->n_partitions; i++) {
		const Rustmq__Client__ProduceResponse *pr = r->partitions[i];
		if (pr->error_code)
			die_code("ProduceBatch", P.topic, pr->error_code, pr->error_message);
		P.acked += pr->record_count;
		if (g.verbose)
			fprintf(stderr, "%s/%" PRIu32 ": %" PRIu32 " records at offsets %" PRIu64
				"..%" PRIu64 "\n",
				P.topic, pi, pr->record_count, pr->offset, pr->last_offset);
	}
	protobuf_c_message_free_unpacked(&r->base, NULL);
}

/* Waits for the oldest call in flight. */
static void produce_reap_one(void)
{
	uint32_t pi = P.fifo[P.fifo_head];
	P.fifo_head = (P.fifo_head + 1) % INFLIGHT_MAX;
	P.fifo_count--;
	produce_complete(pi);
}

static void produce_send(uint32_t pi)
{
	struct ppart *pp = &P.parts[pi];
	if (pp->fill.records == 0)
		return;
	/* One request in flight per partition keeps the partition in input
	 * order; the window spans partitions. */
	while (pp->busy || P.fifo_count == INFLIGHT_MAX)
		produce_reap_one();
	struct rmq_pbatch tmp = pp->sent;
	pp->sent = pp->fill;
	pp->fill = tmp;
	rmq_pbatch_clear(&pp->fill);
	long len = rmq_pbatch_encode(&pp->sent, P.topic, pi, P.acks, P.compression);
	if (len < 0)
		die("cannot encode a batch: %s", rmq_strerror((int)len));
	pp->call = (struct rmq_rpc_call){.path = "/rustmq.client.ProducerService/ProduceBatch",
					 .req = pp->sent.out,
					 .len = (size_t)len,
					 .timeout_ns = CALL_TIMEOUT_NS};
	pp->busy = true;
	P.sent_records += pp->sent.records;
	rmq_rpc_submit(g.rpc, &pp->call);
	P.fifo[(P.fifo_head + P.fifo_count) % INFLIGHT_MAX] = pi;
	P.fifo_count++;
	if (P.progress) {
		uint64_t now = rmq_now_ns();
		if (now >= P.next_progress_ns) {
			fprintf(stderr, "\rproduced %" PRIu64 " records", P.acked);
			P.next_progress_ns = now + 500 * MS;
		}
	}
}

/* Splits "k=v,k2=v2" into headers (in place). */
static size_t parse_headers(char *s, struct rmq_header_kv *h, size_t max)
{
	size_t n = 0;
	for (char *tok = strtok(s, ","); tok; tok = strtok(NULL, ",")) {
		char *eq = strchr(tok, '=');
		if (!eq || eq == tok)
			usage_error("--headers wants k=v[,k=v...], not '%s'", tok);
		if (n == max)
			usage_error("at most %zu headers", max);
		*eq = '\0';
		h[n++] = (struct rmq_header_kv){tok, strlen(tok), eq + 1, strlen(eq + 1)};
	}
	return n;
}

static int cmd_produce(int argc, char **argv)
{
	const char *key_sep, *headers_s, *compression_s, *acks_s;
	uint64_t partition;
	const struct rmq_flag flags[] = {
		{"key-sep", RMQ_FLAG_STRING, &key_sep, "", "split each line at the first SEP: key before, value after", 0, 0, NULL},
		{"headers", RMQ_FLAG_STRING, &headers_s, "", "headers for every record: k=v,k2=v2", 0, 0, NULL},
		{"partition", RMQ_FLAG_UINT, &partition, "4294967295", "partition to write (default: hash of the key, else round-robin)", 0, 4294967295u, NULL},
		{"compression", RMQ_FLAG_CHOICE, &compression_s, "none", "codec of each batch", 0, 0, "none|lz4|zstd|snappy"},
		{"acks", RMQ_FLAG_CHOICE, &acks_s, "leader", "acknowledgement to wait for", 0, 0, "none|leader|all"},
	};
	const struct cmd_spec cs = {
		"produce", "produce TOPIC [--key-sep SEP] [--headers k=v,...] [--partition N] [-v]",
		"Sends one record per line of stdin (the value is the line without its newline).",
		flags, 5, 1, 1, false, true};
	int npos;
	parse_args(&cs, argc, argv, &npos);
	P.topic = argv[1];
	P.compression = rmq_codec_parse(compression_s);
	static const char *const acks_names[] = {"none", "leader", "", "all"};
	P.acks = parse_choice(acks_s, acks_names, 4);
	struct rmq_header_kv hdrs[64];
	char *hcopy = strdup(headers_s);
	if (!hcopy)
		die("out of memory");
	size_t nh = parse_headers(hcopy, hdrs, 64);
	size_t seplen = strlen(key_sep);

	connect_broker();
	P.nparts = topic_partitions(P.topic);
	if (partition != 4294967295u && partition >= P.nparts)
		usage_error("--partition %" PRIu64 ": topic '%s' has partitions 0..%" PRIu32, partition,
			    P.topic, P.nparts - 1);
	P.parts = calloc(P.nparts, sizeof(*P.parts));
	if (!P.parts)
		die("out of memory");
	P.progress = isatty(2);

	char *line = NULL;
	size_t cap = 0;
	ssize_t n;
	uint32_t rr = 0;
	struct timespec now;
	while ((n = getline(&line, &cap, stdin)) >= 0) {
		if (n > 0 && line[n - 1] == '\n')
			n--;
		const char *key = NULL, *value = line;
		size_t klen = 0, vlen = (size_t)n;
		if (seplen) {
			char *sep = memmem(line, (size_t)n, key_sep, seplen);
			if (sep) {
				key = line;
				klen = (size_t)(sep - line);
				value = sep + seplen;
				vlen = (size_t)n - klen - seplen;
			}
		}
		uint32_t pi;
		if (partition != 4294967295u)
			pi = (uint32_t)partition;
		else if (key)
			pi = rmq_crc32c(0, key, klen) % P.nparts;
		else
			pi = rr;
		clock_gettime(CLOCK_REALTIME, &now);
		uint64_t ts_ms = (uint64_t)now.tv_sec * 1000 + (uint64_t)now.tv_nsec / 1000000;
		struct ppart *pp = &P.parts[pi];
		if (rmq_pbatch_add(&pp->fill, key, klen, value, vlen, hdrs, nh, ts_ms) < 0)
			die("out of memory");
		if (pp->fill.records >= BATCH_RECORDS_MAX || pp->fill.raw_len >= BATCH_BYTES_MAX) {
			produce_send(pi);
			/* Round-robin moves on per batch (Kafka's sticky
			 * partitioner): whole batches, not one record each. */
			if (partition == 4294967295u && !key)
				rr = (rr + 1) % P.nparts;
		}
	}
	if (ferror(stdin))
		die("cannot read stdin: %s", strerror(errno));
	free(line);
	for (uint32_t pi = 0; pi < P.nparts; pi++)
		produce_send(pi);
	while (P.fifo_count)
		produce_reap_one();
	if (P.progress)
		fprintf(stderr, "\rproduced %" PRIu64 " records\n", P.acked);
	for (uint32_t pi = 0; pi < P.nparts; pi++) {
		rmq_pbatch_free(&P.parts[pi].fill);
		rmq_pbatch_free(&P.parts[pi].sent);
	}
	free(P.parts);
	free(hcopy);
	return 0;
}

/* ---- consume ----------------------------------------------------------------------------------- */

static bool utf8_valid(const uint8_t *s, size_t n)
{
	size_t i = 0;
	while (i < n) {
		uint8_t c = s[i];
		size_t len;
		uint32_t cp;
		if (c < 0x80) {
			i++;
			continue;
		} else if ((c & 0xe0) == 0xc0) {
			len = 2;
			cp = c & 0x1f;
		} else if ((c & 0xf0) == 0xe0) {
			len = 3;
			cp = c & 0x0f;
		} else if ((c & 0xf8) == 0xf0) {
			len = 4;
			cp = c & 0x07;
		} else {
			return false;
		}
		if (i + len > n)
			return false;
		for (size_t k = 1; k < len; k++) {
			if ((s[i + k] & 0xc0) != 0x80)
				return false;
			cp = cp << 6 | (s[i + k] & 0x3f);
		}
		if ((len == 2 && cp < 0x80) || (len == 3 && cp < 0x800) || (len == 4 && cp < 0x10000) ||
		    cp > 0x10ffff || (cp >= 0xd800 && cp <= 0xdfff))
			return false;
		i += len;
	}
	return true;
}

static void json_string(FILE *f, const uint8_t *s, size_t n)
{
	fputc('"', f);
	for (size_t i = 0; i < n; i++) {
		uint8_t c = s[i];
		if (c == '"' || c == '\\')
			fprintf(f, "\\%c", c);
		else if (c == '\n')
			fputs("\\n", f);
		else if (c == '\r')
			fputs("\\r", f);
		else if (c == '\t')
			fputs("\\t", f);
		else if (c < 0x20 || c == 0x7f)
			fprintf(f, "\\u%04x", c);
		else
			fputc(c, f);
	}
	fputc('"', f);
}

static void base64(FILE *f, const uint8_t *s, size_t n)
{
	static const char tab[] = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
	fputc('"', f);
	for (size_t i = 0; i < n; i += 3) {
		uint32_t v = (uint32_t)s[i] << 16 | (i + 1 < n ? (uint32_t)s[i + 1] << 8 : 0) |
			     (i + 2 < n ? s[i + 2] : 0);
		fputc(tab[v >> 18 & 63], f);
		fputc(tab[v >> 12 & 63], f);
		fputc(i + 1 < n ? tab[v >> 6 & 63] : '=', f);
		fputc(i + 2 < n ? tab[v & 63] : '=', f);
	}
	fputc('"', f);
}

/* "name":"utf-8 text" or "name_base64":"..." */
static void json_bytes(FILE *f, const char *name, const uint8_t *s, size_t n)
{
	if (utf8_valid(s, n)) {
		fprintf(f, "\"%s\":", name);
		json_string(f, s, n);
	} else {
		fprintf(f, "\"%s_base64\":", name);
		base64(f, s, n);
	}
}

struct cpart {
	uint32_t partition;
	uint64_t offset;   /* next offset wanted */
};

static struct {
	const char *topic;
	struct cpart *parts;
	uint32_t nparts;
	bool json;
	uint64_t max, got;
	uint8_t *scratch;
	size_t scratch_cap;
} C;

static uint64_t ts_ms(const Google__Protobuf__Timestamp *t)
{
	return t ? (uint64_t)t->seconds * 1000 + (uint64_t)t->nanos / 1000000 : 0;
}

static void print_record(uint32_t partition, uint64_t offset, uint64_t batch_ts,
			 const Rustmq__Common__Record *r)
{
	if (!C.json) {
		fwrite(r->value.data, 1, r->value.len, stdout);
		fputc('\n', stdout);
		return;
	}
	uint64_t ts = r->timestamp ? ts_ms(r->timestamp) : batch_ts;
	printf("{\"topic\":");
	json_string(stdout, (const uint8_t *)C.topic, strlen(C.topic));
	printf(",\"partition\":%" PRIu32 ",\"offset\":%" PRIu64 ",\"timestamp\":%" PRIu64 ",",
	       partition, offset, ts);
	if (r->key.len)
		json_bytes(stdout, "key", r->key.data, r->key.len);
	else
		printf("\"key\":null");
	fputc(',', stdout);
	json_bytes(stdout, "value", r->value.data, r->value.len);
	printf(",\"headers\":[");
	for (size_t i = 0; i < r->n_headers; i++) {
		const Rustmq__Common__Header *h = r->headers[i];
		printf("%s{\"key\":", i ? "," : "");
		json_string(stdout, (const uint8_t *)h->key, strlen(h->key));
		fputc(',', stdout);
		json_bytes(stdout, "value", h->value.data, h->value.len);
		fputc('}', stdout);
	}
	printf("]}\n");
}

/* Prints the records of one stored batch at or past cp->offset. */
static void consume_batch(struct cpart *cp, const Rustmq__Common__RecordBatch *b)
{
	Rustmq__Common__RecordBatch *inner = NULL;
	Rustmq__Common__Record *const *recs = b->records;
	size_t n = b->n_records;
	if (b->compression_type) {
		size_t want;
		const uint8_t *src = b->compressed_records.data;
		size_t srclen = b->compressed_records.len;
		if (rmq_codec_decompressed_size((int)b->compression_type, src, srclen, &want) < 0)
			die("%s/%" PRIu32 ": batch at offset %" PRIu64 " does not decompress", C.topic,
			    cp->partition, b->base_offset);
		if (want > C.scratch_cap) {
			free(C.scratch);
			C.scratch = xmalloc(want);
			C.scratch_cap = want;
		}
		ssize_t got = rmq_codec_decompress((int)b->compression_type, src, srclen, C.scratch, want);
		if (got < 0)
			die("%s/%" PRIu32 ": batch at offset %" PRIu64 " does not decompress", C.topic,
			    cp->partition, b->base_offset);
		/* The decompressed bytes are field-7 elements: a RecordBatch
		 * holding only records. */
		inner = rustmq__common__record_batch__unpack(NULL, (size_t)got, C.scratch);
		if (!inner)
			die("%s/%" PRIu32 ": batch at offset %" PRIu64 " holds malformed records",
			    C.topic, cp->partition, b->base_offset);
		recs = inner->records;
		n = inner->n_records;
	}
	uint64_t batch_ts = b->log_append_time_ms ? b->log_append_time_ms : ts_ms(b->first_timestamp);
	for (size_t i = 0; i < n && (C.max == 0 || C.got < C.max); i++) {
		uint64_t off = b->base_offset + i;
		if (off < cp->offset)
			continue;
		print_record(cp->partition, off, batch_ts, recs[i]);
		C.got++;
		cp->offset = off + 1;
	}
	uint64_t count = b->record_count ? b->record_count : n;
	if ((C.max == 0 || C.got < C.max) && b->base_offset + count > cp->offset)
		cp->offset = b->base_offset + count;
	if (inner)
		rustmq__common__record_batch__free_unpacked(inner, NULL);
}

/* Start offsets through ListOffsets (spec EARLIEST, LATEST or TIMESTAMP)
 * for the partitions of C.parts that have none yet (offset UINT64_MAX);
 * the others keep theirs. */
static void list_offsets(int spec, uint64_t at_ms)
{
	uint32_t n = 0;
	for (uint32_t i = 0; i < C.nparts; i++)
		n += C.parts[i].offset == UINT64_MAX;
	if (n == 0)
		return;
	Rustmq__Client__ListOffsetsPartition *lp = xmalloc(sizeof(*lp) * n);
	Rustmq__Client__ListOffsetsPartition **lpp = xmalloc(sizeof(*lpp) * n);
	Rustmq__Common__TopicPartition *tps = xmalloc(sizeof(*tps) * n);
	Google__Protobuf__Timestamp ts = GOOGLE__PROTOBUF__TIMESTAMP__INIT;
	ts.seconds = (int64_t)(at_ms / 1000);
	ts.nanos = (int32_t)(at_ms % 1000) * 1000000;
	uint32_t k = 0;
	for (uint32_t i = 0; i < C.nparts; i++) {
		if (C.parts[i].offset != UINT64_MAX)
			continue;
		rustmq__client__list_offsets_partition__init(&lp[k]);
		rustmq__common__topic_partition__init(&tps[k]);
		tps[k].topic = (char *)C.topic;
		tps[k].partition = C.parts[i].partition;
		lp[k].topic_partition = &tps[k];
		lp[k].spec = (Rustmq__Client__OffsetSpec)spec;
		if (spec == RUSTMQ__CLIENT__OFFSET_SPEC__OFFSET_SPEC_TIMESTAMP)
			lp[k].timestamp = &ts;
		lpp[k] = &lp[k];
		k++;
	}
	Rustmq__Client__ListOffsetsRequest req = RUSTMQ__CLIENT__LIST_OFFSETS_REQUEST__INIT;
	req.version = &api_v1;
	req.client_id = "rmq";
	req.n_partitions = n;
	req.partitions = lpp;
	Rustmq__Client__ListOffsetsResponse *r =
		PB_CALL("ListOffsets", "/rustmq.client.ConsumerService/ListOffsets", &req,
			Rustmq__Client__ListOffsetsResponse,
			rustmq__client__list_offsets_response__descriptor);
	if (r->error_code)
		die_code("ListOffsets", C.topic, r->error_code, r->error_message);
	bool need_latest = false;
	for (size_t i = 0; i < r->n_partitions; i++) {
		const Rustmq__Client__ListOffsetsPartitionResponse *pr = r->partitions[i];
		uint32_t p = pr->topic_partition ? pr->topic_partition->partition : 0;
		for (uint32_t j = 0; j < C.nparts; j++) {
			if (C.parts[j].partition != p || C.parts[j].offset != UINT64_MAX)
				continue;
			if (pr->error_code == EC_OFFSET_NOT_AVAILABLE &&
			    spec == RUSTMQ__CLIENT__OFFSET_SPEC__OFFSET_SPEC_TIMESTAMP)
				need_latest = true; /* nothing at or after the time yet */
			else if (pr->error_code)
				die_code("ListOffsets", C.topic, pr->error_code, pr->error_message);
			else
				C.parts[j].offset = pr->offset;
		}
	}
	protobuf_c_message_free_unpacked(&r->base, NULL);
	free(lp);
	free(lpp);
	free(tps);
	/* Those partitions start at LATEST; the others keep theirs. */
	if (need_latest)
		list_offsets(RUSTMQ__CLIENT__OFFSET_SPEC__OFFSET_SPEC_LATEST, 0);
}

static void partition_bounds(const char *topic, uint32_t n, uint64_t **start, uint64_t **end)
{
	if (n == 0)
		return;
	C.topic = topic;
	C.nparts = n;
	C.parts = xmalloc(sizeof(*C.parts) * n);
	*start = xmalloc(sizeof(**start) * n);
	*end = xmalloc(sizeof(**end) * n);
	for (int round = 0; round < 2; round++) {
		for (uint32_t i = 0; i < n; i++)
			C.parts[i] = (struct cpart){i, UINT64_MAX};
		list_offsets(round == 0 ? RUSTMQ__CLIENT__OFFSET_SPEC__OFFSET_SPEC_EARLIEST
					: RUSTMQ__CLIENT__OFFSET_SPEC__OFFSET_SPEC_LATEST, 0);
		for (uint32_t i = 0; i < n; i++)
			(round == 0 ? *start : *end)[i] = C.parts[i].offset;
	}
	free(C.parts);
	C.parts = NULL;
}

static void on_sigint(int sig)
{
	(void)sig;
	interrupted = 1;
}

/* One Fetch of every partition of C.parts, waiting up to wait_ns for a
 * record; prints what comes back and moves the positions past it. */
static void fetch_once(uint64_t wait_ns)
{
	Rustmq__Client__FetchPartition *fp = xmalloc(sizeof(*fp) * C.nparts);
	Rustmq__Client__FetchPartition **fpp = xmalloc(sizeof(*fpp) * C.nparts);
	Rustmq__Common__TopicPartition *tps = xmalloc(sizeof(*tps) * C.nparts);
	for (uint32_t i = 0; i < C.nparts; i++) {
		rustmq__client__fetch_partition__init(&fp[i]);
		rustmq__common__topic_partition__init(&tps[i]);
		tps[i].topic = (char *)C.topic;
		tps[i].partition = C.parts[i].partition;
		fp[i].topic_partition = &tps[i];
		fp[i].fetch_offset = C.parts[i].offset;
		fp[i].partition_max_bytes = 1u << 20;
		fpp[i] = &fp[i];
	}
	Google__Protobuf__Duration d = GOOGLE__PROTOBUF__DURATION__INIT;
	d.seconds = (int64_t)(wait_ns / NS);
	d.nanos = (int32_t)(wait_ns % NS);
	Rustmq__Client__FetchRequest req = RUSTMQ__CLIENT__FETCH_REQUEST__INIT;
	req.version = &api_v1;
	req.client_id = "rmq";
	req.max_wait = &d;
	req.min_bytes = 1;
	req.max_bytes = 8u << 20;
	req.n_partitions = C.nparts;
	req.partitions = fpp;
	Rustmq__Client__FetchResponse *r = (Rustmq__Client__FetchResponse *)pb_call(
		"Fetch", "/rustmq.client.ConsumerService/Fetch", &req.base,
		&rustmq__client__fetch_response__descriptor, wait_ns + CALL_TIMEOUT_NS);
	if (r->error_code)
		die_code("Fetch", C.topic, r->error_code, r->error_message);
	for (size_t i = 0; i < r->n_partitions; i++) {
		const Rustmq__Client__FetchPartitionResponse *pr = r->partitions[i];
		uint32_t p = pr->topic_partition ? pr->topic_partition->partition : 0;
		struct cpart *cp = NULL;
		for (uint32_t k = 0; k < C.nparts; k++)
			if (C.parts[k].partition == p)
				cp = &C.parts[k];
		if (!cp)
			continue;
		if (pr->error_code == EC_OFFSET_OUT_OF_RANGE) {
			uint64_t to = cp->offset < pr->log_start_offset ? pr->log_start_offset
									: pr->high_watermark;
			fprintf(stderr, "rmq: %s/%" PRIu32 ": offset %" PRIu64
				" is out of range (%" PRIu64 "..%" PRIu64 "); continuing at %" PRIu64 "\n",
				C.topic, p, cp->offset, pr->log_start_offset, pr->high_watermark, to);
			cp->offset = to;
			continue;
		}
		if (pr->error_code)
			die_code("Fetch", C.topic, pr->error_code, pr->error_message);
		for (size_t b = 0; b < pr->n_batches && (C.max == 0 || C.got < C.max); b++)
			consume_batch(cp, pr->batches[b]);
	}
	protobuf_c_message_free_unpacked(&r->base, NULL);
	free(fp);
	free(fpp);
	free(tps);
}

/* ---- consume --group ---------------------------------------------------------------------------- */

/*
 * A group member, driven from the one main thread (the calls block; the
 * fetch's max_wait is kept below the heartbeat interval so the heartbeat
 * is never late):
 *
 *   JoinGroup ──MEMBER_ID_REQUIRED──► JoinGroup with the id given, held
 *   until the generation forms ──► SyncGroup: this member's partitions ──►
 *   FetchOffsets: the group's committed positions; a partition without
 *   one starts at --offset (the reset policy, Kafka's auto.offset.reset)
 *       │
 *       ▼
 *   loop: Fetch ─► print ─► every --commit-interval: CommitOffsets
 *         every heartbeat_interval: Heartbeat
 *           REBALANCE_IN_PROGRESS ───────────► commit, JoinGroup (same id)
 *           UNKNOWN_MEMBER_ID, ILLEGAL_GENERATION ► JoinGroup with no id
 *   end (--max, --timeout, SIGINT/SIGTERM, stdout closed):
 *         CommitOffsets of exactly what was printed, LeaveGroup
 *
 * Delivery is at least once: the records printed since the last commit
 * that succeeded go to the partition's next owner again when a commit is
 * refused (the member was removed for missing its session timeout) or the
 * process is killed.  A clean stop loses nothing and repeats nothing.
 */

#define GROUP_POLL_NS (500 * MS) /* longest fetch wait: SIGINT is seen this fast */
#define GROUP_RETRIES_MAX 100    /* coordinator loading / moving, 100 ms apart */

static struct {
	const char *group;
	const char *assignor;
	uint64_t session_ns;
	char *member_id;        /* heap; "" before the first join */
	int32_t generation;     /* -1 = not in a generation */
	uint64_t heartbeat_ns;
	uint64_t *committed;    /* per C.parts[i]: the group's offset, UINT64_MAX = none */
	int reset_spec;         /* --offset: an OFFSET_SPEC, or -1 for reset_at itself */
	uint64_t reset_at;
} M;

static Google__Protobuf__Duration pb_duration(uint64_t ns)
{
	Google__Protobuf__Duration d = GOOGLE__PROTOBUF__DURATION__INIT;
	d.seconds = (int64_t)(ns / NS);
	d.nanos = (int32_t)(ns % NS);
	return d;
}

static void set_member_id(const char *id)
{
	free(M.member_id);
	M.member_id = strdup(id ? id : "");
	if (!M.member_id)
		die("out of memory");
}

static void sleep_ns(uint64_t ns)
{
	struct timespec ts = {(time_t)(ns / NS), (long)(ns % NS)};
	nanosleep(&ts, NULL);
}

/* The coordinator is loading or moving: the call may be retried. */
static bool group_retriable(int code)
{
	return code == EC_COORDINATOR_NOT_AVAILABLE || code == EC_NOT_COORDINATOR ||
	       code == EC_COORDINATOR_LOAD_IN_PROGRESS;
}

static __attribute__((noreturn)) void die_group(const char *what, int code, const char *msg)
{
	if (code == EC_GROUP_ID_NOT_FOUND)
		die("no such group '%s' (see the groups with: rmq group list)", M.group);
	if (code == EC_GROUP_NOT_EMPTY)
		die("group '%s' has active members: stop the group's consumers first (see them with: "
		    "rmq group describe %s)", M.group, M.group);
	die_code(what, C.topic, code, msg);
}

/* Positions printed past the group's committed offsets. */
static bool group_uncommitted(void)
{
	for (uint32_t i = 0; i < C.nparts; i++)
		if (C.parts[i].offset != M.committed[i])
			return true;
	return false;
}

/* Joins (or rejoins) the group and takes this generation's partitions,
 * each at its committed offset or the reset policy's.  Returns with
 * M.generation -1 when interrupted before a generation formed. */
static void group_join(void)
{
	int tries = 0;
	free(C.parts);
	free(M.committed);
	C.parts = NULL;
	M.committed = NULL;
	C.nparts = 0;
	M.generation = -1;
again:
	if (interrupted)
		return;
	if (tries++ > GROUP_RETRIES_MAX)
		die("group '%s': the coordinator did not settle (retry in a moment)", M.group);
	char *topics[1] = {(char *)C.topic};
	char *assignors[1] = {(char *)M.assignor};
	Google__Protobuf__Duration session = pb_duration(M.session_ns);
	Rustmq__Client__JoinGroupRequest jq = RUSTMQ__CLIENT__JOIN_GROUP_REQUEST__INIT;
	jq.version = &api_v1;
	jq.client_id = "rmq";
	jq.group_id = (char *)M.group;
	jq.member_id = M.member_id;
	jq.session_timeout = &session;
	jq.rebalance_timeout = &session;
	jq.n_topics = 1;
	jq.topics = topics;
	jq.n_assignors = 1;
	jq.assignors = assignors;
	jq.reason = "rmq consume";
	/* Held until the generation forms: at most the longest rebalance
	 * timeout of the members (ours is the session timeout) after the
	 * initial delay, which is itself bounded by it. */
	Rustmq__Client__JoinGroupResponse *jr = (Rustmq__Client__JoinGroupResponse *)pb_call(
		"JoinGroup", "/rustmq.client.ConsumerService/JoinGroup", &jq.base,
		&rustmq__client__join_group_response__descriptor, 2 * M.session_ns + CALL_TIMEOUT_NS);
	int code = jr->error_code;
	char msg[256];
	snprintf(msg, sizeof(msg), "%s", jr->error_message);
	if (code == 0 || code == EC_MEMBER_ID_REQUIRED)
		set_member_id(jr->member_id);
	if (code == 0) {
		M.generation = jr->generation_id;
		M.heartbeat_ns = jr->heartbeat_interval
					 ? (uint64_t)jr->heartbeat_interval->seconds * NS +
						   (uint64_t)jr->heartbeat_interval->nanos
					 : 0;
		if (M.heartbeat_ns == 0 || M.heartbeat_ns > M.session_ns / 3)
			M.heartbeat_ns = M.session_ns / 3;
	}
	protobuf_c_message_free_unpacked(&jr->base, NULL);
	if (code == EC_MEMBER_ID_REQUIRED || code == EC_REBALANCE_IN_PROGRESS)
		goto again;
	if (code == EC_UNKNOWN_MEMBER_ID) {
		set_member_id("");
		goto again;
	}
	if (group_retriable(code)) {
		sleep_ns(100 * MS);
		goto again;
	}
	if (code == EC_INVALID_SESSION_TIMEOUT)
		die("group '%s': the broker refuses --session-timeout %" PRIu64 "ms: %s", M.group,
		    (uint64_t)(M.session_ns / MS), msg);
	if (code == EC_INCONSISTENT_GROUP_PROTOCOL)
		die("group '%s' runs another assignor than --assignor %s (give the one its members use)",
		    M.group, M.assignor);
	if (code)
		die_group("JoinGroup", code, msg);

	Rustmq__Client__SyncGroupRequest sq = RUSTMQ__CLIENT__SYNC_GROUP_REQUEST__INIT;
	sq.version = &api_v1;
	sq.client_id = "rmq";
	sq.group_id = (char *)M.group;
	sq.generation_id = M.generation;
	sq.member_id = M.member_id;
	Rustmq__Client__SyncGroupResponse *sr =
		PB_CALL("SyncGroup", "/rustmq.client.ConsumerService/SyncGroup", &sq,
			Rustmq__Client__SyncGroupResponse,
			rustmq__client__sync_group_response__descriptor);
	code = sr->error_code;
	if (code == 0) {
		C.parts = xmalloc(sizeof(*C.parts) * (sr->n_assignment ? sr->n_assignment : 1));
		for (size_t i = 0; i < sr->n_assignment; i++) {
			const Rustmq__Common__TopicPartition *tp = sr->assignment[i];
			if (tp && strcmp(tp->topic, C.topic) == 0)
				C.parts[C.nparts++] = (struct cpart){tp->partition, UINT64_MAX};
		}
	}
	snprintf(msg, sizeof(msg), "%s", sr->error_message);
	protobuf_c_message_free_unpacked(&sr->base, NULL);
	if (code == EC_REBALANCE_IN_PROGRESS || code == EC_ILLEGAL_GENERATION ||
	    code == EC_UNKNOWN_MEMBER_ID || group_retriable(code)) {
		if (code == EC_UNKNOWN_MEMBER_ID)
			set_member_id("");
		M.generation = -1;
		goto again;
	}
	if (code)
		die_group("SyncGroup", code, msg);

	M.committed = xmalloc(sizeof(*M.committed) * (C.nparts ? C.nparts : 1));
	for (uint32_t i = 0; i < C.nparts; i++)
		M.committed[i] = UINT64_MAX;
	if (C.nparts == 0)
		return;
	Rustmq__Common__TopicPartition *tps = xmalloc(sizeof(*tps) * C.nparts);
	Rustmq__Common__TopicPartition **tpp = xmalloc(sizeof(*tpp) * C.nparts);
	for (uint32_t i = 0; i < C.nparts; i++) {
		rustmq__common__topic_partition__init(&tps[i]);
		tps[i].topic = (char *)C.topic;
		tps[i].partition = C.parts[i].partition;
		tpp[i] = &tps[i];
	}
	Rustmq__Client__FetchOffsetsRequest fq = RUSTMQ__CLIENT__FETCH_OFFSETS_REQUEST__INIT;
	fq.version = &api_v1;
	fq.client_id = "rmq";
	fq.group_id = (char *)M.group;
	fq.n_partitions = C.nparts;
	fq.partitions = tpp;
	Rustmq__Client__FetchOffsetsResponse *fr =
		PB_CALL("FetchOffsets", "/rustmq.client.ConsumerService/FetchOffsets", &fq,
			Rustmq__Client__FetchOffsetsResponse,
			rustmq__client__fetch_offsets_response__descriptor);
	free(tps);
	free(tpp);
	if (fr->error_code)
		die_group("FetchOffsets", fr->error_code, fr->error_message);
	for (size_t i = 0; i < fr->n_partitions; i++) {
		const Rustmq__Client__OffsetFetchPartition *op = fr->partitions[i];
		if (op->error_code)
			die_group("FetchOffsets", op->error_code, op->error_message);
		if (!op->topic_partition ||
		    op->committed_case != RUSTMQ__CLIENT__OFFSET_FETCH_PARTITION__COMMITTED_OFFSET)
			continue;
		for (uint32_t k = 0; k < C.nparts; k++) {
			if (C.parts[k].partition != op->topic_partition->partition)
				continue;
			C.parts[k].offset = op->offset;
			M.committed[k] = op->offset;
		}
	}
	protobuf_c_message_free_unpacked(&fr->base, NULL);
	/* No committed offset: the reset policy.  The position it gives is
	 * committed like any other, so the next member resumes there. */
	if (M.reset_spec < 0) {
		for (uint32_t i = 0; i < C.nparts; i++)
			if (C.parts[i].offset == UINT64_MAX)
				C.parts[i].offset = M.reset_at;
	} else {
		list_offsets(M.reset_spec, M.reset_at);
	}
}

/* Commits the positions that moved since the last commit.  Returns 0, or
 * the group error that refused the whole commit (the caller rejoins or
 * retries); a partition refused alone is reported on stderr. */
static int group_commit(void)
{
	if (M.generation < 0 || !group_uncommitted())
		return 0;
	Rustmq__Client__OffsetCommitPartition *op = xmalloc(sizeof(*op) * C.nparts);
	Rustmq__Client__OffsetCommitPartition **opp = xmalloc(sizeof(*opp) * C.nparts);
	Rustmq__Common__TopicPartition *tps = xmalloc(sizeof(*tps) * C.nparts);
	size_t n = 0;
	for (uint32_t i = 0; i < C.nparts; i++) {
		if (C.parts[i].offset == M.committed[i])
			continue;
		rustmq__client__offset_commit_partition__init(&op[n]);
		rustmq__common__topic_partition__init(&tps[n]);
		tps[n].topic = (char *)C.topic;
		tps[n].partition = C.parts[i].partition;
		op[n].topic_partition = &tps[n];
		op[n].offset = C.parts[i].offset;
		opp[n] = &op[n];
		n++;
	}
	Rustmq__Client__CommitOffsetsRequest req = RUSTMQ__CLIENT__COMMIT_OFFSETS_REQUEST__INIT;
	req.version = &api_v1;
	req.client_id = "rmq";
	req.group_id = (char *)M.group;
	req.generation_id = M.generation;
	req.member_id = M.member_id;
	req.n_partitions = n;
	req.partitions = opp;
	Rustmq__Client__CommitOffsetsResponse *r =
		PB_CALL("CommitOffsets", "/rustmq.client.ConsumerService/CommitOffsets", &req,
			Rustmq__Client__CommitOffsetsResponse,
			rustmq__client__commit_offsets_response__descriptor);
	int code = r->error_code;
	if (code && code != EC_REBALANCE_IN_PROGRESS && code != EC_ILLEGAL_GENERATION &&
	    code != EC_UNKNOWN_MEMBER_ID && !group_retriable(code))
		die_group("CommitOffsets", code, r->error_message);
	for (size_t i = 0; code == 0 && i < r->n_partitions && i < n; i++) {
		const Rustmq__Client__OffsetCommitPartitionResponse *pr = r->partitions[i];
		for (uint32_t k = 0; k < C.nparts; k++) {
			if (C.parts[k].partition != tps[i].partition)
				continue;
			if (pr->error_code == 0)
				M.committed[k] = op[i].offset;
			else
				fprintf(stderr, "rmq: group %s: commit of %s/%" PRIu32 " at %" PRIu64
					" refused: %s%s%s\n", M.group, C.topic, tps[i].partition,
					op[i].offset, ec_name(pr->error_code),
					*pr->error_message ? ": " : "", pr->error_message);
		}
	}
	protobuf_c_message_free_unpacked(&r->base, NULL);
	free(op);
	free(opp);
	free(tps);
	return code;
}

/* A call said the member is out of step: rejoin.  REBALANCE_IN_PROGRESS
 * keeps the member id (commits of the ending generation still count);
 * UNKNOWN_MEMBER_ID and ILLEGAL_GENERATION start over with an empty one. */
static void group_recover(int code)
{
	if (code == EC_REBALANCE_IN_PROGRESS) {
		int c2 = group_commit();
		if (c2 == EC_UNKNOWN_MEMBER_ID || c2 == EC_ILLEGAL_GENERATION)
			code = c2;
		else if (c2)
			fprintf(stderr, "rmq: group %s: commit refused (%s); rejoining: records printed "
				"since the last commit may be delivered again\n", M.group, ec_name(c2));
	}
	if (code == EC_UNKNOWN_MEMBER_ID || code == EC_ILLEGAL_GENERATION) {
		if (C.nparts && group_uncommitted())
			fprintf(stderr, "rmq: group %s: %s; rejoining: records printed since the last "
				"commit may be delivered again\n", M.group, ec_name(code));
		set_member_id("");
	}
	group_join();
}

static int group_heartbeat(void)
{
	Rustmq__Client__GroupHeartbeatRequest req = RUSTMQ__CLIENT__GROUP_HEARTBEAT_REQUEST__INIT;
	req.version = &api_v1;
	req.client_id = "rmq";
	req.group_id = (char *)M.group;
	req.generation_id = M.generation;
	req.member_id = M.member_id;
	Rustmq__Client__GroupHeartbeatResponse *r =
		PB_CALL("Heartbeat", "/rustmq.client.ConsumerService/Heartbeat", &req,
			Rustmq__Client__GroupHeartbeatResponse,
			rustmq__client__group_heartbeat_response__descriptor);
	int code = r->error_code;
	if (code == 0 && r->rebalance_in_progress)
		code = EC_REBALANCE_IN_PROGRESS;
	if (code && code != EC_REBALANCE_IN_PROGRESS && code != EC_ILLEGAL_GENERATION &&
	    code != EC_UNKNOWN_MEMBER_ID && !group_retriable(code))
		die_group("Heartbeat", code, r->error_message);
	protobuf_c_message_free_unpacked(&r->base, NULL);
	return code;
}

static void group_leave(void)
{
	if (!M.member_id || !*M.member_id)
		return;
	Rustmq__Client__LeaveGroupRequest req = RUSTMQ__CLIENT__LEAVE_GROUP_REQUEST__INIT;
	req.version = &api_v1;
	req.client_id = "rmq";
	req.group_id = (char *)M.group;
	req.member_id = M.member_id;
	req.reason = "rmq consume stopped";
	Rustmq__Client__LeaveGroupResponse *r =
		PB_CALL("LeaveGroup", "/rustmq.client.ConsumerService/LeaveGroup", &req,
			Rustmq__Client__LeaveGroupResponse,
			rustmq__client__leave_group_response__descriptor);
	/* UNKNOWN_MEMBER_ID: the coordinator removed us already; nothing to do. */
	protobuf_c_message_free_unpacked(&r->base, NULL);
	set_member_id("");
}

/* The group member's loop (see the diagram above).  Returns the exit status. */
static int consume_group(uint64_t timeout_ns, uint64_t commit_ns)
{
	set_member_id("");
	group_join();
	uint64_t now = rmq_now_ns();
	uint64_t last_record = now; /* --timeout counts from the first assignment */
	uint64_t next_commit = now + commit_ns, next_heartbeat = now + M.heartbeat_ns;
	while (!interrupted && M.generation >= 0 && (C.max == 0 || C.got < C.max)) {
		now = rmq_now_ns();
		uint64_t wait = GROUP_POLL_NS;
		if (wait > M.heartbeat_ns)
			wait = M.heartbeat_ns;
		if (timeout_ns) {
			if (now - last_record >= timeout_ns)
				break;
			if (timeout_ns - (now - last_record) < wait)
				wait = timeout_ns - (now - last_record);
		}
		uint64_t before = C.got;
		if (C.nparts)
			fetch_once(wait);
		else
			sleep_ns(wait); /* more members than partitions: stand by */
		now = rmq_now_ns();
		if (C.got != before)
			last_record = now;
		if (ferror(stdout)) {
			if (errno == EPIPE)
				break;
			die("cannot write stdout: %s", strerror(errno));
		}
		int code = 0;
		if (now >= next_commit) {
			fflush(stdout); /* commit only what the reader was given */
			code = group_commit();
			next_commit = now + commit_ns;
		}
		if (code == 0 && now >= next_heartbeat) {
			code = group_heartbeat();
			next_heartbeat = now + M.heartbeat_ns;
		}
		if (code && !group_retriable(code)) {
			group_recover(code);
			now = rmq_now_ns();
			next_commit = now + commit_ns;
			next_heartbeat = now + M.heartbeat_ns;
		}
	}
	fflush(stdout);
	int rc = 0;
	for (int tries = 0; M.generation >= 0 && tries < 10; tries++) {
		int code = group_commit();
		if (code == 0)
			break;
		if (group_retriable(code)) {
			sleep_ns(100 * MS);
			continue;
		}
		fprintf(stderr, "rmq: group %s: the last commit was refused (%s): records printed "
			"since the one before may be delivered again\n", M.group, ec_name(code));
		rc = 1;
		break;
	}
	group_leave();
	free(M.committed);
	free(M.member_id);
	M.committed = NULL;
	M.member_id = NULL;
	return rc;
}

static int cmd_consume(int argc, char **argv)
{
	const char *offset_s, *format_s, *group_s, *assignor_s;
	uint64_t partition, max, timeout_ns, session_ns, commit_ns;
	const struct rmq_flag flags[] = {
		{"offset", RMQ_FLAG_STRING, &offset_s, "latest", "where to start: earliest, latest, an offset N, or @<unix-ms>; with --group, where a partition the group has no committed offset for starts (the reset policy)", 0, 0, NULL},
		{"partition", RMQ_FLAG_UINT, &partition, "4294967295", "read one partition (default: all, merged; not with --group)", 0, 4294967295u, NULL},
		{"max", RMQ_FLAG_UINT, &max, "0", "stop after N records (0 = no limit)", 0, 0, NULL},
		{"format", RMQ_FLAG_CHOICE, &format_s, "plain", "plain: each value and a newline; json: one object per record", 0, 0, "plain|json"},
		{"timeout", RMQ_FLAG_DURATION, &timeout_ns, "0s", "stop when no record arrives for this long (0s = wait forever)", 0, 0, NULL},
		{"group", RMQ_FLAG_STRING, &group_s, "", "consume as a member of this consumer group: the group's partitions are split between its members, positions are committed", 0, 0, NULL},
		{"assignor", RMQ_FLAG_CHOICE, &assignor_s, "range", "with --group: how the broker splits the partitions", 0, 0, "range|roundrobin|sticky"},
		{"session-timeout", RMQ_FLAG_DURATION, &session_ns, "10s", "with --group: the member is removed when it is not heard from for this long", 1 * MS, 0, NULL},
		{"commit-interval", RMQ_FLAG_DURATION, &commit_ns, "5s", "with --group: how often to commit the positions (and always on exit)", 1 * MS, 0, NULL},
	};
	const struct cmd_spec cs = {
		"consume", "consume TOPIC [--offset earliest|latest|N|@ms] [--partition N | --group G] [--max N] [--format plain|json] [--timeout DURATION]",
		"Prints the records of a topic (all partitions merged) on stdout.\n\n"
		"With --group G it is one member of consumer group G: the broker splits the topic's\n"
		"partitions between the members (--assignor), each partition starts at the group's\n"
		"committed offset, or where --offset says when the group has none (default latest, like\n"
		"Kafka's auto.offset.reset), and the positions are committed every --commit-interval\n"
		"and on exit (--max, --timeout, SIGINT, SIGTERM), so the next member resumes there.",
		flags, 9, 1, 1, false, false};
	int npos;
	parse_args(&cs, argc, argv, &npos);
	C.topic = argv[1];
	C.json = strcmp(format_s, "json") == 0;
	C.max = max;
	bool grouped = *group_s != '\0';
	if (grouped && partition != 4294967295u)
		usage_error("--partition and --group exclude each other: the group assigns the partitions");
	int spec;
	uint64_t at = 0;
	char err[128];
	if (strcmp(offset_s, "earliest") == 0) {
		spec = RUSTMQ__CLIENT__OFFSET_SPEC__OFFSET_SPEC_EARLIEST;
	} else if (strcmp(offset_s, "latest") == 0) {
		spec = RUSTMQ__CLIENT__OFFSET_SPEC__OFFSET_SPEC_LATEST;
	} else if (offset_s[0] == '@') {
		spec = RUSTMQ__CLIENT__OFFSET_SPEC__OFFSET_SPEC_TIMESTAMP;
		if (rmq_parse_uint(offset_s + 1, 0, (uint64_t)INT64_MAX / 1000, &at, err, sizeof(err)) < 0)
			usage_error("--offset %s: a timestamp is @<ms since the Unix epoch>", offset_s);
	} else {
		spec = -1;
		if (rmq_parse_uint(offset_s, 0, UINT64_MAX - 1, &at, err, sizeof(err)) < 0)
			usage_error("--offset '%s': want earliest, latest, an offset or @<unix-ms>",
				    offset_s);
	}

	connect_broker();
	uint32_t total = topic_partitions(C.topic);
	struct sigaction sa = {.sa_handler = on_sigint};
	sigaction(SIGINT, &sa, NULL);
	sigaction(SIGTERM, &sa, NULL);
	if (grouped) {
		M.group = group_s;
		M.assignor = assignor_s;
		M.session_ns = session_ns;
		M.reset_spec = spec;
		M.reset_at = at;
		int rc = consume_group(timeout_ns, commit_ns);
		free(C.parts);
		free(C.scratch);
		return rc;
	}
	if (partition != 4294967295u && partition >= total)
		usage_error("--partition %" PRIu64 ": topic '%s' has partitions 0..%" PRIu32, partition,
			    C.topic, total - 1);
	C.nparts = partition != 4294967295u ? 1 : total;
	C.parts = xmalloc(sizeof(*C.parts) * C.nparts);
	for (uint32_t i = 0; i < C.nparts; i++) {
		C.parts[i].partition = partition != 4294967295u ? (uint32_t)partition : i;
		C.parts[i].offset = spec < 0 ? at : UINT64_MAX;
	}
	if (spec >= 0)
		list_offsets(spec, at);

	bool progress = isatty(2) && !isatty(1);
	uint64_t next_progress = 0;
	uint64_t last_record = rmq_now_ns();
	while (!interrupted && (C.max == 0 || C.got < C.max)) {
		uint64_t now = rmq_now_ns();
		uint64_t wait = NS;
		if (timeout_ns) {
			if (now - last_record >= timeout_ns)
				break;
			uint64_t left = timeout_ns - (now - last_record);
			if (left < wait)
				wait = left;
		}
		uint64_t before = C.got;
		fetch_once(wait);
		if (C.got != before)
			last_record = rmq_now_ns();
		if (ferror(stdout)) {
			if (errno == EPIPE)
				break;
			die("cannot write stdout: %s", strerror(errno));
		}
		if (progress && rmq_now_ns() >= next_progress) {
			fprintf(stderr, "\rconsumed %" PRIu64 " records", C.got);
			next_progress = rmq_now_ns() + 500 * MS;
		}
	}
	if (progress)
		fprintf(stderr, "\rconsumed %" PRIu64 " records\n", C.got);
	free(C.parts);
	free(C.scratch);
	return 0;
}

/* ---- group commands ---------------------------------------------------------------------------- */

/* Kafka's names for the group states (kafka-consumer-groups prints them). */
static const char *const group_states[] = {
	"Unknown", "Empty", "PreparingRebalance", "CompletingRebalance", "Stable", "Dead",
};
#define GROUP_STATES (sizeof(group_states) / sizeof(group_states[0]))

static const char *group_state(int s)
{
	return s >= 0 && (size_t)s < GROUP_STATES ? group_states[s] : "Unknown";
}

static int group_list(int argc, char **argv)
{
	const char *state_s;
	const struct rmq_flag flags[] = {
		{"state", RMQ_FLAG_STRING, &state_s, "", "only groups in these states, comma-separated: Empty, PreparingRebalance, CompletingRebalance, Stable, Dead (any case)", 0, 0, NULL},
	};
	const struct cmd_spec cs = {"group list", "group list [--state STATE[,STATE...]]",
				    "Lists the consumer groups, sorted: id and state, one per line.",
				    flags, 1, 0, 0, false, false};
	int npos;
	parse_args(&cs, argc, argv, &npos);
	Rustmq__Controller__GroupState states[GROUP_STATES];
	size_t nstates = 0;
	char *copy = strdup(state_s);
	if (!copy)
		die("out of memory");
	for (char *tok = strtok(copy, ","); tok; tok = strtok(NULL, ",")) {
		size_t k = 1; /* "Unknown" is not a state one can ask for */
		while (k < GROUP_STATES && strcasecmp(tok, group_states[k]) != 0)
			k++;
		if (k == GROUP_STATES)
			usage_error("--state '%s': want Empty, PreparingRebalance, CompletingRebalance, "
				    "Stable or Dead", tok);
		if (nstates < GROUP_STATES)
			states[nstates++] = (Rustmq__Controller__GroupState)k;
	}
	free(copy);
	connect_broker();
	Rustmq__Controller__ListGroupsRequest req = RUSTMQ__CONTROLLER__LIST_GROUPS_REQUEST__INIT;
	req.version = &api_v1;
	req.n_states = nstates;
	req.states = states;
	Rustmq__Controller__ListGroupsResponse *r =
		PB_CALL("ListGroups", "/rustmq.controller.AdminService/ListGroups", &req,
			Rustmq__Controller__ListGroupsResponse,
			rustmq__controller__list_groups_response__descriptor);
	if (r->error_code)
		die_code("ListGroups", NULL, r->error_code, r->error_message);
	for (size_t i = 0; i < r->n_groups; i++)
		printf("%s\t%s\n", r->groups[i]->group_id, group_state(r->groups[i]->state));
	if (r->n_broker_errors) {
		const Rustmq__Controller__BrokerError *e = r->broker_errors[0];
		die("ListGroups: broker %s did not answer (%s%s%s) and %zu other(s): their groups are "
		    "missing above (retry in a moment)",
		    e->broker_id, ec_name(e->error_code), *e->error_message ? ": " : "",
		    e->error_message, r->n_broker_errors - 1);
	}
	protobuf_c_message_free_unpacked(&r->base, NULL);
	return 0;
}

/* "t/0,t/1" into buf (cut with "..." when it does not fit). */
static void format_partitions(char *buf, size_t cap, Rustmq__Common__TopicPartition *const *tps,
			      size_t n)
{
	size_t len = 0;
	buf[0] = '\0';
	if (n == 0)
		snprintf(buf, cap, "-");
	for (size_t i = 0; i < n && len < cap; i++) {
		int w = snprintf(buf + len, cap - len, "%s%s/%" PRIu32, i ? "," : "", tps[i]->topic,
				 tps[i]->partition);
		if (w < 0 || (size_t)w >= cap - len) {
			snprintf(buf + (cap > 4 ? cap - 4 : 0), cap > 4 ? 4 : cap, "...");
			break;
		}
		len += (size_t)w;
	}
}

/* The member that owns topic/partition in the current generation, or "-". */
static const char *owner_of(const Rustmq__Controller__GroupDescription *d, const char *topic,
			    uint32_t partition)
{
	for (size_t i = 0; i < d->n_members; i++) {
		const Rustmq__Controller__GroupMemberDescription *m = d->members[i];
		for (size_t k = 0; k < m->n_assigned_partitions; k++)
			if (m->assigned_partitions[k]->partition == partition &&
			    strcmp(m->assigned_partitions[k]->topic, topic) == 0)
				return m->member_id;
	}
	return "-";
}

static int tp_cmp(const void *a, const void *b)
{
	const Rustmq__Common__TopicPartition *x = *(void *const *)a, *y = *(void *const *)b;
	int c = strcmp(x->topic, y->topic);
	return c ? c : (x->partition > y->partition) - (x->partition < y->partition);
}

struct offset_row {
	const Rustmq__Common__TopicPartition *tp;
	const Rustmq__Controller__GroupPartitionOffset *o; /* NULL: none committed */
};

static int offset_row_cmp(const void *a, const void *b)
{
	const struct offset_row *x = a, *y = b;
	return tp_cmp(&x->tp, &y->tp);
}

static int group_describe(int argc, char **argv)
{
	const struct cmd_spec cs = {
		"group describe", "group describe GROUP",
		"Shows a consumer group: state, assignor, generation, members (client, host,\n"
		"partitions) and, per partition, the committed offset, the log end offset and the lag\n"
		"(like kafka-consumer-groups --describe).  A partition a member owns but the group has\n"
		"not committed yet shows committed -.",
		NULL, 0, 1, 1, false, false};
	int npos;
	parse_args(&cs, argc, argv, &npos);
	M.group = argv[1];
	connect_broker();
	char *ids[1] = {(char *)M.group};
	Rustmq__Controller__DescribeGroupsRequest req = RUSTMQ__CONTROLLER__DESCRIBE_GROUPS_REQUEST__INIT;
	req.version = &api_v1;
	req.n_group_ids = 1;
	req.group_ids = ids;
	req.include_offsets = true;
	Rustmq__Controller__DescribeGroupsResponse *r =
		PB_CALL("DescribeGroups", "/rustmq.controller.AdminService/DescribeGroups", &req,
			Rustmq__Controller__DescribeGroupsResponse,
			rustmq__controller__describe_groups_response__descriptor);
	if (r->error_code)
		die_group("DescribeGroups", r->error_code, r->error_message);
	if (r->n_groups < 1)
		die("DescribeGroups: the broker answered nothing for '%s'", M.group);
	Rustmq__Controller__GroupDescription *d = r->groups[0];
	if (d->error_code)
		die_group("DescribeGroups", d->error_code, d->error_message);
	printf("group %s\tstate %s\tassignor %s\tgeneration %" PRId32 "\tcoordinator %s\n", d->group_id,
	       group_state(d->state), *d->protocol ? d->protocol : "-", d->generation_id,
	       *d->coordinator_id ? d->coordinator_id : "-");
	printf("members %zu\n", d->n_members);
	for (size_t i = 0; i < d->n_members; i++) {
		Rustmq__Controller__GroupMemberDescription *m = d->members[i];
		char parts[1024];
		qsort(m->assigned_partitions, m->n_assigned_partitions,
		      sizeof(*m->assigned_partitions), tp_cmp);
		format_partitions(parts, sizeof(parts), m->assigned_partitions,
				  m->n_assigned_partitions);
		printf("  %s\tclient %s\thost %s\tsession %" PRIu64 "ms\tpartitions %s%s%s%s\n",
		       m->member_id, *m->client_id ? m->client_id : "-",
		       *m->client_host ? m->client_host : "-", m->session_timeout_ms, parts,
		       *m->group_instance_id ? "\tinstance " : "", m->group_instance_id,
		       strcmp(m->member_id, d->leader_member_id) == 0 ? "\tleader" : "");
	}
	/* One row per committed partition, plus the partitions a member owns
	 * that the group never committed (kafka-consumer-groups prints those
	 * with CURRENT-OFFSET "-"), sorted by topic and partition. */
	size_t nowned = 0;
	for (size_t i = 0; i < d->n_members; i++)
		nowned += d->members[i]->n_assigned_partitions;
	struct offset_row *rows = xmalloc(sizeof(*rows) * (d->n_offsets + nowned));
	size_t nrows = 0;
	for (size_t i = 0; i < d->n_offsets; i++)
		if (d->offsets[i]->topic_partition)
			rows[nrows++] = (struct offset_row){d->offsets[i]->topic_partition, d->offsets[i]};
	size_t ncommitted = nrows;
	for (size_t i = 0; i < d->n_members; i++) {
		const Rustmq__Controller__GroupMemberDescription *m = d->members[i];
		for (size_t k = 0; k < m->n_assigned_partitions; k++) {
			const Rustmq__Common__TopicPartition *tp = m->assigned_partitions[k];
			bool seen = false;
			for (size_t j = 0; j < ncommitted && !seen; j++)
				seen = rows[j].tp->partition == tp->partition &&
				       strcmp(rows[j].tp->topic, tp->topic) == 0;
			if (!seen)
				rows[nrows++] = (struct offset_row){tp, NULL};
		}
	}
	qsort(rows, nrows, sizeof(*rows), offset_row_cmp);
	printf("offsets\n");
	for (size_t i = 0; i < nrows; i++) {
		const Rustmq__Controller__GroupPartitionOffset *o = rows[i].o;
		char committed[24] = "-", end[24] = "-", lag[24] = "-";
		if (o && o->committed_offset >= 0) {
			snprintf(committed, sizeof(committed), "%" PRId64, o->committed_offset);
			snprintf(lag, sizeof(lag), "%" PRId64, o->lag);
		}
		if (o)
			snprintf(end, sizeof(end), "%" PRIu64, o->log_end_offset);
		printf("  %s/%" PRIu32 "\tcommitted %s\tlog-end %s\tlag %s\tmember %s\n",
		       rows[i].tp->topic, rows[i].tp->partition, committed, end, lag,
		       owner_of(d, rows[i].tp->topic, rows[i].tp->partition));
	}
	free(rows);
	protobuf_c_message_free_unpacked(&r->base, NULL);
	return 0;
}

static int days_from_civil(int y, unsigned m, unsigned d)
{
	/* Howard Hinnant's days_from_civil: days since 1970-01-01. */
	y -= m <= 2;
	int era = (y >= 0 ? y : y - 399) / 400;
	unsigned yoe = (unsigned)(y - era * 400);
	unsigned doy = (153 * (m + (m > 2 ? -3 : 9)) + 2) / 5 + d - 1;
	unsigned doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
	return era * 146097 + (int)doe - 719468;
}

/*
 * --to-datetime: "@<unix-ms>", or ISO 8601 YYYY-MM-DD[THH:MM[:SS[.fff]]]
 * with Z or ±HH:MM, or without a zone meaning local time (as
 * kafka-consumer-groups reads it).  Returns 0 and *ms, or -1.
 */
static int parse_datetime(const char *s, uint64_t *ms)
{
	char err[64];
	if (s[0] == '@')
		return rmq_parse_uint(s + 1, 0, (uint64_t)INT64_MAX / 1000000, ms, err, sizeof(err)) < 0
			       ? -1 : 0;
	int y, mo, d, h = 0, mi = 0, sec = 0, n = 0;
	unsigned frac_ms = 0;
	if (sscanf(s, "%4d-%2d-%2d%n", &y, &mo, &d, &n) != 3 || n != 10)
		return -1;
	const char *p = s + n;
	if (*p == 'T' || *p == ' ') {
		int k = 0;
		if (sscanf(p + 1, "%2d:%2d%n", &h, &mi, &k) != 2 || k != 5)
			return -1;
		p += 1 + k;
		if (*p == ':') {
			if (sscanf(p + 1, "%2d%n", &sec, &k) != 1 || k != 2)
				return -1;
			p += 1 + k;
			if (*p == '.') {
				unsigned scale = 100;
				for (p++; *p >= '0' && *p <= '9'; p++, scale /= 10)
					frac_ms += (unsigned)(*p - '0') * scale;
			}
		}
	}
	if (mo < 1 || mo > 12 || d < 1 || d > 31 || h > 23 || mi > 59 || sec > 60 || y < 1970)
		return -1;
	int64_t t;
	if (*p == '\0') {
		struct tm tm = {.tm_year = y - 1900, .tm_mon = mo - 1, .tm_mday = d, .tm_hour = h,
				.tm_min = mi, .tm_sec = sec, .tm_isdst = -1};
		time_t lt = mktime(&tm);
		if (lt == (time_t)-1)
			return -1;
		t = (int64_t)lt;
	} else {
		int64_t off = 0;
		if (*p == 'Z' && p[1] == '\0') {
			off = 0;
		} else if ((*p == '+' || *p == '-') && strlen(p) == 6 && p[3] == ':') {
			int oh, om;
			if (sscanf(p + 1, "%2d:%2d", &oh, &om) != 2 || oh > 23 || om > 59)
				return -1;
			off = (*p == '+' ? 1 : -1) * (int64_t)(oh * 3600 + om * 60);
		} else {
			return -1;
		}
		t = (int64_t)days_from_civil(y, (unsigned)mo, (unsigned)d) * 86400 + h * 3600 +
		    mi * 60 + sec - off;
	}
	if (t < 0)
		return -1;
	*ms = (uint64_t)t * 1000 + frac_ms;
	return 0;
}

static int group_reset(int argc, char **argv)
{
	const char *topic, *offset_s, *datetime_s;
	uint64_t partition;
	bool to_earliest, to_latest, execute;
	const struct rmq_flag flags[] = {
		{"topic", RMQ_FLAG_STRING, &topic, "", "the topic whose committed offsets to move (required)", 0, 0, NULL},
		{"partition", RMQ_FLAG_UINT, &partition, "4294967295", "only this partition (default: every partition of the topic)", 0, 4294967295u, NULL},
		{"to-earliest", RMQ_FLAG_BOOL, &to_earliest, "false", "to each partition's log start offset", 0, 0, NULL},
		{"to-latest", RMQ_FLAG_BOOL, &to_latest, "false", "to each partition's end (high watermark): skip everything", 0, 0, NULL},
		{"to-offset", RMQ_FLAG_STRING, &offset_s, "", "to offset N", 0, 0, NULL},
		{"to-datetime", RMQ_FLAG_STRING, &datetime_s, "", "to the first record at or after a time: ISO 8601 (2026-01-31T12:00:00Z; no zone = local time) or @<unix-ms>", 0, 0, NULL},
		{"execute", RMQ_FLAG_BOOL, &execute, "false", "apply the reset; without it, only print what it would do (a dry run)", 0, 0, NULL},
	};
	const struct cmd_spec cs = {
		"group reset",
		"group reset GROUP --topic T [--partition N] (--to-earliest | --to-latest | --to-offset N | --to-datetime TIME) [--execute]",
		"Moves a consumer group's committed offsets for a topic.  Without --execute it is a dry\n"
		"run: it prints, per partition, the committed offset and the one it would become, and\n"
		"changes nothing (kafka-consumer-groups --reset-offsets).  The group must have no\n"
		"members: stop its consumers first.",
		flags, 7, 1, 1, false, false};
	int npos;
	parse_args(&cs, argc, argv, &npos);
	M.group = argv[1];
	if (!*topic)
		usage_error("--topic is required");
	int targets = to_earliest + to_latest + (*offset_s != '\0') + (*datetime_s != '\0');
	if (targets != 1)
		usage_error("give exactly one of --to-earliest, --to-latest, --to-offset, --to-datetime");
	uint64_t to_offset = 0, to_ms = 0;
	char err[128];
	if (*offset_s && rmq_parse_uint(offset_s, 0, UINT64_MAX - 1, &to_offset, err, sizeof(err)) < 0)
		usage_error("--to-offset '%s': want an offset (0, 1, ...)", offset_s);
	if (*datetime_s && parse_datetime(datetime_s, &to_ms) < 0)
		usage_error("--to-datetime '%s': want ISO 8601 (2026-01-31T12:00:00Z, "
			    "2026-01-31T12:00:00.250+01:00, 2026-01-31) or @<unix-ms>", datetime_s);
	connect_broker();
	C.topic = topic;
	uint32_t total = topic_partitions(topic);
	if (partition != 4294967295u && partition >= total)
		usage_error("--partition %" PRIu64 ": topic '%s' has partitions 0..%" PRIu32, partition,
			    topic, total - 1);
	uint32_t n = partition != 4294967295u ? 1 : total;
	Rustmq__Controller__OffsetResetSpec *sp = xmalloc(sizeof(*sp) * n);
	Rustmq__Controller__OffsetResetSpec **spp = xmalloc(sizeof(*spp) * n);
	Rustmq__Common__TopicPartition *tps = xmalloc(sizeof(*tps) * n);
	Google__Protobuf__Timestamp ts = GOOGLE__PROTOBUF__TIMESTAMP__INIT;
	ts.seconds = (int64_t)(to_ms / 1000);
	ts.nanos = (int32_t)(to_ms % 1000) * 1000000;
	for (uint32_t i = 0; i < n; i++) {
		rustmq__controller__offset_reset_spec__init(&sp[i]);
		rustmq__common__topic_partition__init(&tps[i]);
		tps[i].topic = (char *)topic;
		tps[i].partition = partition != 4294967295u ? (uint32_t)partition : i;
		sp[i].topic_partition = &tps[i];
		if (to_earliest) {
			sp[i].target_case = RUSTMQ__CONTROLLER__OFFSET_RESET_SPEC__TARGET_TO_EARLIEST;
			sp[i].to_earliest = true;
		} else if (to_latest) {
			sp[i].target_case = RUSTMQ__CONTROLLER__OFFSET_RESET_SPEC__TARGET_TO_LATEST;
			sp[i].to_latest = true;
		} else if (*offset_s) {
			sp[i].target_case = RUSTMQ__CONTROLLER__OFFSET_RESET_SPEC__TARGET_TO_OFFSET;
			sp[i].to_offset = to_offset;
		} else {
			sp[i].target_case = RUSTMQ__CONTROLLER__OFFSET_RESET_SPEC__TARGET_TO_TIMESTAMP;
			sp[i].to_timestamp = &ts;
		}
		spp[i] = &sp[i];
	}
	Rustmq__Controller__ResetGroupOffsetsRequest req =
		RUSTMQ__CONTROLLER__RESET_GROUP_OFFSETS_REQUEST__INIT;
	req.version = &api_v1;
	req.group_id = (char *)M.group;
	req.n_partitions = n;
	req.partitions = spp;
	req.dry_run = !execute;
	Rustmq__Controller__ResetGroupOffsetsResponse *r =
		PB_CALL("ResetGroupOffsets", "/rustmq.controller.AdminService/ResetGroupOffsets", &req,
			Rustmq__Controller__ResetGroupOffsetsResponse,
			rustmq__controller__reset_group_offsets_response__descriptor);
	free(sp);
	free(spp);
	free(tps);
	if (r->error_code)
		die_group("ResetGroupOffsets", r->error_code, r->error_message);
	size_t failed = 0, moved = 0;
	for (size_t i = 0; i < r->n_partitions; i++) {
		const Rustmq__Controller__OffsetResetResult *p = r->partitions[i];
		uint32_t pi = p->topic_partition ? p->topic_partition->partition : 0;
		char prev[24] = "-";
		if (p->previous_offset >= 0)
			snprintf(prev, sizeof(prev), "%" PRId64, p->previous_offset);
		if (p->error_code) {
			failed++;
			printf("%s/%" PRIu32 "\t%s -> error %s%s%s\n", topic, pi, prev,
			       ec_name(p->error_code), *p->error_message ? ": " : "", p->error_message);
		} else {
			moved++;
			printf("%s/%" PRIu32 "\t%s -> %" PRIu64 "\n", topic, pi, prev, p->new_offset);
		}
	}
	if (!execute)
		printf("dry run: nothing changed (add --execute to reset group %s)\n", M.group);
	else
		printf("reset group %s: %zu partition%s\n", M.group, moved, moved == 1 ? "" : "s");
	protobuf_c_message_free_unpacked(&r->base, NULL);
	if (failed)
		die("%zu partition%s could not be reset (see the errors above)", failed,
		    failed == 1 ? "" : "s");
	return 0;
}

static int group_delete(int argc, char **argv)
{
	const struct cmd_spec cs = {"group delete", "group delete GROUP [GROUP ...]",
				    "Deletes consumer groups and their committed offsets.  A group "
				    "must have no members:\nstop its consumers first.",
				    NULL, 0, 1, 1024, false, false};
	int npos;
	parse_args(&cs, argc, argv, &npos);
	connect_broker();
	Rustmq__Controller__DeleteGroupsRequest req = RUSTMQ__CONTROLLER__DELETE_GROUPS_REQUEST__INIT;
	req.version = &api_v1;
	req.n_group_ids = (size_t)npos;
	req.group_ids = argv + 1;
	Rustmq__Controller__DeleteGroupsResponse *r =
		PB_CALL("DeleteGroups", "/rustmq.controller.AdminService/DeleteGroups", &req,
			Rustmq__Controller__DeleteGroupsResponse,
			rustmq__controller__delete_groups_response__descriptor);
	if (r->error_code)
		die_code("DeleteGroups", NULL, r->error_code, r->error_message);
	int rc = 0;
	for (size_t i = 0; i < r->n_groups; i++) {
		const Rustmq__Controller__DeleteGroupResult *d = r->groups[i];
		if (d->error_code == 0) {
			printf("deleted group %s\n", d->group_id);
			continue;
		}
		rc = 1;
		fflush(stdout);
		if (d->error_code == EC_GROUP_NOT_EMPTY)
			fprintf(stderr, "rmq: group '%s' has active members: stop the group's consumers "
					"first (see them with: rmq group describe %s)\n",
				d->group_id, d->group_id);
		else if (d->error_code == EC_GROUP_ID_NOT_FOUND)
			fprintf(stderr, "rmq: no such group '%s' (see the groups with: rmq group list)\n",
				d->group_id);
		else
			fprintf(stderr, "rmq: DeleteGroups %s: %s%s%s\n", d->group_id,
				ec_name(d->error_code), *d->error_message ? ": " : "",
				d->error_message);
	}
	protobuf_c_message_free_unpacked(&r->base, NULL);
	return rc;
}

/* ---- cluster and health -------------------------------------------------------------------- */

static const char *broker_state(int s)
{
	const ProtobufCEnumValue *v =
		protobuf_c_enum_descriptor_get_value(&rustmq__common__broker_state__descriptor, s);
	return v ? v->name : "?";
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
				print_partition(t->partitions[k], NULL, NULL);
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
	const ProtobufCEnumValue *gv = protobuf_c_enum_descriptor_get_value(
		&grpc__health__v1__health_check_response__serving_status__descriptor, gr->status);
	bool ok = gr->status == GRPC__HEALTH__V1__HEALTH_CHECK_RESPONSE__SERVING_STATUS__SERVING;
	printf("grpc.health.v1\t%s\n", gv ? gv->name : "?");
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
	const ProtobufCEnumValue *bv = protobuf_c_enum_descriptor_get_value(
		&rustmq__broker__health_status__descriptor, br->status);
	ok = ok && br->status == RUSTMQ__BROKER__HEALTH_STATUS__HEALTH_STATUS_SERVING;
	printf("broker %s\t%s\t%s\tuptime %" PRIu64 "s\tversion %s\n", br->broker_id,
	       bv ? bv->name : "?", broker_state(br->broker_state), br->uptime_ms / 1000,
	       br->software_version);
	for (size_t i = 0; i < br->n_components; i++) {
		const Rustmq__Broker__ComponentHealth *c = br->components[i];
		const ProtobufCEnumValue *cv = protobuf_c_enum_descriptor_get_value(
			&rustmq__broker__health_status__descriptor, c->status);
		printf("  %s\t%s%s%s\n", c->name, cv ? cv->name : "?", *c->message ? "\t" : "",
		       c->message);
	}
	protobuf_c_message_free_unpacked(&br->base, NULL);
	if (!ok)
		fprintf(stderr, "rmq: the broker at %s is not SERVING\n", g.bootstrap);
	return ok ? 0 : 1;
}

/* ---- dispatch --------------------------------------------------------------------------------------- */

struct command {
	const char *name;
	int (*run)(int argc, char **argv);
	const char *about;
};

static const struct command topic_cmds[] = {
	{"create", topic_create, "create a topic: rmq topic create NAME [--partitions N] [--config k=v ...]"},
	{"list", topic_list, "list the topics"},
	{"describe", topic_describe, "partitions, leaders, shards and configs of a topic"},
	{"delete", topic_delete, "delete a topic"},
	{"alter", topic_alter, "set topic configs: rmq topic alter NAME --config k=v ..."},
};

static const struct command group_cmds[] = {
	{"list", group_list, "list the consumer groups and their states"},
	{"describe", group_describe, "members, assignment, committed offsets and lag of a group"},
	{"reset", group_reset, "move committed offsets: rmq group reset G --topic T --to-earliest [--execute]"},
	{"delete", group_delete, "delete groups and their committed offsets"},
};

static int cmd_topic(int argc, char **argv);
static int cmd_group(int argc, char **argv);

static const struct command commands[] = {
	{"topic", cmd_topic, "create, list, describe, delete and alter topics"},
	{"produce", cmd_produce, "send stdin lines as records: rmq produce TOPIC"},
	{"consume", cmd_consume, "print records: rmq consume TOPIC --offset earliest [--group G]"},
	{"cluster", cmd_cluster, "brokers, controller, topics, partitions and leaders"},
	{"health", cmd_health, "is the broker serving? (exit 0 when SERVING)"},
	{"group", cmd_group, "list, describe, reset and delete consumer groups"},
};

static void list_commands(FILE *out, const char *prefix, const struct command *cmds, size_t n)
{
	for (size_t i = 0; i < n; i++)
		fprintf(out, "  %s%-10s %s\n", prefix, cmds[i].name, cmds[i].about);
}

static void main_usage(FILE *out)
{
	fprintf(out, "usage: rmq COMMAND [ARGS] [--bootstrap host:port]\n\n"
		     "The rmq command-line client (the RustMQ protocol over gRPC).\n\ncommands:\n");
	list_commands(out, "", commands, sizeof(commands) / sizeof(commands[0]));
	fprintf(out, "\nThe broker is --bootstrap, else $RMQ_BOOTSTRAP, else %s.\n"
		     "rmq COMMAND --help describes each command.  Exit status: 0 ok, 1 error, 2 usage.\n",
		DEFAULT_BOOTSTRAP);
}

static int dispatch(const struct command *cmds, size_t n, const char *what, int argc, char **argv)
{
	for (size_t i = 0; i < n; i++)
		if (strcmp(argv[0], cmds[i].name) == 0)
			return cmds[i].run(argc, argv);
	fprintf(stderr, "rmq: unknown %s '%s' (see rmq --help)\n", what, argv[0]);
	return EXIT_USAGE;
}

static int cmd_topic(int argc, char **argv)
{
	size_t n = sizeof(topic_cmds) / sizeof(topic_cmds[0]);
	if (argc < 2 || strcmp(argv[1], "--help") == 0 || strcmp(argv[1], "-h") == 0) {
		FILE *out = argc < 2 ? stderr : stdout;
		fprintf(out, "usage: rmq topic SUBCOMMAND ...\n\nsubcommands:\n");
		list_commands(out, "", topic_cmds, n);
		return argc < 2 ? EXIT_USAGE : 0;
	}
	return dispatch(topic_cmds, n, "topic subcommand", argc - 1, argv + 1);
}

static int cmd_group(int argc, char **argv)
{
	size_t n = sizeof(group_cmds) / sizeof(group_cmds[0]);
	if (argc < 2 || strcmp(argv[1], "--help") == 0 || strcmp(argv[1], "-h") == 0) {
		FILE *out = argc < 2 ? stderr : stdout;
		fprintf(out, "usage: rmq group SUBCOMMAND ...\n\nsubcommands:\n");
		list_commands(out, "", group_cmds, n);
		fprintf(out, "\nTo consume as a member of a group: rmq consume TOPIC --group GROUP\n");
		return argc < 2 ? EXIT_USAGE : 0;
	}
	return dispatch(group_cmds, n, "group subcommand", argc - 1, argv + 1);
}

int main(int argc, char **argv)
{
	rmq_log_set_level(RMQ_LOG_ERROR);
	signal(SIGPIPE, SIG_IGN);
	g.bootstrap = getenv("RMQ_BOOTSTRAP");
	if (!g.bootstrap || !*g.bootstrap)
		g.bootstrap = DEFAULT_BOOTSTRAP;
	if (argc < 2) {
		main_usage(stderr);
		return EXIT_USAGE;
	}
	if (strcmp(argv[1], "--help") == 0 || strcmp(argv[1], "-h") == 0 ||
	    strcmp(argv[1], "help") == 0) {
		main_usage(stdout);
		return 0;
	}
	if (strcmp(argv[1], "--version") == 0) {
		printf("rmq %s\n", RMQ_VERSION);
		return 0;
	}
	int rc = dispatch(commands, sizeof(commands) / sizeof(commands[0]), "command", argc - 1,
			  argv + 1);
	finish(rc);
	return rc;
}
