// The tokens domain's tables: API tokens (hashed) and revoked hashes.
// Append steps at the end of both lists; never edit a released one.
#include "control/tokens/tokens_service.h"

#include <array>

namespace sluice::control::tokens {
namespace {

constexpr std::string_view kSqliteV1 = R"sql(
CREATE TABLE tokens (
  id         TEXT    NOT NULL PRIMARY KEY,
  hash       TEXT    NOT NULL UNIQUE,
  role       TEXT    NOT NULL CHECK (role IN ('viewer', 'operator', 'admin')),
  name       TEXT    NOT NULL,
  created_ms INTEGER NOT NULL
);
)sql";

constexpr std::string_view kPostgresV1 = R"sql(
CREATE TABLE tokens (
  id         TEXT COLLATE "C" NOT NULL PRIMARY KEY,
  hash       TEXT   NOT NULL UNIQUE,
  role       TEXT   NOT NULL CHECK (role IN ('viewer', 'operator', 'admin')),
  name       TEXT   NOT NULL,
  created_ms BIGINT NOT NULL
);
)sql";

// Revoked tokens are remembered (by hash), so that the bootstrap admin token file of a
// control plane cannot bring a revoked token back at the next start.
constexpr std::string_view kSqliteV2 = R"sql(
CREATE TABLE revoked_tokens (
  hash       TEXT    NOT NULL PRIMARY KEY,
  id         TEXT    NOT NULL,
  revoked_ms INTEGER NOT NULL
) WITHOUT ROWID;
)sql";

constexpr std::string_view kPostgresV2 = R"sql(
CREATE TABLE revoked_tokens (
  hash       TEXT COLLATE "C" NOT NULL PRIMARY KEY,
  id         TEXT   NOT NULL,
  revoked_ms BIGINT NOT NULL
);
)sql";

constexpr std::array<Migration, 2> kSqlite = {{
    {1, "tokens", kSqliteV1},
    {2, "revoked tokens", kSqliteV2},
}};
constexpr std::array<Migration, 2> kPostgres = {{
    {1, "tokens", kPostgresV1},
    {2, "revoked tokens", kPostgresV2},
}};

}  // namespace

std::span<const Migration> migrations(std::string_view backend) {
  if (backend == "postgres") return kPostgres;
  return kSqlite;
}

}  // namespace sluice::control::tokens
