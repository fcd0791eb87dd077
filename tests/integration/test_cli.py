"""The `sluice` command line as a new user meets it: exit codes (0 success, 1 runtime failure,
2 usage error), messages that name the wrong word and the nearest valid one, --version with the
git commit, --log-level before or after the command, and `sluice ctl` help (per verb)."""

import os
import re
import subprocess
import unittest

from harness import BIN, SOURCE_DIR, SluiceTestCase, addr, free_port, require_binary, route, service, to_yaml


def run(*args, env=None, stdin=None):
    e = {k: v for k, v in os.environ.items() if not k.startswith("SLUICE_")}
    e.update(env or {})
    p = subprocess.run([BIN, *args], capture_output=True, text=True, timeout=30, env=e,
                       input=stdin, stdin=None if stdin is not None else subprocess.DEVNULL)
    return p.returncode, p.stdout, p.stderr


class ExitCodesAndMessagesTest(unittest.TestCase):
    @classmethod
    def setUpClass(cls):
        require_binary()

    def usage_error(self, *args):
        rc, out, err = run(*args)
        self.assertEqual(rc, 2, f"sluice {' '.join(args)}: rc={rc}\n{out}\n{err}")
        self.assertIn("--help", err, "a usage error says where to find help")
        return err

    def test_unknown_top_level_option(self):
        err = self.usage_error("--bogus")
        self.assertIn("unknown option '--bogus'", err)
        self.assertNotIn("A subcommand is required", err)

    def test_misspelt_command_suggests_the_nearest(self):
        err = self.usage_error("gatway")
        self.assertIn("unknown command 'gatway'", err)
        self.assertIn("did you mean 'gateway'?", err)
        err = self.usage_error("sample-servic", "--listen", "127.0.0.1:1")
        self.assertIn("did you mean 'sample-service'?", err)

    def test_misspelt_option_suggests_the_nearest(self):
        err = self.usage_error("gateway", "--confg", "x.yaml")
        self.assertIn("sluice gateway: unknown option '--confg'", err)
        self.assertIn("did you mean '--config'?", err)
        err = self.usage_error("gateway", "switch", "--admin", "127.0.0.1:1", "--form", "a",
                               "--to", "b")
        self.assertIn("sluice gateway switch: unknown option '--form'", err)
        self.assertIn("did you mean '--from'?", err)

    def test_no_command(self):
        err = self.usage_error()
        self.assertIn("a command is required", err)
        for name in ("gateway", "control", "ctl", "sample-service"):
            self.assertIn(name, err)

    def test_missing_config_is_a_usage_error_for_gateway_and_control(self):
        err = self.usage_error("gateway")
        self.assertIn("--config", err)
        err = self.usage_error("control")
        self.assertIn("--config", err)
        self.assertIn("sluice control", err)

    def test_bad_option_value_is_a_usage_error(self):
        err = self.usage_error("--log-level", "verbose", "gateway", "--config", "x")
        self.assertIn("--log-level", err)
        err = self.usage_error("sample-service", "--listen", "127.0.0.1:1", "--name", "s",
                               "--city", "a", "--error-rate", "7")
        self.assertIn("--error-rate", err)

    def test_runtime_failure_is_1(self):
        rc, out, err = run("gateway", "--config", "/nonexistent/sluice.yaml")
        self.assertEqual(rc, 1, err)
        self.assertIn("/nonexistent/sluice.yaml", err)

    def test_whole_file_errors_have_no_line(self):
        # docs/config.md: an error about the file as a whole has no line (it printed ":1:").
        import tempfile
        with tempfile.TemporaryDirectory() as d:
            control = os.path.join(d, "control.yaml")
            with open(control, "w") as f:
                f.write(f"listen: 127.0.0.1:{free_port()}\n")
            rc, out, err = run("control", "--config", control)
            self.assertEqual(rc, 1, err)
            self.assertIn(f"{control}: store: required", err)
            self.assertNotIn(f"{control}:1:", err)
            gw = os.path.join(d, "gw.yaml")
            with open(gw, "w") as f:
                f.write("- a\n- b\n")
            rc, out, err = run("gateway", "--config", gw, "--validate")
            self.assertEqual(rc, 1, err)
            self.assertIn(f"{gw}: expected a mapping, got a list", err)

    def test_version(self):
        for flag in ("--version", "-V"):
            rc, out, err = run(flag)
            self.assertEqual(rc, 0, err)
            self.assertRegex(out.strip(),
                             r"^sluice \d+\.\d+\.\d+ \(commit ([0-9a-f]{12}(-dirty)?|unknown)\)$")
        # Built from a git checkout: the commit is one of its commits.
        commit = re.search(r"commit ([0-9a-f]{12})", out)
        in_git = subprocess.run(["git", "-C", SOURCE_DIR, "rev-parse", "--git-dir"],
                                capture_output=True).returncode == 0
        if commit and in_git:
            p = subprocess.run(["git", "-C", SOURCE_DIR, "rev-parse", "--verify", "--quiet",
                                commit.group(1) + "^{commit}"], capture_output=True, text=True)
            self.assertEqual(p.returncode, 0, f"{commit.group(1)} is not a commit of {SOURCE_DIR}")

    def test_help_exits_0(self):
        rc, out, err = run("--help")
        self.assertEqual(rc, 0, err)
        self.assertIn("gateway", out)
        rc, out, err = run("gateway", "--help")
        self.assertEqual(rc, 0, err)
        self.assertIn("--config", out)


class LogLevelPlacementTest(SluiceTestCase):
    def config_file(self):
        cfg = {"node": {"id": "cli", "city": "a", "zone": "a1"}, "workers": 1,
               "listeners": [{"name": "public", "address": addr(free_port())}],
               "admin": {"address": addr(free_port())},
               "services": [service("s", "127.0.0.1:9")],
               "routes": [route("r", "s", path_prefix="/")]}
        path = os.path.join(self.dir, "gw.yaml")
        with open(path, "w") as f:
            f.write(to_yaml(cfg))
        return path

    def test_log_level_before_and_after_the_command(self):
        path = self.config_file()
        for args in (["--log-level", "debug", "gateway", "--config", path, "--validate"],
                     ["gateway", "--config", path, "--log-level", "debug", "--validate"],
                     ["gateway", "--log-level=warn", "--config", path, "--validate"]):
            with self.subTest(args=args):
                rc, out, err = run(*args)
                self.assertEqual(rc, 0, f"{args}: {out}{err}")
                self.assertIn("config OK", out)


class CtlHelpTest(unittest.TestCase):
    VERBS = ("apply", "diff", "get", "delete", "versions", "rollback", "instances", "gateways",
             "events", "tokens")

    @classmethod
    def setUpClass(cls):
        require_binary()

    def test_ctl_help_lists_every_verb_and_option(self):
        rc, out, err = run("ctl", "--help")
        self.assertEqual(rc, 0, err)
        for verb in self.VERBS:
            self.assertRegex(out, rf"(?m)^  {verb}\b", f"ctl --help does not list {verb}")
        self.assertIn("all", out)  # get KIND includes all
        for line in ("versions [N] [--limit N] [-o yaml|json|wide]",
                     "instances [SERVICE] [-o yaml|json|wide]",
                     "gateways [-o yaml|json|wide]",
                     "events [--limit N] [--after ID] [-o yaml|json|wide]"):
            self.assertIn(line, out)

    def test_help_per_verb(self):
        for verb in self.VERBS:
            for args in (["ctl", verb, "--help"], ["ctl", "help", verb], ["ctl", verb, "-h"]):
                with self.subTest(args=args):
                    rc, out, err = run(*args)
                    self.assertEqual(rc, 0, err)
                    self.assertIn(f"usage: sluice ctl {verb}", out)
                    # One verb's help, not the list of all of them.
                    self.assertNotIn("commands:", out)
        rc, out, err = run("ctl", "apply", "--help")
        self.assertIn("-f DIR", out)
        self.assertIn("-f - reads standard input", out)

    def test_unknown_verb_and_option_suggest(self):
        rc, out, err = run("ctl", "aply", "-f", "x.yaml")
        self.assertEqual(rc, 2)
        self.assertIn("unknown command 'aply' (did you mean 'apply'?)", err)
        rc, out, err = run("ctl", "get", "services", "--reson", "x")
        self.assertEqual(rc, 2)
        self.assertIn("unknown option '--reson' (did you mean '--reason'?)", err)
        rc, out, err = run("ctl", "help", "aply")
        self.assertEqual(rc, 2)
        self.assertIn("did you mean 'apply'?", err)


if __name__ == "__main__":
    unittest.main()
