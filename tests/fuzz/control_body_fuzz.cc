// libFuzzer target for the control plane's request bodies, without sockets: the first byte picks
// a /v1 write (apply, rollback, events, stats, instances, gateway status, tokens) whose body is
// the rest, or one of the YAML loaders (the gateway's, which validates every apply, and the
// control plane's own file). The API runs on an in-memory SQLite store, so a body that passes
// parsing goes through validation and a real commit.
// Checks: every answer is given at once and is JSON (core::parse_json), a 400 lists its errors,
// no 500 (an exception escaping a handler is a bug), loaders never throw.
#include <cstdint>
#include <cstdlib>
#include <memory>
#include <optional>
#include <string>

#include "config/loader.h"
#include "control/api.h"
#include "control/auth.h"
#include "control/control_config.h"
#include "control/store.h"
#include "core/json.h"

namespace {

using sluice::control::HttpRequest;
using sluice::control::HttpResponse;

struct Target {
  const char* method;
  const char* path;
};
constexpr Target kTargets[] = {
    {"POST", "/v1/apply"},     {"POST", "/v1/rollback"},
    {"POST", "/v1/events"},    {"POST", "/v1/stats"},
    {"POST", "/v1/instances"}, {"POST", "/v1/gateways/gw-1/status"},
    {"POST", "/v1/tokens"},    {"DELETE", "/v1/resources/service/a"},
};
constexpr size_t kTargetCount = sizeof(kTargets) / sizeof(kTargets[0]);

struct World {
  int64_t now = 1'700'000'000'000;
  std::unique_ptr<sluice::control::Store> store = sluice::control::Store::open("sqlite::memory:");
  sluice::control::Auth auth{*store, [this] { return now; }};
  sluice::control::Api api{*store, auth, sluice::control::ApiOptions{}, [this] { return now; }};
  std::string token = auth.issue("fuzz", sluice::control::Role::kAdmin).token;
};

// A fresh world every kRunsPerWorld inputs: writes (versions, tokens, instances) would otherwise
// grow the store, and every apply validates the whole set.
constexpr int kRunsPerWorld = 500;

World& world() {
  static std::unique_ptr<World> w;
  static int runs = 0;
  if (!w || ++runs % kRunsPerWorld == 0) w = std::make_unique<World>();
  return *w;
}

void check_answer(const HttpResponse& r) {
  if (r.status >= 500) std::abort();
  const std::string& body = r.shared_body ? *r.shared_body : r.body;
  std::optional<nlohmann::json> j = sluice::core::parse_json(body, nullptr);
  if (!j) std::abort();
  if (r.status == 400) {
    auto it = j->find("errors");
    if (it == j->end() || !it->is_array() || it->empty()) std::abort();
  }
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  if (size < 1) return 0;
  const uint8_t mode = data[0];
  const std::string body(reinterpret_cast<const char*>(data + 1), size - 1);
  const size_t pick = mode % (kTargetCount + 2);
  if (pick == kTargetCount) {
    (void)sluice::config::load_string(body, "fuzz.yaml");  // reports errors, never throws
    return 0;
  }
  if (pick == kTargetCount + 1) {
    (void)sluice::control::load_control_string(body, "control.yaml");
    return 0;
  }
  World& w = world();
  HttpRequest req;
  req.method = kTargets[pick].method;
  req.path = kTargets[pick].path;
  if (req.method == "DELETE") {
    req.query = body.size() < 64 ? "reason=" + body : "dry_run=true";
  } else {
    req.body = body;
  }
  req.authorization = "Bearer " + w.token;
  bool answered = false;
  w.api.handle(std::move(req), [&](HttpResponse r) {
    answered = true;
    check_answer(r);
  });
  if (!answered) std::abort();
  w.now += 1000;
  return 0;
}
