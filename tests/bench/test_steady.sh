#!/usr/bin/env bash
# SPDX-License-Identifier: Apache-2.0
#
# test_steady.sh - bench/steady end to end on small segments: after the
# fill, retention runs at every roll, so every segment the measured run
# rolls to reuses the file retention deleted at the roll before (rmqd's
# --recycle-segments, through GetMetrics); with --recycle-segments=false
# none does; --breakdown prints the measured run's histograms.  Never a
# timing assertion.
#
#   test_steady.sh <source dir> <dir of rmqd, rmq-bench and rmq>
set -euo pipefail
src=$1
bin=$2
dir=$(mktemp -d "${TMPDIR:-/tmp}/test-steady.XXXXXX")
trap 'rm -rf "$dir"' EXIT
check() {
	python3 - "$1" "$2" <<'PY'
import re, sys
line, want = sys.argv[1], sys.argv[2]
m = re.fullmatch(r"steady produce: (\d+) msgs/s, (\d+) MB/s, ack p50 ([\d.]+) p99 ([\d.]+) "
                 r"p99\.9 ([\d.]+) ms, rmqd ([\d.]+) CPU s, (\d+) segments rolled \((\d+) recycled\)",
                 line)
if not m:
    sys.exit("unexpected output: %r" % line)
msgs, rolled, recycled = int(m.group(1)), int(m.group(7)), int(m.group(8))
if msgs <= 0 or rolled <= 0:
    sys.exit("no produce or no roll: %r" % line)
if want == "recycled" and recycled != rolled:
    sys.exit("a roll did not reuse the file retention deleted at the roll before: %r" % line)
if want == "none" and recycled != 0:
    sys.exit("segments recycled with --recycle-segments=false: %r" % line)
print("ok")
PY
}
args=(--bin "$bin" --dir "$dir" --out "$dir/out" --fill 2 --segment 2MiB --retention 4MiB
      --bench "--duration 3s --warmup 0s --rate 20000")
# With --breakdown rmqd restarts after the fill (the spare files stay) and
# its histograms cover the measured run only: one roll sample per roll.
out=$("$src/bench/steady" "${args[@]}" --breakdown)
echo "$out"
line=$(head -1 <<<"$out")
check "$line" recycled
rolled=$(sed -E 's/.* ([0-9]+) segments rolled.*/\1/' <<<"$line")
grep -Eq "^rmq_segment_roll_latency_us [0-9.e+]+ count=$rolled p50<=" <<<"$out" ||
	{ echo "roll histogram does not count the $rolled rolls" >&2; exit 1; }
for h in produce log_ack log_write log_sync; do
	grep -Eq "^rmq_${h}_latency_us [0-9.e+]+ count=[0-9]+ " <<<"$out" ||
		{ echo "no rmq_${h}_latency_us line" >&2; exit 1; }
done
line=$("$src/bench/steady" "${args[@]}" --rmqd "--recycle-segments=false")
echo "$line"
check "$line" none
