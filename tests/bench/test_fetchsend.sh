#!/usr/bin/env bash
# SPDX-License-Identifier: Apache-2.0
#
# test_fetchsend.sh - smoke test of bench/fetchsend: one short round of
# each --fetch-send mode must give a table row per mode with a rate, CPU
# per GB, and splice carrying most bytes in the splice row and none in the
# others.  Never a timing assertion.
#
#   test_fetchsend.sh <source dir> <dir of rmqd, rmq-bench and rmq>
set -euo pipefail
src=$1
bin=$2
dir=$(mktemp -d "${TMPDIR:-/tmp}/test-fetchsend.XXXXXX")
# On a failure, what the script and the nodes said goes with it.
trap 'rc=$?; [ $rc -eq 0 ] || grep -v " WARN " "$dir/err" >&2; rm -rf "$dir"' EXIT
out=$("$src/bench/fetchsend" --bin "$bin" --rounds 1 --duration 1 --dir "$dir" 2>"$dir/err")
echo "$out"
python3 - "$out" <<'PY'
import sys
rows = {}
for line in sys.argv[1].splitlines():
    cells = [c.strip() for c in line.strip().strip("|").split("|")]
    if cells and cells[0] in ("sendmsg", "splice", "copy"):
        rows[cells[0]] = cells
if sorted(rows) != ["copy", "sendmsg", "splice"]:
    sys.exit("missing rows: %r" % sorted(rows))
for m, c in rows.items():
    mbs, cpu, share = float(c[1].replace(",", "")), float(c[2]), int(c[4].rstrip("%"))
    if mbs <= 0 or cpu <= 0:
        sys.exit("%s: no rate or no CPU: %r" % (m, c))
    if (m == "splice") != (share >= 50):
        sys.exit("%s: %d%% of the bytes went by splice" % (m, share))
print("ok")
PY
