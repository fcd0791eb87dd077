// Host facts as the sample service registers them: the process start time parsed from /proc
// texts, and what is left out so that the registry accepts the rest.
#include "sample/host_facts.h"

#include <gtest/gtest.h>

#include <chrono>

#include "sample/caller.h"

namespace sluice::sample {
namespace {

TEST(HostFacts, ProcessStartFromProcTexts) {
  // starttime (field 22) = 250 ticks after boot; comm with spaces and a parenthesis.
  const std::string self =
      "4242 (my (odd) proc) S 1 2 3 4 5 6 7 8 9 10 11 12 13 14 15 16 17 18 250 19 20\n";
  const std::string stat = "cpu  1 2 3\nintr 5\nbtime 1700000000\nprocesses 9\n";
  EXPECT_EQ(process_start_ms(self, stat, 100), 1'700'000'000'000 + 2'500);
  EXPECT_EQ(process_start_ms(self, stat, 0), 0);
  EXPECT_EQ(process_start_ms("4242 (x) S 1 2", stat, 100), 0);  // too few fields
  EXPECT_EQ(process_start_ms(self, "cpu 1\n", 100), 0);         // no btime
  EXPECT_EQ(process_start_ms("no parenthesis", stat, 100), 0);
}

TEST(HostFacts, ReadFromThisProcess) {
  HostFacts f = read_host_facts("1.2.3+abc");
  EXPECT_GT(f.cpu_count, 0);
  EXPECT_GT(f.memory_bytes, 0);
  const int64_t now = std::chrono::duration_cast<std::chrono::milliseconds>(
                          std::chrono::system_clock::now().time_since_epoch())
                          .count();
  EXPECT_GT(f.started_ms, now - 24 * 3'600'000LL * 365);
  EXPECT_LE(f.started_ms, now + 1000);
  nlohmann::json j = to_json(f);
  EXPECT_EQ(j["version"], "1.2.3+abc");
  EXPECT_EQ(j["cpu_count"], f.cpu_count);
}

TEST(HostFacts, OddValuesAreLeftOut) {
  HostFacts f;
  f.hostname = "bad host";
  f.version = "has space";
  f.cpu_count = 4;
  EXPECT_EQ(to_json(f), nlohmann::json({{"cpu_count", 4}}));
}

TEST(CallTargets, Parse) {
  std::string error;
  auto t = parse_call("ledger=/api/ledger?x=1", &error);
  ASSERT_TRUE(t) << error;
  EXPECT_EQ(t->name, "ledger");
  EXPECT_EQ(t->path, "/api/ledger?x=1");
  for (const char* bad : {"ledger", "=/x", "ledger=", "ledger=x", "ledger=/a b"}) {
    EXPECT_FALSE(parse_call(bad, &error)) << bad;
    EXPECT_FALSE(error.empty());
  }
}

}  // namespace
}  // namespace sluice::sample
