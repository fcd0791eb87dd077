#include "config/reader.h"

#include <gtest/gtest.h>

#include <array>

namespace sluice::config {
namespace {

TEST(EditDistance, Basics) {
  EXPECT_EQ(edit_distance("", ""), 0u);
  EXPECT_EQ(edit_distance("abc", ""), 3u);
  EXPECT_EQ(edit_distance("kitten", "sitting"), 3u);
  EXPECT_EQ(edit_distance("retires", "retry"), 3u);
  EXPECT_EQ(edit_distance("timeout", "timeouts"), 1u);
}

TEST(Closest, SuggestsLikelyTypos) {
  constexpr std::array<std::string_view, 4> keys = {"name", "retry", "timeouts", "endpoints"};
  EXPECT_EQ(closest("retires", keys), "retry");
  EXPECT_EQ(closest("timeout", keys), "timeouts");
  EXPECT_EQ(closest("Name", keys), "name");
  EXPECT_EQ(closest("endpoint", keys), "endpoints");
  EXPECT_EQ(closest("zone", keys), "");
  EXPECT_EQ(closest("completely_different", keys), "");
  EXPECT_EQ(did_you_mean("retires", keys), " (did you mean 'retry'?)");
  EXPECT_EQ(did_you_mean("xyz", keys), "");
}

TEST(Describe, Kinds) {
  EXPECT_EQ(describe(YAML::Load("abc")), "'abc'");
  EXPECT_EQ(describe(YAML::Load("[1]")), "a list");
  EXPECT_EQ(describe(YAML::Load("{a: 1}")), "a mapping");
  EXPECT_EQ(describe(YAML::Load("~")), "null");
  EXPECT_EQ(describe(YAML::Load(std::string(100, 'x'))), "'" + std::string(40, 'x') + "...'");
}

TEST(ConfigError, ToString) {
  EXPECT_EQ((ConfigError{"gw.yaml", 7, "services[2].retry.attempts", "must be 0..10"}.to_string()),
            "gw.yaml:7: services[2].retry.attempts: must be 0..10");
  EXPECT_EQ((ConfigError{"gw.yaml", 0, "listeners", "required"}.to_string()),
            "gw.yaml: listeners: required");
  EXPECT_EQ((ConfigError{"gw.yaml", 3, "", "YAML syntax error: x"}.to_string()),
            "gw.yaml:3: YAML syntax error: x");
}

TEST(Diagnostics, SortedByLineWithUnknownLast) {
  Diagnostics d("f");
  d.add(0, "a", "m");
  d.add(9, "b", "m");
  d.add(2, "c", "m");
  d.add(9, "d", "m");
  auto errors = d.take();
  ASSERT_EQ(errors.size(), 4u);
  EXPECT_EQ(errors[0].path, "c");
  EXPECT_EQ(errors[1].path, "b");
  EXPECT_EQ(errors[2].path, "d");
  EXPECT_EQ(errors[3].path, "a");
}

// 9 levels of 9 aliases: 9^9 (387 million) scalars once expanded, from ~1 KB of text.
std::string billion_laughs() {
  std::string out = "l0: &l0 [lol, lol, lol, lol, lol, lol, lol, lol, lol]\n";
  for (int i = 1; i <= 9; ++i) {
    out += "l" + std::to_string(i) + ": &l" + std::to_string(i) + " [";
    for (int k = 0; k < 9; ++k) out += (k ? ", *l" : "*l") + std::to_string(i - 1);
    out += "]\n";
  }
  return out;
}

TEST(YamlBounds, AliasBombIsRefusedWithItsLine) {
  Diagnostics diag("bomb.yaml");
  EXPECT_FALSE(parse_single_document(billion_laughs(), diag));
  std::vector<ConfigError> errors = diag.take();
  ASSERT_EQ(errors.size(), 1u);
  // l6 (line 7) is where the running count passes a million: l5 alone expands to 597,871.
  EXPECT_EQ(errors[0].to_string(),
            "bomb.yaml:7: YAML document expands to more than 1000000 nodes (aliases counted "
            "each time they are used); refused");
  Diagnostics stream("bomb.yaml");
  EXPECT_FALSE(parse_documents("a: 1\n---\n" + billion_laughs(), stream));
  EXPECT_EQ(stream.count(), 1u);
}

TEST(YamlBounds, ModerateAliasesAreFine) {
  Diagnostics diag("ok.yaml");
  auto doc = parse_single_document(
      "defaults: &d {timeout: 1s, retries: 2}\na: *d\nb: *d\nlist: &l [1, 2]\nc: [*l, *l]\n", diag);
  ASSERT_TRUE(doc) << diag.take()[0].to_string();
  EXPECT_EQ((*doc)["b"]["retries"].as<int>(), 2);
}

TEST(YamlBounds, DepthIsBoundedAt64AliasesIncluded) {
  auto nested = [](int n) { return std::string(n, '[') + std::string(n, ']'); };
  Diagnostics ok("d.yaml");
  EXPECT_TRUE(parse_single_document(nested(64), ok));
  Diagnostics deep("d.yaml");
  EXPECT_FALSE(parse_single_document(nested(65), deep));
  EXPECT_EQ(deep.take()[0].message,
            "YAML nested deeper than 64 levels (aliases expanded); refused");
  // 40 levels under an anchor, used 40 levels down: 80 once expanded.
  Diagnostics aliased("d.yaml");
  EXPECT_FALSE(parse_single_document(
      "a: &a " + nested(40) + "\nb: " + std::string(40, '[') + "*a" + std::string(40, ']') + "\n",
      aliased));
  EXPECT_EQ(aliased.take()[0].line, 2);
  // yaml-cpp's own guard is at 2000 levels; far beyond it is still one clear error, no crash.
  Diagnostics very("d.yaml");
  EXPECT_FALSE(parse_single_document(nested(100'000), very));
  EXPECT_EQ(very.count(), 1u);
}

TEST(YamlBounds, TextSizeIsBounded) {
  Diagnostics diag("big.yaml");
  std::string big = "a: '" + std::string(kMaxYamlBytes, 'x') + "'\n";
  EXPECT_FALSE(parse_single_document(big, diag));
  EXPECT_NE(diag.take()[0].message.find("more than the 16777216 allowed"), std::string::npos);
}

TEST(YamlBounds, StrayCommaStillTerminatesInAStream) {
  Diagnostics diag("c.yaml");
  EXPECT_FALSE(parse_documents("a: 1\n,\n", diag));
  EXPECT_EQ(diag.count(), 1u);
}

}  // namespace
}  // namespace sluice::config
