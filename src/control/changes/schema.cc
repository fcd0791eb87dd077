// The changes domain's tables: change records, their transitions and approvals (append-only).
// Append steps at the end of both lists; never edit a released one.
// JSON (diff, affected, policy) is TEXT, as in the resources domain.
#include <array>

#include "control/changes/changes_service.h"

namespace sluice::control::changes {
namespace {

constexpr std::string_view kSqliteV1 = R"sql(
CREATE TABLE changes (
  id              INTEGER PRIMARY KEY,
  operation       TEXT    NOT NULL,
  author          TEXT    NOT NULL,
  reason          TEXT    NOT NULL,
  emergency       INTEGER NOT NULL,
  review_required INTEGER NOT NULL,
  state           TEXT    NOT NULL,
  base_version    INTEGER NOT NULL,
  version         INTEGER NOT NULL,
  target_version  INTEGER NOT NULL,
  proposed_ms     INTEGER NOT NULL,
  updated_ms      INTEGER NOT NULL,
  diff            TEXT    NOT NULL,
  affected        TEXT    NOT NULL,
  policy          TEXT    NOT NULL
);
CREATE INDEX changes_state ON changes (state, id);
CREATE TABLE change_transitions (
  change_id  INTEGER NOT NULL REFERENCES changes (id),
  seq        INTEGER NOT NULL,
  at_ms      INTEGER NOT NULL,
  from_state TEXT    NOT NULL,
  to_state   TEXT    NOT NULL,
  actor      TEXT    NOT NULL,
  reason     TEXT    NOT NULL,
  PRIMARY KEY (change_id, seq)
) WITHOUT ROWID;
CREATE INDEX change_transitions_at ON change_transitions (at_ms);
CREATE TABLE change_approvals (
  change_id INTEGER NOT NULL REFERENCES changes (id),
  approver  TEXT    NOT NULL,
  role      TEXT    NOT NULL,
  at_ms     INTEGER NOT NULL,
  reason    TEXT    NOT NULL,
  PRIMARY KEY (change_id, approver)
) WITHOUT ROWID;
)sql";

constexpr std::string_view kPostgresV1 = R"sql(
CREATE TABLE changes (
  id              BIGINT NOT NULL PRIMARY KEY,
  operation       TEXT   NOT NULL,
  author          TEXT   NOT NULL,
  reason          TEXT   NOT NULL,
  emergency       BIGINT NOT NULL,
  review_required BIGINT NOT NULL,
  state           TEXT COLLATE "C" NOT NULL,
  base_version    BIGINT NOT NULL,
  version         BIGINT NOT NULL,
  target_version  BIGINT NOT NULL,
  proposed_ms     BIGINT NOT NULL,
  updated_ms      BIGINT NOT NULL,
  diff            TEXT   NOT NULL,
  affected        TEXT   NOT NULL,
  policy          TEXT   NOT NULL
);
CREATE INDEX changes_state ON changes (state, id);
CREATE TABLE change_transitions (
  change_id  BIGINT NOT NULL REFERENCES changes (id),
  seq        BIGINT NOT NULL,
  at_ms      BIGINT NOT NULL,
  from_state TEXT   NOT NULL,
  to_state   TEXT   NOT NULL,
  actor      TEXT   NOT NULL,
  reason     TEXT   NOT NULL,
  PRIMARY KEY (change_id, seq)
);
CREATE INDEX change_transitions_at ON change_transitions (at_ms);
CREATE TABLE change_approvals (
  change_id BIGINT NOT NULL REFERENCES changes (id),
  approver  TEXT COLLATE "C" NOT NULL,
  role      TEXT   NOT NULL,
  at_ms     BIGINT NOT NULL,
  reason    TEXT   NOT NULL,
  PRIMARY KEY (change_id, approver)
);
)sql";

// v2: a staged rollout's driver state (StagedPlan, stage clock, analyses), one row per change,
// written with a compare-and-set on seq (Store::put_rollout_state).
constexpr std::string_view kSqliteV2 = R"sql(
CREATE TABLE change_rollouts (
  change_id  INTEGER NOT NULL PRIMARY KEY REFERENCES changes (id),
  seq        INTEGER NOT NULL,
  updated_ms INTEGER NOT NULL,
  state      TEXT    NOT NULL
);
)sql";

constexpr std::string_view kPostgresV2 = R"sql(
CREATE TABLE change_rollouts (
  change_id  BIGINT NOT NULL PRIMARY KEY REFERENCES changes (id),
  seq        BIGINT NOT NULL,
  updated_ms BIGINT NOT NULL,
  state      TEXT   NOT NULL
);
)sql";

constexpr std::array<Migration, 2> kSqlite = {
    {{1, "changes", kSqliteV1}, {2, "change rollouts", kSqliteV2}}};
constexpr std::array<Migration, 2> kPostgres = {
    {{1, "changes", kPostgresV1}, {2, "change rollouts", kPostgresV2}}};

}  // namespace

std::span<const Migration> migrations(std::string_view backend) {
  if (backend == "postgres") return kPostgres;
  return kSqlite;
}

}  // namespace sluice::control::changes
