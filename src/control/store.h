// The control plane's store: versioned config (each version a whole resource set), registry,
// gateways, events, 1-minute stats rollups and API tokens, on SQLite or PostgreSQL with the same
// logic for both. Every write is one transaction: nothing is ever partially applied.
#pragma once

#include <array>
#include <cstdint>
#include <functional>
#include <map>
#include <memory>
#include <optional>
#include <span>
#include <stdexcept>
#include <string>
#include <string_view>
#include <utility>
#include <variant>
#include <vector>

#include <nlohmann/json.hpp>

namespace sluice::control {

namespace detail {
class SqlConnection;
enum class Tx;
}  // namespace detail

// I/O failures, malformed URLs and rejected input. The message names the backend and the operation.
struct StoreError : std::runtime_error {
  using std::runtime_error::runtime_error;
};

// change_policy and freeze_window govern config writes (control/changes/), release drives a
// route's canary weights (control/releases/); they live in config versions like the others but
// are never sent to gateways; nor are probe (control/probes/: synthetic requests to each city),
// slo and maintenance_window (control/slo/: objectives and alert silences).
inline constexpr std::array<std::string_view, 10> kResourceKinds = {
    "service",       "route",   "rate_limit", "units", "change_policy",
    "freeze_window", "release", "probe",      "slo",   "maintenance_window"};
// "service, route, ... or maintenance_window": what an unknown kind's error says is expected.
std::string resource_kinds_text();
// The kinds a gateway's config is built from (validate.h gateway_sections).
inline constexpr std::array<std::string_view, 4> kGatewayKinds = {"service", "route", "rate_limit",
                                                                  "units"};
inline constexpr std::array<std::string_view, 3> kTokenRoles = {"viewer", "operator", "admin"};

struct Resource {
  std::string kind;  // one of kResourceKinds
  std::string name;
  nlohmann::json spec;
  bool operator==(const Resource&) const = default;
};

struct VersionInfo {
  int64_t number = 0;
  std::string author;
  int64_t created_ms = 0;
  std::string reason;
  nlohmann::json diff;
  bool operator==(const VersionInfo&) const = default;
};

struct Instance {
  std::string service, id, address, city, zone;
  uint32_t weight = 1;
  int64_t ttl_ms = 10000;
  int64_t registered_ms = 0, heartbeat_ms = 0;
  // Host facts the instance registered with (a JSON object's text, checked by the registry;
  // "" = none): hostname, addresses, cpu_count, memory_bytes, started_ms, version.
  std::string facts;
  bool operator==(const Instance&) const = default;
};

struct GatewayRecord {
  std::string id, city, zone;
  int64_t applied_version = 0;
  std::string status;
  std::string error;
  int64_t seen_ms = 0;
  bool operator==(const GatewayRecord&) const = default;
};

struct Event {
  int64_t id = 0;  // assigned by append_event
  int64_t at_ms = 0;
  std::string source, kind, subject;
  nlohmann::json detail;
  bool operator==(const Event&) const = default;
};

struct TokenRecord {
  std::string id;
  std::string hash;  // the caller hashes (SHA-256); the store never sees a token
  std::string role;  // one of kTokenRoles
  std::string name;
  int64_t created_ms = 0;
  bool operator==(const TokenRecord&) const = default;
};

struct Rollup {
  int64_t minute_ms = 0;
  std::string gateway;
  nlohmann::json data;
  bool operator==(const Rollup&) const = default;
};

// A config write as a change (control/changes/): who proposed it, why, what it does, and every
// state it went through. Transitions and approvals are append-only.
struct ChangeTransition {
  int64_t at_ms = 0;
  std::string from, to;  // from is "" for the first
  std::string actor, reason;
  bool operator==(const ChangeTransition&) const = default;
};

struct ChangeApproval {
  std::string approver, role, reason;
  int64_t at_ms = 0;
  bool operator==(const ChangeApproval&) const = default;
};

struct ChangeRecord {
  int64_t id = 0;         // assigned by the store
  std::string operation;  // apply | delete | rollback
  std::string author, reason;
  bool emergency = false;
  bool review_required = false;
  std::string state;           // the last transition's `to`
  int64_t base_version = 0;    // the latest version when it was proposed
  int64_t version = 0;         // the config version it committed, 0 before
  int64_t target_version = 0;  // rollback: the version restored
  int64_t proposed_ms = 0;
  int64_t updated_ms = 0;
  nlohmann::json diff;                        // resource_diff against base_version
  nlohmann::json affected;                    // {resources, routes, services, cities}
  nlohmann::json policy;                      // the effective policy (control/changes/policy.h)
  std::vector<ChangeTransition> transitions;  // oldest first
  std::vector<ChangeApproval> approvals;      // oldest first
  bool operator==(const ChangeRecord&) const = default;
};

// What update_change and commit_change append to a change that exists.
struct ChangeUpdate {
  std::optional<ChangeApproval> approval;
  std::vector<ChangeTransition> transitions;  // the state becomes the last one's `to`
  std::optional<bool> review_required;
};

// What a long poll compares: the latest config version and the registry revision (bumped when an
// instance appears, leaves or changes address, city, zone or weight; not by heartbeats). One cheap
// query, so a control plane learns of writes made through another one on the same database.
struct Revision {
  int64_t config = 0;
  int64_t registry = 0;
  bool operator==(const Revision&) const = default;
};

// Thread-safe. Config versions and tokens are durable when the call returns; the registry,
// gateway status, events and rollups are soft state and may lose their last writes in a power cut
// (never half a write), which keeps heartbeats off the fsync path.
class Store {
 public:
  virtual ~Store() = default;

  // "sqlite:///abs/path.db", "sqlite:relative/path.db", "sqlite::memory:" (private to this
  // Store), "postgres://user@host:port/db" or "postgresql://..." (any libpq URI). Runs migrate().
  static std::unique_ptr<Store> open(const std::string& url);

  virtual std::string backend() const = 0;  // "sqlite" | "postgres"
  // For logs and errors: backend and where, never a password ("postgres sluice@db1:5432/control").
  virtual std::string location() const = 0;

  // Applies the missing schema migrations of every domain (migrations.h) in one transaction;
  // idempotent. Throws if the database was migrated by a newer build than this one.
  virtual void migrate() = 0;
  // schema_migrations' version: kLegacySchemaVersion once migrated by a build with per-domain
  // migrations (below that: the single list of older builds).
  virtual int schema_version() = 0;
  // Each domain's schema version (domain_migrations).
  virtual std::map<std::string, int> domain_versions() = 0;

  // Config versions. Each version holds the whole resource set, so a rollback commits an old set.
  virtual int64_t latest_version() = 0;  // 0 when nothing was ever written
  // 0 = latest; sorted by kind, name (bytewise). Empty for a version that does not exist.
  virtual std::vector<Resource> resources(int64_t version = 0) = 0;
  // Commits `all` as version latest+1 only if latest == expected (optimistic concurrency: of two
  // control planes on one database, one wins). Returns the new version, or 0 on conflict. Throws
  // StoreError, writing nothing, for an unknown kind, an empty name, a (kind, name) given twice
  // or an empty reason.
  virtual int64_t commit(const std::vector<Resource>& all, const std::string& author,
                         const std::string& reason, const nlohmann::json& diff, int64_t expected,
                         int64_t now_ms) = 0;
  // Newest first; at most `limit` (<= 0: all), numbers below `before` (<= 0: from the latest).
  virtual std::vector<VersionInfo> versions(int64_t limit, int64_t before = 0) = 0;
  virtual std::optional<VersionInfo> version(int64_t number) = 0;

  // Changes (control/changes/). add_change inserts a change that commits nothing (held for
  // approval) with its transitions and approvals, and returns its id.
  virtual int64_t add_change(const ChangeRecord& c) = 0;
  // Appends to change `id` if its state is still `expected_state`; false otherwise (or unknown).
  // Throws StoreError, writing nothing, if the approval's approver approved it already.
  virtual bool update_change(int64_t id, const std::string& expected_state, const ChangeUpdate& u,
                             int64_t now_ms) = 0;
  // In one transaction: commits `all` as a config version (as commit() does, 0 on conflict) and
  // records the change: a new one when c.id == 0 (with c's transitions), else `u` appended to
  // change c.id, which must still be in `expected_state` (StoreError otherwise). For a rollback
  // (c.target_version > 0), every other change in state done whose version is above the target
  // goes to rolled_back, with `rolled_back` as the transition (from/to filled in here). The
  // version's author and reason are the change's. Sets c.id and c.version.
  virtual int64_t commit_change(const std::vector<Resource>& all, const nlohmann::json& diff,
                                int64_t expected, int64_t now_ms, ChangeRecord& c,
                                const std::string& expected_state, const ChangeUpdate& u,
                                const ChangeTransition& rolled_back) = 0;
  virtual std::optional<ChangeRecord> change(int64_t id) = 0;  // with transitions and approvals
  // Newest first; `state` "" = any; proposed_ms >= since_ms; at most `limit` (<= 0: all). With
  // `full`, transitions and approvals too.
  virtual std::vector<ChangeRecord> changes(const std::string& state, int64_t since_ms,
                                            int64_t limit, bool full) = 0;
  // Changes with a transition at or after since_ms, with transitions and approvals, oldest first.
  virtual std::vector<ChangeRecord> changes_active_since(int64_t since_ms) = 0;
  // A staged rollout's driver state, stored with its change (control/changes/rollout_driver.h):
  // the JSON and its sequence number (0: none stored).
  struct RolloutState {
    int64_t seq = 0;
    int64_t updated_ms = 0;
    nlohmann::json state;
  };
  virtual std::optional<RolloutState> rollout_state(int64_t change_id) = 0;
  // Writes change `change_id`'s rollout state as sequence expected_seq + 1 if the stored one is
  // still expected_seq (0: none yet); false when another writer moved it first. The compare and
  // set is what keeps two control planes on one database from both advancing a rollout.
  virtual bool put_rollout_state(int64_t change_id, int64_t expected_seq,
                                 const nlohmann::json& state, int64_t now_ms) = 0;

  // Releases (control/releases/): each release's driving state, a JSON object the releases
  // domain owns, upserted whole (durable: a restart resumes from it). Sorted by name.
  virtual void put_release_state(const std::string& name, const nlohmann::json& state,
                                 int64_t now_ms) = 0;
  virtual std::vector<std::pair<std::string, nlohmann::json>> release_states() = 0;
  // The same with a sequence number per state (1 when first written, +1 on every write), so
  // that control planes sharing a database move a release one at a time: each follows the
  // stored state and writes it only with put_release_state_if on the sequence it read.
  struct ReleaseRow {
    std::string name;
    int64_t seq = 0;
    int64_t updated_ms = 0;
    nlohmann::json state;
  };
  virtual std::map<std::string, int64_t> release_seqs() = 0;  // one cheap query, no state read
  virtual std::optional<ReleaseRow> release_row(const std::string& name) = 0;
  // Writes `name`'s state as sequence expected_seq + 1 if the stored one is still expected_seq
  // (0: none stored yet); false when another writer moved it first.
  virtual bool put_release_state_if(const std::string& name, int64_t expected_seq,
                                    const nlohmann::json& state, int64_t now_ms) = 0;

  // Registry. Instances are sorted by service, id.
  virtual void upsert_instance(const Instance& i) = 0;  // register (or re-register)
  // false: unknown (the instance should register again). Never moves heartbeat_ms backwards.
  virtual bool heartbeat(const std::string& service, const std::string& id, int64_t now_ms) = 0;
  virtual bool remove_instance(const std::string& service, const std::string& id) = 0;
  virtual std::vector<Instance> instances(const std::string& service = {}) = 0;  // {} = all
  // Removes and returns those with heartbeat_ms + ttl_ms < now_ms (alive at exactly the TTL).
  virtual std::vector<Instance> expire_instances(int64_t now_ms) = 0;

  // Gateways (registered data planes), sorted by id.
  virtual void upsert_gateway(const GatewayRecord& g) = 0;
  virtual std::vector<GatewayRecord> gateways() = 0;

  // Events. Ids increase in commit order, also across control planes sharing a database, so
  // paging with after_id never skips one.
  virtual int64_t append_event(const Event& e) = 0;  // returns the id (e.id is ignored)
  virtual std::vector<Event> events(int64_t after_id, int64_t limit) = 0;  // oldest first
  virtual int64_t prune_events(int64_t before_ms) = 0;  // removes at_ms < before_ms; returns count

  // Stats: 1-minute rollups, upserted by (minute, gateway); ranges are [from_ms, to_ms).
  virtual void put_rollup(int64_t minute_ms, const std::string& gateway,
                          const nlohmann::json& data) = 0;
  // Sorted by minute, then gateway; {} = every gateway.
  virtual std::vector<Rollup> rollup_rows(int64_t from_ms, int64_t to_ms,
                                          const std::string& gateway = {}) = 0;
  // rollup_rows without the gateway column (handy when one gateway is asked for).
  virtual std::vector<std::pair<int64_t, nlohmann::json>> rollups(int64_t from_ms, int64_t to_ms,
                                                                  const std::string& gateway = {});
  virtual int64_t prune_rollups(int64_t before_ms) = 0;  // removes minute < before; returns count

  // Tokens, stored hashed (the caller hashes). add_token throws StoreError for a role outside
  // kTokenRoles, an empty id or hash, or an id or hash that exists.
  virtual void add_token(const TokenRecord& t) = 0;
  virtual std::optional<TokenRecord> find_token(const std::string& hash) = 0;
  virtual std::vector<TokenRecord> tokens() = 0;  // sorted by id
  virtual size_t token_count() = 0;
  // Removes the token and remembers its hash as revoked, in one transaction.
  virtual bool remove_token(const std::string& id) = 0;
  // Whether a token with this hash was ever revoked (the bootstrap file must not bring it back).
  virtual bool token_revoked(const std::string& hash) = 0;

  // Change notification for long polls across processes: poll this (one indexed query); equal
  // Revisions mean nothing a gateway sees has changed.
  virtual Revision revision() = 0;

  // A domain whose SQL lives in its own folder (control/cmdb/) runs it here: `fn` gets the
  // store's connection inside one transaction of `mode`, under the store's lock, with its
  // reconnect-once and error wrapping ("store OP failed: ..."). An exception from fn rolls back.
  // Fixed SQL text with bound parameters only; never hold another lock that the store's callers
  // may wait on.
  virtual void in_transaction(const char* op, detail::Tx mode,
                              const std::function<void(detail::SqlConnection&)>& fn) = 0;
};

// What the backends implement. Store logic is written once (store.cc) against this small SQL
// connection; sqlite_store.cc and postgres_store.cc only move statements and rows.
namespace detail {

enum class Failure {
  kOther,
  kConstraint,  // unique or check constraint violated
  kConflict,    // serialization failure or deadlock: retrying the transaction may succeed
  kConnection,  // the connection is gone; reconnect() may bring it back
};

struct SqlError : StoreError {
  SqlError(Failure f, const std::string& message) : StoreError(message), failure(f) {}
  Failure failure;
};

enum class Tx {
  kRead,
  kWrite,  // durable once committed: config versions, tokens, schema
  // May be lost in a power cut or server crash (never half-applied, never reordered): SQLite
  // synchronous=NORMAL, PostgreSQL synchronous_commit=off. For soft state that is rewritten
  // anyway: the registry (instances re-register after a 404 heartbeat), gateway status, events,
  // rollups. Keeps 2,000 heartbeats a second from waiting on 2,000 fsyncs.
  kWriteRelaxed,
};

using SqlValue = std::variant<int64_t, std::string>;

struct SqlResult {
  std::vector<std::vector<std::string>> rows;  // text of each column; NULL reads as ""
  int64_t affected = 0;                        // rows changed by INSERT, UPDATE or DELETE
};

// Not thread-safe; SqlStore serialises calls. Throws SqlError.
class SqlConnection {
 public:
  virtual ~SqlConnection() = default;
  virtual std::string backend() const = 0;
  virtual std::string location() const = 0;
  // Placeholders are $1, $2, ... in both dialects; values are bound, never spliced into the text.
  virtual SqlResult query(const std::string& sql, std::span<const SqlValue> params) = 0;
  // Several statements without parameters: fixed migration text from the repo only.
  virtual void script(const std::string& sql) = 0;
  // A write transaction takes the write lock at once (SQLite BEGIN IMMEDIATE), so a
  // read-check-write cannot be overtaken by another process.
  virtual void begin(Tx mode) = 0;
  virtual void commit() = 0;
  virtual void rollback() noexcept = 0;
  // Instead of begin(): the next query runs alone in its own implicit transaction (kRead or
  // kWriteRelaxed only).
  virtual void autocommit(Tx mode) = 0;  // no-op outside a transaction or on a dead connection
  // Serialises transactions across processes until commit (PostgreSQL advisory lock; SQLite's
  // write transactions are serial already).
  virtual void lock(int64_t key) = 0;
  virtual bool reconnect() = 0;  // after Failure::kConnection; false if impossible
};

// `path`: a file path or ":memory:". WAL mode, busy timeout, foreign keys on.
std::unique_ptr<SqlConnection> connect_sqlite(const std::string& path);
// Any libpq URI; a connect timeout and TCP keepalives are added unless the URI sets them.
std::unique_ptr<SqlConnection> connect_postgres(const std::string& uri);
// Parses a store URL as Store::open does, without migrating.
std::unique_ptr<SqlConnection> connect(const std::string& url);
// The URL with any password replaced by "***", for messages.
std::string redact_url(const std::string& url);

}  // namespace detail
}  // namespace sluice::control
