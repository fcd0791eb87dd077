"""Reload under load (SIGHUP and POST /reload) without a failed request or a dropped
connection; SIGTERM and POST /drain: in-flight requests finish, new connections are refused,
exit code 0."""

import signal
import socket
import threading
import time
import unittest

from harness import (SluiceTestCase, ConnClosed, RawConn, http_request, route, service,
                     split_addr, wait_until)


class ReloadUnderLoadTest(SluiceTestCase):
    def test_reload_under_load_no_failures(self):
        a = self.sample("load-a")
        b = self.sample("load-b")
        services = [service("load-a", a.address), service("load-b", b.address)]

        def config(svc):
            return {"services": services, "routes": [route(f"to-{svc}", svc, path_prefix="/")]}
        gw = self.gateway(dict(config("load-a"), workers=2, access_log={"path": "off"}))
        base = gw.config

        stop = threading.Event()
        failures = []
        seen = []
        lock = threading.Lock()

        def client(idx):
            served = {}
            n = 0
            # One connection for the whole run: a reload must not drop it.
            with RawConn(gw.address, timeout=10) as c:
                while not stop.is_set():
                    try:
                        r = c.request("GET", f"/c{idx}/{n}")
                    except (ConnClosed, OSError) as e:
                        failures.append(f"client {idx} request {n}: {e!r}")
                        return
                    n += 1
                    if r.status != 200:
                        failures.append(f"client {idx} request {n}: {r!r}")
                        continue
                    svc = r.json()["service"]
                    served[svc] = served.get(svc, 0) + 1
            with lock:
                seen.append(served)

        threads = [threading.Thread(target=client, args=(i,), daemon=True) for i in range(4)]
        for t in threads:
            t.start()
        try:
            time.sleep(0.3)
            target = "load-a"
            for i in range(6):
                target = "load-b" if target == "load-a" else "load-a"
                gw.write_config(dict(base, routes=config(target)["routes"]))
                if i % 2 == 0:
                    gw.signal(signal.SIGHUP)
                else:
                    r = gw.reload()
                    self.assertEqual(r.status, 200, r)

                def switched():
                    return http_request(gw.address, "GET", "/probe").json()["service"] == target
                wait_until(switched, 5, message=f"routes switched to {target}")
                time.sleep(0.3)
        finally:
            stop.set()
            for t in threads:
                t.join(15)
        self.assertEqual(failures, [])
        self.assertEqual(len(seen), 4, "a client thread did not finish")
        for served in seen:
            self.assertEqual(set(served), {"load-a", "load-b"},
                             f"each connection should have seen both configs: {served}")
        self.assertTrue(gw.alive())
        self.assertGreaterEqual(gw.metric("sluice_config_reloads_total", result="success"), 6)

    def test_sighup_reload(self):
        a = self.sample("hup-a")
        gw = self.gateway({"services": [service("hup-a", a.address)],
                           "routes": [route("old", "hup-a", path_prefix="/old")]})
        gw.write_config(dict(gw.config, routes=[route("new", "hup-a", path_prefix="/new")]))
        gw.signal(signal.SIGHUP)
        wait_until(lambda: http_request(gw.address, "GET", "/new/x").status == 200, 5,
                   message="SIGHUP reload")
        self.assertEqual(http_request(gw.address, "GET", "/old/x").status, 404)

    def test_sighup_with_invalid_config_keeps_serving(self):
        a = self.sample("hup-bad")
        gw = self.gateway({"services": [service("hup-bad", a.address)],
                           "routes": [route("old", "hup-bad", path_prefix="/")]})
        fail0 = gw.metric("sluice_config_reloads_total", result="failure")
        gw.write_config("routes: [oops\n")
        gw.signal(signal.SIGHUP)
        wait_until(lambda: gw.metric("sluice_config_reloads_total", result="failure") > fail0, 5,
                   message="failed reload counted")
        self.assertTrue(gw.alive())
        self.assertEqual(http_request(gw.address, "GET", "/x").status, 200)


class DrainTest(SluiceTestCase):
    def start_pair(self, drain_timeout="5s"):
        up = self.sample("drain")
        gw = self.gateway({
            "limits": {"drain_timeout": drain_timeout},
            "services": [service("drain", up.address,
                                 timeouts={"connect": "1s", "request": "10s"})],
            "routes": [route("all", "drain", path_prefix="/")],
        })
        return up, gw

    def in_flight(self, gw, up, n, path):
        """Starts n requests (one connection each), waits until the upstream has all of them, and
        returns (threads, results)."""
        before = up.requests()
        results = [None] * n
        started = threading.Barrier(n + 1)

        def run(i):
            try:
                with RawConn(gw.address, timeout=15) as c:
                    c.send(f"GET {path} HTTP/1.1\r\nHost: t\r\n\r\n")
                    started.wait(5)
                    r = c.read_response()
                    results[i] = (r, c.wait_closed(3))
            except Exception as e:  # noqa: BLE001
                results[i] = e
        threads = [threading.Thread(target=run, args=(i,), daemon=True) for i in range(n)]
        for t in threads:
            t.start()
        started.wait(5)
        # In flight means forwarded: a request still unread in the gateway's accept queue or
        # socket when the drain starts is not one the drain has to finish.
        wait_until(lambda: up.requests_since(before) >= n, 10,
                   message=f"{n} requests forwarded to the upstream")
        return threads, results

    @staticmethod
    def connect_refused(address):
        try:
            socket.create_connection(split_addr(address), timeout=2).close()
        except (ConnectionRefusedError, ConnectionResetError):
            return True
        return False

    def assertRefused(self, address):
        host, port = split_addr(address)
        try:
            s = socket.create_connection((host, port), timeout=2)
        except (ConnectionRefusedError, ConnectionResetError):
            return
        # Accepted by a lingering backlog: it must not be served.
        try:
            s.sendall(b"GET / HTTP/1.1\r\nHost: t\r\n\r\n")
            s.settimeout(3)
            data = s.recv(100)
            self.assertFalse(data.startswith(b"HTTP/1.1 200"),
                             f"new connection served during drain: {data!r}")
        except OSError:
            pass
        finally:
            s.close()

    def test_sigterm_drains_in_flight_and_exits_0(self):
        up, gw = self.start_pair()
        threads, results = self.in_flight(gw, up, 5, "/_sample/delay/1500")
        t0 = time.monotonic()
        gw.signal(signal.SIGTERM)
        # The workers close their listeners when they get to the drain; until then a new
        # connection may still be accepted (and a request on it answered). Connect only, without
        # a request, until that happened; the in-flight requests keep the gateway alive meanwhile.
        wait_until(lambda: self.connect_refused(gw.address), 5,
                   message="listener closed after SIGTERM")
        self.assertTrue(gw.alive(), "the gateway exited before its in-flight requests ended")
        self.assertRefused(gw.address)
        r = http_request(gw.admin, "GET", "/ready", timeout=2) if gw.alive() else None
        if r is not None:
            self.assertEqual(r.status, 503, "ready must be 503 while draining")
        rc = gw.wait(10)
        elapsed = time.monotonic() - t0
        for t in threads:
            t.join(5)
        self.assertEqual(rc, 0, gw.tail())
        for i, res in enumerate(results):
            self.assertIsInstance(res, tuple, f"in-flight request {i} failed: {res!r}")
            resp, closed = res
            self.assertEqual(resp.status, 200, resp)
            self.assertEqual((resp.header("connection") or "").lower(), "close", resp)
            self.assertTrue(closed, "connection not closed after the drained response")
        self.assertLess(elapsed, 4.0, "exit should follow the last in-flight request")

    def test_sigterm_with_idle_connections_exits_promptly(self):
        up, gw = self.start_pair(drain_timeout="10s")
        conns = [RawConn(gw.address) for _ in range(3)]
        try:
            for c in conns:
                self.assertEqual(c.request("GET", "/idle").status, 200)
            t0 = time.monotonic()
            gw.signal(signal.SIGTERM)
            rc = gw.wait(8)
            self.assertEqual(rc, 0)
            self.assertLess(time.monotonic() - t0, 3.0,
                            "idle keep-alive connections must not hold the drain")
            for c in conns:
                self.assertTrue(c.wait_closed(1))
        finally:
            for c in conns:
                c.close()

    def test_keep_alive_connection_in_flight_gets_connection_close(self):
        up, gw = self.start_pair()
        with RawConn(gw.address, timeout=10) as c:
            self.assertEqual(c.request("GET", "/first").status, 200)
            before = up.requests()
            c.send(b"GET /_sample/delay/800 HTTP/1.1\r\nHost: t\r\n\r\n")
            wait_until(lambda: up.requests_since(before) >= 1, 10,
                       message="the delayed request forwarded to the upstream")
            gw.signal(signal.SIGTERM)
            r = c.read_response()
            self.assertEqual(r.status, 200, r)
            self.assertEqual((r.header("connection") or "").lower(), "close", r)
            self.assertClosed(c)
        self.assertEqual(gw.wait(5), 0)

    def test_drain_timeout_bounds_exit(self):
        up, gw = self.start_pair(drain_timeout="1s")
        threads, results = self.in_flight(gw, up, 2, "/_sample/delay/8000")
        t0 = time.monotonic()
        gw.signal(signal.SIGTERM)
        rc = gw.wait(6)
        elapsed = time.monotonic() - t0
        self.assertEqual(rc, 0)
        self.assertLess(elapsed, 3.0, "drain_timeout (1s) not enforced")
        for t in threads:
            t.join(5)

    def test_post_drain(self):
        up, gw = self.start_pair()
        threads, results = self.in_flight(gw, up, 2, "/_sample/delay/1000")
        r = http_request(gw.admin, "POST", "/drain", body=b"")
        self.assertEqual(r.status, 202, r)
        rc = gw.wait(8)
        for t in threads:
            t.join(5)
        self.assertEqual(rc, 0)
        for res in results:
            self.assertIsInstance(res, tuple, res)
            self.assertEqual(res[0].status, 200, res[0])

    def test_sigterm_idle_gateway_exits_0(self):
        up, gw = self.start_pair()
        t0 = time.monotonic()
        gw.signal(signal.SIGTERM)
        self.assertEqual(gw.wait(5), 0)
        self.assertLess(time.monotonic() - t0, 2.0)


if __name__ == "__main__":
    unittest.main()
