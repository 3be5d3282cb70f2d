/* SPDX-License-Identifier: Apache-2.0 */
/*
 * link.h - connections from this node to other nodes' gRPC ports, kept by
 * one shard: one client per address asked (up to the controller's nine
 * voters, so that asking another leader never cuts the calls in flight to
 * the one before), its connection made on first use and remade after it
 * breaks (at most every RMQ_LINK_RETRY_NS); unary and server-streaming
 * calls on them.
 * For the calls a node makes to other nodes: the controller's Raft
 * messages (ctrl_net.c), heartbeats (heartbeat.c), forwarded admin calls
 * (forward.c).
 */
#ifndef RMQ_BROKER_LINK_H
#define RMQ_BROKER_LINK_H

#include "net/client.h"

#include <stddef.h>
#include <stdint.h>

#define RMQ_LINK_RETRY_NS (200ULL * 1000 * 1000)

struct rmq_link;

/* A link on shard s; what names it in log lines; tls: the brokers' client
 * context (TLS between brokers), or NULL; authz: the authorization header
 * of its calls (a broker's token, auth.h), or "" (kept by the caller);
 * calls_max calls in flight, send_queue_max messages queued per call,
 * stream_window bytes announced per stream (0: the client's defaults).
 * NULL when out of memory. */
struct rmq_link *rmq_link_new(struct rmq_shard *s, const char *what, struct rmq_tls_ctx *tls,
			      const char *authz, uint32_t calls_max, uint32_t send_queue_max,
			      uint32_t stream_window);

/* The connection to addr when calls may start on it now, else NULL (and
 * it is being made: ask again later).  Valid until the shard's next
 * cycle. */
struct rmq_client_conn *rmq_link_conn(struct rmq_link *l, const char *addr);

/* Closes it: calls in flight end (done runs with CANCELLED). */
void rmq_link_free(struct rmq_link *l);

/*
 * Starts a unary call of path to addr ("host:port"); req is sent by
 * reference (kept by the caller until done runs).  Returns 0 (done runs
 * once, never inside this call), -EAGAIN (not connected yet: connecting;
 * call again later), -EINVAL (addr is not host:port), or -ENOMEM /
 * RMQ_EFULL.
 */
int rmq_link_unary(struct rmq_link *l, const char *addr, const char *path, const void *req,
		   size_t len, uint64_t timeout_ns, rmq_client_unary_cb done, void *arg);

/* The same for a server-streaming call: ops->on_message per message, then
 * ops->on_close; req (by reference) stays valid until on_close.  *out is
 * the call, for rmq_ccall_cancel, valid until on_close. */
int rmq_link_server_stream(struct rmq_link *l, const char *addr, const char *path,
			   const void *req, size_t len, uint64_t timeout_ns,
			   const struct rmq_ccall_ops *ops, void *arg, struct rmq_ccall **out);

#endif /* RMQ_BROKER_LINK_H */
