/* SPDX-License-Identifier: Apache-2.0 */
/*
 * consume.c - rmq consume: its flags, where each partition starts
 * (ListOffsets, query.h), then the consumer loop (consumer.h), alone or as
 * a member of a consumer group (--group).
 */
#include "cli.h"
#include "commands.h"
#include "consumer.h"
#include "query.h"

#include "client/consumer.pb-c.h"

#include <stdlib.h>
#include <string.h>

int cmd_consume(int argc, char **argv)
{
	struct consumer c = {0};
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
	c.topic = argv[1];
	c.json = strcmp(format_s, "json") == 0;
	c.max = max;
	bool grouped = *group_s != '\0';
	if (grouped && partition != PARTITION_ANY)
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
	uint32_t total = topic_partitions(c.topic);
	consumer_catch_signals();
	if (grouped) {
		const struct consumer_group_opts go = {
			.group = group_s,
			.assignor = assignor_s,
			.session_ns = session_ns,
			.commit_ns = commit_ns,
			.reset_spec = spec,
			.reset_at = at,
		};
		int rc = consumer_run_group(&c, timeout_ns, &go);
		free(c.parts);
		free(c.scratch);
		return rc;
	}
	topic_check_partition(c.topic, partition, total);
	c.nparts = partition != PARTITION_ANY ? 1 : total;
	c.parts = xmalloc(sizeof(*c.parts) * c.nparts);
	for (uint32_t i = 0; i < c.nparts; i++) {
		c.parts[i].partition = partition != PARTITION_ANY ? (uint32_t)partition : i;
		c.parts[i].offset = spec < 0 ? at : UINT64_MAX;
	}
	if (spec >= 0)
		topic_list_offsets(c.topic, c.parts, c.nparts, spec, at);
	int rc = consumer_run(&c, timeout_ns);
	free(c.parts);
	free(c.scratch);
	return rc;
}
