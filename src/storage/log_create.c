/* SPDX-License-Identifier: Apache-2.0 */
/*
 * log_create.c - a new log's directory and first segment, made through the
 * ring once the log has its ring, not while it is being opened.
 *
 * Opening a log whose directory does not exist creates nothing: a topic of
 * 1,000 partitions is answered without making 1,000 directories, 3,000
 * files, 2,000 ftruncates, 2,000 fallocates and 3,000 mappings while
 * CreateTopics waits.  (Making the inodes was most of that time here: on
 * this machine's ext4, which has no journal, each inode allocation walks
 * past every inode deleted in the last 30 s; docs/storage.md, "Many
 * partitions".)  A directory that exists but holds no segment (a crash
 * before its files were made) gets the same treatment for its files.
 *
 * The log lists an empty, "unmade" segment at offset 0 (no file,
 * descriptor or mapping: reads below the high watermark find nothing
 * there), and makes its files as soon as it has its ring (rmq_log_attach,
 * or rmq_log_open given one), in the background: every partition of a new
 * topic, RMQ_LOG_MAKES_MAX at a time (below), in io_uring's workers.
 * Making them at each partition's first append instead left a producer
 * with a few requests in flight waiting for one partition's files at a
 * time: 26-38k msgs/s for the first 4-8 s of a 1,000-partition run here,
 * against 370-410k once made.  An append that comes first waits for it
 * (RMQ_EFULL):
 *
 *   unmade ── attach ──► MAKE_DIR       MKDIRAT of the directory (when it
 *                            │          did not exist), OPENAT of its
 *                            │          parent
 *                            ▼
 *                       MAKE_OPENING    OPENAT of the directory (idem) and
 *                            │          of B.log, B.index, B.timeindex
 *                            │          (O_EXCL)
 *                            ▼
 *                       MAKE_SIZING     FALLOCATE of each index file's last
 *                            │          page (its size: liburing 2.3 has no
 *                            │          ftruncate op), and OPENAT of B.log
 *                            │          with O_DIRECT
 *                            ▼
 *   made: mapped (rmq_segment_adopt), and the directory and its parent
 *   synced (log_sync_dir).  Nothing is preallocated: the first append
 *   reserves its space through the ring as every append does
 *   (log_reserve_space).
 *
 * Nothing is acknowledged before both syncs (log_ack_to), so a crash before
 * them loses at most the beginnings of an empty log, which the next open
 * takes as it finds them: no directory (unmade again), a directory without
 * B.log (its stray index files removed, then unmade), or B.log with no
 * data (an empty segment, opened without reading or writing anything:
 * segment.h, rmq_segment_open).  A partition made and never written thus
 * costs its directory, three empty files (8 KiB of unwritten blocks) and
 * two syncs, once, off the shard and off CreateTopics.
 *
 * A step that fails closes and removes what the attempt created
 * (synchronously: unlinking an empty file frees nothing, and this is the
 * error path; a directory made stays, empty); the next append returns the
 * error, once, and the one after starts again.  A full disk (ENOSPC,
 * EDQUOT) puts the log in its full state (log_write.c, "A full disk") and
 * refuses appends with -ENOSPC until an attempt works.
 */
#include "storage/log_int.h"

#include "core/assert.h"
#include "core/error.h"
#include "core/log.h"
#include "core/util.h"

#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <unistd.h>

static const uint8_t zero_byte;

/* An index file is sized by allocating its last page (unwritten: it reads
 * as zeros, and rmq_segment_open still finds the file holds no data). */
#define MAKE_TAIL 4096

void log_create_init(struct rmq_log *log)
{
	log->parent_fd = -1;
}

/*
 * At most RMQ_LOG_MAKES_MAX logs of a thread make their files at once.
 * Each holds up to six descriptors meanwhile (the directory, its parent,
 * B.log and its O_DIRECT twin, the index files): a topic of 4,096
 * partitions made all at once ran the process out of them (EMFILE: some
 * logs failed to make their files, and appends to them were answered
 * STORAGE_ERROR).  The rest wait in a FIFO and start as makes end; their
 * appends wait meanwhile (RMQ_EFULL), as for a make under way.  Per
 * thread: a log makes its files on its ring's thread, its shard's.
 */
#define RMQ_LOG_MAKES_MAX 64

static _Thread_local struct {
	struct rmq_log *head, *tail;
	uint32_t running;
} makes;

static void make_enqueue(struct rmq_log *log)
{
	log->make_queued = true;
	log->make_next = NULL;
	if (makes.tail)
		makes.tail->make_next = log;
	else
		makes.head = log;
	makes.tail = log;
}

void log_make_unqueue(struct rmq_log *log)
{
	if (!log->make_queued)
		return;
	struct rmq_log **pp = &makes.head, *prev = NULL;
	while (*pp && *pp != log) {
		prev = *pp;
		pp = &(*pp)->make_next;
	}
	RMQ_ASSERT(*pp == log);
	*pp = log->make_next;
	if (makes.tail == log)
		makes.tail = prev;
	log->make_queued = false;
	log->make_next = NULL;
}

/* Ends the attempt (none of its operations in flight), and starts the
 * next waiting logs' while there is room. */
static void make_end(struct rmq_log *log)
{
	free(log->make);
	log->make = NULL;
	RMQ_ASSERT(makes.running > 0);
	makes.running--;
	while (makes.running < RMQ_LOG_MAKES_MAX && makes.head) {
		struct rmq_log *next = makes.head;
		log_make_unqueue(next);
		(void)log_make(next); /* an error is its next append's */
	}
}

/*
 * The first segment of an empty log (at open): listed, not made.  fresh:
 * the directory does not exist, so nothing of the segment can.  Otherwise
 * index files or a recycling marker that a crash (or a failed attempt) left
 * without B.log are removed first, so that the exclusive creations find
 * nothing in their way and nothing stale is taken over.  Returns 0 or a
 * negated errno.
 */
int log_new_segment(struct rmq_log *log, uint64_t base, bool fresh)
{
	struct rmq_segment *s = malloc(sizeof(*s));
	char name[RMQ_SEGMENT_NAME_LEN + 16];

	if (!s)
		return -ENOMEM;
	rmq_segment_init_unmade(s, log->dir, base);
	for (int k = RMQ_SEGMENT_KIND_INDEX; !fresh && k <= RMQ_SEGMENT_KIND_RECYCLED; k++) {
		rmq_segment_name(name, sizeof(name), base, k);
		if (unlinkat(log->dir_fd, name, 0) < 0 && errno != ENOENT) {
			int rc = -errno;
			free(s);
			return rc;
		}
	}
	int rc = log_push_segment(log, s);
	if (rc < 0) {
		free(s);
		return rc;
	}
	log->unmade = true;
	log->dir_unsynced = true;
	log->stats.segments++;
	return 0;
}

static void make_submit(struct rmq_log *log, int k);

static void make_close_all(struct make *m)
{
	for (int k = 0; k < MAKE_OPS; k++) {
		if (m->fds[k] >= 0)
			close(m->fds[k]);
		m->fds[k] = -1;
	}
}

/* Closes what was opened and removes the files the attempt created; the
 * next append returns err (once; a full disk: until the retry time). */
static void make_fail(struct rmq_log *log, int err, const char *what)
{
	struct make *m = log->make;
	struct rmq_segment *s = log_active(log);

	make_close_all(m);
	for (int k = RMQ_SEGMENT_KIND_LOG; k <= RMQ_SEGMENT_KIND_TIMEINDEX; k++) {
		if (!(m->created & (1u << k)))
			continue;
		char path[LOG_DIR_MAX + RMQ_SEGMENT_NAME_LEN + 16];
		snprintf(path, sizeof(path), "%s/", log->dir);
		rmq_segment_name(path + strlen(path), sizeof(path) - strlen(path), s->base_offset, k);
		if (unlink(path) < 0 && errno != ENOENT)
			rmq_warn("log %s: cannot remove %s: %s", log->dir, path,
				 rmq_strerror(-errno));
	}
	make_end(log);
	log->make_err = err;
	if (is_enospc(err)) {
		log_full_enter(log, FULL_ROLL, err, "creating the first segment");
		log->roll_retry_ms = log_now_ms(log) + RMQ_LOG_FULL_RETRY_MS;
	} else {
		rmq_warn("log %s: %s failed: %s; the next append tries again", log->dir, what,
			 rmq_strerror(err));
	}
}

/* The last step is done: the segment takes its files. */
static void make_done(struct rmq_log *log)
{
	struct make *m = log->make;
	struct rmq_segment *s = log_active(log);

	for (int k = RMQ_SEGMENT_KIND_INDEX; k <= RMQ_SEGMENT_KIND_TIMEINDEX; k++) {
		const struct make_op *o = &m->ops[k];
		if (o->res != (o->write ? 1 : 0)) {
			make_fail(log, o->res < 0 ? o->res : -EIO,
				  "sizing the first segment's index files");
			return;
		}
	}
	if (log->direct && m->ops[MAKE_DIO].res < 0) {
		int err = m->ops[MAKE_DIO].res;
		if (err != -EINVAL) {
			make_fail(log, err, "opening the first segment for O_DIRECT");
			return;
		}
		/* As rmq_log_open decides for a log whose files exist. */
		rmq_warn("log %s: no O_DIRECT (%s); writing through the page cache", log->dir,
			 rmq_strerror(err));
		log->direct = false;
		log->dsync = false;
	}
	int rc = rmq_segment_adopt(s, m->fds[RMQ_SEGMENT_KIND_LOG], m->fds[RMQ_SEGMENT_KIND_INDEX],
				   m->fds[RMQ_SEGMENT_KIND_TIMEINDEX], log->cfg.segment_bytes,
				   log->cfg.index_interval_bytes);
	/* Taken (or closed) by rmq_segment_adopt either way. */
	m->fds[RMQ_SEGMENT_KIND_LOG] = m->fds[RMQ_SEGMENT_KIND_INDEX] =
		m->fds[RMQ_SEGMENT_KIND_TIMEINDEX] = -1;
	if (rc < 0) {
		make_fail(log, rc, "mapping the first segment");
		return;
	}
	/* As log_push_segment advises every listed segment's mapping. */
	(void)madvise((void *)(uintptr_t)s->map, s->map_len, MADV_RANDOM);
	if (m->fds[MAKE_DIO] >= 0) {
		log_dio_close(log);
		log->dfd = m->fds[MAKE_DIO];
		log->dfd_seg = s;
	}
	if (m->fds[MAKE_DIRFD] >= 0)
		log->dir_fd = m->fds[MAKE_DIRFD];
	log->parent_fd = m->fds[MAKE_PARENT];
	make_end(log);
	log->make_err = 0;
	log->unmade = false;
	log_full_leave(log, FULL_ROLL);
	log_sync_dir(log);
}

/* The step after MAKE_DIR: the directory and the segment's files. */
static void make_open_files(struct rmq_log *log)
{
	struct make *m = log->make;
	uint64_t base = log_active(log)->base_offset;

	m->stage = MAKE_OPENING;
	if (log->dir_fd < 0) {
		struct make_op *o = &m->ops[MAKE_DIRFD];
		snprintf(o->path, m->path_len, "%s", log->dir);
		o->flags = O_RDONLY | O_DIRECTORY | O_CLOEXEC;
		make_submit(log, MAKE_DIRFD);
	}
	for (int k = RMQ_SEGMENT_KIND_LOG; k <= RMQ_SEGMENT_KIND_TIMEINDEX; k++) {
		struct make_op *o = &m->ops[k];
		snprintf(o->path, m->path_len, "%s/", log->dir);
		rmq_segment_name(o->path + strlen(o->path), m->path_len - strlen(o->path), base, k);
		o->flags = O_RDWR | O_CREAT | O_EXCL | O_CLOEXEC;
		make_submit(log, k);
	}
}

/* Every op of the step has completed: the next step, or done. */
static void make_step(struct rmq_log *log)
{
	struct make *m = log->make;

	for (int k = 0; k < MAKE_OPS; k++)
		if (m->ops[k].inflight)
			return;
	switch (m->stage) {
	case MAKE_DIR:
		if (m->ops[MAKE_MKDIR].res < 0 && m->ops[MAKE_MKDIR].res != -EEXIST) {
			make_fail(log, m->ops[MAKE_MKDIR].res, "creating the log's directory");
			return;
		}
		if (m->ops[MAKE_PARENT].res < 0) {
			make_fail(log, m->ops[MAKE_PARENT].res, "opening the log's parent directory");
			return;
		}
		make_open_files(log);
		return;
	case MAKE_OPENING:
		for (int k = 0; k < MAKE_OPS; k++) {
			if (m->ops[k].res < 0 && (k <= RMQ_SEGMENT_KIND_TIMEINDEX ||
						  (k == MAKE_DIRFD && log->dir_fd < 0))) {
				make_fail(log, m->ops[k].res, "creating the first segment's files");
				return;
			}
		}
		break;
	case MAKE_SIZING:
		make_done(log);
		return;
	}
	uint64_t idx_len, tim_len;
	rmq_segment_index_sizes(log->cfg.segment_bytes, log->cfg.index_interval_bytes, &idx_len,
				&tim_len);
	m->stage = MAKE_SIZING;
	m->ops[RMQ_SEGMENT_KIND_INDEX].pos = idx_len - MAKE_TAIL;
	m->ops[RMQ_SEGMENT_KIND_TIMEINDEX].pos = tim_len - MAKE_TAIL;
	make_submit(log, RMQ_SEGMENT_KIND_INDEX);
	make_submit(log, RMQ_SEGMENT_KIND_TIMEINDEX);
	if (log->direct) {
		struct make_op *o = &m->ops[MAKE_DIO];
		snprintf(o->path, m->path_len, "%s", m->ops[RMQ_SEGMENT_KIND_LOG].path);
		o->flags = O_WRONLY | O_DIRECT | O_CLOEXEC;
		make_submit(log, MAKE_DIO);
	}
}

static void make_op_done(struct rmq_io_op *op, int res, unsigned flags)
{
	struct make_op *o = RMQ_CONTAINER_OF(op, struct make_op, op);
	struct rmq_log *log = o->log;
	struct make *m = log->make;

	RMQ_ASSERT(m && o >= m->ops && o < m->ops + MAKE_OPS);
	int k = (int)(o - m->ops);

	(void)flags;
	o->inflight = false;
	if (res == -EAGAIN || res == -EINTR) {
		make_submit(log, k); /* no SQE then, or interrupted: again */
		return;
	}
	if (m->stage == MAKE_SIZING && k != MAKE_DIO && !o->write && res == -EOPNOTSUPP) {
		o->write = true; /* no fallocate here: a written zero byte */
		make_submit(log, k);
		return;
	}
	o->res = res;
	bool opened = res >= 0 && k != MAKE_MKDIR && !(m->stage == MAKE_SIZING && k != MAKE_DIO);
	if (opened)
		m->fds[k] = res;
	if (opened && k <= RMQ_SEGMENT_KIND_TIMEINDEX)
		m->created |= 1u << k; /* O_EXCL: the file is ours */
	make_step(log);
}

/* Submits op k of the current step (deferred to the next cycle when the
 * ring has no SQE: make_op_done then gets -EAGAIN and comes back). */
static void make_submit(struct rmq_log *log, int k)
{
	struct make *m = log->make;
	struct make_op *o = &m->ops[k];
	struct io_uring_sqe *sqe = rmq_io_sqe(log->io, &o->op);

	o->op.cb = make_op_done;
	o->inflight = true;
	if (!sqe) {
		rmq_io_defer(log->io, &o->op);
		return;
	}
	if (k == MAKE_MKDIR)
		io_uring_prep_mkdirat(sqe, AT_FDCWD, o->path, 0755);
	else if (m->stage == MAKE_SIZING && k != MAKE_DIO && o->write)
		io_uring_prep_write(sqe, m->fds[k], &zero_byte, 1, o->pos + MAKE_TAIL - 1);
	else if (m->stage == MAKE_SIZING && k != MAKE_DIO)
		io_uring_prep_fallocate(sqe, m->fds[k], 0, (off_t)o->pos, MAKE_TAIL);
	else
		io_uring_prep_openat(sqe, AT_FDCWD, o->path, o->flags, 0644);
}

/* The directory holding dir's entry: dir without its last component. */
void log_parent_path(char *buf, size_t len, const char *dir)
{
	size_t n = strlen(dir);
	while (n > 1 && dir[n - 1] == '/')
		n--;
	while (n > 0 && dir[n - 1] != '/')
		n--;
	while (n > 1 && dir[n - 1] == '/')
		n--;
	if (n == 0)
		snprintf(buf, len, ".");
	else
		snprintf(buf, len, "%.*s", (int)n, dir);
}

/*
 * Starts making the unmade active segment (at attach; and by
 * rmq_log_append() while it is unmade).  Returns RMQ_EFULL while that is
 * under way (the append tries again after completions run), -ENOSPC while
 * the disk is full (tried again every RMQ_LOG_FULL_RETRY_MS), or the error
 * the last attempt failed with (once: the next call starts again).
 */
int log_make(struct rmq_log *log)
{
	if (log->make || log->make_queued)
		return RMQ_EFULL;
	if (is_enospc(log->make_err) && log_now_ms(log) < log->roll_retry_ms)
		return -ENOSPC;
	if (log->make_err && !is_enospc(log->make_err)) {
		int err = log->make_err;
		log->make_err = 0;
		return err;
	}
	log->make_err = 0;
	if (makes.running >= RMQ_LOG_MAKES_MAX) {
		make_enqueue(log);
		return RMQ_EFULL;
	}
	/* Each op's path in one allocation with the state, sized for this
	 * log's directory (a node making 1,000 logs at once holds them all). */
	size_t path_len = strlen(log->dir) + RMQ_SEGMENT_NAME_LEN + 16;
	struct make *m = calloc(1, sizeof(*m) + MAKE_OPS * path_len);
	if (!m)
		return -ENOMEM;
	log->make = m;
	makes.running++;
	m->path_len = path_len;
	m->stage = MAKE_DIR;
	for (int k = 0; k < MAKE_OPS; k++) {
		m->ops[k].path = (char *)(m + 1) + (size_t)k * path_len;
		m->ops[k].log = log;
		m->ops[k].res = k == MAKE_MKDIR ? 0 : -1; /* not needed: done */
		m->fds[k] = -1;
	}
	if (log->dir_fd < 0) {
		struct make_op *o = &m->ops[MAKE_MKDIR];
		snprintf(o->path, m->path_len, "%s", log->dir);
		make_submit(log, MAKE_MKDIR);
	}
	/* The parent is synced too: the directory may be as new as its files
	 * (a crash may have kept the directory of an earlier attempt only in
	 * the page cache). */
	struct make_op *o = &m->ops[MAKE_PARENT];
	log_parent_path(o->path, m->path_len, log->dir);
	o->flags = O_RDONLY | O_DIRECTORY | O_CLOEXEC;
	make_submit(log, MAKE_PARENT);
	return RMQ_EFULL;
}

bool log_make_inflight(const struct rmq_log *log)
{
	return log->make != NULL; /* ended when its last operation completes */
}
