// The service registry: instances register with a TTL (a lease), renew it with heartbeats and
// are removed when it runs out (an `instance_expired` event). A registration, removal or expiry
// moves the registry revision, which the fleet's long polls watch; a heartbeat does not.
#pragma once

#include <memory>
#include <span>
#include <string_view>
#include <vector>

#include "control/migrations.h"
#include "control/service.h"

namespace sluice::control::registry {

std::span<const Migration> migrations(std::string_view backend);
std::unique_ptr<Service> make_service(ServiceContext& ctx);

class RegistryService final : public Service {
 public:
  explicit RegistryService(ServiceContext& ctx);
  std::string_view name() const override { return "registry"; }
  std::vector<Route> routes() override;
  void tick(int64_t now) override;

 private:
  HttpResponse post_instance(const Call& c);
  HttpResponse put_heartbeat(const Call& c);
  HttpResponse delete_instance(const Call& c);
  HttpResponse get_instances(const Call& c);
  void sweep(int64_t now);

  ServiceContext& ctx_;
  int64_t next_sweep_ms_ = 0;  // only the ticking thread reads it
  observability::Counter* heartbeats_ = nullptr;
  observability::Counter* instances_expired_ = nullptr;
};

}  // namespace sluice::control::registry
