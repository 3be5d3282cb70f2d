/* SPDX-License-Identifier: Apache-2.0 */
/* cluster.c - what this node knows of the cluster (cluster.h). */
#include "broker/cluster.h"

#include "broker/broker.h"

/* One node: the first epoch of everything. */
#define SOLO_EPOCH 1

const char *rmq_cluster_self(const struct rmq_bshard *bs)
{
	return bs->b->cfg.node_id;
}

uint64_t rmq_cluster_broker_epoch(const struct rmq_bshard *bs)
{
	(void)bs;
	return SOLO_EPOCH;
}

const char *rmq_cluster_controller(const struct rmq_bshard *bs)
{
	return rmq_cluster_self(bs);
}

uint64_t rmq_cluster_controller_epoch(const struct rmq_bshard *bs)
{
	(void)bs;
	return SOLO_EPOCH;
}

bool rmq_cluster_is_controller(const struct rmq_bshard *bs)
{
	(void)bs;
	return true;
}

struct rmq_leader rmq_cluster_leader(const struct rmq_bshard *bs, const struct rmq_topic *t,
				     uint32_t p)
{
	(void)t;
	(void)p;
	return (struct rmq_leader){rmq_cluster_self(bs), SOLO_EPOCH, true};
}

size_t rmq_cluster_replicas(const struct rmq_bshard *bs, const struct rmq_topic *t, uint32_t p,
			    const char **ids, size_t max)
{
	(void)t;
	(void)p;
	if (max > 0)
		ids[0] = rmq_cluster_self(bs);
	return 1;
}

size_t rmq_cluster_isr(const struct rmq_bshard *bs, const struct rmq_topic *t, uint32_t p,
		       const char **ids, size_t max)
{
	return rmq_cluster_replicas(bs, t, p, ids, max);
}
