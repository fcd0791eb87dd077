#include "http/header_map.h"

#include <gtest/gtest.h>

namespace sluice::http {
namespace {

TEST(HeaderMapTest, GetIsCaseInsensitiveAndFirstWins) {
  HeaderMap h;
  h.add("Content-Type", "text/plain");
  h.add("X-A", "1");
  h.add("x-a", "2");
  EXPECT_EQ(h.get("content-type"), "text/plain");
  EXPECT_EQ(h.get("X-A"), "1");
  EXPECT_EQ(h.count("x-A"), 2u);
  EXPECT_TRUE(h.has("CONTENT-TYPE"));
  EXPECT_FALSE(h.has("content"));
  EXPECT_EQ(h.get("missing"), "");
}

TEST(HeaderMapTest, RemoveAndSet) {
  HeaderMap h;
  h.add("A", "1");
  h.add("B", "2");
  h.add("a", "3");
  EXPECT_EQ(h.remove("A"), 2u);
  EXPECT_EQ(h.size(), 1u);
  EXPECT_EQ(h.at(0).name, "B");
  h.set("b", "9");
  EXPECT_EQ(h.size(), 1u);
  EXPECT_EQ(h.get("B"), "9");
}

TEST(HeaderMapTest, PiecewiseBuildingAndTrim) {
  HeaderMap h;
  h.begin_field();
  h.append_name("X-Lo");
  h.append_name("ng");
  h.append_value("va");
  h.append_value("lue \t");
  h.trim_last_value();
  h.begin_field();
  h.append_name("Empty");
  h.trim_last_value();
  ASSERT_EQ(h.size(), 2u);
  EXPECT_EQ(h.at(0).name, "X-Long");
  EXPECT_EQ(h.at(0).value, "value");
  EXPECT_EQ(h.at(1).name, "Empty");
  EXPECT_EQ(h.at(1).value, "");
}

TEST(HeaderMapTest, ClearKeepsWorking) {
  HeaderMap h;
  for (int round = 0; round < 3; ++round) {
    h.clear();
    EXPECT_TRUE(h.empty());
    h.add("Host", "example.com");
    EXPECT_EQ(h.get("host"), "example.com");
  }
}

TEST(HeaderMapTest, Iequals) {
  EXPECT_TRUE(iequals("Content-Length", "content-length"));
  EXPECT_FALSE(iequals("Content-Length", "content-lengt"));
  EXPECT_FALSE(iequals("[", "{"));  // case folding applies to letters only
}

}  // namespace
}  // namespace sluice::http
