/* SPDX-License-Identifier: Apache-2.0 */
#include "storage/tail.h"

#include <criterion/criterion.h>
#include <string.h>

/* Entry i: len bytes of value i, holding offsets [10 i, 10 i + 10). */
static void put(struct rmq_tail *t, unsigned i, size_t len)
{
	static uint8_t b[8192];
	memset(b, (int)i, len);
	rmq_tail_put(t, b, len, 10ULL * i, 10ULL * i + 10);
}

static void expect(const struct rmq_tail *t, uint64_t from, uint64_t limit, size_t max,
		   size_t want_len, uint64_t want_next)
{
	size_t len;
	uint64_t next;
	cr_assert_eq(rmq_tail_span(t, from, limit, max, 1000, &len, &next), 0, "a hit at %lu", from);
	cr_assert_eq(len, want_len, "length from %lu: %zu", from, len);
	cr_assert_eq(next, want_next, "next from %lu: %lu", from, next);
}

/* The held bytes' two pieces, joined, and the hold released. */
static void copy_out(struct rmq_tail *t, uint64_t offset, size_t len, uint8_t *out)
{
	struct iovec iov[2];
	struct rmq_tail_hold h;
	rmq_tail_hold(t, offset, len, iov, &h);
	cr_assert_eq(iov[0].iov_len + iov[1].iov_len, len);
	memcpy(out, iov[0].iov_base, iov[0].iov_len);
	memcpy(out + iov[0].iov_len, iov[1].iov_base, iov[1].iov_len);
	rmq_tail_release(&h);
}

Test(tail, spans_whole_entries_within_limits)
{
	struct rmq_tail *t = rmq_tail_new(4096);
	for (unsigned i = 0; i < 4; i++)
		put(t, i, 100);
	expect(t, 0, 40, 1 << 20, 400, 40);
	expect(t, 10, 40, 250, 200, 30);   /* max_bytes: whole entries only */
	expect(t, 10, 40, 1, 100, 20);     /* at least the first */
	expect(t, 0, 25, 1 << 20, 200, 20); /* limit: entries ending at or below it */
	size_t len;
	uint64_t next;
	cr_assert_eq(rmq_tail_span(t, 0, 40, 1 << 20, 3, &len, &next), 0);
	cr_assert(len == 300 && next == 30, "max_entries: %zu bytes to %lu", len, next);
	cr_assert_eq(rmq_tail_span(t, 5, 40, 100, 1000, &len, &next), -1, "not an entry's base");
	cr_assert_eq(rmq_tail_span(t, 40, 50, 100, 1000, &len, &next), -1, "past the newest");
	cr_assert_eq(rmq_tail_span(t, 30, 35, 100, 1000, &len, &next), -1, "ends past the limit");
	uint8_t out[400];
	copy_out(t, 10, 300, out);
	for (unsigned i = 0; i < 300; i++)
		cr_assert_eq(out[i], 1 + i / 100);
	rmq_tail_free(t);
}

Test(tail, the_oldest_go_and_bytes_wrap)
{
	struct rmq_tail *t = rmq_tail_new(4096);
	for (unsigned i = 0; i < 30; i++)
		put(t, i, 1000); /* 4 fit: 26..29 held, written across the ring's end */
	size_t len;
	uint64_t next;
	cr_assert_eq(rmq_tail_span(t, 250, 300, 1 << 20, 1000, &len, &next), -1, "dropped");
	expect(t, 260, 300, 1 << 20, 4000, 300);
	uint8_t out[4000];
	copy_out(t, 260, 4000, out);
	for (unsigned i = 0; i < 4000; i++)
		cr_assert_eq(out[i], 26 + i / 1000, "byte %u", i);
	rmq_tail_free(t);
}

Test(tail, gaps_and_giants_empty_it)
{
	struct rmq_tail *t = rmq_tail_new(4096);
	size_t len;
	uint64_t next;
	put(t, 0, 100);
	put(t, 1, 100);
	put(t, 3, 100); /* offsets 20..29 missing: only what follows the gap stays */
	cr_assert_eq(rmq_tail_span(t, 0, 100, 1 << 20, 1000, &len, &next), -1);
	expect(t, 30, 100, 1 << 20, 100, 40);
	put(t, 4, 5000); /* larger than the ring */
	cr_assert_eq(rmq_tail_span(t, 30, 100, 1 << 20, 1000, &len, &next), -1);
	cr_assert_eq(rmq_tail_span(t, 40, 100, 1 << 20, 1000, &len, &next), -1);
	put(t, 5, 10);
	expect(t, 50, 100, 1 << 20, 10, 60);
	rmq_tail_clear(t);
	cr_assert_eq(rmq_tail_span(t, 50, 100, 1 << 20, 1000, &len, &next), -1, "cleared");
	rmq_tail_free(t);
}

Test(tail, many_small_entries_are_bounded_by_count)
{
	struct rmq_tail *t = rmq_tail_new(4096); /* 16 entries at most */
	for (unsigned i = 0; i < 40; i++)
		put(t, i, 1);
	size_t len;
	uint64_t next;
	cr_assert_eq(rmq_tail_span(t, 230, 400, 1 << 20, 1000, &len, &next), -1);
	expect(t, 240, 400, 1 << 20, 16, 400);
	rmq_tail_free(t);
}

Test(tail, held_bytes_are_never_overwritten)
{
	struct rmq_tail *t = rmq_tail_new(4096);
	for (unsigned i = 0; i < 4; i++)
		put(t, i, 1000);
	struct iovec iov[2];
	struct rmq_tail_hold h;
	rmq_tail_hold(t, 10, 2000, iov, &h);
	put(t, 4, 1000); /* fits beside the held bytes: entry 0 goes */
	size_t len;
	uint64_t next;
	expect(t, 10, 50, 1 << 20, 4000, 50);
	put(t, 5, 1000); /* would overwrite entry 1, held: not kept, and the tail empties */
	cr_assert_eq(rmq_tail_span(t, 40, 60, 1 << 20, 1000, &len, &next), -1);
	put(t, 6, 100);
	cr_assert_eq(rmq_tail_span(t, 60, 70, 1 << 20, 1000, &len, &next), -1, "still held");
	for (unsigned i = 0; i < 2000; i++)
		cr_assert_eq(((uint8_t *)iov[0].iov_base)[i], 1 + i / 1000, "byte %u", i);
	rmq_tail_release(&h);
	put(t, 7, 100);
	expect(t, 70, 80, 1 << 20, 100, 80); /* released: kept again */
	rmq_tail_free(t);
}

Test(tail, freed_while_held_lives_until_released)
{
	struct rmq_tail *t = rmq_tail_new(4096);
	put(t, 0, 1000);
	struct iovec iov[2];
	struct rmq_tail_hold a, b;
	rmq_tail_hold(t, 0, 1000, iov, &a);
	rmq_tail_hold(t, 0, 1000, iov, &b);
	rmq_tail_free(t); /* the log let it go */
	rmq_tail_release(&a);
	cr_assert_eq(((uint8_t *)iov[0].iov_base)[999], 0, "still there (ASan checks)");
	rmq_tail_release(&b); /* frees it: LeakSanitizer checks */
}
