#!/usr/bin/python3
# SPDX-License-Identifier: Apache-2.0
"""Users and ACLs at the cluster limits on three rmqd nodes: 10 x 1000
UpsertUsers, 10 x 1000 CreateAcls, the 10001st of each refused, every node
listing 10000/10000, the controller directory size, and every node killed
and restarted with them.  Run from the repository top after a release build:

    /usr/bin/python3 bench/acl_scale.py
"""
import os, sys, tempfile, time, pathlib, shutil
sys.path.insert(0, "tests/broker")
import test_cluster as tc, test_node as tn
from test_security import verifier, binding, create_acls, upsert, call, state_of
tmp = tempfile.mkdtemp(prefix="rmq-sec-scale-")
tn.load_protos(pathlib.Path("proto").resolve(), pathlib.Path(tmp) / "py")
cl = tc.Cluster(os.path.abspath("build/release/rmqd"), os.path.join(tmp, "a"), False, nodes=3, voters=3)
try:
    for i in range(3): cl.start(i)
    li, _ = cl.leader()
    v = verifier("pw")
    t0 = time.monotonic()
    for k in range(10):
        r = upsert(cl, li, [(f"user{k*1000+j:05d}", v) for j in range(1000)])
        assert r.error_code == 0 and all(x.error_code == 0 for x in r.results), r.results[0]
    t1 = time.monotonic()
    for k in range(10):
        r = create_acls(cl, li, [binding(f"User:user{k*1000+j:05d}", "TOPIC", f"topic-{j}", "READ") for j in range(1000)])
        assert r.error_code == 0 and all(x.error_code == 0 for x in r.results), r.results[0]
    t2 = time.monotonic()
    r = upsert(cl, li, [("one-more", v)])
    print("10001st user:", r.results[0].error_code, r.results[0].error_message)
    r = create_acls(cl, li, [binding("User:x", "TOPIC", "y", "READ")])
    print("10001st acl:", r.results[0].error_code, r.results[0].error_message)
    print(f"10k users in {t1-t0:.2f}s, 10k acls in {t2-t1:.2f}s")
    for i in range(3):
        u, a, q = state_of(cl, i)
        print("node", i+1, len(u), len(a))
    sz = [os.path.getsize(os.path.join(dp, f)) for dp, dn, fn in os.walk(os.path.join(tmp, "a", f"n{li+1}", "data", "controller")) for f in fn]
    print("controller dir bytes", sum(sz))
    for n in cl.nodes: n.kill()
    for i in range(3): cl.start(i)
    cl.leader()
    t3 = time.monotonic()
    while True:
        try:
            got = [state_of(cl, i) for i in range(3)]
            if all(len(g[0]) == 10000 and len(g[1]) == 10000 for g in got): break
        except Exception as e: pass
        time.sleep(0.1)
    print(f"after restart all nodes have 10k/10k ({time.monotonic()-t3:.2f}s)")
finally:
    cl.kill_all(); tn._kill_all(); shutil.rmtree(tmp, ignore_errors=True)
