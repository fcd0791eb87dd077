#include "control/cmdb/model.h"

#include <algorithm>
#include <charconv>
#include <cmath>
#include <set>
#include <utility>

namespace sluice::control::cmdb {

namespace {

constexpr std::array<std::string_view, 4> kValueTypeNames = {"string", "int", "number", "bool"};
constexpr std::array<std::string_view, kSourceCount> kSourceNames = {"declared", "registry",
                                                                     "gateway", "traffic", "agent"};
constexpr std::array<std::string_view, kRelationKindCount> kRelationNames = {
    "belongs_to", "runs_on", "located_in", "routes_to", "depends_on", "serves"};
constexpr std::array<std::string_view, 3> kCardinalityNames = {"many", "at_most_one",
                                                               "exactly_one"};

template <typename E, std::size_t N>
std::optional<E> parse_enum(const std::array<std::string_view, N>& names, std::string_view s) {
  for (std::size_t i = 0; i < N; ++i) {
    if (names[i] == s) return static_cast<E>(i);
  }
  return std::nullopt;
}

// Names of types, attributes: [a-z][a-z0-9_]*, bounded.
bool valid_name(std::string_view s) {
  if (s.empty() || s.size() > kMaxNameBytes) return false;
  if (s[0] < 'a' || s[0] > 'z') return false;
  return std::all_of(s.begin(), s.end(), [](char c) {
    return (c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') || c == '_';
  });
}

struct BuiltinType {
  std::string_view name;
  std::vector<std::pair<std::string_view, std::string_view>> attrs;  // name, type ('!' = required)
};

}  // namespace

bool valid_text(std::string_view s) {
  if (s.size() > kMaxValueBytes) return false;
  return std::none_of(s.begin(), s.end(), [](char c) {
    auto u = static_cast<unsigned char>(c);
    return (u < 0x20 && c != '\t' && c != '\n' && c != '\r') || u == 0x7f;
  });
}

bool valid_key_part(std::string_view s) {
  if (s.empty() || s.size() > kMaxKeyBytes) return false;
  return std::all_of(s.begin(), s.end(), [](char c) {
    auto u = static_cast<unsigned char>(c);
    return u > 0x20 && u < 0x7f && c != ',' && c != '/' && c != '?' && c != '#' && c != '%';
  });
}

std::string_view to_string(ValueType t) {
  return kValueTypeNames[static_cast<std::size_t>(t)];
}
std::optional<ValueType> parse_value_type(std::string_view s) {
  return parse_enum<ValueType>(kValueTypeNames, s);
}
std::string_view to_string(Source s) {
  return kSourceNames[static_cast<std::size_t>(s)];
}
std::optional<Source> parse_source(std::string_view s) {
  return parse_enum<Source>(kSourceNames, s);
}
std::string_view to_string(RelationKind k) {
  return kRelationNames[static_cast<std::size_t>(k)];
}
std::optional<RelationKind> parse_relation_kind(std::string_view s) {
  return parse_enum<RelationKind>(kRelationNames, s);
}
std::string_view to_string(Cardinality c) {
  return kCardinalityNames[static_cast<std::size_t>(c)];
}
std::optional<Cardinality> parse_cardinality(std::string_view s) {
  return parse_enum<Cardinality>(kCardinalityNames, s);
}

ValueType type_of(const Value& v) {
  return static_cast<ValueType>(v.index());
}

std::string to_text(const Value& v) {
  switch (type_of(v)) {
    case ValueType::kString:
      return std::get<std::string>(v);
    case ValueType::kInt:
      return std::to_string(std::get<std::int64_t>(v));
    case ValueType::kNumber: {
      char buf[64];
      auto r = std::to_chars(buf, buf + sizeof buf, std::get<double>(v));
      return std::string(buf, r.ptr);
    }
    case ValueType::kBool:
      return std::get<bool>(v) ? "true" : "false";
  }
  return {};
}

std::optional<Value> parse_value(ValueType t, std::string_view text) {
  switch (t) {
    case ValueType::kString:
      if (!valid_text(text)) return std::nullopt;
      return Value(std::string(text));
    case ValueType::kInt: {
      std::int64_t n = 0;
      auto r = std::from_chars(text.data(), text.data() + text.size(), n);
      if (text.empty() || r.ec != std::errc() || r.ptr != text.data() + text.size())
        return std::nullopt;
      return Value(n);
    }
    case ValueType::kNumber: {
      double d = 0;
      auto r = std::from_chars(text.data(), text.data() + text.size(), d);
      if (text.empty() || r.ec != std::errc() || r.ptr != text.data() + text.size() ||
          !std::isfinite(d)) {
        return std::nullopt;
      }
      return Value(d);
    }
    case ValueType::kBool:
      if (text == "true") return Value(true);
      if (text == "false") return Value(false);
      return std::nullopt;
  }
  return std::nullopt;
}

std::string ModelError::to_string() const {
  std::string out;
  if (at.line > 0) {
    out += "line " + std::to_string(at.line);
    if (at.column > 0) out += ", column " + std::to_string(at.column);
    out += ": ";
  }
  if (!subject.empty()) out += subject + ": ";
  out += message;
  return out;
}

std::optional<AttrId> CiType::attribute(std::string_view n) const {
  for (std::size_t i = 0; i < attributes.size(); ++i) {
    if (attributes[i].name == n) return static_cast<AttrId>(i);
  }
  return std::nullopt;
}

Schema Schema::builtins() {
  // The first attribute is the key of every built-in type. '!' marks required.
  static const std::vector<BuiltinType> kTypes = {
      {"business_system",
       {{"name", "!string"},
        {"owner", "string"},
        {"criticality", "string"},
        {"description", "string"}}},
      {"application",
       {{"name", "!string"},
        {"owner", "string"},
        {"criticality", "string"},
        {"description", "string"}}},
      {"service",
       {{"name", "!string"},
        {"owner", "string"},
        {"criticality", "string"},
        {"description", "string"}}},
      {"instance",
       {{"id", "!string"},
        {"service", "string"},
        {"address", "string"},
        {"city", "string"},
        {"zone", "string"},
        {"host", "string"},
        {"version", "string"},
        {"started_ms", "int"}}},
      {"host",
       {{"hostname", "!string"},
        {"addresses", "string"},
        {"cpus", "int"},
        {"memory_bytes", "int"},
        {"city", "string"},
        {"zone", "string"},
        {"os", "string"},
        {"owner", "string"}}},
      {"gateway",
       {{"name", "!string"},
        {"city", "string"},
        {"zone", "string"},
        {"address", "string"},
        {"version", "string"}}},
      {"city", {{"name", "!string"}, {"description", "string"}}},
      {"zone", {{"name", "!string"}, {"city", "string"}}},
      {"route", {{"name", "!string"}, {"path_prefix", "string"}, {"service", "string"}}},
      {"channel", {{"name", "!string"}, {"description", "string"}}},
      {"database",
       {{"name", "!string"},
        {"engine", "string"},
        {"version", "string"},
        {"owner", "string"},
        {"city", "string"}}},
  };
  struct BuiltinRule {
    RelationKind kind;
    std::string_view from, to;
    Cardinality card;
  };
  using K = RelationKind;
  using C = Cardinality;
  static const std::vector<BuiltinRule> kRules = {
      {K::kBelongsTo, "application", "business_system", C::kAtMostOne},
      {K::kBelongsTo, "service", "application", C::kAtMostOne},
      {K::kBelongsTo, "service", "business_system", C::kAtMostOne},
      {K::kBelongsTo, "instance", "service", C::kExactlyOne},
      {K::kBelongsTo, "database", "application", C::kMany},
      {K::kBelongsTo, "database", "business_system", C::kAtMostOne},
      {K::kBelongsTo, "channel", "business_system", C::kMany},
      {K::kRunsOn, "instance", "host", C::kAtMostOne},
      {K::kRunsOn, "gateway", "host", C::kAtMostOne},
      {K::kRunsOn, "database", "host", C::kMany},
      {K::kLocatedIn, "zone", "city", C::kExactlyOne},
      {K::kLocatedIn, "host", "zone", C::kAtMostOne},
      {K::kLocatedIn, "host", "city", C::kAtMostOne},
      {K::kLocatedIn, "instance", "zone", C::kAtMostOne},
      {K::kLocatedIn, "instance", "city", C::kAtMostOne},
      {K::kLocatedIn, "gateway", "zone", C::kAtMostOne},
      {K::kLocatedIn, "gateway", "city", C::kAtMostOne},
      {K::kLocatedIn, "database", "city", C::kMany},
      {K::kRoutesTo, "route", "service", C::kMany},
      {K::kDependsOn, "service", "service", C::kMany},
      {K::kDependsOn, "service", "database", C::kMany},
      {K::kDependsOn, "application", "application", C::kMany},
      {K::kDependsOn, "application", "database", C::kMany},
      {K::kDependsOn, "business_system", "business_system", C::kMany},
      {K::kServes, "gateway", "route", C::kMany},
      {K::kServes, "route", "channel", C::kMany},
  };
  Schema s;
  for (const auto& bt : kTypes) {
    CiType t;
    t.name = std::string(bt.name);
    t.builtin = true;
    for (const auto& [n, ty] : bt.attrs) {
      bool req = ty.starts_with('!');
      std::string_view tn = req ? ty.substr(1) : ty;
      t.attributes.push_back({std::string(n), *parse_value_type(tn), req});
    }
    t.key = {0};
    s.types_.push_back(std::move(t));
  }
  for (const auto& r : kRules) {
    s.rules_.push_back({r.kind, *s.find_type(r.from), *s.find_type(r.to), r.card});
  }
  return s;
}

std::optional<TypeId> Schema::find_type(std::string_view name) const {
  for (std::size_t i = 0; i < types_.size(); ++i) {
    if (types_[i].name == name) return static_cast<TypeId>(i);
  }
  return std::nullopt;
}

const RelationRule* Schema::rule(RelationKind kind, TypeId from, TypeId to) const {
  for (const auto& r : rules_) {
    if (r.kind == kind && r.from == from && r.to == to) return &r;
  }
  return nullptr;
}

std::vector<ModelError> Schema::extend(std::span<const TypeSpec> specs) {
  std::vector<ModelError> errors;
  Schema next = *this;
  auto err = [&](Location at, const std::string& subject, std::string msg) {
    errors.push_back({at, subject, std::move(msg)});
  };
  // Types first (so that relations may name a type added by a later spec).
  for (const auto& spec : specs) {
    std::string subject = "type " + spec.name;
    if (!valid_name(spec.name)) {
      err(spec.at, subject, "name must match [a-z][a-z0-9_]* (at most 128 bytes)");
      continue;
    }
    auto existing = next.find_type(spec.name);
    CiType* t = nullptr;
    if (existing) {
      t = &next.types_[*existing];
      std::vector<std::string> current;
      for (AttrId k : t->key) current.push_back(t->attributes[k].name);
      if (!spec.key.empty() && spec.key != current)
        err(spec.at, subject, "key: an existing type's key cannot change");
    } else {
      if (spec.key.empty())
        err(spec.at, subject, "key: a new type needs at least one key attribute");
      next.types_.push_back(CiType{spec.name, {}, {}, false});
      t = &next.types_.back();
    }
    if (spec.attributes.size() + t->attributes.size() > 200) {
      err(spec.at, subject, "attributes: at most 200 per type");
      continue;
    }
    for (const auto& a : spec.attributes) {
      if (!valid_name(a.name)) {
        err(a.at, subject, "attribute '" + a.name + "': name must match [a-z][a-z0-9_]*");
        continue;
      }
      auto vt = parse_value_type(a.type);
      if (!vt) {
        err(a.at, subject, "attribute '" + a.name + "': type must be string, int, number or bool");
        continue;
      }
      if (auto have = t->attribute(a.name)) {
        // The same definition again is no change (a file imported twice); another one is.
        const AttributeDef& d = t->attributes[*have];
        bool is_key = std::find(t->key.begin(), t->key.end(), *have) != t->key.end();
        if (d.type != *vt || (d.required != a.required && !is_key)) {
          err(a.at, subject,
              "attribute '" + a.name + "': already defined as " +
                  std::string(cmdb::to_string(d.type)) + (d.required ? ", required" : ""));
        }
        continue;
      }
      t->attributes.push_back({a.name, *vt, a.required});
    }
    if (!existing) {
      for (const auto& k : spec.key) {
        auto id = t->attribute(k);
        if (!id) {
          err(spec.at, subject, "key: '" + k + "' is not an attribute of the type");
        } else {
          t->key.push_back(*id);
          t->attributes[*id].required = true;
        }
      }
    }
  }
  for (const auto& spec : specs) {
    auto from = next.find_type(spec.name);
    if (!from) continue;
    std::string subject = "type " + spec.name;
    for (const auto& r : spec.relations) {
      auto kind = parse_relation_kind(r.kind);
      auto to = next.find_type(r.to);
      auto card = parse_cardinality(r.cardinality);
      if (!kind) err(r.at, subject, "relation '" + r.kind + "': unknown kind");
      if (!to) err(r.at, subject, "relation to '" + r.to + "': unknown type");
      if (!card)
        err(r.at, subject,
            "cardinality '" + r.cardinality + "': must be many, at_most_one or exactly_one");
      if (!kind || !to || !card) continue;
      if (const RelationRule* have = next.rule(*kind, *from, *to)) {
        if (have->cardinality != *card) {
          err(r.at, subject,
              "relation " + r.kind + " to " + r.to + ": already allowed as " +
                  std::string(cmdb::to_string(have->cardinality)));
        }
        continue;
      }
      next.rules_.push_back({*kind, *from, *to, *card});
    }
  }
  if (next.types_.size() > 1000) err({}, "", "at most 1000 types");
  if (errors.empty()) *this = std::move(next);
  return errors;
}

// --- Graph ---------------------------------------------------------------------------------

Graph::Graph(Schema schema) : schema_(std::move(schema)) {
  by_type_.resize(schema_.type_count());
  keys_.resize(schema_.type_count());
}

CiId Graph::upsert_ci(TypeId type, std::string_view key) {
  auto& idx = keys_[type];
  if (auto it = idx.find(key); it != idx.end()) return it->second;
  auto id = static_cast<CiId>(cis_.size());
  cis_.push_back(Ci{id, type, std::string(key), {}});
  idx.emplace(std::string(key), id);
  by_type_[type].push_back(id);
  out_.emplace_back();
  in_.emplace_back();
  return id;
}

std::optional<CiId> Graph::find(TypeId type, std::string_view key) const {
  if (type >= keys_.size()) return std::nullopt;
  const auto& idx = keys_[type];
  if (auto it = idx.find(key); it != idx.end()) return it->second;
  return std::nullopt;
}

std::optional<CiId> Graph::find(std::string_view type, std::string_view key) const {
  auto t = schema_.find_type(type);
  if (!t) return std::nullopt;
  return find(*t, key);
}

std::span<const CiId> Graph::of_type(TypeId type) const {
  if (type >= by_type_.size()) return {};
  return by_type_[type];
}

namespace {
auto value_less = [](const AttributeValue& v, std::pair<AttrId, Source> k) {
  return std::pair(v.attr, v.source) < k;
};
}  // namespace

ValueChange Graph::set_value(CiId id, AttrId attr, Source source, Value value,
                             std::int64_t seen_ms) {
  auto& vals = cis_[id].values;
  auto it = std::lower_bound(vals.begin(), vals.end(), std::pair(attr, source), value_less);
  ValueChange change;
  if (it != vals.end() && it->attr == attr && it->source == source) {
    if (it->value != value) {
      change.changed = true;
      change.old_value = std::move(it->value);
      it->value = std::move(value);
    } else {
      change.old_value = it->value;
    }
    it->last_seen_ms = std::max(it->last_seen_ms, seen_ms);
    return change;
  }
  change.changed = true;
  vals.insert(it, AttributeValue{attr, source, seen_ms, std::move(value)});
  return change;
}

bool Graph::clear_value(CiId id, AttrId attr, Source source) {
  auto& vals = cis_[id].values;
  auto it = std::lower_bound(vals.begin(), vals.end(), std::pair(attr, source), value_less);
  if (it == vals.end() || it->attr != attr || it->source != source) return false;
  vals.erase(it);
  return true;
}

const AttributeValue* Graph::value(CiId id, AttrId attr, Source source) const {
  const auto& vals = cis_[id].values;
  auto it = std::lower_bound(vals.begin(), vals.end(), std::pair(attr, source), value_less);
  if (it == vals.end() || it->attr != attr || it->source != source) return nullptr;
  return &*it;
}

const AttributeValue* Graph::observed(CiId id, AttrId attr) const {
  const AttributeValue* best = nullptr;
  for (const auto& v : cis_[id].values) {
    if (v.attr != attr || !is_observed(v.source)) continue;
    if (!best || v.last_seen_ms > best->last_seen_ms) best = &v;
  }
  return best;
}

std::optional<RelationId> Graph::find_relation(RelationKind kind, CiId from, CiId to,
                                               Source source) const {
  for (RelationId r : out_[from]) {
    const auto& rel = relations_[r];
    if (rel.kind == kind && rel.to == to && rel.source == source) return r;
  }
  return std::nullopt;
}

RelationId Graph::upsert_relation(RelationKind kind, CiId from, CiId to, Source source,
                                  std::int64_t seen_ms) {
  if (auto r = find_relation(kind, from, to, source)) {
    relations_[*r].last_seen_ms = std::max(relations_[*r].last_seen_ms, seen_ms);
    return *r;
  }
  auto id = static_cast<RelationId>(relations_.size());
  relations_.push_back(Relation{id, kind, from, to, source, seen_ms});
  alive_.push_back(1);
  out_[from].push_back(id);
  in_[to].push_back(id);
  return id;
}

bool Graph::remove_relation(RelationId id) {
  if (id >= relations_.size() || !alive_[id]) return false;
  alive_[id] = 0;
  ++dead_;
  auto drop = [id](std::vector<RelationId>& list) { std::erase(list, id); };
  drop(out_[relations_[id].from]);
  drop(in_[relations_[id].to]);
  return true;
}

std::string Graph::subject(CiId id) const {
  return schema_.type(cis_[id].type).name + "/" + cis_[id].key;
}

std::vector<ModelError> Graph::validate() const {
  std::vector<ModelError> errors;
  auto add = [&errors](CiId ci, std::string subject, std::string message) {
    errors.push_back({{}, std::move(subject), std::move(message), ci});
  };
  for (const auto& c : cis_) {
    const CiType& t = schema_.type(c.type);
    std::string subj = subject(c.id);
    if (c.key.empty() || c.key.size() > kMaxKeyBytes) {
      add(c.id, subj, "key must be 1.." + std::to_string(kMaxKeyBytes) + " bytes");
    }
    // Key attributes: the key text split on ',' is their values.
    std::vector<std::string_view> parts;
    std::string_view rest = c.key;
    for (std::size_t i = 0; i + 1 < t.key.size(); ++i) {
      auto comma = rest.find(',');
      if (comma == std::string_view::npos) break;
      parts.push_back(rest.substr(0, comma));
      rest = rest.substr(comma + 1);
    }
    parts.push_back(rest);
    if (parts.size() != t.key.size()) {
      add(c.id, subj, "key must have " + std::to_string(t.key.size()) + " parts joined with ','");
    } else {
      for (std::size_t i = 0; i < parts.size(); ++i) {
        const auto& def = t.attributes[t.key[i]];
        if (!valid_key_part(parts[i])) {
          add(c.id, subj, def.name + ": a key value must be printable, without space , / ? # %");
          continue;
        }
        for (const auto& v : c.values) {
          if (v.attr == t.key[i] && to_text(v.value) != parts[i]) {
            add(c.id, subj,
                def.name + ": is a key attribute and must equal '" + std::string(parts[i]) + "'");
          }
        }
      }
    }
    for (const auto& v : c.values) {
      if (v.attr >= t.attributes.size()) {
        add(c.id, subj, "attribute #" + std::to_string(v.attr) + " is not defined");
        continue;
      }
      const auto& def = t.attributes[v.attr];
      if (type_of(v.value) != def.type) {
        add(c.id, subj, def.name + ": must be " + std::string(cmdb::to_string(def.type)));
      } else if (def.type == ValueType::kString && !valid_text(std::get<std::string>(v.value))) {
        add(c.id, subj, def.name + ": " + kTextRule);
      }
    }
    for (std::size_t a = 0; a < t.attributes.size(); ++a) {
      if (!t.attributes[a].required) continue;
      bool key_attr = std::find(t.key.begin(), t.key.end(), a) != t.key.end();
      if (key_attr) continue;  // the key carries it
      bool any = std::any_of(c.values.begin(), c.values.end(),
                             [a](const AttributeValue& v) { return v.attr == a; });
      if (!any) add(c.id, subj, t.attributes[a].name + ": required");
    }
  }
  // Relations: allowed pairs.
  for (const auto& r : relations_) {
    if (!alive_[r.id]) continue;
    if (!schema_.rule(r.kind, cis_[r.from].type, cis_[r.to].type)) {
      add(r.from,
          "relation " + subject(r.from) + " " + std::string(cmdb::to_string(r.kind)) + " " +
              subject(r.to),
          "not allowed: " + schema_.type(cis_[r.from].type).name + " " +
              std::string(cmdb::to_string(r.kind)) + " " + schema_.type(cis_[r.to].type).name);
    }
  }
  // Cardinality per rule and source.
  for (const auto& rule : schema_.rules()) {
    if (rule.cardinality == Cardinality::kMany) continue;
    for (CiId from : of_type(rule.from)) {
      std::array<std::size_t, kSourceCount> count{};
      std::size_t total = 0;
      for (RelationId rid : out_[from]) {
        const auto& r = relations_[rid];
        if (r.kind != rule.kind || cis_[r.to].type != rule.to) continue;
        ++count[static_cast<std::size_t>(r.source)];
        ++total;
      }
      std::string what = std::string(cmdb::to_string(rule.kind)) + " " + schema_.type(rule.to).name;
      for (std::size_t s = 0; s < kSourceCount; ++s) {
        if (count[s] > 1) {
          add(from, subject(from),
              what + ": at most one (" + std::string(kSourceNames[s]) + "), has " +
                  std::to_string(count[s]));
        }
      }
      if (rule.cardinality == Cardinality::kExactlyOne && total == 0) {
        add(from, subject(from), what + ": exactly one required, has none");
      }
    }
  }
  return errors;
}

// --- apply_declared ------------------------------------------------------------------------

std::vector<ModelError> apply_declared(Graph& graph, std::span<const CiDraft> cis,
                                       std::span<const RelationDraft> relations,
                                       std::int64_t now_ms) {
  std::vector<ModelError> errors;
  const Schema& schema = graph.schema();
  Graph next = graph;
  std::set<std::pair<TypeId, std::string>> seen;
  std::vector<CiId> draft_ci(cis.size(), kNone);  // what each draft became

  for (std::size_t di = 0; di < cis.size(); ++di) {
    const CiDraft& d = cis[di];
    auto type = schema.find_type(d.type);
    if (!type) {
      errors.push_back({d.at, d.type, "unknown type '" + d.type + "'"});
      continue;
    }
    const CiType& t = schema.type(*type);
    bool ok = true;
    std::vector<std::pair<AttrId, Value>> values;
    std::vector<bool> given(t.attributes.size(), false);
    for (std::size_t i = 0; i < d.attributes.size(); ++i) {
      const auto& [name, text] = d.attributes[i];
      Location at = i < d.attribute_at.size() ? d.attribute_at[i] : d.at;
      auto a = t.attribute(name);
      if (!a) {
        errors.push_back({at, t.name, "unknown attribute '" + name + "'"});
        ok = false;
        continue;
      }
      if (given[*a]) {
        errors.push_back({at, t.name, name + ": given twice"});
        ok = false;
        continue;
      }
      given[*a] = true;
      auto v = parse_value(t.attributes[*a].type, text);
      if (!v) {
        std::string why = t.attributes[*a].type == ValueType::kString
                              ? std::string(kTextRule)
                              : "must be " + std::string(to_string(t.attributes[*a].type));
        errors.push_back({at, t.name, name + ": " + why});
        ok = false;
        continue;
      }
      values.emplace_back(*a, std::move(*v));
    }
    std::string key;
    for (std::size_t k = 0; k < t.key.size(); ++k) {
      AttrId ka = t.key[k];
      auto it =
          std::find_if(values.begin(), values.end(), [ka](const auto& p) { return p.first == ka; });
      if (it == values.end()) {
        if (!given[ka])
          errors.push_back({d.at, t.name, t.attributes[ka].name + ": key attribute missing"});
        ok = false;
        continue;
      }
      std::string part = to_text(it->second);
      if (!valid_key_part(part)) {
        errors.push_back({d.at, t.name + "/" + part,
                          t.attributes[ka].name + ": a key value must be 1.." +
                              std::to_string(kMaxKeyBytes) +
                              " printable bytes, without space , / ? # %"});
        ok = false;
        continue;
      }
      if (k > 0) key += ',';
      key += part;
    }
    if (!ok) continue;
    if (!seen.emplace(*type, key).second) {
      errors.push_back({d.at, t.name + "/" + key, "duplicate key: declared twice in this import"});
      continue;
    }
    CiId id = next.upsert_ci(*type, key);
    draft_ci[di] = id;
    for (auto& [a, v] : values) next.set_value(id, a, Source::kDeclared, std::move(v), now_ms);
  }

  // A relation under a CI draft names it by its key once known.
  std::vector<RelationDraft> resolved(relations.begin(), relations.end());
  for (auto& r : resolved) {
    if (r.from_draft == RelationDraft::kNoDraft) continue;
    if (r.from_draft >= cis.size() || draft_ci[r.from_draft] == kNone) {
      r.kind.clear();  // its CI was refused (and reported); nothing more to say about it
      continue;
    }
    const Ci& from = next.ci(draft_ci[r.from_draft]);
    r.from_type = schema.type(from.type).name;
    r.from_key = from.key;
  }
  relations = resolved;

  for (const auto& r : relations) {
    if (r.kind.empty() && r.from_draft != RelationDraft::kNoDraft) continue;
    std::string subj = "relation " + r.from_type + "/" + r.from_key + " " + r.kind + " " +
                       r.to_type + "/" + r.to_key;
    auto kind = parse_relation_kind(r.kind);
    auto ft = schema.find_type(r.from_type);
    auto tt = schema.find_type(r.to_type);
    bool ok = true;
    if (!kind) errors.push_back({r.at, subj, "unknown relation kind '" + r.kind + "'"}), ok = false;
    if (!ft) errors.push_back({r.at, subj, "unknown type '" + r.from_type + "'"}), ok = false;
    if (!tt) errors.push_back({r.at, subj, "unknown type '" + r.to_type + "'"}), ok = false;
    if (!ok) continue;
    if (!schema.rule(*kind, *ft, *tt)) {
      errors.push_back(
          {r.at, subj, "not allowed: " + r.from_type + " " + r.kind + " " + r.to_type});
      continue;
    }
    auto from = next.find(*ft, r.from_key);
    auto to = next.find(*tt, r.to_key);
    if (!from)
      errors.push_back({r.at, subj, r.from_type + "/" + r.from_key + " is not declared"}),
          ok = false;
    if (!to)
      errors.push_back({r.at, subj, r.to_type + "/" + r.to_key + " is not declared"}), ok = false;
    if (!ok) continue;
    next.upsert_relation(*kind, *from, *to, Source::kDeclared, now_ms);
  }

  // A declared relation under a single-valued rule replaces the older declared one(s): keep the
  // relations this import names, drop the others of the same (kind, from, to type).
  std::set<RelationId> named;
  {
    for (const auto& r : relations) {
      if (r.kind.empty()) continue;
      auto kind = parse_relation_kind(r.kind);
      auto ft = schema.find_type(r.from_type);
      auto tt = schema.find_type(r.to_type);
      if (!kind || !ft || !tt) continue;
      auto from = next.find(*ft, r.from_key);
      auto to = next.find(*tt, r.to_key);
      if (!from || !to) continue;
      if (auto id = next.find_relation(*kind, *from, *to, Source::kDeclared)) named.insert(*id);
    }
    std::vector<RelationId> drop;
    for (RelationId id : named) {
      const auto& nr = next.relation(id);
      const auto* rule = schema.rule(nr.kind, next.ci(nr.from).type, next.ci(nr.to).type);
      if (!rule || rule->cardinality == Cardinality::kMany) continue;
      for (RelationId other : next.out(nr.from)) {
        const auto& o = next.relation(other);
        if (other != id && !named.count(other) && o.kind == nr.kind &&
            o.source == Source::kDeclared && next.ci(o.to).type == next.ci(nr.to).type) {
          drop.push_back(other);
        }
      }
    }
    for (RelationId id : drop) next.remove_relation(id);
  }

  if (!errors.empty()) return errors;
  std::vector<bool> touched(next.ci_count(), false);
  for (const auto& [type, key] : seen) touched[*next.find(type, key)] = true;
  for (RelationId id : named)
    touched[next.relation(id).from] = touched[next.relation(id).to] = true;
  for (auto& e : next.validate()) {
    if (e.ci == kNone || touched[e.ci]) errors.push_back(std::move(e));
  }
  if (errors.empty()) graph = std::move(next);
  return errors;
}

}  // namespace sluice::control::cmdb
