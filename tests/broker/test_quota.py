#!/usr/bin/python3
# SPDX-License-Identifier: Apache-2.0
"""Quotas on one rmqd node (src/broker/quota.c, methods.c): the default
quota (`rmq quota set --default`) holds a producer (unary calls, and a
ProduceStream) and a consumer that go as fast as they can to their byte
rates within 10 % over 10 s, the
answers say how long they were held (throttle_time), and a user's own
quota overrides the default.

    /usr/bin/python3 tests/broker/test_quota.py --rmqd build/release/rmqd \\
        --rmq build/release/rmq --proto-dir proto

Ends with "N passed, N failed, N skipped".
"""
import os
import subprocess
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import test_node as tn  # noqa: E402

check, eq, ok = tn.check, tn.eq, tn.ok
PRODUCE_BPS = 1 << 20
FETCH_BPS = 2 << 20
WARMUP_S = 1.5   # spends the bucket's one second of burst
MEASURE_S = 10.0


def rmq(args, node, *cmd):
    r = subprocess.run([args.rmq, "--bootstrap", node.addr, *cmd], stdout=subprocess.PIPE,
                       stderr=subprocess.STDOUT, timeout=60)
    check(r.returncode == 0, f"rmq {' '.join(cmd)}: {r.stdout.decode(errors='replace')}")


def produce_rate(c, records, seconds):
    """Request bytes acknowledged per second over `seconds`, and the
    longest throttle_time seen (ms)."""
    req = tn.P.ProduceRequest(version=tn.V(), client_id="q", acks=tn.ACK_LEADER,
                              topic_partition=tn.T.TopicPartition(topic="q", partition=0),
                              records=records)
    size = len(req.SerializeToString())
    sent, longest, t0 = 0, 0, time.monotonic()
    while time.monotonic() - t0 < seconds:
        r = ok(c.unary("/rustmq.client.ProducerService/Produce", req, tn.P.ProduceResponse,
                       timeout=30), "produce")
        sent += size
        longest = max(longest, r.throttle_time.seconds * 1000 + r.throttle_time.nanos // 1000000)
    return sent / (time.monotonic() - t0), longest


def stream_rate(c, records, seconds):
    """Request bytes answered per second on one ProduceStream, after
    WARMUP_S (the bucket's burst)."""
    req = tn.P.ProduceRequest(version=tn.V(), client_id="q", acks=tn.ACK_LEADER,
                              topic_partition=tn.T.TopicPartition(topic="q", partition=0),
                              records=records)
    size = len(req.SerializeToString())
    t0 = time.monotonic()

    def gen():
        while time.monotonic() - t0 < WARMUP_S + seconds:
            yield req
    got, start = 0, None
    for a in c.bidi("/rustmq.client.ProducerService/ProduceStream", gen(),
                    tn.P.ProduceResponse, timeout=120):
        ok(a, "stream produce")
        now = time.monotonic()
        if now - t0 >= WARMUP_S:
            if start is None:
                start = now
            else:
                got += size
    return got / (time.monotonic() - start)


def fetch_rate(c, seconds, start):
    got, off, longest, t0 = 0, start, 0, time.monotonic()
    while time.monotonic() - t0 < seconds:
        resp, raw = c.fetch([("q", 0, off, 256 << 10)])
        pr = ok(resp.partitions[0], "fetch")
        got += sum(len(b) for b in raw[0])
        longest = max(longest, resp.throttle_time.seconds * 1000 +
                      resp.throttle_time.nanos // 1000000)
        if pr.batches:
            last = pr.batches[-1]
            off = last.base_offset + last.record_count
        else:
            off = start  # read it again
    return got / (time.monotonic() - t0), longest, off


def within(rate, want, what):
    check(abs(rate - want) <= 0.1 * want, f"{what}: {rate / 1e6:.3f} MB/s, the quota "
          f"{want / 1e6:.3f} MB/s (10 % allowed)")
    print(f"    {what}: {rate / 1e6:.3f} MB/s for a quota of {want / 1e6:.3f} MB/s "
          f"({rate / want:.3f})", flush=True)


def run(args, tmp):
    node = tn.Node(args.rmqd, os.path.join(tmp, "data"), tmp, args.verbose)
    node.start(("--segment-bytes", "64MiB"))
    try:
        records = [tn.T.Record(value=bytes([i % 251]) * 1024) for i in range(64)]
        with tn.Client(node.addr) as c:
            c.create_topic("q", 1)
            # 32 MiB to read back, before any quota.
            for _ in range(512):
                ok(c.produce("q", 0, records), "fill")
            rmq(args, node, "quota", "set", "--default", "--producer-byte-rate", str(PRODUCE_BPS),
                "--consumer-byte-rate", str(FETCH_BPS))
            tn.wait_until(lambda: produce_rate(c, records, 0.5)[1] > 0, 15,
                          "the quota applies (a throttled answer)")
            produce_rate(c, records, WARMUP_S)
            rate, longest = produce_rate(c, records, MEASURE_S)
            within(rate, PRODUCE_BPS, "produce")
            check(longest > 0, "produce answers carry throttle_time")
            _, _, off = fetch_rate(c, WARMUP_S, 0)
            rate, longest, _ = fetch_rate(c, MEASURE_S, off)
            within(rate, FETCH_BPS, "fetch")
            check(longest > 0, "fetch answers carry throttle_time")
            # A stream's messages are held in order and charged each.
            rate = stream_rate(c, records, MEASURE_S / 2)
            within(rate, PRODUCE_BPS, "ProduceStream")
            # A user's own quota overrides the default (anonymous here:
            # the node runs without authentication).
            rmq(args, node, "quota", "set", "--user", "ANONYMOUS", "--producer-byte-rate",
                str(4 * PRODUCE_BPS))
            time.sleep(1.0)
            produce_rate(c, records, WARMUP_S)
            rate, _ = produce_rate(c, records, MEASURE_S / 2)
            within(rate, 4 * PRODUCE_BPS, "produce under the user's own quota")
        eq(node.stop(), 0, "exit status")
    finally:
        node.kill()


def main():
    return tn.single_main("quota", run)


if __name__ == "__main__":
    sys.exit(main())
