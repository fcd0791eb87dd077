"""Admin API (healthz, ready, metrics + promtool, config, stats, reload) and the --validate CLI."""

import json
import os
import re
import subprocess
import time
import unittest

from harness import (BIN, PROMTOOL, SluiceTestCase, RawConn, addr, free_port, http_request,
                     metric_sum, parse_metrics, route, service, to_yaml, validate, wait_until)

METRIC_FAMILIES = {
    "sluice_requests_total": "counter",
    "sluice_request_duration_seconds": "histogram",
    "sluice_upstream_requests_total": "counter",
    "sluice_upstream_errors_total": "counter",
    "sluice_upstream_retries_total": "counter",
    "sluice_downstream_connections_active": "gauge",
    "sluice_downstream_connections_total": "counter",
    "sluice_downstream_rejected_total": "counter",
    "sluice_config_reloads_total": "counter",
}


class AdminTest(SluiceTestCase):
    @classmethod
    def setUpClass(cls):
        super().setUpClass()
        cls.up = cls.class_sample("adm")
        cls.gw = cls.class_gateway({
            "workers": 2,
            "limits": {"max_header_bytes": 32768},
            "services": [service("adm", cls.up.address)],
            "routes": [route("adm-route", "adm", path_prefix="/")],
        })

    def test_healthz_and_ready(self):
        self.assertEqual(self.gw.admin_get("/healthz").status, 200)
        self.assertEqual(self.gw.admin_get("/ready").status, 200)

    def test_unknown_admin_path_404(self):
        self.assertEqual(self.gw.admin_get("/no-such-thing").status, 404)

    def test_admin_not_served_on_proxy_listener(self):
        r = http_request(self.gw.address, "GET", "/metrics")
        self.assertEqual(r.status, 200)
        self.assertEqual(r.json()["service"], "adm", "proxy listener answered an admin path")

    def test_metrics_content_type_and_families(self):
        http_request(self.gw.address, "GET", "/warm")
        r = self.gw.admin_get("/metrics")
        self.assertEqual(r.status, 200)
        self.assertTrue((r.header("content-type") or "").startswith("text/plain"), r.headers)
        text = r.body.decode()
        for name, kind in METRIC_FAMILIES.items():
            self.assertRegex(text, rf"(?m)^# TYPE {name} {kind}$", f"{name} not declared as {kind}")

    def test_promtool_check_metrics(self):
        # Traffic of several kinds first, so that most series exist.
        http_request(self.gw.address, "GET", "/a")
        http_request(self.gw.address, "GET", "/_sample/status/503")
        with RawConn(self.gw.address) as c:
            c.send(b"GET / HTTP/1.1\r\nHost: t\r\nContent-Length: 1\r\nContent-Length: 2\r\n\r\n")
            c.wait_closed(2)
        text = self.gw.metrics_text()
        p = subprocess.run([PROMTOOL, "check", "metrics"], input=text.encode(),
                           capture_output=True, timeout=30)
        self.assertEqual(p.returncode, 0, f"promtool check metrics failed:\n{p.stdout.decode()}"
                                          f"{p.stderr.decode()}")
        parse_metrics(text)  # and our own parser reads every line

    def test_request_metrics_counted_exactly(self):
        labels = {"listener": "public", "route": "adm-route", "service": "adm"}
        m0 = self.gw.metrics()
        ok0 = metric_sum(m0, "sluice_requests_total", code="2xx", **labels)
        err0 = metric_sum(m0, "sluice_requests_total", code="5xx", **labels)
        hist0 = metric_sum(m0, "sluice_request_duration_seconds_count", route="adm-route",
                           service="adm")
        up0 = metric_sum(m0, "sluice_upstream_requests_total", service="adm", code="2xx")
        with RawConn(self.gw.address) as c:
            for i in range(7):
                self.assertEqual(c.request("GET", f"/count/{i}").status, 200)
            for i in range(2):
                self.assertEqual(c.request("GET", "/_sample/status/500").status, 500)
        m1 = self.gw.metrics()
        self.assertEqual(metric_sum(m1, "sluice_requests_total", code="2xx", **labels) - ok0, 7)
        self.assertEqual(metric_sum(m1, "sluice_requests_total", code="5xx", **labels) - err0, 2)
        self.assertEqual(metric_sum(m1, "sluice_request_duration_seconds_count", route="adm-route",
                                    service="adm") - hist0, 9)
        self.assertEqual(metric_sum(m1, "sluice_upstream_requests_total", service="adm",
                                    code="2xx") - up0, 7)
        endpoints = {ls.get("endpoint") for n, ls, _ in m1
                     if n == "sluice_upstream_requests_total" and ls.get("service") == "adm"}
        self.assertTrue(any(e and self.up.address.split(":")[1] in e for e in endpoints),
                        f"endpoint label should name the upstream address: {endpoints}")

    def test_histogram_buckets_consistent(self):
        http_request(self.gw.address, "GET", "/_sample/delay/30")
        samples = self.gw.metrics()
        buckets = [(ls["le"], v) for n, ls, v in samples
                   if n == "sluice_request_duration_seconds_bucket"
                   and ls.get("route") == "adm-route"]
        self.assertTrue(buckets, "no histogram buckets for the route")
        self.assertEqual(buckets[-1][0], "+Inf")
        values = [v for _, v in buckets]
        self.assertEqual(values, sorted(values), "buckets must be cumulative")
        count = metric_sum(samples, "sluice_request_duration_seconds_count", route="adm-route")
        self.assertEqual(values[-1], count)
        total = metric_sum(samples, "sluice_request_duration_seconds_sum", route="adm-route")
        self.assertGreater(total, 0.025, "a 30ms request should show in the sum (seconds)")

    def test_config_json(self):
        r = self.gw.admin_get("/config")
        self.assertEqual(r.status, 200)
        body = r.json()
        cfg = body.get("config", body)  # the effective config, possibly wrapped with a version
        self.assertEqual([s["name"] for s in cfg["services"]], ["adm"])
        self.assertEqual([x["name"] for x in cfg["routes"]], ["adm-route"])
        self.assertEqual(cfg["limits"]["max_header_bytes"], 32768)
        self.assertIn("max_uri_bytes", cfg["limits"], "defaults should be filled in")
        self.assertEqual(cfg["listeners"][0]["name"], "public")

    def test_stats_json(self):
        r = self.gw.admin_get("/stats")
        self.assertEqual(r.status, 200)
        stats = r.json()
        self.assertIsInstance(stats, dict)
        self.assertIn("adm", json.dumps(stats), "stats should describe the services")
        self.assertEqual(stats["workers"], 2)
        self.assertIn(stats["io_backend"], ("io_uring", "epoll"))
        self.assertIn(f"2 worker(s) on {stats['io_backend']}", self.gw.log_text())

    def test_access_log_json_lines(self):
        rid = "access-log-check-4711"
        r = http_request(self.gw.address, "GET", "/logged?q=1", headers={"X-Request-Id": rid})
        self.assertEqual(r.status, 200)
        path = self.gw.config["access_log"]["path"]

        def find():
            with open(path) as f:
                lines = [l for l in f.read().splitlines() if l.strip()]
            entries = [json.loads(l) for l in lines]
            return [e for e in entries if rid in json.dumps(e)]
        entries = wait_until(find, 5, message="access log line with the request id")
        self.assertEqual(len(entries), 1)
        self.assertIn("200", json.dumps(entries[0]))


class IoBackendTest(SluiceTestCase):
    def launch(self, backend):
        up = self.sample("iob")
        cfg = {"services": [service("iob", up.address)],
               "routes": [route("iob", "iob", path_prefix="/")]}
        if backend:
            cfg["io_backend"] = backend
        return self.gateway(cfg)

    def check_serves(self, gw):
        for i in range(20):  # new client connections; the upstream one is pooled and reused
            r = http_request(gw.address, "POST", f"/x{i}", body=b"b" * (i * 1000))
            self.assertEqual(r.status, 200, r)
            self.assertEqual(r.json()["body_bytes"], i * 1000)

    def test_epoll_when_asked(self):
        gw = self.launch("epoll")
        self.assertEqual(gw.admin_get("/stats").json()["io_backend"], "epoll")
        self.check_serves(gw)

    def test_auto_uses_io_uring_or_says_why_not(self):
        gw = self.launch(None)
        used = gw.admin_get("/stats").json()["io_backend"]
        if used == "epoll":
            self.assertIn("io_uring unavailable:", gw.log_text())
        else:
            self.assertEqual(used, "io_uring")
            self.assertNotIn("unavailable", gw.log_text())
        self.check_serves(gw)

    def test_backend_cannot_change_on_reload(self):
        gw = self.launch("epoll")
        gw.write_config(dict(gw.config, io_backend="auto"))
        r = gw.reload()
        self.assertEqual(r.status, 400, r)
        self.assertIn("io_backend: cannot change on reload", json.dumps(r.json()))
        self.assertEqual(gw.admin_get("/stats").json()["io_backend"], "epoll")
        self.check_serves(gw)


class AccessLogTargetsTest(SluiceTestCase):
    def run_with(self, target):
        up = self.sample("alog")
        gw = self.gateway({"access_log": {"path": target, "format": "json"},
                           "services": [service("alog", up.address)],
                           "routes": [route("all", "alog", path_prefix="/")]})
        rid = f"alog-{target}-0001"
        self.assertEqual(http_request(gw.address, "GET", "/a", headers={"X-Request-Id": rid}).status,
                         200)
        return gw, rid

    def test_stdout(self):
        gw, rid = self.run_with("stdout")

        def find():
            lines = [l for l in gw.log_text("stdout").splitlines() if rid in l]
            return lines
        lines = wait_until(find, 5, message="access log line on stdout")
        self.assertEqual(len(lines), 1)
        json.loads(lines[0])

    def test_off(self):
        gw, rid = self.run_with("off")
        time.sleep(0.5)
        self.assertNotIn(rid, gw.log_text())


class ReloadTest(SluiceTestCase):
    def setUp(self):
        super().setUp()
        self.a = self.sample("reload-a")
        self.b = self.sample("reload-b")
        self.services = [service("reload-a", self.a.address), service("reload-b", self.b.address)]
        self.gw = self.gateway({
            "services": self.services,
            "routes": [route("v1", "reload-a", path_prefix="/v1")],
        })
        self.base = dict(self.gw.config)

    def reloads(self, result):
        return self.gw.metric("sluice_config_reloads_total", result=result)

    def test_invalid_reload_keeps_old_config(self):
        fail0 = self.reloads("failure")
        cfg = dict(self.base, routes=[route("v2", "no-such-service", path_prefix="/v2")])
        cfg["services"] = self.services + [{"name": "broken", "endpoints": [],
                                            "retry": {"attempts": 99}}]
        self.gw.write_config(cfg)
        r = self.gw.reload()
        self.assertEqual(r.status, 400, r)
        body = r.json()
        self.assertIn("error", body)
        self.assertIsInstance(body.get("errors"), list)
        self.assertGreaterEqual(len(body["errors"]), 2, f"all errors at once: {body}")
        text = json.dumps(body["errors"])
        self.assertIn("routes[0].service", text)
        self.assertIn("services[2].retry.attempts", text)
        # Old config still in force.
        r = http_request(self.gw.address, "GET", "/v1/x")
        self.assertEqual(r.status, 200, r)
        self.assertEqual(r.json()["service"], "reload-a")
        self.assertEqual(http_request(self.gw.address, "GET", "/v2/x").status, 404)
        cfg = self.gw.admin_get("/config").json()
        self.assertEqual([x["name"] for x in cfg.get("config", cfg)["routes"]], ["v1"])
        self.assertEqual(self.reloads("failure") - fail0, 1)

    def test_syntax_error_reload(self):
        self.gw.write_config("services: [\n  this is: not: yaml\n")
        r = self.gw.reload()
        self.assertEqual(r.status, 400, r)
        self.assertTrue(r.json().get("errors"), r)
        self.assertEqual(http_request(self.gw.address, "GET", "/v1/x").status, 200)

    def test_valid_reload_applies_and_versions(self):
        ok0 = self.reloads("success")
        versions = []
        for i, (svc, prefix) in enumerate([("reload-b", "/v2"), ("reload-a", "/v3")]):
            cfg = dict(self.base, routes=[route(f"r{i}", svc, path_prefix=prefix)])
            self.gw.write_config(cfg)
            r = self.gw.reload()
            self.assertEqual(r.status, 200, r)
            body = r.json()
            self.assertEqual(body.get("status"), "reloaded", body)
            self.assertIsInstance(body.get("version"), int, body)
            versions.append(body["version"])
            r = http_request(self.gw.address, "GET", f"{prefix}/x")
            self.assertEqual(r.status, 200, r)
            self.assertEqual(r.json()["service"], svc)
            self.assertEqual(http_request(self.gw.address, "GET", "/v1/x").status, 404)
        self.assertGreater(versions[1], versions[0])
        self.assertEqual(self.reloads("success") - ok0, 2)

    def test_reload_drops_the_series_of_what_it_removed(self):
        # reload-a gets a second endpoint (reload-b's sample), then loses it again.
        two = dict(self.base, services=[service("reload-a", self.a.address, self.b.address),
                                        self.services[1]],
                   routes=[route("v1", "reload-a", path_prefix="/v1"),
                           route("v9", "reload-b", path_prefix="/v9")])
        self.gw.write_config(two)
        self.assertEqual(self.gw.reload().status, 200)
        for i in range(20):
            self.assertEqual(http_request(self.gw.address, "GET", f"/v1/{i}").status, 200)
        self.assertEqual(http_request(self.gw.address, "GET", "/v9/x").status, 200)

        def served(endpoint):
            return self.gw.metric("sluice_upstream_requests_total", service="reload-a",
                                  endpoint=endpoint)
        kept = served(self.a.address)
        self.assertGreater(kept, 0)
        self.assertGreater(served(self.b.address), 0)
        self.gw.write_config(self.base)  # route v9 and reload-a's second endpoint are gone
        self.assertEqual(self.gw.reload().status, 200)

        def gone():
            text = self.gw.metrics_text()
            return ('route="v9"' not in text and
                    f'service="reload-a",endpoint="{self.b.address}"' not in text)
        wait_until(gone, 5, message="series of the removed endpoint and route dropped")
        # What stayed keeps its counts (no reset), and the exposition still passes promtool.
        self.assertEqual(served(self.a.address), kept)
        self.assertIn("sluice_config_reloads_total", self.gw.metrics_text())

    def test_reload_cannot_switch_to_a_control_plane(self):
        token = os.path.join(self.dir, "cp.token")
        with open(token, "w") as f:
            f.write("t\n")
        cfg = {k: v for k, v in self.base.items() if k not in ("services", "routes")}
        cfg["control_plane"] = {"address": "http://127.0.0.1:7070", "token_file": token,
                                "cache_dir": os.path.join(self.dir, "cache")}
        self.gw.write_config(cfg)
        r = self.gw.reload()
        self.assertEqual(r.status, 400, r)
        self.assertIn("control_plane: cannot change on reload", json.dumps(r.json()))


class ValidateCliTest(SluiceTestCase):
    def write(self, text, name="cfg.yaml"):
        path = os.path.join(self.dir, name)
        with open(path, "w") as f:
            f.write(text)
        return path

    def valid_config(self):
        return {
            "node": {"id": "v", "city": "a", "zone": "a1"},
            "workers": 1,
            "listeners": [{"name": "public", "address": addr(free_port())}],
            "admin": {"address": addr(free_port())},
            "services": [service("s", "127.0.0.1:9")],
            "routes": [route("r", "s", path_prefix="/")],
        }

    def test_listener_port_taken_is_a_clear_start_error(self):
        import socket
        taken = socket.socket(socket.AF_INET, socket.SOCK_STREAM)  # no SO_REUSEPORT: excludes
        self.addCleanup(taken.close)
        taken.bind(("127.0.0.1", 0))
        taken.listen(1)
        port = taken.getsockname()[1]
        cfg = self.valid_config()
        cfg["listeners"][0]["address"] = addr(port)
        path = self.write(to_yaml(cfg))
        r = subprocess.run([BIN, "gateway", "--config", path], capture_output=True, text=True,
                           timeout=20)
        self.assertEqual(r.returncode, 1, r.stderr)
        self.assertIn(f"cannot start: listener public (127.0.0.1:{port}): bind: ", r.stderr)
        self.assertIn("in use", r.stderr)

    def test_valid_config_ok(self):
        path = self.write(to_yaml(self.valid_config()))
        rc, out, err = validate(path)
        self.assertEqual(rc, 0, f"stdout={out!r} stderr={err!r}")
        self.assertIn("config OK", out + err)

    def test_example_configs_valid(self):
        import glob
        from harness import SOURCE_DIR
        files = [f for f in glob.glob(os.path.join(SOURCE_DIR, "examples", "*.yaml"))
                 if any(k in os.path.basename(f) for k in ("gateway", "governance", "dual-city"))]
        if not files:
            self.skipTest("no examples/*gateway*.yaml yet")
        for f in files:
            with self.subTest(file=f):
                rc, out, err = validate(f)
                self.assertEqual(rc, 0, f"{f}: {err}")

    def test_several_errors_at_once_with_file_line_and_path(self):
        text = (
            "node: {id: v1, city: a, zone: a1}\n"             # 1
            "workers: 1\n"                                      # 2
            "listeners:\n"                                      # 3
            "  - name: public\n"                                # 4
            "    address: not-an-address\n"                     # 5
            f"admin: {{address: {addr(free_port())}}}\n"        # 6
            "limits:\n"                                         # 7
            "  header_timeout: 5 parsecs\n"                     # 8
            "services:\n"                                       # 9
            "  - name: accounts\n"                              # 10
            "    endpoints:\n"                                  # 11
            "      - address: 127.0.0.1:9\n"                    # 12
            "    retry:\n"                                      # 13
            "      attempts: 99\n"                              # 14
            "    health_check: {interval: 1ms}\n"               # 15
            "routes:\n"                                         # 16
            "  - name: r1\n"                                    # 17
            "    match: {path_prefix: /}\n"                     # 18
            "    service: nope\n"                               # 19
            "rate_limits: [{name: x, limit: {requests: 0}}]\n"  # 20
        )
        path = self.write(text)
        rc, out, err = validate(path)
        self.assertNotEqual(rc, 0, f"invalid config accepted: {out}{err}")
        expected = [
            (5, "listeners[0].address"),
            (8, "limits.header_timeout"),
            (14, "services[0].retry.attempts"),
            (15, "services[0].health_check.interval"),
            (19, "routes[0].service"),
            (20, "rate_limits[0].limit.requests"),
        ]
        for line, key in expected:
            with self.subTest(key=key):
                self.assertRegex(err, rf"(?m)^{re.escape(path)}:{line}: {re.escape(key)}: \S",
                                 f"missing error for {key} at line {line}; stderr:\n{err}")
        self.assertNotIn("config OK", out + err)

    def test_control_plane_file_errors(self):
        # With control_plane, services and routes come from the control plane, not the file.
        cfg = self.valid_config()
        cfg["control_plane"] = {"address": "http://127.0.0.1:7070",
                                "token_file": os.path.join(self.dir, "missing.token"),
                                "cache_dir": self.dir}
        rc, out, err = validate(self.write(to_yaml(cfg), "cp.yaml"))
        self.assertEqual(rc, 1, out + err)
        for key in ("services", "routes"):
            self.assertRegex(err, rf":\d+: {key}: comes from the control plane")
        self.assertRegex(err, r":\d+: control_plane.token_file: cannot read the token: .*"
                              r"missing.token: No such file")
        self.assertNotIn("config OK", out + err)

    def test_unknown_key_rejected(self):
        cfg = self.valid_config()
        cfg["listners"] = []
        cfg["services"][0]["retyr"] = {"attempts": 1}
        path = self.write(to_yaml(cfg))
        rc, out, err = validate(path)
        self.assertNotEqual(rc, 0, "a misspelt key was silently ignored")
        # Same "FILE:LINE: key.path: message" shape as every other error.
        self.assertRegex(err, rf"(?m)^{re.escape(path)}:\d+: listners: \S", err)
        self.assertRegex(err, rf"(?m)^{re.escape(path)}:\d+: services\[0\](\.retyr)?: .*retyr", err)

    def test_cross_field_errors(self):
        cfg = self.valid_config()
        cfg["services"].append(service("s", "127.0.0.1:10"))  # duplicate service name
        cfg["routes"].append(route("r", "s", path_prefix="/x"))  # duplicate route name
        cfg["services"][0]["load_balancer"] = {"policy": "ring_hash"}  # no hash_on
        cfg["services"][0]["retry"] = {"attempts": 1, "on": ["sometimes"]}
        rc, out, err = validate(self.write(to_yaml(cfg)))
        self.assertNotEqual(rc, 0)
        for key in ("services[1].name", "routes[1].name", "services[0].retry.on"):
            with self.subTest(key=key):
                self.assertRegex(err, rf":\d+: {re.escape(key)}")

    def test_yaml_syntax_error_names_line(self):
        path = self.write("workers: 1\nlisteners:\n  - name: [unclosed\n")
        rc, out, err = validate(path)
        self.assertNotEqual(rc, 0)
        self.assertRegex(err, rf"{re.escape(path)}:\d+:")

    def test_missing_file(self):
        rc, out, err = validate(os.path.join(self.dir, "does-not-exist.yaml"))
        self.assertNotEqual(rc, 0)
        self.assertIn("does-not-exist.yaml", err)

    def test_gateway_refuses_to_start_with_invalid_config(self):
        cfg = self.valid_config()
        cfg["services"][0]["retry"] = {"attempts": 99}
        path = self.write(to_yaml(cfg))
        p = subprocess.run([BIN, "gateway", "--config", path], capture_output=True, timeout=10)
        self.assertNotEqual(p.returncode, 0)
        self.assertIn("services[0].retry.attempts", p.stderr.decode())


TOKEN = "t0k3n-" + "a" * 40
OTHER_TOKEN = "t0k3n-" + "b" * 40


def write_token(path, token, mode=0o600):
    with open(path, "w") as f:
        f.write(token + "\n")
    os.chmod(path, mode)
    return path


def units_section():
    return {"key": "header:x-customer-id", "shards": 100, "owners": {"a": "0-49", "b": "50-99"},
            "protect": True}


class AdminTokenTest(SluiceTestCase):
    """admin.token_file: a bearer token for writes and for the GETs that reveal config or state."""

    def setUp(self):
        super().setUp()
        self.up = self.sample("tok")
        self.token_file = write_token(os.path.join(self.dir, "admin.token"), TOKEN)
        self.gw = self.gateway({
            "admin": {"address": addr(free_port()), "token_file": self.token_file},
            "services": [service("tok", self.up.address)],
            "routes": [route("tok", "tok", path_prefix="/")],
            "units": units_section(),
        })

    def call(self, method, path, token=None, body=None, headers=None):
        h = dict(headers or {})
        if token is not None:
            h["Authorization"] = f"Bearer {token}"
        return http_request(self.gw.admin, method, path, headers=h,
                            body=body if body is not None else (b"" if method == "POST" else None))

    def test_protected_paths_need_the_token(self):
        refused0 = self.gw.metric("sluice_admin_requests_refused_total", reason="token")
        for method, path in (("GET", "/config"), ("GET", "/stats"), ("GET", "/units"),
                             ("POST", "/reload"), ("POST", "/drain"),
                             ("POST", "/units/switch")):
            for token in (None, OTHER_TOKEN, TOKEN[:-1], ""):
                with self.subTest(method=method, path=path, token=token):
                    r = self.call(method, path, token=token)
                    self.assertEqual(r.status, 401, r)
                    self.assertIn("token", r.json()["error"])
                    self.assertTrue((r.header("www-authenticate") or "").startswith("Bearer"), r)
        # Nothing happened: still serving, same config version, same ownership.
        self.assertEqual(http_request(self.gw.address, "GET", "/x").status, 200)
        self.assertEqual(self.gw.admin_get("/ready").json()["version"], 1)
        self.assertEqual(self.call("GET", "/units", token=TOKEN).json()["owners"],
                         {"a": "0-49", "b": "50-99"})
        self.assertEqual(
            self.gw.metric("sluice_admin_requests_refused_total", reason="token") - refused0, 24)

    def test_open_paths_and_the_right_token(self):
        for path in ("/healthz", "/ready", "/metrics"):
            self.assertEqual(self.gw.admin_get(path).status, 200, path)
        self.assertEqual(self.call("GET", "/config", token=TOKEN).status, 200)
        self.assertEqual(self.call("GET", "/stats", token=TOKEN).status, 200)
        r = self.call("POST", "/reload", token=TOKEN)
        self.assertEqual(r.status, 200, r)
        self.assertEqual(r.json()["version"], 2)
        # The scheme is case-insensitive; the token is not.
        r = self.call("GET", "/stats", headers={"Authorization": f"bearer {TOKEN}"})
        self.assertEqual(r.status, 200, r)
        r = self.call("GET", "/stats", headers={"Authorization": f"Bearer {TOKEN.upper()}"})
        self.assertEqual(r.status, 401, r)
        # /config names the token file, never the token.
        body = self.call("GET", "/config", token=TOKEN).body.decode()
        self.assertIn(self.token_file, body)
        self.assertNotIn(TOKEN, body)

    def test_token_rotates_on_reload(self):
        write_token(self.token_file, OTHER_TOKEN)
        self.assertEqual(self.call("POST", "/reload", token=TOKEN).status, 200)
        self.assertEqual(self.call("GET", "/stats", token=TOKEN).status, 401)
        self.assertEqual(self.call("GET", "/stats", token=OTHER_TOKEN).status, 200)

    def test_switch_command_takes_the_token(self):
        argv = [BIN, "gateway", "switch", "--admin", self.gw.admin, "--from", "a", "--to", "b",
                "--shards", "0-9"]
        env = {k: v for k, v in os.environ.items() if not k.startswith("SLUICE_")}
        p = subprocess.run(argv, capture_output=True, text=True, timeout=30, env=env)
        self.assertEqual(p.returncode, 1, p.stderr)
        self.assertIn("--admin-token-file", p.stderr)
        p = subprocess.run(argv + ["--admin-token-file", self.token_file], capture_output=True,
                           text=True, timeout=30, env=env)
        self.assertEqual(p.returncode, 0, p.stderr)
        self.assertEqual(self.call("GET", "/units", token=TOKEN).json()["owners"],
                         {"a": "10-49", "b": "0-9,50-99"})
        argv[-1] = "10-19"
        p = subprocess.run(argv, capture_output=True, text=True, timeout=30,
                           env=dict(env, SLUICE_ADMIN_TOKEN=TOKEN))
        self.assertEqual(p.returncode, 0, p.stderr)
        self.assertEqual(self.call("GET", "/units", token=TOKEN).json()["owners"]["a"], "20-49")


class AdminTokenFileRulesTest(SluiceTestCase):
    def config(self, admin):
        return {"node": {"id": "rules", "city": "a", "zone": "a1"}, "workers": 1,
                "listeners": [{"name": "public", "address": addr(free_port())}],
                "admin": admin,
                "services": [service("s", "127.0.0.1:9")],
                "routes": [route("r", "s", path_prefix="/")]}

    def check(self, admin):
        path = os.path.join(self.dir, "gw.yaml")
        with open(path, "w") as f:
            f.write(to_yaml(self.config(admin)))
        return validate(path)

    def test_non_loopback_admin_needs_a_token_file(self):
        for host in ("0.0.0.0", "", "[::]"):
            with self.subTest(host=host):
                rc, out, err = self.check({"address": f"{host}:{free_port()}"})
                self.assertEqual(rc, 1, out + err)
                self.assertRegex(err, r"gw\.yaml:\d+: admin\.token_file: required when "
                                      r"admin\.address \(.*\) is not a loopback address")
        token = write_token(os.path.join(self.dir, "t"), TOKEN)
        rc, out, err = self.check({"address": f"0.0.0.0:{free_port()}", "token_file": token})
        self.assertEqual(rc, 0, err)
        rc, out, err = self.check({"address": f"127.0.0.2:{free_port()}"})
        self.assertEqual(rc, 0, err)  # loopback: the token is optional

    def test_bad_token_files(self):
        short = write_token(os.path.join(self.dir, "short"), "x" * 31)
        empty = write_token(os.path.join(self.dir, "empty"), "  ")
        spaced = write_token(os.path.join(self.dir, "spaced"), "a" * 20 + " " + "b" * 20)
        for path, message in ((short, "has 31 characters; it must have 32..512"),
                              (empty, "is empty"),
                              (spaced, "printable ASCII without spaces"),
                              (os.path.join(self.dir, "missing"), "No such file"),
                              (self.dir, "not a regular file")):
            with self.subTest(path=path):
                rc, out, err = self.check({"address": addr(free_port()), "token_file": path})
                self.assertEqual(rc, 1, out + err)
                self.assertRegex(err, r"gw\.yaml:\d+: admin\.token_file: ")
                self.assertIn(message, err)

    def test_readable_by_others_is_a_warning(self):
        loose = write_token(os.path.join(self.dir, "loose"), TOKEN, mode=0o644)
        rc, out, err = self.check({"address": addr(free_port()), "token_file": loose})
        self.assertEqual(rc, 0, err)
        self.assertIn("readable by group or others (mode 0644)", err)
        tight = write_token(os.path.join(self.dir, "tight"), TOKEN, mode=0o600)
        rc, out, err = self.check({"address": addr(free_port()), "token_file": tight})
        self.assertEqual(rc, 0, err)
        self.assertNotIn("readable by", err)

    def test_no_token_on_loopback_is_warned_at_start(self):
        gw = self.gateway(self.config({"address": addr(free_port())}))
        self.assertIn("has no admin.token_file", gw.log_text())


class AdminBrowserTest(SluiceTestCase):
    """Cross-origin browser requests and DNS rebinding: Origin and Host must name the admin
    listener (no token configured here: loopback, as in the demo)."""

    def setUp(self):
        super().setUp()
        self.up = self.sample("brw")
        self.port = free_port()
        self.gw = self.gateway({
            "admin": {"address": addr(self.port),
                      "allowed_hosts": ["gw-a1.bank.example", "ops.bank.example:8443"]},
            "services": [service("brw", self.up.address)],
            "routes": [route("brw", "brw", path_prefix="/")],
            "units": units_section(),
        })

    def raw(self, method, path, host, origin=None, body=b"", content_type=None):
        lines = [f"{method} {path} HTTP/1.1"]
        if host is not None:
            lines.append(f"Host: {host}")
        if origin is not None:
            lines.append(f"Origin: {origin}")
        if content_type:
            lines.append(f"Content-Type: {content_type}")
        if method == "POST":
            lines.append(f"Content-Length: {len(body)}")
        with RawConn(self.gw.admin) as c:
            c.send(("\r\n".join(lines) + "\r\n\r\n").encode() + body)
            return c.read_response(method)

    def owners(self):
        return self.gw.admin_get("/units").json()["owners"]

    def test_cross_origin_posts_change_nothing(self):
        here = f"127.0.0.1:{self.port}"
        evil = "http://evil.example"
        switch = b'{"from":"a","to":"b","shards":"0-49"}'
        r = self.raw("POST", "/units/switch", here, evil, switch, "text/plain")
        self.assertEqual(r.status, 403, r)
        self.assertIn("Origin", json.loads(r.body)["error"])
        self.assertEqual(self.owners(), {"a": "0-49", "b": "50-99"})
        r = self.raw("POST", "/reload", here, evil, b"", "text/plain")
        self.assertEqual(r.status, 403, r)
        self.assertEqual(self.gw.admin_get("/ready").json()["version"], 1)
        for origin in (evil, "null", f"http://127.0.0.1:{self.port + 1}", f"https://evil.example",
                       f"http://localhost.evil.example:{self.port}"):
            with self.subTest(origin=origin):
                r = self.raw("POST", "/drain", here, origin, b"", "text/plain")
                self.assertEqual(r.status, 403, r)
        self.assertEqual(self.gw.admin_get("/ready").status, 200, "drained by a cross-origin POST")
        self.assertTrue(self.gw.alive())
        self.assertEqual(http_request(self.gw.address, "GET", "/x").status, 200)
        self.assertGreaterEqual(
            self.gw.metric("sluice_admin_requests_refused_total", reason="origin"), 7)

    def test_same_origin_is_allowed(self):
        for origin in (f"http://127.0.0.1:{self.port}", f"http://localhost:{self.port}",
                       "http://gw-a1.bank.example:9999", "https://ops.bank.example:8443"):
            with self.subTest(origin=origin):
                r = self.raw("GET", "/config", f"127.0.0.1:{self.port}", origin)
                self.assertEqual(r.status, 200, r)
        r = self.raw("POST", "/units/switch", f"127.0.0.1:{self.port}",
                     f"http://127.0.0.1:{self.port}", b'{"from":"a","to":"b","shards":"0-9"}',
                     "application/json")
        self.assertEqual(r.status, 200, r)

    def test_host_must_name_the_admin_listener(self):
        for host in ("evil.example", f"evil.example:{self.port}", f"127.0.0.1:{self.port + 1}",
                     f"10.0.0.1:{self.port}", "ops.bank.example:9999", "", None):
            for path in ("/config", "/stats", "/metrics", "/units"):
                with self.subTest(host=host, path=path):
                    r = self.raw("GET", path, host)
                    self.assertIn(r.status, (400, 403), r)
                    if r.status == 403:
                        self.assertIn("Host", json.loads(r.body)["error"])
        r = self.raw("POST", "/reload", f"rebound.evil.example:{self.port}")
        self.assertEqual(r.status, 403, r)
        self.assertEqual(self.gw.admin_get("/ready").json()["version"], 1)
        for host in (f"127.0.0.1:{self.port}", f"localhost:{self.port}", f"LOCALHOST:{self.port}",
                     "gw-a1.bank.example", f"gw-a1.bank.example:{self.port}",
                     "ops.bank.example:8443"):
            with self.subTest(host=host):
                self.assertEqual(self.raw("GET", "/config", host).status, 200)
        # Health checks of load balancers often send another Host, or none.
        for path in ("/healthz", "/ready"):
            self.assertEqual(self.raw("GET", path, "evil.example").status, 200)
        self.assertGreaterEqual(
            self.gw.metric("sluice_admin_requests_refused_total", reason="host"), 20)

    def test_hostile_bytes_in_host_and_origin(self):
        # Quoted back in the JSON error: bytes that are not UTF-8 must not break the encoder
        # (an exception there would end the gateway).
        with RawConn(self.gw.admin) as c:
            c.send(b"GET /config HTTP/1.1\r\nHost: ev\xff\xfeil\r\n\r\n")
            r = c.read_response("GET")
        self.assertIn(r.status, (400, 403), r)
        with RawConn(self.gw.admin) as c:
            c.send(f"POST /drain HTTP/1.1\r\nHost: 127.0.0.1:{self.port}\r\n".encode() +
                   b"Origin: http://\xc3\x28\xff.example\r\nContent-Length: 0\r\n\r\n")
            r = c.read_response("POST")
        self.assertIn(r.status, (400, 403), r)
        if r.status == 403:
            json.loads(r.body)
        self.assertTrue(self.gw.alive())
        self.assertEqual(self.gw.admin_get("/ready").status, 200)

    def test_bad_allowed_hosts_entry(self):
        cfg = dict(self.gw.config)
        cfg["admin"] = {"address": addr(free_port()), "allowed_hosts": ["ok.example", "bad host/x"]}
        path = os.path.join(self.dir, "bad.yaml")
        with open(path, "w") as f:
            f.write(to_yaml(cfg))
        rc, out, err = validate(path)
        self.assertEqual(rc, 1, out + err)
        self.assertRegex(err, r":\d+: admin\.allowed_hosts\[1\]: expected a host name")


if __name__ == "__main__":
    unittest.main()
