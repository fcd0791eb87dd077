#include "sample/request_target.h"

#include <gtest/gtest.h>

namespace sluice::sample {
namespace {

TEST(Classify, FixedEndpoints) {
  EXPECT_EQ(classify("/healthz").endpoint, Endpoint::kHealthz);
  EXPECT_EQ(classify("/_sample/faults").endpoint, Endpoint::kFaults);
  EXPECT_EQ(classify("/_sample/stats").endpoint, Endpoint::kStats);
  EXPECT_EQ(classify("/_sample/bytes").endpoint, Endpoint::kBytes);
  EXPECT_EQ(classify("/_sample/echo").endpoint, Endpoint::kEcho);
  EXPECT_EQ(classify("/_sample/close").endpoint, Endpoint::kClose);
}

TEST(Classify, AnyOtherPathIsTheGenericAnswer) {
  EXPECT_EQ(classify("/").endpoint, Endpoint::kAny);
  EXPECT_EQ(classify("/api/accounts/1").endpoint, Endpoint::kAny);
  EXPECT_EQ(classify("/healthz/x").endpoint, Endpoint::kAny);
  EXPECT_EQ(classify("/_sample").endpoint, Endpoint::kAny);
  EXPECT_EQ(classify("*").endpoint, Endpoint::kAny);
}

TEST(Classify, UnknownSampleEndpoints) {
  EXPECT_EQ(classify("/_sample/").endpoint, Endpoint::kUnknownSample);
  EXPECT_EQ(classify("/_sample/stats/").endpoint, Endpoint::kUnknownSample);
  EXPECT_EQ(classify("/_sample/nope").endpoint, Endpoint::kUnknownSample);
}

TEST(Classify, StatusArgument) {
  Route r = classify("/_sample/status/503");
  EXPECT_EQ(r.endpoint, Endpoint::kStatus);
  EXPECT_TRUE(r.arg_ok);
  EXPECT_EQ(r.arg, 503u);
  EXPECT_TRUE(classify("/_sample/status/200").arg_ok);
  EXPECT_TRUE(classify("/_sample/status/599").arg_ok);
  for (const char* bad :
       {"/_sample/status/", "/_sample/status/199", "/_sample/status/600", "/_sample/status/abc",
        "/_sample/status/-500", "/_sample/status/50x", "/_sample/status/+503"}) {
    Route b = classify(bad);
    EXPECT_EQ(b.endpoint, Endpoint::kStatus) << bad;
    EXPECT_FALSE(b.arg_ok) << bad;
  }
}

TEST(Classify, DelayArgument) {
  Route r = classify("/_sample/delay/250");
  EXPECT_EQ(r.endpoint, Endpoint::kDelay);
  EXPECT_TRUE(r.arg_ok);
  EXPECT_EQ(r.arg, 250u);
  EXPECT_TRUE(classify("/_sample/delay/0").arg_ok);
  EXPECT_TRUE(classify("/_sample/delay/3600000").arg_ok);
  EXPECT_FALSE(classify("/_sample/delay/3600001").arg_ok);
  EXPECT_FALSE(classify("/_sample/delay/1s").arg_ok);
}

TEST(QueryParam, FindsValues) {
  EXPECT_EQ(query_param("n=10&chunked=1", "n"), "10");
  EXPECT_EQ(query_param("n=10&chunked=1", "chunked"), "1");
  EXPECT_EQ(query_param("a=1&n=2&n=3", "n"), "2");  // first one wins
  EXPECT_EQ(query_param("chunked", "chunked"), "");
  EXPECT_EQ(query_param("chunked&n=1", "chunked"), "");
  EXPECT_EQ(query_param("n=", "n"), "");
  EXPECT_EQ(query_param("n=a=b", "n"), "a=b");
}

TEST(QueryParam, AbsentNames) {
  EXPECT_FALSE(query_param("", "n"));
  EXPECT_FALSE(query_param("nn=1", "n"));
  EXPECT_FALSE(query_param("xn=1&m=2", "n"));
  EXPECT_FALSE(query_param("&&", "n"));
  EXPECT_FALSE(query_param("=1", "n"));
}

TEST(ParseU64, DecimalOnly) {
  EXPECT_EQ(parse_u64("0"), 0u);
  EXPECT_EQ(parse_u64("1073741824"), 1073741824u);
  EXPECT_EQ(parse_u64("18446744073709551615"), UINT64_MAX);
  EXPECT_FALSE(parse_u64("18446744073709551616"));
  EXPECT_FALSE(parse_u64(""));
  EXPECT_FALSE(parse_u64("-1"));
  EXPECT_FALSE(parse_u64("+1"));
  EXPECT_FALSE(parse_u64(" 1"));
  EXPECT_FALSE(parse_u64("1 "));
  EXPECT_FALSE(parse_u64("0x10"));
  EXPECT_FALSE(parse_u64("1e3"));
}

TEST(IsTrue, Flags) {
  for (const char* t : {"", "1", "true", "yes", "on"}) EXPECT_TRUE(is_true(t)) << t;
  for (const char* f : {"0", "false", "no", "off", "2", "TRUE "}) EXPECT_FALSE(is_true(f)) << f;
}

}  // namespace
}  // namespace sluice::sample
