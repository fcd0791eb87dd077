#include "control/api.h"

#include <algorithm>
#include <charconv>
#include <cmath>
#include <ctime>
#include <thread>

#include <fmt/format.h>

#include "control/validate.h"
#include "core/address.h"
#include "core/duration.h"
#include "core/json.h"
#include "core/log.h"
#include "core/random.h"

namespace sluice::control {

using Json = nlohmann::json;

namespace {

constexpr int64_t kMaxListLimit = 1000;
constexpr int64_t kDefaultVersionsLimit = 50;
constexpr int64_t kDefaultEventsLimit = 100;
constexpr uint32_t kMaxWeight = 1000;
constexpr int64_t kMinTtlMs = 100;
constexpr int64_t kMaxTtlMs = 3'600'000;
constexpr int64_t kDefaultTtlMs = 10'000;
constexpr size_t kMaxInstanceId = 256;
constexpr size_t kMaxEventsPerPost = 1000;
constexpr int64_t kMinuteMs = 60'000;
// Snapshots timed this far from the control plane's clock are filed under "now" instead: a
// gateway with a broken clock must not rewrite old rollups or create future ones.
constexpr int64_t kMaxSnapshotAgeMs = 5 * kMinuteMs;
constexpr int64_t kMaxSnapshotAheadMs = kMinuteMs;
// Minute accumulators kept after the minute ends (longer than kMaxSnapshotAgeMs, so a late
// snapshot never starts a fresh accumulator that would overwrite a written rollup).
constexpr int64_t kKeepMinutesMs = 10 * kMinuteMs;

std::string body_of(const Json& j) {
  return j.dump() + "\n";
}

HttpResponse json_response(int status, const Json& j) {
  HttpResponse r;
  r.status = status;
  r.body = body_of(j);
  return r;
}

// `errors` by reference: callers pass errors.front() and the list in one call, and a by-value
// parameter could be moved from before the message is copied (argument order is unspecified).
HttpResponse error_response(int status, const std::string& error,
                            const std::vector<std::string>& errors = {}) {
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

std::string version_string(Revision r) {
  return fmt::format("{}.{}", r.config, r.registry);
}

std::optional<Revision> parse_version_string(std::string_view s) {
  size_t dot = s.find('.');
  if (dot == std::string_view::npos) return std::nullopt;
  Revision r;
  auto a = std::from_chars(s.data(), s.data() + dot, r.config);
  auto b = std::from_chars(s.data() + dot + 1, s.data() + s.size(), r.registry);
  if (a.ec != std::errc() || a.ptr != s.data() + dot || b.ec != std::errc() ||
      b.ptr != s.data() + s.size())
    return std::nullopt;
  return r;
}

std::optional<int64_t> parse_int(std::string_view s) {
  int64_t v = 0;
  auto [p, ec] = std::from_chars(s.data(), s.data() + s.size(), v);
  if (ec != std::errc() || p != s.data() + s.size()) return std::nullopt;
  return v;
}

std::vector<std::string> split_path(std::string_view path) {
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

Json resource_json(const Resource& r) {
  return Json{{"kind", r.kind}, {"name", r.name}, {"spec", r.spec}};
}

Json version_json(const VersionInfo& v) {
  return Json{
      {"number", v.number},         {"author", v.author}, {"created", iso_time(v.created_ms)},
      {"created_ms", v.created_ms}, {"reason", v.reason}, {"diff", v.diff}};
}

Json instance_json(const Instance& i) {
  return Json{{"service", i.service},
              {"id", i.id},
              {"address", i.address},
              {"city", i.city},
              {"zone", i.zone},
              {"weight", i.weight},
              {"ttl_ms", i.ttl_ms},
              {"registered_ms", i.registered_ms},
              {"heartbeat_ms", i.heartbeat_ms},
              {"expires_ms", i.heartbeat_ms + i.ttl_ms}};
}

Json event_json(const Event& e) {
  return Json{{"id", e.id},         {"at_ms", e.at_ms}, {"at", iso_time(e.at_ms)},
              {"source", e.source}, {"kind", e.kind},   {"subject", e.subject},
              {"detail", e.detail}};
}

Json token_json(const TokenRecord& t) {
  return Json{{"id", t.id}, {"name", t.name}, {"role", t.role}, {"created_ms", t.created_ms}};
}

// Reads a JSON request body (core::parse_json: nesting bounded, duplicate keys refused); 400
// with the parser's message otherwise.
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

// C0 controls other than tab, newline and carriage return (and DEL): never meant in a reason,
// a name or an error text, and NUL cannot be stored as text at all (it was a 503 from the store).
bool has_control_chars(std::string_view s) {
  return std::any_of(s.begin(), s.end(), [](char ch) {
    const auto c = static_cast<unsigned char>(ch);
    return (c < 0x20 && c != '\t' && c != '\n' && c != '\r') || c == 0x7f;
  });
}

constexpr const char* kControlCharsError =
    "must not contain control characters (other than tab, newline and carriage return)";

bool is_blank(std::string_view s) {
  return std::all_of(s.begin(), s.end(), [](char c) {
    return c == ' ' || c == '\t' || c == '\r' || c == '\n' || c == '\f' || c == '\v';
  });
}

// Field readers that collect errors ("reason: expected a string") instead of stopping.
class Fields {
 public:
  Fields(const Json& obj, std::string prefix, std::vector<std::string>& errors,
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

  const Json* get(std::string_view key) const {
    if (!obj_.is_object()) return nullptr;
    auto it = obj_.find(key);
    if (it == obj_.end() || it->is_null()) return nullptr;
    return &*it;
  }

  std::optional<std::string> string(std::string_view key, bool required) const {
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

  std::optional<int64_t> integer(std::string_view key, int64_t lo, int64_t hi) const {
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

  std::optional<bool> boolean(std::string_view key) const {
    const Json* v = get(key);
    if (v == nullptr) return std::nullopt;
    if (!v->is_boolean()) {
      errors_.push_back(
          fmt::format("{}{}: expected true or false, got {}", prefix_, key, describe_json(*v)));
      return std::nullopt;
    }
    return v->get<bool>();
  }

  void error(std::string_view key, std::string message) const {
    errors_.push_back(fmt::format("{}{}: {}", prefix_, key, message));
  }

 private:
  const Json& obj_;
  std::string prefix_;
  std::vector<std::string>& errors_;
};

// The fields every config write takes; `reason` is required unless it is a dry run.
void read_write_fields(const Fields& f, ConfigWrite& w) {
  w.dry_run = f.boolean("dry_run").value_or(false);
  if (auto reason = f.string("reason", !w.dry_run)) {
    if (is_blank(*reason) && !w.dry_run) f.error("reason", "must not be empty or only blanks");
    w.reason = *reason;
  }
  w.expected = f.integer("expected_version", 0, INT64_MAX);
}

bool is_instance_id(std::string_view id) {
  if (id.empty() || id.size() > kMaxInstanceId) return false;
  return std::all_of(id.begin(), id.end(), [](char c) {
    return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') || c == '_' ||
           c == '.' || c == '-' || c == ':' || c == '@';
  });
}

bool is_gauge_key(std::string_view key) {
  if (key == "concurrency" || key == "in_flight" || key == "max" || key.ends_with("_max"))
    return true;
  // Quantiles (p50, p99, p999) cannot be added up either.
  return key.size() >= 2 && key[0] == 'p' &&
         std::all_of(key.begin() + 1, key.end(), [](char c) { return c >= '0' && c <= '9'; });
}

// ?name=N with bounds; 400 text in `error` when malformed.
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

}  // namespace

// ---------------------------------------------------------------------------------------------

Json resource_diff(const std::vector<Resource>& before, const std::vector<Resource>& after) {
  using Key = std::pair<std::string, std::string>;
  std::map<Key, const Resource*> a, b;
  for (const Resource& r : before) a[{r.kind, r.name}] = &r;
  for (const Resource& r : after) b[{r.kind, r.name}] = &r;
  std::set<Key> keys;
  for (auto& [k, _] : a) keys.insert(k);
  for (auto& [k, _] : b) keys.insert(k);
  Json out = Json::array();
  for (const Key& k : keys) {
    auto ia = a.find(k);
    auto ib = b.find(k);
    Json d = {{"kind", k.first}, {"name", k.second}};
    if (ia == a.end()) {
      d["op"] = "add";
      d["after"] = ib->second->spec;
    } else if (ib == b.end()) {
      d["op"] = "remove";
      d["before"] = ia->second->spec;
    } else if (ia->second->spec != ib->second->spec) {
      d["op"] = "change";
      d["before"] = ia->second->spec;
      d["after"] = ib->second->spec;
    } else {
      continue;
    }
    out.push_back(std::move(d));
  }
  return out;
}

void merge_stats(Json& acc, const Json& x, std::string_view key) {
  if (x.is_number()) {
    if (!acc.is_number()) {
      acc = x;
    } else if (is_gauge_key(key)) {
      if (x.get<double>() > acc.get<double>()) acc = x;
    } else if (acc.is_number_integer() && x.is_number_integer()) {
      acc = acc.get<int64_t>() + x.get<int64_t>();
    } else {
      acc = acc.get<double>() + x.get<double>();
    }
  } else if (x.is_object()) {
    if (!acc.is_object()) acc = Json::object();
    for (auto it = x.begin(); it != x.end(); ++it) merge_stats(acc[it.key()], it.value(), it.key());
  } else if (x.is_array()) {
    if (!acc.is_array()) acc = Json::array();
    for (size_t i = 0; i < x.size(); ++i) {
      if (i >= acc.size()) acc.push_back(nullptr);
      merge_stats(acc[i], x[i], key);
    }
  } else {
    acc = x;
  }
}

// ---------------------------------------------------------------------------------------------

struct Api::Call {
  const HttpRequest& req;
  std::vector<std::string> params;  // the {} segments of the route, decoded
  Principal who;
  int64_t now = 0;
  Wakeups* wakeups = nullptr;  // long polls to answer after this request's own answer
};

struct Api::Route {
  std::string_view method;                // GET also answers HEAD
  std::vector<std::string_view> pattern;  // "{}" matches one segment
  std::optional<Role> role;               // nullopt: no token needed
  std::function<std::optional<HttpResponse>(Api&, const Call&, Respond&)> run;
};

Api::Api(Store& store, Auth& auth, ApiOptions options, NowMs now_ms)
    : store_(store), auth_(auth), options_(options), now_ms_(std::move(now_ms)) {
  static constexpr std::string_view kClasses[] = {"1xx", "2xx", "3xx", "4xx", "5xx"};
  for (size_t i = 0; i < 5; ++i) {
    responses_[i] =
        &metrics_.counter("sluice_control_http_responses_total", "API responses by status class",
                          {{"class", std::string(kClasses[i])}});
  }
  versions_written_ = &metrics_.counter("sluice_control_config_versions_written_total",
                                        "Config versions committed through this control plane");
  apply_rejected_ =
      &metrics_.counter("sluice_control_writes_rejected_total", "Config writes refused as invalid");
  conflicts_ = &metrics_.counter("sluice_control_write_conflicts_total",
                                 "Config writes that lost a version race");
  write_redos_ = &metrics_.counter(
      "sluice_control_write_redos_total",
      "Config writes redone on a newer version after losing a race (no expected_version)");
  heartbeats_ = &metrics_.counter("sluice_control_heartbeats_total", "Instance heartbeats");
  instances_expired_ = &metrics_.counter("sluice_control_instances_expired_total",
                                         "Instances removed for missing heartbeats");
  polls_answered_ = &metrics_.counter("sluice_control_config_polls_answered_total",
                                      "Gateway config polls answered with a config");
  polls_timed_out_ = &metrics_.counter("sluice_control_config_polls_timed_out_total",
                                       "Gateway config polls answered 304 after waiting");
  snapshots_ = &metrics_.counter("sluice_control_stats_snapshots_total",
                                 "Stats snapshots received from gateways");
  events_received_ =
      &metrics_.counter("sluice_control_events_received_total", "Events received from gateways");
  store_errors_ =
      &metrics_.counter("sluice_control_store_errors_total", "Store operations that failed");
  metrics_.gauge_fn("sluice_control_config_polls_waiting", "Gateway config long polls parked",
                    [this] { return static_cast<double>(waiting_.load()); });
  metrics_.gauge_fn("sluice_control_config_version", "Latest config version known",
                    [this] { return static_cast<double>(config_version_.load()); });
  metrics_.gauge_fn("sluice_control_registry_revision", "Registry revision known",
                    [this] { return static_cast<double>(registry_revision_.load()); });
  metrics_.register_process_metrics();

  try {
    rev_ = store_.revision();
  } catch (const StoreError& e) {
    core::log_warn("control: cannot read the store's revision yet: {}", e.what());
  }
  config_version_ = rev_.config;
  registry_revision_ = rev_.registry;
}

Api::~Api() {
  shutdown();
}

std::string Api::current_version() const {
  std::lock_guard lock(mu_);
  return version_string(rev_);
}

// ------------------------------------------------------------------------------ dispatching

void Api::handle(HttpRequest request, Respond respond) {
  // Count every answer, also those given later by a long poll.
  auto counted = [this, respond = std::move(respond)](HttpResponse r) {
    int cls = std::clamp(r.status / 100, 1, 5);
    responses_[cls - 1]->inc();
    respond(std::move(r));
  };
  Respond wrapped = counted;
  std::optional<HttpResponse> r;
  Wakeups wakeups;
  try {
    r = dispatch(request, wrapped, wakeups);
  } catch (const StoreError& e) {
    store_errors_->inc();
    core::log_warn("control: store: {}", e.what());
    r = error_response(503, std::string("store unavailable: ") + e.what());
  } catch (const Json::exception& e) {
    r = error_response(400, std::string("bad request: ") + e.what());
  } catch (const std::exception& e) {
    core::log_error("control: {} {}: {}", request.method, request.path, e.what());
    r = error_response(500, std::string("internal error: ") + e.what());
  }
  if (r) wrapped(std::move(*r));
  if (wakeups.empty()) return;
  auto answer = [this, wakeups = std::move(wakeups)]() mutable {
    for (Wakeup& w : wakeups) answer_waiters(w.rev, w.waiters);
  };
  // On this thread the answers would run inside the request's strand, and its own answer (posted
  // to that strand) would wait for all of them.
  if (runner_) {
    runner_(std::move(answer));
  } else {
    answer();
  }
}

std::optional<HttpResponse> Api::dispatch(const HttpRequest& req, Respond& respond,
                                          Wakeups& wakeups) {
  using R = std::optional<HttpResponse>;
  static const std::vector<Route> kRoutes = {
      {"GET",
       {"healthz"},
       std::nullopt,
       [](Api&, const Call&, Respond&) -> R {
         return json_response(200, {{"status", "ok"}});
       }},
      {"GET",
       {"ready"},
       std::nullopt,
       [](Api& a, const Call& c, Respond&) -> R { return a.get_ready(c); }},
      {"GET",
       {"metrics"},
       std::nullopt,
       [](Api& a, const Call&, Respond&) -> R {
         HttpResponse r;
         r.content_type = std::string(observability::Registry::kContentType);
         r.body = a.metrics_.expose();
         return r;
       }},
      {"GET",
       {"v1", "resources"},
       Role::kViewer,
       [](Api& a, const Call& c, Respond&) -> R { return a.get_resources(c); }},
      {"GET",
       {"v1", "resources", "{}"},
       Role::kViewer,
       [](Api& a, const Call& c, Respond&) -> R { return a.get_resources(c); }},
      {"GET",
       {"v1", "resources", "{}", "{}"},
       Role::kViewer,
       [](Api& a, const Call& c, Respond&) -> R { return a.get_resource(c); }},
      {"DELETE",
       {"v1", "resources", "{}", "{}"},
       Role::kOperator,
       [](Api& a, const Call& c, Respond&) -> R { return a.delete_resource(c); }},
      {"POST",
       {"v1", "apply"},
       Role::kOperator,
       [](Api& a, const Call& c, Respond&) -> R { return a.post_apply(c); }},
      {"GET",
       {"v1", "versions"},
       Role::kViewer,
       [](Api& a, const Call& c, Respond&) -> R { return a.get_versions(c); }},
      {"GET",
       {"v1", "versions", "{}"},
       Role::kViewer,
       [](Api& a, const Call& c, Respond&) -> R { return a.get_version(c); }},
      {"POST",
       {"v1", "rollback"},
       Role::kOperator,
       [](Api& a, const Call& c, Respond&) -> R { return a.post_rollback(c); }},
      {"POST",
       {"v1", "instances"},
       Role::kOperator,
       [](Api& a, const Call& c, Respond&) -> R { return a.post_instance(c); }},
      {"GET",
       {"v1", "instances"},
       Role::kViewer,
       [](Api& a, const Call& c, Respond&) -> R { return a.get_instances(c); }},
      {"PUT",
       {"v1", "instances", "{}", "{}", "heartbeat"},
       Role::kOperator,
       [](Api& a, const Call& c, Respond&) -> R { return a.put_heartbeat(c); }},
      {"POST",
       {"v1", "instances", "{}", "{}", "heartbeat"},
       Role::kOperator,
       [](Api& a, const Call& c, Respond&) -> R { return a.put_heartbeat(c); }},
      {"DELETE",
       {"v1", "instances", "{}", "{}"},
       Role::kOperator,
       [](Api& a, const Call& c, Respond&) -> R { return a.delete_instance(c); }},
      {"GET",
       {"v1", "gateway-config"},
       Role::kViewer,
       [](Api& a, const Call& c, Respond& r) -> R { return a.get_gateway_config(c, r); }},
      {"GET",
       {"v1", "gateways"},
       Role::kViewer,
       [](Api& a, const Call& c, Respond&) -> R { return a.get_gateways(c); }},
      {"POST",
       {"v1", "gateways", "{}", "status"},
       Role::kOperator,
       [](Api& a, const Call& c, Respond&) -> R { return a.post_gateway_status(c); }},
      {"POST",
       {"v1", "stats"},
       Role::kOperator,
       [](Api& a, const Call& c, Respond&) -> R { return a.post_stats(c); }},
      {"GET",
       {"v1", "stats"},
       Role::kViewer,
       [](Api& a, const Call& c, Respond&) -> R { return a.get_stats(c); }},
      {"POST",
       {"v1", "events"},
       Role::kOperator,
       [](Api& a, const Call& c, Respond&) -> R { return a.post_events(c); }},
      {"GET",
       {"v1", "events"},
       Role::kViewer,
       [](Api& a, const Call& c, Respond&) -> R { return a.get_events(c); }},
      {"GET",
       {"v1", "tokens"},
       Role::kAdmin,
       [](Api& a, const Call& c, Respond&) -> R { return a.get_tokens(c); }},
      {"POST",
       {"v1", "tokens"},
       Role::kAdmin,
       [](Api& a, const Call& c, Respond&) -> R { return a.post_token(c); }},
      {"DELETE",
       {"v1", "tokens", "{}"},
       Role::kAdmin,
       [](Api& a, const Call& c, Respond&) -> R { return a.delete_token(c); }},
  };

  const std::vector<std::string> segments = split_path(req.path);
  const std::string_view method = req.method == "HEAD" ? "GET" : std::string_view(req.method);
  const Route* found = nullptr;
  std::vector<std::string> params;
  std::vector<std::string_view> allowed;
  for (const Route& route : kRoutes) {
    if (route.pattern.size() != segments.size()) continue;
    std::vector<std::string> p;
    bool match = true;
    for (size_t i = 0; i < segments.size() && match; ++i) {
      if (route.pattern[i] == "{}") {
        p.push_back(segments[i]);
      } else {
        match = route.pattern[i] == segments[i];
      }
    }
    if (!match) continue;
    if (route.method != method) {
      allowed.push_back(route.method);
      continue;
    }
    found = &route;
    params = std::move(p);
    break;
  }
  const bool api_path = !segments.empty() && segments[0] == "v1";
  if (found == nullptr) {
    // Authenticate first under /v1, so the API's shape is not shown to anyone.
    if (api_path) {
      AuthResult a = auth_.check(req.authorization, Role::kViewer);
      if (!a.ok()) return error_response(a.status, a.error);
    }
    if (!allowed.empty()) {
      std::string list;
      for (auto m : allowed) list += (list.empty() ? "" : ", ") + std::string(m);
      HttpResponse r =
          error_response(405, fmt::format("method {} not allowed here; use {}", req.method, list));
      r.headers.emplace_back("Allow", list);
      return r;
    }
    return error_response(404, fmt::format("no such path: {}", req.path));
  }
  Call call{req, std::move(params), {}, now_ms_(), &wakeups};
  if (found->role) {
    AuthResult a = auth_.check(req.authorization, *found->role);
    if (!a.ok()) return error_response(a.status, a.error);
    call.who = std::move(a.who);
  }
  return found->run(*this, call, respond);
}

HttpResponse Api::get_ready(const Call& c) {
  try {
    Revision r = store_.revision();
    update_revision(r, c.wakeups);
    return json_response(
        200, {{"status", "ready"}, {"version", version_string(r)}, {"store", store_.location()}});
  } catch (const StoreError& e) {
    store_errors_->inc();
    return json_response(503, {{"status", "store unavailable"}, {"error", e.what()}});
  }
}

// ------------------------------------------------------------------------------ resources

HttpResponse Api::get_resources(const Call& c) {
  std::string kind;
  if (!c.params.empty()) {
    kind = c.params[0];
  } else if (auto k = query_param(c.req.query, "kind")) {
    kind = *k;
  }
  if (!kind.empty() &&
      std::find(kResourceKinds.begin(), kResourceKinds.end(), kind) == kResourceKinds.end())
    return error_response(400, fmt::format("kind: unknown kind '{}' (expected service, route, "
                                           "rate_limit or units)",
                                           kind));
  const int64_t version = store_.latest_version();
  Json list = Json::array();
  if (version > 0) {
    for (const Resource& r : store_.resources(version)) {
      if (kind.empty() || r.kind == kind) list.push_back(resource_json(r));
    }
  }
  return json_response(200, {{"version", version}, {"resources", std::move(list)}});
}

HttpResponse Api::get_resource(const Call& c) {
  const int64_t version = store_.latest_version();
  if (version > 0) {
    for (const Resource& r : store_.resources(version)) {
      if (r.kind == c.params[0] && r.name == c.params[1])
        return json_response(200, resource_json(r));
    }
  }
  return error_response(404, fmt::format("no {} named '{}'", c.params[0], c.params[1]));
}

HttpResponse Api::write_config(const Call& c, const ConfigWrite& w) {
  const int attempts = std::max(1, options_.write_attempts);
  for (int attempt = 0; attempt < attempts; ++attempt) {
    if (attempt > 0) {
      // Lost a race with another control plane: let the winners finish, at a random point so
      // that the losers do not collide again in step.
      write_redos_->inc();
      const int64_t cap = std::min(options_.write_backoff_max_ms,
                                   options_.write_backoff_ms << std::min(attempt - 1, 20));
      const auto pause = static_cast<int64_t>(
          core::thread_rng().uniform(static_cast<uint64_t>(std::max<int64_t>(cap, 0)) + 1));
      if (pause > 0) std::this_thread::sleep_for(std::chrono::milliseconds(pause));
    }
    std::lock_guard write_lock(write_mu_);
    const int64_t base = store_.latest_version();
    if (w.expected && *w.expected != base) {
      conflicts_->inc();
      return json_response(409, {{"error", fmt::format("version conflict: expected version {}, "
                                                       "the latest is {}; read it and retry",
                                                       *w.expected, base)},
                                 {"version", base}});
    }
    const std::vector<Resource> current =
        base > 0 ? store_.resources(base) : std::vector<Resource>{};
    std::optional<std::vector<Resource>> next = w.make_next(current);
    if (!next) return error_response(404, w.missing);
    Json diff = resource_diff(current, *next);
    std::vector<std::string> errors = validate_resources(*next);
    if (!errors.empty()) {
      apply_rejected_->inc();
      return error_response(
          400,
          fmt::format("invalid config: {} error{}; nothing was {}", errors.size(),
                      errors.size() == 1 ? "" : "s", w.dry_run ? "checked further" : "applied"),
          std::move(errors));
    }
    if (w.dry_run)
      return json_response(200, {{"version", base}, {"diff", std::move(diff)}, {"dry_run", true}});
    if (diff.empty())
      return json_response(200,
                           {{"version", base}, {"diff", std::move(diff)}, {"unchanged", true}});
    const int64_t now = now_ms_();
    int64_t v = store_.commit(*next, w.author, w.reason, diff, base, now);
    if (v == 0) {
      // Another control plane (or thread) committed first. Without an expected version the
      // caller asked for "this change on top of whatever is there": redo it on the new base.
      conflicts_->inc();
      if (w.expected) {
        int64_t latest = store_.latest_version();
        return json_response(409, {{"error", fmt::format("version conflict: version {} was "
                                                         "written meanwhile; read it and retry",
                                                         latest)},
                                   {"version", latest}});
      }
      continue;
    }
    versions_written_->inc();
    core::log_info("control: version {} by {}: {} ({} change{})", v, w.author, w.reason,
                   diff.size(), diff.size() == 1 ? "" : "s");
    refresh_revision(c.wakeups);
    return json_response(200, {{"version", v}, {"diff", std::move(diff)}});
  }
  core::log_warn("control: write by {} gave up after {} lost races with other control planes",
                 w.author, attempts);
  return json_response(
      409, {{"error", fmt::format("version conflict: lost the race with other writers {} times "
                                  "in a row; nothing was applied, retry",
                                  attempts)},
            {"version", store_.latest_version()}});
}

HttpResponse Api::post_apply(const Call& c) {
  HttpResponse bad;
  auto body = parse_body(c.req.body, bad);
  if (!body) return bad;
  std::vector<std::string> errors;
  Fields f(*body, "", errors, {"resources", "reason", "expected_version", "dry_run"});
  ConfigWrite w;
  w.author = c.who.name;
  read_write_fields(f, w);
  std::vector<Resource> incoming;
  const Json* list = f.get("resources");
  if (body->is_object() && list == nullptr) {
    f.error("resources", "required (a list of {kind, name, spec})");
  } else if (list != nullptr && !list->is_array()) {
    f.error("resources", "expected a list, got " + describe_json(*list));
  } else if (list != nullptr) {
    if (list->empty()) f.error("resources", "must not be empty");
    std::set<std::pair<std::string, std::string>> seen;
    for (size_t i = 0; i < list->size(); ++i) {
      const Json& item = (*list)[i];
      const std::string prefix = fmt::format("resources[{}].", i);
      Fields rf(item, prefix, errors, {"kind", "name", "spec"});
      if (!item.is_object()) continue;
      auto kind = rf.string("kind", true);
      if (kind &&
          std::find(kResourceKinds.begin(), kResourceKinds.end(), *kind) == kResourceKinds.end()) {
        rf.error("kind", fmt::format("unknown kind '{}' (expected service, route, rate_limit or "
                                     "units)",
                                     *kind));
        kind.reset();
      }
      // `units` has one resource; its name may be left out.
      auto name = rf.string("name", !(kind && *kind == "units"));
      if (kind && *kind == "units" && !name) name = "units";
      Json spec = item.contains("spec") ? item["spec"] : Json(nullptr);
      if (!spec.is_null() && !spec.is_object()) {
        rf.error("spec", "expected an object, got " + describe_json(spec));
        continue;
      }
      if (!kind || !name) continue;
      if (!seen.emplace(*kind, *name).second) {
        errors.push_back(fmt::format("resources[{}]: {}/{} is given twice", i, *kind, *name));
        continue;
      }
      incoming.push_back(Resource{*kind, *name, spec.is_null() ? Json::object() : spec});
    }
  }
  if (!errors.empty()) {
    return error_response(400,
                          fmt::format("malformed request: {} error{}; nothing was applied",
                                      errors.size(), errors.size() == 1 ? "" : "s"),
                          std::move(errors));
  }
  w.make_next = [&incoming](const std::vector<Resource>& current) {
    std::vector<Resource> next = current;
    for (const Resource& r : incoming) {
      auto it = std::find_if(next.begin(), next.end(), [&](const Resource& x) {
        return x.kind == r.kind && x.name == r.name;
      });
      if (it != next.end()) {
        it->spec = r.spec;
      } else {
        next.push_back(r);
      }
    }
    return std::optional(std::move(next));
  };
  return write_config(c, w);
}

HttpResponse Api::delete_resource(const Call& c) {
  std::vector<std::string> errors;
  ConfigWrite w;
  w.author = c.who.name;
  w.reason = query_param(c.req.query, "reason").value_or("");
  if (auto e = query_param(c.req.query, "expected_version")) {
    auto n = parse_int(*e);
    if (!n || *n < 0) {
      errors.push_back(fmt::format("expected_version: expected an integer, got '{}'", *e));
    } else {
      w.expected = n;
    }
  }
  if (auto d = query_param(c.req.query, "dry_run")) {
    if (*d == "true" || *d == "1" || d->empty()) {
      w.dry_run = true;
    } else if (*d != "false" && *d != "0") {
      errors.push_back(fmt::format("dry_run: expected true or false, got '{}'", *d));
    }
  }
  if (w.reason.empty() && !w.dry_run) {
    errors.push_back("reason: required (?reason=...)");
  } else if (is_blank(w.reason) && !w.dry_run) {
    errors.push_back("reason: must not be empty or only blanks");
  } else if (has_control_chars(w.reason)) {
    errors.push_back(std::string("reason: ") + kControlCharsError);
  }
  if (!errors.empty()) return error_response(400, errors.front(), std::move(errors));
  const std::string kind = c.params[0];
  const std::string name = c.params[1];
  w.missing = fmt::format("no {} named '{}'", kind, name);
  w.make_next = [&](const std::vector<Resource>& current) -> std::optional<std::vector<Resource>> {
    std::vector<Resource> next;
    bool found = false;
    for (const Resource& r : current) {
      if (r.kind == kind && r.name == name) {
        found = true;
      } else {
        next.push_back(r);
      }
    }
    if (!found) return std::nullopt;
    return next;
  };
  return write_config(c, w);
}

HttpResponse Api::get_versions(const Call& c) {
  std::vector<std::string> errors;
  auto limit = int_param(c.req, "limit", kDefaultVersionsLimit, 1, kMaxListLimit, errors);
  auto before = int_param(c.req, "before", 0, 0, INT64_MAX, errors);
  if (!errors.empty()) return error_response(400, errors.front(), std::move(errors));
  Json out = Json::array();
  for (const VersionInfo& v : store_.versions(*limit, *before)) out.push_back(version_json(v));
  return json_response(200, out);
}

HttpResponse Api::get_version(const Call& c) {
  auto n = parse_int(c.params[0]);
  if (!n || *n <= 0)
    return error_response(400, fmt::format("version: expected a positive "
                                           "integer, got '{}'",
                                           c.params[0]));
  auto v = store_.version(*n);
  if (!v) return error_response(404, fmt::format("no version {}", *n));
  Json out = version_json(*v);
  Json list = Json::array();
  for (const Resource& r : store_.resources(*n)) list.push_back(resource_json(r));
  out["resources"] = std::move(list);
  return json_response(200, out);
}

HttpResponse Api::post_rollback(const Call& c) {
  HttpResponse bad;
  auto body = parse_body(c.req.body, bad);
  if (!body) return bad;
  std::vector<std::string> errors;
  Fields f(*body, "", errors, {"version", "reason", "expected_version", "dry_run"});
  ConfigWrite w;
  w.author = c.who.name;
  read_write_fields(f, w);
  auto target = f.integer("version", 1, INT64_MAX);
  if (body->is_object() && f.get("version") == nullptr) f.error("version", "required");
  if (!errors.empty()) return error_response(400, errors.front(), std::move(errors));
  if (!store_.version(*target)) return error_response(404, fmt::format("no version {}", *target));
  std::vector<Resource> old = store_.resources(*target);
  w.make_next = [&old](const std::vector<Resource>&) { return std::optional(old); };
  HttpResponse r = write_config(c, w);
  if (r.status == 200 && !w.dry_run) {
    Json j = Json::parse(r.body);
    j["rolled_back_to"] = *target;
    r.body = body_of(j);
  }
  return r;
}

// ------------------------------------------------------------------------------ registry

HttpResponse Api::post_instance(const Call& c) {
  HttpResponse bad;
  auto body = parse_body(c.req.body, bad);
  if (!body) return bad;
  std::vector<std::string> errors;
  Fields f(*body, "", errors, {"service", "id", "address", "city", "zone", "weight", "ttl_ms"});
  Instance i;
  if (auto s = f.string("service", true)) {
    if (!is_valid_name(*s)) {
      f.error("service", "must be 1..128 characters of letters, digits, '_', '.' and '-'");
    }
    i.service = *s;
  }
  if (auto s = f.string("id", true)) {
    if (!is_instance_id(*s))
      f.error("id", "must be 1..256 characters of letters, digits, '_', '.', '-', ':' and '@'");
    i.id = *s;
  }
  if (auto s = f.string("address", true)) {
    if (!core::parse_host_port(*s))
      f.error("address", fmt::format("expected host:port with a port 1..65535, got '{}'", *s));
    i.address = *s;
  }
  for (auto [key, out] : {std::pair{"city", &i.city}, std::pair{"zone", &i.zone}}) {
    if (auto s = f.string(key, false)) {
      if (!s->empty() && !is_valid_name(*s))
        f.error(key, "must be letters, digits, '_', '.' and '-'");
      *out = *s;
    }
  }
  i.weight = static_cast<uint32_t>(f.integer("weight", 1, kMaxWeight).value_or(1));
  i.ttl_ms = f.integer("ttl_ms", kMinTtlMs, kMaxTtlMs).value_or(kDefaultTtlMs);
  if (!errors.empty()) {
    return error_response(
        400,
        fmt::format("invalid instance: {} error{}", errors.size(), errors.size() == 1 ? "" : "s"),
        std::move(errors));
  }
  i.registered_ms = c.now;
  i.heartbeat_ms = c.now;
  store_.upsert_instance(i);
  refresh_revision(c.wakeups);
  return json_response(200, instance_json(i));
}

HttpResponse Api::put_heartbeat(const Call& c) {
  heartbeats_->inc();
  if (!store_.heartbeat(c.params[0], c.params[1], c.now))
    return error_response(
        404, fmt::format("unknown instance {}/{}: register again", c.params[0], c.params[1]));
  return json_response(200,
                       {{"service", c.params[0]}, {"id", c.params[1]}, {"heartbeat_ms", c.now}});
}

HttpResponse Api::delete_instance(const Call& c) {
  if (!store_.remove_instance(c.params[0], c.params[1]))
    return error_response(404, fmt::format("unknown instance {}/{}", c.params[0], c.params[1]));
  refresh_revision(c.wakeups);
  return json_response(200, {{"service", c.params[0]}, {"id", c.params[1]}, {"removed", true}});
}

HttpResponse Api::get_instances(const Call& c) {
  std::string service = query_param(c.req.query, "service").value_or("");
  Json out = Json::array();
  for (const Instance& i : store_.instances(service)) out.push_back(instance_json(i));
  return json_response(200, out);
}

// ------------------------------------------------------------------------------ gateways

std::optional<HttpResponse> Api::get_gateway_config(const Call& c, Respond& respond) {
  const std::string gateway = query_param(c.req.query, "gateway").value_or("");
  const std::string after = query_param(c.req.query, "after").value_or("");
  std::vector<std::string> errors;
  if (!gateway.empty() && !is_valid_name(gateway))
    errors.push_back("gateway: must be letters, digits, '_', '.' and '-'");
  int64_t wait_ms = options_.default_wait_ms;
  if (auto w = query_param(c.req.query, "wait")) {
    if (auto d = core::parse_duration(*w)) {
      wait_ms = std::chrono::duration_cast<std::chrono::milliseconds>(*d).count();
    } else if (auto n = parse_int(*w); n && *n >= 0) {
      wait_ms = std::min(*n, options_.max_wait_ms / 1000 + 1) * 1000;  // plain seconds
    } else {
      errors.push_back(fmt::format("wait: expected a duration such as 30s, got '{}'", *w));
    }
  }
  if (!errors.empty()) return error_response(400, errors.front(), std::move(errors));
  wait_ms = std::clamp<int64_t>(wait_ms, 0, options_.max_wait_ms);
  if (!gateway.empty()) {
    note_gateway(gateway, query_param(c.req.query, "city").value_or(""),
                 query_param(c.req.query, "zone").value_or(""), c.now);
  }

  // A gateway ahead of us saw a write through another control plane that our poll has not
  // picked up yet: catch up now rather than hand it an older config.
  if (auto seen = parse_version_string(after)) {
    Revision mine;
    {
      std::lock_guard lock(mu_);
      mine = rev_;
    }
    if (seen->config > mine.config || seen->registry > mine.registry) refresh_revision(c.wakeups);
  }

  Revision rev;
  {
    std::lock_guard lock(mu_);
    rev = rev_;
    if (shut_down_) return error_response(503, "control plane shutting down; poll another one");
    if (version_string(rev) == after) {
      if (wait_ms == 0) {
        polls_timed_out_->inc();
        HttpResponse r;
        r.status = 304;
        r.headers.emplace_back("X-Sluice-Version", after);
        return r;
      }
      waiters_.push_back(Waiter{std::move(respond), after, c.now + wait_ms});
      waiting_ = waiters_.size();
      return std::nullopt;
    }
  }
  auto body = config_body(rev);
  polls_answered_->inc();
  HttpResponse r;
  r.shared_body = std::move(body);
  r.headers.emplace_back("X-Sluice-Version", version_string(rev));
  return r;
}

std::shared_ptr<const std::string> Api::config_body(Revision r) {
  {
    std::lock_guard lock(mu_);
    if (body_ && body_rev_ == r) return body_;
  }
  // Built once per revision and shared by every watcher.
  std::vector<Resource> resources =
      r.config > 0 ? store_.resources(r.config) : std::vector<Resource>{};
  std::vector<Instance> instances = store_.instances();
  nlohmann::ordered_json j = nlohmann::ordered_json::object();
  j["version"] = version_string(r);
  j["config_version"] = r.config;
  j["registry_revision"] = r.registry;
  j["config"] = gateway_sections(resources, instances);
  auto body = std::make_shared<const std::string>(j.dump() + "\n");
  std::lock_guard lock(mu_);
  if (body_rev_.config <= r.config && body_rev_.registry <= r.registry) {
    body_ = body;
    body_rev_ = r;
  }
  return body;
}

void Api::refresh_revision(Wakeups* defer) {
  update_revision(store_.revision(), defer);
}

void Api::update_revision(Revision r, Wakeups* defer) {
  std::vector<Waiter> wake;
  Revision now_rev;
  {
    std::lock_guard lock(mu_);
    // Both parts only grow; a read that raced with a newer one must not move us back.
    Revision merged{std::max(rev_.config, r.config), std::max(rev_.registry, r.registry)};
    if (merged == rev_) return;
    rev_ = merged;
    now_rev = merged;
    config_version_ = merged.config;
    registry_revision_ = merged.registry;
    const std::string v = version_string(merged);
    auto keep = std::partition(waiters_.begin(), waiters_.end(),
                               [&v](const Waiter& w) { return w.after == v; });
    std::move(keep, waiters_.end(), std::back_inserter(wake));
    waiters_.erase(keep, waiters_.end());
    waiting_ = waiters_.size();
  }
  if (wake.empty()) return;
  if (defer != nullptr) {
    defer->push_back(Wakeup{now_rev, std::move(wake)});
    return;
  }
  answer_waiters(now_rev, wake);
}

void Api::answer_waiters(Revision rev, std::vector<Waiter>& waiters) {
  if (waiters.empty()) return;
  // A later revision may have been learned meanwhile (a deferred wake-up): answer with the
  // newest, which every one of these waiters has not seen either.
  {
    std::lock_guard lock(mu_);
    rev = Revision{std::max(rev.config, rev_.config), std::max(rev.registry, rev_.registry)};
  }
  std::shared_ptr<const std::string> body;
  try {
    body = config_body(rev);
  } catch (const StoreError& e) {
    store_errors_->inc();
    for (Waiter& w : waiters)
      w.respond(error_response(503, std::string("store unavailable: ") + e.what()));
    return;
  }
  const std::string version = version_string(rev);
  for (Waiter& w : waiters) {
    polls_answered_->inc();
    HttpResponse resp;
    resp.shared_body = body;  // one text for every waiter
    resp.headers.emplace_back("X-Sluice-Version", version);
    w.respond(std::move(resp));
  }
}

void Api::note_gateway(const std::string& id, const std::string& city, const std::string& zone,
                       int64_t now) {
  bool known = false;
  {
    std::lock_guard lock(mu_);
    GatewaySeen& g = gateways_[id];
    if (!city.empty()) g.city = city;
    if (!zone.empty()) g.zone = zone;
    g.seen_ms = std::max(g.seen_ms, now);
    known = stored_gateways_.count(id) > 0;
  }
  if (known) return;
  // First contact (from this control plane's point of view): make sure the store lists it.
  std::vector<GatewayRecord> all = store_.gateways();
  bool present = false;
  {
    std::lock_guard lock(mu_);
    for (const GatewayRecord& g : all) {
      stored_gateways_.insert(g.id);
      present = present || g.id == id;
    }
  }
  if (present) return;
  GatewayRecord rec;
  rec.id = id;
  rec.city = city;
  rec.zone = zone;
  rec.status = "connected";
  rec.seen_ms = now;
  store_.upsert_gateway(rec);
  std::lock_guard lock(mu_);
  stored_gateways_.insert(id);
}

HttpResponse Api::post_gateway_status(const Call& c) {
  const std::string& id = c.params[0];
  if (!is_valid_name(id))
    return error_response(400, "gateway id: must be letters, digits, '_', '.' and '-'");
  HttpResponse bad;
  auto body = parse_body(c.req.body, bad);
  if (!body) return bad;
  std::vector<std::string> errors;
  Fields f(*body, "", errors, {"city", "zone", "applied_version", "status", "error"});
  GatewayRecord rec;
  rec.id = id;
  rec.city = f.string("city", false).value_or("");
  rec.zone = f.string("zone", false).value_or("");
  rec.error = f.string("error", false).value_or("");
  std::string applied;
  if (const Json* v = f.get("applied_version")) {
    if (v->is_string()) {
      applied = v->get<std::string>();
      auto parsed = parse_version_string(applied);
      auto plain = parse_int(applied);
      if (parsed) {
        rec.applied_version = parsed->config;
      } else if (plain && *plain >= 0) {
        rec.applied_version = *plain;
      } else {
        f.error("applied_version", fmt::format("expected \"N.R\" or N, got '{}'", applied));
      }
    } else if (v->is_number_integer() && v->get<int64_t>() >= 0) {
      rec.applied_version = v->get<int64_t>();
      applied = std::to_string(rec.applied_version);
    } else {
      f.error("applied_version", "expected \"N.R\" or N, got " + describe_json(*v));
    }
  }
  if (auto s = f.string("status", true)) {
    // draining and exited: the gateway is leaving (it says so on its way out); they replace the
    // config status it reported before.
    if (*s != "applied" && *s != "refused" && *s != "draining" && *s != "exited") {
      f.error("status", fmt::format("expected applied, refused, draining or exited, got '{}'", *s));
    }
    rec.status = *s;
  }
  if (!errors.empty()) return error_response(400, errors.front(), std::move(errors));
  rec.seen_ms = c.now;
  {
    std::lock_guard lock(mu_);
    GatewaySeen& g = gateways_[id];
    if (rec.city.empty()) rec.city = g.city;
    if (rec.zone.empty()) rec.zone = g.zone;
    g.city = rec.city;
    g.zone = rec.zone;
    g.seen_ms = std::max(g.seen_ms, c.now);
    g.applied = applied;
  }
  if (rec.city.empty() || rec.zone.empty()) {
    for (const GatewayRecord& old : store_.gateways()) {
      if (old.id != id) continue;
      if (rec.city.empty()) rec.city = old.city;
      if (rec.zone.empty()) rec.zone = old.zone;
    }
  }
  store_.upsert_gateway(rec);
  {
    std::lock_guard lock(mu_);
    stored_gateways_.insert(id);
  }
  if (rec.status == "refused") {
    Event e;
    e.at_ms = c.now;
    e.source = id;
    e.kind = "config_refused";
    e.subject = applied.empty() ? "config" : "version " + applied;
    e.detail = {{"error", rec.error}};
    store_.append_event(e);
    core::log_warn("control: gateway {} refused config {}: {}", id, applied, rec.error);
  }
  return json_response(
      200, {{"id", id}, {"status", rec.status}, {"applied_version", rec.applied_version}});
}

HttpResponse Api::get_gateways(const Call& c) {
  const int64_t latest = store_.latest_version();
  const std::vector<GatewayRecord> stored = store_.gateways();
  Json out = Json::array();
  std::lock_guard lock(mu_);
  for (const GatewayRecord& g : stored) {
    int64_t seen = g.seen_ms;
    std::string applied;
    auto it = gateways_.find(g.id);
    if (it != gateways_.end()) {
      seen = std::max(seen, it->second.seen_ms);
      applied = it->second.applied;
    }
    std::string health = "ok";
    int64_t local_version = -1, units_version = -1;
    if (it != gateways_.end()) {
      local_version = it->second.local_version;
      units_version = it->second.units_version;
    }
    if (g.status == "exited" && seen <= g.seen_ms) {
      // Said so on its way out; heard from since (a poll or a snapshot) means it is back.
      health = "exited";
    } else if (c.now - seen > options_.gateway_stale_ms) {
      health = "stale";
    } else if (g.status == "draining") {
      health = "draining";
    } else if (g.status == "exited") {
      health = "pending";  // a new process that has not reported a config yet
    } else if (g.status == "refused") {
      health = "refused";
    } else if (g.status != "applied") {
      health = "pending";
    } else if (g.applied_version < latest) {
      health = "behind";
    }
    Json j = {{"id", g.id},         {"city", g.city},
              {"zone", g.zone},     {"applied_version", g.applied_version},
              {"status", g.status}, {"error", g.error},
              {"seen_ms", seen},    {"seen", iso_time(seen)},
              {"health", health}};
    if (!applied.empty()) j["applied"] = applied;
    // The four version numbers under the names the gateway's /ready and /stats use
    // (docs/operations.md, "Version numbers").
    j["config_version"] = g.applied_version;
    if (!applied.empty()) j["control_plane_version"] = applied;
    if (local_version >= 0) j["local_version"] = local_version;
    if (units_version >= 0) j["units_version"] = units_version;
    out.push_back(std::move(j));
  }
  return json_response(200, out);
}

// ------------------------------------------------------------------------------ stats, events

HttpResponse Api::post_stats(const Call& c) {
  HttpResponse bad;
  auto body = parse_body(c.req.body, bad);
  if (!body) return bad;
  std::vector<std::string> errors;
  if (!body->is_object()) return error_response(400, "expected a JSON object");
  // Other keys are kept: gateways may report more than this build knows about.
  std::string gateway;
  auto g = body->find("gateway");
  if (g == body->end() || !g->is_string() || !is_valid_name(g->get<std::string>())) {
    errors.push_back("gateway: required, letters, digits, '_', '.' and '-'");
  } else {
    gateway = g->get<std::string>();
  }
  int64_t at = c.now;
  if (auto a = body->find("at_ms"); a != body->end()) {
    if (!a->is_number_integer()) {
      errors.push_back("at_ms: expected an integer (milliseconds since the epoch)");
    } else if (int64_t t = a->get<int64_t>();
               t >= c.now - kMaxSnapshotAgeMs && t <= c.now + kMaxSnapshotAheadMs) {
      at = t;
    }
  }
  for (const char* section : {"routes", "services", "endpoints", "cities"}) {
    auto s = body->find(section);
    if (s != body->end() && !s->is_object() && !s->is_null())
      errors.push_back(fmt::format("{}: expected an object, got {}", section, describe_json(*s)));
  }
  if (!errors.empty()) return error_response(400, errors.front(), std::move(errors));
  snapshots_->inc();
  Json data = *body;
  data["at_ms"] = at;
  Json sections = Json::object();
  // `versions` are states, not counters: kept for GET /v1/gateways, not added up in rollups.
  int64_t local_version = -1, units_version = -1;
  if (auto v = body->find("versions"); v != body->end() && v->is_object()) {
    auto number = [&](const char* key) -> int64_t {
      auto n = v->find(key);
      return n != v->end() && n->is_number_integer() && n->get<int64_t>() >= 0 ? n->get<int64_t>()
                                                                               : -1;
    };
    local_version = number("local_version");
    units_version = number("units_version");
  }
  for (auto it = body->begin(); it != body->end(); ++it) {
    if (it.key() != "gateway" && it.key() != "at_ms" && it.key() != "versions")
      sections[it.key()] = it.value();
  }
  std::lock_guard lock(mu_);
  auto& recent = recent_[gateway];
  recent.push_back(Snapshot{at, std::move(data)});
  while (recent.size() > options_.max_recent_per_gateway ||
         (!recent.empty() && recent.front().at_ms < c.now - options_.recent_stats_ms))
    recent.pop_front();
  Accumulator& acc = minutes_[{at - at % kMinuteMs, gateway}];
  merge_stats(acc.data, sections);
  acc.data["snapshots"] = acc.data.value("snapshots", int64_t{0}) + 1;
  acc.dirty = true;
  GatewaySeen& seen = gateways_[gateway];
  seen.seen_ms = std::max(seen.seen_ms, c.now);
  if (local_version >= 0) seen.local_version = local_version;
  if (units_version >= 0) seen.units_version = units_version;
  return json_response(200, {{"gateway", gateway}, {"at_ms", at}});
}

HttpResponse Api::get_stats(const Call& c) {
  std::vector<std::string> errors;
  const std::string gateway = query_param(c.req.query, "gateway").value_or("");
  auto from = int_param(c.req, "from", c.now - 3'600'000, 0, INT64_MAX, errors);
  auto to = int_param(c.req, "to", c.now + 1, 0, INT64_MAX, errors);
  if (!errors.empty()) return error_response(400, errors.front(), std::move(errors));
  Json recent = Json::array();
  {
    std::lock_guard lock(mu_);
    for (const auto& [gw, list] : recent_) {
      if (!gateway.empty() && gw != gateway) continue;
      for (const Snapshot& s : list) {
        if (s.at_ms >= *from && s.at_ms < *to) recent.push_back(s.data);
      }
    }
  }
  std::stable_sort(recent.begin(), recent.end(), [](const Json& a, const Json& b) {
    return a["at_ms"].get<int64_t>() < b["at_ms"].get<int64_t>();
  });
  Json rollups = Json::array();
  for (const Rollup& r : store_.rollup_rows(*from, *to, gateway)) {
    rollups.push_back({{"minute_ms", r.minute_ms}, {"gateway", r.gateway}, {"data", r.data}});
  }
  return json_response(200, {{"recent", std::move(recent)}, {"rollups", std::move(rollups)}});
}

HttpResponse Api::post_events(const Call& c) {
  HttpResponse bad;
  auto body = parse_body(c.req.body, bad);
  if (!body) return bad;
  Json list = body->is_array() ? *body : Json::array({*body});
  std::vector<std::string> errors;
  if (list.size() > kMaxEventsPerPost)
    return error_response(400, fmt::format("at most {} events per request", kMaxEventsPerPost));
  const std::string source = query_param(c.req.query, "gateway").value_or(c.who.name);
  std::vector<Event> events;
  for (size_t i = 0; i < list.size(); ++i) {
    Fields f(list[i], fmt::format("[{}].", i), errors,
             {"kind", "subject", "detail", "at_ms", "source"});
    if (!list[i].is_object()) continue;
    Event e;
    e.kind = f.string("kind", true).value_or("");
    if (e.kind.empty() && f.get("kind") != nullptr && f.get("kind")->is_string())
      f.error("kind", "must not be empty");
    e.subject = f.string("subject", false).value_or("");
    e.source = f.string("source", false).value_or(source);
    e.at_ms = f.integer("at_ms", 0, INT64_MAX).value_or(c.now);
    if (const Json* d = f.get("detail")) e.detail = *d;
    events.push_back(std::move(e));
  }
  if (!errors.empty()) return error_response(400, errors.front(), std::move(errors));
  Json ids = Json::array();
  for (const Event& e : events) ids.push_back(store_.append_event(e));
  events_received_->inc(events.size());
  return json_response(200, {{"ids", std::move(ids)}});
}

HttpResponse Api::get_events(const Call& c) {
  std::vector<std::string> errors;
  auto after = int_param(c.req, "after", 0, 0, INT64_MAX, errors);
  auto limit = int_param(c.req, "limit", kDefaultEventsLimit, 1, kMaxListLimit, errors);
  if (!errors.empty()) return error_response(400, errors.front(), std::move(errors));
  Json out = Json::array();
  for (const Event& e : store_.events(*after, *limit)) out.push_back(event_json(e));
  return json_response(200, out);
}

// ------------------------------------------------------------------------------ tokens

HttpResponse Api::get_tokens(const Call&) {
  Json out = Json::array();
  for (const TokenRecord& t : store_.tokens()) out.push_back(token_json(t));
  return json_response(200, out);
}

HttpResponse Api::post_token(const Call& c) {
  HttpResponse bad;
  auto body = parse_body(c.req.body, bad);
  if (!body) return bad;
  std::vector<std::string> errors;
  Fields f(*body, "", errors, {"name", "role"});
  auto name = f.string("name", true);
  if (name && !is_valid_name(*name)) f.error("name", "must be letters, digits, '_', '.' and '-'");
  std::optional<Role> role;
  if (auto r = f.string("role", true)) {
    role = parse_role(*r);
    if (!role) f.error("role", fmt::format("expected viewer, operator or admin, got '{}'", *r));
  }
  if (!errors.empty()) return error_response(400, errors.front(), std::move(errors));
  IssuedToken t = auth_.issue(*name, *role);
  Json j = token_json(t.record);
  j["token"] = t.token;
  core::log_info("control: token {} ({}, {}) issued by {}", t.record.id, *name, role_name(*role),
                 c.who.name);
  return json_response(201, j);
}

HttpResponse Api::delete_token(const Call& c) {
  if (c.params[0] == c.who.token_id)
    return error_response(400, "a token cannot revoke itself; use another admin token");
  if (!auth_.revoke(c.params[0]))
    return error_response(404, fmt::format("no token {}", c.params[0]));
  return json_response(200, {{"id", c.params[0]}, {"removed", true}});
}

// ------------------------------------------------------------------------------ periodic work

void Api::tick() {
  const int64_t now = now_ms_();
  auto guarded = [this](const char* what, auto&& fn) {
    try {
      fn();
    } catch (const std::exception& e) {
      store_errors_->inc();
      core::log_warn("control: {}: {}", what, e.what());
    }
  };
  if (now >= next_sweep_ms_) {
    next_sweep_ms_ = now + options_.sweep_interval_ms;
    guarded("registry sweep", [&] { sweep(now); });
  }
  if (now >= next_poll_ms_) {
    next_poll_ms_ = now + options_.revision_poll_ms;
    guarded("revision poll", [&] { refresh_revision(); });
  }
  std::vector<Waiter> expired;
  std::string version;
  {
    std::lock_guard lock(mu_);
    version = version_string(rev_);
    auto keep = std::partition(waiters_.begin(), waiters_.end(),
                               [now](const Waiter& w) { return w.deadline_ms > now; });
    std::move(keep, waiters_.end(), std::back_inserter(expired));
    waiters_.erase(keep, waiters_.end());
    waiting_ = waiters_.size();
  }
  for (Waiter& w : expired) {
    polls_timed_out_->inc();
    HttpResponse r;
    r.status = 304;
    r.headers.emplace_back("X-Sluice-Version", w.after);
    w.respond(std::move(r));
  }
  guarded("stats rollups", [&] { flush_rollups(now, false); });
  if (now >= next_prune_ms_) {
    next_prune_ms_ = now + options_.prune_interval_ms;
    guarded("retention", [&] { prune(now); });
  }
}

void Api::sweep(int64_t now) {
  std::vector<Instance> gone = store_.expire_instances(now);
  if (gone.empty()) return;
  instances_expired_->inc(gone.size());
  for (const Instance& i : gone) {
    core::log_info("control: instance {}/{} ({}) expired: no heartbeat for {} ms", i.service, i.id,
                   i.address, now - i.heartbeat_ms);
    Event e;
    e.at_ms = now;
    e.source = "control";
    e.kind = "instance_expired";
    e.subject = i.service + "/" + i.id;
    e.detail = {{"address", i.address}, {"heartbeat_ms", i.heartbeat_ms}, {"ttl_ms", i.ttl_ms}};
    store_.append_event(e);
  }
  refresh_revision();
}

void Api::flush_rollups(int64_t now, bool all) {
  struct Pending {
    int64_t minute;
    std::string gateway;
    Json data;
  };
  std::vector<Pending> out;
  {
    std::lock_guard lock(mu_);
    for (auto it = minutes_.begin(); it != minutes_.end();) {
      const int64_t end = it->first.first + kMinuteMs;
      if (it->second.dirty && (all || now >= end + options_.rollup_grace_ms)) {
        out.push_back({it->first.first, it->first.second, it->second.data});
        it->second.dirty = false;
      }
      if (!it->second.dirty && now >= end + kKeepMinutesMs) {
        it = minutes_.erase(it);
      } else {
        ++it;
      }
    }
  }
  for (size_t i = 0; i < out.size(); ++i) {
    try {
      store_.put_rollup(out[i].minute, out[i].gateway, out[i].data);
    } catch (...) {
      // Written on a later tick.
      std::lock_guard lock(mu_);
      for (size_t j = i; j < out.size(); ++j) {
        auto it = minutes_.find({out[j].minute, out[j].gateway});
        if (it != minutes_.end()) it->second.dirty = true;
      }
      throw;
    }
  }
}

void Api::prune(int64_t now) {
  store_.prune_rollups(now - options_.stats_retention_ms);
  store_.prune_events(now - options_.events_retention_ms);
  std::lock_guard lock(mu_);
  for (auto it = recent_.begin(); it != recent_.end();) {
    auto& list = it->second;
    while (!list.empty() && list.front().at_ms < now - options_.recent_stats_ms) list.pop_front();
    it = list.empty() ? recent_.erase(it) : std::next(it);
  }
}

void Api::shutdown() {
  std::vector<Waiter> all;
  {
    std::lock_guard lock(mu_);
    if (shut_down_) return;
    shut_down_ = true;
    all.swap(waiters_);
    waiting_ = 0;
  }
  for (Waiter& w : all)
    w.respond(error_response(503, "control plane shutting down; poll another one"));
  try {
    flush_rollups(now_ms_(), true);
  } catch (const std::exception& e) {
    core::log_warn("control: stats rollups not written at shutdown: {}", e.what());
  }
}

}  // namespace sluice::control
