// The stats domain's tables: events and 1-minute stats rollups (JSON as TEXT).
// Append steps at the end of both lists; never edit a released one.
#include "control/stats/stats_service.h"

#include <array>

namespace sluice::control::stats {
namespace {

constexpr std::string_view kSqliteV1 = R"sql(
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
)sql";

constexpr std::string_view kPostgresV1 = R"sql(
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
)sql";

constexpr std::array<Migration, 1> kSqlite = {{{1, "events and rollups", kSqliteV1}}};
constexpr std::array<Migration, 1> kPostgres = {{{1, "events and rollups", kPostgresV1}}};

}  // namespace

std::span<const Migration> migrations(std::string_view backend) {
  if (backend == "postgres") return kPostgres;
  return kSqlite;
}

}  // namespace sluice::control::stats
