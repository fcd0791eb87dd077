"""The CMDB reconciler with real processes: a `sluice control` (SQLite, reconcile every 500 ms, an
observation current for 2 s) and `sluice sample-service` instances registering in two cities.
After the declared model is imported with `sluice ctl cmdb import` the accuracy is 100%; an
undeclared instance, an instance moved to another zone and a killed instance each produce their
finding within the deadline and lower the score by the figure docs/cmdb.md defines; `ctl cmdb
fix` brings it back to 100%; impact of the service lists its instances and business system."""

import json
import os
import socket
import subprocess
import unittest

from harness import (BIN, PROMTOOL, Sample, SluiceTestCase, metric_sum, parse_metrics,
                     wait_until)
from test_control import Control

INTERVAL_S = 0.5
WINDOW_S = 2.0
DEADLINE_S = 10.0  # TTL (1 s) + window (2 s) + intervals, with room for a loaded machine

MODEL = """\
cis:
  - {type: business_system, name: payments, owner: team-pay}
  - {type: application, name: pay-app, relations: {belongs_to: business_system/payments}}
  - {type: service, name: accounts, relations: {belongs_to: application/pay-app}}
  - {type: host, hostname: "%(host)s"}
  - type: instance
    id: a1
    service: accounts
    address: "%(a1)s"
    city: a
    zone: a1
    relations: {belongs_to: service/accounts}
  - type: instance
    id: b1
    service: accounts
    address: "%(b1)s"
    city: b
    zone: b1
    relations: {belongs_to: service/accounts}
"""


class CmdbReconcileTest(SluiceTestCase):
    def setUp(self):
        super().setUp()
        cp = Control(self.dir)
        with open(cp.config_path, "a") as f:
            f.write(f"cmdb: {{reconcile_interval: {int(INTERVAL_S * 1000)}ms, "
                    f"window: {int(WINDOW_S * 1000)}ms}}\n")
        self.cp = self.start(cp)
        self.home = os.path.join(self.dir, "home")
        os.makedirs(self.home)

    def sample(self, instance, city, zone, port=None):
        extra = ["--control-plane", f"http://{self.cp.address}", "--token-file",
                 self.cp.token_file, "--ttl", "1s", "--instance", instance]
        return self.start(Sample(self.dir, "accounts", city=city, zone=zone, port=port,
                                 extra_args=extra))

    def ctl(self, *args):
        env = {k: v for k, v in os.environ.items() if not k.startswith("SLUICE_")}
        env["HOME"] = self.home
        p = subprocess.run([BIN, "ctl", "--server", f"http://{self.cp.address}", "--token-file",
                            self.cp.token_file, *args], capture_output=True, text=True,
                           timeout=30, env=env)
        return p.returncode, p.stdout, p.stderr

    def ok(self, *args):
        rc, out, err = self.ctl(*args)
        self.assertEqual(rc, 0, f"sluice ctl {' '.join(args)}: rc={rc}\n{out}\n{err}")
        return out

    def accuracy(self):
        return json.loads(self.ok("cmdb", "accuracy", "-o", "json"))

    def findings(self):
        return json.loads(self.ok("cmdb", "findings", "-o", "json"))["findings"]

    def wait_findings(self, want, message):
        """Waits until the open findings are exactly `want` [(kind, subject, attribute)]."""
        got = []

        def match():
            got[:] = [(f["kind"], f["subject"], f["attribute"]) for f in self.findings()]
            return sorted(got) == sorted(want)
        try:
            wait_until(match, DEADLINE_S, interval=0.2, message=message)
        except AssertionError as e:
            raise AssertionError(f"{e}: findings {got}") from None
        return self.findings()

    def fix(self, finding):
        out = self.ok("cmdb", "fix", finding["id"], "--reason", "the registry is right")
        self.assertIn(f"fixed {finding['id']}", out)
        self.wait_findings([], "no finding after the fix")
        self.assertAlmostEqual(self.accuracy()["score"], 1.0)

    def test_findings_scores_and_fixes(self):
        a1 = self.sample("a1", "a", "a1")
        b1 = self.sample("b1", "b", "b1")
        path = os.path.join(self.dir, "model.yaml")
        with open(path, "w") as f:
            # The samples register with this machine's host name (their host facts).
            f.write(MODEL % {"a1": a1.address, "b1": b1.address, "host": socket.gethostname()})
        self.ok("cmdb", "import", "-f", path, "--reason", "the declared model")

        # Both instances registered and declared alike: 100%.
        self.wait_findings([], "no finding after the import")
        acc = self.accuracy()
        self.assertAlmostEqual(acc["score"], 1.0, msg=acc)
        # 2 instances x (service, address, city, zone, belongs_to service).
        self.assertEqual(acc["overall"]["correctness"]["den"], 10, acc)
        out = self.ok("cmdb", "accuracy")
        self.assertIn("score 100.0%", out)
        self.assertIn("instance", out)

        # An undeclared instance: missing; completeness 8/10 (required: 2 instances x (id,
        # belongs_to), the service's, application's, business system's and host's names; a2's id
        # and belongs_to are not declared).
        a2 = self.sample("a2", "a", "a1")
        [missing] = self.wait_findings([("missing", "instance/a2", "")], "missing instance/a2")
        acc = self.accuracy()
        self.assertEqual((acc["overall"]["completeness"]["num"],
                          acc["overall"]["completeness"]["den"]), (8, 10), acc)
        self.assertAlmostEqual(acc["score"], (4 + 8 / 10) / 5)
        self.assertIn("instance/a2", self.ok("cmdb", "findings"))
        self.fix(missing)
        # The fix declared all a2's observed values: service, address, city, zone, host, version,
        # started_ms, belongs_to, runs_on: 9 more checks.
        self.assertEqual(self.accuracy()["overall"]["correctness"]["den"], 19)

        # a1 moves to zone a2 (restarted on its port with another zone): mismatch, 18/19 correct.
        port = a1.port
        a1.kill()
        a1 = self.sample("a1", "a", "a2", port=port)
        [moved] = self.wait_findings([("mismatch", "instance/a1", "zone")], "zone mismatch")
        self.assertEqual((moved["declared"], moved["observed"]), ("a1", "a2"))
        self.assertEqual(moved["observed_source"], "registry")
        acc = self.accuracy()
        self.assertEqual((acc["overall"]["correctness"]["num"],
                          acc["overall"]["correctness"]["den"]), (18, 19), acc)
        self.assertAlmostEqual(acc["score"], (4 + 18 / 19) / 5)
        self.fix(moved)
        history = self.ok("cmdb", "history", "instance/a1", "-o", "json")
        self.assertIn("the registry is right", history)

        # b1 is killed: its lease runs out (1 s) and, 2 s after its last registration, it is
        # stale; freshness 2/3.
        b1.kill()
        [stale] = self.wait_findings([("stale", "instance/b1", "")], "stale instance/b1")
        acc = self.accuracy()
        self.assertEqual((acc["types"]["instance"]["freshness"]["num"],
                          acc["types"]["instance"]["freshness"]["den"]), (2, 3), acc)

        # Impact of the service before b1 is retired: city b has lost its only instance.
        imp = json.loads(self.ok("cmdb", "impact", "service/accounts", "-o", "json"))
        self.assertEqual(imp["lost"]["instances"], ["a1", "a2", "b1"])
        self.assertEqual(imp["business_systems"], ["payments"])
        out = self.ok("cmdb", "impact", "service/accounts")
        self.assertIn("payments", out)
        self.fix(stale)  # retires b1's declared record
        self.assertEqual(a2.alive(), True)

        # Refusals: an unknown id, no reason.
        rc, _, err = self.ctl("cmdb", "fix", "0123456789abcdef", "--reason", "x")
        self.assertEqual(rc, 1, err)
        self.assertIn("no open finding", err)
        rc, _, err = self.ctl("cmdb", "fix", "0123456789abcdef")
        self.assertEqual(rc, 2, err)

        metrics = self.cp.call("GET", "/metrics").body.decode()
        samples = parse_metrics(metrics)
        self.assertEqual(metric_sum(samples, "sluice_control_cmdb_accuracy", type="all",
                                    measure="score"), 1)
        self.assertEqual(metric_sum(samples, "sluice_control_cmdb_accuracy", type="instance",
                                    measure="correctness"), 1)
        self.assertEqual(metric_sum(samples, "sluice_control_cmdb_findings", kind="stale"), 0)
        self.assertEqual(metric_sum(samples, "sluice_control_cmdb_fixes_total"), 3)
        p = subprocess.run([PROMTOOL, "check", "metrics"], input=metrics.encode(),
                           capture_output=True, timeout=30)
        self.assertEqual(p.returncode, 0, f"promtool: {p.stdout.decode()}{p.stderr.decode()}")

    def test_bad_cmdb_config_is_refused_with_every_error(self):
        path = os.path.join(self.dir, "bad.yaml")
        with open(self.cp.config_path) as f:
            base = "".join(line for line in f if not line.startswith("cmdb:"))
        with open(path, "w") as f:
            f.write(base + "cmdb: {reconcile_interval: 10ms, window: 1x, traffic: 5m}\n")
        p = subprocess.run([BIN, "control", "--config", path], capture_output=True, text=True,
                           timeout=30)
        self.assertEqual(p.returncode, 1, p.stderr)
        self.assertIn("cmdb.reconcile_interval", p.stderr)
        self.assertIn("cmdb.window", p.stderr)
        self.assertIn("cmdb.traffic", p.stderr)


if __name__ == "__main__":
    unittest.main()
