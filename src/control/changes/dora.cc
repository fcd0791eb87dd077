#include "control/changes/dora.h"

#include <algorithm>
#include <cmath>

#include "control/changes/states.h"

namespace sluice::control::changes {
namespace {

using Json = nlohmann::json;

constexpr double kDayMs = 86'400'000.0;

const ChangeTransition* first_to(const ChangeRecord& c, std::string_view state) {
  for (const ChangeTransition& t : c.transitions)
    if (t.to == state && t.from != t.to) return &t;
  return nullptr;
}

Json opt(const std::optional<double>& v) {
  return v ? Json(*v) : Json(nullptr);
}

}  // namespace

std::optional<double> percentile(std::vector<double> values, double q) {
  if (values.empty()) return std::nullopt;
  std::sort(values.begin(), values.end());
  const auto rank = static_cast<size_t>(std::ceil(q * static_cast<double>(values.size())));
  return values[std::clamp<size_t>(rank, 1, values.size()) - 1];
}

Figures figures(const std::vector<ChangeRecord>& changes, int64_t from_ms, int64_t to_ms) {
  Figures f;
  f.from_ms = from_ms;
  f.to_ms = to_ms;
  std::vector<double> lead, restore;
  int64_t rollback_attempts = 0;
  auto in_window = [&](int64_t at) { return at >= from_ms && at < to_ms; };
  for (const ChangeRecord& c : changes) {
    const bool rollback = c.operation == "rollback";
    if (const ChangeTransition* done = first_to(c, kDone); done && in_window(done->at_ms)) {
      ++f.deployments;
      ++f.attempts;
      if (rollback) ++rollback_attempts;
      if (c.emergency) {
        ++f.emergency;
        if (c.review_required) ++f.review_pending;
      }
      lead.push_back(static_cast<double>(done->at_ms - c.proposed_ms) / 1000.0);
      if (const ChangeTransition* back = first_to(c, kRolledBack)) {
        ++f.failed;
        if (rollback) ++f.failed_rollbacks;
        restore.push_back(static_cast<double>(back->at_ms - done->at_ms) / 1000.0);
      }
      continue;
    }
    // Never done: aborted after approval, or rolled back while rolling out.
    const ChangeTransition* abort = first_to(c, kAborted);
    if (abort == nullptr) abort = first_to(c, kRolledBack);
    if (abort && in_window(abort->at_ms) &&
        (abort->from == kApproved || abort->from == kRollingOut)) {
      ++f.attempts;
      ++f.failed;
      if (rollback) {
        ++rollback_attempts;
        ++f.failed_rollbacks;
      }
    }
  }
  f.rollbacks = rollback_attempts;
  const double days = static_cast<double>(to_ms - from_ms) / kDayMs;
  f.per_day = days > 0 ? static_cast<double>(f.deployments) / days : 0;
  f.lead_p50_s = percentile(lead, 0.5);
  f.lead_p90_s = percentile(lead, 0.9);
  f.restore_p50_s = percentile(restore, 0.5);
  f.restore_p90_s = percentile(restore, 0.9);
  f.failure_rate =
      f.attempts > 0 ? static_cast<double>(f.failed) / static_cast<double>(f.attempts) : 0;
  f.rollback_failure_rate = rollback_attempts > 0 ? static_cast<double>(f.failed_rollbacks) /
                                                        static_cast<double>(rollback_attempts)
                                                  : 0;
  return f;
}

Json Figures::to_json() const {
  return Json{
      {"from_ms", from_ms},
      {"to_ms", to_ms},
      {"deployments", deployments},
      {"deployment_frequency_per_day", per_day},
      {"lead_time_seconds", {{"p50", opt(lead_p50_s)}, {"p90", opt(lead_p90_s)}}},
      {"failed", failed},
      {"change_attempts", attempts},
      {"change_failure_rate", failure_rate},
      {"time_to_restore_seconds", {{"p50", opt(restore_p50_s)}, {"p90", opt(restore_p90_s)}}},
      {"rollbacks", rollbacks},
      {"failed_rollbacks", failed_rollbacks},
      {"rollback_failure_rate", rollback_failure_rate},
      {"emergency", emergency},
      {"review_pending", review_pending}};
}

}  // namespace sluice::control::changes
