/* SPDX-License-Identifier: Apache-2.0 */
/*
 * reply.h - answering calls with protobuf-c messages, for every service.
 *
 * Every response of the protocol carries its application error in fields
 * named error_code (a rustmq.common.ErrorCode) and error_message;
 * rmq_reply_error() fills just those, by name, so one helper answers a
 * refused request of any method.  The small arena collects the
 * allocations of a response built from many submessages.
 */
#ifndef RMQ_BROKER_REPLY_H
#define RMQ_BROKER_REPLY_H

#include "net/grpc.h"

#include <protobuf-c/protobuf-c.h>
#include <stddef.h>

/* Packs m and queues it on c.  Returns what rmq_call_send returns, or
 * -ENOMEM. */
int rmq_send_pb(struct rmq_call *c, const ProtobufCMessage *m);

/* rmq_send_pb, then rmq_call_finish(OK); an answer that cannot be sent
 * ends the call with RESOURCE_EXHAUSTED (too big) or INTERNAL. */
void rmq_reply_pb(struct rmq_call *c, const ProtobufCMessage *m);
/* The same for a message already encoded (msg, len: copied). */
void rmq_reply_bytes(struct rmq_call *c, const void *msg, size_t len);

/*
 * Answers c with a message of type d holding only error_code = code and
 * error_message = the formatted text, and ends the call OK.  A type
 * without an error_code field (MetricsResponse) ends the call with gRPC
 * FAILED_PRECONDITION naming the code instead.
 */
void rmq_reply_error(struct rmq_call *c, const ProtobufCMessageDescriptor *d, int code,
		     const char *fmt, ...) __attribute__((format(printf, 4, 5)));

/* Allocations of one response, freed together (at most RMQ_ARENA_MAX). */
#define RMQ_ARENA_MAX 64
struct rmq_arena {
	void *p[RMQ_ARENA_MAX];
	int n;
};

/* Zeroed memory of n bytes owned by a, or NULL (out of memory or slots). */
void *rmq_arena_alloc(struct rmq_arena *a, size_t n);
void rmq_arena_free(struct rmq_arena *a);

#endif /* RMQ_BROKER_REPLY_H */
