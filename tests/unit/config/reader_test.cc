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

}  // namespace
}  // namespace sluice::config
