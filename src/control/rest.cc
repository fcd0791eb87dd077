#include "control/rest.h"

#include <algorithm>
#include <charconv>
#include <ctime>

#include <fmt/format.h>

#include "control/validate.h"
#include "core/json.h"

namespace sluice::control {

using Json = nlohmann::json;

std::string body_of(const Json& j) {
  return j.dump() + "\n";
}

HttpResponse json_response(int status, const Json& j) {
  HttpResponse r;
  r.status = status;
  r.body = body_of(j);
  return r;
}

HttpResponse error_response(int status, const std::string& error,
                            const std::vector<std::string>& errors) {
  Json j = {{"error", error}};
  if (!errors.empty()) {
    j["errors"] = errors;
  } else if (status == 400) {
    j["errors"] = Json::array({error});
  }
  HttpResponse r = json_response(status, j);
  if (status == 401) r.headers.emplace_back("WWW-Authenticate", "Bearer");
  return r;
}

std::string iso_time(int64_t ms) {
  std::time_t secs = static_cast<std::time_t>(ms / 1000);
  std::tm tm{};
  gmtime_r(&secs, &tm);
  char buf[32];
  std::strftime(buf, sizeof buf, "%Y-%m-%dT%H:%M:%S", &tm);
  return fmt::format("{}.{:03}Z", buf, static_cast<int>(ms % 1000));
}

std::optional<int64_t> parse_int(std::string_view s) {
  int64_t v = 0;
  auto [p, ec] = std::from_chars(s.data(), s.data() + s.size(), v);
  if (ec != std::errc() || p != s.data() + s.size()) return std::nullopt;
  return v;
}

std::vector<std::string> path_segments(std::string_view path) {
  std::vector<std::string> out;
  while (!path.empty()) {
    if (path.front() == '/') {
      path.remove_prefix(1);
      continue;
    }
    size_t slash = path.find('/');
    out.push_back(percent_decode(path.substr(0, slash)));
    if (slash == std::string_view::npos) break;
    path.remove_prefix(slash);
  }
  return out;
}

std::optional<Json> parse_body(const std::string& body, HttpResponse& error) {
  if (body.empty()) {
    error = error_response(400, "expected a JSON body");
    return std::nullopt;
  }
  std::string problem;
  std::optional<Json> j = core::parse_json(body, &problem);
  if (!j) error = error_response(400, problem);
  return j;
}

bool has_control_chars(std::string_view s) {
  return std::any_of(s.begin(), s.end(), [](char ch) {
    const auto c = static_cast<unsigned char>(ch);
    return (c < 0x20 && c != '\t' && c != '\n' && c != '\r') || c == 0x7f;
  });
}

bool is_blank(std::string_view s) {
  return std::all_of(s.begin(), s.end(), [](char c) {
    return c == ' ' || c == '\t' || c == '\r' || c == '\n' || c == '\f' || c == '\v';
  });
}

std::optional<int64_t> int_param(const HttpRequest& req, std::string_view name, int64_t fallback,
                                 int64_t lo, int64_t hi, std::vector<std::string>& errors) {
  auto v = query_param(req.query, name);
  if (!v) return fallback;
  auto n = parse_int(*v);
  if (!n || *n < lo || *n > hi) {
    errors.push_back(fmt::format("{}: expected an integer {}..{}, got '{}'", name, lo, hi, *v));
    return std::nullopt;
  }
  return n;
}

Fields::Fields(const Json& obj, std::string prefix, std::vector<std::string>& errors,
               std::initializer_list<std::string_view> known)
    : obj_(obj), prefix_(std::move(prefix)), errors_(errors) {
  if (!obj.is_object()) {
    errors_.push_back(fmt::format(
        "{}expected an object, got {}",
        prefix_.empty() ? "" : prefix_.substr(0, prefix_.size() - 1) + ": ", describe_json(obj)));
    return;
  }
  for (auto it = obj.begin(); it != obj.end(); ++it) {
    if (std::find(known.begin(), known.end(), it.key()) == known.end())
      errors_.push_back(fmt::format("{}{}: unknown key", prefix_, it.key()));
  }
}

const Json* Fields::get(std::string_view key) const {
  if (!obj_.is_object()) return nullptr;
  auto it = obj_.find(key);
  if (it == obj_.end() || it->is_null()) return nullptr;
  return &*it;
}

std::optional<std::string> Fields::string(std::string_view key, bool required) const {
  const Json* v = get(key);
  if (v == nullptr) {
    if (required && obj_.is_object())
      errors_.push_back(fmt::format("{}{}: required", prefix_, key));
    return std::nullopt;
  }
  if (!v->is_string()) {
    errors_.push_back(
        fmt::format("{}{}: expected a string, got {}", prefix_, key, describe_json(*v)));
    return std::nullopt;
  }
  const std::string& text = v->get_ref<const std::string&>();
  if (has_control_chars(text)) {
    errors_.push_back(fmt::format("{}{}: {}", prefix_, key, kControlCharsError));
    return std::nullopt;
  }
  return text;
}

std::optional<int64_t> Fields::integer(std::string_view key, int64_t lo, int64_t hi) const {
  const Json* v = get(key);
  if (v == nullptr) return std::nullopt;
  if (!v->is_number_integer()) {
    errors_.push_back(
        fmt::format("{}{}: expected an integer, got {}", prefix_, key, describe_json(*v)));
    return std::nullopt;
  }
  int64_t n =
      v->is_number_unsigned() && v->get<uint64_t>() > INT64_MAX ? INT64_MAX : v->get<int64_t>();
  if (n < lo || n > hi) {
    errors_.push_back(fmt::format("{}{}: must be {}..{}, got {}", prefix_, key, lo, hi, n));
    return std::nullopt;
  }
  return n;
}

std::optional<bool> Fields::boolean(std::string_view key) const {
  const Json* v = get(key);
  if (v == nullptr) return std::nullopt;
  if (!v->is_boolean()) {
    errors_.push_back(
        fmt::format("{}{}: expected true or false, got {}", prefix_, key, describe_json(*v)));
    return std::nullopt;
  }
  return v->get<bool>();
}

void Fields::error(std::string_view key, std::string message) const {
  errors_.push_back(fmt::format("{}{}: {}", prefix_, key, message));
}

}  // namespace sluice::control
