#!/usr/bin/env python3
"""Opens N keep-alive client connections to a proxy, sends one request on each, reads the whole
response and then holds every connection open and idle, for proxy_bench.sh's memory scenario.

Prints `held N` once all are open (or `failed ...` and exits 1), then waits for SIGTERM/SIGINT (or
--hold seconds). On the way out it prints `closed_by_peer K`: connections the proxy closed while
they were held, which would make a per-connection memory figure meaningless."""
import argparse
import errno
import selectors
import signal
import socket
import sys
import time


def parse_response_done(buf):
    """True when buf holds one complete response with a Content-Length body."""
    head_end = buf.find(b"\r\n\r\n")
    if head_end < 0:
        return False
    length = 0
    for line in buf[:head_end].split(b"\r\n")[1:]:
        name, _, value = line.partition(b":")
        if name.strip().lower() == b"content-length":
            length = int(value.strip())
    return len(buf) >= head_end + 4 + length


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--host", default="127.0.0.1")
    ap.add_argument("--port", type=int, required=True)
    ap.add_argument("--path", default="/_sample/bytes?n=128")
    ap.add_argument("-n", "--connections", type=int, default=10000)
    ap.add_argument("--window", type=int, default=200, help="connections being set up at once")
    ap.add_argument("--timeout", type=float, default=60.0, help="seconds to open all of them")
    ap.add_argument("--hold", type=float, default=600.0, help="give up holding after this long")
    args = ap.parse_args()

    request = (f"GET {args.path} HTTP/1.1\r\nHost: {args.host}:{args.port}\r\n"
               "User-Agent: sluice-bench-idle\r\n\r\n").encode()
    sel = selectors.DefaultSelector()
    held = []
    pending = 0
    started = 0
    failures = 0
    deadline = time.monotonic() + args.timeout

    def start_one():
        nonlocal pending, started
        s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        s.setblocking(False)
        err = s.connect_ex((args.host, args.port))
        if err not in (0, errno.EINPROGRESS):
            raise OSError(err, f"connect: {errno.errorcode.get(err, err)}")
        sel.register(s, selectors.EVENT_WRITE, {"sent": False, "buf": b""})
        pending += 1
        started += 1

    while len(held) < args.connections:
        while pending < args.window and started < args.connections:
            start_one()
        if time.monotonic() > deadline:
            print(f"failed: only {len(held)} of {args.connections} connections after "
                  f"{args.timeout:.0f}s ({failures} errors)", flush=True)
            return 1
        for key, _ in sel.select(timeout=1.0):
            s, st = key.fileobj, key.data
            try:
                if not st["sent"]:
                    err = s.getsockopt(socket.SOL_SOCKET, socket.SO_ERROR)
                    if err:
                        raise OSError(err, "connect")
                    s.send(request)  # tiny request: one send on a fresh socket
                    st["sent"] = True
                    sel.modify(s, selectors.EVENT_READ, st)
                    continue
                chunk = s.recv(65536)
                if not chunk:
                    raise OSError(errno.ECONNRESET, "closed before the response was complete")
                st["buf"] += chunk
                if parse_response_done(st["buf"]):
                    if not st["buf"].startswith(b"HTTP/1.1 2"):
                        raise OSError(errno.EPROTO, "non-2xx: " + st["buf"][:40].decode(errors="replace"))
                    sel.unregister(s)
                    pending -= 1
                    held.append(s)
            except OSError as e:
                failures += 1
                sel.unregister(s)
                s.close()
                pending -= 1
                started -= 1  # try again with a new socket
                if failures > max(100, args.connections // 10):
                    print(f"failed: {failures} errors, last: {e}", flush=True)
                    return 1

    print(f"held {len(held)}", flush=True)

    stop = {"flag": False}

    def on_signal(signum, frame):
        stop["flag"] = True

    signal.signal(signal.SIGTERM, on_signal)
    signal.signal(signal.SIGINT, on_signal)
    end = time.monotonic() + args.hold
    while not stop["flag"] and time.monotonic() < end:
        time.sleep(0.1)

    # A held connection that became readable was closed (or written to) by the proxy.
    closed = 0
    probe = selectors.DefaultSelector()
    for s in held:
        probe.register(s, selectors.EVENT_READ)
    for key, _ in probe.select(timeout=0):
        try:
            if key.fileobj.recv(1, socket.MSG_PEEK) == b"":
                closed += 1
        except OSError:
            closed += 1
    print(f"closed_by_peer {closed}", flush=True)
    for s in held:
        s.close()
    return 0


if __name__ == "__main__":
    sys.exit(main())
