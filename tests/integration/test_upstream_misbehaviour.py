"""Upstreams that break HTTP/1.1: stray and glued responses, late answers, ambiguous framing, 101
to a plain GET, answers before the request was sent. Every request carries a unique id that the
fake upstream echoes; whatever the upstream does, no client may ever receive the response of
another request. Runs on the default backend and, with SLUICE_IO_BACKEND=epoll, on epoll."""

import json
import signal
import socket
import threading
import time
import unittest

from harness import (ConnClosed, MisbehavingUpstream, RawConn, Sample, SluiceTestCase,
                     build_request, route, service, threads_run, wait_until)


class MisbehaviourTest(SluiceTestCase):
    @classmethod
    def setUpClass(cls):
        super().setUpClass()
        cls.fake = MisbehavingUpstream(stray_delay=0.3, late_delay=1.5)
        cls.addClassCleanup(cls.fake.close)
        cls.gw = cls.class_gateway({
            "workers": 1,
            # Two services on the same upstream (one pool): a short request timeout for the late
            # answers, a generous one for the rest (the fake is Python, on a loaded machine).
            "services": [service("fake", cls.fake.address, retry={"attempts": 0},
                                 timeouts={"connect": "2s", "request": "5s"}),
                         service("fake-short", cls.fake.address, retry={"attempts": 0},
                                 timeouts={"connect": "2s", "request": "400ms"})],
            "routes": [route("late", "fake-short", path_prefix="/late/"),
                       route("all", "fake", path_prefix="/")],
        })
        cls.seq = 0

    def next_id(self, tag):
        type(self).seq += 1
        return f"{tag}{type(self).seq}"

    def assertOwn(self, r, ident):
        """A 200 carries exactly this request's id."""
        self.assertEqual((r.status, r.body), (200, f"id={ident}".encode()),
                         f"request {ident} got another response: {r!r}")

    def assertNotForeign(self, r, ident):
        """Whatever the status, the body is never another request's response."""
        if b"id=" in r.body:
            self.assertEqual(r.body, f"id={ident}".encode(), f"request {ident} got {r!r}")

    def ok_round(self, n=5, conn=None):
        """n plain requests (on `conn`, or one new client connection), each checked."""
        c = conn or RawConn(self.gw.address)
        try:
            for _ in range(n):
                ident = self.next_id("ok")
                self.assertOwn(c.request("GET", f"/ok/{ident}"), ident)
        finally:
            if conn is None:
                c.close()

    def protocol_errors(self, kind):
        return self.gw.metric("sluice_upstream_protocol_errors_total", service="fake", kind=kind)

    def pool_closed(self, reason):
        return self.gw.metric("sluice_upstream_pool_closed_total", reason=reason)

    def access_lines(self):
        with open(self.gw.config["access_log"]["path"]) as f:
            return [json.loads(line) for line in f if line.strip()]

    def access_line(self, ident, tries=60):
        def find():
            for line in self.access_lines():
                if f"/{ident}" in line["path"]:
                    return line
            return None
        return wait_until(find, 5, message=f"access log line of {ident}")

    @staticmethod
    def stopped(pid):
        with open(f"/proc/{pid}/stat") as f:
            return f.read().rsplit(")", 1)[1].split()[0] == "T"

    def conns_of(self, ident):
        return [n for n, _, i in list(self.fake.requests) if i == ident]

    # The reproduction: a second response 300 ms after the first, then a steady stream
    # of requests on the same client connection.
    def test_stray_response_300ms_later_never_reaches_a_request(self):
        before = self.pool_closed("unsolicited_bytes")
        with RawConn(self.gw.address) as c:
            ident = self.next_id("s")
            self.assertOwn(c.request("GET", f"/stray/{ident}"), ident)
            # The stray comes while the connection is idle in the pool: it must be dropped.
            wait_until(lambda: self.pool_closed("unsolicited_bytes") > before, 5,
                       message="the pooled connection closed on the unsolicited response")
            self.ok_round(20, conn=c)

    # The same stray, there before the next request is handled: the gateway is stopped, the
    # client's request arrives, then the stray (acknowledged by the gateway's kernel), and the
    # gateway resumes with both in one batch of events, the request first. The idle connection's
    # read completion then comes after the request took the connection from the pool.
    def test_unsolicited_bytes_seen_with_the_next_request_are_never_delivered(self):
        before = self.pool_closed("unclean_on_reuse")
        self.addCleanup(self.gw.signal, signal.SIGCONT)
        with RawConn(self.gw.address) as c:
            for _ in range(10):
                ident = self.next_id("h")
                self.assertOwn(c.request("GET", f"/hold/{ident}"), ident)
                nxt = self.next_id("n")
                self.gw.signal(signal.SIGSTOP)
                try:
                    # SIGSTOP is delivered asynchronously: the gateway must really be stopped.
                    wait_until(lambda: self.stopped(self.gw.pid), 5, interval=0.001,
                               message="gateway stopped")
                    c.send(build_request("GET", f"/ok/{nxt}"))
                    self.assertTrue(self.fake.inject_stray(), "no held connection to write to")
                finally:
                    self.gw.signal(signal.SIGCONT)
                r = c.read_response()
                self.assertNotForeign(r, nxt)
                self.assertOwn(r, nxt)
        self.assertGreater(self.pool_closed("unclean_on_reuse"), before)

    def test_response_glued_to_a_second_one_is_not_reused(self):
        before = self.protocol_errors("bytes_after_response")
        with RawConn(self.gw.address) as c:
            ident = self.next_id("g")
            self.assertOwn(c.request("GET", f"/glued/{ident}"), ident)
            self.ok_round(10, conn=c)
        self.assertEqual(self.protocol_errors("bytes_after_response"), before + 1)
        self.assertEqual(self.access_line(ident).get("upstream_error"), "bytes_after_response")

    def test_late_response_after_timeout_never_reaches_a_request(self):
        with RawConn(self.gw.address) as c:
            ident = self.next_id("l")
            r = c.request("GET", f"/late/{ident}")
            self.assertGatewayError(r, 504)
            self.assertNotForeign(r, ident)
            # Requests go on while the late answer is due (late_delay after the request).
            deadline = time.monotonic() + self.fake.late_delay + 0.3
            while time.monotonic() < deadline:
                self.ok_round(1, conn=c)
                time.sleep(0.05)
        # The timed-out connection was closed, never given another request.
        conn = self.conns_of(ident)[0]
        on_conn = [i for n, _, i in self.fake.requests if n == conn]
        self.assertEqual(on_conn[-1], ident, f"requests after the timeout on its connection: {on_conn}")

    def test_content_length_with_transfer_encoding_is_502(self):
        before = self.protocol_errors("invalid_response")
        with RawConn(self.gw.address) as c:
            ident = self.next_id("c")
            r = c.request("GET", f"/clte/{ident}")
            self.assertGatewayError(r, 502)
            self.assertNotIn(b"id=", r.body)
            self.ok_round(5, conn=c)
        self.assertEqual(self.protocol_errors("invalid_response"), before + 1)
        self.assertEqual(self.access_line(ident).get("upstream_error"), "invalid_response")

    def test_broken_chunked_framing_is_502(self):
        before = self.protocol_errors("invalid_response")
        with RawConn(self.gw.address) as c:
            ident = self.next_id("b")
            r = c.request("GET", f"/badchunk/{ident}")
            if r.status == 200:
                # The head may already be on its way: then the response is cut short instead.
                self.assertTrue(c.wait_closed(3), "a broken response was not cut short")
            else:
                self.assertGatewayError(r, 502)
        self.ok_round(5)
        self.assertEqual(self.protocol_errors("invalid_response"), before + 1)

    def test_101_to_a_get_is_502_and_what_follows_is_never_a_response(self):
        before = self.protocol_errors("unexpected_101")
        with RawConn(self.gw.address) as c:
            ident = self.next_id("u")
            r = c.request("GET", f"/upgrade/{ident}")
            self.assertGatewayError(r, 502)
            self.assertNotIn(b"id=", r.body)
            self.ok_round(5, conn=c)
        self.assertEqual(self.protocol_errors("unexpected_101"), before + 1)
        self.assertEqual(self.access_line(ident).get("upstream_error"), "unexpected_101")

    def test_informational_response_then_final_keeps_the_connection(self):
        with RawConn(self.gw.address) as c:
            ident = self.next_id("i")
            r = c.request("GET", f"/info/{ident}")
            self.assertOwn(r, ident)
            nxt = self.next_id("ok")
            self.assertOwn(c.request("GET", f"/ok/{nxt}"), nxt)
        # The 103 did not make the connection unusable: the next request reused it.
        self.assertEqual(self.conns_of(ident), self.conns_of(nxt))

    def test_response_before_the_body_was_sent(self):
        before = self.protocol_errors("early_response")
        ident = self.next_id("e")
        first, rest = 64 * 1024, 4 * 1024 * 1024
        with RawConn(self.gw.address, timeout=10) as c:
            c.send(build_request("POST", f"/earlyslow/{ident}",
                                 {"Content-Length": str(first + rest)}, b"x" * first))
            # The answer starts (it ends late_delay later); it is forwarded at once.
            r = c.read_head()
            self.assertEqual(r.status, 200, r)
            self.assertEqual(r.header("connection"), "close", r)
            # The rest of the body arrives after the answer began: it must not go upstream.
            try:
                c.send(b"y" * rest)
            except OSError:
                pass
            c.wait_closed(5)
            self.assertIn(f"id={ident}".encode(), bytes(c.buf))
        # The gateway closes that upstream connection (never pooled); then the count is final.
        conn = self.conns_of(ident)[0]
        wait_until(lambda: conn in self.fake.ended, 5, message="the upstream connection closed")
        self.assertLess(self.fake.early_body_bytes.get(ident, 0), first + rest // 2,
                        "the body kept flowing upstream after the response")
        wait_until(lambda: self.protocol_errors("early_response") > before, 5,
                   message="early_response counted")
        # And the connection it came on was never used again.
        self.ok_round(5)
        self.assertEqual([i for n, _, i in self.fake.requests if n == conn], [ident])
        self.assertEqual(self.access_line(ident).get("upstream_error"), "early_response")

    def test_many_clients_never_get_a_foreign_response(self):
        # Strays that arrive while a request is in flight cannot be told from its response by
        # anyone; the behaviours here are those the gateway can always recognise.
        def client(k):
            wrong = []
            with RawConn(self.gw.address, timeout=10) as c:
                for j in range(30):
                    what = ("ok", "glued", "upgrade", "info", "clte")[j % 5]
                    ident = f"m{k}-{j}"
                    r = c.request("GET", f"/{what}/{ident}")
                    good = r.status == 200 if what in ("ok", "glued", "info") else r.status == 502
                    if not good or (b"id=" in r.body and r.body != f"id={ident}".encode()):
                        wrong.append((ident, r.status, r.body))
            return wrong
        results = threads_run([lambda k=k: client(k) for k in range(8)], timeout=120)
        self.assertEqual([w for ws in results for w in ws], [])


class PoolSizingTest(SluiceTestCase):
    """The default pool keeps what steady concurrency needs; an explicit max_idle_connections is
    a hard cap."""

    CLIENTS = 96
    ROUNDS = 4

    def run_rounds(self, gw):
        # Every client's request is in flight at once (the upstream takes 100 ms): the gateway
        # needs CLIENTS upstream connections per round.
        barrier = threading.Barrier(self.CLIENTS, timeout=60)

        def client(k):
            with RawConn(gw.address, timeout=30) as c:
                for j in range(self.ROUNDS):
                    barrier.wait()
                    r = c.request("GET", f"/p/{k}/{j}")
                    self.assertEqual(r.status, 200, r)
        threads_run([lambda k=k: client(k) for k in range(self.CLIENTS)], timeout=150)

    def opened(self, gw):
        return gw.metric("sluice_upstream_connections_opened_total", service="pool")

    def test_default_pool_follows_demand(self):
        up = self.sample("pool", latency="100ms")
        gw = self.gateway({"workers": 1,
                           "services": [service("pool", up.address)],
                           "routes": [route("all", "pool", path_prefix="/")]})
        self.run_rounds(gw)
        opened = self.opened(gw)
        hits = gw.metric("sluice_upstream_pool_hits_total", service="pool")
        # The first round opens up to one connection per client; later rounds reuse them (the
        # old fixed cap of 64 closed 32 per round and opened them again).
        self.assertLessEqual(opened, self.CLIENTS + 4, f"opened {opened}, hits {hits}")
        self.assertGreaterEqual(hits, self.CLIENTS * (self.ROUNDS - 1) - 4)
        self.assertEqual(gw.metric("sluice_upstream_pool_closed_total", reason="over_cap"), 0)

    def test_explicit_max_idle_connections_is_a_hard_cap(self):
        up = self.sample("pool", latency="100ms")
        gw = self.gateway({"workers": 1,
                           "services": [service("pool", up.address, max_idle_connections=16)],
                           "routes": [route("all", "pool", path_prefix="/")]})
        self.run_rounds(gw)
        self.assertGreaterEqual(self.opened(gw), self.CLIENTS + (self.ROUNDS - 1) * 40)
        self.assertGreater(gw.metric("sluice_upstream_pool_closed_total", reason="over_cap"), 0)
        self.assertLessEqual(gw.metric("sluice_upstream_idle_connections"), 16)

    def test_memory_budget_bounds_the_pool(self):
        up = self.sample("pool", latency="100ms")
        # 20 KiB per idle connection: 400 KiB keeps 20.
        gw = self.gateway({"workers": 1, "limits": {"max_idle_upstream_bytes": "400KiB"},
                           "services": [service("pool", up.address)],
                           "routes": [route("all", "pool", path_prefix="/")]})
        self.run_rounds(gw)
        self.assertGreater(gw.metric("sluice_upstream_pool_closed_total", reason="over_memory"), 0)
        self.assertLessEqual(gw.metric("sluice_upstream_idle_connections"), 20)


if __name__ == "__main__":
    unittest.main()
