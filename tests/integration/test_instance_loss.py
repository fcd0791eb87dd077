"""Instance loss under load with DEFAULT retry settings: a SIGKILLed instance, or every instance of
the gateway's own city, must not fail a single idempotent request (closed-loop keep-alive
clients, 8, 64 and 256 of them); and when every endpoint is dead, attempts stay bounded.

Setup as in issue 11: a `kind: global` service with instances in city a (the gateway's) and city
b, `locality: {prefer: same_city}`, a health check at 1s that needs 2 failures, no `retry`
section, a 2-worker gateway."""

import unittest

from harness import (DeadPort, FakeUpstream, SluiceTestCase, endpoint, http_request, route,
                     service, threads_run, wait_until)
from loadgen import run_load

WARMUP = 1.0   # seconds of load before the kill
AFTER = 2.5    # seconds of load after it (the health check needs 2 failed checks at 1s)


class InstanceLossTest(SluiceTestCase):
    def start_service(self):
        self.inst = {}
        for name, city in (("a1", "a"), ("a2", "a"), ("b1", "b")):
            self.inst[name] = self.sample("pay", city=city, zone=f"{city}1",
                                          extra_args=("--instance", name))
        self.gw = self.gateway({
            "node": {"id": "gw-a", "city": "a", "zone": "a1"},
            "workers": 2,
            "access_log": {"path": "off"},
            "services": [{
                "name": "pay", "kind": "global",
                "endpoints": [endpoint(s.address, city=n[0], zone=f"{n[0]}1")
                              for n, s in self.inst.items()],
                "locality": {"prefer": "same_city"},
                "health_check": {"interval": "1s", "unhealthy_threshold": 2},
            }],
            "routes": [route("pay", "pay", path_prefix="/")],
        })

    def run_kill(self, clients, victims):
        self.start_service()
        result = run_load(self.gw.address, clients, WARMUP + AFTER,
                          events=[(WARMUP, lambda: [self.inst[v].popen.kill() for v in victims])],
                          mark=WARMUP + 0.3)
        s = result.summary()
        print(f"\n  kill {'+'.join(victims)} at {clients} clients: {s}", flush=True)
        self.assertGreater(result.requests, clients * 5, "the load did not flow")
        self.assertEqual(result.failed, 0, f"failed requests: {s['first_failures']}")
        # Passive health: a refused connection took each killed instance out of rotation before
        # the health check could (sluice_endpoint_down_total).
        for v in victims:
            self.assertGreaterEqual(
                self.gw.metric("sluice_endpoint_down_total", endpoint=self.inst[v].address), 1,
                f"{v} was never marked down by a refused connection")
        return result

    def test_kill_one_instance_8_clients(self):
        r = self.run_kill(8, ["a1"])
        self.assertGreater(r.cities_after.get("a", 0), 0, "a2 should keep serving")

    def test_kill_one_instance_64_clients(self):
        self.run_kill(64, ["a1"])

    def test_kill_local_city_8_clients(self):
        r = self.run_kill(8, ["a1", "a2"])
        self.assertEqual(set(r.cities_after), {"b"}, r.cities_after)

    def test_kill_local_city_64_clients(self):
        r = self.run_kill(64, ["a1", "a2"])
        self.assertEqual(set(r.cities_after), {"b"}, r.cities_after)

    def test_kill_local_city_256_clients(self):
        r = self.run_kill(256, ["a1", "a2"])
        self.assertEqual(set(r.cities_after), {"b"}, r.cities_after)


class AllDeadTest(SluiceTestCase):
    def test_all_endpoints_dead_bounded_attempts_no_amplification(self):
        # Every endpoint refuses: each request tries each endpoint at most once (the retries
        # after a refusal are not rationed, but they are bounded by the endpoints), answers 502
        # at once, and nothing is sent anywhere.
        dead = [DeadPort() for _ in range(3)]
        for d in dead:
            self.addCleanup(d.close)
        gw = self.gateway({
            "workers": 2,
            "access_log": {"path": "off"},
            "services": [service("gone", *[d.address for d in dead])],
            "routes": [route("gone", "gone", path_prefix="/")],
        })
        per_client = 40

        def client():
            return [http_request(gw.address, "GET", f"/x{i}", timeout=10).status
                    for i in range(per_client)]
        results = threads_run([client] * 8, timeout=120)
        statuses = [s for r in results for s in r]
        n = len(statuses)
        self.assertEqual(set(statuses), {502})
        connects = gw.metric("sluice_upstream_errors_total", service="gone", kind="connect_failure")
        retries = gw.metric("sluice_upstream_retries_total", service="gone")
        print(f"\n  all dead: {n} requests, {connects:.0f} connect attempts, {retries:.0f} retries",
              flush=True)
        self.assertGreaterEqual(connects, n)
        # 1 + retry.attempts (1) per request once all are down; the first requests, before the
        # refusals marked them down, may try all three.
        self.assertLessEqual(connects, 2 * n + 6, "attempts not bounded")
        self.assertEqual(retries, connects - n)

    def test_all_endpoints_reset_bounded_attempts(self):
        # Every endpoint accepts, reads the request and closes without a byte: retries of such
        # failures need no budget, but each request is tried at most 1 + attempts (1) times.
        closers = [FakeUpstream(lambda s, h: False) for _ in range(2)]
        for c in closers:
            self.addCleanup(c.close)
        gw = self.gateway({
            "workers": 2,
            "access_log": {"path": "off"},
            "services": [service("closing", *[c.address for c in closers])],
            "routes": [route("closing", "closing", path_prefix="/")],
        })

        def client():
            return [http_request(gw.address, "GET", f"/x{i}", timeout=10).status
                    for i in range(30)]
        statuses = [s for r in threads_run([client] * 8, timeout=120) for s in r]
        n = len(statuses)
        self.assertEqual(set(statuses), {502})
        retries = gw.metric("sluice_upstream_retries_total", service="closing")
        try:
            wait_until(lambda: sum(c.requests for c in closers) >= n + retries, 10,
                       message="the fake upstreams to count every attempt")
        except AssertionError:
            pass  # the assertions below report the numbers
        attempts = sum(c.requests for c in closers)
        print(f"\n  all reset: {n} requests, {attempts} attempts, {retries:.0f} retries",
              flush=True)
        self.assertEqual(attempts, n + retries)
        self.assertLessEqual(attempts, 2 * n, "more than 1 + attempts tries per request")


if __name__ == "__main__":
    unittest.main()
