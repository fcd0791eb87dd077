#include "control/cmdb/cmdb_service.h"

#include <fmt/format.h>

#include "control/rest.h"
#include "core/log.h"

namespace sluice::control::cmdb {
namespace {

using Json = nlohmann::json;

Json value_entry(const AttributeValue& v) {
  return {{"value", value_json(v.value)},
          {"source", to_string(v.source)},
          {"last_seen_ms", v.last_seen_ms}};
}

// The first kMaxListedErrors, and a last line counting the rest: a hostile file can hold
// hundreds of thousands of mistakes, and the answer stays bounded.
constexpr std::size_t kMaxListedErrors = 1000;

std::vector<std::string> error_strings(const std::vector<ModelError>& errors) {
  std::vector<std::string> out;
  out.reserve(std::min(errors.size(), kMaxListedErrors + 1));
  for (std::size_t i = 0; i < errors.size() && i < kMaxListedErrors; ++i)
    out.push_back(errors[i].to_string());
  if (errors.size() > kMaxListedErrors)
    out.push_back(fmt::format("... and {} more errors", errors.size() - kMaxListedErrors));
  return out;
}

}  // namespace

Json ci_json(const Graph& g, CiId id, bool incoming) {
  const Ci& ci = g.ci(id);
  const CiType& t = g.schema().type(ci.type);
  Json attrs = Json::object();
  for (const auto& v : ci.values) attrs[t.attributes[v.attr].name].push_back(value_entry(v));
  Json out_rel = Json::array();
  for (RelationId r : g.out(id)) {
    const Relation& rel = g.relation(r);
    out_rel.push_back({{"relation", to_string(rel.kind)},
                       {"to", g.subject(rel.to)},
                       {"source", to_string(rel.source)},
                       {"last_seen_ms", rel.last_seen_ms}});
  }
  Json j = {{"type", t.name}, {"key", ci.key}, {"attributes", attrs}, {"relations", out_rel}};
  if (incoming) {
    Json in_rel = Json::array();
    for (RelationId r : g.in(id)) {
      const Relation& rel = g.relation(r);
      in_rel.push_back({{"relation", to_string(rel.kind)},
                        {"from", g.subject(rel.from)},
                        {"source", to_string(rel.source)},
                        {"last_seen_ms", rel.last_seen_ms}});
    }
    j["in"] = in_rel;
  }
  return j;
}

Json types_json(const Schema& s) {
  Json types = Json::array();
  for (const CiType& t : s.types()) {
    Json attrs = Json::array();
    for (const auto& a : t.attributes)
      attrs.push_back({{"name", a.name}, {"type", to_string(a.type)}, {"required", a.required}});
    Json key = Json::array();
    for (AttrId k : t.key) key.push_back(t.attributes[k].name);
    types.push_back(
        {{"name", t.name}, {"key", key}, {"attributes", attrs}, {"builtin", t.builtin}});
  }
  Json rules = Json::array();
  for (const auto& r : s.rules()) {
    rules.push_back({{"kind", to_string(r.kind)},
                     {"from", s.type(r.from).name},
                     {"to", s.type(r.to).name},
                     {"cardinality", to_string(r.cardinality)}});
  }
  return {{"types", types}, {"relations", rules}};
}

std::unique_ptr<Service> make_service(ServiceContext& ctx) {
  return std::make_unique<CmdbService>(ctx);
}

CmdbService::CmdbService(ServiceContext& ctx) : ctx_(ctx), cmdb_(ctx.store) {
  ctx.cmdb = &cmdb_;
  imports_ = &ctx.metrics.counter("sluice_control_cmdb_imports_total", "CMDB imports committed");
  refused_ = &ctx.metrics.counter("sluice_control_cmdb_imports_refused_total",
                                  "CMDB imports refused whole (malformed or invalid)");
  for (ExtensionFactory make : extensions()) extensions_.push_back(make(ctx, cmdb_));
}

std::vector<Route> CmdbService::routes() {
  auto bind = [this](auto fn) { return member_route(this, fn); };
  using S = CmdbService;
  std::vector<Route> out = {
      {"POST", {"v1", "cmdb", "import"}, Role::kOperator, bind(&S::post_import)},
      {"GET", {"v1", "cmdb", "cis"}, Role::kViewer, bind(&S::get_cis)},
      {"GET", {"v1", "cmdb", "cis", "{}"}, Role::kViewer, bind(&S::get_cis)},
      {"GET", {"v1", "cmdb", "cis", "{}", "{}"}, Role::kViewer, bind(&S::get_ci)},
      {"GET", {"v1", "cmdb", "history", "{}", "{}"}, Role::kViewer, bind(&S::get_history)},
      {"GET", {"v1", "cmdb", "types"}, Role::kViewer, bind(&S::get_types)},
  };
  for (auto& e : extensions_)
    for (auto& r : e->routes()) out.push_back(std::move(r));
  return out;
}

void CmdbService::tick(int64_t now) {
  for (auto& e : extensions_) e->tick(now);
}

void CmdbService::shutdown() {
  for (auto& e : extensions_) e->shutdown();
}

HttpResponse CmdbService::post_import(const Call& c) {
  HttpResponse bad;
  auto body = parse_body(c.req.body, bad);
  if (!body) return bad;
  std::vector<std::string> errors;
  Fields f(*body, "", errors, {"format", "data", "type", "dry_run", "reason", "change"});
  auto format = f.string("format", true);
  auto data = f.string("data", true);
  auto type = f.string("type", false);
  auto dry_run = f.boolean("dry_run");
  auto reason = f.string("reason", false);
  auto change = f.integer("change", 0, INT64_MAX);
  if (format && *format != "yaml" && *format != "csv")
    f.error("format", fmt::format("expected yaml or csv, got '{}'", *format));
  if (data && data->size() > kMaxImportBytes)
    f.error("data", fmt::format("{} bytes; at most {}", data->size(), kMaxImportBytes));
  if (type && format && *format == "yaml")
    f.error("type", "only for csv (the type of rows without a type column)");
  if (type && (type->size() > kMaxNameBytes || has_control_chars(*type)))
    f.error("type", "not a type name");
  if (reason && (reason->size() > 1024 || has_control_chars(*reason)))
    f.error("reason", "at most 1024 bytes, without control characters");
  if (!errors.empty()) return error_response(400, errors.front(), errors);

  ImportDoc doc;
  std::vector<ModelError> read =
      *format == "yaml" ? read_yaml(*data, doc) : read_csv(*data, type.value_or(""), doc);
  if (!read.empty()) {
    refused_->inc();
    auto list = error_strings(read);
    return error_response(400,
                          fmt::format("import refused: {} error{} in the file", read.size(),
                                      read.size() == 1 ? "" : "s"),
                          list);
  }
  Provenance p{c.who.name, reason.value_or(""), change.value_or(0)};
  WriteResult r = cmdb_.import(doc, p, c.now, dry_run.value_or(false));
  if (!r.errors.empty()) {
    refused_->inc();
    auto list = error_strings(r.errors);
    return error_response(
        400,
        fmt::format("import refused: {} error{}", r.errors.size(), r.errors.size() == 1 ? "" : "s"),
        list);
  }
  Json j = r.to_json();
  j["dry_run"] = dry_run.value_or(false);
  j["cis"] = doc.cis.size();
  j["relations"] = doc.relations.size();
  j["types"] = doc.types.size();
  if (r.written) imports_->inc();
  if (r.written && r.history > 0) {
    core::log_info("control: cmdb import by {}: {} CIs added, {} values and {} relations changed",
                   c.who.name, r.cis_added, r.values_changed,
                   r.relations_added + r.relations_removed);
  }
  return json_response(200, j);
}

HttpResponse CmdbService::get_cis(const Call& c) {
  std::vector<std::string> errors;
  auto limit = int_param(c.req, "limit", kDefaultCiLimit, 1, kMaxCiLimit, errors);
  std::optional<std::string> type =
      c.params.empty() ? query_param(c.req.query, "type") : c.params[0];
  if (!errors.empty()) return error_response(400, errors.front(), errors);
  Graph g = cmdb_.load();
  Json list = Json::array();
  bool truncated = false;
  auto add = [&](CiId id) {
    if (static_cast<int64_t>(list.size()) >= *limit) {
      truncated = true;
      return;
    }
    list.push_back(ci_json(g, id, false));
  };
  if (type && !type->empty()) {
    auto t = g.schema().find_type(*type);
    if (!t) return error_response(404, fmt::format("no CI type '{}'", *type));
    for (CiId id : g.of_type(*t)) add(id);
  } else {
    for (const Ci& ci : g.cis()) add(ci.id);
  }
  Json j = {{"cis", list}};
  if (truncated) j["truncated"] = true;
  return json_response(200, j);
}

HttpResponse CmdbService::get_ci(const Call& c) {
  Graph g = cmdb_.load();
  if (!g.schema().find_type(c.params[0]))
    return error_response(404, fmt::format("no CI type '{}'", c.params[0]));
  auto id = g.find(c.params[0], c.params[1]);
  if (!id) return error_response(404, fmt::format("no CI {}/{}", c.params[0], c.params[1]));
  return json_response(200, ci_json(g, *id, true));
}

HttpResponse CmdbService::get_history(const Call& c) {
  std::vector<std::string> errors;
  auto limit = int_param(c.req, "limit", kDefaultHistoryLimit, 1, kMaxHistoryLimit, errors);
  auto before = int_param(c.req, "before", 0, 0, INT64_MAX, errors);
  if (!errors.empty()) return error_response(400, errors.front(), errors);
  Json list = Json::array();
  for (const auto& h : cmdb_.history(c.params[0], c.params[1], *limit, *before))
    list.push_back(h.to_json());
  if (list.empty()) {
    Graph g = cmdb_.load();
    if (!g.find(c.params[0], c.params[1]))
      return error_response(404, fmt::format("no CI {}/{}", c.params[0], c.params[1]));
  }
  return json_response(200, {{"type", c.params[0]}, {"key", c.params[1]}, {"history", list}});
}

HttpResponse CmdbService::get_types(const Call&) {
  return json_response(200, types_json(cmdb_.load().schema()));
}

}  // namespace sluice::control::cmdb
