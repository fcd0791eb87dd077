#include "control/cmdb/cmdb.h"

#include <algorithm>
#include <unordered_map>

namespace sluice::control::cmdb {
namespace {

using Json = nlohmann::json;
using detail::SqlConnection;
using detail::SqlValue;
using detail::Tx;

// Serialises CMDB writes across control planes on one PostgreSQL database ("slucmdb").
constexpr int64_t kCmdbLock = 0x736c75636d6462;

int64_t to_i64(const std::string& s) {
  return s.empty() ? 0 : std::stoll(s);
}

std::vector<std::vector<std::string>> q(SqlConnection& c, const std::string& sql,
                                        std::initializer_list<SqlValue> params) {
  const std::vector<SqlValue> v(params);
  return c.query(sql, v).rows;
}

Json spec_json(const TypeSpec& t) {
  Json attrs = Json::array();
  for (const auto& a : t.attributes)
    attrs.push_back({{"name", a.name}, {"type", a.type}, {"required", a.required}});
  Json rels = Json::array();
  for (const auto& r : t.relations)
    rels.push_back({{"kind", r.kind}, {"to", r.to}, {"cardinality", r.cardinality}});
  return {{"name", t.name}, {"key", t.key}, {"attributes", attrs}, {"relations", rels}};
}

TypeSpec spec_from(const Json& j) {
  TypeSpec t;
  t.name = j.value("name", "");
  t.key = j.value("key", std::vector<std::string>{});
  for (const auto& a : j.value("attributes", Json::array()))
    t.attributes.push_back(
        {a.value("name", ""), a.value("type", "string"), a.value("required", false), {}});
  for (const auto& r : j.value("relations", Json::array()))
    t.relations.push_back(
        {r.value("kind", ""), r.value("to", ""), r.value("cardinality", "many"), {}});
  return t;
}

std::string ref(const Graph& g, CiId id) {
  return g.subject(id);
}

struct DryRun {};  // thrown to roll a dry run's transaction back

struct HistoryRow {
  std::string type, key, what, field, source;
  Json old_value, new_value;
};

}  // namespace

Json value_json(const Value& v) {
  switch (type_of(v)) {
    case ValueType::kString:
      return std::get<std::string>(v);
    case ValueType::kInt:
      return std::get<std::int64_t>(v);
    case ValueType::kNumber:
      return std::get<double>(v);
    case ValueType::kBool:
      return std::get<bool>(v);
  }
  return nullptr;
}

Json WriteResult::to_json() const {
  Json j = {{"types_changed", types_changed},
            {"cis_added", cis_added},
            {"values_changed", values_changed},
            {"relations_added", relations_added},
            {"relations_removed", relations_removed},
            {"history", history},
            {"written", written}};
  if (!errors.empty()) {
    Json list = Json::array();
    for (const auto& e : errors) list.push_back(e.to_string());
    j["errors"] = list;
  }
  return j;
}

Json HistoryEntry::to_json() const {
  Json j = {{"id", id},         {"at_ms", at_ms}, {"type", type},     {"key", key},
            {"what", what},     {"field", field}, {"source", source}, {"old", old_value},
            {"new", new_value}, {"actor", actor}, {"reason", reason}};
  if (change_id > 0) j["change"] = change_id;
  return j;
}

const Cmdb::Loaded& Cmdb::current(SqlConnection& c) {
  const int64_t rev = to_i64(q(c, "SELECT value FROM cmdb_revision WHERE one = 1", {}).at(0).at(0));
  if (cache_ && cache_->revision == rev) return *cache_;

  Schema schema = Schema::builtins();
  std::vector<TypeSpec> specs;
  for (const auto& r : q(c, "SELECT spec FROM cmdb_types ORDER BY id", {}))
    specs.push_back(spec_from(Json::parse(r.at(0))));
  if (auto errors = schema.extend(specs); !errors.empty())
    throw StoreError("cmdb: stored types do not apply: " + errors.front().to_string());

  Loaded l{Graph(std::move(schema)), {}, {}, rev};
  Graph& g = l.graph;
  std::unordered_map<int64_t, CiId> by_db;
  for (const auto& r : q(c, "SELECT id, type, key FROM cmdb_cis ORDER BY id", {})) {
    auto t = g.schema().find_type(r[1]);
    if (!t) throw StoreError("cmdb: stored CI of unknown type " + r[1]);
    CiId id = g.upsert_ci(*t, r[2]);
    by_db[to_i64(r[0])] = id;
    l.ci_db.push_back(to_i64(r[0]));
  }
  for (const auto& r :
       q(c, "SELECT ci_id, attr, source, value, last_seen_ms FROM cmdb_values", {})) {
    auto it = by_db.find(to_i64(r[0]));
    if (it == by_db.end()) continue;
    const CiType& t = g.schema().type(g.ci(it->second).type);
    auto a = t.attribute(r[1]);
    auto s = parse_source(r[2]);
    if (!a || !s) continue;  // written by a newer build: not ours to read
    auto v = parse_value(t.attributes[*a].type, r[3]);
    if (!v) continue;
    g.set_value(it->second, *a, *s, std::move(*v), to_i64(r[4]));
  }
  for (const auto& r :
       q(c, "SELECT id, kind, from_ci, to_ci, source, last_seen_ms FROM cmdb_relations ORDER BY id",
         {})) {
    auto k = parse_relation_kind(r[1]);
    auto s = parse_source(r[4]);
    auto f = by_db.find(to_i64(r[2]));
    auto t = by_db.find(to_i64(r[3]));
    if (!k || !s || f == by_db.end() || t == by_db.end()) continue;
    RelationId id = g.upsert_relation(*k, f->second, t->second, *s, to_i64(r[5]));
    if (id >= l.rel_db.size()) l.rel_db.resize(id + 1, 0);
    l.rel_db[id] = to_i64(r[0]);
  }
  cache_ = std::move(l);
  return *cache_;
}

Graph Cmdb::load() {
  std::lock_guard lock(mu_);
  std::optional<Graph> out;
  store_.in_transaction("cmdb load", Tx::kRead, [&](SqlConnection& c) { out = current(c).graph; });
  return std::move(*out);
}

int64_t Cmdb::revision() {
  int64_t rev = 0;
  store_.in_transaction("cmdb revision", Tx::kRead, [&](SqlConnection& c) {
    rev = to_i64(q(c, "SELECT value FROM cmdb_revision WHERE one = 1", {}).at(0).at(0));
  });
  return rev;
}

WriteResult Cmdb::import(const ImportDoc& doc, const Provenance& p, int64_t now_ms, bool dry_run) {
  std::lock_guard lock(mu_);
  WriteResult result;
  std::optional<Loaded> fresh;
  try {
    store_.in_transaction("cmdb import", Tx::kWrite, [&](SqlConnection& c) {
      c.lock(kCmdbLock);
      fresh.reset();
      result = WriteResult{};
      const Loaded& cur = current(c);
      Schema schema = cur.graph.schema();
      const std::size_t types_before = schema.type_count();
      std::size_t attrs_before = 0, attrs_after = 0;
      for (const auto& t : schema.types()) attrs_before += t.attributes.size();
      const std::size_t rules_before = schema.rules().size();
      if (auto errors = schema.extend(doc.types); !errors.empty()) {
        result.errors = std::move(errors);
        return;
      }
      for (const auto& t : schema.types()) attrs_after += t.attributes.size();
      const bool schema_changed = schema.type_count() != types_before ||
                                  attrs_after != attrs_before ||
                                  schema.rules().size() != rules_before;
      // The current model on the extended schema: the same CIs, values and relations, same ids
      // (slots are replayed in order, dead ones removed again).
      Graph next = cur.graph;
      if (schema_changed) {
        const Graph& old = cur.graph;
        next = Graph(schema);
        for (const Ci& ci : old.cis()) {
          CiId id = next.upsert_ci(ci.type, ci.key);
          for (const auto& v : ci.values)
            next.set_value(id, v.attr, v.source, v.value, v.last_seen_ms);
        }
        for (RelationId r = 0; r < old.relation_slots(); ++r) {
          const Relation& rel = old.relation(r);
          if (next.upsert_relation(rel.kind, rel.from, rel.to, rel.source, rel.last_seen_ms) != r)
            throw std::logic_error("cmdb: relation ids moved while extending the schema");
          if (!old.alive(r)) next.remove_relation(r);
        }
      }
      if (auto errors = apply_declared(next, doc.cis, doc.relations, now_ms); !errors.empty()) {
        result.errors = std::move(errors);
        return;
      }
      result = write(c, std::move(next), schema_changed ? doc.types : std::vector<TypeSpec>{}, p,
                     now_ms, Source::kDeclared, fresh);
      if (dry_run) throw DryRun{};
    });
  } catch (const DryRun&) {
    result.written = false;
    fresh.reset();
  } catch (...) {
    cache_.reset();
    throw;
  }
  if (fresh) cache_ = std::move(fresh);
  return result;
}

WriteResult Cmdb::edit(const std::function<std::vector<ModelError>(Graph&)>& fn,
                       const Provenance& p, int64_t now_ms) {
  std::lock_guard lock(mu_);
  WriteResult result;
  std::optional<Loaded> fresh;
  try {
    store_.in_transaction("cmdb edit", Tx::kWrite, [&](SqlConnection& c) {
      c.lock(kCmdbLock);
      fresh.reset();
      result = WriteResult{};
      Graph next = current(c).graph;
      if (auto errors = fn(next); !errors.empty()) {
        result.errors = std::move(errors);
        return;
      }
      result = write(c, std::move(next), {}, p, now_ms, Source::kDeclared, fresh);
    });
  } catch (...) {
    cache_.reset();
    throw;
  }
  if (fresh) cache_ = std::move(fresh);
  return result;
}

WriteResult Cmdb::record(const Observed& o, const Provenance& p) {
  std::lock_guard lock(mu_);
  WriteResult result;
  std::optional<Loaded> fresh;
  try {
    store_.in_transaction("cmdb record", Tx::kWriteRelaxed, [&](SqlConnection& c) {
      c.lock(kCmdbLock);
      fresh.reset();
      result = WriteResult{};
      const Loaded& cur = current(c);
      Graph next = cur.graph;
      const Schema& s = next.schema();
      std::vector<ModelError> errors;
      auto ci_of = [&](const std::string& type, const std::string& key,
                       const std::string& subject) -> std::optional<CiId> {
        auto t = s.find_type(type);
        if (!t) {
          errors.push_back({{}, subject, "unknown type '" + type + "'"});
          return std::nullopt;
        }
        // Each key part as the model checks it (a composite key's parts joined with ',').
        bool ok = !key.empty() && key.size() <= kMaxKeyBytes;
        for (std::size_t start = 0; ok;) {
          const std::size_t comma = key.find(',', start);
          ok = valid_key_part(std::string_view(key).substr(
              start, comma == std::string::npos ? std::string::npos : comma - start));
          if (comma == std::string::npos) break;
          start = comma + 1;
        }
        if (!ok) {
          errors.push_back({{},
                            subject,
                            "bad key: 1.." + std::to_string(kMaxKeyBytes) +
                                " printable bytes, without space / ? # %"});
          return std::nullopt;
        }
        return next.upsert_ci(*t, key);
      };
      for (const auto& item : o.cis) {
        const std::string subject = item.type + "/" + item.key;
        auto id = ci_of(item.type, item.key, subject);
        if (!id) continue;
        const CiType& t = s.type(next.ci(*id).type);
        for (const auto& [name, value] : item.values) {
          auto a = t.attribute(name);
          if (!a) {
            errors.push_back({{}, subject, "unknown attribute '" + name + "'"});
            continue;
          }
          if (type_of(value) != t.attributes[*a].type) {
            errors.push_back(
                {{}, subject, name + ": must be " + std::string(to_string(t.attributes[*a].type))});
            continue;
          }
          if (type_of(value) == ValueType::kString && !valid_text(std::get<std::string>(value))) {
            errors.push_back({{}, subject, name + ": " + kTextRule});
            continue;
          }
          next.set_value(*id, *a, o.source, value, item.seen_ms ? item.seen_ms : o.seen_ms);
        }
      }
      auto link = [&](const Observed::Link& l, bool add) {
        const std::string subject = "relation " + l.from_type + "/" + l.from_key + " " +
                                    std::string(to_string(l.kind)) + " " + l.to_type + "/" +
                                    l.to_key;
        if (!add) {
          auto from = next.find(l.from_type, l.from_key);
          auto to = next.find(l.to_type, l.to_key);
          if (!from || !to) return;
          if (auto r = next.find_relation(l.kind, *from, *to, o.source)) next.remove_relation(*r);
          return;
        }
        auto from = ci_of(l.from_type, l.from_key, subject);
        auto to = ci_of(l.to_type, l.to_key, subject);
        if (!from || !to) return;
        if (!s.rule(l.kind, next.ci(*from).type, next.ci(*to).type)) {
          errors.push_back({{},
                            subject,
                            "not allowed: " + l.from_type + " " + std::string(to_string(l.kind)) +
                                " " + l.to_type});
          return;
        }
        next.upsert_relation(l.kind, *from, *to, o.source, l.seen_ms ? l.seen_ms : o.seen_ms);
      };
      for (const auto& l : o.relations) link(l, true);
      for (const auto& l : o.gone) link(l, false);
      if (!errors.empty()) {
        result.errors = std::move(errors);
        return;
      }
      result = write(c, std::move(next), {}, p, o.seen_ms, o.source, fresh);
    });
  } catch (...) {
    cache_.reset();
    throw;
  }
  if (fresh) cache_ = std::move(fresh);
  return result;
}

WriteResult Cmdb::write(SqlConnection& c, Graph next, const std::vector<TypeSpec>& new_types,
                        const Provenance& p, int64_t now_ms, Source creator,
                        std::optional<Loaded>& fresh) {
  const Loaded& cur = *cache_;
  const Graph& old = cur.graph;
  WriteResult r;
  std::vector<HistoryRow> history;
  int64_t statements = 0;
  auto w = [&](const std::string& sql, std::initializer_list<SqlValue> params) {
    ++statements;
    return q(c, sql, params);
  };

  for (const auto& t : new_types) {
    w("INSERT INTO cmdb_types (spec, at_ms) VALUES ($1, $2)", {spec_json(t).dump(), now_ms});
    ++r.types_changed;
  }

  std::vector<int64_t> ci_db = cur.ci_db;
  for (CiId id = 0; id < next.ci_count(); ++id) {
    const Ci& ci = next.ci(id);
    const std::string& tname = next.schema().type(ci.type).name;
    if (id >= old.ci_count()) {
      auto rows = w("INSERT INTO cmdb_cis (type, key, created_ms) VALUES ($1, $2, $3) RETURNING id",
                    {tname, ci.key, now_ms});
      ci_db.push_back(to_i64(rows.at(0).at(0)));
      ++r.cis_added;
      history.push_back(
          {tname, ci.key, "ci", "", std::string(to_string(creator)), nullptr, "created"});
    }
    const CiType& t = next.schema().type(ci.type);
    for (const auto& v : ci.values) {
      const AttributeValue* before =
          id < old.ci_count() ? old.value(id, v.attr, v.source) : nullptr;
      const bool changed = !before || before->value != v.value;
      if (!changed && before->last_seen_ms == v.last_seen_ms) continue;
      w("INSERT INTO cmdb_values (ci_id, attr, source, value, last_seen_ms) VALUES ($1, $2, $3, "
        "$4, $5)"
        " ON CONFLICT (ci_id, attr, source) DO UPDATE SET value = excluded.value,"
        " last_seen_ms = excluded.last_seen_ms",
        {ci_db[id], t.attributes[v.attr].name, std::string(to_string(v.source)), to_text(v.value),
         v.last_seen_ms});
      if (changed) {
        ++r.values_changed;
        history.push_back({t.name, ci.key, "attribute", t.attributes[v.attr].name,
                           std::string(to_string(v.source)),
                           before ? value_json(before->value) : Json(nullptr),
                           value_json(v.value)});
      }
    }
    if (id < old.ci_count()) {  // values gone (none of the writes here remove one; kept general)
      for (const auto& v : old.ci(id).values) {
        if (next.value(id, v.attr, v.source)) continue;
        w("DELETE FROM cmdb_values WHERE ci_id = $1 AND attr = $2 AND source = $3",
          {ci_db[id], t.attributes[v.attr].name, std::string(to_string(v.source))});
        ++r.values_changed;
        history.push_back({t.name, ci.key, "attribute", t.attributes[v.attr].name,
                           std::string(to_string(v.source)), value_json(v.value), nullptr});
      }
    }
  }

  std::vector<int64_t> rel_db = cur.rel_db;
  rel_db.resize(next.relation_slots(), 0);
  for (RelationId id = 0; id < next.relation_slots(); ++id) {
    const Relation& rel = next.relation(id);
    const bool was = id < old.relation_slots() && old.alive(id);
    const bool is = next.alive(id);
    const Ci& from = next.ci(rel.from);
    const std::string ftype = next.schema().type(from.type).name;
    const std::string kind(to_string(rel.kind));
    const std::string source(to_string(rel.source));
    if (is && !was) {
      auto rows =
          w("INSERT INTO cmdb_relations (kind, from_ci, to_ci, source, last_seen_ms)"
            " VALUES ($1, $2, $3, $4, $5) RETURNING id",
            {kind, ci_db[rel.from], ci_db[rel.to], source, rel.last_seen_ms});
      rel_db[id] = to_i64(rows.at(0).at(0));
      ++r.relations_added;
      history.push_back({ftype, from.key, "relation", kind, source, nullptr, ref(next, rel.to)});
    } else if (!is && was) {
      w("DELETE FROM cmdb_relations WHERE id = $1", {rel_db[id]});
      ++r.relations_removed;
      history.push_back({ftype, from.key, "relation", kind, source, ref(next, rel.to), nullptr});
    } else if (is && was && old.relation(id).last_seen_ms != rel.last_seen_ms) {
      w("UPDATE cmdb_relations SET last_seen_ms = $1 WHERE id = $2",
        {rel.last_seen_ms, rel_db[id]});
    }
  }

  for (const auto& h : history) {
    w("INSERT INTO cmdb_history (at_ms, type, key, what, field, source, old_value, new_value, "
      "change_id,"
      " actor, reason) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11)",
      {now_ms, h.type, h.key, h.what, h.field, h.source, h.old_value.dump(), h.new_value.dump(),
       p.change_id, p.actor, p.reason});
  }
  r.history = static_cast<int64_t>(history.size());
  r.written = true;
  // Nothing moved (a file imported again): the revision stays, and so do other control planes'
  // cached models.
  if (statements > 0) q(c, "UPDATE cmdb_revision SET value = value + 1 WHERE one = 1", {});
  // The cache follows the write once the transaction commits (the caller moves it in): under
  // kCmdbLock no other writer moved the revision since current() read it.
  fresh = Loaded{std::move(next), std::move(ci_db), std::move(rel_db),
                 cur.revision + (statements > 0 ? 1 : 0)};
  return r;
}

std::vector<HistoryEntry> Cmdb::history(const std::string& type, const std::string& key,
                                        int64_t limit, int64_t before) {
  std::vector<HistoryEntry> out;
  store_.in_transaction("cmdb history", Tx::kRead, [&](SqlConnection& c) {
    auto rows = q(
        c,
        "SELECT id, at_ms, type, key, what, field, source, old_value, new_value, change_id, actor,"
        " reason FROM cmdb_history WHERE type = $1 AND key = $2 AND ($3 <= 0 OR id < $3)"
        " ORDER BY id DESC LIMIT $4",
        {type, key, before, limit});
    for (auto& r : rows) {
      HistoryEntry e;
      e.id = to_i64(r[0]);
      e.at_ms = to_i64(r[1]);
      e.type = std::move(r[2]);
      e.key = std::move(r[3]);
      e.what = std::move(r[4]);
      e.field = std::move(r[5]);
      e.source = std::move(r[6]);
      e.old_value = Json::parse(r[7]);
      e.new_value = Json::parse(r[8]);
      e.change_id = to_i64(r[9]);
      e.actor = std::move(r[10]);
      e.reason = std::move(r[11]);
      out.push_back(std::move(e));
    }
  });
  return out;
}

}  // namespace sluice::control::cmdb
