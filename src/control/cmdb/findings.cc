#include "control/cmdb/findings.h"

#include <fmt/format.h>

#include <algorithm>
#include <array>

namespace sluice::control::cmdb {
namespace {

constexpr std::array<std::string_view, kFindingKindCount> kKindNames = {
    "missing",          "stale", "mismatch", "unowned", "duplicate", "undeclared_dependency",
    "unused_dependency"};

}  // namespace

std::string_view to_string(FindingKind k) {
  return kKindNames[static_cast<std::size_t>(k)];
}

std::optional<FindingKind> parse_finding_kind(std::string_view s) {
  for (std::size_t i = 0; i < kKindNames.size(); ++i) {
    if (kKindNames[i] == s) return static_cast<FindingKind>(i);
  }
  return std::nullopt;
}

std::string finding_id(const Finding& f) {
  std::uint64_t h = 14695981039346656037ULL;
  auto mix = [&h](std::string_view s) {
    for (unsigned char c : s) {
      h ^= c;
      h *= 1099511628211ULL;
    }
    h ^= 0;
    h *= 1099511628211ULL;
  };
  mix(to_string(f.kind));
  mix(f.subject);
  mix(f.attribute);
  mix(f.other);
  mix(f.declared);
  mix(f.observed);
  return fmt::format("{:016x}", h);
}

nlohmann::json to_json(const Finding& f) {
  nlohmann::json j = {{"id", f.id},
                      {"kind", to_string(f.kind)},
                      {"subject", f.subject},
                      {"attribute", f.attribute},
                      {"declared", f.declared},
                      {"observed", f.observed},
                      {"fix", f.fix},
                      {"fixable", f.fixable}};
  if (f.observed_source) j["observed_source"] = to_string(*f.observed_source);
  if (!f.other.empty()) j["other"] = f.other;
  return j;
}

void FindingBook::update(std::vector<Finding> findings, std::int64_t now) {
  findings_ = std::move(findings);
  updated_ms_ = now;
  for (auto it = ignored_.begin(); it != ignored_.end();) {
    it = find(it->first) ? std::next(it) : ignored_.erase(it);
  }
}

const Finding* FindingBook::find(std::string_view id) const {
  for (const Finding& f : findings_) {
    if (f.id == id) return &f;
  }
  return nullptr;
}

bool FindingBook::ignore(std::string_view id, Ignore why) {
  if (!find(id)) return false;
  ignored_[std::string(id)] = std::move(why);
  return true;
}

const FindingBook::Ignore* FindingBook::ignored(std::string_view id) const {
  auto it = ignored_.find(id);
  return it == ignored_.end() ? nullptr : &it->second;
}

std::array<std::int64_t, kFindingKindCount> FindingBook::open_by_kind() const {
  std::array<std::int64_t, kFindingKindCount> n{};
  for (const Finding& f : findings_) {
    if (!ignored(f.id)) ++n[static_cast<std::size_t>(f.kind)];
  }
  return n;
}

nlohmann::json FindingBook::to_json(bool include_ignored, std::optional<FindingKind> kind) const {
  nlohmann::json list = nlohmann::json::array();
  nlohmann::json counts = nlohmann::json::object();
  for (std::string_view k : kKindNames) counts[std::string(k)] = 0;
  std::int64_t ignored_count = 0;
  for (const Finding& f : findings_) {
    const Ignore* ig = ignored(f.id);
    if (ig) {
      ++ignored_count;
    } else {
      counts[std::string(cmdb::to_string(f.kind))] =
          counts[std::string(cmdb::to_string(f.kind))].get<std::int64_t>() + 1;
    }
    if ((ig && !include_ignored) || (kind && f.kind != *kind)) continue;
    nlohmann::json j = cmdb::to_json(f);
    if (ig) j["ignored"] = {{"by", ig->by}, {"reason", ig->reason}, {"at_ms", ig->at_ms}};
    list.push_back(std::move(j));
  }
  return {{"updated_ms", updated_ms_},
          {"findings", std::move(list)},
          {"counts", std::move(counts)},
          {"ignored", ignored_count}};
}

}  // namespace sluice::control::cmdb
