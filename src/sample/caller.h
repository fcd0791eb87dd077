// Calls other services through a gateway (`sluice sample-service --gateway ADDR --call
// NAME=PATH`), so that a demo has a real call graph: every --call-interval, each target's PATH
// is requested from the gateway with `x-sluice-caller: <this service>`, which the gateway counts
// as an edge from this service to the route's service (docs/operations.md, "Observed traffic").
// On an interval rather than per incoming request: the graph then exists whatever the traffic,
// and a caller never slows its own answers down.
#pragma once

#include <chrono>
#include <condition_variable>
#include <cstdint>
#include <mutex>
#include <optional>
#include <string>
#include <thread>
#include <vector>

#include "net/http_client.h"

namespace sluice::sample {

struct CallTarget {
  std::string name;  // the service called (for logs; the gateway's route decides)
  std::string path;  // starts with '/'
};

// "NAME=PATH"; nullopt with `error` set when malformed.
std::optional<CallTarget> parse_call(const std::string& text, std::string* error);

struct CallerOptions {
  std::string gateway;  // host:port or URL of the gateway's listener
  std::string service;  // sent as x-sluice-caller
  std::vector<CallTarget> targets;
  std::chrono::milliseconds interval{1000};
  uint64_t count = 0;  // rounds to make; 0 = until stopped
};

class Caller {
 public:
  // Throws std::invalid_argument for a bad gateway address.
  explicit Caller(CallerOptions options);
  ~Caller();
  Caller(const Caller&) = delete;
  Caller& operator=(const Caller&) = delete;

  void start();
  void stop();
  uint64_t sent() const;
  uint64_t ok() const;

 private:
  void run();

  CallerOptions opt_;
  net::ServerUrl server_;
  net::CallCanceller cancel_;
  std::thread thread_;
  mutable std::mutex mu_;
  std::condition_variable cv_;
  bool stopping_ = false;
  uint64_t sent_ = 0, ok_ = 0;
};

}  // namespace sluice::sample
