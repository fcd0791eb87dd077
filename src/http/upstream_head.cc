#include "http/upstream_head.h"

#include <array>

#include "http/writer.h"

namespace sluice::http {

namespace {

// RFC 9110 section 5.6.2: tchar.
constexpr std::array<bool, 256> make_tchar() {
  std::array<bool, 256> t{};
  for (int c = '0'; c <= '9'; ++c) t[c] = true;
  for (int c = 'a'; c <= 'z'; ++c) t[c] = true;
  for (int c = 'A'; c <= 'Z'; ++c) t[c] = true;
  for (char c : std::string_view("!#$%&'*+-.^_`|~")) t[static_cast<unsigned char>(c)] = true;
  return t;
}
constexpr std::array<bool, 256> kTchar = make_tchar();

bool is_token(std::string_view s) {
  if (s.empty()) return false;
  for (char c : s) {
    if (!kTchar[static_cast<unsigned char>(c)]) return false;
  }
  return true;
}

bool safe_value(std::string_view s) {
  for (char c : s) {
    if (c == '\r' || c == '\n' || c == '\0') return false;
  }
  return true;
}

bool safe_target(std::string_view s) {
  if (s.empty()) return false;
  for (char c : s) {
    const auto u = static_cast<unsigned char>(c);
    if (u <= 0x20 || u == 0x7f) return false;
  }
  return true;
}

bool dropped(std::string_view name, std::string_view connection) {
  if (is_hop_by_hop(name)) return true;
  if (!connection.empty() && listed_in_connection(connection, name)) return true;
  return iequals(name, "content-length") || iequals(name, "expect") ||
         iequals(name, "x-request-id") || iequals(name, "x-forwarded-proto") ||
         iequals(name, "x-sluice-hop") || iequals(name, "traceparent");
}

UpstreamHeadError check(const UpstreamHeadInput& in) {
  if (!is_token(in.method)) return UpstreamHeadError::kBadMethod;
  if (!safe_target(in.target)) return UpstreamHeadError::kBadTarget;
  for (std::string_view v : {in.default_host, in.client_ip, in.proto, in.request_id, in.traceparent,
                             in.hop_prev, in.hop_city}) {
    if (!safe_value(v)) return UpstreamHeadError::kBadValue;
  }
  if (in.headers) {
    for (size_t i = 0; i < in.headers->size(); ++i) {
      auto f = in.headers->at(i);
      if (!is_token(f.name)) return UpstreamHeadError::kBadName;
      if (!safe_value(f.value)) return UpstreamHeadError::kBadValue;
    }
  }
  return UpstreamHeadError::kNone;
}

}  // namespace

std::string_view to_string(UpstreamHeadError e) {
  switch (e) {
    case UpstreamHeadError::kNone:
      return "none";
    case UpstreamHeadError::kBadMethod:
      return "method is not a token";
    case UpstreamHeadError::kBadTarget:
      return "request target holds a space or control byte";
    case UpstreamHeadError::kBadName:
      return "header name is not a token";
    case UpstreamHeadError::kBadValue:
      return "header value holds CR, LF or NUL";
  }
  return "unknown";
}

UpstreamHeadError append_upstream_head(std::string& out, const UpstreamHeadInput& in) {
  if (UpstreamHeadError e = check(in); e != UpstreamHeadError::kNone) return e;
  out.append(in.method);
  out.push_back(' ');
  out.append(in.target);
  out.append(" HTTP/1.1\r\n");
  std::string_view xff;
  bool has_host = false;
  if (in.headers) {
    const HeaderMap& h = *in.headers;
    std::string_view connection = h.get("connection");
    for (size_t i = 0; i < h.size(); ++i) {
      auto f = h.at(i);
      if (dropped(f.name, connection)) continue;
      if (iequals(f.name, "x-forwarded-for")) {
        if (xff.empty()) xff = f.value;
        continue;
      }
      if (iequals(f.name, "host")) has_host = true;
      out.append(f.name);
      out.append(": ");
      out.append(f.value);
      out.append("\r\n");
    }
  }
  if (!has_host && !in.default_host.empty()) append_header(out, "Host", in.default_host);
  out.append("X-Forwarded-For: ");
  if (!xff.empty()) {
    out.append(xff);
    out.append(", ");
  }
  out.append(in.client_ip);
  out.append("\r\n");
  append_header(out, "X-Forwarded-Proto", in.proto);
  append_header(out, "x-request-id", in.request_id);
  if (!in.traceparent.empty()) append_header(out, "traceparent", in.traceparent);
  if (!in.hop_city.empty()) {
    out.append("x-sluice-hop: ");
    if (!in.hop_prev.empty()) {
      out.append(in.hop_prev);
      out.push_back(',');
    }
    out.append(in.hop_city);
    out.append("\r\n");
  }
  if (in.chunked) {
    out.append("Transfer-Encoding: chunked\r\n");
  } else if (in.content_length >= 0) {
    append_header(out, "Content-Length", static_cast<uint64_t>(in.content_length));
  }
  out.append("\r\n");
  return UpstreamHeadError::kNone;
}

}  // namespace sluice::http
