#!/usr/bin/python3
# SPDX-License-Identifier: Apache-2.0
"""Writes the seed corpora of the libFuzzer harnesses (docs/fuzzing.md).

    /usr/bin/python3 tests/fuzz/make_corpus.py [--out tests/fuzz/corpus]

Each seed is a valid conversation in its harness's input format (the
script of fuzz_node.h, the frames of fuzz_grpc.c, the selector + bytes of
fuzz_batch.c and fuzz_tls.c, the two messages of fuzz_scram.c, the token text of
fuzz_token.c), built with message classes compiled from proto/ by Debian's
protoc (the SCRAM exchanges and tokens with Python's hashlib and hmac), so
the fuzzers start from requests the node accepts and mutate from there.
fuzz_recovery's seeds are real logs written by the storage code:
`FZ_RECOVERY_SEEDS=<dir> build/fuzz/tests/fuzz/fuzz_recovery` makes them
(tests/fuzz/run does when the directory is empty).

Needs python3-protobuf, python3-lz4, python3-zstandard, python3-snappy.
"""
import argparse
import base64
import importlib
import pathlib
import ssl
import struct
import subprocess
import sys
import tempfile

import lz4.frame
import snappy
import zstandard

TOP = pathlib.Path(__file__).resolve().parents[2]

T = P = C = MD = A = H = None


def load_protos(out):
    global T, P, C, MD, A, H
    proto_dir = TOP / "proto"
    protos = sorted(str(p.relative_to(proto_dir)) for p in proto_dir.rglob("*.proto"))
    subprocess.run(["protoc", "--fatal_warnings", f"-I{proto_dir}", "-I/usr/include",
                    f"--python_out={out}", *protos], check=True, cwd=proto_dir)
    sys.path.insert(0, str(out))
    T = importlib.import_module("common.types_pb2")
    P = importlib.import_module("client.producer_pb2")
    C = importlib.import_module("client.consumer_pb2")
    MD = importlib.import_module("client.metadata_pb2")
    A = importlib.import_module("controller.admin_pb2")
    H = importlib.import_module("broker.health_pb2")


# ---- wire helpers ---------------------------------------------------------

def varint(n):
    out = bytearray()
    while True:
        b = n & 0x7F
        n >>= 7
        if n:
            out.append(b | 0x80)
        else:
            out.append(b)
            return bytes(out)


def field_uint(f, v):
    return varint(f << 3) + varint(v)


def field_len(f, b):
    return varint(f << 3 | 2) + varint(len(b)) + b


def _crc_table():
    tab = []
    for i in range(256):
        c = i
        for _ in range(8):
            c = (c >> 1) ^ 0x82F63B78 if c & 1 else c >> 1
        tab.append(c)
    return tab


_TAB = _crc_table()


def crc32c(data):
    crc = 0xFFFFFFFF
    for b in data:
        crc = _TAB[(crc ^ b) & 0xFF] ^ (crc >> 8)
    return crc ^ 0xFFFFFFFF


def compress(codec, raw):
    if codec == 1:
        return lz4.frame.compress(raw, store_size=True, content_checksum=True)
    if codec == 2:
        return zstandard.ZstdCompressor().compress(raw)  # writes the content size
    if codec == 3:
        return snappy.compress(raw)
    return raw


def V():
    return T.ApiVersion(major=1)


def records(n, tag="r", size=12, ts_ms=None):
    out = []
    for i in range(n):
        r = T.Record(key=f"{tag}{i}".encode(), value=bytes([97 + i % 26]) * size)
        if i % 2:
            r.headers.add(key="h", value=b"v")
        if ts_ms is not None:
            r.timestamp.seconds = ts_ms // 1000
        out.append(r)
    return out


def records_bytes(recs):
    return b"".join(field_len(7, r.SerializeToString()) for r in recs)


def batch(recs, codec=0, crc=True, **kw):
    """A RecordBatch as a producer builds it (payload in field 7 or 9)."""
    raw = records_bytes(recs)
    b = T.RecordBatch(magic=2, record_count=len(recs), **kw)
    if codec:
        z = compress(codec, raw)
        b.compression_type = codec
        b.compressed_records = z
        if crc:
            b.crc32 = crc32c(z)
    else:
        b.records.extend(recs)
        if crc:
            b.crc32 = crc32c(raw)
    return b


def tp(topic, part=0):
    return T.TopicPartition(topic=topic, partition=part)


def ms(n):
    from google.protobuf import duration_pb2
    return duration_pb2.Duration(seconds=n // 1000, nanos=(n % 1000) * 1000000)


# ---- the script format (fuzz_node.h) --------------------------------------

INFLIGHT, CANCEL, DEADLINE = 0x20, 0x40, 0x80


def step(method, body, flags=0):
    if not isinstance(body, (bytes, bytearray)):
        body = body.SerializeToString()
    body = bytes(body)
    assert len(body) < 65536
    return bytes([method | flags]) + struct.pack("<H", len(body)) + body


def stream_body(msgs):
    out = b""
    for m in msgs:
        b = m.SerializeToString() if not isinstance(m, bytes) else m
        out += struct.pack("<H", len(b)) + b
    return out


# ---- produce --------------------------------------------------------------

def produce_seeds():
    PR, PB, PS, PSO = 0, 1, 2, 3
    s = {}
    s["records"] = step(PR, P.ProduceRequest(version=V(), topic_partition=tp("t1"),
                                             records=records(3), acks=1))
    s["records-zstd-by-broker"] = step(PR, P.ProduceRequest(
        version=V(), topic_partition=tp("t1"), records=records(4), acks=1, compression=2))
    s["batch-crc"] = step(PR, P.ProduceRequest(version=V(), topic_partition=tp("t3", 1),
                                               batch=batch(records(5)), acks=1))
    for codec, name in ((1, "lz4"), (2, "zstd"), (3, "snappy")):
        s[f"batch-{name}"] = step(PR, P.ProduceRequest(
            version=V(), topic_partition=tp("t1"), batch=batch(records(6), codec), acks=1))
        s[f"batch-{name}-decompressed-by-tn"] = step(PR, P.ProduceRequest(
            version=V(), topic_partition=tp("tn"), batch=batch(records(6), codec), acks=1))
        s[f"batch-{name}-recoded-by-tz"] = step(PR, P.ProduceRequest(
            version=V(), topic_partition=tp("tz"), batch=batch(records(6), codec), acks=1))
    s["batch-no-crc-timestamps"] = step(PR, P.ProduceRequest(
        version=V(), topic_partition=tp("tl"),
        batch=batch(records(3, ts_ms=1700000000000), crc=False), acks=1))
    s["idempotent-twice"] = (
        step(PR, P.ProduceRequest(version=V(), topic_partition=tp("t1"), records=records(2),
                                  producer_id=7, producer_epoch=0, base_sequence=0, acks=1)) +
        step(PR, P.ProduceRequest(version=V(), topic_partition=tp("t1"), records=records(2),
                                  producer_id=7, producer_epoch=0, base_sequence=0, acks=1)))
    s["idempotency-key-twice"] = (
        step(PR, P.ProduceRequest(version=V(), topic_partition=tp("t3", 2), records=records(1),
                                  idempotency_key="key-1", acks=1)) +
        step(PR, P.ProduceRequest(version=V(), topic_partition=tp("t3", 2), records=records(1),
                                  idempotency_key="key-1", acks=1)))
    s["acks-none"] = step(PR, P.ProduceRequest(version=V(), topic_partition=tp("t1"),
                                               records=records(2), acks=0))
    s["auto-create"] = step(PR, P.ProduceRequest(version=V(), topic_partition=tp("auto1"),
                                                 records=records(2), acks=1))
    s["batch-three-partitions"] = step(PB, P.ProduceBatchRequest(
        version=V(), acks=1, correlation_id=9,
        partitions=[P.ProducePartitionData(topic_partition=tp("t3", i), batch=batch(records(2 + i), i))
                    for i in range(3)]))
    s["batch-forwarded-and-compressed"] = step(PB, P.ProduceBatchRequest(
        version=V(), acks=1,
        partitions=[P.ProducePartitionData(topic_partition=tp("tn"), batch=batch(records(3), 2)),
                    P.ProducePartitionData(topic_partition=tp("tz"), batch=batch(records(3), 3))]))
    msgs = [P.ProduceRequest(version=V(), topic_partition=tp("t3", i % 3), records=records(2),
                             correlation_id=i, acks=1) for i in range(3)]
    s["stream"] = step(PS, stream_body(msgs))
    s["stream-left-open"] = step(PSO, stream_body(msgs))
    s["in-flight-and-cancelled"] = (
        step(PR, P.ProduceRequest(version=V(), topic_partition=tp("t1"), records=records(2), acks=1),
             INFLIGHT) +
        step(PR, P.ProduceRequest(version=V(), topic_partition=tp("t1"), records=records(2), acks=1),
             CANCEL) +
        step(PB, P.ProduceBatchRequest(version=V(), acks=1, partitions=[
            P.ProducePartitionData(topic_partition=tp("t3", 0), batch=batch(records(2)))]), DEADLINE))
    # Malformed combinations the node must refuse (produce.c's own list).
    both = P.ProduceRequest(version=V(), topic_partition=tp("t1"), records=records(1),
                            batch=batch(records(1))).SerializeToString()
    s["records-and-batch"] = step(PR, both)
    one = P.ProduceRequest(version=V(), topic_partition=tp("t1"), batch=batch(records(1)))
    s["batch-twice"] = step(PR, one.SerializeToString() + field_len(15, batch(records(2)).SerializeToString()))
    return s


# ---- fetch ----------------------------------------------------------------

def fetch_seeds():
    F, FB, SUB, LO, PRODUCE = 0, 1, 2, 3, 4

    def freq(parts, max_wait=0, min_bytes=0, max_bytes=1 << 20):
        r = C.FetchRequest(version=V(), max_bytes=max_bytes, min_bytes=min_bytes)
        if max_wait:
            r.max_wait.CopyFrom(ms(max_wait))
        for t, p, off, pmax in parts:
            r.partitions.add(topic_partition=tp(t, p), fetch_offset=off, partition_max_bytes=pmax)
        return r

    s = {}
    s["fetch-t1-start"] = step(F, freq([("t1", 0, 0, 4096)]))
    s["fetch-t1-middle"] = step(F, freq([("t1", 0, 3000, 100000)]))
    s["fetch-t3-all"] = step(F, freq([("t3", p, 0, 2048) for p in range(3)], max_bytes=3000))
    s["fetch-unknown-and-out-of-range"] = step(F, freq([("nope", 0, 0, 100), ("t1", 7, 0, 100),
                                                        ("t1", 0, 1 << 40, 100)]))
    s["fetch-long-poll-woken"] = (
        step(F, freq([("t3", 1, 200, 100)], max_wait=90, min_bytes=1), INFLIGHT) +
        step(PRODUCE, bytes([2, 3, 1])))
    s["fetch-long-poll-cancelled"] = step(F, freq([("t1", 0, 10 ** 6, 100)], max_wait=90, min_bytes=1),
                                          CANCEL)
    s["fetch-repeated-partition"] = step(F, freq([("t1", 0, 0, 100)] * 4))
    s["fetch-batch"] = step(FB, C.FetchBatchRequest(version=V(), fetches=[
        freq([("t1", 0, 0, 1000)]), freq([("t3", 2, 0, 1000), ("tl", 0, 0, 1000)])]))
    for name, spec in (("earliest", 1), ("latest", 2)):
        s[f"subscribe-{name}"] = (
            step(SUB, C.SubscribeRequest(version=V(), max_bytes=4096, partitions=[
                C.SubscribePartition(topic_partition=tp("t3", 0), start_spec=spec)])))
    s["subscribe-offset"] = step(SUB, C.SubscribeRequest(version=V(), partitions=[
        C.SubscribePartition(topic_partition=tp("t1"), offset=5000, partition_max_bytes=1000)]))
    sp = C.SubscribePartition(topic_partition=tp("tl"), start_spec=3)
    sp.start_timestamp.seconds = 1
    s["subscribe-timestamp-then-produce"] = (
        step(SUB, C.SubscribeRequest(version=V(), partitions=[sp]), INFLIGHT) +
        step(PRODUCE, bytes([4, 1, 0])))

    lo = C.ListOffsetsRequest(version=V())
    for i, spec in enumerate((1, 2, 3, 4)):
        p = lo.partitions.add(topic_partition=tp("t3", i % 3), spec=spec)
        if spec == 3:
            p.timestamp.seconds = 1700000000
    s["list-offsets"] = step(LO, lo)
    lo2 = C.ListOffsetsRequest(version=V())
    lo2.partitions.add(topic_partition=tp("t1"), spec=3).timestamp.seconds = 4000000000
    lo2.partitions.add(topic_partition=tp("tl"), spec=4)
    lo2.partitions.add(topic_partition=tp("nope"), spec=1)
    s["list-offsets-edges"] = step(LO, lo2)
    s["produce-codecs"] = b"".join(step(PRODUCE, bytes([i, 3, i])) for i in range(4))
    return s


# ---- admin ----------------------------------------------------------------

def admin_seeds():
    (CREATE, DELETE, LIST, DESCRIBE, ALTER, DESCRIBE_CONFIGS, CLUSTER, ELECT, MD_TOPIC,
     MD_LIST, MD_BROKERS, MD_LEADER, MD_CLUSTER, MD_FIND, AUTH, HCHECK, HWATCH, BHEALTH,
     METRICS, NOT_SERVED) = range(20)
    CM = importlib.import_module("common.metadata_pb2")
    s = {}
    create = A.CreateTopicsRequest(version=V(), topics=[
        A.CreatableTopic(name="a", partitions=2, replication_factor=1, configs=[
            CM.ConfigEntry(name="retention.ms", value="60000"),
            CM.ConfigEntry(name="compression.type", value="lz4")]),
        A.CreatableTopic(name="b", partitions=1)])
    s["topic-lifecycle"] = (
        step(CREATE, create) +
        step(DESCRIBE, A.DescribeTopicsRequest(version=V(), names=["a", "b", "c"], include_configs=True)) +
        step(ALTER, A.AlterConfigsRequest(version=V(), resources=[A.AlterConfigsResource(
            resource=A.ConfigResource(type=1, name="a"),
            configs=[A.AlterableConfig(name="segment.bytes", value="65536"),
                     A.AlterableConfig(name="max.message.bytes", value="8388608"),
                     A.AlterableConfig(name="retention.bytes", op=1)])])) +
        step(DESCRIBE_CONFIGS, A.DescribeConfigsRequest(version=V(), resources=[
            A.DescribeConfigsResource(resource=A.ConfigResource(type=1, name="a")),
            A.DescribeConfigsResource(resource=A.ConfigResource(type=2, name="1"))])) +
        step(LIST, A.ListTopicsRequest(version=V(), include_internal=True)) +
        step(DELETE, A.DeleteTopicsRequest(version=V(), names=["a", "missing"])))
    s["create-validate-only-bad-names"] = step(CREATE, A.CreateTopicsRequest(
        version=V(), validate_only=True, topics=[A.CreatableTopic(name=n, partitions=1)
                                                 for n in ("ok", "..", "bad/name", "x" * 300)]))
    s["create-twice-in-flight"] = (step(CREATE, create, INFLIGHT) + step(CREATE, create, INFLIGHT) +
                                   step(DELETE, A.DeleteTopicsRequest(version=V(), names=["b"]), INFLIGHT))
    s["metadata"] = (
        step(CREATE, A.CreateTopicsRequest(version=V(), topics=[A.CreatableTopic(name="m", partitions=3)])) +
        step(MD_TOPIC, MD.GetTopicMetadataRequest(version=V(), topics=["m", "zz"], include_configs=True)) +
        step(MD_LIST, MD.ListTopicsRequest(version=V(), name_prefix="m")) +
        step(MD_BROKERS, MD.GetBrokerListRequest(version=V())) +
        step(MD_LEADER, MD.GetPartitionLeaderRequest(version=V(), topic_partition=tp("m", 2))) +
        step(MD_CLUSTER, MD.GetClusterMetadataRequest(version=V(), include_topics=True)) +
        step(MD_FIND, MD.FindCoordinatorRequest(version=V(), keys=["g1", "g2"])) +
        step(CLUSTER, A.DescribeClusterRequest(version=V())))
    s["health-and-metrics"] = (
        step(HCHECK, b"") + step(HCHECK, field_len(1, b"rustmq")) + step(HWATCH, b"") +
        step(BHEALTH, H.HealthCheckRequest(version=V(), include_details=True)) +
        step(METRICS, b""))
    s["auth-and-unserved"] = (
        step(AUTH, T.AuthenticationRequest(mechanism="PLAIN", auth_data=b"\0user\0pass", version=V())) +
        step(ELECT, b"") + step(NOT_SERVED, b""))
    s["future-version"] = step(LIST, A.ListTopicsRequest(version=T.ApiVersion(major=9)))
    return s


# ---- groups ---------------------------------------------------------------

def group_seeds():
    (JOIN, SYNC, HB, LEAVE, COMMIT, FETCH_OFF, LIST, DESCRIBE, DELETE, RESET, FIND) = range(11)
    s = {}

    def join(g, topics=("t1", "t3"), assignor="range", member=None):
        r = C.JoinGroupRequest(version=V(), group_id=g, topics=list(topics), assignors=[assignor])
        r.session_timeout.CopyFrom(ms(1000))
        r.rebalance_timeout.CopyFrom(ms(500))
        b = r.SerializeToString()
        if member is not None:  # present on the wire even when empty
            b += field_len(4, member.encode())
        return b

    commit = C.CommitOffsetsRequest(version=V(), group_id="g1", partitions=[
        C.OffsetCommitPartition(topic_partition=tp("t1"), offset=5, metadata="m"),
        C.OffsetCommitPartition(topic_partition=tp("t3", 2), offset=7)])
    s["member-lifecycle"] = (
        step(JOIN, join("g1")) + step(JOIN, join("g1")) +
        step(SYNC, C.SyncGroupRequest(version=V(), group_id="g1")) +
        step(HB, C.GroupHeartbeatRequest(version=V(), group_id="g1")) +
        step(COMMIT, commit) +
        step(FETCH_OFF, C.FetchOffsetsRequest(version=V(), group_id="g1", partitions=[tp("t1"), tp("t3", 2)])) +
        step(DESCRIBE, A.DescribeGroupsRequest(version=V(), group_ids=["g1", "nope"], include_offsets=True)) +
        step(LEAVE, C.LeaveGroupRequest(version=V(), group_id="g1")) +
        step(RESET, A.ResetGroupOffsetsRequest(version=V(), group_id="g1", partitions=[
            A.OffsetResetSpec(topic_partition=tp("t1"), to_earliest=True),
            A.OffsetResetSpec(topic_partition=tp("t3", 1), to_latest=True),
            A.OffsetResetSpec(topic_partition=tp("t3", 2), to_offset=3)])) +
        step(LIST, A.ListGroupsRequest(version=V())) +
        step(DELETE, A.DeleteGroupsRequest(version=V(), group_ids=["g1"])))
    for a in ("roundrobin", "sticky"):
        s[f"two-members-{a}"] = (
            # member 1 joins; member 2 (an explicitly empty member_id) is
            # told its id, then its join waits for member 1, which the
            # rebalance timeout removes; member 2 syncs and heartbeats
            step(JOIN, join("g2", assignor=a)) + step(JOIN, join("g2", assignor=a)) +
            step(JOIN, join("g2", topics=("t3",), assignor=a, member="")) +
            step(JOIN, join("g2", topics=("t3",), assignor=a)) +
            step(SYNC, C.SyncGroupRequest(version=V(), group_id="g2")) +
            step(HB, C.GroupHeartbeatRequest(version=V(), group_id="g2")))
    s["commit-without-member"] = step(COMMIT, C.CommitOffsetsRequest(
        version=V(), group_id="solo", generation_id=-1,
        partitions=[C.OffsetCommitPartition(topic_partition=tp("t1"), offset=1)]))
    s["static-member"] = step(JOIN, C.JoinGroupRequest(
        version=V(), group_id="g3", group_instance_id="i1", topics=["t1"],
        session_timeout=ms(100)))
    s["find-coordinator"] = step(FIND, MD.FindCoordinatorRequest(version=V(), keys=["g1"]))
    return s


# ---- gRPC framing (fuzz_grpc.c) ---------------------------------------------

END_STREAM, END_HEADERS = 0x1, 0x4


def op(kind, stream, flags, payload=b""):
    return bytes([kind, stream, flags]) + struct.pack("<H", len(payload)) + payload


def hdrs(path_idx, opts=0x05, values=b""):
    return bytes([path_idx, opts]) + values


def grpc_seeds():
    HEADERS, DATA, MSG, RST, WINDOW, SETTINGS, PING, RAW = range(8)
    PRODUCE, PSTREAM, FETCH, SUB, LO, LIST, HCHECK, HWATCH, METRICS, UNSERVED, NOPE, CUSTOM = range(12)
    prod = P.ProduceRequest(version=V(), topic_partition=tp("nope"), records=records(1)).SerializeToString()
    fetch = C.FetchRequest(version=V(), max_wait=ms(80), min_bytes=100, partitions=[
        C.FetchPartition(topic_partition=tp("nope"))]).SerializeToString()
    s = {}
    s["health-check"] = op(HEADERS, 1, END_HEADERS, hdrs(HCHECK)) + op(MSG, 1, END_STREAM)
    s["unary-split-across-frames"] = (
        op(HEADERS, 1, END_HEADERS, hdrs(LIST)) +
        op(DATA, 1, 0, b"\0\0\0\0\x02") + op(DATA, 1, END_STREAM, b"\x10\x01"))
    s["two-messages-to-unary"] = (op(HEADERS, 3, END_HEADERS, hdrs(PRODUCE)) + op(MSG, 3, 0, prod) +
                                  op(MSG, 3, END_STREAM, prod))
    s["stream-three-messages"] = (op(HEADERS, 5, END_HEADERS, hdrs(PSTREAM)) +
                                  b"".join(op(MSG, 5, 0, prod) for _ in range(3)) +
                                  op(DATA, 5, END_STREAM))
    s["long-poll-reset"] = (op(HEADERS, 1, END_HEADERS, hdrs(FETCH)) + op(MSG, 1, END_STREAM, fetch) +
                            op(RST, 1, 0, b"\0\0\0\x08"))
    s["deadline-header"] = (op(HEADERS, 1, END_HEADERS, hdrs(FETCH, 0x05 | 0x08, b"20m")) +
                            op(MSG, 1, END_STREAM, fetch) + op(PING, 0, 0))
    s["bad-timeouts-and-encoding"] = (
        op(HEADERS, 1, END_HEADERS | END_STREAM, hdrs(HCHECK, 0x05 | 0x08 | 0x10, b"99999999H\0gzip")) +
        op(HEADERS, 3, END_HEADERS, hdrs(HCHECK, 0x05 | 0x08, b"1n")) + op(MSG, 3, END_STREAM))
    s["compressed-flag-without-encoding"] = (op(HEADERS, 1, END_HEADERS, hdrs(LIST)) +
                                             op(DATA, 1, END_STREAM, b"\x01\0\0\0\x00"))
    s["prefix-longer-than-data"] = (op(HEADERS, 1, END_HEADERS, hdrs(LIST)) +
                                    op(DATA, 1, END_STREAM, b"\0\0\0\x10\x00ab"))
    s["huge-declared-length"] = (op(HEADERS, 1, END_HEADERS, hdrs(PSTREAM)) +
                                 op(DATA, 1, 0, b"\0\x7f\xff\xff\xff" + b"x" * 100))
    s["server-streams"] = (op(HEADERS, 1, END_HEADERS, hdrs(HWATCH)) + op(MSG, 1, END_STREAM) +
                           op(HEADERS, 3, END_HEADERS, hdrs(SUB)) + op(MSG, 3, END_STREAM, b"") +
                           op(PING, 0, 0) + op(RST, 3, 0, b"\0\0\0\x08"))
    s["unknown-and-unserved"] = (op(HEADERS, 1, END_HEADERS | END_STREAM, hdrs(NOPE)) +
                                 op(HEADERS, 3, END_HEADERS, hdrs(UNSERVED)) + op(MSG, 3, 0) +
                                 op(HEADERS, 5, END_HEADERS | END_STREAM, hdrs(CUSTOM, 0x05, b"/x")))
    s["not-grpc"] = (op(HEADERS, 1, END_HEADERS | END_STREAM, hdrs(LIST, 0x40)) +
                     op(HEADERS, 3, END_HEADERS, hdrs(LIST, 0x80 | 0x20, b"meta")) + op(MSG, 3, END_STREAM))
    s["flow-control-and-settings"] = (op(SETTINGS, 0, 0, b"\0\x04\0\0\0\x01") +
                                      op(WINDOW, 0, 0, b"\0\0\x10\0") +
                                      op(HEADERS, 1, END_HEADERS, hdrs(METRICS)) + op(MSG, 1, END_STREAM) +
                                      op(WINDOW, 1, 0, b"\x7f\xff\xff\xff") + op(PING, 0, 0))
    s["data-on-idle-and-even-streams"] = (op(DATA, 7, 0, b"abc") + op(HEADERS, 2, END_HEADERS, hdrs(LIST)) +
                                          op(MSG, 0, 0))
    s["raw-http1"] = op(RAW, 0, 0, b"GET / HTTP/1.1\r\nHost: x\r\n\r\n")
    return s


# ---- TLS (fuzz_tls.c) ----------------------------------------------------------

def client_hello(alpn=("h2",), max_version=None):
    """The first flight of Python's TLS client (a ClientHello record)."""
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    ctx.check_hostname = False
    ctx.verify_mode = ssl.CERT_NONE
    if alpn:
        ctx.set_alpn_protocols(list(alpn))
    if max_version:
        ctx.maximum_version = max_version
    inc, out = ssl.MemoryBIO(), ssl.MemoryBIO()
    obj = ctx.wrap_bio(inc, out, server_side=False)
    try:
        obj.do_handshake()
    except ssl.SSLWantReadError:
        pass
    return out.read()


def record(ctype, body, version=b"\x03\x03"):
    return bytes([ctype]) + version + struct.pack(">H", len(body)) + body


def tls_seeds(grpc):
    """Mode A (selector 0x00; 0x80: with KeyUpdates): fuzz_grpc's seeds
    over the relay; mode B (selector 0xff): bytes straight to the TLS port."""
    s = {"h2-" + name: b"\x00" + data for name, data in grpc.items()}
    for name in ("health-check", "server-streams", "stream-three-messages", "flow-control-and-settings"):
        s["h2-key-updates-" + name] = b"\x80" + grpc[name]
    hello = client_hello()
    raw = {
        "plaintext-h2-preface": b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n" +
                                b"\0\0\0\x04\0\0\0\0\0",
        "plaintext-http1": b"GET / HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n",
        "client-hello-h2": hello,
        "client-hello-no-alpn": client_hello(alpn=()),
        "client-hello-http11": client_hello(alpn=("http/1.1",)),
        "client-hello-tls12": client_hello(max_version=ssl.TLSVersion.TLSv1_2),
        "client-hello-truncated": hello[:len(hello) // 2],
        "client-hello-split-records": (record(22, hello[5:64]) + record(22, hello[64:])),
        "client-hello-then-appdata": hello + record(23, b"\x17" * 64) + record(21, b"\x01\x00"),
        "client-hello-then-ccs-and-garbage": hello + record(20, b"\x01") + record(22, b"\x14\0\0\x20" + b"\0" * 32),
        "alert-first": record(21, b"\x02\x28"),
        "record-too-long": b"\x16\x03\x01\xff\xff" + b"\0" * 64,
        "sslv2-hello": b"\x80\x2e\x01\x00\x02\x00\x15\x00\x00\x00\x10" + b"\x00\x00\x2f" * 7 + b"\x11" * 16,
    }
    for name, data in raw.items():
        s["raw-" + name] = b"\xff" + data
    return s


# ---- batches (fuzz_batch.c) ---------------------------------------------------

def stored_entry(recs, codec=0, base=0, count=None):
    """One segment entry as the log writes it: header fields, payload last."""
    raw = records_bytes(recs)
    n = len(recs) if count is None else count
    hdr = field_uint(1, 2)
    payload = raw
    if codec:
        payload = compress(codec, raw)
        hdr += field_uint(2, codec)
    if base:
        hdr += field_uint(3, base)
    if n > 1:
        hdr += field_uint(4, n - 1)
    ts = field_len(5, field_uint(1, 1700000000)) + field_len(6, field_uint(1, 1700000001))
    hdr += ts + field_uint(8, crc32c(payload)) + field_uint(10, n)
    hdr += field_uint(11, 5) + field_uint(15, 1700000001000)
    body = hdr + (field_len(9, payload) if codec else raw)
    return b"\x32" + varint(len(body)) + body


def batch_seeds():
    s = {}
    seg = b""
    base = 0
    for i, codec in enumerate((0, 1, 2, 3, 0)):
        recs = records(3 + i, tag=f"s{i}")
        seg += stored_entry(recs, codec, base)
        base += len(recs)
    s["segment"] = b"\0" + seg + b"\0" * 16
    s["segment-torn"] = b"\0" + seg[:-7]
    raw = records_bytes(records(8))
    for codec, name in ((1, "lz4"), (2, "zstd"), (3, "snappy")):
        s[f"codec-{name}"] = bytes([codec]) + compress(codec, raw)
    return s


# ---- replication requests (fuzz_follow.c) ------------------------------------

def follow_seeds():
    """ReplicateDataRequests as a leader sends them: a probe, batches as
    field 5 elements, the same as `stored` (15), and a bundle's part."""
    tp = field_len(4, field_len(1, b"orders") + field_uint(2, 3))
    head = (field_len(1, field_uint(1, 1)) + field_len(2, b"1") + field_uint(3, 4) + tp)
    tail = (field_uint(6, 10) + field_uint(7, 4) + field_uint(8, 9) + field_uint(9, 0) +
            field_uint(10, (7 << 32) | 42) + field_len(11, b"2") + field_uint(12, 3) +
            field_uint(13, 30))
    entries = b""
    base = 10
    for i, codec in enumerate((0, 2, 0)):
        recs = records(2 + i, tag=f"f{i}")
        entries += stored_entry(recs, codec, base)
        base += len(recs)
    as5 = b""
    at = 0
    while at < len(entries):
        # Each stored entry with field 5's key: 0x32 -> 0x2a.
        n, k = 0, 1
        shift = 0
        while True:
            b = entries[at + k]
            n |= (b & 0x7f) << shift
            k += 1
            shift += 7
            if b < 0x80:
                break
        as5 += b"\x2a" + entries[at + 1:at + k + n]
        at += k + n
    s = {}
    s["probe"] = b"\x40" + head + tail
    s["batches"] = b"\x40" + head + as5 + tail
    s["stored"] = b"\x40" + head + tail + field_len(15, entries)
    s["stored-over-limit"] = b"\x02" + head + tail + field_len(15, entries)
    return s


# ---- fuzz_scram, fuzz_token: authentication messages (stdlib only) ---------

RFC_CFIRST = b"n,,n=user,r=rOprNGfwEbeRWgbNEkqO"
RFC_SNONCE = b"%hvYDpWUa2RaTCAfuxFIlj)hNlF$k0"
RFC_SFIRST = b"r=rOprNGfwEbeRWgbNEkqO" + RFC_SNONCE + b",s=W22ZaJ0SNY7soEsUEjb6gQ==,i=4096"
RFC_CFINAL = (b"c=biws,r=rOprNGfwEbeRWgbNEkqO" + RFC_SNONCE +
              b",p=dHzbZapWIk4jUhN+Ute9ytag9zjfMHgsqmmiz7AndVQ=")
RFC_SFINAL = b"v=6rriTRBi23WpRR/wtup+mMhUZUn/dB5nLTJRsjl95G4="


def scram_input(sel, a, b):
    """fuzz_scram.c's input: selector, 2-byte length of A, A, B."""
    return bytes([sel]) + struct.pack(">H", len(a)) + a + b


def scram_final(mech, salt, iterations, cfirst_bare, sfirst, without_proof, pw=b"pencil"):
    """A client-final's proof and the server signature, as RFC 5802 makes them."""
    import hashlib
    import hmac
    h = hashlib.sha512 if mech == "sha512" else hashlib.sha256
    salted = hashlib.pbkdf2_hmac(h().name, pw, salt, iterations)
    ckey = hmac.new(salted, b"Client Key", h).digest()
    stored = h(ckey).digest()
    skey = hmac.new(salted, b"Server Key", h).digest()
    am = cfirst_bare + b"," + sfirst + b"," + without_proof
    csig = hmac.new(stored, am, h).digest()
    proof = bytes(x ^ y for x, y in zip(ckey, csig))
    ssig = hmac.new(skey, am, h).digest()
    return base64.b64encode(proof), base64.b64encode(ssig)


def scram_seeds():
    bare = RFC_CFIRST[3:]
    salt = base64.b64decode(b"W22ZaJ0SNY7soEsUEjb6gQ==")
    wp = RFC_CFINAL[:RFC_CFINAL.index(b",p=")]
    p512, s512 = scram_final("sha512", salt, 4096, bare, RFC_SFIRST, wp)
    cfinal512 = wp + b",p=" + p512
    verifier = (b"SCRAM-SHA-256:4096:W22ZaJ0SNY7soEsUEjb6gQ==:"
                b"AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA=:"
                b"AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA=")
    return {
        # server side, the user exists, RFC nonce: the exchange succeeds
        "server-rfc7677-sha256": scram_input(0x18, RFC_CFIRST, RFC_CFINAL),
        "server-rfc7677-sha512": scram_input(0x19, RFC_CFIRST, cfinal512),
        # the same proof for a user that does not exist, and a random nonce
        "server-unknown-user": scram_input(0x10, RFC_CFIRST, RFC_CFINAL),
        "server-random-nonce": scram_input(0x08, RFC_CFIRST, RFC_CFINAL),
        "server-authzid-y": scram_input(0x18, b"y,a=user,n=user,r=rOprNGfwEbeRWgbNEkqO,x=ext",
                                        b"c=eSxhPXVzZXIs,r=rOprNGfwEbeRWgbNEkqO" + RFC_SNONCE +
                                        b",p=dHzbZapWIk4jUhN+Ute9ytag9zjfMHgsqmmiz7AndVQ="),
        "server-escaped-name": scram_input(0x18, b"n,,n=a=2Cb=3Dc,r=xyz", b"c=biws,r=xyz,p=AAAA"),
        "server-channel-binding": scram_input(0x18, b"p=tls-exporter,,n=user,r=abc", b""),
        # client side against the RFC server, both mechanisms
        "client-rfc7677-sha256": scram_input(0x04, RFC_SFIRST, RFC_SFINAL),
        "client-rfc7677-sha512": scram_input(0x05, RFC_SFIRST, b"v=" + s512),
        "client-server-error": scram_input(0x04, RFC_SFIRST, b"e=invalid-proof"),
        "client-extension": scram_input(0x04, RFC_SFIRST + b",x=1", RFC_SFINAL + b",y=2"),
        # a verifier text and PLAIN messages
        "text-verifier-plain": scram_input(0x06, verifier, b"\x00user\x00pencil"),
        "text-plain-authzid": scram_input(0x06, b"", b"user\x00user\x00pencil"),
    }


def token_bytes(principal, issued_ms, expires_ms, tid, key):
    """token.h's layout, signed and in base64url without padding."""
    import hashlib
    import hmac
    body = (bytes([1]) + struct.pack(">QQ", issued_ms, expires_ms) + tid +
            bytes([len(principal)]) + principal)
    body += hmac.new(key, body, hashlib.sha256).digest()
    return base64.urlsafe_b64encode(body).rstrip(b"=")


def token_seeds():
    key = b"fuzz_token's cluster secret....\x00"   # fuzz_token.c's secret
    now = 1765152000000
    tid = bytes(range(16))
    return {
        "valid-alice": token_bytes(b"alice", now, now + 3600000, tid, key),
        "valid-long-name": token_bytes(b"n" * 255, now - 10, now + 1, tid, key),
        "valid-utf8": token_bytes("J\u00fcrgen".encode(), now, now + 60000, tid, key),
        "expired": token_bytes(b"alice", now - 7200000, now - 3600000, tid, key),
        "other-secret": token_bytes(b"alice", now, now + 3600000, tid, b"x" * 32),
        "garbage": b"not-a-token",
    }


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--out", default=str(TOP / "tests" / "fuzz" / "corpus"))
    args = ap.parse_args()
    out = pathlib.Path(args.out)
    with tempfile.TemporaryDirectory() as tmp:
        load_protos(pathlib.Path(tmp))
        sets = {"fuzz_produce": produce_seeds(), "fuzz_fetch": fetch_seeds(),
                "fuzz_admin": admin_seeds(), "fuzz_group": group_seeds(),
                "fuzz_grpc": grpc_seeds(), "fuzz_batch": batch_seeds(),
                "fuzz_follow": follow_seeds(), "fuzz_scram": scram_seeds(),
                "fuzz_token": token_seeds()}
        sets["fuzz_tls"] = tls_seeds(sets["fuzz_grpc"])
    for harness, seeds in sets.items():
        d = out / harness
        d.mkdir(parents=True, exist_ok=True)
        for name, data in seeds.items():
            (d / name).write_bytes(data)
        print(f"{harness}: {len(seeds)} seeds in {d}")


if __name__ == "__main__":
    main()
