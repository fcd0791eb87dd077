"""Two `sluice control` processes on one real PostgreSQL database (issue 5): writes through one are
read through the other with the same version numbers, a long poll parked on one wakes within a
second of a write through the other, the registry is shared, a gateway watching the second serves
what is applied through the first, and the second carries on alone when the first stops."""

import json
import os
import signal
import threading
import time
import unittest

import pgserver
from harness import (BIN, Proc, SluiceTestCase, addr, free_port, http_request, parse_metrics,
                     metric_sum, wait_until)

PROPAGATION_LIMIT = 1.0  # seconds; the contract says 200 ms (the store's revision is polled)


class ControlPlane(Proc):
    """`sluice control` on a PostgreSQL store; several share one admin token file."""

    def __init__(self, workdir, name, store, token_file):
        self.port = free_port()
        self.address = addr(self.port)
        self.url = f"http://{self.address}"
        self.token_file = token_file
        self.token = None
        self.config_path = os.path.join(workdir, f"{name}.yaml")
        with open(self.config_path, "w") as f:
            f.write(f"listen: {self.address}\n"
                    f"store: {store}\n"
                    f"auth: {{admin_token_file: {token_file}}}\n")
        super().__init__(name, [BIN, "control", "--config", self.config_path], workdir)

    def wait_ready(self, timeout=15):
        def ready():
            if not self.alive():
                raise AssertionError(f"{self.name} exited with {self.returncode()}:\n{self.tail()}")
            try:
                return http_request(self.address, "GET", "/ready", timeout=1).status == 200
            except OSError:
                return False
        try:
            wait_until(ready, timeout, message=f"{self.name} /ready")
        except AssertionError as e:
            raise AssertionError(f"{e}\n{self.tail()}") from None
        with open(self.token_file) as f:
            self.token = f.read().strip()
        return self

    def call(self, method, path, body=None, timeout=20):
        headers = {"Content-Type": "application/json", "Authorization": f"Bearer {self.token}"}
        data = body if isinstance(body, (bytes, type(None))) else json.dumps(body).encode()
        return http_request(self.address, method, path, headers=headers, body=data,
                            timeout=timeout)

    def ok(self, method, path, body=None, status=200):
        r = self.call(method, path, body)
        if r.status != status:
            raise AssertionError(f"{self.name}: {method} {path} -> {r.status}, expected {status}: "
                                 f"{r.body[:500]!r}")
        return r.json() if r.body else None

    def apply(self, reason, *resources):
        return self.ok("POST", "/v1/apply", {"reason": reason, "resources": list(resources)})

    def ready_version(self):
        r = http_request(self.address, "GET", "/ready", timeout=5)
        if r.status != 200:
            raise AssertionError(f"{self.name} /ready -> {r.status} {r.body!r}")
        return r.json()["version"]

    def metric(self, name, **labels):
        text = http_request(self.address, "GET", "/metrics", timeout=5).body.decode()
        return metric_sum(parse_metrics(text), name, **labels)


def svc(name, address=None):
    return {"kind": "service", "name": name,
            "spec": {"endpoints": [{"address": address, "city": "a", "zone": "a1"}]}
            if address else {}}


def rt(name, service, prefix):
    return {"kind": "route", "name": name,
            "spec": {"match": {"path_prefix": prefix}, "service": service}}


class ControlPlaneHaTest(SluiceTestCase):
    @classmethod
    def setUpClass(cls):
        super().setUpClass()
        cls.pg = pgserver.start_for_class(cls)

    def setUp(self):
        super().setUp()
        if not self.pg.alive():
            self.fail(f"postgres died:\n{self.pg.log()[-3000:]}")
        self.db = self.pg.create_database()
        store = self.pg.url(self.db)
        token_file = os.path.join(self.dir, "admin.token")
        # The first generates the admin token; the second reads it from the same file.
        self.cp1 = self.start(ControlPlane(self.dir, "control1", store, token_file))
        self.assertIn("admin token", self.cp1.log_text("stdout"))
        self.cp2 = self.start(ControlPlane(self.dir, "control2", store, token_file))
        self.assertNotIn("admin token (saved", self.cp2.log_text("stdout"))

    # --- helpers

    def versions_agree(self, number):
        """Both control planes report config version `number` and one identical "N.R"."""
        v1, v2 = self.cp1.ready_version(), self.cp2.ready_version()
        return v1 == v2 and v1.split(".")[0] == str(number) and (v1, v2)

    def start_gateway(self, name="g1"):
        """A sample service and a gateway that watches control plane 2."""
        sample = self.sample("pay")
        gw_config = {
            "node": {"id": name, "city": "a", "zone": "a1"},
            "control_plane": {"address": self.cp2.url, "token_file": self.cp2.token_file,
                              "cache_dir": os.path.join(self.dir, f"{name}-cache")},
        }
        gw = self.gateway(gw_config, name=name)
        return sample, gw

    def wait_served(self, gw, path, sample, since, limit=PROPAGATION_LIMIT):
        """Polls the gateway every 20 ms until `path` is answered by `sample`; returns the seconds
        since `since` (monotonic). Fails when that takes longer than `limit`."""
        while True:
            try:
                r = http_request(gw.address, "GET", path, timeout=2)
                if r.status == 200 and r.json().get("service") == sample.service_name:
                    return time.monotonic() - since
            except OSError:
                pass
            elapsed = time.monotonic() - since
            if elapsed > limit:
                self.fail(f"gateway did not serve {path} within {limit}s of the apply "
                          f"(gateway /stats control_plane: "
                          f"{gw.admin_get('/stats').json().get('control_plane')})")
            time.sleep(0.02)

    def gateway_entry(self, cp, gateway_id):
        for g in cp.ok("GET", "/v1/gateways"):
            if g["id"] == gateway_id:
                return g
        return None

    # --- tests

    def test_write_through_one_is_read_through_the_other_with_the_same_versions(self):
        for cp in (self.cp1, self.cp2):
            r = http_request(cp.address, "GET", "/ready", timeout=5)
            self.assertEqual(r.status, 200, r)
            self.assertEqual(r.json()["status"], "ready", r)
        self.assertEqual(self.cp1.token, self.cp2.token)
        self.assertEqual(self.cp2.ok("GET", "/v1/resources")["version"], 0)

        applied = self.cp1.apply("first through cp1", svc("accounts", "127.0.0.1:9101"),
                                 rt("acc", "accounts", "/acc"))
        self.assertEqual(applied["version"], 1, applied)
        wait_until(lambda: self.versions_agree(1), 2, message="both control planes at version 1")
        seen = self.cp2.ok("GET", "/v1/resources")
        self.assertEqual(seen["version"], 1, seen)
        self.assertEqual(sorted((r["kind"], r["name"]) for r in seen["resources"]),
                         [("route", "acc"), ("service", "accounts")])
        self.assertEqual(self.cp2.ok("GET", "/v1/resources/service/accounts")["spec"]
                         ["endpoints"][0]["address"], "127.0.0.1:9101")

        # And the other way round: versions are one sequence, whoever writes.
        applied = self.cp2.apply("second through cp2", svc("accounts", "127.0.0.1:9102"))
        self.assertEqual(applied["version"], 2, applied)
        for cp in (self.cp1, self.cp2):
            self.assertEqual(cp.ok("GET", "/v1/resources")["version"], 2, cp.name)
            self.assertEqual(cp.ok("GET", "/v1/resources/service/accounts")["spec"]
                             ["endpoints"][0]["address"], "127.0.0.1:9102")
        v1 = self.cp1.ok("GET", "/v1/versions")
        v2 = self.cp2.ok("GET", "/v1/versions")
        self.assertEqual(v1, v2)
        self.assertEqual([(v["number"], v["reason"]) for v in v1],
                         [(2, "second through cp2"), (1, "first through cp1")])
        wait_until(lambda: self.versions_agree(2), 2, message="both control planes at version 2")

        # A stale expected_version through either is a conflict naming the latest version.
        r = self.cp1.call("POST", "/v1/apply", {"reason": "stale", "expected_version": 1,
                                                "resources": [svc("x", "127.0.0.1:9")]})
        self.assertEqual(r.status, 409, r)
        self.assertEqual(r.json()["version"], 2, r)

    def test_long_poll_on_the_second_wakes_within_a_second_of_a_write_through_the_first(self):
        self.cp1.apply("base", svc("accounts", "127.0.0.1:9101"), rt("acc", "accounts", "/acc"))
        wait_until(lambda: self.versions_agree(1), 2, message="both control planes at version 1")
        current = self.cp2.ready_version()
        r = self.cp2.call("GET", f"/v1/gateway-config?gateway=g1&after={current}&wait=0")
        self.assertEqual(r.status, 304, r)
        self.assertEqual(r.header("X-Sluice-Version"), current)

        answer = {}

        def poll():
            r = self.cp2.call("GET", f"/v1/gateway-config?gateway=g1&after={current}&wait=10s")
            answer["at"] = time.monotonic()
            answer["r"] = r

        t = threading.Thread(target=poll, daemon=True)
        t.start()
        wait_until(lambda: self.cp2.metric("sluice_control_config_polls_waiting") >= 1, 5,
                   message="the long poll parked on control plane 2")
        sent = time.monotonic()
        applied = self.cp1.apply("wake cp2's poll", rt("pay", "accounts", "/pay"))
        returned = time.monotonic()
        t.join(12)
        self.assertFalse(t.is_alive(), "long poll not answered within its 10 s wait")
        r = answer["r"]
        self.assertEqual(r.status, 200, r)
        body = r.json()
        n = applied["version"]
        self.assertEqual(body["config_version"], n, body)
        self.assertEqual(body["version"], f"{n}.{body['registry_revision']}", body)
        self.assertEqual(r.header("X-Sluice-Version"), body["version"])
        self.assertEqual(sorted(x["name"] for x in body["config"]["routes"]), ["acc", "pay"])
        latency = answer["at"] - sent
        print(f"\n  long poll on cp2 answered {latency * 1000:.0f} ms after the apply was sent to "
              f"cp1 ({(answer['at'] - returned) * 1000:.0f} ms after its answer)", flush=True)
        self.assertLess(latency, PROPAGATION_LIMIT)

    def test_instance_registered_through_one_heartbeats_through_the_other(self):
        self.cp1.apply("registry-backed", svc("pay"), rt("pay", "pay", "/pay"))
        before = self.cp2.ok("GET", "/v1/gateway-config?gateway=g1&wait=0")
        reg = self.cp1.ok("POST", "/v1/instances", {
            "service": "pay", "id": "pay-1", "address": "127.0.0.1:9201", "city": "a",
            "zone": "a1", "ttl_ms": 1500})
        self.assertEqual((reg["service"], reg["id"]), ("pay", "pay-1"), reg)

        # The short TTL is kept alive by heartbeats through control plane 2 only; control
        # plane 1's expiry sweep must see them too.
        last = None
        deadline = time.monotonic() + 3.5
        while time.monotonic() < deadline:
            hb = self.cp2.ok("PUT", "/v1/instances/pay/pay-1/heartbeat")
            self.assertEqual((hb["service"], hb["id"]), ("pay", "pay-1"), hb)
            last = hb["heartbeat_ms"]
            time.sleep(0.3)
        for cp in (self.cp1, self.cp2):
            listed = cp.ok("GET", "/v1/instances?service=pay")
            self.assertEqual([(i["id"], i["address"]) for i in listed],
                             [("pay-1", "127.0.0.1:9201")], cp.name)
            self.assertGreaterEqual(listed[0]["heartbeat_ms"], last, (cp.name, listed))
            self.assertGreater(listed[0]["expires_ms"], listed[0]["heartbeat_ms"], listed)
        events = self.cp1.ok("GET", "/v1/events?limit=1000")
        self.assertEqual([e for e in events if e["kind"] == "instance_expired"], [])

        # The registration moved the registry revision seen by control plane 2's gateways.
        r = self.cp2.call("GET", f"/v1/gateway-config?gateway=g1&after={before['version']}"
                                 "&wait=5s")
        self.assertEqual(r.status, 200, r)
        body = r.json()
        self.assertGreater(body["registry_revision"], before["registry_revision"], body)
        eps = body["config"]["services"][0]["endpoints"]
        self.assertEqual([e["address"] for e in eps], ["127.0.0.1:9201"])

        # Unknown instance: 404 through either; deregistered through cp2, gone from cp1.
        r = self.cp2.call("PUT", "/v1/instances/pay/nope/heartbeat")
        self.assertEqual(r.status, 404, r)
        self.cp2.ok("DELETE", "/v1/instances/pay/pay-1")
        self.assertEqual(self.cp1.ok("GET", "/v1/instances"), [])
        r = self.cp1.call("PUT", "/v1/instances/pay/pay-1/heartbeat")
        self.assertEqual(r.status, 404, r)

    def _route_through_cp1_reaches_gateway_on_cp2(self):
        sample, gw = self.start_gateway("g1")
        r = http_request(gw.address, "GET", "/pay/x", timeout=2)
        self.assertEqual(r.status, 404, r)  # nothing applied yet
        sent = time.monotonic()
        applied = self.cp1.apply("route pay", svc("pay", sample.address), rt("pay", "pay", "/pay"))
        elapsed = self.wait_served(gw, "/pay/x", sample, sent)
        print(f"\n  gateway watching cp2 served a route applied through cp1 after "
              f"{elapsed * 1000:.0f} ms", flush=True)
        n = applied["version"]

        def reported():
            g = self.gateway_entry(self.cp1, "g1")
            return g if g and g["health"] == "ok" and g["applied_version"] == n else None
        try:
            g = wait_until(reported, 5, message="g1 listed by cp1 with health ok")
        except AssertionError as e:
            self.fail(f"{e}: cp1 lists {self.cp1.ok('GET', '/v1/gateways')}, "
                      f"cp2 lists {self.cp2.ok('GET', '/v1/gateways')}")
        self.assertEqual(g["status"], "applied", g)
        self.assertEqual((g["city"], g["zone"]), ("a", "a1"), g)
        return sample, gw, applied

    def test_gateway_watching_the_second_serves_a_route_applied_through_the_first(self):
        self._route_through_cp1_reaches_gateway_on_cp2()
        g2 = self.gateway_entry(self.cp2, "g1")
        self.assertIsNotNone(g2, self.cp2.ok("GET", "/v1/gateways"))
        self.assertEqual(g2["health"], "ok", g2)

    def test_second_carries_on_when_the_first_stops(self):
        sample, gw, applied = self._route_through_cp1_reaches_gateway_on_cp2()
        # A poll parked on control plane 1 when it stops is told to go elsewhere (503).
        current = self.cp1.ready_version()
        parked = {}

        def poll():
            parked["r"] = self.cp1.call(
                "GET", f"/v1/gateway-config?gateway=g9&after={current}&wait=30s")
        t = threading.Thread(target=poll, daemon=True)
        t.start()
        wait_until(lambda: self.cp1.metric("sluice_control_config_polls_waiting") >= 1, 5,
                   message="a long poll parked on control plane 1")
        self.cp1.signal(signal.SIGTERM)
        self.assertEqual(self.cp1.wait(5), 0, self.cp1.tail())
        t.join(5)
        self.assertFalse(t.is_alive(), "the poll parked on cp1 was not answered when it stopped")
        self.assertEqual(parked["r"].status, 503, parked["r"])
        with self.assertRaises(OSError):
            http_request(self.cp1.address, "GET", "/ready", timeout=1)

        self.assertEqual(self.cp2.ready_version().split(".")[0], str(applied["version"]))
        self.assertEqual(self.cp2.ok("GET", "/v1/resources")["version"], applied["version"])
        sent = time.monotonic()
        applied2 = self.cp2.apply("cp1 is gone", rt("pay2", "pay", "/v2/pay"))
        self.assertEqual(applied2["version"], applied["version"] + 1, applied2)
        elapsed = self.wait_served(gw, "/v2/pay/y", sample, sent)
        print(f"\n  with cp1 stopped, a write through cp2 was served after {elapsed * 1000:.0f} ms",
              flush=True)
        self.assertEqual(http_request(gw.address, "GET", "/pay/x", timeout=2).status, 200)
        wait_until(lambda: (self.gateway_entry(self.cp2, "g1") or {}).get("applied_version")
                   == applied2["version"], 5, message="g1 reports the new version to cp2")
        self.assertEqual(self.gateway_entry(self.cp2, "g1")["health"], "ok")
        self.assertTrue(gw.alive())


if __name__ == "__main__":
    unittest.main()
