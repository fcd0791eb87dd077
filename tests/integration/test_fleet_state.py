"""The state of a gateway's control-plane link and of the fleet, as it is (issue 11): a gateway's
/stats says `connected` within about a second of its control plane's return (not after one long
poll), a gateway that drains or exits tells the control plane on its way out and `sluice ctl
gateways` shows `draining`, then `exited` (not `ok` for 90 s), a control plane that is down does
not hold up a gateway's exit, and the version numbers are shown under the same names in /ready,
/stats and `sluice ctl gateways`. Real processes: `sluice control` (SQLite), gateways with
`control_plane:`, sample services."""

import os
import signal
import subprocess
import threading
import time
import unittest

from harness import BIN, Gateway, RawConn, SluiceTestCase, http_request, wait_until
from test_control import Control

# The bound the brief sets for every state flip, with room for a loaded machine.
FLIP_S = 2.5


def service_resource(name, address):
    return {"kind": "service", "name": name, "spec": {"endpoints": [{"address": address}]}}


def route_resource(name, service, prefix):
    return {"kind": "route", "name": name,
            "spec": {"match": {"path_prefix": prefix}, "service": service}}


class FleetStateTest(SluiceTestCase):
    def setUp(self):
        super().setUp()
        self.cp = self.start(Control(self.dir))

    def gateway_config(self, name, city="a", **extra):
        cfg = {
            "node": {"id": name, "city": city, "zone": city + "1"},
            "control_plane": {"address": f"http://{self.cp.address}",
                              "token_file": self.cp.token_file,
                              "cache_dir": os.path.join(self.dir, f"cache-{name}"),
                              "report_interval": "1s"},
        }
        cfg.update(extra)
        return cfg

    def apply(self, *resources):
        r = self.cp.call("POST", "/v1/apply", {"reason": "test", "resources": list(resources)})
        self.assertEqual(r.status, 200, r)
        return r.json()["version"]

    def gateways(self):
        return {g["id"]: g for g in self.cp.call("GET", "/v1/gateways").json()}

    def health(self, name):
        try:
            return self.gateways().get(name, {}).get("health")
        except OSError:
            return None

    def ctl_gateways(self):
        env = dict(os.environ, SLUICE_SERVER=f"http://{self.cp.address}")
        p = subprocess.run([BIN, "ctl", "--token-file", self.cp.token_file, "gateways"],
                           capture_output=True, text=True, timeout=30, env=env,
                           stdin=subprocess.DEVNULL)
        self.assertEqual(p.returncode, 0, p.stderr)
        return p.stdout

    @staticmethod
    def link(gw):
        return gw.admin_get("/stats", timeout=2).json()["control_plane"]

    def flip_time(self, predicate, message, t0=None):
        """Seconds from t0 (default now) until predicate() holds; fails beyond FLIP_S."""
        t0 = time.monotonic() if t0 is None else t0
        wait_until(predicate, FLIP_S + 5, interval=0.02, message=message)
        took = time.monotonic() - t0
        self.assertLess(took, FLIP_S, f"{message}: took {took:.2f} s")
        return took

    def test_connected_within_a_second_of_the_control_plane_returning(self):
        up = self.sample("acc")
        self.apply(service_resource("acc", up.address), route_resource("acc", "acc", "/acc"))
        gw = self.start(Gateway(self.dir, self.gateway_config("gw-a"), name="gw-a"))
        wait_until(lambda: self.link(gw)["connected"], 5, message="link connected")
        # Down long enough for the link's backoff to reach its ceiling.
        self.cp.signal(signal.SIGKILL)
        self.cp.wait(10)
        self.flip_time(lambda: not self.link(gw)["connected"], "link says disconnected")
        self.assertTrue(self.link(gw)["last_error"], self.link(gw))
        time.sleep(6)
        self.cp = self.start(Control(self.dir, port=self.cp.port))  # waits for its /ready
        took = self.flip_time(lambda: self.link(gw)["connected"], "link connected again")
        link = self.link(gw)
        self.assertEqual(link["last_error"], "", link)
        self.assertEqual(link["state"], "running", link)
        # The control plane hears from it as quickly (status, poll or stats): listed healthy.
        self.flip_time(lambda: self.health("gw-a") == "ok", "ctl gateways says ok again")
        print(f"\nlink connected {took:.2f} s after the control plane was ready")

    def test_draining_then_exited_in_ctl_gateways_and_back_after_restart(self):
        up = self.sample("slow")
        self.apply(service_resource("slow", up.address), route_resource("slow", "slow", "/"))
        cfg = self.gateway_config("gw-a", limits={"drain_timeout": "20s"})
        gw = self.start(Gateway(self.dir, cfg, name="gw-a"))
        wait_until(lambda: self.health("gw-a") == "ok", 5, message="gateway ok")
        ready = gw.admin_get("/ready").json()
        versions = {k: ready[k] for k in ("control_plane_version", "config_version",
                                          "local_version", "units_version")}

        # A request in flight keeps the gateway draining until it ends.
        result = {}
        before = up.requests()

        def slow_request():
            with RawConn(gw.address, timeout=30) as c:
                result["response"] = c.request("GET", "/_sample/delay/3000")
        t = threading.Thread(target=slow_request, daemon=True)
        t.start()
        wait_until(lambda: up.requests_since(before) >= 1, 10, message="request in flight")
        t0 = time.monotonic()
        r = http_request(gw.admin, "POST", "/drain", body=b"")
        self.assertEqual(r.status, 202, r)
        self.flip_time(lambda: self.health("gw-a") == "draining", "ctl gateways says draining",
                       t0)
        self.assertEqual(self.gateways()["gw-a"]["status"], "draining")
        self.assertRegex(self.ctl_gateways(), r"gw-a\s+a\s+a1\s+\S+\s+draining\s+draining")
        t.join(30)
        self.assertEqual(result["response"].status, 200, result)
        self.assertEqual(gw.wait(10), 0, gw.tail())
        t_exit = time.monotonic()
        # Reported before the process ended: no wait for it to go stale.
        self.flip_time(lambda: self.health("gw-a") == "exited", "ctl gateways says exited",
                       t_exit)
        g = self.gateways()["gw-a"]
        self.assertEqual(g["status"], "exited", g)
        self.assertRegex(self.ctl_gateways(), r"gw-a\s+a\s+a1\s+\S+\s+exited\s+exited")
        # What it last ran is kept.
        self.assertEqual(g["config_version"], versions["config_version"], g)

        # The same gateway starts again: healthy again, whatever its state was.
        gw2 = self.start(Gateway(self.dir, cfg, name="gw-a"))
        self.flip_time(lambda: self.health("gw-a") == "ok", "ctl gateways says ok after restart")
        self.assertTrue(gw2.alive())

    def test_exit_is_not_held_up_by_a_control_plane_that_is_down(self):
        up = self.sample("acc")
        self.apply(service_resource("acc", up.address), route_resource("acc", "acc", "/acc"))
        gw = self.start(Gateway(self.dir, self.gateway_config("gw-a"), name="gw-a"))
        wait_until(lambda: self.health("gw-a") == "ok", 5, message="gateway ok")
        self.cp.signal(signal.SIGKILL)
        self.cp.wait(10)
        t0 = time.monotonic()
        gw.signal(signal.SIGTERM)
        self.assertEqual(gw.wait(10), 0, gw.tail())
        self.assertLess(time.monotonic() - t0, 2.0, "exit held up by the control plane")
        self.assertIn("could not report the exit", gw.log_text())

    def test_versions_have_the_same_names_in_ready_stats_and_ctl(self):
        up = self.sample("acc")
        self.apply(service_resource("acc", up.address), route_resource("acc", "acc", "/acc"))
        v = self.apply(route_resource("acc2", "acc", "/two"))
        gw = self.start(Gateway(self.dir, self.gateway_config("gw-a"), name="gw-a"))
        wait_until(lambda: self.link(gw)["applied_version"].startswith(f"{v}."), 5,
                   message=f"config {v} applied")
        ready = gw.admin_get("/ready").json()
        stats = gw.admin_get("/stats").json()
        for k in ("control_plane_version", "config_version", "local_version", "units_version"):
            self.assertIn(k, ready, ready)
            self.assertEqual(stats[k], ready[k], (k, stats[k], ready[k]))
        self.assertEqual(ready["config_version"], v)
        self.assertRegex(ready["control_plane_version"], rf"^{v}\.\d+$")
        self.assertEqual(ready["local_version"], ready["version"])  # `version` kept as it was
        self.assertEqual(stats["control_plane"]["applied_version"], ready["control_plane_version"])
        self.assertEqual(ready["units_version"], 0)  # no units section

        def listed():
            g = self.gateways().get("gw-a", {})
            return g if "local_version" in g and "control_plane_version" in g else None
        g = wait_until(listed, 5, message="versions reported to the control plane")
        self.assertEqual(g["control_plane_version"], ready["control_plane_version"])
        self.assertEqual(g["config_version"], v)
        self.assertEqual(g["applied_version"], v)  # the older name, kept
        self.assertEqual(g["local_version"], ready["local_version"])
        self.assertEqual(g["units_version"], 0)
        out = self.ctl_gateways()
        self.assertIn("CONTROL_PLANE_VERSION", out)
        self.assertIn("LOCAL_VERSION", out)
        self.assertIn("UNITS_VERSION", out)
        self.assertRegex(out, rf"gw-a\s+a\s+a1\s+{ready['control_plane_version']}\s+applied\s+ok"
                              rf"\s+{ready['local_version']}\s+0\s")


if __name__ == "__main__":
    unittest.main()
