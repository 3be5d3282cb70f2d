#!/usr/bin/env bash
# SPDX-License-Identifier: Apache-2.0
#
# test_readback.sh - smoke test of bench/readback: a 1 s produce read back
# must report records, a rate and bytes read from the disk.  The page
# cache is kept (other tests run beside it); the log is O_DIRECT anyway.
# Never a timing assertion.
#
#   test_readback.sh <source dir> <dir of rmqd, rmq-bench and rmq>
set -euo pipefail
src=$1
bin=$2
dir=$(mktemp -d "${TMPDIR:-/tmp}/test-readback.XXXXXX")
trap 'rm -rf "$dir"' EXIT
line=$("$src/bench/readback" --bin "$bin" --produce 1 --dir "$dir" --keep-cache)
echo "$line"
python3 - "$line" <<'PY'
import re, sys
m = re.fullmatch(r"read back (\d+) records: (\d+) MB/s, rmqd ([\d.]+) CPU s, (\d+) MB from the disk \((\d+) MB from read-ahead\)", sys.argv[1])
if not m:
    sys.exit("unexpected output: %r" % sys.argv[1])
records, mbs, cpu, disk, ahead = m.groups()
if int(records) <= 0 or int(mbs) <= 0 or int(disk) <= 0:
    sys.exit("nothing read back from the disk: %r" % sys.argv[1])
print("ok")
PY
