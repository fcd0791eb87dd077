// PostgreSQL backend over libpq: one connection (SqlStore serialises use), every statement with
// bound parameters (PQexecParams); only fixed text (BEGIN, migrations) goes through PQexec.
#include <libpq-fe.h>

#include <fmt/format.h>

#include <array>
#include <charconv>
#include <cstring>
#include <memory>

#include "control/store.h"

namespace sluice::control::detail {
namespace {

constexpr Oid kInt8Oid = 20;  // from catalog/pg_type_d.h, a server header libpq-dev lacks
constexpr Oid kTextOid = 25;

struct ResultDeleter {
  void operator()(PGresult* r) const { PQclear(r); }
};
using Result = std::unique_ptr<PGresult, ResultDeleter>;

std::string trimmed(const char* message) {
  std::string s = message ? message : "";
  while (!s.empty() && (s.back() == '\n' || s.back() == ' ')) s.pop_back();
  return s.empty() ? "unknown error" : s;
}

class PostgresConnection final : public SqlConnection {
 public:
  PostgresConnection(PGconn* conn, std::string where) : conn_(conn), where_(std::move(where)) {}
  ~PostgresConnection() override { PQfinish(conn_); }

  std::string backend() const override { return "postgres"; }
  std::string location() const override { return "postgres " + where_; }

  SqlResult query(const std::string& sql, std::span<const SqlValue> params) override {
    std::vector<std::string> ints;  // text of integer parameters; reserved so pointers stay put
    ints.reserve(params.size());
    std::vector<const char*> values(params.size());
    std::vector<Oid> types(params.size());
    for (size_t i = 0; i < params.size(); ++i) {
      if (const auto* v = std::get_if<int64_t>(&params[i])) {
        values[i] = ints.emplace_back(std::to_string(*v)).c_str();
        types[i] = kInt8Oid;
      } else {
        const std::string& s = std::get<std::string>(params[i]);
        if (s.find('\0') != std::string::npos)
          throw SqlError(Failure::kOther, location() + ": text contains a NUL byte");
        values[i] = s.c_str();
        types[i] = kTextOid;
      }
    }
    Result r(PQexecParams(conn_, sql.c_str(), static_cast<int>(params.size()), types.data(),
                          values.data(), nullptr, nullptr, 0));
    check(r.get());
    SqlResult out;
    const int rows = PQntuples(r.get()), columns = PQnfields(r.get());
    out.rows.reserve(rows);
    for (int i = 0; i < rows; ++i) {
      auto& row = out.rows.emplace_back();
      row.reserve(columns);
      for (int c = 0; c < columns; ++c)
        row.emplace_back(PQgetvalue(r.get(), i, c), PQgetlength(r.get(), i, c));
    }
    const char* affected = PQcmdTuples(r.get());
    std::from_chars(affected, affected + std::strlen(affected), out.affected);
    return out;
  }

  void script(const std::string& sql) override {
    Result r(PQexec(conn_, sql.c_str()));
    check(r.get());
  }

  void begin(Tx mode) override {
    autocommit(mode);
    // READ COMMITTED is enough: commit() conflicts are caught by config_versions' primary key.
    // The session runs with synchronous_commit off (see relax()); durable writes turn it on.
    script(mode == Tx::kWrite ? "BEGIN; SET LOCAL synchronous_commit = on" : "BEGIN");
  }
  void autocommit(Tx) override {
    // A connection that died while idle is noticed here, before any work, so SqlStore can
    // reconnect and run the statement or transaction after all.
    if (PQstatus(conn_) == CONNECTION_BAD)
      throw SqlError(Failure::kConnection, location() + ": connection lost");
  }
  void commit() override { script("COMMIT"); }
  void rollback() noexcept override {
    if (PQstatus(conn_) == CONNECTION_OK && PQtransactionStatus(conn_) != PQTRANS_IDLE)
      PQclear(PQexec(conn_, "ROLLBACK"));
  }
  void lock(int64_t key) override {
    const std::array<SqlValue, 1> p = {key};
    query("SELECT pg_advisory_xact_lock($1)", p);
  }
  bool reconnect() override {
    PQreset(conn_);
    if (PQstatus(conn_) != CONNECTION_OK) return false;
    try {
      relax();
    } catch (const SqlError&) {
      return false;
    }
    return true;
  }

  // Session default for Tx::kRead and Tx::kWriteRelaxed, which then need no transaction of their
  // own; Tx::kWrite sets it back on for its transaction. Set again after every reconnect.
  void relax() { script("SET synchronous_commit = off"); }

 private:
  void check(PGresult* r) {
    const ExecStatusType status = r ? PQresultStatus(r) : PGRES_FATAL_ERROR;
    if (status == PGRES_COMMAND_OK || status == PGRES_TUPLES_OK) return;
    const char* state = r ? PQresultErrorField(r, PG_DIAG_SQLSTATE) : nullptr;
    const std::string_view code = state ? state : "";
    Failure f = Failure::kOther;
    if (PQstatus(conn_) == CONNECTION_BAD || code.starts_with("08") || code == "57P01")
      f = Failure::kConnection;  // 57P01: terminated by an administrator
    else if (code == "40001" || code == "40P01")
      f = Failure::kConflict;
    else if (code.starts_with("23"))
      f = Failure::kConstraint;
    const std::string message =
        trimmed(r && *PQresultErrorMessage(r) ? PQresultErrorMessage(r) : PQerrorMessage(conn_));
    throw SqlError(f, fmt::format("{}: {}", location(), message));
  }

  PGconn* conn_;
  std::string where_;
};

}  // namespace

std::unique_ptr<SqlConnection> connect_postgres(const std::string& uri) {
  // Defaults first: libpq keeps the last value of a repeated keyword, so the URI's own
  // connect_timeout or keepalive settings (expanded from dbname) win. Keepalives notice a dead
  // server within ~25 s instead of the kernel's two hours.
  const char* keys[] = {
      "connect_timeout",  "keepalives",       "keepalives_idle", "keepalives_interval",
      "keepalives_count", "application_name", "dbname",          nullptr};
  const char* values[] = {"5", "1", "10", "5", "3", "sluice-control", uri.c_str(), nullptr};
  PGconn* conn = PQconnectdbParams(keys, values, /*expand_dbname=*/1);
  if (!conn) throw StoreError("postgres: out of memory");
  if (PQstatus(conn) != CONNECTION_OK) {
    std::string message = trimmed(PQerrorMessage(conn));
    PQfinish(conn);
    throw StoreError(fmt::format("postgres {}: cannot connect: {}", redact_url(uri), message));
  }
  // CREATE TABLE IF NOT EXISTS and friends send NOTICEs, which libpq would print to stderr.
  PQsetNoticeProcessor(
      conn, [](void*, const char*) {}, nullptr);
  std::string where =
      fmt::format("{}@{}:{}/{}", PQuser(conn), PQhost(conn), PQport(conn), PQdb(conn));
  auto c = std::make_unique<PostgresConnection>(conn, std::move(where));
  c->relax();
  return c;
}

}  // namespace sluice::control::detail
