#include "net/http_client.h"

#include <arpa/inet.h>
#include <netinet/in.h>
#include <sys/socket.h>
#include <unistd.h>

#include <gtest/gtest.h>

#include <condition_variable>
#include <cstdio>
#include <cstdlib>
#include <fstream>
#include <functional>
#include <mutex>
#include <thread>

namespace sluice::net {
namespace {

using namespace std::chrono_literals;

TEST(ParseServerUrl, HostPortWithoutSchemeIsHttp) {
  std::string error;
  auto u = parse_server_url("  127.0.0.1:7070 ", &error);
  ASSERT_TRUE(u) << error;
  EXPECT_EQ(u->url, "http://127.0.0.1:7070");
  EXPECT_EQ(u->host, "127.0.0.1");
  EXPECT_EQ(u->port, "7070");
  EXPECT_EQ(u->prefix, "");
  EXPECT_FALSE(u->tls);
}

TEST(ParseServerUrl, HttpsPrefixAndDefaultPorts) {
  std::string error;
  auto u = parse_server_url("HTTPS://cp.bank.example/sluice//", &error);
  ASSERT_TRUE(u) << error;
  EXPECT_TRUE(u->tls);
  EXPECT_EQ(u->host, "cp.bank.example");
  EXPECT_EQ(u->port, "443");
  EXPECT_EQ(u->prefix, "/sluice");
  auto plain = parse_server_url("http://cp", &error);
  ASSERT_TRUE(plain) << error;
  EXPECT_EQ(plain->port, "80");
}

TEST(ParseServerUrl, Ipv6InBrackets) {
  std::string error;
  auto u = parse_server_url("http://[::1]:7070/", &error);
  ASSERT_TRUE(u) << error;
  EXPECT_EQ(u->host, "::1");
  EXPECT_EQ(u->port, "7070");
  auto d = parse_server_url("https://[fe80::1]", &error);
  ASSERT_TRUE(d) << error;
  EXPECT_EQ(d->port, "443");
}

TEST(ParseServerUrl, RefusesWhatIsNotAServerUrl) {
  const std::pair<const char*, const char*> bad[] = {
      {"ftp://cp:21", "must start with http:// or https://"},
      {"http://:7070", "has no host"},
      {"http://", "has no host"},
      {"http://[::1", "bad host"},
      {"http://[::1]x", "bad host"},
      {"http://cp:0", "bad port"},
      {"http://cp:65536", "bad port"},
      {"http://cp:123456", "bad port"},
      {"http://cp:7o7o", "bad port"},
      {"http://cp:", "bad port"},
  };
  for (const auto& [url, why] : bad) {
    std::string error;
    EXPECT_FALSE(parse_server_url(url, &error)) << url;
    EXPECT_NE(error.find(why), std::string::npos) << url << ": " << error;
  }
}

TEST(UrlEncode, KeepsOnlyUnreservedCharacters) {
  EXPECT_EQ(url_encode("gw-a1_x.y~z"), "gw-a1_x.y~z");
  EXPECT_EQ(url_encode("a b/c?d&e=f%"), "a%20b%2Fc%3Fd%26e%3Df%25");
  EXPECT_EQ(url_encode("\xC3\xA9\n"), "%C3%A9%0A");
  EXPECT_EQ(url_encode(""), "");
}

class TempFile {
 public:
  explicit TempFile(const std::string& content) {
    char name[] = "/tmp/sluice-token-XXXXXX";
    int fd = ::mkstemp(name);
    path_ = name;
    ::close(fd);
    std::ofstream(path_, std::ios::binary) << content;
  }
  ~TempFile() { std::remove(path_.c_str()); }
  const std::string& path() const { return path_; }

 private:
  std::string path_;
};

TEST(ReadTokenFile, TrimsSurroundingWhitespace) {
  TempFile f("  s3cret-token\r\n\n");
  std::string error;
  auto token = read_token_file(f.path(), &error);
  ASSERT_TRUE(token) << error;
  EXPECT_EQ(*token, "s3cret-token");
}

TEST(ReadTokenFile, EmptyOrMissingIsAnErrorNamingThePath) {
  TempFile f(" \n\t\n");
  std::string error;
  EXPECT_FALSE(read_token_file(f.path(), &error));
  EXPECT_EQ(error, f.path() + ": the token file is empty");
  error.clear();
  EXPECT_FALSE(read_token_file("/nonexistent/sluice/token", &error));
  EXPECT_EQ(error, "/nonexistent/sluice/token: No such file or directory");
}

TEST(ReadTokenFile, RefusesWhatCannotBeAToken) {
  TempFile big(std::string(kMaxTokenFileBytes + 1, 'x'));
  std::string error;
  EXPECT_FALSE(read_token_file(big.path(), &error));
  EXPECT_EQ(error, big.path() + ": larger than 64 KiB; is this the token file?");
  TempFile at_bound(std::string(kMaxTokenFileBytes, 'y'));
  auto token = read_token_file(at_bound.path(), &error);
  ASSERT_TRUE(token) << error;
  EXPECT_EQ(token->size(), kMaxTokenFileBytes);
  error.clear();
  EXPECT_FALSE(read_token_file("/tmp", &error));  // a FIFO or a directory would block or fail
  EXPECT_EQ(error, "/tmp: not a regular file");
  // A message saved with the token (2>&1) would put a line break into the Authorization header.
  TempFile two_lines("token tok_1 created for 'reviewer'\nabcdef0123\n");
  EXPECT_FALSE(read_token_file(two_lines.path(), &error));
  EXPECT_EQ(error, two_lines.path() +
                       ": the token must be one word of printable ASCII (the file holds more "
                       "than one line)");
  TempFile spaced("abc def");
  EXPECT_FALSE(read_token_file(spaced.path(), &error));
  EXPECT_EQ(error, spaced.path() +
                       ": the token must be one word of printable ASCII (the file holds spaces "
                       "or control characters)");
}

// One-connection HTTP peer on an ephemeral loopback port: reads the request head (and a body by
// Content-Length), hands it to `answer`, which may write a reply or wait; then closes.
class Peer {
 public:
  explicit Peer(std::function<void(int fd, const std::string& request)> answer) {
    listen_fd_ = ::socket(AF_INET, SOCK_STREAM, 0);
    sockaddr_in a{};
    a.sin_family = AF_INET;
    a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    socklen_t len = sizeof a;
    EXPECT_EQ(::bind(listen_fd_, reinterpret_cast<sockaddr*>(&a), sizeof a), 0);
    EXPECT_EQ(::listen(listen_fd_, 1), 0);
    ::getsockname(listen_fd_, reinterpret_cast<sockaddr*>(&a), &len);
    port_ = ntohs(a.sin_port);
    thread_ = std::thread([this, answer] {
      int fd = ::accept(listen_fd_, nullptr, nullptr);
      if (fd < 0) return;
      std::string req;
      char buf[4096];
      while (req.find("\r\n\r\n") == std::string::npos) {
        ssize_t n = ::read(fd, buf, sizeof buf);
        if (n <= 0) break;
        req.append(buf, static_cast<size_t>(n));
      }
      size_t cl = req.find("Content-Length: ");
      if (cl != std::string::npos) {
        size_t want = req.find("\r\n\r\n") + 4 + std::strtoul(req.c_str() + cl + 16, nullptr, 10);
        while (req.size() < want) {
          ssize_t n = ::read(fd, buf, sizeof buf);
          if (n <= 0) break;
          req.append(buf, static_cast<size_t>(n));
        }
      }
      {
        std::lock_guard lock(mu_);
        request_ = req;
        accepted_ = true;
      }
      cv_.notify_all();
      answer(fd, req);
      ::close(fd);
    });
  }
  ~Peer() {
    ::shutdown(listen_fd_, SHUT_RDWR);
    thread_.join();
    ::close(listen_fd_);
  }
  ServerUrl url(const std::string& prefix = "") const {
    std::string error;
    auto u = parse_server_url("http://127.0.0.1:" + std::to_string(port_) + prefix, &error);
    EXPECT_TRUE(u) << error;
    return *u;
  }
  std::string request() {
    std::lock_guard lock(mu_);
    return request_;
  }
  bool wait_accepted(std::chrono::milliseconds deadline) {
    std::unique_lock lock(mu_);
    return cv_.wait_for(lock, deadline, [this] { return accepted_; });
  }

 private:
  int listen_fd_ = -1;
  int port_ = 0;
  std::thread thread_;
  std::mutex mu_;
  std::condition_variable cv_;
  std::string request_;
  bool accepted_ = false;
};

void write_all(int fd, const std::string& s) {
  size_t off = 0;
  while (off < s.size()) {
    ssize_t n = ::write(fd, s.data() + off, s.size() - off);
    if (n <= 0) return;
    off += static_cast<size_t>(n);
  }
}

HttpOptions quick() {
  HttpOptions o;
  o.connect_timeout = 5s;
  o.io_timeout = 10s;
  o.user_agent = "sluice-test";
  return o;
}

TEST(HttpCall, SendsTheRequestAndDecodesAChunkedReply) {
  Peer peer([](int fd, const std::string&) {
    write_all(fd,
              "HTTP/1.1 201 Created\r\nX-Version: 7\r\nTransfer-Encoding: chunked\r\n\r\n"
              "5\r\nhello\r\n7\r\n, world\r\n0\r\n\r\n");
  });
  const std::string body = R"({"a":1})";
  HttpReply r = http_call(peer.url("/base/"), "tok", "POST", "/v1/x?y=1", &body, quick());
  EXPECT_EQ(r.error, "");
  EXPECT_EQ(r.status, 201);
  EXPECT_EQ(r.body, "hello, world");
  ASSERT_NE(r.header("x-version"), nullptr);
  EXPECT_EQ(*r.header("x-version"), "7");
  EXPECT_EQ(r.header("X-Version"), nullptr);  // names are kept in lower case
  std::string req = peer.request();
  EXPECT_EQ(req.rfind("POST /base/v1/x?y=1 HTTP/1.1\r\n", 0), 0u) << req;
  EXPECT_NE(req.find("\r\nAuthorization: Bearer tok\r\n"), std::string::npos) << req;
  EXPECT_NE(req.find("\r\nUser-Agent: sluice-test\r\n"), std::string::npos) << req;
  EXPECT_NE(req.find("\r\nContent-Type: application/json\r\nContent-Length: 7\r\n"),
            std::string::npos)
      << req;
  EXPECT_NE(req.find("\r\nConnection: close\r\n\r\n" + body), std::string::npos) << req;
}

TEST(HttpCall, ContentLengthCutsTrailingBytesAndNoTokenNoAuthorization) {
  Peer peer([](int fd, const std::string&) {
    write_all(fd, "HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nokEXTRA");
  });
  HttpReply r = http_call(peer.url(), "", "GET", "/healthz", nullptr, quick());
  EXPECT_EQ(r.status, 200);
  EXPECT_EQ(r.body, "ok");
  EXPECT_EQ(peer.request().find("Authorization"), std::string::npos);
  EXPECT_EQ(peer.request().find("Content-Length"), std::string::npos);
}

TEST(HttpCall, AnAnswerLargerThanTheBoundIsRefused) {
  Peer peer([](int fd, const std::string&) {
    write_all(fd, "HTTP/1.1 200 OK\r\nContent-Length: 100000\r\n\r\n" +
                      std::string(100000, 'z'));
  });
  HttpOptions o = quick();
  o.max_reply_bytes = 50000;
  HttpReply r = http_call(peer.url(), "", "GET", "/v1/gateway-config", nullptr, o);
  EXPECT_EQ(r.status, 0);
  EXPECT_EQ(r.error, "the answer is larger than 50000 bytes; refused");
  EXPECT_EQ(r.body, "");
}

TEST(HttpCall, ABodyShorterThanItsContentLengthIsAnError) {
  Peer peer([](int fd, const std::string&) {
    write_all(fd, "HTTP/1.1 200 OK\r\nContent-Length: 10\r\n\r\n{\"a\":");
  });
  HttpReply r = http_call(peer.url(), "", "GET", "/v1/resources", nullptr, quick());
  EXPECT_EQ(r.status, 0);
  EXPECT_EQ(r.error, "the answer ended after 5 of 10 body bytes");
  EXPECT_EQ(r.body, "");
}

TEST(HttpCall, NotModifiedWithAContentLengthHasNoBody) {
  Peer peer([](int fd, const std::string&) {
    write_all(fd, "HTTP/1.1 304 Not Modified\r\nContent-Length: 42\r\n\r\n");
  });
  HttpReply r = http_call(peer.url(), "", "GET", "/v1/gateway-config", nullptr, quick());
  EXPECT_EQ(r.error, "");
  EXPECT_EQ(r.status, 304);
  EXPECT_EQ(r.body, "");
}

TEST(HttpCall, AnAnswerThatIsNotHttpIsAnError) {
  Peer peer([](int fd, const std::string&) { write_all(fd, "+OK redis here\r\n\r\n"); });
  HttpReply r = http_call(peer.url(), "", "GET", "/", nullptr, quick());
  EXPECT_EQ(r.status, 0);
  EXPECT_NE(r.error.find("the answer is not HTTP"), std::string::npos) << r.error;
}

TEST(HttpCall, RefusedConnectionIsAnErrorNotAStatus) {
  int fd = ::socket(AF_INET, SOCK_STREAM, 0);
  sockaddr_in a{};
  a.sin_family = AF_INET;
  a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  socklen_t len = sizeof a;
  ASSERT_EQ(::bind(fd, reinterpret_cast<sockaddr*>(&a), sizeof a), 0);
  ::getsockname(fd, reinterpret_cast<sockaddr*>(&a), &len);
  ::close(fd);  // bound, never listened: nothing accepts on this port now
  std::string error;
  auto url = parse_server_url("127.0.0.1:" + std::to_string(ntohs(a.sin_port)), &error);
  ASSERT_TRUE(url) << error;
  HttpReply r = http_call(*url, "", "GET", "/", nullptr, quick());
  EXPECT_EQ(r.status, 0);
  EXPECT_EQ(r.error, "connection refused");
}

TEST(HttpCall, CancelAbortsACallThatWaitsForItsAnswer) {
  std::mutex mu;
  std::condition_variable cv;
  bool done = false;
  Peer peer([&](int, const std::string&) {
    // Never answers; holds the connection until the test is over.
    std::unique_lock lock(mu);
    cv.wait_for(lock, 30s, [&] { return done; });
  });
  CallCanceller canceller;
  HttpOptions o = quick();
  o.io_timeout = 20s;  // a cancel that did not work would show as a 20 s wait and a timeout
  o.canceller = &canceller;
  std::thread cancel_thread([&] {
    if (peer.wait_accepted(20s)) canceller.cancel();
  });
  auto start = std::chrono::steady_clock::now();
  HttpReply r = http_call(peer.url(), "", "GET", "/v1/gateway-config?wait=30s", nullptr, o);
  auto took = std::chrono::steady_clock::now() - start;
  cancel_thread.join();
  {
    std::lock_guard lock(mu);
    done = true;
  }
  cv.notify_all();
  EXPECT_EQ(r.status, 0);
  EXPECT_EQ(r.error, "cancelled");
  EXPECT_LT(took, 15s);
  EXPECT_TRUE(canceller.cancelled());
  // Every later call is refused at once.
  HttpReply later = http_call(peer.url(), "", "GET", "/", nullptr, o);
  EXPECT_EQ(later.error, "cancelled");
}

}  // namespace
}  // namespace sluice::net
