// How `sluice ctl` prints: aligned tables, ages, shortened cells, the server's answer as JSON or
// YAML (-o), and config diffs (a line diff of each resource's YAML).
#pragma once

#include <nlohmann/json.hpp>

#include <string>
#include <vector>

#include "cli/ctl/context.h"

namespace sluice::cli::ctl {

std::string trim(const std::string& s);
std::string lower(std::string s);
// Every character from `from` on is a decimal digit (and there is at least one).
bool all_digits(const std::string& s, size_t from);

// j[key] as text ("" or `dflt` when absent or null; numbers as JSON writes them).
std::string str_of(const json& j, const char* key, const std::string& dflt = "");
std::string shorten(std::string s, size_t n = 60);
std::string ago(long long epoch_ms);    // "12s ago", "3m ago", "-" when absent
std::string until(long long epoch_ms);  // "in 7s", "-" when past or absent

// Columns separated by three spaces at least, trailing spaces trimmed, on stdout.
void print_table(const std::vector<std::string>& header,
                 const std::vector<std::vector<std::string>>& rows);
// -o json (indented) or -o yaml.
void print_output(const Args& a, const json& j);

// Config diffs as /v1/apply and /v1/versions return them ([{op, kind, name, before, after}]).
std::string change_counts(const json& diff);                    // "+1 ~2 -0"
void print_diff(const json& diff);                              // per resource, with a line diff
void print_diff_summary(const json& diff, const char* indent);  // "service/a created"

}  // namespace sluice::cli::ctl
