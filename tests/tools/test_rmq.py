#!/usr/bin/python3
# SPDX-License-Identifier: Apache-2.0
"""The rmq command-line client against one rmqd on 127.0.0.1:0.

Runs every subcommand and checks its output and exit status (0 ok, 1 error,
2 usage), the one-line error messages, and the round trips: 100000 stdin
lines produced and consumed back byte for byte, --format json, --key-sep and
--headers, compression, --offset N / @timestamp / latest with --timeout;
consumer groups: consume --group resuming from the group's commits, two
members splitting a topic, group list / describe / reset / delete; the
global flags (--bootstrap) before the command as well as after it.
"""
import argparse
import base64
import json
import os
import re
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time

ap = argparse.ArgumentParser()
ap.add_argument("--rmqd", required=True)
ap.add_argument("--rmq", required=True)
args = ap.parse_args()

failures = []


def check(cond, what):
    if not cond:
        failures.append(what)
        print("FAIL:", what, file=sys.stderr)


def rmq(*argv, stdin=None, env_extra=None, timeout=20):
    env = dict(os.environ)
    env["RMQ_BOOTSTRAP"] = BOOT
    if env_extra:
        env.update(env_extra)
    p = subprocess.run([args.rmq, *argv], input=stdin, capture_output=True, env=env,
                       timeout=timeout)
    return p.returncode, p.stdout, p.stderr.decode()


def expect(argv, code, out_re=None, err_re=None, stdin=None, env_extra=None):
    rc, out, err = rmq(*argv, stdin=stdin, env_extra=env_extra)
    what = "rmq " + " ".join(argv)
    check(rc == code, f"{what}: exit {rc}, want {code} (stderr: {err.strip()})")
    if out_re is not None:
        check(re.search(out_re, out.decode(errors="replace"), re.M),
              f"{what}: stdout {out[:300]!r} does not match {out_re!r}")
    if err_re is not None:
        check(re.search(err_re, err, re.M), f"{what}: stderr {err!r} does not match {err_re!r}")
    if code != 0 and err:
        check(err.count("\n") == 1 or code == 2 and err.startswith("usage"),
              f"{what}: error is not one line: {err!r}")
    return out


tmp = tempfile.mkdtemp(prefix="rmq-tools-")
errlog = open(os.path.join(tmp, "rmqd.err"), "w+")
rmqd = subprocess.Popen([args.rmqd, "--listen", "127.0.0.1:0", "--data-dir",
                         os.path.join(tmp, "data"), "--cores", "2",
                         "--group-initial-rebalance-delay", "200ms",
                         "--group-min-session-timeout", "200ms"],
                        stdout=subprocess.DEVNULL, stderr=errlog)
try:
    port = None
    deadline = time.time() + 10
    while time.time() < deadline and port is None:
        errlog.seek(0)
        m = re.search(r"serving on 127\.0\.0\.1:(\d+)", errlog.read())
        if m:
            port = int(m.group(1))
        elif rmqd.poll() is not None:
            break
        else:
            time.sleep(0.05)
    if port is None:
        errlog.seek(0)
        print("rmqd did not start:", errlog.read(), file=sys.stderr)
        sys.exit(1)
    BOOT = f"127.0.0.1:{port}"

    # Usage: help, bad flags, missing arguments.
    expect(["--help"], 0, out_re=r"^usage: rmq \[--bootstrap host:port\] COMMAND")
    expect([], 2)
    expect(["nosuch"], 2, err_re=r"unknown command 'nosuch'")
    for sub in (["topic", "create"], ["topic", "list"], ["topic", "describe"], ["topic", "delete"],
                ["topic", "alter"], ["produce"], ["consume"], ["cluster"], ["health"], ["metrics"],
                ["group", "list"], ["group", "describe"], ["group", "reset"], ["group", "delete"]):
        expect([*sub, "--help"], 0, out_re=r"^usage: rmq " + sub[0])
    expect(["topic"], 2)
    expect(["topic", "create"], 2, err_re=r"^rmq topic create: missing argument")
    expect(["topic", "create", "x", "--partitions", "zero"], 2, err_re=r"--partitions")
    expect(["topic", "create", "x", "--bogus"], 2, err_re=r"unknown flag --bogus")
    expect(["produce", "t", "--compression", "gzip"], 2, err_re=r"--compression")
    expect(["consume", "t", "--offset", "soon"], 2, err_re=r"--offset")
    expect(["topic", "alter", "x"], 2, err_re=r"--partitions N or at least one --config")
    expect(["group"], 2, err_re=r"^usage: rmq group")
    expect(["group", "--help"], 0, out_re=r"(?s)list.*describe.*reset.*delete")
    expect(["group", "nosuch"], 2, err_re=r"unknown group subcommand 'nosuch'")
    expect(["group", "describe"], 2, err_re=r"^rmq group describe: missing argument")
    expect(["group", "delete"], 2, err_re=r"missing argument")
    expect(["group", "list", "--state", "Sleepy"], 2, err_re=r"--state 'Sleepy'")
    expect(["group", "reset", "g", "--to-earliest"], 2, err_re=r"--topic is required")
    expect(["group", "reset", "g", "--topic", "t"], 2, err_re=r"exactly one of --to-earliest")
    expect(["group", "reset", "g", "--topic", "t", "--to-earliest", "--to-offset", "3"], 2,
           err_re=r"exactly one of")
    expect(["group", "reset", "g", "--topic", "t", "--to-datetime", "yesterday"], 2,
           err_re=r"--to-datetime 'yesterday'")
    expect(["consume", "t", "--group", "g", "--partition", "1"], 2,
           err_re=r"--partition and --group")
    expect(["consume", "t", "--group", "g", "--assignor", "magic"], 2, err_re=r"--assignor")

    # Connection refused: one line that says what to do.
    expect(["topic", "list", "--bootstrap", "127.0.0.1:1"], 1,
           err_re=r"^rmq: cannot connect to 127\.0\.0\.1:1: connection refused \(is rmqd running\? "
                  r"set --bootstrap or RMQ_BOOTSTRAP\)$")

    # The global flags go before the command too (`nats -s`, `kcat -b`), in
    # both forms; the last one given wins, and RMQ_BOOTSTRAP (pointed at a
    # dead port here) only when none is given.
    dead = {"RMQ_BOOTSTRAP": "127.0.0.1:1"}
    expect(["--bootstrap", BOOT, "topic", "list"], 0, env_extra=dead)
    expect([f"--bootstrap={BOOT}", "topic", "list"], 0, env_extra=dead)
    expect(["--bootstrap", "127.0.0.1:1", "topic", "list", "--bootstrap", BOOT], 0)
    expect(["--bootstrap", BOOT, "topic", "list", "--bootstrap=127.0.0.1:1"], 1,
           err_re=r"^rmq: cannot connect to 127\.0\.0\.1:1: ")
    expect(["--bootstrap", BOOT, "--bootstrap", "127.0.0.1:1", "health"], 1,
           err_re=r"cannot connect to 127\.0\.0\.1:1")
    expect(["--bootstrap"], 2, err_re=r"^rmq: --bootstrap needs a value \(see rmq --help\)$")
    expect(["--bootstrap", BOOT], 2, err_re=r"^usage: rmq \[--bootstrap host:port\] COMMAND")
    expect(["--bootstrap", BOOT, "--help"], 0, out_re=r"(?s)^usage: rmq .*global flags.*--bootstrap")
    expect(["--bootstrap", BOOT, "--version"], 0, out_re=r"^rmq \d")
    expect(["--partitions", "3", "topic", "create", "x"], 2,
           err_re=r"^rmq: unknown flag --partitions before the command: a command's own flags go after it")
    expect(["--bootstrap", BOOT, "topic", "create", "--help"], 0, out_re=r"^usage: rmq topic create")
    expect(["--bootstrap", BOOT, "group"], 2, err_re=r"^usage: rmq group")

    # Topics.
    expect(["topic", "create", "t"], 0, out_re=r"created topic t \(1 partition\)")
    expect(["topic", "create", "t"], 1, err_re=r"topic 't' already exists")
    expect(["topic", "create", "multi", "--partitions", "3", "--config", "retention.ms=3600000"], 0,
           out_re=r"created topic multi \(3 partitions\)")
    out = expect(["topic", "list"], 0)
    check(sorted(out.decode().split()) == ["multi", "t"], f"topic list: {out!r}")
    expect(["topic", "describe", "multi"], 0,
           out_re=r"(?s)^topic multi.*partitions 3.*partition 2\tleader \S+\tshard \d.*retention\.ms=3600000")
    expect(["topic", "alter", "multi", "--config", "retention.ms=7200000"], 0, out_re=r"altered topic multi")
    expect(["topic", "describe", "multi"], 0, out_re=r"retention\.ms=7200000")
    # Growing a topic (CreatePartitions); a smaller count is refused.
    expect(["topic", "create", "grow", "--partitions", "1"], 0)
    expect(["topic", "alter", "grow", "--partitions", "3"], 0,
           out_re=r"^topic grow has 3 partitions \(2 new\)\n$")
    expect(["topic", "alter", "grow", "--partitions", "2"], 1, err_re=r"INVALID_PARTITIONS")
    expect(["topic", "describe", "grow"], 0, out_re=r"(?s)partitions 3.*partition 2\tleader 1")
    expect(["topic", "delete", "grow"], 0)
    expect(["topic", "describe", "nope"], 1,
           err_re=r"^rmq: topic 'nope' not found \(create it with: rmq topic create nope\)$")
    expect(["topic", "delete", "nope"], 1, err_re=r"topic 'nope' not found")
    expect(["produce", "nope"], 1, stdin=b"x\n", err_re=r"topic 'nope' not found")
    expect(["consume", "nope", "--max", "1"], 1, err_re=r"topic 'nope' not found")

    # The pipeline: seq 100000 | rmq produce t; rmq consume t ... reproduces it.
    seq = subprocess.run(["seq", "100000"], capture_output=True, check=True).stdout
    expect(["produce", "t"], 0, stdin=seq)
    out = expect(["consume", "t", "--offset", "earliest", "--max", "100000"], 0)
    with open(os.path.join(tmp, "seq"), "wb") as f:
        f.write(seq)
    with open(os.path.join(tmp, "out"), "wb") as f:
        f.write(out)
    check(subprocess.run(["cmp", os.path.join(tmp, "seq"), os.path.join(tmp, "out")]).returncode == 0,
          "seq 100000 | rmq produce t; rmq consume t --max 100000 differs from the input")
    expect(["topic", "describe", "t"], 0, out_re=r"partition 0\tleader 1\tshard \d\tepoch \d+\toffsets 0\.\.100000$")
    expect(["consume", "t", "--offset", "99998", "--max", "5", "--timeout", "300ms"], 0,
           out_re=r"\A99999\n100000\n\Z")
    expect(["consume", "t", "--offset", "latest", "--timeout", "200ms"], 0, out_re=r"\A\Z")

    # Keys, headers, JSON, compression, -v; keys hash to a partition each.
    lines = b"k1:hello\nk2:w\xc3\xb6rld\nk1:bin\xff\xfe\nnokey\n"
    _, _, err = rmq("produce", "multi", "--key-sep", ":", "--headers", "h1=v1,h2=v2",
                    "--compression", "zstd", "-v", stdin=lines)
    check(re.search(r"multi/\d: \d+ records at offsets \d+\.\.\d+", err), f"produce -v: {err!r}")
    out = expect(["consume", "multi", "--offset", "earliest", "--max", "4", "--format", "json"], 0)
    recs = [json.loads(l) for l in out.decode().splitlines()]
    check(len(recs) == 4, f"json: {len(recs)} records")
    byval = {r.get("value", r.get("value_base64")): r for r in recs}
    check("hello" in byval and byval["hello"]["key"] == "k1", f"json key: {recs}")
    check("wörld" in byval and byval["wörld"]["key"] == "k2", f"json utf-8: {recs}")
    b64 = base64.b64encode(b"bin\xff\xfe").decode()
    check(b64 in byval and "value_base64" in byval[b64], f"json base64: {recs}")
    check(byval.get("nokey", {}).get("key", 1) is None, f"json no key: {recs}")
    for r in recs:
        check(r["headers"] == [{"key": "h1", "value": "v1"}, {"key": "h2", "value": "v2"}],
              f"json headers: {r}")
        check(r["timestamp"] > 1600000000000 and r["offset"] >= 0 and 0 <= r["partition"] < 3,
              f"json fields: {r}")
    check(byval["hello"]["partition"] == byval[b64]["partition"], "same key, same partition")

    # --partition, other codecs, @timestamp.
    t0 = int(time.time() * 1000)
    for codec in ("lz4", "snappy", "none"):
        expect(["produce", "multi", "--partition", "2", "--compression", codec, "--acks", "all"], 0,
               stdin=f"{codec}-a\n{codec}-b\n".encode())
    out = expect(["consume", "multi", "--partition", "2", "--offset", f"@{t0}", "--max", "6"], 0)
    check(out == b"lz4-a\nlz4-b\nsnappy-a\nsnappy-b\nnone-a\nnone-b\n", f"@timestamp: {out!r}")
    expect(["produce", "multi", "--partition", "3"], 2, stdin=b"x\n", err_re=r"partitions 0\.\.2")

    # Consumer groups.  1000 keyed lines spread over 4 partitions; two runs
    # of one member each: the second resumes where the first committed.
    expect(["topic", "create", "gt", "--partitions", "4"], 0)
    lines = [f"line-{i}" for i in range(1000)]
    keyed = "".join(f"k{i}:{v}\n" for i, v in enumerate(lines)).encode()
    expect(["produce", "gt", "--key-sep", ":"], 0, stdin=keyed)
    out1 = expect(["consume", "gt", "--group", "g", "--offset", "earliest", "--max", "600"], 0)
    out2 = expect(["consume", "gt", "--group", "g", "--offset", "earliest", "--max", "400"], 0)
    got1, got2 = out1.decode().splitlines(), out2.decode().splitlines()
    check((len(got1), len(got2)) == (600, 400), f"--group --max: {len(got1)} + {len(got2)} lines")
    check(sorted(got1 + got2) == sorted(lines),
          f"--group, --max 600 then --max 400: not the input once "
          f"({len(set(got1) & set(got2))} lines twice)")
    expect(["group", "list"], 0, out_re=r"^g\tEmpty$")
    expect(["group", "list", "--state", "stable"], 0, out_re=r"\A\Z")

    def offsets(group):
        out = expect(["group", "describe", group], 0, out_re=rf"^group {group}\tstate ")
        return {int(p): (c, int(e), lag) for p, c, e, lag in re.findall(
            r"^  gt/(\d+)\tcommitted (\S+)\tlog-end (\S+)\tlag (\S+)\tmember ", out.decode(),
            re.M)}

    before = offsets("g")
    check(sorted(before) == [0, 1, 2, 3] and all(lag == "0" for _, _, lag in before.values())
          and sum(int(c) for c, _, _ in before.values()) == 1000,
          f"group describe g after consuming everything: {before}")
    out = expect(["group", "reset", "g", "--topic", "gt", "--to-earliest"], 0,
                 out_re=r"^dry run: nothing changed \(add --execute")
    plan = re.findall(r"^gt/(\d)\t(\d+) -> (\d+)$", out.decode(), re.M)
    check(sorted((int(p), int(a), int(b)) for p, a, b in plan)
          == sorted((p, int(c), 0) for p, (c, _, _) in before.items()), f"reset plan: {out!r}")
    check(offsets("g") == before, "a dry run changed the offsets")
    expect(["group", "reset", "g", "--topic", "gt", "--to-earliest", "--execute"], 0,
           out_re=r"^reset group g: 4 partitions$")
    check(all(c == "0" for c, _, _ in offsets("g").values()), "reset --execute to earliest")
    out = expect(["consume", "gt", "--group", "g", "--max", "1000"], 0)
    check(sorted(out.decode().splitlines()) == sorted(lines), "after the reset: not everything again")
    expect(["group", "reset", "g", "--topic", "gt", "--partition", "2", "--to-offset", "1",
            "--execute"], 0, out_re=r"^gt/2\t\d+ -> 1$")
    expect(["group", "reset", "g", "--topic", "gt", "--to-datetime", "2020-01-01T00:00:00Z"], 0,
           out_re=r"^gt/0\t\d+ -> 0$")

    # A running member: reset and delete are refused; SIGINT commits, leaves, exits 0.
    env = dict(os.environ, RMQ_BOOTSTRAP=BOOT)
    member = subprocess.Popen([args.rmq, "consume", "gt", "--group", "g"], env=env,
                              stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    deadline = time.time() + 10
    while time.time() < deadline and not re.search(
            rb"state Stable", rmq("group", "describe", "g")[1]):
        time.sleep(0.05)
    expect(["group", "reset", "g", "--topic", "gt", "--to-latest", "--execute"], 1,
           err_re=r"^rmq: group 'g' has active members: stop the group's consumers first")
    expect(["group", "delete", "g"], 1, err_re=r"stop the group's consumers first")
    member.send_signal(signal.SIGINT)
    try:
        rc = member.wait(timeout=10)
    except subprocess.TimeoutExpired:
        member.kill()
        rc = "hung"
    check(rc == 0, f"rmq consume --group after SIGINT: exit {rc} ({member.stderr.read()!r})")
    expect(["group", "list", "--state", "Empty"], 0, out_re=r"^g\tEmpty$")

    # Two members at once split a fresh topic's partitions: every record once.
    expect(["topic", "create", "gt2", "--partitions", "4"], 0)
    pair = [subprocess.Popen([args.rmq, "consume", "gt2", "--group", "g2", "--offset", "earliest",
                              "--timeout", "3s", "--session-timeout", "1s"], env=env,
                             stdout=subprocess.PIPE, stderr=subprocess.PIPE) for _ in range(2)]
    deadline = time.time() + 10
    while time.time() < deadline and len(re.findall(
            rb"partitions gt2/\d,gt2/\d(\t|$)", rmq("group", "describe", "g2")[1], re.M)) != 2:
        time.sleep(0.05)
    expect(["produce", "gt2", "--key-sep", ":"], 0, stdin=keyed)
    outs = []
    for p in pair:
        try:
            o, e = p.communicate(timeout=30)
        except subprocess.TimeoutExpired:
            p.kill()
            o, e = p.communicate()
        check(p.returncode == 0, f"concurrent member: exit {p.returncode} ({e!r})")
        outs.append(o.decode().splitlines())
    both = outs[0] + outs[1]
    check(sorted(both) == sorted(lines),
          f"two members: {len(outs[0])} + {len(outs[1])} lines, {len(both) - len(set(both))} twice, "
          f"{len(set(lines) - set(both))} missing")
    check(all(outs), f"two members: one got nothing ({len(outs[0])} + {len(outs[1])})")

    # A member killed with SIGKILL mid-stream: its session times out, the
    # survivor takes its partitions over from the group's commits, and
    # every record is printed by one of them (at least once: the victim's
    # uncommitted tail comes again).
    expect(["topic", "create", "gt3", "--partitions", "4"], 0)
    pair = [subprocess.Popen([args.rmq, "consume", "gt3", "--group", "g3", "--offset", "earliest",
                              "--session-timeout", "1s", "--commit-interval", "100ms"], env=env,
                             stdout=subprocess.PIPE, stderr=subprocess.PIPE) for _ in range(2)]

    def owned():
        return re.findall(rb"partitions ((?:gt3/\d,?)+)", rmq("group", "describe", "g3")[1])

    deadline = time.time() + 10
    while time.time() < deadline and len(owned()) != 2:
        time.sleep(0.05)
    check(len(owned()) == 2, f"two members of g3: {owned()}")
    half = keyed.splitlines(keepends=True)
    expect(["produce", "gt3", "--key-sep", ":"], 0, stdin=b"".join(half[:500]))
    time.sleep(0.5)  # both print and commit some
    victim, survivor = pair
    s_out = []
    reader = threading.Thread(target=lambda: s_out.extend(
        l.decode().rstrip("\n") for l in survivor.stdout), daemon=True)
    reader.start()
    victim.kill()
    v_out = victim.communicate()[0].decode().splitlines()
    deadline = time.time() + 15
    while time.time() < deadline and owned() != [b"gt3/0,gt3/1,gt3/2,gt3/3"]:
        time.sleep(0.1)
    check(owned() == [b"gt3/0,gt3/1,gt3/2,gt3/3"],
          f"after SIGKILL of a member the survivor owns every partition: {owned()}")
    expect(["produce", "gt3", "--key-sep", ":"], 0, stdin=b"".join(half[500:]))
    deadline = time.time() + 15
    while time.time() < deadline and not set(lines) <= set(v_out) | set(s_out):
        time.sleep(0.1)
    survivor.send_signal(signal.SIGINT)
    s_err = survivor.communicate(timeout=30)[1]
    reader.join(5)
    check(survivor.returncode == 0, f"survivor: exit {survivor.returncode} ({s_err!r})")
    check(set(v_out) | set(s_out) == set(lines),
          f"killed member: {len(set(lines) - set(v_out) - set(s_out))} records never printed")
    check(set(lines[500:]) <= set(s_out), "the survivor printed every record produced after the kill")
    check(v_out, "the killed member had printed records before it was killed")

    expect(["group", "delete", "g", "g2", "g3"], 0,
           out_re=r"^deleted group g\ndeleted group g2\ndeleted group g3$")
    expect(["group", "describe", "g"], 1,
           err_re=r"^rmq: no such group 'g' \(see the groups with: rmq group list\)$")
    expect(["group", "delete", "g"], 1, err_re=r"no such group 'g'")
    expect(["topic", "delete", "gt"], 0)
    expect(["topic", "delete", "gt2"], 0)
    expect(["topic", "delete", "gt3"], 0)

    # Cluster, health, delete.
    expect(["cluster"], 0, out_re=r"(?s)^cluster \S+\ttopics \d+.*\tmetadata version \d+\n"
                                  r"controller\tleader 1\tepoch \d+\tvoters 1\n"
                                  r"brokers\n  1\t127\.0\.0\.1:\d+\tBROKER_RUNNING\tepoch 1\track -.*\tvoter.*"
                                  r"topics\n.* multi\tpartitions 3")
    # More replicas than running brokers are refused, saying so.
    expect(["topic", "create", "rf2", "--replication-factor", "2"], 1,
           err_re=r"INVALID_REPLICATION_FACTOR.*exceeds the 1 running brokers")
    # Each partition as its leader sees it (GetISR).
    expect(["partition", "status", "multi"], 0,
           out_re=r"(?s)^topic multi\tpartitions 3\n  partition 0\tleader 1\t.*\tisr 1\n"
                  r"    replica 1\tend \d+\tlag 0\tin sync\n.*  partition 2\t")
    expect(["partition", "status", "multi", "--partition", "7"], 2,
           err_re=r"--partition 7: topic 'multi' has partitions 0..2")
    # One node, one replica each: the preferred replica leads already, and
    # no other broker can take a leadership.
    expect(["partition", "elect-leaders", "multi", "--partition", "1"], 0,
           out_re=r"^multi-1\tleader 1\tepoch \d+\tELECTION_NOT_NEEDED: ")
    expect(["partition", "elect-leaders"], 0, out_re=r"^no partition needed an election\n$")
    expect(["partition", "elect-leaders", "--unclean"], 2, err_re=r"need a TOPIC")
    expect(["partition", "transfer", "multi", "--to", "2"], 1,
           err_re=r"REPLICA_NOT_AVAILABLE.*broker 2 is not a replica")
    expect(["partition", "transfer", "multi"], 1, err_re=r"NOT_ENOUGH_REPLICAS")
    # The replicas this broker hosts (GetPartitionState), and moves
    # (ReassignPartitions, streamed): to where a partition is, at once;
    # refusals exit 1 with the reason.
    expect(["partition", "state", "multi", "--partition", "0"], 0,
           out_re=r"^broker 1\n  multi-0\tLEADER\tONLINE\tleader 1\tepoch \d+\treplicas 1\tisr 1"
                  r"\tstart 0\tend [1-9]\d*\thw [1-9]\d*\tbytes [1-9]\d*\n$")
    expect(["partition", "state"], 0, out_re=r"(?s)^broker 1\n.*  multi-2\tLEADER")
    expect(["partition", "reassign", "multi", "--partition", "1", "--replicas", "1"], 0,
           out_re=r"^multi-1\tCOMPLETED\treplicas 1\n$")
    expect(["partition", "reassign", "multi", "--partition", "1", "--replicas", "1,7"], 1,
           out_re=r"^multi-1\tFAILED\t.*BROKER_NOT_AVAILABLE: broker 7 is not registered")
    expect(["partition", "reassign", "multi", "--partition", "1", "--cancel"], 1,
           out_re=r"^multi-1\tFAILED\t.*NO_REASSIGNMENT_IN_PROGRESS")
    expect(["partition", "reassign", "multi"], 2, err_re=r"give --replicas or --cancel")
    expect(["health"], 0, out_re=r"(?s)^grpc\.health\.v1\tSERVING\nbroker 1\tHEALTH_STATUS_SERVING")
    # Metrics: per shard by default, summed with --total; the records the
    # tests above produced are counted.
    expect(["metrics", "rmq_fetch_bytes"], 0,
           out_re=r'^rmq_fetch_bytes_total\{shard="0"\} \d+\nrmq_fetch_bytes_total\{shard="1"\} \d+\n$')
    out = expect(["metrics", "rmq_produce_records", "--total"], 0,
                 out_re=r"^rmq_produce_records_total \d+\n$")
    check(int(out.split()[1]) > 0, f"records produced so far: {out!r}")
    # A histogram: its mean, count and the buckets of its quantiles; the
    # total merges the shards' buckets.
    q = r" count=(\d+) p50<=\d+ p90<=\d+ p99<=\d+ p99\.9<=\d+ max<=\d+\n"
    out = expect(["metrics", "rmq_produce_latency"], 0,
                 out_re=r'^rmq_produce_latency_us\{shard="0"\} [\d.e+-]+' + q +
                        r'rmq_produce_latency_us\{shard="1"\} [\d.e+-]+' + q + "$")
    per_shard = [int(x) for x in re.findall(rb"count=(\d+)", out)]
    out = expect(["metrics", "rmq_produce_latency", "--total"], 0,
                 out_re=r"^rmq_produce_latency_us [\d.e+-]+" + q + "$")
    total = int(re.search(rb"count=(\d+)", out).group(1))
    check(total == sum(per_shard) and total > 0, f"total {total} = shards {per_shard}")
    p = [int(x) for x in re.findall(rb"<=(\d+)", out)]
    check(p == sorted(p), f"quantiles in order: {out!r}")
    expect(["metrics", "nosuch_"], 0, out_re=r"^$", err_re=r"no metric starts with 'nosuch_'")
    # Every command with --bootstrap before it, RMQ_BOOTSTRAP dead.
    pre = ["--bootstrap", BOOT]
    expect([*pre, "topic", "create", "pre", "--partitions", "2"], 0, env_extra=dead,
           out_re=r"created topic pre \(2 partitions\)")
    expect([*pre, "topic", "alter", "pre", "--config", "retention.ms=60000"], 0, env_extra=dead)
    expect([*pre, "topic", "describe", "pre"], 0, env_extra=dead, out_re=r"retention\.ms=60000")
    expect([*pre, "produce", "pre", "--partition", "1"], 0, env_extra=dead, stdin=b"a\nb\n")
    expect([*pre, "consume", "pre", "--partition", "1", "--offset", "earliest", "--max", "2"], 0,
           env_extra=dead, out_re=r"\Aa\nb\n\Z")
    expect([*pre, "consume", "pre", "--group", "gpre", "--offset", "earliest", "--max", "2"], 0,
           env_extra=dead, out_re=r"\Aa\nb\n\Z")
    expect([*pre, "group", "list"], 0, env_extra=dead, out_re=r"^gpre\tEmpty$")
    expect([*pre, "group", "describe", "gpre"], 0, env_extra=dead, out_re=r"^group gpre\t")
    expect([*pre, "group", "reset", "gpre", "--topic", "pre", "--to-earliest"], 0, env_extra=dead)
    expect([*pre, "group", "delete", "gpre"], 0, env_extra=dead, out_re=r"^deleted group gpre$")
    expect([*pre, "cluster"], 0, env_extra=dead, out_re=r"^cluster ")
    expect([*pre, "health"], 0, env_extra=dead, out_re=r"^grpc\.health\.v1\tSERVING")
    expect([*pre, "metrics", "rmq_produce_records", "--total"], 0, env_extra=dead)
    expect([*pre, "topic", "delete", "pre"], 0, env_extra=dead, out_re=r"deleted topic pre")
    expect(["topic", "delete", "multi"], 0, out_re=r"deleted topic multi")
    out = expect(["topic", "list"], 0)
    check(out == b"t\n", f"topic list after delete: {out!r}")
finally:
    rmqd.send_signal(signal.SIGTERM)
    try:
        rmqd.wait(timeout=10)
    except subprocess.TimeoutExpired:
        rmqd.kill()
        rmqd.wait()
    # With the node stopped, health cannot connect: exit 1, one line.
    if "BOOT" in globals():
        rc, _, err = rmq("health")
        check(rc == 1 and "cannot connect" in err, f"health with rmqd stopped: {rc} {err!r}")
    if not failures:
        shutil.rmtree(tmp, ignore_errors=True)

if failures:
    print(f"{len(failures)} check(s) failed; rmqd's log is in {tmp}", file=sys.stderr)
    sys.exit(1)
print("rmq: all checks passed")
