#include "control/probes/history.h"

#include <algorithm>
#include <cmath>
#include <vector>

namespace sluice::control::probes {

Transition History::record(Result r) {
  const bool first = recent_.empty();
  Transition t = Transition::kNone;
  if (r.ok) {
    failures_in_row_ = 0;
    if (failing_) {
      failing_ = false;
      since_ms_ = r.at_ms;
      t = Transition::kRecovered;
    }
  } else {
    ++failures_in_row_;
    last_failure_ = r;
    if (!failing_ && failures_in_row_ >= fail_after_) {
      failing_ = true;
      since_ms_ = r.at_ms;
      t = Transition::kFailing;
    }
  }
  if (first && t == Transition::kNone) since_ms_ = r.at_ms;
  recent_.push_back(std::move(r));
  const int64_t now = recent_.back().at_ms;
  while (!recent_.empty() &&
         (recent_.size() > kMaxResults || recent_.front().at_ms <= now - kKeepMs))
    recent_.pop_front();
  return t;
}

WindowFigures History::window(int64_t now, int64_t span_ms) const {
  WindowFigures w;
  std::vector<int64_t> latencies;
  for (auto it = recent_.rbegin(); it != recent_.rend() && it->at_ms > now - span_ms; ++it) {
    if (it->at_ms > now) continue;
    ++w.runs;
    w.good += it->ok ? 1 : 0;
    latencies.push_back(it->latency_ms);
  }
  if (w.runs == 0) return w;
  w.success_ratio = static_cast<double>(w.good) / static_cast<double>(w.runs);
  std::sort(latencies.begin(), latencies.end());
  // Nearest rank: the smallest value with at least q of the runs at or below it.
  auto rank = [&](double q) {
    size_t k = static_cast<size_t>(std::ceil(q * static_cast<double>(latencies.size())));
    if (k < 1) k = 1;
    return latencies[std::min(k, latencies.size()) - 1];
  };
  w.p50_ms = rank(0.50);
  w.p99_ms = rank(0.99);
  return w;
}

std::string_view History::state() const {
  if (recent_.empty()) return "pending";
  return failing_ ? "failing" : "ok";
}

}  // namespace sluice::control::probes
