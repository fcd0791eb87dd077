#include "cli/ctl/resource_files.h"

#include <yaml-cpp/yaml.h>

#include <algorithm>
#include <cerrno>
#include <cstdio>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <iostream>
#include <optional>
#include <sstream>

#include "cli/ctl/yaml_json.h"
#include "config/reader.h"

namespace sluice::cli::ctl {

namespace {

bool read_file(const std::string& path, std::string* out, std::string* error) {
  std::ifstream in(path, std::ios::binary);
  if (!in) {
    *error = "cannot read " + path + ": " + std::strerror(errno);
    return false;
  }
  std::ostringstream ss;
  ss << in.rdbuf();
  if (in.bad()) {
    *error = "cannot read " + path + ": " + std::strerror(errno);
    return false;
  }
  *out = ss.str();
  return true;
}

// spec}` (or a list of them). Problems go to `errors` as `file:line: message`.
bool load_resources_text(const std::string& path, const std::string& text, json* resources,
                         std::vector<std::string>* errors) {
  std::string error;
  // Bounded (size, depth, nodes after alias expansion) before yaml_to_json walks the documents:
  // a billion-laughs file is refused in its first pass instead of expanding in memory.
  config::Diagnostics diag(path);
  std::optional<std::vector<YAML::Node>> parsed = config::parse_documents(text, diag);
  if (!parsed) {
    for (const config::ConfigError& e : diag.take()) {
      std::string message = e.message;
      if (message.starts_with("YAML syntax error: ")) message.erase(0, 19);
      errors->push_back(path + (e.line > 0 ? ":" + std::to_string(e.line) : "") +
                        ": YAML error: " + message);
    }
    return false;
  }
  const std::vector<YAML::Node>& docs = *parsed;
  size_t before = errors->size();
  auto add = [&](const YAML::Node& node) {
    std::string where = path + ":" + std::to_string(node.Mark().line + 1);
    if (!node.IsMap()) {
      errors->push_back(where + ": a resource must be a mapping with kind, name and spec");
      return;
    }
    json j;
    if (!yaml_to_json(node, path, &j, &error)) {
      errors->push_back(error);
      return;
    }
    if (!j.contains("kind")) {
      errors->push_back(where + ": kind: required (service, route, rate_limit or units)");
      return;
    }
    resources->push_back(std::move(j));
  };
  for (const auto& doc : docs) {
    if (doc.IsNull()) continue;
    if (doc.IsSequence()) {
      for (const auto& item : doc) add(item);
    } else {
      add(doc);
    }
  }
  return errors->size() == before;
}

// Resource files are small; a bound keeps a wrong -f (a log, a device) from eating memory.
constexpr size_t kMaxResourceFileBytes = 16 * 1024 * 1024;

bool load_resources(const std::string& path, json* resources, std::vector<std::string>* errors) {
  std::string text, error;
  if (path == "-") {  // standard input
    std::ostringstream ss;
    char buf[65536];
    size_t total = 0;
    while (std::cin.read(buf, sizeof buf) || std::cin.gcount() > 0) {
      total += static_cast<size_t>(std::cin.gcount());
      if (total > kMaxResourceFileBytes) {
        errors->push_back("<stdin>: more than 16 MiB");
        return false;
      }
      ss.write(buf, std::cin.gcount());
    }
    return load_resources_text("<stdin>", ss.str(), resources, errors);
  }
  std::error_code ec;
  if (std::filesystem::is_directory(path, ec)) {
    // A directory: its *.yaml and *.yml files in name order, as one apply.
    std::vector<std::string> files;
    for (const auto& entry : std::filesystem::directory_iterator(path, ec)) {
      std::string ext = entry.path().extension().string();
      if ((ext == ".yaml" || ext == ".yml") && entry.is_regular_file(ec))
        files.push_back(entry.path().string());
    }
    if (ec) {
      errors->push_back("cannot read directory " + path + ": " + ec.message());
      return false;
    }
    if (files.empty()) {
      errors->push_back(path + ": no *.yaml or *.yml files in this directory");
      return false;
    }
    std::sort(files.begin(), files.end());
    bool ok = true;
    for (const auto& f : files) ok = load_resources(f, resources, errors) && ok;
    return ok;
  }
  if (std::filesystem::file_size(path, ec) > kMaxResourceFileBytes && !ec) {
    errors->push_back(path + ": more than 16 MiB");
    return false;
  }
  if (!read_file(path, &text, &error)) {
    errors->push_back(error);
    return false;
  }
  return load_resources_text(path, text, resources, errors);
}

}  // namespace

// Loads every -f file; returns false (after printing every problem) when any fails.
bool load_files(const Args& a, json* resources, int* rc) {
  if (a.files.empty()) {
    *rc = usage_error("-f FILE is required");
    return false;
  }
  std::vector<std::string> errors;
  bool ok = true;
  for (const auto& f : a.files) ok = load_resources(f, resources, &errors) && ok;
  if (!ok) {
    for (const auto& e : errors) std::fprintf(stderr, "sluice ctl: %s\n", e.c_str());
    *rc = kUsage;
    return false;
  }
  if (resources->empty()) {
    std::fprintf(stderr, "sluice ctl: no resources in %s\n", a.files.front().c_str());
    *rc = kUsage;
    return false;
  }
  return true;
}

}  // namespace sluice::cli::ctl
