"""`make demo` keeps working: run scripts/demo.sh --check, which starts both cities' gateways and
sample services from examples/, runs the commands the demo prints with assertions, and stops
everything it started."""

import os
import subprocess
import unittest

from harness import BIN, SOURCE_DIR, require_binary


class DemoTest(unittest.TestCase):
    def test_demo_check_passes(self):
        require_binary()
        # An offset keeps the demo's fixed ports clear of a demo a developer may have running.
        proc = subprocess.run(
            [os.path.join(SOURCE_DIR, "scripts", "demo.sh"), "--check", "--port-offset", "700",
             "--sluice", BIN],
            cwd=SOURCE_DIR, stdin=subprocess.DEVNULL, capture_output=True, text=True, timeout=180)
        self.assertEqual(proc.returncode, 0, proc.stdout[-4000:] + proc.stderr[-4000:])
        self.assertIn("demo --check: all checks passed", proc.stdout)
        self.assertNotIn("\nFAIL", proc.stdout)


if __name__ == "__main__":
    unittest.main()
