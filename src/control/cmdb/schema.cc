// The cmdb domain's tables: configured types (specs applied in order), CIs, attribute values per
// source with last_seen, relations per source, append-only history, and a revision that moves on
// every write (the cache in cmdb.cc). Append steps at the end of both lists; never edit a
// released one.
#include <array>

#include "control/cmdb/cmdb_service.h"

namespace sluice::control::cmdb {
namespace {

constexpr std::string_view kSqliteV1 = R"sql(
CREATE TABLE cmdb_types (
  id    INTEGER PRIMARY KEY AUTOINCREMENT,
  spec  TEXT    NOT NULL,
  at_ms INTEGER NOT NULL
);
CREATE TABLE cmdb_cis (
  id         INTEGER PRIMARY KEY AUTOINCREMENT,
  type       TEXT    NOT NULL,
  key        TEXT    NOT NULL,
  created_ms INTEGER NOT NULL,
  UNIQUE (type, key)
);
CREATE TABLE cmdb_values (
  ci_id        INTEGER NOT NULL REFERENCES cmdb_cis (id),
  attr         TEXT    NOT NULL,
  source       TEXT    NOT NULL,
  value        TEXT    NOT NULL,
  last_seen_ms INTEGER NOT NULL,
  PRIMARY KEY (ci_id, attr, source)
) WITHOUT ROWID;
CREATE TABLE cmdb_relations (
  id           INTEGER PRIMARY KEY AUTOINCREMENT,
  kind         TEXT    NOT NULL,
  from_ci      INTEGER NOT NULL REFERENCES cmdb_cis (id),
  to_ci        INTEGER NOT NULL REFERENCES cmdb_cis (id),
  source       TEXT    NOT NULL,
  last_seen_ms INTEGER NOT NULL,
  UNIQUE (kind, from_ci, to_ci, source)
);
CREATE TABLE cmdb_history (
  id        INTEGER PRIMARY KEY AUTOINCREMENT,
  at_ms     INTEGER NOT NULL,
  type      TEXT    NOT NULL,
  key       TEXT    NOT NULL,
  what      TEXT    NOT NULL,
  field     TEXT    NOT NULL,
  source    TEXT    NOT NULL,
  old_value TEXT    NOT NULL,
  new_value TEXT    NOT NULL,
  change_id INTEGER NOT NULL,
  actor     TEXT    NOT NULL,
  reason    TEXT    NOT NULL
);
CREATE INDEX cmdb_history_by_ci ON cmdb_history (type, key, id);
CREATE TABLE cmdb_revision (
  one   INTEGER PRIMARY KEY CHECK (one = 1),
  value INTEGER NOT NULL
);
INSERT INTO cmdb_revision (one, value) VALUES (1, 0);
)sql";

constexpr std::string_view kPostgresV1 = R"sql(
CREATE TABLE cmdb_types (
  id    BIGINT GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
  spec  TEXT   NOT NULL,
  at_ms BIGINT NOT NULL
);
CREATE TABLE cmdb_cis (
  id         BIGINT GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
  type       TEXT COLLATE "C" NOT NULL,
  key        TEXT COLLATE "C" NOT NULL,
  created_ms BIGINT NOT NULL,
  UNIQUE (type, key)
);
CREATE TABLE cmdb_values (
  ci_id        BIGINT NOT NULL REFERENCES cmdb_cis (id),
  attr         TEXT COLLATE "C" NOT NULL,
  source       TEXT COLLATE "C" NOT NULL,
  value        TEXT   NOT NULL,
  last_seen_ms BIGINT NOT NULL,
  PRIMARY KEY (ci_id, attr, source)
);
CREATE TABLE cmdb_relations (
  id           BIGINT GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
  kind         TEXT COLLATE "C" NOT NULL,
  from_ci      BIGINT NOT NULL REFERENCES cmdb_cis (id),
  to_ci        BIGINT NOT NULL REFERENCES cmdb_cis (id),
  source       TEXT COLLATE "C" NOT NULL,
  last_seen_ms BIGINT NOT NULL,
  UNIQUE (kind, from_ci, to_ci, source)
);
CREATE TABLE cmdb_history (
  id        BIGINT GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
  at_ms     BIGINT NOT NULL,
  type      TEXT COLLATE "C" NOT NULL,
  key       TEXT COLLATE "C" NOT NULL,
  what      TEXT   NOT NULL,
  field     TEXT   NOT NULL,
  source    TEXT   NOT NULL,
  old_value TEXT   NOT NULL,
  new_value TEXT   NOT NULL,
  change_id BIGINT NOT NULL,
  actor     TEXT   NOT NULL,
  reason    TEXT   NOT NULL
);
CREATE INDEX cmdb_history_by_ci ON cmdb_history (type, key, id);
CREATE TABLE cmdb_revision (
  one   INTEGER PRIMARY KEY CHECK (one = 1),
  value BIGINT NOT NULL
);
INSERT INTO cmdb_revision (one, value) VALUES (1, 0);
)sql";

constexpr std::array<Migration, 1> kSqlite = {{{1, "cmdb", kSqliteV1}}};
constexpr std::array<Migration, 1> kPostgres = {{{1, "cmdb", kPostgresV1}}};

}  // namespace

std::span<const Migration> migrations(std::string_view backend) {
  if (backend == "postgres") return kPostgres;
  return kSqlite;
}

}  // namespace sluice::control::cmdb
