// A build-once, read-many hash table from strings to small integers (open addressing, linear
// probing, keys in one arena). Lookups take a string_view and never allocate; with kFoldCase,
// ASCII letters compare and hash without regard to case (host names).
#pragma once

#include <bit>
#include <cstdint>
#include <cstring>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

namespace sluice::router {

template <bool kFoldCase>
class StringTable {
 public:
  static constexpr uint32_t kNotFound = UINT32_MAX;

  // Replaces the contents. With duplicate keys the first value wins.
  void build(const std::vector<std::pair<std::string, uint32_t>>& entries) {
    slots_.clear();
    arena_.clear();
    size_t capacity = 8;
    while (capacity < entries.size() * 2) capacity *= 2;
    slots_.assign(entries.empty() ? 0 : capacity, Slot{});
    mask_ = capacity - 1;
    for (const auto& [key, value] : entries) {
      if (find(key) != kNotFound) continue;
      const uint64_t h = hash(key);
      size_t i = h & mask_;
      while (slots_[i].value != kNotFound) i = (i + 1) & mask_;
      slots_[i] =
          Slot{h, static_cast<uint32_t>(arena_.size()), static_cast<uint32_t>(key.size()), value};
      arena_.append(key);
    }
  }

  bool empty() const { return slots_.empty(); }

  uint32_t find(std::string_view key) const {
    if (slots_.empty()) return kNotFound;
    const uint64_t h = hash(key);
    for (size_t i = h & mask_;; i = (i + 1) & mask_) {
      const Slot& s = slots_[i];
      if (s.value == kNotFound) return kNotFound;
      if (s.hash == h && s.key_len == key.size() &&
          equal(std::string_view(arena_.data() + s.key_off, s.key_len), key)) {
        return s.value;
      }
    }
  }

 private:
  struct Slot {
    uint64_t hash = 0;
    uint32_t key_off = 0;
    uint32_t key_len = 0;
    uint32_t value = kNotFound;  // kNotFound marks an empty slot
  };

  static char lower(char c) { return (c >= 'A' && c <= 'Z') ? static_cast<char>(c + 32) : c; }

  // Same length already checked.
  static bool equal(std::string_view a, std::string_view b) {
    if constexpr (kFoldCase) {
      const char* pa = a.data();
      const char* pb = b.data();
      size_t n = a.size();
      for (; n >= 8; pa += 8, pb += 8, n -= 8) {
        uint64_t wa, wb;
        std::memcpy(&wa, pa, 8);
        std::memcpy(&wb, pb, 8);
        if (lower8(wa) != lower8(wb)) return false;
      }
      for (; n > 0; ++pa, ++pb, --n) {
        if (lower(*pa) != lower(*pb)) return false;
      }
      return true;
    } else {
      return std::memcmp(a.data(), b.data(), a.size()) == 0;
    }
  }

  // Lower-cases the ASCII letters of 8 bytes at once; other bytes, including non-ASCII, stay.
  static uint64_t lower8(uint64_t x) {
    constexpr uint64_t kOnes = 0x0101010101010101ULL;
    constexpr uint64_t kHigh = 0x8080808080808080ULL;
    const uint64_t seven = x & ~kHigh;
    const uint64_t ge_a = seven + (0x80 - 'A') * kOnes;  // high bit set where byte >= 'A'
    const uint64_t gt_z = seven + (0x7F - 'Z') * kOnes;  // high bit set where byte > 'Z'
    const uint64_t upper = (ge_a ^ gt_z) & ~x & kHigh;
    return x | (upper >> 2);
  }

  static uint64_t mix(uint64_t h, uint64_t w) {
    h = (h ^ w) * 0x9E3779B97F4A7C15ULL;
    return h ^ (h >> 29);
  }

  // Word-at-a-time hash, good enough for a table that also compares the full hash and key.
  static uint64_t hash(std::string_view key) {
    uint64_t h = 0x243F6A8885A308D3ULL ^ key.size();
    const char* p = key.data();
    size_t n = key.size();
    for (; n >= 8; p += 8, n -= 8) {
      uint64_t w;
      std::memcpy(&w, p, 8);
      if constexpr (kFoldCase) w = lower8(w);
      h = mix(h, w);
    }
    if (n > 0) {
      uint64_t w = 0;
      std::memcpy(&w, p, n);
      if constexpr (kFoldCase) w = lower8(w);
      h = mix(h, w);
    }
    h ^= h >> 33;
    h *= 0xFF51AFD7ED558CCDULL;
    h ^= h >> 33;
    return h;
  }

  std::vector<Slot> slots_;
  std::string arena_;
  size_t mask_ = 0;
};

}  // namespace sluice::router
