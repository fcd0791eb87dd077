#include "control/analysis/sample.h"

#include <algorithm>
#include <charconv>
#include <limits>
#include <map>
#include <optional>
#include <set>
#include <string_view>
#include <utility>

namespace sluice::control::analysis {
namespace {

using Json = nlohmann::json;

uint64_t saturating_add(uint64_t a, uint64_t b) {
  return a > std::numeric_limits<uint64_t>::max() - b ? std::numeric_limits<uint64_t>::max()
                                                      : a + b;
}

// A counter as a gateway reports it; absent or malformed counts as nothing.
std::optional<uint64_t> counter(const Json& obj, std::string_view key) {
  auto it = obj.find(key);
  if (it == obj.end() || !it->is_number_integer()) return std::nullopt;
  if (it->is_number_unsigned()) return it->get<uint64_t>();
  return it->get<int64_t>() >= 0 ? std::optional<uint64_t>(it->get<uint64_t>()) : std::nullopt;
}

// The entry's histogram ({"le": "0.005 0.01 ...", "buckets": [...], "count", "sum_us"}), or an
// empty one when it is absent or malformed.
stats::Latency latency_of(const Json& item) {
  stats::Latency l;
  auto it = item.find("latency");
  if (it == item.end() || !it->is_object()) return l;
  auto le = it->find("le");
  auto buckets = it->find("buckets");
  if (le == it->end() || !le->is_string() || buckets == it->end() || !buckets->is_array() ||
      buckets->size() > kMaxBuckets || buckets->size() < 2)
    return l;
  std::string_view text = le->get_ref<const std::string&>();
  std::vector<double> bounds;
  while (!text.empty() && bounds.size() < kMaxBuckets) {
    const size_t sp = text.find(' ');
    const std::string_view word = text.substr(0, sp);
    double v = 0;
    auto [p, ec] = std::from_chars(word.data(), word.data() + word.size(), v);
    if (ec != std::errc() || p != word.data() + word.size() || !(v >= 0) ||
        (!bounds.empty() && v <= bounds.back()))
      return l;
    bounds.push_back(v);
    if (sp == std::string_view::npos) break;
    text.remove_prefix(sp + 1);
  }
  if (buckets->size() != bounds.size() + 1) return l;
  std::vector<uint64_t> counts;
  counts.reserve(buckets->size());
  uint64_t total = 0;
  for (const Json& b : *buckets) {
    const uint64_t v = b.is_number_unsigned()                          ? b.get<uint64_t>()
                       : b.is_number_integer() && b.get<int64_t>() > 0 ? b.get<uint64_t>()
                                                                       : 0;
    counts.push_back(std::min(v, kMaxBucketCount));
    total += counts.back();  // at most kMaxBuckets * kMaxBucketCount
  }
  l.bounds = std::move(bounds);
  l.buckets = std::move(counts);
  l.count = total;
  l.sum_us = counter(*it, "sum_us").value_or(0);
  return l;
}

bool contains(const std::vector<std::string>& list, const std::string& s) {
  return std::find(list.begin(), list.end(), s) != list.end();
}

// The service(s) a route entry sends to: a name, or (weighted split) a list of names or of
// {name, weight} objects.
void services_of_route(const Json& route, std::set<std::string>& out) {
  auto it = route.find("service");
  if (it == route.end()) it = route.find("services");
  if (it == route.end()) return;
  if (it->is_string()) {
    out.insert(it->get<std::string>());
  } else if (it->is_array()) {
    for (const Json& s : *it) {
      if (s.is_string()) {
        out.insert(s.get<std::string>());
      } else if (s.is_object()) {
        auto name = s.find("name");
        if (name != s.end() && name->is_string()) out.insert(name->get<std::string>());
      }
    }
  }
}

}  // namespace

void Sample::add(const Sample& other) {
  requests = saturating_add(requests, other.requests);
  errors = saturating_add(errors, other.errors);
  throttled = saturating_add(throttled, other.throttled);
  breaker_opens = saturating_add(breaker_opens, other.breaker_opens);
  latency.add(other.latency);
  snapshots = saturating_add(snapshots, other.snapshots);
  throttled_reported = throttled_reported || other.throttled_reported;
}

namespace {

// Sums snapshots (or minute rollups, which have the same sections) one at a time, following
// each (gateway, service) breaker's state from one to the next.
class Summer {
 public:
  explicit Summer(const Scope& scope)
      : scope_(scope), every_route_(scope.routes.empty() && scope.services.empty()) {}

  void add(const Json& snap, const std::string& gateway) {
    if (!snap.is_object()) return;
    if (!scope_.gateways.empty() && !contains(scope_.gateways, gateway)) return;
    ++out_.snapshots;
    std::set<std::string> routed;  // services of the named routes present in this snapshot
    auto routes = snap.find("routes");
    if (routes != snap.end() && routes->is_object()) {
      for (auto it = routes->begin(); it != routes->end(); ++it) {
        if (!every_route_ && !contains(scope_.routes, it.key())) continue;
        if (!it->is_object()) continue;
        take(*it);
        if (!every_route_) services_of_route(*it, routed);
      }
    }
    auto services = snap.find("services");
    if (services == snap.end() || !services->is_object()) return;
    for (auto it = services->begin(); it != services->end(); ++it) {
      const bool named = contains(scope_.services, it.key());
      if (!every_route_ && !named && !routed.contains(it.key())) continue;
      if (!it->is_object()) continue;
      if (named && !routed.contains(it.key())) take(*it);
      // Breaker opens: every service in scope, whichever way its traffic was counted.
      bool& open_before = was_open_[{gateway, it.key()}];
      auto state = it->find("breaker");
      const bool open = state != it->end() && state->is_string() && *state == "open";
      if (auto opens = counter(*it, "breaker_opens")) {
        out_.breaker_opens = saturating_add(out_.breaker_opens, *opens);
      } else if (open && !open_before) {
        out_.breaker_opens = saturating_add(out_.breaker_opens, 1);
      }
      open_before = open;
    }
  }

  Sample result() && { return std::move(out_); }

 private:
  void take(const Json& entry) {
    out_.requests = saturating_add(out_.requests, counter(entry, "requests").value_or(0));
    out_.errors = saturating_add(out_.errors, counter(entry, "errors").value_or(0));
    if (auto t = counter(entry, "throttled")) {
      out_.throttled = saturating_add(out_.throttled, *t);
      out_.throttled_reported = true;
    }
    out_.latency.add(latency_of(entry));
  }

  const Scope& scope_;
  const bool every_route_;
  Sample out_;
  // Whether a (gateway, service) breaker was open in the gateway's previous snapshot.
  std::map<std::pair<std::string, std::string>, bool> was_open_;
};

}  // namespace

Sample sum_snapshots(std::span<const nlohmann::json> snapshots, const Scope& scope) {
  Summer sum(scope);
  for (const Json& snap : snapshots) {
    if (!snap.is_object()) continue;
    auto gw = snap.find("gateway");
    if (gw == snap.end() || !gw->is_string()) continue;
    sum.add(snap, gw->get_ref<const std::string&>());
  }
  return std::move(sum).result();
}

Sample sum_rollups(std::span<const Rollup> rollups, const Scope& scope) {
  Summer sum(scope);
  for (const Rollup& r : rollups) sum.add(r.data, r.gateway);
  return std::move(sum).result();
}

}  // namespace sluice::control::analysis
