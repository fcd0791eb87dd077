#include "sample/body.h"

#include <charconv>

namespace sluice::sample {

namespace {

void append_u64(std::string& out, uint64_t v) {
  char buf[24];
  auto [end, ec] = std::to_chars(buf, buf + sizeof buf, v);
  out.append(buf, end);
}

char lower(char c) {
  return (c >= 'A' && c <= 'Z') ? static_cast<char>(c + 32) : c;
}

}  // namespace


void append_headers_object(std::string& out, const http::HeaderMap& headers) {
  // Quadratic in the number of fields, which the parser caps (100 by default); this runs only
  // for requests that ask for it with x-sample-echo.
  std::string name;
  out.push_back('{');
  bool first = true;
  for (size_t i = 0; i < headers.size(); ++i) {
    auto field = headers.at(i);
    bool seen = false;
    for (size_t j = 0; j < i && !seen; ++j) seen = http::iequals(headers.at(j).name, field.name);
    if (seen) continue;
    if (!first) out.push_back(',');
    first = false;
    name.assign(field.name);
    for (char& c : name) c = lower(c);
    append_json_string(out, name);
    out.push_back(':');
    if (headers.count(field.name) == 1) {
      append_json_string(out, field.value);
      continue;
    }
    std::string joined(field.value);
    for (size_t k = i + 1; k < headers.size(); ++k) {
      auto other = headers.at(k);
      if (!http::iequals(other.name, field.name)) continue;
      joined.append(", ");
      joined.append(other.value);
    }
    append_json_string(out, joined);
  }
  out.push_back('}');
}

BodyBuilder::BodyBuilder(std::string_view service, std::string_view city, std::string_view zone,
                         std::string_view instance) {
  prefix_ = "{\"service\":";
  append_json_string(prefix_, service);
  prefix_.append(",\"city\":");
  append_json_string(prefix_, city);
  prefix_.append(",\"zone\":");
  append_json_string(prefix_, zone);
  prefix_.append(",\"instance\":");
  append_json_string(prefix_, instance);
  prefix_.push_back(',');
}

void BodyBuilder::build(std::string& out, const RequestView& r) const {
  out.append(prefix_);
  out.append("\"method\":");
  append_json_string(out, r.method);
  out.append(",\"path\":");
  append_json_string(out, r.path);
  if (!r.query.empty()) {
    out.append(",\"query\":");
    append_json_string(out, r.query);
  }
  out.append(",\"body_bytes\":");
  append_u64(out, r.body_bytes);
  if (r.status != 0) {
    out.append(",\"status\":");
    append_u64(out, static_cast<uint64_t>(r.status));
  }
  if (r.headers != nullptr) {
    out.append(",\"headers\":");
    append_headers_object(out, *r.headers);
  }
  out.push_back('}');
}


std::string_view pattern_block() {
  static const std::string block = [] {
    std::string b;
    b.reserve(kPatternBlockSize);
    while (b.size() < kPatternBlockSize) b.append(kBytePattern);
    return b;
  }();
  return block;
}

}  // namespace sluice::sample
