/* SPDX-License-Identifier: Apache-2.0 */
/*
 * query.c - a topic's partition count, offsets and partition lines (see
 * query.h), for the commands above it.
 */
#include "query.h"

#include "cli.h"
#include "route.h"

#include "client/consumer.pb-c.h"
#include "client/metadata.pb-c.h"

#include <inttypes.h>
#include <stdlib.h>

uint32_t topic_partitions(const char *topic)
{
	for (int tries = 0;; tries++) {
		Rustmq__Client__GetTopicMetadataRequest req = RUSTMQ__CLIENT__GET_TOPIC_METADATA_REQUEST__INIT;
		char *names[1] = {(char *)topic};
		req.version = &api_v1;
		req.client_id = "rmq";
		req.n_topics = 1;
		req.topics = names;
		Rustmq__Client__GetTopicMetadataResponse *r =
			PB_CALL("GetTopicMetadata", "/rustmq.client.MetadataService/GetTopicMetadata",
				&req, Rustmq__Client__GetTopicMetadataResponse,
				rustmq__client__get_topic_metadata_response__descriptor);
		int code = r->error_code;
		uint32_t n = 0;
		if (code == 0 && r->n_topics == 0)
			code = EC(TOPIC_NOT_FOUND);
		if (code == 0) {
			code = r->topics[0]->error_code;
			n = (uint32_t)r->topics[0]->n_partitions;
		}
		char msg[256];
		snprintf(msg, sizeof(msg), "%s", r->error_message);
		protobuf_c_message_free_unpacked(&r->base, NULL);
		if (code != 0)
			die_code("GetTopicMetadata", topic, code, msg);
		if (n > 0)
			return n;
		if (tries >= 50)
			die("topic '%s' has no partitions yet (retry in a moment)", topic);
		sleep_ns(100 * MS);
	}
}

void topic_check_partition(const char *topic, uint64_t partition, uint32_t total)
{
	if (partition != PARTITION_ANY && partition >= total)
		usage_error("--partition %" PRIu64 ": topic '%s' has partitions 0..%" PRIu32, partition,
			    topic, total - 1);
}

/* One ListOffsets of the parts marked in want, all led by the broker of
 * rpc; clears the mark of each answered (need_latest: a TIMESTAMP lookup
 * that found nothing yet); one whose leader moved stays marked. */
static void list_offsets_on(struct rmq_rpc *rpc, const char *topic, struct cpart *parts,
			    bool *want, uint32_t nparts, int spec, uint64_t at_ms, bool *need_latest,
			    int *tries)
{
	uint32_t n = 0;
	for (uint32_t i = 0; i < nparts; i++)
		n += want[i];
	Rustmq__Client__ListOffsetsPartition *lp = xmalloc(sizeof(*lp) * n);
	Rustmq__Client__ListOffsetsPartition **lpp = xmalloc(sizeof(*lpp) * n);
	Rustmq__Common__TopicPartition *tps = xmalloc(sizeof(*tps) * n);
	Google__Protobuf__Timestamp ts = pb_timestamp(at_ms);
	uint32_t k = 0;
	for (uint32_t i = 0; i < nparts; i++) {
		if (!want[i])
			continue;
		rustmq__client__list_offsets_partition__init(&lp[k]);
		rustmq__common__topic_partition__init(&tps[k]);
		tps[k].topic = (char *)topic;
		tps[k].partition = parts[i].partition;
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
	Rustmq__Client__ListOffsetsResponse *r = (Rustmq__Client__ListOffsetsResponse *)pb_call_on(
		rpc, "ListOffsets", "/rustmq.client.ConsumerService/ListOffsets", &req.base,
		&rustmq__client__list_offsets_response__descriptor, CALL_TIMEOUT_NS);
	if (r->error_code)
		die_code("ListOffsets", topic, r->error_code, r->error_message);
	for (size_t i = 0; i < r->n_partitions; i++) {
		const Rustmq__Client__ListOffsetsPartitionResponse *pr = r->partitions[i];
		uint32_t p = pr->topic_partition ? pr->topic_partition->partition : 0;
		for (uint32_t j = 0; j < nparts; j++) {
			if (parts[j].partition != p || !want[j])
				continue;
			if (pr->error_code == EC(OFFSET_NOT_AVAILABLE) &&
			    spec == RUSTMQ__CLIENT__OFFSET_SPEC__OFFSET_SPEC_TIMESTAMP) {
				*need_latest = true; /* nothing at or after the time yet */
				want[j] = false;
			} else if (pr->error_code && route_retry(topic, p, pr->error_code, "", tries)) {
				continue; /* asked again where it moved */
			} else if (pr->error_code) {
				die_code("ListOffsets", topic, pr->error_code, pr->error_message);
			} else {
				parts[j].offset = pr->offset;
				want[j] = false;
			}
		}
	}
	protobuf_c_message_free_unpacked(&r->base, NULL);
	free(lp);
	free(lpp);
	free(tps);
}

void topic_list_offsets(const char *topic, struct cpart *parts, uint32_t nparts, int spec,
			uint64_t at_ms)
{
	bool *want = xmalloc(sizeof(*want) * (nparts ? nparts : 1));
	bool need_latest = false;
	int tries = 0;
	for (uint32_t i = 0; i < nparts; i++)
		want[i] = parts[i].offset == UINT64_MAX;
	/* One call per broker leading some of them. */
	for (;;) {
		uint32_t first = 0;
		while (first < nparts && !want[first])
			first++;
		if (first == nparts)
			break;
		struct rmq_rpc *rpc = route_rpc(topic, parts[first].partition);
		bool *mine = xmalloc(sizeof(*mine) * nparts);
		for (uint32_t i = 0; i < nparts; i++) {
			mine[i] = want[i] && route_rpc(topic, parts[i].partition) == rpc;
			want[i] &= !mine[i];
		}
		list_offsets_on(rpc, topic, parts, mine, nparts, spec, at_ms, &need_latest, &tries);
		for (uint32_t i = 0; i < nparts; i++)
			want[i] |= mine[i]; /* still wanted: its leader moved */
		free(mine);
	}
	free(want);
	/* Those partitions start at LATEST; the others keep theirs. */
	if (need_latest)
		topic_list_offsets(topic, parts, nparts, RUSTMQ__CLIENT__OFFSET_SPEC__OFFSET_SPEC_LATEST,
				   0);
}

void topic_bounds(const char *topic, uint32_t n, uint64_t **start, uint64_t **end)
{
	if (n == 0)
		return;
	struct cpart *parts = xmalloc(sizeof(*parts) * n);
	*start = xmalloc(sizeof(**start) * n);
	*end = xmalloc(sizeof(**end) * n);
	for (int round = 0; round < 2; round++) {
		for (uint32_t i = 0; i < n; i++)
			parts[i] = (struct cpart){i, UINT64_MAX};
		topic_list_offsets(topic, parts, n,
				   round == 0 ? RUSTMQ__CLIENT__OFFSET_SPEC__OFFSET_SPEC_EARLIEST
					      : RUSTMQ__CLIENT__OFFSET_SPEC__OFFSET_SPEC_LATEST, 0);
		for (uint32_t i = 0; i < n; i++)
			(round == 0 ? *start : *end)[i] = parts[i].offset;
	}
	free(parts);
}

void topic_print_partition(const Rustmq__Common__PartitionMetadata *p, const uint64_t *start,
			   const uint64_t *end)
{
	uint32_t i = p->topic_partition ? p->topic_partition->partition : 0;
	printf("  partition %" PRIu32 "\tleader %s\tshard %" PRIu32 "\tepoch %" PRIu32
	       "\toffsets %" PRIu64 "..%" PRIu64 "\n",
	       i, p->leader_id && *p->leader_id ? p->leader_id : "-", p->shard, p->leader_epoch,
	       start ? start[i] : p->log_start_offset, end ? end[i] : p->high_watermark);
}
