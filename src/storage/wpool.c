/* SPDX-License-Identifier: Apache-2.0 */
/* wpool.c - a shard's shared write buffers (see wpool.h). */
#include "storage/wpool.h"

#include "core/assert.h"
#include "core/error.h"
#include "core/log.h"

#include <errno.h>
#include <inttypes.h>
#include <stdbool.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>

struct rmq_wpool {
	struct rmq_io *io;
	uint8_t *region;
	size_t region_bytes;
	uint32_t chunk_bytes;
	uint32_t nchunks;
	uint32_t nfree;
	uint32_t run_max;
	int slot;               /* fixed-buffer slot, or -1 */
	uint64_t *used;         /* one bit per chunk */
	uint64_t large_bytes, large_bytes_max;
	uint64_t refused;
};

void rmq_wpool_config_default(struct rmq_wpool_config *cfg)
{
	cfg->chunk_bytes = 256u << 10;
	cfg->chunks = 256;
	cfg->run_max_chunks = 0;
	cfg->large_bytes_max = 0;
}

int rmq_wpool_create(struct rmq_io *io, const struct rmq_wpool_config *cfg,
		     struct rmq_wpool **out)
{
	uint32_t cb = cfg->chunk_bytes;

	if (cb < (64u << 10) || cb > (64u << 20) || (cb & (cb - 1)) != 0 || cfg->chunks < 2 ||
	    cfg->chunks > 65536 || cfg->run_max_chunks > cfg->chunks)
		return RMQ_EBADFLAG;
	struct rmq_wpool *p = calloc(1, sizeof(*p));
	if (!p)
		return -ENOMEM;
	p->io = io;
	p->chunk_bytes = cb;
	p->nchunks = p->nfree = cfg->chunks;
	p->run_max = cfg->run_max_chunks ? cfg->run_max_chunks
					 : (cfg->chunks / 4 ? cfg->chunks / 4 : 1);
	p->region_bytes = (size_t)cb * cfg->chunks;
	p->large_bytes_max = cfg->large_bytes_max ? cfg->large_bytes_max : p->region_bytes;
	p->used = calloc((cfg->chunks + 63) / 64, sizeof(*p->used));
	p->region = mmap(NULL, p->region_bytes, PROT_READ | PROT_WRITE,
			 MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
	if (!p->used || p->region == MAP_FAILED) {
		if (p->region != MAP_FAILED && p->region)
			munmap(p->region, p->region_bytes);
		free(p->used);
		free(p);
		return -ENOMEM;
	}
	/* Huge pages where the kernel has them (THP "madvise" mode, as on
	 * Debian's default): a write from 2 MiB pages is a few DMA segments
	 * instead of one per 4 KiB page, and O_DIRECT writes of ~300 KiB
	 * completed in 1.62-1.69 ms against 1.98-2.03 ms, produce 1.57-1.65 M
	 * msgs/s against 1.37-1.40 M (docs/storage.md).  Registration pins
	 * the pages below, so they are faulted in as huge ones there.  Only
	 * a hint: without THP the pool works the same. */
	(void)madvise(p->region, p->region_bytes, MADV_HUGEPAGE);
	int slot = rmq_io_buffer_register(io, p->region, p->region_bytes);
	p->slot = slot >= 0 ? slot : -1;
	*out = p;
	return 0;
}

void rmq_wpool_destroy(struct rmq_wpool *p)
{
	if (!p)
		return;
	if (p->nfree != p->nchunks || p->large_bytes > 0) {
		/* A log closed with writes in flight (it says so) still lends
		 * buffers to the kernel: leak the region rather than free
		 * memory a write may still read. */
		rmq_error("write pool: %u of %u chunks and %" PRIu64
			  " bytes of large buffers still out at shutdown; not freed",
			  p->nchunks - p->nfree, p->nchunks, p->large_bytes);
		return;
	}
	if (p->slot >= 0)
		rmq_io_buffer_unregister(p->io, p->slot);
	munmap(p->region, p->region_bytes);
	free(p->used);
	free(p);
}

uint32_t rmq_wpool_chunk_bytes(const struct rmq_wpool *p)
{
	return p->chunk_bytes;
}

uint64_t rmq_wpool_run_max(const struct rmq_wpool *p)
{
	return (uint64_t)p->run_max * p->chunk_bytes;
}

int rmq_wpool_slot(const struct rmq_wpool *p)
{
	return p->slot;
}

static inline bool is_used(const struct rmq_wpool *p, uint32_t i)
{
	return (p->used[i / 64] >> (i % 64)) & 1;
}

/* rmq_wpool_get() without counting a refusal. */
static int64_t take_run(struct rmq_wpool *p, uint32_t n, uint8_t **base)
{
	if (n == 0 || n > p->nfree)
		return -1;
	/* First fit; whole used words are skipped 64 chunks at a time. */
	uint32_t run = 0;
	for (uint32_t i = 0; i < p->nchunks; i++) {
		if (i % 64 == 0 && p->used[i / 64] == UINT64_MAX && i + 64 <= p->nchunks) {
			run = 0;
			i += 63;
			continue;
		}
		if (is_used(p, i)) {
			run = 0;
			continue;
		}
		if (++run < n)
			continue;
		uint32_t first = i + 1 - n;
		for (uint32_t k = first; k <= i; k++)
			p->used[k / 64] |= 1ULL << (k % 64);
		p->nfree -= n;
		*base = p->region + (size_t)first * p->chunk_bytes;
		return first;
	}
	return -1;
}

int64_t rmq_wpool_get(struct rmq_wpool *p, uint32_t n, uint8_t **base)
{
	int64_t first = take_run(p, n, base);
	if (first < 0)
		p->refused++;
	return first;
}

int64_t rmq_wpool_get_upto(struct rmq_wpool *p, uint32_t want, uint32_t min, uint32_t *n,
			   uint8_t **base)
{
	int64_t first = want > min ? take_run(p, want, base) : -1;
	if (first >= 0) {
		*n = want;
		return first;
	}
	*n = min;
	return rmq_wpool_get(p, min, base);
}

void rmq_wpool_put(struct rmq_wpool *p, uint32_t first, uint32_t n)
{
	RMQ_ASSERT(first + n <= p->nchunks);
	for (uint32_t k = first; k < first + n; k++) {
		RMQ_ASSERT(is_used(p, k));
		p->used[k / 64] &= ~(1ULL << (k % 64));
	}
	p->nfree += n;
}

uint8_t *rmq_wpool_large_get(struct rmq_wpool *p, size_t len)
{
	if (p->large_bytes > 0 && p->large_bytes + len > p->large_bytes_max) {
		p->refused++;
		return NULL;
	}
	void *m = mmap(NULL, len, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
	if (m == MAP_FAILED)
		return NULL;
	p->large_bytes += len;
	return m;
}

void rmq_wpool_large_put(struct rmq_wpool *p, uint8_t *buf, size_t len)
{
	RMQ_ASSERT(p->large_bytes >= len);
	p->large_bytes -= len;
	munmap(buf, len);
}

void rmq_wpool_stats(const struct rmq_wpool *p, struct rmq_wpool_stats *out)
{
	out->chunks = p->nchunks;
	out->chunks_free = p->nfree;
	out->large_bytes = p->large_bytes;
	out->refused = p->refused;
}
