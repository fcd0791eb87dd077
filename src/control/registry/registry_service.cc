#include "control/registry/registry_service.h"

#include <arpa/inet.h>

#include <algorithm>

#include <fmt/format.h>

#include "control/rest.h"
#include "control/validate.h"
#include "core/address.h"
#include "core/json.h"
#include "core/log.h"

namespace sluice::control::registry {
namespace {

using Json = nlohmann::json;

constexpr uint32_t kMaxWeight = 1000;
constexpr int64_t kMinTtlMs = 100;
constexpr int64_t kMaxTtlMs = 3'600'000;
constexpr int64_t kDefaultTtlMs = 10'000;
constexpr size_t kMaxInstanceId = 256;
constexpr size_t kMaxHostname = 253;
constexpr size_t kMaxAddresses = 16;
constexpr int64_t kMaxCpus = 65'536;
constexpr int64_t kMaxMemoryBytes = int64_t{1} << 50;  // 1 PiB
constexpr int64_t kMaxSkewMs = 60'000;
constexpr size_t kMaxVersion = 128;

bool is_hostname(std::string_view h) {
  if (h.empty() || h.size() > kMaxHostname) return false;
  return std::all_of(h.begin(), h.end(), [](char c) {
    return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') || c == '_' ||
           c == '.' || c == '-';
  });
}

bool is_ip_address(const std::string& text) {
  // inet_pton reads up to a NUL, which a JSON string may hold.
  if (text.empty() || text.size() > 45 || text.find('\0') != std::string::npos) return false;
  in6_addr v6;
  in_addr v4;
  return inet_pton(AF_INET, text.c_str(), &v4) == 1 || inet_pton(AF_INET6, text.c_str(), &v6) == 1;
}

bool is_instance_id(std::string_view id) {
  if (id.empty() || id.size() > kMaxInstanceId) return false;
  return std::all_of(id.begin(), id.end(), [](char c) {
    return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') || c == '_' ||
           c == '.' || c == '-' || c == ':' || c == '@';
  });
}

// Host facts (docs/control-plane.md, "Registry"): each optional, each bounded; unknown keys
// refused. Returns the canonical text to store ("" for none) or appends errors.
std::string check_facts(const Json& facts, int64_t now, std::vector<std::string>& errors) {
  if (facts.is_null()) return {};
  Fields f(facts, "facts.", errors,
           {"hostname", "addresses", "cpu_count", "memory_bytes", "started_ms", "version"});
  if (!facts.is_object()) return {};
  const size_t before = errors.size();
  Json out = Json::object();
  if (auto h = f.string("hostname", false)) {
    if (!is_hostname(*h))
      f.error("hostname",
              fmt::format("must be 1..{} characters of letters, digits, '.', '-' and '_'",
                          kMaxHostname));
    out["hostname"] = *h;
  }
  if (const Json* a = f.get("addresses")) {
    if (!a->is_array() || a->size() > kMaxAddresses) {
      f.error("addresses",
              fmt::format("expected a list of at most {} IP addresses", kMaxAddresses));
    } else {
      for (size_t k = 0; k < a->size(); ++k) {
        const Json& v = (*a)[k];
        if (!v.is_string() || !is_ip_address(v.get_ref<const std::string&>())) {
          f.error(fmt::format("addresses[{}]", k), "expected an IPv4 or IPv6 address");
          continue;
        }
        out["addresses"].push_back(v);
      }
    }
  }
  if (auto n = f.integer("cpu_count", 1, kMaxCpus)) out["cpu_count"] = *n;
  if (auto n = f.integer("memory_bytes", 1, kMaxMemoryBytes)) out["memory_bytes"] = *n;
  // A process cannot have started after now (a little clock skew allowed).
  if (auto n = f.integer("started_ms", 0, now + kMaxSkewMs)) out["started_ms"] = *n;
  if (auto v = f.string("version", false)) {
    if (v->empty() || v->size() > kMaxVersion ||
        !std::all_of(v->begin(), v->end(), [](char c) { return c > ' ' && c < 127; }))
      f.error("version",
              fmt::format("must be 1..{} printable characters without spaces", kMaxVersion));
    out["version"] = *v;
  }
  if (errors.size() != before || out.empty()) return {};
  return out.dump();
}

Json facts_json(const std::string& text) {
  if (text.empty()) return Json::object();
  Json j = core::parse_json_or_discarded(text);
  return j.is_object() ? j : Json::object();
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
              {"expires_ms", i.heartbeat_ms + i.ttl_ms},
              {"facts", facts_json(i.facts)}};
}

}  // namespace

std::unique_ptr<Service> make_service(ServiceContext& ctx) {
  return std::make_unique<RegistryService>(ctx);
}

RegistryService::RegistryService(ServiceContext& ctx) : ctx_(ctx) {
  heartbeats_ = &ctx.metrics.counter("sluice_control_heartbeats_total", "Instance heartbeats");
  instances_expired_ = &ctx.metrics.counter("sluice_control_instances_expired_total",
                                            "Instances removed for missing heartbeats");
}

std::vector<Route> RegistryService::routes() {
  auto bind = [this](auto fn) { return member_route(this, fn); };
  using S = RegistryService;
  return {
      {"POST", {"v1", "instances"}, Role::kOperator, bind(&S::post_instance)},
      {"GET", {"v1", "instances"}, Role::kViewer, bind(&S::get_instances)},
      {"PUT",
       {"v1", "instances", "{}", "{}", "heartbeat"},
       Role::kOperator,
       bind(&S::put_heartbeat)},
      {"POST",
       {"v1", "instances", "{}", "{}", "heartbeat"},
       Role::kOperator,
       bind(&S::put_heartbeat)},
      {"DELETE", {"v1", "instances", "{}", "{}"}, Role::kOperator, bind(&S::delete_instance)},
  };
}

HttpResponse RegistryService::post_instance(const Call& c) {
  HttpResponse bad;
  auto body = parse_body(c.req.body, bad);
  if (!body) return bad;
  std::vector<std::string> errors;
  Fields f(*body, "", errors,
           {"service", "id", "address", "city", "zone", "weight", "ttl_ms", "facts"});
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
  if (const Json* facts = f.get("facts")) i.facts = check_facts(*facts, c.now, errors);
  if (!errors.empty()) {
    return error_response(
        400,
        fmt::format("invalid instance: {} error{}", errors.size(), errors.size() == 1 ? "" : "s"),
        std::move(errors));
  }
  i.registered_ms = c.now;
  i.heartbeat_ms = c.now;
  ctx_.store.upsert_instance(i);
  ctx_.feed->changed(c.after);
  return json_response(200, instance_json(i));
}

HttpResponse RegistryService::put_heartbeat(const Call& c) {
  heartbeats_->inc();
  if (!ctx_.store.heartbeat(c.params[0], c.params[1], c.now))
    return error_response(
        404, fmt::format("unknown instance {}/{}: register again", c.params[0], c.params[1]));
  return json_response(200,
                       {{"service", c.params[0]}, {"id", c.params[1]}, {"heartbeat_ms", c.now}});
}

HttpResponse RegistryService::delete_instance(const Call& c) {
  if (!ctx_.store.remove_instance(c.params[0], c.params[1]))
    return error_response(404, fmt::format("unknown instance {}/{}", c.params[0], c.params[1]));
  ctx_.feed->changed(c.after);
  return json_response(200, {{"service", c.params[0]}, {"id", c.params[1]}, {"removed", true}});
}

HttpResponse RegistryService::get_instances(const Call& c) {
  std::string service = query_param(c.req.query, "service").value_or("");
  Json out = Json::array();
  for (const Instance& i : ctx_.store.instances(service)) out.push_back(instance_json(i));
  return json_response(200, out);
}

void RegistryService::tick(int64_t now) {
  if (now < next_sweep_ms_) return;
  next_sweep_ms_ = now + ctx_.options.sweep_interval_ms;
  ctx_.guarded("registry sweep", [&] { sweep(now); });
}

void RegistryService::sweep(int64_t now) {
  std::vector<Instance> gone = ctx_.store.expire_instances(now);
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
    ctx_.events->append(e);
  }
  ctx_.feed->changed(nullptr);
}

}  // namespace sluice::control::registry
