// Resource kinds as ctl's words name them: "services", "svc", "rate-limits", "rl" ...
#pragma once

#include <optional>
#include <string>

namespace sluice::cli::ctl {

// The API's kind (service, route, rate_limit, units), or nullopt for an unknown word.
std::optional<std::string> canonical_kind(const std::string& word);

}  // namespace sluice::cli::ctl
