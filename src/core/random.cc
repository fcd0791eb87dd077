#include "core/random.h"

#include <sys/random.h>

#include <cerrno>
#include <cstddef>
#include <random>

namespace sluice::core {
namespace {

uint64_t splitmix64(uint64_t& x) {
  uint64_t z = (x += 0x9e3779b97f4a7c15ULL);
  z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ULL;
  z = (z ^ (z >> 27)) * 0x94d049bb133111ebULL;
  return z ^ (z >> 31);
}

// Fills `out` from the kernel's entropy pool; falls back to std::random_device where
// getrandom(2) is unavailable (old kernels, some sandboxes).
void os_entropy(uint64_t (&out)[4]) {
  auto* p = reinterpret_cast<unsigned char*>(out);
  size_t got = 0;
  while (got < sizeof out) {
    ssize_t n = ::getrandom(p + got, sizeof out - got, 0);
    if (n > 0) {
      got += static_cast<size_t>(n);
    } else if (n < 0 && errno == EINTR) {
      continue;
    } else {
      break;
    }
  }
  if (got < sizeof out) {
    std::random_device rd;
    for (auto& w : out) w = (static_cast<uint64_t>(rd()) << 32) ^ rd();
  }
}

}  // namespace

Rng::Rng() {
  reseed();
}

Rng::Rng(uint64_t seed) {
  seed_from(seed);
}

void Rng::seed_from(uint64_t seed) {
  for (auto& w : s_) w = splitmix64(seed);
}

void Rng::reseed() {
  os_entropy(s_);
  // The all-zero state is the one fixed point of xoshiro; mix through splitmix64 so that it
  // cannot occur.
  if ((s_[0] | s_[1] | s_[2] | s_[3]) == 0) seed_from(0);
}

}  // namespace sluice::core
