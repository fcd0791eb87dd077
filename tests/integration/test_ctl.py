"""`sluice ctl` against a real `sluice control` (SQLite): apply / get / diff / versions / rollback /
delete, instances, gateways and events, and its messages and exit codes for invalid files,
missing reasons, an unreachable server and a rejected token."""

import json
import os
import subprocess
import unittest

from harness import BIN, DeadPort, SluiceTestCase
from test_control import Control, make_cert

FIRST = """\
# accounts and its route
kind: service
name: accounts
spec:
  endpoints:
    - {address: "127.0.0.1:9101", city: a, zone: a1}
  retry: {attempts: 2}
---
kind: route
name: acc
spec:
  match: {path_prefix: /acc}
  service: accounts
  order: 10
"""

SECOND = FIRST.replace("127.0.0.1:9101", "127.0.0.1:9102")

INVALID = """\
kind: service
name: x
spec:
  retry: {attempts: 99}
---
kind: route
name: y
spec:
  match: {path_prefix: /y}
  service: nope
"""


class CtlTest(SluiceTestCase):
    def setUp(self):
        super().setUp()
        self.cp = self.start(Control(self.dir))
        # A private HOME: no ~/.config/sluice/ctl.yaml of the user running the tests.
        self.home = os.path.join(self.dir, "home")
        os.makedirs(self.home)

    def write(self, name, text):
        path = os.path.join(self.dir, name)
        with open(path, "w") as f:
            f.write(text)
        return path

    def ctl(self, *args, server=None, token_file=None, env=None):
        cmd = [BIN, "ctl", "--server", server or f"http://{self.cp.address}"]
        cmd += ["--token-file", token_file or self.cp.token_file]
        cmd += list(args)
        e = {k: v for k, v in os.environ.items() if not k.startswith("SLUICE_")}
        e["HOME"] = self.home
        e.pop("XDG_CONFIG_HOME", None)
        e.update(env or {})
        p = subprocess.run(cmd, capture_output=True, text=True, timeout=30, env=e)
        return p.returncode, p.stdout, p.stderr

    def ok(self, *args, **kw):
        rc, out, err = self.ctl(*args, **kw)
        self.assertEqual(rc, 0, f"sluice ctl {' '.join(args)}: rc={rc}\n{out}\n{err}")
        return out

    def versions(self):
        return [v["number"] for v in self.cp.call("GET", "/v1/versions").json()]

    def test_apply_get_diff_versions_rollback_delete(self):
        first = self.write("first.yaml", FIRST)
        out = self.ok("apply", "-f", first, "--reason", "first")
        self.assertIn("service/accounts created", out)
        self.assertIn("route/acc created", out)
        self.assertIn("version 1", out)
        svc = self.cp.call("GET", "/v1/resources/service/accounts").json()
        self.assertEqual(svc["spec"]["retry"]["attempts"], 2)  # a number, not "2"
        self.assertEqual(self.cp.call("GET", "/v1/resources/route/acc").json()["spec"]["order"], 10)

        out = self.ok("get", "services")
        self.assertIn("KIND", out.splitlines()[0])
        self.assertIn("accounts", out)
        self.assertIn("127.0.0.1:9101", out)
        out = self.ok("get", "route")
        self.assertIn("acc", out)
        self.assertIn("-> accounts", out)
        got = json.loads(self.ok("get", "service", "accounts", "-o", "json"))
        self.assertEqual(got["spec"]["endpoints"][0]["address"], "127.0.0.1:9101")
        listed = json.loads(self.ok("get", "all", "-o", "json"))
        self.assertEqual(sorted((r["kind"], r["name"]) for r in listed),
                         [("route", "acc"), ("service", "accounts")])
        # -o yaml is what apply -f reads back: applying it changes nothing.
        dumped = self.write("dump.yaml", self.ok("get", "all", "-o", "yaml"))
        self.assertIn("no changes", self.ok("diff", "-f", dumped))

        second = self.write("second.yaml", SECOND)
        out = self.ok("diff", "-f", second)
        self.assertIn("~ service/accounts", out)
        self.assertIn("-  ", out)
        self.assertIn("127.0.0.1:9101", out)
        self.assertIn("127.0.0.1:9102", out)
        self.assertNotIn("route/acc", out)
        self.assertEqual(self.versions(), [1])  # diff writes nothing
        out = self.ok("apply", "-f", second, "--reason", "move accounts", "--dry-run")
        self.assertIn("dry run", out)
        self.assertEqual(self.versions(), [1])

        self.ok("apply", "-f", second, "--reason", "move accounts")
        out = self.ok("versions")
        rows = out.splitlines()[1:]
        self.assertEqual([r.split()[0] for r in rows], ["2", "1"])
        self.assertIn("move accounts", rows[0])
        self.assertIn("admin", rows[0])
        self.assertEqual(len(json.loads(self.ok("versions", "-o", "json"))), 2)
        self.assertIn("unchanged", self.ok("apply", "-f", second, "--reason", "again"))
        self.assertEqual(self.versions(), [2, 1])

        out = self.ok("rollback", "1", "--reason", "undo")
        self.assertIn("version 3", out)
        got = self.cp.call("GET", "/v1/resources/service/accounts").json()
        self.assertEqual(got["spec"]["endpoints"][0]["address"], "127.0.0.1:9101")

        # Delete: the service is still named by the route, so that is refused; the route is not.
        rc, out, err = self.ctl("delete", "service", "accounts", "--reason", "gone")
        self.assertEqual(rc, 1, (out, err))
        self.assertIn("route/acc", err)
        out = self.ok("delete", "route", "acc", "--reason", "gone")
        self.assertIn("deleted", out)
        self.assertEqual(self.cp.call("GET", "/v1/resources/route/acc").status, 404)
        rc, out, err = self.ctl("get", "route", "acc")
        self.assertEqual(rc, 1, (out, err))
        self.assertIn("route/acc", err)
        self.assertEqual(self.versions(), [4, 3, 2, 1])

    def test_invalid_file_prints_every_error_and_changes_nothing(self):
        self.ok("apply", "-f", self.write("first.yaml", FIRST), "--reason", "first")
        rc, out, err = self.ctl("apply", "-f", self.write("bad.yaml", INVALID), "--reason", "bad")
        self.assertEqual(rc, 1, (out, err))
        self.assertIn("service/x", err)
        self.assertIn("attempts", err)
        self.assertIn("route/y", err)
        self.assertIn("nope", err)
        self.assertEqual(self.versions(), [1])
        self.assertEqual(self.cp.call("GET", "/v1/resources/service/x").status, 404)
        # diff of an invalid file: the same errors.
        rc, out, err = self.ctl("diff", "-f", os.path.join(self.dir, "bad.yaml"))
        self.assertEqual(rc, 1, (out, err))
        self.assertIn("route/y", err)

    def test_local_errors_are_usage_errors(self):
        first = self.write("first.yaml", FIRST)
        rc, out, err = self.ctl("apply", "-f", first)
        self.assertEqual(rc, 2, (out, err))
        self.assertIn("--reason", err)
        rc, out, err = self.ctl("delete", "route", "acc")
        self.assertEqual(rc, 2, (out, err))
        rc, out, err = self.ctl("rollback", "1")
        self.assertEqual(rc, 2, (out, err))
        rc, out, err = self.ctl("apply", "-f", os.path.join(self.dir, "missing.yaml"),
                                "--reason", "x")
        self.assertEqual(rc, 2, (out, err))
        self.assertIn("missing.yaml", err)
        self.assertIn("No such file", err)
        broken = self.write("broken.yaml", "kind: service\nname: a\nspec: {endpoints: [\n")
        rc, out, err = self.ctl("apply", "-f", broken, "--reason", "x")
        self.assertEqual(rc, 2, (out, err))
        self.assertIn("broken.yaml:", err)
        self.assertIn("YAML error", err)
        rc, out, err = self.ctl("frobnicate")
        self.assertEqual(rc, 2, (out, err))
        rc, out, err = self.ctl("get", "widgets")
        self.assertEqual(rc, 2, (out, err))
        rc, out, err = self.ctl("get", "services", server="ftp://127.0.0.1:1")
        self.assertEqual(rc, 2, (out, err))
        self.assertIn("must start with http:// or https://", err)
        self.assertEqual(self.versions(), [])

    def test_unreachable_server_and_bad_token(self):
        dead = DeadPort()
        self.addCleanup(dead.close)
        url = f"http://{dead.address}"
        rc, out, err = self.ctl("get", "services", server=url)
        self.assertEqual(rc, 1, (out, err))
        self.assertIn(f"cannot reach control plane at {url}: connection refused", err)

        bad = self.write("bad.token", "not-a-real-token\n")
        rc, out, err = self.ctl("get", "services", token_file=bad)
        self.assertEqual(rc, 1, (out, err))
        self.assertIn("token rejected", err)

        # A viewer may read but not write.
        r = self.cp.call("POST", "/v1/tokens", {"name": "dash", "role": "viewer"})
        viewer = self.write("viewer.token", r.json()["token"])
        self.ok("get", "services", token_file=viewer)
        rc, out, err = self.ctl("apply", "-f", self.write("first.yaml", FIRST), "--reason", "x",
                                token_file=viewer)
        self.assertEqual(rc, 1, (out, err))
        self.assertIn("role is too small", err)

    def test_environment_and_config_file(self):
        env = {"SLUICE_SERVER": f"http://{self.cp.address}", "SLUICE_TOKEN": self.cp.token}
        e = {k: v for k, v in os.environ.items() if not k.startswith("SLUICE_")}
        e["HOME"] = self.home
        e.update(env)
        p = subprocess.run([BIN, "ctl", "versions"], capture_output=True, text=True, timeout=30,
                           env=e)
        self.assertEqual(p.returncode, 0, p.stderr)
        self.assertIn("no versions", p.stdout)
        cfg = os.path.join(self.home, ".config", "sluice")
        os.makedirs(cfg)
        with open(os.path.join(cfg, "ctl.yaml"), "w") as f:
            f.write(f"server: http://{self.cp.address}\ntoken_file: {self.cp.token_file}\n")
        e = {k: v for k, v in os.environ.items() if not k.startswith("SLUICE_")}
        e["HOME"] = self.home
        e.pop("XDG_CONFIG_HOME", None)
        p = subprocess.run([BIN, "ctl", "get", "services"], capture_output=True, text=True,
                           timeout=30, env=e)
        self.assertEqual(p.returncode, 0, p.stderr)

    def test_instances_gateways_events(self):
        self.ok("apply", "-f", self.write("svc.yaml", "kind: service\nname: pay\nspec: {}\n"),
                "--reason", "registry-backed")
        r = self.cp.call("POST", "/v1/instances", {"service": "pay", "id": "pay-1",
                                                   "address": "127.0.0.1:9201", "city": "a",
                                                   "zone": "a1"})
        self.assertIn(r.status, (200, 201), r)
        out = self.ok("instances")
        self.assertIn("pay-1", out)
        self.assertIn("127.0.0.1:9201", out)
        r = self.cp.call("POST", "/v1/gateways/gw-a/status",
                         {"city": "a", "zone": "a1", "applied_version": 1, "status": "applied"})
        self.assertIn(r.status, (200, 201, 204), r)
        out = self.ok("gateways")
        self.assertIn("gw-a", out)
        self.assertIn("HEALTH", out)
        r = self.cp.call("POST", "/v1/events?gateway=gw-a",
                         [{"kind": "breaker_opened", "subject": "pay"}])
        self.assertIn(r.status, (200, 201), r)
        out = self.ok("events")
        self.assertIn("breaker_opened", out)
        self.assertEqual(json.loads(self.ok("events", "-o", "json"))[-1]["kind"], "breaker_opened")


    def test_files_from_stdin_and_directories(self):
        e = {k: v for k, v in os.environ.items() if not k.startswith("SLUICE_")}
        e["HOME"] = self.home
        base = [BIN, "ctl", "--server", f"http://{self.cp.address}", "--token-file",
                self.cp.token_file]
        p = subprocess.run(base + ["apply", "-f", "-", "--reason", "from stdin"], input=FIRST,
                           capture_output=True, text=True, timeout=30, env=e)
        self.assertEqual(p.returncode, 0, p.stderr)
        self.assertEqual(self.versions(), [1])
        self.assertEqual(self.cp.call("GET", "/v1/resources/route/acc").status, 200)
        p = subprocess.run(base + ["apply", "-f", "-", "--reason", "x"], input="kind: [\n",
                           capture_output=True, text=True, timeout=30, env=e)
        self.assertEqual(p.returncode, 2, p.stderr)
        self.assertIn("<stdin>:", p.stderr)
        # A directory: its *.yaml and *.yml files in name order, in one apply; other files and
        # subdirectories are not read.
        d = os.path.join(self.dir, "conf")
        os.makedirs(os.path.join(d, "sub"))
        with open(os.path.join(d, "a.yaml"), "w") as f:
            f.write(SECOND.split("---")[0])
        with open(os.path.join(d, "b.yml"), "w") as f:
            f.write("kind: route\nname: acc\nspec: {match: {path_prefix: /acc2}, service: accounts}\n")
        with open(os.path.join(d, "notes.txt"), "w") as f:
            f.write("not yaml: [\n")
        with open(os.path.join(d, "sub", "c.yaml"), "w") as f:
            f.write("kind: [broken\n")
        out = self.ok("diff", "-f", d)
        self.assertIn("service/accounts", out)
        self.assertIn("route/acc", out)
        self.ok("apply", "-f", d, "--reason", "a directory")
        self.assertEqual(self.versions(), [2, 1])
        spec = self.cp.call("GET", "/v1/resources/route/acc").json()["spec"]
        self.assertEqual(spec["match"]["path_prefix"], "/acc2")
        empty = os.path.join(self.dir, "empty")
        os.makedirs(empty)
        rc, out, err = self.ctl("apply", "-f", empty, "--reason", "x")
        self.assertEqual(rc, 2, (out, err))
        self.assertIn("no *.yaml or *.yml files", err)

    def test_tokens_create_list_revoke(self):
        rc, out, err = self.ctl("tokens", "create", "ci")
        self.assertEqual(rc, 2, (out, err))
        self.assertIn("--role", err)
        out = self.ok("tokens", "create", "ci", "--role", "viewer")
        token = out.strip()
        self.assertRegex(token, r"^[0-9a-f]{64}$", "the token alone on stdout")
        tok_file = self.write("ci.token", token)
        self.ok("get", "services", token_file=tok_file)
        listing = self.ok("tokens", "list")
        self.assertRegex(listing, r"(?m)^ID\s+NAME\s+ROLE\s+CREATED$")
        self.assertIn("ci", listing)
        self.assertNotIn(token, listing)
        tokens = json.loads(self.ok("tokens", "-o", "json"))
        ci = [t for t in tokens if t["name"] == "ci"]
        self.assertEqual(len(ci), 1)
        self.assertEqual(ci[0]["role"], "viewer")
        self.assertIn("CREATED_MS", self.ok("tokens", "list", "-o", "wide"))
        # A viewer may not manage tokens.
        rc, out, err = self.ctl("tokens", "list", token_file=tok_file)
        self.assertEqual(rc, 1, (out, err))
        self.assertIn("role is too small", err)
        out = self.ok("tokens", "revoke", ci[0]["id"])
        self.assertIn(f"token {ci[0]['id']} revoked", out)
        self.assertEqual(self.cp.call("GET", "/v1/resources", token=token).status, 401)
        rc, out, err = self.ctl("tokens", "revoke", ci[0]["id"])
        self.assertEqual(rc, 1, (out, err))
        rc, out, err = self.ctl("tokens", "revok", "x")
        self.assertEqual(rc, 2, (out, err))
        self.assertIn("did you mean 'revoke'?", err)

    def test_output_wide(self):
        self.ok("apply", "-f", self.write("svc.yaml", "kind: service\nname: pay\nspec: {}\n"),
                "--reason", "wide")
        self.cp.call("POST", "/v1/instances", {"service": "pay", "id": "pay-1",
                                                "address": "127.0.0.1:9201", "city": "a",
                                                "zone": "a1"})
        out = self.ok("instances", "-o", "wide")
        self.assertRegex(out.splitlines()[0],
                         r"HEARTBEAT\s+TTL\s+REGISTERED\s+EXPIRES\s+HOST\s+VERSION$")
        self.assertIn("pay-1", out)
        out = self.ok("versions", "-o", "wide")
        self.assertIn("RESOURCES", out.splitlines()[0])
        self.assertIn("+service/pay", out)
        self.cp.call("POST", "/v1/gateways/gw-a/status",
                     {"city": "a", "zone": "a1", "applied_version": 1, "status": "refused",
                      "error": "x" * 100})
        out = self.ok("gateways", "-o", "wide")
        self.assertIn("CONFIG_VERSION", out)
        self.assertIn("x" * 100, out)
        self.assertNotIn("x" * 100, self.ok("gateways"))
        self.assertIn("KIND", self.ok("get", "all", "-o", "wide"))
        rc, out, err = self.ctl("get", "all", "-o", "tall")
        self.assertEqual(rc, 2, (out, err))
        self.assertIn("yaml, json or wide", err)


class CtlOverHttpsTest(SluiceTestCase):
    def test_https_with_the_servers_certificate(self):
        cert, key = make_cert(self.dir)
        cp = self.start(Control(self.dir, tls=(cert, key)))
        env = {k: v for k, v in os.environ.items() if not k.startswith("SLUICE_")}
        env["HOME"] = self.dir
        env.pop("XDG_CONFIG_HOME", None)

        def ctl(*args):
            p = subprocess.run([BIN, "ctl", "--server", cp.url, "--token-file", cp.token_file,
                                *args], capture_output=True, text=True, timeout=30, env=env)
            return p.returncode, p.stdout, p.stderr
        rc, out, err = ctl("--ca-file", cert, "get", "services")
        self.assertEqual(rc, 0, out + err)
        # Not trusted (self-signed, not in the system's store): refused, with the reason.
        rc, out, err = ctl("get", "services")
        self.assertEqual(rc, 1, out + err)
        self.assertIn("certificate verify failed", err)
        # Plain HTTP to the HTTPS-only listener: a clear hint.
        p = subprocess.run([BIN, "ctl", "--server", f"http://{cp.address}", "--token-file",
                            cp.token_file, "get", "services"], capture_output=True, text=True,
                           timeout=30, env=env)
        self.assertEqual(p.returncode, 1, p.stdout + p.stderr)
        self.assertIn("cannot reach control plane", p.stderr)
        self.assertIn("use https://", p.stderr)
        # The certificate from the config file.
        cfg = os.path.join(self.dir, ".config", "sluice")
        os.makedirs(cfg)
        with open(os.path.join(cfg, "ctl.yaml"), "w") as f:
            f.write(f"server: {cp.url}\ntoken_file: {cp.token_file}\nca_file: {cert}\n")
        p = subprocess.run([BIN, "ctl", "get", "services"], capture_output=True, text=True,
                           timeout=30, env=env)
        self.assertEqual(p.returncode, 0, p.stdout + p.stderr)


if __name__ == "__main__":
    unittest.main()
