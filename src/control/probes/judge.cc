#include "control/probes/judge.h"

#include <algorithm>

#include <fmt/format.h>

#include "core/json.h"

namespace sluice::control::probes {
namespace {

// A quoted excerpt of what came back, for a reason a person reads.
std::string excerpt(const std::string& s, size_t max = 80) {
  std::string out;
  for (char c : s.substr(0, max))
    out +=
        (static_cast<unsigned char>(c) < 0x20 || static_cast<unsigned char>(c) >= 0x7f) ? '?' : c;
  return s.size() > max ? out + "..." : out;
}

}  // namespace

std::string judge(const ProbeSpec& spec, const Answer& a) {
  if (a.status == 0) return a.error.empty() ? "no answer" : excerpt(a.error, 200);
  if (std::find(spec.statuses.begin(), spec.statuses.end(), a.status) == spec.statuses.end()) {
    std::string want;
    for (int s : spec.statuses) want += (want.empty() ? "" : ", ") + std::to_string(s);
    return fmt::format("status {} (expected {})", a.status, want);
  }
  if (spec.body_contains && a.body.find(*spec.body_contains) == std::string::npos)
    return fmt::format("body does not contain '{}'", excerpt(*spec.body_contains));
  if (spec.json_path) {
    std::string error;
    auto doc = core::parse_json(a.body, &error);
    if (!doc) return fmt::format("body is not JSON ({})", excerpt(error));
    const nlohmann::json* v = json_at(*doc, *spec.json_path);
    if (v == nullptr) return fmt::format("JSON field {} is missing", *spec.json_path);
    if (*v != spec.json_equals)
      return fmt::format("JSON field {} is {} (expected {})", *spec.json_path, excerpt(v->dump()),
                         excerpt(spec.json_equals.dump()));
  }
  if (spec.latency_under_ms && a.latency_ms >= *spec.latency_under_ms)
    return fmt::format("latency {} ms (expected under {} ms)", a.latency_ms,
                       *spec.latency_under_ms);
  return "";
}

}  // namespace sluice::control::probes
