// Typed reads of YAML values that collect errors (file:line, key path, message) instead of
// stopping at the first, so the loader can report everything wrong with a file in one pass.
#pragma once

#include <yaml-cpp/yaml.h>

#include <cstdint>
#include <functional>
#include <initializer_list>
#include <optional>
#include <span>
#include <string>
#include <string_view>
#include <vector>

#include "config/loader.h"
#include "core/duration.h"

namespace sluice::config {

class Diagnostics {
 public:
  explicit Diagnostics(std::string file) : file_(std::move(file)) {}
  void add(int line, std::string path, std::string message);
  const std::string& file() const { return file_; }
  size_t count() const { return errors_.size(); }
  // Errors ordered by line (stable; errors without a line last).
  std::vector<ConfigError> take();

 private:
  std::string file_;
  std::vector<ConfigError> errors_;
};

// A value in the document with the key path that leads to it and the line to blame for it.
struct Value {
  YAML::Node node;
  std::string path;  // "services[2].retry"; empty for the document root
  int line = 0;      // 1-based

  Value child(std::string_view key, const YAML::Node& key_node, const YAML::Node& value) const;
  Value item(size_t index) const;  // node must be a sequence
  void error(Diagnostics& diag, std::string message) const {
    diag.add(line, path, std::move(message));
  }
};

// Bounds on every YAML text Sluice reads (gateway and control plane files, pushed configs,
// `sluice ctl apply -f` files), checked in a first pass over the parser's events, before any node
// tree is built or walked. yaml-cpp shares the node of an anchor between its aliases, so a
// "billion laughs" document is small as a tree but exponential for anything that walks it (the
// loader, a conversion to JSON): nodes are counted as a walk would meet them, each alias as many
// nodes as its anchor expands to. An alias to a node that is still open (a cycle) is refused.
inline constexpr size_t kMaxYamlBytes = 16u << 20;  // 16 MiB of text
inline constexpr int kMaxYamlDepth = 64;            // nested mappings and lists, aliases expanded
inline constexpr size_t kMaxYamlNodes = 1'000'000;  // nodes after alias expansion, whole stream

// The one YAML document in `text` (null for an empty text). A syntax error, more than one
// document or a text beyond the bounds above is reported as a single error (with the line where
// the bound was crossed) and gives nullopt. Never hangs: yaml-cpp 0.7's LoadAll loops forever,
// allocating, on a stray ',' at document level (jbeder/yaml-cpp#1040).
std::optional<YAML::Node> parse_single_document(std::string_view text, Diagnostics& diag);

// Every document of a YAML stream (documents separated by `---`), under the same bounds counted
// over the whole stream. nullopt with one error when the text is not YAML or crosses a bound.
std::optional<std::vector<YAML::Node>> parse_documents(std::string_view text, Diagnostics& diag);

// Parses one YAML document and hands its root to `load` with the diagnostics of `source_name`.
// Every problem comes back as an error: syntax, schema, or an exception escaping `load` (a bug
// in a loader is still reported as a config error). Empty result = loaded.
std::vector<ConfigError> load_document(std::string_view text, const std::string& source_name,
                                       const std::function<void(Diagnostics&, const Value&)>& load);

// Reads a config file whole. nullopt with one error naming the file when it cannot.
std::optional<std::string> read_config_file(const std::string& path,
                                            std::vector<ConfigError>& errors);

// "'abc'", "a list", "a mapping", "nothing": what was found, for "expected X, got Y".
std::string describe(const YAML::Node& node);

// Levenshtein distance; small inputs only (key names).
size_t edit_distance(std::string_view a, std::string_view b);
// The candidate closest to `word` when it is close enough to be a likely typo, else "".
std::string_view closest(std::string_view word, std::span<const std::string_view> candidates);
// " (did you mean 'x'?)" or "".
std::string did_you_mean(std::string_view word, std::span<const std::string_view> candidates);

// Scalars. Each reports its own error and returns nullopt when the value is of the wrong type
// or outside its bounds.
std::optional<std::string> read_string(Diagnostics& diag, const Value& v);
std::optional<bool> read_bool(Diagnostics& diag, const Value& v);
std::optional<uint64_t> read_uint(Diagnostics& diag, const Value& v, uint64_t lo, uint64_t hi);
// Bounds: > 0 and <= max.
std::optional<core::Duration> read_duration(Diagnostics& diag, const Value& v, core::Duration max);
// Bounds: min..max; a min of 0 allows "0s" (for settings where zero means "none").
std::optional<core::Duration> read_duration(Diagnostics& diag, const Value& v, core::Duration min,
                                            core::Duration max);

// Bounds of a real number; an open end excludes its bound, as for ratios in (0, 1].
struct RealRange {
  double lo = 0;
  double hi = 0;
  bool lo_open = false;
  bool hi_open = false;
  std::string to_string() const;  // "0..0.9", "> 0 and at most 1", "> 0 and < 1"
};
// A decimal number such as 0.5, 1 or 2.5e-1 (no sign, inf or nan) within `range`.
std::optional<double> read_real(Diagnostics& diag, const Value& v, const RealRange& range);
std::optional<uint64_t> read_size(Diagnostics& diag, const Value& v, uint64_t lo, uint64_t hi);
// One of `choices`; the error lists them and suggests the closest.
std::optional<size_t> read_enum(Diagnostics& diag, const Value& v,
                                std::span<const std::string_view> choices);

// A sequence's items; null counts as empty. Reports "expected a list" otherwise.
std::optional<std::vector<Value>> read_list(Diagnostics& diag, const Value& v);

// A key this build knows about but does not implement yet, with the feature that will bring it.
struct PlannedKey {
  std::string_view key;
  std::string_view feature;
};

// One YAML mapping. Construction reports, once each: a value that is not a mapping (null counts
// as an empty mapping), keys that are not strings, duplicate keys, keys of planned features
// (never silently ignored) and unknown keys with a spelling suggestion. Errors about a key carry
// that key's own path ("services[0].retires: unknown key 'retires' (did you mean 'retry'?)").
class MapReader {
 public:
  MapReader(Diagnostics& diag, const Value& map, std::initializer_list<std::string_view> known,
            std::initializer_list<PlannedKey> planned = {});
  // The same with the keys from a field table (config/fields.h).
  MapReader(Diagnostics& diag, const Value& map, std::span<const std::string_view> known,
            std::span<const PlannedKey> planned = {});

  bool is_map() const { return is_map_; }
  const Value& value() const { return map_; }
  Diagnostics& diag() const { return diag_; }

  // The value under `key`, or null when absent (or unknown, planned, duplicate).
  const Value* get(std::string_view key) const;
  // Like get(), but reports "<path>.<key>: required" against the mapping when absent.
  const Value* require(std::string_view key) const;

  // Set `out` only when the key is present and valid; false when present and invalid.
  bool read(std::string_view key, std::string& out) const;
  bool read(std::string_view key, bool& out) const;
  bool read(std::string_view key, core::Duration& out, core::Duration max) const;
  bool read(std::string_view key, core::Duration& out, core::Duration min,
            core::Duration max) const;
  bool read(std::string_view key, double& out, const RealRange& range) const;
  template <class T>
  bool read_uint(std::string_view key, T& out, uint64_t lo, uint64_t hi) const {
    const Value* v = get(key);
    if (v == nullptr) return true;
    auto n = config::read_uint(diag_, *v, lo, hi);
    if (n) out = static_cast<T>(*n);
    return n.has_value();
  }
  template <class T>
  bool read_size(std::string_view key, T& out, uint64_t lo, uint64_t hi) const {
    const Value* v = get(key);
    if (v == nullptr) return true;
    auto n = config::read_size(diag_, *v, lo, hi);
    if (n) out = static_cast<T>(*n);
    return n.has_value();
  }

 private:
  Diagnostics& diag_;
  Value map_;
  bool is_map_ = false;
  std::vector<std::pair<std::string, Value>> entries_;
};

}  // namespace sluice::config
