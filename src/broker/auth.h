/* SPDX-License-Identifier: Apache-2.0 */
/*
 * auth.h - who a call is and what it may do (docs/security.md).
 *
 *   AuthService.Authenticate ── PLAIN, or SCRAM-SHA-256/512 in two rounds
 *        (scram.h, plain.h), against the users' verifiers in the
 *        metadata (acl.h) ──► a session token (token.h) for "User:NAME"
 *   every call ── the server's authorize hook (rmq_auth_authorize), before
 *        the method sees it: a Bearer token, else the TLS client
 *        certificate's identity, else anonymous (refused with --auth
 *        required) ──► the call's principal; calls only brokers make
 *        (replication, the controller's Raft and broker calls) need a
 *        broker's principal, cluster administration CLUSTER ALTER
 *   handlers ── rmq_auth_allowed() for their topics and groups (ACLs)
 *
 * Brokers authenticate to each other with tokens they sign themselves
 * ("Broker:ID"; every node holds the cluster's token secret), which are
 * super users.  Super users (--super-users) pass every ACL check.
 */
#ifndef RMQ_BROKER_AUTH_H
#define RMQ_BROKER_AUTH_H

#include "broker/acl.h"
#include "net/grpc.h"

#include <stdbool.h>
#include <stddef.h>

struct rmq_bshard;

#define RMQ_AUTH_ANONYMOUS "User:ANONYMOUS"
#define RMQ_AUTH_BROKER_PREFIX "Broker:"

/* The server's authorize hook (server.h rmq_net_config.authorize). */
enum rmq_grpc_status rmq_auth_authorize(struct rmq_call *c, char *why, size_t whylen);

/* AuthService.Authenticate. */
void rmq_auth_authenticate(struct rmq_call *c, void *msg);

/*
 * Whether call c may do op on the resource (type, name), by the ACLs of
 * its shard's metadata; always with --auth none.  When not, why says
 * which permission is missing, naming the principal.
 */
bool rmq_auth_allowed(const struct rmq_call *c, enum rmq_acl_resource type, const char *name,
		      enum rmq_acl_op op, char *why, size_t whylen);

/* The same for every topic a request names: elems[0..n) each hold, at
 * byte offset tp_offset, a pointer to a rustmq.common.TopicPartition (as
 * request.h's rmq_request_tps).  Returns EC_OK, or EC_UNAUTHORIZED with
 * why. */
int rmq_auth_topics(const struct rmq_call *c, void *const *elems, size_t n, size_t tp_offset,
		    enum rmq_acl_op op, char *why, size_t whylen);

/* Topics of a metadata answer the call may not DESCRIBE (Kafka's rule):
 * named ones (named: the request listed them) answer UNAUTHORIZED without
 * their partitions, the others are left out.  Nothing with --auth none. */
struct rmq_md_list;
void rmq_auth_filter_topics(const struct rmq_call *c, struct rmq_md_list *l, bool named);

/* The shard's SCRAM exchanges in progress go (shard stop). */
void rmq_auth_fini(struct rmq_bshard *bs);

#endif /* RMQ_BROKER_AUTH_H */
