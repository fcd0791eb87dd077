"""Reload under load (SIGHUP and POST /reload) without a failed request or a dropped
connection; SIGTERM and POST /drain: in-flight requests finish, new connections are refused,
exit code 0."""

import fcntl
import os
import signal
import socket
import threading
import time
import unittest

from harness import (SluiceTestCase, ConnClosed, RawConn, http_request, route, service,
                     split_addr, wait_until)

F_SETPIPE_SZ = 1031  # fcntl.F_SETPIPE_SZ from Python 3.10 on


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
        """True when a connection to `address` is refused. A reset is not a refusal: it is a
        connection the kernel had queued on a listener that closed meanwhile."""
        try:
            socket.create_connection(split_addr(address), timeout=2).close()
        except ConnectionRefusedError:
            return True
        except OSError:
            return False
        return False

    def assertRefused(self, address):
        host, port = split_addr(address)
        try:
            s = socket.create_connection((host, port), timeout=2)
        except ConnectionRefusedError:
            return
        # Accepted although the drain had begun: at most it may be closed unanswered.
        try:
            s.sendall(b"GET / HTTP/1.1\r\nHost: t\r\n\r\n")
            s.settimeout(3)
            data = s.recv(100)
            self.assertFalse(data.startswith(b"HTTP/1.1"),
                             f"new connection served during drain: {data!r}")
        except OSError:
            pass
        finally:
            s.close()

    def draining(self, gw):
        try:
            r = http_request(gw.admin, "GET", "/ready", timeout=2)
        except OSError:
            return False
        return r.status == 503 and r.json().get("status") == "draining"

    def test_sigterm_drains_in_flight_and_exits_0(self):
        up, gw = self.start_pair()
        threads, results = self.in_flight(gw, up, 5, "/_sample/delay/1500")
        t0 = time.monotonic()
        gw.signal(signal.SIGTERM)
        # /ready answers from the gateway's control thread once the drain has begun, and the
        # drain shuts every worker's listener before that: from then on nothing is accepted, on
        # whatever worker (a busy one too). No waiting for the workers' loops.
        wait_until(lambda: self.draining(gw), 5, message="/ready says draining after SIGTERM")
        self.assertTrue(gw.alive(), "the gateway exited before its in-flight requests ended")
        for _ in range(20):
            self.assertRefused(gw.address)
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
        # The requests take 1.5 s from before the signal; the rest is a loaded machine's slack.
        self.assertLess(elapsed, 6.0, "exit should follow the last in-flight request")

    def test_no_connection_accepted_once_the_drain_began_even_with_the_worker_stalled(self):
        # The worker is held up (blocked writing its access log into a full pipe) when the drain
        # begins, so its loop cannot get to it. The gateway must still refuse new connections
        # from the moment the drain began (/ready says draining), not from when the worker's
        # loop gets there: the same holds for one busy worker among several.
        up = self.sample("stall")
        fifo = os.path.join(self.dir, "access.fifo")
        os.mkfifo(fifo)
        reader = os.open(fifo, os.O_RDONLY | os.O_NONBLOCK)
        self.addCleanup(os.close, reader)
        fcntl.fcntl(reader, F_SETPIPE_SZ, 4096)
        gw = self.gateway({
            "workers": 1,
            "limits": {"drain_timeout": "10s"},
            "access_log": {"path": fifo, "format": "json"},
            "services": [service("stall", up.address)],
            "routes": [route("all", "stall", path_prefix="/")],
        })
        writer = os.open(fifo, os.O_WRONLY | os.O_NONBLOCK)
        try:
            while True:
                os.write(writer, b"x" * 512)
        except BlockingIOError:
            pass  # the pipe is full
        finally:
            os.close(writer)
        # Answered at once; its access-log line goes out with the worker's next flush (at most
        # 100 ms later), which blocks on the full pipe. The connection stays open (keep-alive),
        # so the drain has something to wait for.
        idle = RawConn(gw.address, timeout=10)
        self.addCleanup(idle.close)
        self.assertEqual(idle.request("GET", "/one").status, 200)
        time.sleep(0.5)
        gw.signal(signal.SIGTERM)
        wait_until(lambda: self.draining(gw), 5, message="/ready says draining after SIGTERM")
        refused = self.connect_refused(gw.address)
        # Let the workers go: they drain and the gateway exits.
        stop = threading.Event()

        def drain_pipe():
            while not stop.is_set():
                try:
                    if not os.read(reader, 65536):
                        time.sleep(0.01)
                except BlockingIOError:
                    time.sleep(0.01)
        t = threading.Thread(target=drain_pipe, daemon=True)
        t.start()
        try:
            self.assertEqual(gw.wait(15), 0, gw.tail())
        finally:
            stop.set()
            t.join(5)
        self.assertTrue(refused, "a new connection was accepted after the drain began")

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
