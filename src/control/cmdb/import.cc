#include "control/cmdb/import.h"

#include <yaml-cpp/yaml.h>

#include <algorithm>
#include <cstdint>
#include <set>

#include "config/reader.h"

namespace sluice::control::cmdb {
namespace {

// Errors in file order (line, then column); those without a place last.
void sort_by_place(std::vector<ModelError>& errors) {
  std::stable_sort(errors.begin(), errors.end(), [](const ModelError& a, const ModelError& b) {
    auto key = [](const ModelError& e) {
      return std::pair(e.at.line > 0 ? e.at.line : INT32_MAX, e.at.column);
    };
    return key(a) < key(b);
  });
}

Location mark_of(const YAML::Node& n) {
  const YAML::Mark m = n.Mark();
  if (m.line < 0) return {};
  return {m.line + 1, m.column + 1};
}

std::string describe(const YAML::Node& n) {
  return config::describe(n);
}

class YamlReader {
 public:
  YamlReader(ImportDoc& doc, std::vector<ModelError>& errors) : doc_(doc), errors_(errors) {}

  void document(const YAML::Node& root) {
    if (!root || root.IsNull()) return;
    if (!root.IsMap())
      return error(root, "",
                   "a document must be a mapping of types, cis, relations, got " + describe(root));
    std::set<std::string> seen;
    for (const auto& kv : root) {
      const std::string k = kv.first.IsScalar() ? kv.first.Scalar() : "";
      if (!seen.insert(k).second) {
        error(kv.first, "", "'" + k + "' given twice in one document");
        continue;
      }
      if (k == "types") {
        for_each(kv.second, "types", [this](const YAML::Node& n) { type(n); });
      } else if (k == "cis") {
        for_each(kv.second, "cis", [this](const YAML::Node& n) { ci(n); });
      } else if (k == "relations") {
        for_each(kv.second, "relations", [this](const YAML::Node& n) { relation(n); });
      } else {
        error(kv.first, "", "unknown key '" + k + "' (expected types, cis or relations)");
      }
    }
  }

  bool over() const { return over_; }

 private:
  template <class F>
  void for_each(const YAML::Node& list, const std::string& what, F&& f) {
    if (list.IsNull()) return;
    if (!list.IsSequence())
      return error(list, "", what + ": expected a list, got " + describe(list));
    for (const auto& item : list) {
      if (over_) return;
      f(item);
    }
  }

  void error(const YAML::Node& n, std::string subject, std::string message) {
    errors_.push_back({mark_of(n), std::move(subject), std::move(message)});
  }

  // A scalar's text; an error (and nullopt) for anything else.
  std::optional<std::string> scalar(const YAML::Node& n, const std::string& subject,
                                    const std::string& what) {
    if (!n.IsScalar()) {
      error(n, subject, what + ": expected a scalar, got " + describe(n));
      return std::nullopt;
    }
    return n.Scalar();
  }

  void ci(const YAML::Node& n) {
    if (doc_.cis.size() >= kMaxImportCis) {
      over_ = true;
      return error(n, "", "more than " + std::to_string(kMaxImportCis) + " CIs in one import");
    }
    if (!n.IsMap())
      return error(n, "", "a CI must be a mapping (type: T, attributes...), got " + describe(n));
    CiDraft d;
    d.at = mark_of(n);
    bool typed = false;
    std::vector<std::pair<std::string, YAML::Node>> rels;
    for (const auto& kv : n) {
      auto k = scalar(kv.first, "", "a key");
      if (!k) continue;
      if (*k == "type") {
        if (auto t = scalar(kv.second, "", "type")) d.type = *t, typed = true;
      } else if (*k == "relations") {
        if (!kv.second.IsMap()) {
          error(kv.second, "",
                "relations: expected a mapping of KIND: TYPE/KEY, got " + describe(kv.second));
          continue;
        }
        for (const auto& r : kv.second) {
          auto kind = scalar(r.first, "", "a relation kind");
          if (kind) rels.emplace_back(*kind, r.second);
        }
      } else {
        auto v = scalar(kv.second, "", *k);
        if (!v) continue;
        d.attributes.emplace_back(*k, *v);
        d.attribute_at.push_back(mark_of(kv.second));
      }
    }
    if (!typed) return error(n, "", "a CI needs 'type'");
    std::size_t index = doc_.cis.size();
    doc_.cis.push_back(std::move(d));
    for (auto& [kind, target] : rels) {
      std::vector<YAML::Node> targets;
      if (target.IsSequence()) {
        for (const auto& t : target) targets.push_back(t);
      } else {
        targets.push_back(target);
      }
      for (const auto& t : targets) {
        auto ref = scalar(t, "", "relations." + kind);
        if (!ref) continue;
        RelationDraft r;
        if (!split_ref(*ref, r.to_type, r.to_key)) {
          error(t, "", "relations." + kind + ": expected TYPE/KEY, got '" + *ref + "'");
          continue;
        }
        r.kind = kind;
        r.at = mark_of(t);
        pending_.push_back({index, std::move(r)});
      }
    }
  }

  void relation(const YAML::Node& n) {
    if (doc_.relations.size() >= kMaxImportRelations) {
      over_ = true;
      return error(n, "",
                   "more than " + std::to_string(kMaxImportRelations) + " relations in one import");
    }
    if (!n.IsMap())
      return error(n, "", "a relation must be a mapping {from, relation, to}, got " + describe(n));
    RelationDraft r;
    r.at = mark_of(n);
    bool from = false, kind = false, to = false;
    for (const auto& kv : n) {
      auto k = scalar(kv.first, "", "a key");
      if (!k) continue;
      auto v = scalar(kv.second, "", *k);
      if (!v) continue;
      if (*k == "from") {
        from = split_ref(*v, r.from_type, r.from_key);
        if (!from) error(kv.second, "", "from: expected TYPE/KEY, got '" + *v + "'");
      } else if (*k == "to") {
        to = split_ref(*v, r.to_type, r.to_key);
        if (!to) error(kv.second, "", "to: expected TYPE/KEY, got '" + *v + "'");
      } else if (*k == "relation") {
        r.kind = *v;
        kind = true;
      } else {
        error(kv.first, "", "unknown key '" + *k + "' (expected from, relation, to)");
      }
    }
    if (!kind) error(n, "", "a relation needs 'relation'");
    if (!from && !n["from"]) error(n, "", "a relation needs 'from'");
    if (!to && !n["to"]) error(n, "", "a relation needs 'to'");
    if (from && kind && to) doc_.relations.push_back(std::move(r));
  }

  void type(const YAML::Node& n) {
    if (doc_.types.size() >= kMaxImportTypes) {
      over_ = true;
      return error(n, "", "more than " + std::to_string(kMaxImportTypes) + " types in one import");
    }
    if (!n.IsMap())
      return error(
          n, "", "a type must be a mapping {name, key, attributes, relations}, got " + describe(n));
    TypeSpec t;
    t.at = mark_of(n);
    for (const auto& kv : n) {
      auto k = scalar(kv.first, "", "a key");
      if (!k) continue;
      const YAML::Node& v = kv.second;
      if (*k == "name") {
        if (auto s = scalar(v, "", "name")) t.name = *s;
      } else if (*k == "key") {
        if (v.IsScalar()) {
          t.key.push_back(v.Scalar());
        } else if (v.IsSequence()) {
          for (const auto& x : v)
            if (auto s = scalar(x, "", "key")) t.key.push_back(*s);
        } else {
          error(v, "", "key: expected an attribute name or a list of them");
        }
      } else if (*k == "attributes") {
        for_each(v, "attributes", [&](const YAML::Node& a) { attribute(a, t); });
      } else if (*k == "relations") {
        for_each(v, "relations", [&](const YAML::Node& r) { rule(r, t); });
      } else {
        error(kv.first, "", "unknown key '" + *k + "' (expected name, key, attributes, relations)");
      }
    }
    if (t.name.empty()) return error(n, "", "a type needs 'name'");
    doc_.types.push_back(std::move(t));
  }

  void attribute(const YAML::Node& n, TypeSpec& t) {
    if (!n.IsMap())
      return error(n, "type " + t.name, "an attribute must be a mapping {name, type, required}");
    TypeSpec::Attr a;
    a.at = mark_of(n);
    for (const auto& kv : n) {
      auto k = scalar(kv.first, "", "a key");
      if (!k) continue;
      auto v = scalar(kv.second, "type " + t.name, *k);
      if (!v) continue;
      if (*k == "name") {
        a.name = *v;
      } else if (*k == "type") {
        a.type = *v;
      } else if (*k == "required") {
        if (*v != "true" && *v != "false")
          error(kv.second, "type " + t.name, "required: expected true or false");
        a.required = *v == "true";
      } else {
        error(kv.first, "type " + t.name,
              "unknown key '" + *k + "' (expected name, type, required)");
      }
    }
    if (a.type.empty()) a.type = "string";
    if (a.name.empty()) return error(n, "type " + t.name, "an attribute needs 'name'");
    t.attributes.push_back(std::move(a));
  }

  void rule(const YAML::Node& n, TypeSpec& t) {
    if (!n.IsMap())
      return error(n, "type " + t.name, "a relation must be a mapping {kind, to, cardinality}");
    TypeSpec::Rel r;
    r.at = mark_of(n);
    for (const auto& kv : n) {
      auto k = scalar(kv.first, "", "a key");
      if (!k) continue;
      auto v = scalar(kv.second, "type " + t.name, *k);
      if (!v) continue;
      if (*k == "kind" || *k == "relation") {
        r.kind = *v;
      } else if (*k == "to") {
        r.to = *v;
      } else if (*k == "cardinality") {
        r.cardinality = *v;
      } else {
        error(kv.first, "type " + t.name,
              "unknown key '" + *k + "' (expected kind, to, cardinality)");
      }
    }
    if (r.kind.empty() || r.to.empty())
      return error(n, "type " + t.name, "a relation needs 'kind' and 'to'");
    t.relations.push_back(std::move(r));
  }

 public:
  // Relations written under a CI: they leave that CI (RelationDraft::from_draft).
  struct Pending {
    std::size_t ci;
    RelationDraft r;
  };
  std::vector<Pending> pending_;

 private:
  ImportDoc& doc_;
  std::vector<ModelError>& errors_;
  bool over_ = false;
};

}  // namespace

bool split_ref(std::string_view ref, std::string& type, std::string& key) {
  auto slash = ref.find('/');
  if (slash == std::string_view::npos || slash == 0 || slash + 1 == ref.size()) return false;
  type = std::string(ref.substr(0, slash));
  key = std::string(ref.substr(slash + 1));
  return true;
}

std::vector<ModelError> read_yaml(std::string_view text, ImportDoc& doc) {
  std::vector<ModelError> errors;
  if (text.size() > kMaxImportBytes) {
    errors.push_back({{},
                      "",
                      "the file is " + std::to_string(text.size()) + " bytes; at most " +
                          std::to_string(kMaxImportBytes)});
    return errors;
  }
  config::Diagnostics diag("import");
  auto docs = config::parse_documents(text, diag);
  if (!docs) {
    for (const auto& e : diag.take()) errors.push_back({{e.line, 0}, "", e.message});
    if (errors.empty()) errors.push_back({{}, "", "not YAML"});
    return errors;
  }
  YamlReader reader(doc, errors);
  for (const auto& d : *docs) {
    reader.document(d);
    if (reader.over()) break;
  }
  for (auto& p : reader.pending_) {
    p.r.from_draft = p.ci;
    doc.relations.push_back(std::move(p.r));
  }
  sort_by_place(errors);
  return errors;
}

// --- CSV -----------------------------------------------------------------------------------

namespace {

struct CsvField {
  std::string text;
  Location at;
};

// Splits RFC 4180 CSV into rows of fields with their line and column. Errors name them.
bool split_csv(std::string_view text, std::vector<std::vector<CsvField>>& rows,
               std::vector<ModelError>& errors) {
  std::size_t i = 0;
  int line = 1, col = 1;
  while (i < text.size()) {
    std::vector<CsvField> row;
    const int row_line = line;
    bool row_done = false;
    bool bad_row = false;
    while (!row_done) {
      CsvField f;
      f.at = {line, col};
      if (i < text.size() && text[i] == '"') {
        ++i, ++col;
        bool closed = false;
        while (i < text.size()) {
          char c = text[i];
          if (c == '"') {
            if (i + 1 < text.size() && text[i + 1] == '"') {
              f.text += '"';
              i += 2, col += 2;
              continue;
            }
            ++i, ++col;
            closed = true;
            break;
          }
          if (c == '\n') {
            ++line, col = 1;
          } else {
            ++col;
          }
          f.text += c;
          ++i;
        }
        if (!closed) {
          errors.push_back({f.at, "", "a quoted field is not closed"});
          return false;
        }
        if (i < text.size() && text[i] != ',' && text[i] != '\n' && text[i] != '\r') {
          errors.push_back({{line, col}, "", "unexpected text after a closing quote"});
          bad_row = true;
          while (i < text.size() && text[i] != ',' && text[i] != '\n') ++i, ++col;
        }
      } else {
        while (i < text.size() && text[i] != ',' && text[i] != '\n' && text[i] != '\r') {
          if (text[i] == '"' && !bad_row) {
            errors.push_back({{line, col}, "", "a quote inside an unquoted field"});
            bad_row = true;
          }
          f.text += text[i];
          ++i, ++col;
        }
      }
      row.push_back(std::move(f));
      if (i >= text.size()) {
        row_done = true;
      } else if (text[i] == ',') {
        ++i, ++col;
      } else {
        if (text[i] == '\r') ++i;
        if (i < text.size() && text[i] == '\n') ++i;
        ++line, col = 1;
        row_done = true;
      }
    }
    (void)row_line;
    const bool blank = row.size() == 1 && row[0].text.empty();
    if (!blank && !bad_row) rows.push_back(std::move(row));
    if (bad_row) rows.push_back({});  // keeps counting rows; an empty row is skipped by the caller
    if (rows.size() > kMaxImportCis + kMaxImportRelations) {
      errors.push_back({{line, 0}, "", "too many rows"});
      return false;
    }
  }
  return true;
}

constexpr std::array<std::string_view, 5> kRelationColumns = {"from_type", "from_key", "relation",
                                                              "to_type", "to_key"};

}  // namespace

std::vector<ModelError> read_csv(std::string_view text, std::string_view default_type,
                                 ImportDoc& doc) {
  std::vector<ModelError> errors;
  if (text.size() > kMaxImportBytes) {
    errors.push_back({{},
                      "",
                      "the file is " + std::to_string(text.size()) + " bytes; at most " +
                          std::to_string(kMaxImportBytes)});
    return errors;
  }
  std::vector<std::vector<CsvField>> rows;
  if (!split_csv(text, rows, errors)) return errors;
  if (rows.empty() || rows[0].empty()) {
    if (errors.empty()) errors.push_back({{1, 1}, "", "no header row"});
    return errors;
  }
  const auto& header = rows[0];
  if (header.size() > kMaxCsvColumns) {
    errors.push_back({{1, 1}, "", "more than " + std::to_string(kMaxCsvColumns) + " columns"});
    return errors;
  }
  const std::size_t syntax_errors = errors.size();
  std::set<std::string> names;
  int type_col = -1;
  for (std::size_t c = 0; c < header.size(); ++c) {
    const auto& h = header[c];
    if (h.text.empty())
      errors.push_back({h.at, "", "header: column " + std::to_string(c + 1) + " has no name"});
    if (!names.insert(h.text).second)
      errors.push_back({h.at, "", "header: '" + h.text + "' given twice"});
    if (h.text == "type") type_col = static_cast<int>(c);
  }
  bool relations = header.size() == kRelationColumns.size() &&
                   std::all_of(kRelationColumns.begin(), kRelationColumns.end(),
                               [&](std::string_view n) { return names.count(std::string(n)) > 0; });
  if (!relations && type_col < 0 && default_type.empty()) {
    errors.push_back(
        {{1, 1}, "", "header: no 'type' column, and no type given for the file (--type)"});
  }
  if (errors.size() > syntax_errors) return errors;  // the header is wrong: rows mean nothing
  for (std::size_t r = 1; r < rows.size(); ++r) {
    const auto& row = rows[r];
    if (row.empty()) continue;  // a row with a syntax error, reported already
    if (row.size() != header.size()) {
      errors.push_back({row[0].at, "",
                        "expected " + std::to_string(header.size()) +
                            " fields (as the header), got " + std::to_string(row.size())});
      continue;
    }
    if (relations) {
      if (doc.relations.size() >= kMaxImportRelations) {
        errors.push_back(
            {row[0].at, "", "more than " + std::to_string(kMaxImportRelations) + " relations"});
        break;
      }
      RelationDraft d;
      d.at = row[0].at;
      for (std::size_t c = 0; c < header.size(); ++c) {
        const std::string& h = header[c].text;
        const std::string& v = row[c].text;
        if (v.empty()) errors.push_back({row[c].at, "", h + ": empty"});
        if (h == "from_type") d.from_type = v;
        if (h == "from_key") d.from_key = v;
        if (h == "relation") d.kind = v;
        if (h == "to_type") d.to_type = v;
        if (h == "to_key") d.to_key = v;
      }
      doc.relations.push_back(std::move(d));
      continue;
    }
    if (doc.cis.size() >= kMaxImportCis) {
      errors.push_back({row[0].at, "", "more than " + std::to_string(kMaxImportCis) + " CIs"});
      break;
    }
    CiDraft d;
    d.at = row[0].at;
    d.type =
        type_col >= 0 ? row[static_cast<std::size_t>(type_col)].text : std::string(default_type);
    if (type_col >= 0 && d.type.empty()) d.type = std::string(default_type);
    if (d.type.empty()) {
      errors.push_back({row[static_cast<std::size_t>(type_col)].at, "", "type: empty"});
      continue;
    }
    for (std::size_t c = 0; c < header.size(); ++c) {
      if (static_cast<int>(c) == type_col || row[c].text.empty()) continue;
      d.attributes.emplace_back(header[c].text, row[c].text);
      d.attribute_at.push_back(row[c].at);
    }
    doc.cis.push_back(std::move(d));
  }
  sort_by_place(errors);
  return errors;
}

}  // namespace sluice::control::cmdb
