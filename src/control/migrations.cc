#include "control/migrations.h"

#include <fmt/format.h>

#include <array>
#include <charconv>

namespace sluice::control {
namespace {

// Notes that hold for both lists:
// - JSON (spec, diff, detail, data) is TEXT, not jsonb: both backends then return exactly what was
//   written, and the store behaves the same on either.
// - Each config version stores its whole resource set: a rollback is a commit of an old set, and
//   reading any version is one indexed range scan.
// - instances has no index on heartbeat_ms + ttl_ms: heartbeats are the hottest write (10,000
//   instances every 5 s) and stay cheap (HOT updates on PostgreSQL) without one, while the expiry
//   sweep scans a table of that size in about a millisecond.
// - counters holds the registry revision (see Revision in store.h).

constexpr std::string_view kSqliteV1 = R"sql(
CREATE TABLE config_versions (
  number     INTEGER PRIMARY KEY,
  author     TEXT    NOT NULL,
  created_ms INTEGER NOT NULL,
  reason     TEXT    NOT NULL,
  diff       TEXT    NOT NULL
);
CREATE TABLE config_resources (
  version INTEGER NOT NULL REFERENCES config_versions (number),
  kind    TEXT    NOT NULL,
  name    TEXT    NOT NULL,
  spec    TEXT    NOT NULL,
  PRIMARY KEY (version, kind, name)
) WITHOUT ROWID;
CREATE TABLE instances (
  service       TEXT    NOT NULL,
  id            TEXT    NOT NULL,
  address       TEXT    NOT NULL,
  city          TEXT    NOT NULL,
  zone          TEXT    NOT NULL,
  weight        INTEGER NOT NULL,
  ttl_ms        INTEGER NOT NULL,
  registered_ms INTEGER NOT NULL,
  heartbeat_ms  INTEGER NOT NULL,
  PRIMARY KEY (service, id)
) WITHOUT ROWID;
CREATE TABLE gateways (
  id              TEXT    NOT NULL PRIMARY KEY,
  city            TEXT    NOT NULL,
  zone            TEXT    NOT NULL,
  applied_version INTEGER NOT NULL,
  status          TEXT    NOT NULL,
  error           TEXT    NOT NULL,
  seen_ms         INTEGER NOT NULL
) WITHOUT ROWID;
CREATE TABLE events (
  id      INTEGER PRIMARY KEY AUTOINCREMENT,  -- AUTOINCREMENT: ids are never reused after pruning
  at_ms   INTEGER NOT NULL,
  source  TEXT    NOT NULL,
  kind    TEXT    NOT NULL,
  subject TEXT    NOT NULL,
  detail  TEXT    NOT NULL
);
CREATE INDEX events_at ON events (at_ms);
CREATE TABLE rollups (
  minute_ms INTEGER NOT NULL,
  gateway   TEXT    NOT NULL,
  data      TEXT    NOT NULL,
  PRIMARY KEY (minute_ms, gateway)
) WITHOUT ROWID;
CREATE TABLE tokens (
  id         TEXT    NOT NULL PRIMARY KEY,
  hash       TEXT    NOT NULL UNIQUE,
  role       TEXT    NOT NULL CHECK (role IN ('viewer', 'operator', 'admin')),
  name       TEXT    NOT NULL,
  created_ms INTEGER NOT NULL
);
CREATE TABLE counters (
  name  TEXT    NOT NULL PRIMARY KEY,
  value INTEGER NOT NULL
) WITHOUT ROWID;
INSERT INTO counters (name, value) VALUES ('registry', 0);
)sql";

// Key columns are COLLATE "C" so that ORDER BY is bytewise, as on SQLite, whatever the database's
// locale.
constexpr std::string_view kPostgresV1 = R"sql(
CREATE TABLE config_versions (
  number     BIGINT NOT NULL PRIMARY KEY,
  author     TEXT   NOT NULL,
  created_ms BIGINT NOT NULL,
  reason     TEXT   NOT NULL,
  diff       TEXT   NOT NULL
);
CREATE TABLE config_resources (
  version BIGINT            NOT NULL REFERENCES config_versions (number),
  kind    TEXT COLLATE "C"  NOT NULL,
  name    TEXT COLLATE "C"  NOT NULL,
  spec    TEXT              NOT NULL,
  PRIMARY KEY (version, kind, name)
);
CREATE TABLE instances (
  service       TEXT COLLATE "C" NOT NULL,
  id            TEXT COLLATE "C" NOT NULL,
  address       TEXT   NOT NULL,
  city          TEXT   NOT NULL,
  zone          TEXT   NOT NULL,
  weight        BIGINT NOT NULL,
  ttl_ms        BIGINT NOT NULL,
  registered_ms BIGINT NOT NULL,
  heartbeat_ms  BIGINT NOT NULL,
  PRIMARY KEY (service, id)
);
CREATE TABLE gateways (
  id              TEXT COLLATE "C" NOT NULL PRIMARY KEY,
  city            TEXT   NOT NULL,
  zone            TEXT   NOT NULL,
  applied_version BIGINT NOT NULL,
  status          TEXT   NOT NULL,
  error           TEXT   NOT NULL,
  seen_ms         BIGINT NOT NULL
);
CREATE TABLE events (
  id      BIGINT GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
  at_ms   BIGINT NOT NULL,
  source  TEXT   NOT NULL,
  kind    TEXT   NOT NULL,
  subject TEXT   NOT NULL,
  detail  TEXT   NOT NULL
);
CREATE INDEX events_at ON events (at_ms);
CREATE TABLE rollups (
  minute_ms BIGINT           NOT NULL,
  gateway   TEXT COLLATE "C" NOT NULL,
  data      TEXT             NOT NULL,
  PRIMARY KEY (minute_ms, gateway)
);
CREATE TABLE tokens (
  id         TEXT COLLATE "C" NOT NULL PRIMARY KEY,
  hash       TEXT   NOT NULL UNIQUE,
  role       TEXT   NOT NULL CHECK (role IN ('viewer', 'operator', 'admin')),
  name       TEXT   NOT NULL,
  created_ms BIGINT NOT NULL
);
CREATE TABLE counters (
  name  TEXT   NOT NULL PRIMARY KEY,
  value BIGINT NOT NULL
);
INSERT INTO counters (name, value) VALUES ('registry', 0);
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

// Append new steps at the end of both lists with the same version and name.
constexpr std::array<Migration, 2> kSqlite = {{
    {1, "initial schema", kSqliteV1},
    {2, "revoked tokens", kSqliteV2},
}};
constexpr std::array<Migration, 2> kPostgres = {{
    {1, "initial schema", kPostgresV1},
    {2, "revoked tokens", kPostgresV2},
}};

// Created outside the numbered steps: it records them. The same text works on both backends.
constexpr std::string_view kCreateMigrationsTable =
    "CREATE TABLE IF NOT EXISTS schema_migrations ("
    " version BIGINT NOT NULL PRIMARY KEY,"
    " name TEXT NOT NULL,"
    " applied_ms BIGINT NOT NULL)";

// Advisory lock key (PostgreSQL) that serialises control planes migrating the same database.
constexpr int64_t kMigrationLock = 0x736c7569636530;  // "sluice0"

int to_int(const std::string& s) {
  int v = 0;
  auto [p, ec] = std::from_chars(s.data(), s.data() + s.size(), v);
  if (ec != std::errc() || p != s.data() + s.size())
    throw StoreError(fmt::format("schema_migrations: unreadable version '{}'", s));
  return v;
}

}  // namespace

std::span<const Migration> migrations_for(std::string_view backend) {
  if (backend == "sqlite") return kSqlite;
  if (backend == "postgres") return kPostgres;
  throw StoreError(fmt::format("no migrations for backend '{}'", backend));
}

namespace detail {

int schema_version(SqlConnection& c) {
  const char* exists =
      c.backend() == "sqlite"
          ? "SELECT COUNT(*) FROM sqlite_master WHERE type = 'table' AND name = 'schema_migrations'"
          : "SELECT COUNT(*) FROM information_schema.tables"
            " WHERE table_schema = current_schema() AND table_name = 'schema_migrations'";
  if (c.query(exists, {}).rows.at(0).at(0) == "0") return 0;
  return to_int(
      c.query("SELECT COALESCE(MAX(version), 0) FROM schema_migrations", {}).rows.at(0).at(0));
}

int apply_migrations(SqlConnection& c, std::span<const Migration> steps, int64_t now_ms) {
  for (size_t i = 0; i < steps.size(); ++i) {
    if (steps[i].version != static_cast<int>(i) + 1)
      throw StoreError(
          fmt::format("migration list is broken: step {} has version {}", i + 1, steps[i].version));
  }
  c.lock(kMigrationLock);
  c.script(std::string(kCreateMigrationsTable));
  const int current = schema_version(c);
  const int known = static_cast<int>(steps.size());
  if (current > known) {
    throw StoreError(fmt::format(
        "{}: database schema version {} is newer than this build knows ({}); upgrade sluice",
        c.location(), current, known));
  }
  for (const Migration& m : steps.subspan(current)) {
    try {
      c.script(std::string(m.sql));
    } catch (const SqlError& e) {
      throw SqlError(e.failure,
                     fmt::format("migration {} ({}) failed: {}", m.version, m.name, e.what()));
    }
    const std::array<SqlValue, 3> row = {int64_t{m.version}, std::string(m.name), now_ms};
    c.query("INSERT INTO schema_migrations (version, name, applied_ms) VALUES ($1, $2, $3)", row);
  }
  return known;
}

}  // namespace detail
}  // namespace sluice::control
