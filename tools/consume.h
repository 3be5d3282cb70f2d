/* SPDX-License-Identifier: Apache-2.0 */
/*
 * consume.h - a consumer's positions in a topic, and the calls that move
 * them: ListOffsets to find where to start, Fetch to print what follows.
 *
 * consume.c owns them and `rmq consume`; member.c runs `rmq consume --group`
 * on the same consumer (its partitions are the group's assignment);
 * topic.c uses ListOffsets alone for a topic's offset bounds.
 */
#ifndef RMQ_TOOLS_CONSUME_H
#define RMQ_TOOLS_CONSUME_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

struct cpart {
	uint32_t partition;
	uint64_t offset;   /* next offset wanted; UINT64_MAX = not known yet */
};

struct consumer {
	const char *topic;
	struct cpart *parts;    /* heap, owned by whoever fills it in */
	uint32_t nparts;
	bool json;              /* --format json */
	uint64_t max, got;      /* --max (0 = no limit), records printed */
	uint8_t *scratch;       /* decompressed batches (heap) */
	size_t scratch_cap;
};

/*
 * Start offsets through ListOffsets (spec an OFFSET_SPEC: EARLIEST, LATEST
 * or TIMESTAMP with at_ms) for the partitions of c that have none yet
 * (offset UINT64_MAX); the others keep theirs.  A partition with nothing
 * at or after at_ms starts at LATEST.  Dies on a broker error.
 */
void consumer_list_offsets(struct consumer *c, int spec, uint64_t at_ms);

/* One Fetch of every partition of c, waiting up to wait_ns for a record;
 * prints what comes back (up to c->max) and moves the positions past it. */
void consumer_fetch(struct consumer *c, uint64_t wait_ns);

/* Shortens *wait_ns to what is left of timeout_ns (0 = none) after idle_ns
 * without a record.  Returns false when nothing is left: time to stop. */
bool consumer_idle_wait(uint64_t idle_ns, uint64_t timeout_ns, uint64_t *wait_ns);

/* SIGINT or SIGTERM arrived (cmd_consume catches them). */
bool consumer_interrupted(void);

/* After a fetch: true when stdout's reader went away (EPIPE), so the
 * consumer stops cleanly; dies on any other write error. */
bool consumer_stdout_closed(void);

/* ---- member.c ------------------------------------------------------------ */

struct member_opts {
	const char *group;
	const char *assignor;    /* range|roundrobin|sticky */
	uint64_t session_ns;
	uint64_t timeout_ns;     /* --timeout: stop after this long without a record, 0 = never */
	uint64_t commit_ns;      /* --commit-interval */
	int reset_spec;          /* --offset: an OFFSET_SPEC, or -1 for reset_at itself */
	uint64_t reset_at;       /* the offset, or the time in ms for OFFSET_SPEC_TIMESTAMP */
};

/*
 * Consumes c->topic as a member of group o->group until --max, --timeout,
 * a signal or stdout closes, then commits and leaves.  c->parts is
 * replaced by each generation's assignment; the caller frees the last.
 * Returns the exit status: 1 when the last commit was refused.
 */
int member_run(struct consumer *c, const struct member_opts *o);

#endif /* RMQ_TOOLS_CONSUME_H */
