/* SPDX-License-Identifier: Apache-2.0 */
/* pbatch.c - see pbatch.h for the encoding. */
#include "pbatch.h"

#include "core/crc32c.h"
#include "core/pbwire.h"
#include "storage/codec.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>

#define CLIENT_ID "rmq"

static int reserve(uint8_t **buf, size_t *cap, size_t need)
{
	if (need <= *cap)
		return 0;
	size_t n = *cap ? *cap : 4096;
	while (n < need)
		n *= 2;
	uint8_t *p = realloc(*buf, n);
	if (!p)
		return -ENOMEM;
	*buf = p;
	*cap = n;
	return 0;
}

static size_t put_bytes(uint8_t *dst, uint32_t field, const void *v, size_t len)
{
	size_t n = rmq_pb_put_len(dst, field, len);
	memcpy(dst + n, v, len);
	return n + len;
}

static size_t len_field(size_t len)
{
	return 1 + rmq_pb_varint_len(len) + len;
}

int rmq_pbatch_add(struct rmq_pbatch *b, const void *key, size_t key_len, const void *value,
		   size_t value_len, const struct rmq_header_kv *headers, size_t nheaders,
		   uint64_t timestamp_ms)
{
	uint8_t ts[32];
	size_t tsl = rmq_pb_put_uint(ts, 1, timestamp_ms / 1000);
	if (timestamp_ms % 1000)
		tsl += rmq_pb_put_uint(ts + tsl, 2, (timestamp_ms % 1000) * 1000000);
	size_t rec = (key_len ? len_field(key_len) : 0) + len_field(value_len) + len_field(tsl);
	for (size_t i = 0; i < nheaders; i++)
		rec += len_field(len_field(headers[i].key_len) + len_field(headers[i].value_len));
	size_t elem = len_field(rec);
	if (reserve(&b->raw, &b->raw_cap, b->raw_len + elem) < 0)
		return -ENOMEM;
	uint8_t *p = b->raw + b->raw_len;
	p += rmq_pb_put_len(p, 7, rec);
	if (key_len)
		p += put_bytes(p, 1, key, key_len);
	p += put_bytes(p, 2, value, value_len);
	for (size_t i = 0; i < nheaders; i++) {
		const struct rmq_header_kv *h = &headers[i];
		p += rmq_pb_put_len(p, 3, len_field(h->key_len) + len_field(h->value_len));
		p += put_bytes(p, 1, h->key, h->key_len);
		p += put_bytes(p, 2, h->value, h->value_len);
	}
	p += put_bytes(p, 4, ts, tsl);
	b->raw_len += elem;
	b->records++;
	return 0;
}

long rmq_pbatch_encode(struct rmq_pbatch *b, const char *topic, uint32_t partition, int acks,
		       int compression, const struct rmq_pbatch_seq *seq)
{
	size_t tl = strlen(topic);
	size_t payload_max = compression ? rmq_codec_bound(compression, b->raw_len) : b->raw_len;
	if (compression && payload_max == 0)
		return -EINVAL;
	/* headers: preamble, acks, partitions, topic_partition, batch header */
	size_t head_max = 64 + tl + 5 * RMQ_PB_VARINT_MAX + 64;
	if (reserve(&b->req, &b->req_cap, head_max + payload_max) < 0)
		return -ENOMEM;
	/* The payload goes at the end of the buffer first; its length decides
	 * the length prefixes in front of it. */
	uint8_t *payload = b->req + head_max;
	size_t payload_len;
	if (compression) {
		ssize_t n = rmq_codec_compress(compression, b->raw, b->raw_len, payload, payload_max);
		if (n < 0)
			return (long)n;
		payload_len = (size_t)n;
	} else {
		memcpy(payload, b->raw, b->raw_len);
		payload_len = b->raw_len;
	}
	uint32_t crc = rmq_crc32c(0, payload, payload_len);

	uint8_t bh[64];
	size_t bhl = rmq_pb_put_uint(bh, 1, 2); /* magic */
	if (compression)
		bhl += rmq_pb_put_uint(bh + bhl, 2, (uint64_t)compression);
	bhl += rmq_pb_put_uint(bh + bhl, 8, crc);
	bhl += rmq_pb_put_uint(bh + bhl, 10, b->records);
	if (seq) {
		bhl += rmq_pb_put_uint(bh + bhl, 11, (uint64_t)seq->producer_id);
		if (seq->producer_epoch)
			bhl += rmq_pb_put_uint(bh + bhl, 12, (uint64_t)(uint32_t)seq->producer_epoch);
		if (seq->base_sequence)
			bhl += rmq_pb_put_uint(bh + bhl, 13, (uint64_t)(uint32_t)seq->base_sequence);
	}
	if (compression)
		bhl += rmq_pb_put_len(bh + bhl, 9, payload_len);
	size_t batch_len = bhl + payload_len;
	size_t tpl = len_field(tl) + (partition ? 1 + rmq_pb_varint_len(partition) : 0);
	size_t ppd_len = len_field(tpl) + 1 + rmq_pb_varint_len(batch_len) + batch_len;

	uint8_t out[64];
	size_t n = rmq_pb_put_len(out, 1, 2);
	n += rmq_pb_put_uint(out + n, 1, 1); /* ApiVersion{major: 1} */
	n += put_bytes(out + n, 2, CLIENT_ID, sizeof(CLIENT_ID) - 1);
	if (acks)
		n += rmq_pb_put_uint(out + n, 4, (uint64_t)acks);
	n += rmq_pb_put_len(out + n, 3, ppd_len);
	n += rmq_pb_put_len(out + n, 1, tpl);
	/* The topic may be long: write it straight into the request. */
	size_t lead = n + rmq_pb_put_len(out + n, 1, tl);
	uint8_t tail[64];
	size_t tail_len = 0;
	if (partition)
		tail_len += rmq_pb_put_uint(tail, 2, partition);
	tail_len += rmq_pb_put_len(tail + tail_len, 2, batch_len);
	memcpy(tail + tail_len, bh, bhl);
	tail_len += bhl;
	size_t head_len = lead + tl + tail_len;
	if (head_len > head_max)
		return -EINVAL; /* cannot happen: head_max counts every field */
	uint8_t *start = payload - head_len;
	memcpy(start, out, lead);
	memcpy(start + lead, topic, tl);
	memcpy(start + lead + tl, tail, tail_len);
	b->out = start;
	return (long)(head_len + payload_len);
}

void rmq_pbatch_clear(struct rmq_pbatch *b)
{
	b->raw_len = 0;
	b->records = 0;
}

void rmq_pbatch_free(struct rmq_pbatch *b)
{
	free(b->raw);
	free(b->req);
	memset(b, 0, sizeof(*b));
}
