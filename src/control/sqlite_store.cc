// SQLite backend: one connection (SqlStore serialises use), statements prepared once and cached.
#include <sqlite3.h>

#include <fmt/format.h>

#include <unordered_map>

#include "control/store.h"

namespace sluice::control::detail {
namespace {

Failure classify(int code) {
  switch (code & 0xff) {
    case SQLITE_CONSTRAINT:
      return Failure::kConstraint;
    default:
      return Failure::kOther;
  }
}

// "$7" -> "?7": numbered parameters bind by number in SQLite, so both dialects share the text.
std::string to_sqlite_params(const std::string& sql) {
  std::string out = sql;
  for (size_t i = 0; i + 1 < out.size(); ++i) {
    if (out[i] == '$' && out[i + 1] >= '0' && out[i + 1] <= '9') out[i] = '?';
  }
  return out;
}

class SqliteConnection final : public SqlConnection {
 public:
  SqliteConnection(sqlite3* db, std::string path) : db_(db), path_(std::move(path)) {}
  ~SqliteConnection() override {
    for (auto& [sql, stmt] : statements_) sqlite3_finalize(stmt);
    sqlite3_close_v2(db_);
  }

  std::string backend() const override { return "sqlite"; }
  std::string location() const override { return "sqlite " + path_; }

  SqlResult query(const std::string& sql, std::span<const SqlValue> params) override {
    sqlite3_stmt* stmt = prepare(sql);
    // Reset on every exit, so the statement holds no read lock and no bindings between calls.
    struct Reset {
      sqlite3_stmt* s;
      ~Reset() {
        sqlite3_reset(s);
        sqlite3_clear_bindings(s);
      }
    } reset{stmt};
    for (size_t i = 0; i < params.size(); ++i) {
      const int n = static_cast<int>(i) + 1;
      int rc;
      if (const auto* v = std::get_if<int64_t>(&params[i])) {
        rc = sqlite3_bind_int64(stmt, n, *v);
      } else {
        const std::string& s = std::get<std::string>(params[i]);
        // PostgreSQL cannot hold NUL in text; refusing it here keeps both backends alike.
        if (s.find('\0') != std::string::npos)
          throw SqlError(Failure::kOther, location() + ": text contains a NUL byte");
        rc = sqlite3_bind_text(stmt, n, s.data(), static_cast<int>(s.size()), SQLITE_STATIC);
      }
      if (rc != SQLITE_OK) fail(rc, "bind");
    }
    SqlResult result;
    const int columns = sqlite3_column_count(stmt);
    for (;;) {
      const int rc = sqlite3_step(stmt);
      if (rc == SQLITE_DONE) break;
      if (rc != SQLITE_ROW) fail(rc, "query");
      auto& row = result.rows.emplace_back();
      row.reserve(columns);
      for (int c = 0; c < columns; ++c) {
        const auto* text = reinterpret_cast<const char*>(sqlite3_column_text(stmt, c));
        row.emplace_back(text ? std::string(text, sqlite3_column_bytes(stmt, c)) : std::string());
      }
    }
    result.affected = sqlite3_changes64(db_);
    return result;
  }

  void script(const std::string& sql) override {
    char* error = nullptr;
    const int rc = sqlite3_exec(db_, sql.c_str(), nullptr, nullptr, &error);
    if (rc != SQLITE_OK) {
      std::string message = error ? error : sqlite3_errstr(rc);
      sqlite3_free(error);
      throw SqlError(classify(rc), fmt::format("{}: {}", location(), message));
    }
  }

  void begin(Tx mode) override {
    autocommit(mode);
    script(mode == Tx::kRead ? "BEGIN" : "BEGIN IMMEDIATE");
  }
  void autocommit(Tx mode) override {
    // Set between transactions. A later FULL commit syncs the WAL up to and including it, so
    // relaxed commits before it become durable too, in order.
    const bool full = mode != Tx::kWriteRelaxed;
    if (mode != Tx::kRead && full != synchronous_full_) {
      script(full ? "PRAGMA synchronous = FULL" : "PRAGMA synchronous = NORMAL");
      synchronous_full_ = full;
    }
  }
  void commit() override { script("COMMIT"); }
  void rollback() noexcept override {
    if (!sqlite3_get_autocommit(db_)) sqlite3_exec(db_, "ROLLBACK", nullptr, nullptr, nullptr);
  }
  void lock(int64_t) override {}  // BEGIN IMMEDIATE already admits one writer at a time
  bool reconnect() override { return false; }

 private:
  sqlite3_stmt* prepare(const std::string& sql) {
    if (auto it = statements_.find(sql); it != statements_.end()) return it->second;
    const std::string text = to_sqlite_params(sql);
    sqlite3_stmt* stmt = nullptr;
    const int rc = sqlite3_prepare_v3(db_, text.c_str(), static_cast<int>(text.size()),
                                      SQLITE_PREPARE_PERSISTENT, &stmt, nullptr);
    if (rc != SQLITE_OK) fail(rc, "prepare");
    statements_.emplace(sql, stmt);
    return stmt;
  }

  [[noreturn]] void fail(int rc, std::string_view what) {
    throw SqlError(classify(rc), fmt::format("{}: {}: {}", location(), what, sqlite3_errmsg(db_)));
  }

  sqlite3* db_;
  std::string path_;
  std::unordered_map<std::string, sqlite3_stmt*> statements_;
  bool synchronous_full_ = true;  // as set by connect_sqlite
};

}  // namespace

std::unique_ptr<SqlConnection> connect_sqlite(const std::string& path) {
  sqlite3* db = nullptr;
  const int rc = sqlite3_open_v2(
      path.c_str(), &db, SQLITE_OPEN_READWRITE | SQLITE_OPEN_CREATE | SQLITE_OPEN_NOMUTEX, nullptr);
  if (rc != SQLITE_OK) {
    std::string message = db ? sqlite3_errmsg(db) : sqlite3_errstr(rc);
    sqlite3_close_v2(db);
    throw StoreError(fmt::format("sqlite {}: cannot open: {}", path, message));
  }
  auto c = std::make_unique<SqliteConnection>(db, path);
  // Multi-threaded server, possibly a second process (ctl tools, a standby) on the same file:
  // wait for the write lock rather than fail at once. WAL lets readers run beside the writer.
  // synchronous stays FULL: a committed config version must survive a power cut, or a gateway
  // could hold a version number that is later reused for different content.
  sqlite3_busy_timeout(db, 5000);
  try {
    c->script("PRAGMA journal_mode = WAL; PRAGMA synchronous = FULL; PRAGMA foreign_keys = ON;");
  } catch (const StoreError& e) {
    throw StoreError(fmt::format("{} (is it an SQLite database?)", e.what()));
  }
  return c;
}

}  // namespace sluice::control::detail
