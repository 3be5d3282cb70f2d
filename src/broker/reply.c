/* SPDX-License-Identifier: Apache-2.0 */
/* reply.c - answering calls with protobuf-c messages (reply.h). */
#include "broker/reply.h"

#include "core/error.h"

#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

int rmq_send_pb(struct rmq_call *c, const ProtobufCMessage *m)
{
	size_t n = protobuf_c_message_get_packed_size(m);
	uint8_t stackbuf[4096];
	uint8_t *buf = n <= sizeof(stackbuf) ? stackbuf : malloc(n);
	if (!buf)
		return -ENOMEM;
	protobuf_c_message_pack(m, buf);
	int rc = rmq_call_send(c, buf, n);
	if (buf != stackbuf)
		free(buf);
	return rc;
}

/* Ends c after its answer was sent (rc 0) or could not be. */
static void finish_sent(struct rmq_call *c, int rc)
{
	if (rc == RMQ_ECLOSED)
		return;
	if (rc < 0)
		rmq_call_finishf(c, rc == RMQ_ETOOBIG ? RMQ_GRPC_RESOURCE_EXHAUSTED : RMQ_GRPC_INTERNAL,
				 "answer not sent: %s", rmq_strerror(rc));
	else
		rmq_call_finish(c, RMQ_GRPC_OK, NULL);
}

void rmq_reply_pb(struct rmq_call *c, const ProtobufCMessage *m)
{
	finish_sent(c, rmq_send_pb(c, m));
}

void rmq_reply_bytes(struct rmq_call *c, const void *msg, size_t len)
{
	finish_sent(c, rmq_call_send(c, msg, len));
}

void rmq_reply_error(struct rmq_call *c, const ProtobufCMessageDescriptor *d, int code,
		     const char *fmt, ...)
{
	char text[512];
	va_list ap;
	va_start(ap, fmt);
	vsnprintf(text, sizeof(text), fmt, ap);
	va_end(ap);
	const ProtobufCFieldDescriptor *fc = protobuf_c_message_descriptor_get_field_by_name(d, "error_code");
	const ProtobufCFieldDescriptor *fm = protobuf_c_message_descriptor_get_field_by_name(d, "error_message");
	if (!fc || fc->type != PROTOBUF_C_TYPE_ENUM) {
		rmq_call_finishf(c, RMQ_GRPC_FAILED_PRECONDITION, "error %d: %s", code, text);
		return;
	}
	ProtobufCMessage *m = calloc(1, d->sizeof_message);
	if (!m) {
		rmq_call_finish(c, RMQ_GRPC_RESOURCE_EXHAUSTED, "out of memory");
		return;
	}
	d->message_init(m);
	*(int *)((char *)m + fc->offset) = code;
	if (fm && fm->type == PROTOBUF_C_TYPE_STRING)
		*(char **)((char *)m + fm->offset) = text;
	rmq_reply_pb(c, m);
	free(m);
}

void *rmq_arena_alloc(struct rmq_arena *a, size_t n)
{
	if (a->n == RMQ_ARENA_MAX)
		return NULL;
	void *p = calloc(1, n ? n : 1);
	if (p)
		a->p[a->n++] = p;
	return p;
}

void rmq_arena_free(struct rmq_arena *a)
{
	for (int i = 0; i < a->n; i++)
		free(a->p[i]);
	a->n = 0;
}
