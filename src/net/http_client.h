// A small blocking HTTP/1.1 client for the control plane's API: one request per connection
// (Connection: close), plain or TLS, with a deadline on connect and on every read and write, and
// a way to abort a call that is waiting (a long poll) from another thread. Used by `sluice ctl`,
// by a gateway's control-plane link and by the sample service's registration, whose URL and
// token file the config loader checks with the helpers below; never on a request path.
#pragma once

#include <chrono>
#include <memory>
#include <mutex>
#include <optional>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

namespace sluice::net {

struct ServerUrl {
  std::string url;  // as given (with http:// added when it had no scheme), for messages
  std::string host;
  std::string port;
  std::string prefix;  // path prefix without a trailing slash
  bool tls = false;
};

// "http://host:port[/prefix]", "https://...", or "host:port" (http). IPv6 hosts in brackets.
std::optional<ServerUrl> parse_server_url(const std::string& url, std::string* error);

struct HttpReply {
  int status = 0;     // 0: no answer (see error)
  std::string error;  // transport problem, lower case ("connection refused")
  std::string body;   // de-chunked
  std::vector<std::pair<std::string, std::string>> headers;  // names in lower case
  const std::string* header(const std::string& lower_name) const;
};

// Aborts the call in progress (and every later one) from another thread.
class CallCanceller {
 public:
  void cancel();
  bool cancelled() const;

 private:
  friend class FdGuard;
  mutable std::mutex mu_;
  int fd_ = -1;
  bool cancelled_ = false;
};

struct HttpOptions {
  std::chrono::milliseconds connect_timeout{5000};
  std::chrono::milliseconds io_timeout{60000};  // each read and write
  std::string ca_file;                          // TLS: trust these (PEM) instead of the system's
  std::string user_agent = "sluice";
  CallCanceller* canceller = nullptr;
  // A longer answer (head and body as received) is an error, not a string that grows until
  // the process runs out of memory: a gateway's whole config for a large fleet is a few MiB.
  size_t max_reply_bytes = 64 << 20;
  // More request headers; the caller vouches for them (no CR or LF). An Accept among them
  // replaces the default one.
  // A synthetic probe's request (control/probes/) also sets the Host header instead of the
  // server's host:port; it checked its headers (tokens for names, no CR or LF in values, none of
  // Host, Content-Length, Transfer-Encoding, Connection).
  std::string host_header;
  std::vector<std::pair<std::string, std::string>> headers;
};

// `body` null: no body. `content_type` is sent with a body.
HttpReply http_call(const ServerUrl& server, const std::string& token, const std::string& method,
                    const std::string& path, const std::string* body, const HttpOptions& options,
                    const std::string& content_type = "application/json");

// Percent-encodes everything but unreserved characters, for query values and path segments.
std::string url_encode(const std::string& s);

// A token file's content without surrounding whitespace; nullopt with `error` set when it cannot
// be read, is not a regular file (a FIFO would block the reader), is larger than
// kMaxTokenFileBytes, is empty, or holds more than one word of printable ASCII.
inline constexpr size_t kMaxTokenFileBytes = 64 << 10;

// A token goes into an Authorization header: one word of printable ASCII (a line break would
// split the request's head).
bool is_token_word(std::string_view token);
std::optional<std::string> read_token_file(const std::string& path, std::string* error);

}  // namespace sluice::net
