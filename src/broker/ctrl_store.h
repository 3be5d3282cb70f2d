/* SPDX-License-Identifier: Apache-2.0 */
/*
 * ctrl_store.h - the controller's durable Raft state (src/raft/raft.h's
 * "make durable"), in a directory of shard 0's data directory:
 *
 *   DIR/log/        an rmq_log (storage/log.h) synced at every append: one
 *                   batch per Raft entry, whose one record's value is a
 *                   rustmq.controller.LogEntry (term, index, type, data);
 *                   the batch's leader epoch is the entry's term.  Log
 *                   offsets are not Raft indexes: the log may hold entries
 *                   the snapshot covers, and after a snapshot install the
 *                   next entries follow whatever it holds.
 *   DIR/hardstate   term, vote and commit, in two 4 KiB slots written in
 *                   turn, each with a sequence number and a CRC-32C: a torn
 *                   write leaves the other slot, and the newest valid slot
 *                   wins at open.
 *   DIR/snapshot    the newest snapshot: header (index, term,
 *                   configuration), the state machine's bytes, CRC-32C;
 *                   replaced whole (temporary file, fsync, rename, fsync of
 *                   the directory).
 *
 *   hardstate slot (64 bytes used, little-endian)
 *     0  8  "RMQHS001"     24 4  vote        40 4  CRC-32C of bytes 0..39
 *     8  8  sequence       28 4  zero
 *     16 8  term           32 8  commit
 *
 *   snapshot file (little-endian)
 *     0  8  "RMQSNAP1"     24 4  configuration length C    32 C  configuration
 *     8  8  index          28 4  data length D             32+C D  data
 *     16 8  term                                           32+C+D 4  CRC-32C of all before
 *
 * At open the log's entries after the snapshot are kept only where they
 * continue it: the entry at the snapshot's index has its term, or the log
 * jumped over the snapshot (entries appended after an install).  Entries
 * that do not (a crash between a snapshot's rename and the cut of the old
 * log) are cut, as Figure 13 of the Raft paper asks.  A damaged or torn log
 * tail was cut by the log's own recovery already.
 *
 * One write at a time; everything runs on the shard whose ring was given.
 */
#ifndef RMQ_BROKER_CTRL_STORE_H
#define RMQ_BROKER_CTRL_STORE_H

#include "core/io.h"
#include "raft/raft.h"

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

struct rmq_cstore;

/* What open found: the state a Raft core restarts from. */
struct rmq_cstore_state {
	struct rmq_raft_hard_state hs;
	uint64_t snap_index, snap_term;       /* 0, 0: no snapshot */
	struct rmq_raft_conf snap_conf;
	uint8_t *snap_data;                   /* the state machine's bytes */
	size_t snap_len;
	struct rmq_raft_entry *entries;       /* after the snapshot, in order */
	size_t n_entries;
};

void rmq_cstore_state_free(struct rmq_cstore_state *st);

/*
 * Opens (creating) the store in dir with ring io (blocking file I/O: at
 * start).  Fills *st.  Returns 0 and *out, or RMQ_ECORRUPT (a snapshot or
 * hard state that fails its checks, entries that do not follow each
 * other), or a negated errno.
 */
int rmq_cstore_open(struct rmq_io *io, const char *dir, struct rmq_cstore **out,
		    struct rmq_cstore_state *st);
/* Runs the ring until a write in flight is done (its done runs) and the
 * log is idle, then closes everything. */
void rmq_cstore_close(struct rmq_cstore *cs);

/*
 * Makes what a Ready asks durable, in this order where it matters:
 *   - a snapshot to install (received as DIR/snapshot.incoming, see
 *     rmq_cstore_snapshot_save) is renamed over DIR/snapshot (blocking: a
 *     rename and a directory fsync; installs are rare), and unless the
 *     Ready keeps the log every stored entry is then cut;
 *   - its entries replace the stored ones from entries[0].index on;
 *   - its hard state, when it changed (the commit index too: a restart
 *     applies the entries up to it at once).
 * done(arg, res) runs once all is durable (res 0), or after a failure (a
 * negated errno: the store is then failed and refuses every later write).
 * done never runs inside this call.  Returns 0, or RMQ_ESTATE while a
 * write is in flight or after a failure, RMQ_ERANGE for entries that do
 * not follow the stored ones, -ENOMEM.
 */
int rmq_cstore_write(struct rmq_cstore *cs, const struct rmq_raft_ready *rd,
		     void (*done)(void *arg, int res), void *arg);

/*
 * Snapshot files.  rmq_cstore_snapshot_save writes one whole (blocking: a
 * helper thread), to DIR/snapshot, or to DIR/snapshot.incoming when
 * incoming (a leader's snapshot being received).
 */
int rmq_cstore_snapshot_save(const char *dir, bool incoming, uint64_t index, uint64_t term,
			     const struct rmq_raft_conf *conf, const void *data, size_t len);

/*
 * The snapshot at index (already saved as DIR/snapshot) covers the log up
 * to there: segments holding only entries up to index are deleted.
 */
void rmq_cstore_compacted(struct rmq_cstore *cs, uint64_t index);

/* The directory the store lives in. */
const char *rmq_cstore_dir(const struct rmq_cstore *cs);

#endif /* RMQ_BROKER_CTRL_STORE_H */
