// The probes domain through the API: probes are validated on apply (every error, nothing
// committed), never reach a gateway's config, are listed per city once the config names them,
// and a probe in flight does not hold the control plane's shutdown. (Runs against real
// backends, good and failing, are in tests/integration/test_probes.py.)
#include <netinet/in.h>
#include <sys/socket.h>
#include <unistd.h>

#include <chrono>

#include "unit/control/api_fixture.h"

namespace sluice::control::test {
namespace {

// A socket that listens and never accepts: a probe's connect succeeds (the backlog) and its read
// waits for an answer that never comes.
class SilentListener {
 public:
  SilentListener() {
    fd_ = ::socket(AF_INET, SOCK_STREAM, 0);
    sockaddr_in a{};
    a.sin_family = AF_INET;
    a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    EXPECT_EQ(::bind(fd_, reinterpret_cast<sockaddr*>(&a), sizeof a), 0);
    EXPECT_EQ(::listen(fd_, 16), 0);
    socklen_t len = sizeof a;
    ::getsockname(fd_, reinterpret_cast<sockaddr*>(&a), &len);
    port_ = ntohs(a.sin_port);
  }
  ~SilentListener() { ::close(fd_); }
  std::string url() const { return "http://127.0.0.1:" + std::to_string(port_); }

 private:
  int fd_ = -1;
  int port_ = 0;
};

Json probe(const std::string& name, Json spec) {
  return {{"kind", "probe"}, {"name", name}, {"spec", std::move(spec)}};
}

class ProbesServiceTest : public ApiTest {};

TEST_F(ProbesServiceTest, BadSpecsRefusedWithEveryErrorAndNothingCommitted) {
  Pending r = apply(
      {probe("p", {{"request", {{"path", "x"}}}, {"interval", "0s"}}), probe("q", Json::object())});
  ASSERT_EQ(r.status(), 400) << r.body();
  const Json errors = r.json()["errors"];
  ASSERT_EQ(errors.size(), 5u) << errors.dump(2);
  EXPECT_THAT(errors[0].get<std::string>(), HasSubstr("probe/p: spec.request.path: must start"));
  EXPECT_THAT(errors[1].get<std::string>(), HasSubstr("probe/p: spec.cities: required"));
  EXPECT_THAT(errors[2].get<std::string>(), HasSubstr("probe/p: spec.interval: must be"));
  EXPECT_THAT(errors[3].get<std::string>(), HasSubstr("probe/q: spec.request: required"));
  EXPECT_THAT(errors[4].get<std::string>(), HasSubstr("probe/q: spec.cities: required"));
  EXPECT_EQ(store_->latest_version(), 0);
  EXPECT_EQ(call("GET", "/v1/probes/p", nullptr, "viewer").status(), 404);
}

TEST_F(ProbesServiceTest, ListedPerCityNeverSentToGatewaysAndShutdownDoesNotWait) {
  SilentListener silent;
  ASSERT_EQ(apply({probe("home", {{"request", {{"path", "/"}}},
                                  {"cities", {{"a", silent.url()}, {"b", silent.url()}}},
                                  {"interval", "10s"},
                                  {"timeout", "10s"}})})
                .status(),
            200);
  Json sections = gateway_sections(store_->resources(0), {});
  EXPECT_EQ(sections.dump().find("probe"), std::string::npos) << sections.dump();
  api_.tick();  // reads the config and queues both cities' runs
  Pending list = call("GET", "/v1/probes", nullptr, "viewer");
  ASSERT_EQ(list.status(), 200) << list.body();
  const Json probes = list.json()["probes"];
  ASSERT_EQ(probes.size(), 2u) << probes.dump();
  EXPECT_EQ(probes[0]["city"], "a");
  EXPECT_EQ(probes[1]["city"], "b");
  for (const Json& t : probes) {
    EXPECT_EQ(t["probe"], "home");
    EXPECT_EQ(t["state"], "pending");  // the runs wait for an answer that never comes
    EXPECT_EQ(t["url"], silent.url());
    EXPECT_EQ(t["windows"]["5m"]["runs"], 0);
  }
  Pending one = call("GET", "/v1/probes/home", nullptr, "viewer");
  ASSERT_EQ(one.status(), 200);
  EXPECT_EQ(one.json()["spec"]["interval"], "10s");
  EXPECT_EQ(one.json()["cities"].size(), 2u);
  // Both runs are parked in a read with a 10 s deadline: stopping cancels them.
  const auto start = std::chrono::steady_clock::now();
  api_.shutdown();
  EXPECT_LT(std::chrono::steady_clock::now() - start, std::chrono::seconds(5));
}

}  // namespace
}  // namespace sluice::control::test
