/* SPDX-License-Identifier: Apache-2.0 */
/*
 * controller.h - the cluster controller on shard 0: rmq's Raft core
 * (raft/raft.h) over the durable store of ctrl_store.h, whose state machine
 * holds the cluster's topics (docs/cluster.md).
 *
 *   change (topics.c, ctrl_brokers.c) ──► rmq_ctrl_submit ──► decided by
 *                                          the leader ──► Raft log
 *                                                              │ committed
 *   every shard ◄── rmq_topics_publish ◄── apply (state machine) ◄┘
 *        └──────────── published ──► the change is answered
 *
 * One node is a cluster of one voter: it leads one tick after it starts.
 * Commands are log entries of type NORMAL whose first byte says what
 * follows:
 *   2  SET_STATE: an encoded rustmq.controller.ControllerState, the whole
 *      state after the change (brokers, topics, partition assignments and
 *      leaders; its version is the entry's index).
 *   1  SET_TOPICS: what versions before the brokers wrote, a
 *      rustmq.common.ClusterMetadata of topics (read, never written).
 * Snapshots hold the same encoding, taken on a helper thread every
 * --controller-snapshot-entries applied entries or RMQ_CTRL_SNAPSHOT_BYTES
 * of them.
 *
 * The Ready discipline of raft.h is kept across the store's asynchronous
 * writes: while a Ready is being made durable, ticks are counted and
 * proposals, received messages and answers queued, and they reach the core
 * after rmq_raft_advance.  Other voters are reached over
 * ControllerRaftService (ctrl_net.h); AddPeer, RemovePeer and
 * GetConfiguration are ctrl_admin.c's.
 *
 */
#ifndef RMQ_BROKER_CONTROLLER_H
#define RMQ_BROKER_CONTROLLER_H

#include "broker/meta.h"
#include "core/shard.h"
#include "raft/raft.h"

#include <stdbool.h>
#include <stdint.h>

struct rmq_broker;
struct rmq_bshard;
struct rmq_ctrl;

/* A snapshot also after this many bytes of entries (a command holds every
 * topic: entries grow with the cluster). */
#define RMQ_CTRL_SNAPSHOT_BYTES (16u << 20)
#define RMQ_CTRL_TICK_NS (50ULL * 1000 * 1000)

/*
 * Before the shards start (blocking file I/O on a ring of its own): the
 * topics of the controller's committed state (its snapshot and the log up
 * to the durable commit index), into *initial (refs = 0).  When the
 * controller has no state yet, the topics of an older version's
 * DATA_DIR/meta/topics, which the controller then imports as its first
 * command.  Returns 0, or RMQ_ECORRUPT / a negated errno (logged).
 */
int rmq_ctrl_recover(struct rmq_broker *b, struct rmq_meta **initial);

/* On shard 0: opens the store, restarts the Raft core and the tick.
 * Returns 0 or a negated errno (logged). */
int rmq_ctrl_start(struct rmq_bshard *bs);
/* On shard 0, at the end: stops the tick, closes the store. */
void rmq_ctrl_stop(struct rmq_bshard *bs);

/*
 * A change of the cluster's state, on shard 0.  build(arg, cur) runs on
 * the leader once it has applied everything committed, with nothing else
 * in flight: it returns the state after the change (a new snapshot, refs
 * = 0, which the controller frees), or NULL when nothing changes (its own
 * answers are its business).  Changes queued together are decided one
 * after the other, each on the state the one before left, into one entry.
 * applied(arg, code) runs on shard 0 once that entry is applied and every
 * shard runs with it (code EC_OK, also for a change that changed nothing),
 * or when it cannot be: EC_NOT_CONTROLLER (this node does not lead, or the
 * leader changed and the entry was lost: it was not applied, and another
 * leader may be asked), EC_TIMEOUT (not applied in time; it may still
 * be), EC_STORAGE_ERROR (the store failed), or EC_RESOURCE_EXHAUSTED (out
 * of memory: the one answer given inside this call).
 */
void rmq_ctrl_submit(struct rmq_bshard *bs,
		     struct rmq_meta *(*build)(void *arg, const struct rmq_meta *cur),
		     void (*applied)(void *arg, int code), void *arg);

/* The same, decided before the changes queued now (a leader's own
 * registration, which they may need). */
void rmq_ctrl_submit_first(struct rmq_bshard *bs,
			   struct rmq_meta *(*build)(void *arg, const struct rmq_meta *cur),
			   void (*applied)(void *arg, int code), void *arg);

/*
 * The same from any shard: r (the caller's, embedded in its request) goes
 * to shard 0, build(r, cur) runs there as above, and back(r) then runs on
 * the submitting shard with r->code the controller's answer.
 */
struct rmq_ctrl_req {
	struct rmq_meta *(*build)(struct rmq_ctrl_req *r, const struct rmq_meta *cur);
	void (*back)(struct rmq_ctrl_req *r);
	int code;
	/* Private. */
	struct rmq_xmsg msg;
	unsigned origin;
};
void rmq_ctrl_submit_from(struct rmq_bshard *bs, struct rmq_ctrl_req *r);

/* --controller-voters ("1@host:port,2@host:port,...") as a configuration
 * of voters sorted by id (n = 0 when the flag is empty).  Returns 0 or
 * RMQ_EBADFLAG (logged). */
int rmq_ctrl_flag_voters(const struct rmq_broker *b, struct rmq_raft_conf *conf);

/* On shard 0: whether this node (or broker id) is in the controller's
 * configuration (a voter or learner: it applies the metadata log). */
bool rmq_ctrl_is_member(struct rmq_bshard *bs);
bool rmq_ctrl_has_member(struct rmq_bshard *bs, uint32_t id);

/*
 * On shard 0 of a node outside the controller's configuration (a broker
 * only): the leader's state as its heartbeat answer carried it (m, refs
 * = 0, taken over), published to every shard when newer than what they
 * have; and the leader that answered, for the quorum this node reports
 * and the calls it forwards.  Both are ignored on a member, which follows
 * its own log.
 */
void rmq_ctrl_install_image(struct rmq_bshard *bs, struct rmq_meta *m);
void rmq_ctrl_outside_leader(struct rmq_bshard *bs, uint32_t id, const char *addr);

/* On shard 0: the controller's leader as this node knows it (0: none
 * known), its address into addr ("" when unknown). */
int rmq_ctrl_leader(struct rmq_bshard *bs, char *addr, size_t len);

/* What GetConfiguration answers (on shard 0). */
struct rmq_ctrl_view {
	bool running;                 /* false: no controller on this node now */
	uint32_t self, leader;
	char leader_addr[RMQ_RAFT_ADDR_MAX];
	uint64_t term, commit, conf_index;
	struct rmq_raft_conf conf;    /* the newest in the log */
	size_t n_progress;            /* the leader's view of the others */
	struct {
		uint32_t id;
		struct rmq_raft_progress pr;
	} progress[RMQ_RAFT_SERVERS_MAX];
};
void rmq_ctrl_view(struct rmq_bshard *bs, struct rmq_ctrl_view *v);

/*
 * AddPeer / RemovePeer (on shard 0): done(ch) runs on shard 0 once the
 * change is committed (and a new voter promoted), or refused, with
 * ch->code a rustmq ErrorCode (OK, NOT_CONTROLLER, NOT_AVAILABLE,
 * INVALID_REQUEST, TIMEOUT at ch->deadline_ns) and ch->err, and the view
 * after it in ch->view.
 */
struct rmq_ctrl_change {
	bool remove;
	uint32_t id;
	char addr[RMQ_RAFT_ADDR_MAX];
	uint32_t role;                /* enum rmq_raft_server_role */
	uint64_t deadline_ns;
	void (*done)(struct rmq_ctrl_change *ch);
	/* Out. */
	int code;
	char err[200];
	struct rmq_ctrl_view view;
	/* Private. */
	struct rmq_ctrl_change *next;
	bool started;
};
void rmq_ctrl_change(struct rmq_bshard *bs, struct rmq_ctrl_change *ch);

#endif /* RMQ_BROKER_CONTROLLER_H */
