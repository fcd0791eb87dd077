#!/usr/bin/env python3
"""Slow request bodies (issue 12): how many connections to the service do clients that trickle
their request bodies hold, and when does the gateway give up on them?

Starts a sample service and a 2-worker gateway with default limits (body_timeout 20s,
min_body_rate 500, request_buffer_bytes 64KiB), opens --clients connections that each send a
`POST` head with `Content-Length: 100` and one body byte, then one more byte every 3 s. Prints the
connections open at the service (less the one asking) every 3 s, then waits for the body deadline
and counts the 408 answers.

Usage: bench/slow_bodies.py [--sluice build/release/sluice] [--clients 2000] [--wait 22]
Needs about 2 x clients file descriptors (ulimit -n). Python 3 standard library only.
"""

import argparse
import os
import shutil
import socket
import sys
import tempfile
import time

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.join(os.path.dirname(HERE), "tests", "integration"))


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--sluice", default=os.path.join(os.path.dirname(HERE), "build", "release",
                                                     "sluice"))
    ap.add_argument("--clients", type=int, default=2000)
    ap.add_argument("--wait", type=float, default=22.0,
                    help="seconds after the first byte to wait before reading the answers")
    args = ap.parse_args()
    os.environ["SLUICE_BIN"] = os.path.abspath(args.sluice)
    import harness  # noqa: E402 - after SLUICE_BIN is set

    workdir = tempfile.mkdtemp(prefix="sluice-slow-bodies-")
    procs = []
    socks = []
    try:
        up = harness.Sample(workdir, "slow")
        procs.append(up)
        up.start()
        up.wait_ready()
        gw = harness.Gateway(workdir, {"workers": 2, "access_log": {"path": "off"},
                                       "services": [harness.service("slow", up.address)],
                                       "routes": [harness.route("all", "slow", path_prefix="/")]})
        procs.append(gw)
        gw.start()
        gw.wait_ready()
        host, port = harness.split_addr(gw.address)
        t0 = time.monotonic()
        for _ in range(args.clients):
            s = socket.create_connection((host, port))
            s.setblocking(False)
            s.send(b"POST /s HTTP/1.1\r\nHost: t\r\nContent-Length: 100\r\n\r\nx")
            socks.append(s)
        peak = 0
        while time.monotonic() - t0 < min(args.wait - 3, 12):
            time.sleep(3)
            for s in socks:
                try:
                    s.send(b"y")
                except OSError:
                    pass
            open_now = up.stats()["active_connections"] - 1
            peak = max(peak, open_now)
            print(f"t={time.monotonic() - t0:5.1f}s  connections open at the service: {open_now}",
                  flush=True)
        time.sleep(max(0.0, args.wait - (time.monotonic() - t0)))
        answered = 0
        for s in socks:
            s.setblocking(True)
            s.settimeout(5)
            try:
                if s.recv(100).startswith(b"HTTP/1.1 408"):
                    answered += 1
            except OSError:
                pass
        print(f"{args.clients} slow clients: peak {peak} connections at the service; "
              f"{answered} got 408 by t={time.monotonic() - t0:.1f}s "
              f"(sluice_downstream_rejected_total{{reason=body_timeout}} = "
              f"{harness.metric_sum(gw.metrics(), 'sluice_downstream_rejected_total', reason='body_timeout'):.0f})")
    finally:
        for s in socks:
            s.close()
        for p in reversed(procs):
            p.kill()
        shutil.rmtree(workdir, True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
