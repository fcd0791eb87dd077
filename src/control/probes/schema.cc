// The probes domain has no tables: results live in memory (probes_service.h). Its list is here,
// empty, so that a first table is added as step 1 like every domain's.
#include <span>

#include "control/probes/probes_service.h"
#include "control/store.h"

namespace sluice::control::probes {

std::span<const Migration> migrations(std::string_view backend) {
  if (backend != "sqlite" && backend != "postgres")
    throw StoreError("probes: unknown backend " + std::string(backend));
  return {};
}

}  // namespace sluice::control::probes
