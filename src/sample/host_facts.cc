#include "sample/host_facts.h"

#include <arpa/inet.h>
#include <ifaddrs.h>
#include <netinet/in.h>
#include <unistd.h>

#include <algorithm>
#include <charconv>
#include <fstream>
#include <iterator>

namespace sluice::sample {

namespace {

constexpr size_t kMaxAddresses = 16;  // as the registry accepts

std::string read_file(const char* path) {
  std::ifstream in(path, std::ios::binary);
  std::string text;
  // /proc files are small; bounded anyway.
  char buf[8192];
  while (in && text.size() < (1 << 20)) {
    in.read(buf, sizeof buf);
    text.append(buf, static_cast<size_t>(in.gcount()));
  }
  return text;
}

std::vector<std::string> interface_addresses() {
  std::vector<std::string> out;
  ifaddrs* list = nullptr;
  if (getifaddrs(&list) != 0) return out;
  for (ifaddrs* a = list; a != nullptr && out.size() < kMaxAddresses; a = a->ifa_next) {
    if (a->ifa_addr == nullptr) continue;
    char text[INET6_ADDRSTRLEN] = {};
    if (a->ifa_addr->sa_family == AF_INET) {
      auto* in = reinterpret_cast<sockaddr_in*>(a->ifa_addr);
      if (!inet_ntop(AF_INET, &in->sin_addr, text, sizeof text)) continue;
    } else if (a->ifa_addr->sa_family == AF_INET6) {
      auto* in6 = reinterpret_cast<sockaddr_in6*>(a->ifa_addr);
      if (!inet_ntop(AF_INET6, &in6->sin6_addr, text, sizeof text)) continue;
    } else {
      continue;
    }
    if (std::find(out.begin(), out.end(), text) == out.end()) out.emplace_back(text);
  }
  freeifaddrs(list);
  return out;
}

}  // namespace

int64_t process_start_ms(std::string_view self_stat, std::string_view proc_stat, long ticks) {
  if (ticks <= 0) return 0;
  // /proc/self/stat: "pid (comm) state ..." where comm may hold spaces and parentheses; the
  // fields after the last ')' start with field 3 (state); starttime is field 22.
  size_t close = self_stat.rfind(')');
  if (close == std::string_view::npos) return 0;
  std::string_view rest = self_stat.substr(close + 1);
  uint64_t start_ticks = 0;
  int field = 2;
  size_t i = 0;
  while (i < rest.size()) {
    while (i < rest.size() && rest[i] == ' ') ++i;
    size_t j = i;
    while (j < rest.size() && rest[j] != ' ' && rest[j] != '\n') ++j;
    if (j == i) break;
    ++field;
    if (field == 22) {
      auto [p, ec] = std::from_chars(rest.data() + i, rest.data() + j, start_ticks);
      if (ec != std::errc() || p != rest.data() + j) return 0;
      break;
    }
    i = j;
  }
  if (field != 22) return 0;
  // /proc/stat: a line "btime SECONDS" (boot time since the epoch).
  size_t b = proc_stat.find("\nbtime ");
  if (b == std::string_view::npos) return 0;
  std::string_view line = proc_stat.substr(b + 7);
  int64_t btime = 0;
  auto [p, ec] = std::from_chars(line.data(), line.data() + line.size(), btime);
  if (ec != std::errc() || btime <= 0) return 0;
  return btime * 1000 + static_cast<int64_t>(start_ticks * 1000 / static_cast<uint64_t>(ticks));
}

HostFacts read_host_facts(std::string version) {
  HostFacts f;
  char host[256] = {};
  if (gethostname(host, sizeof host - 1) == 0) f.hostname = host;
  f.addresses = interface_addresses();
  long cpus = sysconf(_SC_NPROCESSORS_ONLN);
  if (cpus > 0) f.cpu_count = cpus;
  long pages = sysconf(_SC_PHYS_PAGES), page = sysconf(_SC_PAGE_SIZE);
  if (pages > 0 && page > 0) f.memory_bytes = static_cast<int64_t>(pages) * page;
  f.started_ms =
      process_start_ms(read_file("/proc/self/stat"), read_file("/proc/stat"), sysconf(_SC_CLK_TCK));
  f.version = std::move(version);
  return f;
}

nlohmann::json to_json(const HostFacts& f) {
  // Only what the registry accepts: one odd fact must not keep the instance unregistered.
  auto plain = [](const std::string& s, size_t max, bool name) {
    return !s.empty() && s.size() <= max && std::all_of(s.begin(), s.end(), [&](char c) {
      if (!name) return c > ' ' && c < 127;
      return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') ||
             c == '_' || c == '.' || c == '-';
    });
  };
  nlohmann::json j = nlohmann::json::object();
  if (plain(f.hostname, 253, true)) j["hostname"] = f.hostname;
  if (!f.addresses.empty()) j["addresses"] = f.addresses;
  if (f.cpu_count > 0) j["cpu_count"] = f.cpu_count;
  if (f.memory_bytes > 0) j["memory_bytes"] = f.memory_bytes;
  if (f.started_ms > 0) j["started_ms"] = f.started_ms;
  if (plain(f.version, 128, false)) j["version"] = f.version;
  return j;
}

}  // namespace sluice::sample
