#include "http/header_map.h"

namespace sluice::http {

static inline char lower(char c) {
  return (c >= 'A' && c <= 'Z') ? static_cast<char>(c + 32) : c;
}

bool iequals(std::string_view a, std::string_view b) {
  if (a.size() != b.size()) return false;
  for (size_t i = 0; i < a.size(); ++i) {
    if (lower(a[i]) != lower(b[i])) return false;
  }
  return true;
}

void HeaderMap::add(std::string_view name, std::string_view value) {
  Entry e;
  e.name_off = static_cast<uint32_t>(buf_.size());
  e.name_len = static_cast<uint32_t>(name.size());
  buf_.append(name);
  e.value_off = static_cast<uint32_t>(buf_.size());
  e.value_len = static_cast<uint32_t>(value.size());
  buf_.append(value);
  entries_.push_back(e);
}

void HeaderMap::append_name(std::string_view piece) {
  Entry& e = entries_.back();
  buf_.append(piece);
  e.name_len += static_cast<uint32_t>(piece.size());
  e.value_off = static_cast<uint32_t>(buf_.size());
}

void HeaderMap::append_value(std::string_view piece) {
  Entry& e = entries_.back();
  if (e.value_len == 0) e.value_off = static_cast<uint32_t>(buf_.size());
  buf_.append(piece);
  e.value_len += static_cast<uint32_t>(piece.size());
}

void HeaderMap::trim_last_value() {
  if (entries_.empty()) return;
  Entry& e = entries_.back();
  while (e.value_len > 0 && (buf_[e.value_off + e.value_len - 1] == ' ' ||
                             buf_[e.value_off + e.value_len - 1] == '\t')) {
    --e.value_len;
  }
}

HeaderMap::Field HeaderMap::at(size_t i) const {
  const Entry& e = entries_[i];
  return {std::string_view(buf_.data() + e.name_off, e.name_len),
          std::string_view(buf_.data() + e.value_off, e.value_len)};
}

std::string_view HeaderMap::get(std::string_view name) const {
  for (size_t i = 0; i < entries_.size(); ++i) {
    Field f = at(i);
    if (iequals(f.name, name)) return f.value;
  }
  return {};
}

bool HeaderMap::has(std::string_view name) const {
  for (size_t i = 0; i < entries_.size(); ++i) {
    if (iequals(at(i).name, name)) return true;
  }
  return false;
}

size_t HeaderMap::count(std::string_view name) const {
  size_t n = 0;
  for (size_t i = 0; i < entries_.size(); ++i) {
    if (iequals(at(i).name, name)) ++n;
  }
  return n;
}

size_t HeaderMap::remove(std::string_view name) {
  // Entries are dropped; their bytes stay in buf_ until clear(). Headers are small and the map
  // lives for one request, so compaction would cost more than it saves.
  size_t before = entries_.size();
  std::erase_if(entries_, [&](const Entry& e) {
    return iequals(std::string_view(buf_.data() + e.name_off, e.name_len), name);
  });
  return before - entries_.size();
}

}  // namespace sluice::http
