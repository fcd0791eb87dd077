#!/usr/bin/env python3
"""Dual-city drill: what clients see when a city's services fail, when its shards are switched to
the other city, when it comes back, and (with --kill-gateway) when its gateway dies.

Starts, on ephemeral loopback ports:
  - sample services: catalog (a global service) and accounts (a unit service), 2 instances of each
    in city a and 2 in city b;
  - two gateways, gw-a (city a) and gw-b (city b), workers 2, each listing all four instances of
    both services, with default health checks (only `interval` is set, with --interval), retries on
    connect_failure, reset, 502 and 503, and a `units` section (x-customer-id, 100 shards, a owns
    0-49, b owns 50-99, peers = the two gateways' public listeners);
  - client threads sending steady load to both gateways (half the threads to each): global
    requests (GET /catalog/N) and unit requests (GET /accounts/N with an x-customer-id spread over
    all 100 shards). A client whose gateway cannot be reached (refused, reset, closed) sends the
    request to the other gateway: a client retry.

Phases (each --duration seconds):
  baseline  nothing happens; the failures per 100 ms bucket here are the baseline level
  fault1    SIGKILL every service instance of city a; at the first failed unit request (the
            runbook's automation) `sluice gateway switch --admin A --admin B --from a --to b`
            (two-phase; drains city a of its shards, so unit requests of shards 0-49 are
            served in city b). Global services fail over by themselves (locality + retries).
  switch    only with --no-auto-switch: the switch above, one phase after the fault
  restore   restart city a's instances on the same ports, wait until both gateways see them
            healthy, switch shards 0-49 back to a (two-phase)
  fault2    (--kill-gateway) SIGKILL gateway a, restart it after --gateway-down seconds

RTO of a phase = time from the phase's event until the failures per 100 ms bucket are back at the
baseline level for good: the end of the last bucket above that level (0 when none is). It is given
for all requests, and separately for global and unit requests. "n/r" = not recovered by the end
of the phase. Requests are put in buckets by the time they were sent.

Retried = gateway retries (sluice_upstream_retries_total, both gateways) + client retries.
Forwards = unit requests forwarded to the other city's gateway, spills = global-service attempts
sent to the other city's instances, direct = unit requests sent straight to the owner city's
instances because its gateway was unreachable (sluice_cross_city_requests_total, both gateways).

Exit status: 0 when the drill ran (whatever the figures), 1 when it could not be performed (a
process did not start, a switch or restart step failed), 2 for bad options, 130 on Ctrl-C.
Every process started is stopped on exit, also on Ctrl-C and SIGTERM.
Python 3 standard library only.
"""

import argparse
import http.client
import json
import os
import random
import re
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time

BUCKET = 0.1  # seconds
SHARDS = 100
CITIES = ("a", "b")
SERVICES = ("catalog", "accounts")  # global, unit
RETRY_ON = ["connect_failure", "reset", 502, 503]
ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


class DrillError(Exception):
    """The drill could not be performed."""


def log(msg):
    print(f"drill: {msg}", file=sys.stderr, flush=True)


def free_port():
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def addr(port):
    return f"127.0.0.1:{port}"


def parse_duration(text):
    m = re.fullmatch(r"(\d+(?:\.\d+)?)(ms|s|m)", text.strip())
    if not m:
        raise argparse.ArgumentTypeError(f"not a duration (e.g. 1s, 200ms): {text!r}")
    v = float(m.group(1)) * {"ms": 0.001, "s": 1.0, "m": 60.0}[m.group(2)]
    if not 0.01 <= v <= 3600:
        raise argparse.ArgumentTypeError(f"must be 10ms..1h: {text!r}")
    return text.strip()


def duration_seconds(text):
    m = re.fullmatch(r"(\d+(?:\.\d+)?)(ms|s|m)", text)
    return float(m.group(1)) * {"ms": 0.001, "s": 1.0, "m": 60.0}[m.group(2)]


def http_get(address, path, timeout=2.0):
    host, _, port = address.rpartition(":")
    conn = http.client.HTTPConnection(host, int(port), timeout=timeout)
    try:
        conn.request("GET", path)
        r = conn.getresponse()
        return r.status, r.read()
    finally:
        conn.close()


# ---------------------------------------------------------------------------------------------
# processes: each in its own session (process group), stopped by its own id


class Proc:
    def __init__(self, name, argv, workdir):
        self.name, self.argv, self.workdir = name, argv, workdir
        self.popen = None
        self.logf = None

    def start(self):
        self.logf = open(os.path.join(self.workdir, f"{self.name}.log"), "ab")
        self.popen = subprocess.Popen(self.argv, stdout=self.logf, stderr=subprocess.STDOUT,
                                      stdin=subprocess.DEVNULL, start_new_session=True)
        return self

    def alive(self):
        return self.popen is not None and self.popen.poll() is None

    def signal(self, sig):
        if self.alive():
            try:
                os.killpg(self.popen.pid, sig)
            except ProcessLookupError:
                pass

    def kill(self):
        """SIGKILL, and reap."""
        if self.popen is None:
            return
        self.signal(signal.SIGKILL)
        try:
            self.popen.wait(5)
        except subprocess.TimeoutExpired:
            pass
        if self.logf:
            self.logf.close()
            self.logf = None

    def stop(self, grace=3.0):
        if self.popen is None:
            return
        self.signal(signal.SIGTERM)
        try:
            self.popen.wait(grace)
        except subprocess.TimeoutExpired:
            pass
        self.kill()

    def tail(self, n=15):
        try:
            with open(os.path.join(self.workdir, f"{self.name}.log"), "rb") as f:
                lines = f.read().decode("utf-8", "replace").splitlines()
            return "\n".join(lines[-n:])
        except OSError:
            return ""

    def wait_http(self, address, path, timeout=20.0):
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if not self.alive():
                raise DrillError(f"{self.name} exited during start-up:\n{self.tail()}")
            try:
                if http_get(address, path, timeout=1.0)[0] == 200:
                    return
            except OSError:
                pass
            time.sleep(0.05)
        raise DrillError(f"{self.name} not ready at http://{address}{path} after {timeout:.0f} s:"
                         f"\n{self.tail()}")


# ---------------------------------------------------------------------------------------------
# metrics: counters of both gateways, polled, summed across gateway restarts

_SAMPLE = re.compile(r"^([a-zA-Z_:][a-zA-Z0-9_:]*)(\{[^}]*\})?\s+(\S+)")
_LABEL = re.compile(r'([a-zA-Z_][a-zA-Z0-9_]*)="((?:[^"\\]|\\.)*)"')
COUNTERS = ("sluice_upstream_retries_total", "sluice_cross_city_requests_total",
            "sluice_unit_requests_total")


def parse_metrics(text):
    out = {}
    for line in text.splitlines():
        m = _SAMPLE.match(line)
        if not m:
            continue
        labels = tuple(sorted(_LABEL.findall(m.group(2) or "")))
        try:
            out[(m.group(1), labels)] = float(m.group(3))
        except ValueError:
            pass
    return out


class Metrics:
    """Accumulates the COUNTERS of each gateway: a value lower than the last one seen means the
    gateway restarted, and counts from 0."""

    def __init__(self, gateways):
        self.gateways = gateways  # city -> Gateway
        self.lock = threading.Lock()
        self.last = {c: {} for c in gateways}
        self.total = {}
        self.stop_flag = threading.Event()
        self.thread = threading.Thread(target=self.run, daemon=True)

    def poll(self, city):
        gw = self.gateways[city]
        if not gw.proc.alive():
            return False
        try:
            status, body = http_get(gw.admin, "/metrics", timeout=1.0)
        except OSError:
            return False
        if status != 200:
            return False
        values = parse_metrics(body.decode("utf-8", "replace"))
        with self.lock:
            last = self.last[city]
            for key, v in values.items():
                if key[0] not in COUNTERS:
                    continue
                prev = last.get(key, 0.0)
                self.total[key] = self.total.get(key, 0.0) + (v - prev if v >= prev else v)
                last[key] = v
        return True

    def restarted(self, city):
        """The gateway was started again: its counters start from 0."""
        with self.lock:
            self.last[city] = {}

    def poll_all(self):
        for c in self.gateways:
            self.poll(c)

    def run(self):
        while not self.stop_flag.wait(0.25):
            self.poll_all()

    def snapshot(self):
        self.poll_all()
        with self.lock:
            return dict(self.total)


def summarize_counters(before, after):
    """(retries, forwards, spills, direct, unit results). Cross-city attempts of the unit service
    are not spills (unit services never spill): they are unit requests sent straight to the owner
    city's instances because its gateway was unreachable ("direct")."""
    d = {k: after.get(k, 0.0) - before.get(k, 0.0) for k in set(before) | set(after)}
    retries = forwards = spills = direct = 0
    units = {}
    for (name, labels), v in d.items():
        lab = dict(labels)
        if name == "sluice_upstream_retries_total":
            retries += v
        elif name == "sluice_cross_city_requests_total":
            if lab.get("service", "").startswith("peer:"):
                forwards += v
            elif lab.get("service") == SERVICES[1]:
                direct += v
            else:
                spills += v
        elif name == "sluice_unit_requests_total":
            units[lab.get("result", "")] = units.get(lab.get("result", ""), 0) + int(v)
    return (int(retries), int(forwards), int(spills), int(direct),
            {k: v for k, v in sorted(units.items()) if v})


def endpoint_available(gw, service, address):
    status, body = http_get(gw.admin, "/metrics", timeout=1.0)
    if status != 200:
        return False
    for (name, labels), v in parse_metrics(body.decode("utf-8", "replace")).items():
        lab = dict(labels)
        if (name == "sluice_endpoint_available" and lab.get("service") == service
                and lab.get("endpoint") == address):
            return v == 1
    return False


# ---------------------------------------------------------------------------------------------
# the system under test


class Sample:
    def __init__(self, sluice, workdir, service, city, n):
        self.service, self.city, self.n = service, city, n
        self.name = f"{service}-{city}{n}"
        self.port = free_port()
        self.address = addr(self.port)
        self.argv = [sluice, "sample-service", "--listen", self.address, "--name", service,
                     "--city", city, "--zone", f"{city}{n}", "--instance", self.name,
                     "--workers", "1"]
        self.proc = Proc(self.name, self.argv, workdir)

    def start(self):
        self.proc = Proc(self.name, self.argv, self.proc.workdir).start()
        return self

    def wait(self):
        self.proc.wait_http(self.address, "/healthz")


class Gateway:
    def __init__(self, sluice, workdir, city, ports, samples, interval):
        self.city = city
        self.name = f"gw-{city}"
        self.address = addr(ports[city])
        self.admin = addr(free_port())
        hc = {"path": "/healthz"}
        if interval is not None:
            hc["interval"] = interval
        retry = {"attempts": 2, "on": RETRY_ON}

        def eps(svc):
            return [{"address": s.address, "city": s.city, "zone": f"{s.city}{s.n}"}
                    for s in samples if s.service == svc]

        self.config = {
            "node": {"id": self.name, "city": city, "zone": f"{city}1"},
            "workers": 2,
            "listeners": [{"name": "public", "address": self.address}],
            "admin": {"address": self.admin},
            "access_log": {"path": os.path.join(workdir, f"{self.name}.access.log"),
                           "format": "json"},
            "services": [
                {"name": "catalog", "endpoints": eps("catalog"), "health_check": hc,
                 "retry": retry, "locality": {"prefer": "same_city"}},
                {"name": "accounts", "kind": "unit", "endpoints": eps("accounts"),
                 "health_check": hc, "retry": retry},
            ],
            "routes": [
                {"name": "catalog", "match": {"path_prefix": "/catalog"}, "service": "catalog"},
                {"name": "accounts", "match": {"path_prefix": "/accounts"},
                 "service": "accounts"},
            ],
            "units": {"key": "header:x-customer-id", "shards": SHARDS,
                      "owners": {"a": "0-49", "b": "50-99"},
                      "peers": {c: addr(ports[c]) for c in CITIES}},
        }
        self.config_path = os.path.join(workdir, f"{self.name}.yaml")
        with open(self.config_path, "w") as f:  # JSON is YAML
            json.dump(self.config, f, indent=1)
        self.argv = [sluice, "gateway", "--config", self.config_path]
        self.workdir = workdir
        self.proc = Proc(self.name, self.argv, workdir)

    def start(self):
        self.proc = Proc(self.name, self.argv, self.workdir).start()
        return self

    def wait(self, timeout=20.0):
        self.proc.wait_http(self.admin, "/ready", timeout)


# ---------------------------------------------------------------------------------------------
# client load


class Client(threading.Thread):
    """Sends paced requests to its home gateway; on a transport error, to the other gateway."""

    TRANSPORT = (OSError, http.client.HTTPException)

    def __init__(self, idx, home, other, rate, results, stop_flag, seed):
        super().__init__(daemon=True, name=f"client-{idx}")
        self.idx, self.home, self.other = idx, home, other
        self.period = 1.0 / rate
        self.results, self.stop_flag = results, stop_flag
        self.rng = random.Random(seed)
        self.conns = {}

    def conn(self, address):
        c = self.conns.get(address)
        if c is None:
            host, _, port = address.rpartition(":")
            c = self.conns[address] = http.client.HTTPConnection(host, int(port), timeout=10)
        return c

    def drop(self, address):
        c = self.conns.pop(address, None)
        if c is not None:
            c.close()

    def send(self, address, path, headers):
        c = self.conn(address)
        try:
            c.request("GET", path, headers=headers)
            r = c.getresponse()
            body = r.read()
            if r.will_close:
                self.drop(address)
            return r.status, body
        except self.TRANSPORT:
            self.drop(address)
            raise

    def run(self):
        n = 0
        next_at = time.monotonic()
        while not self.stop_flag.is_set():
            now = time.monotonic()
            if next_at > now:
                if self.stop_flag.wait(next_at - now):
                    break
            elif now - next_at > 1.0:
                next_at = now  # fell behind (slow answers): no burst to catch up
            next_at += self.period
            n += 1
            if n % 2:
                kind, customer = "global", None
                path, headers = f"/catalog/{self.idx}-{n}", {}
            else:
                kind = "unit"
                customer = self.rng.randrange(SHARDS * 1000)  # shard = customer % 100
                path, headers = f"/accounts/{customer}", {"x-customer-id": str(customer)}
            t0 = time.monotonic()
            retried, status, city, err = 0, 0, None, ""
            for attempt, address in enumerate((self.home, self.other)):
                try:
                    status, body = self.send(address, path, headers)
                    if status == 200:
                        try:
                            city = json.loads(body).get("city")
                        except ValueError:
                            pass
                    else:
                        try:
                            err = json.loads(body).get("code") or str(status)
                        except (ValueError, AttributeError):
                            err = str(status)
                    break
                except self.TRANSPORT as e:
                    err = type(e).__name__
                    if attempt == 0:
                        retried = 1
            self.results.append((t0, kind, customer, status == 200, status, city, retried, err))
        for address in list(self.conns):
            self.drop(address)


# ---------------------------------------------------------------------------------------------
# analysis


def bucket_failures(records, t0, t1):
    """Failures per 100 ms bucket of the requests sent in [t0, t1)."""
    n = max(1, int((t1 - t0) / BUCKET + 0.999))
    buckets = [0] * n
    for r in records:
        if t0 <= r[0] < t1 and not r[3]:
            buckets[min(n - 1, int((r[0] - t0) / BUCKET))] += 1
    return buckets


def rto(records, t0, t1, level):
    """Seconds from t0 until failures per bucket stay at or below level; None = not recovered."""
    buckets = bucket_failures(records, t0, t1)
    last = -1
    for i, f in enumerate(buckets):
        if f > level:
            last = i
    if last < 0:
        return 0.0
    if last >= len(buckets) - 2:  # still failing in the last 200 ms of the phase
        return None
    return round((last + 1) * BUCKET, 1)


class Drill:
    def __init__(self, args):
        self.args = args
        self.sluice = args.sluice
        self.workdir = tempfile.mkdtemp(prefix="sluice-drill.")
        self.samples = []
        self.gateways = {}
        self.results = []
        self.stop_flag = threading.Event()
        self.clients = []
        self.metrics = None
        self.phases = []
        self.auto_switch = not args.no_auto_switch
        self.problems = []
        self.baseline_level = 0

    # -- set-up and tear-down

    def all_procs(self):
        return [s.proc for s in self.samples] + [g.proc for g in self.gateways.values()]

    def cleanup(self):
        self.stop_flag.set()
        if self.metrics:
            self.metrics.stop_flag.set()
        for p in self.all_procs():
            p.signal(signal.SIGTERM)
        deadline = time.monotonic() + 3
        for p in self.all_procs():
            if p.popen is not None:
                try:
                    p.popen.wait(max(0.0, deadline - time.monotonic()))
                except subprocess.TimeoutExpired:
                    pass
            p.kill()
        for c in self.clients:
            c.join(2)

    def setup(self):
        log(f"work directory (configs, logs): {self.workdir}")
        for svc in SERVICES:
            for city in CITIES:
                for n in (1, 2):
                    self.samples.append(Sample(self.sluice, self.workdir, svc, city, n))
        for s in self.samples:
            s.start()
        for s in self.samples:
            s.wait()
        ports = {c: free_port() for c in CITIES}
        for city in CITIES:
            self.gateways[city] = Gateway(self.sluice, self.workdir, city, ports, self.samples,
                                          self.args.interval)
        for gw in self.gateways.values():
            gw.start()
        for gw in self.gateways.values():
            gw.wait()
        self.metrics = Metrics(self.gateways)
        self.metrics.thread.start()
        # Every instance healthy in both gateways before the load starts.
        self.wait_healthy(self.samples, timeout=30)

    def wait_healthy(self, samples, timeout):
        deadline = time.monotonic() + timeout
        pending = [(gw, s) for gw in self.gateways.values() for s in samples]
        while pending:
            still = []
            for gw, s in pending:
                try:
                    ok = endpoint_available(gw, s.service, s.address)
                except OSError:
                    ok = False
                if not ok:
                    still.append((gw, s))
            pending = still
            if not pending:
                return
            if time.monotonic() > deadline:
                names = ", ".join(f"{s.name} in {gw.name}" for gw, s in pending)
                raise DrillError(f"not healthy after {timeout:.0f} s: {names}")
            time.sleep(0.1)

    def start_load(self):
        per = self.args.rate / self.args.clients
        for i in range(self.args.clients):
            home, other = ("a", "b") if i % 2 == 0 else ("b", "a")
            c = Client(i, self.gateways[home].address, self.gateways[other].address, per,
                       self.results, self.stop_flag, seed=1000 + i)
            self.clients.append(c)
            c.start()

    # -- steps

    def switch(self, frm, to, shards=None):
        argv = [self.sluice, "gateway", "switch"]
        for gw in self.gateways.values():
            argv += ["--admin", gw.admin]
        argv += ["--from", frm, "--to", to]
        if shards:
            argv += ["--shards", shards]
        t = time.monotonic()
        p = subprocess.run(argv, capture_output=True, text=True, timeout=60)
        took = time.monotonic() - t
        if p.returncode != 0:
            raise DrillError(f"switch {frm} -> {to} failed (exit {p.returncode}): "
                             f"{p.stderr.strip() or p.stdout.strip()}")
        return took

    def run_phase(self, name, event, duration):
        """event() runs at the phase start and returns notes; the phase lasts until
        start + duration, or until the event is done + 1 s if that is later."""
        log(f"phase {name}")
        before = self.metrics.snapshot()
        t0 = time.monotonic()
        notes = {}
        error = None
        try:
            notes = event() or {}
            notes.setdefault("step_done_at_seconds", round(time.monotonic() - t0, 2))
        except DrillError as e:
            error = str(e)
            self.problems.append(f"{name}: {e}")
            log(f"phase {name}: {e}")
        t_end = max(t0 + duration, time.monotonic() + 1.0)
        while time.monotonic() < t_end:
            time.sleep(0.05)
        t1 = time.monotonic()
        after = self.metrics.snapshot()
        self.phases.append({"name": name, "t0": t0, "t1": t1, "before": before, "after": after,
                            "notes": notes, "error": error})

    def phase_baseline(self):
        return {}

    def phase_fault1(self):
        t = time.monotonic()
        killed = [s for s in self.samples if s.city == "a"]
        for s in killed:
            s.proc.kill()
        killed_at = round(time.monotonic() - t, 2)
        if self.auto_switch:
            # The runbook's automation: the first failed unit request (the shards' home city is
            # gone; unit services never spill) triggers the switch of city a's shards to b.
            while time.monotonic() - t < self.args.duration / 2:
                if any(not r[3] and r[1] == "unit" and r[0] >= t for r in list(self.results)[-400:]):
                    break
                time.sleep(0.005)
            switch_took = self.switch("a", "b")
            switched_at = time.monotonic() - t
        # Detection: until both gateways count every killed instance unavailable (health checks
        # or outlier detection), watched for most of the phase.
        pending = [(gw, s) for gw in self.gateways.values() for s in killed]
        detect = None
        while time.monotonic() - t < self.args.duration - 0.5:
            pending = [(gw, s) for gw, s in pending if not self.unavailable(gw, s)]
            if not pending:
                detect = round(time.monotonic() - t, 2)
                break
            time.sleep(0.05)
        notes = {"killed": ",".join(s.name for s in killed), "detected_after_seconds": detect,
                 "step_done_at_seconds": killed_at}
        if self.auto_switch:
            notes["switch_seconds"] = round(switch_took, 3)
            notes["switched_at_seconds"] = round(switched_at, 3)
        return notes

    @staticmethod
    def unavailable(gw, s):
        try:
            return not endpoint_available(gw, s.service, s.address)
        except OSError:
            return False

    def phase_switch(self):
        took = self.switch("a", "b")
        return {"switch_seconds": round(took, 3)}

    def phase_restore(self):
        t = time.monotonic()
        restarted = [s for s in self.samples if s.city == "a"]
        for s in restarted:
            s.start()
        for s in restarted:
            s.wait()
        self.wait_healthy(restarted, timeout=30)
        healthy_after = time.monotonic() - t
        took = self.switch("b", "a", "0-49")
        return {"healthy_after_seconds": round(healthy_after, 2),
                "switch_back_seconds": round(took, 3)}

    def phase_fault2(self):
        gw = self.gateways["a"]
        self.metrics.poll("a")
        gw.proc.kill()
        t = time.monotonic()
        time.sleep(self.args.gateway_down)
        gw.start()
        self.metrics.restarted("a")
        gw.wait()
        return {"gateway_down_seconds": round(time.monotonic() - t, 2)}

    # -- the run

    def run(self):
        self.setup()
        self.start_load()
        time.sleep(1.0)  # warm-up, not measured
        d = self.args.duration
        self.run_phase("baseline", self.phase_baseline, d)
        self.run_phase("fault1", self.phase_fault1, d)
        if not self.auto_switch:
            self.run_phase("switch", self.phase_switch, d)
        if not self.problems:
            self.run_phase("restore", self.phase_restore, d)
        if self.args.kill_gateway and not self.problems:
            self.run_phase("fault2", self.phase_fault2, d)
        self.stop_flag.set()
        for c in self.clients:
            c.join(15)

    def report(self):
        base = self.phases[0]
        self.baseline_level = max(bucket_failures(self.results, base["t0"], base["t1"]))
        rows = []
        for ph in self.phases:
            t0, t1 = ph["t0"], ph["t1"]
            recs = [r for r in self.results if t0 <= r[0] < t1]
            glob = [r for r in recs if r[1] == "global"]
            unit = [r for r in recs if r[1] == "unit"]
            retries, forwards, spills, direct, units = summarize_counters(ph["before"],
                                                                          ph["after"])
            client_retries = sum(r[6] for r in recs)
            errors = {}
            for r in recs:
                if not r[3]:
                    errors[r[7] or str(r[4])] = errors.get(r[7] or str(r[4]), 0) + 1
            served = {}
            for r in recs:
                if r[3]:
                    k = f"{r[1]}:{r[5]}"
                    served[k] = served.get(k, 0) + 1
            is_base = ph["name"] == "baseline"
            row = {
                "phase": ph["name"],
                "seconds": round(t1 - t0, 2),
                "rto_s": None if is_base else rto(recs, t0, t1, self.baseline_level),
                "rto_global_s": None if is_base else rto(glob, t0, t1, self.baseline_level),
                "rto_unit_s": None if is_base else rto(unit, t0, t1, self.baseline_level),
                "recovered": True,
                "sent": len(recs),
                "failed": sum(1 for r in recs if not r[3]),
                "failed_global": sum(1 for r in glob if not r[3]),
                "failed_unit": sum(1 for r in unit if not r[3]),
                "failed_unit_city_a_shards": sum(1 for r in unit if not r[3] and r[2] % 100 < 50),
                "failed_after_step": sum(1 for r in recs if not r[3] and r[0] >= t0 + ph[
                    "notes"].get("step_done_at_seconds", 0)),
                "gateway_retries": retries,
                "client_retries": client_retries,
                "retried": retries + client_retries,
                "cross_city_forwards": forwards,
                "cross_city_spills": spills,
                "cross_city_direct": direct,
                "unit_requests": units,
                "errors": dict(sorted(errors.items())),
                "served_by_city": dict(sorted(served.items())),
                "notes": ph["notes"],
                "error": ph["error"],
            }
            if not is_base:
                row["recovered"] = row["rto_s"] is not None
            rows.append(row)
        # Unit requests of city a's shards fail from fault 1 until the switch: their RTO counts
        # from the fault to the end of the last failing bucket in the switch phase.
        unit_rto_from_fault = None
        names = [p["name"] for p in self.phases]
        if "fault1" in names and "switch" in names:
            f1 = self.phases[names.index("fault1")]
            sw = self.phases[names.index("switch")]
            unit = [r for r in self.results if r[1] == "unit"]
            r_sw = rto(unit, sw["t0"], sw["t1"], self.baseline_level)
            if r_sw is not None:
                unit_rto_from_fault = round(sw["t0"] - f1["t0"] + r_sw, 1)
        interval = self.args.interval or "1s"
        return {
            "date": time.strftime("%Y-%m-%d"),
            "sluice": self.sluice,
            "health_check_interval": interval if self.args.interval else "1s (default)",
            "health_check_interval_s": duration_seconds(interval),
            "rto_target_s": 2 * duration_seconds(interval),
            "duration_per_phase_s": self.args.duration,
            "clients": self.args.clients,
            "rate": self.args.rate,
            "baseline_failures_per_bucket": self.baseline_level,
            "unit_rto_from_fault1_incl_switch_s": unit_rto_from_fault,
            "phases": rows,
            "problems": self.problems,
        }


def fmt_s(v):
    return "n/r" if v is None else f"{v:.1f}"


def print_table(rep, out):
    w = out.write
    w(f"\nDual-city drill, {rep['date']}: health-check interval {rep['health_check_interval']}, "
      f"{rep['clients']} clients, {rep['rate']:g} req/s offered, "
      f"{rep['duration_per_phase_s']:g} s per phase\n")
    w(f"RTO target (2 x interval): {rep['rto_target_s']:.1f} s; baseline failures per 100 ms: "
      f"{rep['baseline_failures_per_bucket']}\n\n")
    hdr = (f"{'phase':<9} {'RTO s':>6} {'global':>6} {'unit':>6} {'sent':>6} {'failed':>6} "
           f"{'retried':>16} {'forwards':>8} {'spills':>6} {'direct':>6}\n")
    w(hdr)
    w("-" * (len(hdr) - 1) + "\n")
    for r in rep["phases"]:
        base = r["phase"] == "baseline"
        rt = "-" if base else fmt_s(r["rto_s"])
        rg = "-" if base else fmt_s(r["rto_global_s"])
        ru = "-" if base else fmt_s(r["rto_unit_s"])
        retried = f"{r['retried']} ({r['gateway_retries']}+{r['client_retries']})"
        w(f"{r['phase']:<9} {rt:>6} {rg:>6} {ru:>6} {r['sent']:>6} {r['failed']:>6} "
          f"{retried:>16} {r['cross_city_forwards']:>8} {r['cross_city_spills']:>6} "
          f"{r['cross_city_direct']:>6}\n")
    w("\nRTO: seconds from the phase's event until failures per 100 ms are back at the baseline "
      "level (n/r: not recovered in the phase).\nretried: gateway retries + client retries "
      "(clients that fail over to the other gateway). forwards: unit requests sent to the other\n"
      "city's gateway; spills: global-service attempts sent to the other city's instances; direct:\n"
      "unit requests sent straight to the owner city's instances (its gateway unreachable).\n")
    if rep["unit_rto_from_fault1_incl_switch_s"] is not None:
        w(f"Unit requests of city a's shards: back {rep['unit_rto_from_fault1_incl_switch_s']:.1f}"
          f" s after fault 1 (they fail until the switch).\n")
    w("\nPer phase:\n")
    for r in rep["phases"]:
        bits = [f"{k}={v}" for k, v in r["notes"].items()]
        if r["errors"]:
            bits.append("errors " + ", ".join(f"{k}: {v}" for k, v in r["errors"].items()))
        if r["phase"] != "baseline":
            bits.append(f"failed after the step {r['failed_after_step']}")
        if r["failed_unit"]:
            bits.append(f"unit failures of shards 0-49: {r['failed_unit_city_a_shards']}"
                        f"/{r['failed_unit']}")
        bits.append("served " + ", ".join(f"{k} {v}" for k, v in r["served_by_city"].items()))
        if r["unit_requests"]:
            bits.append("unit results " + ", ".join(f"{k} {v}"
                                                   for k, v in r["unit_requests"].items()))
        if r["error"]:
            bits.append(f"STEP FAILED: {r['error']}")
        w(f"  {r['phase']}: " + "; ".join(bits) + "\n")
    for p in rep["problems"]:
        w(f"PROBLEM: {p}\n")
    out.flush()


def main():
    ap = argparse.ArgumentParser(
        description="Dual-city drill: two gateways, sample services in cities a and b, steady "
        "client load; kill city a's services, switch its shards to b, restore, optionally kill "
        "gateway a. Prints RTO, sent, failed, retried and cross-city traffic per phase.",
        epilog="Example: bench/drill.py --sluice build/sluice --kill-gateway. What the figures "
        "mean, and figures measured: docs/operations.md, 'Dual-city drills'.")
    ap.add_argument("--sluice", default=os.environ.get("SLUICE_BIN")
                    or os.path.join(ROOT, "build", "sluice"), metavar="PATH",
                    help="sluice binary (default: $SLUICE_BIN or build/sluice)")
    ap.add_argument("--duration", type=float, default=8.0, metavar="SEC",
                    help="seconds per phase (default 8)")
    ap.add_argument("--interval", type=parse_duration, default=None, metavar="DURATION",
                    help="health-check interval of both services, e.g. 500ms (default: the "
                    "config default, 1s)")
    ap.add_argument("--clients", type=int, default=4, metavar="N",
                    help="client threads, half to each gateway (default 4)")
    ap.add_argument("--rate", type=float, default=200.0, metavar="REQ_S",
                    help="requests per second offered by all clients together (default 200)")
    ap.add_argument("--no-auto-switch", action="store_true",
                    help="fault1 only kills city a's instances; the shards move in a separate "
                         "'switch' phase one phase later (shows the unit outage without a switch)")
    ap.add_argument("--kill-gateway", action="store_true",
                    help="add phase fault2: SIGKILL gateway a, restart it")
    ap.add_argument("--gateway-down", type=float, default=2.0, metavar="SEC",
                    help="seconds gateway a stays down in fault2 (default 2)")
    ap.add_argument("--json", action="store_true",
                    help="print the results as JSON on stdout (the table goes to stderr)")
    ap.add_argument("--keep", action="store_true",
                    help="keep the work directory (configs, logs) even when the run succeeds")
    args = ap.parse_args()
    if args.duration < 2 or args.clients < 2 or args.rate <= 0 or args.gateway_down < 0:
        ap.error("need --duration >= 2, --clients >= 2, --rate > 0, --gateway-down >= 0")
    if not (os.path.isfile(args.sluice) and os.access(args.sluice, os.X_OK)):
        print(f"drill: sluice binary not found at {args.sluice} (--sluice or 'make build')",
              file=sys.stderr)
        return 1
    args.sluice = os.path.abspath(args.sluice)

    def on_term(signum, frame):
        raise KeyboardInterrupt
    signal.signal(signal.SIGINT, signal.default_int_handler)  # also when started in background
    signal.signal(signal.SIGTERM, on_term)
    signal.signal(signal.SIGHUP, on_term)

    drill = Drill(args)
    rc = 0
    try:
        drill.run()
    except KeyboardInterrupt:
        log("interrupted; stopping everything")
        rc = 130
    except DrillError as e:
        log(f"could not run the drill: {e}")
        rc = 1
    finally:
        drill.cleanup()
    if rc == 0 and drill.phases:
        rep = drill.report()
        if args.json:
            print_table(rep, sys.stderr)
            json.dump(rep, sys.stdout, indent=2)
            sys.stdout.write("\n")
        else:
            print_table(rep, sys.stdout)
        if rep["problems"]:
            rc = 1
    if rc == 0 and not args.keep:
        shutil.rmtree(drill.workdir, ignore_errors=True)
    else:
        log(f"logs kept in {drill.workdir}")
    return rc


if __name__ == "__main__":
    sys.exit(main())
