/* SPDX-License-Identifier: Apache-2.0 */
/*
 * sec_admin.h - AdminService's users, ACLs and quotas calls (sec_admin.c):
 * UpsertUsers, DeleteUsers, CreateAcls, DeleteAcls and AlterQuotas are
 * carried to the controller's leader (forward.h) and committed through its
 * log; ListUsers, DescribeAcls and DescribeQuotas answer from this node's
 * own metadata snapshot (acl.h).  Each takes over its decoded request
 * (methods.h's rmq_rpc_fn).
 */
#ifndef RMQ_BROKER_SEC_ADMIN_H
#define RMQ_BROKER_SEC_ADMIN_H

struct rmq_call;

void rmq_sec_upsert_users(struct rmq_call *c, void *req);
void rmq_sec_delete_users(struct rmq_call *c, void *req);
void rmq_sec_list_users(struct rmq_call *c, void *req);
void rmq_sec_create_acls(struct rmq_call *c, void *req);
void rmq_sec_delete_acls(struct rmq_call *c, void *req);
void rmq_sec_describe_acls(struct rmq_call *c, void *req);
void rmq_sec_alter_quotas(struct rmq_call *c, void *req);
void rmq_sec_describe_quotas(struct rmq_call *c, void *req);

#endif /* RMQ_BROKER_SEC_ADMIN_H */
