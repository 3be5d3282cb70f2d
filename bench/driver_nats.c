/* SPDX-License-Identifier: Apache-2.0 */
/*
 * driver_nats.c - rmq-bench's NATS JetStream driver (--target nats://host:port),
 * through Debian's libnats (nats.c 3.4).
 *
 *   stream    named --topic, subject --topic, file storage, with
 *             --replication-factor replicas (R3 on a three-server cluster,
 *             reached through the one --target names, which routes to the
 *             stream's leader); created when missing (an existing one is
 *             used as it is)
 *   produce   each connection publishes with js_PublishAsync, at most
 *             --streams x --batch messages awaiting their PubAck (the
 *             records rmq keeps in flight per connection); the ack handler
 *             (a libnats thread) measures each message from the send time
 *             stamped in its value to its PubAck.  At the end,
 *             js_PublishAsyncComplete waits (10 s at most) for what is out.
 *   consume   one durable pull consumer (AckNone, DeliverAll for
 *             --from earliest, DeliverNew for latest) created at setup and
 *             shared by every reader connection, so the readers split the
 *             stream as rmq's split partitions; each reader keeps one pull
 *             request of --streams x --batch messages open at a time.
 *
 * The readers speak JetStream's pull protocol themselves, on a plain
 * subscription, instead of calling natsSubscription_Fetch: libnats 3.4's
 * Fetch (Debian 12's) writes past the end of its message array when a
 * Fetch begins with more than half a batch already queued, which is what
 * a request answered after its Fetch gave up leaves behind (a loaded or
 * stalled client).  The array then held 862 pointers for 800 and free()
 * aborted with "double free or corruption (!prev)".  Fixed upstream in
 * nats.c 3.9.0 (8099b5c9, "Fix heap buffer overflow in _fetch").
 *
 *   reader ─ SUB <inbox>.*  (one per connection)
 *          ┌► PUB $JS.API.CONSUMER.MSG.NEXT.<stream>.<durable>
 *          │      reply <inbox>.<seq>  {"batch":B,"expires":500 ms}
 *          │  each message as it arrives: counted, destroyed
 *          └─ the request is over: B messages came, or its status came
 *             to <inbox>.<seq> (404, 408, 409...), or its deadline passed
 *
 * A message that comes late, for a request already given up, is counted
 * like any other (AckNone: it was delivered and will not come again); it
 * also counts toward the open request's batch (a message does not say which
 * request it answers), so the next request may go out early: two open at
 * most for a while, each bounded by its batch and its expiry.  A late
 * request's status is known by its reply subject and ignored.  Nothing is
 * kept per message: each is counted and destroyed as it arrives, and the
 * subscription's pending limits (libnats' defaults) bound what queues.
 *
 * JetStream's file store writes every message to its block file but
 * fsyncs only on its sync interval (2 minutes by default), not per
 * message: see docs/benchmarks-notes.md for how that compares.
 */
#include "bench.h"

#include "core/shard.h" /* rmq_now_ns */

#include <nats/nats.h>

#include <errno.h>
#include <inttypes.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#define NATS_DRAIN_MS 10000       /* js_PublishAsyncComplete at the end */
#define NATS_CLOSE_WAIT_MS 10000  /* nats_CloseAndWait: libnats' threads gone */
#define NATS_FETCH_WAIT_MS 500    /* a pull request's expiry: its wait when nothing is there */
#define NATS_FETCH_GRACE_MS 100   /* past a pull request's expiry before it is given up */
#define NATS_STALL_MS 1000        /* a PublishAsync's wait while MaxPending is out */
#define NATS_SUBJECT_BYTES 320    /* "$JS.API.CONSUMER.MSG.NEXT." + a 249-byte topic + durable */

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
		sc.Replicas = (int64_t)o->replication_factor; /* R3 on a three-server cluster */
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

/*
 * Closes a connection, then destroys its JetStream context and subscription
 * (any may be NULL), in that order: libnats 3.4's read loop uses the
 * subscription a message is for without holding a reference to it (nats.c
 * issue 637, fixed in 3.6.1), so destroying one while its messages still
 * arrive (a late pull answer, a PubAck after the drain gave up; the context
 * destroys its PubAck subscription) frees it under the read loop.
 * natsConnection_Close joins the read loop first.
 */
static void nats_close(natsConnection *nc, jsCtx *js, natsSubscription *sub)
{
	natsConnection_Close(nc);
	natsSubscription_Destroy(sub);
	jsCtx_Destroy(js);
	natsConnection_Destroy(nc);
}

static int nats_teardown(const struct bench_opts *o)
{
	if (n.consumer_made)
		js_DeleteConsumer(n.js, o->topic, n.durable, NULL, NULL);
	nats_close(n.nc, n.js, NULL);
	n.nc = NULL;
	n.js = NULL;
	n.consumer_made = false;
	/* Waits for libnats' own threads: an ack handler may still be running
	 * on one after its connection closed, with a worker as its closure. */
	natsStatus s = nats_CloseAndWait(NATS_CLOSE_WAIT_MS);
	return s == NATS_OK || s == NATS_NOT_INITIALIZED ? 0 : -ETIMEDOUT;
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
	nats_close(nc, js, NULL);
	free(val);
	return rc;
}

/* A reader's pull request, the one it has open. */
struct nats_pull {
	char reply[NATS_SUBJECT_BYTES]; /* <inbox>.<seq>: its messages' and status's subject */
	uint64_t seq;
	int64_t left;                   /* messages it may still bring */
	uint64_t until_ns;              /* given up then (rmq_now_ns) */
	bool open;                      /* no new request before until_ns */
};

/* Asks for the next fetch messages, answered on <inbox>.<seq>. */
static natsStatus pull_send(natsConnection *nc, struct nats_pull *pr, const char *next_subj,
			    const char *inbox, int64_t fetch)
{
	char body[96];
	int len = snprintf(body, sizeof(body), "{\"batch\":%" PRId64 ",\"expires\":%" PRIu64 "}",
			   fetch, (uint64_t)NATS_FETCH_WAIT_MS * 1000000u);
	pr->seq++;
	snprintf(pr->reply, sizeof(pr->reply), "%s.%" PRIu64, inbox, pr->seq);
	pr->left = fetch;
	pr->until_ns = rmq_now_ns() + (uint64_t)(NATS_FETCH_WAIT_MS + NATS_FETCH_GRACE_MS) * 1000000u;
	pr->open = true;
	return natsConnection_PublishRequest(nc, next_subj, pr->reply, body, len);
}

/*
 * A status message (no data, a Status header) for the open request ends it:
 * 404 and 408 (nothing more to give before it expired) normally, anything
 * else (409 Consumer Deleted, Exceeded MaxWaiting...) as an error, after
 * which the next request waits for this one's deadline, so that a consumer
 * that keeps refusing is asked twice a second, not in a loop.  A status for
 * an older request is ignored.  Returns false for a message with data.
 */
static bool pull_status(struct bench_peer_worker *w, struct nats_pull *pr, natsMsg *msg)
{
	const char *code = NULL, *desc = NULL;
	if (natsMsg_GetDataLength(msg) > 0 || natsMsgHeader_Get(msg, "Status", &code) != NATS_OK)
		return false;
	const char *subj = natsMsg_GetSubject(msg);
	if (!pr->open || !subj || strcmp(subj, pr->reply) != 0)
		return true;
	if (strncmp(code, "404", 3) == 0 || strncmp(code, "408", 3) == 0) {
		pr->open = false;
		return true;
	}
	if (strncmp(code, "100", 3) == 0) /* an idle heartbeat (none is asked for) */
		return true;
	char name[48];
	natsMsgHeader_Get(msg, "Description", &desc);
	snprintf(name, sizeof(name), "nats:fetch:%.3s %s", code, desc ? desc : "");
	bench_peer_error(w, name);
	pr->left = 0;
	return true;
}

static int nats_consume(struct bench_peer_worker *w)
{
	const struct bench_opts *o = bench_peer_opts(w);
	natsConnection *nc = NULL;
	natsSubscription *sub = NULL;
	natsInbox *inbox = NULL;
	char next_subj[NATS_SUBJECT_BYTES], inbox_all[NATS_SUBJECT_BYTES];
	struct nats_pull pr = {.open = false};
	natsStatus s;
	int rc = 0;
	int64_t fetch = (int64_t)(o->streams * o->batch);

	s = natsConnection_ConnectTo(&nc, o->target);
	if (s == NATS_OK)
		s = natsInbox_Create(&inbox);
	if (s == NATS_OK) {
		snprintf(inbox_all, sizeof(inbox_all), "%s.*", inbox);
		s = natsConnection_SubscribeSync(&sub, nc, inbox_all);
	}
	if (s != NATS_OK) {
		nats_err(w, "connect:", s);
		rc = -EIO;
		goto out;
	}
	if ((size_t)snprintf(next_subj, sizeof(next_subj), "$JS.API.CONSUMER.MSG.NEXT.%s.%s",
			     o->topic, n.durable) >= sizeof(next_subj)) {
		bench_peer_error(w, "nats:subscribe:subject too long");
		rc = -ENAMETOOLONG;
		goto out;
	}
	while (bench_peer_running(w)) {
		uint64_t now = rmq_now_ns();
		if (!pr.open || now >= pr.until_ns) {
			s = pull_send(nc, &pr, next_subj, inbox, fetch);
			if (s != NATS_OK) {
				nats_err(w, "fetch:", s);
				if (natsConnection_IsClosed(nc))
					break;
				continue; /* pr.open: the next try waits for until_ns */
			}
			now = rmq_now_ns();
		}
		natsMsg *msg = NULL;
		int64_t wait_ms = pr.until_ns > now ? (int64_t)((pr.until_ns - now + 999999) / 1000000) : 1;
		s = natsSubscription_NextMsg(&msg, sub, wait_ms);
		if (s == NATS_TIMEOUT)
			continue;
		if (s != NATS_OK) {
			nats_err(w, "fetch:", s); /* SLOW_CONSUMER: the pending limits dropped some */
			if (natsConnection_IsClosed(nc))
				break;
			continue;
		}
		if (!pull_status(w, &pr, msg)) {
			const uint8_t *v = (const uint8_t *)natsMsg_GetData(msg);
			size_t len = (size_t)natsMsg_GetDataLength(msg);
			uint64_t stamp = bench_peer_stamp_of(v, len), at = bench_peer_wall_ns();
			bench_peer_account(w, 1, len, stamp && at > stamp ? at - stamp : 0);
			if (pr.left > 0 && --pr.left == 0)
				pr.open = false;
		}
		natsMsg_Destroy(msg);
	}
out:
	nats_close(nc, NULL, sub);
	natsInbox_Destroy(inbox);
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
