#!/usr/bin/env bash
# SPDX-License-Identifier: Apache-2.0
#
# test_halfload.sh - smoke test of bench/halfload: one short round must
# give a peak, an open loop near half of it, rmq's and fio's percentiles
# and the node's breakdown.  Skips without fio.  Never a timing assertion.
#
#   test_halfload.sh <source dir> <dir of rmqd, rmq-bench and rmq>
set -euo pipefail
src=$1
bin=$2
command -v fio >/dev/null || { echo "SKIP: fio is not installed (tools/dev deps installs it)"; exit 0; }
dir=$(mktemp -d "${TMPDIR:-/tmp}/test-halfload.XXXXXX")
trap 'rc=$?; [ $rc -eq 0 ] || grep -v " WARN " "$dir/err" >&2; rm -rf "$dir"' EXIT
out=$("$src/bench/halfload" --bin "$bin" --rounds 1 --duration 2 --dir "$dir" 2>"$dir/err")
echo "$out"
python3 - "$out" <<'PY'
import re, sys
out = sys.argv[1]
m = re.search(r"^\| median \| ([\d,]+) \| ([\d,]+) \| ([\d.]+) / ([\d.]+) / ([\d.]+) \| ([\d.]+) / ([\d.]+) / ([\d.]+) \|", out, re.M)
if not m:
    sys.exit("no median row")
peak, half = (float(x.replace(",", "")) for x in m.groups()[:2])
lat = [float(x) for x in m.groups()[2:]]
if peak <= 0 or half <= 0 or min(lat) <= 0:
    sys.exit("a figure is zero: %r" % (m.groups(),))
if not re.search(r"^round 1: [\d.]+ / [\d.]+ / [\d.]+$", out, re.M):
    sys.exit("no breakdown line")
if "produce errors" in out:
    sys.exit("the open loop had errors")
print("ok")
PY
