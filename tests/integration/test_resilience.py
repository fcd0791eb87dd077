"""Circuit breaking with fallback and half-open healing, outlier ejection of a bad endpoint,
active health checks, concurrency caps and priority shedding, with real sample services."""

import threading
import time
import unittest

from harness import SluiceTestCase, http_request, route, service, threads_run, wait_until


class BreakerTest(SluiceTestCase):
    def test_breaker_opens_serves_fallback_and_heals_through_half_open(self):
        s = self.sample("flaky")
        gw = self.gateway({
            "workers": 2,
            "services": [service(
                "flaky", s.address,
                retry={"attempts": 0},
                circuit_breaker={"window": "10s", "min_requests": 10, "error_ratio": 0.5,
                                 "open_duration": "1s", "half_open_probes": 3},
                fallback={"status": 200, "body": '{"code":"DEGRADED"}',
                          "content_type": "application/json"})],
            "routes": [route("flaky", "flaky")],
        })
        s.faults(error_rate=1.0)
        statuses = [http_request(gw.address, "GET", f"/f{i}").status for i in range(10)]
        self.assertEqual(statuses, [500] * 10)
        # Ten calls, all failed: the breaker is open for the whole process (both workers).
        before = s.requests()
        for i in range(6):
            r = http_request(gw.address, "GET", f"/open{i}")
            self.assertEqual(r.status, 200, r)
            self.assertEqual(r.json(), {"code": "DEGRADED"})
            self.assertEqual(r.header("x-sluice-fallback"), "circuit-open")
        self.assertEqual(s.requests_since(before), 0, "an open breaker must not call the service")
        self.assertEqual(gw.metric("sluice_circuit_breaker_state", service="flaky"), 1)
        self.assertEqual(gw.metric("sluice_fallback_responses_total", service="flaky"), 6)
        stats = gw.admin_get("/stats").json()["governance"]["services"][0]["circuit_breaker"]
        self.assertEqual(stats["state"], "open")

        # Heal the service; after open_duration three probes pass and the breaker closes.
        s.faults(error_rate=0.0)
        time.sleep(1.1)
        statuses = [http_request(gw.address, "GET", f"/heal{i}").status for i in range(3)]
        self.assertEqual(statuses, [200] * 3)
        wait_until(lambda: gw.metric("sluice_circuit_breaker_state", service="flaky") == 0, 3,
                   message="breaker closed")
        before = s.requests()
        for i in range(5):
            r = http_request(gw.address, "GET", f"/closed{i}")
            self.assertEqual(r.status, 200)
            self.assertIsNone(r.header("x-sluice-fallback"))
        self.assertEqual(s.requests_since(before), 5)
        self.assertIn("circuit breaker of service flaky: closed -> open", gw.log_text())

    def test_failed_probe_reopens(self):
        s = self.sample("probe")
        gw = self.gateway({
            "workers": 1,
            "services": [service(
                "probe", s.address, retry={"attempts": 0},
                circuit_breaker={"min_requests": 4, "error_ratio": 0.5, "open_duration": "1s",
                                 "max_open_duration": "10s", "half_open_probes": 2})],
            "routes": [route("probe", "probe")],
        })
        s.faults(error_rate=1.0)
        for i in range(4):
            http_request(gw.address, "GET", "/x")
        r = http_request(gw.address, "GET", "/x")
        self.assertEqual(self.assertGatewayError(r, 503)["code"], "CIRCUIT_OPEN")
        time.sleep(1.1)
        self.assertEqual(http_request(gw.address, "GET", "/probe").status, 500)  # probe fails
        # Open again, now for twice as long (2 s): still open after 1.3 s, longer than the first
        # open period (0.7 s of slack for a loaded machine).
        time.sleep(1.3)
        r = http_request(gw.address, "GET", "/x")
        self.assertEqual(self.assertGatewayError(r, 503)["code"], "CIRCUIT_OPEN")
        self.assertEqual(gw.metric("sluice_circuit_breaker_opened_total", service="probe"), 2)


class OutlierTest(SluiceTestCase):
    def test_bad_endpoint_ejected_with_no_failures_beyond_threshold(self):
        good1, good2, bad = self.sample("o1"), self.sample("o2"), self.sample("o3")
        bad.faults(error_rate=1.0)
        gw = self.gateway({
            "workers": 1,
            "services": [service(
                "pool", good1.address, good2.address, bad.address,
                load_balancer={"policy": "round_robin"}, retry={"attempts": 0},
                outlier_detection={"consecutive_errors": 3, "base_ejection_time": "30s",
                                   "max_ejection_percent": 50})],
            "routes": [route("pool", "pool")],
        })
        statuses = [http_request(gw.address, "GET", f"/r{i}").status for i in range(60)]
        self.assertEqual(statuses.count(500), 3, statuses)
        self.assertEqual(statuses.count(200), 57)
        eps = {e["address"]: e for e in
               gw.admin_get("/stats").json()["governance"]["services"][0]["endpoints"]}
        self.assertTrue(eps[bad.address]["ejected"])
        self.assertTrue(eps[good1.address]["available"])
        self.assertEqual(gw.metric("sluice_endpoint_available", service="pool",
                                   endpoint=bad.address), 0)
        self.assertEqual(gw.metric("sluice_outlier_ejections_total", service="pool",
                                   endpoint=bad.address), 1)

    def test_max_ejection_percent_keeps_endpoints_in(self):
        a, b = self.sample("m1"), self.sample("m2")
        a.faults(error_rate=1.0)
        b.faults(error_rate=1.0)
        gw = self.gateway({
            "workers": 1,
            "services": [service(
                "both", a.address, b.address, load_balancer={"policy": "round_robin"},
                retry={"attempts": 0},
                outlier_detection={"consecutive_errors": 2, "base_ejection_time": "30s",
                                   "max_ejection_percent": 50})],
            "routes": [route("both", "both")],
        })
        for i in range(20):
            http_request(gw.address, "GET", "/x")
        eps = gw.admin_get("/stats").json()["governance"]["services"][0]["endpoints"]
        self.assertEqual(sum(1 for e in eps if e["ejected"]), 1, eps)


class HealthCheckTest(SluiceTestCase):
    def test_unhealthy_endpoint_leaves_rotation_and_returns(self):
        a, b = self.sample("h1"), self.sample("h2")
        gw = self.gateway({
            "workers": 2,
            "services": [service(
                "hc", a.address, b.address, load_balancer={"policy": "round_robin"},
                health_check={"path": "/healthz", "interval": "100ms", "timeout": "100ms",
                              "jitter": "10ms", "healthy_threshold": 2,
                              "unhealthy_threshold": 2})],
            "routes": [route("hc", "hc")],
        })
        b.faults(healthy=False)
        wait_until(lambda: gw.metric("sluice_endpoint_available", service="hc",
                                     endpoint=b.address) == 0, 5, message="b out of rotation")
        # The checks go on while b is out (that is how it comes back), and they are not traffic.
        checks_b = b.health_checks()
        wait_until(lambda: b.health_checks() > checks_b, 5, message="b still checked")
        before_a, before_b = a.requests(), b.requests()
        for i in range(20):
            self.assertEqual(http_request(gw.address, "GET", f"/x{i}").status, 200)
        self.assertEqual(b.requests_since(before_b), 0)
        self.assertEqual(a.requests_since(before_a), 20)
        b.faults(healthy=True)
        wait_until(lambda: gw.metric("sluice_endpoint_available", service="hc",
                                     endpoint=b.address) == 1, 5, message="b back")
        before_b = b.requests()
        for i in range(20):
            http_request(gw.address, "GET", f"/y{i}")
        self.assertGreater(b.requests_since(before_b), 0)
        checks = gw.admin_get("/stats").json()["governance"]["health_checks"]
        self.assertEqual(len(checks), 2)


class CapsAndPriorityTest(SluiceTestCase):
    def test_max_concurrent(self):
        s = self.sample("cap", latency="500ms")
        gw = self.gateway({
            "workers": 2,
            "services": [service("cap", s.address, circuit_breaker={"max_concurrent": 2})],
            "routes": [route("cap", "cap")],
        })
        barrier = threading.Barrier(4)

        def one():
            barrier.wait(5)
            r = http_request(gw.address, "GET", "/x")
            return r.status, (r.json() or {}).get("code") if r.status != 200 else None
        results = threads_run([one] * 4, timeout=20)
        self.assertEqual(sorted(r[0] for r in results), [200, 200, 503, 503], results)
        self.assertIn((503, "MAX_CONCURRENT"), results)

    def test_low_priority_shed_first(self):
        s = self.sample("prio", latency="1500ms")
        gw = self.gateway({
            "workers": 1,
            "services": [service("prio", s.address)],
            "routes": [route("prio", "prio")],
            "overload": {"priority_key": "header:x-channel",
                         "priorities": ["payment", "mobile", "web"],
                         "reserve": 0.5, "max_in_flight": 4},
        })
        # web (lowest) may use half of the 4 slots, payment all of them.
        held = []
        threads = [threading.Thread(target=lambda: held.append(
            http_request(gw.address, "GET", "/slow", headers={"x-channel": "web"}).status))
            for _ in range(2)]
        for t in threads:
            t.start()
        wait_until(lambda: gw.admin_get("/stats").json()["governance"]["overload"]["in_flight"]
                   == 2, 5, message="two web requests in flight")
        r = http_request(gw.address, "GET", "/x", headers={"x-channel": "web"})
        body = self.assertGatewayError(r, 503)
        self.assertEqual(body["code"], "OVERLOADED")
        self.assertEqual(body["priority"], "web")
        self.assertEqual(http_request(gw.address, "GET", "/x",
                                      headers={"x-channel": "payment"}).status, 200)
        for t in threads:
            t.join(10)
        self.assertEqual(held, [200, 200])
        self.assertEqual(gw.metric("sluice_overload_shed_total", scope="gateway", priority="web",
                                   mode="enforce"), 1)
        self.assertEqual(gw.metric("sluice_overload_shed_total", scope="gateway",
                                   priority="payment", mode="enforce"), 0)


if __name__ == "__main__":
    unittest.main()
