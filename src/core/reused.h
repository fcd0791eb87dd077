// Containers whose assignment keeps the capacity they have: `a = b` (copy or move) copies b's
// elements into a's existing storage instead of taking b's. A struct of them can be reset with
// `s = S{}` without freeing (and later reallocating) its buffers; see gateway::RequestState.
#pragma once

#include <string>
#include <vector>

namespace sluice::core {

template <class T>
class Reused : public T {
 public:
  using T::T;
  using T::operator=;
  Reused() = default;
  Reused(const Reused&) = default;
  Reused(Reused&&) noexcept = default;
  Reused& operator=(const Reused& o) {
    if (this != &o) T::assign(o.begin(), o.end());
    return *this;
  }
  // Deliberately a copy: the storage stays with the target (the source keeps its own).
  Reused& operator=(Reused&& o) {
    if (this != &o) T::assign(o.begin(), o.end());
    return *this;
  }
};

using ReusedString = Reused<std::string>;
template <class E>
using ReusedVector = Reused<std::vector<E>>;

}  // namespace sluice::core
