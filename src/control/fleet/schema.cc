// The fleet's table: the gateways (data planes) known and what each last reported.
// Append steps at the end of both lists; never edit a released one.
#include "control/fleet/fleet_service.h"

#include <array>

namespace sluice::control::fleet {
namespace {

constexpr std::string_view kSqliteV1 = R"sql(
CREATE TABLE gateways (
  id              TEXT    NOT NULL PRIMARY KEY,
  city            TEXT    NOT NULL,
  zone            TEXT    NOT NULL,
  applied_version INTEGER NOT NULL,
  status          TEXT    NOT NULL,
  error           TEXT    NOT NULL,
  seen_ms         INTEGER NOT NULL
) WITHOUT ROWID;
)sql";

constexpr std::string_view kPostgresV1 = R"sql(
CREATE TABLE gateways (
  id              TEXT COLLATE "C" NOT NULL PRIMARY KEY,
  city            TEXT   NOT NULL,
  zone            TEXT   NOT NULL,
  applied_version BIGINT NOT NULL,
  status          TEXT   NOT NULL,
  error           TEXT   NOT NULL,
  seen_ms         BIGINT NOT NULL
);
)sql";

constexpr std::array<Migration, 1> kSqlite = {{{1, "gateways", kSqliteV1}}};
constexpr std::array<Migration, 1> kPostgres = {{{1, "gateways", kPostgresV1}}};

}  // namespace

std::span<const Migration> migrations(std::string_view backend) {
  if (backend == "postgres") return kPostgres;
  return kSqlite;
}

}  // namespace sluice::control::fleet
