// Freeze windows in IANA zones (ICU): one-off and recurring windows, the boundaries [start, end),
// a zone without DST (Asia/Shanghai) and one with it (Europe/London, both changes of 2026).
#include "control/changes/freeze.h"

#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include <ctime>

namespace sluice::control::changes {
namespace {

using ::testing::HasSubstr;
using Json = nlohmann::json;

// UTC wall time -> ms since the epoch.
int64_t utc(int y, int mo, int d, int h, int mi, int s = 0) {
  std::tm tm{};
  tm.tm_year = y - 1900;
  tm.tm_mon = mo - 1;
  tm.tm_mday = d;
  tm.tm_hour = h;
  tm.tm_min = mi;
  tm.tm_sec = s;
  return static_cast<int64_t>(timegm(&tm)) * 1000;
}

Resource window(const std::string& name, Json spec) {
  return Resource{"freeze_window", name, std::move(spec)};
}

TEST(FreezeWindowCheck, AcceptsTheDocumentedShapes) {
  Json spec = {
      {"time_zone", "Asia/Shanghai"},
      {"reason", "month-end batch"},
      {"once", {{{"start", "2026-12-31T18:00"}, {"end", "2027-01-02 06:00"}}}},
      {"recurring",
       {{{"every", "month"}, {"day", "last"}, {"start", "18:00"}, {"end", "06:00"}},
        {{"every", "month"}, {"day", 15}, {"start", "09:00"}, {"end", "10:00"}},
        {{"every", "week"}, {"day", "fri"}, {"start", "18:00"}, {"end", "06:00"}, {"days", 3}},
        {{"every", "day"}, {"start", "22:00"}, {"end", "23:00"}}}}};
  EXPECT_THAT(check_freeze_window(spec, "spec"), ::testing::IsEmpty());
}

TEST(FreezeWindowCheck, NamesEveryProblem) {
  Json spec = {{"time_zone", "Mars/Olympus"},
               {"colour", "red"},
               {"once",
                {{{"start", "2026-02-30T18:00"}, {"end", "2026-01-01T00:00"}},
                 {{"start", "2026-03-02T18:00"}, {"end", "2026-03-01T00:00"}}}},
               {"recurring",
                {{{"every", "year"}, {"start", "18:00"}, {"end", "06:00"}},
                 {{"every", "week"}, {"day", "funday"}, {"start", "25:00"}, {"end", "06:00"}},
                 {{"every", "day"}, {"start", "10:00"}, {"end", "09:00"}, {"days", 0}}}}};
  auto errors = check_freeze_window(spec, "freeze_window/x: spec");
  std::string all;
  for (auto& e : errors) all += e + "\n";
  EXPECT_THAT(all, HasSubstr("spec.time_zone: unknown time zone 'Mars/Olympus'"));
  EXPECT_THAT(all, HasSubstr("spec.colour: unknown key"));
  EXPECT_THAT(all, HasSubstr("spec.once[0].start: expected a local date-time"));
  EXPECT_THAT(all, HasSubstr("spec.once[1]: end must be after start"));
  EXPECT_THAT(all, HasSubstr("spec.recurring[0].every: expected month, week or day"));
  EXPECT_THAT(all, HasSubstr("spec.recurring[1].day: expected mon, tue"));
  EXPECT_THAT(all, HasSubstr("spec.recurring[1].start: expected a local time HH:MM, got '25:00'"));
  EXPECT_THAT(all, HasSubstr("spec.recurring[2].days: 0 needs end after start"));
  EXPECT_THAT(check_freeze_window(Json{{"time_zone", "UTC"}}, "spec"),
              ::testing::ElementsAre(HasSubstr("at least one entry")));
}

TEST(FreezeWindow, OnceInShanghaiIsUtcPlusEight) {
  // 2026-12-31 18:00 CST = 10:00Z; 2027-01-02 06:00 CST = 2027-01-01 22:00Z.
  Json spec = {{"time_zone", "Asia/Shanghai"},
               {"once", {{{"start", "2026-12-31T18:00"}, {"end", "2027-01-02T06:00"}}}}};
  EXPECT_FALSE(covering_end(spec, utc(2026, 12, 31, 9, 59, 59)));
  EXPECT_EQ(covering_end(spec, utc(2026, 12, 31, 10, 0)), utc(2027, 1, 1, 22, 0));
  EXPECT_EQ(covering_end(spec, utc(2027, 1, 1, 21, 59, 59)), utc(2027, 1, 1, 22, 0));
  EXPECT_FALSE(covering_end(spec, utc(2027, 1, 1, 22, 0)));  // end is outside
}

TEST(FreezeWindow, MonthEndInShanghaiRunsToTheNextMorning) {
  Json spec = {
      {"time_zone", "Asia/Shanghai"},
      {"recurring", {{{"every", "month"}, {"day", "last"}, {"start", "18:00"}, {"end", "06:00"}}}}};
  // November 2026 ends on the 30th: 18:00 CST = 10:00Z, to 1 December 06:00 CST = 30 Nov 22:00Z.
  EXPECT_FALSE(covering_end(spec, utc(2026, 11, 30, 9, 59, 59)));
  EXPECT_EQ(covering_end(spec, utc(2026, 11, 30, 10, 0)), utc(2026, 11, 30, 22, 0));
  EXPECT_EQ(covering_end(spec, utc(2026, 11, 30, 21, 0)), utc(2026, 11, 30, 22, 0));
  EXPECT_FALSE(covering_end(spec, utc(2026, 11, 30, 22, 0)));
  // Not on the 29th; February 2026 ends on the 28th.
  EXPECT_FALSE(covering_end(spec, utc(2026, 11, 29, 12, 0)));
  EXPECT_EQ(covering_end(spec, utc(2026, 2, 28, 12, 0)), utc(2026, 2, 28, 22, 0));
  // Day 31: months without it have no window.
  spec["recurring"][0]["day"] = 31;
  EXPECT_FALSE(covering_end(spec, utc(2026, 11, 30, 12, 0)));
  EXPECT_EQ(covering_end(spec, utc(2026, 12, 31, 12, 0)), utc(2026, 12, 31, 22, 0));
}

TEST(FreezeWindow, LondonSpringForwardSkipsAnHour) {
  // Sunday 29 March 2026: clocks go from 01:00 GMT to 02:00 BST. 00:30 local = 00:30Z;
  // 02:30 local (BST) = 01:30Z: the window lasts one hour, not two.
  Json spec = {
      {"time_zone", "Europe/London"},
      {"recurring", {{{"every", "week"}, {"day", "sun"}, {"start", "00:30"}, {"end", "02:30"}}}}};
  EXPECT_FALSE(covering_end(spec, utc(2026, 3, 29, 0, 29, 59)));
  EXPECT_EQ(covering_end(spec, utc(2026, 3, 29, 0, 30)), utc(2026, 3, 29, 1, 30));
  EXPECT_FALSE(covering_end(spec, utc(2026, 3, 29, 1, 30)));
  // A week earlier (GMT all along) it is two hours long.
  EXPECT_EQ(covering_end(spec, utc(2026, 3, 22, 2, 0)), utc(2026, 3, 22, 2, 30));
  // A start inside the skipped hour (01:30 does not exist) is the first instant after the gap.
  spec["recurring"][0]["start"] = "01:30";
  spec["recurring"][0]["end"] = "03:00";
  EXPECT_FALSE(covering_end(spec, utc(2026, 3, 29, 0, 59, 59)));
  EXPECT_EQ(covering_end(spec, utc(2026, 3, 29, 1, 0)), utc(2026, 3, 29, 2, 0));
}

TEST(FreezeWindow, LondonFallBackStartsAtTheFirstOfTheRepeatedTimes) {
  // Sunday 25 October 2026: 01:00-02:00 happens twice (BST 00:00Z-01:00Z, then GMT 01:00Z-02:00Z).
  // 01:30 is the first one, 00:30Z; 03:00 GMT = 03:00Z.
  Json spec = {{"time_zone", "Europe/London"},
               {"once", {{{"start", "2026-10-25T01:30"}, {"end", "2026-10-25T03:00"}}}}};
  EXPECT_FALSE(covering_end(spec, utc(2026, 10, 25, 0, 29, 59)));
  EXPECT_EQ(covering_end(spec, utc(2026, 10, 25, 0, 30)), utc(2026, 10, 25, 3, 0));
  EXPECT_EQ(local_time(utc(2026, 10, 25, 3, 0), "Europe/London"), "2026-10-25 03:00");
  EXPECT_EQ(local_time(utc(2026, 7, 1, 12, 0), "Europe/London"), "2026-07-01 13:00");
}

TEST(FreezeWindow, WeekendSpansDays) {
  // Friday 18:00 to Monday 06:00 in Shanghai: Fri 4 Dec 2026 10:00Z to Sun 6 Dec 22:00Z.
  Json spec = {
      {"time_zone", "Asia/Shanghai"},
      {"recurring",
       {{{"every", "week"}, {"day", "fri"}, {"start", "18:00"}, {"end", "06:00"}, {"days", 3}}}}};
  EXPECT_FALSE(covering_end(spec, utc(2026, 12, 4, 9, 0)));
  EXPECT_EQ(covering_end(spec, utc(2026, 12, 5, 12, 0)), utc(2026, 12, 6, 22, 0));
  EXPECT_EQ(covering_end(spec, utc(2026, 12, 6, 21, 0)), utc(2026, 12, 6, 22, 0));
  EXPECT_FALSE(covering_end(spec, utc(2026, 12, 6, 22, 0)));
}

TEST(FreezeWindow, FrozenAtNamesTheWindowAndChainsTouchingOnes) {
  std::vector<Resource> config = {
      Resource{"service", "a", Json::object()},
      window("batch", {{"time_zone", "Asia/Shanghai"},
                       {"reason", "month-end batch"},
                       {"once", {{{"start", "2026-11-30T18:00"}, {"end", "2026-12-01T06:00"}}}}}),
      window("after-batch",
             {{"time_zone", "Asia/Shanghai"},
              {"once", {{{"start", "2026-12-01T06:00"}, {"end", "2026-12-01T08:00"}}}}}),
  };
  EXPECT_FALSE(frozen_at(config, utc(2026, 11, 30, 9, 0)));
  auto f = frozen_at(config, utc(2026, 11, 30, 12, 0));
  ASSERT_TRUE(f);
  EXPECT_EQ(f->window, "batch");
  EXPECT_EQ(f->reason, "month-end batch");
  EXPECT_EQ(f->until_ms, utc(2026, 12, 1, 0, 0));  // 08:00 CST, after the touching window
  EXPECT_EQ(f->until_local, "2026-12-01 08:00 Asia/Shanghai");
  EXPECT_FALSE(frozen_at(config, utc(2026, 12, 1, 0, 0)));
}

}  // namespace
}  // namespace sluice::control::changes
