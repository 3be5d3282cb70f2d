#!/usr/bin/python3
# SPDX-License-Identifier: Apache-2.0
"""The controller quorum across a network partition, in network namespaces
this test creates (../shared/notes/cluster-testing.md): three rmqd nodes,
each in its own namespace on a bridge (10.77.0.1-3), and the rmq CLI in a
fourth (10.77.0.100).

- a leader is elected; then iptables DROP rules cut it off from the other
  two nodes (it still reaches the client);
- the other two elect a new leader in a higher term, which takes a topic;
- the old leader, cut off from a majority, steps down (check-quorum): a
  change asked of it is refused, not answered OK;
- the rules go: the old leader follows the new one and gets the topic.

Skips, saying why, where namespaces or iptables are missing (not root,
`apt-get install iptables`).  Every namespace is deleted and every node
stopped by PID at the end.

    /usr/bin/python3 tests/broker/test_partition.py --rmqd build/release/rmqd \\
        --rmq build/release/rmq [-v]

Ends with "N passed, N failed, N skipped".
"""
import argparse
import os
import re
import shutil
import signal
import subprocess
import sys
import tempfile
import time

BOUND_S = 15.0  # liveness bound, not a measurement
LEADS_RE = re.compile(r"controller: this node \((\d+)\) leads term (\d+)")
FOLLOWS_RE = re.compile(r"controller: node (\d+) at \S+ leads term (\d+)")
PORT = 9200


class Skip(Exception):
    pass


def sh(*args, check=True):
    r = subprocess.run(args, capture_output=True, text=True)
    if check and r.returncode != 0:
        raise RuntimeError(f"{' '.join(args)}: {r.stderr.strip()}")
    return r


class Net:
    def __init__(self, tag=None):
        """tag names the namespaces (another process may name the same
        ones: test_faults.py runs its client inside them)."""
        tag = tag or f"rmqp{os.getpid()}"
        self.tag = tag
        self.br = f"{tag}b"
        self.ns = {i: f"{tag}n{i}" for i in (1, 2, 3)}
        self.client = f"{tag}c"
        self.made = []

    def addr(self, i):
        return f"10.77.0.{i}"

    def up(self):
        for name in [self.br, *self.ns.values(), self.client]:
            sh("ip", "netns", "add", name)
            self.made.append(name)
            sh("ip", "-n", name, "link", "set", "lo", "up")
        sh("ip", "-n", self.br, "link", "add", "br0", "type", "bridge")
        sh("ip", "-n", self.br, "link", "set", "br0", "up")
        for i, ns in [*self.ns.items(), (100, self.client)]:
            sh("ip", "-n", ns, "link", "add", "eth0", "type", "veth", "peer", "name", f"p{i}",
               "netns", self.br)
            sh("ip", "-n", self.br, "link", "set", f"p{i}", "master", "br0")
            sh("ip", "-n", self.br, "link", "set", f"p{i}", "up")
            sh("ip", "-n", ns, "addr", "add", f"{self.addr(i)}/24", "dev", "eth0")
            sh("ip", "-n", ns, "link", "set", "eth0", "up")

    def cut(self, i, others):
        for j in others:
            sh("ip", "netns", "exec", self.ns[i], "iptables", "-A", "INPUT", "-s", self.addr(j),
               "-j", "DROP")
            sh("ip", "netns", "exec", self.ns[i], "iptables", "-A", "OUTPUT", "-d", self.addr(j),
               "-j", "DROP")

    def heal(self, i):
        sh("ip", "netns", "exec", self.ns[i], "iptables", "-F")

    def down(self):
        for name in reversed(self.made):
            sh("ip", "netns", "del", name, check=False)


class Node:
    def __init__(self, net, i, binary, tmp, voters):
        self.i = i
        self.log = os.path.join(tmp, f"n{i}.log")
        args = ["ip", "netns", "exec", net.ns[i], binary, "--listen", f"{net.addr(i)}:{PORT}",
                "--allow-insecure", "--node-id", str(i), "--controller-voters", voters, "--cores", "1",
                "--data-dir", os.path.join(tmp, f"n{i}")]
        # `ip netns exec` execs rmqd: the PID is rmqd's.
        self.proc = subprocess.Popen(args, stdin=subprocess.DEVNULL,
                                     stdout=open(self.log, "w"), stderr=subprocess.STDOUT)

    def lines(self):
        with open(self.log, errors="replace") as f:
            return f.read().splitlines()

    def last_leader(self):
        """(leader id, term) from this node's newest leader line."""
        best = None
        for l in self.lines():
            m = LEADS_RE.search(l) or FOLLOWS_RE.search(l)
            if m:
                best = (int(m.group(1)), int(m.group(2)))
        return best

    def stop(self):
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                return self.proc.wait(timeout=30)
            except subprocess.TimeoutExpired:
                self.proc.kill()
        return self.proc.wait()


def wait(pred, what, timeout=BOUND_S):
    end = time.monotonic() + timeout
    while time.monotonic() < end:
        v = pred()
        if v:
            return v
        time.sleep(0.05)
    raise AssertionError(f"timed out after {timeout:.0f}s waiting for {what}")


def run(args, net, tmp):
    rmq = os.path.abspath(args.rmq)

    def cli(i, *cmd):
        return subprocess.run(["ip", "netns", "exec", net.client, rmq, "--bootstrap",
                               f"{net.addr(i)}:{PORT}", *cmd], capture_output=True, text=True,
                              timeout=20)

    voters = ",".join(f"{i}@{net.addr(i)}:{PORT}" for i in (1, 2, 3))
    nodes = {i: Node(net, i, os.path.abspath(args.rmqd), tmp, voters) for i in (1, 2, 3)}
    try:
        def agreed():
            views = [n.last_leader() for n in nodes.values()]
            return views[0] if views[0] and all(v == views[0] for v in views) else None

        leader, term = wait(agreed, "the three nodes to agree on a leader")
        print(f"    node {leader} leads term {term}", flush=True)
        r = cli(leader, "topic", "create", "p-before")
        assert r.returncode == 0, f"create on the leader: {r.stdout}{r.stderr}"

        others = [j for j in (1, 2, 3) if j != leader]
        t0 = time.monotonic()
        net.cut(leader, others)

        def new_leader():
            for j in others:
                v = nodes[j].last_leader()
                if v and v[0] != leader and v[1] > term:
                    return v
            return None

        nl, nterm = wait(new_leader, "the majority to elect a new leader")
        print(f"    leader {leader} cut off: node {nl} leads term {nterm} after "
              f"{time.monotonic() - t0:.2f}s", flush=True)
        r = cli(nl, "topic", "create", "p-during")
        assert r.returncode == 0, f"create on the new leader: {r.stdout}{r.stderr}"

        def old_refuses():
            r = cli(leader, "topic", "create", f"p-old-{int(time.monotonic() * 1000)}")
            return r.returncode != 0 and "NOT_CONTROLLER" in (r.stdout + r.stderr)

        wait(old_refuses, "the cut-off leader to step down and refuse a change")

        net.heal(leader)
        wait(lambda: nodes[leader].last_leader() == (nl, nterm) or
             (nodes[leader].last_leader() or (0, 0))[1] >= nterm,
             "the old leader to follow again")

        def has_topic():
            r = cli(leader, "topic", "list")
            return r.returncode == 0 and "p-during" in r.stdout.split()

        wait(has_topic, "the old leader to get the topic created while it was cut off")
        for i, n in nodes.items():
            rc = n.stop()
            assert rc == 0, f"node {i}: exit status {rc} after SIGTERM"
    finally:
        for n in nodes.values():
            if n.proc.poll() is None:
                n.proc.kill()
                n.proc.wait()


def main() -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("--rmqd", required=True)
    ap.add_argument("--rmq", required=True)
    ap.add_argument("-v", "--verbose", action="store_true")
    args = ap.parse_args()
    passed = failed = skipped = 0
    tmp = tempfile.mkdtemp(prefix="rmq-partition-test-")
    net = Net()
    try:
        if os.geteuid() != 0:
            raise Skip("network namespaces need root")
        if not shutil.which("iptables"):
            raise Skip("iptables is not installed (apt-get install iptables; tools/dev deps)")
        try:
            net.up()
        except RuntimeError as e:
            raise Skip(f"cannot make network namespaces here: {e}")
        run(args, net, tmp)
        passed += 1
        print("PASS partition_of_the_leader", flush=True)
    except Skip as e:
        skipped += 1
        print(f"SKIP partition_of_the_leader: {e}", flush=True)
    except Exception as e:  # noqa: BLE001
        failed += 1
        print(f"FAIL partition_of_the_leader: {type(e).__name__}: {e}", flush=True)
        for i in (1, 2, 3):
            p = os.path.join(tmp, f"n{i}.log")
            if os.path.exists(p):
                with open(p, errors="replace") as f:
                    print(f"  node {i}:\n" + "".join("    " + l for l in f.readlines()[-15:]))
    finally:
        net.down()
        if failed or args.verbose:
            print(f"logs kept in {tmp}", flush=True)
        else:
            shutil.rmtree(tmp, ignore_errors=True)
    print(f"{passed} passed, {failed} failed, {skipped} skipped")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
