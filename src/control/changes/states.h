// A change's states and the transitions between them:
//   proposed -> approved -> rolling_out -> done | rolled_back
//   proposed | approved -> rejected | aborted;  rolling_out -> aborted;  done -> rolled_back
// rejected, aborted and rolled_back are final. A review of an emergency change is recorded as an
// entry with from = to (the state does not move).
#pragma once

#include <string_view>

namespace sluice::control::changes {

inline constexpr std::string_view kProposed = "proposed";
inline constexpr std::string_view kApproved = "approved";
inline constexpr std::string_view kRollingOut = "rolling_out";
inline constexpr std::string_view kDone = "done";
inline constexpr std::string_view kRolledBack = "rolled_back";
inline constexpr std::string_view kRejected = "rejected";
inline constexpr std::string_view kAborted = "aborted";

bool known_state(std::string_view s);
// Whether `from` may go to `to` ("" -> proposed starts a change; from == to is a review entry
// and allowed in any state).
bool may_move(std::string_view from, std::string_view to);
bool is_final(std::string_view s);

}  // namespace sluice::control::changes
