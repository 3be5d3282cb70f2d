/* SPDX-License-Identifier: Apache-2.0 */
/*
 * log_recover.c - opening a partition log: the directory is listed (files
 * deleted before a crash are removed, strays skipped with a warning), every
 * segment is opened oldest first, the newest fully scanned and CRC-checked
 * and its torn or corrupt tail cut, an older segment that is corrupt or
 * short of the next one's base fenced, and the log's offsets set from what
 * survived.  segment.c does the per-segment work; this file decides what
 * the log as a whole keeps.
 *
 *   list_segments ──► rmq_segment_open (each; the newest: full scan)
 *        │                  │ error in the newest: cut after the valid data
 *        │                  │ error in an older one: fenced, kept on disk
 *        ▼                  ▼
 *   no segment: a new one at offset 0,     the newest: cut to its data,
 *   made later (log_create.c)              preallocation restored (not
 *                                          when no file of it holds data)
 */
#include "storage/log_int.h"

#include "core/assert.h"
#include "core/error.h"
#include "core/log.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

/* ---- open / close ------------------------------------------------------ */

static int cmp_u64(const void *a, const void *b)
{
	uint64_t x = *(const uint64_t *)a, y = *(const uint64_t *)b;
	return x < y ? -1 : x > y;
}

/* Lists the base offsets of B.log files; warns about everything else. */
static int list_segments(struct rmq_log *log, uint64_t **out, size_t *n)
{
	DIR *d = fdopendir(dup(log->dir_fd));
	uint64_t *v = NULL;
	size_t len = 0, cap = 0;

	if (!d)
		return -errno;
	struct dirent *e;
	while ((e = readdir(d)) != NULL) {
		uint64_t base;
		int kind;
		if (strncmp(e->d_name, DELETED_PREFIX, strlen(DELETED_PREFIX)) == 0) {
			/* deleted before a crash, not yet unlinked */
			if (unlinkat(log->dir_fd, e->d_name, 0) < 0)
				rmq_warn("log %s: cannot delete '%s': %s", log->dir, e->d_name,
					 rmq_strerror(-errno));
			continue;
		}
		if (e->d_name[0] == '.')
			continue;
		bool spare = strcmp(e->d_name, RMQ_SEGMENT_SPARE) == 0;
		if (!spare && rmq_segment_parse_name(e->d_name, &base, &kind) < 0) {
			rmq_warn("log %s: ignoring stray file '%s'", log->dir, e->d_name);
			continue;
		}
		if (!spare && kind != 0)
			continue;
		/* Only a regular file is a segment (or the spare): opening a
		 * directory (or a FIFO...) named like one failed the whole log
		 * with EISDIR. */
		struct stat st;
		if (e->d_type != DT_REG &&
		    (e->d_type == DT_DIR || fstatat(log->dir_fd, e->d_name, &st, 0) < 0 ||
		     !S_ISREG(st.st_mode))) {
			rmq_warn("log %s: ignoring '%s': not a regular file", log->dir, e->d_name);
			continue;
		}
		if (spare && log->cfg.recycle_segments) {
			log->has_spare = true;
			continue;
		}
		if (spare) {
			/* kept by a run with --recycle-segments; not wanted now */
			if (unlinkat(log->dir_fd, e->d_name, 0) < 0)
				rmq_warn("log %s: cannot delete '%s': %s", log->dir, e->d_name,
					 rmq_strerror(-errno));
			continue;
		}
		if (len == cap) {
			cap = cap ? cap * 2 : 16;
			uint64_t *nv = realloc(v, cap * sizeof(*v));
			if (!nv) {
				free(v);
				closedir(d);
				return -ENOMEM;
			}
			v = nv;
		}
		v[len++] = base;
	}
	closedir(d);
	if (len > 1)
		qsort(v, len, sizeof(*v), cmp_u64);
	*out = v;
	*n = len;
	return 0;
}

/* fresh: the directory does not exist, so there is nothing to list. */
void log_drop_cache(struct rmq_segment *s)
{
	(void)madvise((void *)(uintptr_t)s->map, s->map_len, MADV_DONTNEED);
	(void)posix_fadvise(s->fd, 0, 0, POSIX_FADV_DONTNEED);
}

static int recover(struct rmq_log *log, bool fresh)
{
	uint64_t *bases = NULL;
	size_t n = 0;
	bool untouched = false;
	int rc = fresh ? 0 : list_segments(log, &bases, &n);

	if (rc < 0)
		return rc;
	for (size_t i = 0; i < n; i++) {
		bool last = i + 1 == n;
		struct rmq_segment *s = malloc(sizeof(*s));
		struct rmq_segment_recovery rec;
		if (!s) {
			rc = -ENOMEM;
			goto out;
		}
		rc = rmq_segment_open(s, log->dir, bases[i], log->cfg.segment_bytes,
				      log->cfg.index_interval_bytes, last, &rec);
		if (rc < 0) {
			rmq_error("log %s: cannot open segment %020" PRIu64 ": %s", log->dir,
				  bases[i], rmq_strerror(rc));
			free(s);
			goto out;
		}
		log->stats.recovered_batches += rec.batches;
		untouched = last && rec.untouched;
		if (!last) {
			/* Opening an older segment reads its first batch and the
			 * tail after its last index entry through the mapping,
			 * before log_push_segment() advises MADV_RANDOM, so the fault
			 * read ahead (up to the device's read_ahead_kb: MiBs) pages
			 * nobody CRC-checked.  A fetch serves resident pages from
			 * the mapping unchecked, so drop them: the first fetch
			 * reads them cold, with the CRC check.  The newest segment
			 * was fully scanned, CRCs included, and keeps its pages.
			 * Unmapping our pages first is what lets fadvise evict
			 * them.  Advice only: ignore failure. */
			log_drop_cache(s);
		}
		if (rec.index_rebuilt)
			rmq_warn("log %s: rebuilt the indexes of segment %020" PRIu64, log->dir,
				 bases[i]);
		if (rec.error && last) {
			rmq_warn("log %s: segment %020" PRIu64 ": %s at position %" PRIu64
				 "; kept %" PRIu64 " batches (%" PRIu64 " records, %" PRIu64
				 " bytes, offsets %" PRIu64 "..%" PRIu64 "), truncated %" PRIu64
				 " bytes after it",
				 log->dir, bases[i], rmq_strerror(rec.error), rec.valid_bytes,
				 rec.batches, rec.records, rec.valid_bytes, s->base_offset,
				 s->next_offset, rec.discarded_bytes);
			log->stats.truncated_bytes += rec.discarded_bytes;
		} else if (rec.error) {
			rmq_error("log %s: segment %020" PRIu64 " is corrupt (%s) at position %" PRIu64
				  ": offsets from %" PRIu64 " to the next segment are fenced; %" PRIu64
				  " bytes kept on disk for inspection",
				  log->dir, bases[i], rmq_strerror(rec.error), rec.valid_bytes,
				  s->next_offset, rec.discarded_bytes);
			s->fenced = true;
		}
		if (!last && !rec.error && i + 1 < n && s->next_offset != bases[i + 1]) {
			rmq_error("log %s: segment %020" PRIu64 " ends at offset %" PRIu64
				  " but the next starts at %" PRIu64 "; the gap is fenced",
				  log->dir, bases[i], s->next_offset, bases[i + 1]);
			s->fenced = true;
		}
		if (!last)
			s->sealed = true;
		rc = log_push_segment(log, s);
		if (rc < 0) {
			log_free_segment(s);
			goto out;
		}
	}
	if (log->nsegs == 0) {
		rc = log_new_segment(log, 0, fresh);
		if (rc < 0)
			goto out;
	} else if (!untouched) {
		/* The newest segment takes appends again: drop anything after
		 * its valid data for good and restore its preallocation.  (An
		 * untouched one has nothing after its empty data, and keeps
		 * whatever reservation it has: appends reserve the rest.) */
		struct rmq_segment *s = log_active(log);
		rc = rmq_segment_cut(s, s->size, log->cfg.segment_bytes, log->cfg.prealloc);
		if (rc < 0)
			goto out;
	}
	log->next_offset = log_active(log)->next_offset;
	log->written = log->synced = log->hw = log->next_offset;
	log->log_start = log->segs[0]->base_offset;
	log->pend_file_pos = log_active(log)->size;
	rc = 0;
out:
	free(bases);
	return rc;
}

int rmq_log_open(struct rmq_io *io, const char *dir, const struct rmq_log_config *cfg,
		 struct rmq_log **out)
{
	struct rmq_log *log;
	int rc;

	if (cfg->segment_bytes < 4096 || cfg->segment_bytes > (1ULL << 32) - 1 ||
	    cfg->write_buffer_bytes < 8192 || cfg->max_inflight_writes == 0 ||
	    cfg->index_interval_bytes == 0)
		return RMQ_EBADFLAG;
	if (strlen(dir) >= sizeof(log->dir))
		return -ENAMETOOLONG;
	log = calloc(1, sizeof(*log));
	if (!log)
		return -ENOMEM;
	log->io = io;
	log->cfg = *cfg;
	log->dir_fd = -1;
	log_create_init(log);
	snprintf(log->dir, sizeof(log->dir), "%s", dir);
	snprintf(log->spare, sizeof(log->spare), "%s/" RMQ_SEGMENT_SPARE, log->dir);
	/* A log whose directory does not exist is new: nothing of it is made
	 * here but once it has its ring, in the background (log_create.c).
	 * The directory it will be made in must be one the node can write,
	 * so that a topic created on a read-only or foreign data directory is
	 * refused now, not at its first produce. */
	log->dir_fd = open(dir, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
	bool fresh = log->dir_fd < 0 && errno == ENOENT;
	if (fresh) {
		char parent[sizeof(log->dir)];
		log_parent_path(parent, sizeof(parent), dir);
		if (faccessat(AT_FDCWD, parent, W_OK | X_OK, AT_EACCESS) < 0) {
			rc = -errno;
			goto err;
		}
	} else if (log->dir_fd < 0) {
		rc = -errno;
		goto err;
	}
	rc = log_buffers_open(log);
	if (rc < 0)
		goto err;
	log->nwops = cfg->max_inflight_writes;
	log->wops = calloc(log->nwops, sizeof(*log->wops));
	if (!log->wops) {
		rc = -ENOMEM;
		goto err;
	}
	log_write_init(log);
	rc = recover(log, fresh);
	if (rc < 0)
		goto err;
	if (log_epoch_rebuild(log) < 0)
		log->epochs_lost = true; /* walked again when asked */
	log->lead_in_map = true;
	log->direct = cfg->direct_writes && cfg->fsync == RMQ_FSYNC_ALWAYS;
	log->dsync = log->direct && cfg->dsync_writes;
	if (log->direct && !log->unmade) { /* unmade: decided when made */
		rc = log_dio_open(log, log_active(log));
		if (rc < 0) {
			rmq_warn("log %s: no O_DIRECT (%s); writing through the page cache", log->dir,
				 rmq_strerror(rc));
			log->direct = false;
		}
	}
	if (io && log->unmade)
		(void)log_make(log); /* else rmq_log_attach starts it */
	*out = log;
	return 0;
err:
	for (size_t i = 0; i < log->nsegs; i++)
		log_free_segment(log->segs[i]);
	free(log->segs);
	free(log->wops);
	free(log->epochs);
	log_buffers_close(log);
	if (log->dir_fd >= 0)
		close(log->dir_fd);
	free(log);
	return rc;
}
