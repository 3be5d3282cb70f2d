/* SPDX-License-Identifier: Apache-2.0 */
/* acl.c - users, ACLs and quotas of the controller's state (see acl.h). */
#include "broker/acl.h"

#include "broker/meta.h"
#include "controller/state.pb-c.h"
#include "core/error.h"
#include "core/log.h"

#include <errno.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

const char *const rmq_scram_mech_names[RMQ_SCRAM_MECHS] = {"SCRAM-SHA-256", "SCRAM-SHA-512"};

/* A state, or (refs unused, not indexed) a builder's copy of one.  Every
 * string is its own allocation, owned here. */
struct rmq_sec {
	_Atomic uint32_t refs;
	size_t nusers, nacls, nquotas;
	size_t cap_users, cap_acls, cap_quotas;
	struct rmq_user *users;   /* sorted by name */
	struct rmq_acl *acls;     /* sorted by acl_cmp */
	struct rmq_quota *quotas; /* sorted by principal: the default ("") first */
	/* ACL runs of one (resource, pattern): acls[run[r][p][0] .. run[r][p][1]),
	 * p 0 LITERAL, 1 PREFIXED. */
	size_t run[RMQ_ACL_RES_MAX + 1][2][2];
};

struct rmq_sec_builder {
	struct rmq_sec s;
	bool changed;
};

static const struct rmq_sec *sec_of(const struct rmq_meta *m)
{
	return m ? m->sec : NULL;
}

size_t rmq_sec_users(const struct rmq_meta *m, const struct rmq_user **out)
{
	const struct rmq_sec *s = sec_of(m);
	*out = s ? s->users : NULL;
	return s ? s->nusers : 0;
}

size_t rmq_sec_acls(const struct rmq_meta *m, const struct rmq_acl **out)
{
	const struct rmq_sec *s = sec_of(m);
	*out = s ? s->acls : NULL;
	return s ? s->nacls : 0;
}

size_t rmq_sec_quotas(const struct rmq_meta *m, const struct rmq_quota **out)
{
	const struct rmq_sec *s = sec_of(m);
	*out = s ? s->quotas : NULL;
	return s ? s->nquotas : 0;
}

/* ---- ordering ---------------------------------------------------------------- */

static int acl_cmp(const struct rmq_acl *a, const struct rmq_acl *b)
{
	int c;
	if (a->resource != b->resource)
		return a->resource < b->resource ? -1 : 1;
	if (a->pattern != b->pattern)
		return a->pattern < b->pattern ? -1 : 1;
	if ((c = strcmp(a->name, b->name)) != 0)
		return c;
	if ((c = strcmp(a->principal, b->principal)) != 0)
		return c;
	if (a->op != b->op)
		return a->op < b->op ? -1 : 1;
	if (a->perm != b->perm)
		return a->perm < b->perm ? -1 : 1;
	return 0;
}

/* The first index of acls[lo, hi) not below e. */
static size_t acl_lower(const struct rmq_acl *acls, size_t lo, size_t hi, const struct rmq_acl *e)
{
	while (lo < hi) {
		size_t mid = lo + (hi - lo) / 2;
		if (acl_cmp(&acls[mid], e) < 0)
			lo = mid + 1;
		else
			hi = mid;
	}
	return lo;
}

static size_t user_lower(const struct rmq_sec *s, const char *name)
{
	size_t lo = 0, hi = s->nusers;
	while (lo < hi) {
		size_t mid = lo + (hi - lo) / 2;
		if (strcmp(s->users[mid].name, name) < 0)
			lo = mid + 1;
		else
			hi = mid;
	}
	return lo;
}

static size_t quota_lower(const struct rmq_sec *s, const char *principal)
{
	size_t lo = 0, hi = s->nquotas;
	while (lo < hi) {
		size_t mid = lo + (hi - lo) / 2;
		if (strcmp(s->quotas[mid].principal, principal) < 0)
			lo = mid + 1;
		else
			hi = mid;
	}
	return lo;
}

const struct rmq_user *rmq_sec_user(const struct rmq_meta *m, const char *name)
{
	const struct rmq_sec *s = sec_of(m);
	if (!s)
		return NULL;
	size_t i = user_lower(s, name);
	return i < s->nusers && strcmp(s->users[i].name, name) == 0 ? &s->users[i] : NULL;
}

/* ---- the check ------------------------------------------------------------- */

/* Whether an entry of operation `entry` covers `want` when it allows:
 * Kafka's implied operations.  A DENY covers only its own operation (and
 * ALL): denying READ does not deny DESCRIBE. */
static bool op_allows(uint8_t entry, uint8_t want)
{
	if (entry == RMQ_ACL_ALL || entry == want)
		return true;
	if (want == RMQ_ACL_DESCRIBE)
		return entry == RMQ_ACL_READ || entry == RMQ_ACL_WRITE || entry == RMQ_ACL_DELETE ||
		       entry == RMQ_ACL_ALTER;
	if (want == RMQ_ACL_DESCRIBE_CONFIGS)
		return entry == RMQ_ACL_ALTER_CONFIGS;
	return false;
}

static bool principal_matches(const char *entry, const char *principal)
{
	return strcmp(entry, "User:*") == 0 || strcmp(entry, principal) == 0;
}

bool rmq_acl_matches(const struct rmq_acl *e, const char *principal, enum rmq_acl_resource type,
		     const char *name, enum rmq_acl_op op)
{
	if (e->resource != type || !principal_matches(e->principal, principal))
		return false;
	if (e->pattern == RMQ_ACL_LITERAL) {
		if (strcmp(e->name, "*") != 0 && strcmp(e->name, name) != 0)
			return false;
	} else if (e->pattern == RMQ_ACL_PREFIXED) {
		if (strncmp(e->name, name, strlen(e->name)) != 0)
			return false;
	} else {
		return false;
	}
	return e->perm == RMQ_ACL_DENY ? e->op == RMQ_ACL_ALL || e->op == op : op_allows(e->op, op);
}

/* Entries of acls[lo, hi) named exactly key[0, len) (a run is sorted by
 * name first): the first index into *first, the count returned; *more
 * says whether some entry's name starts with key[0, len) at all (when none
 * does, no longer prefix of the name can be an entry's name either). */
static size_t name_range(const struct rmq_acl *acls, size_t lo, size_t hi, const char *key,
			 size_t len, size_t *first, bool *more)
{
	size_t a = lo, b = hi;
	while (a < b) { /* the first name whose first len bytes are not below key's */
		size_t mid = a + (b - a) / 2;
		if (strncmp(acls[mid].name, key, len) < 0)
			a = mid + 1;
		else
			b = mid;
	}
	*first = a;
	*more = a < hi && strncmp(acls[a].name, key, len) == 0;
	if (!*more || acls[a].name[len] != '\0')
		return 0; /* the one named key exactly would sort first among them */
	b = hi;
	size_t c = a;
	while (c < b) { /* the first name that is not key exactly */
		size_t mid = c + (b - c) / 2;
		if (strncmp(acls[mid].name, key, len) == 0 && acls[mid].name[len] == '\0')
			c = mid + 1;
		else
			b = mid;
	}
	return c - a;
}

/* The entries of acls[i, i+n) (one name: sorted by principal) whose
 * principal is exactly p: the first into *first, the count returned. */
static size_t principal_range(const struct rmq_acl *acls, size_t i, size_t n, const char *p,
			      size_t *first)
{
	size_t a = i, b = i + n;
	while (a < b) {
		size_t mid = a + (b - a) / 2;
		if (strcmp(acls[mid].principal, p) < 0)
			a = mid + 1;
		else
			b = mid;
	}
	*first = a;
	size_t k = 0;
	while (a + k < i + n && strcmp(acls[a + k].principal, p) == 0)
		k++;
	return k;
}

/* Applies the entries of acls[i, i+n) (one name) for principal, and for
 * User:*, to the verdict: two binary searches, then only the entries of
 * those principals (one per operation and permission at most). */
static void apply(const struct rmq_acl *acls, size_t i, size_t n, const char *principal,
		  uint8_t op, bool *deny, bool *allow)
{
	const char *who[2] = {principal, "User:*"};
	for (int w = 0; w < 2 && n && !*deny; w++) {
		size_t first, m = principal_range(acls, i, n, who[w], &first);
		for (size_t k = first; k < first + m && !*deny; k++) {
			const struct rmq_acl *e = &acls[k];
			if (e->perm == RMQ_ACL_DENY)
				*deny = e->op == RMQ_ACL_ALL || e->op == op;
			else if (op_allows(e->op, op))
				*allow = true;
		}
		if (strcmp(principal, "User:*") == 0)
			break; /* the same range twice */
	}
}

bool rmq_acl_allowed(const struct rmq_meta *m, const char *principal, enum rmq_acl_resource type,
		     const char *name, enum rmq_acl_op op, bool super_user)
{
	if (super_user)
		return true;
	const struct rmq_sec *s = sec_of(m);
	if (!s || (unsigned)type > RMQ_ACL_RES_MAX || (unsigned)type < RMQ_ACL_TOPIC)
		return false;
	bool deny = false, allow = false, more;
	size_t first, n;
	size_t lo = s->run[type][0][0], hi = s->run[type][0][1];
	/* LITERAL: the name itself and "*". */
	n = name_range(s->acls, lo, hi, name, strlen(name), &first, &more);
	apply(s->acls, first, n, principal, (uint8_t)op, &deny, &allow);
	n = name_range(s->acls, lo, hi, "*", 1, &first, &more);
	apply(s->acls, first, n, principal, (uint8_t)op, &deny, &allow);
	/* PREFIXED: every prefix of the name (the empty one is refused at
	 * creation), shortest first, until no entry starts with it. */
	lo = s->run[type][1][0];
	hi = s->run[type][1][1];
	size_t len = strlen(name);
	more = lo < hi;
	for (size_t l = 1; l <= len && more && !deny; l++) {
		n = name_range(s->acls, lo, hi, name, l, &first, &more);
		apply(s->acls, first, n, principal, (uint8_t)op, &deny, &allow);
		lo = first; /* longer prefixes sort at or after this one */
	}
	return !deny && allow;
}

bool rmq_acl_filter_matches(const struct rmq_acl *f, const struct rmq_acl *e)
{
	if (f->principal[0] && strcmp(f->principal, e->principal) != 0)
		return false;
	if (f->resource != RMQ_ACL_RES_ANY && f->resource != e->resource)
		return false;
	if (f->op != RMQ_ACL_OP_ANY && f->op != e->op)
		return false;
	if (f->perm != RMQ_ACL_PERM_ANY && f->perm != e->perm)
		return false;
	switch (f->pattern) {
	case RMQ_ACL_PAT_MATCH:
		if (!f->name[0])
			return true;
		if (e->pattern == RMQ_ACL_LITERAL)
			return strcmp(e->name, "*") == 0 || strcmp(e->name, f->name) == 0;
		return strncmp(e->name, f->name, strlen(e->name)) == 0;
	case RMQ_ACL_PAT_ANY:
		break;
	default:
		if (f->pattern != e->pattern)
			return false;
	}
	return !f->name[0] || strcmp(f->name, e->name) == 0;
}

bool rmq_quota_for(const struct rmq_meta *m, const char *principal, struct rmq_quota *out)
{
	const struct rmq_sec *s = sec_of(m);
	memset(out, 0, sizeof(*out));
	out->principal = "";
	if (!s || !s->nquotas)
		return false;
	const struct rmq_quota *def = s->quotas[0].principal[0] == '\0' ? &s->quotas[0] : NULL;
	size_t i = quota_lower(s, principal);
	const struct rmq_quota *own =
		principal[0] && i < s->nquotas && strcmp(s->quotas[i].principal, principal) == 0
			? &s->quotas[i]
			: NULL;
	if (own)
		out->principal = own->principal;
	out->produce_bps = own && own->produce_bps ? own->produce_bps : def ? def->produce_bps : 0;
	out->fetch_bps = own && own->fetch_bps ? own->fetch_bps : def ? def->fetch_bps : 0;
	out->request_rate = own && own->request_rate ? own->request_rate : def ? def->request_rate : 0;
	return out->produce_bps || out->fetch_bps || out->request_rate;
}

/* ---- validation ------------------------------------------------------------ */

static int check_text(const char *what, const char *s, char *err, size_t errlen)
{
	size_t n = strlen(s);
	if (n == 0) {
		snprintf(err, errlen, "%s is empty", what);
		return -1;
	}
	if (n > RMQ_SEC_NAME_MAX) {
		snprintf(err, errlen, "%s is longer than %d bytes", what, RMQ_SEC_NAME_MAX);
		return -1;
	}
	for (size_t i = 0; i < n; i++) {
		unsigned char c = (unsigned char)s[i];
		if (c < 0x20 || c == 0x7f) {
			snprintf(err, errlen, "%s holds a control character (byte %zu)", what, i);
			return -1;
		}
	}
	return 0;
}

int rmq_sec_check_user_name(const char *name, char *err, size_t errlen)
{
	return check_text("the user name", name, err, errlen);
}

int rmq_scram_mech(const char *name)
{
	for (int i = 0; i < RMQ_SCRAM_MECHS; i++)
		if (strcmp(name, rmq_scram_mech_names[i]) == 0)
			return i;
	return -1;
}

static bool b64_field(const char *s, size_t n)
{
	if (n == 0 || n % 4)
		return false;
	for (size_t i = 0; i < n; i++) {
		char c = s[i];
		bool pad = c == '=' && i >= n - 2;
		if (!((c >= 'A' && c <= 'Z') || (c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') ||
		      c == '+' || c == '/' || pad))
			return false;
		if (pad && i == n - 2 && s[n - 1] != '=')
			return false;
	}
	return true;
}

int rmq_sec_check_verifier(const char *v, int *mech, uint32_t *iterations, char *err,
			   size_t errlen)
{
	if (strlen(v) > RMQ_SEC_VERIFIER_MAX) {
		snprintf(err, errlen, "the verifier is longer than %d bytes", RMQ_SEC_VERIFIER_MAX);
		return -1;
	}
	const char *f[5];
	size_t len[5], n = 0;
	const char *p = v;
	for (;;) {
		const char *c = strchr(p, ':');
		if (n == 5)
			break;
		f[n] = p;
		len[n] = c ? (size_t)(c - p) : strlen(p);
		n++;
		if (!c)
			break;
		p = c + 1;
	}
	if (n != 5 || strchr(f[4], ':')) {
		snprintf(err, errlen, "a verifier is MECHANISM:ITERATIONS:SALT:STOREDKEY:SERVERKEY "
			 "(5 fields separated by ':')");
		return -1;
	}
	*mech = -1;
	for (int i = 0; i < RMQ_SCRAM_MECHS; i++)
		if (len[0] == strlen(rmq_scram_mech_names[i]) &&
		    memcmp(f[0], rmq_scram_mech_names[i], len[0]) == 0)
			*mech = i;
	if (*mech < 0) {
		/* Not echoed: a password put where a verifier goes must not
		 * come back in an answer or a log. */
		snprintf(err, errlen, "the verifier's mechanism is not SCRAM-SHA-256 or SCRAM-SHA-512");
		return -1;
	}
	uint64_t it = 0;
	for (size_t i = 0; i < len[1]; i++) {
		if (f[1][i] < '0' || f[1][i] > '9' || it > UINT32_MAX / 10) {
			it = 0;
			break;
		}
		it = it * 10 + (uint64_t)(f[1][i] - '0');
	}
	if (it == 0 || it > UINT32_MAX) {
		snprintf(err, errlen, "the verifier's iterations are not a number from 1 to %u",
			 UINT32_MAX);
		return -1;
	}
	for (int i = 2; i < 5; i++) {
		if (!b64_field(f[i], len[i])) {
			snprintf(err, errlen, "the verifier's %s is not base64",
				 i == 2 ? "salt" : i == 3 ? "StoredKey" : "ServerKey");
			return -1;
		}
	}
	*iterations = (uint32_t)it;
	return 0;
}

int rmq_sec_check_principal(const char *p, char *err, size_t errlen)
{
	if (strncmp(p, "User:", 5) != 0) {
		snprintf(err, errlen, "a principal is User:NAME or User:*, got '%.64s'", p);
		return -1;
	}
	return check_text("the principal's name", p + 5, err, errlen);
}

static int check_host(const char *host, char *err, size_t errlen)
{
	if (host && host[0] && strcmp(host, "*") != 0) {
		snprintf(err, errlen, "host-based ACLs are not supported yet: give host \"*\"");
		return -1;
	}
	return 0;
}

int rmq_acl_check(const struct rmq_acl *e, const char *host, char *err, size_t errlen)
{
	if (rmq_sec_check_principal(e->principal, err, errlen) < 0)
		return -1;
	if (e->resource < RMQ_ACL_TOPIC || e->resource > RMQ_ACL_RES_MAX) {
		snprintf(err, errlen, "resource type %u is not TOPIC, GROUP, CLUSTER or TRANSACTIONAL_ID",
			 e->resource);
		return -1;
	}
	if (e->pattern != RMQ_ACL_LITERAL && e->pattern != RMQ_ACL_PREFIXED) {
		snprintf(err, errlen, "pattern type %u is not LITERAL or PREFIXED", e->pattern);
		return -1;
	}
	if (e->op < RMQ_ACL_ALL || e->op > RMQ_ACL_OP_MAX) {
		snprintf(err, errlen, "operation %u is not a known operation (ANY is for filters)", e->op);
		return -1;
	}
	if (e->perm != RMQ_ACL_ALLOW && e->perm != RMQ_ACL_DENY) {
		snprintf(err, errlen, "permission %u is not ALLOW or DENY", e->perm);
		return -1;
	}
	if (check_text("the resource name", e->name, err, errlen) < 0)
		return -1;
	if (e->pattern == RMQ_ACL_PREFIXED && strcmp(e->name, "*") == 0) {
		snprintf(err, errlen, "\"*\" is a LITERAL name (every resource); PREFIXED \"*\" would "
			 "match only names starting with '*'");
		return -1;
	}
	if (e->resource == RMQ_ACL_CLUSTER &&
	    (e->pattern != RMQ_ACL_LITERAL || (strcmp(e->name, RMQ_ACL_CLUSTER_NAME) != 0 &&
					       strcmp(e->name, "*") != 0))) {
		snprintf(err, errlen, "the CLUSTER resource is the LITERAL name \"%s\"",
			 RMQ_ACL_CLUSTER_NAME);
		return -1;
	}
	return check_host(host, err, errlen);
}

int rmq_acl_filter_check(const struct rmq_acl *f, const char *host, char *err, size_t errlen)
{
	if (f->principal[0] && rmq_sec_check_principal(f->principal, err, errlen) < 0)
		return -1;
	if (f->resource < RMQ_ACL_RES_ANY || f->resource > RMQ_ACL_RES_MAX) {
		snprintf(err, errlen, "resource type %u is not ANY, TOPIC, GROUP, CLUSTER or "
			 "TRANSACTIONAL_ID", f->resource);
		return -1;
	}
	if (f->pattern < RMQ_ACL_PAT_ANY || f->pattern > RMQ_ACL_PREFIXED) {
		snprintf(err, errlen, "pattern type %u is not ANY, MATCH, LITERAL or PREFIXED", f->pattern);
		return -1;
	}
	if (f->op < RMQ_ACL_OP_ANY || f->op > RMQ_ACL_OP_MAX) {
		snprintf(err, errlen, "operation %u is not a known operation", f->op);
		return -1;
	}
	if (f->perm < RMQ_ACL_PERM_ANY || f->perm > RMQ_ACL_ALLOW) {
		snprintf(err, errlen, "permission %u is not ANY, ALLOW or DENY", f->perm);
		return -1;
	}
	if (f->name[0] && check_text("the resource name", f->name, err, errlen) < 0)
		return -1;
	return check_host(host, err, errlen);
}

/* ---- the state's memory ---------------------------------------------------- */

static void sec_clear(struct rmq_sec *s)
{
	for (size_t i = 0; i < s->nusers; i++) {
		free((char *)s->users[i].name);
		for (int k = 0; k < RMQ_SCRAM_MECHS; k++)
			free((char *)s->users[i].verifier[k]);
	}
	for (size_t i = 0; i < s->nacls; i++) {
		free((char *)s->acls[i].principal);
		free((char *)s->acls[i].name);
	}
	for (size_t i = 0; i < s->nquotas; i++)
		free((char *)s->quotas[i].principal);
	free(s->users);
	free(s->acls);
	free(s->quotas);
}

void rmq_sec_ref(struct rmq_sec *s)
{
	if (s)
		atomic_fetch_add_explicit(&s->refs, 1, memory_order_relaxed);
}

void rmq_sec_unref(struct rmq_sec *s)
{
	/* acq_rel: pairs as rmq_meta_unref's does (the last holder frees). */
	if (s && atomic_fetch_sub_explicit(&s->refs, 1, memory_order_acq_rel) == 1) {
		sec_clear(s);
		free(s);
	}
}

/* Room for one more of an array (doubling). */
static int grow(void **p, size_t *cap, size_t n, size_t size)
{
	if (n < *cap)
		return 0;
	size_t c = *cap ? *cap * 2 : 16;
	void *q = realloc(*p, c * size);
	if (!q)
		return -ENOMEM;
	*p = q;
	*cap = c;
	return 0;
}

struct rmq_sec_builder *rmq_sec_edit(const struct rmq_meta *m)
{
	struct rmq_sec_builder *b = calloc(1, sizeof(*b));
	const struct rmq_sec *s = sec_of(m);
	if (!b)
		return NULL;
	if (!s)
		return b;
	struct rmq_sec *d = &b->s;
	d->users = calloc(s->nusers + 1, sizeof(*d->users));
	d->acls = calloc(s->nacls + 1, sizeof(*d->acls));
	d->quotas = calloc(s->nquotas + 1, sizeof(*d->quotas));
	if (!d->users || !d->acls || !d->quotas)
		goto nomem;
	d->cap_users = s->nusers + 1;
	d->cap_acls = s->nacls + 1;
	d->cap_quotas = s->nquotas + 1;
	for (size_t i = 0; i < s->nusers; i++, d->nusers++) {
		struct rmq_user *u = &d->users[i];
		if (!(u->name = strdup(s->users[i].name)))
			goto nomem;
		for (int k = 0; k < RMQ_SCRAM_MECHS; k++)
			if (s->users[i].verifier[k] && !(u->verifier[k] = strdup(s->users[i].verifier[k]))) {
				d->nusers++;
				goto nomem;
			}
	}
	for (size_t i = 0; i < s->nacls; i++, d->nacls++) {
		d->acls[i] = s->acls[i];
		d->acls[i].principal = strdup(s->acls[i].principal);
		d->acls[i].name = strdup(s->acls[i].name);
		if (!d->acls[i].principal || !d->acls[i].name) {
			d->nacls++;
			goto nomem;
		}
	}
	for (size_t i = 0; i < s->nquotas; i++, d->nquotas++) {
		d->quotas[i] = s->quotas[i];
		if (!(d->quotas[i].principal = strdup(s->quotas[i].principal)))
			goto nomem;
	}
	return b;
nomem:
	rmq_sec_builder_free(b);
	return NULL;
}

void rmq_sec_builder_free(struct rmq_sec_builder *b)
{
	if (!b)
		return;
	sec_clear(&b->s);
	free(b);
}

bool rmq_sec_changed(const struct rmq_sec_builder *b)
{
	return b->changed;
}

int rmq_sec_set_verifier(struct rmq_sec_builder *b, const char *name, int mech, const char *v,
			 char *err, size_t errlen)
{
	struct rmq_sec *s = &b->s;
	size_t i = user_lower(s, name);
	bool exists = i < s->nusers && strcmp(s->users[i].name, name) == 0;
	if (!exists && s->nusers >= RMQ_SEC_USERS_MAX) {
		snprintf(err, errlen, "the cluster has %d users, its most", RMQ_SEC_USERS_MAX);
		return -1;
	}
	char *nv = strdup(v);
	char *nn = exists ? NULL : strdup(name);
	if (!nv || (!exists && !nn) ||
	    (!exists && grow((void **)&s->users, &s->cap_users, s->nusers, sizeof(*s->users)) < 0)) {
		free(nv);
		free(nn);
		return -ENOMEM;
	}
	if (!exists) {
		memmove(&s->users[i + 1], &s->users[i], (s->nusers - i) * sizeof(*s->users));
		memset(&s->users[i], 0, sizeof(s->users[i]));
		s->users[i].name = nn;
		s->nusers++;
	}
	struct rmq_user *u = &s->users[i];
	if (!exists || !u->verifier[mech] || strcmp(u->verifier[mech], v) != 0)
		b->changed = true;
	free((char *)u->verifier[mech]);
	u->verifier[mech] = nv;
	return 0;
}

int rmq_sec_remove_user(struct rmq_sec_builder *b, const char *name, int mech, char *err,
			size_t errlen)
{
	struct rmq_sec *s = &b->s;
	size_t i = user_lower(s, name);
	if (i == s->nusers || strcmp(s->users[i].name, name) != 0) {
		snprintf(err, errlen, "there is no user '%.64s'", name);
		return -1;
	}
	struct rmq_user *u = &s->users[i];
	if (mech >= 0) {
		if (!u->verifier[mech]) {
			snprintf(err, errlen, "user '%.64s' has no %s verifier", name,
				 rmq_scram_mech_names[mech]);
			return -1;
		}
		free((char *)u->verifier[mech]);
		u->verifier[mech] = NULL;
		b->changed = true;
		for (int k = 0; k < RMQ_SCRAM_MECHS; k++)
			if (u->verifier[k])
				return 0; /* the user keeps its other mechanism */
	}
	free((char *)u->name);
	for (int k = 0; k < RMQ_SCRAM_MECHS; k++)
		free((char *)u->verifier[k]);
	memmove(&s->users[i], &s->users[i + 1], (s->nusers - i - 1) * sizeof(*s->users));
	s->nusers--;
	b->changed = true;
	return 0;
}

int rmq_sec_add_acl(struct rmq_sec_builder *b, const struct rmq_acl *e, char *err, size_t errlen)
{
	struct rmq_sec *s = &b->s;
	size_t i = acl_lower(s->acls, 0, s->nacls, e);
	if (i < s->nacls && acl_cmp(&s->acls[i], e) == 0)
		return 0; /* there already: Kafka's CreateAcls is idempotent */
	if (s->nacls >= RMQ_SEC_ACLS_MAX) {
		snprintf(err, errlen, "the cluster has %d ACL entries, its most", RMQ_SEC_ACLS_MAX);
		return -1;
	}
	struct rmq_acl c = *e;
	c.principal = strdup(e->principal);
	c.name = strdup(e->name);
	if (!c.principal || !c.name ||
	    grow((void **)&s->acls, &s->cap_acls, s->nacls, sizeof(*s->acls)) < 0) {
		free((char *)c.principal);
		free((char *)c.name);
		return -ENOMEM;
	}
	memmove(&s->acls[i + 1], &s->acls[i], (s->nacls - i) * sizeof(*s->acls));
	s->acls[i] = c;
	s->nacls++;
	b->changed = true;
	return 0;
}

long rmq_sec_remove_acls(struct rmq_sec_builder *b, const struct rmq_acl *f,
			 void (*removed)(void *arg, const struct rmq_acl *e), void *arg)
{
	struct rmq_sec *s = &b->s;
	size_t k = 0;
	long n = 0;
	for (size_t i = 0; i < s->nacls; i++) {
		struct rmq_acl *e = &s->acls[i];
		if (rmq_acl_filter_matches(f, e)) {
			if (removed)
				removed(arg, e);
			free((char *)e->principal);
			free((char *)e->name);
			n++;
			continue;
		}
		s->acls[k++] = *e;
	}
	s->nacls = k;
	if (n)
		b->changed = true;
	return n;
}

int rmq_sec_set_quota(struct rmq_sec_builder *b, const char *principal, int key, uint64_t value,
		      char *err, size_t errlen)
{
	struct rmq_sec *s = &b->s;
	size_t i = quota_lower(s, principal);
	bool exists = i < s->nquotas && strcmp(s->quotas[i].principal, principal) == 0;
	if (!exists) {
		if (value == 0)
			return 0; /* unset where nothing is set */
		if (s->nquotas >= RMQ_SEC_QUOTAS_MAX) {
			snprintf(err, errlen, "the cluster has %d quota entries, its most",
				 RMQ_SEC_QUOTAS_MAX);
			return -1;
		}
		char *p = strdup(principal);
		if (!p || grow((void **)&s->quotas, &s->cap_quotas, s->nquotas, sizeof(*s->quotas)) < 0) {
			free(p);
			return -ENOMEM;
		}
		memmove(&s->quotas[i + 1], &s->quotas[i], (s->nquotas - i) * sizeof(*s->quotas));
		memset(&s->quotas[i], 0, sizeof(s->quotas[i]));
		s->quotas[i].principal = p;
		s->nquotas++;
	}
	struct rmq_quota *q = &s->quotas[i];
	uint64_t *slot = key == 0 ? &q->produce_bps : key == 1 ? &q->fetch_bps : &q->request_rate;
	if (*slot != value)
		b->changed = true;
	*slot = value;
	if (!q->produce_bps && !q->fetch_bps && !q->request_rate) {
		free((char *)q->principal);
		memmove(&s->quotas[i], &s->quotas[i + 1], (s->nquotas - i - 1) * sizeof(*s->quotas));
		s->nquotas--;
	}
	return 0;
}

/* The runs of each (resource, pattern) of a sorted entry array. */
static void index_runs(struct rmq_sec *s)
{
	memset(s->run, 0, sizeof(s->run));
	for (size_t i = 0; i < s->nacls;) {
		const struct rmq_acl *e = &s->acls[i];
		size_t j = i;
		while (j < s->nacls && s->acls[j].resource == e->resource &&
		       s->acls[j].pattern == e->pattern)
			j++;
		if (e->resource <= RMQ_ACL_RES_MAX &&
		    (e->pattern == RMQ_ACL_LITERAL || e->pattern == RMQ_ACL_PREFIXED)) {
			s->run[e->resource][e->pattern - RMQ_ACL_LITERAL][0] = i;
			s->run[e->resource][e->pattern - RMQ_ACL_LITERAL][1] = j;
		}
		i = j;
	}
}

int rmq_sec_done(struct rmq_sec_builder *b, struct rmq_meta *m)
{
	struct rmq_sec *s = malloc(sizeof(*s));
	if (!s) {
		rmq_sec_builder_free(b);
		return -ENOMEM;
	}
	*s = b->s;
	free(b);
	atomic_store_explicit(&s->refs, 1, memory_order_relaxed);
	index_runs(s);
	rmq_sec_unref(m->sec);
	m->sec = s;
	return 0;
}

/* ---- the state's encoding ----------------------------------------------- */

int rmq_sec_to_state(const struct rmq_sec *s, Rustmq__Controller__ControllerState *st, void **mem)
{
	*mem = NULL;
	if (!s)
		return 0;
	size_t bytes = s->nusers * (sizeof(void *) + sizeof(Rustmq__Controller__ScramUser) +
				    RMQ_SCRAM_MECHS * sizeof(char *)) +
		       s->nacls * (sizeof(void *) + sizeof(Rustmq__Controller__AclBinding)) +
		       s->nquotas * (sizeof(void *) + sizeof(Rustmq__Controller__QuotaEntry)) + 16;
	uint8_t *p = malloc(bytes);
	if (!p)
		return -ENOMEM;
	*mem = p;
	st->users = (Rustmq__Controller__ScramUser **)p;
	p += s->nusers * sizeof(void *);
	for (size_t i = 0; i < s->nusers; i++) {
		Rustmq__Controller__ScramUser *u = (Rustmq__Controller__ScramUser *)p;
		p += sizeof(*u);
		rustmq__controller__scram_user__init(u);
		u->name = (char *)s->users[i].name;
		u->verifiers = (char **)p;
		p += RMQ_SCRAM_MECHS * sizeof(char *);
		for (int k = 0; k < RMQ_SCRAM_MECHS; k++)
			if (s->users[i].verifier[k])
				u->verifiers[u->n_verifiers++] = (char *)s->users[i].verifier[k];
		st->users[i] = u;
	}
	st->n_users = s->nusers;
	st->acls = (Rustmq__Controller__AclBinding **)p;
	p += s->nacls * sizeof(void *);
	for (size_t i = 0; i < s->nacls; i++) {
		Rustmq__Controller__AclBinding *a = (Rustmq__Controller__AclBinding *)p;
		p += sizeof(*a);
		rustmq__controller__acl_binding__init(a);
		a->principal = (char *)s->acls[i].principal;
		a->resource_type = (Rustmq__Controller__AclResourceType)s->acls[i].resource;
		a->resource_name = (char *)s->acls[i].name;
		a->pattern_type = (Rustmq__Controller__AclPatternType)s->acls[i].pattern;
		a->operation = (Rustmq__Controller__AclOperation)s->acls[i].op;
		a->permission = (Rustmq__Controller__AclPermission)s->acls[i].perm;
		a->host = "*";
		st->acls[i] = a;
	}
	st->n_acls = s->nacls;
	st->quotas = (Rustmq__Controller__QuotaEntry **)p;
	p += s->nquotas * sizeof(void *);
	for (size_t i = 0; i < s->nquotas; i++) {
		Rustmq__Controller__QuotaEntry *q = (Rustmq__Controller__QuotaEntry *)p;
		p += sizeof(*q);
		rustmq__controller__quota_entry__init(q);
		q->principal = (char *)s->quotas[i].principal;
		q->is_default = s->quotas[i].principal[0] == '\0';
		q->producer_byte_rate = s->quotas[i].produce_bps;
		q->consumer_byte_rate = s->quotas[i].fetch_bps;
		q->request_rate = s->quotas[i].request_rate;
		st->quotas[i] = q;
	}
	st->n_quotas = s->nquotas;
	return 0;
}

int rmq_sec_from_state(const Rustmq__Controller__ControllerState *st, struct rmq_sec **out)
{
	*out = NULL;
	if (!st->n_users && !st->n_acls && !st->n_quotas)
		return 0;
	struct rmq_sec_builder *b = rmq_sec_edit(NULL);
	struct rmq_meta tmp = {0};
	char err[256];
	int rc = b ? 0 : -ENOMEM;
	for (size_t i = 0; rc == 0 && i < st->n_users; i++) {
		const Rustmq__Controller__ScramUser *u = st->users[i];
		size_t at = user_lower(&b->s, u->name);
		if (rmq_sec_check_user_name(u->name, err, sizeof(err)) < 0 ||
		    (at < b->s.nusers && strcmp(b->s.users[at].name, u->name) == 0) ||
		    u->n_verifiers == 0 ||
		    u->n_verifiers > RMQ_SCRAM_MECHS) {
			rmq_error("metadata: user %zu is invalid or repeated", i);
			rc = RMQ_ECORRUPT;
			break;
		}
		for (size_t k = 0; rc == 0 && k < u->n_verifiers; k++) {
			int mech;
			uint32_t it;
			rc = rmq_sec_check_verifier(u->verifiers[k], &mech, &it, err, sizeof(err)) < 0
				     ? RMQ_ECORRUPT
				     : rmq_sec_set_verifier(b, u->name, mech, u->verifiers[k], err,
							    sizeof(err));
			if (rc == -1)
				rc = RMQ_ECORRUPT;
			if (rc == RMQ_ECORRUPT)
				rmq_error("metadata: user '%.64s': %s", u->name, err);
		}
	}
	for (size_t i = 0; rc == 0 && i < st->n_acls; i++) {
		const Rustmq__Controller__AclBinding *a = st->acls[i];
		struct rmq_acl e = {a->principal, a->resource_name, (uint8_t)a->resource_type,
				    (uint8_t)a->pattern_type, (uint8_t)a->operation,
				    (uint8_t)a->permission};
		size_t before = b->s.nacls;
		if ((unsigned)a->resource_type > 255 || (unsigned)a->pattern_type > 255 ||
		    (unsigned)a->operation > 255 || (unsigned)a->permission > 255 ||
		    rmq_acl_check(&e, a->host, err, sizeof(err)) < 0) {
			rmq_error("metadata: ACL entry %zu is invalid", i);
			rc = RMQ_ECORRUPT;
		} else if ((rc = rmq_sec_add_acl(b, &e, err, sizeof(err))) == 0 &&
			   b->s.nacls == before) {
			rmq_error("metadata: ACL entry %zu is repeated", i);
			rc = RMQ_ECORRUPT;
		} else if (rc == -1) {
			rc = RMQ_ECORRUPT;
		}
	}
	for (size_t i = 0; rc == 0 && i < st->n_quotas; i++) {
		const Rustmq__Controller__QuotaEntry *q = st->quotas[i];
		const char *p = q->is_default ? "" : q->principal;
		uint64_t v[3] = {q->producer_byte_rate, q->consumer_byte_rate, q->request_rate};
		if ((q->is_default && q->principal[0]) ||
		    (!q->is_default && rmq_sec_check_principal(q->principal, err, sizeof(err)) < 0)) {
			rmq_error("metadata: quota entry %zu is invalid", i);
			rc = RMQ_ECORRUPT;
		}
		for (int k = 0; rc == 0 && k < 3; k++)
			if (v[k] > RMQ_SEC_QUOTA_VALUE_MAX ||
			    (v[k] && rmq_sec_set_quota(b, p, k, v[k], err, sizeof(err)) != 0))
				rc = RMQ_ECORRUPT;
	}
	if (rc != 0) {
		rmq_sec_builder_free(b);
		return rc;
	}
	rc = rmq_sec_done(b, &tmp);
	if (rc == 0)
		*out = tmp.sec;
	return rc;
}
