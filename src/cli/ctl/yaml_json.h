// YAML resource files to the JSON the control plane takes, and JSON answers back to YAML that
// reads back unchanged (`get -o yaml` | `apply -f -`). Plain scalars are read by YAML 1.2's core
// schema (10 a number, true a boolean, ~ null, 30s a string); quoted ones stay strings.
#pragma once

#include <yaml-cpp/yaml.h>
#include <nlohmann/json.hpp>

#include <string>

namespace sluice::cli::ctl {

// A plain (unquoted) scalar as YAML 1.2's core schema reads it.
nlohmann::json plain_scalar(const std::string& s);
// Converts a YAML node; errors (non-scalar or duplicate keys) name `file`:line.
bool yaml_to_json(const YAML::Node& node, const std::string& file, nlohmann::json* out,
                  std::string* error);
// JSON as YAML; strings that would read back as something else are quoted.
std::string to_yaml(const nlohmann::json& j);

}  // namespace sluice::cli::ctl
