// One downstream (client) connection and the request path through it: parse a request, route it,
// pick an endpoint, stream the request to a pooled upstream connection, stream the response back,
// retry where that is safe, and record the outcome. Requests on one connection are handled one at
// a time in order (pipelined requests wait, already parsed bytes kept, until the response before
// them is complete).
#pragma once

#include <sys/socket.h>

#include <array>
#include <chrono>
#include <memory>
#include <string>
#include <vector>

#include "gateway/governance.h"
#include "gateway/local_reply.h"
#include "gateway/request_state.h"
#include "gateway/upstream_pool.h"
#include "http/parser.h"
#include "http/path.h"
#include "router/router.h"

namespace sluice::gateway {

struct Snapshot;

class Worker;
struct WorkerServices;
struct RouteMetrics;
enum class UpstreamErrorKind;
enum class UpstreamProtocolError : uint8_t;

class Connection final : public std::enable_shared_from_this<Connection>,
                         public http::MessageSink,
                         public UpstreamUser {
 public:
  // Takes over `fd`, an accepted socket with the loop's flags (EventLoop::socket_flags).
  Connection(Worker& worker, int fd, size_t listener, const sockaddr_storage& peer);
  ~Connection() override;

  void start();
  // Called by the worker's sweep timer (every 100 ms) to enforce deadlines.
  void on_tick(core::MonoTime now);
  // Stop keep-alive: close now if idle, else after the response in progress.
  void drain();
  void close();
  // The unit ownership table changed: a request waiting on a switch decides again.
  void on_units_changed();

  // Worker's intrusive list.
  Connection* prev = nullptr;
  Connection* next = nullptr;

 private:
  enum class Deadline { kNone, kHeader, kIdle, kConnect, kUpstream, kHold };
  enum class UnitStep { kServe, kForward, kHold, kReplied };
  struct ResponseSink : http::MessageSink {
    Connection* c;
    void on_head(http::MessageHead& head) override { c->on_response_head(head); }
    void on_body(std::string_view data) override { c->on_response_body(data); }
    void on_complete() override { c->on_response_complete(); }
  };

  // Downstream reading and request parsing.
  void read_downstream();
  void on_downstream_data(int err, size_t n);
  bool want_downstream_read() const;
  void feed(const char* data, size_t len);
  void process_pending();
  void on_parse_error();
  void begin_request();
  void on_head(http::MessageHead& head) override;
  void on_body(std::string_view data) override;
  void on_complete() override;

  // Upstream.
  void start_attempt();
  void on_connected(int err, uint64_t gen);
  void upstream_ready();
  void flush_upstream();
  void on_upstream_data(int err, const char* data, size_t n) override;
  void read_upstream();
  void on_upstream_failure(UpstreamErrorKind kind, const char* what);
  // What a retry costs (docs/config.md, services[].retry): kFree = failover from an endpoint
  // that was not serving (counts neither against `attempts` nor the budget), kAttempt = counts
  // against `attempts` only (nothing reached the service), kBudgeted = both.
  enum class RetryCost { kNone, kFree, kAttempt, kBudgeted };
  // Whether and at what cost another attempt may be made after a failure of kind `on_flag`
  // (config::RetryOn). `refused`: the connection could not be opened; `before_response`: the
  // connection closed or was reset before any response byte; `stale`: ... and it came from the
  // pool.
  RetryCost can_retry(uint32_t on_flag, bool refused = false, bool stale = false,
                      bool before_response = false) const;
  // Whether a try of at least the minimum length still fits in timeouts.total.
  bool time_left_for_try() const;
  // Arms the connect/upstream deadline, cut to timeouts.total until the response head arrived.
  void arm_upstream_deadline(Deadline kind, std::chrono::nanoseconds after);
  // The body of the request is complete (or larger than limits.request_buffer_bytes): go on.
  void end_buffering();
  // limits.body_timeout / min_body_rate ran out.
  void on_body_timeout();
  // Closes the upstream connection of this request (never pooled) and lets go of it.
  void discard_upstream();
  // The client closed or reset the connection.
  void on_client_gone();
  // Ends the current attempt: closes its connection, returns its endpoint count.
  void drop_upstream();
  // Starts the next attempt with the request bytes kept for replay.
  // `stale`: the retry of a stale pooled connection (free once per request).
  void retry(RetryCost cost, bool stale = false);
  void release_endpoint();
  // The upstream head into req_.up_out (and replay): http::append_upstream_head with this
  // request's routing decisions. False when it cannot be built (answered 400).
  bool build_upstream_head(const http::MessageHead& head);
  // The ring_hash key of this request (load_balancer.hash_on), if the request carries one.
  void compute_hash(const http::MessageHead& head);
  void on_response_head(http::MessageHead& head);
  void on_response_body(std::string_view data);
  void on_response_complete();
  // The upstream broke the protocol (or answered early): counted, logged, and the connection is
  // never reused.
  void note_protocol_error(UpstreamProtocolError e);

  // Downstream writing and completion.
  void flush_downstream();
  // Every response the gateway makes itself goes through reply() (local_reply.h); it fills in
  // the request id, HEAD and whether the connection closes after it.
  void reply(LocalReply r);
  void local_reply(int status, std::string_view message);
  void unsend_response();
  // Answers a request the governance chain refused (429, fallback or 503).
  void reply_refused(Verdict verdict);
  // Marks the endpoints this attempt may use: health, ejection, locality tiers, unit city.
  // False when there is none.
  bool choose_endpoints();
  // Dual-city unit routing of a request for a unit service (the shard is already known).
  UnitStep route_unit();
  // The part of the request path after routing: governance, upstream head, first attempt.
  // `resumed`: the request waited for a unit switch (no 100 Continue then: it is late).
  void continue_request(const http::MessageHead& head, bool resumed);
  // A forward whose owner-city gateway cannot be reached (connect refused, failed or timed out,
  // or the peer ejected): the request never left, so it goes straight to the owner city's
  // endpoints of the route's service, with this gateway's governance and the hop list. False
  // when it cannot (not a forward, already answering, or too large a request to resend).
  bool forward_direct();
  // The governance chain for the request's route and service; false when it refused (and was
  // answered).
  bool admit(const http::MessageHead& head);
  // Passive outcome of the current attempt, for outlier detection.
  void record_attempt(bool error);
  void finish_request();
  // Gives back the endpoint and service in-flight counts this request holds.
  void release_request();
  // Metrics and access log line for the request that just ended.
  void record(std::string_view endpoint);
  // Interns the request's caller and channel in its route's observed tables (observed.h).
  void observe(const Snapshot& snap, const http::HeaderMap& headers);
  void abort_request();
  void set_deadline(Deadline kind, std::chrono::nanoseconds after);

  Worker& worker_;
  std::shared_ptr<Connection> self_;  // alive while open (the worker's list owns it)
  Stream socket_;
  size_t listener_;
  std::string client_ip_;
  http::Parser parser_;
  ResponseSink response_sink_;
  http::Parser response_parser_;

  // Per connection.
  // Reads of a new request land here first: small, so an idle connection costs little, and
  // owned, so a read can stay armed while the connection waits.
  std::array<char, 1024> rbuf_;
  std::string pending_;  // bytes read past the end of the request in progress (pipelining)
  std::string ds_out_;   // response bytes waiting to be written downstream
  std::string ds_wbuf_;  // response bytes being written
  bool ds_reading_ = false;
  bool ds_writing_ = false;
  bool closing_ = false;  // close once ds_out_ is written
  bool closed_ = false;
  bool draining_ = false;
  Deadline deadline_kind_ = Deadline::kNone;
  core::MonoTime deadline_{};
  core::MonoTime ds_write_started_{};
  uint64_t requests_ = 0;
  core::MonoTime request_began_{};  // when the first byte of the next/current request was read

  // Per request: reset with one assignment in begin_request (request_state.h).
  RequestState req_;
  // What outlives a request, or is scratch space (request_state.h says why these stay out).
  std::shared_ptr<UpstreamConnection> upstream_;
  std::string up_wbuf_;         // request bytes being written upstream
  bool up_wbuf_busy_ = false;   // a write of up_wbuf_ has not completed (even if dropped)
  uint64_t attempt_gen_ = 0;    // grows with every attempt and request: stale handlers stop
  Admission admission_;         // the governance chain's holds for the current request
  std::string path_scratch_;    // the normal form of the path is built here
  std::string target_scratch_;  // the upstream request-target is built here
  std::string traceparent_;     // sent upstream
  std::string reply_scratch_;   // the JSON body of a local reply
};

}  // namespace sluice::gateway
