/* SPDX-License-Identifier: Apache-2.0 */
/*
 * test_ctrl_store.c - the controller's durable Raft state (ctrl_store.h):
 * what a Ready wrote is what the next open finds, through cuts, snapshots,
 * installs, torn hard-state slots and a crash between an install's rename
 * and its cut.
 */
#include "broker/ctrl_store.h"

#include "core/error.h"
#include "core/io.h"
#include "core/log.h"

#include <criterion/criterion.h>
#include <errno.h>
#include <fcntl.h>
#include <ftw.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

static struct rmq_io *io;
static char dir[128];

static int rm_entry(const char *path, const struct stat *st, int flag, struct FTW *ftw)
{
	(void)st;
	(void)flag;
	(void)ftw;
	return remove(path);
}

static void setup(void)
{
	rmq_log_set_level(RMQ_LOG_OFF);
	struct rmq_io_config ic = {.entries = 64, .fixed_buffers = 4};
	cr_assert_eq(rmq_io_create(&ic, &io), 0);
	snprintf(dir, sizeof(dir), "/tmp/rmq-cstore-XXXXXX");
	cr_assert_not_null(mkdtemp(dir));
}

static void teardown(void)
{
	nftw(dir, rm_entry, 16, FTW_DEPTH | FTW_PHYS);
	rmq_io_destroy(io);
}

TestSuite(cstore, .init = setup, .fini = teardown, .timeout = 60);

static struct rmq_cstore *open_store(struct rmq_cstore_state *st)
{
	struct rmq_cstore *cs = NULL;
	int rc = rmq_cstore_open(io, dir, &cs, st);
	cr_assert_eq(rc, 0, "open: %s", rmq_strerror(rc));
	return cs;
}

struct wait {
	bool done;
	int res;
};

static void written(void *arg, int res)
{
	struct wait *w = arg;
	w->done = true;
	w->res = res;
}

/* Writes rd and runs the ring until it is durable. */
static void write_ready(struct rmq_cstore *cs, const struct rmq_raft_ready *rd)
{
	struct wait w = {0};
	int rc = rmq_cstore_write(cs, rd, written, &w);
	cr_assert_eq(rc, 0, "write: %s", rmq_strerror(rc));
	cr_assert_not(w.done, "done never runs inside the call");
	for (int i = 0; i < 5000 && !w.done; i++)
		rmq_io_wait(io, 1000ULL * 1000);
	cr_assert(w.done, "the write completed");
	cr_assert_eq(w.res, 0, "write: %s", rmq_strerror(w.res));
}

/* n entries from index `first`, of term, each holding "e<index>". */
static struct rmq_raft_entry *entries(uint64_t first, size_t n, uint64_t term)
{
	struct rmq_raft_entry *e = calloc(n, sizeof(*e));
	for (size_t i = 0; i < n; i++) {
		char *d = malloc(16);
		int len = snprintf(d, 16, "e%llu", (unsigned long long)(first + i));
		e[i] = (struct rmq_raft_entry){.term = term, .index = first + i,
					       .type = RMQ_RAFT_ENTRY_NORMAL, .len = (uint32_t)len,
					       .data = (uint8_t *)d};
	}
	return e;
}

static void entries_free(struct rmq_raft_entry *e, size_t n)
{
	for (size_t i = 0; i < n; i++)
		free(e[i].data);
	free(e);
}

static void put_entries(struct rmq_cstore *cs, uint64_t first, size_t n, uint64_t term)
{
	struct rmq_raft_entry *e = entries(first, n, term);
	struct rmq_raft_ready rd = {.entries = e, .n_entries = n};
	write_ready(cs, &rd);
	entries_free(e, n);
}

static void put_hs(struct rmq_cstore *cs, uint64_t term, uint32_t vote, uint64_t commit)
{
	struct rmq_raft_ready rd = {.hs_changed = true, .hs = {term, vote, commit}};
	write_ready(cs, &rd);
}

/* The state holds entries first..last, entry i of term terms(i). */
static void check_entries(const struct rmq_cstore_state *st, uint64_t first, uint64_t last,
			  uint64_t term_below, uint64_t split, uint64_t term_from)
{
	cr_assert_eq(st->n_entries, last - first + 1, "%zu entries", st->n_entries);
	for (size_t i = 0; i < st->n_entries; i++) {
		const struct rmq_raft_entry *e = &st->entries[i];
		char want[16];
		snprintf(want, sizeof(want), "e%llu", (unsigned long long)(first + i));
		cr_assert_eq(e->index, first + i);
		cr_assert_eq(e->term, e->index < split ? term_below : term_from, "entry %llu",
			     (unsigned long long)e->index);
		cr_assert_eq(e->len, strlen(want));
		cr_assert_eq(memcmp(e->data, want, e->len), 0);
	}
}

Test(cstore, entries_and_hard_state_survive_a_reopen)
{
	struct rmq_cstore_state st;
	struct rmq_cstore *cs = open_store(&st);
	cr_assert_eq(st.n_entries, 0);
	cr_assert_eq(st.hs.term, 0);
	cr_assert_eq(st.snap_index, 0);
	put_hs(cs, 1, 1, 0);
	put_entries(cs, 1, 5, 1);
	put_hs(cs, 2, 3, 4);
	rmq_cstore_close(cs);
	rmq_cstore_state_free(&st);

	cs = open_store(&st);
	cr_assert_eq(st.hs.term, 2);
	cr_assert_eq(st.hs.vote, 3);
	cr_assert_eq(st.hs.commit, 4);
	check_entries(&st, 1, 5, 1, 99, 1);
	rmq_cstore_close(cs);
	rmq_cstore_state_free(&st);
}

Test(cstore, a_conflicting_tail_is_replaced)
{
	struct rmq_cstore_state st;
	struct rmq_cstore *cs = open_store(&st);
	put_entries(cs, 1, 5, 1);
	put_entries(cs, 4, 3, 2); /* 4..6 of term 2 replace 4, 5 */
	put_entries(cs, 7, 1, 2);
	struct rmq_raft_entry *gap = entries(9, 1, 2);
	struct rmq_raft_ready rd = {.entries = gap, .n_entries = 1};
	struct wait w = {0};
	cr_assert_eq(rmq_cstore_write(cs, &rd, written, &w), RMQ_ERANGE, "a gap");
	entries_free(gap, 1);
	rmq_cstore_close(cs);
	rmq_cstore_state_free(&st);

	cs = open_store(&st);
	check_entries(&st, 1, 7, 1, 4, 2);
	rmq_cstore_close(cs);
	rmq_cstore_state_free(&st);
}

/* The newest slot torn or damaged: the other one is found; both: refused. */
Test(cstore, a_torn_hard_state_slot_falls_back_to_the_other)
{
	struct rmq_cstore_state st;
	struct rmq_cstore *cs = open_store(&st);
	put_hs(cs, 1, 1, 0);
	put_hs(cs, 2, 2, 0);
	put_hs(cs, 3, 3, 0); /* sequence 3: slot 1; sequence 2 in slot 0 */
	rmq_cstore_close(cs);
	rmq_cstore_state_free(&st);
	cs = open_store(&st);
	cr_assert_eq(st.hs.term, 3, "the newest slot, whichever it is");
	rmq_cstore_close(cs);
	rmq_cstore_state_free(&st);

	char path[256];
	snprintf(path, sizeof(path), "%s/hardstate", dir);
	int fd = open(path, O_RDWR);
	cr_assert_geq(fd, 0);
	uint8_t junk = 0x77;
	cr_assert_eq(pwrite(fd, &junk, 1, 4096 + 20), 1); /* inside slot 1's term */
	cs = open_store(&st);
	cr_assert_eq(st.hs.term, 2, "the older slot");
	cr_assert_eq(st.hs.vote, 2);
	rmq_cstore_close(cs);
	rmq_cstore_state_free(&st);

	cr_assert_eq(pwrite(fd, &junk, 1, 20), 1);
	close(fd);
	cr_assert_eq(rmq_cstore_open(io, dir, &cs, &st), RMQ_ECORRUPT, "no valid slot at all");
}

Test(cstore, a_snapshot_and_compaction)
{
	struct rmq_cstore_state st;
	struct rmq_cstore *cs = open_store(&st);
	put_entries(cs, 1, 6, 1);
	struct rmq_raft_conf conf = {.n = 1, .servers = {{.id = 1, .role = RMQ_RAFT_VOTER}}};
	snprintf(conf.servers[0].addr, sizeof(conf.servers[0].addr), "127.0.0.1:9092");
	cr_assert_eq(rmq_cstore_snapshot_save(dir, false, 3, 1, &conf, "state", 5), 0);
	rmq_cstore_compacted(cs, 3);
	put_entries(cs, 7, 1, 1);
	rmq_cstore_close(cs);
	rmq_cstore_state_free(&st);

	cs = open_store(&st);
	cr_assert_eq(st.snap_index, 3);
	cr_assert_eq(st.snap_term, 1);
	cr_assert_eq(st.snap_len, 5);
	cr_assert_eq(memcmp(st.snap_data, "state", 5), 0);
	cr_assert_eq(memcmp(&st.snap_conf, &conf, sizeof(conf)), 0);
	check_entries(&st, 4, 7, 1, 99, 1);
	rmq_cstore_close(cs);
	rmq_cstore_state_free(&st);

	/* A damaged snapshot file is refused, not skipped. */
	char path[256];
	snprintf(path, sizeof(path), "%s/snapshot", dir);
	int fd = open(path, O_RDWR);
	uint8_t junk = 0x55;
	cr_assert_eq(pwrite(fd, &junk, 1, 40), 1);
	close(fd);
	cr_assert_eq(rmq_cstore_open(io, dir, &cs, &st), RMQ_ECORRUPT);
}

/* A leader's snapshot past the log: the old entries go, the next follow. */
Test(cstore, an_install_that_does_not_keep_the_log)
{
	struct rmq_cstore_state st;
	struct rmq_cstore *cs = open_store(&st);
	put_entries(cs, 1, 5, 1);
	struct rmq_raft_conf conf = {0};
	cr_assert_eq(rmq_cstore_snapshot_save(dir, true, 10, 3, &conf, "ten", 3), 0);
	struct rmq_raft_entry *e = entries(11, 2, 3);
	struct rmq_raft_ready rd = {.snapshot = true, .snapshot_index = 10, .snapshot_term = 3,
				    .entries = e, .n_entries = 2};
	write_ready(cs, &rd);
	entries_free(e, 2);
	rmq_cstore_close(cs);
	rmq_cstore_state_free(&st);

	cs = open_store(&st);
	cr_assert_eq(st.snap_index, 10);
	check_entries(&st, 11, 12, 3, 0, 3);
	rmq_cstore_close(cs);
	rmq_cstore_state_free(&st);
}

/* The durable log holds the snapshot's last entry: what follows stays. */
Test(cstore, an_install_that_keeps_the_log)
{
	struct rmq_cstore_state st;
	struct rmq_cstore *cs = open_store(&st);
	put_entries(cs, 1, 6, 1);
	struct rmq_raft_conf conf = {0};
	cr_assert_eq(rmq_cstore_snapshot_save(dir, true, 4, 1, &conf, "four", 4), 0);
	struct rmq_raft_ready rd = {.snapshot = true, .snapshot_keeps_log = true,
				    .snapshot_index = 4, .snapshot_term = 1};
	write_ready(cs, &rd);
	put_entries(cs, 7, 1, 1);
	rmq_cstore_close(cs);
	rmq_cstore_state_free(&st);

	cs = open_store(&st);
	cr_assert_eq(st.snap_index, 4);
	check_entries(&st, 5, 7, 1, 99, 1);
	rmq_cstore_close(cs);
	rmq_cstore_state_free(&st);
}

/* A crash after an install's rename and before its cut: the entries after
 * the snapshot that do not continue it (another term at its index) are
 * cut at the next open. */
Test(cstore, a_stale_tail_behind_a_snapshot_is_cut_at_open)
{
	struct rmq_cstore_state st;
	struct rmq_cstore *cs = open_store(&st);
	put_entries(cs, 1, 6, 1);
	rmq_cstore_close(cs);
	rmq_cstore_state_free(&st);
	struct rmq_raft_conf conf = {0};
	cr_assert_eq(rmq_cstore_snapshot_save(dir, false, 4, 2, &conf, "x", 1), 0);

	cs = open_store(&st);
	cr_assert_eq(st.snap_index, 4);
	cr_assert_eq(st.n_entries, 0, "5 and 6 follow an entry 4 of term 1, not 2");
	put_entries(cs, 5, 1, 2);
	rmq_cstore_close(cs);
	rmq_cstore_state_free(&st);

	cs = open_store(&st);
	check_entries(&st, 5, 5, 2, 0, 2);
	rmq_cstore_close(cs);
	rmq_cstore_state_free(&st);
}
