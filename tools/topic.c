/* SPDX-License-Identifier: Apache-2.0 */
/*
 * topic.c - rmq topic create|list|describe|delete|alter (AdminService);
 * describe shows each partition's offsets (query.h).
 */
#include "cli.h"
#include "commands.h"
#include "query.h"

#include "controller/admin.pb-c.h"
#include "core/util.h"

#include <inttypes.h>
#include <stdlib.h>
#include <string.h>

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
	uint64_t partitions, rf;
	const struct rmq_flag flags[] = {
		{"partitions", RMQ_FLAG_UINT, &partitions, "1", "partitions of the topic", 1, 65536, NULL},
		{"replication-factor", RMQ_FLAG_UINT, &rf, "1", "replicas of each partition, on as many brokers (at most the running brokers)", 1, 8, NULL},
	};
	const struct cmd_spec cs = {"topic create",
				    "topic create NAME [--partitions N] [--replication-factor N] [--config k=v ...]",
				    "Creates a topic.", flags, 2, 1, 1, true, false};
	int npos;
	parse_args(&cs, argc, argv, &npos);
	const char *name = argv[1];
	connect_broker();

	Rustmq__Common__ConfigEntry *ptrs[CONFIGS_MAX];
	Rustmq__Common__ConfigEntry *entries = config_entries(ptrs);
	Rustmq__Controller__CreatableTopic t = RUSTMQ__CONTROLLER__CREATABLE_TOPIC__INIT;
	t.name = (char *)name;
	t.partitions = (uint32_t)partitions;
	t.replication_factor = (uint32_t)rf;
	t.n_configs = cli.nconfigs;
	t.configs = ptrs;
	Rustmq__Controller__CreatableTopic *tp[1] = {&t};
	Rustmq__Controller__CreateTopicsRequest req = RUSTMQ__CONTROLLER__CREATE_TOPICS_REQUEST__INIT;
	req.version = &api_v1;
	req.n_topics = 1;
	req.topics = tp;
	Rustmq__Controller__CreateTopicsResponse *r;
	for (;;) {
		r = PB_CALL("CreateTopics", "/rustmq.controller.AdminService/CreateTopics", &req,
			    Rustmq__Controller__CreateTopicsResponse,
			    rustmq__controller__create_topics_response__descriptor);
		if (r->n_topics < 1 ||
		    !follow_controller(r->topics[0]->error_code, r->topics[0]->error_message))
			break;
		protobuf_c_message_free_unpacked(&r->base, NULL);
	}
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
		die_code("DescribeTopics", name, EC(TOPIC_NOT_FOUND), "");
	const Rustmq__Common__TopicMetadata *t = r->topics[0];
	if (t->error_code)
		die_code("DescribeTopics", name, t->error_code, "");
	printf("topic %s\tid %s\tpartitions %zu\treplication %" PRIu32 "\n", t->name, t->topic_id,
	       t->n_partitions, t->config ? t->config->replication_factor : 1);
	uint64_t *start = NULL, *end = NULL;
	topic_bounds(name, (uint32_t)t->n_partitions, &start, &end);
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
	Rustmq__Controller__DeleteTopicsResponse *r;
	for (;;) {
		r = PB_CALL("DeleteTopics", "/rustmq.controller.AdminService/DeleteTopics", &req,
			    Rustmq__Controller__DeleteTopicsResponse,
			    rustmq__controller__delete_topics_response__descriptor);
		if (r->n_topics < 1 ||
		    !follow_controller(r->topics[0]->error_code, r->topics[0]->error_message))
			break;
		protobuf_c_message_free_unpacked(&r->base, NULL);
	}
	if (r->error_code)
		die_code("DeleteTopics", name, r->error_code, r->error_message);
	if (r->n_topics >= 1 && r->topics[0]->error_code)
		die_code("DeleteTopics", name, r->topics[0]->error_code, r->topics[0]->error_message);
	printf("deleted topic %s\n", name);
	protobuf_c_message_free_unpacked(&r->base, NULL);
	return 0;
}

/* ControllerBrokerService.CreatePartitions: the topic grows to total. */
static void topic_grow(const char *name, uint32_t total)
{
	Rustmq__Controller__CreatePartitionsTopic t = RUSTMQ__CONTROLLER__CREATE_PARTITIONS_TOPIC__INIT;
	t.topic = (char *)name;
	t.new_total_count = total;
	Rustmq__Controller__CreatePartitionsTopic *tp[1] = {&t};
	Rustmq__Controller__CreatePartitionsRequest req = RUSTMQ__CONTROLLER__CREATE_PARTITIONS_REQUEST__INIT;
	req.version = &api_v1;
	req.n_topics = 1;
	req.topics = tp;
	Rustmq__Controller__CreatePartitionsResponse *r =
		PB_CALL("CreatePartitions", "/rustmq.controller.ControllerBrokerService/CreatePartitions",
			&req, Rustmq__Controller__CreatePartitionsResponse,
			rustmq__controller__create_partitions_response__descriptor);
	if (r->error_code)
		die_code("CreatePartitions", name, r->error_code, r->error_message);
	if (r->n_topics < 1)
		die("CreatePartitions: the broker answered no result for '%s'", name);
	if (r->topics[0]->error_code)
		die_code("CreatePartitions", name, r->topics[0]->error_code,
			 r->topics[0]->error_message);
	printf("topic %s has %" PRIu32 " partitions (%zu new)\n", name, total,
	       r->topics[0]->n_partitions);
	protobuf_c_message_free_unpacked(&r->base, NULL);
}

static int topic_alter(int argc, char **argv)
{
	uint64_t partitions;
	const struct rmq_flag flags[] = {
		{"partitions", RMQ_FLAG_UINT, &partitions, "0", "grow the topic to this many partitions (0 = keep them)", 0, 65536, NULL},
	};
	const struct cmd_spec cs = {"topic alter",
				    "topic alter NAME [--partitions N] [--config k=v ...]",
				    "Grows a topic's partitions, sets topic configs.", flags, 1, 1, 1,
				    true, false};
	int npos;
	parse_args(&cs, argc, argv, &npos);
	const char *name = argv[1];
	if (cli.nconfigs == 0 && partitions == 0)
		usage_error("nothing to alter: give --partitions N or at least one --config k=v");
	connect_broker();
	if (partitions)
		topic_grow(name, (uint32_t)partitions);
	if (cli.nconfigs == 0)
		return 0;
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
	Rustmq__Controller__AlterConfigsResponse *r;
	for (;;) {
		r = PB_CALL("AlterConfigs", "/rustmq.controller.AdminService/AlterConfigs", &req,
			    Rustmq__Controller__AlterConfigsResponse,
			    rustmq__controller__alter_configs_response__descriptor);
		if (r->n_resources < 1 || !follow_controller(r->resources[0]->error_code,
							     r->resources[0]->error_message))
			break;
		protobuf_c_message_free_unpacked(&r->base, NULL);
	}
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
	{"create", topic_create, "create a topic: rmq topic create NAME [--partitions N] [--replication-factor N] [--config k=v ...]"},
	{"list", topic_list, "list the topics"},
	{"describe", topic_describe, "partitions, leaders, shards and configs of a topic"},
	{"delete", topic_delete, "delete a topic"},
	{"alter", topic_alter, "grow partitions, set configs: rmq topic alter NAME [--partitions N] [--config k=v ...]"},
};

int cmd_topic(int argc, char **argv)
{
	return run_subcommand("topic", topic_cmds, RMQ_ARRAY_SIZE(topic_cmds), NULL,
			      argc, argv);
}
