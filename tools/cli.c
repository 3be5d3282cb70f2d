/* SPDX-License-Identifier: Apache-2.0 */
/*
 * cli.c - the rmq client's shared helpers (see cli.h): the options every
 * command takes, argument parsing and dispatch, errors and exits, and
 * protobuf-c calls over rpc.h.
 *
 * Conventions (kcat, kafka-console-*, nats): --bootstrap host:port or
 * RMQ_BOOTSTRAP (default 127.0.0.1:9092); exit 0 ok, 1 error, 2 usage;
 * every error is one line on stderr that says what to do next.  The global
 * flags (global_flags[]) go before the command, as `nats -s` and `kcat -b`
 * users type them, or among the command's own flags; the last one wins.
 */
#include "cli.h"
#include "route.h"

#include "bench.h"
#include "common/types.pb-c.h"
#include "core/error.h"
#include "core/util.h"
#include "net/tls.h"
#include "broker/scram.h"

#include <errno.h>
#include <openssl/crypto.h>

#include <stdarg.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#define DEFAULT_BOOTSTRAP "127.0.0.1:9092"
#define CONNECT_TIMEOUT_NS (5 * NS)

struct cli cli;

Rustmq__Common__ApiVersion api_v1 = {
	PROTOBUF_C_MESSAGE_INIT(&rustmq__common__api_version__descriptor), 1, 0, 0};

void cli_init(void)
{
	cli.bootstrap = getenv("RMQ_BOOTSTRAP");
	if (!cli.bootstrap || !*cli.bootstrap)
		cli.bootstrap = DEFAULT_BOOTSTRAP;
}

/* ---- errors -------------------------------------------------------------- */

void cli_exit(int code)
{
	fflush(stdout);
	route_close();
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
	cli_exit(1);
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

const char *enum_name(const ProtobufCEnumDescriptor *desc, int value, const char *fallback)
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
	if (code == EC(TOPIC_NOT_FOUND) && topic)
		die("topic '%s' not found (create it with: rmq topic create %s)", topic, topic);
	if (code == EC(TOPIC_ALREADY_EXISTS) && topic)
		die("topic '%s' already exists (see it with: rmq topic describe %s)", topic, topic);
	die("%s: %s%s%s", what, ec_name(code), msg && *msg ? ": " : "", msg ? msg : "");
}

bool report_group_error(const char *group, int code)
{
	if (code == EC(GROUP_ID_NOT_FOUND))
		fprintf(stderr, "rmq: no such group '%s' (see the groups with: rmq group list)\n",
			group);
	else if (code == EC(GROUP_NOT_EMPTY))
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
		cli_exit(1);
	die_code(what, topic, code, msg);
}

void die_status(const char *what, enum rmq_grpc_status st, const char *message)
{
	const char *hint = "";
	if (st == RMQ_GRPC_UNAVAILABLE)
		hint = " (is rmqd still running? check --bootstrap)";
	else if (st == RMQ_GRPC_UNIMPLEMENTED)
		hint = " (this rmqd does not serve it yet)";
	die("%s failed: %s%s%s%s", what, rmq_grpc_status_name((int)st),
	    message && *message ? ": " : "", message ? message : "", hint);
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

/* TLS when a --tls-* flag says so: one client context for every
 * connection of the process (the bootstrap's, and the leaders'). */
static void tls_setup(void)
{
	static bool done;
	static struct rmq_tls_ctx *tls;
	char err[512];
	if (done || !(cli.tls_ca || cli.tls_cert || cli.tls_key))
		return;
	done = true;
	struct rmq_tls_config tc = {.cert = cli.tls_cert, .key = cli.tls_key, .ca = cli.tls_ca};
	if (rmq_tls_ctx_new(&tc, &tls, err, sizeof(err)) < 0) {
		fprintf(stderr, "rmq: --tls-ca/--tls-cert/--tls-key: %s\n", err);
		exit(EXIT_USAGE);
	}
	rmq_rpc_use_tls(tls);
}

/* The password: the first line of --password-file (never a flag's value,
 * which other users of the host could read in the process list). */
static size_t read_password(char *pw, size_t cap)
{
	if (!cli.password_file)
		die("--user needs --password-file");
	FILE *f = fopen(cli.password_file, "r");
	if (!f)
		die("--password-file %s: %s", cli.password_file, strerror(errno));
	size_t n = fgets(pw, (int)cap, f) ? strcspn(pw, "\r\n") : 0;
	fclose(f);
	if (n == 0)
		die("--password-file %s: no password on its first line", cli.password_file);
	pw[n] = '\0';
	return n;
}

/* --user: a SCRAM (or PLAIN) exchange on the bootstrap connection; every
 * connection opened after it sends the token it got. */
static void auth_setup(void)
{
	static bool done;
	if (done || !cli.user)
		return;
	done = true;
	const char *mech = cli.sasl ? cli.sasl : "SCRAM-SHA-256";
	char pw[RMQ_SCRAM_PASSWORD_MAX + 2], authz[1100], err[300];
	size_t pwn = read_password(pw, sizeof(pw));
	int rc = rmq_rpc_login(cli.rpc, cli.user, pw, pwn, mech, authz, sizeof(authz), err,
			       sizeof(err));
	OPENSSL_cleanse(pw, sizeof(pw));
	if (rc < 0)
		die("authenticating as --user %s: %s", cli.user, err);
	rmq_rpc_use_authorization(authz);
	/* Calls go on a connection made with it. */
	rmq_rpc_close(cli.rpc);
	cli.rpc = NULL;
	connect_broker();
}

void connect_broker(void)
{
	char err[256];
	tls_setup();
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
	auth_setup();
}

bool follow_controller(int code, const char *message)
{
	static bool followed;
	static char addr[256];
	const char *at = message ? strstr(message, " at ") : NULL;
	const char *end = at ? strstr(at + 4, " does") : NULL;
	if (code != RUSTMQ__COMMON__ERROR_CODE__NOT_CONTROLLER || followed || !end ||
	    (size_t)(end - at - 4) >= sizeof(addr))
		return false;
	memcpy(addr, at + 4, (size_t)(end - at - 4));
	addr[end - at - 4] = '\0';
	followed = true;
	if (cli.verbose)
		fprintf(stderr, "rmq: %s leads the controller: asking it\n", addr);
	rmq_rpc_close(cli.rpc);
	cli.rpc = NULL;
	cli.bootstrap = addr;
	connect_broker();
	return true;
}

ProtobufCMessage *pb_call(const char *what, const char *path, const ProtobufCMessage *req,
			  const ProtobufCMessageDescriptor *resp_desc, uint64_t timeout_ns)
{
	return pb_call_on(cli.rpc, what, path, req, resp_desc, timeout_ns);
}

ProtobufCMessage *pb_call_on(struct rmq_rpc *rpc, const char *what, const char *path,
			     const ProtobufCMessage *req, const ProtobufCMessageDescriptor *resp_desc,
			     uint64_t timeout_ns)
{
	size_t len = protobuf_c_message_get_packed_size(req);
	uint8_t *buf = xmalloc(len);
	protobuf_c_message_pack(req, buf);
	struct rmq_rpc_call c = {.path = path, .req = buf, .len = len, .timeout_ns = timeout_ns};
	enum rmq_grpc_status st = rmq_rpc_unary(rpc, &c);
	if (st != RMQ_GRPC_OK)
		die_status(what, st, c.message);
	free(buf);
	ProtobufCMessage *m = protobuf_c_message_unpack(resp_desc, NULL, c.resp_len, c.resp);
	rmq_rpc_call_reset(&c);
	if (!m)
		die("%s: the broker's answer does not parse (is --bootstrap an rmqd?)", what);
	return m;
}

/* ---- arguments ----------------------------------------------------------- */

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
	{"tls-ca", &cli.tls_ca, "file", "connect with TLS, trusting these PEM CAs (docs/security.md)"},
	{"tls-cert", &cli.tls_cert, "file", "TLS: this PEM client certificate (mutual TLS), with --tls-key"},
	{"tls-key", &cli.tls_key, "file", "TLS: the PEM private key of --tls-cert"},
	{"user", &cli.user, "name",
	 "authenticate as this user, a session token for every call (before the command for "
	 "`quota`)"},
	{"password-file", &cli.password_file, "file",
	 "the --user's password: the file's first line (before the command for `user add`)"},
	{"sasl-mechanism", &cli.sasl, "mech",
	 "SCRAM-SHA-256 (default), SCRAM-SHA-512, or PLAIN (sends the password: only over TLS)"},
};

static const struct cmd_spec *cur_spec; /* the command whose flags are parsed */

static bool own_flag(const char *name)
{
	for (size_t k = 0; cur_spec && k < cur_spec->nflags; k++)
		if (strcmp(cur_spec->flags[k].name, name) == 0)
			return true;
	return false;
}

int take_global_flag(int argc, char **argv, int i)
{
	const char *a = argv[i];
	if (strncmp(a, "--", 2) != 0)
		return 0;
	for (size_t k = 0; k < RMQ_ARRAY_SIZE(global_flags); k++) {
		const struct global_flag *g = &global_flags[k];
		size_t n = strlen(g->name);
		if (strncmp(a + 2, g->name, n) != 0)
			continue;
		/* A command's own flag of that name wins (`user add
		 * --password-file` is the new user's, `quota set --user` the
		 * user limited): the global goes before the command there. */
		if (own_flag(g->name))
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

void print_global_flags(FILE *out)
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
	cur_spec = cs;
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

/* ---- dispatch ------------------------------------------------------------ */

void list_commands(FILE *out, const struct command *cmds, size_t n)
{
	for (size_t i = 0; i < n; i++)
		fprintf(out, "  %-10s %s\n", cmds[i].name, cmds[i].about);
}

int run_command(const struct command *cmds, size_t n, const char *what, int argc, char **argv)
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
	return run_command(cmds, n, what, argc - 1, argv + 1);
}
