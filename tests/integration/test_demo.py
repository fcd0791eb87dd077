"""`make demo` keeps working: run scripts/demo.sh --check, which starts the control plane, both
cities' gateways and sample services from examples/, runs the commands the demo prints with
assertions (sluice ctl included), and stops everything it started. That includes change
management: a canary release whose canary is broken on purpose, rolled back to 0% by its analysis
(ctl release status, the event, the change it made), and a change held for approval that then rolls
out in stages (ctl rollout status: stage 1 with gw-a1 on the new version and gw-b1 on the old one,
then done after stage 1's analysis passed). The demo without a control plane (--no-control-plane:
the gateways read examples/gateway-a.yaml and gateway-b.yaml) is checked too."""

import os
import subprocess
import unittest

from harness import BIN, SOURCE_DIR, require_binary


def run_demo_check(*extra):
    # An offset keeps the demo's fixed ports clear of a demo a developer may have running.
    return subprocess.run(
        [os.path.join(SOURCE_DIR, "scripts", "demo.sh"), "--check", "--port-offset", "700",
         "--sluice", BIN, *extra],
        cwd=SOURCE_DIR, stdin=subprocess.DEVNULL, capture_output=True, text=True, timeout=180)


class DemoTest(unittest.TestCase):
    def assert_passed(self, proc):
        self.assertEqual(proc.returncode, 0, proc.stdout[-4000:] + proc.stderr[-4000:])
        self.assertIn("demo --check: all checks passed", proc.stdout)
        self.assertNotIn("\nFAIL", proc.stdout)

    def test_demo_check_passes(self):
        require_binary()
        proc = run_demo_check()
        self.assert_passed(proc)
        # The default demo is the whole platform: the control plane is started and checked.
        for line in ("ok    sluice ctl instances -> all 7 sample services",
                     "ok    at start: sluice ctl gateways -> gw-a1 and gw-b1 applied version",
                     # versions 2 and 3 are the switchover there and back, recorded
                     "ok    version 4: both gateways send /api/payments/7 upstream as /v2/payments/7",
                     "ok    sluice ctl rollback 1 -> rolled back to version 1: now version 5",
                     "ok    sluice ctl versions -> 5 4 3 2 1",
                     "ok    sluice ctl events -> gw-a1 endpoint_ejected",
                     # the canary release, rolled back by its analysis
                     "ok    sluice ctl release status payments-v2 -> rolled_back, canary at 0%",
                     "ok    after the canary's rollback: 10 calls of /api/payments/7 through each "
                     "gateway -> 200 from payments",
                     "ok    sluice ctl events -> release_rolled_back payments-v2",
                     "by release/payments-v2, done, flagged emergency,review",
                     # the staged rollout of an approved change
                     "gateway-a sends /api/payments/7 upstream as /v2/payments/7, gateway-b still "
                     "as /payments/7",
                     "-> rolling_out, stage 1 of 2: gw-a1 on version",
                     "of the approval: stage 1's analysis passed, gw-a1 and gw-b1 on version"):
            self.assertIn(line, proc.stdout)
        self.assertRegex(proc.stdout, r"ok    sluice ctl rollout status \d+ -> done within")
        self.assertIn("demo: stopping 10 process(es)", proc.stdout)

    def test_demo_check_without_control_plane_passes(self):
        require_binary()
        proc = run_demo_check("--no-control-plane")
        self.assert_passed(proc)
        self.assertNotIn("sluice ctl", proc.stdout)
        self.assertIn("demo: stopping 8 process(es)", proc.stdout)


if __name__ == "__main__":
    unittest.main()
