// The worked example of docs/architecture.md ("Adding a control-plane domain"): a `notes` domain
// as one folder's worth of code plus one registration line, here registered for the test only.
// It shows what the router gives a domain for free (prefix dispatch, tokens and roles, error
// mapping, response counts) and that its tables come from its own migration list.
#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include <array>
#include <mutex>
#include <vector>

#include "control/api.h"
#include "control/rest.h"

namespace sluice::control {
namespace {

using ::testing::HasSubstr;
using Json = nlohmann::json;

// ------------------------------------------------------------------ src/control/notes/ would hold

namespace notes {

constexpr std::array<Migration, 1> kSteps = {{{1, "notes",
                                               "CREATE TABLE notes (at_ms BIGINT NOT NULL,"
                                               " text TEXT NOT NULL);"}}};

std::span<const Migration> migrations(std::string_view) {
  return kSteps;
}

class NotesService final : public Service {
 public:
  explicit NotesService(ServiceContext& ctx) : ctx_(ctx) {}
  std::string_view name() const override { return "notes"; }
  std::vector<Route> routes() override {
    return {
        {"GET",
         {"v1", "notes"},
         Role::kViewer,
         [this](const Call&) -> std::optional<HttpResponse> {
           std::lock_guard lock(mu_);
           return json_response(200, {{"notes", notes_}});
         }},
        {"POST",
         {"v1", "notes"},
         Role::kOperator,
         [this](const Call& c) -> std::optional<HttpResponse> {
           HttpResponse bad;
           auto body = parse_body(c.req.body, bad);
           if (!body) return bad;
           std::vector<std::string> errors;
           Fields f(*body, "", errors, {"text"});
           auto text = f.string("text", true);
           if (!errors.empty()) return error_response(400, errors.front(), errors);
           std::lock_guard lock(mu_);
           notes_.push_back({{"text", *text}, {"by", c.who.name}, {"at_ms", c.now}});
           return json_response(201, notes_.back());
         }},
        {"GET",
         {"v1", "notes", "fail"},
         Role::kViewer,
         [](const Call&) -> std::optional<HttpResponse> { throw StoreError("disk on fire"); }},
    };
  }

 private:
  ServiceContext& ctx_;
  std::mutex mu_;
  std::vector<Json> notes_;
};

std::unique_ptr<Service> make_service(ServiceContext& ctx) {
  return std::make_unique<NotesService>(ctx);
}

// A careless domain that claims a prefix someone else owns.
std::unique_ptr<Service> make_squatter(ServiceContext& ctx) {
  struct Squatter final : Service {
    std::string_view name() const override { return "squatter"; }
    std::vector<Route> routes() override {
      return {{"GET",
               {"v1", "resources", "mine"},
               Role::kViewer,
               [](const Call&) -> std::optional<HttpResponse> { return std::nullopt; }}};
    }
  };
  return std::make_unique<Squatter>();
}

}  // namespace notes

// ------------------------------------------------------------------ registration

// domains() plus the one line the example adds.
std::vector<Domain> with(Domain extra) {
  std::vector<Domain> out(domains().begin(), domains().end());
  out.push_back(extra);
  return out;
}

std::vector<DomainSteps> steps_of(const std::vector<Domain>& list) {
  std::vector<DomainSteps> out;
  for (const Domain& d : list) out.push_back({d.name, d.migrations("sqlite")});
  return out;
}

class ExampleDomainTest : public ::testing::Test {
 protected:
  ExampleDomainTest() {
    admin_ = auth_.issue("alice", Role::kAdmin).token;
    viewer_ = auth_.issue("grafana", Role::kViewer).token;
  }

  HttpResponse call(const std::string& method, const std::string& path, const std::string& token,
                    const std::string& body = {}) {
    HttpRequest req;
    req.method = method;
    req.path = path;
    req.body = body;
    if (!token.empty()) req.authorization = "Bearer " + token;
    std::optional<HttpResponse> out;
    api_.handle(std::move(req), [&out](HttpResponse r) { out = std::move(r); });
    EXPECT_TRUE(out.has_value());
    return out.value_or(HttpResponse{});
  }

  int64_t now_ = 1'700'000'000'000;
  std::vector<Domain> domains_ = with({"notes", notes::migrations, notes::make_service});
  std::unique_ptr<Store> store_ = [this] {
    auto s = detail::open_store(detail::connect("sqlite::memory:"), steps_of(domains_));
    s->migrate();  // what Store::open does with the built-in list
    return s;
  }();
  Auth auth_{*store_, [this] { return now_; }};
  Api api_{*store_, auth_, ApiOptions{}, [this] { return now_; }, domains_};
  std::string admin_, viewer_;
};

TEST_F(ExampleDomainTest, ItsTablesComeFromItsOwnMigrationList) {
  EXPECT_EQ(store_->domain_versions().at("notes"), 1);
  EXPECT_EQ(store_->domain_versions().at("resources"), 1);  // the others are untouched
}

TEST_F(ExampleDomainTest, TheRouterDispatchesAuthenticatesAndMapsErrors) {
  EXPECT_EQ(call("GET", "/v1/notes", "").status, 401);
  EXPECT_EQ(call("POST", "/v1/notes", viewer_, R"({"text":"x"})").status, 403);
  HttpResponse r = call("POST", "/v1/notes", admin_, R"({"text":"city b drill at 10:00"})");
  EXPECT_EQ(r.status, 201) << r.body;
  EXPECT_EQ(Json::parse(r.body)["by"], "alice");
  r = call("GET", "/v1/notes", viewer_);
  EXPECT_EQ(r.status, 200);
  EXPECT_EQ(Json::parse(r.body)["notes"].size(), 1u);
  // The shared error shapes: every problem listed, a 405 with Allow, a store failure as 503.
  r = call("POST", "/v1/notes", admin_, R"({"txt":1})");
  EXPECT_EQ(r.status, 400);
  EXPECT_THAT(r.body, HasSubstr("txt: unknown key"));
  EXPECT_THAT(r.body, HasSubstr("text: required"));
  r = call("DELETE", "/v1/notes", admin_);
  EXPECT_EQ(r.status, 405);
  EXPECT_THAT(r.body, HasSubstr("use GET, POST"));
  r = call("GET", "/v1/notes/fail", viewer_);
  EXPECT_EQ(r.status, 503);
  EXPECT_THAT(r.body, HasSubstr("store unavailable: disk on fire"));
  // The built-in domains still answer next to it.
  EXPECT_EQ(call("GET", "/v1/resources", viewer_).status, 200);
  EXPECT_THAT(api_.metrics().expose(), HasSubstr("sluice_control_store_errors_total 1"));
}

TEST_F(ExampleDomainTest, APrefixHasOneOwner) {
  auto list = with({"squatter", notes::migrations, notes::make_squatter});
  try {
    Api other(
        *store_, auth_, ApiOptions{}, [this] { return now_; }, list);
    FAIL() << "two owners of /v1/resources were accepted";
  } catch (const std::logic_error& e) {
    EXPECT_THAT(e.what(), HasSubstr("path prefix /v1/resources claimed by resources and squatter"));
  }
}

}  // namespace
}  // namespace sluice::control
