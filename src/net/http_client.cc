#include "net/http_client.h"

#include <poll.h>
#include <strings.h>
#include <sys/socket.h>
#include <sys/stat.h>

#include <asio/io_context.hpp>
#include <asio/ip/tcp.hpp>
#include <asio/ssl.hpp>
#include <asio/write.hpp>

#include <algorithm>
#include <cctype>
#include <cerrno>
#include <cstdlib>
#include <cstring>
#include <fstream>
#include <sstream>

namespace sluice::net {

namespace {

using asio::ip::tcp;

std::string lower(std::string s) {
  for (char& c : s) c = static_cast<char>(std::tolower(static_cast<unsigned char>(c)));
  return s;
}

std::string trim(const std::string& s) {
  size_t b = s.find_first_not_of(" \t\r\n");
  if (b == std::string::npos) return "";
  size_t e = s.find_last_not_of(" \t\r\n");
  return s.substr(b, e - b + 1);
}

// Chunked body -> content; tolerant of a truncated tail (the caller sees a short body).
std::string decode_chunked(const std::string& body) {
  std::string out;
  size_t pos = 0;
  while (pos < body.size()) {
    size_t eol = body.find("\r\n", pos);
    if (eol == std::string::npos) break;
    size_t n = std::strtoul(body.c_str() + pos, nullptr, 16);
    if (n == 0) break;
    out.append(body, eol + 2, n);
    pos = eol + 2 + n + 2;
  }
  return out;
}

void set_io_timeout(int fd, std::chrono::milliseconds t) {
  timeval tv{static_cast<time_t>(t.count() / 1000),
             static_cast<suseconds_t>(t.count() % 1000 * 1000)};
  setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof tv);
  setsockopt(fd, SOL_SOCKET, SO_SNDTIMEO, &tv, sizeof tv);
}

// Connects to the first endpoint that answers within the timeout.
asio::error_code connect_with_timeout(tcp::socket& socket, const tcp::resolver::results_type& eps,
                                      std::chrono::milliseconds timeout) {
  asio::error_code ec = asio::error::host_not_found;
  for (const auto& entry : eps) {
    asio::error_code close_ec;
    socket.close(close_ec);
    socket.open(entry.endpoint().protocol(), ec);
    if (ec) continue;
    socket.non_blocking(true, ec);
    socket.connect(entry.endpoint(), ec);
    if (ec == asio::error::would_block || ec == asio::error::in_progress) {
      pollfd p{socket.native_handle(), POLLOUT, 0};
      int n = ::poll(&p, 1, static_cast<int>(timeout.count()));
      if (n == 0) {
        ec = asio::error::timed_out;
        continue;
      }
      int err = 0;
      socklen_t len = sizeof err;
      getsockopt(socket.native_handle(), SOL_SOCKET, SO_ERROR, &err, &len);
      ec = err ? asio::error_code(err, asio::system_category()) : asio::error_code();
    }
    if (ec) continue;
    socket.non_blocking(false, ec);
    if (!ec) return ec;
  }
  return ec;
}

std::string describe(const asio::error_code& ec, std::chrono::milliseconds io_timeout) {
  if (ec == asio::error::would_block || ec == asio::error::try_again ||
      ec == asio::error::timed_out) {
    return "no answer within " + std::to_string(io_timeout.count() / 1000.0).substr(0, 4) + " s";
  }
  return lower(ec.message());
}

}  // namespace

// Registers the call's socket with a canceller for its lifetime.
class FdGuard {
 public:
  FdGuard(CallCanceller* c, int fd) : c_(c) {
    if (!c_) return;
    std::lock_guard lock(c_->mu_);
    c_->fd_ = fd;
    if (c_->cancelled_) ::shutdown(fd, SHUT_RDWR);
  }
  ~FdGuard() {
    if (!c_) return;
    std::lock_guard lock(c_->mu_);
    c_->fd_ = -1;
  }
  FdGuard(const FdGuard&) = delete;
  FdGuard& operator=(const FdGuard&) = delete;

 private:
  CallCanceller* c_;
};

void CallCanceller::cancel() {
  std::lock_guard lock(mu_);
  cancelled_ = true;
  if (fd_ >= 0) ::shutdown(fd_, SHUT_RDWR);
}

bool CallCanceller::cancelled() const {
  std::lock_guard lock(mu_);
  return cancelled_;
}

const std::string* HttpReply::header(const std::string& lower_name) const {
  for (const auto& [k, v] : headers) {
    if (k == lower_name) return &v;
  }
  return nullptr;
}

std::optional<ServerUrl> parse_server_url(const std::string& url_in, std::string* error) {
  std::string url = trim(url_in);
  ServerUrl s;
  std::string rest = url;
  std::string scheme =
      lower(url.substr(0, url.find("://") == std::string::npos ? 0 : url.find("://")));
  if (url.find("://") == std::string::npos) {
    url = "http://" + url;
  } else if (scheme == "https") {
    s.tls = true;
    rest = url.substr(8);
  } else if (scheme == "http") {
    rest = url.substr(7);
  } else {
    *error = "server URL must start with http:// or https://, got '" + url + "'";
    return std::nullopt;
  }
  s.url = url;
  size_t slash = rest.find('/');
  std::string hostport = rest.substr(0, slash);
  if (slash != std::string::npos) {
    s.prefix = rest.substr(slash);
    while (!s.prefix.empty() && s.prefix.back() == '/') s.prefix.pop_back();
  }
  if (hostport.empty()) {
    *error = "server URL has no host: '" + url + "'";
    return std::nullopt;
  }
  const std::string default_port = s.tls ? "443" : "80";
  if (hostport.front() == '[') {
    size_t close = hostport.find(']');
    if (close == std::string::npos || (close + 1 < hostport.size() && hostport[close + 1] != ':')) {
      *error = "server URL has a bad host: '" + url + "'";
      return std::nullopt;
    }
    s.host = hostport.substr(1, close - 1);
    std::string after = hostport.substr(close + 1);
    s.port = after.empty() ? default_port : after.substr(1);
  } else {
    size_t colon = hostport.rfind(':');
    s.host = hostport.substr(0, colon);
    s.port = colon == std::string::npos ? default_port : hostport.substr(colon + 1);
  }
  if (s.host.empty()) {
    *error = "server URL has no host: '" + url + "'";
    return std::nullopt;
  }
  if (s.port.empty() || s.port.size() > 5 ||
      !std::all_of(s.port.begin(), s.port.end(), [](char c) { return std::isdigit(c); }) ||
      std::stoi(s.port) > 65535 || std::stoi(s.port) == 0) {
    *error = "server URL has a bad port: '" + url + "'";
    return std::nullopt;
  }
  return s;
}

HttpReply http_call(const ServerUrl& server, const std::string& token, const std::string& method,
                    const std::string& path, const std::string* body, const HttpOptions& options,
                    const std::string& content_type) {
  HttpReply r;
  if (options.canceller && options.canceller->cancelled()) {
    r.error = "cancelled";
    return r;
  }
  try {
    asio::io_context io;
    tcp::resolver resolver(io);
    asio::error_code ec;
    auto endpoints = resolver.resolve(server.host, server.port, ec);
    if (ec) {
      r.error = "cannot resolve " + server.host + ": " + lower(ec.message());
      return r;
    }
    std::unique_ptr<asio::ssl::context> tls;
    tcp::socket plain(io);
    std::unique_ptr<asio::ssl::stream<tcp::socket&>> secure;
    ec = connect_with_timeout(plain, endpoints, options.connect_timeout);
    if (ec) {
      r.error = ec == asio::error::timed_out ? "connect timed out" : lower(ec.message());
      return r;
    }
    FdGuard guard(options.canceller, plain.native_handle());
    set_io_timeout(plain.native_handle(), options.io_timeout);
    if (server.tls) {
      tls = std::make_unique<asio::ssl::context>(asio::ssl::context::tls_client);
      tls->set_options(asio::ssl::context::default_workarounds | asio::ssl::context::no_sslv2 |
                       asio::ssl::context::no_sslv3 | asio::ssl::context::no_tlsv1 |
                       asio::ssl::context::no_tlsv1_1);
      if (options.ca_file.empty()) {
        tls->set_default_verify_paths(ec);
      } else {
        tls->load_verify_file(options.ca_file, ec);
      }
      if (ec) {
        r.error = "TLS trust store" + (options.ca_file.empty() ? "" : " " + options.ca_file) +
                  ": " + lower(ec.message());
        return r;
      }
      tls->set_verify_mode(asio::ssl::verify_peer);
      secure = std::make_unique<asio::ssl::stream<tcp::socket&>>(plain, *tls);
      secure->set_verify_callback(asio::ssl::host_name_verification(server.host));
      SSL_set_tlsext_host_name(secure->native_handle(), server.host.c_str());
      secure->handshake(asio::ssl::stream_base::client, ec);
      if (ec) {
        r.error = "TLS handshake: " + lower(ec.message());
        return r;
      }
    }
    std::string host_header = server.host.find(':') != std::string::npos
                                  ? "[" + server.host + "]:" + server.port
                                  : server.host + ":" + server.port;
    if (!options.host_header.empty()) host_header = options.host_header;
    std::string req = method + " " + server.prefix + path + " HTTP/1.1\r\nHost: " + host_header +
                      "\r\nUser-Agent: " + options.user_agent + "\r\n";
    bool accept = false;
    for (const auto& [name, value] : options.headers) {
      accept = accept || (name.size() == 6 && strncasecmp(name.c_str(), "accept", 6) == 0);
      req += name + ": " + value + "\r\n";
    }
    if (!accept) req += "Accept: application/json\r\n";
    if (!token.empty()) req += "Authorization: Bearer " + token + "\r\n";
    if (body) {
      req += "Content-Type: " + content_type +
             "\r\nContent-Length: " + std::to_string(body->size()) + "\r\n";
    }
    req += "Connection: close\r\n\r\n";
    if (body) req += *body;
    if (secure) {
      asio::write(*secure, asio::buffer(req), ec);
    } else {
      asio::write(plain, asio::buffer(req), ec);
    }
    if (ec) {
      r.error = describe(ec, options.io_timeout);
      return r;
    }
    std::string resp;
    char buf[16384];
    for (;;) {
      size_t n = secure ? secure->read_some(asio::buffer(buf), ec)
                        : plain.read_some(asio::buffer(buf), ec);
      if (resp.size() + n > options.max_reply_bytes) {
        r.error = "the answer is larger than " + std::to_string(options.max_reply_bytes) +
                  " bytes; refused";
        return r;
      }
      resp.append(buf, n);
      if (ec) break;
    }
    // A TLS peer that closes without close_notify ends the body too (Connection: close).
    bool clean_end = ec == asio::error::eof || ec == asio::ssl::error::stream_truncated;
    if (options.canceller && options.canceller->cancelled()) {
      r.error = "cancelled";
      return r;
    }
    if (!clean_end && resp.find("\r\n\r\n") == std::string::npos) {
      r.error = describe(ec, options.io_timeout);
      return r;
    }
    size_t sp = resp.find(' ');
    size_t end = resp.find("\r\n\r\n");
    if (resp.compare(0, 5, "HTTP/") != 0 || sp == std::string::npos || end == std::string::npos) {
      r.error = server.tls ? "the answer is not HTTP (is this a control plane?)"
                           : "the answer is not HTTP (is this a control plane? an https-only "
                             "listener? then use https://)";
      return r;
    }
    r.status = std::atoi(resp.c_str() + sp + 1);
    std::istringstream head(resp.substr(0, end));
    std::string line;
    std::getline(head, line);  // status line
    while (std::getline(head, line)) {
      if (!line.empty() && line.back() == '\r') line.pop_back();
      size_t colon = line.find(':');
      if (colon == std::string::npos) continue;
      r.headers.emplace_back(lower(line.substr(0, colon)), trim(line.substr(colon + 1)));
    }
    r.body = resp.substr(end + 4);
    const std::string* te = r.header("transfer-encoding");
    const std::string* cl = r.header("content-length");
    if (te && lower(*te).find("chunked") != std::string::npos) {
      r.body = decode_chunked(r.body);
    } else if (cl && method != "HEAD" && r.status != 204 && r.status != 304 && r.status >= 200) {
      size_t n = std::strtoul(cl->c_str(), nullptr, 10);
      if (r.body.size() < n) {
        // Connection: close ends the body; a shorter one was cut off on the way.
        r.error = "the answer ended after " + std::to_string(r.body.size()) + " of " +
                  std::to_string(n) + " body bytes";
        r.status = 0;
        r.body.clear();
        return r;
      }
      r.body.resize(n);
    }
  } catch (const std::exception& e) {
    r.status = 0;
    r.error = lower(e.what());
  }
  return r;
}

std::string url_encode(const std::string& s) {
  static const char* kHex = "0123456789ABCDEF";
  std::string out;
  for (unsigned char c : s) {
    if (std::isalnum(c) || c == '-' || c == '_' || c == '.' || c == '~') {
      out += static_cast<char>(c);
    } else {
      out += '%';
      out += kHex[c >> 4];
      out += kHex[c & 15];
    }
  }
  return out;
}

bool is_token_word(std::string_view token) {
  return std::all_of(token.begin(), token.end(),
                     [](unsigned char c) { return c > 0x20 && c < 0x7f; });
}

std::optional<std::string> read_token_file(const std::string& path, std::string* error) {
  struct stat st {};
  if (::stat(path.c_str(), &st) != 0) {
    *error = path + ": " + std::string(std::strerror(errno));
    return std::nullopt;
  }
  if (!S_ISREG(st.st_mode)) {
    *error = path + ": not a regular file";
    return std::nullopt;
  }
  if (static_cast<size_t>(st.st_size) > kMaxTokenFileBytes) {
    *error = path + ": larger than " + std::to_string(kMaxTokenFileBytes / 1024) +
             " KiB; is this the token file?";
    return std::nullopt;
  }
  std::ifstream in(path, std::ios::binary);
  if (!in) {
    *error = path + ": " + std::string(std::strerror(errno));
    return std::nullopt;
  }
  // Read at most the bound: the file may have grown since stat.
  std::string content(kMaxTokenFileBytes + 1, '\0');
  in.read(content.data(), static_cast<std::streamsize>(content.size()));
  content.resize(static_cast<size_t>(in.gcount()));
  if (content.size() > kMaxTokenFileBytes) {
    *error = path + ": larger than " + std::to_string(kMaxTokenFileBytes / 1024) +
             " KiB; is this the token file?";
    return std::nullopt;
  }
  std::string token = trim(content);
  if (token.empty()) {
    *error = path + ": the token file is empty";
    return std::nullopt;
  }
  if (!is_token_word(token)) {
    const bool lines = token.find_first_of("\r\n") != std::string::npos;
    *error = path + ": the token must be one word of printable ASCII (the file holds " +
             (lines ? "more than one line" : "spaces or control characters") + ")";
    return std::nullopt;
  }
  return token;
}

}  // namespace sluice::net
