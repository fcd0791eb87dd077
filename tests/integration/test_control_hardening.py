"""Control-plane hardening (issue 12), with real processes: deep JSON is refused with a 400 (was a
segfault), duplicate keys and blank reasons are refused, YAML alias bombs are refused in bounded
time and memory by `sluice ctl apply -f` and `sluice gateway`, a revoked bootstrap admin token
stays revoked across restarts (SQLite and PostgreSQL), and concurrent writers without
expected_version never see a 409 (SQLite, and two control planes on one PostgreSQL)."""

import json
import os
import resource
import subprocess
import threading
import time
import unittest

import pgserver
from harness import BIN, SluiceTestCase, addr, free_port
from test_control import Control, svc

# A billion-laughs document: 9 levels of 9 aliases, 9^9 (387 million) leaves when expanded.
LAUGHS = "".join(
    [f"l0: &l0 [{', '.join(['lol'] * 9)}]\n"] +
    [f"l{i}: &l{i} [{', '.join([f'*l{i - 1}'] * 9)}]\n" for i in range(1, 10)])
MEMORY_LIMIT = 1 << 30  # address space for the refusing process: far below what expansion needs
ANSWER_WITHIN = 10      # seconds; the refusals take milliseconds


def limit_memory():
    resource.setrlimit(resource.RLIMIT_AS, (MEMORY_LIMIT, MEMORY_LIMIT))


def run_bounded(argv, env=None):
    """Runs argv with 1 GiB of address space and a deadline: (rc, stdout, stderr, seconds)."""
    start = time.monotonic()
    p = subprocess.run(argv, capture_output=True, text=True, timeout=ANSWER_WITHIN,
                       preexec_fn=limit_memory, stdin=subprocess.DEVNULL, env=env)
    return p.returncode, p.stdout, p.stderr, time.monotonic() - start


class ControlHardeningTest(SluiceTestCase):
    def setUp(self):
        super().setUp()
        self.cp = self.start(Control(self.dir))

    def ctl(self, *args):
        return run_bounded([BIN, "ctl", "--server", self.cp.url, "--token-file",
                            self.cp.token_file, *args])

    def test_deep_json_is_refused_and_the_process_lives(self):
        deep = b"[" * 100_000 + b"]" * 100_000  # 200 KB, under the 4 MiB body cap
        for path in ("/v1/events", "/v1/apply", "/v1/stats", "/v1/rollback", "/v1/instances"):
            r = self.cp.call("POST", path, deep)
            self.assertEqual(r.status, 400, (path, r))
            self.assertEqual(r.json()["error"], "JSON nested deeper than 64 levels", path)
            self.assertTrue(self.cp.alive(), path)
        # 64 levels are fine (refused for what they are, not for their depth).
        r = self.cp.call("POST", "/v1/events", b"[" * 64 + b"]" * 64)
        self.assertEqual(r.status, 400, r)
        self.assertNotIn("nested deeper", r.json()["error"])
        # Deep inside an otherwise good apply.
        spec = {"endpoints": [{"address": "127.0.0.1:9"}]}
        body = json.dumps({"reason": "x", "resources": [
            {"kind": "service", "name": "a", "spec": spec}]})
        body = body.replace('"127.0.0.1:9"', "[" * 70 + "1" + "]" * 70)
        r = self.cp.call("POST", "/v1/apply", body.encode())
        self.assertEqual(r.status, 400, r)
        self.assertIn("nested deeper than 64", r.json()["error"])
        self.assertEqual(self.cp.call("GET", "/v1/versions").json(), [])

    def test_duplicate_keys_and_blank_reasons_are_refused(self):
        r = self.cp.call("POST", "/v1/apply",
                         b'{"reason": "a", "reason": "b", "resources": []}')
        self.assertEqual(r.status, 400, r)
        self.assertEqual(r.json()["error"], "reason: duplicate key")
        r = self.cp.call("POST", "/v1/apply", b'{"reason": "a", "resources": [{"kind": "service",'
                         b' "name": "a", "spec": {"endpoints": [], "endpoints": []}}]}')
        self.assertEqual(r.status, 400, r)
        self.assertEqual(r.json()["error"], "resources[0].spec.endpoints: duplicate key")
        for reason in (" ", "\t\n  "):
            r = self.cp.call("POST", "/v1/apply",
                             {"reason": reason, "resources": [svc("a", "127.0.0.1:9")]})
            self.assertEqual(r.status, 400, r)
            self.assertEqual(r.json()["errors"], ["reason: must not be empty or only blanks"])
        r = self.cp.call("DELETE", "/v1/resources/service/a?reason=%20%20")
        self.assertEqual(r.status, 400, r)
        self.assertIn("reason: must not be empty", r.json()["error"])
        self.assertEqual(self.cp.call("GET", "/v1/versions").json(), [])

    def test_yaml_alias_bomb_through_ctl_apply(self):
        path = os.path.join(self.dir, "laughs.yaml")
        with open(path, "w") as f:
            f.write("kind: service\nname: a\nspec:\n  endpoints: [{address: 127.0.0.1:9}]\n"
                    "  extra:\n" + "".join("    " + line + "\n" for line in LAUGHS.splitlines()))
        rc, out, err, took = self.ctl("apply", "-f", path, "--reason", "bomb")
        self.assertEqual(rc, 2, (out, err))
        self.assertIn(f"{path}:", err)
        self.assertIn("expands to more than 1000000 nodes", err)
        self.assertLess(took, ANSWER_WITHIN)
        self.assertEqual(self.cp.call("GET", "/v1/versions").json(), [])
        # A cycle-free, moderate use of aliases still works.
        ok = os.path.join(self.dir, "ok.yaml")
        with open(ok, "w") as f:
            f.write("- kind: service\n  name: a\n  spec: &spec {endpoints: [{address: 127.0.0.1:9}]}\n"
                    "- kind: service\n  name: b\n  spec: *spec\n")
        rc, out, err, _ = self.ctl("apply", "-f", ok, "--reason", "aliases")
        self.assertEqual(rc, 0, (out, err))
        names = [r["name"] for r in self.cp.call("GET", "/v1/resources").json()["resources"]]
        self.assertEqual(names, ["a", "b"])

    def test_yaml_alias_bomb_in_a_gateway_file(self):
        path = os.path.join(self.dir, "gateway.yaml")
        with open(path, "w") as f:
            f.write("node: {id: g, city: a, zone: a1}\n"
                    f"listeners: [{{name: public, address: {addr(free_port())}}}]\n"
                    "services:\n  - name: a\n    endpoints: [{address: 127.0.0.1:9}]\n"
                    "    laughs:\n" +
                    "".join("      " + line + "\n" for line in LAUGHS.splitlines()))
        for args in (["--validate"], []):
            rc, out, err, took = run_bounded([BIN, "gateway", "--config", path, *args])
            self.assertNotEqual(rc, 0, (args, out, err))
            self.assertIn(f"{path}:", err)
            self.assertIn("expands to more than 1000000 nodes", err, args)
            self.assertLess(took, ANSWER_WITHIN)


class TokenRevocationTest(SluiceTestCase):
    """A revoked bootstrap admin token stays revoked across restarts."""

    def check_revoked_stays_revoked(self, store):
        cp = self.start(Control(self.dir, store=store))
        boot = cp.token
        r = cp.call("POST", "/v1/tokens", {"name": "second-admin", "role": "admin"})
        self.assertEqual(r.status, 201, r)
        second = r.json()["token"]
        boot_id = [t["id"] for t in cp.call("GET", "/v1/tokens", token=second).json()
                   if t["name"] == "admin"][0]
        r = cp.call("DELETE", f"/v1/tokens/{boot_id}", token=second)
        self.assertEqual(r.status, 200, r)
        self.assertEqual(cp.call("GET", "/v1/resources", token=boot).status, 401)
        for _ in range(2):
            cp.kill()
            cp = self.start(Control(self.dir, store=store, port=cp.port))
            self.assertEqual(cp.call("GET", "/v1/resources", token=boot).status, 401)
            self.assertEqual(cp.call("GET", "/v1/resources", token=second).status, 200)
            self.assertIn("its token was revoked", cp.log_text())
        # Removing the file is the documented way to a new admin token: it is registered.
        cp.kill()
        os.unlink(cp.token_file)
        cp = self.start(Control(self.dir, store=store, port=cp.port))
        self.assertNotEqual(cp.token, boot)
        self.assertEqual(cp.call("GET", "/v1/tokens").status, 200)

    def test_sqlite(self):
        self.check_revoked_stays_revoked("sqlite://" + os.path.join(self.dir, "control.db"))

    def test_postgres(self):
        pg = pgserver.PostgresServer()
        self.addCleanup(pg.stop)
        pg.start()
        self.check_revoked_stays_revoked(pg.url(pg.create_database()))

    def test_token_file_rules(self):
        token_file = os.path.join(self.dir, "admin.token")
        with open(token_file, "w") as f:
            f.write("short-token-of-31-characters-xx\n")
        os.chmod(token_file, 0o600)
        cp = Control(self.dir)
        cp.start()
        self.assertEqual(cp.wait(10), 1)
        self.assertIn("at least 32 are required", cp.log_text())
        with open(token_file, "w") as f:
            f.write("a-token-of-exactly-32-characters\n")
        os.chmod(token_file, 0o644)
        cp = self.start(Control(self.dir))
        self.assertIn("group or others may read it", cp.log_text())
        self.assertEqual(cp.call("GET", "/v1/resources").status, 200)


class ConcurrentWritersTest(SluiceTestCase):
    """4 writers x 40 applies without expected_version: every one is applied, none is a 409."""

    WRITERS, APPLIES = 4, 40

    def hammer(self, planes):
        results, lock = [], threading.Lock()

        def writer(n):
            cp = planes[n % len(planes)]
            for i in range(self.APPLIES):
                r = cp.call("POST", "/v1/apply", {"reason": f"w{n} #{i}", "resources": [
                    svc(f"w{n}", f"127.0.0.1:{10000 + i}")]})
                with lock:
                    results.append((r.status, r.body[:200]))

        threads = [threading.Thread(target=writer, args=(n,)) for n in range(self.WRITERS)]
        for t in threads:
            t.start()
        for t in threads:
            t.join(timeout=300)
        self.assertEqual(len(results), self.WRITERS * self.APPLIES)
        bad = [r for r in results if r[0] != 200]
        self.assertEqual(bad, [], f"{len(bad)} of {len(results)} applies failed")
        versions = planes[0].call("GET", "/v1/versions?limit=1000").json()
        self.assertEqual(len(versions), self.WRITERS * self.APPLIES)

    def control(self, workdir, store=None):
        """A control plane with 4 API threads: the 4 writers' requests really run at once."""
        cp = Control(workdir, store=store)
        with open(cp.config_path, "a") as f:
            f.write("threads: 4\n")
        return cp

    def two_planes(self, store):
        """Two control planes on one store, sharing the admin token."""
        cp1 = self.start(self.control(self.dir, store=store))
        other = os.path.join(self.dir, "second")
        os.mkdir(other)
        cp2 = self.control(other, store=store)
        with open(cp1.token_file) as f, open(cp2.token_file, "w") as g:
            g.write(f.read())
        os.chmod(cp2.token_file, 0o600)
        self.start(cp2)
        return [cp1, cp2]

    def test_sqlite(self):
        self.hammer([self.start(self.control(self.dir))])

    def test_sqlite_two_control_planes(self):
        self.hammer(self.two_planes("sqlite://" + os.path.join(self.dir, "shared.db")))

    def test_postgres_two_control_planes(self):
        pg = pgserver.PostgresServer()
        self.addCleanup(pg.stop)
        pg.start()
        self.hammer(self.two_planes(pg.url(pg.create_database())))


if __name__ == "__main__":
    unittest.main()
