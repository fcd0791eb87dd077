#include "control/auth.h"

#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <openssl/evp.h>
#include <openssl/rand.h>

#include <array>
#include <cerrno>
#include <cstring>
#include <fstream>
#include <sstream>
#include <stdexcept>

#include <fmt/format.h>

#include "http/header_map.h"

namespace sluice::control {
namespace {

constexpr std::array<std::string_view, 3> kRoleNames = {"viewer", "operator", "admin"};
constexpr size_t kTokenBytes = 32;

std::string to_hex(const unsigned char* data, size_t n) {
  static constexpr char kDigits[] = "0123456789abcdef";
  std::string out;
  out.reserve(2 * n);
  for (size_t i = 0; i < n; ++i) {
    out.push_back(kDigits[data[i] >> 4]);
    out.push_back(kDigits[data[i] & 0xf]);
  }
  return out;
}

std::string random_hex(size_t bytes) {
  std::array<unsigned char, 64> buf{};
  if (bytes > buf.size()) throw std::invalid_argument("random_hex: too many bytes");
  if (RAND_bytes(buf.data(), static_cast<int>(bytes)) != 1)
    throw std::runtime_error("no randomness available (OpenSSL RAND_bytes failed)");
  return to_hex(buf.data(), bytes);
}

std::string_view trim(std::string_view s) {
  while (!s.empty() &&
         (s.front() == ' ' || s.front() == '\t' || s.front() == '\r' || s.front() == '\n'))
    s.remove_prefix(1);
  while (!s.empty() &&
         (s.back() == ' ' || s.back() == '\t' || s.back() == '\r' || s.back() == '\n'))
    s.remove_suffix(1);
  return s;
}

bool is_token_text(std::string_view s) {
  if (s.empty() || s.size() > 512) return false;
  for (char c : s) {
    if (static_cast<unsigned char>(c) <= 0x20 || static_cast<unsigned char>(c) >= 0x7f)
      return false;
  }
  return true;
}

// The token id is public (it names the token in lists and revocations); it is not derived from
// the secret.
std::string new_token_id() {
  return "tok_" + random_hex(8);
}

}  // namespace

std::optional<Role> parse_role(std::string_view name) {
  for (size_t i = 0; i < kRoleNames.size(); ++i) {
    if (kRoleNames[i] == name) return static_cast<Role>(i);
  }
  return std::nullopt;
}

std::string_view role_name(Role role) {
  return kRoleNames[static_cast<size_t>(role)];
}

std::string random_token() {
  return random_hex(kTokenBytes);
}

std::string hash_token(std::string_view token) {
  unsigned char md[EVP_MAX_MD_SIZE];
  unsigned int len = 0;
  if (EVP_Digest(token.data(), token.size(), md, &len, EVP_sha256(), nullptr) != 1)
    throw std::runtime_error("SHA-256 failed (OpenSSL EVP_Digest)");
  return to_hex(md, len);
}

AuthResult Auth::check(std::string_view authorization, Role needed) {
  AuthResult r;
  std::string_view value = trim(authorization);
  if (value.empty()) {
    r.status = 401;
    r.error = "missing token: send 'Authorization: Bearer <token>'";
    return r;
  }
  size_t space = value.find(' ');
  if (space == std::string_view::npos || !http::iequals(value.substr(0, space), "bearer")) {
    r.status = 401;
    r.error = "expected 'Authorization: Bearer <token>'";
    return r;
  }
  std::string_view token = trim(value.substr(space + 1));
  if (!is_token_text(token)) {
    r.status = 401;
    r.error = "malformed bearer token";
    return r;
  }
  const std::string hash = hash_token(token);
  const int64_t now = now_ms_();
  std::optional<TokenRecord> record;
  bool cached = false;
  {
    std::lock_guard lock(mu_);
    auto it = cache_.find(hash);
    if (it != cache_.end() && now - it->second.fetched_ms < kCacheMs &&
        now >= it->second.fetched_ms) {
      record = it->second.record;
      cached = true;
    }
  }
  if (!cached) {
    record = store_.find_token(hash);
    std::lock_guard lock(mu_);
    // Unknown tokens are not cached: a flood of made-up tokens must not grow the cache.
    if (record) {
      if (cache_.size() > 10000) cache_.clear();
      cache_[hash] = Cached{record, now};
    }
  }
  if (!record) {
    r.status = 401;
    r.error = "unknown token";
    return r;
  }
  auto role = parse_role(record->role);
  if (!role) {
    r.status = 401;
    r.error = fmt::format("token '{}' has an unknown role '{}'", record->id, record->role);
    return r;
  }
  r.who = Principal{record->id, record->name.empty() ? record->id : record->name, *role};
  if (static_cast<int>(*role) < static_cast<int>(needed)) {
    r.status = 403;
    r.error = fmt::format("role '{}' of token '{}' may not do this; '{}' is required",
                          role_name(*role), r.who.name, role_name(needed));
  }
  return r;
}

IssuedToken Auth::issue(const std::string& name, Role role) {
  IssuedToken t;
  t.token = random_token();
  t.record.id = new_token_id();
  t.record.hash = hash_token(t.token);
  t.record.role = std::string(role_name(role));
  t.record.name = name;
  t.record.created_ms = now_ms_();
  store_.add_token(t.record);
  return t;
}

bool Auth::revoke(const std::string& id) {
  bool removed = store_.remove_token(id);
  std::lock_guard lock(mu_);
  for (auto it = cache_.begin(); it != cache_.end();) {
    if (it->second.record && it->second.record->id == id) {
      it = cache_.erase(it);
    } else {
      ++it;
    }
  }
  return removed;
}

BootstrapResult bootstrap_admin_token(Store& store, const std::string& path, int64_t now_ms) {
  BootstrapResult result;
  struct stat st {};
  if (::stat(path.c_str(), &st) == 0) {
    if (!S_ISREG(st.st_mode))
      throw std::runtime_error(fmt::format("admin token file {}: not a regular file", path));
    std::ifstream in(path, std::ios::binary);
    if (!in)
      throw std::runtime_error(
          fmt::format("admin token file {}: cannot read: {}", path, std::strerror(errno)));
    std::ostringstream text;
    text << in.rdbuf();
    const std::string contents = text.str();
    std::string_view token = trim(contents);
    if (!is_token_text(token))
      throw std::runtime_error(fmt::format(
          "admin token file {}: expected one token (printable, no spaces); remove the file to "
          "have a new token generated",
          path));
    if (token.size() < kMinTokenFileLength)
      throw std::runtime_error(fmt::format(
          "admin token file {}: the token has {} characters, at least {} are required; remove "
          "the file to have a new token generated",
          path, token.size(), kMinTokenFileLength));
    if ((st.st_mode & 077) != 0)
      result.warnings.push_back(fmt::format(
          "admin token file {} has mode {:04o}: group or others may read it; chmod 600 it", path,
          st.st_mode & 07777));
    result.token = std::string(token);
  } else if (errno == ENOENT) {
    result.token = random_token();
    // O_EXCL: two control planes starting together on a shared volume must not both write.
    int fd = ::open(path.c_str(), O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0600);
    if (fd < 0)
      throw std::runtime_error(
          fmt::format("admin token file {}: cannot create: {}", path, std::strerror(errno)));
    const std::string line = result.token + "\n";
    ssize_t n = ::write(fd, line.data(), line.size());
    int write_errno = errno;
    bool synced = ::fsync(fd) == 0;
    ::close(fd);
    if (n != static_cast<ssize_t>(line.size()) || !synced) {
      ::unlink(path.c_str());
      throw std::runtime_error(
          fmt::format("admin token file {}: cannot write: {}", path, std::strerror(write_errno)));
    }
    result.created = true;
  } else {
    throw std::runtime_error(fmt::format("admin token file {}: {}", path, std::strerror(errno)));
  }

  const std::string hash = hash_token(result.token);
  if (store.find_token(hash)) return result;
  if (!result.created) {
    // See the rules in auth.h: from an existing file, only into an empty store, never a revoked
    // token.
    const bool empty = store.token_count() == 0;
    if (store.token_revoked(hash)) {
      if (empty)
        throw std::runtime_error(fmt::format(
            "admin token file {}: its token was revoked and the store has no other token; remove "
            "the file to have a new admin token generated",
            path));
      result.warnings.push_back(
          fmt::format("admin token file {}: its token was revoked; it is not registered again "
                      "(use another admin token, or remove the file to have a new one generated)",
                      path));
      return result;
    }
    if (!empty) {
      result.warnings.push_back(fmt::format(
          "admin token file {}: the store does not know its token and already holds tokens; it "
          "is not registered (tokens come from a file only into an empty store; remove the file "
          "to have a new admin token generated)",
          path));
      return result;
    }
  }
  {
    TokenRecord t;
    t.id = new_token_id();
    t.hash = hash;
    t.role = "admin";
    t.name = "admin";
    t.created_ms = now_ms;
    store.add_token(t);
    result.registered = true;
  }
  return result;
}

}  // namespace sluice::control
