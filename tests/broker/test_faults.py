#!/usr/bin/python3
# SPDX-License-Identifier: Apache-2.0
"""Faults on three (four, five) real rmqd nodes under load, judged by the
history checker (history.py).

Each scenario starts its own nodes (three, all controller voters, unless
it says otherwise; every node a broker; 200 ms heartbeats, 2 s broker
sessions), creates a topic (3 partitions of 3 replicas unless it says
otherwise), and runs against it:

- three producers, one per acks level (ALL, MAJORITY, LEADER), each
  sending batches of 1 to 3 records with values never sent before (a
  failed send is not retried: the next one gets new values) to each
  partition's leader in turn, following NOT_LEADER and the metadata;
- a consumer polling every partition from its leader, from offset 0
  (in reassign_under_load the one member of a consumer group, which
  commits its positions on node 1: Load.group_member);
- a fault (below), then the cure: every node running again.

Then, once every partition's replicas are in its ISR and caught up
(GetISR on the leader), every partition is read back whole from every
replica (a replica read: FetchRequest.replica_id, fetch.c) and from its
leader as a consumer, and the history is checked: no acknowledged record
of acks ALL or MAJORITY lost, no offset with two values, no value at two
offsets, no poll going back or skipping. What acks LEADER lost is
allowed, and printed.

The faults:
  kill9_leaders     kill -9 of a partition's leader, three times, each
                    restarted after its session expired (a follower leads
                    in between);
  pause_leader      SIGSTOP of a partition's leader past its broker
                    session, then SIGCONT: its successor leads meanwhile;
                    what the paused leader answers once it runs again is
                    counted (an acknowledgement by it for acks ALL or
                    MAJORITY that its successor never had would be a lost
                    write);
  rolling_restart   SIGTERM of each node in turn (a controlled shutdown),
                    restarted once it exited;
  divergent_tail    KIP-101, explicitly: both followers of partition 0
                    killed, records produced with acks LEADER to its
                    leader alone (a replica read of the leader shows them
                    past the high watermark), the leader killed, the
                    followers restarted: one of them leads and takes new
                    records at the same offsets; the old leader restarted:
                    it must cut its tail, and all three replicas agree.
                    The tail's records are the acks LEADER losses, each
                    checked to be gone;
  net_partition     a partition's leader cut off from the other two nodes
                    by iptables DROP rules, its clients still reaching it
                    (each node in a network namespace of its own, this
                    program run again in a client's namespace; skipped,
                    saying why, without root, iptables or namespaces): the
                    other two lead without it; what it acknowledges for
                    acks ALL or MAJORITY meanwhile must not be lost;
  controller_kill   kill -9 of the controller's Raft leader when partition
                    leaders must be elected, twice: the node leading both
                    the controller and a partition, or a partition's
                    leader and then (at once, or about when its session
                    expires) the controller's leader, restarted after a
                    moment for a quorum (three voters);
  reassign_under_load
                    four nodes (three voters, a broker only): twice, a
                    partition's replicas moved by ReassignPartitions, one
                    replica (the leader's, half the time) replaced by the
                    broker that held none; the move must complete;
  kill9_leaders_5   five nodes, five voters, five partitions of three
                    replicas: three rounds of kill -9 of one or two
                    partition leaders at once (the controller's leader
                    among them, half the time it leads a partition).

    /usr/bin/python3 tests/broker/test_faults.py --rmqd build/release/rmqd \\
        --proto-dir proto [--only NAME] [--seed N] [--long SECONDS | --seeds N] [-v]

--seed fixes the random choices (victims, batch sizes, timings); each run
prints its seed.  --long SECONDS repeats every scenario with new seeds
until SECONDS have passed; --seeds N runs N rounds.  A failed scenario
keeps its directory: each node's log, history.jsonl (history.py reads it
alone) and the checker's report; an expected failure (XFAIL) only with
--keep.

Ends with "N passed, N failed, N skipped".  Nodes are stopped by PID on
every path.
"""
import argparse
import collections
import importlib
import os
import pathlib
import random
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time
import traceback
import typing

sys.dont_write_bytecode = True
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import history  # noqa: E402
import test_cluster as tc  # noqa: E402
import test_groups as tg  # noqa: E402
import test_node as tn  # noqa: E402
import test_partition as tpart  # noqa: E402
from test_node import check, eq, ok  # noqa: E402

import grpc  # noqa: E402

TOPIC = "h"


class Shape(typing.NamedTuple):
    """A scenario's cluster: nodes rmqd nodes, the first voters of them
    the controller's voters (the others brokers only), and the topic's
    partitions and replication factor."""
    nodes: int = 3
    voters: int = 3
    parts: int = 3
    rf: int = 3


THREE = Shape()
ACKS = {"all": tn.ACK_ALL, "majority": tn.ACK_MAJORITY, "leader": tn.ACK_LEADER}
SESSION_S = 2.0
FLAGS = ("--broker-heartbeat", "200ms", "--broker-session-timeout", f"{int(SESSION_S)}s",
         "--replica-lag-max", "2s")
PRODUCE_TIMEOUT_S = 3.0
SETTLE_S = 30.0  # liveness bounds, not measurements
GETISR = "/rustmq.broker.BrokerReplicationService/GetISR"
R = None  # broker.replication_pb2, once the protos are loaded

# Scenarios expected to find anomalies: name -> (the kinds of finding
# expected, where the cause is written down).  A finding of another kind,
# or any other failure, still fails.
REPLICATION_MD = "docs/replication.md, \"What the checker found\""
# Findings 1 to 6 are fixed: every finding fails a scenario again.  A new
# one that cannot be fixed at once is written down in that section and
# marked here, name -> (kinds expected, where it is written down).
XFAIL = {}


class Findings(AssertionError):
    """What the checker (or the settling) found wrong in a run: kinds is
    a set of history.ANOMALIES names, with "lost" told apart as
    "lost-all" and "lost-majority" (an acknowledged record missing from
    every final read, by its acks) and "lost-replica" (missing from some
    replicas only: a replica behind or diverged), "rewritten" (an offset
    one broker wrote twice, finding_kinds); and "unsettled",
    "tail-kept" (divergent_tail), "deposed-ack" (pause_leader,
    net_partition: a deposed leader acknowledged what was then lost)."""

    def __init__(self, kinds, message):
        super().__init__(message)
        self.kinds = set(kinds)


GROUP = "faults"
GROUP_SCENARIOS = ("reassign_under_load",)  # the consumer is a group member
GROUP_SESSION_MS = 10000
COMMIT_EVERY_S = 0.5


def finding_kinds(hist, rep):
    """The kinds of what rep found (Findings): "lost" told apart by acks
    and by readers, and "rewritten" for an offset at which one broker
    wrote two values (finding 6: a leader restarted in its old epoch
    rewrote offsets a follower already held), told apart from the
    "inconsistent" of an offset written by two leaders (finding 2), and
    from a replica's "lost" at such an offset."""
    node = {e["value"]: e.get("node") for e in hist.events if e["f"] == "send"}
    rewritten = set()
    kinds = set(rep.anomalies()) - {"lost", "inconsistent"}
    for tp, off, vals in rep.inconsistent:
        by = {node.get(v) for v in vals}
        if len(by) == 1 and None not in by:
            rewritten.add((tp, off))
        else:
            kinds.add("inconsistent")
    if rewritten:
        kinds.add("rewritten")
    for v, tp, acks, off, lacking in rep.lost:
        if len(lacking) == len(rep.finals[tp]):
            kinds.add(f"lost-{acks}")
        else:
            kinds.add("rewritten" if (tp, off) in rewritten else "lost-replica")
    return kinds


class Load:
    """The producers and the consumer, writing one history.  The consumer
    is a plain one, or (group not None) the one member of a consumer group
    that commits its positions; self.group is then the index of the node
    coordinating it, as FindCoordinator last named it."""

    def __init__(self, cl, rnd, group=None):
        self.cl = cl
        self.group = group
        self.commits = collections.Counter()  # answers to each partition's commit, by code
        self.committed = {}  # partition -> the last offset whose commit was answered OK
        self.hist = history.History()
        self.stop = threading.Event()
        self.lock = threading.Lock()
        self.leaders = {}  # partition -> broker id
        self.rnd = random.Random(rnd.random())
        self.threads = []
        self.errors = []

    # -- routing ---------------------------------------------------------
    def refresh(self):
        live = [b for b in ids(self.cl) if running(self.cl, b - 1)]
        self.rnd.shuffle(live)
        for b in live:
            try:
                parts = tc.partitions(self.cl, b - 1, TOPIC)
            except (grpc.RpcError, AssertionError):
                continue
            with self.lock:
                self.leaders = {p: int(x[0]) for p, x in enumerate(parts) if x[0]}
            return

    def leader(self, p):
        with self.lock:
            return self.leaders.get(p)

    # -- threads ---------------------------------------------------------
    def start(self):
        self.refresh()
        for acks in ACKS:
            self.threads.append(threading.Thread(target=self._guard, args=(self.producer, acks),
                                                 daemon=True))
        consumer = self.consumer if self.group is None else self.group_member
        self.threads.append(threading.Thread(target=self._guard, args=(consumer, "c1"),
                                             daemon=True))
        for t in self.threads:
            t.start()

    def finish(self):
        self.stop.set()
        for t in self.threads:
            t.join(30)
        check(not any(t.is_alive() for t in self.threads), "a load thread did not stop")
        check(not self.errors, f"a load thread failed: {self.errors}")

    def _guard(self, fn, arg):
        try:
            fn(arg)
        except Exception as e:  # noqa: BLE001
            self.errors.append(f"{arg}: {type(e).__name__}: {e}")
            traceback.print_exc()

    def _client(self, clients, b):
        if b not in clients:
            clients[b] = self.cl.client(b - 1)
        return clients[b]

    @staticmethod
    def _drop(clients, b):
        # A new channel for a node that failed a call: grpcio's reconnect
        # backoff would otherwise keep a restarted node away for seconds.
        c = clients.pop(b, None)
        if c:
            c.close()

    def producer(self, acks):
        rnd = random.Random(self.rnd.random())
        clients = {}
        seq = 0
        while not self.stop.is_set():
            for p in range(self.cl.shape.parts):
                b = self.leader(p)
                if b is None:
                    self.refresh()
                    time.sleep(0.05)
                    continue
                n = rnd.randint(1, 3)
                vals = [f"{acks}-{seq + i}" for i in range(n)]
                seq += n
                recs = [tn.T.Record(value=v.encode()) for v in vals]
                tp = f"{TOPIC}-{p}"
                t0 = time.time()
                try:
                    r = self._client(clients, b).produce(TOPIC, p, recs, acks=ACKS[acks],
                                                         timeout=PRODUCE_TIMEOUT_S)
                except grpc.RpcError as e:
                    out = "timeout" if e.code() == grpc.StatusCode.DEADLINE_EXCEEDED else "unknown"
                    for v in vals:
                        self.hist.send(v, tp, acks, out, error=str(e.code()), node=b, t0=t0,
                                       t1=time.time())
                    self._drop(clients, b)
                    self.refresh()
                    time.sleep(0.02)
                    continue
                t1 = time.time()
                if r.error_code == 0:
                    for i, v in enumerate(vals):
                        self.hist.send(v, tp, acks, "ok", offset=r.offset + i, node=b,
                                       epoch=r.leader_epoch, t0=t0, t1=t1)
                else:
                    for v in vals:
                        self.hist.send(v, tp, acks, "error", error=tn.ecname(r.error_code),
                                       node=b, t0=t0, t1=t1)
                    self.refresh()
                    time.sleep(0.02)
        for c in clients.values():
            c.close()

    def consumer(self, name):
        clients = {}
        pos = [0] * self.cl.shape.parts
        while not self.stop.is_set():
            if not self._poll(name, clients, pos, range(self.cl.shape.parts)):
                time.sleep(0.05)
        for c in clients.values():
            c.close()

    def _join(self, name):
        """(client, member) joined and synced at GROUP's coordinator, found
        again while it is being made, loads or moves."""
        end = time.monotonic() + 30
        while True:
            i = coordinator(self.cl)
            co = self.cl.client(i)
            m = tg.Member(co, GROUP, [TOPIC], session_ms=GROUP_SESSION_MS, client_id=name)
            r = m.join()
            if r.error_code == 0:
                r = m.sync()
            if r.error_code == 0:
                self.group = i
                return co, m
            co.close()
            check(r.error_code in tc.COORDINATOR_RETRY and time.monotonic() < end,
                  f"joining {GROUP} at node {i + 1}: {tn.ecname(r.error_code)}")
            time.sleep(0.1)

    def group_member(self, name):
        """JoinGroup and SyncGroup at the group's coordinator (the leader of
        its __consumer_offsets partition, FindCoordinator), then polls of
        the partitions assigned, each from its leader, from offset 0 (the
        group is new), and every COMMIT_EVERY_S a Heartbeat and a
        CommitOffsets of the positions reached."""
        clients = {}
        pos = [0] * self.cl.shape.parts
        co, m = self._join(name)
        try:
            mine = sorted(p for t, p in m.assignment if t == TOPIC)
            eq(mine, list(range(self.cl.shape.parts)), "the only member is assigned every partition")
            last = time.monotonic()
            while not self.stop.is_set():
                if not self._poll(name, clients, pos, mine):
                    time.sleep(0.05)
                if time.monotonic() - last < COMMIT_EVERY_S:
                    continue
                last = time.monotonic()
                code = m.heartbeat().error_code
                if code in tc.COORDINATOR_RETRY:
                    co.close()
                    co, m = self._join(name)  # it moved: the same partitions, positions kept
                elif code:
                    m.join_and_sync()  # a rebalance: the same partitions again, positions kept
                at = {(TOPIC, p): pos[p] for p in mine}
                r = m.commit(at)
                if r.error_code:
                    self.commits[f"group: {tn.ecname(r.error_code)}"] += 1
                    continue
                for x in r.partitions:
                    p = x.topic_partition.partition
                    self.commits[tn.ecname(x.error_code)] += 1
                    if x.error_code == 0:
                        self.committed[p] = at[(TOPIC, p)]
            ok(m.leave(), "LeaveGroup")
        finally:
            co.close()
            for c in clients.values():
                c.close()

    def _poll(self, name, clients, pos, parts):
        """One fetch of each of parts from its leader, from pos (moved on);
        whether anything came."""
        got = False
        for p in parts:
            b = self.leader(p)
            if b is None:
                self.refresh()
                continue
            try:
                resp, _ = self._client(clients, b).fetch([(TOPIC, p, pos[p])], max_wait_ms=100,
                                                         min_bytes=1, timeout=5)
            except grpc.RpcError:
                self._drop(clients, b)
                self.refresh()
                continue
            pr = resp.partitions[0] if resp.partitions else None
            if resp.error_code or pr is None or pr.error_code:
                # NOT_LEADER, LEADER_NOT_AVAILABLE, or a new leader
                # whose HW is still below our position: keep it.
                self.refresh()
                continue
            # Only the records before the offset asked for are skipped
            # (the first batch may begin before it); anything else the
            # broker returns is written down as read, so that batches
            # going back or over a gap show in the checker.
            asked = pos[p]
            for bt in pr.batches:
                for i, rec in enumerate(bt.records):
                    off = bt.base_offset + i
                    if off < asked:
                        continue
                    self.hist.poll(name, f"{TOPIC}-{p}", off, rec.value.decode())
                    pos[p] = max(pos[p], off + 1)
                    got = True
        return got

    def check_group(self):
        """The group's committed offsets (FetchOffsets on its coordinator)
        are the last ones answered OK; printed with what the commits were
        answered."""
        self.group = coordinator(self.cl)
        with self.cl.client(self.group) as c:
            got, _ = tg.fetch_offsets(c, GROUP, [(TOPIC, p) for p in range(self.cl.shape.parts)])
        got = {p: off for (t, p), off in got.items() if off is not None}
        print(f"    consumer group {GROUP!r} on node {self.group + 1}: commits answered "
              f"{dict(sorted(self.commits.items()))}; committed {dict(sorted(got.items()))}",
              flush=True)
        eq(got, self.committed, "the group's committed offsets are the last ones answered OK")


def coordinator(cl):
    """The index of the node coordinating GROUP, as a running node's
    FindCoordinator names it (the first one asked has the controller make
    __consumer_offsets: COORDINATOR_NOT_AVAILABLE meanwhile)."""
    def named():
        for i in range(len(cl.nodes)):
            if not running(cl, i):
                continue
            try:
                code, bid, _ = tc.find_coordinator(cl, i, GROUP)
            except (grpc.RpcError, AssertionError):
                continue
            if code == 0 and bid and running(cl, bid - 1):
                return bid
        return None
    return tc.wait_for(f"a coordinator of {GROUP}", named, timeout=30) - 1


# -- the cluster -------------------------------------------------------------

def ids(cl):
    """The scenario's broker ids."""
    return range(1, len(cl.nodes) + 1)


def start_cluster(cl):
    n, sh = len(cl.nodes), cl.shape
    for i in range(n):
        cl.start(i)
    li, _ = cl.leader()
    tc.wait_for(f"{n} brokers registered and running",
                lambda: len(tc.brokers(cl, li)) == n and
                all(st == tc.BROKER_RUNNING for st, _, _ in tc.brokers(cl, li).values()))
    with cl.client(li) as c:
        r = c.unary("/rustmq.controller.AdminService/CreateTopics",
                    tn.A.CreateTopicsRequest(version=tn.V(), topics=[
                        tn.A.CreatableTopic(name=TOPIC, partitions=sh.parts,
                                            replication_factor=sh.rf)]),
                    tn.A.CreateTopicsResponse)
        ok(r.topics[0], f"create {TOPIC} with {sh.rf} replicas")
    tc.wait_for(f"every node knows {TOPIC}'s leaders",
                lambda: all(len(tc.partitions(cl, i, TOPIC)) == sh.parts and
                            all(x[0] for x in tc.partitions(cl, i, TOPIC)) for i in range(n)))
    # Every partition open on its leader (the first produce may otherwise
    # meet a partition still opening): an empty replica read answers.
    for p, (lead, _, _, _) in enumerate(tc.partitions(cl, li, TOPIC)):
        with cl.client(int(lead) - 1) as c:
            tc.wait_for(f"{TOPIC}-{p} open on broker {lead}",
                        lambda: c.fetch([(TOPIC, p, 0)], replica_id=int(lead))[0]
                        .partitions[0].error_code == 0)


def running(cl, i):
    """Node i is alive and not stopped by SIGSTOP (cl.paused)."""
    return cl.nodes[i].alive() and i not in cl.paused


def live_node(cl):
    """A node whose metadata the test trusts: running, and not cut off
    from the others (cl.cut: its view is stale; clients still use it)."""
    return next(i for i in range(len(cl.nodes)) if running(cl, i) and i not in cl.cut)


def leaders(cl):
    """{partition: broker id} as a live node's metadata says (0: none)."""
    return {p: int(x[0] or 0) for p, x in enumerate(tc.partitions(cl, live_node(cl), TOPIC))}


def isr_state(cl, p):
    """GetISR of partition p on its leader, or None while it has none."""
    lead = leaders(cl).get(p)
    if not lead or not running(cl, lead - 1):
        return None
    tp = tn.T.TopicPartition(topic=TOPIC, partition=p)
    with cl.client(lead - 1) as c:
        try:
            (st,) = c.unary(GETISR, R.GetISRRequest(version=tn.V(), topic_partitions=[tp]),
                            R.GetISRResponse, timeout=5).partitions
        except grpc.RpcError:
            return None
    return st if st.error_code == 0 else None


def replicas(cl):
    """{partition: sorted replica ids (str)} as a live node's metadata says."""
    return {p: sorted(x[3]) for p, x in enumerate(tc.partitions(cl, live_node(cl), TOPIC))}


def settled(cl):
    """Every partition led, each of its replicas in its ISR and at its
    leader's log end, which is its high watermark."""
    reps = replicas(cl)
    for p in range(cl.shape.parts):
        st = isr_state(cl, p)
        if st is None or sorted(st.isr_ids) != reps[p] or st.pending_isr_ids:
            return False
        if sorted(r.broker_id for r in st.replicas) != reps[p]:
            return False
        if st.high_watermark != st.log_end_offset:
            return False
        if any(r.log_end_offset != st.log_end_offset for r in st.replicas):
            return False
    return True


def describe(cl):
    out = []
    for p in range(cl.shape.parts):
        st = isr_state(cl, p)
        out.append(f"{TOPIC}-{p}: " + (
            "no leader" if st is None else
            f"leader {st.leader_id} epoch {st.leader_epoch} isr {sorted(st.isr_ids)} "
            f"hw {st.high_watermark} leo {st.log_end_offset} replicas "
            f"{[(r.broker_id, r.log_end_offset, r.in_sync) for r in st.replicas]}"))
    return "\n    ".join(out)


def values(batches):
    return [(b.base_offset + i, r.value.decode()) for b, _ in batches
            for i, r in enumerate(b.records)]


def read_back(cl, hist):
    """Every partition whole from every replica, and from its leader as a
    consumer, into hist as final reads."""
    lead, reps = leaders(cl), replicas(cl)
    for p in range(cl.shape.parts):
        tp = f"{TOPIC}-{p}"
        for b in map(int, reps[p]):
            with cl.client(b - 1) as c:
                hist.final_read(f"replica-{b}", tp)
                for off, v in values(c.fetch_all(TOPIC, p, replica_id=b)):
                    hist.final(f"replica-{b}", tp, off, v)
        with cl.client(lead[p] - 1) as c:
            hist.final_read("leader", tp)
            for off, v in values(c.fetch_all(TOPIC, p)):
                hist.final("leader", tp, off, v)


def wait_led_by_other(cl, p, old, timeout=20):
    return tc.wait_for(f"{TOPIC}-{p} led by a broker other than {old}",
                       lambda: (lambda b: b if b and b != old else None)(leaders(cl).get(p)),
                       timeout=timeout)


# -- the faults --------------------------------------------------------------

def kill9_leaders(cl, load, rnd, notes):
    for k in range(3):
        time.sleep(rnd.uniform(1.0, 2.5))
        p = rnd.randrange(cl.shape.parts)
        victim = leaders(cl)[p]
        if not victim:
            continue
        cl.nodes[victim - 1].kill()
        new = wait_led_by_other(cl, p, victim)
        notes.append(f"kill -9 of broker {victim} (led {TOPIC}-{p}): broker {new} leads it")
        load.refresh()
        time.sleep(rnd.uniform(0.5, 1.5))
        cl.start(victim - 1)
    time.sleep(1.5)


def pause_leader(cl, load, rnd, notes):
    time.sleep(rnd.uniform(1.0, 2.0))
    p = rnd.randrange(cl.shape.parts)
    victim = leaders(cl)[p]
    pid = cl.nodes[victim - 1].proc.pid
    os.kill(pid, signal.SIGSTOP)
    cl.paused.add(victim - 1)
    t_stop = time.time()
    try:
        new = wait_led_by_other(cl, p, victim, timeout=SESSION_S * 5 + 10)
        load.refresh()
        time.sleep(SESSION_S + rnd.uniform(0.5, 1.5))  # the successor takes writes
    finally:
        os.kill(pid, signal.SIGCONT)
        cl.paused.discard(victim - 1)
    t_cont = time.time()
    notes.append(f"SIGSTOP of broker {victim} (led {TOPIC}-{p}) for {t_cont - t_stop:.1f}s: "
                 f"broker {new} led it meanwhile")
    time.sleep(2.0)
    return {"victim": victim, "tp": f"{TOPIC}-{p}", "since": t_cont, "what": "SIGCONT"}


def late_acks(hist, rep, info):
    """What a deposed leader acknowledged after info["since"] (SIGCONT,
    the cut): (its acks ALL/MAJORITY answers, how many of them lost from
    every final read)."""
    lost = {x[0] for x in rep.lost if len(x[4]) == len(rep.finals[x[1]])}  # from every read
    late = [e for e in hist.events if e["f"] == "send" and e["outcome"] == "ok" and
            e.get("node") == info["victim"] and e["acks"] in history.SAFE and
            e["t1"] >= info["since"]]
    return len(late), sum(e["value"] in lost for e in late)


def rolling_restart(cl, load, rnd, notes):
    order = list(range(len(cl.nodes)))
    rnd.shuffle(order)
    for i in order:
        time.sleep(rnd.uniform(0.5, 1.5))
        t0 = time.monotonic()
        eq(cl.nodes[i].stop(), 0, f"node {i + 1}: exit status after SIGTERM")
        notes.append(f"SIGTERM of node {i + 1}: exited after {time.monotonic() - t0:.1f}s")
        load.refresh()
        time.sleep(rnd.uniform(0.5, 1.0))
        cl.start(i)
        # Back in every ISR before the next one goes: otherwise two
        # replicas of three are away and acks ALL cannot be answered.
        tc.wait_for(f"broker {i + 1} back in every ISR",
                    lambda: all((st := isr_state(cl, p)) is not None and
                                str(i + 1) in st.isr_ids for p in range(cl.shape.parts)),
                    timeout=30)
    time.sleep(1.0)


def divergent_tail(cl, load, rnd, notes):
    time.sleep(rnd.uniform(1.0, 2.0))
    p = 0
    tp = f"{TOPIC}-{p}"
    # Both followers in the ISR first: the tail must stay above the HW, and
    # one of them must be able to lead.
    reps = replicas(cl)[p]
    tc.wait_for(f"{tp}'s replicas all in its ISR",
                lambda: (st := isr_state(cl, p)) is not None and
                sorted(st.isr_ids) == reps and not st.pending_isr_ids, timeout=30)
    old = leaders(cl)[p]
    followers = [int(b) for b in reps if int(b) != old]
    for b in followers:
        cl.nodes[b - 1].kill()
    tail = []
    with cl.client(old - 1) as c:
        for k in range(3):
            recs = [tn.T.Record(value=f"tail-{k}-{j}".encode()) for j in range(2)]
            r = ok(c.produce(TOPIC, p, recs, acks=tn.ACK_LEADER, timeout=5),
                   "acks LEADER with both followers dead")
            for j, rec in enumerate(recs):
                load.hist.send(rec.value.decode(), tp, "leader", "ok", offset=r.offset + j,
                               node=old, epoch=r.leader_epoch, t0=time.time(), t1=time.time())
                tail.append(rec.value.decode())
        mine = values(c.fetch_all(TOPIC, p, replica_id=old))
        seen = values(c.fetch_all(TOPIC, p))
    have = {v for _, v in mine}
    check(all(v in have for v in tail), "a replica read of the leader holds its tail")
    check(not any(v in {x for _, x in seen} for v in tail),
          "a consumer's read stops below the tail (the high watermark)")
    end = mine[-1][0] + 1
    cl.nodes[old - 1].kill()
    for b in followers:
        cl.start(b - 1)
    new = wait_led_by_other(cl, p, old, timeout=30)
    load.refresh()
    # The new leader takes records at the offsets of the old one's tail
    # (the leadership may move on meanwhile: the leader is asked each time).
    bound = time.monotonic() + 30
    while True:
        check(time.monotonic() < bound, f"no record at offset {end} or above within 30s")
        b = leaders(cl).get(p) or new
        recs = [tn.T.Record(value=f"over-{time.monotonic_ns()}".encode())]
        with cl.client(b - 1) as c:
            t0 = time.time()
            try:
                r = c.produce(TOPIC, p, recs, acks=tn.ACK_ALL, timeout=5)
            except grpc.RpcError as e:
                load.hist.send(recs[0].value.decode(), tp, "all", "unknown", error=str(e.code()),
                               node=b, t0=t0, t1=time.time())
                time.sleep(0.05)
                continue
        if r.error_code == 0:
            load.hist.send(recs[0].value.decode(), tp, "all", "ok", offset=r.offset, node=b,
                           epoch=r.leader_epoch, t0=t0, t1=time.time())
            if r.offset >= end:
                break
        else:
            load.hist.send(recs[0].value.decode(), tp, "all", "error",
                           error=tn.ecname(r.error_code), node=b, t0=t0, t1=time.time())
            time.sleep(0.05)
    notes.append(f"{tp}: broker {old} wrote a tail of {len(tail)} records to offset {end} "
                 f"alone and died; broker {new} leads and wrote over those offsets")
    cl.start(old - 1)
    time.sleep(1.0)
    return {"tail": tail}


def all_in_sync(cl, what, timeout=30):
    """Waits until every partition's replicas are all in its ISR (a round
    of kills must not find a partition whose only in-sync replica is
    among its victims: it would have no leader until they come back)."""
    tc.wait_for(f"every partition's replicas in its ISR {what}",
                lambda: (reps := replicas(cl)) and
                all((st := isr_state(cl, p)) is not None and sorted(st.isr_ids) == reps[p] and
                    not st.pending_isr_ids for p in range(cl.shape.parts)), timeout=timeout)


def wait_led_by_none_of(cl, p, gone, timeout=30):
    return tc.wait_for(f"{TOPIC}-{p} led by a broker other than {sorted(gone)}",
                       lambda: (lambda b: b if b and b not in gone else None)(leaders(cl).get(p)),
                       timeout=timeout)


def controller_kill(cl, load, rnd, notes):
    """kill -9 of the controller's Raft leader when partition leaders must
    be elected, twice.  Either the node that leads both the controller and
    a partition (the new controller leader, once elected, gives every
    broker a whole session before it fences the dead one and elects its
    partitions' leaders); or a partition's leader, and then, before or
    about when its session expires and the controller must elect its
    successor, the controller's leader.  With three voters that second
    kill leaves no quorum: the controller's old leader is restarted after
    a moment and the election waits for it."""
    for k in range(2):
        time.sleep(rnd.uniform(1.0, 2.0))
        all_in_sync(cl, "before the kill")
        li, _ = cl.leader()
        ctl = li + 1
        lead = leaders(cl)
        mine = [p for p, b in lead.items() if b == ctl]
        others = [p for p, b in lead.items() if b and b != ctl]
        both = rnd.random() < 0.5
        if (both and not mine) or (not both and not others):
            both = not both
        t0 = time.monotonic()
        if both:
            p = rnd.choice(mine)
            cl.nodes[li].kill()
            gone = {ctl}
            new = wait_led_by_none_of(cl, p, gone, timeout=SESSION_S * 5 + 15)
            nli, _ = cl.leader(exclude=li)
            notes.append(f"kill -9 of broker {ctl}, the controller's leader and {TOPIC}-{p}'s: "
                         f"node {nli + 1} leads the controller, broker {new} {TOPIC}-{p} "
                         f"{time.monotonic() - t0:.1f}s later")
            load.refresh()
            time.sleep(rnd.uniform(0.5, 1.5))
            cl.start(li)
        else:
            p = rnd.choice(others)
            first = lead[p]
            cl.nodes[first - 1].kill()
            delay = rnd.uniform(0.0, SESSION_S + 0.5)
            time.sleep(delay)
            cl.nodes[li].kill()
            gone = {first, ctl}
            quorum = cl.shape.voters - sum(1 for b in gone if b <= cl.shape.voters) > \
                cl.shape.voters // 2
            back = None
            if not quorum:
                time.sleep(rnd.uniform(0.5, 1.5))
                cl.start(li)
                back = ctl
                gone = {first}
            new = wait_led_by_none_of(cl, p, gone, timeout=SESSION_S * 5 + 15)
            nli, _ = cl.leader()
            notes.append(f"kill -9 of broker {first} ({TOPIC}-{p}'s leader), {delay:.2f}s later "
                         f"of broker {ctl} (the controller's leader)" +
                         (f", restarted for a quorum" if back else "") +
                         f": node {nli + 1} leads the controller, broker {new} {TOPIC}-{p} "
                         f"{time.monotonic() - t0:.1f}s after the first kill")
            load.refresh()
            time.sleep(rnd.uniform(0.5, 1.5))
            for b in sorted({first, ctl}):
                if not cl.nodes[b - 1].alive():
                    cl.start(b - 1)
    time.sleep(1.5)


def reassign_under_load(cl, load, rnd, notes):
    """Four brokers (three voters), the topic's three replicas on three of
    them: twice, a partition's replicas changed by ReassignPartitions on
    the controller's leader while the load runs: one replica (the
    leader's, half the time) replaced by a broker that holds none.  The
    move must complete (COMPLETED, the new replicas on every node, one of
    them leading) and the checker must find nothing lost or duplicated
    on the new replicas."""
    for k in range(2):
        time.sleep(rnd.uniform(2.0, 4.0))  # a few MB to copy
        all_in_sync(cl, "before the move")
        p = rnd.randrange(cl.shape.parts)
        reps = [int(b) for b in replicas(cl)[p]]
        lead = leaders(cl)[p]
        dst = rnd.choice([b for b in ids(cl) if b not in reps])
        out = lead if rnd.random() < 0.5 else rnd.choice([b for b in reps if b != lead])
        target = [b for b in reps if b != out] + [dst]
        li, _ = cl.leader()
        t0 = time.monotonic()
        msgs = tc.reassign(cl, li, [(TOPIC, p, target)], timeout=60)
        s = tc.statuses(msgs[-1])[(TOPIC, p)]
        eq((s.error_code, s.phase, sorted(s.replica_ids)),
           (0, tc.COMPLETED, sorted(map(str, target))),
           f"{TOPIC}-{p} moved from {reps} to {target}: {[str(tc.statuses(m)) for m in msgs]}")
        took = time.monotonic() - t0
        tc.wait_for(f"every node shows {TOPIC}-{p} on {target}",
                    lambda: all(sorted(tc.partitions(cl, i, TOPIC)[p][3]) ==
                                sorted(map(str, target)) for i in range(len(cl.nodes))))
        new = leaders(cl)[p]
        notes.append(f"{TOPIC}-{p} moved from brokers {reps} (broker {lead} leading) to {target} "
                     f"in {took:.1f}s: broker {out} out, {dst} in, broker {new} leads")
        load.refresh()
    time.sleep(1.5)


def kill9_leaders_5(cl, load, rnd, notes):
    """Five nodes, five voters, five partitions of three replicas: three
    rounds of kill -9 of one or two partition leaders at once (half the
    time the controller's leader among them, when it leads a partition),
    each restarted once its partitions are led by others."""
    for k in range(3):
        time.sleep(rnd.uniform(1.0, 2.5))
        all_in_sync(cl, "before the kill")
        li, _ = cl.leader()
        lead = leaders(cl)
        cands = sorted({b for b in lead.values() if b})
        gone = set(rnd.sample(cands, min(len(cands), rnd.choice((1, 2)))))
        if li + 1 in cands and li + 1 not in gone and rnd.random() < 0.5:
            gone = {li + 1, *sorted(gone)[:1]}
        for b in gone:
            cl.nodes[b - 1].kill()
        t0 = time.monotonic()
        moved = {p: wait_led_by_none_of(cl, p, gone, timeout=SESSION_S * 5 + 15)
                 for p, b in lead.items() if b in gone}
        notes.append(f"kill -9 of brokers {sorted(gone)}" +
                     (f" (node {li + 1} led the controller)" if li + 1 in gone else "") + ": " +
                     ", ".join(f"{TOPIC}-{p} led by {b}" for p, b in sorted(moved.items())) +
                     f" within {time.monotonic() - t0:.1f}s")
        load.refresh()
        time.sleep(rnd.uniform(0.5, 1.5))
        for b in sorted(gone):
            cl.start(b - 1)
    time.sleep(1.5)


NET_PORT = 9200


class NetCluster(tc.Cluster):
    """The three nodes each in a network namespace of its own on a bridge
    (test_partition.py's Net, 10.77.0.1-3); this process runs in the
    client's namespace (main re-runs itself there), which reaches all
    three whatever the rules between them say."""

    def __init__(self, binary, tmp, verbose, extra, net):
        super().__init__(binary, tmp, verbose, extra, nodes=3, voters=3)
        self.net = net
        self.voters = ",".join(f"{b}@{net.addr(b)}:{NET_PORT}" for b in ids(self))
        for b in ids(self):
            self.nodes[b - 1].prefix = ("ip", "netns", "exec", net.ns[b])

    def flags(self, i):
        # Namespace addresses are not loopback: rmqd wants the consent.
        return ("--listen", f"{self.net.addr(i + 1)}:{NET_PORT}", "--allow-insecure",
                "--node-id", str(i + 1), "--controller-voters", self.voters, "--cores", "1",
                *self.extra)

    def client(self, i):
        return tn.Client(f"{self.net.addr(i + 1)}:{NET_PORT}")


def net_partition(cl, load, rnd, notes):
    """A partition's leader cut off from the other two nodes by DROP rules
    in its namespace, its clients still reaching it: the other two fence
    it and lead without it; then the rules go."""
    time.sleep(rnd.uniform(1.0, 2.0))
    p = rnd.randrange(cl.shape.parts)
    victim = leaders(cl)[p]
    cl.net.cut(victim, [b for b in ids(cl) if b != victim])
    cl.cut.add(victim - 1)
    t_cut = time.time()
    try:
        new = wait_led_by_other(cl, p, victim, timeout=SESSION_S * 5 + 10)
        time.sleep(SESSION_S + rnd.uniform(1.0, 2.0))  # both sides take writes
    finally:
        cl.net.heal(victim)
        cl.cut.discard(victim - 1)
    notes.append(f"broker {victim} (led {TOPIC}-{p}) cut off from the others for "
                 f"{time.time() - t_cut:.1f}s: broker {new} led it meanwhile")
    load.refresh()
    time.sleep(2.0)
    return {"victim": victim, "tp": f"{TOPIC}-{p}", "since": t_cut, "what": "the cut"}


SCENARIOS = {  # name -> (the fault, the cluster it runs on)
    "kill9_leaders": (kill9_leaders, THREE),
    "pause_leader": (pause_leader, THREE),
    "rolling_restart": (rolling_restart, THREE),
    "divergent_tail": (divergent_tail, THREE),
    "net_partition": (net_partition, THREE),  # run in namespaces (run_in_netns)
    "controller_kill": (controller_kill, THREE),
    "reassign_under_load": (reassign_under_load, Shape(nodes=4)),
    "kill9_leaders_5": (kill9_leaders_5, Shape(nodes=5, voters=5, parts=5)),
}


def run_scenario(name, binary, tmp, seed, verbose, debug=False, net=None):
    rnd = random.Random(seed)
    fault, shape = SCENARIOS[name]
    flags = FLAGS + (("--log-level", "debug") if debug else ())
    cl = NetCluster(binary, tmp, verbose, flags, net) if net else \
        tc.Cluster(binary, tmp, verbose, flags, nodes=shape.nodes, voters=shape.voters)
    cl.shape = shape
    cl.paused, cl.cut = set(), set()
    load = None
    try:
        start_cluster(cl)
        load = Load(cl, rnd, group=0 if name in GROUP_SCENARIOS else None)  # found at the join
        load.start()
        t0 = time.monotonic()
        time.sleep(rnd.uniform(1.0, 2.0))
        notes = []
        info = fault(cl, load, rnd, notes)
        for i in range(len(cl.nodes)):  # the cure: every node running again
            if not cl.nodes[i].alive():
                cl.start(i)
        time.sleep(1.0)
        load.finish()
        loaded = time.monotonic() - t0
        if load.group is not None:
            load.check_group()
        t1 = time.monotonic()
        end = time.monotonic() + SETTLE_S
        unsettled = None
        while not settled(cl):
            if time.monotonic() > end:
                # Judged all the same: the checker says what the replicas
                # that did not catch up hold.
                unsettled = (f"the replicas did not settle within {SETTLE_S:.0f}s:\n    "
                             + describe(cl))
                break
            time.sleep(0.2)
        settle = time.monotonic() - t1
        read_back(cl, load.hist)
        load.hist.dump(os.path.join(tmp, "history.jsonl"))
        rep = history.check(load.hist)
        with open(os.path.join(tmp, "report.txt"), "w") as f:
            f.write(rep.summary(limit=1000) + "\n")
        for n in notes:
            print(f"    {n}", flush=True)
        print(f"    load {loaded:.1f}s, " + (f"settled {settle:.1f}s later" if not unsettled else
                                             unsettled), flush=True)
        print("    " + rep.summary().replace("\n", "\n    "), flush=True)
        if name in ("pause_leader", "net_partition"):
            late, lost = late_acks(load.hist, rep, info)
            print(f"    the deposed leader acknowledged {late} acks ALL/MAJORITY records after "
                  f"{info['what']}, {lost} of them lost", flush=True)
        kinds, why = finding_kinds(load.hist, rep), []
        if kinds:
            why.append("the history checker found anomalies:\n    " +
                       rep.summary().replace("\n", "\n    "))
        if unsettled:
            kinds.add("unsettled")
            why.append(unsettled)
        if name in ("pause_leader", "net_partition") and lost:
            kinds.add("deposed-ack")
            why.append(f"the deposed leader acknowledged {lost} acks ALL/MAJORITY records after "
                       f"{info['what']} that were lost")
        if name == "divergent_tail":
            gone = {x[0] for x in rep.lost_leader}
            if not all(v in gone for v in info["tail"]):
                kinds.add("tail-kept")
                why.append(f"the old leader's tail is not cut on every replica: "
                           f"{sorted(info['tail'])} not all among the losses {sorted(gone)}")
        if kinds:
            raise Findings(kinds, "\n".join(why))
        for i in range(len(cl.nodes)):
            eq(cl.nodes[i].stop(), 0, f"node {i + 1}: exit status after SIGTERM")
    except BaseException:
        if load and load.hist.events:
            load.hist.dump(os.path.join(tmp, "history.jsonl"))
        raise
    finally:
        if load:
            load.stop.set()
        cl.kill_all()


class Skip(Exception):
    pass


def run_in_netns(args, seed, keep):
    """net_partition: the namespaces are made here, and this program runs
    the scenario again inside the client's namespace (--in-netns), so that
    its gRPC channels and the nodes it starts live there.  Returns the
    child's (passed, failed).  Skip when namespaces cannot be made."""
    if os.geteuid() != 0:
        raise Skip("network namespaces need root")
    if not shutil.which("iptables"):
        raise Skip("iptables is not installed (apt-get install iptables; tools/dev deps)")
    net = tpart.Net()
    try:
        try:
            net.up()
        except RuntimeError as e:
            raise Skip(f"cannot make network namespaces here: {e}")
        cmd = ["ip", "netns", "exec", net.client, sys.executable, os.path.abspath(__file__),
               "--rmqd", os.path.abspath(args.rmqd), "--proto-dir",
               os.path.abspath(args.proto_dir), "--only", "net_partition", "--seed", str(seed),
               "--in-netns", net.tag, *(["--keep"] if keep else []),
               *(["--log-debug"] if args.log_debug else []), *(["-v"] if args.verbose else [])]
        r = subprocess.run(cmd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
                           timeout=600)
        out = r.stdout.rstrip("\n").splitlines()
        counts = out.pop() if out and out[-1].endswith(" skipped") else ""
        for line in out:
            if not line.startswith("broker_faults:"):
                print(line, flush=True)
        m = [int(w) for w in counts.split() if w.isdigit()]
        if len(m) != 3:
            print(f"FAIL net_partition: the run in namespaces ended {r.returncode} without "
                  f"its counts", flush=True)
            return 0, 1
        return m[0], m[1]
    finally:
        net.down()


def main() -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("--rmqd", required=True)
    ap.add_argument("--proto-dir", required=True)
    ap.add_argument("--only", action="append", default=[],
                    help="run only scenarios whose name contains this (repeatable)")
    ap.add_argument("--seed", type=int, help="the first round's seed (default: from the clock)")
    ap.add_argument("--seeds", type=int, default=1, help="rounds of every scenario, a seed each")
    ap.add_argument("--long", type=float, metavar="SECONDS",
                    help="rounds with new seeds until SECONDS have passed")
    ap.add_argument("--keep", action="store_true")
    ap.add_argument("--log-debug", action="store_true",
                    help="the nodes log at debug level (each replication refusal, say)")
    ap.add_argument("-v", "--verbose", action="store_true")
    ap.add_argument("--in-netns", metavar="TAG", help=argparse.SUPPRESS)  # run_in_netns's child
    args = ap.parse_args()
    tmp = tempfile.mkdtemp(prefix="rmq-faults-test-")
    binary = os.path.abspath(args.rmqd)
    seed = args.seed if args.seed is not None else int(time.time()) % 100000
    # A whole name picks that scenario only (kill9_leaders, not _5 too).
    names = [n for n in SCENARIOS if not args.only or
             any(o == n or (o not in SCENARIOS and o in n) for o in args.only)]
    passed = failed = skipped = 0
    net = tpart.Net(args.in_netns) if args.in_netns else None
    t_start = time.monotonic()
    try:
        tn.load_protos(pathlib.Path(args.proto_dir).resolve(), pathlib.Path(tmp) / "py")
        global R
        R = importlib.import_module("broker.replication_pb2")
    except Exception:  # noqa: BLE001
        traceback.print_exc()
        names = []
        failed += 1
    keep = args.keep
    rnd = 0
    while names:
        s = seed + rnd
        for name in names:
            if name == "net_partition" and not net:
                try:
                    ok_, bad = run_in_netns(args, s, keep)
                except Skip as e:
                    skipped += 1
                    print(f"SKIP net_partition: {e}", flush=True)
                    continue
                passed, failed = passed + ok_, failed + bad
                continue
            d = os.path.join(tmp, f"{name}-{s}")
            os.makedirs(d)
            print(f"{name} (seed {s})", flush=True)
            try:
                run_scenario(name, binary, d, s, args.verbose, args.log_debug, net)
                if name in XFAIL:
                    print(f"XPASS {name} (seed {s}): expected to find {sorted(XFAIL[name][0])}: "
                          f"{XFAIL[name][1]}", flush=True)
                else:
                    print(f"PASS {name} (seed {s})", flush=True)
                passed += 1
                if not keep:
                    shutil.rmtree(d, ignore_errors=True)
            except Exception as e:  # noqa: BLE001
                why = f"gRPC {e.code()}: {e.details()}" if isinstance(e, grpc.RpcError) \
                    else f"{type(e).__name__}: {e}"
                if name in XFAIL and isinstance(e, Findings) and e.kinds <= XFAIL[name][0]:
                    passed += 1
                    print(f"XFAIL {name} (seed {s}): found {sorted(e.kinds)}, expected: "
                          f"{XFAIL[name][1]}\n    {why}", flush=True)
                    if not args.keep:  # known: a CI run keeps no gigabytes of it
                        shutil.rmtree(d, ignore_errors=True)
                    continue
                keep = True
                failed += 1
                print(f"FAIL {name} (seed {s}): {why}", flush=True)
                traceback.print_exc()
                print(f"    reproduce: --only {name} --seed {s}; logs and history in {d}",
                      flush=True)
            finally:
                tn._kill_all()
        rnd += 1
        if args.long is not None:
            if time.monotonic() - t_start > args.long:
                break
        elif rnd >= args.seeds:
            break
    if keep:
        print(f"logs kept in {tmp}", flush=True)
    else:
        shutil.rmtree(tmp, ignore_errors=True)
    print(f"broker_faults: {time.monotonic() - t_start:.1f}s")
    print(f"{passed} passed, {failed} failed, {skipped} skipped")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
