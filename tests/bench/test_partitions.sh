#!/usr/bin/env bash
# SPDX-License-Identifier: Apache-2.0
#
# test_partitions.sh - smoke test of bench/partitions: two "builds" (the same
# binaries under two labels), two rounds, small P and 1 s runs.  Every run
# must have created, measured, produced and restarted (its node with data
# and its node with empty partitions) without error; the
# builds must alternate their order from round to round; every data
# directory must be gone afterwards and the table written.  Never a timing
# assertion.
#
#   test_partitions.sh <source dir> <dir of rmqd, rmq-bench and rmq>
set -euo pipefail
src=$1
bin=$2
dir=$(mktemp -d "${TMPDIR:-/tmp}/test-partitions.XXXXXX")
trap 'rm -rf "$dir"' EXIT
mkdir "$dir/data" "$dir/out"
"$src/bench/partitions" --partitions 3 --repeat 2 --duration 1s --warmup 0s \
	--build a="$bin" --build b="$bin" --dir "$dir/data" --out "$dir/out" --json >"$dir/out.json"
python3 - "$dir/out.json" "$dir/out/partitions.md" <<'PY'
import json, sys
d = json.load(open(sys.argv[1]))
fail = []
runs = d["runs"]
order = [(r["round"], r["partitions"], r["build"]) for r in runs]
want = [(1, 1, "a"), (1, 1, "b"), (1, 3, "a"), (1, 3, "b"),
        (2, 1, "b"), (2, 1, "a"), (2, 3, "b"), (2, 3, "a")]
if order != want:
    fail.append("run order %s, not %s" % (order, want))
for r in runs:
    what = "%s P=%d round %d" % (r["build"], r["partitions"], r["round"])
    if r["error"]:
        fail.append("%s: %s" % (what, r["error"]))
        continue
    if not (r["create_s"] > 0 and r["disk_bytes"] > 0 and r["rss_bytes"] > 0 and r["rss_anon_bytes"] > 0):
        fail.append("%s: create/disk/RSS missing: %s" % (what, r))
    if not ((r["disk_after_restart_bytes"] or 0) > 0 and (r["startup_empty_s"] or 0) > 0):
        fail.append("%s: the empty node's restart: %s" % (what, r))
    if r["partitions"] == 1:
        continue
    p = r.get("produce")
    if not p or p["msgs_per_s"] <= 0 or p["errors"]["total"] != 0 or p.get("partitions") != 3:
        fail.append("%s: produce %s" % (what, p))
    if not (r["startup_s"] or 0) > 0:
        fail.append("%s: start-up after produce %s" % (what, r["startup_s"]))
rows = {(r["build"], r["partitions"]): r for r in d["rows"]}
for b in ("a", "b"):
    r = rows.get((b, 3))
    if not r or r["runs"] != 2 or r["disk_per_partition_bytes"] is None:
        fail.append("row %s P=3: %s" % (b, r))
md = open(sys.argv[2]).read()
if md.count("\n| a | 3 |") != 1 or md.count("\n| b | 3 |") != 1:
    fail.append("the table lacks a row per build:\n" + md)
if fail:
    print("FAIL: " + "\n".join(fail))
    sys.exit(1)
print("ok: %d runs" % len(runs))
PY
left=$(ls -A "$dir/data")
[ -z "$left" ] || { echo "FAIL: data directories left behind: $left" >&2; exit 1; }
