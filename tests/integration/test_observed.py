"""Observed facts for the CMDB (issue 15), all real processes: a control plane, a gateway watching
it, and two sample services that register themselves with their host facts; one calls the other
through the gateway (`--call`). The caller -> callee edge reaches the control plane with the
right count (GET /v1/stats/edges), a channel header is counted (GET /v1/stats/channels, the
gateway's /stats and /metrics), hostile caller values (too long, bad characters, more distinct
values than the cap) are bounded, and the registry shows the host facts (API and ctl)."""

import os
import socket
import subprocess
import time

from harness import BIN, Gateway, Sample, SluiceTestCase, http_request, wait_until
from test_control import Control

CAP = 32  # distinct values per route and table (src/gateway/observed.h)
CALLS = 20


def service_resource(name):
    return {"kind": "service", "name": name, "spec": {}}


def route_resource(name, service, prefix):
    return {"kind": "route", "name": name,
            "spec": {"match": {"path_prefix": prefix}, "service": service}}


class ObservedTest(SluiceTestCase):
    @classmethod
    def setUpClass(cls):
        super().setUpClass()
        cls.cp = cls.class_start(Control(cls.class_dir))
        r = cls.cp.call("POST", "/v1/apply", {"reason": "observed", "resources": [
            service_resource("ledger"), service_resource("accounts"),
            route_resource("ledger-api", "ledger", "/api/ledger"),
            route_resource("accounts-api", "accounts", "/api/accounts")]})
        assert r.status == 200, r
        cfg = {"node": {"id": "gw-a1", "city": "a", "zone": "a1"},
               "control_plane": {"address": f"http://{cls.cp.address}",
                                 "token_file": cls.cp.token_file,
                                 "cache_dir": os.path.join(cls.class_dir, "cache"),
                                 "report_interval": "1s"}}
        cls.gw = cls.class_start(Gateway(cls.class_dir, cfg, name="gw-a1"))
        register = ["--control-plane", f"http://{cls.cp.address}", "--token-file",
                    cls.cp.token_file]
        cls.ledger = cls.class_start(Sample(cls.class_dir, "ledger", city="a", zone="a1",
                                            extra_args=register))
        cls.accounts_sample = cls.class_start(Sample(cls.class_dir, "accounts", city="a",
                                                     zone="a1", extra_args=register))

        def served(path):
            try:
                return http_request(cls.gw.address, "GET", path, timeout=2).status == 200
            except OSError:
                return False
        wait_until(lambda: served("/api/ledger/x") and served("/api/accounts/x"), 15,
                   message="both routes served through the gateway")
        # The caller starts once the route works, so every one of its calls is answered.
        cls.caller = cls.class_start(Sample(
            cls.class_dir, "teller", city="a", zone="a1",
            extra_args=["--gateway", cls.gw.address, "--call", "ledger=/api/ledger/balance",
                        "--call-interval", "20ms", "--call-count", str(CALLS)]))

    def edges(self, **query):
        q = "&".join(f"{k}={v}" for k, v in dict({"window": "1h"}, **query).items())
        r = self.cp.call("GET", f"/v1/stats/edges?{q}")
        self.assertEqual(r.status, 200, r)
        return {(e["caller"], e["callee"]): e for e in r.json()["edges"]}

    def wait_edge(self, caller, callee, requests, timeout=15):
        def reached():
            e = self.edges().get((caller, callee))
            return e is not None and e["requests"] >= requests
        wait_until(reached, timeout, message=f"edge {caller} -> {callee} with {requests}")
        return self.edges()[(caller, callee)]

    def test_the_call_graph_reaches_the_control_plane(self):
        wait_until(lambda: "calls done: 20 sent, 20 answered" in self.caller.log_text(), 15,
                   message="the caller's 20 calls")
        e = self.wait_edge("teller", "ledger", CALLS)
        self.assertEqual(e["requests"], CALLS, e)
        self.assertEqual(e["errors"], 0, e)
        self.assertEqual(e["gateways"], ["gw-a1"])
        self.assertEqual(e["cities"], ["a"])
        self.assertLessEqual(e["first_seen_ms"], e["last_seen_ms"])
        self.assertLessEqual(e["last_seen_ms"], int(time.time() * 1000) + 1000)
        # The filter by caller, and a window before any traffic.
        self.assertEqual(list(self.edges(caller="teller")), [("teller", "ledger")])
        start = int(time.time() * 1000) - 7_200_000
        r = self.cp.call("GET", f"/v1/stats/edges?from={start}&to={start + 60000}")
        self.assertEqual(r.json()["edges"], [], r)
        # The gateway's own view.
        routes = {r["name"]: r for r in self.gw.admin_get("/stats").json()["routes"]}
        self.assertEqual(routes["ledger-api"]["callers"].get("teller"), CALLS)
        self.assertEqual(self.gw.metric("sluice_observed_caller_requests_total", route="ledger-api",
                                        service="ledger", caller="teller"), CALLS)

    def test_channels_are_counted(self):
        for _ in range(5):
            r = http_request(self.gw.address, "GET", "/api/accounts/c",
                             headers={"x-channel": "mobile"})
            self.assertEqual(r.status, 200)
        self.assertEqual(self.gw.metric_reaching("sluice_observed_channel_requests_total", 5,
                                                 route="accounts-api", channel="mobile"), 5)

        def channel():
            r = self.cp.call("GET", "/v1/stats/channels?window=1h")
            self.assertEqual(r.status, 200, r)
            return {c["channel"]: c for c in r.json()["channels"]}.get("mobile")
        wait_until(lambda: channel() is not None and channel()["requests"] >= 5, 15,
                   message="channel mobile reported")
        self.assertEqual(channel()["requests"], 5)
        self.assertEqual(channel()["gateways"], ["gw-a1"])

    def test_hostile_caller_values_are_bounded(self):
        def send(caller):
            r = http_request(self.gw.address, "GET", "/api/accounts/h",
                             headers={"x-sluice-caller": caller})
            self.assertEqual(r.status, 200)  # counted, never refused
        send("x" * 300)            # too long
        send("bad!value")          # bad characters
        send("<script>")
        for i in range(CAP + 8):   # more distinct values than the cap
            send(f"svc{i}")
        wait_until(lambda: sum({r["name"]: r for r in self.gw.admin_get("/stats").json()
                                ["routes"]}["accounts-api"]["callers"].values()) >= CAP + 11, 5,
                   message="the gateway counted every request")
        routes = {r["name"]: r for r in self.gw.admin_get("/stats").json()["routes"]}
        callers = routes["accounts-api"]["callers"]
        self.assertEqual(callers["invalid"], 3, callers)
        self.assertEqual(callers["other"], 8, callers)
        self.assertEqual(len(callers), CAP + 2, callers)  # 32 values, other, invalid
        self.assertNotIn(f"svc{CAP}", callers)
        self.assertEqual(callers["svc0"], 1)
        # Prometheus: the label values are bounded the same way.
        series = [s for s in self.gw.metrics_text().splitlines()
                  if s.startswith("sluice_observed_caller_requests_total{")
                  and 'route="accounts-api"' in s]
        self.assertEqual(len(series), CAP + 2, series)
        self.assertFalse(any("xxxxxxxxxx" in s or "script" in s for s in series))
        # The control plane: the same bounded set, as edges to accounts.
        self.wait_edge("other", "accounts", 8)
        edges = self.edges(callee="accounts")
        self.assertEqual(edges[("invalid", "accounts")]["requests"], 3)
        self.assertEqual(edges[("other", "accounts")]["requests"], 8)
        self.assertLessEqual(len(edges), CAP + 2)
        # Bad queries are refused with a reason.
        r = self.cp.call("GET", "/v1/stats/edges?window=forever")
        self.assertEqual(r.status, 400, r)
        self.assertIn("window", r.json()["error"])

    def test_the_registry_shows_host_facts(self):
        def facts():
            by_service = {i["service"]: i for i in self.cp.call("GET", "/v1/instances").json()}
            return by_service.get("ledger", {}).get("facts", {})
        wait_until(lambda: facts() != {}, 10, message="ledger registered with facts")
        f = facts()
        self.assertEqual(f["cpu_count"], os.cpu_count(), f)
        with open("/proc/meminfo") as m:
            total_kib = int(m.readline().split()[1])
        self.assertAlmostEqual(f["memory_bytes"] / 1024, total_kib, delta=total_kib * 0.01)
        self.assertEqual(f["hostname"], socket.gethostname())
        self.assertIn("127.0.0.1", f["addresses"])
        self.assertTrue(f["version"].startswith("0."), f)
        # Started when the process did (within the test's lifetime, a few seconds' slack).
        now = time.time() * 1000
        self.assertGreater(f["started_ms"], now - 120_000)
        self.assertLessEqual(f["started_ms"], now)
        env = dict(os.environ, SLUICE_SERVER=f"http://{self.cp.address}")
        p = subprocess.run([BIN, "ctl", "--token-file", self.cp.token_file, "instances", "ledger",
                            "-o", "wide"], capture_output=True, text=True, timeout=30, env=env,
                           stdin=subprocess.DEVNULL)
        self.assertEqual(p.returncode, 0, p.stderr)
        header, row = p.stdout.splitlines()[0], p.stdout.splitlines()[1]
        self.assertRegex(header, r"HOST\s+VERSION$")
        self.assertIn(socket.gethostname(), row)
        self.assertIn(f["version"], row)


if __name__ == "__main__":
    import unittest
    unittest.main()
