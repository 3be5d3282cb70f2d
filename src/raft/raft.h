/* SPDX-License-Identifier: Apache-2.0 */
/*
 * raft.h - rmq's Raft core: consensus without I/O (the shape of etcd/raft's
 * Ready and of nghttp2's session).  The core owns no file, socket, clock
 * or thread; its caller feeds it inputs and carries out its outputs:
 *
 *   inputs                              outputs (rmq_raft_get_ready)
 *   ------                              ----------------------------
 *   rmq_raft_tick()      (a clock)      hard state (term, vote, commit) to make durable
 *   rmq_raft_step(msg)   (the network)  log entries to make durable
 *   rmq_raft_propose()   (the app)      messages to send, once both are durable
 *                                       committed entries to apply, in order
 *
 * One Ready at a time: get it, make its hard state and entries durable,
 * then send its messages and apply its committed entries, then
 * rmq_raft_advance().  No other call may come between get and advance (the
 * Ready points into the core's memory).  Making hard state and entries
 * durable before the messages leave is what keeps a vote or an
 * acknowledgement from outliving a crash that lost it; the leader counts
 * its own entries towards a commit only once they are durable (advance).
 *
 * What the core does (Diego Ongaro's thesis, chapters 3, 4 and 9):
 *   - elections with randomized timeouts, pre-vote (a node that cannot win
 *     does not disturb the term of the others) and check-quorum (a leader
 *     that has not heard from a majority for an election timeout steps
 *     down; followers that heard from a leader within the timeout refuse
 *     votes, so a partitioned node cannot depose a working leader);
 *   - log replication with per-follower next/match indexes, probing back by
 *     the follower's hint on a rejection, at most max_append_entries per
 *     message;
 *   - a no-op entry at the start of each term, and commit only by counting
 *     replicas of an entry of the current term (section 3.6.2, "Figure 8");
 *   - linearizable reads by ReadIndex (section 6.4);
 *   - leadership transfer (section 3.10): the leader brings the chosen
 *     voter's log up to date, stops taking proposals, and sends it
 *     TIMEOUT_NOW, upon which it campaigns at once;
 *   - membership changes one server at a time (chapter 4): a configuration
 *     is a log entry, in effect on each node as soon as its log holds it
 *     (and undone if a new leader cuts it); a new voter joins as a learner
 *     that gets the log but neither votes nor counts, and is promoted once
 *     it has caught up; a leader that removes itself leads until the
 *     change commits, then hands over (TIMEOUT_NOW) and steps down.
 *
 * Node ids are nonzero.  Indexes start at 1; term 0 is "none".
 */
#ifndef RMQ_RAFT_RAFT_H
#define RMQ_RAFT_RAFT_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#define RMQ_RAFT_VOTERS_MAX 9   /* voters of one configuration */
#define RMQ_RAFT_SERVERS_MAX 16 /* voters, learners and spares */
#define RMQ_RAFT_ADDR_MAX 64    /* a server's address, with its NUL */

enum rmq_raft_role {
	RMQ_RAFT_FOLLOWER,
	RMQ_RAFT_PRECANDIDATE,
	RMQ_RAFT_CANDIDATE,
	RMQ_RAFT_LEADER,
};

/* The values of controller/raft.proto's LogEntryType and RaftServerRole. */
enum rmq_raft_entry_type {
	RMQ_RAFT_ENTRY_NORMAL = 0, /* data for the state machine */
	RMQ_RAFT_ENTRY_CONF = 1,   /* a configuration (rmq_raft_conf_encode) */
	RMQ_RAFT_ENTRY_NOOP = 2,   /* a leader's first entry of its term */
};

enum rmq_raft_server_role {
	RMQ_RAFT_VOTER = 1,   /* gets the log, votes, counts towards commits, may lead */
	RMQ_RAFT_LEARNER = 2, /* gets the log; neither votes nor counts */
	RMQ_RAFT_SPARE = 3,   /* listed only: gets nothing */
};

struct rmq_raft_server {
	uint32_t id;   /* nonzero */
	uint32_t role; /* enum rmq_raft_server_role */
	char addr[RMQ_RAFT_ADDR_MAX]; /* carried for the caller ("host:port") */
};

/* A configuration: its servers in increasing id order, at most
 * RMQ_RAFT_VOTERS_MAX of them voters.  May be empty: a node that waits to
 * be added knows no configuration until the leader's log reaches it. */
struct rmq_raft_conf {
	uint32_t n;
	struct rmq_raft_server servers[RMQ_RAFT_SERVERS_MAX];
};

/* The bytes of a CONF entry: a version byte (1), the count, then per
 * server its id (4 bytes, little-endian), role (1), address length (1) and
 * address.  encode returns the length (at most RMQ_RAFT_CONF_ENCODED_MAX);
 * decode returns 0, or RMQ_ECORRUPT for bytes that are not a valid
 * configuration (unsorted or repeated ids, unknown roles, too many). */
#define RMQ_RAFT_CONF_ENCODED_MAX (2 + RMQ_RAFT_SERVERS_MAX * (6 + RMQ_RAFT_ADDR_MAX))
size_t rmq_raft_conf_encode(const struct rmq_raft_conf *c, uint8_t *buf);
int rmq_raft_conf_decode(const uint8_t *p, size_t len, struct rmq_raft_conf *c);
/* The server of id in c, or NULL. */
const struct rmq_raft_server *rmq_raft_conf_find(const struct rmq_raft_conf *c, uint32_t id);

struct rmq_raft_entry {
	uint64_t term;
	uint64_t index;
	uint32_t type; /* enum rmq_raft_entry_type */
	uint32_t len;
	uint8_t *data; /* len bytes (NULL when 0) */
};

/* What must survive a crash besides the log.  commit may lag (it is
 * learned again from the leader); term and vote must not.  The commit a
 * Ready carries is within the log made durable by earlier Readies, so a
 * Ready's hard state and entries may be written in either order. */
struct rmq_raft_hard_state {
	uint64_t term;
	uint32_t vote; /* 0: none in this term */
	uint64_t commit;
};

enum rmq_raft_msg_type {
	RMQ_RAFT_MSG_PREVOTE = 1,
	RMQ_RAFT_MSG_PREVOTE_RESP,
	RMQ_RAFT_MSG_VOTE,
	RMQ_RAFT_MSG_VOTE_RESP,
	RMQ_RAFT_MSG_APPEND,
	RMQ_RAFT_MSG_APPEND_RESP,
	RMQ_RAFT_MSG_TIMEOUT_NOW, /* leader to its chosen successor: campaign now */
	/* Leader to a follower whose entries it compacted away: index and
	 * log_term say what the snapshot covers.  The caller streams the
	 * snapshot's data beside it (InstallSnapshot) and steps the message
	 * once the data is in, with conf pointing to the configuration the
	 * snapshot holds; the follower answers with APPEND_RESP. */
	RMQ_RAFT_MSG_SNAPSHOT,
};

struct rmq_raft_msg {
	enum rmq_raft_msg_type type;
	uint32_t from, to;
	/* The sender's term; PREVOTE: the term it would campaign in; a
	 * granted PREVOTE_RESP: that term. */
	uint64_t term;
	/* PREVOTE, VOTE: the candidate's last log index and term.
	 * APPEND: the index and term of the entry before entries[0].
	 * APPEND_RESP: accepted, the follower's log matches the leader's up
	 * to index; rejected, the prev index it could not match. */
	uint64_t index;
	uint64_t log_term;
	uint64_t commit; /* APPEND: the leader's commit index */
	uint64_t hint;   /* APPEND_RESP rejected: the follower's last index */
	bool reject;     /* the *_RESP messages */
	bool transfer;   /* VOTE: a campaign the leader asked for (TIMEOUT_NOW):
			  * voters answer it even within a leader's lease */
	uint64_t seq;    /* APPEND: the leader's read round; APPEND_RESP: echoed */
	uint32_t n_entries;
	/* APPEND: entries[i].index == index + 1 + i.  The core copies what
	 * it keeps; in a Ready they point into the core until advance. */
	struct rmq_raft_entry *entries;
	/* SNAPSHOT: the snapshot's configuration (in a Ready: the core's,
	 * until advance). */
	const struct rmq_raft_conf *conf;
};

struct rmq_raft_config {
	uint32_t id;
	/* With a snapshot (snap_index > 0): its configuration, which CONF
	 * entries of the log passed to rmq_raft_new override.  With neither
	 * snapshot nor log: a first member of a new cluster is given the
	 * cluster's first configuration, which becomes entry 1 (term 1,
	 * committed); a node that waits to be added, none (n = 0). */
	struct rmq_raft_conf conf;
	/* A follower campaigns after a random number of ticks in
	 * [election_ticks, 2 x election_ticks) without hearing from a leader;
	 * a leader sends heartbeats every heartbeat_ticks. */
	uint32_t election_ticks;
	uint32_t heartbeat_ticks;
	uint32_t max_append_entries; /* per APPEND message, >= 1 */
	bool pre_vote;
	bool check_quorum;
	uint64_t seed;    /* the randomness of the election timeouts */
	uint64_t applied; /* entries up to here are applied already (not
			   * handed out again) */
	/* The snapshot the node restarts from (0, 0: none): the log passed
	 * to rmq_raft_new starts at snap_index + 1. */
	uint64_t snap_index, snap_term;
	/* TESTS ONLY: commit any entry a majority holds, whatever its term
	 * (the bug of section 3.6.2); the simulator must catch it. */
	bool unsafe_commit_any_term;
};

struct rmq_raft;

/*
 * A node restarting from what it made durable: hs, its snapshot
 * (cfg->snap_index), and its log's entries after it (log[i].index ==
 * snap_index + 1 + i; copied).  Returns NULL on a bad config (an
 * invalid configuration, zero ticks), a log whose CONF entries do not
 * decode, or no memory.  id need not be in the configuration: a node that
 * is not a voter there never campaigns.
 */
struct rmq_raft *rmq_raft_new(const struct rmq_raft_config *cfg,
			      const struct rmq_raft_hard_state *hs,
			      const struct rmq_raft_entry *log, size_t n);
void rmq_raft_free(struct rmq_raft *r);

void rmq_raft_tick(struct rmq_raft *r);

/* Takes one message.  Returns 0, or RMQ_EPROTO for one that is not
 * addressed to this node or is malformed (ignored). */
int rmq_raft_step(struct rmq_raft *r, const struct rmq_raft_msg *m);

/* Appends data as a new entry (leader only).  Returns its index, or
 * RMQ_ESTATE when this node does not lead (or is handing leadership
 * over), -ENOMEM. */
int64_t rmq_raft_propose(struct rmq_raft *r, const void *data, uint32_t len);

/* Hands leadership to voter to (leader only): proposals are refused
 * meanwhile (RMQ_ESTATE), and the transfer is given up after an election
 * timeout.  Returns 0, RMQ_ESTATE (not the leader), RMQ_ENOTFOUND (not a
 * voter). */
int rmq_raft_transfer_leader(struct rmq_raft *r, uint32_t to);

/*
 * Membership (leader only), one change at a time.  AddPeer: id joins with
 * role; a new VOTER joins as a LEARNER and is promoted by the leader once
 * its log has caught up with the commit index (a learner asked to become a
 * voter is promoted the same way).  The same id with the same role is a
 * no-op; with another address it is refused.  RemovePeer: id leaves (an
 * unknown id is a no-op); the leader may remove itself.
 *
 * Return the index of the CONF entry proposed, 0 when none was needed (or
 * a promotion waits for the learner), RMQ_ESTATE (not the leader, handing
 * leadership over, or no entry of its term committed yet: the change
 * might otherwise overlap one of an earlier term, thesis section 4.1),
 * -EBUSY (the last change has not committed), -EINVAL (id 0, a bad role
 * or address, another address for a known id, no voter left, too many
 * servers or voters), -ENOMEM.  A promotion pending on a leader that
 * loses its leadership is forgotten: call AddPeer again on the new one.
 */
int64_t rmq_raft_add_peer(struct rmq_raft *r, uint32_t id, const char *addr,
			  enum rmq_raft_server_role role);
int64_t rmq_raft_remove_peer(struct rmq_raft *r, uint32_t id);

/* The state machine holds a durable snapshot of everything up to index
 * (at most what was applied and made durable): the log drops those
 * entries; a follower that needs them gets the snapshot instead.  Returns
 * 0 or RMQ_ERANGE.  The snapshot must keep rmq_raft_snapshot_conf(): the
 * configuration as of index, which a restart passes back in cfg.conf. */
int rmq_raft_compact(struct rmq_raft *r, uint64_t index);

/*
 * A linearizable read (ReadIndex, thesis section 6.4): the leader notes
 * its commit index, confirms with a round of heartbeats that a majority
 * still follows it, and then hands out {ctx, index} in a Ready: the read
 * may be served once the state machine has applied index.  Returns 0, or
 * RMQ_ESTATE (not the leader, or no entry of its term committed yet:
 * retry shortly), RMQ_EFULL (too many reads waiting).
 */
int rmq_raft_read_index(struct rmq_raft *r, uint64_t ctx);

struct rmq_raft_read {
	uint64_t ctx;
	uint64_t index;
};

struct rmq_raft_ready {
	/* Install the snapshot the leader sent (its data arrived with the
	 * SNAPSHOT message) before anything below.  The durable log drops
	 * every entry up to snapshot_index; the entries after it stay when
	 * snapshot_keeps_log (the durable log held the snapshot's last
	 * entry), else they go too. */
	bool snapshot;
	bool snapshot_keeps_log;
	uint64_t snapshot_index, snapshot_term;
	const struct rmq_raft_conf *snapshot_conf; /* to keep with it */
	bool hs_changed;
	struct rmq_raft_hard_state hs;
	/* Make durable: they replace the durable log from entries[0].index
	 * on (a new leader may cut a follower's uncommitted tail). */
	const struct rmq_raft_entry *entries;
	size_t n_entries;
	/* Send once hs and entries are durable; any may be lost. */
	const struct rmq_raft_msg *msgs;
	size_t n_msgs;
	/* Apply, in order. */
	const struct rmq_raft_entry *committed;
	size_t n_committed;
	/* Reads confirmed (rmq_raft_read_index). */
	const struct rmq_raft_read *reads;
	size_t n_reads;
};

bool rmq_raft_has_ready(const struct rmq_raft *r);
void rmq_raft_get_ready(struct rmq_raft *r, struct rmq_raft_ready *rd);
void rmq_raft_advance(struct rmq_raft *r);

enum rmq_raft_role rmq_raft_role(const struct rmq_raft *r);
uint64_t rmq_raft_term(const struct rmq_raft *r);
uint32_t rmq_raft_leader(const struct rmq_raft *r); /* 0: unknown */
uint64_t rmq_raft_commit(const struct rmq_raft *r);
/* A leader an entry of whose term has committed: it knows the commit index
 * (section 6.4), and may change the configuration. */
bool rmq_raft_leads_committed(const struct rmq_raft *r);
uint64_t rmq_raft_last_index(const struct rmq_raft *r);
/* The entry at index (after the snapshot, up to the last), or NULL. */
const struct rmq_raft_entry *rmq_raft_entry_at(const struct rmq_raft *r, uint64_t index);
uint64_t rmq_raft_snapshot_index(const struct rmq_raft *r);
/* The configuration as of the snapshot. */
const struct rmq_raft_conf *rmq_raft_snapshot_conf(const struct rmq_raft *r);
/* The configuration in effect (the newest in the log, committed or not)
 * and the index of its entry (the snapshot's index when it came with the
 * snapshot or the config). */
const struct rmq_raft_conf *rmq_raft_conf(const struct rmq_raft *r, uint64_t *index);

/* The leader's view of server id: 0, or RMQ_ESTATE (not the leader),
 * RMQ_ENOTFOUND (not in the configuration, or a spare). */
struct rmq_raft_progress {
	uint64_t match, next;
	bool active;     /* heard from within the current check-quorum round */
	bool promoting;  /* a learner to be promoted once caught up */
};
int rmq_raft_progress(const struct rmq_raft *r, uint32_t id, struct rmq_raft_progress *out);

#endif /* RMQ_RAFT_RAFT_H */
