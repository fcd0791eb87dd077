#include "router/string_table.h"

#include <gtest/gtest.h>

#include <string>
#include <utility>
#include <vector>

namespace sluice::router {
namespace {

TEST(StringTableTest, FindsEveryKeyAndNothingElse) {
  StringTable<false> t;
  std::vector<std::pair<std::string, uint32_t>> entries;
  for (uint32_t i = 0; i < 1000; ++i) entries.emplace_back("seg" + std::to_string(i), i);
  t.build(entries);
  for (uint32_t i = 0; i < 1000; ++i) EXPECT_EQ(t.find("seg" + std::to_string(i)), i);
  EXPECT_EQ(t.find("seg1000"), StringTable<false>::kNotFound);
  EXPECT_EQ(t.find("SEG1"), StringTable<false>::kNotFound);
  EXPECT_EQ(t.find(""), StringTable<false>::kNotFound);
}

TEST(StringTableTest, FoldCaseIgnoresAsciiCaseOnly) {
  StringTable<true> t;
  t.build({{"api.example.com", 1}, {"a-very-long-host-name.internal.example", 2}, {"x", 3}});
  EXPECT_EQ(t.find("API.Example.COM"), 1u);
  EXPECT_EQ(t.find("A-VERY-LONG-HOST-NAME.INTERNAL.EXAMPLE"), 2u);
  EXPECT_EQ(t.find("X"), 3u);
  EXPECT_EQ(t.find("api.example.co"), StringTable<true>::kNotFound);
  // '@' and '`' differ from letters by the case bit but are not letters.
  StringTable<true> sym;
  sym.build({{"a@b", 7}});
  EXPECT_EQ(sym.find("A@B"), 7u);
  EXPECT_EQ(sym.find("a`b"), StringTable<true>::kNotFound);
}

TEST(StringTableTest, DuplicateKeysKeepTheFirstValue) {
  StringTable<true> t;
  t.build({{"a", 1}, {"A", 2}});
  EXPECT_EQ(t.find("a"), 1u);
}

TEST(StringTableTest, EmptyTable) {
  StringTable<false> t;
  EXPECT_TRUE(t.empty());
  EXPECT_EQ(t.find("a"), StringTable<false>::kNotFound);
  t.build({});
  EXPECT_EQ(t.find("a"), StringTable<false>::kNotFound);
}

}  // namespace
}  // namespace sluice::router
