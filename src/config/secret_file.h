// Secrets kept in files (the admin API's bearer token): read strictly, so that a truncated,
// empty or guessable token is a config error rather than a weak lock.
#pragma once

#include <cstddef>
#include <optional>
#include <string>

namespace sluice::config {

struct SecretFile {
  std::string secret;            // the file's text without surrounding whitespace
  bool others_can_read = false;  // group or other read permission (the caller warns)
  unsigned mode = 0;             // permission bits, for the warning
};

// Rules: a regular file of at most kMaxSecretFileBytes bytes holding one token of
// kMinSecretChars..kMaxSecretChars printable ASCII characters without spaces; surrounding
// whitespace (a trailing newline) is ignored. nullopt with `error` saying why otherwise.
inline constexpr size_t kMinSecretChars = 32;
inline constexpr size_t kMaxSecretChars = 512;
inline constexpr size_t kMaxSecretFileBytes = 4096;

std::optional<SecretFile> read_secret_file(const std::string& path, std::string* error);

}  // namespace sluice::config
