#!/usr/bin/python3
# SPDX-License-Identifier: Apache-2.0
"""Restart after a crash: rounds of `kill -9` under produce load, each
followed at once by a restart on the same address.

After `kill -9` the dead rmqd's listening sockets outlive it while the
kernel tears its io_uring down, and an immediate restart used to be refused
("the port is in use by another process").  Now a node that holds its data
directory's lock retries an address still in use for --listen-retry
(src/net/server.c, src/broker/rmqd.c).  Each round here:

  1. producers (unary Produce, acks=LEADER, fsync=always) run against the
     node on a fixed 127.0.0.1 port, recording every acknowledged record
     with its offset;
  2. the node is killed with SIGKILL under that load, and as soon as the
     process is reaped a new rmqd starts on the same port and data dir;
  3. it must serve again: its start-up line must come (a refused start
     fails the round), and beyond recovery (the time to that line, less
     any wait for the port) it must answer a Produce within 2 s: the wait
     for the port plus the time from the start-up line to the first
     answer is at most 2 s.

After the last round every acknowledged record is read back at its offset,
byte for byte, no offset was acknowledged twice, and the node stops cleanly
on SIGTERM (exit status 0).

Whether the dead node's sockets are still there when the successor listens
is the kernel's timing (recovery often outlasts them), so before the rounds
the retry itself is checked with a socket this test holds on the port: a
successor with --listen-retry 300ms gives up with "the port is in use by
another process"; one with the default waits, logs it, and serves as soon
as the socket is closed.

Rounds: --rounds, else $RMQ_RESTART_ROUNDS, else 10 (what CI runs).  The
acceptance figure is 50 rounds:

    RMQ_RESTART_ROUNDS=50 ctest --test-dir build/release -R broker_restart

Run with Debian's /usr/bin/python3 (python3-grpcio, python3-protobuf):

    /usr/bin/python3 tests/broker/test_restart.py --rmqd build/release/rmqd \\
        --proto-dir proto [--rounds N] [-v]

Helpers (protobuf classes, the gRPC client, batch checks) come from
test_node.py beside it.  rmqd is always stopped: SIGKILL by PID on any
failure path and at exit.
"""
import argparse
import atexit
import os
import pathlib
import random
import re
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time

import grpc

sys.dont_write_bytecode = True  # keep the source tree clean
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

import test_node as tn  # noqa: E402

PARTITIONS = 4
LOAD_S = 0.4          # produce load before each kill
SERVE_BUDGET_S = 2.0  # beyond recovery: port wait + start-up line to first answer

START_RE = re.compile(r"rmqd \S+ serving on 127\.0\.0\.1:(\d+) with (\d+) shards")
RELEASED_RE = re.compile(r"was released after (\d+) ms")

_procs = set()


def _kill_all():
    for p in list(_procs):
        try:
            os.kill(p.pid, signal.SIGKILL)
            p.wait(timeout=10)
        except Exception:  # noqa: BLE001
            pass
        _procs.discard(p)


atexit.register(_kill_all)


def free_port():
    """A port nothing listens on now (the kernel's pick; closed again)."""
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    port = s.getsockname()[1]
    s.close()
    return port


class Rmqd:
    """One rmqd process on a fixed port; its stderr is kept and scanned."""

    def __init__(self, binary, port, data_dir, log_path, verbose, extra=()):
        self.lines = []
        self.serving = threading.Event()
        self.t_serving = None
        self.wait_ms = 0
        self.verbose = verbose
        self.t_spawn = time.monotonic()
        self.proc = subprocess.Popen(
            [binary, "--listen", f"127.0.0.1:{port}", "--data-dir", data_dir, "--cores", "2",
             "--segment-bytes", "1MiB", "--log-level", "info", *extra],
            stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
        _procs.add(self.proc)
        self.log = open(log_path, "w")
        self.reader = threading.Thread(target=self._read, daemon=True)
        self.reader.start()

    def _read(self):
        for raw in self.proc.stderr:
            line = raw.decode(errors="replace").rstrip("\n")
            self.lines.append(line)
            self.log.write(line + "\n")
            self.log.flush()
            if self.verbose:
                print("  rmqd| " + line, flush=True)
            m = RELEASED_RE.search(line)
            if m:
                self.wait_ms = int(m.group(1))
            if START_RE.search(line) and not self.serving.is_set():
                self.t_serving = time.monotonic()
                self.serving.set()
        self.log.close()

    def wait_serving(self, timeout=60):
        end = time.monotonic() + timeout
        while not self.serving.wait(0.01):
            if self.proc.poll() is not None or time.monotonic() > end:
                self.reader.join(5)
                return False
        return True

    def tail(self, n=15):
        return "\n".join("    " + l for l in self.lines[-n:])

    def kill(self):
        if self.proc.poll() is None:
            os.kill(self.proc.pid, signal.SIGKILL)
        self.proc.wait(timeout=30)
        _procs.discard(self.proc)

    def stop(self, timeout=30):
        self.proc.send_signal(signal.SIGTERM)
        try:
            rc = self.proc.wait(timeout=timeout)
        finally:
            _procs.discard(self.proc)
        self.reader.join(5)
        return rc


class Load:
    """Producer threads: unary Produce of 1-3 records to a random partition,
    acks=LEADER; every acknowledged record is kept with its offset."""

    def __init__(self, addr, round_no, acked, lock, threads=3):
        self.stop = threading.Event()
        self.errors = []
        self.acked = acked
        self.lock = lock
        self.threads = [threading.Thread(target=self._run, args=(addr, round_no, t), daemon=True)
                        for t in range(threads)]
        for t in self.threads:
            t.start()

    def _run(self, addr, round_no, tid):
        rnd = random.Random(round_no * 1000 + tid)
        seq = 0
        with tn.Client(addr) as cl:
            while not self.stop.is_set():
                part = rnd.randrange(PARTITIONS)
                recs = [tn.T.Record(key=f"k{tid}".encode(),
                                    value=f"r{round_no}-t{tid}-{seq}-{j}-".encode()
                                    + rnd.randbytes(rnd.randrange(16, 400)))
                        for j in range(rnd.randrange(1, 4))]
                seq += 1
                try:
                    r = cl.produce("restart-t", part, recs, acks=tn.ACK_LEADER, timeout=5)
                except grpc.RpcError:
                    return  # the node was killed
                if r.error_code != tn.OK:
                    self.errors.append(f"t{tid}: {tn.ecname(r.error_code)} {r.error_message}")
                    return
                with self.lock:
                    for j, rec in enumerate(recs):
                        self.acked.append((part, r.offset + j, rec))

    def join(self):
        self.stop.set()
        for t in self.threads:
            t.join(30)


def first_answer(addr, timeout=30):
    """Produces one record until the node answers OK; returns when."""
    end = time.monotonic() + timeout
    rec = [tn.T.Record(key=b"probe", value=b"probe")]
    with tn.Client(addr) as cl:
        while True:
            try:
                r = cl.produce("restart-t", 0, rec, acks=tn.ACK_LEADER, timeout=2)
                if r.error_code == tn.OK:
                    return time.monotonic()
                why = f"{tn.ecname(r.error_code)} {r.error_message}"
            except grpc.RpcError as e:
                why = f"{e.code()}: {e.details()}"
            if time.monotonic() > end:
                raise AssertionError(f"the restarted node did not answer within {timeout}s: {why}")
            time.sleep(0.01)


def verify(addr, acked):
    """Every acknowledged record at its offset, no offset acknowledged
    twice, offsets contiguous."""
    seen = {}
    for p, o, rec in acked:
        if (p, o) in seen and seen[(p, o)] != rec:
            raise AssertionError(f"restart-t-{p}@{o} was acknowledged twice: "
                                 f"{seen[(p, o)].value[:24]!r} and {rec.value[:24]!r}")
        seen[(p, o)] = rec
    stored = {}
    with tn.Client(addr) as c:
        for p in range(PARTITIONS):
            nxt = 0
            for b, raw in c.fetch_all("restart-t", p):
                tn.check_batch(b, raw)
                tn.check(b.base_offset == nxt, f"restart-t-{p}: batch at {b.base_offset} after "
                         f"one ending at {nxt} (offsets overlap or skip after recovery)")
                nxt = b.base_offset + b.record_count
                for i, r in enumerate(b.records):
                    stored[(p, b.base_offset + i)] = r
    missing = [(p, o) for (p, o) in seen if (p, o) not in stored]
    tn.check(not missing, f"{len(missing)} of {len(seen)} acknowledged records lost, "
             f"e.g. {missing[:5]}")
    for (p, o), rec in seen.items():
        if stored[(p, o)] != rec:
            raise AssertionError(f"restart-t-{p}@{o} differs: acknowledged "
                                 f"{rec.value[:24]!r}, stored {stored[(p, o)].value[:24]!r}")
    return len(seen), len(stored)


def retry_while_held(binary, port, data, tmp, verbose):
    """The node of data (served before, now stopped) finds its port held by
    another socket: with a short --listen-retry it gives up saying so; with
    the default it waits and serves once the socket goes."""
    hold = socket.socket()
    hold.bind(("127.0.0.1", port))
    hold.listen(8)
    try:
        t0 = time.monotonic()
        short = Rmqd(binary, port, data, os.path.join(tmp, "rmqd-short.log"), verbose,
                     ["--listen-retry", "300ms"])
        rc = short.proc.wait(timeout=60)
        short.reader.join(5)
        _procs.discard(short.proc)
        tn.check(rc == 1, f"--listen-retry 300ms on a held port: exit status {rc}:\n"
                 + short.tail())
        text = "\n".join(short.lines)
        tn.check("the port is in use by another process (still after" in text,
                 "--listen-retry 300ms on a held port: no clear error:\n" + short.tail())
        tn.check(time.monotonic() - t0 < 30, "gave up late")
        node = Rmqd(binary, port, data, os.path.join(tmp, "rmqd-held.log"), verbose)
        end = time.monotonic() + 30
        while not any("is in use; retrying" in l for l in node.lines):
            tn.check(node.proc.poll() is None and time.monotonic() < end,
                     "no retry on a held port:\n" + node.tail())
            time.sleep(0.01)
        time.sleep(0.5)
        tn.check(not node.serving.is_set() and node.proc.poll() is None,
                 "served (or exited) while the port was held:\n" + node.tail())
    finally:
        hold.close()
    tn.check(node.wait_serving(), "did not serve once the port was free:\n" + node.tail())
    tn.check(node.wait_ms >= 400, f"waited {node.wait_ms} ms for a port held 500 ms")
    return node


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--rmqd", required=True)
    ap.add_argument("--proto-dir", required=True)
    ap.add_argument("--rounds", type=int,
                    default=int(os.environ.get("RMQ_RESTART_ROUNDS", "10")))
    ap.add_argument("--keep", action="store_true", help="keep the temporary directory")
    ap.add_argument("-v", "--verbose", action="store_true", help="echo rmqd's log")
    args = ap.parse_args()

    tmp = tempfile.mkdtemp(prefix="rmq-restart-test-")
    binary = os.path.abspath(args.rmqd)
    data = os.path.join(tmp, "data")
    failed = None
    node = None
    try:
        tn.load_protos(pathlib.Path(args.proto_dir).resolve(), pathlib.Path(tmp) / "py")
        port = free_port()
        addr = f"127.0.0.1:{port}"
        node = Rmqd(binary, port, data, os.path.join(tmp, "rmqd-0.log"), args.verbose)
        tn.check(node.wait_serving(), "rmqd did not start:\n" + node.tail())
        with tn.Client(addr) as c:
            c.create_topic("restart-t", PARTITIONS)
        rc = node.stop()
        tn.check(rc == 0, f"rmqd exit status {rc} on SIGTERM:\n" + node.tail())
        node = retry_while_held(binary, port, data, tmp, args.verbose)
        acked, lock = [], threading.Lock()
        waits, beyond, recov = [], [], []
        for rnd in range(1, args.rounds + 1):
            load = Load(addr, rnd, acked, lock)
            time.sleep(LOAD_S)
            node.kill()  # under load
            node = Rmqd(binary, port, data, os.path.join(tmp, f"rmqd-{rnd}.log"), args.verbose)
            load.join()
            tn.check(not load.errors, f"round {rnd}: produce errors: {load.errors[:3]}")
            if not node.wait_serving():
                rc = node.proc.poll()
                raise AssertionError(f"round {rnd}: the immediate restart on {addr} failed "
                                     f"(exit status {rc}):\n" + node.tail())
            t_ok = first_answer(addr)
            wait_s = node.wait_ms / 1000.0
            beyond_s = wait_s + (t_ok - node.t_serving)
            waits.append(wait_s)
            beyond.append(beyond_s)
            recov.append(node.t_serving - node.t_spawn - wait_s)
            if args.verbose:
                print(f"round {rnd}: port wait {wait_s:.3f}s, recovery {recov[-1]:.3f}s, "
                      f"first answer {t_ok - node.t_serving:.3f}s after start-up, "
                      f"{len(acked)} acknowledged so far", flush=True)
            tn.check(beyond_s <= SERVE_BUDGET_S,
                     f"round {rnd}: serving again took {beyond_s:.2f}s beyond recovery "
                     f"(port wait {wait_s:.2f}s)")
        tn.check(len(acked) >= 50 * max(1, args.rounds // 10),
                 f"too few acknowledged records: {len(acked)}")
        n_acked, n_stored = verify(addr, acked)
        rc = node.stop()
        tn.check(rc == 0, f"rmqd exit status {rc} on SIGTERM:\n" + node.tail())
        node = None
        waited = sum(1 for w in waits if w > 0)
        print(f"{args.rounds} rounds of kill -9 + immediate restart: the port was still held "
              f"in {waited}, longest wait {max(waits) * 1000:.0f} ms, longest time beyond "
              f"recovery {max(beyond) * 1000:.0f} ms, longest recovery "
              f"{max(recov) * 1000:.0f} ms; {n_acked} acknowledged records read back "
              f"({n_stored} stored)", flush=True)
    except Exception as e:  # noqa: BLE001
        import traceback
        traceback.print_exc()
        failed = f"{type(e).__name__}: {e}"
    finally:
        if node is not None:
            node.kill()
        _kill_all()
        if failed or args.keep:
            print(f"logs kept in {tmp}", flush=True)
        else:
            shutil.rmtree(tmp, ignore_errors=True)
    if failed:
        print(f"FAIL broker_restart: {failed}", flush=True)
        return 1
    print("PASS broker_restart", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
