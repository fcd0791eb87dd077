// Versioned schema migrations, one list per domain service (each in the service's folder) and per
// backend (the types differ). Each domain has its own schema version, recorded in
// domain_migrations; every missing step of every domain is applied in one transaction, so
// migrating is idempotent and a failing step leaves the database as it was.
//
// Databases from before the split (one list, recorded in schema_migrations as versions 1 and 2)
// are adopted without running anything: their steps created exactly the tables of the domains'
// first steps (see kLegacySteps in migrations.cc). schema_migrations then records version 3,
// "per-domain migrations", so that an older build refuses the database instead of misreading it.
#pragma once

#include <cstdint>
#include <map>
#include <memory>
#include <span>
#include <string>
#include <string_view>
#include <vector>

#include "control/store.h"

namespace sluice::control {

struct Migration {
  int version;            // 1, 2, 3, ... without gaps; never renumber or edit a released step
  std::string_view name;  // recorded alongside the version, for people reading the table
  std::string_view sql;   // several statements; no parameters
};

// One domain's steps on one backend.
struct DomainSteps {
  std::string_view domain;
  std::span<const Migration> steps;
};

// Every registered domain's steps for "sqlite" or "postgres", in registration order (domains.cc);
// throws StoreError for another backend.
std::vector<DomainSteps> migrations_for(std::string_view backend);

// The version schema_migrations (the list before the split) holds once a database is migrated
// by this build.
inline constexpr int kLegacySchemaVersion = 3;

namespace detail {

// Applies the steps above each domain's version. Runs inside the caller's write transaction
// (Store::migrate opens one), so a failing step leaves nothing behind. Throws StoreError if the
// database is newer than these steps (migrated by a newer build).
void apply_migrations(SqlConnection& c, std::span<const DomainSteps> domains, int64_t now_ms);
// Version of schema_migrations: 0 never migrated, 1-2 before the split, kLegacySchemaVersion after.
int schema_version(SqlConnection& c);
// Each domain's version as recorded; empty before the split.
std::map<std::string, int> domain_versions(SqlConnection& c);
// A Store on `c` whose migrate() applies `domains` (whose steps must outlive it) instead of the
// built-in lists; Store::open is open_store(connect(url), migrations_for(backend)) plus migrate().
// For tests.
std::unique_ptr<Store> open_store(std::unique_ptr<SqlConnection> c,
                                  std::vector<DomainSteps> domains);

}  // namespace detail
}  // namespace sluice::control
