"""The control plane as a real process (`sluice control`, SQLite store): token bootstrap, roles,
validated all-or-nothing writes with versions and rollback, the registry with TTL expiry, the
gateway-config long poll, and clear errors for bad input. The gateways' side is in
test_control_e2e.py."""

import json
import os
import ssl
import subprocess
import time
import unittest
import urllib.error
import urllib.request

from harness import BIN, Proc, SluiceTestCase, addr, free_port, http_request, wait_until


def make_cert(workdir, name="cp"):
    """A self-signed certificate for 127.0.0.1 (openssl CLI): (cert path, key path)."""
    cert = os.path.join(workdir, f"{name}.crt")
    key = os.path.join(workdir, f"{name}.key")
    subprocess.run(["openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "2",
                    "-subj", "/CN=127.0.0.1", "-addext", "subjectAltName=IP:127.0.0.1",
                    "-keyout", key, "-out", cert], check=True, capture_output=True, timeout=60)
    return cert, key


class Control(Proc):
    def __init__(self, workdir, store=None, port=None, tls=None):
        """tls: (cert, key) to serve HTTPS only."""
        self.port = port or free_port()
        self.address = addr(self.port)
        self.tls = tls
        self.url = f"{'https' if tls else 'http'}://{self.address}"
        self.token_file = os.path.join(workdir, "admin.token")
        self.config_path = os.path.join(workdir, "control.yaml")
        with open(self.config_path, "w") as f:
            f.write(f"listen: {self.address}\n"
                    f"store: {store or 'sqlite://' + os.path.join(workdir, 'control.db')}\n"
                    f"auth: {{admin_token_file: {self.token_file}}}\n")
            if tls:
                f.write(f"tls: {{cert: {tls[0]}, key: {tls[1]}}}\n")
        super().__init__("control", [BIN, "control", "--config", self.config_path], workdir)

    def wait_ready(self, timeout=10):
        wait_until(lambda: self._ready(), timeout, message="control /ready")
        with open(self.token_file) as f:
            self.token = f.read().strip()
        return self

    def _ready(self):
        if not self.alive():
            raise AssertionError(f"control exited with {self.returncode()}:\n{self.tail()}")
        try:
            if self.tls:
                ctx = ssl.create_default_context(cafile=self.tls[0])
                with urllib.request.urlopen(f"{self.url}/ready", timeout=1, context=ctx) as r:
                    return r.status == 200
            return http_request(self.address, "GET", "/ready", timeout=1).status == 200
        except (OSError, urllib.error.URLError):
            return False

    def call(self, method, path, body=None, token=None):
        headers = {"Content-Type": "application/json"}
        tok = self.token if token is None else token
        if tok:
            headers["Authorization"] = f"Bearer {tok}"
        data = body if isinstance(body, (bytes, type(None))) else json.dumps(body).encode()
        return http_request(self.address, method, path, headers=headers, body=data, timeout=40)


def svc(name, address=None):
    spec = {"endpoints": [{"address": address}]} if address else {}
    return {"kind": "service", "name": name, "spec": spec}


def rt(name, service, prefix):
    return {"kind": "route", "name": name,
            "spec": {"match": {"path_prefix": prefix}, "service": service}}


class ControlPlaneTest(SluiceTestCase):
    def setUp(self):
        super().setUp()
        self.cp = self.start(Control(self.dir))

    def test_token_bootstrap_and_roles(self):
        self.assertEqual(os.stat(self.cp.token_file).st_mode & 0o777, 0o600)
        self.assertIn("admin token", self.cp.log_text())
        self.assertEqual(self.cp.call("GET", "/v1/resources", token="").status, 401)
        self.assertEqual(self.cp.call("GET", "/v1/resources", token="wrong").status, 401)
        r = self.cp.call("POST", "/v1/tokens", {"name": "dashboards", "role": "viewer"})
        self.assertEqual(r.status, 201, r)
        viewer = r.json()["token"]
        self.assertEqual(self.cp.call("GET", "/v1/resources", token=viewer).status, 200)
        r = self.cp.call("POST", "/v1/apply", {"reason": "x", "resources": [svc("a", "127.0.0.1:9")]},
                         token=viewer)
        self.assertEqual(r.status, 403, r)
        self.assertEqual(self.cp.call("GET", "/v1/versions").json(), [])

    def test_apply_versions_rollback_and_invalid_input_changes_nothing(self):
        r = self.cp.call("POST", "/v1/apply", {"reason": "first", "resources": [
            svc("accounts", "127.0.0.1:9101"), rt("acc", "accounts", "/acc")]})
        self.assertEqual(r.status, 200, r)
        self.assertEqual(r.json()["version"], 1)
        r = self.cp.call("POST", "/v1/apply", {"reason": "second", "resources": [
            svc("accounts", "127.0.0.1:9102")]})
        self.assertEqual(r.json()["version"], 2)
        # Invalid: every error listed, nothing written.
        for body in ({"reason": "bad", "resources": [
                         {"kind": "service", "name": "x", "spec": {"retry": {"attempts": 99}}},
                         rt("y", "nope", "/y")]},
                     {"resources": [svc("z", "127.0.0.1:1")]},
                     b"{not json"):
            r = self.cp.call("POST", "/v1/apply", body)
            self.assertEqual(r.status, 400, (body, r))
            self.assertIn("error", r.json())
        r = self.cp.call("POST", "/v1/apply", {"reason": "bad", "resources": [
            {"kind": "service", "name": "x", "spec": {"retry": {"attempts": 99}}},
            rt("y", "nope", "/y")]})
        errors = r.json()["errors"]
        self.assertTrue(any("service/x" in e and "attempts" in e for e in errors), errors)
        self.assertTrue(any("route/y" in e for e in errors), errors)
        versions = self.cp.call("GET", "/v1/versions").json()
        self.assertEqual([v["number"] for v in versions], [2, 1])
        self.assertEqual(versions[0]["reason"], "second")
        self.assertEqual(versions[0]["author"], "admin")
        r = self.cp.call("POST", "/v1/rollback", {"version": 1, "reason": "undo"})
        self.assertEqual(r.status, 200, r)
        self.assertEqual(r.json()["version"], 3)
        got = self.cp.call("GET", "/v1/resources/service/accounts").json()
        self.assertEqual(got["spec"]["endpoints"][0]["address"], "127.0.0.1:9101")

    def test_bad_control_yaml_lists_every_error(self):
        path = os.path.join(self.dir, "bad.yaml")
        with open(path, "w") as f:
            f.write("listen: 127.0.0.1:notaport\n"
                    "store: sqlite:///nonexistent-dir/control.db\n"
                    "auth: {admin_token_file: /nonexistent-dir/admin.token}\n"
                    "colour: blue\n")
        p = subprocess.run([BIN, "control", "--config", path], capture_output=True, text=True,
                           timeout=20, stdin=subprocess.DEVNULL)
        self.assertEqual(p.returncode, 1, p.stdout + p.stderr)
        for line, text in ((1, "listen"), (2, "store: directory /nonexistent-dir does not exist"),
                           (3, "auth.admin_token_file: directory /nonexistent-dir does not exist"),
                           (4, "colour: unknown key")):
            self.assertIn(f"{path}:{line}: {text}", p.stderr)
        self.assertFalse(os.path.exists("/nonexistent-dir"))

    def test_registry_ttl_and_long_poll(self):
        r = self.cp.call("POST", "/v1/apply", {"reason": "registry-backed", "resources": [
            svc("pay"), rt("pay", "pay", "/pay")]})
        self.assertEqual(r.status, 200, r)
        r = self.cp.call("GET", "/v1/gateway-config?gateway=g1&wait=0s")
        first = r.json()["version"]
        r = self.cp.call("POST", "/v1/instances", {"service": "pay", "id": "pay-1",
                                                   "address": "127.0.0.1:9201", "city": "a",
                                                   "zone": "a1", "ttl_ms": 1000})
        self.assertIn(r.status, (200, 201), r)
        r = self.cp.call("GET", f"/v1/gateway-config?gateway=g1&after={first}&wait=5s")
        self.assertEqual(r.status, 200, r)
        eps = r.json()["config"]["services"][0]["endpoints"]
        self.assertEqual([e["address"] for e in eps], ["127.0.0.1:9201"])
        # No heartbeat: the instance leaves the pushed set after its TTL, and the poll wakes.
        t0 = time.monotonic()
        r = self.cp.call("GET", f"/v1/gateway-config?gateway=g1&after={r.json()['version']}"
                                "&wait=10s")
        self.assertEqual(r.status, 200, r)
        self.assertLess(time.monotonic() - t0, 5)
        addresses = [e["address"] for e in r.json()["config"]["services"][0]["endpoints"]]
        self.assertNotIn("127.0.0.1:9201", addresses)
        self.assertEqual(self.cp.call("GET", "/v1/instances").json(), [])


if __name__ == "__main__":
    unittest.main()
