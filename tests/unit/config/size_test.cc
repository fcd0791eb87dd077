#include "config/size.h"

#include <gtest/gtest.h>

namespace sluice::config {
namespace {

TEST(ParseSize, PlainAndSuffixed) {
  EXPECT_EQ(parse_size("0"), 0u);
  EXPECT_EQ(parse_size("65536"), 65536u);
  EXPECT_EQ(parse_size("512B"), 512u);
  EXPECT_EQ(parse_size("64KiB"), 65536u);
  EXPECT_EQ(parse_size("10MiB"), 10485760u);
  EXPECT_EQ(parse_size("1GiB"), 1073741824u);
  EXPECT_EQ(parse_size("1TiB"), 1099511627776u);
  EXPECT_EQ(parse_size("18446744073709551615"), 18446744073709551615u);
}

TEST(ParseSize, Rejects) {
  for (const char* bad : {"", "KiB", "64 KiB", " 64", "64kib", "64KB", "64K", "64k", "1.5MiB", "-1",
                          "+1", "0x10", "1e6", "64KiBs", "18446744073709551616", "16777216TiB"}) {
    EXPECT_FALSE(parse_size(bad).has_value()) << "'" << bad << "'";
  }
}

TEST(FormatSize, ShortestExact) {
  EXPECT_EQ(format_size(0), "0");
  EXPECT_EQ(format_size(1000), "1000");
  EXPECT_EQ(format_size(1024), "1KiB");
  EXPECT_EQ(format_size(65536), "64KiB");
  EXPECT_EQ(format_size(1536), "1536");
  EXPECT_EQ(format_size(10485760), "10MiB");
  EXPECT_EQ(format_size(uint64_t{1} << 40), "1TiB");
  for (uint64_t n : {1ull, 1023ull, 1024ull, 3ull << 30, 5ull << 40}) {
    EXPECT_EQ(parse_size(format_size(n)), n);
  }
}

}  // namespace
}  // namespace sluice::config
