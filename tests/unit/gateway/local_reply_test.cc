#include "gateway/local_reply.h"

#include <gtest/gtest.h>

namespace sluice::gateway {
namespace {

std::string build(const LocalReply& r, size_t* body_bytes = nullptr) {
  std::string out = "before|";
  std::string scratch;
  size_t n = append_local_reply(out, r, scratch);
  if (body_bytes) *body_bytes = n;
  return out;
}

TEST(LocalReplyTest, JsonErrorExactBytes) {
  size_t n = 0;
  std::string out =
      build({.status = 404, .message = "no route matches this request", .request_id = "abc"}, &n);
  const std::string body =
      "{\"error\":\"no route matches this request\",\"status\":404,\"request_id\":\"abc\"}\n";
  EXPECT_EQ(out,
            "before|HTTP/1.1 404 Not Found\r\nContent-Type: application/json\r\n"
            "Content-Length: " +
                std::to_string(body.size()) + "\r\nx-request-id: abc\r\n\r\n" + body);
  EXPECT_EQ(n, body.size());
}

TEST(LocalReplyTest, CodeAndExtraMembersInOrder) {
  std::string out = build({.status = 429,
                           .message = "rate limit exceeded",
                           .code = "RATE_LIMITED",
                           .extra_json = ",\"rule\":\"per-app\"",
                           .extra_headers = "Retry-After: 3\r\nRateLimit-Limit: 10\r\n",
                           .request_id = "r"});
  EXPECT_NE(out.find("\r\nx-request-id: r\r\nRetry-After: 3\r\nRateLimit-Limit: 10\r\n\r\n"),
            std::string::npos)
      << out;
  EXPECT_TRUE(
      out.ends_with("{\"error\":\"rate limit exceeded\",\"code\":\"RATE_LIMITED\","
                    "\"rule\":\"per-app\",\"status\":429,\"request_id\":\"r\"}\n"))
      << out;
}

TEST(LocalReplyTest, Every503SaysWhenToRetry) {
  EXPECT_NE(build({.status = 503, .message = "m"}).find("\r\nRetry-After: 1\r\n"),
            std::string::npos);
  std::string own = build({.status = 503, .message = "m", .extra_headers = "Retry-After: 7\r\n"});
  EXPECT_NE(own.find("Retry-After: 7"), std::string::npos);
  EXPECT_EQ(own.find("Retry-After: 1"), std::string::npos);
  EXPECT_EQ(build({.status = 502, .message = "m"}).find("Retry-After"), std::string::npos);
  EXPECT_EQ(build({.status = 504, .message = "m"}).find("Retry-After"), std::string::npos);
}

TEST(LocalReplyTest, KeepAliveStateAndHead) {
  std::string open = build({.status = 502, .message = "m"});
  EXPECT_EQ(open.find("Connection:"), std::string::npos);
  std::string closing = build({.status = 400, .message = "m", .close = true});
  EXPECT_NE(closing.find("\r\nConnection: close\r\n\r\n"), std::string::npos);
  size_t n = 99;
  std::string head = build({.status = 404, .message = "m", .head_request = true}, &n);
  EXPECT_EQ(n, 0u);
  EXPECT_TRUE(head.ends_with("\r\n\r\n")) << "HEAD: no body bytes";
  EXPECT_EQ(head.find("{"), std::string::npos);
  EXPECT_NE(head.find("Content-Length: "), std::string::npos) << "the length a GET would get";
}

TEST(LocalReplyTest, MessageAndIdAreJsonEscaped) {
  std::string out = build({.status = 400, .message = "bad \"x\"\n\\", .request_id = "i\"d"});
  EXPECT_NE(out.find("{\"error\":\"bad \\\"x\\\"\\n\\\\\""), std::string::npos) << out;
  EXPECT_NE(out.find("\"request_id\":\"i\\\"d\"}"), std::string::npos) << out;
}

TEST(LocalReplyTest, RawFallbackBody) {
  size_t n = 0;
  std::string out = build({.status = 200,
                           .extra_headers = "x-sluice-fallback: circuit-open\r\n",
                           .raw = true,
                           .content_type = "text/plain",
                           .body = "cached",
                           .request_id = "r",
                           .close = true},
                          &n);
  EXPECT_EQ(out,
            "before|HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\nContent-Length: 6\r\n"
            "x-request-id: r\r\nx-sluice-fallback: circuit-open\r\nConnection: close\r\n\r\n"
            "cached");
  EXPECT_EQ(n, 6u);
  // A fallback with status 503 is the operator's answer: no Retry-After is made up for it.
  EXPECT_EQ(
      build({.status = 503, .raw = true, .content_type = "a/b", .body = "x"}).find("Retry-After"),
      std::string::npos);
}

TEST(LocalReplyTest, ScratchCapacityReused) {
  std::string out, scratch;
  append_local_reply(out, {.status = 404, .message = "no route matches this request"}, scratch);
  const char* data = scratch.data();
  out.clear();
  append_local_reply(out, {.status = 404, .message = "no route matches this request"}, scratch);
  EXPECT_EQ(scratch.data(), data);
}

}  // namespace
}  // namespace sluice::gateway
