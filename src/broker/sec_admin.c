/* SPDX-License-Identifier: Apache-2.0 */
/*
 * sec_admin.c - AdminService UpsertUsers, DeleteUsers, ListUsers,
 * CreateAcls, DeleteAcls, DescribeAcls, AlterQuotas, DescribeQuotas
 * (sec_admin.h): the users, ACLs and quotas of the controller's state
 * (acl.h).
 *
 * A change is decided as UpdateClusterConfig's are (cluster_config.c):
 *
 *   any node ──forward.h──► the controller's leader: each entry checked
 *   (bad input, a duplicate in the request: INVALID_REQUEST, nothing sent)
 *        └─► rmq_ctrl_submit_from ─► build() on shard 0: the entries applied
 *            to a copy of the state (acl.h's builder); limits and "no such
 *            user" decided there ─► one Raft entry ─► applied everywhere
 *        ◄── back() on the receiving shard: one result per entry
 *
 * Entries succeed or fail on their own: the valid ones of a request are
 * committed together, in one entry.  A change that changes nothing (an ACL
 * that exists) commits nothing and answers OK.  If the commit fails
 * (NOT_CONTROLLER, TIMEOUT) every entry that was to be applied gets that
 * code.  The descriptions answer from the receiving shard's snapshot, so a
 * follower answers what it has applied; never a verifier (ListUsers gives
 * mechanisms and iteration counts).
 */
#include "broker/sec_admin.h"

#include "broker/acl.h"
#include "broker/broker.h"
#include "broker/controller.h"
#include "broker/errcode.h"
#include "broker/forward.h"
#include "broker/methods.h"
#include "broker/reply.h"
#include "controller/admin.pb-c.h"
#include "core/util.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

enum sec_kind { UPSERT_USERS, DELETE_USERS, CREATE_ACLS, DELETE_ACLS, ALTER_QUOTAS };

/* One entry's outcome. */
struct sec_res {
	bool valid;                   /* passed the checks before build */
	int code;
	char err[256];
	/* DeleteAcls: what the filter deleted (each binding and its strings
	 * one allocation). */
	Rustmq__Controller__AclBinding **deleted;
	size_t ndeleted, cap;
	bool nomem;
};

struct sec_req {
	struct rmq_ctrl_req req;      /* req.code: the controller's answer */
	struct rmq_call *call;
	enum sec_kind kind;
	void *msg;                    /* the decoded request (read on shard 0 by build) */
	size_t n;
	struct sec_res *res;
};

static uint8_t u8(int v)
{
	return v >= 0 && v <= 255 ? (uint8_t)v : 0; /* 0: UNKNOWN, refused by the checks */
}

static struct rmq_acl acl_of_binding(const Rustmq__Controller__AclBinding *a)
{
	return (struct rmq_acl){a->principal, a->resource_name, u8(a->resource_type),
				u8(a->pattern_type), u8(a->operation), u8(a->permission)};
}

static struct rmq_acl acl_of_filter(const Rustmq__Controller__AclFilter *f)
{
	return (struct rmq_acl){f->principal, f->resource_name, u8(f->resource_type),
				u8(f->pattern_type), u8(f->operation), u8(f->permission)};
}

/* Refuses r with the reason already in r->err. */
static void refused(struct sec_res *r)
{
	r->valid = false;
	r->code = EC_INVALID_REQUEST;
}

static void bad(struct sec_res *r, const char *fmt, const char *arg)
{
	snprintf(r->err, sizeof(r->err), fmt, arg);
	refused(r);
}

/* ---- requests: the entries, and their checks before build ------------------ */

static size_t entries(enum sec_kind k, const void *msg)
{
	switch (k) {
	case UPSERT_USERS: return ((const Rustmq__Controller__UpsertUsersRequest *)msg)->n_users;
	case DELETE_USERS: return ((const Rustmq__Controller__DeleteUsersRequest *)msg)->n_users;
	case CREATE_ACLS: return ((const Rustmq__Controller__CreateAclsRequest *)msg)->n_acls;
	case DELETE_ACLS: return ((const Rustmq__Controller__DeleteAclsRequest *)msg)->n_filters;
	case ALTER_QUOTAS: return ((const Rustmq__Controller__AlterQuotasRequest *)msg)->n_alterations;
	}
	return 0;
}

static const char *const quota_keys[3] = {"producer_byte_rate", "consumer_byte_rate",
					  "request_rate"};

static int quota_key(const char *k)
{
	for (int i = 0; i < 3; i++)
		if (strcmp(k, quota_keys[i]) == 0)
			return i;
	return -1;
}

/* The principal an alteration is about ("" for the default), or NULL with
 * r refused. */
static const char *quota_principal(const Rustmq__Controller__QuotaAlteration *a, struct sec_res *r)
{
	if (a->is_default) {
		if (a->principal[0]) {
			bad(r, "%s", "give either is_default or a principal, not both");
			return NULL;
		}
		return "";
	}
	if (rmq_sec_check_principal(a->principal, r->err, sizeof(r->err)) < 0) {
		refused(r);
		return NULL;
	}
	return a->principal;
}

/* Checks entry i of q's request, and that no entry before it is the same. */
static void check_entry(struct sec_req *q, size_t i)
{
	struct sec_res *r = &q->res[i];
	r->valid = true;
	switch (q->kind) {
	case UPSERT_USERS: {
		const Rustmq__Controller__UpsertUsersRequest *m = q->msg;
		const Rustmq__Controller__UserUpsertion *u = m->users[i];
		int mech, mech2;
		uint32_t it;
		if (rmq_sec_check_user_name(u->name, r->err, sizeof(r->err)) < 0 ||
		    rmq_sec_check_verifier(u->verifier, &mech, &it, r->err, sizeof(r->err)) < 0) {
			refused(r);
			return;
		}
		for (size_t k = 0; k < i; k++)
			if (strcmp(m->users[k]->name, u->name) == 0 &&
			    rmq_sec_check_verifier(m->users[k]->verifier, &mech2, &it, NULL, 0) == 0 &&
			    mech2 == mech) {
				bad(r, "user '%.64s' with this mechanism is repeated in the request",
				    u->name);
				return;
			}
		return;
	}
	case DELETE_USERS: {
		const Rustmq__Controller__DeleteUsersRequest *m = q->msg;
		const Rustmq__Controller__UserDeletion *u = m->users[i];
		if (rmq_sec_check_user_name(u->name, r->err, sizeof(r->err)) < 0) {
			refused(r);
			return;
		}
		if (u->mechanism[0] && rmq_scram_mech(u->mechanism) < 0) {
			bad(r, "unknown mechanism '%.32s' (SCRAM-SHA-256, SCRAM-SHA-512, or empty for "
			    "the user)", u->mechanism);
			return;
		}
		for (size_t k = 0; k < i; k++)
			if (strcmp(m->users[k]->name, u->name) == 0 &&
			    strcmp(m->users[k]->mechanism, u->mechanism) == 0) {
				bad(r, "user '%.64s' is repeated in the request", u->name);
				return;
			}
		return;
	}
	case CREATE_ACLS: {
		const Rustmq__Controller__CreateAclsRequest *m = q->msg;
		struct rmq_acl e = acl_of_binding(m->acls[i]);
		if (rmq_acl_check(&e, m->acls[i]->host, r->err, sizeof(r->err)) < 0) {
			refused(r);
			return;
		}
		for (size_t k = 0; k < i; k++) {
			struct rmq_acl o = acl_of_binding(m->acls[k]);
			if (o.resource == e.resource && o.pattern == e.pattern && o.op == e.op &&
			    o.perm == e.perm && strcmp(o.name, e.name) == 0 &&
			    strcmp(o.principal, e.principal) == 0) {
				bad(r, "%s", "this entry is repeated in the request");
				return;
			}
		}
		return;
	}
	case DELETE_ACLS: {
		const Rustmq__Controller__DeleteAclsRequest *m = q->msg;
		struct rmq_acl f = acl_of_filter(m->filters[i]);
		if (rmq_acl_filter_check(&f, m->filters[i]->host, r->err, sizeof(r->err)) < 0)
			refused(r);
		return;
	}
	case ALTER_QUOTAS: {
		const Rustmq__Controller__AlterQuotasRequest *m = q->msg;
		const Rustmq__Controller__QuotaAlteration *a = m->alterations[i];
		const char *p = quota_principal(a, r);
		if (!p)
			return;
		if (a->n_ops == 0 || a->n_ops > 3) {
			bad(r, "%s", "give 1 to 3 operations (producer_byte_rate, consumer_byte_rate, "
			    "request_rate)");
			return;
		}
		bool seen[3] = {false, false, false};
		for (size_t k = 0; k < a->n_ops; k++) {
			const Rustmq__Controller__QuotaOp *op = a->ops[k];
			int key = quota_key(op->key);
			if (key < 0) {
				bad(r, "unknown quota key '%.64s' (producer_byte_rate, consumer_byte_rate, "
				    "request_rate)", op->key);
				return;
			}
			if (seen[key]) {
				bad(r, "key %s is repeated", quota_keys[key]);
				return;
			}
			seen[key] = true;
			if (op->remove ? op->value != 0
				       : op->value == 0 || op->value > RMQ_SEC_QUOTA_VALUE_MAX) {
				bad(r, op->remove ? "%s: give no value with remove"
						  : "%s: the value must be from 1 to 2^53 (remove unsets it)",
				    quota_keys[key]);
				return;
			}
		}
		for (size_t k = 0; k < i; k++) {
			const Rustmq__Controller__QuotaAlteration *o = m->alterations[k];
			if (o->is_default == a->is_default && strcmp(o->principal, a->principal) == 0) {
				bad(r, "'%.64s' is repeated in the request",
				    a->is_default ? "the default" : a->principal);
				return;
			}
		}
		return;
	}
	}
}

/* ---- on the controller's leader ------------------------------------------- */

static void note_deleted(void *arg, const struct rmq_acl *e)
{
	struct sec_res *r = arg;
	if (r->nomem)
		return;
	if (r->ndeleted == r->cap) {
		size_t c = r->cap ? r->cap * 2 : 8;
		void *p = realloc(r->deleted, c * sizeof(*r->deleted));
		if (!p) {
			r->nomem = true;
			return;
		}
		r->deleted = p;
		r->cap = c;
	}
	size_t lp = strlen(e->principal) + 1, ln = strlen(e->name) + 1;
	Rustmq__Controller__AclBinding *a = malloc(sizeof(*a) + lp + ln);
	if (!a) {
		r->nomem = true;
		return;
	}
	rustmq__controller__acl_binding__init(a);
	a->principal = (char *)(a + 1);
	a->resource_name = a->principal + lp;
	memcpy(a->principal, e->principal, lp);
	memcpy(a->resource_name, e->name, ln);
	a->resource_type = (Rustmq__Controller__AclResourceType)e->resource;
	a->pattern_type = (Rustmq__Controller__AclPatternType)e->pattern;
	a->operation = (Rustmq__Controller__AclOperation)e->op;
	a->permission = (Rustmq__Controller__AclPermission)e->perm;
	a->host = "*";
	r->deleted[r->ndeleted++] = a;
}

static void drop_deleted(struct sec_res *r)
{
	for (size_t k = 0; k < r->ndeleted; k++)
		free(r->deleted[k]);
	free(r->deleted);
	r->deleted = NULL;
	r->ndeleted = r->cap = 0;
	r->nomem = false;
}

/* Applies entry i to b: 0, -1 (refused: r->err), or -ENOMEM. */
static int apply_entry(struct sec_req *q, size_t i, struct rmq_sec_builder *b)
{
	struct sec_res *r = &q->res[i];
	switch (q->kind) {
	case UPSERT_USERS: {
		const Rustmq__Controller__UserUpsertion *u =
			((const Rustmq__Controller__UpsertUsersRequest *)q->msg)->users[i];
		int mech;
		uint32_t it;
		(void)rmq_sec_check_verifier(u->verifier, &mech, &it, NULL, 0); /* checked */
		return rmq_sec_set_verifier(b, u->name, mech, u->verifier, r->err, sizeof(r->err));
	}
	case DELETE_USERS: {
		const Rustmq__Controller__UserDeletion *u =
			((const Rustmq__Controller__DeleteUsersRequest *)q->msg)->users[i];
		return rmq_sec_remove_user(b, u->name, u->mechanism[0] ? rmq_scram_mech(u->mechanism) : -1,
					   r->err, sizeof(r->err));
	}
	case CREATE_ACLS: {
		struct rmq_acl e =
			acl_of_binding(((const Rustmq__Controller__CreateAclsRequest *)q->msg)->acls[i]);
		return rmq_sec_add_acl(b, &e, r->err, sizeof(r->err));
	}
	case DELETE_ACLS: {
		struct rmq_acl f =
			acl_of_filter(((const Rustmq__Controller__DeleteAclsRequest *)q->msg)->filters[i]);
		long n = rmq_sec_remove_acls(b, &f, note_deleted, r);
		return n < 0 || r->nomem ? -ENOMEM : 0;
	}
	case ALTER_QUOTAS: {
		const Rustmq__Controller__QuotaAlteration *a =
			((const Rustmq__Controller__AlterQuotasRequest *)q->msg)->alterations[i];
		const char *p = a->is_default ? "" : a->principal;
		/* Each key of the alteration, or none: removals first cannot
		 * fail, so only the first key set can hit the entry limit. */
		for (size_t k = 0; k < a->n_ops; k++) {
			const Rustmq__Controller__QuotaOp *op = a->ops[k];
			int rc = rmq_sec_set_quota(b, p, quota_key(op->key), op->remove ? 0 : op->value,
						   r->err, sizeof(r->err));
			if (rc < 0)
				return rc;
		}
		return 0;
	}
	}
	return -EINVAL;
}

static struct rmq_meta *sec_build(struct rmq_ctrl_req *req, const struct rmq_meta *cur)
{
	struct sec_req *q = RMQ_CONTAINER_OF(req, struct sec_req, req);
	struct rmq_sec_builder *b = rmq_sec_edit(cur);
	int rc = b ? 0 : -ENOMEM;
	for (size_t i = 0; i < q->n; i++) {
		struct sec_res *r = &q->res[i];
		if (!r->valid)
			continue;
		drop_deleted(r);
		r->code = EC_OK;
		r->err[0] = '\0';
		if (rc == 0)
			rc = apply_entry(q, i, b);
		if (rc == -1) {
			r->code = EC_INVALID_REQUEST;
			rc = 0;
		} else if (rc < 0) {
			r->code = EC_RESOURCE_EXHAUSTED;
			snprintf(r->err, sizeof(r->err), "out of memory on the controller's leader");
		}
	}
	if (rc < 0) { /* nothing is applied after memory ran out: none at all */
		for (size_t i = 0; i < q->n; i++) {
			if (!q->res[i].valid)
				continue;
			drop_deleted(&q->res[i]);
			q->res[i].code = EC_RESOURCE_EXHAUSTED;
			snprintf(q->res[i].err, sizeof(q->res[i].err), "out of memory on the "
				 "controller's leader: nothing changed");
		}
		rmq_sec_builder_free(b);
		return NULL;
	}
	if (!rmq_sec_changed(b)) {
		rmq_sec_builder_free(b);
		return NULL;
	}
	struct rmq_meta *m = rmq_meta_copy(cur, 0);
	if (!m || rmq_sec_done(b, m) < 0) {
		if (!m)
			rmq_sec_builder_free(b);
		rmq_meta_free(m);
		for (size_t i = 0; i < q->n; i++) {
			if (!q->res[i].valid)
				continue;
			drop_deleted(&q->res[i]);
			q->res[i].code = EC_RESOURCE_EXHAUSTED;
			snprintf(q->res[i].err, sizeof(q->res[i].err), "out of memory on the "
				 "controller's leader: nothing changed");
		}
		return NULL;
	}
	return m;
}

/* ---- the answer, on the receiving shard ----------------------------------- */

static void sec_free(struct sec_req *q)
{
	for (size_t i = 0; i < q->n; i++)
		drop_deleted(&q->res[i]);
	free(q->res);
	if (q->msg)
		protobuf_c_message_free_unpacked(q->msg, NULL);
	rmq_call_unref(q->call);
	free(q);
}

/* The name an entry's result carries (users and quotas). */
static const char *entry_name(const struct sec_req *q, size_t i)
{
	switch (q->kind) {
	case UPSERT_USERS: return ((const Rustmq__Controller__UpsertUsersRequest *)q->msg)->users[i]->name;
	case DELETE_USERS: return ((const Rustmq__Controller__DeleteUsersRequest *)q->msg)->users[i]->name;
	case ALTER_QUOTAS:
		return ((const Rustmq__Controller__AlterQuotasRequest *)q->msg)->alterations[i]->principal;
	default: return "";
	}
}

static void sec_reply(struct sec_req *q)
{
	struct rmq_bshard *bs = rmq_bshard_current();
	uint64_t offset = q->req.code == EC_OK ? bs->meta->version : 0;
	/* Results of every kind in one allocation: n records and n pointers. */
	size_t rec = sizeof(Rustmq__Controller__DeleteAclsResult);
	if (sizeof(Rustmq__Controller__UserResult) > rec)
		rec = sizeof(Rustmq__Controller__UserResult);
	if (sizeof(Rustmq__Controller__AclResult) > rec)
		rec = sizeof(Rustmq__Controller__AclResult);
	if (sizeof(Rustmq__Controller__QuotaResult) > rec)
		rec = sizeof(Rustmq__Controller__QuotaResult);
	uint8_t *mem = calloc(q->n + 1, rec + sizeof(void *));
	if (!mem) {
		rmq_call_finish(q->call, RMQ_GRPC_RESOURCE_EXHAUSTED, "out of memory");
		return;
	}
	void **ptrs = (void **)mem;
	uint8_t *recs = mem + (q->n + 1) * sizeof(void *);
	for (size_t i = 0; i < q->n; i++) {
		void *p = recs + i * rec;
		ptrs[i] = p;
		struct sec_res *r = &q->res[i];
		Rustmq__Common__ErrorCode code = (Rustmq__Common__ErrorCode)r->code;
		switch (q->kind) {
		case UPSERT_USERS:
		case DELETE_USERS: {
			Rustmq__Controller__UserResult *u = p;
			rustmq__controller__user_result__init(u);
			u->name = (char *)entry_name(q, i);
			u->error_code = code;
			u->error_message = r->err;
			break;
		}
		case CREATE_ACLS: {
			Rustmq__Controller__AclResult *a = p;
			rustmq__controller__acl_result__init(a);
			a->error_code = code;
			a->error_message = r->err;
			break;
		}
		case DELETE_ACLS: {
			Rustmq__Controller__DeleteAclsResult *d = p;
			rustmq__controller__delete_acls_result__init(d);
			d->error_code = code;
			d->error_message = r->err;
			if (r->code == EC_OK) {
				d->deleted = r->deleted;
				d->n_deleted = r->ndeleted;
			}
			break;
		}
		case ALTER_QUOTAS: {
			Rustmq__Controller__QuotaResult *a = p;
			rustmq__controller__quota_result__init(a);
			a->principal = (char *)entry_name(q, i);
			a->error_code = code;
			a->error_message = r->err;
			break;
		}
		}
	}
	switch (q->kind) {
	case UPSERT_USERS: {
		Rustmq__Controller__UpsertUsersResponse m = RUSTMQ__CONTROLLER__UPSERT_USERS_RESPONSE__INIT;
		m.results = (Rustmq__Controller__UserResult **)ptrs;
		m.n_results = q->n;
		m.metadata_offset = offset;
		rmq_reply_pb(q->call, &m.base);
		break;
	}
	case DELETE_USERS: {
		Rustmq__Controller__DeleteUsersResponse m = RUSTMQ__CONTROLLER__DELETE_USERS_RESPONSE__INIT;
		m.results = (Rustmq__Controller__UserResult **)ptrs;
		m.n_results = q->n;
		m.metadata_offset = offset;
		rmq_reply_pb(q->call, &m.base);
		break;
	}
	case CREATE_ACLS: {
		Rustmq__Controller__CreateAclsResponse m = RUSTMQ__CONTROLLER__CREATE_ACLS_RESPONSE__INIT;
		m.results = (Rustmq__Controller__AclResult **)ptrs;
		m.n_results = q->n;
		m.metadata_offset = offset;
		rmq_reply_pb(q->call, &m.base);
		break;
	}
	case DELETE_ACLS: {
		Rustmq__Controller__DeleteAclsResponse m = RUSTMQ__CONTROLLER__DELETE_ACLS_RESPONSE__INIT;
		m.results = (Rustmq__Controller__DeleteAclsResult **)ptrs;
		m.n_results = q->n;
		m.metadata_offset = offset;
		rmq_reply_pb(q->call, &m.base);
		break;
	}
	case ALTER_QUOTAS: {
		Rustmq__Controller__AlterQuotasResponse m = RUSTMQ__CONTROLLER__ALTER_QUOTAS_RESPONSE__INIT;
		m.results = (Rustmq__Controller__QuotaResult **)ptrs;
		m.n_results = q->n;
		m.metadata_offset = offset;
		rmq_reply_pb(q->call, &m.base);
		break;
	}
	}
	free(mem);
}

static void sec_back(struct rmq_ctrl_req *req)
{
	struct sec_req *q = RMQ_CONTAINER_OF(req, struct sec_req, req);
	int code = req->code;
	if (code != EC_OK) {
		for (size_t i = 0; i < q->n; i++) {
			struct sec_res *r = &q->res[i];
			if (!r->valid || r->code != EC_OK)
				continue;
			r->code = code;
			snprintf(r->err, sizeof(r->err), "%s",
				 code == EC_NOT_CONTROLLER ? "this node stopped leading the controller: "
							     "nothing changed; retry"
				 : code == EC_TIMEOUT	   ? "not committed in time: it may still take "
							     "effect; check before retrying"
							   : "the controller could not take the change");
		}
	}
	sec_reply(q);
	sec_free(q);
}

static void sec_change(struct rmq_call *c, void *msg, enum sec_kind kind,
		       void (*self)(struct rmq_call *c, void *msg))
{
	if (rmq_forward_admin(c, msg, self))
		return; /* another node leads the controller */
	size_t n = entries(kind, msg);
	if (n == 0) {
		rmq_refuse(c, EC_INVALID_REQUEST, "nothing to change: the request has no entries");
		goto out;
	}
	if (n > RMQ_SEC_REQUEST_MAX) {
		rmq_refuse(c, EC_INVALID_REQUEST, "%zu entries: at most %d per request (split it)", n,
			   RMQ_SEC_REQUEST_MAX);
		goto out;
	}
	struct sec_req *q = calloc(1, sizeof(*q));
	if (q)
		q->res = calloc(n, sizeof(*q->res));
	if (!q || !q->res) {
		if (q)
			free(q);
		rmq_call_finish(c, RMQ_GRPC_RESOURCE_EXHAUSTED, "out of memory");
		goto out;
	}
	q->kind = kind;
	q->msg = msg;
	q->n = n;
	q->call = c;
	rmq_call_ref(c);
	bool any = false;
	for (size_t i = 0; i < n; i++) {
		check_entry(q, i);
		any |= q->res[i].valid;
	}
	if (!any) { /* every entry refused: nothing for the controller */
		q->req.code = EC_INVALID_REQUEST;
		sec_reply(q);
		sec_free(q);
		return;
	}
	q->req.build = sec_build;
	q->req.back = sec_back;
	rmq_ctrl_submit_from(rmq_call_app(c), &q->req);
	return;
out:
	protobuf_c_message_free_unpacked(msg, NULL);
}

void rmq_sec_upsert_users(struct rmq_call *c, void *msg)
{
	sec_change(c, msg, UPSERT_USERS, rmq_sec_upsert_users);
}

void rmq_sec_delete_users(struct rmq_call *c, void *msg)
{
	sec_change(c, msg, DELETE_USERS, rmq_sec_delete_users);
}

void rmq_sec_create_acls(struct rmq_call *c, void *msg)
{
	sec_change(c, msg, CREATE_ACLS, rmq_sec_create_acls);
}

void rmq_sec_delete_acls(struct rmq_call *c, void *msg)
{
	sec_change(c, msg, DELETE_ACLS, rmq_sec_delete_acls);
}

void rmq_sec_alter_quotas(struct rmq_call *c, void *msg)
{
	sec_change(c, msg, ALTER_QUOTAS, rmq_sec_alter_quotas);
}

/* ---- descriptions, from this shard's snapshot ------------------------------ */

static int cmp_user_ptr(const void *a, const void *b)
{
	const struct rmq_user *x = *(const struct rmq_user *const *)a;
	const struct rmq_user *y = *(const struct rmq_user *const *)b;
	return strcmp(x->name, y->name);
}

void rmq_sec_list_users(struct rmq_call *c, void *msg)
{
	Rustmq__Controller__ListUsersRequest *req = msg;
	const struct rmq_meta *m = ((struct rmq_bshard *)rmq_call_app(c))->meta;
	const struct rmq_user *all;
	size_t nall = rmq_sec_users(m, &all);
	size_t n = req->n_names ? req->n_names : nall;
	Rustmq__Controller__ListUsersResponse r = RUSTMQ__CONTROLLER__LIST_USERS_RESPONSE__INIT;
	const struct rmq_user **pick = calloc(n + 1, sizeof(*pick));
	Rustmq__Controller__UserListing *ls = calloc(n + 1, sizeof(*ls));
	Rustmq__Controller__UserListing **lp = calloc(n + 1, sizeof(*lp));
	Rustmq__Controller__ScramCredentialInfo *ci = calloc((n + 1) * RMQ_SCRAM_MECHS, sizeof(*ci));
	Rustmq__Controller__ScramCredentialInfo **cp = calloc((n + 1) * RMQ_SCRAM_MECHS, sizeof(*cp));
	if (!pick || !ls || !lp || !ci || !cp) {
		rmq_call_finish(c, RMQ_GRPC_RESOURCE_EXHAUSTED, "out of memory");
		goto out;
	}
	size_t k = 0;
	if (req->n_names) {
		for (size_t i = 0; i < req->n_names; i++) {
			const struct rmq_user *u = rmq_sec_user(m, req->names[i]);
			bool dup = false;
			for (size_t j = 0; u && j < k && !dup; j++)
				dup = pick[j] == u;
			if (u && !dup)
				pick[k++] = u;
		}
		qsort(pick, k, sizeof(*pick), cmp_user_ptr);
	} else {
		for (; k < nall; k++)
			pick[k] = &all[k];
	}
	for (size_t i = 0; i < k; i++) {
		Rustmq__Controller__UserListing *l = &ls[i];
		rustmq__controller__user_listing__init(l);
		l->name = (char *)pick[i]->name;
		l->credentials = &cp[i * RMQ_SCRAM_MECHS];
		for (int mech = 0; mech < RMQ_SCRAM_MECHS; mech++) {
			int got;
			uint32_t it;
			if (!pick[i]->verifier[mech] ||
			    rmq_sec_check_verifier(pick[i]->verifier[mech], &got, &it, NULL, 0) < 0)
				continue;
			Rustmq__Controller__ScramCredentialInfo *x = &ci[i * RMQ_SCRAM_MECHS + mech];
			rustmq__controller__scram_credential_info__init(x);
			x->mechanism = (char *)rmq_scram_mech_names[mech];
			x->iterations = it;
			l->credentials[l->n_credentials++] = x;
		}
		lp[i] = l;
	}
	r.users = lp;
	r.n_users = k;
	r.metadata_offset = m->version;
	rmq_reply_pb(c, &r.base);
out:
	free(pick);
	free(ls);
	free(lp);
	free(ci);
	free(cp);
	protobuf_c_message_free_unpacked(msg, NULL);
}

void rmq_sec_describe_acls(struct rmq_call *c, void *msg)
{
	Rustmq__Controller__DescribeAclsRequest *req = msg;
	const struct rmq_meta *m = ((struct rmq_bshard *)rmq_call_app(c))->meta;
	struct rmq_acl f = {"", "", RMQ_ACL_RES_ANY, RMQ_ACL_PAT_ANY, RMQ_ACL_OP_ANY, RMQ_ACL_PERM_ANY};
	char err[256];
	Rustmq__Controller__AclBinding *bs = NULL, **bp = NULL;
	if (req->filter) {
		f = acl_of_filter(req->filter);
		if (rmq_acl_filter_check(&f, req->filter->host, err, sizeof(err)) < 0) {
			rmq_refuse(c, EC_INVALID_REQUEST, "%s", err);
			goto out;
		}
	}
	const struct rmq_acl *acls;
	size_t n = rmq_sec_acls(m, &acls);
	bs = calloc(n + 1, sizeof(*bs));
	bp = calloc(n + 1, sizeof(*bp));
	if (!bs || !bp) {
		rmq_call_finish(c, RMQ_GRPC_RESOURCE_EXHAUSTED, "out of memory");
		goto out;
	}
	Rustmq__Controller__DescribeAclsResponse r = RUSTMQ__CONTROLLER__DESCRIBE_ACLS_RESPONSE__INIT;
	for (size_t i = 0; i < n; i++) {
		if (!rmq_acl_filter_matches(&f, &acls[i]))
			continue;
		Rustmq__Controller__AclBinding *a = &bs[r.n_acls];
		rustmq__controller__acl_binding__init(a);
		a->principal = (char *)acls[i].principal;
		a->resource_type = (Rustmq__Controller__AclResourceType)acls[i].resource;
		a->resource_name = (char *)acls[i].name;
		a->pattern_type = (Rustmq__Controller__AclPatternType)acls[i].pattern;
		a->operation = (Rustmq__Controller__AclOperation)acls[i].op;
		a->permission = (Rustmq__Controller__AclPermission)acls[i].perm;
		a->host = "*";
		bp[r.n_acls++] = a;
	}
	r.acls = bp;
	r.metadata_offset = m->version;
	rmq_reply_pb(c, &r.base);
out:
	free(bs);
	free(bp);
	protobuf_c_message_free_unpacked(msg, NULL);
}

void rmq_sec_describe_quotas(struct rmq_call *c, void *msg)
{
	Rustmq__Controller__DescribeQuotasRequest *req = msg;
	const struct rmq_meta *m = ((struct rmq_bshard *)rmq_call_app(c))->meta;
	const struct rmq_quota *qs;
	size_t n = rmq_sec_quotas(m, &qs);
	Rustmq__Controller__QuotaEntry *es = calloc(n + 1, sizeof(*es));
	Rustmq__Controller__QuotaEntry **ep = calloc(n + 1, sizeof(*ep));
	if (!es || !ep) {
		rmq_call_finish(c, RMQ_GRPC_RESOURCE_EXHAUSTED, "out of memory");
		goto out;
	}
	Rustmq__Controller__DescribeQuotasResponse r = RUSTMQ__CONTROLLER__DESCRIBE_QUOTAS_RESPONSE__INIT;
	for (size_t i = 0; i < n; i++) {
		bool want = req->n_principals == 0;
		for (size_t k = 0; k < req->n_principals && !want; k++)
			want = strcmp(req->principals[k], qs[i].principal) == 0;
		if (!want)
			continue;
		Rustmq__Controller__QuotaEntry *e = &es[r.n_quotas];
		rustmq__controller__quota_entry__init(e);
		e->principal = (char *)qs[i].principal;
		e->is_default = qs[i].principal[0] == '\0';
		e->producer_byte_rate = qs[i].produce_bps;
		e->consumer_byte_rate = qs[i].fetch_bps;
		e->request_rate = qs[i].request_rate;
		ep[r.n_quotas++] = e;
	}
	r.quotas = ep;
	r.metadata_offset = m->version;
	rmq_reply_pb(c, &r.base);
out:
	free(es);
	free(ep);
	protobuf_c_message_free_unpacked(msg, NULL);
}
