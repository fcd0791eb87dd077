"""Dual-city active-active with two gateways (city a, city b) and sample services in both cities:
locality (traffic stays in its city while healthy), failover of a service to the other city with
no failed requests and back, unit (shard) routing with one forward hop, switchover under load
with no failed requests, unit protection, and loop detection."""

import os
import signal
import subprocess
import threading
import time
import unittest

from harness import (BIN, RawConn, SluiceTestCase, addr, build_request, endpoint, free_port,
                     http_request, route, wait_until)

CUSTOMER_A = "10"   # shard 10: city a
CUSTOMER_B = "75"   # shard 75: city b


class Load:
    """Steady requests from a thread until stopped; records status and serving city."""

    def __init__(self, address, path, headers=None, pause=0.005):
        self.address, self.path, self.headers, self.pause = address, path, headers or {}, pause
        self.results = []
        self.stop_flag = threading.Event()
        self.thread = threading.Thread(target=self.run, daemon=True)

    def run(self):
        i = 0
        while not self.stop_flag.is_set():
            i += 1
            try:
                r = http_request(self.address, "GET", f"{self.path}?i={i}", headers=self.headers,
                                 timeout=10)
                city = r.json().get("city") if r.status == 200 else None
                self.results.append((r.status, city))
            except OSError as e:
                self.results.append((0, str(e)))
            time.sleep(self.pause)

    def __enter__(self):
        self.thread.start()
        return self

    def __exit__(self, *exc):
        self.stop_flag.set()
        self.thread.join(20)

    def failed(self):
        return [r for r in self.results if r[0] != 200]


class DualCityTest(SluiceTestCase):
    def setUp(self):
        super().setUp()
        self.samples = {}
        for svc in ("catalog", "accounts"):
            for city in ("a", "b"):
                for n in (1, 2):
                    name = f"{svc}-{city}{n}"
                    self.samples[name] = self.sample(svc, city=city, zone=f"{city}1",
                                                     extra_args=("--instance", name))
        self.ports = {c: free_port() for c in ("a", "b")}
        self.gws = {}
        for city in ("a", "b"):
            self.gws[city] = self.gateway(self.config(city), name=f"gw-{city}")

    def config(self, city, peers=None):
        def eps(svc):
            return [endpoint(self.samples[f"{svc}-{c}{n}"].address, city=c, zone=f"{c}1")
                    for c in ("a", "b") for n in (1, 2)]
        hc = {"path": "/healthz", "interval": "200ms", "timeout": "150ms", "jitter": "20ms",
              "healthy_threshold": 1, "unhealthy_threshold": 2}
        retry = {"attempts": 2, "on": ["connect_failure", "reset", 502, 503]}
        return {
            "node": {"id": f"gw-{city}", "city": city, "zone": f"{city}1"},
            "workers": 2,
            "listeners": [{"name": "public", "address": addr(self.ports[city])}],
            "services": [
                {"name": "catalog", "endpoints": eps("catalog"), "health_check": hc,
                 "retry": retry, "locality": {"prefer": "same_city", "failover_threshold": 0.7}},
                {"name": "accounts", "kind": "unit", "endpoints": eps("accounts"),
                 "health_check": hc, "retry": retry},
            ],
            "routes": [route("catalog", "catalog", path_prefix="/catalog"),
                       route("accounts", "accounts", path_prefix="/accounts")],
            "units": {"key": "header:x-customer-id", "shards": 100,
                      "owners": {"a": "0-49", "b": "50-99"},
                      "peers": peers or {c: addr(self.ports[c]) for c in ("a", "b")},
                      "protect": True, "hold_timeout": "3s"},
        }

    def get(self, city, path, customer=None, headers=None):
        h = dict(headers or {})
        if customer is not None:
            h["x-customer-id"] = customer
        return http_request(self.gws[city].address, "GET", path, headers=h)

    def cross_city(self, city):
        return self.gws[city].metric("sluice_cross_city_requests_total")

    def test_traffic_stays_local_while_healthy(self):
        for city in ("a", "b"):
            for i in range(30):
                r = self.get(city, f"/catalog/{i}")
                self.assertEqual(r.status, 200, r)
                self.assertEqual(r.json()["city"], city)
            own = CUSTOMER_A if city == "a" else CUSTOMER_B
            for i in range(10):
                r = self.get(city, f"/accounts/{i}", customer=own)
                self.assertEqual((r.status, r.json()["city"]), (200, city))
        self.assertEqual(self.cross_city("a"), 0)
        self.assertEqual(self.cross_city("b"), 0)

    def test_shard_of_other_city_served_there_after_one_hop(self):
        r = self.get("a", "/accounts/x", customer=CUSTOMER_B)
        self.assertEqual(r.status, 200, r)
        self.assertEqual(r.json()["city"], "b")
        self.assertEqual(self.gws["a"].metric("sluice_unit_requests_total", result="forwarded"), 1)
        self.assertEqual(self.gws["b"].metric("sluice_unit_requests_total", result="local"), 1)
        self.assertEqual(self.gws["b"].metric("sluice_unit_requests_total", result="forwarded"), 0)
        self.assertEqual(self.cross_city("a"), 1)
        # The service saw the original path and the hop mark from city a.
        body = r.json()
        self.assertEqual(body["path"], "/accounts/x")

    def catalog_a_available(self):
        """Number of city a's catalog endpoints in rotation at gateway a."""
        gw = self.gws["a"]
        return sum(int(gw.metric("sluice_endpoint_available", service="catalog",
                                 endpoint=self.samples[f"catalog-a{i}"].address))
                   for i in (1, 2))

    def results_after(self, load, mark, count, timeout=10):
        """The load's results from index `mark` on, once there are at least `count` of them."""
        wait_until(lambda: len(load.results) >= mark + count, timeout,
                   message=f"{count} more requests of the load")
        return load.results[mark:]

    def test_city_outage_of_a_service_fails_over_with_no_failed_requests(self):
        with Load(self.gws["a"].address, "/catalog/steady") as load:
            wait_until(lambda: len(load.results) >= 5, 10, message="load running")
            for n in (1, 2):
                self.samples[f"catalog-a{n}"].kill()
            # Once the health checks took both out of rotation, traffic is in city b only. (Until
            # then a request may still be tried on a dead instance; its retry goes to city b.)
            wait_until(lambda: self.catalog_a_available() == 0, 10,
                       message="city a's catalog instances out of rotation at gateway a")
            # +1: the request in flight when the metric was read may have been routed before.
            after_kill = self.results_after(load, len(load.results) + 1, 10)
            self.assertTrue(all(c == "b" for s, c in after_kill), after_kill[:10])
            for n in (1, 2):  # city a's instances come back on the same ports
                old = self.samples[f"catalog-a{n}"]
                self.samples[f"catalog-a{n}"] = self.sample(
                    "catalog", city="a", zone="a1", port=old.port,
                    extra_args=("--instance", f"catalog-a{n}"))
            # With one of the two back, city a keeps only part of the traffic (its available share
            # is under failover_threshold); with both back, all of it.
            wait_until(lambda: self.catalog_a_available() == 2, 10,
                       message="both of city a's catalog instances back in rotation")
            after_return = self.results_after(load, len(load.results) + 1, 10)
            self.assertTrue(all(c == "a" for s, c in after_return),
                            f"traffic not back in city a: {after_return[:10]}")
        self.assertEqual(load.failed(), [], "no request may fail during the failover")
        cities = [c for _, c in load.results]
        self.assertIn("b", cities)
        self.assertEqual(cities[-1], "a")

    def test_switchover_under_load_with_no_failed_requests(self):
        loads = [Load(self.gws[c].address, "/accounts/steady", {"x-customer-id": CUSTOMER_A})
                 for c in ("a", "b")]
        for l in loads:
            l.__enter__()
        try:
            time.sleep(0.5)
            p = subprocess.run(
                [BIN, "gateway", "switch", "--admin", self.gws["a"].admin, "--admin",
                 self.gws["b"].admin, "--from", "a", "--to", "b", "--shards", "0-49"],
                capture_output=True, text=True, timeout=30)
            self.assertEqual(p.returncode, 0, p.stderr)
            time.sleep(0.5)
        finally:
            for l in loads:
                l.__exit__()
        for l in loads:
            self.assertEqual(l.failed(), [])
            self.assertEqual(l.results[0][1], "a")
            self.assertEqual(l.results[-1][1], "b")
        for c in ("a", "b"):
            units = self.gws[c].admin_get("/units").json()
            self.assertEqual(units["owners"], {"b": "0-99"})
            self.assertEqual(units["version"], 3)  # prepare, then commit
        # A request city b forwarded before it learnt of the switch, arriving at city a
        # afterwards, goes back to city b (its owner now) and is served there.
        r = self.get("a", "/accounts/x", customer=CUSTOMER_A, headers={"x-sluice-hop": "b"})
        self.assertEqual((r.status, r.json()["city"]), (200, "b"))

    def test_single_gateway_switch_unit_protection_and_errors(self):
        # A gateway of city a with no peer: what it does not own it must refuse, not serve.
        cfg = self.config("a")
        del cfg["units"]["peers"]
        cfg["listeners"] = [{"name": "public", "address": addr(free_port())}]
        cfg["node"]["id"] = "gw-a-alone"
        alone = self.gateway(cfg, name="gw-a-alone")
        r = http_request(alone.address, "GET", "/accounts/x", headers={"x-customer-id": "5"})
        self.assertEqual((r.status, r.json()["city"]), (200, "a"))
        r = http_request(alone.admin, "POST", "/units/switch",
                         body=b'{"from":"a","to":"b","shards":"0-9"}')
        self.assertEqual(r.status, 200, r)
        self.assertEqual(r.json()["owners"], {"a": "10-49", "b": "0-9,50-99"})
        r = http_request(alone.address, "GET", "/accounts/x", headers={"x-customer-id": "5"})
        body = self.assertGatewayError(r, 421)
        self.assertEqual(body["code"], "UNIT_NOT_OWNED")
        self.assertEqual((body["shard"], body["owner"]), (5, "b"))
        for body in (b'{"from":"a"}', b'not json', b'{"from":"a","to":"b","shards":"500"}',
                     b'{"from":"x","to":"b"}', b'{"from":"a","to":"b","bogus":"1"}'):
            r = http_request(alone.admin, "POST", "/units/switch", body=body)
            self.assertIn(r.status, (400, 409), (body, r))
            self.assertIn("error", r.json())
        # Nothing changed by the refused requests.
        self.assertEqual(alone.admin_get("/units").json()["version"], 2)
        # Drain a city: every shard it owns moves.
        r = http_request(alone.admin, "POST", "/units/switch", body=b'{"from":"a","to":"b"}')
        self.assertEqual(r.json()["owners"], {"b": "0-99"})

    def test_owner_city_gateway_down_request_served_by_owner_city_instance(self):
        # Gateway b is gone: gateway a cannot forward a b-owned shard (connection refused); it
        # sends the request straight to city b's instances of the service instead of a 502.
        self.gws["b"].signal(signal.SIGKILL)
        self.gws["b"].wait(5)
        a = self.gws["a"]
        b_instances = {self.samples[f"accounts-b{n}"].address for n in (1, 2)}
        for i in range(6):
            r = self.get("a", f"/accounts/d{i}", customer=CUSTOMER_B,
                         headers={"x-sample-echo": "headers"})
            self.assertEqual(r.status, 200, r)
            body = r.json()
            self.assertEqual(body["city"], "b", body)
            self.assertEqual(body["path"], f"/accounts/d{i}")
            hops = {k.lower(): v for k, v in body["headers"].items()}
            # The hop guard goes with it: had it reached a gateway, no loop.
            self.assertEqual(hops.get("x-sluice-hop"), "a", hops)
        # Not idempotent, and still safe: the request never reached gateway b.
        r = http_request(a.address, "POST", "/accounts/pay", body=b'{"amount": 1}',
                         headers={"x-customer-id": CUSTOMER_B,
                                  "content-type": "application/json"})
        self.assertEqual((r.status, r.json()["city"]), (200, "b"), r)
        # Shards of its own city are untouched.
        self.assertEqual(self.get("a", "/accounts/own", customer=CUSTOMER_A).json()["city"], "a")

        self.assertEqual(a.metric("sluice_unit_requests_total", result="direct"), 7)
        self.assertEqual(a.metric("sluice_cross_city_requests_total", service="accounts",
                                  city="b"), 7)
        wait_until(lambda: self.direct_log_lines(a) >= 7, 5, message="access log flushed")
        lines = self.access_lines(a)
        direct = [l for l in lines if l.get("unit") == "direct"]
        self.assertEqual(len(direct), 7, lines)
        for l in direct:
            self.assertEqual((l["status"], l["service"]), (200, "accounts"), l)
            self.assertIn(l["endpoint"], b_instances, l)

        # No instance of city b available either: 503 NO_ENDPOINT (unit services never spill).
        for n in (1, 2):
            self.samples[f"accounts-b{n}"].signal(signal.SIGKILL)
        wait_until(lambda: all(a.metric("sluice_endpoint_available", service="accounts",
                                        endpoint=addr_) == 0 for addr_ in b_instances), 10,
                   message="city b's accounts instances out of rotation at gateway a")
        r = self.get("a", "/accounts/none", customer=CUSTOMER_B)
        body = self.assertGatewayError(r, 503)
        self.assertEqual((body["code"], body["city"]), ("NO_ENDPOINT", "b"), body)

    def access_lines(self, gw):
        import json
        with open(gw.config["access_log"]["path"]) as f:
            return [json.loads(line) for line in f if line.strip()]

    def direct_log_lines(self, gw):
        return sum(1 for l in self.access_lines(gw) if l.get("unit") == "direct")

    def test_next_request_on_a_connection_carries_nothing_of_a_forward(self):
        # Per-request state is reset as a whole: a 404 after a request forwarded to city b on
        # the same keep-alive connection was once logged as forwarded too ("unit":"forwarded").
        gw = self.gws["a"]
        paths = ["/accounts/k1", "/nowhere/k2", "/catalog/k3"]
        with RawConn(gw.address) as c:
            c.send(build_request("GET", paths[0], headers={"x-customer-id": CUSTOMER_B}))
            r = c.read_response()
            self.assertEqual((r.status, r.json()["city"]), (200, "b"), r)
            c.send(build_request("GET", paths[1]))
            self.assertEqual(c.read_response().status, 404)
            c.send(build_request("GET", paths[2]))
            r = c.read_response()
            self.assertEqual((r.status, r.json()["city"]), (200, "a"), r)

        def logged():
            by_path = {l["path"]: l for l in self.access_lines(gw)}
            return by_path if all(p in by_path for p in paths) else None
        wait_until(logged, 10, message="access log lines of the three requests")
        lines = logged()
        self.assertEqual(lines[paths[0]].get("unit"), "forwarded", lines[paths[0]])
        self.assertNotIn("unit", lines[paths[1]], lines[paths[1]])
        self.assertNotIn("unit", lines[paths[2]], lines[paths[2]])
        self.assertEqual(lines[paths[2]]["attempts"], 1, lines[paths[2]])

    def test_loop_detected(self):
        # Misconfigured: city a's gateway lists itself as the peer of city b.
        import copy
        cfg = copy.deepcopy(self.gws["a"].config)
        cfg["units"]["peers"] = {"b": addr(self.ports["a"])}
        self.gws["a"].write_config(cfg)
        r = self.gws["a"].reload()
        self.assertEqual(r.status, 200, r)
        r = self.get("a", "/accounts/x", customer=CUSTOMER_B)
        body = self.assertGatewayError(r, 508)
        self.assertEqual(body["code"], "UNIT_LOOP")
        self.assertEqual(self.gws["a"].metric("sluice_unit_requests_total", result="loop"), 1)


if __name__ == "__main__":
    unittest.main()
