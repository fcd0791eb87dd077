#include "config/secret_file.h"

#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>

#include <fmt/format.h>

namespace sluice::config {

namespace {

bool is_space(char c) {
  return c == ' ' || c == '\t' || c == '\r' || c == '\n';
}

}  // namespace

std::optional<SecretFile> read_secret_file(const std::string& path, std::string* error) {
  // Opened first and checked through the descriptor, so that what is checked is what is read.
  int fd = ::open(path.c_str(), O_RDONLY | O_CLOEXEC | O_NOCTTY | O_NONBLOCK);
  if (fd < 0) {
    *error = fmt::format("cannot read '{}': {}", path, std::strerror(errno));
    return std::nullopt;
  }
  struct stat st {};
  if (::fstat(fd, &st) != 0 || !S_ISREG(st.st_mode)) {
    ::close(fd);
    *error = fmt::format("'{}' is not a regular file", path);
    return std::nullopt;
  }
  if (static_cast<size_t>(st.st_size) > kMaxSecretFileBytes) {
    ::close(fd);
    *error = fmt::format("'{}' is {} bytes; a token file holds one token (at most {} bytes)", path,
                         st.st_size, kMaxSecretFileBytes);
    return std::nullopt;
  }
  std::string text(kMaxSecretFileBytes + 1, '\0');
  size_t got = 0;
  while (got < text.size()) {
    ssize_t n = ::read(fd, text.data() + got, text.size() - got);
    if (n < 0 && errno == EINTR) continue;
    if (n < 0) {
      int e = errno;
      ::close(fd);
      *error = fmt::format("cannot read '{}': {}", path, std::strerror(e));
      return std::nullopt;
    }
    if (n == 0) break;
    got += static_cast<size_t>(n);
  }
  ::close(fd);
  if (got > kMaxSecretFileBytes) {  // grew after fstat
    *error = fmt::format("'{}': a token file holds one token (at most {} bytes)", path,
                         kMaxSecretFileBytes);
    return std::nullopt;
  }
  text.resize(got);
  size_t b = 0, e = text.size();
  while (b < e && is_space(text[b])) ++b;
  while (e > b && is_space(text[e - 1])) --e;
  std::string secret = text.substr(b, e - b);
  if (secret.empty()) {
    *error = fmt::format(
        "'{}' is empty; put one token of at least {} characters in it (e.g. "
        "`openssl rand -hex 32 > {}`)",
        path, kMinSecretChars, path);
    return std::nullopt;
  }
  for (char c : secret) {
    auto u = static_cast<unsigned char>(c);
    if (u <= 0x20 || u >= 0x7f) {
      *error = fmt::format(
          "'{}' must hold one token: printable ASCII without spaces or line "
          "breaks inside",
          path);
      return std::nullopt;
    }
  }
  if (secret.size() < kMinSecretChars || secret.size() > kMaxSecretChars) {
    *error = fmt::format(
        "the token in '{}' has {} characters; it must have {}..{} (e.g. "
        "`openssl rand -hex 32 > {}`)",
        path, secret.size(), kMinSecretChars, kMaxSecretChars, path);
    return std::nullopt;
  }
  SecretFile out;
  out.secret = std::move(secret);
  out.mode = static_cast<unsigned>(st.st_mode & 07777);
  out.others_can_read = (st.st_mode & (S_IRGRP | S_IROTH)) != 0;
  return out;
}

}  // namespace sluice::config
