/* SPDX-License-Identifier: Apache-2.0 */
/*
 * isr.h - changes of a partition's ISR (UpdateISR): decided by the
 * controller's leader (isr.c), asked by the partition's leader when a
 * follower has caught up (lead.c).
 */
#ifndef RMQ_BROKER_ISR_H
#define RMQ_BROKER_ISR_H

#include <stdint.h>

struct rmq_bshard;
struct rmq_call;
struct rmq_partition;

/* BrokerReplicationService.UpdateISR (forwarded to the controller's
 * leader from any node). */
void rmq_isr_update(struct rmq_call *c, void *req);

/* Asks the controller's leader to make p's ISR isr[0..nisr) (p led here,
 * in its partition epoch part_epoch); done(arg, code) runs on this shard
 * with the rustmq ErrorCode of the answer.  Returns 0, or -EAGAIN (no
 * controller leader known, or not connected yet), -ENOMEM. */
int rmq_isr_propose(struct rmq_bshard *bs, const struct rmq_partition *p, uint32_t part_epoch,
		    const uint32_t *isr, uint32_t nisr, void (*done)(void *arg, int code),
		    void *arg);

/* rmq_isr_propose, and the leadership goes to new_leader (in isr[]) in
 * the next leader epoch: a new leader whose log lacks records another
 * replica holds (recover.h).  Same returns. */
int rmq_isr_hand_over(struct rmq_bshard *bs, const struct rmq_partition *p, uint32_t part_epoch,
		      const uint32_t *isr, uint32_t nisr, uint32_t new_leader,
		      void (*done)(void *arg, int code), void *arg);

/* The shard stops. */
void rmq_isr_fini(struct rmq_bshard *bs);

#endif /* RMQ_BROKER_ISR_H */
