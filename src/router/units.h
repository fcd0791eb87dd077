// Dual-city unit (shard) routing: the shard of a request's routing key, and which city owns each
// shard. Ownership lives in immutable, versioned tables; a switchover makes a new table.
#pragma once

#include <cstdint>
#include <memory>
#include <optional>
#include <span>
#include <string>
#include <string_view>
#include <vector>

#include "config/config.h"
#include "http/header_map.h"

namespace sluice::router {

// Shard of a routing key. A decimal key (one or more ASCII digits, any length, leading zeros
// allowed) maps to key mod shards, computed digit by digit (LDC style: with 100 shards a customer
// id's last two digits); any other key to upstream::hash_key(key) % shards. shards >= 1.
uint32_t shard_of(std::string_view key, uint32_t shards);

// The routing key of a request per `u`: a header (first value), a query parameter (raw, first
// occurrence) or path segment N (1-based, of the path without the query: "/users/42/x" has "42" as
// segment 2). nullopt when the request does not carry it; an empty value counts as not carried
// (it names no customer, and would otherwise pile every such request onto one shard).
std::optional<std::string_view> unit_key(const config::Units& u, std::string_view path,
                                         std::string_view query, const http::HeaderMap& headers);

// Ownership of every shard. Immutable: every change makes a new table with version + 1, which the
// gateway publishes to its workers as a whole. owner() and switching() are O(1) and never allocate.
class UnitTable {
 public:
  // `u` must be validated (every shard owned by one city). Throws std::invalid_argument when it has
  // more cities than a table can index (254).
  static std::shared_ptr<const UnitTable> from_config(const config::Units& u, uint64_t version = 1);

  uint64_t version() const { return version_; }
  uint32_t shards() const { return shards_; }
  // Name of the city owning `shard`; empty for a shard out of range (or, in an unvalidated table,
  // one nobody owns).
  std::string_view owner(uint32_t shard) const {
    return shard < shards_ && owner_[shard] != kNoCity ? std::string_view(cities_[owner_[shard]])
                                                       : std::string_view();
  }
  // The shard is in a prepared switch: requests for it should wait for the commit (or abort).
  bool switching(uint32_t shard) const {
    return shard < shards_ && (switching_[shard / 64] >> (shard % 64) & 1) != 0;
  }
  bool any_switching() const { return switching_count_ > 0; }

  // Every city of the table, in config order (cities added by a switch last), with the shards it
  // owns as sorted, merged ranges; a city that owns nothing (any more) is listed with none.
  std::vector<config::UnitOwner> owners() const;
  // The shards marked by prepared(), as sorted, merged ranges.
  std::vector<config::ShardRange> switching_ranges() const;

  struct Result {
    std::shared_ptr<const UnitTable> table;  // null on error
    std::string error;
  };
  // Moves `ranges` (empty = every shard `from` owns) from city `from` to city `to`; every shard in
  // them must be owned by `from`. `to` is a city of this table or one of `cities` (a city that owns
  // nothing yet). Clears every switching mark: this is also the commit of a prepared switch.
  Result with_switch(std::string_view from, std::string_view to,
                     std::span<const config::ShardRange> ranges,
                     const std::vector<std::string>& cities) const;
  // Phase one of a two-phase switch: the same checks as with_switch, but owners stay as they are
  // and the shards are marked switching. Fails when a switch is already prepared.
  Result prepared(std::string_view from, std::string_view to,
                  std::span<const config::ShardRange> ranges,
                  const std::vector<std::string>& cities) const;
  // Clears the marks of a prepared switch; fails when none is prepared.
  Result aborted() const;

 private:
  static constexpr uint8_t kNoCity = 0xff;
  struct Move;

  UnitTable() = default;
  std::string plan_move(std::string_view from, std::string_view to,
                        std::span<const config::ShardRange> ranges,
                        const std::vector<std::string>& cities, Move& move) const;
  std::shared_ptr<UnitTable> next() const;

  uint64_t version_ = 0;
  uint32_t shards_ = 0;
  std::vector<std::string> cities_;
  std::vector<uint8_t> owner_;       // city index per shard
  std::vector<uint64_t> switching_;  // bit per shard
  uint32_t switching_count_ = 0;
};

// Parses "0-49, 60, 70-79" (spaces allowed around items and dashes) into ranges, in the order
// written. Every shard must be < shards and every range first <= last. Empty or blank text is an
// empty list. nullopt with *error set (when error is not null) on failure.
std::optional<std::vector<config::ShardRange>> parse_shard_ranges(std::string_view text,
                                                                  uint32_t shards,
                                                                  std::string* error);
// "0-49,60,70-79": the inverse of parse_shard_ranges.
std::string format_shard_ranges(std::span<const config::ShardRange> ranges);

}  // namespace sluice::router
