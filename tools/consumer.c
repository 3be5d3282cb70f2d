/* SPDX-License-Identifier: Apache-2.0 */
/*
 * consumer.c - the consumer loops (see consumer.h): Fetch long polls
 * printed on stdout, of the partitions placed by the caller or, as a
 * member of a consumer group, of those member.h says this member owns.
 */
#include "consumer.h"

#include "cli.h"
#include "member.h"
#include "route.h"

#include "client/consumer.pb-c.h"
#include "core/shard.h"
#include "storage/codec.h"

#include <errno.h>
#include <inttypes.h>
#include <signal.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#define GROUP_POLL_NS (500 * MS) /* a member's longest fetch wait: SIGINT is seen this fast */
#define GROUP_TRIES_MAX 100      /* joining steps (coordinator loading, moving: 100 ms apart) */

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

/* ---- Fetch --------------------------------------------------------------- */

/* The answer of one Fetch: prints what came back (up to c->max) and moves
 * the positions past it.  A partition whose leader moved is routed anew
 * (route.h) and fetched again by the next round. */
static void fetch_answer(struct consumer *c, const Rustmq__Client__FetchResponse *r, int *tries)
{
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
		if (pr->error_code == EC(OFFSET_OUT_OF_RANGE)) {
			uint64_t to = cp->offset < pr->log_start_offset ? pr->log_start_offset
									: pr->high_watermark;
			fprintf(stderr, "rmq: %s/%" PRIu32 ": offset %" PRIu64
				" is out of range (%" PRIu64 "..%" PRIu64 "); continuing at %" PRIu64 "\n",
				c->topic, p, cp->offset, pr->log_start_offset, pr->high_watermark, to);
			cp->offset = to;
			continue;
		}
		if (pr->error_code && route_retry(c->topic, p, pr->error_code, "", tries))
			continue;
		if (pr->error_code)
			die_code("Fetch", c->topic, pr->error_code, pr->error_message);
		for (size_t b = 0; b < pr->n_batches && (c->max == 0 || c->got < c->max); b++)
			consume_batch(c, cp, pr->batches[b]);
	}
}

/* One Fetch per broker leading some partitions of c, all in flight at
 * once, each waiting up to wait_ns for a record. */
static void consumer_fetch(struct consumer *c, uint64_t wait_ns)
{
	uint32_t n = c->nparts;
	Rustmq__Client__FetchPartition *fp = xmalloc(sizeof(*fp) * n);
	Rustmq__Client__FetchPartition **fpp = xmalloc(sizeof(*fpp) * n);
	Rustmq__Common__TopicPartition *tps = xmalloc(sizeof(*tps) * n);
	struct rmq_rpc **to = xmalloc(sizeof(*to) * n);
	struct rmq_rpc_call *calls = xmalloc(sizeof(*calls) * n);
	bool *sent = calloc(n, sizeof(*sent));
	if (!sent)
		die("out of memory");
	for (uint32_t i = 0; i < n; i++) {
		rustmq__client__fetch_partition__init(&fp[i]);
		rustmq__common__topic_partition__init(&tps[i]);
		tps[i].topic = (char *)c->topic;
		tps[i].partition = c->parts[i].partition;
		fp[i].topic_partition = &tps[i];
		fp[i].fetch_offset = c->parts[i].offset;
		fp[i].partition_max_bytes = 1u << 20;
		to[i] = route_rpc(c->topic, c->parts[i].partition);
	}
	Google__Protobuf__Duration d = pb_duration(wait_ns);
	Rustmq__Client__FetchRequest req = RUSTMQ__CLIENT__FETCH_REQUEST__INIT;
	req.version = &api_v1;
	req.client_id = "rmq";
	req.max_wait = &d;
	req.min_bytes = 1;
	req.max_bytes = 8u << 20;
	uint32_t ncalls = 0;
	for (uint32_t i = 0; i < n; i++) {
		if (sent[i])
			continue;
		/* The partitions led by to[i]'s broker. */
		uint32_t k = 0;
		for (uint32_t j = i; j < n; j++) {
			if (!sent[j] && to[j] == to[i]) {
				fpp[k++] = &fp[j];
				sent[j] = true;
			}
		}
		req.n_partitions = k;
		req.partitions = fpp;
		size_t len = protobuf_c_message_get_packed_size(&req.base);
		uint8_t *buf = xmalloc(len + 1);
		protobuf_c_message_pack(&req.base, buf);
		calls[ncalls] = (struct rmq_rpc_call){.path = "/rustmq.client.ConsumerService/Fetch",
						      .req = buf, .len = len,
						      .timeout_ns = wait_ns + CALL_TIMEOUT_NS};
		rmq_rpc_submit(to[i], &calls[ncalls++]);
	}
	int tries = 0;
	for (uint32_t k = 0; k < ncalls; k++) {
		enum rmq_grpc_status st = rmq_rpc_wait(&calls[k]);
		if (st != RMQ_GRPC_OK)
			die_status("Fetch", st, calls[k].message);
		Rustmq__Client__FetchResponse *r =
			rustmq__client__fetch_response__unpack(NULL, calls[k].resp_len, calls[k].resp);
		if (!r)
			die("Fetch: the broker's answer does not parse (is --bootstrap an rmqd?)");
		fetch_answer(c, r, &tries);
		protobuf_c_message_free_unpacked(&r->base, NULL);
		rmq_rpc_call_reset(&calls[k]);
		free((void *)calls[k].req);
	}
	free(calls);
	free(sent);
	free(to);
	free(fp);
	free(fpp);
	free(tps);
}

/* ---- the loops ----------------------------------------------------------- */

static void on_sigint(int sig)
{
	(void)sig;
	interrupted = 1;
}

void consumer_catch_signals(void)
{
	struct sigaction sa = {.sa_handler = on_sigint};
	sigaction(SIGINT, &sa, NULL);
	sigaction(SIGTERM, &sa, NULL);
}

/* After a fetch: true when stdout's reader went away (EPIPE), so the
 * consumer stops cleanly; dies on any other write error. */
static bool stdout_closed(void)
{
	if (!ferror(stdout))
		return false;
	if (errno == EPIPE)
		return true;
	die("cannot write stdout: %s", strerror(errno));
}

/* Shortens *wait_ns to what is left of timeout_ns (0 = none) after idle_ns
 * without a record.  Returns false when nothing is left: time to stop. */
static bool idle_wait(uint64_t idle_ns, uint64_t timeout_ns, uint64_t *wait_ns)
{
	if (!timeout_ns)
		return true;
	if (idle_ns >= timeout_ns)
		return false;
	if (timeout_ns - idle_ns < *wait_ns)
		*wait_ns = timeout_ns - idle_ns;
	return true;
}

static bool want_more(const struct consumer *c)
{
	return !interrupted && (c->max == 0 || c->got < c->max);
}

int consumer_run(struct consumer *c, uint64_t timeout_ns)
{
	bool progress = isatty(2) && !isatty(1);
	uint64_t next_progress = 0;
	uint64_t last_record = rmq_now_ns();
	while (want_more(c)) {
		uint64_t wait = NS;
		if (!idle_wait(rmq_now_ns() - last_record, timeout_ns, &wait))
			break;
		uint64_t before = c->got;
		consumer_fetch(c, wait);
		if (c->got != before)
			last_record = rmq_now_ns();
		if (stdout_closed())
			break;
		if (progress && rmq_now_ns() >= next_progress) {
			fprintf(stderr, "\rconsumed %" PRIu64 " records", c->got);
			next_progress = rmq_now_ns() + 500 * MS;
		}
	}
	if (progress)
		fprintf(stderr, "\rconsumed %" PRIu64 " records\n", c->got);
	return 0;
}

/* ---- as a group member: member.h, driven with blocking calls ------------- */

struct group_run {
	struct consumer *c;
	const struct consumer_group_opts *o;
	bool find_coordinator;       /* the last answer said the coordinator moved or is not ready */
};

/* The error_code of a group call's answer: field 1 of every group response,
 * written first when set (protobuf writes fields in number order); 0 when
 * the answer starts otherwise. */
static int answer_code(const uint8_t *resp, size_t len)
{
	uint64_t v = 0;
	if (len < 2 || resp[0] != 0x08)
		return 0;
	for (size_t i = 1, shift = 0; i < len && shift < 64; i++, shift += 7) {
		v |= (uint64_t)(resp[i] & 0x7f) << shift;
		if (!(resp[i] & 0x80))
			return (int)v;
	}
	return 0;
}

static void group_error(void *arg, const char *what, enum rmq_grpc_status status, int code,
			const char *message)
{
	const struct group_run *g = arg;
	if (status != RMQ_GRPC_OK)
		die_status(what, status, message);
	if (code < 0)
		die("%s: the broker's answer does not parse (is --bootstrap an rmqd?)", what);
	if (strcmp(what, "LeaveGroup") == 0)
		return; /* leaving anyway */
	if (code == EC(INVALID_SESSION_TIMEOUT))
		die("group '%s': the broker refuses --session-timeout %" PRIu64 "ms: %s", g->o->group,
		    (uint64_t)(g->o->session_ns / MS), message);
	if (code == EC(INCONSISTENT_GROUP_PROTOCOL))
		die("group '%s' runs another assignor than --assignor %s (give the one its members use)",
		    g->o->group, g->o->assignor);
	die_group(what, g->o->group, g->c->topic, code, message);
}

static void group_commit_refused(void *arg, uint32_t partition, uint64_t offset, int code,
				 const char *message)
{
	const struct group_run *g = arg;
	fprintf(stderr, "rmq: group %s: commit of %s/%" PRIu32 " at %" PRIu64 " refused: %s%s%s\n",
		g->o->group, g->c->topic, partition, offset, ec_name(code), *message ? ": " : "",
		message);
}

static void group_uncommitted(void *arg, enum rmq_member_loss why, int code)
{
	const struct group_run *g = arg;
	if (why == RMQ_MEMBER_LOSS_REJOIN)
		fprintf(stderr, "rmq: group %s: commit refused (%s); rejoining: records printed "
			"since the last commit may be delivered again\n", g->o->group, ec_name(code));
	else if (why == RMQ_MEMBER_LOSS_FORGOTTEN)
		fprintf(stderr, "rmq: group %s: %s; rejoining: records printed since the last "
			"commit may be delivered again\n", g->o->group, ec_name(code));
	else
		fprintf(stderr, "rmq: group %s: the last commit was refused (%s): records printed "
			"since the one before may be delivered again\n", g->o->group, ec_name(code));
}

/* Sends the member's call and waits for the answer. */
static void group_call(struct rmq_member *m, const struct rmq_member_call *call,
		       struct group_run *g)
{
	const char *group = g->o->group;
	if (m->tries > GROUP_TRIES_MAX)
		die("group '%s': the coordinator did not settle (retry in a moment)", group);
	if (strcmp(call->what, "CommitOffsets") == 0)
		fflush(stdout); /* commit only what the reader was given */
	struct rmq_rpc_call rc = {
		.path = call->path, .req = call->req, .len = call->len, .timeout_ns = call->timeout_ns};
	/* The group's calls go to its coordinator, looked up again after an
	 * answer that said it moved or was not ready (the member retries). */
	struct rmq_rpc *rpc = route_coordinator(group, g->find_coordinator);
	enum rmq_grpc_status st = rmq_rpc_unary(rpc, &rc);
	int code = st == RMQ_GRPC_OK ? answer_code(rc.resp, rc.resp_len) : 0;
	g->find_coordinator = code == EC(NOT_COORDINATOR) || code == EC(COORDINATOR_NOT_AVAILABLE) ||
			      code == EC(COORDINATOR_LOAD_IN_PROGRESS);
	rmq_member_answer(m, rmq_now_ns(), st, rc.message, rc.resp, rc.resp_len);
	rmq_rpc_call_reset(&rc);
}

/* The partitions the group never committed start at --offset. */
static void group_position(struct rmq_member *m, const struct group_run *g)
{
	struct cpart *p = xmalloc(sizeof(*p) * (m->nparts ? m->nparts : 1));
	for (uint32_t i = 0; i < m->nparts; i++) {
		p[i] = (struct cpart){m->parts[i].partition, m->parts[i].offset};
		if (p[i].offset == RMQ_MEMBER_NO_OFFSET)
			p[i].offset = g->o->reset_spec < 0 ? g->o->reset_at : UINT64_MAX;
	}
	if (g->o->reset_spec >= 0)
		topic_list_offsets(g->c->topic, p, m->nparts, g->o->reset_spec, g->o->reset_at);
	for (uint32_t i = 0; i < m->nparts; i++)
		m->parts[i].offset = p[i].offset;
	free(p);
	rmq_member_positioned(m, rmq_now_ns());
}

int consumer_run_group(struct consumer *c, uint64_t timeout_ns,
		       const struct consumer_group_opts *o)
{
	static const struct rmq_member_ops ops = {
		.error = group_error,
		.commit_refused = group_commit_refused,
		.uncommitted = group_uncommitted,
	};
	const struct rmq_member_config cfg = {
		.group = o->group,
		.topic = c->topic,
		.client_id = "rmq",
		.assignor = o->assignor,
		.join_reason = "rmq consume",
		.leave_reason = "rmq consume stopped",
		.session_ns = o->session_ns,
		.rebalance_ns = o->session_ns,
		.commit_ns = o->commit_ns,
		.call_timeout_ns = CALL_TIMEOUT_NS,
	};
	struct group_run g = {c, o, false};
	struct rmq_member m;
	if (rmq_member_init(&m, &cfg, &ops, &g) < 0)
		die("out of memory");
	uint32_t held = 0;          /* the assignment c->parts holds (m.assignments) */
	uint64_t last_record = 0;   /* --timeout counts from the first assignment */
	bool leaving = false;
	for (;;) {
		uint64_t now = rmq_now_ns();
		if (!leaving && !want_more(c)) {
			rmq_member_leave(&m);
			leaving = true;
		}
		struct rmq_member_call call;
		uint64_t wake;
		int step = rmq_member_next(&m, now, false, &call, &wake);
		if (step < 0)
			die("out of memory");
		if (step == RMQ_MEMBER_DONE)
			break;
		if (step == RMQ_MEMBER_CALL) {
			group_call(&m, &call, &g);
			continue;
		}
		if (step == RMQ_MEMBER_POSITION) {
			group_position(&m, &g);
			continue;
		}
		uint64_t wait = wake - now < GROUP_POLL_NS ? wake - now : GROUP_POLL_NS;
		if (!rmq_member_readable(&m)) {
			sleep_ns(wait);
			continue;
		}
		if (held != m.assignments) {
			free(c->parts);
			c->nparts = m.nparts;
			c->parts = xmalloc(sizeof(*c->parts) * (m.nparts ? m.nparts : 1));
			for (uint32_t i = 0; i < m.nparts; i++)
				c->parts[i] = (struct cpart){m.parts[i].partition, m.parts[i].offset};
			held = m.assignments;
			if (!last_record)
				last_record = now;
		}
		if (!idle_wait(now - last_record, timeout_ns, &wait)) {
			rmq_member_leave(&m);
			leaving = true;
			continue;
		}
		uint64_t before = c->got;
		if (c->nparts)
			consumer_fetch(c, wait);
		else
			sleep_ns(wait); /* more members than partitions: stand by */
		if (c->got != before)
			last_record = rmq_now_ns();
		for (uint32_t i = 0; i < c->nparts; i++)
			m.parts[i].offset = c->parts[i].offset;
		if (stdout_closed()) {
			rmq_member_leave(&m);
			leaving = true;
		}
	}
	fflush(stdout);
	int rc = m.last_commit_code ? 1 : 0;
	rmq_member_free(&m);
	return rc;
}
