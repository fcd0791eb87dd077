"""Staged rollout of gateway config, driven (issue 14): a change governed by a change_policy with
rollout stages reaches one gateway of city a, then city a, then every gateway, with an analysis
of the gateways' stats between stages; a change that makes the route fail is rolled back
automatically at its first stage; a control-plane restart mid-rollout resumes it; without
traffic the analysis is inconclusive and the rollout waits. Real processes: `sluice control`
(SQLite), four gateways (cities a and b, two each) reporting stats every second, sample
services."""

import os
import signal
import subprocess
import threading
import time
import unittest

from harness import BIN, Gateway, SluiceTestCase, http_request, wait_until
from test_control import Control

INTERVAL_S = 3
REPORT_S = 1
GATEWAYS = (("gw-a1", "a"), ("gw-a2", "a"), ("gw-b1", "b"), ("gw-b2", "b"))
STAGES = [{"gateways": "city=a,count=1"}, {"city": "a"}, {"all": True}]


def service_resource(name, address):
    return {"kind": "service", "name": name, "spec": {"endpoints": [{"address": address}]}}


def route_resource(name, service, prefix):
    return {"kind": "route", "name": name,
            "spec": {"match": {"path_prefix": prefix}, "service": service}}


def policy_resource(min_requests=20, on_inconclusive="wait", max_wait="10m"):
    return {"kind": "change_policy", "name": "staged",
            "spec": {"match": {"kinds": ["route"]},
                     "approvals": {"count": 0},
                     "rollout": {"stages": STAGES,
                                 "analysis": {"interval": f"{INTERVAL_S}s",
                                              "min_requests": min_requests,
                                              "measurements": ["error_ratio"],
                                              "on_inconclusive": on_inconclusive,
                                              "max_wait": max_wait,
                                              "history": "0s"}}}}


class Load:
    """Closed-loop GETs to every gateway, one thread each, a fixed pause between requests;
    counts answers by gateway and status, and the time of the first 5xx."""

    def __init__(self, gateways, path, pause_s=0.02):
        self.gateways, self.path, self.pause_s = gateways, path, pause_s
        self.lock = threading.Lock()
        self.counts = {name: {"ok": 0, "failed": 0} for name, _ in gateways}
        self.first_failure = None
        self.stop_flag = threading.Event()
        self.threads = [threading.Thread(target=self.run, args=(n, gw), daemon=True)
                        for n, gw in gateways]

    def run(self, name, gw):
        while not self.stop_flag.is_set():
            try:
                status = http_request(gw.address, "GET", self.path, timeout=5).status
            except OSError:
                status = 599
            with self.lock:
                if status >= 500:
                    self.counts[name]["failed"] += 1
                    if self.first_failure is None:
                        self.first_failure = time.monotonic()
                else:
                    self.counts[name]["ok"] += 1
            time.sleep(self.pause_s)

    def start(self):
        self.t0 = time.monotonic()
        for t in self.threads:
            t.start()
        return self

    def stop(self):
        self.stop_flag.set()
        for t in self.threads:
            t.join(10)
        self.elapsed = time.monotonic() - self.t0

    def snapshot(self):
        with self.lock:
            return {k: dict(v) for k, v in self.counts.items()}


class RolloutTest(SluiceTestCase):
    def setUp(self):
        super().setUp()
        self.cp = self.start(Control(self.dir))
        self.good = self.sample("good")
        self.bad = self.sample("bad")
        self.good2 = self.sample("good2")
        self.gws = {}

    def start_gateways(self):
        for name, city in GATEWAYS:
            cfg = {"node": {"id": name, "city": city, "zone": city + "1"},
                   "control_plane": {"address": f"http://{self.cp.address}",
                                     "token_file": self.cp.token_file,
                                     "cache_dir": os.path.join(self.dir, f"cache-{name}"),
                                     "report_interval": f"{REPORT_S}s"}}
            self.gws[name] = self.start(Gateway(self.dir, cfg, name=name), ready=False)
        for gw in self.gws.values():
            gw.wait_ready(20)

    def apply(self, *resources, expect=200):
        r = self.cp.call("POST", "/v1/apply", {"reason": "test", "resources": list(resources)})
        self.assertEqual(r.status, expect, r)
        return r.json()

    def base_config(self, **policy):
        v = self.apply(service_resource("good", self.good.address),
                       service_resource("bad", self.bad.address),
                       service_resource("good2", self.good2.address),
                       route_resource("acc", "good", "/acc"),
                       policy_resource(**policy))["version"]
        self.start_gateways()
        wait_until(lambda: all(g["applied_version"] == v for g in self.gateway_list()) and
                   len(self.gateway_list()) == 4, 20, message="every gateway on the base")
        return v

    def gateway_list(self):
        r = self.cp.call("GET", "/v1/gateways")
        return r.json() if r.status == 200 else []

    def versions(self):
        return {g["id"]: (g["applied_version"], g["served_version"]) for g in self.gateway_list()}

    def change(self, cid):
        return self.cp.call("GET", f"/v1/changes/{cid}").json()

    def rollout(self, cid):
        r = self.cp.call("GET", f"/v1/changes/{cid}/rollout")
        self.assertEqual(r.status, 200, r)
        return r.json()

    def test_good_change_goes_through_every_stage(self):
        base = self.base_config()
        load = Load([(n, self.gws[n]) for n, _ in GATEWAYS], "/acc/x").start()
        try:
            r = self.apply(route_resource("acc", "good2", "/acc"))
            self.assertEqual(r["state"], "rolling_out", r)
            cid, target = r["change"], r["version"]
            # Stage 1: exactly one gateway of city a is served the target.
            wait_until(lambda: sum(1 for g in self.gateway_list()
                                   if g["served_version"] == target) == 1, 5,
                       message="stage 1 served to one gateway")
            first = [g for g in self.gateway_list() if g["served_version"] == target][0]
            self.assertEqual(first["city"], "a", first)
            stages_seen = set()

            def done():
                st = self.rollout(cid)
                stages_seen.add(st["stage"])
                return self.change(cid)["state"] == "done"
            wait_until(done, 8 * INTERVAL_S + 20, interval=0.2, message="change done")
            self.assertTrue({1, 2, 3} <= stages_seen or 3 in stages_seen, stages_seen)
            st = self.rollout(cid)
            self.assertEqual(st["phase"], "done", st)
            self.assertEqual([a["verdict"] for a in st["analyses"]][:2], ["pass", "pass"],
                             st["analyses"])
            self.assertEqual([a["step"] for a in st["analyses"]],
                             ["proceed"] * len(st["analyses"]), st["analyses"])
            wait_until(lambda: all(g["applied_version"] == target
                                   for g in self.gateway_list()), 10,
                       message="every gateway applied the change")
            self.assertGreater(target, base)
        finally:
            load.stop()
        counts = load.snapshot()
        self.assertEqual(sum(c["failed"] for c in counts.values()), 0, counts)

    def test_bad_change_rolled_back_at_its_first_stage(self):
        base = self.base_config()
        self.bad.faults(error_rate=1.0)
        gws = [(n, self.gws[n]) for n, _ in GATEWAYS]
        load = Load(gws, "/acc/x").start()
        seen = {}
        watching = threading.Event()

        def watch():
            # Every gateway's applied and served versions, as often as the API answers.
            while not watching.is_set():
                for g in self.gateway_list():
                    seen.setdefault(g["id"], set()).update(
                        {g["applied_version"], g["served_version"]})
                time.sleep(0.05)
        watcher = threading.Thread(target=watch, daemon=True)
        watcher.start()
        try:
            wait_until(lambda: sum(c["ok"] for c in load.snapshot().values()) > 100, 10,
                       message="load running")
            r = self.apply(route_resource("acc", "bad", "/acc"))
            self.assertEqual(r["state"], "rolling_out", r)
            cid, target = r["change"], r["version"]
            wait_until(lambda: self.change(cid)["state"] == "rolled_back",
                       4 * INTERVAL_S + 10, interval=0.1, message="change rolled back")
            ch = self.change(cid)
            # Every gateway back on the base's resources (the rollback's new version).
            latest = self.cp.call("GET", "/v1/versions").json()[0]["number"]
            t_back = None
            wait_until(lambda: all(g["applied_version"] == latest for g in self.gateway_list()),
                       10, interval=0.05, message="every gateway on the rollback")
            t_back = time.monotonic()
            regression_s = t_back - load.first_failure
        finally:
            watching.set()
            watcher.join(5)
            load.stop()
        last = ch["transitions"][-1]
        self.assertEqual(last["to"], "rolled_back", last)
        self.assertIn("analysis failed at stage 1", last["reason"])
        self.assertIn("error ratio", last["reason"])
        st = self.rollout(cid)
        self.assertEqual(st["phase"], "rolled_back", st)
        self.assertEqual(st["stage"], 1, st)
        self.assertEqual(st["analyses"][-1]["verdict"], "fail", st)
        canary = st["analyses"][-1]["changed_gateways"]
        self.assertEqual(len(canary), 1, st)
        # The other gateways never served (nor were served) the bad version.
        for name, versions in seen.items():
            if name not in canary:
                self.assertNotIn(target, versions, (name, seen))
        # The rollback is a change of its own, on the base's resources.
        rb = self.cp.call("GET", "/v1/changes?limit=1").json()[0]
        self.assertEqual(rb["operation"], "rollback", rb)
        self.assertEqual(rb["author"], "control-plane", rb)
        events = self.cp.call("GET", "/v1/events").json()
        events = events.get("events", events) if isinstance(events, dict) else events
        rolled = [e for e in events if e.get("kind") == "rollout_rolled_back"]
        self.assertTrue(rolled and "error ratio" in rolled[-1]["detail"]["reason"], events)
        # Failures: only the canary, at most its share of the load for the interval plus the
        # time its stats take to arrive and the plan to reach it (2 report intervals, 1 s).
        counts = load.snapshot()
        for name, _ in GATEWAYS:
            if name not in canary:
                self.assertEqual(counts[name]["failed"], 0, counts)
        rate = sum(c["ok"] + c["failed"] for c in counts.values()) / load.elapsed
        bound = rate / len(GATEWAYS) * (INTERVAL_S + 2 * REPORT_S + 1)
        failed = counts[canary[0]]["failed"]
        print(f"\nbad change: {failed} failed requests (bound {bound:.0f} at {rate:.0f} req/s); "
              f"regression start to every gateway back on base: {regression_s:.2f} s")
        self.assertGreater(failed, 0, counts)
        self.assertLessEqual(failed, bound, counts)
        # The brief's bound: one analysis interval + 1 s.
        self.assertLessEqual(regression_s, INTERVAL_S + 1)
        # /metrics names the rollout counters and passes promtool when present.
        m = http_request(self.cp.address, "GET", "/metrics").body.decode()
        self.assertIn("sluice_control_rollouts_rolled_back_total 1", m)
        self.assertIn("sluice_control_rollouts_started_total 1", m)
        self.check_promtool(m)
        self.assertGreater(latest, target)
        self.assertGreater(target, base)

    def check_promtool(self, text):
        import shutil
        import subprocess
        promtool = shutil.which("promtool")
        if not promtool:
            return
        p = subprocess.run([promtool, "check", "metrics"], input=text, capture_output=True,
                           text=True, timeout=30)
        self.assertEqual(p.returncode, 0, p.stdout + p.stderr)

    def test_restart_mid_rollout_resumes(self):
        self.base_config()
        load = Load([(n, self.gws[n]) for n, _ in GATEWAYS], "/acc/x").start()
        try:
            r = self.apply(route_resource("acc", "good2", "/acc"))
            cid = r["change"]
            before = self.rollout(cid)
            self.assertEqual(before["stage"], 1, before)
            self.cp.signal(signal.SIGKILL)
            self.cp.wait(10)
            self.cp = self.start(Control(self.dir, port=self.cp.port))
            after = self.rollout(cid)
            # Resumed: the same rollout, the same stage clock, not started again.
            self.assertEqual(after["started_ms"], before["started_ms"], after)
            self.assertGreaterEqual(after["stage"], 1, after)
            wait_until(lambda: self.change(cid)["state"] == "done", 8 * INTERVAL_S + 20,
                       interval=0.2, message="resumed rollout done")
            self.assertEqual(self.rollout(cid)["stage"], 3)
        finally:
            load.stop()

    def test_low_traffic_is_inconclusive_and_waits(self):
        self.base_config(min_requests=100000)
        r = self.apply(route_resource("acc", "good", "/acc3"))
        cid = r["change"]

        def waited():
            st = self.rollout(cid)
            return len(st["analyses"]) >= 2 and st
        st = wait_until(waited, 4 * INTERVAL_S + 10, interval=0.2, message="two analyses")
        self.assertEqual(st["stage"], 1, st)
        self.assertEqual(self.change(cid)["state"], "rolling_out")
        for a in st["analyses"]:
            self.assertEqual(a["verdict"], "inconclusive", a)
            self.assertEqual(a["step"], "wait", a)
        self.assertGreater(st["inconclusive_since_ms"], 0, st)
        # `sluice ctl rollout status` says the same.
        env = dict(os.environ, SLUICE_SERVER=f"http://{self.cp.address}")
        p = subprocess.run([BIN, "ctl", "--token-file", self.cp.token_file, "rollout", "status",
                            str(cid)], capture_output=True, text=True, timeout=30, env=env,
                           stdin=subprocess.DEVNULL)
        self.assertEqual(p.returncode, 0, p.stderr)
        self.assertIn(f"change {cid}: rolling_out (change state rolling_out), stage 1 of 3",
                      p.stdout)
        self.assertRegex(p.stdout, r"inconclusive\s+wait")
        # A write meanwhile is refused, naming the rolling change; abort rolls it back.
        r = self.cp.call("POST", "/v1/apply", {"reason": "x", "resources": [
            route_resource("acc", "good", "/acc4")]})
        self.assertEqual(r.status, 409, r)
        self.assertIn(f"change {cid} is rolling out", r.json()["error"])
        r = self.cp.call("POST", f"/v1/changes/{cid}/abort", {"reason": "too quiet to judge"})
        self.assertEqual(r.status, 200, r)
        ch = self.change(cid)
        self.assertEqual(ch["state"], "rolled_back", ch)
        self.assertIn("too quiet to judge", ch["transitions"][-1]["reason"])


class RolloutHaTest(SluiceTestCase):
    """Two control planes on one PostgreSQL database, two gateways talking to each: a bad change
    applied through the first is rolled back once, both planes serve the same versions, and the
    stages reached are counted once across the two (nobody advanced twice)."""

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

    def test_two_planes_one_rollout(self):
        good, good2 = self.sample("good"), self.sample("good2")
        self.cp1.apply("base", service_resource("good", good.address),
                       service_resource("good2", good2.address),
                       route_resource("acc", "good", "/acc"), policy_resource())
        gws = {}
        for i, (name, city) in enumerate(GATEWAYS):
            cp = self.cp1 if i % 2 == 0 else self.cp2
            cfg = {"node": {"id": name, "city": city, "zone": city + "1"},
                   "control_plane": {"address": cp.url, "token_file": cp.token_file,
                                     "cache_dir": os.path.join(self.dir, f"cache-{name}"),
                                     "report_interval": f"{REPORT_S}s"}}
            gws[name] = self.start(Gateway(self.dir, cfg, name=name), ready=False)
        for gw in gws.values():
            gw.wait_ready(20)
        load = Load(list(gws.items()), "/acc/x").start()
        try:
            wait_until(lambda: sum(c["ok"] for c in load.snapshot().values()) > 100, 10,
                       message="load running")
            r = self.cp1.apply("to good2", route_resource("acc", "good2", "/acc"))
            cid, target = r["change"], r["version"]

            def served(cp):
                return {g["id"]: g["served_version"] for g in cp.ok("GET", "/v1/gateways")}
            # Both planes serve the target to the same gateways once the second follows.
            wait_until(lambda: served(self.cp1) == served(self.cp2) and
                       sum(v == target for v in served(self.cp2).values()) == 1, 5,
                       message="both planes serve stage 1 alike")
            wait_until(lambda: self.cp2.ok("GET", f"/v1/changes/{cid}")["state"] == "done",
                       8 * INTERVAL_S + 20, interval=0.2, message="change done")
            wait_until(lambda: all(v == target for v in served(self.cp1).values()) and
                       all(v == target for v in served(self.cp2).values()), 5,
                       message="every gateway served the change by both planes")
        finally:
            load.stop()
        st = self.cp2.ok("GET", f"/v1/changes/{cid}/rollout")
        self.assertEqual(st["phase"], "done", st)
        reached = sum(cp.metric("sluice_control_rollouts_stages_reached_total")
                      for cp in (self.cp1, self.cp2))
        self.assertEqual(reached, 3, st)
        self.assertEqual(sum(c["failed"] for c in load.snapshot().values()), 0)


if __name__ == "__main__":
    unittest.main()
