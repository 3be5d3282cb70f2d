/* SPDX-License-Identifier: Apache-2.0 */
/*
 * fleet.h - the cluster's brokers as the controller's leader keeps them:
 * registration, heartbeats, fencing (ControllerBrokerService's
 * RegisterBroker, HeartbeatBroker and UnregisterBroker), on shard 0.
 *
 * What is decided goes through the controller (rmq_ctrl_submit) into the
 * state every node holds: a broker's record (address, rack, shards,
 * epoch, incarnation, RUNNING or FENCED) and the leaders of its
 * partitions.  When a broker heartbeats is the leader's own soft state,
 * never logged: a new leader starts every broker's session afresh.
 *
 *   RegisterBroker   a new process (incarnation) of broker id: its record,
 *                    epoch + 1, RUNNING; the partitions it hosts that have
 *                    no leader get it, in a new leader epoch.  The same
 *                    incarnation again is answered with its epoch.
 *   HeartbeatBroker  within the broker's session (--broker-session-timeout)
 *                    keeps it RUNNING; a fenced broker that heartbeats is
 *                    unfenced.  STALE_EPOCH (an older registration) and
 *                    BROKER_NOT_AVAILABLE (none) tell it to register.
 *   fencing          a broker silent for its session is FENCED: the
 *                    partitions it leads get another in-sync replica on a
 *                    running broker, or no leader (LEADER_NOT_AVAILABLE).
 *   UnregisterBroker its record goes, as its leaderships do.
 */
#ifndef RMQ_BROKER_FLEET_H
#define RMQ_BROKER_FLEET_H

#include "broker/meta.h"

#include <stdbool.h>
#include <stdint.h>

struct rmq_bshard;
struct rmq_fleet;

enum rmq_fleet_kind { RMQ_FLEET_REGISTER, RMQ_FLEET_HEARTBEAT, RMQ_FLEET_UNREGISTER };

/* One call, carried out on shard 0 of the controller's leader. */
struct rmq_fleet_call {
	enum rmq_fleet_kind kind;
	/* In.  REGISTER: rec (id, host, port, shards, rack, incarnation,
	 * version).  HEARTBEAT: rec.id, epoch, want_fence.  UNREGISTER:
	 * rec.id, epoch (0: whatever is current). */
	struct rmq_broker_rec rec;
	uint64_t epoch;
	bool want_fence;
	bool want_shut_down;         /* HEARTBEAT: controlled shutdown (leaderships moved, then
				      * should_shut_down) */
	uint64_t applied_offset;     /* HEARTBEAT: the metadata the broker runs with */
	char cluster_id[40];         /* REGISTER: the broker storage's ("": new, joins any);
				      * out: the cluster's */
	void (*done)(struct rmq_fleet_call *fc);
	/* Out: code (a rustmq ErrorCode), err; the broker's epoch, whether it
	 * is fenced, the state's version; NOT_CONTROLLER: the leader. */
	int code;
	char err[200];
	uint64_t epoch_out;
	bool fenced;
	bool should_shut_down;       /* HEARTBEAT: its leaderships are moved: stop */
	uint64_t metadata_offset;
	uint32_t leader;
	char leader_addr[64];
	bool image;                  /* HEARTBEAT: send the state (a broker outside the
				      * controller, behind it) */
	/* Private. */
	struct rmq_fleet_call *next;
};

/* Carries fc out (shard 0); fc->done runs once it is answered, never
 * inside this call. */
void rmq_fleet_call(struct rmq_bshard *bs, struct rmq_fleet_call *fc);

/* From the controller's tick (shard 0): fences the brokers whose session
 * ran out, when this node leads. */
void rmq_fleet_tick(struct rmq_bshard *bs);

/* Shard 0, at the end. */
void rmq_fleet_free(struct rmq_bshard *bs);

/* The RPC handlers (methods.c), on the connection's shard. */
struct rmq_call;
void rmq_fleet_rpc_register(struct rmq_call *c, void *req);
void rmq_fleet_rpc_heartbeat(struct rmq_call *c, void *req);
void rmq_fleet_rpc_unregister(struct rmq_call *c, void *req);

#endif /* RMQ_BROKER_FLEET_H */
