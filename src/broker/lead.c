/* SPDX-License-Identifier: Apache-2.0 */
/* lead.c - a leader's side of replication (lead.h). */
#include "broker/lead.h"

#include "broker/broker.h"
#include "broker/cluster.h"
#include "broker/errcode.h"
#include "broker/follow.h"
#include "broker/isr.h"
#include "broker/meta.h"
#include "broker/partition.h"
#include "broker/recover.h"
#include "broker/replication.pb-c.h"
#include "common/metadata.pb-c.h"
#include "core/error.h"
#include "core/log.h"
#include "core/pbwire.h"
#include "core/util.h"
#include "net/client.h"
#include "storage/batch.h"
#include "storage/coldread.h"
#include "storage/log.h"
#include "storage/tail.h"

#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define REQ_BYTES (1u << 20)                 /* stored batches per request, about */
#define RETRY_NS (100ULL * 1000 * 1000)      /* after a failed connect or refused request */
#define PATH "/rustmq.broker.BrokerReplicationService/ReplicateStream"
#define HDR_MAX 512                          /* a request's fields but the batches */
#define PIPELINE 4                           /* requests in flight per follower replica */
#define ANSWER_NS (10ULL * 1000 * 1000 * 1000) /* a request unanswered this long: reconnect */
#define WARN_NS (10ULL * 1000 * 1000 * 1000)   /* a slot's refusals: one warning per */
#define TAIL_BYTES (8u << 20)                /* newest entries kept in memory per partition led */
#define BEAT_MAX_NS (1000ULL * 1000 * 1000)  /* idle slots hear from their leader this often, at most */
#define BEAT_PATH "/rustmq.broker.BrokerReplicationService/SendHeartbeat"
#define BUNDLE_BYTES (4u << 20)              /* stored bytes gathered in one message, about */
#define BUNDLE_PIECES 512u                   /* pieces of one message */
#define PART_PIECES (1 + RMQ_LOG_SLICES_MAX) /* a part's: its fields, then its stored batches */
#define QUEUE_PIECES (4 * BUNDLE_PIECES)     /* the stream's send queue, in pieces */

struct rmq_peer;
struct lead_read;

/* A follower replica of a partition this shard leads. */
struct rmq_rslot {
	struct rmq_partition *p;
	uint32_t broker;
	struct rmq_peer *peer;
	uint32_t reg;                /* its index in peer->slots */
	uint64_t next;               /* where the next request starts */
	uint64_t end;                /* the follower's durable end matching this log */
	bool known;                  /* end and next are the follower's, learned this leadership */
	bool stale;                  /* refused as a deposed leader: wait for the metadata */
	/* Requests in flight, oldest first (answered in order): each one's
	 * correlation id, this log's durable end when it left, and when. */
	struct {
		uint64_t corr, sent_end, sent_ns;
		uint64_t sent_to;    /* the offset after its batches */
	} in[PIPELINE];
	uint32_t in_head, nin;
	uint64_t caught_ns;          /* when the follower last had all this log had */
	struct lead_read *cold;      /* a read from the disk it waits for, or NULL */
	uint64_t hw_sent;            /* the high watermark its last request carried */
	uint64_t retry_at;
	uint64_t warned_ns;          /* when a refusal was last logged as a warning */
	uint64_t backoff_ns;         /* after the last refusal (0: answered since) */
};

/* One ReplicateStream to one shard of a follower broker. */
struct rmq_peer {
	struct rmq_lead *lead;
	uint32_t broker;
	unsigned shard;
	struct rmq_client *cl;
	struct rmq_client_conn *cc;
	struct rmq_ccall *call;
	uint64_t retry_at;
	struct rmq_rslot **slots;    /* registry (holes are NULL) */
	uint32_t nslots, slots_cap;
	uint32_t seq;
	/* The message being gathered (bundle_flush sends it): a part per
	 * request, its fields copied into bhdr (boff: where each part's
	 * are), its stored batches referenced (brefs, one count each). */
	uint8_t *bhdr;
	size_t bhlen, bhcap, bbytes;
	uint32_t bn, bparts;
	struct iovec biov[BUNDLE_PIECES];
	struct rmq_send_ref *brefs[BUNDLE_PIECES];
	uint32_t boff[BUNDLE_PIECES];
	/* SendHeartbeat for the idle slots (beat_slots: those it named, in
	 * order; NULL once gone), one at a time. */
	struct rmq_ccall *beat;
	uint8_t *beat_buf;
	struct rmq_rslot **beat_slots;
	size_t nbeat;
	uint64_t beat_ns;            /* when the last one left */
	/* Messages sent on the call: their fields, kept until written. */
	uint8_t **fifo;
	uint32_t fifo_cap, fifo_head, fifo_n;
	uint64_t freed;              /* of the call's messages, those let go */
	struct rmq_peer *next;
};

struct rmq_lead {
	struct rmq_bshard *bs;
	struct rmq_peer *peers;
	struct rmq_timer timer;
	/* --reassign-throttle's bucket: when the bytes sent to throttled
	 * slots are paid off, and the timer that wakes them then. */
	uint64_t paid_ns;
	struct rmq_timer throttle;
};

static void send_next(struct rmq_rslot *s);
static void on_timer(struct rmq_timer *t);

static struct rmq_lead *lead_of(struct rmq_bshard *bs)
{
	if (!bs->lead && (bs->lead = calloc(1, sizeof(*bs->lead))))
		bs->lead->bs = bs;
	return bs->lead;
}

/* ---- peers ------------------------------------------------------------------------- */

static void fifo_release(struct rmq_peer *pe, bool all)
{
	uint64_t written = pe->call && !all ? rmq_ccall_written(pe->call) : UINT64_MAX;
	while (pe->fifo_n > 0 && pe->freed < written) {
		free(pe->fifo[pe->fifo_head]);
		pe->fifo_head = (pe->fifo_head + 1) % pe->fifo_cap;
		pe->fifo_n--;
		pe->freed++;
	}
	if (all)
		pe->freed = 0;
}

static int fifo_push(struct rmq_peer *pe, uint8_t *buf)
{
	if (pe->fifo_n == pe->fifo_cap) {
		uint32_t cap = pe->fifo_cap ? 2 * pe->fifo_cap : 16;
		uint8_t **v = malloc(cap * sizeof(*v));
		if (!v)
			return -ENOMEM;
		for (uint32_t i = 0; i < pe->fifo_n; i++)
			v[i] = pe->fifo[(pe->fifo_head + i) % pe->fifo_cap];
		free(pe->fifo);
		pe->fifo = v;
		pe->fifo_cap = cap;
		pe->fifo_head = 0;
	}
	pe->fifo[(pe->fifo_head + pe->fifo_n++) % pe->fifo_cap] = buf;
	return 0;
}

/* The retry timer runs by `when` at the latest. */
static void arm_by(struct rmq_lead *ld, uint64_t when)
{
	if (rmq_timer_armed(&ld->timer) && ld->timer.deadline_ns <= when)
		return;
	rmq_timer_cancel(ld->bs->s, &ld->timer);
	(void)rmq_timer_start(ld->bs->s, &ld->timer, when, on_timer);
}

static void arm(struct rmq_lead *ld)
{
	arm_by(ld, rmq_now_ns() + RETRY_NS);
}

/* ---- bundles ------------------------------------------------------------------------- */

/* Empties the message being gathered (its references go back). */
static void bundle_reset(struct rmq_peer *pe)
{
	for (uint32_t i = 0; i < pe->bn; i++)
		if (pe->brefs[i])
			rmq_send_ref_put(pe->brefs[i]);
	pe->bn = 0;
	pe->bparts = 0;
	pe->bhlen = 0;
	pe->bbytes = 0;
}

/*
 * Sends the message gathered, if any: one ReplicateDataRequest whose parts
 * are the requests of every partition that had something for this
 * follower shard since the last flush.  A message the stream cannot take
 * (its queue full: peer_room keeps it from happening) cancels the stream:
 * its parts counted as sent, and a new stream starts from probes.
 */
static void bundle_flush(struct rmq_peer *pe)
{
	if (pe->bn == 0)
		return;
	for (uint32_t i = 0; i < pe->bn; i++)
		if (!pe->brefs[i])
			pe->biov[i].iov_base = pe->bhdr + pe->boff[i];
	fifo_release(pe, false);
	bool sent = pe->call && fifo_push(pe, pe->bhdr) == 0;
	if (sent && rmq_ccall_sendv_ref(pe->call, pe->biov, pe->brefs, (int)pe->bn) < 0) {
		pe->fifo_n--;
		sent = false;
	}
	if (sent) {
		struct rmq_bshard *bs = pe->lead->bs;
		bs->repl_msgs++;
		bs->repl_parts += pe->bparts;
		bs->repl_bytes += pe->bbytes;
		pe->bhdr = NULL; /* the fifo's until written */
		pe->bhcap = 0;
	} else if (pe->call) {
		rmq_warn("replication to broker %" PRIu32 " (shard %u): a request could not be queued;"
			 " starting the stream again",
			 pe->broker, pe->shard);
		rmq_ccall_cancel(pe->call);
	}
	bundle_reset(pe);
}

/* Adds a part: the request fields f (flen bytes) and the stored batches
 * d[0..nd) (dbytes), referenced with refs (a count taken each).  The
 * caller checked the room (peer_room).  Returns 0 or -ENOMEM. */
static int part_add(struct rmq_peer *pe, const uint8_t *f, size_t flen, const struct iovec *d,
		    struct rmq_send_ref *const *refs, unsigned nd, size_t dbytes)
{
	const size_t stored = dbytes ? 1 + rmq_pb_varint_len(dbytes) + dbytes : 0;
	const size_t need = pe->bhlen + 2 * (1 + 10) + flen;
	if (need > pe->bhcap) {
		size_t cap = pe->bhcap ? 2 * pe->bhcap : 4096;
		while (cap < need)
			cap *= 2;
		uint8_t *b = realloc(pe->bhdr, cap);
		if (!b)
			return -ENOMEM;
		pe->bhdr = b;
		pe->bhcap = cap;
	}
	uint8_t *h = pe->bhdr + pe->bhlen;
	size_t k = rmq_pb_put_len(h, 14, flen + stored);
	memcpy(h + k, f, flen);
	k += flen;
	if (dbytes)
		k += rmq_pb_put_len(h + k, 15, dbytes);
	pe->boff[pe->bn] = (uint32_t)pe->bhlen;
	pe->biov[pe->bn] = (struct iovec){NULL, k};
	pe->brefs[pe->bn++] = NULL;
	pe->bhlen += k;
	for (unsigned i = 0; i < nd; i++) {
		if (d[i].iov_len == 0)
			continue;
		pe->biov[pe->bn] = d[i];
		pe->brefs[pe->bn++] = refs[i];
		rmq_send_ref_get(refs[i]);
	}
	pe->bbytes += dbytes;
	pe->bparts++;
	return 0;
}

/* Whether a part may be added now: the message gathered is sent first
 * when full, and the stream's queue must have room for it and the part. */
static bool peer_room(struct rmq_peer *pe)
{
	if (pe->bn + PART_PIECES > BUNDLE_PIECES || pe->bbytes >= BUNDLE_BYTES)
		bundle_flush(pe);
	return pe->call && rmq_ccall_send_room(pe->call) >= pe->bn + PART_PIECES;
}

void rmq_lead_flush(struct rmq_bshard *bs)
{
	for (struct rmq_peer *pe = bs->lead ? bs->lead->peers : NULL; pe; pe = pe->next)
		bundle_flush(pe);
}

/* The stream is gone: what was in flight is asked again from a probe. */
static void stream_lost(struct rmq_peer *pe)
{
	pe->call = NULL;
	bundle_reset(pe);
	fifo_release(pe, true);
	for (uint32_t i = 0; i < pe->nslots; i++) {
		struct rmq_rslot *s = pe->slots[i];
		if (s) {
			s->nin = 0;
			s->known = false;
			s->next = s->end;
		}
	}
	pe->retry_at = rmq_now_ns() + RETRY_NS;
	arm(pe->lead);
}

static void on_response(struct rmq_ccall *c, void *arg, const uint8_t *msg, size_t len);

static void on_stream_close(struct rmq_ccall *c, void *arg, enum rmq_grpc_status status,
			    const char *message)
{
	struct rmq_peer *pe = arg;
	(void)c;
	if (status == RMQ_GRPC_OK)
		rmq_debug("replication to broker %" PRIu32 " (shard %u): the stream ended",
			  pe->broker, pe->shard); /* the follower finished it: stopping, or idle */
	else if (status != RMQ_GRPC_CANCELLED)
		rmq_warn("replication to broker %" PRIu32 " (shard %u): the stream ended: %s %s",
			 pe->broker, pe->shard, rmq_grpc_status_name(status), message);
	stream_lost(pe);
}

static const struct rmq_ccall_ops stream_ops = {on_response, on_stream_close};

/* Starts pe's stream on its connection cc; false when it cannot. */
static bool stream_start(struct rmq_peer *pe, struct rmq_client_conn *cc)
{
	if (rmq_ccall_start(cc, PATH, 0, &stream_ops, pe, &pe->call) < 0)
		return false;
	pe->freed = 0;
	arm(pe->lead); /* it watches the stream from now on */
	for (uint32_t i = 0; i < pe->nslots; i++)
		if (pe->slots[i])
			send_next(pe->slots[i]);
	return true;
}

static void on_connect(struct rmq_client_conn *cc, void *arg, int res)
{
	struct rmq_peer *pe = arg;
	if (res < 0) {
		pe->cc = NULL;
		pe->retry_at = rmq_now_ns() + RETRY_NS;
		arm(pe->lead);
		return;
	}
	if (!stream_start(pe, cc))
		rmq_client_conn_close(cc);
}

static void on_conn_close(struct rmq_client_conn *cc, void *arg, int why)
{
	struct rmq_peer *pe = arg;
	(void)cc;
	(void)why;
	pe->cc = NULL;
	if (pe->call)
		stream_lost(pe);
	pe->retry_at = rmq_now_ns() + RETRY_NS;
	arm(pe->lead);
}

static const struct rmq_client_conn_ops conn_ops = {on_connect, on_conn_close};

/* Connects pe when it has no connection (not before its retry time). */
static void peer_connect(struct rmq_peer *pe)
{
	struct rmq_bshard *bs = pe->lead->bs;
	if (rmq_now_ns() < pe->retry_at)
		return;
	if (pe->cc) {
		/* A stream the follower ended once this leader had no partition
		 * left for it (slot_free), on a connection that lives: the
		 * partitions led here again get a new one on it.  Called from
		 * send_one, whose slot stream_start sends for: one level deep,
		 * as the stream exists by then. */
		if (!pe->call && rmq_client_conn_ok(pe->cc) && !stream_start(pe, pe->cc)) {
			pe->retry_at = rmq_now_ns() + RETRY_NS;
			arm(pe->lead);
		}
		return;
	}
	const struct rmq_broker_rec *r = rmq_meta_broker(bs->meta, pe->broker);
	if (!r)
		return;
	if (!pe->cl) {
		struct rmq_client_config cfg;
		rmq_client_config_default(&cfg);
		cfg.host = r->host;
		cfg.port = (uint16_t)r->port;
		cfg.tls = bs->b->cfg.peer_tls; /* TLS between brokers */
		cfg.connections_max = 2;
		cfg.calls_max = 4; /* one stream at a time, and one ending */
		cfg.send_queue_max = QUEUE_PIECES;
		if (r->shards > 1) {
			cfg.source_port_mod = r->shards;
			cfg.source_port_rem = pe->shard;
		}
		int rc = rmq_client_create(bs->s, &cfg, &pe->cl);
		if (rc == 0)
			(void)rmq_client_set_authorization(pe->cl, bs->b->cfg.peer_authz);
		if (rc < 0) {
			rmq_warn("replication to broker %" PRIu32 " at %s: %s", pe->broker, r->endpoint,
				 rmq_strerror(rc));
			pe->retry_at = rmq_now_ns() + RETRY_NS;
			arm(pe->lead);
			return;
		}
	}
	if (rmq_client_connect(pe->cl, &conn_ops, pe, &pe->cc) < 0) {
		pe->cc = NULL;
		pe->retry_at = rmq_now_ns() + RETRY_NS;
		arm(pe->lead);
	}
}

static struct rmq_peer *peer_get(struct rmq_lead *ld, uint32_t broker, unsigned shard)
{
	for (struct rmq_peer *pe = ld->peers; pe; pe = pe->next)
		if (pe->broker == broker && pe->shard == shard)
			return pe;
	struct rmq_peer *pe = calloc(1, sizeof(*pe));
	if (!pe)
		return NULL;
	pe->lead = ld;
	pe->broker = broker;
	pe->shard = shard;
	pe->next = ld->peers;
	ld->peers = pe;
	return pe;
}

static int peer_add(struct rmq_peer *pe, struct rmq_rslot *s)
{
	for (uint32_t i = 0; i < pe->nslots; i++) {
		if (!pe->slots[i]) {
			pe->slots[i] = s;
			s->reg = i;
			return 0;
		}
	}
	if (pe->nslots == pe->slots_cap) {
		uint32_t cap = pe->slots_cap ? 2 * pe->slots_cap : 8;
		struct rmq_rslot **v = realloc(pe->slots, cap * sizeof(*v));
		if (!v)
			return -ENOMEM;
		pe->slots = v;
		pe->slots_cap = cap;
	}
	s->reg = pe->nslots;
	pe->slots[pe->nslots++] = s;
	return 0;
}

/* ---- the high watermark ------------------------------------------------------------- */

static const struct rmq_passign *assign_of(const struct rmq_partition *p)
{
	return p->topic && p->topic->parts && p->index < p->topic->partitions
		       ? &p->topic->parts[p->index]
		       : NULL;
}

static struct rmq_rslot *slot_of(const struct rmq_partition *p, uint32_t broker)
{
	for (uint32_t i = 0; i < p->nslots; i++)
		if (p->slots[i]->broker == broker)
			return p->slots[i];
	return NULL;
}

/* An ISR asked for is settled once the metadata moved past the state it
 * was based on (committed, or overtaken). */
static void settle_asked(struct rmq_partition *p, const struct rmq_passign *pa)
{
	if (p->nisr_pend && pa->part_epoch != p->isr_pend_epoch)
		p->nisr_pend = 0;
}

/* Lowers *hw to member id's durable end; false when it is not known. */
static bool member_end(const struct rmq_partition *p, uint32_t id, uint64_t *hw)
{
	if (id == p->bs->b->self)
		return true;
	const struct rmq_rslot *s = slot_of(p, id);
	if (!s || !s->known)
		return false;
	if (s->end < *hw)
		*hw = s->end;
	return true;
}

/* The smallest durable end over the ISR, and over an ISR asked for and
 * not settled yet (a member it adds may become leader with the change);
 * a member's end not known yet holds it where it is. */
static void update_hw(struct rmq_partition *p)
{
	const struct rmq_passign *pa = assign_of(p);
	if (!pa || !p->log || p->recover)
		return; /* recovering: this log may still lack what a majority holds */
	settle_asked(p, pa);
	uint64_t hw = rmq_log_high_watermark(p->log);
	for (uint32_t i = 0; i < pa->nisr; i++)
		if (!member_end(p, pa->isr[i], &hw))
			return;
	for (uint32_t i = 0; i < p->nisr_pend; i++)
		if (!member_end(p, p->isr_pend[i], &hw))
			return;
	rmq_partition_set_hw(p, hw);
}

uint32_t rmq_lead_holding(const struct rmq_partition *p, uint64_t end)
{
	uint32_t n = p->log && rmq_log_high_watermark(p->log) >= end;
	for (uint32_t i = 0; i < p->nslots; i++)
		n += p->slots[i]->known && p->slots[i]->end >= end;
	return n;
}

static void progressed(struct rmq_partition *p);

/* An UpdateISR of this shard's, out. */
struct isr_ask {
	struct rmq_bshard *bs;
	char topic[RMQ_TOPIC_NAME_MAX + 1];
	uint32_t partition;
};

#define ISR_RETRY_NS (1000ULL * 1000 * 1000)

static void isr_answered(void *arg, int code)
{
	struct isr_ask *a = arg;
	int c;
	struct rmq_partition *p = rmq_partition_find(a->bs, a->topic, a->partition, &c);
	const struct rmq_passign *pa = p ? assign_of(p) : NULL;
	if (pa && code != EC_OK) {
		/* Refused: the ISR stays what the metadata says. */
		p->nisr_pend = 0;
		p->isr_retry_at = rmq_now_ns() + ISR_RETRY_NS;
		progressed(p);
	} else if (pa) {
		settle_asked(p, pa); /* else when the metadata comes */
	}
	free(a);
}

/* The ISR this leader wants (Kafka's rules): a member that has not had
 * all of this log for --replica-lag-max leaves; a replica whose durable
 * end reached the high watermark in this leadership joins.  Asked of the
 * controller (UpdateISR), which decides; the metadata says. */
static void maybe_change_isr(struct rmq_partition *p)
{
	const struct rmq_passign *pa = assign_of(p);
	struct rmq_bshard *bs = p->bs;
	uint64_t now = rmq_now_ns();
	if (!pa || p->nisr_pend || pa->leader != bs->b->self || now < p->isr_retry_at || !p->log ||
	    p->recover)
		return;
	uint32_t isr[RMQ_REPLICAS_MAX], n = 0;
	bool changed = false;
	for (uint32_t i = 0; i < pa->nisr; i++) {
		/* caught_ns moves with answers, and for an idle follower with
		 * heartbeats: one that stopped answering leaves even when
		 * there was nothing to send it. */
		struct rmq_rslot *s = slot_of(p, pa->isr[i]);
		if (s && s->caught_ns + bs->b->cfg.replica_lag_ns < now) {
			changed = true; /* lagging: out */
			continue;
		}
		isr[n++] = pa->isr[i];
	}
	for (uint32_t i = 0; i < p->nslots && n < RMQ_REPLICAS_MAX; i++) {
		const struct rmq_rslot *s = p->slots[i];
		const struct rmq_broker_rec *r = rmq_meta_broker(bs->meta, s->broker);
		bool in = false;
		for (uint32_t k = 0; k < pa->nisr; k++)
			in |= pa->isr[k] == s->broker;
		if (!in && s->known && s->end >= p->hw && s->caught_ns + bs->b->cfg.replica_lag_ns >= now &&
		    r && r->state == RUSTMQ__COMMON__BROKER_STATE__BROKER_RUNNING) {
			isr[n++] = s->broker;
			changed = true;
		}
	}
	if (!changed || n == 0)
		return;
	struct isr_ask *a = calloc(1, sizeof(*a));
	if (!a)
		return;
	a->bs = bs;
	snprintf(a->topic, sizeof(a->topic), "%s", p->topic_name);
	a->partition = p->index;
	if (rmq_isr_propose(bs, p, pa->part_epoch, isr, n, isr_answered, a) < 0) {
		free(a);
		p->isr_retry_at = now + RETRY_NS;
		arm(bs->lead);
		return;
	}
	rmq_info("%s-%u: asking the controller for ISR of %u replicas (was %u)", p->topic_name,
		 p->index, n, pa->nisr);
	memcpy(p->isr_pend, isr, n * sizeof(*isr));
	p->nisr_pend = n;
	p->isr_pend_epoch = pa->part_epoch;
}

static void progressed(struct rmq_partition *p)
{
	update_hw(p);
	rmq_produce_replicated(p);
	maybe_change_isr(p);
}

/* ---- requests -------------------------------------------------------------------------- */

static size_t put_str(uint8_t *b, uint32_t field, const char *s)
{
	size_t len = strlen(s), n = rmq_pb_put_len(b, field, len);
	memcpy(b + n, s, len);
	return n + len;
}

static void retry_slot(struct rmq_rslot *s, uint64_t after_ns)
{
	s->retry_at = rmq_now_ns() + after_ns;
	if (after_ns < RETRY_NS)
		arm_by(s->peer->lead, s->retry_at);
	else
		arm(s->peer->lead);
}

/* ---- the reassignment throttle ------------------------------------------------------ */

/*
 * --reassign-throttle (Kafka's leader.replication.throttled.rate, per
 * leader shard here): the bytes per second this shard sends to replicas a
 * reassignment adds while they are outside the ISR.  ISR members are never
 * throttled, so acks ALL never waits behind a copy.  The bucket paces
 * without a burst: a request goes when what was sent before is paid off
 * (paid_ns) and its bytes are charged after, so over any span the rate is
 * at most the throttle plus one request (REQ_BYTES).  A slot that must wait
 * is woken by ld->throttle at paid_ns, never by polling.
 */
static bool throttled(const struct rmq_rslot *s)
{
	const struct rmq_passign *pa = assign_of(s->p);
	if (!s->p->bs->b->cfg.reassign_throttle || !pa)
		return false;
	for (uint32_t i = 0; i < pa->nisr; i++)
		if (pa->isr[i] == s->broker)
			return false;
	for (uint32_t i = pa->nreplicas - pa->nadding; i < pa->nreplicas; i++)
		if (pa->replicas[i] == s->broker)
			return true;
	return false;
}

static void on_throttle(struct rmq_timer *t)
{
	struct rmq_lead *ld = RMQ_CONTAINER_OF(t, struct rmq_lead, throttle);
	for (struct rmq_peer *pe = ld->peers; pe; pe = pe->next)
		for (uint32_t i = 0; i < pe->nslots; i++)
			if (pe->slots[i])
				send_next(pe->slots[i]);
}

/* Whether s must wait for the bucket (the timer is set to wake it). */
static bool throttle_wait(struct rmq_rslot *s, uint64_t now)
{
	struct rmq_lead *ld = s->peer->lead;
	if (now >= ld->paid_ns || !throttled(s))
		return false;
	if (!rmq_timer_armed(&ld->throttle) &&
	    rmq_timer_start(ld->bs->s, &ld->throttle, ld->paid_ns, on_throttle) < 0)
		retry_slot(s, RETRY_NS); /* no timer left: the retry timer wakes it */
	return true;
}

static void throttle_charge(const struct rmq_rslot *s, size_t bytes)
{
	struct rmq_lead *ld = s->peer->lead;
	uint64_t now = rmq_now_ns(), rate = s->p->bs->b->cfg.reassign_throttle;
	if (bytes == 0 || !throttled(s))
		return;
	ld->paid_ns = (ld->paid_ns > now ? ld->paid_ns : now) + (uint64_t)bytes * 1000000000 / rate;
}

/* Cuts the stored batches d[0..*nd) (each piece whole batches) after the
 * follower's RMQ_FOLLOW_BATCHES_MAX, moving *sent_to there (many small
 * batches: the rest goes next).  Returns false when a batch does not
 * parse. */
static bool cut_batches(struct iovec *d, unsigned *nd, uint64_t *sent_to)
{
	size_t nb = 0;
	for (unsigned i = 0; i < *nd; i++) {
		const uint8_t *b = d[i].iov_base;
		for (size_t at = 0; at < d[i].iov_len; nb++) {
			struct rmq_batch_view v;
			if (nb == RMQ_FOLLOW_BATCHES_MAX) {
				d[i].iov_len = at;
				*nd = i + 1;
				return true;
			}
			int len = rmq_batch_parse_header(b + at, d[i].iov_len - at, &v);
			if (len <= 0)
				return false;
			at += (size_t)len;
			if (nb + 1 == RMQ_FOLLOW_BATCHES_MAX)
				*sent_to = rmq_batch_last_offset(&v.hdr) + 1;
		}
	}
	return true;
}

/* Adds s's next request to its peer's message: the stored batches
 * d[0..nd) (whole batches from s->next up to sent_to, referenced with
 * refs; none for a probe or a request carrying a high watermark).
 * Returns whether another may follow it now. */
static bool req_post(struct rmq_rslot *s, const struct iovec *d, struct rmq_send_ref *const *refs,
		     unsigned nd, uint64_t sent_to)
{
	struct rmq_partition *p = s->p;
	struct rmq_peer *pe = s->peer;
	const uint64_t start = rmq_log_start_offset(p->log);
	uint32_t prev_epoch = 0;
	uint64_t e0, e1;
	if (s->next > start && rmq_log_epoch_at(p->log, s->next - 1, &prev_epoch, &e0, &e1) < 0) {
		retry_slot(s, RETRY_NS);
		return false;
	}
	size_t stored = 0;
	for (unsigned i = 0; i < nd; i++)
		stored += d[i].iov_len;
	uint8_t f[HDR_MAX], tp[300];
	char id[12];
	size_t n = rmq_pb_put_len(f, 1, 2);
	n += rmq_pb_put_uint(f + n, 1, 1); /* version.major */
	snprintf(id, sizeof(id), "%" PRIu32, p->bs->b->self);
	n += put_str(f + n, 2, id);
	n += rmq_pb_put_uint(f + n, 3, p->leader_epoch);
	size_t tn = put_str(tp, 1, p->topic_name);
	tn += rmq_pb_put_uint(tp + tn, 2, p->index);
	n += rmq_pb_put_len(f + n, 4, tn);
	memcpy(f + n, tp, tn);
	n += tn;
	const struct rmq_broker_rec *self = rmq_meta_broker(p->bs->meta, p->bs->b->self);
	n += rmq_pb_put_uint(f + n, 6, s->next);
	n += rmq_pb_put_uint(f + n, 7, prev_epoch);
	n += rmq_pb_put_uint(f + n, 8, p->hw);
	n += rmq_pb_put_uint(f + n, 9, start);
	uint64_t corr = (uint64_t)s->reg << 32 | (++pe->seq ? pe->seq : ++pe->seq);
	n += rmq_pb_put_uint(f + n, 10, corr);
	snprintf(id, sizeof(id), "%" PRIu32, s->broker);
	n += put_str(f + n, 11, id);
	n += rmq_pb_put_uint(f + n, 12, self ? self->epoch : 0);
	if (!p->recover) /* a recovery's probe must not cut a longer tail: recover.h */
		n += rmq_pb_put_uint(f + n, 13, rmq_log_end_offset(p->log));
	if (part_add(pe, f, n, d, refs, nd, stored) < 0) {
		retry_slot(s, RETRY_NS / 10);
		return false;
	}
	s->hw_sent = p->hw;
	throttle_charge(s, stored);
	uint32_t k = (s->in_head + s->nin++) % PIPELINE;
	s->in[k].corr = corr;
	s->in[k].sent_end = rmq_log_high_watermark(p->log);
	s->in[k].sent_ns = rmq_now_ns();
	s->in[k].sent_to = sent_to;
	if (!s->known)
		return false; /* a probe waits for its answer */
	s->next = sent_to;
	return true;
}

/* Batches read from the log for a follower not served from the tail,
 * sent by reference: from the segment mapping when resident (the log read
 * pinned until the kernel took them), else read from the disk into a
 * buffer without stalling the shard, the slot waiting for it (one read at
 * a time; NULL s when it went meanwhile). */
struct lead_read {
	struct rmq_cold_read cr;     /* first: the callback gets &cr */
	struct rmq_send_ref ref;     /* the requests' references */
	bool mapped;                 /* cr.lr's slices are sent; else cr.data's */
	struct rmq_rslot *s;
	uint64_t from;               /* s->next when the read started */
};

static void read_release(struct rmq_send_ref *r)
{
	struct lead_read *lr = RMQ_CONTAINER_OF(r, struct lead_read, ref);
	if (lr->mapped)
		rmq_log_read_release(&lr->cr.lr);
	free(lr->cr.data);
	free(lr);
}

/* Sends batches d[0..nd) of lr (whole batches up to sent_to) and drops
 * this function's count of lr.  Returns whether another may follow. */
static bool read_send(struct rmq_rslot *s, struct lead_read *lr, struct iovec *d, unsigned nd,
		      uint64_t sent_to)
{
	struct rmq_send_ref *refs[RMQ_LOG_SLICES_MAX];
	bool more = false;
	for (unsigned i = 0; i < nd; i++)
		refs[i] = &lr->ref;
	if (!cut_batches(d, &nd, &sent_to)) {
		rmq_warn("replication of %s-%u: a stored batch at or after offset %" PRIu64
			 " does not parse; not sent",
			 s->p->topic_name, s->p->index, s->next);
		retry_slot(s, 50 * RETRY_NS);
	} else {
		more = req_post(s, d, refs, nd, sent_to);
	}
	rmq_send_ref_put(&lr->ref);
	return more;
}

/* Sends what a disk read got, if s still wants it.  Returns whether
 * another request may follow. */
static bool cold_send(struct lead_read *lr)
{
	struct rmq_rslot *s = lr->s;
	struct rmq_cold_read *cr = &lr->cr;
	if (s && cr->err) {
		rmq_warn("replication of %s-%u to broker %" PRIu32 ": reading offset %" PRIu64
			 ": %s",
			 s->p->topic_name, s->p->index, s->broker, lr->from, rmq_strerror(cr->err));
		retry_slot(s, 50 * RETRY_NS);
	} else if (s && s->next == lr->from && cr->len > 0) {
		/* The checked batches: cr->len bytes from the first piece on. */
		struct iovec d[RMQ_LOG_SLICES_MAX];
		unsigned nd = 0;
		for (size_t left = cr->len; nd < cr->niov && left > 0; nd++) {
			d[nd] = cr->iov[nd];
			if (d[nd].iov_len > left)
				d[nd].iov_len = left;
			left -= d[nd].iov_len;
		}
		return read_send(s, lr, d, nd, cr->next_offset);
	}
	rmq_send_ref_put(&lr->ref);
	return false;
}

static void cold_done(struct rmq_cold_read *cr)
{
	struct lead_read *lr = (struct lead_read *)cr;
	struct rmq_rslot *s = lr->s;
	if (s)
		s->cold = NULL;
	(void)cold_send(lr);
	if (s)
		send_next(s);
}

/* Sends the tail's bytes [s->next, next), len of them, held until the
 * kernel took them. */
struct lead_held {
	struct rmq_send_ref ref;
	struct rmq_tail_hold hold;
};

static void held_release(struct rmq_send_ref *r)
{
	struct lead_held *h = RMQ_CONTAINER_OF(r, struct lead_held, ref);
	rmq_tail_release(&h->hold);
	free(h);
}

static bool tail_send(struct rmq_rslot *s, struct rmq_tail *tail, size_t len, uint64_t next)
{
	struct lead_held *h = malloc(sizeof(*h));
	if (!h) {
		retry_slot(s, RETRY_NS);
		return false;
	}
	struct iovec d[2];
	struct rmq_send_ref *refs[2] = {&h->ref, &h->ref};
	h->ref = (struct rmq_send_ref){.release = held_release, .count = 1};
	rmq_tail_hold(tail, s->next, len, d, &h->hold);
	bool more = req_post(s, d, refs, 2, next);
	rmq_send_ref_put(&h->ref);
	return more;
}

/* Sends one request of s: batches from s->next, or a probe (none, and
 * alone in flight) while where the follower stands is not known.  Returns
 * whether another may follow it now. */
static bool send_one(struct rmq_rslot *s)
{
	struct rmq_partition *p = s->p;
	struct rmq_peer *pe = s->peer;
	uint64_t now = rmq_now_ns();
	if (s->nin == PIPELINE || (!s->known && s->nin) || s->stale || s->cold || !p->log ||
	    p->role != RMQ_ROLE_LEADER || now < s->retry_at || (p->recover && s->known))
		return false; /* recovering: a probe only, answered once (recover.h) */
	if (!pe->call) {
		peer_connect(pe);
		return false;
	}
	if (!peer_room(pe)) {
		retry_slot(s, RETRY_NS / 10); /* the stream's queue drains as it is written */
		return false;
	}
	/* What a follower that keeps up asks for is in the log's tail (its
	 * newest entries in memory): sent as soon as appended, before this
	 * log's own sync, which the high watermark still waits for.  Older
	 * records are read from the log once durable: from the mapping when
	 * in memory, else from the disk without stalling the shard (the
	 * cold reads fetch uses, storage/coldread.h).  Either way they go by
	 * reference, copied only by the kernel into the socket. */
	const uint64_t durable = rmq_log_high_watermark(p->log);
	const uint64_t log_end = rmq_log_end_offset(p->log);
	const uint64_t start = rmq_log_start_offset(p->log);
	struct rmq_tail *tail = rmq_log_tail(p->log);
	size_t len = 0;
	uint64_t tail_next = s->next;
	const bool from_tail = s->known && tail &&
			       rmq_tail_span(tail, s->next, log_end, REQ_BYTES, RMQ_FOLLOW_BATCHES_MAX,
					     &len, &tail_next) == 0;
	if (s->known && s->next >= (from_tail ? log_end : durable)) {
		/* Caught up, or waiting for this log's sync.  A follower with
		 * all of this log and nothing in flight learns a high watermark
		 * that moved since its last request from a request without
		 * batches (else it would wait for the next data). */
		if (s->nin == 0 && s->next >= log_end && s->hw_sent < p->hw)
			(void)req_post(s, NULL, NULL, 0, s->next);
		return false;
	}
	if (s->next < start || s->next > log_end) {
		/* Behind this log's start (its records went by retention), or
		 * ahead of it: not served yet (a reset of the follower's log). */
		rmq_warn("replication of %s-%u to broker %" PRIu32 ": the follower is at offset %" PRIu64
			 ", outside this log (%" PRIu64 " to %" PRIu64 ")",
			 p->topic_name, p->index, s->broker, s->next, start, log_end);
		retry_slot(s, 50 * RETRY_NS);
		return false;
	}
	if (s->known && throttle_wait(s, now))
		return false;
	if (!s->known)
		return req_post(s, NULL, NULL, 0, s->next); /* a probe */
	if (from_tail)
		return tail_send(s, tail, len, tail_next);
	struct lead_read *lr = calloc(1, sizeof(*lr));
	if (!lr || rmq_log_read(p->log, s->next, REQ_BYTES, &lr->cr.lr) < 0 ||
	    lr->cr.lr.nslices == 0) {
		if (lr)
			rmq_log_read_done(p->log, &lr->cr.lr);
		free(lr);
		retry_slot(s, RETRY_NS);
		return false;
	}
	lr->ref = (struct rmq_send_ref){.release = read_release, .count = 1};
	struct rmq_log_read *r = &lr->cr.lr;
	bool resident = true;
	for (unsigned i = 0; i < r->nslices && resident; i++)
		resident = rmq_cold_resident(r->slices[i].data, r->slices[i].len);
	if (resident) {
		struct iovec d[RMQ_LOG_SLICES_MAX];
		for (unsigned i = 0; i < r->nslices; i++)
			d[i] = (struct iovec){(void *)r->slices[i].data, r->slices[i].len};
		lr->mapped = true;
		return read_send(s, lr, d, r->nslices, r->next_offset);
	}
	lr->s = s;
	lr->from = s->next;
	lr->cr.cs = &p->cold;
	lr->cr.ahead_bytes = REQ_BYTES;
	lr->cr.cb = cold_done;
	if (rmq_cold_read_start(&lr->cr)) {
		s->cold = lr;
		return false;
	}
	return cold_send(lr);
}

static void send_next(struct rmq_rslot *s)
{
	while (send_one(s))
		;
}

/* Where the follower's log, which leaves this one in epoch `epoch` over
 * [start, end) of its own, meets it again (KIP-101): the end of that epoch
 * here when this log has it, else its start there. */
static uint64_t resolve(struct rmq_partition *p, const Rustmq__Broker__DivergingEpoch *d)
{
	uint32_t floor;
	uint64_t end, t;
	int rc = rmq_log_epoch_end(p->log, d->epoch, &floor, &end);
	if (rc == 0 && floor == d->epoch)
		t = end < d->end_offset ? end : d->end_offset;
	else
		t = d->start_offset;
	uint64_t start = rmq_log_start_offset(p->log);
	return t < start ? start : t;
}

static void on_response(struct rmq_ccall *c, void *arg, const uint8_t *msg, size_t len)
{
	struct rmq_peer *pe = arg;
	(void)c;
	Rustmq__Broker__ReplicateDataResponse *resp =
		rustmq__broker__replicate_data_response__unpack(NULL, len, msg);
	if (!resp) {
		rmq_warn("replication to broker %" PRIu32 ": an answer that does not decode",
			 pe->broker);
		return;
	}
	uint32_t reg = (uint32_t)(resp->correlation_id >> 32);
	struct rmq_rslot *s = reg < pe->nslots ? pe->slots[reg] : NULL;
	if (!s || !s->nin || s->in[s->in_head].corr != resp->correlation_id) {
		/* For a slot that went, an earlier stream, or after a reset;
		 * or a request the follower could not read (no correlation id),
		 * which this leader should never send: the answer timeout
		 * restarts the stream. */
		if (resp->correlation_id == 0 && resp->error_code != EC_OK)
			rmq_warn("replication to broker %" PRIu32 ": a request refused unread: %s",
				 pe->broker, resp->error_message ? resp->error_message : "");
		rustmq__broker__replicate_data_response__free_unpacked(resp, NULL);
		return;
	}
	uint64_t sent_end = s->in[s->in_head].sent_end, sent_ns = s->in[s->in_head].sent_ns;
	const uint64_t sent_to = s->in[s->in_head].sent_to;
	s->in_head = (s->in_head + 1) % PIPELINE;
	s->nin--;
	struct rmq_partition *p = s->p;
	bool reset = true; /* the requests after this one are answered for nothing */
	if (p->recover && !s->known)
		rmq_recover_answer(p, s->broker, s->next, resp);
	switch (resp->error_code) {
	case EC_OK:
		if (resp->diverging_epoch) {
			s->next = s->end = resolve(p, resp->diverging_epoch);
			s->known = true;
		} else {
			if (!s->known) {
				/* A probe's answer: the logs match up to the offset
				 * probed (s->next); what the follower holds past it
				 * is unchecked (another leader's tail, when this one
				 * has written since the probe was sent), so batches go
				 * from there and it cuts what differs. */
				if (resp->log_end_offset < s->next)
					s->next = resp->log_end_offset;
				s->end = s->next;
			} else {
				/* Only what this leader sent is known to match: a
				 * follower may hold more (another leader's tail) that
				 * the next request's batches are compared with. */
				s->end = resp->log_end_offset < sent_to ? resp->log_end_offset : sent_to;
			}
			s->known = true;
			s->backoff_ns = 0;
			reset = false;
			if (s->end >= sent_end)
				s->caught_ns = sent_ns; /* it had all there was then */
			progressed(p);
		}
		break;
	case EC_OFFSET_OUT_OF_RANGE:
		s->next = s->end = resp->log_end_offset; /* a probe there next */
		s->known = false;
		break;
	case EC_STALE_EPOCH:
		s->stale = true; /* another leads: the metadata will say */
		break;
	default: {
		/* A replica opening or closing, or metadata on its way, passes;
		 * any other refusal repeats until an operator looks. */
		const bool passing = resp->error_code == EC_NOT_AVAILABLE ||
				     resp->error_code == EC_REPLICA_NOT_AVAILABLE ||
				     resp->error_code == EC_UNKNOWN_LEADER_EPOCH;
		const uint64_t now = rmq_now_ns();
		s->next = s->end;
		/* A passing one clears when the follower's metadata lands,
		 * usually within milliseconds (a new leader's probe may come
		 * first): tried again soon, then less often. */
		s->backoff_ns = !passing ? RETRY_NS
			      : s->backoff_ns ? (2 * s->backoff_ns < RETRY_NS ? 2 * s->backoff_ns : RETRY_NS)
					      : RETRY_NS / 32;
		if (passing || now - s->warned_ns < WARN_NS) {
			rmq_debug("replication of %s-%u to broker %" PRIu32 ": %s", p->topic_name,
				  p->index, s->broker, resp->error_message);
		} else {
			s->warned_ns = now;
			rmq_warn("replication of %s-%u to broker %" PRIu32 ": refused (%d): %s",
				 p->topic_name, p->index, s->broker, (int)resp->error_code,
				 resp->error_message);
		}
		retry_slot(s, s->backoff_ns);
		break;
	}
	}
	if (reset)
		s->nin = 0;
	rustmq__broker__replicate_data_response__free_unpacked(resp, NULL);
	fifo_release(pe, false);
	send_next(s);
}

/* ---- slots ------------------------------------------------------------------------------ */

static void slot_free(struct rmq_rslot *s)
{
	struct rmq_peer *pe = s->peer;
	uint32_t reg = s->reg;
	if (s->cold)
		s->cold->s = NULL; /* its read completes into nothing */
	for (size_t i = 0; pe && i < pe->nbeat; i++)
		if (pe->beat_slots[i] == s)
			pe->beat_slots[i] = NULL; /* its answer goes to nothing */
	free(s);
	if (!pe)
		return;
	pe->slots[reg] = NULL;
	for (uint32_t i = 0; i < pe->nslots; i++)
		if (pe->slots[i])
			return;
	/* No partition left to replicate there: the stream ends (the
	 * follower answers what it has, then finishes it), and with it the
	 * follower's wait for it when it stops. */
	if (pe->call)
		(void)rmq_ccall_half_close(pe->call);
}

void rmq_lead_drop(struct rmq_partition *p)
{
	rmq_recover_drop(p);
	for (uint32_t i = 0; i < p->nslots; i++)
		slot_free(p->slots[i]);
	free(p->slots);
	p->slots = NULL;
	p->nslots = 0;
}

void rmq_lead_sync(struct rmq_partition *p)
{
	const struct rmq_passign *pa = assign_of(p);
	struct rmq_bshard *bs = p->bs;
	bool lead = p->role == RMQ_ROLE_LEADER && pa && pa->nreplicas > 1 && p->log;
	const bool fresh = lead && p->slots_epoch != p->leader_epoch;
	if (!lead || p->slots_epoch != p->leader_epoch) {
		rmq_lead_drop(p); /* a new leadership starts from probes */
		p->isr_retry_at = 0;
		p->nisr_pend = 0;
	}
	if (!lead) {
		if (p->log && rmq_log_tail(p->log))
			(void)rmq_log_keep_tail(p->log, 0);
		return;
	}
	if (!rmq_log_tail(p->log) && rmq_log_keep_tail(p->log, TAIL_BYTES) < 0)
		rmq_warn("replication of %s-%u: no memory for the log's tail: followers are sent "
			 "what is read back from the log",
			 p->topic_name, p->index);
	p->slots_epoch = p->leader_epoch;
	if (fresh)
		rmq_recover_begin(p); /* before the probes: they go without this log's end */
	struct rmq_lead *ld = lead_of(bs);
	/* Slots for replicas no longer named go; new ones come. */
	for (uint32_t i = 0; i < p->nslots;) {
		bool named = false;
		for (uint32_t k = 0; k < pa->nreplicas; k++)
			named |= pa->replicas[k] == p->slots[i]->broker;
		if (named) {
			i++;
			continue;
		}
		slot_free(p->slots[i]);
		p->slots[i] = p->slots[--p->nslots];
	}
	for (uint32_t k = 0; ld && k < pa->nreplicas; k++) {
		uint32_t b = pa->replicas[k];
		const struct rmq_broker_rec *r = rmq_meta_broker(bs->meta, b);
		if (b == bs->b->self || slot_of(p, b) || !r)
			continue;
		struct rmq_rslot **v = realloc(p->slots, (p->nslots + 1) * sizeof(*v));
		struct rmq_rslot *s = v ? calloc(1, sizeof(*s)) : NULL;
		if (v)
			p->slots = v;
		struct rmq_peer *pe =
			s ? peer_get(ld, b, rmq_partition_shard(p->topic_name, p->index,
								r->shards ? r->shards : 1))
			  : NULL;
		if (!pe || peer_add(pe, s) < 0) {
			free(s);
			rmq_warn("replication of %s-%u to broker %" PRIu32 ": out of memory",
				 p->topic_name, p->index, b);
			continue;
		}
		s->p = p;
		s->broker = b;
		s->peer = pe;
		/* A recovery compares the followers with all of this log. */
		s->next = s->end = p->recover ? rmq_log_end_offset(p->log)
					      : rmq_log_high_watermark(p->log);
		s->caught_ns = rmq_now_ns(); /* a lag period's grace to show where it is */
		p->slots[p->nslots++] = s;
		send_next(s);
	}
	progressed(p); /* the ISR may have changed: waiting produce calls too */
}

_Static_assert(RMQ_REPLICAS_MAX_LEAD == RMQ_REPLICAS_MAX, "one bound for replicas");

void rmq_lead_view(const struct rmq_partition *p, struct rmq_isr_view *v)
{
	const struct rmq_passign *pa = assign_of(p);
	uint64_t now = rmq_now_ns(), wall = rmq_wall_ms();
	*v = (struct rmq_isr_view){.log_end = p->log ? rmq_log_end_offset(p->log) : 0};
	for (uint32_t i = 0; pa && i < pa->nreplicas; i++) {
		uint32_t b = pa->replicas[i];
		const struct rmq_rslot *s = slot_of(p, b);
		v->r[v->n].broker = b;
		if (b == p->bs->b->self) {
			v->r[v->n].end = p->log ? rmq_log_high_watermark(p->log) : 0;
			v->r[v->n].caught_ms = wall;
		} else if (s && s->known) {
			v->r[v->n].end = s->end;
			v->r[v->n].caught_ms = s->caught_ns ? wall - (now - s->caught_ns) / 1000000 : 0;
		}
		v->n++;
	}
	v->npend = p->nisr_pend;
	memcpy(v->pend, p->isr_pend, p->nisr_pend * sizeof(*v->pend));
}

void rmq_lead_durable(struct rmq_partition *p)
{
	progressed(p);
	rmq_lead_send(p);
}

void rmq_lead_send(struct rmq_partition *p)
{
	for (uint32_t i = 0; i < p->nslots; i++)
		send_next(p->slots[i]);
}

/* ---- heartbeats -------------------------------------------------------------------- */

/* Whether s is idle: the follower had all of this log when last heard,
 * and nothing is in flight to it. */
static bool slot_idle(const struct rmq_rslot *s)
{
	return s->known && !s->nin && !s->stale && !s->cold && s->p->log &&
	       s->end >= rmq_log_high_watermark(s->p->log);
}

static void beat_done(void *arg, enum rmq_grpc_status status, const char *message,
		      const uint8_t *resp, size_t len)
{
	struct rmq_peer *pe = arg;
	Rustmq__Broker__HeartbeatResponse *r =
		status == RMQ_GRPC_OK ? rustmq__broker__heartbeat_response__unpack(NULL, len, resp)
				      : NULL;
	if (!r)
		rmq_debug("heartbeat to broker %" PRIu32 " (shard %u): %s %s", pe->broker, pe->shard,
			  rmq_grpc_status_name(status), message);
	for (size_t i = 0; r && r->error_code == EC_OK && i < pe->nbeat && i < r->n_partitions; i++) {
		struct rmq_rslot *s = pe->beat_slots[i];
		const Rustmq__Broker__PartitionHeartbeatResult *res = r->partitions[i];
		if (!s || !s->known)
			continue; /* gone, or probed meanwhile */
		if (res->error_code == EC_STALE_EPOCH) {
			s->stale = true; /* another leads: the metadata will say */
		} else if (res->error_code != EC_OK) {
			continue;
		} else if (res->log_end_offset < s->end) {
			/* It lost what it had said it held (a disk replaced,
			 * --fsync never): found again from a probe. */
			s->known = false;
			s->next = s->end = res->log_end_offset;
			send_next(s);
		} else if (slot_idle(s)) {
			s->caught_ns = pe->beat_ns; /* it had all there was then */
		}
	}
	if (r)
		rustmq__broker__heartbeat_response__free_unpacked(r, NULL);
	free(pe->beat_buf);
	free(pe->beat_slots);
	pe->beat_buf = NULL;
	pe->beat_slots = NULL;
	pe->nbeat = 0;
	pe->beat = NULL;
}

/*
 * SendHeartbeat to pe's follower shard, naming every slot that has been
 * idle: answers are how a leader knows a follower is alive, and a slot
 * with nothing to send gets none.  One beat at most every BEAT_MAX_NS and
 * a fifth of --replica-lag-max, so an idle follower that stopped answering
 * leaves the ISR as a lagging one does, and one that answers stays.
 */
static void beat(struct rmq_peer *pe, uint64_t now)
{
	struct rmq_bshard *bs = pe->lead->bs;
	uint64_t every = bs->b->cfg.replica_lag_ns / 5;
	if (every > BEAT_MAX_NS)
		every = BEAT_MAX_NS;
	if (pe->beat || !pe->call || !pe->cc || now - pe->beat_ns < every)
		return;
	size_t n = 0;
	for (uint32_t i = 0; i < pe->nslots; i++)
		n += pe->slots[i] && slot_idle(pe->slots[i]);
	if (n == 0)
		return;
	Rustmq__Broker__PartitionHeartbeat *ph = calloc(n, sizeof(*ph));
	Rustmq__Broker__PartitionHeartbeat **pp = calloc(n, sizeof(*pp));
	Rustmq__Common__TopicPartition *tp = calloc(n, sizeof(*tp));
	pe->beat_slots = calloc(n, sizeof(*pe->beat_slots));
	Rustmq__Broker__HeartbeatRequest req = RUSTMQ__BROKER__HEARTBEAT_REQUEST__INIT;
	Rustmq__Common__ApiVersion ver = RUSTMQ__COMMON__API_VERSION__INIT;
	char self[12], to[12];
	size_t k = 0;
	for (uint32_t i = 0; ph && pp && tp && pe->beat_slots && i < pe->nslots; i++) {
		struct rmq_rslot *s = pe->slots[i];
		if (!s || !slot_idle(s))
			continue;
		const struct rmq_partition *p = s->p;
		rustmq__common__topic_partition__init(&tp[k]);
		tp[k].topic = (char *)p->topic_name;
		tp[k].partition = p->index;
		rustmq__broker__partition_heartbeat__init(&ph[k]);
		ph[k].topic_partition = &tp[k];
		ph[k].leader_epoch = p->leader_epoch;
		ph[k].high_watermark = p->hw;
		ph[k].log_start_offset = rmq_log_start_offset(p->log);
		ph[k].leader_log_end_offset = rmq_log_end_offset(p->log);
		pp[k] = &ph[k];
		pe->beat_slots[k++] = s;
	}
	if (k == n) {
		const struct rmq_broker_rec *me = rmq_meta_broker(bs->meta, bs->b->self);
		snprintf(self, sizeof(self), "%" PRIu32, bs->b->self);
		snprintf(to, sizeof(to), "%" PRIu32, pe->broker);
		ver.major = 1;
		req.version = &ver;
		req.leader_id = self;
		req.leader_broker_epoch = me ? me->epoch : 0;
		req.follower_id = to;
		req.partitions = pp;
		req.n_partitions = n;
		req.sent_at_ms = rmq_wall_ms();
		size_t len = rustmq__broker__heartbeat_request__get_packed_size(&req);
		if ((pe->beat_buf = malloc(len ? len : 1))) {
			rustmq__broker__heartbeat_request__pack(&req, pe->beat_buf);
			pe->nbeat = n;
			pe->beat_ns = now;
			bs->repl_beats++;
			if (rmq_client_unary(pe->cc, BEAT_PATH, pe->beat_buf, len, ANSWER_NS, beat_done,
					     pe, &pe->beat) < 0) {
				free(pe->beat_buf);
				pe->beat_buf = NULL;
				pe->beat = NULL;
			}
		}
	}
	if (!pe->beat) {
		free(pe->beat_slots);
		pe->beat_slots = NULL;
		pe->nbeat = 0;
	}
	free(ph);
	free(pp);
	free(tp);
}

/* The retry timer: connections to make again, refused requests to send
 * again, heartbeats. */
static void on_timer(struct rmq_timer *t)
{
	struct rmq_lead *ld = RMQ_CONTAINER_OF(t, struct rmq_lead, timer);
	bool again = false;
	uint64_t now = rmq_now_ns();
	for (struct rmq_peer *pe = ld->peers; pe; pe = pe->next) {
		/* A follower going away (GOAWAY) ends its stream with us once
		 * it has answered what it has: this one ends our half. */
		if (pe->call && pe->cc && !rmq_client_conn_ok(pe->cc))
			(void)rmq_ccall_half_close(pe->call);
		/* Requests into a network partition are never answered, and
		 * TCP may take many minutes to give up on the connection: one
		 * unanswered for ANSWER_NS closes it, and the follower is
		 * probed again on a new one. */
		for (uint32_t i = 0; pe->call && pe->cc && rmq_client_conn_ok(pe->cc) && i < pe->nslots; i++) {
			const struct rmq_rslot *s = pe->slots[i];
			if (s && s->nin && s->in[s->in_head].sent_ns + ANSWER_NS < now) {
				rmq_warn("replication to broker %" PRIu32 " (shard %u): no answer for %llu s;"
					 " connecting again",
					 pe->broker, pe->shard,
					 (unsigned long long)(ANSWER_NS / 1000000000ULL));
				rmq_client_conn_close(pe->cc);
				break;
			}
		}
		again |= pe->call != NULL; /* to see a GOAWAY come, and to beat */
		beat(pe, now);
		for (uint32_t i = 0; i < pe->nslots; i++) {
			struct rmq_rslot *s = pe->slots[i];
			if (!s)
				continue;
			send_next(s);
			maybe_change_isr(s->p);
			again |= !s->nin && !s->stale;
		}
	}
	if (again)
		arm(ld);
}

void rmq_lead_fini(struct rmq_bshard *bs)
{
	struct rmq_lead *ld = bs->lead;
	if (!ld)
		return;
	/* Calls end (their callbacks may arm the timer), then the timer. */
	for (struct rmq_peer *pe = ld->peers; pe; pe = pe->next) {
		if (pe->cl)
			rmq_client_destroy(pe->cl);
		pe->cl = NULL;
	}
	rmq_timer_cancel(bs->s, &ld->timer);
	rmq_timer_cancel(bs->s, &ld->throttle);
	while (ld->peers) {
		struct rmq_peer *pe = ld->peers;
		ld->peers = pe->next;
		bundle_reset(pe);
		free(pe->bhdr);
		fifo_release(pe, true);
		free(pe->fifo);
		free(pe->slots);
		free(pe);
	}
	free(ld);
	bs->lead = NULL;
}
