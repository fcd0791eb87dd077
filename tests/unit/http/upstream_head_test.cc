#include "http/upstream_head.h"

#include <gtest/gtest.h>

namespace sluice::http {
namespace {

struct Built {
  UpstreamHeadError err;
  std::string out;
};

// A request as a client sent it, and the input the gateway derives from it.
struct Case {
  HeaderMap headers;
  UpstreamHeadInput in;
  Case() {
    in.method = "GET";
    in.target = "/x";
    in.headers = &headers;
    in.client_ip = "10.0.0.9";
    in.request_id = "rid1";
    in.traceparent = "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01";
  }
  Built build() const {
    Built b{UpstreamHeadError::kNone, "prefix|"};
    b.err = append_upstream_head(b.out, in);
    return b;
  }
};

constexpr std::string_view kTail =
    "X-Forwarded-Proto: http\r\n"
    "x-request-id: rid1\r\n"
    "traceparent: 00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01\r\n";

TEST(UpstreamHeadTest, PlainRequestExactBytes) {
  Case c;
  c.headers.add("Host", "api.example");
  c.headers.add("Accept", "*/*");
  Built b = c.build();
  ASSERT_EQ(b.err, UpstreamHeadError::kNone);
  EXPECT_EQ(b.out,
            "prefix|GET /x HTTP/1.1\r\n"
            "Host: api.example\r\n"
            "Accept: */*\r\n"
            "X-Forwarded-For: 10.0.0.9\r\n" +
                std::string(kTail) + "\r\n");
}

TEST(UpstreamHeadTest, HopByHopAndConnectionListedFieldsDropped) {
  Case c;
  c.headers.add("Host", "h");
  c.headers.add("Connection", "keep-alive, X-Secret , Upgrade");
  c.headers.add("Keep-Alive", "timeout=5");
  c.headers.add("Upgrade", "websocket");
  c.headers.add("TE", "trailers");
  c.headers.add("Trailer", "x");
  c.headers.add("Proxy-Connection", "keep-alive");
  c.headers.add("Proxy-Authorization", "Basic eA==");
  c.headers.add("x-secret", "s");
  c.headers.add("X-Kept", "k");
  Built b = c.build();
  ASSERT_EQ(b.err, UpstreamHeadError::kNone);
  for (std::string_view gone : {"Connection", "Keep-Alive", "Upgrade", "TE:", "Trailer", "Proxy-",
                                "x-secret", "websocket"}) {
    EXPECT_EQ(b.out.find(gone), std::string::npos) << gone << " in " << b.out;
  }
  EXPECT_NE(b.out.find("\r\nX-Kept: k\r\n"), std::string::npos);
}

TEST(UpstreamHeadTest, GatewayOwnedFieldsReplaced) {
  Case c;
  c.headers.add("Host", "h");
  c.headers.add("X-Request-Id", "client-id");
  c.headers.add("X-Forwarded-Proto", "https");
  c.headers.add("traceparent", "00-ffffffffffffffffffffffffffffffff-ffffffffffffffff-01");
  c.headers.add("x-sluice-hop", "b");
  c.headers.add("Expect", "100-continue");
  c.headers.add("Content-Length", "999");
  Built b = c.build();
  ASSERT_EQ(b.err, UpstreamHeadError::kNone);
  EXPECT_EQ(b.out, "prefix|GET /x HTTP/1.1\r\nHost: h\r\nX-Forwarded-For: 10.0.0.9\r\n" +
                       std::string(kTail) + "\r\n");
}

TEST(UpstreamHeadTest, XForwardedForKeepsFirstClientValueAsPrefix) {
  Case c;
  c.headers.add("Host", "h");
  c.headers.add("X-Forwarded-For", "1.1.1.1, 2.2.2.2");
  c.headers.add("x-forwarded-for", "3.3.3.3");
  Built b = c.build();
  EXPECT_NE(b.out.find("\r\nX-Forwarded-For: 1.1.1.1, 2.2.2.2, 10.0.0.9\r\n"), std::string::npos)
      << b.out;
  EXPECT_EQ(b.out.find("3.3.3.3"), std::string::npos);
}

TEST(UpstreamHeadTest, HostKeptOrDefaulted) {
  Case c;
  c.in.default_host = "127.0.0.1:9101";
  Built none = c.build();
  EXPECT_NE(none.out.find("GET /x HTTP/1.1\r\nHost: 127.0.0.1:9101\r\n"), std::string::npos);
  c.headers.add("HOST", "client.example");
  Built given = c.build();
  EXPECT_NE(given.out.find("\r\nHOST: client.example\r\n"), std::string::npos);
  EXPECT_EQ(given.out.find("127.0.0.1:9101"), std::string::npos);
  c.headers.clear();
  c.in.default_host = {};
  EXPECT_EQ(c.build().out.find("Host"), std::string::npos);
}

TEST(UpstreamHeadTest, TargetAsGiven) {
  Case c;
  c.in.method = "POST";
  c.in.target = "/v2/accounts/7?q=a%20b&x";
  Built b = c.build();
  EXPECT_EQ(b.out.substr(0, 45), "prefix|POST /v2/accounts/7?q=a%20b&x HTTP/1.1");
}

TEST(UpstreamHeadTest, BodyFraming) {
  Case c;
  c.headers.add("Host", "h");
  c.headers.add("Transfer-Encoding", "chunked");
  c.in.chunked = true;
  Built chunked = c.build();
  EXPECT_NE(chunked.out.find("\r\nTransfer-Encoding: chunked\r\n\r\n"), std::string::npos);
  EXPECT_EQ(chunked.out.find("Content-Length"), std::string::npos);
  EXPECT_EQ(chunked.out.find("Transfer-Encoding"), chunked.out.rfind("Transfer-Encoding"));

  c.headers.clear();
  c.headers.add("Content-Length", "5");
  c.in.chunked = false;
  c.in.content_length = 5;
  Built cl = c.build();
  EXPECT_TRUE(cl.out.ends_with("\r\nContent-Length: 5\r\n\r\n")) << cl.out;
  EXPECT_EQ(cl.out.find("Content-Length"), cl.out.rfind("Content-Length"));

  c.in.content_length = 0;
  EXPECT_TRUE(c.build().out.ends_with("\r\nContent-Length: 0\r\n\r\n"));
  c.in.content_length = -1;
  Built none = c.build();
  EXPECT_EQ(none.out.find("Content-Length"), std::string::npos);
  EXPECT_EQ(none.out.find("Transfer-Encoding"), std::string::npos);
}

TEST(UpstreamHeadTest, HopListForCrossCityRequests) {
  Case c;
  c.in.hop_city = "a";
  EXPECT_NE(c.build().out.find("\r\nx-sluice-hop: a\r\n"), std::string::npos);
  c.in.hop_prev = "b,c";
  EXPECT_NE(c.build().out.find("\r\nx-sluice-hop: b,c,a\r\n"), std::string::npos);
  c.in.hop_city = {};
  EXPECT_EQ(c.build().out.find("x-sluice-hop"), std::string::npos);
}

TEST(UpstreamHeadTest, NoHeaderInjectionThroughValuesNamesOrTarget) {
  auto refused = [](auto mutate, UpstreamHeadError want) {
    Case c;
    c.headers.add("Host", "h");
    mutate(c);
    Built b = c.build();
    EXPECT_EQ(b.err, want);
    EXPECT_EQ(b.out, "prefix|") << "nothing appended on an error";
  };
  using E = UpstreamHeadError;
  refused([](Case& c) { c.headers.add("X-A", "v\r\nX-Injected: 1"); }, E::kBadValue);
  refused([](Case& c) { c.headers.add("X-A", "v\nX-Injected: 1"); }, E::kBadValue);
  refused([](Case& c) { c.headers.add("X-A", "v\rX"); }, E::kBadValue);
  refused([](Case& c) { c.headers.add("X-A", std::string_view("v\0w", 3)); }, E::kBadValue);
  refused([](Case& c) { c.headers.add("X-A\r\nX-B", "v"); }, E::kBadName);
  refused([](Case& c) { c.headers.add("X A", "v"); }, E::kBadName);
  refused([](Case& c) { c.headers.add("", "v"); }, E::kBadName);
  refused([](Case& c) { c.in.target = "/x HTTP/1.1\r\nX-Injected: 1\r\n\r\nGET /y"; },
          E::kBadTarget);
  refused([](Case& c) { c.in.target = "/a b"; }, E::kBadTarget);
  refused([](Case& c) { c.in.target = ""; }, E::kBadTarget);
  refused([](Case& c) { c.in.method = "GET /evil"; }, E::kBadMethod);
  refused([](Case& c) { c.in.hop_prev = "b\r\nX-Injected: 1"; }, E::kBadValue);
  refused([](Case& c) { c.in.request_id = "r\n"; }, E::kBadValue);
  refused([](Case& c) { c.in.default_host = "h\r\n"; }, E::kBadValue);
  // Tabs and bytes beyond ASCII in a value are not framing: forwarded as they are.
  Case ok;
  ok.headers.add("X-A", "a\tb \xc3\xa9");
  Built b = ok.build();
  EXPECT_EQ(b.err, UpstreamHeadError::kNone);
  EXPECT_NE(b.out.find("\r\nX-A: a\tb \xc3\xa9\r\n"), std::string::npos);
}

}  // namespace
}  // namespace sluice::http
