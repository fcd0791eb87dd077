#include "control/domains.h"

#include <array>

#include "control/changes/changes_service.h"
#include "control/cmdb/cmdb_service.h"
#include "control/fleet/fleet_service.h"
#include "control/probes/probes_service.h"
#include "control/registry/registry_service.h"
#include "control/releases/releases_service.h"
#include "control/resources/resources_service.h"
#include "control/slo/slo_service.h"
#include "control/stats/stats_service.h"
#include "control/tokens/tokens_service.h"

namespace sluice::control {

std::span<const Domain> domains() {
  // One line per domain. Order: ticks and shutdown run in it (the fleet answers its parked polls
  // before stats write their last rollups).
  static constexpr std::array<Domain, 10> kDomains = {{
      {"resources", resources::migrations, resources::make_service},
      {"registry", registry::migrations, registry::make_service},
      {"fleet", fleet::migrations, fleet::make_service},
      {"stats", stats::migrations, stats::make_service},
      {"tokens", tokens::migrations, tokens::make_service},
      {"changes", changes::migrations, changes::make_service},
      {"releases", releases::migrations, releases::make_service},
      {"probes", probes::migrations, probes::make_service},
      {"cmdb", cmdb::migrations, cmdb::make_service},
      {"slo", slo::migrations, slo::make_service},
  }};
  return kDomains;
}

}  // namespace sluice::control
