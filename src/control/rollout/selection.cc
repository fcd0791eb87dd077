#include "control/rollout/selection.h"

#include <algorithm>

namespace sluice::control::rollout {

uint64_t order_key(std::string_view change_id, std::string_view gateway_id) {
  uint64_t h = 14695981039346656037ULL;
  auto mix = [&h](unsigned char c) {
    h ^= c;
    h *= 1099511628211ULL;
  };
  for (char c : change_id) mix(static_cast<unsigned char>(c));
  mix(0);
  for (char c : gateway_id) mix(static_cast<unsigned char>(c));
  return h;
}

std::vector<Candidate> rollout_order(std::string_view change_id, std::vector<Candidate> known) {
  std::vector<std::pair<uint64_t, size_t>> keys;
  keys.reserve(known.size());
  for (size_t i = 0; i < known.size(); ++i) keys.emplace_back(order_key(change_id, known[i].id), i);
  std::sort(keys.begin(), keys.end(), [&known](const auto& a, const auto& b) {
    if (a.first != b.first) return a.first < b.first;
    return known[a.second].id < known[b.second].id;
  });
  std::vector<Candidate> out;
  out.reserve(known.size());
  for (const auto& k : keys) out.push_back(std::move(known[k.second]));
  return out;
}

Selection advance(Selection current, const Selector& stage, const std::vector<Candidate>& known,
                  std::string_view change_id) {
  using Kind = Selector::Kind;
  if (stage.kind == Kind::kAll) {
    for (const Candidate& c : known) current.ids.insert(c.id);
    current.all = true;
    return current;
  }
  // The same id listed twice counts once (the first entry's city and zone).
  std::vector<Candidate> live;
  std::set<std::string> seen;
  for (const Candidate& c : known) {
    if (c.live && seen.insert(c.id).second) live.push_back(c);
  }
  live = rollout_order(change_id, std::move(live));

  size_t want = 0;  // how many of the matching live gateways must be selected
  if (stage.kind == Kind::kPercent) {
    want = (live.size() * static_cast<size_t>(stage.percent) + 99) / 100;
    if (!live.empty()) want = std::max<size_t>(want, 1);
  } else if (stage.kind == Kind::kGateways && stage.count > 0) {
    want = static_cast<size_t>(stage.count);
  } else {
    want = live.size();  // every match
  }
  size_t have = 0;
  for (const Candidate& c : live) {
    if (stage.matches(c.id, c.city, c.zone) && current.ids.count(c.id) > 0) ++have;
  }
  for (const Candidate& c : live) {
    if (have >= want) break;
    if (!stage.matches(c.id, c.city, c.zone) || current.ids.count(c.id) > 0) continue;
    current.ids.insert(c.id);
    ++have;
  }
  return current;
}

Selection select(const std::vector<Stage>& stages, size_t reached,
                 const std::vector<Candidate>& known, std::string_view change_id) {
  Selection s;
  for (size_t i = 0; i < reached && i < stages.size(); ++i)
    s = advance(std::move(s), stages[i].select, known, change_id);
  return s;
}

}  // namespace sluice::control::rollout
