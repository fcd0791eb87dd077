"""Weighted split of a route between two services (canary releases): the share each side gets,
sticky customers, the tester override header, weight 0, a reload moving the weights, and the
`service` label of the chosen side in metrics, admin /stats and the access log."""

import json
import math
import os
import subprocess
import time
import unittest

from harness import (BIN, DeadPort, Gateway, RawConn, Sample, SluiceTestCase, service,
                     wait_until)
from test_control import Control


def split_route(name, prefix, weights, canary=None, split=None):
    """weights: [(service, weight)]; canary: the service marked canary: true."""
    r = {"name": name, "match": {"path_prefix": prefix},
         "services": [dict({"name": s, "weight": w}, **({"canary": True} if s == canary else {}))
                      for s, w in weights]}
    if split is not None:
        r["split"] = split
    return r


def binomial_bound(n, p, sigmas=5):
    """[lo, hi] holding Binomial(n, p) but for a chance of about 6e-7 (5 standard deviations)."""
    sd = math.sqrt(n * p * (1 - p))
    return math.floor(n * p - sigmas * sd), math.ceil(n * p + sigmas * sd)


class WeightedSplitTest(SluiceTestCase):
    @classmethod
    def setUpClass(cls):
        super().setUpClass()
        cls.stable = cls.class_sample("stable")
        cls.canary = cls.class_sample("canary")
        cls.services = [service("stable", cls.stable.address),
                        service("canary", cls.canary.address)]
        routes = [
            split_route("r-ninety", "/ninety", [("stable", 90), ("canary", 10)], canary="canary"),
            split_route("r-sticky", "/sticky", [("stable", 50), ("canary", 50)],
                        split={"sticky_header": "x-customer-id", "sticky_cookie": "sid"}),
            split_route("r-zero", "/zero", [("stable", 1), ("canary", 0)], canary="canary"),
        ]
        cls.gw = cls.class_gateway({"services": cls.services, "routes": routes})

    def sides(self, path, n, headers=None, gw=None):
        """Requests `path` n times on one keep-alive connection: {service: count}."""
        gw = gw or self.gw
        counts = {}
        with RawConn(gw.address) as c:
            for _ in range(n):
                r = c.request("GET", path, headers=headers or {})
                self.assertEqual(r.status, 200, r)
                side = r.json()["service"]
                counts[side] = counts.get(side, 0) + 1
        return counts

    def test_ninety_ten_within_binomial_bound(self):
        n = 2000
        lo, hi = binomial_bound(n, 0.1)  # 2000 x 10%: 200 +- 5 x 13.4 -> [132, 268]
        counts = self.sides("/ninety/x", n)
        self.assertEqual(sum(counts.values()), n)
        self.assertTrue(lo <= counts.get("canary", 0) <= hi, (counts, lo, hi))

    def test_metrics_label_the_chosen_service(self):
        labels = dict(route="r-ninety", code="2xx")
        before = {s: self.gw.metric("sluice_requests_total", service=s, **labels)
                  for s in ("stable", "canary")}
        counts = self.sides("/ninety/m", 400)
        for s in ("stable", "canary"):
            after = self.gw.metric_reaching("sluice_requests_total", before[s] + counts.get(s, 0),
                                            service=s, **labels)
            self.assertEqual(after - before[s], counts.get(s, 0), s)
        # Nothing is counted under the route with an empty or another service label.
        total = self.gw.metric("sluice_requests_total", route="r-ninety")
        self.assertEqual(total, sum(self.gw.metric("sluice_requests_total", route="r-ninety",
                                                   service=s) for s in ("stable", "canary")))
        # Admin /stats breaks the route down by service, and /config shows the split.
        stats = json.loads(self.gw.admin_get("/stats").body)
        route = next(r for r in stats["routes"] if r["name"] == "r-ninety")
        by_name = {s["name"]: s for s in route["services"]}
        self.assertEqual(by_name["canary"]["weight"], 10)
        self.assertTrue(by_name["canary"]["canary"])
        self.assertEqual(route["requests"],
                         by_name["stable"]["requests"] + by_name["canary"]["requests"])
        config = json.loads(self.gw.admin_get("/config").body)["config"]
        r = next(r for r in config["routes"] if r["name"] == "r-ninety")
        self.assertEqual(r["services"], [{"name": "stable", "weight": 90, "canary": False},
                                         {"name": "canary", "weight": 10, "canary": True}])
        self.assertEqual(r["split"], {"override_header": "x-canary"})
        self.assertNotIn("service", r)

    def test_access_log_names_the_chosen_service(self):
        ids = {}
        with RawConn(self.gw.address) as c:
            for i in range(40):
                rid = f"split-log-{i}"
                r = c.request("GET", "/ninety/log", headers={"x-request-id": rid})
                ids[rid] = r.json()["service"]
        path = self.gw.config["access_log"]["path"]

        def logged():
            found = {}
            with open(path) as f:
                for line in f:
                    rec = json.loads(line)
                    if rec.get("request_id") in ids:
                        found[rec["request_id"]] = rec.get("service")
            return found if len(found) == len(ids) else None
        found = wait_until(logged, 5, message="access log records")
        self.assertEqual(found, ids)

    def test_sticky_header_keeps_a_customer_on_one_side(self):
        seen = set()
        for customer in range(20):
            counts = self.sides("/sticky/x", 50, headers={"x-customer-id": f"cust-{customer}"})
            self.assertEqual(len(counts), 1, (customer, counts))
            seen.update(counts)
        # 20 customers on a 50/50 split: both sides (all on one: 2 x 2^-20).
        self.assertEqual(seen, {"stable", "canary"})
        # Without the header, one client is spread over both sides.
        self.assertEqual(set(self.sides("/sticky/x", 60)), {"stable", "canary"})

    def test_sticky_cookie(self):
        for customer in range(10):
            counts = self.sides("/sticky/c", 30,
                                headers={"cookie": f"theme=dark; sid=s{customer}; lang=en"})
            self.assertEqual(len(counts), 1, (customer, counts))

    def test_override_header_reaches_the_canary_at_weight_zero(self):
        # Weight 0: nothing reaches the canary by weight.
        self.assertEqual(self.sides("/zero/x", 200), {"stable": 200})
        # The tester's header sends every request there, and is forwarded to the service.
        with RawConn(self.gw.address) as c:
            for _ in range(20):
                r = c.request("GET", "/zero/x",
                              headers={"X-Canary": "1", "x-sample-echo": "headers"})
                self.assertEqual(r.json()["service"], "canary")
                headers = {k.lower(): v for k, v in r.json()["headers"].items()}
                self.assertEqual(headers.get("x-canary"), "1")
        # Any other value is the normal choice.
        for value in ("0", "true", "yes", "2"):
            self.assertEqual(self.sides("/zero/x", 20, headers={"x-canary": value}),
                             {"stable": 20}, value)
        # A route without a canary service ignores the header: still by weight.
        counts = self.sides("/sticky/o", 60, headers={"x-canary": "1"})
        self.assertEqual(set(counts), {"stable", "canary"})


class WeightedSplitRetryTest(SluiceTestCase):
    def test_retries_stay_on_the_chosen_service(self):
        """Half the requests go to a service whose only endpoint refuses connections. Its retries
        (connect_failure, 2 attempts) stay on that service: those requests fail, none is served
        by the other side of the split."""
        dead = DeadPort()
        self.addCleanup(dead.close)
        live = self.start(Sample(self.dir, "live"))
        retry = {"attempts": 2, "on": ["connect_failure"]}
        gw = self.start(Gateway(self.dir, {
            "services": [service("live", live.address, retry=retry),
                         service("dead", dead.address, retry=retry)],
            "routes": [split_route("r-half", "/", [("live", 50), ("dead", 50)])]}))
        n = 200
        failed = served = 0
        with RawConn(gw.address) as c:
            for _ in range(n):
                r = c.request("GET", "/x")
                if r.status == 200:
                    self.assertEqual(r.json()["service"], "live")
                    served += 1
                else:
                    self.assertGreaterEqual(r.status, 500, r)
                    failed += 1
        lo, hi = binomial_bound(n, 0.5)
        self.assertTrue(lo <= failed <= hi, (failed, served, lo, hi))
        # Every failure is counted on the dead side, and each was tried 1 + 2 times there.
        got = gw.metric_reaching("sluice_requests_total", failed, route="r-half", service="dead",
                                 code="5xx")
        self.assertEqual(got, failed)
        self.assertEqual(gw.metric("sluice_requests_total", route="r-half", service="live",
                                   code="5xx"), 0)
        self.assertEqual(gw.metric("sluice_upstream_retries_total", service="dead"), 2 * failed)
        self.assertEqual(gw.metric("sluice_upstream_retries_total", service="live"), 0)


class WeightedSplitReloadTest(SluiceTestCase):
    def config(self, canary_weight):
        return {"services": [service("stable", self.stable.address),
                             service("canary", self.canary.address)],
                "routes": [split_route("r-move", "/", [("stable", 100 - canary_weight),
                                                       ("canary", canary_weight)],
                                       canary="canary",
                                       split={"sticky_header": "x-customer-id"})]}

    def customers_on_canary(self, gw, customers):
        on = set()
        with RawConn(gw.address) as c:
            for cust in customers:
                r = c.request("GET", "/x", headers={"x-customer-id": cust})
                if r.json()["service"] == "canary":
                    on.add(cust)
        return on

    def test_reload_moving_weights_takes_effect_and_keeps_canary_customers(self):
        self.stable = self.start(Sample(self.dir, "stable"))
        self.canary = self.start(Sample(self.dir, "canary"))
        gw = self.start(Gateway(self.dir, self.config(0)))
        customers = [f"c{i}" for i in range(400)]
        self.assertEqual(self.customers_on_canary(gw, customers), set())
        previous = set()
        for weight in (5, 25, 50, 100):
            cfg = dict(gw.config)
            cfg.update(self.config(weight))
            gw.write_config(cfg)
            r = gw.reload()
            self.assertEqual(r.status, 200, r)
            on = self.customers_on_canary(gw, customers)
            # Customers only join the canary as its weight grows; none goes back.
            self.assertLessEqual(previous, on, weight)
            lo, hi = binomial_bound(len(customers), weight / 100)
            self.assertTrue(lo <= len(on) <= hi, (weight, len(on), lo, hi))
            previous = on
        self.assertEqual(previous, set(customers))
        # Back to 0: nobody on the canary without the override.
        cfg = dict(gw.config)
        cfg.update(self.config(0))
        gw.write_config(cfg)
        self.assertEqual(gw.reload().status, 200)
        self.assertEqual(self.customers_on_canary(gw, customers), set())

    def test_bad_split_is_refused_on_reload_and_nothing_changes(self):
        self.stable = self.start(Sample(self.dir, "stable"))
        self.canary = self.start(Sample(self.dir, "canary"))
        gw = self.start(Gateway(self.dir, self.config(100)))
        good = dict(gw.config)
        bad = dict(good)
        bad["routes"] = [split_route("r-move", "/", [("stable", 1), ("canery", 1)])]
        gw.write_config(bad)
        r = gw.reload()
        self.assertNotEqual(r.status, 200, r)
        self.assertIn("no service named 'canery'", r.body.decode())
        # Still the old config: all on the canary.
        with RawConn(gw.address) as c:
            for _ in range(20):
                self.assertEqual(c.request("GET", "/x").json()["service"], "canary")


class WeightedSplitControlPlaneTest(SluiceTestCase):
    """`sluice ctl apply` of a split route: validated by the gateway loader (an unknown service is
    refused and nothing changes), pushed to a gateway, and reported per service in the stats
    snapshots the control plane receives."""

    def ctl(self, *args):
        env = dict(os.environ, SLUICE_SERVER=f"http://{self.cp.address}")
        p = subprocess.run([BIN, "ctl", "--token-file", self.cp.token_file, *args],
                           capture_output=True, text=True, timeout=30, env=env,
                           stdin=subprocess.DEVNULL)
        return p.returncode, p.stdout + p.stderr

    def apply_file(self, text):
        path = os.path.join(self.dir, "resources.yaml")
        with open(path, "w") as f:
            f.write(text)
        return self.ctl("apply", "-f", path, "--reason", "canary")

    def test_apply_split_route_and_stats_per_service(self):
        self.cp = self.start(Control(self.dir))
        stable = self.start(Sample(self.dir, "stable"))
        canary = self.start(Sample(self.dir, "canary"))
        services = (f"kind: service\nname: stable\n"
                    f"spec: {{endpoints: [{{address: {stable.address}}}]}}\n"
                    f"---\nkind: service\nname: canary\n"
                    f"spec: {{endpoints: [{{address: {canary.address}}}]}}\n")
        # A split naming a service that does not exist is refused, naming it; nothing applied.
        rc, out = self.apply_file(services + "---\nkind: route\nname: api\nspec:\n"
                                  "  services: [{name: stable, weight: 80}, "
                                  "{name: canery, weight: 20}]\n")
        self.assertNotEqual(rc, 0, out)
        self.assertIn("route/api: spec.services[1].name: no service named 'canery' "
                      "(did you mean 'canary'?)", out)
        self.assertEqual(self.cp.call("GET", "/v1/resources").json()["resources"], [], out)
        rc, out = self.apply_file(services + "---\nkind: route\nname: api\nspec:\n"
                                  "  services: [{name: stable, weight: 80}, "
                                  "{name: canary, weight: 20, canary: true}]\n"
                                  "  split: {sticky_header: x-customer-id}\n")
        self.assertEqual(rc, 0, out)
        rc, out = self.ctl("get", "routes")
        self.assertEqual(rc, 0, out)
        self.assertIn("-> stable 80, canary 20 (canary)", out)
        gw = self.start(Gateway(self.dir, {
            "node": {"id": "gw-a", "city": "a", "zone": "a1"},
            "control_plane": {"address": f"http://{self.cp.address}",
                              "token_file": self.cp.token_file,
                              "cache_dir": os.path.join(self.dir, "cache"),
                              "report_interval": "1s"}}, name="gw-a"))
        t0 = int(time.time() * 1000)
        counts = {"stable": 0, "canary": 0}
        with RawConn(gw.address) as c:
            for i in range(300):
                r = c.request("GET", f"/x/{i}")
                self.assertEqual(r.status, 200, r)
                counts[r.json()["service"]] += 1
            # The tester override works on the pushed route too.
            for _ in range(10):
                r = c.request("GET", "/y", headers={"x-canary": "1"})
                self.assertEqual(r.json()["service"], "canary")
        counts["canary"] += 10
        lo, hi = binomial_bound(300, 0.2)
        self.assertTrue(lo <= counts["canary"] - 10 <= hi, counts)

        def reported():
            recent = self.cp.call("GET", f"/v1/stats?gateway=gw-a&from={t0 - 60000}").json()
            got = {"stable": 0, "canary": 0}
            for snap in recent["recent"]:
                route = snap.get("routes", {}).get("api", {})
                for name, st in route.get("services", {}).items():
                    got[name] += st["requests"]
            return got if got == counts else None
        got = wait_until(reported, 10, message=f"per-service route stats reaching {counts}")
        self.assertEqual(got, counts)
        snap = self.cp.call("GET", "/v1/stats?gateway=gw-a").json()["recent"][-1]
        route = snap["routes"]["api"]
        self.assertNotIn("service", route)
        self.assertEqual(route["services"]["canary"]["weight"], 20)
        lat = route["services"]["canary"]["latency"]
        self.assertEqual(len(lat["buckets"]), len(lat["le"].split()) + 1)


if __name__ == "__main__":
    unittest.main()
