// What an instance tells the registry about the host it runs on (the registration's `facts`,
// docs/control-plane.md "Registry"): read from the OS at start, for the CMDB's observed data.
#pragma once

#include <cstdint>
#include <string>
#include <string_view>
#include <vector>

#include <nlohmann/json.hpp>

namespace sluice::sample {

struct HostFacts {
  std::string hostname;                // gethostname()
  std::vector<std::string> addresses;  // the interfaces' IP addresses (getifaddrs), at most 16
  int64_t cpu_count = 0;               // sysconf(_SC_NPROCESSORS_ONLN)
  int64_t memory_bytes = 0;            // sysconf(_SC_PHYS_PAGES) * page size
  int64_t started_ms = 0;              // this process's start (/proc/self/stat, /proc/stat btime)
  std::string version;                 // of the binary
};

// Reads what the OS tells; a fact it cannot read stays empty / 0 and is left out of to_json.
HostFacts read_host_facts(std::string version);

// The process start time in ms since the epoch from the texts of /proc/self/stat and /proc/stat
// and the clock ticks per second; 0 when they cannot be parsed.
int64_t process_start_ms(std::string_view self_stat, std::string_view proc_stat, long ticks);

nlohmann::json to_json(const HostFacts& f);

}  // namespace sluice::sample
