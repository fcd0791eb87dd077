// The registry's tables: instances and the registry revision (in counters; see Revision in
// store.h). Append steps at the end of both lists; never edit a released one.
// instances has no index on heartbeat_ms + ttl_ms: heartbeats are the hottest write (10,000
// instances every 5 s) and stay cheap (HOT updates on PostgreSQL) without one, while the expiry
// sweep scans a table of that size in about a millisecond.
#include "control/registry/registry_service.h"

#include <array>

namespace sluice::control::registry {
namespace {

constexpr std::string_view kSqliteV1 = R"sql(
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
CREATE TABLE counters (
  name  TEXT    NOT NULL PRIMARY KEY,
  value INTEGER NOT NULL
) WITHOUT ROWID;
INSERT INTO counters (name, value) VALUES ('registry', 0);
)sql";

constexpr std::string_view kPostgresV1 = R"sql(
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
CREATE TABLE counters (
  name  TEXT   NOT NULL PRIMARY KEY,
  value BIGINT NOT NULL
);
INSERT INTO counters (name, value) VALUES ('registry', 0);
)sql";

// Host facts an instance registers with (JSON text; '' = none).
constexpr std::string_view kV2 = R"sql(
ALTER TABLE instances ADD COLUMN facts TEXT NOT NULL DEFAULT '';
)sql";

constexpr std::array<Migration, 2> kSqlite = {
    {{1, "instances", kSqliteV1}, {2, "instance host facts", kV2}}};
constexpr std::array<Migration, 2> kPostgres = {
    {{1, "instances", kPostgresV1}, {2, "instance host facts", kV2}}};

}  // namespace

std::span<const Migration> migrations(std::string_view backend) {
  if (backend == "postgres") return kPostgres;
  return kSqlite;
}

}  // namespace sluice::control::registry
