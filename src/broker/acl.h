/* SPDX-License-Identifier: Apache-2.0 */
/*
 * acl.h - users (SCRAM verifiers), ACLs and quotas: the security part of
 * the controller's state, its validation, and the checks brokers make.
 *
 * Where it lives.  A struct rmq_sec is immutable and reference-counted; a
 * metadata snapshot (meta.h) points at one (NULL: none of them yet).
 * Copies of a snapshot share it (rmq_meta_copy takes a reference), so an
 * ISR change does not copy 10000 ACLs; only a security change (sec_admin.c,
 * on the controller's leader) makes a new one, through a builder:
 *
 *   cur->sec ──rmq_sec_edit──► builder ──add/remove…──► rmq_sec_done ──► new sec
 *                                                     (sorted, indexed)
 *
 * It is encoded into rustmq.controller.ControllerState fields 7..9 with the
 * rest of the state (every command and snapshot holds it; the heartbeat
 * image gives it to brokers outside the controller), so every node has it.
 *
 * Lookups.  rmq_acl_allowed and rmq_quota_for read the caller's snapshot
 * only: no lock, no allocation.  ACL entries are kept sorted by
 *     (resource type, pattern type, name, principal, operation, permission)
 * with the start of each (resource type, pattern type) run indexed, so a
 * check costs two binary searches for the LITERAL name and "*", and one per
 * prefix length of the name for PREFIXED entries: O(len(name) * log n).
 *
 *   ENTRY FIELD   VALUES (admin.proto's enums, Kafka's numbers)
 *   resource      TOPIC 2, GROUP 3, CLUSTER 4 ("rmq-cluster"), TRANSACTIONAL_ID 5
 *   pattern       LITERAL 3 (the name, or "*" = any), PREFIXED 4
 *   operation     ALL 2, READ 3 … IDEMPOTENT_WRITE 12
 *   permission    DENY 2, ALLOW 3
 *   principal     "User:NAME" or "User:*"
 */
#ifndef RMQ_BROKER_ACL_H
#define RMQ_BROKER_ACL_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

struct rmq_meta;

#define RMQ_SEC_USERS_MAX 10000
#define RMQ_SEC_ACLS_MAX 10000
#define RMQ_SEC_QUOTAS_MAX 10000
#define RMQ_SEC_REQUEST_MAX 1000   /* entries of one admin request */
#define RMQ_SEC_NAME_MAX 255       /* a user, principal's name or resource name, bytes */
#define RMQ_SEC_VERIFIER_MAX 512   /* an encoded SCRAM verifier, bytes */
#define RMQ_SEC_QUOTA_VALUE_MAX (1ULL << 53)
#define RMQ_ACL_CLUSTER_NAME "rmq-cluster"

enum rmq_acl_resource {
	RMQ_ACL_RES_ANY = 1, /* filters only */
	RMQ_ACL_TOPIC = 2,
	RMQ_ACL_GROUP = 3,
	RMQ_ACL_CLUSTER = 4,
	RMQ_ACL_TRANSACTIONAL_ID = 5,
};
#define RMQ_ACL_RES_MAX 5

enum rmq_acl_pattern {
	RMQ_ACL_PAT_ANY = 1,   /* filters only */
	RMQ_ACL_PAT_MATCH = 2, /* filters only */
	RMQ_ACL_LITERAL = 3,
	RMQ_ACL_PREFIXED = 4,
};

enum rmq_acl_op {
	RMQ_ACL_OP_ANY = 1, /* filters only */
	RMQ_ACL_ALL = 2,
	RMQ_ACL_READ = 3,
	RMQ_ACL_WRITE = 4,
	RMQ_ACL_CREATE = 5,
	RMQ_ACL_DELETE = 6,
	RMQ_ACL_ALTER = 7,
	RMQ_ACL_DESCRIBE = 8,
	RMQ_ACL_CLUSTER_ACTION = 9,
	RMQ_ACL_DESCRIBE_CONFIGS = 10,
	RMQ_ACL_ALTER_CONFIGS = 11,
	RMQ_ACL_IDEMPOTENT_WRITE = 12,
};
#define RMQ_ACL_OP_MAX 12

enum rmq_acl_perm {
	RMQ_ACL_PERM_ANY = 1, /* filters only */
	RMQ_ACL_DENY = 2,
	RMQ_ACL_ALLOW = 3,
};

/* One ACL entry (or, with the ANY values and empty strings, a filter). */
struct rmq_acl {
	const char *principal;  /* "User:NAME", "User:*"; owned by the sec */
	const char *name;       /* the resource name */
	uint8_t resource, pattern, op, perm;
};

/* SCRAM mechanisms, the index of a user's verifiers. */
enum { RMQ_SCRAM_SHA256, RMQ_SCRAM_SHA512, RMQ_SCRAM_MECHS };
extern const char *const rmq_scram_mech_names[RMQ_SCRAM_MECHS];

struct rmq_user {
	const char *name;
	const char *verifier[RMQ_SCRAM_MECHS]; /* NULL: none of that mechanism */
};

/* Quota limits; 0 = not set (unlimited). */
struct rmq_quota {
	const char *principal;  /* "" = the default */
	uint64_t produce_bps, fetch_bps, request_rate;
};

struct rmq_sec;

/* The security part of m: its users, ACL entries and quotas, each sorted
 * as the file comment says.  Valid while m is held; empty for none. */
size_t rmq_sec_users(const struct rmq_meta *m, const struct rmq_user **out);
size_t rmq_sec_acls(const struct rmq_meta *m, const struct rmq_acl **out);
size_t rmq_sec_quotas(const struct rmq_meta *m, const struct rmq_quota **out);
/* The user named name in m, or NULL. */
const struct rmq_user *rmq_sec_user(const struct rmq_meta *m, const char *name);

/*
 * Whether principal may do op on the resource of type `type` named name,
 * by m's ACLs: true for a super user; else false when a DENY entry
 * matches, true when an ALLOW entry matches, false when none does.  name
 * is RMQ_ACL_CLUSTER_NAME for the cluster.  Reads m only: no lock, no
 * allocation; O(len(name) * log entries).
 */
bool rmq_acl_allowed(const struct rmq_meta *m, const char *principal, enum rmq_acl_resource type,
		     const char *name, enum rmq_acl_op op, bool super_user);

/* Whether entry e matches the resource (type, name) for principal and op
 * (ignoring its permission), by the rules above. */
bool rmq_acl_matches(const struct rmq_acl *e, const char *principal, enum rmq_acl_resource type,
		     const char *name, enum rmq_acl_op op);

/* Whether entry e is selected by filter f (admin.proto AclFilter). */
bool rmq_acl_filter_matches(const struct rmq_acl *f, const struct rmq_acl *e);

/*
 * The limits of principal: each key from its own entry, else from the
 * default entry, else 0 (unlimited), into *out (out->principal: the
 * principal's own entry's, or "" when it has none).  Returns true when
 * any key is set.
 */
bool rmq_quota_for(const struct rmq_meta *m, const char *principal, struct rmq_quota *out);

/* ---- validation (each returns 0, or -1 with a one-line reason in err) ---- */

int rmq_sec_check_user_name(const char *name, char *err, size_t errlen);
/* The mechanism of verifier v (RMQ_SCRAM_*) and its iterations, when v
 * has the shape "SCRAM-SHA-256:<iterations>:<b64>:<b64>:<b64>". */
int rmq_sec_check_verifier(const char *v, int *mech, uint32_t *iterations, char *err,
			   size_t errlen);
/* "User:NAME" or "User:*". */
int rmq_sec_check_principal(const char *p, char *err, size_t errlen);
/* An entry to store (no ANY values). */
int rmq_acl_check(const struct rmq_acl *e, const char *host, char *err, size_t errlen);
/* A filter (ANY values allowed). */
int rmq_acl_filter_check(const struct rmq_acl *f, const char *host, char *err, size_t errlen);
/* A mechanism name: its index, or -1. */
int rmq_scram_mech(const char *name);

/* ---- changes (on the controller's leader) -------------------------------- */

struct rmq_sec_builder;

/* A builder holding a copy of m's security state.  NULL on allocation
 * failure. */
struct rmq_sec_builder *rmq_sec_edit(const struct rmq_meta *m);
void rmq_sec_builder_free(struct rmq_sec_builder *b);

/* Each returns 0, or -ENOMEM, or (where said) -1 with a reason in err;
 * the builder is unchanged on failure.  Arguments are copied. */
/* Sets name's verifier of its mechanism (the user made when absent): -1
 * when that would pass RMQ_SEC_USERS_MAX. */
int rmq_sec_set_verifier(struct rmq_sec_builder *b, const char *name, int mech, const char *v,
			 char *err, size_t errlen);
/* Removes name's verifier of mech (mech < 0: the user): -1 when there is
 * no such user or verifier. */
int rmq_sec_remove_user(struct rmq_sec_builder *b, const char *name, int mech, char *err,
			size_t errlen);
/* Adds e (checked: rmq_acl_check) unless it exists: -1 past RMQ_SEC_ACLS_MAX. */
int rmq_sec_add_acl(struct rmq_sec_builder *b, const struct rmq_acl *e, char *err, size_t errlen);
/* Removes every entry f selects; each one removed is passed to removed(arg, e)
 * first (e valid during the call).  Returns how many, or -ENOMEM. */
long rmq_sec_remove_acls(struct rmq_sec_builder *b, const struct rmq_acl *f,
			 void (*removed)(void *arg, const struct rmq_acl *e), void *arg);
/* Sets principal's key (0 produce, 1 fetch, 2 request rate) to value (0:
 * unset it; an entry without keys goes): -1 past RMQ_SEC_QUOTAS_MAX. */
int rmq_sec_set_quota(struct rmq_sec_builder *b, const char *principal, int key, uint64_t value,
		      char *err, size_t errlen);
/* Whether anything was changed. */
bool rmq_sec_changed(const struct rmq_sec_builder *b);

/* Frees b and gives m the state it built (m's old one released).  Returns
 * 0 or -ENOMEM (m unchanged, b freed). */
int rmq_sec_done(struct rmq_sec_builder *b, struct rmq_meta *m);

/* ---- for meta.c ------------------------------------------------------------ */

void rmq_sec_ref(struct rmq_sec *s);
void rmq_sec_unref(struct rmq_sec *s);

/* Points st's users, acls and quotas at s's (NULL: none); *mem (free it
 * after packing st) holds the records made for it.  Returns 0 or -ENOMEM. */
struct Rustmq__Controller__ControllerState;
int rmq_sec_to_state(const struct rmq_sec *s, struct Rustmq__Controller__ControllerState *st,
		     void **mem);
/* The reverse: *out is NULL when st has none.  Returns 0, RMQ_ECORRUPT
 * (an invalid or repeated entry, logged) or -ENOMEM. */
int rmq_sec_from_state(const struct Rustmq__Controller__ControllerState *st,
		       struct rmq_sec **out);

#endif /* RMQ_BROKER_ACL_H */
