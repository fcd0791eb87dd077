#include "sample/body.h"

#include <gtest/gtest.h>
#include <nlohmann/json.hpp>

namespace sluice::sample {
namespace {

using nlohmann::json;

std::string as_json(std::string_view s) {
  std::string out;
  append_json_string(out, s);
  return out;
}

// Escaping itself is tested with observability::append_json_string; the sample service must
// still produce parseable JSON for any bytes it echoes.
TEST(JsonString, AlwaysParses) {
  std::string all;
  for (int c = 0; c < 256; ++c) all.push_back(static_cast<char>(c));
  auto j = json::parse(as_json(all));
  EXPECT_TRUE(j.is_string());
}

TEST(BodyBuilder, DescribesTheRequest) {
  BodyBuilder b("accounts", "a", "a1", "accounts@127.0.0.1:9101");
  std::string out;
  b.build(out, RequestView{"GET", "/api/accounts/7", "", 0});
  EXPECT_EQ(out,
            R"({"service":"accounts","city":"a","zone":"a1","instance":"accounts@127.0.0.1:9101",)"
            R"("method":"GET","path":"/api/accounts/7","body_bytes":0})");
}

TEST(BodyBuilder, QueryStatusAndBodyBytes) {
  BodyBuilder b("s", "b", "b2", "i");
  std::string out;
  b.build(out, RequestView{"POST", "/x", "a=1&b=\"2\"", 1234, nullptr, 418});
  auto j = json::parse(out);
  EXPECT_EQ(j["method"], "POST");
  EXPECT_EQ(j["path"], "/x");
  EXPECT_EQ(j["query"], "a=1&b=\"2\"");
  EXPECT_EQ(j["body_bytes"], 1234);
  EXPECT_EQ(j["status"], 418);
  EXPECT_FALSE(j.contains("headers"));
}

TEST(BodyBuilder, AppendsToReusedBuffer) {
  BodyBuilder b("s", "a", "", "i");
  std::string out = "prefix:";
  b.build(out, RequestView{"GET", "/", "", 0});
  EXPECT_EQ(out.rfind("prefix:{", 0), 0u);
  EXPECT_EQ(json::parse(out.substr(7))["zone"], "");
}

TEST(BodyBuilder, EscapesConfiguredNames) {
  BodyBuilder b("we\"ird", "a", "a1", "x\ny");
  std::string out;
  b.build(out, RequestView{"GET", "/", "", 0});
  auto j = json::parse(out);
  EXPECT_EQ(j["service"], "we\"ird");
  EXPECT_EQ(j["instance"], "x\ny");
}

TEST(HeadersObject, LowercasesAndJoinsRepeatedNames) {
  http::HeaderMap h;
  h.add("Host", "example");
  h.add("X-Trace", "1");
  h.add("Accept", "*/*");
  h.add("x-trace", "2");
  h.add("X-TRACE", "3");
  std::string out;
  append_headers_object(out, h);
  EXPECT_EQ(out, R"({"host":"example","x-trace":"1, 2, 3","accept":"*/*"})");
}

TEST(HeadersObject, EmptyAndEscaped) {
  http::HeaderMap h;
  std::string out;
  append_headers_object(out, h);
  EXPECT_EQ(out, "{}");
  h.add("X-Q", "a\"b");
  out.clear();
  append_headers_object(out, h);
  EXPECT_EQ(json::parse(out)["x-q"], "a\"b");
}

TEST(BodyBuilder, EchoesHeaders) {
  BodyBuilder b("s", "a", "a1", "i");
  http::HeaderMap h;
  h.add("X-Sample-Echo", "headers");
  std::string out;
  b.build(out, RequestView{"GET", "/", "", 0, &h});
  EXPECT_EQ(json::parse(out)["headers"]["x-sample-echo"], "headers");
}

TEST(ReasonPhrase, KnownAndUnknown) {
  EXPECT_EQ(reason_phrase(200), "OK");
  EXPECT_EQ(reason_phrase(503), "Service Unavailable");
  EXPECT_EQ(reason_phrase(599), "Unknown");
}

TEST(PatternBlock, RepeatsThePattern) {
  std::string_view block = pattern_block();
  ASSERT_EQ(block.size(), kPatternBlockSize);
  for (size_t i = 0; i < block.size(); i += 4099) EXPECT_EQ(block[i], kBytePattern[i % 64]) << i;
  EXPECT_EQ(block.substr(block.size() - 64), kBytePattern);
}

}  // namespace
}  // namespace sluice::sample
