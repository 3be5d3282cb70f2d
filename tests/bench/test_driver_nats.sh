#!/usr/bin/env bash
# SPDX-License-Identifier: Apache-2.0
#
# test_driver_nats.sh - rmq-bench's NATS driver (bench/driver_nats.c) on a
# stalled client: what a loaded CI machine does to it, made certain.  A
# produce run fills a JetStream stream, then a consume run with --messages
# reads it back while this script freezes it (SIGSTOP 700 ms, SIGCONT
# 100 ms, over and over).  Pull answers then arrive after the reader gave up
# on them, and a run ends with messages still arriving.  The run must exit
# 0, having read at least what the produce run measured, without errors.
#
# It failed before the driver spoke the pull protocol itself: libnats 3.4's
# natsSubscription_Fetch overflowed its message array and glibc aborted
# ("double free or corruption (!prev)"), and destroying a subscription
# before closing its connection crashed libnats' read loop (SIGSEGV).
# Never a timing assertion.
#
#   test_driver_nats.sh <dir of rmq-bench>
#
# Skips (exit 0, "skipped: ...") when nats-server is not installed.
set -euo pipefail
bin=$1
rounds=${RMQ_TEST_ROUNDS:-3}
if ! command -v nats-server >/dev/null 2>&1; then
	echo "skipped: nats-server not installed (tools/dev deps installs it)"
	exit 0
fi
dir=$(mktemp -d "${TMPDIR:-/tmp}/test-driver-nats.XXXXXX")
server=
cleanup() {
	if [ -n "$server" ]; then
		kill "$server" 2>/dev/null || true
		wait "$server" 2>/dev/null || true
	fi
	rm -rf "$dir"
}
trap cleanup EXIT

port=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])')
nats-server -js -a 127.0.0.1 -p "$port" -sd "$dir/js" >"$dir/nats.log" 2>&1 &
server=$!
for _ in $(seq 100); do
	(exec 3<>"/dev/tcp/127.0.0.1/$port") 2>/dev/null && break
	kill -0 "$server" 2>/dev/null || { cat "$dir/nats.log"; exit 1; }
	sleep 0.1
done
target=nats://127.0.0.1:$port

field() { # file key
	python3 -c 'import json,sys; print(json.load(open(sys.argv[1]))[sys.argv[2]])' "$1" "$2"
}

fail=0
for round in $(seq "$rounds"); do
	topic=stall$round
	timeout 30 "$bin/rmq-bench" --target "$target" --topic "$topic" --mode produce \
		--msg-bytes 1024 --batch 100 --streams 32 --warmup 0s --duration 1s --json \
		--progress=false >"$dir/produce.json"
	n=$(field "$dir/produce.json" messages)
	[ "$n" -gt 0 ] || { echo "round $round: produced nothing"; exit 1; }

	timeout 90 "$bin/rmq-bench" --target "$target" --topic "$topic" --mode consume \
		--from earliest --msg-bytes 1024 --batch 100 --warmup 0s --duration 60s \
		--messages "$n" --json --progress=false >"$dir/consume.json" 2>"$dir/consume.err" &
	bench=$!
	# Freeze rmq-bench itself, timeout's child: a stop sent to timeout
	# would not reach it.
	sleep 0.2
	pid=$(pgrep -P "$bench" -x rmq-bench || true)
	while [ -n "$pid" ] && kill -0 "$pid" 2>/dev/null; do
		kill -STOP "$pid" 2>/dev/null || break
		sleep 0.7
		kill -CONT "$pid" 2>/dev/null || break
		sleep 0.1
	done
	rc=0
	wait "$bench" || rc=$?
	if [ "$rc" -ne 0 ]; then
		echo "round $round: rmq-bench consume exited $rc:"
		cat "$dir/consume.err"
		fail=1
		continue
	fi
	got=$(field "$dir/consume.json" messages)
	errors=$(python3 -c 'import json,sys; print(json.load(open(sys.argv[1]))["errors"]["total"])' \
		"$dir/consume.json")
	echo "round $round: produced $n, consumed $got, errors $errors"
	# --messages is a floor: a reader may count one more while another
	# stops the run (rmq_bench.c counts whole batches the same way).
	if [ "$got" -lt "$n" ] || [ "$errors" -ne 0 ]; then
		cat "$dir/consume.json"
		fail=1
	fi
done
[ "$fail" -eq 0 ] && echo ok
exit "$fail"
