#!/usr/bin/env python3
"""Control-plane benchmark (issue 5's performance targets) against a real `sluice control` with
the default SQLite store, on an ephemeral loopback port, in a temporary directory.

Targets (each measured on a freshly started control plane with a fresh database):
  propagation  a config change reaches 1,000 watching gateways: p99 <= 1 s. Each watcher is one
               keep-alive connection long-polling
               GET /v1/gateway-config?gateway=ID&city=C&after=V&wait=30s and re-polling at once
               with the version it got. Before each write, every watcher is parked (the control
               plane's sluice_control_config_polls_waiting equals the watcher count); a sample is
               the time from the start of the POST /v1/apply until one watcher has read the whole
               200 answer with the new config version; watchers x writes samples.
  heartbeat    a registry of 10,000 instances heartbeating every 5 s (2,000 heartbeats/s) uses
               under one core: the control plane's utime+stime (/proc/PID/stat, all threads) over
               the measured interval divided by its wall time. Heartbeats are sent open-loop on
               schedule (instance i at i x interval / instances, then every interval), pipelined
               over a few keep-alive connections; latency is from the write to the socket until
               the response is read. The achieved rate and the load generator's own CPU are
               reported, so that a saturated generator shows.
  write        API write latency p99 <= 10 ms with SQLite: sequential POST /v1/apply on one
               keep-alive connection, each a real change (a service's timeouts.request moves),
               after a few unmeasured warm-up writes; the time from sending to reading the answer.

The config written is --services registry-backed services, each with a route. All latencies
are measured by this client (Python asyncio, raw sockets; the watchers in --watcher-procs
processes of their own, the writes and heartbeats in this one), so they include its own delays:
they are upper bounds of what the control plane takes. Times are CLOCK_MONOTONIC, the same in
every process.

Exit status: 0 when the benchmark ran (with --strict: and every target was met), 1 when a target
was missed under --strict or the benchmark could not be performed, 2 for bad options, 130 on
Ctrl-C. Every process started is stopped on exit. Python 3 standard library only.
"""

import argparse
import asyncio
import collections
import datetime
import json
import math
import os
import platform
import re
import resource
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
TARGETS = ("propagation", "heartbeat", "write")
# Issue 5's performance targets.
TARGET_PROPAGATION_P99_S = 1.0
TARGET_HEARTBEAT_CORES = 1.0
TARGET_WRITE_P99_MS = 10.0
# A heartbeat run whose achieved rate is below this share of the offered one did not test the
# target: the load generator (or the control plane) fell behind.
MIN_RATE_SHARE = 0.99
CLK_TCK = os.sysconf("SC_CLK_TCK")


class BenchError(Exception):
    """The benchmark could not be performed."""


def log(msg):
    print(f"control_bench: {msg}", file=sys.stderr, flush=True)


def free_port():
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def percentile(sorted_values, p):
    """Nearest-rank percentile of an ascending list."""
    if not sorted_values:
        return None
    k = max(0, math.ceil(p / 100.0 * len(sorted_values)) - 1)
    return sorted_values[min(k, len(sorted_values) - 1)]


def summary(values):
    v = sorted(values)
    return {"n": len(v), "p50": percentile(v, 50), "p90": percentile(v, 90),
            "p99": percentile(v, 99), "max": v[-1] if v else None,
            "mean": sum(v) / len(v) if v else None}


def proc_cpu_ticks(pid):
    """utime + stime of every thread of `pid`, in clock ticks."""
    with open(f"/proc/{pid}/stat") as f:
        text = f.read()
    fields = text[text.rindex(")") + 2:].split()
    return int(fields[11]) + int(fields[12])  # fields 14 and 15 of proc(5)


def machine_busy():
    """(busy, total) jiffies of all CPUs, from /proc/stat."""
    with open("/proc/stat") as f:
        v = [int(x) for x in f.readline().split()[1:]]
    idle = v[3] + (v[4] if len(v) > 4 else 0)
    return sum(v) - idle, sum(v)


class Interval:
    """CPU use over a measured interval: the control plane's, this process's, and everything
    else's (other builds and tests on the machine make a run noisy)."""

    def __init__(self, pid):
        self.pid = pid
        self.t0 = time.monotonic()
        self.cp0 = proc_cpu_ticks(pid)
        ru = resource.getrusage(resource.RUSAGE_SELF)
        self.self0 = ru.ru_utime + ru.ru_stime
        self.busy0, self.total0 = machine_busy()

    def end(self):
        wall = time.monotonic() - self.t0
        cp = (proc_cpu_ticks(self.pid) - self.cp0) / CLK_TCK
        ru = resource.getrusage(resource.RUSAGE_SELF)
        me = ru.ru_utime + ru.ru_stime - self.self0
        busy, total = machine_busy()
        ncpu = os.cpu_count() or 1
        machine = (busy - self.busy0) / (total - self.total0) * ncpu if total > self.total0 else 0
        return {"wall_s": wall, "cp_cpu_s": cp, "cp_cores": cp / wall if wall else None,
                "gen_cpu_s": me, "gen_cores": me / wall if wall else None,
                "other_cores": max(0.0, machine - (cp + me) / wall) if wall else None,
                "loadavg": os.getloadavg()[0]}


def proc_rss_kib(pid):
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
    return None


def proc_fds(pid):
    try:
        return len(os.listdir(f"/proc/{pid}/fd"))
    except OSError:
        return None


def proc_nofile(pid):
    """(soft, hard) RLIMIT_NOFILE of a running process, from /proc/PID/limits."""
    with open(f"/proc/{pid}/limits") as f:
        for line in f:
            if line.startswith("Max open files"):
                parts = line.split()
                return parts[3], parts[4]
    return None, None


def raise_nofile(needed):
    """Raises this process's soft RLIMIT_NOFILE to at least `needed` (children inherit it)."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft != resource.RLIM_INFINITY and soft < needed:
        if hard != resource.RLIM_INFINITY and hard < needed:
            raise BenchError(f"need {needed} file descriptors, the hard limit is {hard} "
                             f"(raise it, e.g. `ulimit -Hn {needed}` as root, or use fewer "
                             f"--watchers)")
        resource.setrlimit(resource.RLIMIT_NOFILE, (needed, hard))
    return resource.getrlimit(resource.RLIMIT_NOFILE)


# ---------------------------------------------------------------------------------------------
# HTTP/1.1 client: one keep-alive connection, requests pipelined, answers matched in order


class Response:
    __slots__ = ("status", "headers", "body", "t")

    def __init__(self, status, headers, body, t):
        self.status, self.headers, self.body, self.t = status, headers, body, t

    def json(self):
        return json.loads(self.body)


class HttpConn(asyncio.Protocol):
    """Each request is (bytes, callback); callback(Response or None on a lost connection) runs
    when its answer has been read whole. Answers come back in request order (HTTP/1.1)."""

    def __init__(self):
        self.transport = None
        self.buf = bytearray()
        self.pending = collections.deque()  # callbacks, in request order
        self.closed = False
        self.head = None  # (status, headers, body length) of the answer being read

    def connection_made(self, transport):
        self.transport = transport
        sock = transport.get_extra_info("socket")
        if sock is not None:
            sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)

    def connection_lost(self, exc):
        self.closed = True
        while self.pending:
            self.pending.popleft()(None)

    def send(self, data, callback):
        if self.closed:
            callback(None)
            return
        self.pending.append(callback)
        self.transport.write(data)

    def send_many(self, items):
        """[(bytes, callback)]: one write for all (pipelining)."""
        if self.closed:
            for _, cb in items:
                cb(None)
            return
        for _, cb in items:
            self.pending.append(cb)
        self.transport.write(b"".join(d for d, _ in items))

    def request(self, data):
        fut = asyncio.get_running_loop().create_future()

        def done(resp):
            if not fut.done():
                fut.set_result(resp)
        self.send(data, done)
        return fut

    def data_received(self, data):
        t = time.monotonic()
        buf = self.buf
        buf += data
        while True:
            if self.head is None:
                end = buf.find(b"\r\n\r\n")
                if end < 0:
                    return
                lines = bytes(buf[:end]).decode("latin-1").split("\r\n")
                del buf[:end + 4]
                status = int(lines[0].split(" ", 2)[1])
                headers = {}
                for line in lines[1:]:
                    k, _, v = line.partition(":")
                    headers[k.strip().lower()] = v.strip()
                if 100 <= status < 200:
                    continue  # 100 Continue: the real answer follows
                self.head = (status, headers, int(headers.get("content-length", "0")))
            status, headers, length = self.head
            if len(buf) < length:
                return
            body = bytes(buf[:length])
            del buf[:length]
            self.head = None
            cb = self.pending.popleft() if self.pending else None
            if cb is not None:
                cb(Response(status, headers, body, t))
            if headers.get("connection", "").lower() == "close" and self.transport:
                self.transport.close()

    def close(self):
        if self.transport is not None and not self.closed:
            self.transport.close()


async def connect(port):
    loop = asyncio.get_running_loop()
    _, proto = await loop.create_connection(HttpConn, "127.0.0.1", port)
    return proto


def build_request(method, path, token, body=None):
    lines = [f"{method} {path} HTTP/1.1", "Host: 127.0.0.1", f"Authorization: Bearer {token}"]
    data = b""
    if body is not None:
        data = json.dumps(body, separators=(",", ":")).encode()
        lines.append("Content-Type: application/json")
    lines.append(f"Content-Length: {len(data)}")
    return ("\r\n".join(lines) + "\r\n\r\n").encode() + data


async def call(conn, method, path, token, body=None, timeout=30.0):
    resp = await asyncio.wait_for(conn.request(build_request(method, path, token, body)), timeout)
    if resp is None:
        raise BenchError(f"{method} {path}: connection lost")
    return resp


_METRIC = re.compile(r"^([a-zA-Z_:][a-zA-Z0-9_:]*)(\{[^}]*\})?\s+(\S+)", re.M)


async def metric(conn, name):
    resp = await call(conn, "GET", "/metrics", "")
    for m in _METRIC.finditer(resp.body.decode()):
        if m.group(1) == name:
            return float(m.group(3))
    raise BenchError(f"/metrics has no {name}")


# ---------------------------------------------------------------------------------------------
# the control plane process


class ControlPlane:
    def __init__(self, binary, workdir, name, threads=None, nofile=None):
        self.binary, self.name = binary, name
        self.dir = os.path.join(workdir, name)
        os.makedirs(self.dir)
        self.port = free_port()
        self.db = os.path.join(self.dir, "control.db")
        self.token_file = os.path.join(self.dir, "admin.token")
        self.config = os.path.join(self.dir, "control.yaml")
        with open(self.config, "w") as f:
            f.write(f"listen: 127.0.0.1:{self.port}\n"
                    f"store: sqlite://{self.db}\n"
                    f"auth: {{admin_token_file: {self.token_file}}}\n")
            if threads:
                f.write(f"threads: {threads}\n")
        self.log_path = os.path.join(self.dir, "control.log")
        self.nofile = nofile
        self.popen = None
        self.token = None

    def start(self, timeout=20.0):
        nofile = self.nofile

        def limit():
            if nofile:  # soft and hard: the control plane raises its soft limit to the hard one
                resource.setrlimit(resource.RLIMIT_NOFILE, (nofile, nofile))
        with open(self.log_path, "ab") as logf:
            self.popen = subprocess.Popen([self.binary, "control", "--config", self.config],
                                          stdout=logf, stderr=subprocess.STDOUT,
                                          stdin=subprocess.DEVNULL, start_new_session=True,
                                          preexec_fn=limit)
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.popen.poll() is not None:
                raise BenchError(f"control plane exited with {self.popen.returncode} during "
                                 f"start-up:\n{self.tail()}")
            try:
                with socket.create_connection(("127.0.0.1", self.port), timeout=1) as s:
                    s.sendall(b"GET /ready HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
                    if s.recv(64).startswith(b"HTTP/1.1 200"):
                        break
            except OSError:
                pass
            time.sleep(0.05)
        else:
            raise BenchError(f"control plane not ready after {timeout:.0f} s:\n{self.tail()}")
        with open(self.token_file) as f:
            self.token = f.read().strip()
        return self

    @property
    def pid(self):
        return self.popen.pid

    def alive(self):
        return self.popen is not None and self.popen.poll() is None

    def stop(self, grace=5.0):
        if self.popen is None or self.popen.poll() is not None:
            return
        try:
            os.killpg(self.popen.pid, signal.SIGTERM)
            self.popen.wait(grace)
        except subprocess.TimeoutExpired:
            try:
                os.killpg(self.popen.pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
            self.popen.wait(5)
        except ProcessLookupError:
            pass

    def tail(self, n=20):
        try:
            with open(self.log_path, "rb") as f:
                return "\n".join(f.read().decode("utf-8", "replace").splitlines()[-n:])
        except OSError:
            return ""

    def log_lines(self, pattern):
        try:
            with open(self.log_path, "rb") as f:
                return [line for line in f.read().decode("utf-8", "replace").splitlines()
                        if re.search(pattern, line)]
        except OSError:
            return []


def service_resource(i, request_timeout_ms=5000):
    return {"kind": "service", "name": f"svc-{i:03d}",
            "spec": {"timeouts": {"request": f"{request_timeout_ms}ms"}}}


def route_resource(i):
    return {"kind": "route", "name": f"route-{i:03d}",
            "spec": {"match": {"path_prefix": f"/svc-{i:03d}"}, "service": f"svc-{i:03d}"}}


async def seed_config(conn, token, services):
    resources = [service_resource(i) for i in range(services)]
    resources += [route_resource(i) for i in range(services)]
    resp = await call(conn, "POST", "/v1/apply", token,
                      {"reason": "control_bench: seed", "resources": resources})
    if resp.status != 200:
        raise BenchError(f"seeding the config failed: {resp.status} {resp.body[:300]!r}")
    return resp.json()["version"]


def apply_body(change, services):
    """The change-th write: svc-000's request timeout moves (and so does no other key), so every
    write is a real change and a new version."""
    return {"reason": f"control_bench: change {change}",
            "resources": [service_resource(change % max(1, services), 5000 + change + 1)]}


# ---------------------------------------------------------------------------------------------
# target 1: propagation to watchers


class WatcherGroup:
    """Simulated gateways in one process: one keep-alive connection each, long-polling
    /v1/gateway-config and polling again at once with the version received. For every watcher
    the time (CLOCK_MONOTONIC, the same in every process) each config version was first read
    whole is kept."""

    def __init__(self, port, token, ids, wait):
        self.port, self.token, self.ids, self.wait = port, token, ids, wait
        self.conns, self.after, self.seen = [], {}, {}
        self.errors = 0
        self.stopping = False
        self.auth = f"Authorization: Bearer {token}\r\n\r\n".encode()

    async def start(self):
        sem = asyncio.Semaphore(100)

        async def open_one(i):
            async with sem:
                return await connect(self.port)
        self.conns = await asyncio.gather(*(open_one(i) for i in self.ids))
        for i, conn in zip(self.ids, self.conns):
            self.after[i] = ""
            self.seen[i] = []
            self.poll(i, conn)

    def poll(self, i, conn):
        if self.stopping:
            return
        after = self.after[i]
        path = (f"/v1/gateway-config?gateway=bench-gw-{i:04d}&city={'ab'[i % 2]}"
                + (f"&after={after}" if after else "") + f"&wait={self.wait}")
        conn.send(f"GET {path} HTTP/1.1\r\nHost: 127.0.0.1\r\n".encode() + self.auth,
                  lambda resp: self.answered(i, conn, resp))

    def answered(self, i, conn, resp):
        if resp is None:
            if not self.stopping:
                self.errors += 1
            return
        if resp.status == 200:
            v = resp.headers.get("x-sluice-version", "")
            self.after[i] = v
            try:
                self.seen[i].append((int(v.split(".")[0]), resp.t))
            except ValueError:
                self.errors += 1
            self.poll(i, conn)
        elif resp.status == 304:
            self.poll(i, conn)
        else:
            self.errors += 1
            asyncio.get_running_loop().call_later(0.1, self.poll, i, conn)

    def first_seen(self, i, version):
        return next((t for v, t in self.seen[i] if v >= version), None)

    async def times(self, version, deadline):
        """Per watcher, when it first read a version >= `version` (None: not by `deadline`)."""
        while time.monotonic() < deadline:
            if all(self.seen[i] and self.seen[i][-1][0] >= version for i in self.ids):
                break
            await asyncio.sleep(0.002)
        return [self.first_seen(i, version) for i in self.ids]

    def close(self):
        self.stopping = True
        for c in self.conns:
            c.close()


async def watcher_worker(spec):
    """--watcher-worker: a WatcherGroup driven over stdin/stdout by run_propagation.
    In: "report VERSION DEADLINE" | "stop". Out: "ready", then one JSON line per report."""
    group = WatcherGroup(spec["port"], spec["token"], spec["ids"], spec["wait"])
    await group.start()
    loop = asyncio.get_running_loop()
    reader = asyncio.StreamReader()
    await loop.connect_read_pipe(lambda: asyncio.StreamReaderProtocol(reader), sys.stdin)
    print("ready", flush=True)
    while True:
        line = (await reader.readline()).decode().split()
        if not line or line[0] == "stop":
            break
        if line[0] == "report":
            times = await group.times(int(line[1]), float(line[2]))
            print(json.dumps({"times": times, "errors": group.errors}), flush=True)
    group.close()


class WorkerProc:
    def __init__(self, proc):
        self.proc = proc

    @classmethod
    async def start(cls, spec):
        proc = await asyncio.create_subprocess_exec(
            sys.executable, os.path.abspath(__file__), "--watcher-worker", json.dumps(spec),
            stdin=subprocess.PIPE, stdout=subprocess.PIPE, limit=1 << 24)
        return cls(proc)

    async def line(self, timeout):
        text = await asyncio.wait_for(self.proc.stdout.readline(), timeout)
        if not text:
            raise BenchError(f"watcher worker exited with {await self.proc.wait()}")
        return text.decode()

    async def report(self, version, deadline):
        self.proc.stdin.write(f"report {version} {deadline}\n".encode())
        await self.proc.stdin.drain()
        return json.loads(await self.line(deadline - time.monotonic() + 30))

    async def stop(self):
        if self.proc.returncode is None:
            try:
                self.proc.stdin.write(b"stop\n")
                await self.proc.stdin.drain()
                await asyncio.wait_for(self.proc.wait(), 10)
            except (OSError, asyncio.TimeoutError):
                self.proc.kill()
                await self.proc.wait()


async def run_propagation(args, cp):
    token = cp.token
    admin = await connect(cp.port)
    probe = await connect(cp.port)
    await seed_config(admin, token, args.services)

    log(f"propagation: opening {args.watchers} watcher connections in "
        f"{args.watcher_procs} processes")
    t_open = time.monotonic()
    workers = []
    try:
        for k in range(args.watcher_procs):
            ids = list(range(k, args.watchers, args.watcher_procs))
            workers.append(await WorkerProc.start(
                {"port": cp.port, "token": token, "ids": ids, "wait": args.wait,
                 "nice": args.watcher_nice}))
        for w in workers:
            if (await w.line(120)).strip() != "ready":
                raise BenchError("watcher worker did not start")
        return await measure_propagation(args, cp, admin, probe, workers, t_open)
    finally:
        for w in workers:
            await w.stop()
        admin.close()
        probe.close()


async def measure_propagation(args, cp, admin, probe, workers, t_open):
    token = cp.token

    async def wait_parked(timeout):
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if await metric(probe, "sluice_control_config_polls_waiting") >= args.watchers:
                return True
            await asyncio.sleep(0.02)
        return False

    if not await wait_parked(60):
        raise BenchError("the watchers did not all park within 60 s (waiting: "
                         f"{await metric(probe, 'sluice_control_config_polls_waiting'):.0f})")
    log(f"propagation: {args.watchers} watchers parked after {time.monotonic() - t_open:.2f} s "
        f"(control plane: {proc_fds(cp.pid)} open fds, limit {proc_nofile(cp.pid)[0]})")
    peak_fds = proc_fds(cp.pid)

    samples, per_write, apply_ms, missing, errors = [], [], [], 0, 0
    iv = Interval(cp.pid)
    for k in range(args.writes):
        if not await wait_parked(30):
            raise BenchError(f"write {k}: the watchers did not re-park within 30 s")
        peak_fds = max(peak_fds, proc_fds(cp.pid) or 0)
        await asyncio.sleep(args.write_gap)
        t_write = time.monotonic()
        resp = await call(admin, "POST", "/v1/apply", token, apply_body(k, args.services))
        if resp.status != 200:
            raise BenchError(f"write {k}: {resp.status} {resp.body[:300]!r}")
        apply_ms.append((resp.t - t_write) * 1000)
        version = resp.json()["version"]
        deadline = t_write + args.propagation_timeout
        reports = await asyncio.gather(*(w.report(version, deadline) for w in workers))
        got = []
        for rep in reports:
            for t in rep["times"]:
                if t is None:
                    missing += 1
                else:
                    got.append(t - t_write)
        errors = sum(rep["errors"] for rep in reports)
        samples += got
        s = summary(got)
        per_write.append({"version": version, "received": len(got), "p50_s": s["p50"],
                          "p99_s": s["p99"], "max_s": s["max"], "apply_ms": apply_ms[-1]})
        log(f"propagation: write {k + 1}/{args.writes} (version {version}): {len(got)}/"
            f"{args.watchers} watchers, p50 {fmt(s['p50'], 1, 1000)} ms, p99 "
            f"{fmt(s['p99'], 1, 1000)} ms, max {fmt(s['max'], 1, 1000)} ms; apply answered in "
            f"{apply_ms[-1]:.1f} ms")
    cpu = iv.end()
    s = summary(samples)
    return {
        "target": "propagation", "watchers": args.watchers, "writes": args.writes,
        "watcher_procs": args.watcher_procs, "watcher_nice": args.watcher_nice,
        "services": args.services,
        "samples": len(samples), "missing": missing,
        "errors": errors, "p50_s": s["p50"], "p90_s": s["p90"], "p99_s": s["p99"],
        "max_s": s["max"], "mean_s": s["mean"], "per_write": per_write,
        "apply_ms": summary(apply_ms), "cpu": cpu, "cp_fds_peak": peak_fds,
        "cp_nofile": proc_nofile(cp.pid)[0], "cp_rss_kib": proc_rss_kib(cp.pid),
        "pass": missing == 0 and errors == 0 and s["p99"] is not None
        and s["p99"] <= TARGET_PROPAGATION_P99_S,
    }


# ---------------------------------------------------------------------------------------------
# target 2: heartbeats


async def run_heartbeat(args, cp):
    loop = asyncio.get_running_loop()
    token = cp.token
    admin = await connect(cp.port)
    await seed_config(admin, token, args.services)
    n = args.instances
    services = max(1, args.services)
    names = [(f"svc-{i % services:03d}", f"inst-{i:05d}") for i in range(n)]

    # Registration: pipelined over the connections, in batches.
    conns = [await connect(cp.port) for _ in range(args.hb_connections)]
    log(f"heartbeat: registering {n} instances over {len(conns)} connections")
    t_reg = time.monotonic()
    failures = []
    batch = 50
    for start in range(0, n, batch * len(conns)):
        futs = []
        for c_i, conn in enumerate(conns):
            lo = start + c_i * batch
            items = []
            for i in range(lo, min(lo + batch, n)):
                svc, iid = names[i]
                body = {"service": svc, "id": iid, "address": f"127.0.0.1:{10000 + i}",
                        "city": "a" if i % 2 else "b", "ttl_ms": args.ttl_ms}
                fut = loop.create_future()
                items.append((build_request("POST", "/v1/instances", token, body),
                              lambda r, fut=fut: fut.set_result(r)))
                futs.append(fut)
            if items:
                conn.send_many(items)
        for r in await asyncio.gather(*futs):
            if r is None or r.status != 200:
                failures.append(r.status if r else "connection lost")
    if failures:
        raise BenchError(f"registration: {len(failures)} failed, e.g. {failures[:5]}")
    log(f"heartbeat: registered in {time.monotonic() - t_reg:.1f} s")

    reqs = [build_request("PUT", f"/v1/instances/{s}/{i}/heartbeat", token) for s, i in names]
    interval = args.interval
    rate = n / interval
    lat = []
    status = collections.Counter()
    lost = [0]
    sent = [0]
    measuring = [False]
    lag_max = [0.0]
    tick = args.tick_ms / 1000.0

    def on_answer(t_sent, resp):
        if resp is None:
            lost[0] += 1
            return
        if measuring[0]:
            lat.append(resp.t - t_sent)
            status[resp.status] += 1

    t_start = time.monotonic()
    end = t_start + args.warmup + args.duration
    next_i = 0  # the k-th heartbeat overall is instance k % n at t_start + k / rate
    measure_at = t_start + args.warmup
    iv = None
    sent0 = 0
    per_conn = [[] for _ in conns]
    while True:
        now = time.monotonic()
        if iv is None and now >= measure_at:
            iv, sent0 = Interval(cp.pid), sent[0]
            measuring[0] = True
        if now >= end:
            break
        due = min(int((now - t_start) * rate) + 1, int((end - t_start) * rate))
        if due > next_i:
            lag_max[0] = max(lag_max[0], now - (t_start + next_i / rate))
        for buf in per_conn:
            buf.clear()
        while next_i < due:
            i = next_i % n
            per_conn[i % len(conns)].append(i)
            next_i += 1
        for c_i, idx in enumerate(per_conn):
            if idx:
                t = time.monotonic()
                conns[c_i].send_many([(reqs[i], lambda r, t=t: on_answer(t, r)) for i in idx])
                sent[0] += len(idx)
        await asyncio.sleep(tick)
    cpu = iv.end()
    measuring[0] = False
    # Let answers in flight arrive (they are not counted: outside the interval).
    await asyncio.sleep(0.5)
    pending = sum(len(c.pending) for c in conns)
    expired = await metric(admin, "sluice_control_instances_expired_total")
    for c in conns:
        c.close()
    admin.close()
    wall = cpu["wall_s"]
    s = summary(lat)
    answered = sum(status.values())
    errors = sum(v for k, v in status.items() if k != 200) + lost[0]
    achieved = answered / wall if wall else 0.0
    sent_rate = (sent[0] - sent0) / wall if wall else 0.0
    cores = cpu["cp_cores"]
    rate_ok = achieved >= MIN_RATE_SHARE * rate
    return {
        "target": "heartbeat", "instances": n, "interval_s": interval, "offered_per_s": rate,
        "sent_per_s": sent_rate, "answered_per_s": achieved, "connections": len(conns),
        "warmup_s": args.warmup, "duration_s": wall, "cp_cpu_s": cpu["cp_cpu_s"],
        "cp_cores": cores, "gen_cores": cpu["gen_cores"], "cpu": cpu,
        "p50_ms": s["p50"] * 1000 if s["p50"] is not None else None,
        "p90_ms": s["p90"] * 1000 if s["p90"] is not None else None,
        "p99_ms": s["p99"] * 1000 if s["p99"] is not None else None,
        "max_ms": s["max"] * 1000 if s["max"] is not None else None,
        "answered": answered, "errors": errors, "status": dict(status), "lost": lost[0],
        "in_flight_at_end": pending, "instances_expired": expired,
        "scheduler_lag_max_ms": lag_max[0] * 1000, "cp_rss_kib": proc_rss_kib(cp.pid),
        "rate_ok": rate_ok,
        "pass": rate_ok and errors == 0 and expired == 0 and cores is not None
        and cores < TARGET_HEARTBEAT_CORES,
    }


# ---------------------------------------------------------------------------------------------
# target 3: write latency


async def run_write(args, cp):
    token = cp.token
    conn = await connect(cp.port)
    await seed_config(conn, token, args.services)
    lat, statuses = [], collections.Counter()
    total = args.warmup_writes + args.api_writes
    iv = None
    for k in range(total):
        if k == args.warmup_writes:
            iv = Interval(cp.pid)
        req = build_request("POST", "/v1/apply", token, apply_body(k, args.services))
        t = time.monotonic()
        resp = await asyncio.wait_for(conn.request(req), 30)
        if resp is None:
            raise BenchError(f"write {k}: connection lost")
        if k >= args.warmup_writes:
            lat.append((resp.t - t) * 1000)
            statuses[resp.status] += 1
        if resp.status != 200:
            log(f"write {k}: {resp.status} {resp.body[:200]!r}")
        elif "unchanged" in resp.json():
            raise BenchError(f"write {k} changed nothing: the benchmark must write real changes")
    cpu = iv.end()
    conn.close()
    s = summary(lat)
    errors = sum(v for k, v in statuses.items() if k != 200)
    return {
        "target": "write", "writes": len(lat), "warmup_writes": args.warmup_writes,
        "services": args.services, "errors": errors, "p50_ms": s["p50"], "p90_ms": s["p90"],
        "p99_ms": s["p99"], "max_ms": s["max"], "mean_ms": s["mean"],
        "writes_per_s": len(lat) / cpu["wall_s"], "cpu": cpu,
        "latencies_ms": [round(x, 3) for x in lat],
        "pass": errors == 0 and s["p99"] is not None and s["p99"] <= TARGET_WRITE_P99_MS,
    }


# ---------------------------------------------------------------------------------------------
# report


def machine_notes(workdir):
    notes = {}
    notes["cpus"] = str(os.cpu_count())
    try:
        with open("/proc/cpuinfo") as f:
            m = re.search(r"^model name\s*:\s*(.+)$", f.read(), re.M)
            notes["cpu"] = m.group(1).strip() if m else "?"
    except OSError:
        notes["cpu"] = "?"
    notes["kernel"] = platform.release()
    try:
        out = subprocess.run(["df", "-T", workdir], capture_output=True, text=True).stdout
        line = out.strip().splitlines()[-1].split()
        notes["store_fs"] = f"{line[1]} on {line[0]}"
    except (OSError, IndexError):
        notes["store_fs"] = "?"
    notes["python"] = platform.python_version()
    return notes


def fmt(v, digits=1, scale=1.0):
    return "-" if v is None else f"{v * scale:,.{digits}f}"


def verdict(ok):
    return "**met**" if ok else "**not met**"


def report(results, meta, out_path):
    md = ["# Sluice control-plane benchmark", ""]
    for k in ("date", "machine", "kernel", "store_fs", "sluice", "nofile", "command"):
        if k in meta:
            v = f"`{meta[k]}`" if k == "command" else meta[k]
            md.append(f"- {k.replace('_', ' ')}: {v}")
    md.append("")
    md += ["| target | measured | verdict |", "|---|---|---|"]
    for r in results:
        if r["target"] == "propagation":
            md.append(f"| config change to {r['watchers']:,} watchers, p99 <= 1 s | p99 "
                      f"{fmt(r['p99_s'], 1, 1000)} ms (p50 {fmt(r['p50_s'], 1, 1000)} ms, max "
                      f"{fmt(r['max_s'], 1, 1000)} ms; {r['samples']:,} samples, "
                      f"{r['missing']} missing) | {verdict(r['pass'])} |")
        elif r["target"] == "heartbeat":
            md.append(f"| {r['instances']:,} instances, heartbeat every {r['interval_s']:g} s "
                      f"({r['offered_per_s']:,.0f}/s): under one core | "
                      f"{fmt(r['cp_cores'], 3)} cores ({fmt(r['answered_per_s'], 0)} answered/s, "
                      f"p99 {fmt(r['p99_ms'], 2)} ms, {r['errors']} errors) | "
                      f"{verdict(r['pass'])} |")
        elif r["target"] == "write":
            md.append(f"| API write latency p99 <= 10 ms (SQLite) | p99 {fmt(r['p99_ms'], 2)} ms "
                      f"(p50 {fmt(r['p50_ms'], 2)} ms, max {fmt(r['max_ms'], 2)} ms; "
                      f"{r['writes']} writes, {r['errors']} errors) | {verdict(r['pass'])} |")
    md.append("")
    for r in results:
        if r["target"] == "propagation":
            md += [f"## Propagation: {r['watchers']:,} watchers x {r['writes']} writes", "",
                   f"Config: {r['services']} services + {r['services']} routes. Samples: "
                   f"{r['samples']:,}; missing {r['missing']}; watcher errors {r['errors']}. Watchers "
                   f"spread over {r['watcher_procs']} processes (nice {r['watcher_nice']}). "
                   f"POST /v1/apply answered in p50 {fmt(r['apply_ms']['p50'], 1)} ms, max "
                   f"{fmt(r['apply_ms']['max'], 1)} ms. Over the writes: control plane "
                   f"{fmt(r['cpu']['cp_cores'], 3)} cores, the writing client "
                   f"{fmt(r['cpu']['gen_cores'], 3)} cores, the watcher processes and others "
                   f"{fmt(r['cpu']['other_cores'], 3)} cores. Control plane: {r['cp_fds_peak']} open fds at most (soft limit "
                   f"{r['cp_nofile']}), RSS {fmt(r['cp_rss_kib'], 0)} KiB.", "",
                   "| write | version | received | p50 ms | p99 ms | max ms | apply ms |",
                   "|---:|---:|---:|---:|---:|---:|---:|"]
            for i, w in enumerate(r["per_write"], 1):
                md.append(f"| {i} | {w['version']} | {w['received']} | {fmt(w['p50_s'], 1, 1000)}"
                          f" | {fmt(w['p99_s'], 1, 1000)} | {fmt(w['max_s'], 1, 1000)} | "
                          f"{fmt(w['apply_ms'], 1)} |")
            md.append(f"| all | | {r['samples']} | {fmt(r['p50_s'], 1, 1000)} | "
                      f"{fmt(r['p99_s'], 1, 1000)} | {fmt(r['max_s'], 1, 1000)} | |")
            md.append("")
        elif r["target"] == "heartbeat":
            md += [f"## Heartbeats: {r['instances']:,} instances every {r['interval_s']:g} s", "",
                   "| offered/s | sent/s | answered/s | connections | measured s | control plane "
                   "CPU s | cores | p50 ms | p90 ms | p99 ms | max ms | errors | expired | "
                   "client cores | other cores |",
                   "|" + "---:|" * 15,
                   f"| {r['offered_per_s']:,.0f} | {r['sent_per_s']:,.0f} | "
                   f"{r['answered_per_s']:,.0f} | {r['connections']} | {r['duration_s']:.1f} | "
                   f"{r['cp_cpu_s']:.2f} | {fmt(r['cp_cores'], 3)} | {fmt(r['p50_ms'], 2)} | "
                   f"{fmt(r['p90_ms'], 2)} | {fmt(r['p99_ms'], 2)} | {fmt(r['max_ms'], 2)} | "
                   f"{r['errors']} | {r['instances_expired']:.0f} | {fmt(r['gen_cores'], 3)} | "
                   f"{fmt(r['cpu']['other_cores'], 3)} |",
                   "",
                   f"Statuses: {r['status']}; connections lost {r['lost']}; scheduler lag at "
                   f"most {r['scheduler_lag_max_ms']:.1f} ms; control plane RSS "
                   f"{fmt(r['cp_rss_kib'], 0)} KiB. "
                   + ("" if r["rate_ok"] else "**The achieved rate is below 99% of the offered "
                      "one: this run did not test the target.**"), ""]
        elif r["target"] == "write":
            md += [f"## API writes: {r['writes']} sequential POST /v1/apply (SQLite)", "",
                   "| writes | p50 ms | p90 ms | p99 ms | max ms | mean ms | writes/s | "
                   "control plane cores | client cores | other cores | errors |",
                   "|" + "---:|" * 11,
                   f"| {r['writes']} | {fmt(r['p50_ms'], 2)} | {fmt(r['p90_ms'], 2)} | "
                   f"{fmt(r['p99_ms'], 2)} | {fmt(r['max_ms'], 2)} | {fmt(r['mean_ms'], 2)} | "
                   f"{fmt(r['writes_per_s'], 0)} | {fmt(r['cpu']['cp_cores'], 3)} | "
                   f"{fmt(r['cpu']['gen_cores'], 3)} | {fmt(r['cpu']['other_cores'], 3)} | "
                   f"{r['errors']} |", ""]
    os.makedirs(os.path.dirname(os.path.abspath(out_path)), exist_ok=True)
    with open(out_path, "w") as f:
        f.write("\n".join(md))
    with open(os.path.splitext(out_path)[0] + ".json", "w") as f:
        json.dump({"meta": meta, "results": results}, f, indent=1, sort_keys=True)
    print("\n".join(md))


# ---------------------------------------------------------------------------------------------


def parse_args(argv):
    p = argparse.ArgumentParser(
        prog="bench/control_bench.py",
        description="Control-plane benchmark: propagation to watchers, heartbeat CPU, write "
                    "latency (issue 5). See docs/benchmarks.md, \"Control plane\".",
        formatter_class=argparse.RawDescriptionHelpFormatter,
        epilog=__doc__.split("\n\n", 1)[1])
    p.add_argument("--targets", default=",".join(TARGETS),
                   help="comma-separated subset of propagation,heartbeat,write (default: all)")
    p.add_argument("--sluice", default=os.environ.get("SLUICE_BIN",
                                                      os.path.join(ROOT, "build", "sluice")),
                   help="sluice binary (default: $SLUICE_BIN or build/sluice)")
    p.add_argument("--services", type=int, default=10,
                   help="services (each with a route) in the config (default 10)")
    p.add_argument("--threads", type=int, default=None,
                   help="control plane API threads (control.yaml `threads`; default: its own)")
    p.add_argument("--watchers", type=int, default=1000, help="watching gateways (default 1000)")
    p.add_argument("--watcher-procs", type=int, default=2,
                   help="processes the watchers are spread over (default 2)")
    p.add_argument("--watcher-nice", type=int, default=10,
                   help="niceness of the watcher processes (default 10): on a small machine the "
                        "simulated gateways, which would run elsewhere, then take CPU from the "
                        "control plane and from the writing client only when they leave it idle")
    p.add_argument("--writes", type=int, default=10,
                   help="config writes the watchers must receive (default 10)")
    p.add_argument("--write-gap", type=float, default=0.5,
                   help="seconds between all watchers being parked again and the next write "
                        "(default 0.5)")
    p.add_argument("--wait", default="30s", help="the watchers' long-poll wait (default 30s)")
    p.add_argument("--propagation-timeout", type=float, default=10.0,
                   help="seconds after a write after which a watcher counts as missing "
                        "(default 10)")
    p.add_argument("--instances", type=int, default=10000,
                   help="registered instances (default 10000)")
    p.add_argument("--interval", type=float, default=5.0,
                   help="seconds between two heartbeats of one instance (default 5)")
    p.add_argument("--ttl-ms", type=int, default=10000,
                   help="the instances' ttl_ms (default 10000, the control plane's default)")
    p.add_argument("--hb-connections", type=int, default=20,
                   help="keep-alive connections the heartbeats are pipelined over (default 20)")
    p.add_argument("--tick-ms", type=float, default=5.0,
                   help="heartbeat scheduler tick: due heartbeats are sent together (default 5)")
    p.add_argument("--warmup", type=float, default=5.0,
                   help="seconds of heartbeats before the measured interval (default 5)")
    p.add_argument("--duration", type=float, default=30.0,
                   help="measured seconds of heartbeats (default 30)")
    p.add_argument("--api-writes", type=int, default=300,
                   help="measured sequential writes (default 300)")
    p.add_argument("--warmup-writes", type=int, default=10,
                   help="unmeasured writes before them (default 10)")
    p.add_argument("--cp-nofile", type=int, default=None,
                   help="start the control plane with this RLIMIT_NOFILE, soft and hard "
                        "(default: inherited from this script, which raises its soft limit as "
                        "needed); below the watcher count it shows what happens when the "
                        "control plane runs out of descriptors")
    p.add_argument("--out", default=os.path.join(ROOT, "bench", "results", "control-plane.md"),
                   help="markdown results (default bench/results/control-plane.md; the raw "
                        "figures beside it as .json)")
    p.add_argument("--quick", action="store_true",
                   help="a shorter run: 5 propagation writes, 10 s of heartbeats after 3 s, "
                        "100 API writes (options given explicitly still win)")
    p.add_argument("--strict", action="store_true",
                   help="exit 1 when a target is missed")
    p.add_argument("--keep-tmp", action="store_true",
                   help="keep the databases and logs (always kept on failure)")
    args = p.parse_args(argv)
    if args.quick:
        for name, value in (("writes", 5), ("duration", 10.0), ("warmup", 3.0),
                            ("api_writes", 100)):
            if getattr(args, name) == p.get_default(name):
                setattr(args, name, value)
    args.target_list = [t.strip() for t in args.targets.split(",") if t.strip()]
    for t in args.target_list:
        if t not in TARGETS:
            p.error(f"unknown target '{t}' (propagation, heartbeat, write)")
    for name in ("services", "watchers", "watcher_procs", "writes", "instances", "hb_connections", "api_writes"):
        if getattr(args, name) < 1:
            p.error(f"--{name.replace('_', '-')} must be at least 1")
    if args.warmup_writes < 0 or args.warmup < 0 or args.duration <= 0 or args.interval <= 0:
        p.error("--warmup, --warmup-writes must be >= 0; --duration, --interval > 0")
    if not re.fullmatch(r"\d+(ms|s)?", args.wait):
        p.error("--wait: a duration such as 30s or 500ms")
    if not (os.path.isfile(args.sluice) and os.access(args.sluice, os.X_OK)):
        p.error(f"--sluice: {args.sluice} is not an executable (build it first)")
    return args


async def run_all(args, workdir, procs):
    results = []
    runners = {"propagation": run_propagation, "heartbeat": run_heartbeat, "write": run_write}
    for target in TARGETS:
        if target not in args.target_list:
            continue
        cp = ControlPlane(args.sluice, workdir, target, args.threads, args.cp_nofile)
        procs.append(cp)
        cp.start()
        log(f"{target}: control plane pid {cp.pid} on 127.0.0.1:{cp.port}, nofile "
            f"{'/'.join(proc_nofile(cp.pid))}")
        try:
            r = await runners[target](args, cp)
        finally:
            if not cp.alive():
                raise BenchError(f"{target}: the control plane died:\n{cp.tail()}")
            cp.stop()
        r["cp_warnings"] = len(cp.log_lines(r"\b(warn|error)\b"))
        results.append(r)
        log(f"{target}: {'met' if r['pass'] else 'NOT MET'}")
    return results


def main(argv):
    if argv[:1] == ["--watcher-worker"]:
        signal.signal(signal.SIGINT, signal.SIG_IGN)  # the parent stops it
        spec = json.loads(argv[1])
        os.nice(spec.get("nice", 0))
        asyncio.run(watcher_worker(spec))
        return 0
    args = parse_args(argv)
    # Watchers hold one socket each, the control plane one per watcher: both need this many.
    needed = (args.watchers if "propagation" in args.target_list else 0) + \
        args.hb_connections + 256
    soft, hard = raise_nofile(needed)
    workdir = tempfile.mkdtemp(prefix="sluice-cpbench-")
    procs = []
    ok = False

    def on_signal(signum, _frame):
        raise KeyboardInterrupt
    # Both explicitly: a shell starts background jobs with SIGINT ignored.
    signal.signal(signal.SIGTERM, on_signal)
    signal.signal(signal.SIGINT, on_signal)
    try:
        started = datetime.datetime.now(datetime.timezone.utc)
        results = asyncio.run(run_all(args, workdir, procs))
        notes = machine_notes(workdir)
        meta = {
            "date": started.strftime("%Y-%m-%d %H:%M UTC"),
            "machine": f"{notes['cpus']} CPUs, {notes['cpu']}",
            "kernel": notes["kernel"], "store_fs": f"SQLite database in {workdir} "
                                                  f"({notes['store_fs']})",
            "sluice": os.path.abspath(args.sluice),
            "nofile": f"this script's RLIMIT_NOFILE {soft}/{hard}; control plane "
                      f"{args.cp_nofile or 'inherited'}",
            "command": "bench/control_bench.py " + " ".join(argv),
        }
        report(results, meta, args.out)
        ok = True
        missed = [r["target"] for r in results if not r["pass"]]
        if missed:
            log(f"targets not met: {', '.join(missed)}")
        return 1 if (missed and args.strict) else 0
    except BenchError as e:
        log(f"error: {e}")
        return 1
    except KeyboardInterrupt:
        log("interrupted")
        return 130
    finally:
        for p in procs:
            p.stop()
        if ok and not args.keep_tmp:
            shutil.rmtree(workdir, ignore_errors=True)
        else:
            log(f"kept {workdir}")


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
