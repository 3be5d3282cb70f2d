/* SPDX-License-Identifier: Apache-2.0 */
/*
 * rmq - the command-line client: topics, produce from stdin, consume to
 * stdout, cluster and health, over gRPC (the RustMQ protocol).
 *
 *   rmq topic create|list|describe|delete|alter ...   AdminService
 *   rmq produce TOPIC    stdin lines ─► ProduceBatch (per partition, up to
 *                        1000 records / 1 MiB each, one in flight per
 *                        partition so a partition keeps the input order)
 *   rmq consume TOPIC    ListOffsets ─► Fetch long polls ─► stdout
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

/* Start offsets through ListOffsets: spec EARLIEST, LATEST or TIMESTAMP. */
static void list_offsets(int spec, uint64_t at_ms)
{
	Rustmq__Client__ListOffsetsPartition *lp = xmalloc(sizeof(*lp) * C.nparts);
	Rustmq__Client__ListOffsetsPartition **lpp = xmalloc(sizeof(*lpp) * C.nparts);
	Rustmq__Common__TopicPartition *tps = xmalloc(sizeof(*tps) * C.nparts);
	Google__Protobuf__Timestamp ts = GOOGLE__PROTOBUF__TIMESTAMP__INIT;
	ts.seconds = (int64_t)(at_ms / 1000);
	ts.nanos = (int32_t)(at_ms % 1000) * 1000000;
	for (uint32_t i = 0; i < C.nparts; i++) {
		rustmq__client__list_offsets_partition__init(&lp[i]);
		rustmq__common__topic_partition__init(&tps[i]);
		tps[i].topic = (char *)C.topic;
		tps[i].partition = C.parts[i].partition;
		lp[i].topic_partition = &tps[i];
		lp[i].spec = (Rustmq__Client__OffsetSpec)spec;
		if (spec == RUSTMQ__CLIENT__OFFSET_SPEC__OFFSET_SPEC_TIMESTAMP)
			lp[i].timestamp = &ts;
		lpp[i] = &lp[i];
	}
	Rustmq__Client__ListOffsetsRequest req = RUSTMQ__CLIENT__LIST_OFFSETS_REQUEST__INIT;
	req.version = &api_v1;
	req.client_id = "rmq";
	req.n_partitions = C.nparts;
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
		for (uint32_t k = 0; k < C.nparts; k++) {
			if (C.parts[k].partition != p)
				continue;
			if (pr->error_code == EC_OFFSET_NOT_AVAILABLE &&
			    spec == RUSTMQ__CLIENT__OFFSET_SPEC__OFFSET_SPEC_TIMESTAMP)
				need_latest = true; /* nothing at or after the time yet */
			else if (pr->error_code)
				die_code("ListOffsets", C.topic, pr->error_code, pr->error_message);
			else
				C.parts[k].offset = pr->offset;
		}
	}
	protobuf_c_message_free_unpacked(&r->base, NULL);
	free(lp);
	free(lpp);
	free(tps);
	if (need_latest) {
		/* Those partitions start at LATEST; the others keep theirs. */
		struct cpart *saved = xmalloc(sizeof(*saved) * C.nparts);
		memcpy(saved, C.parts, sizeof(*saved) * C.nparts);
		list_offsets(RUSTMQ__CLIENT__OFFSET_SPEC__OFFSET_SPEC_LATEST, 0);
		for (uint32_t k = 0; k < C.nparts; k++)
			if (saved[k].offset != UINT64_MAX)
				C.parts[k].offset = saved[k].offset;
		free(saved);
	}
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

static int cmd_consume(int argc, char **argv)
{
	const char *offset_s, *format_s;
	uint64_t partition, max, timeout_ns;
	const struct rmq_flag flags[] = {
		{"offset", RMQ_FLAG_STRING, &offset_s, "latest", "where to start: earliest, latest, an offset N, or @<unix-ms>", 0, 0, NULL},
		{"partition", RMQ_FLAG_UINT, &partition, "4294967295", "read one partition (default: all, merged)", 0, 4294967295u, NULL},
		{"max", RMQ_FLAG_UINT, &max, "0", "stop after N records (0 = no limit)", 0, 0, NULL},
		{"format", RMQ_FLAG_CHOICE, &format_s, "plain", "plain: each value and a newline; json: one object per record", 0, 0, "plain|json"},
		{"timeout", RMQ_FLAG_DURATION, &timeout_ns, "0s", "stop when no record arrives for this long (0s = wait forever)", 0, 0, NULL},
	};
	const struct cmd_spec cs = {
		"consume", "consume TOPIC [--offset earliest|latest|N|@ms] [--partition N] [--max N] [--format plain|json] [--timeout DURATION]",
		"Prints the records of a topic (all partitions merged) on stdout.", flags, 5, 1, 1,
		false, false};
	int npos;
	parse_args(&cs, argc, argv, &npos);
	C.topic = argv[1];
	C.json = strcmp(format_s, "json") == 0;
	C.max = max;
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

	struct sigaction sa = {.sa_handler = on_sigint};
	sigaction(SIGINT, &sa, NULL);
	sigaction(SIGTERM, &sa, NULL);
	bool progress = isatty(2) && !isatty(1);
	uint64_t next_progress = 0;

	Rustmq__Client__FetchPartition *fp = xmalloc(sizeof(*fp) * C.nparts);
	Rustmq__Client__FetchPartition **fpp = xmalloc(sizeof(*fpp) * C.nparts);
	Rustmq__Common__TopicPartition *tps = xmalloc(sizeof(*tps) * C.nparts);
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
		d.seconds = (int64_t)(wait / NS);
		d.nanos = (int32_t)(wait % NS);
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
			&rustmq__client__fetch_response__descriptor, wait + CALL_TIMEOUT_NS);
		if (r->error_code)
			die_code("Fetch", C.topic, r->error_code, r->error_message);
		uint64_t before = C.got;
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
	free(fp);
	free(fpp);
	free(tps);
	free(C.parts);
	free(C.scratch);
	return 0;
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

static int cmd_topic(int argc, char **argv);
static int cmd_group(int argc, char **argv);

static const struct command commands[] = {
	{"topic", cmd_topic, "create, list, describe, delete and alter topics"},
	{"produce", cmd_produce, "send stdin lines as records: rmq produce TOPIC"},
	{"consume", cmd_consume, "print records: rmq consume TOPIC --offset earliest"},
	{"cluster", cmd_cluster, "brokers, controller, topics, partitions and leaders"},
	{"health", cmd_health, "is the broker serving? (exit 0 when SERVING)"},
	{"group", cmd_group, "consumer groups (not served yet)"},
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
	(void)argc;
	(void)argv;
	fprintf(stderr, "rmq: consumer groups are not served by rmqd yet (JoinGroup, CommitOffsets "
			"... answer UNIMPLEMENTED); use rmq consume --offset instead\n");
	return 1;
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
