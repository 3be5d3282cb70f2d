#!/usr/bin/env bash
# SPDX-License-Identifier: Apache-2.0
#
# test_ab.sh - smoke test of bench/ab: the same build as "old" and "new",
# one --quick round each: both builds must have produced and consumed, with
# no errors, and the table must give a ratio per measure.  Never a timing
# assertion.
#
#   test_ab.sh <source dir> <dir of rmqd and rmq-bench>
set -euo pipefail
src=$1
bin=$2
out=$(mktemp -d "${TMPDIR:-/tmp}/test-ab.XXXXXX")
trap 'rm -rf "$out"' EXIT
"$src/bench/ab" --old "$bin" --new "$bin" --rounds 1 --quick --out "$out" --json >"$out/ab.json"
python3 - "$out/ab.json" "$out/ab.md" <<'PY'
import json, sys
d = json.load(open(sys.argv[1]))
fail = []
order = [(r["build"], r["workload"]) for r in d["runs"]]
if order != [("old", "produce"), ("old", "consume"), ("new", "produce"), ("new", "consume")]:
    fail.append("runs %s" % order)
if d["errors"] != 0:
    fail.append("%d errors" % d["errors"])
for r in d["results"]:
    if not (r["old"]["median"] > 0 and r["new"]["median"] > 0 and r["ratio"] > 0
            and r["paired"] and r["paired"]["median"] > 0):
        fail.append("%s %s: %s" % (r["workload"], r["unit"], r))
if len(d["results"]) != 4:
    fail.append("%d results, not 4" % len(d["results"]))
md = open(sys.argv[2]).read()
for row in ("| produce msgs/s |", "| produce MB/s |", "| consume msgs/s |", "| consume MB/s |"):
    if row not in md:
        fail.append("no %r row in the table" % row)
if fail:
    print("FAIL: " + "; ".join(fail))
    sys.exit(1)
print("ok")
PY
