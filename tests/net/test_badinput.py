# SPDX-License-Identifier: Apache-2.0
"""Bad input never crashes src/net nor hurts other connections.

Raw sockets against echo_server (127.0.0.1, port 0, idle timeout 3 s,
keepalive 1 s, preface timeout 1 s): garbage, HTTP/1.1, bad prefaces,
truncated and invalid frames, a 0xFFFFFFFF gRPC length prefix, 2000
streams opened and abandoned (and 2000 opened and reset), silent clients
and clients that trickle their preface, a reset in the middle of a
message, non-gRPC requests.  Each is refused or closed within socket
timeouts, and after each a normal grpcio call on a new channel succeeds.
At the end the server is alive, holds no call, and exits 0 on SIGTERM.
Then, on a server of 8 connections: a flood of connections that send
nothing does not lock a real client out (the oldest silent one makes
room), and connections past their preface are never displaced.

Run: /usr/bin/python3 test_badinput.py --server path/to/echo_server
"""

import argparse
import os
import random
import select
import socket
import struct
import sys
import threading
import time

sys.dont_write_bytecode = True  # keep the source tree clean
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

from netutil import (DATA, END_HEADERS, END_STREAM, GOAWAY, HEADERS, PING,  # noqa: E402
                     PREFACE, RST_STREAM, SETTINGS, EchoServer, H2Conn, Runner, frame,
                     grpc_headers, hpack_encode, read_raw_until_close, settings)

NO_ERROR, PROTOCOL_ERROR, REFUSED_STREAM, CANCEL = 0, 1, 7, 8


def raw(srv, timeout=10.0):
    return socket.create_connection(("127.0.0.1", srv.port), timeout=timeout)


def grpc_msg(body, flag=0):
    return bytes([flag]) + struct.pack(">I", len(body)) + body


def goaway_code(frames):
    for ftype, _, _, payload in frames:
        if ftype == GOAWAY:
            return struct.unpack(">II", payload[:8])[1]
    return None


def stream_answer(conn, sid, timeout=5.0):
    """Reads frames until stream sid is answered; returns (headers, data,
    trailers, rst_code) with headers/trailers as dicts."""
    headers, trailers, data, rst = None, None, b"", None
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        f = conn.read_frame()
        if f is None:
            break
        ftype, flags, fsid, payload = f
        if fsid != sid:
            continue
        if ftype == HEADERS:
            h = conn.headers_of(payload, flags)
            if headers is None:
                headers = h
            else:
                trailers = h
            if flags & END_STREAM:
                if trailers is None and "grpc-status" in headers:
                    trailers = headers  # trailers-only
                # an RST_STREAM may follow: peek at it briefly
                conn.sock.settimeout(0.1)
                try:
                    while True:
                        g = conn.read_frame()
                        if g is None:
                            break
                        if g[0] == RST_STREAM and g[2] == sid:
                            rst = struct.unpack(">I", g[3])[0]
                            break
                except socket.timeout:
                    pass
                finally:
                    conn.sock.settimeout(5.0)
                return headers, data, trailers, rst
        elif ftype == DATA:
            data += payload
        elif ftype == RST_STREAM:
            return headers, data, trailers, struct.unpack(">I", payload)[0]
    raise AssertionError("stream %d not answered" % sid)


# ---- cases -----------------------------------------------------------------

def test_garbage(srv):
    s = raw(srv)
    s.sendall(random.Random(7).randbytes(4096))
    assert read_raw_until_close(s) == b"", "nothing may be sent before a valid preface"
    s.close()
    srv.check_ok()


def test_http1(srv):
    s = raw(srv)
    s.sendall(b"GET / HTTP/1.1\r\nHost: localhost\r\nUser-Agent: test\r\n\r\n")
    out = read_raw_until_close(s)
    assert out.startswith(b"HTTP/1.1 505 "), out[:80]
    assert b"Connection: close" in out
    s.close()
    srv.check_ok()


def test_bad_preface(srv):
    for bad in (b"PRI * HTTP/2.0\r\n\r\nXX\r\n\r\n", b"PRI * HTTP/1.1\r\n\r\n", b"\x00" * 24,
                PREFACE[:10]):
        s = raw(srv)
        s.sendall(bad)
        if len(bad) < len(PREFACE):
            s.shutdown(socket.SHUT_WR)
        assert read_raw_until_close(s) == b""
        s.close()
    srv.check_ok()


def test_preface_then_bad_frames(srv):
    cases = [
        frame(DATA, 0, 0, b"x"),                    # first frame not SETTINGS
        settings() + frame(DATA, 0, 0, b"xyz"),      # DATA on stream 0
        settings() + frame(HEADERS, END_HEADERS, 2, b"\x82"),  # even stream id
        settings() + frame(SETTINGS, 0, 0, b"12345"),           # bad SETTINGS length
        settings() + frame(PING, 0, 0, b"1234"),                # bad PING length
        settings() + frame(HEADERS, END_HEADERS, 1, b"\xff\xff\xff\xff\xff"),  # bad HPACK
        settings() + random.Random(3).randbytes(3000),          # garbage frames
    ]
    for i, tail in enumerate(cases):
        c = H2Conn(srv.port)
        c.send(PREFACE + tail)
        frames = c.read_until_close()
        code = goaway_code(frames)
        assert code is not None and code != NO_ERROR, (i, frames[-3:])
        c.close()
    srv.check_ok()


def test_truncated_frame(srv):
    # Truncated, then the client ends: the server sees EOF and closes.
    c = H2Conn(srv.port)
    c.send(PREFACE + settings() + frame(DATA, 0, 1, b"x" * 100)[:40])
    c.sock.shutdown(socket.SHUT_WR)
    c.read_until_close()
    c.close()
    # Truncated, then silence: PINGed (keepalive 1 s), then closed idle (3 s).
    c = H2Conn(srv.port, timeout=20)
    headers = frame(HEADERS, END_HEADERS, 1, grpc_headers("/test.Echo/Unary"))
    c.send(PREFACE + settings() + headers[:30])
    t0 = time.monotonic()
    frames = c.read_until_close()
    took = time.monotonic() - t0
    assert any(f[0] == PING for f in frames), [f[0] for f in frames]
    assert 2 <= took < 15, took  # idle timeout 3 s, not before
    c.close()
    srv.check_ok()


def test_silent_client(srv):
    s = raw(srv, timeout=20)
    t0 = time.monotonic()
    assert read_raw_until_close(s) == b""
    took = time.monotonic() - t0
    assert 0.9 <= took < 5, took  # preface timeout 1 s, not before
    s.close()
    srv.check_ok()


def test_preface_deadline(srv):
    """The preface timeout counts from the accept: a client that sends only
    the magic (no SETTINGS), or trickles the preface a byte at a time, is
    closed as one that sends nothing."""
    before = srv.stats()["preface_timeouts"]
    magic = raw(srv, timeout=20)
    magic.sendall(PREFACE)
    trickle = raw(srv, timeout=20)
    t0 = time.monotonic()
    closed = False
    for i in range(len(PREFACE)):  # 24 bytes, one per 0.2 s: 4.8 s in all
        try:
            trickle.sendall(PREFACE[i:i + 1])
        except OSError:
            closed = True
            break
        r, _, _ = select.select([trickle], [], [], 0.2)
        if r:
            break  # EOF or reset: it was closed
    assert read_raw_until_close(trickle) == b"" or closed
    took = time.monotonic() - t0
    assert took < 3, took
    got = read_raw_until_close(magic)
    assert got == b"" or got.startswith(b"\x00\x00"), got[:20]  # our SETTINGS, maybe
    magic.close()
    trickle.close()
    srv.wait_stats(lambda st: st["preface_timeouts"] >= before + 2, "preface timeouts counted")
    srv.check_ok()


def test_huge_length_prefix(srv):
    c = H2Conn(srv.port)
    c.handshake()
    c.send(frame(HEADERS, END_HEADERS, 1, grpc_headers("/test.Echo/Unary")) +
           frame(DATA, 0, 1, b"\x00\xff\xff\xff\xff" + b"z" * 100))
    headers, data, trailers, rst = stream_answer(c, 1)
    assert headers[":status"] == "200", headers
    assert trailers["grpc-status"] == "8", trailers
    assert "exceeds" in trailers.get("grpc-message", ""), trailers
    assert data == b""
    assert rst == NO_ERROR, rst
    # The connection itself is fine: a real call on it works.
    c.send(frame(HEADERS, END_HEADERS, 3, grpc_headers("/test.Echo/Unary")) +
           frame(DATA, END_STREAM, 3, grpc_msg(b"ok")))
    headers, data, trailers, rst = stream_answer(c, 3)
    assert data == grpc_msg(b"ok"), data
    assert trailers["grpc-status"] == "0", trailers
    c.close()
    srv.check_ok()


def test_not_grpc(srv):
    c = H2Conn(srv.port)
    c.handshake()
    cases = [
        (grpc_headers("/test.Echo/Unary", method="PUT"), "405"),
        (grpc_headers("/test.Echo/Unary", content_type="application/json"), "415"),
        (grpc_headers("/test.Echo/Unary", content_type="application/grpcx"), "415"),
    ]
    sid = 1
    for block, status in cases:
        c.send(frame(HEADERS, END_HEADERS | END_STREAM, sid, block))
        headers, _, _, _ = stream_answer(c, sid)
        assert headers[":status"] == status, (status, headers)
        sid += 2
    grpc_cases = [
        # compressed flag without grpc-encoding
        (grpc_headers("/test.Echo/Unary"), grpc_msg(b"abc", flag=1), "12"),
        # unknown method, named in the message
        (grpc_headers("/x.Y/Z"), grpc_msg(b"abc"), "12"),
        # two messages on a unary method
        (grpc_headers("/test.Echo/Unary"), grpc_msg(b"a") + grpc_msg(b"b"), "3"),
        # no message on a unary method
        (grpc_headers("/test.Echo/Unary"), b"", "3"),
        # request ends inside a message
        (grpc_headers("/test.Echo/Unary"), grpc_msg(b"abcdef")[:7], "13"),
        # malformed grpc-timeout
        (grpc_headers("/test.Echo/Unary", extra=[("grpc-timeout", "12x")]), grpc_msg(b""),
         "13"),
        # the server's own deadline (grpc-timeout), seen by a client
        # that would wait forever: DEADLINE_EXCEEDED after 200 ms
        (grpc_headers("/test.Echo/Slow", extra=[("grpc-timeout", "200m")]),
         grpc_msg(struct.pack(">I", 5000)), "4"),
        (grpc_headers("/test.Echo/Slow", extra=[("grpc-timeout", "200000u")]),
         grpc_msg(struct.pack(">I", 5000)), "4"),
        # a deadline that is not reached
        (grpc_headers("/test.Echo/Slow", extra=[("grpc-timeout", "1S")]),
         grpc_msg(struct.pack(">I", 20)), "0"),
        # content-type with a suffix is gRPC
        (grpc_headers("/test.Echo/Unary", content_type="application/grpc+proto"),
         grpc_msg(b"fine"), "0"),
    ]
    for block, body, status in grpc_cases:
        c.send(frame(HEADERS, END_HEADERS, sid, block) + frame(DATA, END_STREAM, sid, body))
        headers, data, trailers, _ = stream_answer(c, sid)
        assert trailers and trailers.get("grpc-status") == status, (status, headers, trailers)
        if block == grpc_cases[1][0]:
            assert "/x.Y/Z" in trailers.get("grpc-message", ""), trailers
        sid += 2
    # An oversized header block resets that stream only.
    big = hpack_encode([(":method", "POST"), (":scheme", "http"), (":path", "/test.Echo/Unary"),
                        (":authority", "x"), ("content-type", "application/grpc"),
                        ("x-big", "v" * 15000), ("x-big2", "w" * 15000)])
    c.send(frame(HEADERS, END_HEADERS | END_STREAM, sid, big[:16000]) if len(big) <= 16384
           else frame(HEADERS, 0, sid, big[:16000]) + frame(9, END_HEADERS, sid, big[16000:]))
    _, _, _, rst = stream_answer(c, sid)
    assert rst is not None, "oversized header block not reset"
    sid += 2
    c.send(frame(HEADERS, END_HEADERS, sid, grpc_headers("/test.Echo/Unary")) +
           frame(DATA, END_STREAM, sid, grpc_msg(b"after")))
    _, data, trailers, _ = stream_answer(c, sid)
    assert data == grpc_msg(b"after") and trailers["grpc-status"] == "0", (data, trailers)
    c.close()
    srv.check_ok()


def _many_streams(srv, reset):
    c = H2Conn(srv.port, timeout=10)
    block = grpc_headers("/test.Echo/Unary")
    out = [PREFACE, settings()]
    for i in range(2000):
        sid = 1 + 2 * i
        out.append(frame(HEADERS, END_HEADERS, sid, block))
        if reset:
            out.append(frame(RST_STREAM, 0, sid, struct.pack(">I", CANCEL)))
    data = b"".join(out)
    sender = threading.Thread(target=lambda: c.send(data))
    sender.start()
    # Read what the server says (REFUSED_STREAM resets, perhaps a GOAWAY)
    # until it has been quiet for a moment.
    frames = []
    c.sock.settimeout(0.5)
    until = time.monotonic() + 1.5  # before the idle timeout (3 s)
    try:
        while time.monotonic() < until:
            f = c.read_frame()
            if f is None:
                break
            frames.append(f)
    except socket.timeout:
        pass
    sender.join(10)
    if not c.closed:
        st = srv.stats()
        # At most max_streams (100) calls held by this connection, + Stats.
        assert st["calls"] <= 101, st
    c.close()
    srv.wait_idle_calls()
    srv.check_ok()
    return frames


def test_many_streams_abandoned(srv):
    frames = _many_streams(srv, reset=False)
    refused = sum(1 for f in frames if f[0] == RST_STREAM and
                  struct.unpack(">I", f[3])[0] == REFUSED_STREAM)
    assert refused > 0 or goaway_code(frames) is not None, "stream limit not enforced"


def test_many_streams_reset(srv):
    _many_streams(srv, reset=True)


def test_reset_mid_message(srv):
    for n in range(5):
        c = H2Conn(srv.port)
        c.handshake()
        c.send(frame(HEADERS, END_HEADERS, 1, grpc_headers("/test.Echo/Bidi")) +
               frame(DATA, 0, 1, grpc_msg(b"whole")) +
               frame(DATA, 0, 1, grpc_msg(b"q" * 1000)[:100 + n]))
        time.sleep(0.05)
        c.sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
        c.close()  # RST
    srv.wait_idle_calls()
    srv.check_ok()


def test_client_goaway_and_leave(srv):
    c = H2Conn(srv.port)
    c.handshake()
    c.send(frame(HEADERS, END_HEADERS, 1, grpc_headers("/test.Echo/Slow")) +
           frame(DATA, END_STREAM, 1, grpc_msg(struct.pack(">I", 200) + b"late")) +
           frame(GOAWAY, 0, 0, struct.pack(">II", 0, NO_ERROR)))
    # The call in flight is still answered, then the server closes.
    _, data, trailers, _ = stream_answer(c, 1)
    assert data == grpc_msg(b"late") and trailers["grpc-status"] == "0", (data, trailers)
    c.read_until_close()
    c.close()
    srv.check_ok()


def test_limits(path):
    """A server with 4 calls and 3 connections: the 5th call gets a
    trailers-only RESOURCE_EXHAUSTED, connections over the limit are
    closed at once, and nothing else is disturbed."""
    srv = EchoServer(path, "--shards=1", "--max-calls=4", "--max-connections=3",
                     "--idle-timeout=3s")
    try:
        c = H2Conn(srv.port)
        c.handshake()
        block = grpc_headers("/test.Echo/Unary")
        for sid in (1, 3, 5, 7):  # held open: no END_STREAM
            c.send(frame(HEADERS, END_HEADERS, sid, block))
        c.send(frame(HEADERS, END_HEADERS, 9, block) +
               frame(DATA, END_STREAM, 9, grpc_msg(b"x")))
        _, _, trailers, _ = stream_answer(c, 9)
        assert trailers["grpc-status"] == "8", trailers
        assert "too many calls" in trailers.get("grpc-message", ""), trailers
        # Two more connections fit, the next two are refused.
        extra, refused = [], 0
        for _ in range(4):
            e = H2Conn(srv.port, timeout=2)
            e.handshake()
            f = e.read_frame()
            if f is None:
                refused += 1
            else:
                assert f[0] == SETTINGS, f
            extra.append(e)
        assert refused == 2, refused
        for e in extra:
            e.close()
        c.close()  # frees the 4 calls
        st = srv.wait_stats(lambda s: s["calls"] == 1 and s["connections"] == 1,
                            "limits released")
        assert st["refused"] == 2, st
        srv.check_ok()
        assert srv.stop() == 0
    finally:
        srv.kill()


def test_random_frames(srv):
    """300 connections of random frames (fixed seed) after a valid preface,
    some mixed with real gRPC requests; each is sent, then the socket is
    closed or reset.  The server must only survive and stay correct."""
    rnd = random.Random(1234)
    block = grpc_headers("/test.Echo/Bidi")
    for i in range(300):
        out = [PREFACE, settings()]
        for _ in range(rnd.randrange(1, 12)):
            sid = rnd.choice((0, 1, 3, 5, 2, 0x7FFFFFFF))
            kind = rnd.randrange(12)
            if kind == 10:
                out.append(frame(HEADERS, END_HEADERS, sid | 1, block))
            elif kind == 11:
                body = grpc_msg(rnd.randbytes(rnd.randrange(0, 50)))
                out.append(frame(DATA, rnd.choice((0, END_STREAM)), sid | 1,
                                 body[:rnd.randrange(0, len(body) + 1)]))
            else:
                out.append(frame(kind, rnd.randrange(256), sid,
                                 rnd.randbytes(rnd.randrange(0, 40))))
        s = raw(srv, timeout=5)
        try:
            s.sendall(b"".join(out))
        except OSError:
            pass
        if i % 3 == 0:
            s.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
        s.close()
    srv.wait_idle_calls()
    srv.check_ok()


def alive(sock):
    """True when sock is neither closed nor reset by the server (no byte is
    expected: the server sends nothing before the preface)."""
    sock.settimeout(0.3)
    try:
        return sock.recv(1) != b""
    except socket.timeout:
        return True
    except OSError:
        return False


def test_flood_of_silent_connections(path):
    """A pool of 8 connections per shard, a preface timeout of 60 s (so that
    only displacement can help): connections that send nothing fill it, yet
    a real client gets in, by closing the oldest silent one; a flood of 200
    more changes nothing; connections past their preface are never
    displaced, and a newcomer that finds only those is refused."""
    srv = EchoServer(path, "--shards=1", "--max-connections=8", "--preface-timeout=60s")
    try:
        silent = [raw(srv) for _ in range(8)]
        time.sleep(0.2)  # all accepted
        srv.check_ok()  # displaces silent[0]
        assert not alive(silent[0]), "the oldest silent connection was closed"
        assert all(alive(s) for s in silent[2:]), "only the oldest"
        flood = []
        for _ in range(200):
            flood.append(raw(srv))
        time.sleep(0.2)
        srv.check_ok()
        st = srv.stats()
        assert st["evicted"] >= 200, st
        assert st["refused"] == 0, st
        for s in silent + flood:
            s.close()
        srv.wait_stats(lambda st: st["connections"] == 1, "silent connections gone")

        # Eight connections past their preface: nothing to displace.  The
        # Stats channel wait_stats just closed holds its slot until the
        # server has seen the close, so a newcomer may be refused for a
        # moment: try again until it is in.
        ready = []
        for _ in range(8):
            deadline = time.monotonic() + 5
            while True:
                c = H2Conn(srv.port, timeout=5)
                c.handshake()
                f = c.read_frame()
                if f is not None or time.monotonic() > deadline:
                    break
                c.close()
                time.sleep(0.05)
            assert f is not None and f[0] == SETTINGS, f
            ready.append(c)
        late = raw(srv, timeout=5)
        assert read_raw_until_close(late) == b"", "refused at once"
        late.close()
        for c in ready:  # every one still answers a PING
            c.send(frame(PING, 0, 0, b"12345678"))
            while True:
                f = c.read_frame()
                assert f is not None, "a connection past its preface was closed"
                if f[0] == PING:
                    assert f[1] & 1 and f[3] == b"12345678", f
                    break
        ready.pop().close()
        st = srv.wait_stats(lambda st: st["connections"] <= 8, "one slot free")
        assert st["refused"] >= 1, st
        for c in ready:
            c.close()
        assert srv.stop() == 0
    finally:
        srv.kill()


def test_end(srv):
    assert srv.alive(), "echo_server died"
    st = srv.wait_idle_calls()
    assert st["protocol_errors"] > 0, st
    rc = srv.stop()
    assert rc == 0, "echo_server exit code %r" % rc


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--server", required=True)
    args = ap.parse_args()
    srv = EchoServer(args.server, "--shards=2", "--idle-timeout=3s", "--keepalive=1s",
                     "--max-streams=100")
    r = Runner()
    try:
        for t in (test_garbage, test_http1, test_bad_preface, test_preface_then_bad_frames,
                  test_truncated_frame, test_silent_client, test_preface_deadline,
                  test_huge_length_prefix,
                  test_not_grpc, test_many_streams_abandoned, test_many_streams_reset,
                  test_reset_mid_message, test_client_goaway_and_leave, test_random_frames):
            r.run(t, srv)
            if not srv.alive():
                r.failed.append("server died after " + t.__name__)
                break
        r.run(test_end, srv)
        r.run(test_limits, args.server)
        r.run(test_flood_of_silent_connections, args.server)
    finally:
        srv.kill()
    r.exit()


if __name__ == "__main__":
    main()
