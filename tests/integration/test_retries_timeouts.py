"""Upstream failures: retries (connect failure, reset, status, timeout), idempotency, request
timeout -> 504, bad upstream -> 502, retry budget under an outage, pooled connection hygiene."""

import threading
import time
import unittest

from harness import (DeadPort, FakeUpstream, SluiceTestCase, RawConn, http_request,
                     route, service, threads_run, wait_until)


def retry(attempts, on, **kw):
    r = {"attempts": attempts, "on": on}
    r.update(kw)
    return r


class RetriesTest(SluiceTestCase):
    @classmethod
    def setUpClass(cls):
        super().setUpClass()
        dead = DeadPort()  # connection refused
        cls.addClassCleanup(dead.close)
        cls.dead = dead.address
        dead2 = DeadPort()
        cls.addClassCleanup(dead2.close)
        cls.dead2 = dead2.address
        dead3 = DeadPort()
        cls.addClassCleanup(dead3.close)
        cls.dead3 = dead3.address
        cls.a = cls.class_sample("live-a")
        cls.b = cls.class_sample("closer-b")
        cls.u = cls.class_sample("unsafe-u")
        cls.c = cls.class_sample("slow-c")
        cls.cr = cls.class_sample("slowretry-c")
        cls.d = cls.class_sample("status-d")

        cls.fakes = {}
        cls.fakes["garbage"] = FakeUpstream(lambda s, h: (s.sendall(b"garbage\r\n\r\n"), False)[1])
        cls.fakes["partial"] = FakeUpstream(
            lambda s, h: (s.sendall(b"HTTP/1.1 200 OK\r\nContent-Le"), False)[1])
        cls.fakes["short-body"] = FakeUpstream(
            lambda s, h: (s.sendall(b"HTTP/1.1 200 OK\r\nContent-Length: 100\r\n\r\nonly-this"),
                          False)[1])
        cls.fakes["cl-te"] = FakeUpstream(
            lambda s, h: (s.sendall(b"HTTP/1.1 200 OK\r\nContent-Length: 3\r\n"
                                    b"Transfer-Encoding: chunked\r\n\r\n0\r\n\r\n"), False)[1])
        cls.fakes["conn-close"] = FakeUpstream(
            lambda s, h: (s.sendall(b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n"
                                    b"Connection: close\r\n\r\nok"), False)[1])

        def idle_then_close(s, h):
            s.sendall(b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok")
            time.sleep(0.1)
            return False  # keep-alive promised, then closed while idle in the gateway's pool
        cls.fakes["stale"] = FakeUpstream(idle_then_close)

        served = {}

        def one_per_connection(s, h):
            # Answers the first request on a connection (keep-alive), then closes the connection
            # on the next one without a byte: the stale keep-alive race, or an instance that died
            # while the request was on its way.
            served[s] = served.get(s, 0) + 1
            if served[s] > 1:
                return False
            s.sendall(b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok")
            return True
        cls.fakes["oneshot"] = FakeUpstream(one_per_connection)
        for f in cls.fakes.values():
            cls.addClassCleanup(f.close)

        services = [
            service("connect", cls.dead, cls.a.address, load_balancer={"policy": "round_robin"},
                    retry=retry(2, ["connect_failure"])),
            service("dead", cls.dead, retry=retry(1, ["connect_failure"])),
            service("closer", cls.b.address, retry=retry(2, ["reset", "connect_failure"])),
            service("unsafe", cls.u.address, retry=retry(2, ["reset"], non_idempotent=True)),
            service("slow", cls.c.address, timeouts={"connect": "1s", "request": "300ms"},
                    retry=retry(0, ["connect_failure"])),
            service("slowretry", cls.cr.address, timeouts={"connect": "1s", "request": "300ms"},
                    retry=retry(1, ["timeout"])),
            service("status", cls.d.address, retry=retry(2, [503])),
            # No retry budget at all: only retries that are failover may happen.
            service("nobudget", cls.dead2, cls.a.address, load_balancer={"policy": "round_robin"},
                    retry={"budget_percent": 0, "min_retry_concurrency": 0}),
            service("refusedpost", cls.dead3, cls.a.address,
                    load_balancer={"policy": "round_robin"}),
            service("slowtotal", cls.cr.address,
                    timeouts={"connect": "1s", "request": "300ms", "total": "500ms"},
                    retry=retry(2, ["timeout"])),
            service("tightotal", cls.cr.address,
                    timeouts={"connect": "1s", "request": "300ms", "total": "320ms"},
                    retry=retry(1, ["timeout"])),
            service("shorttotal", cls.cr.address,
                    timeouts={"connect": "1s", "request": "5s", "total": "300ms"}),
        ]
        routes = [route(s["name"], s["name"], strip_prefix=f"/{s['name']}",
                        path_prefix=f"/{s['name']}/") for s in services]
        for name, f in cls.fakes.items():
            if name == "oneshot":
                services.append(service(name, f.address,
                                        retry={"budget_percent": 0, "min_retry_concurrency": 0}))
            else:
                services.append(service(name, f.address, retry=retry(0, ["connect_failure"])))
            routes.append(route(name, name, strip_prefix=f"/{name}", path_prefix=f"/{name}/"))
        cls.gw = cls.class_gateway({"workers": 1, "services": services, "routes": routes})

    def get(self, path, method="GET", body=None, timeout=10):
        return http_request(self.gw.address, method, path, body=body, timeout=timeout)

    # --- connect failure ---------------------------------------------------------------------

    def test_connect_failure_retried_to_live_endpoint(self):
        before = self.a.requests()
        errors_before = self.gw.metric("sluice_upstream_errors_total", service="connect",
                                       kind="connect_failure")
        retries_before = self.gw.metric("sluice_upstream_retries_total", service="connect")
        n = 40
        statuses = [self.get(f"/connect/{i}").status for i in range(n)]
        self.assertEqual(statuses, [200] * n)
        self.assertEqual(self.a.requests_since(before), n)
        errors = self.gw.metric("sluice_upstream_errors_total", service="connect",
                                kind="connect_failure") - errors_before
        retries = self.gw.metric("sluice_upstream_retries_total", service="connect") - retries_before
        # Round robin over [dead, live]: the dead endpoint is tried (unless an earlier test's
        # refusal still keeps it out of rotation), and every failure is retried.
        down = [e for e in self.gw.admin_get("/stats").json()["governance"]["services"]
                if e["name"] == "connect"][0]["endpoints"][0]["down"]
        self.assertTrue(errors >= 1 or down, "the dead endpoint was never tried")
        self.assertEqual(retries, errors)

    def test_connect_failure_keep_alive_clients_see_no_errors(self):
        def client():
            with RawConn(self.gw.address) as c:
                return [c.request("GET", f"/connect/k{i}").status for i in range(25)]
        results = threads_run([client] * 4, timeout=60)
        for statuses in results:
            self.assertEqual(statuses, [200] * 25)

    def test_retried_request_body_replayed(self):
        # PUT is idempotent: a connect failure is retried with the same body.
        before = self.a.requests()
        body = bytes(range(256)) * 128  # 32 KiB
        for i in range(6):
            r = self.get(f"/connect/put{i}", method="PUT", body=body)
            self.assertEqual(r.status, 200, r)
            self.assertEqual(r.json()["body_bytes"], len(body))
        self.assertEqual(self.a.requests_since(before), 6)

    def test_refused_connect_retried_without_budget_and_endpoint_taken_out(self):
        # A refused connection carried nothing: its retry is failover, not extra load, so a zero
        # retry budget does not stop it, and any method may be retried. The refusal takes the
        # endpoint out of rotation at once: it is not tried again for base_ejection_time.
        before = self.a.requests()
        statuses = [self.get(f"/nobudget/{i}").status for i in range(30)]
        statuses += [self.get(f"/nobudget/p{i}", method="POST", body=b"pay").status
                     for i in range(10)]
        self.assertEqual(statuses, [200] * 40)
        self.assertEqual(self.a.requests_since(before), 40)
        refusals = self.gw.metric("sluice_upstream_errors_total", service="nobudget",
                                  kind="connect_failure")
        self.assertEqual(refusals, 1, "the refusing endpoint stayed in rotation")
        self.assertEqual(self.gw.metric("sluice_endpoint_down_total", service="nobudget",
                                        endpoint=self.dead2), 1)
        self.assertEqual(self.gw.metric("sluice_endpoint_available", service="nobudget",
                                        endpoint=self.dead2), 0)
        self.assertIn("refused a connection: out of rotation for 10s", self.gw.log_text())

    def test_refused_connect_retried_for_post(self):
        # Nothing was sent when the connection was refused: a POST goes to the next endpoint
        # too (default retry settings). Round robin over [dead, live]: one of the first two
        # requests meets the refusal.
        before = self.a.requests()
        statuses = [self.get(f"/refusedpost/{i}", method="POST", body=b"pay").status
                    for i in range(2)]
        self.assertEqual(statuses, [200, 200])
        self.assertEqual(self.a.requests_since(before), 2)
        self.assertEqual(self.gw.metric("sluice_upstream_errors_total", service="refusedpost",
                                        kind="connect_failure"), 1)

    def test_stale_pooled_connection_retried_without_budget(self):
        # The upstream closes a pooled connection when the next request arrives on it, before
        # any response byte. A GET is sent again on a new connection, even with no retry budget;
        # a POST is not (it may have been processed).
        f = self.fakes["oneshot"]
        with RawConn(self.gw.address) as c:
            for i in range(6):
                r = c.request("GET", f"/oneshot/{i}")
                self.assertEqual((r.status, r.body), (200, b"ok"), r)
            self.assertEqual(c.request("GET", "/oneshot/warm").status, 200)
            r = c.request("POST", "/oneshot/pay", body=b"x")
            self.assertEqual(r.status, 502, r)
        self.assertGreaterEqual(f.connections, 7)

    def test_all_endpoints_dead_502(self):
        t0 = time.monotonic()
        r = self.get("/dead/x")
        self.assertGatewayError(r, 502)
        self.assertLess(time.monotonic() - t0, 3.0)

    # --- resets and idempotency --------------------------------------------------------------

    def test_get_retried_on_reset_then_502(self):
        before = self.b.requests()
        retries_before = self.gw.metric("sluice_upstream_retries_total", service="closer")
        r = self.get("/closer/_sample/close")
        self.assertGatewayError(r, 502)
        # 1 + 2 tries; one more when the first went out on a pooled connection (a stale pooled
        # connection is retried once for free: it looks like the keep-alive race).
        tries = self.b.requests_since(before)
        self.assertIn(tries, (3, 4), "GET should be tried 1 + 2 times (+1 free)")
        self.assertEqual(self.gw.metric("sluice_upstream_retries_total", service="closer")
                         - retries_before, tries - 1)

    def test_post_not_retried(self):
        before = self.b.requests()
        r = self.get("/closer/_sample/close", method="POST", body=b"payment")
        self.assertGatewayError(r, 502)
        self.assertEqual(self.b.requests_since(before), 1, "POST must not be retried by default")

    def test_post_retried_when_non_idempotent_allowed(self):
        before = self.u.requests()
        r = self.get("/unsafe/_sample/close", method="POST", body=b"x")
        self.assertGatewayError(r, 502)
        self.assertEqual(self.u.requests_since(before), 3)

    def test_reset_metric(self):
        before = self.gw.metric("sluice_upstream_errors_total", service="closer", kind="reset")
        tries_before = self.b.requests()
        self.assertEqual(self.get("/closer/_sample/close").status, 502)
        tries = self.b.requests_since(tries_before)
        self.assertIn(tries, (3, 4))
        after = self.gw.metric_reaching("sluice_upstream_errors_total", before + tries,
                                        service="closer", kind="reset")
        self.assertEqual(after - before, tries)

    def test_connection_usable_after_upstream_reset(self):
        with RawConn(self.gw.address) as c:
            r = c.request("GET", "/closer/_sample/close")
            self.assertEqual(r.status, 502, r)
            r = c.request("GET", "/closer/fine")
            self.assertEqual(r.status, 200, r)
            self.assertEqual(r.json()["path"], "/fine")

    # --- status retries ----------------------------------------------------------------------

    def test_503_retried_then_passed_through(self):
        before = self.d.requests()
        r = self.get("/status/_sample/status/503")
        self.assertEqual(r.status, 503, r)
        self.assertTrue(r.header("x-sample-instance"), "the upstream's own 503 should be returned")
        self.assertEqual(self.d.requests_since(before), 3)

    def test_status_not_in_retry_on_not_retried(self):
        before = self.d.requests()
        r = self.get("/status/_sample/status/502")
        self.assertEqual(r.status, 502, r)
        self.assertEqual(self.d.requests_since(before), 1)

    # --- timeouts ----------------------------------------------------------------------------

    def test_request_timeout_504(self):
        before = self.c.requests()
        before_m = self.gw.metric("sluice_upstream_errors_total", service="slow", kind="timeout")
        t0 = time.monotonic()
        r = self.get("/slow/_sample/delay/2000")
        elapsed = time.monotonic() - t0
        self.assertGatewayError(r, 504)
        self.assertGreaterEqual(elapsed, 0.25)
        self.assertLess(elapsed, 1.5, "the request timeout (300ms) was not enforced")
        self.assertEqual(self.c.requests_since(before), 1)
        self.assertEqual(self.gw.metric_reaching("sluice_upstream_errors_total", before_m + 1,
                                                 service="slow", kind="timeout") - before_m, 1)

    def test_timeout_retried_when_configured(self):
        before = self.cr.requests()
        t0 = time.monotonic()
        r = self.get("/slowretry/_sample/delay/2000")
        elapsed = time.monotonic() - t0
        self.assertGatewayError(r, 504)
        self.assertGreaterEqual(elapsed, 0.55)
        self.assertLess(elapsed, 2.0)
        self.assertEqual(self.cr.requests_since(before), 2)

    def test_total_deadline_bounds_retries(self):
        # request 300ms per try, 2 retries on timeout: 0.9 s or more without an overall
        # deadline. With total 500ms the first retry gets what is left, the client has its 504
        # after about 0.5 s (deadlines are checked every 100 ms), and the second retry is never
        # started.
        before = self.cr.requests()
        t0 = time.monotonic()
        r = self.get("/slowtotal/_sample/delay/3000")
        elapsed = time.monotonic() - t0
        body = self.assertGatewayError(r, 504)
        self.assertIn("timeouts.total", body["error"])
        self.assertGreaterEqual(elapsed, 0.45)
        self.assertLess(elapsed, 0.85, "timeouts.total was not enforced")
        self.assertEqual(self.cr.requests_since(before), 2)

    def test_total_deadline_no_retry_when_too_little_left(self):
        # total 320ms, request 300ms: after the first try times out less than a tenth of
        # `request` is left, so no retry is started.
        before = self.cr.requests()
        r = self.get("/tightotal/_sample/delay/3000")
        self.assertGatewayError(r, 504)
        self.assertEqual(self.cr.requests_since(before), 1)

    def test_total_deadline_cuts_a_long_request_timeout(self):
        t0 = time.monotonic()
        r = self.get("/shorttotal/_sample/delay/3000")
        elapsed = time.monotonic() - t0
        self.assertGatewayError(r, 504)
        self.assertLess(elapsed, 0.8)
        self.assertEqual(self.get("/shorttotal/_sample/delay/10").status, 200)

    def test_late_response_after_timeout_not_delivered_to_next_request(self):
        # The timed-out upstream connection must not go back to the pool: its late response
        # would answer somebody else's request.
        with RawConn(self.gw.address) as c:
            r = c.request("GET", "/slow/_sample/delay/600")
            self.assertEqual(r.status, 504, r)
            for i in range(6):
                time.sleep(0.15)
                r = c.request("GET", f"/slow/next{i}")
                self.assertEqual(r.status, 200, r)
                self.assertEqual(r.json()["path"], f"/next{i}", "a stale response was delivered")

    def test_fast_request_within_timeout(self):
        r = self.get("/slow/_sample/delay/50")
        self.assertEqual(r.status, 200, r)

    # --- bad upstream responses --------------------------------------------------------------

    def test_garbage_response_502(self):
        self.assertGatewayError(self.get("/garbage/x"), 502)

    def test_partial_head_502(self):
        self.assertGatewayError(self.get("/partial/x"), 502)

    def test_response_with_cl_and_te_502(self):
        self.assertGatewayError(self.get("/cl-te/x"), 502)

    def test_truncated_body_closes_client_connection(self):
        # The head (200) was already sent: the client must see the connection end, not a
        # short body followed by another response.
        with RawConn(self.gw.address) as c:
            c.send(b"GET /short-body/x HTTP/1.1\r\nHost: t\r\n\r\n")
            head = c.read_head()
            self.assertEqual(head.status, 200)
            self.assertClosed(c, 5)
            self.assertLess(len(c.buf), 100)

    def test_upstream_connection_close_not_reused(self):
        f = self.fakes["conn-close"]
        for i in range(5):
            r = self.get(f"/conn-close/{i}")
            self.assertEqual((r.status, r.body), (200, b"ok"), r)
        self.assertEqual(f.connections, f.requests)

    def test_stale_pooled_connection_not_used(self):
        # The upstream closes idle keep-alive connections after 100ms; no retries configured:
        # the gateway must notice the close instead of sending the next request into it.
        for i in range(4):
            r = self.get(f"/stale/{i}")
            self.assertEqual((r.status, r.body), (200, b"ok"), r)
            time.sleep(0.4)


class NoEndpointTest(SluiceTestCase):
    def test_service_without_endpoints_503(self):
        up = self.sample("other")
        gw = self.gateway({
            "services": [service("empty"), service("other", up.address)],
            "routes": [route("empty", "empty", path_prefix="/")],
        }, ready=False)
        try:
            gw.wait_ready(timeout=5)
        except AssertionError:
            self.skipTest("config rejects a service without endpoints; no 503 case to test")
        self.assertGatewayError(http_request(gw.address, "GET", "/x"), 503)


class RetryBudgetTest(SluiceTestCase):
    def test_retry_budget_limits_retries_under_outage(self):
        # Outage: the endpoint accepts and reads but never answers; every attempt times out
        # after 100ms and timeouts are retriable (3 retries). Without a budget every request
        # would cost 4 attempts; a 20% budget allows about one retry per 4-5 requests.
        def black_hole(s, head):
            s.settimeout(15)
            try:
                while s.recv(65536):
                    pass
            except OSError:
                pass
            return False
        hole = FakeUpstream(black_hole)
        self.addCleanup(hole.close)
        gw = self.gateway({
            "workers": 2,
            "access_log": {"path": "off"},
            "services": [service("outage", hole.address,
                                 timeouts={"connect": "1s", "request": "100ms"},
                                 retry=retry(3, ["timeout"], budget_percent=20))],
            "routes": [route("outage", "outage", path_prefix="/")],
        })
        stop = time.monotonic() + 3.0
        counts = []
        lock = threading.Lock()

        def client():
            statuses = {}
            with RawConn(gw.address, timeout=10) as c:
                while time.monotonic() < stop:
                    s = c.request("GET", "/pay").status
                    statuses[s] = statuses.get(s, 0) + 1
            with lock:
                counts.append(statuses)

        threads_run([client] * 30, timeout=60)
        total = {}
        for st in counts:
            for k, v in st.items():
                total[k] = total.get(k, 0) + v
        client_requests = sum(total.values())
        retries = gw.metric("sluice_upstream_retries_total", service="outage")
        # Every attempt was sent before its client saw the 504, but the fake upstream's threads
        # count a head only once they read it: give them the time to catch up.
        try:
            wait_until(lambda: hole.requests >= client_requests + retries, 10,
                       message="the fake upstream to count every attempt")
        except AssertionError:
            pass  # the assertEqual below reports the numbers
        attempts = hole.requests
        print(f"\n  outage: {client_requests} client requests {total}, {attempts} upstream "
              f"attempts, {retries:.0f} retries", flush=True)
        self.assertEqual(set(total), {504}, total)
        self.assertGreater(client_requests, 100)
        self.assertGreater(retries, 0, "no retries at all: the budget blocks everything")
        self.assertEqual(attempts, client_requests + retries)
        self.assertLess(retries / client_requests, 0.6,
                        f"{retries:.0f} retries for {client_requests} requests: budget not applied")


if __name__ == "__main__":
    unittest.main()
