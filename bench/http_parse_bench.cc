// Request and response parsing cost per message, as the gateway does it: one Parser reused
// across messages on a connection, fed whole reads.
#include <benchmark/benchmark.h>

#include <string>

#include "http/parser.h"

namespace {

using sluice::http::MessageHead;
using sluice::http::Parser;

struct NullSink : sluice::http::MessageSink {
  size_t body = 0;
  void on_head(MessageHead& head) override { benchmark::DoNotOptimize(head.headers.size()); }
  void on_body(std::string_view data) override { body += data.size(); }
  void on_complete() override {}
};

const std::string kTypicalRequest =
    "GET /api/accounts/42/balance?currency=EUR HTTP/1.1\r\n"
    "Host: api.bank.example\r\n"
    "User-Agent: MobileBank/7.4.1 (iOS 17.2)\r\n"
    "Accept: application/json\r\n"
    "Accept-Encoding: gzip, deflate, br\r\n"
    "Authorization: Bearer "
    "eyJhbGciOiJSUzI1NiIsInR5cCI6IkpXVCJ9.eyJzdWIiOiIxMjM0NTYifQ.c2lnbmF0dXJl\r\n"
    "x-channel: mobile\r\n"
    "x-app-id: retail-ios\r\n"
    "x-request-id: 0af7651916cd43dd8448eb211c80319c\r\n"
    "traceparent: 00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01\r\n"
    "\r\n";

void BM_ParseTypicalRequest(benchmark::State& state) {
  NullSink sink;
  Parser parser(Parser::Kind::kRequest, sink);
  for (auto _ : state) {
    auto r = parser.feed(kTypicalRequest.data(), kTypicalRequest.size());
    benchmark::DoNotOptimize(r);
  }
  state.SetBytesProcessed(static_cast<int64_t>(state.iterations() * kTypicalRequest.size()));
}
BENCHMARK(BM_ParseTypicalRequest);

void BM_ParseMinimalRequest(benchmark::State& state) {
  const std::string req = "GET / HTTP/1.1\r\nHost: a\r\n\r\n";
  NullSink sink;
  Parser parser(Parser::Kind::kRequest, sink);
  for (auto _ : state) {
    auto r = parser.feed(req.data(), req.size());
    benchmark::DoNotOptimize(r);
  }
}
BENCHMARK(BM_ParseMinimalRequest);

void BM_ParseChunkedPost(benchmark::State& state) {
  std::string req = "POST /api/payments HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\n\r\n";
  for (int i = 0; i < 4; ++i) req += "400\r\n" + std::string(1024, 'x') + "\r\n";
  req += "0\r\n\r\n";
  NullSink sink;
  Parser parser(Parser::Kind::kRequest, sink);
  for (auto _ : state) {
    auto r = parser.feed(req.data(), req.size());
    benchmark::DoNotOptimize(r);
  }
  state.SetBytesProcessed(static_cast<int64_t>(state.iterations() * req.size()));
}
BENCHMARK(BM_ParseChunkedPost);

void BM_ParseResponse4k(benchmark::State& state) {
  std::string resp =
      "HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: 4096\r\n"
      "x-sample-instance: accounts@10.0.0.7:9101\r\n\r\n" +
      std::string(4096, 'x');
  NullSink sink;
  Parser parser(Parser::Kind::kResponse, sink);
  for (auto _ : state) {
    auto r = parser.feed(resp.data(), resp.size());
    benchmark::DoNotOptimize(r);
  }
  state.SetBytesProcessed(static_cast<int64_t>(state.iterations() * resp.size()));
}
BENCHMARK(BM_ParseResponse4k);

}  // namespace
