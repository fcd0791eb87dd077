"""A control-plane database written by an older build (one migration list for every table, before
the schema was split per domain service) opens in this build with all its data, migrates to
per-domain schema versions without running anything twice, and is marked so that the older build
refuses it afterwards instead of misreading it.

data/control-c14afe9/ holds a SQLite database (and its admin and viewer tokens) written by
sluice c14afe9, the last build with one list, through write_old_data() below. With SLUICE_OLD_BIN
set to such a binary, the data is also written live, on SQLite and on PostgreSQL, and the old
build's refusal of the migrated database is checked."""

import os
import shutil
import signal
import sqlite3
import time
import unittest

import pgserver
from harness import SluiceTestCase, wait_until
from test_control import Control, rt, svc

HERE = os.path.dirname(os.path.abspath(__file__))
FIXTURE = os.path.join(HERE, "data", "control-c14afe9")
OLD_BIN = os.environ.get("SLUICE_OLD_BIN")

# Domain -> schema version once migrated (control/<domain>/schema.cc).
DOMAINS = {"resources": 1, "registry": 2, "fleet": 1, "stats": 1, "tokens": 2, "changes": 2,
           "releases": 2, "cmdb": 1}


class OldControl(Control):
    """The control plane of another build, on the same config file layout."""

    def __init__(self, workdir, binary, store=None, name="control-old"):
        super().__init__(workdir, store=store)
        self.name = name
        self.stdout_path = os.path.join(workdir, f"{name}.stdout")
        self.stderr_path = os.path.join(workdir, f"{name}.stderr")
        self.argv = [binary] + self.argv[1:]


def write_old_data(cp):
    """Everything the old build stores, through its API. Returns the viewer token issued."""
    def ok(r, status=200):
        assert r.status == status, r
        return r.json()

    ok(cp.call("POST", "/v1/apply", {"reason": "first", "resources": [
        svc("accounts", "127.0.0.1:9101"), rt("acc", "accounts", "/acc")]}))
    ok(cp.call("POST", "/v1/apply", {"reason": "second", "resources": [
        svc("accounts", "127.0.0.1:9102")]}))
    ok(cp.call("POST", "/v1/instances", {"service": "pay", "id": "pay-1",
                                         "address": "127.0.0.1:9201", "ttl_ms": 3600000}))
    ok(cp.call("POST", "/v1/gateways/gw-a1/status",
               {"city": "a", "zone": "a1", "applied_version": "2.1", "status": "applied"}))
    ok(cp.call("POST", "/v1/events", [{"kind": "drill", "subject": "city-a"}]))
    ok(cp.call("POST", "/v1/stats", {"gateway": "gw-a1", "at_ms": int(time.time() * 1000),
                                     "services": {"accounts": {"requests": 5, "errors": 1}}}))
    viewer = ok(cp.call("POST", "/v1/tokens", {"name": "dashboards", "role": "viewer"}), 201)
    return viewer["token"]


def keep_everything(cp):
    """Retention long enough for the fixture's rollup and events, whatever its age."""
    with open(cp.config_path, "a") as f:
        f.write("stats: {retention: 87600h}\nevents: {retention: 87600h}\n")
    return cp


def stop(cp):
    cp.signal(signal.SIGTERM)
    assert cp.wait(30) == 0, cp.tail()


class UpgradeTest(SluiceTestCase):
    def check_old_data(self, cp, viewer, instance_may_have_expired=False):
        versions = cp.call("GET", "/v1/versions").json()
        self.assertEqual([v["number"] for v in versions], [2, 1])
        self.assertEqual([v["reason"] for v in versions], ["second", "first"])
        resources = cp.call("GET", "/v1/resources").json()
        self.assertEqual(resources["version"], 2)
        by_name = {(r["kind"], r["name"]): r["spec"] for r in resources["resources"]}
        self.assertEqual(by_name[("service", "accounts")],
                         {"endpoints": [{"address": "127.0.0.1:9102"}]})
        self.assertIn(("route", "acc"), by_name)
        gateways = cp.call("GET", "/v1/gateways").json()
        self.assertEqual([(g["id"], g["city"], g["applied_version"]) for g in gateways],
                         [("gw-a1", "a", 2)])
        events = cp.call("GET", "/v1/events").json()
        self.assertIn(("drill", "city-a"), [(e["kind"], e["subject"]) for e in events])
        instances = cp.call("GET", "/v1/instances").json()
        if instances or not instance_may_have_expired:
            self.assertEqual([(i["service"], i["id"]) for i in instances], [("pay", "pay-1")])
        else:  # the fixture is older than the instance's TTL: expired on the first sweep
            wait_until(lambda: any(e["kind"] == "instance_expired" and e["subject"] == "pay/pay-1"
                                   for e in cp.call("GET", "/v1/events").json()),
                       10, message="instance_expired event")
        stats = cp.call("GET", f"/v1/stats?from=0&to={int(time.time() * 1000) + 120000}").json()
        self.assertEqual([(r["gateway"], r["data"]["services"]["accounts"]["requests"])
                          for r in stats["rollups"]], [("gw-a1", 5)])
        # Tokens: the old viewer token still reads and still cannot write.
        self.assertEqual(cp.call("GET", "/v1/resources", token=viewer).status, 200)
        r = cp.call("POST", "/v1/apply", {"reason": "x", "resources": [svc("b", "127.0.0.1:9")]},
                    token=viewer)
        self.assertEqual(r.status, 403, r)
        # And the database takes new writes.
        r = cp.call("POST", "/v1/apply", {"reason": "after the upgrade",
                                          "resources": [svc("cards", "127.0.0.1:9301")]})
        self.assertEqual((r.status, r.json().get("version")), (200, 3), r)

    def check_sqlite_schema(self, path):
        db = sqlite3.connect(path)
        try:
            self.assertEqual(db.execute("SELECT MAX(version) FROM schema_migrations").fetchone()[0],
                             3)
            rows = db.execute("SELECT domain, MAX(version) FROM domain_migrations"
                              " GROUP BY domain").fetchall()
            self.assertEqual(dict(rows), DOMAINS)
        finally:
            db.close()

    def test_a_database_written_by_c14afe9_opens_with_its_data(self):
        for name in ("control.db", "admin.token", "viewer.token"):
            shutil.copy(os.path.join(FIXTURE, name), os.path.join(self.dir, name))
            os.chmod(os.path.join(self.dir, name), 0o600)  # git keeps 0644
        with open(os.path.join(self.dir, "viewer.token")) as f:
            viewer = f.read().strip()
        cp = self.start(keep_everything(Control(self.dir)))
        self.assertNotIn("admin token (saved", cp.log_text("stdout"))  # the old one is used
        self.check_old_data(cp, viewer, instance_may_have_expired=True)
        stop(cp)
        self.check_sqlite_schema(os.path.join(self.dir, "control.db"))
        # Opening it again migrates nothing and keeps everything.
        cp = self.start(keep_everything(Control(self.dir)))
        self.assertEqual(cp.call("GET", "/v1/resources").json()["version"], 3)

    @unittest.skipUnless(OLD_BIN, "SLUICE_OLD_BIN (an older sluice binary) not set")
    def test_live_upgrade_from_the_old_binary_on_sqlite(self):
        old = self.start(OldControl(self.dir, OLD_BIN))
        viewer = write_old_data(old)
        stop(old)
        cp = self.start(Control(self.dir))
        self.check_old_data(cp, viewer)
        stop(cp)
        self.check_sqlite_schema(os.path.join(self.dir, "control.db"))
        again = OldControl(self.dir, OLD_BIN, name="control-old-again")
        self.assert_old_build_refuses(again)

    def assert_old_build_refuses(self, proc):
        proc.start()
        self._procs.append(proc)
        self.addCleanup(proc.kill)
        self.assertNotEqual(proc.wait(30), 0)
        self.assertIn("database schema version 3 is newer than this build knows (2)",
                      proc.log_text())


@unittest.skipUnless(OLD_BIN, "SLUICE_OLD_BIN (an older sluice binary) not set")
class UpgradePostgresTest(UpgradeTest):
    @classmethod
    def setUpClass(cls):
        super().setUpClass()
        cls.pg = pgserver.start_for_class(cls)

    # The SQLite cases run in the class above.
    test_a_database_written_by_c14afe9_opens_with_its_data = None
    test_live_upgrade_from_the_old_binary_on_sqlite = None

    def test_live_upgrade_from_the_old_binary_on_postgres(self):
        store = self.pg.url(self.pg.create_database())
        old = self.start(OldControl(self.dir, OLD_BIN, store=store))
        viewer = write_old_data(old)
        stop(old)
        cp = self.start(Control(self.dir, store=store))
        self.check_old_data(cp, viewer)
        stop(cp)
        self.assert_old_build_refuses(OldControl(self.dir, OLD_BIN, store=store,
                                                 name="control-old-again"))


if __name__ == "__main__":
    unittest.main()
