#!/usr/bin/python3
# SPDX-License-Identifier: Apache-2.0
"""End-to-end tests of one rmqd node, driven by a client nobody here wrote.

Starts `rmqd --listen 127.0.0.1:0 --data-dir <tmp> --cores 2` as a
subprocess, reads its port from the start-up line on stderr, and talks to it
with grpcio's generic calls (unary_unary / unary_stream / stream_stream) and
message classes compiled from proto/ at test time (Debian's protoc into a
temporary directory).  Covers ProducerService (Produce, ProduceBatch with
client-computed CRC-32C, ProduceStream), ConsumerService (Fetch long polls,
size limits, FetchBatch, Subscribe), MetadataService, AdminService,
grpc.health.v1, BrokerHealthService, errors, deadlines and cancellation,
compression, a clean restart, and kill -9 under load.

Run with Debian's /usr/bin/python3 (python3-grpcio, python3-protobuf; the
compression tests also use python3-lz4, python3-zstandard and python3-snappy
and skip the decompression checks when those are missing):

    /usr/bin/python3 tests/broker/test_node.py --rmqd build/release/rmqd \
        --proto-dir proto [--only NAME] [-v]

The output ends with "N passed, N failed, N skipped"; the exit status is 0
only when nothing failed.  rmqd is always stopped: SIGTERM (exit status 0
is a test), or SIGKILL by PID on any failure path and at exit.  The node
runs with 256 KiB segments (each partition preallocates a whole segment,
and small ones make the logs roll under the produce tests).

On failure the rmqd logs stay in the temporary directory (--keep keeps
the data too).
"""
import argparse
import atexit
import importlib
import importlib.util
import os
import pathlib
import queue
import random
import re
import shutil
import signal
import struct
import subprocess
import sys
import tempfile
import threading
import time
import traceback

import grpc

# ---------------------------------------------------------------------------
# Protocol modules (filled by load_protos)

T = E = CM = P = C = MD = A = H = GH = None  # noqa: E741

ACK_NONE, ACK_LEADER, ACK_MAJORITY, ACK_ALL = 0, 1, 2, 3
COMP_NONE, COMP_LZ4, COMP_ZSTD, COMP_SNAPPY = 0, 1, 2, 3

# rustmq.common.ErrorCode values the tests check.
OK = 0
INVALID_REQUEST = 2
TOPIC_NOT_FOUND = 9
PARTITION_NOT_FOUND = 10
OFFSET_OUT_OF_RANGE = 11
CORRUPT_MESSAGE = 12
INVALID_TOPIC = 14
TOPIC_ALREADY_EXISTS = 15
INVALID_PARTITIONS = 16
INVALID_CONFIG = 18
UNSUPPORTED_VERSION = 33
POLICY_VIOLATION = 44


def load_protos(proto_dir: pathlib.Path, out: pathlib.Path):
    global T, E, CM, P, C, MD, A, H, GH
    protos = sorted(str(p.relative_to(proto_dir)) for p in proto_dir.rglob("*.proto"))
    out.mkdir(parents=True, exist_ok=True)
    subprocess.run(["protoc", "--fatal_warnings", f"-I{proto_dir}", "-I/usr/include",
                    f"--python_out={out}", *protos], check=True, cwd=proto_dir)
    sys.path.insert(0, str(out))
    T = importlib.import_module("common.types_pb2")
    E = importlib.import_module("common.errors_pb2")
    CM = importlib.import_module("common.metadata_pb2")
    P = importlib.import_module("client.producer_pb2")
    C = importlib.import_module("client.consumer_pb2")
    MD = importlib.import_module("client.metadata_pb2")
    A = importlib.import_module("controller.admin_pb2")
    H = importlib.import_module("broker.health_pb2")
    # grpcio owns the "grpc" package name: load the vendored health module
    # by path (tests/proto/check_python.py does the same).
    path = out / "grpc" / "health" / "v1" / "health_pb2.py"
    spec = importlib.util.spec_from_file_location("rmq_grpc_health_v1_health_pb2", path)
    GH = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(GH)


def V():
    return T.ApiVersion(major=1)


def ecname(code):
    try:
        return E.ErrorCode.Name(code)
    except Exception:  # noqa: BLE001
        return str(code)


# ---------------------------------------------------------------------------
# CRC-32C (Castagnoli, reflected 0x82F63B78, init and xor-out 0xFFFFFFFF)

def _crc_table():
    tab = []
    for i in range(256):
        c = i
        for _ in range(8):
            c = (c >> 1) ^ 0x82F63B78 if c & 1 else c >> 1
        tab.append(c)
    return tab


_CRC_TAB = _crc_table()


def crc32c(data: bytes) -> int:
    crc = 0xFFFFFFFF
    tab = _CRC_TAB
    for b in data:
        crc = tab[(crc ^ b) & 0xFF] ^ (crc >> 8)
    return crc ^ 0xFFFFFFFF


assert crc32c(b"123456789") == 0xE3069283


# ---------------------------------------------------------------------------
# Protobuf wire helpers: what is on the wire, byte for byte

def varint(n: int) -> bytes:
    out = bytearray()
    while True:
        b = n & 0x7F
        n >>= 7
        if n:
            out.append(b | 0x80)
        else:
            out.append(b)
            return bytes(out)


def read_varint(buf, pos):
    shift = 0
    val = 0
    while True:
        if pos >= len(buf):
            raise ValueError("truncated varint")
        b = buf[pos]
        pos += 1
        val |= (b & 0x7F) << shift
        if not b & 0x80:
            return val, pos
        shift += 7
        if shift > 63:
            raise ValueError("varint too long")


def wire_fields(buf):
    """Yields (field, wiretype, value, start, end) for each top-level field;
    value is the int for varint/fixed and the bytes for LEN; start..end is
    the whole field (key included)."""
    pos = 0
    while pos < len(buf):
        start = pos
        key, pos = read_varint(buf, pos)
        fn, wt = key >> 3, key & 7
        if wt == 0:
            val, pos = read_varint(buf, pos)
        elif wt == 1:
            val = struct.unpack_from("<Q", buf, pos)[0]
            pos += 8
        elif wt == 2:
            n, pos = read_varint(buf, pos)
            if pos + n > len(buf):
                raise ValueError("truncated LEN field")
            val = bytes(buf[pos:pos + n])
            pos += n
        elif wt == 5:
            val = struct.unpack_from("<I", buf, pos)[0]
            pos += 4
        else:
            raise ValueError(f"wire type {wt}")
        yield fn, wt, val, start, pos


def records_bytes_of_records(records) -> bytes:
    """The "records bytes" of an uncompressed batch: every field-7 element."""
    out = bytearray()
    for r in records:
        s = r.SerializeToString()
        out += b"\x3a" + varint(len(s)) + s
    return bytes(out)


def stored_records_bytes(batch_raw: bytes):
    """Splits a RecordBatch encoding as stored: returns (records_bytes,
    compressed) where records_bytes is the CRC input.  Asserts the stored
    form of batch.h: header fields first, the payload last and contiguous."""
    first7 = None
    seen9 = None
    last_end = 0
    for fn, wt, val, start, end in wire_fields(batch_raw):
        if fn == 7:
            if first7 is None:
                first7 = start
            assert seen9 is None, "field 7 after field 9"
        elif fn == 9:
            assert first7 is None, "field 9 with field 7"
            seen9 = val
        else:
            assert first7 is None and seen9 is None, \
                f"header field {fn} after the records payload (batch.h: payload last)"
        last_end = end
    assert last_end == len(batch_raw)
    if seen9 is not None:
        return seen9, True
    return (bytes(batch_raw[first7:]) if first7 is not None else b""), False


def split_fetch_raw(raw: bytes):
    """FetchResponse bytes -> list (per partition, in order) of lists of
    RecordBatch encodings as sent."""
    parts = []
    for fn, wt, val, _, _ in wire_fields(raw):
        if fn == 3:
            batches = [v for f, w, v, _, _ in wire_fields(val) if f == 6]
            parts.append(batches)
    return parts


# ---------------------------------------------------------------------------
# Codecs (optional Debian packages)

def codec_modules():
    mods = {}
    try:
        import lz4.frame  # noqa: F401
        mods[COMP_LZ4] = ("lz4", lambda d: lz4.frame.compress(d, store_size=True),
                          lambda d: lz4.frame.decompress(d))
    except ImportError:
        pass
    try:
        import zstandard
        mods[COMP_ZSTD] = ("zstd",
                           lambda d: zstandard.ZstdCompressor(write_content_size=True).compress(d),
                           lambda d: zstandard.ZstdDecompressor().decompress(d))
    except ImportError:
        pass
    try:
        import snappy
        mods[COMP_SNAPPY] = ("snappy", snappy.compress, snappy.decompress)
    except ImportError:
        pass
    return mods


# ---------------------------------------------------------------------------
# Test plumbing

def single_main(name, run):
    """main() of a test of one case on nodes it starts itself: flags
    --rmqd, --rmq, --proto-dir, --keep, -v; run(args, tmp) in a temporary
    directory with the protocol loaded; PASS or FAIL and the summary line.
    Returns the exit status."""
    ap = argparse.ArgumentParser()
    ap.add_argument("--rmqd", required=True)
    ap.add_argument("--rmq", required=True)
    ap.add_argument("--proto-dir", required=True)
    ap.add_argument("--keep", action="store_true")
    ap.add_argument("-v", "--verbose", action="store_true")
    args = ap.parse_args()
    tmp = tempfile.mkdtemp(prefix=f"rmq-{name}-test-")
    failed = 0
    try:
        load_protos(pathlib.Path(args.proto_dir).resolve(), pathlib.Path(tmp) / "py")
        run(args, tmp)
        print(f"PASS {name}", flush=True)
    except Exception as e:  # noqa: BLE001
        print(f"FAIL {name}: {type(e).__name__}: {e}", flush=True)
        traceback.print_exc()
        failed = 1
    finally:
        if args.keep or failed:
            print(f"logs kept in {tmp}")
        else:
            shutil.rmtree(tmp, ignore_errors=True)
    print(f"{1 - failed} passed, {failed} failed, 0 skipped")
    return failed


class Skip(Exception):
    pass


def check(cond, msg="check failed"):
    if not cond:
        raise AssertionError(msg)


def eq(a, b, what=""):
    if a != b:
        raise AssertionError(f"{what}: expected {b!r}, got {a!r}")


def ok(resp, what=""):
    code = resp.error_code
    if code != OK:
        raise AssertionError(f"{what}: {ecname(code)}: {getattr(resp, 'error_message', '')}")
    return resp


def expect_code(resp, code, what=""):
    if resp.error_code != code:
        raise AssertionError(f"{what}: expected {ecname(code)}, got {ecname(resp.error_code)}"
                             f" ({getattr(resp, 'error_message', '')!r})")
    if code != OK:
        check(getattr(resp, "error_message", "x") != "", f"{what}: {ecname(code)} without error_message")


def expect_status(fn, code, what=""):
    try:
        fn()
    except grpc.RpcError as e:
        if e.code() != code:
            raise AssertionError(f"{what}: expected {code}, got {e.code()}: {e.details()}") from None
        return e
    raise AssertionError(f"{what}: expected status {code}, the call succeeded")


def wait_until(pred, timeout, what, step=0.05):
    end = time.monotonic() + timeout
    while True:
        v = pred()
        if v:
            return v
        if time.monotonic() > end:
            raise AssertionError(f"timed out after {timeout}s waiting for {what}")
        time.sleep(step)


def ms_duration(ms):
    from google.protobuf import duration_pb2
    d = duration_pb2.Duration()
    d.FromMilliseconds(int(ms))
    return d


def ts(ms):
    from google.protobuf import timestamp_pb2
    t = timestamp_pb2.Timestamp()
    t.FromMilliseconds(int(ms))
    return t


def make_records(n, tag="r", size=40, headers=True, rnd=None):
    rnd = rnd or random.Random(hash(tag) & 0xFFFF)
    now = int(time.time() * 1000)
    out = []
    for i in range(n):
        r = T.Record(key=f"{tag}-key-{i}".encode(),
                     value=f"{tag}-{i}-".encode() + rnd.randbytes(size),
                     timestamp=ts(now + i))
        if headers:
            r.headers.add(key="h1", value=f"v{i}".encode())
            r.headers.add(key="empty", value=b"")
        out.append(r)
    return out


# ---------------------------------------------------------------------------
# The node

_live_procs = set()


def _kill_all():
    for p in list(_live_procs):
        try:
            os.kill(p.pid, signal.SIGKILL)
            p.wait(timeout=10)
        except Exception:  # noqa: BLE001
            pass
        _live_procs.discard(p)


atexit.register(_kill_all)

START_RE = re.compile(r"rmqd \S+ serving on \S+:(\d+) with (\d+) shards")


def wait_core_dump(p, timeout=60):
    """A process that crashed is still alive while the kernel writes its
    core: killing it then truncates the core.  Let the dump finish."""
    end = time.monotonic() + timeout
    while p.poll() is None and time.monotonic() < end:
        try:
            with open(f"/proc/{p.pid}/status") as f:
                dumping = any(l.startswith("CoreDumping:") and l.split()[1] == "1" for l in f)
        except OSError:
            return
        if not dumping:
            return
        time.sleep(0.1)


class Node:
    def __init__(self, binary, data_dir, log_dir, verbose=False):
        self.binary = binary
        self.data_dir = data_dir
        self.log_dir = log_dir
        self.verbose = verbose
        self.proc = None
        self.port = None
        self.shards = None
        self.lines = []
        self.starts = 0
        self.reader = None
        # What runs rmqd, e.g. ("ip", "netns", "exec", NS): it must exec
        # rmqd, so that the PID is rmqd's (test_faults.py net_partition).
        self.prefix = ()

    def start(self, extra=()):
        assert self.proc is None
        self.starts += 1
        self.lines = []
        # Small segments: every partition preallocates one whole segment
        # (1 GiB by default), and small ones make the logs roll, so restarts
        # and kill -9 recover logs of several segments.
        args = [*self.prefix, self.binary, "--listen", "127.0.0.1:0", "--data-dir", self.data_dir,
                "--cores", "2", "--log-level", "info", "--segment-bytes", "256KiB", *extra]
        logf = open(os.path.join(self.log_dir, f"rmqd-{self.starts}.log"), "w")
        self.proc = subprocess.Popen(args, stdin=subprocess.DEVNULL, stdout=logf,
                                     stderr=subprocess.PIPE)
        _live_procs.add(self.proc)
        got = threading.Event()

        def read(proc=self.proc, lines=self.lines):
            for raw in proc.stderr:
                line = raw.decode(errors="replace").rstrip("\n")
                lines.append(line)
                logf.write(line + "\n")
                logf.flush()
                if self.verbose:
                    print("  rmqd| " + line, flush=True)
                m = START_RE.search(line)
                if m and not got.is_set():
                    self.port = int(m.group(1))
                    self.shards = int(m.group(2))
                    got.set()
            logf.close()

        self.port = None
        self.reader = threading.Thread(target=read, daemon=True)
        self.reader.start()
        end = time.monotonic() + 60
        while not got.wait(0.05):
            if self.proc.poll() is not None or time.monotonic() > end:
                rc = self.proc.poll()
                self.kill()
                raise AssertionError(f"rmqd did not start (exit status {rc}):\n" + self.tail())
        return self

    @property
    def addr(self):
        return f"127.0.0.1:{self.port}"

    def alive(self):
        return self.proc is not None and self.proc.poll() is None

    def tail(self, n=40):
        return "\n".join("    " + l for l in self.lines[-n:])

    def stop(self, timeout=30):
        """SIGTERM; returns the exit status (kills on timeout)."""
        p = self.proc
        if p is None:
            return None
        if p.poll() is None:
            p.send_signal(signal.SIGTERM)
        try:
            rc = p.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            self.kill()
            raise AssertionError(f"rmqd did not exit within {timeout}s of SIGTERM:\n" + self.tail())
        self.reader.join(5)
        _live_procs.discard(p)
        self.proc = None
        return rc

    def kill(self):
        p = self.proc
        if p is None:
            return
        wait_core_dump(p)
        try:
            os.kill(p.pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
        try:
            p.wait(timeout=20)
        except subprocess.TimeoutExpired:
            pass
        if self.reader:
            self.reader.join(5)
        _live_procs.discard(p)
        self.proc = None


# ---------------------------------------------------------------------------
# A client: generic calls, message classes from proto/

def _ident(b):
    return b


class Client:
    def __init__(self, addr, own_connection=False, creds=None):
        """own_connection: a TCP connection of its own (grpcio shares one
        between channels to the same address otherwise), so that what the
        node does to this client's connection touches no other client.
        creds: grpc.ssl_channel_credentials for TLS, else plaintext."""
        self.addr = addr
        opts = [
            ("grpc.max_receive_message_length", 64 << 20),
            ("grpc.max_send_message_length", 64 << 20),
            ("grpc.enable_retries", 0),
            *([("grpc.use_local_subchannel_pool", 1)] if own_connection else []),
        ]
        self.ch = (grpc.secure_channel(addr, creds, options=opts) if creds
                   else grpc.insecure_channel(addr, options=opts))

    def close(self):
        self.ch.close()

    def __enter__(self):
        return self

    def __exit__(self, *a):
        self.close()

    # generic
    def unary(self, path, req, resp_cls, timeout=15.0):
        f = self.ch.unary_unary(path, request_serializer=lambda m: m.SerializeToString(),
                                response_deserializer=resp_cls.FromString)
        return f(req, timeout=timeout)

    def unary_raw(self, path, data: bytes, timeout=15.0):
        f = self.ch.unary_unary(path, request_serializer=_ident, response_deserializer=_ident)
        return f(data, timeout=timeout)

    def server_stream(self, path, req, resp_cls, timeout=60.0):
        f = self.ch.unary_stream(path, request_serializer=lambda m: m.SerializeToString(),
                                 response_deserializer=resp_cls.FromString)
        return f(req, timeout=timeout)

    def bidi(self, path, req_iter, resp_cls, timeout=60.0):
        f = self.ch.stream_stream(path, request_serializer=lambda m: m.SerializeToString(),
                                  response_deserializer=resp_cls.FromString)
        return f(req_iter, timeout=timeout)

    # producer
    def produce(self, topic, part, records, acks=ACK_LEADER, timeout=15.0, **kw):
        req = P.ProduceRequest(version=V(), client_id="test", acks=acks,
                               topic_partition=T.TopicPartition(topic=topic, partition=part),
                               records=records, **kw)
        return self.unary("/rustmq.client.ProducerService/Produce", req, P.ProduceResponse,
                          timeout)

    def produce_batch(self, items, acks=ACK_LEADER, timeout=15.0, **kw):
        """items: list of (topic, partition, RecordBatch)."""
        req = P.ProduceBatchRequest(version=V(), client_id="test", acks=acks, **kw)
        for topic, part, b in items:
            req.partitions.add(topic_partition=T.TopicPartition(topic=topic, partition=part),
                               batch=b)
        return self.unary("/rustmq.client.ProducerService/ProduceBatch", req,
                          P.ProduceBatchResponse, timeout)

    # consumer
    def fetch_req(self, parts, max_wait_ms=0, min_bytes=0, max_bytes=0, replica_id=0xFFFFFFFF):
        req = C.FetchRequest(version=V(), client_id="test", replica_id=replica_id,
                             min_bytes=min_bytes, max_bytes=max_bytes)
        if max_wait_ms:
            req.max_wait.CopyFrom(ms_duration(max_wait_ms))
        for p in parts:
            topic, part, off = p[0], p[1], p[2]
            pmax = p[3] if len(p) > 3 else 0
            req.partitions.add(topic_partition=T.TopicPartition(topic=topic, partition=part),
                               fetch_offset=off, partition_max_bytes=pmax)
        return req

    def fetch(self, parts, max_wait_ms=0, min_bytes=0, max_bytes=0, timeout=15.0,
              replica_id=0xFFFFFFFF):
        """Returns (FetchResponse, raw batches per partition).  A
        replica_id naming a broker reads this node's replica to its log end
        (fetch.c, "Replica reads")."""
        req = self.fetch_req(parts, max_wait_ms, min_bytes, max_bytes, replica_id)
        raw = self.unary("/rustmq.client.ConsumerService/Fetch", req, _RawMsg, timeout).raw
        resp = C.FetchResponse.FromString(raw)
        rawparts = split_fetch_raw(raw)
        eq(len(rawparts), len(resp.partitions), "raw partitions")
        return resp, rawparts

    def fetch_all(self, topic, part, start=0, pmax=0, replica_id=None):
        """Every batch from `start` to the high watermark (with
        replica_id, a broker's id: to this node's replica's log end): list
        of (RecordBatch, raw encoding)."""
        out = []
        off = start
        for _ in range(100000):
            resp, raw = self.fetch([(topic, part, off, pmax)],
                                   replica_id=0xFFFFFFFF if replica_id is None else replica_id)
            ok(resp, "fetch")
            pr = resp.partitions[0]
            ok(pr, f"fetch {topic}-{part}@{off}")
            if not pr.batches:
                check(replica_id is not None or off == pr.high_watermark,
                      f"no batches at {off} below the high watermark {pr.high_watermark}")
                return out
            for b, r in zip(pr.batches, raw[0]):
                out.append((b, r))
            last = pr.batches[-1]
            off = last.base_offset + last.record_count
        raise AssertionError("fetch_all did not end")

    # admin
    def create_topics(self, topics, validate_only=False):
        req = A.CreateTopicsRequest(version=V(), validate_only=validate_only)
        for t in topics:
            name, parts = t[0], t[1]
            cfgs = t[2] if len(t) > 2 else {}
            ct = req.topics.add(name=name, partitions=parts)
            for k, v in cfgs.items():
                ct.configs.add(name=k, value=v)
        return self.unary("/rustmq.controller.AdminService/CreateTopics", req,
                          A.CreateTopicsResponse)

    def create_topic(self, name, parts=1, configs=None):
        r = ok(self.create_topics([(name, parts, configs or {})]), "CreateTopics")
        eq(len(r.topics), 1, "CreateTopics results")
        ok(r.topics[0], f"create {name}")
        return r.topics[0]

    def metrics(self, names=()):
        req = H.MetricsRequest(version=V(), metric_names=list(names))
        return self.unary("/rustmq.broker.BrokerHealthService/GetMetrics", req,
                          H.MetricsResponse)

    def metric_totals(self, *names):
        """Each metric's value summed over its label sets (shards)."""
        m = self.metrics(list(names))
        return {n: int(sum(x.value for x in m.metrics if x.name == n)) for n in names}

    def calls_in_flight(self):
        r = self.metrics(["rmq_calls"])
        vals = [m.value for m in r.metrics if m.name == "rmq_calls"]
        check(vals, "GetMetrics returned no rmq_calls samples")
        return int(sum(vals))


class _RawMsg:
    def __init__(self, raw):
        self.raw = raw

    @classmethod
    def FromString(cls, b):  # noqa: N802
        return cls(b)


def check_batch(b, raw, records=None, base=None, compressed_as=None):
    """Checks a fetched batch against its stored form and, when given, the
    records produced into it."""
    eq(b.magic, 2, "magic")
    check(b.record_count >= 1, "record_count >= 1")
    check(b.partition_leader_epoch >= 1,
          f"batch @{b.base_offset} carries the leader epoch that wrote it (got {b.partition_leader_epoch})")
    eq(b.last_offset_delta, b.record_count - 1, "last_offset_delta")
    if base is not None:
        eq(b.base_offset, base, "base_offset")
    rb, compressed = stored_records_bytes(raw)
    eq(crc32c(rb), b.crc32, f"crc32 of the records bytes (batch @{b.base_offset})")
    if compressed:
        check(b.compression_type != COMP_NONE, "compressed_records with compression NONE")
        eq(len(b.records), 0, "records of a compressed batch")
    else:
        eq(b.compression_type, COMP_NONE, "compression_type")
        eq(len(b.records), b.record_count, "records vs record_count")
    if compressed_as is not None:
        eq(b.compression_type, compressed_as, "compression_type")
    if records is not None and not compressed:
        eq(len(b.records), len(records), "record count")
        for i, (got, want) in enumerate(zip(b.records, records)):
            if got != want:
                raise AssertionError(f"record {i} of batch @{b.base_offset} differs:\n"
                                     f"got  {got}\nwant {want}")
        eq(rb, records_bytes_of_records(records), "records bytes byte for byte")
    return rb, compressed


# ---------------------------------------------------------------------------
# The tests.  Each takes the context; names are their order.

class Ctx:
    def __init__(self, args, node, tmp):
        self.args = args
        self.node = node
        self.tmp = tmp
        self.produced = {}    # (topic, partition) -> list of (base_offset, records)
        self.codecs = codec_modules()

    def client(self):
        return Client(self.node.addr)


TESTS = []


def test(fn):
    TESTS.append(fn)
    return fn


# ---- health ------------------------------------------------------------------

@test
def grpc_health_check_and_watch(ctx):
    with ctx.client() as c:
        r = c.unary("/grpc.health.v1.Health/Check", GH.HealthCheckRequest(service=""),
                    GH.HealthCheckResponse)
        eq(r.status, GH.HealthCheckResponse.SERVING, "Check('')")
        for svc in ("rustmq.client.ProducerService", "rustmq.client.ConsumerService",
                    "rustmq.client.MetadataService", "rustmq.controller.AdminService",
                    "rustmq.broker.BrokerHealthService"):
            r = c.unary("/grpc.health.v1.Health/Check", GH.HealthCheckRequest(service=svc),
                        GH.HealthCheckResponse)
            eq(r.status, GH.HealthCheckResponse.SERVING, f"Check({svc})")
        e = expect_status(lambda: c.unary("/grpc.health.v1.Health/Check",
                                          GH.HealthCheckRequest(service="no.such.Service"),
                                          GH.HealthCheckResponse),
                          grpc.StatusCode.NOT_FOUND, "Check(unknown)")
        check(e.details(), "NOT_FOUND without a message")
        # Watch: the current status at once, then nothing until it changes.
        it = c.server_stream("/grpc.health.v1.Health/Watch", GH.HealthCheckRequest(service=""),
                             GH.HealthCheckResponse, timeout=20)
        first = next(it)
        eq(first.status, GH.HealthCheckResponse.SERVING, "Watch('') first message")
        it.cancel()
        it2 = c.server_stream("/grpc.health.v1.Health/Watch",
                              GH.HealthCheckRequest(service="no.such.Service"),
                              GH.HealthCheckResponse, timeout=20)
        first = next(it2)
        eq(first.status, GH.HealthCheckResponse.SERVICE_UNKNOWN, "Watch(unknown) first message")
        it2.cancel()


@test
def broker_health_and_metrics(ctx):
    with ctx.client() as c:
        r = c.unary("/rustmq.broker.BrokerHealthService/HealthCheck",
                    H.HealthCheckRequest(version=V(), include_details=True),
                    H.HealthCheckResponse)
        ok(r, "HealthCheck")
        eq(r.status, H.HEALTH_STATUS_SERVING, "overall status")
        eq(r.broker_id, "1", "broker_id")
        eq(r.broker_state, CM.BROKER_RUNNING, "broker_state")
        check(r.software_version, "software_version set")
        check(r.checked_at.seconds > 0, "checked_at set")
        names = [x.name for x in r.components]
        for n in ("storage", "network", "shard-0", "shard-1"):
            check(n in names, f"component {n} in {names}")
        shards = [x for x in r.components if x.component == H.HEALTH_COMPONENT_SHARD]
        eq(sorted(x.shard for x in shards), [0, 1], "shard components")
        check(any(x.details for x in r.components), "include_details fills details")
        m = c.metrics()
        ok(m, "GetMetrics")
        names = {x.name for x in m.metrics}
        for n in ("rmq_produce_requests_total", "rmq_fetch_requests_total", "rmq_calls",
                  "rmq_connections", "rmq_partitions"):
            check(n in names, f"metric {n} in {sorted(names)}")
        calls = [x for x in m.metrics if x.name == "rmq_calls"]
        eq(sorted(x.labels["shard"] for x in calls), ["0", "1"], "rmq_calls per shard")
        eq(int(sum(x.value for x in calls)), 1, "rmq_calls (the GetMetrics call itself)")
        m2 = c.unary("/rustmq.broker.BrokerHealthService/GetMetrics",
                     H.MetricsRequest(version=V(), name_prefix="rmq_fetch_", include_help=True),
                     H.MetricsResponse)
        check(m2.metrics and all(x.name.startswith("rmq_fetch_") for x in m2.metrics),
              "name_prefix filters")
        check(all(x.help and x.unit for x in m2.metrics), "include_help fills help and unit")


def histograms(c, *names):
    """name -> (sample_count, sample_sum, merged cumulative buckets) over shards,
    after checking each sample's histogram is well formed."""
    out = {}
    for x in c.metrics(list(names)).metrics:
        eq(x.type, H.METRIC_TYPE_HISTOGRAM, f"{x.name} type")
        bounds = [b.upper_bound for b in x.buckets]
        counts = [b.cumulative_count for b in x.buckets]
        check(bounds and bounds[-1] == float("inf"), f"{x.name}: ends with +Inf: {bounds}")
        check(all(a < b for a, b in zip(bounds, bounds[1:])), f"{x.name}: bounds increase")
        check(all(a <= b for a, b in zip(counts, counts[1:])), f"{x.name}: cumulative")
        eq(counts[-1], x.sample_count, f"{x.name}: +Inf bucket holds every sample")
        mean = x.sample_sum / x.sample_count if x.sample_count else 0
        check(abs(x.value - mean) < 1e-6, f"{x.name}: value {x.value} is the mean {mean}")
        n, s = out.get(x.name, (0, 0))
        out[x.name] = (n + x.sample_count, s + x.sample_sum)
    for n in names:
        check(n in out, f"histogram {n} reported")
    return out


@test
def latency_histograms(ctx):
    """Each acknowledged append is one produce latency and one log ack
    latency sample; writes and rolls are counted where they happen."""
    names = ("rmq_produce_latency_us", "rmq_log_ack_latency_us", "rmq_log_write_latency_us",
             "rmq_segment_roll_latency_us")
    with ctx.client() as c:
        ok(c.create_topic("lat-h", 1), "create")
        before = histograms(c, *names)
        rolls0 = c.metric_totals("rmq_segment_rolls_total")["rmq_segment_rolls_total"]
        big = T.Record(value=b"v" * 60000)
        n = 20  # 1.2 MB into 256 KiB segments: a few rolls
        for i in range(n):
            ok(c.produce("lat-h", 0, [big]), f"produce {i}")
        after = histograms(c, *names)
        rolls = c.metric_totals("rmq_segment_rolls_total")["rmq_segment_rolls_total"] - rolls0
        d = {k: after[k][0] - before[k][0] for k in names}
        eq(d["rmq_produce_latency_us"], n, "one produce sample per append")
        eq(d["rmq_log_ack_latency_us"], n, "one log ack sample per append")
        check(d["rmq_log_write_latency_us"] >= n, f"a write per append at least: {d}")
        check(rolls >= 3, f"rolled: {rolls}")
        eq(d["rmq_segment_roll_latency_us"], rolls, "one roll sample per roll")
        check(after["rmq_produce_latency_us"][1] > before["rmq_produce_latency_us"][1],
              "the samples add time")


@test
def retention_deletions_counted(ctx):
    """rmq_segments_deleted_total counts what retention deletes: with
    retention.bytes below the data, each roll lets retention delete."""
    name = "rmq_segments_deleted_total"
    with ctx.client() as c:
        ok(c.create_topic("ret-m", 1, {"retention.bytes": "300000"}), "create")
        del0 = c.metric_totals(name)[name]
        big = T.Record(value=b"v" * 60000)
        for i in range(20):  # 1.2 MB into 256 KiB segments
            ok(c.produce("ret-m", 0, [big]), f"produce {i}")
        deleted = c.metric_totals(name)[name] - del0
        check(deleted >= 2, f"retention deleted segments: {deleted}")
        # Gone again: restart_keeps_everything reads every topic from 0.
        d = ok(c.unary("/rustmq.controller.AdminService/DeleteTopics",
                       A.DeleteTopicsRequest(version=V(), names=["ret-m"]),
                       A.DeleteTopicsResponse), "DeleteTopics")
        ok(d.topics[0], "delete ret-m")


# ---- admin ---------------------------------------------------------------------

@test
def admin_create_topics(ctx):
    with ctx.client() as c:
        r = c.create_topic("adm-a", 3, {"retention.ms": "86400000"})
        eq(r.name, "adm-a", "name")
        eq(r.partitions, 3, "partitions")
        eq(r.replication_factor, 1, "replication_factor")
        check(r.topic_id, "topic_id set")
        cfg = {x.name: x.value for x in r.configs}
        eq(cfg.get("retention.ms"), "86400000", "effective retention.ms")
        # Defaults resolved: partitions 0 = --partitions (1).
        r0 = c.create_topic("adm-default", 0)
        eq(r0.partitions, 1, "default partitions")
        # Duplicate, in a request with a good one: items are independent.
        rr = ok(c.create_topics([("adm-a", 1), ("adm-b", 2)]), "CreateTopics")
        eq(len(rr.topics), 2, "results")
        expect_code(rr.topics[0], TOPIC_ALREADY_EXISTS, "duplicate")
        ok(rr.topics[1], "adm-b next to a duplicate")
        # Invalid names.
        for bad in ("bad name", "a/b", ".", "..", "", "x" * 250, "ünï"):
            rr = ok(c.create_topics([(bad, 1)]), "CreateTopics")
            expect_code(rr.topics[0], INVALID_TOPIC, f"name {bad!r}")
        ok(c.create_topics([("x" * 249, 1)]).topics[0], "249-char name")
        # Bad configs.
        for k, v in (("retention.ms", "abc"), ("no.such.key", "1"),
                     ("compression.type", "gzip9"), ("cleanup.policy", "shred")):
            rr = ok(c.create_topics([("adm-badcfg", 1, {k: v})]), "CreateTopics")
            expect_code(rr.topics[0], INVALID_CONFIG, f"config {k}={v}")
            check(k in rr.topics[0].error_message, f"INVALID_CONFIG names the key: "
                  f"{rr.topics[0].error_message!r}")
        # validate_only creates nothing.
        rr = ok(c.create_topics([("adm-validate", 4)], validate_only=True), "validate_only")
        ok(rr.topics[0], "validate_only item")
        eq(rr.topics[0].topic_id, "", "validate_only topic_id")
        eq(rr.topics[0].partitions, 4, "validate_only partitions")
        lt = c.unary("/rustmq.controller.AdminService/ListTopics",
                     A.ListTopicsRequest(version=V()), A.ListTopicsResponse)
        names = [t.name for t in lt.topics]
        check("adm-validate" not in names, "validate_only created the topic")
        check("adm-badcfg" not in names, "a refused topic exists")
        # A validate_only duplicate is still reported.
        rr = c.create_topics([("adm-a", 1)], validate_only=True)
        expect_code(rr.topics[0], TOPIC_ALREADY_EXISTS, "validate_only duplicate")
        # The new topic takes produce at once (CreateTopics answers when open).
        for p in range(3):
            ok(c.produce("adm-a", p, make_records(1, f"adm{p}")), f"produce adm-a-{p}")


@test
def admin_list_describe(ctx):
    with ctx.client() as c:
        c.create_topic("lst-one", 2)
        c.create_topic("lst-two", 1)
        lt = ok(c.unary("/rustmq.controller.AdminService/ListTopics",
                        A.ListTopicsRequest(version=V()), A.ListTopicsResponse), "ListTopics")
        names = [t.name for t in lt.topics]
        eq(names, sorted(names), "ListTopics sorted by name")
        by = {t.name: t for t in lt.topics}
        check("lst-one" in by and "lst-two" in by, f"topics listed: {names}")
        eq(by["lst-one"].partitions, 2, "partitions")
        eq(by["lst-one"].replication_factor, 1, "replication_factor")
        check(by["lst-one"].topic_id, "topic_id")
        lp = ok(c.unary("/rustmq.controller.AdminService/ListTopics",
                        A.ListTopicsRequest(version=V(), name_prefix="lst-"),
                        A.ListTopicsResponse), "ListTopics prefix")
        eq([t.name for t in lp.topics], ["lst-one", "lst-two"], "name_prefix")
        d = ok(c.unary("/rustmq.controller.AdminService/DescribeTopics",
                       A.DescribeTopicsRequest(version=V(), names=["lst-two", "nope", "lst-one"],
                                               include_configs=True),
                       A.DescribeTopicsResponse), "DescribeTopics")
        eq([t.name for t in d.topics], ["lst-two", "nope", "lst-one"], "request order")
        ok(d.topics[0], "lst-two")
        expect_code(d.topics[1], TOPIC_NOT_FOUND, "unknown topic")
        t1 = d.topics[2]
        eq(len(t1.partitions), 2, "partitions described")
        eq([p.topic_partition.partition for p in t1.partitions], [0, 1], "partition order")
        for p in t1.partitions:
            eq(p.leader_id, "1", "leader")
            eq(list(p.replica_ids), ["1"], "replicas")
            eq(list(p.isr_ids), ["1"], "isr")
        eq(t1.config.partitions, 2, "config.partitions")
        cfg = {x.name: x for x in t1.config.configs}
        check("retention.ms" in cfg and "compression.type" in cfg,
              f"include_configs: {sorted(cfg)}")
        eq(t1.topic_id, by["lst-one"].topic_id, "topic_id agrees with ListTopics")


@test
def large_records(ctx):
    """A batch up to the topic's max.message.bytes is stored whatever the
    write buffer's size (4 MiB here); a max.message.bytes the topic cannot
    store is refused at CreateTopics and AlterConfigs naming the limit.
    (A 4 MiB record to a topic created with max.message.bytes=8388608 was
    refused with MESSAGE_TOO_LARGE naming no limit.)"""
    with ctx.client() as c:
        c.create_topic("big-t", 1, {"max.message.bytes": "8388608", "segment.bytes": "67108864"})
        rnd = random.Random(10)
        sent = []
        for size in (4 << 20, (8 << 20) - 4096):
            rec = T.Record(key=b"big", value=rnd.randbytes(size))
            r = ok(c.produce("big-t", 0, [rec], timeout=60), f"a {size}-byte record")
            sent.append((r.offset, rec))
        r = c.produce("big-t", 0, [T.Record(value=b"x" * (8 << 20))], timeout=60)
        expect_code(r, 13, "a batch above max.message.bytes")
        check("max.message.bytes=8388608" in r.error_message, f"names the limit: {r.error_message!r}")
        for off, rec in sent:
            resp, _ = c.fetch([("big-t", 0, off)], max_bytes=32 << 20)
            b = ok(resp.partitions[0], "fetch a large record").batches[0]
            eq(b.base_offset, off, "offset")
            check(b.records[0] == rec, "the large record comes back byte for byte")
        # Refused where the topic could not store it: one batch must fit
        # one segment (256 KiB by default on this node) ...
        r = c.create_topics([("big-no", 1, {"max.message.bytes": "8388608"})])
        expect_code(r.topics[0], INVALID_CONFIG, "max.message.bytes above what a segment holds")
        check("segment.bytes" in r.topics[0].error_message, f"names segment.bytes: {r.topics[0].error_message!r}")
        # ... and one gRPC message (rmqd --max-message-bytes, 16 MiB).
        r = c.create_topics([("big-no", 1, {"max.message.bytes": str(64 << 20),
                                            "segment.bytes": str(1 << 30)})])
        expect_code(r.topics[0], INVALID_CONFIG, "max.message.bytes above the node's request limit")
        check("--max-message-bytes" in r.topics[0].error_message, r.topics[0].error_message)
        res = A.ConfigResource(type=A.CONFIG_RESOURCE_TYPE_TOPIC, name="big-t")
        req = A.AlterConfigsRequest(version=V())
        req.resources.add(resource=res).configs.add(name="segment.bytes", value="1048576",
                                                    op=A.ALTER_CONFIG_OP_SET)
        r = c.unary("/rustmq.controller.AdminService/AlterConfigs", req, A.AlterConfigsResponse)
        expect_code(r.resources[0], INVALID_CONFIG, "segment.bytes too small for max.message.bytes")
        # A topic that leaves max.message.bytes at the default gets what its
        # segments hold, and says so.
        c.create_topic("big-def", 1)
        dreq = A.DescribeConfigsRequest(version=V())
        dreq.resources.add(resource=A.ConfigResource(type=A.CONFIG_RESOURCE_TYPE_TOPIC, name="big-def"))
        d = c.unary("/rustmq.controller.AdminService/DescribeConfigs", dreq, A.DescribeConfigsResponse)
        mmb = int({e.name: e.value for e in d.resources[0].configs}["max.message.bytes"])
        check(mmb <= 256 << 10, f"default max.message.bytes {mmb} fits a 256 KiB segment")
        r = c.produce("big-def", 0, [T.Record(value=b"y" * (mmb + 1024))])
        expect_code(r, 13, "above the default the topic can store")


@test
def partition_open_failure_reported_and_retried(ctx):
    """A partition whose log cannot be opened (here: a file stands where its
    directory goes) is reported in CreateTopics, in metadata and in health,
    refuses produce with the reason, and opens by itself once the cause is
    gone (the node retries every 5 s).  (CreateTopics answered OK and the
    partition then answered "unknown topic or partition".)"""
    blocker = os.path.join(ctx.node.data_dir, "blocked-t-0")
    with open(blocker, "w") as f:
        f.write("not a directory")
    with ctx.client() as c:
        r = c.create_topics([("blocked-t", 1)])
        expect_code(r.topics[0], 45, "CreateTopics with a partition that cannot open")
        check("could not be opened" in r.topics[0].error_message, r.topics[0].error_message)
        md = c.unary("/rustmq.client.MetadataService/GetTopicMetadata",
                     MD.GetTopicMetadataRequest(version=V(), topics=["blocked-t"]),
                     MD.GetTopicMetadataResponse)
        pm = md.topics[0].partitions[0]
        eq(pm.error_code, 45, "PartitionMetadata.error_code of the offline partition")
        eq(list(pm.offline_replica_ids), [pm.leader_id], "the replica is offline")
        r = c.produce("blocked-t", 0, make_records(1, "blocked"))
        expect_code(r, 4, "produce to a partition that could not open")
        check("Not a directory" in r.error_message, f"says why: {r.error_message!r}")
        h = c.unary("/rustmq.broker.BrokerHealthService/HealthCheck",
                    H.HealthCheckRequest(version=V(), include_details=True), H.HealthCheckResponse)
        st = next(x for x in h.components if x.name == "storage")
        eq(st.status, H.HEALTH_STATUS_DEGRADED, "storage health")
        check(st.message, "storage health says why")
        os.unlink(blocker)
        wait_until(lambda: c.produce("blocked-t", 0, make_records(1, "later")).error_code == OK,
                   20, "the partition to open after the cause went")
        h = c.unary("/rustmq.broker.BrokerHealthService/HealthCheck",
                    H.HealthCheckRequest(version=V()), H.HealthCheckResponse)
        eq(next(x for x in h.components if x.name == "storage").status,
           H.HEALTH_STATUS_SERVING, "storage health once it opened")


@test
def admin_alter_describe_configs(ctx):
    with ctx.client() as c:
        c.create_topic("cfg-t", 1)
        res = A.ConfigResource(type=A.CONFIG_RESOURCE_TYPE_TOPIC, name="cfg-t")
        req = A.AlterConfigsRequest(version=V())
        ar = req.resources.add(resource=res)
        ar.configs.add(name="retention.ms", value="3600000", op=A.ALTER_CONFIG_OP_SET)
        r = ok(c.unary("/rustmq.controller.AdminService/AlterConfigs", req,
                       A.AlterConfigsResponse), "AlterConfigs")
        eq(len(r.resources), 1, "results")
        ok(r.resources[0], "alter retention.ms")
        dreq = A.DescribeConfigsRequest(version=V(), include_documentation=True)
        dreq.resources.add(resource=res)
        d = ok(c.unary("/rustmq.controller.AdminService/DescribeConfigs", dreq,
                       A.DescribeConfigsResponse), "DescribeConfigs")
        ok(d.resources[0], "describe")
        cfg = {x.name: x for x in d.resources[0].configs}
        check("retention.ms" in cfg, f"retention.ms described: {sorted(cfg)}")
        eq(cfg["retention.ms"].value, "3600000", "retention.ms value")
        eq(cfg["retention.ms"].is_default, False, "retention.ms is_default")
        check("segment.bytes" in cfg and cfg["segment.bytes"].is_default,
              "defaults included (empty names)")
        check(cfg["retention.ms"].documentation, "include_documentation")
        names = [x.name for x in d.resources[0].configs]
        eq(names, sorted(names), "configs by name")
        # Only the names asked for.
        dreq2 = A.DescribeConfigsRequest(version=V())
        dreq2.resources.add(resource=res, names=["retention.ms"])
        d2 = ok(c.unary("/rustmq.controller.AdminService/DescribeConfigs", dreq2,
                        A.DescribeConfigsResponse), "DescribeConfigs names")
        eq([x.name for x in d2.resources[0].configs], ["retention.ms"], "names filter")
        # validate_only changes nothing; a bad value fails with INVALID_CONFIG;
        # an unknown topic with TOPIC_NOT_FOUND; DELETE goes back to the default.
        req = A.AlterConfigsRequest(version=V(), validate_only=True)
        req.resources.add(resource=res).configs.add(name="retention.ms", value="1000")
        ok(c.unary("/rustmq.controller.AdminService/AlterConfigs", req,
                   A.AlterConfigsResponse).resources[0], "validate_only alter")
        req = A.AlterConfigsRequest(version=V())
        req.resources.add(resource=res).configs.add(name="retention.ms", value="soon")
        bad = A.ConfigResource(type=A.CONFIG_RESOURCE_TYPE_TOPIC, name="cfg-nope")
        req.resources.add(resource=bad).configs.add(name="retention.ms", value="1000")
        r = ok(c.unary("/rustmq.controller.AdminService/AlterConfigs", req,
                       A.AlterConfigsResponse), "AlterConfigs")
        expect_code(r.resources[0], INVALID_CONFIG, "bad value")
        check("retention.ms" in r.resources[0].error_message, "names the key")
        expect_code(r.resources[1], TOPIC_NOT_FOUND, "unknown topic")
        d = c.unary("/rustmq.controller.AdminService/DescribeConfigs", dreq2,
                    A.DescribeConfigsResponse)
        eq(d.resources[0].configs[0].value, "3600000", "unchanged by validate_only / failure")
        # DescribeTopics agrees.
        dt = c.unary("/rustmq.controller.AdminService/DescribeTopics",
                     A.DescribeTopicsRequest(version=V(), names=["cfg-t"], include_configs=True),
                     A.DescribeTopicsResponse)
        cfg = {x.name: x.value for x in dt.topics[0].config.configs}
        eq(cfg.get("retention.ms"), "3600000", "DescribeTopics retention.ms")
        ctx.cfg_topic_retention = "3600000"


@test
def admin_describe_cluster(ctx):
    with ctx.client() as c:
        r = ok(c.unary("/rustmq.controller.AdminService/DescribeCluster",
                       A.DescribeClusterRequest(version=V()), A.DescribeClusterResponse),
               "DescribeCluster")
        check(r.cluster_id, "cluster_id")
        eq(r.controller_id, "1", "controller_id")
        eq(len(r.brokers), 1, "brokers")
        b = r.brokers[0]
        eq(b.id.id, "1", "broker id")
        eq(b.port, ctx.node.port, "broker port")
        eq(b.host, "127.0.0.1", "broker host")
        eq(b.shards, 2, "broker shards")
        eq(b.state, CM.BROKER_RUNNING, "broker state")
        lt = c.unary("/rustmq.controller.AdminService/ListTopics",
                     A.ListTopicsRequest(version=V(), include_internal=True), A.ListTopicsResponse)
        eq(r.topic_count, len(lt.topics), "topic_count")
        eq(r.partition_count, sum(t.partitions for t in lt.topics), "partition_count")
        eq(r.offline_partition_count, 0, "offline partitions")
        ctx.cluster_id = r.cluster_id


@test
def admin_delete_topics(ctx):
    with ctx.client() as c:
        r = c.create_topic("del-t", 2)
        old_id = r.topic_id
        for p in range(2):
            ok(c.produce("del-t", p, make_records(3, "del")), "produce")
        d = ok(c.unary("/rustmq.controller.AdminService/DeleteTopics",
                       A.DeleteTopicsRequest(version=V(), names=["del-t", "del-nope"]),
                       A.DeleteTopicsResponse), "DeleteTopics")
        eq(len(d.topics), 2, "results")
        ok(d.topics[0], "delete del-t")
        eq(d.topics[0].topic_id, old_id, "deleted topic_id")
        expect_code(d.topics[1], TOPIC_NOT_FOUND, "delete unknown")
        expect_code(c.produce("del-t", 0, make_records(1, "x")), TOPIC_NOT_FOUND,
                    "produce to a deleted topic")
        resp, _ = c.fetch([("del-t", 0, 0)])
        expect_code(resp.partitions[0], TOPIC_NOT_FOUND, "fetch from a deleted topic")
        # The name is free at once; the new topic starts empty.
        r2 = c.create_topic("del-t", 1)
        check(r2.topic_id != old_id, "a re-created topic has a new id")
        resp, _ = c.fetch([("del-t", 0, 0)])
        ok(resp.partitions[0], "fetch re-created")
        eq(resp.partitions[0].high_watermark, 0, "re-created topic is empty")
        eq(len(resp.partitions[0].batches), 0, "no old batches")
        pr = ok(c.produce("del-t", 0, make_records(2, "new")), "produce re-created")
        eq(pr.offset, 0, "first offset of the re-created topic")
        # Delete by id.
        d = ok(c.unary("/rustmq.controller.AdminService/DeleteTopics",
                       A.DeleteTopicsRequest(version=V(), topic_ids=[r2.topic_id]),
                       A.DeleteTopicsResponse), "DeleteTopics by id")
        ok(d.topics[0], "delete by id")
        eq(d.topics[0].name, "del-t", "name of the topic deleted by id")
        dt = c.unary("/rustmq.controller.AdminService/DescribeTopics",
                     A.DescribeTopicsRequest(version=V(), names=["del-t"]),
                     A.DescribeTopicsResponse)
        expect_code(dt.topics[0], TOPIC_NOT_FOUND, "describe deleted")


@test
def admin_create_and_delete_partitions(ctx):
    """ControllerBrokerService CreatePartitions grows a topic (same topic id,
    new partitions placed and led here); DeletePartitions shrinks it only
    with allow_nonempty, the partitions going with their records."""
    CB = importlib.import_module("controller.cluster_pb2")
    path = "/rustmq.controller.ControllerBrokerService/"

    def grow(c, n, topic="grow-t", **kw):
        r = c.unary(path + "CreatePartitions",
                    CB.CreatePartitionsRequest(version=V(), topics=[
                        CB.CreatePartitionsTopic(topic=topic, new_total_count=n)], **kw),
                    CB.CreatePartitionsResponse)
        return ok(r, "CreatePartitions").topics[0]

    def shrink(c, n, allow):
        r = c.unary(path + "DeletePartitions",
                    CB.DeletePartitionsRequest(version=V(), allow_nonempty=allow, topics=[
                        CB.DeletePartitionsTopic(topic="grow-t", new_total_count=n)]),
                    CB.DeletePartitionsResponse)
        return ok(r, "DeletePartitions").topics[0]

    with ctx.client() as c:
        tid = c.create_topic("grow-t", 2).topic_id
        for p in range(2):
            ok(c.produce("grow-t", p, make_records(3, "g")), "produce")
        expect_code(grow(c, 2), INVALID_PARTITIONS, "grow to the same count")
        expect_code(grow(c, 9, topic="grow-nope"), TOPIC_NOT_FOUND, "grow an unknown topic")
        v = grow(c, 4, validate_only=True)
        ok(v, "validate_only")
        eq(len(v.partitions), 0, "validate_only makes nothing")
        g = ok(grow(c, 4), "grow to 4")
        eq([p.topic_partition.partition for p in g.partitions], [2, 3], "the partitions made")
        check(all(p.leader_id == "1" for p in g.partitions), f"led here: {g.partitions}")
        md = c.unary("/rustmq.client.MetadataService/GetTopicMetadata",
                     MD.GetTopicMetadataRequest(version=V(), topics=["grow-t"]),
                     MD.GetTopicMetadataResponse)
        eq(len(md.topics[0].partitions), 4, "partitions after growing")
        eq(md.topics[0].topic_id, tid, "the same topic")
        pr = ok(c.produce("grow-t", 3, make_records(2, "new")), "produce to a new partition")
        eq(pr.offset, 0, "a new partition starts empty")
        resp, _ = c.fetch([("grow-t", 0, 0)])
        eq(resp.partitions[0].high_watermark, 3, "the old partitions keep their records")
        # Shrinking deletes records: only when asked to.
        expect_code(shrink(c, 1, False), POLICY_VIOLATION, "shrink without allow_nonempty")
        expect_code(shrink(c, 4, True), INVALID_PARTITIONS, "shrink to the same count")
        d = ok(shrink(c, 1, True), "shrink to 1")
        eq(list(d.deleted_partitions), [1, 2, 3], "the partitions deleted")
        expect_code(c.produce("grow-t", 1, make_records(1, "x")), PARTITION_NOT_FOUND,
                    "produce to a deleted partition")
        ok(grow(c, 2), "grow back to 2")
        resp, _ = c.fetch([("grow-t", 1, 0)])
        ok(resp.partitions[0], "fetch the partition made again")
        eq(resp.partitions[0].high_watermark, 0, "it starts empty: the old records went")
        resp, _ = c.fetch([("grow-t", 0, 0)])
        eq(resp.partitions[0].high_watermark, 3, "partition 0 kept its records")


@test
def shrink_and_grow_at_once(ctx):
    """A DeletePartitions and a CreatePartitions of the same partition sent
    together (the controller may decide them into one entry, which a node
    then sees as no change): when both answer OK, the partition made again
    holds none of the deleted one's records."""
    CB = importlib.import_module("controller.cluster_pb2")
    path = "/rustmq.controller.ControllerBrokerService/"
    res = {}
    with ctx.client() as c:
        c.create_topic("sg-t", 4)
        for attempt in range(10):
            ok(c.produce("sg-t", 3, make_records(5, "old")), "produce")

            def filler(i):
                with ctx.client() as c2:  # keeps an entry in flight
                    c2.create_topic(f"sg-fill-{attempt}-{i}", 1)

            def shrink():
                with ctx.client() as c2:
                    res["s"] = c2.unary(path + "DeletePartitions", CB.DeletePartitionsRequest(
                        version=V(), allow_nonempty=True, topics=[
                            CB.DeletePartitionsTopic(topic="sg-t", new_total_count=3)]),
                        CB.DeletePartitionsResponse).topics[0]

            def grow():
                with ctx.client() as c2:
                    time.sleep(0.001)
                    res["g"] = c2.unary(path + "CreatePartitions", CB.CreatePartitionsRequest(
                        version=V(), topics=[
                            CB.CreatePartitionsTopic(topic="sg-t", new_total_count=4)]),
                        CB.CreatePartitionsResponse).topics[0]

            ths = [threading.Thread(target=filler, args=(i,)) for i in range(3)]
            ths += [threading.Thread(target=shrink), threading.Thread(target=grow)]
            for t in ths:
                t.start()
            for t in ths:
                t.join()
            resp, _ = c.fetch([("sg-t", 3, 0)])
            if res["s"].error_code == 0 and res["g"].error_code == 0:
                eq(resp.partitions[0].high_watermark, 0,
                   f"attempt {attempt}: partition 3 deleted and made again is empty")
            if resp.partitions[0].error_code == PARTITION_NOT_FOUND:
                # The shrink was decided last: the grow came first, while
                # the topic still had 4 partitions, and was refused
                # (INVALID_PARTITIONS), or both went through and this node
                # has not applied the grow yet (it follows the controller's
                # answer by a moment).
                ok(res["s"], "the shrink, partition 3 gone")
                if res["g"].error_code != INVALID_PARTITIONS:
                    ok(res["g"], "the grow, partition 3 gone")
                # Grow back for the next attempt (or the topic has its 4
                # partitions already).
                r = c.unary(path + "CreatePartitions", CB.CreatePartitionsRequest(
                    version=V(), topics=[CB.CreatePartitionsTopic(topic="sg-t",
                                                                  new_total_count=4)]),
                    CB.CreatePartitionsResponse).topics[0]
                if r.error_code != INVALID_PARTITIONS:
                    ok(r, "grow back")
                wait_until(lambda: c.fetch([("sg-t", 3, 0)])[0].partitions[0].error_code
                           != PARTITION_NOT_FOUND, 10, "partition 3 of sg-t back on the node")


@test
def cluster_config(ctx):
    """UpdateClusterConfig sets the cluster's defaults for topics (every
    topic that sets nothing takes them at once) and num.partitions; a bad
    key or value changes nothing; removing a key brings the node's flag
    back; GetClusterConfig answers them."""
    CB = importlib.import_module("controller.cluster_pb2")
    path = "/rustmq.controller.ControllerBrokerService/"

    def update(c, sets=(), removes=(), **kw):
        req = CB.UpdateClusterConfigRequest(version=V(), remove_names=list(removes), **kw)
        for k, v in sets:
            req.set_entries.add(name=k, value=v)
        return c.unary(path + "UpdateClusterConfig", req, CB.UpdateClusterConfigResponse)

    def get(c, *names):
        r = ok(c.unary(path + "GetClusterConfig",
                       CB.GetClusterConfigRequest(version=V(), names=list(names),
                                                  include_documentation=True),
                       CB.GetClusterConfigResponse), "GetClusterConfig")
        return {e.name: (e.value, e.is_default) for e in r.configs}

    def topic_cfg(c, topic, key):
        dreq = A.DescribeConfigsRequest(version=V())
        dreq.resources.add(resource=A.ConfigResource(type=A.CONFIG_RESOURCE_TYPE_TOPIC, name=topic))
        r = ok(c.unary("/rustmq.controller.AdminService/DescribeConfigs", dreq,
                       A.DescribeConfigsResponse), "DescribeConfigs")
        return {e.name: e.value for e in r.resources[0].configs}[key]

    with ctx.client() as c:
        c.create_topic("cc-plain", 1)
        c.create_topic("cc-own", 1, {"retention.ms": "1000"})
        before = get(c)
        check(before["retention.ms"][1] and before["num.partitions"][1], f"defaults: {before}")
        r = update(c, [("retention.ms", "3600000"), ("num.partitions", "3")])
        ok(r, "UpdateClusterConfig")
        check(r.metadata_offset > 0, "the change's offset")
        eq(get(c, "retention.ms", "num.partitions"),
           {"retention.ms": ("3600000", False), "num.partitions": ("3", False)}, "after set")
        eq(topic_cfg(c, "cc-plain", "retention.ms"), "3600000", "a topic that sets nothing")
        eq(topic_cfg(c, "cc-own", "retention.ms"), "1000", "a topic that sets it keeps its own")
        eq(c.create_topic("cc-new", 0).partitions, 3, "num.partitions for a topic without a count")
        # All or nothing.
        r = update(c, [("segment.ms", "60000"), ("retention.ms", "soon")])
        expect_code(r, INVALID_CONFIG, "a bad value")
        eq([x.error_code for x in r.configs], [0, INVALID_CONFIG], "the key refused is named")
        eq(get(c, "segment.ms")["segment.ms"][1], True, "nothing changed")
        expect_code(update(c, [("no.such.key", "1")]), INVALID_CONFIG, "an unknown key")
        expect_code(update(c, [("retention.ms", "1")], broker_id="1"), INVALID_CONFIG,
                    "per-broker values")
        v = update(c, [("retention.ms", "5")], validate_only=True)
        ok(v, "validate_only")
        eq(get(c, "retention.ms")["retention.ms"][0], "3600000", "validate_only changes nothing")
        # Back to the node's flags.
        ok(update(c, removes=["retention.ms", "num.partitions"]), "remove")
        after = get(c, "retention.ms", "num.partitions")
        eq(after, {"retention.ms": before["retention.ms"], "num.partitions": before["num.partitions"]},
           "the node's flags again")
        eq(topic_cfg(c, "cc-plain", "retention.ms"), before["retention.ms"][0],
           "the topic follows the default back")
        for t in ("cc-plain", "cc-own", "cc-new"):
            c.unary("/rustmq.controller.AdminService/DeleteTopics",
                    A.DeleteTopicsRequest(version=V(), names=[t]), A.DeleteTopicsResponse)


# ---- metadata --------------------------------------------------------------------

@test
def metadata_service(ctx):
    with ctx.client() as c:
        c.create_topic("md-t", 3)
        r = ok(c.unary("/rustmq.client.MetadataService/GetTopicMetadata",
                       MD.GetTopicMetadataRequest(version=V(), topics=["md-t", "md-nope"],
                                                  include_configs=True),
                       MD.GetTopicMetadataResponse), "GetTopicMetadata")
        eq([t.name for t in r.topics], ["md-t", "md-nope"], "request order")
        t = ok(r.topics[0], "md-t")
        expect_code(r.topics[1], TOPIC_NOT_FOUND, "unknown topic")
        eq(len(t.partitions), 3, "partitions")
        for i, p in enumerate(t.partitions):
            eq(p.topic_partition.partition, i, "partition order")
            eq(p.topic_partition.topic, "md-t", "partition topic")
            eq(p.leader_id, "1", "leader_id")
            check(p.leader_epoch >= 1, "leader epochs start at 1")
            check(p.shard < 2, "shard index")
        check(t.config.configs, "include_configs")
        eq(len(r.brokers), 1, "brokers")
        eq(r.brokers[0].port, ctx.node.port, "broker port")
        eq(r.brokers[0].host, "127.0.0.1", "broker host")
        check(r.cluster_id, "cluster_id")
        eq(r.controller_id, "1", "controller_id")
        # Every topic when none is named.
        ra = ok(c.unary("/rustmq.client.MetadataService/GetTopicMetadata",
                        MD.GetTopicMetadataRequest(version=V()), MD.GetTopicMetadataResponse),
                "GetTopicMetadata all")
        check("md-t" in [x.name for x in ra.topics], "all topics")
        # ListTopics.
        lt = ok(c.unary("/rustmq.client.MetadataService/ListTopics",
                        MD.ListTopicsRequest(version=V(), name_prefix="md-"),
                        MD.ListTopicsResponse), "ListTopics")
        eq([x.name for x in lt.topics], ["md-t"], "ListTopics prefix")
        eq(lt.topics[0].config.partitions, 3, "config.partitions")
        eq(len(lt.topics[0].partitions), 0, "no partition detail")
        # GetBrokerList.
        bl = ok(c.unary("/rustmq.client.MetadataService/GetBrokerList",
                        MD.GetBrokerListRequest(version=V()), MD.GetBrokerListResponse),
                "GetBrokerList")
        eq(len(bl.brokers), 1, "brokers")
        eq(bl.brokers[0].id.id, "1", "broker id")
        eq(bl.brokers[0].port, ctx.node.port, "port")
        eq(bl.brokers[0].state, CM.BROKER_RUNNING, "state")
        eq(bl.brokers[0].shards, 2, "shards")
        # GetPartitionLeader.
        pl = ok(c.unary("/rustmq.client.MetadataService/GetPartitionLeader",
                        MD.GetPartitionLeaderRequest(version=V(), topic_partition=T.TopicPartition(
                            topic="md-t", partition=2)),
                        MD.GetPartitionLeaderResponse), "GetPartitionLeader")
        eq(pl.partition.leader_id, "1", "leader")
        eq(pl.leader.port, ctx.node.port, "leader port")
        eq(pl.partition.topic_partition.partition, 2, "partition")
        pl = c.unary("/rustmq.client.MetadataService/GetPartitionLeader",
                     MD.GetPartitionLeaderRequest(version=V(), topic_partition=T.TopicPartition(
                         topic="md-t", partition=3)), MD.GetPartitionLeaderResponse)
        expect_code(pl, PARTITION_NOT_FOUND, "leader of partition 3 of 3")
        pl = c.unary("/rustmq.client.MetadataService/GetPartitionLeader",
                     MD.GetPartitionLeaderRequest(version=V(), topic_partition=T.TopicPartition(
                         topic="md-nope", partition=0)), MD.GetPartitionLeaderResponse)
        expect_code(pl, TOPIC_NOT_FOUND, "leader of an unknown topic")
        # GetClusterMetadata.
        cm = ok(c.unary("/rustmq.client.MetadataService/GetClusterMetadata",
                        MD.GetClusterMetadataRequest(version=V(), include_topics=True),
                        MD.GetClusterMetadataResponse), "GetClusterMetadata")
        check(cm.metadata.cluster_id, "cluster_id")
        eq(cm.metadata.controller_id, "1", "controller")
        eq(len(cm.metadata.brokers), 1, "brokers")
        mt = [x for x in cm.metadata.topics if x.name == "md-t"]
        check(mt and len(mt[0].partitions) == 3, "topics with partitions")
        cm2 = ok(c.unary("/rustmq.client.MetadataService/GetClusterMetadata",
                         MD.GetClusterMetadataRequest(version=V()), MD.GetClusterMetadataResponse),
                 "GetClusterMetadata without topics")
        eq(len(cm2.metadata.topics), 0, "no topics unless asked")
        # FindCoordinator.
        fc = ok(c.unary("/rustmq.client.MetadataService/FindCoordinator",
                        MD.FindCoordinatorRequest(version=V(), keys=["g1", "g2", ""]),
                        MD.FindCoordinatorResponse), "FindCoordinator")
        eq([x.key for x in fc.coordinators], ["g1", "g2", ""], "one per key")
        for x in fc.coordinators[:2]:
            ok(x, f"coordinator of {x.key}")
            eq(x.broker.port, ctx.node.port, "coordinator port")
        expect_code(fc.coordinators[2], INVALID_REQUEST, "empty key")
        fc = ok(c.unary("/rustmq.client.MetadataService/FindCoordinator",
                        MD.FindCoordinatorRequest(version=V(), keys=["tx"],
                                                  key_type=MD.COORDINATOR_TYPE_TRANSACTION),
                        MD.FindCoordinatorResponse), "FindCoordinator txn")
        ok(fc.coordinators[0], "transaction coordinator")
        # AuthService: no mechanism enabled.
        au = c.unary("/rustmq.client.AuthService/Authenticate",
                     T.AuthenticationRequest(version=V(), mechanism="PLAIN", auth_data=b"\0u\0p"),
                     T.AuthenticationResponse)
        eq(au.authenticated, False, "authenticated")
        eq(au.error_code, 43, "UNSUPPORTED_SASL_MECHANISM")


# ---- produce ---------------------------------------------------------------------

@test
def produce_records_all_acks(ctx):
    with ctx.client() as c:
        c.create_topic("prod-t", 1)
        expected = []
        next_off = 0
        for i, acks in enumerate((ACK_NONE, ACK_LEADER, ACK_ALL, ACK_MAJORITY, ACK_LEADER)):
            recs = make_records(3 + i, f"acks{acks}-{i}", size=30 + 50 * i)
            r = ok(c.produce("prod-t", 0, recs, acks=acks, correlation_id=1000 + i),
                   f"produce acks={acks}")
            if acks != ACK_NONE or r.record_count:
                eq(r.offset, next_off, f"offset (acks={acks})")
                eq(r.last_offset, next_off + len(recs) - 1, "last_offset")
                eq(r.record_count, len(recs), "record_count")
            eq(r.correlation_id, 1000 + i, "correlation_id echoed")
            expected.append((next_off, recs))
            next_off += len(recs)
        # Records without headers, key, timestamp, or with an empty value.
        odd = [T.Record(value=b"only value"), T.Record(key=b"k", value=b""),
               T.Record(value=bytes(range(256)) * 20)]
        r = ok(c.produce("prod-t", 0, odd), "produce odd records")
        eq(r.offset, next_off, "offset")
        expected.append((next_off, odd))
        next_off += len(odd)
        batches = c.fetch_all("prod-t", 0)
        eq(len(batches), len(expected), "one stored batch per produce")
        for (b, raw), (base, recs) in zip(batches, expected):
            check_batch(b, raw, recs, base)
            check(b.log_append_time_ms > 0, "log_append_time_ms set by the broker")
        ctx.produced[("prod-t", 0)] = expected


@test
def produce_batch_crc(ctx):
    with ctx.client() as c:
        c.create_topic("pb-t", 1)
        recs = make_records(5, "pb-good")
        rb = records_bytes_of_records(recs)
        good = T.RecordBatch(magic=2, base_offset=987654, records=recs, record_count=len(recs),
                             crc32=crc32c(rb), last_offset_delta=len(recs) - 1)
        r = ok(c.produce_batch([("pb-t", 0, good)], correlation_id=77), "ProduceBatch")
        eq(r.correlation_id, 77, "correlation_id")
        eq(len(r.partitions), 1, "results")
        p0 = ok(r.partitions[0], "good CRC")
        eq(p0.offset, 0, "base_offset assigned by the broker (the producer's is ignored)")
        eq(p0.record_count, 5, "record_count")
        eq(p0.topic_partition.topic, "pb-t", "topic_partition set")
        # crc32 = 0: the broker computes it.
        recs2 = make_records(4, "pb-zero")
        zero = T.RecordBatch(magic=2, records=recs2, record_count=len(recs2), crc32=0)
        p1 = ok(c.produce_batch([("pb-t", 0, zero)]).partitions[0], "crc32 = 0")
        eq(p1.offset, 5, "offset")
        # Wrong CRC: CORRUPT_MESSAGE, nothing appended.
        recs3 = make_records(3, "pb-bad")
        wrong = T.RecordBatch(magic=2, records=recs3, record_count=3,
                              crc32=crc32c(records_bytes_of_records(recs3)) ^ 0x1)
        r = ok(c.produce_batch([("pb-t", 0, wrong)]), "ProduceBatch (wrong CRC)")
        expect_code(r.partitions[0], CORRUPT_MESSAGE, "wrong CRC")
        # Same via Produce with the batch field.
        pr = c.unary("/rustmq.client.ProducerService/Produce",
                     P.ProduceRequest(version=V(), topic_partition=T.TopicPartition(
                         topic="pb-t", partition=0), acks=ACK_LEADER, batch=wrong),
                     P.ProduceResponse)
        expect_code(pr, CORRUPT_MESSAGE, "Produce(batch) with a wrong CRC")
        # record_count that does not match the records.
        liar = T.RecordBatch(magic=2, records=recs3, record_count=7, crc32=0)
        r = c.produce_batch([("pb-t", 0, liar)])
        check(r.error_code != OK or r.partitions[0].error_code != OK,
              "a batch whose record_count (7) does not match its 3 records was accepted")
        # Produce(batch) with a good batch.
        recs4 = make_records(2, "pb-viaproduce")
        b4 = T.RecordBatch(magic=2, records=recs4, record_count=2,
                           crc32=crc32c(records_bytes_of_records(recs4)))
        pr = ok(c.unary("/rustmq.client.ProducerService/Produce",
                        P.ProduceRequest(version=V(), topic_partition=T.TopicPartition(
                            topic="pb-t", partition=0), acks=ACK_LEADER, batch=b4),
                        P.ProduceResponse), "Produce(batch)")
        eq(pr.offset, 9, "offset after a refused batch (nothing appended)")
        batches = c.fetch_all("pb-t", 0)
        eq([b.base_offset for b, _ in batches], [0, 5, 9], "stored batches")
        check_batch(*batches[0], recs, 0)
        eq(batches[0][0].crc32, good.crc32, "stored CRC = the producer's")
        check_batch(*batches[1], recs2, 5)
        check(batches[1][0].crc32 != 0, "the broker computed the CRC of a crc32 = 0 batch")
        check_batch(*batches[2], recs4, 9)


@test
def produce_malformed_combinations(ctx):
    """Field combinations a fuzzer found (each crashed or misstored before):
    records and a batch together, a batch field twice, compressed_records
    twice, and a compressed batch whose record_count disagrees with what it
    decompresses to, stored by a topic that forces another codec.  Each is
    refused, nothing is appended, and the node keeps serving."""
    path = "/rustmq.client.ProducerService/Produce"
    tp = T.TopicPartition(topic="mal-t", partition=0)
    with ctx.client() as c:
        ok(c.create_topic("mal-t", 1, {"compression.type": "none"}), "create")
        recs = make_records(16, "mal")
        b = T.RecordBatch(magic=2, records=recs, record_count=len(recs))
        # 16 records (field 4: ranges allocated for exactly 16) then a
        # batch, whose ranges were added past that allocation.
        mixed = (P.ProduceRequest(version=V(), topic_partition=tp, records=recs).SerializeToString()
                 + P.ProduceRequest(batch=b).SerializeToString())
        r = P.ProduceResponse.FromString(c.unary_raw(path, mixed))
        expect_code(r, INVALID_REQUEST, "records and batch")
        twice = (P.ProduceRequest(version=V(), topic_partition=tp, batch=b).SerializeToString()
                 + P.ProduceRequest(batch=b).SerializeToString())
        r = P.ProduceResponse.FromString(c.unary_raw(path, twice))
        expect_code(r, INVALID_REQUEST, "batch twice")
        # The same inside ProduceBatch: one partition's data with two batches.
        pd = (P.ProducePartitionData(topic_partition=tp, batch=b).SerializeToString()
              + P.ProducePartitionData(batch=b).SerializeToString())
        raw = (P.ProduceBatchRequest(version=V()).SerializeToString()
               + bytes([0x1a]) + varint(len(pd)) + pd)  # field 3, LEN
        r = P.ProduceBatchResponse.FromString(
            c.unary_raw("/rustmq.client.ProducerService/ProduceBatch", raw))
        check(r.error_code != OK or r.partitions[0].error_code == INVALID_REQUEST,
              f"ProduceBatch with a batch twice: {r}")
        mods = codec_modules()
        if COMP_LZ4 in mods:
            comp = mods[COMP_LZ4][1](records_bytes_of_records(make_records(3, "mal-z")))
            two9 = (T.RecordBatch(magic=2, compression_type=COMP_LZ4, record_count=3,
                                  compressed_records=comp).SerializeToString()
                    + T.RecordBatch(compressed_records=b"junk").SerializeToString())
            raw = (P.ProduceRequest(version=V(), topic_partition=tp).SerializeToString()
                   + bytes([0x7a]) + varint(len(two9)) + two9)  # field 15, LEN
            r = P.ProduceResponse.FromString(c.unary_raw(path, raw))
            expect_code(r, INVALID_REQUEST, "compressed_records twice")
            liar = T.RecordBatch(magic=2, compression_type=COMP_LZ4, record_count=5,
                                 compressed_records=comp)
            r = c.unary(path, P.ProduceRequest(version=V(), topic_partition=tp, batch=liar),
                        P.ProduceResponse)
            expect_code(r, CORRUPT_MESSAGE, "record_count 5 over 3 compressed records")
        else:
            print("  (lz4 missing: compressed cases skipped)")
        eq(c.fetch_all("mal-t", 0), [], "nothing appended")
        ok(c.produce("mal-t", 0, make_records(2, "after")), "the node still serves")


@test
def produce_batch_multi_partition(ctx):
    with ctx.client() as c:
        c.create_topic("pbm-t", 4)
        items = []
        want = {}
        for p in (3, 0, 2):
            recs = make_records(2 + p, f"pbm{p}")
            items.append(("pbm-t", p, T.RecordBatch(magic=2, records=recs, record_count=len(recs),
                                                     crc32=crc32c(records_bytes_of_records(recs)))))
            want[p] = recs
        recs = make_records(1, "pbm-nope")
        items.append(("pbm-nope", 0, T.RecordBatch(magic=2, records=recs, record_count=1)))
        items.append(("pbm-t", 9, T.RecordBatch(magic=2, records=recs, record_count=1)))
        r = ok(c.produce_batch(items, acks=ACK_ALL), "ProduceBatch")
        eq(len(r.partitions), 5, "one result per partition")
        eq([(x.topic_partition.topic, x.topic_partition.partition) for x in r.partitions],
           [("pbm-t", 3), ("pbm-t", 0), ("pbm-t", 2), ("pbm-nope", 0), ("pbm-t", 9)],
           "results in request order")
        for x in r.partitions[:3]:
            ok(x, f"partition {x.topic_partition.partition}")
            eq(x.offset, 0, "offset")
        expect_code(r.partitions[3], TOPIC_NOT_FOUND, "unknown topic")
        expect_code(r.partitions[4], PARTITION_NOT_FOUND, "partition 9 of 4")
        for p, recs in want.items():
            batches = c.fetch_all("pbm-t", p)
            eq(len(batches), 1, f"batches of pbm-t-{p}")
            check_batch(*batches[0], recs, 0)
        eq(len(c.fetch_all("pbm-t", 1)), 0, "untouched partition")


@test
def produce_stream_200_pipelined(ctx):
    with ctx.client() as c:
        c.create_topic("ps-t", 2)
        n = 200
        reqs = []
        sent = {}
        for i in range(n):
            part = i % 2
            topic = "ps-t" if i != 100 else "ps-nope"
            recs = make_records(1 + i % 3, f"ps{i}", size=8000)
            reqs.append(P.ProduceRequest(version=V(), client_id="stream", acks=ACK_LEADER,
                                         topic_partition=T.TopicPartition(topic=topic,
                                                                          partition=part),
                                         records=recs, correlation_id=i + 1))
            sent[i] = (part, recs)
        # All 200 are handed to grpcio at once: they go out pipelined.  With
        # records of 8 KB the logs roll their 256 KiB segments several times
        # meanwhile, so requests wait in the partitions' backlogs too.
        it = c.bidi("/rustmq.client.ProducerService/ProduceStream", iter(reqs),
                    P.ProduceResponse, timeout=60)
        resps = list(it)
        eq(len(resps), n, "exactly one response per request")
        last = {0: -1, 1: -1}
        for i, r in enumerate(resps):
            eq(r.correlation_id, i + 1, f"response {i}: correlation_id (order)")
            if i == 100:
                expect_code(r, TOPIC_NOT_FOUND, "stream request to an unknown topic")
                continue
            ok(r, f"stream response {i}")
            part, recs = sent[i]
            check(r.offset == last[part] + 1,
                  f"response {i}: offset {r.offset} does not follow {last[part]} on partition {part}")
            eq(r.record_count, len(recs), "record_count")
            last[part] = r.offset + len(recs) - 1
        # What the stream wrote reads back.
        for part in (0, 1):
            batches = c.fetch_all("ps-t", part)
            want = [sent[i][1] for i in range(n) if i != 100 and sent[i][0] == part]
            eq(len(batches), len(want), "batches")
            for (b, raw), recs in zip(batches, want):
                check_batch(b, raw, recs)
        # An empty stream (half-close at once) ends OK.
        eq(list(c.bidi("/rustmq.client.ProducerService/ProduceStream", iter([]),
                       P.ProduceResponse, timeout=20)), [], "empty stream")


@test
def produce_stream_version_mid_stream(ctx):
    """A ProduceStream message with an API major version the node does not
    speak, after one it took (found by tests/fuzz/fuzz_grpc): the stream
    ends with UNSUPPORTED_VERSION, and the node keeps no reference to the
    call (it kept one for good, so it could never drain at shutdown)."""
    with ctx.client() as c:
        c.create_topic("psv-t", 1)
        tp = T.TopicPartition(topic="psv-t", partition=0)
        reqs = [P.ProduceRequest(version=V(), topic_partition=tp, records=make_records(1, "psv")),
                P.ProduceRequest(version=T.ApiVersion(major=9), topic_partition=tp,
                                 records=make_records(1, "psv9"))]
        resps = list(c.bidi("/rustmq.client.ProducerService/ProduceStream", iter(reqs),
                            P.ProduceResponse, timeout=20))
        check(resps and resps[-1].error_code == UNSUPPORTED_VERSION,
              f"the stream ends with UNSUPPORTED_VERSION: {[ecname(r.error_code) for r in resps]}")
        seen = []

        def settled():
            n = c.calls_in_flight()
            seen.append(n)
            return n == 1

        wait_until(settled, 10, f"rmq_calls to return to 1 (saw {seen[-5:]})", step=0.1)


# ---- fetch -----------------------------------------------------------------------

@test
def fetch_offsets_and_positions(ctx):
    with ctx.client() as c:
        expected = ctx.produced.get(("prod-t", 0))
        if not expected:
            raise Skip("produce_records_all_acks did not run")
        hw = expected[-1][0] + len(expected[-1][1])
        # From an offset inside the second batch: that batch from its start.
        base1, recs1 = expected[1]
        resp, raw = c.fetch([("prod-t", 0, base1 + 2)])
        pr = ok(resp.partitions[0], "fetch mid-batch")
        eq(pr.high_watermark, hw, "high_watermark")
        eq(pr.log_start_offset, 0, "log_start_offset")
        eq(pr.last_stable_offset, hw, "last_stable_offset")
        eq(pr.topic_partition.topic, "prod-t", "topic_partition")
        eq(pr.batches[0].base_offset, base1, "batch holding fetch_offset, from its start")
        for (b, r), (base, recs) in zip(zip(pr.batches, raw[0]), expected[1:]):
            check_batch(b, r, recs, base)
        # At the high watermark: no batches, OK.
        resp, _ = c.fetch([("prod-t", 0, hw)])
        pr = ok(resp.partitions[0], "fetch at HW")
        eq(len(pr.batches), 0, "batches at HW")
        eq(pr.high_watermark, hw, "high_watermark")
        # Beyond it: OFFSET_OUT_OF_RANGE with the range.
        resp, _ = c.fetch([("prod-t", 0, hw + 1)])
        pr = resp.partitions[0]
        expect_code(pr, OFFSET_OUT_OF_RANGE, "fetch beyond HW")
        eq(pr.high_watermark, hw, "high_watermark on OFFSET_OUT_OF_RANGE")
        eq(pr.log_start_offset, 0, "log_start_offset on OFFSET_OUT_OF_RANGE")
        resp, _ = c.fetch([("prod-t", 0, 1 << 62)])
        expect_code(resp.partitions[0], OFFSET_OUT_OF_RANGE, "fetch far beyond HW")
        # The last offset alone.
        resp, _ = c.fetch([("prod-t", 0, hw - 1)])
        pr = ok(resp.partitions[0], "fetch last offset")
        eq(len(pr.batches), 1, "one batch")
        eq(pr.batches[0].base_offset, expected[-1][0], "last batch")
        # ListOffsets.
        # (Each partition at most once per request: one lookup each.)
        got = []
        for spec in (C.OFFSET_SPEC_EARLIEST, C.OFFSET_SPEC_LATEST):
            req = C.ListOffsetsRequest(version=V())
            req.partitions.add(topic_partition=T.TopicPartition(topic="prod-t", partition=0),
                               spec=spec)
            lo = ok(c.unary("/rustmq.client.ConsumerService/ListOffsets", req,
                            C.ListOffsetsResponse), "ListOffsets")
            got.append(lo.partitions[0].offset)
        eq(got, [0, hw], "EARLIEST, LATEST")


@test
def list_offsets_lookups(ctx):
    with ctx.client() as c:
        c.create_topic("lo-t", 2)
        t0 = int(time.time() * 1000) - 3_600_000
        bases = []
        for i in range(3):
            recs = [T.Record(value=f"lo{i}-{j}".encode(), timestamp=ts(t0 + 1000 * i + 10 * j))
                    for j in range(2)]
            bases.append(ok(c.produce("lo-t", 0, recs), "produce").offset)

        def lookup(part, spec, at=None):
            req = C.ListOffsetsRequest(version=V())
            lp = req.partitions.add(topic_partition=T.TopicPartition(topic="lo-t", partition=part),
                                    spec=spec)
            if at is not None:
                lp.timestamp.CopyFrom(ts(at))
            r = ok(c.unary("/rustmq.client.ConsumerService/ListOffsets", req,
                           C.ListOffsetsResponse), "ListOffsets")
            eq(len(r.partitions), 1, "results")
            return r.partitions[0]

        eq(ok(lookup(0, C.OFFSET_SPEC_EARLIEST), "EARLIEST").offset, 0, "EARLIEST")
        eq(ok(lookup(0, C.OFFSET_SPEC_LATEST), "LATEST").offset, 6, "LATEST")
        eq(ok(lookup(1, C.OFFSET_SPEC_LATEST), "LATEST empty").offset, 0, "LATEST of an empty partition")
        r = lookup(0, C.OFFSET_SPEC_TIMESTAMP, t0 + 1000)
        ok(r, "TIMESTAMP exact")
        eq(r.offset, bases[1], "TIMESTAMP exact: first record with that time")
        r = ok(lookup(0, C.OFFSET_SPEC_TIMESTAMP, t0 + 1005), "TIMESTAMP between")
        eq(r.offset, bases[1] + 1, "TIMESTAMP inside a batch: the first record at or after it")
        eq(r.timestamp.ToMilliseconds(), t0 + 1010, "TIMESTAMP between: the found record's time")
        r = ok(lookup(0, C.OFFSET_SPEC_TIMESTAMP, t0 - 5000), "TIMESTAMP before all")
        eq(r.offset, 0, "TIMESTAMP before every record")
        expect_code(lookup(0, C.OFFSET_SPEC_UNSPECIFIED), INVALID_REQUEST, "UNSPECIFIED")
        r = lookup(0, C.OFFSET_SPEC_TIMESTAMP, t0 + 60_000)
        check(r.error_code == 57, f"ListOffsets TIMESTAMP after every record answers "
            f"{ecname(r.error_code)} offset {r.offset}, consumer.proto says OFFSET_NOT_AVAILABLE")
        r = lookup(1, C.OFFSET_SPEC_TIMESTAMP, t0)
        check(r.error_code == 57, f"ListOffsets TIMESTAMP on an empty partition answers "
            f"{ecname(r.error_code)} offset {r.offset}, consumer.proto says OFFSET_NOT_AVAILABLE")
        r = lookup(0, C.OFFSET_SPEC_TIMESTAMP, t0 + 1000)
        check(r.HasField("timestamp") and r.timestamp.ToMilliseconds() == t0 + 1000,
              "ListOffsets TIMESTAMP returns the found record's timestamp")
        r = ok(lookup(0, C.OFFSET_SPEC_MAX_TIMESTAMP), "MAX_TIMESTAMP")
        eq((r.offset, r.timestamp.ToMilliseconds()), (bases[2] + 1, t0 + 2010),
           "MAX_TIMESTAMP: the record with the greatest timestamp")
        expect_code(lookup(1, C.OFFSET_SPEC_MAX_TIMESTAMP), 57, "MAX_TIMESTAMP of an empty partition")
        # Subscribe starts at the same places: the batch holding the record.
        for spec, at, base in ((C.OFFSET_SPEC_TIMESTAMP, t0 + 1005, bases[1]),
                               (C.OFFSET_SPEC_MAX_TIMESTAMP, None, bases[2])):
            req = C.SubscribeRequest(version=V(), client_id="sub-ts")
            sp = req.partitions.add(topic_partition=T.TopicPartition(topic="lo-t", partition=0),
                                    start_spec=spec)
            if at is not None:
                sp.start_timestamp.CopyFrom(ts(at))
            with ctx.client() as c2:
                s = Sub(c2, req)
                first = s.records(1)[0]
                s.cancel()
            eq(first[1], base, f"Subscribe from {C.OffsetSpec.Name(spec)}: first batch's base")
        req = C.ListOffsetsRequest(version=V())
        req.partitions.add(topic_partition=T.TopicPartition(topic="lo-nope", partition=0),
                           spec=C.OFFSET_SPEC_LATEST)
        req.partitions.add(topic_partition=T.TopicPartition(topic="lo-t", partition=2),
                           spec=C.OFFSET_SPEC_LATEST)
        r = ok(c.unary("/rustmq.client.ConsumerService/ListOffsets", req, C.ListOffsetsResponse),
               "ListOffsets errors")
        expect_code(r.partitions[0], TOPIC_NOT_FOUND, "unknown topic")
        expect_code(r.partitions[1], PARTITION_NOT_FOUND, "partition 2 of 2")


@test
def topic_rules(ctx):
    with ctx.client() as c:
        # max.message.bytes: a larger batch is refused, nothing appended.
        c.create_topic("tr-small", 1, {"max.message.bytes": "2048"})
        r = c.produce("tr-small", 0, [T.Record(value=b"x" * 4000)])
        expect_code(r, 13, "batch above max.message.bytes")
        pr = ok(c.produce("tr-small", 0, [T.Record(value=b"y" * 100)]), "small batch")
        eq(pr.offset, 0, "nothing appended by the refused batch")
        # LogAppendTime: the broker's time, in the answer and in the batch.
        c.create_topic("tr-lat", 1, {"message.timestamp.type": "LogAppendTime"})
        before = int(time.time() * 1000)
        old = ts(before - 86_400_000)
        pr = ok(c.produce("tr-lat", 0, [T.Record(value=b"lat", timestamp=old)]), "produce")
        check(pr.log_append_time >= before - 5000, f"log_append_time {pr.log_append_time}")
        eq(pr.timestamp.ToMilliseconds(), pr.log_append_time, "timestamp = log-append time")
        resp, raw = c.fetch([("tr-lat", 0, 0)])
        b = resp.partitions[0].batches[0]
        check_batch(b, raw[0][0])
        eq(b.log_append_time_ms, pr.log_append_time, "stored log_append_time_ms")
        eq(b.max_timestamp.ToMilliseconds(), pr.log_append_time, "max_timestamp on LogAppendTime")
        # min.insync.replicas 2 on one broker: acks=ALL refused, LEADER works.
        c.create_topic("tr-isr", 1, {"min.insync.replicas": "2"})
        expect_code(c.produce("tr-isr", 0, make_records(1, "isr"), acks=ACK_ALL), 19,
                    "acks=ALL below min.insync.replicas")
        ok(c.produce("tr-isr", 0, make_records(1, "isr"), acks=ACK_LEADER), "acks=LEADER")
        expect_code(c.produce("tr-isr", 0, make_records(1, "isr"), acks=4, custom_ack_count=2),
                    INVALID_REQUEST, "acks=CUSTOM(2) on one replica: more than it has")
        # Replication factor and partition counts.
        rr = c.unary("/rustmq.controller.AdminService/CreateTopics",
                     A.CreateTopicsRequest(version=V(), topics=[
                         A.CreatableTopic(name="tr-rf", partitions=1, replication_factor=2),
                         A.CreatableTopic(name="tr-many", partitions=1 << 30)]),
                     A.CreateTopicsResponse)
        expect_code(rr.topics[0], 17, "replication factor 2 on one broker")
        expect_code(rr.topics[1], INVALID_PARTITIONS, "2^30 partitions")
        # Idempotence: a resent batch (same producer id, epoch, sequence).
        c.create_topic("tr-idem", 1)
        kw = dict(producer_id=1, producer_epoch=0, base_sequence=0)
        r1 = ok(c.produce("tr-idem", 0, make_records(2, "idem"), **kw), "idempotent produce")
        r2 = c.produce("tr-idem", 0, make_records(2, "idem"), **kw)
        check(r2.error_code == 36 and r2.offset == r1.offset,
            f"a resent idempotent batch (producer 1, epoch 0, sequence 0) is answered "
            f"{ecname(r2.error_code)} at offset {r2.offset} (appended twice), not "
            f"DUPLICATE_SEQUENCE at {r1.offset}")
        r3 = c.produce("tr-idem", 0, make_records(1, "key"), idempotency_key="k1")
        r4 = c.produce("tr-idem", 0, make_records(1, "key"), idempotency_key="k1")
        check(r4.error_code == 6 and r4.offset == r3.offset,
            f"a retry with the same idempotency_key is answered {ecname(r4.error_code)} at "
            f"{r4.offset} (appended again), not DUPLICATE_REQUEST at {r3.offset}")


@test
def producer_ids(ctx):
    """InitTransaction without a transactional id gives producer ids from
    1 upwards, never one twice, also across a restart (the controller's
    state keeps the last one); one asked again gets a new id; a
    transactional id is UNIMPLEMENTED; an id given dedups as any."""
    path = "/rustmq.client.ProducerService/InitTransaction"
    init = lambda c, **kw: c.unary(path, P.InitTransactionRequest(version=V(), client_id="ids",
                                                                  **kw),
                                   P.InitTransactionResponse)
    with ctx.client() as c:
        got = [ok(init(c), "InitTransaction") for _ in range(3)]
        ids = [r.producer_id for r in got]
        check(ids[0] >= 1 and ids == sorted(set(ids)), f"distinct, increasing ids: {ids}")
        eq([r.producer_epoch for r in got], [0, 0, 0], "epoch 0")
        again = ok(init(c, producer_id=ids[-1], producer_epoch=0), "InitTransaction again")
        check(again.producer_id > ids[-1], f"asked again: a new id {again.producer_id}")
        expect_status(lambda: init(c, transactional_id="tx-1"), grpc.StatusCode.UNIMPLEMENTED,
                      "a transactional id")
        c.create_topic("pid-t", 1)
        kw = dict(producer_id=again.producer_id, producer_epoch=0, base_sequence=0)
        r1 = ok(c.produce("pid-t", 0, make_records(2, "pid"), **kw), "idempotent produce")
        r2 = c.produce("pid-t", 0, make_records(2, "pid"), **kw)
        eq((r2.error_code, r2.offset), (36, r1.offset), "the resend: DUPLICATE_SEQUENCE")
    eq(ctx.node.stop(), 0, "exit status after SIGTERM")
    ctx.node.start()
    with ctx.client() as c:
        after = ok(init(c), "InitTransaction after a restart").producer_id
        check(after > again.producer_id, f"after a restart: {after} > {again.producer_id}")


@test
def fetch_size_limits(ctx):
    with ctx.client() as c:
        c.create_topic("fs-t", 2)
        rnd = random.Random(7)
        want = {0: [], 1: []}
        for part in (0, 1):
            for i in range(5):
                recs = make_records(4, f"fs{part}-{i}", size=4000, rnd=rnd)
                r = ok(c.produce("fs-t", part, recs), "produce")
                want[part].append((r.offset, recs))
        # Learn the stored sizes.
        resp, raw = c.fetch([("fs-t", 0, 0), ("fs-t", 1, 0)])
        for i, part in enumerate((0, 1)):
            eq(len(resp.partitions[i].batches), 5, "all batches without limits")
            for (b, r), (base, recs) in zip(zip(resp.partitions[i].batches, raw[i]), want[part]):
                check_batch(b, r, recs, base)
        size = max(len(r) for r in raw[0] + raw[1])  # each about 16 KB
        small = min(len(r) for r in raw[0] + raw[1])
        check(small > size * 0.9, "batches of similar size")
        # partition_max_bytes = 1: the first batch whole, nothing more.
        resp, raw = c.fetch([("fs-t", 0, 0, 1)])
        pr = ok(resp.partitions[0], "pmax 1")
        eq(len(pr.batches), 1, "partition_max_bytes below one batch: one whole batch")
        check_batch(pr.batches[0], raw[0][0], want[0][0][1], 0)
        # 2.5 batches per partition: two whole batches.
        resp, raw = c.fetch([("fs-t", 0, 0, int(size * 2.5)), ("fs-t", 1, 0, int(size * 2.5))])
        eq([len(p.batches) for p in resp.partitions], [2, 2], "partition_max_bytes 2.5 batches")
        for i, part in enumerate((0, 1)):
            for (b, r), (base, recs) in zip(zip(resp.partitions[i].batches, raw[i]), want[part]):
                check_batch(b, r, recs, base)
        # max_bytes = 1: the first batch of the first partition only.
        resp, raw = c.fetch([("fs-t", 1, 0), ("fs-t", 0, 0)], max_bytes=1)
        eq([len(p.batches) for p in resp.partitions], [1, 0], "max_bytes 1")
        eq(resp.partitions[0].topic_partition.partition, 1, "request order")
        ok(resp.partitions[1], "the partition left out by max_bytes is still OK")
        # max_bytes 3.5 batches across partitions of 2.5 each: 2 + 1.
        resp, raw = c.fetch([("fs-t", 0, 0, int(size * 2.5)), ("fs-t", 1, 0, int(size * 2.5))],
                            max_bytes=int(size * 3.5))
        eq([len(p.batches) for p in resp.partitions], [2, 1], "max_bytes 3.5 batches")
        # A first partition with no data does not take the "first batch" exception
        # from the next one: fetch at HW of 0 then 1 with max_bytes 1.
        hw0 = resp.partitions[0].high_watermark
        resp, raw = c.fetch([("fs-t", 0, hw0), ("fs-t", 1, 0)], max_bytes=1)
        eq([len(p.batches) for p in resp.partitions], [0, 1],
           "max_bytes 1: first batch of the first partition *with data*")
        # Never split: every returned batch parses whole and its CRC matches.
        for lim in (size // 3, size - 1, size + 1, int(size * 1.7)):
            resp, raw = c.fetch([("fs-t", 0, 3, lim)])
            for b, r in zip(resp.partitions[0].batches, raw[0]):
                check_batch(b, r)


@test
def fetch_long_poll_wakeup(ctx):
    with ctx.client() as c, ctx.client() as c2:
        c.create_topic("lp-t", 1)
        ok(c.produce("lp-t", 0, make_records(2, "lp-old")), "produce")
        result = {}

        def poll():
            try:
                result["resp"] = c2.fetch([("lp-t", 0, 2)], max_wait_ms=5000, min_bytes=1,
                                          timeout=20)
            except Exception as e:  # noqa: BLE001
                result["err"] = e

        th = threading.Thread(target=poll, daemon=True)
        th.start()
        time.sleep(0.3)
        recs = make_records(3, "lp-new")
        ok(c.produce("lp-t", 0, recs), "produce while polled")
        th.join(20)
        check(not th.is_alive(), "the long poll did not return")
        if "err" in result:
            raise result["err"]
        resp, raw = result["resp"]
        pr = ok(resp.partitions[0], "long poll")
        check(pr.batches, "the long poll returned without the new data")
        check_batch(pr.batches[0], raw[0][0], recs, 2)
        # A long poll on two partitions of different shards wakes too.
        c.create_topic("lp2-t", 8)
        result.clear()

        def poll2():
            try:
                result["resp"] = c2.fetch([("lp2-t", p, 0) for p in range(8)], max_wait_ms=5000,
                                          min_bytes=1, timeout=20)
            except Exception as e:  # noqa: BLE001
                result["err"] = e

        th = threading.Thread(target=poll2, daemon=True)
        th.start()
        time.sleep(0.3)
        recs = make_records(1, "lp2")
        ok(c.produce("lp2-t", 5, recs), "produce partition 5")
        th.join(20)
        check(not th.is_alive(), "the long poll on 8 partitions did not return")
        if "err" in result:
            raise result["err"]
        resp, raw = result["resp"]
        eq(len(resp.partitions), 8, "partitions answered")
        got = [i for i, p in enumerate(resp.partitions) if p.batches]
        eq(got, [5], "data only in partition 5")
        check_batch(resp.partitions[5].batches[0], raw[5][0], recs, 0)


@test
def fetch_max_wait_expiry(ctx):
    with ctx.client() as c:
        c.create_topic("mw-t", 2)
        ok(c.produce("mw-t", 0, make_records(1, "mw")), "produce")
        t0 = time.monotonic()
        resp, _ = c.fetch([("mw-t", 0, 1), ("mw-t", 1, 0)], max_wait_ms=400, min_bytes=1,
                          timeout=20)
        took = time.monotonic() - t0
        ok(resp, "fetch")
        for pr in resp.partitions:
            ok(pr, "partition")
            eq(len(pr.batches), 0, "no batches after max_wait")
        eq([p.high_watermark for p in resp.partitions], [1, 0], "high watermarks")
        check(took >= 0.3, f"max_wait 400ms answered after {took:.3f}s")
        # min_bytes above what exists: max_wait ends it with what there is.
        resp, _ = c.fetch([("mw-t", 0, 0)], max_wait_ms=300, min_bytes=1 << 20, timeout=20)
        eq(len(resp.partitions[0].batches), 1, "what there is at max_wait")


@test
def fetch_replica_reads(ctx):
    """A Fetch whose replica_id names a broker reads this node's replica
    (fetch.c, "Replica reads"): here, one node, the same records as a
    consumer's read; answered at once whatever max_wait says; proto3's
    default 0 is a consumer (test_faults.py reads followers and past the
    high watermark on three nodes)."""
    with ctx.client() as c:
        c.create_topic("rr-t", 2)
        ok(c.produce("rr-t", 0, make_records(3, "rr")), "produce")
        want = [(b.base_offset, [r.value for r in b.records]) for b, _ in c.fetch_all("rr-t", 0)]
        for rid in (1, 7):
            got = c.fetch_all("rr-t", 0, replica_id=rid)
            eq([(b.base_offset, [r.value for r in b.records]) for b, _ in got], want,
               f"replica_id {rid}: this node's replica")
        t0 = time.monotonic()
        resp, _ = c.fetch([("rr-t", 0, 3), ("rr-t", 1, 0)], max_wait_ms=3000, min_bytes=1,
                          replica_id=1)
        took = time.monotonic() - t0
        ok(resp, "replica read at the log end")
        eq([(len(p.batches), p.high_watermark) for p in resp.partitions], [(0, 3), (0, 0)],
           "nothing past the log end")
        check(took < 2.5, f"a replica read answers at once: {took:.2f}s")
        resp, _ = c.fetch([("rr-t", 0, 4)], replica_id=1)
        eq(resp.partitions[0].error_code, OFFSET_OUT_OF_RANGE, "past the log end")
        resp, _ = c.fetch([("nope", 0, 0)], replica_id=1)
        eq(resp.partitions[0].error_code, TOPIC_NOT_FOUND, "an unknown topic")
        t0 = time.monotonic()
        resp, _ = c.fetch([("rr-t", 1, 0)], max_wait_ms=400, min_bytes=1, replica_id=0)
        check(time.monotonic() - t0 >= 0.3, "replica_id 0 is a consumer: it long-polls")


@test
def fetch_no_partitions(ctx):
    # A Fetch of no partitions (a consumer-group member with nothing
    # assigned) is answered at once with one empty FetchResponse, not
    # with no message at all (which a gRPC client reports as INTERNAL).
    with ctx.client() as c:
        resp, raw = c.fetch([], max_wait_ms=2000)
        ok(resp, "Fetch of no partitions")
        eq(len(resp.partitions), 0, "partitions in the answer")


@test
def fetch_batch_rpc(ctx):
    with ctx.client() as c:
        c.create_topic("fb-a", 1)
        c.create_topic("fb-b", 3)
        ra = make_records(2, "fba")
        rb = make_records(3, "fbb")
        ok(c.produce("fb-a", 0, ra), "produce a")
        ok(c.produce("fb-b", 2, rb), "produce b")
        req = C.FetchBatchRequest(version=V(), client_id="fb")
        req.fetches.append(c.fetch_req([("fb-a", 0, 0)]))
        req.fetches.append(c.fetch_req([("fb-b", 2, 0), ("fb-b", 1, 0)]))
        req.fetches.append(c.fetch_req([("fb-nope", 0, 0)]))
        req.fetches.append(c.fetch_req([("fb-b", 0, 0)], max_wait_ms=300, min_bytes=1))
        r = ok(c.unary("/rustmq.client.ConsumerService/FetchBatch", req, C.FetchBatchResponse,
                       timeout=20), "FetchBatch")
        eq(len(r.responses), 4, "one response per fetch")
        a = r.responses[0].partitions[0]
        ok(a, "fb-a")
        eq(list(a.batches[0].records), ra, "fb-a records")
        b = r.responses[1].partitions
        eq([p.topic_partition.partition for p in b], [2, 1], "order within a fetch")
        eq(list(b[0].batches[0].records), rb, "fb-b records")
        eq(len(b[1].batches), 0, "empty partition")
        expect_code(r.responses[2].partitions[0], TOPIC_NOT_FOUND, "unknown topic in FetchBatch")
        ok(r.responses[3].partitions[0], "waiting fetch in a batch")


# ---- subscribe -------------------------------------------------------------------

class Sub:
    """A Subscribe stream read by a thread into a queue."""

    def __init__(self, client, req, timeout=60):
        self.q = queue.Queue()
        self.it = client.server_stream("/rustmq.client.ConsumerService/Subscribe", req,
                                       C.FetchResponse, timeout=timeout)
        self.end = None
        self.buf = []
        self.th = threading.Thread(target=self._run, daemon=True)
        self.th.start()

    def _run(self):
        try:
            for m in self.it:
                self.q.put(m)
            self.end = "OK"
        except grpc.RpcError as e:
            self.end = e.code()
        self.q.put(None)

    def records(self, n, timeout=10):
        """Returns the next n (partition, offset, record) pushed, in order."""
        out = self.buf
        end = time.monotonic() + timeout
        while len(out) < n:
            left = end - time.monotonic()
            if left <= 0:
                raise AssertionError(f"Subscribe delivered {len(out)} of {n} records in {timeout}s")
            try:
                m = self.q.get(timeout=left)
            except queue.Empty:
                continue
            if m is None:
                raise AssertionError(f"Subscribe ended ({self.end}) after {len(out)} of {n} records")
            ok(m, "Subscribe response")
            for pr in m.partitions:
                ok(pr, "Subscribe partition")
                for b in pr.batches:
                    for i, r in enumerate(b.records):
                        out.append((pr.topic_partition.partition, b.base_offset + i, r))
        self.buf = out[n:]
        return out[:n]

    def cancel(self):
        self.it.cancel()
        self.th.join(10)
        check(not self.th.is_alive(), "Subscribe reader did not end after cancel")
        eq(self.end, grpc.StatusCode.CANCELLED, "Subscribe end after cancel")


@test
def subscribe_from_latest_and_offset(ctx):
    with ctx.client() as c, ctx.client() as c2:
        c.create_topic("sub-t", 2)
        old = make_records(4, "sub-old")
        ok(c.produce("sub-t", 0, old[:2]), "produce")
        ok(c.produce("sub-t", 0, old[2:]), "produce")
        # From LATEST: nothing old; new batches as they come.
        req = C.SubscribeRequest(version=V(), client_id="sub")
        req.partitions.add(topic_partition=T.TopicPartition(topic="sub-t", partition=0),
                           start_spec=C.OFFSET_SPEC_LATEST)
        req.partitions.add(topic_partition=T.TopicPartition(topic="sub-t", partition=1))
        s = Sub(c2, req)
        # The subscription resolves LATEST when it starts: produce markers until
        # one arrives, then check that every later batch arrives in order.
        got = []
        for i in range(40):
            ok(c.produce("sub-t", 1, [T.Record(value=f"marker{i}".encode())]), "marker")
            try:
                got = s.records(1, timeout=0.5)
                break
            except AssertionError:
                continue
        check(got, "Subscribe from LATEST delivered nothing")
        for part, off, r in got:
            check(part == 1 and r.value.startswith(b"marker"), f"unexpected first record {r}")
        # Drain any further markers in flight.
        time.sleep(0.3)
        s.buf = []
        while not s.q.empty():
            m = s.q.get()
            if m is None:
                raise AssertionError(f"Subscribe ended: {s.end}")
        new = []
        for i in range(3):
            recs = make_records(2, f"sub-new{i}")
            r = ok(c.produce("sub-t", i % 2, recs), "produce new")
            new += [(i % 2, r.offset + j, rec) for j, rec in enumerate(recs)]
            time.sleep(0.05)
        got = s.records(len(new))
        eq(sorted(got, key=lambda x: (x[0], x[1])), sorted(new, key=lambda x: (x[0], x[1])),
           "records pushed from LATEST")
        s.cancel()
        # From an explicit offset (inside the first batch): old data first.
        req = C.SubscribeRequest(version=V(), client_id="sub")
        req.partitions.add(topic_partition=T.TopicPartition(topic="sub-t", partition=0),
                           offset=1)
        s = Sub(c2, req)
        got = s.records(4)
        eq([(o, r) for _, o, r in got[:4]], list(enumerate(old)),
           "from offset 1: the batch holding it from its start, then the next")
        # Everything else on partition 0 up to now, then one more.
        hw = ok(c.fetch([("sub-t", 0, 0)])[0].partitions[0], "fetch").high_watermark
        if hw > 4:
            s.records(hw - 4)
        recs = make_records(3, "sub-after")
        r = ok(c.produce("sub-t", 0, recs), "produce")
        got = s.records(3)
        eq(got, [(0, r.offset + j, x) for j, x in enumerate(recs)], "pushed after the backlog")
        s.cancel()
        # EARLIEST on an empty partition, then data arrives.
        c.create_topic("sub-e", 1)
        req = C.SubscribeRequest(version=V())
        req.partitions.add(topic_partition=T.TopicPartition(topic="sub-e", partition=0),
                           start_spec=C.OFFSET_SPEC_EARLIEST)
        s = Sub(c2, req)
        time.sleep(0.2)
        recs = make_records(2, "sub-e")
        ok(c.produce("sub-e", 0, recs), "produce")
        eq([x[2] for x in s.records(2)], recs, "EARLIEST")
        s.cancel()
        # A failing partition is reported and dropped; the others go on.
        req = C.SubscribeRequest(version=V())
        req.partitions.add(topic_partition=T.TopicPartition(topic="sub-nope", partition=0),
                           offset=0)
        req.partitions.add(topic_partition=T.TopicPartition(topic="sub-e", partition=0),
                           offset=2)
        s = Sub(c2, req)
        m = s.q.get(timeout=10)
        check(m is not None, f"Subscribe ended at once ({s.end})")
        codes = {(p.topic_partition.topic, p.error_code) for p in m.partitions}
        check(("sub-nope", TOPIC_NOT_FOUND) in codes, f"failed partition reported: {codes}")
        s.buf = [(p.topic_partition.partition, b.base_offset + i, r) for p in m.partitions
                 for b in p.batches for i, r in enumerate(b.records)]
        recs = make_records(2, "sub-e2")
        r = ok(c.produce("sub-e", 0, recs), "produce")
        eq([x[2] for x in s.records(2)], recs, "the other partition goes on after a failure")
        s.cancel()
        # A subscription whose only partition fails ends the stream (OK).
        req = C.SubscribeRequest(version=V())
        req.partitions.add(topic_partition=T.TopicPartition(topic="sub-nope", partition=0),
                           offset=0)
        it = c2.server_stream("/rustmq.client.ConsumerService/Subscribe", req, C.FetchResponse,
                              timeout=15)
        try:
            msgs = list(it)
        except grpc.RpcError as e:
            raise AssertionError(f"a Subscribe whose only partition failed ended with {e.code()} "
                                 f"({e.details()}), not OK") from None
        check(msgs, "Subscribe to an unknown topic sent nothing")
        codes = [p.error_code for m in msgs for p in m.partitions] + \
            [m.error_code for m in msgs if m.error_code]
        check(TOPIC_NOT_FOUND in codes, f"Subscribe to an unknown topic: codes {codes}")


# ---- 8 partitions across both shards ------------------------------------------

@test
def eight_partitions_both_shards(ctx):
    with ctx.client() as c:
        c.create_topic("p8-t", 8)
        md = ok(c.unary("/rustmq.client.MetadataService/GetTopicMetadata",
                        MD.GetTopicMetadataRequest(version=V(), topics=["p8-t"]),
                        MD.GetTopicMetadataResponse), "GetTopicMetadata")
        shards = [p.shard for p in md.topics[0].partitions]
        eq(len(shards), 8, "partitions")
        eq(sorted(set(shards)), [0, 1], f"partitions spread across both shards ({shards})")
        want = {}
        for p in range(8):
            want[p] = []
            for k in range(2):
                recs = make_records(1 + p, f"p8-{p}-{k}")
                r = ok(c.produce("p8-t", p, recs), f"produce p8-t-{p}")
                eq(r.offset, sum(len(x) for x in want[p]), "offset")
                want[p].append(recs)
        for p in range(8):
            batches = c.fetch_all("p8-t", p)
            eq(len(batches), 2, f"batches of p8-t-{p}")
            for (b, raw), recs in zip(batches, want[p]):
                check_batch(b, raw, recs)
        # One fetch across all 8 (fan-out to both shards), in a rotated order.
        order = [5, 2, 7, 0, 1, 6, 3, 4]
        resp, raw = c.fetch([("p8-t", p, 0) for p in order])
        eq([x.topic_partition.partition for x in resp.partitions], order, "request order")
        for i, p in enumerate(order):
            pr = ok(resp.partitions[i], f"p8-t-{p}")
            eq(len(pr.batches), 2, "batches")
            for b, r, recs in zip(pr.batches, raw[i], want[p]):
                check_batch(b, r, recs)
        # Metrics see both shards' partitions.
        m = c.metrics(["rmq_partitions"])
        per = {x.labels["shard"]: x.value for x in m.metrics}
        check(per.get("0", 0) > 0 and per.get("1", 0) > 0, f"rmq_partitions per shard {per}")


# ---- compression -------------------------------------------------------------------

@test
def compression_producer_codecs(ctx):
    codecs = ctx.codecs
    if not codecs:
        raise Skip("no python3-lz4 / python3-zstandard / python3-snappy: producer-compressed "
                   "batches not tested")
    with ctx.client() as c:
        c.create_topic("cz-t", 1)  # compression.type = producer (default)
        expected = []
        for ctype, (name, comp, decomp) in sorted(codecs.items()):
            recs = make_records(6, f"cz-{name}", size=200)
            plain = records_bytes_of_records(recs)
            cdata = comp(plain)
            b = T.RecordBatch(magic=2, compression_type=ctype, compressed_records=cdata,
                              record_count=len(recs), crc32=crc32c(cdata))
            r = ok(c.produce_batch([("cz-t", 0, b)]), "ProduceBatch")
            ok(r.partitions[0], f"{name} batch")
            expected.append((r.partitions[0].offset, ctype, cdata, recs, decomp))
            # Wrong CRC over compressed bytes.
            bad = T.RecordBatch(magic=2, compression_type=ctype, compressed_records=cdata,
                                record_count=len(recs), crc32=crc32c(cdata) ^ 0x80000000)
            expect_code(c.produce_batch([("cz-t", 0, bad)]).partitions[0], CORRUPT_MESSAGE,
                        f"{name} with a wrong CRC")
            # crc32 = 0 also works for compressed batches.
            b0 = T.RecordBatch(magic=2, compression_type=ctype, compressed_records=cdata,
                               record_count=len(recs))
            r = ok(c.produce_batch([("cz-t", 0, b0)]).partitions[0], f"{name} crc32 = 0")
            expected.append((r.offset, ctype, cdata, recs, decomp))
        # Garbage that is not a valid frame of the codec is refused.
        junk = b"this is not compressed at all" * 3
        bj = T.RecordBatch(magic=2, compression_type=min(codecs), compressed_records=junk,
                           record_count=2, crc32=crc32c(junk))
        rj = c.produce_batch([("cz-t", 0, bj)]).partitions[0]
        expect_code(rj, CORRUPT_MESSAGE, "a compressed batch whose compressed_records is not a "
                    "frame of its codec")
        batches = c.fetch_all("cz-t", 0)
        eq(len(batches), len(expected), "stored batches")
        for (b, raw), (off, ctype, cdata, recs, decomp) in zip(batches, expected):
            eq(b.base_offset, off, "base_offset")
            if recs is None:
                eq(b.compressed_records, cdata, "the junk batch as stored")
                continue
            check_batch(b, raw, compressed_as=ctype)
            eq(b.compressed_records, cdata, f"codec {ctype}: stored exactly as produced")
            eq(b.record_count, len(recs), "record_count")
            again = T.RecordBatch.FromString(decomp(b.compressed_records))
            eq(list(again.records), recs, "decompressed records")
        # Produce (field 4) with compression = each codec: the broker compresses.
        for ctype, (name, comp, decomp) in sorted(codecs.items()):
            recs = make_records(5, f"czb-{name}", size=300)
            r = ok(c.produce("cz-t", 0, recs, compression=ctype), f"Produce compression={name}")
            resp, raw = c.fetch([("cz-t", 0, r.offset)])
            b = resp.partitions[0].batches[0]
            check_batch(b, raw[0][0], compressed_as=ctype)
            check(b.compressed_records, "compressed_records set")
            eq(list(T.RecordBatch.FromString(decomp(b.compressed_records)).records), recs,
               f"broker-compressed {name} records")


@test
def compression_topic_forced(ctx):
    with ctx.client() as c:
        c.create_topic("cf-t", 1, {"compression.type": "zstd"})
        recs = make_records(8, "cf", size=500)
        r = ok(c.produce("cf-t", 0, recs), "Produce to a zstd topic")
        resp, raw = c.fetch([("cf-t", 0, r.offset)])
        b = ok(resp.partitions[0], "fetch").batches[0]
        _, compressed = check_batch(b, raw[0][0], compressed_as=COMP_ZSTD)
        check(compressed and b.compressed_records, "compressed_records set")
        eq(b.record_count, 8, "record_count")
        # An uncompressed prebuilt batch is compressed with the topic's codec too.
        recs2 = make_records(3, "cf2", size=200)
        b2 = T.RecordBatch(magic=2, records=recs2, record_count=3,
                           crc32=crc32c(records_bytes_of_records(recs2)))
        r2 = ok(c.produce_batch([("cf-t", 0, b2)]).partitions[0], "ProduceBatch to a zstd topic")
        resp, raw = c.fetch([("cf-t", 0, r2.offset)])
        bb = resp.partitions[0].batches[0]
        check_batch(bb, raw[0][0], compressed_as=COMP_ZSTD)
        dec = ctx.codecs.get(COMP_ZSTD)
        if not dec:
            raise Skip("python3-zstandard missing: zstd batches not decompressed "
                       "(compression_type and CRC checked)")
        import zstandard
        params = zstandard.get_frame_parameters(b.compressed_records)
        check(params.content_size == len(records_bytes_of_records(recs)),
              "one zstd frame with content size")
        eq(list(T.RecordBatch.FromString(dec[2](b.compressed_records)).records), recs,
           "decompressed records")
        eq(list(T.RecordBatch.FromString(dec[2](bb.compressed_records)).records), recs2,
           "decompressed records of the prebuilt batch")


# ---- errors --------------------------------------------------------------------

@test
def errors_application_codes(ctx):
    with ctx.client() as c:
        c.create_topic("err-t", 2)
        expect_code(c.produce("err-nope", 0, make_records(1, "e")), TOPIC_NOT_FOUND,
                    "produce unknown topic")
        expect_code(c.produce("err-t", 2, make_records(1, "e")), PARTITION_NOT_FOUND,
                    "produce partition 2 of 2")
        expect_code(c.produce("err-t", 1 << 31, make_records(1, "e")), PARTITION_NOT_FOUND,
                    "produce partition 2^31")
        resp, _ = c.fetch([("err-nope", 0, 0), ("err-t", 5, 0), ("err-t", 0, 0)])
        ok(resp, "fetch")
        expect_code(resp.partitions[0], TOPIC_NOT_FOUND, "fetch unknown topic")
        expect_code(resp.partitions[1], PARTITION_NOT_FOUND, "fetch partition 5 of 2")
        ok(resp.partitions[2], "good partition next to bad ones")
        # A failing partition answers at once even in a long poll.
        t0 = time.monotonic()
        resp, _ = c.fetch([("err-nope", 0, 0)], max_wait_ms=5000, min_bytes=1, timeout=20)
        check(time.monotonic() - t0 < 3, "a failed partition answers at once")
        expect_code(resp.partitions[0], TOPIC_NOT_FOUND, "long poll unknown topic")
        t0 = time.monotonic()
        resp, _ = c.fetch([("err-t", 1, 0), ("err-nope", 0, 0), ("err-t", 0, 0)],
                          max_wait_ms=5000, min_bytes=1, timeout=20)
        check(time.monotonic() - t0 < 3,
              "a failed partition next to waiting ones does not answer at once")
        expect_code(resp.partitions[1], TOPIC_NOT_FOUND, "long poll unknown topic")
        t0 = time.monotonic()
        resp, _ = c.fetch([("err-t", 1, 0), ("err-t", 7, 0)], max_wait_ms=5000, min_bytes=1,
                          timeout=20)
        check(time.monotonic() - t0 < 3,
              "a missing partition next to a waiting one does not answer at once")
        expect_code(resp.partitions[1], PARTITION_NOT_FOUND, "long poll partition 7 of 2")
        # Produce with no records.
        r = c.produce("err-t", 0, [])
        check(r.error_code != OK, "a produce with no records was accepted")
        # ApiVersion major 2.
        r = c.unary("/rustmq.client.ProducerService/Produce",
                    P.ProduceRequest(version=T.ApiVersion(major=2),
                                     topic_partition=T.TopicPartition(topic="err-t", partition=0),
                                     records=make_records(1, "v2")), P.ProduceResponse)
        check(r.error_code == UNSUPPORTED_VERSION,
            f"ApiVersion major 2 is not refused with UNSUPPORTED_VERSION (got "
            f"{ecname(r.error_code)}); types.proto: servers answer UNSUPPORTED_VERSION for a "
            f"major version they do not speak")
        # Afterwards: a new channel works.
    with ctx.client() as c:
        r = ok(c.produce("err-t", 0, make_records(2, "after")), "produce after errors")
        resp, _ = c.fetch([("err-t", 0, r.offset)])
        eq(len(ok(resp.partitions[0], "fetch after errors").batches), 1, "batch")


MALFORMED = [
    b"\xff",                               # truncated varint key
    b"\x1a\xff\xff\xff\xff\x0f",           # field 3 LEN with a 4 GiB length
    b"\x1a\x05ab",                         # field 3 LEN past the end
    b"\x07\x01",                           # field 0 / wire type 7
    b"\x1a\x02\x0a\xff",                   # nested TopicPartition with a bad string length
]


@test
def errors_malformed_protobuf(ctx):
    for path in ("/rustmq.client.ProducerService/Produce",
                 "/rustmq.client.ConsumerService/Fetch",
                 "/rustmq.client.ProducerService/ProduceBatch",
                 "/rustmq.controller.AdminService/CreateTopics",
                 "/rustmq.client.MetadataService/GetTopicMetadata"):
        with ctx.client() as c:
            # The last input is malformed only where field 3 is a message.
            for data in MALFORMED if "Produce" in path else MALFORMED[:-1]:
                e = expect_status(lambda: c.unary_raw(path, data), grpc.StatusCode.INVALID_ARGUMENT,
                                  f"{path} with {data!r}")
                check(e.details(), f"INVALID_ARGUMENT from {path} without a message")
        with ctx.client() as c:
            c.create_topic(f"mal-{path.rsplit('/', 1)[1].lower()}", 1)
    # Malformed messages on a ProduceStream end the stream with INVALID_ARGUMENT.
    with ctx.client() as c:
        f = c.ch.stream_stream("/rustmq.client.ProducerService/ProduceStream",
                               request_serializer=_ident, response_deserializer=P.ProduceResponse.FromString)
        good = P.ProduceRequest(version=V(), topic_partition=T.TopicPartition(
            topic="mal-produce", partition=0), records=make_records(1, "m"), acks=ACK_LEADER,
            correlation_id=5).SerializeToString()
        it = f(iter([good, b"\x1a\xff\xff\xff\xff\x0f"]), timeout=15)
        got = []
        try:
            for m in it:
                got.append(m)
            raise AssertionError("ProduceStream with a malformed message ended OK")
        except grpc.RpcError as e:
            eq(e.code(), grpc.StatusCode.INVALID_ARGUMENT, "stream status")
            check(e.details(), "message")
        eq([m.correlation_id for m in got], [5], "the good request was answered first")
    with ctx.client() as c:
        ok(c.produce("mal-produce", 0, make_records(1, "after")), "produce after")
        resp, _ = c.fetch([("mal-produce", 0, 0)])
        check(ok(resp.partitions[0], "fetch after").batches, "fetch after malformed")


@test
def second_rmqd_refused(ctx):
    """A second rmqd on the same data directory, or on the port the node
    serves, exits 1 at once with a line saying why; the node is untouched."""
    binary = ctx.node.binary
    r = subprocess.run([binary, "--listen", "127.0.0.1:0", "--data-dir", ctx.node.data_dir],
                       capture_output=True, timeout=30)
    eq(r.returncode, 1, "second rmqd on the data directory: exit status")
    check(re.search(rb"--data-dir .* is in use by another rmqd \(pid \d+\)", r.stderr),
          f"second rmqd on the data directory: {r.stderr!r}")
    other = os.path.join(ctx.tmp, "other-data")
    r = subprocess.run([binary, "--listen", ctx.node.addr, "--data-dir", other],
                       capture_output=True, timeout=30)
    eq(r.returncode, 1, "second rmqd on the port: exit status")
    check(b"the port is in use by another process" in r.stderr,
          f"second rmqd on the port: {r.stderr!r}")
    with ctx.client() as c:
        c.create_topic("second-t", 1)
        ok(c.produce("second-t", 0, make_records(1, "still")), "the node still serves")


@test
def get_leader_epoch(ctx):
    """GetLeaderEpoch (Kafka's OffsetForLeaderEpoch) on the leader: where
    an epoch ends in its log, read from the batches' epochs; the epoch the
    caller knows is checked; an unknown partition is named."""
    R = importlib.import_module("broker.replication_pb2")
    path = "/rustmq.broker.BrokerReplicationService/GetLeaderEpoch"
    with ctx.client() as c:
        c.create_topic("lepoch", 2)
        for i in range(3):
            ok(c.produce("lepoch", 0, make_records(4, f"e{i}")), "produce")

        def ask(*queries):
            req = R.GetLeaderEpochRequest(version=V())
            for topic, p, epoch, current in queries:
                req.partitions.add(topic_partition=T.TopicPartition(topic=topic, partition=p),
                                   leader_epoch=epoch, current_leader_epoch=current)
            return ok(c.unary(path, req, R.GetLeaderEpochResponse), "GetLeaderEpoch").partitions

        (first,) = ask(("lepoch", 0, 1, 0))
        cur = first.current_leader_epoch
        check(cur >= 1, f"a current epoch: {first}")
        got = c.fetch_all("lepoch", 0)
        eq({b.partition_leader_epoch for b, _ in got}, {cur}, "the batches carry the epoch")
        end = got[-1][0].base_offset + got[-1][0].record_count
        a, e, u = ask(("lepoch", 0, cur, 0), ("lepoch", 1, cur, 0), ("nope", 0, 1, 0))
        (b,) = ask(("lepoch", 0, cur + 5, 0))
        (d,) = ask(("lepoch", 0, cur - 1, 0))
        ok(a, "its current epoch")
        eq((a.leader_epoch, a.end_offset), (cur, end), "the current epoch ends at the log end")
        ok(b, "a later epoch")
        eq((b.leader_epoch, b.end_offset), (cur, end), "a later epoch: the largest below it")
        ok(e, "an empty partition")
        eq((e.leader_epoch, e.end_offset), (0, 0), "an empty log: no epoch, its start")
        ok(d, "an earlier epoch")
        eq((d.leader_epoch, d.end_offset), (0, 0), "no batch of an earlier epoch: the log start")
        check(u.error_code in (TOPIC_NOT_FOUND, PARTITION_NOT_FOUND), f"an unknown topic: {u}")
        (s1,) = ask(("lepoch", 0, cur, cur + 1))
        eq(s1.error_code, 47, f"a newer current epoch than the leader's: {s1.error_message}")
        eq(s1.leader_id, "1", "the leader named")
        if cur > 1:
            (s2,) = ask(("lepoch", 0, cur, cur - 1))
            eq(s2.error_code, 7, f"an older current epoch: {s2.error_message}")


@test
def replicate_data_refusals(ctx):
    """A follower's ReplicateData and ReplicateStream (follow.c) refuse what
    this node cannot take as a follower, each with its reason, and the node
    goes on serving: a partition it leads, one it does not hold, another
    broker's request, a batch that does not parse; a stream answers every
    message and ends when the client half-closes."""
    R = importlib.import_module("broker.replication_pb2")
    path = "/rustmq.broker.BrokerReplicationService/"
    with ctx.client() as c:
        c.create_topic("repl-led", 1)
        ok(c.produce("repl-led", 0, make_records(2, "r")), "produce")

    def req(topic, follower="1", **kw):
        return R.ReplicateDataRequest(version=V(), leader_id="2", leader_epoch=1,
                                      topic_partition=T.TopicPartition(topic=topic, partition=0),
                                      follower_id=follower, correlation_id=5, **kw)

    def on_its_shard(r):
        """The answer from the partition's shard: a connection reaches the
        shard its source port picks (docs/net.md), and the others refuse,
        naming the shard; new connections until one lands there."""
        for _ in range(64):
            with Client(ctx.node.addr, own_connection=True) as c:
                a = c.unary(path + "ReplicateData", r, R.ReplicateDataResponse)
            if "source port steering" not in a.error_message:
                return a
            eq(a.error_code, 48, f"the wrong shard: {a.error_message}")
        raise AssertionError("no connection reached the partition's shard in 64 tries")

    for r, code, word in ((req("repl-led"), 48, "leads"),
                          (req("repl-none"), 48, "no replica"),
                          (req("repl-led", follower="9"), INVALID_REQUEST, "follower_id")):
        a = on_its_shard(r)
        eq(a.error_code, code, f"ReplicateData {r.topic_partition.topic}: {a.error_message}")
        check(word in a.error_message, f"the reason names it: {a.error_message!r}")
        eq((a.correlation_id, a.follower_id), (5, "1"), "the answer's echo")
    with ctx.client() as c:
        # A batch that does not parse: CORRUPT_MESSAGE, before anything else.
        raw = req("repl-led").SerializeToString() + bytes([0x2A, 3, 1, 2, 3])
        a = R.ReplicateDataResponse.FromString(c.unary_raw(path + "ReplicateData", raw))
        eq(a.error_code, 12, f"a batch that does not parse: {a.error_message}")
        # The stream: one answer per message, in order, then OK.
        answers = list(c.bidi(path + "ReplicateStream",
                              iter([req("repl-led"), req("repl-none")]),
                              R.ReplicateDataResponse, timeout=10))
        eq([a.error_code for a in answers], [48, 48], "every message answered")
        ok(c.produce("repl-led", 0, make_records(1, "after")), "the node still serves")


@test
def metadata_dir_of_its_own(ctx):
    """--metadata-dir keeps the controller's log and snapshots there, not in
    DATA_DIR/controller, and a restart finds the topics in it."""
    d = os.path.join(ctx.tmp, "mdir")
    os.makedirs(d, exist_ok=True)
    meta = os.path.join(d, "controller-store")
    n = Node(ctx.node.binary, os.path.join(d, "data"), d)
    try:
        n.start(("--metadata-dir", meta))
        with Client(n.addr) as c:
            c.create_topic("md-kept", 2)
        eq(n.stop(), 0, "stop")
        check(os.listdir(meta), f"the controller's files in {meta}")
        check(not os.path.exists(os.path.join(d, "data", "controller")),
              "nothing in DATA_DIR/controller")
        n.start(("--metadata-dir", meta))
        # A second node with a data directory of its own cannot share the
        # controller's store (both would write its log).
        other = subprocess.run([ctx.node.binary, "--listen", "127.0.0.1:0", "--data-dir",
                                os.path.join(d, "data2"), "--metadata-dir", meta],
                               capture_output=True, text=True, timeout=30)
        check(other.returncode != 0 and "--metadata-dir" in other.stderr and
              "in use by another rmqd" in other.stderr,
              f"a second rmqd on the same --metadata-dir: {other.returncode} {other.stderr}")
        with Client(n.addr) as c:
            lt = c.unary("/rustmq.controller.AdminService/ListTopics",
                         A.ListTopicsRequest(version=V()), A.ListTopicsResponse)
            check("md-kept" in [t.name for t in lt.topics], f"the topic after a restart: {lt}")
        eq(n.stop(), 0, "stop again")
    finally:
        n.kill()


@test
def errors_unimplemented(ctx):
    cases = [
        ("/rustmq.client.ProducerService/CommitTransaction", "transaction"),
    ]
    for path, word in cases:
        with ctx.client() as c:
            e = expect_status(lambda: c.unary_raw(path, b""), grpc.StatusCode.UNIMPLEMENTED, path)
            check(word.lower() in (e.details() or "").lower(),
                  f"{path}: UNIMPLEMENTED message {e.details()!r} does not name {word!r}")
        with ctx.client() as c:
            ok(c.produce("err-t", 1, make_records(1, "after-unimpl")), f"produce after {path}")
    # The controller's traffic between nodes is served, and refuses what
    # does not come from a member of its configuration.
    with ctx.client() as c:
        RP = importlib.import_module("controller.raft_pb2")
        for cand, why in (("", "does not decode"), ("7", "not a member")):
            r = c.unary("/rustmq.controller.ControllerRaftService/RequestVote",
                        RP.VoteRequest(term=99, candidate_id=cand, last_log_index=1 << 40,
                                       last_log_term=99), RP.VoteResponse)
            expect_code(r, INVALID_REQUEST, f"RequestVote from {cand!r}")
            check(why in r.error_message, f"RequestVote from {cand!r}: {r.error_message!r}")
            check(not r.vote_granted, "a vote granted to a stranger")
        ok(c.create_topics([("after-stranger-vote", 1)]).topics[0], "the node still leads")
    # Streaming shapes of not-served RPCs, and a method that does not exist.
    with ctx.client() as c:
        f = c.ch.stream_stream("/rustmq.streaming.StreamingService/BulkLoad",
                               request_serializer=_ident, response_deserializer=_ident)
        try:
            list(f(iter([b"", b""]), timeout=10))
            raise AssertionError("BulkLoad succeeded")
        except grpc.RpcError as e:
            eq(e.code(), grpc.StatusCode.UNIMPLEMENTED, "BulkLoad")
            check(e.details(), "BulkLoad message")
        f = c.ch.unary_stream("/rustmq.streaming.StreamingService/Subscribe",
                              request_serializer=_ident, response_deserializer=_ident)
        try:
            list(f(b"", timeout=10))
            raise AssertionError("StreamingService.Subscribe succeeded")
        except grpc.RpcError as e:
            eq(e.code(), grpc.StatusCode.UNIMPLEMENTED, "StreamingService.Subscribe")
        e = expect_status(lambda: c.unary_raw("/rustmq.client.NoSuchService/Nope", b""),
                          grpc.StatusCode.UNIMPLEMENTED, "unknown method")
    with ctx.client() as c:
        resp, _ = c.fetch([("err-t", 1, 0)])
        check(ok(resp.partitions[0], "fetch").batches, "fetch after UNIMPLEMENTED")


# ---- deadlines and cancellation ----------------------------------------------------

@test
def deadline_and_cancellation(ctx):
    # The cancels on a connection of their own (see Client): a node may
    # close a connection that resets streams fast, and c checks the node.
    with ctx.client() as c, Client(ctx.node.addr, own_connection=True) as c2:
        c.create_topic("dl-t", 2)
        # gRPC deadline shorter than max_wait: DEADLINE_EXCEEDED.
        for _ in range(3):
            expect_status(lambda: c2.fetch([("dl-t", 0, 0), ("dl-t", 1, 0)], max_wait_ms=5000,
                                           min_bytes=1, timeout=0.5),
                          grpc.StatusCode.DEADLINE_EXCEEDED, "deadline mid-long-poll")
        # Cancellation of long polls.
        fut = []
        f = c2.ch.unary_unary("/rustmq.client.ConsumerService/Fetch",
                              request_serializer=lambda m: m.SerializeToString(),
                              response_deserializer=C.FetchResponse.FromString)
        # max_wait far beyond the settle bound below: a cancelled long poll
        # must free its call at once, not when its wait runs out.
        for p in (0, 1):
            fut.append(f.future(c2.fetch_req([("dl-t", p, 0)], max_wait_ms=25000, min_bytes=1),
                                timeout=60))
        time.sleep(0.3)
        for x in fut:
            check(x.cancel(), "cancel a long poll")
        # Cancellation of Subscribes (data-less, and after data flowed).
        for with_data in (False, True):
            req = C.SubscribeRequest(version=V())
            req.partitions.add(topic_partition=T.TopicPartition(topic="dl-t", partition=1),
                               offset=0)
            s = Sub(c2, req)
            if with_data:
                ok(c.produce("dl-t", 1, make_records(2, "dl")), "produce")
                s.records(2)
            else:
                time.sleep(0.3)
            s.cancel()
        # A Subscribe with a short deadline ends with DEADLINE_EXCEEDED.
        req = C.SubscribeRequest(version=V())
        req.partitions.add(topic_partition=T.TopicPartition(topic="dl-t", partition=0), offset=0)
        it = c2.server_stream("/rustmq.client.ConsumerService/Subscribe", req, C.FetchResponse,
                              timeout=0.5)
        expect_status(lambda: list(it), grpc.StatusCode.DEADLINE_EXCEEDED, "Subscribe deadline")
        # Health Watch cancelled.
        w = c2.server_stream("/grpc.health.v1.Health/Watch", GH.HealthCheckRequest(service=""),
                             GH.HealthCheckResponse, timeout=30)
        next(w)
        w.cancel()
        # Closing a channel with a long poll open (the connection goes away).
        c3 = ctx.client()
        f3 = c3.ch.unary_unary("/rustmq.client.ConsumerService/Fetch",
                               request_serializer=lambda m: m.SerializeToString(),
                               response_deserializer=C.FetchResponse.FromString)
        f3.future(c3.fetch_req([("dl-t", 0, 0)], max_wait_ms=25000, min_bytes=1), timeout=60)
        time.sleep(0.3)
        c3.close()
        # Every call ends on the broker: only the GetMetrics call is in flight.
        seen = []

        def settled():
            n = c.calls_in_flight()
            seen.append(n)
            return n == 1

        wait_until(settled, 5, f"rmq_calls to return to 1 (saw {seen[-5:]})", step=0.1)
        # And the node still serves.
        ok(c.produce("dl-t", 0, make_records(1, "after-dl")), "produce after cancellations")
        resp, _ = c.fetch([("dl-t", 0, 0)])
        check(ok(resp.partitions[0], "fetch").batches, "fetch after cancellations")


# ---- restart ---------------------------------------------------------------------

def snapshot(c):
    """Everything the node holds: topics, ids, configs, every batch's bytes."""
    lt = ok(c.unary("/rustmq.controller.AdminService/ListTopics",
                    A.ListTopicsRequest(version=V(), include_internal=True), A.ListTopicsResponse),
            "ListTopics")
    snap = {}
    for t in lt.topics:
        dreq = A.DescribeConfigsRequest(version=V())
        dreq.resources.add(resource=A.ConfigResource(type=A.CONFIG_RESOURCE_TYPE_TOPIC,
                                                     name=t.name))
        d = ok(c.unary("/rustmq.controller.AdminService/DescribeConfigs", dreq,
                       A.DescribeConfigsResponse), "DescribeConfigs")
        cfg = {x.name: (x.value, x.is_default) for x in d.resources[0].configs}
        parts = {}
        for p in range(t.partitions):
            parts[p] = [raw for _, raw in c.fetch_all(t.name, p)]
        snap[t.name] = (t.topic_id, t.partitions, cfg, parts)
    return snap


@test
def stale_partition_directory_is_not_taken(ctx):
    """A partition directory whose owner file names another topic (one of
    the name deleted while the node was away, a partition deleted and made
    again) is removed when the partition opens: its records are not this
    partition's.  The directory of the right owner is kept."""
    node = ctx.node
    with ctx.client() as c:
        tid = c.create_topic("own-t", 2).topic_id
        for p in range(2):
            ok(c.produce("own-t", p, make_records(3, "own")), "produce")
    eq(node.stop(), 0, "exit status after SIGTERM")
    owner = os.path.join(node.data_dir, "own-t-0.owner")
    with open(owner) as f:
        check(f.read().startswith(tid + " "), "the owner file names the topic")
    with open(owner, "w") as f:
        f.write("0f0f0f0f-dead-4bee-8f00-000000000000 1\n")  # another incarnation's
    node.start()
    with ctx.client() as c:
        resp, _ = c.fetch([("own-t", 0, 0), ("own-t", 1, 0)])
        eq(resp.partitions[0].high_watermark, 0, "a directory of another owner is not taken")
        eq(resp.partitions[1].high_watermark, 3, "the right owner's directory is kept")
    with open(owner) as f:
        check(f.read().startswith(tid + " "), "the owner file names the topic again")
    check(any("removing it" in l for l in node.lines), "the removal is logged")


@test
def restart_keeps_everything(ctx):
    node = ctx.node
    with ctx.client() as c:
        before = snapshot(c)
        cl = c.unary("/rustmq.controller.AdminService/DescribeCluster",
                     A.DescribeClusterRequest(version=V()), A.DescribeClusterResponse)
    check(len(before) >= 1, f"topics to compare: {len(before)}")
    rc = node.stop()
    eq(rc, 0, "exit status after SIGTERM")
    check(any("stopped cleanly" in l for l in node.lines), "no 'stopped cleanly' line")
    node.start()
    with ctx.client() as c:
        after = snapshot(c)
        eq(sorted(after), sorted(before), "topics after restart")
        for name in before:
            tid, n, cfg, parts = before[name]
            tid2, n2, cfg2, parts2 = after[name]
            eq(tid2, tid, f"{name}: topic_id")
            eq(n2, n, f"{name}: partitions")
            eq(cfg2, cfg, f"{name}: configs")
            for p in parts:
                eq(len(parts2[p]), len(parts[p]), f"{name}-{p}: batches")
                for i, (x, y) in enumerate(zip(parts[p], parts2[p])):
                    if x != y:
                        raise AssertionError(f"{name}-{p}: batch {i} differs after restart")
        if "cfg-t" in after:
            eq(after["cfg-t"][2]["retention.ms"][0], "3600000", "altered retention.ms kept")
        cl2 = c.unary("/rustmq.controller.AdminService/DescribeCluster",
                      A.DescribeClusterRequest(version=V()), A.DescribeClusterResponse)
        eq(cl2.cluster_id, cl.cluster_id, "cluster_id kept")
        # Appends continue after the recovered offsets.
        if "prod-t" in after:
            hw = sum(x.record_count for x in
                     (T.RecordBatch.FromString(r) for r in after["prod-t"][3][0]))
            r = ok(c.produce("prod-t", 0, make_records(2, "after-restart")), "produce")
            eq(r.offset, hw, "offset after restart")


# ---- the controller: topic changes are Raft entries (src/broker/controller.c) ------

def topic_ids(c):
    lt = c.unary("/rustmq.controller.AdminService/ListTopics",
                 A.ListTopicsRequest(version=V()), A.ListTopicsResponse)
    return {t.name: t.topic_id for t in lt.topics}


@test
def controller_keeps_every_answered_change_across_kill9(ctx):
    """A topic change is answered once its entry is committed (synced) and
    applied: SIGKILL right after the answer loses none of it."""
    node = ctx.node
    for rnd in range(3):
        with ctx.client() as c:
            c.create_topic(f"ctl-{rnd}", 2)
            if rnd > 0:
                dr = ok(c.unary("/rustmq.controller.AdminService/DeleteTopics",
                                A.DeleteTopicsRequest(version=V(), names=[f"ctl-{rnd - 1}"]),
                                A.DeleteTopicsResponse), "DeleteTopics")
                ok(dr.topics[0], "delete")
            before = topic_ids(c)
        node.kill()
        node.start()
        with ctx.client() as c:
            after = topic_ids(c)
            eq(after, before, f"round {rnd}: topics and ids after kill -9")
            ok(c.produce(f"ctl-{rnd}", 1, make_records(1, "ctl")), "produce after restart")
    check(os.path.isfile(os.path.join(node.data_dir, "controller", "hardstate")),
          "controller/hardstate")


@test
def controller_snapshots_and_restarts_from_them(ctx):
    """With a snapshot every 8 entries: 30 changes leave a snapshot and a
    compacted log, and a restart (kill -9) finds every topic from them."""
    node = ctx.node
    eq(node.stop(), 0, "exit status after SIGTERM")
    node.start(extra=("--controller-snapshot-entries", "8"))
    snap = os.path.join(node.data_dir, "controller", "snapshot")
    with ctx.client() as c:
        for i in range(15):
            c.create_topic(f"snap-{i}", 1)
        for i in range(0, 15, 2):
            ok(c.unary("/rustmq.controller.AdminService/DeleteTopics",
                       A.DeleteTopicsRequest(version=V(), names=[f"snap-{i}"]),
                       A.DeleteTopicsResponse).topics[0], "delete")
        before = topic_ids(c)
    wait_until(lambda: os.path.isfile(snap), 10, "controller/snapshot written")
    node.kill()
    node.start(extra=("--controller-snapshot-entries", "8"))
    with ctx.client() as c:
        eq(topic_ids(c), before, "topics after kill -9, from the snapshot and the log")
        c.create_topic("snap-after", 1)
        before = topic_ids(c)
    eq(node.stop(), 0, "exit status after SIGTERM")
    node.start()
    with ctx.client() as c:
        eq(topic_ids(c), before, "topics after a restart with the default interval")


@test
def controller_imports_an_older_meta_topics(ctx):
    """A data directory of an older version keeps its topics in meta/topics
    and has no controller/: the node starts with them, commits them as its
    first command and renames the file."""
    node = ctx.node
    with ctx.client() as c:
        c.create_topic("imp-t", 3)
        ok(c.produce("imp-t", 2, make_records(3, "imp")), "produce")
        lt = c.unary("/rustmq.controller.AdminService/ListTopics",
                     A.ListTopicsRequest(version=V()), A.ListTopicsResponse)
        before = topic_ids(c)
    eq(node.stop(), 0, "exit status after SIGTERM")
    # What an older version wrote: the topics as a ClusterMetadata.
    cm = CM.ClusterMetadata(metadata_version=7)
    for t in lt.topics:
        tm = cm.topics.add(name=t.name, topic_id=t.topic_id, is_internal=t.is_internal)
        tm.config.partitions = t.partitions
        tm.config.replication_factor = t.replication_factor
    with open(os.path.join(node.data_dir, "meta", "topics"), "wb") as f:
        f.write(cm.SerializeToString())
    shutil.rmtree(os.path.join(node.data_dir, "controller"))
    node.start()
    wait_until(lambda: os.path.isfile(os.path.join(node.data_dir, "meta", "topics.imported")),
               10, "meta/topics renamed once imported")
    with ctx.client() as c:
        eq(topic_ids(c), before, "topics after the import")
        c.create_topic("imp-after", 1)
        after = topic_ids(c)
        fr, raws = c.fetch([("imp-t", 2, 0)])
        eq(sum(T.RecordBatch.FromString(r).record_count for r in raws[0]), 3, "records kept")
    eq(node.stop(), 0, "exit status after SIGTERM")
    node.start()
    with ctx.client() as c:
        eq(topic_ids(c), after, "topics after a restart following the import")


# ---- cold reads: data not in the page cache -----------------------------------------

def make_cold(data_dir):
    """Evicts the node's files from the page cache (the node is stopped):
    fsync + POSIX_FADV_DONTNEED on every file, which any user may do, and
    drop_caches too when root can write it.  Returns True when drop_caches
    was written.  The node runs with --fsync=always (O_DIRECT writes), so
    data it wrote was never cached anyway; this covers what it read."""
    for root, _, files in os.walk(data_dir):
        for name in files:
            try:
                fd = os.open(os.path.join(root, name), os.O_RDONLY)
            except OSError:
                continue
            try:
                os.fsync(fd)
                os.posix_fadvise(fd, 0, 0, os.POSIX_FADV_DONTNEED)
            except OSError:
                pass
            finally:
                os.close(fd)
    try:
        with open("/proc/sys/vm/drop_caches", "w") as f:
            f.write("1")
        return True
    except OSError:
        return False


def segment_files(data_dir, marker):
    """Segment data files (*.log) under data_dir, oldest first, whose bytes
    hold marker; each as (path, bytes)."""
    out = []
    for root, _, files in os.walk(data_dir):
        for name in sorted(files):
            if name.endswith(".log"):
                path = os.path.join(root, name)
                with open(path, "rb") as f:
                    data = f.read()
                if marker in data:
                    out.append((path, data))
    return sorted(out)


@test
def cold_restart_fetch_identical(ctx):
    node = ctx.node
    with ctx.client() as c:
        c.create_topic("cold-t", 2)
        rnd = random.Random(7)
        for i in range(24):  # ~0.9 MB per partition: several 256 KiB segments
            for p in range(2):
                ok(c.produce("cold-t", p, make_records(20, f"cold{p}-{i}", size=1800, rnd=rnd)),
                   "produce")
        # Under --fsync=always the writes bypassed the page cache: this is
        # already the cold path.
        before = {p: [raw for _, raw in c.fetch_all("cold-t", p)] for p in range(2)}
    eq(node.stop(), 0, "exit status after SIGTERM")
    make_cold(node.data_dir)
    node.start()
    with ctx.client() as c:
        for p in range(2):
            after = [raw for _, raw in c.fetch_all("cold-t", p)]
            eq(len(after), len(before[p]), f"cold-t-{p}: batches")
            for i, (x, y) in enumerate(zip(before[p], after)):
                if x != y:
                    raise AssertionError(f"cold-t-{p}: batch {i} differs after a cold restart")
            eq(sum(T.RecordBatch.FromString(r).record_count for r in after), 24 * 20,
               f"cold-t-{p}: records")
        # Two partitions, small partition caps, random order: reads that
        # start mid-segment and cross segments, all cold again.
    eq(node.stop(), 0, "exit status after SIGTERM")
    make_cold(node.data_dir)
    node.start()
    with ctx.client() as c:
        # A consumer going through cold data in order in 64 KiB fetches:
        # every fetch after the second finds its range read ahead (or
        # being read), across segment boundaries too.
        for p in range(2):
            after = [raw for _, raw in c.fetch_all("cold-t", p, pmax=64 << 10)]
            eq(after, before[p], f"cold-t-{p}: read-ahead answers")
        total = c.metric_totals("rmq_fetch_disk_bytes_total", "rmq_fetch_ahead_bytes_total")
        data = sum(len(r) for p in range(2) for r in before[p])
        # (the newest segments were read at start-up: in memory)
        check(total["rmq_fetch_disk_bytes_total"] >= data // 2,
              f"read from the disk: {total} of {data} bytes")
        check(total["rmq_fetch_ahead_bytes_total"] >= data // 2,
              f"taken from read-ahead: {total} of {data} bytes")
    eq(node.stop(), 0, "exit status after SIGTERM")
    make_cold(node.data_dir)
    node.start()
    with ctx.client() as c:
        # Two consumers of one partition, interleaved, at different
        # offsets: each drops the other's read-ahead; both get the bytes.
        flat = [r for r in before[0]]
        offs = [0, 240]
        got = [[], []]
        for _ in range(10000):
            if all(o is None for o in offs):
                break
            for k in (0, 1):
                if offs[k] is None:
                    continue
                resp, raw = c.fetch([("cold-t", 0, offs[k], 48 << 10)])
                pr = ok(resp.partitions[0], f"consumer {k} at {offs[k]}")
                if not pr.batches:
                    offs[k] = None
                    continue
                got[k].extend(raw[0])
                offs[k] = pr.batches[-1].base_offset + pr.batches[-1].record_count
        eq(got[0], flat, "consumer 0: every batch from 0")
        i = next(i for i, r in enumerate(flat) if r == got[1][0])
        eq(got[1], flat[i:], "consumer 1: every batch from 240")
    eq(node.stop(), 0, "exit status after SIGTERM")
    make_cold(node.data_dir)
    node.start()
    with ctx.client() as c:
        for start in (0, 137, 250, 479):
            resp, raw = c.fetch([("cold-t", 0, start, 300 << 10), ("cold-t", 1, start, 64 << 10)])
            for k, p in enumerate((0, 1)):
                pr = ok(resp.partitions[k], f"cold-t-{p}@{start}")
                check(pr.batches, f"cold-t-{p}@{start}: no batches")
                first = pr.batches[0]
                check(first.base_offset <= start < first.base_offset + first.record_count,
                      f"cold-t-{p}@{start}: first batch at {first.base_offset}")
                i = next(i for i, r in enumerate(before[p]) if r == raw[k][0])
                eq(raw[k], before[p][i:i + len(raw[k])], f"cold-t-{p}@{start}: bytes")
    for l in node.lines:
        check("CRC" not in l, f"unexpected CRC complaint: {l}")
    # A consumer that stops half-way leaves a read-ahead behind; the node
    # frees it when the partition closes (the ASan build's leak check
    # makes a leak a non-zero exit).
    eq(node.stop(), 0, "exit status after SIGTERM")
    make_cold(node.data_dir)
    node.start()
    with ctx.client() as c:
        off = 0
        for _ in range(3):
            resp, raw = c.fetch([("cold-t", 1, off, 64 << 10)])
            pr = ok(resp.partitions[0], f"cold-t-1@{off}")
            off = pr.batches[-1].base_offset + pr.batches[-1].record_count
        m = c.metrics(["rmq_fetch_ahead_bytes_total"])
        check(sum(x.value for x in m.metrics) > 0, "a read-ahead was taken")
    eq(node.stop(), 0, "exit status with a read-ahead held")
    # --read-ahead 0: the same answers, every byte read when asked for.
    make_cold(node.data_dir)
    node.start(extra=("--read-ahead", "0"))
    with ctx.client() as c:
        after = [raw for _, raw in c.fetch_all("cold-t", 1, pmax=64 << 10)]
        eq(after, before[1], "cold-t-1 without read-ahead")
        total = c.metric_totals("rmq_fetch_disk_bytes_total", "rmq_fetch_ahead_bytes_total")
        check(total["rmq_fetch_disk_bytes_total"] > 0 and
              total["rmq_fetch_ahead_bytes_total"] == 0, f"--read-ahead 0: {total}")
    eq(node.stop(), 0, "exit status after SIGTERM")
    node.start()


@test
def cold_read_crc_corruption(ctx):
    node = ctx.node
    n_batches = 40
    with ctx.client() as c:
        c.create_topic("crc-t", 1)
        rnd = random.Random(11)
        bases = []
        for i in range(n_batches):  # ~30 KB each: 4-5 segments of 256 KiB
            recs = make_records(15, f"crcmark{i:04d}", size=2000, rnd=rnd)
            bases.append(ok(c.produce("crc-t", 0, recs), "produce").offset)
        good = {b.base_offset: raw for b, raw in c.fetch_all("crc-t", 0)}
    eq(node.stop(), 0, "exit status after SIGTERM")
    # Corrupt the second batch of the oldest segment: recovery scans only
    # the newest segment and the tail after an older one's last index entry,
    # so the damage is found by the read, not at start-up.
    victim = 1
    marker = f"crcmark{victim:04d}-3-".encode()
    found = segment_files(node.data_dir, marker)
    eq(len(found), 1, "segment files holding the victim batch")
    path, data = found[0]
    newest = segment_files(node.data_dir, f"crcmark{n_batches - 1:04d}-0-".encode())
    check(newest and newest[0][0] != path, "the victim is in an older segment than the newest")
    pos = data.index(marker) + len(marker) + 5  # inside the random part of the value
    with open(path, "r+b") as f:
        f.seek(pos)
        f.write(bytes([data[pos] ^ 0x5A]))
        f.flush()
        os.fsync(f.fileno())
    make_cold(node.data_dir)
    node.start()
    bad = bases[victim]
    with ctx.client() as c:
        resp, raw = c.fetch([("crc-t", 0, bad)])
        pr = resp.partitions[0]
        expect_code(pr, CORRUPT_MESSAGE, f"fetch at the corrupt batch {bad}")
        check(str(bad) in pr.error_message, f"error names the offset {bad}: {pr.error_message!r}")
        eq(len(pr.batches), 0, "no batches served with the error")
        # A read that starts before it stops short of it ...
        resp, raw = c.fetch([("crc-t", 0, 0)])
        pr = ok(resp.partitions[0], "fetch at 0")
        eq([b.base_offset for b in pr.batches], [0], "only the batch before the corrupt one")
        eq(raw[0][0], good[0], "batch 0 bytes")
        # ... and every other batch still reads, byte-identical.
        for i in range(victim + 1, n_batches):
            resp, raw = c.fetch([("crc-t", 0, bases[i], 1)])
            pr = ok(resp.partitions[0], f"fetch at {bases[i]}")
            eq(raw[0][0], good[bases[i]], f"batch at {bases[i]} bytes")
        # Still corrupt when asked again (nothing cached a bad copy).
        resp, _ = c.fetch([("crc-t", 0, bad + 3)])
        expect_code(resp.partitions[0], CORRUPT_MESSAGE, "fetch inside the corrupt batch")
    wait_until(lambda: any("CRC-32C" in l and str(bad) in l for l in node.lines), 5,
               "an error line naming the corrupt batch")
    with ctx.client() as c:
        ok(c.unary("/rustmq.controller.AdminService/DeleteTopics",
                   A.DeleteTopicsRequest(version=V(), names=["crc-t"]),
                   A.DeleteTopicsResponse).topics[0], "delete crc-t")


# ---- partitions opening and closing under traffic ----------------------------------

@test
def topic_churn_under_load(ctx):
    """Topics created and deleted over and over, with appends in flight on
    them, while other clients produce to a topic that stays: every produce
    to the staying topic is acknowledged (none NOT_AVAILABLE), every churned
    topic comes and goes cleanly, and a topic created again under an old
    name starts empty.  (Closing a partition ran a nested event loop while
    the shard's tables were half rebuilt: mail answered in it could find a
    surviving partition missing.)"""
    with ctx.client() as c:
        c.create_topic("churn-stay", 4)
    stop = threading.Event()
    errors, acked = [], [0]

    def producer(tid):
        with ctx.client() as pc:
            i = 0
            while not stop.is_set():
                r = pc.produce("churn-stay", i % 4, make_records(2, f"stay{tid}", size=200,
                                                                 headers=False))
                if r.error_code != OK:
                    errors.append(f"{ecname(r.error_code)}: {r.error_message}")
                else:
                    acked[0] += 1
                i += 1

    def churner():
        with ctx.client() as cc:
            while not stop.is_set():
                pc = cc.produce("churn-x", 0, make_records(5, "x", size=500, headers=False))
                if pc.error_code not in (OK, TOPIC_NOT_FOUND, 4):
                    errors.append(f"churned produce: {ecname(pc.error_code)}")

    threads = [threading.Thread(target=producer, args=(k,), daemon=True) for k in range(3)]
    threads.append(threading.Thread(target=churner, daemon=True))
    for t in threads:
        t.start()
    rounds = 0
    try:
        with ctx.client() as c:
            end = time.monotonic() + 8
            while time.monotonic() < end:
                ok(c.create_topics([("churn-x", 4)]).topics[0], f"create churn-x #{rounds}")
                time.sleep(0.02)  # appends land in it
                r = c.unary("/rustmq.controller.AdminService/DeleteTopics",
                            A.DeleteTopicsRequest(version=V(), names=["churn-x"]),
                            A.DeleteTopicsResponse, timeout=60)
                ok(r.topics[0], f"delete churn-x #{rounds}")
                rounds += 1
            stop.set()
            for t in threads:
                t.join(timeout=60)
            ok(c.create_topics([("churn-x", 1)]).topics[0], "create churn-x again")
            resp, _ = c.fetch([("churn-x", 0, 0)])
            pr = ok(resp.partitions[0], "fetch the new churn-x")
            eq(pr.high_watermark, 0, "a topic created again under an old name starts empty")
    finally:
        stop.set()
        for t in threads:
            t.join(timeout=60)
    print(f"    {rounds} create/delete rounds; {acked[0]} produces to churn-stay acknowledged",
          flush=True)
    check(rounds >= 5, f"only {rounds} rounds")
    check(not errors, f"{len(errors)} failed produces, e.g. {errors[:3]}")


# ---- kill -9 under load ------------------------------------------------------------

@test
def kill9_under_load(ctx):
    node = ctx.node
    with ctx.client() as c:
        c.create_topic("k9-t", 4)
    acked = []          # (partition, offset, Record)
    lock = threading.Lock()
    stop = threading.Event()
    errors = []

    def unary_producer(tid):
        rnd = random.Random(tid)
        seq = 0
        with Client(node.addr) as cl:
            while not stop.is_set():
                part = rnd.randrange(4)
                recs = [T.Record(key=f"u{tid}".encode(),
                                 value=f"u{tid}-{seq}-{j}-".encode() + rnd.randbytes(rnd.randrange(16, 600)))
                        for j in range(rnd.randrange(1, 4))]
                seq += 1
                try:
                    r = cl.produce("k9-t", part, recs, acks=ACK_LEADER, timeout=10)
                except grpc.RpcError:
                    return
                if r.error_code != OK:
                    errors.append(f"u{tid}: {ecname(r.error_code)} {r.error_message}")
                    return
                with lock:
                    for j, rec in enumerate(recs):
                        acked.append((part, r.offset + j, rec))

    def stream_producer():
        rnd = random.Random(99)
        window = threading.Semaphore(16)
        pending = {}

        def gen():
            seq = 0
            while not stop.is_set():
                if not window.acquire(timeout=0.2):
                    continue
                part = rnd.randrange(4)
                recs = [T.Record(key=b"s", value=f"s-{seq}-".encode() + rnd.randbytes(100))]
                seq += 1
                pending[seq] = (part, recs)
                yield P.ProduceRequest(version=V(), acks=ACK_LEADER, records=recs,
                                       topic_partition=T.TopicPartition(topic="k9-t",
                                                                        partition=part),
                                       correlation_id=seq)

        with Client(node.addr) as cl:
            try:
                for r in cl.bidi("/rustmq.client.ProducerService/ProduceStream", gen(),
                                 P.ProduceResponse, timeout=60):
                    window.release()
                    part, recs = pending.pop(r.correlation_id)
                    if r.error_code != OK:
                        errors.append(f"stream: {ecname(r.error_code)} {r.error_message}")
                        return
                    with lock:
                        for j, rec in enumerate(recs):
                            acked.append((part, r.offset + j, rec))
            except grpc.RpcError:
                return

    threads = [threading.Thread(target=unary_producer, args=(i,), daemon=True) for i in range(2)]
    threads.append(threading.Thread(target=stream_producer, daemon=True))
    for t in threads:
        t.start()
    t0 = time.monotonic()
    while time.monotonic() - t0 < 10:
        time.sleep(0.1)
        with lock:
            n = len(acked)
        if (time.monotonic() - t0 > 1.5 and n >= 300) or errors:
            break
    wait_core_dump(node.proc)
    died = node.proc.poll()
    if died is None:
        os.kill(node.proc.pid, signal.SIGKILL)
    node.proc.wait(timeout=20)
    stop.set()
    for t in threads:
        t.join(20)
    node.proc = None
    check(died is None, f"rmqd died under load before the kill (exit status {died}):\n"
          + node.tail(10))
    check(not errors, f"produce errors under load: {errors[:3]}")
    with lock:
        acked_now = list(acked)
    check(len(acked_now) >= 50, f"too few acknowledged records before the kill: {len(acked_now)}")
    node.start()
    with ctx.client() as c:
        # Two acknowledgements of one offset: the broker assigned it twice.
        seen = {}
        for p, o, rec in acked_now:
            if (p, o) in seen:
                raise AssertionError(f"k9-t-{p}@{o} was acknowledged twice before the kill: "
                                     f"{seen[(p, o)].value[:24]!r} and {rec.value[:24]!r}")
            seen[(p, o)] = rec
        stored = {}
        for p in range(4):
            nxt = 0
            for b, raw in c.fetch_all("k9-t", p):
                check_batch(b, raw)
                check(b.base_offset == nxt, f"k9-t-{p}: batch at {b.base_offset} after one "
                      f"ending at {nxt} (offsets overlap or skip after recovery)")
                nxt = b.base_offset + b.record_count
                for i, r in enumerate(b.records):
                    stored[(p, b.base_offset + i)] = r
        missing = [(p, o) for p, o, _ in acked_now if (p, o) not in stored]
        check(not missing, f"{len(missing)} of {len(acked_now)} acknowledged records lost, "
              f"e.g. {missing[:5]}")
        for p, o, rec in acked_now:
            if stored[(p, o)] != rec:
                raise AssertionError(f"k9-t-{p}@{o} differs after kill -9: acknowledged "
                                     f"{rec.value[:24]!r}, stored {stored[(p, o)].value[:24]!r}")
        # The node takes produce again after recovery.
        ok(c.produce("k9-t", 0, make_records(1, "after-k9")), "produce after recovery")
    print(f"    kill -9: {len(acked_now)} acknowledged records checked, "
          f"{len(stored)} stored", flush=True)


# ---- last ----------------------------------------------------------------------

@test
def no_calls_left_and_clean_log(ctx):
    with ctx.client() as c:
        wait_until(lambda: c.calls_in_flight() == 1, 10, "rmq_calls back to 1")
    bad = [l for l in ctx.node.lines if "AddressSanitizer" in l or "runtime error" in l
           or "LeakSanitizer" in l]
    check(not bad, "sanitizer reports:\n" + "\n".join(bad[:20]))


# ---------------------------------------------------------------------------
# Runner

def main() -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("--rmqd", required=True)
    ap.add_argument("--proto-dir", required=True)
    ap.add_argument("--only", action="append", default=[],
                    help="run only tests whose name contains this (repeatable)")
    ap.add_argument("--keep", action="store_true", help="keep the temporary directory")
    ap.add_argument("-v", "--verbose", action="store_true", help="echo rmqd's log")
    args = ap.parse_args()

    tmp = tempfile.mkdtemp(prefix="rmq-node-test-")
    passed = failed = skipped = 0
    failures = []
    node = None
    t_start = time.monotonic()
    try:
        load_protos(pathlib.Path(args.proto_dir).resolve(), pathlib.Path(tmp) / "py")
        data = os.path.join(tmp, "data")
        node = Node(os.path.abspath(args.rmqd), data, tmp, args.verbose)
        # Busy-polling shards (--poll) serve every test below; restarts
        # inside tests run without it.
        node.start(["--poll", "100us"])
        print(f"rmqd on port {node.port} with {node.shards} shards, data in {data}", flush=True)
        ctx = Ctx(args, node, tmp)
        tests = [t for t in TESTS
                 if not args.only or any(o in t.__name__ for o in args.only)]
        for fn in tests:
            name = fn.__name__
            if not node.alive():
                failed += 1
                failures.append(name)
                print(f"FAIL {name}: rmqd is not running (restarting it)\n{node.tail()}",
                      flush=True)
                node.kill()
                node.start()
                continue
            t0 = time.monotonic()
            try:
                fn(ctx)
                passed += 1
                print(f"PASS {name} ({time.monotonic() - t0:.2f}s)", flush=True)
            except Skip as e:
                skipped += 1
                print(f"SKIP {name}: {e}", flush=True)
            except Exception as e:  # noqa: BLE001
                failed += 1
                failures.append(name)
                if isinstance(e, grpc.RpcError):
                    why = f"gRPC {e.code()}: {e.details()}"
                else:
                    why = f"{type(e).__name__}: {e}"
                print(f"FAIL {name} ({time.monotonic() - t0:.2f}s): {why}", flush=True)
                print(textwrap_indent(traceback.format_exc()), flush=True)
                if not node.alive():
                    print("  rmqd died:\n" + node.tail(), flush=True)
        # Shut down cleanly: SIGTERM, exit status 0.
        if node.alive():
            t0 = time.monotonic()
            try:
                rc = node.stop()
                if rc == 0:
                    passed += 1
                    print(f"PASS sigterm_exit_0 ({time.monotonic() - t0:.2f}s)", flush=True)
                else:
                    failed += 1
                    failures.append("sigterm_exit_0")
                    print(f"FAIL sigterm_exit_0: exit status {rc}\n{node.tail()}", flush=True)
            except AssertionError as e:
                failed += 1
                failures.append("sigterm_exit_0")
                print(f"FAIL sigterm_exit_0: {e}", flush=True)
    except Exception as e:  # noqa: BLE001
        failed += 1
        failures.append("setup")
        print(f"FAIL setup: {type(e).__name__}: {e}", flush=True)
        traceback.print_exc()
    finally:
        if node is not None:
            node.kill()
        _kill_all()
        if args.keep:
            print(f"logs and data kept in {tmp}", flush=True)
        elif failed:
            # Logs only: partition data preallocates disk space.
            shutil.rmtree(os.path.join(tmp, "data"), ignore_errors=True)
            shutil.rmtree(os.path.join(tmp, "py"), ignore_errors=True)
            print(f"rmqd logs kept in {tmp} (--keep keeps the data too)", flush=True)
        else:
            shutil.rmtree(tmp, ignore_errors=True)
    print(f"broker_node: {time.monotonic() - t_start:.1f}s"
          + (f"; failed: {', '.join(failures)}" if failures else ""))
    print(f"{passed} passed, {failed} failed, {skipped} skipped")
    return 1 if failed else 0


def textwrap_indent(s):
    return "\n".join("    " + l for l in s.rstrip().splitlines())


if __name__ == "__main__":
    sys.exit(main())
