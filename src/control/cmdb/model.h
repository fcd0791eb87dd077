// The CMDB's model, in memory: CI types (typed attributes, key attributes), relation kinds with
// their allowed (from type, to type) pairs and cardinality, and a Graph of CIs and relations held
// by integer ids and vectors, so that walks over 10^5 relations do not touch a string map.
//
// Semantics, exactly:
// - A CI is identified by (type, key). The key is the text of its type's key attribute(s); with
//   more than one key attribute the values are joined with ',' (a key value may not hold ',').
// - Every attribute value carries its source (declared, registry, gateway, traffic, agent) and
//   the time it was last seen (ms). A CI holds at most one value per (attribute, source): a
//   declared value and observed values of the same attribute live side by side, and the
//   reconciler compares them. The key attributes' values always equal the key.
// - A relation is (kind, from, to, source) with its last_seen; the same edge may be held once per
//   source (declared and observed by traffic, say). Cardinality counts the distinct targets of one
//   source: a declared runs_on h1 and an observed runs_on h2 are a mismatch for the reconciler,
//   not a cardinality error.
// - Validation returns every error, never just the first; nothing here throws on bad input.
#pragma once

#include <array>
#include <cstdint>
#include <functional>
#include <optional>
#include <span>
#include <string>
#include <string_view>
#include <unordered_map>
#include <variant>
#include <vector>

namespace sluice::control::cmdb {

enum class ValueType : std::uint8_t { kString, kInt, kNumber, kBool };
std::string_view to_string(ValueType t);
std::optional<ValueType> parse_value_type(std::string_view s);

// Where a value came from. Only kDeclared is declared; the others are observed.
enum class Source : std::uint8_t { kDeclared, kRegistry, kGateway, kTraffic, kAgent };
inline constexpr std::size_t kSourceCount = 5;
std::string_view to_string(Source s);
std::optional<Source> parse_source(std::string_view s);
inline bool is_observed(Source s) {
  return s != Source::kDeclared;
}

enum class RelationKind : std::uint8_t {
  kBelongsTo,
  kRunsOn,
  kLocatedIn,
  kRoutesTo,
  kDependsOn,
  kServes
};
inline constexpr std::size_t kRelationKindCount = 6;
std::string_view to_string(RelationKind k);
std::optional<RelationKind> parse_relation_kind(std::string_view s);

// How many targets of one rule's to-type a CI of its from-type may have (per source).
enum class Cardinality : std::uint8_t { kMany, kAtMostOne, kExactlyOne };
std::string_view to_string(Cardinality c);  // "many", "at_most_one", "exactly_one"
std::optional<Cardinality> parse_cardinality(std::string_view s);

// A typed value. Text forms: int is decimal int64, number is a finite double, bool is
// true|false.
using Value = std::variant<std::string, std::int64_t, double, bool>;
ValueType type_of(const Value& v);
std::string to_text(const Value& v);  // the canonical text (what parse_value reads back)
// Reads `text` as a value of type `t`; nullopt if it is not one (e.g. "x" for int, "nan").
std::optional<Value> parse_value(ValueType t, std::string_view text);

// Limits that keep one CI's strings bounded (the importer and the API check them).
inline constexpr std::size_t kMaxNameBytes = 128;    // type, attribute names
inline constexpr std::size_t kMaxKeyBytes = 256;     // a CI's key
inline constexpr std::size_t kMaxValueBytes = 4096;  // one string value

// A string value: at most kMaxValueBytes, without control characters other than tab, newline
// and carriage return (NUL cannot be stored as text; the others are never meant).
bool valid_text(std::string_view s);
inline constexpr const char* kTextRule = "at most 4096 bytes, without control characters";

// One key attribute's value as a key: 1..kMaxKeyBytes printable ASCII bytes without space and
// without , / ? # % (keys are joined with ',' and appear in paths and TYPE/KEY references).
bool valid_key_part(std::string_view s);

using TypeId = std::uint32_t;
using AttrId = std::uint16_t;  // index into CiType::attributes
using CiId = std::uint32_t;
using RelationId = std::uint32_t;
inline constexpr std::uint32_t kNone = 0xffffffffu;

struct AttributeDef {
  std::string name;
  ValueType type = ValueType::kString;
  bool required = false;
};

struct CiType {
  std::string name;
  std::vector<AttributeDef> attributes;
  std::vector<AttrId> key;  // indexes into attributes, in key order; never empty
  bool builtin = false;
  std::optional<AttrId> attribute(std::string_view name) const;
};

struct RelationRule {
  RelationKind kind = RelationKind::kBelongsTo;
  TypeId from = 0;
  TypeId to = 0;
  Cardinality cardinality = Cardinality::kMany;
};

// Where an error points: a line and column of an import file (1-based; 0 = unknown).
struct Location {
  int line = 0;
  int column = 0;
};

struct ModelError {
  Location at;
  std::string subject;  // "instance/i-1", "relation instance/i-1 runs_on host/h1", "type db"
  std::string message;
  CiId ci = 0xffffffffu;          // the CI it is about, if one (Graph::validate() sets it)
  std::string to_string() const;  // "line 3, column 5: instance/i-1: port: must be an int"
};

// A type added by configuration: a new type, or extra attributes of an existing type (then
// `key` must be empty), and extra allowed relations from it.
struct TypeSpec {
  struct Attr {
    std::string name;
    std::string type;  // string|int|number|bool
    bool required = false;
    Location at;
  };
  struct Rel {
    std::string kind;
    std::string to;
    std::string cardinality = "many";
    Location at;
  };
  std::string name;
  std::vector<Attr> attributes;
  std::vector<std::string> key;
  std::vector<Rel> relations;
  Location at;
};

// The CI types and relation rules. builtins() has the eleven built-in types and their rules;
// extend() adds configured ones.
class Schema {
 public:
  static Schema builtins();

  // Adds or extends types; all of `specs` or nothing. Defining something again exactly as it
  // is changes nothing (a file imported twice). Errors: bad names, unknown value types, an
  // attribute or rule that exists with another value type, requiredness or cardinality, a key
  // naming an unknown attribute, a new type without key, another key for an existing type,
  // unknown relation kind or target type.
  std::vector<ModelError> extend(std::span<const TypeSpec> specs);

  std::optional<TypeId> find_type(std::string_view name) const;
  const CiType& type(TypeId id) const { return types_[id]; }
  std::size_t type_count() const { return types_.size(); }
  std::span<const CiType> types() const { return types_; }
  std::span<const RelationRule> rules() const { return rules_; }
  // The rule for (kind, from, to), or null if that pair is not allowed.
  const RelationRule* rule(RelationKind kind, TypeId from, TypeId to) const;

 private:
  std::vector<CiType> types_;
  std::vector<RelationRule> rules_;
};

struct AttributeValue {
  AttrId attr = 0;
  Source source = Source::kDeclared;
  std::int64_t last_seen_ms = 0;
  Value value;
};

struct Ci {
  CiId id = 0;
  TypeId type = 0;
  std::string key;
  std::vector<AttributeValue> values;  // sorted by (attr, source); at most one per pair
};

struct Relation {
  RelationId id = 0;
  RelationKind kind = RelationKind::kBelongsTo;
  CiId from = 0;
  CiId to = 0;
  Source source = Source::kDeclared;
  std::int64_t last_seen_ms = 0;
};

// What a set_value() did: whether the value changed and what it was (for history rows).
struct ValueChange {
  bool changed = false;            // value differs from before (or there was none)
  std::optional<Value> old_value;  // before; nullopt if there was none
};

// CIs by (type, key) and relations with adjacency both ways. Ids are dense (0..n-1) and stable
// for the Graph's life; removing a relation keeps its slot (marked dead) so ids stay valid.
class Graph {
 public:
  explicit Graph(Schema schema = Schema::builtins());

  const Schema& schema() const { return schema_; }

  // The CI of (type, key), added without values if it is not there. The key is not checked
  // here (validate() does); an unknown type id is the caller's bug.
  CiId upsert_ci(TypeId type, std::string_view key);
  std::optional<CiId> find(TypeId type, std::string_view key) const;
  std::optional<CiId> find(std::string_view type, std::string_view key) const;
  const Ci& ci(CiId id) const { return cis_[id]; }
  std::size_t ci_count() const { return cis_.size(); }
  std::span<const Ci> cis() const { return cis_; }
  // The CIs of one type, in the order they were added.
  std::span<const CiId> of_type(TypeId type) const;

  // Sets the value of (attr, source), moving last_seen to `seen_ms` in any case.
  ValueChange set_value(CiId ci, AttrId attr, Source source, Value value, std::int64_t seen_ms);
  // Removes the value of (attr, source); true if there was one.
  bool clear_value(CiId ci, AttrId attr, Source source);
  const AttributeValue* value(CiId ci, AttrId attr, Source source) const;
  const AttributeValue* declared(CiId ci, AttrId attr) const {
    return value(ci, attr, Source::kDeclared);
  }
  // The observed value seen last (any source but declared), or null.
  const AttributeValue* observed(CiId ci, AttrId attr) const;

  // The relation (kind, from, to, source), added if missing; its last_seen moves to `seen_ms`.
  // Allowed pairs are not checked here (validate() does).
  RelationId upsert_relation(RelationKind kind, CiId from, CiId to, Source source,
                             std::int64_t seen_ms);
  std::optional<RelationId> find_relation(RelationKind kind, CiId from, CiId to,
                                          Source source) const;
  bool remove_relation(RelationId id);
  const Relation& relation(RelationId id) const { return relations_[id]; }
  bool alive(RelationId id) const { return alive_[id] != 0; }
  std::size_t relation_count() const { return relations_.size() - dead_; }  // live ones
  std::size_t relation_slots() const { return relations_.size(); }          // ids 0..slots-1
  // Live relation ids leaving / entering a CI.
  std::span<const RelationId> out(CiId ci) const { return out_[ci]; }
  std::span<const RelationId> in(CiId ci) const { return in_[ci]; }

  // Every error of the whole graph: key text not matching the key attributes' values, bad key
  // text, values of the wrong type or too long, a required attribute with no value from any
  // source, a relation pair the schema does not allow, a cardinality broken per source.
  std::vector<ModelError> validate() const;

  std::string subject(CiId ci) const;  // "type/key"

 private:
  struct KeyHash {
    using is_transparent = void;
    std::size_t operator()(std::string_view s) const { return std::hash<std::string_view>{}(s); }
  };
  using KeyIndex = std::unordered_map<std::string, CiId, KeyHash, std::equal_to<>>;

  Schema schema_;
  std::vector<Ci> cis_;
  std::vector<std::vector<CiId>> by_type_;
  // Per type, key -> CiId: the one string lookup, done at import and upsert, never in walks.
  std::vector<KeyIndex> keys_;
  std::vector<Relation> relations_;
  std::vector<std::uint8_t> alive_;
  std::size_t dead_ = 0;
  std::vector<std::vector<RelationId>> out_;
  std::vector<std::vector<RelationId>> in_;
};

// Declared data as an importer read it, before it is checked: names and raw text, each with
// where it was written.
struct CiDraft {
  std::string type;
  std::vector<std::pair<std::string, std::string>> attributes;  // name -> text, as written
  std::vector<Location> attribute_at;                           // parallel to attributes
  Location at;
};
struct RelationDraft {
  std::string from_type, from_key, kind, to_type, to_key;
  Location at;
  // Set for a relation written under a CI (YAML `relations:` of a CI): it leaves the CI of
  // cis[from_draft], whatever its key turns out to be; from_type/from_key are then ignored.
  std::size_t from_draft = kNoDraft;
  static constexpr std::size_t kNoDraft = static_cast<std::size_t>(-1);
};

// Checks drafts against `graph` (its schema and its CIs, which relations may name) and, if
// there is no error, applies them as declared values seen at `now_ms` to `graph`. Errors:
// unknown type, unknown or ill-typed attribute, missing key attribute, string too long, the same
// (type, key) twice in the drafts, relation naming an unknown type, kind or CI (neither in the
// drafts nor in the graph), disallowed pair, and then every error of graph.validate() on the
// result that concern the CIs the drafts name (errors of CIs the import does not touch, such as
// an observed instance still without its service, do not refuse it). On any error `graph` is left
// exactly as it was. Values and relations the drafts do not mention are kept; a declared relation
// under an at_most_one / exactly_one rule replaces the CI's declared relation of that (kind, to
// type), so a re-import can move an instance to another host.
std::vector<ModelError> apply_declared(Graph& graph, std::span<const CiDraft> cis,
                                       std::span<const RelationDraft> relations,
                                       std::int64_t now_ms);

}  // namespace sluice::control::cmdb
