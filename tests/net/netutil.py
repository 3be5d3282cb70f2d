# SPDX-License-Identifier: Apache-2.0
"""Helpers shared by the network tests: the echo_server process, its stats,
and hand-made HTTP/2 (frames, an HPACK encoder and decoder) for raw
sockets.  Standard library plus grpcio only."""

import os
import select
import signal
import socket
import struct
import subprocess
import sys
import time

import grpc

CHANNEL_OPTIONS = [
    ("grpc.max_receive_message_length", 64 << 20),
    ("grpc.max_send_message_length", 64 << 20),
    # A channel of its own: no TCP connection shared with other channels.
    ("grpc.use_local_subchannel_pool", 1),
]


class EchoServer:
    """echo_server as a child process; only this process is ever signalled
    (by its PID, through Popen)."""

    def __init__(self, path, *args):
        self.proc = subprocess.Popen([path, *args], stdout=subprocess.PIPE,
                                     stdin=subprocess.DEVNULL)
        self.port = None
        deadline = time.monotonic() + 15
        line = b""
        while time.monotonic() < deadline:
            r, _, _ = select.select([self.proc.stdout], [], [], 0.5)
            if r:
                line = self.proc.stdout.readline()
                if line.startswith(b"PORT "):
                    self.port = int(line.split()[1])
                    break
                if not line:
                    break
            if self.proc.poll() is not None:
                break
        if self.port is None:
            self.kill()
            raise RuntimeError("echo_server did not report its port (%r)" % line)
        self.target = "127.0.0.1:%d" % self.port

    def alive(self):
        return self.proc.poll() is None

    def channel(self):
        return grpc.insecure_channel(self.target, options=CHANNEL_OPTIONS)

    def stop(self, timeout=30):
        """SIGTERM, then the exit code (None if it had to be killed)."""
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
        try:
            return self.proc.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            self.kill()
            return None

    def kill(self):
        if self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait()

    def stats(self):
        with self.channel() as ch:
            text = ch.unary_unary("/test.Echo/Stats")(b"", timeout=10).decode()
        return {k: int(v) for k, v in (kv.split("=") for kv in text.split())}

    def wait_stats(self, pred, what, timeout=10):
        """Polls Stats until pred(stats) holds; returns the stats."""
        deadline = time.monotonic() + timeout
        st = self.stats()
        while not pred(st):
            if time.monotonic() > deadline:
                raise AssertionError("%s: not reached within %ss: %r" % (what, timeout, st))
            time.sleep(0.05)
            st = self.stats()
        return st

    def wait_idle_calls(self, timeout=10):
        # The Stats call itself is the one call in flight.
        return self.wait_stats(lambda s: s["calls"] == 1, "calls back to 0", timeout)

    def check_ok(self):
        """A normal call on a new channel succeeds."""
        with self.channel() as ch:
            r = ch.unary_unary("/test.Echo/Unary")(b"still alive", timeout=10)
        assert r == b"still alive", r


class Runner:
    """A tiny test runner: each test a function, failures counted."""

    def __init__(self):
        self.failed = []

    def run(self, fn, *args):
        name = fn.__name__
        t0 = time.monotonic()
        try:
            fn(*args)
        except Exception as e:  # noqa: BLE001 - report every failure
            import traceback
            traceback.print_exc()
            self.failed.append(name)
            print("FAIL %s: %s" % (name, e), flush=True)
            return
        print("ok   %s (%.2fs)" % (name, time.monotonic() - t0), flush=True)

    def exit(self):
        if self.failed:
            print("%d failed: %s" % (len(self.failed), ", ".join(self.failed)))
            sys.exit(1)
        print("all passed")
        sys.exit(0)


# ---- raw HTTP/2 ------------------------------------------------------------

PREFACE = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n"
DATA, HEADERS, PRIORITY, RST_STREAM, SETTINGS, PUSH_PROMISE, PING, GOAWAY, \
    WINDOW_UPDATE, CONTINUATION = range(10)
END_STREAM, ACK, END_HEADERS = 0x1, 0x1, 0x4


def frame(ftype, flags, sid, payload=b""):
    n = len(payload)
    return struct.pack(">BHBBI", n >> 16, n & 0xFFFF, ftype, flags, sid) + payload


def settings(pairs=(), ack=False):
    return frame(SETTINGS, ACK if ack else 0, 0,
                 b"".join(struct.pack(">HI", k, v) for k, v in pairs))


def _hpack_int(value, prefix_bits, first=0):
    limit = (1 << prefix_bits) - 1
    if value < limit:
        return bytes([first | value])
    out = [first | limit]
    value -= limit
    while value >= 128:
        out.append((value & 127) | 128)
        value >>= 7
    out.append(value)
    return bytes(out)


def hpack_encode(headers):
    """Literal header fields without indexing, no Huffman: stateless."""
    out = b""
    for name, value in headers:
        name = name.encode() if isinstance(name, str) else name
        value = value.encode() if isinstance(value, str) else value
        out += b"\x00" + _hpack_int(len(name), 7) + name + _hpack_int(len(value), 7) + value
    return out


def grpc_headers(path, content_type="application/grpc", method="POST", extra=()):
    return hpack_encode([(":method", method), (":scheme", "http"), (":path", path),
                         (":authority", "localhost"), ("content-type", content_type),
                         ("te", "trailers"), *extra])


# RFC 7541 static table (index 1..61).
_STATIC = [
    (":authority", ""), (":method", "GET"), (":method", "POST"), (":path", "/"),
    (":path", "/index.html"), (":scheme", "http"), (":scheme", "https"), (":status", "200"),
    (":status", "204"), (":status", "206"), (":status", "304"), (":status", "400"),
    (":status", "404"), (":status", "500"), ("accept-charset", ""),
    ("accept-encoding", "gzip, deflate"), ("accept-language", ""), ("accept-ranges", ""),
    ("accept", ""), ("access-control-allow-origin", ""), ("age", ""), ("allow", ""),
    ("authorization", ""), ("cache-control", ""), ("content-disposition", ""),
    ("content-encoding", ""), ("content-language", ""), ("content-length", ""),
    ("content-location", ""), ("content-range", ""), ("content-type", ""), ("cookie", ""),
    ("date", ""), ("etag", ""), ("expect", ""), ("expires", ""), ("from", ""), ("host", ""),
    ("if-match", ""), ("if-modified-since", ""), ("if-none-match", ""), ("if-range", ""),
    ("if-unmodified-since", ""), ("last-modified", ""), ("link", ""), ("location", ""),
    ("max-forwards", ""), ("proxy-authenticate", ""), ("proxy-authorization", ""),
    ("range", ""), ("referer", ""), ("refresh", ""), ("retry-after", ""), ("server", ""),
    ("set-cookie", ""), ("strict-transport-security", ""), ("transfer-encoding", ""),
    ("user-agent", ""), ("vary", ""), ("via", ""), ("www-authenticate", ""),
]

# The HPACK Huffman code is canonical: code lengths of symbols 0..256
# (as chr(ord('a') + length - 5)) are all it takes to rebuild it.
_HUFF_LENGTHS = (
    "isxxxxxxxtzxxzxxxxxxxxzxxxxxxxxxbffhibdgffdgdbbbaaabbbbbbbcdkbhfibccccccccccccccccc"
    "cccccdcdioijbkabababbbaccbbbabcbaabccccckgjixprpprrrsrssssststtrstssssqrsrsstrqprrss"
    "qsrrtqrssqqrqsrssprrrsrrsvvporsruvvvwwvtuoqvwwvwtqqvvxwwwptpqrqqsrruuttvsvwvvwwwwwxw"
    "wwwwvz")


def _huff_table():
    lens = [ord(ch) - ord("a") + 5 for ch in _HUFF_LENGTHS]
    assert len(lens) == 257
    table, code, prev = {}, 0, None
    for sym in sorted(range(257), key=lambda s: (lens[s], s)):
        if prev is not None:
            code = (code + 1) << (lens[sym] - prev)
        prev = lens[sym]
        table[(lens[sym], code)] = sym
    return table


_HUFF = _huff_table()


def _huff_decode(data):
    out, code, n = bytearray(), 0, 0
    for byte in data:
        for i in range(7, -1, -1):
            code = (code << 1) | ((byte >> i) & 1)
            n += 1
            sym = _HUFF.get((n, code))
            if sym is not None:
                if sym == 256:
                    raise ValueError("EOS in Huffman string")
                out.append(sym)
                code, n = 0, 0
    if n > 7 or code != (1 << n) - 1:
        raise ValueError("bad Huffman padding")
    return bytes(out)


class HpackDecoder:
    def __init__(self):
        self.dynamic = []  # newest first
        self.max_size = 4096

    def _evict(self):
        while sum(len(n) + len(v) + 32 for n, v in self.dynamic) > self.max_size:
            self.dynamic.pop()

    def _int(self, data, pos, prefix_bits):
        limit = (1 << prefix_bits) - 1
        value = data[pos] & limit
        pos += 1
        if value < limit:
            return value, pos
        shift = 0
        while True:
            b = data[pos]
            pos += 1
            value += (b & 127) << shift
            shift += 7
            if not b & 128:
                return value, pos

    def _str(self, data, pos):
        huff = data[pos] & 0x80
        n, pos = self._int(data, pos, 7)
        raw = bytes(data[pos:pos + n])
        return (_huff_decode(raw) if huff else raw).decode("latin-1"), pos + n

    def _entry(self, idx):
        if idx <= len(_STATIC):
            return _STATIC[idx - 1]
        return self.dynamic[idx - len(_STATIC) - 1]

    def decode(self, data):
        headers, pos = [], 0
        while pos < len(data):
            b = data[pos]
            if b & 0x80:
                idx, pos = self._int(data, pos, 7)
                headers.append(self._entry(idx))
            elif b & 0x40 or (b & 0xF0) in (0x00, 0x10):
                indexing = bool(b & 0x40)
                idx, pos = self._int(data, pos, 6 if indexing else 4)
                if idx:
                    name = self._entry(idx)[0]
                else:
                    name, pos = self._str(data, pos)
                value, pos = self._str(data, pos)
                headers.append((name, value))
                if indexing:
                    self.dynamic.insert(0, (name, value))
                    self._evict()
            elif b & 0x20:
                self.max_size, pos = self._int(data, pos, 5)  # table size update
                self._evict()
            else:
                raise ValueError("bad HPACK byte 0x%02x" % b)
        return headers


class H2Conn:
    """A raw HTTP/2 client connection: sends bytes, reads frames."""

    def __init__(self, port, timeout=5.0):
        self.sock = socket.create_connection(("127.0.0.1", port), timeout=timeout)
        self.buf = b""
        self.hpack = HpackDecoder()
        self.closed = False

    def send(self, data):
        self.sock.sendall(data)

    def handshake(self):
        self.send(PREFACE + settings())

    def _fill(self):
        try:
            chunk = self.sock.recv(65536)
        except (ConnectionResetError, BrokenPipeError):
            chunk = b""
        if not chunk:
            self.closed = True
        self.buf += chunk
        return bool(chunk)

    def read_frame(self):
        """The next frame as (type, flags, stream, payload), or None at EOF.
        Raises socket.timeout when the server neither speaks nor closes."""
        while len(self.buf) < 9:
            if not self._fill():
                return None
        n = int.from_bytes(self.buf[:3], "big")
        while len(self.buf) < 9 + n:
            if not self._fill():
                return None
        ftype, flags, sid = self.buf[3], self.buf[4], \
            int.from_bytes(self.buf[5:9], "big") & 0x7FFFFFFF
        payload, self.buf = self.buf[9:9 + n], self.buf[9 + n:]
        if ftype == SETTINGS and not flags & ACK:
            try:
                self.send(settings(ack=True))
            except OSError:
                pass  # our write side is shut: the test wants that
        return ftype, flags, sid, payload

    def headers_of(self, payload, flags):
        if flags & 0x8:  # PADDED
            payload = payload[1:len(payload) - payload[0]]
        if flags & 0x20:  # PRIORITY
            payload = payload[5:]
        return dict(self.hpack.decode(payload))

    def read_until_close(self):
        """Reads frames until EOF; returns them."""
        frames = []
        while True:
            f = self.read_frame()
            if f is None:
                return frames
            frames.append(f)

    def close(self):
        try:
            self.sock.close()
        except OSError:
            pass


def read_raw_until_close(sock):
    """All bytes until EOF (a reset counts as EOF)."""
    out = b""
    while True:
        try:
            chunk = sock.recv(65536)
        except (ConnectionResetError, BrokenPipeError):
            return out
        if not chunk:
            return out
        out += chunk


def script_dir():
    return os.path.dirname(os.path.abspath(__file__))
