#!/usr/bin/env bash
# SPDX-License-Identifier: Apache-2.0
#
# test_compare.sh - smoke test of bench/compare: a --quick run against rmq,
# NATS and Redis must print a table with a produce and a consume row per
# system, each with msgs/s > 0 and no errors, and draw its three charts.
# Never a timing assertion.
#
#   test_compare.sh <source dir> <dir of rmqd and rmq-bench>
#
# Skips (exit 0, "skipped: ...") when a server or tool it needs is not
# installed: tools/dev deps installs them, so CI runs it.
set -euo pipefail
src=$1
bin=$2
missing=()
for t in nats-server redis-server fio iperf3 gnuplot; do
	command -v "$t" >/dev/null 2>&1 || missing+=("$t")
done
if [ ${#missing[@]} -gt 0 ]; then
	echo "skipped: not installed: ${missing[*]} (tools/dev deps installs them)"
	exit 0
fi
out=$(mktemp -d "${TMPDIR:-/tmp}/test-compare.XXXXXX")
trap 'rm -rf "$out"' EXIT
"$src/bench/compare" --quick --bin "$bin" --out "$out"
for c in throughput latency cpu; do
	grep -q "<svg" "$out/compare-$c.svg" || { echo "no chart $out/compare-$c.svg"; exit 1; }
done
python3 - "$out/compare.md" "$out/compare.jsonl" <<'PY'
import json, sys
rows = {}
for line in open(sys.argv[1]):
    cells = [c.strip() for c in line.strip().strip("|").split("|")]
    if len(cells) == 9 and cells[0] in ("rmq", "nats", "redis"):
        rows[(cells[0], cells[1].split()[0])] = cells
fail = []
for sys_ in ("rmq", "nats", "redis"):
    for wl in ("produce", "consume"):
        r = rows.get((sys_, wl))
        if r is None:
            fail.append("no %s %s row" % (sys_, wl))
        elif not float(r[2]) > 0:
            fail.append("%s %s: msgs/s %s" % (sys_, wl, r[2]))
        elif int(r[8]) != 0:
            fail.append("%s %s: %s errors" % (sys_, wl, r[8]))
lines = [json.loads(l) for l in open(sys.argv[2]) if l.strip()]
if len(lines) != 6:
    fail.append("%d JSON lines, not 6" % len(lines))
# Every system produces with the same calls in flight (--streams, default 32).
for l in lines:
    if l["workload"] == "produce" and l["bench"].get("streams") != 32:
        fail.append("%s produce: streams %s, not 32" % (l["system"], l["bench"].get("streams")))
if fail:
    print("FAIL: " + "; ".join(fail))
    sys.exit(1)
print("ok: %d rows" % len(rows))
PY
