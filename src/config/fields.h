// One declaration per config field (Redis's config.c table): its key, where it lives in the
// struct, its type and bounds, and whether a reload can change it. A section's table drives
// reading (with the schema's own error messages), serialization (to_json) and "needs restart"
// (restart_only_changes). Rules across fields stay in the loader, next to the section's table.
#pragma once

#include <nlohmann/json.hpp>

#include <algorithm>
#include <array>
#include <cstdint>
#include <optional>
#include <span>
#include <stdexcept>
#include <string>
#include <string_view>
#include <variant>
#include <vector>

#include "config/reader.h"
#include "core/address.h"
#include "core/duration.h"

namespace sluice::config {

// How a field is checked when read. Each form gives the reader.h messages: "must be 1..1000, got
// 0", "must be at most 1h, got 2h", ...
struct FieldCheck {
  enum class Form : uint8_t {
    kNone,        // bool
    kUint,        // integer lo..hi
    kSize,        // integer or size with a unit (32KiB) lo..hi
    kDuration,    // > 0 and <= dmax
    kDurationIn,  // dmin..dmax (dmin 0 allows "0s")
    kReal,        // real number in `real`
    kEnum,        // one of `names`; the member holds the index (an enum of config.h)
    kRead,        // a string or address read by the field's own reader (its own messages)
  };
  Form form = Form::kNone;
  uint64_t lo = 0;
  uint64_t hi = 0;
  core::Duration dmin{};
  core::Duration dmax{};
  RealRange real{};
  std::span<const std::string_view> names{};
};

// Where the value lives in the section's struct `S`. Enums are read and written through their
// index (static_cast), so that one table type serves every enum of config.h.
template <class S>
using FieldMember = std::variant<bool S::*, uint32_t S::*, uint64_t S::*, core::Duration S::*,
                                 double S::*, int S::*, std::string S::*, core::HostPort S::*>;

// Readers of kRead fields: report their own error and return nullopt when the value is invalid.
using StringReader = std::optional<std::string> (*)(Diagnostics&, const Value&);
using AddressReader = std::optional<core::HostPort> (*)(Diagnostics&, const Value&);

template <class S>
struct Field {
  std::string_view key;
  FieldMember<S> member;
  FieldCheck check;
  bool restart = false;  // a reload cannot change it (bound to sockets or threads made at start)
  // For enums: reads and writes the member as an index into check.names.
  size_t (*get_enum)(const S&) = nullptr;
  void (*set_enum)(S&, size_t) = nullptr;
  // For kRead: the reader of a string or address member.
  StringReader string_reader = nullptr;
  AddressReader address_reader = nullptr;
  bool required = false;    // absent: "<path>.<key>: required"
  bool omit_empty = false;  // an empty string is left out of to_json (it would not load back)
};

// ---- declaring fields ----

template <class S, class T>
constexpr Field<S> uint_field(std::string_view key, T S::*m, uint64_t lo, uint64_t hi,
                              bool restart = false) {
  return {key, m, {FieldCheck::Form::kUint, lo, hi}, restart};
}
template <class S, class T>
constexpr Field<S> size_field(std::string_view key, T S::*m, uint64_t lo, uint64_t hi,
                              bool restart = false) {
  return {key, m, {FieldCheck::Form::kSize, lo, hi}, restart};
}
// > 0 and at most `max`.
template <class S>
constexpr Field<S> duration_field(std::string_view key, core::Duration S::*m, core::Duration max,
                                  bool restart = false) {
  FieldCheck c{FieldCheck::Form::kDuration};
  c.dmax = max;
  return {key, m, c, restart};
}
// min..max; a min of 0 allows "0s".
template <class S>
constexpr Field<S> duration_field(std::string_view key, core::Duration S::*m, core::Duration min,
                                  core::Duration max, bool restart = false) {
  FieldCheck c{FieldCheck::Form::kDurationIn};
  c.dmin = min;
  c.dmax = max;
  return {key, m, c, restart};
}
// A string read (and checked) by `reader`.
template <class S>
constexpr Field<S> string_field(std::string_view key, std::string S::*m, StringReader reader,
                                bool restart = false, bool required = false) {
  Field<S> f{key, m, {FieldCheck::Form::kRead}, restart};
  f.string_reader = reader;
  f.required = required;
  return f;
}
// A host:port read (and checked) by `reader`; shown as "host:port".
template <class S>
constexpr Field<S> address_field(std::string_view key, core::HostPort S::*m, AddressReader reader,
                                 bool restart = false, bool required = false) {
  Field<S> f{key, m, {FieldCheck::Form::kRead}, restart};
  f.address_reader = reader;
  f.required = required;
  return f;
}
template <class S>
constexpr Field<S> bool_field(std::string_view key, bool S::*m, bool restart = false) {
  return {key, m, {FieldCheck::Form::kNone}, restart};
}
template <class S>
constexpr Field<S> real_field(std::string_view key, double S::*m, RealRange range,
                              bool restart = false) {
  FieldCheck c{FieldCheck::Form::kReal};
  c.real = range;
  return {key, m, c, restart};
}

template <auto M>
struct MemberOf;
template <class S, class T, T S::*M>
struct MemberOf<M> {
  using Struct = S;
  using Type = T;
};

// An enum member whose values are the indexes of `names` (as the enums of config.h are).
template <auto M>
constexpr auto enum_field(std::string_view key, std::span<const std::string_view> names,
                          bool restart = false) {
  using S = typename MemberOf<M>::Struct;
  using T = typename MemberOf<M>::Type;
  FieldCheck c{FieldCheck::Form::kEnum};
  c.names = names;
  Field<S> f{key, static_cast<bool S::*>(nullptr), c, restart};
  f.get_enum = [](const S& s) { return static_cast<size_t>(s.*M); };
  f.set_enum = [](S& s, size_t i) { s.*M = static_cast<T>(i); };
  return f;
}
// A member whose values are listed in `Values`, in the order of `names` (an enum of another module,
// or a string that holds one of `names`).
template <auto M, const auto& Values>
constexpr auto mapped_enum_field(std::string_view key, std::span<const std::string_view> names,
                                 bool restart = false) {
  using S = typename MemberOf<M>::Struct;
  FieldCheck c{FieldCheck::Form::kEnum};
  c.names = names;
  Field<S> f{key, static_cast<bool S::*>(nullptr), c, restart};
  f.get_enum = [](const S& s) {
    return static_cast<size_t>(std::find(Values.begin(), Values.end(), s.*M) - Values.begin());
  };
  f.set_enum = [](S& s, size_t i) { s.*M = Values[i]; };
  return f;
}

// ---- using a table ----

template <class S, size_t N>
std::vector<std::string_view> field_keys(const std::array<Field<S>, N>& fields,
                                         std::initializer_list<std::string_view> more = {}) {
  std::vector<std::string_view> keys;
  for (const auto& f : fields) keys.push_back(f.key);
  keys.insert(keys.end(), more.begin(), more.end());
  return keys;
}

// Index of `key` in the table; a key that is not there does not compile (in a constant expression).
template <class S, size_t N>
constexpr size_t field_index(const std::array<Field<S>, N>& fields, std::string_view key) {
  for (size_t i = 0; i < N; ++i) {
    if (fields[i].key == key) return i;
  }
  throw std::logic_error("no such field");
}

// Reads one field when present. True when absent or valid; `out` is set only when valid.
template <class S>
bool read_field(const MapReader& m, const Field<S>& f, S& out) {
  using Form = FieldCheck::Form;
  const Value* v = f.required ? m.require(f.key) : m.get(f.key);
  if (v == nullptr) return !f.required || !m.is_map();
  Diagnostics& diag = m.diag();
  const FieldCheck& c = f.check;
  if (c.form == Form::kEnum) {
    auto i = read_enum(diag, *v, c.names);
    if (i) f.set_enum(out, *i);
    return i.has_value();
  }
  return std::visit(
      [&](auto member) -> bool {
        using T = std::remove_reference_t<decltype(out.*member)>;
        if constexpr (std::is_same_v<T, std::string>) {
          auto x = f.string_reader(diag, *v);
          if (x) out.*member = std::move(*x);
          return x.has_value();
        } else if constexpr (std::is_same_v<T, core::HostPort>) {
          auto x = f.address_reader(diag, *v);
          if (x) out.*member = std::move(*x);
          return x.has_value();
        } else if constexpr (std::is_same_v<T, bool>) {
          auto b = read_bool(diag, *v);
          if (b) out.*member = *b;
          return b.has_value();
        } else if constexpr (std::is_same_v<T, core::Duration>) {
          auto d = c.form == Form::kDuration ? read_duration(diag, *v, c.dmax)
                                             : read_duration(diag, *v, c.dmin, c.dmax);
          if (d) out.*member = *d;
          return d.has_value();
        } else if constexpr (std::is_same_v<T, double>) {
          auto x = read_real(diag, *v, c.real);
          if (x) out.*member = *x;
          return x.has_value();
        } else {
          auto n = c.form == Form::kSize ? read_size(diag, *v, c.lo, c.hi)
                                         : read_uint(diag, *v, c.lo, c.hi);
          if (n) out.*member = static_cast<T>(*n);
          return n.has_value();
        }
      },
      f.member);
}

// Reads every field of the table; per field, whether it was absent or valid.
template <class S, size_t N>
std::array<bool, N> read_fields(const MapReader& m, const std::array<Field<S>, N>& fields, S& out) {
  std::array<bool, N> ok{};
  for (size_t i = 0; i < N; ++i) ok[i] = read_field(m, fields[i], out);
  return ok;
}

// The field's value as GET /config shows it: durations in their shortest exact form, sizes as
// byte counts, enums by name.
template <class S>
nlohmann::ordered_json field_json(const Field<S>& f, const S& s) {
  if (f.check.form == FieldCheck::Form::kEnum) return f.check.names[f.get_enum(s)];
  return std::visit(
      [&](auto member) -> nlohmann::ordered_json {
        const auto& value = s.*member;
        using T = std::decay_t<decltype(value)>;
        if constexpr (std::is_same_v<T, core::Duration>) {
          return core::format_duration(value);
        } else if constexpr (std::is_same_v<T, core::HostPort>) {
          return value.to_string();
        } else {
          return value;
        }
      },
      f.member);
}

template <class S, size_t N>
void write_fields(nlohmann::ordered_json& j, const std::array<Field<S>, N>& fields, const S& s) {
  for (const auto& f : fields) {
    if (f.omit_empty) {
      auto* m = std::get_if<std::string S::*>(&f.member);
      if (m != nullptr && (s.**m).empty()) continue;
    }
    j[std::string(f.key)] = field_json(f, s);
  }
}

template <class S>
bool same_field(const Field<S>& f, const S& a, const S& b) {
  if (f.check.form == FieldCheck::Form::kEnum) return f.get_enum(a) == f.get_enum(b);
  return std::visit([&](auto member) { return a.*member == b.*member; }, f.member);
}

// Whether a field a reload cannot change differs between `a` and `b`.
template <class S, size_t N>
bool restart_needed(const std::array<Field<S>, N>& fields, const S& a, const S& b) {
  for (const auto& f : fields) {
    if (f.restart && !same_field(f, a, b)) return true;
  }
  return false;
}

// Keys of the fields a reload cannot change that differ between `a` and `b`.
template <class S, size_t N>
void restart_fields_changed(const std::array<Field<S>, N>& fields, const S& a, const S& b,
                            std::vector<std::string_view>& out) {
  for (const auto& f : fields) {
    if (f.restart && !same_field(f, a, b)) out.push_back(f.key);
  }
}

}  // namespace sluice::config
