/* SPDX-License-Identifier: Apache-2.0 */
/*
 * driver_redis.c - rmq-bench's Redis Streams driver (--target redis://host:port),
 * through Debian's hiredis (0.14, the synchronous API).
 *
 *   stream    the key --topic (XADD creates it)
 *   produce   each connection pipelines XADD <topic> * v <value>: a "batch"
 *             is --batch XADDs appended back to back (Redis has no batch
 *             append; a pipeline is its nearest), and up to --streams
 *             batches are out at once.  Latency per batch, from its send
 *             to its last reply, as rmq's per ProduceBatch request.
 *   consume   ONE reader (readers_max 1: a Redis stream has no partitions
 *             to split, and two XREAD readers would each read everything)
 *             running XREAD COUNT <streams x batch> BLOCK 500 from 0-0
 *             (--from earliest) or $ (latest), then from the last id seen.
 *
 * With appendonly yes and appendfsync always (what bench/compare starts),
 * Redis fsyncs its AOF before it answers the commands of one event-loop
 * pass: a pipeline shares one fsync, like rmq's group commit.
 */
#include "bench.h"

#include <hiredis/hiredis.h>

#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <sys/time.h>

#define REDIS_TIMEOUT_S 10      /* a reply awaited at most (bounds the drain) */
#define REDIS_BLOCK_MS "500"    /* an XREAD's wait when nothing is there */

static void redis_err(struct bench_peer_worker *w, const char *what, const char *msg)
{
	char name[48];
	size_t word = strcspn(msg, " \n"); /* "ERR", "OOM", ...: the code, not the text */
	snprintf(name, sizeof(name), "redis:%s%.*s", what, (int)word, msg);
	bench_peer_error(w, name);
}

static redisContext *connect_to(struct bench_peer_worker *w)
{
	const struct bench_opts *o = bench_peer_opts(w);
	struct timeval tv = {REDIS_TIMEOUT_S, 0};
	redisContext *c = redisConnectWithTimeout(o->host, o->port, tv);
	if (!c || c->err) {
		redis_err(w, "connect:", c ? c->errstr : "out-of-memory");
		redisFree(c);
		return NULL;
	}
	redisSetTimeout(c, tv);
	return c;
}

static int redis_setup(const struct bench_opts *o, char *err, size_t errlen)
{
	struct timeval tv = {REDIS_TIMEOUT_S, 0};
	redisContext *c = redisConnectWithTimeout(o->host, o->port, tv);
	int rc = 0;
	if (!c || c->err) {
		snprintf(err, errlen, "connect: %s", c ? c->errstr : "out of memory");
		rc = -EIO;
	} else {
		redisReply *r = redisCommand(c, "PING");
		if (!r || r->type == REDIS_REPLY_ERROR) {
			snprintf(err, errlen, "PING: %s", r ? r->str : c->errstr);
			rc = -EIO;
		}
		freeReplyObject(r);
	}
	redisFree(c);
	return rc;
}

static int redis_teardown(const struct bench_opts *o)
{
	(void)o;
	return 0;
}

static int redis_produce(struct bench_peer_worker *w)
{
	const struct bench_opts *o = bench_peer_opts(w);
	unsigned streams = (unsigned)o->streams, head = 0, out = 0;
	uint8_t *val = malloc(o->msg_bytes);
	uint64_t *t0 = calloc(streams, sizeof(*t0));
	redisContext *c = NULL;
	int rc = 0;

	if (!val || !t0) {
		rc = -ENOMEM;
		goto done;
	}
	for (size_t i = 0; i < o->msg_bytes; i++)
		val[i] = (uint8_t)('A' + (i * 7 + bench_peer_index(w)) % 26);
	c = connect_to(w);
	if (!c) {
		rc = -EIO;
		goto done;
	}
	const char *argv[5] = {"XADD", o->topic, "*", "v", (const char *)val};
	size_t argl[5] = {4, strlen(o->topic), 1, 1, o->msg_bytes};
	for (;;) {
		bool running = bench_peer_running(w);
		while (running && out < streams) {
			uint64_t now = bench_peer_wall_ns();
			bench_peer_stamp(val, o->msg_bytes, now);
			for (uint64_t i = 0; i < o->batch; i++)
				redisAppendCommandArgv(c, 5, argv, argl);
			t0[(head + out) % streams] = now;
			out++;
		}
		if (out == 0)
			break;
		/* The oldest batch's replies (the first read flushes the rest). */
		uint64_t ok = 0;
		for (uint64_t i = 0; i < o->batch; i++) {
			redisReply *r = NULL;
			if (redisGetReply(c, (void **)&r) != REDIS_OK) {
				redis_err(w, "io:", c->errstr);
				goto done;
			}
			if (r->type == REDIS_REPLY_ERROR)
				redis_err(w, "", r->str);
			else
				ok++;
			freeReplyObject(r);
		}
		uint64_t now = bench_peer_wall_ns();
		bench_peer_account(w, ok, ok * o->msg_bytes, now - t0[head]);
		head = (head + 1) % streams;
		out--;
	}
done:
	redisFree(c);
	free(t0);
	free(val);
	return rc;
}

static int redis_consume(struct bench_peer_worker *w)
{
	const struct bench_opts *o = bench_peer_opts(w);
	char id[64], count[24];
	redisContext *c = connect_to(w);

	if (!c)
		return -EIO;
	snprintf(id, sizeof(id), "%s", o->from_latest ? "$" : "0-0");
	snprintf(count, sizeof(count), "%llu", (unsigned long long)(o->streams * o->batch));
	while (bench_peer_running(w)) {
		const char *argv[8] = {"XREAD", "COUNT", count, "BLOCK", REDIS_BLOCK_MS,
				       "STREAMS", o->topic, id};
		redisReply *r = redisCommandArgv(c, 8, argv, NULL);
		if (!r) {
			redis_err(w, "io:", c->errstr);
			break;
		}
		if (r->type == REDIS_REPLY_ERROR) {
			redis_err(w, "", r->str);
		} else if (r->type == REDIS_REPLY_ARRAY && r->elements == 1 &&
			   r->element[0]->type == REDIS_REPLY_ARRAY && r->element[0]->elements == 2) {
			/* [[key, [[id, [field, value]], ...]]] */
			redisReply *entries = r->element[0]->element[1];
			uint64_t now = bench_peer_wall_ns();
			for (size_t i = 0; i < entries->elements; i++) {
				redisReply *e = entries->element[i];
				if (e->type != REDIS_REPLY_ARRAY || e->elements != 2 ||
				    e->element[1]->type != REDIS_REPLY_ARRAY ||
				    e->element[1]->elements < 2) {
					bench_peer_error(w, "bench:BAD_RESPONSE");
					continue;
				}
				redisReply *v = e->element[1]->element[1];
				uint64_t stamp = bench_peer_stamp_of((const uint8_t *)v->str, v->len);
				bench_peer_account(w, 1, v->len, stamp && now > stamp ? now - stamp : 0);
				snprintf(id, sizeof(id), "%.*s", (int)e->element[0]->len,
					 e->element[0]->str);
			}
		}
		/* A nil reply is BLOCK's timeout: nothing new. */
		freeReplyObject(r);
	}
	redisFree(c);
	return 0;
}

const struct bench_driver bench_driver_redis = {
	.name = "redis",
	.produce_rpc = "xadd_pipeline",
	.consume_rpc = "xread",
	.setup = redis_setup,
	.produce = redis_produce,
	.consume = redis_consume,
	.readers_max = 1,
	.teardown = redis_teardown,
};
