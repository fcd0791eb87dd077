#include "config/reader.h"

#include <fmt/format.h>
#include <yaml-cpp/eventhandler.h>

#include <algorithm>
#include <cerrno>
#include <charconv>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <limits>
#include <sstream>
#include <unordered_map>

#include "config/size.h"

namespace sluice::config {
namespace {

int line_of(const YAML::Node& node, int fallback) {
  const YAML::Mark mark = node.Mark();
  return mark.is_null() ? fallback : mark.line + 1;
}

std::string lower(std::string_view s) {
  std::string out(s);
  for (char& c : out) {
    if (c >= 'A' && c <= 'Z') c = static_cast<char>(c - 'A' + 'a');
  }
  return out;
}

std::string join(std::span<const std::string_view> items) {
  std::string out;
  for (size_t i = 0; i < items.size(); ++i) {
    if (i > 0) out += i + 1 == items.size() ? " or " : ", ";
    out += items[i];
  }
  return out;
}

// A bound crossed in the first pass; thrown from an event handler, which stops the parser.
struct BoundExceeded {
  int line;
  std::string message;
};

// First pass over the events: where each document starts, and the bounds of reader.h. Counts
// nodes as a walk of the tree would meet them: an alias adds the size of what its anchor
// expands to, and the depth below it.
class BoundsCheck : public YAML::EventHandler {
 public:
  std::vector<YAML::Mark> starts;

  void OnDocumentStart(const YAML::Mark& mark) override {
    starts.push_back(mark);
    anchors_.clear();  // anchors are per document
    open_.clear();
  }
  void OnDocumentEnd() override {}
  void OnNull(const YAML::Mark& mark, YAML::anchor_t anchor) override { leaf(mark, anchor); }
  void OnScalar(const YAML::Mark& mark, const std::string&, YAML::anchor_t anchor,
                const std::string&) override {
    leaf(mark, anchor);
  }
  void OnAlias(const YAML::Mark& mark, YAML::anchor_t anchor) override {
    auto it = anchors_.find(anchor);
    if (it == anchors_.end() || !it->second.done)
      throw BoundExceeded{mark.line + 1, "YAML alias refers to a node that contains it (a cycle)"};
    add(mark, it->second.nodes);
    check_depth(mark, static_cast<int>(open_.size()) + it->second.height);
    child_done(it->second.height);
  }
  void OnSequenceStart(const YAML::Mark& mark, const std::string&, YAML::anchor_t anchor,
                       YAML::EmitterStyle::value) override {
    start(mark, anchor);
  }
  void OnSequenceEnd() override { end(); }
  void OnMapStart(const YAML::Mark& mark, const std::string&, YAML::anchor_t anchor,
                  YAML::EmitterStyle::value) override {
    start(mark, anchor);
  }
  void OnMapEnd() override { end(); }

 private:
  struct Anchor {
    size_t nodes = 0;
    int height = 0;  // nested collections inside, itself included (0 for a scalar)
    bool done = false;
  };
  struct Open {
    YAML::anchor_t anchor;
    size_t first;  // expanded_ when it started
    int height;
  };

  void add(const YAML::Mark& mark, size_t nodes) {
    expanded_ += nodes;
    if (expanded_ > kMaxYamlNodes)
      throw BoundExceeded{
          mark.line + 1,
          fmt::format("YAML document expands to more than {} nodes (aliases counted each time "
                      "they are used); refused",
                      kMaxYamlNodes)};
  }
  void check_depth(const YAML::Mark& mark, int depth) {
    if (depth > kMaxYamlDepth)
      throw BoundExceeded{
          mark.line + 1,
          fmt::format("YAML nested deeper than {} levels (aliases expanded); refused",
                      kMaxYamlDepth)};
  }
  void child_done(int height) {
    if (!open_.empty()) open_.back().height = std::max(open_.back().height, height + 1);
  }
  void leaf(const YAML::Mark& mark, YAML::anchor_t anchor) {
    add(mark, 1);
    if (anchor != YAML::NullAnchor) anchors_[anchor] = Anchor{1, 0, true};
  }
  void start(const YAML::Mark& mark, YAML::anchor_t anchor) {
    add(mark, 1);
    check_depth(mark, static_cast<int>(open_.size()) + 1);
    if (anchor != YAML::NullAnchor) anchors_[anchor] = Anchor{0, 0, false};
    open_.push_back(Open{anchor, expanded_ - 1, 1});
  }
  void end() {
    if (open_.empty()) return;
    Open o = open_.back();
    open_.pop_back();
    if (o.anchor != YAML::NullAnchor)
      anchors_[o.anchor] = Anchor{expanded_ - o.first, o.height, true};
    child_done(o.height);
  }

  size_t expanded_ = 0;  // over the whole stream
  std::unordered_map<YAML::anchor_t, Anchor> anchors_;
  std::vector<Open> open_;
};

// The first pass over `input`: at most `max_documents` + 1 documents. False with
// one error in `diag` on a syntax error, a bound crossed, or yaml-cpp's endless empty documents.
bool check_stream(const std::string& input, size_t max_documents, BoundsCheck& docs,
                  Diagnostics& diag) {
  if (input.size() > kMaxYamlBytes) {
    diag.add(0, "",
             fmt::format("YAML text is {} bytes, more than the {} allowed; refused", input.size(),
                         kMaxYamlBytes));
    return false;
  }
  try {
    // On a token it cannot place (a stray ','), yaml-cpp 0.7 starts a new empty document at the
    // same position forever; two documents starting at the same place means exactly that.
    std::istringstream in(input);
    YAML::Parser parser(in);
    while (docs.starts.size() <= max_documents && parser.HandleNextDocument(docs)) {
      size_t n = docs.starts.size();
      if (n >= 2 && docs.starts[n - 1].pos == docs.starts[n - 2].pos) {
        const YAML::Mark& at = docs.starts[n - 1];
        char c = at.pos >= 0 && static_cast<size_t>(at.pos) < input.size() ? input[at.pos] : '?';
        diag.add(at.line + 1, "",
                 c > 0x20 && c < 0x7f ? fmt::format("YAML syntax error: unexpected '{}'", c)
                                      : std::string("YAML syntax error: unexpected character"));
        return false;
      }
    }
    return true;
  } catch (const BoundExceeded& e) {
    diag.add(e.line, "", e.message);
    return false;
  } catch (const YAML::Exception& e) {
    diag.add(e.mark.is_null() ? 0 : e.mark.line + 1, "", "YAML syntax error: " + e.msg);
    return false;
  }
}

}  // namespace

std::optional<YAML::Node> parse_single_document(std::string_view text, Diagnostics& diag) {
  const std::string input(text);
  BoundsCheck docs;
  // A few documents are read in the first pass: enough to tell yaml-cpp's endless empty
  // documents (a stray ',') from a second document, which is an error either way.
  if (!check_stream(input, 3, docs, diag)) return std::nullopt;
  if (docs.starts.size() > 1) {
    diag.add(docs.starts[1].line + 1, "",
             "expected one YAML document, found another here (remove the '---' separator)");
    return std::nullopt;
  }
  try {
    // Second pass builds the node tree of the one document; the first proved it terminates and
    // stays within the bounds.
    return YAML::Load(input);
  } catch (const YAML::Exception& e) {
    diag.add(e.mark.is_null() ? 0 : e.mark.line + 1, "", "YAML syntax error: " + e.msg);
    return std::nullopt;
  }
}

std::optional<std::vector<YAML::Node>> parse_documents(std::string_view text, Diagnostics& diag) {
  const std::string input(text);
  BoundsCheck docs;
  if (!check_stream(input, std::numeric_limits<size_t>::max() - 1, docs, diag)) return std::nullopt;
  try {
    return YAML::LoadAll(input);
  } catch (const YAML::Exception& e) {
    diag.add(e.mark.is_null() ? 0 : e.mark.line + 1, "", "YAML syntax error: " + e.msg);
    return std::nullopt;
  }
}

void Diagnostics::add(int line, std::string path, std::string message) {
  errors_.push_back(ConfigError{file_, line, std::move(path), std::move(message)});
}

std::vector<ConfigError> Diagnostics::take() {
  std::stable_sort(errors_.begin(), errors_.end(), [](const ConfigError& a, const ConfigError& b) {
    // Errors without a line (whole-file rules) go last.
    int la = a.line > 0 ? a.line : std::numeric_limits<int>::max();
    int lb = b.line > 0 ? b.line : std::numeric_limits<int>::max();
    return la < lb;
  });
  return std::move(errors_);
}

Value Value::child(std::string_view key, const YAML::Node& key_node,
                   const YAML::Node& value) const {
  Value out;
  out.node = value;
  out.path = path.empty() ? std::string(key) : path + "." + std::string(key);
  // A scalar is blamed on its own line; a mapping or list on the line of its key, which is where
  // a block mapping starts; a null's mark points at the next token, so use the key there too.
  int key_line = line_of(key_node, line);
  out.line = value.IsScalar() ? line_of(value, key_line) : key_line;
  return out;
}

Value Value::item(size_t index) const {
  Value out;
  out.node = node[index];
  out.path = path + "[" + std::to_string(index) + "]";
  out.line = out.node.IsNull() ? line : line_of(out.node, line);
  return out;
}

std::string describe(const YAML::Node& node) {
  switch (node.Type()) {
    case YAML::NodeType::Null:
      return "null";
    case YAML::NodeType::Sequence:
      return "a list";
    case YAML::NodeType::Map:
      return "a mapping";
    case YAML::NodeType::Scalar: {
      constexpr size_t kMax = 40;
      const std::string& s = node.Scalar();
      return "'" + (s.size() > kMax ? s.substr(0, kMax) + "..." : s) + "'";
    }
    default:
      return "nothing";
  }
}

size_t edit_distance(std::string_view a, std::string_view b) {
  std::vector<size_t> prev(b.size() + 1), cur(b.size() + 1);
  for (size_t j = 0; j <= b.size(); ++j) prev[j] = j;
  for (size_t i = 1; i <= a.size(); ++i) {
    cur[0] = i;
    for (size_t j = 1; j <= b.size(); ++j) {
      size_t substitute = prev[j - 1] + (a[i - 1] == b[j - 1] ? 0 : 1);
      cur[j] = std::min({prev[j] + 1, cur[j - 1] + 1, substitute});
    }
    std::swap(prev, cur);
  }
  return prev[b.size()];
}

std::string_view closest(std::string_view word, std::span<const std::string_view> candidates) {
  const std::string w = lower(word);
  std::string_view best;
  size_t best_distance = std::numeric_limits<size_t>::max();
  for (std::string_view c : candidates) {
    size_t d = edit_distance(w, c);
    // Close enough to be a typo: at most 3 edits, and at most half of the longer word, so that
    // "zone" does not suggest "name".
    if (d <= 3 && 2 * d <= std::max(w.size(), c.size()) && d < best_distance) {
      best = c;
      best_distance = d;
    }
  }
  return best;
}

std::string did_you_mean(std::string_view word, std::span<const std::string_view> candidates) {
  std::string_view c = closest(word, candidates);
  return c.empty() ? std::string() : fmt::format(" (did you mean '{}'?)", c);
}

std::optional<std::string> read_string(Diagnostics& diag, const Value& v) {
  if (!v.node.IsScalar()) {
    v.error(diag, "expected a string, got " + describe(v.node));
    return std::nullopt;
  }
  return v.node.Scalar();
}

std::optional<bool> read_bool(Diagnostics& diag, const Value& v) {
  if (v.node.IsScalar()) {
    const std::string& s = v.node.Scalar();
    if (s == "true" || s == "True" || s == "TRUE") return true;
    if (s == "false" || s == "False" || s == "FALSE") return false;
  }
  v.error(diag, "expected true or false, got " + describe(v.node));
  return std::nullopt;
}

std::optional<uint64_t> read_uint(Diagnostics& diag, const Value& v, uint64_t lo, uint64_t hi) {
  auto out_of_range = [&] {
    v.error(diag, fmt::format("must be {}..{}, got {}", lo, hi, v.node.Scalar()));
    return std::nullopt;
  };
  if (v.node.IsScalar()) {
    std::string_view s = v.node.Scalar();
    bool negative = !s.empty() && s.front() == '-';
    std::string_view digits = negative ? s.substr(1) : s;
    bool all_digits = !digits.empty() && std::all_of(digits.begin(), digits.end(),
                                                     [](char c) { return c >= '0' && c <= '9'; });
    if (all_digits) {
      if (negative) return out_of_range();
      uint64_t n = 0;
      auto [end, ec] = std::from_chars(digits.data(), digits.data() + digits.size(), n);
      if (ec != std::errc() || end != digits.data() + digits.size()) return out_of_range();
      if (n < lo || n > hi) return out_of_range();
      return n;
    }
  }
  v.error(diag, "expected a number, got " + describe(v.node));
  return std::nullopt;
}

std::optional<core::Duration> read_duration(Diagnostics& diag, const Value& v, core::Duration max) {
  std::optional<core::Duration> d;
  if (v.node.IsScalar()) d = core::parse_duration(v.node.Scalar());
  if (!d) {
    v.error(diag, "expected a duration such as 500ms, 2s or 1m, got " + describe(v.node));
    return std::nullopt;
  }
  if (d->count() <= 0 || *d > max) {
    v.error(diag, fmt::format("must be > 0 and at most {}, got {}", core::format_duration(max),
                              v.node.Scalar()));
    return std::nullopt;
  }
  return d;
}

std::optional<core::Duration> read_duration(Diagnostics& diag, const Value& v, core::Duration min,
                                            core::Duration max) {
  std::optional<core::Duration> d;
  if (v.node.IsScalar()) d = core::parse_duration(v.node.Scalar());
  if (!d) {
    v.error(diag, "expected a duration such as 500ms, 2s or 1m, got " + describe(v.node));
    return std::nullopt;
  }
  if (*d < min || *d > max) {
    v.error(diag, min.count() == 0
                      ? fmt::format("must be at most {}, got {}", core::format_duration(max),
                                    v.node.Scalar())
                      : fmt::format("must be {}..{}, got {}", core::format_duration(min),
                                    core::format_duration(max), v.node.Scalar()));
    return std::nullopt;
  }
  return d;
}

std::string RealRange::to_string() const {
  if (!lo_open && !hi_open) return fmt::format("{}..{}", lo, hi);
  std::string low = lo_open ? fmt::format("> {}", lo) : fmt::format("at least {}", lo);
  std::string high = hi_open ? fmt::format("< {}", hi) : fmt::format("at most {}", hi);
  return low + " and " + high;
}

std::optional<double> read_real(Diagnostics& diag, const Value& v, const RealRange& range) {
  if (v.node.IsScalar()) {
    std::string_view s = v.node.Scalar();
    bool negative = !s.empty() && s.front() == '-';
    std::string_view digits = negative ? s.substr(1) : s;
    // Plain decimal notation only: from_chars would also take "inf", "nan" and hex digits.
    bool well_formed =
        !digits.empty() &&
        ((digits.front() >= '0' && digits.front() <= '9') || digits.front() == '.') &&
        digits.find_first_not_of("0123456789.eE+-") == std::string_view::npos;
    double x = 0;
    if (well_formed) {
      auto [end, ec] = std::from_chars(digits.data(), digits.data() + digits.size(), x);
      well_formed = end == digits.data() + digits.size() &&
                    (ec == std::errc() || ec == std::errc::result_out_of_range);
      if (ec == std::errc::result_out_of_range) x = std::numeric_limits<double>::infinity();
    }
    if (well_formed) {
      if (negative) x = -x;
      bool above_lo = range.lo_open ? x > range.lo : x >= range.lo;
      bool below_hi = range.hi_open ? x < range.hi : x <= range.hi;
      if (above_lo && below_hi) return x;
      v.error(diag, fmt::format("must be {}, got {}", range.to_string(), s));
      return std::nullopt;
    }
  }
  v.error(diag, "expected a number such as 0.5, got " + describe(v.node));
  return std::nullopt;
}

std::optional<uint64_t> read_size(Diagnostics& diag, const Value& v, uint64_t lo, uint64_t hi) {
  std::optional<uint64_t> n;
  if (v.node.IsScalar()) n = parse_size(v.node.Scalar());
  if (!n) {
    // A size too large for 64 bits is still a well-formed size; say it is out of range.
    bool well_formed = v.node.IsScalar() && !v.node.Scalar().empty() &&
                       v.node.Scalar().front() >= '0' && v.node.Scalar().front() <= '9' &&
                       v.node.Scalar().find_first_not_of("0123456789") == std::string::npos;
    if (!well_formed) {
      v.error(diag, "expected a size such as 65536, 64KiB or 10MiB, got " + describe(v.node));
      return std::nullopt;
    }
  }
  if (!n || *n < lo || *n > hi) {
    v.error(diag, fmt::format("must be {}..{} ({}..{} bytes), got {}", format_size(lo),
                              format_size(hi), lo, hi, v.node.Scalar()));
    return std::nullopt;
  }
  return n;
}

std::optional<size_t> read_enum(Diagnostics& diag, const Value& v,
                                std::span<const std::string_view> choices) {
  if (v.node.IsScalar()) {
    const std::string& s = v.node.Scalar();
    for (size_t i = 0; i < choices.size(); ++i) {
      if (s == choices[i]) return i;
    }
  }
  v.error(diag, fmt::format("must be {}, got {}{}", join(choices), describe(v.node),
                            v.node.IsScalar() ? did_you_mean(v.node.Scalar(), choices) : ""));
  return std::nullopt;
}

std::optional<std::vector<Value>> read_list(Diagnostics& diag, const Value& v) {
  std::vector<Value> items;
  if (v.node.IsNull()) return items;
  if (!v.node.IsSequence()) {
    v.error(diag, "expected a list, got " + describe(v.node));
    return std::nullopt;
  }
  items.reserve(v.node.size());
  for (size_t i = 0; i < v.node.size(); ++i) items.push_back(v.item(i));
  return items;
}

MapReader::MapReader(Diagnostics& diag, const Value& map,
                     std::initializer_list<std::string_view> known,
                     std::initializer_list<PlannedKey> planned)
    : MapReader(diag, map, std::span<const std::string_view>(known.begin(), known.size()),
                std::span<const PlannedKey>(planned.begin(), planned.size())) {}

MapReader::MapReader(Diagnostics& diag, const Value& map, std::span<const std::string_view> known,
                     std::span<const PlannedKey> planned)
    : diag_(diag), map_(map) {
  if (map.node.IsNull()) {
    is_map_ = true;
    return;
  }
  if (!map.node.IsMap()) {
    map.error(diag, "expected a mapping, got " + describe(map.node));
    return;
  }
  is_map_ = true;
  std::vector<std::string_view> candidates(known.begin(), known.end());
  for (const auto& p : planned) candidates.push_back(p.key);
  std::vector<std::pair<std::string, int>> seen;
  for (auto it = map.node.begin(); it != map.node.end(); ++it) {
    // Copies, not references: yaml-cpp's operator-> returns a proxy that dies with the
    // expression, so a reference to it->first dangles (found by ASan).
    const YAML::Node key_node = it->first;
    const YAML::Node value_node = it->second;
    int key_line = line_of(key_node, map.line);
    if (!key_node.IsScalar()) {
      diag.add(key_line, map.path, "keys must be strings, got " + describe(key_node));
      continue;
    }
    const std::string& key = key_node.Scalar();
    Value child = map.child(key, key_node, value_node);
    auto first =
        std::find_if(seen.begin(), seen.end(), [&](const auto& s) { return s.first == key; });
    if (first != seen.end()) {
      diag.add(key_line, child.path,
               fmt::format("duplicate key (first at line {})", first->second));
      continue;
    }
    seen.emplace_back(key, key_line);
    auto p =
        std::find_if(planned.begin(), planned.end(), [&](const auto& x) { return x.key == key; });
    if (p != planned.end()) {
      diag.add(key_line, child.path,
               fmt::format("not supported by this build yet (planned: {})", p->feature));
      continue;
    }
    if (std::find(known.begin(), known.end(), key) == known.end()) {
      // The path names the unknown key itself, like every other error names its value.
      if (key == "<<") {
        diag.add(key_line, child.path, "merge keys ('<<') are not supported; write the keys out");
      } else {
        diag.add(key_line, child.path,
                 fmt::format("unknown key '{}'{}", key, did_you_mean(key, candidates)));
      }
      continue;
    }
    entries_.emplace_back(key, std::move(child));
  }
}

const Value* MapReader::get(std::string_view key) const {
  for (const auto& [k, v] : entries_) {
    if (k == key) return &v;
  }
  return nullptr;
}

const Value* MapReader::require(std::string_view key) const {
  const Value* v = get(key);
  if (v == nullptr && is_map_) {
    diag_.add(map_.line, map_.path.empty() ? std::string(key) : map_.path + "." + std::string(key),
              "required");
  }
  return v;
}

bool MapReader::read(std::string_view key, std::string& out) const {
  const Value* v = get(key);
  if (v == nullptr) return true;
  auto s = read_string(diag_, *v);
  if (s) out = std::move(*s);
  return s.has_value();
}

bool MapReader::read(std::string_view key, bool& out) const {
  const Value* v = get(key);
  if (v == nullptr) return true;
  auto b = read_bool(diag_, *v);
  if (b) out = *b;
  return b.has_value();
}

bool MapReader::read(std::string_view key, core::Duration& out, core::Duration max) const {
  const Value* v = get(key);
  if (v == nullptr) return true;
  auto d = read_duration(diag_, *v, max);
  if (d) out = *d;
  return d.has_value();
}

bool MapReader::read(std::string_view key, core::Duration& out, core::Duration min,
                     core::Duration max) const {
  const Value* v = get(key);
  if (v == nullptr) return true;
  auto d = read_duration(diag_, *v, min, max);
  if (d) out = *d;
  return d.has_value();
}

bool MapReader::read(std::string_view key, double& out, const RealRange& range) const {
  const Value* v = get(key);
  if (v == nullptr) return true;
  auto x = read_real(diag_, *v, range);
  if (x) out = *x;
  return x.has_value();
}

std::vector<ConfigError> load_document(
    std::string_view text, const std::string& source_name,
    const std::function<void(Diagnostics&, const Value&)>& load) {
  try {
    Diagnostics diag(source_name);
    std::optional<YAML::Node> document = parse_single_document(text, diag);
    // The root has no line of its own: an error about the file as a whole ("store: required",
    // "expected a mapping") is reported without one (docs/config.md), not as line 1.
    if (document) load(diag, Value{*document, "", 0});
    return diag.take();
  } catch (const std::exception& e) {
    return {ConfigError{source_name, 0, "", std::string("internal error: ") + e.what()}};
  } catch (...) {
    return {ConfigError{source_name, 0, "", "internal error"}};
  }
}

std::optional<std::string> read_config_file(const std::string& path,
                                            std::vector<ConfigError>& errors) {
  auto fail = [&](std::string message) {
    errors.push_back(ConfigError{path, 0, "", std::move(message)});
    return std::nullopt;
  };
  try {
    std::error_code ec;
    if (std::filesystem::is_directory(path, ec)) return fail("cannot read config: is a directory");
    // Refused before reading: a huge file (or /dev/zero) must not be read into memory first.
    if (auto size = std::filesystem::file_size(path, ec); !ec && size > kMaxYamlBytes)
      return fail(fmt::format("cannot read config: {} bytes, more than the {} allowed", size,
                              kMaxYamlBytes));
    std::ifstream in(path, std::ios::binary);
    if (!in) return fail(fmt::format("cannot read config: {}", std::strerror(errno)));
    std::ostringstream text;
    text << in.rdbuf();
    if (in.bad()) return fail(fmt::format("cannot read config: {}", std::strerror(errno)));
    return std::move(text).str();
  } catch (const std::exception& e) {
    return fail(std::string("cannot read config: ") + e.what());
  }
}

}  // namespace sluice::config
