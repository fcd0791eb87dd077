// Staged-rollout bookkeeping in the control plane (issue 14, "Performance"): 1,000 gateways
// long-poll GET /v1/gateway-config through the real Api and FleetService (in-memory SQLite
// store); a rollout moves through its stages with a StagedPlan as ServiceContext::versions. Per
// stage, from the driver's move (selection over the fleet's known gateways, StagedPlan::reach,
// ConfigFeed::plan_changed) until each gateway whose version changed holds its answer: p50, p99,
// max in ms. Answers are handed to a callback (no sockets), so this is the control plane's own
// share; bench/control_bench.py measures the network path of a write to 1,000 watchers.
//   build/release/micro_bench --benchmark_filter=Rollout
#include <benchmark/benchmark.h>

#include <algorithm>
#include <chrono>
#include <cmath>
#include <functional>
#include <memory>
#include <optional>
#include <span>
#include <string>
#include <vector>

#include <fmt/format.h>

#include "control/api.h"
#include "control/rollout/plan.h"
#include "control/rollout/selection.h"
#include "control/rollout/staged_plan.h"

namespace {

using namespace sluice::control;  // NOLINT: a bench file
using Clock = std::chrono::steady_clock;
using Json = nlohmann::json;

rollout::StagedPlan* g_plan = nullptr;
ServiceContext* g_ctx = nullptr;

class PlanOwner final : public Service {
 public:
  std::string_view name() const override { return "plan-owner"; }
  std::vector<Route> routes() override { return {}; }
};
std::span<const Migration> no_migrations(std::string_view) {
  return {};
}
std::unique_ptr<Service> make_owner(ServiceContext& ctx) {
  ctx.versions = g_plan;
  g_ctx = &ctx;
  return std::make_unique<PlanOwner>();
}

struct Watcher {
  std::string id, city;
  std::string holds;  // the version it last got
  bool parked = false;
  std::shared_ptr<std::optional<Clock::time_point>> answered_at;
  std::shared_ptr<std::string> version;
};

double percentile(std::vector<double> v, double p) {
  if (v.empty()) return 0;
  std::sort(v.begin(), v.end());
  size_t i = static_cast<size_t>(std::ceil(p * static_cast<double>(v.size()))) - 1;
  return v[std::min(i, v.size() - 1)];
}

class Fixture {
 public:
  explicit Fixture(int gateways) {
    token_ = auth_.issue("bench", Role::kOperator).token;
    g_plan = &plan_;
    std::vector<Domain> all(domains().begin(), domains().end());
    all.push_back(Domain{"plan_owner_bench", no_migrations, make_owner});
    api_ = std::make_unique<Api>(
        *store_, auth_, options_, [this] { return now_; }, all);
    ctx_ = g_ctx;
    apply(1);
    for (int i = 0; i < gateways; ++i) {
      Watcher w;
      w.id = fmt::format("gw-{:04}", i);
      w.city = i % 2 == 0 ? "a" : "b";
      watchers_.push_back(std::move(w));
    }
    for (Watcher& w : watchers_) park(w, /*wait=*/false);  // registers it, gets 1.0
    apply(2);
  }

  // Each watcher polls with what it holds; parked unless its answer already moved.
  void park_all() {
    for (Watcher& w : watchers_) {
      if (!w.parked) park(w, true);
    }
  }

  // Moves the plan; returns the per-watcher latency (ms) of those answered.
  std::vector<double> move(const std::function<void()>& change, size_t& unchanged_answered) {
    Clock::time_point t0 = Clock::now();
    change();
    ctx_->feed->plan_changed(nullptr);
    std::vector<double> ms;
    unchanged_answered = 0;
    for (Watcher& w : watchers_) {
      if (!w.answered_at->has_value()) continue;
      ms.push_back(std::chrono::duration<double, std::milli>(**w.answered_at - t0).count());
      if (*w.version == w.holds) ++unchanged_answered;
      w.holds = *w.version;
      w.parked = false;
    }
    return ms;
  }

  rollout::StagedPlan plan_;
  ServiceContext* ctx_ = nullptr;
  int64_t now_ = 1'700'000'000'000;

 private:
  void apply(int routes) {
    Json resources = Json::array();
    for (int s = 0; s < 10; ++s) {
      resources.push_back(
          {{"kind", "service"},
           {"name", fmt::format("svc{}", s)},
           {"spec", {{"endpoints", Json::array({{{"address", "127.0.0.1:9201"}}})}}}});
      for (int r = 0; r < routes; ++r) {
        std::string name = fmt::format("svc{}-r{}", s, r);
        resources.push_back(
            {{"kind", "route"},
             {"name", name},
             {"spec",
              {{"match", {{"path_prefix", "/" + name}}}, {"service", fmt::format("svc{}", s)}}}});
      }
    }
    request("POST", "/v1/apply", Json{{"resources", resources}, {"reason", "bench"}}.dump(),
            [](HttpResponse) {});
  }
  void request(const std::string& method, const std::string& target, std::string body,
               Respond respond) {
    HttpRequest req;
    req.method = method;
    size_t q = target.find('?');
    req.path = target.substr(0, q);
    if (q != std::string::npos) req.query = target.substr(q + 1);
    req.body = std::move(body);
    req.authorization = "Bearer " + token_;
    api_->handle(std::move(req), std::move(respond));
  }
  void park(Watcher& w, bool wait) {
    w.answered_at = std::make_shared<std::optional<Clock::time_point>>();
    w.version = std::make_shared<std::string>();
    std::string target = fmt::format("/v1/gateway-config?gateway={}&city={}&wait={}", w.id, w.city,
                                     wait ? "300s" : "0");
    if (!w.holds.empty()) target += "&after=" + w.holds;
    request("GET", target, "", [at = w.answered_at, v = w.version](HttpResponse r) {
      *at = Clock::now();
      for (const auto& [k, val] : r.headers)
        if (k == "X-Sluice-Version") *v = val;
    });
    if (w.answered_at->has_value()) {  // answered at once: nothing to wait for
      w.holds = *w.version;
      w.parked = false;
      w.answered_at = std::make_shared<std::optional<Clock::time_point>>();
    } else {
      w.parked = true;
    }
  }

  std::unique_ptr<Store> store_ = Store::open("sqlite::memory:");
  Auth auth_{*store_, [this] { return now_; }};
  ApiOptions options_ = [] {
    ApiOptions o;
    o.revision_poll_ms = 0;
    return o;
  }();
  std::unique_ptr<Api> api_;
  std::string token_;
  std::vector<Watcher> watchers_;
};

void BM_RolloutStagePropagation(benchmark::State& state) {
  const int gateways = static_cast<int>(state.range(0));
  std::vector<std::string> errors;
  auto plan = rollout::parse_plan(
      Json::parse(R"({"stages": [{"gateways": "city=a,count=1"}, {"percent": 10},
                                  {"percent": 50}, {"city": "b"}, {"all": true}]})"),
      "rollout", errors);
  std::vector<double> all_ms, bookkeeping_ms;
  double worst_move_p99 = 0;
  size_t wrong = 0, moves = 0;
  for (auto _ : state) {
    state.PauseTiming();
    Fixture f(gateways);
    f.plan_.start("chg-bench", 1, 2);
    f.ctx_->feed->plan_changed(nullptr);
    f.park_all();
    state.ResumeTiming();
    rollout::Selection sel;
    auto stage = [&](size_t i) {
      return [&, i] {
        Clock::time_point t0 = Clock::now();
        std::vector<rollout::Candidate> known;
        for (const GatewayView& g : f.ctx_->directory->gateways(f.now_))
          known.push_back({g.id, g.city, g.zone, g.health != "stale" && g.health != "exited"});
        sel = rollout::advance(std::move(sel), plan->stages[i].select, known, "chg-bench");
        f.plan_.reach(i + 1, sel);
        bookkeeping_ms.push_back(
            std::chrono::duration<double, std::milli>(Clock::now() - t0).count());
      };
    };
    for (size_t i = 0; i < plan->stages.size(); ++i) {
      size_t unchanged = 0;
      std::vector<double> ms = f.move(stage(i), unchanged);
      wrong += unchanged;
      ++moves;
      worst_move_p99 = std::max(worst_move_p99, percentile(ms, 0.99));
      all_ms.insert(all_ms.end(), ms.begin(), ms.end());
      state.PauseTiming();
      f.park_all();
      state.ResumeTiming();
    }
    size_t unchanged = 0;
    std::vector<double> ms = f.move([&] { f.plan_.rollback(); }, unchanged);  // all back
    wrong += unchanged;
    ++moves;
    worst_move_p99 = std::max(worst_move_p99, percentile(ms, 0.99));
    all_ms.insert(all_ms.end(), ms.begin(), ms.end());
    state.PauseTiming();
    g_plan = nullptr;  // the next fixture installs its own
    state.ResumeTiming();
  }
  state.counters["moves"] = static_cast<double>(moves);
  state.counters["answers"] = static_cast<double>(all_ms.size());
  state.counters["woken_unchanged"] = static_cast<double>(wrong);  // must be 0
  state.counters["p50_ms"] = percentile(all_ms, 0.50);
  state.counters["p99_ms"] = percentile(all_ms, 0.99);
  state.counters["max_ms"] = percentile(all_ms, 1.0);
  state.counters["worst_move_p99_ms"] = worst_move_p99;  // the slowest single stage's p99
  state.counters["select_p99_ms"] = percentile(bookkeeping_ms, 0.99);
}
BENCHMARK(BM_RolloutStagePropagation)->Arg(1000)->Iterations(10)->Unit(benchmark::kMillisecond);

}  // namespace
