/* SPDX-License-Identifier: Apache-2.0 */
/*
 * group.c - rmq group list|describe|reset|delete: consumer groups through
 * the AdminService (the member side of a group is member.c, driven by
 * consumer.c), and the --to-datetime times `group reset` reads.
 */
#include "cli.h"
#include "commands.h"
#include "query.h"

#include "controller/admin.pb-c.h"
#include "core/util.h"

#include <inttypes.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <time.h>

/* ---- list and describe --------------------------------------------------- */

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
	char *copy = xstrdup(state_s);
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
	const char *group = argv[1];
	connect_broker();
	char *ids[1] = {(char *)group};
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
		die_group("DescribeGroups", group, NULL, r->error_code, r->error_message);
	if (r->n_groups < 1)
		die("DescribeGroups: the broker answered nothing for '%s'", group);
	Rustmq__Controller__GroupDescription *d = r->groups[0];
	if (d->error_code)
		die_group("DescribeGroups", group, NULL, d->error_code, d->error_message);
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

/* ---- --to-datetime ------------------------------------------------------- */

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

/* ---- reset and delete ---------------------------------------------------- */

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
	const char *group = argv[1];
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
	uint32_t total = topic_partitions(topic);
	topic_check_partition(topic, partition, total);
	uint32_t n = partition != PARTITION_ANY ? 1 : total;
	Rustmq__Controller__OffsetResetSpec *sp = xmalloc(sizeof(*sp) * n);
	Rustmq__Controller__OffsetResetSpec **spp = xmalloc(sizeof(*spp) * n);
	Rustmq__Common__TopicPartition *tps = xmalloc(sizeof(*tps) * n);
	Google__Protobuf__Timestamp ts = pb_timestamp(to_ms);
	for (uint32_t i = 0; i < n; i++) {
		rustmq__controller__offset_reset_spec__init(&sp[i]);
		rustmq__common__topic_partition__init(&tps[i]);
		tps[i].topic = (char *)topic;
		tps[i].partition = partition != PARTITION_ANY ? (uint32_t)partition : i;
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
	req.group_id = (char *)group;
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
		die_group("ResetGroupOffsets", group, topic, r->error_code, r->error_message);
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
		printf("dry run: nothing changed (add --execute to reset group %s)\n", group);
	else
		printf("reset group %s: %zu partition%s\n", group, moved, moved == 1 ? "" : "s");
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
		if (!report_group_error(d->group_id, d->error_code))
			fprintf(stderr, "rmq: DeleteGroups %s: %s%s%s\n", d->group_id,
				ec_name(d->error_code), *d->error_message ? ": " : "",
				d->error_message);
	}
	protobuf_c_message_free_unpacked(&r->base, NULL);
	return rc;
}

static const struct command group_cmds[] = {
	{"list", group_list, "list the consumer groups and their states"},
	{"describe", group_describe, "members, assignment, committed offsets and lag of a group"},
	{"reset", group_reset, "move committed offsets: rmq group reset G --topic T --to-earliest [--execute]"},
	{"delete", group_delete, "delete groups and their committed offsets"},
};

int cmd_group(int argc, char **argv)
{
	return run_subcommand("group", group_cmds, RMQ_ARRAY_SIZE(group_cmds),
			      "\nTo consume as a member of a group: rmq consume TOPIC --group GROUP\n",
			      argc, argv);
}
