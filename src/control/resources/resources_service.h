// Resources and versions: the versioned resource set ({kind, name, spec}), apply, delete, the
// version history and rollback. Config writes through one control plane are serialised by this
// service's own lock; races with other control planes on the same database are redone.
#pragma once

#include <functional>
#include <memory>
#include <mutex>
#include <optional>
#include <span>
#include <string>
#include <string_view>
#include <vector>

#include <nlohmann/json.hpp>

#include "control/migrations.h"
#include "control/service.h"

namespace sluice::control {

// [{op: add|change|remove, kind, name, before?, after?}] sorted by kind, name.
nlohmann::json resource_diff(const std::vector<Resource>& before,
                             const std::vector<Resource>& after);

namespace resources {

std::span<const Migration> migrations(std::string_view backend);
std::unique_ptr<Service> make_service(ServiceContext& ctx);

// One config write: what apply, delete and rollback have in common.
struct ConfigWrite {
  std::string author;
  std::string reason;               // required unless dry_run
  std::optional<int64_t> expected;  // expected_version: 409 unless the latest is this one
  bool dry_run = false;
  // Builds the new set from the current one; nullopt answers 404 with `missing`.
  std::function<std::optional<std::vector<Resource>>(const std::vector<Resource>&)> make_next;
  std::string missing;
  // For the change record (control/changes/): what kind of write, whether it skips approval.
  std::string operation;
  bool emergency = false;
  int64_t target_version = 0;  // rollback
};

class ResourcesService final : public Service, public ConfigWriter {
 public:
  explicit ResourcesService(ServiceContext& ctx);
  std::string_view name() const override { return "resources"; }
  std::vector<Route> routes() override;
  HttpResponse write(const ConfigEdit& e, Deferred* after) override;

 private:
  HttpResponse get_resources(const Call& c);
  HttpResponse get_resource(const Call& c);
  HttpResponse post_apply(const Call& c);
  HttpResponse delete_resource(const Call& c);
  HttpResponse get_versions(const Call& c);
  HttpResponse get_version(const Call& c);
  HttpResponse post_rollback(const Call& c);
  // Commits a new resource set (shared by apply, delete and rollback): validates, diffs, honours
  // dry_run and expected_version, retries lost races when no version was expected.
  HttpResponse write_config(Deferred* after, const ConfigWrite& w);

  ServiceContext& ctx_;
  // Config writes through this control plane, one at a time: read, validate, commit.
  std::mutex write_mu_;

  observability::Counter* versions_written_ = nullptr;
  observability::Counter* apply_rejected_ = nullptr;
  observability::Counter* conflicts_ = nullptr;
  observability::Counter* write_redos_ = nullptr;
};

}  // namespace resources
}  // namespace sluice::control
