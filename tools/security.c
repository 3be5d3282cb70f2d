/* SPDX-License-Identifier: Apache-2.0 */
/*
 * security.c - rmq user add|list|delete, rmq acl add|list|remove, rmq quota
 * set|list: the users, ACLs and quotas of the controller's state
 * (AdminService UpsertUsers ... DescribeQuotas, docs/security.md).
 *
 * A user's SCRAM verifier is computed here from the password file
 * (broker/scram.h, the node's own code): the password never leaves this process.  acl takes
 * kafka-acls' flags (--allow-principal User:alice --operation read --topic
 * orders [--resource-pattern-type prefixed]); --operation and the
 * principals take comma-separated lists.  Changes go to the bootstrap
 * node, which carries them to the controller's leader; each refused entry
 * is printed with the broker's reason and the exit status is 1.
 */
#include "cli.h"
#include "commands.h"
#include "broker/scram.h"
#include "core/error.h"

#include "controller/admin.pb-c.h"
#include "core/util.h"

#include <ctype.h>
#include <errno.h>
#include <inttypes.h>
#include <openssl/crypto.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define ADMIN "/rustmq.controller.AdminService/"
#define PASSWORD_MAX 1024
#define LIST_MAX 64 /* principals or operations in one command */
#define ANY_RESOURCE RUSTMQ__CONTROLLER__ACL_RESOURCE_TYPE__ACL_RESOURCE_ANY

/* An admin change, asked again while the controller elects a leader. */
static ProtobufCMessage *change_call(const char *what, const char *path,
				     const ProtobufCMessage *req,
				     const ProtobufCMessageDescriptor *desc)
{
	for (int tries = 0;; tries++) {
		ProtobufCMessage *r = pb_call(what, path, req, desc, CALL_TIMEOUT_NS);
		/* Every response here has error_code as its first field. */
		const ProtobufCFieldDescriptor *f = protobuf_c_message_descriptor_get_field_by_name(
			desc, "error_code");
		int code = *(const int *)((const char *)r + f->offset);
		if (code != EC(NOT_CONTROLLER) || tries == 50)
			return r;
		protobuf_c_message_free_unpacked(r, NULL);
		sleep_ns(100 * MS);
	}
}

/* Prints one refused entry; returns 1 for a refusal, 0 for OK. */
static int refused(const char *cmd, const char *what, int code, const char *msg)
{
	if (code == 0)
		return 0;
	fprintf(stderr, "rmq %s: %s: %s%s%s\n", cmd, what, ec_name(code), *msg ? ": " : "", msg);
	return 1;
}

/* Lowercase without '_' and '-', for matching names as users type them
 * ("describe-configs", "DescribeConfigs", "DESCRIBE_CONFIGS"). */
static void squash(const char *in, char *out, size_t cap)
{
	size_t n = 0;
	for (; *in && n + 1 < cap; in++)
		if (*in != '_' && *in != '-')
			out[n++] = (char)tolower((unsigned char)*in);
	out[n] = '\0';
}

/* The value of enum d named PREFIX + word (as squash() compares), or -1. */
static int enum_value(const ProtobufCEnumDescriptor *d, const char *prefix, const char *word)
{
	char want[64], have[64];
	squash(word, want, sizeof(want));
	size_t pl = strlen(prefix);
	for (unsigned i = 0; i < d->n_values; i++) {
		if (strncmp(d->values[i].name, prefix, pl) != 0)
			continue;
		squash(d->values[i].name + pl, have, sizeof(have));
		if (strcmp(have, want) == 0)
			return d->values[i].value;
	}
	return -1;
}

/* The name of enum value v without its prefix ("READ"). */
static const char *short_name(const ProtobufCEnumDescriptor *d, const char *prefix, int v)
{
	const char *n = enum_name(d, v, "?");
	return strncmp(n, prefix, strlen(prefix)) == 0 ? n + strlen(prefix) : n;
}

/* Splits a comma-separated list in place into out (at most LIST_MAX). */
static size_t split_list(const char *flag, char *s, char **out)
{
	size_t n = 0;
	for (char *tok = strtok(s, ","); tok; tok = strtok(NULL, ",")) {
		if (n == LIST_MAX)
			usage_error("--%s takes at most %d values", flag, LIST_MAX);
		out[n++] = tok;
	}
	return n;
}

/* ---- users ------------------------------------------------------------- */

/* The first line of path (without its line end), into buf. */
static size_t read_password(const char *path, char *buf, size_t cap)
{
	FILE *f = fopen(path, "r");
	if (!f)
		die("cannot read the password file %s: %s", path, strerror(errno));
	size_t n = fread(buf, 1, cap - 1, f);
	bool more = n == cap - 1 && fgetc(f) != EOF && !memchr(buf, '\n', n);
	fclose(f);
	buf[n] = '\0';
	char *nl = memchr(buf, '\n', n);
	if (nl)
		n = (size_t)(nl - buf);
	if (n && buf[n - 1] == '\r')
		n--;
	buf[n] = '\0';
	if (more)
		die("the password in %s is longer than %d bytes", path, PASSWORD_MAX - 2);
	if (n == 0)
		die("the password file %s holds no password (its first line is empty)", path);
	return n;
}

static int user_add(int argc, char **argv)
{
	const char *file, *mech;
	uint64_t iterations;
	const struct rmq_flag flags[] = {
		{"password-file", RMQ_FLAG_STRING, &file, "", "file whose first line is the password (never given on the command line)", 0, 0, NULL},
		{"mechanism", RMQ_FLAG_CHOICE, &mech, "SCRAM-SHA-256", "SCRAM mechanism of the verifier", 0, 0, "SCRAM-SHA-256|SCRAM-SHA-512"},
		{"iterations", RMQ_FLAG_UINT, &iterations, "4096", "PBKDF2 iterations (RFC 7677: at least 4096)", 4096, 1000000, NULL},
	};
	const struct cmd_spec cs = {"user add",
				    "user add NAME --password-file F [--mechanism SCRAM-SHA-256|SCRAM-SHA-512] [--iterations N]",
				    "Adds a user, or replaces its verifier of the mechanism (computed here: "
				    "the password is not sent).",
				    flags, 3, 1, 1, false, false};
	int npos;
	parse_args(&cs, argc, argv, &npos);
	if (!*file)
		usage_error("give --password-file F (a file whose first line is the password)");
	char pw[PASSWORD_MAX], v[RMQ_SCRAM_OUT_MAX];
	struct rmq_scram_verifier sv;
	enum rmq_scram_mech sm;
	size_t len = read_password(file, pw, sizeof(pw));
	int rc = rmq_scram_mech_parse(mech, strlen(mech), &sm);
	if (rc == 0)
		rc = rmq_scram_verifier_make(sm, pw, len, (uint32_t)iterations, &sv);
	if (rc == 0)
		rc = rmq_scram_verifier_encode(&sv, v, sizeof(v));
	OPENSSL_cleanse(pw, sizeof(pw));
	OPENSSL_cleanse(&sv, sizeof(sv));
	if (rc < 0)
		die("cannot compute the SCRAM verifier (%s)", rmq_strerror(rc));
	Rustmq__Controller__UserUpsertion u = RUSTMQ__CONTROLLER__USER_UPSERTION__INIT;
	Rustmq__Controller__UserUpsertion *up = &u;
	Rustmq__Controller__UpsertUsersRequest req = RUSTMQ__CONTROLLER__UPSERT_USERS_REQUEST__INIT;
	u.name = argv[1];
	u.verifier = v;
	req.version = &api_v1;
	req.users = &up;
	req.n_users = 1;
	connect_broker();
	Rustmq__Controller__UpsertUsersResponse *r =
		(Rustmq__Controller__UpsertUsersResponse *)change_call(
			"UpsertUsers", ADMIN "UpsertUsers", &req.base,
			&rustmq__controller__upsert_users_response__descriptor);
	OPENSSL_cleanse(v, sizeof(v));
	if (r->error_code)
		die_code("UpsertUsers", NULL, r->error_code, r->error_message);
	int bad = 0;
	for (size_t i = 0; i < r->n_results; i++)
		bad |= refused("user add", r->results[i]->name, r->results[i]->error_code,
			       r->results[i]->error_message);
	if (!bad)
		printf("user %s\t%s\t%" PRIu64 " iterations\n", argv[1], mech, iterations);
	protobuf_c_message_free_unpacked(&r->base, NULL);
	return bad;
}

static int user_list(int argc, char **argv)
{
	const struct cmd_spec cs = {"user list", "user list [NAME ...]",
				    "Lists users and their SCRAM mechanisms (never a verifier).", NULL, 0,
				    0, 1000, false, false};
	int npos;
	parse_args(&cs, argc, argv, &npos);
	Rustmq__Controller__ListUsersRequest req = RUSTMQ__CONTROLLER__LIST_USERS_REQUEST__INIT;
	req.version = &api_v1;
	req.names = argv + 1;
	req.n_names = (size_t)npos;
	connect_broker();
	Rustmq__Controller__ListUsersResponse *r =
		PB_CALL("ListUsers", ADMIN "ListUsers", &req, Rustmq__Controller__ListUsersResponse,
			rustmq__controller__list_users_response__descriptor);
	if (r->error_code)
		die_code("ListUsers", NULL, r->error_code, r->error_message);
	for (size_t i = 0; i < r->n_users; i++) {
		const Rustmq__Controller__UserListing *u = r->users[i];
		printf("%s", u->name);
		for (size_t k = 0; k < u->n_credentials; k++)
			printf("\t%s %" PRIu32 " iterations", u->credentials[k]->mechanism,
			       u->credentials[k]->iterations);
		printf("\n");
	}
	protobuf_c_message_free_unpacked(&r->base, NULL);
	return 0;
}

static int user_delete(int argc, char **argv)
{
	const char *mech;
	const struct rmq_flag flags[] = {
		{"mechanism", RMQ_FLAG_CHOICE, &mech, "", "delete only this verifier (the user goes with its last)", 0, 0, "|SCRAM-SHA-256|SCRAM-SHA-512"},
	};
	const struct cmd_spec cs = {"user delete", "user delete NAME ... [--mechanism M]",
				    "Deletes users (or one mechanism's verifier).", flags, 1, 1, 1000,
				    false, false};
	int npos;
	parse_args(&cs, argc, argv, &npos);
	Rustmq__Controller__UserDeletion *ds = xmalloc((size_t)npos * sizeof(*ds));
	Rustmq__Controller__UserDeletion **dp = xmalloc((size_t)npos * sizeof(*dp));
	for (int i = 0; i < npos; i++) {
		rustmq__controller__user_deletion__init(&ds[i]);
		ds[i].name = argv[1 + i];
		ds[i].mechanism = (char *)mech;
		dp[i] = &ds[i];
	}
	Rustmq__Controller__DeleteUsersRequest req = RUSTMQ__CONTROLLER__DELETE_USERS_REQUEST__INIT;
	req.version = &api_v1;
	req.users = dp;
	req.n_users = (size_t)npos;
	connect_broker();
	Rustmq__Controller__DeleteUsersResponse *r =
		(Rustmq__Controller__DeleteUsersResponse *)change_call(
			"DeleteUsers", ADMIN "DeleteUsers", &req.base,
			&rustmq__controller__delete_users_response__descriptor);
	free(ds);
	free(dp);
	if (r->error_code)
		die_code("DeleteUsers", NULL, r->error_code, r->error_message);
	int bad = 0;
	for (size_t i = 0; i < r->n_results; i++) {
		int b = refused("user delete", r->results[i]->name, r->results[i]->error_code,
				r->results[i]->error_message);
		if (!b)
			printf("deleted %s%s%s\n", r->results[i]->name, *mech ? "\t" : "", mech);
		bad |= b;
	}
	protobuf_c_message_free_unpacked(&r->base, NULL);
	return bad;
}

static const struct command user_cmds[] = {
	{"add", user_add, "add a user (or a verifier): add NAME --password-file F"},
	{"list", user_list, "list users and their mechanisms"},
	{"delete", user_delete, "delete users: delete NAME ..."},
};

int cmd_user(int argc, char **argv)
{
	return run_subcommand("user", user_cmds, RMQ_ARRAY_SIZE(user_cmds), NULL, argc, argv);
}

/* ---- ACLs -------------------------------------------------------------- */

/* The flags of acl add, list and remove. */
struct acl_args {
	const char *allow, *deny, *principal, *ops, *topic, *group, *txn, *pattern, *host;
	bool cluster;
};

#define ACL_RESOURCE_FLAGS(a)                                                                   \
	{"topic", RMQ_FLAG_STRING, &(a)->topic, "", "a topic (\"*\": every topic)", 0, 0, NULL},  \
	{"group", RMQ_FLAG_STRING, &(a)->group, "", "a consumer group (\"*\": every group)", 0, 0, NULL}, \
	{"transactional-id", RMQ_FLAG_STRING, &(a)->txn, "", "a transactional id", 0, 0, NULL},   \
	{"cluster", RMQ_FLAG_BOOL, &(a)->cluster, "false", "the cluster (" "rmq-cluster" ")", 0, 0, NULL}

/* The resource given (type and name), or type ANY when none is;
 * usage_error for two. */
static int acl_resource(const struct acl_args *a, const char **name)
{
	int type = ANY_RESOURCE, n = 0;
	*name = "";
	if (*a->topic)
		n++, type = RUSTMQ__CONTROLLER__ACL_RESOURCE_TYPE__ACL_RESOURCE_TOPIC, *name = a->topic;
	if (*a->group)
		n++, type = RUSTMQ__CONTROLLER__ACL_RESOURCE_TYPE__ACL_RESOURCE_GROUP, *name = a->group;
	if (*a->txn)
		n++, type = RUSTMQ__CONTROLLER__ACL_RESOURCE_TYPE__ACL_RESOURCE_TRANSACTIONAL_ID,
			*name = a->txn;
	if (a->cluster)
		n++, type = RUSTMQ__CONTROLLER__ACL_RESOURCE_TYPE__ACL_RESOURCE_CLUSTER,
			*name = "rmq-cluster";
	if (n > 1)
		usage_error("give one resource: --topic, --group, --transactional-id or --cluster");
	return type;
}

static int acl_pattern(const char *p)
{
	int v = enum_value(&rustmq__controller__acl_pattern_type__descriptor, "ACL_PATTERN_", p);
	if (v <= 0)
		usage_error("--resource-pattern-type must be literal, prefixed%s, got '%s'",
			    ", any or match (list only)", p);
	return v;
}

/* The operations of --operation (ANY when none is given and any allowed). */
static size_t acl_ops(char *ops, int *out, bool any_ok)
{
	char *words[LIST_MAX];
	size_t n = *ops ? split_list("operation", ops, words) : 0;
	if (n == 0) {
		if (!any_ok)
			usage_error("give --operation (read, write, create, delete, alter, describe, "
				    "cluster-action, describe-configs, alter-configs, idempotent-write, all)");
		out[0] = RUSTMQ__CONTROLLER__ACL_OPERATION__ACL_OPERATION_ANY;
		return 1;
	}
	for (size_t i = 0; i < n; i++) {
		out[i] = enum_value(&rustmq__controller__acl_operation__descriptor, "ACL_OPERATION_",
				    words[i]);
		if (out[i] <= 0 || (out[i] == RUSTMQ__CONTROLLER__ACL_OPERATION__ACL_OPERATION_ANY &&
				    !any_ok))
			usage_error("unknown operation '%s' (read, write, create, delete, alter, "
				    "describe, cluster-action, describe-configs, alter-configs, "
				    "idempotent-write, all)", words[i]);
	}
	return n;
}

/* (principal, permission) pairs of --allow-principal and --deny-principal
 * (copies of them, split in place: who points into allow and deny). */
static size_t acl_principals(char *allow, char *deny, char **who, int *perm)
{
	char *list[LIST_MAX];
	size_t n = 0;
	size_t na = *allow ? split_list("allow-principal", allow, list) : 0;
	for (size_t i = 0; i < na; i++, n++) {
		who[n] = list[i];
		perm[n] = RUSTMQ__CONTROLLER__ACL_PERMISSION__ACL_PERMISSION_ALLOW;
	}
	size_t nd = *deny ? split_list("deny-principal", deny, list) : 0;
	for (size_t i = 0; i < nd && n < 2 * LIST_MAX; i++, n++) {
		who[n] = list[i];
		perm[n] = RUSTMQ__CONTROLLER__ACL_PERMISSION__ACL_PERMISSION_DENY;
	}
	for (size_t i = 0; i < n; i++)
		if (strncmp(who[i], "User:", 5) != 0 || !who[i][5])
			usage_error("a principal is User:NAME or User:*, got '%s'", who[i]);
	return n;
}

static void print_binding(const Rustmq__Controller__AclBinding *b)
{
	printf("%s\t%s\t%s\t%s\t%s\t%s\thost %s\n",
	       short_name(&rustmq__controller__acl_resource_type__descriptor, "ACL_RESOURCE_",
			  b->resource_type),
	       b->resource_name,
	       short_name(&rustmq__controller__acl_pattern_type__descriptor, "ACL_PATTERN_",
			  b->pattern_type),
	       b->principal,
	       short_name(&rustmq__controller__acl_permission__descriptor, "ACL_PERMISSION_",
			  b->permission),
	       short_name(&rustmq__controller__acl_operation__descriptor, "ACL_OPERATION_",
			  b->operation),
	       *b->host ? b->host : "*");
}

static int acl_change(int argc, char **argv, bool add)
{
	struct acl_args a;
	const struct rmq_flag flags[] = {
		{"allow-principal", RMQ_FLAG_STRING, &a.allow, "", "User:NAME or User:* to allow (comma-separated list)", 0, 0, NULL},
		{"deny-principal", RMQ_FLAG_STRING, &a.deny, "", "User:NAME or User:* to deny (comma-separated list)", 0, 0, NULL},
		{"operation", RMQ_FLAG_STRING, &a.ops, "", add ? "operations (comma-separated): read, write, create, delete, alter, describe, cluster-action, describe-configs, alter-configs, idempotent-write, all" : "operations to remove (comma-separated; every one when not given)", 0, 0, NULL},
		ACL_RESOURCE_FLAGS(&a),
		{"resource-pattern-type", RMQ_FLAG_STRING, &a.pattern, "literal", "literal (the name; \"*\" = every name) or prefixed (names starting with it)", 0, 0, NULL},
		{"host", RMQ_FLAG_STRING, &a.host, "*", "the client host (only * is supported)", 0, 0, NULL},
	};
	const struct cmd_spec cs_add = {
		"acl add",
		"acl add (--allow-principal P | --deny-principal P) --operation OP (--topic T | --group G | --transactional-id X | --cluster) [--resource-pattern-type literal|prefixed]",
		"Adds ACL entries: every principal given gets every operation given on the resource.",
		flags, RMQ_ARRAY_SIZE(flags), 0, 0, false, false};
	const struct cmd_spec cs_rm = {
		"acl remove",
		"acl remove (--allow-principal P | --deny-principal P) [--operation OP] (--topic T | --group G | --transactional-id X | --cluster) [--resource-pattern-type literal|prefixed]",
		"Removes the ACL entries of the resource that name a principal given (and an "
		"operation given).",
		flags, RMQ_ARRAY_SIZE(flags), 0, 0, false, false};
	int npos;
	parse_args(add ? &cs_add : &cs_rm, argc, argv, &npos);
	const char *name;
	int type = acl_resource(&a, &name);
	if (type == ANY_RESOURCE)
		usage_error("give a resource: --topic T, --group G, --transactional-id X or --cluster");
	int pattern = acl_pattern(a.pattern);
	if (pattern != RUSTMQ__CONTROLLER__ACL_PATTERN_TYPE__ACL_PATTERN_LITERAL &&
	    pattern != RUSTMQ__CONTROLLER__ACL_PATTERN_TYPE__ACL_PATTERN_PREFIXED)
		usage_error("--resource-pattern-type must be literal or prefixed here");
	char *who[2 * LIST_MAX];
	int perm[2 * LIST_MAX], ops[LIST_MAX];
	char *allow = xstrdup(a.allow), *deny = xstrdup(a.deny);
	size_t np = acl_principals(allow, deny, who, perm);
	if (np == 0)
		usage_error("give --allow-principal User:NAME or --deny-principal User:NAME");
	char *opsbuf = xstrdup(a.ops);
	size_t no = acl_ops(opsbuf, ops, !add);
	size_t n = np * no;
	Rustmq__Controller__AclBinding *bs = xmalloc(n * sizeof(*bs));
	Rustmq__Controller__AclBinding **bp = xmalloc(n * sizeof(*bp));
	Rustmq__Controller__AclFilter *fs = xmalloc(n * sizeof(*fs));
	Rustmq__Controller__AclFilter **fp = xmalloc(n * sizeof(*fp));
	for (size_t i = 0; i < np; i++) {
		for (size_t k = 0; k < no; k++) {
			size_t j = i * no + k;
			rustmq__controller__acl_binding__init(&bs[j]);
			rustmq__controller__acl_filter__init(&fs[j]);
			bs[j].principal = fs[j].principal = who[i];
			bs[j].resource_type = fs[j].resource_type = type;
			bs[j].resource_name = fs[j].resource_name = (char *)name;
			bs[j].pattern_type = fs[j].pattern_type = pattern;
			bs[j].operation = fs[j].operation = ops[k];
			bs[j].permission = fs[j].permission = perm[i];
			bs[j].host = fs[j].host = (char *)a.host;
			bp[j] = &bs[j];
			fp[j] = &fs[j];
		}
	}
	connect_broker();
	int bad = 0;
	if (add) {
		Rustmq__Controller__CreateAclsRequest req = RUSTMQ__CONTROLLER__CREATE_ACLS_REQUEST__INIT;
		req.version = &api_v1;
		req.acls = bp;
		req.n_acls = n;
		Rustmq__Controller__CreateAclsResponse *r =
			(Rustmq__Controller__CreateAclsResponse *)change_call(
				"CreateAcls", ADMIN "CreateAcls", &req.base,
				&rustmq__controller__create_acls_response__descriptor);
		if (r->error_code)
			die_code("CreateAcls", NULL, r->error_code, r->error_message);
		for (size_t i = 0; i < r->n_results && i < n; i++) {
			int b = refused("acl add", bs[i].principal, r->results[i]->error_code,
					r->results[i]->error_message);
			if (!b) {
				printf("added\t");
				print_binding(&bs[i]);
			}
			bad |= b;
		}
		protobuf_c_message_free_unpacked(&r->base, NULL);
	} else {
		Rustmq__Controller__DeleteAclsRequest req = RUSTMQ__CONTROLLER__DELETE_ACLS_REQUEST__INIT;
		req.version = &api_v1;
		req.filters = fp;
		req.n_filters = n;
		Rustmq__Controller__DeleteAclsResponse *r =
			(Rustmq__Controller__DeleteAclsResponse *)change_call(
				"DeleteAcls", ADMIN "DeleteAcls", &req.base,
				&rustmq__controller__delete_acls_response__descriptor);
		if (r->error_code)
			die_code("DeleteAcls", NULL, r->error_code, r->error_message);
		size_t gone = 0;
		for (size_t i = 0; i < r->n_results; i++) {
			const Rustmq__Controller__DeleteAclsResult *d = r->results[i];
			bad |= refused("acl remove", fs[i < n ? i : 0].principal, d->error_code,
				       d->error_message);
			for (size_t k = 0; k < d->n_deleted; k++, gone++) {
				printf("removed\t");
				print_binding(d->deleted[k]);
			}
		}
		if (!bad && gone == 0)
			fprintf(stderr, "rmq acl remove: no entry matched (see them with: rmq acl list)\n");
		protobuf_c_message_free_unpacked(&r->base, NULL);
	}
	free(bs);
	free(bp);
	free(fs);
	free(fp);
	free(opsbuf);
	free(allow);
	free(deny);
	return bad;
}

static int acl_add(int argc, char **argv)
{
	return acl_change(argc, argv, true);
}

static int acl_remove(int argc, char **argv)
{
	return acl_change(argc, argv, false);
}

static int acl_list(int argc, char **argv)
{
	struct acl_args a;
	const struct rmq_flag flags[] = {
		{"principal", RMQ_FLAG_STRING, &a.principal, "", "only the entries of User:NAME (or User:*)", 0, 0, NULL},
		ACL_RESOURCE_FLAGS(&a),
		{"resource-pattern-type", RMQ_FLAG_STRING, &a.pattern, "any", "any (entries named exactly so), match (every entry that applies to the name), literal or prefixed", 0, 0, NULL},
	};
	const struct cmd_spec cs = {"acl list",
				    "acl list [--principal P] [--topic T | --group G | --transactional-id X | --cluster] [--resource-pattern-type any|match|literal|prefixed]",
				    "Lists ACL entries: resource type, name, pattern type, principal, "
				    "permission, operation, host.",
				    flags, RMQ_ARRAY_SIZE(flags), 0, 0, false, false};
	int npos;
	parse_args(&cs, argc, argv, &npos);
	const char *name;
	Rustmq__Controller__AclFilter f = RUSTMQ__CONTROLLER__ACL_FILTER__INIT;
	f.principal = (char *)a.principal;
	f.resource_type = acl_resource(&a, &name);
	f.resource_name = (char *)name;
	f.pattern_type = acl_pattern(a.pattern);
	f.operation = RUSTMQ__CONTROLLER__ACL_OPERATION__ACL_OPERATION_ANY;
	f.permission = RUSTMQ__CONTROLLER__ACL_PERMISSION__ACL_PERMISSION_ANY;
	Rustmq__Controller__DescribeAclsRequest req = RUSTMQ__CONTROLLER__DESCRIBE_ACLS_REQUEST__INIT;
	req.version = &api_v1;
	req.filter = &f;
	connect_broker();
	Rustmq__Controller__DescribeAclsResponse *r =
		PB_CALL("DescribeAcls", ADMIN "DescribeAcls", &req,
			Rustmq__Controller__DescribeAclsResponse,
			rustmq__controller__describe_acls_response__descriptor);
	if (r->error_code)
		die_code("DescribeAcls", NULL, r->error_code, r->error_message);
	for (size_t i = 0; i < r->n_acls; i++)
		print_binding(r->acls[i]);
	protobuf_c_message_free_unpacked(&r->base, NULL);
	return 0;
}

static const struct command acl_cmds[] = {
	{"add", acl_add, "add entries: add --allow-principal User:alice --operation read --topic orders"},
	{"list", acl_list, "list entries (by principal, resource, pattern type)"},
	{"remove", acl_remove, "remove entries: the same flags as add"},
};

int cmd_acl(int argc, char **argv)
{
	return run_subcommand("acl", acl_cmds, RMQ_ARRAY_SIZE(acl_cmds),
			      "\nAn operation is allowed when an ALLOW entry matches and no DENY "
			      "entry does (docs/security.md).\n",
			      argc, argv);
}

/* ---- quotas ------------------------------------------------------------ */

static const char *const quota_keys[3] = {"producer_byte_rate", "consumer_byte_rate",
					  "request_rate"};

static int quota_set(int argc, char **argv)
{
	const char *user, *vals[3];
	bool def;
	const struct rmq_flag flags[] = {
		{"user", RMQ_FLAG_STRING, &user, "", "the user (principal User:NAME)", 0, 0, NULL},
		{"default", RMQ_FLAG_BOOL, &def, "false", "the default of every user without its own value", 0, 0, NULL},
		{"producer-byte-rate", RMQ_FLAG_STRING, &vals[0], "", "produced bytes/s (a size: 1MiB); 0 removes the limit", 0, 0, NULL},
		{"consumer-byte-rate", RMQ_FLAG_STRING, &vals[1], "", "fetched bytes/s (a size); 0 removes the limit", 0, 0, NULL},
		{"request-rate", RMQ_FLAG_STRING, &vals[2], "", "requests/s; 0 removes the limit", 0, 0, NULL},
	};
	const struct cmd_spec cs = {"quota set",
				    "quota set (--user NAME | --default) [--producer-byte-rate N] [--consumer-byte-rate N] [--request-rate N]",
				    "Sets (or, with 0, removes) a user's or the default's limits.", flags,
				    RMQ_ARRAY_SIZE(flags), 0, 0, false, false};
	int npos;
	parse_args(&cs, argc, argv, &npos);
	if (def == !!*user)
		usage_error("give --user NAME or --default");
	Rustmq__Controller__QuotaOp ops[3], *op[3];
	size_t n = 0;
	for (int k = 0; k < 3; k++) {
		if (!*vals[k])
			continue;
		uint64_t v;
		char err[200];
		int rc = k < 2 ? rmq_parse_size(vals[k], &v, err, sizeof(err))
			       : rmq_parse_uint(vals[k], 0, 1ULL << 53, &v, err, sizeof(err));
		if (rc < 0)
			usage_error("--%s: %s", flags[2 + k].name, err);
		rustmq__controller__quota_op__init(&ops[n]);
		ops[n].key = (char *)quota_keys[k];
		ops[n].value = v;
		ops[n].remove = v == 0;
		op[n] = &ops[n];
		n++;
	}
	if (n == 0)
		usage_error("give --producer-byte-rate, --consumer-byte-rate or --request-rate");
	char principal[300];
	snprintf(principal, sizeof(principal), "%s%s", def ? "" : "User:", def ? "" : user);
	Rustmq__Controller__QuotaAlteration a = RUSTMQ__CONTROLLER__QUOTA_ALTERATION__INIT;
	Rustmq__Controller__QuotaAlteration *ap = &a;
	a.principal = principal;
	a.is_default = def;
	a.ops = op;
	a.n_ops = n;
	Rustmq__Controller__AlterQuotasRequest req = RUSTMQ__CONTROLLER__ALTER_QUOTAS_REQUEST__INIT;
	req.version = &api_v1;
	req.alterations = &ap;
	req.n_alterations = 1;
	connect_broker();
	Rustmq__Controller__AlterQuotasResponse *r =
		(Rustmq__Controller__AlterQuotasResponse *)change_call(
			"AlterQuotas", ADMIN "AlterQuotas", &req.base,
			&rustmq__controller__alter_quotas_response__descriptor);
	if (r->error_code)
		die_code("AlterQuotas", NULL, r->error_code, r->error_message);
	int bad = 0;
	for (size_t i = 0; i < r->n_results; i++)
		bad |= refused("quota set", def ? "<default>" : principal, r->results[i]->error_code,
			       r->results[i]->error_message);
	protobuf_c_message_free_unpacked(&r->base, NULL);
	return bad;
}

static void print_rate(const char *key, uint64_t v)
{
	if (v)
		printf("\t%s %" PRIu64, key, v);
	else
		printf("\t%s -", key);
}

static int quota_list(int argc, char **argv)
{
	const char *user;
	bool def;
	const struct rmq_flag flags[] = {
		{"user", RMQ_FLAG_STRING, &user, "", "only this user's entry", 0, 0, NULL},
		{"default", RMQ_FLAG_BOOL, &def, "false", "only the default entry", 0, 0, NULL},
	};
	const struct cmd_spec cs = {"quota list", "quota list [--user NAME | --default]",
				    "Lists quota entries (- = not set: the default's value, or no limit).",
				    flags, RMQ_ARRAY_SIZE(flags), 0, 0, false, false};
	int npos;
	parse_args(&cs, argc, argv, &npos);
	if (def && *user)
		usage_error("give --user NAME or --default, not both");
	char principal[300];
	char *pp = principal;
	snprintf(principal, sizeof(principal), "%s%s", def ? "" : "User:", def ? "" : user);
	Rustmq__Controller__DescribeQuotasRequest req = RUSTMQ__CONTROLLER__DESCRIBE_QUOTAS_REQUEST__INIT;
	req.version = &api_v1;
	if (def || *user) {
		req.principals = &pp;
		req.n_principals = 1;
	}
	connect_broker();
	Rustmq__Controller__DescribeQuotasResponse *r =
		PB_CALL("DescribeQuotas", ADMIN "DescribeQuotas", &req,
			Rustmq__Controller__DescribeQuotasResponse,
			rustmq__controller__describe_quotas_response__descriptor);
	if (r->error_code)
		die_code("DescribeQuotas", NULL, r->error_code, r->error_message);
	for (size_t i = 0; i < r->n_quotas; i++) {
		const Rustmq__Controller__QuotaEntry *q = r->quotas[i];
		printf("%s", q->is_default ? "<default>" : q->principal);
		print_rate(quota_keys[0], q->producer_byte_rate);
		print_rate(quota_keys[1], q->consumer_byte_rate);
		print_rate(quota_keys[2], q->request_rate);
		printf("\n");
	}
	protobuf_c_message_free_unpacked(&r->base, NULL);
	return 0;
}

static const struct command quota_cmds[] = {
	{"set", quota_set, "set limits: set --user alice --producer-byte-rate 1MiB (or --default)"},
	{"list", quota_list, "list quota entries"},
};

int cmd_quota(int argc, char **argv)
{
	return run_subcommand("quota", quota_cmds, RMQ_ARRAY_SIZE(quota_cmds), NULL, argc, argv);
}
