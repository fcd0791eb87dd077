"""Instance loss under load with DEFAULT retry settings: a SIGKILLed instance, or every instance of
the gateway's own city, must not fail a single idempotent request (closed-loop keep-alive
clients, 8, 64 and 256 of them); and when every endpoint is dead, attempts stay bounded.

Setup as in issue 11: a `kind: global` service with instances in city a (the gateway's) and city
b, `locality: {prefer: same_city}`, a health check at 1s that needs 2 failures, no `retry`
section, a 2-worker gateway."""

import socket
import struct
import threading
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


class DyingUpstream(FakeUpstream):
    """An instance about to be SIGKILLed: it takes requests and holds them; die() closes its
    listener (connects are refused from then on) and resets the connections it held, as the
    kernel does for a process killed with requests accepted but not answered."""

    def __init__(self):
        self.dead = threading.Event()
        self.held = 0
        super().__init__(self._hold)

    def _hold(self, sock, head):
        with self._lock:
            self.held += 1
        self.dead.wait(30)
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
        return False

    def die(self):
        self.close()
        self.dead.set()


class DyingCityTest(SluiceTestCase):
    def test_resets_by_two_dying_instances_fail_over_to_the_other_city(self):
        # Issue 11's flake, step by step: a request's first try is reset by a dying instance of
        # the local city before any refusal marked it down, its retry (the one try `attempts`
        # allows by default) is reset by the other dying local instance. The first one has been
        # refused to another request meanwhile (down): its try was failover, not load, so the
        # request goes on to the other city instead of failing with 502.
        x, y = DyingUpstream(), DyingUpstream()

        def ok(sock, head):
            sock.sendall(b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok")
            return True
        z = FakeUpstream(ok)
        for u in (x, y, z):
            self.addCleanup(u.close)
        for u in (x, y):
            self.addCleanup(u.dead.set)
        gw = self.gateway({
            "node": {"id": "gw-a", "city": "a", "zone": "a1"},
            "workers": 1,
            "access_log": {"path": "off"},
            "services": [{
                "name": "pay", "kind": "global",
                "endpoints": [endpoint(x.address, city="a", zone="a1"),
                              endpoint(y.address, city="a", zone="a1"),
                              endpoint(z.address, city="b", zone="b1")],
                # One of two local instances down is half the tier: with the default 0.7 the
                # balancer spills part of the traffic to city b, so the retry would reach the
                # second local instance only sometimes. 0.5 keeps it in city a.
                "locality": {"prefer": "same_city", "failover_threshold": 0.5},
            }],
            "routes": [route("pay", "pay", path_prefix="/")],
        })
        results = {}

        def call(name):
            results[name] = http_request(gw.address, "GET", f"/{name}", timeout=30)
        t1 = threading.Thread(target=call, args=("r1",), daemon=True)
        t1.start()
        wait_until(lambda: x.held + y.held == 1, 10, message="the first try to be held")
        first, second = (x, y) if x.held else (y, x)
        first.die()
        wait_until(lambda: second.held == 1, 10, message="the retry at the other local instance")
        # Other requests, until one finds the first instance refusing: out of rotation (passive
        # health). Those that the balancer sends to the second instance are held there.
        def down():
            return gw.metric("sluice_endpoint_down_total", endpoint=first.address) >= 1
        threads = [t1]
        while not down():
            self.assertLess(len(threads), 20, "no request tried the first instance")
            t = threading.Thread(target=call, args=(f"r{len(threads) + 1}",), daemon=True)
            t.start()
            threads.append(t)
            held = len(threads)
            wait_until(lambda: down() or second.held >= held or z.requests >= held - 1, 10,
                       message="the request to reach an instance")
        second.die()
        for t in threads:
            t.join(30)
        self.assertEqual(len(results), len(threads))
        for name, r in sorted(results.items()):
            self.assertEqual(r.status, 200, f"{name}: {r.body}")
        # Every request ended in city b; r1 after two resets.
        self.assertEqual(z.requests, len(threads))
        self.assertEqual(first.held, 1)


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
