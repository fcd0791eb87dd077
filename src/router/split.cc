#include "router/split.h"

#include "upstream/load_balancer.h"

namespace sluice::router {

namespace {

// MurmurHash3's fmix64 after an odd constant: a bijection of the 64-bit hash, so that the split
// point and the ring-hash position of one value are unrelated.
uint64_t remix(uint64_t h) {
  h ^= 0x9e3779b97f4a7c15ull;
  h ^= h >> 33;
  h *= 0xff51afd7ed558ccdull;
  h ^= h >> 33;
  h *= 0xc4ceb9fe1a85ec53ull;
  h ^= h >> 33;
  return h;
}

std::string_view trim(std::string_view s) {
  while (!s.empty() && (s.front() == ' ' || s.front() == '\t')) s.remove_prefix(1);
  while (!s.empty() && (s.back() == ' ' || s.back() == '\t')) s.remove_suffix(1);
  return s;
}

}  // namespace

WeightedSplit::WeightedSplit(const config::Route& route)
    : override_header_(route.split.override_header),
      sticky_header_(route.split.sticky_header),
      sticky_cookie_(route.split.sticky_cookie) {
  entries_.reserve(route.services.size());
  for (size_t i = 0; i < route.services.size(); ++i) {
    const config::SplitService& s = route.services[i];
    entries_.push_back({s.service_index, s.weight});
    total_ += s.weight;
    if (s.canary) canary_ = i;
  }
  // Share ends in 64-bit fixed point: floor(W(i+1) * 2^64 / T). The end of the whole range,
  // 2^64, does not fit: it is kept as UINT64_MAX and slot_at gives that last point to the last
  // service with weight (a bias of 2^-64).
  bounds_.reserve(entries_.size());
  uint64_t below = 0;
  for (const Entry& e : entries_) {
    below += e.weight;
    if (below >= total_ || total_ == 0) {
      bounds_.push_back(UINT64_MAX);
    } else {
      const unsigned __int128 scaled = static_cast<unsigned __int128>(below) << 64;
      bounds_.push_back(static_cast<uint64_t>(scaled / total_));
    }
  }
}

size_t WeightedSplit::slot_at(uint64_t point) const {
  size_t last = 0;
  for (size_t i = 0; i < entries_.size(); ++i) {
    if (entries_[i].weight == 0) continue;
    if (point < bounds_[i]) return i;
    last = i;
  }
  return last;
}

uint64_t WeightedSplit::sticky_point(std::string_view value) {
  return remix(upstream::hash_key(value));
}

size_t WeightedSplit::choose(const http::HeaderMap& headers, core::Rng& rng) const {
  if (canary_ && !override_header_.empty() && headers.get(override_header_) == "1") {
    return *canary_;
  }
  if (!sticky_header_.empty()) {
    if (std::string_view v = headers.get(sticky_header_); !v.empty()) return pick_sticky(v);
  }
  if (!sticky_cookie_.empty()) {
    if (auto v = cookie_value(headers, sticky_cookie_); v && !v->empty()) return pick_sticky(*v);
  }
  return pick_random(rng);
}

std::optional<std::string_view> cookie_value(const http::HeaderMap& headers,
                                             std::string_view name) {
  for (size_t i = 0; i < headers.size(); ++i) {
    const http::HeaderMap::Field f = headers.at(i);
    if (!http::iequals(f.name, "cookie")) continue;
    std::string_view rest = f.value;
    while (!rest.empty()) {
      const size_t semi = rest.find(';');
      std::string_view pair = trim(rest.substr(0, semi));
      rest = semi == std::string_view::npos ? std::string_view() : rest.substr(semi + 1);
      const size_t eq = pair.find('=');
      if (eq == std::string_view::npos) continue;
      if (trim(pair.substr(0, eq)) == name) return trim(pair.substr(eq + 1));
    }
  }
  return std::nullopt;
}

}  // namespace sluice::router
