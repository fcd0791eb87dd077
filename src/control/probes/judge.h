// Whether one answer to a probe is a good one (spec.h's `expect`), and if not, why: the reason is
// what `sluice ctl probes` shows and what an incident's timeline quotes.
#pragma once

#include <cstdint>
#include <string>

#include "control/probes/spec.h"

namespace sluice::control::probes {

struct Answer {
  int status = 0;     // 0: no answer
  std::string error;  // with status 0: the transport's reason ("connection refused", "timed out")
  std::string body;   // bounded by the prober (kMaxReplyBytes)
  int64_t latency_ms = 0;
};

// The reply bytes a probe reads at most; a longer answer is a failure, not a growing string.
inline constexpr size_t kMaxReplyBytes = 1 << 20;

// Empty: a good answer. Otherwise the first expectation it missed, in the order status, body,
// JSON field, latency.
std::string judge(const ProbeSpec& spec, const Answer& a);

}  // namespace sluice::control::probes
