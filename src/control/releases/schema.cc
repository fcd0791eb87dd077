// The releases domain's table: each release's driving state (driver.h ReleaseState as JSON
// TEXT, as in the resources domain). Append steps at the end of both lists; never edit a
// released one.
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

constexpr std::array<Migration, 1> kSqlite = {{{1, "releases", kSqliteV1}}};
constexpr std::array<Migration, 1> kPostgres = {{{1, "releases", kPostgresV1}}};

}  // namespace

std::span<const Migration> migrations(std::string_view backend) {
  if (backend == "postgres") return kPostgres;
  return kSqlite;
}

}  // namespace sluice::control::releases
