#include "http/parser.h"

#include <gtest/gtest.h>

#include <string>
#include <vector>

namespace sluice::http {
namespace {

struct Recorder : MessageSink {
  std::vector<MessageHead> heads;
  std::string body;
  int completes = 0;
  void on_head(MessageHead& head) override { heads.push_back(head); }
  void on_body(std::string_view data) override { body.append(data); }
  void on_complete() override { ++completes; }
};

struct Fed {
  Parser::Status status;
  ParseError error;
  size_t consumed;
};

// Feeds `input` whole, continuing after each complete message, as the gateway does.
Fed feed_all(Parser& parser, std::string_view input) {
  size_t off = 0;
  Parser::Result r{Parser::Status::kNeedMore, 0};
  while (off < input.size()) {
    r = parser.feed(input.data() + off, input.size() - off);
    off += r.consumed;
    if (r.status == Parser::Status::kError) break;
    if (r.status == Parser::Status::kNeedMore) break;
  }
  return {r.status, parser.error(), off};
}

TEST(ParserTest, SimpleGet) {
  Recorder rec;
  Parser p(Parser::Kind::kRequest, rec);
  std::string req = "GET /a/b?x=1 HTTP/1.1\r\nHost: example.com\r\nX-Test:  v  \r\n\r\n";
  auto r = p.feed(req.data(), req.size());
  EXPECT_EQ(r.status, Parser::Status::kComplete);
  EXPECT_EQ(r.consumed, req.size());
  ASSERT_EQ(rec.heads.size(), 1u);
  const MessageHead& h = rec.heads[0];
  EXPECT_EQ(h.method, "GET");
  EXPECT_EQ(h.target, "/a/b?x=1");
  EXPECT_EQ(h.path(), "/a/b");
  EXPECT_EQ(h.query(), "x=1");
  EXPECT_EQ(h.headers.get("x-test"), "v");
  EXPECT_EQ(h.headers.get("HOST"), "example.com");
  EXPECT_TRUE(h.keep_alive);
  EXPECT_EQ(h.content_length, -1);
  EXPECT_EQ(rec.completes, 1);
}

TEST(ParserTest, ByteByByteIsTheSameAsWhole) {
  Recorder rec;
  Parser p(Parser::Kind::kRequest, rec);
  std::string req =
      "POST /upload HTTP/1.1\r\nHost: h\r\nTransfer-Encoding: chunked\r\n\r\n"
      "5\r\nhello\r\n6\r\n world\r\n0\r\n\r\n";
  Parser::Status last = Parser::Status::kNeedMore;
  for (size_t i = 0; i < req.size(); ++i) {
    auto r = p.feed(req.data() + i, 1);
    ASSERT_NE(r.status, Parser::Status::kError) << p.error_reason() << " at " << i;
    last = r.status;
  }
  EXPECT_EQ(last, Parser::Status::kComplete);
  ASSERT_EQ(rec.heads.size(), 1u);
  EXPECT_TRUE(rec.heads[0].chunked);
  EXPECT_EQ(rec.body, "hello world");
}

TEST(ParserTest, PipelinedRequestsStopAfterEach) {
  Recorder rec;
  Parser p(Parser::Kind::kRequest, rec);
  std::string one = "GET /1 HTTP/1.1\r\nHost: h\r\n\r\n";
  std::string two = "POST /2 HTTP/1.1\r\nHost: h\r\nContent-Length: 3\r\n\r\nabc";
  std::string both = one + two;
  auto r = p.feed(both.data(), both.size());
  EXPECT_EQ(r.status, Parser::Status::kComplete);
  EXPECT_EQ(r.consumed, one.size());
  EXPECT_EQ(rec.heads.size(), 1u);
  r = p.feed(both.data() + r.consumed, both.size() - r.consumed);
  EXPECT_EQ(r.status, Parser::Status::kComplete);
  EXPECT_EQ(r.consumed, two.size());
  ASSERT_EQ(rec.heads.size(), 2u);
  EXPECT_EQ(rec.heads[1].target, "/2");
  EXPECT_EQ(rec.heads[1].content_length, 3);
  EXPECT_EQ(rec.body, "abc");
}

TEST(ParserTest, Http10DefaultsToClose) {
  Recorder rec;
  Parser p(Parser::Kind::kRequest, rec);
  std::string req = "GET / HTTP/1.0\r\n\r\n";
  auto r = p.feed(req.data(), req.size());
  EXPECT_EQ(r.status, Parser::Status::kComplete);
  EXPECT_FALSE(rec.heads.at(0).keep_alive);
}

TEST(ParserTest, ConnectionCloseAndExpectContinue) {
  Recorder rec;
  Parser p(Parser::Kind::kRequest, rec);
  std::string req =
      "PUT /x HTTP/1.1\r\nHost: h\r\nConnection: close\r\nExpect: 100-continue\r\n"
      "Content-Length: 0\r\n\r\n";
  auto r = p.feed(req.data(), req.size());
  EXPECT_EQ(r.status, Parser::Status::kComplete);
  EXPECT_FALSE(rec.heads.at(0).keep_alive);
  EXPECT_TRUE(rec.heads.at(0).expect_continue);
}

struct BadCase {
  const char* name;
  std::string input;
  ParseError error;
};

class ParserRejects : public ::testing::TestWithParam<BadCase> {};

TEST_P(ParserRejects, WithTheRightError) {
  Recorder rec;
  ParserLimits limits;
  limits.max_header_bytes = 1024;
  limits.max_uri_bytes = 256;
  limits.max_body_bytes = 100;
  limits.max_headers = 10;
  Parser p(Parser::Kind::kRequest, rec, limits);
  Fed f = feed_all(p, GetParam().input);
  EXPECT_EQ(f.status, Parser::Status::kError) << GetParam().name;
  EXPECT_EQ(f.error, GetParam().error) << GetParam().name << ": " << p.error_reason();
  EXPECT_EQ(rec.completes, 0) << GetParam().name;
}

INSTANTIATE_TEST_SUITE_P(
    Smuggling, ParserRejects,
    ::testing::Values(
        BadCase{"CL+TE",
                "POST / HTTP/1.1\r\nHost: h\r\nContent-Length: 5\r\nTransfer-Encoding: "
                "chunked\r\n\r\n0\r\n\r\n",
                ParseError::kBadRequest},
        BadCase{"TE+CL",
                "POST / HTTP/1.1\r\nHost: h\r\nTransfer-Encoding: chunked\r\nContent-Length: "
                "5\r\n\r\n0\r\n\r\n",
                ParseError::kBadRequest},
        BadCase{
            "two CL",
            "POST / HTTP/1.1\r\nHost: h\r\nContent-Length: 5\r\nContent-Length: 6\r\n\r\nhello!",
            ParseError::kBadRequest},
        BadCase{"same CL twice",
                "POST / HTTP/1.1\r\nHost: h\r\nContent-Length: 5\r\nContent-Length: 5\r\n\r\nhello",
                ParseError::kBadRequest},
        BadCase{"CL list", "POST / HTTP/1.1\r\nHost: h\r\nContent-Length: 5, 5\r\n\r\nhello",
                ParseError::kBadRequest},
        BadCase{"CL sign", "POST / HTTP/1.1\r\nHost: h\r\nContent-Length: +5\r\n\r\nhello",
                ParseError::kBadRequest},
        BadCase{"TE gzip", "POST / HTTP/1.1\r\nHost: h\r\nTransfer-Encoding: gzip\r\n\r\n",
                ParseError::kBadRequest},
        BadCase{"TE chunked,gzip",
                "POST / HTTP/1.1\r\nHost: h\r\nTransfer-Encoding: chunked, gzip\r\n\r\n",
                ParseError::kBadRequest},
        BadCase{"TE gzip,chunked",
                "POST / HTTP/1.1\r\nHost: h\r\nTransfer-Encoding: gzip, chunked\r\n\r\n0\r\n\r\n",
                ParseError::kBadRequest},
        BadCase{"two TE",
                "POST / HTTP/1.1\r\nHost: h\r\nTransfer-Encoding: chunked\r\nTransfer-Encoding: "
                "chunked\r\n\r\n0\r\n\r\n",
                ParseError::kBadRequest},
        BadCase{"TE xchunked", "POST / HTTP/1.1\r\nHost: h\r\nTransfer-Encoding: xchunked\r\n\r\n",
                ParseError::kBadRequest},
        BadCase{"chunk size zz",
                "POST / HTTP/1.1\r\nHost: h\r\nTransfer-Encoding: "
                "chunked\r\n\r\nzz\r\nhello\r\n0\r\n\r\n",
                ParseError::kBadRequest},
        BadCase{
            "chunk size -1",
            "POST / HTTP/1.1\r\nHost: h\r\nTransfer-Encoding: chunked\r\n\r\n-1\r\nx\r\n0\r\n\r\n",
            ParseError::kBadRequest},
        BadCase{"chunk size huge",
                "POST / HTTP/1.1\r\nHost: h\r\nTransfer-Encoding: "
                "chunked\r\n\r\nfffffffffffffffffff\r\nx\r\n0\r\n\r\n",
                ParseError::kBadRequest},
        BadCase{"obs-fold", "GET / HTTP/1.1\r\nHost: h\r\nX-A: a\r\n b\r\n\r\n",
                ParseError::kBadRequest},
        BadCase{"obs-fold tab", "GET / HTTP/1.1\r\nHost: h\r\nX-A: a\r\n\tb\r\n\r\n",
                ParseError::kBadRequest},
        BadCase{"space before colon", "GET / HTTP/1.1\r\nHost: h\r\nX-A : a\r\n\r\n",
                ParseError::kBadRequest},
        BadCase{"bad name char", "GET / HTTP/1.1\r\nHost: h\r\nX(A): a\r\n\r\n",
                ParseError::kBadRequest},
        BadCase{"bare LF", "GET / HTTP/1.1\nHost: h\n\n", ParseError::kBadRequest},
        BadCase{"bare LF in header", "GET / HTTP/1.1\r\nHost: h\nX: y\r\n\r\n",
                ParseError::kBadRequest},
        BadCase{"bare CR", "GET / HTTP/1.1\r\nHost: h\rX: y\r\n\r\n", ParseError::kBadRequest},
        BadCase{"bad method", "G@T / HTTP/1.1\r\nHost: h\r\n\r\n", ParseError::kBadRequest},
        BadCase{"bad version", "GET / HTTP/1.x\r\nHost: h\r\n\r\n", ParseError::kBadRequest},
        BadCase{"http2 version", "GET / HTTP/2.0\r\nHost: h\r\n\r\n", ParseError::kBadRequest},
        BadCase{"no host", "GET / HTTP/1.1\r\nX: y\r\n\r\n", ParseError::kBadRequest},
        BadCase{"two hosts", "GET / HTTP/1.1\r\nHost: a\r\nHost: b\r\n\r\n",
                ParseError::kBadRequest},
        BadCase{"absolute form", "GET http://evil/ HTTP/1.1\r\nHost: h\r\n\r\n",
                ParseError::kBadRequest},
        BadCase{"connect", "CONNECT h:443 HTTP/1.1\r\nHost: h\r\n\r\n", ParseError::kUnsupported},
        BadCase{"uri too long", "GET /" + std::string(300, 'a') + " HTTP/1.1\r\nHost: h\r\n\r\n",
                ParseError::kUriTooLong},
        BadCase{"head too large",
                "GET / HTTP/1.1\r\nHost: h\r\nX: " + std::string(2000, 'a') + "\r\n\r\n",
                ParseError::kHeaderTooLarge},
        BadCase{"too many headers",
                [] {
                  std::string s = "GET / HTTP/1.1\r\nHost: h\r\n";
                  for (int i = 0; i < 20; ++i) s += "X" + std::to_string(i) + ": v\r\n";
                  return s + "\r\n";
                }(),
                ParseError::kHeaderTooLarge},
        BadCase{"CL too large", "POST / HTTP/1.1\r\nHost: h\r\nContent-Length: 101\r\n\r\n",
                ParseError::kBodyTooLarge},
        BadCase{"chunked too large",
                "POST / HTTP/1.1\r\nHost: h\r\nTransfer-Encoding: chunked\r\n\r\n65\r\n" +
                    std::string(101, 'a') + "\r\n0\r\n\r\n",
                ParseError::kBodyTooLarge}),
    [](const ::testing::TestParamInfo<BadCase>& info) {
      std::string n;
      for (char c : std::string(info.param.name))
        n += std::isalnum(static_cast<unsigned char>(c)) ? c : '_';
      return n;
    });

TEST(ParserTest, ResponseWithContentLength) {
  Recorder rec;
  Parser p(Parser::Kind::kResponse, rec);
  std::string resp = "HTTP/1.1 201 Created\r\nContent-Length: 4\r\n\r\nbody";
  auto r = p.feed(resp.data(), resp.size());
  EXPECT_EQ(r.status, Parser::Status::kComplete);
  EXPECT_EQ(rec.heads.at(0).status, 201);
  EXPECT_EQ(rec.heads.at(0).reason, "Created");
  EXPECT_EQ(rec.body, "body");
}

TEST(ParserTest, ResponseToHeadHasNoBody) {
  Recorder rec;
  Parser p(Parser::Kind::kResponse, rec);
  p.expect_no_body(true);
  std::string resp = "HTTP/1.1 200 OK\r\nContent-Length: 4\r\n\r\n";
  auto r = p.feed(resp.data(), resp.size());
  EXPECT_EQ(r.status, Parser::Status::kComplete);
  EXPECT_EQ(rec.body, "");
}

TEST(ParserTest, ResponseDelimitedByClose) {
  Recorder rec;
  Parser p(Parser::Kind::kResponse, rec);
  std::string resp = "HTTP/1.1 200 OK\r\n\r\nuntil close";
  auto r = p.feed(resp.data(), resp.size());
  EXPECT_EQ(r.status, Parser::Status::kNeedMore);
  EXPECT_EQ(p.finish(), Parser::Status::kComplete);
  EXPECT_EQ(rec.body, "until close");
}

TEST(ParserTest, ResponseCutShortIsAnError) {
  Recorder rec;
  Parser p(Parser::Kind::kResponse, rec);
  std::string resp = "HTTP/1.1 200 OK\r\nContent-Length: 10\r\n\r\nshort";
  auto r = p.feed(resp.data(), resp.size());
  EXPECT_EQ(r.status, Parser::Status::kNeedMore);
  EXPECT_EQ(p.finish(), Parser::Status::kError);
}

TEST(ParserTest, TrailersAreNotAddedToHeaders) {
  Recorder rec;
  Parser p(Parser::Kind::kRequest, rec);
  std::string req =
      "POST / HTTP/1.1\r\nHost: h\r\nTransfer-Encoding: chunked\r\n\r\n1\r\na\r\n0\r\nX-Trailer: "
      "t\r\n\r\n";
  auto r = p.feed(req.data(), req.size());
  EXPECT_EQ(r.status, Parser::Status::kComplete);
  EXPECT_FALSE(rec.heads.at(0).headers.has("x-trailer"));
  EXPECT_EQ(p.head().headers.has("x-trailer"), false);
}

TEST(ParserTest, ErrorStatusMapping) {
  EXPECT_EQ(status_for(ParseError::kBadRequest), 400);
  EXPECT_EQ(status_for(ParseError::kHeaderTooLarge), 431);
  EXPECT_EQ(status_for(ParseError::kUriTooLong), 414);
  EXPECT_EQ(status_for(ParseError::kBodyTooLarge), 413);
}

}  // namespace
}  // namespace sluice::http

namespace sluice::http {
namespace {

TEST(ParserTest, EmptyHeaderValueKeepsFieldsApart) {
  Recorder rec;
  Parser p(Parser::Kind::kRequest, rec);
  std::string req = "GET / HTTP/1.1\r\nX-Empty:\r\nX-Empty2: \r\nHost: h\r\nX-B: b\r\n\r\n";
  auto r = p.feed(req.data(), req.size());
  ASSERT_EQ(r.status, Parser::Status::kComplete) << p.error_reason();
  const HeaderMap& h = rec.heads.at(0).headers;
  ASSERT_EQ(h.size(), 4u);
  EXPECT_EQ(h.at(0).name, "X-Empty");
  EXPECT_EQ(h.at(0).value, "");
  EXPECT_EQ(h.at(1).name, "X-Empty2");
  EXPECT_EQ(h.at(2).name, "Host");
  EXPECT_EQ(h.get("x-b"), "b");
}

TEST(ParserTest, ParserIsReusableAfterManyMessages) {
  Recorder rec;
  Parser p(Parser::Kind::kRequest, rec);
  std::string req = "GET /x HTTP/1.1\r\nHost: h\r\n\r\n";
  for (int i = 0; i < 1000; ++i) {
    auto r = p.feed(req.data(), req.size());
    ASSERT_EQ(r.status, Parser::Status::kComplete);
  }
  EXPECT_EQ(rec.completes, 1000);
}

}  // namespace
}  // namespace sluice::http
