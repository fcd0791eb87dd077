// The control plane's domain services, in the order they are built, migrated, ticked and shut
// down. A new domain is a folder src/control/<domain>/ (its service, its migrations, tests in
// tests/unit/control/<domain>/) plus one line in domains.cc.
#pragma once

#include <memory>
#include <span>
#include <string_view>

#include "control/migrations.h"
#include "control/service.h"

namespace sluice::control {

struct Domain {
  std::string_view name;  // recorded in domain_migrations; never rename
  std::span<const Migration> (*migrations)(std::string_view backend);  // "sqlite" | "postgres"
  std::unique_ptr<Service> (*make)(ServiceContext& ctx);
};

std::span<const Domain> domains();

}  // namespace sluice::control
