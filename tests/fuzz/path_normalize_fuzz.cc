// libFuzzer target for the path normaliser (src/http/path.h). The first byte picks the options;
// the rest is the path. Checks the contract's invariants on every accepted path: the result
// starts with '/', is never longer than the input, is idempotent (normalising it again reports
// no change), has no "." or ".." segment when normalising, no "//" when merging, no raw ';'
// when parameters are refused, and no control byte, '\', '#' or malformed escape at all.
#include <cstdint>
#include <cstdlib>
#include <string>
#include <string_view>

#include "http/path.h"

namespace {

using sluice::http::EscapedSlashes;
using sluice::http::normalize_path;
using sluice::http::PathError;
using sluice::http::PathOptions;
using sluice::http::PathParameters;

void check(bool ok) {
  if (!ok) std::abort();
}

bool is_hex(char c) {
  return (c >= '0' && c <= '9') || (c >= 'A' && c <= 'F') || (c >= 'a' && c <= 'f');
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  if (size < 1) return 0;
  const uint8_t mode = data[0];
  PathOptions opt;
  opt.normalize = (mode & 1) == 0;
  opt.merge_slashes = (mode & 2) == 0;
  opt.parameters = (mode & 4) ? PathParameters::kKeep : PathParameters::kReject;
  switch ((mode >> 3) % 3) {
    case 0:
      opt.escaped_slashes = EscapedSlashes::kReject;
      break;
    case 1:
      opt.escaped_slashes = EscapedSlashes::kKeep;
      break;
    default:
      opt.escaped_slashes = EscapedSlashes::kUnescape;
      break;
  }
  const std::string_view in(reinterpret_cast<const char*>(data + 1), size - 1);
  std::string out;
  auto r = normalize_path(in, opt, out);
  if (r.error != PathError::kNone) {
    check(!r.changed);
    return 0;
  }
  const std::string_view result = r.changed ? std::string_view(out) : in;
  check(!result.empty() && result[0] == '/');
  check(result.size() <= in.size());
  if (r.changed) check(out != in);

  // Idempotent: the result is its own normal form.
  std::string again;
  auto r2 = normalize_path(result, opt, again);
  check(r2.error == PathError::kNone);
  check(!r2.changed);

  // Segment by segment.
  size_t seg = 1;
  for (size_t i = 1; i <= result.size(); ++i) {
    if (i < result.size() && result[i] != '/') continue;
    std::string_view s = result.substr(seg, i - seg);
    if (opt.normalize) check(s != "." && s != "..");
    if (opt.merge_slashes && i < result.size()) check(!s.empty());
    seg = i + 1;
  }
  if (opt.normalize) {
    check(result.find("/./") == std::string_view::npos);
    check(result.find("/../") == std::string_view::npos);
  }
  for (size_t i = 0; i < result.size(); ++i) {
    const auto c = static_cast<unsigned char>(result[i]);
    check(c >= 0x20 && c != 0x7f && c != '\\' && c != '#');
    if (opt.parameters == PathParameters::kReject) check(c != ';');
    if (c == '%') {
      check(i + 2 < result.size() && is_hex(result[i + 1]) && is_hex(result[i + 2]));
      if (opt.normalize) {
        // Kept escapes have upper-case hex.
        check(!(result[i + 1] >= 'a' && result[i + 1] <= 'f'));
        check(!(result[i + 2] >= 'a' && result[i + 2] <= 'f'));
      }
    }
  }
  if (opt.escaped_slashes == EscapedSlashes::kReject) {
    check(result.find("%2F") == std::string_view::npos &&
          result.find("%2f") == std::string_view::npos);
  }
  return 0;
}
