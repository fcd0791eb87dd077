#include "router/units.h"

#include <gtest/gtest.h>

#include <string>
#include <vector>

#include "upstream/load_balancer.h"

namespace sluice::router {
namespace {

using config::ShardRange;
using config::UnitOwner;

// ---- shard_of ----

TEST(ShardOfTest, DecimalKeyIsKeyModShards) {
  EXPECT_EQ(shard_of("12345", 100), 45u);
  EXPECT_EQ(shard_of("12345", 7), 12345u % 7);
  EXPECT_EQ(shard_of("0", 100), 0u);
  EXPECT_EQ(shard_of("99", 100), 99u);
  EXPECT_EQ(shard_of("100", 100), 0u);
  EXPECT_EQ(shard_of("18446744073709551615", 100000), 51615u);  // UINT64_MAX
}

TEST(ShardOfTest, DecimalKeyLongerThan64Bits) {
  // 1234567890123456789012345678901234567890 mod m, worked out with arbitrary precision.
  const std::string key = "1234567890123456789012345678901234567890";
  EXPECT_EQ(shard_of(key, 100), 90u);
  EXPECT_EQ(shard_of(key, 97), 28u);
  EXPECT_EQ(shard_of(key, 7), 3u);
  EXPECT_EQ(shard_of(key, 100000), 67890u);
}

TEST(ShardOfTest, LeadingZerosAreDigits) {
  EXPECT_EQ(shard_of("0042", 100), 42u);
  EXPECT_EQ(shard_of("000", 100), 0u);
  EXPECT_EQ(shard_of("0000000000000000000000000000000000000007", 5), 2u);
}

TEST(ShardOfTest, NonDecimalKeyIsXxHash64ModShards) {
  for (std::string_view key : {"abc", "12a", "-12", "1 2", "+1", "1.5", "customer-42"}) {
    EXPECT_EQ(shard_of(key, 100), upstream::hash_key(key) % 100) << key;
    EXPECT_EQ(shard_of(key, 97), upstream::hash_key(key) % 97) << key;
  }
  // The empty key is not decimal; XXH64("", seed 0) = 0xEF46DB3751D8E999.
  EXPECT_EQ(shard_of("", 1000), 0xEF46DB3751D8E999ull % 1000);
}

TEST(ShardOfTest, OneShard) {
  for (std::string_view key :
       {"", "0", "12345", "abc", "1234567890123456789012345678901234567890"}) {
    EXPECT_EQ(shard_of(key, 1), 0u) << key;
  }
}

// ---- unit_key ----

config::Units header_units(std::string name) {
  config::Units u;
  u.key.kind = config::RequestInput::Kind::kHeader;
  u.key.name = std::move(name);
  return u;
}

config::Units query_units(std::string name) {
  config::Units u;
  u.key.kind = config::RequestInput::Kind::kQuery;
  u.key.name = std::move(name);
  return u;
}

config::Units segment_units(uint32_t n) {
  config::Units u;
  u.key.kind = config::RequestInput::Kind::kPathSegment;
  u.key.segment = n;
  return u;
}

TEST(UnitKeyTest, Header) {
  const auto u = header_units("x-customer-id");
  http::HeaderMap h;
  EXPECT_EQ(unit_key(u, "/a", "", h), std::nullopt);
  h.add("X-Customer-Id", "12345");
  h.add("x-customer-id", "999");
  EXPECT_EQ(unit_key(u, "/a", "x-customer-id=7", h), "12345");  // first value, header only

  http::HeaderMap empty;
  empty.add("x-customer-id", "");
  EXPECT_EQ(unit_key(u, "/a", "", empty), std::nullopt);
}

TEST(UnitKeyTest, QueryRawFirstOccurrence) {
  const auto u = query_units("cid");
  const http::HeaderMap h;
  EXPECT_EQ(unit_key(u, "/a", "a=1&cid=42&cid=43", h), "42");
  EXPECT_EQ(unit_key(u, "/a", "cid=a%20b", h), "a%20b");  // not decoded
  EXPECT_EQ(unit_key(u, "/a", "xcid=1&cidx=2", h), std::nullopt);
  EXPECT_EQ(unit_key(u, "/a", "", h), std::nullopt);
  EXPECT_EQ(unit_key(u, "/a", "cid=", h), std::nullopt);
  EXPECT_EQ(unit_key(u, "/a", "cid&x=1", h), std::nullopt);
  EXPECT_EQ(unit_key(u, "/a", "x=1&cid=5", h), "5");
}

TEST(UnitKeyTest, PathSegment) {
  const http::HeaderMap h;
  EXPECT_EQ(unit_key(segment_units(1), "/users/42/x", "", h), "users");
  EXPECT_EQ(unit_key(segment_units(2), "/users/42/x", "cid=1", h), "42");
  EXPECT_EQ(unit_key(segment_units(3), "/users/42/x", "", h), "x");
  EXPECT_EQ(unit_key(segment_units(4), "/users/42/x", "", h), std::nullopt);
  EXPECT_EQ(unit_key(segment_units(2), "/a/b/", "", h), "b");
  EXPECT_EQ(unit_key(segment_units(3), "/a/b/", "", h), std::nullopt);
  EXPECT_EQ(unit_key(segment_units(1), "/", "", h), std::nullopt);
  EXPECT_EQ(unit_key(segment_units(1), "", "", h), std::nullopt);
  EXPECT_EQ(unit_key(segment_units(1), "//x", "", h), std::nullopt);  // positional: empty first
  EXPECT_EQ(unit_key(segment_units(2), "//x", "", h), "x");
  EXPECT_EQ(unit_key(segment_units(0), "/a/b", "", h), std::nullopt);
}

// ---- UnitTable ----

config::Units two_cities(uint32_t shards = 100) {
  config::Units u;
  u.enabled = true;
  u.shards = shards;
  u.owners = {UnitOwner{"a", {{0, shards / 2 - 1}}}, UnitOwner{"b", {{shards / 2, shards - 1}}}};
  return u;
}

const std::vector<std::string> kCities = {"a", "b", "c"};

std::string owners_text(const UnitTable& t) {
  std::string s;
  for (const auto& o : t.owners()) {
    if (!s.empty()) s += ' ';
    s += o.city + ":" + format_shard_ranges(o.ranges);
  }
  return s;
}

std::vector<ShardRange> ranges(std::string_view text, uint32_t shards = 100) {
  std::string error;
  auto r = parse_shard_ranges(text, shards, &error);
  EXPECT_TRUE(r.has_value()) << error;
  return r.value_or(std::vector<ShardRange>{});
}

TEST(UnitTableTest, FromConfig) {
  const auto u = two_cities();
  auto t = UnitTable::from_config(u);
  EXPECT_EQ(t->version(), 1u);
  EXPECT_EQ(t->shards(), 100u);
  EXPECT_EQ(t->owner(0), "a");
  EXPECT_EQ(t->owner(49), "a");
  EXPECT_EQ(t->owner(50), "b");
  EXPECT_EQ(t->owner(99), "b");
  EXPECT_EQ(t->owner(100), "");
  EXPECT_FALSE(t->switching(0));
  EXPECT_FALSE(t->any_switching());
  EXPECT_EQ(t->owners(), u.owners);
  EXPECT_EQ(UnitTable::from_config(u, 7)->version(), 7u);
}

TEST(UnitTableTest, OwnersAreSortedAndMerged) {
  config::Units u;
  u.shards = 10;
  u.owners = {UnitOwner{"b", {{5, 5}, {0, 1}, {2, 3}}}, UnitOwner{"a", {{4, 4}, {6, 9}}}};
  auto t = UnitTable::from_config(u);
  EXPECT_EQ(owners_text(*t), "b:0-3,5 a:4,6-9");
}

TEST(UnitTableTest, SwitchMovesExactlyTheRanges) {
  auto t1 = UnitTable::from_config(two_cities());
  auto r = t1->with_switch("a", "b", ranges("10-19, 40"), kCities);
  ASSERT_TRUE(r.table) << r.error;
  EXPECT_EQ(r.error, "");
  const UnitTable& t2 = *r.table;
  EXPECT_EQ(t2.version(), 2u);
  EXPECT_EQ(owners_text(t2), "a:0-9,20-39,41-49 b:10-19,40,50-99");
  for (uint32_t s = 0; s < 100; ++s) {
    const bool moved = (s >= 10 && s <= 19) || s == 40;
    EXPECT_EQ(t2.owner(s), moved || s >= 50 ? "b" : "a") << s;
  }
  // The old table is untouched (workers may still be reading it).
  EXPECT_EQ(t1->version(), 1u);
  EXPECT_EQ(owners_text(*t1), "a:0-49 b:50-99");

  // And back again.
  auto back = t2.with_switch("b", "a", ranges("10-19,40"), kCities);
  ASSERT_TRUE(back.table) << back.error;
  EXPECT_EQ(back.table->version(), 3u);
  EXPECT_EQ(owners_text(*back.table), "a:0-49 b:50-99");
}

TEST(UnitTableTest, SwitchEverythingFromOwns) {
  auto t = UnitTable::from_config(two_cities());
  auto r = t->with_switch("a", "b", {}, kCities);
  ASSERT_TRUE(r.table) << r.error;
  EXPECT_EQ(owners_text(*r.table), "a: b:0-99");  // a stays listed, owning nothing
  EXPECT_EQ(r.table->owner(0), "b");

  // a owns nothing now: nothing to do.
  auto again = r.table->with_switch("a", "b", {}, kCities);
  EXPECT_FALSE(again.table);
  EXPECT_EQ(again.error, "nothing to do: \"a\" owns no shards");

  // a still is a city of the table, so it may receive without being in `cities`.
  auto home = r.table->with_switch("b", "a", ranges("0-49"), {});
  ASSERT_TRUE(home.table) << home.error;
  EXPECT_EQ(owners_text(*home.table), "a:0-49 b:50-99");
}

TEST(UnitTableTest, SwitchToNewCityListedInCities) {
  auto t = UnitTable::from_config(two_cities());
  auto r = t->with_switch("b", "c", ranges("90-99"), kCities);
  ASSERT_TRUE(r.table) << r.error;
  EXPECT_EQ(owners_text(*r.table), "a:0-49 b:50-89 c:90-99");
  EXPECT_EQ(r.table->owner(95), "c");

  auto unknown = t->with_switch("b", "c", ranges("90-99"), {"a", "b"});
  EXPECT_FALSE(unknown.table);
  EXPECT_EQ(unknown.error, "to: unknown city \"c\" (known: a, b)");
}

TEST(UnitTableTest, SwitchErrors) {
  auto t = UnitTable::from_config(two_cities());
  auto err = [&](std::string_view from, std::string_view to, std::vector<ShardRange> r) {
    auto res = t->with_switch(from, to, r, kCities);
    EXPECT_FALSE(res.table);
    return res.error;
  };
  EXPECT_EQ(err("x", "b", {}), "from: unknown city \"x\" (known: a, b, c)");
  EXPECT_EQ(err("c", "a", {}), "nothing to do: \"c\" owns no shards");  // a city, not in the table
  EXPECT_EQ(err("a", "y", {}), "to: unknown city \"y\" (known: a, b, c)");
  EXPECT_EQ(err("", "", {}), "from: a city is required; to: a city is required");
  EXPECT_EQ(err("a", "a", {}), "from and to are the same city \"a\"");
  EXPECT_EQ(err("a", "b", {{40, 120}}), "shard range 40-120 is outside 0..99");
  EXPECT_EQ(err("a", "b", {{100, 100}}), "shard range 100 is outside 0..99");
  EXPECT_EQ(err("a", "b", {{9, 3}}), "shard range 9-3: first is greater than last");
  EXPECT_EQ(err("a", "b", {{45, 59}, {70, 70}}), "shards 50-59,70 are not owned by \"a\"");
  // Every problem at once.
  EXPECT_EQ(err("x", "a", {{0, 200}}),
            "from: unknown city \"x\" (known: a, b, c); shard range 0-200 is outside 0..99");
  EXPECT_EQ(t->version(), 1u);
}

TEST(UnitTableTest, NotOwnedErrorIsCutForLongLists) {
  config::Units u;
  u.shards = 100;
  u.owners = {UnitOwner{"a", {}}, UnitOwner{"b", {}}};
  for (uint32_t s = 0; s < 100; ++s) u.owners[s % 2].ranges.push_back({s, s});
  auto t = UnitTable::from_config(u);
  auto r = t->with_switch("a", "b", ranges("0-99"), kCities);
  EXPECT_FALSE(r.table);
  EXPECT_EQ(r.error,
            "shards 1,3,5,7,9,11,13,15,17,19,21,23,25,27,29,31,... (50 ranges) are not owned by "
            "\"a\"");
}

TEST(UnitTableTest, PrepareMarksWithoutMoving) {
  auto t1 = UnitTable::from_config(two_cities());
  auto p = t1->prepared("a", "b", ranges("0-9,20"), kCities);
  ASSERT_TRUE(p.table) << p.error;
  const UnitTable& t2 = *p.table;
  EXPECT_EQ(t2.version(), 2u);
  EXPECT_EQ(owners_text(t2), "a:0-49 b:50-99");
  for (uint32_t s = 0; s < 100; ++s) {
    EXPECT_EQ(t2.switching(s), s <= 9 || s == 20) << s;
  }
  EXPECT_FALSE(t2.switching(100));
  EXPECT_TRUE(t2.any_switching());
  EXPECT_EQ(format_shard_ranges(t2.switching_ranges()), "0-9,20");
  EXPECT_FALSE(t1->any_switching());

  // Only one prepared switch at a time.
  auto twice = t2.prepared("b", "a", ranges("50"), kCities);
  EXPECT_FALSE(twice.table);
  EXPECT_EQ(twice.error,
            "a switch is already prepared for shards 0-9,20; commit or abort it first");

  // Prepare validates like a switch.
  auto bad = t1->prepared("a", "b", ranges("50"), kCities);
  EXPECT_FALSE(bad.table);
  EXPECT_EQ(bad.error, "shards 50 are not owned by \"a\"");
}

TEST(UnitTableTest, CommitMovesAndClearsMarks) {
  auto p = UnitTable::from_config(two_cities())->prepared("a", "b", ranges("0-9"), kCities);
  ASSERT_TRUE(p.table) << p.error;
  auto c = p.table->with_switch("a", "b", ranges("0-9"), kCities);
  ASSERT_TRUE(c.table) << c.error;
  EXPECT_EQ(c.table->version(), 3u);
  EXPECT_EQ(owners_text(*c.table), "a:10-49 b:0-9,50-99");
  EXPECT_FALSE(c.table->any_switching());
  for (uint32_t s = 0; s < 100; ++s) EXPECT_FALSE(c.table->switching(s)) << s;
  EXPECT_TRUE(c.table->switching_ranges().empty());
}

TEST(UnitTableTest, AbortClearsMarksKeepsOwners) {
  auto t = UnitTable::from_config(two_cities());
  auto p = t->prepared("b", "a", {}, kCities);  // all of b
  ASSERT_TRUE(p.table) << p.error;
  EXPECT_EQ(format_shard_ranges(p.table->switching_ranges()), "50-99");
  auto a = p.table->aborted();
  ASSERT_TRUE(a.table) << a.error;
  EXPECT_EQ(a.table->version(), 3u);
  EXPECT_EQ(owners_text(*a.table), "a:0-49 b:50-99");
  EXPECT_FALSE(a.table->any_switching());
  EXPECT_FALSE(a.table->switching(50));

  auto nothing = a.table->aborted();
  EXPECT_FALSE(nothing.table);
  EXPECT_EQ(nothing.error, "nothing to do: no switch is prepared");
}

TEST(UnitTableTest, LargestTable) {
  auto t = UnitTable::from_config(two_cities(100000));
  EXPECT_EQ(t->owner(49999), "a");
  EXPECT_EQ(t->owner(99999), "b");
  auto p = t->prepared("b", "a", ranges("99999", 100000), kCities);
  ASSERT_TRUE(p.table) << p.error;
  EXPECT_TRUE(p.table->switching(99999));
  EXPECT_FALSE(p.table->switching(99998));
  EXPECT_EQ(owners_text(*p.table), "a:0-49999 b:50000-99999");
}

// ---- parse / format ----

TEST(ShardRangesTest, ParseAndFormat) {
  std::string error;
  auto r = parse_shard_ranges("0-49, 60, 70-79", 100, &error);
  ASSERT_TRUE(r) << error;
  EXPECT_EQ(*r, (std::vector<ShardRange>{{0, 49}, {60, 60}, {70, 79}}));
  EXPECT_EQ(format_shard_ranges(*r), "0-49,60,70-79");

  r = parse_shard_ranges(" 7 - 9 ,\t99\t", 100, &error);
  ASSERT_TRUE(r) << error;
  EXPECT_EQ(*r, (std::vector<ShardRange>{{7, 9}, {99, 99}}));

  r = parse_shard_ranges("5-5,0042", 100, &error);  // kept as written, leading zeros read
  ASSERT_TRUE(r) << error;
  EXPECT_EQ(format_shard_ranges(*r), "5,42");
}

TEST(ShardRangesTest, RoundTrip) {
  for (std::string_view text : {"0-49,60,70-79", "0", "99", "0-99", "3,1,2", "10-20,15-30", ""}) {
    std::string error;
    auto r = parse_shard_ranges(text, 100, &error);
    ASSERT_TRUE(r) << text << ": " << error;
    EXPECT_EQ(format_shard_ranges(*r), text);
  }
}

TEST(ShardRangesTest, EmptyTextIsEmptyList) {
  std::string error;
  auto r = parse_shard_ranges("", 100, &error);
  ASSERT_TRUE(r);
  EXPECT_TRUE(r->empty());
  r = parse_shard_ranges("  \t", 100, &error);
  ASSERT_TRUE(r);
  EXPECT_TRUE(r->empty());
  EXPECT_EQ(format_shard_ranges({}), "");
}

TEST(ShardRangesTest, Errors) {
  auto err = [](std::string_view text, uint32_t shards = 100) {
    std::string error;
    auto r = parse_shard_ranges(text, shards, &error);
    EXPECT_FALSE(r) << text;
    return error;
  };
  EXPECT_EQ(err("0-100"), "shard range \"0-100\" is outside 0..99");
  EXPECT_EQ(err("100"), "shard range \"100\" is outside 0..99");
  EXPECT_EQ(err("99999999999999999999999"),
            "shard range \"99999999999999999999999\" is outside 0..99");
  EXPECT_EQ(err("5", 5), "shard range \"5\" is outside 0..4");
  EXPECT_EQ(err("9-3"), "shard range \"9-3\": first is greater than last");
  EXPECT_EQ(err("1,,2"), "empty item in shard list \"1,,2\"");
  EXPECT_EQ(err("1,"), "empty item in shard list \"1,\"");
  EXPECT_EQ(err(",1"), "empty item in shard list \",1\"");
  for (std::string_view bad : {"a", "0-", "-5", "1 2", "+1", "1-2-3", "1..5", "0x10", "1-a"}) {
    EXPECT_EQ(err(bad), "bad shard range \"" + std::string(bad) + "\": expected N or N-M");
  }
  // The error pointer is optional.
  EXPECT_FALSE(parse_shard_ranges("x", 100, nullptr));
}

}  // namespace
}  // namespace sluice::router
