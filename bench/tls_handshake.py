#!/usr/bin/python3
# SPDX-License-Identifier: Apache-2.0
"""bench/tls_handshake.py - new TLS connections per second to an rmqd:
full TLS 1.3 handshakes, then resumed ones (a session ticket from the
first connection of each client process), --procs processes for
--seconds each.  The client side is Python's ssl (OpenSSL underneath),
so the figure is a lower bound on what the node does: `top` during a run
shows whether the clients or rmqd are the limit.  Prints one line each.

    python3 bench/tls_handshake.py --port P --ca ca.crt [--seconds 5] [--procs 2]
"""
import argparse
import multiprocessing
import socket
import ssl
import time


def worker(port, ca, seconds, resume, out):
    ctx = ssl.create_default_context(cafile=ca)
    ctx.minimum_version = ssl.TLSVersion.TLSv1_3
    ctx.set_alpn_protocols(["h2"])
    session, n, resumed = None, 0, 0
    end = time.monotonic() + seconds
    while time.monotonic() < end:
        with socket.create_connection(("127.0.0.1", port)) as raw:
            with ctx.wrap_socket(raw, server_hostname="127.0.0.1",
                                 session=session if resume else None) as s:
                # TLS 1.3 tickets arrive after the handshake: read until one
                # is there (the node sends its HTTP/2 SETTINGS too).
                if resume and session is None:
                    s.settimeout(1)
                    try:
                        s.recv(1)
                    except (socket.timeout, ssl.SSLError):
                        pass
                    session = s.session
                n += 1
                resumed += s.session_reused
    out.put((n, resumed))


def rate(args, resume):
    q = multiprocessing.Queue()
    ps = [multiprocessing.Process(target=worker, args=(args.port, args.ca, args.seconds, resume, q))
          for _ in range(args.procs)]
    for p in ps:
        p.start()
    res = [q.get() for _ in ps]
    for p in ps:
        p.join()
    return sum(r[0] for r in res) / args.seconds, sum(r[1] for r in res)


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--port", type=int, required=True)
    ap.add_argument("--ca", required=True)
    ap.add_argument("--seconds", type=float, default=5)
    ap.add_argument("--procs", type=int, default=2)
    args = ap.parse_args()
    full, _ = rate(args, False)
    res, reused = rate(args, True)
    print(f"TLS handshakes ({args.procs} client processes, {args.seconds:.0f} s each): "
          f"{full:,.0f} new connections/s with full handshakes, {res:,.0f}/s with session "
          f"resumption ({reused:,} resumed)")


if __name__ == "__main__":
    main()
