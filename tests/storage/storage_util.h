/* SPDX-License-Identifier: Apache-2.0 */
/*
 * storage_util.h - helpers shared by the storage tests.
 *
 *   records   N encoded field-7 Record elements (Record{1: key, 2: value}),
 *             from explicit keys and values or from a seeded PRNG
 *   env       one io_uring ring and a fresh mkdtemp() directory under /tmp
 *             per test; su_env_fini() closes the log, the ring and removes
 *             the directory (call it from the Criterion .fini so a failed
 *             assertion still cleans up)
 *   appends   synchronous (append + flush + wait for the callback) and
 *             pipelined (append while handling RMQ_EFULL, then drain)
 *   collect   everything readable from an offset to the high watermark,
 *             each batch parsed, CRC-checked and copied out
 *   clock     a fake clock for cfg.now_ms, set by the test
 *   capture   log lines redirected to a memfd, for asserting on warnings
 *
 * Helpers that cannot continue fail the current test with cr_assert.
 * No helper sleeps or measures time: waits block on the ring with a timeout
 * only as a guard against hangs.
 */
#ifndef RMQ_TESTS_STORAGE_UTIL_H
#define RMQ_TESTS_STORAGE_UTIL_H

#include "core/io.h"
#include "storage/batch.h"
#include "storage/log.h"

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

/* ---- deterministic inputs ------------------------------------------- */

uint64_t su_rand(uint64_t *state);
void su_fill_random(uint8_t *p, size_t len, uint64_t seed);

struct su_record {
	const void *key;
	size_t key_len;
	const void *value;
	size_t value_len;
};

/* Encodes n records as field-7 elements into buf (cap bytes).  Returns the
 * length, or 0 when cap is too small. */
size_t su_records(uint8_t *buf, size_t cap, const struct su_record *r, unsigned n);

/* count records with keys "k<seed>-<j>" and pseudo-random values of
 * 0..value_max bytes, all derived from seed.  Returns the length (0 when
 * cap is too small). */
size_t su_records_gen(uint8_t *buf, size_t cap, uint64_t seed, unsigned count,
		      size_t value_max);

/* ---- fake clock ------------------------------------------------------- */

extern uint64_t su_clock_ms;
uint64_t su_now_ms(void); /* returns su_clock_ms, for cfg.now_ms */

/* ---- environment ------------------------------------------------------ */

struct su_env {
	struct rmq_io *io;
	char dir[64];
	struct rmq_log_config cfg;
	struct rmq_log *log;
};

/* Small, fast defaults for tests: 64 KiB segments, 1 KiB index interval,
 * 256 KiB write buffer, fsync=never, no preallocation, the fake clock, no
 * retention, no segment.ms. */
void su_config(struct rmq_log_config *cfg);

/* Creates the ring and the temp dir and fills e->cfg with su_config(). */
void su_env_init(struct su_env *e);
/* Closes the log if open, destroys the ring, removes the directory. */
void su_env_fini(struct su_env *e);

/* rmq_log_open / rmq_log_close on e->dir with e->cfg. */
int su_open(struct su_env *e);
int su_close(struct su_env *e);
/* su_close() then su_open(), asserting both succeed. */
void su_reopen(struct su_env *e);

/* ---- appends ------------------------------------------------------------ */

struct su_append {
	struct rmq_append a;
	bool done;
	int res;
};

/* Appends one batch and waits until its callback runs.  Returns the
 * append's error or the callback's result; hdr gets base_offset and
 * log_append_time_ms. */
int su_append(struct su_env *e, struct rmq_batch_hdr *hdr, const void *recs, size_t len);
/* The same, as a replica's copy of a leader's batch when replica
 * (rmq_append.replica: hdr is kept as it is). */
int su_append_as(struct su_env *e, struct rmq_batch_hdr *hdr, const void *recs, size_t len,
		 bool replica);

/* Starts an append without waiting for it, retrying on RMQ_EFULL after
 * running completions.  Returns rmq_log_append's final result. */
int su_append_async(struct su_env *e, struct su_append *sa, const void *recs, size_t len);

/* Flushes and runs completions until the log is idle. */
void su_wait_idle(struct su_env *e);

/* One rmq_io_wait() with a timeout; fails the test after ten waits in a
 * row without a completion (*stalls counts them; start it at 0). */
void su_wait_once(struct su_env *e, int *stalls, const char *what);

/* ---- reading everything ---------------------------------------------- */

struct su_batch {
	struct rmq_batch_hdr hdr;
	uint32_t entry_len;
	uint8_t *records; /* copy of the records bytes */
	uint32_t records_len;
};

struct su_batches {
	struct su_batch *v;
	size_t n, cap;
};

/* Adds a copy of one batch to b. */
void su_batches_push(struct su_batches *b, const struct rmq_batch_hdr *hdr, uint32_t entry_len,
		     const void *records, size_t records_len);
void su_batches_free(struct su_batches *b);

/* Reads from `from` to the high watermark with reads of max_bytes, parsing
 * and CRC-checking every batch of every slice and checking the read's
 * invariants (continuous offsets, bytes == sum of slices, never past the
 * HW).  Returns 0, or the first error of rmq_log_read. */
int su_collect(struct rmq_log *log, uint64_t from, uint64_t max_bytes, struct su_batches *out);

/* Asserts that got equals want batch by batch: base offsets, counts,
 * records bytes and (when check_hdr) every header field. */
void su_assert_same(const struct su_batches *got, const struct su_batches *want, bool check_hdr);

/* ---- the test sequence ------------------------------------------------- */

/* Records bytes of the last su_gen_batch(). */
extern uint8_t su_recs_buf[64 << 10];

/* Batch number i of the tests' deterministic sequence: fills h (producer
 * fields: ids, epochs and sequences including 0 and -1, non-monotonic
 * producer timestamps on some, a producer CRC on some, an opaque
 * "compressed" payload on some) and su_recs_buf; returns the records
 * length.  Values are up to value_max bytes. */
size_t su_gen_batch(uint64_t i, size_t value_max, struct rmq_batch_hdr *h);

/* Adds what a reader must see for an appended header (unset timestamps
 * become the append time) with su_recs_buf's first rlen bytes. */
void su_model_push(struct su_batches *m, const struct rmq_batch_hdr *appended, size_t rlen);

/* Runs completions until every append of apps[0..n) called back with 0. */
void su_drain(struct su_env *e, struct su_append *apps, size_t n);

/* Appends batches first..first+n-1, pipelined (flushing every few) or one
 * at a time, advancing the fake clock by clock_step_ms before each, and
 * adds them to model (may be NULL).  Waits for all of them. */
void su_append_seq(struct su_env *e, uint64_t first, size_t n, size_t value_max, bool pipelined,
		   uint64_t clock_step_ms, struct su_batches *model);

/* su_append_seq() one batch at a time from sequence number first until
 * the log rolls once; returns the next sequence number. */
uint64_t su_append_until_roll(struct su_env *e, uint64_t first, size_t value_max,
			      struct su_batches *model);

/* Asserts that everything readable from the log start is the model's
 * batches from index `from` on, reading with several max_bytes. */
void su_check_content(struct su_env *e, const struct su_batches *model, size_t from);

/* Index in the model of the batch holding offset. */
size_t su_batch_of(const struct su_batches *m, uint64_t offset);

/* Reads at offset with max_bytes 1 and asserts it returns exactly the
 * model's batch holding it. */
void su_check_read_one(struct su_env *e, const struct su_batches *m, uint64_t offset);

/* The model's answer to a time lookup: the first batch in offset order
 * whose max timestamp is >= ts. */
int su_model_time(const struct su_batches *m, int64_t ts, uint64_t *off);

/* Asserts rmq_log_offset_for_time() agrees with su_model_time() around
 * every batch's timestamp, and at the extremes. */
void su_check_times(struct su_env *e, const struct su_batches *m);

/* ---- files ------------------------------------------------------------ */

/* "dir/%020lu<ext>" */
char *su_seg_file(char *buf, size_t len, const char *dir, uint64_t base, const char *ext);
/* Sorted base offsets of the dir's B.log files.  Returns how many (at most
 * cap are stored). */
size_t su_list_segments(const char *dir, uint64_t *bases, size_t cap);
/* Size of a file, or -1. */
long long su_file_size(const char *path);
/* XORs one byte of a file. */
void su_flip_byte(const char *path, long long pos, uint8_t mask);
void su_write_byte(const char *path, long long pos, uint8_t v);
void su_truncate_file(const char *path, long long len);
/* Replaces a file's content with len bytes of garbage (seeded). */
void su_garbage_file(const char *path, size_t len, uint64_t seed);
/* Removes a tree (nftw, depth first, no symlinks followed). */
int su_rm_rf(const char *path);

/* ---- log capture ------------------------------------------------------- */

/* Redirects rmq log lines into a fresh memfd; returns it. */
int su_capture_start(void);
/* Restores stderr and returns what was logged (malloc'd, NUL-terminated);
 * closes fd. */
char *su_capture_end(int fd);

#endif /* RMQ_TESTS_STORAGE_UTIL_H */
