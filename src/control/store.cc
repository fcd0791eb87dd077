#include "control/store.h"

#include <fmt/format.h>

#include <algorithm>
#include <charconv>
#include <chrono>
#include <limits>
#include <mutex>
#include <set>
#include <type_traits>

#include "control/migrations.h"

namespace sluice::control {

std::string resource_kinds_text() {
  std::string out;
  for (size_t i = 0; i < kResourceKinds.size(); ++i) {
    if (i > 0) out += i + 1 == kResourceKinds.size() ? " or " : ", ";
    out += kResourceKinds[i];
  }
  return out;
}

std::vector<std::pair<int64_t, nlohmann::json>> Store::rollups(int64_t from_ms, int64_t to_ms,
                                                               const std::string& gateway) {
  std::vector<std::pair<int64_t, nlohmann::json>> out;
  for (Rollup& r : rollup_rows(from_ms, to_ms, gateway))
    out.emplace_back(r.minute_ms, std::move(r.data));
  return out;
}

namespace {

using detail::Failure;
using detail::SqlError;
using detail::SqlResult;
using detail::SqlValue;
using detail::Tx;
using Row = std::vector<std::string>;
using Json = nlohmann::json;

constexpr int64_t kNoLimit = std::numeric_limits<int64_t>::max();
// Advisory lock key (PostgreSQL) that makes event ids commit in order across control planes.
constexpr int64_t kEventLock = 0x736c7569636531;  // "sluice1"
// Advisory lock key that makes change ids unique across control planes.
constexpr int64_t kChangeLock = 0x736c7569636532;  // "sluice2"
// Rows per multi-row INSERT when committing a resource set: 4 parameters each stays far below
// both backends' limits (SQLite 32766, PostgreSQL 65535) and saves round trips to PostgreSQL.
constexpr size_t kInsertBatch = 100;

int64_t to_i64(const std::string& s) {
  int64_t v = 0;
  auto [p, ec] = std::from_chars(s.data(), s.data() + s.size(), v);
  if (ec != std::errc() || p != s.data() + s.size())
    throw StoreError(fmt::format("store returned '{}' where a number was expected", s));
  return v;
}

Json from_text(const std::string& s, std::string_view what) {
  try {
    return Json::parse(s);
  } catch (const Json::exception& e) {
    throw StoreError(fmt::format("stored {} is not valid JSON: {}", what, e.what()));
  }
}

std::string to_text(const Json& j, std::string_view what) {
  try {
    return j.dump();
  } catch (const Json::exception& e) {  // invalid UTF-8 in a string
    throw StoreError(fmt::format("{} cannot be stored: {}", what, e.what()));
  }
}

void require(bool ok, std::string_view message) {
  if (!ok) throw StoreError(std::string(message));
}

// Only for schema_migrations.applied_ms and revoked_tokens.revoked_ms, records for people; no
// decision reads them.
int64_t wall_ms() {
  using namespace std::chrono;
  return duration_cast<milliseconds>(system_clock::now().time_since_epoch()).count();
}

constexpr const char* kInstanceColumns =
    "service, id, address, city, zone, weight, ttl_ms, registered_ms, heartbeat_ms, facts";

Instance instance_from(const Row& r) {
  Instance i;
  i.service = r[0];
  i.id = r[1];
  i.address = r[2];
  i.city = r[3];
  i.zone = r[4];
  i.weight = static_cast<uint32_t>(to_i64(r[5]));
  i.ttl_ms = to_i64(r[6]);
  i.registered_ms = to_i64(r[7]);
  i.heartbeat_ms = to_i64(r[8]);
  i.facts = r[9];
  return i;
}

VersionInfo version_from(const Row& r) {
  return VersionInfo{to_i64(r[0]), r[1], to_i64(r[2]), r[3], from_text(r[4], "diff")};
}

TokenRecord token_from(const Row& r) {
  return TokenRecord{r[0], r[1], r[2], r[3], to_i64(r[4])};
}

// All Store logic, once, on top of a backend's SqlConnection. One connection behind a mutex: the
// control plane's writes are small, and SQLite has one writer anyway.
class SqlStore final : public Store {
 public:
  SqlStore(std::unique_ptr<detail::SqlConnection> c, std::vector<DomainSteps> domains)
      : conn_(std::move(c)), domains_(std::move(domains)) {}

  std::string backend() const override { return conn_->backend(); }
  std::string location() const override { return conn_->location(); }

  void migrate() override {
    transact("migrate", Tx::kWrite, [&] { detail::apply_migrations(*conn_, domains_, wall_ms()); });
  }

  int schema_version() override {
    return transact("schema_version", Tx::kRead, [&] { return detail::schema_version(*conn_); });
  }

  std::map<std::string, int> domain_versions() override {
    return transact("domain_versions", Tx::kRead, [&] { return detail::domain_versions(*conn_); });
  }

  int64_t latest_version() override {
    return to_i64(one("latest_version", Tx::kRead, kLatest, {}).rows.at(0).at(0));
  }

  std::vector<Resource> resources(int64_t version) override {
    return transact("resources", Tx::kRead, [&] {
      std::vector<Resource> out;
      const int64_t v = version > 0 ? version : latest();
      auto rows =
          q("SELECT kind, name, spec FROM config_resources WHERE version = $1"
            " ORDER BY kind, name",
            {v});
      out.reserve(rows.size());
      for (Row& r : rows)
        out.push_back(Resource{std::move(r[0]), std::move(r[1]), from_text(r[2], "spec")});
      return out;
    });
  }

  int64_t commit(const std::vector<Resource>& all, const std::string& author,
                 const std::string& reason, const Json& diff, int64_t expected,
                 int64_t now_ms) override {
    require(!reason.empty(), "commit: a reason is required");
    std::vector<std::string> specs = check_set(all, "commit");
    const std::string diff_text = to_text(diff, "diff");
    try {
      return transact("commit", Tx::kWrite, [&]() -> int64_t {
        const int64_t base = latest();
        if (base != expected) return 0;
        insert_version(all, specs, author, reason, diff_text, base + 1, now_ms);
        return base + 1;
      });
    } catch (const SqlError& e) {
      // Another control plane committed the same number first (its row blocks ours until it
      // commits, then ours fails on the primary key): the optimistic check lost.
      if (e.failure == Failure::kConstraint || e.failure == Failure::kConflict) return 0;
      throw;
    }
  }

  int64_t add_change(const ChangeRecord& c) override {
    ChangeTexts t = change_texts(c);
    return transact("add_change", Tx::kWrite, [&] { return insert_change(c, t); });
  }

  bool update_change(int64_t id, const std::string& expected_state, const ChangeUpdate& u,
                     int64_t now_ms) override {
    try {
      return transact("update_change", Tx::kWrite,
                      [&] { return append_change(id, expected_state, u, now_ms); });
    } catch (const SqlError& e) {
      if (e.failure != Failure::kConstraint) throw;
      throw StoreError(fmt::format("update_change: change {} was approved by '{}' already", id,
                                   u.approval ? u.approval->approver : ""));
    }
  }

  int64_t commit_change(const std::vector<Resource>& all, const Json& diff, int64_t expected,
                        int64_t now_ms, ChangeRecord& c, const std::string& expected_state,
                        const ChangeUpdate& u, const ChangeTransition& rolled_back) override {
    require(!c.reason.empty(), "commit_change: a reason is required");
    std::vector<std::string> specs = check_set(all, "commit_change");
    const std::string diff_text = to_text(diff, "diff");
    ChangeTexts t = change_texts(c);
    try {
      return transact("commit_change", Tx::kWrite, [&]() -> int64_t {
        const int64_t base = latest();
        if (base != expected) return 0;
        const int64_t v = base + 1;
        const std::string reason =
            c.id > 0 ? fmt::format("{} (change {})", c.reason, c.id) : c.reason;
        insert_version(all, specs, c.author, reason, diff_text, v, now_ms);
        c.version = v;
        if (c.id == 0) {
          c.id = insert_change(c, t);
        } else {
          if (!append_change(c.id, expected_state, u, now_ms))
            throw StoreError(fmt::format("change {} is no longer {}: nothing was committed", c.id,
                                         expected_state));
          q("UPDATE changes SET version = $1 WHERE id = $2", {v, c.id});
        }
        if (c.target_version > 0) {
          for (const Row& r : q("SELECT id FROM changes WHERE state = 'done' AND version > $1"
                                " AND id <> $2 ORDER BY id",
                                {c.target_version, c.id})) {
            ChangeTransition tr = rolled_back;
            tr.from = "done";
            tr.to = "rolled_back";
            append_change(to_i64(r[0]), "done", ChangeUpdate{std::nullopt, {tr}, std::nullopt},
                          now_ms);
          }
        }
        return v;
      });
    } catch (const SqlError& e) {
      if (e.failure == Failure::kConstraint || e.failure == Failure::kConflict) return 0;
      throw;
    }
  }

  std::optional<ChangeRecord> change(int64_t id) override {
    return transact("change", Tx::kRead, [&]() -> std::optional<ChangeRecord> {
      auto rows = q(std::string("SELECT ") + kChangeColumns + " FROM changes WHERE id = $1", {id});
      if (rows.empty()) return std::nullopt;
      ChangeRecord c = change_from(rows[0]);
      load_history(c);
      return c;
    });
  }

  std::vector<ChangeRecord> changes(const std::string& state, int64_t since_ms, int64_t limit,
                                    bool full) override {
    return transact("changes", Tx::kRead, [&] {
      std::vector<ChangeRecord> out;
      auto rows = q(std::string("SELECT ") + kChangeColumns +
                        " FROM changes WHERE ($1 = '' OR state = $1) AND proposed_ms >= $2"
                        " ORDER BY id DESC LIMIT $3",
                    {state, since_ms, limit > 0 ? limit : kNoLimit});
      for (const Row& r : rows) {
        out.push_back(change_from(r));
        if (full) load_history(out.back());
      }
      return out;
    });
  }

  std::vector<ChangeRecord> changes_active_since(int64_t since_ms) override {
    return transact("changes_active_since", Tx::kRead, [&] {
      std::vector<ChangeRecord> out;
      auto rows = q(std::string("SELECT ") + kChangeColumns +
                        " FROM changes WHERE id IN (SELECT change_id FROM change_transitions"
                        " WHERE at_ms >= $1) ORDER BY id",
                    {since_ms});
      for (const Row& r : rows) {
        out.push_back(change_from(r));
        load_history(out.back());
      }
      return out;
    });
  }

  std::vector<VersionInfo> versions(int64_t limit, int64_t before) override {
    std::vector<VersionInfo> out;
    for (const Row& r : one("versions", Tx::kRead,
                            "SELECT number, author, created_ms, reason, diff FROM config_versions"
                            " WHERE number < $1 ORDER BY number DESC LIMIT $2",
                            {before > 0 ? before : kNoLimit, limit > 0 ? limit : kNoLimit})
                            .rows)
      out.push_back(version_from(r));
    return out;
  }

  std::optional<VersionInfo> version(int64_t number) override {
    auto rows = one("version", Tx::kRead,
                    "SELECT number, author, created_ms, reason, diff FROM config_versions"
                    " WHERE number = $1",
                    {number})
                    .rows;
    if (rows.empty()) return std::nullopt;
    return version_from(rows[0]);
  }

  void upsert_instance(const Instance& i) override {
    require(!i.service.empty() && !i.id.empty(), "upsert_instance: service and id are required");
    require(i.ttl_ms > 0, "upsert_instance: ttl_ms must be positive");
    transact("upsert_instance", Tx::kWriteRelaxed, [&] {
      auto old =
          q("SELECT address, city, zone, weight FROM instances"
            " WHERE service = $1 AND id = $2",
            {i.service, i.id});
      q(fmt::format("INSERT INTO instances ({}) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10)"
                    " ON CONFLICT (service, id) DO UPDATE SET address = excluded.address,"
                    " city = excluded.city, zone = excluded.zone, weight = excluded.weight,"
                    " ttl_ms = excluded.ttl_ms, registered_ms = excluded.registered_ms,"
                    " heartbeat_ms = excluded.heartbeat_ms, facts = excluded.facts",
                    kInstanceColumns),
        {i.service, i.id, i.address, i.city, i.zone, int64_t{i.weight}, i.ttl_ms, i.registered_ms,
         i.heartbeat_ms, i.facts});
      // Only what shapes endpoint sets moves the registry revision; an identical re-registration
      // (an instance answering a 404 heartbeat) does not wake every watching gateway.
      if (old.empty() || old[0] != Row{i.address, i.city, i.zone, std::to_string(i.weight)})
        bump_registry();
    });
  }

  bool heartbeat(const std::string& service, const std::string& id, int64_t now_ms) override {
    return one("heartbeat", Tx::kWriteRelaxed,
               "UPDATE instances SET heartbeat_ms = CASE WHEN heartbeat_ms < $3 THEN $3"
               " ELSE heartbeat_ms END WHERE service = $1 AND id = $2",
               {service, id, now_ms})
               .affected > 0;
  }

  bool remove_instance(const std::string& service, const std::string& id) override {
    return transact("remove_instance", Tx::kWriteRelaxed, [&] {
      const bool removed =
          conn_->query("DELETE FROM instances WHERE service = $1 AND id = $2", vals({service, id}))
              .affected > 0;
      if (removed) bump_registry();
      return removed;
    });
  }

  std::vector<Instance> instances(const std::string& service) override {
    auto rows =
        service.empty()
            ? one("instances", Tx::kRead,
                  fmt::format("SELECT {} FROM instances ORDER BY service, id", kInstanceColumns),
                  {})
            : one("instances", Tx::kRead,
                  fmt::format("SELECT {} FROM instances WHERE service = $1 ORDER BY id",
                              kInstanceColumns),
                  {service});
    std::vector<Instance> out;
    out.reserve(rows.rows.size());
    for (const Row& r : rows.rows) out.push_back(instance_from(r));
    return out;
  }

  std::vector<Instance> expire_instances(int64_t now_ms) override {
    return transact("expire_instances", Tx::kWriteRelaxed, [&] {
      // One statement, so an instance that heartbeats concurrently is either returned and gone or
      // kept, never returned and kept.
      std::vector<Instance> out;
      for (const Row& r : q(fmt::format("DELETE FROM instances WHERE heartbeat_ms + ttl_ms < $1"
                                        " RETURNING {}",
                                        kInstanceColumns),
                            {now_ms}))
        out.push_back(instance_from(r));
      std::sort(out.begin(), out.end(), [](const Instance& a, const Instance& b) {
        return std::tie(a.service, a.id) < std::tie(b.service, b.id);
      });
      if (!out.empty()) bump_registry();
      return out;
    });
  }

  void upsert_gateway(const GatewayRecord& g) override {
    require(!g.id.empty(), "upsert_gateway: id is required");
    one("upsert_gateway", Tx::kWriteRelaxed,
        "INSERT INTO gateways (id, city, zone, applied_version, status, error, seen_ms)"
        " VALUES ($1, $2, $3, $4, $5, $6, $7) ON CONFLICT (id) DO UPDATE SET"
        " city = excluded.city, zone = excluded.zone, applied_version = excluded.applied_version,"
        " status = excluded.status, error = excluded.error, seen_ms = excluded.seen_ms",
        {g.id, g.city, g.zone, g.applied_version, g.status, g.error, g.seen_ms});
  }

  std::vector<GatewayRecord> gateways() override {
    std::vector<GatewayRecord> out;
    for (const Row& r : one("gateways", Tx::kRead,
                            "SELECT id, city, zone, applied_version, status, error, seen_ms"
                            " FROM gateways ORDER BY id",
                            {})
                            .rows)
      out.push_back(GatewayRecord{r[0], r[1], r[2], to_i64(r[3]), r[4], r[5], to_i64(r[6])});
    return out;
  }

  int64_t append_event(const Event& e) override {
    const std::string detail = to_text(e.detail, "event detail");
    return transact("append_event", Tx::kWriteRelaxed, [&] {
      // Ids are drawn when the row is inserted; without the lock, a transaction that drew a
      // smaller id could commit after a reader paged past it.
      conn_->lock(kEventLock);
      return to_i64(q("INSERT INTO events (at_ms, source, kind, subject, detail)"
                      " VALUES ($1, $2, $3, $4, $5) RETURNING id",
                      {e.at_ms, e.source, e.kind, e.subject, detail})
                        .at(0)
                        .at(0));
    });
  }

  std::optional<RolloutState> rollout_state(int64_t change_id) override {
    auto rows =
        one("rollout_state", Tx::kRead,
            "SELECT seq, updated_ms, state FROM change_rollouts WHERE change_id = $1", {change_id})
            .rows;
    if (rows.empty()) return std::nullopt;
    return RolloutState{to_i64(rows[0][0]), to_i64(rows[0][1]),
                        from_text(rows[0][2], "rollout state")};
  }

  bool put_rollout_state(int64_t change_id, int64_t expected_seq, const Json& state,
                         int64_t now_ms) override {
    const std::string text = to_text(state, "rollout state");
    try {
      return transact("put_rollout_state", Tx::kWrite, [&] {
        if (expected_seq == 0)
          return q("INSERT INTO change_rollouts (change_id, seq, updated_ms, state)"
                   " VALUES ($1, 1, $2, $3) ON CONFLICT (change_id) DO NOTHING"
                   " RETURNING seq",
                   {change_id, now_ms, text})
                     .size() == 1;
        return q("UPDATE change_rollouts SET seq = seq + 1, updated_ms = $1, state = $2"
                 " WHERE change_id = $3 AND seq = $4 RETURNING seq",
                 {now_ms, text, change_id, expected_seq})
                   .size() == 1;
      });
    } catch (const SqlError& e) {
      if (e.failure == Failure::kConstraint || e.failure == Failure::kConflict) return false;
      throw;
    }
  }

  std::vector<Event> events(int64_t after_id, int64_t limit) override {
    std::vector<Event> out;
    for (const Row& r : one("events", Tx::kRead,
                            "SELECT id, at_ms, source, kind, subject, detail FROM events"
                            " WHERE id > $1 ORDER BY id LIMIT $2",
                            {after_id, limit > 0 ? limit : kNoLimit})
                            .rows)
      out.push_back(
          Event{to_i64(r[0]), to_i64(r[1]), r[2], r[3], r[4], from_text(r[5], "event detail")});
    return out;
  }

  int64_t prune_events(int64_t before_ms) override {
    return one("prune_events", Tx::kWriteRelaxed, "DELETE FROM events WHERE at_ms < $1",
               {before_ms})
        .affected;
  }

  void put_release_state(const std::string& name, const Json& state, int64_t now_ms) override {
    const std::string text = to_text(state, "release state");
    transact("put_release_state", Tx::kWrite, [&] {
      q("INSERT INTO release_states (name, state, updated_ms, seq) VALUES ($1, $2, $3, 1)"
        " ON CONFLICT (name) DO UPDATE SET state = excluded.state,"
        " updated_ms = excluded.updated_ms, seq = release_states.seq + 1",
        {name, text, now_ms});
    });
  }

  std::map<std::string, int64_t> release_seqs() override {
    std::map<std::string, int64_t> out;
    for (const Row& r :
         one("release_seqs", Tx::kRead, "SELECT name, seq FROM release_states", {}).rows)
      out[r[0]] = to_i64(r[1]);
    return out;
  }

  std::optional<ReleaseRow> release_row(const std::string& name) override {
    auto rows = one("release_row", Tx::kRead,
                    "SELECT seq, updated_ms, state FROM release_states WHERE name = $1", {name})
                    .rows;
    if (rows.empty()) return std::nullopt;
    return ReleaseRow{name, to_i64(rows[0][0]), to_i64(rows[0][1]),
                      from_text(rows[0][2], "release state")};
  }

  bool put_release_state_if(const std::string& name, int64_t expected_seq, const Json& state,
                            int64_t now_ms) override {
    const std::string text = to_text(state, "release state");
    try {
      return transact("put_release_state_if", Tx::kWrite, [&] {
        if (expected_seq == 0)
          return q("INSERT INTO release_states (name, state, updated_ms, seq)"
                   " VALUES ($1, $2, $3, 1) ON CONFLICT (name) DO NOTHING RETURNING seq",
                   {name, text, now_ms})
                     .size() == 1;
        return q("UPDATE release_states SET seq = seq + 1, updated_ms = $1, state = $2"
                 " WHERE name = $3 AND seq = $4 RETURNING seq",
                 {now_ms, text, name, expected_seq})
                   .size() == 1;
      });
    } catch (const SqlError& e) {
      if (e.failure == Failure::kConstraint || e.failure == Failure::kConflict) return false;
      throw;
    }
  }

  std::vector<std::pair<std::string, Json>> release_states() override {
    std::vector<std::pair<std::string, Json>> out;
    for (const Row& r : one("release_states", Tx::kRead,
                            "SELECT name, state FROM release_states ORDER BY name", {})
                            .rows)
      out.emplace_back(r[0], from_text(r[1], "release state"));
    return out;
  }

  void put_rollup(int64_t minute_ms, const std::string& gateway, const Json& data) override {
    one("put_rollup", Tx::kWriteRelaxed,
        "INSERT INTO rollups (minute_ms, gateway, data) VALUES ($1, $2, $3)"
        " ON CONFLICT (minute_ms, gateway) DO UPDATE SET data = excluded.data",
        {minute_ms, gateway, to_text(data, "rollup")});
  }

  std::vector<Rollup> rollup_rows(int64_t from_ms, int64_t to_ms,
                                  const std::string& gateway) override {
    auto rows =
        gateway.empty()
            ? one("rollups", Tx::kRead,
                  "SELECT minute_ms, gateway, data FROM rollups"
                  " WHERE minute_ms >= $1 AND minute_ms < $2 ORDER BY minute_ms, gateway",
                  {from_ms, to_ms})
            : one("rollups", Tx::kRead,
                  "SELECT minute_ms, gateway, data FROM rollups"
                  " WHERE minute_ms >= $1 AND minute_ms < $2 AND gateway = $3 ORDER BY minute_ms",
                  {from_ms, to_ms, gateway});
    std::vector<Rollup> out;
    for (const Row& r : rows.rows)
      out.push_back(Rollup{to_i64(r[0]), r[1], from_text(r[2], "rollup")});
    return out;
  }

  int64_t prune_rollups(int64_t before_ms) override {
    return one("prune_rollups", Tx::kWriteRelaxed, "DELETE FROM rollups WHERE minute_ms < $1",
               {before_ms})
        .affected;
  }

  void add_token(const TokenRecord& t) override {
    require(!t.id.empty() && !t.hash.empty(), "add_token: id and hash are required");
    require(
        std::find(kTokenRoles.begin(), kTokenRoles.end(), t.role) != kTokenRoles.end(),
        fmt::format("add_token: unknown role '{}' (expected viewer, operator or admin)", t.role));
    try {
      transact("add_token", Tx::kWrite, [&] {
        q("INSERT INTO tokens (id, hash, role, name, created_ms) VALUES ($1, $2, $3, $4, $5)",
          {t.id, t.hash, t.role, t.name, t.created_ms});
      });
    } catch (const SqlError& e) {
      if (e.failure != Failure::kConstraint) throw;
      throw StoreError(
          fmt::format("add_token: a token with id '{}' or the same hash exists", t.id));
    }
  }

  std::optional<TokenRecord> find_token(const std::string& hash) override {
    auto rows = one("find_token", Tx::kRead,
                    "SELECT id, hash, role, name, created_ms FROM tokens WHERE hash = $1", {hash})
                    .rows;
    if (rows.empty()) return std::nullopt;
    return token_from(rows[0]);
  }

  std::vector<TokenRecord> tokens() override {
    std::vector<TokenRecord> out;
    for (const Row& r : one("tokens", Tx::kRead,
                            "SELECT id, hash, role, name, created_ms FROM tokens ORDER BY id", {})
                            .rows)
      out.push_back(token_from(r));
    return out;
  }

  size_t token_count() override {
    return static_cast<size_t>(
        to_i64(one("token_count", Tx::kRead, "SELECT COUNT(*) FROM tokens", {}).rows.at(0).at(0)));
  }

  bool remove_token(const std::string& id) override {
    return transact("remove_token", Tx::kWrite, [&] {
      auto rows = q("DELETE FROM tokens WHERE id = $1 RETURNING hash", {id});
      if (rows.empty()) return false;
      q("INSERT INTO revoked_tokens (hash, id, revoked_ms) VALUES ($1, $2, $3)"
        " ON CONFLICT (hash) DO NOTHING",
        {rows[0][0], id, wall_ms()});
      return true;
    });
  }

  bool token_revoked(const std::string& hash) override {
    return !one("token_revoked", Tx::kRead, "SELECT 1 FROM revoked_tokens WHERE hash = $1", {hash})
                .rows.empty();
  }

  void in_transaction(const char* op, Tx mode,
                      const std::function<void(detail::SqlConnection&)>& fn) override {
    transact(op, mode, [&] { fn(*conn_); });
  }

  Revision revision() override {
    auto r = one("revision", Tx::kRead,
                 "SELECT (SELECT COALESCE(MAX(number), 0) FROM config_versions),"
                 " (SELECT value FROM counters WHERE name = 'registry')",
                 {})
                 .rows.at(0);
    return Revision{to_i64(r.at(0)), to_i64(r.at(1))};
  }

 private:
  static constexpr const char* kChangeColumns =
      "id, operation, author, reason, emergency, review_required, state, base_version, version,"
      " target_version, proposed_ms, updated_ms, diff, affected, policy";

  struct ChangeTexts {
    std::string diff, affected, policy;
  };

  static ChangeTexts change_texts(const ChangeRecord& c) {
    return {to_text(c.diff, "change diff"), to_text(c.affected, "change affected"),
            to_text(c.policy, "change policy")};
  }

  static ChangeRecord change_from(const Row& r) {
    ChangeRecord c;
    c.id = to_i64(r[0]);
    c.operation = r[1];
    c.author = r[2];
    c.reason = r[3];
    c.emergency = to_i64(r[4]) != 0;
    c.review_required = to_i64(r[5]) != 0;
    c.state = r[6];
    c.base_version = to_i64(r[7]);
    c.version = to_i64(r[8]);
    c.target_version = to_i64(r[9]);
    c.proposed_ms = to_i64(r[10]);
    c.updated_ms = to_i64(r[11]);
    c.diff = from_text(r[12], "change diff");
    c.affected = from_text(r[13], "change affected");
    c.policy = from_text(r[14], "change policy");
    return c;
  }

  // Each resource's spec as text, after the checks commit() documents.
  static std::vector<std::string> check_set(const std::vector<Resource>& all, std::string_view op) {
    std::set<std::pair<std::string_view, std::string_view>> seen;
    std::vector<std::string> specs;
    specs.reserve(all.size());
    for (const Resource& r : all) {
      require(
          std::find(kResourceKinds.begin(), kResourceKinds.end(), r.kind) != kResourceKinds.end(),
          fmt::format("{}: unknown resource kind '{}'", op, r.kind));
      require(!r.name.empty(), fmt::format("{}: a {} without a name", op, r.kind));
      require(seen.emplace(r.kind, r.name).second,
              fmt::format("{}: {} '{}' given twice", op, r.kind, r.name));
      specs.push_back(to_text(r.spec, fmt::format("spec of {} '{}'", r.kind, r.name)));
    }
    return specs;
  }

  // Inside a write transaction.
  void insert_version(const std::vector<Resource>& all, const std::vector<std::string>& specs,
                      const std::string& author, const std::string& reason,
                      const std::string& diff_text, int64_t next, int64_t now_ms) {
    q("INSERT INTO config_versions (number, author, created_ms, reason, diff)"
      " VALUES ($1, $2, $3, $4, $5)",
      {next, author, now_ms, reason, diff_text});
    for (size_t from = 0; from < all.size(); from += kInsertBatch) {
      const size_t n = std::min(kInsertBatch, all.size() - from);
      std::string sql = "INSERT INTO config_resources (version, kind, name, spec) VALUES ";
      std::vector<SqlValue> params;
      params.reserve(4 * n);
      for (size_t i = 0; i < n; ++i) {
        const size_t p = params.size();
        sql += fmt::format("{}(${}, ${}, ${}, ${})", i ? ", " : "", p + 1, p + 2, p + 3, p + 4);
        params.insert(params.end(),
                      {next, all[from + i].kind, all[from + i].name, specs[from + i]});
      }
      conn_->query(sql, params);
    }
  }

  // Inside a write transaction. Ids are drawn under the lock so that two control planes on one
  // PostgreSQL do not draw the same one.
  int64_t insert_change(const ChangeRecord& c, const ChangeTexts& t) {
    require(!c.transitions.empty(), "add_change: a change starts with a transition");
    conn_->lock(kChangeLock);
    const int64_t id = to_i64(q("SELECT COALESCE(MAX(id), 0) + 1 FROM changes", {}).at(0).at(0));
    q(std::string("INSERT INTO changes (") + kChangeColumns +
          ") VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14, $15)",
      {id, c.operation, c.author, c.reason, int64_t{c.emergency}, int64_t{c.review_required},
       c.transitions.back().to, c.base_version, c.version, c.target_version, c.proposed_ms,
       c.transitions.back().at_ms, t.diff, t.affected, t.policy});
    for (const ChangeTransition& tr : c.transitions) insert_transition(id, tr);
    for (const ChangeApproval& a : c.approvals) insert_approval(id, a);
    return id;
  }

  void insert_transition(int64_t id, const ChangeTransition& tr) {
    q("INSERT INTO change_transitions (change_id, seq, at_ms, from_state, to_state, actor, reason)"
      " VALUES ($1, (SELECT COALESCE(MAX(seq), 0) + 1 FROM change_transitions"
      " WHERE change_id = $1), $2, $3, $4, $5, $6)",
      {id, tr.at_ms, tr.from, tr.to, tr.actor, tr.reason});
  }

  void insert_approval(int64_t id, const ChangeApproval& a) {
    q("INSERT INTO change_approvals (change_id, approver, role, at_ms, reason)"
      " VALUES ($1, $2, $3, $4, $5)",
      {id, a.approver, a.role, a.at_ms, a.reason});
  }

  // Inside a write transaction: false when the change is not (or no longer) in expected_state.
  bool append_change(int64_t id, const std::string& expected_state, const ChangeUpdate& u,
                     int64_t now_ms) {
    auto rows = q("SELECT state FROM changes WHERE id = $1", {id});
    if (rows.empty() || rows[0][0] != expected_state) return false;
    if (u.approval) insert_approval(id, *u.approval);
    for (const ChangeTransition& tr : u.transitions) insert_transition(id, tr);
    const std::string state = u.transitions.empty() ? expected_state : u.transitions.back().to;
    if (u.review_required) {
      q("UPDATE changes SET state = $1, updated_ms = $2, review_required = $3 WHERE id = $4",
        {state, now_ms, int64_t{*u.review_required}, id});
    } else {
      q("UPDATE changes SET state = $1, updated_ms = $2 WHERE id = $3", {state, now_ms, id});
    }
    return true;
  }

  void load_history(ChangeRecord& c) {
    for (Row& r : q("SELECT at_ms, from_state, to_state, actor, reason FROM change_transitions"
                    " WHERE change_id = $1 ORDER BY seq",
                    {c.id}))
      c.transitions.push_back(ChangeTransition{to_i64(r[0]), std::move(r[1]), std::move(r[2]),
                                               std::move(r[3]), std::move(r[4])});
    for (Row& r : q("SELECT approver, role, reason, at_ms FROM change_approvals"
                    " WHERE change_id = $1 ORDER BY at_ms, approver",
                    {c.id}))
      c.approvals.push_back(
          ChangeApproval{std::move(r[0]), std::move(r[1]), std::move(r[2]), to_i64(r[3])});
  }

  static constexpr const char* kLatest = "SELECT COALESCE(MAX(number), 0) FROM config_versions";

  static std::vector<SqlValue> vals(std::initializer_list<SqlValue> v) { return v; }

  std::vector<Row> q(const std::string& sql, std::initializer_list<SqlValue> p) {
    const std::vector<SqlValue> v(p);
    return conn_->query(sql, v).rows;
  }

  int64_t latest() { return to_i64(q(kLatest, {}).at(0).at(0)); }

  void bump_registry() { q("UPDATE counters SET value = value + 1 WHERE name = 'registry'", {}); }

  // One statement needs no BEGIN/COMMIT: on PostgreSQL that saves two of three round trips, and
  // heartbeats and revision polls are the hot calls. Everything sent this way is idempotent, so a
  // dead connection is re-established and the statement sent again, once.
  SqlResult one(const char* op, Tx mode, const std::string& sql,
                std::initializer_list<SqlValue> p) {
    const std::vector<SqlValue> v(p);
    std::lock_guard lock(mu_);
    for (int attempt = 0;; ++attempt) {
      try {
        conn_->autocommit(mode);
        return conn_->query(sql, v);
      } catch (const SqlError& e) {
        if (e.failure == Failure::kConnection && attempt == 0 && conn_->reconnect()) continue;
        throw SqlError(e.failure, fmt::format("store {} failed: {}", op, e.what()));
      }
    }
  }

  // Runs fn in one transaction under the mutex. A connection found broken before anything was
  // committed is re-established once and fn run again; a failure during COMMIT is not retried
  // (the write may have landed) and says so.
  template <class F>
  auto transact(const char* op, Tx mode, F&& fn) -> std::invoke_result_t<F&> {
    std::lock_guard lock(mu_);
    for (int attempt = 0;; ++attempt) {
      bool committing = false;
      try {
        conn_->begin(mode);
        if constexpr (std::is_void_v<std::invoke_result_t<F&>>) {
          fn();
          committing = true;
          conn_->commit();
          return;
        } else {
          auto result = fn();
          committing = true;
          conn_->commit();
          return result;
        }
      } catch (const SqlError& e) {
        conn_->rollback();
        if (e.failure == Failure::kConnection && !committing && attempt == 0 && conn_->reconnect())
          continue;
        throw SqlError(e.failure,
                       fmt::format("store {} failed: {}{}", op, e.what(),
                                   committing && e.failure == Failure::kConnection
                                       ? " (connection lost while committing: the write may "
                                         "or may not have been applied)"
                                       : ""));
      } catch (...) {
        conn_->rollback();
        throw;
      }
    }
  }

  std::mutex mu_;
  std::unique_ptr<detail::SqlConnection> conn_;
  std::vector<DomainSteps> domains_;
};

}  // namespace

std::unique_ptr<Store> Store::open(const std::string& url) {
  auto c = detail::connect(url);
  auto domains = migrations_for(c->backend());
  auto store = detail::open_store(std::move(c), std::move(domains));
  store->migrate();
  return store;
}

namespace detail {

std::unique_ptr<Store> open_store(std::unique_ptr<SqlConnection> c,
                                  std::vector<DomainSteps> domains) {
  return std::make_unique<SqlStore>(std::move(c), std::move(domains));
}

std::unique_ptr<SqlConnection> connect(const std::string& url) {
  constexpr std::string_view kForms =
      "expected sqlite:///absolute/path.db, sqlite:relative/path.db, sqlite::memory: or "
      "postgres://user@host:port/db";
  if (url.starts_with("sqlite:")) {
    std::string rest = url.substr(7);
    if (rest == ":memory:") return connect_sqlite(rest);
    if (rest.starts_with("//")) {
      rest.erase(0, 2);
      if (!rest.starts_with("/"))
        throw StoreError(
            fmt::format("store URL '{}': a sqlite:// URL takes an absolute path "
                        "(three slashes: sqlite:///var/lib/sluice/control.db)",
                        url));
    }
    if (rest.empty()) throw StoreError(fmt::format("store URL '{}': no path; {}", url, kForms));
    return connect_sqlite(rest);
  }
  if (url.starts_with("postgres://") || url.starts_with("postgresql://"))
    return connect_postgres(url);
  throw StoreError(fmt::format("store URL '{}': unsupported; {}", redact_url(url), kForms));
}

std::string redact_url(const std::string& url) {
  std::string out = url;
  // userinfo: scheme://user:password@host
  if (auto scheme = out.find("://"); scheme != std::string::npos) {
    const size_t start = scheme + 3;
    const size_t end = out.find_first_of("/?#", start);
    const size_t at = out.rfind('@', end == std::string::npos ? out.size() : end);
    if (at != std::string::npos && at >= start) {
      const size_t colon = out.find(':', start);
      if (colon != std::string::npos && colon < at) out.replace(colon + 1, at - colon - 1, "***");
    }
  }
  // query parameter: ?password=... or &password=...
  for (size_t p = out.find("password="); p != std::string::npos; p = out.find("password=", p + 1)) {
    if (p > 0 && out[p - 1] != '?' && out[p - 1] != '&') continue;
    const size_t v = p + 9;
    const size_t end = out.find('&', v);
    out.replace(v, (end == std::string::npos ? out.size() : end) - v, "***");
  }
  return out;
}

}  // namespace detail
}  // namespace sluice::control
