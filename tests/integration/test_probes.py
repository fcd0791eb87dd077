"""Synthetic probes per city on real processes (docs/probes.md): `sluice control` (SQLite), one
gateway per city (a, b) configured by it, and a sample service `home` in each city (the gateways
prefer their own city's instance). A probe through each city's gateway passes in both cities; the
city-b instance made to fail (`POST /_sample/faults`) makes the probe fail in city b only, with a
`probe_failing` event for b and none for a, the reason in `GET /v1/probes`, `ctl probes` and the
Prometheus series; it recovers with a `probe_recovered` event. A probe whose JSON field or body
check fails reports that reason; bad probe specs are refused with every error listed and nothing
committed."""

import os
import subprocess
import unittest

from harness import BIN, SluiceTestCase, http_request, metric_sum, parse_metrics, wait_until
from test_control import Control


class ProbesTest(SluiceTestCase):
    @classmethod
    def setUpClass(cls):
        super().setUpClass()
        cls.cp = cls.class_start(Control(cls.class_dir))
        cls.samples = {c: cls.class_sample("home", city=c, zone=f"{c}1") for c in ("a", "b")}
        endpoints = [{"address": cls.samples[c].address, "city": c, "zone": f"{c}1"}
                     for c in ("a", "b")]
        r = cls.cp.call("POST", "/v1/apply", {"reason": "home in both cities", "resources": [
            {"kind": "service", "name": "home",
             "spec": {"endpoints": endpoints, "locality": {"prefer": "same_city"}}},
            {"kind": "route", "name": "home",
             "spec": {"match": {"path_prefix": "/"}, "service": "home"}}]})
        assert r.status == 200, r
        cls.gateways = {}
        for c in ("a", "b"):
            cls.gateways[c] = cls.class_gateway({
                "node": {"id": f"gw-{c}", "city": c, "zone": f"{c}1"},
                "control_plane": {"address": f"http://{cls.cp.address}",
                                  "token_file": cls.cp.token_file,
                                  "cache_dir": os.path.join(cls.class_dir, f"cache-{c}"),
                                  "report_interval": "1s"}}, name=f"gw-{c}")

        def serving():
            for c, gw in cls.gateways.items():
                try:
                    r = http_request(gw.address, "GET", "/x", timeout=2)
                except OSError:
                    return False
                if r.status != 200 or r.json().get("city") != c:
                    return False
            return True
        wait_until(serving, 15, message="both gateways serve home from their own city")

    def cities(self):
        return {c: f"http://{gw.address}" for c, gw in self.gateways.items()}

    def apply_probe(self, name, spec):
        r = self.cp.call("POST", "/v1/apply", {"reason": f"probe {name}", "resources": [
            {"kind": "probe", "name": name, "spec": spec}]})
        self.assertEqual(r.status, 200, r)
        return r.json()

    def probes(self, name):
        r = self.cp.call("GET", f"/v1/probes/{name}")
        self.assertEqual(r.status, 200, r)
        return {t["city"]: t for t in r.json()["cities"]}

    def wait_states(self, name, want, timeout=15):
        def reached():
            got = self.probes(name)
            return got if {c: t["state"] for c, t in got.items()} == want else None
        return wait_until(reached, timeout, interval=0.1, message=f"probe {name} {want}")

    def events(self, kind):
        events = self.cp.call("GET", "/v1/events").json()
        events = events if isinstance(events, list) else events.get("events", [])
        return [e for e in events if e["kind"] == kind]

    def ctl(self, *args):
        env = dict(os.environ, SLUICE_SERVER=f"http://{self.cp.address}")
        env.pop("SLUICE_TOKEN", None)
        p = subprocess.run([BIN, "ctl", "--token-file", self.cp.token_file, *args],
                           capture_output=True, text=True, timeout=30, env=env,
                           stdin=subprocess.DEVNULL)
        return p.returncode, p.stdout, p.stderr

    def metric(self, name, **labels):
        r = self.cp.call("GET", "/metrics")
        self.assertEqual(r.status, 200, r)
        return metric_sum(parse_metrics(r.body.decode()), name, **labels)

    def test_a_probe_fails_in_city_b_only_and_recovers(self):
        self.addCleanup(self.samples["b"].faults, error_rate=0)
        self.apply_probe("home", {
            "request": {"path": "/home", "headers": {"X-Channel": "probe"}},
            "expect": {"status": 200, "json": {"path": "service", "equals": "home"},
                       "latency_under": "1s"},
            "cities": self.cities(), "interval": "1s", "timeout": "1s", "fail_after": 2})
        ok = self.wait_states("home", {"a": "ok", "b": "ok"})
        for c in ("a", "b"):
            self.assertTrue(ok[c]["last"]["ok"], ok[c])
            self.assertEqual(ok[c]["last"]["status"], 200)
        self.assertEqual(self.metric("sluice_control_probe_success", probe="home", city="b"), 1)
        self.assertGreaterEqual(self.metric("sluice_control_probe_duration_seconds_count",
                                            probe="home", city="a"), 1)
        before_a = self.probes("home")["a"]["windows"]["1h"]

        self.samples["b"].faults(error_rate=1.0)
        failing = self.wait_states("home", {"a": "ok", "b": "failing"})
        self.assertEqual(failing["b"]["last_failure"]["reason"], "status 500 (expected 200)")
        # City a never failed: every run in it was good.
        a = failing["a"]["windows"]["1h"]
        self.assertGreater(a["runs"], before_a["runs"])
        self.assertEqual(a["good"], a["runs"], failing["a"])
        self.assertNotIn("last_failure", failing["a"])
        started = wait_until(lambda: self.events("probe_failing"), 5, message="probe_failing event")
        self.assertEqual([e["subject"] for e in started], ["home/b"], started)
        self.assertEqual(started[0]["detail"]["city"], "b")
        self.assertEqual(started[0]["detail"]["reason"], "status 500 (expected 200)")
        self.assertEqual(self.metric("sluice_control_probe_success", probe="home", city="b"), 0)
        self.assertEqual(self.metric("sluice_control_probe_success", probe="home", city="a"), 1)
        rc, out, err = self.ctl("probes")
        self.assertEqual(rc, 0, err)
        rows = {tuple(line.split()[:3]) for line in out.splitlines()[1:]}
        self.assertIn(("home", "a", "ok"), rows, out)
        self.assertIn(("home", "b", "failing"), rows, out)
        self.assertIn("status 500 (expected 200)", out)

        self.samples["b"].faults(error_rate=0)
        self.wait_states("home", {"a": "ok", "b": "ok"})
        recovered = wait_until(lambda: self.events("probe_recovered"), 5,
                               message="probe_recovered event")
        self.assertEqual([e["subject"] for e in recovered], ["home/b"], recovered)
        self.assertEqual(self.events("probe_failing"), started)  # no new episode
        rc, out, err = self.ctl("probes", "home")
        self.assertEqual(rc, 0, err)
        self.assertIn("recent runs", out)
        self.assertIn("FAIL", out)

    def test_json_field_and_body_checks_report_their_reason(self):
        one_city = {"a": self.cities()["a"]}
        self.apply_probe("wrong-field", {
            "request": {"path": "/x"}, "cities": one_city, "interval": "1s", "fail_after": 1,
            "expect": {"json": {"path": "service", "equals": "payments"}}})
        self.apply_probe("wrong-body", {
            "request": {"method": "POST", "path": "/x", "body": "{}",
                        "headers": {"Content-Type": "application/json"}},
            "cities": one_city, "interval": "1s", "fail_after": 1,
            "expect": {"body_contains": "no such text"}})
        field = self.wait_states("wrong-field", {"a": "failing"})
        self.assertEqual(field["a"]["last_failure"]["reason"],
                         'JSON field service is "home" (expected "payments")')
        self.assertEqual(field["a"]["last"]["status"], 200)
        body = self.wait_states("wrong-body", {"a": "failing"})
        self.assertEqual(body["a"]["last_failure"]["reason"], "body does not contain 'no such text'")
        wait_until(lambda: {"wrong-field/a", "wrong-body/a"} <= {
            e["subject"] for e in self.events("probe_failing")}, 5, message="both events")
        # Removed probes stop: they leave the list.
        for name in ("wrong-field", "wrong-body"):
            r = self.cp.call("DELETE", f"/v1/resources/probe/{name}?reason=done")
            self.assertEqual(r.status, 200, r)
        wait_until(lambda: all(t["probe"] not in ("wrong-field", "wrong-body")
                               for t in self.cp.call("GET", "/v1/probes").json()["probes"]),
                   5, message="removed probes gone")
        self.assertEqual(self.cp.call("GET", "/v1/probes/wrong-body").status, 404)

    def test_bad_specs_are_refused_with_every_error(self):
        before = self.cp.call("GET", "/v1/versions?limit=1").json()[0]["number"]
        r = self.cp.call("POST", "/v1/apply", {"reason": "bad probes", "resources": [
            {"kind": "probe", "name": "bad", "spec": {
                "request": {"path": "no-slash", "headers": {"Host": "x", "X-A": "a\r\nB: c"}},
                "expect": {"status": [200, 1000], "json": {"path": "a..b", "equals": 1}},
                "cities": {"a": "ftp://x"}, "interval": "10ms", "timeout": "2m",
                "colour": "red"}},
            {"kind": "probe", "name": "empty", "spec": {}}]})
        self.assertEqual(r.status, 400, r)
        errors = r.json()["errors"]
        want = ["probe/bad: spec.colour: unknown key",
                "probe/bad: spec.request.path: must start with '/'",
                "probe/bad: spec.request.headers.Host: set by the prober itself",
                "probe/bad: spec.request.headers.X-A: expected a string",
                "probe/bad: spec.expect.status: expected a status 100..599",
                "probe/bad: spec.expect.json.path: expected 1..16 dot-separated keys",
                "probe/bad: spec.cities.a: not a base URL",
                "probe/bad: spec.interval: must be a duration from 1s to 1h",
                "probe/bad: spec.timeout: must be a duration from 10ms to 1m",
                "probe/empty: spec.request: required",
                "probe/empty: spec.cities: required"]
        for w in want:
            self.assertTrue(any(e.startswith(w) for e in errors), f"{w!r} not in {errors}")
        self.assertEqual(len(errors), len(want), errors)
        after = self.cp.call("GET", "/v1/versions?limit=1").json()[0]["number"]
        self.assertEqual(after, before)
        self.assertEqual(self.cp.call("GET", "/v1/probes/bad").status, 404)


if __name__ == "__main__":
    unittest.main()
