"""Change management on real processes (docs/changes.md): `sluice control` (SQLite), a gateway
watching it, a sample service, `sluice ctl`, and tokens of three roles. A change_policy needing one
approval holds a write: the gateway never gets it, its author and a viewer cannot approve it,
another operator's approval commits it and the gateway serves it. A freeze window (Asia/Shanghai)
refuses a change naming the window and its end; an emergency change goes through, flagged for
review. The history survives a restart of the control plane, and the DORA figures
(/v1/changes/metrics and /metrics, checked with promtool) are the numbers of what the test did."""

import datetime
import os
import signal
import subprocess
import unittest
from zoneinfo import ZoneInfo

from harness import (BIN, PROMTOOL, Gateway, Sample, SluiceTestCase, http_request, metric_sum,
                     parse_metrics, wait_until)
from test_control import Control


def service(name, address):
    return {"kind": "service", "name": name, "spec": {"endpoints": [{"address": address}]}}


def route(name, svc, prefix):
    return {"kind": "route", "name": name,
            "spec": {"match": {"path_prefix": prefix}, "service": svc}}


class ChangesTest(SluiceTestCase):
    def setUp(self):
        super().setUp()
        self.cp = self.start(Control(self.dir))
        self.tokens = {}
        for name, role in (("deployer", "operator"), ("reviewer", "operator"), ("dash", "viewer")):
            r = self.cp.call("POST", "/v1/tokens", {"name": name, "role": role})
            self.assertEqual(r.status, 201, r)
            path = os.path.join(self.dir, f"{name}.token")
            with open(path, "w") as f:
                f.write(r.json()["token"])
            os.chmod(path, 0o600)
            self.tokens[name] = path

    def ctl(self, who, *args):
        env = dict(os.environ, SLUICE_SERVER=f"http://{self.cp.address}")
        env.pop("SLUICE_TOKEN", None)
        p = subprocess.run([BIN, "ctl", "--token-file", self.tokens[who], *args],
                           capture_output=True, text=True, timeout=30, env=env,
                           stdin=subprocess.DEVNULL)
        return p.returncode, p.stdout, p.stderr

    def write_yaml(self, name, text):
        path = os.path.join(self.dir, name)
        with open(path, "w") as f:
            f.write(text)
        return path

    def change(self, cid):
        r = self.cp.call("GET", f"/v1/changes/{cid}")
        self.assertEqual(r.status, 200, r)
        return r.json()

    def applied(self, gw_id):
        for g in self.cp.call("GET", "/v1/gateways").json():
            if g["id"] == gw_id:
                return g.get("applied_version")
        return None

    def served(self, gw, path):
        try:
            return http_request(gw.address, "GET", path, timeout=2).status
        except OSError:
            return None

    def test_policy_approval_freeze_emergency_history_and_figures(self):
        sample = self.start(Sample(self.dir, "accounts", city="a"))
        policy = {"kind": "change_policy", "name": "guard",
                  "spec": {"approvals": {"count": 1, "role": "operator"},
                           "freeze": {"allowed": False, "on_freeze": "refuse"}}}
        r = self.cp.call("POST", "/v1/apply", {
            "reason": "start", "resources": [service("accounts", sample.address),
                                             route("acc", "accounts", "/acc"), policy]})
        self.assertEqual(r.status, 200, r)  # no policy was in force yet: committed at once
        self.assertEqual((r.json()["version"], r.json()["change"], r.json()["state"]),
                         (1, 1, "done"))
        gw = self.start(Gateway(self.dir, {
            "node": {"id": "gw-a", "city": "a", "zone": "a1"},
            "control_plane": {"address": f"http://{self.cp.address}",
                              "token_file": self.cp.token_file,
                              "cache_dir": os.path.join(self.dir, "cache"),
                              "report_interval": "1s"}}, name="gw-a"))
        wait_until(lambda: self.applied("gw-a") == 1, 10, message="gateway on version 1")
        self.assertEqual(self.served(gw, "/acc/1"), 200)

        # A write under the policy is held: proposed, nothing committed.
        f = self.write_yaml("two.yaml", "kind: route\nname: two\n"
                                        "spec: {match: {path_prefix: /two}, service: accounts}\n")
        rc, out, err = self.ctl("deployer", "apply", "-f", f, "--reason", "second route")
        self.assertEqual(rc, 0, err)
        self.assertIn("change 2 proposed", out)
        self.assertIn("requires 1 approval (role operator or higher) by someone other than "
                      "deployer", out)
        self.assertEqual(self.cp.call("GET", "/v1/versions").json()[0]["number"], 1)
        r = self.cp.call("GET", "/v1/gateway-config?gateway=probe&after=0&wait=0")
        self.assertEqual(r.json()["config_version"], 1)  # what gateways are served
        self.assertEqual(self.served(gw, "/two/x"), 404)

        rc, out, err = self.ctl("deployer", "change", "approve", "2", "--reason", "mine")
        self.assertEqual(rc, 1)
        self.assertIn("deployer proposed change 2 and cannot approve it", err)
        rc, out, err = self.ctl("dash", "change", "approve", "2", "--reason", "lgtm")
        self.assertEqual(rc, 1)
        self.assertIn("role is too small", err)
        self.assertEqual(self.change(2)["state"], "proposed")
        self.assertEqual(self.change(2)["approvals"], [])

        rc, out, err = self.ctl("reviewer", "change", "approve", "2", "--reason", "lgtm")
        self.assertEqual(rc, 0, err)
        self.assertIn("change 2 done: version 2", out)
        wait_until(lambda: self.applied("gw-a") == 2, 10, message="gateway on version 2")
        wait_until(lambda: self.served(gw, "/two/x") == 200, 5, message="approved route served")
        ch = self.change(2)
        self.assertEqual([t["to"] for t in ch["transitions"]],
                         ["proposed", "approved", "rolling_out", "done"])
        self.assertEqual(ch["approvals"][0]["approver"], "reviewer")
        self.assertEqual(ch["affected"]["routes"], ["two"])

        # A freeze window covering now, in Shanghai local time (UTC+8, no DST). The policy covers
        # freeze windows too, so it goes in as an emergency.
        now = datetime.datetime.now(ZoneInfo("Asia/Shanghai"))
        start = (now - datetime.timedelta(hours=1)).strftime("%Y-%m-%dT%H:%M")
        end_local = now + datetime.timedelta(hours=2)
        end = end_local.strftime("%Y-%m-%dT%H:%M")
        fw = self.write_yaml("freeze.yaml", (
            "kind: freeze_window\nname: month-end\nspec:\n  time_zone: Asia/Shanghai\n"
            "  reason: month-end batch\n"
            f"  once: [{{start: \"{start}\", end: \"{end}\"}}]\n"))
        rc, out, err = self.ctl("deployer", "apply", "-f", fw, "--reason", "batch", "--emergency")
        self.assertEqual(rc, 0, err)
        self.assertIn("change 3 done (emergency: review required", out)

        three = self.write_yaml("three.yaml", "kind: route\nname: three\n"
                                              "spec: {match: {path_prefix: /three}, service: accounts}\n")
        rc, out, err = self.ctl("deployer", "apply", "-f", three, "--reason", "third route")
        self.assertEqual(rc, 1)
        self.assertIn("freeze_window/month-end (month-end batch) is in force until "
                      f"{end_local.strftime('%Y-%m-%d %H:%M')} Asia/Shanghai", err)
        self.assertIn("change_policy/guard does not allow changes during a freeze", err)
        self.assertEqual(len(self.cp.call("GET", "/v1/changes").json()), 3)  # nothing recorded

        rc, out, err = self.ctl("deployer", "apply", "-f", three, "--reason", "hotfix",
                                "--emergency")
        self.assertEqual(rc, 0, err)
        self.assertIn("change 4 done (emergency", out)
        wait_until(lambda: self.served(gw, "/three/x") == 200, 10, message="emergency served")
        rc, out, err = self.ctl("dash", "changes", "--state", "done")
        self.assertEqual(rc, 0, err)
        self.assertRegex(out, r"(?m)^4\s+done\s+apply\s+deployer\s.*emergency,review")

        # The emergency fix is undone by an (emergency) rollback: change 4 counts as failed.
        rc, out, err = self.ctl("deployer", "rollback", "3", "--reason", "hotfix broke it",
                                "--emergency")
        self.assertEqual(rc, 0, err)
        self.assertIn("change 5 done", out)
        self.assertEqual(self.change(4)["state"], "rolled_back")
        rc, out, err = self.ctl("deployer", "change", "review", "4", "--reason", "mine")
        self.assertEqual(rc, 1)
        rc, out, err = self.ctl("reviewer", "change", "review", "4", "--reason", "post-mortem done")
        self.assertEqual(rc, 0, err)
        before_restart = [self.change(i) for i in range(1, 6)]

        # History survives a restart of the control plane.
        self.cp.signal(signal.SIGTERM)
        self.cp.wait(10)
        self.cp = self.start(Control(self.dir, port=self.cp.port))
        after_restart = [self.change(i) for i in range(1, 6)]
        self.assertEqual(before_restart, after_restart)
        rc, out, err = self.ctl("dash", "change", "show", "2")
        self.assertEqual(rc, 0, err)
        self.assertIn("change 2: done (apply by deployer)", out)
        self.assertRegex(out, r"proposed -> approved\s+reviewer")

        # The figures are the numbers of what happened above: 5 done, change 4 rolled back.
        done_at = {c["id"]: next(t["at_ms"] for t in c["transitions"] if t["to"] == "done")
                   for c in after_restart}
        back_at = next(t["at_ms"] for t in after_restart[3]["transitions"]
                       if t["to"] == "rolled_back")
        lead = sorted((done_at[c["id"]] - c["proposed_ms"]) / 1000.0 for c in after_restart)
        r = self.cp.call("GET", "/v1/changes/metrics?window=30d", token=None)
        self.assertEqual(r.status, 200, r)
        m = r.json()
        self.assertEqual(m["deployments"], 5)
        self.assertEqual(m["failed"], 1)
        self.assertAlmostEqual(m["change_failure_rate"], 0.2)
        self.assertEqual(m["rollbacks"], 1)
        self.assertEqual(m["failed_rollbacks"], 0)
        self.assertEqual(m["emergency"], 3)
        self.assertEqual(m["review_pending"], 2)  # 3 and 5; 4 was reviewed
        self.assertAlmostEqual(m["deployment_frequency_per_day"], 5 / 30)
        self.assertAlmostEqual(m["lead_time_seconds"]["p50"], lead[2])
        self.assertAlmostEqual(m["lead_time_seconds"]["p90"], lead[4])
        self.assertAlmostEqual(m["time_to_restore_seconds"]["p50"], (back_at - done_at[4]) / 1000.0)

        text = http_request(self.cp.address, "GET", "/metrics").body.decode()
        p = subprocess.run([PROMTOOL, "check", "metrics"], input=text.encode(),
                           capture_output=True, timeout=30)
        self.assertEqual(p.returncode, 0, f"promtool: {p.stdout.decode()}{p.stderr.decode()}")
        samples = parse_metrics(text)
        self.assertEqual(metric_sum(samples, "sluice_control_change_deployments", window="30d"), 5)
        self.assertAlmostEqual(metric_sum(samples, "sluice_control_change_failure_ratio",
                                          window="30d"), 0.2)
        self.assertEqual(metric_sum(samples, "sluice_control_change_reviews_pending",
                                    window="30d"), 2)


if __name__ == "__main__":
    unittest.main()
