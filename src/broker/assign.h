/* SPDX-License-Identifier: Apache-2.0 */
/*
 * assign.h - consumer-group partition assignors: Kafka's range, roundrobin
 * and sticky, as a pure module (no broker state, no I/O, no locks).
 *
 * The group coordinator gathers each member's subscription, assignor
 * preferences and previous assignment, then:
 *
 *   members[] ── rmq_assign_choose() ──→ RANGE | ROUNDROBIN | STICKY, or -1
 *       │
 *       └─────── rmq_assign(a, topics) ─→ members[i].out / nout
 *                      │                  (sent to the members; kept as the
 *                      │                   next generation's prev)
 *                      └─ rmq_assign_free() once nothing points into out
 *
 * Rules common to every assignor:
 *   - A topic counts when it is in the topic table passed to rmq_assign();
 *     subscribed names missing from it are ignored.  Names in the table
 *     should be distinct; of duplicates the first is used.
 *   - Every partition of a topic that some member subscribes to goes to
 *     exactly one member subscribing to it; other partitions to nobody.
 *   - Members are considered in member_id order (strcmp), never in the
 *     order of the array, so a permutation of members[] gives the same
 *     assignment.
 *   - out is sorted by topic (strcmp) then partition.
 *
 * range       Per topic: its subscribers sorted by member_id; with P
 *             partitions and M subscribers, each takes a contiguous run of
 *             P/M, the first P%M one more.  Balanced per topic only.
 *
 * roundrobin  All partitions of subscribed topics sorted by (topic,
 *             partition) are dealt in turn to the members sorted by
 *             member_id; a partition goes to the next member in circular
 *             order that subscribes to its topic.
 *
 * sticky      Balanced, and moving as few partitions as it can.  Steps
 *             1-4 decide how many partitions of each topic every member
 *             gets, step 5 which ones:
 *             1. keep   each member claims its valid prev partitions (the
 *                       topic and partition still exist and it still
 *                       subscribes); of two claimants the smaller member_id
 *                       wins.
 *             2. shed   when every member has the same (effective)
 *                       subscription, P partitions over M members give
 *                       quotas of P/M, and P/M+1 for the P%M members that
 *                       claimed the most (ties: smaller member_id); each
 *                       member sheds the claims above its quota, from its
 *                       last topics first.  Mixed subscriptions have no
 *                       fixed quota: step 4 balances them.
 *             3. fill   each partition left, topic by topic, goes to the
 *                       subscriber holding the fewest (ties: smaller
 *                       member_id).
 *             4. move   while a member holding a partition of topic t holds
 *                       two or more more than some subscriber of t, one
 *                       partition of t moves from the most loaded such
 *                       holder to the least loaded subscriber (ties:
 *                       smaller member_id).
 *             5. place  per topic, each member keeps its claims, smallest
 *                       partitions first, up to its count of the topic;
 *                       the other partitions fill the remaining counts in
 *                       member_id order.
 *             Guarantees: no member holds two or more partitions fewer
 *             than the owner of a partition of a topic it subscribes to;
 *             with identical subscriptions counts differ by at most one and
 *             the number of claimed partitions that move is the least any
 *             such balanced assignment needs; no member loses a claim of a
 *             topic while holding another's partition of that topic; and
 *             an assignment that is already valid and balanced (prev is
 *             the last out and nothing changed) does not move.
 *
 * Cost, with P partitions, M members, S subscriptions (member, topic) and T
 * topics: O(T log T + M log M + S log S) string comparisons to index the
 * input, then O(P + S) for range and roundrobin, and for sticky
 * O(P log M + R log T + S) (R the prev entries) plus, for step 4, O(M + T)
 * per move; with identical subscriptions step 4 moves nothing.  Memory
 * O(P + S + M + T), freed before rmq_assign() returns, besides the out
 * arrays.
 */
#ifndef RMQ_BROKER_ASSIGN_H
#define RMQ_BROKER_ASSIGN_H

#include <stddef.h>
#include <stdint.h>

struct rmq_assign_tp {
	const char *topic;
	uint32_t partition;
};

/* An existing topic and its partition count. */
struct rmq_assign_topic {
	const char *name;
	uint32_t partitions;
};

struct rmq_assign_member {
	const char *member_id;              /* unique within the group; not NULL */
	const char *const *topics;          /* subscription; NULL entries and */
	size_t ntopics;                     /* names not in the table are ignored */
	const char *const *assignors;       /* most preferred first; none means */
	size_t nassignors;                  /* ["range"] */
	/* The previous generation's assignment, read by sticky only.  It may
	 * name vanished topics or partitions; they are ignored.  It may point
	 * into the out array of the last rmq_assign() as long as that array is
	 * freed only after this call returns. */
	const struct rmq_assign_tp *prev;
	size_t nprev;
	/* Result: a malloc'd array (NULL when nout is 0), sorted by topic then
	 * partition.  out[i].topic points at the name in the topic table given
	 * to rmq_assign(), so it is valid as long as that table is. */
	struct rmq_assign_tp *out;
	size_t nout;
};

enum rmq_assignor {
	RMQ_ASSIGN_RANGE,
	RMQ_ASSIGN_ROUNDROBIN,
	RMQ_ASSIGN_STICKY,
};

/* Returns the assignor called name ("range", "roundrobin", "sticky"), or
 * -1 when name is unknown or NULL. */
int rmq_assignor_parse(const char *name);

/* Returns the static name of a, or NULL when a is not an rmq_assignor. */
const char *rmq_assignor_name(enum rmq_assignor a);

/*
 * Chooses the group's assignor.  members[] is ordered longest-standing
 * first.  A member's list is its assignors[], or ["range"] when empty;
 * unknown names are skipped.
 *
 *   common     the known assignors that every member's list names
 *   first(m)   the earliest entry of m's list that is common
 *   votes(a)   the number of members m with first(m) == a
 *
 * The choice is the common assignor with the most votes; of those tied,
 * the one earliest in members[0]'s list (which names every common one).
 *
 * Returns the rmq_assignor, or -1 when there is no common assignor or n
 * is 0.  O(n * list length).
 */
int rmq_assign_choose(const struct rmq_assign_member *members, size_t n);

/*
 * Computes every member's out and nout with assignor a over the existing
 * topics[0 .. ntopics-1] (see the top of this file).  The previous out
 * and nout are overwritten, not freed.  Deterministic: the same input
 * gives the same output whatever the order of members[].
 *
 * Returns 0, or one of these, in which case every out is NULL and every
 * nout 0 and nothing is left allocated:
 *   -ENOMEM   out of memory, or more than 2^32 - 2 partitions, members,
 *             topics or subscriptions
 *   -EINVAL   a is not an rmq_assignor
 */
int rmq_assign(enum rmq_assignor a, const struct rmq_assign_topic *topics, size_t ntopics,
	       struct rmq_assign_member *members, size_t n);

/* Frees every member's out and sets out to NULL and nout to 0. */
void rmq_assign_free(struct rmq_assign_member *members, size_t n);

#endif /* RMQ_BROKER_ASSIGN_H */
