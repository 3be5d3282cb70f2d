/* SPDX-License-Identifier: Apache-2.0 */
/* auth.c - authentication and authorization of calls (auth.h). */
#include "broker/auth.h"

#include "broker/broker.h"
#include "broker/describe.h"
#include "broker/errcode.h"
#include "broker/meta.h"
#include "broker/methods.h"
#include "broker/plain.h"
#include "broker/reply.h"
#include "broker/scram.h"
#include "broker/token.h"
#include "common/metadata.pb-c.h"
#include "common/types.pb-c.h"
#include "core/log.h"
#include "core/offload.h"
#include "core/util.h"

#include <errno.h>
#include <inttypes.h>
#include <openssl/crypto.h>
#include <openssl/rand.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define SESSIONS_MAX 256                         /* SCRAM exchanges in progress per shard */
#define SESSION_NS (30ULL * 1000 * 1000 * 1000)  /* between the two rounds, at most */
#define SESSION_ID_LEN 16
#define BEARER "Bearer "

/* A SCRAM exchange between its two rounds. */
struct session {
	uint8_t id[SESSION_ID_LEN];
	uint64_t expires_ns;
	struct rmq_scram_server s;
};

struct rmq_auth {
	struct session *s[SESSIONS_MAX];
	unsigned plain_pending;          /* PLAIN checks on helper threads */
};

static const struct rmq_broker_config *cfg_of(const struct rmq_call *c)
{
	const struct rmq_bshard *bs = rmq_call_app(c);
	return &bs->b->cfg;
}

/* Whether principal is named by --super-users (comma-separated). */
static bool super_user(const struct rmq_broker_config *cfg, const char *principal)
{
	if (strncmp(principal, RMQ_AUTH_BROKER_PREFIX, strlen(RMQ_AUTH_BROKER_PREFIX)) == 0)
		return true; /* a token only brokers can sign */
	const size_t n = strlen(principal);
	for (const char *p = cfg->super_users; p && *p;) {
		const char *e = strchr(p, ',');
		size_t len = e ? (size_t)(e - p) : strlen(p);
		if (len == n && memcmp(p, principal, n) == 0)
			return true;
		p = e ? e + 1 : p + len;
	}
	return false;
}

/* "User:<name>" into out (RMQ_PRINCIPAL_MAX + 1 bytes); false when it
 * would not fit a principal. */
static bool user_principal(char *out, const char *name)
{
	const size_t n = strlen(name);
	if (n + 5 > RMQ_PRINCIPAL_MAX)
		return false;
	memcpy(out, "User:", 5);
	memcpy(out + 5, name, n + 1);
	return true;
}

/* ---- the authorize hook ------------------------------------------------------------- */

/* Calls anyone may make: authenticating, and asking whether the node is up. */
static bool open_call(enum rmq_rpc rpc)
{
	return rpc == RMQ_RPC_AUTHENTICATE || rpc == RMQ_RPC_HEALTH_CHECK ||
	       rpc == RMQ_RPC_HEALTH_WATCH || rpc == RMQ_RPC_BROKER_HEALTH;
}

/* Calls only brokers make: the controller's Raft traffic, replication, a
 * broker's registration and heartbeats, ISR changes. */
static bool broker_call(const struct rmq_call *c, enum rmq_rpc rpc)
{
	static const char *const paths[] = {
		"/rustmq.controller.ControllerBrokerService/RegisterBroker",
		"/rustmq.controller.ControllerBrokerService/UnregisterBroker",
		"/rustmq.controller.ControllerBrokerService/HeartbeatBroker",
		"/rustmq.broker.BrokerReplicationService/UpdateISR",
	};
	if (rpc == RMQ_RPC_RAFT || rpc == RMQ_RPC_REPLICATE)
		return true;
	const char *path = rmq_call_method(c)->path;
	for (size_t i = 0; i < RMQ_ARRAY_SIZE(paths); i++)
		if (strcmp(path, paths[i]) == 0)
			return true;
	return false;
}

/* Calls that change the cluster rather than a topic or a group: CLUSTER
 * ALTER.  (Topics, groups and their configs are checked by the handlers,
 * which know the names.) */
static bool cluster_alter_call(const struct rmq_call *c)
{
	static const char *const prefixes[] = {
		"/rustmq.controller.ControllerBrokerService/CreatePartitions",
		"/rustmq.controller.ControllerBrokerService/DeletePartitions",
		"/rustmq.controller.ControllerBrokerService/ReassignPartitions",
		"/rustmq.controller.ControllerBrokerService/UpdateClusterConfig",
		"/rustmq.controller.AdminService/ElectLeaders",
		"/rustmq.controller.AdminService/UpsertUsers",
		"/rustmq.controller.AdminService/DeleteUsers",
		"/rustmq.controller.AdminService/CreateAcls",
		"/rustmq.controller.AdminService/DeleteAcls",
		"/rustmq.controller.AdminService/AlterQuotas",
		"/rustmq.controller.ControllerRaftService/AddPeer",
		"/rustmq.controller.ControllerRaftService/RemovePeer",
		"/rustmq.broker.BrokerReplicationService/TransferLeadership",
		"/rustmq.broker.PartitionManagementService/",
	};
	const char *path = rmq_call_method(c)->path;
	for (size_t i = 0; i < RMQ_ARRAY_SIZE(prefixes); i++)
		if (strncmp(path, prefixes[i], strlen(prefixes[i])) == 0)
			return true;
	return false;
}

/* Who exists and who may do what: CLUSTER DESCRIBE (Kafka's DescribeAcls). */
static bool cluster_describe_call(const struct rmq_call *c)
{
	static const char *const paths[] = {
		"/rustmq.controller.AdminService/ListUsers",
		"/rustmq.controller.AdminService/DescribeAcls",
		"/rustmq.controller.AdminService/DescribeQuotas",
	};
	const char *path = rmq_call_method(c)->path;
	for (size_t i = 0; i < RMQ_ARRAY_SIZE(paths); i++)
		if (strcmp(path, paths[i]) == 0)
			return true;
	return false;
}

/* The principal of a Bearer token, into the call; false with why. */
static bool take_token(struct rmq_call *c, const char *bearer, char *why, size_t whylen)
{
	const struct rmq_broker_config *cfg = cfg_of(c);
	struct rmq_token t;
	if (!cfg->token_secret_len) {
		snprintf(why, whylen, "this node issues and accepts no tokens (no --token-secret-file)");
		return false;
	}
	int rc = rmq_token_check(cfg->token_secret, cfg->token_secret_len, bearer, strlen(bearer),
				 rmq_wall_ms(), &t);
	switch (rc) {
	case 0:
		break;
	case -EKEYEXPIRED:
		snprintf(why, whylen, "the session token expired: authenticate again");
		return false;
	case -EKEYREJECTED:
		snprintf(why, whylen, "the session token's signature does not verify");
		return false;
	default:
		snprintf(why, whylen, "the session token is malformed");
		return false;
	}
	/* A user deleted since the token was issued is refused. */
	const struct rmq_bshard *bs = rmq_call_app(c);
	if (strncmp(t.principal, "User:", 5) == 0 && !rmq_sec_user(bs->meta, t.principal + 5)) {
		snprintf(why, whylen, "%s no longer exists", t.principal);
		return false;
	}
	rmq_call_set_principal(c, t.principal);
	return true;
}

enum rmq_grpc_status rmq_auth_authorize(struct rmq_call *c, char *why, size_t whylen)
{
	const struct rmq_broker_config *cfg = cfg_of(c);
	const enum rmq_rpc rpc = rmq_call_rpc(c);
	bool too_long;
	const char *authz = rmq_call_authorization(c, &too_long);
	const char *peer = rmq_call_tls_peer(c);
	if (too_long) {
		snprintf(why, whylen, "the authorization header is over 1 KiB");
		return RMQ_GRPC_UNAUTHENTICATED;
	}
	if (authz && strncmp(authz, BEARER, strlen(BEARER)) == 0) {
		if (!take_token(c, authz + strlen(BEARER), why, whylen))
			return RMQ_GRPC_UNAUTHENTICATED;
	} else if (authz) {
		snprintf(why, whylen, "the authorization header is not 'Bearer <token>'");
		return RMQ_GRPC_UNAUTHENTICATED;
	} else if (peer) {
		char p[RMQ_PRINCIPAL_MAX + 1];
		if (!user_principal(p, peer)) {
			snprintf(why, whylen, "the client certificate's name is too long for a principal");
			return RMQ_GRPC_UNAUTHENTICATED;
		}
		rmq_call_set_principal(c, p);
	} else if (cfg->auth_required && !open_call(rpc)) {
		snprintf(why, whylen,
			 "authentication required: call AuthService.Authenticate and send "
			 "'authorization: Bearer <token>', or present a client certificate");
		return RMQ_GRPC_UNAUTHENTICATED;
	} else {
		rmq_call_set_principal(c, RMQ_AUTH_ANONYMOUS);
	}
	if (!cfg->auth_required)
		return RMQ_GRPC_OK;
	const char *principal = rmq_call_principal(c);
	const struct rmq_bshard *bs = rmq_call_app(c);
	if (broker_call(c, rpc) &&
	    !super_user(cfg, principal) &&
	    !rmq_acl_allowed(bs->meta, principal, RMQ_ACL_CLUSTER, RMQ_ACL_CLUSTER_NAME,
			     RMQ_ACL_CLUSTER_ACTION, false)) {
		snprintf(why, whylen, "%s lacks CLUSTER_ACTION on the cluster: a call only brokers make",
			 principal);
		return RMQ_GRPC_PERMISSION_DENIED;
	}
	if (cluster_alter_call(c) &&
	    !rmq_acl_allowed(bs->meta, principal, RMQ_ACL_CLUSTER, RMQ_ACL_CLUSTER_NAME,
			     RMQ_ACL_ALTER, super_user(cfg, principal))) {
		snprintf(why, whylen, "%s lacks ALTER on the cluster", principal);
		return RMQ_GRPC_PERMISSION_DENIED;
	}
	if (cluster_describe_call(c) &&
	    !rmq_acl_allowed(bs->meta, principal, RMQ_ACL_CLUSTER, RMQ_ACL_CLUSTER_NAME,
			     RMQ_ACL_DESCRIBE, super_user(cfg, principal))) {
		snprintf(why, whylen, "%s lacks DESCRIBE on the cluster", principal);
		return RMQ_GRPC_PERMISSION_DENIED;
	}
	return RMQ_GRPC_OK;
}

static const char *const op_names[] = {
	[RMQ_ACL_ALL] = "ALL", [RMQ_ACL_READ] = "READ", [RMQ_ACL_WRITE] = "WRITE",
	[RMQ_ACL_CREATE] = "CREATE", [RMQ_ACL_DELETE] = "DELETE", [RMQ_ACL_ALTER] = "ALTER",
	[RMQ_ACL_DESCRIBE] = "DESCRIBE", [RMQ_ACL_CLUSTER_ACTION] = "CLUSTER_ACTION",
	[RMQ_ACL_DESCRIBE_CONFIGS] = "DESCRIBE_CONFIGS", [RMQ_ACL_ALTER_CONFIGS] = "ALTER_CONFIGS",
	[RMQ_ACL_IDEMPOTENT_WRITE] = "IDEMPOTENT_WRITE",
};

static const char *const res_names[] = {
	[RMQ_ACL_TOPIC] = "topic", [RMQ_ACL_GROUP] = "group", [RMQ_ACL_CLUSTER] = "cluster",
	[RMQ_ACL_TRANSACTIONAL_ID] = "transactional id",
};

bool rmq_auth_allowed(const struct rmq_call *c, enum rmq_acl_resource type, const char *name,
		      enum rmq_acl_op op, char *why, size_t whylen)
{
	const struct rmq_broker_config *cfg = cfg_of(c);
	if (!cfg->auth_required)
		return true;
	const struct rmq_bshard *bs = rmq_call_app(c);
	const char *principal = rmq_call_principal(c);
	if (!principal)
		principal = RMQ_AUTH_ANONYMOUS;
	if (rmq_acl_allowed(bs->meta, principal, type, name, op, super_user(cfg, principal)))
		return true;
	snprintf(why, whylen, "%s lacks %s on %s %s", principal,
		 (size_t)op < RMQ_ARRAY_SIZE(op_names) && op_names[op] ? op_names[op] : "?",
		 (size_t)type < RMQ_ARRAY_SIZE(res_names) && res_names[type] ? res_names[type] : "?",
		 name);
	return false;
}

int rmq_auth_topics(const struct rmq_call *c, void *const *elems, size_t n, size_t tp_offset,
		    enum rmq_acl_op op, char *why, size_t whylen)
{
	if (!cfg_of(c)->auth_required)
		return EC_OK;
	for (size_t i = 0; i < n; i++) {
		const Rustmq__Common__TopicPartition *tp =
			*(Rustmq__Common__TopicPartition *const *)((const char *)elems[i] + tp_offset);
		const char *topic = tp && tp->topic ? tp->topic : "";
		/* Consecutive entries of one topic: checked once. */
		if (i > 0) {
			const Rustmq__Common__TopicPartition *prev =
				*(Rustmq__Common__TopicPartition *const *)((const char *)elems[i - 1] +
									   tp_offset);
			if (prev && prev->topic && strcmp(prev->topic, topic) == 0)
				continue;
		}
		if (!rmq_auth_allowed(c, RMQ_ACL_TOPIC, topic, op, why, whylen))
			return EC_UNAUTHORIZED;
	}
	return EC_OK;
}

void rmq_auth_filter_topics(const struct rmq_call *c, struct rmq_md_list *l, bool named)
{
	char why[600];
	if (!cfg_of(c)->auth_required)
		return;
	size_t k = 0;
	for (size_t i = 0; i < l->n; i++) {
		Rustmq__Common__TopicMetadata *t = l->v[i];
		if (!t->error_code &&
		    !rmq_auth_allowed(c, RMQ_ACL_TOPIC, t->name, RMQ_ACL_DESCRIBE, why, sizeof(why))) {
			if (!named)
				continue; /* the arena keeps its memory */
			t->error_code = (Rustmq__Common__ErrorCode)EC_UNAUTHORIZED;
			t->n_partitions = 0;
			t->config = NULL;
			t->topic_id = "";
		}
		l->v[k++] = t;
	}
	l->n = k;
}

/* ---- AuthService.Authenticate --------------------------------------------------------- */

static struct rmq_auth *auth_of(struct rmq_bshard *bs)
{
	if (!bs->auth)
		bs->auth = calloc(1, sizeof(*bs->auth));
	return bs->auth;
}

static void session_free(struct rmq_auth *a, size_t i)
{
	rmq_scram_server_clear(&a->s[i]->s);
	OPENSSL_cleanse(a->s[i], sizeof(*a->s[i]));
	free(a->s[i]);
	a->s[i] = NULL;
}

void rmq_auth_fini(struct rmq_bshard *bs)
{
	struct rmq_auth *a = bs->auth;
	for (size_t i = 0; a && i < SESSIONS_MAX; i++)
		if (a->s[i])
			session_free(a, i);
	free(a);
	bs->auth = NULL;
}

/* A free slot (expired exchanges go first), or -1 when all are busy. */
static int session_slot(struct rmq_auth *a)
{
	const uint64_t now = rmq_now_ns();
	int free_at = -1;
	for (int i = 0; i < SESSIONS_MAX; i++) {
		if (a->s[i] && a->s[i]->expires_ns <= now)
			session_free(a, (size_t)i);
		if (!a->s[i] && free_at < 0)
			free_at = i;
	}
	return free_at;
}

/* The user's verifier of mech, decoded into *v; false when there is none. */
static bool verifier_of(const struct rmq_meta *m, const char *user, enum rmq_scram_mech mech,
			struct rmq_scram_verifier *v)
{
	const struct rmq_user *u = rmq_sec_user(m, user);
	const char *text = u ? u->verifier[mech == RMQ_SCRAM_SHA_512 ? RMQ_SCRAM_SHA512
								     : RMQ_SCRAM_SHA256]
			     : NULL;
	return text && rmq_scram_verifier_decode(text, strlen(text), v) == 0;
}

/* Fills a successful answer: a token for "User:<user>". */
static int grant(struct rmq_call *c, const char *user, Rustmq__Common__AuthenticationResponse *r,
		 char *token, size_t cap, Google__Protobuf__Duration *ttl, char *principal)
{
	const struct rmq_broker_config *cfg = cfg_of(c);
	if (!user_principal(principal, user))
		return -EINVAL;
	const uint64_t ttl_ms = cfg->token_ttl_ns / 1000000;
	int n = rmq_token_make(cfg->token_secret, cfg->token_secret_len, principal, strlen(principal),
			       rmq_wall_ms(), ttl_ms, NULL, token, cap);
	if (n < 0)
		return n;
	r->authenticated = true;
	r->session_token.data = (uint8_t *)token;
	r->session_token.len = (size_t)n;
	ttl->seconds = (int64_t)(ttl_ms / 1000);
	ttl->nanos = (int32_t)(ttl_ms % 1000) * 1000000;
	r->expires_in = ttl;
	r->principal = principal;
	return 0;
}

/*
 * PLAIN's check is a PBKDF2 of the password (thousands of HMACs): on a
 * helper thread (core/offload.h), never on the shard, at most
 * PLAIN_PENDING_MAX per shard at once, so a client sending PLAIN in a
 * loop slows only its own answers.
 */
#define PLAIN_PENDING_MAX 8

struct plain_job {
	struct rmq_offload job;           /* first */
	struct rmq_call *call;            /* a reference held */
	struct rmq_bshard *bs;
	bool have;
	struct rmq_scram_verifier v;
	char user[RMQ_PRINCIPAL_MAX + 1];
	char pw[RMQ_SCRAM_PASSWORD_MAX];
	size_t pw_len;
	int rc;
};

static void plain_work(struct rmq_offload *job)
{
	struct plain_job *j = (struct plain_job *)job;
	j->rc = rmq_plain_check(j->have ? &j->v : NULL, j->pw, j->pw_len);
}

static void plain_done(struct rmq_offload *job)
{
	struct plain_job *j = (struct plain_job *)job;
	Rustmq__Common__AuthenticationResponse r = RUSTMQ__COMMON__AUTHENTICATION_RESPONSE__INIT;
	Google__Protobuf__Duration ttl = GOOGLE__PROTOBUF__DURATION__INIT;
	char err[120] = "", token[RMQ_TOKEN_TEXT_MAX + 1], principal[RMQ_PRINCIPAL_MAX + 1];
	j->bs->auth->plain_pending--;
	if (j->rc != 0) {
		r.error_code = EC_AUTHENTICATION_FAILED;
		snprintf(err, sizeof(err), "PLAIN: wrong user name or password");
	} else if (grant(j->call, j->user, &r, token, sizeof(token), &ttl, principal) < 0) {
		r.error_code = EC_UNKNOWN;
		snprintf(err, sizeof(err), "no token could be made");
	}
	r.error_message = err;
	if (!rmq_call_done(j->call))
		rmq_reply_pb(j->call, &r.base);
	rmq_call_unref(j->call);
	OPENSSL_cleanse(j, sizeof(*j));
	free(j);
}

/* Starts the check of pl on a helper thread; false when the shard has
 * PLAIN_PENDING_MAX in progress or memory is short. */
static bool plain_start(struct rmq_call *c, struct rmq_bshard *bs, const struct rmq_plain *pl)
{
	struct rmq_auth *a = auth_of(bs);
	struct plain_job *j = a && a->plain_pending < PLAIN_PENDING_MAX ? calloc(1, sizeof(*j))
									  : NULL;
	if (!j || pl->pw_len > sizeof(j->pw)) {
		free(j);
		return false;
	}
	snprintf(j->user, sizeof(j->user), "%.*s", (int)pl->user_len, pl->user);
	memcpy(j->pw, pl->pw, pl->pw_len);
	j->pw_len = pl->pw_len;
	j->have = verifier_of(bs->meta, j->user, RMQ_SCRAM_SHA_256, &j->v) ||
		  verifier_of(bs->meta, j->user, RMQ_SCRAM_SHA_512, &j->v);
	j->call = c;
	j->bs = bs;
	rmq_call_ref(c);
	a->plain_pending++;
	j->job.work = plain_work;
	j->job.done = plain_done;
	rmq_offload(bs->b->offload, bs->s, &j->job);
	return true;
}

void rmq_auth_authenticate(struct rmq_call *c, void *msg)
{
	Rustmq__Common__AuthenticationRequest *req = msg;
	Rustmq__Common__AuthenticationResponse r = RUSTMQ__COMMON__AUTHENTICATION_RESPONSE__INIT;
	Google__Protobuf__Duration ttl = GOOGLE__PROTOBUF__DURATION__INIT;
	struct rmq_bshard *bs = rmq_call_app(c);
	const struct rmq_broker_config *cfg = &bs->b->cfg;
	char err[300] = "", token[RMQ_TOKEN_TEXT_MAX + 1], principal[RMQ_PRINCIPAL_MAX + 1];
	char out[RMQ_SCRAM_OUT_MAX];
	uint8_t sid[SESSION_ID_LEN];
	enum rmq_scram_mech mech;
	const char *mname = req->mechanism ? req->mechanism : "";
	r.error_code = EC_OK;
	if (!cfg->token_secret_len) {
		r.error_code = EC_UNSUPPORTED_SASL_MECHANISM;
		snprintf(err, sizeof(err),
			 "this node runs without authentication (no --token-secret-file): connect "
			 "without credentials");
	} else if (strcmp(mname, "PLAIN") == 0) {
		struct rmq_plain pl;
		const char *bad;
		if (rmq_plain_parse(req->auth_data.data, req->auth_data.len, &pl, &bad) < 0) {
			r.error_code = EC_AUTHENTICATION_FAILED;
			snprintf(err, sizeof(err), "PLAIN: %s", bad);
		} else if (plain_start(c, bs, &pl)) {
			rustmq__common__authentication_request__free_unpacked(req, NULL);
			return; /* answered when the helper thread has checked it */
		} else {
			r.error_code = EC_RESOURCE_EXHAUSTED;
			snprintf(err, sizeof(err), "too many authentications in progress on this shard; retry");
		}
	} else if (rmq_scram_mech_parse(mname, strlen(mname), &mech) == 0) {
		struct rmq_auth *a = auth_of(bs);
		size_t out_len = 0;
		if (!a) {
			r.error_code = EC_RESOURCE_EXHAUSTED;
			snprintf(err, sizeof(err), "out of memory");
		} else if (req->session_id.len == 0) {
			/* Round 1: client-first → server-first. */
			int slot = session_slot(a);
			const char *user = NULL;
			struct rmq_scram_verifier v;
			struct session *s = slot >= 0 ? calloc(1, sizeof(*s)) : NULL;
			if (!s) {
				r.error_code = EC_RESOURCE_EXHAUSTED;
				snprintf(err, sizeof(err), "too many authentications in progress; retry");
			} else {
				rmq_scram_server_init(&s->s, mech);
				int rc = rmq_scram_server_client_first(&s->s, req->auth_data.data,
								       req->auth_data.len, &user);
				bool have = rc == 0 && verifier_of(bs->meta, user, mech, &v);
				if (rc == 0)
					rc = rmq_scram_server_first(&s->s, have ? &v : NULL, cfg->token_secret,
								    cfg->token_secret_len, out, sizeof(out),
								    &out_len);
				if (rc == 0 && RAND_bytes(s->id, SESSION_ID_LEN) != 1)
					rc = -EIO;
				if (rc < 0) {
					r.error_code = EC_AUTHENTICATION_FAILED;
					snprintf(err, sizeof(err), "%s: %s", mname,
						 rmq_scram_server_why(&s->s)[0] ? rmq_scram_server_why(&s->s)
										 : "refused");
					rmq_scram_server_clear(&s->s);
					free(s);
				} else {
					s->expires_ns = rmq_now_ns() + SESSION_NS;
					a->s[slot] = s;
					memcpy(sid, s->id, SESSION_ID_LEN);
					r.session_id.data = sid;
					r.session_id.len = SESSION_ID_LEN;
					r.challenge.data = (uint8_t *)out;
					r.challenge.len = out_len;
				}
				OPENSSL_cleanse(&v, sizeof(v));
			}
		} else {
			/* Round 2: client-final → server-final and a token. */
			int slot = -1;
			for (int i = 0; i < SESSIONS_MAX && slot < 0; i++)
				if (a->s[i] && req->session_id.len == SESSION_ID_LEN &&
				    CRYPTO_memcmp(a->s[i]->id, req->session_id.data, SESSION_ID_LEN) == 0 &&
				    a->s[i]->expires_ns > rmq_now_ns() && a->s[i]->s.mech == mech)
					slot = i;
			if (slot < 0) {
				r.error_code = EC_AUTHENTICATION_FAILED;
				snprintf(err, sizeof(err),
					 "%s: no exchange in progress with that session_id on this "
					 "connection's shard (expired after 30 s?): start again",
					 mname);
			} else {
				struct session *s = a->s[slot];
				char user[RMQ_PRINCIPAL_MAX + 1];
				snprintf(user, sizeof(user), "%.*s", (int)s->s.user_len, s->s.user);
				int rc = rmq_scram_server_client_final(&s->s, req->auth_data.data,
								       req->auth_data.len, out, sizeof(out),
								       &out_len);
				r.challenge.data = (uint8_t *)out; /* v=signature, or e=error */
				r.challenge.len = out_len;
				if (rc == 0 && grant(c, user, &r, token, sizeof(token), &ttl, principal) == 0) {
					rmq_info("%s authenticated (%s)", principal, mname);
				} else {
					r.error_code = EC_AUTHENTICATION_FAILED;
					snprintf(err, sizeof(err), "%s: %s", mname,
						 rc == -EACCES ? "wrong user name or password"
							       : rmq_scram_server_why(&s->s));
				}
				session_free(a, (size_t)slot);
			}
		}
	} else {
		r.error_code = EC_UNSUPPORTED_SASL_MECHANISM;
		snprintf(err, sizeof(err),
			 "mechanism '%s' is not supported: PLAIN, SCRAM-SHA-256, SCRAM-SHA-512", mname);
	}
	if (r.error_code != EC_OK)
		r.authenticated = false;
	r.error_message = err;
	rmq_reply_pb(c, &r.base);
	OPENSSL_cleanse(out, sizeof(out));
	rustmq__common__authentication_request__free_unpacked(req, NULL);
}
