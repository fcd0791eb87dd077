"""Request paths are normalised before routing (docs/config.md#http): dot segments, encoded
unreserved characters and repeated slashes cannot take a request past a route's method list or
out of a strip_prefix; ambiguous paths are refused with a JSON 400. A recording fake backend
shows exactly what went upstream."""

import json
import os
import threading
import unittest

from harness import (FakeUpstream, RawConn, SluiceTestCase, http_request, route, service, validate,
                     wait_until)


class Recorder:
    """A fake backend that records each request line and answers 200 with the target."""

    def __init__(self):
        self.lines = []
        self._lock = threading.Lock()
        self.fake = FakeUpstream(self._answer)
        self.address = self.fake.address

    def _answer(self, sock, head):
        line = head.split(b"\r\n", 1)[0].decode("latin-1")
        with self._lock:
            self.lines.append(line)
        body = line.encode("latin-1")
        sock.sendall(b"HTTP/1.1 200 OK\r\nContent-Length: %d\r\n\r\n%s" % (len(body), body))

    def targets(self):
        with self._lock:
            return [l.split(" ")[1] for l in self.lines]

    def count(self):
        with self._lock:
            return len(self.lines)

    def close(self):
        self.fake.close()


def path_config(recorder, http=None, rate_limits=None):
    config = {
        "services": [service("backend", recorder.address)],
        "routes": [
            route("admin", "backend", path_prefix="/admin", methods=["GET"]),
            route("api", "backend", path_prefix="/api", strip_prefix="/api"),
            route("public", "backend", path_prefix="/public"),
        ],
    }
    if http is not None:
        config["http"] = http
    if rate_limits is not None:
        config["rate_limits"] = rate_limits
    return config


def with_http(gw, http):
    """The gateway's own config (listeners, admin...) with `http` in place, written out."""
    config = dict(gw.config)
    config["http"] = http
    gw.write_config(config)


def raw(gw, method, target, body=b""):
    """One request with the target sent byte for byte (http.client would re-quote it)."""
    with RawConn(gw.address) as c:
        return c.request(method, target, body=body)


class DefectsTest(SluiceTestCase):
    """The two reproduced defects of issue 12, through a real gateway."""

    @classmethod
    def setUpClass(cls):
        super().setUpClass()
        cls.rec = Recorder()
        cls.gw = cls.class_gateway(path_config(cls.rec))

    @classmethod
    def tearDownClass(cls):
        super().tearDownClass()
        cls.rec.close()

    def forwarded(self, method, target):
        before = self.rec.count()
        r = raw(self.gw, method, target)
        self.assertEqual(r.status, 200, r)
        wait_until(lambda: self.rec.count() > before, 5, message="request reached the backend")
        return self.rec.targets()[-1]

    def test_dot_segments_cannot_reach_a_route_past_its_methods(self):
        before = self.rec.count()
        r = raw(self.gw, "POST", "/public/../admin/delete")
        body = self.assertGatewayError(r, 404)
        self.assertIn("no route", body["error"])
        r = raw(self.gw, "POST", "/public/%2e%2e/admin/delete")
        self.assertGatewayError(r, 404)
        r = raw(self.gw, "POST", "/public/.%2E/admin/delete")
        self.assertGatewayError(r, 404)
        r = raw(self.gw, "POST", "//admin/delete")
        self.assertGatewayError(r, 404)
        r = raw(self.gw, "POST", "/%61dmin/delete")
        self.assertGatewayError(r, 404)
        self.assertEqual(self.rec.count(), before, self.rec.targets())
        # GET is what the admin route allows, and it is forwarded in normal form.
        self.assertEqual(self.forwarded("GET", "/public/../admin/delete"), "/admin/delete")

    def test_strip_prefix_cannot_be_climbed_out_of(self):
        # Was: "/api/../admin" matched /api and went upstream as "/../admin".
        self.assertEqual(self.forwarded("GET", "/api/../admin"), "/admin")
        self.assertEqual(self.forwarded("GET", "/api/%2e%2e/admin"), "/admin")
        self.assertEqual(self.forwarded("GET", "/api/x/../v1/./y"), "/v1/y")
        self.assertEqual(self.forwarded("GET", "/api//v1"), "/v1")

    def test_query_string_is_forwarded_untouched(self):
        self.assertEqual(self.forwarded("GET", "/public/./x/%7e?a=%2e%2e/../&b=%2f;c"),
                         "/public/x/~?a=%2e%2e/../&b=%2f;c")

    def test_escapes_kept_are_upper_cased(self):
        self.assertEqual(self.forwarded("GET", "/public/a%3bb%20c%c3%a9"),
                         "/public/a%3Bb%20c%C3%A9")

    def test_normal_paths_are_forwarded_unchanged(self):
        self.assertEqual(self.forwarded("GET", "/public/a/b.c/..d/~x"), "/public/a/b.c/..d/~x")
        self.assertEqual(self.forwarded("GET", "/public/"), "/public/")


class RefusalsTest(SluiceTestCase):
    @classmethod
    def setUpClass(cls):
        super().setUpClass()
        cls.rec = Recorder()
        cls.gw = cls.class_gateway(path_config(cls.rec))

    @classmethod
    def tearDownClass(cls):
        super().tearDownClass()
        cls.rec.close()

    def test_ambiguous_paths_get_a_json_400_and_reach_nothing(self):
        cases = {
            "/..": "above the root",
            "/public/../../admin": "above the root",
            "/%2e%2e/admin": "above the root",
            "/public/a%2Fb": "encoded slash",
            "/public/a%2fb": "encoded slash",
            "/public%2F..%2Fadmin": "encoded slash",
            "/public/a%5cb": "encoded slash",
            "/admin%00.jpg": "control character",
            "/public/a%0d%0aX-Injected:%201": "control character",
            "/public/%zz": "percent-escape",
            "/public/%4": "percent-escape",
            "/public/a%": "percent-escape",
            "/public;jsessionid=1": "';'",
            "/public/..;/admin": "dot segment with parameters",
        }
        before_rejected = self.gw.metric("sluice_downstream_rejected_total", reason="bad_path")
        before = self.rec.count()
        for target, why in cases.items():
            with self.subTest(target=target):
                r = raw(self.gw, "GET", target)
                body = self.assertGatewayError(r, 400)
                self.assertIn(why, body["error"])
                self.assertEqual(body.get("code"), "BAD_PATH", body)
        self.assertEqual(self.rec.count(), before, self.rec.targets())
        wait_until(lambda: self.gw.metric("sluice_downstream_rejected_total", reason="bad_path")
                   >= before_rejected + len(cases), 5, message="bad_path rejections counted")

    def test_raw_backslash_is_refused(self):
        before = self.rec.count()
        r = raw(self.gw, "GET", "/public\\..\\admin")
        body = self.assertGatewayError(r, 400)
        self.assertEqual(body.get("code"), "BAD_PATH", body)
        self.assertIn("backslash", body["error"])
        self.assertEqual(self.rec.count(), before)

    def test_refusal_keeps_the_connection_usable(self):
        with RawConn(self.gw.address) as c:
            r = c.request("GET", "/public/%2e%2e/%2e%2e/x")
            self.assertGatewayError(r, 400)
            r = c.request("GET", "/public/ok")
            self.assertEqual(r.status, 200, r)


class AccessLogAndKeysTest(SluiceTestCase):
    def test_access_log_has_the_normal_path_and_the_original(self):
        rec = Recorder()
        self.addCleanup(rec.close)
        gw = self.gateway(path_config(rec))
        self.assertEqual(raw(gw, "GET", "/public/./a/../b?q=%2e").status, 200)
        self.assertEqual(raw(gw, "GET", "/public/plain").status, 200)
        log = gw.config["access_log"]["path"]

        def lines():
            if not os.path.exists(log):
                return None
            with open(log) as f:
                entries = [json.loads(l) for l in f if l.strip()]
            return entries if len(entries) >= 2 else None

        entries = wait_until(lines, 5, message="access log lines")
        # Each worker writes its own buffer: lines need not be in request order.
        first = next(e for e in entries if e["path"].startswith("/public/b"))
        second = next(e for e in entries if e["path"] == "/public/plain")
        self.assertEqual(first["path"], "/public/b?q=%2e")
        self.assertEqual(first["original_path"], "/public/./a/../b?q=%2e")
        self.assertEqual(first["route"], "public")
        self.assertEqual(second["path"], "/public/plain")
        self.assertNotIn("original_path", second)
        self.assertGreaterEqual(gw.metric("sluice_request_paths_normalized_total"), 1)

    def test_rate_limit_sees_one_path_however_it_is_spelled(self):
        rec = Recorder()
        self.addCleanup(rec.close)
        rules = [{"name": "admin-per-path", "match": {"routes": ["admin"]}, "key": ["route"],
                  "limit": {"requests": 2, "per": "1m"}, "algorithm": "sliding_window"}]
        gw = self.gateway(path_config(rec, rate_limits=rules))
        statuses = [raw(gw, "GET", t).status
                    for t in ("/admin/x", "/public/../admin/x", "//admin/x", "/%61dmin/x")]
        self.assertEqual(statuses, [200, 200, 429, 429])
        self.assertEqual(rec.targets(), ["/admin/x", "/admin/x"])


class OptionsTest(SluiceTestCase):
    def test_options_turn_parts_off_and_reload_applies_them(self):
        rec = Recorder()
        self.addCleanup(rec.close)
        gw = self.gateway(path_config(rec))
        self.assertGatewayError(raw(gw, "GET", "/public/a%2fb"), 400)
        self.assertGatewayError(raw(gw, "GET", "/public/a;v=1"), 400)

        with_http(gw, {"escaped_slashes": "keep", "merge_slashes": False,
                       "path_parameters": "keep"})
        self.assertEqual(gw.reload().status, 200)
        self.assertEqual(raw(gw, "GET", "/public/a%2fb").status, 200)
        self.assertEqual(raw(gw, "GET", "/public//c").status, 200)
        self.assertEqual(raw(gw, "GET", "/public/a;v=1").status, 200)
        # A dot segment with parameters stays refused whatever the options.
        self.assertGatewayError(raw(gw, "GET", "/public/..;/admin"), 400)
        self.assertEqual(rec.targets(), ["/public/a%2Fb", "/public//c", "/public/a;v=1"])

        with_http(gw, {"escaped_slashes": "unescape"})
        self.assertEqual(gw.reload().status, 200)
        r = raw(gw, "GET", "/public%2F..%2Fadmin%2Fx")
        self.assertEqual(r.status, 200, r)
        self.assertEqual(rec.targets()[-1], "/admin/x")
        self.assertGatewayError(raw(gw, "POST", "/public%2F..%2Fadmin%2Fx"), 404)

        config = gw.admin_get("/config").json()["config"]
        self.assertEqual(config["http"], {"normalize_path": True, "merge_slashes": True,
                                          "escaped_slashes": "unescape",
                                          "path_parameters": "reject"})

    def test_a_bad_reload_is_refused_and_the_rules_stay(self):
        rec = Recorder()
        self.addCleanup(rec.close)
        gw = self.gateway(path_config(rec))
        with_http(gw, {"escaped_slashes": "decode"})
        r = gw.reload()
        self.assertNotEqual(r.status, 200)
        self.assertIn(b"http.escaped_slashes", r.body)
        self.assertGatewayError(raw(gw, "GET", "/public/a%2fb"), 400)

    def test_route_paths_that_can_never_match_fail_validation(self):
        rec = Recorder()
        self.addCleanup(rec.close)
        config = path_config(rec)
        config["routes"].append(route("dead", "backend", path_prefix="/a//b"))
        config["listeners"] = [{"name": "public", "address": "127.0.0.1:1"}]
        path = os.path.join(self.dir, "bad.yaml")
        from harness import to_yaml
        with open(path, "w") as f:
            f.write(to_yaml(config))
        code, _, err = validate(path)
        self.assertEqual(code, 1, err)
        self.assertRegex(err, r"bad\.yaml:\d+: routes\[3\]\.match\.path_prefix: '/a//b' can never "
                              r"match: request paths are normalised first \(see http\); write '/a/b'")


if __name__ == "__main__":
    unittest.main()
