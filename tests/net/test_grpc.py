# SPDX-License-Identifier: Apache-2.0
"""gRPC conformance of src/net, seen by grpcio (a client nobody here wrote).

Starts echo_server (two shards, 127.0.0.1, port 0) and checks every call
kind, message sizes from 0 B to 7 MiB, concurrency on one and on several
channels, deadlines, cancellation, unknown methods, the message size
limit, status messages, and that no call is leaked (the server's call
count returns to 0).  Ends with SIGTERM while a call is in flight: the call
completes and the server exits 0.

Run: /usr/bin/python3 test_grpc.py --server path/to/echo_server
"""

import argparse
import concurrent.futures
import os
import random
import struct
import sys
import threading
import time

sys.dont_write_bytecode = True  # keep the source tree clean
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

import grpc  # noqa: E402

from netutil import EchoServer, Runner  # noqa: E402

LIMIT = 8 << 20  # --max-message given to the server


def payload(n, seed=0):
    r = random.Random(n * 31 + seed)
    return r.randbytes(n)


def test_unary_sizes(srv):
    with srv.channel() as ch:
        call = ch.unary_unary("/test.Echo/Unary")
        for n in (0, 1, 5, 16 << 10, (16 << 10) + 1, 1 << 20, 4 << 20, 7 << 20):
            msg = payload(n)
            assert call(msg, timeout=30) == msg, "unary of %d bytes" % n


def test_server_stream(srv):
    with srv.channel() as ch:
        call = ch.unary_stream("/test.Echo/ServerStream")
        got = list(call(struct.pack(">I", 5) + b"hello", timeout=10))
        assert got == [b"hello"] * 5, got
        assert list(call(struct.pack(">I", 0) + b"x", timeout=10)) == []
        # 4 MiB in 64 KiB messages: well over the 1 MiB send queue, so the
        # server waits for on_drain many times.
        big = payload(64 << 10)
        got = list(call(struct.pack(">I", 64) + big, timeout=30))
        assert len(got) == 64 and all(g == big for g in got)
        # Messages larger than one DATA frame, streamed.
        huge = payload(3 << 20)
        got = list(call(struct.pack(">I", 3) + huge, timeout=30))
        assert len(got) == 3 and all(g == huge for g in got)


def test_client_stream(srv):
    with srv.channel() as ch:
        call = ch.stream_unary("/test.Echo/ClientStream")
        msgs = [payload(n, i) for i, n in enumerate((0, 1, 100, 16 << 10, 100 << 10, 0, 7))]
        assert call(iter(msgs), timeout=10) == b"".join(msgs)
        assert call(iter([]), timeout=10) == b""
        assert call(iter([payload(2 << 20)]), timeout=30) == payload(2 << 20)


def test_bidi(srv):
    with srv.channel() as ch:
        call = ch.stream_stream("/test.Echo/Bidi")
        msgs = [payload(n, i) for i, n in enumerate([0, 1, 10, 1000, 16 << 10, 300 << 10] * 5)]
        assert list(call(iter(msgs), timeout=30)) == msgs
        assert list(call(iter([]), timeout=10)) == []
        # Lock-step: each answer arrives before the next request is sent.
        sent = []
        ready = threading.Event()

        def gen():
            for i in range(20):
                m = payload(i * 37, i)
                sent.append(m)
                yield m
                ready.wait(5)
                ready.clear()

        got = []
        for r in call(gen(), timeout=30):
            got.append(r)
            ready.set()
        assert got == sent


def test_concurrent_one_channel(srv):
    # 300 calls at once on one connection: more than max_streams (100), so
    # the client queues some behind SETTINGS_MAX_CONCURRENT_STREAMS.
    with srv.channel() as ch:
        call = ch.unary_unary("/test.Echo/Unary")
        msgs = [payload(random.Random(i).randrange(0, 200 << 10), i) for i in range(300)]
        futs = [call.future(m, timeout=60) for m in msgs]
        for m, f in zip(msgs, futs):
            assert f.result() == m
    srv.wait_idle_calls()


def test_concurrent_many_channels(srv):
    def worker(k):
        with srv.channel() as ch:
            unary = ch.unary_unary("/test.Echo/Unary")
            sstream = ch.unary_stream("/test.Echo/ServerStream")
            bidi = ch.stream_stream("/test.Echo/Bidi")
            for i in range(25):
                m = payload(i * 1000 + k, k)
                assert unary(m, timeout=30) == m
                if i % 5 == 0:
                    got = list(sstream(struct.pack(">I", 4) + m, timeout=30))
                    assert got == [m] * 4
                    assert list(bidi(iter([m, m[:10]]), timeout=30)) == [m, m[:10]]
        return k

    before = srv.stats()["accepted"]
    with concurrent.futures.ThreadPoolExecutor(8) as ex:
        assert sorted(ex.map(worker, range(8))) == list(range(8))
    st = srv.wait_idle_calls()
    assert st["accepted"] >= before + 8, st  # one connection per channel


def test_deadline(srv):
    before = srv.stats()
    with srv.channel() as ch:
        slow = ch.unary_unary("/test.Echo/Slow")
        t0 = time.monotonic()
        try:
            slow(struct.pack(">I", 20000) + b"late", timeout=0.3)
            raise AssertionError("no DEADLINE_EXCEEDED")
        except grpc.RpcError as e:
            assert e.code() == grpc.StatusCode.DEADLINE_EXCEEDED, e
        assert time.monotonic() - t0 < 15  # not the 20 s answer
        # A call that finishes within its deadline is not hurt by it.
        assert slow(struct.pack(">I", 50) + b"on time", timeout=10) == b"on time"
    st = srv.wait_idle_calls()
    # The handler saw on_cancel (server timer or client reset, whichever won).
    assert st["cancels"] >= before["cancels"] + 1, (before, st)
    srv.check_ok()


def test_server_side_deadline(srv):
    # grpc-timeout shorter than the client's own patience: a raw client
    # would wait; grpcio enforces it too, so check both sides agree.
    with srv.channel() as ch:
        slow = ch.unary_unary("/test.Echo/Slow")
        futs = [slow.future(struct.pack(">I", 5000), timeout=0.2 + i * 0.01) for i in range(20)]
        for f in futs:
            try:
                f.result()
                raise AssertionError("no DEADLINE_EXCEEDED")
            except grpc.RpcError as e:
                assert e.code() == grpc.StatusCode.DEADLINE_EXCEEDED, e
    srv.wait_idle_calls()
    srv.check_ok()


def test_cancel(srv):
    before = srv.stats()
    with srv.channel() as ch:
        slow = ch.unary_unary("/test.Echo/Slow")
        fut = slow.future(struct.pack(">I", 10000) + b"never", timeout=30)
        time.sleep(0.3)
        assert fut.cancel()
        # Mid-stream: the server is blocked on flow control / on_drain.
        it = ch.unary_stream("/test.Echo/ServerStream")(
            struct.pack(">I", 100000) + payload(64 << 10), timeout=60)
        for _ in range(3):
            next(it)
        it.cancel()
        # Client streaming, cancelled while the request is still open.
        gate = threading.Event()

        def reqs():
            yield b"a"
            gate.wait(10)

        cs = ch.stream_unary("/test.Echo/ClientStream").future(reqs(), timeout=30)
        time.sleep(0.3)
        cs.cancel()
        gate.set()
    st = srv.wait_idle_calls()
    assert st["cancels"] >= before["cancels"] + 3, (before, st)
    srv.check_ok()


def test_unknown_method(srv):
    with srv.channel() as ch:
        for path in ("/test.Echo/Nope", "/no.Such/Service"):
            try:
                ch.unary_unary(path)(b"x", timeout=10)
                raise AssertionError("no UNIMPLEMENTED")
            except grpc.RpcError as e:
                assert e.code() == grpc.StatusCode.UNIMPLEMENTED, e
                assert path in e.details(), e.details()
        try:
            list(ch.stream_stream("/test.Echo/Nope")(iter([b"a", b"b"]), timeout=10))
            raise AssertionError("no UNIMPLEMENTED")
        except grpc.RpcError as e:
            assert e.code() == grpc.StatusCode.UNIMPLEMENTED, e
    srv.check_ok()


def test_message_limit(srv):
    with srv.channel() as ch:
        for call, arg in ((ch.unary_unary("/test.Echo/Unary"), payload(LIMIT + 1)),
                          (ch.stream_unary("/test.Echo/ClientStream"),
                           iter([b"ok", payload(LIMIT + 1)]))):
            try:
                call(arg, timeout=30)
                raise AssertionError("no RESOURCE_EXHAUSTED")
            except grpc.RpcError as e:
                assert e.code() == grpc.StatusCode.RESOURCE_EXHAUSTED, e
                assert "exceeds" in e.details(), e.details()
        # Exactly at the limit is fine.
        m = payload(LIMIT)
        assert ch.unary_unary("/test.Echo/Unary")(m, timeout=30) == m
    srv.wait_idle_calls()
    srv.check_ok()


def test_status_and_message(srv):
    with srv.channel() as ch:
        fail = ch.unary_unary("/test.Echo/Fail")
        text = "h\u00e9llo 100% done\r\nline two \u2713"
        for code in (grpc.StatusCode.NOT_FOUND, grpc.StatusCode.FAILED_PRECONDITION,
                     grpc.StatusCode.INTERNAL):
            try:
                fail(bytes([code.value[0]]) + text.encode(), timeout=10)
                raise AssertionError("no error")
            except grpc.RpcError as e:
                assert e.code() == code, e
                assert e.details() == text, repr(e.details())
        # OK without a response message: trailers-only; grpcio reports
        # that a unary call got no message.
        try:
            fail(b"\x00", timeout=10)
        except grpc.RpcError as e:
            assert e.code() in (grpc.StatusCode.INTERNAL, grpc.StatusCode.UNKNOWN), e
    srv.check_ok()


def test_no_leaks(srv):
    st = srv.wait_idle_calls()
    assert st["calls_total"] > 500, st
    assert st["protocol_errors"] == 0, st
    assert st["refused"] == 0, st


def test_graceful_stop(srv):
    ch = srv.channel()
    slow = ch.unary_unary("/test.Echo/Slow")
    fut = slow.future(struct.pack(">I", 700) + b"finished during drain", timeout=20)
    time.sleep(0.3)  # the call reached the server
    rc = srv.stop()
    assert fut.result() == b"finished during drain"
    ch.close()
    assert rc == 0, "echo_server exit code %r" % rc


def test_authorize_hook(server_bin):
    """--token: the server's authorize hook sees the authorization header
    before the app, refuses UNAUTHENTICATED with its reason, and sets the
    call's principal."""
    srv = EchoServer(server_bin, "--shards=1", "--token=s3cret")
    try:
        with srv.channel() as ch:
            who = ch.unary_unary("/test.Echo/Whoami")
            for md, why in ((None, "no authorization header"),
                            ((("authorization", "Bearer wrong"),), "bad token"),
                            ((("authorization", "Bearer " + "x" * 2000),), "too long")):
                try:
                    who(b"", metadata=md, timeout=10)
                    raise AssertionError(f"served without the token ({why})")
                except grpc.RpcError as e:
                    assert e.code() == grpc.StatusCode.UNAUTHENTICATED, e
                    assert why in e.details(), e.details()
            got = who(b"", metadata=(("authorization", "Bearer s3cret"),), timeout=10)
            assert got == b"bearer", got
            assert ch.unary_unary("/test.Echo/Shard")(b"", timeout=10) in (b"0",), "exempt"
        assert srv.stop() == 0
    finally:
        srv.kill()


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--server", required=True)
    args = ap.parse_args()
    srv = EchoServer(args.server, "--shards=2", "--max-message=8MiB", "--grace=5s")
    r = Runner()
    try:
        for t in (test_unary_sizes, test_server_stream, test_client_stream, test_bidi,
                  test_concurrent_one_channel, test_concurrent_many_channels,
                  test_deadline, test_server_side_deadline, test_cancel,
                  test_unknown_method, test_message_limit, test_status_and_message,
                  test_no_leaks):
            r.run(t, srv)
        if not srv.alive():
            r.failed.append("server died")
        r.run(test_graceful_stop, srv)
        r.run(test_authorize_hook, args.server)
    finally:
        srv.kill()
    r.exit()


if __name__ == "__main__":
    main()
