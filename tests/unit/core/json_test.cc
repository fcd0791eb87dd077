#include "core/json.h"

#include <gtest/gtest.h>

#include <string>

namespace sluice::core {
namespace {

std::string nested(int levels, char open = '[', char close = ']') {
  return std::string(levels, open) + std::string(levels, close);
}

TEST(ParseJson, ParsesOrdinaryDocuments) {
  std::string error;
  auto j = parse_json(R"({"a": [1, 2.5, "x", null, true, {"b": {}}], "c": -3})", &error);
  ASSERT_TRUE(j) << error;
  EXPECT_EQ((*j)["a"][5]["b"], nlohmann::json::object());
  EXPECT_EQ((*j)["c"], -3);
  EXPECT_EQ(*parse_json("7", &error), 7);
}

TEST(ParseJson, NestingIsBoundedAt64Levels) {
  std::string error;
  auto ok = parse_json(nested(64), &error);
  ASSERT_TRUE(ok) << error;
  EXPECT_FALSE(parse_json(nested(65), &error));
  EXPECT_EQ(error, "JSON nested deeper than 64 levels");
  // Objects count as levels too, mixed with arrays.
  std::string mixed;
  for (int i = 0; i < 40; ++i) mixed += R"({"k":[)";
  mixed += "1";
  for (int i = 0; i < 40; ++i) mixed += "]}";
  EXPECT_FALSE(parse_json(mixed, &error));
  EXPECT_EQ(error, "JSON nested deeper than 64 levels");
  EXPECT_TRUE(parse_json(mixed, &error, 80));
}

// The crash of issue 12: 100,000 '[' (200 KB) overflowed the stack in recursive code after the
// parse (copy, destruction, validation). Refused here before any such tree exists.
TEST(ParseJson, HundredThousandLevelsAreRefusedWithoutRecursion) {
  std::string error;
  EXPECT_FALSE(parse_json(nested(100'000), &error));
  EXPECT_EQ(error, "JSON nested deeper than 64 levels");
  EXPECT_FALSE(parse_json(std::string(100'000, '['), &error));  // never closed
  EXPECT_EQ(error, "JSON nested deeper than 64 levels");
}

TEST(ParseJson, DuplicateKeysAreRefusedWithTheirPath) {
  std::string error;
  EXPECT_FALSE(parse_json(R"({"reason": "a", "reason": "b"})", &error));
  EXPECT_EQ(error, "reason: duplicate key");
  EXPECT_FALSE(parse_json(
      R"({"resources": [{"kind": "service"}, {"spec": {"x": [1, {"name": 1, "name": 2}]}}]})",
      &error));
  EXPECT_EQ(error, "resources[1].spec.x[1].name: duplicate key");
  // The same key in different objects is fine.
  EXPECT_TRUE(parse_json(R"([{"a": 1}, {"a": 2}, {"b": {"a": 3}}])", &error)) << error;
}

TEST(ParseJson, MalformedTextNamesThePlace) {
  std::string error;
  EXPECT_FALSE(parse_json("{not json", &error));
  EXPECT_EQ(error.rfind("malformed JSON: parse error at line 1, column 3", 0), 0u) << error;
  EXPECT_FALSE(parse_json("", &error));
  EXPECT_FALSE(parse_json("[1] [2]", &error));  // one value only
  EXPECT_FALSE(parse_json("[1] // comment", &error));
}

TEST(ParseJson, DiscardedVariant) {
  EXPECT_TRUE(parse_json_or_discarded(nested(65)).is_discarded());
  EXPECT_TRUE(parse_json_or_discarded(R"({"a":1,"a":2})").is_discarded());
  EXPECT_EQ(parse_json_or_discarded(R"({"a":1})")["a"], 1);
}

}  // namespace
}  // namespace sluice::core
