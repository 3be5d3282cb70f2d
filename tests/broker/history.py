#!/usr/bin/python3
# SPDX-License-Identifier: Apache-2.0
"""A history checker for a replicated log, in Jepsen's vocabulary (its
Kafka workload: jepsen.tests.kafka).

A history is what clients did and saw, one event a JSON line:

  f       fields                                  meaning
  send    value tp acks outcome [offset] [error]  a produce of one record;
                                                  outcome "ok" (acknowledged
                                                  at offset), or "error",
                                                  "timeout", "unknown": not
                                                  acknowledged, perhaps stored
  poll    reader tp offset value                  a consumer read this record
                                                  (in the order it read them)
  final   reader tp offset value                  the read-back after the run:
                                                  a whole replica's log (or
                                                  the leader's, below its
                                                  high watermark), one event
                                                  per record, each reader
                                                  reading the partition whole

Every value is sent once (a producer never retries a value: a retry gets a
new one), so a value names one send.  acks is "all", "majority" or
"leader".

What it reports:

  lost-write        an acknowledged value missing from a final read of its
                    partition (named: which readers lack it).  For acks
                    "leader" this is allowed (the leader acknowledged what it
                    alone had) and counted apart, never an anomaly.
  duplicate         one value at two offsets (reads and acknowledgements).
  inconsistent      one offset of a partition with two values, across polls,
                    final reads of any replica, and the offsets acks "all"
                    and "majority" acknowledged.
  nonmonotonic      a reader's polls of a partition not in increasing offset
                    order.
  skip              a reader's polls jumping over an offset that a final read
                    holds (offsets are dense: one record, one offset).
  phantom           a value read that nobody sent.
  unseen            a send not acknowledged and never read: allowed, counted
                    (so is one not acknowledged but read: "indeterminate").

    /usr/bin/python3 tests/broker/history.py HISTORY.jsonl

prints the report and exits 1 when it found an anomaly.
"""
import collections
import json
import sys

ACKS = ("all", "majority", "leader")
SAFE = ("all", "majority")  # the levels that must lose nothing
ANOMALIES = ("lost", "duplicate", "inconsistent", "nonmonotonic", "skip", "phantom")


class History:
    def __init__(self):
        self.events = []

    def send(self, value, tp, acks, outcome, offset=None, error="", **more):
        """more: what else helps a reader of the history (the broker that
        answered, the times); the checker ignores it."""
        assert acks in ACKS, acks
        assert outcome in ("ok", "error", "timeout", "unknown"), outcome
        assert outcome != "ok" or offset is not None, "an ok send has an offset"
        self.events.append({"f": "send", "value": value, "tp": tp, "acks": acks,
                            "outcome": outcome, "offset": offset, "error": error, **more})

    def poll(self, reader, tp, offset, value):
        self.events.append({"f": "poll", "reader": reader, "tp": tp, "offset": offset,
                            "value": value})

    def final(self, reader, tp, offset, value):
        self.events.append({"f": "final", "reader": reader, "tp": tp, "offset": offset,
                            "value": value})

    def final_read(self, reader, tp):
        """Declares a final read of tp by reader, even an empty one (a
        replica that holds nothing must count as a reader that lacks every
        value)."""
        self.events.append({"f": "final", "reader": reader, "tp": tp, "offset": None,
                            "value": None})

    def dump(self, path):
        with open(path, "w") as f:
            for e in self.events:
                f.write(json.dumps(e, sort_keys=True) + "\n")

    @classmethod
    def load(cls, path):
        h = cls()
        with open(path) as f:
            h.events = [json.loads(line) for line in f if line.strip()]
        return h


class Report:
    def __init__(self):
        self.lost = []          # (value, tp, acks, offset, [readers lacking it])
        self.lost_leader = []   # the same, acks "leader": allowed
        self.duplicate = []     # (value, [(tp, offset)])
        self.inconsistent = []  # (tp, offset, {value: [sources]})
        self.nonmonotonic = []  # (reader, tp, previous offset, offset)
        self.skip = []          # (reader, tp, previous offset, offset, [missed offsets])
        self.phantom = []       # (value, tp, offset, source)
        self.unseen = 0
        self.indeterminate = 0  # not acknowledged, but read
        self.sends = collections.Counter()  # (acks, outcome) -> count
        self.finals = {}        # tp -> {reader: records}

    def anomalies(self):
        """{kind: count} of what must not happen, zeros left out."""
        got = {k: len(getattr(self, k)) for k in ANOMALIES}
        return {k: v for k, v in got.items() if v}

    def valid(self):
        return not self.anomalies()

    def summary(self, limit=10):
        out = []
        for acks in ACKS:
            n = {o: self.sends[(acks, o)] for o in ("ok", "error", "timeout", "unknown")}
            if sum(n.values()):
                out.append(f"acks {acks}: {n['ok']} acknowledged, {n['error']} errors, "
                           f"{n['timeout']} timeouts, {n['unknown']} unknown")
        for tp, readers in sorted(self.finals.items()):
            out.append(f"final {tp}: " + ", ".join(f"{r} {n}" for r, n in sorted(readers.items())))
        nreaders = {tp: len(rs) for tp, rs in self.finals.items()}
        everywhere = sum(len(x[4]) == nreaders.get(x[1]) for x in self.lost)
        out.append(f"lost (acks all/majority): {len(self.lost)} ({everywhere} from every final "
                   f"read, {len(self.lost) - everywhere} from some replicas only); lost (acks "
                   f"leader, allowed): {len(self.lost_leader)}; unseen: {self.unseen}; "
                   f"indeterminate read: {self.indeterminate}")
        for kind in ANOMALIES:
            items = getattr(self, kind)
            if kind != "lost" and not items:
                continue
            if kind != "lost":
                out.append(f"{kind}: {len(items)}")
            for it in items[:limit]:
                out.append(f"  {kind} {it}")
            if len(items) > limit:
                out.append(f"  ... {len(items) - limit} more")
        for it in self.lost_leader[:limit]:
            out.append(f"  lost (acks leader) {it}")
        out.append("VALID" if self.valid() else "INVALID: " + ", ".join(
            f"{k} {v}" for k, v in self.anomalies().items()))
        return "\n".join(out)


def check(h):
    """The Report of History h."""
    rep = Report()
    sends = {}
    for e in h.events:
        if e["f"] == "send":
            assert e["value"] not in sends, f"value {e['value']!r} sent twice: not a history"
            sends[e["value"]] = e
            rep.sends[(e["acks"], e["outcome"])] += 1

    # Every (tp, offset, value) seen, with where it was seen.
    at = collections.defaultdict(lambda: collections.defaultdict(list))
    where = collections.defaultdict(set)   # value -> {(tp, offset)}
    read = set()                           # values read by anyone
    finals = collections.defaultdict(lambda: collections.defaultdict(set))  # tp -> reader -> values
    finals_at = collections.defaultdict(lambda: collections.defaultdict(set))  # tp -> reader -> offsets
    polls = collections.defaultdict(list)  # (reader, tp) -> [offset]

    for e in h.events:
        f = e["f"]
        if f == "send":
            if e["outcome"] == "ok" and e["acks"] in SAFE:
                at[e["tp"]][e["offset"]].append(("ack", e["value"]))
                where[e["value"]].add((e["tp"], e["offset"]))
            continue
        if f == "final" and e["offset"] is None:
            finals[e["tp"]][e["reader"]]  # an empty read is still a read
            continue
        v, tp, off = e["value"], e["tp"], e["offset"]
        source = f"{f}:{e['reader']}"
        at[tp][off].append((source, v))
        where[v].add((tp, off))
        read.add(v)
        if v not in sends:
            rep.phantom.append((v, tp, off, source))
        elif sends[v]["tp"] != tp:
            rep.phantom.append((v, tp, off, f"{source} (sent to {sends[v]['tp']})"))
        if f == "poll":
            polls[(e["reader"], tp)].append(off)
        else:
            finals[tp][e["reader"]].add(v)
            finals_at[tp][e["reader"]].add(off)

    for tp in sorted(at):
        for off in sorted(at[tp]):
            vals = collections.defaultdict(list)
            for source, v in at[tp][off]:
                vals[v].append(source)
            if len(vals) > 1:
                rep.inconsistent.append((tp, off, {v: sorted(set(s)) for v, s in vals.items()}))
    for v in sorted(where):
        if len(where[v]) > 1:
            rep.duplicate.append((v, sorted(where[v])))

    for (reader, tp), offs in sorted(polls.items()):
        dense = set().union(*finals_at[tp].values()) if finals_at[tp] else set()
        for prev, off in zip(offs, offs[1:]):
            if off <= prev:
                rep.nonmonotonic.append((reader, tp, prev, off))
            elif off > prev + 1:
                missed = [o for o in range(prev + 1, off) if o in dense]
                if missed:
                    rep.skip.append((reader, tp, prev, off, missed))

    for v, s in sends.items():
        if s["outcome"] != "ok":
            if v in read:
                rep.indeterminate += 1
            else:
                rep.unseen += 1
            continue
        readers = finals.get(s["tp"])
        if not readers:
            raise ValueError(f"no final read of {s['tp']}: cannot tell what was lost")
        lacking = sorted(r for r, vals in readers.items() if v not in vals)
        if lacking:
            item = (v, s["tp"], s["acks"], s["offset"], lacking)
            (rep.lost_leader if s["acks"] == "leader" else rep.lost).append(item)
    rep.finals = {tp: {r: len(vals) for r, vals in rs.items()} for tp, rs in finals.items()}
    # Lost from every final read first: the worst, and the fewest.
    rep.lost.sort(key=lambda x: (len(x[4]) != len(finals[x[1]]), x[1], x[3]))
    return rep


def main(argv):
    if len(argv) != 2:
        print("usage: history.py HISTORY.jsonl", file=sys.stderr)
        return 2
    rep = check(History.load(argv[1]))
    print(rep.summary())
    return 0 if rep.valid() else 1


if __name__ == "__main__":
    sys.exit(main(sys.argv))
