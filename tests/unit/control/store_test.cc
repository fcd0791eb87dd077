// One suite, every backend: SQLite on a temporary file, SQLite in memory, and a real PostgreSQL
// started for the run (postgres on a free loopback port, trust auth, a fresh database per test).
// Times are plain numbers passed in; only the PostgreSQL start and the lock-wait poll use the
// clock.
#include "control/store.h"

#include <fcntl.h>
#include <grp.h>
#include <gtest/gtest.h>
#include <libpq-fe.h>
#include <netinet/in.h>
#include <pwd.h>
#include <signal.h>
#include <sys/file.h>
#include <sys/prctl.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <cerrno>
#include <chrono>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <map>
#include <memory>
#include <set>
#include <sstream>
#include <string>
#include <thread>
#include <vector>

#include "control/cmdb/cmdb.h"
#include "control/migrations.h"

namespace sluice::control {
namespace {

namespace fs = std::filesystem;
using namespace std::chrono_literals;
using Json = nlohmann::json;
using SteadyClock = std::chrono::steady_clock;

constexpr int64_t kT0 = 1'700'000'000'000;  // ms

uint16_t free_port() {
  int fd = ::socket(AF_INET, SOCK_STREAM, 0);
  sockaddr_in a{};
  a.sin_family = AF_INET;
  a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  ::bind(fd, reinterpret_cast<sockaddr*>(&a), sizeof a);
  socklen_t len = sizeof a;
  ::getsockname(fd, reinterpret_cast<sockaddr*>(&a), &len);
  ::close(fd);
  return ntohs(a.sin_port);
}

std::string read_file(const fs::path& p) {
  std::ifstream in(p);
  std::stringstream s;
  s << in.rdbuf();
  return s.str();
}

// --- PostgreSQL for the run --------------------------------------------------------------------

// PostgreSQL refuses to run as root, so as root initdb and postgres run as `nobody` (CI runs as
// root); otherwise as the current user.
struct Identity {
  bool drop = false;
  uid_t uid = ::getuid();
  gid_t gid = ::getgid();
};

Identity server_identity() {
  Identity id;
  if (::geteuid() != 0) return id;
  const passwd* pw = ::getpwnam("nobody");
  if (!pw) return id;
  id.drop = true;
  id.uid = pw->pw_uid;
  id.gid = pw->pw_gid;
  return id;
}

// fork + exec with output to `log`. The child only makes async-signal-safe calls. With
// die_with_parent the kernel kills the child if this process dies, so a crashed test run leaves no
// server behind (pg_ctl would detach it).
pid_t spawn(const std::vector<std::string>& argv, const Identity& who, const std::string& log,
            bool die_with_parent) {
  std::vector<char*> args;
  for (const std::string& a : argv) args.push_back(const_cast<char*>(a.c_str()));
  args.push_back(nullptr);
  const pid_t pid = ::fork();
  if (pid != 0) return pid;
  const int in = ::open("/dev/null", O_RDONLY);
  const int out = ::open(log.c_str(), O_WRONLY | O_CREAT | O_APPEND, 0644);
  if (in < 0 || out < 0) ::_exit(125);
  ::dup2(in, 0);
  ::dup2(out, 1);
  ::dup2(out, 2);
  if (who.drop &&
      (::setgroups(0, nullptr) != 0 || ::setgid(who.gid) != 0 || ::setuid(who.uid) != 0))
    ::_exit(126);
  if (die_with_parent) ::prctl(PR_SET_PDEATHSIG, SIGKILL);  // after setuid, which clears it
  ::execv(args[0], args.data());
  ::_exit(127);
}

bool run(const std::vector<std::string>& argv, const Identity& who, const std::string& log) {
  const pid_t pid = spawn(argv, who, log, false);
  int status = 0;
  ::waitpid(pid, &status, 0);
  return WIFEXITED(status) && WEXITSTATUS(status) == 0;
}

std::string find_pg_bindir() {
  if (const char* e = std::getenv("SLUICE_PG_BINDIR")) return e;
  std::vector<fs::path> found;
  std::error_code ec;
  for (const auto& d : fs::directory_iterator("/usr/lib/postgresql", ec)) {
    if (fs::exists(d.path() / "bin" / "initdb")) found.push_back(d.path() / "bin");
  }
  if (found.empty()) return {};
  std::sort(found.begin(), found.end(), [](const fs::path& a, const fs::path& b) {
    return std::atoi(a.parent_path().filename().c_str()) <
           std::atoi(b.parent_path().filename().c_str());
  });
  return found.back();
}

class PostgresServer {
 public:
  // Started on first use, so test processes that run no PostgreSQL test (ctest runs each test in
  // its own process) pay nothing; stopped by the global environment at the end.
  static PostgresServer* get(std::string* why_not) {
    static std::string failure;
    if (!instance_ && failure.empty()) {
      auto s = std::unique_ptr<PostgresServer>(new PostgresServer);
      failure = s->start();
      if (failure.empty()) instance_ = std::move(s);
    }
    *why_not = failure;
    return instance_.get();
  }
  static void shutdown() { instance_.reset(); }

  ~PostgresServer() {
    if (admin_) PQfinish(admin_);
    if (pid_ > 0) {
      ::kill(pid_, SIGINT);  // fast shutdown
      const auto deadline = SteadyClock::now() + 5s;
      while (::waitpid(pid_, nullptr, WNOHANG) == 0) {
        if (SteadyClock::now() > deadline) {
          ::kill(pid_, SIGKILL);
          ::waitpid(pid_, nullptr, 0);
          break;
        }
        std::this_thread::sleep_for(10ms);
      }
    }
    std::error_code ec;
    if (!base_.empty()) fs::remove_all(base_, ec);
  }

  uint16_t port() const { return port_; }
  std::string url(const std::string& db) const {
    return "postgres://sluice@127.0.0.1:" + std::to_string(port_) + "/" + db;
  }
  // A fresh, empty database for one test.
  std::string create_database() {
    const std::string name = "t" + std::to_string(++databases_);
    // From 15 on, the default strategy copies the template through the WAL: slower here.
    scalar("CREATE DATABASE " + name + (major_ >= 15 ? " STRATEGY = FILE_COPY" : ""));
    return name;
  }
  // Admin SQL (test code only; fixed text): the first column of the first row, if any.
  std::string scalar(const std::string& sql) {
    PGresult* r = PQexec(admin_, sql.c_str());
    const auto st = PQresultStatus(r);
    EXPECT_TRUE(st == PGRES_COMMAND_OK || st == PGRES_TUPLES_OK)
        << sql << ": " << PQerrorMessage(admin_);
    std::string v = PQntuples(r) > 0 ? PQgetvalue(r, 0, 0) : "";
    PQclear(r);
    return v;
  }

 private:
  PostgresServer() = default;

  // Returns "" on success, else why not (a missing installation is a skip reason, see below).
  std::string start() {
    const std::string bindir = find_pg_bindir();
    if (bindir.empty()) return "skip: no PostgreSQL under /usr/lib/postgresql (SLUICE_PG_BINDIR)";
    const Identity who = server_identity();
    remove_stale_servers();
    char base[] = "/tmp/sluice-pg-XXXXXX";
    if (!::mkdtemp(base)) return "mkdtemp failed";
    base_ = base;
    if (who.drop && ::chown(base, who.uid, who.gid) != 0) return "chown of " + base_ + " failed";
    const std::string log = base_ + "/postgres.log";
    std::string why = copy_template(bindir, who, base_ + "/data");
    if (!why.empty()) return why;
    for (int attempt = 0; attempt < 3; ++attempt) {  // the free port may be taken meanwhile
      port_ = free_port();
      pid_ = spawn(
          {bindir + "/postgres", "-D", base_ + "/data", "-p", std::to_string(port_), "-k", base_,
           "-c", "listen_addresses=127.0.0.1", "-c", "fsync=off", "-c", "synchronous_commit=off",
           "-c", "full_page_writes=off", "-c", "shared_buffers=16MB", "-c", "max_connections=40"},
          who, log, true);
      const std::string conninfo =
          "host=127.0.0.1 port=" + std::to_string(port_) + " user=sluice dbname=postgres";
      const auto deadline = SteadyClock::now() + 20s;
      while (SteadyClock::now() < deadline) {
        if (PQping(conninfo.c_str()) == PQPING_OK) {
          admin_ = PQconnectdb(conninfo.c_str());
          if (PQstatus(admin_) == CONNECTION_OK) return "";
          return std::string("admin connection: ") + PQerrorMessage(admin_);
        }
        if (::waitpid(pid_, nullptr, WNOHANG) == pid_) break;  // exited
        std::this_thread::sleep_for(20ms);
      }
      if (::waitpid(pid_, nullptr, WNOHANG) == 0)
        return "postgres did not start:\n" + read_file(log);
      pid_ = -1;
      if (read_file(log).find("could not bind") == std::string::npos) break;
    }
    return "postgres did not start:\n" + read_file(log);
  }

  // A test process killed before its teardown (its server dies with it) leaves its directory;
  // remove those whose postmaster is gone, or that never got one and are old.
  static void remove_stale_servers() {
    std::error_code ec;
    for (const auto& d : fs::directory_iterator("/tmp", ec)) {
      if (d.path().filename().string().rfind("sluice-pg-", 0) != 0) continue;
      const std::string pidfile = read_file(d.path() / "data" / "postmaster.pid");
      const pid_t pid = std::atoi(pidfile.c_str());
      const bool dead = pid > 0 ? ::kill(pid, 0) != 0 && errno == ESRCH
                                : fs::last_write_time(d.path(), ec) <
                                      fs::file_time_type::clock::now() - std::chrono::minutes(10);
      if (dead) fs::remove_all(d.path(), ec);
    }
  }

  // initdb takes seconds and ctest runs each test in its own process, so the initdb output is kept
  // once per PostgreSQL major version and user (/tmp/sluice-pg15-template-uid65534) and copied
  // (cp -a keeps the owner). Built under a lock and renamed into place, so it is whole or absent.
  std::string copy_template(const std::string& bindir, const Identity& who,
                            const std::string& data) {
    const std::string major = fs::path(bindir).parent_path().filename();
    major_ = std::atoi(major.c_str());
    const std::string tmpl = "/tmp/sluice-pg" + major + "-template-uid" + std::to_string(who.uid);
    const int lock = ::open((tmpl + ".lock").c_str(), O_CREAT | O_RDWR, 0600);
    if (lock < 0 || ::flock(lock, LOCK_EX) != 0) return "cannot lock " + tmpl + ".lock";
    struct stat st {};
    const bool usable = ::stat((tmpl + "/PG_VERSION").c_str(), &st) == 0 && st.st_uid == who.uid;
    std::string why;
    if (!usable) {
      const std::string building = tmpl + ".building";
      std::error_code ec;
      fs::remove_all(building, ec);
      fs::remove_all(tmpl, ec);
      ::mkdir(building.c_str(), 0700);
      if (who.drop && ::chown(building.c_str(), who.uid, who.gid) != 0) why = "chown failed";
      const std::string log = base_ + "/initdb.log";
      if (why.empty() && !run({bindir + "/initdb", "-D", building, "-U", "sluice", "--auth=trust",
                               "--no-sync", "-E", "UTF8", "--locale=C"},
                              who, log))
        why = "initdb failed:\n" + read_file(log);
      if (why.empty()) fs::rename(building, tmpl, ec);
      if (why.empty() && ec) why = "rename of " + building + " failed: " + ec.message();
    }
    if (why.empty() && !run({"/bin/cp", "-a", tmpl, data}, Identity{}, base_ + "/cp.log"))
      why = "copying " + tmpl + " failed:\n" + read_file(base_ + "/cp.log");
    ::flock(lock, LOCK_UN);
    ::close(lock);
    return why;
  }

  static inline std::unique_ptr<PostgresServer> instance_;
  std::string base_;
  uint16_t port_ = 0;
  pid_t pid_ = -1;
  PGconn* admin_ = nullptr;
  int databases_ = 0;
  int major_ = 0;
};

class PostgresEnvironment : public ::testing::Environment {
 public:
  void TearDown() override { PostgresServer::shutdown(); }
};
[[maybe_unused]] ::testing::Environment* const kPostgresEnvironment =
    ::testing::AddGlobalTestEnvironment(new PostgresEnvironment);

// Sets *server, or skips (no installation) or fails (it would not start) the current test.
// CI installs PostgreSQL (scripts/install-deps.sh): there a missing installation is a failure, as
// in tests/integration/pgserver.py.
bool postgres_required() {
  for (const char* name : {"CI", "SLUICE_REQUIRE_POSTGRES"}) {
    const char* v = std::getenv(name);
    if (v && *v && std::string(v) != "0" && std::string(v) != "false") return true;
  }
  return false;
}

#define REQUIRE_POSTGRES(server)                                                          \
  do {                                                                                    \
    std::string why_not;                                                                  \
    server = PostgresServer::get(&why_not);                                               \
    if (why_not.rfind("skip: ", 0) == 0 && !postgres_required()) GTEST_SKIP() << why_not; \
    ASSERT_NE(server, nullptr) << "PostgreSQL for the tests: " << why_not;                \
  } while (0)

// --- the suite ---------------------------------------------------------------------------------

template <class F>
std::string error_of(F&& f) {
  try {
    f();
  } catch (const StoreError& e) {
    return e.what();
  }
  return "(no StoreError)";
}

enum class Backend { kSqliteFile, kSqliteMemory, kPostgres };

std::string backend_name(const ::testing::TestParamInfo<Backend>& info) {
  switch (info.param) {
    case Backend::kSqliteFile:
      return "SqliteFile";
    case Backend::kSqliteMemory:
      return "SqliteMemory";
    case Backend::kPostgres:
      return "Postgres";
  }
  return "?";
}

Resource res(std::string kind, std::string name, Json spec = Json::object()) {
  return Resource{std::move(kind), std::move(name), std::move(spec)};
}

Instance inst(std::string service, std::string id, int64_t heartbeat_ms, int64_t ttl_ms = 500) {
  Instance i;
  i.service = std::move(service);
  i.id = std::move(id);
  i.address = "10.0.0.1:80";
  i.city = "north";
  i.zone = "n1";
  i.weight = 2;
  i.ttl_ms = ttl_ms;
  i.registered_ms = heartbeat_ms;
  i.heartbeat_ms = heartbeat_ms;
  return i;
}

std::vector<std::string> names(const std::vector<Resource>& rs) {
  std::vector<std::string> out;
  for (const Resource& r : rs) out.push_back(r.kind + "/" + r.name);
  return out;
}

class StoreTest : public ::testing::TestWithParam<Backend> {
 protected:
  void SetUp() override {
    switch (GetParam()) {
      case Backend::kSqliteFile: {
        char dir[] = "/tmp/sluice-store-XXXXXX";
        ASSERT_NE(::mkdtemp(dir), nullptr);
        dir_ = dir;
        url_ = "sqlite://" + dir_ + "/control.db";
        break;
      }
      case Backend::kSqliteMemory:
        url_ = "sqlite::memory:";
        break;
      case Backend::kPostgres: {
        PostgresServer* pg = nullptr;
        REQUIRE_POSTGRES(pg);
        url_ = pg->url(pg->create_database());
        break;
      }
    }
    store_ = Store::open(url_);
  }
  void TearDown() override {
    store_.reset();
    std::error_code ec;
    if (!dir_.empty()) fs::remove_all(dir_, ec);
  }

  bool shared() const { return GetParam() != Backend::kSqliteMemory; }
  // A second Store on the same database, as a second control plane would have.
  std::unique_ptr<Store> open_again() { return Store::open(url_); }

  std::string dir_, url_;
  std::unique_ptr<Store> store_;
};

#define REQUIRE_SHARED()                                                                 \
  if (!shared()) GTEST_SKIP() << "an in-memory SQLite database is private to its Store"; \
  static_assert(true)

// Each registered domain at its last step, as this build knows them.
std::map<std::string, int> latest_domain_versions(const std::string& backend) {
  std::map<std::string, int> out;
  // A domain without tables (slo) has no steps and is never recorded.
  for (const DomainSteps& d : migrations_for(backend))
    if (!d.steps.empty()) out[std::string(d.domain)] = static_cast<int>(d.steps.size());
  return out;
}

TEST_P(StoreTest, OpensMigratedAndEmpty) {
  EXPECT_EQ(store_->backend(), GetParam() == Backend::kPostgres ? "postgres" : "sqlite");
  EXPECT_EQ(store_->schema_version(), kLegacySchemaVersion);
  EXPECT_EQ(store_->domain_versions(), latest_domain_versions(store_->backend()));
  EXPECT_EQ(store_->latest_version(), 0);
  EXPECT_TRUE(store_->resources().empty());
  EXPECT_TRUE(store_->versions(10).empty());
  EXPECT_FALSE(store_->version(1).has_value());
  EXPECT_TRUE(store_->instances().empty());
  EXPECT_TRUE(store_->gateways().empty());
  EXPECT_TRUE(store_->events(0, 10).empty());
  EXPECT_TRUE(store_->rollup_rows(0, kT0).empty());
  EXPECT_TRUE(store_->tokens().empty());
  EXPECT_EQ(store_->token_count(), 0u);
  EXPECT_EQ(store_->revision(), (Revision{0, 0}));
  EXPECT_EQ(store_->location().find("***"), std::string::npos);
}

TEST_P(StoreTest, MigrateIsIdempotentAndSurvivesReopening) {
  const auto latest = latest_domain_versions(store_->backend());
  store_->commit({res("service", "a")}, "alice", "first", nullptr, 0, kT0);
  store_->migrate();
  store_->migrate();
  EXPECT_EQ(store_->domain_versions(), latest);
  EXPECT_EQ(store_->latest_version(), 1);
  if (!shared()) return;
  store_.reset();
  store_ = Store::open(url_);  // migrates again: nothing to do, data kept
  EXPECT_EQ(store_->schema_version(), kLegacySchemaVersion);
  EXPECT_EQ(store_->domain_versions(), latest);
  EXPECT_EQ(names(store_->resources()), std::vector<std::string>{"service/a"});
}

// The built-in lists with one domain's steps replaced (or a domain added).
std::vector<DomainSteps> with_steps(const std::string& backend, std::string_view domain,
                                    std::span<const Migration> steps) {
  std::vector<DomainSteps> out = migrations_for(backend);
  auto it = std::find_if(out.begin(), out.end(),
                         [&](const DomainSteps& d) { return d.domain == domain; });
  if (it == out.end()) {
    out.push_back({domain, steps});
  } else {
    it->steps = steps;
  }
  return out;
}

TEST_P(StoreTest, MigrationsApplyOnlyWhatIsMissingPerDomainAndRollBackAFailedStep) {
  REQUIRE_SHARED();  // the steps below run through several Stores on one database
  const std::string backend = store_->backend();
  const auto builtin = latest_domain_versions(backend);
  std::span<const Migration> stats_steps;
  for (const DomainSteps& d : migrations_for(backend))
    if (d.domain == "stats") stats_steps = d.steps;
  const int base = static_cast<int>(stats_steps.size());
  std::vector<Migration> steps(stats_steps.begin(), stats_steps.end());
  steps.push_back({base + 1, "extra",
                   "CREATE TABLE extra (id BIGINT PRIMARY KEY);"
                   "INSERT INTO extra (id) VALUES (1);"});
  auto s = detail::open_store(detail::connect(url_), with_steps(backend, "stats", steps));
  s->migrate();
  auto expected = builtin;
  expected["stats"] = base + 1;
  EXPECT_EQ(s->domain_versions(), expected);  // only the stats domain moved
  s->migrate();  // would fail on the duplicate row if step base+1 ran again
  EXPECT_EQ(s->domain_versions(), expected);

  // The failing step's first statement succeeds; the transaction must take it back too, and
  // with it the first step of a new domain listed before it in the same migration.
  std::vector<Migration> broken = steps;
  broken.push_back({base + 2, "broken",
                    "CREATE TABLE extra2 (id BIGINT);"
                    "INSERT INTO no_such_table (id) VALUES (1);"});
  const std::vector<Migration> fresh = {{1, "widgets", "CREATE TABLE widgets (id BIGINT);"}};
  auto with_fresh = with_steps(backend, "widgets", fresh);
  auto broken_lists = with_fresh;
  for (DomainSteps& d : broken_lists)
    if (d.domain == "stats") d.steps = broken;
  // "widgets" comes after "stats" in the list: move it first, so that it is applied before.
  std::rotate(broken_lists.begin(), broken_lists.end() - 1, broken_lists.end());
  auto b = detail::open_store(detail::connect(url_), broken_lists);
  const std::string e = error_of([&] { b->migrate(); });
  EXPECT_NE(e.find("migration stats " + std::to_string(base + 2) + " (broken) failed"),
            std::string::npos)
      << e;
  EXPECT_EQ(b->domain_versions(), expected);
  std::vector<Migration> fixed = steps;
  fixed.push_back({base + 2, "fixed", "CREATE TABLE extra2 (id BIGINT);"});
  auto fixed_lists = with_fresh;
  for (DomainSteps& d : fixed_lists)
    if (d.domain == "stats") d.steps = fixed;
  auto f = detail::open_store(detail::connect(url_), fixed_lists);
  f->migrate();  // creates extra2 and widgets again: only works if the broken step left nothing
  expected["stats"] = base + 2;
  expected["widgets"] = 1;
  EXPECT_EQ(f->domain_versions(), expected);

  // A build that knows fewer steps of a domain than the database refuses it rather than
  // misread it; so does a build that does not know a domain of the database.
  const std::string newer = error_of([&] {
    detail::open_store(detail::connect(url_), with_steps(backend, "widgets", fresh))->migrate();
  });
  EXPECT_NE(newer.find("database schema version " + std::to_string(base + 2) +
                       " of stats is newer than this build knows (" + std::to_string(base) + ")"),
            std::string::npos)
      << newer;
  const std::string unknown = error_of([&] {
    detail::open_store(detail::connect(url_), with_steps(backend, "stats", fixed))->migrate();
  });
  EXPECT_NE(unknown.find("tables of domain 'widgets' (schema version 1), which this build does "
                         "not know"),
            std::string::npos)
      << unknown;
}

// A database migrated by the single list of older builds (schema_migrations 1 and 2, no
// domain_migrations) is adopted: nothing runs again, its data stays, and it is marked so that an
// older build refuses it. (tests/integration/test_control_upgrade.py opens a file the old binary
// wrote.)
TEST_P(StoreTest, ADatabaseOfTheSingleListIsAdoptedWithItsData) {
  REQUIRE_SHARED();
  // Its own database: the fixture's was migrated already.
  std::string url;
  if (GetParam() == Backend::kPostgres) {
    PostgresServer* pg = nullptr;
    REQUIRE_POSTGRES(pg);
    url = pg->url(pg->create_database());
  } else {
    url = "sqlite://" + dir_ + "/legacy.db";
  }
  const std::string backend = store_->backend();
  {
    // What the single list did: its step 1 is the domains' first steps together, its step 2 the
    // tokens domain's second (the texts were split, not changed).
    auto c = detail::connect(url);
    c->begin(detail::Tx::kWrite);
    c->script(
        "CREATE TABLE schema_migrations (version BIGINT NOT NULL PRIMARY KEY, name TEXT NOT NULL,"
        " applied_ms BIGINT NOT NULL)");
    // Only the domains the single list knew; domains added since are migrated on adoption.
    const std::set<std::string_view> legacy_domains = {"resources", "registry", "fleet", "stats",
                                                       "tokens"};
    for (const DomainSteps& d : migrations_for(backend))
      if (legacy_domains.count(d.domain) != 0) c->script(std::string(d.steps[0].sql));
    for (const DomainSteps& d : migrations_for(backend))
      if (d.domain == "tokens") c->script(std::string(d.steps[1].sql));
    c->script(
        "INSERT INTO schema_migrations (version, name, applied_ms) VALUES"
        " (1, 'initial schema', 1), (2, 'revoked tokens', 2)");
    // An instance as the old build wrote it (its columns: no host facts yet).
    c->script(
        "INSERT INTO instances (service, id, address, city, zone, weight, ttl_ms, registered_ms,"
        " heartbeat_ms) VALUES ('a', 'i1', '10.0.0.1:80', 'north', 'n1', 2, 60000, " +
        std::to_string(kT0) + ", " + std::to_string(kT0) +
        "); UPDATE counters SET value = value + 1 WHERE name = 'registry'");
    c->commit();
  }
  {
    auto legacy = detail::open_store(detail::connect(url), migrations_for(backend));
    EXPECT_EQ(legacy->schema_version(), 2);
    EXPECT_TRUE(legacy->domain_versions().empty());
    // Data written by the old build (the same SQL as this build's store issues).
    legacy->commit({res("service", "a")}, "alice", "old build", nullptr, 0, kT0);
    legacy->add_token(TokenRecord{"t1", "h1", "admin", "root", kT0});
  }
  auto s = Store::open(url);  // migrates: adopts
  EXPECT_EQ(s->schema_version(), kLegacySchemaVersion);
  EXPECT_EQ(s->domain_versions(), latest_domain_versions(backend));
  EXPECT_EQ(names(s->resources()), std::vector<std::string>{"service/a"});
  ASSERT_EQ(s->instances().size(), 1u);
  EXPECT_EQ(s->instances()[0].facts, "");  // the column added on adoption, empty
  EXPECT_EQ(s->token_count(), 1u);
  EXPECT_EQ(s->revision(), (Revision{1, 1}));
  s->migrate();  // and again: nothing to do
  EXPECT_EQ(s->domain_versions(), latest_domain_versions(backend));
}

TEST_P(StoreTest, CommitsVersionsWithWholeResourceSets) {
  // Given unsorted; read back sorted by kind, then name, bytewise.
  const std::vector<Resource> v1 = {
      res("service", "users", {{"endpoints", {"10.0.0.1:80"}}, {"timeout", "2s"}}),
      res("route", "b", {{"path", "/b"}}),
      res("route", "a", {{"path", "/a"}, {"big", 9007199254740993LL}, {"utf8", "Zürich ✓"}}),
  };
  const Json diff1 = {{"added", {"route/a", "route/b", "service/users"}}};
  EXPECT_EQ(store_->commit(v1, "alice", "initial", diff1, 0, kT0), 1);
  std::vector<Resource> v2 = v1;
  v2[0].spec["timeout"] = "3s";
  v2.erase(v2.begin() + 1);  // delete route b
  EXPECT_EQ(store_->commit(v2, "bob", "tune", {{"changed", {"service/users"}}}, 1, kT0 + 5), 2);
  EXPECT_EQ(store_->commit({}, "carol", "empty it", nullptr, 2, kT0 + 9), 3);

  EXPECT_EQ(store_->latest_version(), 3);
  EXPECT_EQ(names(store_->resources(1)),
            (std::vector<std::string>{"route/a", "route/b", "service/users"}));
  EXPECT_EQ(store_->resources(1)[0], v1[2]);  // spec round-trips exactly (64-bit ints, UTF-8)
  EXPECT_EQ(names(store_->resources(2)), (std::vector<std::string>{"route/a", "service/users"}));
  EXPECT_EQ(store_->resources(2)[1].spec["timeout"], "3s");
  EXPECT_TRUE(store_->resources().empty());  // latest = 3, the empty set
  EXPECT_TRUE(store_->resources(99).empty());

  auto all = store_->versions(0);
  ASSERT_EQ(all.size(), 3u);
  EXPECT_EQ(all[0].number, 3);
  EXPECT_EQ(all[2], (VersionInfo{1, "alice", kT0, "initial", diff1}));
  auto page = store_->versions(1, 3);
  ASSERT_EQ(page.size(), 1u);
  EXPECT_EQ(page[0].number, 2);
  EXPECT_EQ(page[0].author, "bob");
  EXPECT_EQ(store_->versions(5, 2).size(), 1u);
  EXPECT_EQ(store_->version(2)->reason, "tune");
  EXPECT_EQ(store_->version(3)->diff, nullptr);
  EXPECT_FALSE(store_->version(4).has_value());
  EXPECT_EQ(store_->revision().config, 3);
}

TEST_P(StoreTest, ManyResourcesInOneVersion) {
  std::vector<Resource> all;
  for (int i = 0; i < 250; ++i) all.push_back(res("route", "r" + std::to_string(1000 + i)));
  ASSERT_EQ(store_->commit(all, "a", "bulk", nullptr, 0, kT0), 1);
  auto got = store_->resources(1);
  ASSERT_EQ(got.size(), 250u);
  EXPECT_EQ(got.front().name, "r1000");
  EXPECT_EQ(got.back().name, "r1249");
}

TEST_P(StoreTest, StaleExpectedVersionIsAConflictAndWritesNothing) {
  ASSERT_EQ(store_->commit({res("service", "a")}, "a", "one", nullptr, 0, kT0), 1);
  EXPECT_EQ(store_->commit({res("service", "b")}, "a", "stale", nullptr, 0, kT0), 0);
  EXPECT_EQ(store_->commit({res("service", "b")}, "a", "ahead", nullptr, 5, kT0), 0);
  EXPECT_EQ(store_->latest_version(), 1);
  EXPECT_EQ(store_->versions(0).size(), 1u);
  EXPECT_EQ(names(store_->resources()), std::vector<std::string>{"service/a"});
}

TEST_P(StoreTest, InvalidCommitIsRejectedWhole) {
  ASSERT_EQ(store_->commit({res("service", "a")}, "a", "one", nullptr, 0, kT0), 1);
  auto expect_error = [&](const std::vector<Resource>& all, const std::string& reason,
                          const std::string& fragment) {
    try {
      store_->commit(all, "a", reason, nullptr, 1, kT0);
      ADD_FAILURE() << "expected StoreError containing '" << fragment << "'";
    } catch (const StoreError& e) {
      EXPECT_NE(std::string(e.what()).find(fragment), std::string::npos) << e.what();
    }
  };
  expect_error({res("service", "b"), res("listener", "x")}, "r",
               "unknown resource kind 'listener'");
  expect_error({res("service", "b"), res("route", "")}, "r", "a route without a name");
  expect_error({res("service", "b"), res("service", "b")}, "r", "service 'b' given twice");
  expect_error({res("service", "b")}, "", "a reason is required");
  expect_error({res("service", "b", {{"bad", std::string("\xff\xfe")}})}, "r",
               "spec of service 'b'");
  EXPECT_EQ(store_->latest_version(), 1);
  EXPECT_EQ(names(store_->resources()), std::vector<std::string>{"service/a"});
}

TEST_P(StoreTest, RollbackCommitsAnOldSetAsANewVersion) {
  const std::vector<Resource> good = {res("route", "a", {{"path", "/a"}}), res("service", "s")};
  ASSERT_EQ(store_->commit(good, "a", "good", nullptr, 0, kT0), 1);
  ASSERT_EQ(
      store_->commit({res("route", "a", {{"path", "/broken"}})}, "a", "bad", nullptr, 1, kT0 + 1),
      2);
  const int64_t latest = store_->latest_version();
  EXPECT_EQ(store_->commit(store_->resources(1), "oncall", "rollback to 1", {{"rollback_of", 2}},
                           latest, kT0 + 2),
            3);
  EXPECT_EQ(store_->resources(), good);
  EXPECT_EQ(store_->resources(2).size(), 1u);  // history is kept
  EXPECT_EQ(store_->version(3)->diff["rollback_of"], 2);
}

TEST_P(StoreTest, SecondStoreOnTheSameDatabaseLosesWithAStaleVersion) {
  REQUIRE_SHARED();
  auto other = open_again();
  ASSERT_EQ(store_->commit({res("service", "a")}, "cp1", "one", nullptr, 0, kT0), 1);
  EXPECT_EQ(other->latest_version(), 1);  // sees the first control plane's write
  EXPECT_EQ(other->revision().config, 1);
  const int64_t seen = store_->latest_version();
  ASSERT_EQ(other->commit({res("service", "b")}, "cp2", "two", nullptr, seen, kT0), 2);
  EXPECT_EQ(store_->commit({res("service", "c")}, "cp1", "stale", nullptr, seen, kT0), 0);
  EXPECT_EQ(names(store_->resources()), std::vector<std::string>{"service/b"});
}

TEST_P(StoreTest, ConcurrentWritersGetOneWinnerPerVersion) {
  REQUIRE_SHARED();
  std::vector<std::unique_ptr<Store>> stores;
  stores.push_back(std::move(store_));
  stores.push_back(open_again());
  std::vector<std::vector<int64_t>> won(2);
  std::vector<std::thread> threads;
  for (int w = 0; w < 2; ++w) {
    threads.emplace_back([&, w] {
      for (int k = 0; k < 15; ++k) {
        Store& s = *stores[w];
        const int64_t base = s.latest_version();
        const std::string name = "w" + std::to_string(w) + "-" + std::to_string(k);
        const int64_t v = s.commit({res("service", name)}, "w", "race", nullptr, base, kT0);
        if (v != 0) {
          EXPECT_EQ(v, base + 1);
          won[w].push_back(v);
        }
      }
    });
  }
  for (auto& t : threads) t.join();
  std::set<int64_t> all(won[0].begin(), won[0].end());
  all.insert(won[1].begin(), won[1].end());
  const int64_t latest = stores[0]->latest_version();
  EXPECT_EQ(all.size(), won[0].size() + won[1].size()) << "a version was won twice";
  EXPECT_EQ(static_cast<int64_t>(all.size()), latest);
  for (int w = 0; w < 2; ++w) {
    for (int64_t v : won[w]) {
      auto rs = stores[0]->resources(v);
      ASSERT_EQ(rs.size(), 1u);
      EXPECT_EQ(rs[0].name.substr(0, 2), "w" + std::to_string(w)) << "version " << v;
    }
  }
}

TEST_P(StoreTest, RegistryRegisterHeartbeatExpire) {
  store_->upsert_instance(inst("users", "u2", kT0));
  store_->upsert_instance(inst("users", "u1", kT0, 1000));
  store_->upsert_instance(inst("orders", "o1", kT0));
  const int64_t r0 = store_->revision().registry;
  EXPECT_EQ(r0, 3);

  auto all = store_->instances();
  ASSERT_EQ(all.size(), 3u);
  EXPECT_EQ(all[0], inst("orders", "o1", kT0));
  EXPECT_EQ(all[1].id, "u1");
  EXPECT_EQ(store_->instances("users").size(), 2u);
  EXPECT_TRUE(store_->instances("nobody").empty());

  // An identical re-registration moves nothing; a new address does.
  store_->upsert_instance(inst("users", "u2", kT0));
  EXPECT_EQ(store_->revision().registry, r0);
  Instance moved = inst("users", "u2", kT0 + 10);
  moved.address = "10.0.0.9:80";
  store_->upsert_instance(moved);
  EXPECT_EQ(store_->revision().registry, r0 + 1);
  EXPECT_EQ(store_->instances("users")[1], moved);

  EXPECT_TRUE(store_->heartbeat("users", "u2", kT0 + 100));
  EXPECT_TRUE(store_->heartbeat("users", "u2", kT0 + 50));  // late: heartbeat_ms stays
  EXPECT_FALSE(store_->heartbeat("users", "nope", kT0 + 100));
  EXPECT_FALSE(store_->heartbeat("nope", "u2", kT0 + 100));
  EXPECT_EQ(store_->instances("users")[1].heartbeat_ms, kT0 + 100);
  EXPECT_EQ(store_->revision().registry, r0 + 1);  // heartbeats do not wake watchers

  // o1: heartbeat kT0, ttl 500 -> alive through kT0+500, gone at kT0+501.
  EXPECT_TRUE(store_->expire_instances(kT0 + 500).empty());
  EXPECT_EQ(store_->revision().registry, r0 + 1);
  auto gone = store_->expire_instances(kT0 + 501);
  ASSERT_EQ(gone.size(), 1u);
  EXPECT_EQ(gone[0], inst("orders", "o1", kT0));
  EXPECT_EQ(store_->revision().registry, r0 + 2);
  EXPECT_EQ(store_->instances().size(), 2u);

  // u2 (heartbeat kT0+100, ttl 500) and u1 (kT0, ttl 1000) go together at kT0+1001.
  EXPECT_TRUE(store_->expire_instances(kT0 + 600).empty());
  gone = store_->expire_instances(kT0 + 1001);
  ASSERT_EQ(gone.size(), 2u);
  EXPECT_EQ(gone[0].id, "u1");
  EXPECT_EQ(gone[1].id, "u2");
  EXPECT_TRUE(store_->instances().empty());
  EXPECT_FALSE(store_->heartbeat("users", "u1", kT0 + 1002));  // must register again
}

TEST_P(StoreTest, RegistryRemove) {
  store_->upsert_instance(inst("users", "u1", kT0));
  const int64_t r = store_->revision().registry;
  EXPECT_TRUE(store_->remove_instance("users", "u1"));
  EXPECT_FALSE(store_->remove_instance("users", "u1"));
  EXPECT_EQ(store_->revision().registry, r + 1);
  EXPECT_TRUE(store_->instances().empty());
  Instance bad = inst("users", "", kT0);
  EXPECT_THROW(store_->upsert_instance(bad), StoreError);
  bad = inst("users", "u3", kT0, 0);
  EXPECT_THROW(store_->upsert_instance(bad), StoreError);
}

TEST_P(StoreTest, GatewaysUpsert) {
  store_->upsert_gateway({"gw-b", "south", "s1", 3, "applied", "", kT0});
  store_->upsert_gateway({"gw-a", "north", "n1", 2, "applied", "", kT0});
  const GatewayRecord refused{"gw-b", "south", "s2", 3, "refused", "routes[0].path: bad", kT0 + 7};
  store_->upsert_gateway(refused);
  auto gws = store_->gateways();
  ASSERT_EQ(gws.size(), 2u);
  EXPECT_EQ(gws[0], (GatewayRecord{"gw-a", "north", "n1", 2, "applied", "", kT0}));
  EXPECT_EQ(gws[1], refused);
}

TEST_P(StoreTest, EventsInOrderWithPaging) {
  std::vector<int64_t> ids;
  for (int i = 0; i < 5; ++i) {
    ids.push_back(store_->append_event(
        {0, kT0 + i, "gw-a", "breaker_opened", "svc" + std::to_string(i), {{"n", i}}}));
  }
  EXPECT_TRUE(std::is_sorted(ids.begin(), ids.end()));
  EXPECT_EQ(std::set<int64_t>(ids.begin(), ids.end()).size(), 5u);
  auto first = store_->events(0, 2);
  ASSERT_EQ(first.size(), 2u);
  EXPECT_EQ(first[0], (Event{ids[0], kT0, "gw-a", "breaker_opened", "svc0", {{"n", 0}}}));
  EXPECT_EQ(first[1].id, ids[1]);
  auto rest = store_->events(first.back().id, 10);
  ASSERT_EQ(rest.size(), 3u);
  EXPECT_EQ(rest[0].subject, "svc2");
  EXPECT_EQ(rest[2].id, ids[4]);
  EXPECT_TRUE(store_->events(ids[4], 10).empty());
  EXPECT_EQ(store_->events(0, 0).size(), 5u);  // 0 = no limit

  EXPECT_EQ(store_->prune_events(kT0 + 2), 2);
  EXPECT_EQ(store_->events(0, 10).front().id, ids[2]);
  const int64_t next = store_->append_event({0, kT0 + 9, "cp", "k", "s", nullptr});
  EXPECT_GT(next, ids[4]);  // ids are never reused
}

TEST_P(StoreTest, ReleaseStatesUpsertWholeAndSortByName) {
  EXPECT_TRUE(store_->release_states().empty());
  store_->put_release_state("pay", {{"state", "stepping"}, {"percent", 5}}, kT0);
  store_->put_release_state("cards", {{"state", "pending"}}, kT0);
  store_->put_release_state("pay", {{"state", "promoted"}}, kT0 + 1);  // replaces, not merges
  auto all = store_->release_states();
  ASSERT_EQ(all.size(), 2u);
  EXPECT_EQ(all[0], (std::pair<std::string, nlohmann::json>{"cards", {{"state", "pending"}}}));
  EXPECT_EQ(all[1], (std::pair<std::string, nlohmann::json>{"pay", {{"state", "promoted"}}}));
}

// What keeps two control planes from both moving a release (releases_service.h).
TEST_P(StoreTest, ReleaseStatesMoveOnlyOnTheSequenceRead) {
  EXPECT_TRUE(store_->release_seqs().empty());
  EXPECT_FALSE(store_->release_row("pay"));
  EXPECT_TRUE(store_->put_release_state_if("pay", 0, {{"state", "pending"}}, kT0));
  EXPECT_FALSE(store_->put_release_state_if("pay", 0, {{"state", "x"}}, kT0));  // exists already
  EXPECT_TRUE(store_->put_release_state_if("pay", 1, {{"state", "stepping"}}, kT0 + 1));
  EXPECT_FALSE(store_->put_release_state_if("pay", 1, {{"state", "x"}}, kT0 + 2));    // moved
  EXPECT_FALSE(store_->put_release_state_if("cards", 4, {{"state", "x"}}, kT0 + 2));  // none
  store_->put_release_state("pay", {{"state", "paused"}}, kT0 + 3);  // unconditional: moves it
  EXPECT_EQ(store_->release_seqs(), (std::map<std::string, int64_t>{{"pay", 3}}));
  auto row = store_->release_row("pay");
  ASSERT_TRUE(row);
  EXPECT_EQ(row->name, "pay");
  EXPECT_EQ(row->seq, 3);
  EXPECT_EQ(row->updated_ms, kT0 + 3);
  EXPECT_EQ(row->state, (nlohmann::json{{"state", "paused"}}));
  EXPECT_FALSE(store_->put_release_state_if("pay", 2, {{"state", "x"}}, kT0 + 4));
  EXPECT_TRUE(store_->put_release_state_if("pay", 3, {{"state", "stepping"}}, kT0 + 4));
  EXPECT_EQ(store_->release_states().size(), 1u);
  EXPECT_EQ(store_->release_states()[0].second, (nlohmann::json{{"state", "stepping"}}));
}

TEST_P(StoreTest, RollupsUpsertRangeAndPrune) {
  const int64_t m = 60'000;
  store_->put_rollup(kT0, "gw-b", {{"requests", 1}});
  store_->put_rollup(kT0, "gw-a", {{"requests", 2}});
  store_->put_rollup(kT0 + m, "gw-a", {{"requests", 3}});
  store_->put_rollup(kT0 + 2 * m, "gw-a", {{"requests", 4}});
  store_->put_rollup(kT0, "gw-b", {{"requests", 10}});  // replaces

  auto rows = store_->rollup_rows(kT0, kT0 + 2 * m);  // [from, to)
  ASSERT_EQ(rows.size(), 3u);
  EXPECT_EQ(rows[0], (Rollup{kT0, "gw-a", {{"requests", 2}}}));
  EXPECT_EQ(rows[1], (Rollup{kT0, "gw-b", {{"requests", 10}}}));
  EXPECT_EQ(rows[2].minute_ms, kT0 + m);
  auto a = store_->rollups(kT0, kT0 + 3 * m, "gw-a");
  ASSERT_EQ(a.size(), 3u);
  EXPECT_EQ(a[2], (std::pair<int64_t, Json>{kT0 + 2 * m, {{"requests", 4}}}));
  EXPECT_TRUE(store_->rollups(kT0 + 3 * m, kT0 + 9 * m).empty());

  EXPECT_EQ(store_->prune_rollups(kT0 + m), 2);
  EXPECT_EQ(store_->prune_rollups(kT0 + m), 0);
  EXPECT_EQ(store_->rollup_rows(0, kT0 + 9 * m).size(), 2u);
}

TEST_P(StoreTest, Tokens) {
  const TokenRecord admin{"t1", "sha256:aaa", "admin", "bootstrap", kT0};
  const TokenRecord viewer{"t0", "sha256:bbb", "viewer", "dashboards", kT0 + 1};
  store_->add_token(admin);
  store_->add_token(viewer);
  EXPECT_EQ(store_->token_count(), 2u);
  EXPECT_EQ(store_->find_token("sha256:aaa"), admin);
  EXPECT_FALSE(store_->find_token("sha256:zzz").has_value());
  EXPECT_EQ(store_->tokens(), (std::vector<TokenRecord>{viewer, admin}));

  auto expect_error = [&](const TokenRecord& t, const std::string& fragment) {
    try {
      store_->add_token(t);
      ADD_FAILURE() << "expected StoreError containing '" << fragment << "'";
    } catch (const StoreError& e) {
      EXPECT_NE(std::string(e.what()).find(fragment), std::string::npos) << e.what();
    }
  };
  expect_error({"t1", "sha256:ccc", "viewer", "dup id", kT0}, "exists");
  expect_error({"t9", "sha256:aaa", "viewer", "dup hash", kT0}, "exists");
  expect_error({"t9", "sha256:ddd", "root", "bad role", kT0}, "unknown role 'root'");
  EXPECT_EQ(store_->token_count(), 2u);

  EXPECT_FALSE(store_->token_revoked("sha256:bbb"));
  EXPECT_TRUE(store_->remove_token("t0"));
  EXPECT_FALSE(store_->remove_token("t0"));
  EXPECT_EQ(store_->token_count(), 1u);
  // Revocations are remembered by hash (so a bootstrap file cannot bring one back), and only
  // those.
  EXPECT_TRUE(store_->token_revoked("sha256:bbb"));
  EXPECT_FALSE(store_->token_revoked("sha256:aaa"));
  EXPECT_FALSE(store_->token_revoked("sha256:never"));
}

TEST_P(StoreTest, SafeWithManyThreadsOnOneStore) {
  std::vector<std::thread> threads;
  for (int t = 0; t < 4; ++t) {
    threads.emplace_back([&, t] {
      for (int k = 0; k < 20; ++k) {
        const std::string id = std::to_string(t) + "-" + std::to_string(k);
        store_->upsert_instance(inst("svc", id, kT0));
        store_->heartbeat("svc", id, kT0 + 1);
        store_->append_event({0, kT0, "t", "k", id, nullptr});
        store_->instances("svc");
      }
    });
  }
  for (auto& t : threads) t.join();
  EXPECT_EQ(store_->instances("svc").size(), 80u);
  EXPECT_EQ(store_->events(0, 0).size(), 80u);
}

// Change records (control/changes/): held, appended to, committed with a version in one
// transaction, and the changes a rollback undoes marked; on every backend.
TEST_P(StoreTest, ChangeRecordsAreAppendOnlyAndCommitWithTheirVersion) {
  ChangeRecord held;
  held.operation = "apply";
  held.author = "deployer";
  held.reason = "more capacity";
  held.proposed_ms = kT0;
  held.diff =
      Json::array({{{"op", "add"}, {"kind", "service"}, {"name", "a"}, {"after", Json::object()}}});
  held.affected = {{"services", {"a"}}};
  held.policy = {{"policies", {"p"}}};
  held.transitions.push_back({kT0, "", "proposed", "deployer", "more capacity"});
  const int64_t id = store_->add_change(held);
  EXPECT_EQ(id, 1);
  ChangeUpdate approve;
  approve.approval = ChangeApproval{"reviewer", "operator", "ok", kT0 + 1};
  EXPECT_FALSE(store_->update_change(id, "approved", approve, kT0 + 1));  // wrong state
  EXPECT_TRUE(store_->change(id)->approvals.empty());
  EXPECT_TRUE(store_->update_change(id, "proposed", approve, kT0 + 1));
  EXPECT_NE(error_of([&] {
              store_->update_change(id, "proposed", approve, kT0 + 2);
            }).find("approved by 'reviewer' already"),
            std::string::npos);

  ChangeRecord c = *store_->change(id);
  ChangeUpdate go;
  go.transitions = {{kT0 + 3, "proposed", "approved", "reviewer", "ok"},
                    {kT0 + 3, "approved", "rolling_out", "reviewer", "commit"},
                    {kT0 + 3, "rolling_out", "done", "reviewer", "done"}};
  // A stale expected version commits nothing and records nothing.
  EXPECT_EQ(
      store_->commit_change({res("service", "a")}, held.diff, 5, kT0 + 3, c, "proposed", go, {}),
      0);
  EXPECT_EQ(store_->change(id)->state, "proposed");
  EXPECT_EQ(
      store_->commit_change({res("service", "a")}, held.diff, 0, kT0 + 3, c, "proposed", go, {}),
      1);
  EXPECT_EQ(c.version, 1);
  EXPECT_EQ(store_->version(1)->reason, "more capacity (change 1)");
  EXPECT_EQ(store_->version(1)->author, "deployer");

  // A new change committed at once; then a rollback to version 1 marks it rolled back.
  ChangeRecord now;
  now.operation = "apply";
  now.author = "deployer";
  now.reason = "b";
  now.proposed_ms = kT0 + 4;
  now.diff = Json::array();
  now.transitions = {{kT0 + 4, "", "proposed", "deployer", "b"},
                     {kT0 + 4, "proposed", "done", "deployer", "b"}};
  EXPECT_EQ(store_->commit_change({res("service", "a"), res("service", "b")}, Json::array(), 1,
                                  kT0 + 4, now, "", {}, {}),
            2);
  EXPECT_EQ(now.id, 2);
  ChangeRecord back = now;
  back.id = 0;
  back.operation = "rollback";
  back.target_version = 1;
  back.reason = "undo";
  back.transitions = {{kT0 + 9, "", "proposed", "deployer", "undo"},
                      {kT0 + 9, "proposed", "done", "deployer", "undo"}};
  EXPECT_EQ(store_->commit_change({res("service", "a")}, Json::array(), 2, kT0 + 9, back, "", {},
                                  {kT0 + 9, "", "", "deployer", "undone"}),
            3);
  auto undone = store_->change(2);
  EXPECT_EQ(undone->state, "rolled_back");
  EXPECT_EQ(undone->transitions.back(),
            (ChangeTransition{kT0 + 9, "done", "rolled_back", "deployer", "undone"}));
  EXPECT_EQ(store_->change(1)->state, "done");  // version 1 is what was restored
  EXPECT_EQ(store_->change(3)->state, "done");

  auto full = store_->change(1);
  EXPECT_EQ(full->transitions.size(), 4u);
  EXPECT_EQ(full->approvals.size(), 1u);
  EXPECT_EQ(full->policy, held.policy);
  EXPECT_EQ(full->affected, held.affected);
  EXPECT_EQ(store_->changes("", 0, 0, false).size(), 3u);
  EXPECT_EQ(store_->changes("done", 0, 0, false).front().id, 3);  // newest first
  EXPECT_EQ(store_->changes("", 0, 2, false).size(), 2u);
  EXPECT_EQ(store_->changes_active_since(kT0 + 5).size(), 2u);  // 2 (rolled back) and 3
  EXPECT_FALSE(store_->change(99));
}

// The CMDB domain's tables (control/cmdb/cmdb.h) on every backend: an import, observed values,
// history, and a second control plane on the same database seeing both.
TEST_P(StoreTest, CmdbImportRecordAndHistory) {
  cmdb::Cmdb db(*store_);
  cmdb::ImportDoc doc;
  ASSERT_TRUE(cmdb::read_yaml(R"(cis:
  - {type: service, name: accounts}
  - {type: host, hostname: h1, cpus: 8}
  - {type: instance, id: i-1, zone: a1, relations: {belongs_to: service/accounts, runs_on: host/h1}}
)",
                              doc)
                  .empty());
  auto r = db.import(doc, {"alice", "first", 7}, kT0, false);
  ASSERT_TRUE(r.errors.empty()) << r.to_json().dump();
  EXPECT_EQ(r.cis_added, 3);
  EXPECT_EQ(r.relations_added, 2);

  cmdb::Observed o;
  o.source = cmdb::Source::kRegistry;
  o.seen_ms = kT0 + 10;
  o.cis.push_back({"instance", "i-1", {{"zone", cmdb::Value(std::string("a2"))}}});
  o.relations.push_back({cmdb::RelationKind::kRunsOn, "instance", "i-1", "host", "h2"});
  r = db.record(o, {"reconciler", "", 0});
  ASSERT_TRUE(r.errors.empty()) << r.to_json().dump();
  EXPECT_EQ(r.cis_added, 1);  // host/h2

  // A refused import leaves the tables as they were.
  cmdb::ImportDoc bad;
  ASSERT_TRUE(cmdb::read_yaml("cis: [{type: host, hostname: h3, cpus: x}]\n", bad).empty());
  EXPECT_FALSE(db.import(bad, {"alice", "", 0}, kT0 + 20, false).errors.empty());

  auto check = [](cmdb::Cmdb& c) {
    cmdb::Graph g = c.load();
    EXPECT_EQ(g.ci_count(), 4u);
    EXPECT_FALSE(g.find("host", "h3"));
    auto i = g.find("instance", "i-1");
    ASSERT_TRUE(i);
    auto zone = *g.schema().type(g.ci(*i).type).attribute("zone");
    EXPECT_EQ(std::get<std::string>(g.declared(*i, zone)->value), "a1");
    EXPECT_EQ(std::get<std::string>(g.observed(*i, zone)->value), "a2");
    EXPECT_EQ(g.out(*i).size(), 3u);  // belongs_to, runs_on h1 (declared), runs_on h2 (registry)
    auto h = c.history("instance", "i-1", 100);
    ASSERT_EQ(h.size(), 7u);  // created, id, zone, two relations; then zone and runs_on (registry)
    EXPECT_EQ(h[0].source, "registry");
    EXPECT_EQ(h[0].field, "runs_on");
    EXPECT_EQ(h[0].new_value, "host/h2");
    EXPECT_EQ(h[1].field, "zone");
    EXPECT_EQ(h[1].old_value, nullptr);
    EXPECT_EQ(h.back().what, "ci");
    EXPECT_EQ(h.back().actor, "alice");
    EXPECT_EQ(h.back().change_id, 7);
  };
  check(db);
  if (shared()) {
    auto other = open_again();
    cmdb::Cmdb db2(*other);
    check(db2);
    // A write through the other one is seen here (the cached model follows the revision).
    cmdb::ImportDoc more;
    ASSERT_TRUE(cmdb::read_yaml("cis: [{type: host, hostname: h9}]\n", more).empty());
    ASSERT_TRUE(db2.import(more, {"bob", "", 0}, kT0 + 30, false).errors.empty());
    EXPECT_TRUE(db.load().find("host", "h9"));
  }
}

INSTANTIATE_TEST_SUITE_P(Backends, StoreTest,
                         ::testing::Values(Backend::kSqliteFile, Backend::kSqliteMemory,
                                           Backend::kPostgres),
                         backend_name);

// --- backend specifics and errors --------------------------------------------------------------

TEST(StoreOpen, RejectsBadUrlsClearly) {
  EXPECT_NE(error_of([] { Store::open(""); }).find("expected sqlite:///absolute/path.db"),
            std::string::npos);
  const std::string mysql = error_of([] { Store::open("mysql://root:hunter2@db/x"); });
  EXPECT_NE(mysql.find("unsupported"), std::string::npos) << mysql;
  EXPECT_EQ(mysql.find("hunter2"), std::string::npos) << mysql;
  EXPECT_NE(error_of([] { Store::open("sqlite://relative.db"); }).find("three slashes"),
            std::string::npos);
  EXPECT_NE(error_of([] { Store::open("sqlite:"); }).find("no path"), std::string::npos);
  const std::string missing = error_of([] { Store::open("sqlite:///nonexistent-dir-x/c.db"); });
  EXPECT_NE(missing.find("/nonexistent-dir-x/c.db: cannot open"), std::string::npos) << missing;
}

TEST(StoreOpen, SqliteFileThatIsNotADatabase) {
  char dir[] = "/tmp/sluice-store-XXXXXX";
  ASSERT_NE(::mkdtemp(dir), nullptr);
  const std::string path = std::string(dir) + "/junk.db";
  std::ofstream(path) << "this is not an SQLite file, just some text that is long enough........";
  const std::string e = error_of([&] { Store::open("sqlite://" + path); });
  EXPECT_NE(e.find(path), std::string::npos) << e;
  EXPECT_NE(e.find("not a database"), std::string::npos) << e;
  fs::remove_all(dir);
}

TEST(StoreOpen, SqliteUsesWal) {
  char dir[] = "/tmp/sluice-store-XXXXXX";
  ASSERT_NE(::mkdtemp(dir), nullptr);
  {
    auto s = Store::open(std::string("sqlite://") + dir + "/c.db");
    s->commit({res("service", "a")}, "a", "r", nullptr, 0, kT0);
    EXPECT_TRUE(fs::exists(std::string(dir) + "/c.db-wal"));
    auto relative = Store::open(std::string("sqlite:") + dir + "/c.db");  // sqlite:PATH form
    EXPECT_EQ(relative->latest_version(), 1);
  }
  fs::remove_all(dir);
}

TEST(StoreOpen, UnreachablePostgresFailsQuicklyWithoutThePassword) {
  const std::string url =
      "postgres://sluice:hunter2@127.0.0.1:" + std::to_string(free_port()) + "/control";
  const auto start = SteadyClock::now();
  const std::string e = error_of([&] { Store::open(url); });
  EXPECT_LT(SteadyClock::now() - start, 3s);
  EXPECT_NE(e.find("cannot connect"), std::string::npos) << e;
  EXPECT_NE(e.find("127.0.0.1"), std::string::npos) << e;
  EXPECT_EQ(e.find("hunter2"), std::string::npos) << e;
}

TEST(StoreOpen, RedactsPasswords) {
  EXPECT_EQ(detail::redact_url("postgres://u:secret@h:5432/db"), "postgres://u:***@h:5432/db");
  EXPECT_EQ(detail::redact_url("postgresql://h/db?user=u&password=secret&sslmode=require"),
            "postgresql://h/db?user=u&password=***&sslmode=require");
  EXPECT_EQ(detail::redact_url("postgres://u@h/db"), "postgres://u@h/db");
}

TEST(PostgresStore, ReconnectsOnceAfterTheServerDropsTheConnection) {
  PostgresServer* pg = nullptr;
  REQUIRE_POSTGRES(pg);
  const std::string db = pg->create_database();
  auto s = Store::open(pg->url(db));
  ASSERT_EQ(s->commit({res("service", "a")}, "a", "r", nullptr, 0, kT0), 1);
  const auto kill_sessions = [&] {
    return pg->scalar(
        "SELECT count(pg_terminate_backend(pid)) FROM pg_stat_activity"
        " WHERE datname = '" +
        db + "' AND pid <> pg_backend_pid()");
  };
  ASSERT_EQ(kill_sessions(), "1");
  EXPECT_EQ(s->latest_version(), 1);  // a read after the drop
  ASSERT_EQ(kill_sessions(), "1");
  EXPECT_EQ(s->commit({res("service", "b")}, "a", "r", nullptr, 1, kT0), 2);  // and a write
  EXPECT_EQ(names(s->resources()), std::vector<std::string>{"service/b"});
}

TEST(PostgresStore, LosingTheRaceOnTheVersionNumberIsAConflict) {
  // The optimistic check passes in both transactions; the primary key decides. Another session
  // holds version 1 uncommitted, our commit blocks on it, then fails on the key: 0, not an error.
  PostgresServer* pg = nullptr;
  REQUIRE_POSTGRES(pg);
  const std::string db = pg->create_database();
  auto s = Store::open(pg->url(db));
  PGconn* other = PQconnectdb(
      ("host=127.0.0.1 port=" + std::to_string(pg->port()) + " user=sluice dbname=" + db).c_str());
  ASSERT_EQ(PQstatus(other), CONNECTION_OK);
  auto exec = [&](const char* sql) {
    PGresult* r = PQexec(other, sql);
    EXPECT_EQ(PQresultStatus(r), PGRES_COMMAND_OK) << PQerrorMessage(other);
    PQclear(r);
  };
  exec("BEGIN");
  exec(
      "INSERT INTO config_versions (number, author, created_ms, reason, diff)"
      " VALUES (1, 'other', 0, 'race', 'null')");
  int64_t result = -1;
  std::thread writer(
      [&] { result = s->commit({res("service", "mine")}, "me", "race", nullptr, 0, kT0); });
  // Wait (bounded) until our commit is blocked on the other session's row.
  const auto deadline = SteadyClock::now() + 10s;
  while (pg->scalar("SELECT count(*) FROM pg_stat_activity WHERE datname = '" + db +
                    "' AND wait_event_type = 'Lock'") != "1" &&
         SteadyClock::now() < deadline)
    std::this_thread::sleep_for(5ms);
  exec("COMMIT");
  writer.join();
  PQfinish(other);
  EXPECT_EQ(result, 0);
  EXPECT_EQ(s->latest_version(), 1);
  EXPECT_EQ(s->version(1)->author, "other");
  EXPECT_TRUE(s->resources().empty());
}

}  // namespace
}  // namespace sluice::control
