#include "core/json.h"

#include <cstdint>
#include <utility>
#include <vector>

#include <fmt/format.h>

namespace sluice::core {
namespace {

using Json = nlohmann::json;

// Builds the document from SAX events (the library's own DOM builder, plus the two bounds).
// Returning false from an event stops the parser at once.
class BoundedBuilder {
 public:
  explicit BoundedBuilder(int max_depth) : max_depth_(max_depth) {}

  bool null() { return put(Json(nullptr)); }
  bool boolean(bool v) { return put(Json(v)); }
  bool number_integer(Json::number_integer_t v) { return put(Json(v)); }
  bool number_unsigned(Json::number_unsigned_t v) { return put(Json(v)); }
  bool number_float(Json::number_float_t v, const std::string&) { return put(Json(v)); }
  bool string(std::string& v) { return put(Json(std::move(v))); }
  bool binary(Json::binary_t& v) { return put(Json(std::move(v))); }

  bool start_object(std::size_t) { return open(Json::object()); }
  bool end_object() { return close(); }
  bool start_array(std::size_t) { return open(Json::array()); }
  bool end_array() { return close(); }

  bool key(std::string& k) {
    Frame& f = stack_.back();
    if (f.node->contains(k)) {
      error_ = fmt::format("{}: duplicate key", path_with(k));
      return false;
    }
    f.key = std::move(k);
    return true;
  }

  bool parse_error(std::size_t, const std::string&, const nlohmann::detail::exception& e) {
    // e.what() reads "[json.exception.parse_error.101] parse error at line 1, column 3: ...".
    std::string what = e.what();
    size_t at = what.find("parse error");
    error_ = "malformed JSON: " + (at == std::string::npos ? what : what.substr(at));
    return false;
  }

  Json& result() { return root_; }
  const std::string& error() const { return error_; }

 private:
  struct Frame {
    Json* node;
    std::string key;  // objects: the key whose value comes next
  };

  // Where the next value goes. Pointers stay valid: a container is only appended to while it is
  // the innermost open one, and then no pointer to one of its children is held.
  Json* place(Json&& v) {
    if (stack_.empty()) {
      root_ = std::move(v);
      return &root_;
    }
    Frame& f = stack_.back();
    if (f.node->is_array()) {
      f.node->push_back(std::move(v));
      return &f.node->back();
    }
    Json& slot = (*f.node)[f.key];
    slot = std::move(v);
    return &slot;
  }

  bool put(Json&& v) {
    place(std::move(v));
    return true;
  }

  bool open(Json&& container) {
    if (static_cast<int>(stack_.size()) >= max_depth_) {
      error_ = fmt::format("JSON nested deeper than {} levels", max_depth_);
      return false;
    }
    Json* p = place(std::move(container));
    stack_.push_back(Frame{p, {}});
    return true;
  }

  bool close() {
    stack_.pop_back();
    return true;
  }

  // "resources[0].spec.name" for key `k` of the innermost object.
  std::string path_with(const std::string& k) const {
    std::string out;
    for (size_t i = 1; i < stack_.size(); ++i) {
      const Frame& parent = stack_[i - 1];
      if (parent.node->is_array()) {
        out += fmt::format("[{}]", parent.node->size() - 1);
      } else {
        if (!out.empty()) out += '.';
        out += parent.key;
      }
    }
    if (!out.empty()) out += '.';
    return out + k;
  }

  int max_depth_;
  Json root_;
  std::vector<Frame> stack_;
  std::string error_;
};

}  // namespace

std::optional<nlohmann::json> parse_json(std::string_view text, std::string* error, int max_depth) {
  BoundedBuilder builder(max_depth);
  bool ok = false;
  try {
    ok = Json::sax_parse(text.begin(), text.end(), &builder, Json::input_format_t::json,
                         /*strict=*/true, /*ignore_comments=*/false);
  } catch (const Json::exception& e) {
    // Not expected from the SAX interface (errors come to parse_error); kept as a message.
    if (error != nullptr) *error = std::string("malformed JSON: ") + e.what();
    return std::nullopt;
  }
  if (!ok) {
    if (error != nullptr)
      *error = builder.error().empty() ? std::string("malformed JSON") : builder.error();
    return std::nullopt;
  }
  return std::move(builder.result());
}

nlohmann::json parse_json_or_discarded(std::string_view text, int max_depth) {
  std::optional<nlohmann::json> j = parse_json(text, nullptr, max_depth);
  return j ? std::move(*j) : nlohmann::json(nlohmann::json::value_t::discarded);
}

}  // namespace sluice::core
