/* SPDX-License-Identifier: Apache-2.0 */
/*
 * member.h - one member of a consumer group, without I/O: it says which
 * call to make next and takes the answers; its caller sends the calls,
 * reads the partitions it is given and places the ones the group never
 * committed.  `rmq consume --group` drives it with blocking calls
 * (consumer.c), rmq-bench with asynchronous ones from its shards, so both
 * speak the group protocol the same way.  No clock either: the caller
 * passes the time in.
 *
 *   JoinGroup ──MEMBER_ID_REQUIRED──► JoinGroup with the id given, held
 *   until the generation forms ──► SyncGroup: this member's partitions ──►
 *   FetchOffsets: the group's committed positions ──► POSITION: the caller
 *   places the partitions without one (its reset policy, Kafka's
 *   auto.offset.reset)
 *       │
 *       ▼
 *   stable: the caller reads parts[] and moves parts[i].offset past what
 *           it delivered; every commit_ns: CommitOffsets of the positions
 *           that moved; every heartbeat interval: Heartbeat
 *       REBALANCE_IN_PROGRESS ──► once the caller's read is back:
 *           CommitOffsets (the generation's commits still count),
 *           JoinGroup with the same id
 *       UNKNOWN_MEMBER_ID, ILLEGAL_GENERATION ──► JoinGroup with no id
 *   rmq_member_leave ──► once the read is back: CommitOffsets of what
 *           moved (retried while the coordinator is loading or moving),
 *           LeaveGroup ──► DONE
 *
 * Delivery is at least once: what was read since the last commit that
 * went through goes to the partition's next owner again when a commit is
 * refused (the member was removed for missing its session timeout) or the
 * process dies.  A clean leave loses nothing and repeats nothing.
 *
 * Errors: a coordinator that is loading or moving makes the member retry
 * the step after RMQ_MEMBER_RETRY_NS without a word; a failed call or any
 * other error code goes to ops->error, then joining steps are retried
 * after RMQ_MEMBER_RETRY_NS, commits and heartbeats at their next turn.
 * The caller decides when to give up (rmq dies at the first error, rmq-bench
 * counts them and gives up when `tries` grows too large before it was ever
 * stable).
 */
#ifndef RMQ_TOOLS_MEMBER_H
#define RMQ_TOOLS_MEMBER_H

#include "net/grpc.h"

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#define RMQ_MEMBER_RETRY_NS (100ULL * 1000 * 1000)
#define RMQ_MEMBER_NO_OFFSET UINT64_MAX
/* The last commit is tried this often while the coordinator is loading or moving. */
#define RMQ_MEMBER_LAST_COMMIT_TRIES 10

struct rmq_member_config {
	const char *group;
	const char *topic;           /* the one topic it subscribes to */
	const char *client_id;
	const char *assignor;        /* NULL: the broker's default */
	const char *join_reason;     /* NULL: none */
	const char *leave_reason;
	uint64_t session_ns;
	uint64_t rebalance_ns;       /* 0: not sent (the broker's default) */
	uint64_t commit_ns;          /* how often positions that moved are committed */
	uint64_t call_timeout_ns;    /* every call's deadline; JoinGroup adds 2 x session_ns */
};

/* Why positions read since the last commit may be delivered again. */
enum rmq_member_loss {
	RMQ_MEMBER_LOSS_REJOIN,      /* the commit before a rejoin was refused */
	RMQ_MEMBER_LOSS_FORGOTTEN,   /* the coordinator forgot the member (code says how) */
	RMQ_MEMBER_LOSS_LAST_COMMIT, /* the commit before leaving was refused */
};

/* What the member tells its caller; any may be NULL. */
struct rmq_member_ops {
	/* A call failed (status not OK), its answer did not parse (status
	 * OK, code -1), or the broker answered an error the member does not
	 * handle itself (code, message). */
	void (*error)(void *arg, const char *what, enum rmq_grpc_status status, int code,
		      const char *message);
	/* A generation was joined. */
	void (*joined)(void *arg);
	/* A commit was acknowledged for every partition in it. */
	void (*committed)(void *arg);
	/* One partition's commit was refused. */
	void (*commit_refused)(void *arg, uint32_t partition, uint64_t offset, int code,
			       const char *message);
	/* Positions read since the last commit were not committed (code: the
	 * error that said so). */
	void (*uncommitted)(void *arg, enum rmq_member_loss why, int code);
};

struct rmq_member_part {
	uint32_t partition;
	uint64_t offset;             /* next offset to read; RMQ_MEMBER_NO_OFFSET: none yet */
};

/* A call to make: the request stays valid until rmq_member_answer. */
struct rmq_member_call {
	const char *what;            /* "JoinGroup", for errors */
	const char *path;
	const uint8_t *req;
	size_t len;
	uint64_t timeout_ns;
};

enum rmq_member_step {
	RMQ_MEMBER_WAIT,             /* nothing to send before *wake_ns, an answer or the read's return */
	RMQ_MEMBER_CALL,             /* send *call, then give its answer to rmq_member_answer */
	RMQ_MEMBER_POSITION,         /* place the parts at RMQ_MEMBER_NO_OFFSET, then rmq_member_positioned */
	RMQ_MEMBER_DONE,             /* left the group (or never joined one) */
};

struct rmq_member {
	/* This generation's partitions of the topic.  While
	 * rmq_member_readable(), the caller reads them and moves offset past
	 * what it delivered; every change of parts (a new assignment, the old
	 * one given up) bumps `assignments`. */
	struct rmq_member_part *parts;
	uint32_t nparts;
	uint32_t assignments;
	unsigned tries;              /* joining steps sent since it was last stable */
	int last_commit_code;        /* the last commit's refusal (-1: the call failed), 0: it went through */
	/* private */
	struct rmq_member_config cfg;
	const struct rmq_member_ops *ops;
	void *arg;
	int st;
	int inflight;                /* the call sent, or 0 */
	char *id;                    /* "" before the first join */
	int32_t generation;
	uint64_t heartbeat_ns;
	uint64_t next_commit_ns, next_heartbeat_ns, not_before_ns;
	int rejoin;                  /* the error code that asks for a new join, 0: none */
	bool revoked;                /* the commit before the rejoin was sent */
	bool leaving;
	bool final;                  /* the commit in flight is the last one */
	unsigned final_tries;
	bool oom;
	uint64_t *committed;         /* per part: the group's offset, RMQ_MEMBER_NO_OFFSET: none */
	uint32_t *sent_idx;          /* the commit in flight: parts index and offset of each */
	uint64_t *sent_off;
	uint32_t nsent, cap;
	uint8_t *req;
	size_t req_cap;
};

/* Starts a member that has not joined yet; cfg's strings and ops must
 * outlive it.  Returns 0 or -ENOMEM. */
int rmq_member_init(struct rmq_member *m, const struct rmq_member_config *cfg,
		    const struct rmq_member_ops *ops, void *arg);
void rmq_member_free(struct rmq_member *m);

/*
 * The member's next step at now_ns.  reading: the caller's read of the
 * parts is out (the member then waits for it before it changes the
 * assignment or commits for the last time).  Call it again after every
 * answer, every return of the read, and at *wake_ns (UINT64_MAX: no
 * deadline).  Returns an enum rmq_member_step, or -ENOMEM.
 */
int rmq_member_next(struct rmq_member *m, uint64_t now_ns, bool reading,
		    struct rmq_member_call *call, uint64_t *wake_ns);

/* The answer to the call rmq_member_next gave: status and grpc-message,
 * and with OK the response message. */
void rmq_member_answer(struct rmq_member *m, uint64_t now_ns, enum rmq_grpc_status status,
		       const char *message, const uint8_t *resp, size_t len);

/* After RMQ_MEMBER_POSITION: every part has an offset; reading starts. */
void rmq_member_positioned(struct rmq_member *m, uint64_t now_ns);

/* The parts may be read now: stable, no rejoin or leave pending. */
bool rmq_member_readable(const struct rmq_member *m);

/* Leave the group: a last commit of what moved, then LeaveGroup. */
void rmq_member_leave(struct rmq_member *m);

#endif /* RMQ_TOOLS_MEMBER_H */
