#include "http/path.h"

#include <gtest/gtest.h>

#include <string>

namespace sluice::http {
namespace {

// The normal form of `path`, or "ERR:<n>" for an error, checking on the way that the result is
// itself normal (idempotent) and never longer than the input.
std::string norm(std::string_view path, const PathOptions& opt = {}) {
  std::string out = "untouched";
  PathResult r = normalize_path(path, opt, out);
  if (r.error != PathError::kNone) return "ERR:" + std::to_string(static_cast<int>(r.error));
  if (!r.changed) return std::string(path);
  EXPECT_NE(out, path) << "changed, but the same";
  EXPECT_LE(out.size(), path.size()) << path;
  std::string again;
  PathResult r2 = normalize_path(out, opt, again);
  EXPECT_EQ(r2.error, PathError::kNone) << out;
  EXPECT_FALSE(r2.changed) << path << " -> " << out << " -> " << again;
  return out;
}

std::string err(PathError e) {
  return "ERR:" + std::to_string(static_cast<int>(e));
}

PathOptions keep_params() {
  PathOptions o;
  o.parameters = PathParameters::kKeep;
  return o;
}

TEST(PathTest, NormalPathsAreLeftAlone) {
  for (const char* p : {"/", "/a", "/a/", "/a/b/c", "/api/accounts/42", "/a.b/.c/d..", "/~u/x-y_z",
                        "/...", "/a/.../b", "/%20"}) {
    std::string out;
    PathResult r = normalize_path(p, {}, out);
    EXPECT_EQ(r.error, PathError::kNone) << p;
    if (std::string_view(p) == "/%20") {
      EXPECT_FALSE(r.changed) << "an upper-case escape that is kept is already normal";
    } else {
      EXPECT_FALSE(r.changed) << p;
      EXPECT_TRUE(out.empty()) << "the fast path writes nothing: " << p;
    }
  }
}

// RFC 3986 5.4.1: the merged paths of the normal examples against base "/b/c/d;p".
TEST(PathTest, Rfc3986NormalExamples) {
  PathOptions o = keep_params();
  EXPECT_EQ(norm("/b/c/g", o), "/b/c/g");      // g
  EXPECT_EQ(norm("/b/c/./g", o), "/b/c/g");    // ./g
  EXPECT_EQ(norm("/b/c/g/", o), "/b/c/g/");    // g/
  EXPECT_EQ(norm("/g", o), "/g");              // /g
  EXPECT_EQ(norm("/b/c/d;p", o), "/b/c/d;p");  // ?y and ""
  EXPECT_EQ(norm("/b/c/;x", o), "/b/c/;x");    // ;x
  EXPECT_EQ(norm("/b/c/g;x", o), "/b/c/g;x");  // g;x
  EXPECT_EQ(norm("/b/c/.", o), "/b/c/");       // .
  EXPECT_EQ(norm("/b/c/./", o), "/b/c/");      // ./
  EXPECT_EQ(norm("/b/c/..", o), "/b/");        // ..
  EXPECT_EQ(norm("/b/c/../", o), "/b/");       // ../
  EXPECT_EQ(norm("/b/c/../g", o), "/b/g");     // ../g
  EXPECT_EQ(norm("/b/c/../..", o), "/");       // ../..
  EXPECT_EQ(norm("/b/c/../../", o), "/");      // ../../
  EXPECT_EQ(norm("/b/c/../../g", o), "/g");    // ../../g
}

// RFC 3986 5.4.2, with one deliberate difference: a ".." above the root is refused, where the
// RFC drops it.
TEST(PathTest, Rfc3986AbnormalExamples) {
  PathOptions o = keep_params();
  EXPECT_EQ(norm("/b/c/../../../g", o), err(PathError::kAboveRoot));     // ../../../g
  EXPECT_EQ(norm("/b/c/../../../../g", o), err(PathError::kAboveRoot));  // ../../../../g
  EXPECT_EQ(norm("/./g", o), "/g");
  EXPECT_EQ(norm("/../g", o), err(PathError::kAboveRoot));
  EXPECT_EQ(norm("/b/c/g.", o), "/b/c/g.");
  EXPECT_EQ(norm("/b/c/.g", o), "/b/c/.g");
  EXPECT_EQ(norm("/b/c/g..", o), "/b/c/g..");
  EXPECT_EQ(norm("/b/c/..g", o), "/b/c/..g");
  EXPECT_EQ(norm("/b/c/./../g", o), "/b/g");
  EXPECT_EQ(norm("/b/c/./g/.", o), "/b/c/g/");
  EXPECT_EQ(norm("/b/c/g/./h", o), "/b/c/g/h");
  EXPECT_EQ(norm("/b/c/g/../h", o), "/b/c/h");
  EXPECT_EQ(norm("/b/c/g;x=1/./y", o), "/b/c/g;x=1/y");
  EXPECT_EQ(norm("/b/c/g;x=1/../y", o), "/b/c/y");
  // 5.2.4's own walk-throughs.
  EXPECT_EQ(norm("/a/b/c/./../../g", o), "/a/g");
  EXPECT_EQ(norm("/mid/content=5/../6", o), "/mid/6");
}

TEST(PathTest, TheReportedBypasses) {
  EXPECT_EQ(norm("/public/../admin/delete"), "/admin/delete");
  EXPECT_EQ(norm("/api/../admin"), "/admin");
  EXPECT_EQ(norm("/public/%2e%2e/admin"), "/admin");
  EXPECT_EQ(norm("/public/%2E./admin"), "/admin");
  EXPECT_EQ(norm("/public/.%2e/admin"), "/admin");
  EXPECT_EQ(norm("/%2e%2e/admin"), err(PathError::kAboveRoot));
  EXPECT_EQ(norm("/.."), err(PathError::kAboveRoot));
  EXPECT_EQ(norm("/a/../.."), err(PathError::kAboveRoot));
  EXPECT_EQ(norm("/a/.."), "/");
  EXPECT_EQ(norm("/."), "/");
}

TEST(PathTest, UnreservedEscapesAreDecodedOthersUpperCased) {
  EXPECT_EQ(norm("/%61dmin"), "/admin");
  EXPECT_EQ(norm("/%41%5a%30%39%2D%2e%5F%7e"), "/AZ09-._~");
  EXPECT_EQ(norm("/a%20b"), "/a%20b");
  EXPECT_EQ(norm("/a%3fb"), "/a%3Fb");      // '?' stays encoded: it would start the query
  EXPECT_EQ(norm("/a%3bb"), "/a%3Bb");      // an encoded ';' is data, not a parameter
  EXPECT_EQ(norm("/%25%32%65"), "/%252e");  // "%25" is '%', never decoded (no double decoding)
  EXPECT_EQ(norm("/caf%c3%a9"), "/caf%C3%A9");
}

TEST(PathTest, MergeSlashes) {
  EXPECT_EQ(norm("//admin"), "/admin");
  EXPECT_EQ(norm("/a//b///c"), "/a/b/c");
  EXPECT_EQ(norm("/a//"), "/a/");
  EXPECT_EQ(norm("//"), "/");
  EXPECT_EQ(norm("/a//.."), "/");  // merged first: "/a/.."
  PathOptions o;
  o.merge_slashes = false;
  EXPECT_EQ(norm("//admin", o), "//admin");
  EXPECT_EQ(norm("/a//b", o), "/a//b");
  EXPECT_EQ(norm("/a//..", o), "/a/");  // RFC 5.2.4 on its own: the empty segment goes
}

TEST(PathTest, EscapedSlashes) {
  EXPECT_EQ(norm("/a%2Fb"), err(PathError::kEscapedSlash));
  EXPECT_EQ(norm("/a%2fb"), err(PathError::kEscapedSlash));
  EXPECT_EQ(norm("/a%5Cb"), err(PathError::kEscapedSlash));
  EXPECT_EQ(norm("/a%5cb"), err(PathError::kEscapedSlash));
  PathOptions keep;
  keep.escaped_slashes = EscapedSlashes::kKeep;
  EXPECT_EQ(norm("/a%2fb", keep), "/a%2Fb");
  EXPECT_EQ(norm("/a%5cb", keep), "/a%5Cb");
  EXPECT_EQ(norm("/a%2F..%2Fb", keep), "/a%2F..%2Fb");  // one segment: no dot segment in it
  PathOptions unescape;
  unescape.escaped_slashes = EscapedSlashes::kUnescape;
  EXPECT_EQ(norm("/a%2fb", unescape), "/a/b");
  EXPECT_EQ(norm("/a%5Cb", unescape), "/a/b");
  EXPECT_EQ(norm("/public%2F..%2Fadmin", unescape), "/admin");
  EXPECT_EQ(norm("/a%2F%2Fb", unescape), "/a/b");
  EXPECT_EQ(norm("/%2F..%2F..", unescape), err(PathError::kAboveRoot));
}

TEST(PathTest, BackslashesControlsAndFragmentsAreRefused) {
  EXPECT_EQ(norm("/a\\b"), err(PathError::kBackslash));
  EXPECT_EQ(norm("/public\\..\\admin"), err(PathError::kBackslash));
  EXPECT_EQ(norm(std::string_view("/a\0b", 4)), err(PathError::kControl));
  EXPECT_EQ(norm("/a\tb"), err(PathError::kControl));
  EXPECT_EQ(norm("/a\x7f"), err(PathError::kControl));
  EXPECT_EQ(norm("/admin%00.jpg"), err(PathError::kControl));
  EXPECT_EQ(norm("/a%0d%0aX-Injected:%201"), err(PathError::kControl));
  EXPECT_EQ(norm("/a%1F"), err(PathError::kControl));
  EXPECT_EQ(norm("/a%7f"), err(PathError::kControl));
  EXPECT_EQ(norm("/a#frag"), err(PathError::kFragment));
  // Kept escapes of bytes >= 0x80 and raw bytes >= 0x80 are data.
  EXPECT_EQ(norm("/a%80"), "/a%80");
  EXPECT_EQ(norm("/caf\xc3\xa9"), "/caf\xc3\xa9");
}

TEST(PathTest, InvalidEscapesAreRefused) {
  for (const char* p : {"/%zz", "/%4", "/%", "/a%", "/a%g0", "/a%0g", "/%%41", "/a%4/b"}) {
    EXPECT_EQ(norm(p), err(PathError::kBadEscape)) << p;
  }
  PathOptions raw;
  raw.normalize = false;
  EXPECT_EQ(norm("/%zz", raw), err(PathError::kBadEscape)) << "refused even without normalize";
}

TEST(PathTest, PathParameters) {
  EXPECT_EQ(norm("/admin;jsessionid=1"), err(PathError::kParameters));
  EXPECT_EQ(norm("/a;"), err(PathError::kParameters));
  EXPECT_EQ(norm("/public/..;/admin"), err(PathError::kDotParameters));
  PathOptions o = keep_params();
  EXPECT_EQ(norm("/admin;jsessionid=1", o), "/admin;jsessionid=1");
  EXPECT_EQ(norm("/a;x/b;y=2", o), "/a;x/b;y=2");
  EXPECT_EQ(norm("/public/..;/admin", o), err(PathError::kDotParameters));
  EXPECT_EQ(norm("/public/.;x/admin", o), err(PathError::kDotParameters));
  EXPECT_EQ(norm("/public/%2e%2e;/admin", o), err(PathError::kDotParameters));
  EXPECT_EQ(norm("/public/...;/admin", o), "/public/...;/admin");
}

TEST(PathTest, NotAbsoluteIsRefused) {
  EXPECT_EQ(norm(""), err(PathError::kNotAbsolute));
  EXPECT_EQ(norm("*"), err(PathError::kNotAbsolute));
  EXPECT_EQ(norm("a/b"), err(PathError::kNotAbsolute));
  EXPECT_EQ(norm("http://x/a"), err(PathError::kNotAbsolute));
}

TEST(PathTest, NormalizeOffKeepsBytesButStillRefusesAmbiguity) {
  PathOptions o;
  o.normalize = false;
  EXPECT_EQ(norm("/a/../b", o), "/a/../b");
  EXPECT_EQ(norm("/%2e%2e/b", o), "/%2e%2e/b");
  EXPECT_EQ(norm("/%61", o), "/%61");
  EXPECT_EQ(norm("//a", o), "/a");  // merge_slashes is its own switch
  EXPECT_EQ(norm("/a%2fb", o), err(PathError::kEscapedSlash));
  EXPECT_EQ(norm("/a\\b", o), err(PathError::kBackslash));
  o.escaped_slashes = EscapedSlashes::kKeep;
  EXPECT_EQ(norm("/a%2fb", o), "/a%2fb");
}

TEST(PathTest, EveryErrorHasAReason) {
  for (int e = 1; e <= static_cast<int>(PathError::kDotParameters); ++e) {
    EXPECT_STRNE(path_error_reason(static_cast<PathError>(e)), "") << e;
  }
}

TEST(PathTest, OutputReusesTheCallersBuffer) {
  std::string out;
  out.reserve(64);
  const char* before = out.data();
  ASSERT_TRUE(normalize_path("/a/./b/../c", {}, out).changed);
  EXPECT_EQ(out, "/a/c");
  EXPECT_EQ(out.data(), before) << "no allocation when the buffer is large enough";
}

}  // namespace
}  // namespace sluice::http
