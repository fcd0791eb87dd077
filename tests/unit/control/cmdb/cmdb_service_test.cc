// The CMDB's API through the router: import (YAML, CSV, dry run, refusals listed whole and
// nothing half-applied), reads of CIs and types, history with sources, roles; and the Cmdb
// interface the reconciler uses (record observed values, load the Graph).
#include "control/cmdb/cmdb_service.h"

#include "unit/control/api_fixture.h"

namespace sluice::control::test {
namespace {

using ::testing::ElementsAre;

const char* kModel = R"(cis:
  - {type: business_system, name: payments, owner: team-pay, criticality: high}
  - {type: application, name: pay-app, relations: {belongs_to: business_system/payments}}
  - {type: service, name: accounts, relations: {belongs_to: application/pay-app}}
  - {type: city, name: a}
  - {type: zone, name: a1, relations: {located_in: city/a}}
  - {type: host, hostname: h1, cpus: 8, relations: {located_in: zone/a1}}
  - type: instance
    id: i-1
    zone: a1
    relations: {belongs_to: service/accounts, runs_on: host/h1}
)";

Json import_body(const std::string& data, const std::string& format = "yaml") {
  return {{"format", format}, {"data", data}, {"reason", "initial model"}};
}

TEST_F(ApiTest, CmdbImportThenRead) {
  Pending p = call("POST", "/v1/cmdb/import", import_body(kModel));
  ASSERT_EQ(p.status(), 200) << p.body();
  Json r = p.json();
  EXPECT_EQ(r["cis_added"], 7);
  EXPECT_EQ(r["relations_added"], 6);
  EXPECT_EQ(r["written"], true);
  EXPECT_EQ(r["cis"], 7);

  Json hosts = call("GET", "/v1/cmdb/cis?type=host", nullptr, "viewer").json();
  ASSERT_EQ(hosts["cis"].size(), 1u);
  EXPECT_EQ(hosts["cis"][0]["key"], "h1");
  EXPECT_EQ(hosts["cis"][0]["attributes"]["cpus"][0]["value"], 8);
  EXPECT_EQ(hosts["cis"][0]["attributes"]["cpus"][0]["source"], "declared");
  EXPECT_EQ(hosts["cis"][0]["attributes"]["cpus"][0]["last_seen_ms"], kStart);
  EXPECT_EQ(call("GET", "/v1/cmdb/cis/host", nullptr, "viewer").json(), hosts);

  Json inst = call("GET", "/v1/cmdb/cis/instance/i-1", nullptr, "viewer").json();
  EXPECT_EQ(inst["relations"].size(), 2u);
  Json h1 = call("GET", "/v1/cmdb/cis/host/h1", nullptr, "viewer").json();
  ASSERT_EQ(h1["in"].size(), 1u);
  EXPECT_EQ(h1["in"][0]["from"], "instance/i-1");
  EXPECT_EQ(h1["in"][0]["relation"], "runs_on");

  EXPECT_EQ(call("GET", "/v1/cmdb/cis/host/h9", nullptr, "viewer").status(), 404);
  EXPECT_EQ(call("GET", "/v1/cmdb/cis/spaceship", nullptr, "viewer").status(), 404);
  EXPECT_EQ(call("GET", "/v1/cmdb/cis", nullptr, "viewer").json()["cis"].size(), 7u);
  Json limited = call("GET", "/v1/cmdb/cis?limit=2", nullptr, "viewer").json();
  EXPECT_EQ(limited["cis"].size(), 2u);
  EXPECT_EQ(limited["truncated"], true);
  EXPECT_EQ(call("GET", "/v1/cmdb/cis?limit=0", nullptr, "viewer").status(), 400);

  Json types = call("GET", "/v1/cmdb/types", nullptr, "viewer").json();
  EXPECT_EQ(types["types"].size(), 11u);
  EXPECT_FALSE(types["relations"].empty());
}

TEST_F(ApiTest, CmdbImportRolesAndBody) {
  EXPECT_EQ(call("POST", "/v1/cmdb/import", import_body(kModel), "viewer").status(), 403);
  EXPECT_EQ(call("GET", "/v1/cmdb/cis", nullptr, "").status(), 401);
  Pending bad = call("POST", "/v1/cmdb/import", {{"format", "xml"}, {"data", 5}, {"colour", 1}});
  EXPECT_EQ(bad.status(), 400);
  EXPECT_GE(bad.json()["errors"].size(), 3u) << bad.body();
  Pending huge =
      call("POST", "/v1/cmdb/import", import_body(std::string(cmdb::kMaxImportBytes + 1, '#')));
  EXPECT_EQ(huge.status(), 400);
  EXPECT_THAT(huge.body(), HasSubstr("at most"));
  EXPECT_EQ(
      call("POST", "/v1/cmdb/import", {{"format", "yaml"}, {"data", "cis: []"}, {"type", "host"}})
          .status(),
      400);
}

TEST_F(ApiTest, CmdbMalformedImportsAreRefusedWholeWithEveryError) {
  ASSERT_EQ(call("POST", "/v1/cmdb/import", import_body(kModel)).status(), 200);
  Json before = call("GET", "/v1/cmdb/cis", nullptr, "viewer").json();

  // A bad CSV line among good ones: nothing of the file is applied.
  Pending csv =
      call("POST", "/v1/cmdb/import",
           import_body("type,hostname,cpus\nhost,h2,4\nhost,h3\nhost,h4,\"4\"x\n", "csv"));
  ASSERT_EQ(csv.status(), 400);
  EXPECT_THAT(csv.json()["errors"],
              ElementsAre("line 3, column 1: expected 3 fields (as the header), got 2",
                          "line 4, column 12: unexpected text after a closing quote"));

  // Unknown type, disallowed relation pair, duplicate key, ill-typed value: all listed.
  Pending model = call("POST", "/v1/cmdb/import", import_body(R"(cis:
  - {type: host, hostname: h2}
  - {type: spaceship, name: x}
  - {type: host, hostname: h2}
  - {type: host, hostname: h5, cpus: many}
relations:
  - {from: host/h1, relation: runs_on, to: city/a}
)"));
  ASSERT_EQ(model.status(), 400) << model.body();
  Json errors = model.json()["errors"];
  EXPECT_EQ(model.json()["error"], "import refused: 4 errors");
  EXPECT_THAT(
      errors,
      ElementsAre(
          "line 3, column 5: spaceship: unknown type 'spaceship'",
          "line 4, column 5: host/h2: duplicate key: declared twice in this import",
          "line 5, column 38: host: cpus: must be int",
          "line 7, column 5: relation host/h1 runs_on city/a: not allowed: host runs_on city"));
  EXPECT_EQ(call("GET", "/v1/cmdb/cis", nullptr, "viewer").json(), before);
  EXPECT_EQ(call("GET", "/v1/cmdb/history/host/h2", nullptr, "viewer").status(), 404);
}

TEST_F(ApiTest, CmdbControlCharactersInValuesAreRefused) {
  // NUL cannot be stored as text (PostgreSQL refuses it): a 400 naming the place, not a 503.
  Pending p =
      call("POST", "/v1/cmdb/import",
           import_body(std::string("cis:\n  - {type: host, hostname: h1, os: \"a\\0b\"}\n")));
  ASSERT_EQ(p.status(), 400) << p.body();
  EXPECT_THAT(
      p.json()["errors"],
      ElementsAre("line 2, column 36: host: os: at most 4096 bytes, without control characters"));
  Json csv = {{"format", "csv"},
              {"type", "host"},
              {"data", std::string("hostname,os\nh1,a\x01"
                                   "b\n")}};
  p = call("POST", "/v1/cmdb/import", csv);
  ASSERT_EQ(p.status(), 400) << p.body();
  EXPECT_EQ(call("GET", "/v1/cmdb/cis/host/h1", nullptr, "viewer").status(), 404);
}

TEST_F(ApiTest, CmdbErrorListIsBounded) {
  std::string data = "type,hostname,cpus\n";
  for (int i = 0; i < 1500; ++i) data += "host,h" + std::to_string(i) + ",x\n";
  Pending p = call("POST", "/v1/cmdb/import", import_body(data, "csv"));
  ASSERT_EQ(p.status(), 400);
  EXPECT_EQ(p.json()["error"], "import refused: 1500 errors");
  ASSERT_EQ(p.json()["errors"].size(), 1001u);
  EXPECT_EQ(p.json()["errors"][1000], "... and 500 more errors");
}

TEST_F(ApiTest, CmdbDryRunWritesNothing) {
  Pending p = call(
      "POST", "/v1/cmdb/import",
      {{"format", "csv"}, {"type", "host"}, {"data", "hostname,cpus\nh7,2\n"}, {"dry_run", true}});
  ASSERT_EQ(p.status(), 200) << p.body();
  EXPECT_EQ(p.json()["cis_added"], 1);
  EXPECT_EQ(p.json()["written"], false);
  EXPECT_EQ(call("GET", "/v1/cmdb/cis/host/h7", nullptr, "viewer").status(), 404);
  p = call("POST", "/v1/cmdb/import",
           {{"format", "csv"}, {"type", "host"}, {"data", "hostname,cpus\nh7,2\n"}});
  ASSERT_EQ(p.status(), 200) << p.body();
  EXPECT_EQ(call("GET", "/v1/cmdb/cis/host/h7", nullptr, "viewer").status(), 200);
}

TEST_F(ApiTest, CmdbHistoryKeepsEveryChangeWithSourceAndActor) {
  ASSERT_EQ(call("POST", "/v1/cmdb/import", import_body(kModel)).status(), 200);
  advance(1000);
  // Re-importing the same file changes nothing and writes no history.
  Pending same = call("POST", "/v1/cmdb/import", import_body(kModel));
  ASSERT_EQ(same.status(), 200);
  EXPECT_EQ(same.json()["values_changed"], 0);
  EXPECT_EQ(same.json()["history"], 0);
  advance(1000);
  ASSERT_EQ(call("POST", "/v1/cmdb/import",
                 {{"format", "csv"},
                  {"type", "host"},
                  {"data", "hostname,cpus\nh1,16\n"},
                  {"reason", "upgrade"}})
                .status(),
            200);
  Json h = call("GET", "/v1/cmdb/history/host/h1", nullptr, "viewer").json()["history"];
  ASSERT_EQ(h.size(), 5u) << h.dump();  // created, hostname, cpus, located_in; then cpus 8 -> 16
  EXPECT_EQ(h[0]["field"], "cpus");
  EXPECT_EQ(h[0]["old"], 8);
  EXPECT_EQ(h[0]["new"], 16);
  EXPECT_EQ(h[0]["source"], "declared");
  EXPECT_EQ(h[0]["actor"], "deployer");
  EXPECT_EQ(h[0]["reason"], "upgrade");
  EXPECT_EQ(h[0]["at_ms"], kStart + 2000);
  EXPECT_EQ(h[4]["what"], "ci");
  EXPECT_EQ(
      call("GET", "/v1/cmdb/history/host/h1?limit=1", nullptr, "viewer").json()["history"].size(),
      1u);
  Json older =
      call("GET", "/v1/cmdb/history/host/h1?before=" + std::to_string(h[0]["id"].get<int64_t>()),
           nullptr, "viewer")
          .json()["history"];
  EXPECT_EQ(older.size(), 4u);
}

TEST_F(ApiTest, CmdbRecordObservedValuesForTheReconciler) {
  ASSERT_EQ(call("POST", "/v1/cmdb/import", import_body(kModel)).status(), 200);
  // A Cmdb of its own on the same store (as the reconciler's, or another control plane's): the
  // API's cached model follows its writes through the store's CMDB revision.
  cmdb::Cmdb db(*store_);
  const int64_t rev = db.revision();

  cmdb::Observed o;
  o.source = cmdb::Source::kRegistry;
  o.seen_ms = kStart + 500;
  o.cis.push_back({"instance", "i-1", {{"zone", cmdb::Value(std::string("a2"))}}});
  o.cis.push_back({"instance", "i-2", {{"zone", cmdb::Value(std::string("a1"))}}});
  o.relations.push_back({cmdb::RelationKind::kBelongsTo, "instance", "i-2", "service", "accounts"});
  auto r = db.record(o, {"reconciler", "", 42});
  ASSERT_TRUE(r.errors.empty()) << r.to_json().dump();
  EXPECT_EQ(r.cis_added, 1);
  EXPECT_EQ(r.values_changed, 2);
  EXPECT_GT(db.revision(), rev);

  cmdb::Graph g = db.load();
  auto i1 = *g.find("instance", "i-1");
  auto zone = *g.schema().type(g.ci(i1).type).attribute("zone");
  EXPECT_EQ(std::get<std::string>(g.declared(i1, zone)->value), "a1");
  EXPECT_EQ(std::get<std::string>(g.observed(i1, zone)->value), "a2");
  EXPECT_EQ(g.observed(i1, zone)->last_seen_ms, kStart + 500);

  Json h = call("GET", "/v1/cmdb/history/instance/i-1", nullptr, "viewer").json()["history"];
  EXPECT_EQ(h[0]["source"], "registry");
  EXPECT_EQ(h[0]["new"], "a2");
  EXPECT_EQ(h[0]["change"], 42);

  // The same observation later only moves last_seen: no history row.
  o.seen_ms = kStart + 900;
  o.cis.pop_back();
  o.relations.clear();
  r = db.record(o, {"reconciler", "", 0});
  EXPECT_EQ(r.values_changed, 0);
  EXPECT_EQ(r.history, 0);
  EXPECT_EQ(db.load().observed(i1, zone)->last_seen_ms, kStart + 900);
  // Nothing new at all (the same time again): no statement, the revision stays.
  const int64_t rev2 = db.revision();
  r = db.record(o, {"reconciler", "", 0});
  EXPECT_TRUE(r.errors.empty());
  EXPECT_EQ(db.revision(), rev2);

  // A relation no longer observed goes; bad facts are refused whole.
  cmdb::Observed gone;
  gone.source = cmdb::Source::kRegistry;
  gone.seen_ms = kStart + 1000;
  gone.gone.push_back({cmdb::RelationKind::kBelongsTo, "instance", "i-2", "service", "accounts"});
  EXPECT_EQ(db.record(gone, {"reconciler", "", 0}).relations_removed, 1);
  cmdb::Observed bad;
  bad.source = cmdb::Source::kAgent;
  bad.cis.push_back(
      {"host", "h9", {{"cpus", cmdb::Value(std::string("eight"))}, {"colour", cmdb::Value(true)}}});
  bad.cis.push_back({"spaceship", "x", {}});
  bad.cis.push_back({"host", "has space", {}});
  bad.cis.push_back({"host", "a/b", {}});
  bad.relations.push_back({cmdb::RelationKind::kServes, "host", "h1", "city", "a"});
  r = db.record(bad, {"reconciler", "", 0});
  EXPECT_EQ(r.errors.size(), 6u) << r.to_json().dump();
  EXPECT_THAT(r.to_json()["errors"].dump(), HasSubstr("host/has space: bad key"));
  EXPECT_FALSE(db.load().find("host", "h9"));
}

TEST_F(ApiTest, CmdbConfiguredTypes) {
  Pending p = call("POST", "/v1/cmdb/import", import_body(R"(types:
  - name: queue
    key: [name]
    attributes: [{name: name}, {name: depth, type: int, required: true}]
    relations: [{kind: belongs_to, to: application}]
cis:
  - {type: application, name: pay-app}
  - {type: queue, name: orders, depth: 10, relations: {belongs_to: application/pay-app}}
)"));
  ASSERT_EQ(p.status(), 200) << p.body();
  EXPECT_EQ(p.json()["types_changed"], 1);
  Json q = call("GET", "/v1/cmdb/cis/queue/orders", nullptr, "viewer").json();
  EXPECT_EQ(q["attributes"]["depth"][0]["value"], 10);
  // A missing required attribute of the configured type is refused.
  Pending missing =
      call("POST", "/v1/cmdb/import", import_body("cis: [{type: queue, name: refunds}]\n"));
  ASSERT_EQ(missing.status(), 400);
  EXPECT_THAT(missing.body(), HasSubstr("queue/refunds: depth: required"));
  // The type survives (it is read back from the store by a fresh Cmdb).
  cmdb::Cmdb fresh(*store_);
  EXPECT_TRUE(fresh.load().schema().find_type("queue"));
  EXPECT_TRUE(fresh.load().find("queue", "orders"));
}

}  // namespace
}  // namespace sluice::control::test
