#!/usr/bin/python3
# SPDX-License-Identifier: Apache-2.0
"""rmqd over TLS 1.3 (src/net/tls.c): real clients against one node.

A test CA, server and client certificates are made with `openssl` in a
temporary directory.  Checked:

- grpcio over ssl_channel_credentials: create, produce (small and
  3 MiB of large records), fetch; the Fetch answers over TLS are byte for byte
  the plaintext ones of the same node restarted without TLS on the same
  data (resident data over TLS, cold data in plaintext after the restart,
  and again the other way round);
- `openssl s_client -alpn h2`: TLS 1.3 and ALPN h2; a client offering no
  ALPN is refused with the no_application_protocol alert;
- refused cleanly, the node serving on: a client trusting another CA,
  plaintext HTTP/2 sent to the TLS port, TLS sent to a plaintext port;
- mutual TLS (--tls-client-ca): no client certificate, one from another
  CA and an expired one are refused; a good one is served;
- SIGHUP reloads the certificate: new connections see the new one while
  an open channel goes on;
- three nodes with --auth required whose brokers talk TLS to each other
  (replication and the controller, each asking the others for a client
  certificate, and sending tokens they sign themselves): a topic
  of replication factor 3 keeps its ISR whole and acks ALL is answered;
  the `rmq` CLI produces and consumes over TLS, and trusting another CA
  is refused.

    /usr/bin/python3 tests/broker/test_tls.py --rmqd build/release/rmqd \\
        --rmq build/release/rmq --proto-dir proto [-v]

Ends with "N passed, N failed, N skipped"; skips (with the reason) when
`openssl` is missing.  Nodes are stopped by PID on every path.
"""
import argparse
import os
import pathlib
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
import traceback

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import test_node as tn  # noqa: E402

import grpc  # noqa: E402

check, eq, ok = tn.check, tn.eq, tn.ok


def sh(*args, cwd):
    r = subprocess.run(args, cwd=cwd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                       timeout=60)
    check(r.returncode == 0, f"{' '.join(args)}: {r.stdout.decode(errors='replace')}")


def make_pki(d):
    """ca, other-ca; server (SAN 127.0.0.1, localhost), server2 (another
    subject, for the reload), client, client-expired (by ca), client-other
    (by other-ca)."""
    for ca in ("ca", "other-ca"):
        sh("openssl", "req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256",
           "-nodes", "-keyout", f"{ca}.key", "-out", f"{ca}.crt", "-days", "2",
           "-subj", f"/CN=rmq test {ca}", cwd=d)

    def leaf(name, cn, ext, days="2", ca="ca"):
        sh("openssl", "req", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256", "-nodes",
           "-keyout", f"{name}.key", "-out", f"{name}.csr", "-subj", f"/CN={cn}", cwd=d)
        (pathlib.Path(d) / f"{name}.ext").write_text(ext)
        sh("openssl", "x509", "-req", "-in", f"{name}.csr", "-CA", f"{ca}.crt", "-CAkey",
           f"{ca}.key", "-CAcreateserial", "-out", f"{name}.crt", "-days", days,
           "-extfile", f"{name}.ext", cwd=d)

    # Brokers present their certificate as clients too (to each other, under
    # --tls-client-ca): serverAuth and clientAuth.
    server_ext = ("subjectAltName=IP:127.0.0.1,DNS:localhost\n"
                  "extendedKeyUsage=serverAuth,clientAuth\n")
    leaf("server", "rmq-node", server_ext)
    leaf("server2", "rmq-node-renewed", server_ext)
    client_ext = "subjectAltName=DNS:alice.clients.test\nextendedKeyUsage=clientAuth\n"
    leaf("client", "alice", client_ext)
    leaf("client-other", "mallory", client_ext, ca="other-ca")
    # Expired: valid from two days ago to yesterday (x509 -days takes no
    # negative count; the CA signs with explicit dates).
    sh("openssl", "req", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256", "-nodes",
       "-keyout", "client-expired.key", "-out", "client-expired.csr", "-subj", "/CN=old",
       cwd=d)
    p = pathlib.Path(d)
    (p / "db").mkdir()
    (p / "db/index.txt").write_text("")
    (p / "db/serial").write_text("1000\n")
    (p / "ca.cnf").write_text(
        "[ca]\ndefault_ca=c\n[c]\ndir=db\ndatabase=db/index.txt\nserial=db/serial\n"
        "new_certs_dir=db\ndefault_md=sha256\npolicy=p\nunique_subject=no\n"
        "[p]\ncommonName=supplied\n")
    sh("openssl", "ca", "-batch", "-config", "ca.cnf", "-cert", "ca.crt", "-keyfile", "ca.key",
       "-in", "client-expired.csr", "-out", "client-expired.crt",
       "-startdate", "20200101000000Z", "-enddate", "20200102000000Z", cwd=d)


def creds(d, ca="ca", client=None):
    p = pathlib.Path(d)
    kw = {"root_certificates": (p / f"{ca}.crt").read_bytes()}
    if client:
        kw["private_key"] = (p / f"{client}.key").read_bytes()
        kw["certificate_chain"] = (p / f"{client}.crt").read_bytes()
    return grpc.ssl_channel_credentials(**kw)


def tls_client(node, d, **kw):
    return tn.Client(node.addr, own_connection=True, creds=creds(d, **kw))


def refused(fn, what):
    try:
        fn()
    except grpc.RpcError as e:
        check(e.code() == grpc.StatusCode.UNAVAILABLE, f"{what}: {e.code()} {e.details()}")
        return
    raise AssertionError(f"{what}: served")


def topics(c):
    return ok(c.unary("/rustmq.controller.AdminService/ListTopics",
                      tn.A.ListTopicsRequest(version=tn.V()), tn.A.ListTopicsResponse, timeout=10),
              "ListTopics")


def s_client(node, d, *extra):
    r = subprocess.run(["openssl", "s_client", "-connect", node.addr, "-CAfile",
                        os.path.join(d, "ca.crt"), "-verify_return_error", *extra],
                       input=b"", stdout=subprocess.PIPE, stderr=subprocess.STDOUT, timeout=30)
    return r.returncode, r.stdout.decode(errors="replace")


def fetch_raw(c, topic, n):
    """The raw Fetch answers of a walk from offset 0 with 1 MiB answers."""
    out, off = [], 0
    while True:
        req = c.fetch_req([(topic, 0, off, 1 << 20)])
        raw = c.unary("/rustmq.client.ConsumerService/Fetch", req, tn._RawMsg).raw
        resp = tn.C.FetchResponse.FromString(raw)
        ok(resp.partitions[0], f"fetch {topic}@{off}")
        if not resp.partitions[0].batches:
            break
        out.append(raw)
        last = resp.partitions[0].batches[-1]
        off = last.base_offset + last.record_count
    check(off == n, f"{topic}: read to {off} of {n}")
    return out


def run(args, tmp, d):
    tls = ("--tls-cert", os.path.join(d, "server.crt"), "--tls-key", os.path.join(d, "server.key"))
    node = tn.Node(args.rmqd, os.path.join(tmp, "data"), tmp, args.verbose)
    node.start(tls)
    try:
        with tls_client(node, d) as c:
            c.create_topic("t", 1)
            small = tn.make_records(200, "small")
            ok(c.produce("t", 0, small[:100]), "produce over TLS")
            ok(c.produce("t", 0, small[100:]), "produce over TLS")
            # Multi-MiB: 16 records of 200 KiB (the test node's segments
            # are 256 KiB), read back in answers of 1 MiB.
            big = [tn.T.Record(key=b"k%d" % i, value=bytes([i]) * (200 << 10)) for i in range(16)]
            for r in big:
                ok(c.produce("t", 0, [r], timeout=60), "a 200 KiB record over TLS")
            got = [r.value for b, _ in c.fetch_all("t", 0) for r in b.records]
            eq(got, [r.value for r in small + big], "every record back over TLS")
            over_tls = fetch_raw(c, "t", 216)
        # openssl s_client: TLS 1.3 with ALPN h2; none offered: refused.
        rc, out = s_client(node, d, "-alpn", "h2")
        check(rc == 0 and "TLSv1.3" in out and "ALPN protocol: h2" in out,
              f"s_client -alpn h2:\n{out[-1500:]}")
        rc, out = s_client(node, d)
        check(rc != 0 and "no application protocol" in out,
              f"s_client without ALPN is refused with the alert:\n{out[-1500:]}")
        # Refused cleanly: another CA, plaintext HTTP/2 to the TLS port.
        refused(lambda: topics(tls_client(node, d, ca="other-ca")), "a client trusting another CA")
        with tn.Client(node.addr, own_connection=True) as plain:
            refused(lambda: topics(plain), "plaintext HTTP/2 to the TLS port")
        with tls_client(node, d) as c:
            topics(c)  # serves on
        # SIGHUP: new connections get the renewed certificate.
        shutil.copy(os.path.join(d, "server2.crt"), os.path.join(d, "server.crt"))
        shutil.copy(os.path.join(d, "server2.key"), os.path.join(d, "server.key"))
        with tls_client(node, d) as open_ch:
            topics(open_ch)
            os.kill(node.proc.pid, signal.SIGHUP)
            tn.wait_until(lambda: any("reloaded" in l for l in node.lines), 10, "the reload logged")
            rc, out = s_client(node, d, "-alpn", "h2")
            check(rc == 0 and "rmq-node-renewed" in out, f"the renewed certificate:\n{out[-1500:]}")
            topics(open_ch)  # the open channel goes on
        eq(node.stop(), 0, "exit status after SIGTERM")
        # The same data in plaintext: the same answers, byte for byte (cold
        # now: read from the disk after the restart).
        node.start()
        with tn.Client(node.addr, own_connection=True) as c:
            eq(fetch_raw(c, "t", 216), over_tls, "Fetch answers in plaintext and over TLS")
            # TLS to the plaintext port: refused, served on.
            refused(lambda: topics(tls_client(node, d)), "TLS to a plaintext port")
            topics(c)
        eq(node.stop(), 0, "exit status after SIGTERM")
        # And cold over TLS against resident plaintext.
        node.start(tls)
        with tls_client(node, d) as c:
            eq(fetch_raw(c, "t", 216), over_tls, "Fetch answers over TLS from the disk")
        eq(node.stop(), 0, "exit status after SIGTERM")

        # Mutual TLS.
        node.start((*tls, "--tls-client-ca", os.path.join(d, "ca.crt")))
        refused(lambda: topics(tls_client(node, d)), "mTLS: no client certificate")
        refused(lambda: topics(tls_client(node, d, client="client-other")),
                "mTLS: a client certificate from another CA")
        refused(lambda: topics(tls_client(node, d, client="client-expired")),
                "mTLS: an expired client certificate")
        with tls_client(node, d, client="client") as c:
            topics(c)
        eq(node.stop(), 0, "exit status after SIGTERM")
    finally:
        node.kill()


def run_cluster(args, tmp, d):
    """Three nodes whose brokers talk TLS to each other, each asking the
    others for a client certificate: a topic of replication factor 3 keeps
    its ISR whole, acks ALL is answered, the records read back; the `rmq`
    CLI over TLS."""
    import test_cluster as tc  # noqa: E402 (its helpers, with TLS clients)

    class TLSCluster(tc.Cluster):
        def client(self, i):
            return tn.Client(f"127.0.0.1:{self.ports[i]}", own_connection=True,
                             creds=creds(d, client="client"))

    pki = lambda f: os.path.join(d, f)  # noqa: E731
    # --auth required as well: brokers sign their own tokens for each
    # other; the client's certificate identity is its principal, a super
    # user here.
    secret = os.path.join(tmp, "token-secret")
    pathlib.Path(secret).write_bytes(os.urandom(32).hex().encode())
    cl = TLSCluster(args.rmqd, os.path.join(tmp, "cluster"), args.verbose,
                    ("--tls-cert", pki("server.crt"), "--tls-key", pki("server.key"),
                     "--tls-client-ca", pki("ca.crt"), "--tls-ca", pki("ca.crt"),
                     "--auth", "required", "--token-secret-file", secret,
                     "--super-users", "User:alice.clients.test",
                     "--broker-heartbeat", "100ms"),
                    nodes=3)
    try:
        li = tc.start_three(cl, [("sec", 2, 3)])
        tn.wait_until(lambda: all(lead and len(isr) == 3 for lead, _, isr in tc.isr(cl, li, "sec")),
                      20, "every partition of sec with three replicas in sync over TLS")
        for p, (lead, _, _) in enumerate(tc.isr(cl, li, "sec")):
            with cl.client(int(lead) - 1) as c:
                recs = tn.make_records(50, f"sec-{p}")
                ok(c.produce("sec", p, recs, acks=tn.ACK_ALL), f"acks ALL on sec-{p}")
                eq([r.value for b, _ in c.fetch_all("sec", p) for r in b.records],
                   [r.value for r in recs], f"sec-{p} read back")
        # The CLI: --tls-ca and a client certificate.
        tls_flags = ["--bootstrap", f"127.0.0.1:{cl.ports[li]}", "--tls-ca", pki("ca.crt"),
                     "--tls-cert", pki("client.crt"), "--tls-key", pki("client.key")]
        r = subprocess.run([args.rmq, *tls_flags, "produce", "sec", "--partition", "0",
                            "--acks", "all"],
                           input=b"one\ntwo\n", stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                           timeout=60)
        check(r.returncode == 0, f"rmq produce over TLS: {r.stdout.decode(errors='replace')}")
        r = subprocess.run([args.rmq, *tls_flags, "consume", "sec", "--partition", "0",
                            "--offset", "earliest", "--max", "52"],
                           stdout=subprocess.PIPE, stderr=subprocess.STDOUT, timeout=60)
        out = r.stdout.decode(errors="replace")
        check(r.returncode == 0 and out.splitlines()[-2:] == ["one", "two"],
              f"rmq consume over TLS: {out[-500:]}")
        r = subprocess.run([args.rmq, "--bootstrap", f"127.0.0.1:{cl.ports[li]}", "--tls-ca",
                            pki("other-ca.crt"), "topic", "list"],
                           stdout=subprocess.PIPE, stderr=subprocess.STDOUT, timeout=60)
        check(r.returncode != 0, "rmq trusting another CA is refused")
        for i in range(3):
            eq(cl.nodes[i].stop(), 0, f"node {i + 1}: exit status after SIGTERM")
    finally:
        cl.kill_all()


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--rmqd", required=True)
    ap.add_argument("--proto-dir", required=True)
    ap.add_argument("--rmq", required=True, help="the rmq CLI")
    ap.add_argument("--keep", action="store_true")
    ap.add_argument("-v", "--verbose", action="store_true")
    args = ap.parse_args()
    passed = failed = skipped = 0
    tmp = tempfile.mkdtemp(prefix="rmq-tls-test-")
    try:
        if not shutil.which("openssl"):
            print("SKIP tls: no openssl binary to make certificates with", flush=True)
            skipped += 1
        else:
            tn.load_protos(pathlib.Path(args.proto_dir).resolve(), pathlib.Path(tmp) / "py")
            d = os.path.join(tmp, "pki")
            os.mkdir(d)
            try:
                make_pki(d)
            except Exception as e:  # noqa: BLE001
                print(f"FAIL pki: {type(e).__name__}: {e}", flush=True)
                failed += 1
            for name, fn in (("tls", run), ("tls_cluster", run_cluster)):
                if failed:
                    break
                try:
                    fn(args, tmp, d)
                    print(f"PASS {name}", flush=True)
                    passed += 1
                except Exception as e:  # noqa: BLE001
                    print(f"FAIL {name}: {type(e).__name__}: {e}", flush=True)
                    traceback.print_exc()
                    failed += 1
    finally:
        if args.keep or failed:
            print(f"logs kept in {tmp}")
        else:
            shutil.rmtree(tmp, ignore_errors=True)
    print(f"{passed} passed, {failed} failed, {skipped} skipped")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
