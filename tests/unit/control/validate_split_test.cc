// Routes with a weighted split (`services:`) through the control plane's validator, which is the
// gateway loader: `sluice ctl apply` accepts what gateways accept and refuses the rest, naming
// the resource and the key.
#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include "control/validate.h"

namespace sluice::control {
namespace {

using ::testing::ElementsAre;
using ::testing::IsEmpty;
using Json = nlohmann::json;

std::vector<Resource> with_route(Json route_spec) {
  return {
      Resource{"service", "accounts", {{"endpoints", {{{"address", "127.0.0.1:9101"}}}}}},
      Resource{"service", "accounts-canary", Json::object()},  // endpoints from the registry
      Resource{"route", "accounts-api", std::move(route_spec)},
  };
}

TEST(ValidateSplit, ARouteWithServicesApplies) {
  Json spec = {{"match", {{"path_prefix", "/api/accounts"}}},
               {"services",
                {{{"name", "accounts"}, {"weight", 95}},
                 {{"name", "accounts-canary"}, {"weight", 5}, {"canary", true}}}},
               {"split", {{"sticky_header", "x-customer-id"}}}};
  EXPECT_THAT(validate_resources(with_route(spec)), IsEmpty());
}

TEST(ValidateSplit, AnUnknownServiceIsRefusedNamingIt) {
  Json spec = {
      {"services",
       {{{"name", "accounts"}, {"weight", 90}}, {{"name", "acounts-canary"}, {"weight", 10}}}}};
  EXPECT_THAT(validate_resources(with_route(spec)),
              ElementsAre("route/accounts-api: spec.services[1].name: no service named "
                          "'acounts-canary' (did you mean 'accounts-canary'?)"));
}

TEST(ValidateSplit, AllWeightsZeroAndBothKeysAreRefused) {
  Json zero = {{"services", {{{"name", "accounts"}, {"weight", 0}}}}};
  EXPECT_THAT(validate_resources(with_route(zero)),
              ElementsAre("route/accounts-api: spec.services: at least one service needs a "
                          "weight above 0 (the weights are all 0)"));
  Json both = {{"service", "accounts"}, {"services", {{{"name", "accounts"}, {"weight", 1}}}}};
  EXPECT_THAT(validate_resources(with_route(both)),
              ElementsAre("route/accounts-api: spec.services: use either 'service' or 'services' "
                          "(a weighted split), not both"));
}

}  // namespace
}  // namespace sluice::control
