#include "control/probes/spec.h"

#include <algorithm>
#include <cctype>
#include <stdexcept>

#include <fmt/format.h>

#include "control/validate.h"
#include "core/duration.h"
#include "net/http_client.h"

namespace sluice::control::probes {
namespace {

using Json = nlohmann::json;

bool is_tchar(char c) {
  return std::isalnum(static_cast<unsigned char>(c)) ||
         std::string_view("!#$%&'*+-.^_`|~").find(c) != std::string_view::npos;
}

bool is_token(const std::string& s) {
  return !s.empty() && std::all_of(s.begin(), s.end(), is_tchar);
}

// Visible ASCII, space and tab: a line break would split the request's head.
bool is_field_value(const std::string& s) {
  return std::all_of(s.begin(), s.end(), [](char c) {
    return c == '\t' ||
           (static_cast<unsigned char>(c) >= 0x20 && static_cast<unsigned char>(c) < 0x7f);
  });
}

std::string lower(std::string s) {
  for (char& c : s) c = static_cast<char>(std::tolower(static_cast<unsigned char>(c)));
  return s;
}

// describe_json, with a string cut to 64 bytes and its control characters shown as '?': an
// error message never carries a hostile value whole, nor a line break.
std::string shown(const Json& v) {
  if (!v.is_string()) return describe_json(v);
  const std::string& s = v.get_ref<const std::string&>();
  std::string out = "'";
  for (char c : s.substr(0, 64))
    out += static_cast<unsigned char>(c) < 0x20 || static_cast<unsigned char>(c) == 0x7f ? '?' : c;
  if (s.size() > 64) return out + fmt::format("...' ({} bytes)", s.size());
  return out + "'";
}

// A key as it may appear in a message: at most 64 bytes, control characters as '?'.
std::string clean(const std::string& key) {
  std::string out;
  for (char c : key.substr(0, 64))
    out += static_cast<unsigned char>(c) < 0x20 || static_cast<unsigned char>(c) == 0x7f ? '?' : c;
  return key.size() > 64 ? out + "..." : out;
}

// Headers the client writes itself, from the request's own parts: given twice they would make
// the request ambiguous (a smuggling shape).
constexpr std::string_view kReservedHeaders[] = {
    "host", "content-length", "transfer-encoding", "connection", "upgrade", "te", "trailer"};

class Reader {
 public:
  Reader(const Json& obj, std::string prefix, std::vector<std::string>& errors)
      : obj_(obj), prefix_(std::move(prefix)), errors_(errors) {}

  void known(std::initializer_list<std::string_view> keys, const char* list) {
    for (auto it = obj_.begin(); it != obj_.end(); ++it) {
      if (std::find(keys.begin(), keys.end(), it.key()) == keys.end())
        error(it.key(), fmt::format("unknown key (expected {})", list));
    }
  }
  const Json* get(std::string_view key) const {
    auto it = obj_.find(key);
    return it == obj_.end() || it->is_null() ? nullptr : &*it;
  }
  void error(std::string_view key, const std::string& message) {
    errors_.push_back(fmt::format("{}.{}: {}", prefix_, key, message));
  }
  // A duration string in [lo, hi] ms.
  std::optional<int64_t> duration(std::string_view key, int64_t lo, int64_t hi) {
    const Json* v = get(key);
    if (v == nullptr) return std::nullopt;
    std::optional<core::Duration> d;
    if (v->is_string()) d = core::parse_duration(v->get_ref<const std::string&>());
    const int64_t ms =
        d ? std::chrono::duration_cast<std::chrono::milliseconds>(*d).count() : int64_t{-1};
    if (!d || ms < lo || ms > hi) {
      error(key, fmt::format("must be a duration from {} to {} (e.g. \"5s\"), got {}",
                             core::format_duration(std::chrono::milliseconds(lo)),
                             core::format_duration(std::chrono::milliseconds(hi)), shown(*v)));
      return std::nullopt;
    }
    return ms;
  }
  std::optional<std::string> string(std::string_view key, size_t max_bytes) {
    const Json* v = get(key);
    if (v == nullptr) return std::nullopt;
    if (!v->is_string() || v->get_ref<const std::string&>().size() > max_bytes) {
      error(key,
            fmt::format("expected a string of at most {} bytes, got {}", max_bytes, shown(*v)));
      return std::nullopt;
    }
    return v->get<std::string>();
  }
  const std::string& prefix() const { return prefix_; }

 private:
  const Json& obj_;
  std::string prefix_;
  std::vector<std::string>& errors_;
};

void check_request(const Json& req, const std::string& prefix, ProbeSpec& out,
                   std::vector<std::string>& errors) {
  if (!req.is_object()) {
    errors.push_back(fmt::format("{}: expected an object, got {}", prefix, shown(req)));
    return;
  }
  Reader r(req, prefix, errors);
  r.known({"method", "path", "headers", "body", "host"}, "method, path, headers, body or host");
  if (auto m = r.string("method", 16)) {
    if (!is_token(*m) || std::any_of(m->begin(), m->end(), [](char c) {
          return std::islower(static_cast<unsigned char>(c));
        }))
      r.error("method", fmt::format("expected an HTTP method in capitals (GET, POST, ...), got {}",
                                    shown(*m)));
    else
      out.method = *m;
  }
  if (const Json* p = r.get("path"); p == nullptr) {
    errors.push_back(fmt::format("{}.path: required (e.g. \"/health\")", prefix));
  } else if (auto path = r.string("path", kMaxPathBytes)) {
    if (path->empty() || path->front() != '/' ||
        !std::all_of(path->begin(), path->end(), [](char c) {
          return static_cast<unsigned char>(c) > 0x20 && static_cast<unsigned char>(c) < 0x7f;
        }))
      r.error("path", fmt::format("must start with '/' and hold visible ASCII only (no spaces), "
                                  "got {}",
                                  shown(*p)));
    else
      out.path = *path;
  }
  if (const Json* h = r.get("headers")) {
    if (!h->is_object() || h->size() > kMaxHeaders) {
      r.error("headers", fmt::format("expected an object of at most {} name: value pairs, got {}",
                                     kMaxHeaders, shown(*h)));
    } else {
      for (auto it = h->begin(); it != h->end(); ++it) {
        const std::string& name = it.key();
        const std::string at = fmt::format("{}.headers.{}", prefix, clean(name));
        if (name.size() > kMaxHeaderNameBytes || !is_token(name)) {
          errors.push_back(fmt::format("{}: not a header name (1..{} token characters)", at,
                                       kMaxHeaderNameBytes));
          continue;
        }
        const std::string low = lower(name);
        if (std::find(std::begin(kReservedHeaders), std::end(kReservedHeaders), low) !=
            std::end(kReservedHeaders)) {
          errors.push_back(fmt::format(
              "{}: set by the prober itself ({})", at,
              low == "host" ? "use request.host" : "from the request's body and connection"));
          continue;
        }
        if (!it->is_string() || it->get_ref<const std::string&>().size() > kMaxHeaderValueBytes ||
            !is_field_value(it->get_ref<const std::string&>())) {
          errors.push_back(fmt::format(
              "{}: expected a string of at most {} bytes of visible ASCII, space and tab, got {}",
              at, kMaxHeaderValueBytes, shown(*it)));
          continue;
        }
        out.headers.emplace_back(name, it->get<std::string>());
      }
    }
  }
  if (auto b = r.string("body", kMaxBodyBytes)) out.body = *b;
  if (auto host = r.string("host", 255)) {
    if (host->empty() || !is_field_value(*host) || host->find(' ') != std::string::npos)
      r.error("host", fmt::format("expected a host name (and :port), got {}", shown(*host)));
    else
      out.host = *host;
  }
}

void check_expect(const Json& ex, const std::string& prefix, ProbeSpec& out,
                  std::vector<std::string>& errors) {
  if (!ex.is_object()) {
    errors.push_back(fmt::format("{}: expected an object, got {}", prefix, shown(ex)));
    return;
  }
  Reader r(ex, prefix, errors);
  r.known({"status", "body_contains", "json", "latency_under"},
          "status, body_contains, json or latency_under");
  if (const Json* s = r.get("status")) {
    auto ok = [](const Json& v) {
      return v.is_number_integer() && v.get<int64_t>() >= 100 && v.get<int64_t>() <= 599;
    };
    std::vector<int> statuses;
    if (ok(*s)) {
      statuses.push_back(s->get<int>());
    } else if (s->is_array() && !s->empty() && s->size() <= kMaxStatuses &&
               std::all_of(s->begin(), s->end(), ok)) {
      for (const Json& v : *s) statuses.push_back(v.get<int>());
    } else {
      r.error("status", fmt::format("expected a status 100..599 or a list of 1..{} of them, got {}",
                                    kMaxStatuses, shown(*s)));
    }
    if (!statuses.empty()) out.statuses = std::move(statuses);
  }
  if (auto c = r.string("body_contains", kMaxContainsBytes)) {
    if (c->empty())
      r.error("body_contains", "must not be empty");
    else
      out.body_contains = *c;
  }
  if (const Json* j = r.get("json")) {
    if (!j->is_object()) {
      r.error("json", fmt::format("expected {{path, equals}}, got {}", shown(*j)));
    } else {
      Reader jr(*j, prefix + ".json", errors);
      jr.known({"path", "equals"}, "path or equals");
      auto path = jr.string("path", kMaxJsonPathBytes);
      if (jr.get("path") == nullptr)
        errors.push_back(prefix + ".json.path: required (e.g. \"data.state\")");
      if (path) {
        size_t steps = 1;
        bool bad = path->empty() || path->front() == '.' || path->back() == '.' ||
                   path->find("..") != std::string::npos;
        for (char c : *path) steps += c == '.';
        if (bad || steps > kMaxJsonPathDepth)
          jr.error("path",
                   fmt::format("expected 1..{} dot-separated keys (\"data.items.0.state\"), got {}",
                               kMaxJsonPathDepth, shown(Json(*path))));
        else
          out.json_path = *path;
      }
      auto eq = j->find("equals");
      if (eq == j->end()) {
        errors.push_back(prefix + ".json.equals: required (the value expected at path)");
      } else if (eq->dump().size() > kMaxContainsBytes) {
        jr.error("equals", fmt::format("at most {} bytes of JSON", kMaxContainsBytes));
      } else {
        out.json_equals = *eq;
      }
    }
  }
  if (auto l = r.duration("latency_under", 1, kMaxTimeoutMs)) out.latency_under_ms = *l;
}

void check(const Json& spec, const std::string& prefix, ProbeSpec& out,
           std::vector<std::string>& errors) {
  if (!spec.is_object()) {
    errors.push_back(fmt::format("{}: expected an object, got {}", prefix, shown(spec)));
    return;
  }
  Reader r(spec, prefix, errors);
  // `name` is checked with every resource.
  r.known({"request", "expect", "cities", "interval", "timeout", "fail_after", "name"},
          "request, expect, cities, interval, timeout or fail_after");
  if (const Json* req = r.get("request"))
    check_request(*req, prefix + ".request", out, errors);
  else
    errors.push_back(fmt::format("{}.request: required (at least {{path}})", prefix));
  if (const Json* ex = r.get("expect")) check_expect(*ex, prefix + ".expect", out, errors);
  if (const Json* c = r.get("cities"); c == nullptr) {
    errors.push_back(fmt::format(
        "{}.cities: required (each city's entry point: {{city-a: \"http://host:port\"}})", prefix));
  } else if (!c->is_object() || c->empty() || c->size() > kMaxCities) {
    r.error("cities", fmt::format("expected an object of 1..{} city: base URL pairs, got {}",
                                  kMaxCities, shown(*c)));
  } else {
    for (auto it = c->begin(); it != c->end(); ++it) {
      const std::string at = fmt::format("{}.cities.{}", prefix, clean(it.key()));
      if (!is_valid_name(it.key())) {
        errors.push_back(fmt::format("{}: not a city name (letters, digits, '_', '.', '-')", at));
        continue;
      }
      if (!it->is_string() || it->get_ref<const std::string&>().size() > kMaxUrlBytes) {
        errors.push_back(fmt::format("{}: expected a base URL of at most {} bytes, got {}", at,
                                     kMaxUrlBytes, shown(*it)));
        continue;
      }
      std::string err;
      const std::string& url = it->get_ref<const std::string&>();
      if (!is_field_value(url) || !net::parse_server_url(url, &err)) {
        errors.push_back(
            fmt::format("{}: not a base URL ({})", at, err.empty() ? "control characters" : err));
        continue;
      }
      out.cities[it.key()] = url;
    }
  }
  if (auto v = r.duration("interval", kMinIntervalMs, kMaxIntervalMs)) out.interval_ms = *v;
  if (auto v = r.duration("timeout", kMinTimeoutMs, kMaxTimeoutMs))
    out.timeout_ms = *v;
  else if (r.get("timeout") == nullptr)
    out.timeout_ms = std::min(out.timeout_ms, out.interval_ms);  // the default fits any interval
  if (out.timeout_ms > out.interval_ms)
    r.error("timeout",
            fmt::format("must not exceed the interval ({} > {})",
                        core::format_duration(std::chrono::milliseconds(out.timeout_ms)),
                        core::format_duration(std::chrono::milliseconds(out.interval_ms))));
  if (const Json* f = r.get("fail_after")) {
    if (!f->is_number_integer() || f->get<int64_t>() < 1 || f->get<int64_t>() > kMaxFailAfter)
      r.error("fail_after", fmt::format("must be an integer 1..{} (consecutive failures), got {}",
                                        kMaxFailAfter, shown(*f)));
    else
      out.fail_after = f->get<int>();
  }
}

}  // namespace

std::vector<std::string> check_probe(const Json& spec, const std::string& prefix) {
  std::vector<std::string> errors;
  ProbeSpec ignored;
  check(spec, prefix, ignored, errors);
  return errors;
}

ProbeSpec parse_probe(const Json& spec) {
  std::vector<std::string> errors;
  ProbeSpec out;
  check(spec, "spec", out, errors);
  if (!errors.empty()) throw std::invalid_argument(errors.front());
  return out;
}

const Json* json_at(const Json& doc, const std::string& path) {
  const Json* at = &doc;
  size_t start = 0;
  while (start <= path.size()) {
    size_t dot = path.find('.', start);
    if (dot == std::string::npos) dot = path.size();
    const std::string key = path.substr(start, dot - start);
    if (at->is_object()) {
      auto it = at->find(key);
      if (it == at->end()) return nullptr;
      at = &*it;
    } else if (at->is_array()) {
      if (key.empty() || key.size() > 9 ||
          !std::all_of(key.begin(), key.end(), [](char c) { return c >= '0' && c <= '9'; }))
        return nullptr;
      const size_t i = std::stoul(key);
      if (i >= at->size()) return nullptr;
      at = &(*at)[i];
    } else {
      return nullptr;
    }
    start = dot + 1;
  }
  return at;
}

}  // namespace sluice::control::probes
