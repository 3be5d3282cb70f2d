/* SPDX-License-Identifier: Apache-2.0 */
/*
 * driver_nats.c - rmq-bench's NATS JetStream driver (--target nats://host:port),
 * through Debian's libnats (nats.c 3.4).
 *
 *   stream    named --topic, subject --topic, file storage; created when
 *             missing (an existing one is used as it is)
 *   produce   each connection publishes with js_PublishAsync, at most
 *             --streams x --batch messages awaiting their PubAck (the
 *             records rmq keeps in flight per connection); the ack handler
 *             (a libnats thread) measures each message from the send time
 *             stamped in its value to its PubAck.  At the end,
 *             js_PublishAsyncComplete waits (10 s at most) for what is out.
 *   consume   one durable pull consumer (AckNone, DeliverAll for
 *             --from earliest, DeliverNew for latest) created at setup and
 *             shared by every reader connection, so the readers split the
 *             stream as rmq's split partitions; each reader Fetches
 *             --streams x --batch messages at a time.
 *
 * JetStream's file store writes every message to its block file but
 * fsyncs only on its sync interval (2 minutes by default), not per
 * message: see docs/benchmarks.md for how that compares.
 */
#include "bench.h"

#include <nats/nats.h>

#include <errno.h>
#include <inttypes.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#define NATS_DRAIN_MS 10000     /* js_PublishAsyncComplete at the end */
#define NATS_FETCH_WAIT_MS 500  /* a Fetch's wait when nothing is there */
#define NATS_STALL_MS 1000      /* a PublishAsync's wait while MaxPending is out */

static struct {
	natsConnection *nc;
	jsCtx *js;
	char durable[64];
	bool consumer_made;
} n;

static void nats_err(struct bench_peer_worker *w, const char *what, natsStatus s)
{
	char name[48];
	snprintf(name, sizeof(name), "nats:%s%s", what, natsStatus_GetText(s));
	bench_peer_error(w, name);
}

static int fail(char *err, size_t errlen, const char *what, natsStatus s, jsErrCode jerr)
{
	snprintf(err, errlen, "%s: %s (JetStream error %d)", what, natsStatus_GetText(s), (int)jerr);
	return -EIO;
}

static int nats_setup(const struct bench_opts *o, char *err, size_t errlen)
{
	natsStatus s;
	jsErrCode jerr = 0;
	jsStreamInfo *si = NULL;

	s = natsConnection_ConnectTo(&n.nc, o->target);
	if (s != NATS_OK)
		return fail(err, errlen, "connect", s, 0);
	s = natsConnection_JetStream(&n.js, n.nc, NULL);
	if (s != NATS_OK)
		return fail(err, errlen, "JetStream context", s, 0);
	s = js_GetStreamInfo(&si, n.js, o->topic, NULL, &jerr);
	if (s == NATS_NOT_FOUND || jerr == JSStreamNotFoundErr) {
		jsStreamConfig sc;
		const char *subjects[1] = {o->topic};
		jsStreamConfig_Init(&sc);
		sc.Name = o->topic;
		sc.Subjects = subjects;
		sc.SubjectsLen = 1;
		sc.Storage = js_FileStorage;
		jerr = 0;
		s = js_AddStream(&si, n.js, &sc, NULL, &jerr);
		if (s != NATS_OK)
			return fail(err, errlen, "create stream", s, jerr);
	} else if (s != NATS_OK) {
		return fail(err, errlen, "stream info", s, jerr);
	}
	jsStreamInfo_Destroy(si);
	if (o->mode == BENCH_PRODUCE)
		return 0;

	jsConsumerConfig cc;
	jsConsumerInfo *ci = NULL;
	snprintf(n.durable, sizeof(n.durable), "rmq-bench-%ld", (long)getpid());
	jsConsumerConfig_Init(&cc);
	cc.Durable = n.durable;
	cc.DeliverPolicy = o->from_latest ? js_DeliverNew : js_DeliverAll;
	cc.AckPolicy = js_AckNone;
	jerr = 0;
	s = js_AddConsumer(&ci, n.js, o->topic, &cc, NULL, &jerr);
	if (s != NATS_OK)
		return fail(err, errlen, "create consumer", s, jerr);
	jsConsumerInfo_Destroy(ci);
	n.consumer_made = true;
	return 0;
}

static void nats_teardown(const struct bench_opts *o)
{
	if (n.consumer_made)
		js_DeleteConsumer(n.js, o->topic, n.durable, NULL, NULL);
	jsCtx_Destroy(n.js);
	natsConnection_Destroy(n.nc);
	/* Waits for libnats' own threads, so that nothing runs after main. */
	nats_CloseAndWait(2000);
}

/* A libnats thread calls this for every PubAck or failure. */
static void on_ack(jsCtx *js, natsMsg *msg, jsPubAck *pa, jsPubAckErr *pae, void *closure)
{
	struct bench_peer_worker *w = closure;
	(void)js;
	if (pa) {
		const uint8_t *v = (const uint8_t *)natsMsg_GetData(msg);
		size_t len = (size_t)natsMsg_GetDataLength(msg);
		uint64_t stamp = bench_peer_stamp_of(v, len), now = bench_peer_wall_ns();
		bench_peer_account(w, 1, len, stamp && now > stamp ? now - stamp : 0);
	} else if (pae) {
		nats_err(w, "ack:", pae->Err);
	}
	natsMsg_Destroy(msg);
}

static int nats_produce(struct bench_peer_worker *w)
{
	const struct bench_opts *o = bench_peer_opts(w);
	natsConnection *nc = NULL;
	jsCtx *js = NULL;
	jsOptions jo;
	natsStatus s;
	int rc = 0;
	uint8_t *val = malloc(o->msg_bytes);

	if (!val)
		return -ENOMEM;
	for (size_t i = 0; i < o->msg_bytes; i++)
		val[i] = (uint8_t)('A' + (i * 7 + bench_peer_index(w)) % 26);
	s = natsConnection_ConnectTo(&nc, o->target);
	if (s != NATS_OK) {
		nats_err(w, "connect:", s);
		rc = -EIO;
		goto out;
	}
	jsOptions_Init(&jo);
	jo.PublishAsync.MaxPending = (int64_t)(o->streams * o->batch);
	jo.PublishAsync.AckHandler = on_ack;
	jo.PublishAsync.AckHandlerClosure = w;
	jo.PublishAsync.StallWait = NATS_STALL_MS;
	s = natsConnection_JetStream(&js, nc, &jo);
	if (s != NATS_OK) {
		nats_err(w, "jetstream:", s);
		rc = -EIO;
		goto out;
	}
	while (bench_peer_running(w)) {
		bench_peer_stamp(val, o->msg_bytes, bench_peer_wall_ns());
		s = js_PublishAsync(js, o->topic, val, (int)o->msg_bytes, NULL);
		if (s == NATS_TIMEOUT)
			continue; /* MaxPending still out after StallWait: try again */
		if (s != NATS_OK) {
			nats_err(w, "publish:", s);
			if (natsConnection_IsClosed(nc))
				break;
		}
	}
	jsPubOptions po;
	jsPubOptions_Init(&po);
	po.MaxWait = NATS_DRAIN_MS;
	s = js_PublishAsyncComplete(js, &po);
	if (s != NATS_OK && s != NATS_TIMEOUT)
		nats_err(w, "drain:", s);
out:
	jsCtx_Destroy(js);
	natsConnection_Destroy(nc);
	free(val);
	return rc;
}

static int nats_consume(struct bench_peer_worker *w)
{
	const struct bench_opts *o = bench_peer_opts(w);
	natsConnection *nc = NULL;
	jsCtx *js = NULL;
	natsSubscription *sub = NULL;
	jsSubOptions so;
	jsErrCode jerr = 0;
	natsStatus s;
	int rc = 0;
	int fetch = (int)(o->streams * o->batch);

	s = natsConnection_ConnectTo(&nc, o->target);
	if (s == NATS_OK)
		s = natsConnection_JetStream(&js, nc, NULL);
	if (s != NATS_OK) {
		nats_err(w, "connect:", s);
		rc = -EIO;
		goto out;
	}
	jsSubOptions_Init(&so);
	so.Stream = o->topic;
	so.Consumer = n.durable; /* bind to the consumer setup made */
	s = js_PullSubscribe(&sub, js, o->topic, n.durable, NULL, &so, &jerr);
	if (s != NATS_OK) {
		nats_err(w, "subscribe:", s);
		rc = -EIO;
		goto out;
	}
	while (bench_peer_running(w)) {
		natsMsgList list = {0};
		s = natsSubscription_Fetch(&list, sub, fetch, NATS_FETCH_WAIT_MS, &jerr);
		if (s == NATS_TIMEOUT)
			continue;
		if (s != NATS_OK) {
			nats_err(w, "fetch:", s);
			if (natsConnection_IsClosed(nc))
				break;
			continue;
		}
		uint64_t now = bench_peer_wall_ns();
		for (int i = 0; i < list.Count; i++) {
			const uint8_t *v = (const uint8_t *)natsMsg_GetData(list.Msgs[i]);
			size_t len = (size_t)natsMsg_GetDataLength(list.Msgs[i]);
			uint64_t stamp = bench_peer_stamp_of(v, len);
			bench_peer_account(w, 1, len, stamp && now > stamp ? now - stamp : 0);
		}
		natsMsgList_Destroy(&list);
	}
out:
	natsSubscription_Destroy(sub);
	jsCtx_Destroy(js);
	natsConnection_Destroy(nc);
	return rc;
}

const struct bench_driver bench_driver_nats = {
	.name = "nats",
	.produce_rpc = "js_PublishAsync",
	.consume_rpc = "pull_fetch",
	.setup = nats_setup,
	.produce = nats_produce,
	.consume = nats_consume,
	.readers_max = 0,
	.teardown = nats_teardown,
};
