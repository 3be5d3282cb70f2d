/* SPDX-License-Identifier: Apache-2.0 */
/*
 * topic.c - rmq topic create|list|describe|delete|alter (AdminService), and
 * what the other commands ask about a topic: its partition count
 * (GetTopicMetadata) and each partition's offsets (ListOffsets).
 */
#include "cli.h"
#include "consume.h"

#include "client/consumer.pb-c.h"
#include "client/metadata.pb-c.h"
#include "controller/admin.pb-c.h"

#include <inttypes.h>
#include <stdlib.h>
#include <string.h>

/* ---- topic metadata ------------------------------------------------------ */

uint32_t topic_partitions(const char *topic)
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
		sleep_ns(100 * MS);
	}
}

void topic_check_partition(const char *topic, uint64_t partition, uint32_t total)
{
	if (partition != PARTITION_ANY && partition >= total)
		usage_error("--partition %" PRIu64 ": topic '%s' has partitions 0..%" PRIu32, partition,
			    topic, total - 1);
}

void topic_print_partition(const Rustmq__Common__PartitionMetadata *p, const uint64_t *start,
			   const uint64_t *end)
{
	uint32_t i = p->topic_partition ? p->topic_partition->partition : 0;
	printf("  partition %" PRIu32 "\tleader %s\tshard %" PRIu32 "\tepoch %" PRIu32
	       "\toffsets %" PRIu64 "..%" PRIu64 "\n",
	       i, p->leader_id && *p->leader_id ? p->leader_id : "-", p->shard, p->leader_epoch,
	       start ? start[i] : p->log_start_offset, end ? end[i] : p->high_watermark);
}

/* The log start offset and high watermark of partitions 0..n-1 of topic
 * (heap arrays for the caller to free; left untouched when n is 0). */
static void partition_bounds(const char *topic, uint32_t n, uint64_t **start, uint64_t **end)
{
	if (n == 0)
		return;
	struct consumer c = {.topic = topic, .nparts = n};
	c.parts = xmalloc(sizeof(*c.parts) * n);
	*start = xmalloc(sizeof(**start) * n);
	*end = xmalloc(sizeof(**end) * n);
	for (int round = 0; round < 2; round++) {
		for (uint32_t i = 0; i < n; i++)
			c.parts[i] = (struct cpart){i, UINT64_MAX};
		consumer_list_offsets(&c, round == 0 ? RUSTMQ__CLIENT__OFFSET_SPEC__OFFSET_SPEC_EARLIEST
						     : RUSTMQ__CLIENT__OFFSET_SPEC__OFFSET_SPEC_LATEST, 0);
		for (uint32_t i = 0; i < n; i++)
			(round == 0 ? *start : *end)[i] = c.parts[i].offset;
	}
	free(c.parts);
}

/* ---- topic commands ------------------------------------------------------ */

/* --config number i, split at its '=' (parse_args checked there is one):
 * returns the name, a heap copy to free, and *value points into it. */
static char *config_split(size_t i, char **value)
{
	char *kv = xstrdup(cli.configs[i]);
	char *eq = strchr(kv, '=');
	*eq = '\0';
	*value = eq + 1;
	return kv;
}

static Rustmq__Common__ConfigEntry *config_entries(Rustmq__Common__ConfigEntry **ptrs)
{
	Rustmq__Common__ConfigEntry *e = xmalloc(sizeof(*e) * (cli.nconfigs ? cli.nconfigs : 1));
	for (size_t i = 0; i < cli.nconfigs; i++) {
		rustmq__common__config_entry__init(&e[i]);
		e[i].name = config_split(i, &e[i].value);
		ptrs[i] = &e[i];
	}
	return e;
}

static void free_entries(Rustmq__Common__ConfigEntry *e)
{
	for (size_t i = 0; i < cli.nconfigs; i++)
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
	t.n_configs = cli.nconfigs;
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
		topic_print_partition(t->partitions[i], in ? start : NULL, in ? end : NULL);
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
	if (cli.nconfigs == 0)
		usage_error("nothing to alter: give at least one --config k=v");
	connect_broker();
	Rustmq__Controller__AlterableConfig cfgs[CONFIGS_MAX], *ptrs[CONFIGS_MAX];
	for (size_t i = 0; i < cli.nconfigs; i++) {
		rustmq__controller__alterable_config__init(&cfgs[i]);
		cfgs[i].name = config_split(i, &cfgs[i].value);
		cfgs[i].op = RUSTMQ__CONTROLLER__ALTER_CONFIG_OP__ALTER_CONFIG_OP_SET;
		ptrs[i] = &cfgs[i];
	}
	Rustmq__Controller__ConfigResource res = RUSTMQ__CONTROLLER__CONFIG_RESOURCE__INIT;
	res.type = RUSTMQ__CONTROLLER__CONFIG_RESOURCE_TYPE__CONFIG_RESOURCE_TYPE_TOPIC;
	res.name = (char *)name;
	Rustmq__Controller__AlterConfigsResource ar = RUSTMQ__CONTROLLER__ALTER_CONFIGS_RESOURCE__INIT;
	ar.resource = &res;
	ar.n_configs = cli.nconfigs;
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
	for (size_t i = 0; i < cli.nconfigs; i++)
		free(cfgs[i].name);
	if (r->error_code)
		die_code("AlterConfigs", name, r->error_code, r->error_message);
	if (r->n_resources >= 1 && r->resources[0]->error_code)
		die_code("AlterConfigs", name, r->resources[0]->error_code,
			 r->resources[0]->error_message);
	printf("altered topic %s (%zu config%s)\n", name, cli.nconfigs, cli.nconfigs == 1 ? "" : "s");
	protobuf_c_message_free_unpacked(&r->base, NULL);
	return 0;
}

static const struct command topic_cmds[] = {
	{"create", topic_create, "create a topic: rmq topic create NAME [--partitions N] [--config k=v ...]"},
	{"list", topic_list, "list the topics"},
	{"describe", topic_describe, "partitions, leaders, shards and configs of a topic"},
	{"delete", topic_delete, "delete a topic"},
	{"alter", topic_alter, "set topic configs: rmq topic alter NAME --config k=v ..."},
};

int cmd_topic(int argc, char **argv)
{
	return run_subcommand("topic", topic_cmds, sizeof(topic_cmds) / sizeof(topic_cmds[0]), NULL,
			      argc, argv);
}
