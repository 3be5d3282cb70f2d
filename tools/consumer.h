/* SPDX-License-Identifier: Apache-2.0 */
/*
 * consumer.h - the consumer loops of `rmq consume`: Fetch long polls of a
 * topic's partitions printed on stdout, plain (each value and a newline)
 * or as JSON lines, until --max, --timeout, SIGINT/SIGTERM or the reader
 * goes away; either of partitions the caller placed (consumer_run) or of
 * those a consumer group assigns (consumer_run_group, driving member.h
 * with blocking calls).
 */
#ifndef RMQ_TOOLS_CONSUMER_H
#define RMQ_TOOLS_CONSUMER_H

#include "query.h"

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

struct consumer {
	const char *topic;
	struct cpart *parts;    /* heap, owned by whoever fills it in */
	uint32_t nparts;
	bool json;              /* --format json */
	uint64_t max, got;      /* --max (0 = no limit), records printed */
	uint8_t *scratch;       /* decompressed batches (heap) */
	size_t scratch_cap;
};

/* SIGINT and SIGTERM from now on stop the loops cleanly. */
void consumer_catch_signals(void);

/* Reads c->parts (each placed) until --max, timeout_ns without a record
 * (0 = wait forever), a signal or stdout closes.  Returns 0. */
int consumer_run(struct consumer *c, uint64_t timeout_ns);

struct consumer_group_opts {
	const char *group;
	const char *assignor;    /* range|roundrobin|sticky */
	uint64_t session_ns;
	uint64_t commit_ns;      /* --commit-interval */
	int reset_spec;          /* --offset: an OFFSET_SPEC, or -1 for reset_at itself */
	uint64_t reset_at;       /* the offset, or the time in ms for OFFSET_SPEC_TIMESTAMP */
};

/*
 * Reads c->topic as a member of group o->group until the same ends as
 * consumer_run (timeout_ns counts from the first assignment), then
 * commits and leaves.  c->parts is replaced by each generation's
 * assignment; the caller frees the last.  Returns the exit status: 1 when
 * the last commit was refused.
 */
int consumer_run_group(struct consumer *c, uint64_t timeout_ns,
		       const struct consumer_group_opts *o);

#endif /* RMQ_TOOLS_CONSUMER_H */
