#include "gateway/observed.h"

#include <algorithm>
#include <cstring>

#include "observability/metrics.h"

namespace sluice::gateway {

namespace {
constexpr auto kRelaxed = std::memory_order_relaxed;
}  // namespace

bool observed_value_ok(std::string_view value) {
  if (value.empty() || value.size() > ObservedTable::kMaxValueBytes) return false;
  return std::all_of(value.begin(), value.end(), [](char c) {
    return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') || c == '_' ||
           c == '.' || c == '-';
  });
}

ObservedTable::ObservedTable(unsigned rows)
    : rows_(std::max(rows, 1u)), counts_(std::make_unique<Row[]>(rows_)) {
  for (unsigned r = 0; r < rows_; ++r) {
    for (uint32_t c = 0; c < kColumns; ++c) {
      counts_[r].requests[c].store(0, kRelaxed);
      counts_[r].errors[c].store(0, kRelaxed);
    }
  }
}

uint32_t ObservedTable::intern(std::string_view value) {
  if (value.empty()) return kNone;
  if (!observed_value_ok(value)) return kInvalid;
  const uint32_t claimed = std::min(claimed_.load(std::memory_order_acquire), kMaxValues);
  for (uint32_t i = 0; i < claimed; ++i) {
    const Entry& e = entries_[i];
    if (e.ready.load(std::memory_order_acquire) && e.size == value.size() &&
        std::memcmp(e.text, value.data(), value.size()) == 0)
      return i;
  }
  if (claimed >= kMaxValues) return kOther;
  // A new value: rare (at most kMaxValues times per table), so one locked add is fine here.
  const uint32_t i = claimed_.fetch_add(1, std::memory_order_acq_rel);
  if (i >= kMaxValues) return kOther;
  Entry& e = entries_[i];
  std::memcpy(e.text, value.data(), value.size());
  e.size = static_cast<uint8_t>(value.size());
  e.ready.store(true, std::memory_order_release);
  return i;
}

void ObservedTable::count(uint32_t column, bool error) {
  if (column >= kColumns) return;
  const unsigned slot = observability::thread_slot();
  if (slot < rows_ - 1) {
    // Single writer: the worker owns its row.
    Row& row = counts_[slot];
    row.requests[column].store(row.requests[column].load(kRelaxed) + 1, kRelaxed);
    if (error) row.errors[column].store(row.errors[column].load(kRelaxed) + 1, kRelaxed);
  } else {
    Row& row = counts_[rows_ - 1];
    row.requests[column].fetch_add(1, kRelaxed);
    if (error) row.errors[column].fetch_add(1, kRelaxed);
  }
}

std::string_view ObservedTable::name(uint32_t column) const {
  if (column == kOther) return kOtherName;
  if (column == kInvalid) return kInvalidName;
  if (column >= kMaxValues) return {};
  const Entry& e = entries_[column];
  if (!e.ready.load(std::memory_order_acquire)) return {};
  return {e.text, e.size};
}

uint64_t ObservedTable::requests(uint32_t column) const {
  if (column >= kColumns) return 0;
  uint64_t n = 0;
  for (unsigned r = 0; r < rows_; ++r) n += counts_[r].requests[column].load(kRelaxed);
  return n;
}

uint64_t ObservedTable::errors(uint32_t column) const {
  if (column >= kColumns) return 0;
  uint64_t n = 0;
  for (unsigned r = 0; r < rows_; ++r) n += counts_[r].errors[column].load(kRelaxed);
  return n;
}

}  // namespace sluice::gateway
