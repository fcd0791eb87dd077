// State every worker of one gateway process shares: fixed for the life of the process
// (listeners, metric handles, the access log sink) or atomic counters read by the admin API.
#pragma once

#include <array>
#include <atomic>
#include <memory>
#include <string>
#include <vector>

#include "config/config.h"
#include "gateway/event_loop.h"
#include "observability/access_log.h"
#include "observability/metrics.h"

namespace sluice::gateway {

enum class RejectReason {
  kBadRequest = 0,
  kHeaderTooLarge,
  kUriTooLong,
  kBodyTooLarge,
  kHeaderTimeout,
  kIdleTimeout,
  kUnsupported,
  kTooManyConnections,
  kBodyTimeout,
  kBadPath,  // the path is refused by the path rules (http.*), before routing
  kCount
};

struct ListenerMetrics {
  observability::Gauge* active = nullptr;
  observability::Counter* total = nullptr;
};

struct GatewayShared {
  observability::Registry registry;
  std::shared_ptr<observability::AccessLogSink> access_sink;
  std::vector<config::Listener> listeners;  // fixed for the life of the process
  std::vector<ListenerMetrics> listener_metrics;
  std::array<observability::Counter*, static_cast<size_t>(RejectReason::kCount)> rejected{};
  observability::Counter* paths_normalized = nullptr;  // sluice_request_paths_normalized_total
  std::atomic<size_t> connections{0};
  // Set first thing when the gateway begins to drain, before any worker's loop gets to it: from
  // then on every response says Connection: close (Worker::draining()).
  std::atomic<bool> draining{false};
  size_t max_connections = 100000;
  unsigned workers = 1;
  IoBackend io_backend = IoBackend::kAuto;
  std::string node_id;

  void reject(RejectReason r) { rejected[static_cast<size_t>(r)]->inc(); }
};

}  // namespace sluice::gateway
