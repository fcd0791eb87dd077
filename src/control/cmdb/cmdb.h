// The CMDB on the control plane's store: configured types, CIs, attribute values with their
// source and last_seen, relations, and append-only history rows (old value, new value, source,
// time, change id), in the cmdb domain's tables (schema.cc). Every write is one transaction that
// reads the model, changes it in memory (model.h) and writes the difference: all or nothing.
//
// This is the interface the rest of the control plane uses: the API (cmdb_service.h) imports
// declared data and reads; the reconciler records observed values (record()) and reads the whole
// model into a Graph (load()).
#pragma once

#include <cstdint>
#include <functional>
#include <mutex>
#include <optional>
#include <string>
#include <vector>

#include <nlohmann/json.hpp>

#include "control/cmdb/import.h"
#include "control/cmdb/model.h"
#include "control/store.h"

namespace sluice::control::cmdb {

// Who and what caused a write, for the history rows.
struct Provenance {
  std::string actor;      // a token's name, or "reconciler"
  std::string reason;     // may be empty
  int64_t change_id = 0;  // the change record that caused it, 0 if none
};

// What a write did (or, dry run, would do). `errors` non-empty: nothing was written.
struct WriteResult {
  std::vector<ModelError> errors;
  int64_t types_changed = 0;
  int64_t cis_added = 0;
  int64_t values_changed = 0;  // added or changed values (not a last_seen moving alone)
  int64_t relations_added = 0;
  int64_t relations_removed = 0;
  int64_t history = 0;  // history rows written
  bool written = false;
  nlohmann::json to_json() const;  // the counts, and "errors" as strings when there are some
};

// Observed facts from one source at one time, for record().
struct Observed {
  Source source = Source::kRegistry;
  int64_t seen_ms = 0;
  struct Item {
    std::string type, key;
    std::vector<std::pair<std::string, Value>> values;  // attribute name -> value
    int64_t seen_ms = 0;  // when this one was seen, if not at the Observed's seen_ms (0)
  };
  struct Link {
    RelationKind kind = RelationKind::kDependsOn;
    std::string from_type, from_key, to_type, to_key;
    int64_t seen_ms = 0;  // when this one was seen, if not at the Observed's seen_ms (0)
  };
  std::vector<Item> cis;        // created when missing; their values set for `source`
  std::vector<Link> relations;  // added for `source` (CIs created when missing, without values)
  std::vector<Link> gone;       // relations of `source` no longer observed: removed
};

struct HistoryEntry {
  int64_t id = 0;
  int64_t at_ms = 0;
  std::string type, key;
  std::string what;   // ci | attribute | relation
  std::string field;  // the attribute's name, or the relation's kind
  std::string source;
  nlohmann::json old_value, new_value;  // null: there was none / there is none now
  int64_t change_id = 0;
  std::string actor, reason;
  nlohmann::json to_json() const;
};

// Thread-safe. Methods throw StoreError when the store fails.
class Cmdb {
 public:
  explicit Cmdb(Store& store) : store_(store) {}

  // The whole model, as of the last write (by any control plane on the same database). A cached
  // copy while the store's CMDB revision has not moved.
  Graph load();
  // Moves on every write that changed something.
  int64_t revision();

  // Declared data: types extend the schema, then apply_declared(). Errors name the line and
  // column the importer recorded. dry_run: checked and counted, nothing written.
  WriteResult import(const ImportDoc& doc, const Provenance& p, int64_t now_ms, bool dry_run);
  // Observed data. Errors (nothing written): an unknown type, attribute or relation kind, a
  // value of the wrong type, a bad key, a relation pair the schema does not allow. Cardinality is
  // not checked: observed facts are what they are, and the reconciler reports on them.
  WriteResult record(const Observed& o, const Provenance& p);
  // Declared data changed by `fn` on the model as it is inside the write (a reconciler's fix,
  // control/cmdb/reconcile_service.h): fn returns errors (nothing is written) or edits the
  // graph's declared values and relations; the difference is written, history rows with `p`.
  WriteResult edit(const std::function<std::vector<ModelError>(Graph&)>& fn, const Provenance& p,
                   int64_t now_ms);

  // History of one CI, newest first; at most `limit` rows with ids below `before` (0: newest).
  std::vector<HistoryEntry> history(const std::string& type, const std::string& key, int64_t limit,
                                    int64_t before = 0);

 private:
  struct Loaded {
    Graph graph;
    std::vector<int64_t> ci_db;   // CiId -> cmdb_cis.id
    std::vector<int64_t> rel_db;  // RelationId -> cmdb_relations.id
    int64_t revision = -1;
  };
  // Inside a transaction: the cached model if the revision is the cached one, else read.
  const Loaded& current(detail::SqlConnection& c);
  // Inside a write transaction: writes what differs between the current model and `next`.
  // `creator`: the source of the history rows of CIs it creates. Sets `fresh` to the model as
  // written, for the cache once the transaction commits.
  WriteResult write(detail::SqlConnection& c, Graph next, const std::vector<TypeSpec>& new_types,
                    const Provenance& p, int64_t now_ms, Source creator,
                    std::optional<Loaded>& fresh);

  Store& store_;
  std::mutex mu_;  // the cache; taken inside the store's transaction (never the other way)
  std::optional<Loaded> cache_;
};

nlohmann::json value_json(const Value& v);

}  // namespace sluice::control::cmdb
