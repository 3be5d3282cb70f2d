/* SPDX-License-Identifier: Apache-2.0 */
/* placement.c - where new partitions go (placement.h). */
#include "broker/placement.h"

#include "common/metadata.pb-c.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static bool running(const struct rmq_broker_rec *r)
{
	return r->state == RUSTMQ__COMMON__BROKER_STATE__BROKER_RUNNING;
}

int rmq_place_check(const struct rmq_meta *m, uint32_t rf, char *err, size_t len)
{
	size_t n = 0;
	for (size_t i = 0; i < m->nbrokers; i++)
		n += running(&m->brokers[i]);
	if (n == 0) {
		snprintf(err, len, "no broker is registered and running yet (a starting node "
				   "registers within a second): retry");
		return -EINVAL;
	}
	if (rf > n || rf > RMQ_REPLICAS_MAX) {
		snprintf(err, len, "replication factor %u exceeds the %zu running brokers", rf, n);
		return -EINVAL;
	}
	return 0;
}

static int by_rack(const void *a, const void *b)
{
	const struct rmq_broker_rec *x = *(const struct rmq_broker_rec *const *)a;
	const struct rmq_broker_rec *y = *(const struct rmq_broker_rec *const *)b;
	int c = strcmp(x->rack, y->rack);
	return c ? c : (x->id > y->id) - (x->id < y->id);
}

int rmq_place(const struct rmq_meta *m, uint32_t partitions, uint32_t rf,
	      struct rmq_passign **out, char *err, size_t len)
{
	*out = NULL;
	int rc = rmq_place_check(m, rf, err, len);
	if (rc < 0)
		return rc;
	const struct rmq_broker_rec **sorted = calloc(m->nbrokers, sizeof(*sorted));
	const struct rmq_broker_rec **list = calloc(m->nbrokers, sizeof(*list));
	uint64_t *load = calloc(m->nbrokers, sizeof(*load));
	struct rmq_passign *pa = calloc(partitions, sizeof(*pa));
	if (!sorted || !list || !load || !pa) {
		rc = -ENOMEM;
		goto out;
	}
	size_t n = 0;
	for (size_t i = 0; i < m->nbrokers; i++)
		if (running(&m->brokers[i]))
			sorted[n++] = &m->brokers[i];
	qsort(sorted, n, sizeof(*sorted), by_rack);
	/* Rack-alternated: the k-th broker of every rack, for k = 0, 1, ... */
	size_t nl = 0;
	for (size_t k = 0; nl < n; k++) {
		for (size_t i = 0; i < n;) {
			size_t j = i;
			while (j < n && strcmp(sorted[j]->rack, sorted[i]->rack) == 0)
				j++;
			if (i + k < j)
				list[nl++] = sorted[i + k];
			i = j;
		}
	}
	/* The start: the broker holding the fewest replicas now. */
	for (size_t t = 0; t < m->ntopics; t++)
		for (uint32_t p = 0; m->topics[t].parts && p < m->topics[t].partitions; p++)
			for (uint32_t r = 0; r < m->topics[t].parts[p].nreplicas; r++)
				for (size_t i = 0; i < n; i++)
					if (list[i]->id == m->topics[t].parts[p].replicas[r])
						load[i]++;
	size_t start = 0;
	for (size_t i = 1; i < n; i++)
		if (load[i] < load[start])
			start = i;
	for (uint32_t p = 0; p < partitions; p++) {
		pa[p].leader_epoch = 1;
		pa[p].nreplicas = pa[p].nisr = rf;
		for (uint32_t k = 0; k < rf; k++)
			pa[p].replicas[k] = pa[p].isr[k] = list[(start + p + k) % n]->id;
		pa[p].leader = pa[p].replicas[0];
	}
	*out = pa;
	pa = NULL;
out:
	free(pa);
	free(load);
	free(list);
	free(sorted);
	return rc;
}
