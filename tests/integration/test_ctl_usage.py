"""`sluice ctl`'s command line, verb by verb: each verb's --help names the options it takes, a
misspelt option names the nearest valid one, an option of another verb is refused (it would do
nothing), option values in every spelling (`--reason=R`, `-fFILE`, `-ojson`, repeated -f), and words
that happen to be verb names stay words. Usage errors exit 2 with the message on stderr and nothing
on stdout; they are found before any request is sent."""

import json
import os
import re
import subprocess
import unittest

from harness import BIN, DeadPort, SluiceTestCase, require_binary
from test_control import Control

# The options each verb takes (docs/control-plane.md "sluice ctl"), as its --help lists them.
VERB_OPTIONS = {
    "apply": ["-f, --filename, --file", "-m, --reason", "--dry-run", "--emergency", "-o, --output"],
    "diff": ["-f, --filename, --file"],
    "get": ["-o, --output"],
    "delete": ["-m, --reason", "--dry-run", "--emergency", "-o, --output"],
    "versions": ["--limit", "-o, --output"],
    "rollback": ["-m, --reason", "--dry-run", "--emergency", "-o, --output"],
    "instances": ["--service", "-o, --output"],
    "gateways": ["-o, --output"],
    "events": ["--limit", "--after", "-o, --output"],
    "tokens": ["-o, --output", "--role"],
    "changes": ["--state", "-o, --output"],
    "change": ["-m, --reason", "-o, --output"],
    "releases": ["-o, --output"],
    "release": ["-m, --reason", "-o, --output"],
    "probes": ["-o, --output"],
    "slos": ["-o, --output"],
    "alerts": ["--all", "-o, --output"],
}

# A misspelling of one of the verb's own options, and the name it should suggest.
MISSPELT = {
    "apply": (["-f", "x.yaml", "--dry-rn"], "--dry-run"),
    "diff": (["--filenme", "x.yaml"], "--filename"),
    "get": (["all", "--outpt", "json"], "--output"),
    "delete": (["route", "r", "--reasn", "x"], "--reason"),
    "versions": (["--limt", "3"], "--limit"),
    "rollback": (["1", "--dryrun"], "--dry-run"),
    "instances": (["--servic", "pay"], "--service"),
    "gateways": (["--ouput", "wide"], "--output"),
    "events": (["--aftr", "7"], "--after"),
    "tokens": (["create", "ci", "--rol", "viewer"], "--role"),
}


def run(*args, stdin=None):
    env = {k: v for k, v in os.environ.items() if not k.startswith("SLUICE_")}
    env["HOME"] = "/nonexistent"  # no ~/.config/sluice/ctl.yaml
    env.pop("XDG_CONFIG_HOME", None)
    p = subprocess.run([BIN, *args], capture_output=True, text=True, timeout=30, env=env,
                       input=stdin, stdin=None if stdin is not None else subprocess.DEVNULL)
    return p.returncode, p.stdout, p.stderr


def options_section(help_text):
    """The lines under "options:" in a verb's help, up to the next blank line."""
    m = re.search(r"(?ms)^options:\n(.*?)\n\n", help_text)
    return m.group(1) if m else ""


class CtlUsageTest(unittest.TestCase):
    @classmethod
    def setUpClass(cls):
        require_binary()
        # Usage errors come before any request: a server that refuses connections would turn a
        # usage error that slipped through into exit 1 "cannot reach".
        cls.dead = DeadPort()
        cls.server = f"http://{cls.dead.address}"

    @classmethod
    def tearDownClass(cls):
        cls.dead.close()

    def ctl(self, *args):
        return run("ctl", "--server", self.server, *args)

    def usage_error(self, *args):
        rc, out, err = self.ctl(*args)
        self.assertEqual(rc, 2, f"ctl {' '.join(args)}: rc={rc}\n{out}\n{err}")
        self.assertEqual(out, "", "usage errors go to stderr only")
        self.assertIn("--help for usage", err)
        self.assertNotIn("cannot reach", err)
        return err

    def test_every_verb_lists_its_options_in_its_help(self):
        for verb, options in VERB_OPTIONS.items():
            with self.subTest(verb=verb):
                rc, out, err = self.ctl(verb, "--help")
                self.assertEqual(rc, 0, err)
                self.assertIn(f"usage: sluice ctl {verb}", out)
                listed = options_section(out)
                for option in options:
                    self.assertRegex(listed, rf"(?m)^  {re.escape(option)}\b",
                                     f"ctl {verb} --help does not list {option}:\n{out}")
                # Only its own: no option of another verb, no --help line.
                names = set(re.findall(r"(?m)^  (-[^\s,]+)", listed))
                names |= set(re.findall(r", (--?[\w-]+)", listed))
                own = {n for o in options for n in o.split(", ")}
                self.assertEqual(names - own, set(), f"ctl {verb} --help lists {names - own}")

    def test_tokens_subcommands_have_help(self):
        for sub in ("list", "create", "revoke"):
            with self.subTest(sub=sub):
                rc, out, err = self.ctl("tokens", sub, "--help")
                self.assertEqual(rc, 0, err)
                self.assertIn("usage: sluice ctl tokens", out)
                self.assertRegex(options_section(out), r"(?m)^  --role ROLE \(tokens create\)")

    def test_misspelt_option_on_each_verb_names_the_nearest(self):
        for verb, (args, nearest) in MISSPELT.items():
            with self.subTest(verb=verb):
                err = self.usage_error(verb, *args)
                wrong = next(a for a in args if a.startswith("--"))
                self.assertIn(f"unknown option '{wrong}' (did you mean '{nearest}'?)", err)

    def test_option_of_another_verb_is_refused(self):
        # Accepted and ignored before: `get --reason` recorded nothing, `gateways --limit`
        # limited nothing. Now a usage error that says which verbs take it.
        cases = [
            (["get", "services", "--reason", "x"], "--reason",
             "apply, delete, rollback, change, release, cmdb"),
            (["diff", "-f", "x.yaml", "--dry-run"], "--dry-run", "apply, delete, rollback, cmdb"),
            (["gateways", "--limit", "3"], "--limit", "versions, events, cmdb"),
            (["tokens", "list", "--role", "admin"], "--role", "tokens"),
            (["versions", "-f", "x.yaml"], "-f", "apply, diff, cmdb"),
            (["events", "--service", "pay"], "--service", "instances"),
        ]
        for args, option, takers in cases:
            with self.subTest(args=args):
                err = self.usage_error(*args)
                self.assertIn(f"option '{option}' does not apply here (it is an option of: "
                              f"{takers})", err)

    def test_output_values(self):
        err = self.usage_error("get", "all", "-o", "tall")
        self.assertIn("expected yaml, json or wide, got 'tall'", err)
        # Verbs that print text, not tables, have no -o wide.
        for verb in (["apply", "-f", "x.yaml", "--reason", "r"], ["delete", "route", "r", "-m", "r"],
                     ["rollback", "1", "--reason", "r"]):
            with self.subTest(verb=verb[0]):
                err = self.usage_error(*verb, "-o", "wide")
                self.assertIn("expected json or yaml, got 'wide'", err)

    def test_missing_values_and_words(self):
        self.assertIn("needs a value", self.usage_error("apply", "--reason", "r", "-f"))
        self.assertIn("--limit needs a value", self.usage_error("versions", "--limit"))
        # -f takes one value each time: the word after it is a word of the verb.
        err = self.usage_error("apply", "-f", "a.yaml", "b.yaml", "--reason", "r")
        self.assertIn("unexpected argument 'b.yaml'", err)
        self.assertIn("gateways takes no arguments", self.usage_error("gateways", "x"))
        self.assertIn("unexpected argument 'x'", self.usage_error("diff", "-f", "a.yaml", "x"))
        err = self.usage_error("tokens", "revok", "x")
        self.assertIn("unknown subcommand 'revok' (did you mean 'revoke'?)", err)
        err = self.usage_error("--bogus", "get", "all")
        self.assertIn("unknown option '--bogus'", err)
        # Words that name verbs are words: `get` is given the kind "tokens", not a second verb.
        self.assertIn("get: unknown kind 'tokens'", self.usage_error("get", "tokens", "create"))

    def test_no_verb(self):
        rc, out, err = self.ctl()
        self.assertEqual(rc, 2)
        self.assertIn("commands:", err)
        rc, out, err = self.ctl("help")
        self.assertEqual(rc, 0, err)
        self.assertIn("commands:", out)

    def test_global_options_after_the_verb(self):
        rc, out, err = run("ctl", "get", "services", "--server", self.server, "--token-file",
                           "/nonexistent/token")
        self.assertEqual(rc, 2, err)
        self.assertIn("/nonexistent/token", err)  # --token-file after the verb was read
        rc, out, err = run("ctl", "get", "services", "-s", self.server)
        self.assertEqual(rc, 1, err)
        self.assertIn(f"cannot reach control plane at {self.server}", err)
        # The last of a repeated option counts.
        rc, out, err = run("ctl", "--server", "http://127.0.0.1:1", "get", "all", "--server",
                           self.server)
        self.assertEqual(rc, 1, err)
        self.assertIn(f"cannot reach control plane at {self.server}", err)


class SwitchHelpTest(unittest.TestCase):
    def test_switch_help_names_every_option(self):
        require_binary()
        rc, out, err = run("gateway", "switch", "--help")
        self.assertEqual(rc, 0, err)
        for option in ("--admin HOST:PORT", "--from CITY", "--to CITY", "--shards RANGES",
                       "--timeout SECONDS", "--control-plane URL", "--token-file FILE",
                       "--admin-token-file FILE", "--ca-file PEM"):
            self.assertIn(option, out)
        rc, out, err = run("gateway", "switch", "--admin", "127.0.0.1:1", "--from", "a", "--to",
                           "b", "--timeout", "0")
        self.assertEqual(rc, 2, err)
        self.assertIn("--timeout", err)


class CtlSpellingsTest(SluiceTestCase):
    """Option values in every spelling, against a real control plane."""

    def setUp(self):
        super().setUp()
        self.cp = self.start(Control(self.dir))

    def ctl(self, *args):
        return run("ctl", "--server", self.cp.url, "--token-file", self.cp.token_file, *args)

    def test_inline_values_and_repeated_files(self):
        a = os.path.join(self.dir, "a.yaml")
        b = os.path.join(self.dir, "b.yaml")
        with open(a, "w") as f:
            f.write("kind: service\nname: delete\nspec: {endpoints: [{address: '127.0.0.1:9'}]}\n")
        with open(b, "w") as f:
            f.write("kind: route\nname: r\nspec: {match: {path_prefix: /}, service: delete}\n")
        rc, out, err = self.ctl("apply", f"-f{a}", "--filename", b, "--reason=two files", "-ojson")
        self.assertEqual(rc, 0, err)
        answer = json.loads(out)
        self.assertEqual(sorted(d["name"] for d in answer["diff"]), ["delete", "r"])
        v = self.cp.call("GET", "/v1/versions").json()
        self.assertEqual([x["reason"] for x in v], ["two files"])
        # -o yaml on a write verb: the answer as YAML.
        rc, out, err = self.ctl("apply", "--file", a, "-m", "again", "-o", "yml")
        self.assertEqual(rc, 0, err)
        self.assertRegex(out, r"(?m)^unchanged: true$")
        # A resource named like a verb: `get service delete` gets it, it deletes nothing.
        rc, out, err = self.ctl("get", "service", "delete", "-o", "json")
        self.assertEqual(rc, 0, err)
        self.assertEqual(json.loads(out)["name"], "delete")
        rc, out, err = self.ctl("delete", "route", "get", "--reason", "none such")
        self.assertEqual(rc, 1, err)
        self.assertIn("delete route/get refused", err)
        self.assertEqual(self.cp.call("GET", "/v1/resources/service/delete").status, 200)
        # --dry-run=false is a write; a repeated --reason counts once, the last.
        rc, out, err = self.ctl("delete", "route", "r", "--dry-run=false", "--reason", "x",
                                "--reason", "last")
        self.assertEqual(rc, 0, err)
        self.assertEqual(self.cp.call("GET", "/v1/versions").json()[0]["reason"], "last")
        self.assertEqual(self.cp.call("GET", "/v1/resources/route/r").status, 404)


if __name__ == "__main__":
    unittest.main()
