#!/usr/bin/python3
# SPDX-License-Identifier: Apache-2.0
"""Zero-copy fetch answers against the copying path (rmqd --fetch-copy).

By default rmqd answers Fetch, FetchBatch and Subscribe with the batches
referenced from the segment mapping (resident data) or from the buffer a
cold read filled, instead of copying them into the call's send queue
(src/broker/fetch.c, "Zero copy"; src/net/grpc.h, rmq_call_sendv_ref).
This suite runs one data directory under three nodes in turn and checks
that every answer is byte for byte the same:

  1. default, --fsync=never: the data is in the page cache (mapping path)
  2. --fetch-copy:           the copying path
     --fetch-send splice:    the page cache's pages spliced into the socket
  3. default, files evicted from the page cache first: cold reads, sent
     from their buffers by reference

The answers include a multi-frame one (~6 MiB over 16 KiB DATA frames),
reads across several segments, max_bytes cuts, FetchBatch and Subscribe.
Then clients that go away in the middle of an answer, while the node
still references segment bytes for it: a reset connection, RST_STREAM, a
connection closed with a send in flight, and a topic deleted while its
answer is stalled by flow control (the rest must still arrive intact).
The node must end with one call in flight (the metrics call), exit 0 on
SIGTERM, and (in the ASan tree) report no leak or error.

    /usr/bin/python3 tests/broker/test_zerocopy.py --rmqd build/release/rmqd \
        --proto-dir proto [-v]

Reuses test_node.py (the node, the client, the checks) and
tests/net/netutil.py (raw HTTP/2).  Ends with "N passed, N failed".
"""
import argparse
import os
import pathlib
import random
import shutil
import socket
import struct
import sys
import tempfile
import time
import traceback

HERE = pathlib.Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))
sys.path.insert(0, str(HERE.parent / "net"))

import grpc  # noqa: E402

import netutil as nu  # noqa: E402
import test_node as tn  # noqa: E402
from test_node import check, eq, ok, make_records  # noqa: E402

FETCH = "/rustmq.client.ConsumerService/Fetch"
FETCH_BATCH = "/rustmq.client.ConsumerService/FetchBatch"
SUBSCRIBE = "/rustmq.client.ConsumerService/Subscribe"

# Topics: "zc-small" rolls 256 KiB segments (reads span several), "zc-big"
# has 16 MiB segments so one partition read is several MiB.
SMALL, BIG = "zc-small", "zc-big"
BIG_SEGMENT = 16 << 20


def produce_all(c):
    c.create_topic(SMALL, 2)
    c.create_topic(BIG, 2, {"segment.bytes": str(BIG_SEGMENT)})
    rnd = random.Random(11)
    for i in range(12):
        for p in range(2):
            ok(c.produce(SMALL, p, make_records(10, f"s{p}-{i}", size=9000, rnd=rnd)), "produce")
    for i in range(20):
        for p in range(2):
            ok(c.produce(BIG, p, make_records(8, f"b{p}-{i}", size=40000, rnd=rnd, headers=False)),
               "produce")


def raw_fetch(c, parts, max_bytes=0, min_bytes=0, max_wait_ms=0):
    req = c.fetch_req(parts, max_wait_ms=max_wait_ms, min_bytes=min_bytes, max_bytes=max_bytes)
    return c.unary_raw(FETCH, req.SerializeToString(), timeout=30)


def walk(c, topic, part, pmax):
    """Every Fetch answer (raw) reading the partition from 0 to its end."""
    out, off = [], 0
    for _ in range(10000):
        raw = raw_fetch(c, [(topic, part, off, pmax)])
        resp = tn.C.FetchResponse.FromString(raw)
        pr = ok(resp.partitions[0], f"{topic}-{part}@{off}")
        out.append(raw)
        if not pr.batches:
            eq(off, pr.high_watermark, f"{topic}-{part}: end")
            return out
        for b, rb in zip(pr.batches, tn.split_fetch_raw(raw)[0]):
            tn.check_batch(b, rb)
        last = pr.batches[-1]
        off = last.base_offset + last.record_count
    raise AssertionError("no end")


def subscribe_all(c, topic, nparts, records):
    """Subscribe from the start; returns the batches' bytes per partition
    (answers may be cut into rounds differently, the batches may not)."""
    req = tn.C.SubscribeRequest(version=tn.V(), client_id="zc", min_bytes=1,
                                max_bytes=3 << 20)
    for p in range(nparts):
        req.partitions.add(topic_partition=tn.T.TopicPartition(topic=topic, partition=p),
                           offset=0, partition_max_bytes=1 << 20)
    f = c.ch.unary_stream(SUBSCRIBE, request_serializer=lambda m: m.SerializeToString(),
                          response_deserializer=lambda b: b)
    it = f(req, timeout=60)
    got = {p: [] for p in range(nparts)}
    n = 0
    try:
        for raw in it:
            resp = tn.C.FetchResponse.FromString(raw)
            for pr, rb in zip(resp.partitions, tn.split_fetch_raw(raw)):
                ok(pr, "subscribe")
                got[pr.topic_partition.partition] += rb
                n += sum(b.record_count for b in pr.batches)
            if n >= records:
                break
    finally:
        it.cancel()
    eq(n, records, "records subscribed")
    return got


def collect(c):
    """The answers of a fixed sequence of requests, raw."""
    out = {}
    for topic in (SMALL, BIG):
        for p in range(2):
            out[f"walk {topic}-{p} default"] = walk(c, topic, p, 0)
            out[f"walk {topic}-{p} 300KiB"] = walk(c, topic, p, 300 << 10)
    # Large answers: several MiB over many DATA frames, parts of both shards.
    out["big both partitions"] = raw_fetch(c, [(BIG, 0, 0, 8 << 20), (BIG, 1, 8, 8 << 20)],
                                           max_bytes=15 << 20)
    check(len(out["big both partitions"]) > 5 << 20,
          f"big answer only {len(out['big both partitions'])} bytes")
    out["max_bytes cut"] = raw_fetch(c, [(SMALL, 0, 7, 1 << 20), (BIG, 1, 3, 4 << 20),
                                         (SMALL, 1, 0, 1 << 20)], max_bytes=700000)
    out["mixed offsets"] = [raw_fetch(c, [(SMALL, 1, s, 200000), (BIG, 0, s, 3 << 20)])
                            for s in (0, 5, 33, 100, 119)]
    fb = tn.C.FetchBatchRequest(version=tn.V(), client_id="zc")
    fb.fetches.append(c.fetch_req([(BIG, 0, 0, 2 << 20)]))
    fb.fetches.append(c.fetch_req([(SMALL, 1, 10, 1 << 20), (SMALL, 0, 0, 1 << 20)]))
    out["fetch batch"] = c.unary_raw(FETCH_BATCH, fb.SerializeToString(), timeout=30)
    out["subscribe small"] = subscribe_all(c, SMALL, 2, 2 * 12 * 10)
    out["subscribe big"] = subscribe_all(c, BIG, 2, 2 * 20 * 8)
    return out


def compare(a, b, what):
    eq(sorted(a), sorted(b), f"{what}: answers")
    for k in a:
        if a[k] != b[k]:
            raise AssertionError(f"{what}: '{k}' differs")


# ---- clients that leave in the middle of an answer -----------------------------------------

def grpc_message(body):
    return b"\x00" + struct.pack(">I", len(body)) + body


def raw_start_fetch(port, req_bytes, max_frame=0):
    """A raw HTTP/2 connection with the default 64 KiB windows and one Fetch
    on stream 1: the node sends 64 KiB of the answer and holds the rest.
    max_frame: SETTINGS_MAX_FRAME_SIZE to announce (0: the default 16 KiB)."""
    h = nu.H2Conn(port, timeout=10)
    h.send(nu.PREFACE + nu.settings([(5, max_frame)] if max_frame else []))
    h.send(nu.frame(nu.HEADERS, nu.END_HEADERS, 1, nu.grpc_headers(FETCH)))
    h.send(nu.frame(nu.DATA, nu.END_STREAM, 1, grpc_message(req_bytes)))
    return h


def read_data(h, at_least):
    """Reads frames until at_least DATA bytes of stream 1 came; returns them."""
    data = b""
    while len(data) < at_least:
        f = h.read_frame()
        if f is None:
            raise AssertionError(f"connection ended after {len(data)} answer bytes")
        ftype, flags, sid, payload = f
        if ftype == nu.DATA and sid == 1:
            data += payload
        elif ftype == nu.RST_STREAM:
            raise AssertionError("stream reset by the node")
    return data


def reset_close(h):
    h.sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
    h.close()


def window_update(sid, n):
    return nu.frame(nu.WINDOW_UPDATE, 0, sid, struct.pack(">I", n))


def leave_mid_answer(node, c, req_bytes, rounds):
    for i in range(rounds):
        # 1. The connection is reset while the rest of the answer waits for
        #    flow control in the call's send queue.
        h = raw_start_fetch(node.port, req_bytes)
        read_data(h, 60000)
        reset_close(h)
        # 2. RST_STREAM(CANCEL) of the stream, the connection stays.
        h = raw_start_fetch(node.port, req_bytes)
        read_data(h, 30000)
        h.send(nu.frame(nu.RST_STREAM, 0, 1, struct.pack(">I", 8)))
        h.send(nu.frame(nu.PING, 0, 0, b"zc-ping1"))
        while True:
            f = h.read_frame()
            check(f is not None, "connection closed after RST_STREAM")
            if f[0] == nu.PING and f[1] & nu.ACK:
                break
        h.close()
        # 3. Windows opened wide, then the client stops reading and resets:
        #    the node has a send in flight referencing the segment bytes.
        h = raw_start_fetch(node.port, req_bytes)
        h.send(window_update(0, 64 << 20) + window_update(1, 64 << 20))
        read_data(h, 1000)
        time.sleep(0.2 if i == 0 else 0.02)
        reset_close(h)
    wait_calls_idle(c)


def wait_calls_idle(c):
    tn.wait_until(lambda: c.calls_in_flight() == 1, 15, "rmq_calls back to 1")


def deleted_while_stalled(node, c):
    """A topic deleted while its answer is stalled: the node keeps the
    segments it references mapped until the answer is out."""
    c.create_topic("zc-del", 1, {"segment.bytes": str(BIG_SEGMENT)})
    rnd = random.Random(5)
    for i in range(6):
        ok(c.produce("zc-del", 0, make_records(8, f"d{i}", size=40000, rnd=rnd, headers=False)),
           "produce")
    req = c.fetch_req([("zc-del", 0, 0, 4 << 20)]).SerializeToString()
    want = c.unary_raw(FETCH, req, timeout=30)  # resident now, the same bytes
    check(len(want) > 1 << 20, "zc-del answer size")
    # 1 MiB frames, as rmq-bench asks: referenced bytes go in big frames.
    h = raw_start_fetch(node.port, req, max_frame=1 << 20)
    data = read_data(h, 60000)
    biggest = 0
    d = ok(c.unary("/rustmq.controller.AdminService/DeleteTopics",
                   tn.A.DeleteTopicsRequest(version=tn.V(), names=["zc-del"]),
                   tn.A.DeleteTopicsResponse), "DeleteTopics")
    ok(d.topics[0], "delete zc-del")
    h.send(window_update(0, 64 << 20) + window_update(1, 64 << 20))
    trailers = None
    while True:
        f = h.read_frame()
        check(f is not None, f"connection ended after {len(data)} answer bytes")
        ftype, flags, sid, payload = f
        if sid != 1:
            continue
        if ftype == nu.DATA:
            data += payload
            biggest = max(biggest, len(payload))
        elif ftype == nu.HEADERS:
            hd = h.headers_of(payload, flags)
            if "grpc-status" in hd:
                trailers = hd
        elif ftype == nu.RST_STREAM:
            raise AssertionError("stream reset")
        if flags & nu.END_STREAM:
            break
    h.close()
    check(trailers is not None, "no trailers")
    eq(trailers.get("grpc-status"), "0", "grpc-status")
    eq(data, grpc_message(want), "answer of a topic deleted mid-send")
    check(biggest > 16384, f"largest DATA frame {biggest} bytes with 1 MiB allowed")


def slow_reader(node, c):
    """A client that opens its windows wide and then does not read for a
    while: the socket fills, the node keeps what it could not send (with
    splice: in the connection's pipe, waiting for room) and sends it once
    the client reads again.  The answer must arrive whole and unchanged."""
    req = c.fetch_req([(BIG, 0, 0, 8 << 20), (BIG, 1, 0, 8 << 20)],
                      max_bytes=15 << 20).SerializeToString()
    want = c.unary_raw(FETCH, req, timeout=30)
    h = raw_start_fetch(node.port, req, max_frame=1 << 20)
    h.send(window_update(0, 64 << 20) + window_update(1, 64 << 20))
    time.sleep(1.0)
    data = b""
    while True:
        f = h.read_frame()
        check(f is not None, f"connection ended after {len(data)} answer bytes")
        ftype, flags, sid, payload = f
        if sid == 1 and ftype == nu.DATA:
            data += payload
            if len(data) < 4 << 20:
                time.sleep(0.01)  # slowly, so the socket stays full a while
        elif sid == 1 and ftype == nu.RST_STREAM:
            raise AssertionError("stream reset")
        if sid == 1 and flags & nu.END_STREAM:
            break
    h.close()
    eq(data, grpc_message(want), "the answer a slow reader got")


# ---- runner -------------------------------------------------------------------------

def main() -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("--rmqd", required=True)
    ap.add_argument("--proto-dir", required=True)
    ap.add_argument("--keep", action="store_true")
    ap.add_argument("-v", "--verbose", action="store_true")
    args = ap.parse_args()

    tmp = tempfile.mkdtemp(prefix="rmq-zc-test-")
    passed = failed = 0
    node = None
    answers = {}

    def step(name, fn):
        nonlocal passed, failed
        t0 = time.monotonic()
        try:
            fn()
            passed += 1
            print(f"PASS {name} ({time.monotonic() - t0:.2f}s)", flush=True)
            return True
        except Exception as e:  # noqa: BLE001
            failed += 1
            why = f"gRPC {e.code()}: {e.details()}" if isinstance(e, grpc.RpcError) \
                else f"{type(e).__name__}: {e}"
            print(f"FAIL {name} ({time.monotonic() - t0:.2f}s): {why}", flush=True)
            traceback.print_exc()
            if node is not None and not node.alive():
                print("  rmqd died:\n" + node.tail(), flush=True)
            return False

    def stop_clean(what):
        rc = node.stop()
        eq(rc, 0, f"{what}: exit status after SIGTERM")
        bad = [l for l in node.lines if "AddressSanitizer" in l or "runtime error" in l
               or "LeakSanitizer" in l or "ERROR" in l]
        check(not bad, f"{what}: sanitizer reports:\n" + "\n".join(bad[:20]))

    try:
        tn.load_protos(pathlib.Path(args.proto_dir).resolve(), pathlib.Path(tmp) / "py")
        data = os.path.join(tmp, "data")
        node = tn.Node(os.path.abspath(args.rmqd), data, tmp, args.verbose)

        def zero_copy_resident():
            node.start(["--fsync", "never"])
            with tn.Client(node.addr) as c:
                produce_all(c)
                answers["zc"] = collect(c)
                wait_calls_idle(c)

        def leave_mid_answer_resident():
            with tn.Client(node.addr) as c:
                req = c.fetch_req([(BIG, 0, 0, 8 << 20), (BIG, 1, 0, 8 << 20)],
                                  max_bytes=15 << 20).SerializeToString()
                leave_mid_answer(node, c, req, 10)
                deleted_while_stalled(node, c)
                wait_calls_idle(c)
            stop_clean("zero copy")

        def fetch_copy_identical():
            node.start(["--fsync", "never", "--fetch-copy"])
            with tn.Client(node.addr) as c:
                compare(answers["zc"], collect(c), "--fetch-copy vs zero copy")
                wait_calls_idle(c)
            stop_clean("--fetch-copy")

        def splice_identical():
            node.start(["--fsync", "never", "--fetch-send", "splice"])
            with tn.Client(node.addr) as c:
                compare(answers["zc"], collect(c), "--fetch-send splice vs zero copy")
                m = c.metric_totals("rmq_net_spliced_bytes_total")
                check(m["rmq_net_spliced_bytes_total"] > 4 << 20,
                      f"spliced bytes: {m['rmq_net_spliced_bytes_total']}")
                slow_reader(node, c)
                wait_calls_idle(c)

        def leave_mid_answer_splice():
            with tn.Client(node.addr) as c:
                req = c.fetch_req([(BIG, 0, 0, 8 << 20), (BIG, 1, 0, 8 << 20)],
                                  max_bytes=15 << 20).SerializeToString()
                leave_mid_answer(node, c, req, 10)
                deleted_while_stalled(node, c)
                wait_calls_idle(c)
            stop_clean("--fetch-send splice")

        def zero_copy_cold_identical():
            tn.make_cold(node.data_dir)
            node.start()
            with tn.Client(node.addr) as c:
                compare(answers["zc"], collect(c), "cold zero copy vs resident zero copy")
                wait_calls_idle(c)

        def leave_mid_answer_cold():
            tn.make_cold(node.data_dir)
            with tn.Client(node.addr) as c:
                req = c.fetch_req([(SMALL, 0, 0, 1 << 20), (BIG, 1, 0, 8 << 20)],
                                  max_bytes=15 << 20).SerializeToString()
                leave_mid_answer(node, c, req, 5)
            stop_clean("cold zero copy")

        for name, fn in (("zero_copy_resident", zero_copy_resident),
                         ("leave_mid_answer_resident", leave_mid_answer_resident),
                         ("fetch_copy_identical", fetch_copy_identical),
                         ("splice_identical", splice_identical),
                         ("leave_mid_answer_splice", leave_mid_answer_splice),
                         ("zero_copy_cold_identical", zero_copy_cold_identical),
                         ("leave_mid_answer_cold", leave_mid_answer_cold)):
            if not step(name, fn):
                break
    except Exception as e:  # noqa: BLE001
        failed += 1
        print(f"FAIL setup: {type(e).__name__}: {e}", flush=True)
        traceback.print_exc()
    finally:
        if node is not None:
            node.kill()
        tn._kill_all()
        if args.keep:
            print(f"logs and data kept in {tmp}", flush=True)
        elif failed:
            shutil.rmtree(os.path.join(tmp, "data"), ignore_errors=True)
            shutil.rmtree(os.path.join(tmp, "py"), ignore_errors=True)
            print(f"rmqd logs kept in {tmp} (--keep keeps the data too)", flush=True)
        else:
            shutil.rmtree(tmp, ignore_errors=True)
    print(f"{passed} passed, {failed} failed")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
