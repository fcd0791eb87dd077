"""Limits and request-smuggling vectors: the gateway answers 400/408/413/414/431, closes the
connection, forwards nothing, and counts the rejection."""

import socket
import threading
import time
import unittest

from harness import (FakeUpstream, SluiceTestCase, ConnClosed, RawConn, build_request, chunked,
                     route, service)

LIMITS = {
    "max_header_bytes": 4096,
    "max_uri_bytes": 1024,
    "max_body_bytes": 1024,
    "max_headers": 20,
    "header_timeout": "1s",
    "idle_timeout": "2s",
}


class BadInputBase(SluiceTestCase):
    @classmethod
    def setUpClass(cls):
        super().setUpClass()
        cls.up = cls.class_sample("bad-input")
        cls.gw = cls.class_gateway({
            "workers": 1,
            "limits": LIMITS,
            "services": [service("bad-input", cls.up.address)],
            "routes": [route("all", "bad-input", path_prefix="/")],
        })

    def rejected(self, reason):
        return self.gw.metric("sluice_downstream_rejected_total", reason=reason)

    def assertRejected(self, raw, status, reason=None, forwarded=0, read_timeout=5.0):
        """Sends raw bytes on a new connection: expects `status` from the gateway, then the
        connection closed, and nothing (or `forwarded` requests) reaching the upstream."""
        before = self.up.requests()
        before_metric = self.rejected(reason) if reason else None
        with RawConn(self.gw.address, timeout=read_timeout) as c:
            try:
                c.send(raw)
            except (BrokenPipeError, ConnectionResetError):
                pass  # the gateway may stop reading early; the response is what counts
            responses = []
            try:
                while True:
                    r = c.read_response()
                    responses.append(r)
                    if r.status == status or r.status >= 400:
                        break
            except ConnClosed as e:
                self.fail(f"connection {e} before a {status} response "
                          f"(got {[x.status for x in responses]}) for {raw[:120]!r}")
            except socket.timeout:
                self.fail(f"no {status} response within {read_timeout}s for {raw[:120]!r} "
                          f"(got {[x.status for x in responses]})")
            last = responses[-1]
            self.assertEqual(last.status, status, f"for {raw[:160]!r}: {last!r}")
            body = last.json()
            self.assertIn("error", body, last)
            self.assertTrue(last.header("x-request-id"), last)
            self.assertClosed(c)
        self.assertEqual(self.up.requests_since(before), forwarded,
                         f"upstream received requests for {raw[:120]!r}")
        if reason:
            self.assertEqual(self.rejected(reason) - before_metric, 1,
                             f"sluice_downstream_rejected_total{{reason={reason!r}}}")
        return last


class SmugglingTest(BadInputBase):
    def test_positive_control_valid_chunked(self):
        # The same helpers with a valid message: 200, so a 400 below means something.
        with RawConn(self.gw.address) as c:
            c.send(b"POST / HTTP/1.1\r\nHost: t\r\nTransfer-Encoding: Chunked\r\n\r\n"
                   + chunked(b"hello"))
            r = c.read_response()
            self.assertEqual(r.status, 200, r)
            self.assertEqual(r.json()["body_bytes"], 5)
            self.assertFalse(c.wait_closed(0.2))

    def test_cl_and_te(self):
        self.assertRejected(b"POST / HTTP/1.1\r\nHost: t\r\nContent-Length: 5\r\n"
                            b"Transfer-Encoding: chunked\r\n\r\n0\r\n\r\n", 400, "bad_request")

    def test_te_and_cl(self):
        self.assertRejected(b"POST / HTTP/1.1\r\nHost: t\r\nTransfer-Encoding: chunked\r\n"
                            b"Content-Length: 6\r\n\r\n0\r\n\r\nG", 400, "bad_request")

    def test_two_different_content_lengths(self):
        self.assertRejected(b"POST / HTTP/1.1\r\nHost: t\r\nContent-Length: 5\r\n"
                            b"Content-Length: 6\r\n\r\nhello!", 400, "bad_request")

    def test_content_length_list_different(self):
        self.assertRejected(b"POST / HTTP/1.1\r\nHost: t\r\nContent-Length: 5, 6\r\n\r\nhello!",
                            400, "bad_request")

    def test_content_length_negative(self):
        self.assertRejected(b"POST / HTTP/1.1\r\nHost: t\r\nContent-Length: -1\r\n\r\n",
                            400, "bad_request")

    def test_content_length_not_a_number(self):
        self.assertRejected(b"POST / HTTP/1.1\r\nHost: t\r\nContent-Length: 1x\r\n\r\nab",
                            400, "bad_request")
        self.assertRejected(b"POST / HTTP/1.1\r\nHost: t\r\nContent-Length: +5\r\n\r\nhello",
                            400, "bad_request")

    def test_te_not_final_chunked(self):
        self.assertRejected(b"POST / HTTP/1.1\r\nHost: t\r\nTransfer-Encoding: chunked, gzip"
                            b"\r\n\r\n0\r\n\r\n", 400, "bad_request")

    def test_te_unknown_coding(self):
        self.assertRejected(b"POST / HTTP/1.1\r\nHost: t\r\nTransfer-Encoding: gzip\r\n\r\nab",
                            400, "bad_request")

    def test_te_lookalike(self):
        self.assertRejected(b"POST / HTTP/1.1\r\nHost: t\r\nTransfer-Encoding: xchunked\r\n\r\n"
                            b"0\r\n\r\n", 400, "bad_request")

    def test_te_two_headers_last_not_chunked(self):
        self.assertRejected(b"POST / HTTP/1.1\r\nHost: t\r\nTransfer-Encoding: chunked\r\n"
                            b"Transfer-Encoding: identity\r\n\r\n0\r\n\r\n", 400, "bad_request")

    def test_chunk_size_not_hex(self):
        self.assertRejected(b"POST / HTTP/1.1\r\nHost: t\r\nTransfer-Encoding: chunked\r\n\r\n"
                            b"zz\r\nhello\r\n0\r\n\r\n", 400, "bad_request")

    def test_chunk_size_negative(self):
        self.assertRejected(b"POST / HTTP/1.1\r\nHost: t\r\nTransfer-Encoding: chunked\r\n\r\n"
                            b"-1\r\nhello\r\n0\r\n\r\n", 400, "bad_request")

    def test_chunk_size_huge(self):
        self.assertRejected(b"POST / HTTP/1.1\r\nHost: t\r\nTransfer-Encoding: chunked\r\n\r\n"
                            b"ffffffffffffffffffffff\r\nhello\r\n0\r\n\r\n", 400, "bad_request")

    def test_obs_fold(self):
        self.assertRejected(b"GET / HTTP/1.1\r\nHost: t\r\nX-A: one\r\n  two\r\n\r\n",
                            400, "bad_request")
        self.assertRejected(b"GET / HTTP/1.1\r\nHost: t\r\nX-A: one\r\n\ttwo\r\n\r\n",
                            400, "bad_request")

    def test_space_before_colon(self):
        self.assertRejected(b"GET / HTTP/1.1\r\nHost: t\r\nX-A : 1\r\n\r\n", 400, "bad_request")
        self.assertRejected(b"POST / HTTP/1.1\r\nHost: t\r\nTransfer-Encoding : chunked\r\n\r\n"
                            b"0\r\n\r\n", 400, "bad_request")

    def test_non_token_header_name(self):
        for name in (b"X(A)", b"X\"A", b"X@A", b"X/A", b"X[A]"):
            with self.subTest(name=name):
                self.assertRejected(b"GET / HTTP/1.1\r\nHost: t\r\n" + name + b": 1\r\n\r\n",
                                    400, "bad_request")

    def test_empty_header_name(self):
        self.assertRejected(b"GET / HTTP/1.1\r\nHost: t\r\n: nothing\r\n\r\n", 400, "bad_request")

    def test_bare_lf_request_line(self):
        self.assertRejected(b"GET / HTTP/1.1\nHost: t\r\n\r\n", 400, "bad_request")

    def test_bare_lf_in_headers(self):
        self.assertRejected(b"GET / HTTP/1.1\r\nHost: t\nX-A: 1\r\n\r\n", 400, "bad_request")

    def test_bare_lf_end_of_head(self):
        self.assertRejected(b"GET / HTTP/1.1\r\nHost: t\r\n\n", 400, "bad_request")

    def test_bare_cr_in_request_line(self):
        self.assertRejected(b"GET /a\rb HTTP/1.1\r\nHost: t\r\n\r\n", 400, "bad_request")

    def test_bare_cr_in_header_value(self):
        self.assertRejected(b"GET / HTTP/1.1\r\nHost: t\r\nX-A: a\rb\r\n\r\n", 400, "bad_request")

    def test_nul_in_header_value(self):
        self.assertRejected(b"GET / HTTP/1.1\r\nHost: t\r\nX-A: a\x00b\r\n\r\n", 400, "bad_request")

    def test_invalid_method(self):
        self.assertRejected(b"G(T / HTTP/1.1\r\nHost: t\r\n\r\n", 400, "bad_request")
        self.assertRejected(b"G\x01T / HTTP/1.1\r\nHost: t\r\n\r\n", 400, "bad_request")

    def test_invalid_version(self):
        self.assertRejected(b"GET / HTTP/1.x\r\nHost: t\r\n\r\n", 400, "bad_request")
        self.assertRejected(b"GET / HTTQ/1.1\r\nHost: t\r\n\r\n", 400, "bad_request")

    def test_request_line_trailing_garbage(self):
        self.assertRejected(b"GET / HTTP/1.1 extra\r\nHost: t\r\n\r\n", 400, "bad_request")

    def test_missing_host_http11(self):
        # RFC 9112 section 3.2: a server MUST respond 400 to an HTTP/1.1 request without Host.
        self.assertRejected(b"GET / HTTP/1.1\r\nX-A: 1\r\n\r\n", 400, "bad_request")

    def test_two_host_headers(self):
        self.assertRejected(b"GET / HTTP/1.1\r\nHost: a\r\nHost: b\r\n\r\n", 400, "bad_request")

    def test_valid_then_smuggled_in_same_write(self):
        # The first request is served, the second is rejected, nothing else reaches upstream.
        raw = (build_request("GET", "/first")
               + b"POST /second HTTP/1.1\r\nHost: t\r\nContent-Length: 4\r\n"
                 b"Transfer-Encoding: chunked\r\n\r\n0\r\n\r\n")
        self.assertRejected(raw, 400, "bad_request", forwarded=1)

    def test_upgrade_not_forwarded_as_tunnel(self):
        # Upgrade is hop-by-hop and unsupported: either refused or forwarded as a plain request
        # without it; never a raw tunnel to the upstream.
        with RawConn(self.gw.address) as c:
            c.send(b"GET /ws HTTP/1.1\r\nHost: t\r\nConnection: Upgrade\r\nUpgrade: websocket\r\n"
                   b"x-sample-echo: headers\r\n\r\n")
            r = c.read_response()
            self.assertNotEqual(r.status, 101, r)
            if r.status == 200:
                self.assertNotIn("upgrade", r.json().get("headers", {}))


class KeepAliveStateTest(BadInputBase):
    def test_error_after_head_request_on_same_connection_has_its_body(self):
        # Nothing of one request carries over to the next on a keep-alive connection: the
        # "no body" of a HEAD request once left the 400 for the malformed request after it
        # without its body (Content-Length said there was one; the client hung or was cut).
        with RawConn(self.gw.address) as c:
            c.send(build_request("HEAD", "/first"))
            r = c.read_response("HEAD")
            self.assertEqual(r.status, 200, r)
            c.send(b"GET /second HTTP/1.1\r\nHost: t\r\nBad Header: x\r\n\r\n")
            r = c.read_response()
            self.assertEqual(r.status, 400, r)
            self.assertEqual(int(r.header("content-length")), len(r.body), r)
            self.assertEqual(r.json()["status"], 400, r)
            self.assertClosed(c)


class LimitsTest(BadInputBase):
    def test_head_too_large_431(self):
        self.assertRejected(build_request("GET", "/", {"X-Big": "a" * 5000}), 431,
                            "header_too_large")

    def test_head_just_under_limit_ok(self):
        with RawConn(self.gw.address) as c:
            r = c.request("GET", "/", {"X-Big": "a" * 3000})
            self.assertEqual(r.status, 200, r)

    def test_too_many_headers_431(self):
        headers = {f"X-H{i}": "v" for i in range(30)}
        self.assertRejected(build_request("GET", "/", headers), 431, "header_too_large")

    def test_uri_too_long_414(self):
        self.assertRejected(build_request("GET", "/" + "u" * 2000), 414, "uri_too_long")

    def test_uri_under_limit_ok(self):
        with RawConn(self.gw.address) as c:
            r = c.request("GET", "/" + "u" * 900)
            self.assertEqual(r.status, 200, r)

    def test_body_too_large_content_length_up_front(self):
        # Only the head is sent: the 413 must come from Content-Length alone.
        self.assertRejected(b"POST / HTTP/1.1\r\nHost: t\r\nContent-Length: 2048\r\n\r\n", 413,
                            "body_too_large")

    def test_body_too_large_with_expect_no_100(self):
        before = self.up.requests()
        with RawConn(self.gw.address) as c:
            c.send(b"POST / HTTP/1.1\r\nHost: t\r\nContent-Length: 2048\r\n"
                   b"Expect: 100-continue\r\n\r\n")
            r = c.read_response()
            self.assertEqual(r.status, 413, f"a 100 Continue invites a body that is refused: {r}")
        self.assertEqual(self.up.requests_since(before), 0)

    def test_body_at_limit_ok(self):
        with RawConn(self.gw.address) as c:
            r = c.request("POST", "/", body=b"b" * 1024)
            self.assertEqual(r.status, 200, r)
            self.assertEqual(r.json()["body_bytes"], 1024)

    def test_chunked_body_too_large(self):
        raw = (b"POST / HTTP/1.1\r\nHost: t\r\nTransfer-Encoding: chunked\r\n\r\n"
               + chunked(b"c" * 2048, 256))
        before = self.up.requests()
        before_metric = self.rejected("body_too_large")
        with RawConn(self.gw.address) as c:
            try:
                c.send(raw)
            except (BrokenPipeError, ConnectionResetError):
                pass
            r = c.read_response()
            self.assertEqual(r.status, 413, r)
            self.assertClosed(c)
        self.assertEqual(self.rejected("body_too_large") - before_metric, 1)
        # The head may have been streamed upstream already, but no complete request reached it.
        self.assertEqual(self.up.requests_since(before), 0)

    def test_header_timeout_408(self):
        before = self.up.requests()
        before_metric = self.rejected("header_timeout")
        with RawConn(self.gw.address, timeout=5) as c:
            t0 = time.monotonic()
            c.send(b"GET / HTTP/1.1\r\nHost: t\r\n")
            r = c.read_response()
            elapsed = time.monotonic() - t0
            self.assertEqual(r.status, 408, r)
            self.assertTrue(r.header("x-request-id"), r)
            self.assertClosed(c)
        self.assertGreaterEqual(elapsed, 0.8)
        self.assertLess(elapsed, 2.5)
        self.assertEqual(self.up.requests_since(before), 0)
        self.assertEqual(self.rejected("header_timeout") - before_metric, 1)

    def test_header_timeout_slowloris(self):
        # One byte every 100ms keeps the socket busy, but the head never completes within 1s.
        stop = threading.Event()
        with RawConn(self.gw.address, timeout=5) as c:
            def dribble():
                for b in b"GET / HTTP/1.1\r\nHost: t\r\nX-Slow: " + b"s" * 100:
                    if stop.wait(0.1):
                        return
                    try:
                        c.sock.send(bytes([b]))
                    except OSError:
                        return
            t = threading.Thread(target=dribble, daemon=True)
            t0 = time.monotonic()
            t.start()
            try:
                r = c.read_response()
            finally:
                stop.set()
                t.join(2)
            elapsed = time.monotonic() - t0
            self.assertEqual(r.status, 408, r)
            self.assertClosed(c)
        self.assertLess(elapsed, 2.5, "header_timeout must bound the whole head, not each read")

    def test_idle_keep_alive_closed(self):
        before_metric = self.rejected("idle_timeout")
        with RawConn(self.gw.address, timeout=10) as c:
            self.assertEqual(c.request("GET", "/").status, 200)
            t0 = time.monotonic()
            self.assertTrue(c.wait_closed(6), "idle connection not closed")
            elapsed = time.monotonic() - t0
            # Closed silently (no unsolicited response).
            self.assertEqual(bytes(c.buf), b"")
        self.assertGreaterEqual(elapsed, 1.5, "closed before idle_timeout (2s)")
        self.assertLess(elapsed, 4.5)
        self.assertEqual(self.rejected("idle_timeout") - before_metric, 1)

    def test_idle_timer_reset_by_activity(self):
        with RawConn(self.gw.address, timeout=10) as c:
            for _ in range(4):
                self.assertEqual(c.request("GET", "/").status, 200)
                time.sleep(1.0)  # 4s in total, each gap under idle_timeout (2s)
            self.assertEqual(c.request("GET", "/").status, 200)


class BodyPhaseTest(SluiceTestCase):
    """Vectors found only in the body (invalid chunk sizes): with the whole request in one
    write, not even the head may reach the upstream. The upstream here counts heads."""

    @classmethod
    def setUpClass(cls):
        super().setUpClass()

        def answer(sock, head):
            sock.sendall(b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\nConnection: close\r\n\r\nok")
            return False
        cls.fake = FakeUpstream(answer)
        cls.addClassCleanup(cls.fake.close)
        cls.gw = cls.class_gateway({
            "workers": 1,
            "limits": LIMITS,
            "services": [service("fake", cls.fake.address)],
            "routes": [route("all", "fake", path_prefix="/")],
        })

    def check(self, chunk_line):
        before = self.fake.requests
        raw = (b"POST / HTTP/1.1\r\nHost: t\r\nTransfer-Encoding: chunked\r\n\r\n"
               + chunk_line + b"\r\nhello\r\n0\r\n\r\n")
        with RawConn(self.gw.address) as c:
            c.send(raw)
            r = c.read_response()
            self.assertEqual(r.status, 400, r)
            self.assertClosed(c)
        time.sleep(0.1)
        self.assertEqual(self.fake.requests - before, 0, "the head was forwarded upstream")

    def test_positive_control(self):
        before = self.fake.requests
        with RawConn(self.gw.address) as c:
            r = c.request("GET", "/")
            self.assertEqual((r.status, r.body), (200, b"ok"))
        self.assertEqual(self.fake.requests - before, 1)

    def test_chunk_size_not_hex(self):
        self.check(b"zz")

    def test_chunk_size_negative(self):
        self.check(b"-1")

    def test_chunk_size_huge(self):
        self.check(b"ffffffffffffffffffffff")

    def test_chunk_size_with_space_before_extension_garbage(self):
        self.check(b"5 x")


if __name__ == "__main__":
    unittest.main()
