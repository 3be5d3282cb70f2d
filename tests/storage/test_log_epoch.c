/* SPDX-License-Identifier: Apache-2.0 */
/*
 * test_log_epoch.c - leader epochs in a log (storage/log_epoch.c) and a
 * follower's replica appends (rmq_log_append with a->replica), against a
 * model of the batches appended.
 *
 * The tests' batch sequence (su_gen_batch) gives batch i leader epoch
 * i / 50, so 300 batches hold epochs 0..5 over a dozen 64 KiB segments;
 * where each epoch starts is read from the model.
 */
#include "storage_util.h"

#include "core/error.h"
#include "storage/log.h"

#include <criterion/criterion.h>
#include <inttypes.h>
#include <stdlib.h>
#include <string.h>

#define VMAX 2000
#define BATCHES 300

static struct su_env env, fol;

static void setup(void)
{
	su_env_init(&env);
	su_env_init(&fol);
}

static void teardown(void)
{
	su_env_fini(&fol);
	su_env_fini(&env);
}

TestSuite(log_epoch, .init = setup, .fini = teardown, .timeout = 120);

static void open_log(struct su_env *e)
{
	int rc = su_open(e);
	cr_assert_eq(rc, 0, "open: %s", rmq_errname(rc));
}

/* The model's answer: the first offset of a batch of an epoch above
 * `epoch` at or after the model's batch `from` (the end when none), and
 * the largest epoch <= `epoch` from there on (-1 when none). */
static void model_end(const struct su_batches *m, size_t from, uint32_t epoch, int64_t *floor,
		      uint64_t *end)
{
	*floor = -1;
	*end = m->n ? rmq_batch_last_offset(&m->v[m->n - 1].hdr) + 1 : 0;
	for (size_t i = from; i < m->n; i++) {
		if (m->v[i].hdr.leader_epoch > epoch) {
			*end = m->v[i].hdr.base_offset;
			return;
		}
		*floor = m->v[i].hdr.leader_epoch;
	}
}

/* Asks the log about every epoch up to two past the last and compares
 * with the model's batches from index `from` (the log start's). */
static void check_epochs(struct su_env *e, const struct su_batches *m, size_t from)
{
	uint32_t last = 0, top = m->n ? m->v[m->n - 1].hdr.leader_epoch : 0;
	cr_assert_eq(rmq_log_last_epoch(e->log, &last), 0);
	cr_assert_eq(last, m->n > from ? top : 0, "last epoch");
	for (uint32_t epoch = 0; epoch <= top + 2; epoch++) {
		int64_t want_floor;
		uint64_t want_end, end = UINT64_MAX;
		uint32_t floor = UINT32_MAX;
		model_end(m, from, epoch, &want_floor, &want_end);
		int rc = rmq_log_epoch_end(e->log, epoch, &floor, &end);
		if (want_floor < 0) {
			cr_assert_eq(rc, RMQ_ENOTFOUND, "epoch %u: %s", epoch, rmq_errname(rc));
			cr_assert_eq(floor, 0);
		} else {
			cr_assert_eq(rc, 0, "epoch %u: %s", epoch, rmq_errname(rc));
			cr_assert_eq(floor, (uint32_t)want_floor, "epoch %u: floor", epoch);
		}
		cr_assert_eq(end, want_end, "epoch %u: end %" PRIu64 ", want %" PRIu64, epoch, end,
			     want_end);
	}
	/* The epoch at every batch's first and last offset, with its range. */
	uint64_t start = rmq_log_start_offset(e->log);
	for (size_t i = from; i < m->n; i++) {
		const struct rmq_batch_hdr *h = &m->v[i].hdr;
		size_t a = i, b = i;
		while (a > from && m->v[a - 1].hdr.leader_epoch == h->leader_epoch)
			a--;
		while (b < m->n && m->v[b].hdr.leader_epoch == h->leader_epoch)
			b++;
		uint64_t want_start = m->v[a].hdr.base_offset < start ? start : m->v[a].hdr.base_offset;
		uint64_t want_end = b < m->n ? m->v[b].hdr.base_offset : rmq_batch_last_offset(&m->v[m->n - 1].hdr) + 1;
		uint64_t offs[2] = {h->base_offset, rmq_batch_last_offset(h)};
		for (int k = 0; k < 2; k++) {
			uint32_t ep = UINT32_MAX;
			uint64_t s0 = 0, e0 = 0;
			if (offs[k] < start)
				continue;
			int rc = rmq_log_epoch_at(e->log, offs[k], &ep, &s0, &e0);
			cr_assert_eq(rc, 0, "offset %" PRIu64 ": %s", offs[k], rmq_errname(rc));
			cr_assert_eq(ep, h->leader_epoch, "offset %" PRIu64 ": epoch", offs[k]);
			cr_assert_eq(s0, want_start, "offset %" PRIu64 ": start %" PRIu64 ", want %" PRIu64,
				     offs[k], s0, want_start);
			cr_assert_eq(e0, want_end, "offset %" PRIu64 ": end", offs[k]);
		}
	}
	uint32_t ep;
	uint64_t s0, e0;
	cr_assert_eq(rmq_log_epoch_at(e->log, rmq_log_end_offset(e->log), &ep, &s0, &e0), RMQ_ERANGE);
}

static void drop_after(struct su_batches *m, uint64_t end)
{
	size_t keep = 0;
	while (keep < m->n && m->v[keep].hdr.base_offset < end)
		keep++;
	for (size_t i = keep; i < m->n; i++)
		free(m->v[i].records);
	m->n = keep;
}

Test(log_epoch, empty_log)
{
	struct su_batches m = {0};
	open_log(&env);
	check_epochs(&env, &m, 0);
	su_reopen(&env);
	check_epochs(&env, &m, 0);
}

Test(log_epoch, from_appends_and_after_reopen)
{
	struct su_batches m = {0};
	open_log(&env);
	su_append_seq(&env, 0, BATCHES, VMAX, true, 10, &m);
	check_epochs(&env, &m, 0);
	/* The reopened log knows only its newest segment's epochs until a
	 * question reaches below it. */
	su_reopen(&env);
	check_epochs(&env, &m, 0);
	su_batches_free(&m);
}

/* A newest segment with no batch (just rolled): its last epoch is the
 * previous segment's. */
Test(log_epoch, empty_newest_segment)
{
	struct su_batches m = {0};
	open_log(&env);
	su_append_seq(&env, 0, 60, VMAX, false, 10, &m);
	uint64_t base = rmq_log_end_offset(env.log);
	cr_assert_eq(rmq_log_truncate(env.log, base), 0);
	uint64_t bases[64];
	size_t n = su_list_segments(env.dir, bases, 64);
	cr_assert_geq(n, 2);
	/* Cut back to the start of the newest segment: it stays, empty. */
	su_wait_idle(&env);
	cr_assert_eq(rmq_log_truncate(env.log, bases[n - 1]), 0);
	drop_after(&m, bases[n - 1]);
	su_reopen(&env);
	check_epochs(&env, &m, 0);
	su_batches_free(&m);
}

Test(log_epoch, truncation)
{
	struct su_batches m = {0};
	open_log(&env);
	su_append_seq(&env, 0, BATCHES, VMAX, true, 10, &m);
	su_wait_idle(&env);
	/* Into the middle of epoch 4 (batches 200..249), in the newest
	 * segments: the list is cut. */
	uint64_t cut = m.v[225].hdr.base_offset;
	cr_assert_eq(rmq_log_truncate(env.log, cut), 0);
	drop_after(&m, cut);
	check_epochs(&env, &m, 0);
	/* Appends go on in a later epoch. */
	su_append_seq(&env, 400, 10, VMAX, false, 10, &m);
	check_epochs(&env, &m, 0);
	/* Into epoch 1, segments back: the list is made anew there. */
	su_wait_idle(&env);
	cut = m.v[70].hdr.base_offset;
	cr_assert_eq(rmq_log_truncate(env.log, cut), 0);
	drop_after(&m, cut);
	check_epochs(&env, &m, 0);
	su_reopen(&env);
	check_epochs(&env, &m, 0);
	su_batches_free(&m);
}

Test(log_epoch, retention_moves_the_start)
{
	struct su_batches m = {0};
	open_log(&env);
	su_append_seq(&env, 0, BATCHES, VMAX, true, 10, &m);
	su_wait_idle(&env);
	check_epochs(&env, &m, 0); /* every segment walked once */
	uint64_t start = m.v[120].hdr.base_offset;
	cr_assert_gt(rmq_log_delete_before(env.log, start), 0);
	start = rmq_log_start_offset(env.log);
	size_t from = 0;
	while (m.v[from].hdr.base_offset < start)
		from++;
	check_epochs(&env, &m, from);
	su_reopen(&env);
	check_epochs(&env, &m, from);
	su_batches_free(&m);
}

/* Every byte of a log, from its start to its high watermark. */
static size_t log_bytes(struct su_env *e, uint8_t **out)
{
	size_t len = 0, cap = 1 << 20;
	uint8_t *buf = malloc(cap);
	uint64_t off = rmq_log_start_offset(e->log);
	cr_assert_not_null(buf);
	while (off < rmq_log_high_watermark(e->log)) {
		struct rmq_log_read r;
		cr_assert_eq(rmq_log_read(e->log, off, 1 << 20, &r), 0);
		for (unsigned i = 0; i < r.nslices; i++) {
			while (len + r.slices[i].len > cap)
				cr_assert_not_null(buf = realloc(buf, cap *= 2));
			memcpy(buf + len, r.slices[i].data, r.slices[i].len);
			len += r.slices[i].len;
		}
		off = r.next_offset;
		rmq_log_read_done(e->log, &r);
	}
	*out = buf;
	return len;
}

/* A follower appending its leader's batches as replicas holds the same
 * bytes at the same offsets, and refuses what would not continue its log
 * as the leader's does. */
Test(log_epoch, replica_appends_copy_the_leader)
{
	struct su_batches m = {0}, got = {0};
	open_log(&env);
	open_log(&fol);
	su_append_seq(&env, 0, 120, VMAX, true, 10, &m);
	su_wait_idle(&env);
	cr_assert_eq(su_collect(env.log, 0, 1 << 20, &got), 0);
	cr_assert_eq(got.n, m.n);

	/* The follower's clock is far from the leader's: nothing of it may
	 * show in the copy. */
	su_clock_ms += 3600 * 1000;
	for (size_t i = 0; i < got.n; i++) {
		struct rmq_batch_hdr h = got.v[i].hdr;
		if (i == 60) {
			/* Refused, with nothing appended: */
			struct rmq_batch_hdr bad = h;
			bad.base_offset++;
			cr_assert_eq(su_append_as(&fol, &bad, got.v[i].records, got.v[i].records_len, true),
				     RMQ_ERANGE, "a gap");
			bad = h;
			bad.crc32 ^= 1;
			cr_assert_eq(su_append_as(&fol, &bad, got.v[i].records, got.v[i].records_len, true),
				     RMQ_ECRC, "a wrong CRC");
			bad.crc32 = 0;
			cr_assert_eq(su_append_as(&fol, &bad, got.v[i].records, got.v[i].records_len, true),
				     RMQ_ECRC, "no CRC");
			bad = h;
			bad.leader_epoch = got.v[i - 1].hdr.leader_epoch - 1;
			cr_assert_eq(su_append_as(&fol, &bad, got.v[i].records, got.v[i].records_len, true),
				     RMQ_EPROTO, "an epoch below the log's last");
		}
		int rc = su_append_as(&fol, &h, got.v[i].records, got.v[i].records_len, true);
		cr_assert_eq(rc, 0, "replica append %zu: %s", i, rmq_errname(rc));
		cr_assert_eq(h.base_offset, got.v[i].hdr.base_offset);
	}
	uint8_t *a, *b;
	size_t na = log_bytes(&env, &a), nb = log_bytes(&fol, &b);
	cr_assert_eq(na, nb, "the same length: %zu and %zu", na, nb);
	cr_assert(memcmp(a, b, na) == 0, "the same bytes");
	free(a);
	free(b);
	check_epochs(&fol, &m, 0);
	su_reopen(&fol);
	check_epochs(&fol, &m, 0);
	su_batches_free(&got);
	su_batches_free(&m);
}

/* After a reopen the list covers the newest segment only: the epoch at an
 * offset deep in the log, asked first, walks back to where it starts. */
Test(log_epoch, epoch_at_first_after_reopen)
{
	struct su_batches m = {0};
	open_log(&env);
	su_append_seq(&env, 0, BATCHES, VMAX, true, 10, &m);
	su_reopen(&env);
	uint32_t ep;
	uint64_t s0, e0;
	cr_assert_eq(rmq_log_epoch_at(env.log, m.v[75].hdr.base_offset, &ep, &s0, &e0), 0);
	cr_assert_eq(ep, 1);
	cr_assert_eq(s0, m.v[50].hdr.base_offset);
	cr_assert_eq(e0, m.v[100].hdr.base_offset);
	su_reopen(&env);
	/* The newest epoch, which began segments before the newest. */
	cr_assert_eq(rmq_log_epoch_at(env.log, m.v[BATCHES - 1].hdr.base_offset, &ep, &s0, &e0), 0);
	cr_assert_eq(ep, 5);
	cr_assert_eq(s0, m.v[250].hdr.base_offset);
	su_batches_free(&m);
}
