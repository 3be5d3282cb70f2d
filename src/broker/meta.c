/* SPDX-License-Identifier: Apache-2.0 */
/* meta.c - topic metadata snapshots, validation and persistence (see meta.h). */
#include "broker/meta.h"

#include "broker/acl.h"
#include "common/metadata.pb-c.h"
#include "controller/state.pb-c.h"
#include "core/assert.h"
#include "core/error.h"
#include "core/flags.h"
#include "core/log.h"
#include "storage/codec.h"
#include "storage/log.h"

#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/random.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

enum {
	K_RETENTION_MS,
	K_RETENTION_BYTES,
	K_SEGMENT_BYTES,
	K_SEGMENT_MS,
	K_COMPRESSION,
	K_CLEANUP,
	K_MIN_ISR,
	K_MAX_MESSAGE,
	K_TIMESTAMP_TYPE,
	K_UNCLEAN,
};

const char *const rmq_topic_config_keys[RMQ_TOPIC_CONFIG_KEYS] = {
	[K_RETENTION_MS] = "retention.ms",
	[K_RETENTION_BYTES] = "retention.bytes",
	[K_SEGMENT_BYTES] = "segment.bytes",
	[K_SEGMENT_MS] = "segment.ms",
	[K_COMPRESSION] = "compression.type",
	[K_CLEANUP] = "cleanup.policy",
	[K_MIN_ISR] = "min.insync.replicas",
	[K_MAX_MESSAGE] = "max.message.bytes",
	[K_TIMESTAMP_TYPE] = "message.timestamp.type",
	[K_UNCLEAN] = "unclean.leader.election.enable",
};

const char *const rmq_topic_config_docs[RMQ_TOPIC_CONFIG_KEYS] = {
	[K_RETENTION_MS] = "time a record is kept, ms; -1 = forever",
	[K_RETENTION_BYTES] = "size each partition's log is trimmed to, bytes; -1 = unlimited",
	[K_SEGMENT_BYTES] = "size at which a segment is rolled, bytes",
	[K_SEGMENT_MS] = "age at which a segment is rolled, ms",
	[K_COMPRESSION] = "producer (keep the producer's codec), none, lz4, zstd or snappy",
	[K_CLEANUP] = "delete (log compaction is not supported yet)",
	[K_MIN_ISR] = "in-sync replicas needed for acks=ALL",
	[K_MAX_MESSAGE] = "largest record batch accepted, bytes",
	[K_TIMESTAMP_TYPE] = "CreateTime or LogAppendTime",
	[K_UNCLEAN] = "true: ElectLeaders UNCLEAN may give a leaderless partition a replica outside the ISR (committed records may be lost)",
};

int rmq_topic_name_check(const char *name, const char **why)
{
	size_t n = strlen(name);

	if (n == 0) {
		*why = "topic name is empty";
		return -1;
	}
	if (n > RMQ_TOPIC_NAME_MAX) {
		*why = "topic name is longer than 249 characters";
		return -1;
	}
	if (strcmp(name, ".") == 0 || strcmp(name, "..") == 0) {
		*why = "topic name cannot be \".\" or \"..\"";
		return -1;
	}
	if (strcmp(name, "__consumer_offsets") == 0) {
		*why = "__consumer_offsets is reserved for the group coordinator's offsets log";
		return -1;
	}
	for (size_t i = 0; i < n; i++) {
		char c = name[i];
		if (!((c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') ||
		      c == '.' || c == '_' || c == '-')) {
			*why = "topic name may only contain ASCII letters, digits, '.', '_' and '-'";
			return -1;
		}
	}
	return 0;
}

/* A decimal integer, possibly -1. */
static int parse_i64(const char *v, int64_t min, int64_t *out)
{
	char *end;
	if (!*v)
		return -1;
	errno = 0;
	long long x = strtoll(v, &end, 10);
	if (errno || *end || x < min)
		return -1;
	*out = x;
	return 0;
}

int rmq_topic_config_set(struct rmq_topic_config *cfg, const char *key, const char *value,
			 char *err, size_t errlen)
{
	int64_t x;
	int k;

	for (k = 0; k < RMQ_TOPIC_CONFIG_KEYS; k++)
		if (strcmp(key, rmq_topic_config_keys[k]) == 0)
			break;
	if (k == RMQ_TOPIC_CONFIG_KEYS) {
		snprintf(err, errlen, "unknown configuration key '%s'", key);
		return -1;
	}
	switch (k) {
	case K_RETENTION_MS:
	case K_RETENTION_BYTES:
		if (parse_i64(value, -1, &x) < 0)
			goto bad_num;
		if (k == K_RETENTION_MS)
			cfg->retention_ms = x;
		else
			cfg->retention_bytes = x;
		break;
	case K_SEGMENT_BYTES:
		if (parse_i64(value, 1 << 14, &x) < 0 || x > (int64_t)UINT32_MAX) {
			snprintf(err, errlen, "segment.bytes must be between 16384 and 4294967295, got '%s'",
				 value);
			return -1;
		}
		cfg->segment_bytes = (uint64_t)x;
		break;
	case K_SEGMENT_MS:
		if (parse_i64(value, 1, &x) < 0)
			goto bad_num;
		cfg->segment_ms = (uint64_t)x;
		break;
	case K_COMPRESSION:
		if (strcmp(value, "producer") == 0) {
			cfg->compression = -1;
		} else {
			int c = rmq_codec_parse(value);
			if (c < 0) {
				snprintf(err, errlen,
					 "compression.type must be producer, none, lz4, zstd or snappy, got '%s'",
					 value);
				return -1;
			}
			cfg->compression = c;
		}
		break;
	case K_CLEANUP:
		if (strcmp(value, "delete") != 0) {
			snprintf(err, errlen, "cleanup.policy '%s' is not supported: only 'delete' (log compaction is not implemented yet)",
				 value);
			return -1;
		}
		break;
	case K_MIN_ISR:
		if (parse_i64(value, 1, &x) < 0 || x > 1000)
			goto bad_num;
		cfg->min_insync_replicas = (uint32_t)x;
		break;
	case K_MAX_MESSAGE:
		if (parse_i64(value, 1024, &x) < 0 || x > (1LL << 30))
			goto bad_num;
		cfg->max_message_bytes = (uint64_t)x;
		break;
	case K_TIMESTAMP_TYPE:
		if (strcmp(value, "CreateTime") == 0)
			cfg->log_append_time = false;
		else if (strcmp(value, "LogAppendTime") == 0)
			cfg->log_append_time = true;
		else {
			snprintf(err, errlen,
				 "message.timestamp.type must be CreateTime or LogAppendTime, got '%s'", value);
			return -1;
		}
		break;
	case K_UNCLEAN:
		if (strcmp(value, "true") == 0)
			cfg->unclean_election = true;
		else if (strcmp(value, "false") == 0)
			cfg->unclean_election = false;
		else {
			snprintf(err, errlen, "%s must be true or false, got '%s'", key, value);
			return -1;
		}
		break;
	}
	cfg->overrides |= 1u << k;
	return 0;
bad_num:
	snprintf(err, errlen, "%s: '%s' is not a valid value", key, value);
	return -1;
}

void rmq_topic_config_get(const struct rmq_topic_config *cfg, unsigned i, char *buf, size_t len)
{
	switch (i) {
	case K_RETENTION_MS: snprintf(buf, len, "%" PRId64, cfg->retention_ms); break;
	case K_RETENTION_BYTES: snprintf(buf, len, "%" PRId64, cfg->retention_bytes); break;
	case K_SEGMENT_BYTES: snprintf(buf, len, "%" PRIu64, cfg->segment_bytes); break;
	case K_SEGMENT_MS: snprintf(buf, len, "%" PRIu64, cfg->segment_ms); break;
	case K_COMPRESSION:
		snprintf(buf, len, "%s", cfg->compression < 0 ? "producer" : rmq_codec_name(cfg->compression));
		break;
	case K_CLEANUP: snprintf(buf, len, "delete"); break;
	case K_MIN_ISR: snprintf(buf, len, "%u", cfg->min_insync_replicas); break;
	case K_MAX_MESSAGE: snprintf(buf, len, "%" PRIu64, cfg->max_message_bytes); break;
	case K_TIMESTAMP_TYPE: snprintf(buf, len, "%s", cfg->log_append_time ? "LogAppendTime" : "CreateTime"); break;
	case K_UNCLEAN: snprintf(buf, len, "%s", cfg->unclean_election ? "true" : "false"); break;
	default: snprintf(buf, len, "?");
	}
}

int rmq_topic_config_fit(struct rmq_topic_config *cfg, uint64_t node_max, char *err,
			 size_t errlen)
{
	uint64_t seg = rmq_log_batch_bytes_max(cfg->segment_bytes);
	uint64_t cap = seg < node_max ? seg : node_max;
	if (cfg->max_message_bytes <= cap)
		return 0;
	if (!(cfg->overrides & (1u << K_MAX_MESSAGE))) {
		cfg->max_message_bytes = cap; /* the default follows what the topic can store */
		return 0;
	}
	if (cap == seg)
		snprintf(err, errlen,
			 "max.message.bytes=%" PRIu64 " does not fit one segment: segment.bytes=%" PRIu64
			 " stores batches of at most %" PRIu64 " bytes (raise segment.bytes, or lower max.message.bytes)",
			 cfg->max_message_bytes, cfg->segment_bytes, seg);
	else
		snprintf(err, errlen,
			 "max.message.bytes=%" PRIu64 " exceeds the largest request this node takes "
			 "(rmqd --max-message-bytes %" PRIu64 ")",
			 cfg->max_message_bytes, node_max);
	return -1;
}

struct rmq_meta *rmq_meta_new(size_t ntopics)
{
	struct rmq_meta *m = calloc(1, sizeof(*m));
	if (!m)
		return NULL;
	m->topics = calloc(ntopics ? ntopics : 1, sizeof(*m->topics));
	m->brokers = calloc(1, sizeof(*m->brokers));
	if (!m->topics || !m->brokers) {
		free(m->topics);
		free(m->brokers);
		free(m);
		return NULL;
	}
	return m;
}

void rmq_meta_free(struct rmq_meta *m)
{
	if (!m)
		return;
	for (size_t i = 0; i < m->ntopics; i++)
		free(m->topics[i].parts);
	free(m->topics);
	free(m->brokers);
	rmq_sec_unref(m->sec);
	free(m);
}

struct rmq_meta *rmq_meta_copy(const struct rmq_meta *m, size_t extra)
{
	struct rmq_meta *c = rmq_meta_new(m->ntopics + extra);
	struct rmq_broker_rec *br = c ? calloc(m->nbrokers + 1, sizeof(*br)) : NULL;
	if (!br) {
		rmq_meta_free(c);
		return NULL;
	}
	free(c->brokers);
	c->brokers = br;
	memcpy(br, m->brokers, m->nbrokers * sizeof(*br));
	c->nbrokers = m->nbrokers;
	memcpy(c->cluster_id, m->cluster_id, sizeof(c->cluster_id));
	c->defaults = m->defaults;
	c->num_partitions = m->num_partitions;
	c->gens = m->gens;
	c->producer_ids = m->producer_ids;
	c->sec = m->sec; /* immutable: shared */
	rmq_sec_ref(c->sec);
	for (size_t i = 0; i < m->ntopics; i++) {
		const struct rmq_topic *t = &m->topics[i];
		c->topics[i] = *t;
		c->topics[i].parts = NULL;
		if (t->parts) {
			c->topics[i].parts = malloc(t->partitions * sizeof(*t->parts));
			if (!c->topics[i].parts) {
				c->ntopics = i;
				rmq_meta_free(c);
				return NULL;
			}
			memcpy(c->topics[i].parts, t->parts, t->partitions * sizeof(*t->parts));
		}
	}
	c->ntopics = m->ntopics;
	c->version = m->version + 1;
	return c;
}

long rmq_meta_find(const struct rmq_meta *m, const char *name)
{
	size_t lo = 0, hi = m->ntopics;
	while (lo < hi) {
		size_t mid = lo + (hi - lo) / 2;
		int c = strcmp(m->topics[mid].name, name);
		if (c == 0)
			return (long)mid;
		if (c < 0)
			lo = mid + 1;
		else
			hi = mid;
	}
	return -1;
}

struct rmq_passign *rmq_meta_passign(struct rmq_meta *m, const char *name, uint32_t p,
				     struct rmq_topic **t)
{
	long k = rmq_meta_find(m, name);
	if (k < 0 || p >= m->topics[k].partitions || !m->topics[k].parts)
		return NULL;
	*t = &m->topics[k];
	return &m->topics[k].parts[p];
}

size_t rmq_meta_insert(struct rmq_meta *m, const struct rmq_topic *t)
{
	size_t i = 0;
	while (i < m->ntopics && strcmp(m->topics[i].name, t->name) < 0)
		i++;
	memmove(&m->topics[i + 1], &m->topics[i], (m->ntopics - i) * sizeof(*t));
	m->topics[i] = *t;
	m->ntopics++;
	return i;
}

void rmq_meta_remove(struct rmq_meta *m, size_t i)
{
	free(m->topics[i].parts);
	memmove(&m->topics[i], &m->topics[i + 1], (m->ntopics - i - 1) * sizeof(*m->topics));
	m->ntopics--;
}

const struct rmq_broker_rec *rmq_meta_broker(const struct rmq_meta *m, uint32_t id)
{
	size_t lo = 0, hi = m->nbrokers;
	while (lo < hi) {
		size_t mid = lo + (hi - lo) / 2;
		if (m->brokers[mid].id == id)
			return &m->brokers[mid];
		if (m->brokers[mid].id < id)
			lo = mid + 1;
		else
			hi = mid;
	}
	return NULL;
}

void rmq_meta_set_broker(struct rmq_meta *m, const struct rmq_broker_rec *r)
{
	size_t i = 0;
	while (i < m->nbrokers && m->brokers[i].id < r->id)
		i++;
	if (i == m->nbrokers || m->brokers[i].id != r->id) {
		memmove(&m->brokers[i + 1], &m->brokers[i], (m->nbrokers - i) * sizeof(*r));
		m->nbrokers++;
	}
	struct rmq_broker_rec *b = &m->brokers[i];
	*b = *r;
	snprintf(b->id_str, sizeof(b->id_str), "%" PRIu32, b->id);
	snprintf(b->endpoint, sizeof(b->endpoint), strchr(b->host, ':') ? "[%s]:%" PRIu32 : "%s:%" PRIu32,
		 b->host, b->port);
}

bool rmq_meta_is_replica(const struct rmq_topic *t, uint32_t p, uint32_t id)
{
	if (!t->parts || p >= t->partitions)
		return false;
	for (uint32_t r = 0; r < t->parts[p].nreplicas; r++)
		if (t->parts[p].replicas[r] == id)
			return true;
	return false;
}

int rmq_meta_cluster_config(struct rmq_meta *m, const struct rmq_topic_config *node,
			    const char *key, const char *value, char *err, size_t errlen)
{
	if (strcmp(key, RMQ_CLUSTER_NUM_PARTITIONS) == 0) {
		char *end;
		unsigned long n = value ? strtoul(value, &end, 10) : 0;
		if (value && (!*value || *end || n == 0 || n > RMQ_PARTITIONS_MAX)) {
			snprintf(err, errlen, "%s=%s: a number from 1 to %d", key, value,
				 RMQ_PARTITIONS_MAX);
			return -1;
		}
		m->num_partitions = (uint32_t)n;
		return 0;
	}
	unsigned k;
	for (k = 0; k < RMQ_TOPIC_CONFIG_KEYS; k++)
		if (strcmp(key, rmq_topic_config_keys[k]) == 0)
			break;
	if (k == RMQ_TOPIC_CONFIG_KEYS) {
		snprintf(err, errlen, "unknown configuration key '%s' (the topic keys and %s)", key,
			 RMQ_CLUSTER_NUM_PARTITIONS);
		return -1;
	}
	/* The new defaults: the node's value back, or the one given. */
	struct rmq_topic_config d = m->defaults;
	char v[64];
	if (!value)
		rmq_topic_config_get(node, k, v, sizeof(v));
	if (rmq_topic_config_set(&d, key, value ? value : v, err, errlen) < 0)
		return -1;
	if (!value)
		d.overrides &= ~(1u << k);
	struct rmq_topic_config fitted = d;
	if (rmq_topic_config_fit(&fitted, node->max_message_bytes, err, errlen) < 0)
		return -1;
	m->defaults = d;
	/* Every topic that does not set the key takes the new value. */
	rmq_topic_config_get(&d, k, v, sizeof(v));
	for (size_t i = 0; i < m->ntopics; i++) {
		struct rmq_topic_config *c = &m->topics[i].cfg;
		if (c->overrides & (1u << k))
			continue;
		uint32_t keep = c->overrides;
		char e[256];
		(void)rmq_topic_config_set(c, key, v, e, sizeof(e)); /* valid: checked above */
		c->overrides = keep;
		(void)rmq_topic_config_fit(c, node->max_message_bytes, e, sizeof(e));
	}
	return 0;
}

void rmq_meta_ref(struct rmq_meta *m)
{
	atomic_fetch_add_explicit(&m->refs, 1, memory_order_relaxed);
}

void rmq_meta_unref(struct rmq_meta *m)
{
	/* acq_rel: the last holder's free happens after every other holder's
	 * reads (the classic refcount pairing). */
	if (m && atomic_fetch_sub_explicit(&m->refs, 1, memory_order_acq_rel) == 1)
		rmq_meta_free(m);
}

unsigned rmq_partition_shard(const char *name, uint32_t p, unsigned shards)
{
	uint32_t h = 2166136261u;
	for (const unsigned char *c = (const unsigned char *)name; *c; c++)
		h = (h ^ *c) * 16777619u;
	return (unsigned)((h + p) % shards);
}

void rmq_partition_dir(char *buf, size_t len, const char *data_dir, const char *topic, uint32_t p)
{
	snprintf(buf, len, "%s/%s-%" PRIu32, data_dir, topic, p);
}

void rmq_uuid(char id[40])
{
	uint8_t b[16];
	if (getrandom(b, sizeof(b), 0) != (ssize_t)sizeof(b)) {
		/* No entropy source: time and address still make ids unique
		 * enough to tell a re-created topic from the old one. */
		uint64_t t = (uint64_t)time(NULL) ^ (uint64_t)(uintptr_t)id;
		memcpy(b, &t, 8);
		memcpy(b + 8, &t, 8);
	}
	b[6] = (uint8_t)((b[6] & 0x0f) | 0x40);
	b[8] = (uint8_t)((b[8] & 0x3f) | 0x80);
	snprintf(id, 40, "%02x%02x%02x%02x-%02x%02x-%02x%02x-%02x%02x-%02x%02x%02x%02x%02x%02x",
		 b[0], b[1], b[2], b[3], b[4], b[5], b[6], b[7], b[8], b[9], b[10], b[11], b[12],
		 b[13], b[14], b[15]);
}

/* ---- the file ------------------------------------------------------------ */

static void meta_path(char *buf, size_t len, const char *data_dir, const char *name)
{
	snprintf(buf, len, "%s/meta/%s", data_dir, name);
}

/* A broker id as the protocol writes it: a decimal number from 1. */
static bool parse_id(const char *s, uint32_t *out)
{
	char *end;
	errno = 0;
	unsigned long v = s && *s >= '0' && *s <= '9' ? strtoul(s, &end, 10) : 0;
	if (v == 0 || v > UINT32_MAX || errno || *end)
		return false;
	*out = (uint32_t)v;
	return true;
}

static bool parse_ids(char **ids, size_t n, uint32_t *out, uint32_t *nout)
{
	if (n > RMQ_REPLICAS_MAX)
		return false;
	for (size_t i = 0; i < n; i++)
		if (!parse_id(ids[i], &out[i]))
			return false;
	*nout = (uint32_t)n;
	return true;
}

/* Partition p's assignment from its record. */
static bool decode_part(const Rustmq__Common__PartitionMetadata *pm, uint32_t p,
			struct rmq_passign *a)
{
	memset(a, 0, sizeof(*a));
	if (!pm->topic_partition || pm->topic_partition->partition != p ||
	    !parse_ids(pm->replica_ids, pm->n_replica_ids, a->replicas, &a->nreplicas) ||
	    a->nreplicas == 0 || !parse_ids(pm->isr_ids, pm->n_isr_ids, a->isr, &a->nisr) ||
	    (pm->leader_id[0] && !parse_id(pm->leader_id, &a->leader)))
		return false;
	a->leader_epoch = pm->leader_epoch;
	return true;
}

/* The topics of cm into m (room for them) on m->defaults (node: the
 * node's flags): with their partitions' records, or (self != 0: a version
 * before the brokers) every partition broker self's. */
static int decode_topics(const Rustmq__Common__ClusterMetadata *cm,
			 const struct rmq_topic_config *defaults, uint32_t self, struct rmq_meta *m)
{
	for (size_t i = 0; i < cm->n_topics; i++) {
		Rustmq__Common__TopicMetadata *tm = cm->topics[i];
		struct rmq_topic t;
		const char *why;
		memset(&t, 0, sizeof(t));
		/* The one internal topic keeps its reserved name. */
		bool reserved = tm->is_internal && strcmp(tm->name, "__consumer_offsets") == 0;
		if ((!reserved && rmq_topic_name_check(tm->name, &why) < 0) || !tm->config ||
		    tm->config->partitions == 0 || tm->config->partitions > RMQ_PARTITIONS_MAX ||
		    rmq_meta_find(m, tm->name) >= 0 ||
		    (!self && tm->n_partitions != tm->config->partitions)) {
			rmq_error("metadata: topic '%s' is invalid", tm->name);
			return RMQ_ECORRUPT;
		}
		snprintf(t.name, sizeof(t.name), "%s", tm->name);
		snprintf(t.id, sizeof(t.id), "%s", tm->topic_id);
		t.partitions = tm->config->partitions;
		t.replication_factor = tm->config->replication_factor;
		t.internal = tm->is_internal;
		t.created_ms = tm->created ? (uint64_t)tm->created->seconds * 1000 +
						     (uint64_t)tm->created->nanos / 1000000
					   : 0;
		t.cfg = m->defaults;
		t.cfg.overrides = 0;
		for (size_t k = 0; k < tm->config->n_configs; k++) {
			char err[256];
			Rustmq__Common__ConfigEntry *e = tm->config->configs[k];
			if (rmq_topic_config_set(&t.cfg, e->name, e->value, err, sizeof(err)) < 0)
				rmq_warn("metadata: topic %s: ignoring %s", t.name, err);
		}
		char err[400];
		if (rmq_topic_config_fit(&t.cfg, defaults->max_message_bytes, err, sizeof(err)) < 0) {
			/* Set by an older version that did not check: what the
			 * topic can store is the limit now. */
			rmq_warn("metadata: topic %s: %s; max.message.bytes lowered to fit", t.name, err);
			t.cfg.overrides &= ~(1u << K_MAX_MESSAGE);
			(void)rmq_topic_config_fit(&t.cfg, defaults->max_message_bytes, err, sizeof(err));
		}
		t.parts = calloc(t.partitions, sizeof(*t.parts));
		if (!t.parts)
			return -ENOMEM;
		for (uint32_t p = 0; p < t.partitions; p++) {
			if (self) {
				t.parts[p] = (struct rmq_passign){.leader = self, .leader_epoch = 1,
								  .nreplicas = 1, .nisr = 1,
								  .replicas = {self}, .isr = {self}};
			} else if (!decode_part(tm->partitions[p], p, &t.parts[p])) {
				rmq_error("metadata: partition %u of topic '%s' is invalid", p, t.name);
				free(t.parts);
				return RMQ_ECORRUPT;
			}
		}
		rmq_meta_insert(m, &t);
	}
	return 0;
}

int rmq_meta_decode_topics(const uint8_t *buf, size_t len,
			   const struct rmq_topic_config *defaults, uint32_t self,
			   struct rmq_meta **out)
{
	Rustmq__Common__ClusterMetadata *cm = rustmq__common__cluster_metadata__unpack(NULL, len, buf);
	if (!cm)
		return RMQ_ECORRUPT;
	struct rmq_meta *m = rmq_meta_new(cm->n_topics);
	if (m)
		m->defaults = *defaults;
	int rc = m ? decode_topics(cm, defaults, self, m) : -ENOMEM;
	if (rc == 0) {
		m->version = cm->metadata_version;
		*out = m;
	} else {
		rmq_meta_free(m);
	}
	rustmq__common__cluster_metadata__free_unpacked(cm, NULL);
	return rc;
}

static int decode_brokers(const Rustmq__Controller__ControllerState *st, struct rmq_meta *m)
{
	const Rustmq__Common__ClusterMetadata *cm = st->cluster;
	free(m->brokers);
	m->brokers = calloc(cm->n_brokers + 1, sizeof(*m->brokers));
	if (!m->brokers)
		return -ENOMEM;
	for (size_t i = 0; i < cm->n_brokers; i++) {
		const Rustmq__Common__BrokerInfo *bi = cm->brokers[i];
		struct rmq_broker_rec r = {0};
		if (!bi->id || !parse_id(bi->id->id, &r.id) || rmq_meta_broker(m, r.id) ||
		    strlen(bi->host) > RMQ_BROKER_HOST_MAX) {
			rmq_error("metadata: broker %zu is invalid", i);
			return RMQ_ECORRUPT;
		}
		r.port = bi->port;
		r.shards = bi->shards;
		r.state = (uint32_t)bi->state;
		r.epoch = bi->epoch;
		snprintf(r.host, sizeof(r.host), "%s", bi->host);
		snprintf(r.rack, sizeof(r.rack), "%s", bi->id->rack_id);
		snprintf(r.version, sizeof(r.version), "%s", bi->version);
		for (size_t k = 0; k < st->n_incarnations; k++)
			if (strcmp(st->incarnations[k]->broker_id, bi->id->id) == 0)
				snprintf(r.incarnation, sizeof(r.incarnation), "%s",
					 st->incarnations[k]->incarnation_id);
		rmq_meta_set_broker(m, &r);
	}
	return 0;
}

/* A reassignment of t's (meta.h: struct rmq_passign's move fields). */
static bool decode_move(struct rmq_topic *t, const Rustmq__Controller__PartitionMove *mv)
{
	if (mv->partition >= t->partitions || mv->n_target == 0 || mv->n_target > RMQ_REPLICAS_MAX)
		return false;
	struct rmq_passign *pa = &t->parts[mv->partition];
	if (pa->ntarget || mv->adding >= pa->nreplicas)
		return false;
	pa->ntarget = (uint32_t)mv->n_target;
	pa->nadding = mv->adding;
	memcpy(pa->target, mv->target, mv->n_target * sizeof(*pa->target));
	return true;
}

int rmq_meta_decode(const uint8_t *buf, size_t len, const struct rmq_topic_config *defaults,
		    struct rmq_meta **out)
{
	Rustmq__Controller__ControllerState *st =
		rustmq__controller__controller_state__unpack(NULL, len, buf);
	if (!st || !st->cluster) {
		if (st)
			rustmq__controller__controller_state__free_unpacked(st, NULL);
		return RMQ_ECORRUPT;
	}
	struct rmq_meta *m = rmq_meta_new(st->cluster->n_topics);
	int rc = m ? 0 : -ENOMEM;
	if (m)
		m->defaults = *defaults;
	for (size_t i = 0; rc == 0 && i < st->n_configs; i++) {
		char err[256];
		if (rmq_meta_cluster_config(m, defaults, st->configs[i]->name, st->configs[i]->value,
					    err, sizeof(err)) < 0)
			rmq_warn("metadata: the cluster's configuration: ignoring %s", err);
	}
	if (rc == 0)
		rc = decode_topics(st->cluster, defaults, 0, m);
	if (rc == 0)
		rc = decode_brokers(st, m);
	if (rc == 0) {
		m->gens = st->partition_generation;
		m->producer_ids = st->producer_ids;
		rc = rmq_sec_from_state(st, &m->sec);
	}
	for (size_t i = 0; rc == 0 && i < st->n_generations; i++) {
		const Rustmq__Controller__TopicGenerations *tg = st->generations[i];
		for (size_t k = 0; k < m->ntopics && rc == 0; k++) {
			struct rmq_topic *t = &m->topics[k];
			if (strcmp(t->id, tg->topic_id) != 0)
				continue;
			for (uint32_t p = 0; tg->n_generations == t->partitions && p < t->partitions; p++)
				t->parts[p].gen = tg->generations[p];
			for (uint32_t p = 0; tg->n_partition_epochs == t->partitions && p < t->partitions; p++)
				t->parts[p].part_epoch = tg->partition_epochs[p];
			for (size_t j = 0; j < tg->n_moves && rc == 0; j++)
				if (!decode_move(t, tg->moves[j])) {
					rmq_error("metadata: the reassignment of a partition of '%s' is invalid",
						  t->name);
					rc = RMQ_ECORRUPT;
				}
		}
	}
	if (rc == 0) {
		snprintf(m->cluster_id, sizeof(m->cluster_id), "%s", st->cluster->cluster_id);
		m->version = st->cluster->metadata_version;
		*out = m;
	} else {
		rmq_meta_free(m);
	}
	rustmq__controller__controller_state__free_unpacked(st, NULL);
	return rc;
}

int rmq_meta_load(const char *data_dir, const struct rmq_topic_config *defaults, uint32_t self,
		  struct rmq_meta **out)
{
	char path[4096];
	struct stat st;
	int rc = 0;

	meta_path(path, sizeof(path), data_dir, "topics");
	int fd = open(path, O_RDONLY | O_CLOEXEC);
	if (fd < 0) {
		if (errno != ENOENT)
			return -errno;
		*out = rmq_meta_new(0);
		if (*out)
			(*out)->defaults = *defaults;
		return *out ? 0 : -ENOMEM;
	}
	if (fstat(fd, &st) < 0) {
		rc = -errno;
		close(fd);
		return rc;
	}
	uint8_t *buf = malloc((size_t)st.st_size + 1);
	if (!buf) {
		close(fd);
		return -ENOMEM;
	}
	ssize_t n = read(fd, buf, (size_t)st.st_size);
	close(fd);
	if (n != st.st_size) {
		free(buf);
		return n < 0 ? -errno : -EIO;
	}
	rc = rmq_meta_decode_topics(buf, (size_t)n, defaults, self, out);
	free(buf);
	if (rc == RMQ_ECORRUPT)
		rmq_error("metadata file %s does not decode", path);
	return rc;
}

int rmq_meta_reserve(const char *data_dir)
{
	char path[4200];
	struct stat st;
	meta_path(path, sizeof(path), data_dir, RMQ_META_RESERVE);
	if (stat(path, &st) == 0 && (uint64_t)st.st_blocks * 512 >= RMQ_META_RESERVE_BYTES)
		return 0;
	char dir[4096];
	snprintf(dir, sizeof(dir), "%s/meta", data_dir);
	if (mkdir(dir, 0755) < 0 && errno != EEXIST)
		return -errno;
	int fd = open(path, O_WRONLY | O_CREAT | O_CLOEXEC, 0600);
	if (fd < 0)
		return -errno;
	int rc = 0;
	if (fallocate(fd, 0, 0, RMQ_META_RESERVE_BYTES) < 0 || fsync(fd) < 0)
		rc = -errno;
	close(fd);
	if (rc < 0)
		unlink(path); /* a part reserved is no reserve: try again later */
	return rc;
}

/* Writes the file once (temporary file, fsync, rename, directory fsync). */
static int write_file(const char *data_dir, const char *name, const void *buf, size_t len)
{
	char dir[4096], tmp[4200], path[4200];
	int rc = 0;

	snprintf(dir, sizeof(dir), "%s/meta", data_dir);
	if (mkdir(dir, 0755) < 0 && errno != EEXIST)
		return -errno;
	snprintf(tmp, sizeof(tmp), "%s/%s.tmp", dir, name);
	snprintf(path, sizeof(path), "%s/%s", dir, name);
	int fd = open(tmp, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
	if (fd < 0)
		return -errno;
	if (write(fd, buf, len) != (ssize_t)len || fsync(fd) < 0) {
		rc = errno ? -errno : -EIO;
		close(fd);
		unlink(tmp);
		return rc;
	}
	close(fd);
	if (rename(tmp, path) < 0)
		return -errno;
	int dfd = open(dir, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
	if (dfd >= 0) {
		if (fsync(dfd) < 0)
			rc = -errno;
		close(dfd);
	}
	return rc;
}

int rmq_meta_write_file(const char *data_dir, const char *name, const void *buf, size_t len)
{
	int rc = write_file(data_dir, name, buf, len);
	if (rc == -ENOSPC || rc == -EDQUOT) {
		/* A full disk must still take the change that frees space
		 * (DeleteTopics): use the room kept for it. */
		char path[4200];
		meta_path(path, sizeof(path), data_dir, RMQ_META_RESERVE);
		if (unlink(path) == 0) {
			rmq_warn("the data directory's filesystem is full: metadata/%s written into the "
				 "room reserved for it; it is reserved again once space is freed", name);
			rc = write_file(data_dir, name, buf, len);
		}
	}
	if (rc == 0)
		(void)rmq_meta_reserve(data_dir); /* again, once there is room */
	return rc;
}

ssize_t rmq_meta_read_file(const char *data_dir, const char *name, void *buf, size_t len)
{
	char path[4200];
	meta_path(path, sizeof(path), data_dir, name);
	int fd = open(path, O_RDONLY | O_CLOEXEC);
	if (fd < 0)
		return -errno;
	ssize_t n = read(fd, buf, len);
	int e = errno;
	close(fd);
	return n < 0 ? -e : n;
}

/* The encoder's memory: one block, carved as the records are laid out. */
struct arena {
	uint8_t *p;
	size_t used, cap;
};

static void *carve(struct arena *a, size_t n)
{
	n = (n + 15) & ~(size_t)15;
	RMQ_ASSERT(a->used + n <= a->cap);
	void *r = a->p + a->used;
	a->used += n;
	return r;
}

#define ID_CHARS 11 /* "4294967295" */

static char *id_str(struct arena *a, uint32_t id)
{
	char *s = carve(a, ID_CHARS);
	snprintf(s, ID_CHARS, "%" PRIu32, id);
	return s;
}

static char **ids_str(struct arena *a, const uint32_t *ids, uint32_t n)
{
	char **v = carve(a, (n ? n : 1) * sizeof(char *));
	for (uint32_t i = 0; i < n; i++)
		v[i] = id_str(a, ids[i]);
	return v;
}

/* The arena's size for m: an upper bound of what encode() carves. */
static size_t arena_bytes(const struct rmq_meta *m)
{
	size_t parts = 0;
	for (size_t i = 0; i < m->ntopics; i++)
		parts += m->topics[i].partitions;
	size_t per_part = sizeof(Rustmq__Common__PartitionMetadata) + sizeof(void *) +
			  sizeof(Rustmq__Common__TopicPartition) +
			  (1 + 2 * RMQ_REPLICAS_MAX) * (ID_CHARS + 16 + sizeof(char *)) + 64;
	size_t per_topic = sizeof(Rustmq__Common__TopicMetadata) + sizeof(Rustmq__Common__TopicConfig) +
			   sizeof(Google__Protobuf__Timestamp) + sizeof(void *) * 2 +
			   RMQ_TOPIC_CONFIG_KEYS * (sizeof(Rustmq__Common__ConfigEntry) + 32 + 48) + 128;
	size_t per_broker = sizeof(Rustmq__Common__BrokerInfo) + sizeof(Rustmq__Common__BrokerId) +
			    sizeof(Rustmq__Controller__BrokerIncarnation) + 2 * sizeof(void *) +
			    ID_CHARS + 128;
	size_t configs = (RMQ_TOPIC_CONFIG_KEYS + 1) * (sizeof(Rustmq__Common__ConfigEntry) + 64 + 16);
	/* Generations: per topic a record and its array, per partition 8 bytes. */
	configs += m->ntopics * (sizeof(Rustmq__Controller__TopicGenerations) + sizeof(void *) + 64) +
		   parts * (sizeof(uint64_t) + sizeof(uint32_t));
	/* Reassignments: at most one per partition (the array and each record). */
	configs += parts * (sizeof(void *) + sizeof(Rustmq__Controller__PartitionMove) + 16) +
		   m->ntopics * 16;
	return 256 + configs + parts * per_part + m->ntopics * per_topic + m->nbrokers * per_broker;
}

void rmq_meta_topic_pb(const struct rmq_topic *t, struct Rustmq__Common__TopicMetadata *tm,
		       struct Rustmq__Common__TopicConfig *tc, struct Google__Protobuf__Timestamp *ts)
{
	rustmq__common__topic_metadata__init(tm);
	rustmq__common__topic_config__init(tc);
	google__protobuf__timestamp__init(ts);
	tm->name = (char *)t->name;
	tm->topic_id = (char *)t->id;
	tm->is_internal = t->internal;
	ts->seconds = (int64_t)(t->created_ms / 1000);
	ts->nanos = (int32_t)(t->created_ms % 1000) * 1000000;
	tm->created = ts;
	tc->partitions = t->partitions;
	tc->replication_factor = t->replication_factor;
	tm->config = tc;
}

static Rustmq__Common__TopicMetadata *encode_topic(struct arena *a, const struct rmq_topic *t)
{
	Rustmq__Common__TopicMetadata *tm = carve(a, sizeof(*tm));
	Rustmq__Common__TopicConfig *tc = carve(a, sizeof(*tc));
	Google__Protobuf__Timestamp *ts = carve(a, sizeof(*ts));
	rmq_meta_topic_pb(t, tm, tc, ts);
	tc->configs = carve(a, RMQ_TOPIC_CONFIG_KEYS * sizeof(*tc->configs));
	for (unsigned k = 0; k < RMQ_TOPIC_CONFIG_KEYS; k++) {
		if (!(t->cfg.overrides & (1u << k)))
			continue;
		Rustmq__Common__ConfigEntry *e = carve(a, sizeof(*e));
		rustmq__common__config_entry__init(e);
		e->name = (char *)rmq_topic_config_keys[k];
		e->value = carve(a, 32);
		rmq_topic_config_get(&t->cfg, k, e->value, 32);
		tc->configs[tc->n_configs++] = e;
	}
	tm->partitions = carve(a, (t->partitions ? t->partitions : 1) * sizeof(*tm->partitions));
	for (uint32_t p = 0; t->parts && p < t->partitions; p++) {
		const struct rmq_passign *pa = &t->parts[p];
		Rustmq__Common__PartitionMetadata *pm = carve(a, sizeof(*pm));
		Rustmq__Common__TopicPartition *tp = carve(a, sizeof(*tp));
		rustmq__common__partition_metadata__init(pm);
		rustmq__common__topic_partition__init(tp);
		tp->topic = (char *)t->name;
		tp->partition = p;
		pm->topic_partition = tp;
		pm->leader_id = pa->leader ? id_str(a, pa->leader) : "";
		pm->leader_epoch = pa->leader_epoch;
		pm->replica_ids = ids_str(a, pa->replicas, pa->nreplicas);
		pm->n_replica_ids = pa->nreplicas;
		pm->isr_ids = ids_str(a, pa->isr, pa->nisr);
		pm->n_isr_ids = pa->nisr;
		tm->partitions[tm->n_partitions++] = pm;
	}
	return tm;
}

void rmq_meta_broker_info(const struct rmq_broker_rec *r, struct Rustmq__Common__BrokerInfo *bi,
			  struct Rustmq__Common__BrokerId *id)
{
	rustmq__common__broker_info__init(bi);
	rustmq__common__broker_id__init(id);
	id->id = (char *)r->id_str;
	id->rack_id = (char *)r->rack;
	bi->id = id;
	bi->host = (char *)r->host;
	bi->port = r->port;
	bi->state = (Rustmq__Common__BrokerState)r->state;
	bi->epoch = r->epoch;
	bi->shards = r->shards;
	bi->version = (char *)r->version;
}

int rmq_meta_encode(const struct rmq_meta *m, size_t headroom, uint8_t **out, size_t *out_len)
{
	struct arena a = {.cap = arena_bytes(m)};
	a.p = malloc(a.cap);
	if (!a.p)
		return -ENOMEM;
	Rustmq__Controller__ControllerState st = RUSTMQ__CONTROLLER__CONTROLLER_STATE__INIT;
	Rustmq__Common__ClusterMetadata cm = RUSTMQ__COMMON__CLUSTER_METADATA__INIT;
	st.cluster = &cm;
	cm.cluster_id = (char *)m->cluster_id;
	cm.metadata_version = m->version;
	cm.topics = carve(&a, (m->ntopics + 1) * sizeof(*cm.topics));
	for (size_t i = 0; i < m->ntopics; i++)
		cm.topics[cm.n_topics++] = encode_topic(&a, &m->topics[i]);
	st.configs = carve(&a, (RMQ_TOPIC_CONFIG_KEYS + 1) * sizeof(*st.configs));
	for (unsigned k = 0; k <= RMQ_TOPIC_CONFIG_KEYS; k++) {
		bool partitions = k == RMQ_TOPIC_CONFIG_KEYS;
		if (partitions ? !m->num_partitions : !(m->defaults.overrides & (1u << k)))
			continue;
		Rustmq__Common__ConfigEntry *e = carve(&a, sizeof(*e));
		rustmq__common__config_entry__init(e);
		e->name = (char *)(partitions ? RMQ_CLUSTER_NUM_PARTITIONS : rmq_topic_config_keys[k]);
		e->value = carve(&a, 32);
		if (partitions)
			snprintf(e->value, 32, "%" PRIu32, m->num_partitions);
		else
			rmq_topic_config_get(&m->defaults, k, e->value, 32);
		st.configs[st.n_configs++] = e;
	}
	st.partition_generation = m->gens;
	st.producer_ids = m->producer_ids;
	st.generations = carve(&a, (m->ntopics + 1) * sizeof(*st.generations));
	for (size_t i = 0; i < m->ntopics; i++) {
		const struct rmq_topic *t = &m->topics[i];
		Rustmq__Controller__TopicGenerations *tg = carve(&a, sizeof(*tg));
		rustmq__controller__topic_generations__init(tg);
		tg->topic_id = (char *)t->id;
		tg->generations = carve(&a, (t->partitions + 1) * sizeof(uint64_t));
		tg->partition_epochs = carve(&a, (t->partitions + 1) * sizeof(uint32_t));
		for (uint32_t p = 0; t->parts && p < t->partitions; p++) {
			const struct rmq_passign *pa = &t->parts[p];
			tg->generations[tg->n_generations++] = pa->gen;
			tg->partition_epochs[tg->n_partition_epochs++] = pa->part_epoch;
			if (!pa->ntarget)
				continue;
			if (!tg->moves)
				tg->moves = carve(&a, t->partitions * sizeof(*tg->moves));
			Rustmq__Controller__PartitionMove *mv = carve(&a, sizeof(*mv));
			rustmq__controller__partition_move__init(mv);
			mv->partition = p;
			mv->target = (uint32_t *)pa->target;
			mv->n_target = pa->ntarget;
			mv->adding = pa->nadding;
			tg->moves[tg->n_moves++] = mv;
		}
		st.generations[st.n_generations++] = tg;
	}
	cm.brokers = carve(&a, (m->nbrokers + 1) * sizeof(*cm.brokers));
	st.incarnations = carve(&a, (m->nbrokers + 1) * sizeof(*st.incarnations));
	for (size_t i = 0; i < m->nbrokers; i++) {
		const struct rmq_broker_rec *r = &m->brokers[i];
		Rustmq__Common__BrokerInfo *bi = carve(&a, sizeof(*bi));
		Rustmq__Common__BrokerId *id = carve(&a, sizeof(*id));
		Rustmq__Controller__BrokerIncarnation *inc = carve(&a, sizeof(*inc));
		rmq_meta_broker_info(r, bi, id);
		rustmq__controller__broker_incarnation__init(inc);
		inc->broker_id = id->id;
		inc->incarnation_id = (char *)r->incarnation;
		cm.brokers[cm.n_brokers++] = bi;
		st.incarnations[st.n_incarnations++] = inc;
	}
	void *sec_mem;
	if (rmq_sec_to_state(m->sec, &st, &sec_mem) < 0) {
		free(a.p);
		return -ENOMEM;
	}
	size_t len = rustmq__controller__controller_state__get_packed_size(&st);
	uint8_t *buf = malloc(headroom + len + 1);
	if (buf) {
		rustmq__controller__controller_state__pack(&st, buf + headroom);
		*out = buf;
		*out_len = len;
	}
	free(sec_mem);
	free(a.p);
	return buf ? 0 : -ENOMEM;
}
