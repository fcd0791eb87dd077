// Bearer tokens of the control plane API: random secrets handed out once, kept only as SHA-256
// hashes in the store, each with a role (viewer < operator < admin) that bounds what it may do.
#pragma once

#include <cstdint>
#include <functional>
#include <mutex>
#include <optional>
#include <string>
#include <string_view>
#include <unordered_map>
#include <vector>

#include "control/store.h"

namespace sluice::control {

enum class Role { kViewer = 0, kOperator = 1, kAdmin = 2 };

std::optional<Role> parse_role(std::string_view name);
std::string_view role_name(Role role);

// 32 random bytes from the kernel's CSPRNG (OpenSSL RAND_bytes), as 64 lower-case hex digits.
// Throws std::runtime_error when no randomness is available.
std::string random_token();
// Lower-case hex SHA-256 of the token text: what the store keeps instead of the token.
std::string hash_token(std::string_view token);

// Who made a request, as recorded in version history (`author`).
struct Principal {
  std::string token_id;
  std::string name;
  Role role = Role::kViewer;
};

struct AuthResult {
  int status = 200;   // 200, 401 (no or unknown token) or 403 (role too small)
  std::string error;  // for the JSON error body
  Principal who;
  bool ok() const { return status == 200; }
};

// A newly issued token: `token` is the secret, shown once and never stored.
struct IssuedToken {
  TokenRecord record;
  std::string token;
};

class Auth {
 public:
  using NowMs = std::function<int64_t()>;

  // Lookups are cached this long, so a busy API does not hit the store per request; a removed
  // token keeps working on other control planes for at most this long.
  static constexpr int64_t kCacheMs = 5000;

  Auth(Store& store, NowMs now_ms) : store_(store), now_ms_(std::move(now_ms)) {}

  // `authorization`: the Authorization header value ("Bearer <token>"), empty when absent.
  // Throws StoreError when the store cannot be asked.
  AuthResult check(std::string_view authorization, Role needed);

  // Issues a token for `name` with `role`; throws StoreError (from the store) on failure.
  IssuedToken issue(const std::string& name, Role role);
  bool revoke(const std::string& id);

 private:
  struct Cached {
    std::optional<TokenRecord> record;
    int64_t fetched_ms = 0;
  };

  Store& store_;
  NowMs now_ms_;
  std::mutex mu_;
  std::unordered_map<std::string, Cached> cache_;  // by hash
};

// The admin token file of control.yaml: read when it exists, else created with mode 0600 and a
// new admin token. `created` tells the caller to print the token, once.
//
// Rules, exactly:
// - A file that exists must hold one token of kMinTokenFileLength..512 printable characters
//   (surrounding whitespace ignored); anything else refuses the start.
// - A file readable or writable by group or others is used, with a warning in `warnings`.
// - A token the store knows is used as it is. A token the store does not know is registered
//   only into an empty store (a fresh database): a store that holds tokens has its own admins,
//   and a token they revoked must not come back at the next restart. A token that was revoked
//   is never registered again (refused at start when the store is empty, else a warning).
// - A newly generated token is always registered (it cannot have been revoked).
inline constexpr size_t kMinTokenFileLength = 32;

struct BootstrapResult {
  std::string token;
  bool created = false;               // a new token was generated and written to the file
  bool registered = false;            // the store did not know the token and it was added
  std::vector<std::string> warnings;  // for the log
};

// Throws std::runtime_error for an unreadable, unwritable or malformed file, StoreError for the
// store.
BootstrapResult bootstrap_admin_token(Store& store, const std::string& path, int64_t now_ms);

}  // namespace sluice::control
