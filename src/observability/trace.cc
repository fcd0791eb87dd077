#include "observability/trace.h"

#include <array>
#include <cstring>

namespace sluice::observability {
namespace {

constexpr char kHex[] = "0123456789abcdef";

// -1 for anything but a lower-case hex digit.
int hex_value(char c) {
  if (c >= '0' && c <= '9') return c - '0';
  if (c >= 'a' && c <= 'f') return c - 'a' + 10;
  return -1;
}

// True when `s` is all lower-case hex and not all '0'.
bool valid_id(std::string_view s) {
  bool nonzero = false;
  for (char c : s) {
    if (hex_value(c) < 0) return false;
    nonzero |= c != '0';
  }
  return nonzero;
}

bool parse_byte(std::string_view s, uint8_t& out) {
  int hi = hex_value(s[0]);
  int lo = hex_value(s[1]);
  if (hi < 0 || lo < 0) return false;
  out = static_cast<uint8_t>(hi << 4 | lo);
  return true;
}

// "00".."ff" for each byte value: two hex digits per look-up.
constexpr auto kHexPairs = [] {
  std::array<char, 512> t{};
  for (int b = 0; b < 256; ++b) {
    t[2 * b] = kHex[b >> 4];
    t[2 * b + 1] = kHex[b & 0xf];
  }
  return t;
}();

void append_hex64(std::string& out, uint64_t v) {
  char buf[16];
  for (int i = 7; i >= 0; --i) {
    std::memcpy(buf + 2 * i, &kHexPairs[2 * (v & 0xff)], 2);
    v >>= 8;
  }
  out.append(buf, sizeof buf);
}

// Never zero: an all-zero id is invalid, so draw again (probability 2^-64).
uint64_t nonzero_u64(core::Rng& rng) {
  uint64_t v;
  do v = rng.next_u64();
  while (v == 0);
  return v;
}

std::string_view trim_ows(std::string_view s) {
  while (!s.empty() && (s.front() == ' ' || s.front() == '\t')) s.remove_prefix(1);
  while (!s.empty() && (s.back() == ' ' || s.back() == '\t')) s.remove_suffix(1);
  return s;
}

}  // namespace

bool parse_traceparent(std::string_view header, TraceParent& out) {
  std::string_view h = trim_ows(header);
  if (h.size() < kTraceparentSize) return false;
  uint8_t version;
  if (!parse_byte(h, version) || version == 0xff) return false;
  if (version == 0 && h.size() != kTraceparentSize) return false;
  // A later version keeps the 00 layout as a prefix; anything it appends starts with '-'.
  if (h.size() > kTraceparentSize && h[kTraceparentSize] != '-') return false;
  if (h[2] != '-' || h[35] != '-' || h[52] != '-') return false;
  std::string_view trace_id = h.substr(3, 32);
  std::string_view parent_id = h.substr(36, 16);
  uint8_t flags;
  if (!valid_id(trace_id) || !valid_id(parent_id) || !parse_byte(h.substr(53, 2), flags)) {
    return false;
  }
  out.version = version;
  out.trace_id = trace_id;
  out.parent_id = parent_id;
  out.flags = flags;
  return true;
}

void make_child_traceparent(std::string_view incoming, core::Rng& rng, std::string& out) {
  out.clear();
  out.append("00-");
  TraceParent parent;
  uint8_t flags;
  if (!incoming.empty() && parse_traceparent(incoming, parent)) {
    out.append(parent.trace_id);
    flags = parent.flags & (kTraceFlagSampled | kTraceFlagRandom);
  } else {
    // Both halves random; one non-zero half is enough to make the id valid.
    append_hex64(out, rng.next_u64());
    append_hex64(out, nonzero_u64(rng));
    flags = kTraceFlagSampled;
  }
  out.push_back('-');
  append_hex64(out, nonzero_u64(rng));
  out.push_back('-');
  out.push_back(kHex[flags >> 4]);
  out.push_back(kHex[flags & 0xf]);
}

void make_request_id(core::Rng& rng, std::string& out) {
  out.clear();
  append_hex64(out, rng.next_u64());
  append_hex64(out, rng.next_u64());
}

}  // namespace sluice::observability
