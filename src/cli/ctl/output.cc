#include "cli/ctl/output.h"

#include <algorithm>
#include <cctype>
#include <chrono>
#include <cstdio>
#include <sstream>

#include "cli/ctl/yaml_json.h"

namespace sluice::cli::ctl {

std::string trim(const std::string& s) {
  size_t b = 0, e = s.size();
  while (b < e && std::isspace(static_cast<unsigned char>(s[b]))) ++b;
  while (e > b && std::isspace(static_cast<unsigned char>(s[e - 1]))) --e;
  return s.substr(b, e - b);
}

std::string lower(std::string s) {
  for (auto& c : s) c = static_cast<char>(std::tolower(static_cast<unsigned char>(c)));
  return s;
}

bool all_digits(const std::string& s, size_t from) {
  if (from >= s.size()) return false;
  for (size_t i = from; i < s.size(); ++i)
    if (!std::isdigit(static_cast<unsigned char>(s[i]))) return false;
  return true;
}

std::string str_of(const json& j, const char* key, const std::string& dflt) {
  if (!j.is_object() || !j.contains(key) || j[key].is_null()) return dflt;
  const json& v = j[key];
  if (v.is_string()) return v.get<std::string>();
  return v.dump();
}

std::string shorten(std::string s, size_t n) {
  if (s.size() > n) s = s.substr(0, n - 3) + "...";
  return s;
}

namespace {

long long now_ms() {
  return std::chrono::duration_cast<std::chrono::milliseconds>(
             std::chrono::system_clock::now().time_since_epoch())
      .count();
}

}  // namespace

std::string ago(long long ms) {
  if (ms <= 0) return "-";
  long long s = (now_ms() - ms) / 1000;
  if (s < 0) s = 0;
  if (s < 120) return std::to_string(s) + "s ago";
  if (s < 7200) return std::to_string(s / 60) + "m ago";
  if (s < 172800) return std::to_string(s / 3600) + "h ago";
  return std::to_string(s / 86400) + "d ago";
}

std::string until(long long ms) {
  long long now = now_ms();
  if (ms <= now) return "-";
  return "in " + std::to_string((ms - now + 999) / 1000) + "s";
}

void print_table(const std::vector<std::string>& header,
                 const std::vector<std::vector<std::string>>& rows) {
  std::vector<size_t> width(header.size());
  for (size_t i = 0; i < header.size(); ++i) width[i] = header[i].size();
  for (const auto& row : rows)
    for (size_t i = 0; i < row.size() && i < width.size(); ++i)
      width[i] = std::max(width[i], row[i].size());
  auto line = [&](const std::vector<std::string>& cells) {
    std::string out;
    for (size_t i = 0; i < cells.size(); ++i) {
      out += cells[i];
      if (i + 1 < cells.size()) out += std::string(width[i] - cells[i].size() + 3, ' ');
    }
    while (!out.empty() && out.back() == ' ') out.pop_back();
    std::printf("%s\n", out.c_str());
  };
  line(header);
  for (const auto& row : rows) line(row);
}

void print_output(const Args& a, const json& j) {
  if (a.output == "yaml") {
    std::printf("%s", to_yaml(j).c_str());
  } else {
    std::printf("%s\n", j.dump(2).c_str());
  }
}

std::string change_counts(const json& diff) {
  int add = 0, change = 0, remove = 0;
  if (diff.is_array()) {
    for (const auto& d : diff) {
      std::string op = str_of(d, "op");
      if (op == "add") ++add;
      if (op == "change") ++change;
      if (op == "remove") ++remove;
    }
  }
  return "+" + std::to_string(add) + " ~" + std::to_string(change) + " -" + std::to_string(remove);
}

namespace {

// Line diff (longest common subsequence) of two texts, unified-style without hunks.
void print_line_diff(const std::string& a, const std::string& b) {
  auto split = [](const std::string& s) {
    std::vector<std::string> lines;
    std::istringstream in(s);
    std::string l;
    while (std::getline(in, l)) lines.push_back(l);
    return lines;
  };
  auto x = split(a), y = split(b);
  size_t n = x.size(), m = y.size();
  std::vector<std::vector<int>> lcs(n + 1, std::vector<int>(m + 1, 0));
  for (size_t i = n; i-- > 0;)
    for (size_t j = m; j-- > 0;)
      lcs[i][j] = x[i] == y[j] ? lcs[i + 1][j + 1] + 1 : std::max(lcs[i + 1][j], lcs[i][j + 1]);
  size_t i = 0, j = 0;
  while (i < n || j < m) {
    if (i < n && j < m && x[i] == y[j]) {
      std::printf("   %s\n", x[i].c_str());
      ++i, ++j;
    } else if (i < n && (j == m || lcs[i + 1][j] >= lcs[i][j + 1])) {
      std::printf("-  %s\n", x[i++].c_str());
    } else {
      std::printf("+  %s\n", y[j++].c_str());
    }
  }
}

}  // namespace

void print_diff(const json& diff) {
  if (!diff.is_array()) return;
  for (const auto& d : diff) {
    std::string op = str_of(d, "op");
    std::string id = str_of(d, "kind") + "/" + str_of(d, "name");
    const char* sign = op == "add" ? "+" : op == "remove" ? "-" : "~";
    std::printf("%s %s (%s)\n", sign, id.c_str(), op.c_str());
    std::string before = d.contains("before") && !d["before"].is_null() ? to_yaml(d["before"]) : "";
    std::string after = d.contains("after") && !d["after"].is_null() ? to_yaml(d["after"]) : "";
    print_line_diff(before, after);
  }
}

void print_diff_summary(const json& diff, const char* indent) {
  if (!diff.is_array()) return;
  for (const auto& d : diff) {
    std::string op = str_of(d, "op");
    const char* verb = op == "add" ? "created" : op == "remove" ? "deleted" : "changed";
    std::printf("%s%s/%s %s\n", indent, str_of(d, "kind").c_str(), str_of(d, "name").c_str(), verb);
  }
}

}  // namespace sluice::cli::ctl
