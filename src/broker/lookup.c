/* SPDX-License-Identifier: Apache-2.0 */
/*
 * lookup.c - offset lookups on the owning shards (lookup.h), and
 * ConsumerService.ListOffsets on top of them.
 */
#include "broker/lookup.h"

#include "broker/auth.h"
#include "broker/broker.h"
#include "broker/cluster.h"
#include "broker/lead.h"
#include "broker/replication.pb-c.h"
#include "broker/methods.h"
#include "broker/reply.h"
#include "broker/request.h"
#include "client/consumer.pb-c.h"
#include "core/error.h"
#include "core/pbwire.h"
#include "storage/batch.h"
#include "core/util.h"

#include <errno.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

struct rmq_lookup_set {
	unsigned origin;
	size_t pending;              /* parts not back yet, +1 while posting */
	void (*done)(void *arg);
	void *arg;
};

static void set_put(struct rmq_lookup_set *set)
{
	if (--set->pending > 0)
		return;
	void (*done)(void *) = set->done;
	void *arg = set->arg;
	free(set);
	done(arg);
}

static void lookup_back(struct rmq_xmsg *m)
{
	set_put(RMQ_CONTAINER_OF(m, struct rmq_lookup, msg)->set);
}

/*
 * The time index finds the first batch whose greatest timestamp is >= ts;
 * this walks that batch's records to the first one at or after ts (its
 * offset and timestamp).  A record without a timestamp, and every record of
 * a batch stored with log-append time (no producer timestamps), counts with
 * the batch's append time.  Compressed batches answer their base offset.
 * Reads the mapping: ListOffsets is rare enough to take a page fault.
 */
static void to_record(struct rmq_partition *p, struct rmq_lookup *v, int64_t ts)
{
	struct rmq_log_read r;
	struct rmq_batch_view bv;
	v->ts_found = ts;
	if (rmq_log_read(p->log, v->offset, 1, &r) < 0 || r.nslices == 0)
		return;
	const uint8_t *e = r.slices[0].data;
	if (rmq_batch_parse_header(e, r.slices[0].len, &bv) > 0) {
		int64_t append = (int64_t)bv.hdr.log_append_time_ms;
		v->offset = bv.hdr.base_offset;
		v->ts_found = bv.hdr.max_timestamp_ms >= 0 ? bv.hdr.max_timestamp_ms : append;
		const uint8_t *q = e + bv.records_pos, *end = q + bv.records_len;
		for (uint64_t i = 0; bv.hdr.compression == 0 && bv.hdr.max_timestamp_ms >= 0 && q < end; i++) {
			uint32_t f, wt, rf, rwt;
			uint64_t num;
			const uint8_t *rec, *val;
			size_t rlen, vlen, n = rmq_pb_next(q, end, &f, &wt, &num, &rec, &rlen);
			if (n == 0 || f != 7 || wt != RMQ_PB_LEN)
				break;
			int64_t rts = append;
			for (const uint8_t *x = rec, *xend = rec + rlen; x < xend;) {
				size_t m = rmq_pb_next(x, xend, &rf, &rwt, &num, &val, &vlen);
				if (m == 0)
					break;
				if (rf == 4 && rwt == 2 && rmq_pb_timestamp_ms(val, vlen, &rts) < 0)
					rts = append;
				x += m;
			}
			if (rts >= ts) {
				v->offset = bv.hdr.base_offset + i;
				v->ts_found = rts;
				break;
			}
			q += n;
		}
	}
	rmq_log_read_done(p->log, &r);
}

uint64_t rmq_lookup_time(struct rmq_partition *p, bool max, int64_t ts_ms, int64_t *ts_found)
{
	struct rmq_lookup v = {.ts_found = -1};
	int64_t at = ts_ms;
	if ((max && rmq_log_max_timestamp(p->log, &at) < 0) ||
	    rmq_log_offset_for_time(p->log, at, &v.offset) < 0)
		v.offset = p->hw;
	else
		to_record(p, &v, at);
	if (ts_found)
		*ts_found = v.ts_found;
	return v.offset;
}

void rmq_lookup_copied(const struct rmq_lookup *v, uint32_t broker, struct rmq_copy_progress *out)
{
	const struct rmq_isr_view *w = v->isr;
	*out = (struct rmq_copy_progress){.source_end = w->log_end, .bytes_total = v->size_bytes};
	for (uint32_t i = 0; i < w->n; i++)
		if (w->r[i].broker == broker)
			out->target_end = w->r[i].end;
	uint64_t span = w->log_end > v->log_start ? w->log_end - v->log_start : 0;
	uint64_t have = out->target_end > v->log_start ? out->target_end - v->log_start : 0;
	have = have < span ? have : span;
	out->bytes_copied = span ? (uint64_t)((double)v->size_bytes * (double)have / (double)span) : 0;
	out->lag_records = w->log_end > out->target_end ? w->log_end - out->target_end : 0;
}

/* On the owner: answers from the log's current state. */
static void lookup_exec(struct rmq_xmsg *m)
{
	struct rmq_lookup *v = RMQ_CONTAINER_OF(m, struct rmq_lookup, msg);
	struct rmq_bshard *bs = rmq_bshard_current();
	int code;
	struct rmq_partition *p = rmq_partition_find(bs, v->topic, v->partition, &code);
	if (!p) {
		v->code = code;
		if (code == EC_NOT_AVAILABLE)
			snprintf(v->err, sizeof(v->err), "partition %s-%u %s", v->topic, v->partition,
				 rmq_partition_unavailable(bs, v->topic, v->partition));
		else
			snprintf(v->err, sizeof(v->err), "unknown topic or partition %s-%u", v->topic,
				 v->partition);
	} else {
		v->log_start = rmq_log_start_offset(p->log);
		v->log_end = rmq_log_end_offset(p->log);
		v->size_bytes = rmq_log_size_bytes(p->log);
		v->segments = (uint32_t)rmq_log_segment_count(p->log);
		v->hw = p->hw;
		v->leader_epoch = p->leader_epoch;
		switch (v->spec) {
		case RMQ_LOOKUP_EARLIEST:
			v->offset = v->log_start;
			break;
		case RMQ_LOOKUP_LATEST:
			v->offset = v->hw;
			break;
		case RMQ_LOOKUP_TIMESTAMP:
		case RMQ_LOOKUP_MAX_TIMESTAMP:
			v->offset = rmq_lookup_time(p, v->spec == RMQ_LOOKUP_MAX_TIMESTAMP, v->ts_ms,
						    &v->ts_found);
			if (v->ts_found < 0) {
				/* Every record is older (or there is none): the
				 * offset a consumer would start at is the end. */
				v->code = EC_OFFSET_NOT_AVAILABLE;
				snprintf(v->err, sizeof(v->err),
					 v->spec == RMQ_LOOKUP_TIMESTAMP
						 ? "no record of %s-%u has a timestamp at or after %lld ms"
						 : "%s-%u has no records",
					 v->topic, v->partition, (long long)v->ts_ms);
			}
			break;
		case RMQ_LOOKUP_ISR:
			rmq_lead_view(p, v->isr);
			break;
		case RMQ_LOOKUP_STATE:
			v->offset = v->log_end;
			break;
		case RMQ_LOOKUP_EPOCH_END: {
			int rc = rmq_log_epoch_end(p->log, v->epoch, &v->epoch_found, &v->offset);
			if (rc < 0 && rc != RMQ_ENOTFOUND) {
				v->code = EC_STORAGE_ERROR;
				snprintf(v->err, sizeof(v->err), "reading the epochs of %s-%u: %s",
					 v->topic, v->partition, rmq_strerror(rc));
			}
			break;
		}
		default:
			v->code = EC_INVALID_REQUEST;
			snprintf(v->err, sizeof(v->err), "offset spec %d is not supported", v->spec);
		}
	}
	v->msg.fn = lookup_back;
	rmq_shard_post(rmq_shard_current(), v->set->origin, &v->msg);
}

/* The shard of v's replica on this broker, or -1 with v->code (and, when
 * the partition exists but is not hosted here, v->err). */
static int hosted_shard(struct rmq_bshard *bs, struct rmq_lookup *v)
{
	long k = rmq_meta_find(bs->meta, v->topic);
	const struct rmq_topic *t = k >= 0 ? &bs->meta->topics[k] : NULL;
	if (!t || v->partition >= t->partitions || !t->parts) {
		v->code = t ? EC_PARTITION_NOT_FOUND : EC_TOPIC_NOT_FOUND;
		return -1;
	}
	const struct rmq_passign *pa = &t->parts[v->partition];
	for (uint32_t i = 0; i < pa->nreplicas; i++)
		if (pa->replicas[i] == bs->b->self)
			return (int)rmq_partition_shard(v->topic, v->partition, bs->nshards);
	v->code = EC_REPLICA_NOT_AVAILABLE;
	snprintf(v->err, sizeof(v->err), "broker %u hosts no replica of %s-%u", bs->b->self,
		 v->topic, v->partition);
	return -1;
}

int rmq_lookup_start(struct rmq_bshard *bs, struct rmq_lookup *v, size_t n,
		     void (*done)(void *arg), void *arg)
{
	struct rmq_lookup_set *set = malloc(sizeof(*set));
	if (!set)
		return -ENOMEM;
	set->origin = bs->id;
	set->pending = n + 1; /* +1 held until every part is posted */
	set->done = done;
	set->arg = arg;
	for (size_t i = 0; i < n; i++) {
		v[i].set = set;
		v[i].code = EC_OK;
		v[i].err[0] = '\0';
		v[i].offset = v[i].log_start = v[i].hw = v[i].log_end = v[i].size_bytes = 0;
		v[i].segments = 0;
		v[i].ts_found = -1;
		int owner = v[i].hosted ? hosted_shard(bs, &v[i])
					: rmq_route(bs, v[i].topic, v[i].partition, &v[i].code);
		if (owner < 0) {
			if (v[i].code != EC_REPLICA_NOT_AVAILABLE) /* that one said why */
				rmq_route_error(bs, v[i].topic, v[i].partition, v[i].code,
						v[i].err, sizeof(v[i].err));
			set->pending--;
			continue;
		}
		v[i].msg.fn = lookup_exec;
		rmq_shard_post(rmq_shard_current(), (unsigned)owner, &v[i].msg);
	}
	set_put(set);
	return 0;
}

/* ---- a call of lookups (ListOffsets, GetLeaderEpoch) ---------------------------- */

struct lookup_call {
	struct rmq_call *call;
	size_t n;
	struct rmq_lookup *v;
	uint32_t *current;           /* GetLeaderEpoch: the epoch each caller knows (0: any) */
};

static void lookup_call_free(struct lookup_call *op)
{
	if (op->call)
		rmq_call_unref(op->call);
	free(op->current);
	free(op->v);
	free(op);
}

/* The lookups of request req, whose n entries each hold a TopicPartition
 * at tp_offset: checked (each partition once), then made with `current`
 * when asked.  NULL when c is answered (refused, or out of memory); req
 * is the caller's to free. */
static struct lookup_call *lookup_call_new(struct rmq_call *c, void *const *entries, size_t n,
					   size_t tp_offset, bool current)
{
	struct rmq_bshard *bs = rmq_call_app(c);
	char err[400];
	int code = rmq_request_tps(bs, entries, n, tp_offset, true, err, sizeof(err));
	if (code == EC_OK) /* offsets, epochs, ISRs: DESCRIBE, as Kafka's ListOffsets */
		code = rmq_auth_topics(c, entries, n, tp_offset, RMQ_ACL_DESCRIBE, err, sizeof(err));
	if (code != EC_OK) {
		rmq_refuse(c, code, "%s", err);
		return NULL;
	}
	struct lookup_call *op = calloc(1, sizeof(*op));
	if (!op || !(op->v = calloc(n ? n : 1, sizeof(*op->v))) ||
	    (current && !(op->current = calloc(n ? n : 1, sizeof(*op->current))))) {
		if (op)
			lookup_call_free(op);
		rmq_call_finish(c, RMQ_GRPC_RESOURCE_EXHAUSTED, "out of memory");
		return NULL;
	}
	op->n = n;
	rmq_call_charge(c, sizeof(*op) + n * (sizeof(*op->v) + (current ? sizeof(uint32_t) : 0)));
	for (size_t i = 0; i < n; i++) {
		const Rustmq__Common__TopicPartition *tp =
			*(Rustmq__Common__TopicPartition *const *)((const char *)entries[i] + tp_offset);
		if (tp) {
			snprintf(op->v[i].topic, sizeof(op->v[i].topic), "%s", tp->topic);
			op->v[i].partition = tp->partition;
		}
	}
	return op;
}

/* Starts op's lookups; done(op) answers c. */
static void lookup_call_start(struct rmq_call *c, struct lookup_call *op, void (*done)(void *arg))
{
	op->call = c;
	rmq_call_ref(c);
	if (rmq_lookup_start(rmq_call_app(c), op->v, op->n, done, op) < 0) {
		lookup_call_free(op);
		rmq_call_finish(c, RMQ_GRPC_RESOURCE_EXHAUSTED, "out of memory");
	}
}

/* ---- ListOffsets ----------------------------------------------------------------- */

static void lo_done(void *arg)
{
	struct lookup_call *op = arg;
	size_t n = op->n;
	Rustmq__Client__ListOffsetsResponse resp = RUSTMQ__CLIENT__LIST_OFFSETS_RESPONSE__INIT;
	Rustmq__Client__ListOffsetsPartitionResponse *rs = calloc(n ? n : 1, sizeof(*rs));
	Rustmq__Client__ListOffsetsPartitionResponse **rp = calloc(n ? n : 1, sizeof(*rp));
	Rustmq__Common__TopicPartition *tps = calloc(n ? n : 1, sizeof(*tps));
	Google__Protobuf__Timestamp *tss = calloc(n ? n : 1, sizeof(*tss));
	if (rs && rp && tps && tss) {
		for (size_t i = 0; i < n; i++) {
			rustmq__client__list_offsets_partition_response__init(&rs[i]);
			rustmq__common__topic_partition__init(&tps[i]);
			tps[i].topic = op->v[i].topic;
			tps[i].partition = op->v[i].partition;
			rs[i].topic_partition = &tps[i];
			rs[i].error_code = (Rustmq__Common__ErrorCode)op->v[i].code;
			rs[i].error_message = op->v[i].err;
			rs[i].offset = op->v[i].offset;
			rs[i].leader_epoch = op->v[i].leader_epoch;
			bool timed = op->v[i].spec == RMQ_LOOKUP_TIMESTAMP ||
				     op->v[i].spec == RMQ_LOOKUP_MAX_TIMESTAMP;
			if (timed && op->v[i].code == 0) {
				google__protobuf__timestamp__init(&tss[i]);
				tss[i].seconds = op->v[i].ts_found / 1000;
				tss[i].nanos = (int32_t)(op->v[i].ts_found % 1000) * 1000000;
				rs[i].timestamp = &tss[i];
			}
			rp[i] = &rs[i];
		}
		resp.partitions = rp;
		resp.n_partitions = n;
		rmq_reply_pb(op->call, &resp.base);
	} else {
		rmq_call_finish(op->call, RMQ_GRPC_RESOURCE_EXHAUSTED, "out of memory");
	}
	free(rs);
	free(rp);
	free(tps);
	free(tss);
	lookup_call_free(op);
}

void rmq_list_offsets(struct rmq_call *c, void *msg)
{
	Rustmq__Client__ListOffsetsRequest *req = msg;
	struct lookup_call *op =
		lookup_call_new(c, (void *const *)req->partitions, req->n_partitions,
				offsetof(Rustmq__Client__ListOffsetsPartition, topic_partition), false);
	for (size_t i = 0; op && i < op->n; i++) {
		const Rustmq__Client__ListOffsetsPartition *q = req->partitions[i];
		op->v[i].spec = q->spec;
		op->v[i].ts_ms = q->timestamp ? q->timestamp->seconds * 1000 + q->timestamp->nanos / 1000000
					      : 0;
	}
	rustmq__client__list_offsets_request__free_unpacked(req, NULL);
	if (op)
		lookup_call_start(c, op, lo_done);
}

/* ---- GetLeaderEpoch (OffsetForLeaderEpoch) ---------------------------------------- */

static void le_done(void *arg)
{
	struct lookup_call *op = arg;
	struct rmq_bshard *bs = rmq_bshard_current();
	size_t n = op->n;
	Rustmq__Broker__GetLeaderEpochResponse resp = RUSTMQ__BROKER__GET_LEADER_EPOCH_RESPONSE__INIT;
	Rustmq__Broker__LeaderEpochResult *rs = calloc(n ? n : 1, sizeof(*rs));
	Rustmq__Broker__LeaderEpochResult **rp = calloc(n ? n : 1, sizeof(*rp));
	Rustmq__Common__TopicPartition *tps = calloc(n ? n : 1, sizeof(*tps));
	char(*ids)[RMQ_ID_CHARS] = calloc(n ? n : 1, RMQ_ID_CHARS);
	if (rs && rp && tps && ids) {
		for (size_t i = 0; i < n; i++) {
			struct rmq_lookup *v = &op->v[i];
			rustmq__broker__leader_epoch_result__init(&rs[i]);
			rustmq__common__topic_partition__init(&tps[i]);
			tps[i].topic = v->topic;
			tps[i].partition = v->partition;
			rs[i].topic_partition = &tps[i];
			/* The epoch the caller knows is checked against the
			 * leader's, as Kafka's OffsetForLeaderEpoch does. */
			if (v->code == EC_OK && op->current[i] && op->current[i] != v->leader_epoch) {
				bool older = op->current[i] < v->leader_epoch;
				v->code = older ? EC_STALE_EPOCH : EC_UNKNOWN_LEADER_EPOCH;
				snprintf(v->err, sizeof(v->err), "the leader's epoch is %u, not %u",
					 v->leader_epoch, op->current[i]);
			}
			rs[i].error_code = (Rustmq__Common__ErrorCode)v->code;
			rs[i].error_message = v->err;
			if (v->code == EC_OK) {
				rs[i].leader_epoch = v->epoch_found;
				rs[i].end_offset = v->offset;
			}
			rs[i].current_leader_epoch = v->leader_epoch;
			long k = rmq_meta_find(bs->meta, v->topic);
			if (k >= 0 && v->partition < bs->meta->topics[k].partitions) {
				struct rmq_leader l = rmq_cluster_leader(bs, &bs->meta->topics[k], v->partition);
				memcpy(ids[i], l.id_str, RMQ_ID_CHARS);
				rs[i].leader_id = ids[i];
				if (!rs[i].current_leader_epoch)
					rs[i].current_leader_epoch = l.epoch;
			}
			rp[i] = &rs[i];
		}
		resp.partitions = rp;
		resp.n_partitions = n;
		rmq_reply_pb(op->call, &resp.base);
	} else {
		rmq_call_finish(op->call, RMQ_GRPC_RESOURCE_EXHAUSTED, "out of memory");
	}
	free(rs);
	free(rp);
	free(tps);
	free(ids);
	lookup_call_free(op);
}

void rmq_get_leader_epoch(struct rmq_call *c, void *msg)
{
	Rustmq__Broker__GetLeaderEpochRequest *req = msg;
	struct lookup_call *op =
		lookup_call_new(c, (void *const *)req->partitions, req->n_partitions,
				offsetof(Rustmq__Broker__LeaderEpochQuery, topic_partition), true);
	for (size_t i = 0; op && i < op->n; i++) {
		op->v[i].spec = RMQ_LOOKUP_EPOCH_END;
		op->v[i].epoch = req->partitions[i]->leader_epoch;
		op->current[i] = req->partitions[i]->current_leader_epoch;
	}
	rustmq__broker__get_leader_epoch_request__free_unpacked(req, NULL);
	if (op)
		lookup_call_start(c, op, le_done);
}

/* ---- GetISR ---------------------------------------------------------------------- */

static void isr_done(void *arg)
{
	struct lookup_call *op = arg;
	struct rmq_bshard *bs = rmq_bshard_current();
	size_t n = op->n;
	struct rmq_isr_view *views = op->v[0].isr; /* one array, op->n long */
	Rustmq__Broker__GetISRResponse resp = RUSTMQ__BROKER__GET_ISRRESPONSE__INIT;
	Rustmq__Broker__IsrState *rs = calloc(n + 1, sizeof(*rs));
	Rustmq__Broker__IsrState **rp = calloc(n + 1, sizeof(*rp));
	Rustmq__Common__TopicPartition *tps = calloc(n + 1, sizeof(*tps));
	Rustmq__Broker__ReplicaProgress *pr = calloc((n + 1) * RMQ_REPLICAS_MAX, sizeof(*pr));
	Rustmq__Broker__ReplicaProgress **pp = calloc((n + 1) * RMQ_REPLICAS_MAX, sizeof(*pp));
	char(*ids)[3 * RMQ_REPLICAS_MAX + 1][RMQ_ID_CHARS] = calloc(n + 1, sizeof(*ids));
	char **ptrs = calloc((n + 1) * 2 * RMQ_REPLICAS_MAX, sizeof(*ptrs));
	if (!rs || !rp || !tps || !pr || !pp || !ids || !ptrs) {
		rmq_call_finish(op->call, RMQ_GRPC_RESOURCE_EXHAUSTED, "out of memory");
		goto out;
	}
	for (size_t i = 0; i < n; i++) {
		struct rmq_lookup *v = &op->v[i];
		const struct rmq_isr_view *w = &views[i];
		char(*id)[RMQ_ID_CHARS] = ids[i];
		char **ip = &ptrs[i * 2 * RMQ_REPLICAS_MAX];
		rustmq__broker__isr_state__init(&rs[i]);
		rustmq__common__topic_partition__init(&tps[i]);
		tps[i].topic = v->topic;
		tps[i].partition = v->partition;
		rs[i].topic_partition = &tps[i];
		rs[i].error_code = (Rustmq__Common__ErrorCode)v->code;
		rs[i].error_message = v->err;
		struct rmq_topic *t;
		const struct rmq_passign *pa = rmq_meta_passign(bs->meta, v->topic, v->partition, &t);
		if (pa) {
			snprintf(id[3 * RMQ_REPLICAS_MAX], RMQ_ID_CHARS, "%u", pa->leader);
			rs[i].leader_id = pa->leader ? id[3 * RMQ_REPLICAS_MAX] : "";
			rs[i].leader_epoch = pa->leader_epoch;
		}
		if (v->code != EC_OK || !pa) {
			rp[i] = &rs[i];
			continue;
		}
		rs[i].partition_epoch = pa->part_epoch;
		rs[i].high_watermark = v->hw;
		rs[i].log_end_offset = w->log_end;
		rs[i].isr_ids = ip;
		for (uint32_t k = 0; k < pa->nisr; k++) {
			snprintf(id[k], RMQ_ID_CHARS, "%u", pa->isr[k]);
			rs[i].isr_ids[rs[i].n_isr_ids++] = id[k];
		}
		rs[i].pending_isr_ids = ip + RMQ_REPLICAS_MAX;
		for (uint32_t k = 0; k < w->npend; k++) {
			snprintf(id[RMQ_REPLICAS_MAX + k], RMQ_ID_CHARS, "%u", w->pend[k]);
			rs[i].pending_isr_ids[rs[i].n_pending_isr_ids++] = id[RMQ_REPLICAS_MAX + k];
		}
		rs[i].replicas = &pp[i * RMQ_REPLICAS_MAX];
		for (uint32_t k = 0; k < w->n; k++) {
			Rustmq__Broker__ReplicaProgress *x = &pr[i * RMQ_REPLICAS_MAX + k];
			rustmq__broker__replica_progress__init(x);
			snprintf(id[2 * RMQ_REPLICAS_MAX + k], RMQ_ID_CHARS, "%u", w->r[k].broker);
			x->broker_id = id[2 * RMQ_REPLICAS_MAX + k];
			x->log_end_offset = w->r[k].end;
			x->lag_records = w->log_end > w->r[k].end ? w->log_end - w->r[k].end : 0;
			x->last_caught_up_ms = w->r[k].caught_ms;
			for (uint32_t j = 0; j < pa->nisr; j++)
				x->in_sync |= pa->isr[j] == w->r[k].broker;
			rs[i].replicas[rs[i].n_replicas++] = x;
		}
		rp[i] = &rs[i];
	}
	resp.partitions = rp;
	resp.n_partitions = n;
	rmq_reply_pb(op->call, &resp.base);
out:
	free(rs);
	free(rp);
	free(tps);
	free(pr);
	free(pp);
	free(ids);
	free(ptrs);
	free(views);
	lookup_call_free(op);
}

/* GetISR on a partition's leader (every partition it leads when none is
 * named); a partition led elsewhere answers NOT_LEADER naming the leader. */
void rmq_get_isr(struct rmq_call *c, void *msg)
{
	struct rmq_bshard *bs = rmq_call_app(c);
	Rustmq__Broker__GetISRRequest *req = msg;
	size_t n = req->n_topic_partitions;
	Rustmq__Common__TopicPartition **tps = req->topic_partitions;
	Rustmq__Common__TopicPartition *led = NULL, **ledp = NULL;
	if (n == 0) {
		/* Every partition led here. */
		for (size_t k = 0; k < bs->meta->ntopics; k++)
			for (uint32_t p = 0; bs->meta->topics[k].parts && p < bs->meta->topics[k].partitions; p++)
				n += bs->meta->topics[k].parts[p].leader == bs->b->self;
		led = calloc(n + 1, sizeof(*led));
		ledp = calloc(n + 1, sizeof(*ledp));
		if (!led || !ledp) {
			free(led);
			free(ledp);
			rustmq__broker__get_isrrequest__free_unpacked(req, NULL);
			rmq_call_finish(c, RMQ_GRPC_RESOURCE_EXHAUSTED, "out of memory");
			return;
		}
		size_t i = 0;
		for (size_t k = 0; k < bs->meta->ntopics; k++) {
			for (uint32_t p = 0; bs->meta->topics[k].parts && p < bs->meta->topics[k].partitions; p++) {
				if (bs->meta->topics[k].parts[p].leader != bs->b->self)
					continue;
				rustmq__common__topic_partition__init(&led[i]);
				led[i].topic = bs->meta->topics[k].name;
				led[i].partition = p;
				ledp[i] = &led[i];
				i++;
			}
		}
		tps = ledp;
	}
	/* The entries are TopicPartitions themselves: each is named through a
	 * holder, at offset 0. */
	struct lookup_call *op = NULL;
	struct rmq_isr_view *views = calloc(n + 1, sizeof(*views));
	Rustmq__Common__TopicPartition **holders = calloc(n + 1, sizeof(*holders));
	void **entries = calloc(n + 1, sizeof(*entries));
	if (views && holders && entries) {
		for (size_t i = 0; i < n; i++) {
			holders[i] = tps[i];
			entries[i] = &holders[i];
		}
		op = lookup_call_new(c, entries, n, 0, false);
	} else {
		rmq_call_finish(c, RMQ_GRPC_RESOURCE_EXHAUSTED, "out of memory");
	}
	for (size_t i = 0; op && i < (op->n ? op->n : 1); i++) { /* v[0] even when empty */
		op->v[i].spec = RMQ_LOOKUP_ISR;
		op->v[i].isr = &views[i];
	}
	free(holders);
	free(entries);
	free(led);
	free(ledp);
	rustmq__broker__get_isrrequest__free_unpacked(req, NULL);
	if (op)
		lookup_call_start(c, op, isr_done); /* isr_done frees views (op->v[0].isr) */
	else
		free(views);
}
