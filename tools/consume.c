/* SPDX-License-Identifier: Apache-2.0 */
/*
 * consume.c - rmq consume: ListOffsets for where to start, then Fetch long
 * polls of every partition (or one) printed on stdout, plain (each value
 * and a newline) or as JSON lines, until --max, --timeout, a signal or the
 * reader goes away.  With --group the loop is member.c's.
 */
#include "cli.h"
#include "consume.h"

#include "client/consumer.pb-c.h"
#include "core/shard.h"
#include "storage/codec.h"

#include <errno.h>
#include <inttypes.h>
#include <signal.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#define EC_OFFSET_OUT_OF_RANGE 11
#define EC_OFFSET_NOT_AVAILABLE 57

static volatile sig_atomic_t interrupted;

/* ---- output -------------------------------------------------------------- */

static bool utf8_valid(const uint8_t *s, size_t n)
{
	size_t i = 0;
	while (i < n) {
		uint8_t c = s[i];
		size_t len;
		uint32_t cp;
		if (c < 0x80) {
			i++;
			continue;
		} else if ((c & 0xe0) == 0xc0) {
			len = 2;
			cp = c & 0x1f;
		} else if ((c & 0xf0) == 0xe0) {
			len = 3;
			cp = c & 0x0f;
		} else if ((c & 0xf8) == 0xf0) {
			len = 4;
			cp = c & 0x07;
		} else {
			return false;
		}
		if (i + len > n)
			return false;
		for (size_t k = 1; k < len; k++) {
			if ((s[i + k] & 0xc0) != 0x80)
				return false;
			cp = cp << 6 | (s[i + k] & 0x3f);
		}
		if ((len == 2 && cp < 0x80) || (len == 3 && cp < 0x800) || (len == 4 && cp < 0x10000) ||
		    cp > 0x10ffff || (cp >= 0xd800 && cp <= 0xdfff))
			return false;
		i += len;
	}
	return true;
}

static void json_string(FILE *f, const uint8_t *s, size_t n)
{
	fputc('"', f);
	for (size_t i = 0; i < n; i++) {
		uint8_t c = s[i];
		if (c == '"' || c == '\\')
			fprintf(f, "\\%c", c);
		else if (c == '\n')
			fputs("\\n", f);
		else if (c == '\r')
			fputs("\\r", f);
		else if (c == '\t')
			fputs("\\t", f);
		else if (c < 0x20 || c == 0x7f)
			fprintf(f, "\\u%04x", c);
		else
			fputc(c, f);
	}
	fputc('"', f);
}

static void base64(FILE *f, const uint8_t *s, size_t n)
{
	static const char tab[] = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
	fputc('"', f);
	for (size_t i = 0; i < n; i += 3) {
		uint32_t v = (uint32_t)s[i] << 16 | (i + 1 < n ? (uint32_t)s[i + 1] << 8 : 0) |
			     (i + 2 < n ? s[i + 2] : 0);
		fputc(tab[v >> 18 & 63], f);
		fputc(tab[v >> 12 & 63], f);
		fputc(i + 1 < n ? tab[v >> 6 & 63] : '=', f);
		fputc(i + 2 < n ? tab[v & 63] : '=', f);
	}
	fputc('"', f);
}

/* "name":"utf-8 text" or "name_base64":"..." */
static void json_bytes(FILE *f, const char *name, const uint8_t *s, size_t n)
{
	if (utf8_valid(s, n)) {
		fprintf(f, "\"%s\":", name);
		json_string(f, s, n);
	} else {
		fprintf(f, "\"%s_base64\":", name);
		base64(f, s, n);
	}
}

static uint64_t ts_ms(const Google__Protobuf__Timestamp *t)
{
	return t ? (uint64_t)t->seconds * 1000 + (uint64_t)t->nanos / 1000000 : 0;
}

static void print_record(const struct consumer *c, uint32_t partition, uint64_t offset,
			 uint64_t batch_ts, const Rustmq__Common__Record *r)
{
	if (!c->json) {
		fwrite(r->value.data, 1, r->value.len, stdout);
		fputc('\n', stdout);
		return;
	}
	uint64_t ts = r->timestamp ? ts_ms(r->timestamp) : batch_ts;
	printf("{\"topic\":");
	json_string(stdout, (const uint8_t *)c->topic, strlen(c->topic));
	printf(",\"partition\":%" PRIu32 ",\"offset\":%" PRIu64 ",\"timestamp\":%" PRIu64 ",",
	       partition, offset, ts);
	if (r->key.len)
		json_bytes(stdout, "key", r->key.data, r->key.len);
	else
		printf("\"key\":null");
	fputc(',', stdout);
	json_bytes(stdout, "value", r->value.data, r->value.len);
	printf(",\"headers\":[");
	for (size_t i = 0; i < r->n_headers; i++) {
		const Rustmq__Common__Header *h = r->headers[i];
		printf("%s{\"key\":", i ? "," : "");
		json_string(stdout, (const uint8_t *)h->key, strlen(h->key));
		fputc(',', stdout);
		json_bytes(stdout, "value", h->value.data, h->value.len);
		fputc('}', stdout);
	}
	printf("]}\n");
}

/* Prints the records of one stored batch at or past cp->offset. */
static void consume_batch(struct consumer *c, struct cpart *cp,
			  const Rustmq__Common__RecordBatch *b)
{
	Rustmq__Common__RecordBatch *inner = NULL;
	Rustmq__Common__Record *const *recs = b->records;
	size_t n = b->n_records;
	if (b->compression_type) {
		size_t want;
		const uint8_t *src = b->compressed_records.data;
		size_t srclen = b->compressed_records.len;
		if (rmq_codec_decompressed_size((int)b->compression_type, src, srclen, &want) < 0)
			die("%s/%" PRIu32 ": batch at offset %" PRIu64 " does not decompress", c->topic,
			    cp->partition, b->base_offset);
		if (want > c->scratch_cap) {
			free(c->scratch);
			c->scratch = xmalloc(want);
			c->scratch_cap = want;
		}
		ssize_t got = rmq_codec_decompress((int)b->compression_type, src, srclen, c->scratch, want);
		if (got < 0)
			die("%s/%" PRIu32 ": batch at offset %" PRIu64 " does not decompress", c->topic,
			    cp->partition, b->base_offset);
		/* The decompressed bytes are field-7 elements: a RecordBatch
		 * holding only records. */
		inner = rustmq__common__record_batch__unpack(NULL, (size_t)got, c->scratch);
		if (!inner)
			die("%s/%" PRIu32 ": batch at offset %" PRIu64 " holds malformed records",
			    c->topic, cp->partition, b->base_offset);
		recs = inner->records;
		n = inner->n_records;
	}
	uint64_t batch_ts = b->log_append_time_ms ? b->log_append_time_ms : ts_ms(b->first_timestamp);
	for (size_t i = 0; i < n && (c->max == 0 || c->got < c->max); i++) {
		uint64_t off = b->base_offset + i;
		if (off < cp->offset)
			continue;
		print_record(c, cp->partition, off, batch_ts, recs[i]);
		c->got++;
		cp->offset = off + 1;
	}
	uint64_t count = b->record_count ? b->record_count : n;
	if ((c->max == 0 || c->got < c->max) && b->base_offset + count > cp->offset)
		cp->offset = b->base_offset + count;
	if (inner)
		rustmq__common__record_batch__free_unpacked(inner, NULL);
}

/* ---- ListOffsets and Fetch ----------------------------------------------- */

void consumer_list_offsets(struct consumer *c, int spec, uint64_t at_ms)
{
	uint32_t n = 0;
	for (uint32_t i = 0; i < c->nparts; i++)
		n += c->parts[i].offset == UINT64_MAX;
	if (n == 0)
		return;
	Rustmq__Client__ListOffsetsPartition *lp = xmalloc(sizeof(*lp) * n);
	Rustmq__Client__ListOffsetsPartition **lpp = xmalloc(sizeof(*lpp) * n);
	Rustmq__Common__TopicPartition *tps = xmalloc(sizeof(*tps) * n);
	Google__Protobuf__Timestamp ts = pb_timestamp(at_ms);
	uint32_t k = 0;
	for (uint32_t i = 0; i < c->nparts; i++) {
		if (c->parts[i].offset != UINT64_MAX)
			continue;
		rustmq__client__list_offsets_partition__init(&lp[k]);
		rustmq__common__topic_partition__init(&tps[k]);
		tps[k].topic = (char *)c->topic;
		tps[k].partition = c->parts[i].partition;
		lp[k].topic_partition = &tps[k];
		lp[k].spec = (Rustmq__Client__OffsetSpec)spec;
		if (spec == RUSTMQ__CLIENT__OFFSET_SPEC__OFFSET_SPEC_TIMESTAMP)
			lp[k].timestamp = &ts;
		lpp[k] = &lp[k];
		k++;
	}
	Rustmq__Client__ListOffsetsRequest req = RUSTMQ__CLIENT__LIST_OFFSETS_REQUEST__INIT;
	req.version = &api_v1;
	req.client_id = "rmq";
	req.n_partitions = n;
	req.partitions = lpp;
	Rustmq__Client__ListOffsetsResponse *r =
		PB_CALL("ListOffsets", "/rustmq.client.ConsumerService/ListOffsets", &req,
			Rustmq__Client__ListOffsetsResponse,
			rustmq__client__list_offsets_response__descriptor);
	if (r->error_code)
		die_code("ListOffsets", c->topic, r->error_code, r->error_message);
	bool need_latest = false;
	for (size_t i = 0; i < r->n_partitions; i++) {
		const Rustmq__Client__ListOffsetsPartitionResponse *pr = r->partitions[i];
		uint32_t p = pr->topic_partition ? pr->topic_partition->partition : 0;
		for (uint32_t j = 0; j < c->nparts; j++) {
			if (c->parts[j].partition != p || c->parts[j].offset != UINT64_MAX)
				continue;
			if (pr->error_code == EC_OFFSET_NOT_AVAILABLE &&
			    spec == RUSTMQ__CLIENT__OFFSET_SPEC__OFFSET_SPEC_TIMESTAMP)
				need_latest = true; /* nothing at or after the time yet */
			else if (pr->error_code)
				die_code("ListOffsets", c->topic, pr->error_code, pr->error_message);
			else
				c->parts[j].offset = pr->offset;
		}
	}
	protobuf_c_message_free_unpacked(&r->base, NULL);
	free(lp);
	free(lpp);
	free(tps);
	/* Those partitions start at LATEST; the others keep theirs. */
	if (need_latest)
		consumer_list_offsets(c, RUSTMQ__CLIENT__OFFSET_SPEC__OFFSET_SPEC_LATEST, 0);
}

void consumer_fetch(struct consumer *c, uint64_t wait_ns)
{
	Rustmq__Client__FetchPartition *fp = xmalloc(sizeof(*fp) * c->nparts);
	Rustmq__Client__FetchPartition **fpp = xmalloc(sizeof(*fpp) * c->nparts);
	Rustmq__Common__TopicPartition *tps = xmalloc(sizeof(*tps) * c->nparts);
	for (uint32_t i = 0; i < c->nparts; i++) {
		rustmq__client__fetch_partition__init(&fp[i]);
		rustmq__common__topic_partition__init(&tps[i]);
		tps[i].topic = (char *)c->topic;
		tps[i].partition = c->parts[i].partition;
		fp[i].topic_partition = &tps[i];
		fp[i].fetch_offset = c->parts[i].offset;
		fp[i].partition_max_bytes = 1u << 20;
		fpp[i] = &fp[i];
	}
	Google__Protobuf__Duration d = pb_duration(wait_ns);
	Rustmq__Client__FetchRequest req = RUSTMQ__CLIENT__FETCH_REQUEST__INIT;
	req.version = &api_v1;
	req.client_id = "rmq";
	req.max_wait = &d;
	req.min_bytes = 1;
	req.max_bytes = 8u << 20;
	req.n_partitions = c->nparts;
	req.partitions = fpp;
	Rustmq__Client__FetchResponse *r = (Rustmq__Client__FetchResponse *)pb_call(
		"Fetch", "/rustmq.client.ConsumerService/Fetch", &req.base,
		&rustmq__client__fetch_response__descriptor, wait_ns + CALL_TIMEOUT_NS);
	if (r->error_code)
		die_code("Fetch", c->topic, r->error_code, r->error_message);
	for (size_t i = 0; i < r->n_partitions; i++) {
		const Rustmq__Client__FetchPartitionResponse *pr = r->partitions[i];
		uint32_t p = pr->topic_partition ? pr->topic_partition->partition : 0;
		struct cpart *cp = NULL;
		for (uint32_t k = 0; k < c->nparts; k++)
			if (c->parts[k].partition == p)
				cp = &c->parts[k];
		if (!cp)
			continue;
		if (pr->error_code == EC_OFFSET_OUT_OF_RANGE) {
			uint64_t to = cp->offset < pr->log_start_offset ? pr->log_start_offset
									: pr->high_watermark;
			fprintf(stderr, "rmq: %s/%" PRIu32 ": offset %" PRIu64
				" is out of range (%" PRIu64 "..%" PRIu64 "); continuing at %" PRIu64 "\n",
				c->topic, p, cp->offset, pr->log_start_offset, pr->high_watermark, to);
			cp->offset = to;
			continue;
		}
		if (pr->error_code)
			die_code("Fetch", c->topic, pr->error_code, pr->error_message);
		for (size_t b = 0; b < pr->n_batches && (c->max == 0 || c->got < c->max); b++)
			consume_batch(c, cp, pr->batches[b]);
	}
	protobuf_c_message_free_unpacked(&r->base, NULL);
	free(fp);
	free(fpp);
	free(tps);
}

/* ---- the loop ------------------------------------------------------------ */

static void on_sigint(int sig)
{
	(void)sig;
	interrupted = 1;
}

bool consumer_interrupted(void)
{
	return interrupted;
}

bool consumer_stdout_closed(void)
{
	if (!ferror(stdout))
		return false;
	if (errno == EPIPE)
		return true;
	die("cannot write stdout: %s", strerror(errno));
}

bool consumer_idle_wait(uint64_t idle_ns, uint64_t timeout_ns, uint64_t *wait_ns)
{
	if (!timeout_ns)
		return true;
	if (idle_ns >= timeout_ns)
		return false;
	if (timeout_ns - idle_ns < *wait_ns)
		*wait_ns = timeout_ns - idle_ns;
	return true;
}

int cmd_consume(int argc, char **argv)
{
	struct consumer c = {0};
	const char *offset_s, *format_s, *group_s, *assignor_s;
	uint64_t partition, max, timeout_ns, session_ns, commit_ns;
	const struct rmq_flag flags[] = {
		{"offset", RMQ_FLAG_STRING, &offset_s, "latest", "where to start: earliest, latest, an offset N, or @<unix-ms>; with --group, where a partition the group has no committed offset for starts (the reset policy)", 0, 0, NULL},
		{"partition", RMQ_FLAG_UINT, &partition, "4294967295", "read one partition (default: all, merged; not with --group)", 0, 4294967295u, NULL},
		{"max", RMQ_FLAG_UINT, &max, "0", "stop after N records (0 = no limit)", 0, 0, NULL},
		{"format", RMQ_FLAG_CHOICE, &format_s, "plain", "plain: each value and a newline; json: one object per record", 0, 0, "plain|json"},
		{"timeout", RMQ_FLAG_DURATION, &timeout_ns, "0s", "stop when no record arrives for this long (0s = wait forever)", 0, 0, NULL},
		{"group", RMQ_FLAG_STRING, &group_s, "", "consume as a member of this consumer group: the group's partitions are split between its members, positions are committed", 0, 0, NULL},
		{"assignor", RMQ_FLAG_CHOICE, &assignor_s, "range", "with --group: how the broker splits the partitions", 0, 0, "range|roundrobin|sticky"},
		{"session-timeout", RMQ_FLAG_DURATION, &session_ns, "10s", "with --group: the member is removed when it is not heard from for this long", 1 * MS, 0, NULL},
		{"commit-interval", RMQ_FLAG_DURATION, &commit_ns, "5s", "with --group: how often to commit the positions (and always on exit)", 1 * MS, 0, NULL},
	};
	const struct cmd_spec cs = {
		"consume", "consume TOPIC [--offset earliest|latest|N|@ms] [--partition N | --group G] [--max N] [--format plain|json] [--timeout DURATION]",
		"Prints the records of a topic (all partitions merged) on stdout.\n\n"
		"With --group G it is one member of consumer group G: the broker splits the topic's\n"
		"partitions between the members (--assignor), each partition starts at the group's\n"
		"committed offset, or where --offset says when the group has none (default latest, like\n"
		"Kafka's auto.offset.reset), and the positions are committed every --commit-interval\n"
		"and on exit (--max, --timeout, SIGINT, SIGTERM), so the next member resumes there.",
		flags, 9, 1, 1, false, false};
	int npos;
	parse_args(&cs, argc, argv, &npos);
	c.topic = argv[1];
	c.json = strcmp(format_s, "json") == 0;
	c.max = max;
	bool grouped = *group_s != '\0';
	if (grouped && partition != PARTITION_ANY)
		usage_error("--partition and --group exclude each other: the group assigns the partitions");
	int spec;
	uint64_t at = 0;
	char err[128];
	if (strcmp(offset_s, "earliest") == 0) {
		spec = RUSTMQ__CLIENT__OFFSET_SPEC__OFFSET_SPEC_EARLIEST;
	} else if (strcmp(offset_s, "latest") == 0) {
		spec = RUSTMQ__CLIENT__OFFSET_SPEC__OFFSET_SPEC_LATEST;
	} else if (offset_s[0] == '@') {
		spec = RUSTMQ__CLIENT__OFFSET_SPEC__OFFSET_SPEC_TIMESTAMP;
		if (rmq_parse_uint(offset_s + 1, 0, (uint64_t)INT64_MAX / 1000, &at, err, sizeof(err)) < 0)
			usage_error("--offset %s: a timestamp is @<ms since the Unix epoch>", offset_s);
	} else {
		spec = -1;
		if (rmq_parse_uint(offset_s, 0, UINT64_MAX - 1, &at, err, sizeof(err)) < 0)
			usage_error("--offset '%s': want earliest, latest, an offset or @<unix-ms>",
				    offset_s);
	}

	connect_broker();
	uint32_t total = topic_partitions(c.topic);
	struct sigaction sa = {.sa_handler = on_sigint};
	sigaction(SIGINT, &sa, NULL);
	sigaction(SIGTERM, &sa, NULL);
	if (grouped) {
		const struct member_opts mo = {
			.group = group_s,
			.assignor = assignor_s,
			.session_ns = session_ns,
			.timeout_ns = timeout_ns,
			.commit_ns = commit_ns,
			.reset_spec = spec,
			.reset_at = at,
		};
		int rc = member_run(&c, &mo);
		free(c.parts);
		free(c.scratch);
		return rc;
	}
	topic_check_partition(c.topic, partition, total);
	c.nparts = partition != PARTITION_ANY ? 1 : total;
	c.parts = xmalloc(sizeof(*c.parts) * c.nparts);
	for (uint32_t i = 0; i < c.nparts; i++) {
		c.parts[i].partition = partition != PARTITION_ANY ? (uint32_t)partition : i;
		c.parts[i].offset = spec < 0 ? at : UINT64_MAX;
	}
	if (spec >= 0)
		consumer_list_offsets(&c, spec, at);

	bool progress = isatty(2) && !isatty(1);
	uint64_t next_progress = 0;
	uint64_t last_record = rmq_now_ns();
	while (!interrupted && (c.max == 0 || c.got < c.max)) {
		uint64_t wait = NS;
		if (!consumer_idle_wait(rmq_now_ns() - last_record, timeout_ns, &wait))
			break;
		uint64_t before = c.got;
		consumer_fetch(&c, wait);
		if (c.got != before)
			last_record = rmq_now_ns();
		if (consumer_stdout_closed())
			break;
		if (progress && rmq_now_ns() >= next_progress) {
			fprintf(stderr, "\rconsumed %" PRIu64 " records", c.got);
			next_progress = rmq_now_ns() + 500 * MS;
		}
	}
	if (progress)
		fprintf(stderr, "\rconsumed %" PRIu64 " records\n", c.got);
	free(c.parts);
	free(c.scratch);
	return 0;
}
