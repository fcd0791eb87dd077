// API tokens: list, issue and revoke (admin only). Checking a token on each request is the
// router's (control/auth.h), in one place for every route.
#pragma once

#include <memory>
#include <span>
#include <string_view>
#include <vector>

#include "control/migrations.h"
#include "control/service.h"

namespace sluice::control::tokens {

std::span<const Migration> migrations(std::string_view backend);
std::unique_ptr<Service> make_service(ServiceContext& ctx);

class TokensService final : public Service {
 public:
  explicit TokensService(ServiceContext& ctx) : ctx_(ctx) {}
  std::string_view name() const override { return "tokens"; }
  std::vector<Route> routes() override;

 private:
  HttpResponse get_tokens(const Call& c);
  HttpResponse post_token(const Call& c);
  HttpResponse delete_token(const Call& c);

  ServiceContext& ctx_;
};

}  // namespace sluice::control::tokens
