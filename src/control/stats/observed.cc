#include "control/stats/observed.h"

#include <algorithm>
#include <set>

#include "control/validate.h"

namespace sluice::control::stats {
namespace {

using Json = nlohmann::json;

constexpr int64_t kMinute = 60'000;

bool is_count(const Json& v) {
  return v.is_number_unsigned() || (v.is_number_integer() && v.get<int64_t>() >= 0);
}

uint64_t count_of(const Json& obj, const char* key) {
  auto it = obj.find(key);
  return it != obj.end() && is_count(*it) ? it->get<uint64_t>() : 0;
}

// An object whose requests and errors (when present) are non-negative integers, stamped; null if
// not so. Other keys are kept: a newer gateway may report more.
Json checked_counts(const Json& v, int64_t at_ms) {
  if (!v.is_object()) return nullptr;
  for (const char* key : {"requests", "errors"}) {
    auto it = v.find(key);
    if (it != v.end() && !is_count(*it)) return nullptr;
  }
  Json out = v;
  out["seen_ms_max"] = at_ms;
  return out;
}

struct Acc {
  ObservedTotals t;
  std::set<std::string> gateways, cities;
  void add(const Json& counts, int64_t minute, const std::string& gateway,
           const std::string& city) {
    const uint64_t n = count_of(counts, "requests");
    if (n == 0) return;
    t.requests += n;
    t.errors += count_of(counts, "errors");
    if (t.first_seen_ms == 0 || minute < t.first_seen_ms) t.first_seen_ms = minute;
    auto seen = counts.find("seen_ms_max");
    int64_t last = minute + kMinute - 1;
    if (seen != counts.end() && seen->is_number_integer()) last = seen->get<int64_t>();
    t.last_seen_ms = std::max(t.last_seen_ms, last);
    gateways.insert(gateway);
    if (!city.empty()) cities.insert(city);
  }
  ObservedTotals done() && {
    t.gateways.assign(gateways.begin(), gateways.end());
    t.cities.assign(cities.begin(), cities.end());
    return std::move(t);
  }
};

std::string city_of(const Json& data) {
  auto c = data.find("city");
  return c != data.end() && c->is_string() ? c->get<std::string>() : std::string();
}

}  // namespace

void stamp_observed(Json& sections, int64_t at_ms) {
  if (auto e = sections.find("edges"); e != sections.end()) {
    Json kept = Json::object();
    size_t n = 0;
    if (e->is_object()) {
      for (auto callee = e->begin(); callee != e->end(); ++callee) {
        if (!is_valid_name(callee.key()) || !callee->is_object()) continue;
        for (auto caller = callee->begin(); caller != callee->end(); ++caller) {
          if (n >= kMaxEdgesPerSnapshot) break;
          if (!is_valid_name(caller.key())) continue;
          Json c = checked_counts(*caller, at_ms);
          if (c.is_null()) continue;
          kept[callee.key()][caller.key()] = std::move(c);
          ++n;
        }
      }
    }
    *e = std::move(kept);
  }
  if (auto ch = sections.find("channels"); ch != sections.end()) {
    Json kept = Json::object();
    if (ch->is_object()) {
      for (auto it = ch->begin(); it != ch->end() && kept.size() < kMaxChannelsPerSnapshot; ++it) {
        if (!is_valid_name(it.key())) continue;
        Json c = checked_counts(*it, at_ms);
        if (!c.is_null()) kept[it.key()] = std::move(c);
      }
    }
    *ch = std::move(kept);
  }
}

std::vector<ObservedEdge> observed_edges(const MinuteRollups& minutes, bool* truncated) {
  std::map<std::pair<std::string, std::string>, Acc> by;  // (caller, callee)
  bool cut = false;
  for (const auto& [key, data] : minutes) {
    if (!data.is_object()) continue;
    auto edges = data.find("edges");
    if (edges == data.end() || !edges->is_object()) continue;
    const std::string city = city_of(data);
    for (auto callee = edges->begin(); callee != edges->end(); ++callee) {
      if (!callee->is_object()) continue;
      for (auto caller = callee->begin(); caller != callee->end(); ++caller) {
        if (!caller->is_object() || count_of(*caller, "requests") == 0) continue;
        std::pair<std::string, std::string> id{caller.key(), callee.key()};
        auto it = by.find(id);
        if (it == by.end()) {
          if (by.size() >= kMaxObservedAnswer) {
            cut = true;
            continue;
          }
          it = by.emplace(std::move(id), Acc{}).first;
        }
        it->second.add(*caller, key.first, key.second, city);
      }
    }
  }
  if (truncated) *truncated = cut;
  std::vector<ObservedEdge> out;
  out.reserve(by.size());
  for (auto& [id, acc] : by) {
    ObservedEdge e;
    static_cast<ObservedTotals&>(e) = std::move(acc).done();
    e.caller = id.first;
    e.callee = id.second;
    out.push_back(std::move(e));
  }
  return out;
}

std::vector<ObservedChannel> observed_channels(const MinuteRollups& minutes, bool* truncated) {
  std::map<std::string, Acc> by;
  bool cut = false;
  for (const auto& [key, data] : minutes) {
    if (!data.is_object()) continue;
    auto channels = data.find("channels");
    if (channels == data.end() || !channels->is_object()) continue;
    const std::string city = city_of(data);
    for (auto it = channels->begin(); it != channels->end(); ++it) {
      if (!it->is_object() || count_of(*it, "requests") == 0) continue;
      auto found = by.find(it.key());
      if (found == by.end()) {
        if (by.size() >= kMaxObservedAnswer) {
          cut = true;
          continue;
        }
        found = by.emplace(it.key(), Acc{}).first;
      }
      found->second.add(*it, key.first, key.second, city);
    }
  }
  if (truncated) *truncated = cut;
  std::vector<ObservedChannel> out;
  out.reserve(by.size());
  for (auto& [name, acc] : by) {
    ObservedChannel c;
    static_cast<ObservedTotals&>(c) = std::move(acc).done();
    c.channel = name;
    out.push_back(std::move(c));
  }
  return out;
}

}  // namespace sluice::control::stats
