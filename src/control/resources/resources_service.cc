#include "control/resources/resources_service.h"

#include <algorithm>
#include <chrono>
#include <map>
#include <set>
#include <thread>

#include <fmt/format.h>

#include "control/rest.h"
#include "control/validate.h"
#include "core/log.h"
#include "core/random.h"

namespace sluice::control {

using Json = nlohmann::json;

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

namespace resources {
namespace {

constexpr int64_t kMaxListLimit = 1000;
constexpr int64_t kDefaultVersionsLimit = 50;

Json resource_json(const Resource& r) {
  return Json{{"kind", r.kind}, {"name", r.name}, {"spec", r.spec}};
}

Json version_json(const VersionInfo& v) {
  return Json{
      {"number", v.number},         {"author", v.author}, {"created", iso_time(v.created_ms)},
      {"created_ms", v.created_ms}, {"reason", v.reason}, {"diff", v.diff}};
}

// The fields every config write takes; `reason` is required unless it is a dry run.
void read_write_fields(const Fields& f, ConfigWrite& w) {
  w.dry_run = f.boolean("dry_run").value_or(false);
  w.emergency = f.boolean("emergency").value_or(false);
  if (auto reason = f.string("reason", !w.dry_run)) {
    if (is_blank(*reason) && !w.dry_run) f.error("reason", "must not be empty or only blanks");
    w.reason = *reason;
  }
  w.expected = f.integer("expected_version", 0, INT64_MAX);
}

// A boolean query parameter: "true", "1" or present without a value; "false" or "0"; absent is
// false. Anything else is an error naming it.
bool flag_param(std::string_view query, const char* name, std::vector<std::string>& errors) {
  auto d = query_param(query, name);
  if (!d) return false;
  if (*d == "true" || *d == "1" || d->empty()) return true;
  if (*d != "false" && *d != "0")
    errors.push_back(fmt::format("{}: expected true or false, got '{}'", name, *d));
  return false;
}

bool known_kind(std::string_view kind) {
  return std::find(kResourceKinds.begin(), kResourceKinds.end(), kind) != kResourceKinds.end();
}

}  // namespace

std::unique_ptr<Service> make_service(ServiceContext& ctx) {
  return std::make_unique<ResourcesService>(ctx);
}

ResourcesService::ResourcesService(ServiceContext& ctx) : ctx_(ctx) {
  ctx_.writer = this;
  auto& m = ctx.metrics;
  versions_written_ = &m.counter("sluice_control_config_versions_written_total",
                                 "Config versions committed through this control plane");
  apply_rejected_ =
      &m.counter("sluice_control_writes_rejected_total", "Config writes refused as invalid");
  conflicts_ =
      &m.counter("sluice_control_write_conflicts_total", "Config writes that lost a version race");
  write_redos_ = &m.counter(
      "sluice_control_write_redos_total",
      "Config writes redone on a newer version after losing a race (no expected_version)");
}

std::vector<Route> ResourcesService::routes() {
  auto bind = [this](auto fn) { return member_route(this, fn); };
  using S = ResourcesService;
  return {
      {"GET", {"v1", "resources"}, Role::kViewer, bind(&S::get_resources)},
      {"GET", {"v1", "resources", "{}"}, Role::kViewer, bind(&S::get_resources)},
      {"GET", {"v1", "resources", "{}", "{}"}, Role::kViewer, bind(&S::get_resource)},
      {"DELETE", {"v1", "resources", "{}", "{}"}, Role::kOperator, bind(&S::delete_resource)},
      {"POST", {"v1", "apply"}, Role::kOperator, bind(&S::post_apply)},
      {"GET", {"v1", "versions"}, Role::kViewer, bind(&S::get_versions)},
      {"GET", {"v1", "versions", "{}"}, Role::kViewer, bind(&S::get_version)},
      {"POST", {"v1", "rollback"}, Role::kOperator, bind(&S::post_rollback)},
  };
}

HttpResponse ResourcesService::get_resources(const Call& c) {
  std::string kind;
  if (!c.params.empty()) {
    kind = c.params[0];
  } else if (auto k = query_param(c.req.query, "kind")) {
    kind = *k;
  }
  if (!kind.empty() && !known_kind(kind))
    return error_response(
        400, fmt::format("kind: unknown kind '{}' (expected {})", kind, resource_kinds_text()));
  const int64_t version = ctx_.store.latest_version();
  Json list = Json::array();
  if (version > 0) {
    for (const Resource& r : ctx_.store.resources(version)) {
      if (kind.empty() || r.kind == kind) list.push_back(resource_json(r));
    }
  }
  return json_response(200, {{"version", version}, {"resources", std::move(list)}});
}

HttpResponse ResourcesService::get_resource(const Call& c) {
  const int64_t version = ctx_.store.latest_version();
  if (version > 0) {
    for (const Resource& r : ctx_.store.resources(version)) {
      if (r.kind == c.params[0] && r.name == c.params[1])
        return json_response(200, resource_json(r));
    }
  }
  return error_response(404, fmt::format("no {} named '{}'", c.params[0], c.params[1]));
}

HttpResponse ResourcesService::write(const ConfigEdit& e, Deferred* after) {
  ConfigWrite w;
  w.operation = "apply";
  w.author = e.author;
  w.reason = e.reason;
  w.emergency = e.emergency;
  w.make_next = e.make_next;
  w.missing = e.missing;
  return write_config(after, w);
}

HttpResponse ResourcesService::write_config(Deferred* after, const ConfigWrite& w) {
  Store& store = ctx_.store;
  const ApiOptions& options = ctx_.options;
  const int attempts = std::max(1, options.write_attempts);
  for (int attempt = 0; attempt < attempts; ++attempt) {
    if (attempt > 0) {
      // Lost a race with another control plane: let the winners finish, at a random point so
      // that the losers do not collide again in step.
      write_redos_->inc();
      const int64_t cap = std::min(options.write_backoff_max_ms,
                                   options.write_backoff_ms << std::min(attempt - 1, 20));
      const auto pause = static_cast<int64_t>(
          core::thread_rng().uniform(static_cast<uint64_t>(std::max<int64_t>(cap, 0)) + 1));
      if (pause > 0) std::this_thread::sleep_for(std::chrono::milliseconds(pause));
    }
    std::lock_guard write_lock(write_mu_);
    const int64_t base = store.latest_version();
    if (w.expected && *w.expected != base) {
      conflicts_->inc();
      return json_response(409, {{"error", fmt::format("version conflict: expected version {}, "
                                                       "the latest is {}; read it and retry",
                                                       *w.expected, base)},
                                 {"version", base}});
    }
    const std::vector<Resource> current =
        base > 0 ? store.resources(base) : std::vector<Resource>{};
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
    const int64_t now = ctx_.now_ms();
    int64_t v = 0;
    ChangeRecord change;
    if (ctx_.changes != nullptr) {
      const ChangeRequest request{w.operation,      w.author, w.reason, w.emergency, base,
                                  w.target_version, &current, &*next,   &diff};
      ChangeGate::Verdict verdict = ctx_.changes->review(request, now);
      if (verdict.answer) return std::move(*verdict.answer);
      change = std::move(verdict.change);
      v = store.commit_change(*next, diff, base, now, change, {}, {}, verdict.rolled_back);
    } else {
      v = store.commit(*next, w.author, w.reason, diff, base, now);
    }
    if (v == 0) {
      // Another control plane (or thread) committed first. Without an expected version the
      // caller asked for "this change on top of whatever is there": redo it on the new base.
      conflicts_->inc();
      if (w.expected) {
        int64_t latest = store.latest_version();
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
    ctx_.feed->changed(after);
    if (change.id == 0) return json_response(200, {{"version", v}, {"diff", std::move(diff)}});
    ctx_.changes->committed(change);
    return json_response(200, {{"version", v},
                               {"diff", std::move(diff)},
                               {"change", change.id},
                               {"state", change.state},
                               {"review_required", change.review_required}});
  }
  core::log_warn("control: write by {} gave up after {} lost races with other control planes",
                 w.author, attempts);
  return json_response(
      409, {{"error", fmt::format("version conflict: lost the race with other writers {} times "
                                  "in a row; nothing was applied, retry",
                                  attempts)},
            {"version", store.latest_version()}});
}

HttpResponse ResourcesService::post_apply(const Call& c) {
  HttpResponse bad;
  auto body = parse_body(c.req.body, bad);
  if (!body) return bad;
  std::vector<std::string> errors;
  Fields f(*body, "", errors, {"resources", "reason", "expected_version", "dry_run", "emergency"});
  ConfigWrite w;
  w.operation = "apply";
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
      if (kind && !known_kind(*kind)) {
        rf.error("kind",
                 fmt::format("unknown kind '{}' (expected {})", *kind, resource_kinds_text()));
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
  return write_config(c.after, w);
}

HttpResponse ResourcesService::delete_resource(const Call& c) {
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
  w.operation = "delete";
  w.emergency = flag_param(c.req.query, "emergency", errors);
  w.dry_run = flag_param(c.req.query, "dry_run", errors);
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
  return write_config(c.after, w);
}

HttpResponse ResourcesService::get_versions(const Call& c) {
  std::vector<std::string> errors;
  auto limit = int_param(c.req, "limit", kDefaultVersionsLimit, 1, kMaxListLimit, errors);
  auto before = int_param(c.req, "before", 0, 0, INT64_MAX, errors);
  if (!errors.empty()) return error_response(400, errors.front(), std::move(errors));
  Json out = Json::array();
  for (const VersionInfo& v : ctx_.store.versions(*limit, *before)) out.push_back(version_json(v));
  return json_response(200, out);
}

HttpResponse ResourcesService::get_version(const Call& c) {
  auto n = parse_int(c.params[0]);
  if (!n || *n <= 0)
    return error_response(400, fmt::format("version: expected a positive "
                                           "integer, got '{}'",
                                           c.params[0]));
  auto v = ctx_.store.version(*n);
  if (!v) return error_response(404, fmt::format("no version {}", *n));
  Json out = version_json(*v);
  Json list = Json::array();
  for (const Resource& r : ctx_.store.resources(*n)) list.push_back(resource_json(r));
  out["resources"] = std::move(list);
  return json_response(200, out);
}

HttpResponse ResourcesService::post_rollback(const Call& c) {
  HttpResponse bad;
  auto body = parse_body(c.req.body, bad);
  if (!body) return bad;
  std::vector<std::string> errors;
  Fields f(*body, "", errors, {"version", "reason", "expected_version", "dry_run", "emergency"});
  ConfigWrite w;
  w.operation = "rollback";
  w.author = c.who.name;
  read_write_fields(f, w);
  auto target = f.integer("version", 1, INT64_MAX);
  if (body->is_object() && f.get("version") == nullptr) f.error("version", "required");
  if (!errors.empty()) return error_response(400, errors.front(), std::move(errors));
  if (!ctx_.store.version(*target))
    return error_response(404, fmt::format("no version {}", *target));
  w.target_version = *target;
  std::vector<Resource> old = ctx_.store.resources(*target);
  w.make_next = [&old](const std::vector<Resource>&) { return std::optional(old); };
  HttpResponse r = write_config(c.after, w);
  if (r.status == 200 && !w.dry_run) {
    Json j = Json::parse(r.body);
    j["rolled_back_to"] = *target;
    r.body = body_of(j);
  }
  return r;
}

}  // namespace resources
}  // namespace sluice::control
