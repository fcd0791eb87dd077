// Request path normalisation: the one form of a path that routing, rewriting, rate-limit keys,
// the access log and the upstream all see, so that no two of them can read a path two ways.
// Pure: no I/O, no clock; allocates nothing when the path is already normal (the common case).
//
// Semantics, exactly (PathOptions defaults in brackets; docs/config.md#http is the contract):
//  - The path must start with '/' (origin form); else kNotAbsolute.
//  - Raw bytes 0x00-0x1F and 0x7F, and their escapes (%00-%1F, %7F): kControl, always.
//  - A raw '\': kBackslash, always (some servers read it as '/').
//  - A raw '#': kFragment, always (a fragment is never sent to a server).
//  - '%' not followed by two hex digits (%zz, %4, a trailing %): kBadEscape, always.
//  - %2F and %5C (any case), by `escaped_slashes` [kReject]: kReject refuses (kEscapedSlash);
//    kKeep keeps them as escapes, part of their segment; kUnescape makes both a '/' (a
//    separator, so they take part in the steps below).
//  - `normalize` [true]: escapes of unreserved characters (ALPHA DIGIT - . _ ~) are decoded
//    ("%2e%2e" is ".."), every other escape kept has upper-case hex ("%3b" is "%3B"), then dot
//    segments are removed as RFC 3986 5.2.4 does, except that a ".." with nothing left to remove
//    is refused (kAboveRoot) instead of being dropped. A path ending in "." or ".." keeps its
//    trailing '/' ("/a/b/.." is "/a/").
//  - `merge_slashes` [true]: runs of '/' become one ("//a///b/" is "/a/b/").
//  - ';' (path parameters), by `parameters` [kReject]: kReject refuses any raw ';'
//    (kParameters); kKeep keeps it as an ordinary character of its segment. Either way a
//    segment that is "." or ".." before its ';' (such as "..;x", which Tomcat reads as "..") is
//    refused (kDotParameters).
//  - Nothing else is touched: other bytes, including bytes >= 0x80, stay as received; the
//    query string is not part of the input.
// The result is idempotent (normalising it again changes nothing), starts with '/', and (with
// `normalize`) has no "." or ".." segment.
#pragma once

#include <cstdint>
#include <string>
#include <string_view>

namespace sluice::http {

enum class EscapedSlashes : uint8_t { kKeep, kReject, kUnescape };
enum class PathParameters : uint8_t { kKeep, kReject };

struct PathOptions {
  bool normalize = true;
  bool merge_slashes = true;
  EscapedSlashes escaped_slashes = EscapedSlashes::kReject;
  PathParameters parameters = PathParameters::kReject;

  bool operator==(const PathOptions&) const = default;
};

enum class PathError : uint8_t {
  kNone = 0,
  kNotAbsolute,
  kControl,
  kBackslash,
  kFragment,
  kBadEscape,
  kEscapedSlash,
  kAboveRoot,
  kParameters,
  kDotParameters,
};

// A sentence for the client's 400, such as "path climbs above the root".
const char* path_error_reason(PathError e);

struct PathResult {
  PathError error = PathError::kNone;
  bool changed = false;  // the normal form differs from the input and was written to `out`
};

// Checks `path` (no query string) under `opt`. Already normal: {kNone, false} and `out` is not
// touched. Else the normal form is written to `out` (replacing its contents, reusing its
// capacity; never longer than `path`) and `changed` is true. On an error `out` holds anything.
PathResult normalize_path(std::string_view path, const PathOptions& opt, std::string& out);

}  // namespace sluice::http
