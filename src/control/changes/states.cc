#include "control/changes/states.h"

#include <array>
#include <utility>

namespace sluice::control::changes {
namespace {

constexpr std::array<std::pair<std::string_view, std::string_view>, 11> kMoves = {{
    {"", kProposed},
    {kProposed, kApproved},
    {kProposed, kRejected},
    {kProposed, kAborted},
    {kApproved, kRollingOut},
    {kApproved, kRejected},
    {kApproved, kAborted},
    {kRollingOut, kDone},
    {kRollingOut, kRolledBack},
    {kRollingOut, kAborted},
    {kDone, kRolledBack},
}};

}  // namespace

bool known_state(std::string_view s) {
  for (std::string_view k :
       {kProposed, kApproved, kRollingOut, kDone, kRolledBack, kRejected, kAborted})
    if (k == s) return true;
  return false;
}

bool may_move(std::string_view from, std::string_view to) {
  if (!from.empty() && from == to) return known_state(from);
  for (const auto& [f, t] : kMoves)
    if (f == from && t == to) return true;
  return false;
}

bool is_final(std::string_view s) {
  return s == kRejected || s == kAborted || s == kRolledBack;
}

}  // namespace sluice::control::changes
