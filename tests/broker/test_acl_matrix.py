#!/usr/bin/python3
# SPDX-License-Identifier: Apache-2.0
"""The ACL matrix (src/broker/auth.c and the handlers that call it): every
RPC that needs a permission, for one user, under each state of the ACLs:

  absent                     refused
  ALLOW, literal name        allowed
  ALLOW, prefixed name       allowed
  ALLOW prefixed, DENY literal   refused (deny wins)
  ALLOW on another name      refused

and the RPCs that need only authentication, with a token and without.  A
refusal is the answer's UNAUTHORIZED error code naming the permission (a
cluster call's gRPC PERMISSION_DENIED); "allowed" means anything but that.

    /usr/bin/python3 tests/broker/test_acl_matrix.py --rmqd build/release/rmqd \\
        --rmq build/release/rmq --proto-dir proto

Ends with "N passed, N failed, N skipped".
"""
import base64
import os
import pathlib
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import test_node as tn  # noqa: E402
import test_auth as ta  # noqa: E402

import grpc  # noqa: E402

check, eq, ok = tn.check, tn.eq, tn.ok
UNAUTHORIZED = 8
TOPIC, GROUP, CLUSTER = 2, 3, 4
LITERAL, PREFIXED = 3, 4
OPS = {"READ": 3, "WRITE": 4, "CREATE": 5, "DELETE": 6, "ALTER": 7, "DESCRIBE": 8,
       "DESCRIBE_CONFIGS": 10, "ALTER_CONFIGS": 11}
DENY, ALLOW = 2, 3


def tp(topic, p=0):
    return tn.T.TopicPartition(topic=topic, partition=p)


def unary(path, req, resp_cls):
    def f(c, md):
        return ta.call_md(c, path, req, resp_cls, md)
    return f


def cases(topic, group):
    """(name, call, resource type, resource name, operation): call(c, md)
    returns a response (or raises grpc.RpcError)."""
    P, C, A = tn.P, tn.C, tn.A
    recs = [tn.T.Record(value=b"m")]
    batch = tn.T.RecordBatch(magic=2, records=recs, record_count=1, last_offset_delta=0,
                             crc32=tn.crc32c(tn.records_bytes_of_records(recs)))
    return [
        ("Produce", unary("/rustmq.client.ProducerService/Produce",
                          P.ProduceRequest(version=tn.V(), topic_partition=tp(topic), records=recs,
                                           acks=tn.ACK_LEADER), P.ProduceResponse),
         TOPIC, topic, "WRITE"),
        ("ProduceBatch", unary("/rustmq.client.ProducerService/ProduceBatch",
                               P.ProduceBatchRequest(version=tn.V(), acks=tn.ACK_LEADER,
                                                     partitions=[P.ProducePartitionData(
                                                         topic_partition=tp(topic), batch=batch)]),
                               P.ProduceBatchResponse),
         TOPIC, topic, "WRITE"),
        ("Fetch", unary("/rustmq.client.ConsumerService/Fetch",
                        C.FetchRequest(version=tn.V(), partitions=[C.FetchPartition(
                            topic_partition=tp(topic))]), C.FetchResponse),
         TOPIC, topic, "READ"),
        ("FetchBatch", unary("/rustmq.client.ConsumerService/FetchBatch",
                             C.FetchBatchRequest(version=tn.V(), fetches=[C.FetchRequest(
                                 version=tn.V(), partitions=[C.FetchPartition(
                                     topic_partition=tp(topic))])]), C.FetchBatchResponse),
         TOPIC, topic, "READ"),
        ("ListOffsets", unary("/rustmq.client.ConsumerService/ListOffsets",
                              C.ListOffsetsRequest(version=tn.V(), partitions=[
                                  C.ListOffsetsPartition(topic_partition=tp(topic), spec=2)]),
                              C.ListOffsetsResponse),
         TOPIC, topic, "DESCRIBE"),
        ("CreateTopics", unary("/rustmq.controller.AdminService/CreateTopics",
                               A.CreateTopicsRequest(version=tn.V(), validate_only=True, topics=[
                                   A.CreatableTopic(name=topic + "-new", partitions=1)]),
                               A.CreateTopicsResponse),
         TOPIC, topic + "-new", "CREATE"),
        ("DeleteTopics", unary("/rustmq.controller.AdminService/DeleteTopics",
                               A.DeleteTopicsRequest(version=tn.V(), names=[topic + "-gone"]),
                               A.DeleteTopicsResponse),
         TOPIC, topic + "-gone", "DELETE"),
        ("AlterConfigs", unary("/rustmq.controller.AdminService/AlterConfigs",
                               A.AlterConfigsRequest(version=tn.V(), validate_only=True, resources=[
                                   A.AlterConfigsResource(resource=A.ConfigResource(
                                       type=1, name=topic))]), A.AlterConfigsResponse),
         TOPIC, topic, "ALTER_CONFIGS"),
        ("DescribeConfigs", unary("/rustmq.controller.AdminService/DescribeConfigs",
                                  A.DescribeConfigsRequest(version=tn.V(), resources=[
                                      A.DescribeConfigsResource(resource=A.ConfigResource(
                                          type=1, name=topic))]), A.DescribeConfigsResponse),
         TOPIC, topic, "DESCRIBE_CONFIGS"),
        ("JoinGroup", unary("/rustmq.client.ConsumerService/JoinGroup",
                            C.JoinGroupRequest(version=tn.V(), group_id=group, topics=[topic]),
                            C.JoinGroupResponse),
         GROUP, group, "READ"),
        ("FetchOffsets", unary("/rustmq.client.ConsumerService/FetchOffsets",
                               C.FetchOffsetsRequest(version=tn.V(), group_id=group),
                               C.FetchOffsetsResponse),
         GROUP, group, "DESCRIBE"),
        ("DescribeGroups", unary("/rustmq.controller.AdminService/DescribeGroups",
                                 A.DescribeGroupsRequest(version=tn.V(), group_ids=[group]),
                                 A.DescribeGroupsResponse),
         GROUP, group, "DESCRIBE"),
        ("DeleteGroups", unary("/rustmq.controller.AdminService/DeleteGroups",
                               A.DeleteGroupsRequest(version=tn.V(), group_ids=[group]),
                               A.DeleteGroupsResponse),
         GROUP, group, "DELETE"),
        ("ElectLeaders", unary("/rustmq.controller.AdminService/ElectLeaders",
                               A.ElectLeadersRequest(version=tn.V()), A.ElectLeadersResponse),
         CLUSTER, "rmq-cluster", "ALTER"),
    ]


def refused(call, c, md):
    try:
        r = call(c, md)
    except grpc.RpcError as e:
        return e.code() == grpc.StatusCode.PERMISSION_DENIED, f"{e.code()} {e.details()}"
    codes = [getattr(r, "error_code", 0)]
    for f in ("partitions", "results", "topics", "responses", "resources"):
        for x in getattr(r, f, []):
            codes.append(getattr(x, "error_code", 0))
    return UNAUTHORIZED in codes, f"codes {codes} {getattr(r, 'error_message', '')}"


def acl(principal, rtype, name, pattern, op, perm):
    return tn.A.AclBinding(principal=principal, resource_type=rtype, resource_name=name,
                           pattern_type=pattern, operation=OPS[op], permission=perm, host="*")


def set_acls(c, admin_md, entries):
    """Replaces alice's ACLs with entries."""
    ok(ta.call_md(c, "/rustmq.controller.AdminService/DeleteAcls",
                  tn.A.DeleteAclsRequest(version=tn.V(), filters=[tn.A.AclFilter(
                      principal="User:alice", resource_type=1, pattern_type=1, operation=1,
                      permission=1)]), tn.A.DeleteAclsResponse, admin_md), "DeleteAcls")
    if entries:
        r = ok(ta.call_md(c, "/rustmq.controller.AdminService/CreateAcls",
                          tn.A.CreateAclsRequest(version=tn.V(), acls=entries),
                          tn.A.CreateAclsResponse, admin_md), "CreateAcls")
        for x in r.results:
            ok(x, "an ACL")
    time.sleep(0.3)  # every shard's snapshot takes the change


def run(args, tmp):
    secret = os.path.join(tmp, "secret")
    pathlib.Path(secret).write_text(base64.b64encode(os.urandom(48)).decode())
    pw = {"admin": "pw-admin-1", "alice": "pw-alice-1"}
    for u, p in pw.items():
        pathlib.Path(tmp, u).write_text(p + "\n")
    node = tn.Node(args.rmqd, os.path.join(tmp, "data"), tmp, args.verbose)
    base = ("--token-secret-file", secret, "--super-users", "User:admin")
    node.start((*base, "--auth", "none"))
    try:
        for u in pw:
            rc, out = ta.rmq(args, "--bootstrap", node.addr, "user", "add", u, "--password-file",
                             os.path.join(tmp, u))
            check(rc == 0, f"rmq user add {u}: {out}")
        with tn.Client(node.addr) as c:
            c.create_topic("mx-t", 1)
            c.create_topic("mx-t-gone", 1)
        eq(node.stop(), 0, "exit status")
        node.start((*base, "--auth", "required"))
        with tn.Client(node.addr, own_connection=True) as c:
            admin = ta.bearer(ta.scram(c, "admin", pw["admin"]).session_token.decode())
            alice = ta.bearer(ta.scram(c, "alice", pw["alice"]).session_token.decode())
            failures = []
            for name, call, rtype, rname, op in cases("mx-t", "mx-g"):
                # The cluster is one literal name: its "prefixed" states
                # use the literal entry.
                pre, pat = (rname[:3], PREFIXED) if rtype != CLUSTER else (rname, LITERAL)
                states = [
                    ("absent", [], True),
                    ("ALLOW literal", [acl("User:alice", rtype, rname, LITERAL, op, ALLOW)], False),
                    ("ALLOW prefixed", [acl("User:alice", rtype, pre, pat, op, ALLOW)], False),
                    ("DENY literal over ALLOW prefixed",
                     [acl("User:alice", rtype, pre, pat, op, ALLOW),
                      acl("User:alice", rtype, rname, LITERAL, op, DENY)], True),
                    ("ALLOW on another name",
                     [acl("User:alice", rtype, "other" if rtype != CLUSTER else rname, LITERAL,
                          "READ" if op != "READ" else "WRITE", ALLOW)], True),
                ]
                for state, entries, want_refused in states:
                    set_acls(c, admin, entries)
                    got, detail = refused(call, c, alice)
                    line = f"{name:16} {state:34} {'refused' if got else 'allowed'}"
                    print("    " + line, flush=True)
                    if got != want_refused:
                        failures.append(f"{line} (wanted {'refused' if want_refused else 'allowed'}:"
                                        f" {detail})")
                # The super user may, whatever alice's ACLs.
                got, detail = refused(call, c, admin)
                if got:
                    failures.append(f"{name}: the super user is refused: {detail}")
            set_acls(c, admin, [])
            # Authentication only: any principal, never without a token.
            for path, req, resp in (
                    ("/rustmq.controller.AdminService/ListTopics",
                     tn.A.ListTopicsRequest(version=tn.V()), tn.A.ListTopicsResponse),
                    ("/rustmq.client.MetadataService/GetTopicMetadata",
                     tn.MD.GetTopicMetadataRequest(version=tn.V(), topics=["mx-t"]),
                     tn.MD.GetTopicMetadataResponse),
                    ("/rustmq.controller.AdminService/DescribeCluster",
                     tn.A.DescribeClusterRequest(version=tn.V()), tn.A.DescribeClusterResponse)):
                ok(ta.call_md(c, path, req, resp, alice), f"{path} with a token")
                code, _ = ta.status_of(lambda: ta.call_md(c, path, req, resp, None))
                if code != grpc.StatusCode.UNAUTHENTICATED:
                    failures.append(f"{path} without a token: {code}")
            check(not failures, "\n".join(failures))
        eq(node.stop(), 0, "exit status")
    finally:
        node.kill()


def main():
    return tn.single_main("acl_matrix", run)


if __name__ == "__main__":
    sys.exit(main())
