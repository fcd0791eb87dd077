// The resources of `apply -f` / `diff -f`: YAML files, directories of them, or standard input,
// each bounded (16 MiB; YAML size, depth and alias expansion as config/reader.h bounds them).
#pragma once

#include <nlohmann/json.hpp>

#include "cli/ctl/context.h"

namespace sluice::cli::ctl {

// Loads every -f of `a` into `resources` (a JSON array of {kind, name, spec}). On any problem
// prints every one on stderr (file:line: ...), sets *rc to kUsage and returns false.
bool load_files(const Args& a, nlohmann::json* resources, int* rc);

}  // namespace sluice::cli::ctl
