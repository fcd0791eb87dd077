#include "core/duration.h"

#include <gtest/gtest.h>

#include <limits>

namespace sluice::core {
namespace {

using namespace std::chrono_literals;

TEST(ParseDuration, EveryUnit) {
  EXPECT_EQ(parse_duration("7ns"), Duration(7));
  EXPECT_EQ(parse_duration("7us"), 7us);
  EXPECT_EQ(parse_duration("500ms"), 500ms);
  EXPECT_EQ(parse_duration("2s"), 2s);
  EXPECT_EQ(parse_duration("1m"), 1min);
  EXPECT_EQ(parse_duration("1h"), 1h);
  EXPECT_EQ(parse_duration("0s"), 0s);
}

TEST(ParseDuration, Fractions) {
  EXPECT_EQ(parse_duration("1.5s"), 1500ms);
  EXPECT_EQ(parse_duration("0.3s"), 300ms);
  EXPECT_EQ(parse_duration("0.25ms"), 250us);
  EXPECT_EQ(parse_duration(".5s"), 500ms);
  EXPECT_EQ(parse_duration("1.s"), 1s);
  EXPECT_EQ(parse_duration("1.5h"), 90min);
  // Rounded to the nearest nanosecond.
  EXPECT_EQ(parse_duration("0.0000000005s"), Duration(1));
  EXPECT_EQ(parse_duration("0.0000000004s"), Duration(0));
  EXPECT_EQ(parse_duration("1.00000000049999999999999s"), 1s);
}

TEST(ParseDuration, Rejects) {
  for (const char* bad :
       {"",     "5",  "s",    ".s",     ".",     "-1s",   "+1s",   "1 s", " 1s",   "1s ", "1S",
        "1sec", "1d", "1e3s", "1.5.5s", "1..5s", "1m30s", "inf s", "nan", "0x10s", "1µs"}) {
    EXPECT_FALSE(parse_duration(bad).has_value()) << "'" << bad << "'";
  }
}

// Was parsed through a double: 2^53 + 1 ns came back as 2^53.
TEST(ParseDuration, ExactForLargeValues) {
  EXPECT_EQ(parse_duration("9007199254740993ns"), Duration(9007199254740993));
  EXPECT_EQ(parse_duration("9223372036854775807ns"), Duration::max());
}

// Was rejected by a 9.2e18 cut-off although it fits in int64.
TEST(ParseDuration, LargestHours) {
  EXPECT_EQ(parse_duration("2562047h"), std::chrono::hours(2562047));
  EXPECT_FALSE(parse_duration("2562048h").has_value());
}

TEST(ParseDuration, Overflow) {
  EXPECT_FALSE(parse_duration("9223372036854775808ns").has_value());
  EXPECT_FALSE(parse_duration("99999999999999999999999999999h").has_value());
  EXPECT_FALSE(parse_duration("9223372036854775807.6ns").has_value());
}

TEST(FormatDuration, ShortestExact) {
  EXPECT_EQ(format_duration(0s), "0s");
  EXPECT_EQ(format_duration(1500ms), "1500ms");
  EXPECT_EQ(format_duration(2s), "2s");
  EXPECT_EQ(format_duration(90s), "90s");
  EXPECT_EQ(format_duration(120s), "2m");
  EXPECT_EQ(format_duration(2h), "2h");
  EXPECT_EQ(format_duration(250us), "250us");
  EXPECT_EQ(format_duration(Duration(1001)), "1001ns");
  EXPECT_EQ(format_duration(-1500ms), "-1500ms");
}

TEST(FormatDuration, RoundTrips) {
  for (Duration d :
       std::initializer_list<Duration>{Duration(1), Duration(999), 1ms, 1500ms, 61s, 1h,
                                       Duration(9007199254740993), Duration::max()}) {
    EXPECT_EQ(parse_duration(format_duration(d)), d) << format_duration(d);
  }
}

}  // namespace
}  // namespace sluice::core
