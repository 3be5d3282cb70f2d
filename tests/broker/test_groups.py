#!/usr/bin/python3
# SPDX-License-Identifier: Apache-2.0
"""Consumer groups end to end, through Python grpcio.

Starts rmqd (two shards, short group timeouts so the suite stays fast) and
drives the group protocol the way a consumer library does: JoinGroup (held
until the generation forms), SyncGroup for the assignment, Heartbeat while
fetching, CommitOffsets, LeaveGroup; plus FetchOffsets, ListOffsets and
AdminService's ListGroups / DescribeGroups / DeleteGroups /
ResetGroupOffsets.  Covers: members splitting partitions with every record
consumed exactly once per generation, a member that stops heartbeating
being timed out and its partitions reassigned, commits surviving a restart
and kill -9, sticky assignment across a rebalance, refusals of stale
generations and unknown members, the offsets log staying bounded under
compaction.

    /usr/bin/python3 tests/broker/test_groups.py --rmqd build/release/rmqd \
        --proto-dir proto [--only NAME] [-v]

Reuses test_node.py's harness (Node, Client, checks); ends with
"N passed, N failed, N skipped".
"""
import argparse
import os
import pathlib
import sys
import tempfile
import threading
import time
import traceback

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import test_node as tn  # noqa: E402
from test_node import check, eq, ok, expect_code  # noqa: E402

import grpc  # noqa: E402

OK = 0
INVALID_REQUEST = 2
TOPIC_NOT_FOUND = 9
PARTITION_NOT_FOUND = 10
OFFSET_OUT_OF_RANGE = 11
INVALID_TOPIC = 14
UNKNOWN_MEMBER_ID = 26
ILLEGAL_GENERATION = 27
REBALANCE_IN_PROGRESS = 28
INCONSISTENT_GROUP_PROTOCOL = 29
GROUP_ID_NOT_FOUND = 30
INVALID_SESSION_TIMEOUT = 31
OFFSET_METADATA_TOO_LARGE = 32
GROUP_NOT_EMPTY = 54
MEMBER_ID_REQUIRED = 56
INVALID_OFFSET = 62

STATE_EMPTY, STATE_PREPARING, STATE_STABLE, STATE_DEAD = 1, 2, 4, 5

# The node's group settings (see NODE_FLAGS): joins of a group starting
# from empty wait INITIAL_DELAY for more members.
NODE_FLAGS = ["--group-min-session-timeout", "200ms", "--group-initial-rebalance-delay", "300ms",
              "--offsets-partitions", "4", "--offsets-segment-bytes", "64KiB"]

CS = "/rustmq.client.ConsumerService/"
AS = "/rustmq.controller.AdminService/"


def C():
    return tn.C


def A():
    return tn.A


class Member:
    """One consumer of a group, speaking the protocol by hand."""

    def __init__(self, client, group, topics, assignors=("range",), session_ms=3000,
                 rebalance_ms=None, client_id="py", instance_id=""):
        self.c = client
        self.group = group
        self.topics = list(topics)
        self.assignors = list(assignors)
        self.session_ms = session_ms
        self.rebalance_ms = rebalance_ms or session_ms
        self.client_id = client_id
        self.instance_id = instance_id
        self.member_id = ""
        self.generation = -1
        self.assignment = []
        self.join_resp = None

    def join(self, timeout=30, raw=False):
        """JoinGroup; a dynamic member's first join answers MEMBER_ID_REQUIRED
        with its id, and (unless raw) joins again with it, as clients do."""
        q = C().JoinGroupRequest(version=tn.V(), client_id=self.client_id, group_id=self.group,
                                 member_id=self.member_id, group_instance_id=self.instance_id,
                                 topics=self.topics, assignors=self.assignors)
        q.session_timeout.CopyFrom(tn.ms_duration(self.session_ms))
        q.rebalance_timeout.CopyFrom(tn.ms_duration(self.rebalance_ms))
        r = self.c.unary(CS + "JoinGroup", q, C().JoinGroupResponse, timeout=timeout)
        if r.error_code == MEMBER_ID_REQUIRED and not raw:
            check(r.member_id and r.generation_id == -1, f"MEMBER_ID_REQUIRED answer: {r}")
            self.member_id = q.member_id = r.member_id
            r = self.c.unary(CS + "JoinGroup", q, C().JoinGroupResponse, timeout=timeout)
        self.join_resp = r
        if r.error_code == OK:
            self.member_id = r.member_id
            self.generation = r.generation_id
        return r

    def sync(self):
        r = self.c.unary(CS + "SyncGroup",
                         C().SyncGroupRequest(version=tn.V(), group_id=self.group,
                                              generation_id=self.generation,
                                              member_id=self.member_id),
                         C().SyncGroupResponse)
        if r.error_code == OK:
            self.assignment = sorted((tp.topic, tp.partition) for tp in r.assignment)
        return r

    def join_and_sync(self):
        ok(self.join(), f"JoinGroup of {self.client_id}")
        ok(self.sync(), f"SyncGroup of {self.client_id}")
        return self.assignment

    def heartbeat(self, generation=None, member_id=None):
        return self.c.unary(CS + "Heartbeat",
                            C().GroupHeartbeatRequest(
                                version=tn.V(), group_id=self.group,
                                generation_id=self.generation if generation is None else generation,
                                member_id=self.member_id if member_id is None else member_id),
                            C().GroupHeartbeatResponse)

    def commit(self, offsets, generation=None, member_id=None, metadata=""):
        q = C().CommitOffsetsRequest(version=tn.V(), group_id=self.group,
                                     generation_id=self.generation if generation is None else generation,
                                     member_id=self.member_id if member_id is None else member_id)
        for (t, p), off in sorted(offsets.items()):
            q.partitions.add(topic_partition=tn.T.TopicPartition(topic=t, partition=p), offset=off,
                             metadata=metadata)
        return self.c.unary(CS + "CommitOffsets", q, C().CommitOffsetsResponse)

    def leave(self):
        return self.c.unary(CS + "LeaveGroup",
                            C().LeaveGroupRequest(version=tn.V(), group_id=self.group,
                                                  member_id=self.member_id),
                            C().LeaveGroupResponse)


def join_all(members, timeout=30):
    """JoinGroup of every member at once (each blocks until the generation
    forms); then SyncGroup of each."""
    errs = []

    def run(m):
        try:
            r = m.join(timeout)
            if r.error_code != OK:
                errs.append(f"{m.client_id}: {tn.ecname(r.error_code)} {r.error_message}")
        except Exception as e:  # noqa: BLE001
            errs.append(f"{m.client_id}: {e}")
    ts = [threading.Thread(target=run, args=(m,)) for m in members]
    for t in ts:
        t.start()
    for t in ts:
        t.join()
    check(not errs, f"joins failed: {errs}")
    gens = {m.generation for m in members}
    eq(len(gens), 1, f"one generation for all ({gens})")
    for m in members:
        ok(m.sync(), f"SyncGroup of {m.client_id}")
    return gens.pop()


def fetch_offsets(c, group, parts=()):
    q = C().FetchOffsetsRequest(version=tn.V(), group_id=group)
    for t, p in parts:
        q.partitions.add(topic=t, partition=p)
    r = ok(c.unary(CS + "FetchOffsets", q, C().FetchOffsetsResponse), "FetchOffsets")
    return {(x.topic_partition.topic, x.topic_partition.partition):
            (x.offset if x.HasField("offset") else None) for x in r.partitions}, r


def produce_n(c, topic, parts, n, tag):
    for p in range(parts):
        recs = [tn.T.Record(value=f"{tag}-{p}-{i}".encode()) for i in range(n)]
        ok(c.produce(topic, p, recs), f"produce {topic}-{p}")


def consume(c, topic, part, start):
    """Every record value from start to the high watermark."""
    out = []
    for b, _raw in c.fetch_all(topic, part, start):
        for i, r in enumerate(b.records):
            if b.base_offset + i >= start:
                out.append((b.base_offset + i, r.value.decode()))
    return out


def assert_partition(members, topic, nparts):
    got = sorted(tp for m in members for tp in m.assignment)
    eq(got, [(topic, p) for p in range(nparts)], "every partition assigned exactly once")


# ---------------------------------------------------------------------------

TESTS = []


def test(fn):
    TESTS.append(fn)
    return fn


@test
def members_split_partitions_exactly_once(ctx):
    """Three members, then a fourth; each generation's members consume from
    the committed offsets, and together see every record exactly once."""
    with ctx.client() as c:
        c.create_topic("gs-t", 6)
        produce_n(c, "gs-t", 6, 20, "a")
        ms = [Member(c, "gs", ["gs-t"], ["roundrobin"], client_id=f"m{i}") for i in range(3)]
        gen1 = join_all(ms)
        assert_partition(ms, "gs-t", 6)
        for m in ms:
            eq(len(m.assignment), 2, f"{m.client_id} gets 2 of 6 partitions (roundrobin)")
            eq(m.join_resp.assignor, "roundrobin", "assignor")
            eq(len(m.join_resp.members), 3, "members in the join answer")
        seen = []

        def consume_and_commit(members):
            committed, _ = fetch_offsets(c, "gs")
            for m in members:
                offs = {}
                for t, p in m.assignment:
                    start = committed.get((t, p)) or 0
                    got = consume(c, t, p, start)
                    seen.extend(v for _, v in got)
                    offs[(t, p)] = got[-1][0] + 1 if got else start
                r = ok(m.commit(offs), f"commit of {m.client_id}")
                for pr in r.partitions:
                    ok(pr, f"commit of {pr.topic_partition}")
                ok(m.heartbeat(), "heartbeat")

        consume_and_commit(ms)
        eq(len(seen), 120, "records consumed in generation 1")
        produce_n(c, "gs-t", 6, 10, "b")
        # A fourth member: the others learn of the rebalance by heartbeat.
        m4 = Member(c, "gs", ["gs-t"], ["roundrobin"], client_id="m3")
        box = {}
        t = threading.Thread(target=lambda: box.setdefault("r", m4.join()))
        t.start()
        tn.wait_until(lambda: ms[0].heartbeat().error_code == REBALANCE_IN_PROGRESS, 10,
                      "heartbeats say REBALANCE_IN_PROGRESS")
        hb = ms[1].heartbeat()
        check(hb.rebalance_in_progress, "rebalance_in_progress set")
        # Commits of the current generation are still accepted while rebalancing.
        ok(ms[2].commit({}), "commit during the rebalance")
        join_all(ms)
        t.join()
        ok(box["r"], "fourth member's join")
        ok(m4.sync(), "sync")
        all4 = ms + [m4]
        check(len({m.generation for m in all4}) == 1 and ms[0].generation == gen1 + 1,
              f"generation {gen1} -> {[m.generation for m in all4]}")
        assert_partition(all4, "gs-t", 6)
        consume_and_commit(all4)
        eq(len(seen), 180, "records consumed in both generations")
        eq(len(set(seen)), 180, "no record consumed twice")
        want = {f"{tag}-{p}-{i}" for tag, n in (("a", 20), ("b", 10)) for p in range(6)
                for i in range(n)}
        eq(set(seen), want, "every record consumed")
        # Leaving: the remaining members rebalance to cover everything.
        ok(m4.leave(), "LeaveGroup")
        tn.wait_until(lambda: ms[0].heartbeat().error_code == REBALANCE_IN_PROGRESS, 10,
                      "rebalance after a leave")
        join_all(ms)
        assert_partition(ms, "gs-t", 6)
        for m in ms:
            ok(m.leave(), "leave")


@test
def dead_member_times_out_and_is_reassigned(ctx):
    with ctx.client() as c:
        c.create_topic("gt-t", 4)
        a = Member(c, "gt", ["gt-t"], session_ms=600, client_id="alive")
        b = Member(c, "gt", ["gt-t"], session_ms=600, client_id="dead")
        join_all([a, b])
        eq(len(a.assignment), 2, "two each")
        # b stops heartbeating (as if killed); a keeps going.
        t0 = time.monotonic()
        while True:
            r = a.heartbeat()
            if r.error_code == REBALANCE_IN_PROGRESS:
                break
            ok(r, "heartbeat")
            check(time.monotonic() - t0 < 10, "the dead member was never timed out")
            time.sleep(0.1)
        waited = time.monotonic() - t0
        check(waited >= 0.4, f"removed after {waited:.2f}s, before its 600 ms session timeout")
        ok(a.join(), "rejoin")
        ok(a.sync(), "sync")
        eq(a.assignment, [("gt-t", p) for p in range(4)], "the survivor owns every partition")
        expect_code(b.heartbeat(), UNKNOWN_MEMBER_ID, "the dead member's late heartbeat")
        expect_code(b.sync(), UNKNOWN_MEMBER_ID, "the dead member's late sync")
        ok(a.leave(), "leave")


@test
def sticky_keeps_assignments(ctx):
    with ctx.client() as c:
        c.create_topic("gk-t", 9)
        ms = [Member(c, "gk", ["gk-t"], ["sticky"], client_id=f"s{i}") for i in range(3)]
        join_all(ms)
        for m in ms:
            eq(len(m.assignment), 3, "balanced")
        before = {m.client_id: set(m.assignment) for m in ms}
        ok(ms[2].leave(), "leave")
        rest = ms[:2]
        tn.wait_until(lambda: rest[0].heartbeat().error_code == REBALANCE_IN_PROGRESS, 10,
                      "rebalance")
        join_all(rest)
        assert_partition(rest, "gk-t", 9)
        for m in rest:
            check(before[m.client_id] <= set(m.assignment),
                  f"{m.client_id} kept {sorted(before[m.client_id])}, now {m.assignment}")
            check(len(m.assignment) in (4, 5), f"balanced: {len(m.assignment)}")
        # A newcomer takes partitions from both without moving the rest.
        before = {m.client_id: set(m.assignment) for m in rest}
        n = Member(c, "gk", ["gk-t"], ["sticky"], client_id="s9")
        box = {}
        t = threading.Thread(target=lambda: box.setdefault("r", n.join()))
        t.start()
        tn.wait_until(lambda: rest[0].heartbeat().error_code == REBALANCE_IN_PROGRESS, 10,
                      "rebalance")
        join_all(rest)
        t.join()
        ok(box["r"], "join")
        ok(n.sync(), "sync")
        assert_partition(rest + [n], "gk-t", 9)
        for m in rest:
            check(set(m.assignment) <= before[m.client_id], "a member only gave partitions away")
        eq(sorted(len(m.assignment) for m in rest + [n]), [3, 3, 3], "balanced again")
        for m in rest + [n]:
            ok(m.leave(), "leave")


@test
def member_ids_and_static_members(ctx):
    """A dynamic member's first join gets MEMBER_ID_REQUIRED and its id; only
    that id joins.  A static member (group_instance_id) joins at once and,
    coming back with an empty member_id, gets a new id and its assignment
    without a rebalance; its old id is fenced."""
    with ctx.client() as c:
        c.create_topic("gi-t", 4)
        d = Member(c, "gi", ["gi-t"], client_id="dyn")
        r = d.join(raw=True)
        expect_code(r, MEMBER_ID_REQUIRED, "first join of a dynamic member")
        eq(r.generation_id, -1, "no generation with MEMBER_ID_REQUIRED")
        check(r.member_id.startswith("dyn-"), f"member id {r.member_id!r}")
        other = Member(c, "gi", ["gi-t"], client_id="x")
        other.member_id = r.member_id + "x"
        expect_code(other.join(), UNKNOWN_MEMBER_ID, "an id the coordinator never gave")
        s1 = Member(c, "gi", ["gi-t"], client_id="stat", instance_id="host-1", session_ms=3000)
        box = {}
        t = threading.Thread(target=lambda: box.setdefault("r", s1.join(raw=True)))
        t.start()
        d.member_id = r.member_id
        ok(d.join(), "join with the given id")
        t.join()
        ok(box["r"], "a static member joins without MEMBER_ID_REQUIRED")
        ok(d.sync(), "sync")
        ok(s1.sync(), "sync")
        gen, before = s1.generation, s1.assignment
        old_id = s1.member_id
        # The static instance restarts: same instance id, empty member id.
        s2 = Member(c, "gi", ["gi-t"], client_id="stat", instance_id="host-1", session_ms=3000)
        ok(s2.join(raw=True), "the static member back")
        check(s2.member_id != old_id, "a new member id")
        eq(s2.generation, gen, "no rebalance: same generation")
        ok(s2.sync(), "sync")
        eq(s2.assignment, before, "its previous assignment")
        ok(d.heartbeat(), "the other member saw no rebalance")
        expect_code(s1.heartbeat(), UNKNOWN_MEMBER_ID, "the old incarnation is fenced")
        ok(s2.leave(), "leave")
        ok(d.leave(), "leave")


@test
def range_assignor_shape(ctx):
    with ctx.client() as c:
        c.create_topic("gr-a", 3)
        c.create_topic("gr-b", 3)
        ms = [Member(c, "gr", ["gr-a", "gr-b"], ["range", "roundrobin"], client_id=f"r{i}")
              for i in range(2)]
        join_all(ms)
        eq(ms[0].join_resp.assignor, "range", "the first choice both list")
        by_id = sorted(ms, key=lambda m: m.member_id)
        eq(by_id[0].assignment, [("gr-a", 0), ("gr-a", 1), ("gr-b", 0), ("gr-b", 1)],
           "range: the first member takes the bigger run of each topic")
        eq(by_id[1].assignment, [("gr-a", 2), ("gr-b", 2)], "range: the rest")
        for m in ms:
            ok(m.leave(), "leave")


@test
def refusals(ctx):
    with ctx.client() as c:
        c.create_topic("gx-t", 2)
        produce_n(c, "gx-t", 2, 5, "x")
        m = Member(c, "gx", ["gx-t"], client_id="x")
        m.join_and_sync()
        expect_code(m.heartbeat(generation=m.generation + 1), ILLEGAL_GENERATION, "heartbeat")
        expect_code(m.heartbeat(member_id="nobody"), UNKNOWN_MEMBER_ID, "heartbeat")
        r = c.unary(CS + "SyncGroup", C().SyncGroupRequest(version=tn.V(), group_id="gx",
                                                            generation_id=m.generation - 1,
                                                            member_id=m.member_id),
                    C().SyncGroupResponse)
        expect_code(r, ILLEGAL_GENERATION, "sync with an old generation")
        expect_code(m.commit({("gx-t", 0): 1}, generation=m.generation + 7), ILLEGAL_GENERATION,
                    "commit")
        expect_code(m.commit({("gx-t", 0): 1}, member_id="nobody"), UNKNOWN_MEMBER_ID, "commit")
        expect_code(m.commit({("gx-t", 0): 1}, generation=-1, member_id=""), ILLEGAL_GENERATION,
                    "an unmanaged commit to a group with members")
        r = ok(m.commit({("gx-t", 0): 99, ("gx-t", 1): 5, ("nope", 0): 1, ("gx-t", 7): 0}),
               "commit")
        codes = {(p.topic_partition.topic, p.topic_partition.partition): p.error_code
                 for p in r.partitions}
        eq(codes, {("gx-t", 0): INVALID_OFFSET, ("gx-t", 1): OK, ("nope", 0): TOPIC_NOT_FOUND,
                   ("gx-t", 7): PARTITION_NOT_FOUND}, "per-partition commit codes")
        r = ok(m.commit({("gx-t", 1): 2}, metadata="m" * 5000), "commit")
        expect_code(r.partitions[0], OFFSET_METADATA_TOO_LARGE, "metadata above 4 KiB")
        got, _ = fetch_offsets(c, "gx", [("gx-t", 0), ("gx-t", 1)])
        eq(got, {("gx-t", 0): None, ("gx-t", 1): 5}, "only the valid commit stored")
        expect_code(Member(c, "gx", ["gx-t"], session_ms=50).join(), INVALID_SESSION_TIMEOUT,
                    "a session timeout below the minimum")
        expect_code(Member(c, "gx", ["gx-t"], ["roundrobin"]).join(), INCONSISTENT_GROUP_PROTOCOL,
                    "an assignor the group's member does not list")
        expect_code(Member(c, "gx", ["gx-t"], ["magic"]).join(), INCONSISTENT_GROUP_PROTOCOL,
                    "no supported assignor")
        expect_code(Member(c, "", ["gx-t"]).join(), INVALID_REQUEST, "empty group id")
        expect_code(Member(c, "gx", []).join(), INVALID_REQUEST, "no topics")
        stale = Member(c, "gx", ["gx-t"])
        stale.member_id = "gone-1234"
        expect_code(stale.join(), UNKNOWN_MEMBER_ID, "a join with an unknown member id")
        tn.expect_status(lambda: c.unary_raw(CS + "JoinGroup", b"\x1a\xff\xff"),
                         grpc.StatusCode.INVALID_ARGUMENT, "malformed JoinGroupRequest")
        ok(m.leave(), "leave")
        expect_code(m.leave(), UNKNOWN_MEMBER_ID, "leaving twice")
        # Reserved name.
        r = c.create_topics([("__consumer_offsets", 1)])
        expect_code(r.topics[0], INVALID_TOPIC, "creating __consumer_offsets")


@test
def commits_survive_restart_and_kill(ctx):
    with ctx.client() as c:
        c.create_topic("gd-t", 3)
        produce_n(c, "gd-t", 3, 10, "d")
        m = Member(c, "gd", ["gd-t"], client_id="d")
        m.join_and_sync()
        gen = m.generation
        ok(m.commit({("gd-t", 0): 3, ("gd-t", 1): 7}, metadata="hello"), "commit")
        ok(m.commit({("gd-t", 1): 8, ("gd-t", 2): 10}), "commit")
    ctx.node.stop()
    ctx.node.start(NODE_FLAGS)
    with ctx.client() as c:
        got, r = fetch_offsets(c, "gd")
        eq(got, {("gd-t", 0): 3, ("gd-t", 1): 8, ("gd-t", 2): 10}, "offsets after a restart")
        md = {(x.topic_partition.topic, x.topic_partition.partition): x.metadata for x in r.partitions}
        eq(md[("gd-t", 0)], "hello", "metadata after a restart")
        m = Member(c, "gd", ["gd-t"], client_id="d")
        expect_code(Member(c, "gd", ["gd-t"], client_id="d").heartbeat(generation=gen,
                                                                          member_id="d-x"),
                    UNKNOWN_MEMBER_ID, "members do not survive a restart")
        m.join_and_sync()
        check(m.generation > gen, f"generation continues after a restart ({gen} -> {m.generation})")
        # kill -9 right after acknowledged commits.
        for i in range(50):
            ok(m.commit({("gd-t", 0): i % 10, ("gd-t", 2): 10 - i % 10}), "commit")
        last = {("gd-t", 0): 49 % 10, ("gd-t", 1): 8, ("gd-t", 2): 10 - 49 % 10}
    ctx.node.kill()
    ctx.node.start(NODE_FLAGS)
    with ctx.client() as c:
        got, _ = fetch_offsets(c, "gd")
        eq(got, last, "acknowledged commits after kill -9")


@test
def offsets_log_is_compacted(ctx):
    """5000 commits rewriting the same offsets: the log stays near its live
    size (64 KiB segments here), and a restart still finds the last ones."""
    def olog_bytes():
        total = 0
        for d in pathlib.Path(ctx.node.data_dir).glob("__consumer_offsets-*"):
            for f in d.glob("*.log"):
                total += f.stat().st_blocks * 512
        return total

    with ctx.client() as c:
        c.create_topic("gc-t", 3)
        produce_n(c, "gc-t", 3, 100, "c")
        m = Member(c, "gc", ["gc-t"], client_id="c")
        m.join_and_sync()
        for i in range(5000):
            r = m.commit({("gc-t", p): (i + p) % 100 for p in range(3)}, metadata="x" * 40)
            if i % 500 == 0:
                ok(r, "commit")
        last = {("gc-t", p): (4999 + p) % 100 for p in range(3)}
        got, _ = fetch_offsets(c, "gc")
        eq({k: v for k, v in got.items() if k[0] == "gc-t"}, last, "last commits")
        size = olog_bytes()
        # 5000 x 3 records of ~90 bytes = ~1.3 MB uncompacted.
        check(size < 700_000, f"the offsets logs take {size} bytes after 15000 commits "
              f"(not compacted?)")
        ok(m.leave(), "leave")
    ctx.node.stop()
    ctx.node.start(NODE_FLAGS)
    with ctx.client() as c:
        got, _ = fetch_offsets(c, "gc")
        eq(got, last, "last commits after compaction and a restart")


@test
def admin_groups(ctx):
    with ctx.client() as c:
        c.create_topic("ga-t", 2)
        produce_n(c, "ga-t", 2, 10, "g")
        m = Member(c, "ga", ["ga-t"], client_id="adm")
        m.join_and_sync()
        ok(m.commit({("ga-t", 0): 4}), "commit")
        r = ok(c.unary(AS + "ListGroups", A().ListGroupsRequest(version=tn.V()),
                       A().ListGroupsResponse), "ListGroups")
        ids = [g.group_id for g in r.groups]
        eq(ids, sorted(ids), "sorted by id")
        check("ga" in ids, f"ga listed: {ids}")
        eq([g.state for g in r.groups if g.group_id == "ga"], [STATE_STABLE], "state")
        r = ok(c.unary(AS + "ListGroups", A().ListGroupsRequest(version=tn.V(),
                                                               states=[STATE_EMPTY]),
                       A().ListGroupsResponse), "ListGroups by state")
        check("ga" not in [g.group_id for g in r.groups], "state filter")
        r = ok(c.unary(AS + "DescribeGroups",
                       A().DescribeGroupsRequest(version=tn.V(), group_ids=["ga", "nope"],
                                                 include_offsets=True),
                       A().DescribeGroupsResponse), "DescribeGroups")
        d = ok(r.groups[0], "ga")
        eq((d.state, d.protocol, d.generation_id, len(d.members)), (STATE_STABLE, "range",
                                                                   m.generation, 1), "description")
        eq(d.members[0].member_id, m.member_id, "member")
        eq(d.members[0].client_host, "127.0.0.1", "client host")
        eq(sorted((tp.topic, tp.partition) for tp in d.members[0].assigned_partitions),
           [("ga-t", 0), ("ga-t", 1)], "assigned partitions")
        eq([(o.topic_partition.partition, o.committed_offset, o.log_end_offset, o.lag)
            for o in d.offsets], [(0, 4, 10, 6)], "offsets and lag")
        expect_code(r.groups[1], GROUP_ID_NOT_FOUND, "unknown group")
        # Reset and delete need an empty group.
        rq = A().ResetGroupOffsetsRequest(version=tn.V(), group_id="ga")
        rq.partitions.add(topic_partition=tn.T.TopicPartition(topic="ga-t", partition=0),
                          to_earliest=True)
        expect_code(c.unary(AS + "ResetGroupOffsets", rq, A().ResetGroupOffsetsResponse),
                    GROUP_NOT_EMPTY, "reset with members")
        r = ok(c.unary(AS + "DeleteGroups", A().DeleteGroupsRequest(version=tn.V(),
                                                                   group_ids=["ga"]),
                       A().DeleteGroupsResponse), "DeleteGroups")
        expect_code(r.groups[0], GROUP_NOT_EMPTY, "delete with members")
        ok(m.leave(), "leave")
        rq = A().ResetGroupOffsetsRequest(version=tn.V(), group_id="ga")
        rq.partitions.add(topic_partition=tn.T.TopicPartition(topic="ga-t", partition=0),
                          to_latest=True)
        rq.partitions.add(topic_partition=tn.T.TopicPartition(topic="ga-t", partition=1),
                          to_offset=3)
        rq.partitions.add(topic_partition=tn.T.TopicPartition(topic="ga-t", partition=1),
                          to_offset=11)
        rq.partitions.add(topic_partition=tn.T.TopicPartition(topic="ga-t", partition=0))
        later = rq.partitions.add(topic_partition=tn.T.TopicPartition(topic="ga-t", partition=0))
        later.to_timestamp.CopyFrom(tn.ts(int(time.time() * 1000) + 3_600_000))
        rq.dry_run = True
        r = ok(c.unary(AS + "ResetGroupOffsets", rq, A().ResetGroupOffsetsResponse), "dry run")
        eq([(p.error_code, p.previous_offset, p.new_offset) for p in r.partitions],
           [(OK, 4, 10), (OK, -1, 3), (OFFSET_OUT_OF_RANGE, -1, 0), (INVALID_REQUEST, 4, 0),
            (OK, 4, 10)], "reset results")
        got, _ = fetch_offsets(c, "ga")
        eq(got, {("ga-t", 0): 4}, "a dry run commits nothing")
        rq.dry_run = False
        ok(c.unary(AS + "ResetGroupOffsets", rq, A().ResetGroupOffsetsResponse), "reset")
        got, _ = fetch_offsets(c, "ga")
        eq(got, {("ga-t", 0): 10, ("ga-t", 1): 3}, "reset offsets")
        rq = A().ResetGroupOffsetsRequest(version=tn.V(), group_id="ga")
        rq.partitions.add(topic_partition=tn.T.TopicPartition(topic="ga-t", partition=1),
                          to_earliest=True)
        ok(c.unary(AS + "ResetGroupOffsets", rq, A().ResetGroupOffsetsResponse), "reset")
        got, _ = fetch_offsets(c, "ga")
        eq(got[("ga-t", 1)], 0, "to earliest")
        r = ok(c.unary(AS + "DeleteGroups", A().DeleteGroupsRequest(version=tn.V(),
                                                                   group_ids=["ga", "zz"]),
                       A().DeleteGroupsResponse), "DeleteGroups")
        eq([g.error_code for g in r.groups], [OK, GROUP_ID_NOT_FOUND], "delete results")
        got, _ = fetch_offsets(c, "ga")
        eq(got, {}, "no offsets after delete")
        r = ok(c.unary(AS + "DescribeGroups", A().DescribeGroupsRequest(version=tn.V(),
                                                                       group_ids=["ga"]),
                       A().DescribeGroupsResponse), "DescribeGroups")
        expect_code(r.groups[0], GROUP_ID_NOT_FOUND, "deleted group")
    # The deletion is durable.
    ctx.node.stop()
    ctx.node.start(NODE_FLAGS)
    with ctx.client() as c:
        got, _ = fetch_offsets(c, "ga")
        eq(got, {}, "no offsets after delete and restart")


@test
def topic_changes_rebalance(ctx):
    """A stable group rebalances when a topic it subscribes to appears or goes."""
    with ctx.client() as c:
        c.create_topic("gm-a", 2)
        m = Member(c, "gm", ["gm-a", "gm-b"], client_id="m")
        m.join_and_sync()
        eq(m.assignment, [("gm-a", 0), ("gm-a", 1)], "only the existing topic is assigned")
        c.create_topic("gm-b", 2)
        tn.wait_until(lambda: m.heartbeat().error_code == REBALANCE_IN_PROGRESS, 10,
                      "rebalance after a subscribed topic was created")
        m.join_and_sync()
        eq(m.assignment, [("gm-a", 0), ("gm-a", 1), ("gm-b", 0), ("gm-b", 1)], "new topic assigned")
        r = c.unary(AS + "DeleteTopics", A().DeleteTopicsRequest(version=tn.V(), names=["gm-a"]),
                    A().DeleteTopicsResponse)
        ok(r, "DeleteTopics")
        tn.wait_until(lambda: m.heartbeat().error_code == REBALANCE_IN_PROGRESS, 10,
                      "rebalance after a subscribed topic was deleted")
        m.join_and_sync()
        eq(m.assignment, [("gm-b", 0), ("gm-b", 1)], "deleted topic no longer assigned")
        ok(m.leave(), "leave")


@test
def offsets_of_empty_groups_expire(ctx):
    """--offsets-retention: an empty group's offsets go once it has been
    empty (and uncommitted) that long; a group with members keeps them."""
    node = tn.Node(ctx.node.binary, os.path.join(ctx.tmp, "expiry-data"), ctx.tmp)
    node.start(NODE_FLAGS + ["--offsets-retention", "1s", "--retention-check", "200ms"])
    try:
        with tn.Client(node.addr) as c:
            c.create_topic("ge-t", 1)
            produce_n(c, "ge-t", 1, 5, "e")
            idle = Member(c, "ge-idle", ["ge-t"])
            ok(idle.commit({("ge-t", 0): 3}, generation=-1, member_id=""), "unmanaged commit")
            live = Member(c, "ge-live", ["ge-t"], session_ms=1000)
            live.join_and_sync()
            ok(live.commit({("ge-t", 0): 2}), "member commit")
            end = time.monotonic() + 2.5
            while time.monotonic() < end:
                ok(live.heartbeat(), "heartbeat")
                time.sleep(0.2)
            got, _ = fetch_offsets(c, "ge-idle")
            eq(got, {}, "the empty group's offsets expired")
            got, _ = fetch_offsets(c, "ge-live")
            eq(got, {("ge-t", 0): 2}, "the live group's offsets stay")
            r = ok(c.unary(AS + "DescribeGroups", A().DescribeGroupsRequest(
                version=tn.V(), group_ids=["ge-idle"]), A().DescribeGroupsResponse), "describe")
            expect_code(r.groups[0], GROUP_ID_NOT_FOUND, "the expired group is gone")
            ok(live.leave(), "leave")
        eq(node.stop(), 0, "exit status")
    finally:
        node.kill()


@test
def offsets_partitions_fixed(ctx):
    """Restarting with another --offsets-partitions is refused (groups would
    move and lose their offsets), with a message saying so."""
    ctx.node.stop()
    try:
        ctx.node.start(["--offsets-partitions", "7"] + NODE_FLAGS[:-4])
        raise AssertionError("rmqd started with a different --offsets-partitions")
    except AssertionError as e:
        check("offsets-partitions" in str(e), f"no clear error: {e}")
    ctx.node.kill()
    ctx.node.start(NODE_FLAGS)


def main() -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("--rmqd", required=True)
    ap.add_argument("--proto-dir", required=True)
    ap.add_argument("--only", action="append", default=[])
    ap.add_argument("--keep", action="store_true")
    ap.add_argument("-v", "--verbose", action="store_true")
    args = ap.parse_args()
    tmp = tempfile.mkdtemp(prefix="rmq-groups-test-")
    passed = failed = skipped = 0
    node = None
    try:
        tn.load_protos(pathlib.Path(args.proto_dir).resolve(), pathlib.Path(tmp) / "py")
        node = tn.Node(os.path.abspath(args.rmqd), os.path.join(tmp, "data"), tmp, args.verbose)
        node.start(NODE_FLAGS)
        ctx = tn.Ctx(args, node, tmp)
        for fn in [t for t in TESTS if not args.only or any(o in t.__name__ for o in args.only)]:
            if not node.alive():
                node.kill()
                node.start(NODE_FLAGS)
            t0 = time.monotonic()
            try:
                fn(ctx)
                passed += 1
                print(f"PASS {fn.__name__} ({time.monotonic() - t0:.2f}s)", flush=True)
            except tn.Skip as e:
                skipped += 1
                print(f"SKIP {fn.__name__}: {e}", flush=True)
            except Exception as e:  # noqa: BLE001
                failed += 1
                why = f"gRPC {e.code()}: {e.details()}" if isinstance(e, grpc.RpcError) \
                    else f"{type(e).__name__}: {e}"
                print(f"FAIL {fn.__name__} ({time.monotonic() - t0:.2f}s): {why}", flush=True)
                traceback.print_exc()
                if not node.alive():
                    print("  rmqd died:\n" + node.tail(), flush=True)
        if node.alive():
            rc = node.stop()
            if rc == 0:
                passed += 1
                print("PASS sigterm_exit_0", flush=True)
            else:
                failed += 1
                print(f"FAIL sigterm_exit_0: exit status {rc}\n{node.tail()}", flush=True)
    except Exception as e:  # noqa: BLE001
        failed += 1
        print(f"FAIL setup: {type(e).__name__}: {e}", flush=True)
        traceback.print_exc()
    finally:
        if node is not None:
            node.kill()
        if failed == 0 and not args.keep:
            import shutil
            shutil.rmtree(tmp, ignore_errors=True)
        else:
            print(f"logs and data kept in {tmp}", flush=True)
    print(f"{passed} passed, {failed} failed, {skipped} skipped", flush=True)
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
