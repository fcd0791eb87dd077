// Versioned schema migrations, kept here as SQL text, one list per backend (the types differ).
// They are applied in order inside one transaction and recorded in schema_migrations, so
// migrating is idempotent and a failing step leaves the database as it was.
#pragma once

#include <cstdint>
#include <memory>
#include <span>
#include <string>
#include <string_view>

#include "control/store.h"

namespace sluice::control {

struct Migration {
  int version;            // 1, 2, 3, ... without gaps; never renumber or edit a released step
  std::string_view name;  // recorded alongside the version, for people reading the table
  std::string_view sql;   // several statements; no parameters
};

// The steps for "sqlite" or "postgres"; throws StoreError for another backend.
std::span<const Migration> migrations_for(std::string_view backend);

namespace detail {

// Applies the steps above the database's version and returns the version after. Runs inside the
// caller's write transaction (Store::migrate opens one), so a failing step leaves nothing behind.
// Throws StoreError if the database is newer than the last step (migrated by a newer build).
int apply_migrations(SqlConnection& c, std::span<const Migration> steps, int64_t now_ms);
// 0 for a database never migrated.
int schema_version(SqlConnection& c);
// A Store on `c` whose migrate() applies `steps` (which must outlive it) instead of the built-in
// list; Store::open is open_store(connect(url), migrations_for(backend)) plus migrate(). For tests.
std::unique_ptr<Store> open_store(std::unique_ptr<SqlConnection> c,
                                  std::span<const Migration> steps);

}  // namespace detail
}  // namespace sluice::control
