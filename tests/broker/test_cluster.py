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

leadership_moves (a fifth cluster, RF3, balancing off):
- TransferLeadership to a named in-sync follower, asked of a node that
  does not lead the controller: a new leader epoch; the new leader takes
  acks=ALL produce with every record; the old one answers NOT_LEADER;
- refused: to the leader, to a broker that is no replica, to a paused
  follower out of the ISR, with a stale leader epoch, of no such topic or
  partition; no target: the first in-sync follower in preferred order;
- ElectLeaders PREFERRED of one partition and of all, UNCLEAN refusals;
- SendHeartbeat answered by a follower (epochs checked as ReplicateData's);
- rmq partition transfer and elect-leaders.

unclean_election_and_balancing (a sixth, 1 s sessions and rebalancing):
- a partition whose last in-sync replica dies has no leader; ElectLeaders
  UNCLEAN is refused until the topic sets unclean.leader.election.enable,
  then a replica outside the ISR leads without the records only the dead
  one had; that one comes back, cuts them, and preferred-leader balancing
  makes every partition's first replica lead again.

bundles_and_idle_followers (30 s sessions, --replica-lag-max 1s):
- a ProduceBatch to every partition one broker leads is replicated in
  messages of several partitions each (GetMetrics counts them);
- a follower paused while nothing is produced leaves every ISR after
  --replica-lag-max (its leaders stop hearing heartbeat answers), long
  before its session would end, and joins them again once resumed.

    /usr/bin/python3 tests/broker/test_cluster.py --rmqd build/release/rmqd \\
        --proto-dir proto [-v]

Ends with "N passed, N failed, N skipped".  Nodes are stopped by PID on
every path.
"""
import argparse
import importlib
import json
import os
import pathlib
import re
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import threading
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
    def __init__(self, binary, tmp, verbose, extra=(), nodes=4, voters=3):
        """nodes nodes, the first voters of them the controller's voters
        (by default three, and a fourth that joins later); none started."""
        self.ports = free_ports(nodes)
        self.voters = ",".join(f"{i + 1}@127.0.0.1:{p}" for i, p in enumerate(self.ports[:voters]))
        self.snapshot_entries = 8
        self.extra = tuple(extra)
        self.nodes = []
        for i in range(nodes):
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

    def topics_internal(self, i):
        """Every topic node i lists, internal ones included."""
        with self.client(i) as c:
            lt = c.unary("/rustmq.controller.AdminService/ListTopics",
                         tn.A.ListTopicsRequest(version=tn.V(), include_internal=True),
                         tn.A.ListTopicsResponse)
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
    """CreateTopics on node i, asked again while the controller elects a
    leader (NOT_CONTROLLER: what any client does; a loaded machine may
    see an election here)."""
    with cl.client(i) as c:
        for _ in range(50):
            r = c.create_topics([(name, 2)])
            if r.error_code != NOT_CONTROLLER and \
                    all(t.error_code != NOT_CONTROLLER for t in r.topics):
                return r
            time.sleep(0.1)
        return r


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
    # Producer ids from every node (the followers carry the call to the
    # controller's leader): never one twice.
    def init(c):
        for _ in range(50):  # asked again during an election, as create()
            r = c.unary("/rustmq.client.ProducerService/InitTransaction",
                        tn.P.InitTransactionRequest(version=tn.V()), tn.P.InitTransactionResponse)
            if r.error_code != NOT_CONTROLLER:
                break
            time.sleep(0.1)
        return r
    ids = []
    for i in (0, 1, 2, 0, 1, 2):
        with cl.client(i) as c:
            ids.append(ok(init(c), f"InitTransaction on node {i + 1}").producer_id)
    eq(len(set(ids)), len(ids), f"producer ids given on three nodes are distinct: {ids}")
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
DUPLICATE_SEQUENCE = 36
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


def reassign(cl, i, moves, messages=None, timeout=10):
    """The progress messages of a ReassignPartitions on node i (moves:
    [(topic, partition, [broker ids] or "cancel")], a progress message
    every 200 ms): all of them (the stream must end within timeout
    seconds), or the first `messages` (the stream then cancelled)."""
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
        it = c.server_stream(REASSIGN, req, CB.ReassignPartitionsProgress, timeout=timeout)
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


def start_three(cl, topics):
    """Starts the three nodes, waits for their brokers to run, and creates
    topics [(name, partitions, replication factor)] on the controller's
    leader, whose index it returns."""
    for i in range(3):
        cl.start(i)
    li, _ = cl.leader()
    wait_for("three brokers registered and running",
             lambda: len(brokers(cl, li)) == 3 and
             all(st == BROKER_RUNNING for st, _, _ in brokers(cl, li).values()))
    with cl.client(li) as c:
        r = c.unary("/rustmq.controller.AdminService/CreateTopics",
                    tn.A.CreateTopicsRequest(version=tn.V(), topics=[
                        tn.A.CreatableTopic(name=n, partitions=p, replication_factor=rf)
                        for n, p, rf in topics]),
                    tn.A.CreateTopicsResponse)
        for t in r.topics:
            ok(t, f"create {t.name}")
    return li


def run_replication(cl):
    """Replication factor 3: acks ALL answered once every replica holds the
    records; kill -9 of the leader: a follower leads with every acknowledged
    record; acks MAJORITY goes on with two replicas; the killed node comes
    back as a follower and catches up, and the high watermark moves again."""
    li = start_three(cl, [("repl", 1, 3)])
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
        # An idempotent producer's batch (its retry must not append twice,
        # on this leader or the next).
        idem = tn.make_records(3, "idem")
        kw = dict(producer_id=77, producer_epoch=0, base_sequence=0)
        first_idem = ok(c.produce("repl", 0, idem, acks=tn.ACK_ALL, **kw), "idempotent acks=ALL")
        sent += [r.value for r in idem]
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
        # The producer's retry after the failover (its answer lost with the
        # old leader) is recognised: nothing appended twice.
        again = produce_while_electing(c, "repl", 0, idem, 10, acks=tn.ACK_ALL, **kw)
        check(again.error_code == DUPLICATE_SEQUENCE and again.offset == first_idem.offset,
              f"the idempotent retry on the new leader is answered "
              f"{tn.ecname(again.error_code)} at {again.offset}, not DUPLICATE_SEQUENCE at "
              f"{first_idem.offset}")
        nxt = tn.make_records(2, "idem-next")
        ok(c.produce("repl", 0, nxt, acks=tn.ACK_ALL,
                     **dict(kw, base_sequence=len(idem))), "the producer's next batch, in order")
        sent += [r.value for r in nxt]
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
    alter_topic(cl, int(new) - 1, "repl", "min.insync.replicas", "3")
    wait_for("min.insync.replicas=3 on the leader",
             lambda: topic_config(cl, int(new) - 1, "repl", "min.insync.replicas") == "3")
    os.kill(cl.nodes[lagger - 1].proc.pid, signal.SIGSTOP)
    try:
        with cl.client(int(new) - 1) as c:
            # Waiting for three, then committed by the two left once the
            # paused one leaves the ISR: appended, but below
            # min.insync.replicas (Kafka's NOT_ENOUGH_REPLICAS_AFTER_APPEND);
            # the next is refused before it is appended.
            r = c.produce("repl", 0, tn.make_records(1, "after-append"), acks=tn.ACK_ALL,
                          timeout=30)
            eq(r.error_code, NOT_ENOUGH_REPLICAS_AFTER_APPEND,
               f"acks=ALL while the ISR shrinks below 3: {r.error_message}")
            r = c.produce("repl", 0, tn.make_records(1, "refused"), acks=tn.ACK_ALL)
            eq(r.error_code, NOT_ENOUGH_REPLICAS, f"acks=ALL with 2 in sync: {r.error_message}")
        alter_topic(cl, int(new) - 1, "repl", "min.insync.replicas", "1")
        wait_for("min.insync.replicas=1 on the leader",
                 lambda: topic_config(cl, int(new) - 1, "repl", "min.insync.replicas") == "1")
        with cl.client(int(new) - 1) as c:
            late = tn.make_records(5, "without-it")
            ok(c.produce("repl", 0, late, acks=tn.ACK_ALL, timeout=30),
               "acks=ALL with a follower paused")
            # Many one-record batches it must catch up on: more than a
            # follower takes in one request (RMQ_FOLLOW_BATCHES_MAX, 4096),
            # in about 1 MiB of the leader's tail.
            small = [tn.P.ProduceRequest(version=tn.V(), client_id="small", acks=tn.ACK_LEADER,
                                      topic_partition=tn.T.TopicPartition(topic="repl",
                                                                          partition=0),
                                      records=tn.make_records(1, f"small-{i}", size=8),
                                      correlation_id=i + 1) for i in range(5000)]
            answers = list(c.bidi("/rustmq.client.ProducerService/ProduceStream", iter(small),
                                  tn.P.ProduceResponse, timeout=60))
            check(len(answers) == 5000 and all(a.error_code == 0 for a in answers),
                  "5000 one-record batches appended")
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
        # Right away: a new leader that still learns what its replicas hold
        # (its probe may reach a follower before that follower's metadata
        # names it) answers the retriable LEADER_NOT_AVAILABLE for a few
        # milliseconds, far below the 3 s session timeout a crash costs.
        ok(produce_while_electing(c, "repl", 0, tn.make_records(5, "after-stop"), 1.0,
                                  acks=tn.ACK_ALL),
           "acks=ALL on the new leader right away")
    for i in live:
        eq(cl.nodes[i].stop(), 0, f"node {i + 1}: exit status after SIGTERM")


def run_bundles(cl):
    """A leader replicates many partitions in one message per follower
    shard (ReplicateDataRequest.parts, counted by GetMetrics); an idle
    follower that stops answering leaves the ISR with nothing produced (its
    leader hears from it only by heartbeats), and joins it again once it
    answers."""
    li = start_three(cl, [("many", 36, 3)])
    wait_for("every partition of many has three replicas in sync",
             lambda: all(lead and len(s) == 3 for lead, _, s in isr(cl, li, "many")))
    by_leader = {}
    for p, (lead, _, _) in enumerate(isr(cl, li, "many")):
        by_leader.setdefault(int(lead), []).append(p)
    lead = max(by_leader, key=lambda b: len(by_leader[b]))
    ps = by_leader[lead]
    names = ("rmq_replication_messages_total", "rmq_replication_parts_total")
    with cl.client(lead - 1) as c:
        before = c.metric_totals(*names)
        items = []
        for p in ps:
            recs = tn.make_records(3, f"many-{p}")
            items.append(("many", p, tn.T.RecordBatch(
                magic=2, records=recs, record_count=3, last_offset_delta=2,
                crc32=tn.crc32c(tn.records_bytes_of_records(recs)))))
        r = ok(c.produce_batch(items, acks=tn.ACK_ALL), "ProduceBatch, acks ALL, to each "
               "partition one broker leads")
        for x in r.partitions:
            ok(x, f"many-{x.topic_partition.partition}")
        after = c.metric_totals(*names)
    msgs, parts = (after[n] - before[n] for n in names)
    print(f"    broker {lead} leads {len(ps)} partitions: {parts} requests in {msgs} messages",
          flush=True)
    check(parts >= 2 * len(ps), f"a request to each follower of each partition: {parts}")
    # The batches of one cycle go together; the high watermarks that follow
    # move as answers come, some alone: more than one part per message on
    # the whole, where requests one by one made exactly one.
    check(parts > msgs, f"several partitions per message: {parts} in {msgs}")

    # An idle follower paused past --replica-lag-max (its broker session is
    # longer: the controller does not fence it meanwhile) leaves the ISR of
    # every partition it follows, asked by their leaders (those it leads
    # keep it: a leader leaves only when fenced).
    idle = next(b for b in (1, 2, 3) if b != li + 1)
    os.kill(cl.nodes[idle - 1].proc.pid, signal.SIGSTOP)
    t0 = time.monotonic()
    try:
        wait_for(f"broker {idle} out of the ISR of every partition it follows, with nothing "
                 "produced",
                 lambda: all(str(idle) not in s for lead, _, s in isr(cl, li, "many")
                             if lead != str(idle)), timeout=10)
        print(f"    paused idle broker {idle} left the ISRs in {time.monotonic() - t0:.1f}s",
              flush=True)
        eq(brokers(cl, li)[idle][0], BROKER_RUNNING, f"broker {idle} not fenced meanwhile")
    finally:
        os.kill(cl.nodes[idle - 1].proc.pid, signal.SIGCONT)
    wait_for(f"broker {idle} back in every ISR",
             lambda: all(len(s) == 3 for _, _, s in isr(cl, li, "many")), timeout=20)
    for i in range(3):
        eq(cl.nodes[i].stop(), 0, f"node {i + 1}: exit status after SIGTERM")


def run_paused_leader_tail(cl):
    """A leader paused while it holds records no follower has (acks LEADER,
    never committed: the followers were paused, then killed and restarted)
    comes back as a follower of a leader that has moved on.  A fetch parked on it before the pause must never return those
    records: its high watermark once jumped to its own log end, tail
    included, when the new leader's request matched the logs below that
    tail (follow.c, the request's `matched`; broker_faults pause_leader,
    seed 92843, found it)."""
    li = start_three(cl, [("tail", 1, 3)])
    (lead, _, in_sync), = wait_for("every node knows tail, all in sync",
                                   lambda: all(isr(cl, i, "tail") for i in range(3)) and
                                   isr(cl, li, "tail")[0][2] == ["1", "2", "3"] and
                                   isr(cl, li, "tail"))
    leader = int(lead)
    others = [b for b in (1, 2, 3) if b != leader]
    pid = {b: cl.nodes[b - 1].proc.pid for b in (1, 2, 3)}
    committed = []
    with cl.client(leader - 1) as c:
        for k in range(2):
            recs = tn.make_records(5, f"committed{k}")
            ok(c.produce("tail", 0, recs, acks=tn.ACK_ALL), "acks=ALL")
            committed += [r.value for r in recs]
    got = {}
    parked = tn.Client(f"127.0.0.1:{cl.ports[leader - 1]}", own_connection=True)

    def park():
        try:
            resp, _ = parked.fetch([("tail", 0, len(committed))], max_wait_ms=30000,
                                   min_bytes=1, timeout=90)
            got["values"] = [r.value for b in resp.partitions[0].batches for r in b.records]
        except Exception as e:  # noqa: BLE001
            got["error"] = e
    th = threading.Thread(target=park)
    try:
        for b in others:
            os.kill(pid[b], signal.SIGSTOP)
        with cl.client(leader - 1) as c:
            ok(c.produce("tail", 0, tn.make_records(5, "tail"), acks=tn.ACK_LEADER),
               "acks=LEADER with both followers paused")
        th.start()
        time.sleep(0.5)
        check(th.is_alive(), "the fetch waits on the leader: nothing committed past 10")
        os.kill(pid[leader], signal.SIGSTOP)
        # The followers never read the tail: killed while paused (the
        # requests that carry it die unread in their sockets), then
        # restarted on their data.
        for b in others:
            cl.nodes[b - 1].kill()
            cl.start(b - 1)
        new = int(wait_for("a follower leads tail-0",
                           lambda: (lambda v: v if v and v != str(leader) else None)(
                               isr(cl, others[0] - 1, "tail")[0][0]), timeout=30))
        more = tn.make_records(20, "new")
        with cl.client(new - 1) as c:
            ok(produce_while_electing(c, "tail", 0, more, 20, acks=tn.ACK_ALL),
               "acks=ALL on the new leader")
        # The new leader's first request to the paused broker goes
        # unanswered for 10 s; the next, on a new stream, carries the high
        # watermark it has reached since.
        time.sleep(12)
    finally:
        os.kill(pid[leader], signal.SIGCONT)
    th.join(60)
    parked.close()
    check(not th.is_alive(), "the parked fetch is answered")
    vals = got.get("values", [])
    bad = [v for v in vals if v.startswith(b"tail-")]
    check(not bad, f"the parked fetch returned {len(bad)} records never committed, the first {bad[0][:8] if bad else b''}")
    want = committed + [r.value for r in more]
    check(vals == want[len(committed):len(committed) + len(vals)],
          f"what the parked fetch returned is the committed log from offset 10: {vals[:3]}")
    print(f"    the parked fetch on the old leader got {len(vals)} committed records "
          f"({'error ' + str(got['error'])[:80] if 'error' in got else 'no error'})", flush=True)
    # The old leader follows: its copy becomes the new leader's.
    with cl.client(leader - 1) as c:
        wait_for("the old leader's copy is the new leader's",
                 lambda: [r.value for bt, _ in c.fetch_all("tail", 0, replica_id=leader)
                          for r in bt.records] == want, timeout=30)


def produce_while_electing(c, topic, partition, records, within, **kw):
    """Produce as a client does after a failover: LEADER_NOT_AVAILABLE (a
    new leader recovering) is retried for `within` seconds."""
    deadline = time.monotonic() + within
    while True:
        r = c.produce(topic, partition, records, **kw)
        if r.error_code != LEADER_NOT_AVAILABLE or time.monotonic() > deadline:
            return r
        time.sleep(0.005)


def run_restarted_leader(cl):
    """A leader killed and started again leads only in an epoch the
    controller gave its new process: it may have sent its followers records
    it lost (they leave before its own sync), and appending in the old
    epoch would put other records at their offsets unnoticed
    (docs/replication.md, finding 6).  Until the controller takes its new
    registration (the old process's session must end first: 3 s here) it
    refuses produce (LEADER_NOT_AVAILABLE) instead of answering in the old
    epoch."""
    li = start_three(cl, [("rl", 1, 3)])
    wait_for("rl-0 in sync on three",
             lambda: isr(cl, li, "rl")[0][2] == ["1", "2", "3"])
    (lead, epoch, _, _), = partitions(cl, li, "rl")
    lead = int(lead)
    with cl.client(lead - 1) as c:
        produce_settled(c, "rl", 0, tn.make_records(5, "before"), "produce before the kill")
    # The leader and one more voter go; the leader comes back while its old
    # session still holds its registration.
    other = next(b for b in (1, 2, 3) if b != lead)
    cl.nodes[lead - 1].kill()
    cl.nodes[other - 1].kill()
    cl.start(lead - 1)
    with cl.client(lead - 1) as c:
        end = time.monotonic() + 3
        seen = set()
        while time.monotonic() < end:
            try:
                r = c.produce("rl", 0, tn.make_records(1, "restarted"), timeout=2)
            except grpc.RpcError:
                time.sleep(0.1)  # still starting
                continue
            seen.add(r.error_code)
            check(r.error_code != 0 or r.leader_epoch > epoch,
                  f"broker {lead}, restarted, took a produce in leader epoch "
                  f"{r.leader_epoch}, which it led before the kill")
            time.sleep(0.1)
        check(LEADER_NOT_AVAILABLE in seen, f"answers while it may not lead: {seen}")
    cl.start(other - 1)
    # A quorum again: the leadership is renewed (or moved) in a new epoch.
    def taken():
        (now, _, _, _), = partitions(cl, lead - 1, "rl")
        if not now:
            return None
        with cl.client(int(now) - 1) as c:
            r = c.produce("rl", 0, tn.make_records(1, "after"))
            return r if r.error_code == 0 else None
    r = wait_for("a produce taken again", taken, timeout=30)
    check(r.leader_epoch > epoch, f"taken in leader epoch {r.leader_epoch}, after {epoch}")


def run_idempotent_cli(cl, rmq):
    """`rmq produce --acks all` while its partition's leader is killed with
    -9: the producer id InitTransaction gave numbers every batch, a call
    lost with the leader is sent again to the next one, and each line is
    in the log exactly once, in order."""
    if not rmq:
        print("    SKIP: no --rmq", flush=True)
        return
    li = start_three(cl, [("cli", 1, 3)])
    wait_for("cli-0 in sync on three", lambda: isr(cl, li, "cli")[0][2] == ["1", "2", "3"])
    (lead, _, _, _), = partitions(cl, li, "cli")
    lead = int(lead)
    boot = next(b for b in (1, 2, 3) if b != lead)
    lines = [f"line-{i}" for i in range(30000)]
    p = subprocess.Popen([rmq, "--bootstrap", f"127.0.0.1:{cl.ports[boot - 1]}", "produce",
                          "cli", "--acks", "all"], stdin=subprocess.PIPE,
                         stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    try:
        for k in range(0, len(lines), 1000):  # a batch each, paced
            p.stdin.write(("\n".join(lines[k:k + 1000]) + "\n").encode())
            p.stdin.flush()
            if k == 10000:
                cl.nodes[lead - 1].kill()
            time.sleep(0.1)
        _, err = p.communicate(timeout=60)  # closes stdin: the last batch goes
    finally:
        if p.poll() is None:
            p.kill()
            p.wait()
    eq(p.returncode, 0, f"rmq produce across the kill: {err.decode()}")
    new = wait_for("cli-0 led by another broker",
                   lambda: (lambda x: x if x and x != str(lead) else None)(
                       partitions(cl, boot - 1, "cli")[0][0]))
    with cl.client(int(new) - 1) as c:
        got = [v.decode() for v in values(c, "cli", 0)]
    eq(len(got), len(lines), "as many records as lines (none lost, none twice)")
    eq(got, lines, "every line once, in order")


def run_idempotent_bench(cl, bench, old=False):
    """rmq-bench --acks all on three nodes (replication factor 3) while
    partition 0's leader is killed with -9: its producers are idempotent
    (a producer id per stream), a call lost with the leader is sent again
    to the next one, so the run ends with no error, and the topic holds
    exactly the records rmq-bench says were acknowledged, each once (their
    values are unique: --unique-values).  old: the rmq-bench from before
    (no such flags; what it counts is compared), to show it failing."""
    if not bench:
        print("    SKIP: no --rmq-bench", flush=True)
        return
    topic = "bench-idem"
    li = start_three(cl, [(topic, 2, 3)])
    wait_for(f"{topic} in sync on three",
             lambda: all(p[2] == ["1", "2", "3"] for p in isr(cl, li, topic)))
    lead = int(partitions(cl, li, topic)[0][0])
    boot = next(b for b in (1, 2, 3) if b != lead)
    argv = [bench, "--target", f"127.0.0.1:{cl.ports[boot - 1]}", "--topic", topic,
            "--create-topic=false", "--acks", "all", "--threads", "1", "--connections", "1",
            "--streams", "4", "--batch", "50", "--msg-bytes", "64", "--rate", "10000",
            "--duration", "8s", "--warmup", "0s", "--timeout", "5s", "--json",
            "--progress=false"]
    if not old:
        argv.append("--unique-values")
    p = subprocess.Popen(argv, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    try:
        time.sleep(3)
        check(p.poll() is None, "rmq-bench runs when the leader is killed")
        cl.nodes[lead - 1].kill()
        out, err = p.communicate(timeout=60)
    finally:
        if p.poll() is None:
            p.kill()
            p.wait()
    out, err = out.decode(), err.decode()
    eq(p.returncode, 0, f"rmq-bench across the kill: {out}{err}")
    res = json.loads(out.strip().splitlines()[-1])
    print(f"    rmq-bench: {res.get('acknowledged_records')} acknowledged, "
          f"{res.get('retries')} calls sent again ({res.get('retries_already_written')} "
          f"written before), errors {res['errors']}", flush=True)
    acked = res["messages"] if old else res["acknowledged_records"]
    eq(res["errors"]["total"], 0, f"rmq-bench errors across the kill: {res['errors']}\n{err}")
    check(old or res["retries"] > 0, f"rmq-bench sent lost calls again: {res}")
    new = wait_for(f"{topic}-0 led by another broker",
                   lambda: (lambda x: x if x and x != str(lead) else None)(
                       partitions(cl, boot - 1, topic)[0][0]))
    got = []
    for part, (leader, _, _, _) in enumerate(partitions(cl, boot - 1, topic)):
        check(leader and leader != str(lead), f"{topic}-{part} led by a live broker: {leader}")
        with cl.client(int(leader) - 1) as c:
            got += values(c, topic, part)
    check(int(new) != lead, "a new leader")
    eq(len(got), acked, "the topic holds the records acknowledged (none lost, none twice)")
    if not old:
        eq(len(set(got)), len(got), "every record value once")


TRANSFER = "/rustmq.broker.BrokerReplicationService/TransferLeadership"
ELECT = "/rustmq.controller.AdminService/ElectLeaders"
BEAT = "/rustmq.broker.BrokerReplicationService/SendHeartbeat"
STALE_EPOCH, NOT_ENOUGH_REPLICAS, UNKNOWN_LEADER_EPOCH = 7, 19, 47
NOT_ENOUGH_REPLICAS_AFTER_APPEND = 20
REPLICA_NOT_AVAILABLE, ELECTION_NOT_NEEDED = 48, 58


def transfer(cl, i, topic, p, target=0, epoch=0):
    """TransferLeadership of topic-p to broker target (0: the leader's
    choice), sent to node i."""
    R = importlib.import_module("broker.replication_pb2")
    with cl.client(i) as c:
        return c.unary(TRANSFER, R.TransferLeadershipRequest(
            version=tn.V(), topic_partition=tn.T.TopicPartition(topic=topic, partition=p),
            target_broker_id=str(target) if target else "", leader_epoch=epoch),
            R.TransferLeadershipResponse)


def elect(cl, i, parts=(), unclean=False):
    """ElectLeaders (PREFERRED, or UNCLEAN) of [(topic, p)] sent to node i."""
    with cl.client(i) as c:
        return c.unary(ELECT, tn.A.ElectLeadersRequest(
            version=tn.V(),
            election_type=tn.A.ELECTION_TYPE_UNCLEAN if unclean else tn.A.ELECTION_TYPE_PREFERRED,
            topic_partitions=[tn.T.TopicPartition(topic=t, partition=p) for t, p in parts]),
            tn.A.ElectLeadersResponse)


def led_everywhere(cl, topic, p, leader, nodes=(0, 1, 2)):
    """Every node in nodes says broker `leader` leads topic-p."""
    wait_for(f"every node says broker {leader} leads {topic}-{p}",
             lambda: all(partitions(cl, i, topic)[p][0] == str(leader) for i in nodes))


def produce_on_leader(c, topic, p, records, what):
    """acks=ALL on a broker that has just been made leader: asked again
    while its partition still follows (it applies the change a moment
    after the controller's answer)."""
    end = time.monotonic() + 10
    while True:
        r = c.produce(topic, p, records, acks=tn.ACK_ALL)
        if r.error_code not in (NOT_LEADER, LEADER_NOT_AVAILABLE, NOT_AVAILABLE) or \
                time.monotonic() > end:
            return ok(r, what)
        time.sleep(0.05)


def run_leadership(cl, rmq=None):
    """TransferLeadership to a named in-sync follower (the old leader then
    refuses produce), refusals (not a replica, not in the ISR, already the
    leader, a stale epoch, no such partition), a transfer to the leader's
    choice, ElectLeaders PREFERRED of one partition and of all, and
    SendHeartbeat answered by a follower."""
    li = start_three(cl, [("moves", 1, 3), ("pair", 1, 2)])
    wait_for("every replica of moves and pair in sync on every node",
             lambda: all(isr(cl, i, "moves")[0][2] == ["1", "2", "3"] and
                         len(isr(cl, i, "pair")[0][2]) == 2 for i in range(3)))
    (lead, epoch, _, reps), = partitions(cl, li, "moves")
    pref = int(reps[0])
    eq(lead, str(pref), "the preferred replica leads a new topic")
    other = next(i for i in range(3) if i != li)  # forwards to the controller's leader
    with cl.client(pref - 1) as c:
        sent = tn.make_records(5, "before")
        produce_settled(c, "moves", 0, sent, "a produce on the first leader")
        more = tn.make_records(5, "before-all")
        ok(c.produce("moves", 0, more, acks=tn.ACK_ALL), "acks=ALL on the first leader")
        sent = [r.value for r in sent + more]

    # To a named in-sync follower, asked of a node that does not lead the
    # controller: a new leader epoch, the new leader takes produce, the old
    # one refuses it naming the new one.
    to = int(reps[1])
    r = ok(transfer(cl, other, "moves", 0, to), f"transfer moves-0 to broker {to}")
    eq((r.leader_id, r.leader_epoch), (str(to), epoch + 1), "the new leader, one epoch on")
    led_everywhere(cl, "moves", 0, to)
    with cl.client(to - 1) as c:
        after = tn.make_records(5, "after-transfer")
        produce_on_leader(c, "moves", 0, after, f"acks=ALL on broker {to}")
        sent += [r.value for r in after]
        eq(values(c, "moves", 0), sent, f"broker {to} holds every acknowledged record")
    with cl.client(pref - 1) as c:
        r = c.produce("moves", 0, tn.make_records(1, "to-the-old-one"))
        eq((r.error_code, r.leader_id), (NOT_LEADER, str(to)), "the old leader refuses produce")
    print(f"    moves-0: broker {pref} -> {to} in epoch {epoch + 1}", flush=True)

    # Refusals.
    eq(transfer(cl, other, "moves", 0, to).error_code, ELECTION_NOT_NEEDED, "to the leader")
    eq(transfer(cl, other, "moves", 0, 9).error_code, REPLICA_NOT_AVAILABLE, "to no replica")
    (_, _, _, pair_reps), = partitions(cl, li, "pair")
    outsider = next(b for b in (1, 2, 3) if str(b) not in pair_reps)
    r = transfer(cl, li, "pair", 0, outsider)
    eq(r.error_code, REPLICA_NOT_AVAILABLE, f"to broker {outsider}, not a replica: {r.error_message}")
    eq(transfer(cl, li, "moves", 0, pref, epoch=epoch).error_code, STALE_EPOCH,
       "an expected leader epoch that is not the partition's")
    eq(transfer(cl, li, "nosuch", 0, pref).error_code, tn.TOPIC_NOT_FOUND, "no such topic")
    eq(transfer(cl, li, "moves", 4, pref).error_code, tn.PARTITION_NOT_FOUND, "no such partition")
    eq(transfer(cl, li, "moves", 0, "x").error_code, tn.INVALID_REQUEST, "not a broker id")
    # Out of the ISR (a paused follower, dropped by its leader after
    # --replica-lag-max): refused, Kafka's rule for a clean election.
    lagger = next(b for b in (1, 2, 3) if b not in (to, li + 1))
    os.kill(cl.nodes[lagger - 1].proc.pid, signal.SIGSTOP)
    try:
        wait_for(f"broker {lagger} out of moves-0's ISR",
                 lambda: str(lagger) not in isr(cl, li, "moves")[0][2], timeout=10)
        r = transfer(cl, li, "moves", 0, lagger)
        eq(r.error_code, NOT_ENOUGH_REPLICAS, f"to broker {lagger}, out of the ISR: {r.error_message}")
    finally:
        os.kill(cl.nodes[lagger - 1].proc.pid, signal.SIGCONT)
    wait_for(f"broker {lagger} back in moves-0's ISR",
             lambda: isr(cl, li, "moves")[0][2] == ["1", "2", "3"], timeout=20)

    # No target: the first in-sync follower in preferred order.
    want = next(int(b) for b in reps if int(b) != to)
    r = ok(transfer(cl, other, "moves", 0), "transfer to the leader's choice")
    eq(r.leader_id, str(want), "the first in-sync follower in preferred order")
    led_everywhere(cl, "moves", 0, want)

    # ElectLeaders PREFERRED: the first replica leads again; then there is
    # nothing to do; for every partition, only those that move are named.
    if want == pref:
        ok(transfer(cl, li, "moves", 0, reps[2]), "away from the preferred replica")
    (res,) = ok(elect(cl, other, [("moves", 0)]), "ElectLeaders PREFERRED").partitions
    ok(res, "moves-0 elected")
    eq(res.leader_id, str(pref), "the preferred replica leads again")
    led_everywhere(cl, "moves", 0, pref)
    with cl.client(pref - 1) as c:
        back = tn.make_records(5, "back")
        produce_on_leader(c, "moves", 0, back, "acks=ALL on the preferred replica again")
        sent += [r.value for r in back]
        eq(values(c, "moves", 0), sent, "every acknowledged record, in order")
    (res,) = elect(cl, li, [("moves", 0)]).partitions
    eq(res.error_code, ELECTION_NOT_NEEDED, "the preferred replica leads already")
    ok(transfer(cl, li, "moves", 0, reps[1]), "away from the preferred replica again")
    got = ok(elect(cl, other), "ElectLeaders of every partition").partitions
    got = {(g.topic_partition.topic, g.topic_partition.partition): (g.error_code, g.leader_id)
           for g in got}
    eq(got.get(("moves", 0)), (0, str(pref)), "moves-0 elected among every partition")
    check(all(code == 0 and leader == partitions(cl, li, t)[p][3][0]
              for (t, p), (code, leader) in got.items()),
          f"only partitions moved to their preferred replica are named: {got}")
    eq(elect(cl, li, unclean=True).error_code, tn.INVALID_REQUEST, "UNCLEAN names its partitions")
    (res,) = elect(cl, li, [("moves", 0)], unclean=True).partitions
    eq(res.error_code, ELECTION_NOT_NEEDED, "UNCLEAN of a partition that has a leader")

    # SendHeartbeat: a follower takes the high watermark and answers its
    # log end; epochs checked as ReplicateData's.
    R = importlib.import_module("broker.replication_pb2")
    led_everywhere(cl, "moves", 0, pref)
    (_, cur, _, _), = partitions(cl, li, "moves")
    fol = int(reps[1])
    tp = tn.T.TopicPartition(topic="moves", partition=0)

    def beat(node, ep, follower=None):
        with cl.client(node - 1) as c:
            return c.unary(BEAT, R.HeartbeatRequest(
                version=tn.V(), leader_id=str(pref), follower_id=str(follower or node),
                partitions=[R.PartitionHeartbeat(topic_partition=tp, leader_epoch=ep,
                                                 high_watermark=len(sent),
                                                 leader_log_end_offset=len(sent))]),
                R.HeartbeatResponse)
    r = wait_for(f"broker {fol} answers a heartbeat caught up",
                 lambda: (lambda r: r if r.partitions[0].error_code == 0 and
                          r.partitions[0].log_end_offset == len(sent) else None)(beat(fol, cur)))
    eq((r.follower_id, r.partitions[0].leader_epoch), (str(fol), cur), "follower and its epoch")
    eq(beat(fol, cur - 1).partitions[0].error_code, STALE_EPOCH, "a deposed leader's heartbeat")
    eq(beat(fol, cur + 1).partitions[0].error_code, UNKNOWN_LEADER_EPOCH, "a newer epoch")
    eq(beat(pref, cur).partitions[0].error_code, REPLICA_NOT_AVAILABLE, "to the leader")
    eq(beat(fol, cur, follower=9).error_code, tn.INVALID_REQUEST, "to another broker")

    if rmq:
        addr = f"127.0.0.1:{cl.ports[other]}"
        out = rmq_cli(rmq, addr, "partition", "transfer", "moves", "--to", reps[2])
        check(f"leader {reps[2]}" in out, f"rmq partition transfer: {out!r}")
        out = rmq_cli(rmq, addr, "partition", "elect-leaders", "moves")
        check(f"moves-0\tleader {pref}" in out and "elected" in out,
              f"rmq partition elect-leaders: {out!r}")
    for i in range(3):
        eq(cl.nodes[i].stop(), 0, f"node {i + 1}: exit status after SIGTERM")


def topic_config(cl, i, topic, key):
    """A topic's configuration value as node i describes it."""
    with cl.client(i) as c:
        r = c.unary("/rustmq.controller.AdminService/DescribeConfigs", tn.A.DescribeConfigsRequest(
            version=tn.V(), resources=[tn.A.DescribeConfigsResource(
                resource=tn.A.ConfigResource(type=tn.A.CONFIG_RESOURCE_TYPE_TOPIC, name=topic),
                names=[key])]), tn.A.DescribeConfigsResponse)
        return next((e.value for e in r.resources[0].configs if e.name == key), None)


def alter_topic(cl, i, topic, key, value):
    req = tn.A.AlterConfigsRequest(version=tn.V())
    req.resources.add(resource=tn.A.ConfigResource(type=tn.A.CONFIG_RESOURCE_TYPE_TOPIC,
                                                   name=topic)).configs.add(
        name=key, value=value, op=tn.A.ALTER_CONFIG_OP_SET)
    with cl.client(i) as c:
        r = c.unary("/rustmq.controller.AdminService/AlterConfigs", req, tn.A.AlterConfigsResponse)
        ok(r.resources[0], f"AlterConfigs {topic} {key}={value}")


def run_balancing(cl):
    """A partition whose last in-sync replica dies: no leader; ElectLeaders
    UNCLEAN refused until the topic allows it, then a replica outside the
    ISR leads (the records only the dead one had are lost, though acks=ALL
    acknowledged them: what unclean means); the dead broker comes back,
    follows, cuts the tail its new leader never had, and preferred-leader
    balancing (--leader-rebalance-interval 1s) makes it lead its partitions
    again."""
    li = start_three(cl, [("bal", 3, 2)])
    wait_for("bal in sync and led by the preferred replicas on every node",
             lambda: all(len(x[2]) == 2 for i in range(3) for x in isr(cl, i, "bal")) and
             all(lead == reps[0] for i in range(3)
                 for lead, _, _, reps in partitions(cl, i, "bal")))
    # The partition on the two brokers that do not lead the controller:
    # stopping them leaves the controller its leader.
    p, (_, _, _, reps) = next((k, x) for k, x in enumerate(partitions(cl, li, "bal"))
                              if str(li + 1) not in x[3])
    a, b = int(reps[0]), int(reps[1])
    with cl.client(a - 1) as c:
        kept = tn.make_records(5, "kept")
        produce_settled(c, "bal", p, kept, "the first produce")
        more = tn.make_records(5, "kept-all")
        ok(c.produce("bal", p, more, acks=tn.ACK_ALL), "acks=ALL with both replicas")
        kept = [r.value for r in kept + more]
    # b dies and is fenced: it leaves the ISR; a takes records b never
    # gets, then dies too, the last in-sync replica: no leader, even once b
    # is back (the controller's majority with it).
    cl.nodes[b - 1].kill()
    wait_for(f"broker {b} out of bal-{p}'s ISR",
             lambda: isr(cl, li, "bal")[p][2] == [str(a)], timeout=10)
    with cl.client(a - 1) as c:
        ok(c.produce("bal", p, tn.make_records(3, "lost"), acks=tn.ACK_ALL),
           "acks=ALL with a alone in the ISR")
    cl.nodes[a - 1].kill()
    cl.start(b - 1)
    wait_for(f"bal-{p} without a leader (broker {a}, its last in-sync replica, fenced)",
             lambda: partitions(cl, li, "bal")[p][0] in ("", "0") and
             brokers(cl, li)[b][0] == BROKER_RUNNING, timeout=15)
    (res,) = elect(cl, li, [("bal", p)], unclean=True).partitions
    eq(res.error_code, tn.POLICY_VIOLATION, f"UNCLEAN refused by default: {res.error_message}")
    check("unclean.leader.election.enable" in res.error_message, res.error_message)
    alter_topic(cl, li, "bal", "unclean.leader.election.enable", "true")
    (res,) = elect(cl, li, [("bal", p)], unclean=True).partitions
    ok(res, "UNCLEAN once the topic allows it")
    eq(res.leader_id, str(b), f"broker {b}, outside the ISR, leads")
    led_everywhere(cl, "bal", p, b, nodes=[i for i in range(3) if i != a - 1])
    with cl.client(b - 1) as c:
        after = tn.make_records(5, "after")
        produce_on_leader(c, "bal", p, after, f"acks=ALL on broker {b}")
        eq(values(c, "bal", p), kept + [r.value for r in after],
           "what broker b had, and what came since")
    # a comes back: it follows, cuts its tail, joins the ISR, and the
    # balancing makes it lead again (bal-p and the partitions it preferred).
    lines = len(cl.nodes[li].lines)
    cl.start(a - 1)
    wait_for("every partition of bal led by its preferred replica again",
             lambda: all(lead == reps[0] for lead, _, _, reps in partitions(cl, li, "bal")),
             timeout=30)
    check(any("preferred-leader balancing" in line for line in cl.nodes[li].lines[lines:]),
          "the controller's leader balanced the leaders")
    led_everywhere(cl, "bal", p, a)
    with cl.client(a - 1) as c:
        produce_on_leader(c, "bal", p, tn.make_records(1, "home"), f"acks=ALL on broker {a}")
        got = values(c, "bal", p)
        eq(got[:-1], kept + [r.value for r in after],
           f"broker {a} cut the records only it had (unclean election)")
    for i in range(3):
        eq(cl.nodes[i].stop(), 0, f"node {i + 1}: exit status after SIGTERM")


def run_unclean_recovery(cl):
    """A new leader that cannot hear from a majority of its replicas
    (recover.c, rule 10) waits: it may lack records acks MAJORITY answered
    on the others.  A topic with unclean.leader.election.enable gets
    availability instead: after WAIT_LOG_NS (5 s) its leader serves its log
    as it is; a topic without it stays unavailable until a replica comes
    back.  Four nodes, three of them voters: the partitions on the broker
    outside the quorum and two voters other than the controller's leader,
    whose leadership moves to the survivor once the other two are
    killed."""
    for i in range(4):
        cl.start(i)
    li, _ = cl.leader()
    wait_for("four brokers registered and running",
             lambda: len(brokers(cl, li)) == 4 and
             all(st == BROKER_RUNNING for st, _, _ in brokers(cl, li).values()))
    with cl.client(li) as c:
        r = c.unary("/rustmq.controller.AdminService/CreateTopics",
                    tn.A.CreateTopicsRequest(version=tn.V(), topics=[
                        tn.A.CreatableTopic(name="unc", partitions=8, replication_factor=3,
                                            configs=[tn.CM.ConfigEntry(
                                                name="unclean.leader.election.enable",
                                                value="true")]),
                        tn.A.CreatableTopic(name="cln", partitions=8, replication_factor=3)]),
                    tn.A.CreateTopicsResponse)
        for t in r.topics:
            ok(t, f"create {t.name}")
    # Replicas: broker 4, v (killed) and s (the survivor), all but the
    # controller's leader.
    s, v = [b for b in (1, 2, 3) if b != li + 1]
    want = sorted(["4", str(s), str(v)])

    def pick(topic):
        return wait_for(f"a partition of {topic} on brokers {want}, in sync, on every live node",
                        lambda: next((k for k, (_, _, st) in enumerate(isr(cl, li, topic))
                                      if sorted(partitions(cl, li, topic)[k][3]) == want and
                                      len(st) == 3), None), timeout=20)

    parts = {"unc": pick("unc"), "cln": pick("cln")}
    for t, p in parts.items():
        if partitions(cl, li, t)[p][0] == str(s):
            ok(transfer(cl, li, t, p, target=4), f"TransferLeadership of {t}-{p} to broker 4")
        wait_for(f"{t}-{p} led by broker 4 or {v}",
                 lambda: partitions(cl, li, t)[p][0] in ("4", str(v)))
    with cl.client(s - 1) as c:
        for t, p in parts.items():
            wait_for(f"broker {s} knows who leads {t}-{p}",
                     lambda: partitions(cl, s - 1, t)[p][0] in ("4", str(v)))
    lines = len(cl.nodes[s - 1].lines)
    cl.nodes[v - 1].kill()
    cl.nodes[3].kill()
    for t, p in parts.items():
        wait_for(f"broker {s} leads {t}-{p}", lambda: partitions(cl, li, t)[p][0] == str(s),
                 timeout=20)
    # Produce on the survivor: refused while it learns what the others
    # hold; the topic that allows unclean elections is served once it
    # gave up waiting.
    with cl.client(s - 1) as c:
        seen = []
        end = time.monotonic() + 30
        while time.monotonic() < end:
            r = c.produce("unc", parts["unc"], tn.make_records(1, "unc"))
            seen.append((r.error_code, r.error_message))
            if r.error_code == 0:
                break
            time.sleep(0.1)
        check(seen[-1][0] == 0, f"unc-{parts['unc']} served in the end: {seen[-3:]}")
        learning = [m for code, m in seen if code == LEADER_NOT_AVAILABLE and "still learning" in m]
        check(learning, f"unc-{parts['unc']} refused while its new leader waited: {seen[:3]}")
        gave_up = [re.search(r"answered in (\d+) s", x) for x in cl.nodes[s - 1].lines[lines:]
                   if "serving this log as it is" in x]
        check(gave_up and all(int(m.group(1)) >= 5 for m in gave_up),
              f"broker {s} said it served unc without a majority after 5 s: {gave_up}")
        r = c.produce("cln", parts["cln"], tn.make_records(1, "cln"))
        eq((r.error_code, "still learning" in r.error_message), (LEADER_NOT_AVAILABLE, True),
           f"cln-{parts['cln']}, without unclean.leader.election.enable, waits for a "
           f"majority: {r.error_message}")
    # A replica comes back: the clean topic's leader hears from it and
    # serves.
    cl.start(v - 1)
    with cl.client(s - 1) as c:
        wait_for(f"cln-{parts['cln']} served once broker {v} is back",
                 lambda: c.produce("cln", parts["cln"], tn.make_records(1, "cln")).error_code == 0,
                 timeout=20)


PM = "/rustmq.broker.PartitionManagementService/"
THROTTLE = 1 << 20  # --reassign-throttle of the partition_management cluster
REQ_BYTES = 1 << 20  # lead.c: stored batches per request, about
M_COPYING, M_CATCHING_UP, M_SWITCHING, M_COMPLETED, M_FAILED = 2, 3, 4, 5, 6
ROLE_LEADER, ROLE_FOLLOWER = 1, 2
STATE_RECOVERING, STATE_ONLINE = 1, 2


def pm(cl, i, method, **fields):
    """A unary PartitionManagementService call on node i."""
    PB = importlib.import_module("broker.partition_pb2")
    req = getattr(PB, method + "Request")(version=tn.V(), **fields)
    resp = getattr(PB, method + "Response")
    with cl.client(i) as c:
        return c.unary(PM + method, req, resp)


def tp(topic, p):
    return importlib.import_module("common.types_pb2").TopicPartition(topic=topic, partition=p)


def pstate(cl, i, topic, p):
    r = ok(pm(cl, i, "GetPartitionState", topic_partitions=[tp(topic, p)]), "GetPartitionState")
    eq(r.broker_id, str(i + 1), "GetPartitionState names the answering broker")
    return r.partitions[0]


def migrate(cl, i, topic, p, src, dst, messages=None, **kw):
    """The progress messages of a MigratePartition on node i, and when each
    came (seconds from the call): all of them, or the first `messages`
    (the call then cancelled)."""
    PB = importlib.import_module("broker.partition_pb2")
    D = importlib.import_module("google.protobuf.duration_pb2")
    req = PB.MigratePartitionRequest(version=tn.V(), topic_partition=tp(topic, p),
                                     source_broker_id=str(src), target_broker_id=str(dst),
                                     progress_interval=D.Duration(nanos=200_000_000), **kw)
    t0 = time.monotonic()
    out = []
    with cl.client(i) as c:
        for m in c.server_stream(PM + "MigratePartition", req, PB.MigratePartitionProgress,
                                 timeout=30):
            out.append((time.monotonic() - t0, m))
            if len(out) == messages:
                break
    return out


def run_partition_management(cl, rmq=None):
    """PartitionManagementService on the reassignment machinery: a replica
    added (AssignPartition, sent to the broker it adds) and removed
    (RemovePartition, sent to the broker it removes), refusals,
    GetPartitionState on leader and follower, and a MigratePartition whose
    copy --reassign-throttle bounds."""
    li = start_three(cl, [("pm", 2, 1), ("thr", 1, 1)])
    follower = next(i for i in range(3) if i != li)
    parts = wait_for("every node knows pm and thr",
                     lambda: all(len(partitions(cl, i, "pm")) == 2 and
                                 len(partitions(cl, i, "thr")) == 1 for i in range(3))
                     and partitions(cl, li, "pm"))
    src = int(parts[0][0])
    # The broker added: one that does not lead the controller when there is
    # one, so that the call is carried to the controller's leader.
    dst = next(b for b in (1, 2, 3) if b != src and b - 1 != li)
    with cl.client(src - 1) as c:
        produce_settled(c, "pm", 0, tn.make_records(3, "pm"), "produce pm-0")
    s = pstate(cl, dst - 1, "pm", 0)
    eq(s.error_code, tn.E.REPLICA_NOT_AVAILABLE, f"broker {dst} hosts no replica of pm-0 yet: {s}")

    r = pm(cl, dst - 1, "AssignPartition", topic_partition=tp("pm", 0))
    eq(r.error_code, tn.E.INVALID_REQUEST, f"AssignPartition without a role refused: {r}")
    r = pm(cl, dst - 1, "AssignPartition", topic_partition=tp("pm", 0), role=ROLE_FOLLOWER)
    ok(r, "AssignPartition of the receiving broker")
    eq(r.state, STATE_RECOVERING, f"its copy is being made: {r}")
    wait_for(f"every node shows pm-0 on brokers {src} and {dst}",
             lambda: all(partitions(cl, i, "pm")[0][3] == [str(src), str(dst)] for i in range(3)))
    fs = wait_for(f"broker {dst}'s copy has the records",
                  lambda: (lambda x: x.log_end_offset == 3 and x)(pstate(cl, dst - 1, "pm", 0)))
    eq((fs.role, fs.state, fs.leader_id, list(fs.replica_ids)),
       (ROLE_FOLLOWER, STATE_ONLINE, str(src), [str(src), str(dst)]),
       f"GetPartitionState on the new follower: {fs}")
    ls = pstate(cl, src - 1, "pm", 0)
    eq((ls.role, ls.high_watermark, ls.log_end_offset), (ROLE_LEADER, 3, 3),
       f"GetPartitionState on the leader: {ls}")
    check(ls.size_bytes > 0 and ls.segment_count >= 1 and ls.topic_id,
          f"the leader's log size, segments and topic id: {ls}")
    r = ok(pm(cl, li, "GetPartitionState"), "GetPartitionState of every hosted replica")
    eq(sorted((x.topic_partition.topic, x.topic_partition.partition) for x in r.partitions),
       sorted(("pm", p) for p, x in enumerate(partitions(cl, li, "pm")) if str(li + 1) in x[3])
       + sorted(("thr", p) for p, x in enumerate(partitions(cl, li, "thr")) if str(li + 1) in x[3]),
       "every replica the broker hosts, and only those")

    # Refusals: the last replica, a log kept, a stale controller epoch.
    only = int(parts[1][0])
    r = pm(cl, only - 1, "RemovePartition", topic_partition=tp("pm", 1), delete_log=True)
    eq(r.error_code, tn.E.INVALID_REPLICATION_FACTOR, f"removing the last replica: {r}")
    r = pm(cl, only - 1, "RemovePartition", topic_partition=tp("pm", 1))
    eq(r.error_code, tn.E.INVALID_REQUEST, f"delete_log false refused: {r}")
    r = pm(cl, li, "RemovePartition", topic_partition=tp("pm", 1), delete_log=True,
           controller_epoch=1)
    eq(r.error_code, tn.E.STALE_EPOCH, f"a deposed controller's command: {r}")
    r = pm(cl, li, "RemovePartition", topic_partition=tp("nope", 0), delete_log=True)
    eq(r.error_code, tn.E.TOPIC_NOT_FOUND, f"an unknown topic: {r}")
    r = pm(cl, follower, "AssignPartition", topic_partition=tp("pm", 7), role=ROLE_FOLLOWER)
    eq(r.error_code, tn.E.PARTITION_NOT_FOUND, f"an unknown partition: {r}")
    r = pm(cl, li, "AssignPartition", topic_partition=tp("pm", 1), role=ROLE_LEADER,
           adding_replica_ids=[str(b) for b in range(1, 10)])
    eq(r.error_code, tn.E.INVALID_REQUEST, f"more brokers named than a partition may have: {r}")
    r = pm(cl, li, "AssignPartition", topic_partition=tp("pm", 1), role=ROLE_LEADER,
           adding_replica_ids=[str(b) for b in range(1, 10) if b != only][:8])
    eq(r.error_code, tn.E.INVALID_REPLICATION_FACTOR, f"8 added to its one replica: {r}")

    # The leader removes itself once the new copy is in sync: the other
    # leads with every record, and the old copy is deleted.
    wait_for(f"broker {dst} in pm-0's ISR", lambda: str(dst) in isr(cl, li, "pm")[0][2])
    ok(pm(cl, src - 1, "RemovePartition", topic_partition=tp("pm", 0), delete_log=True),
       "RemovePartition of the receiving broker, the leader")
    wait_for(f"every node shows pm-0 on broker {dst} alone, which leads it",
             lambda: all(partitions(cl, i, "pm")[0][0] == str(dst) and
                         partitions(cl, i, "pm")[0][3] == [str(dst)] for i in range(3)))
    with cl.client(dst - 1) as c:
        eq(sum(b.record_count for b, _ in c.fetch_all("pm", 0)), 3, "pm-0's records on its new broker")
    wait_for(f"broker {src}'s copy of pm-0 deleted",
             lambda: not os.path.exists(os.path.join(cl.nodes[src - 1].data_dir, "pm-0")))
    ok(pm(cl, src - 1, "RemovePartition", topic_partition=tp("pm", 0), delete_log=True),
       "removing a replica that is not there: OK, nothing changes")

    # UpdatePartitionConfig: the topic's overrides replaced (a partition's
    # configuration is its topic's), sent to any node.
    CM = importlib.import_module("common.metadata_pb2")

    def topic_configs(i, topic):
        req = tn.A.DescribeConfigsRequest(version=tn.V())
        req.resources.add(resource=tn.A.ConfigResource(type=tn.A.CONFIG_RESOURCE_TYPE_TOPIC,
                                                       name=topic))
        with cl.client(i) as c:
            d = c.unary("/rustmq.controller.AdminService/DescribeConfigs", req,
                        tn.A.DescribeConfigsResponse)
        return {e.name: (e.value, e.is_default) for e in d.resources[0].configs}

    alter_topic(cl, li, "pm", "segment.ms", "600000")
    r = ok(pm(cl, follower, "UpdatePartitionConfig", topic_partitions=[tp("pm", 0), tp("pm", 1)],
              configs=[CM.ConfigEntry(name="retention.ms", value="123456")]),
           "UpdatePartitionConfig")
    eq([x.error_code for x in r.partitions], [0, 0], f"one result per partition: {r}")
    cf = wait_for("the overrides replaced on every node",
                  lambda: all(topic_configs(i, "pm")["retention.ms"] == ("123456", False)
                              for i in range(3)) and topic_configs(li, "pm"))
    eq(cf["segment.ms"][1], True, f"a key not given goes back to its default: {cf}")
    r = pm(cl, li, "UpdatePartitionConfig", topic_partitions=[tp("pm", 0)],
           configs=[CM.ConfigEntry(name="retention.nope", value="1")])
    eq(r.error_code, tn.E.INVALID_CONFIG, f"an unknown key refuses the whole request: {r}")
    check("retention.nope" in r.error_message, f"the bad key named: {r.error_message}")
    r = ok(pm(cl, li, "UpdatePartitionConfig", topic_partitions=[tp("pm", 0), tp("nope", 0)]),
           "UpdatePartitionConfig with no overrides")
    eq([x.error_code for x in r.partitions], [0, tn.E.TOPIC_NOT_FOUND],
       f"an unknown topic refused alone: {r}")
    eq(topic_configs(li, "pm")["retention.ms"][1], True, "no overrides: every key its default")

    # MigratePartition, throttled: a few MB moved at THROTTLE bytes/s take
    # at least (size - one request) / THROTTLE.
    tsrc = int(partitions(cl, li, "thr")[0][0])
    tdst = next(b for b in (1, 2, 3) if b != tsrc)
    with cl.client(tsrc - 1) as c:
        for k in range(12):  # max.message.bytes is 256 KiB
            produce_settled(c, "thr", 0, tn.make_records(4, f"thr{k}", size=60000, headers=False),
                            "produce thr-0")
    size = pstate(cl, tsrc - 1, "thr", 0).size_bytes
    check(size > 2 * REQ_BYTES, f"thr-0 holds a few MB: {size}")
    ((_, m),) = migrate(cl, follower, "thr", 0, tdst, tsrc)
    eq((m.phase, m.error_code), (M_FAILED, tn.E.INVALID_REQUEST),
       f"from a broker not hosting it, sent to a node that relays the controller's leader: {m}")
    ((_, m),) = migrate(cl, li, "thr", 0, tsrc, tsrc)
    eq((m.phase, m.error_code), (M_FAILED, tn.E.INVALID_REQUEST), f"to the broker it is on: {m}")
    msgs = migrate(cl, follower, "thr", 0, tsrc, tdst)  # relayed to the controller's leader
    took, last = msgs[-1]
    phases = [x.phase for _, x in msgs]
    eq((last.phase, last.error_code, last.source_broker_id, last.target_broker_id),
       (M_COMPLETED, 0, str(tsrc), str(tdst)), f"the migration completed: {phases}")
    check(M_COPYING in phases, f"it was seen copying: {phases}")
    bound = (size - REQ_BYTES) / THROTTLE
    check(took >= bound, f"the throttled copy of {size} bytes took {took:.2f}s, "
          f"at least {bound:.2f}s at {THROTTLE} bytes/s")
    if tsrc - 1 == li:
        copying = [x for _, x in msgs if x.phase == M_COPYING and x.bytes_total]
        check(copying and all(x.target_log_end_offset <= x.source_log_end_offset for x in copying),
              f"the leader's view of the copy: {[str(x) for x in copying]}")
    wait_for(f"every node shows thr-0 on broker {tdst} alone",
             lambda: all(partitions(cl, i, "thr")[0][3] == [str(tdst)] for i in range(3)))
    with cl.client(tdst - 1) as c:
        eq(sum(b.record_count for b, _ in c.fetch_all("thr", 0)), 48, "thr-0's records moved")
    # A client that leaves a migration cancels it, also through a node that
    # relays the controller's leader: the replica stays where it was, and
    # the copy begun is deleted.
    ((_, m),) = migrate(cl, follower, "thr", 0, tdst, tsrc, messages=1)
    eq(m.phase, M_COPYING, f"the way back is being copied (throttled): {m}")
    wait_for(f"the migration cancelled: thr-0 on broker {tdst} alone on every node",
             lambda: all(partitions(cl, i, "thr")[0][3] == [str(tdst)] for i in range(3)))
    wait_for(f"broker {tsrc}'s copy deleted",
             lambda: not os.path.exists(os.path.join(cl.nodes[tsrc - 1].data_dir, "thr-0")))
    # One past its timeout fails with TIMEOUT, and is cancelled too.
    D = importlib.import_module("google.protobuf.duration_pb2")
    msgs = migrate(cl, li, "thr", 0, tdst, tsrc, timeout=D.Duration(nanos=300_000_000))
    eq((msgs[-1][1].phase, msgs[-1][1].error_code), (M_FAILED, tn.E.TIMEOUT),
       f"a migration past its timeout: {[str(m) for _, m in msgs]}")
    wait_for(f"the migration past its timeout cancelled: thr-0 on broker {tdst} alone",
             lambda: all(partitions(cl, i, "thr")[0][3] == [str(tdst)] for i in range(3)))
    # ReassignPartitions' progress carries the bytes copied, from the
    # leader's view, when the answering node (the controller's leader)
    # leads the partition: one of a topic's three placed there (the
    # controller spreads them over the brokers), a replica added, the
    # throttled copy seen growing to the log's size.
    with cl.client(li) as c:
        c.create_topic("cpy", 3)
    cp = wait_for("every node knows cpy's leaders",
                  lambda: all(len(partitions(cl, i, "cpy")) == 3 and
                              all(x[0] not in ("", "0") for x in partitions(cl, i, "cpy"))
                              for i in range(3)) and
                  [k for k, x in enumerate(partitions(cl, li, "cpy")) if x[0] == str(li + 1)])
    cp = cp[0]
    with cl.client(li) as c:
        for k in range(12):
            produce_settled(c, "cpy", cp, tn.make_records(4, f"cpy{k}", size=60000, headers=False),
                            f"produce cpy-{cp}")
    size = pstate(cl, li, "cpy", cp).size_bytes
    cdst = next(b for b in (1, 2, 3) if b != li + 1)
    msgs = reassign(cl, li, [("cpy", cp, [li + 1, cdst])], timeout=30)
    seen = [statuses(m)[("cpy", cp)] for m in msgs if ("cpy", cp) in statuses(m)]
    copying = [(s.bytes_copied, s.bytes_total, s.lag_records) for s in seen
               if s.phase == COPYING and s.bytes_total]
    check(len(copying) >= 2, f"the copy's progress reported while it ran: {copying}")
    check(all(t == size and c <= t for c, t, _ in copying),
          f"bytes_copied within bytes_total, the leader's log size {size}: {copying}")
    check(all(a[0] <= b[0] for a, b in zip(copying, copying[1:])) and
          copying[-1][0] > copying[0][0], f"bytes_copied grows: {copying}")
    check(copying[0][2] > 0, f"the added replica's lag while it copies: {copying}")
    last = seen[-1]
    eq((last.phase, last.bytes_copied, last.bytes_total), (COMPLETED, size, size),
       f"the move completed with every byte copied: {last}")
    if rmq:
        # rmq partition reassign, asked of a node that does not lead the
        # controller: it follows the leader and prints the move to its end.
        src = int(partitions(cl, li, "pm")[1][0])
        dst = next(b for b in (1, 2, 3) if b != src)
        out = rmq_cli(rmq, f"127.0.0.1:{cl.ports[follower]}", "partition", "reassign", "pm",
                      "--partition", "1", "--replicas", str(dst))
        check(re.search(rf"(?m)^pm-1\tCOPYING\treplicas {src},{dst}\tadding {dst}\tremoving {src}$",
                        out) or re.search(rf"(?m)^pm-1\tELECTING", out),
              f"rmq partition reassign printed the move under way: {out!r}")
        check(re.search(rf"(?m)^pm-1\tCOMPLETED\treplicas {dst}\n\Z", out),
              f"rmq partition reassign ends with the move completed: {out!r}")
        out = rmq_cli(rmq, f"127.0.0.1:{cl.ports[dst - 1]}", "partition", "state", "pm",
                      "--partition", "1")
        check(re.search(rf"pm-1\t\w+\tONLINE\tleader {dst}\t", out) or
              re.search(r"pm-1\tFOLLOWER", out), f"rmq partition state on the new broker: {out!r}")


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


COORDINATOR_NOT_AVAILABLE, NOT_COORDINATOR, COORDINATOR_LOAD_IN_PROGRESS = 23, 24, 25
COORDINATOR_RETRY = (COORDINATOR_NOT_AVAILABLE, NOT_COORDINATOR, COORDINATOR_LOAD_IN_PROGRESS)
UNKNOWN_MEMBER_ID, INVALID_TOPIC = 26, 14
FIND_COORDINATOR = "/rustmq.client.MetadataService/FindCoordinator"


def find_coordinator(cl, i, group):
    """(error code, broker id, "host:port") of group's coordinator as node
    i answers FindCoordinator."""
    with cl.client(i) as c:
        r = c.unary(FIND_COORDINATOR, tn.MD.FindCoordinatorRequest(version=tn.V(), keys=[group]),
                    tn.MD.FindCoordinatorResponse)
        eq(len(r.coordinators), 1, "one coordinator per key")
        ci = r.coordinators[0]
        if ci.error_code:
            return ci.error_code, None, None
        return 0, int(ci.broker.id.id), f"{ci.broker.host}:{ci.broker.port}"


def coordinator_everywhere(cl, group, nodes, but=None):
    """Waits until every node in nodes names the same coordinator of group,
    other than broker `but`; returns its node index."""
    def agreed():
        got = {find_coordinator(cl, i, group) for i in nodes}
        if len(got) != 1:
            return None
        code, bid, addr = got.pop()
        if code or bid == but:
            return None
        return bid
    bid = wait_for(f"every node names one coordinator of {group}"
                   + (f" other than broker {but}" if but else ""), agreed, timeout=30)
    idx = bid - 1
    eq(find_coordinator(cl, nodes[0], group)[2], f"127.0.0.1:{cl.ports[idx]}",
       "the coordinator's address")
    return idx


def group_call(tg, c, group, kind):
    """A group RPC of kind on client c with a member unknown to anyone:
    its response (every one carries error_code)."""
    if kind == "heartbeat":
        return c.unary(tg.CS + "Heartbeat",
                       tn.C.GroupHeartbeatRequest(version=tn.V(), group_id=group, generation_id=1,
                                                  member_id="nobody"),
                       tn.C.GroupHeartbeatResponse)
    if kind == "fetch":
        q = tn.C.FetchOffsetsRequest(version=tn.V(), group_id=group)
        return c.unary(tg.CS + "FetchOffsets", q, tn.C.FetchOffsetsResponse)
    m = tg.Member(c, group, ["gc"], session_ms=6000)
    return m.join(raw=True)


def committed(tg, cl, i, group, parts):
    """{(topic, p): offset} of group as node i's FetchOffsets answers, or
    None while it answers a coordinator error (moving, loading)."""
    with cl.client(i) as c:
        q = tn.C.FetchOffsetsRequest(version=tn.V(), group_id=group)
        for t, p in parts:
            q.partitions.add(topic=t, partition=p)
        r = c.unary(tg.CS + "FetchOffsets", q, tn.C.FetchOffsetsResponse)
        if r.error_code in (COORDINATOR_NOT_AVAILABLE, COORDINATOR_LOAD_IN_PROGRESS,
                            NOT_COORDINATOR):
            return None
        ok(r, f"FetchOffsets of {group} on node {i + 1}")
        return {(x.topic_partition.topic, x.topic_partition.partition):
                (x.offset if x.HasField("offset") else None) for x in r.partitions}


def fnv1a(s):
    """The hash that picks a group's partition (group.c)."""
    h = 2166136261
    for b in s.encode():
        h = ((h ^ b) * 16777619) & 0xFFFFFFFF
    return h


def offsets_log_bytes(cl, i):
    """Bytes the segments of __consumer_offsets take on node i's disk."""
    data = pathlib.Path(cl.nodes[i].data_dir)
    return sum(f.stat().st_blocks * 512 for d in data.glob("__consumer_offsets-*")
               for f in d.glob("*.log"))


def run_group_coordinator(cl, rmq=None):
    """The group coordinator moves with __consumer_offsets: the controller
    creates the topic replicated (RF 3 on three brokers); FindCoordinator
    names the leader of the group's partition on every node; the other
    nodes answer the group RPCs NOT_COORDINATOR; commits through the
    coordinator are replicated before they are answered, so after kill -9
    of the coordinator's node FindCoordinator names another broker, which
    has every committed offset, refuses the old member (it rejoins there)
    and takes new commits.  The replicated log is compacted on every
    replica."""
    import test_groups as tg
    li = start_three(cl, [("gc", 3, 3)])
    group = "cg-1"
    # Created on demand (Kafka's first FindCoordinator), through the
    # controller's leader whichever node is asked.
    check("__consumer_offsets" not in cl.topics_internal(li),
          "no __consumer_offsets before a client asks for a coordinator")
    asked = (li + 1) % 3
    eq(find_coordinator(cl, asked, group)[0], COORDINATOR_NOT_AVAILABLE,
       f"FindCoordinator on node {asked + 1} before the topic exists")
    ci = coordinator_everywhere(cl, group, [0, 1, 2])
    eq(sorted(len(r) for _, r, _ in isr(cl, li, "__consumer_offsets")), [3, 3, 3, 3],
       "__consumer_offsets: 4 partitions (--offsets-partitions) of 3 replicas")
    wait_for("__consumer_offsets with three in-sync replicas per partition",
             lambda: all(len(s) == 3 for _, _, s in isr(cl, li, "__consumer_offsets")), timeout=20)
    others = [i for i in range(3) if i != ci]
    # Something to commit against: records in every partition of gc.
    with cl.client(li) as c:
        for p in range(3):
            leader = int(partitions(cl, li, "gc")[p][0])
            with cl.client(leader - 1) as lc:
                produce_on_leader(lc, "gc", p, tn.make_records(10, tag=f"gc{p}"), f"produce gc-{p}")
    # The other nodes send the client back to FindCoordinator.
    for i in others:
        with cl.client(i) as c:
            for kind in ("heartbeat", "fetch", "join"):
                r = group_call(tg, c, group, kind)
                eq(r.error_code, NOT_COORDINATOR,
                   f"{kind} of {group} on node {i + 1}, not its coordinator ({r.error_message})")
                check(f"127.0.0.1:{cl.ports[ci]}" in r.error_message,
                      f"NOT_COORDINATOR names the coordinator: {r.error_message}")
            d = ok(c.unary(tg.AS + "DescribeGroups",
                           tn.A.DescribeGroupsRequest(version=tn.V(), group_ids=[group]),
                           tn.A.DescribeGroupsResponse), "DescribeGroups")
            eq(d.groups[0].error_code, NOT_COORDINATOR,
               f"DescribeGroups of {group} on node {i + 1} ({d.groups[0].error_message})")
        # Only the coordinator writes the internal topic.
        with cl.client(i) as c:
            eq(c.produce("__consumer_offsets", 0, tn.make_records(1)).error_code, INVALID_TOPIC,
               "a produce to __consumer_offsets")
    if rmq:
        # rmq consume --group finds its group's coordinator whichever
        # node it is given, and commits there on exit.
        cli_group = "cg-cli"
        cci = coordinator_everywhere(cl, cli_group, [0, 1, 2])
        boot = [i for i in range(3) if i != cci][0]
        out = rmq_cli(rmq, f"127.0.0.1:{cl.ports[boot]}", "consume", "gc", "--group", cli_group,
                      "--offset", "earliest", "--max", "30", "--timeout", "10s", "--format", "json")
        eq(len(out.splitlines()), 30, f"rmq consume --group {cli_group} through node {boot + 1}")
        eq(committed(tg, cl, cci, cli_group, [("gc", p) for p in range(3)]),
           {("gc", p): 10 for p in range(3)}, f"{cli_group}'s commits at its coordinator")
    # min.insync.replicas (the cluster's default) applies to commits: with
    # the ISR of the group's offsets partition below it, a commit is
    # refused NOT_ENOUGH_REPLICAS and the offset committed before stays;
    # once the replica is back in the ISR the commit is taken.
    # (A group of cg-1's partition: the replica stopped is not the
    # coordinator the rest of the test uses.)
    isr_group = next(g for g in (f"cg-isr-{k}" for k in range(100))
                     if fnv1a(g) % 4 == fnv1a(group) % 4)
    ici = coordinator_everywhere(cl, isr_group, [0, 1, 2])
    ipart = fnv1a(isr_group) % 4
    victim = next(i for i in sorted(range(3), key=lambda i: i == li) if i != ici)
    CB = importlib.import_module("controller.cluster_pb2")

    def cluster_config(sets=(), removes=()):
        req = CB.UpdateClusterConfigRequest(version=tn.V(), remove_names=list(removes))
        for k, v in sets:
            req.set_entries.add(name=k, value=v)
        with cl.client(li) as c:
            ok(c.unary("/rustmq.controller.ControllerBrokerService/UpdateClusterConfig", req,
                       CB.UpdateClusterConfigResponse), f"UpdateClusterConfig {sets} {removes}")

    with cl.client(ici) as c:
        m = tg.Member(c, isr_group, ["gc"])

        def simple_commit(off):
            r = m.commit({("gc", 0): off}, generation=-1, member_id="")
            return r.error_code or r.partitions[0].error_code, \
                r.error_message or r.partitions[0].error_message

        eq(simple_commit(2)[0], 0, f"a commit of {isr_group} with three replicas in sync")
        cluster_config(sets=[("min.insync.replicas", "3")])
        cl.nodes[victim].kill()
        wait_for(f"__consumer_offsets-{ipart}'s ISR without broker {victim + 1}",
                 lambda: str(victim + 1) not in isr(cl, ici, "__consumer_offsets")[ipart][2],
                 timeout=15)
        code, why = simple_commit(7)
        eq(code, NOT_ENOUGH_REPLICAS, f"a commit with 2 replicas in sync: {why}")
        check("min.insync.replicas=3" in why and f"__consumer_offsets-{ipart}" in why,
              f"the refusal says why: {why}")
        eq(committed(tg, cl, ici, isr_group, [("gc", 0)]), {("gc", 0): 2},
           "the refused commit did not change the committed offset")
        cl.start(victim)
        wait_for(f"broker {victim + 1} back in __consumer_offsets-{ipart}'s ISR",
                 lambda: str(victim + 1) in isr(cl, ici, "__consumer_offsets")[ipart][2],
                 timeout=20)
        wait_for("the commit taken with three replicas in sync again",
                 lambda: simple_commit(7)[0] == 0, timeout=10)
        eq(committed(tg, cl, ici, isr_group, [("gc", 0)]), {("gc", 0): 7},
           "the commit taken once the replica is back")
        cluster_config(removes=["min.insync.replicas"])
    wait_for("__consumer_offsets with three in-sync replicas per partition again",
             lambda: all(len(x) == 3 for _, _, x in isr(cl, li, "__consumer_offsets")), timeout=20)
    # A member commits through the coordinator.
    want = {("gc", 0): 3, ("gc", 1): 5, ("gc", 2): 10}
    parts = sorted(want)
    with cl.client(ci) as c:
        m = tg.Member(c, group, ["gc"], session_ms=6000)
        eq(len(m.join_and_sync()), 3, "the one member holds gc's three partitions")
        r = m.commit(want)
        ok(r, "CommitOffsets on the coordinator")
        for x in r.partitions:
            ok(x, f"commit of gc-{x.topic_partition.partition}")
        # Compaction of the replicated log (64 KiB segments): 400 commits
        # of 3 offsets with 3 KiB of metadata each, ~3.6 MB uncompacted,
        # rewriting the same keys; the last one is `want` again.
        for k in range(400):
            r = m.commit({tp: (off + k) % 10 for tp, off in want.items()}, metadata="m" * 3000)
            if k % 50 == 0:
                ok(r, f"commit {k}")
        ok(m.commit(want), "the last commit")
        old_member, old_gen = m.member_id, m.generation
    eq(committed(tg, cl, ci, group, parts), want, "offsets as the coordinator answers them")
    # The leader compacted its copy, and its followers dropped the same
    # prefix when its log start reached them.
    for i in range(3):
        wait_for(f"__consumer_offsets on node {i + 1} within 800 KB (compacted)",
                 lambda: offsets_log_bytes(cl, i) < 800_000, timeout=15)
    # kill -9 of the coordinator's node.
    dead_id = ci + 1
    t0 = time.monotonic()
    cl.nodes[ci].kill()
    nci = coordinator_everywhere(cl, group, others, but=dead_id)
    check(nci != ci, "another broker coordinates the group")
    got = wait_for("the new coordinator answers the committed offsets",
                   lambda: committed(tg, cl, nci, group, parts), timeout=30)
    eq(got, want, f"committed offsets at the new coordinator, broker {nci + 1}")
    print(f"  group_coordinator: broker {dead_id} killed, broker {nci + 1} answers the "
          f"offsets {time.monotonic() - t0:.2f}s later", flush=True)
    other = [i for i in others if i != nci][0]
    with cl.client(other) as c:
        for kind in ("heartbeat", "fetch", "join"):
            r = group_call(tg, c, group, kind)
            eq(r.error_code, NOT_COORDINATOR,
               f"{kind} of {group} on node {other + 1} after the move ({r.error_message})")
    # The member was the old coordinator's: it rejoins at the new one and
    # goes on committing.
    with cl.client(nci) as c:
        m = tg.Member(c, group, ["gc"], session_ms=6000)
        m.member_id, m.generation = old_member, old_gen
        eq(m.heartbeat().error_code, UNKNOWN_MEMBER_ID,
           "the old coordinator's member is unknown at the new one")
        m.member_id = ""
        eq(len(m.join_and_sync()), 3, "rejoined at the new coordinator")
        want2 = {("gc", 0): 4, ("gc", 1): 6, ("gc", 2): 10}
        ok(m.commit(want2), "CommitOffsets on the new coordinator")
        eq(committed(tg, cl, nci, group, parts), want2, "offsets after the new commit")
    # The killed broker comes back as a follower: it does not coordinate.
    cl.start(ci)
    wait_for(f"broker {dead_id} running again", lambda: brokers(cl, nci)[dead_id][0] == BROKER_RUNNING)
    with cl.client(ci) as c:
        r = wait_for(f"broker {dead_id} answers with the cluster's coordinator",
                     lambda: (lambda x: x if x.error_code == NOT_COORDINATOR else None)(
                         group_call(tg, c, group, "fetch")), timeout=15)
        check(f"127.0.0.1:{cl.ports[nci]}" in r.error_message,
              f"the restarted broker names the coordinator: {r.error_message}")
    # A leadership moved on request moves the coordinator with it: back
    # to the restarted broker once it is in sync again (it caught up on
    # the compacted log and the commits made while it was away), which
    # loads the group from its own copy.
    part = fnv1a(group) % 4
    wait_for(f"broker {dead_id} back in the ISR of __consumer_offsets-{part}",
             lambda: str(dead_id) in isr(cl, nci, "__consumer_offsets")[part][2], timeout=20)
    ok(transfer(cl, other, "__consumer_offsets", part, target=dead_id),
       f"TransferLeadership of __consumer_offsets-{part} to broker {dead_id}")
    eq(coordinator_everywhere(cl, group, [0, 1, 2], but=nci + 1), ci,
       "the coordinator after the transfer")
    eq(wait_for("the restarted broker answers the committed offsets",
                lambda: committed(tg, cl, ci, group, parts)), want2,
       f"offsets at broker {dead_id}, coordinator again")
    with cl.client(nci) as c:
        eq(group_call(tg, c, group, "heartbeat").error_code, NOT_COORDINATOR,
           f"heartbeat on broker {nci + 1}, coordinator no more")
    # Every node stops cleanly (the coordinator hands its partitions over
    # first, dropping its groups), with nothing from the sanitizers.
    for i in range(3):
        eq(cl.nodes[i].stop(), 0, f"node {i + 1}: exit status after SIGTERM")
    bad = [line for n in cl.nodes[:3] for line in n.lines
           if "AddressSanitizer" in line or "runtime error" in line or "LeakSanitizer" in line]
    check(not bad, "sanitizer reports:\n" + "\n".join(bad[:20]))


def main() -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("--rmqd", required=True)
    ap.add_argument("--proto-dir", required=True)
    ap.add_argument("--rmq", help="the rmq CLI: produce and consume across the brokers")
    ap.add_argument("--rmq-bench", help="the load generator: a short run across the brokers")
    ap.add_argument("--keep", action="store_true")
    ap.add_argument("--only", action="append", help="run this case only (repeatable)")
    ap.add_argument("--skip", action="append", help="do not run this case (repeatable)")
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
        ("leadership_moves", lambda: Cluster(binary, os.path.join(tmp, "e"), args.verbose,
                                             ("--broker-heartbeat", "100ms",
                                              "--broker-session-timeout", "3s",
                                              "--replica-lag-max", "500ms",
                                              "--leader-rebalance-interval", "0s")),
         lambda cl: run_leadership(cl, args.rmq)),
        ("unclean_election_and_balancing",
         lambda: Cluster(binary, os.path.join(tmp, "f"), args.verbose,
                         ("--broker-heartbeat", "100ms", "--broker-session-timeout", "1s",
                          "--replica-lag-max", "500ms", "--leader-rebalance-interval", "1s")),
         run_balancing),
        ("unclean_recovery",
         lambda: Cluster(binary, os.path.join(tmp, "unclean_recovery"), args.verbose,
                         ("--broker-heartbeat", "100ms", "--broker-session-timeout", "1s",
                          "--replica-lag-max", "500ms", "--leader-rebalance-interval", "0s")),
         run_unclean_recovery),
        ("restarted_leader",
         lambda: Cluster(binary, os.path.join(tmp, "h"), args.verbose,
                         ("--broker-heartbeat", "100ms", "--broker-session-timeout", "3s",
                          "--leader-rebalance-interval", "0s")),
         run_restarted_leader),
        ("idempotent_cli",
         lambda: Cluster(binary, os.path.join(tmp, "i"), args.verbose,
                         ("--broker-heartbeat", "100ms", "--broker-session-timeout", "2s",
                          "--leader-rebalance-interval", "0s")),
         lambda cl: run_idempotent_cli(cl, args.rmq)),
        ("idempotent_bench",
         lambda: Cluster(binary, os.path.join(tmp, "idempotent_bench"), args.verbose,
                         ("--broker-heartbeat", "100ms", "--broker-session-timeout", "2s",
                          "--leader-rebalance-interval", "0s")),
         lambda cl: run_idempotent_bench(cl, args.rmq_bench)),
        ("partition_management",
         lambda: Cluster(binary, os.path.join(tmp, "g"), args.verbose,
                         ("--broker-heartbeat", "100ms", "--broker-session-timeout", "3s",
                          "--replica-lag-max", "500ms", "--leader-rebalance-interval", "0s",
                          "--reassign-throttle", str(THROTTLE))),
         lambda cl: run_partition_management(cl, args.rmq)),
        ("bundles_and_idle_followers",
         lambda: Cluster(binary, os.path.join(tmp, "bundles"), args.verbose,
                         ("--broker-heartbeat", "100ms", "--broker-session-timeout", "30s",
                          "--replica-lag-max", "1s", "--leader-rebalance-interval", "0s")),
         run_bundles),
        ("paused_leader_tail",
         lambda: Cluster(binary, os.path.join(tmp, "paused_leader_tail"), args.verbose,
                         ("--broker-heartbeat", "100ms", "--broker-session-timeout", "2s",
                          "--replica-lag-max", "60s", "--leader-rebalance-interval", "0s")),
         run_paused_leader_tail),
        # Its own ctest entry (broker_cluster_groups): --only group_coordinator.
        ("group_coordinator",
         lambda: Cluster(binary, os.path.join(tmp, "h"), args.verbose,
                         ("--broker-heartbeat", "100ms", "--broker-session-timeout", "2s",
                          "--replica-lag-max", "1s", "--leader-rebalance-interval", "0s",
                          "--offsets-partitions", "4", "--offsets-segment-bytes", "64KiB",
                          "--group-initial-rebalance-delay", "0s")),
         lambda cl: run_group_coordinator(cl, args.rmq)),
    ]
    if args.only:
        tests = [t for t in tests if t[0] in args.only]
    if args.skip:
        tests = [t for t in tests if t[0] not in args.skip]
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
