#include "control/stats/stats_store.h"

#include <algorithm>
#include <charconv>
#include <set>
#include <stdexcept>

#include <fmt/format.h>

#include "control/stats/observed.h"

namespace sluice::control {

using Json = nlohmann::json;

namespace {

bool is_gauge_key(std::string_view key) {
  if (key == "concurrency" || key == "in_flight" || key == "max" || key.ends_with("_max"))
    return true;
  // Quantiles (p50, p99, p999) cannot be added up either.
  return key.size() >= 2 && key[0] == 'p' &&
         std::all_of(key.begin() + 1, key.end(), [](char c) { return c >= '0' && c <= '9'; });
}

}  // namespace

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

namespace stats {
namespace {

// A counter as stored: a non-negative integer (anything else counts as 0; the data came from
// a gateway and is not trusted to be well formed).
uint64_t counter(const Json& obj, std::string_view key) {
  if (!obj.is_object()) return 0;
  auto it = obj.find(key);
  if (it == obj.end() || !it->is_number()) return 0;
  if (it->is_number_unsigned()) return it->get<uint64_t>();
  if (it->is_number_integer()) return it->get<int64_t>() > 0 ? it->get<uint64_t>() : 0;
  const double d = it->get<double>();
  return d > 0 && d < 1.8e19 ? static_cast<uint64_t>(d) : 0;
}

Latency latency_of(const Json& item) {
  Latency l;
  if (!item.is_object()) return l;
  auto it = item.find("latency");
  if (it == item.end() || !it->is_object()) return l;
  const Json& h = *it;
  l.count = counter(h, "count");
  l.sum_us = counter(h, "sum_us");
  auto le = h.find("le");
  auto buckets = h.find("buckets");
  if (le == h.end() || !le->is_string() || buckets == h.end() || !buckets->is_array()) return l;
  std::string_view text = le->get_ref<const std::string&>();
  while (!text.empty()) {
    size_t sp = text.find(' ');
    std::string_view word = text.substr(0, sp);
    double v = 0;
    auto [p, ec] = std::from_chars(word.data(), word.data() + word.size(), v);
    if (ec != std::errc() || p != word.data() + word.size())
      return Latency{{}, {}, l.count, l.sum_us};
    l.bounds.push_back(v);
    if (sp == std::string_view::npos) break;
    text.remove_prefix(sp + 1);
  }
  if (buckets->size() != l.bounds.size() + 1) return Latency{{}, {}, l.count, l.sum_us};
  for (const Json& b : *buckets) {
    l.buckets.push_back(b.is_number_unsigned()                          ? b.get<uint64_t>()
                        : b.is_number_integer() && b.get<int64_t>() > 0 ? b.get<uint64_t>()
                                                                        : 0);
  }
  return l;
}

Point point_of(const Json& item) {
  Point p;
  p.requests = counter(item, "requests");
  p.errors = counter(item, "errors");
  p.retries = counter(item, "retries");
  if (item.is_object()) {
    auto c = item.find("concurrency");
    if (c != item.end() && c->is_number()) p.concurrency_max = c->get<double>();
  }
  p.latency = latency_of(item);
  return p;
}

int64_t floor_minute(int64_t ms) {
  return ms - ((ms % kMinuteMs) + kMinuteMs) % kMinuteMs;
}

}  // namespace

std::string_view section_of(Dimension d) {
  switch (d) {
    case Dimension::kRoute:
      return "routes";
    case Dimension::kService:
      return "services";
    case Dimension::kEndpoint:
      return "endpoints";
    case Dimension::kCity:
      return "cities";
    case Dimension::kChannel:
      return "channels";
  }
  return "services";
}

std::optional<Dimension> parse_dimension(std::string_view name) {
  if (name == "route") return Dimension::kRoute;
  if (name == "service") return Dimension::kService;
  if (name == "endpoint") return Dimension::kEndpoint;
  if (name == "city") return Dimension::kCity;
  if (name == "channel") return Dimension::kChannel;
  return std::nullopt;
}

void Latency::add(const Latency& other) {
  count += other.count;
  sum_us += other.sum_us;
  mixed = mixed || other.mixed;
  if (other.buckets.empty()) return;
  if (buckets.empty() && !mixed) {
    bounds = other.bounds;
    buckets = other.buckets;
    return;
  }
  if (bounds != other.bounds) {
    mixed = true;  // not comparable: keep the first
    return;
  }
  for (size_t i = 0; i < buckets.size(); ++i) buckets[i] += other.buckets[i];
}

std::optional<double> Latency::percentile(double q) const {
  uint64_t total = 0;
  for (uint64_t b : buckets) total += b;
  if (total == 0 || bounds.empty()) return std::nullopt;
  q = std::clamp(q, 0.0, 1.0);
  const double rank = q * static_cast<double>(total);
  uint64_t below = 0;
  for (size_t i = 0; i < buckets.size(); ++i) {
    if (static_cast<double>(below + buckets[i]) >= rank && buckets[i] > 0) {
      if (i == bounds.size()) return bounds.back();  // +Inf: the highest finite bound
      const double lower = i == 0 ? 0.0 : bounds[i - 1];
      const double upper = bounds[i];
      return lower + (upper - lower) * (rank - static_cast<double>(below)) /
                         static_cast<double>(buckets[i]);
    }
    below += buckets[i];
  }
  return bounds.back();
}

void Point::add(const Point& other) {
  requests += other.requests;
  errors += other.errors;
  retries += other.retries;
  concurrency_max = std::max(concurrency_max, other.concurrency_max);
  latency.add(other.latency);
}

std::optional<std::string> check(const SeriesQuery& q) {
  if (q.step_ms <= 0 || q.step_ms % kMinuteMs != 0)
    return fmt::format("step_ms: must be a positive multiple of {} (a minute), got {}", kMinuteMs,
                       q.step_ms);
  if (q.from_ms < 0 || q.to_ms <= q.from_ms)
    return fmt::format("from_ms, to_ms: expected 0 <= from < to, got {} and {}", q.from_ms,
                       q.to_ms);
  const int64_t from = floor_minute(q.from_ms);
  const int64_t steps = (q.to_ms - from + q.step_ms - 1) / q.step_ms;
  if (steps > kMaxPoints)
    return fmt::format("the range holds {} steps of {} ms; at most {} per query", steps, q.step_ms,
                       kMaxPoints);
  return std::nullopt;
}

Summary summarize(const Series& s, int64_t from_ms, int64_t to_ms) {
  Point all;
  for (const Point& p : s.points) all.add(p);
  Summary out;
  out.requests = all.requests;
  out.errors = all.errors;
  const double seconds = static_cast<double>(std::max<int64_t>(to_ms - from_ms, 1)) / 1000.0;
  out.rate_per_second = static_cast<double>(all.requests) / seconds;
  out.error_ratio =
      all.requests == 0 ? 0.0 : static_cast<double>(all.errors) / static_cast<double>(all.requests);
  out.p50 = all.latency.percentile(0.5);
  out.p90 = all.latency.percentile(0.9);
  out.p99 = all.latency.percentile(0.99);
  out.concurrency_max = all.concurrency_max;
  return out;
}

StatsStore::StatsStore(Store& store, const ApiOptions& options)
    : store_(store), options_(options) {}

void StatsStore::add(const std::string& gateway, int64_t at, int64_t now, Json data,
                     const Json& sections) {
  std::lock_guard lock(mu_);
  auto& recent = recent_[gateway];
  recent.push_back(Snapshot{at, std::move(data)});
  while (recent.size() > options_.max_recent_per_gateway ||
         (!recent.empty() && recent.front().at_ms < now - options_.recent_stats_ms))
    recent.pop_front();
  Accumulator& acc = minutes_[{at - at % kMinuteMs, gateway}];
  merge_stats(acc.data, sections);
  acc.data["snapshots"] = acc.data.value("snapshots", int64_t{0}) + 1;
  acc.dirty = true;
}

void StatsStore::flush(int64_t now, bool all) {
  // Minute accumulators kept after the minute ends (longer than a snapshot may be late, so a
  // late snapshot never starts a fresh accumulator that would overwrite a written rollup).
  constexpr int64_t kKeepMinutesMs = 10 * kMinuteMs;
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
      // Written on a later call.
      std::lock_guard lock(mu_);
      for (size_t j = i; j < out.size(); ++j) {
        auto it = minutes_.find({out[j].minute, out[j].gateway});
        if (it != minutes_.end()) it->second.dirty = true;
      }
      throw;
    }
  }
}

void StatsStore::prune(int64_t now) {
  store_.prune_rollups(now - options_.stats_retention_ms);
  std::lock_guard lock(mu_);
  for (auto it = recent_.begin(); it != recent_.end();) {
    auto& list = it->second;
    while (!list.empty() && list.front().at_ms < now - options_.recent_stats_ms) list.pop_front();
    it = list.empty() ? recent_.erase(it) : std::next(it);
  }
}

std::vector<Json> StatsStore::recent(int64_t from_ms, int64_t to_ms, const std::string& gateway) {
  std::vector<Json> out;
  {
    std::lock_guard lock(mu_);
    for (const auto& [gw, list] : recent_) {
      if (!gateway.empty() && gw != gateway) continue;
      for (const Snapshot& s : list) {
        if (s.at_ms >= from_ms && s.at_ms < to_ms) out.push_back(s.data);
      }
    }
  }
  std::stable_sort(out.begin(), out.end(), [](const Json& a, const Json& b) {
    return a["at_ms"].get<int64_t>() < b["at_ms"].get<int64_t>();
  });
  return out;
}

std::vector<Rollup> StatsStore::rollups(int64_t from_ms, int64_t to_ms,
                                        const std::string& gateway) {
  return store_.rollup_rows(from_ms, to_ms, gateway);
}

std::map<std::pair<int64_t, std::string>, Json> StatsStore::minutes_in(int64_t from, int64_t to,
                                                                       const std::string& gateway) {
  std::map<std::pair<int64_t, std::string>, Json> minutes;
  for (Rollup& r : store_.rollup_rows(from, to, gateway))
    minutes[{r.minute_ms, r.gateway}] = std::move(r.data);
  std::lock_guard lock(mu_);
  for (auto it = minutes_.lower_bound({from, std::string()});
       it != minutes_.end() && it->first.first < to; ++it) {
    if (!gateway.empty() && it->first.second != gateway) continue;
    minutes[it->first] = it->second.data;
  }
  return minutes;
}

namespace {
// [from, to) rounded out to whole minutes; throws std::invalid_argument like check().
std::pair<int64_t, int64_t> observed_range(int64_t from_ms, int64_t to_ms) {
  SeriesQuery q;
  q.from_ms = from_ms;
  q.to_ms = to_ms;
  if (auto problem = check(q)) throw std::invalid_argument(*problem);
  const int64_t from = floor_minute(from_ms);
  return {from, floor_minute(to_ms - 1) + kMinuteMs};
}
}  // namespace

std::vector<ObservedEdge> StatsStore::edges(int64_t from_ms, int64_t to_ms) {
  auto [from, to] = observed_range(from_ms, to_ms);
  return observed_edges(minutes_in(from, to, {}));
}

std::vector<ObservedChannel> StatsStore::channels(int64_t from_ms, int64_t to_ms) {
  auto [from, to] = observed_range(from_ms, to_ms);
  return observed_channels(minutes_in(from, to, {}));
}

std::vector<Series> StatsStore::series(const SeriesQuery& q) {
  if (auto problem = check(q)) throw std::invalid_argument(*problem);
  const int64_t from = floor_minute(q.from_ms);
  const int64_t steps = (q.to_ms - from + q.step_ms - 1) / q.step_ms;
  const int64_t to = from + steps * q.step_ms;

  const auto minutes = minutes_in(from, to, q.gateway);

  const std::string_view section = section_of(q.by);
  std::map<std::string, Series> by_key;
  auto series_of = [&](const std::string& key) -> Series& {
    auto [it, fresh] = by_key.try_emplace(key);
    if (fresh) {
      if (static_cast<int64_t>(by_key.size()) * steps > kMaxCells) {
        throw std::invalid_argument(fmt::format(
            "the answer would hold more than {} points ({} steps per series); ask for one key, "
            "a shorter range or a longer step",
            kMaxCells, steps));
      }
      it->second.key = key;
      it->second.points.resize(static_cast<size_t>(steps));
      for (int64_t i = 0; i < steps; ++i) it->second.points[i].at_ms = from + i * q.step_ms;
    }
    return it->second;
  };
  if (!q.key.empty()) series_of(q.key);  // asked for by name: listed even without data
  for (const auto& [k, data] : minutes) {
    if (!data.is_object()) continue;
    if (!q.city.empty()) {
      auto c = data.find("city");
      if (c == data.end() || !c->is_string() || c->get_ref<const std::string&>() != q.city)
        continue;
    }
    auto sec = data.find(section);
    if (sec == data.end() || !sec->is_object()) continue;
    const auto step = static_cast<size_t>((k.first - from) / q.step_ms);
    for (auto item = sec->begin(); item != sec->end(); ++item) {
      if (!q.key.empty() && item.key() != q.key) continue;
      series_of(item.key()).points[step].add(point_of(item.value()));
    }
  }
  std::vector<Series> out;
  out.reserve(by_key.size());
  for (auto& [_, s] : by_key) out.push_back(std::move(s));
  return out;
}

}  // namespace stats
}  // namespace sluice::control
