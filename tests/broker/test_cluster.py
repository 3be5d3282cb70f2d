#!/usr/bin/python3
# SPDX-License-Identifier: Apache-2.0
"""Three rmqd nodes on 127.0.0.1 as one controller quorum (src/broker/
controller.c, ctrl_net.c): topic metadata is replicated through the
controller's Raft log.

- a leader is elected; CreateTopics on it answers OK, and on a follower,
  which forwards it to the leader; every node lists the topics with the
  same topic ids;
- kill -9 of the leader: another node leads (the time is printed, the test
  only bounds it generously: timings are measured in bench/), and topic
  changes go on through it;
- topic changes racing the failover: every change answered OK is on every
  node afterwards;
- the killed node restarts and catches up; a follower away while the
  leader snapshotted past its log catches up by InstallSnapshot;
- GetConfiguration answers the same configuration on every node;
- a fourth node started outside --controller-voters is a broker only: it
  registers and gets the topics from its heartbeats' answers; it is then
  added (AddPeer: a learner, then a voter once caught up); the leader is
  then removed (RemovePeer) and hands over;
- every node stops cleanly on SIGTERM.

foreign_storage_refused (a third set of nodes): a broker whose storage
joined one cluster is refused by another cluster's controller; a new one
joins it.

placement_and_fencing (a second cluster, 1 s broker sessions):
- the three brokers register; a topic's partitions are spread over them,
  one replica each, every node answering the same leaders; a produce on
  the leader is stored, on another node it gets NOT_LEADER with the
  leader's id and address;
- a broker stopped with SIGSTOP past its session is fenced: its
  partitions have no leader (LEADER_NOT_AVAILABLE) on every node, the
  others are still served; after SIGCONT it is unfenced in the same
  broker epoch, leads its partitions again in a new leader epoch, and
  has kept its records;
- a fourth node outside the voters registers as a broker only, serves the
  partitions placed on it, and follows the controller to a new leader
  after the one it heartbeats to is killed.

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
import signal
import socket
import subprocess
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
    def __init__(self, binary, tmp, verbose, extra=()):
        self.ports = free_ports(4)  # the fourth joins later
        self.voters = ",".join(f"{i + 1}@127.0.0.1:{p}" for i, p in enumerate(self.ports[:3]))
        self.snapshot_entries = 8
        self.extra = tuple(extra)
        self.nodes = []
        for i in range(4):
            d = os.path.join(tmp, f"n{i + 1}")
            os.makedirs(d, exist_ok=True)
            self.nodes.append(tn.Node(binary, os.path.join(d, "data"), d, verbose))

    def flags(self, i):
        # A snapshot every 8 entries: nodes behind catch up by InstallSnapshot.
        return ("--listen", f"127.0.0.1:{self.ports[i]}", "--node-id", str(i + 1),
                "--controller-voters", self.voters, "--cores", "1",
                "--controller-snapshot-entries", str(self.snapshot_entries), *self.extra)

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


def run(cl, rmq=None):
    for i in range(3):
        cl.start(i)
    li, term = cl.leader()
    print(f"    node {li + 1} leads term {term}", flush=True)

    # Through the leader, and through a follower, which forwards it to the
    # leader (once each: a second create of a name is refused).
    r = ok(create(cl, li, "c-one"), "CreateTopics")
    ok(r.topics[0], "create on the leader")
    f = (li + 1) % 3
    r = ok(create(cl, f, "c-forwarded"), "CreateTopics")
    ok(r.topics[0], "create on a follower")
    r = ok(create(cl, (li + 2) % 3, "c-forwarded"), "CreateTopics")
    eq(r.topics[0].error_code, tn.TOPIC_ALREADY_EXISTS, "the same create on the other follower")
    want = cl.topics(li)
    check("c-one" in want and "c-forwarded" in want, f"leader's topics: {want}")
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

    # A fourth node outside the voters is a broker only: it registers and
    # learns the metadata from its heartbeats' answers.
    cl.start(3)
    wait_for("node 4 registered as a broker",
             lambda: brokers(cl, li).get(4, (0,))[0] == BROKER_RUNNING)
    same_topics_everywhere(cl, want, "node 4, a broker only, got the metadata")
    # It is then added to the controller: AddPeer on the leader answers
    # once it votes.
    with cl.client((li + 1) % 3) as c:
        r = c.unary("/rustmq.controller.ControllerRaftService/AddPeer",
                    RP.AddPeerRequest(id="4", address=f"127.0.0.1:{cl.ports[3]}",
                                      role=RP.RAFT_SERVER_ROLE_VOTER), RP.AddPeerResponse)
        eq(r.error_code, NOT_CONTROLLER, "AddPeer on a follower")
        eq(r.leader_id, str(li + 1), "AddPeer on a follower names the leader")
    if rmq:
        # The CLI, given a follower, asks the leader it names.
        out = rmq_cli(rmq, f"127.0.0.1:{cl.ports[(li + 1) % 3]}", "cluster", "add-voter", "4",
                      f"127.0.0.1:{cl.ports[3]}")
        check(re.match(r"added voter 4; voters now: 1@\S+ 2@\S+ 3@\S+ 4@\S+$", out.strip()),
              f"rmq cluster add-voter: {out!r}")
    else:
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


def run_foreign(cl):
    """A node whose storage joined one cluster is refused by the controller
    of another (RegisterBroker: INVALID_REQUEST naming both cluster ids);
    a new one joins it and records its id."""
    def start(i, voters):
        cl.nodes[i].start(("--listen", f"127.0.0.1:{cl.ports[i]}", "--node-id", str(i + 1),
                           "--controller-voters", voters, "--cores", "1"))

    a = f"1@127.0.0.1:{cl.ports[0]}"
    start(0, a)
    start(1, a)  # a broker only of cluster A
    joined = os.path.join(cl.nodes[1].data_dir, "meta", "cluster_joined")
    wait_for("node 2 recorded the cluster it joined", lambda: os.path.isfile(joined))
    with open(joined) as f:
        a_id = f.read().strip()
    with cl.client(0) as c:
        d = c.unary("/rustmq.controller.AdminService/DescribeCluster",
                    tn.A.DescribeClusterRequest(version=tn.V()), tn.A.DescribeClusterResponse)
        eq(a_id, d.cluster_id, "node 2 recorded cluster A's id")
    for i in (0, 1):
        eq(cl.nodes[i].stop(), 0, f"node {i + 1}: exit status after SIGTERM")
    b = f"3@127.0.0.1:{cl.ports[2]}"
    start(2, b)
    start(1, b)  # cluster A's broker pointed at cluster B
    wait_for("node 2 refused by cluster B",
             lambda: any("refuses this broker" in l and a_id in l for l in cl.nodes[1].lines))
    eq(sorted(brokers(cl, 2)), [3], "cluster B's brokers")
    start(3, b)  # a new node joins B
    wait_for("node 4 joined cluster B", lambda: brokers(cl, 2).get(4, (0,))[0] == BROKER_RUNNING)
    for i in (1, 2, 3):
        eq(cl.nodes[i].stop(), 0, f"node {i + 1}: exit status after SIGTERM")


NOT_LEADER = 3
LEADER_NOT_AVAILABLE = 21
REPLICA_NOT_AVAILABLE = 48
BROKER_RUNNING, BROKER_FENCED = 2, 3


def brokers(cl, i):
    """{broker id: (state, epoch, "host:port")} as node i describes them."""
    with cl.client(i) as c:
        d = ok(c.unary("/rustmq.controller.AdminService/DescribeCluster",
                       tn.A.DescribeClusterRequest(version=tn.V()),
                       tn.A.DescribeClusterResponse), f"DescribeCluster on node {i + 1}")
        return {int(b.id.id): (b.state, b.epoch, f"{b.host}:{b.port}") for b in d.brokers}


def wait_for(what, fn, timeout=15):
    end = time.monotonic() + timeout
    while True:
        v = fn()
        if v:
            return v
        if time.monotonic() > end:
            raise AssertionError(f"{what}: not within {timeout}s")
        time.sleep(0.05)


NOT_AVAILABLE = 4


def produce_settled(c, topic, p, records, what):
    """A produce answered OK, asked again while the partition is still
    being opened on its broker, or its broker has not applied the topic's
    creation yet (both follow the controller a moment behind)."""
    end = time.monotonic() + 10
    while True:
        r = c.produce(topic, p, records)
        if r.error_code not in (NOT_AVAILABLE, tn.TOPIC_NOT_FOUND, tn.PARTITION_NOT_FOUND) or \
                time.monotonic() > end:
            return ok(r, what)
        time.sleep(0.05)


def partitions(cl, i, topic):
    """[(leader id, leader epoch, error code, replica ids)] by partition, as
    node i's metadata says."""
    with cl.client(i) as c:
        r = ok(c.unary("/rustmq.client.MetadataService/GetTopicMetadata",
                       tn.MD.GetTopicMetadataRequest(version=tn.V(), topics=[topic]),
                       tn.MD.GetTopicMetadataResponse), "GetTopicMetadata")
        return [(p.leader_id, p.leader_epoch, p.error_code, list(p.replica_ids))
                for p in r.topics[0].partitions]


REASSIGN = "/rustmq.controller.ControllerBrokerService/ReassignPartitions"
COPYING, COMPLETED, CANCELLED, FAILED = 2, 5, 6, 7


def reassign(cl, i, moves, messages=None):
    """The progress messages of a ReassignPartitions on node i (moves:
    [(topic, partition, [broker ids] or "cancel")], a progress message
    every 200 ms): all of them (the stream must end), or the first
    `messages` (the stream then cancelled)."""
    CB = importlib.import_module("controller.cluster_pb2")
    T = importlib.import_module("common.types_pb2")
    D = importlib.import_module("google.protobuf.duration_pb2")
    req = CB.ReassignPartitionsRequest(
        version=tn.V(), progress_interval=D.Duration(nanos=200_000_000),
        partitions=[CB.PartitionReassignment(
            topic_partition=T.TopicPartition(topic=t, partition=p), cancel=tgt == "cancel",
            target_replica_ids=[] if tgt == "cancel" else [str(b) for b in tgt])
            for t, p, tgt in moves])
    with cl.client(i) as c:
        it = c.server_stream(REASSIGN, req, CB.ReassignPartitionsProgress, timeout=10)
        if messages is None:
            return list(it)
        got = [next(it) for _ in range(messages)]
        it.cancel()
        return got


def statuses(msg):
    return {(s.topic_partition.topic, s.topic_partition.partition): s for s in msg.partitions}


def start_move(cl, li):
    """A partition moved to another broker: the leader copies it there, the
    copy joins the ISR, the move completes (the new broker leads, with the
    records; the old one deletes its copy); requests that cannot be taken
    are refused one by one.  Returns the topic's leaders."""
    with cl.client(li) as c:
        c.create_topic("moving", 3)
    parts = wait_for("every node knows moving's leaders",
                     lambda: all(len(partitions(cl, i, "moving")) == 3 for i in range(3))
                     and partitions(cl, li, "moving"))
    src = int(parts[0][0])
    dst = next(b for b in (1, 2, 3) if b != src)
    follower = next(i for i in range(3) if i != li)
    (m,) = reassign(cl, follower, [("moving", 0, [dst])])
    eq(m.error_code, NOT_CONTROLLER, "ReassignPartitions on a node that does not lead")
    eq((m.leader_id, m.leader_hint), (str(li + 1), f"127.0.0.1:{cl.ports[li]}"),
       "NOT_CONTROLLER names the controller's leader")
    eq(len(m.partitions), 0, "a whole-request error reports no partition")

    with cl.client(src - 1) as c:
        produce_settled(c, "moving", 0, tn.make_records(3, "mv"), "produce moving-0 before it moves")
    msgs = reassign(cl, li, [("moving", 0, [dst]), ("moving", 9, [dst]), ("moving", 1, [9]),
                             ("moving", 2, list(range(1, 10)))])
    st = statuses(msgs[0])
    eq(len(st), 4, "the first message reports every partition of the request")
    for key, code in ((("moving", 9), tn.PARTITION_NOT_FOUND), (("moving", 1), 49),
                      (("moving", 2), 17)):
        eq((st[key].phase, st[key].error_code), (FAILED, code), f"{key} refused: {st[key]}")
    s = statuses(msgs[-1])[("moving", 0)]
    eq((s.error_code, s.phase, list(s.replica_ids)), (0, COMPLETED, [str(dst)]),
       f"moving-0 moved once its copy was in sync: {[statuses(x) for x in msgs]}")
    wait_for("every node shows moving-0 on its new broker, which leads it",
             lambda: all(partitions(cl, i, "moving")[0][3] == [str(dst)] and
                         partitions(cl, i, "moving")[0][0] == str(dst) for i in range(3)))
    with cl.client(dst - 1) as c:
        eq(sum(b.record_count for b, _ in c.fetch_all("moving", 0)), 3,
           "moving-0's records, on the broker it moved to")
    wait_for(f"broker {src}'s copy of moving-0 deleted",
             lambda: not os.path.exists(os.path.join(cl.nodes[src - 1].data_dir, "moving-0")))
    here = partitions(cl, li, "moving")[1][0]
    (m,) = reassign(cl, li, [("moving", 1, [int(here)])])
    eq(statuses(m)[("moving", 1)].phase, COMPLETED, "a move to where it is: COMPLETED at once")
    (m,) = reassign(cl, li, [("moving", 1, "cancel")])
    s = statuses(m)[("moving", 1)]
    eq((s.phase, s.error_code), (FAILED, 51), "cancel with nothing moving: NO_REASSIGNMENT_IN_PROGRESS")
    return [int(p[0]) for p in partitions(cl, li, "moving")]


def stuck_move(cl, li, victim, leaders):
    """A move to a broker that is stopped cannot catch up: it stays COPYING
    on every node, another target is refused while it runs, the same one
    follows it, and a cancel puts the original replicas back."""
    p = next(k for k in range(1, 3) if leaders[k] != victim)
    src = leaders[p]
    first, second = reassign(cl, li, [("moving", p, [victim])], messages=2)
    s = statuses(first)[("moving", p)]
    eq((s.error_code, s.phase), (0, COPYING), f"moving-{p} accepted: {s}")
    eq((list(s.replica_ids), list(s.target_replica_ids)), ([str(src), str(victim)], [str(victim)]),
       "its replicas while it moves, and its target")
    eq((list(s.adding_replica_ids), list(s.removing_replica_ids)), ([str(victim)], [str(src)]),
       "the replica added and the one to go")
    eq([(k, v.phase) for k, v in statuses(second).items()], [(("moving", p), COPYING)],
       "the periodic progress: still copying")
    other = next(b for b in (1, 2, 3) if b not in (src, victim))
    (m,) = reassign(cl, li, [("moving", p, [other])])
    s = statuses(m)[("moving", p)]
    eq((s.phase, s.error_code), (FAILED, 50), "another target while one runs: REASSIGNMENT_IN_PROGRESS")
    s = statuses(reassign(cl, li, [("moving", p, [victim])], messages=1)[0])[("moving", p)]
    eq((s.error_code, s.phase), (0, COPYING), "the same target again: the running move followed")
    (m,) = reassign(cl, li, [("moving", p, "cancel")])
    s = statuses(m)[("moving", p)]
    eq((s.error_code, s.phase, list(s.replica_ids)), (0, CANCELLED, [str(src)]),
       "cancelled: the original replicas")
    live = [i for i in range(3) if i != victim - 1]
    wait_for("every live node shows the original replicas",
             lambda: all(partitions(cl, j, "moving")[p][3] == [str(src)] for j in live))


def isr(cl, i, topic):
    """[(leader id, replica ids, ISR ids)] by partition, as node i says."""
    with cl.client(i) as c:
        r = ok(c.unary("/rustmq.client.MetadataService/GetTopicMetadata",
                       tn.MD.GetTopicMetadataRequest(version=tn.V(), topics=[topic]),
                       tn.MD.GetTopicMetadataResponse), "GetTopicMetadata")
        return [(p.leader_id, sorted(p.replica_ids), sorted(p.isr_ids))
                for p in r.topics[0].partitions]


def values(c, topic, p):
    return [r.value for b, _ in c.fetch_all(topic, p) for r in b.records]


def run_replication(cl):
    """Replication factor 3: acks ALL answered once every replica holds the
    records; kill -9 of the leader: a follower leads with every acknowledged
    record; acks MAJORITY goes on with two replicas; the killed node comes
    back as a follower and catches up, and the high watermark moves again."""
    for i in range(3):
        cl.start(i)
    li, _ = cl.leader()
    wait_for("three brokers registered and running",
             lambda: len(brokers(cl, li)) == 3 and
             all(st == BROKER_RUNNING for st, _, _ in brokers(cl, li).values()))
    with cl.client(li) as c:
        r = c.unary("/rustmq.controller.AdminService/CreateTopics",
                    tn.A.CreateTopicsRequest(version=tn.V(), topics=[
                        tn.A.CreatableTopic(name="repl", partitions=1, replication_factor=3)]),
                    tn.A.CreateTopicsResponse)
        ok(r.topics[0], "create repl with 3 replicas")
    (lead, reps, in_sync), = wait_for("every node knows repl",
                                      lambda: all(isr(cl, i, "repl") for i in range(3))
                                      and isr(cl, li, "repl"))
    eq((reps, in_sync), (["1", "2", "3"], ["1", "2", "3"]), "three replicas, all in sync")
    leader = int(lead)
    sent = []
    with cl.client(leader - 1) as c:
        first = tn.make_records(5, "first")
        produce_settled(c, "repl", 0, first, "the first produce")
        sent += [r.value for r in first]
        for k in range(1, 20):
            recs = tn.make_records(5, f"all{k}")
            ok(c.produce("repl", 0, recs, acks=tn.ACK_ALL), f"acks=ALL {k}")
            sent += [r.value for r in recs]
        got = values(c, "repl", 0)
    eq(got, sent, "the leader serves what it acknowledged")
    print(f"    broker {leader} leads repl-0; 100 records acknowledged by all", flush=True)
    # Replica reads (fetch.c): every broker's own copy, followers' too,
    # holds what acks ALL acknowledged; a consumer's fetch on a follower
    # is NOT_LEADER.
    for b in (1, 2, 3):
        with cl.client(b - 1) as c:
            eq([r.value for bt, _ in c.fetch_all("repl", 0, replica_id=b) for r in bt.records],
               sent, f"a replica read of broker {b}'s copy")
            if b != leader:
                resp, _ = c.fetch([("repl", 0, 0)])
                eq(resp.partitions[0].error_code, NOT_LEADER, f"a consumer's fetch on broker {b}")

    # kill -9 of the leader: a follower takes over with every record.
    cl.nodes[leader - 1].kill()
    live = [i for i in range(3) if i != leader - 1]
    new = wait_for("a follower leads repl-0",
                   lambda: (lambda v: v if v and v != str(leader) else None)(
                       isr(cl, live[0], "repl")[0][0]), timeout=20)
    with cl.client(int(new) - 1) as c:
        got = wait_for("the new leader serves", lambda: values(c, "repl", 0) or None)
        eq(got, sent, f"broker {new} holds every acknowledged record")
        more = tn.make_records(5, "maj")
        ok(c.produce("repl", 0, more, acks=tn.ACK_MAJORITY), "acks=MAJORITY with two of three")
    with cl.client(int(new) - 1) as c:
        eq(values(c, "repl", 0), sent + [r.value for r in more],
           "readable: the killed broker left the ISR when it was fenced")
    # The killed node comes back, follows, catches up, and joins the ISR
    # again (UpdateISR): acks ALL waits for it once more.
    cl.start(leader - 1)
    wait_for(f"broker {leader} back in repl-0's ISR",
             lambda: isr(cl, int(new) - 1, "repl")[0][2] == ["1", "2", "3"], timeout=20)
    with cl.client(int(new) - 1) as c:
        last = tn.make_records(5, "all-again")
        ok(c.produce("repl", 0, last, acks=tn.ACK_ALL), "acks=ALL with the three again")
        eq(values(c, "repl", 0), sent + [r.value for r in more] + [r.value for r in last],
           "every record, in order")
    # GetISR on the leader: the ISR, and each replica's progress; every
    # partition it leads when none is named; NOT_LEADER elsewhere.
    R = importlib.import_module("broker.replication_pb2")
    path = "/rustmq.broker.BrokerReplicationService/GetISR"
    tp = tn.T.TopicPartition(topic="repl", partition=0)
    with cl.client(int(new) - 1) as c:
        (st,) = ok(c.unary(path, R.GetISRRequest(version=tn.V(), topic_partitions=[tp]),
                           R.GetISRResponse), "GetISR").partitions
        ok(st, "GetISR on the leader")
        eq((st.leader_id, sorted(st.isr_ids)), (new, ["1", "2", "3"]), "leader and ISR")
        end = len(sent) + len(more) + len(last)
        eq((st.high_watermark, st.log_end_offset), (end, end), "HW and log end")
        eq(sorted((r.broker_id, r.in_sync) for r in st.replicas),
           [("1", True), ("2", True), ("3", True)], "every replica, in sync")
        check(all(r.log_end_offset == end and r.lag_records == 0 and r.last_caught_up_ms > 0
                  for r in st.replicas), f"every replica caught up: {st.replicas}")
        every = ok(c.unary(path, R.GetISRRequest(version=tn.V()), R.GetISRResponse),
                   "GetISR of every partition it leads").partitions
        check(("repl", 0) in [(p.topic_partition.topic, p.topic_partition.partition)
                              for p in every], f"repl-0 among them: {every}")
    other = next(b for b in (1, 2, 3) if b != int(new))
    with cl.client(other - 1) as c:
        (st,) = c.unary(path, R.GetISRRequest(version=tn.V(), topic_partitions=[tp]),
                        R.GetISRResponse).partitions
        eq(st.error_code, NOT_LEADER, f"GetISR on a follower: {st.error_message}")
    # A follower that stops replicating (paused) leaves the ISR after
    # --replica-lag-max, asked by the leader: acks ALL goes on with the
    # other two instead of waiting for it.
    lagger = next(b for b in (1, 2, 3) if b != int(new))
    lines_before = len(cl.nodes[int(new) - 1].lines)
    os.kill(cl.nodes[lagger - 1].proc.pid, signal.SIGSTOP)
    try:
        with cl.client(int(new) - 1) as c:
            late = tn.make_records(5, "without-it")
            ok(c.produce("repl", 0, late, acks=tn.ACK_ALL, timeout=30),
               "acks=ALL with a follower paused")
        check(any("asking the controller for ISR of 2 replicas (was 3)" in line
                  for line in cl.nodes[int(new) - 1].lines[lines_before:]),
              "the leader asked for the ISR without the paused follower")
    finally:
        os.kill(cl.nodes[lagger - 1].proc.pid, signal.SIGCONT)
    wait_for(f"broker {lagger} back in the ISR",
             lambda: isr(cl, int(new) - 1, "repl")[0][2] == ["1", "2", "3"], timeout=20)
    # SIGTERM of the leader: a controlled shutdown moves its leaderships to
    # in-sync followers before it exits, so the partition has a leader at
    # once (not a session timeout, 3 s here, later).
    stopped = int(new)
    t0 = time.monotonic()
    eq(cl.nodes[stopped - 1].stop(), 0, f"node {stopped}: exit status after SIGTERM")
    print(f"    broker {stopped} handed its leaderships over and stopped in "
          f"{time.monotonic() - t0:.2f}s", flush=True)
    live = [i for i in range(3) if i != stopped - 1]
    (lead2, _, in_sync2), = isr(cl, live[0], "repl")
    check(lead2 and lead2 != str(stopped),
          f"repl-0 led by another broker the moment broker {stopped} is gone: {lead2!r}")
    check(str(stopped) not in in_sync2, f"broker {stopped} left the ISR: {in_sync2}")
    with cl.client(int(lead2) - 1) as c:
        ok(c.produce("repl", 0, tn.make_records(5, "after-stop"), acks=tn.ACK_ALL),
           "acks=ALL on the new leader right away")
    for i in live:
        eq(cl.nodes[i].stop(), 0, f"node {i + 1}: exit status after SIGTERM")


def rmq_cli(rmq, addr, *argv, stdin=None):
    r = subprocess.run([rmq, "--bootstrap", addr, *argv], input=stdin, capture_output=True,
                       timeout=60)
    check(r.returncode == 0, f"rmq {' '.join(argv)}: exit {r.returncode}: {r.stderr.decode()}")
    return r.stdout.decode()


def run_placement(cl, rmq=None, bench=None):
    """Partitions spread over the brokers, each served by its leader; a
    broker stopped past its session is fenced and its partitions have no
    leader until it comes back."""
    for i in range(3):
        cl.start(i)
    li, _ = cl.leader()
    wait_for("three brokers registered and running",
             lambda: all(st == BROKER_RUNNING for st, _, _ in brokers(cl, li).values())
             and len(brokers(cl, li)) == 3)
    ok(ok(create(cl, li, "spread-warm"), "CreateTopics").topics[0], "create")
    with cl.client(li) as c:
        c.create_topic("spread", 6)
    parts = wait_for("every node knows spread's leaders",
                     lambda: all(partitions(cl, i, "spread") == partitions(cl, li, "spread")
                                 for i in range(3)) and partitions(cl, li, "spread"))
    leaders = [int(p[0]) for p in parts]
    eq(sorted(set(leaders)), [1, 2, 3], f"spread's leaders over the brokers: {parts}")
    for p, (lid, _, _, reps) in enumerate(parts):
        eq(reps, [lid], f"spread-{p}: one replica, its leader")
        # A replica read where the partition has no replica.
        other = int(lid) % 3  # another node's index
        with cl.client(other) as c:
            resp, _ = c.fetch([("spread", p, 0)], replica_id=other + 1)
            eq(resp.partitions[0].error_code, REPLICA_NOT_AVAILABLE,
               f"a replica read of spread-{p} on broker {other + 1}: "
               f"{resp.partitions[0].error_message}")
    addr = {b: a for b, (_, _, a) in brokers(cl, li).items()}
    for p, lid in enumerate(leaders):
        with cl.client(lid - 1) as c:
            produce_settled(c, "spread", p, tn.make_records(2, f"p{p}"),
                            f"produce spread-{p} on its leader")
        other = lid % 3  # another node's index
        with cl.client(other) as c:
            r = c.produce("spread", p, tn.make_records(1, "x"))
            eq(r.error_code, NOT_LEADER, f"produce spread-{p} on node {other + 1}")
            eq(r.leader_id, str(lid), f"NOT_LEADER names the leader of spread-{p}")
            eq(r.leader_endpoint, addr[lid], f"NOT_LEADER gives the leader's address")

    # CreatePartitions on a node that does not lead the controller: it is
    # forwarded, and the new partitions are placed over the brokers.
    CB = importlib.import_module("controller.cluster_pb2")
    with cl.client((li + 1) % 3) as c:
        r = ok(c.unary("/rustmq.controller.ControllerBrokerService/CreatePartitions",
                       CB.CreatePartitionsRequest(version=tn.V(), topics=[
                           CB.CreatePartitionsTopic(topic="spread-warm", new_total_count=5)]),
                       CB.CreatePartitionsResponse), "CreatePartitions")
        ok(r.topics[0], "grow spread-warm on a follower")
        eq(len(r.topics[0].partitions), 3, "the partitions made")
    grown = wait_for("every node knows spread-warm's 5 partitions",
                     lambda: all(len(partitions(cl, i, "spread-warm")) == 5 for i in range(3))
                     and partitions(cl, li, "spread-warm"))
    check(all(p[0] for p in grown), f"every partition has a leader: {grown}")

    # The CLI produces to and consumes from every partition through one
    # node: it follows each partition to its leader.
    if rmq:
        rmq_cli(rmq, f"127.0.0.1:{cl.ports[0]}", "topic", "create", "cli-spread", "--partitions", "6")
        lines = "".join(f"k{i}:v{i}\n" for i in range(300))
        rmq_cli(rmq, f"127.0.0.1:{cl.ports[1]}", "produce", "cli-spread", "--key-sep", ":",
                stdin=lines.encode())
        out = rmq_cli(rmq, f"127.0.0.1:{cl.ports[2]}", "consume", "cli-spread", "--offset",
                      "earliest", "--max", "300", "--timeout", "10s")
        eq(sorted(out.split()), sorted(f"v{i}" for i in range(300)),
           "rmq consume of what rmq produce wrote across the brokers")
        parts = partitions(cl, 0, "cli-spread")
        eq(sorted({p[0] for p in parts}), ["1", "2", "3"], "cli-spread's leaders")

    # rmq-bench, given one node, produces to and reads from every leader.
    if bench:
        r = subprocess.run([bench, "--target", f"127.0.0.1:{cl.ports[0]}", "--mode", "e2e",
                            "--topic", "bench-spread", "--partitions", "6", "--threads", "1",
                            "--connections", "1", "--streams", "2", "--duration", "2s",
                            "--warmup", "500ms", "--msg-bytes", "256"],
                           capture_output=True, timeout=120)
        out = r.stdout.decode() + r.stderr.decode()
        check(r.returncode == 0, f"rmq-bench: exit {r.returncode}:\n{out}")
        check("led by 3 brokers" in out, f"rmq-bench connected to the three leaders:\n{out}")
        check(re.search(r"errors\s+0\b", out), f"rmq-bench: errors:\n{out}")
        m = re.search(r"consume\s+(\d+) msgs", out)
        check(m and int(m.group(1)) > 0, f"rmq-bench consumed records:\n{out}")

    moving = start_move(cl, li)

    # SIGSTOP a broker that does not lead the controller: it is fenced.
    victim = next(b for b in (1, 2, 3) if b - 1 != li)
    epoch_before = brokers(cl, li)[victim][1]
    mine = [p for p, lid in enumerate(leaders) if lid == victim]
    os.kill(cl.nodes[victim - 1].proc.pid, signal.SIGSTOP)
    try:
        t0 = time.monotonic()
        wait_for(f"broker {victim} fenced", lambda: brokers(cl, li)[victim][0] == BROKER_FENCED)
        print(f"    broker {victim} stopped: fenced {time.monotonic() - t0:.2f}s later", flush=True)
        stuck_move(cl, li, victim, moving)
        other = next(i for i in range(3) if i != victim - 1)
        after = wait_for("its partitions have no leader on every live node",
                         lambda: all(partitions(cl, i, "spread")[p][2] == LEADER_NOT_AVAILABLE
                                     for i in range(3) if i != victim - 1 for p in mine)
                         and partitions(cl, other, "spread"))
        for p in mine:
            eq(after[p][0], "", f"spread-{p}: no leader while its broker is fenced")
            with cl.client(other) as c:
                eq(c.produce("spread", p, tn.make_records(1, "y")).error_code,
                   LEADER_NOT_AVAILABLE, f"produce spread-{p} while its broker is fenced")
        for p in range(6):
            if p not in mine:
                with cl.client(leaders[p] - 1) as c:
                    ok(c.produce("spread", p, tn.make_records(1, "z")),
                       f"spread-{p} still served while broker {victim} is fenced")
    finally:
        os.kill(cl.nodes[victim - 1].proc.pid, signal.SIGCONT)
    # It heartbeats again: unfenced, its partitions led by it in a new epoch.
    wait_for(f"broker {victim} running again", lambda: brokers(cl, li)[victim][0] == BROKER_RUNNING)
    eq(brokers(cl, li)[victim][1], epoch_before, "the same registration (broker epoch)")
    back = wait_for("its partitions led by it again",
                    lambda: all(partitions(cl, victim - 1, "spread")[p][0] == str(victim)
                                for p in mine) and partitions(cl, victim - 1, "spread"))
    for p in mine:
        check(back[p][1] > parts[p][1], f"spread-{p}: a new leader epoch ({parts[p][1]} -> {back[p][1]})")
        with cl.client(victim - 1) as c:
            ok(c.produce("spread", p, tn.make_records(1, "w")),
               f"produce spread-{p} after its broker came back")
            got = c.fetch_all("spread", p)
            eq(sum(b.record_count for b, _ in got), 3, f"spread-{p}: records before and after")
    # A fourth node, outside the voters, is a broker only: partitions are
    # placed on it and it serves them; it follows the controller to a new
    # leader when the one it heartbeats to is killed.
    cl.start(3)
    wait_for("broker 4 registered", lambda: brokers(cl, li).get(4, (0,))[0] == BROKER_RUNNING)
    with cl.client(li) as c:
        c.create_topic("late", 8)
    parts = wait_for("broker 4 leads some of late's partitions, as it knows",
                     lambda: [p for p, x in enumerate(partitions(cl, 3, "late")) if x[0] == "4"])
    with cl.client(3) as c:
        for p in parts:
            produce_settled(c, "late", p, tn.make_records(1, "b4"), f"late-{p} on broker 4")
    cl.nodes[li].kill()
    new, _ = cl.leader(exclude=li)
    time.sleep(2)  # longer than a session: broker 4 must heartbeat the new leader
    wait_for("broker 4 running under the new leader",
             lambda: brokers(cl, new).get(4, (0,))[0] == BROKER_RUNNING)
    with cl.client(new) as c:
        c.create_topic("later", 8)
    wait_for("broker 4 learns what the new leader decides",
             lambda: len(partitions(cl, 3, "later")) == 8)
    for i in range(4):
        if i != li:
            eq(cl.nodes[i].stop(), 0, f"node {i + 1}: exit status after SIGTERM")


def main() -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("--rmqd", required=True)
    ap.add_argument("--proto-dir", required=True)
    ap.add_argument("--rmq", help="the rmq CLI: produce and consume across the brokers")
    ap.add_argument("--rmq-bench", help="the load generator: a short run across the brokers")
    ap.add_argument("--keep", action="store_true")
    ap.add_argument("-v", "--verbose", action="store_true")
    args = ap.parse_args()
    tmp = tempfile.mkdtemp(prefix="rmq-cluster-test-")
    passed = failed = 0
    cl = None
    t_start = time.monotonic()
    binary = os.path.abspath(args.rmqd)
    tests = [
        ("three_node_controller", lambda: Cluster(binary, os.path.join(tmp, "a"), args.verbose),
         lambda cl: run(cl, args.rmq)),
        # Short sessions: a stopped broker is fenced within a second.
        ("placement_and_fencing",
         lambda: Cluster(binary, os.path.join(tmp, "b"), args.verbose,
                         ("--broker-heartbeat", "100ms", "--broker-session-timeout", "1s")),
         lambda cl: run_placement(cl, args.rmq, args.rmq_bench)),
        ("foreign_storage_refused", lambda: Cluster(binary, os.path.join(tmp, "c"), args.verbose),
         run_foreign),
        ("replication", lambda: Cluster(binary, os.path.join(tmp, "d"), args.verbose,
                                        ("--broker-heartbeat", "100ms",
                                         "--broker-session-timeout", "3s",
                                         "--replica-lag-max", "500ms")),
         run_replication),
    ]
    try:
        tn.load_protos(pathlib.Path(args.proto_dir).resolve(), pathlib.Path(tmp) / "py")
        global RP
        RP = importlib.import_module("controller.raft_pb2")
    except Exception:  # noqa: BLE001
        traceback.print_exc()
        tests = []
        failed += 1
    for name, make, fn in tests:
        cl = None
        try:
            cl = make()
            fn(cl)
            passed += 1
            print(f"PASS {name}", flush=True)
        except Exception as e:  # noqa: BLE001
            failed += 1
            why = f"gRPC {e.code()}: {e.details()}" if isinstance(e, grpc.RpcError) \
                else f"{type(e).__name__}: {e}"
            print(f"FAIL {name}: {why}", flush=True)
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
    print(f"broker_cluster: {time.monotonic() - t_start:.1f}s")
    print(f"{passed} passed, {failed} failed, 0 skipped")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
