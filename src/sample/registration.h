// The sample service's registration with a control plane's registry (`--control-plane URL`):
// registers the instance, heartbeats it, registers again when the control plane has forgotten it
// (404 after an expiry or a fresh database), and deregisters on a clean stop. A control plane that
// is unreachable never stops the service: registration is retried in the background.
#pragma once

#include <chrono>
#include <condition_variable>
#include <mutex>
#include <string>
#include <thread>

#include <nlohmann/json.hpp>

#include "net/http_client.h"

namespace sluice::sample {

struct RegistrationOptions {
  std::string control_plane;  // URL
  std::string token_file;
  std::string ca_file;
  std::string service, id, address, city, zone;
  unsigned weight = 1;
  std::chrono::milliseconds ttl{10000};
  std::chrono::milliseconds heartbeat{0};  // 0 = ttl / 3
  nlohmann::json facts;                    // host facts (host_facts.h); null = none
};

class Registration {
 public:
  // Throws std::invalid_argument with a message for a bad URL or an unreadable token file.
  explicit Registration(RegistrationOptions options);
  ~Registration();
  Registration(const Registration&) = delete;
  Registration& operator=(const Registration&) = delete;

  void start();
  // Stops heartbeating and deregisters (one attempt, a few seconds at most).
  void stop();

 private:
  void run();
  bool register_now(const std::string& token);
  bool wait(std::chrono::milliseconds d);  // false when stopping

  RegistrationOptions opt_;
  net::ServerUrl server_;
  net::CallCanceller cancel_;
  std::thread thread_;
  std::mutex mu_;
  std::condition_variable cv_;
  bool stopping_ = false;
  bool registered_ = false;  // thread only
};

}  // namespace sluice::sample
