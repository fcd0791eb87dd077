// The CMDB domain: declared data import, reads of CIs, types and history under /v1/cmdb/
// (docs/cmdb.md is the contract). It owns the /v1/cmdb prefix, so other parts of the CMDB (the
// reconciler) add their routes and periodic work as Extensions (extensions.cc, one line each),
// built with the service's Cmdb. Other services reach the same Cmdb through ctx.cmdb.
#pragma once

#include <memory>
#include <span>
#include <string_view>
#include <vector>

#include "control/cmdb/cmdb.h"
#include "control/migrations.h"
#include "control/service.h"

namespace sluice::control::cmdb {

std::span<const Migration> migrations(std::string_view backend);
std::unique_ptr<Service> make_service(ServiceContext& ctx);

// Part of the CMDB with routes under /v1/cmdb/ and periodic work, run by the CmdbService.
class Extension {
 public:
  virtual ~Extension() = default;
  virtual std::vector<Route> routes() = 0;
  virtual void tick(int64_t now) {}
  virtual void shutdown() {}
};
using ExtensionFactory = std::unique_ptr<Extension> (*)(ServiceContext& ctx, Cmdb& cmdb);
// Every extension, in the order their routes are added and their ticks run (extensions.cc).
std::span<const ExtensionFactory> extensions();

inline constexpr int64_t kDefaultCiLimit = 10'000;
inline constexpr int64_t kMaxCiLimit = 200'000;
inline constexpr int64_t kDefaultHistoryLimit = 100;
inline constexpr int64_t kMaxHistoryLimit = 10'000;

class CmdbService final : public Service {
 public:
  explicit CmdbService(ServiceContext& ctx);
  std::string_view name() const override { return "cmdb"; }
  std::vector<Route> routes() override;
  void tick(int64_t now) override;
  void shutdown() override;

  Cmdb& cmdb() { return cmdb_; }

 private:
  HttpResponse post_import(const Call& c);
  HttpResponse get_cis(const Call& c);
  HttpResponse get_ci(const Call& c);
  HttpResponse get_history(const Call& c);
  HttpResponse get_types(const Call& c);

  ServiceContext& ctx_;
  Cmdb cmdb_;
  std::vector<std::unique_ptr<Extension>> extensions_;
  observability::Counter* imports_ = nullptr;
  observability::Counter* refused_ = nullptr;
};

// JSON of a CI: {"type","key","attributes":{NAME:[{"value","source","last_seen_ms"}]},
// "relations":[{"relation","to","source","last_seen_ms"}]} and, with `incoming`, "in":[...]
// with "from".
nlohmann::json ci_json(const Graph& g, CiId id, bool incoming);
nlohmann::json types_json(const Schema& s);

}  // namespace sluice::control::cmdb
