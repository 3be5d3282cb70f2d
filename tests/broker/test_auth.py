#!/usr/bin/python3
# SPDX-License-Identifier: Apache-2.0
"""Authentication and authorization on one rmqd node (src/broker/auth.c).

Users are added with `rmq user add` on a node started with --auth none (the
bootstrap docs/security.md describes), then the node restarts with --auth
required and a super user.  Checked, with grpcio and a SCRAM client written
here from RFC 5802 (hashlib, hmac):

- without credentials every call but Authenticate and health checks is
  UNAUTHENTICATED, saying what to do;
- SCRAM-SHA-256 and SCRAM-SHA-512: the token works, the server's signature
  verifies; a wrong password, a forged client-final (bad proof), a replayed
  one and an unknown session are refused;
- PLAIN with the right and a wrong password;
- a forged token, an expired one (--token-ttl 2s) and a deleted user's are
  UNAUTHENTICATED;
- ACLs: alice without ACLs cannot produce or fetch (UNAUTHORIZED naming the
  permission) nor alter the cluster (PERMISSION_DENIED); with WRITE and
  READ on a prefix she can, on other topics not; a DENY wins; the super
  user may do everything; CREATE on a prefix lets her create topics; a
  group needs READ;
- `rmq --user --password-file` (SCRAM) lists and produces.

    /usr/bin/python3 tests/broker/test_auth.py --rmqd build/release/rmqd \\
        --rmq build/release/rmq --proto-dir proto

Ends with "N passed, N failed, N skipped".
"""
import base64
import hashlib
import hmac
import json
import os
import pathlib
import subprocess
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import test_node as tn  # noqa: E402

import grpc  # noqa: E402

check, eq, ok = tn.check, tn.eq, tn.ok
AUTH = "/rustmq.client.AuthService/Authenticate"
AUTHENTICATION_FAILED = 42
UNAUTHORIZED = 8


def authenticate(c, mech, data, session_id=b""):
    req = tn.T.AuthenticationRequest(mechanism=mech, auth_data=data, version=tn.V(),
                                     session_id=session_id)
    return c.unary(AUTH, req, tn.T.AuthenticationResponse)


def scram(c, user, password, mech="SCRAM-SHA-256", tamper=None):
    """RFC 5802 from the client's side; returns the final response."""
    h = hashlib.sha256 if mech == "SCRAM-SHA-256" else hashlib.sha512
    cnonce = base64.b64encode(os.urandom(18)).decode()
    bare = f"n={user},r={cnonce}"
    r1 = authenticate(c, mech, ("n,," + bare).encode())
    if r1.error_code:
        return r1
    first = r1.challenge.decode()
    attrs = dict(kv.split("=", 1) for kv in first.split(","))
    check(attrs["r"].startswith(cnonce), "the server nonce extends ours")
    salted = hashlib.pbkdf2_hmac(h().name, password.encode(), base64.b64decode(attrs["s"]),
                                 int(attrs["i"]))
    ckey = hmac.new(salted, b"Client Key", h).digest()
    stored = h(ckey).digest()
    final_bare = f"c=biws,r={attrs['r']}"
    auth_msg = f"{bare},{first},{final_bare}".encode()
    sig = hmac.new(stored, auth_msg, h).digest()
    proof = bytes(a ^ b for a, b in zip(ckey, sig))
    if tamper == "proof":
        proof = bytes([proof[0] ^ 1]) + proof[1:]
    final = f"{final_bare},p={base64.b64encode(proof).decode()}".encode()
    r2 = authenticate(c, mech, final, r1.session_id)
    if tamper == "replay":
        return authenticate(c, mech, final, r1.session_id)
    if not r2.error_code:
        skey = hmac.new(salted, b"Server Key", h).digest()
        want = base64.b64encode(hmac.new(skey, auth_msg, h).digest()).decode()
        eq(r2.challenge.decode(), f"v={want}", "the server's signature")
    return r2


def bearer(token):
    return (("authorization", "Bearer " + token),)


def call_md(c, path, req, resp_cls, md):
    f = c.ch.unary_unary(path, request_serializer=lambda m: m.SerializeToString(),
                         response_deserializer=resp_cls.FromString)
    return f(req, metadata=md, timeout=15)


def status_of(fn):
    try:
        fn()
    except grpc.RpcError as e:
        return e.code(), e.details()
    return grpc.StatusCode.OK, ""


def list_topics(c, md):
    return call_md(c, "/rustmq.controller.AdminService/ListTopics",
                   tn.A.ListTopicsRequest(version=tn.V()), tn.A.ListTopicsResponse, md)


def produce(c, md, topic, value):
    req = tn.P.ProduceRequest(version=tn.V(), client_id="t", acks=tn.ACK_LEADER,
                              topic_partition=tn.T.TopicPartition(topic=topic, partition=0),
                              records=[tn.T.Record(value=value)])
    return call_md(c, "/rustmq.client.ProducerService/Produce", req, tn.P.ProduceResponse, md)


def fetch(c, md, topic):
    req = c.fetch_req([(topic, 0, 0)])
    return call_md(c, "/rustmq.client.ConsumerService/Fetch", req, tn.C.FetchResponse, md)


def rmq(args, *cmd, input=None):
    r = subprocess.run([args.rmq, *cmd], input=input, stdout=subprocess.PIPE,
                       stderr=subprocess.STDOUT, timeout=60)
    return r.returncode, r.stdout.decode(errors="replace")


def run(args, tmp):
    secret = os.path.join(tmp, "secret")
    pathlib.Path(secret).write_text(base64.b64encode(os.urandom(48)).decode() + "\n")
    pw = {}
    for u in ("admin", "alice", "bob"):
        pw[u] = f"pw-{u}-{os.urandom(4).hex()}"
        pathlib.Path(tmp, u).write_text(pw[u] + "\n")
    node = tn.Node(args.rmqd, os.path.join(tmp, "data"), tmp, args.verbose)
    base = ("--token-secret-file", secret, "--super-users", "User:admin")
    # Bootstrap: users added while the node takes calls without credentials.
    node.start((*base, "--auth", "none"))
    try:
        for u, mech in (("admin", "SCRAM-SHA-256"), ("alice", "SCRAM-SHA-256"),
                        ("alice", "SCRAM-SHA-512"), ("bob", "SCRAM-SHA-256")):
            rc, out = rmq(args, "--bootstrap", node.addr, "user", "add", u, "--password-file",
                          os.path.join(tmp, u), "--mechanism", mech)
            check(rc == 0, f"rmq user add {u} {mech}: {out}")
        with tn.Client(node.addr) as c:
            c.create_topic("app-orders", 1)
            c.create_topic("secret", 1)
        eq(node.stop(), 0, "exit status")
        node.start((*base, "--auth", "required", "--token-ttl", "1h"))
        with tn.Client(node.addr, own_connection=True) as c:
            code, why = status_of(lambda: list_topics(c, None))
            check(code == grpc.StatusCode.UNAUTHENTICATED and "Authenticate" in why,
                  f"no credentials: {code} {why}")
            check(c.unary("/grpc.health.v1.Health/Check", tn.GH.HealthCheckRequest(),
                          tn.GH.HealthCheckResponse).status == 1, "health checks are open")
            # SCRAM, both hashes.
            r = scram(c, "alice", pw["alice"])
            check(r.authenticated and not r.error_code, f"SCRAM-SHA-256: {r.error_message}")
            eq(r.principal, "User:alice", "principal")
            check(r.expires_in.seconds > 3500, f"expires_in {r.expires_in.seconds}")
            alice = r.session_token.decode()
            r = scram(c, "alice", pw["alice"], "SCRAM-SHA-512")
            check(r.authenticated, f"SCRAM-SHA-512: {r.error_message}")
            for what, r in (("a wrong password", scram(c, "alice", "nope")),
                            ("a forged proof", scram(c, "alice", pw["alice"], tamper="proof")),
                            ("a replayed client-final", scram(c, "alice", pw["alice"],
                                                              tamper="replay")),
                            ("an unknown user", scram(c, "mallory", "x")),
                            ("an unknown session", authenticate(c, "SCRAM-SHA-256", b"c=biws",
                                                                b"0123456789abcdef"))):
                check(not r.authenticated and r.error_code == AUTHENTICATION_FAILED,
                      f"{what}: {r.error_code} {r.error_message}")
            # PLAIN.
            r = authenticate(c, "PLAIN", b"\0bob\0" + pw["bob"].encode())
            check(r.authenticated, f"PLAIN: {r.error_message}")
            bob = r.session_token.decode()
            r = authenticate(c, "PLAIN", b"\0bob\0wrong")
            check(r.error_code == AUTHENTICATION_FAILED, f"PLAIN, wrong password: {r}")
            r = authenticate(c, "GSSAPI", b"")
            check(r.error_code != 0 and "SCRAM-SHA-256" in r.error_message, "unsupported")
            # Tokens.
            ok(list_topics(c, bearer(alice)), "ListTopics with alice's token")
            forged = alice[:-2] + ("A" if alice[-2] != "A" else "B") + alice[-1]
            code, why = status_of(lambda: list_topics(c, bearer(forged)))
            check(code == grpc.StatusCode.UNAUTHENTICATED and "signature" in why, f"{code} {why}")
            code, why = status_of(lambda: list_topics(c, bearer("garbage")))
            check(code == grpc.StatusCode.UNAUTHENTICATED, f"garbage token: {code} {why}")
            # ACLs: none for alice yet.
            r = produce(c, bearer(alice), "app-orders", b"x")
            check(r.error_code == UNAUTHORIZED and "User:alice lacks WRITE on topic app-orders"
                  in r.error_message, f"produce without ACL: {r.error_code} {r.error_message}")
            r = fetch(c, bearer(alice), "app-orders")
            check(r.error_code == UNAUTHORIZED and "READ" in r.error_message, f"fetch: {r}")
            admin = scram(c, "admin", pw["admin"]).session_token.decode()
            ccfg = tn.A.DescribeClusterRequest(version=tn.V())
            ok(call_md(c, "/rustmq.controller.AdminService/DescribeCluster", ccfg,
                       tn.A.DescribeClusterResponse, bearer(alice)), "DescribeCluster")
            rc, out = rmq(args, "--bootstrap", node.addr, "--user", "admin", "--password-file",
                          os.path.join(tmp, "admin"), "acl", "add", "--allow-principal",
                          "User:alice", "--operation", "write,read", "--topic",
                          "app-", "--resource-pattern-type", "prefixed")
            check(rc == 0, f"rmq acl add (admin over SCRAM): {out}")
            tn.wait_until(lambda: produce(c, bearer(alice), "app-orders", b"x").error_code == 0, 10,
                          "alice may write app-*")
            ok(fetch(c, bearer(alice), "app-orders"), "alice may read app-*")
            # Listings show what she may DESCRIBE (implied by READ and WRITE).
            names = {t.name for t in list_topics(c, bearer(alice)).topics}
            eq(names, {"app-orders"}, "the topics alice's listing shows")
            md = call_md(c, "/rustmq.client.MetadataService/GetTopicMetadata",
                         tn.MD.GetTopicMetadataRequest(version=tn.V(), topics=["secret"]),
                         tn.MD.GetTopicMetadataResponse, bearer(alice))
            check(md.topics[0].error_code == UNAUTHORIZED and not md.topics[0].partitions,
                  f"metadata of a topic alice may not describe: {md.topics[0]}")
            r = produce(c, bearer(alice), "secret", b"x")
            check(r.error_code == UNAUTHORIZED, f"not on other topics: {r}")
            r = produce(c, bearer(bob), "app-orders", b"x")
            check(r.error_code == UNAUTHORIZED, f"bob has no ACL: {r}")
            ok(produce(c, bearer(admin), "secret", b"x"), "the super user writes anywhere")
            rc, out = rmq(args, "--bootstrap", node.addr, "--user", "admin", "--password-file",
                          os.path.join(tmp, "admin"), "acl", "add", "--deny-principal",
                          "User:alice", "--operation", "write", "--topic", "app-orders")
            check(rc == 0, f"rmq acl add --deny-principal: {out}")
            tn.wait_until(lambda: produce(c, bearer(alice), "app-orders", b"x").error_code ==
                          UNAUTHORIZED, 10, "a DENY wins over the prefixed ALLOW")
            # Creating topics: CREATE on the name (checked where the call
            # arrives, before it goes to the controller's leader).
            creq = tn.A.CreateTopicsRequest(version=tn.V(), topics=[
                tn.A.CreatableTopic(name="app-new", partitions=1)])
            r = call_md(c, "/rustmq.controller.AdminService/CreateTopics", creq,
                        tn.A.CreateTopicsResponse, bearer(alice))
            check(r.error_code == UNAUTHORIZED and "CREATE" in r.error_message,
                  f"create without CREATE: {r.error_code} {r.error_message}")
            rc, out = rmq(args, "--bootstrap", node.addr, "--user", "admin", "--password-file",
                          os.path.join(tmp, "admin"), "acl", "add", "--allow-principal",
                          "User:alice", "--operation", "create", "--topic", "app-",
                          "--resource-pattern-type", "prefixed")
            check(rc == 0, f"rmq acl add create: {out}")
            tn.wait_until(lambda: not call_md(c, "/rustmq.controller.AdminService/CreateTopics",
                                              creq, tn.A.CreateTopicsResponse,
                                              bearer(alice)).error_code, 10,
                          "alice creates app-new")
            # Groups: READ on the group.
            jreq = tn.C.JoinGroupRequest(version=tn.V(), group_id="g1", topics=["app-orders"])
            r = call_md(c, "/rustmq.client.ConsumerService/JoinGroup", jreq,
                        tn.C.JoinGroupResponse, bearer(alice))
            check(r.error_code == UNAUTHORIZED and "group g1" in r.error_message,
                  f"JoinGroup without READ on the group: {r.error_code} {r.error_message}")
            # Cluster administration needs CLUSTER ALTER.
            code, why = status_of(lambda: call_md(
                c, "/rustmq.controller.AdminService/ElectLeaders",
                tn.A.ElectLeadersRequest(version=tn.V()), tn.A.ElectLeadersResponse, bearer(alice)))
            check(code == grpc.StatusCode.PERMISSION_DENIED and "ALTER" in why, f"{code} {why}")
            # rmq-bench logs in too: the super user's load runs clean; without
            # --user the node refuses it.
            bench = os.path.join(os.path.dirname(args.rmq), "rmq-bench")
            r = subprocess.run([bench, "--target", f"rmq://{node.addr}", "--topic", "secret",
                                "--create-topic=false", "--duration", "2s", "--warmup", "0s",
                                "--progress=false", "--json", "--user", "admin",
                                "--password-file", os.path.join(tmp, "admin")],
                               stdout=subprocess.PIPE, stderr=subprocess.PIPE, timeout=60)
            out = r.stdout.decode(errors="replace")
            check(r.returncode == 0, f"rmq-bench --user admin: {r.returncode} {out[-300:]} "
                  f"{r.stderr.decode(errors='replace')[-300:]}")
            j = json.loads(out)
            check(j["errors"]["total"] == 0 and j["acknowledged_records"] > 0,
                  f"rmq-bench --user admin: {j['errors']} {j['acknowledged_records']}")
            r = subprocess.run([bench, "--target", f"rmq://{node.addr}", "--topic", "secret",
                                "--create-topic=false", "--duration", "1s", "--warmup", "0s",
                                "--progress=false"], stdout=subprocess.PIPE,
                               stderr=subprocess.STDOUT, timeout=60)
            check(r.returncode != 0 or "UNAUTHENTICATED" in r.stdout.decode(errors="replace"),
                  "rmq-bench without --user is refused")
            # The CLI with SCRAM.
            rc, out = rmq(args, "--bootstrap", node.addr, "--user", "alice", "--password-file",
                          os.path.join(tmp, "alice"), "topic", "list")
            check(rc == 0 and "app-orders" in out, f"rmq --user alice topic list: {out}")
            rc, out = rmq(args, "--bootstrap", node.addr, "topic", "list")
            check(rc != 0 and "Authenticate" in out, f"rmq without credentials: {out}")
            # A deleted user's token is refused.
            rc, out = rmq(args, "--bootstrap", node.addr, "--user", "admin", "--password-file",
                          os.path.join(tmp, "admin"), "user", "delete", "bob")
            check(rc == 0, f"rmq user delete bob: {out}")
            tn.wait_until(lambda: status_of(lambda: list_topics(c, bearer(bob)))[0] ==
                          grpc.StatusCode.UNAUTHENTICATED, 10, "bob's token refused")
        eq(node.stop(), 0, "exit status")
        # Expiry.
        node.start((*base, "--auth", "required", "--token-ttl", "2s"))
        with tn.Client(node.addr, own_connection=True) as c:
            r = scram(c, "alice", pw["alice"])
            ok(list_topics(c, bearer(r.session_token.decode())), "a fresh token")
            time.sleep(2.2)
            code, why = status_of(lambda: list_topics(c, bearer(r.session_token.decode())))
            check(code == grpc.StatusCode.UNAUTHENTICATED and "expired" in why, f"{code} {why}")
        eq(node.stop(), 0, "exit status")
    finally:
        node.kill()


def main():
    return tn.single_main("auth", run)


if __name__ == "__main__":
    sys.exit(main())
