#include "control/tokens/tokens_service.h"

#include <fmt/format.h>

#include "control/rest.h"
#include "control/validate.h"
#include "core/log.h"

namespace sluice::control::tokens {
namespace {

using Json = nlohmann::json;

Json token_json(const TokenRecord& t) {
  return Json{{"id", t.id}, {"name", t.name}, {"role", t.role}, {"created_ms", t.created_ms}};
}

}  // namespace

std::unique_ptr<Service> make_service(ServiceContext& ctx) {
  return std::make_unique<TokensService>(ctx);
}

std::vector<Route> TokensService::routes() {
  auto bind = [this](auto fn) { return member_route(this, fn); };
  using S = TokensService;
  return {
      {"GET", {"v1", "tokens"}, Role::kAdmin, bind(&S::get_tokens)},
      {"POST", {"v1", "tokens"}, Role::kAdmin, bind(&S::post_token)},
      {"DELETE", {"v1", "tokens", "{}"}, Role::kAdmin, bind(&S::delete_token)},
  };
}

HttpResponse TokensService::get_tokens(const Call&) {
  Json out = Json::array();
  for (const TokenRecord& t : ctx_.store.tokens()) out.push_back(token_json(t));
  return json_response(200, out);
}

HttpResponse TokensService::post_token(const Call& c) {
  HttpResponse bad;
  auto body = parse_body(c.req.body, bad);
  if (!body) return bad;
  std::vector<std::string> errors;
  Fields f(*body, "", errors, {"name", "role"});
  auto name = f.string("name", true);
  if (name && !is_valid_name(*name)) f.error("name", "must be letters, digits, '_', '.' and '-'");
  std::optional<Role> role;
  if (auto r = f.string("role", true)) {
    role = parse_role(*r);
    if (!role) f.error("role", fmt::format("expected viewer, operator or admin, got '{}'", *r));
  }
  if (!errors.empty()) return error_response(400, errors.front(), std::move(errors));
  IssuedToken t = ctx_.auth.issue(*name, *role);
  Json j = token_json(t.record);
  j["token"] = t.token;
  core::log_info("control: token {} ({}, {}) issued by {}", t.record.id, *name, role_name(*role),
                 c.who.name);
  return json_response(201, j);
}

HttpResponse TokensService::delete_token(const Call& c) {
  if (c.params[0] == c.who.token_id)
    return error_response(400, "a token cannot revoke itself; use another admin token");
  if (!ctx_.auth.revoke(c.params[0]))
    return error_response(404, fmt::format("no token {}", c.params[0]));
  return json_response(200, {{"id", c.params[0]}, {"removed", true}});
}

}  // namespace sluice::control::tokens
