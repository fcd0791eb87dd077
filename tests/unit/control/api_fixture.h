// The control plane's API driven as the server drives it (Api::handle), on an in-memory store
// with a manual clock: the fixture every service's tests share (tests/unit/control/<domain>/).
#pragma once

#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include <atomic>
#include <memory>
#include <optional>
#include <string>
#include <thread>
#include <vector>

#include "control/api.h"
#include "control/validate.h"

namespace sluice::control::test {

using ::testing::HasSubstr;
using Json = nlohmann::json;

inline constexpr int64_t kStart = 1'700'000'000'000;  // a minute boundary plus 20 s

// A request's answer, possibly given later (parked long polls).
struct Pending {
  std::shared_ptr<std::optional<HttpResponse>> slot =
      std::make_shared<std::optional<HttpResponse>>();
  bool answered() const { return slot->has_value(); }
  const HttpResponse& get() const { return **slot; }
  int status() const { return (*slot)->status; }
  const std::string& body() const {
    return (*slot)->shared_body ? *(*slot)->shared_body : (*slot)->body;
  }
  Json json() const { return Json::parse(body()); }
};

class ApiTest : public ::testing::Test {
 protected:
  ApiTest() {
    admin_ = auth_.issue("alice", Role::kAdmin).token;
    operator_ = auth_.issue("deployer", Role::kOperator).token;
    viewer_ = auth_.issue("grafana", Role::kViewer).token;
  }

  Pending send(const std::string& method, const std::string& target, const std::string& body = {},
               const std::string& token = "op") {
    HttpRequest req;
    req.method = method;
    size_t q = target.find('?');
    req.path = target.substr(0, q);
    if (q != std::string::npos) req.query = target.substr(q + 1);
    req.body = body;
    const std::string& t = token == "op"       ? operator_
                           : token == "admin"  ? admin_
                           : token == "viewer" ? viewer_
                                               : token;
    if (!t.empty()) req.authorization = "Bearer " + t;
    Pending p;
    api_.handle(std::move(req), [slot = p.slot](HttpResponse r) { *slot = std::move(r); });
    return p;
  }

  // A synchronous call: the answer must come at once.
  Pending call(const std::string& method, const std::string& target, const Json& body = nullptr,
               const std::string& token = "op") {
    Pending p = send(method, target, body.is_null() ? "" : body.dump(), token);
    EXPECT_TRUE(p.answered()) << method << " " << target;
    return p;
  }

  // A vector, not a Json: `{x}` with one Json would copy x instead of making a list.
  Pending apply(const std::vector<Json>& resources, const std::string& reason = "test") {
    return call("POST", "/v1/apply", {{"resources", resources}, {"reason", reason}});
  }

  void advance(int64_t ms) { now_ += ms; }

  static Json service(const std::string& name, Json spec = Json::object()) {
    return {{"kind", "service"}, {"name", name}, {"spec", std::move(spec)}};
  }
  static Json route(const std::string& name, const std::string& prefix, const std::string& svc) {
    return {{"kind", "route"},
            {"name", name},
            {"spec", {{"match", {{"path_prefix", prefix}}}, {"service", svc}}}};
  }
  static Json static_service(const std::string& name, const std::string& address) {
    return service(name, {{"endpoints", Json::array({{{"address", address}}})}});
  }
  static Json instance(const std::string& service, const std::string& id,
                       const std::string& address, int64_t ttl_ms = 3000) {
    return {{"service", service}, {"id", id},     {"address", address},
            {"city", "a"},        {"zone", "a1"}, {"ttl_ms", ttl_ms}};
  }

  int64_t now_ = kStart;
  std::unique_ptr<Store> store_ = Store::open("sqlite::memory:");
  Auth auth_{*store_, [this] { return now_; }};
  ApiOptions options_ = [] {
    ApiOptions o;
    o.revision_poll_ms = 0;
    return o;
  }();
  Api api_{*store_, auth_, options_, [this] { return now_; }};
  std::string admin_, operator_, viewer_;
};

}  // namespace sluice::control::test
