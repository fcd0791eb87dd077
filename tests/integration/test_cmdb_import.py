"""The CMDB's declared data on a real control plane (docs/cmdb.md): `sluice ctl cmdb import` of a
YAML model and a CSV file, `cmdb get` as a table and as JSON, `cmdb history` with each change's
source and author; malformed imports (a bad CSV line, an unknown type, a relation between types
that may not be related, a key given twice) refused whole with every error listed by line and
column and nothing half-applied; a viewer may read but not import; a restarted control plane
keeps all of it; the demo's declared model (examples/cmdb/demo-model.yaml) imports."""

import json
import os
import signal
import subprocess

from harness import BIN, SOURCE_DIR, SluiceTestCase
from test_control import Control

MODEL = """\
cis:
  - {type: business_system, name: payments, owner: team-pay, criticality: high}
  - {type: application, name: pay-app, relations: {belongs_to: business_system/payments}}
  - {type: service, name: accounts, relations: {belongs_to: application/pay-app}}
  - {type: city, name: a}
  - {type: zone, name: a1, relations: {located_in: city/a}}
  - {type: host, hostname: h1, cpus: 8, relations: {located_in: zone/a1}}
  - {type: database, name: ledger, engine: postgresql}
---
cis:
  - type: instance
    id: accounts-1
    zone: a1
    relations: {belongs_to: service/accounts, runs_on: host/h1}
relations:
  - {from: service/accounts, relation: depends_on, to: database/ledger}
"""

HOSTS_CSV = "hostname,cpus,os\nh1,16,linux\nh2,4,\"linux, 6.1\"\n"


class CmdbImportTest(SluiceTestCase):
    def setUp(self):
        super().setUp()
        self.cp = self.start(Control(self.dir))
        self.home = os.path.join(self.dir, "home")
        os.makedirs(self.home)

    def write(self, name, text):
        path = os.path.join(self.dir, name)
        with open(path, "w") as f:
            f.write(text)
        return path

    def ctl(self, *args, token_file=None):
        cmd = [BIN, "ctl", "--server", f"http://{self.cp.address}",
               "--token-file", token_file or self.cp.token_file] + list(args)
        env = {k: v for k, v in os.environ.items() if not k.startswith("SLUICE_")}
        env["HOME"] = self.home
        env.pop("XDG_CONFIG_HOME", None)
        p = subprocess.run(cmd, capture_output=True, text=True, timeout=30, env=env,
                           stdin=subprocess.DEVNULL)
        return p.returncode, p.stdout, p.stderr

    def ok(self, *args):
        rc, out, err = self.ctl(*args)
        self.assertEqual(rc, 0, f"sluice ctl {' '.join(args)}: rc={rc}\n{out}\n{err}")
        return out

    def everything(self):
        r = self.cp.call("GET", "/v1/cmdb/cis")
        self.assertEqual(r.status, 200, r)
        return r.json()

    def test_import_get_history_and_restart(self):
        out = self.ok("cmdb", "import", "-f", self.write("model.yaml", MODEL), "--reason", "initial")
        self.assertIn("8 CIs and 7 relations read; 8 CIs added", out)

        table = self.ok("cmdb", "get", "host")
        self.assertIn("NAME", table.splitlines()[0])
        self.assertIn("CPUS", table.splitlines()[0])
        row = [l for l in table.splitlines() if l.startswith("h1 ")]
        self.assertEqual(len(row), 1, table)
        self.assertIn("8", row[0].split())
        self.assertIn("located_in zone/a1", row[0])

        inst = json.loads(self.ok("cmdb", "get", "instance", "accounts-1", "-o", "json"))
        self.assertEqual(inst["attributes"]["zone"][0],
                         {"value": "a1", "source": "declared",
                          "last_seen_ms": inst["attributes"]["zone"][0]["last_seen_ms"]})
        self.assertEqual(sorted((r["relation"], r["to"]) for r in inst["relations"]),
                         [("belongs_to", "service/accounts"), ("runs_on", "host/h1")])
        one = self.ok("cmdb", "get", "host", "h1")
        self.assertIn("<- instance/accounts-1", one)

        # A CSV of hosts (the type given for the file) changes h1's CPUs and adds h2.
        out = self.ok("cmdb", "import", "-f", self.write("hosts.csv", HOSTS_CSV), "--type", "host",
                      "--reason", "inventory sync")
        self.assertIn("1 CIs added", out)
        hist = json.loads(self.ok("cmdb", "history", "host/h1", "-o", "json"))["history"]
        self.assertEqual(sorted((h["field"], str(h["old"]), h["new"], h["source"]) for h in hist[:2]),
                         [("cpus", "8", 16, "declared"), ("os", "None", "linux", "declared")])
        self.assertEqual({h["reason"] for h in hist[:2]}, {"inventory sync"})
        self.assertEqual({h["actor"] for h in hist}, {"admin"})
        self.assertEqual(hist[-1]["what"], "ci")
        table = self.ok("cmdb", "history", "host", "h1")
        self.assertIn("FIELD", table.splitlines()[0])
        self.assertTrue(any(l.split()[2:5] == ["cpus", "8", "16"] for l in table.splitlines()),
                        table)

        # Read-only for a viewer.
        r = self.cp.call("POST", "/v1/tokens", {"name": "dash", "role": "viewer"})
        viewer = self.write("viewer.token", r.json()["token"])
        rc, out, err = self.ctl("cmdb", "get", "host", token_file=viewer)
        self.assertEqual(rc, 0, err)
        rc, out, err = self.ctl("cmdb", "import", "-f", os.path.join(self.dir, "model.yaml"),
                                token_file=viewer)
        self.assertEqual(rc, 1)
        self.assertIn("role", err)

        before = self.everything()
        history_before = self.cp.call("GET", "/v1/cmdb/history/host/h1").json()
        self.cp.signal(signal.SIGTERM)
        self.cp.wait(15)
        self.cp = self.start(Control(self.dir))
        self.assertEqual(self.everything(), before)
        self.assertEqual(self.cp.call("GET", "/v1/cmdb/history/host/h1").json(), history_before)
        # Re-importing the last file after the restart changes nothing; the first one puts h1's
        # CPUs back to 8 (one value, one history row).
        out = self.ok("cmdb", "import", "-f", os.path.join(self.dir, "hosts.csv"), "--type", "host")
        self.assertIn("0 CIs added, 0 values changed, 0 relations added, 0 removed, 0 history rows", out)
        out = self.ok("cmdb", "import", "-f", os.path.join(self.dir, "model.yaml"))
        self.assertIn("0 CIs added, 1 values changed, 0 relations added, 0 removed, 1 history rows", out)

    def test_the_demo_model_imports(self):
        path = os.path.join(SOURCE_DIR, "examples", "cmdb", "demo-model.yaml")
        out = self.ok("cmdb", "import", "-f", path, "--reason", "declared model")
        self.assertIn("22 CIs added", out)
        gw = json.loads(self.ok("cmdb", "get", "gateway", "gw-a1", "-o", "json"))
        self.assertEqual(sorted(r["to"] for r in gw["relations"]),
                         ["city/a", "route/accounts-api", "route/payments-api", "zone/a1"])
        route = json.loads(self.ok("cmdb", "get", "route", "accounts-api", "-o", "json"))
        self.assertEqual(sorted(r["from"] for r in route["in"]), ["gateway/gw-a1", "gateway/gw-b1"])

    def test_malformed_imports_are_refused_whole(self):
        self.ok("cmdb", "import", "-f", self.write("model.yaml", MODEL))
        before = self.everything()
        cases = {
            "bad-line.csv": ("type,hostname,cpus\nhost,h5,4\nhost,h6\nhost,h7,\"4\"x\n",
                             ["line 3, column 1: expected 3 fields (as the header), got 2",
                              "line 4, column 12: unexpected text after a closing quote"]),
            "unknown-type.yaml": ("cis:\n  - {type: host, hostname: h5}\n  - {type: spaceship, name: x}\n",
                                  ["line 3, column 5: spaceship: unknown type 'spaceship'"]),
            "disallowed.csv": ("from_type,from_key,relation,to_type,to_key\n"
                               "instance,accounts-1,runs_on,host,h1\n"
                               "host,h1,runs_on,city,a\n",
                               ["line 3, column 1: relation host/h1 runs_on city/a: not allowed: "
                                "host runs_on city"]),
            "duplicate.csv": ("type,hostname,cpus\nhost,h5,4\nhost,h5,8\n",
                              ["line 3, column 1: host/h5: duplicate key: declared twice in this import"]),
            "all-at-once.yaml": ("cis:\n"
                                 "  - {type: host, hostname: h5}\n"
                                 "  - {type: spaceship, name: x}\n"
                                 "  - {type: host, hostname: h5}\n"
                                 "  - {type: host, hostname: h6, cpus: lots}\n"
                                 "relations:\n"
                                 "  - {from: host/h1, relation: runs_on, to: city/a}\n",
                                 ["line 3, column 5: spaceship: unknown type 'spaceship'",
                                  "line 4, column 5: host/h5: duplicate key: declared twice in this import",
                                  "line 5, column 38: host: cpus: must be int",
                                  "line 7, column 5: relation host/h1 runs_on city/a: not allowed: "
                                  "host runs_on city"]),
        }
        for name, (text, errors) in cases.items():
            with self.subTest(file=name):
                rc, out, err = self.ctl("cmdb", "import", "-f", self.write(name, text))
                self.assertEqual(rc, 1, out + err)
                self.assertIn(f"import refused: {len(errors)} error", err)
                listed = [l.strip() for l in err.splitlines() if l.startswith("  ")]
                self.assertEqual(listed, errors, err)
                self.assertEqual(self.everything(), before)
        # The API refuses the same way, with the errors in the body.
        r = self.cp.call("POST", "/v1/cmdb/import",
                         {"format": "csv", "data": cases["duplicate.csv"][0]})
        self.assertEqual(r.status, 400, r)
        self.assertEqual(r.json()["errors"], cases["duplicate.csv"][1])
        r = self.cp.call("POST", "/v1/cmdb/import", b"{not json")
        self.assertEqual(r.status, 400, r)
        self.assertEqual(self.everything(), before)
        self.assertEqual(self.cp.call("GET", "/v1/cmdb/history/host/h5").status, 404)


if __name__ == "__main__":
    import unittest
    unittest.main()
