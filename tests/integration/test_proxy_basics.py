"""Proxy basics: keep-alive and pooled upstream connections, pipelining, hop-by-hop headers,
X-Forwarded-*, x-request-id, traceparent, status and HEAD passthrough."""

import re
import socket
import time
import unittest

from harness import (FakeUpstream, SluiceTestCase, RawConn, build_request, http_request, route,
                     service, threads_run, wait_until)

HEX32 = re.compile(r"[0-9a-f]{32}\Z")
TRACEPARENT = re.compile(r"00-([0-9a-f]{32})-([0-9a-f]{16})-([0-9a-f]{2})\Z")


class ProxyBasicsTest(SluiceTestCase):
    @classmethod
    def setUpClass(cls):
        super().setUpClass()
        cls.up = cls.class_sample("basics")
        cls.gw = cls.class_gateway({
            "workers": 2,
            "services": [service("basics", cls.up.address)],
            "routes": [route("all", "basics", path_prefix="/")],
        })

    def echo_headers(self, headers=None, path="/h"):
        h = {"x-sample-echo": "headers"}
        h.update(headers or {})
        with RawConn(self.gw.address) as c:
            r = c.request("GET", path, headers=h)
        self.assertEqual(r.status, 200, r)
        return r, r.json()["headers"]

    # --- connections -----------------------------------------------------------------------

    def test_keep_alive_downstream_and_pooled_upstream(self):
        before = self.up.stats()
        n = 50
        with RawConn(self.gw.address) as c:
            for i in range(n):
                r = c.request("GET", f"/ka/{i}")
                self.assertEqual(r.status, 200, r)
                self.assertEqual(r.json()["path"], f"/ka/{i}")
                self.assertNotEqual((r.header("connection") or "").lower(), "close", r)
        after = self.up.stats()
        self.assertGreaterEqual(after["requests"] - before["requests"], n)
        # One downstream connection served by one worker: at most a couple of upstream
        # connections, not one per request.
        self.assertLessEqual(after["connections"] - before["connections"], 2,
                             f"before={before} after={after}")

    def test_upstream_pool_shared_across_downstream_connections(self):
        before = self.up.stats()
        n = 40
        for i in range(n):
            r = http_request(self.gw.address, "GET", f"/new/{i}")
            self.assertEqual(r.status, 200, r)
        after = self.up.stats()
        workers = self.gw.config["workers"]
        self.assertLessEqual(after["connections"] - before["connections"], workers + 1,
                             f"{n} sequential requests opened too many upstream connections: "
                             f"before={before} after={after}")

    def test_pipelining(self):
        reqs = []
        for i in range(10):
            if i % 3 == 1:
                reqs.append(build_request("POST", f"/p/{i}", body=b"x" * i))
            else:
                reqs.append(build_request("GET", f"/p/{i}?i={i}"))
        with RawConn(self.gw.address) as c:
            c.send(b"".join(reqs))
            for i in range(10):
                r = c.read_response()
                self.assertEqual(r.status, 200, r)
                j = r.json()
                self.assertEqual(j["path"], f"/p/{i}", f"response {i} out of order: {j}")
                if i % 3 == 1:
                    self.assertEqual(j["method"], "POST")
                    self.assertEqual(j["body_bytes"], i)
            # And the connection is still usable.
            self.assertEqual(c.request("GET", "/after").status, 200)

    def test_pipelining_order_with_slow_first_response(self):
        with RawConn(self.gw.address) as c:
            c.send(build_request("GET", "/_sample/delay/300") + build_request("GET", "/fast")
                   + build_request("GET", "/third"))
            paths = [c.read_response().json()["path"] for _ in range(3)]
        self.assertEqual(paths, ["/_sample/delay/300", "/fast", "/third"])

    def test_client_abort_mid_request_does_not_leak(self):
        active0 = self.gw.metric("sluice_downstream_connections_active", listener="public")
        for i in range(10):
            c = RawConn(self.gw.address)
            c.send(build_request("GET", "/_sample/delay/2000"))
            time.sleep(0.02)
            c.close()
        with RawConn(self.gw.address) as c:
            self.assertEqual(c.request("GET", "/alive").status, 200)
        wait_until(lambda: self.gw.metric("sluice_downstream_connections_active",
                                          listener="public") <= active0, 5,
                   message="aborted connections released")

    def test_many_concurrent_connections(self):
        def client(k):
            def run():
                with RawConn(self.gw.address, timeout=10) as c:
                    return [c.request("GET", f"/cc/{k}/{i}").json()["path"] for i in range(5)]
            return run
        conns = [RawConn(self.gw.address, timeout=10) for _ in range(150)]
        try:
            # 150 idle connections held open while 20 clients work.
            results = threads_run([client(k) for k in range(20)], timeout=60)
            for k, paths in enumerate(results):
                self.assertEqual(paths, [f"/cc/{k}/{i}" for i in range(5)])
            for c in conns[:10]:
                self.assertEqual(c.request("GET", "/held").status, 200)
        finally:
            for c in conns:
                c.close()

    def test_pipelining_split_across_writes(self):
        data = b"".join(build_request("GET", f"/s/{i}") for i in range(5))
        with RawConn(self.gw.address) as c:
            # Split mid-request to check the parser keeps state across reads.
            c.send(data[:37])
            c.send(data[37:101])
            c.send(data[101:])
            for i in range(5):
                r = c.read_response()
                self.assertEqual(r.json()["path"], f"/s/{i}")

    def test_http10_closes_after_response(self):
        with RawConn(self.gw.address) as c:
            c.send(b"GET /old HTTP/1.0\r\nHost: test\r\n\r\n")
            r = c.read_response()
            self.assertEqual(r.status, 200, r)
            self.assertEqual(r.json()["path"], "/old")
            self.assertClosed(c)

    def test_connection_close_request(self):
        with RawConn(self.gw.address) as c:
            r = c.request("GET", "/bye", headers={"Connection": "close"})
            self.assertEqual(r.status, 200, r)
            self.assertEqual((r.header("connection") or "").lower(), "close", r)
            self.assertClosed(c)

    def test_connections_metrics(self):
        before_total = self.gw.metric("sluice_downstream_connections_total", listener="public")
        with RawConn(self.gw.address) as c1, RawConn(self.gw.address) as c2:
            self.assertEqual(c1.request("GET", "/m").status, 200)
            self.assertEqual(c2.request("GET", "/m").status, 200)
            active = self.gw.metric("sluice_downstream_connections_active", listener="public")
            self.assertGreaterEqual(active, 2)
        total = self.gw.metric("sluice_downstream_connections_total", listener="public")
        self.assertGreaterEqual(total - before_total, 2)

    # --- headers -----------------------------------------------------------------------------

    def test_hop_by_hop_request_headers_removed(self):
        _, up = self.echo_headers({
            "Connection": "keep-alive, X-Hop-Listed",
            "X-Hop-Listed": "1",
            "Keep-Alive": "timeout=5",
            "Proxy-Connection": "keep-alive",
            "TE": "trailers",
            "Trailer": "X-Some-Trailer",
            "Upgrade": "h2c-ish",
            "X-End-To-End": "kept",
        })
        for h in ("x-hop-listed", "keep-alive", "proxy-connection", "te", "trailer", "upgrade"):
            self.assertNotIn(h, up, f"hop-by-hop header {h} was forwarded: {up}")
        if "connection" in up:
            self.assertNotIn("x-hop-listed", up["connection"].lower(), up)
        self.assertEqual(up.get("x-end-to-end"), "kept", up)

    def test_transfer_encoding_reframed(self):
        body = b"0123456789" * 10
        with RawConn(self.gw.address) as c:
            c.send(b"POST /te HTTP/1.1\r\nHost: test\r\nx-sample-echo: headers\r\n"
                   b"Transfer-Encoding: chunked\r\n\r\n"
                   + b"".join(b"%x\r\n%s\r\n" % (len(body[i:i + 30]), body[i:i + 30])
                              for i in range(0, len(body), 30))
                   + b"0\r\n\r\n")
            r = c.read_response()
        self.assertEqual(r.status, 200, r)
        j = r.json()
        self.assertEqual(j["body_bytes"], len(body))
        up = j["headers"]
        # Either re-chunked or re-framed with Content-Length; never both, never garbage.
        te = up.get("transfer-encoding", "").lower()
        self.assertTrue(te == "chunked" or up.get("content-length") == str(len(body)), up)
        self.assertFalse(te and "content-length" in up, up)

    def test_x_forwarded_for_added(self):
        _, up = self.echo_headers()
        self.assertEqual(up.get("x-forwarded-for"), "127.0.0.1", up)
        self.assertEqual(up.get("x-forwarded-proto"), "http", up)

    def test_x_forwarded_for_appended(self):
        _, up = self.echo_headers({"X-Forwarded-For": "203.0.113.7"})
        self.assertEqual(up.get("x-forwarded-for"), "203.0.113.7, 127.0.0.1", up)

    def test_x_forwarded_proto_overwritten(self):
        _, up = self.echo_headers({"X-Forwarded-Proto": "https"})
        self.assertEqual(up.get("x-forwarded-proto"), "http", up)

    def test_request_id_created(self):
        r1, up1 = self.echo_headers()
        r2, up2 = self.echo_headers()
        rid = up1.get("x-request-id", "")
        self.assertRegex(rid, HEX32)
        self.assertEqual(r1.header("x-request-id"), rid, r1)
        self.assertNotEqual(up2.get("x-request-id"), rid)
        self.assertEqual(r2.header("x-request-id"), up2.get("x-request-id"))

    def test_request_id_kept(self):
        r, up = self.echo_headers({"X-Request-Id": "client-id-123"})
        self.assertEqual(up.get("x-request-id"), "client-id-123", up)
        self.assertEqual(r.header("x-request-id"), "client-id-123", r)
        self.assertEqual(len(r.header_all("x-request-id")), 1, r)

    def test_traceparent_created(self):
        _, up = self.echo_headers()
        m = TRACEPARENT.match(up.get("traceparent", ""))
        self.assertTrue(m, f"no valid traceparent upstream: {up}")
        self.assertNotEqual(m.group(1), "0" * 32)
        self.assertNotEqual(m.group(2), "0" * 16)

    def test_traceparent_propagated_with_new_span(self):
        trace = "4bf92f3577b34da6a3ce929d0e0e4736"
        span = "00f067aa0ba902b7"
        _, up = self.echo_headers({"traceparent": f"00-{trace}-{span}-01"})
        m = TRACEPARENT.match(up.get("traceparent", ""))
        self.assertTrue(m, f"no valid traceparent upstream: {up}")
        self.assertEqual(m.group(1), trace)
        self.assertNotEqual(m.group(2), span)
        self.assertNotEqual(m.group(2), "0" * 16)
        self.assertEqual(m.group(3), "01")

    def test_traceparent_invalid_replaced(self):
        _, up = self.echo_headers({"traceparent": "00-zzzz-not-valid"})
        m = TRACEPARENT.match(up.get("traceparent", ""))
        self.assertTrue(m, f"invalid traceparent forwarded as is or dropped: {up}")

    def test_end_to_end_headers_and_duplicates_kept(self):
        with RawConn(self.gw.address) as c:
            c.send(b"GET /dup HTTP/1.1\r\nHost: test\r\nx-sample-echo: headers\r\n"
                   b"X-Custom: v1\r\nAuthorization: Bearer abc\r\n\r\n")
            r = c.read_response()
        up = r.json()["headers"]
        self.assertEqual(up.get("x-custom"), "v1", up)
        self.assertEqual(up.get("authorization"), "Bearer abc", up)

    def test_response_headers_passthrough(self):
        r = http_request(self.gw.address, "GET", "/resp")
        self.assertEqual(r.status, 200)
        self.assertTrue(r.header("x-sample-instance"), r)
        self.assertTrue(r.header("x-request-id"), r)

    # --- status, methods ---------------------------------------------------------------------

    def test_upstream_status_passthrough(self):
        for code in (201, 404, 418, 500, 503):
            r = http_request(self.gw.address, "GET", f"/_sample/status/{code}")
            self.assertEqual(r.status, code, r)
            self.assertTrue(r.header("x-sample-instance"), r)

    def test_no_body_statuses_keep_connection_usable(self):
        with RawConn(self.gw.address) as c:
            r = c.request("GET", "/_sample/status/204")
            self.assertEqual(r.status, 204, r)
            r = c.request("GET", "/_sample/status/304")
            self.assertEqual(r.status, 304, r)
            r = c.request("GET", "/after-no-body")
            self.assertEqual(r.status, 200, r)
            self.assertEqual(r.json()["path"], "/after-no-body")

    def test_head_then_get_on_same_connection(self):
        with RawConn(self.gw.address) as c:
            r = c.request("HEAD", "/head")
            self.assertEqual(r.status, 200, r)
            self.assertEqual(r.body, b"")
            r = c.request("GET", "/after-head")
            self.assertEqual(r.status, 200, r)
            self.assertEqual(r.json()["path"], "/after-head")

    def test_methods_forwarded(self):
        for m in ("GET", "POST", "PUT", "DELETE", "PATCH", "OPTIONS"):
            r = http_request(self.gw.address, m, "/meth", body=b"" if m in ("POST", "PUT", "PATCH") else None)
            self.assertEqual(r.status, 200, f"{m}: {r!r}")
            self.assertEqual(r.json()["method"], m)

    def test_client_half_close_after_request(self):
        # A client that shuts down its write side after the request still gets the response.
        with RawConn(self.gw.address) as c:
            c.send(build_request("GET", "/half"))
            c.sock.shutdown(socket.SHUT_WR)
            r = c.read_response()
            self.assertEqual(r.status, 200, r)


class UpstreamHygieneTest(SluiceTestCase):
    def test_response_hop_by_hop_headers_removed(self):
        def answer(sock, head):
            sock.sendall(b"HTTP/1.1 200 OK\r\nConnection: keep-alive, X-Resp-Hop\r\n"
                         b"X-Resp-Hop: 1\r\nKeep-Alive: timeout=5\r\nProxy-Connection: x\r\n"
                         b"Trailer: X-T\r\nUpgrade: foo\r\nX-Kept: yes\r\n"
                         b"Transfer-Encoding: chunked\r\n\r\n5\r\nhello\r\n0\r\n\r\n")
        fake = FakeUpstream(answer)
        self.addCleanup(fake.close)
        gw = self.gateway({"services": [service("fake", fake.address)],
                           "routes": [route("all", "fake", path_prefix="/")]})
        with RawConn(gw.address) as c:
            r = c.request("GET", "/")
            self.assertEqual((r.status, r.body), (200, b"hello"), r)
            names = {k.lower() for k, _ in r.headers}
            for h in ("x-resp-hop", "keep-alive", "proxy-connection", "trailer", "upgrade"):
                self.assertNotIn(h, names, f"hop-by-hop response header {h} forwarded: {r.headers}")
            self.assertEqual(r.header("x-kept"), "yes")
            # Still usable: framing of the re-sent response is consistent.
            r = c.request("GET", "/again")
            self.assertEqual((r.status, r.body), (200, b"hello"), r)

    def test_idle_upstream_connections_closed(self):
        up = self.sample("idle-up")
        gw = self.gateway({"services": [service("idle-up", up.address,
                                                timeouts={"connect": "1s", "request": "5s",
                                                          "idle": "300ms"})],
                           "routes": [route("all", "idle-up", path_prefix="/")]})
        self.assertEqual(http_request(gw.address, "GET", "/x").status, 200)
        # Our own stats request is one active connection.
        wait_until(lambda: up.stats()["active_connections"] <= 1, 3,
                   message="pooled upstream connection closed after timeouts.idle")


class LoadBalancingTest(SluiceTestCase):
    @classmethod
    def setUpClass(cls):
        super().setUpClass()
        cls.s = [cls.class_sample(f"lb-{i}") for i in range(3)]
        addrs = [x.address for x in cls.s]
        weighted = service("weighted", addrs[0], addrs[1],
                           load_balancer={"policy": "round_robin"})
        weighted["endpoints"][0]["weight"] = 3
        cls.gw = cls.class_gateway({
            "workers": 1,
            "services": [
                service("rr", *addrs, load_balancer={"policy": "round_robin"}),
                weighted,
                service("hash", *addrs, load_balancer={"policy": "ring_hash",
                                                       "hash_on": "header:x-customer-id"}),
                service("least", *addrs, load_balancer={"policy": "least_request"}),
            ],
            "routes": [route(n, n, strip_prefix=f"/{n}", path_prefix=f"/{n}/")
                       for n in ("rr", "weighted", "hash", "least")],
        })

    def instances(self, prefix, n, headers=None):
        counts = {}
        with RawConn(self.gw.address) as c:
            for i in range(n):
                r = c.request("GET", f"/{prefix}/{i}", headers=headers)
                self.assertEqual(r.status, 200, r)
                inst = r.header("x-sample-instance")
                counts[inst] = counts.get(inst, 0) + 1
        return counts

    def test_round_robin_even(self):
        counts = self.instances("rr", 30)
        self.assertEqual(sorted(counts.values()), [10, 10, 10], counts)

    def test_round_robin_weights(self):
        counts = self.instances("weighted", 40)
        heavy = counts.get(f"lb-0@{self.s[0].address}", 0)
        light = counts.get(f"lb-1@{self.s[1].address}", 0)
        self.assertEqual(heavy + light, 40, counts)
        self.assertEqual((heavy, light), (30, 10), counts)

    def test_ring_hash_sticky(self):
        seen = {}
        for key in range(20):
            counts = self.instances("hash", 5, {"x-customer-id": f"cust-{key}"})
            self.assertEqual(len(counts), 1, f"key cust-{key} spread over {counts}")
            seen[key] = next(iter(counts))
        self.assertGreater(len(set(seen.values())), 1, "every key on one endpoint")

    def test_least_request_all_endpoints_used(self):
        counts = self.instances("least", 30)
        self.assertEqual(sum(counts.values()), 30)
        self.assertEqual(len(counts), 3, f"sequential requests should spread: {counts}")


if __name__ == "__main__":
    unittest.main()
