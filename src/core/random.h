// Fast non-cryptographic randomness for the hot path (request ids, span ids, load-balancer picks,
// jitter): xoshiro256** per thread, seeded once from the kernel so that ids from different
// threads and processes do not collide. Not for secrets: use getrandom(2) directly for those.
#pragma once

#include <cstdint>
#include <limits>

namespace sluice::core {

class Rng {
 public:
  using result_type = uint64_t;  // also a UniformRandomBitGenerator, for <random> distributions

  Rng();                        // seeded from getrandom(2) (std::random_device as fallback)
  explicit Rng(uint64_t seed);  // deterministic, for tests and reproducible simulations

  uint64_t next_u64() {
    const uint64_t result = rotl(s_[1] * 5, 7) * 9;
    const uint64_t t = s_[1] << 17;
    s_[2] ^= s_[0];
    s_[3] ^= s_[1];
    s_[1] ^= s_[2];
    s_[0] ^= s_[3];
    s_[2] ^= t;
    s_[3] = rotl(s_[3], 45);
    return result;
  }

  // Uniform in [0, n); n must be > 0. Lemire's multiply-shift with rejection: unbiased and,
  // in the common case, free of divisions.
  uint64_t uniform(uint64_t n) {
    unsigned __int128 m = static_cast<unsigned __int128>(next_u64()) * n;
    auto low = static_cast<uint64_t>(m);
    if (low < n) {
      const uint64_t threshold = (0 - n) % n;
      while (low < threshold) {
        m = static_cast<unsigned __int128>(next_u64()) * n;
        low = static_cast<uint64_t>(m);
      }
    }
    return static_cast<uint64_t>(m >> 64);
  }

  // Uniform in [0, 1) with 53 random bits.
  double next_double() { return static_cast<double>(next_u64() >> 11) * 0x1.0p-53; }

  // Re-seeds from the kernel (e.g. in a child after fork(), which would otherwise repeat the
  // parent's sequence).
  void reseed();

  static constexpr result_type min() { return 0; }
  static constexpr result_type max() { return std::numeric_limits<uint64_t>::max(); }
  result_type operator()() { return next_u64(); }

 private:
  static uint64_t rotl(uint64_t x, int k) { return (x << k) | (x >> (64 - k)); }
  void seed_from(uint64_t seed);

  uint64_t s_[4];
};

// The calling thread's generator, seeded on first use in that thread. Not shared between
// threads, so no synchronisation; do not pass the reference to another thread.
inline Rng& thread_rng() {
  thread_local Rng rng;
  return rng;
}

}  // namespace sluice::core
