"""The control plane end to end (issue 5), all real processes: `sluice control` (SQLite), two
gateways in two cities watching it (`control_plane:` in their files), sample services that
register themselves, and `sluice ctl`. A route applied with ctl is served by both gateways within
1 s; a killed instance leaves rotation after its TTL; gateways keep serving without the control
plane and a restarted one serves from its cache; a config a gateway cannot use is refused,
reported and the old one kept; stats snapshots and events reach the control plane; bad input to
the gateway's and the sample's control-plane options is answered with clear errors."""

import json
import os
import signal
import subprocess
import time
import unittest

from harness import (BIN, Gateway, Sample, SluiceTestCase, addr, free_port, http_request,
                     wait_until)
from test_control import Control, make_cert


def service_resource(name, **spec):
    return {"kind": "service", "name": name, "spec": spec}


def route_resource(name, service, prefix, **spec):
    return {"kind": "route", "name": name,
            "spec": dict({"match": {"path_prefix": prefix}, "service": service}, **spec)}


class ControlPlaneEndToEndTest(SluiceTestCase):
    def setUp(self):
        super().setUp()
        self.cp = self.start(Control(self.dir))

    # --- helpers ------------------------------------------------------------------------------

    def gateway(self, name, city, report_interval="1s", wait_ready=True, token_file=None):
        cfg = {
            "node": {"id": name, "city": city, "zone": city + "1"},
            "control_plane": {"address": f"http://{self.cp.address}",
                              "token_file": token_file or self.cp.token_file,
                              "cache_dir": os.path.join(self.dir, f"cache-{name}"),
                              "report_interval": report_interval},
        }
        return self.start(Gateway(self.dir, cfg, name=name), ready=wait_ready)

    def sample(self, name, city, ttl="10s", **kw):
        extra = ["--control-plane", f"http://{self.cp.address}", "--token-file",
                 self.cp.token_file, "--ttl", ttl]
        return self.start(Sample(self.dir, name, city=city, zone=city + "1", extra_args=extra,
                                 **kw))

    def apply(self, *resources, reason="test"):
        r = self.cp.call("POST", "/v1/apply", {"reason": reason, "resources": list(resources)})
        self.assertEqual(r.status, 200, r)
        return r.json()["version"]

    def ctl(self, *args):
        env = dict(os.environ, SLUICE_SERVER=f"http://{self.cp.address}")
        p = subprocess.run([BIN, "ctl", "--token-file", self.cp.token_file, *args],
                           capture_output=True, text=True, timeout=30, env=env,
                           stdin=subprocess.DEVNULL)
        return p.returncode, p.stdout, p.stderr

    def instances(self, service=None):
        path = "/v1/instances" + (f"?service={service}" if service else "")
        return self.cp.call("GET", path).json()

    def gateways(self):
        return {g["id"]: g for g in self.cp.call("GET", "/v1/gateways").json()}

    def wait_registered(self, service, count, timeout=10):
        wait_until(lambda: len(self.instances(service)) == count, timeout,
                   message=f"{count} instance(s) of {service} registered")

    def served_by(self, gw, path):
        try:
            r = http_request(gw.address, "GET", path, timeout=2)
        except OSError:
            return None
        return r.json().get("instance") if r.status == 200 else None

    def endpoint_addresses(self, gw, service):
        cfg = gw.admin_get("/config").json()["config"]
        for s in cfg["services"]:
            if s["name"] == service:
                return sorted(e["address"] for e in s["endpoints"])
        return None

    # --- tests --------------------------------------------------------------------------------

    def test_ctl_apply_reaches_both_gateways_within_a_second(self):
        a1 = self.sample("accounts", "a")
        b1 = self.sample("accounts", "b")
        self.wait_registered("accounts", 2)
        gw_a = self.gateway("gw-a", "a")
        gw_b = self.gateway("gw-b", "b")
        path = os.path.join(self.dir, "resources.yaml")
        with open(path, "w") as f:
            f.write("kind: service\nname: accounts\nspec: {}\n---\n"
                    "kind: route\nname: acc\nspec: {match: {path_prefix: /acc}, "
                    "service: accounts}\n")
        t0 = time.monotonic()
        rc, out, err = self.ctl("apply", "-f", path, "--reason", "open accounts")
        self.assertEqual(rc, 0, out + err)
        served = {}
        deadline = t0 + 5
        while len(served) < 2 and time.monotonic() < deadline:
            for gw in (gw_a, gw_b):
                if gw.name not in served and self.served_by(gw, "/acc/1"):
                    served[gw.name] = time.monotonic() - t0
            time.sleep(0.01)
        self.assertEqual(set(served), {"gw-a", "gw-b"}, served)
        # The bound includes ctl's own start and request.
        self.assertLess(max(served.values()), 1.0, served)
        # Locality: each city's gateway sends its requests to its own city's instance.
        self.assertEqual(self.served_by(gw_a, "/acc/2"), f"accounts@{a1.address}")
        self.assertEqual(self.served_by(gw_b, "/acc/2"), f"accounts@{b1.address}")
        # Both report the version they applied; ctl shows them healthy.
        wait_until(lambda: all(g.get("health") == "ok" and g.get("applied_version") == 1
                               for g in self.gateways().values()) and len(self.gateways()) == 2,
                   5, message="both gateways report version 1")
        rc, out, err = self.ctl("gateways")
        self.assertEqual(rc, 0, err)
        self.assertRegex(out, r"gw-a\s+a\s+a1\s+1\.\d+\s+applied\s+ok")
        self.assertRegex(out, r"gw-b\s+b\s+b1\s+1\.\d+\s+applied\s+ok")
        # The gateway's own view: the link's state in /stats.
        link = gw_a.admin_get("/stats").json()["control_plane"]
        self.assertTrue(link["connected"], link)
        self.assertTrue(link["applied_version"].startswith("1."), link)
        self.assertGreaterEqual(link["applied"], 2, link)  # the start-up version, then 1.x
        ready = gw_b.admin_get("/ready").json()
        self.assertEqual(ready["control_plane_version"], link["applied_version"])

    def test_killed_instance_leaves_rotation_after_its_ttl(self):
        keep = self.sample("pay", "a", ttl="1s")
        doomed = self.sample("pay", "a", ttl="1s")
        self.wait_registered("pay", 2)
        self.apply(service_resource("pay"), route_resource("pay", "pay", "/pay"))
        gw = self.gateway("gw-a", "a")
        wait_until(lambda: self.endpoint_addresses(gw, "pay") == sorted([keep.address,
                                                                          doomed.address]),
                   5, message="both instances pushed")
        t0 = time.monotonic()
        doomed.popen.send_signal(signal.SIGKILL)  # no deregistration
        wait_until(lambda: self.endpoint_addresses(gw, "pay") == [keep.address], 6,
                   message="killed instance removed from the gateway")
        # TTL 1 s, swept every second, then pushed: gone within about 2 s.
        self.assertLess(time.monotonic() - t0, 3.5)
        for _ in range(20):
            self.assertEqual(self.served_by(gw, "/pay/x"), f"pay@{keep.address}")
        events = self.cp.call("GET", "/v1/events").json()
        self.assertTrue(any(e["kind"] == "instance_expired" and doomed.address in
                            json.dumps(e["detail"]) for e in events), events)
        # A clean stop deregisters at once (no TTL wait); with no instance left, the service
        # has no endpoints and the gateway answers 503 (the rest of its config is untouched).
        keep.signal(signal.SIGTERM)
        keep.wait(5)
        self.assertEqual(self.instances("pay"), [])
        wait_until(lambda: self.endpoint_addresses(gw, "pay") == [], 5,
                   message="no endpoints pushed")
        r = http_request(gw.address, "GET", "/pay/x")
        self.assertEqual(r.status, 503, r)
        self.assertIn("no upstream endpoint available", r.json()["error"])

    def test_gateways_serve_without_the_control_plane_and_restart_from_cache(self):
        s = self.sample("accounts", "a")
        self.wait_registered("accounts", 1)
        self.apply(service_resource("accounts"), route_resource("acc", "accounts", "/acc"))
        gw = self.gateway("gw-a", "a")
        wait_until(lambda: self.served_by(gw, "/acc/1"), 5, message="route served")
        cache = os.path.join(self.dir, "cache-gw-a", "config.json")
        wait_until(lambda: os.path.exists(cache), 5, message="config cached")
        with open(cache) as f:
            cached = json.load(f)
        self.assertTrue(cached["version"].startswith("1."), cached)
        self.assertEqual(os.stat(cache).st_mode & 0o777, 0o600)

        self.cp.signal(signal.SIGTERM)
        self.cp.wait(10)
        for _ in range(50):
            self.assertEqual(self.served_by(gw, "/acc/1"), f"accounts@{s.address}")
        # Restarted while the control plane is down: serves the cached config.
        gw.signal(signal.SIGTERM)
        gw.wait(10)
        gw2 = self.start(Gateway(self.dir, gw.config, name="gw-a"))
        self.assertEqual(self.served_by(gw2, "/acc/1"), f"accounts@{s.address}")
        self.assertIn("from cache", gw2.log_text())
        link = gw2.admin_get("/stats").json()["control_plane"]
        self.assertFalse(link["connected"], link)
        self.assertIn("connection refused", link["last_error"])
        # The control plane comes back (same database): the gateway reconnects, reports in, and
        # follows the next change.
        self.cp = self.start(Control(self.dir, port=self.cp.port))
        wait_until(lambda: self.gateways().get("gw-a", {}).get("health") == "ok", 10,
                   message="gateway reports to the restarted control plane")
        self.apply(route_resource("acc2", "accounts", "/two"))
        wait_until(lambda: self.served_by(gw2, "/two/x"), 5, message="new route served")

    def test_a_config_the_gateway_cannot_use_is_refused_and_reported(self):
        self.sample("accounts", "a")
        self.wait_registered("accounts", 1)
        self.apply(service_resource("accounts"), route_resource("acc", "accounts", "/acc"))
        gw = self.gateway("gw-a", "a")
        wait_until(lambda: self.served_by(gw, "/acc/1"), 5, message="route served")
        # Valid for the control plane (its validator assumes a Redis), but this gateway has no
        # redis section: it refuses, keeps serving what it had, and says why.
        v = self.apply({"kind": "rate_limit", "name": "global",
                        "spec": {"key": ["route"], "limit": {"requests": 100, "per": "1s"},
                                 "scope": "cluster"}},
                       route_resource("new", "accounts", "/new"))

        def refused():
            g = self.gateways().get("gw-a", {})
            return g.get("status") == "refused" and g.get("applied_version") == v
        wait_until(refused, 5, message="gateway reports the refusal")
        g = self.gateways()["gw-a"]
        self.assertEqual(g["health"], "refused")
        self.assertIn("rate_limits[0]", g["error"])
        self.assertIn("redis", g["error"])
        self.assertIsNotNone(self.served_by(gw, "/acc/1"))
        self.assertIsNone(self.served_by(gw, "/new/1"))
        events = self.cp.call("GET", "/v1/events").json()
        self.assertTrue(any(e["kind"] == "config_refused" and e["source"] == "gw-a"
                            for e in events), events)
        rc, out, err = self.ctl("gateways")
        self.assertRegex(out, r"gw-a\s+a\s+a1\s+\S+\s+refused\s+refused")
        # Fixed with a delete: applied, healthy again.
        r = self.cp.call("DELETE", "/v1/resources/rate_limit/global?reason=no+redis+here")
        self.assertEqual(r.status, 200, r)
        wait_until(lambda: self.served_by(gw, "/new/1"), 5, message="fixed config applied")
        wait_until(lambda: self.gateways()["gw-a"]["health"] == "ok", 5,
                   message="gateway healthy again")

    def test_stats_snapshots_and_events_reach_the_control_plane(self):
        s = self.sample("accounts", "a")
        self.wait_registered("accounts", 1)
        self.apply(service_resource("accounts", circuit_breaker={
                       "error_ratio": 0.5, "min_requests": 5, "open_duration": "30s"}),
                   route_resource("acc", "accounts", "/acc", strip_prefix="/acc"))
        gw = self.gateway("gw-a", "a")
        wait_until(lambda: self.served_by(gw, "/acc/1"), 5, message="route served")
        t0 = int(time.time() * 1000)
        for i in range(30):
            self.assertEqual(http_request(gw.address, "GET", f"/acc/{i}").status, 200)

        def counted():
            recent = self.cp.call("GET", f"/v1/stats?gateway=gw-a&from={t0 - 60000}").json()
            total = sum(snap.get("routes", {}).get("acc", {}).get("requests", 0)
                        for snap in recent["recent"])
            return total
        # Deltas add up to what was sent (plus the probe above, sent before t0 or not).
        wait_until(lambda: counted() >= 30, 5, message="requests counted in stats snapshots")
        self.assertIn(counted(), (30, 31))
        snap = self.cp.call("GET", "/v1/stats?gateway=gw-a").json()["recent"][-1]
        for key in ("routes", "services", "endpoints", "cities", "concurrency"):
            self.assertIn(key, snap)
        self.assertEqual(snap["city"], "a")
        lat = snap["services"]["accounts"]["latency"]
        self.assertEqual(len(lat["buckets"]), len(lat["le"].split()) + 1)

        def summed(section, name, field):
            recent = self.cp.call("GET", f"/v1/stats?gateway=gw-a&from={t0 - 60000}").json()
            return sum(snap.get(section, {}).get(name, {}).get(field, 0)
                       for snap in recent["recent"])
        # 429s, whoever answered them, are reported per route and per service (a change's
        # analysis compares them); none so far.
        self.assertEqual(summed("routes", "acc", "throttled"), 0)
        for i in range(3):
            self.assertEqual(http_request(gw.address, "GET", "/acc/_sample/status/429").status, 429)
        wait_until(lambda: summed("routes", "acc", "throttled") >= 3, 5,
                   message="429s counted in stats snapshots")
        self.assertEqual(summed("routes", "acc", "throttled"), 3)
        wait_until(lambda: summed("services", "accounts", "throttled") >= 3, 5,
                   message="429s counted for the service")
        self.assertEqual(summed("services", "accounts", "throttled"), 3)
        self.assertEqual(gw.metric("sluice_requests_throttled_total", route="acc",
                                   service="accounts"), 3)
        self.assertEqual(summed("services", "accounts", "breaker_opens"), 0)

        # Break the service: the breaker opens (the 30 good calls are still in its window), and
        # the gateway says so.
        s.faults(error_rate=1.0)
        for i in range(50):
            http_request(gw.address, "GET", f"/acc/{i}")

        def breaker_event():
            events = self.cp.call("GET", "/v1/events").json()
            return [e for e in events if e["kind"] == "breaker_opened"]
        wait_until(breaker_event, 5, message="breaker_opened event")
        e = breaker_event()[0]
        self.assertEqual(e["source"], "gw-a")
        self.assertEqual(e["subject"], "service/accounts")
        self.assertEqual(e["detail"], {"from": "closed", "to": "open"})
        # The opening is counted in the snapshots too (state names alone would miss an open and
        # close between two snapshots).
        wait_until(lambda: summed("services", "accounts", "breaker_opens") >= 1, 5,
                   message="breaker_opens in stats snapshots")
        self.assertEqual(summed("services", "accounts", "breaker_opens"), 1)

    def test_gateway_and_sample_over_https(self):
        tls_dir = os.path.join(self.dir, "tls")
        os.makedirs(tls_dir)
        cert, key = make_cert(tls_dir)
        cp = self.start(Control(tls_dir, tls=(cert, key)))
        s = self.start(Sample(self.dir, "accounts", city="a", extra_args=[
            "--control-plane", cp.url, "--token-file", cp.token_file, "--ca-file", cert]))
        wait_until(lambda: "registered accounts/" in s.log_text(), 5, message="registered")
        res = os.path.join(tls_dir, "res.yaml")
        with open(res, "w") as f:
            f.write("kind: service\nname: accounts\nspec: {}\n---\nkind: route\nname: acc\n"
                    "spec: {match: {path_prefix: /acc}, service: accounts}\n")
        rc = subprocess.run([BIN, "ctl", "--server", cp.url, "--token-file", cp.token_file,
                             "--ca-file", cert, "apply", "-f", res, "--reason", "tls"],
                            capture_output=True, text=True, timeout=30)
        self.assertEqual(rc.returncode, 0, rc.stdout + rc.stderr)
        cfg = {"node": {"id": "gw-tls", "city": "a", "zone": "a1"},
               "control_plane": {"address": cp.url, "token_file": cp.token_file,
                                 "ca_file": cert,
                                 "cache_dir": os.path.join(self.dir, "cache-tls")}}
        gw = self.start(Gateway(self.dir, cfg, name="gw-tls"))
        wait_until(lambda: self.served_by(gw, "/acc/1"), 5, message="served over a TLS link")
        self.assertEqual(self.served_by(gw, "/acc/1"), f"accounts@{s.address}")

    def test_a_city_switch_is_recorded_in_the_control_plane(self):
        def make(name, city):
            cfg = {"node": {"id": name, "city": city, "zone": city + "1"},
                   "control_plane": {"address": f"http://{self.cp.address}",
                                     "token_file": self.cp.token_file,
                                     "cache_dir": os.path.join(self.dir, f"cache-{name}")}}
            return Gateway(self.dir, cfg, name=name)
        gw_a, gw_b = make("gw-a", "a"), make("gw-b", "b")
        self.apply({"kind": "units", "name": "units",
                    "spec": {"key": "header:x-customer-id", "shards": 100,
                             "owners": {"a": "0-49", "b": "50-99"},
                             "peers": {"a": gw_a.address, "b": gw_b.address}}})
        for gw in (gw_a, gw_b):
            self.start(gw)
        rc = subprocess.run([BIN, "gateway", "switch", "--admin", gw_a.admin, "--admin",
                             gw_b.admin, "--from", "a", "--to", "b", "--shards", "0-9",
                             "--control-plane", f"http://{self.cp.address}", "--token-file",
                             self.cp.token_file], capture_output=True, text=True, timeout=30)
        self.assertEqual(rc.returncode, 0, rc.stdout + rc.stderr)
        self.assertIn("units recorded as version 2", rc.stdout)
        units = self.cp.call("GET", "/v1/resources/units/units").json()
        self.assertEqual(units["spec"]["owners"], {"a": "10-49", "b": "0-9,50-99"})
        versions = self.cp.call("GET", "/v1/versions").json()
        self.assertEqual(versions[0]["reason"], "switch a -> b shards 0-9")
        # A gateway that restarts takes the switched ownership, not the old one.
        gw_a.signal(signal.SIGTERM)
        gw_a.wait(10)
        gw_a2 = self.start(make("gw-a", "a"))
        owners = gw_a2.admin_get("/units").json()["owners"]
        self.assertEqual(owners, {"a": "10-49", "b": "0-9,50-99"})
        # The running gateways keep it too after the push of the recorded version.
        wait_until(lambda: all(g.get("applied_version") == 2 for g in self.gateways().values()),
                   5, message="both gateways applied the recorded units")
        self.assertEqual(gw_b.admin_get("/units").json()["owners"], owners)
        # Draining city a entirely: a keeps its (empty) entry in the resource, since its peer
        # entry names it.
        rc = subprocess.run([BIN, "gateway", "switch", "--admin", gw_a2.admin, "--admin",
                             gw_b.admin, "--from", "a", "--to", "b",
                             "--control-plane", f"http://{self.cp.address}", "--token-file",
                             self.cp.token_file], capture_output=True, text=True, timeout=30)
        self.assertEqual(rc.returncode, 0, rc.stdout + rc.stderr)
        units = self.cp.call("GET", "/v1/resources/units/units").json()
        self.assertEqual(units["spec"]["owners"], {"a": [], "b": "0-99"})
        self.assertEqual(gw_b.admin_get("/units").json()["owners"], {"b": "0-99"})

    def test_failover_and_health_events(self):
        local = self.sample("accounts", "a")
        remote = self.sample("accounts", "b")
        self.wait_registered("accounts", 2)
        self.apply(service_resource("accounts", health_check={
                       "interval": "100ms", "unhealthy_threshold": 2, "healthy_threshold": 1},
                       locality={"prefer": "same_city"}),
                   route_resource("acc", "accounts", "/acc"))
        gw = self.gateway("gw-a", "a")
        wait_until(lambda: self.served_by(gw, "/acc/1") == f"accounts@{local.address}", 5,
                   message="served in city a")
        local.faults(healthy=False)
        wait_until(lambda: self.served_by(gw, "/acc/1") == f"accounts@{remote.address}", 5,
                   message="failed over to city b")

        def kinds():
            return [(e["kind"], e["subject"]) for e in self.cp.call("GET", "/v1/events").json()
                    if e["source"] == "gw-a"]
        wait_until(lambda: ("failover", "service/accounts") in kinds(), 5,
                   message="failover event")
        self.assertIn(("endpoint_unhealthy", f"accounts/{local.address}"), kinds())
        failover = [e for e in self.cp.call("GET", "/v1/events").json()
                    if e["kind"] == "failover"][0]
        self.assertEqual(failover["detail"]["to"], ["b"])
        local.faults(healthy=True)
        wait_until(lambda: ("failover_ended", "service/accounts") in kinds(), 5,
                   message="failover_ended event")
        self.assertIn(("endpoint_restored", f"accounts/{local.address}"), kinds())

    def test_bad_control_plane_settings_are_clear_errors(self):
        # The sample service: a bad URL and a missing token file stop it at once (exit 2).
        for extra, text in ((["--control-plane", "ftp://x", "--token-file", self.cp.token_file],
                             "must start with http:// or https://"),
                            (["--control-plane", f"http://{self.cp.address}", "--token-file",
                              os.path.join(self.dir, "nope")], "--token-file")):
            p = subprocess.run([BIN, "sample-service", "--listen", addr(free_port()), "--name",
                                "x", "--city", "a", *extra], capture_output=True, text=True,
                               timeout=10, stdin=subprocess.DEVNULL)
            self.assertEqual(p.returncode, 2, p.stderr)
            self.assertIn(text, p.stderr)
        # A gateway whose token the control plane rejects: starts (nothing cached), is not ready,
        # says why, and registers nothing.
        bad = os.path.join(self.dir, "bad.token")
        with open(bad, "w") as f:
            f.write("not-a-token\n")
        gw = self.gateway("gw-bad", "a", wait_ready=False, token_file=bad)
        wait_until(lambda: "is not accepted" in gw.log_text(), 10, message="401 logged")
        r = gw.admin_get("/ready")
        self.assertEqual(r.status, 503)
        self.assertIn("no config from the control plane yet", r.json()["reason"])
        self.assertNotIn("gw-bad", self.gateways())
        # A viewer token: the gateway cannot report (403) but still follows every change.
        r = self.cp.call("POST", "/v1/tokens", {"name": "gw-view", "role": "viewer"})
        viewer = os.path.join(self.dir, "viewer.token")
        with open(viewer, "w") as f:
            f.write(r.json()["token"])
        self.sample("accounts", "a")
        self.wait_registered("accounts", 1)
        self.apply(service_resource("accounts"), route_resource("acc", "accounts", "/acc"))
        gw_v = self.gateway("gw-view", "a", token_file=viewer)
        self.apply(route_resource("later", "accounts", "/later"))
        wait_until(lambda: self.served_by(gw_v, "/later/1"), 5, message="viewer gateway follows")
        wait_until(lambda: "HTTP 403" in gw_v.log_text(), 5, message="403 on reporting logged")
        # A control plane that is not there: the sample keeps serving and keeps trying.
        dead = f"http://{addr(free_port())}"
        s = self.start(Sample(self.dir, "lonely", city="a", extra_args=[
            "--control-plane", dead, "--token-file", self.cp.token_file]))
        wait_until(lambda: "cannot register" in s.log_text(), 5, message="registration retried")
        self.assertEqual(http_request(s.address, "GET", "/x").status, 200)


if __name__ == "__main__":
    unittest.main()
