#include "control/cmdb/reconcile_service.h"

#include <fmt/format.h>

#include <algorithm>
#include <array>

#include "control/cmdb/impact.h"
#include "control/rest.h"
#include "core/json.h"
#include "core/log.h"

namespace sluice::control::cmdb {
namespace {

using Json = nlohmann::json;

constexpr std::array<const char*, 3> kTypeMeasures = {"correctness", "completeness", "freshness"};

double measure(const Accuracy& a, const std::string& type, std::string_view m) {
  if (type == "all") {
    if (m == "correctness") return a.correctness.value();
    if (m == "completeness") return a.completeness.value();
    if (m == "freshness") return a.freshness.value();
    if (m == "precision") return a.precision.value();
    if (m == "recall") return a.recall.value();
    return a.score();
  }
  for (const TypeAccuracy& t : a.types) {
    if (t.type != type) continue;
    if (m == "correctness") return t.correctness.value();
    if (m == "completeness") return t.completeness.value();
    return t.freshness.value();
  }
  return 1.0;  // no live CI of the type: nothing wrong
}

// {"reason": R} with R bounded; `required`: present and not blank.
std::optional<std::string> reason_of(const Call& c, bool required, HttpResponse& bad) {
  std::string reason;
  if (!c.req.body.empty() || required) {
    auto body = parse_body(c.req.body.empty() ? "{}" : c.req.body, bad);
    if (!body) return std::nullopt;
    std::vector<std::string> errors;
    Fields f(*body, "", errors, {"reason"});
    if (auto r = f.string("reason", required)) {
      if (r->size() > kMaxReasonBytes) {
        f.error("reason", fmt::format("{} bytes; at most {}", r->size(), kMaxReasonBytes));
      } else if (has_control_chars(*r)) {
        f.error("reason", kControlCharsError);
      } else if (required && is_blank(*r)) {
        f.error("reason", "must not be blank: say why the observed value is right");
      }
      reason = *r;
    }
    if (!errors.empty()) {
      bad = error_response(400, errors.front(), errors);
      return std::nullopt;
    }
  }
  return reason;
}

}  // namespace

std::unique_ptr<Extension> make_reconcile_extension(ServiceContext& ctx, Cmdb& cmdb) {
  return std::make_unique<ReconcileExtension>(ctx, cmdb);
}

ReconcileExtension::ReconcileExtension(ServiceContext& ctx, Cmdb& cmdb) : ctx_(ctx), cmdb_(cmdb) {
  const ApiOptions& o = ctx.options;
  interval_ms_ = o.cmdb_reconcile_interval_ms;
  options_.window_ms = o.cmdb_window_ms;
  options_.traffic_window_ms = o.cmdb_traffic_window_ms;
  reconciles_ =
      &ctx.metrics.counter("sluice_control_cmdb_reconciles_total", "CMDB reconciliation passes");
  fixes_ = &ctx.metrics.counter("sluice_control_cmdb_fixes_total",
                                "CMDB findings fixed through the API");
  for (std::size_t k = 0; k < kFindingKindCount; ++k) {
    ctx.metrics.gauge("sluice_control_cmdb_findings", "Open (not ignored) CMDB findings by kind",
                      {{"kind", std::string(to_string(static_cast<FindingKind>(k)))}});
  }
  for (const char* m :
       {"correctness", "completeness", "freshness", "precision", "recall", "score"}) {
    ctx.metrics.gauge_fn(
        "sluice_control_cmdb_accuracy",
        "CMDB accuracy (0..1) per CI type and overall (type=\"all\"); docs/cmdb.md",
        [this, m] {
          std::lock_guard lock(mu_);
          return measure(accuracy_, "all", m);
        },
        {{"type", "all"}, {"measure", m}});
  }
}

std::vector<Route> ReconcileExtension::routes() {
  auto bind = [this](auto fn) { return member_route(this, fn); };
  using S = ReconcileExtension;
  return {
      {"GET", {"v1", "cmdb", "findings"}, Role::kViewer, bind(&S::get_findings)},
      {"POST", {"v1", "cmdb", "findings", "{}", "fix"}, Role::kOperator, bind(&S::post_fix)},
      {"POST", {"v1", "cmdb", "findings", "{}", "ignore"}, Role::kOperator, bind(&S::post_ignore)},
      {"GET", {"v1", "cmdb", "accuracy"}, Role::kViewer, bind(&S::get_accuracy)},
      {"GET", {"v1", "cmdb", "impact", "{}", "{}"}, Role::kViewer, bind(&S::get_impact)},
  };
}

void ReconcileExtension::tick(int64_t now) {
  const Revision feed = ctx_.feed->current();
  bool due = now >= next_ms_ || !(feed == seen_feed_);
  if (!due) {
    ctx_.guarded("cmdb revision", [&] {
      const std::int64_t rev = cmdb_.revision();
      std::lock_guard run_lock(run_mu_);
      due = rev != seen_cmdb_;
    });
  }
  if (!due) return;
  // A failed pass is retried on the next tick's interval, not at once.
  next_ms_ = now + interval_ms_;
  seen_feed_ = feed;
  ctx_.guarded("cmdb reconcile", [&] { run(now); });
}

void ReconcileExtension::observe_registry(int64_t now) {
  Observed o;
  o.source = Source::kRegistry;
  o.seen_ms = now;
  for (const Instance& i : ctx_.store.instances("")) {
    Observed::Item item{"instance", i.id, {}};
    item.values.emplace_back("id", Value(i.id));
    item.values.emplace_back("service", Value(i.service));
    item.values.emplace_back("address", Value(i.address));
    if (!i.city.empty()) item.values.emplace_back("city", Value(i.city));
    if (!i.zone.empty()) item.values.emplace_back("zone", Value(i.zone));
    // Host facts the instance registered with (checked by the registry; docs/control-plane.md).
    const Json facts = i.facts.empty() ? Json::object() : core::parse_json_or_discarded(i.facts);
    if (facts.is_object()) {
      if (auto v = facts.find("version"); v != facts.end() && v->is_string())
        item.values.emplace_back("version", Value(v->get<std::string>()));
      if (auto v = facts.find("started_ms"); v != facts.end() && v->is_number_integer())
        item.values.emplace_back("started_ms", Value(v->get<std::int64_t>()));
      if (auto h = facts.find("hostname"); h != facts.end() && h->is_string()) {
        const std::string host = h->get<std::string>();
        item.values.emplace_back("host", Value(host));
        Observed::Item hi{"host", host, {{"hostname", Value(host)}}};
        if (auto a = facts.find("addresses"); a != facts.end() && a->is_array()) {
          std::string joined;
          for (const Json& x : *a) {
            if (x.is_string()) joined += (joined.empty() ? "" : ",") + x.get<std::string>();
          }
          if (!joined.empty()) hi.values.emplace_back("addresses", Value(joined));
        }
        if (auto n = facts.find("cpu_count"); n != facts.end() && n->is_number_integer())
          hi.values.emplace_back("cpus", Value(n->get<std::int64_t>()));
        if (auto n = facts.find("memory_bytes"); n != facts.end() && n->is_number_integer())
          hi.values.emplace_back("memory_bytes", Value(n->get<std::int64_t>()));
        o.cis.push_back(std::move(hi));
        o.relations.push_back({RelationKind::kRunsOn, "instance", i.id, "host", host});
      }
    }
    o.cis.push_back(std::move(item));
    o.cis.push_back({"service", i.service, {{"name", Value(i.service)}}});
    o.relations.push_back({RelationKind::kBelongsTo, "instance", i.id, "service", i.service});
  }
  if (o.cis.empty()) return;
  WriteResult w = cmdb_.record(o, Provenance{"reconciler", "registry", 0});
  if (!w.errors.empty()) {
    core::log_warn("control: cmdb: {} registry facts refused: {}", w.errors.size(),
                   w.errors.front().to_string());
  }
}

void ReconcileExtension::observe_traffic(int64_t now) {
  if (!ctx_.observed) return;
  // Each edge and channel with the time a gateway last counted it, so that an edge stops being
  // current a traffic window after its last call, not after this pass.
  Observed o;
  o.source = Source::kTraffic;
  o.seen_ms = now;
  const int64_t from = now - options_.traffic_window_ms;
  for (const ObservedEdge& e : ctx_.observed->edges(from, now + 1)) {
    // "other" and "invalid" stand for callers a gateway could not name (docs/operations.md).
    if (e.caller == "other" || e.caller == "invalid" || e.caller.empty() || e.callee.empty())
      continue;
    Observed::Link l{RelationKind::kDependsOn, "service", e.caller, "service", e.callee};
    l.seen_ms = e.last_seen_ms;
    o.relations.push_back(std::move(l));
  }
  for (const ObservedChannel& ch : ctx_.observed->channels(from, now + 1)) {
    if (ch.channel == "other" || ch.channel == "invalid" || ch.channel.empty()) continue;
    Observed::Item item{"channel", ch.channel, {{"name", Value(ch.channel)}}};
    item.seen_ms = ch.last_seen_ms;
    o.cis.push_back(std::move(item));
  }
  if (o.cis.empty() && o.relations.empty()) return;
  WriteResult w = cmdb_.record(o, Provenance{"reconciler", "traffic", 0});
  if (!w.errors.empty()) {
    core::log_warn("control: cmdb: {} traffic facts refused: {}", w.errors.size(),
                   w.errors.front().to_string());
  }
}

void ReconcileExtension::run(int64_t now) {
  std::lock_guard run_lock(run_mu_);
  observe_registry(now);
  observe_traffic(now);
  // The revision first: a write after it moves it again, and the next tick sees that.
  seen_cmdb_ = cmdb_.revision();
  Graph g = cmdb_.load();
  ReconcileResult r = reconcile(g, Policy(g.schema(), options_), now);
  reconciles_->inc();
  std::lock_guard lock(mu_);
  book_.update(std::move(r.findings), now);
  accuracy_ = std::move(r.accuracy);
  graph_ = std::make_shared<const Graph>(std::move(g));
  ++passes_;
  publish();
}

void ReconcileExtension::publish() {
  auto open = book_.open_by_kind();
  for (std::size_t k = 0; k < kFindingKindCount; ++k) {
    ctx_.metrics
        .gauge("sluice_control_cmdb_findings", "Open (not ignored) CMDB findings by kind",
               {{"kind", std::string(to_string(static_cast<FindingKind>(k)))}})
        .set(open[k]);
  }
  for (const TypeAccuracy& t : accuracy_.types) {
    if (std::find(accuracy_types_.begin(), accuracy_types_.end(), t.type) != accuracy_types_.end())
      continue;
    accuracy_types_.push_back(t.type);
    for (const char* m : kTypeMeasures) {
      // Registered once per type; reads the latest figures (1 once the type has no live CI).
      ctx_.metrics.gauge_fn(
          "sluice_control_cmdb_accuracy",
          "CMDB accuracy (0..1) per CI type and overall (type=\"all\"); docs/cmdb.md",
          [this, type = t.type, m] {
            std::lock_guard lock(mu_);
            return measure(accuracy_, type, m);
          },
          {{"type", t.type}, {"measure", m}});
    }
  }
}

HttpResponse ReconcileExtension::get_findings(const Call& c) {
  std::optional<FindingKind> kind;
  if (auto k = query_param(c.req.query, "kind"); k && !k->empty()) {
    kind = parse_finding_kind(*k);
    if (!kind) {
      std::string known;
      for (std::size_t i = 0; i < kFindingKindCount; ++i)
        known += (i ? ", " : "") + std::string(to_string(static_cast<FindingKind>(i)));
      return error_response(400, fmt::format("kind: unknown '{}'; one of {}", *k, known));
    }
  }
  bool ignored = false;
  if (auto v = query_param(c.req.query, "ignored")) {
    if (*v != "true" && *v != "false")
      return error_response(400, fmt::format("ignored: expected true or false, got '{}'", *v));
    ignored = *v == "true";
  }
  std::lock_guard lock(mu_);
  Json out = book_.to_json(ignored, kind);
  out["passes"] = passes_;
  return json_response(200, out);
}

HttpResponse ReconcileExtension::post_fix(const Call& c) {
  HttpResponse bad;
  auto reason = reason_of(c, true, bad);
  if (!reason) return bad;
  const std::string& id = c.params[0];
  // The finding is found again, and its fix planned and applied, on the model as it is inside
  // the write: a fix never applies to data that moved since the list was read.
  std::optional<Finding> found;
  std::string refusal;
  int status = 0;
  WriteResult w = cmdb_.edit(
      [&](Graph& g) -> std::vector<ModelError> {
        found.reset();
        Policy p(g.schema(), options_);
        ReconcileResult r = reconcile(g, p, c.now);
        auto it = std::find_if(r.findings.begin(), r.findings.end(),
                               [&](const Finding& f) { return f.id == id; });
        if (it == r.findings.end()) {
          status = 404;
          refusal = fmt::format(
              "no open finding {}: it was fixed, or the data moved on (GET /v1/cmdb/findings)", id);
          return {ModelError{{}, id, refusal}};
        }
        found = *it;
        auto ops = plan_fix(g, p, *it, c.now);
        if (ops.empty()) {
          status = 409;
          refusal = fmt::format("finding {} ({} {}) cannot be fixed from observed data: {}", id,
                                to_string(it->kind), it->subject, it->fix);
          return {ModelError{{}, id, refusal}};
        }
        apply_fix(g, ops, c.now);
        return {};
      },
      Provenance{c.who.name, *reason, 0}, c.now);
  if (status != 0) return error_response(status, refusal);
  if (!w.errors.empty()) {
    std::vector<std::string> errors;
    for (const auto& e : w.errors) errors.push_back(e.to_string());
    return error_response(409, "the fix would leave the CMDB invalid; nothing was written", errors);
  }
  fixes_->inc();
  ctx_.guarded("cmdb reconcile", [&] { run(c.now); });
  Json out = {{"fixed", to_json(*found)}, {"reason", *reason}, {"write", w.to_json()}};
  return json_response(200, out);
}

HttpResponse ReconcileExtension::post_ignore(const Call& c) {
  HttpResponse bad;
  auto reason = reason_of(c, false, bad);
  if (!reason) return bad;
  const std::string& id = c.params[0];
  std::lock_guard lock(mu_);
  if (!book_.ignore(id, {c.who.name, *reason, c.now}))
    return error_response(404, fmt::format("no open finding {} (GET /v1/cmdb/findings)", id));
  publish();
  const Finding* f = book_.find(id);
  Json out = to_json(*f);
  out["ignored"] = {{"by", c.who.name}, {"reason", *reason}, {"at_ms", c.now}};
  return json_response(200, out);
}

HttpResponse ReconcileExtension::get_accuracy(const Call&) {
  std::lock_guard lock(mu_);
  Json out = to_json(accuracy_);
  out["updated_ms"] = book_.updated_ms();
  out["passes"] = passes_;
  return json_response(200, out);
}

HttpResponse ReconcileExtension::get_impact(const Call& c) {
  const std::string& type = c.params[0];
  const std::string& key = c.params[1];
  std::shared_ptr<const Graph> snapshot;
  {
    std::lock_guard lock(mu_);
    snapshot = graph_;
  }
  if (!snapshot) snapshot = std::make_shared<const Graph>(cmdb_.load());
  const Graph& g = *snapshot;
  if (!g.schema().find_type(type))
    return error_response(404, fmt::format("unknown CI type '{}'", type));
  auto ci = g.find(type, key);
  if (!ci) return error_response(404, fmt::format("no CI {}/{}", type, key));
  return json_response(200, to_json(impact(g, Policy(g.schema(), options_), *ci, c.now)));
}

}  // namespace sluice::control::cmdb
