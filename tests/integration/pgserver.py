"""A real PostgreSQL for integration tests: one server on a free loopback port, trust auth, a fresh
database per test. Python 3 standard library only.

The same recipe as PostgresServer in tests/unit/control/store_test.cc, and the same initdb template
(/tmp/sluice-pg<major>-template-uid<uid>, built once under a flock and copied with `cp -a`), so the
C++ and Python tests share it. PostgreSQL refuses to run as root: as root, initdb and postgres run
as `nobody`. The server gets PR_SET_PDEATHSIG, so a test process that dies leaves no server.

No installation: the test is skipped (as in the C++ store suite) unless SLUICE_REQUIRE_POSTGRES=1 or CI
is set (CI installs PostgreSQL with scripts/install-deps.sh, so there a missing one is a failure).
An installation that does not start is always a failure.
"""

import ctypes
import fcntl
import glob
import os
import pwd
import re
import shutil
import signal
import socket
import subprocess
import tempfile
import time
import unittest

_PR_SET_PDEATHSIG = 1
_libc = None


def _truthy(value):
    return bool(value) and value.strip().lower() not in ("0", "false", "no", "off")


def postgres_required():
    """True when a missing PostgreSQL must fail the test instead of skipping it."""
    return _truthy(os.environ.get("SLUICE_REQUIRE_POSTGRES", "")) or _truthy(
        os.environ.get("CI", ""))


def find_bindir():
    """$SLUICE_PG_BINDIR, else the newest /usr/lib/postgresql/<major>/bin with initdb, else None."""
    env = os.environ.get("SLUICE_PG_BINDIR")
    if env:
        return env
    found = []
    for d in glob.glob("/usr/lib/postgresql/*/bin"):
        major = os.path.basename(os.path.dirname(d))
        if os.path.exists(os.path.join(d, "initdb")) and re.fullmatch(r"\d+", major):
            found.append((int(major), d))
    return max(found)[1] if found else None


def _major_of(bindir):
    # /usr/lib/postgresql/15/bin -> 15 (as the C++ test does: the bin dir's parent's name).
    name = os.path.basename(os.path.dirname(os.path.normpath(bindir)))
    return int(name) if name.isdigit() else 0


class Identity:
    """Who runs initdb and postgres: `nobody` when we are root, else ourselves."""

    def __init__(self):
        self.drop = False
        self.uid = os.getuid()
        self.gid = os.getgid()
        if os.geteuid() == 0:
            try:
                pw = pwd.getpwnam("nobody")
            except KeyError:
                return
            self.drop = True
            self.uid = pw.pw_uid
            self.gid = pw.pw_gid

    def preexec(self, die_with_parent):
        def fn():
            if self.drop:
                os.setgroups([])
                os.setgid(self.gid)
                os.setuid(self.uid)
            if die_with_parent:  # after setuid, which clears it
                global _libc
                if _libc is None:
                    _libc = ctypes.CDLL("libc.so.6", use_errno=True)
                _libc.prctl(_PR_SET_PDEATHSIG, signal.SIGKILL)
        return fn


def _clean_env():
    # PG* variables of the caller (PGDATA, PGHOST, PGPASSWORD...) must not steer our tools.
    return {k: v for k, v in os.environ.items() if not k.startswith("PG")}


def _read(path):
    try:
        with open(path, "rb") as f:
            return f.read().decode("utf-8", "replace")
    except OSError:
        return ""


def _free_port():
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def remove_stale_servers():
    """A test process killed before its cleanup (its server dies with it) leaves its directory:
    remove those whose postmaster is gone, or that never got one and are older than 10 minutes.
    Same rule as the C++ test, so neither removes a directory the other is using."""
    for d in glob.glob("/tmp/sluice-pg-*"):
        pid = 0
        m = re.match(r"\s*(\d+)", _read(os.path.join(d, "data", "postmaster.pid")))
        if m:
            pid = int(m.group(1))
        if pid > 0:
            try:
                os.kill(pid, 0)
                dead = False
            except ProcessLookupError:
                dead = True
            except PermissionError:
                dead = False
        else:
            try:
                dead = os.path.getmtime(d) < time.time() - 600
            except OSError:
                dead = False
        if dead:
            shutil.rmtree(d, True)


class PostgresServer:
    """start() raises unittest.SkipTest (no installation, not required) or AssertionError (it
    would not start); then url(create_database()) per test; stop() at the end."""

    def __init__(self):
        self.bindir = None
        self.major = 0
        self.base = None
        self.port = 0
        self.popen = None
        self.who = Identity()
        self._databases = 0

    # --- public

    def start(self):
        self.bindir = find_bindir()
        if not self.bindir or not os.path.exists(os.path.join(self.bindir, "postgres")):
            why = (f"PostgreSQL is not installed: no initdb under /usr/lib/postgresql/*/bin "
                   f"(or $SLUICE_PG_BINDIR={os.environ.get('SLUICE_PG_BINDIR', '')!r} has no "
                   f"postgres); run scripts/install-deps.sh (make deps)")
            if postgres_required():
                raise AssertionError(why + " [required: SLUICE_REQUIRE_POSTGRES or CI is set]")
            raise unittest.SkipTest(why)
        self.major = _major_of(self.bindir)
        try:
            self._start()
        except BaseException:
            self.stop()
            raise
        return self

    def url(self, db):
        return f"postgres://sluice@127.0.0.1:{self.port}/{db}"

    def create_database(self, name=None):
        """A fresh, empty database; returns its name."""
        self._databases += 1
        name = name or f"t{self._databases}"
        # From 15 on, the default strategy copies the template through the WAL: slower here.
        self.sql(f"CREATE DATABASE {name}" + (" STRATEGY = FILE_COPY" if self.major >= 15 else ""))
        return name

    def sql(self, statement, db="postgres"):
        """Runs one statement with psql from bindir; returns its unaligned output."""
        p = subprocess.run(
            [os.path.join(self.bindir, "psql"), "-X", "-q", "-A", "-t", "-v", "ON_ERROR_STOP=1",
             "-h", "127.0.0.1", "-p", str(self.port), "-U", "sluice", "-d", db, "-c", statement],
            capture_output=True, stdin=subprocess.DEVNULL, timeout=30, env=_clean_env(),
            cwd=self.base)
        if p.returncode != 0:
            raise AssertionError(f"psql {statement!r} failed ({p.returncode}): "
                                 f"{p.stderr.decode('utf-8', 'replace').strip()}")
        return p.stdout.decode("utf-8", "replace").strip()

    def alive(self):
        return self.popen is not None and self.popen.poll() is None

    def log(self):
        return _read(os.path.join(self.base, "postgres.log")) if self.base else ""

    def stop(self):
        """Fast shutdown (SIGINT), SIGKILL after 5 s; removes the directory. Idempotent."""
        if self.popen is not None:
            if self.popen.poll() is None:
                try:
                    self.popen.send_signal(signal.SIGINT)
                    self.popen.wait(timeout=5)
                except subprocess.TimeoutExpired:
                    self.popen.kill()
                    self.popen.wait(timeout=10)
                except OSError:
                    pass
            self.popen = None
        if self.base is not None:
            shutil.rmtree(self.base, True)
            self.base = None

    # --- start-up

    def _start(self):
        remove_stale_servers()
        self.base = tempfile.mkdtemp(prefix="sluice-pg-", dir="/tmp")
        if self.who.drop:
            os.chown(self.base, self.who.uid, self.who.gid)
        data = os.path.join(self.base, "data")
        self._copy_template(data)
        log = os.path.join(self.base, "postgres.log")
        for _ in range(3):  # the free port may be taken meanwhile
            self.port = _free_port()
            with open(log, "ab") as out:
                self.popen = subprocess.Popen(
                    [os.path.join(self.bindir, "postgres"), "-D", data, "-p", str(self.port),
                     "-k", self.base, "-c", "listen_addresses=127.0.0.1", "-c", "fsync=off",
                     "-c", "synchronous_commit=off", "-c", "full_page_writes=off",
                     "-c", "shared_buffers=16MB", "-c", "max_connections=40"],
                    stdin=subprocess.DEVNULL, stdout=out, stderr=out, cwd=self.base,
                    env=_clean_env(), preexec_fn=self.who.preexec(die_with_parent=True))
            if self._wait_accepting(20):
                return
            if self.popen.poll() is None:
                raise AssertionError(f"postgres did not accept connections within 20 s:\n"
                                     f"{self.log()}")
            self.popen = None
            if "could not bind" not in self.log():
                break
        raise AssertionError(f"postgres did not start:\n{self.log()}")

    def _wait_accepting(self, timeout):
        isready = os.path.join(self.bindir, "pg_isready")
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.popen.poll() is not None:
                return False
            if os.path.exists(isready):
                ok = subprocess.run(
                    [isready, "-q", "-h", "127.0.0.1", "-p", str(self.port), "-U", "sluice",
                     "-d", "postgres", "-t", "1"],
                    stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                    env=_clean_env(), timeout=10).returncode == 0
            else:  # a TCP connect, then a moment for start-up to finish
                try:
                    socket.create_connection(("127.0.0.1", self.port), timeout=1).close()
                    time.sleep(0.2)
                    ok = True
                except OSError:
                    ok = False
            if ok:
                return True
            time.sleep(0.02)
        return False

    def _copy_template(self, data):
        """initdb takes seconds, so its output is kept once per major version and user and copied
        (cp -a keeps the owner). Built under a lock and renamed into place: whole or absent."""
        tmpl = f"/tmp/sluice-pg{self.major}-template-uid{self.who.uid}"
        fd = os.open(tmpl + ".lock", os.O_CREAT | os.O_RDWR, 0o600)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX)
            try:
                st = os.stat(os.path.join(tmpl, "PG_VERSION"))
                usable = st.st_uid == self.who.uid
            except OSError:
                usable = False
            if not usable:
                building = tmpl + ".building"
                shutil.rmtree(building, True)
                shutil.rmtree(tmpl, True)
                os.mkdir(building, 0o700)
                if self.who.drop:
                    os.chown(building, self.who.uid, self.who.gid)
                log = os.path.join(self.base, "initdb.log")
                with open(log, "ab") as out:
                    rc = subprocess.run(
                        [os.path.join(self.bindir, "initdb"), "-D", building, "-U", "sluice",
                         "--auth=trust", "--no-sync", "-E", "UTF8", "--locale=C"],
                        stdin=subprocess.DEVNULL, stdout=out, stderr=out, cwd=self.base,
                        env=_clean_env(), preexec_fn=self.who.preexec(die_with_parent=False),
                        timeout=120).returncode
                if rc != 0:
                    raise AssertionError(f"initdb failed ({rc}):\n{_read(log)}")
                os.rename(building, tmpl)
            p = subprocess.run(["/bin/cp", "-a", tmpl, data], capture_output=True,
                               stdin=subprocess.DEVNULL, timeout=60)
            if p.returncode != 0:
                raise AssertionError(f"copying {tmpl} failed:\n"
                                     f"{p.stderr.decode('utf-8', 'replace')}")
        finally:
            fcntl.flock(fd, fcntl.LOCK_UN)
            os.close(fd)


def start_for_class(cls):
    """Starts a server for a unittest class (call from setUpClass); stopped by a class cleanup.
    Skips or fails the class as described in the module docstring."""
    server = PostgresServer()
    cls.addClassCleanup(server.stop)
    server.start()
    return server
