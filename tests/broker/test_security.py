#!/usr/bin/python3
# SPDX-License-Identifier: Apache-2.0
"""Users, ACLs and quotas in the controller's state (src/broker/acl.c,
sec_admin.c) on three rmqd nodes on 127.0.0.1, driven by grpcio:

- UpsertUsers, CreateAcls, AlterQuotas sent to a follower (carried to the
  controller's leader) are committed: every node lists them from its own
  snapshot (ListUsers, DescribeAcls, DescribeQuotas); ListUsers names
  mechanisms and iterations, never a verifier;
- bad input is refused entry by entry with INVALID_REQUEST and a message
  (empty and oversized names, a password where a verifier goes, unknown
  enum values, duplicates in one request, hosts, quota values and keys),
  the valid entries of the same request taking effect; too many entries
  refuse the whole request;
- DeleteAcls by filter answers what it deleted; DeleteUsers of one
  mechanism keeps the user, of the last removes it;
- every node is killed (kill -9) after more changes than a snapshot holds,
  and restarted: each has the same users, ACLs and quotas (snapshot and log
  replay); a fourth node, a broker outside the controller's voters, gets
  them from its heartbeats' answers;
- with --rmq, the CLI: rmq user add/list/delete, rmq acl add/list/remove,
  rmq quota set/list against the cluster.

    /usr/bin/python3 tests/broker/test_security.py --rmqd build/release/rmqd \\
        --proto-dir proto [--rmq build/release/rmq] [-v]

Ends with "N passed, N failed, N skipped".  Nodes are stopped by PID on
every path.
"""
import argparse
import base64
import hashlib
import hmac
import os
import pathlib
import shutil
import subprocess
import sys
import tempfile
import time
import traceback

sys.dont_write_bytecode = True
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import test_cluster as tc  # noqa: E402
import test_node as tn  # noqa: E402
from test_node import check, eq, ok  # noqa: E402

import grpc  # noqa: E402

NOT_CONTROLLER = 22
ADMIN = "/rustmq.controller.AdminService/"


def verifier(password, mech="SCRAM-SHA-256", iterations=4096, salt=b"0123456789abcdef"):
    """RFC 5802's server-side verifier, as rmq user add makes it."""
    h = hashlib.sha256 if mech == "SCRAM-SHA-256" else hashlib.sha512
    salted = hashlib.pbkdf2_hmac(h().name, password.encode(), salt, iterations)
    client_key = hmac.new(salted, b"Client Key", h).digest()
    stored = h(client_key).digest()
    server = hmac.new(salted, b"Server Key", h).digest()
    b64 = lambda b: base64.b64encode(b).decode()  # noqa: E731
    return f"{mech}:{iterations}:{b64(salt)}:{b64(stored)}:{b64(server)}"


def call(cl, i, method, req, resp_cls):
    """An admin call on node i, asked again while the controller elects a
    leader (NOT_CONTROLLER, as any client does)."""
    with cl.client(i) as c:
        for _ in range(50):
            r = c.unary(ADMIN + method, req, resp_cls)
            if r.error_code != NOT_CONTROLLER and \
                    all(x.error_code != NOT_CONTROLLER for x in getattr(r, "results", [])):
                return r
            time.sleep(0.1)
        return r


def upsert(cl, i, users):
    A = tn.A
    return call(cl, i, "UpsertUsers", A.UpsertUsersRequest(
        version=tn.V(), users=[A.UserUpsertion(name=n, verifier=v) for n, v in users]),
        A.UpsertUsersResponse)


def binding(principal, rtype, name, op, perm="ALLOW", pattern="LITERAL", host="*"):
    A = tn.A
    return A.AclBinding(principal=principal,
                        resource_type=getattr(A, "ACL_RESOURCE_" + rtype) if isinstance(rtype, str) else rtype,
                        resource_name=name,
                        pattern_type=getattr(A, "ACL_PATTERN_" + pattern) if isinstance(pattern, str) else pattern,
                        operation=getattr(A, "ACL_OPERATION_" + op) if isinstance(op, str) else op,
                        permission=getattr(A, "ACL_PERMISSION_" + perm),
                        host=host)


def create_acls(cl, i, bindings):
    A = tn.A
    return call(cl, i, "CreateAcls", A.CreateAclsRequest(version=tn.V(), acls=bindings),
                A.CreateAclsResponse)


def alter_quotas(cl, i, alterations):
    A = tn.A
    return call(cl, i, "AlterQuotas", A.AlterQuotasRequest(version=tn.V(), alterations=alterations),
                A.AlterQuotasResponse)


def quota(principal, default=False, remove=(), **values):
    A = tn.A
    ops = [A.QuotaOp(key=k, value=v) for k, v in values.items()]
    ops += [A.QuotaOp(key=k, remove=True) for k in remove]
    return A.QuotaAlteration(principal=principal, is_default=default, ops=ops)


def state_of(cl, i):
    """(users, acls, quotas) as node i answers them from its own snapshot."""
    A = tn.A
    with cl.client(i) as c:
        lu = ok(c.unary(ADMIN + "ListUsers", A.ListUsersRequest(version=tn.V()), A.ListUsersResponse),
                f"ListUsers on node {i + 1}")
        da = ok(c.unary(ADMIN + "DescribeAcls", A.DescribeAclsRequest(version=tn.V()),
                        A.DescribeAclsResponse), f"DescribeAcls on node {i + 1}")
        dq = ok(c.unary(ADMIN + "DescribeQuotas", A.DescribeQuotasRequest(version=tn.V()),
                        A.DescribeQuotasResponse), f"DescribeQuotas on node {i + 1}")
    users = {u.name: sorted((x.mechanism, x.iterations) for x in u.credentials) for u in lu.users}
    acls = sorted((a.principal, a.resource_type, a.resource_name, a.pattern_type, a.operation,
                   a.permission) for a in da.acls)
    quotas = {("<default>" if q.is_default else q.principal):
              (q.producer_byte_rate, q.consumer_byte_rate, q.request_rate) for q in dq.quotas}
    return users, acls, quotas


def same_everywhere(cl, what, want=None, timeout=10):
    """Every live node answers the same state (want, or node 0's)."""
    end = time.monotonic() + timeout
    while True:
        got = [state_of(cl, i) for i, n in enumerate(cl.nodes) if n.alive()]
        target = want if want is not None else got[0]
        if all(g == target for g in got):
            return target
        if time.monotonic() > end:
            raise AssertionError(f"{what}: nodes differ:\n" + "\n".join(map(str, got)))
        time.sleep(0.05)


def run(cl, rmq):
    A = tn.A
    for i in range(3):
        cl.start(i)
    li, term = cl.leader()
    f = (li + 1) % 3
    print(f"    node {li + 1} leads term {term}; changes sent to node {f + 1}", flush=True)

    # Users, through a follower.
    va = verifier("alice-secret")
    vb = verifier("bob-secret", "SCRAM-SHA-512", 8192)
    r = ok(upsert(cl, f, [("alice", va), ("bob", vb)]), "UpsertUsers")
    eq([x.error_code for x in r.results], [0, 0], "both users stored: " + str(r.results))
    check(r.metadata_offset > 0, "the change's metadata offset")
    r = ok(upsert(cl, f, [("alice", verifier("alice-secret", "SCRAM-SHA-512"))]), "UpsertUsers")
    eq(r.results[0].error_code, 0, "alice's second mechanism")

    # ACLs and quotas.
    r = ok(create_acls(cl, f, [
        binding("User:alice", "TOPIC", "orders", "READ"),
        binding("User:alice", "TOPIC", "orders-", "WRITE", pattern="PREFIXED"),
        binding("User:*", "GROUP", "*", "READ"),
        binding("User:bob", "TOPIC", "orders", "ALL", perm="DENY"),
        binding("User:bob", "CLUSTER", "rmq-cluster", "DESCRIBE"),
    ]), "CreateAcls")
    eq([x.error_code for x in r.results], [0] * 5, "five entries: " + str(r.results))
    r = ok(create_acls(cl, li, [binding("User:alice", "TOPIC", "orders", "READ")]), "CreateAcls")
    eq(r.results[0].error_code, 0, "an entry that exists: OK (idempotent)")
    r = ok(alter_quotas(cl, f, [quota("", default=True, producer_byte_rate=1048576),
                                quota("User:alice", consumer_byte_rate=2097152, request_rate=100)]),
           "AlterQuotas")
    eq([x.error_code for x in r.results], [0, 0], "two quota entries: " + str(r.results))

    st = same_everywhere(cl, "after the changes")
    users, acls, quotas = st
    eq(users, {"alice": [("SCRAM-SHA-256", 4096), ("SCRAM-SHA-512", 4096)],
               "bob": [("SCRAM-SHA-512", 8192)]}, "users")
    eq(len(acls), 5, "ACL entries")
    eq(quotas, {"<default>": (1048576, 0, 0), "User:alice": (0, 2097152, 100)}, "quotas")
    # Never a verifier in a listing.
    with cl.client(f) as c:
        raw = c.unary_raw(ADMIN + "ListUsers", A.ListUsersRequest(version=tn.V()).SerializeToString())
        for v in (va, vb):
            check(v.split(":")[3].encode() not in raw, "ListUsers carries no StoredKey")
        da = ok(c.unary(ADMIN + "DescribeAcls", A.DescribeAclsRequest(
            version=tn.V(), filter=A.AclFilter(principal="User:alice",
                                               resource_type=A.ACL_RESOURCE_ANY,
                                               pattern_type=A.ACL_PATTERN_MATCH,
                                               resource_name="orders-eu",
                                               operation=A.ACL_OPERATION_ANY,
                                               permission=A.ACL_PERMISSION_ANY)),
            A.DescribeAclsResponse), "DescribeAcls MATCH")
        eq([(a.resource_name, a.pattern_type) for a in da.acls],
           [("orders-", A.ACL_PATTERN_PREFIXED)], "the entries matching topic orders-eu")

    # Bad input, entry by entry; the valid entry of the request is taken.
    long_name = "x" * 256
    r = ok(upsert(cl, f, [("", va), ("carol", "carol-password"), (long_name, va),
                          ("bad\x01name", va), ("dave", va), ("dave", verifier("again")),
                          ("erin", "SCRAM-SHA-1:4096:c2FsdA==:AAAA:BBBB"),
                          ("fay", "hunter2:a:b:c:d")]), "UpsertUsers")
    eq([x.error_code for x in r.results],
       [tn.INVALID_REQUEST, tn.INVALID_REQUEST, tn.INVALID_REQUEST, tn.INVALID_REQUEST, 0,
        tn.INVALID_REQUEST, tn.INVALID_REQUEST, tn.INVALID_REQUEST],
       "bad users refused: " + str(r.results))
    check("hunter2" not in r.results[7].error_message, "a refusal does not echo a verifier's text")
    for x in r.results:
        check(x.error_code == 0 or x.error_message, f"a refusal says why: {x}")
    check("carol-password" not in r.results[1].error_message, "the refusal does not echo a password")
    r = ok(create_acls(cl, f, [
        binding("alice", "TOPIC", "t", "READ"),                   # no User: prefix
        binding("User:alice", 99, "t", "READ"),                   # unknown resource type
        binding("User:alice", "TOPIC", "t", 42),                  # unknown operation
        binding("User:alice", "TOPIC", "t", "ANY"),               # ANY is for filters
        binding("User:alice", "TOPIC", "", "READ"),               # empty name
        binding("User:alice", "TOPIC", long_name, "READ"),        # oversized name
        binding("User:alice", "TOPIC", "t", "READ", host="10.0.0.1"),
        binding("User:alice", "TOPIC", "*", "READ", pattern="PREFIXED"),
        binding("User:alice", "TOPIC", "t", "READ", pattern="MATCH"),
        binding("User:alice", "CLUSTER", "other", "ALTER"),
        binding("User:carol", "TOPIC", "t", "READ"),              # valid
        binding("User:carol", "TOPIC", "t", "READ"),              # its duplicate
    ]), "CreateAcls")
    eq([x.error_code for x in r.results], [tn.INVALID_REQUEST] * 10 + [0, tn.INVALID_REQUEST],
       "bad entries refused: " + str(r.results))
    r = ok(alter_quotas(cl, f, [quota("User:x", producer_byte_rate=0),
                                quota("User:x", bogus_rate=5),
                                quota("alice", request_rate=5),
                                quota("User:x", default=True, request_rate=5),
                                quota("User:y"),
                                quota("User:z", request_rate=7),
                                quota("User:z", request_rate=8)]), "AlterQuotas")
    eq([x.error_code for x in r.results], [tn.INVALID_REQUEST] * 5 + [0, tn.INVALID_REQUEST],
       "bad quota alterations refused: " + str(r.results))
    r = upsert(cl, f, [(f"u{k}", va) for k in range(1001)])
    eq(r.error_code, tn.INVALID_REQUEST, "1001 users in one request: refused whole")
    with cl.client(f) as c:
        r = c.unary(ADMIN + "DescribeAcls", A.DescribeAclsRequest(
            version=tn.V(), filter=A.AclFilter(resource_type=77)), A.DescribeAclsResponse)
        eq(r.error_code, tn.INVALID_REQUEST, "a filter with an unknown resource type")

    # Deletions.
    r = ok(call(cl, f, "DeleteAcls", A.DeleteAclsRequest(version=tn.V(), filters=[
        A.AclFilter(principal="User:bob", resource_type=A.ACL_RESOURCE_ANY,
                    pattern_type=A.ACL_PATTERN_ANY, operation=A.ACL_OPERATION_ANY,
                    permission=A.ACL_PERMISSION_ANY),
        A.AclFilter(principal="User:nobody", resource_type=A.ACL_RESOURCE_ANY,
                    pattern_type=A.ACL_PATTERN_ANY, operation=A.ACL_OPERATION_ANY,
                    permission=A.ACL_PERMISSION_ANY),
        A.AclFilter(resource_type=A.ACL_RESOURCE_ANY, pattern_type=0,
                    operation=A.ACL_OPERATION_ANY, permission=A.ACL_PERMISSION_ANY)]),
        A.DeleteAclsResponse), "DeleteAcls")
    eq([x.error_code for x in r.results], [0, 0, tn.INVALID_REQUEST], "DeleteAcls results")
    eq(sorted(d.resource_name for d in r.results[0].deleted), ["orders", "rmq-cluster"],
       "bob's two entries deleted")
    eq(len(r.results[1].deleted), 0, "nothing of nobody's")
    r = ok(call(cl, f, "DeleteUsers", A.DeleteUsersRequest(version=tn.V(), users=[
        A.UserDeletion(name="alice", mechanism="SCRAM-SHA-512"),
        A.UserDeletion(name="bob"), A.UserDeletion(name="nobody"),
        A.UserDeletion(name="dave", mechanism="SCRAM-SHA-1")]), A.DeleteUsersResponse),
        "DeleteUsers")
    eq([x.error_code for x in r.results], [0, 0, tn.INVALID_REQUEST, tn.INVALID_REQUEST],
       "DeleteUsers results: " + str(r.results))
    r = ok(alter_quotas(cl, f, [quota("User:z", remove=["request_rate"])]), "AlterQuotas remove")
    eq(r.results[0].error_code, 0, "a quota removed")

    # More changes than a snapshot holds (--controller-snapshot-entries 8),
    # then every node killed and restarted.
    for k in range(10):
        ok(create_acls(cl, (li + k) % 3, [binding(f"User:u{k}", "TOPIC", f"t{k}", "WRITE")]).results[0],
           f"entry {k}")
    want = same_everywhere(cl, "before the restart")
    users, acls, quotas = want
    eq(sorted(users), ["alice", "dave"], "users before the restart")
    eq(users["alice"], [("SCRAM-SHA-256", 4096)], "alice kept one mechanism")
    eq(len(acls), 3 + 1 + 10, "ACL entries before the restart")
    eq(quotas, {"<default>": (1048576, 0, 0), "User:alice": (0, 2097152, 100)}, "quotas")
    for n in cl.nodes:
        n.kill()
    for i in range(3):
        cl.start(i)
    cl.leader()
    same_everywhere(cl, "after every node restarted", want)
    # A broker outside the controller's voters gets them with the state its
    # heartbeats' answers carry.
    cl.start(3)
    same_everywhere(cl, "on a broker outside the voters", want, timeout=20)

    if rmq:
        run_cli(cl, rmq, want)


def run_cli(cl, rmq, before):
    """The rmq CLI against the cluster (a follower as bootstrap)."""
    li, _ = cl.leader()
    f = (li + 1) % 3
    boot = f"127.0.0.1:{cl.ports[f]}"
    tmp = tempfile.mkdtemp(prefix="rmq-sec-cli-")
    pw = os.path.join(tmp, "pw")
    with open(pw, "w") as fh:
        fh.write("frank-secret\n")

    def rmqc(*a, expect=0):
        p = subprocess.run([rmq, "--bootstrap", boot, *a], capture_output=True, text=True,
                           timeout=60)
        eq(p.returncode, expect, f"rmq {' '.join(a)}: {p.stdout}{p.stderr}")
        return p.stdout + p.stderr

    try:
        rmqc("user", "add", "frank", "--password-file", pw, "--iterations", "4096")
        rmqc("user", "add", "frank", "--password-file", pw, "--mechanism", "SCRAM-SHA-512")
        out = rmqc("user", "list")
        check("frank" in out and "SCRAM-SHA-512" in out and "frank-secret" not in out,
              "user list: " + out)
        rmqc("acl", "add", "--allow-principal", "User:frank", "--operation", "read",
             "--topic", "pay", "--resource-pattern-type", "prefixed")
        rmqc("acl", "add", "--deny-principal", "User:frank", "--operation", "write",
             "--group", "g1")
        rmqc("acl", "add", "--allow-principal", "User:frank", "--operation", "describe",
             "--cluster")
        out = rmqc("acl", "list", "--principal", "User:frank")
        check("pay" in out and "PREFIXED" in out and "g1" in out and "DENY" in out,
              "acl list: " + out)
        rmqc("quota", "set", "--user", "frank", "--producer-byte-rate", "5000",
             "--request-rate", "20")
        rmqc("quota", "set", "--default", "--consumer-byte-rate", "7000")
        out = rmqc("quota", "list")
        check("User:frank" in out and "5000" in out and "7000" in out, "quota list: " + out)
        # The state the CLI made, as grpc reads it on every node.
        users, acls, quotas = same_everywhere(cl, "after the CLI")
        eq(users["frank"], [("SCRAM-SHA-256", 4096), ("SCRAM-SHA-512", 4096)], "frank's mechanisms")
        eq(quotas["User:frank"], (5000, 0, 20), "frank's quota")
        eq(quotas["<default>"], (1048576, 7000, 0), "the default quota")
        # (The verifier it computes is checked against Python's in
        # tests/tools/test_scram_verifier.c.)
        rmqc("acl", "remove", "--allow-principal", "User:frank", "--operation", "read",
             "--topic", "pay", "--resource-pattern-type", "prefixed")
        out = rmqc("acl", "list", "--principal", "User:frank")
        check("pay" not in out, "acl removed: " + out)
        rmqc("user", "delete", "frank")
        out = rmqc("user", "list")
        check("frank" not in out, "user deleted: " + out)
        out = rmqc("user", "delete", "frank", expect=1)
        check("no user" in out, "deleting a missing user says so: " + out)
        out = rmqc("acl", "add", "--allow-principal", "frank", "--operation", "read",
                   "--topic", "x", expect=2)
        out = rmqc("quota", "set", "--user", "frank", expect=2)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


def main() -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("--rmqd", required=True)
    ap.add_argument("--proto-dir", required=True)
    ap.add_argument("--rmq", help="the rmq CLI: user, acl and quota commands")
    ap.add_argument("--keep", action="store_true")
    ap.add_argument("-v", "--verbose", action="store_true")
    args = ap.parse_args()
    tmp = tempfile.mkdtemp(prefix="rmq-security-test-")
    passed = failed = 0
    t_start = time.monotonic()
    cl = None
    try:
        tn.load_protos(pathlib.Path(args.proto_dir).resolve(), pathlib.Path(tmp) / "py")
        cl = tc.Cluster(os.path.abspath(args.rmqd), os.path.join(tmp, "a"), args.verbose,
                        nodes=4, voters=3)
        run(cl, os.path.abspath(args.rmq) if args.rmq else None)
        passed += 1
        print("PASS users_acls_quotas", flush=True)
    except Exception as e:  # noqa: BLE001
        failed += 1
        why = f"gRPC {e.code()}: {e.details()}" if isinstance(e, grpc.RpcError) \
            else f"{type(e).__name__}: {e}"
        print(f"FAIL users_acls_quotas: {why}", flush=True)
        traceback.print_exc()
        for i, n in enumerate(cl.nodes if cl else []):
            print(f"  node {i + 1}:\n" + n.tail(), flush=True)
    finally:
        if cl:
            cl.kill_all()
        tn._kill_all()
    if args.keep or failed:
        print(f"logs kept in {tmp}", flush=True)
    else:
        shutil.rmtree(tmp, ignore_errors=True)
    print(f"broker_security: {time.monotonic() - t_start:.1f}s")
    print(f"{passed} passed, {failed} failed, 0 skipped")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
