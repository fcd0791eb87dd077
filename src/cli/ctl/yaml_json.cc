#include "cli/ctl/yaml_json.h"

#include <algorithm>
#include <cctype>
#include <cerrno>
#include <cmath>
#include <cstdlib>

#include "cli/ctl/output.h"

namespace sluice::cli::ctl {

using nlohmann::json;

// A plain (unquoted) scalar as YAML 1.2's core schema reads it.
json plain_scalar(const std::string& s) {
  if (s.empty() || s == "~" || s == "null" || s == "Null" || s == "NULL") return nullptr;
  if (s == "true" || s == "True" || s == "TRUE") return true;
  if (s == "false" || s == "False" || s == "FALSE") return false;
  size_t digits_from = (s[0] == '-' || s[0] == '+') ? 1 : 0;
  if (all_digits(s, digits_from)) {
    errno = 0;
    char* end = nullptr;
    long long v = std::strtoll(s.c_str(), &end, 10);
    if (errno == 0 && end && *end == '\0') return v;
    return std::strtod(s.c_str(), nullptr);
  }
  if (s.size() > 2 && s[0] == '0' && (s[1] == 'x' || s[1] == 'X')) {
    bool hex = std::all_of(s.begin() + 2, s.end(),
                           [](char c) { return std::isxdigit(static_cast<unsigned char>(c)); });
    if (hex && s.size() <= 17) return static_cast<long long>(std::strtoull(s.c_str(), nullptr, 16));
  }
  if (s == ".inf" || s == "+.inf" || s == ".nan") return s;  // not JSON numbers: keep the text
  // Floats: [-+]? ( \. [0-9]+ | [0-9]+ ( \. [0-9]* )? ) ( [eE] [-+]? [0-9]+ )?
  {
    size_t i = digits_from;
    size_t int_digits = 0, frac_digits = 0;
    while (i < s.size() && std::isdigit(static_cast<unsigned char>(s[i]))) ++i, ++int_digits;
    bool dot = false;
    if (i < s.size() && s[i] == '.') {
      dot = true;
      ++i;
      while (i < s.size() && std::isdigit(static_cast<unsigned char>(s[i]))) ++i, ++frac_digits;
    }
    bool ok = int_digits + frac_digits > 0;
    bool exp = false;
    if (ok && i < s.size() && (s[i] == 'e' || s[i] == 'E')) {
      exp = true;
      ++i;
      if (i < s.size() && (s[i] == '-' || s[i] == '+')) ++i;
      ok = all_digits(s, i);
      if (ok) i = s.size();
    }
    if (ok && i == s.size() && (dot || exp)) {
      double d = std::strtod(s.c_str(), nullptr);
      if (std::isfinite(d)) return d;
    }
  }
  return s;
}

// Converts a YAML node; `where` names the place for errors (file:line).
bool yaml_to_json(const YAML::Node& node, const std::string& file, json* out, std::string* error) {
  switch (node.Type()) {
    case YAML::NodeType::Null:
    case YAML::NodeType::Undefined:
      *out = nullptr;
      return true;
    case YAML::NodeType::Scalar:
      // yaml-cpp tags quoted (and block) scalars "!", plain ones "?".
      if (node.Tag() == "!" || node.Tag() == "tag:yaml.org,2002:str" || node.Tag() == "!!str") {
        *out = node.Scalar();
      } else {
        *out = plain_scalar(node.Scalar());
      }
      return true;
    case YAML::NodeType::Sequence: {
      *out = json::array();
      for (const auto& item : node) {
        json j;
        if (!yaml_to_json(item, file, &j, error)) return false;
        out->push_back(std::move(j));
      }
      return true;
    }
    case YAML::NodeType::Map: {
      *out = json::object();
      for (const auto& kv : node) {
        if (!kv.first.IsScalar()) {
          *error = file + ":" + std::to_string(kv.first.Mark().line + 1) +
                   ": keys must be plain strings";
          return false;
        }
        std::string key = kv.first.Scalar();
        if (out->contains(key)) {
          *error = file + ":" + std::to_string(kv.first.Mark().line + 1) + ": duplicate key '" +
                   key + "'";
          return false;
        }
        json j;
        if (!yaml_to_json(kv.second, file, &j, error)) return false;
        (*out)[key] = std::move(j);
      }
      return true;
    }
  }
  *out = nullptr;
  return true;
}

namespace {

bool looks_non_string(const std::string& s) {
  if (s.empty()) return true;
  if (!plain_scalar(s).is_string()) return true;
  if (s != trim(s)) return true;
  static const std::string special = "-?:,[]{}#&*!|>'\"%@`";
  if (special.find(s[0]) != std::string::npos) return true;
  if (s.find(": ") != std::string::npos || s.find(" #") != std::string::npos) return true;
  if (s.find('\n') != std::string::npos || s.find('\t') != std::string::npos) return true;
  if (s.back() == ':') return true;
  if (s == "yes" || s == "no" || s == "on" || s == "off" || s == "Yes" || s == "No") return true;
  return false;
}

void emit_yaml(YAML::Emitter& out, const json& j) {
  switch (j.type()) {
    case json::value_t::object:
      out << YAML::BeginMap;
      for (auto it = j.begin(); it != j.end(); ++it) {
        out << YAML::Key << it.key() << YAML::Value;
        emit_yaml(out, it.value());
      }
      out << YAML::EndMap;
      break;
    case json::value_t::array:
      out << YAML::BeginSeq;
      for (const auto& v : j) emit_yaml(out, v);
      out << YAML::EndSeq;
      break;
    case json::value_t::string: {
      const auto& s = j.get_ref<const std::string&>();
      if (looks_non_string(s)) {
        out << YAML::DoubleQuoted << s;
      } else {
        out << s;
      }
      break;
    }
    case json::value_t::null:
      out << YAML::Null;
      break;
    default:
      out << j.dump();  // numbers and booleans as JSON writes them
  }
}

}  // namespace

std::string to_yaml(const json& j) {
  YAML::Emitter out;
  out.SetIndent(2);
  emit_yaml(out, j);
  std::string s = out.c_str();
  if (s.empty() || s.back() != '\n') s.push_back('\n');
  return s;
}

}  // namespace sluice::cli::ctl
