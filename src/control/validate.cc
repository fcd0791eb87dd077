#include "control/validate.h"

#include <algorithm>
#include <charconv>
#include <map>
#include <set>
#include <string_view>

#include <fmt/format.h>

#include "config/loader.h"
#include "control/changes/freeze.h"
#include "control/changes/policy.h"
#include "control/probes/spec.h"
#include "control/releases/spec.h"
#include "control/slo/spec.h"

namespace sluice::control {
namespace {

using Json = nlohmann::json;
using OrderedJson = nlohmann::ordered_json;

constexpr size_t kMaxNameLength = 128;
constexpr int64_t kMaxRouteOrder = 1'000'000;
constexpr const char* kSource = "resources";

std::string label(const Resource& r) {
  return r.kind + "/" + r.name;
}

int64_t route_order(const Resource& r) {
  if (r.spec.is_object()) {
    auto it = r.spec.find(kRouteOrderKey);
    if (it != r.spec.end() && it->is_number_integer()) return it->get<int64_t>();
  }
  return 0;
}

// Resources grouped by section, in the order the gateway file gets them.
struct Sections {
  std::vector<const Resource*> services, routes, rate_limits;
  const Resource* units = nullptr;
};

Sections arrange(const std::vector<const Resource*>& resources) {
  Sections s;
  for (const Resource* r : resources) {
    if (r->kind == "service") s.services.push_back(r);
    if (r->kind == "route") s.routes.push_back(r);
    if (r->kind == "rate_limit") s.rate_limits.push_back(r);
    if (r->kind == "units") s.units = r;
  }
  auto by_name = [](const Resource* a, const Resource* b) { return a->name < b->name; };
  std::sort(s.services.begin(), s.services.end(), by_name);
  std::sort(s.rate_limits.begin(), s.rate_limits.end(), by_name);
  std::stable_sort(s.routes.begin(), s.routes.end(), [](const Resource* a, const Resource* b) {
    int64_t oa = route_order(*a), ob = route_order(*b);
    return oa != ob ? oa < ob : a->name < b->name;
  });
  return s;
}

// One entry of a list section: the spec's keys with the resource's name first.
OrderedJson entry(const Resource& r) {
  OrderedJson e = OrderedJson::object();
  e["name"] = r.name;
  if (r.spec.is_object()) {
    for (auto it = r.spec.begin(); it != r.spec.end(); ++it) {
      if (it.key() == "name") continue;
      if (r.kind == "route" && it.key() == kRouteOrderKey) continue;
      e[it.key()] = OrderedJson::parse(it.value().dump());
    }
  }
  return e;
}

OrderedJson units_entry(const Resource& r) {
  return r.spec.is_object() ? OrderedJson::parse(r.spec.dump()) : OrderedJson::object();
}

OrderedJson placeholder_endpoints() {
  return OrderedJson::array({OrderedJson{{"address", kPlaceholderEndpoint}}});
}

OrderedJson build_sections(const Sections& s, const std::vector<Instance>* instances) {
  std::map<std::string_view, std::vector<const Instance*>> by_service;
  if (instances != nullptr) {
    for (const Instance& i : *instances) by_service[i.service].push_back(&i);
  }
  OrderedJson out = OrderedJson::object();
  OrderedJson services = OrderedJson::array();
  for (const Resource* r : s.services) {
    OrderedJson e = entry(*r);
    if (uses_registry(r->spec)) {
      OrderedJson endpoints = OrderedJson::array();
      auto it = by_service.find(r->name);
      if (instances != nullptr && it != by_service.end()) {
        std::vector<const Instance*> list = it->second;
        std::sort(list.begin(), list.end(),
                  [](const Instance* a, const Instance* b) { return a->id < b->id; });
        // Two instances on one address (a restart under a new id before the old one expired)
        // would make the gateway refuse the config as a duplicate endpoint: keep the freshest.
        std::map<std::string_view, const Instance*> by_address;
        for (const Instance* i : list) {
          auto [at, fresh] = by_address.emplace(i->address, i);
          if (!fresh && i->heartbeat_ms > at->second->heartbeat_ms) at->second = i;
        }
        for (const Instance* i : list) {
          if (by_address[i->address] != i) continue;
          OrderedJson ep = OrderedJson::object();
          ep["address"] = i->address;
          if (!i->city.empty()) ep["city"] = i->city;
          if (!i->zone.empty()) ep["zone"] = i->zone;
          ep["weight"] = i->weight;
          endpoints.push_back(std::move(ep));
        }
      }
      // Validation (no registry at hand) uses a placeholder; a gateway is pushed the empty list,
      // which it accepts from a control plane and answers with 503 until an instance registers.
      if (endpoints.empty() && instances == nullptr) endpoints = placeholder_endpoints();
      // Keep the spec's key order but put the endpoints right after the name, as files do.
      OrderedJson ordered = OrderedJson::object();
      ordered["name"] = e["name"];
      ordered["endpoints"] = std::move(endpoints);
      for (auto it = e.begin(); it != e.end(); ++it) {
        if (it.key() != "name" && it.key() != "endpoints") ordered[it.key()] = it.value();
      }
      e = std::move(ordered);
    }
    services.push_back(std::move(e));
  }
  out["services"] = std::move(services);
  OrderedJson routes = OrderedJson::array();
  for (const Resource* r : s.routes) routes.push_back(entry(*r));
  out["routes"] = std::move(routes);
  OrderedJson rate_limits = OrderedJson::array();
  for (const Resource* r : s.rate_limits) rate_limits.push_back(entry(*r));
  out["rate_limits"] = std::move(rate_limits);
  if (s.units != nullptr) out["units"] = units_entry(*s.units);
  return out;
}

// "services[12].retry.attempts" -> ("services", 12, ".retry.attempts"); "units.key" ->
// ("units", 0, ".key").
struct PathHead {
  std::string_view section;
  size_t index = 0;
  std::string_view rest;
  bool ok = false;
};

PathHead split_path(std::string_view path) {
  PathHead h;
  if (path.starts_with("units")) {
    std::string_view rest = path.substr(5);
    if (rest.empty() || rest.front() == '.') {
      h.section = "units";
      h.rest = rest;
      h.ok = true;
    }
    return h;
  }
  for (std::string_view section : {"services", "routes", "rate_limits"}) {
    if (!path.starts_with(section)) continue;
    std::string_view rest = path.substr(section.size());
    if (rest.empty() || rest.front() != '[') return h;
    size_t close = rest.find(']');
    if (close == std::string_view::npos) return h;
    size_t index = 0;
    auto [p, ec] = std::from_chars(rest.data() + 1, rest.data() + close, index);
    if (ec != std::errc() || p != rest.data() + close) return h;
    h.section = section;
    h.index = index;
    h.rest = rest.substr(close + 1);
    h.ok = true;
    return h;
  }
  return h;
}

std::string map_error(const config::ConfigError& e, const Sections& s) {
  PathHead h = split_path(e.path);
  const Resource* r = nullptr;
  if (h.ok) {
    if (h.section == "units") {
      r = s.units;
    } else {
      const auto& list = h.section == "services" ? s.services
                         : h.section == "routes" ? s.routes
                                                 : s.rate_limits;
      if (h.index < list.size()) r = list[h.index];
    }
  }
  if (r == nullptr) {
    // Not about one resource (it should not happen: the rest of the document is fixed).
    return e.path.empty() ? "config: " + e.message : "config: " + e.path + ": " + e.message;
  }
  std::string where;
  if (h.section != "units" && h.rest == ".name") {
    where = "name";
  } else {
    where = "spec" + std::string(h.rest);
  }
  return label(*r) + ": " + where + ": " + e.message;
}

}  // namespace

std::string describe_json(const nlohmann::json& j) {
  switch (j.type()) {
    case Json::value_t::object:
      return "an object";
    case Json::value_t::array:
      return "a list";
    case Json::value_t::string:
      return "'" + j.get<std::string>() + "'";
    case Json::value_t::null:
      return "null";
    default:
      return j.dump();  // numbers, true, false
  }
}

bool is_valid_name(std::string_view name) {
  if (name.empty() || name.size() > kMaxNameLength) return false;
  return std::all_of(name.begin(), name.end(), [](char c) {
    return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') || c == '_' ||
           c == '.' || c == '-';
  });
}

bool uses_registry(const nlohmann::json& spec) {
  if (!spec.is_object()) return false;
  auto it = spec.find("endpoints");
  return it == spec.end() || it->is_null() || (it->is_array() && it->empty());
}

std::vector<std::string> validate_resources(const std::vector<Resource>& resources) {
  std::vector<std::string> errors;
  std::vector<const Resource*> placeable;
  std::set<std::pair<std::string_view, std::string_view>> seen;
  for (const Resource& r : resources) {
    const std::string who = label(r);
    if (std::find(kResourceKinds.begin(), kResourceKinds.end(), r.kind) == kResourceKinds.end()) {
      errors.push_back(fmt::format("{}: kind: unknown kind '{}' (expected {})", who, r.kind,
                                   resource_kinds_text()));
      continue;
    }
    if (r.kind == "units") {
      if (r.name != "units") {
        errors.push_back(fmt::format("{}: name: the units resource is always named 'units'", who));
        continue;
      }
    } else if (!is_valid_name(r.name)) {
      errors.push_back(
          fmt::format("{}: name: must be 1..{} characters of letters, digits, '_', '.' and '-'",
                      who, kMaxNameLength));
    }
    if (!seen.emplace(r.kind, r.name).second) {
      errors.push_back(fmt::format("{}: given twice", who));
      continue;
    }
    if (!r.spec.is_object() && !r.spec.is_null()) {
      errors.push_back(
          fmt::format("{}: spec: expected an object, got {}", who, describe_json(r.spec)));
      continue;
    }
    if (r.spec.is_object()) {
      auto name = r.spec.find("name");
      if (name != r.spec.end() && r.kind != "units" &&
          !(name->is_string() && name->get<std::string>() == r.name)) {
        errors.push_back(
            fmt::format("{}: spec.name: {} differs from the resource name '{}' (leave it out)", who,
                        describe_json(*name), r.name));
      }
      auto order = r.spec.find(kRouteOrderKey);
      if (r.kind == "route" && order != r.spec.end() &&
          !(order->is_number_integer() && order->get<int64_t>() >= -kMaxRouteOrder &&
            order->get<int64_t>() <= kMaxRouteOrder)) {
        errors.push_back(fmt::format("{}: spec.{}: must be an integer -{}..{}, got {}", who,
                                     kRouteOrderKey, kMaxRouteOrder, kMaxRouteOrder,
                                     describe_json(*order)));
      }
    }
    // Change management's kinds never reach a gateway: they are checked here, not by the loader.
    if (r.kind == "change_policy" || r.kind == "freeze_window") {
      const std::string prefix = who + ": spec";
      const nlohmann::json spec = r.spec.is_null() ? nlohmann::json::object() : r.spec;
      for (std::string& e : r.kind == "change_policy" ? changes::check_policy(spec, prefix)
                                                      : changes::check_freeze_window(spec, prefix))
        errors.push_back(std::move(e));
      continue;
    }
    if (r.kind == "release") {
      const nlohmann::json spec = r.spec.is_null() ? nlohmann::json::object() : r.spec;
      for (std::string& e : releases::check_release(spec, who + ": spec", resources))
        errors.push_back(std::move(e));
      continue;
    }
    if (r.kind == "probe") {
      const nlohmann::json spec = r.spec.is_null() ? nlohmann::json::object() : r.spec;
      for (std::string& e : probes::check_probe(spec, who + ": spec"))
        errors.push_back(std::move(e));
      continue;
    }
    // SLOs and maintenance windows are the slo domain's (control/slo/spec.h).
    if (r.kind == "slo" || r.kind == "maintenance_window") {
      const nlohmann::json spec = r.spec.is_null() ? nlohmann::json::object() : r.spec;
      for (std::string& e : r.kind == "slo"
                                ? slo::check_slo(spec, who + ": spec", resources)
                                : slo::check_maintenance(spec, who + ": spec", resources))
        errors.push_back(std::move(e));
      continue;
    }
    // A resource with a bad name still goes to the loader, so its spec is checked too.
    placeable.push_back(&r);
  }

  Sections s = arrange(placeable);
  OrderedJson doc = OrderedJson::object();
  // The local part of a gateway file, fixed: only the resource sections are being checked.
  // `node.city` lets a units section load; `redis` lets cluster-scope limits load (each
  // gateway's own file has its Redis, and a gateway without one refuses the config and says so).
  doc["node"] = {{"id", "control-plane"}, {"city", "validate"}, {"zone", "validate"}};
  doc["listeners"] = OrderedJson::array({{{"name", "validate"}, {"address", "127.0.0.1:1"}}});
  doc["admin"] = {{"address", "127.0.0.1:2"}};
  doc["redis"] = {{"address", "127.0.0.1:6379"}};
  OrderedJson sections = build_sections(s, nullptr);
  for (auto it = sections.begin(); it != sections.end(); ++it) doc[it.key()] = it.value();
  // A resource with an invalid name is given to the loader under that name: its own errors
  // (already reported above) would repeat, so drop errors on `.name` of such resources.
  config::LoadResult loaded = config::load_string(doc.dump(), kSource);
  for (const config::ConfigError& e : loaded.errors) {
    std::string mapped = map_error(e, s);
    PathHead h = split_path(e.path);
    if (h.ok && h.rest == ".name" && h.section != "units") {
      const auto& list = h.section == "services" ? s.services
                         : h.section == "routes" ? s.routes
                                                 : s.rate_limits;
      if (h.index < list.size() && !is_valid_name(list[h.index]->name)) continue;
    }
    errors.push_back(std::move(mapped));
  }
  return errors;
}

nlohmann::ordered_json gateway_sections(const std::vector<Resource>& resources,
                                        const std::vector<Instance>& instances) {
  std::vector<const Resource*> all;
  all.reserve(resources.size());
  for (const Resource& r : resources) {
    if (std::find(kGatewayKinds.begin(), kGatewayKinds.end(), r.kind) != kGatewayKinds.end())
      all.push_back(&r);
  }
  return build_sections(arrange(all), &instances);
}

}  // namespace sluice::control
