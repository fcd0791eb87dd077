#include "http/parser.h"

#include <gtest/gtest.h>

#include <ostream>
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

namespace sluice::http {
namespace {

// What a parser made of a byte stream: the verdict the gateway acts on.
struct Verdict {
  std::vector<std::string> targets;  // heads seen, in order
  std::string body;
  int completes = 0;
  Parser::Status status = Parser::Status::kNeedMore;
  ParseError error = ParseError::kNone;

  bool operator==(const Verdict& o) const {
    return targets == o.targets && body == o.body && completes == o.completes &&
           status == o.status && error == o.error;
  }
};

std::ostream& operator<<(std::ostream& os, const Verdict& v) {
  os << "{heads=" << v.targets.size() << " completes=" << v.completes
     << " status=" << static_cast<int>(v.status) << " error=" << static_cast<int>(v.error)
     << " body=" << v.body.size() << "B}";
  return os;
}

struct TargetRecorder : MessageSink {
  Verdict* v = nullptr;
  void on_head(MessageHead& head) override {
    v->targets.push_back(head.status ? std::to_string(head.status) : head.target);
  }
  void on_body(std::string_view data) override { v->body.append(data); }
  void on_complete() override { ++v->completes; }
};

// Feeds `input` in pieces cut at `cuts` (ascending offsets), continuing after each complete
// message as the gateway does.
Verdict parse_split(Parser::Kind kind, std::string_view input, const std::vector<size_t>& cuts,
                    const ParserLimits& limits = {}) {
  Verdict v;
  TargetRecorder rec;
  rec.v = &v;
  Parser p(kind, rec, limits);
  size_t from = 0;
  for (size_t i = 0; i <= cuts.size(); ++i) {
    size_t to = i < cuts.size() ? cuts[i] : input.size();
    while (from < to) {
      auto r = p.feed(input.data() + from, to - from);
      from += r.consumed;
      v.status = r.status;
      if (r.status == Parser::Status::kError) {
        v.error = p.error();
        return v;
      }
      if (r.status == Parser::Status::kNeedMore) break;
    }
    from = to;
  }
  return v;
}

Verdict parse_whole(Parser::Kind kind, std::string_view input, const ParserLimits& limits = {}) {
  return parse_split(kind, input, {}, limits);
}

Verdict parse_bytewise(Parser::Kind kind, std::string_view input, const ParserLimits& limits = {}) {
  std::vector<size_t> cuts;
  for (size_t i = 1; i < input.size(); ++i) cuts.push_back(i);
  return parse_split(kind, input, cuts, limits);
}

// Whole, one byte at a time, and cut in two at every byte boundary: the same verdict each time.
Verdict expect_same_every_split(Parser::Kind kind, std::string_view input,
                                const ParserLimits& limits = {}) {
  Verdict whole = parse_whole(kind, input, limits);
  EXPECT_EQ(parse_bytewise(kind, input, limits), whole) << "byte by byte";
  for (size_t cut = 1; cut < input.size(); ++cut) {
    Verdict v = parse_split(kind, input, {cut}, limits);
    EXPECT_EQ(v, whole) << "cut at " << cut;
    if (!(v == whole)) break;
  }
  return whole;
}

using namespace std::string_literals;

const std::string kChunkedHead =
    "POST /in HTTP/1.1\r\nHost: h\r\nTransfer-Encoding: chunked\r\n\r\n";

TEST(ParserStrictness, ChunkDataMustEndWithCrlf) {
  // Outside testers' vectors: the loose llhttp build skips any two bytes after chunk data, so
  // the first read "hello" and then a second, smuggled request.
  for (std::string bad : {"5\r\nhelloXX0\r\n\r\nGET /smuggled HTTP/1.1\r\nHost: h\r\n\r\n",
                          "2\r\nheZZ3\r\nlloQQ0\r\n\r\n", "5\r\nhello\r\r0\r\n\r\n",
                          "5\r\nhello\n\n0\r\n\r\n", "5\r\nhello0\r\n\r\n", "5\r\nhello\rX"}) {
    SCOPED_TRACE(bad);
    Verdict v = expect_same_every_split(Parser::Kind::kRequest, kChunkedHead + bad);
    EXPECT_EQ(v.status, Parser::Status::kError);
    EXPECT_EQ(v.error, ParseError::kBadRequest);
    EXPECT_EQ(v.completes, 0);
    EXPECT_EQ(v.targets.size(), 1u);  // never a second request
  }
  Verdict good =
      expect_same_every_split(Parser::Kind::kRequest, kChunkedHead + "5\r\nhello\r\n0\r\n\r\n");
  EXPECT_EQ(good.status, Parser::Status::kComplete);
  EXPECT_EQ(good.body, "hello");
}

TEST(ParserStrictness, ResponseChunkDataMustEndWithCrlf) {
  std::string head = "HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n";
  Verdict v = expect_same_every_split(Parser::Kind::kResponse, head + "5\r\nhelloXX0\r\n\r\n");
  EXPECT_EQ(v.status, Parser::Status::kError);
  EXPECT_EQ(v.completes, 0);
  Verdict good = expect_same_every_split(Parser::Kind::kResponse, head + "5\r\nhello\r\n0\r\n\r\n");
  EXPECT_EQ(good.status, Parser::Status::kComplete);
  EXPECT_EQ(good.body, "hello");
}

TEST(ParserStrictness, RequestLineOverLimitIsAlways414) {
  ParserLimits limits;  // 64 KiB head, 8 KiB target: the defaults
  std::string req = "GET /" + std::string(100 * 1024, 'a') + " HTTP/1.1\r\nHost: h\r\n\r\n";
  for (size_t piece : {req.size(), size_t{1}, size_t{7}, size_t{1000}, size_t{8192}, size_t{16384},
                       size_t{65535}, size_t{65536}, size_t{65537}}) {
    std::vector<size_t> cuts;
    for (size_t at = piece; at < req.size(); at += piece) cuts.push_back(at);
    Verdict v = parse_split(Parser::Kind::kRequest, req, cuts, limits);
    EXPECT_EQ(v.error, ParseError::kUriTooLong) << "pieces of " << piece;
  }
  // A target just over the limit, and a request line over the whole head limit (target limit
  // equal to the head limit): 414 too.
  ParserLimits small;
  small.max_header_bytes = 1024;
  small.max_uri_bytes = 256;
  EXPECT_EQ(expect_same_every_split(Parser::Kind::kRequest,
                                    "GET /" + std::string(256, 'a') + " HTTP/1.1\r\n\r\n", small)
                .error,
            ParseError::kUriTooLong);
  EXPECT_EQ(expect_same_every_split(
                Parser::Kind::kRequest,
                "GET /" + std::string(255, 'a') + " HTTP/1.1\r\nHost: h\r\n\r\n", small)
                .status,
            Parser::Status::kComplete);
  small.max_uri_bytes = 1024;
  EXPECT_EQ(expect_same_every_split(Parser::Kind::kRequest,
                                    "GET /" + std::string(1030, 'a') + " HTTP/1.1\r\n\r\n", small)
                .error,
            ParseError::kUriTooLong);
}

TEST(ParserStrictness, HeaderBlockOverLimitIsAlways431) {
  ParserLimits limits;
  limits.max_header_bytes = 1024;
  limits.max_uri_bytes = 256;
  limits.max_headers = 10;
  std::string big = "GET / HTTP/1.1\r\nHost: h\r\nX-Big: " + std::string(2000, 'b') + "\r\n\r\n";
  EXPECT_EQ(expect_same_every_split(Parser::Kind::kRequest, big, limits).error,
            ParseError::kHeaderTooLarge);
  // Over the limit and malformed after it: the limit is met first, whatever the reads.
  std::string big_then_bad =
      "GET / HTTP/1.1\r\nHost: h\r\nX-Big: " + std::string(2000, 'b') + "\r\nX A: 1\r\n\r\n";
  EXPECT_EQ(expect_same_every_split(Parser::Kind::kRequest, big_then_bad, limits).error,
            ParseError::kHeaderTooLarge);
  // Malformed before the limit: 400, whatever the reads.
  std::string bad_then_big =
      "GET / HTTP/1.1\r\nHost: h\r\nX A: 1\r\nX-Big: " + std::string(2000, 'b') + "\r\n\r\n";
  EXPECT_EQ(expect_same_every_split(Parser::Kind::kRequest, bad_then_big, limits).error,
            ParseError::kBadRequest);
  std::string many = "GET / HTTP/1.1\r\nHost: h\r\n";
  for (int i = 0; i < 12; ++i) many += "X" + std::to_string(i) + ": v\r\n";
  many += "\r\n";
  EXPECT_EQ(expect_same_every_split(Parser::Kind::kRequest, many, limits).error,
            ParseError::kHeaderTooLarge);
  // Exactly at the limit: accepted.
  std::string exact = "GET / HTTP/1.1\r\nHost: h\r\nX: \r\n\r\n";
  exact.insert(exact.size() - 4, std::string(1024 - exact.size(), 'x'));
  ASSERT_EQ(exact.size(), 1024u);
  EXPECT_EQ(expect_same_every_split(Parser::Kind::kRequest, exact, limits).status,
            Parser::Status::kComplete);
  exact.insert(exact.size() - 4, "x");
  EXPECT_EQ(parse_whole(Parser::Kind::kRequest, exact, limits).error, ParseError::kHeaderTooLarge);
}

TEST(ParserStrictness, HostSyntax) {
  auto parse = [](std::string_view host) {
    std::string req = "GET / HTTP/1.1\r\nHost: " + std::string(host) + "\r\n\r\n";
    return parse_whole(Parser::Kind::kRequest, req);
  };
  for (std::string_view ok :
       {"example.com", "example.com:8080", "127.0.0.1", "127.0.0.1:1", "[::1]", "[::1]:443",
        "[2001:db8::7]:65535", "a-b.c_d~e", "x%41y", "api.bank.example.", "sub!$&'()*+,;=.x"}) {
    EXPECT_EQ(parse(ok).status, Parser::Status::kComplete) << ok;
  }
  for (std::string_view bad :
       {"a b",      "",      "a:",     ":80",  "a:0", "a:65536", "a:1x",
        "a:123456", "[::1",  "[::1]x", "[zz]", "[]",  "[v1.x]",  "[fe80::1%25eth0]",
        "a/b",      "a@b",   "a:b:c",  "x%zz", "x%4", "a\"b",    "a\\b",
        "a{b}",     "h\x80x"}) {
    Verdict v = parse(bad);
    EXPECT_EQ(v.error, ParseError::kBadRequest) << "Host: " << bad;
    EXPECT_EQ(v.completes, 0);
  }
  // HTTP/1.0 needs no Host, but one that is sent is checked.
  EXPECT_EQ(parse_whole(Parser::Kind::kRequest, "GET / HTTP/1.0\r\n\r\n").status,
            Parser::Status::kComplete);
  EXPECT_EQ(parse_whole(Parser::Kind::kRequest, "GET / HTTP/1.0\r\nHost: a b\r\n\r\n").error,
            ParseError::kBadRequest);
}

TEST(ParserStrictness, RequestLineShape) {
  struct Case {
    std::string req;
    ParseError error;
  };
  for (const Case& c : std::vector<Case>{
           {"GET  / HTTP/1.1\r\nHost: h\r\n\r\n", ParseError::kBadRequest},
           {"GET /  HTTP/1.1\r\nHost: h\r\n\r\n", ParseError::kBadRequest},
           {"GET /a#b HTTP/1.1\r\nHost: h\r\n\r\n", ParseError::kBadRequest},
           {"GET * HTTP/1.1\r\nHost: h\r\n\r\n", ParseError::kBadRequest},
           {"GET /a\tb HTTP/1.1\r\nHost: h\r\n\r\n", ParseError::kBadRequest},
           {"GET /caf\xc3\xa9 HTTP/1.1\r\nHost: h\r\n\r\n", ParseError::kBadRequest},
           {"GET /a\0b HTTP/1.1\r\nHost: h\r\n\r\n"s, ParseError::kBadRequest},
           {"GET http://h/ HTTP/1.1\r\nHost: h\r\n\r\n", ParseError::kBadRequest},
           {"POST / HTTP/1.0\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n",
            ParseError::kBadRequest},
       }) {
    Verdict v = expect_same_every_split(Parser::Kind::kRequest, c.req);
    EXPECT_EQ(v.error, c.error) << c.req;
    EXPECT_EQ(v.completes, 0) << c.req;
  }
  EXPECT_EQ(parse_whole(Parser::Kind::kRequest, "OPTIONS * HTTP/1.1\r\nHost: h\r\n\r\n").status,
            Parser::Status::kComplete);
}

TEST(ParserStrictness, TrailerSectionIsCheckedLikeTheHead) {
  for (std::string bad : {"0\r\n\n", "0\r\nX: y\n\r\n", "0\r\nX: y\r\n z\r\n\r\n",
                          "0\r\nX : y\r\n\r\n", "0\r\nX: y\rz\r\n\r\n", "0\r\n\rX"}) {
    SCOPED_TRACE(bad);
    Verdict v = expect_same_every_split(Parser::Kind::kRequest, kChunkedHead + bad);
    EXPECT_EQ(v.error, ParseError::kBadRequest);
    EXPECT_EQ(v.completes, 0);
  }
  ParserLimits limits;
  limits.max_header_bytes = 512;
  Verdict big = expect_same_every_split(
      Parser::Kind::kRequest, kChunkedHead + "0\r\nX: " + std::string(600, 't') + "\r\n\r\n",
      limits);
  EXPECT_EQ(big.error, ParseError::kHeaderTooLarge);
  // Valid trailers still pass (and are not forwarded), followed by a pipelined request.
  Verdict ok = expect_same_every_split(
      Parser::Kind::kRequest,
      kChunkedHead +
          "3\r\nabc\r\n0\r\nX-T: 1\r\nY-T: 2\r\n\r\nGET /next HTTP/1.1\r\nHost: h\r\n\r\n");
  EXPECT_EQ(ok.completes, 2);
  EXPECT_EQ(ok.body, "abc");
  EXPECT_EQ(ok.targets, (std::vector<std::string>{"/in", "/next"}));
}

TEST(ParserStrictness, ChunkExtensionsAreBounded) {
  Verdict ok = expect_same_every_split(
      Parser::Kind::kRequest,
      kChunkedHead + "2;name=value\r\nhe\r\n3;x=\"q\"\r\nllo\r\n0;e=1\r\n\r\n");
  EXPECT_EQ(ok.status, Parser::Status::kComplete);
  EXPECT_EQ(ok.body, "hello");
  // llhttp 8.1 refuses a second extension after one with a value; stricter than RFC 9112, and
  // written down in operations.md.
  EXPECT_EQ(
      parse_whole(Parser::Kind::kRequest, kChunkedHead + "5;a=b;c=d\r\nhello\r\n0\r\n\r\n").error,
      ParseError::kBadRequest);
  std::string big = kChunkedHead + "5;x=" + std::string(5000, 'e') + "\r\nhello\r\n0\r\n\r\n";
  Verdict v = parse_whole(Parser::Kind::kRequest, big);
  EXPECT_EQ(v.error, ParseError::kBadRequest);
  EXPECT_EQ(parse_bytewise(Parser::Kind::kRequest, big), v);
  // The bound is per chunk line, not per message.
  std::string many = kChunkedHead;
  for (int i = 0; i < 4; ++i) many += "1;x=" + std::string(3000, 'e') + "\r\na\r\n";
  many += "0\r\n\r\n";
  EXPECT_EQ(parse_whole(Parser::Kind::kRequest, many).status, Parser::Status::kComplete);
}

TEST(ParserStrictness, ValidTrafficIsTheSameForEverySplit) {
  std::string pipelined =
      "GET /1 HTTP/1.1\r\nHost: h\r\n\r\n"
      "POST /2 HTTP/1.1\r\nHost: h:81\r\nContent-Length: 5\r\n\r\nhello" +
      kChunkedHead + "3\r\nabc\r\n0\r\n\r\n";
  Verdict v = expect_same_every_split(Parser::Kind::kRequest, pipelined);
  EXPECT_EQ(v.completes, 3);
  EXPECT_EQ(v.body, "helloabc");
  Verdict r = expect_same_every_split(
      Parser::Kind::kResponse,
      "HTTP/1.1 100 Continue\r\n\r\nHTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok");
  EXPECT_EQ(r.completes, 2);
  EXPECT_EQ(r.body, "ok");
}

}  // namespace
}  // namespace sluice::http

namespace sluice::http {
namespace {

TEST(ParserStrictness, RefusedHeadIsNeverDelivered) {
  // llhttp checks Transfer-Encoding after its headers-complete callback: the sink must not have
  // seen the head by then, or the gateway forwards a request it then refuses.
  for (const char* req : {"POST /v HTTP/1.1\r\nHost: h\r\nTransfer-Encoding: chunked\t\r\n\r\n",
                          "POST /v HTTP/1.1\r\nHost: h\r\nTransfer-Encoding: identity\r\n\r\n",
                          "POST /v HTTP/1.1\r\nHost: a b\r\nContent-Length: 1\r\n\r\nx"}) {
    Verdict v = expect_same_every_split(Parser::Kind::kRequest, req);
    EXPECT_EQ(v.error, ParseError::kBadRequest) << req;
    EXPECT_TRUE(v.targets.empty()) << req;
  }
}

}  // namespace
}  // namespace sluice::http
