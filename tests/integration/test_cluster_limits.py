"""Cluster-scope rate limits: two gateways share one limit through a real redis-server started on
an ephemeral port; Redis killed mid-test: requests keep flowing under the local fallback share,
and the gateways go back to the shared limit by themselves when Redis returns."""

import http.client
import os
import shutil
import signal
import socket
import subprocess
import threading
import time
import unittest

from harness import (SluiceTestCase, addr, free_port, http_request, route, service, split_addr,
                     threads_run, wait_until)

REDIS = shutil.which("redis-server") or "/usr/bin/redis-server"


class Redis:
    def __init__(self, workdir, port=None):
        self.port = port or free_port()
        self.address = addr(self.port)
        self.workdir = workdir
        self.proc = None

    def start(self):
        with open(os.path.join(self.workdir, f"redis-{self.port}.log"), "ab") as log:
            self.proc = subprocess.Popen(
                [REDIS, "--port", str(self.port), "--bind", "127.0.0.1", "--save", "",
                 "--appendonly", "no", "--daemonize", "no", "--dir", self.workdir],
                stdout=log, stderr=log, stdin=subprocess.DEVNULL)
        wait_until(self.ping, 10, message="redis PING")
        return self

    def ping(self):
        try:
            with socket.create_connection(("127.0.0.1", self.port), timeout=1) as s:
                s.sendall(b"PING\r\n")
                return s.recv(64).startswith(b"+PONG")
        except OSError:
            return False

    def kill(self):
        if self.proc and self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait(10)


@unittest.skipUnless(os.path.exists(REDIS), "redis-server is not installed (make deps)")
class ClusterLimitTest(SluiceTestCase):
    def setUp(self):
        super().setUp()
        self.redis = Redis(self.dir).start()
        self.addCleanup(self.redis.kill)
        self.s = self.sample("shared")

    def gateways(self, limit, on_error="local_fallback"):
        gws = []
        for name in ("gw-a", "gw-b"):
            cfg = {
                "node": {"id": name, "city": "a", "zone": "a1"},
                "workers": 2,
                "services": [service("shared", self.s.address)],
                "routes": [route("shared", "shared")],
                "redis": {"address": self.redis.address, "timeout": "50ms",
                          "on_error": on_error},
                "rate_limits": [{"name": "cluster-cap", "key": [], "limit": limit,
                                 "scope": "cluster"}],
            }
            gws.append(self.gateway(cfg, name=name))
        # Both gateways see each other through Redis before the test starts.
        for gw in gws:
            wait_until(lambda: gw.metric("sluice_ratelimit_cluster_gateways") == 2, 10,
                       message=f"{gw.name} sees two gateways")
        return gws

    def blast(self, gws, per_gateway, path="/x"):
        def run(gw):
            return [http_request(gw.address, "GET", path).status for _ in range(per_gateway)]
        results = threads_run([lambda g=g: run(g) for g in gws], timeout=120)
        return [s for r in results for s in r]

    def prime(self, gw, path="/x"):
        """Requests to `gw` until one is decided by the cluster (the key's first lease is there),
        not by the local share. Returns their statuses (they count against the limit)."""
        statuses = []

        def decided_by_cluster():
            before = gw.metric("sluice_ratelimit_fallback_total", rule="cluster-cap")
            statuses.append(http_request(gw.address, "GET", path).status)
            return gw.metric("sluice_ratelimit_fallback_total", rule="cluster-cap") == before
        wait_until(decided_by_cluster, 20, interval=0.01, message=f"{gw.name}: first lease")
        return statuses

    def test_two_gateways_hold_one_limit(self):
        gws = self.gateways({"requests": 40, "per": "1h", "burst": 40})
        # The key's first lease is on its way for one round trip after its first request; the
        # decisions meanwhile are local (a 1/2 share) and charged to Redis with the next lease.
        # Priming each gateway first keeps the blast to the shared limit; the priming requests
        # count.
        statuses = [s for gw in gws for s in self.prime(gw)]
        per_gateway = 60 - max(len(statuses) // 2, 1)
        statuses += self.blast(gws, per_gateway)
        allowed = statuses.count(200)
        # 40 for the cluster, not 40 per gateway. Every admission is charged to Redis's bucket
        # (docs/cluster-limits.md); 4 more allows for local decisions that a stalled round trip
        # (over redis.timeout) left uncovered on a loaded machine.
        self.assertGreaterEqual(allowed, 38, statuses)
        self.assertLessEqual(allowed, 44, statuses)
        self.assertEqual(statuses.count(429), len(statuses) - allowed)
        for gw in gws:
            self.assertEqual(gw.metric("sluice_redis_up"), 1)

    def test_local_decisions_are_charged_to_the_cluster_when_redis_answers_again(self):
        # Requests the local share admits while a key's lease cannot come (here Redis is
        # stopped, so round trips exceed redis.timeout) are charged to Redis once it answers:
        # over the hour the cluster admits its 40, not 40 plus the local decisions.
        gws = self.gateways({"requests": 40, "per": "1h", "burst": 40})
        statuses = [s for gw in gws for s in self.prime(gw)]
        self.redis.proc.send_signal(signal.SIGSTOP)
        try:
            for gw in gws:
                # A request starts a round trip that cannot end; the gateway sees Redis down.
                statuses.append(http_request(gw.address, "GET", "/x").status)
                wait_until(lambda: gw.metric("sluice_redis_up") == 0, 10,
                           message="redis down seen")
            local = self.blast(gws, 30)
        finally:
            self.redis.proc.send_signal(signal.SIGCONT)
        # Each gateway's local share is 20 of the 40.
        self.assertLessEqual(local.count(200), 40, local)
        self.assertGreaterEqual(local.count(200), 30, local)
        for gw in gws:
            wait_until(lambda: gw.metric("sluice_redis_up") == 1, 15, message="redis back seen")
        after = self.blast(gws, 30)
        # The local decisions (about 38) are paid from what the bucket still held (about 34):
        # once Redis answers, only tokens leased before it stopped (or granted by a refill in
        # flight then) are spent. Usually 2-4; 5 was seen with both cores busy. The bound of 8
        # keeps this test about the charge, not about lease timing: before the fix, the
        # bucket's 34 were admitted on top of the local decisions.
        self.assertLessEqual(after.count(200), 8, (statuses, local, after))
        # Over the hour: 40, plus the local decisions the bucket could not pay for (at most the
        # local shares, 2 x 20).
        allowed = (statuses + local + after).count(200)
        self.assertLessEqual(allowed, 40 + 20 + 20, (statuses, local, after))
        self.assertGreaterEqual(allowed, 38, (statuses, local, after))

    def offer(self, gw, threads, seconds, rate_per_thread, path="/fair"):
        """Keep-alive clients sending to `gw` at `rate_per_thread` requests/s each (as fast as
        they can when the machine is slower) for `seconds`. Returns (offered, allowed)."""
        counts = {"offered": 0, "allowed": 0}
        lock = threading.Lock()
        host, port = split_addr(gw.address)
        deadline = time.monotonic() + seconds

        def client():
            conn = None
            offered = allowed = 0
            start = time.monotonic()
            while True:
                now = time.monotonic()
                if now >= deadline:
                    break
                due = start + offered / rate_per_thread
                if due > now:
                    time.sleep(min(due - now, deadline - now))
                    continue
                try:
                    if conn is None:
                        conn = http.client.HTTPConnection(host, port, timeout=10)
                    conn.request("GET", path)
                    r = conn.getresponse()
                    r.read()
                    offered += 1
                    allowed += r.status == 200
                    if r.getheader("connection", "").lower() == "close":
                        conn.close()
                        conn = None
                except (OSError, http.client.HTTPException):
                    if conn is not None:
                        conn.close()
                    conn = None
            if conn is not None:
                conn.close()
            with lock:
                counts["offered"] += offered
                counts["allowed"] += allowed
        ts = [threading.Thread(target=client, daemon=True) for _ in range(threads)]
        for t in ts:
            t.start()
        for t in ts:
            t.join(seconds + 30)
        return counts["offered"], counts["allowed"]

    def measure(self, gws, threads, seconds):
        """Offers load to both gateways at once: [(offered, allowed)] per gateway, and the
        seconds it took."""
        results = [None, None]
        t0 = time.monotonic()

        def run(i):
            results[i] = self.offer(gws[i], threads[i], seconds, 100)
        ts = [threading.Thread(target=run, args=(i,), daemon=True) for i in range(2)]
        for t in ts:
            t.start()
        for t in ts:
            t.join(seconds + 60)
        return results, time.monotonic() - t0

    def test_equal_demand_gets_equal_shares(self):
        # Issue 11: two gateways under equal load got 90-98/s and 2-10/s of a 100/s limit.
        gws = self.gateways({"requests": 100, "per": "1s", "burst": 10})
        self.measure(gws, (2, 2), 1.5)  # warm-up: both demands known to Redis, burst spent
        (a, b), seconds = self.measure(gws, (2, 2), 5)
        total = a[1] + b[1]
        note = f"gateway a {a}, b {b} (offered, allowed) in {seconds:.2f} s"
        print(f"\n[ figures ] equal demand: {note}")
        # Each gateway was offered well over its half of the limit (else this says nothing).
        self.assertGreater(min(a[0], b[0]) / seconds, 75, note)
        self.assertAlmostEqual(total / seconds, 100, delta=5, msg=note)
        self.assertLess(abs(a[1] - b[1]) / max(a[1], b[1]), 0.2, note)

    def test_unequal_demand_keeps_the_total_and_starves_neither(self):
        gws = self.gateways({"requests": 100, "per": "1s", "burst": 10})
        self.measure(gws, (3, 1), 1.5)
        (a, b), seconds = self.measure(gws, (3, 1), 5)
        total = a[1] + b[1]
        note = f"gateway a {a}, b {b} (offered, allowed) in {seconds:.2f} s"
        print(f"\n[ figures ] demand 3:1: {note}")
        self.assertGreater(b[0] / seconds, 60, note)
        self.assertAlmostEqual(total / seconds, 100, delta=5, msg=note)
        # Shares follow demand: a got more, and b still a real share (3:1 -> 25%).
        self.assertGreater(a[1], b[1], note)
        self.assertGreater(b[1], 0.1 * total, note)

    def test_redis_down_falls_back_and_recovers(self):
        gws = self.gateways({"requests": 100000, "per": "1s"})
        self.assertEqual(self.blast(gws, 20), [200] * 40)
        self.redis.kill()
        t0 = time.monotonic()
        statuses = self.blast(gws, 30)
        elapsed = time.monotonic() - t0
        self.assertEqual(statuses, [200] * 60, "requests must keep flowing without Redis")
        # Nothing waits on a dead Redis: 60 requests well under a second each.
        self.assertLess(elapsed, 30)
        for gw in gws:
            wait_until(lambda: gw.metric("sluice_redis_up") == 0, 5, message="redis down seen")
            self.assertGreater(gw.metric("sluice_ratelimit_fallback_total", rule="cluster-cap"), 0)
        self.redis.start()  # same port
        for gw in gws:
            wait_until(lambda: gw.metric("sluice_redis_up") == 1, 15, message="redis back seen")
        # Leases are taken again: decisions go back to the shared limit. A decision taken while
        # a key's lease for a new window is on its way uses the local share, so a burst may see
        # one or two; on a busy machine the first burst after the restart may see a few more.
        deltas = []
        for _ in range(5):
            before = [gw.metric("sluice_ratelimit_fallback_total", rule="cluster-cap")
                      for gw in gws]
            self.assertEqual(self.blast(gws, 20), [200] * 40)
            after = [gw.metric("sluice_ratelimit_fallback_total", rule="cluster-cap")
                     for gw in gws]
            deltas = [a - b for b, a in zip(before, after)]
            if all(d <= 2 for d in deltas):
                break
            time.sleep(0.2)
        self.assertTrue(all(d <= 2 for d in deltas),
                        f"decisions did not go back to the shared limit: fallbacks {deltas}")

    def test_local_fallback_share_limits_without_redis(self):
        gws = self.gateways({"requests": 20, "per": "1h", "burst": 20})
        self.redis.kill()
        for gw in gws:
            wait_until(lambda: gw.metric("sluice_redis_up") == 0, 10, message="redis down seen")
        statuses = self.blast(gws, 30)
        # Each of the two gateways admits its share: 20 / 2.
        self.assertEqual(statuses.count(200), 20, statuses)

    def test_deny_on_error(self):
        gws = self.gateways({"requests": 1000, "per": "1s"}, on_error="deny")
        self.redis.kill()
        for gw in gws:
            wait_until(lambda: gw.metric("sluice_redis_up") == 0, 10, message="redis down seen")
        r = http_request(gws[0].address, "GET", "/x")
        self.assertEqual(r.status, 429)


if __name__ == "__main__":
    unittest.main()
