/* SPDX-License-Identifier: Apache-2.0 */
/* topics.c - topic changes, decided on shard 0 one at a time (topics.h). */
#include "broker/topics.h"
#include "broker/offsets.h"

#include "broker/broker.h"
#include "broker/controller.h"
#include "broker/placement.h"
#include "controller/admin.pb-c.h"
#include "core/assert.h"
#include "core/error.h"
#include "core/log.h"
#include "core/util.h"

#include <errno.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

void rmq_topic_change_free(struct rmq_topic_change *ch)
{
	for (size_t i = 0; i < ch->n; i++) {
		free(ch->items[i].keys);
		free(ch->items[i].vals);
		free(ch->items[i].ops);
	}
	free(ch->items);
	free(ch);
}

static void change_applied(void *arg, int code);

static void change_back(struct rmq_xmsg *m)
{
	struct rmq_topic_change *ch = RMQ_CONTAINER_OF(m, struct rmq_topic_change, msg);
	ch->done(ch);
}

/* Shard 0: the change is complete everywhere (or failed validation). */
static void change_finish(struct rmq_topic_change *ch)
{
	ch->msg.fn = change_back;
	rmq_shard_post(rmq_shard_current(), ch->origin, &ch->msg);
}

struct topic_apply {
	struct rmq_xmsg msg; /* shard 0 -> a shard -> shard 0 */
	struct rmq_topics_publish *p;
};

static void apply_ack(struct rmq_xmsg *m)
{
	struct rmq_topics_publish *p = RMQ_CONTAINER_OF(m, struct topic_apply, msg)->p;
	if (--p->pending > 0)
		return;
	rmq_meta_unref(p->meta);
	p->meta = NULL;
	p->done(p->arg);
}

static void applied_here(void *arg)
{
	struct topic_apply *ap = arg;
	ap->msg.fn = apply_ack;
	rmq_shard_post(rmq_shard_current(), 0, &ap->msg);
}

/* Runs on every shard with the new snapshot; acks once its partitions
 * are open (or failed) and those that went are closed. */
static void apply_here(struct rmq_xmsg *m)
{
	struct topic_apply *ap = RMQ_CONTAINER_OF(m, struct topic_apply, msg);
	struct rmq_bshard *bs = rmq_bshard_current();
	int rc = rmq_broker_apply_meta(bs, ap->p->meta, applied_here, ap);
	if (rc < 0) {
		rmq_error("applying topic metadata v%" PRIu64 ": %s", ap->p->meta->version,
			  rmq_strerror(rc));
		applied_here(ap);
	}
}

int rmq_topics_publish_init(struct rmq_bshard *bs, struct rmq_topics_publish *p)
{
	*p = (struct rmq_topics_publish){0};
	p->applies = calloc(bs->nshards, sizeof(*p->applies));
	return p->applies ? 0 : -ENOMEM;
}

void rmq_topics_publish_fini(struct rmq_topics_publish *p)
{
	free(p->applies);
	p->applies = NULL;
}

void rmq_topics_publish(struct rmq_bshard *bs, struct rmq_meta *m, struct rmq_topics_publish *p,
			void (*done)(void *arg), void *arg)
{
	RMQ_ASSERT(p->pending == 0);
	p->meta = m;
	p->pending = bs->nshards;
	p->done = done;
	p->arg = arg;
	rmq_meta_ref(m); /* until every shard acked */
	for (unsigned s = 0; s < bs->nshards; s++) {
		p->applies[s].p = p;
		p->applies[s].msg.fn = apply_here;
		rmq_shard_post(bs->s, s, &p->applies[s].msg);
	}
}

static bool valid_create(struct rmq_bshard *bs, struct rmq_meta *m, struct rmq_change_item *it,
			 bool validate_only)
{
	const char *why = "";
	bool reserved = it->internal && strcmp(it->name, RMQ_OFFSETS_TOPIC) == 0;
	if (strlen(it->name) > RMQ_TOPIC_NAME_MAX ||
	    (!reserved && rmq_topic_name_check(it->name, &why) < 0)) {
		it->code = EC_INVALID_TOPIC;
		snprintf(it->err, sizeof(it->err), "%s", strlen(it->name) > RMQ_TOPIC_NAME_MAX
								  ? "topic name is longer than 249 characters"
								  : why);
		return false;
	}
	if (rmq_meta_find(m, it->name) >= 0) {
		it->code = EC_TOPIC_ALREADY_EXISTS;
		snprintf(it->err, sizeof(it->err), "topic '%s' already exists", it->name);
		return false;
	}
	uint32_t parts = it->partitions       ? it->partitions
			 : m->num_partitions ? m->num_partitions
					     : bs->b->cfg.default_partitions;
	if (parts == 0 || parts > RMQ_PARTITIONS_MAX) {
		it->code = EC_INVALID_PARTITIONS;
		snprintf(it->err, sizeof(it->err), "partitions must be between 1 and %d", RMQ_PARTITIONS_MAX);
		return false;
	}
	uint32_t rf = it->replication_factor ? it->replication_factor : 1;
	if (rf > RMQ_REPLICAS_MAX) {
		it->code = EC_INVALID_REPLICATION_FACTOR;
		snprintf(it->err, sizeof(it->err), "replication factor %u: at most %d", rf,
			 RMQ_REPLICAS_MAX);
		return false;
	}
	struct rmq_topic *t = &it->result;
	memset(t, 0, sizeof(*t));
	/* The name was checked (at most RMQ_TOPIC_NAME_MAX): it fits. */
	snprintf(t->name, sizeof(t->name), "%.*s", RMQ_TOPIC_NAME_MAX, it->name);
	rmq_uuid(t->id);
	t->partitions = parts;
	t->replication_factor = rf;
	t->internal = reserved;
	t->created_ms = rmq_wall_ms();
	t->cfg = m->defaults;
	t->cfg.overrides = 0;
	for (size_t k = 0; k < it->nconf; k++) {
		if (rmq_topic_config_set(&t->cfg, it->keys[k], it->vals[k], it->err, sizeof(it->err)) < 0) {
			it->code = EC_INVALID_CONFIG;
			return false;
		}
	}
	if (rmq_topic_config_fit(&t->cfg, bs->b->cfg.topic_defaults.max_message_bytes, it->err,
				 sizeof(it->err)) < 0) {
		it->code = EC_INVALID_CONFIG;
		return false;
	}
	if (validate_only)
		return rmq_place_check(m, rf, it->err, sizeof(it->err)) == 0 ||
		       (it->code = EC_INVALID_REPLICATION_FACTOR, false);
	int rc = rmq_place(m, parts, rf, &t->parts, it->err, sizeof(it->err));
	if (rc < 0) {
		it->code = rc == -EINVAL ? EC_INVALID_REPLICATION_FACTOR : EC_RESOURCE_EXHAUSTED;
		if (rc != -EINVAL)
			snprintf(it->err, sizeof(it->err), "out of memory");
		return false;
	}
	for (uint32_t p = 0; p < parts; p++)
		t->parts[p].gen = ++m->gens;
	return true;
}

static bool valid_alter(struct rmq_bshard *bs, struct rmq_meta *m, struct rmq_change_item *it)
{
	long k = rmq_meta_find(m, it->name);
	if (k < 0) {
		it->code = EC_TOPIC_NOT_FOUND;
		snprintf(it->err, sizeof(it->err), "unknown topic '%s'", it->name);
		return false;
	}
	struct rmq_topic t = m->topics[k];
	for (size_t i = 0; i < it->nconf; i++) {
		if (it->ops[i] == RUSTMQ__CONTROLLER__ALTER_CONFIG_OP__ALTER_CONFIG_OP_DELETE) {
			/* Back to the broker default for that key. */
			char v[64];
			unsigned key;
			for (key = 0; key < RMQ_TOPIC_CONFIG_KEYS; key++)
				if (strcmp(it->keys[i], rmq_topic_config_keys[key]) == 0)
					break;
			if (key == RMQ_TOPIC_CONFIG_KEYS) {
				it->code = EC_INVALID_CONFIG;
				snprintf(it->err, sizeof(it->err), "unknown configuration key '%s'", it->keys[i]);
				return false;
			}
			rmq_topic_config_get(&m->defaults, key, v, sizeof(v));
			uint32_t keep = t.cfg.overrides & ~(1u << key);
			rmq_topic_config_set(&t.cfg, it->keys[i], v, it->err, sizeof(it->err));
			t.cfg.overrides = keep;
		} else if (it->ops[i] == RUSTMQ__CONTROLLER__ALTER_CONFIG_OP__ALTER_CONFIG_OP_SET) {
			if (rmq_topic_config_set(&t.cfg, it->keys[i], it->vals[i], it->err, sizeof(it->err)) < 0) {
				it->code = EC_INVALID_CONFIG;
				return false;
			}
		} else {
			it->code = EC_INVALID_CONFIG;
			snprintf(it->err, sizeof(it->err), "'%s' is not a list-valued key: use SET or DELETE",
				 it->keys[i]);
			return false;
		}
	}
	if (rmq_topic_config_fit(&t.cfg, bs->b->cfg.topic_defaults.max_message_bytes, it->err,
				 sizeof(it->err)) < 0) {
		it->code = EC_INVALID_CONFIG;
		return false;
	}
	it->result = t;
	return true;
}

/* CreatePartitions (grow) or DeletePartitions: the topic's partition count
 * becomes it->partitions, new partitions placed like a new topic's, those
 * beyond it deleted with their records.  Changes m in place unless
 * validate_only.  Returns whether it is valid. */
static bool valid_resize(struct rmq_meta *m, struct rmq_change_item *it, bool grow,
			 bool validate_only, bool allow_nonempty)
{
	long k = rmq_meta_find(m, it->name);
	if (k < 0) {
		it->code = EC_TOPIC_NOT_FOUND;
		snprintf(it->err, sizeof(it->err), "unknown topic '%s'", it->name);
		return false;
	}
	struct rmq_topic *t = &m->topics[k];
	it->before = t->partitions;
	if (t->internal) {
		it->code = EC_POLICY_VIOLATION;
		snprintf(it->err, sizeof(it->err), "the partitions of internal topics are fixed");
		return false;
	}
	if (grow ? it->partitions <= t->partitions || it->partitions > RMQ_PARTITIONS_MAX
		 : it->partitions == 0 || it->partitions >= t->partitions) {
		it->code = EC_INVALID_PARTITIONS;
		if (grow)
			snprintf(it->err, sizeof(it->err),
				 "topic '%.200s' has %u partitions: the new count must be above that, "
				 "at most %d",
				 it->name, t->partitions, RMQ_PARTITIONS_MAX);
		else
			snprintf(it->err, sizeof(it->err),
				 "topic '%.200s' has %u partitions: the new count must be from 1 to %u",
				 it->name, t->partitions, t->partitions - 1);
		return false;
	}
	if (!grow && !allow_nonempty) {
		/* Their records live on their brokers: the controller cannot
		 * tell here whether they are empty. */
		it->code = EC_POLICY_VIOLATION;
		snprintf(it->err, sizeof(it->err),
			 "partitions %u..%u of '%.200s' may hold records, which go with them: "
			 "set allow_nonempty to delete them",
			 it->partitions, t->partitions - 1, it->name);
		return false;
	}
	uint32_t rf = t->replication_factor ? t->replication_factor : 1;
	if (grow && validate_only) {
		if (rmq_place_check(m, rf, it->err, sizeof(it->err)) < 0) {
			it->code = EC_INVALID_REPLICATION_FACTOR;
			return false;
		}
	} else if (grow) {
		struct rmq_passign *add;
		uint32_t n = it->partitions - t->partitions;
		int rc = rmq_place(m, n, rf, &add, it->err, sizeof(it->err));
		struct rmq_passign *parts =
			rc == 0 ? realloc(t->parts, it->partitions * sizeof(*parts)) : NULL;
		if (!parts) {
			it->code = rc == -EINVAL ? EC_INVALID_REPLICATION_FACTOR : EC_RESOURCE_EXHAUSTED;
			if (rc != -EINVAL)
				snprintf(it->err, sizeof(it->err), "out of memory");
			free(add);
			return false;
		}
		for (uint32_t p = 0; p < n; p++)
			add[p].gen = ++m->gens; /* none holds an earlier partition's records */
		memcpy(parts + t->partitions, add, n * sizeof(*add));
		free(add);
		t->parts = parts;
		t->partitions = it->partitions;
	} else if (!validate_only) {
		t->partitions = it->partitions; /* its parts array keeps room */
	}
	it->result = *t;
	it->result.parts = NULL;
	return true;
}

/* Shard 0, on the controller's leader: validates ch against the current
 * state and returns the state after it (NULL: nothing changes). */
static struct rmq_meta *change_build(void *arg, const struct rmq_meta *m)
{
	struct rmq_topic_change *ch = arg;
	struct rmq_bshard *bs = rmq_bshard_current();
	size_t ok = 0;

	struct rmq_meta *nm = rmq_meta_copy(m, ch->kind == RMQ_CHANGE_CREATE ? ch->n : 0);
	if (!nm) {
		for (size_t i = 0; i < ch->n; i++) {
			ch->items[i].code = EC_RESOURCE_EXHAUSTED;
			snprintf(ch->items[i].err, sizeof(ch->items[i].err), "out of memory");
		}
		return NULL;
	}
	for (size_t i = 0; i < ch->n; i++) {
		struct rmq_change_item *it = &ch->items[i];
		if (it->code != EC_OK)
			continue; /* refused by the origin already */
		switch (ch->kind) {
		case RMQ_CHANGE_CREATE:
			if (valid_create(bs, nm, it, ch->validate_only)) {
				ok++;
				if (!ch->validate_only)
					rmq_meta_insert(nm, &it->result); /* takes its partitions */
				it->result.parts = NULL;
			}
			break;
		case RMQ_CHANGE_DELETE: {
			long k = it->name[0] ? rmq_meta_find(nm, it->name) : -1;
			if (k < 0 && it->id[0]) {
				for (size_t j = 0; j < nm->ntopics; j++)
					if (strcmp(nm->topics[j].id, it->id) == 0)
						k = (long)j;
			}
			if (k < 0) {
				it->code = EC_TOPIC_NOT_FOUND;
				snprintf(it->err, sizeof(it->err), "unknown topic '%s'", it->name[0] ? it->name : it->id);
			} else if (nm->topics[k].internal) {
				it->code = EC_POLICY_VIOLATION;
				snprintf(it->err, sizeof(it->err), "internal topics cannot be deleted");
			} else {
				it->result = nm->topics[k];
				it->result.parts = NULL;
				rmq_meta_remove(nm, (size_t)k);
				ok++;
			}
			break;
		}
		case RMQ_CHANGE_ALTER:
			if (valid_alter(bs, nm, it)) {
				ok++;
				if (!ch->validate_only)
					nm->topics[rmq_meta_find(nm, it->name)] = it->result;
				it->result.parts = NULL;
			}
			break;
		case RMQ_CHANGE_GROW:
		case RMQ_CHANGE_SHRINK:
			ok += valid_resize(nm, it, ch->kind == RMQ_CHANGE_GROW, ch->validate_only,
					   ch->allow_nonempty);
			break;
		}
	}
	if (ok == 0 || ch->validate_only) {
		rmq_meta_free(nm);
		return NULL;
	}
	return nm;
}

/* Shard 0: the change is committed and every shard runs with it (or it
 * could not be committed). */
static void change_applied(void *arg, int code)
{
	struct rmq_topic_change *ch = arg;
	for (size_t i = 0; i < ch->n; i++) {
		struct rmq_change_item *it = &ch->items[i];
		if (it->code != EC_OK)
			continue;
		if (code == EC_NOT_CONTROLLER) {
			char addr[RMQ_TOPIC_NAME_MAX];
			int leader = rmq_ctrl_leader(rmq_bshard_current(), addr, sizeof(addr));
			it->code = code;
			if (leader)
				snprintf(it->err, sizeof(it->err),
					 "this node does not lead the controller: node %d at %s does", leader,
					 addr);
			else
				snprintf(it->err, sizeof(it->err),
					 "this node does not lead the controller, and no leader is known "
					 "yet; retry");
			continue;
		}
		if (code != EC_OK) {
			it->code = code;
			snprintf(it->err, sizeof(it->err), "%s",
				 code == EC_STORAGE_ERROR ? "the controller's store failed"
				 : code == EC_TIMEOUT
					 ? "not committed in time (the controller lost its majority?): the "
					   "change may still take effect; check before retrying"
					 : "out of memory");
			continue;
		}
		if (ch->validate_only)
			continue;
		rmq_info("topic %s %s (%u partitions)", it->result.name,
			 ch->kind == RMQ_CHANGE_CREATE   ? "created"
			 : ch->kind == RMQ_CHANGE_DELETE ? "deleted"
			 : ch->kind == RMQ_CHANGE_ALTER  ? "altered"
							 : "repartitioned",
			 it->result.partitions);
	}
	change_finish(ch);
}

static void change_arrive(struct rmq_xmsg *m)
{
	struct rmq_topic_change *ch = RMQ_CONTAINER_OF(m, struct rmq_topic_change, msg);
	RMQ_ASSERT(rmq_bshard_current()->id == 0);
	rmq_ctrl_submit(rmq_bshard_current(), change_build, change_applied, ch);
}

struct rmq_topic_change *rmq_topic_change_new(struct rmq_bshard *bs, enum rmq_change_kind kind,
					      size_t n)
{
	struct rmq_topic_change *ch = calloc(1, sizeof(*ch));
	if (!ch)
		return NULL;
	ch->items = calloc(n ? n : 1, sizeof(*ch->items));
	if (!ch->items) {
		free(ch);
		return NULL;
	}
	ch->kind = kind;
	ch->n = n;
	ch->origin = bs->id;
	return ch;
}

void rmq_topic_change_submit(struct rmq_bshard *bs, struct rmq_topic_change *ch)
{
	ch->msg.fn = change_arrive;
	rmq_shard_post(bs->s, 0, &ch->msg);
}

int rmq_topic_change_configs(struct rmq_change_item *it, size_t n)
{
	it->nconf = n;
	it->keys = calloc(n ? n : 1, sizeof(*it->keys));
	it->vals = calloc(n ? n : 1, sizeof(*it->vals));
	it->ops = calloc(n ? n : 1, sizeof(*it->ops));
	return it->keys && it->vals && it->ops ? 0 : -ENOMEM;
}
