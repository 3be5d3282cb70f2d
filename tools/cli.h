/* SPDX-License-Identifier: Apache-2.0 */
/*
 * cli.h - the helpers every file of the rmq command-line client uses: the
 * options every command takes and the connection (`cli`), argument
 * parsing and dispatch, the error and exit helpers, and protobuf-c calls
 * over rpc.h.  cli.c calls nothing of the commands: the layers are
 *
 *   rmq.c (main, cluster, health, metrics)
 *     └─► topic.c  produce.c  consume.c  group.c      the commands
 *           └─► consumer.c                             the consumer loops
 *                 └─► query.c    member.c (sans I/O)   queries; the group member
 *                       └─► cli.c  route.c ─► rpc.c    helpers, connections to the
 *                                                      partitions' leaders; blocking calls
 *
 * each calling only the ones below it (member.c calls none of them:
 * rmq-bench drives it too).  This is a program, not a library: the
 * helpers keep the short names (die, usage_error, PB_CALL) that make the
 * commands read as a script.
 *
 * The die* functions print one line on stderr, close the connection and
 * exit 1; usage_error exits 2.  None of them returns.
 */
#ifndef RMQ_TOOLS_CLI_H
#define RMQ_TOOLS_CLI_H

#include "ec.h"
#include "rpc.h"

#include "common/types.pb-c.h"
#include "core/flags.h"
#include "google/protobuf/duration.pb-c.h"
#include "google/protobuf/timestamp.pb-c.h"

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

/* ---- the options every command takes ------------------------------------ */

struct cli {
	const char *cmd;            /* "topic create", for usage errors; NULL before one */
	const char *bootstrap;
	const char *tls_ca, *tls_cert, *tls_key; /* --tls-*: TLS when any is set */
	const char *user, *password_file, *sasl; /* --user ...: SCRAM or PLAIN, a token after */
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

/* Sets cli.bootstrap from $RMQ_BOOTSTRAP, else the default. */
void cli_init(void);

/* Flushes stdout, closes the connection and exits with code. */
__attribute__((noreturn)) void cli_exit(int code);

/* ---- errors -------------------------------------------------------------- */

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
/* The call `what` failed with gRPC status st (message from grpc-message). */
__attribute__((noreturn)) void die_status(const char *what, enum rmq_grpc_status st,
					  const char *message);
/* Prints the line for EC(GROUP_ID_NOT_FOUND) or EC(GROUP_NOT_EMPTY) of
 * group and returns true; false (nothing printed) for any other code. */
bool report_group_error(const char *group, int code);
/* The name of a broker error code ("TOPIC_NOT_FOUND"); static storage. */
const char *ec_name(int code);
/* The name of value in an enum, or fallback; static storage. */
const char *enum_name(const ProtobufCEnumDescriptor *desc, int value, const char *fallback);

void *xmalloc(size_t n);
char *xstrdup(const char *s);
void sleep_ns(uint64_t ns);

Google__Protobuf__Duration pb_duration(uint64_t ns);
Google__Protobuf__Timestamp pb_timestamp(uint64_t ms);

/* ---- calls --------------------------------------------------------------- */

/* Connects cli.rpc to cli.bootstrap, or dies saying how to fix it. */
void connect_broker(void);

/* A topic change that a follower refused with NOT_CONTROLLER names the
 * controller's leader ("... node N at HOST:PORT does"): connects there
 * instead, once per run, and returns true for the caller to ask again. */
bool follow_controller(int code, const char *message);

/* One protobuf-c unary call.  Returns the unpacked response (free with
 * protobuf_c_message_free_unpacked) or dies. */
ProtobufCMessage *pb_call(const char *what, const char *path, const ProtobufCMessage *req,
			  const ProtobufCMessageDescriptor *resp_desc, uint64_t timeout_ns);
/* The same on another connection (route.h: a partition's leader). */
ProtobufCMessage *pb_call_on(struct rmq_rpc *rpc, const char *what, const char *path,
			     const ProtobufCMessage *req, const ProtobufCMessageDescriptor *resp_desc,
			     uint64_t timeout_ns);

#define PB_CALL(what, path, req, T, desc)                                                      \
	((T *)pb_call(what, path, &(req)->base, &desc, CALL_TIMEOUT_NS))

/* ---- arguments and dispatch ---------------------------------------------- */

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

/* When argv[i] is a global flag (--bootstrap: every command takes them,
 * before the command or among its flags), stores its value and returns
 * how many arguments it took (1 or 2); returns 0 for anything else. */
int take_global_flag(int argc, char **argv, int i);

/* The usage lines of the global flags. */
void print_global_flags(FILE *out);

/* A command or subcommand: run gets argv from its own name on and returns
 * the exit status. */
struct command {
	const char *name;
	int (*run)(int argc, char **argv);
	const char *about;
};

/* "  name  about" per command. */
void list_commands(FILE *out, const struct command *cmds, size_t n);

/* Runs the command of cmds named argv[0] ("rmq: unknown WHAT" and exit
 * status 2 when none is). */
int run_command(const struct command *cmds, size_t n, const char *what, int argc, char **argv);

/* Runs `rmq NAME SUBCOMMAND ...` from cmds (argv[0] is NAME); without a
 * subcommand or with --help prints them, and `footer` when not NULL. */
int run_subcommand(const char *name, const struct command *cmds, size_t n, const char *footer,
		   int argc, char **argv);

#endif /* RMQ_TOOLS_CLI_H */
