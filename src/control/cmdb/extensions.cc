// The parts of the CMDB that run inside its service (routes under /v1/cmdb/, periodic work):
// one line each. The reconciler adds itself here.
#include "control/cmdb/cmdb_service.h"
#include "control/cmdb/reconcile_service.h"

namespace sluice::control::cmdb {

std::span<const ExtensionFactory> extensions() {
  static constexpr ExtensionFactory kExtensions[] = {
      make_reconcile_extension,
  };
  return kExtensions;
}

}  // namespace sluice::control::cmdb
