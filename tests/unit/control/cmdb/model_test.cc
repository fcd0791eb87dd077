#include "control/cmdb/model.h"

#include <gtest/gtest.h>

#include <algorithm>

namespace sluice::control::cmdb {
namespace {

bool has_error(const std::vector<ModelError>& errors, std::string_view needle) {
  return std::any_of(errors.begin(), errors.end(), [&](const ModelError& e) {
    return e.to_string().find(needle) != std::string::npos;
  });
}

std::string all(const std::vector<ModelError>& errors) {
  std::string out;
  for (const auto& e : errors) out += e.to_string() + "\n";
  return out;
}

CiDraft ci(std::string type, std::vector<std::pair<std::string, std::string>> attrs, int line = 0) {
  CiDraft d;
  d.type = std::move(type);
  d.attributes = std::move(attrs);
  d.at = {line, 1};
  return d;
}

RelationDraft rel(std::string ft, std::string fk, std::string kind, std::string tt, std::string tk,
                  int line = 0) {
  return {std::move(ft), std::move(fk), std::move(kind), std::move(tt), std::move(tk), {line, 1}};
}

TEST(CmdbModel, EnumsRoundTrip) {
  for (auto s :
       {Source::kDeclared, Source::kRegistry, Source::kGateway, Source::kTraffic, Source::kAgent}) {
    EXPECT_EQ(parse_source(to_string(s)), s);
  }
  EXPECT_FALSE(parse_source("guess"));
  EXPECT_EQ(parse_relation_kind("depends_on"), RelationKind::kDependsOn);
  EXPECT_FALSE(parse_relation_kind("likes"));
  EXPECT_EQ(parse_value_type("number"), ValueType::kNumber);
  EXPECT_FALSE(is_observed(Source::kDeclared));
  EXPECT_TRUE(is_observed(Source::kTraffic));
}

TEST(CmdbModel, ParseValueIsStrict) {
  EXPECT_EQ(parse_value(ValueType::kInt, "42"), Value(std::int64_t{42}));
  EXPECT_FALSE(parse_value(ValueType::kInt, "42x"));
  EXPECT_FALSE(parse_value(ValueType::kInt, ""));
  EXPECT_FALSE(parse_value(ValueType::kInt, "99999999999999999999"));
  EXPECT_EQ(parse_value(ValueType::kNumber, "0.5"), Value(0.5));
  EXPECT_FALSE(parse_value(ValueType::kNumber, "nan"));
  EXPECT_FALSE(parse_value(ValueType::kNumber, "inf"));
  EXPECT_EQ(parse_value(ValueType::kBool, "true"), Value(true));
  EXPECT_FALSE(parse_value(ValueType::kBool, "yes"));
  EXPECT_FALSE(parse_value(ValueType::kString, std::string(kMaxValueBytes + 1, 'x')));
  EXPECT_EQ(to_text(Value(0.25)), "0.25");
  EXPECT_EQ(to_text(*parse_value(ValueType::kNumber, to_text(Value(1.0 / 3)))),
            to_text(Value(1.0 / 3)));
}

TEST(CmdbModel, BuiltinsHaveElevenTypesWithKeys) {
  Schema s = Schema::builtins();
  EXPECT_EQ(s.type_count(), 11u);
  for (auto name : {"business_system", "application", "service", "instance", "host", "gateway",
                    "city", "zone", "route", "channel", "database"}) {
    auto t = s.find_type(name);
    ASSERT_TRUE(t) << name;
    EXPECT_FALSE(s.type(*t).key.empty());
  }
  auto inst = *s.find_type("instance");
  auto host = *s.find_type("host");
  EXPECT_EQ(s.type(inst).attributes[s.type(inst).key[0]].name, "id");
  EXPECT_EQ(s.type(host).attributes[s.type(host).key[0]].name, "hostname");
  ASSERT_NE(s.rule(RelationKind::kRunsOn, inst, host), nullptr);
  EXPECT_EQ(s.rule(RelationKind::kRunsOn, inst, host)->cardinality, Cardinality::kAtMostOne);
  EXPECT_EQ(s.rule(RelationKind::kRunsOn, host, inst), nullptr);
}

TEST(CmdbModel, ValuesKeepSourceAndTime) {
  Graph g;
  auto inst = *g.schema().find_type("instance");
  auto zone = *g.schema().type(inst).attribute("zone");
  CiId i = g.upsert_ci(inst, "i-1");
  EXPECT_EQ(g.upsert_ci(inst, "i-1"), i);
  EXPECT_TRUE(g.set_value(i, zone, Source::kDeclared, Value(std::string("a1")), 100).changed);
  auto c = g.set_value(i, zone, Source::kRegistry, Value(std::string("a2")), 200);
  EXPECT_TRUE(c.changed);
  EXPECT_FALSE(c.old_value);
  ASSERT_NE(g.declared(i, zone), nullptr);
  EXPECT_EQ(std::get<std::string>(g.declared(i, zone)->value), "a1");
  ASSERT_NE(g.observed(i, zone), nullptr);
  EXPECT_EQ(std::get<std::string>(g.observed(i, zone)->value), "a2");
  EXPECT_EQ(g.observed(i, zone)->last_seen_ms, 200);
  // The same value again only moves last_seen.
  c = g.set_value(i, zone, Source::kRegistry, Value(std::string("a2")), 300);
  EXPECT_FALSE(c.changed);
  EXPECT_EQ(g.observed(i, zone)->last_seen_ms, 300);
  // A change reports the old value.
  c = g.set_value(i, zone, Source::kRegistry, Value(std::string("a3")), 400);
  EXPECT_TRUE(c.changed);
  EXPECT_EQ(std::get<std::string>(*c.old_value), "a2");
  // The freshest observed source wins observed().
  g.set_value(i, zone, Source::kAgent, Value(std::string("a4")), 500);
  EXPECT_EQ(std::get<std::string>(g.observed(i, zone)->value), "a4");
  EXPECT_TRUE(g.clear_value(i, zone, Source::kAgent));
  EXPECT_FALSE(g.clear_value(i, zone, Source::kAgent));
  EXPECT_EQ(std::get<std::string>(g.observed(i, zone)->value), "a3");
}

TEST(CmdbModel, AdjacencyBothWaysAndRemoval) {
  Graph g;
  auto& s = g.schema();
  CiId svc = g.upsert_ci(*s.find_type("service"), "accounts");
  CiId i1 = g.upsert_ci(*s.find_type("instance"), "i-1");
  CiId i2 = g.upsert_ci(*s.find_type("instance"), "i-2");
  auto r1 = g.upsert_relation(RelationKind::kBelongsTo, i1, svc, Source::kDeclared, 1);
  auto r2 = g.upsert_relation(RelationKind::kBelongsTo, i2, svc, Source::kRegistry, 2);
  EXPECT_EQ(g.upsert_relation(RelationKind::kBelongsTo, i1, svc, Source::kDeclared, 5), r1);
  EXPECT_EQ(g.relation(r1).last_seen_ms, 5);
  // The same edge from another source is another relation.
  auto r3 = g.upsert_relation(RelationKind::kBelongsTo, i1, svc, Source::kRegistry, 6);
  EXPECT_NE(r3, r1);
  EXPECT_EQ(g.in(svc).size(), 3u);
  EXPECT_EQ(g.out(i1).size(), 2u);
  EXPECT_TRUE(g.remove_relation(r2));
  EXPECT_FALSE(g.remove_relation(r2));
  EXPECT_FALSE(g.alive(r2));
  EXPECT_EQ(g.in(svc).size(), 2u);
  EXPECT_TRUE(g.out(i2).empty());
  EXPECT_EQ(g.relation_count(), 2u);
  EXPECT_EQ(g.of_type(*s.find_type("instance")).size(), 2u);
  EXPECT_EQ(g.find("instance", "i-2"), i2);
  EXPECT_FALSE(g.find("instance", "i-3"));
  EXPECT_FALSE(g.find("nope", "i-1"));
}

TEST(CmdbModel, ValidateReportsEveryError) {
  Graph g;
  auto& s = g.schema();
  auto inst = *s.find_type("instance");
  auto host = *s.find_type("host");
  auto city = *s.find_type("city");
  CiId i = g.upsert_ci(inst, "i-1");
  CiId h1 = g.upsert_ci(host, "h1");
  CiId h2 = g.upsert_ci(host, "h2");
  CiId c = g.upsert_ci(city, "a");
  g.set_value(i, *s.type(inst).attribute("started_ms"), Source::kRegistry,
              Value(std::string("soon")), 1);
  g.set_value(i, *s.type(inst).attribute("id"), Source::kDeclared, Value(std::string("i-9")), 1);
  g.upsert_relation(RelationKind::kRunsOn, i, h1, Source::kDeclared, 1);
  g.upsert_relation(RelationKind::kRunsOn, i, h2, Source::kDeclared, 1);
  g.upsert_relation(RelationKind::kRunsOn, i, h2, Source::kRegistry, 1);  // another source: fine
  g.upsert_relation(RelationKind::kServes, c, h1, Source::kDeclared, 1);  // not allowed
  g.upsert_ci(host, "bad key");
  auto errors = g.validate();
  std::string text = all(errors);
  EXPECT_TRUE(has_error(errors, "instance/i-1: started_ms: must be int")) << text;
  EXPECT_TRUE(has_error(errors, "instance/i-1: id: is a key attribute and must equal 'i-1'"))
      << text;
  EXPECT_TRUE(has_error(errors, "instance/i-1: runs_on host: at most one (declared), has 2"))
      << text;
  EXPECT_FALSE(has_error(errors, "(registry)")) << text;
  EXPECT_TRUE(has_error(errors, "instance/i-1: belongs_to service: exactly one required, has none"))
      << text;
  EXPECT_TRUE(has_error(errors, "not allowed: city serves host")) << text;
  EXPECT_TRUE(has_error(errors, "host/bad key: hostname: a key value must be printable")) << text;
  EXPECT_EQ(errors.size(), 6u) << text;
}

TEST(CmdbModel, RequiredAttributeOfConfiguredType) {
  Schema s = Schema::builtins();
  TypeSpec t;
  t.name = "queue";
  t.attributes = {{"name", "string", false, {}}, {"depth", "int", true, {}}};
  t.key = {"name"};
  t.relations = {{"belongs_to", "application", "at_most_one", {}}};
  ASSERT_TRUE(s.extend(std::span(&t, 1)).empty());
  Graph g(s);
  auto q = *s.find_type("queue");
  CiId id = g.upsert_ci(q, "orders");
  EXPECT_TRUE(has_error(g.validate(), "queue/orders: depth: required"));
  g.set_value(id, *s.type(q).attribute("depth"), Source::kAgent, Value(std::int64_t{3}), 1);
  EXPECT_TRUE(g.validate().empty()) << all(g.validate());
  CiId app = g.upsert_ci(*s.find_type("application"), "payments");
  g.upsert_relation(RelationKind::kBelongsTo, id, app, Source::kDeclared, 1);
  EXPECT_TRUE(g.validate().empty()) << all(g.validate());
}

TEST(CmdbModel, ExtendIsAllOrNothingAndListsEveryError) {
  Schema s = Schema::builtins();
  std::vector<TypeSpec> specs(4);
  specs[0].name = "Bad-Name";
  specs[1].name = "queue";  // new type without key
  specs[1].attributes = {{"name", "text", false, {3, 5}}};
  specs[2].name = "host";  // extends a built-in: fine alone
  specs[2].attributes = {{"rack", "string", false, {}}, {"cpus", "string", false, {}}};
  specs[3].name = "service";
  specs[3].relations = {{"likes", "host", "many", {}},
                        {"runs_on", "nowhere", "many", {}},
                        {"depends_on", "service", "at_most_one", {}}};
  auto errors = s.extend(specs);
  std::string text = all(errors);
  EXPECT_TRUE(has_error(errors, "type Bad-Name: name must match")) << text;
  EXPECT_TRUE(has_error(errors, "type queue: key: a new type needs")) << text;
  EXPECT_TRUE(has_error(errors, "line 3, column 5: type queue: attribute 'name': type must be"))
      << text;
  EXPECT_TRUE(has_error(errors, "type host: attribute 'cpus': already defined as int")) << text;
  EXPECT_TRUE(has_error(errors, "relation 'likes': unknown kind")) << text;
  EXPECT_TRUE(has_error(errors, "relation to 'nowhere': unknown type")) << text;
  EXPECT_TRUE(has_error(errors, "depends_on to service: already allowed as many")) << text;
  EXPECT_EQ(errors.size(), 7u) << text;
  // Nothing applied.
  EXPECT_EQ(s.type_count(), 11u);
  EXPECT_FALSE(s.type(*s.find_type("host")).attribute("rack"));
  // The valid part alone applies.
  ASSERT_TRUE(s.extend(std::span(&specs[2], 1)).size() == 1);  // cpus as another type
  specs[2].attributes.back().type = "int";                     // the same definition: no change
  ASSERT_TRUE(s.extend(std::span(&specs[2], 1)).empty());
  EXPECT_TRUE(s.type(*s.find_type("host")).attribute("rack"));
  // Extending again with the same specs changes nothing and is no error (a file imported twice).
  const std::size_t attrs = s.type(*s.find_type("host")).attributes.size();
  ASSERT_TRUE(s.extend(std::span(&specs[2], 1)).empty());
  EXPECT_EQ(s.type(*s.find_type("host")).attributes.size(), attrs);
}

TEST(CmdbModel, CompositeKey) {
  Schema s = Schema::builtins();
  TypeSpec t;
  t.name = "port";
  t.attributes = {{"host", "string", false, {}}, {"number", "int", false, {}}};
  t.key = {"host", "number"};
  ASSERT_TRUE(s.extend(std::span(&t, 1)).empty());
  Graph g(s);
  std::vector<CiDraft> cis = {ci("port", {{"host", "h1"}, {"number", "443"}})};
  auto errors = apply_declared(g, cis, {}, 1);
  ASSERT_TRUE(errors.empty()) << all(errors);
  EXPECT_TRUE(g.find("port", "h1,443"));
}

TEST(CmdbModel, ApplyDeclaredAddsCisRelationsAndValues) {
  Graph g;
  std::vector<CiDraft> cis = {
      ci("business_system", {{"name", "payments"}, {"owner", "team-pay"}, {"criticality", "high"}}),
      ci("application", {{"name", "pay-app"}}),
      ci("service", {{"name", "accounts"}}),
      ci("host", {{"hostname", "h1"}, {"cpus", "8"}}),
      ci("instance", {{"id", "i-1"}, {"zone", "a1"}}),
  };
  std::vector<RelationDraft> rels = {
      rel("application", "pay-app", "belongs_to", "business_system", "payments"),
      rel("service", "accounts", "belongs_to", "application", "pay-app"),
      rel("instance", "i-1", "belongs_to", "service", "accounts"),
      rel("instance", "i-1", "runs_on", "host", "h1"),
  };
  auto errors = apply_declared(g, cis, rels, 1000);
  ASSERT_TRUE(errors.empty()) << all(errors);
  EXPECT_EQ(g.ci_count(), 5u);
  EXPECT_EQ(g.relation_count(), 4u);
  CiId h = *g.find("host", "h1");
  auto cpus = *g.schema().type(g.ci(h).type).attribute("cpus");
  ASSERT_NE(g.declared(h, cpus), nullptr);
  EXPECT_EQ(g.declared(h, cpus)->value, Value(std::int64_t{8}));
  EXPECT_EQ(g.declared(h, cpus)->last_seen_ms, 1000);
  EXPECT_EQ(g.in(h).size(), 1u);

  // A re-import moves the instance to another host (at_most_one replaces) and keeps the rest.
  std::vector<CiDraft> more = {ci("host", {{"hostname", "h2"}})};
  std::vector<RelationDraft> move = {rel("instance", "i-1", "runs_on", "host", "h2")};
  errors = apply_declared(g, more, move, 2000);
  ASSERT_TRUE(errors.empty()) << all(errors);
  EXPECT_TRUE(g.in(h).empty());
  EXPECT_EQ(g.in(*g.find("host", "h2")).size(), 1u);
  EXPECT_EQ(g.relation_count(), 4u);
}

TEST(CmdbModel, ApplyDeclaredRefusesWholeWithEveryErrorAndLocation) {
  Graph g;
  ASSERT_TRUE(apply_declared(g, std::vector<CiDraft>{ci("city", {{"name", "a"}})}, {}, 1).empty());
  std::vector<CiDraft> cis = {
      ci("host", {{"hostname", "h1"}}, 2),
      ci("spaceship", {{"name", "x"}}, 3),
      ci("host", {{"hostname", "h1"}}, 4),                     // duplicate key
      ci("host", {{"hostname", "h2"}, {"cpus", "many"}}, 5),   // ill-typed
      ci("host", {{"hostname", "h3"}, {"colour", "red"}}, 6),  // unknown attribute
      ci("service", {{"owner", "x"}}, 7),                      // key missing
  };
  std::vector<RelationDraft> rels = {
      rel("host", "h1", "runs_on", "city", "a", 8),     // disallowed pair
      rel("host", "h1", "located_in", "city", "b", 9),  // unknown CI
      rel("host", "h1", "orbits", "city", "a", 10),     // unknown kind
  };
  auto errors = apply_declared(g, cis, rels, 5);
  std::string text = all(errors);
  EXPECT_TRUE(has_error(errors, "line 3, column 1: spaceship: unknown type 'spaceship'")) << text;
  EXPECT_TRUE(has_error(errors, "line 4, column 1: host/h1: duplicate key")) << text;
  EXPECT_TRUE(has_error(errors, "line 5, column 1: host: cpus: must be int")) << text;
  EXPECT_TRUE(has_error(errors, "line 6, column 1: host: unknown attribute 'colour'")) << text;
  EXPECT_TRUE(has_error(errors, "line 7, column 1: service: name: key attribute missing")) << text;
  EXPECT_TRUE(has_error(errors, "line 8, column 1: relation host/h1 runs_on city/a: not allowed"))
      << text;
  EXPECT_TRUE(has_error(
      errors, "line 9, column 1: relation host/h1 located_in city/b: city/b is not declared"))
      << text;
  EXPECT_TRUE(
      has_error(errors, "line 10, column 1: relation host/h1 orbits city/a: unknown relation kind"))
      << text;
  EXPECT_EQ(errors.size(), 8u) << text;
  // Nothing applied.
  EXPECT_EQ(g.ci_count(), 1u);
  EXPECT_EQ(g.relation_count(), 0u);
}

TEST(CmdbModel, ApplyDeclaredChecksCardinalityOfTouchedCisOnly) {
  Graph g;
  auto& s = g.schema();
  // An observed instance without its service: not this import's business.
  g.upsert_ci(*s.find_type("instance"), "observed-1");
  std::vector<CiDraft> cis = {ci("instance", {{"id", "i-1"}}, 2)};
  auto errors = apply_declared(g, cis, {}, 1);
  ASSERT_EQ(errors.size(), 1u) << all(errors);
  EXPECT_TRUE(has_error(errors, "instance/i-1: belongs_to service: exactly one required"))
      << all(errors);
  EXPECT_FALSE(g.find("instance", "i-1"));
  // Two declared hosts in one import: refused.
  std::vector<CiDraft> two = {ci("service", {{"name", "s"}}), ci("instance", {{"id", "i-1"}}),
                              ci("host", {{"hostname", "h1"}}), ci("host", {{"hostname", "h2"}})};
  std::vector<RelationDraft> rels = {rel("instance", "i-1", "belongs_to", "service", "s"),
                                     rel("instance", "i-1", "runs_on", "host", "h1"),
                                     rel("instance", "i-1", "runs_on", "host", "h2")};
  errors = apply_declared(g, two, rels, 1);
  EXPECT_TRUE(has_error(errors, "instance/i-1: runs_on host: at most one (declared), has 2"))
      << all(errors);
  EXPECT_EQ(g.ci_count(), 1u);
}

TEST(CmdbModel, LargeGraphUsesIds) {
  Graph g;
  auto& s = g.schema();
  auto svc_t = *s.find_type("service");
  auto inst_t = *s.find_type("instance");
  std::vector<CiId> svcs;
  for (int i = 0; i < 100; ++i) svcs.push_back(g.upsert_ci(svc_t, "s" + std::to_string(i)));
  for (int i = 0; i < 2000; ++i) {
    CiId id = g.upsert_ci(inst_t, "i" + std::to_string(i));
    g.upsert_relation(RelationKind::kBelongsTo, id, svcs[i % 100], Source::kRegistry, 1);
  }
  EXPECT_EQ(g.in(svcs[7]).size(), 20u);
  EXPECT_EQ(g.relation_count(), 2000u);
  EXPECT_TRUE(g.validate().empty());
}

}  // namespace
}  // namespace sluice::control::cmdb
