/* SPDX-License-Identifier: Apache-2.0 */
/*
 * segment.c - files, mappings, indexes and recovery of one segment
 * (see segment.h for the layout).
 *
 * Everything here is synchronous: it runs when a log opens, rolls, seals or
 * truncates, never per append.  The append path only writes index entries
 * into the mappings (rmq_segment_index_batch).
 */
#include "storage/segment.h"

#include "core/error.h"
#include "core/log.h"
#include "storage/batch.h"
#include "storage/sysfile.h"

#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

static const char *const suffixes[] = {".log", ".index", ".timeindex", ".recycled"};
#define KIND_RECYCLED 3

char *rmq_segment_name(char *buf, size_t len, uint64_t base_offset, int kind)
{
	snprintf(buf, len, "%020" PRIu64 "%s", base_offset, suffixes[kind]);
	return buf;
}

char *rmq_segment_path(char *buf, size_t len, const char *dir, uint64_t base_offset)
{
	snprintf(buf, len, "%s/%020" PRIu64, dir, base_offset);
	return buf;
}

int rmq_segment_parse_name(const char *name, uint64_t *base_offset, int *kind)
{
	uint64_t v = 0;

	for (int i = 0; i < RMQ_SEGMENT_NAME_LEN; i++) {
		if (name[i] < '0' || name[i] > '9')
			return RMQ_ENOTFOUND;
		unsigned d = (unsigned)(name[i] - '0');
		if (v > (UINT64_MAX - d) / 10)
			return RMQ_ENOTFOUND;
		v = v * 10 + d;
	}
	for (int k = 0; k < (int)(sizeof(suffixes) / sizeof(suffixes[0])); k++) {
		if (strcmp(name + RMQ_SEGMENT_NAME_LEN, suffixes[k]) == 0) {
			*base_offset = v;
			*kind = k;
			return 0;
		}
	}
	return RMQ_ENOTFOUND;
}

static size_t page_round(uint64_t n)
{
	uint64_t pg = (uint64_t)sysconf(_SC_PAGESIZE);
	return (size_t)((n + pg - 1) / pg * pg);
}

static void file_name(char *buf, size_t len, const struct rmq_segment *s, int kind)
{
	snprintf(buf, len, "%s%s", s->path, suffixes[kind]);
}

static uint32_t index_cap(uint64_t capacity, uint32_t interval)
{
	uint64_t n = capacity / (interval ? interval : 1) + 2;
	return n > UINT32_MAX / 16 ? UINT32_MAX / 16 : (uint32_t)n;
}

/* Maps len bytes of fd read-write, advised for the access appends make.
 * Returns 0 or a negated errno. */
static int map_rw(int fd, size_t len, void **out)
{
	void *m = mmap(NULL, len, PROT_READ | PROT_WRITE, MAP_SHARED, fd, 0);
	if (m == MAP_FAILED)
		return -errno;
	/* Appends touch the index a page at a time.  Without this the first
	 * fault read ahead up to the device's read_ahead_kb (8 MiB here) of
	 * the sparse file: the whole index zeroed into the page cache as
	 * large folios, on the shard thread, and dirtied whole by one entry,
	 * so writeback wrote megabytes of zeros per segment.  That was half
	 * the shard's time with 1,000 partitions (docs/storage.md, "Many
	 * partitions").  Advice only: ignore failure. */
	(void)madvise(m, len, MADV_RANDOM);
	*out = m;
	return 0;
}

/* Opens (creating if asked) an index file sized for cap entries of esize
 * bytes and maps it read-write.  The file keeps its content; *file_bytes
 * is its size before. */
static int map_index(const struct rmq_segment *s, int kind, uint32_t cap, size_t esize,
		     bool create, int *fd_out, void **map_out, uint64_t *file_bytes)
{
	char name[sizeof(s->path) + 16];
	struct stat st;
	int fd, rc;

	file_name(name, sizeof(name), s, kind);
	fd = create ? rmq_sys_create(name, O_RDWR | O_CLOEXEC, 0644)
		    : open(name, O_RDWR | O_CLOEXEC);
	if (fd < 0)
		return -errno;
	if (fstat(fd, &st) < 0) {
		rc = -errno;
		goto err;
	}
	*file_bytes = (uint64_t)st.st_size;
	size_t want = (size_t)cap * esize;
	size_t len = page_round(want > (size_t)st.st_size ? want : (size_t)st.st_size);
	/* When the file must grow anyway it grows to whole pages, the size
	 * the mapping (and idx_cap) covers, so that rmq_segment_cut never
	 * has to extend it again. */
	if ((uint64_t)st.st_size < want && rmq_sys_ftruncate(fd, (off_t)len) < 0) {
		rc = -errno;
		goto err;
	}
	void *m = NULL;
	rc = map_rw(fd, len, &m);
	if (rc < 0)
		goto err;
	*fd_out = fd;
	*map_out = m;
	return 0;
err:
	close(fd);
	return rc;
}

static void index_fds_close(struct rmq_segment *s)
{
	if (s->idx_fd >= 0)
		close(s->idx_fd);
	if (s->tim_fd >= 0)
		close(s->tim_fd);
	s->idx_fd = s->tim_fd = -1;
}

static void unmap_indexes(struct rmq_segment *s)
{
	if (s->idx) {
		munmap(s->idx, page_round((uint64_t)s->idx_cap * sizeof(*s->idx)));
		s->idx = NULL;
	}
	if (s->tim) {
		munmap(s->tim, page_round((uint64_t)s->tim_cap * sizeof(*s->tim)));
		s->tim = NULL;
	}
	index_fds_close(s);
}

/* Opens the index files again for a while (segment.h, idx_fd): their
 * mappings stayed.  Returns 0 or a negated errno. */
static int index_fds_reopen(struct rmq_segment *s)
{
	char name[sizeof(s->path) + 16];
	int *fds[] = {NULL, &s->idx_fd, &s->tim_fd};
	for (int kind = 1; kind <= 2; kind++) {
		if (*fds[kind] >= 0)
			continue;
		file_name(name, sizeof(name), s, kind);
		*fds[kind] = open(name, O_RDWR | O_CLOEXEC);
		if (*fds[kind] < 0)
			return -errno;
	}
	return 0;
}

static int open_indexes(struct rmq_segment *s, uint32_t cap, bool create,
			uint64_t *idx_bytes, uint64_t *tim_bytes)
{
	void *m;
	int rc;

	/* A file larger than cap (written under a smaller index interval)
	 * keeps its size; the mapping covers it. */
	rc = map_index(s, 1, cap, sizeof(struct rmq_index_entry), create, &s->idx_fd, &m,
		       idx_bytes);
	if (rc < 0)
		return rc;
	s->idx = m;
	s->idx_cap = (uint32_t)(page_round(*idx_bytes > (uint64_t)cap * 8 ? *idx_bytes
									: (uint64_t)cap * 8) /
				sizeof(struct rmq_index_entry));
	rc = map_index(s, 2, cap, sizeof(struct rmq_time_entry), create, &s->tim_fd, &m,
		       tim_bytes);
	if (rc < 0)
		return rc;
	s->tim = m;
	s->tim_cap = (uint32_t)(page_round(*tim_bytes > (uint64_t)cap * 16 ? *tim_bytes
									  : (uint64_t)cap * 16) /
				sizeof(struct rmq_time_entry));
	return 0;
}

/*
 * Zeros an index file and its mapping before it is rebuilt, without
 * dirtying its pages: a hole punched in the file (the mapping then reads
 * zeros), or, where the filesystem cannot punch, memset.  The newest
 * segment's indexes are always rebuilt at open; for a 1 GiB segment they
 * map 6 MiB, and writing those zeros page by page dirtied (and wrote back)
 * 6 MiB per partition at every start: 34 s for 1,000 empty partitions.
 */
static void clear_index(int fd, void *map, size_t bytes)
{
	if (fallocate(fd, FALLOC_FL_PUNCH_HOLE | FALLOC_FL_KEEP_SIZE, 0, (off_t)bytes) == 0)
		return;
	memset(map, 0, bytes);
}

static void segment_init(struct rmq_segment *s, const char *dir, uint64_t base_offset)
{
	memset(s, 0, sizeof(*s));
	s->fd = s->idx_fd = s->tim_fd = s->rfd = -1;
	s->base_offset = base_offset;
	s->next_offset = base_offset;
	s->max_timestamp_ms = -1;
	s->created_ms = -1;
	rmq_segment_path(s->path, sizeof(s->path), dir, base_offset);
}

void rmq_segment_init_unmade(struct rmq_segment *s, const char *dir, uint64_t base_offset)
{
	segment_init(s, dir, base_offset);
}

void rmq_segment_index_sizes(uint64_t capacity, uint32_t index_interval_bytes,
			     uint64_t *idx_bytes, uint64_t *tim_bytes)
{
	uint32_t cap = index_cap(capacity, index_interval_bytes);
	*idx_bytes = page_round((uint64_t)cap * sizeof(struct rmq_index_entry));
	*tim_bytes = page_round((uint64_t)cap * sizeof(struct rmq_time_entry));
}

static int map_log(struct rmq_segment *s, uint64_t len);

int rmq_segment_adopt(struct rmq_segment *s, int fd, int idx_fd, int tim_fd, uint64_t capacity,
		      uint32_t index_interval_bytes)
{
	uint64_t idx_len, tim_len;
	void *m = NULL;
	int rc;

	rmq_segment_index_sizes(capacity, index_interval_bytes, &idx_len, &tim_len);
	s->fd = fd;
	s->idx_fd = idx_fd;
	s->tim_fd = tim_fd;
	rc = map_log(s, capacity);
	if (rc < 0)
		goto err;
	rc = map_rw(idx_fd, (size_t)idx_len, &m);
	if (rc < 0)
		goto err;
	s->idx = m;
	s->idx_cap = (uint32_t)(idx_len / sizeof(struct rmq_index_entry));
	rc = map_rw(tim_fd, (size_t)tim_len, &m);
	if (rc < 0)
		goto err;
	s->tim = m;
	s->tim_cap = (uint32_t)(tim_len / sizeof(struct rmq_time_entry));
	s->checked = true;
	index_fds_close(s);
	return 0;
err:
	rmq_segment_close(s);
	return rc;
}

static int map_log(struct rmq_segment *s, uint64_t len)
{
	s->map_len = page_round(len ? len : 1);
	void *m = mmap(NULL, s->map_len, PROT_READ, MAP_SHARED, s->fd, 0);
	if (m == MAP_FAILED) {
		s->map = NULL;
		return -errno;
	}
	s->map = m;
	return 0;
}

/*
 * True when fd's file (size bytes, 0 when it was empty) holds no data: no
 * written extent and no page in the page cache, so every byte reads as
 * zero, and nothing a crashed process left for the kernel to write back
 * hides in it either (a dirty page, of write() or of a mapping, delayed
 * allocation included, is data to SEEK_DATA).  Fallocated (unwritten)
 * extents are holes to it on ext4 and XFS; a cached page of zeros read from
 * them counts as data, and a filesystem without SEEK_DATA calls the whole
 * file data: false then only means the caller reads and rebuilds.
 */
static bool no_data(int fd, uint64_t size)
{
	if (size == 0)
		return true;
	return lseek(fd, 0, SEEK_DATA) < 0 && errno == ENXIO;
}

/* Allocates the data file up to `upto` bytes (and at least its current
 * size), synchronously: only RMQ_PREALLOC_MIN ahead of the data, at
 * creation and at a cut (segment.h). */
static int preallocate(struct rmq_segment *s, uint64_t upto, uint64_t capacity,
		       enum rmq_prealloc prealloc)
{
	if (upto > capacity)
		upto = capacity;
	if (prealloc == RMQ_PREALLOC_NONE || upto <= s->prealloc_end)
		return 0;
	if (rmq_sys_fallocate(s->fd, 0, 0, (off_t)upto) < 0) {
		/* Filesystems without fallocate simply grow the file.  On a
		 * full disk the segment goes on without its reservation: the
		 * log reserves through the ring before appending, and a full
		 * disk then refuses appends until space returns (log.h). */
		if (errno == EOPNOTSUPP || errno == ENOSPC || errno == EDQUOT)
			return 0;
		return -errno;
	}
	s->prealloc_end = upto;
	return 0;
}

/* Drops B.recycled once the old bytes after the data are gone. */
static void drop_marker(struct rmq_segment *s)
{
	char name[sizeof(s->path) + 16];

	if (!s->recycled)
		return;
	file_name(name, sizeof(name), s, KIND_RECYCLED);
	(void)unlink(name); /* a marker left behind only makes recovery lenient */
	s->recycled = false;
}

/* B.log from the spare file: the marker first, so that a B.log holding
 * old bytes never exists without it.  Returns 0 or a negated errno. */
static int take_spare(struct rmq_segment *s, const char *spare)
{
	char name[sizeof(s->path) + 16];
	struct stat st;

	file_name(name, sizeof(name), s, 0);
	if (access(name, F_OK) == 0)
		return RMQ_EEXIST;
	file_name(name, sizeof(name), s, KIND_RECYCLED);
	int fd = rmq_sys_create(name, O_WRONLY | O_TRUNC | O_CLOEXEC, 0644);
	if (fd < 0)
		return -errno;
	close(fd);
	s->recycled = true;
	char log_name[sizeof(s->path) + 16];
	file_name(log_name, sizeof(log_name), s, 0);
	if (renameat2(AT_FDCWD, spare, AT_FDCWD, log_name, RENAME_NOREPLACE) < 0) {
		int rc = errno == EEXIST ? RMQ_EEXIST : -errno;
		drop_marker(s);
		return rc;
	}
	s->fd = open(log_name, O_RDWR | O_CLOEXEC);
	if (s->fd < 0 || fstat(s->fd, &st) < 0)
		return -errno;
	/* Written blocks: nothing to allocate or zero below its size. */
	s->prealloc_end = s->zeroed = (uint64_t)st.st_size;
	return 0;
}

int rmq_segment_create(struct rmq_segment *s, const char *dir, uint64_t base_offset,
		       uint64_t capacity, uint32_t index_interval_bytes,
		       enum rmq_prealloc prealloc, const char *spare)
{
	char name[sizeof(s->path) + 16];
	uint64_t a, b;
	int rc;

	segment_init(s, dir, base_offset);
	file_name(name, sizeof(name), s, 0);
	if (spare) {
		rc = take_spare(s, spare);
		if (rc == RMQ_EEXIST || (rc < 0 && s->fd < 0 && !s->recycled))
			return rc; /* nothing of B exists (or B.log is not ours) */
		if (rc < 0)
			goto err;
	} else {
		s->fd = rmq_sys_create(name, O_RDWR | O_EXCL | O_CLOEXEC, 0644);
		if (s->fd < 0)
			return errno == EEXIST ? RMQ_EEXIST : -errno;
	}
	rc = preallocate(s, RMQ_PREALLOC_MIN, capacity, prealloc);
	if (rc < 0)
		goto err;
	rc = map_log(s, capacity);
	if (rc < 0)
		goto err;
	/* Stale index files of an earlier segment with this base (deleted
	 * log file, crash before its indexes went) must not be reused. */
	for (int k = 1; k < 3; k++) {
		file_name(name, sizeof(name), s, k);
		unlink(name);
	}
	rc = open_indexes(s, index_cap(capacity, index_interval_bytes), true, &a, &b);
	if (rc < 0)
		goto err;
	s->checked = true;
	index_fds_close(s);
	return 0;
err:
	rmq_segment_close(s);
	file_name(name, sizeof(name), s, 0);
	unlink(name);
	drop_marker(s);
	return rc;
}

int rmq_segment_detach(struct rmq_segment *s, const char *path)
{
	char name[sizeof(s->path) + 16];

	rmq_segment_close(s);
	for (int k = KIND_RECYCLED; k >= 1; k--) {
		file_name(name, sizeof(name), s, k);
		if (unlink(name) < 0 && errno != ENOENT)
			return -errno;
	}
	s->recycled = false;
	file_name(name, sizeof(name), s, 0);
	if (renameat2(AT_FDCWD, name, AT_FDCWD, path, RENAME_NOREPLACE) < 0)
		return -errno;
	return 0;
}

void rmq_segment_close(struct rmq_segment *s)
{
	unmap_indexes(s);
	if (s->map) {
		munmap((void *)s->map, s->map_len);
		s->map = NULL;
	}
	if (s->fd >= 0)
		close(s->fd);
	s->fd = -1;
	if (s->rfd >= 0)
		close(s->rfd);
	s->rfd = -1;
}

int rmq_segment_direct_fd(struct rmq_segment *s)
{
	if (s->rfd == -1) {
		char name[sizeof(s->path) + 8];
		file_name(name, sizeof(name), s, 0);
		s->rfd = open(name, O_RDONLY | O_DIRECT | O_CLOEXEC);
		if (s->rfd < 0)
			s->rfd = -2; /* not again: use fd */
	}
	return s->rfd >= 0 ? s->rfd : s->fd;
}

int rmq_segment_delete(struct rmq_segment *s)
{
	rmq_segment_close(s);
	return rmq_segment_unlink(s);
}

int rmq_segment_unlink(struct rmq_segment *s)
{
	char name[sizeof(s->path) + 16];
	int rc = 0;

	/* The log file goes last: a crash in between leaves index files
	 * (or a marker) without a log, which open ignores and create
	 * replaces. */
	for (int k = KIND_RECYCLED; k >= 0; k--) {
		file_name(name, sizeof(name), s, k);
		if (unlink(name) < 0 && errno != ENOENT && rc == 0)
			rc = -errno;
	}
	return rc;
}

void rmq_segment_index_batch(struct rmq_segment *s, uint64_t base_offset, uint64_t position,
			     uint32_t entry_len, int64_t timestamp_ms,
			     uint32_t index_interval_bytes)
{
	uint32_t rel = (uint32_t)(base_offset - s->base_offset);

	/* created_ms is not set here: timestamp_ms may be a producer's
	 * timestamp, and segment.ms ages segments by the broker's clock. */
	if (timestamp_ms > s->max_timestamp_ms)
		s->max_timestamp_ms = timestamp_ms;
	if (s->idx_count == 0 || s->bytes_since_index >= index_interval_bytes) {
		if (s->idx_count < s->idx_cap) {
			struct rmq_index_entry *e = &s->idx[s->idx_count++];
			/* Recovery re-adds entries the file already holds:
			 * leave those pages clean. */
			if (e->rel_offset != rel || e->position != (uint32_t)position) {
				s->index_rewritten |= e->rel_offset != 0 || e->position != 0;
				e->rel_offset = rel;
				e->position = (uint32_t)position;
			}
			s->bytes_since_index = 0;
		}
		if ((s->tim_count == 0 || s->max_timestamp_ms > s->tim[s->tim_count - 1].timestamp_ms) &&
		    s->tim_count < s->tim_cap) {
			struct rmq_time_entry *t = &s->tim[s->tim_count++];
			if (t->timestamp_ms != s->max_timestamp_ms || t->rel_offset != rel || t->zero != 0) {
				s->index_rewritten |= t->timestamp_ms != 0 || t->rel_offset != 0 || t->zero != 0;
				t->timestamp_ms = s->max_timestamp_ms;
				t->rel_offset = rel;
				t->zero = 0;
			}
		}
	}
	s->bytes_since_index += entry_len;
}

/* Counts the leading valid entries of the mapped offset index: strictly
 * increasing, starting at (0, 0), inside the data file. */
static uint32_t valid_index_prefix(const struct rmq_segment *s, uint64_t file_size,
				   uint64_t idx_bytes)
{
	uint32_t n = (uint32_t)(idx_bytes / sizeof(struct rmq_index_entry));
	uint32_t i;

	if (n == 0 || s->idx[0].rel_offset != 0 || s->idx[0].position != 0)
		return 0;
	for (i = 1; i < n; i++) {
		if (s->idx[i].rel_offset <= s->idx[i - 1].rel_offset ||
		    s->idx[i].position <= s->idx[i - 1].position ||
		    s->idx[i].position >= file_size)
			break;
	}
	return i;
}

static uint32_t valid_time_prefix(const struct rmq_segment *s, uint64_t tim_bytes,
				  uint32_t max_rel)
{
	uint32_t n = (uint32_t)(tim_bytes / sizeof(struct rmq_time_entry));
	uint32_t i;

	for (i = 0; i < n; i++) {
		const struct rmq_time_entry *e = &s->tim[i];
		if (e->zero != 0 || e->rel_offset > max_rel || e->timestamp_ms < 0)
			break;
		if (i > 0 && (e->timestamp_ms <= s->tim[i - 1].timestamp_ms ||
			      e->rel_offset <= s->tim[i - 1].rel_offset))
			break;
	}
	return i;
}

/* Returns the length of the trailing run of data up to the last nonzero
 * byte of [from, size): how much real data recovery discards.  Reads the
 * mapping; only called when recovery found a bad entry. */
static uint64_t nonzero_extent(const uint8_t *map, uint64_t from, uint64_t size)
{
	uint64_t end = size;
	while (end > from && map[end - 1] == 0)
		end--;
	return end - from;
}

/* How far past a zero byte the scan looks for more data (see scan()). */
#define RMQ_SCAN_ZERO_WINDOW (64u << 10)

/* True when the time index's valid prefix of `valid` entries can be used:
 * it is not empty (the first batch always gets an entry) and only zero
 * entries, the unused room of an unsealed file, follow it.  Anything else
 * is damage; and a time index that lost entries understates the segment's
 * greatest timestamp, so that time lookups skip batches of the segment and
 * time retention deletes it early.  Reads the entries after the prefix
 * (zero pages of a sparse file, at memory speed). */
static bool time_index_ok(const struct rmq_segment *s, uint32_t valid, uint64_t tim_bytes)
{
	uint32_t n = (uint32_t)(tim_bytes / sizeof(struct rmq_time_entry));

	if (valid == 0)
		return false;
	for (uint32_t i = valid; i < n; i++) {
		const struct rmq_time_entry *e = &s->tim[i];
		if (e->timestamp_ms != 0 || e->rel_offset != 0 || e->zero != 0)
			return false;
	}
	return true;
}

/*
 * Scans entries from pos (whose batch must start at expect_offset) to the
 * end of the data, checking each CRC, recording them in the indexes when
 * index_from <= their position, and updating next_offset, size and the
 * timestamps.  Fills rec.
 */
static void scan(struct rmq_segment *s, uint64_t pos, uint64_t expect_offset,
		 uint64_t file_size, uint64_t index_from, uint32_t interval,
		 struct rmq_segment_recovery *rec)
{
	struct rmq_batch_view v;
	uint64_t torn_len = 0;

	rec->error = 0;
	while (pos < file_size) {
		int n = rmq_batch_parse(s->map + pos, file_size - pos, &v);
		if (n == 0) {
			/* A zero byte ends the data only when zeros follow it.  Data
			 * after it means damage (a zeroed key byte, a lost page):
			 * treating it as the end would drop every later batch
			 * without a word.  The look ahead is bounded so that opening
			 * a big preallocated segment does not read all of it. */
			uint64_t end = file_size - pos > RMQ_SCAN_ZERO_WINDOW
					       ? pos + RMQ_SCAN_ZERO_WINDOW
					       : file_size;
			if (nonzero_extent(s->map, pos, end) > 0)
				rec->error = RMQ_ECORRUPT;
			break;
		}
		if (n < 0) {
			rec->error = n;
			break;
		}
		if (v.hdr.base_offset != expect_offset) {
			rec->error = RMQ_ECORRUPT;
			break;
		}
		if (rmq_batch_check_crc(s->map + pos, &v) < 0) {
			rec->error = RMQ_ECRC;
			torn_len = v.entry_len;
			break;
		}
		if (pos >= index_from)
			rmq_segment_index_batch(s, v.hdr.base_offset, pos, v.entry_len,
						v.hdr.max_timestamp_ms, interval);
		else if (v.hdr.max_timestamp_ms > s->max_timestamp_ms)
			s->max_timestamp_ms = v.hdr.max_timestamp_ms;
		if (s->created_ms < 0)
			s->created_ms = (int64_t)v.hdr.log_append_time_ms;
		expect_offset = v.hdr.base_offset + v.hdr.record_count;
		pos += (uint64_t)n;
		rec->batches++;
		rec->records += v.hdr.record_count;
	}
	s->next_offset = expect_offset;
	s->size = pos;
	s->visible_size = pos;
	rec->valid_bytes = pos;
	/* In a recycled file an older segment's bytes follow the data: only a
	 * batch of the expected offset whose CRC fails (a torn write) is
	 * ours, and anything else ends the data cleanly. */
	rec->discarded_bytes = !rec->error ? 0
			       : s->recycled ? torn_len
					     : nonzero_extent(s->map, pos, file_size);
	if (rec->error && rec->discarded_bytes == 0)
		rec->error = 0; /* only zeros after all: a clean end */
}

int rmq_segment_open(struct rmq_segment *s, const char *dir, uint64_t base_offset,
		     uint64_t capacity, uint32_t index_interval_bytes, bool full_scan,
		     struct rmq_segment_recovery *rec)
{
	char name[sizeof(s->path) + 16];
	struct stat st;
	uint64_t idx_bytes = 0, tim_bytes = 0;
	int rc;

	memset(rec, 0, sizeof(*rec));
	segment_init(s, dir, base_offset);
	file_name(name, sizeof(name), s, KIND_RECYCLED);
	if (access(name, F_OK) == 0) {
		/* Only the newest segment can still hold old bytes: sealing
		 * cut an older one before its marker went. */
		s->recycled = true;
		if (!full_scan)
			drop_marker(s);
	}
	file_name(name, sizeof(name), s, 0);
	s->fd = open(name, O_RDWR | O_CLOEXEC);
	if (s->fd < 0)
		return -errno;
	if (fstat(s->fd, &st) < 0) {
		rc = -errno;
		goto err;
	}
	uint64_t file_size = (uint64_t)st.st_size;
	s->prealloc_end = file_size;
	rc = map_log(s, file_size > capacity ? file_size : capacity);
	if (rc < 0)
		goto err;
	uint32_t cap = index_cap(file_size > capacity ? file_size : capacity, index_interval_bytes);
	rc = open_indexes(s, cap, true, &idx_bytes, &tim_bytes);
	if (rc < 0)
		goto err;
	/* The newest segment of a log that stored nothing in it since it was
	 * made: none of its three files holds data (no_data), so every byte
	 * of them reads as zero, which is what an empty segment's files must
	 * hold.  Nothing needs reading, rebuilding or syncing, and nothing is
	 * after the data for the log to cut (rec->untouched).  Each empty
	 * partition used to cost five fsyncs, three ftruncates and a scan of
	 * preallocated zeros here at every start (docs/storage.md, "Many
	 * partitions").  A recycled file has old bytes: it never qualifies. */
	if (full_scan && !s->recycled && no_data(s->fd, file_size) &&
	    no_data(s->idx_fd, idx_bytes) && no_data(s->tim_fd, tim_bytes)) {
		rec->untouched = true;
		s->checked = true;
		index_fds_close(s);
		return 0;
	}

	uint32_t n_valid = full_scan ? 0 : valid_index_prefix(s, file_size, idx_bytes);
	uint32_t n = n_valid, tim_valid = 0;
	uint64_t pos = 0, expect = base_offset;
	if (n > 0) {
		tim_valid = valid_time_prefix(s, tim_bytes, s->idx[n - 1].rel_offset);
		if (!time_index_ok(s, tim_valid, tim_bytes))
			n = 0; /* damaged: rebuild both */
	}
	if (n > 0) {
		/* Time entries are added at offset entries, when the greatest
		 * timestamp grew.  The last one holds the maximum up to its
		 * batch; what came after it must be read again, as a crash may
		 * have kept an offset entry and lost the time entry beside it
		 * (two files, written back independently), and the batches
		 * between index entries are not read otherwise.  Usually that
		 * is the last index entry; with timestamps that rarely grow it
		 * can be a long way back, and opening reads that much. */
		uint32_t t_rel = s->tim[tim_valid - 1].rel_offset;
		while (n > 0 && s->idx[n - 1].rel_offset > t_rel)
			n--;
		if (n == 0 || s->idx[n - 1].rel_offset != t_rel)
			n = 0; /* a time entry off every index entry: damage */
	}
	if (n > 0) {
		/* Trust the index up to that entry if it sits on a batch of
		 * the right offset; scan (and index) the rest. */
		struct rmq_batch_view v;
		const struct rmq_index_entry *last = &s->idx[n - 1];
		int k = rmq_batch_parse(s->map + last->position, file_size - last->position, &v);
		if (k <= 0 || v.hdr.base_offset != base_offset + last->rel_offset) {
			n = 0; /* either index is damaged: rebuild both */
		} else {
			pos = last->position;
			expect = v.hdr.base_offset;
		}
	}
	if (n == 0) {
		/* The newest segment's indexes are always rebuilt; only a
		 * rejected index of an older one is news. */
		rec->index_rebuilt = !full_scan;
		clear_index(s->idx_fd, s->idx, (size_t)s->idx_cap * sizeof(*s->idx));
		clear_index(s->tim_fd, s->tim, (size_t)s->tim_cap * sizeof(*s->tim));
		s->idx_count = s->tim_count = 0;
		scan(s, 0, base_offset, file_size, 0, index_interval_bytes, rec);
	} else {
		s->idx_count = n - 1; /* the last entry is re-added by the scan */
		/* The maximum of every batch before the scan, including those
		 * between index entries.  (Dropping the last time entry and
		 * letting the scan re-add it from its batch alone lost a
		 * greater timestamp between the last two index entries.)  The
		 * scan adds no second entry for that batch: its timestamp is
		 * not above the maximum. */
		s->tim_count = tim_valid;
		s->max_timestamp_ms = s->tim[tim_valid - 1].timestamp_ms;
		s->bytes_since_index = index_interval_bytes; /* index the next batch */
		/* created_ms comes from the first batch, which the scan skips. */
		struct rmq_batch_view v0;
		if (rmq_batch_parse(s->map, file_size, &v0) > 0)
			s->created_ms = (int64_t)v0.hdr.log_append_time_ms;
		scan(s, pos, expect, file_size, pos, index_interval_bytes, rec);
		for (uint32_t i = s->idx_count; i < s->idx_cap && s->idx[i].position != 0; i++) {
			s->idx[i] = (struct rmq_index_entry){0, 0};
			s->index_rewritten = true;
		}
	}
	/* Index entries are never synced as they are added, only here: a
	 * rebuilt index, or entries added past the valid prefix, may differ
	 * from what the file holds at the same places, and a crash that
	 * wrote back some pages of the new content and not others could then
	 * leave stale entries inside a prefix that checks out.  Once the file
	 * matches memory, every entry that reaches the disk belongs to the
	 * data, as only appends add entries (rmq_segment_cut syncs too).  The
	 * scan re-adds the entries it passes; only new or changed ones count. */
	bool rewritten = n == 0 || s->idx_count > n_valid || s->tim_count > tim_valid ||
			 s->index_rewritten;
	s->index_rewritten = false;
	if (rewritten && (rmq_sys_fsync(s->idx_fd) < 0 || rmq_sys_fsync(s->tim_fd) < 0)) {
		rc = -errno;
		goto err;
	}
	s->checked = full_scan;
	index_fds_close(s);
	return 0;
err:
	rmq_segment_close(s);
	return rc;
}

/* Extends fd's file to bytes when it is shorter.  An ftruncate to the size
 * a file already has still changes its times, a metadata write for the
 * fsync after it.  Returns 0 or a negated errno. */
static int grow_file(int fd, uint64_t bytes)
{
	struct stat st;

	if (fstat(fd, &st) < 0)
		return -errno;
	if ((uint64_t)st.st_size >= bytes)
		return 0;
	return rmq_sys_ftruncate(fd, (off_t)bytes) < 0 ? -errno : 0;
}

int rmq_segment_cut(struct rmq_segment *s, uint64_t size, uint64_t capacity,
		    enum rmq_prealloc prealloc)
{
	uint32_t rel_end = (uint32_t)(s->next_offset - s->base_offset);

	if (rmq_sys_ftruncate(s->fd, (off_t)size) < 0)
		return -errno;
	drop_marker(s);
	s->prealloc_end = size;
	if (size < capacity) {
		int rc = preallocate(s, size + RMQ_PREALLOC_MIN, capacity, prealloc);
		if (rc < 0)
			return rc;
	}
	while (s->idx_count > 0 && s->idx[s->idx_count - 1].position >= size) {
		s->idx_count--;
		s->idx[s->idx_count] = (struct rmq_index_entry){0, 0};
	}
	while (s->tim_count > 0 && s->tim[s->tim_count - 1].rel_offset >= rel_end) {
		s->tim_count--;
		s->tim[s->tim_count] = (struct rmq_time_entry){0, 0, 0};
	}
	s->size = size;
	if (s->visible_size > size)
		s->visible_size = size;
	s->bytes_since_index = s->idx_count ? s->bytes_since_index : 0;
	/* The greatest timestamp and the age must not keep counting batches
	 * that are gone: time retention would keep the segment for them and
	 * segment.ms would roll it early.  The last time entry holds the
	 * maximum up to the last offset index entry's batch (they are added
	 * together); the batches from there to the cut are re-read. */
	s->max_timestamp_ms = s->tim_count ? s->tim[s->tim_count - 1].timestamp_ms : -1;
	for (uint64_t p = s->idx_count ? s->idx[s->idx_count - 1].position : 0; p < size;) {
		struct rmq_batch_view v;
		int n = rmq_batch_parse_header(s->map + p, size - p, &v);
		if (n <= 0)
			break; /* cannot happen: cuts land on batch boundaries */
		if (v.hdr.max_timestamp_ms > s->max_timestamp_ms)
			s->max_timestamp_ms = v.hdr.max_timestamp_ms;
		p += (uint64_t)n;
	}
	if (size == 0)
		s->created_ms = -1;
	/* Files sealed by earlier versions were cut to their entries: give
	 * appends room again (opening grew them already, unless they were a
	 * part of a page short).  The entries past the cut were zeroed and the
	 * appends after it write new ones in their places: the files must hold
	 * the zeros first (see rmq_segment_open).  Their descriptors are
	 * opened for this and closed after (segment.h, idx_fd). */
	int rc = index_fds_reopen(s);
	if (rc == 0)
		rc = grow_file(s->idx_fd, (uint64_t)s->idx_cap * sizeof(*s->idx));
	if (rc == 0)
		rc = grow_file(s->tim_fd, (uint64_t)s->tim_cap * sizeof(*s->tim));
	if (rc < 0)
		return rc;
	if (rmq_sys_fsync(s->fd) < 0 || rmq_sys_fsync(s->idx_fd) < 0 || rmq_sys_fsync(s->tim_fd) < 0)
		return -errno;
	index_fds_close(s);
	s->sealed = false;
	return 0;
}

int rmq_segment_seal_cut(struct rmq_segment *s)
{
	/* The index files keep their size: the entries end at the first
	 * zero one (valid_index_prefix), the pages past them hold no blocks,
	 * and every open extends them to capacity again anyway.  Cutting them
	 * cost two more synchronous journal updates per roll (0.25 ms each
	 * here). */
	if (rmq_sys_ftruncate(s->fd, (off_t)s->size) < 0)
		return -errno;
	return 0;
}

void rmq_segment_sealed(struct rmq_segment *s)
{
	drop_marker(s);
	s->sealed = true;
}


/* Index entry with the greatest relative offset <= rel; -1 if none. */
static int64_t index_floor(const struct rmq_segment *s, uint32_t rel)
{
	uint32_t lo = 0, hi = s->idx_count;

	while (lo < hi) {
		uint32_t mid = lo + (hi - lo) / 2;
		if (s->idx[mid].rel_offset <= rel)
			lo = mid + 1;
		else
			hi = mid;
	}
	return (int64_t)lo - 1;
}

int64_t rmq_segment_index_exact(const struct rmq_segment *s, uint64_t offset)
{
	if (offset < s->base_offset || offset - s->base_offset > UINT32_MAX)
		return -1;
	int64_t i = index_floor(s, (uint32_t)(offset - s->base_offset));
	return i >= 0 && s->base_offset + s->idx[i].rel_offset == offset ? i : -1;
}

int64_t rmq_segment_index_upto(const struct rmq_segment *s, uint64_t after, uint64_t upto)
{
	uint32_t lo = 0, hi = s->idx_count;
	while (lo < hi) { /* the first entry past upto */
		uint32_t mid = lo + (hi - lo) / 2;
		if (s->idx[mid].position <= upto)
			lo = mid + 1;
		else
			hi = mid;
	}
	return lo > 0 && s->idx[lo - 1].position > after ? (int64_t)lo - 1 : -1;
}

uint64_t rmq_segment_check(const struct rmq_segment *s, uint64_t limit, uint64_t *end)
{
	struct rmq_batch_view v;
	uint64_t pos = 0, next = s->base_offset;

	while (pos < limit) {
		int n = rmq_batch_parse(s->map + pos, limit - pos, &v);
		if (n <= 0 || v.hdr.base_offset != next || rmq_batch_check_crc(s->map + pos, &v) < 0)
			break;
		next = v.hdr.base_offset + v.hdr.record_count;
		pos += (uint64_t)n;
	}
	*end = next;
	return pos;
}

int64_t rmq_segment_find(const struct rmq_segment *s, uint64_t offset, uint64_t limit,
			 struct rmq_batch_view *out)
{
	struct rmq_batch_view tmp, *v = out ? out : &tmp;

	if (offset < s->base_offset || offset >= s->next_offset)
		return RMQ_ERANGE;
	int64_t i = index_floor(s, (uint32_t)(offset - s->base_offset));
	uint64_t pos = i >= 0 ? s->idx[i].position : 0;
	while (pos < limit) {
		int n = rmq_batch_parse_header(s->map + pos, limit - pos, v);
		if (n <= 0)
			return RMQ_ECORRUPT;
		if (rmq_batch_last_offset(&v->hdr) >= offset)
			return v->hdr.base_offset <= offset ? (int64_t)pos : RMQ_ECORRUPT;
		pos += (uint64_t)n;
	}
	return RMQ_ERANGE;
}

int64_t rmq_segment_find_time(const struct rmq_segment *s, int64_t ts_ms, uint64_t limit,
			      uint64_t *offset)
{
	struct rmq_batch_view v;
	uint32_t lo = 0, hi = s->tim_count;
	uint64_t pos = 0;

	if (s->max_timestamp_ms < ts_ms)
		return RMQ_ENOTFOUND;
	/* The last entry whose running maximum is still below ts_ms: no batch
	 * up to its offset can qualify, so the scan starts there. */
	while (lo < hi) {
		uint32_t mid = lo + (hi - lo) / 2;
		if (s->tim[mid].timestamp_ms < ts_ms)
			lo = mid + 1;
		else
			hi = mid;
	}
	if (lo > 0) {
		int64_t p = rmq_segment_find(s, s->base_offset + s->tim[lo - 1].rel_offset, limit,
					     NULL);
		if (p >= 0)
			pos = (uint64_t)p;
	}
	while (pos < limit) {
		int n = rmq_batch_parse_header(s->map + pos, limit - pos, &v);
		if (n <= 0)
			return RMQ_ECORRUPT;
		if (v.hdr.max_timestamp_ms >= ts_ms) {
			*offset = v.hdr.base_offset;
			return (int64_t)pos;
		}
		pos += (uint64_t)n;
	}
	return RMQ_ENOTFOUND;
}
