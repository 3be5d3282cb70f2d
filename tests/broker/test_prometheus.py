#!/usr/bin/python3
# SPDX-License-Identifier: Apache-2.0
"""--metrics-listen (src/net/http1.c, src/broker/health.c): Prometheus's
GET /metrics scraped with a real HTTP client (urllib, http.client), every
line of the answer parsed against the text format (0.0.4): HELP and TYPE
before a family's samples, label sets well formed, histograms cumulative
with +Inf equal to _count; the same families and shards as GetMetrics,
counters that agree with it, per-partition series up to
--metrics-partitions-max and the rest counted as omitted; and what a
hostile or careless client does: other paths, other methods, garbage, a
head too large, pipelined requests, more idle connections than there are
slots, a client gone before its answer.

    /usr/bin/python3 tests/broker/test_prometheus.py --rmqd build/release/rmqd \\
        --proto-dir proto

Ends with "N passed, N failed, N skipped".
"""
import http.client
import math
import os
import re
import socket
import sys
import time
import urllib.error
import urllib.request

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import test_node as tn  # noqa: E402

check, eq, ok = tn.check, tn.eq, tn.ok

NAME = r"[a-zA-Z_:][a-zA-Z0-9_:]*"
LABEL = r'[a-zA-Z_][a-zA-Z0-9_]*="(?:[^"\\\n]|\\\\|\\"|\\n)*"'
SAMPLE = re.compile(rf"^({NAME})(?:\{{((?:{LABEL})(?:,{LABEL})*)?\}})? (\S+)$")
LABEL_RE = re.compile(r'([a-zA-Z_][a-zA-Z0-9_]*)="((?:[^"\\\n]|\\\\|\\"|\\n)*)"')


def parse(text):
    """Families {name: {"type", "help", "samples": [(name, labels, value)]}},
    every line checked."""
    fams, cur = {}, None
    check(text.endswith("\n"), "the exposition ends with a newline")
    for ln in text.splitlines():
        if ln.startswith("# HELP "):
            name, _, help_ = ln[7:].partition(" ")
            check(re.fullmatch(NAME, name) and help_, f"HELP line: {ln!r}")
            check(name not in fams, f"{name}: one HELP")
            fams[name] = {"help": help_, "type": None, "samples": []}
            cur = name
        elif ln.startswith("# TYPE "):
            name, _, typ = ln[7:].partition(" ")
            check(name == cur and fams[name]["type"] is None, f"TYPE after its HELP: {ln!r}")
            check(typ in ("counter", "gauge", "histogram"), f"type: {ln!r}")
            fams[name]["type"] = typ
        else:
            m = SAMPLE.match(ln)
            check(m, f"a sample line: {ln!r}")
            name, labels, value = m.group(1), m.group(2) or "", m.group(3)
            fam = cur
            check(fam is not None and fams[fam]["type"], f"{name}: declared before")
            want = {fam} if fams[fam]["type"] != "histogram" else \
                {fam + "_bucket", fam + "_sum", fam + "_count"}
            check(name in want, f"{name} belongs to {fam}")
            v = float(value)
            check(not math.isnan(v) and v >= 0, f"{ln!r}: a value")
            fams[fam]["samples"].append((name, dict(LABEL_RE.findall(labels)), v))
    return fams


def check_histograms(fams):
    n = 0
    for fam, f in fams.items():
        if f["type"] != "histogram":
            continue
        shards = {s[1]["shard"] for s in f["samples"]}
        for sh in shards:
            bk = [(s[1]["le"], s[2]) for s in f["samples"]
                  if s[0] == fam + "_bucket" and s[1]["shard"] == sh]
            count = [s[2] for s in f["samples"] if s[0] == fam + "_count" and s[1]["shard"] == sh]
            eq(len(count), 1, f"{fam}: one _count per shard")
            eq(bk[-1][0], "+Inf", f"{fam}: the last bucket is +Inf")
            eq(bk[-1][1], count[0], f"{fam}: +Inf equals _count")
            bounds = [float(le) for le, _ in bk[:-1]]
            check(bounds == sorted(bounds), f"{fam}: bounds ascend")
            vals = [v for _, v in bk]
            check(vals == sorted(vals), f"{fam}: buckets cumulative")
            n += 1
    check(n > 0, "histograms present")


def scrape(url, timeout=10):
    with urllib.request.urlopen(url, timeout=timeout) as r:
        eq(r.status, 200, "status")
        ctype = r.headers["Content-Type"]
        check(ctype.startswith("text/plain") and "version=0.0.4" in ctype, f"content type {ctype}")
        return r.read().decode()


def raw(port, data, timeout=5):
    """Sends data on a new connection; all it gets back until EOF."""
    with socket.create_connection(("127.0.0.1", port), timeout=timeout) as s:
        s.sendall(data)
        got = b""
        while True:
            b = s.recv(65536)
            if not b:
                return got
            got += b


def status_of(resp):
    return int(resp.split(b" ", 2)[1]) if resp.startswith(b"HTTP/1.1 ") else None


def run(args, tmp):
    node = tn.Node(args.rmqd, os.path.join(tmp, "data"), tmp, args.verbose)
    node.start(("--metrics-listen", "127.0.0.1:0", "--metrics-partitions-max", "3"))
    try:
        line = []
        tn.wait_until(lambda: line.extend(ln for ln in node.lines if "Prometheus metrics on" in ln)
                      or line, 10, "the metrics listener's line")
        port = int(re.search(r"http://127\.0\.0\.1:(\d+)/metrics", line[0]).group(1))
        url = f"http://127.0.0.1:{port}/metrics"
        with tn.Client(node.addr) as c:
            c.create_topic("m", 4)
            produced = 0
            for p in range(4):
                for _ in range(p + 1):
                    ok(c.produce("m", p, tn.make_records(10, tag=f"p{p}")), "produce")
                    produced += 10
            grpc = c.metrics()
            text = scrape(url)
            fams = parse(text)
            check_histograms(fams)
            # The families and shards of GetMetrics, all of them.
            names = {m.name for m in grpc.metrics}
            missing = names - set(fams)
            check(not missing, f"GetMetrics' families all scraped: missing {sorted(missing)}")
            for n in names:
                want = {dict(m.labels)["shard"] for m in grpc.metrics if m.name == n}
                got = {s[1]["shard"] for s in fams[n]["samples"]}
                eq(got, want, f"{n}: shards")
            total = sum(s[2] for s in fams["rmq_produce_records_total"]["samples"])
            eq(int(total), produced, "rmq_produce_records_total: the records produced")
            # Per-partition series: 3 of the 4 partitions, the 4th omitted.
            hw = {(s[1]["topic"], s[1]["partition"]): s[2]
                  for s in fams["rmq_partition_high_watermark"]["samples"]}
            eq(len(hw), 3, "--metrics-partitions-max 3: three partitions' series")
            for (t, p), v in hw.items():
                eq((t, int(v)), ("m", 10 * (int(p) + 1)), f"m-{p}: high watermark")
            omitted = fams["rmq_metrics_partitions_omitted"]["samples"][0][2]
            eq(int(omitted), 1, "one partition omitted")
            for s in fams["rmq_partition_leader"]["samples"]:
                eq(s[2], 1.0, "a single node leads its partitions")
            print("    scrape: %d families, %d lines, %d bytes" %
                  (len(fams), text.count("\n"), len(text)), flush=True)

            # HEAD: the head alone; keep-alive: two requests, one connection.
            hc = http.client.HTTPConnection("127.0.0.1", port, timeout=10)
            hc.request("HEAD", "/metrics")
            r = hc.getresponse()
            eq(r.status, 200, "HEAD")
            eq(r.read(), b"", "HEAD has no body")
            check(int(r.headers["Content-Length"]) > 0, "HEAD: the body's length")
            hc.request("GET", "/metrics?x=1")
            r = hc.getresponse()
            eq(r.status, 200, "a second request on the connection, with a query")
            parse(r.read().decode())
            hc.close()

            # Other paths, methods, garbage, a head too large.
            for path, code in (("/", 404), ("/metricsx", 404)):
                try:
                    urllib.request.urlopen(f"http://127.0.0.1:{port}{path}", timeout=10)
                    check(False, f"{path}: refused")
                except urllib.error.HTTPError as e:
                    eq(e.code, code, path)
            eq(status_of(raw(port, b"POST /metrics HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")),
               405, "POST")
            eq(status_of(raw(port, b"HELLO\r\n\r\n")), 400, "garbage")
            eq(status_of(raw(port, b"GET /metrics HTTP/2.0\r\n\r\n")), 400, "another version")
            eq(status_of(raw(port, b"GET /metrics HTTP/1.1\r\nContent-Length: 5\r\n\r\nhello")),
               400, "a body")
            eq(status_of(raw(port, b"GET /metrics HTTP/1.1\r\nX: " + b"a" * 9000)),
               431, "a head too large")
            eq(status_of(raw(port, b"GET /" + b"a" * 300 + b" HTTP/1.1\r\n\r\n")), 414, "a long path")
            eq(status_of(raw(port, b"GET /metrics HTTP/1.1\r\nbad header\r\n\r\n")), 400,
               "a header without a colon")
            # Pipelined: two answers, in order, the second closing.
            got = raw(port, b"GET /metrics HTTP/1.1\r\n\r\nGET /nope HTTP/1.1\r\n"
                            b"Connection: close\r\n\r\n")
            eq(got.count(b"HTTP/1.1 "), 2, "two pipelined answers")
            check(got.startswith(b"HTTP/1.1 200") and b"HTTP/1.1 404" in got, "in order")
            # A client gone before its answer, many times: the node goes on.
            for _ in range(20):
                s = socket.create_connection(("127.0.0.1", port))
                s.sendall(b"GET /metrics HTTP/1.1\r\n\r\n")
                s.close()
            # More idle connections than slots: a scrape still gets in.
            idle = [socket.create_connection(("127.0.0.1", port)) for _ in range(40)]
            time.sleep(0.2)
            t0 = time.monotonic()
            parse(scrape(url, timeout=20))
            check(time.monotonic() - t0 < 15, "a scrape beside 40 idle connections")
            # Half of a request, then silence: others are served meanwhile.
            half = socket.create_connection(("127.0.0.1", port))
            half.sendall(b"GET /metr")
            parse(scrape(url))
            for s in idle + [half]:
                s.close()
            ok(c.produce("m", 0, tn.make_records(5)), "produce after")
        # It stops with a connection open.
        hc = http.client.HTTPConnection("127.0.0.1", port, timeout=10)
        hc.request("GET", "/metrics")
        hc.getresponse().read()
        eq(node.stop(), 0, "exit status")
        hc.close()
    finally:
        node.kill()


def main():
    return tn.single_main("prometheus", run)


if __name__ == "__main__":
    sys.exit(main())
