/* SPDX-License-Identifier: Apache-2.0 */
/* offload.c - helper threads for blocking file work (offload.h). */
#include "core/offload.h"

#include "core/assert.h"
#include "core/util.h"

#include <errno.h>
#include <pthread.h>
#include <stdbool.h>
#include <stdlib.h>

struct rmq_offload_pool {
	struct rmq_runtime *rt;
	pthread_mutex_t mu;
	pthread_cond_t cv;
	struct rmq_offload *head, *tail; /* queued, not yet taken */
	bool stop;
	unsigned n;
	pthread_t *threads;
	size_t *pending;                 /* [shard]: touched by that shard only */
	unsigned nshards;
};

static void *helper_main(void *arg)
{
	struct rmq_offload_pool *pool = arg;
	for (;;) {
		pthread_mutex_lock(&pool->mu);
		while (!pool->head && !pool->stop)
			pthread_cond_wait(&pool->cv, &pool->mu);
		struct rmq_offload *job = pool->head;
		if (job) {
			pool->head = job->next;
			if (!pool->head)
				pool->tail = NULL;
		}
		pthread_mutex_unlock(&pool->mu);
		if (!job)
			return NULL; /* stopping, queue empty */
		job->work(job);
		rmq_runtime_post(pool->rt, job->shard, &job->msg);
	}
}

static void job_back(struct rmq_xmsg *m)
{
	struct rmq_offload *job = RMQ_CONTAINER_OF(m, struct rmq_offload, msg);
	job->pool->pending[job->shard]--;
	job->done(job);
}

int rmq_offload_pool_create(struct rmq_runtime *rt, unsigned n, struct rmq_offload_pool **out)
{
	struct rmq_offload_pool *pool = calloc(1, sizeof(*pool));
	if (!pool || n == 0) {
		free(pool);
		return n == 0 ? -EINVAL : -ENOMEM;
	}
	pool->rt = rt;
	pool->nshards = 1024; /* rmq_runtime_create's limit */
	pool->pending = calloc(pool->nshards, sizeof(*pool->pending));
	pool->threads = calloc(n, sizeof(*pool->threads));
	if (!pool->pending || !pool->threads) {
		free(pool->pending);
		free(pool->threads);
		free(pool);
		return -ENOMEM;
	}
	pthread_mutex_init(&pool->mu, NULL);
	pthread_cond_init(&pool->cv, NULL);
	for (unsigned i = 0; i < n; i++) {
		int e = pthread_create(&pool->threads[i], NULL, helper_main, pool);
		if (e != 0) {
			rmq_offload_pool_destroy(pool);
			return -e;
		}
		pool->n++;
	}
	*out = pool;
	return 0;
}

void rmq_offload_pool_destroy(struct rmq_offload_pool *pool)
{
	if (!pool)
		return;
	pthread_mutex_lock(&pool->mu);
	pool->stop = true;
	pthread_cond_broadcast(&pool->cv);
	pthread_mutex_unlock(&pool->mu);
	for (unsigned i = 0; i < pool->n; i++)
		pthread_join(pool->threads[i], NULL);
	pthread_cond_destroy(&pool->cv);
	pthread_mutex_destroy(&pool->mu);
	free(pool->threads);
	free(pool->pending);
	free(pool);
}

void rmq_offload(struct rmq_offload_pool *pool, struct rmq_shard *s, struct rmq_offload *job)
{
	unsigned id = rmq_shard_id(s);
	RMQ_ASSERT(id < pool->nshards);
	job->pool = pool;
	job->shard = id;
	job->next = NULL;
	job->msg.fn = job_back;
	pool->pending[id]++;
	pthread_mutex_lock(&pool->mu);
	if (pool->tail)
		pool->tail->next = job;
	else
		pool->head = job;
	pool->tail = job;
	pthread_cond_signal(&pool->cv);
	pthread_mutex_unlock(&pool->mu);
}

size_t rmq_offload_pending(const struct rmq_offload_pool *pool, const struct rmq_shard *s)
{
	return pool->pending[rmq_shard_id(s)];
}
