#include "http/path.h"

#include <cstring>

namespace sluice::http {

namespace {

constexpr char kUpperHex[] = "0123456789ABCDEF";

int hex_value(char c) {
  if (c >= '0' && c <= '9') return c - '0';
  if (c >= 'A' && c <= 'F') return c - 'A' + 10;
  if (c >= 'a' && c <= 'f') return c - 'a' + 10;
  return -1;
}

bool is_control(unsigned char c) {
  return c < 0x20 || c == 0x7f;
}

// RFC 3986 2.3: escapes of these are decoded, since they never mean anything else.
bool is_unreserved(unsigned char c) {
  return (c >= 'A' && c <= 'Z') || (c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') || c == '-' ||
         c == '.' || c == '_' || c == '~';
}

bool is_dot_segment(std::string_view seg) {
  return seg == "." || seg == "..";
}

// True when `path` is certainly in normal form under `opt`: nothing to decode or refuse, no
// empty segment to merge, no dot segment to remove. One pass, no writes: the common case.
bool already_normal(std::string_view path, const PathOptions& opt) {
  if (path.empty() || path[0] != '/') return false;
  size_t seg = 1;
  for (size_t i = 1; i <= path.size(); ++i) {
    const bool end = i == path.size();
    const auto c = static_cast<unsigned char>(end ? '/' : path[i]);
    if (c == '/') {
      std::string_view s = path.substr(seg, i - seg);
      if (opt.normalize && is_dot_segment(s)) return false;
      if (opt.merge_slashes && s.empty() && !end) return false;
      seg = i + 1;
    } else if (c == '%' || c == '\\' || c == '#' || c == ';' || is_control(c)) {
      return false;
    }
  }
  return true;
}

void append_escape(std::string& out, unsigned v) {
  out.push_back('%');
  out.push_back(kUpperHex[v >> 4]);
  out.push_back(kUpperHex[v & 0xf]);
}

// Step 1: refuses what is never acceptable and decodes escapes, into `out`.
PathError decode(std::string_view path, const PathOptions& opt, std::string& out) {
  for (size_t i = 0; i < path.size(); ++i) {
    const auto c = static_cast<unsigned char>(path[i]);
    if (c == '%') {
      int hi = i + 2 < path.size() ? hex_value(path[i + 1]) : -1;
      int lo = hi >= 0 ? hex_value(path[i + 2]) : -1;
      if (hi < 0 || lo < 0) return PathError::kBadEscape;
      const auto v = static_cast<unsigned>(hi * 16 + lo);
      if (is_control(static_cast<unsigned char>(v))) return PathError::kControl;
      if (v == '/' || v == '\\') {
        switch (opt.escaped_slashes) {
          case EscapedSlashes::kReject:
            return PathError::kEscapedSlash;
          case EscapedSlashes::kUnescape:
            out.push_back('/');
            break;
          case EscapedSlashes::kKeep:
            if (opt.normalize) {
              append_escape(out, v);
            } else {
              out.append(path.substr(i, 3));
            }
            break;
        }
      } else if (opt.normalize && is_unreserved(static_cast<unsigned char>(v))) {
        out.push_back(static_cast<char>(v));
      } else if (opt.normalize) {
        append_escape(out, v);
      } else {
        out.append(path.substr(i, 3));
      }
      i += 2;
    } else if (is_control(c)) {
      return PathError::kControl;
    } else if (c == '\\') {
      return PathError::kBackslash;
    } else if (c == '#') {
      return PathError::kFragment;
    } else {
      out.push_back(static_cast<char>(c));
    }
  }
  return PathError::kNone;
}

// Step 2, in place on the decoded path (which starts with '/'): path parameters, merged
// slashes, dot segments. Writes never overtake reads, so one buffer is enough.
PathError resolve_segments(const PathOptions& opt, std::string& out) {
  const size_t n = out.size();
  char* p = out.data();
  size_t w = 0;  // end of the output written so far: "" or "/seg/seg"
  size_t r = 0;  // at a '/' of the input
  while (r < n) {
    const size_t s = r + 1;
    size_t e = s;
    while (e < n && p[e] != '/') ++e;
    const std::string_view seg(p + s, e - s);
    const bool last = e == n;
    r = e;
    if (size_t semi = seg.find(';'); semi != std::string_view::npos) {
      // Tomcat and others drop the parameters and then see a dot segment.
      if (is_dot_segment(seg.substr(0, semi))) return PathError::kDotParameters;
      if (opt.parameters == PathParameters::kReject) return PathError::kParameters;
    }
    if (seg.empty() && opt.merge_slashes && !last) continue;
    if (opt.normalize && is_dot_segment(seg)) {
      if (seg.size() == 2) {
        if (w == 0) return PathError::kAboveRoot;
        do {
          --w;
        } while (p[w] != '/');
      }
      if (last) p[w++] = '/';
      continue;
    }
    p[w++] = '/';
    std::memmove(p + w, p + s, seg.size());
    w += seg.size();
  }
  if (w == 0) p[w++] = '/';
  out.resize(w);
  return PathError::kNone;
}

}  // namespace

const char* path_error_reason(PathError e) {
  switch (e) {
    case PathError::kNone:
      return "";
    case PathError::kNotAbsolute:
      return "path must start with '/'";
    case PathError::kControl:
      return "path contains a control character (raw or percent-encoded)";
    case PathError::kBackslash:
      return "path contains a backslash";
    case PathError::kFragment:
      return "path contains '#'";
    case PathError::kBadEscape:
      return "path contains an invalid percent-escape ('%' must be followed by two hex digits)";
    case PathError::kEscapedSlash:
      return "path contains an encoded slash or backslash (%2F or %5C)";
    case PathError::kAboveRoot:
      return "path climbs above the root ('..')";
    case PathError::kParameters:
      return "path contains ';' (path parameters are refused)";
    case PathError::kDotParameters:
      return "path contains a dot segment with parameters (such as '..;')";
  }
  return "invalid path";
}

PathResult normalize_path(std::string_view path, const PathOptions& opt, std::string& out) {
  if (already_normal(path, opt)) return {};
  if (path.empty() || path[0] != '/') return {PathError::kNotAbsolute, false};
  out.clear();
  if (PathError e = decode(path, opt, out); e != PathError::kNone) return {e, false};
  if (PathError e = resolve_segments(opt, out); e != PathError::kNone) return {e, false};
  return {PathError::kNone, out != path};
}

}  // namespace sluice::http
