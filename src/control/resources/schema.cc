// The resources domain's tables: config versions and the whole resource set of each.
// Append steps at the end of both lists with the same version and name; never edit a released one.
// JSON (spec, diff) is TEXT, not jsonb: both backends then return exactly what was written.
// Each config version stores its whole resource set: a rollback is a commit of an old set, and
// reading any version is one indexed range scan.
#include "control/resources/resources_service.h"

#include <array>

namespace sluice::control::resources {
namespace {

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
)sql";

constexpr std::array<Migration, 1> kSqlite = {{{1, "config versions", kSqliteV1}}};
constexpr std::array<Migration, 1> kPostgres = {{{1, "config versions", kPostgresV1}}};

}  // namespace

std::span<const Migration> migrations(std::string_view backend) {
  if (backend == "postgres") return kPostgres;
  return kSqlite;
}

}  // namespace sluice::control::resources
