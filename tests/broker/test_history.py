#!/usr/bin/python3
# SPDX-License-Identifier: Apache-2.0
"""The history checker (history.py) on synthetic histories: a clean one is
valid, and each anomaly planted in it is found, named and counted, while
what is allowed (acks leader losses, unacknowledged values never read) is
counted and not reported.  Also the JSON-lines file round trip and the
command line's exit status.

    /usr/bin/python3 tests/broker/test_history.py

Ends with "N passed, N failed, 0 skipped".
"""
import os
import subprocess
import sys
import tempfile
import traceback

sys.dont_write_bytecode = True
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import history  # noqa: E402

TP = "h-0"


def clean(n=6, readers=("r1", "r2", "r3")):
    """n values acknowledged at offsets 0..n-1 (alternating acks all and
    majority), a consumer that polled them all, and every replica's final
    read holding them."""
    h = history.History()
    for i in range(n):
        h.send(f"v{i}", TP, "all" if i % 2 else "majority", "ok", offset=i)
    for i in range(n):
        h.poll("c1", TP, i, f"v{i}")
    for r in readers:
        for i in range(n):
            h.final(r, TP, i, f"v{i}")
    return h


def only(rep, kind, n=1):
    got = rep.anomalies()
    assert got == {kind: n}, f"expected {kind} x{n}, got {got}\n{rep.summary()}"


TESTS = []


def test(fn):
    TESTS.append(fn)
    return fn


@test
def clean_history_is_valid():
    rep = history.check(clean())
    assert rep.valid(), rep.summary()
    assert rep.sends[("all", "ok")] == 3 and rep.sends[("majority", "ok")] == 3, rep.sends
    assert rep.finals == {TP: {"r1": 6, "r2": 6, "r3": 6}}, rep.finals
    assert "VALID" in rep.summary()


@test
def lost_write_missing_everywhere():
    h = clean()
    h.send("late", TP, "all", "ok", offset=6)  # acknowledged, read by no one
    rep = history.check(h)
    only(rep, "lost")
    v, tp, acks, off, lacking = rep.lost[0]
    assert (v, tp, acks, off, lacking) == ("late", TP, "all", 6, ["r1", "r2", "r3"]), rep.lost


@test
def lost_write_missing_on_one_replica():
    h = history.History()
    h.send("a", TP, "majority", "ok", offset=0)
    h.final("r1", TP, 0, "a")
    h.final("r2", TP, 0, "a")
    h.final_read("r3", TP)  # r3 holds nothing at all
    rep = history.check(h)
    only(rep, "lost")
    assert rep.lost[0][4] == ["r3"], rep.lost


@test
def leader_acks_lost_are_counted_not_anomalies():
    h = clean()
    # acks leader at offset 6 by a leader that died; its successor wrote
    # "w" there: the ack is not an observation of offset 6.
    h.send("gone", TP, "leader", "ok", offset=6)
    h.send("w", TP, "all", "ok", offset=6)
    for r in ("r1", "r2", "r3"):
        h.final(r, TP, 6, "w")
    rep = history.check(h)
    assert rep.valid(), rep.summary()
    assert [x[0] for x in rep.lost_leader] == ["gone"], rep.lost_leader


@test
def duplicate_value_at_two_offsets():
    h = clean()
    for r in ("r1", "r2", "r3"):
        h.final(r, TP, 6, "v3")  # v3 again, after v5
    rep = history.check(h)
    only(rep, "duplicate")
    assert rep.duplicate[0] == ("v3", [(TP, 3), (TP, 6)]), rep.duplicate


@test
def inconsistent_offsets_across_replicas():
    h = clean(readers=("r1", "r2"))
    for i in range(6):
        h.final("r3", TP, i, f"v{i}" if i != 4 else "x")  # r3 diverged at 4
    h.send("x", TP, "leader", "error", error="NOT_LEADER")
    rep = history.check(h)
    # r3 lacks v4: that is a lost write as well.
    assert rep.anomalies() == {"inconsistent": 1, "lost": 1}, rep.summary()
    tp, off, vals = rep.inconsistent[0]
    assert (tp, off) == (TP, 4), rep.inconsistent
    assert vals["x"] == ["final:r3"], vals
    assert "ack" in vals["v4"] and "poll:c1" in vals["v4"], vals
    assert rep.lost[0][0] == "v4" and rep.lost[0][4] == ["r3"], rep.lost
    # An acknowledgement at an offset another value holds.
    h2 = clean(readers=("r1", "r2"))
    for i in range(6):
        h2.final("r3", TP, i, f"v{i}")
    h2.send("y", TP, "all", "ok", offset=2)  # acknowledged at an offset v2 holds
    h2.final("r1", TP, 6, "y")
    h2.final("r2", TP, 6, "y")
    h2.final("r3", TP, 6, "y")
    rep = history.check(h2)
    assert set(rep.anomalies()) == {"inconsistent", "duplicate"}, rep.summary()
    assert rep.inconsistent[0][:2] == (TP, 2), rep.inconsistent


@test
def ack_offset_against_read_offset():
    h = history.History()
    h.send("a", TP, "all", "ok", offset=5)
    h.final("r1", TP, 5, "b")
    h.final("r1", TP, 6, "a")
    h.send("b", TP, "all", "timeout")
    rep = history.check(h)
    assert set(rep.anomalies()) == {"inconsistent", "duplicate"}, rep.summary()


@test
def nonmonotonic_poll():
    h = clean()
    h.poll("c1", TP, 2, "v2")  # c1 went back
    rep = history.check(h)
    only(rep, "nonmonotonic")
    assert rep.nonmonotonic[0] == ("c1", TP, 5, 2), rep.nonmonotonic


@test
def poll_skipping_a_record():
    h = history.History()
    for i in range(4):
        h.send(f"v{i}", TP, "all", "ok", offset=i)
        h.final("r1", TP, i, f"v{i}")
    h.poll("c1", TP, 0, "v0")
    h.poll("c1", TP, 3, "v3")  # 1 and 2 exist: skipped
    rep = history.check(h)
    only(rep, "skip")
    assert rep.skip[0][4] == [1, 2], rep.skip
    # A gap the final reads do not hold either (nothing there) is no skip.
    h = history.History()
    h.send("a", TP, "all", "ok", offset=0)
    h.send("b", TP, "all", "ok", offset=3)
    h.final("r1", TP, 0, "a")
    h.final("r1", TP, 3, "b")
    h.poll("c1", TP, 0, "a")
    h.poll("c1", TP, 3, "b")
    assert history.check(h).valid()


@test
def phantom_value():
    h = clean()
    h.poll("c1", TP, 6, "never-sent")
    rep = history.check(h)
    only(rep, "phantom")
    h = clean()
    h.final("r1", "h-1", 0, "v0")  # v0 belongs to h-0
    rep = history.check(h)
    assert "phantom" in rep.anomalies(), rep.summary()


@test
def unacknowledged_values_are_counted():
    h = clean()
    h.send("t1", TP, "all", "timeout")
    h.send("t2", TP, "majority", "unknown")
    h.send("t3", TP, "all", "error", error="NOT_ENOUGH_REPLICAS_AFTER_APPEND")
    for r in ("r1", "r2", "r3"):
        h.final(r, TP, 6, "t3")  # stored after all: indeterminate, fine
    rep = history.check(h)
    assert rep.valid(), rep.summary()
    assert (rep.unseen, rep.indeterminate) == (2, 1), (rep.unseen, rep.indeterminate)


@test
def no_final_read_is_an_error():
    h = history.History()
    h.send("a", TP, "all", "ok", offset=0)
    try:
        history.check(h)
    except ValueError as e:
        assert "no final read" in str(e), e
    else:
        raise AssertionError("a history without a final read was checked")


@test
def file_round_trip_and_exit_status():
    with tempfile.TemporaryDirectory() as d:
        good, bad = os.path.join(d, "good.jsonl"), os.path.join(d, "bad.jsonl")
        h = clean()
        h.dump(good)
        assert history.History.load(good).events == h.events
        h.send("late", TP, "all", "ok", offset=6)
        h.dump(bad)
        me = os.path.join(os.path.dirname(os.path.abspath(__file__)), "history.py")
        r = subprocess.run([sys.executable, me, good], capture_output=True, text=True)
        assert r.returncode == 0 and "VALID" in r.stdout, r
        r = subprocess.run([sys.executable, me, bad], capture_output=True, text=True)
        assert r.returncode == 1 and "INVALID: lost 1" in r.stdout, r


def main():
    passed = failed = 0
    for fn in TESTS:
        try:
            fn()
            passed += 1
            print(f"PASS {fn.__name__}", flush=True)
        except Exception:  # noqa: BLE001
            failed += 1
            print(f"FAIL {fn.__name__}", flush=True)
            traceback.print_exc()
    print(f"{passed} passed, {failed} failed, 0 skipped")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
