// Releases: drives each `release` resource (spec.h) through its steps (driver.h). Every step is
// a config write through the resources service's ConfigWriter, so it is a version and a change
// record like an apply (author "release/NAME"); the state is stored after each move, so a
// restarted control plane resumes where it was. GET /v1/releases[/NAME], POST
// /v1/releases/NAME/abort|pause|resume. docs/changes.md "Canary releases" is the contract.
//
// Several control planes on one database: each follows the stored states (a sequence number per
// release, Store::put_release_state_if), and writes a state only on the sequence it read, so
// one control plane makes each move: an analysis is recorded by whichever stores it first (the
// others follow it), and a step or rollback is claimed in the stored state (retry_at_ms ahead)
// before its config write, so that the others do not make it too.
#pragma once

#include <map>
#include <memory>
#include <mutex>
#include <span>
#include <string>
#include <string_view>
#include <vector>

#include "control/migrations.h"
#include "control/releases/driver.h"
#include "control/service.h"

namespace sluice::control::releases {

std::span<const Migration> migrations(std::string_view backend);
std::unique_ptr<Service> make_service(ServiceContext& ctx);

// How often the tick looks at the releases (the router ticks every ~100 ms).
inline constexpr int64_t kDriveIntervalMs = 200;
// A move claimed by a control plane that stopped before its write is made by another after this.
inline constexpr int64_t kClaimMs = 5'000;

class ReleasesService final : public Service {
 public:
  explicit ReleasesService(ServiceContext& ctx);
  std::string_view name() const override { return "releases"; }
  std::vector<Route> routes() override;
  void tick(int64_t now) override;

 private:
  HttpResponse get_releases(const Call& c);
  HttpResponse get_release(const Call& c);
  HttpResponse post_action(const Call& c, std::string_view action);

  // Under mu_.
  // Takes every stored state whose sequence is not the one this control plane last read or wrote.
  void follow_locked();
  void adopt_locked(const std::string& name);
  void drive_locked(int64_t now);
  // Writes the route at m's weights and moves `s` on; false when the write did not commit (or
  // another control plane moved the release meanwhile).
  bool perform_locked(const std::string& name, ReleaseState& s, const ReleaseSpec& spec,
                      const Move& m, int64_t now);
  HttpResponse write_route(const std::string& name, const ReleaseSpec& spec, uint32_t percent,
                           const std::string& reason, bool emergency);
  // Stores `s` on the sequence last seen; false (and the stored state taken instead, into
  // states_[name], which `s` may be) when another control plane moved it first.
  bool save_locked(const std::string& name, const ReleaseState& s, int64_t now);
  void publish_locked(const std::string& name, const ReleaseState& s);
  std::map<std::string, nlohmann::json> release_resources();
  nlohmann::json summary_json(const std::string& name, const ReleaseState& s) const;

  ServiceContext& ctx_;
  std::mutex mu_;  // states_ and every move of a release, API actions and ticks alike
  std::map<std::string, ReleaseState> states_;
  std::map<std::string, int64_t> seqs_;  // the stored sequence each state in states_ reflects
  int64_t specs_version_ = -1;           // the version specs_ was read from
  std::map<std::string, nlohmann::json> specs_;
  int64_t last_drive_ms_ = 0;

  observability::Counter* steps_ = nullptr;
  observability::Counter* promoted_ = nullptr;
  observability::Counter* rolled_back_ = nullptr;
  observability::Counter* aborted_ = nullptr;
  observability::Counter* write_refused_ = nullptr;
  std::map<std::string, observability::Counter*> analyses_;  // by verdict
};

}  // namespace sluice::control::releases
