// Impact analysis: if this host (service, instance, city, zone, database, gateway) is lost, what
// goes with it and what depends on it, following the CMDB's relations; and, for each service
// that loses instances, the capacity left per city (the other city's share is what a failover
// leans on).
//
// Semantics, exactly (docs/cmdb.md, "Impact, exactly"):
// - Relations followed: declared ones, and observed ones that are current (reconcile.h).
// - Lost: the start; then, repeatedly, every CI that runs_on or is located_in a lost CI, and every
//   instance that belongs_to a lost service.
// - Affected: the services of lost instances; lost services, databases, routes; routes a lost
//   gateway serves; then, repeatedly: of an affected service, the services and applications that
//   depend_on it, the routes that route_to it and what it belongs_to; of an affected application
//   or database, what depends_on it and what it belongs_to; of an affected route, the channels it
//   serves; of an affected business system, the business systems that depend_on it.
// - Capacity: per service with a lost instance (or lost itself), its live instances (declared or
//   current) counted per city (the instance's effective `city`, else the city it is located_in,
//   directly or through its zone; "" if none), and how many of them are lost.
// - Cost: O(CIs + relations) time and memory at most, one pass per query.
#pragma once

#include <nlohmann/json.hpp>

#include <cstdint>
#include <map>
#include <string>
#include <vector>

#include "control/cmdb/model.h"
#include "control/cmdb/reconcile.h"

namespace sluice::control::cmdb {

struct CityCapacity {
  std::int64_t total = 0;  // live instances in the city
  std::int64_t lost = 0;
};

struct ServiceCapacity {
  std::string service;                         // its key
  std::map<std::string, CityCapacity> cities;  // by city name
};

struct Impact {
  std::string subject;  // the start, "host/h1"
  // Lost CIs by kind (keys, sorted): what goes down with the start.
  std::vector<std::string> instances, hosts, gateways, databases;
  // What depends on them (keys, sorted).
  std::vector<std::string> services, applications, business_systems, routes, channels;
  std::vector<ServiceCapacity> capacity;  // by service key
};

Impact impact(const Graph& g, const Policy& p, CiId start, std::int64_t now);

nlohmann::json to_json(const Impact& i);

}  // namespace sluice::control::cmdb
