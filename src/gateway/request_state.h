// The state of the one request a downstream connection is serving, in one struct that
// Connection::begin_request resets with one assignment (`req_ = RequestState{}`): a field added
// here starts every request at its default, so nothing of request 1 (a retry counter, a forward
// flag, the original path) can leak into request 2 on the same keep-alive connection.
//
// Buffers are core::ReusedString / ReusedVector: the reset empties them but keeps their capacity,
// so a connection that has served one request serves the next without allocating.
//
// Not in here, on purpose (Connection keeps them): what outlives a request - the upstream
// connection (given back to the pool or closed explicitly), the buffer of an upstream write the
// kernel may still read (up_wbuf_), the attempt generation (it only grows, so that a handler of
// an earlier request or attempt always finds itself stale), the governance admission (released
// by its own finish/cancel), and scratch space with no meaning between requests.
#pragma once

#include <chrono>
#include <cstdint>
#include <memory>
#include <string>
#include <vector>

#include "core/clock.h"
#include "core/reused.h"
#include "http/parser.h"

namespace sluice::router {
struct Route;
}

namespace sluice::gateway {

struct WorkerServices;

struct RequestState {
  std::shared_ptr<WorkerServices> services;  // the snapshot this request started on
  const router::Route* route = nullptr;
  size_t service_index = 0;   // the service being tried (a peer city's gateway for a forward)
  size_t routed_service = 0;  // the route's service for this request (a split's choice)
  uint32_t split_slot = 0;    // its position in the route's split, for metrics; 0 without one
  uint32_t caller_column = UINT32_MAX;   // its x-sluice-caller in the route's observed table
  uint32_t channel_column = UINT32_MAX;  // its channel header, idem (UINT32_MAX: not counted)
  bool in_request = false;
  bool req_done = false;
  bool req_chunked = false;
  bool req_has_body = false;
  bool client_keep_alive = true;
  bool client_http10 = false;
  bool head_request = false;
  bool idempotent = false;
  bool local_reply = false;
  core::ReusedString method;
  core::ReusedString target;           // as routed and forwarded: the path part normalised
  core::ReusedString original_target;  // as received, when normalising changed it (access log)
  core::ReusedString request_id;
  core::ReusedString user_agent;
  std::chrono::system_clock::time_point start_wall{};
  core::MonoTime start{};
  uint64_t bytes_in = 0;
  uint64_t bytes_out = 0;
  // Body deadline: body_start + body_timeout + bytes_in / min_body_rate (limits).
  core::MonoTime body_start{};
  bool body_timed = false;     // a body is expected and the deadline runs
  bool buffering = false;      // reading a small body whole before choosing an upstream
  bool continue_sent = false;  // 100 Continue already written for this request
  core::MonoTime total_deadline = core::MonoTime::max();  // timeouts.total
  bool total_expired = false;  // the deadline that fired was timeouts.total

  // Upstream exchange.
  core::ReusedString up_out;  // request bytes waiting to be written upstream
  core::ReusedString replay;  // every request byte so far, while small enough to resend on retry
  bool replayable = true;
  bool up_connected = false;
  bool up_writing = false;
  bool retrying = false;        // the current attempt holds one of the service's active_retries
  bool up_reused = false;       // the current attempt's connection came from the pool
  bool connect_error = false;   // the current attempt's connect failed at once (not a timeout)
  uint32_t free_retries = 0;    // retries of cost kFree made by this request
  bool stale_retried = false;   // ... one of them after a stale pooled connection
  bool counted_active = false;  // holds one of the service's active_requests
  int endpoint = -1;
  core::ReusedVector<uint32_t> tried;
  uint64_t hash = 0;
  bool has_hash = false;
  int attempts = 0;
  core::MonoTime attempt_start{};
  double upstream_seconds = -1;
  bool resp_head_sent = false;
  bool resp_on_wire = false;  // part of this response has been handed to the socket
  bool resp_done = false;
  bool resp_interim = false;
  bool resp_chunked_out = false;
  bool resp_keep_alive = false;
  bool resp_got_bytes = false;
  bool up_extra_bytes = false;
  // A final response came before the whole request was sent: the rest of the body is not sent
  // (RFC 9112 section 9.3) and the connection is not reused.
  bool up_body_stopped = false;
  bool resp_bad_101 = false;       // set by on_response_head, acted on after the parser returns
  const char* up_error = nullptr;  // the protocol error of this request, for the access log
  int status = 0;
  int retry_status = 0;  // a 502/503/504 answer to retry instead of forwarding

  // Governance.
  bool gov_failure = false;   // the service failed this request (5xx or upstream error)
  bool gov_dropped = false;   // ... with a sign of overload (timeout, reset, 503)
  bool pending_held = false;  // holds one of the service's max_pending slots

  // Dual-city unit routing.
  core::ReusedString unit_city;  // only endpoints of this city may serve it; empty = any
  bool forward = false;          // sent to the owner city's gateway, unchanged
  // The owner city's gateway could not be reached: sent straight to the owner city's endpoints
  // of the route's service instead (Connection::forward_direct).
  bool direct = false;
  size_t replay_head_bytes = 0;  // the upstream head at the start of replay
  bool held = false;             // waiting for a switch of its shard to finish
  bool unit_has_key = false;
  bool unit_hop = false;      // arrived from another city's gateway (x-sluice-hop)
  bool unit_loop = false;     // ... and this city is among those that forwarded it
  core::ReusedString hop_in;  // the x-sluice-hop list it arrived with
  uint32_t unit_shard = 0;
  std::unique_ptr<http::MessageHead> held_head;  // the head of a held request
};

}  // namespace sluice::gateway
