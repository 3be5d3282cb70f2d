/* SPDX-License-Identifier: Apache-2.0 */
/* meta.c - topic metadata snapshots, validation and persistence (see meta.h). */
#include "broker/meta.h"

#include "common/metadata.pb-c.h"
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
	if (!m->topics) {
		free(m);
		return NULL;
	}
	return m;
}

struct rmq_meta *rmq_meta_copy(const struct rmq_meta *m, size_t extra)
{
	struct rmq_meta *c = rmq_meta_new(m->ntopics + extra);
	if (!c)
		return NULL;
	memcpy(c->topics, m->topics, m->ntopics * sizeof(*m->topics));
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
	memmove(&m->topics[i], &m->topics[i + 1], (m->ntopics - i - 1) * sizeof(*m->topics));
	m->ntopics--;
}

void rmq_meta_ref(struct rmq_meta *m)
{
	atomic_fetch_add_explicit(&m->refs, 1, memory_order_relaxed);
}

void rmq_meta_unref(struct rmq_meta *m)
{
	/* acq_rel: the last holder's free happens after every other holder's
	 * reads (the classic refcount pairing). */
	if (m && atomic_fetch_sub_explicit(&m->refs, 1, memory_order_acq_rel) == 1) {
		free(m->topics);
		free(m);
	}
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

int rmq_meta_decode(const uint8_t *buf, size_t len, const struct rmq_topic_config *defaults,
		    struct rmq_meta **out)
{
	int rc = 0;
	Rustmq__Common__ClusterMetadata *cm = rustmq__common__cluster_metadata__unpack(NULL, len, buf);
	if (!cm)
		return RMQ_ECORRUPT;
	struct rmq_meta *m = rmq_meta_new(cm->n_topics);
	if (!m) {
		rc = -ENOMEM;
		goto out;
	}
	m->version = cm->metadata_version;
	for (size_t i = 0; i < cm->n_topics; i++) {
		Rustmq__Common__TopicMetadata *tm = cm->topics[i];
		struct rmq_topic t;
		const char *why;
		memset(&t, 0, sizeof(t));
		if (rmq_topic_name_check(tm->name, &why) < 0 || !tm->config ||
		    tm->config->partitions == 0 || tm->config->partitions > RMQ_PARTITIONS_MAX ||
		    rmq_meta_find(m, tm->name) >= 0) {
			rmq_error("metadata: topic '%s' is invalid", tm->name);
			rc = RMQ_ECORRUPT;
			goto out;
		}
		snprintf(t.name, sizeof(t.name), "%s", tm->name);
		snprintf(t.id, sizeof(t.id), "%s", tm->topic_id);
		t.partitions = tm->config->partitions;
		t.replication_factor = tm->config->replication_factor;
		t.internal = tm->is_internal;
		t.created_ms = tm->created ? (uint64_t)tm->created->seconds * 1000 +
						     (uint64_t)tm->created->nanos / 1000000
					   : 0;
		t.cfg = *defaults;
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
		rmq_meta_insert(m, &t);
	}
	*out = m;
	m = NULL;
out:
	if (m) { /* never published: nobody holds a reference */
		free(m->topics);
		free(m);
	}
	rustmq__common__cluster_metadata__free_unpacked(cm, NULL);
	return rc;
}

int rmq_meta_load(const char *data_dir, const struct rmq_topic_config *defaults,
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
	rc = rmq_meta_decode(buf, (size_t)n, defaults, out);
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

int rmq_meta_encode(const struct rmq_meta *m, uint8_t **out, size_t *out_len)
{
	int rc = 0;

	Rustmq__Common__ClusterMetadata cm = RUSTMQ__COMMON__CLUSTER_METADATA__INIT;
	Rustmq__Common__TopicMetadata *tms = calloc(m->ntopics + 1, sizeof(*tms));
	Rustmq__Common__TopicMetadata **tps = calloc(m->ntopics + 1, sizeof(*tps));
	Rustmq__Common__TopicConfig *tcs = calloc(m->ntopics + 1, sizeof(*tcs));
	Google__Protobuf__Timestamp *tss = calloc(m->ntopics + 1, sizeof(*tss));
	Rustmq__Common__ConfigEntry *ces = calloc((m->ntopics + 1) * RMQ_TOPIC_CONFIG_KEYS, sizeof(*ces));
	Rustmq__Common__ConfigEntry **cps = calloc((m->ntopics + 1) * RMQ_TOPIC_CONFIG_KEYS, sizeof(*cps));
	char(*vals)[32] = calloc((m->ntopics + 1) * RMQ_TOPIC_CONFIG_KEYS, 32);
	uint8_t *buf = NULL;
	if (!tms || !tps || !tcs || !tss || !ces || !cps || !vals) {
		rc = -ENOMEM;
		goto out;
	}
	cm.metadata_version = m->version;
	cm.n_topics = m->ntopics;
	cm.topics = tps;
	for (size_t i = 0; i < m->ntopics; i++) {
		const struct rmq_topic *t = &m->topics[i];
		rustmq__common__topic_metadata__init(&tms[i]);
		rustmq__common__topic_config__init(&tcs[i]);
		google__protobuf__timestamp__init(&tss[i]);
		tms[i].name = (char *)t->name;
		tms[i].topic_id = (char *)t->id;
		tms[i].is_internal = t->internal;
		tss[i].seconds = (int64_t)(t->created_ms / 1000);
		tss[i].nanos = (int32_t)(t->created_ms % 1000) * 1000000;
		tms[i].created = &tss[i];
		tcs[i].partitions = t->partitions;
		tcs[i].replication_factor = t->replication_factor;
		tcs[i].configs = &cps[i * RMQ_TOPIC_CONFIG_KEYS];
		for (unsigned k = 0; k < RMQ_TOPIC_CONFIG_KEYS; k++) {
			if (!(t->cfg.overrides & (1u << k)))
				continue;
			size_t j = i * RMQ_TOPIC_CONFIG_KEYS + tcs[i].n_configs;
			rustmq__common__config_entry__init(&ces[j]);
			ces[j].name = (char *)rmq_topic_config_keys[k];
			rmq_topic_config_get(&t->cfg, k, vals[j], sizeof(vals[j]));
			ces[j].value = vals[j];
			cps[j] = &ces[j];
			tcs[i].n_configs++;
		}
		tms[i].config = &tcs[i];
		tps[i] = &tms[i];
	}
	size_t len = rustmq__common__cluster_metadata__get_packed_size(&cm);
	buf = malloc(len ? len : 1);
	if (!buf) {
		rc = -ENOMEM;
		goto out;
	}
	rustmq__common__cluster_metadata__pack(&cm, buf);
	*out = buf;
	*out_len = len;
	buf = NULL;
out:
	free(buf);
	free(vals);
	free(cps);
	free(ces);
	free(tss);
	free(tcs);
	free(tps);
	free(tms);
	return rc;
}
