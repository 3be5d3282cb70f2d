/* SPDX-License-Identifier: Apache-2.0 */
/*
 * fuzz_follow - a follower's reading of ReplicateDataRequest
 * (src/broker/follow.c rmq_follow_parse): the bytes of one request, as a
 * leader sends them, or as anyone who reaches the port does (replication
 * has no authentication before issue 17's).
 *
 * Input: one byte of max_batches (0..255), then the request.
 *
 * Besides "no crash, no sanitizer report", each input checks properties:
 * - a request that parses holds at most max_batches batches, each one's
 *   records bytes inside the input (ASan sees the input's exact size);
 * - its batches, parsed from `batches` (5) or from `stored` (15), are the
 *   ones a request with every batch moved to the other field gives: the
 *   two spellings of a leader's batches mean the same;
 * - a refusal of too many batches (RMQ_ETOOBIG) still names the request's
 *   correlation id, which the leader waits on.
 *
 * Reproduce: build/fuzz/tests/fuzz/fuzz_follow <input file>
 */
#include "broker/follow.h"
#include "core/error.h"
#include "core/pbwire.h"
#include "storage/batch.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static void fail(const char *what)
{
	fprintf(stderr, "fuzz_follow: %s\n", what);
	abort();
}

/* The request again with every batch moved into one `stored` field at the
 * end (each given the stored key), or NULL when it has none or a batch
 * element is not a length-delimited field 5. */
static uint8_t *as_stored(const uint8_t *msg, size_t len, size_t *out_len)
{
	uint8_t *out = malloc(2 * len + 16), *stored = malloc(len + 1);
	size_t n = 0, sn = 0;
	bool any = false;
	for (const uint8_t *q = msg; out && stored && q < msg + len;) {
		uint32_t field, wire;
		uint64_t num;
		const uint8_t *val;
		size_t vlen, k = rmq_pb_next(q, msg + len, &field, &wire, &num, &val, &vlen);
		if (k == 0 || field == 15)
			break;
		if (field == 5 && wire == RMQ_PB_LEN) {
			memcpy(stored + sn, q, k);
			stored[sn] = RMQ_BATCH_KEY; /* a one-byte key, as field 5's */
			sn += k;
			any = true;
		} else {
			memcpy(out + n, q, k);
			n += k;
		}
		q += k;
		if (q == msg + len && any) {
			n += rmq_pb_put_len(out + n, 15, sn);
			memcpy(out + n, stored, sn);
			*out_len = n + sn;
			free(stored);
			return out;
		}
	}
	free(out);
	free(stored);
	return NULL;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	if (size < 1)
		return 0;
	const size_t max = data[0];
	/* A copy of the exact size: reads past the request are ASan's. */
	const size_t len = size - 1;
	uint8_t *msg = malloc(len ? len : 1);
	memcpy(msg, data + 1, len);

	struct rmq_follow_msg m;
	char why[200];
	int rc = rmq_follow_parse(msg, len, max, &m, why, sizeof(why));
	if (rc == 0) {
		if (m.req.n > max)
			fail("more batches than max_batches");
		for (size_t i = 0; i < m.req.n; i++)
			if (m.records[i].p < msg || m.records[i].p + m.records[i].len > msg + len)
				fail("records bytes outside the request");
		size_t alt_len;
		uint8_t *alt = as_stored(msg, len, &alt_len);
		struct rmq_follow_msg m2;
		if (alt && rmq_follow_parse(alt, alt_len, max, &m2, why, sizeof(why)) == 0) {
			if (m2.req.n != m.req.n)
				fail("stored batches counted differently from field 5's");
			for (size_t i = 0; i < m.req.n; i++) {
				const struct rmq_batch_hdr *a = &m.req.hdrs[i], *b = &m2.req.hdrs[i];
				if (a->base_offset != b->base_offset || a->record_count != b->record_count ||
				    a->leader_epoch != b->leader_epoch || a->crc32 != b->crc32 ||
				    a->producer_id != b->producer_id ||
				    m2.records[i].len != m.records[i].len ||
				    memcmp(m2.records[i].p, m.records[i].p, m.records[i].len) != 0)
					fail("a stored batch reads differently from field 5's");
			}
			rmq_follow_msg_free(&m2);
		} else if (alt && m.req.n > 0) {
			fail("field 5's batches parse, the same as stored ones do not");
		}
		free(alt);
		rmq_follow_msg_free(&m);
	} else if (rc != RMQ_EPROTO && rc != RMQ_ECORRUPT && rc != RMQ_ETOOBIG && rc != -ENOMEM) {
		fail("an error rmq_follow_parse does not document");
	}
	free(msg);
	return 0;
}
