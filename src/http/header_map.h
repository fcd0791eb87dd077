// An ordered list of HTTP header fields stored in one reusable buffer: no allocation per field
// once the buffer has grown to a connection's typical header size.
#pragma once

#include <cstdint>
#include <string>
#include <string_view>
#include <vector>

namespace sluice::http {

// ASCII case-insensitive equality for header names.
bool iequals(std::string_view a, std::string_view b);

class HeaderMap {
 public:
  struct Field {
    std::string_view name;
    std::string_view value;
  };

  void clear() {
    buf_.clear();
    entries_.clear();
  }
  size_t size() const { return entries_.size(); }
  bool empty() const { return entries_.empty(); }

  void add(std::string_view name, std::string_view value);
  // Appends to the name / value of the last field (the parser delivers them in pieces).
  void begin_field() { entries_.push_back({static_cast<uint32_t>(buf_.size()), 0, 0, 0}); }
  void append_name(std::string_view piece);
  void append_value(std::string_view piece);
  // Drops trailing spaces/tabs from the last value (llhttp keeps them; RFC 9110 says OWS).
  void trim_last_value();

  Field at(size_t i) const;
  // First value of a header (case-insensitive name); empty view when absent.
  std::string_view get(std::string_view name) const;
  bool has(std::string_view name) const;
  size_t count(std::string_view name) const;
  // Removes every field with this name; returns how many were removed.
  size_t remove(std::string_view name);
  void set(std::string_view name, std::string_view value) {
    remove(name);
    add(name, value);
  }

  template <class F>
  void for_each(F&& f) const {
    for (size_t i = 0; i < entries_.size(); ++i) {
      Field fld = at(i);
      f(fld.name, fld.value);
    }
  }

  size_t byte_size() const { return buf_.size(); }

 private:
  struct Entry {
    uint32_t name_off, name_len, value_off, value_len;
  };
  std::string buf_;
  std::vector<Entry> entries_;
};

}  // namespace sluice::http
