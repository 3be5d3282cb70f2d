#!/usr/bin/python3
# SPDX-License-Identifier: Apache-2.0
"""Three rmqd nodes on 127.0.0.1 as one controller quorum (src/broker/
controller.c, ctrl_net.c): topic metadata is replicated through the
controller's Raft log.

- a leader is elected; CreateTopics on it answers OK, on a follower
  NOT_CONTROLLER naming the leader's address; every node lists the topic
  with the same topic id;
- kill -9 of the leader: another node leads (the time is printed, the test
  only bounds it generously: timings are measured in bench/), and topic
  changes go on through it;
- topic changes racing the failover: every change answered OK is on every
  node afterwards;
- the killed node restarts and catches up; a follower away while the
  leader snapshotted past its log catches up by InstallSnapshot;
- GetConfiguration answers the same configuration on every node;
- a fourth node started outside --controller-voters is added (AddPeer: a
  learner, then a voter once caught up) and gets the topics; the leader is
  then removed (RemovePeer) and hands over;
- every node stops cleanly on SIGTERM.

    /usr/bin/python3 tests/broker/test_cluster.py --rmqd build/release/rmqd \\
        --proto-dir proto [-v]

Ends with "N passed, N failed, N skipped".  Nodes are stopped by PID on
every path.
"""
import argparse
import importlib
import os
import pathlib
import re
import shutil
import socket
import sys
import tempfile
import time
import traceback

sys.dont_write_bytecode = True
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import test_node as tn  # noqa: E402
from test_node import check, eq, ok  # noqa: E402

import grpc  # noqa: E402

LEADS_RE = re.compile(r"controller: this node \((\d+)\) leads term (\d+)")
TERM_RE = re.compile(r"controller: .* leads term (\d+)")
NOT_CONTROLLER = 22
RP = None  # controller.raft_pb2, once the protos are loaded
FAILOVER_BOUND_S = 10.0  # liveness, not performance (bench/ measures it)


def free_ports(n):
    socks, ports = [], []
    for _ in range(n):
        s = socket.socket()
        s.bind(("127.0.0.1", 0))
        socks.append(s)
        ports.append(s.getsockname()[1])
    for s in socks:
        s.close()
    return ports


class Cluster:
    def __init__(self, binary, tmp, verbose):
        self.ports = free_ports(4)  # the fourth joins later
        self.voters = ",".join(f"{i + 1}@127.0.0.1:{p}" for i, p in enumerate(self.ports[:3]))
        self.snapshot_entries = 8
        self.nodes = []
        for i in range(4):
            d = os.path.join(tmp, f"n{i + 1}")
            os.makedirs(d, exist_ok=True)
            self.nodes.append(tn.Node(binary, os.path.join(d, "data"), d, verbose))

    def flags(self, i):
        # A snapshot every 8 entries: nodes behind catch up by InstallSnapshot.
        return ("--listen", f"127.0.0.1:{self.ports[i]}", "--node-id", str(i + 1),
                "--controller-voters", self.voters, "--cores", "1",
                "--controller-snapshot-entries", str(self.snapshot_entries))

    def start(self, i):
        self.nodes[i].start(self.flags(i))

    def leader(self, timeout=FAILOVER_BOUND_S, exclude=None):
        """(index, term) of the node that last said it leads, among the
        live ones; waits for one."""
        end = time.monotonic() + timeout
        while time.monotonic() < end:
            best = None
            for i, n in enumerate(self.nodes):
                if not n.alive() or i == exclude:
                    continue
                for line in n.lines:
                    m = LEADS_RE.search(line)
                    if m and (best is None or int(m.group(2)) > best[1]):
                        best = (i, int(m.group(2)))
            if best:
                # A newer term elsewhere means it no longer leads.
                terms = [int(t.group(1)) for n in self.nodes if n.alive() for line in n.lines
                         for t in [TERM_RE.search(line)] if t]
                if max(terms) == best[1]:
                    return best
            time.sleep(0.02)
        raise AssertionError("no controller leader within %.0fs" % timeout)

    def client(self, i):
        return tn.Client(f"127.0.0.1:{self.ports[i]}")

    def topics(self, i):
        with self.client(i) as c:
            lt = c.unary("/rustmq.controller.AdminService/ListTopics",
                         tn.A.ListTopicsRequest(version=tn.V()), tn.A.ListTopicsResponse)
            return {t.name: t.topic_id for t in lt.topics}

    def kill_all(self):
        for n in self.nodes:
            n.kill()


def same_topics_everywhere(cl, want, what, timeout=10, but=None):
    """Every live node (but one) lists exactly want (name -> id), within
    timeout (a follower applies what committed a moment later)."""
    end = time.monotonic() + timeout
    while True:
        got = [cl.topics(i) for i, n in enumerate(cl.nodes) if n.alive() and i != but]
        if all(g == want for g in got):
            return
        if time.monotonic() > end:
            raise AssertionError(f"{what}: topics differ: want {want}, nodes have {got}")
        time.sleep(0.05)


def configuration(cl, i):
    with cl.client(i) as c:
        return ok(c.unary("/rustmq.controller.ControllerRaftService/GetConfiguration",
                          RP.GetConfigurationRequest(), RP.GetConfigurationResponse),
                  f"GetConfiguration of node {i + 1}")


def voters(conf):
    return sorted(int(s.id) for s in conf.configuration.servers if s.role == RP.RAFT_SERVER_ROLE_VOTER)


def create(cl, i, name):
    with cl.client(i) as c:
        return c.create_topics([(name, 2)])


def run(cl):
    for i in range(3):
        cl.start(i)
    li, term = cl.leader()
    print(f"    node {li + 1} leads term {term}", flush=True)

    # Through the leader; refused by a follower, which names the leader.
    r = ok(create(cl, li, "c-one"), "CreateTopics")
    ok(r.topics[0], "create on the leader")
    f = (li + 1) % 3
    r = ok(create(cl, f, "c-refused"), "CreateTopics")
    eq(r.topics[0].error_code, NOT_CONTROLLER, "create on a follower")
    check(f"127.0.0.1:{cl.ports[li]}" in r.topics[0].error_message,
          f"NOT_CONTROLLER names the leader: {r.topics[0].error_message!r}")
    want = cl.topics(li)
    check("c-one" in want and "c-refused" not in want, f"leader's topics: {want}")
    same_topics_everywhere(cl, want, "after a create")

    # kill -9 of the leader, with creates racing it.
    acked = {}
    t0 = time.monotonic()
    cl.nodes[li].kill()
    new = None
    k = 0
    while time.monotonic() - t0 < FAILOVER_BOUND_S and new is None:
        for j in range(3):
            if j == li:
                continue
            try:
                r = create(cl, j, f"c-race-{k}")
            except grpc.RpcError:
                continue
            k += 1
            if r.error_code == 0 and r.topics[0].error_code == 0:
                acked[r.topics[0].name] = r.topics[0].topic_id
                new = j
                break
        time.sleep(0.01)
    check(new is not None, f"no create answered OK within {FAILOVER_BOUND_S}s of the kill")
    print(f"    after kill -9 of node {li + 1}: node {new + 1} took a create "
          f"{time.monotonic() - t0:.2f}s later", flush=True)
    for n in range(5):
        r = ok(create(cl, new, f"c-after-{n}"), "CreateTopics")
        ok(r.topics[0], "create on the new leader")
        acked[r.topics[0].name] = r.topics[0].topic_id
    want = cl.topics(new)
    for name, tid in acked.items():
        eq(want.get(name), tid, f"acknowledged {name} on the new leader")
    same_topics_everywhere(cl, want, "after the failover")

    # The killed node comes back and catches up.
    cl.start(li)
    same_topics_everywhere(cl, want, "after the old leader restarted")

    # A follower away while the leader snapshots past its log: it comes
    # back through InstallSnapshot.
    li, _ = cl.leader()
    f = (li + 1) % 3
    cl.nodes[f].kill()
    for n in range(20):
        ok(create(cl, li, f"c-away-{n}").topics[0], "create while a follower is away")
    want = cl.topics(li)
    cl.start(f)
    same_topics_everywhere(cl, want, "after the follower came back")
    check(any("installed the leader's snapshot" in l for l in cl.nodes[f].lines),
          "the follower caught up by a snapshot:\n" + cl.nodes[f].tail())

    # Every node holds the same configuration.
    li, _ = cl.leader()
    confs = [configuration(cl, i) for i in range(3)]
    for i, conf in enumerate(confs):
        eq(voters(conf), [1, 2, 3], f"node {i + 1}: voters")
        # (A configuration that came with a snapshot reports the snapshot's
        # index: the entry that held it is compacted away.)
        check(conf.configuration_index <= conf.commit_index, f"node {i + 1}: committed")
        eq(conf.leader_id, str(li + 1), f"node {i + 1}: the leader")
    eq(len(confs[li].progress), 2, "the leader's progress of the two others")
    # DescribeCluster answers the same quorum from any node (any shard).
    for i in range(3):
        with cl.client(i) as c:
            d = ok(c.unary("/rustmq.controller.AdminService/DescribeCluster",
                           tn.A.DescribeClusterRequest(version=tn.V()),
                           tn.A.DescribeClusterResponse), f"DescribeCluster on node {i + 1}")
            eq(d.controller_id, str(li + 1), f"node {i + 1}: DescribeCluster's controller")
            eq(sorted(d.controller_voter_ids), ["1", "2", "3"], f"node {i + 1}: its voters")

    # A fourth node joins: AddPeer on the leader answers once it votes.
    cl.start(3)
    with cl.client((li + 1) % 3) as c:
        r = c.unary("/rustmq.controller.ControllerRaftService/AddPeer",
                    RP.AddPeerRequest(id="4", address=f"127.0.0.1:{cl.ports[3]}",
                                      role=RP.RAFT_SERVER_ROLE_VOTER), RP.AddPeerResponse)
        eq(r.error_code, NOT_CONTROLLER, "AddPeer on a follower")
        eq(r.leader_id, str(li + 1), "AddPeer on a follower names the leader")
    with cl.client(li) as c:
        r = ok(c.unary("/rustmq.controller.ControllerRaftService/AddPeer",
                       RP.AddPeerRequest(id="4", address=f"127.0.0.1:{cl.ports[3]}",
                                         role=RP.RAFT_SERVER_ROLE_VOTER), RP.AddPeerResponse,
                       timeout=40), "AddPeer")
        eq(voters(r), [1, 2, 3, 4], "voters after AddPeer")
    same_topics_everywhere(cl, want, "after node 4 joined")
    ok(create(cl, li, "c-four").topics[0], "create with four voters")
    want = cl.topics(li)
    same_topics_everywhere(cl, want, "a create with four voters")

    # The leader removes itself: it hands over once the change committed.
    with cl.client(li) as c:
        r = ok(c.unary("/rustmq.controller.ControllerRaftService/RemovePeer",
                       RP.RemovePeerRequest(id=str(li + 1)), RP.RemovePeerResponse, timeout=40),
               "RemovePeer of the leader")
        check(li + 1 not in voters(r), f"voters after RemovePeer: {voters(r)}")
    new, _ = cl.leader(exclude=li)
    check(new != li, "another node leads")
    ok(create(cl, new, "c-after-remove").topics[0], "create after the leader left")
    want = cl.topics(new)
    same_topics_everywhere(cl, want, "after the leader left", but=li)

    for i, n in enumerate(cl.nodes):
        eq(n.stop(), 0, f"node {i + 1}: exit status after SIGTERM")


def main() -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("--rmqd", required=True)
    ap.add_argument("--proto-dir", required=True)
    ap.add_argument("--keep", action="store_true")
    ap.add_argument("-v", "--verbose", action="store_true")
    args = ap.parse_args()
    tmp = tempfile.mkdtemp(prefix="rmq-cluster-test-")
    passed = failed = 0
    cl = None
    t_start = time.monotonic()
    try:
        tn.load_protos(pathlib.Path(args.proto_dir).resolve(), pathlib.Path(tmp) / "py")
        global RP
        RP = importlib.import_module("controller.raft_pb2")
        cl = Cluster(os.path.abspath(args.rmqd), tmp, args.verbose)
        run(cl)
        passed += 1
        print("PASS three_node_controller", flush=True)
    except Exception as e:  # noqa: BLE001
        failed += 1
        why = f"gRPC {e.code()}: {e.details()}" if isinstance(e, grpc.RpcError) \
            else f"{type(e).__name__}: {e}"
        print(f"FAIL three_node_controller: {why}", flush=True)
        traceback.print_exc()
        if cl:
            for i, n in enumerate(cl.nodes):
                print(f"  node {i + 1}:\n" + n.tail(), flush=True)
    finally:
        if cl:
            cl.kill_all()
        tn._kill_all()
        if args.keep or failed:
            print(f"logs kept in {tmp}", flush=True)
        else:
            shutil.rmtree(tmp, ignore_errors=True)
    print(f"broker_cluster: {time.monotonic() - t_start:.1f}s")
    print(f"{passed} passed, {failed} failed, 0 skipped")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
