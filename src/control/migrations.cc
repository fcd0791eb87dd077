#include "control/migrations.h"

#include <fmt/format.h>

#include <array>
#include <charconv>
#include <set>

#include "control/domains.h"

namespace sluice::control {
namespace {

using detail::SqlConnection;
using detail::SqlError;
using detail::SqlValue;

// What the single list (schema_migrations versions 1 and 2, up to c14afe9) created, by the
// domain that owns each table now. A database at legacy version N holds exactly the domain
// steps listed for 1..N, so they are recorded, not run. Never edit: old databases depend on it.
struct LegacyStep {
  int version;
  std::array<std::pair<std::string_view, int>, 5> domains;  // (domain, its step); empty = none
};
constexpr std::array<LegacyStep, 2> kLegacySteps = {{
    // "initial schema": config_versions, config_resources | instances, counters | gateways |
    // events, rollups | tokens
    {1, {{{"resources", 1}, {"registry", 1}, {"fleet", 1}, {"stats", 1}, {"tokens", 1}}}},
    // "revoked tokens": revoked_tokens
    {2, {{{"tokens", 2}, {}, {}, {}, {}}}},
}};

// Created outside the numbered steps: they record them. The same text works on both backends.
constexpr std::string_view kCreateLegacyTable =
    "CREATE TABLE IF NOT EXISTS schema_migrations ("
    " version BIGINT NOT NULL PRIMARY KEY,"
    " name TEXT NOT NULL,"
    " applied_ms BIGINT NOT NULL)";
constexpr std::string_view kCreateDomainTable =
    "CREATE TABLE IF NOT EXISTS domain_migrations ("
    " domain TEXT NOT NULL,"
    " version BIGINT NOT NULL,"
    " name TEXT NOT NULL,"
    " applied_ms BIGINT NOT NULL,"
    " PRIMARY KEY (domain, version))";

// Advisory lock key (PostgreSQL) that serialises control planes migrating the same database.
constexpr int64_t kMigrationLock = 0x736c7569636530;  // "sluice0"

int to_int(const std::string& s, std::string_view table) {
  int v = 0;
  auto [p, ec] = std::from_chars(s.data(), s.data() + s.size(), v);
  if (ec != std::errc() || p != s.data() + s.size())
    throw StoreError(fmt::format("{}: unreadable version '{}'", table, s));
  return v;
}

bool table_exists(SqlConnection& c, std::string_view name) {
  const std::string sql =
      c.backend() == "sqlite"
          ? "SELECT COUNT(*) FROM sqlite_master WHERE type = 'table' AND name = $1"
          : "SELECT COUNT(*) FROM information_schema.tables"
            " WHERE table_schema = current_schema() AND table_name::text = $1";
  const std::array<SqlValue, 1> p = {std::string(name)};
  return c.query(sql, p).rows.at(0).at(0) != "0";
}

void record(SqlConnection& c, std::string_view domain, const Migration& m, int64_t now_ms) {
  const std::array<SqlValue, 4> row = {std::string(domain), int64_t{m.version}, std::string(m.name),
                                       now_ms};
  c.query(
      "INSERT INTO domain_migrations (domain, version, name, applied_ms)"
      " VALUES ($1, $2, $3, $4)",
      row);
}

}  // namespace

std::vector<DomainSteps> migrations_for(std::string_view backend) {
  if (backend != "sqlite" && backend != "postgres")
    throw StoreError(fmt::format("no migrations for backend '{}'", backend));
  std::vector<DomainSteps> out;
  for (const Domain& d : domains()) out.push_back({d.name, d.migrations(backend)});
  return out;
}

namespace detail {

int schema_version(SqlConnection& c) {
  if (!table_exists(c, "schema_migrations")) return 0;
  return to_int(
      c.query("SELECT COALESCE(MAX(version), 0) FROM schema_migrations", {}).rows.at(0).at(0),
      "schema_migrations");
}

std::map<std::string, int> domain_versions(SqlConnection& c) {
  std::map<std::string, int> out;
  if (!table_exists(c, "domain_migrations")) return out;
  for (auto& row :
       c.query("SELECT domain, MAX(version) FROM domain_migrations GROUP BY domain", {}).rows)
    out[row.at(0)] = to_int(row.at(1), "domain_migrations");
  return out;
}

void apply_migrations(SqlConnection& c, std::span<const DomainSteps> domains, int64_t now_ms) {
  std::set<std::string_view> names;
  for (const DomainSteps& d : domains) {
    if (!names.insert(d.domain).second)
      throw StoreError(
          fmt::format("migration lists are broken: domain {} is listed twice", d.domain));
    for (size_t i = 0; i < d.steps.size(); ++i) {
      if (d.steps[i].version != static_cast<int>(i) + 1)
        throw StoreError(fmt::format("migration list of {} is broken: step {} has version {}",
                                     d.domain, i + 1, d.steps[i].version));
    }
  }
  c.lock(kMigrationLock);
  c.script(std::string(kCreateLegacyTable));
  c.script(std::string(kCreateDomainTable));

  const int legacy = schema_version(c);
  if (legacy > kLegacySchemaVersion) {
    throw StoreError(fmt::format(
        "{}: database schema version {} is newer than this build knows ({}); upgrade sluice",
        c.location(), legacy, kLegacySchemaVersion));
  }
  if (legacy < kLegacySchemaVersion) {
    // Adopt what the single list created (nothing on a new database), then mark the split.
    for (const LegacyStep& step : kLegacySteps) {
      if (step.version > legacy) break;
      for (const auto& [domain, version] : step.domains) {
        if (domain.empty()) continue;
        for (const DomainSteps& d : domains) {
          if (d.domain != domain) continue;
          if (static_cast<size_t>(version) > d.steps.size())
            throw StoreError(
                fmt::format("migration list of {} lacks step {} of the database", domain, version));
          record(c, domain, d.steps[version - 1], now_ms);
        }
      }
    }
    const std::array<SqlValue, 3> row = {int64_t{kLegacySchemaVersion},
                                         std::string("per-domain migrations (domain_migrations)"),
                                         now_ms};
    c.query("INSERT INTO schema_migrations (version, name, applied_ms) VALUES ($1, $2, $3)", row);
  }

  const std::map<std::string, int> current = domain_versions(c);
  for (const auto& [domain, version] : current) {
    if (!names.contains(domain))
      throw StoreError(fmt::format(
          "{}: the database has tables of domain '{}' (schema version {}), which this build does "
          "not know; upgrade sluice",
          c.location(), domain, version));
  }
  for (const DomainSteps& d : domains) {
    auto it = current.find(std::string(d.domain));
    const int have = it == current.end() ? 0 : it->second;
    const int known = static_cast<int>(d.steps.size());
    if (have > known) {
      throw StoreError(fmt::format(
          "{}: database schema version {} of {} is newer than this build knows ({}); upgrade "
          "sluice",
          c.location(), have, d.domain, known));
    }
    for (const Migration& m : d.steps.subspan(have)) {
      try {
        c.script(std::string(m.sql));
      } catch (const SqlError& e) {
        throw SqlError(e.failure, fmt::format("migration {} {} ({}) failed: {}", d.domain,
                                              m.version, m.name, e.what()));
      }
      record(c, d.domain, m, now_ms);
    }
  }
}

}  // namespace detail
}  // namespace sluice::control
