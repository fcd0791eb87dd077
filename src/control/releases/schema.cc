// The releases domain's table: each release's driving state (driver.h ReleaseState as JSON
// TEXT, as in the resources domain) and its sequence number (migration 2). Append steps at the end
// of both lists; never edit a released one.
#include <array>

#include "control/releases/releases_service.h"

namespace sluice::control::releases {
namespace {

constexpr std::string_view kSqliteV1 = R"sql(
CREATE TABLE release_states (
  name       TEXT    NOT NULL PRIMARY KEY,
  state      TEXT    NOT NULL,
  updated_ms INTEGER NOT NULL
) WITHOUT ROWID;
)sql";

constexpr std::string_view kPostgresV1 = R"sql(
CREATE TABLE release_states (
  name       TEXT COLLATE "C" NOT NULL PRIMARY KEY,
  state      TEXT   NOT NULL,
  updated_ms BIGINT NOT NULL
);
)sql";

// 2: a sequence number per state, written with a compare-and-set, so that of several control
// planes on one database one moves each release (releases_service.h).
constexpr std::string_view kSqliteV2 = R"sql(
ALTER TABLE release_states ADD COLUMN seq INTEGER NOT NULL DEFAULT 1;
)sql";

constexpr std::string_view kPostgresV2 = R"sql(
ALTER TABLE release_states ADD COLUMN seq BIGINT NOT NULL DEFAULT 1;
)sql";

constexpr std::array<Migration, 2> kSqlite = {
    {{1, "releases", kSqliteV1}, {2, "release state sequence", kSqliteV2}}};
constexpr std::array<Migration, 2> kPostgres = {
    {{1, "releases", kPostgresV1}, {2, "release state sequence", kPostgresV2}}};

}  // namespace

std::span<const Migration> migrations(std::string_view backend) {
  if (backend == "postgres") return kPostgres;
  return kSqlite;
}

}  // namespace sluice::control::releases
