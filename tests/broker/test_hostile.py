#!/usr/bin/python3
# SPDX-License-Identifier: Apache-2.0
"""A node under hostile clients, through Python grpcio.

Each test starts its own rmqd (one or two shards) and sends what a broken
or malicious client sends: requests naming one partition thousands of times
or naming 100,000 partitions, FetchBatches that put more work on one shard
than its queues hold, ProduceBatches of 10,000 parts, thousands of long
polls reset by the client.  Every such request must be answered (a result
or a clear error) and the node must go on serving an ordinary client; the
time each answer took is printed, not asserted (timings belong in bench/).

    /usr/bin/python3 tests/broker/test_hostile.py --rmqd build/release/rmqd \
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

INVALID_REQUEST = 2
TOPIC_NOT_FOUND = 9

CS = "/rustmq.client.ConsumerService/"
PS = "/rustmq.client.ProducerService/"

# Generous: a hung node is what these catch, not a slow one.
DEADLINE = float(os.environ.get("RMQ_HOSTILE_DEADLINE", "60"))


def T():
    return tn.T


def C():
    return tn.C


def P():
    return tn.P


def timed(what, fn):
    t0 = time.monotonic()
    r = fn()
    print(f"    {what}: answered in {(time.monotonic() - t0) * 1000:.0f} ms", flush=True)
    return r


def still_serves(c, topic, what):
    """The node answers an ordinary produce and fetch after `what`."""
    r = ok(c.produce(topic, 0, tn.make_records(1, "after")), f"produce after {what}")
    resp, _ = c.fetch([(topic, 0, r.offset)], timeout=DEADLINE)
    check(ok(resp.partitions[0], f"fetch after {what}").batches, f"fetch after {what}: no batch")


def fetch_req(parts, max_wait_ms=0, min_bytes=0):
    req = C().FetchRequest(version=tn.V(), client_id="hostile", replica_id=0xFFFFFFFF,
                           min_bytes=min_bytes)
    if max_wait_ms:
        req.max_wait.CopyFrom(tn.ms_duration(max_wait_ms))
    for topic, p, off in parts:
        req.partitions.add(topic_partition=T().TopicPartition(topic=topic, partition=p),
                           fetch_offset=off)
    return req


def list_offsets_req(parts):
    req = C().ListOffsetsRequest(version=tn.V())
    for topic, p in parts:
        req.partitions.add(topic_partition=T().TopicPartition(topic=topic, partition=p),
                           spec=C().OFFSET_SPEC_LATEST)
    return req


def batch_of(records):
    body = tn.records_bytes_of_records(records)
    return T().RecordBatch(magic=2, records=records, record_count=len(records),
                           crc32=tn.crc32c(body))


# ---- the tests -------------------------------------------------------------------------

TESTS = []


def test(cores, extra=()):
    def deco(fn):
        fn.cores = cores
        fn.extra = list(extra)
        TESTS.append(fn)
        return fn
    return deco


def _repeated_partition(ctx, cores):
    with ctx.client() as c:
        c.create_topic("rep", 2)
        ok(c.produce("rep", 0, tn.make_records(3, "rep")), "produce")
        # proto/: each partition appears at most once.  A Fetch naming one
        # partition 9,000 times hung the node for good (its shard spun
        # waiting for room in its own queue).
        r = timed("Fetch naming rep-0 9,000 times",
                  lambda: c.unary(CS + "Fetch", fetch_req([("rep", 0, 0)] * 9000), C().FetchResponse,
                                  timeout=DEADLINE))
        expect_code(r, INVALID_REQUEST, "Fetch with a repeated partition")
        check("rep-0" in r.error_message and "twice" in r.error_message,
              f"the error names the repeated partition: {r.error_message!r}")
        r = c.unary(CS + "ListOffsets", list_offsets_req([("rep", 1), ("rep", 0), ("rep", 1)]),
                    C().ListOffsetsResponse, timeout=DEADLINE)
        expect_code(r, INVALID_REQUEST, "ListOffsets with a repeated partition")
        check("rep-1" in r.error_message, f"names rep-1: {r.error_message!r}")
        req = C().SubscribeRequest(version=tn.V())
        for _ in range(2):
            req.partitions.add(topic_partition=T().TopicPartition(topic="rep", partition=0), offset=0)
        first = next(iter(c.server_stream(CS + "Subscribe", req, C().FetchResponse, timeout=DEADLINE)))
        expect_code(first, INVALID_REQUEST, "Subscribe with a repeated partition")
        # A ProduceBatch naming one partition five times appended five
        # batches, all answered OK.  Now nothing is appended.
        before = c.unary(CS + "ListOffsets", list_offsets_req([("rep", 0)]),
                         C().ListOffsetsResponse).partitions[0].offset
        r = c.produce_batch([("rep", 0, batch_of(tn.make_records(1, f"five-{i}"))) for i in range(5)])
        expect_code(r, INVALID_REQUEST, "ProduceBatch naming rep-0 five times")
        check("rep-0" in r.error_message, f"names rep-0: {r.error_message!r}")
        eq(len(r.partitions), 0, "no per-partition results with a request-level error")
        after = c.unary(CS + "ListOffsets", list_offsets_req([("rep", 0)]),
                        C().ListOffsetsResponse).partitions[0].offset
        eq(after, before, "log end after the refused ProduceBatch")
        # CommitOffsets: each partition at most once too.
        q = C().CommitOffsetsRequest(version=tn.V(), group_id="rep-g", generation_id=-1)
        for _ in range(2):
            q.partitions.add(topic_partition=T().TopicPartition(topic="rep", partition=0), offset=1)
        r = c.unary(CS + "CommitOffsets", q, C().CommitOffsetsResponse, timeout=DEADLINE)
        expect_code(r, INVALID_REQUEST, "CommitOffsets with a repeated partition")
        still_serves(c, "rep", "repeated partitions")


@test(cores=1)
def repeated_partitions_one_shard(ctx):
    _repeated_partition(ctx, 1)


@test(cores=2)
def repeated_partitions_two_shards(ctx):
    _repeated_partition(ctx, 2)


def _flood_one_shard(ctx):
    """A FetchBatch of 10,000 fetches of one partition puts 10,000 messages
    on that partition's shard at once, more than a queue between two
    shards holds (8,192): the old node spun on a full queue, and with the
    partition on the receiving shard nothing ever drained it."""
    with ctx.client() as c:
        c.create_topic("flood", 1)
        ok(c.produce("flood", 0, tn.make_records(2, "flood")), "produce")
        req = C().FetchBatchRequest(version=tn.V())
        for _ in range(10000):
            req.fetches.append(fetch_req([("flood", 0, 0)]))
        r = timed("FetchBatch of 10,000 fetches of flood-0",
                  lambda: c.unary(CS + "FetchBatch", req, C().FetchBatchResponse, timeout=DEADLINE))
        ok(r, "FetchBatch")
        eq(len(r.responses), 10000, "one FetchResponse per fetch")
        for k in (0, 4999, 9999):
            ok(r.responses[k].partitions[0], f"fetches[{k}]")
            check(r.responses[k].partitions[0].batches, f"fetches[{k}] has the batch")
        # 20,000 lookups of existing partitions in one ListOffsets hung
        # the node the same way (there are 2 here: FetchBatch again).
        still_serves(c, "flood", "the FetchBatch flood")


@test(cores=1)
def fetch_batch_flood_one_shard(ctx):
    _flood_one_shard(ctx)


@test(cores=2)
def fetch_batch_flood_two_shards(ctx):
    _flood_one_shard(ctx)


@test(cores=2)
def requests_of_100k_partitions(ctx):
    """Requests naming 100,000 partitions (all the same one, and all
    different) are refused at once with the cap's name, whatever the RPC."""
    with ctx.client() as c:
        c.create_topic("big", 2)
        same = [("big", 0)] * 100000
        diff = [("big", i) for i in range(100000)]
        for label, parts in (("the same partition", same), ("different partitions", diff)):
            r = timed(f"Fetch of 100,000 entries ({label})",
                      lambda: c.unary(CS + "Fetch", fetch_req([(t, p, 0) for t, p in parts]),
                                      C().FetchResponse, timeout=DEADLINE))
            expect_code(r, INVALID_REQUEST, f"Fetch of 100,000 ({label})")
            check("--max-request-partitions" in r.error_message, f"names the flag: {r.error_message!r}")
            r = timed(f"ListOffsets of 100,000 entries ({label})",
                      lambda: c.unary(CS + "ListOffsets", list_offsets_req(parts),
                                      C().ListOffsetsResponse, timeout=DEADLINE))
            expect_code(r, INVALID_REQUEST, f"ListOffsets of 100,000 ({label})")
            b = batch_of(tn.make_records(1, "x", size=8, headers=False))
            r = timed(f"ProduceBatch of 100,000 parts ({label})",
                      lambda: c.produce_batch([(t, p, b) for t, p in parts], timeout=DEADLINE))
            expect_code(r, INVALID_REQUEST, f"ProduceBatch of 100,000 ({label})")
        # 10,000 parts is within the default cap: each is answered.
        b = batch_of(tn.make_records(1, "y", size=8, headers=False))
        r = timed("ProduceBatch of 10,000 parts (unknown partitions)",
                  lambda: c.produce_batch([("big", i) + (b,) for i in range(10000)], timeout=DEADLINE))
        ok(r, "ProduceBatch of 10,000")
        eq(len(r.partitions), 10000, "one result per part")
        ok(r.partitions[0], "big-0")
        ok(r.partitions[1], "big-1")
        for k in (2, 9999):
            expect_code(r.partitions[k], tn.PARTITION_NOT_FOUND, f"big-{k}")
        still_serves(c, "big", "requests of 100,000 partitions")


@test(cores=2, extra=["--max-calls", "64"])
def reset_long_polls_free_their_calls(ctx):
    """5,000 long polls, each reset by the client while it waits: each must
    give its call back at once, or 64 of them exhaust --max-calls for
    their whole max_wait."""
    # The resets on a connection of their own: a node may close a
    # connection that resets streams this fast (nghttp2's rapid-reset
    # guard, CVE-2023-44487); the other client must not share it.
    with ctx.client() as c, tn.Client(ctx.node.addr, own_connection=True) as c2:
        c.create_topic("lp", 2)
        f = c2.ch.unary_unary(CS + "Fetch", request_serializer=lambda m: m.SerializeToString(),
                              response_deserializer=C().FetchResponse.FromString)
        t0 = time.monotonic()
        pending = []
        for i in range(5000):
            pending.append(f.future(fetch_req([("lp", i % 2, 0)], max_wait_ms=25000, min_bytes=1),
                                    timeout=DEADLINE))
            if len(pending) == 32:
                time.sleep(0.005)  # let them reach the node and park
                for x in pending:
                    x.cancel()
                pending = []
        for x in pending:
            x.cancel()
        print(f"    5,000 long polls opened and reset in {time.monotonic() - t0:.1f} s", flush=True)
        def settled():
            try:
                return c.calls_in_flight() == 1
            except grpc.RpcError as e:
                # The calls of the last resets may still hold every slot.
                if e.code() != grpc.StatusCode.RESOURCE_EXHAUSTED:
                    raise
                return False

        tn.wait_until(settled, 10, "the reset calls to end on the node")
        still_serves(c, "lp", "5,000 reset long polls")


def many(c, path, reqs, resp_cls, window=256):
    """Sends reqs as unary calls, window of them in flight; returns the answers."""
    f = c.ch.unary_unary(path, request_serializer=lambda m: m.SerializeToString(),
                         response_deserializer=resp_cls.FromString)
    out, futs = [], []
    for q in reqs:
        futs.append(f.future(q, timeout=DEADLINE))
        if len(futs) == window:
            out += [x.result() for x in futs]
            futs = []
    return out + [x.result() for x in futs]


def join_req(group, member_id=""):
    q = C().JoinGroupRequest(version=tn.V(), client_id="hostile", group_id=group,
                             member_id=member_id, topics=["ordinary"], assignors=["range"])
    q.session_timeout.CopyFrom(tn.ms_duration(30000))
    q.rebalance_timeout.CopyFrom(tn.ms_duration(30000))
    return q


@test(cores=2, extra=["--max-groups", "4000"])
def groups_and_pending_member_ids(ctx):
    """10,000 groups, and 10,000 member ids asked for in one group: each join
    is answered; past --max-groups new groups are refused, past
    --group-max-pending-members (1,000) new ids, and nothing grows beyond."""
    RESOURCE_EXHAUSTED, MEMBER_ID_REQUIRED, GROUP_MAX_SIZE_REACHED = 46, 56, 55
    with ctx.client() as c:
        t0 = time.monotonic()
        rs = many(c, CS + "JoinGroup", (join_req(f"g{i}") for i in range(10000)),
                  C().JoinGroupResponse)
        codes = [r.error_code for r in rs]
        print(f"    10,000 JoinGroups of new groups answered in {time.monotonic() - t0:.1f} s: "
              f"{codes.count(MEMBER_ID_REQUIRED)} MEMBER_ID_REQUIRED, "
              f"{codes.count(RESOURCE_EXHAUSTED)} RESOURCE_EXHAUSTED", flush=True)
        check(set(codes) <= {MEMBER_ID_REQUIRED, RESOURCE_EXHAUSTED}, f"codes {set(codes)}")
        check(3900 <= codes.count(MEMBER_ID_REQUIRED) <= 4000,
              f"about --max-groups 4000 groups made: {codes.count(MEMBER_ID_REQUIRED)}")
        refused = next(r for r in rs if r.error_code == RESOURCE_EXHAUSTED)
        check("--max-groups" in refused.error_message, f"names the flag: {refused.error_message!r}")
        groups = c.metric_totals("rmq_groups")["rmq_groups"]
        check(groups <= 4000, f"rmq_groups {groups} <= --max-groups")
        t0 = time.monotonic()
        rs = many(c, CS + "JoinGroup", (join_req("g0") for _ in range(10000)), C().JoinGroupResponse)
        codes = [r.error_code for r in rs]
        print(f"    10,000 JoinGroups asking for member ids in one group answered in "
              f"{time.monotonic() - t0:.1f} s: {codes.count(MEMBER_ID_REQUIRED)} ids handed out", flush=True)
        eq(codes.count(MEMBER_ID_REQUIRED), 999, "ids handed out up to --group-max-pending-members")
        eq(codes.count(GROUP_MAX_SIZE_REACHED), 10000 - 999, "the rest refused")
        still_serves(c, "ordinary", "10,000 groups and member ids")


@test(cores=2, extra=["--max-connections", "128"])
def silent_connection_flood(ctx):
    """2,000 connections that send nothing, against a pool of 128 per shard:
    each is cut within about the handshake timeout (1 s), a full pool makes
    room by closing the oldest silent one, and a new ordinary client still
    gets in while the flood goes on."""
    import socket
    host, port = ctx.node.addr.split(":")
    socks = []
    t0 = time.monotonic()
    for _ in range(2000):
        sk = socket.socket()
        sk.setblocking(False)
        try:
            sk.connect((host, int(port)))
        except BlockingIOError:
            pass
        socks.append(sk)
    # A new client in the middle of the flood is served.  Its own handshake
    # competes with the flood's for the pool (the oldest connection still
    # in its handshake makes room), so, like any client, it tries again.
    for attempt in range(5):
        try:
            with tn.Client(ctx.node.addr) as c:
                ok(c.produce("ordinary", 0, tn.make_records(1, "in-flood")),
                   "produce during the flood")
            break
        except grpc.RpcError as e:
            if e.code() != grpc.StatusCode.UNAVAILABLE or attempt == 4:
                raise
            print(f"    a new client was cut in its handshake ({e.details()}); again", flush=True)
    # Every silent socket is closed by the node (EOF or reset) soon after.
    import select
    deadline = time.monotonic() + 20
    poller = select.poll()
    by_fd = {sk.fileno(): sk for sk in socks}
    for fd in by_fd:
        poller.register(fd, select.POLLIN)
    open_ = set(by_fd)
    while open_ and time.monotonic() < deadline:
        for fd, _ in poller.poll(200):
            try:
                gone = by_fd[fd].recv(16) == b""
            except BlockingIOError:
                gone = False
            except OSError:
                gone = True
            if gone:
                open_.discard(fd)
                poller.unregister(fd)
    print(f"    2,000 silent connections: all cut {time.monotonic() - t0:.1f} s after the first "
          f"(handshake timeout 1 s; {len(open_)} left)", flush=True)
    for sk in socks:
        sk.close()
    eq(len(open_), 0, "silent connections left open")


# ---- the runner ------------------------------------------------------------------------

class Ordinary:
    """An ordinary client beside the hostile one: produces and fetches in a
    loop and records each call's latency."""

    def __init__(self, addr, topic):
        self.c = tn.Client(addr)
        self.topic = topic
        self.lat = []
        self.errors = []
        self.stop = threading.Event()
        self.th = threading.Thread(target=self.run, daemon=True)

    def run(self):
        while not self.stop.is_set():
            t0 = time.monotonic()
            try:
                r = self.c.produce(self.topic, 0, tn.make_records(1, "ord", headers=False),
                                   timeout=DEADLINE)
                if r.error_code != tn.OK:
                    self.errors.append(tn.ecname(r.error_code))
            except grpc.RpcError as e:
                self.errors.append(str(e.code()))
            self.lat.append(time.monotonic() - t0)
            time.sleep(0.01)

    def report(self):
        self.stop.set()
        self.th.join(timeout=DEADLINE)
        self.c.close()
        if not self.lat:
            return "no calls"
        lat = sorted(self.lat)
        p99 = lat[min(len(lat) - 1, int(len(lat) * 0.99))]
        return (f"{len(lat)} produces, p50 {lat[len(lat) // 2] * 1000:.1f} ms, "
                f"p99 {p99 * 1000:.1f} ms, max {lat[-1] * 1000:.1f} ms, errors {len(self.errors)}")


def rss_peak_kib(pid):
    try:
        with open(f"/proc/{pid}/status") as f:
            for line in f:
                if line.startswith("VmHWM:"):
                    return int(line.split()[1])
    except OSError:
        pass
    return -1


def main() -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("--rmqd", required=True)
    ap.add_argument("--proto-dir", required=True)
    ap.add_argument("--only", action="append", default=[])
    ap.add_argument("--keep", action="store_true")
    ap.add_argument("-v", "--verbose", action="store_true")
    args = ap.parse_args()
    tmp = tempfile.mkdtemp(prefix="rmq-hostile-test-")
    passed = failed = skipped = 0
    try:
        tn.load_protos(pathlib.Path(args.proto_dir).resolve(), pathlib.Path(tmp) / "py")
    except Exception as e:  # noqa: BLE001
        print(f"FAIL setup: {type(e).__name__}: {e}", flush=True)
        print("0 passed, 1 failed, 0 skipped", flush=True)
        return 1
    for fn in [t for t in TESTS if not args.only or any(o in t.__name__ for o in args.only)]:
        name = fn.__name__
        node = tn.Node(os.path.abspath(args.rmqd), os.path.join(tmp, name), tmp, args.verbose)
        t0 = time.monotonic()
        ordinary = None
        try:
            node.start(["--cores", str(fn.cores), *fn.extra])
            with tn.Client(node.addr) as c:
                c.create_topic("ordinary", 1)
            ordinary = Ordinary(node.addr, "ordinary")
            ordinary.th.start()
            fn(tn.Ctx(args, node, tmp))
            check(node.alive(), "rmqd died")
            print(f"    beside it, an ordinary client: {ordinary.report()}; rmqd peak RSS "
                  f"{rss_peak_kib(node.proc.pid) // 1024} MiB", flush=True)
            ordinary = None
            rc = node.stop()
            eq(rc, 0, "rmqd exit status after SIGTERM")
            passed += 1
            print(f"PASS {name} ({time.monotonic() - t0:.2f}s)", flush=True)
        except tn.Skip as e:
            skipped += 1
            print(f"SKIP {name}: {e}", flush=True)
        except Exception as e:  # noqa: BLE001
            failed += 1
            why = f"gRPC {e.code()}: {e.details()}" if isinstance(e, grpc.RpcError) \
                else f"{type(e).__name__}: {e}"
            print(f"FAIL {name} ({time.monotonic() - t0:.2f}s): {why}", flush=True)
            traceback.print_exc()
            print("  rmqd log:\n" + node.tail(), flush=True)
        finally:
            if ordinary is not None:
                ordinary.report()
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
