/* SPDX-License-Identifier: Apache-2.0 */
/*
 * cli.h - what the files of the rmq command-line client share.
 *
 *   rmq.c      main, the global options, argument parsing, dispatch, the
 *              error and exit helpers, protobuf-c calls; cluster, health
 *   topic.c    rmq topic ...; a topic's partition count and bounds
 *   produce.c  rmq produce
 *   consume.c  rmq consume: a consumer's positions, ListOffsets, Fetch, output
 *   member.c   rmq consume --group: the consumer group member's loop
 *              (consume.h declares what these two and topic.c share)
 *   group.c    rmq group ...
 *
 * The one piece of state they share is `cli`, the options every command
 * takes and the connection; each command keeps its own state in its file.
 * This is a program, not a library: the helpers keep the short names
 * (die, usage_error, PB_CALL) that make the commands read as a script.
 *
 * The die* functions print one line on stderr, close the connection and
 * exit 1; usage_error exits 2.  None of them returns.
 */
#ifndef RMQ_TOOLS_CLI_H
#define RMQ_TOOLS_CLI_H

#include "rpc.h"

#include "common/metadata.pb-c.h"
#include "core/flags.h"

#include <protobuf-c/protobuf-c.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>

#define NS 1000000000ULL
#define MS 1000000ULL
#define CALL_TIMEOUT_NS (30 * NS)

#define EXIT_USAGE 2

#define CONFIGS_MAX 64

/* The --partition default: none given. */
#define PARTITION_ANY 4294967295u

/* The broker's error codes (common/errors.proto) more than one file names. */
#define EC_TOPIC_NOT_FOUND 9
#define EC_GROUP_ID_NOT_FOUND 30
#define EC_GROUP_NOT_EMPTY 54

/* ---- rmq.c: options, errors, calls --------------------------------------- */

struct cli {
	const char *cmd;            /* "topic create", for usage errors */
	const char *bootstrap;
	char host[256];
	uint16_t port;
	struct rmq_rpc *rpc;        /* NULL until connect_broker() */
	bool verbose;               /* -v */
	const char *configs[CONFIGS_MAX]; /* --config k=v, as given */
	size_t nconfigs;
};

extern struct cli cli;

/* Every request's `version` field. */
extern Rustmq__Common__ApiVersion api_v1;

__attribute__((format(printf, 1, 2), noreturn)) void die(const char *fmt, ...);
/* "rmq CMD: ... (see rmq CMD --help)", exit 2. */
__attribute__((format(printf, 1, 2), noreturn)) void usage_error(const char *fmt, ...);
/* The broker's error `code` for the call `what`, naming the fix when we
 * know one (topic, when not NULL, is the topic the call was about). */
__attribute__((noreturn)) void die_code(const char *what, const char *topic, int code,
					const char *msg);
/* die_code, but first the group errors whose fix we know. */
__attribute__((noreturn)) void die_group(const char *what, const char *group, const char *topic,
					 int code, const char *msg);
/* Prints the line for EC_GROUP_ID_NOT_FOUND or EC_GROUP_NOT_EMPTY of
 * group and returns true; false (nothing printed) for any other code. */
bool report_group_error(const char *group, int code);
/* The name of a broker error code ("TOPIC_NOT_FOUND"); static storage. */
const char *ec_name(int code);

void *xmalloc(size_t n);
char *xstrdup(const char *s);
void sleep_ns(uint64_t ns);

Google__Protobuf__Duration pb_duration(uint64_t ns);
Google__Protobuf__Timestamp pb_timestamp(uint64_t ms);

/* Connects cli.rpc to cli.bootstrap, or dies saying how to fix it. */
void connect_broker(void);

/* One protobuf-c unary call.  Returns the unpacked response (free with
 * protobuf_c_message_free_unpacked) or dies. */
ProtobufCMessage *pb_call(const char *what, const char *path, const ProtobufCMessage *req,
			  const ProtobufCMessageDescriptor *resp_desc, uint64_t timeout_ns);

#define PB_CALL(what, path, req, T, desc)                                                      \
	((T *)pb_call(what, path, &(req)->base, &desc, CALL_TIMEOUT_NS))

/* A command's flags and positionals. */
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

/* Parses argv (argv[0] is the subcommand) against cs; the positionals end
 * up at argv[1..*npos].  Exits 0 for --help, 2 on a usage error. */
void parse_args(const struct cmd_spec *cs, int argc, char **argv, int *npos);

/* A command or subcommand: run gets argv from its own name on and returns
 * the exit status. */
struct command {
	const char *name;
	int (*run)(int argc, char **argv);
	const char *about;
};

/* Runs `rmq NAME SUBCOMMAND ...` from cmds (argv[0] is NAME); without a
 * subcommand or with --help prints them, and `footer` when not NULL. */
int run_subcommand(const char *name, const struct command *cmds, size_t n, const char *footer,
		   int argc, char **argv);

/* ---- the commands -------------------------------------------------------- */

int cmd_topic(int argc, char **argv);   /* topic.c */
int cmd_produce(int argc, char **argv); /* produce.c */
int cmd_consume(int argc, char **argv); /* consume.c */
int cmd_group(int argc, char **argv);   /* group.c */

/* ---- topic.c: topic metadata --------------------------------------------- */

/* Partition count of topic; dies when it does not exist.  A topic just
 * created may take a moment to show its partitions: waits up to 5 s. */
uint32_t topic_partitions(const char *topic);

/* Exits 2 when --partition, unless PARTITION_ANY, is not below total. */
void topic_check_partition(const char *topic, uint64_t partition, uint32_t total);

/* One "  partition ..." line; start..end (when not NULL, indexed by
 * partition) replace the metadata's offsets, which may lag. */
void topic_print_partition(const Rustmq__Common__PartitionMetadata *p, const uint64_t *start,
			   const uint64_t *end);

#endif /* RMQ_TOOLS_CLI_H */
