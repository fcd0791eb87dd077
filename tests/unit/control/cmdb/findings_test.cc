#include "control/cmdb/findings.h"

#include <gtest/gtest.h>

namespace sluice::control::cmdb {
namespace {

Finding make(FindingKind kind, std::string subject, std::string attribute, std::string declared,
             std::string observed) {
  Finding f;
  f.kind = kind;
  f.subject = std::move(subject);
  f.attribute = std::move(attribute);
  f.declared = std::move(declared);
  f.observed = std::move(observed);
  f.id = finding_id(f);
  return f;
}

TEST(CmdbFindings, KindsRoundTrip) {
  for (std::size_t i = 0; i < kFindingKindCount; ++i) {
    auto k = static_cast<FindingKind>(i);
    EXPECT_EQ(parse_finding_kind(to_string(k)), k);
  }
  EXPECT_EQ(to_string(FindingKind::kUndeclaredDependency), "undeclared_dependency");
  EXPECT_FALSE(parse_finding_kind("bogus"));
}

TEST(CmdbFindings, IdHashesEveryFieldThatNamesTheDefect) {
  Finding a = make(FindingKind::kMismatch, "instance/b1", "zone", "b1", "b2");
  EXPECT_EQ(a.id.size(), 16u);
  EXPECT_EQ(finding_id(a), make(FindingKind::kMismatch, "instance/b1", "zone", "b1", "b2").id);
  EXPECT_NE(a.id, make(FindingKind::kMismatch, "instance/b1", "zone", "b1", "b3").id);
  EXPECT_NE(a.id, make(FindingKind::kMismatch, "instance/b1", "city", "b1", "b2").id);
  // Fields are separated: moving a character from one field to the next is another id.
  EXPECT_NE(make(FindingKind::kMismatch, "x", "ab", "", "").id,
            make(FindingKind::kMismatch, "x", "a", "b", "").id);
  // The suggestion's words are not part of the identity.
  Finding b = a;
  b.fix = "other words";
  EXPECT_EQ(finding_id(b), a.id);
}

TEST(CmdbFindings, BookIgnoresUntilTheFindingIsGone) {
  FindingBook book;
  Finding m = make(FindingKind::kMismatch, "instance/b1", "zone", "b1", "b2");
  Finding s = make(FindingKind::kStale, "instance/l1", "", "", "");
  book.update({m, s}, 10);
  EXPECT_EQ(book.updated_ms(), 10);
  EXPECT_FALSE(book.ignore("0000000000000000", {"op", "why", 11}));
  ASSERT_TRUE(book.ignore(m.id, {"op", "known: moving racks", 11}));
  ASSERT_NE(book.ignored(m.id), nullptr);
  EXPECT_EQ(book.ignored(m.id)->reason, "known: moving racks");
  auto counts = book.open_by_kind();
  EXPECT_EQ(counts[static_cast<std::size_t>(FindingKind::kMismatch)], 0);
  EXPECT_EQ(counts[static_cast<std::size_t>(FindingKind::kStale)], 1);

  auto j = book.to_json(false, std::nullopt);
  ASSERT_EQ(j["findings"].size(), 1u);
  EXPECT_EQ(j["findings"][0]["id"], s.id);
  EXPECT_EQ(j["ignored"], 1);
  EXPECT_EQ(j["counts"]["mismatch"], 0);
  EXPECT_EQ(j["counts"]["stale"], 1);
  auto all = book.to_json(true, FindingKind::kMismatch);
  ASSERT_EQ(all["findings"].size(), 1u);
  EXPECT_EQ(all["findings"][0]["ignored"]["by"], "op");

  // Still found: still ignored. Gone once: the ignore goes with it.
  book.update({m, s}, 20);
  EXPECT_NE(book.ignored(m.id), nullptr);
  book.update({s}, 30);
  EXPECT_EQ(book.ignored(m.id), nullptr);
  book.update({m, s}, 40);
  EXPECT_EQ(book.ignored(m.id), nullptr);
  EXPECT_EQ(book.open_by_kind()[static_cast<std::size_t>(FindingKind::kMismatch)], 1);
}

TEST(CmdbFindings, JsonCarriesBothValuesAndTheSource) {
  Finding m = make(FindingKind::kMismatch, "instance/b1", "zone", "b1", "b2");
  m.observed_source = Source::kRegistry;
  m.fix = "take it";
  m.fixable = true;
  auto j = to_json(m);
  EXPECT_EQ(j["kind"], "mismatch");
  EXPECT_EQ(j["declared"], "b1");
  EXPECT_EQ(j["observed"], "b2");
  EXPECT_EQ(j["observed_source"], "registry");
  EXPECT_EQ(j["fixable"], true);
  EXPECT_FALSE(j.contains("other"));
}

}  // namespace
}  // namespace sluice::control::cmdb
