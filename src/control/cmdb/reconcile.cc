#include "control/cmdb/reconcile.h"

#include <fmt/format.h>

#include <algorithm>
#include <tuple>
#include <unordered_map>
#include <unordered_set>

namespace sluice::control::cmdb {
namespace {

constexpr std::int64_t kNever = INT64_MIN;
constexpr int kMaxChain = 8;  // belongs_to hops followed for an owner

std::string lower(std::string_view s) {
  std::string out(s);
  for (char& c : out) {
    if (c >= 'A' && c <= 'Z') c = static_cast<char>(c - 'A' + 'a');
  }
  return out;
}

std::uint64_t edge_key(CiId from, CiId to) {
  return (static_cast<std::uint64_t>(from) << 32) | to;
}

std::string rule_slot(const Schema& s, RelationKind kind, TypeId to) {
  return fmt::format("{}:{}", to_string(kind), s.type(to).name);
}

// Per-CI facts a pass computes once.
struct CiState {
  std::int64_t last_observed = kNever;
  bool declared = false;
  bool current = false;
  bool live() const { return declared || current; }
};

class Pass {
 public:
  Pass(const Graph& g, const Policy& p, std::int64_t now) : g_(g), p_(p), now_(now) {}

  ReconcileResult run() {
    states();
    const Schema& s = g_.schema();
    std::vector<TypeAccuracy> types(s.type_count());
    for (TypeId t = 0; t < s.type_count(); ++t) types[t].type = s.type(t).name;
    std::vector<std::uint8_t> seen_type(s.type_count(), 0);
    for (const Ci& ci : g_.cis()) {
      const CiState& st = st_[ci.id];
      if (!st.live()) continue;
      ++out_.live_cis;
      seen_type[ci.type] = 1;
      TypeAccuracy& ta = types[ci.type];
      if (!st.declared) {
        add(FindingKind::kMissing, ci.id, "", "", "", std::nullopt, "",
            "declare it: `cmdb fix` takes its observed values and relations as declared", true);
      }
      if (st.declared && p_.observed_type(ci.type)) {
        ++ta.freshness.den;
        if (st.current) {
          ++ta.freshness.num;
        } else {
          add(FindingKind::kStale, ci.id, "", "", "", std::nullopt, "",
              st.last_observed == kNever
                  ? "never observed: start it, or retire it (`cmdb fix` removes its declared "
                    "record)"
                  : fmt::format(
                        "last observed {} s ago: start it, or retire it (`cmdb fix` removes "
                        "its declared record)",
                        (now_ - st.last_observed) / 1000),
              true);
        }
      }
      attributes(ci, st, ta);
      relations(ci, st, ta);
    }
    ownership();
    duplicates();
    dependencies();
    for (TypeId t = 0; t < s.type_count(); ++t) {
      if (!seen_type[t]) continue;
      out_.accuracy.correctness += types[t].correctness;
      out_.accuracy.completeness += types[t].completeness;
      out_.accuracy.freshness += types[t].freshness;
      out_.accuracy.types.push_back(std::move(types[t]));
    }
    std::sort(out_.findings.begin(), out_.findings.end(), [](const Finding& a, const Finding& b) {
      return std::tie(a.kind, a.subject, a.attribute, a.other, a.observed) <
             std::tie(b.kind, b.subject, b.attribute, b.other, b.observed);
    });
    return std::move(out_);
  }

 private:
  void states() {
    st_.assign(g_.ci_count(), {});
    for (const Ci& ci : g_.cis()) {
      CiState& st = st_[ci.id];
      for (const AttributeValue& v : ci.values) {
        if (is_observed(v.source)) {
          st.last_observed = std::max(st.last_observed, v.last_seen_ms);
        } else {
          st.declared = true;
        }
      }
    }
    for (RelationId r = 0; r < g_.relation_slots(); ++r) {
      if (!g_.alive(r)) continue;
      const Relation& rel = g_.relation(r);
      if (!is_observed(rel.source)) {
        st_[rel.from].declared = true;
        continue;
      }
      for (CiId c : {rel.from, rel.to}) {
        st_[c].last_observed = std::max(st_[c].last_observed, rel.last_seen_ms);
      }
    }
    for (const Ci& ci : g_.cis()) {
      CiState& st = st_[ci.id];
      st.current = st.last_observed != kNever && now_ - st.last_observed <= p_.window(ci.type);
    }
  }

  void attributes(const Ci& ci, const CiState& st, TypeAccuracy& ta) {
    const CiType& type = g_.schema().type(ci.type);
    const std::int64_t window = p_.window(ci.type);
    // values are sorted by (attr, source): one scan gives each attribute's declared and newest
    // observed value.
    std::size_t i = 0;
    std::vector<std::uint8_t> filled(type.attributes.size(), 0);
    while (i < ci.values.size()) {
      const AttrId a = ci.values[i].attr;
      const AttributeValue* d = nullptr;
      const AttributeValue* o = nullptr;
      for (; i < ci.values.size() && ci.values[i].attr == a; ++i) {
        const AttributeValue& v = ci.values[i];
        if (!is_observed(v.source)) {
          d = &v;
        } else if (!o || v.last_seen_ms > o->last_seen_ms) {
          o = &v;
        }
      }
      if (d && a < filled.size()) filled[a] = 1;
      if (!st.declared || !d || !o || now_ - o->last_seen_ms > window) continue;
      if (std::find(type.key.begin(), type.key.end(), a) != type.key.end()) continue;
      ++ta.correctness.den;
      if (d->value == o->value) {
        ++ta.correctness.num;
        continue;
      }
      const std::string& name = type.attributes[a].name;
      add(FindingKind::kMismatch, ci.id, name, to_text(d->value), to_text(o->value), o->source, "",
          p_.declared_wins(ci.type, a)
              ? fmt::format("the declared value stands: correct what {} reports, or take its "
                            "value with `cmdb fix`",
                            to_string(o->source))
              : fmt::format("take the observed value ({} wins for {}): `cmdb fix`",
                            to_string(o->source), name),
          true);
    }
    for (AttrId a = 0; a < type.attributes.size(); ++a) {
      if (!type.attributes[a].required) continue;
      ++ta.completeness.den;
      ta.completeness.num += filled[a];
    }
  }

  // One-target relation rules: correctness and mismatches; exactly_one rules: completeness.
  void relations(const Ci& ci, const CiState& st, TypeAccuracy& ta) {
    const Schema& s = g_.schema();
    for (const RelationRule& rule : s.rules()) {
      if (rule.from != ci.type || rule.cardinality == Cardinality::kMany) continue;
      std::vector<CiId> declared;
      const Relation* newest = nullptr;
      for (RelationId r : g_.out(ci.id)) {
        const Relation& rel = g_.relation(r);
        if (rel.kind != rule.kind || g_.ci(rel.to).type != rule.to) continue;
        if (!is_observed(rel.source)) {
          declared.push_back(rel.to);
        } else if (now_ - rel.last_seen_ms <= p_.window(ci.type) &&
                   (!newest || rel.last_seen_ms > newest->last_seen_ms)) {
          newest = &rel;
        }
      }
      if (rule.cardinality == Cardinality::kExactlyOne) {
        ++ta.completeness.den;
        if (!declared.empty()) ++ta.completeness.num;
      }
      if (!st.declared || declared.empty() || !newest) continue;
      ++ta.correctness.den;
      if (std::find(declared.begin(), declared.end(), newest->to) != declared.end()) {
        ++ta.correctness.num;
        continue;
      }
      std::string d;
      for (CiId c : declared) d += (d.empty() ? "" : ",") + g_.subject(c);
      add(FindingKind::kMismatch, ci.id, rule_slot(s, rule.kind, rule.to), d,
          g_.subject(newest->to), newest->source, "",
          fmt::format("take the observed {} {}: `cmdb fix`", to_string(rule.kind),
                      g_.subject(newest->to)),
          true);
    }
  }

  // unowned: services, applications, databases and business systems.
  void ownership() {
    const Schema& s = g_.schema();
    const auto bs = s.find_type("business_system");
    std::vector<TypeId> owned;
    for (const char* n : {"business_system", "application", "service", "database"}) {
      if (auto t = s.find_type(n)) owned.push_back(*t);
    }
    for (TypeId t : owned) {
      for (CiId c : g_.of_type(t)) {
        if (!st_[c].live()) continue;
        bool has_owner = false;
        bool has_bs = t == bs;
        // Up the belongs_to chain (breadth first, bounded), the CI itself first.
        std::vector<CiId> frontier{c};
        std::unordered_set<CiId> seen{c};
        for (int depth = 0; depth <= kMaxChain && !frontier.empty(); ++depth) {
          std::vector<CiId> next;
          for (CiId x : frontier) {
            const TypeId xt = g_.ci(x).type;
            if (auto a = s.type(xt).attribute("owner")) {
              const AttributeValue* v = effective(g_, p_, x, *a);
              if (v && !to_text(v->value).empty()) has_owner = true;
            }
            if (xt == bs) has_bs = true;
            for (RelationId r : g_.out(x)) {
              const Relation& rel = g_.relation(r);
              if (rel.kind != RelationKind::kBelongsTo || !relation_current(g_, p_, r, now_)) {
                continue;
              }
              if (seen.insert(rel.to).second) next.push_back(rel.to);
            }
          }
          frontier = std::move(next);
        }
        if (!has_owner) {
          add(FindingKind::kUnowned, c, "owner", "", "", std::nullopt, "",
              "declare its owner (or its application's or business system's) in an import", false);
        }
        if (!has_bs) {
          add(FindingKind::kUnowned, c, "business_system", "", "", std::nullopt, "",
              "declare which business system it belongs_to in an import", false);
        }
      }
    }
  }

  void duplicates() {
    const Schema& s = g_.schema();
    for (TypeId t = 0; t < s.type_count(); ++t) {
      std::unordered_map<std::string, CiId> keys;
      for (CiId c : g_.of_type(t)) {
        if (!st_[c].live()) continue;
        auto [it, fresh] = keys.try_emplace(lower(g_.ci(c).key), c);
        if (!fresh) {
          add(FindingKind::kDuplicate, c, "key", "", "", std::nullopt, g_.subject(it->second),
              fmt::format("one thing under two keys ({} and {}): keep one in an import",
                          g_.subject(it->second), g_.subject(c)),
              false);
        }
      }
    }
    for (const char* type : {"instance", "gateway"}) {
      auto t = s.find_type(type);
      if (!t) continue;
      auto a = s.type(*t).attribute("address");
      if (!a) continue;
      std::unordered_map<std::string, CiId> seen;
      for (CiId c : g_.of_type(*t)) {
        if (!st_[c].current) continue;
        const AttributeValue* v = effective(g_, p_, c, *a);
        if (!v) continue;
        std::string addr = to_text(v->value);
        if (addr.empty()) continue;
        auto [it, fresh] = seen.try_emplace(addr, c);
        if (!fresh) {
          add(FindingKind::kDuplicate, c, "address", "", addr, std::nullopt, g_.subject(it->second),
              fmt::format("{} and {} both have address {}: keep one in an import",
                          g_.subject(it->second), g_.subject(c), addr),
              false);
        }
      }
    }
  }

  void dependencies() {
    const auto svc = g_.schema().find_type("service");
    if (!svc) return;
    std::unordered_map<std::uint64_t, std::pair<CiId, CiId>> declared, observed;
    std::unordered_map<std::uint64_t, Source> observed_by;
    for (RelationId r = 0; r < g_.relation_slots(); ++r) {
      if (!g_.alive(r)) continue;
      const Relation& rel = g_.relation(r);
      if (rel.kind != RelationKind::kDependsOn || g_.ci(rel.from).type != *svc ||
          g_.ci(rel.to).type != *svc)
        continue;
      const std::uint64_t k = edge_key(rel.from, rel.to);
      if (!is_observed(rel.source)) {
        declared.emplace(k, std::pair{rel.from, rel.to});
      } else if (now_ - rel.last_seen_ms <= p_.traffic_window()) {
        observed.emplace(k, std::pair{rel.from, rel.to});
        observed_by[k] = rel.source;
      }
    }
    Ratio& precision = out_.accuracy.precision;
    Ratio& recall = out_.accuracy.recall;
    precision.den = static_cast<std::int64_t>(declared.size());
    recall.den = static_cast<std::int64_t>(observed.size());
    for (const auto& [k, e] : declared) {
      if (observed.contains(k)) {
        ++precision.num;
        continue;
      }
      add(FindingKind::kUnusedDependency, e.first, "depends_on", g_.subject(e.second), "",
          std::nullopt, g_.subject(e.second),
          fmt::format("no call seen in the last {} s: remove the declared edge (`cmdb fix`) if it "
                      "is gone",
                      p_.traffic_window() / 1000),
          true);
    }
    recall.num = precision.num;
    for (const auto& [k, e] : observed) {
      if (declared.contains(k)) continue;
      add(FindingKind::kUndeclaredDependency, e.first, "depends_on", "", g_.subject(e.second),
          observed_by[k], g_.subject(e.second), "declare the edge: `cmdb fix`", true);
    }
  }

  void add(FindingKind kind, CiId ci, std::string attribute, std::string declared,
           std::string observed, std::optional<Source> source, std::string other, std::string fix,
           bool fixable) {
    Finding f;
    f.kind = kind;
    f.ci = ci;
    f.subject = g_.subject(ci);
    f.attribute = std::move(attribute);
    f.declared = std::move(declared);
    f.observed = std::move(observed);
    f.observed_source = source;
    f.other = std::move(other);
    f.fix = std::move(fix);
    f.fixable = fixable;
    f.id = finding_id(f);
    out_.findings.push_back(std::move(f));
  }

  const Graph& g_;
  const Policy& p_;
  const std::int64_t now_;
  std::vector<CiState> st_;
  ReconcileResult out_;
};

// "kind:type" of a one-target relation finding.
std::optional<std::pair<RelationKind, TypeId>> parse_slot(const Schema& s, std::string_view slot) {
  auto colon = slot.find(':');
  if (colon == std::string_view::npos) return std::nullopt;
  auto kind = parse_relation_kind(slot.substr(0, colon));
  auto type = s.find_type(slot.substr(colon + 1));
  if (!kind || !type) return std::nullopt;
  return std::pair{*kind, *type};
}

std::optional<CiId> find_subject(const Graph& g, std::string_view subject) {
  auto slash = subject.find('/');
  if (slash == std::string_view::npos) return std::nullopt;
  return g.find(subject.substr(0, slash), subject.substr(slash + 1));
}

}  // namespace

Policy::Policy(const Schema& schema, const ReconcileOptions& o)
    : traffic_window_(o.traffic_window_ms) {
  windows_.resize(schema.type_count(), o.window_ms);
  observed_.resize(schema.type_count(), 0);
  declared_wins_.resize(schema.type_count());
  for (TypeId t = 0; t < schema.type_count(); ++t) {
    const CiType& type = schema.type(t);
    if (auto it = o.type_windows.find(type.name); it != o.type_windows.end()) {
      windows_[t] = it->second;
    }
    observed_[t] = std::find(o.observed_types.begin(), o.observed_types.end(), type.name) !=
                   o.observed_types.end();
    declared_wins_[t].resize(type.attributes.size(), 0);
    for (AttrId a = 0; a < type.attributes.size(); ++a) {
      declared_wins_[t][a] = std::find(o.declared_wins.begin(), o.declared_wins.end(),
                                       type.attributes[a].name) != o.declared_wins.end();
    }
  }
}

bool relation_current(const Graph& g, const Policy& p, RelationId r, std::int64_t now) {
  const Relation& rel = g.relation(r);
  if (!is_observed(rel.source)) return true;
  const std::int64_t window = rel.kind == RelationKind::kDependsOn && rel.source == Source::kTraffic
                                  ? p.traffic_window()
                                  : p.window(g.ci(rel.from).type);
  return now - rel.last_seen_ms <= window;
}

const AttributeValue* effective(const Graph& g, const Policy& p, CiId ci, AttrId attr) {
  const AttributeValue* d = g.declared(ci, attr);
  if (p.declared_wins(g.ci(ci).type, attr) && d) return d;
  const AttributeValue* o = g.observed(ci, attr);
  return o ? o : d;
}

ReconcileResult reconcile(const Graph& g, const Policy& p, std::int64_t now) {
  return Pass(g, p, now).run();
}

std::vector<FixOp> plan_fix(const Graph& g, const Policy& p, const Finding& f, std::int64_t now) {
  std::vector<FixOp> ops;
  if (f.ci >= g.ci_count() || !f.fixable) return ops;
  const Ci& ci = g.ci(f.ci);
  const CiType& type = g.schema().type(ci.type);
  const std::int64_t window = p.window(ci.type);
  auto set = [&](AttrId a, const Value& v) {
    FixOp op;
    op.kind = FixOp::Kind::kSetValue;
    op.ci = f.ci;
    op.attr = a;
    op.value = v;
    ops.push_back(std::move(op));
  };
  auto relation = [&](FixOp::Kind k, RelationKind kind, CiId from, CiId to) {
    FixOp op;
    op.kind = k;
    op.ci = from;
    op.relation = kind;
    op.to = to;
    ops.push_back(std::move(op));
  };
  switch (f.kind) {
    case FindingKind::kMissing: {
      // The key first, so that the CI is declared even if nothing else is observed.
      for (AttrId a = 0; a < type.attributes.size(); ++a) {
        const AttributeValue* o = g.observed(f.ci, a);
        if (o && now - o->last_seen_ms <= window) set(a, o->value);
      }
      for (AttrId k : type.key) {
        if (std::none_of(ops.begin(), ops.end(), [&](const FixOp& op) { return op.attr == k; }) &&
            type.key.size() == 1) {
          set(k, Value(ci.key));
        }
      }
      for (RelationId r : g.out(f.ci)) {
        const Relation& rel = g.relation(r);
        if (is_observed(rel.source) && relation_current(g, p, r, now) &&
            !g.find_relation(rel.kind, rel.from, rel.to, Source::kDeclared)) {
          relation(FixOp::Kind::kAddRelation, rel.kind, rel.from, rel.to);
        }
      }
      break;
    }
    case FindingKind::kStale:
      for (const AttributeValue& v : ci.values) {
        if (!is_observed(v.source)) {
          FixOp op;
          op.kind = FixOp::Kind::kClearValue;
          op.ci = f.ci;
          op.attr = v.attr;
          ops.push_back(std::move(op));
        }
      }
      for (auto list : {g.out(f.ci), g.in(f.ci)}) {
        for (RelationId r : list) {
          const Relation& rel = g.relation(r);
          if (!is_observed(rel.source)) {
            relation(FixOp::Kind::kRemoveRelation, rel.kind, rel.from, rel.to);
          }
        }
      }
      break;
    case FindingKind::kMismatch:
      if (auto a = type.attribute(f.attribute)) {
        if (const AttributeValue* o = g.observed(f.ci, *a)) set(*a, o->value);
      } else if (auto slot = parse_slot(g.schema(), f.attribute)) {
        auto to = find_subject(g, f.observed);
        if (!to) break;
        for (RelationId r : g.out(f.ci)) {
          const Relation& rel = g.relation(r);
          if (!is_observed(rel.source) && rel.kind == slot->first &&
              g.ci(rel.to).type == slot->second) {
            relation(FixOp::Kind::kRemoveRelation, rel.kind, rel.from, rel.to);
          }
        }
        relation(FixOp::Kind::kAddRelation, slot->first, f.ci, *to);
      }
      break;
    case FindingKind::kUndeclaredDependency:
      if (auto to = find_subject(g, f.other)) {
        relation(FixOp::Kind::kAddRelation, RelationKind::kDependsOn, f.ci, *to);
      }
      break;
    case FindingKind::kUnusedDependency:
      if (auto to = find_subject(g, f.other)) {
        relation(FixOp::Kind::kRemoveRelation, RelationKind::kDependsOn, f.ci, *to);
      }
      break;
    case FindingKind::kUnowned:
    case FindingKind::kDuplicate:
      break;
  }
  return ops;
}

void apply_fix(Graph& g, std::span<const FixOp> ops, std::int64_t now) {
  for (const FixOp& op : ops) {
    switch (op.kind) {
      case FixOp::Kind::kSetValue:
        g.set_value(op.ci, op.attr, Source::kDeclared, op.value, now);
        break;
      case FixOp::Kind::kClearValue:
        g.clear_value(op.ci, op.attr, Source::kDeclared);
        break;
      case FixOp::Kind::kAddRelation:
        g.upsert_relation(op.relation, op.ci, op.to, Source::kDeclared, now);
        break;
      case FixOp::Kind::kRemoveRelation:
        if (auto r = g.find_relation(op.relation, op.ci, op.to, Source::kDeclared)) {
          g.remove_relation(*r);
        }
        break;
    }
  }
}

}  // namespace sluice::control::cmdb
