#include "router/units.h"

#include <algorithm>
#include <stdexcept>

#include "router/request_input.h"
#include "upstream/load_balancer.h"

namespace sluice::router {

namespace {

bool is_digit(char c) {
  return c >= '0' && c <= '9';
}
bool is_blank(char c) {
  return c == ' ' || c == '\t';
}

std::string_view trim(std::string_view s) {
  while (!s.empty() && is_blank(s.front())) s.remove_prefix(1);
  while (!s.empty() && is_blank(s.back())) s.remove_suffix(1);
  return s;
}

// Sorted, merged ranges of the shards for which pred(shard) holds.
template <class Pred>
std::vector<config::ShardRange> runs(uint32_t shards, Pred pred) {
  std::vector<config::ShardRange> out;
  for (uint32_t s = 0; s < shards; ++s) {
    if (!pred(s)) continue;
    if (!out.empty() && out.back().last + 1 == s) {
      out.back().last = s;
    } else {
      out.push_back({s, s});
    }
  }
  return out;
}

// Ranges for an error message: long lists are cut, the count says how much is missing.
std::string format_for_error(std::span<const config::ShardRange> ranges) {
  constexpr size_t kMax = 16;
  if (ranges.size() <= kMax) return format_shard_ranges(ranges);
  return format_shard_ranges(ranges.first(kMax)) + ",... (" + std::to_string(ranges.size()) +
         " ranges)";
}

std::string quoted(std::string_view s) {
  return "\"" + std::string(s) + "\"";
}

std::string join(const std::vector<std::string>& parts, std::string_view sep) {
  std::string out;
  for (const auto& p : parts) {
    if (!out.empty()) out += sep;
    out += p;
  }
  return out;
}

}  // namespace

uint32_t shard_of(std::string_view key, uint32_t shards) {
  if (shards <= 1) return 0;
  // Decimal keys of any length (account numbers beyond 64 bits): Horner's rule mod shards.
  // shards <= 100000, so r * 10 + 9 never overflows.
  uint64_t r = 0;
  bool decimal = !key.empty();
  for (char c : key) {
    if (!is_digit(c)) {
      decimal = false;
      break;
    }
    r = (r * 10 + static_cast<uint64_t>(c - '0')) % shards;
  }
  if (decimal) return static_cast<uint32_t>(r);
  return static_cast<uint32_t>(upstream::hash_key(key) % shards);
}

std::optional<std::string_view> unit_key(const config::Units& u, std::string_view path,
                                         std::string_view query, const http::HeaderMap& headers) {
  RequestInputs request;
  request.path = path;
  request.query = query;
  request.headers = &headers;
  auto v = input_value(u.key, request);
  if (!v || v->empty()) return std::nullopt;
  return v;
}

// ---- UnitTable ----

struct UnitTable::Move {
  uint8_t from = kNoCity;
  uint8_t to = kNoCity;  // kNoCity: a new city, `to_name`, is added to the table
  std::string to_name;
  std::vector<uint32_t> shards;  // ascending
};

std::shared_ptr<const UnitTable> UnitTable::from_config(const config::Units& u, uint64_t version) {
  auto t = std::shared_ptr<UnitTable>(new UnitTable());
  t->version_ = version;
  t->shards_ = u.shards;
  t->owner_.assign(u.shards, kNoCity);
  t->switching_.assign((u.shards + 63) / 64, 0);
  for (const config::UnitOwner& o : u.owners) {
    auto it = std::find(t->cities_.begin(), t->cities_.end(), o.city);
    const auto index = static_cast<size_t>(it - t->cities_.begin());
    if (it == t->cities_.end()) {
      if (t->cities_.size() >= kNoCity) {
        throw std::invalid_argument("units.owners: more than 254 cities");
      }
      t->cities_.push_back(o.city);
    }
    for (const config::ShardRange& r : o.ranges) {
      for (uint64_t s = r.first; s <= r.last && s < u.shards; ++s) {
        t->owner_[s] = static_cast<uint8_t>(index);
      }
    }
  }
  return t;
}

std::vector<config::UnitOwner> UnitTable::owners() const {
  std::vector<config::UnitOwner> out(cities_.size());
  for (size_t c = 0; c < cities_.size(); ++c) out[c].city = cities_[c];
  for (uint32_t s = 0; s < shards_; ++s) {
    if (owner_[s] == kNoCity) continue;
    auto& ranges = out[owner_[s]].ranges;
    if (!ranges.empty() && ranges.back().last + 1 == s) {
      ranges.back().last = s;
    } else {
      ranges.push_back({s, s});
    }
  }
  return out;
}

std::vector<config::ShardRange> UnitTable::switching_ranges() const {
  if (switching_count_ == 0) return {};
  return runs(shards_, [this](uint32_t s) { return switching(s); });
}

std::shared_ptr<UnitTable> UnitTable::next() const {
  auto t = std::shared_ptr<UnitTable>(new UnitTable(*this));
  t->version_ = version_ + 1;
  return t;
}

// Checks a move and resolves it to city indices and shards; the error text (all problems found,
// "; "-separated) or empty.
std::string UnitTable::plan_move(std::string_view from, std::string_view to,
                                 std::span<const config::ShardRange> ranges,
                                 const std::vector<std::string>& cities, Move& move) const {
  std::vector<std::string> errors;
  auto known = [&] {
    std::vector<std::string> all = cities_;
    for (const auto& c : cities) {
      if (std::find(all.begin(), all.end(), c) == all.end()) all.push_back(c);
    }
    return " (known: " + join(all, ", ") + ")";
  };

  auto from_it = std::find(cities_.begin(), cities_.end(), from);
  if (from.empty()) {
    errors.push_back("from: a city is required");
  } else if (from_it == cities_.end()) {
    const bool listed = std::find(cities.begin(), cities.end(), from) != cities.end();
    errors.push_back(listed ? "nothing to do: " + quoted(from) + " owns no shards"
                            : "from: unknown city " + quoted(from) + known());
  } else {
    move.from = static_cast<uint8_t>(from_it - cities_.begin());
  }

  auto to_it = std::find(cities_.begin(), cities_.end(), to);
  if (to.empty()) {
    errors.push_back("to: a city is required");
  } else if (to_it != cities_.end()) {
    move.to = static_cast<uint8_t>(to_it - cities_.begin());
  } else if (std::find(cities.begin(), cities.end(), to) != cities.end()) {
    if (cities_.size() >= kNoCity) {
      errors.push_back("to: a table holds at most 254 cities");
    } else {
      move.to_name = std::string(to);
    }
  } else {
    errors.push_back("to: unknown city " + quoted(to) + known());
  }
  if (!from.empty() && from == to) errors.push_back("from and to are the same city " + quoted(to));

  for (const config::ShardRange& r : ranges) {
    if (r.first > r.last) {
      errors.push_back("shard range " + std::to_string(r.first) + "-" + std::to_string(r.last) +
                       ": first is greater than last");
    } else if (r.last >= shards_) {
      errors.push_back("shard range " + format_shard_ranges(std::span(&r, 1)) + " is outside 0.." +
                       std::to_string(shards_ - 1));
    }
  }
  if (!errors.empty()) return join(errors, "; ");

  if (ranges.empty()) {
    for (uint32_t s = 0; s < shards_; ++s) {
      if (owner_[s] == move.from) move.shards.push_back(s);
    }
    if (move.shards.empty()) return "nothing to do: " + quoted(from) + " owns no shards";
    return {};
  }
  std::vector<uint8_t> selected(shards_, 0);
  for (const config::ShardRange& r : ranges) {
    for (uint32_t s = r.first; s <= r.last; ++s) selected[s] = 1;
  }
  auto foreign = runs(shards_, [&](uint32_t s) { return selected[s] && owner_[s] != move.from; });
  if (!foreign.empty()) {
    return "shards " + format_for_error(foreign) + " are not owned by " + quoted(from);
  }
  for (uint32_t s = 0; s < shards_; ++s) {
    if (selected[s]) move.shards.push_back(s);
  }
  return {};
}

UnitTable::Result UnitTable::with_switch(std::string_view from, std::string_view to,
                                         std::span<const config::ShardRange> ranges,
                                         const std::vector<std::string>& cities) const {
  Move move;
  std::string error = plan_move(from, to, ranges, cities, move);
  if (!error.empty()) return {nullptr, std::move(error)};
  auto t = next();
  if (move.to == kNoCity) {
    move.to = static_cast<uint8_t>(t->cities_.size());
    t->cities_.push_back(move.to_name);
  }
  for (uint32_t s : move.shards) t->owner_[s] = move.to;
  std::fill(t->switching_.begin(), t->switching_.end(), 0);
  t->switching_count_ = 0;
  return {std::move(t), {}};
}

UnitTable::Result UnitTable::prepared(std::string_view from, std::string_view to,
                                      std::span<const config::ShardRange> ranges,
                                      const std::vector<std::string>& cities) const {
  if (switching_count_ > 0) {
    return {nullptr, "a switch is already prepared for shards " +
                         format_for_error(switching_ranges()) + "; commit or abort it first"};
  }
  Move move;
  std::string error = plan_move(from, to, ranges, cities, move);
  if (!error.empty()) return {nullptr, std::move(error)};
  auto t = next();
  for (uint32_t s : move.shards) t->switching_[s / 64] |= uint64_t{1} << (s % 64);
  t->switching_count_ = static_cast<uint32_t>(move.shards.size());
  return {std::move(t), {}};
}

UnitTable::Result UnitTable::aborted() const {
  if (switching_count_ == 0) return {nullptr, "nothing to do: no switch is prepared"};
  auto t = next();
  std::fill(t->switching_.begin(), t->switching_.end(), 0);
  t->switching_count_ = 0;
  return {std::move(t), {}};
}

// ---- shard range text ----

std::optional<std::vector<config::ShardRange>> parse_shard_ranges(std::string_view text,
                                                                  uint32_t shards,
                                                                  std::string* error) {
  auto fail = [&](std::string message) -> std::optional<std::vector<config::ShardRange>> {
    if (error) *error = std::move(message);
    return std::nullopt;
  };
  // A shard number; values too large for any table stop at a cap that is still out of range.
  auto number = [](std::string_view& s, uint64_t& out) {
    if (s.empty() || !is_digit(s.front())) return false;
    out = 0;
    while (!s.empty() && is_digit(s.front())) {
      out = std::min<uint64_t>(out * 10 + static_cast<uint64_t>(s.front() - '0'), UINT32_MAX);
      s.remove_prefix(1);
    }
    return true;
  };

  const std::string_view whole = text;
  std::vector<config::ShardRange> out;
  if (trim(text).empty()) return out;
  while (true) {
    const size_t comma = text.find(',');
    const std::string_view item = trim(text.substr(0, comma));
    if (item.empty()) return fail("empty item in shard list " + quoted(whole));
    std::string_view rest = item;
    uint64_t first = 0;
    uint64_t last = 0;
    bool ok = number(rest, first);
    last = first;
    if (ok) {
      rest = trim(rest);
      if (!rest.empty() && rest.front() == '-') {
        rest = trim(rest.substr(1));
        ok = number(rest, last);
      }
      ok = ok && rest.empty();
    }
    if (!ok) return fail("bad shard range " + quoted(item) + ": expected N or N-M");
    if (first > last) {
      return fail("shard range " + quoted(item) + ": first is greater than last");
    }
    if (last >= shards) {
      return fail("shard range " + quoted(item) +
                  (shards == 0 ? std::string(" is outside the table (no shards)")
                               : " is outside 0.." + std::to_string(shards - 1)));
    }
    out.push_back({static_cast<uint32_t>(first), static_cast<uint32_t>(last)});
    if (comma == std::string_view::npos) break;
    text.remove_prefix(comma + 1);
  }
  return out;
}

std::string format_shard_ranges(std::span<const config::ShardRange> ranges) {
  std::string out;
  for (const config::ShardRange& r : ranges) {
    if (!out.empty()) out += ',';
    out += std::to_string(r.first);
    if (r.last != r.first) {
      out += '-';
      out += std::to_string(r.last);
    }
  }
  return out;
}

}  // namespace sluice::router
