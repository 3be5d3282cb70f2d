/* SPDX-License-Identifier: Apache-2.0 */
/*
 * storage_bench - the partition log's write speed against the disk's.
 *
 * Appends --record-bytes records in batches of --batch to one partition
 * log for --duration, once per fsync policy asked, and reports MB/s of
 * records and the append-to-acknowledged latency (append call to the
 * completion callback: with fsync=always that is append-to-durable).  In the
 * same run it measures the filesystem's own limit with fio (io_uring engine,
 * sequential writes of one batch's size, buffered and O_DIRECT) and prints
 * each rmq figure as a ratio of it, since the machines are shared and noisy.
 * After each log run it reads the newest --read-bytes of that log: random
 * lookups (rmq_log_read of one batch) on what the write left cached, one
 * sequential read-back, and random lookups again with the range resident.
 *
 * The driver is one thread shaped like a shard: each cycle appends until the
 * write buffer refuses (RMQ_EFULL) or --inflight-batches are waiting, flushes
 * once, and runs completions.
 *
 * With --partitions N[,M...] it measures the cost of many partitions on one
 * ring instead (issue 14 item 9): for each count it opens that many new
 * logs and waits until they are idle (their files made and synced in the
 * background: "create"; with the disk and RSS each empty partition takes),
 * closes them ("close") and opens them again as a restarting node does
 * ("reopen"), appends one batch to every one at once until all are
 * acknowledged ("first appends"), then spreads --inflight-batches appends
 * round-robin over all of them for --duration with fsync=always (one flush
 * per appended log per cycle, as the broker's shard hook does), and reports
 * msgs/s and the ack latency.
 */
#include "core/error.h"
#include "core/flags.h"
#include "core/io.h"
#include "core/log.h"
#include "core/pbwire.h"
#include "hist.h"
#include "storage/log.h"

#include <errno.h>
#include <ftw.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

struct opts {
	uint64_t duration_ns;
	uint64_t record_bytes;
	uint64_t batch;
	uint64_t segment_bytes;
	uint64_t write_buffer;
	uint64_t inflight;
	uint64_t lookups;
	uint64_t read_bytes;
	const char *fsync;
	const char *prealloc;
	const char *dir;
	const char *partitions;
	uint64_t pool_bytes;
	bool fio;
	bool json;
};

static uint64_t now_ns(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (uint64_t)ts.tv_sec * 1000000000ULL + (uint64_t)ts.tv_nsec;
}

struct pending {
	struct rmq_append a;
	uint64_t t0;
	struct pending *next_free;
	uint32_t part; /* --partitions: the log it goes to */
};

struct run {
	struct rmq_hist lat;
	struct pending *free_list;
	uint64_t acked, failed;
	uint64_t first_error;
};

static struct run *g_run;

static void on_ack(struct rmq_append *a, int res)
{
	struct pending *p = (struct pending *)a;
	if (res < 0) {
		g_run->failed++;
		if (!g_run->first_error)
			g_run->first_error = (uint64_t)-res;
	} else {
		g_run->acked++;
		rmq_hist_record(&g_run->lat, now_ns() - p->t0);
	}
	p->next_free = g_run->free_list;
	g_run->free_list = p;
}

/* The records payload of one batch: `batch` field-7 elements, each a
 * Record whose value is record_bytes long. */
static uint8_t *make_records(uint64_t batch, uint64_t record_bytes, size_t *len)
{
	size_t body = 1 + rmq_pb_varint_len(record_bytes) + record_bytes;
	size_t one = 1 + rmq_pb_varint_len(body) + body;
	uint8_t *buf = malloc(one * batch);
	size_t n = 0;

	if (!buf)
		return NULL;
	for (uint64_t i = 0; i < batch; i++) {
		n += rmq_pb_put_len(buf + n, 7, body);
		n += rmq_pb_put_len(buf + n, 2, record_bytes);
		for (uint64_t k = 0; k < record_bytes; k++)
			buf[n + k] = (uint8_t)(i * 131 + k * 7);
		n += record_bytes;
	}
	*len = n;
	return buf;
}

struct result {
	const char *policy;
	double mbps, msgs;
	uint64_t p50, p90, p99, p999, max;
	double lookups_per_s;    /* range resident */
	double cold_lookup_ns;   /* on what the write left cached */
	double read_mbps;        /* sequential read-back */
	uint64_t read_bytes;
	uint64_t syncs, writes;
	int error;
};

static int rm_rf(const char *dir)
{
	char cmd[4200];
	snprintf(cmd, sizeof(cmd), "rm -rf '%s'", dir);
	return system(cmd);
}

static void run_policy(const struct opts *o, enum rmq_fsync policy, const char *name,
		       struct result *res)
{
	struct rmq_io_config ic = {.entries = 1024, .fixed_buffers = 8};
	struct rmq_log_config cfg;
	struct rmq_io *io;
	struct rmq_log *log;
	struct run run;
	char dir[4096];
	size_t rlen;
	int rc;

	memset(res, 0, sizeof(*res));
	res->policy = name;
	snprintf(dir, sizeof(dir), "%s/log-%s", o->dir, name);
	rm_rf(dir);
	rmq_hist_reset(&run.lat);
	run.acked = run.failed = run.first_error = 0;
	g_run = &run;

	rc = rmq_io_create(&ic, &io);
	if (rc < 0) {
		res->error = rc;
		return;
	}
	rmq_log_config_default(&cfg);
	cfg.fsync = policy;
	cfg.segment_bytes = o->segment_bytes;
	cfg.write_buffer_bytes = (uint32_t)o->write_buffer;
	cfg.prealloc = strcmp(o->prealloc, "zero") == 0	     ? RMQ_PREALLOC_ZERO
		       : strcmp(o->prealloc, "fallocate") == 0 ? RMQ_PREALLOC_FALLOCATE
							       : RMQ_PREALLOC_NONE;
	rc = rmq_log_open(io, dir, &cfg, &log);
	if (rc < 0) {
		res->error = rc;
		rmq_io_destroy(io);
		return;
	}
	uint8_t *recs = make_records(o->batch, o->record_bytes, &rlen);
	struct iovec iov = {recs, rlen};
	struct pending *pool = calloc(o->inflight, sizeof(*pool));
	run.free_list = NULL;
	for (uint64_t i = 0; i < o->inflight; i++) {
		pool[i].next_free = run.free_list;
		pool[i].a.cb = on_ack;
		run.free_list = &pool[i];
	}

	uint64_t t_start = now_ns(), t_end = t_start + o->duration_ns, appended = 0;
	while (now_ns() < t_end && run.failed == 0) {
		while (run.free_list) {
			struct pending *p = run.free_list;
			rmq_batch_hdr_init(&p->a.hdr);
			p->a.hdr.record_count = (uint32_t)o->batch;
			p->t0 = now_ns();
			rc = rmq_log_append(log, &p->a, &iov, 1);
			if (rc == RMQ_EFULL)
				break;
			if (rc < 0) {
				res->error = rc;
				goto done;
			}
			run.free_list = p->next_free;
			appended++;
		}
		rmq_log_flush(log);
		rc = rmq_io_wait(io, 0);
		if (rc < 0) {
			res->error = rc;
			goto done;
		}
	}
	/* Let what is in flight finish; it counts toward the elapsed time. */
	while (run.acked + run.failed < appended) {
		rmq_log_flush(log);
		if (rmq_io_wait(io, 0) < 0)
			break;
	}
	double secs = (double)(now_ns() - t_start) / 1e9;
	res->msgs = (double)run.acked * (double)o->batch / secs;
	res->mbps = res->msgs * (double)o->record_bytes / 1e6;
	res->p50 = rmq_hist_quantile(&run.lat, 0.50);
	res->p90 = rmq_hist_quantile(&run.lat, 0.90);
	res->p99 = rmq_hist_quantile(&run.lat, 0.99);
	res->p999 = rmq_hist_quantile(&run.lat, 0.999);
	res->max = run.lat.max;
	res->syncs = rmq_log_stats(log)->syncs;
	res->writes = rmq_log_stats(log)->writes;
	if (run.failed)
		res->error = -(int)run.first_error;

	/* Reads, over the newest --read-bytes of the log (all of it when
	 * smaller): what tailing consumers read.  First random lookups on
	 * whatever the write left in the page cache (after O_DIRECT writes,
	 * nothing: each lookup faults its page in from the disk), then one
	 * sequential pass touching every byte (a consumer catching up), then
	 * random lookups again with the range resident: the lookup's own
	 * cost.  A lookup is rmq_log_read() of one batch at a random offset:
	 * offset -> segment -> index -> batch header -> byte ranges. */
	uint64_t hw = rmq_log_high_watermark(log), size = rmq_log_size_bytes(log);
	if (hw > 0 && size > 0 && o->lookups > 0) {
		uint64_t from = size > o->read_bytes
					? hw - (uint64_t)((double)hw * (double)o->read_bytes / (double)size)
					: 0;
		uint64_t span = hw - from, sink = 0, x = 0x9E3779B97F4A7C15ULL;
		uint64_t n_cold = o->lookups < 20000 ? o->lookups : 20000;
		for (int pass = 0; pass < 2; pass++) {
			uint64_t n = pass == 0 ? n_cold : o->lookups;
			uint64_t t0 = now_ns();
			for (uint64_t i = 0; i < n; i++) {
				struct rmq_log_read r;
				x ^= x << 13;
				x ^= x >> 7;
				x ^= x << 17;
				if (rmq_log_read(log, from + x % span, 1, &r) == 0) {
					sink += r.bytes;
					rmq_log_read_done(log, &r);
				}
			}
			double dt = (double)(now_ns() - t0) / 1e9;
			if (pass == 0)
				res->cold_lookup_ns = dt * 1e9 / (double)n;
			else
				res->lookups_per_s = (double)n / dt;
			if (pass == 1)
				break;
			/* The sequential pass, 1 MiB per read. */
			uint64_t t1 = now_ns(), bytes = 0, off = from;
			while (off < hw) {
				struct rmq_log_read r;
				if (rmq_log_read(log, off, 1 << 20, &r) != 0 || r.nslices == 0)
					break;
				for (unsigned k = 0; k < r.nslices; k++) {
					const uint8_t *d = r.slices[k].data;
					for (uint32_t j = 0; j + 8 <= r.slices[k].len; j += 8) {
						uint64_t w;
						memcpy(&w, d + j, 8); /* slices are not aligned */
						sink += w;
					}
				}
				bytes += r.bytes;
				off = r.next_offset;
				rmq_log_read_done(log, &r);
			}
			res->read_mbps = (double)bytes / ((double)(now_ns() - t1) / 1e9) / 1e6;
			res->read_bytes = bytes;
		}
		if (sink == 0)
			res->lookups_per_s = 0;
	}
done:
	rmq_log_close(log);
	rmq_io_destroy(io);
	free(pool);
	free(recs);
	rm_rf(dir);
}

/* ---- many partitions on one ring ---------------------------------------------- */

/* Runs the ring until every log is idle (its files made, nothing in
 * flight), or the ring fails. */
static void wait_idle(struct rmq_io *io, struct rmq_log **logs, uint32_t n)
{
	for (uint32_t i = 0; i < n; i++)
		while (!rmq_log_idle(logs[i]))
			if (rmq_io_wait(io, 100ULL * 1000 * 1000) < 0)
				return;
}

static uint64_t tree_bytes;

static int add_blocks(const char *path, const struct stat *st, int type, struct FTW *ftw)
{
	(void)path;
	(void)type;
	(void)ftw;
	tree_bytes += (uint64_t)st->st_blocks * 512;
	return 0;
}

/* Bytes of disk the files under dir take (allocated blocks). */
static uint64_t disk_bytes(const char *dir)
{
	tree_bytes = 0;
	(void)nftw(dir, add_blocks, 16, FTW_PHYS);
	return tree_bytes;
}

static uint64_t rss_bytes(void)
{
	FILE *f = fopen("/proc/self/statm", "r");
	unsigned long size = 0, res = 0;
	if (f) {
		if (fscanf(f, "%lu %lu", &size, &res) != 2)
			res = 0;
		fclose(f);
	}
	return (uint64_t)res * (uint64_t)sysconf(_SC_PAGESIZE);
}

static void run_partitions(const struct opts *o, uint32_t nparts)
{
	struct rmq_io_config ic = {.entries = 4096, .fixed_buffers = 256};
	struct rmq_log_config cfg;
	struct rmq_wpool_config wc;
	struct rmq_wpool *wpool = NULL;
	struct rmq_io *io;
	char dir[4096], pdir[4200];
	struct run run;
	int rc;

	snprintf(dir, sizeof(dir), "%s/parts-%u", o->dir, nparts);
	rm_rf(dir);
	if (mkdir(dir, 0755) < 0) {
		printf("partitions=%u ERROR cannot create %s: %s\n", nparts, dir, strerror(errno));
		return;
	}
	rmq_hist_reset(&run.lat);
	run.acked = run.failed = run.first_error = 0;
	g_run = &run;
	rc = rmq_io_create(&ic, &io);
	if (rc < 0) {
		printf("partitions=%u ERROR io_uring: %s\n", nparts, rmq_strerror(rc));
		return;
	}
	/* One pool for the ring's logs, as a broker shard has. */
	rmq_wpool_config_default(&wc);
	wc.chunks = (uint32_t)(o->pool_bytes / wc.chunk_bytes);
	rc = rmq_wpool_create(io, &wc, &wpool);
	if (rc < 0) {
		printf("partitions=%u ERROR pool: %s\n", nparts, rmq_strerror(rc));
		rmq_io_destroy(io);
		return;
	}
	rmq_log_config_default(&cfg);
	cfg.wpool = wpool;
	cfg.fsync = strcmp(o->fsync, "never") == 0 ? RMQ_FSYNC_NEVER : RMQ_FSYNC_ALWAYS;
	cfg.segment_bytes = o->segment_bytes;
	cfg.write_buffer_bytes = (uint32_t)o->write_buffer;
	cfg.prealloc = strcmp(o->prealloc, "zero") == 0	     ? RMQ_PREALLOC_ZERO
		       : strcmp(o->prealloc, "fallocate") == 0 ? RMQ_PREALLOC_FALLOCATE
							       : RMQ_PREALLOC_NONE;
	struct rmq_log **logs = calloc(nparts, sizeof(*logs));
	bool *dirty = calloc(nparts, sizeof(*dirty));
	uint32_t *dirty_list = calloc(nparts, sizeof(*dirty_list));
	/* Appends in flight point into firsts and pool: freed at done, after
	 * the logs closed (a close completes what is waiting). */
	struct pending *firsts = NULL, *pool = NULL;
	uint8_t *recs = NULL;
	/* The pool is the shard's, not the partitions': measured apart. */
	uint64_t rss0 = rss_bytes(), t0 = now_ns();
	for (uint32_t i = 0; i < nparts; i++) {
		snprintf(pdir, sizeof(pdir), "%s/p%u", dir, i);
		rc = rmq_log_open(io, pdir, &cfg, &logs[i]);
		if (rc < 0) {
			printf("partitions=%u ERROR opening partition %u: %s\n", nparts, i,
			       rmq_strerror(rc));
			nparts = i;
			goto done;
		}
	}
	/* Until every new log's directory sync (on the ring) is done. */
	wait_idle(io, logs, nparts);
	double open_s = (double)(now_ns() - t0) / 1e9;
	uint64_t rss1 = rss_bytes(), disk = disk_bytes(dir);
	/* A restart of a node holding them: close every log (idle, nothing
	 * written), then open them again, which recovers each. */
	t0 = now_ns();
	for (uint32_t i = 0; i < nparts; i++) {
		rc = rmq_log_close(logs[i]);
		logs[i] = NULL;
		if (rc < 0) {
			printf("partitions=%u ERROR closing partition %u: %s\n", nparts, i,
			       rmq_strerror(rc));
			goto done;
		}
	}
	double close_s = (double)(now_ns() - t0) / 1e9;
	t0 = now_ns();
	for (uint32_t i = 0; i < nparts; i++) {
		snprintf(pdir, sizeof(pdir), "%s/p%u", dir, i);
		rc = rmq_log_open(io, pdir, &cfg, &logs[i]);
		if (rc < 0) {
			printf("partitions=%u ERROR reopening partition %u: %s\n", nparts, i,
			       rmq_strerror(rc));
			goto done;
		}
	}
	wait_idle(io, logs, nparts);
	double reopen_s = (double)(now_ns() - t0) / 1e9;
	uint64_t disk2 = disk_bytes(dir);

	size_t rlen;
	recs = make_records(o->batch, o->record_bytes, &rlen);
	struct iovec iov = {recs, rlen};

	/* One batch to every partition at once, until all are acknowledged:
	 * what a partition's first append costs (its space reserved through
	 * the ring, its first write), apart from the steady produce measured
	 * after it. */
	firsts = calloc(nparts, sizeof(*firsts));
	uint32_t started = 0;
	t0 = now_ns();
	while (run.acked + run.failed < nparts) {
		for (uint32_t i = started; i < nparts; i++) {
			struct pending *p = &firsts[i];
			rmq_batch_hdr_init(&p->a.hdr);
			p->a.hdr.record_count = (uint32_t)o->batch;
			p->a.cb = on_ack;
			p->t0 = now_ns();
			rc = rmq_log_append(logs[i], &p->a, &iov, 1);
			if (rc == RMQ_EFULL)
				break; /* in order: the rest next cycle */
			if (rc < 0) {
				printf("partitions=%u ERROR first append: %s\n", nparts,
				       rmq_strerror(rc));
				goto done;
			}
			started = i + 1;
		}
		for (uint32_t i = 0; i < started; i++)
			rmq_log_flush(logs[i]);
		if (rmq_io_wait(io, 100ULL * 1000 * 1000) < 0)
			break;
	}
	double first_s = (double)(now_ns() - t0) / 1e9;
	double first_p50_ms = rmq_hist_quantile(&run.lat, 0.50) / 1e6;
	uint64_t first_failed = run.failed;
	run.acked = run.failed = 0;
	rmq_hist_reset(&run.lat);

	pool = calloc(o->inflight, sizeof(*pool));
	struct pending *free_list = NULL;
	for (uint64_t i = 0; i < o->inflight; i++) {
		pool[i].a.cb = on_ack;
		pool[i].next_free = free_list;
		free_list = &pool[i];
	}
	run.free_list = NULL;
	uint64_t appended = 0, refused = 0;
	uint32_t next = 0, ndirty = 0;
	uint64_t t_start = now_ns(), t_end = t_start + o->duration_ns;
	for (;;) {
		bool running = now_ns() < t_end && run.failed == 0;
		/* on_ack pushes finished appends on run.free_list. */
		while (run.free_list) {
			struct pending *p = run.free_list;
			run.free_list = run.free_list->next_free;
			p->next_free = free_list;
			free_list = p;
		}
		if (!running && appended == run.acked + run.failed)
			break;
		/* One pass over the free slots: a partition that refuses
		 * (RMQ_EFULL) keeps its slot for the next cycle. */
		struct pending *keep = NULL;
		while (running && free_list) {
			struct pending *p = free_list;
			free_list = p->next_free;
			rmq_batch_hdr_init(&p->a.hdr);
			p->a.hdr.record_count = (uint32_t)o->batch;
			p->part = next++ % nparts;
			p->t0 = now_ns();
			rc = rmq_log_append(logs[p->part], &p->a, &iov, 1);
			if (rc == RMQ_EFULL) {
				refused++;
				p->next_free = keep;
				keep = p;
				continue;
			}
			if (rc < 0) {
				printf("partitions=%u ERROR append: %s\n", nparts, rmq_strerror(rc));
				running = false;
				p->next_free = keep;
				keep = p;
				break;
			}
			appended++;
			if (!dirty[p->part]) {
				dirty[p->part] = true;
				dirty_list[ndirty++] = p->part;
			}
		}
		while (keep) {
			struct pending *p = keep;
			keep = p->next_free;
			p->next_free = free_list;
			free_list = p;
		}
		for (uint32_t k = 0; k < ndirty; k++) {
			rmq_log_flush(logs[dirty_list[k]]);
			dirty[dirty_list[k]] = false;
		}
		ndirty = 0;
		/* Logs with appends in flight flush again as completions free
		 * room; the broker marks them dirty the same way. */
		if (!running)
			for (uint32_t i = 0; i < nparts; i++)
				rmq_log_flush(logs[i]);
		if (rmq_io_wait(io, 100ULL * 1000 * 1000) < 0)
			break;
	}
	double secs = (double)(now_ns() - t_start) / 1e9;
	double msgs = (double)run.acked * (double)o->batch / secs;
	printf("partitions=%-5u create %.3f s  close %.3f s  reopen %.3f s  first appends %.3f s "
	       "(ack p50 %.1f ms)   empty partition: disk %.1f KiB (%.1f reopened)  RSS %.1f KiB   "
	       "produce %10.0f msg/s %8.1f MB/s   ack p50 %7.1f us  p99 %8.1f  p99.9 %8.1f   "
	       "refused %" PRIu64 "%s\n",
	       nparts, open_s, close_s, reopen_s, first_s, first_p50_ms, (double)disk / nparts / 1024,
	       (double)disk2 / nparts / 1024, (double)(rss1 - rss0) / nparts / 1024,
	       msgs, msgs * (double)o->record_bytes / 1e6, rmq_hist_quantile(&run.lat, 0.50) / 1e3,
	       rmq_hist_quantile(&run.lat, 0.99) / 1e3, rmq_hist_quantile(&run.lat, 0.999) / 1e3,
	       refused, run.failed || first_failed ? "  (appends failed)" : "");
done:
	for (uint32_t i = 0; i < nparts; i++)
		if (logs[i])
			rmq_log_close(logs[i]);
	free(firsts);
	free(pool);
	free(recs);
	free(logs);
	free(dirty);
	free(dirty_list);
	rmq_wpool_destroy(wpool);
	rmq_io_destroy(io);
	rm_rf(dir);
}

/* Runs fio and returns its write bandwidth in MB/s, or a negative value. */
static double run_fio(const struct opts *o, bool direct, uint64_t bs)
{
	char cmd[8192], path[4200];
	snprintf(path, sizeof(path), "%s/fio.tmp", o->dir);
	/* Same block size as one stored batch, io_uring, sequential, for as
	 * long as a log run.  Time-based over a file larger than fio can fill
	 * in that time: with --size=2G alone fio stopped after 2 GB, well
	 * under a second of buffered writes into free memory, and compared
	 * that burst with five seconds of sustained log appends (8 GB
	 * time-based ran at a third of the 2 GB figure; docs/storage.md). */
	snprintf(cmd, sizeof(cmd),
		 "fio --name=rmq --filename='%s' --size=16G --time_based --bs=%" PRIu64
		 " --rw=write --ioengine=io_uring --iodepth=8 --direct=%d"
		 " --runtime=%" PRIu64 "ms --output-format=json 2>/dev/null",
		 path, direct ? (bs + 4095) / 4096 * 4096 : bs, direct ? 1 : 0,
		 o->duration_ns / 1000000);
	FILE *f = popen(cmd, "r");
	if (!f)
		return -1;
	static char out[1 << 20];
	size_t n = fread(out, 1, sizeof(out) - 1, f);
	out[n] = '\0';
	int st = pclose(f);
	unlink(path);
	if (st != 0)
		return -1;
	char *w = strstr(out, "\"write\" : {");
	char *b = w ? strstr(w, "\"bw_bytes\"") : NULL;
	if (!b)
		return -1;
	return strtod(b + strlen("\"bw_bytes\"") + 2, NULL) / 1e6;
}

static void print_result(const struct result *r, double fio_buf, double fio_direct)
{
	if (r->error) {
		printf("fsync=%-7s ERROR %s\n", r->policy, rmq_strerror(r->error));
		return;
	}
	double base = strcmp(r->policy, "always") == 0 ? fio_direct : fio_buf;
	const char *what = strcmp(r->policy, "always") == 0 ? "fio direct" : "fio buffered";
	printf("fsync=%-7s %9.1f MB/s %10.0f msg/s   ack p50 %7.1f us  p90 %7.1f  p99 %7.1f  "
	       "p99.9 %7.1f  max %8.1f   writes %" PRIu64 " syncs %" PRIu64,
	       r->policy, r->mbps, r->msgs, r->p50 / 1e3, r->p90 / 1e3, r->p99 / 1e3,
	       r->p999 / 1e3, r->max / 1e3, r->writes, r->syncs);
	if (base > 0)
		printf("   = %.2f x %s", r->mbps / base, what);
	printf("\n");
	if (r->lookups_per_s > 0)
		printf("  reads (%s log, newest %.0f MiB): lookups as written %.1f us each; "
		       "sequential read-back %.0f MB/s; lookups resident %.2f M/s (%.0f ns each)\n",
		       r->policy, (double)r->read_bytes / (1 << 20), r->cold_lookup_ns / 1e3,
		       r->read_mbps, r->lookups_per_s / 1e6, 1e9 / r->lookups_per_s);
}

int main(int argc, char **argv)
{
	struct opts o;
	char err[256];
	int npos;
	const struct rmq_flag flags[] = {
		{"duration", RMQ_FLAG_DURATION, &o.duration_ns, "5s", "time per measurement", 100000000ULL, 0, NULL},
		{"record-bytes", RMQ_FLAG_SIZE, &o.record_bytes, "1KiB", "value bytes per record", 1, 1ULL << 20, NULL},
		{"batch", RMQ_FLAG_UINT, &o.batch, "100", "records per batch", 1, 100000, NULL},
		{"segment-bytes", RMQ_FLAG_SIZE, &o.segment_bytes, "1GiB", "segment size", 1ULL << 20, (1ULL << 32) - 1, NULL},
		{"write-buffer", RMQ_FLAG_SIZE, &o.write_buffer, "8MiB", "log write buffer", 1ULL << 16, 1ULL << 30, NULL},
		{"inflight-batches", RMQ_FLAG_UINT, &o.inflight, "32", "appends waiting at once", 1, 1000000, NULL},
		{"lookups", RMQ_FLAG_UINT, &o.lookups, "1000000", "random offset lookups timed", 0, 0, NULL},
		{"read-bytes", RMQ_FLAG_SIZE, &o.read_bytes, "1GiB", "newest log bytes read back and looked up in", 1ULL << 20, 0, NULL},
		{"fsync", RMQ_FLAG_CHOICE, &o.fsync, "both", "policies to measure", 0, 0, "always|never|both"},
		{"prealloc", RMQ_FLAG_CHOICE, &o.prealloc, "zero", "segment preallocation", 0, 0, "zero|fallocate|none"},
		{"dir", RMQ_FLAG_STRING, &o.dir, "bench-data", "scratch directory (on the disk to measure)", 0, 0, NULL},
		{"fio", RMQ_FLAG_BOOL, &o.fio, "true", "measure the disk with fio in the same run", 0, 0, NULL},
		{"partitions", RMQ_FLAG_STRING, &o.partitions, "", "instead: partition counts to measure on one ring, comma-separated (e.g. 4,1000)", 0, 0, NULL},
		{"pool-bytes", RMQ_FLAG_SIZE, &o.pool_bytes, "32MiB", "with --partitions: the ring's shared write-buffer pool (rmqd: 8 x --write-buffer)", 512ULL << 10, 1ULL << 34, NULL},
	};
	size_t nflags = sizeof(flags) / sizeof(flags[0]);

	rmq_log_set_level(RMQ_LOG_WARN);
	int rc = rmq_flags_parse(argc, argv, flags, nflags, &npos, err, sizeof(err));
	if (rc == 1) {
		printf("usage: storage_bench [flags]\n\n");
		rmq_flags_usage(stdout, flags, nflags);
		return 0;
	}
	if (rc < 0 || npos > 0) {
		fprintf(stderr, "storage_bench: %s\n", rc < 0 ? err : "unexpected argument");
		return 2;
	}
	if (mkdir(o.dir, 0755) < 0 && errno != EEXIST) {
		fprintf(stderr, "storage_bench: cannot create %s: %s\n", o.dir, strerror(errno));
		return 1;
	}

	if (o.partitions[0]) {
		printf("storage_bench: %" PRIu64 " B records x %" PRIu64 " per batch, %" PRIu64
		       " appends in flight over all partitions, fsync=%s, %s preallocation, "
		       "write buffers: %.0f MiB pool, %.0f MiB per partition at most, "
		       "%.1f s per run, dir %s\n",
		       o.record_bytes, o.batch, o.inflight,
		       strcmp(o.fsync, "never") == 0 ? "never" : "always", o.prealloc,
		       (double)o.pool_bytes / (1 << 20), (double)o.write_buffer / (1 << 20),
		       (double)o.duration_ns / 1e9, o.dir);
		for (const char *p = o.partitions; *p;) {
			char *end;
			unsigned long n = strtoul(p, &end, 10);
			if (end == p || n == 0 || n > 100000) {
				fprintf(stderr, "storage_bench: bad --partitions '%s'\n", o.partitions);
				return 2;
			}
			run_partitions(&o, (uint32_t)n);
			p = *end == ',' ? end + 1 : end;
		}
		return 0;
	}
	/* One stored batch: records plus about 60 bytes of header. */
	size_t rlen;
	free(make_records(o.batch, o.record_bytes, &rlen));
	uint64_t bs = rlen + 64;
	printf("storage_bench: %" PRIu64 " B records x %" PRIu64 " per batch (%zu B stored), %s "
	       "preallocation, %.1f s per run, dir %s\n",
	       o.record_bytes, o.batch, (size_t)bs, o.prealloc, (double)o.duration_ns / 1e9, o.dir);

	double fio_buf = -1, fio_direct = -1;
	if (o.fio) {
		fio_buf = run_fio(&o, false, bs);
		fio_direct = run_fio(&o, true, bs);
		if (fio_buf < 0 || fio_direct < 0)
			printf("fio: not available or failed (install the fio package)\n");
		else
			printf("fio  buffered %9.1f MB/s   direct %9.1f MB/s   (io_uring, bs %" PRIu64 ", iodepth 8)\n",
			       fio_buf, fio_direct, bs);
	}
	struct result r;
	double best_lookups = 0;
	bool all = strcmp(o.fsync, "both") == 0;
	int failed = 0;
	if (all || strcmp(o.fsync, "never") == 0) {
		run_policy(&o, RMQ_FSYNC_NEVER, "never", &r);
		print_result(&r, fio_buf, fio_direct);
		failed |= r.error != 0;
		best_lookups = r.lookups_per_s > best_lookups ? r.lookups_per_s : best_lookups;
	}
	if (all || strcmp(o.fsync, "always") == 0) {
		run_policy(&o, RMQ_FSYNC_ALWAYS, "always", &r);
		print_result(&r, fio_buf, fio_direct);
		failed |= r.error != 0;
		best_lookups = r.lookups_per_s > best_lookups ? r.lookups_per_s : best_lookups;
	}
	if (best_lookups > 0)
		printf("lookups  %.2f M/s (%.0f ns each): offset -> byte ranges of one batch, resident\n",
		       best_lookups / 1e6, 1e9 / best_lookups);
	return failed ? 1 : 0;
}
