// Declared CMDB data as files: YAML documents or CSV with a header row, read into drafts
// (model.h) with the line and column of everything, bounded in size and count. Reading checks
// the shape (syntax, keys, CSV fields); the model checks the content (apply_declared).
//
// YAML: one or more documents, each a mapping with any of
//   types:     [{name, key: [ATTR...], attributes: [{name, type, required}], relations: [{kind, to,
//   cardinality}]}] cis:       [{type: T, ATTR: scalar..., relations: {KIND: "TYPE/KEY" |
//   ["TYPE/KEY", ...]}}] relations: [{from: "TYPE/KEY", relation: KIND, to: "TYPE/KEY"}]
// CSV: a header row, then one row per CI or per relation, fields as RFC 4180 (quotes, "" inside
// quotes, CRLF or LF). A header of exactly from_type,from_key,relation,to_type,to_key (any
// order) makes a relations file; otherwise each column is an attribute, a `type` column gives
// each row's type (else `default_type`, the request's `type`), and an empty cell is not given.
#pragma once

#include <cstddef>
#include <string>
#include <string_view>
#include <vector>

#include "control/cmdb/model.h"

namespace sluice::control::cmdb {

inline constexpr std::size_t kMaxImportBytes = 2u << 20;  // the file's text
inline constexpr std::size_t kMaxImportCis = 50'000;
inline constexpr std::size_t kMaxImportRelations = 200'000;
inline constexpr std::size_t kMaxImportTypes = 100;
inline constexpr std::size_t kMaxCsvColumns = 200;

struct ImportDoc {
  std::vector<TypeSpec> types;
  std::vector<CiDraft> cis;
  std::vector<RelationDraft> relations;
};

// Both fill `doc` and return every error found (an empty list: the file read whole). After an
// error `doc` may be partial and must not be applied.
std::vector<ModelError> read_yaml(std::string_view text, ImportDoc& doc);
std::vector<ModelError> read_csv(std::string_view text, std::string_view default_type,
                                 ImportDoc& doc);

// "type/key" -> (type, key); false if there is no '/' or either side is empty.
bool split_ref(std::string_view ref, std::string& type, std::string& key);

}  // namespace sluice::control::cmdb
