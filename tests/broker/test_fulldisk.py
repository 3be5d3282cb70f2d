#!/usr/bin/python3
# SPDX-License-Identifier: Apache-2.0
"""A node whose disk fills up, through Python grpcio.

rmqd runs with its data directory on a small ext4 image loop-mounted in a
temporary directory (skipped, with the reason, where mkfs.ext4 or mounting
is not permitted).  A producer fills the disk; then:

- producing is refused with STORAGE_ERROR saying the disk is full, while
  fetches of everything acknowledged keep working;
- HealthCheck reports the storage DEGRADED, saying why;
- DeleteTopics still works (the metadata file has room kept for it) and
  frees the space;
- producing resumes by itself, health is SERVING again;
- after a restart every acknowledged record is there.

(Before: a full disk answered DeleteTopics "metadata could not be saved: No
space left on device", health stayed SERVING, and a topic created on it was
listed while its partition answered "unknown topic or partition".)

    /usr/bin/python3 tests/broker/test_fulldisk.py --rmqd build/release/rmqd \
        --proto-dir proto [-v]

Ends with "N passed, N failed, N skipped".
"""
import argparse
import os
import pathlib
import shutil
import subprocess
import sys
import tempfile
import time
import traceback

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import test_node as tn  # noqa: E402
from test_node import check, eq, ok, expect_code  # noqa: E402

import grpc  # noqa: E402

STORAGE_ERROR = 45
IMAGE_MB = 96


def sh(cmd):
    return subprocess.run(cmd, shell=True, stdout=subprocess.DEVNULL,
                          stderr=subprocess.DEVNULL).returncode


def health(c):
    h = c.unary("/rustmq.broker.BrokerHealthService/HealthCheck",
                tn.H.HealthCheckRequest(version=tn.V(), include_details=True), tn.H.HealthCheckResponse)
    return next(x for x in h.components if x.name == "storage")


def fill_and_recover(node, data):
    big = [tn.T.Record(value=os.urandom(64 << 10)) for _ in range(4)]  # 256 KiB a batch
    with tn.Client(node.addr) as c:
        c.create_topic("keep", 1)
        c.create_topic("fill", 2)
        keep = [ok(c.produce("keep", 0, tn.make_records(10, f"keep{i}")), "produce keep").offset
                for i in range(5)]
        acked = {0: [], 1: []}
        refused = None
        timeouts = 0
        for i in range(10 * IMAGE_MB):
            p = i % 2
            r = c.produce("fill", p, big, timeout=60)
            if r.error_code == tn.OK:
                acked[p].append(r.offset)
                continue
            if r.error_code == 5:
                # The append was in the buffer when its write found the
                # disk full: it waits for space, and the request for its
                # timeout (--produce-timeout 2s here).
                timeouts += 1
                continue
            refused = r
            break
        check(refused is not None, "the disk never filled")
        expect_code(refused, STORAGE_ERROR, "produce on a full disk")
        check("no space" in refused.error_message, f"says the disk is full: {refused.error_message!r}")
        print(f"    filled after {len(acked[0]) + len(acked[1])} batches of 256 KiB "
              f"({timeouts} answered TIMEOUT, waiting for space)", flush=True)
        # Reads of everything acknowledged go on.
        for p in (0, 1):
            got = [b.base_offset for b, _ in c.fetch_all("fill", p)]
            for off in acked[p]:
                check(off in got, f"acknowledged fill-{p}@{off} readable on a full disk")
        st = health(c)
        eq(st.status, tn.H.HEALTH_STATUS_DEGRADED, "storage health on a full disk")
        check("space" in st.message, f"health says why: {st.message!r}")
        # DeleteTopics still works, and frees the space.
        r = c.unary("/rustmq.controller.AdminService/DeleteTopics",
                    tn.A.DeleteTopicsRequest(version=tn.V(), names=["fill"]), tn.A.DeleteTopicsResponse,
                    timeout=60)
        ok(r.topics[0], "DeleteTopics on a full disk")
        # Producing resumes by itself.
        tn.wait_until(lambda: c.produce("keep", 0, tn.make_records(1, "after")).error_code == tn.OK,
                      30, "producing to resume once space was freed", step=0.2)
        tn.wait_until(lambda: health(c).status == tn.H.HEALTH_STATUS_SERVING, 30,
                      "storage health SERVING again", step=0.2)
        keep.append(ok(c.produce("keep", 0, tn.make_records(10, "keep-last")), "produce").offset)
    eq(node.stop(), 0, "exit status after SIGTERM")
    node.start()
    with tn.Client(node.addr) as c:
        got = [b.base_offset for b, _ in c.fetch_all("keep", 0)]
        for off in keep:
            check(off in got, f"acknowledged keep-0@{off} after the restart")


def main() -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("--rmqd", required=True)
    ap.add_argument("--proto-dir", required=True)
    ap.add_argument("--keep", action="store_true")
    ap.add_argument("-v", "--verbose", action="store_true")
    args = ap.parse_args()
    tmp = tempfile.mkdtemp(prefix="rmq-fulldisk-test-")
    img, mnt = os.path.join(tmp, "disk.img"), os.path.join(tmp, "mnt")
    os.mkdir(mnt)
    passed = failed = skipped = 0
    mounted = False
    node = None
    t0 = time.monotonic()
    try:
        tn.load_protos(pathlib.Path(args.proto_dir).resolve(), pathlib.Path(tmp) / "py")
        if shutil.which("mkfs.ext4") is None:
            raise tn.Skip("mkfs.ext4 is not installed")
        if sh(f"truncate -s {IMAGE_MB}M '{img}' && mkfs.ext4 -q -F -m 0 '{img}'") != 0:
            raise tn.Skip("cannot make an ext4 image")
        if sh(f"mount -o loop '{img}' '{mnt}'") != 0:
            raise tn.Skip("mounting a loop device is not permitted here")
        mounted = True
        node = tn.Node(os.path.abspath(args.rmqd), os.path.join(mnt, "data"), tmp, args.verbose)
        node.start(["--segment-bytes", "4MiB", "--produce-timeout", "2s"])
        fill_and_recover(node, os.path.join(mnt, "data"))
        eq(node.stop(), 0, "exit status after SIGTERM")
        passed += 1
        print(f"PASS full_disk_degrades_and_recovers ({time.monotonic() - t0:.2f}s)", flush=True)
    except tn.Skip as e:
        skipped += 1
        print(f"SKIP full_disk_degrades_and_recovers: {e}", flush=True)
    except Exception as e:  # noqa: BLE001
        failed += 1
        why = f"gRPC {e.code()}: {e.details()}" if isinstance(e, grpc.RpcError) \
            else f"{type(e).__name__}: {e}"
        print(f"FAIL full_disk_degrades_and_recovers ({time.monotonic() - t0:.2f}s): {why}", flush=True)
        traceback.print_exc()
        if node is not None:
            print("  rmqd log:\n" + node.tail(), flush=True)
    finally:
        if node is not None:
            node.kill()
        if mounted and sh(f"umount '{mnt}'") != 0:
            sh(f"umount -l '{mnt}'")
        if failed == 0 and not args.keep:
            shutil.rmtree(tmp, ignore_errors=True)
        else:
            print(f"logs kept in {tmp}", flush=True)
    print(f"{passed} passed, {failed} failed, {skipped} skipped", flush=True)
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
