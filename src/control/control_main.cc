#include "control/control_main.h"

#include <pthread.h>
#include <signal.h>
#include <sys/resource.h>

#include <algorithm>
#include <chrono>
#include <condition_variable>
#include <cstdio>
#include <exception>
#include <mutex>
#include <thread>

#include "control/api.h"
#include "control/auth.h"
#include "control/control_config.h"
#include "control/server.h"
#include "control/store.h"
#include "core/log.h"

namespace sluice::control {
namespace {

using namespace std::chrono_literals;

constexpr auto kTickInterval = 100ms;

int64_t wall_ms() {
  return std::chrono::duration_cast<std::chrono::milliseconds>(
             std::chrono::system_clock::now().time_since_epoch())
      .count();
}

int64_t to_ms(core::Duration d) {
  return std::chrono::duration_cast<std::chrono::milliseconds>(d).count();
}

// Every watching gateway holds a connection (a parked long poll), so 1,000 gateways need more
// descriptors than the soft limit many systems start processes with (1024). Like Go's runtime
// and nginx's worker_rlimit_nofile, take what the hard limit allows. Returns the limit in force.
rlim_t raise_open_file_limit() {
  rlimit rl{};
  if (::getrlimit(RLIMIT_NOFILE, &rl) != 0) return 0;
  // An unlimited hard limit is not a valid soft one for RLIMIT_NOFILE (fs.nr_open caps it).
  constexpr rlim_t kCap = rlim_t{1} << 20;
  const rlim_t want = rl.rlim_max == RLIM_INFINITY ? std::max(rl.rlim_cur, kCap) : rl.rlim_max;
  if (rl.rlim_cur != RLIM_INFINITY && rl.rlim_cur < want) {
    rlimit raised{want, rl.rlim_max};
    if (::setrlimit(RLIMIT_NOFILE, &raised) == 0) {
      core::log_info("control: open file limit raised from {} to {}", rl.rlim_cur, want);
      return want;
    }
    core::log_warn(
        "control: cannot raise the open file limit above {}: each watching gateway "
        "holds one",
        rl.rlim_cur);
  }
  return rl.rlim_cur;
}

// Runs Api::tick() on its own thread, so store work of the sweep and the revision poll never
// holds up a request.
class Ticker {
 public:
  explicit Ticker(Api& api) : api_(api), thread_([this] { run(); }) {}
  ~Ticker() { stop(); }
  void stop() {
    {
      std::lock_guard lock(mu_);
      if (stop_) return;
      stop_ = true;
    }
    cv_.notify_all();
    thread_.join();
  }

 private:
  void run() {
    std::unique_lock lock(mu_);
    while (!stop_) {
      lock.unlock();
      api_.tick();
      lock.lock();
      cv_.wait_for(lock, kTickInterval, [this] { return stop_; });
    }
  }

  Api& api_;
  std::mutex mu_;
  std::condition_variable cv_;
  bool stop_ = false;
  std::thread thread_;
};

}  // namespace

int run_control(const std::string& config_path) {
  ControlConfigResult loaded = load_control_file(config_path);
  if (!loaded.ok()) {
    for (const auto& e : loaded.errors) std::fprintf(stderr, "%s\n", e.to_string().c_str());
    std::fprintf(stderr, "%zu error(s) in %s\n", loaded.errors.size(), config_path.c_str());
    return 1;
  }
  const ControlConfig& cfg = *loaded.config;

  // Every thread started from here on inherits the blocked mask; this one waits for them.
  sigset_t signals, previous;
  sigemptyset(&signals);
  sigaddset(&signals, SIGINT);
  sigaddset(&signals, SIGTERM);
  pthread_sigmask(SIG_BLOCK, &signals, &previous);
  struct RestoreMask {
    sigset_t mask;
    ~RestoreMask() { pthread_sigmask(SIG_SETMASK, &mask, nullptr); }
  } restore{previous};

  const rlim_t open_files = raise_open_file_limit();

  std::unique_ptr<Store> store;
  try {
    store = Store::open(cfg.store);
  } catch (const std::exception& e) {
    std::fprintf(stderr, "sluice control: store: %s\n", e.what());
    return 1;
  }

  try {
    BootstrapResult boot = bootstrap_admin_token(*store, cfg.admin_token_file, wall_ms());
    for (const std::string& w : boot.warnings) core::log_warn("control: {}", w);
    if (boot.created) {
      // Shown once; afterwards only the file has it.
      std::printf("admin token (saved to %s; shown only now): %s\n", cfg.admin_token_file.c_str(),
                  boot.token.c_str());
      std::fflush(stdout);
    } else if (boot.registered) {
      core::log_info("control: admin token from {} registered in the store", cfg.admin_token_file);
    }
  } catch (const std::exception& e) {
    std::fprintf(stderr, "sluice control: %s\n", e.what());
    return 1;
  }

  Auth auth(*store, wall_ms);
  ApiOptions options;
  options.stats_retention_ms = to_ms(cfg.stats_retention);
  options.events_retention_ms = to_ms(cfg.events_retention);
  options.cmdb_reconcile_interval_ms = to_ms(cfg.cmdb_reconcile_interval);
  options.cmdb_window_ms = to_ms(cfg.cmdb_window);
  options.cmdb_traffic_window_ms = to_ms(cfg.cmdb_traffic_window);
  options.slo_interval_ms = to_ms(cfg.slo_interval);
  Api api(*store, auth, options, wall_ms);

  ServerOptions so;
  so.listen = cfg.listen;
  so.threads = cfg.threads;
  so.tls_cert = cfg.tls_cert;
  so.tls_key = cfg.tls_key;
  std::unique_ptr<Server> server;
  try {
    server = std::make_unique<Server>(so, api);
  } catch (const std::exception& e) {
    std::fprintf(stderr, "sluice control: %s\n", e.what());
    return 1;
  }
  api.set_runner([&server](std::function<void()> fn) { server->post(std::move(fn)); });
  server->start();
  Ticker ticker(api);
  core::log_info("control: listening on {}://{}:{} (store {}, config {}, open file limit {})",
                 cfg.tls ? "https" : "http", cfg.listen.host, server->port(), store->location(),
                 api.current_version(), open_files);

  int sig = 0;
  while (sigwait(&signals, &sig) != 0) {
  }
  core::log_info("control: {} received, stopping", sig == SIGINT ? "SIGINT" : "SIGTERM");
  // Parked long polls get a 503 first (gateways move to another control plane or retry), then
  // the listener closes once those answers are written.
  api.shutdown();
  ticker.stop();
  server->stop(2s);
  core::log_info("control: stopped");
  return 0;
}

}  // namespace sluice::control
