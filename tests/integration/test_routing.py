"""Router: hosts (exact and *.suffix), exact path, prefix, methods, headers, strip_prefix,
prefix_rewrite, first match wins, 404 when nothing matches."""

import unittest

from harness import SluiceTestCase, RawConn, http_request, route, service


class RoutingTest(SluiceTestCase):
    @classmethod
    def setUpClass(cls):
        super().setUpClass()
        cls.a = cls.class_sample("svc-a")
        cls.b = cls.class_sample("svc-b")
        cls.c = cls.class_sample("svc-c")
        cls.h = cls.class_sample("svc-host")
        cls.w = cls.class_sample("svc-wild")
        services = [service("svc-a", cls.a.address), service("svc-b", cls.b.address),
                    service("svc-c", cls.c.address), service("svc-host", cls.h.address),
                    service("svc-wild", cls.w.address)]
        routes = [
            route("r-host-exact", "svc-host", hosts=["api.example.com"], path_prefix="/"),
            route("r-host-wild", "svc-wild", hosts=["*.wild.test"], path_prefix="/"),
            route("r-exact", "svc-a", path="/exact"),
            route("r-methods", "svc-b", path_prefix="/m", methods=["POST", "PUT"]),
            route("r-header", "svc-b", path_prefix="/h", headers={"x-channel": "mobile"}),
            route("r-header-default", "svc-c", path_prefix="/h"),
            route("r-strip", "svc-a", strip_prefix="/api", path_prefix="/api/accounts"),
            route("r-rewrite", "svc-b", strip_prefix="/old", prefix_rewrite="/new",
                  path_prefix="/old"),
            route("r-first", "svc-a", path_prefix="/order"),
            route("r-second", "svc-b", path_prefix="/order/more"),
            route("r-catch", "svc-c", path_prefix="/catch"),
        ]
        cls.gw = cls.class_gateway({"services": services, "routes": routes})

    def get(self, path, host="plain.test", method="GET", headers=None, body=None):
        h = {"Host": host}
        h.update(headers or {})
        return http_request(self.gw.address, method, path, headers=h, body=body)

    def assertRouted(self, resp, service_name, path=None):
        self.assertEqual(resp.status, 200, resp)
        j = resp.json()
        self.assertEqual(j["service"], service_name, resp)
        if path is not None:
            self.assertEqual(j["path"], path, resp)
        return j

    def test_exact_path(self):
        self.assertRouted(self.get("/exact"), "svc-a", "/exact")

    def test_exact_path_does_not_match_longer_path(self):
        r = self.get("/exact/more")
        self.assertGatewayError(r, 404)
        r = self.get("/exactly")
        self.assertGatewayError(r, 404)

    def test_exact_path_ignores_query(self):
        j = self.assertRouted(self.get("/exact?x=1&y=2"), "svc-a", "/exact")
        self.assertEqual(j.get("query"), "x=1&y=2")

    def test_host_exact(self):
        self.assertRouted(self.get("/anything", host="api.example.com"), "svc-host", "/anything")

    def test_host_exact_with_port(self):
        # Clients send "Host: name:port" whenever the port is not the default one.
        self.assertRouted(self.get("/anything", host="api.example.com:8080"), "svc-host")

    def test_host_case_insensitive(self):
        self.assertRouted(self.get("/anything", host="API.Example.COM"), "svc-host")

    def test_host_exact_does_not_match_subdomain(self):
        self.assertGatewayError(self.get("/anything", host="x.api.example.com"), 404)

    def test_host_wildcard(self):
        self.assertRouted(self.get("/w", host="foo.wild.test"), "svc-wild", "/w")
        self.assertRouted(self.get("/w", host="a.b.wild.test"), "svc-wild", "/w")

    def test_host_wildcard_does_not_match_bare_suffix(self):
        self.assertGatewayError(self.get("/w", host="wild.test"), 404)
        self.assertGatewayError(self.get("/w", host="foowild.test"), 404)

    def test_methods(self):
        self.assertRouted(self.get("/m/x", method="POST", body=b"hi"), "svc-b", "/m/x")
        self.assertRouted(self.get("/m/x", method="PUT", body=b"hi"), "svc-b", "/m/x")
        self.assertGatewayError(self.get("/m/x", method="GET"), 404)
        self.assertGatewayError(self.get("/m/x", method="DELETE"), 404)

    def test_header_match(self):
        self.assertRouted(self.get("/h/1", headers={"X-Channel": "mobile"}), "svc-b", "/h/1")
        self.assertRouted(self.get("/h/1", headers={"X-Channel": "web"}), "svc-c", "/h/1")
        self.assertRouted(self.get("/h/1"), "svc-c", "/h/1")

    def test_strip_prefix(self):
        j = self.assertRouted(self.get("/api/accounts/42?full=1"), "svc-a", "/accounts/42")
        self.assertEqual(j.get("query"), "full=1")

    def test_strip_prefix_whole_path(self):
        self.assertRouted(self.get("/api/accounts"), "svc-a", "/accounts")

    def test_prefix_rewrite(self):
        self.assertRouted(self.get("/old/thing"), "svc-b", "/new/thing")

    def test_first_match_wins(self):
        # r-first (/order) comes before r-second (/order/more): r-second is never reached.
        self.assertRouted(self.get("/order/more/x"), "svc-a", "/order/more/x")

    def test_prefix_matches_only_at_start(self):
        self.assertGatewayError(self.get("/x/catch"), 404)

    def test_no_match_404_json(self):
        r = self.get("/nothing/here")
        body = self.assertGatewayError(r, 404)
        self.assertIsInstance(body["error"], str)
        self.assertIn("json", (r.header("content-type") or "").lower())

    def test_404_keeps_connection_usable(self):
        with RawConn(self.gw.address) as c:
            r = c.request("GET", "/nothing", host="plain.test")
            self.assertEqual(r.status, 404)
            r = c.request("GET", "/exact", host="plain.test")
            self.assertEqual(r.status, 200)
            self.assertEqual(r.json()["service"], "svc-a")

    def test_metrics_label_route_and_service(self):
        before = self.gw.metric("sluice_requests_total", route="r-catch", service="svc-c",
                                code="2xx")
        for _ in range(3):
            self.assertRouted(self.get("/catch/x"), "svc-c")
        after = self.gw.metric_reaching("sluice_requests_total", before + 3, route="r-catch",
                                        service="svc-c", code="2xx")
        self.assertEqual(after - before, 3)


if __name__ == "__main__":
    unittest.main()
