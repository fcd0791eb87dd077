#include "http/writer.h"

#include <gtest/gtest.h>

namespace sluice::http {
namespace {

TEST(WriterTest, StatusLine) {
  std::string out;
  append_status_line(out, 404);
  EXPECT_EQ(out, "HTTP/1.1 404 Not Found\r\n");
  out.clear();
  append_status_line(out, 299, "Custom");
  EXPECT_EQ(out, "HTTP/1.1 299 Custom\r\n");
}

TEST(WriterTest, Headers) {
  std::string out;
  append_header(out, "Content-Length", uint64_t{1234567890123});
  append_header(out, "X", "y");
  EXPECT_EQ(out, "Content-Length: 1234567890123\r\nX: y\r\n");
}

TEST(WriterTest, ChunkFraming) {
  std::string out;
  append_chunk_header(out, 255);
  out.append("...");
  append_last_chunk(out);
  EXPECT_EQ(out, "ff\r\n...0\r\n\r\n");
  out.clear();
  append_chunk_header(out, 0x10000);
  EXPECT_EQ(out, "10000\r\n");
}

TEST(WriterTest, HopByHop) {
  for (const char* h :
       {"Connection", "keep-alive", "Proxy-Connection", "TE", "Trailer", "Transfer-Encoding",
        "Upgrade", "proxy-authenticate", "Proxy-Authorization"}) {
    EXPECT_TRUE(is_hop_by_hop(h)) << h;
  }
  for (const char* h : {"Content-Length", "Host", "Trailers", "x-te", "Authorization"}) {
    EXPECT_FALSE(is_hop_by_hop(h)) << h;
  }
}

TEST(WriterTest, ListedInConnection) {
  EXPECT_TRUE(listed_in_connection("keep-alive, X-Secret", "x-secret"));
  EXPECT_TRUE(listed_in_connection("close", "close"));
  EXPECT_TRUE(listed_in_connection(" a ,\tb\t", "b"));
  EXPECT_FALSE(listed_in_connection("x-secretive", "x-secret"));
  EXPECT_FALSE(listed_in_connection("", "x"));
}

TEST(WriterTest, ReasonPhrases) {
  EXPECT_EQ(reason_phrase(431), "Request Header Fields Too Large");
  EXPECT_EQ(reason_phrase(504), "Gateway Timeout");
  EXPECT_EQ(reason_phrase(799), "Unknown");
}

}  // namespace
}  // namespace sluice::http
