// Reading declared CMDB files: YAML documents and CSV, with the line and column of every error.
#include "control/cmdb/import.h"

#include <gtest/gtest.h>

#include <algorithm>
#include <random>

namespace sluice::control::cmdb {
namespace {

std::string all(const std::vector<ModelError>& errors) {
  std::string out;
  for (const auto& e : errors) out += e.to_string() + "\n";
  return out;
}

bool has(const std::vector<ModelError>& errors, std::string_view needle) {
  return all(errors).find(needle) != std::string::npos;
}

TEST(CmdbImport, YamlDocumentsWithTypesCisAndRelations) {
  const std::string text = R"(types:
  - name: queue
    key: name
    attributes:
      - {name: name, type: string}
      - {name: depth, type: int, required: true}
    relations: [{kind: belongs_to, to: application, cardinality: at_most_one}]
cis:
  - {type: host, hostname: h1, cpus: 8}
  - type: instance
    id: i-1
    relations: {runs_on: host/h1, belongs_to: [service/accounts]}
---
relations:
  - {from: service/accounts, relation: depends_on, to: database/ledger}
)";
  ImportDoc doc;
  auto errors = read_yaml(text, doc);
  ASSERT_TRUE(errors.empty()) << all(errors);
  ASSERT_EQ(doc.types.size(), 1u);
  EXPECT_EQ(doc.types[0].name, "queue");
  EXPECT_EQ(doc.types[0].key, std::vector<std::string>{"name"});
  ASSERT_EQ(doc.types[0].attributes.size(), 2u);
  EXPECT_TRUE(doc.types[0].attributes[1].required);
  ASSERT_EQ(doc.cis.size(), 2u);
  EXPECT_EQ(doc.cis[0].type, "host");
  EXPECT_EQ(doc.cis[0].attributes[1], (std::pair<std::string, std::string>{"cpus", "8"}));
  EXPECT_EQ(doc.cis[0].attribute_at[1].line, 9);
  ASSERT_EQ(doc.relations.size(), 3u);
  EXPECT_EQ(doc.relations[0].kind, "depends_on");
  EXPECT_EQ(doc.relations[0].at.line, 15);
  // Relations under a CI leave that CI's draft.
  EXPECT_EQ(doc.relations[1].from_draft, 1u);
  EXPECT_EQ(doc.relations[1].to_type, "host");
  EXPECT_EQ(doc.relations[2].to_key, "accounts");
}

TEST(CmdbImport, YamlRelationsUnderACiApplyToItsKey) {
  ImportDoc doc;
  ASSERT_TRUE(read_yaml(R"(cis:
  - {type: service, name: accounts}
  - {type: host, hostname: h1}
  - type: instance
    id: i-1
    relations: {runs_on: host/h1, belongs_to: service/accounts}
)",
                        doc)
                  .empty());
  Graph g;
  auto errors = apply_declared(g, doc.cis, doc.relations, 1);
  ASSERT_TRUE(errors.empty()) << all(errors);
  CiId i = *g.find("instance", "i-1");
  EXPECT_EQ(g.out(i).size(), 2u);
}

TEST(CmdbImport, YamlErrorsNameLineAndColumn) {
  ImportDoc doc;
  auto errors = read_yaml(R"(cis:
  - {type: host, hostname: h1, cpus: [1, 2]}
  - hostname: h2
  - just a string
colour: blue
relations:
  - {from: nowhere, relation: runs_on}
)",
                          doc);
  std::string text = all(errors);
  EXPECT_TRUE(has(errors, "line 2, column 38: cpus: expected a scalar")) << text;
  EXPECT_TRUE(has(errors, "line 3, column 5: a CI needs 'type'")) << text;
  EXPECT_TRUE(has(errors, "line 4, column 5: a CI must be a mapping")) << text;
  EXPECT_TRUE(has(errors, "line 5, column 1: unknown key 'colour'")) << text;
  EXPECT_TRUE(has(errors, "line 7, column 12: from: expected TYPE/KEY, got 'nowhere'")) << text;
  EXPECT_TRUE(has(errors, "line 7, column 5: a relation needs 'to'")) << text;
  EXPECT_EQ(errors.size(), 6u) << text;
}

TEST(CmdbImport, YamlSyntaxErrorAndBounds) {
  ImportDoc doc;
  auto errors = read_yaml("cis: [ {type: host\n", doc);
  ASSERT_EQ(errors.size(), 1u);
  EXPECT_GT(errors[0].at.line, 0) << all(errors);
  errors = read_yaml(std::string(kMaxImportBytes + 1, ' '), doc);
  EXPECT_TRUE(has(errors, "at most")) << all(errors);
  // A billion laughs is refused by the YAML bounds, not expanded.
  std::string laughs = "a: &a [x, x, x, x, x, x, x, x, x, x]\n";
  for (int i = 0; i < 8; ++i) {
    laughs += std::string(1, static_cast<char>('b' + i)) + ": &" +
              std::string(1, static_cast<char>('b' + i)) + " [";
    for (int j = 0; j < 10; ++j)
      laughs += std::string(j ? ", " : "") + "*" + std::string(1, static_cast<char>('a' + i));
    laughs += "]\n";
  }
  ImportDoc d2;
  errors = read_yaml(laughs, d2);
  EXPECT_FALSE(errors.empty());
}

TEST(CmdbImport, CsvCisWithTypeColumnOrDefault) {
  ImportDoc doc;
  auto errors =
      read_csv("type,hostname,cpus,os\nhost,h1,8,\"linux, 6.1\"\r\nhost,h2,,\n\n", "", doc);
  ASSERT_TRUE(errors.empty()) << all(errors);
  ASSERT_EQ(doc.cis.size(), 2u);
  EXPECT_EQ(doc.cis[0].attributes.size(), 3u);
  EXPECT_EQ(doc.cis[0].attributes[2].second, "linux, 6.1");
  EXPECT_EQ(doc.cis[0].attribute_at[2].line, 2);
  EXPECT_EQ(doc.cis[0].attribute_at[2].column, 11);
  EXPECT_EQ(doc.cis[1].attributes.size(), 1u);  // empty cells are not given
  ImportDoc d2;
  ASSERT_TRUE(read_csv("hostname,cpus\nh3,4\n", "host", d2).empty());
  EXPECT_EQ(d2.cis[0].type, "host");
  ImportDoc d3;
  EXPECT_TRUE(has(read_csv("hostname,cpus\nh3,4\n", "", d3), "no 'type' column"));
}

TEST(CmdbImport, CsvQuotesAcrossLines) {
  ImportDoc doc;
  auto errors =
      read_csv("type,name,description\ncity,a,\"two\nlines \"\"quoted\"\"\"\ncity,b,x\n", "", doc);
  ASSERT_TRUE(errors.empty()) << all(errors);
  ASSERT_EQ(doc.cis.size(), 2u);
  EXPECT_EQ(doc.cis[0].attributes[1].second, "two\nlines \"quoted\"");
  EXPECT_EQ(doc.cis[1].at.line, 4);
}

TEST(CmdbImport, CsvRelations) {
  ImportDoc doc;
  auto errors = read_csv(
      "from_type,from_key,relation,to_type,to_key\ninstance,i-1,runs_on,host,h1\n", "", doc);
  ASSERT_TRUE(errors.empty()) << all(errors);
  ASSERT_EQ(doc.relations.size(), 1u);
  EXPECT_EQ(doc.relations[0].kind, "runs_on");
  EXPECT_EQ(doc.relations[0].to_key, "h1");
  EXPECT_EQ(doc.relations[0].at.line, 2);
}

TEST(CmdbImport, CsvBadLinesAreAllReported) {
  ImportDoc doc;
  auto errors = read_csv(
      "type,hostname,cpus\nhost,h1\nhost,h\"2,4\nhost,\"h3\"x,4\nhost,h4,4,extra\n", "", doc);
  std::string text = all(errors);
  EXPECT_TRUE(has(errors, "line 2, column 1: expected 3 fields (as the header), got 2")) << text;
  EXPECT_TRUE(has(errors, "line 3, column 7: a quote inside an unquoted field")) << text;
  EXPECT_TRUE(has(errors, "line 4, column 10: unexpected text after a closing quote")) << text;
  EXPECT_TRUE(has(errors, "line 5, column 1: expected 3 fields (as the header), got 4")) << text;
  EXPECT_EQ(errors.size(), 4u) << text;
  ImportDoc d2;
  errors = read_csv("type,name\ncity,\"open\n", "", d2);
  EXPECT_TRUE(has(errors, "line 2, column 6: a quoted field is not closed")) << all(errors);
  ImportDoc d3;
  errors = read_csv("type,name,name,\n", "", d3);
  EXPECT_TRUE(has(errors, "'name' given twice")) << all(errors);
  EXPECT_TRUE(has(errors, "column 4 has no name")) << all(errors);
}

// Hostile files: random byte edits, cuts and repeats of valid YAML and CSV never throw or crash;
// each one either reads with errors (nothing to apply) or reads whole and is then accepted or
// refused by the model with errors, the graph unchanged on refusal. Seeded, so a failure repeats.
TEST(CmdbImport, MutatedFilesNeverThrow) {
  const std::string yaml = R"(types:
  - {name: queue, key: [name], attributes: [{name: name}, {name: depth, type: int}]}
cis:
  - {type: service, name: accounts}
  - {type: host, hostname: h1, cpus: 8}
  - type: instance
    id: i-1
    relations: {runs_on: host/h1, belongs_to: [service/accounts]}
relations:
  - {from: service/accounts, relation: depends_on, to: service/accounts}
)";
  const std::string csv = "type,hostname,cpus,os\nhost,h1,8,\"linux, 6.1\"\r\nhost,h2,,\n";
  const std::string rels =
      "from_type,from_key,relation,to_type,to_key\nhost,h1,located_in,city,a\n";
  const std::string alphabet = "{}[],:-\"'\n\r #&*!|>/\\x0";
  std::mt19937 rng(15);
  int applied = 0, refused = 0, unreadable = 0;
  for (int i = 0; i < 900; ++i) {
    const std::string& base = i % 3 == 0 ? yaml : i % 3 == 1 ? csv : rels;
    std::string text = base;
    const int edits = 1 + static_cast<int>(rng() % 4);
    for (int e = 0; e < edits && !text.empty(); ++e) {
      const size_t at = rng() % text.size();
      switch (rng() % 4) {
        case 0:
          text[at] = alphabet[rng() % alphabet.size()];
          break;
        case 1:
          text.erase(at, 1 + rng() % 8);
          break;
        case 2:
          text.insert(at, text.substr(at, 1 + rng() % 16));
          break;
        case 3:
          text.resize(at);
          break;
      }
    }
    ImportDoc doc;
    std::vector<ModelError> errors;
    ASSERT_NO_THROW(errors = i % 3 == 0 ? read_yaml(text, doc) : read_csv(text, "", doc)) << text;
    if (!errors.empty()) {
      ++unreadable;
      continue;
    }
    Schema schema = Schema::builtins();
    ASSERT_NO_THROW(errors = schema.extend(doc.types)) << text;
    if (!errors.empty()) {
      ++refused;
      continue;
    }
    Graph g(schema);
    ASSERT_NO_THROW(errors = apply_declared(g, doc.cis, doc.relations, 1)) << text;
    if (errors.empty()) {
      ++applied;
    } else {
      ++refused;
      EXPECT_EQ(g.ci_count(), 0u) << text;
    }
  }
  // The mutations reach every outcome.
  EXPECT_GT(applied, 0);
  EXPECT_GT(refused, 0);
  EXPECT_GT(unreadable, 0);
}

TEST(CmdbImport, SplitRef) {
  std::string t, k;
  EXPECT_TRUE(split_ref("host/h1", t, k));
  EXPECT_EQ(t, "host");
  EXPECT_EQ(k, "h1");
  EXPECT_FALSE(split_ref("host", t, k));
  EXPECT_FALSE(split_ref("/h1", t, k));
  EXPECT_FALSE(split_ref("host/", t, k));
}

}  // namespace
}  // namespace sluice::control::cmdb
