"""Canary releases on real processes (docs/changes.md "Canary releases"): `sluice control`
(SQLite), a gateway watching it and reporting stats every second, sample services `pay-v1`
(stable) and `pay-v2` (canary), and steady load through the gateway while a `release` resource
moves the route's weights. A healthy canary is stepped to 100% and promoted (the route ends on
pay-v2, no request failed); a canary made slow (300 ms) goes back to 0% at its first analysis and
the release is rolled_back with the p99 check named; during a release a tester's `x-canary: 1`
reaches the canary, and `ctl release abort` puts the route back on the stable service; a release
stepping when the control plane restarts goes on from its stored state to promotion. Two control
planes on one PostgreSQL make each move of a release once (ReleaseHaTest)."""

import os
import signal
import subprocess
import threading
import unittest

from harness import (BIN, PROMTOOL, Gateway, RawConn, Sample, SluiceTestCase, parse_metrics,
                     metric_sum, wait_until)
from test_control import Control


def service(name, address):
    return {"kind": "service", "name": name, "spec": {"endpoints": [{"address": address}]}}


def release(steps, **analysis):
    # A p99 regression must be 50 ms and more to count: on a busy test machine a few
    # milliseconds of jitter on one side are not the canary's doing; 300 ms is.
    settings = {"interval": "2s", "min_requests": 20, "max_wait": "30s",
                "max_p99_increase_ms": 50, "measurements": ["error_ratio", "p99"]}
    settings.update(analysis)
    return {"kind": "release", "name": "pay",
            "spec": {"route": "pay", "stable": "pay-v1", "canary": "pay-v2", "steps": steps,
                     "analysis": settings}}


class Load:
    """Steady keep-alive load on /pay/ from a few threads, counting answers by service."""

    def __init__(self, address, threads=4):
        self.address = address
        self.stop_flag = threading.Event()
        self.lock = threading.Lock()
        self.by_service = {}
        self.failed = []
        self.threads = [threading.Thread(target=self._run, daemon=True) for _ in range(threads)]
        for t in self.threads:
            t.start()

    def _run(self):
        while not self.stop_flag.is_set():
            try:
                with RawConn(self.address) as c:
                    while not self.stop_flag.is_set():
                        r = c.request("GET", "/pay/tx")
                        with self.lock:
                            if r.status != 200:
                                self.failed.append(r.status)
                            else:
                                side = r.json()["service"]
                                self.by_service[side] = self.by_service.get(side, 0) + 1
            except (OSError, ValueError) as e:
                with self.lock:
                    self.failed.append(repr(e))

    def counts(self):
        with self.lock:
            return dict(self.by_service), list(self.failed)

    def stop(self):
        self.stop_flag.set()
        for t in self.threads:
            t.join(timeout=10)


class ReleaseTest(SluiceTestCase):
    def setUp(self):
        super().setUp()
        self.cp = self.start(Control(self.dir))
        self.v1 = self.start(Sample(self.dir, "pay-v1", city="a"))
        self.v2 = self.start(Sample(self.dir, "pay-v2", city="a"))
        r = self.cp.call("POST", "/v1/apply", {
            "reason": "pay on v1",
            "resources": [service("pay-v1", self.v1.address), service("pay-v2", self.v2.address),
                          {"kind": "route", "name": "pay",
                           "spec": {"match": {"path_prefix": "/pay"}, "service": "pay-v1"}}]})
        self.assertEqual(r.status, 200, r)
        self.gw = self.start(Gateway(self.dir, {
            "node": {"id": "gw-a", "city": "a", "zone": "a1"},
            "control_plane": {"address": f"http://{self.cp.address}",
                              "token_file": self.cp.token_file,
                              "cache_dir": os.path.join(self.dir, "cache"),
                              "report_interval": "1s"}}, name="gw-a"))
        wait_until(lambda: self.applied() == 1, 10, message="gateway on version 1")
        self.load = Load(self.gw.address)
        self.addCleanup(self.load.stop)
        wait_until(lambda: self.load.counts()[0].get("pay-v1", 0) > 100, 10, message="load flows")

    def applied(self):
        for g in self.cp.call("GET", "/v1/gateways").json():
            if g["id"] == "gw-a":
                return g.get("applied_version")
        return None

    def status(self):
        r = self.cp.call("GET", "/v1/releases/pay")
        self.assertEqual(r.status, 200, r)
        return r.json()

    def route(self):
        return self.cp.call("GET", "/v1/resources/route/pay").json()["spec"]

    def wait_state(self, state, timeout):
        def reached():
            s = self.status()
            if s["state"] in ("promoted", "rolled_back", "aborted") and s["state"] != state:
                raise AssertionError(f"release ended {s['state']}, expected {state}: {s}")
            return s if s["state"] == state else None
        return wait_until(reached, timeout, interval=0.2, message=f"release {state}")

    def sides(self, n):
        """n fresh requests (the load stopped, nothing in flight): {service: count}."""
        counts = {}
        with RawConn(self.gw.address) as c:
            for _ in range(n):
                r = c.request("GET", "/pay/check")
                self.assertEqual(r.status, 200, r)
                counts[r.json()["service"]] = counts.get(r.json()["service"], 0) + 1
        return counts

    def ctl(self, *args):
        env = dict(os.environ, SLUICE_SERVER=f"http://{self.cp.address}")
        env.pop("SLUICE_TOKEN", None)
        p = subprocess.run([BIN, "ctl", "--token-file", self.cp.token_file, *args],
                           capture_output=True, text=True, timeout=30, env=env,
                           stdin=subprocess.DEVNULL)
        return p.returncode, p.stdout, p.stderr

    def test_a_healthy_canary_is_promoted(self):
        r = self.cp.call("POST", "/v1/apply", {"reason": "release pay-v2",
                                               "resources": [release([10, 50, 100])]})
        self.assertEqual(r.status, 200, r)
        s = self.wait_state("promoted", 60)
        self.assertEqual(self.route(), {"match": {"path_prefix": "/pay"}, "service": "pay-v2"})
        # Two analyses passed (10% and 50%), each with enough traffic on both sides.
        passed = [a for a in s["analyses"] if a["verdict"] == "pass"]
        self.assertEqual([a["percent"] for a in passed], [10, 50], s["analyses"])
        # Each step was a version by the release, served to the gateway.
        versions = self.cp.call("GET", "/v1/versions?limit=10").json()
        by_release = [v for v in versions if v["author"] == "release/pay"]
        self.assertEqual(len(by_release), 3, versions)
        latest = versions[0]["number"]
        wait_until(lambda: self.applied() == latest, 10, message="gateway on the last version")
        self.load.stop()
        counts, failed = self.load.counts()
        self.assertEqual(failed, [], "no request failed during the release")
        self.assertGreater(counts.get("pay-v2", 0), 0)
        self.assertEqual(self.sides(200), {"pay-v2": 200}, "every request on the canary now")
        # The control plane's metrics say so, and pass promtool.
        body = self.cp.call("GET", "/metrics", token="").body
        text = body.decode() if isinstance(body, bytes) else body
        m = parse_metrics(text)
        self.assertEqual(metric_sum(m, "sluice_control_releases_promoted_total"), 1)
        self.assertEqual(metric_sum(m, "sluice_control_release_canary_percent", release="pay"),
                         100)
        self.assertEqual(metric_sum(m, "sluice_control_release_steps_total"), 2)
        if os.path.exists(PROMTOOL):
            p = subprocess.run([PROMTOOL, "check", "metrics"], input=text, capture_output=True,
                               text=True, timeout=30)
            self.assertEqual(p.returncode, 0, p.stdout + p.stderr)
        rc, out, err = self.ctl("releases")
        self.assertEqual(rc, 0, err)
        self.assertRegex(out, r"pay\s+promoted\s+pay\s+pay-v1 -> pay-v2\s+100%")

    def test_a_slow_canary_is_rolled_back_with_the_p99_check_named(self):
        self.v2.faults(latency_ms=300)
        r = self.cp.call("POST", "/v1/apply", {"reason": "release a slow pay-v2",
                                               "resources": [release([10, 50, 100])]})
        self.assertEqual(r.status, 200, r)
        s = self.wait_state("rolled_back", 60)
        self.assertIn("p99 vs stable", s["failed"])
        self.assertIn("p99", s["reason"])
        self.assertEqual([a["percent"] for a in s["analyses"]],
                         [10] * len(s["analyses"]), "never went past the first step")
        self.assertEqual(self.route(), {"match": {"path_prefix": "/pay"}, "service": "pay-v1"})
        events = self.cp.call("GET", "/v1/events").json()
        events = events if isinstance(events, list) else events.get("events", [])
        self.assertTrue(any(e["kind"] == "release_rolled_back" and e["subject"] == "pay"
                            for e in events), events)
        latest = self.cp.call("GET", "/v1/versions?limit=1").json()[0]
        self.assertEqual(latest["author"], "release/pay")
        wait_until(lambda: self.applied() == latest["number"], 10, message="gateway back")
        self.load.stop()
        counts, failed = self.load.counts()
        self.assertEqual(failed, [], "slow, but no request failed")
        self.assertGreater(counts.get("pay-v2", 0), 0, "the canary had its share before")
        self.assertEqual(self.sides(200), {"pay-v1": 200}, "every request on the stable again")
        rc, out, err = self.ctl("release", "status", "pay")
        self.assertEqual(rc, 0, err)
        self.assertIn("release pay: rolled_back, canary at 0%", out)

    def test_a_release_resumes_after_a_control_plane_restart(self):
        r = self.cp.call("POST", "/v1/apply", {"reason": "release pay-v2",
                                               "resources": [release([5, 100], interval="5s")]})
        self.assertEqual(r.status, 200, r)
        # The restart comes well within the step's first interval (5 s), so nothing moves
        # between the two readings.
        before = self.wait_state("stepping", 10)
        self.cp.signal(signal.SIGTERM)
        self.cp.wait(10)
        self.cp = self.start(Control(self.dir, port=self.cp.port))
        after = self.status()
        for key in ("state", "step", "percent", "started_ms", "step_started_ms"):
            self.assertEqual(after[key], before[key], key)
        # It goes on from the 5% step (no second "first step") to promotion.
        s = self.wait_state("promoted", 60)
        self.assertEqual(s["started_ms"], before["started_ms"])
        versions = self.cp.call("GET", "/v1/versions?limit=10").json()
        self.assertEqual([v["reason"] for v in versions if v["author"] == "release/pay"],
                         ["release pay: promoted (canary at 100%)",
                          "release pay: first step, canary at 5%"])
        self.assertEqual(self.route()["service"], "pay-v2")

    def test_testers_reach_the_canary_during_a_release_and_abort(self):
        r = self.cp.call("POST", "/v1/apply", {"reason": "release pay-v2",
                                               "resources": [release([5, 100])]})
        self.assertEqual(r.status, 200, r)
        self.wait_state("stepping", 10)
        # Hold it at 5% while the testers look.
        rc, out, err = self.ctl("release", "pause", "pay", "--reason", "testers")
        self.assertEqual(rc, 0, err)
        self.assertIn("release pay paused", out)
        latest = self.cp.call("GET", "/v1/versions?limit=1").json()[0]["number"]
        wait_until(lambda: self.applied() == latest, 10, message="gateway on the 5% step")
        with RawConn(self.gw.address) as c:
            for _ in range(50):
                r = c.request("GET", "/pay/test", headers={"x-canary": "1"})
                self.assertEqual(r.status, 200, r)
                self.assertEqual(r.json()["service"], "pay-v2")
            plain = [c.request("GET", "/pay/test").json()["service"] for _ in range(400)]
        # 5% of 400 requests: 20 expected; more than 60 would be 9 standard deviations off.
        self.assertLess(plain.count("pay-v2"), 60, plain.count("pay-v2"))
        self.assertGreater(plain.count("pay-v1"), 300)
        rc, out, err = self.ctl("release", "abort", "pay", "--reason", "found a bug")
        self.assertEqual(rc, 0, err)
        self.assertIn("release pay aborted, canary at 0%", out)
        self.assertEqual(self.route()["service"], "pay-v1")
        s = self.status()
        self.assertEqual(s["state"], "aborted")
        self.assertIn("found a bug", s["reason"])
        rc, out, err = self.ctl("release", "abort", "pay")
        self.assertEqual(rc, 1)
        self.assertIn("aborted already", err)


class ReleaseHaTest(SluiceTestCase):
    """Two control planes on one PostgreSQL database, a gateway talking to each, steady load
    through both (docs/changes.md, "Canary releases"): one control plane makes each move of a
    release. A healthy canary is promoted with each step, analysis and event made once across
    the two; a broken canary is rolled back once; an abort through the second plane is what the
    first one shows at once (it follows the stored state) and it steps no further."""

    @classmethod
    def setUpClass(cls):
        super().setUpClass()
        import pgserver
        cls.pg = pgserver.start_for_class(cls)

    def setUp(self):
        super().setUp()
        from test_control_ha import ControlPlane
        store = self.pg.url(self.pg.create_database())
        token_file = os.path.join(self.dir, "admin.token")
        self.cp1 = self.start(ControlPlane(self.dir, "control1", store, token_file))
        self.cp2 = self.start(ControlPlane(self.dir, "control2", store, token_file))
        self.v1 = self.start(Sample(self.dir, "pay-v1", city="a"))
        self.v2 = self.start(Sample(self.dir, "pay-v2", city="a"))
        self.cp1.apply("pay on v1", service("pay-v1", self.v1.address),
                       service("pay-v2", self.v2.address),
                       {"kind": "route", "name": "pay",
                        "spec": {"match": {"path_prefix": "/pay"}, "service": "pay-v1"}})
        self.gws = {}
        for name, cp in (("gw-1", self.cp1), ("gw-2", self.cp2)):
            self.gws[name] = self.start(Gateway(self.dir, {
                "node": {"id": name, "city": "a", "zone": "a1"},
                "control_plane": {"address": cp.url, "token_file": cp.token_file,
                                  "cache_dir": os.path.join(self.dir, f"cache-{name}"),
                                  "report_interval": "1s"}}, name=name))
        wait_until(lambda: all(g["applied_version"] == 1
                               for g in self.cp1.ok("GET", "/v1/gateways")) and
                   len(self.cp1.ok("GET", "/v1/gateways")) == 2, 15,
                   message="both gateways on version 1")
        self.loads = [Load(gw.address, threads=2) for gw in self.gws.values()]
        for load in self.loads:
            self.addCleanup(load.stop)
        wait_until(lambda: all(load.counts()[0].get("pay-v1", 0) > 50 for load in self.loads),
                   15, message="load through both gateways")

    def metric(self, name, **labels):
        return sum(cp.metric(name, **labels) for cp in (self.cp1, self.cp2))

    def events(self, kind):
        return [e for e in self.cp1.ok("GET", "/v1/events") if e["kind"] == kind]

    def state_on(self, cp):
        return cp.ok("GET", "/v1/releases/pay")

    def wait_state(self, state, timeout):
        def reached():
            s = self.state_on(self.cp2)
            if s["state"] in ("promoted", "rolled_back", "aborted") and s["state"] != state:
                raise AssertionError(f"release ended {s['state']}, expected {state}: {s}")
            return s if s["state"] == state else None
        return wait_until(reached, timeout, interval=0.2, message=f"release {state}")

    def test_each_step_is_made_once_across_two_control_planes(self):
        self.cp1.apply("release pay-v2", release([10, 50, 100]))
        s = self.wait_state("promoted", 60)
        self.assertEqual(self.state_on(self.cp1)["state"], "promoted")
        versions = self.cp1.ok("GET", "/v1/versions?limit=20")
        self.assertEqual([v["reason"] for v in versions if v["author"] == "release/pay"],
                         ["release pay: promoted (canary at 100%)",
                          "release pay: analysis passed at 10%, canary at 50%",
                          "release pay: first step, canary at 10%"])
        # Made once across the two: the first step and the 50% step, one promotion, two
        # analyses that passed (each recorded by the plane that stored it first).
        self.assertEqual(self.metric("sluice_control_release_steps_total"), 2, s)
        self.assertEqual(self.metric("sluice_control_releases_promoted_total"), 1, s)
        self.assertEqual(self.metric("sluice_control_release_analyses_total", verdict="pass"), 2,
                         s["analyses"])
        self.assertEqual(len(self.events("release_step")), 2)
        self.assertEqual(len(self.events("release_promoted")), 1)
        self.assertEqual([a["verdict"] for a in s["analyses"]].count("pass"), 2, s["analyses"])
        for load in self.loads:
            load.stop()
            self.assertEqual(load.counts()[1], [], "no request failed during the release")

    def test_a_broken_canary_is_rolled_back_once(self):
        self.v2.faults(error_rate=1)
        self.cp2.apply("release a broken pay-v2", release([10, 50, 100]))
        s = self.wait_state("rolled_back", 60)
        self.assertIn("error_ratio vs stable", s["failed"])
        self.assertEqual(self.state_on(self.cp1)["state"], "rolled_back")
        self.assertEqual(self.cp1.ok("GET", "/v1/resources/route/pay")["spec"]["service"],
                         "pay-v1")
        self.assertEqual(self.metric("sluice_control_releases_rolled_back_total"), 1)
        self.assertEqual(self.metric("sluice_control_release_analyses_total", verdict="fail"), 1)
        self.assertEqual(len(self.events("release_rolled_back")), 1)

    def test_an_abort_through_one_plane_stops_the_other(self):
        self.cp1.apply("release pay-v2", release([10, 100], interval="30s", max_wait="60s"))
        self.wait_state("stepping", 15)
        r = self.cp2.ok("POST", "/v1/releases/pay/abort", {"reason": "found a bug"})
        self.assertEqual(r["state"], "aborted")
        self.assertEqual(self.cp1.ok("GET", "/v1/resources/route/pay")["spec"]["service"],
                         "pay-v1")
        # The first plane follows the stored state within a drive (~200 ms): aborted, and an
        # action there is refused as for any final release.
        wait_until(lambda: self.state_on(self.cp1)["state"] == "aborted", 2, interval=0.1,
                   message="control1 shows the abort")
        self.cp1.ok("POST", "/v1/releases/pay/pause", {"reason": "too late"}, status=409)
        self.assertEqual(self.metric("sluice_control_releases_aborted_total"), 1)
        self.assertEqual(len(self.events("release_aborted")), 1)


if __name__ == "__main__":
    unittest.main()
