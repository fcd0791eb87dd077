#include "router/path_trie.h"

#include <gtest/gtest.h>

#include <algorithm>
#include <vector>

namespace sluice::router {
namespace {

using Kind = PathTrie::Kind;

std::vector<uint32_t> collect(const PathTrie& t, std::string_view path) {
  std::vector<uint32_t> out;
  t.collect(path, [&](PathTrie::List l) { out.insert(out.end(), l.begin, l.end); });
  std::sort(out.begin(), out.end());
  return out;
}

TEST(PathTrieTest, EmptyTrieCollectsNothing) {
  PathTrie t;
  t.finish();
  EXPECT_TRUE(collect(t, "/a").empty());
}

TEST(PathTrieTest, KindsFollowSegmentBoundaries) {
  PathTrie t;
  t.add("", Kind::kDeeper, 0);      // prefix "/"
  t.add("/a", Kind::kPrefix, 1);    // prefix "/a"
  t.add("/a", Kind::kDeeper, 2);    // prefix "/a/"
  t.add("/a/b", Kind::kExact, 3);   // path "/a/b"
  t.add("/a/b", Kind::kPrefix, 4);  // prefix "/a/b"
  t.add("/", Kind::kExact, 5);      // path "/": one empty segment
  t.finish();
  EXPECT_EQ(collect(t, "/"), (std::vector<uint32_t>{0, 5}));
  EXPECT_EQ(collect(t, "/a"), (std::vector<uint32_t>{0, 1}));
  EXPECT_EQ(collect(t, "/a/"), (std::vector<uint32_t>{0, 1, 2}));
  EXPECT_EQ(collect(t, "/ab"), (std::vector<uint32_t>{0}));
  EXPECT_EQ(collect(t, "/a/b"), (std::vector<uint32_t>{0, 1, 2, 3, 4}));
  EXPECT_EQ(collect(t, "/a/b/"), (std::vector<uint32_t>{0, 1, 2, 4}));
  EXPECT_EQ(collect(t, "/a/b/c/d"), (std::vector<uint32_t>{0, 1, 2, 4}));
  EXPECT_EQ(collect(t, "/x/a/b"), (std::vector<uint32_t>{0}));
}

TEST(PathTrieTest, ListsComeInAddOrder) {
  PathTrie t;
  for (uint32_t r = 0; r < 10; ++r) t.add("/a", Kind::kPrefix, r);
  t.finish();
  std::vector<uint32_t> seen;
  t.collect("/a/x", [&](PathTrie::List l) { seen.assign(l.begin, l.end); });
  EXPECT_EQ(seen, (std::vector<uint32_t>{0, 1, 2, 3, 4, 5, 6, 7, 8, 9}));
}

}  // namespace
}  // namespace sluice::router
