#include "control/changes/affected.h"

#include <set>
#include <string>

namespace sluice::control::changes {
namespace {

using Json = nlohmann::json;

// The services a route spec sends traffic to: `service`, and `services[].name` of a split.
void route_services(const Json& spec, std::set<std::string>& out) {
  if (!spec.is_object()) return;
  if (auto s = spec.find("service"); s != spec.end() && s->is_string())
    out.insert(s->get<std::string>());
  if (auto list = spec.find("services"); list != spec.end() && list->is_array()) {
    for (const Json& e : *list) {
      if (e.is_object() && e.contains("name") && e["name"].is_string())
        out.insert(e["name"].get<std::string>());
    }
  }
}

}  // namespace

std::vector<std::pair<std::string, std::string>> touched(const Json& diff) {
  std::vector<std::pair<std::string, std::string>> out;
  for (const Json& d : diff)
    out.emplace_back(d.at("kind").get<std::string>(), d.at("name").get<std::string>());
  return out;
}

Json affected(const std::vector<Resource>& before, const std::vector<Resource>& after,
              const Json& diff, const std::vector<Instance>& instances) {
  std::set<std::string> resources, routes, services, cities;
  bool everything = false;
  auto specs_of = [&](const std::string& kind, const std::string& name) {
    std::vector<const Json*> out;
    for (const auto* set : {&before, &after})
      for (const Resource& r : *set)
        if (r.kind == kind && r.name == name) out.push_back(&r.spec);
    return out;
  };
  for (const Json& d : diff) {
    const std::string kind = d.at("kind").get<std::string>();
    const std::string name = d.at("name").get<std::string>();
    resources.insert(kind + "/" + name);
    if (kind == "service") {
      services.insert(name);
    } else if (kind == "route") {
      routes.insert(name);  // its services are added below, with every affected route's
    } else if (kind == "rate_limit") {
      bool all_routes = false;
      for (const Json* spec : specs_of(kind, name)) {
        const Json* list = nullptr;
        if (spec->is_object() && spec->contains("match") && (*spec)["match"].is_object() &&
            (*spec)["match"].contains("routes"))
          list = &(*spec)["match"]["routes"];
        if (list == nullptr || !list->is_array() || list->empty()) {
          all_routes = true;
          continue;
        }
        for (const Json& r : *list)
          if (r.is_string()) routes.insert(r.get<std::string>());
      }
      if (all_routes)
        for (const auto* set : {&before, &after})
          for (const Resource& r : *set)
            if (r.kind == "route") routes.insert(r.name);
    } else if (kind == "units") {
      everything = true;
    }
  }
  if (everything) {
    for (const auto* set : {&before, &after})
      for (const Resource& r : *set) {
        if (r.kind == "route") routes.insert(r.name);
        if (r.kind == "service") services.insert(r.name);
      }
  }
  // Routes pointing at a changed service, then the services of every affected route (not the
  // other routes of those services: a route change leaves its siblings as they were).
  const std::set<std::string> changed_services = services;
  for (const auto* set : {&before, &after}) {
    for (const Resource& r : *set) {
      if (r.kind != "route") continue;
      std::set<std::string> targets;
      route_services(r.spec, targets);
      for (const std::string& t : targets)
        if (changed_services.count(t) != 0) routes.insert(r.name);
    }
  }
  for (const auto* set : {&before, &after}) {
    for (const Resource& r : *set)
      if (r.kind == "route" && routes.count(r.name) != 0) route_services(r.spec, services);
  }
  for (const auto* set : {&before, &after}) {
    for (const Resource& r : *set) {
      if (r.kind != "service" || services.count(r.name) == 0 || !r.spec.is_object()) continue;
      auto eps = r.spec.find("endpoints");
      if (eps == r.spec.end() || !eps->is_array()) continue;
      for (const Json& e : *eps)
        if (e.is_object() && e.contains("city") && e["city"].is_string())
          cities.insert(e["city"].get<std::string>());
    }
  }
  for (const Instance& i : instances)
    if (services.count(i.service) != 0 && !i.city.empty()) cities.insert(i.city);
  return Json{
      {"resources", resources}, {"routes", routes}, {"services", services}, {"cities", cities}};
}

}  // namespace sluice::control::changes
