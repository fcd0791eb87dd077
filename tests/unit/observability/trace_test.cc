#include "observability/trace.h"

#include <gtest/gtest.h>

#include <set>
#include <string>

namespace sluice::observability {
namespace {

constexpr std::string_view kTrace = "4bf92f3577b34da6a3ce929d0e0e4736";
constexpr std::string_view kParent = "00f067aa0ba902b7";
const std::string kValid = "00-" + std::string(kTrace) + "-" + std::string(kParent) + "-01";

bool parses(std::string_view h) {
  TraceParent tp;
  return parse_traceparent(h, tp);
}

bool is_lower_hex(std::string_view s) {
  return s.find_first_not_of("0123456789abcdef") == std::string_view::npos;
}

TEST(TraceparentTest, ParsesSpecExample) {
  TraceParent tp;
  ASSERT_TRUE(parse_traceparent(kValid, tp));
  EXPECT_EQ(tp.version, 0);
  EXPECT_EQ(tp.trace_id, kTrace);
  EXPECT_EQ(tp.parent_id, kParent);
  EXPECT_EQ(tp.flags, 1);
  EXPECT_TRUE(tp.sampled());

  ASSERT_TRUE(
      parse_traceparent("00-" + std::string(kTrace) + "-" + std::string(kParent) + "-00", tp));
  EXPECT_FALSE(tp.sampled());
}

TEST(TraceparentTest, IgnoresOptionalWhitespace) {
  EXPECT_TRUE(parses(" \t" + kValid + " "));
}

TEST(TraceparentTest, RejectsMalformedHeaders) {
  const std::string t(kTrace), p(kParent);
  EXPECT_FALSE(parses(""));
  EXPECT_FALSE(parses("00"));
  // Upper-case hex anywhere.
  EXPECT_FALSE(parses("00-4BF92F3577B34DA6A3CE929D0E0E4736-" + p + "-01"));
  EXPECT_FALSE(parses("00-" + t + "-00F067AA0BA902B7-01"));
  EXPECT_FALSE(parses("00-" + t + "-" + p + "-0A"));
  EXPECT_FALSE(parses("0A-" + t + "-" + p + "-01"));
  // All-zero ids.
  EXPECT_FALSE(parses("00-00000000000000000000000000000000-" + p + "-01"));
  EXPECT_FALSE(parses("00-" + t + "-0000000000000000-01"));
  // Version ff is invalid, whatever follows.
  EXPECT_FALSE(parses("ff-" + t + "-" + p + "-01"));
  // Wrong lengths.
  EXPECT_FALSE(parses("00-" + t.substr(1) + "-" + p + "-01"));
  EXPECT_FALSE(parses("00-" + t + "0-" + p + "-01"));
  EXPECT_FALSE(parses("00-" + t + "-" + p.substr(1) + "-01"));
  EXPECT_FALSE(parses("00-" + t + "-" + p + "-1"));
  EXPECT_FALSE(parses("00-" + t + "-" + p + "-011"));
  // Version 00 allows nothing after the flags.
  EXPECT_FALSE(parses(kValid + "-"));
  EXPECT_FALSE(parses(kValid + "-extra"));
  // Separators and non-hex characters.
  EXPECT_FALSE(parses("00_" + t + "-" + p + "-01"));
  EXPECT_FALSE(parses("00-" + t + "_" + p + "-01"));
  EXPECT_FALSE(parses("00-" + t + "-" + p + "_01"));
  EXPECT_FALSE(parses("00-" + t.substr(0, 31) + "g-" + p + "-01"));
  EXPECT_FALSE(parses("00-" + t + "-" + p.substr(0, 15) + "z-01"));
  EXPECT_FALSE(parses("0g-" + t + "-" + p + "-01"));
}

TEST(TraceparentTest, AcceptsFutureVersionsByTheSpecRules) {
  const std::string base = "cc-" + std::string(kTrace) + "-" + std::string(kParent) + "-01";
  TraceParent tp;
  ASSERT_TRUE(parse_traceparent(base, tp));
  EXPECT_EQ(tp.version, 0xcc);
  EXPECT_EQ(tp.trace_id, kTrace);
  EXPECT_TRUE(parses(base + "-what-the-future-will-be-like"));
  EXPECT_TRUE(parses(base + "-"));
  EXPECT_FALSE(parses(base + "what"));  // more data must follow a '-'
  EXPECT_FALSE(parses(base.substr(0, 54)));
  // Future versions still need valid ids.
  EXPECT_FALSE(parses("cc-00000000000000000000000000000000-" + std::string(kParent) + "-01-x"));
}

TEST(ChildTraceparentTest, KeepsTraceIdAndFlagsWithNewSpan) {
  core::Rng rng(1);
  std::string out;
  make_child_traceparent(kValid, rng, out);
  TraceParent tp;
  ASSERT_TRUE(parse_traceparent(out, tp)) << out;
  EXPECT_EQ(out.size(), kTraceparentSize);
  EXPECT_EQ(tp.version, 0);
  EXPECT_EQ(tp.trace_id, kTrace);
  EXPECT_NE(tp.parent_id, kParent);
  EXPECT_TRUE(is_lower_hex(tp.parent_id));
  EXPECT_EQ(tp.flags, 0x01);

  make_child_traceparent("00-" + std::string(kTrace) + "-" + std::string(kParent) + "-00", rng,
                         out);
  EXPECT_EQ(out.substr(53), "00");
}

TEST(ChildTraceparentTest, NewSpanEveryTime) {
  core::Rng rng(2);
  std::set<std::string> spans;
  std::string out;
  for (int i = 0; i < 1000; ++i) {
    make_child_traceparent(kValid, rng, out);
    spans.insert(out.substr(36, 16));
  }
  EXPECT_EQ(spans.size(), 1000u);
}

TEST(ChildTraceparentTest, ClearsUnknownFlagsAndDowngradesVersion) {
  core::Rng rng(3);
  std::string out;
  make_child_traceparent("00-" + std::string(kTrace) + "-" + std::string(kParent) + "-ff", rng,
                         out);
  EXPECT_EQ(out.substr(53), "03");  // sampled + random (Level 2) survive, the rest is reserved
  make_child_traceparent(
      "cc-" + std::string(kTrace) + "-" + std::string(kParent) + "-01-future-field", rng, out);
  EXPECT_EQ(out.size(), kTraceparentSize);
  EXPECT_EQ(out.substr(0, 3), "00-");
  EXPECT_EQ(out.substr(3, 32), kTrace);
  EXPECT_EQ(out.substr(53), "01");
}

TEST(ChildTraceparentTest, StartsANewTraceForMissingOrInvalidHeader) {
  core::Rng rng(4);
  std::string a, b;
  for (std::string_view incoming :
       {std::string_view(), std::string_view("garbage"),
        std::string_view("00-00000000000000000000000000000000-00f067aa0ba902b7-01")}) {
    make_child_traceparent(incoming, rng, a);
    TraceParent tp;
    ASSERT_TRUE(parse_traceparent(a, tp)) << a;
    EXPECT_EQ(tp.flags, 0x01);
    EXPECT_NE(tp.trace_id, "00000000000000000000000000000000");
    make_child_traceparent(incoming, rng, b);
    EXPECT_NE(a.substr(3, 32), b.substr(3, 32));
  }
}

TEST(RequestIdTest, Is32LowerHexAndUnique) {
  core::Rng rng;
  std::set<std::string> ids;
  std::string id;
  for (int i = 0; i < 10000; ++i) {
    make_request_id(rng, id);
    ASSERT_EQ(id.size(), 32u);
    ASSERT_TRUE(is_lower_hex(id)) << id;
    ids.insert(id);
  }
  EXPECT_EQ(ids.size(), 10000u);
}

TEST(RequestIdTest, ReplacesPreviousContents) {
  std::string id = "something old that is longer than thirty-two characters";
  make_request_id(core::thread_rng(), id);
  EXPECT_EQ(id.size(), 32u);
}

}  // namespace
}  // namespace sluice::observability
