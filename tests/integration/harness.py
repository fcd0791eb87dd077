"""Shared harness for Sluice integration tests: real processes on loopback, ephemeral ports.

Python 3 standard library only. Every wait has a deadline; every process started through the
harness is killed and reaped on cleanup (also when a test fails), and the tail of its logs is
printed when the test that owns it failed.
"""

import ctypes
import faulthandler
import fcntl
import hashlib
import http.client
import json
import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import termios
import threading
import time
import unittest

SOURCE_DIR = os.environ.get("SLUICE_SOURCE_DIR") or os.path.dirname(
    os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
BIN = os.environ.get("SLUICE_BIN") or os.path.join(SOURCE_DIR, "build", "release", "sluice")
PROMTOOL = shutil.which("promtool") or "/usr/bin/promtool"

# A single test may not run longer than this (seconds); a hung test dumps every thread's stack
# and ends the process, so ctest reports a failure instead of waiting for its own timeout.
TEST_DEADLINE = float(os.environ.get("SLUICE_TEST_DEADLINE", "180"))
LOG_TAIL_LINES = 40


def require_binary():
    if not (os.path.isfile(BIN) and os.access(BIN, os.X_OK)):
        raise RuntimeError(f"sluice binary not found at {BIN} (set SLUICE_BIN)")


# ---------------------------------------------------------------------------------------------
# Ports, time


def free_port():
    """An ephemeral loopback port that was free a moment ago (bind port 0, read it, close)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class DeadPort:
    """A loopback port that refuses connections: bound but never listening, so that no other
    process can take it while the test runs. close() releases it."""

    def __init__(self):
        self.sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        self.sock.bind(("127.0.0.1", 0))
        self.address = addr(self.sock.getsockname()[1])

    def close(self):
        self.sock.close()


def addr(port):
    return f"127.0.0.1:{port}"


def split_addr(address):
    host, _, port = address.rpartition(":")
    return host, int(port)


def wait_until(predicate, timeout, interval=0.05, message="condition"):
    """Polls predicate() until it returns a truthy value; returns it, or raises AssertionError."""
    deadline = time.monotonic() + timeout
    last_exc = None
    while True:
        try:
            value = predicate()
            if value:
                return value
        except Exception as e:  # noqa: BLE001 - the predicate may fail until ready
            last_exc = e
        if time.monotonic() >= deadline:
            raise AssertionError(f"timed out after {timeout}s waiting for {message}"
                                 + (f" (last error: {last_exc!r})" if last_exc else ""))
        time.sleep(interval)


# ---------------------------------------------------------------------------------------------
# YAML (block style, so that --validate line numbers are meaningful)

_PLAIN = re.compile(r"[A-Za-z0-9_/][A-Za-z0-9_./:-]*\Z")
_NUMBERISH = re.compile(r"[-+]?(\d[\d_]*)?(\.\d*)?([eE][-+]?\d+)?\Z|0[xXoO][0-9a-fA-F]+\Z")
_RESERVED = {"true", "false", "yes", "no", "on", "off", "null", "y", "n", "~"}


def _yaml_scalar(v):
    if v is True:
        return "true"
    if v is False:
        return "false"
    if v is None:
        return "null"
    if isinstance(v, (int, float)):
        return repr(v)
    s = str(v)
    if _PLAIN.match(s) and not _NUMBERISH.match(s) and s.lower() not in _RESERVED:
        return s
    return json.dumps(s)


def _is_scalar(v):
    return not isinstance(v, (dict, list, tuple))


def _yaml_lines(obj, indent):
    pad = " " * indent
    lines = []
    if isinstance(obj, dict):
        for k, v in obj.items():
            key = _yaml_scalar(k)
            if _is_scalar(v):
                lines.append(f"{pad}{key}: {_yaml_scalar(v)}")
            elif not v:
                lines.append(f"{pad}{key}: {'{}' if isinstance(v, dict) else '[]'}")
            elif isinstance(v, dict):
                lines.append(f"{pad}{key}:")
                lines.extend(_yaml_lines(v, indent + 2))
            elif all(_is_scalar(x) for x in v):
                lines.append(f"{pad}{key}: [{', '.join(_yaml_scalar(x) for x in v)}]")
            else:
                lines.append(f"{pad}{key}:")
                lines.extend(_yaml_lines(v, indent + 2))
    else:
        for item in obj:
            if _is_scalar(item):
                lines.append(f"{pad}- {_yaml_scalar(item)}")
                continue
            sub = _yaml_lines(item, indent + 2)
            if not sub:
                lines.append(f"{pad}- {{}}" if isinstance(item, dict) else f"{pad}- []")
                continue
            sub[0] = f"{pad}- " + sub[0][indent + 2:]
            lines.extend(sub)
    return lines


def to_yaml(obj):
    return "\n".join(_yaml_lines(obj, 0)) + "\n"


# ---------------------------------------------------------------------------------------------
# Config builders


def endpoint(address, city="a", zone="a1", weight=1):
    return {"address": address, "city": city, "zone": zone, "weight": weight}


def service(name, *addresses, **extra):
    svc = {"name": name, "endpoints": [endpoint(a) for a in addresses]}
    svc.update(extra)
    return svc


def route(name, service_name, strip_prefix=None, prefix_rewrite=None, **match):
    r = {"name": name, "match": match or {"path_prefix": "/"}, "service": service_name}
    if strip_prefix is not None:
        r["strip_prefix"] = strip_prefix
    if prefix_rewrite is not None:
        r["prefix_rewrite"] = prefix_rewrite
    return r


# ---------------------------------------------------------------------------------------------
# HTTP (well-formed requests through http.client)


class Response:
    def __init__(self, status, headers, body, reason="", version="HTTP/1.1", status_line=""):
        self.status = status
        self.headers = list(headers)  # [(name, value)] as received
        self.body = body
        self.reason = reason
        self.version = version
        self.status_line = status_line

    def header(self, name, default=None):
        name = name.lower()
        for k, v in self.headers:
            if k.lower() == name:
                return v
        return default

    def header_all(self, name):
        name = name.lower()
        return [v for k, v in self.headers if k.lower() == name]

    def json(self):
        try:
            return json.loads(self.body)
        except ValueError as e:
            raise AssertionError(f"response body is not JSON ({e}): {self.body[:300]!r}") from None

    def __repr__(self):
        return f"<Response {self.status} headers={self.headers} body={self.body[:200]!r}>"


def http_request(address, method="GET", path="/", headers=None, body=None, timeout=10):
    """One request on a new connection (http.client), fully read. Raises on transport errors."""
    host, port = split_addr(address)
    conn = http.client.HTTPConnection(host, port, timeout=timeout)
    try:
        conn.request(method, path, body=body, headers=headers or {})
        r = conn.getresponse()
        data = r.read()
        return Response(r.status, r.getheaders(), data, r.reason,
                        "HTTP/1.1" if r.version == 11 else "HTTP/1.0")
    finally:
        conn.close()


def get_json(address, path, timeout=5):
    r = http_request(address, "GET", path, timeout=timeout)
    return r.status, (r.json() if r.body else None)


# ---------------------------------------------------------------------------------------------
# Raw sockets (malformed requests, pipelining, exact framing)


class ConnClosed(Exception):
    """The peer closed (EOF) or reset the connection."""


class RawConn:
    def __init__(self, address, timeout=5.0):
        host, port = split_addr(address)
        self.sock = socket.create_connection((host, port), timeout=timeout)
        self.sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        self.timeout = timeout
        self.buf = bytearray()
        self.eof = False
        self.reset = False

    def send(self, data):
        if isinstance(data, str):
            data = data.encode("latin-1")
        self.sock.sendall(data)

    def close(self):
        try:
            self.sock.close()
        except OSError:
            pass

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()

    def _fill(self, timeout=None):
        if self.eof:
            raise ConnClosed("reset" if self.reset else "eof")
        self.sock.settimeout(self.timeout if timeout is None else timeout)
        try:
            chunk = self.sock.recv(1 << 20)
        except (ConnectionResetError, BrokenPipeError):
            self.eof = self.reset = True
            raise ConnClosed("reset") from None
        if not chunk:
            self.eof = True
            raise ConnClosed("eof")
        self.buf += chunk

    def _read_body(self, remaining, sink):
        """Passes `remaining` body bytes (None: until EOF) to sink, as memoryviews that are
        valid only during the call. Large bodies go straight from the socket into a scratch
        buffer: the harness must not be the bottleneck of throughput tests."""
        if remaining is not None and remaining <= len(self.buf):
            sink(memoryview(bytes(self.buf[:remaining])))
            del self.buf[:remaining]
            return
        if self.buf:
            sink(memoryview(bytes(self.buf)))
            if remaining is not None:
                remaining -= len(self.buf)
            self.buf.clear()
        if self.eof:
            raise ConnClosed("reset" if self.reset else "eof")
        scratch = getattr(self, "_scratch", None)
        if scratch is None:
            scratch = self._scratch = bytearray(1 << 20)
        view = memoryview(scratch)
        self.sock.settimeout(self.timeout)
        while remaining is None or remaining > 0:
            want = len(scratch) if remaining is None else min(len(scratch), remaining)
            try:
                k = self.sock.recv_into(scratch, want)
            except (ConnectionResetError, BrokenPipeError):
                self.eof = self.reset = True
                raise ConnClosed("reset") from None
            if k == 0:
                self.eof = True
                raise ConnClosed("eof")
            sink(view[:k])
            if remaining is not None:
                remaining -= k

    def _read_line(self):
        while True:
            i = self.buf.find(b"\r\n")
            if i >= 0:
                line = bytes(self.buf[:i])
                del self.buf[:i + 2]
                return line
            self._fill()

    def _read_exact(self, n):
        while len(self.buf) < n:
            self._fill()
        data = bytes(self.buf[:n])
        del self.buf[:n]
        return data

    def read_head(self):
        """Reads a status line and headers. Raises ConnClosed if the connection ends first."""
        status_line = self._read_line().decode("latin-1")
        m = re.match(r"(HTTP/\d\.\d) (\d{3})(?: (.*))?\Z", status_line)
        if not m:
            raise AssertionError(f"malformed status line: {status_line!r}")
        headers = []
        while True:
            line = self._read_line().decode("latin-1")
            if not line:
                break
            name, sep, value = line.partition(":")
            if not sep:
                raise AssertionError(f"malformed header line: {line!r}")
            headers.append((name, value.strip()))
        return Response(int(m.group(2)), headers, b"", m.group(3) or "", m.group(1), status_line)

    def read_response(self, method="GET", body_sink=None):
        """Reads the next response (a 1xx is returned on its own). Body framed by
        Content-Length, chunked, or connection close. body_sink(bytes) receives the body
        instead of accumulating it (the returned body is then b"")."""
        r = self.read_head()
        if 100 <= r.status < 200 or r.status in (204, 304) or method == "HEAD":
            return r
        parts = []
        sink = body_sink or (lambda m: parts.append(bytes(m)))
        te = ",".join(r.header_all("transfer-encoding")).lower()
        cl = r.header("content-length")
        if "chunked" in te:
            while True:
                size_line = self._read_line().decode("latin-1")
                size = int(size_line.split(";")[0].strip(), 16)
                if size == 0:
                    while self._read_line():  # trailers
                        pass
                    break
                self._read_body(size, sink)
                if self._read_exact(2) != b"\r\n":
                    raise AssertionError("chunk not followed by CRLF")
        elif cl is not None:
            self._read_body(int(cl), sink)
        else:
            try:
                self._read_body(None, sink)
            except ConnClosed:
                pass
        if body_sink is None:
            r.body = b"".join(parts)
        return r

    def request(self, method="GET", path="/", headers=None, body=b"", host="test"):
        """Sends one well-formed request (Content-Length framing) and reads its response."""
        self.send(build_request(method, path, headers, body, host))
        return self.read_response(method)

    def wait_closed(self, timeout=3.0):
        """True if the peer closes (EOF or reset) within timeout; bytes received meanwhile are
        kept in self.buf. False if the connection is still open after timeout."""
        deadline = time.monotonic() + timeout
        while True:
            left = deadline - time.monotonic()
            if left <= 0:
                return False
            try:
                self._fill(timeout=left)
            except ConnClosed:
                return True
            except socket.timeout:
                return False


def build_request(method="GET", path="/", headers=None, body=b"", host="test"):
    if isinstance(body, str):
        body = body.encode()
    lines = [f"{method} {path} HTTP/1.1", f"Host: {host}"]
    hdrs = dict(headers or {})
    if body or method in ("POST", "PUT", "PATCH"):
        if not any(k.lower() in ("content-length", "transfer-encoding") for k in hdrs):
            hdrs["Content-Length"] = str(len(body))
    for k, v in hdrs.items():
        lines.append(f"{k}: {v}")
    return ("\r\n".join(lines) + "\r\n\r\n").encode("latin-1") + body


def chunked(body, chunk_size=7):
    out = bytearray()
    for i in range(0, len(body), chunk_size):
        piece = body[i:i + chunk_size]
        out += f"{len(piece):x}\r\n".encode() + piece + b"\r\n"
    out += b"0\r\n\r\n"
    return bytes(out)


# ---------------------------------------------------------------------------------------------
# Prometheus text


_SAMPLE_RE = re.compile(r"([a-zA-Z_:][a-zA-Z0-9_:]*)(\{(.*)\})?\s+(\S+)(\s+\S+)?\Z")
_LABEL_RE = re.compile(r'\s*([a-zA-Z_][a-zA-Z0-9_]*)\s*=\s*"((?:[^"\\]|\\.)*)"\s*,?')


def parse_metrics(text):
    """[(name, {label: value}, float)] for every sample line."""
    out = []
    for line in text.splitlines():
        line = line.strip()
        if not line or line.startswith("#"):
            continue
        m = _SAMPLE_RE.match(line)
        if not m:
            raise AssertionError(f"unparsable metrics line: {line!r}")
        labels = {}
        if m.group(3):
            for lm in _LABEL_RE.finditer(m.group(3)):
                labels[lm.group(1)] = lm.group(2).encode().decode("unicode_escape")
        out.append((m.group(1), labels, float(m.group(4))))
    return out


def metric_sum(samples, name, **labels):
    """Sum of every series of `name` whose labels include `labels` (0 when none)."""
    total = 0.0
    for n, ls, v in samples:
        if n == name and all(ls.get(k) == str(val) for k, val in labels.items()):
            total += v
    return total


# ---------------------------------------------------------------------------------------------
# Processes

_libc = None


def _die_with_parent():
    # The child gets SIGKILL when the test process dies, even if no cleanup could run.
    global _libc
    try:
        if _libc is None:
            _libc = ctypes.CDLL("libc.so.6", use_errno=True)
        _libc.prctl(1, signal.SIGKILL)  # PR_SET_PDEATHSIG
    except Exception:  # noqa: BLE001
        pass


class Proc:
    def __init__(self, name, argv, workdir, env=None):
        self.name = name
        self.argv = argv
        self.workdir = workdir
        self.stdout_path = os.path.join(workdir, f"{name}.stdout")
        self.stderr_path = os.path.join(workdir, f"{name}.stderr")
        self.env = env
        self.popen = None

    def start(self):
        out = open(self.stdout_path, "ab")
        err = open(self.stderr_path, "ab")
        try:
            self.popen = subprocess.Popen(self.argv, stdout=out, stderr=err, stdin=subprocess.DEVNULL,
                                          cwd=self.workdir, env=self.env,
                                          preexec_fn=_die_with_parent)
        finally:
            out.close()
            err.close()
        return self

    @property
    def pid(self):
        return self.popen.pid

    def alive(self):
        return self.popen is not None and self.popen.poll() is None

    def returncode(self):
        return self.popen.poll()

    def signal(self, sig):
        if self.alive():
            self.popen.send_signal(sig)

    def wait(self, timeout):
        """Exit code, or raises AssertionError when still running after timeout."""
        try:
            return self.popen.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            raise AssertionError(f"{self.name} still running after {timeout}s") from None

    def kill(self):
        if self.popen is None:
            return
        if self.popen.poll() is None:
            try:
                self.popen.kill()
            except OSError:
                pass
        try:
            self.popen.wait(timeout=10)
        except subprocess.TimeoutExpired:
            pass

    def rss_bytes(self, field="VmRSS"):
        with open(f"/proc/{self.pid}/status") as f:
            for line in f:
                if line.startswith(field + ":"):
                    return int(line.split()[1]) * 1024
        raise AssertionError(f"{field} not found for pid {self.pid}")

    def log_text(self, which="both"):
        parts = []
        for path in ((self.stdout_path, self.stderr_path) if which == "both" else
                     (self.stdout_path,) if which == "stdout" else (self.stderr_path,)):
            try:
                with open(path, "rb") as f:
                    parts.append(f.read().decode("utf-8", "replace"))
            except OSError:
                pass
        return "".join(parts)

    def tail(self, n=LOG_TAIL_LINES):
        out = []
        for path in (self.stdout_path, self.stderr_path):
            try:
                with open(path, "rb") as f:
                    lines = f.read().decode("utf-8", "replace").splitlines()
            except OSError:
                continue
            out.append(f"----- {os.path.basename(path)} (last {min(n, len(lines))} of {len(lines)} lines)")
            out.extend(lines[-n:])
        rc = self.popen.poll() if self.popen else None
        out.insert(0, f"===== {self.name} pid={self.popen.pid if self.popen else '-'} "
                      f"exit={rc if rc is not None else 'running'} argv={' '.join(self.argv)}")
        return "\n".join(out)


class Sample(Proc):
    def __init__(self, workdir, name, city="a", zone=None, latency="0ms", error_rate=None,
                 workers=None, port=None, extra_args=()):
        self.port = port or free_port()
        self.address = addr(self.port)
        self.service_name = name
        argv = [BIN, "sample-service", "--listen", self.address, "--name", name, "--city", city]
        if zone:
            argv += ["--zone", zone]
        if latency is not None:
            argv += ["--latency", latency]
        if error_rate is not None:
            argv += ["--error-rate", str(error_rate)]
        if workers is not None:
            argv += ["--workers", str(workers)]
        argv += list(extra_args)
        super().__init__(f"sample-{name}-{self.port}", argv, workdir)

    def wait_ready(self, timeout=10):
        def ready():
            if not self.alive():
                raise AssertionError(f"{self.name} exited with {self.returncode()}:\n{self.tail()}")
            try:
                return http_request(self.address, "GET", "/healthz", timeout=1).status == 200
            except OSError:
                return False
        try:
            wait_until(ready, timeout, message=f"{self.name} /healthz")
        except AssertionError as e:
            raise AssertionError(f"{e}\n{self.tail()}") from None
        return self

    def stats(self):
        r = http_request(self.address, "GET", "/_sample/stats", timeout=5)
        if r.status != 200:
            raise AssertionError(f"/_sample/stats -> {r.status} {r.body!r}")
        return r.json()

    def requests(self):
        """Traffic served: every request but /healthz, /_sample/stats and /_sample/faults."""
        return int(self.stats()["requests"])

    def health_checks(self):
        return int(self.stats()["health_checks"])

    def requests_since(self, before):
        return self.requests() - before

    def faults(self, **kw):
        r = http_request(self.address, "POST", "/_sample/faults", body=json.dumps(kw).encode(),
                         headers={"Content-Type": "application/json"}, timeout=5)
        if r.status not in (200, 204):
            raise AssertionError(f"/_sample/faults -> {r.status} {r.body!r}")
        return r


class Gateway(Proc):
    def __init__(self, workdir, config, name="gateway", listeners=("public",)):
        """config: a dict (listeners and admin are filled in when absent) or YAML text."""
        self.config_path = os.path.join(workdir, f"{name}.yaml")
        if isinstance(config, dict):
            config = dict(config)
            if "listeners" not in config:
                config["listeners"] = [{"name": n, "address": addr(free_port())} for n in listeners]
            if "admin" not in config:
                config["admin"] = {"address": addr(free_port())}
            config.setdefault("node", {"id": name, "city": "a", "zone": "a1"})
            config.setdefault("workers", 2)
            # make test runs the request-path files a second time with SLUICE_IO_BACKEND=epoll.
            if os.environ.get("SLUICE_IO_BACKEND"):
                config.setdefault("io_backend", os.environ["SLUICE_IO_BACKEND"])
            config.setdefault("access_log", {"path": os.path.join(workdir, f"{name}.access.log"),
                                             "format": "json"})
            self.config = config
            self.address = config["listeners"][0]["address"]
            self.addresses = {l["name"]: l["address"] for l in config["listeners"]}
            self.admin = config["admin"]["address"]
            self.write_config(config)
        else:
            self.config = None
            with open(self.config_path, "w") as f:
                f.write(config)
        super().__init__(name, [BIN, "gateway", "--config", self.config_path], workdir)

    def write_config(self, config):
        """Writes the config file atomically (readers never see a half-written file)."""
        text = config if isinstance(config, str) else to_yaml(config)
        tmp = self.config_path + ".tmp"
        with open(tmp, "w") as f:
            f.write(text)
        os.replace(tmp, self.config_path)
        if not isinstance(config, str):
            self.config = config

    def wait_ready(self, timeout=10):
        def ready():
            if not self.alive():
                raise AssertionError(f"gateway exited with {self.returncode()}")
            try:
                return http_request(self.admin, "GET", "/ready", timeout=1).status == 200
            except OSError:
                return False
        try:
            wait_until(ready, timeout, message="gateway /ready")
        except AssertionError as e:
            raise AssertionError(f"{e}\n{self.tail()}") from None
        return self

    def admin_get(self, path, timeout=5):
        return http_request(self.admin, "GET", path, timeout=timeout)

    def metrics_text(self):
        r = self.admin_get("/metrics")
        if r.status != 200:
            raise AssertionError(f"GET /metrics -> {r.status} {r.body[:200]!r}")
        return r.body.decode()

    def metrics(self):
        return parse_metrics(self.metrics_text())

    def metric(self, name, **labels):
        return metric_sum(self.metrics(), name, **labels)

    def metric_reaching(self, name, target, timeout=5, **labels):
        """A request is counted when its last byte has been handed to the socket, which can be
        after the client has read the response: polls until the sum reaches `target` and returns
        it (an overshoot is returned too, for the caller's assertEqual to show), or the last value
        after `timeout`."""
        deadline = time.monotonic() + timeout
        while True:
            value = self.metric(name, **labels)
            if value >= target or time.monotonic() >= deadline:
                return value
            time.sleep(0.02)

    def reload(self, timeout=10):
        return http_request(self.admin, "POST", "/reload", body=b"", timeout=timeout)


def validate(config_path, timeout=20):
    """Runs `sluice gateway --config FILE --validate`: (exit code, stdout, stderr)."""
    p = subprocess.run([BIN, "gateway", "--config", config_path, "--validate"],
                       capture_output=True, timeout=timeout, stdin=subprocess.DEVNULL)
    return p.returncode, p.stdout.decode("utf-8", "replace"), p.stderr.decode("utf-8", "replace")


# ---------------------------------------------------------------------------------------------
# Test base class


def _test_failed(test):
    outcome = getattr(test, "_outcome", None)
    result = getattr(outcome, "result", None)
    if result is None:
        return True
    for t, _ in list(getattr(result, "failures", [])) + list(getattr(result, "errors", [])):
        if t is test or getattr(t, "test_case", None) is test:
            return True
    return False


class SluiceTestCase(unittest.TestCase):
    """Base class: temp dir per test and per class, process start/cleanup, log dumps."""

    maxDiff = 4000
    _class_procs = []

    @classmethod
    def setUpClass(cls):
        require_binary()
        cls._class_procs = []
        cls.class_dir = tempfile.mkdtemp(prefix=f"sluice-{cls.__name__}-")
        cls.addClassCleanup(shutil.rmtree, cls.class_dir, True)

    @classmethod
    def class_start(cls, proc, ready=True):
        cls._class_procs.append(proc)
        cls.addClassCleanup(proc.kill)
        proc.start()
        if ready:
            proc.wait_ready()
        return proc

    @classmethod
    def class_sample(cls, name, **kw):
        return cls.class_start(Sample(cls.class_dir, name, **kw))

    @classmethod
    def class_gateway(cls, config, **kw):
        return cls.class_start(Gateway(cls.class_dir, config, **kw))

    def setUp(self):
        self._procs = []
        self._dir = None
        for p in type(self)._class_procs:
            if p.popen is not None and not p.alive():
                self.fail(f"{p.name} (shared by this class) died earlier with exit code "
                          f"{p.returncode()}")
        faulthandler.dump_traceback_later(TEST_DEADLINE, exit=True)
        self.addCleanup(faulthandler.cancel_dump_traceback_later)
        # Cleanups run last-in first-out: processes are killed, then logs dumped, then the
        # temp dir (with the logs) removed.
        self.addCleanup(self._remove_dir)
        self.addCleanup(self._dump_logs_on_failure)

    @property
    def dir(self):
        if self._dir is None:
            self._dir = tempfile.mkdtemp(prefix=f"sluice-{self._testMethodName}-")
        return self._dir

    def _remove_dir(self):
        if self._dir is not None and not os.environ.get("SLUICE_KEEP_TMP"):
            shutil.rmtree(self._dir, True)

    def _dump_logs_on_failure(self):
        if not _test_failed(self):
            return
        procs = list(type(self)._class_procs) + self._procs
        if procs:
            sys.stderr.write(f"\n##### logs for failed test {self.id()}\n")
            for p in procs:
                # Class-level processes are shared: print only what is new since the last dump.
                size = len(p.log_text())
                if getattr(p, "_dumped_size", None) == size:
                    sys.stderr.write(f"===== {p.name}: no new output (exit="
                                     f"{p.returncode() if p.popen else '-'})\n")
                    continue
                p._dumped_size = size
                sys.stderr.write(p.tail() + "\n")
            sys.stderr.flush()

    def start(self, proc, ready=True):
        self._procs.append(proc)
        self.addCleanup(proc.kill)
        proc.start()
        if ready:
            proc.wait_ready()
        return proc

    def sample(self, name, **kw):
        return self.start(Sample(self.dir, name, **kw))

    def gateway(self, config, ready=True, **kw):
        return self.start(Gateway(self.dir, config, **kw), ready=ready)

    # Assertions shared by several files.

    def assertGatewayError(self, resp, status):
        """A response the gateway made itself: status, JSON {"error": ...}, x-request-id."""
        self.assertEqual(resp.status, status, f"expected {status}, got {resp!r}")
        body = resp.json()
        self.assertIsInstance(body, dict, resp)
        self.assertIn("error", body, resp)
        self.assertTrue(resp.header("x-request-id"), f"no x-request-id on {resp!r}")
        return body

    def assertClosed(self, conn, timeout=3.0):
        self.assertTrue(conn.wait_closed(timeout), "connection still open after "
                        f"{timeout}s (pending bytes: {bytes(conn.buf[:200])!r})")


def sha256_stream(total, block):
    """(generator of `total` bytes made of `block` repeated, expected sha256 hex)."""
    h = hashlib.sha256()
    full, rest = divmod(total, len(block))
    for _ in range(full):
        h.update(block)
    h.update(block[:rest])
    return h.hexdigest()


def threads_run(fns, timeout):
    """Runs callables in threads; returns their results; raises the first exception."""
    results = [None] * len(fns)
    errors = []

    def wrap(i, fn):
        try:
            results[i] = fn()
        except BaseException as e:  # noqa: BLE001
            errors.append(e)

    ts = [threading.Thread(target=wrap, args=(i, fn), daemon=True) for i, fn in enumerate(fns)]
    for t in ts:
        t.start()
    deadline = time.monotonic() + timeout
    for t in ts:
        t.join(max(0, deadline - time.monotonic()))
    if any(t.is_alive() for t in ts):
        raise AssertionError(f"threads still running after {timeout}s")
    if errors:
        raise errors[0]
    return results


class FakeUpstream:
    """A tiny TCP server for upstream behaviour the sample service cannot produce (garbage
    responses, partial heads). handler(sock, head_bytes) runs once per request head received."""

    def __init__(self, handler):
        self.handler = handler
        self.listener = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        self.listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        self.listener.bind(("127.0.0.1", 0))
        # A deep accept queue: the accept loop is a Python thread that a loaded machine may not
        # run for a while, and a full queue drops SYNs (the gateway then sees a connect timeout).
        self.listener.listen(1024)
        self.address = addr(self.listener.getsockname()[1])
        self.requests = 0
        self.connections = 0
        self._stop = False
        self._lock = threading.Lock()
        self._thread = threading.Thread(target=self._serve, daemon=True)
        self._thread.start()

    def _serve(self):
        self.listener.settimeout(0.2)
        while not self._stop:
            try:
                s, _ = self.listener.accept()
            except socket.timeout:
                continue
            except OSError:
                return
            with self._lock:
                self.connections += 1
            threading.Thread(target=self._conn, args=(s,), daemon=True).start()

    def _conn(self, s):
        s.settimeout(10)
        buf = b""
        try:
            while not self._stop:
                while b"\r\n\r\n" not in buf:
                    chunk = s.recv(65536)
                    if not chunk:
                        return
                    buf += chunk
                head, _, buf = buf.partition(b"\r\n\r\n")
                with self._lock:
                    self.requests += 1
                if self.handler(s, head) is False:
                    return
        except OSError:
            pass
        finally:
            try:
                s.close()
            except OSError:
                pass

    def close(self):
        self._stop = True
        try:
            self.listener.close()
        except OSError:
            pass
        self._thread.join(2)


class MisbehavingUpstream:
    """An HTTP/1.1 upstream whose behaviour is chosen per request by the first path segment, for
    tests of what the gateway does when an upstream breaks the protocol. Every response body is
    `id=<ID>` (ID = the second path segment), so a client can check that the response it got
    belongs to its own request; bytes the upstream sends that belong to no request carry
    `id=<ID>-stray`. Behaviours (/BEHAVIOUR/ID):

      ok        a plain response (Content-Length, keep-alive)
      stray     a plain response, then `stray_delay` seconds later an unsolicited second one
      glued     a plain response with an unsolicited second one in the same write
      late      the response only after `late_delay` seconds (after the gateway's timeout)
      clte      a response with both Content-Length and Transfer-Encoding
      badchunk  a chunked response with an invalid chunk size
      upgrade   101 Switching Protocols to a request that did not ask for it, then a response
      early     a response as soon as the head arrived, before reading the request body; the
                body is then read and dropped (the connection stays open, keep-alive)
      earlyslow like early, but the response (Connection: close) is chunked and its last chunk
                only comes after `late_delay` seconds, so that the client can go on sending
      info      103 Early Hints, then the response
      close     a response without Content-Length, delimited by closing the connection
      hold      a plain response; the connection is remembered for inject_stray()

    Request bodies (Content-Length) are read before answering, except by `early`."""

    def __init__(self, stray_delay=0.3, late_delay=1.0):
        self.stray_delay = stray_delay
        self.late_delay = late_delay
        self.listener = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        self.listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        self.listener.bind(("127.0.0.1", 0))
        self.listener.listen(1024)
        self.address = addr(self.listener.getsockname()[1])
        self.connections = 0
        self.requests = []  # (connection number, behaviour, id) in arrival order
        self.garbage = []   # connection numbers that received bytes that were no request head
        self.early_body_bytes = {}  # id -> request body bytes received after an `early` answer
        self.ended = set()  # connection numbers the gateway closed (or that failed)
        self._held = []
        self._lock = threading.Lock()
        self._stop = False
        self._thread = threading.Thread(target=self._serve, daemon=True)
        self._thread.start()

    @staticmethod
    def response(ident, extra_headers=b""):
        body = f"id={ident}".encode()
        return (b"HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\n" + extra_headers +
                b"Content-Length: " + str(len(body)).encode() + b"\r\n\r\n" + body)

    def _serve(self):
        self.listener.settimeout(0.2)
        while not self._stop:
            try:
                s, _ = self.listener.accept()
            except socket.timeout:
                continue
            except OSError:
                return
            with self._lock:
                self.connections += 1
                n = self.connections
            threading.Thread(target=self._conn, args=(s, n), daemon=True).start()

    def _later(self, delay, fn):
        t = threading.Timer(delay, fn)
        t.daemon = True
        t.start()

    def _conn(self, s, n):
        s.settimeout(30)
        buf = b""

        def send(data):
            try:
                s.sendall(data)
            except OSError:
                pass

        try:
            while not self._stop:
                while b"\r\n\r\n" not in buf:
                    chunk = s.recv(65536)
                    if not chunk:
                        return
                    buf += chunk
                head, _, buf = buf.partition(b"\r\n\r\n")
                lines = head.decode("latin-1").split("\r\n")
                parts = lines[0].split(" ")
                if len(parts) != 3 or not parts[1].startswith("/"):
                    with self._lock:
                        self.garbage.append(n)
                    return
                segs = parts[1].split("?")[0].strip("/").split("/")
                what = segs[0]
                ident = segs[1] if len(segs) > 1 else "-"
                length = 0
                for line in lines[1:]:
                    k, _, v = line.partition(":")
                    if k.strip().lower() == "content-length":
                        length = int(v.strip())
                with self._lock:
                    self.requests.append((n, what, ident))
                if what == "early":
                    send(self.response(ident))
                if what == "earlyslow":
                    body = f"id={ident}".encode()
                    send(b"HTTP/1.1 200 OK\r\nConnection: close\r\n"
                         b"Transfer-Encoding: chunked\r\n\r\n" +
                         f"{len(body):x}\r\n".encode() + body + b"\r\n")
                    self._later(self.late_delay, lambda: send(b"0\r\n\r\n"))
                if what in ("early", "earlyslow"):
                    self.early_body_bytes[ident] = len(buf)
                while len(buf) < length:
                    chunk = s.recv(65536)
                    if not chunk:
                        return
                    buf += chunk
                    if what in ("early", "earlyslow"):
                        self.early_body_bytes[ident] = len(buf)
                buf = buf[length:]
                resp = self.response(ident)
                stray = self.response(f"{ident}-stray")
                if what == "earlyslow":
                    pass
                elif what in ("ok", "early", "hold"):
                    if what == "hold":
                        with self._lock:
                            self._held.append((s, ident))
                    if what != "early":
                        send(resp)
                elif what == "stray":
                    send(resp)
                    self._later(self.stray_delay, lambda d=stray: send(d))
                elif what == "glued":
                    send(resp + stray)
                elif what == "late":
                    self._later(self.late_delay, lambda d=resp: send(d))
                elif what == "clte":
                    body = f"id={ident}".encode()
                    send(b"HTTP/1.1 200 OK\r\nContent-Length: " + str(len(body)).encode() +
                         b"\r\nTransfer-Encoding: chunked\r\n\r\n" +
                         f"{len(body):x}\r\n".encode() + body + b"\r\n0\r\n\r\n" + stray)
                elif what == "badchunk":
                    send(b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\nzz\r\n" + stray)
                elif what == "upgrade":
                    send(b"HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\n"
                         b"Connection: Upgrade\r\n\r\n" + stray)
                elif what == "info":
                    send(b"HTTP/1.1 103 Early Hints\r\nLink: </a.css>; rel=preload\r\n\r\n" + resp)
                elif what == "close":
                    send(b"HTTP/1.1 200 OK\r\nConnection: close\r\n\r\n" +
                         f"id={ident}".encode())
                    s.close()
                    return
                else:
                    send(b"HTTP/1.1 404 Not Found\r\nContent-Length: 0\r\n\r\n")
        except OSError:
            pass
        finally:
            with self._lock:
                self.ended.add(n)
            # A delayed send may still be due: keep the socket until it had its chance.
            self._later(self.late_delay + self.stray_delay + 0.5, s.close)

    def inject_stray(self):
        """Writes an unsolicited response on the connections of the `hold` requests answered
        since the last call (when it returns, the bytes are in the gateway's socket buffer on
        loopback). True if there was one to write to."""
        with self._lock:
            held, self._held = self._held, []
        wrote = False
        for s, ident in held:
            try:
                s.sendall(self.response(f"{ident}-stray"))
                wrote = True
            except OSError:
                continue
            # Until the gateway's kernel has acknowledged them: they are in its socket buffer.
            deadline = time.monotonic() + 5
            outq = bytearray(4)
            while time.monotonic() < deadline:
                try:
                    fcntl.ioctl(s.fileno(), termios.TIOCOUTQ, outq)
                except OSError:
                    break
                if int.from_bytes(outq, sys.byteorder) == 0:
                    break
                time.sleep(0.001)
        return wrote

    def close(self):
        self._stop = True
        try:
            self.listener.close()
        except OSError:
            pass
        self._thread.join(2)
