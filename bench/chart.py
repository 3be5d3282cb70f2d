#!/usr/bin/env python3
# SPDX-License-Identifier: Apache-2.0
"""bench/chart.py - charts of a benchmark's results, drawn by gnuplot (Debian's
gnuplot-nox) as SVG files beside its table.

    bench/chart.py compare JSONL --out DIR [--fio MB/s] [--iperf MB/s] [--title TEXT]
    bench/chart.py scale JSONL --out DIR
    bench/chart.py latency JSON --out FILE.svg [--title TEXT]

compare: the JSON lines bench/compare writes (one per system and workload:
{"system", "workload", "server_cpu_s", "bench": rmq-bench's --json}) become
DIR/compare-throughput.svg (produce and consume MB/s per system, the
machine's limits of the same run as lines), DIR/compare-latency.svg
(produce ack latency p50, p99, p99.9 per system, log scale) and
DIR/compare-cpu.svg (server CPU seconds per GB, produce and consume).

scale: bench/scale's JSON lines become DIR/scale-size.svg (MB/s and
messages/s against the message size) and DIR/scale-connections.svg
(produce against the run without idle connections, and rmqd's RSS),
medians over rounds.

latency: one rmq-bench --json summary's percentiles (p50 to max) as bars
on a log scale (bench/steady's measured run).

Writes the gnuplot scripts next to the charts (DIR/*.gp) so that a chart can
be drawn again or restyled by hand.  Uses only the standard library.
"""
import argparse
import json
import os
import shutil
import subprocess
import sys

HEAD = """set terminal svg size 760,400 dynamic enhanced font "sans,12" background rgb "white"
set output "{out}"
set title "{title}"
set style data histograms
set style histogram clustered gap 1
set style fill solid 0.85 border rgb "#333333"
set boxwidth 0.9
set grid ytics lc rgb "#dddddd"
set key below horizontal
set xtics nomirror
set ytics nomirror
set border 3
"""


def block(name, rows):
    """A gnuplot inline data block; names quoted."""
    lines = [f"${name} << EOD"]
    for r in rows:
        lines.append(" ".join([f'"{r[0]}"'] + [f"{v:.6g}" for v in r[1:]]))
    lines.append("EOD")
    return "\n".join(lines) + "\n"


def draw(script, path):
    gp = os.path.splitext(path)[0] + ".gp"
    with open(gp, "w") as f:
        f.write(script)
    subprocess.run(["gnuplot", os.path.basename(gp)], check=True, cwd=os.path.dirname(gp) or ".")
    print(f"bench/chart.py: wrote {path}", file=sys.stderr)


def compare(args):
    rows = [json.loads(ln) for ln in open(args.jsonl) if ln.strip()]
    systems = []
    for r in rows:
        if r["system"] not in systems:
            systems.append(r["system"])
    by = {(r["system"], r["workload"]): r for r in rows}

    def mbs(s, w):
        r = by.get((s, w))
        return r["bench"]["mb_per_s"] if r else 0.0

    def cpu(s, w):
        r = by.get((s, w))
        gb = r["bench"]["bytes"] / 1e9 if r else 0
        return r["server_cpu_s"] / gb if r and gb > 0 else 0.0

    os.makedirs(args.out, exist_ok=True)
    title = args.title or "bench/compare"

    # Throughput, with the limits of the same run.
    out = os.path.join(args.out, "compare-throughput.svg")
    s = HEAD.format(out=os.path.basename(out), title=f"{title}: throughput")
    s += block("d", [(x, mbs(x, "produce"), mbs(x, "consume")) for x in systems])
    s += 'set ylabel "MB/s of messages"\nset yrange [0:*]\n'
    limits = []
    if args.fio:
        limits.append((args.fio, "fio direct write"))
    if args.iperf:
        limits.append((args.iperf, "iperf3 loopback"))
    for i, (v, name) in enumerate(sorted(limits)):
        # The lower limit's label under its line, the higher's above: close
        # limits (a fast disk and loopback) stay readable.
        off = "0,-0.7" if i == 0 and len(limits) > 1 else "0,0.7"
        s += (f'set arrow {i + 1} from graph 0, first {v} to graph 1, first {v} nohead '
              f'dt {2 + i} lw 1.5 lc rgb "#444444" front\n'
              f'set label {i + 1} "{name} {v:.0f} MB/s" at graph 0.01, first {v} offset {off} '
              f'font "sans,10" front\n')
    if limits:  # room above the highest limit for its label
        top = max([v for v, _ in limits] + [mbs(x, w) for x in systems for w in ("produce", "consume")])
        s += f"set yrange [0:{top * 1.15:.0f}]\n"
    s += ('plot $d using 2:xtic(1) title "produce" lc rgb "#3b6ea8", '
          '"" using 3 title "consume" lc rgb "#e38b2c"\n')
    draw(s, out)

    # Produce ack latency percentiles.
    out = os.path.join(args.out, "compare-latency.svg")
    s = HEAD.format(out=os.path.basename(out), title=f"{title}: produce latency")
    lat = []
    for x in systems:
        r = by.get((x, "produce"))
        if r:
            lu = r["bench"]["latency_us"]
            lat.append((x, lu["p50"] / 1e3, lu["p99"] / 1e3, lu["p999"] / 1e3))
    s += block("d", lat)
    s += 'set ylabel "ms (log scale)"\nset logscale y\nset yrange [*:*]\n'
    s += ('plot $d using 2:xtic(1) title "p50" lc rgb "#6aa84f", '
          '"" using 3 title "p99" lc rgb "#3b6ea8", "" using 4 title "p99.9" lc rgb "#a83b3b"\n')
    draw(s, out)

    # Server CPU per GB.
    out = os.path.join(args.out, "compare-cpu.svg")
    s = HEAD.format(out=os.path.basename(out), title=f"{title}: server CPU per GB")
    s += block("d", [(x, cpu(x, "produce"), cpu(x, "consume")) for x in systems])
    s += 'set ylabel "CPU seconds per GB of messages"\nset yrange [0:*]\n'
    s += ('plot $d using 2:xtic(1) title "produce" lc rgb "#3b6ea8", '
          '"" using 3 title "consume" lc rgb "#e38b2c"\n')
    draw(s, out)


LINES = """set terminal svg size 760,400 dynamic enhanced font "sans,12" background rgb "white"
set output "{out}"
set title "{title}"
set grid lc rgb "#dddddd"
set key below horizontal
set border 11
set xtics nomirror
set ytics nomirror
set y2tics nomirror
"""


def scale(args):
    import statistics
    rows = [json.loads(ln) for ln in open(args.jsonl) if ln.strip()]
    os.makedirs(args.out, exist_ok=True)

    def medians(kind, key):
        pts = {}
        for r in rows:
            if r["dimension"] == kind:
                pts.setdefault(r[key], []).append(r)
        return [(k, {f: statistics.median(x[f] for x in v) for f in v[0]
                     if isinstance(v[0][f], (int, float))}) for k, v in sorted(pts.items())]

    size = medians("size", "size")
    if size:
        out = os.path.join(args.out, "scale-size.svg")
        s = LINES.format(out=os.path.basename(out), title="bench/scale: message size")
        s += block("d", [(str(k), k, m["produce_mbs"], m["consume_mbs"], m["produce_msgs"])
                         for k, m in size])
        s += ('set logscale x 10\nset autoscale xfix\nset offsets graph 0.05, graph 0.05, 0, 0\nset xlabel "message bytes (log scale)"\n'
              'set ylabel "MB/s"\nset yrange [0:*]\n'
              'set logscale y2 10\nset y2label "produce messages/s (log scale)"\n'
              'plot $d using 2:3 with linespoints lw 2 pt 7 lc rgb "#3b6ea8" title "produce MB/s", '
              '"" using 2:4 with linespoints lw 2 pt 5 lc rgb "#e38b2c" title "consume MB/s", '
              '"" using 2:5 axes x1y2 with linespoints lw 2 pt 9 dt 2 lc rgb "#555555" '
              'title "produce msgs/s"\n')
        draw(s, out)
    conns = medians("connections", "connections")
    if conns:
        base = conns[0][1]["produce_msgs"] or 1
        out = os.path.join(args.out, "scale-connections.svg")
        s = LINES.format(out=os.path.basename(out), title="bench/scale: idle connections beside a load")
        s += block("d", [(f"{k:,}", m["produce_msgs"] / base, m["rss_idle"] / 2**20)
                         for k, m in conns])
        s += ('set xlabel "idle HTTP/2 connections"\nset ylabel "produce, against none"\n'
              'set yrange [0:1.2]\nset y2label "rmqd RSS, MiB"\nset y2range [0:*]\n'
              'plot $d using 0:2:xtic(1) with linespoints lw 2 pt 7 lc rgb "#3b6ea8" '
              'title "produce msgs/s (fraction of none)", '
              '"" using 0:3 axes x1y2 with linespoints lw 2 pt 5 lc rgb "#a83b3b" '
              'title "rmqd RSS (MiB)"\n')
        draw(s, out)


def latency(args):
    """One rmq-bench --json run's latency percentiles, as bars (log scale)."""
    d = json.load(open(args.json))
    lat = d["latency_us"]
    out = args.out
    s = HEAD.format(out=os.path.basename(out), title=args.title or "latency")
    s += block("d", [(name, lat[k] / 1e3) for name, k in
                     (("p50", "p50"), ("p90", "p90"), ("p99", "p99"), ("p99.9", "p999"),
                      ("max", "max"))])
    s += ('set ylabel "ms (log scale)"\nset logscale y\nset key off\n'
          f'set xlabel "{d["msgs_per_s"]:,.0f} msgs/s, {d["mb_per_s"]:,.0f} MB/s, '
          f'{d["latency_kind"]} latency"\n'
          'plot $d using 2:xtic(1) lc rgb "#3b6ea8"\n')
    draw(s, out)


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    sub = ap.add_subparsers(dest="kind", required=True)
    c = sub.add_parser("compare", help="bench/compare's JSON lines")
    c.add_argument("jsonl")
    c.add_argument("--out", required=True)
    c.add_argument("--fio", type=float, default=0.0, help="fio's direct write, MB/s")
    c.add_argument("--iperf", type=float, default=0.0, help="iperf3 loopback, MB/s")
    c.add_argument("--title", default="")
    la = sub.add_parser("latency", help="one rmq-bench --json run's percentiles")
    la.add_argument("json")
    la.add_argument("--out", required=True, help="the .svg file")
    la.add_argument("--title", default="")
    sc = sub.add_parser("scale", help="bench/scale's JSON lines")
    sc.add_argument("jsonl")
    sc.add_argument("--out", required=True)
    args = ap.parse_args()
    if not shutil.which("gnuplot"):
        print("bench/chart.py: gnuplot is missing (apt-get install gnuplot-nox)", file=sys.stderr)
        return 1
    {"compare": compare, "scale": scale, "latency": latency}[args.kind](args)
    return 0


if __name__ == "__main__":
    sys.exit(main())
