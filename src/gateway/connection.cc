#include "gateway/connection.h"

#include <arpa/inet.h>
#include <netinet/in.h>
#include <sys/socket.h>

#include <cerrno>

#include <fmt/format.h>

#include "core/log.h"
#include "core/random.h"
#include "gateway/observed.h"
#include "gateway/shared.h"
#include "gateway/snapshot.h"
#include "gateway/worker.h"
#include "governance/circuit_breaker.h"
#include "governance/outlier_detector.h"
#include "http/upstream_head.h"
#include "http/writer.h"
#include "observability/access_log.h"
#include "observability/trace.h"
#include "router/request_input.h"
#include "router/units.h"

namespace sluice::gateway {

namespace {

// Requests up to this size (head + body) are kept whole so they can be sent again on retry.
constexpr size_t kMaxReplayBytes = 64 * 1024;
// Stop reading a request body while this much is waiting to go upstream (backpressure).
constexpr size_t kMaxUpstreamBacklog = 256 * 1024;
// A retry is not started with less than this left of timeouts.total (and not with less than a
// tenth of timeouts.request): a try that short could hardly succeed.
constexpr std::chrono::nanoseconds kMinTry = std::chrono::milliseconds(5);

// Connect errors that say nothing serves at the endpoint (as opposed to local shortages such as
// EADDRNOTAVAIL or EMFILE, which are this gateway's problem).
bool endpoint_refused(int err) {
  return err == ECONNREFUSED || err == ECONNRESET || err == ECONNABORTED || err == EHOSTUNREACH ||
         err == ENETUNREACH || err == EHOSTDOWN;
}

bool is_idempotent(std::string_view m) {
  return m == "GET" || m == "HEAD" || m == "OPTIONS" || m == "TRACE" || m == "PUT" || m == "DELETE";
}

std::string_view host_without_port(std::string_view host) {
  if (!host.empty() && host.front() == '[') {
    auto close = host.find(']');
    return close == std::string_view::npos ? host : host.substr(0, close + 1);
  }
  auto colon = host.rfind(':');
  return colon == std::string_view::npos ? host : host.substr(0, colon);
}

// A client-supplied request id is kept only when it is short and plainly printable.
bool usable_request_id(std::string_view id) {
  if (id.empty() || id.size() > 128) return false;
  for (char c : id) {
    if (c <= 0x20 || c >= 0x7f || c == '"' || c == '\\') return false;
  }
  return true;
}

uint32_t retry_flag_for_status(int status) {
  switch (status) {
    case 502:
      return config::kRetry502;
    case 503:
      return config::kRetry503;
    case 504:
      return config::kRetry504;
    default:
      return 0;
  }
}

uint32_t retry_flag(UpstreamErrorKind kind) {
  switch (kind) {
    case UpstreamErrorKind::kConnectFailure:
      return config::kRetryConnectFailure;
    case UpstreamErrorKind::kTimeout:
      return config::kRetryTimeout;
    case UpstreamErrorKind::kReset:
    case UpstreamErrorKind::kProtocol:
      return config::kRetryReset;
  }
  return 0;
}

RejectReason reject_reason(http::ParseError e) {
  switch (e) {
    case http::ParseError::kHeaderTooLarge:
      return RejectReason::kHeaderTooLarge;
    case http::ParseError::kUriTooLong:
      return RejectReason::kUriTooLong;
    case http::ParseError::kBodyTooLarge:
      return RejectReason::kBodyTooLarge;
    case http::ParseError::kUnsupported:
      return RejectReason::kUnsupported;
    default:
      return RejectReason::kBadRequest;
  }
}

http::ParserLimits parser_limits(const config::Limits& l) {
  http::ParserLimits p;
  p.max_header_bytes = l.max_header_bytes;
  p.max_uri_bytes = l.max_uri_bytes;
  p.max_headers = l.max_headers;
  p.max_body_bytes = l.max_body_bytes;
  return p;
}

}  // namespace

Connection::Connection(Worker& worker, int fd, size_t listener, const sockaddr_storage& peer)
    : worker_(worker),
      socket_(worker.loop(), fd),
      listener_(listener),
      parser_(http::Parser::Kind::kRequest, *this,
              parser_limits(worker.services()->snapshot->config->limits)),
      response_parser_(http::Parser::Kind::kResponse, response_sink_) {
  response_sink_.c = this;
  char ip[INET6_ADDRSTRLEN] = "";
  if (peer.ss_family == AF_INET) {
    ::inet_ntop(AF_INET, &reinterpret_cast<const sockaddr_in&>(peer).sin_addr, ip, sizeof ip);
  } else if (peer.ss_family == AF_INET6) {
    ::inet_ntop(AF_INET6, &reinterpret_cast<const sockaddr_in6&>(peer).sin6_addr, ip, sizeof ip);
  }
  client_ip_ = ip;
  // Nothing to set on the socket: accept4 gave it the flags the loop wants
  // (EventLoop::socket_flags), and TCP_NODELAY comes from the listener (Worker::open_listeners).
  GatewayShared& shared = worker_.shared();
  shared.listener_metrics[listener_].active->add(1);
  shared.listener_metrics[listener_].total->inc();
}

Connection::~Connection() {
  GatewayShared& shared = worker_.shared();
  shared.listener_metrics[listener_].active->sub(1);
}

void Connection::start() {
  self_ = shared_from_this();
  worker_.link(this);
  const auto& limits = worker_.services()->snapshot->config->limits;
  set_deadline(Deadline::kHeader, limits.header_timeout);
  read_downstream();
}

void Connection::set_deadline(Deadline kind, std::chrono::nanoseconds after) {
  deadline_kind_ = kind;
  deadline_ = worker_.now() + after;
}

bool Connection::want_downstream_read() const {
  if (closed_) return false;
  // closing_ means "no further request on this connection": the body of the request in
  // progress is still read (an upstream may answer before the whole body has arrived).
  if (!req_.in_request) return !closing_ && pending_.empty();
  if (req_.req_done || req_.local_reply) return false;
  // A buffered body is bounded by limits.request_buffer_bytes (buffering stops beyond it).
  if (req_.buffering) return true;
  return req_.up_out.size() + up_wbuf_.size() < kMaxUpstreamBacklog;
}

void Connection::read_downstream() {
  if (ds_reading_ || !want_downstream_read()) return;
  ds_reading_ = true;
  auto on_read = [self = shared_from_this()](int err, size_t n) {
    self->ds_reading_ = false;
    if (self->closed_ || err == ECANCELED) return;
    self->worker_.refresh_now();
    self->on_downstream_data(err, n);
  };
  static_assert(IoHandler::fits<decltype(on_read)>, "a request-path handler must not allocate");
  socket_.async_read_some(rbuf_.data(), rbuf_.size(), std::move(on_read));
}

void Connection::on_downstream_data(int err, size_t n) {
  if (err != 0 || n == 0) {
    on_client_gone();
    return;
  }
  if (!req_.in_request && deadline_kind_ == Deadline::kIdle) {
    set_deadline(Deadline::kHeader, worker_.services()->snapshot->config->limits.header_timeout);
  }
  if (!req_.in_request && !parser_.in_message()) request_began_ = worker_.now();
  feed(rbuf_.data(), n);
  // A full small buffer means more is probably waiting (a large head or a body): read it in big
  // pieces through the worker's scratch buffer until the socket is empty or we must stop.
  bool more = n == rbuf_.size();
  while (more && want_downstream_read()) {
    int rerr = 0;
    ssize_t got = socket_.read_some(worker_.scratch(), worker_.scratch_size(), rerr);
    if (got < 0 && rerr == EAGAIN) break;
    if (got <= 0) {
      on_client_gone();
      return;
    }
    feed(worker_.scratch(), static_cast<size_t>(got));
    more = static_cast<size_t>(got) == worker_.scratch_size();
  }
  read_downstream();
}

void Connection::feed(const char* data, size_t len) {
  size_t off = 0;
  while (off < len && !closed_) {
    if (req_.in_request && req_.req_done) {
      // Pipelined: keep what follows until the response in progress is complete.
      pending_.append(data + off, len - off);
      break;
    }
    auto r = parser_.feed(data + off, len - off);
    off += r.consumed;
    if (r.status == http::Parser::Status::kError) {
      on_parse_error();
      return;
    }
    if (r.status == http::Parser::Status::kNeedMore) break;
  }
  flush_upstream();
}

void Connection::process_pending() {
  if (!parser_.in_message()) request_began_ = worker_.now();
  std::string buf;
  buf.swap(pending_);
  feed(buf.data(), buf.size());
  if (pending_.empty()) {
    buf.clear();
    pending_.swap(buf);  // keep the capacity
  }
  read_downstream();
}

void Connection::begin_request() {
  // Everything of the previous request goes at once (request_state.h).
  req_ = RequestState{};
  // Handlers of the previous request's attempts (a write of a connection it discarded) find a
  // newer generation and stop, instead of acting on this request.
  ++attempt_gen_;
  req_.in_request = true;
  req_.services = worker_.services();
  req_.start = worker_.now();
  req_.start_wall = std::chrono::system_clock::now();
  if (request_began_ == core::MonoTime{} || request_began_ > req_.start)
    request_began_ = req_.start;
  deadline_kind_ = Deadline::kNone;
  ++requests_;
}

void Connection::on_parse_error() {
  http::ParseError err = parser_.error();
  worker_.shared().reject(reject_reason(err));
  if (!req_.in_request) {
    begin_request();
    req_.method = parser_.head().method;
    req_.target = parser_.head().target.substr(0, 256);
    observability::make_request_id(core::thread_rng(), req_.request_id);
  }
  closing_ = true;
  if (req_.resp_head_sent && !req_.local_reply && !req_.resp_on_wire) unsend_response();
  if (req_.resp_head_sent) {
    abort_request();
    close();
    return;
  }
  if (req_.route) {
    // The request body turned out malformed (or too large) after forwarding began.
    drop_upstream();
    release_request();
    req_.up_out.clear();
  }
  local_reply(http::status_for(err), parser_.error_reason());
}

void Connection::on_head(http::MessageHead& head) {
  begin_request();
  const Snapshot& snap = *req_.services->snapshot;
  req_.method = head.method;
  req_.target = head.target;
  req_.client_http10 = head.version_minor == 0;
  req_.client_keep_alive = head.keep_alive;
  req_.head_request = req_.method == "HEAD";
  req_.req_chunked = head.chunked;
  req_.req_has_body = head.chunked || head.content_length > 0;
  if (req_.req_has_body) {
    req_.body_timed = true;
    req_.body_start = worker_.now();
  }
  req_.user_agent = head.headers.get("user-agent");
  std::string_view incoming_id = head.headers.get("x-request-id");
  if (usable_request_id(incoming_id)) {
    req_.request_id = incoming_id;
  } else {
    observability::make_request_id(core::thread_rng(), req_.request_id);
  }

  // From here on every reader of the path (router, rewriting, unit and hash keys, access log,
  // the upstream, a peer city) sees one normal form; the query string is left as it came.
  // Asterisk-form ("OPTIONS *") has no path to normalise.
  if (head.target != "*") {
    const std::string_view path = head.path();
    http::PathResult pr = http::normalize_path(path, snap.config->http.path, path_scratch_);
    if (pr.error != http::PathError::kNone) {
      worker_.shared().reject(RejectReason::kBadPath);
      reply({.status = 400, .message = http::path_error_reason(pr.error), .code = "BAD_PATH"});
      return;
    }
    if (pr.changed) {
      worker_.shared().paths_normalized->inc();
      req_.original_target = head.target;
      head.target.replace(0, path.size(), path_scratch_);  // never longer: no allocation
      req_.target = head.target;
    }
  }

  router::RequestView view{req_.method, host_without_port(head.headers.get("host")), head.path(),
                           &head.headers};
  req_.route = snap.router->match(view);
  if (!req_.route) {
    local_reply(404, "no route matches this request");
    return;
  }
  if (!req_.route->split.empty()) {
    // Chosen once: retries, a unit forward's fallback and every metric stay with this service.
    req_.split_slot =
        static_cast<uint32_t>(req_.route->split.choose(head.headers, core::thread_rng()));
    req_.routed_service = req_.route->split.entry(req_.split_slot).service_index;
  } else {
    req_.routed_service = req_.route->service_index;
  }
  req_.service_index = req_.routed_service;
  observe(snap, head.headers);
  if (snap.services[req_.service_index].cfg->kind == config::ServiceKind::kUnit &&
      snap.config->units.enabled && worker_.units()) {
    auto key = router::unit_key(snap.config->units, head.path(), head.query(), head.headers);
    req_.unit_has_key = key && !key->empty();
    req_.hop_in = head.headers.get("x-sluice-hop");
    req_.unit_hop = head.headers.has("x-sluice-hop");
    req_.unit_loop =
        req_.unit_hop && http::listed_in_connection(req_.hop_in, snap.config->node.city);
    if (req_.unit_has_key) req_.unit_shard = router::shard_of(*key, worker_.units()->shards());
    switch (route_unit()) {
      case UnitStep::kReplied:
        return;
      case UnitStep::kHold:
        req_.held = true;
        req_.held_head = std::make_unique<http::MessageHead>(head);
        req_.up_out.clear();  // the body, if any, gathers here until the switch is over
        req_.replay.clear();
        set_deadline(Deadline::kHold, snap.config->units.hold_timeout);
        return;
      case UnitStep::kServe:
      case UnitStep::kForward:
        break;
    }
  }
  continue_request(head, /*resumed=*/false);
}

Connection::UnitStep Connection::route_unit() {
  const Snapshot& snap = *req_.services->snapshot;
  auto count = [&](UnitResult r) { snap.unit_results[static_cast<size_t>(r)]->inc(); };
  if (!req_.unit_has_key) {
    count(UnitResult::kNoKey);
    return UnitStep::kServe;
  }
  const router::UnitTable& table = *worker_.units();
  if (table.switching(req_.unit_shard)) return UnitStep::kHold;
  std::string_view owner = table.owner(req_.unit_shard);
  const std::string& here = snap.config->node.city;
  if (owner == here) {
    count(UnitResult::kLocal);
    req_.unit_city = owner;
    return UnitStep::kServe;
  }
  auto shard_json = [&] {
    std::string extra = fmt::format(",\"shard\":{},\"owner\":", req_.unit_shard);
    observability::append_json_string(extra, owner);
    return extra;
  };
  if (req_.unit_loop) {
    // This city's own forward came back: the peers are misconfigured.
    count(UnitResult::kLoop);
    reply({.status = 508,
           .message = "loop detected: this gateway's own forward came back to it",
           .code = "UNIT_LOOP",
           .extra_json = shard_json()});
    return UnitStep::kReplied;
  }
  // A request another city forwarded here goes on only back to a city it came from, which has
  // taken the shard over meanwhile (switched while the request was on its way or held here). The
  // owner serves it or, if ownership moved yet again, finds itself in the hop list: 508.
  int peer = snap.peer_service(owner);
  if (peer >= 0 && (!req_.unit_hop || http::listed_in_connection(req_.hop_in, owner))) {
    count(UnitResult::kForwarded);
    req_.forward = true;
    req_.service_index = static_cast<size_t>(peer);
    return UnitStep::kForward;
  }
  if (snap.config->units.protect) {
    // Serving a shard this city does not own could write in two cities at once.
    count(UnitResult::kNotOwned);
    reply({.status = 421,
           .message = "unit protection: this city does not own the shard of this request",
           .code = "UNIT_NOT_OWNED",
           .extra_json = shard_json()});
    return UnitStep::kReplied;
  }
  count(UnitResult::kLocal);  // protect: false: served here although another city owns it
  return UnitStep::kServe;
}

void Connection::on_units_changed() {
  if (!req_.held || closed_) return;
  req_.held = false;
  UnitStep step = route_unit();
  if (step == UnitStep::kHold) {
    req_.held = true;  // still switching (another shard range moved); keep the same deadline
    return;
  }
  req_.services->snapshot->unit_results[static_cast<size_t>(UnitResult::kHeld)]->inc();
  deadline_kind_ = Deadline::kNone;
  auto head = std::move(req_.held_head);
  if (step == UnitStep::kReplied) return;
  continue_request(*head, /*resumed=*/true);
}

void Connection::continue_request(const http::MessageHead& head, bool resumed) {
  const Snapshot& snap = *req_.services->snapshot;
  if (!req_.req_done && req_.req_has_body && !req_.buffering) {
    // A small body is read whole before an upstream connection is chosen and taken (as nginx
    // does), so that a slow client holds no connection to the service while it trickles in.
    const size_t limit = snap.config->limits.request_buffer_bytes;
    if (limit > 0 && (head.chunked || static_cast<uint64_t>(head.content_length) <= limit) &&
        req_.up_out.size() <= limit) {
      req_.buffering = true;
      if (head.expect_continue && !req_.client_http10 && !resumed) {
        req_.continue_sent = true;
        ds_out_.append("HTTP/1.1 100 Continue\r\n\r\n");
        flush_downstream();
      }
      return;
    }
  }
  req_.buffering = false;
  if (const auto total = snap.services[req_.service_index].cfg->timeouts.total; total.count() > 0) {
    req_.total_deadline = request_began_ + total;
  }
  // A forwarded request is governed by the owner city's gateway, which sees it next.
  if (!req_.forward) {
    if (!admit(head)) return;
  }
  req_.idempotent = is_idempotent(req_.method);
  compute_hash(head);
  std::string body, replay_body;
  if (!req_.up_out.empty() || !req_.replay.empty()) {
    body = std::move(req_.up_out);  // body bytes that arrived while the request was held
    replay_body = std::move(req_.replay);
  }
  if (!build_upstream_head(head)) return;
  req_.up_out.append(body);
  if (req_.replayable) req_.replay.append(replay_body);
  if (head.expect_continue && !req_.client_http10 && !resumed && !req_.continue_sent) {
    req_.continue_sent = true;
    ds_out_.append("HTTP/1.1 100 Continue\r\n\r\n");
    flush_downstream();
  }
  ++req_.services->services[req_.service_index].active_requests;
  req_.counted_active = true;
  start_attempt();
}

bool Connection::admit(const http::MessageHead& head) {
  const Snapshot& snap = *req_.services->snapshot;
  RequestFacts facts;
  facts.head = &head;
  facts.client_ip = client_ip_;
  facts.route = req_.route->name;
  facts.service = snap.services[req_.service_index].cfg->name;
  facts.route_index = req_.route->index;
  facts.service_index = req_.service_index;
  Verdict verdict = admission_.admit(*snap.governance, facts, worker_.now());
  if (verdict == Verdict::kPass) return true;
  reply_refused(verdict);
  return false;
}

bool Connection::forward_direct() {
  if (!req_.forward || req_.resp_head_sent || !req_.replayable || closed_ || !req_.route ||
      !parser_.head_done())
    return false;
  const Snapshot& snap = *req_.services->snapshot;
  const ServiceInfo& peer = snap.services[req_.service_index];
  if (peer.endpoints.empty()) return false;
  // The request is still whole in req_.replay (head for the peer + body so far): only the head
  // changes. A rare path (a city's gateway is down): the copies are fine here.
  std::string body = req_.replay.substr(std::min(req_.replay_head_bytes, req_.replay.size()));
  std::string owner = peer.endpoints.front().cfg.city;
  release_request();  // leaves the peer service (nothing was admitted for a forward)
  req_.gov_failure = req_.gov_dropped = false;
  snap.unit_results[static_cast<size_t>(UnitResult::kDirect)]->inc();
  req_.forward = false;
  req_.direct = true;
  req_.service_index = req_.routed_service;
  req_.unit_city = std::move(owner);
  req_.tried.clear();
  if (const auto total = snap.services[req_.service_index].cfg->timeouts.total; total.count() > 0) {
    req_.total_deadline = request_began_ + total;  // the service's own bound, as if served here
  }
  const http::MessageHead& head = parser_.head();
  // The owner city's gateway would have governed it; it is down, so this one does.
  if (!admit(head)) return true;
  compute_hash(head);
  if (!build_upstream_head(head)) return true;
  req_.up_out.append(body);
  req_.replay.append(body);
  ++req_.services->services[req_.service_index].active_requests;
  req_.counted_active = true;
  req_.attempts = 0;  // the service's own retries; the access log says `"unit":"direct"`
  start_attempt();
  return true;
}

void Connection::compute_hash(const http::MessageHead& head) {
  const config::RequestInput& key =
      req_.services->snapshot->services[req_.service_index].cfg->load_balancer.hash_on;
  router::RequestInputs inputs;
  if (key.kind == config::RequestInput::Kind::kPath) inputs.path = head.path();
  if (key.kind == config::RequestInput::Kind::kQuery) inputs.query = head.query();
  inputs.headers = &head.headers;
  inputs.client_ip = client_ip_;
  const std::string_view value = router::input_value(key, inputs).value_or(std::string_view());
  req_.has_hash = !value.empty();
  req_.hash = req_.has_hash ? upstream::hash_key(value) : 0;
}

bool Connection::build_upstream_head(const http::MessageHead& head) {
  const Snapshot& snap = *req_.services->snapshot;
  std::string& target = target_scratch_;
  target.clear();
  if (req_.forward) {
    target.append(req_.target);  // the owner city's gateway routes the request as it came
  } else {
    router::Router::rewrite_path(*req_.route, head.path(), target);
    std::string_view query = head.query();
    if (!query.empty() || req_.target.find('?') != std::string::npos) {
      target.push_back('?');
      target.append(query);
    }
  }
  // The incoming trace context, unless the client declared it hop-by-hop (Connection: ...).
  std::string_view incoming_trace = head.headers.get("traceparent");
  if (std::string_view conn = head.headers.get("connection");
      !conn.empty() && http::listed_in_connection(conn, "traceparent")) {
    incoming_trace = {};
  }
  observability::make_child_traceparent(incoming_trace, core::thread_rng(), traceparent_);
  const ServiceInfo& si = snap.services[req_.service_index];
  http::UpstreamHeadInput in;
  in.method = req_.method;
  in.target = target;
  in.headers = &head.headers;
  if (!si.endpoints.empty()) in.default_host = si.endpoints.front().address;
  in.client_ip = client_ip_;
  in.request_id = req_.request_id;
  in.traceparent = traceparent_;
  if (req_.forward || req_.direct) {
    // The cities this request went through, so that a forward can never come back unnoticed
    // (also on a direct send: the owner city's instances may call through a gateway).
    in.hop_prev = req_.hop_in;
    in.hop_city = snap.config->node.city;
  }
  in.chunked = head.chunked;
  in.content_length = head.chunked ? -1 : head.content_length;
  req_.up_out.clear();
  if (auto err = http::append_upstream_head(req_.up_out, in);
      err != http::UpstreamHeadError::kNone) {
    // The parser refuses such bytes first; this is the second line (upstream_head.h).
    worker_.shared().reject(RejectReason::kBadRequest);
    release_request();
    reply({.status = 400, .message = http::to_string(err), .code = "BAD_REQUEST"});
    return false;
  }
  req_.replay = req_.up_out;
  req_.replay_head_bytes = req_.up_out.size();
  return true;
}

void Connection::on_body(std::string_view data) {
  req_.bytes_in += data.size();
  if (req_.local_reply) return;
  size_t before = req_.up_out.size();
  if (req_.req_chunked) http::append_chunk_header(req_.up_out, data.size());
  req_.up_out.append(data);
  if (req_.req_chunked) req_.up_out.append("\r\n");
  if (req_.replayable) {
    if (req_.replay.size() + (req_.up_out.size() - before) > kMaxReplayBytes) {
      req_.replayable = false;
      req_.replay.clear();
    } else {
      req_.replay.append(req_.up_out, before, std::string::npos);
    }
  }
  // A chunked body that turns out larger than the buffer streams from here on.
  if (req_.buffering &&
      req_.up_out.size() > req_.services->snapshot->config->limits.request_buffer_bytes) {
    end_buffering();
  }
}

void Connection::on_complete() {
  req_.req_done = true;
  if (req_.local_reply) return;
  if (req_.req_chunked) {
    http::append_last_chunk(req_.up_out);
    if (req_.replayable) http::append_last_chunk(req_.replay);
  }
  if (req_.buffering) end_buffering();
}

void Connection::end_buffering() {
  if (req_.held) {
    req_.buffering = false;  // a unit switch holds it: on_units_changed goes on
    return;
  }
  // The parser keeps the head until the next message starts, which cannot happen before this
  // request is complete (pipelined bytes wait in pending_).
  continue_request(parser_.head(), /*resumed=*/false);
}

void Connection::start_attempt() {
  auto& ws = req_.services->services[req_.service_index];
  const ServiceInfo& si = req_.services->snapshot->services[req_.service_index];
  const ServiceInfo& si0 = req_.services->snapshot->services[req_.service_index];
  if (worker_.now() >= req_.total_deadline) {
    // The body took all of timeouts.total (a retry checks before it starts).
    release_request();
    local_reply(504, "request deadline (timeouts.total) exceeded");
    return;
  }
  if (!choose_endpoints()) {
    if (req_.forward && forward_direct()) return;  // the peer gateway is ejected: straight there
    si0.no_endpoint->inc();
    release_request();
    std::string city;
    if (!req_.unit_city.empty()) {
      city = ",\"city\":";
      observability::append_json_string(city, req_.unit_city);
    }
    reply({.status = 503,
           .message = req_.unit_city.empty() ? "no upstream endpoint available"
                                             : "no endpoint of the shard's owner city is available",
           .code = "NO_ENDPOINT",
           .extra_json = city});
    return;
  }
  upstream::PickContext ctx;
  ctx.tried = req_.tried;
  ctx.has_hash = req_.has_hash;
  ctx.hash = req_.hash;
  int idx = ws.lb->pick(ctx);
  if (idx < 0) {
    si.no_endpoint->inc();
    release_request();
    local_reply(503, "no upstream endpoint available");
    return;
  }
  req_.endpoint = idx;
  if (auto* cross = si.endpoints[idx].cross_city) cross->inc();
  req_.tried.push_back(static_cast<uint32_t>(idx));
  ++req_.attempts;
  ++ws.states[idx].active;
  req_.attempt_start = worker_.now();
  req_.resp_got_bytes = false;
  req_.up_reused = req_.connect_error = false;
  req_.up_connected = false;
  req_.up_writing = false;
  if (!up_wbuf_busy_) up_wbuf_.clear();
  response_parser_.reset();
  response_parser_.expect_no_body(req_.head_request);
  uint64_t gen = ++attempt_gen_;

  const EndpointInfo& ep = si.endpoints[idx];
  upstream_ = worker_.pool().take(ep.address, worker_.now());
  if (upstream_) {
    req_.up_reused = true;
    upstream_ready();
    return;
  }
  const ServiceRuntime& gs = req_.services->snapshot->governance->services[req_.service_index];
  if (!gs.breaker->try_acquire_pending()) {
    gs.rejected_pending->inc();
    release_endpoint();
    release_request();
    reply({.status = 503,
           .message = "too many requests waiting for an upstream connection",
           .code = "MAX_PENDING"});
    return;
  }
  req_.pending_held = true;
  upstream_ = worker_.pool().create(worker_.loop(), ep.address, worker_.now());
  arm_upstream_deadline(Deadline::kConnect, si.cfg->timeouts.connect);
  auto on_connect = [self = shared_from_this(), gen](int err, size_t) {
    self->on_connected(err, gen);
  };
  static_assert(IoHandler::fits<decltype(on_connect)>, "a request-path handler must not allocate");
  upstream_->socket().async_connect(ep.resolved.data(), static_cast<socklen_t>(ep.resolved.size()),
                                    std::move(on_connect));
}

void Connection::on_connected(int err, uint64_t gen) {
  if (gen != attempt_gen_ || closed_ || !upstream_) return;
  worker_.refresh_now();
  if (req_.pending_held) {
    req_.pending_held = false;
    req_.services->snapshot->governance->services[req_.service_index].breaker->release_pending();
  }
  if (err != 0) {
    req_.connect_error = endpoint_refused(err);
    on_upstream_failure(UpstreamErrorKind::kConnectFailure, "upstream connect failed");
    return;
  }
  upstream_->socket().set_no_delay();
  upstream_ready();
}

void Connection::upstream_ready() {
  req_.up_connected = true;
  upstream_->attach(this);
  const ServiceInfo& si = req_.services->snapshot->services[req_.service_index];
  const EndpointInfo& ep = si.endpoints[req_.endpoint];
  (upstream_->reused() ? ep.pool_hits : ep.connections_opened)->inc();
  upstream_->count_request();
  arm_upstream_deadline(Deadline::kUpstream, si.cfg->timeouts.request);
  flush_upstream();
  upstream_->read();
}

void Connection::flush_upstream() {
  if (req_.up_body_stopped) req_.up_out.clear();  // the upstream has answered: the rest is not sent
  if (!req_.up_connected || req_.up_writing || up_wbuf_busy_ || req_.up_out.empty() || !upstream_)
    return;
  up_wbuf_.swap(req_.up_out);
  req_.up_writing = true;
  up_wbuf_busy_ = true;
  uint64_t gen = attempt_gen_;
  auto on_write = [self = shared_from_this(), gen](int err, size_t) {
    // The kernel is done with up_wbuf_ only now, also when the attempt was dropped.
    self->up_wbuf_busy_ = false;
    if (gen != self->attempt_gen_ || self->closed_) {
      self->up_wbuf_.clear();
      if (!self->closed_) self->flush_upstream();  // a newer attempt may be waiting for it
      return;
    }
    self->req_.up_writing = false;
    self->worker_.refresh_now();
    if (err != 0) {
      // The response may already be complete (an early answer); otherwise
      // the attempt failed.
      if (!self->req_.resp_done) {
        self->on_upstream_failure(UpstreamErrorKind::kReset, "upstream write failed");
      }
      return;
    }
    self->up_wbuf_.clear();
    // Upload progress counts as activity: a long request body is not a timeout.
    if (self->deadline_kind_ == Deadline::kUpstream) {
      const ServiceInfo& si = self->req_.services->snapshot->services[self->req_.service_index];
      self->arm_upstream_deadline(Deadline::kUpstream, si.cfg->timeouts.request);
    }
    if (!self->req_.up_out.empty()) {
      self->flush_upstream();
    } else if (!self->req_.req_done) {
      self->read_downstream();
    }
  };
  static_assert(IoHandler::fits<decltype(on_write)>, "a request-path handler must not allocate");
  upstream_->socket().async_write(up_wbuf_.data(), up_wbuf_.size(), std::move(on_write));
}

void Connection::read_upstream() {
  if (upstream_ && req_.up_connected && !req_.resp_done && !ds_writing_ && !closed_)
    upstream_->read();
}

void Connection::on_upstream_data(int err, const char* data, size_t n) {
  if (closed_ || !upstream_ || err == ECANCELED) return;
  auto keep = shared_from_this();  // the upstream's handler holds no reference to this
  worker_.refresh_now();
  if (err != 0 || n == 0) {
    if (err == 0 && response_parser_.in_message() &&
        response_parser_.finish() == http::Parser::Status::kComplete) {
      // A response delimited by the connection closing ends here.
      req_.resp_keep_alive = false;
      flush_downstream();
      return;
    }
    // A new connection reset before any response byte: a process that died with the request
    // accepted by its kernel (the listener goes with it), not the keep-alive race of a pooled
    // one. Out of every worker's choice at once, as a refusal is (issue 11).
    if (err == ECONNRESET && !req_.up_reused && !req_.resp_got_bytes && req_.endpoint >= 0) {
      const ServiceInfo& si = req_.services->snapshot->services[req_.service_index];
      auto& od = *req_.services->snapshot->governance->services[req_.service_index].outlier;
      if (od.mark_down(static_cast<size_t>(req_.endpoint), worker_.now())) {
        core::log_warn("endpoint {} of service {} reset a new connection: out of rotation for {}",
                       si.endpoints[req_.endpoint].address, si.cfg->name,
                       core::format_duration(od.down_for()));
      }
    }
    on_upstream_failure(UpstreamErrorKind::kReset, "upstream closed the connection");
    return;
  }
  req_.resp_got_bytes = true;
  const ServiceInfo& si = req_.services->snapshot->services[req_.service_index];
  arm_upstream_deadline(Deadline::kUpstream, si.cfg->timeouts.request);
  size_t off = 0;
  uint64_t gen = attempt_gen_;
  while (off < n) {
    auto r = response_parser_.feed(data + off, n - off);
    if (gen != attempt_gen_ || closed_) return;  // aborted from a callback
    if (req_.resp_bad_101) {
      // What follows a 101 is another protocol: never parsed as a response to this request.
      note_protocol_error(UpstreamProtocolError::kUnexpected101);
      on_upstream_failure(UpstreamErrorKind::kProtocol,
                          "upstream switched protocols (101) for a request that did not ask to");
      return;
    }
    if (req_.retry_status) {
      si.endpoints[req_.endpoint].requests.inc(req_.retry_status);
      record_attempt(true);
      req_.retry_status = 0;
      drop_upstream();
      retry(RetryCost::kBudgeted);
      return;
    }
    off += r.consumed;
    if (r.status == http::Parser::Status::kError) {
      note_protocol_error(UpstreamProtocolError::kInvalidResponse);
      on_upstream_failure(UpstreamErrorKind::kProtocol, "invalid response from upstream");
      return;
    }
    if (r.status == http::Parser::Status::kNeedMore) break;
    if (req_.resp_done) {
      if (off < n) {
        // Bytes nobody asked for yet (a second response?): they are dropped with the
        // connection, never given to the next request.
        req_.up_extra_bytes = true;
        note_protocol_error(UpstreamProtocolError::kBytesAfterResponse);
      }
      break;
    }
  }
  flush_downstream();
  read_upstream();
}

void Connection::on_response_head(http::MessageHead& head) {
  if (head.status == 101) {
    // The gateway never forwards an upgrade (Upgrade is hop-by-hop and not sent upstream), so a
    // 101 is always unasked for; the bytes after it belong to no HTTP response.
    req_.resp_bad_101 = true;
    return;
  }
  if (head.status >= 100 && head.status < 200) {
    req_.resp_interim = true;  // 1xx: not forwarded; the final response follows
    return;
  }
  uint32_t flag = retry_flag_for_status(head.status);
  if (flag && can_retry(flag) != RetryCost::kNone) {
    // Not forwarded: read_upstream retries once the parser has returned.
    req_.retry_status = head.status;
    return;
  }
  if (!head.keep_alive && (!req_.req_done || req_.up_writing || !req_.up_out.empty())) {
    // A final answer before the whole request was sent, from an upstream that is closing the
    // connection (e.g. 413 to a large upload): forwarded, and the rest of the body is not sent
    // (RFC 9112 section 9.3). An answer on a connection that stays open (a streaming echo) lets
    // the body go on; that connection is reused only if the request then completes.
    req_.up_body_stopped = true;
    req_.up_out.clear();
    note_protocol_error(UpstreamProtocolError::kEarlyResponse);
  }
  req_.status = head.status;
  record_attempt(head.status >= 500);
  req_.gov_failure = head.status >= 500;
  req_.gov_dropped = head.status == 503;
  req_.resp_keep_alive = head.keep_alive;
  req_.resp_head_sent = true;
  bool no_body = req_.head_request || head.status == 204 || head.status == 304;
  if (worker_.draining() || draining_ || !req_.req_done) closing_ = true;
  if (!req_.client_keep_alive) closing_ = true;
  std::string& out = ds_out_;
  http::append_status_line(out, head.status, head.reason);
  std::string_view connection = head.headers.get("connection");
  for (size_t i = 0; i < head.headers.size(); ++i) {
    auto f = head.headers.at(i);
    if (http::is_hop_by_hop(f.name)) continue;
    if (!connection.empty() && http::listed_in_connection(connection, f.name)) continue;
    if (http::iequals(f.name, "x-request-id")) continue;
    if (!no_body && http::iequals(f.name, "content-length")) continue;
    out.append(f.name);
    out.append(": ");
    out.append(f.value);
    out.append("\r\n");
  }
  req_.resp_chunked_out = false;
  if (!no_body) {
    if (head.content_length >= 0 && !head.chunked) {
      http::append_header(out, "Content-Length", static_cast<uint64_t>(head.content_length));
    } else if (!req_.client_http10) {
      out.append("Transfer-Encoding: chunked\r\n");
      req_.resp_chunked_out = true;
    } else {
      closing_ = true;  // HTTP/1.0 client: the body ends when the connection closes
    }
  }
  http::append_header(out, "x-request-id", req_.request_id);
  if (closing_) {
    out.append("Connection: close\r\n");
  } else if (req_.client_http10) {
    out.append("Connection: keep-alive\r\n");
  }
  out.append("\r\n");
}

void Connection::on_response_body(std::string_view data) {
  if (req_.retry_status) return;
  req_.bytes_out += data.size();
  if (req_.resp_chunked_out) http::append_chunk_header(ds_out_, data.size());
  ds_out_.append(data);
  if (req_.resp_chunked_out) ds_out_.append("\r\n");
}

void Connection::on_response_complete() {
  if (req_.retry_status || req_.resp_bad_101) return;
  if (req_.resp_interim) {
    req_.resp_interim = false;
    return;
  }
  req_.resp_done = true;
  if (req_.resp_chunked_out) http::append_last_chunk(ds_out_);
  req_.upstream_seconds = std::chrono::duration<double>(worker_.now() - req_.attempt_start).count();
}

void Connection::note_protocol_error(UpstreamProtocolError e) {
  req_.services->snapshot->services[req_.service_index]
      .protocol_errors[static_cast<size_t>(e)]
      ->inc();
  req_.up_error = to_string(e);
}

Connection::RetryCost Connection::can_retry(uint32_t on_flag, bool refused, bool stale,
                                            bool before_response) const {
  const ServiceInfo& si = req_.services->snapshot->services[req_.service_index];
  const config::Retry& r = si.cfg->retry;
  if (req_.resp_head_sent || !req_.replayable || closed_) return RetryCost::kNone;
  if (r.attempts == 0 || !(r.on & on_flag)) return RetryCost::kNone;
  if (!time_left_for_try()) return RetryCost::kNone;
  const bool may_resend = req_.idempotent || r.non_idempotent;
  // Failover, not extra load: a connection that could not be opened carried nothing (any method
  // may go elsewhere), and is retried on an endpoint not tried yet; a pooled connection that
  // closed before any response byte is the keep-alive race or an instance that died (idempotent
  // requests only: it may have been processed). Neither adds load a healthy service would not
  // have had, so neither is rationed; both are bounded by the number of endpoints: a refusal
  // is retried for free only on an endpoint in rotation that this request has not tried (when
  // every endpoint is down, the usual rules apply), and a stale connection is retried for free
  // once per request (a request that itself kills connections gets one extra try, no more).
  const size_t n = si.endpoints.size();
  if (refused && req_.free_retries < n) {
    const auto& od = *req_.services->snapshot->governance->services[req_.service_index].outlier;
    const core::MonoTime now = worker_.now();
    for (size_t i = 0; i < n; ++i) {
      if (od.available(i, now) && std::find(req_.tried.begin(), req_.tried.end(),
                                            static_cast<uint32_t>(i)) == req_.tried.end()) {
        return RetryCost::kFree;
      }
    }
  } else if (stale && may_resend && !req_.stale_retried) {
    return RetryCost::kFree;
  }
  // Nothing of the request left the gateway when the connection could not be opened.
  if (!may_resend && on_flag != config::kRetryConnectFailure) return RetryCost::kNone;
  // An instance that died under the request (issue 11): a dying process's kernel resets the
  // connections it had accepted but not served, before the refusals that mark the endpoint down
  // arrive. So a try at an endpoint that is down now (refused since, by any worker) is failover,
  // as a refusal is: one free try per such endpoint, counted when deciding (not when the try
  // failed), and only while an endpoint not tried yet is in rotation. Endpoints that close
  // without refusing (never down) keep the 1 + attempts bound.
  uint32_t dead = 0;
  if (may_resend && (before_response || refused)) {
    const auto& od = *req_.services->snapshot->governance->services[req_.service_index].outlier;
    const core::MonoTime now = worker_.now();
    bool elsewhere = false;
    const auto& tried = req_.tried;
    for (size_t k = 0; k < tried.size(); ++k) {
      const uint32_t i = tried[k];
      if (std::find(tried.begin(), tried.begin() + k, i) == tried.begin() + k && od.down(i, now)) {
        ++dead;
      }
    }
    for (size_t i = 0; i < n && !elsewhere; ++i) {
      elsewhere = od.available(i, now) &&
                  std::find(tried.begin(), tried.end(), static_cast<uint32_t>(i)) == tried.end();
    }
    // Refusals that were retried for free already used their endpoint's free try.
    const uint32_t refused_free = req_.free_retries - (req_.stale_retried ? 1 : 0);
    dead = elsewhere && dead > refused_free ? dead - refused_free : 0;
  }
  if (int64_t{req_.attempts} - req_.free_retries - dead > int64_t{r.attempts}) {
    return RetryCost::kNone;
  }
  // A connect that failed or timed out put no load on the service: no budget needed. Nor does a
  // connection that closed before any response byte: that is an instance going away (a
  // connection the kernel accepted for a process that died, a further stale pooled connection),
  // not a service answering slowly or with errors, which is what the budget is for; `attempts`
  // bounds it (1 + attempts tries at most).
  if (on_flag == config::kRetryConnectFailure || before_response) return RetryCost::kAttempt;
  const auto& ws = req_.services->services[req_.service_index];
  uint64_t budget = std::max<uint64_t>(r.min_retry_concurrency,
                                       uint64_t{ws.active_requests} * r.budget_percent / 100);
  return ws.active_retries < budget ? RetryCost::kBudgeted : RetryCost::kNone;
}

bool Connection::time_left_for_try() const {
  if (req_.total_deadline == core::MonoTime::max()) return true;
  const auto& t = req_.services->snapshot->services[req_.service_index].cfg->timeouts;
  const std::chrono::nanoseconds min_try =
      std::max<std::chrono::nanoseconds>(kMinTry, t.request / 10);
  return req_.total_deadline - worker_.now() >= min_try;
}

void Connection::arm_upstream_deadline(Deadline kind, std::chrono::nanoseconds after) {
  // timeouts.total bounds the wait for the response head; a response that has started streams
  // under the request timeout alone.
  if (req_.total_deadline != core::MonoTime::max() && !req_.resp_head_sent) {
    after = std::min<std::chrono::nanoseconds>(after, req_.total_deadline - worker_.now());
  }
  set_deadline(kind, after);
}

void Connection::release_endpoint() {
  if (req_.pending_held) {
    req_.pending_held = false;
    req_.services->snapshot->governance->services[req_.service_index].breaker->release_pending();
  }
  if (req_.endpoint < 0) return;
  auto& ws = req_.services->services[req_.service_index];
  if (ws.states[req_.endpoint].active > 0) --ws.states[req_.endpoint].active;
  req_.endpoint = -1;
}

void Connection::discard_upstream() {
  if (!upstream_) return;
  worker_.pool().discard(std::move(upstream_), worker_.now());
  upstream_.reset();
}

void Connection::on_client_gone() {
  // A request whose body had not fully arrived cannot complete.
  if (req_.in_request && !req_.req_done && parser_.head_done()) abort_request();
  close();
}

void Connection::drop_upstream() {
  release_endpoint();
  discard_upstream();
  ++attempt_gen_;  // handlers of the dropped attempt find a newer generation and stop
  req_.up_connected = false;
  req_.up_writing = false;
  // A write in flight still owns up_wbuf_ (io_uring reads it when the submission runs, epoll
  // after a short write): clearing it here put a NUL on the wire. Its handler frees it.
  if (!up_wbuf_busy_) up_wbuf_.clear();
  auto& ws = req_.services->services[req_.service_index];
  if (req_.retrying) {
    --ws.active_retries;
    req_.retrying = false;
  }
}

void Connection::retry(RetryCost cost, bool stale) {
  if (cost == RetryCost::kFree) {
    ++req_.free_retries;
    req_.stale_retried = req_.stale_retried || stale;
  } else if (cost == RetryCost::kBudgeted) {
    req_.retrying = true;
    ++req_.services->services[req_.service_index].active_retries;
  }
  req_.services->snapshot->services[req_.service_index].retries->inc();
  req_.up_out = req_.replay;
  start_attempt();
}

void Connection::on_upstream_failure(UpstreamErrorKind kind, const char* what) {
  const ServiceInfo& si = req_.services->snapshot->services[req_.service_index];
  const bool refused = kind == UpstreamErrorKind::kConnectFailure && req_.connect_error;
  const bool before_response = kind == UpstreamErrorKind::kReset && !req_.resp_got_bytes;
  const bool stale = before_response && req_.up_reused;
  if (req_.endpoint >= 0) {
    si.endpoints[req_.endpoint].errors[static_cast<size_t>(kind)]->inc();
    if (refused) {
      // Nothing serves there: out of every worker's choice now, not after the health check's
      // thresholds (governance::OutlierDetector, "Down").
      auto& od = *req_.services->snapshot->governance->services[req_.service_index].outlier;
      if (od.mark_down(static_cast<size_t>(req_.endpoint), worker_.now())) {
        core::log_warn("endpoint {} of service {} refused a connection: out of rotation for {}",
                       si.endpoints[req_.endpoint].address, si.cfg->name,
                       core::format_duration(od.down_for()));
      }
    }
  }
  record_attempt(true);
  req_.gov_failure = true;
  req_.gov_dropped = kind != UpstreamErrorKind::kProtocol;
  drop_upstream();
  // The owner city's gateway is unreachable: rather than a 502 until it is back, the owner city's
  // instances serve the request. Safe when it never left (connect failed); after a close without
  // a byte of answer (a dying gateway's listener can still complete handshakes) only for the
  // methods a retry would resend too.
  if (req_.forward &&
      (kind == UpstreamErrorKind::kConnectFailure || (before_response && req_.idempotent)) &&
      forward_direct()) {
    return;
  }
  if (RetryCost cost = can_retry(retry_flag(kind), refused, stale, before_response);
      cost != RetryCost::kNone) {
    retry(cost, stale);
    return;
  }
  release_request();
  if (req_.resp_head_sent && !req_.resp_on_wire) unsend_response();
  if (req_.resp_head_sent) {
    // Part of the response is already with the client: all that is left is to cut it short.
    req_.status = 502;
    abort_request();
    close();
    return;
  }
  req_.up_out.clear();
  int status = kind == UpstreamErrorKind::kTimeout ? 504 : 502;
  // Out of time: the total deadline fired, or what it leaves is too short for another try.
  if (req_.total_expired ||
      (req_.total_deadline != core::MonoTime::max() && !time_left_for_try())) {
    status = 504;
    what = "request deadline (timeouts.total) exceeded";
  }
  local_reply(status, what);
}

void Connection::unsend_response() {
  // Nothing of the upstream's response has been handed to the socket yet: drop what was queued
  // so that the client gets a clean error response instead of a cut connection.
  ds_out_.clear();
  req_.resp_head_sent = false;
  req_.resp_chunked_out = false;
  req_.bytes_out = 0;
}

void Connection::local_reply(int status, std::string_view message) {
  reply({.status = status, .message = message});
}

void Connection::reply(LocalReply r) {
  req_.local_reply = true;
  req_.status = r.status;
  req_.resp_done = true;
  if (!req_.req_done && req_.req_has_body) closing_ = true;  // the rest of the body is not read
  if (!req_.client_keep_alive || worker_.draining() || draining_) closing_ = true;
  r.request_id = req_.request_id;
  r.close = closing_;
  r.head_request = req_.head_request;
  req_.bytes_out = append_local_reply(ds_out_, r, reply_scratch_);
  req_.resp_head_sent = true;
  flush_downstream();
}

void Connection::reply_refused(Verdict verdict) {
  const ServiceRuntime& gs = req_.services->snapshot->governance->services[req_.service_index];
  switch (verdict) {
    case Verdict::kRateLimited: {
      const RuleRuntime* rule = admission_.rejecting_rule();
      const governance::RateDecision& d = admission_.decision();
      auto ceil_seconds = [](std::chrono::nanoseconds ns) {
        return static_cast<uint64_t>((std::max<int64_t>(ns.count(), 0) + 999'999'999) /
                                     1'000'000'000);
      };
      // Built in scratch space kept by the worker's thread: a gateway shedding load with 429s
      // answers without allocating.
      thread_local std::string headers, rule_json;
      headers.clear();
      http::append_header(headers, "Retry-After",
                          std::max<uint64_t>(1, ceil_seconds(d.retry_after)));
      http::append_header(headers, "RateLimit-Limit", d.limit);
      http::append_header(headers, "RateLimit-Remaining", d.remaining);
      http::append_header(headers, "RateLimit-Reset", ceil_seconds(d.reset));
      rule_json.assign(",\"rule\":");
      observability::append_json_string(rule_json, rule ? std::string_view(rule->cfg->name) : "");
      reply({.status = 429,
             .message = "rate limit exceeded",
             .code = "RATE_LIMITED",
             .extra_json = rule_json,
             .extra_headers = headers});
      return;
    }
    case Verdict::kOverloaded: {
      thread_local std::string priority;
      priority.assign(",\"priority\":");
      observability::append_json_string(priority, admission_.priority());
      reply({.status = 503,
             .message = "overloaded: request shed",
             .code = "OVERLOADED",
             .extra_json = priority});
      return;
    }
    case Verdict::kAtCapacity:
      reply(
          {.status = 503, .message = "service at its concurrency limit", .code = "MAX_CONCURRENT"});
      return;
    case Verdict::kBreakerOpen: {
      const config::Fallback& fb = gs.cfg->fallback;
      if (!fb.enabled) {
        reply({.status = 503, .message = "circuit breaker open", .code = "CIRCUIT_OPEN"});
        return;
      }
      gs.fallback_served->inc();
      reply({.status = fb.status,
             .extra_headers = "x-sluice-fallback: circuit-open\r\n",
             .raw = true,
             .content_type = fb.content_type,
             .body = fb.body});
      return;
    }
    case Verdict::kPass:
      return;
  }
}

bool Connection::choose_endpoints() {
  auto& ws = req_.services->services[req_.service_index];
  const ServiceInfo& si = req_.services->snapshot->services[req_.service_index];
  const governance::OutlierDetector& od =
      *req_.services->snapshot->governance->services[req_.service_index].outlier;
  core::MonoTime now = worker_.now();
  std::vector<uint8_t>& available = worker_.available_scratch();
  available.resize(ws.states.size());
  for (size_t i = 0; i < ws.states.size(); ++i) available[i] = od.available(i, now) ? 1 : 0;
  auto choice = si.locality->apply(ws.states, available, req_.tried,
                                   core::thread_rng().next_double(), req_.unit_city);
  return choice.tier >= 0;
}

void Connection::record_attempt(bool error) {
  if (req_.endpoint < 0) return;
  req_.services->snapshot->governance->services[req_.service_index].outlier->record(
      static_cast<size_t>(req_.endpoint), error, worker_.now());
}

void Connection::flush_downstream() {
  if (ds_writing_ || closed_) return;
  if (ds_out_.empty()) {
    if (req_.resp_done && req_.in_request) finish_request();
    return;
  }
  ds_wbuf_.swap(ds_out_);
  ds_writing_ = true;
  if (req_.resp_head_sent) req_.resp_on_wire = true;
  ds_write_started_ = worker_.now();
  auto on_write = [self = shared_from_this()](int err, size_t) {
    self->ds_writing_ = false;
    if (self->closed_) return;
    self->worker_.refresh_now();
    if (err != 0) {
      self->abort_request();
      self->close();
      return;
    }
    self->ds_wbuf_.clear();
    if (!self->ds_out_.empty()) {
      self->flush_downstream();
    } else if (self->req_.resp_done && self->req_.in_request) {
      self->finish_request();
    } else if (self->closing_ && !self->req_.in_request) {
      self->close();
    } else {
      self->read_upstream();
    }
  };
  static_assert(IoHandler::fits<decltype(on_write)>, "a request-path handler must not allocate");
  socket_.async_write(ds_wbuf_.data(), ds_wbuf_.size(), std::move(on_write));
}

void Connection::finish_request() {
  if (!req_.in_request) return;
  req_.in_request = false;
  const Snapshot& snap = *req_.services->snapshot;
  std::string_view endpoint_addr;
  if (upstream_ && req_.route && !req_.tried.empty()) {
    const ServiceInfo& si = snap.services[req_.service_index];
    const EndpointInfo& ep = si.endpoints[req_.tried.back()];
    endpoint_addr = ep.address;
    ep.requests.inc(req_.status);
    if (req_.upstream_seconds >= 0) ep.duration->observe(req_.upstream_seconds);
    bool reusable = req_.resp_keep_alive && req_.req_done && !req_.up_writing &&
                    req_.up_out.empty() && !req_.up_extra_bytes && !req_.up_body_stopped &&
                    req_.up_error == nullptr;
    if (reusable) {
      upstream::IdleCapConfig cap;
      cap.floor = si.cfg->max_idle_connections;
      cap.hard = si.cfg->max_idle_connections_set;
      cap.hard_cap = si.cfg->max_idle_connections;
      worker_.pool().put(std::move(upstream_), cap, si.cfg->timeouts.idle, worker_.now());
    } else {
      discard_upstream();
    }
  }
  release_request();
  record(endpoint_addr);

  auto keep_config = req_.services->snapshot->config;
  req_.services.reset();
  req_.route = nullptr;
  if (closing_ || !req_.req_done || worker_.draining() || draining_) {
    close();
    return;
  }
  set_deadline(Deadline::kIdle, keep_config->limits.idle_timeout);
  if (!pending_.empty()) {
    process_pending();
  } else {
    read_downstream();
  }
}

void Connection::release_request() {
  // The service's latency ends with its response, not with the client taking it.
  core::MonoTime end = worker_.now();
  if (req_.upstream_seconds >= 0) {
    end = req_.attempt_start + std::chrono::duration_cast<std::chrono::nanoseconds>(
                                   std::chrono::duration<double>(req_.upstream_seconds));
  }
  admission_.finish(req_.gov_failure, req_.gov_dropped, end);
  release_endpoint();
  if (!req_.counted_active) return;
  req_.counted_active = false;
  auto& ws = req_.services->services[req_.service_index];
  --ws.active_requests;
  if (req_.retrying) {
    --ws.active_retries;
    req_.retrying = false;
  }
}

void Connection::observe(const Snapshot& snap, const http::HeaderMap& headers) {
  // Requests a peer city's gateway forwarded were counted there already.
  if (headers.has("x-sluice-hop")) return;
  RouteObserved& o = *snap.observed[snap.route_slots[req_.route->index] + req_.split_slot];
  req_.caller_column = o.callers.intern(headers.get(kCallerHeader));
  const std::string& channel = snap.config->channel_header;
  if (!channel.empty()) req_.channel_column = o.channels.intern(headers.get(channel));
}

void Connection::record(std::string_view endpoint) {
  const Snapshot& snap = *req_.services->snapshot;
  double total = std::chrono::duration<double>(worker_.now() - req_.start).count();
  const RouteMetrics& rm = snap.metrics_for(listener_, req_.route, req_.split_slot);
  rm.requests.inc(req_.status);
  if (req_.status == 429) rm.throttled->inc();
  rm.duration->observe(total);
  if (req_.route &&
      (req_.caller_column != ObservedTable::kNone || req_.channel_column != ObservedTable::kNone)) {
    RouteObserved& o = *snap.observed[snap.route_slots[req_.route->index] + req_.split_slot];
    const bool error = req_.status >= 500;
    o.callers.count(req_.caller_column, error);
    o.channels.count(req_.channel_column, error);
  }

  observability::AccessRecord rec;
  rec.time = req_.start_wall;
  rec.request_id = req_.request_id;
  rec.client_ip = client_ip_;
  rec.method = req_.method;
  rec.path = req_.target;
  rec.original_path = req_.original_target;
  if (req_.route) {
    rec.route = req_.route->name;
    rec.service = snap.services[req_.service_index].cfg->name;
  }
  rec.endpoint = endpoint;
  rec.status = req_.status;
  rec.bytes_in = req_.bytes_in;
  rec.bytes_out = req_.bytes_out;
  rec.upstream_duration = req_.upstream_seconds;
  rec.duration = total;
  rec.attempts = req_.attempts;
  if (req_.forward) rec.unit = "forwarded";
  if (req_.direct) rec.unit = "direct";
  rec.listener = worker_.shared().listeners[listener_].name;
  rec.user_agent = req_.user_agent;
  if (req_.up_error) rec.upstream_error = req_.up_error;
  worker_.access_log().log(rec);
}

void Connection::abort_request() {
  if (!req_.in_request) return;
  if (req_.status == 0)
    req_.status = 499;  // client closed before the response (nginx's convention)
  closing_ = true;
  admission_.cancel();
  discard_upstream();
  release_request();
  req_.in_request = false;
  record({});
}

void Connection::on_tick(core::MonoTime now) {
  if (closed_) return;
  if (ds_writing_) {
    // A client that stops reading is given idle_timeout to take the response.
    const auto& limits = worker_.services()->snapshot->config->limits;
    if (now - ds_write_started_ > limits.idle_timeout) {
      abort_request();
      close();
    }
    return;
  }
  if (req_.body_timed && req_.in_request && !req_.req_done && !req_.local_reply) {
    const auto& limits = req_.services->snapshot->config->limits;
    auto until = req_.body_start + limits.body_timeout;
    if (limits.min_body_rate > 0) {
      // Every min_body_rate bytes received buy one more second (capped: no overflow).
      until += std::chrono::nanoseconds(static_cast<int64_t>(std::min<double>(
          1e18,
          static_cast<double>(req_.bytes_in) * 1e9 / static_cast<double>(limits.min_body_rate))));
    }
    if (now >= until) {
      on_body_timeout();
      return;
    }
  }
  if (deadline_kind_ == Deadline::kNone || now < deadline_) return;
  switch (deadline_kind_) {
    case Deadline::kHeader:
      if (parser_.in_message()) {
        worker_.shared().reject(RejectReason::kHeaderTimeout);
        begin_request();
        observability::make_request_id(core::thread_rng(), req_.request_id);
        closing_ = true;
        local_reply(408, "request head not received in time");
      } else {
        worker_.shared().reject(RejectReason::kIdleTimeout);
        close();
      }
      break;
    case Deadline::kIdle:
      worker_.shared().reject(RejectReason::kIdleTimeout);
      close();
      break;
    case Deadline::kConnect:
      deadline_kind_ = Deadline::kNone;
      req_.total_expired =
          deadline_ >= req_.total_deadline;  // the deadline was cut to timeouts.total
      on_upstream_failure(UpstreamErrorKind::kConnectFailure, "upstream connect timed out");
      break;
    case Deadline::kUpstream:
      deadline_kind_ = Deadline::kNone;
      req_.total_expired = deadline_ >= req_.total_deadline;
      on_upstream_failure(UpstreamErrorKind::kTimeout, "upstream request timed out");
      break;
    case Deadline::kHold:
      deadline_kind_ = Deadline::kNone;
      if (req_.held) {
        req_.held = false;
        req_.held_head.reset();
        req_.services->snapshot->unit_results[static_cast<size_t>(UnitResult::kHoldTimeout)]->inc();
        reply({.status = 503,
               .message = "the shard of this request is being switched to another city",
               .code = "UNIT_SWITCHING"});
      }
      break;
    case Deadline::kNone:
      break;
  }
}

void Connection::on_body_timeout() {
  worker_.shared().reject(RejectReason::kBodyTimeout);
  req_.body_timed = false;
  req_.buffering = false;
  closing_ = true;  // the rest of the body is not read
  if (req_.resp_head_sent) {
    // The service already answered and part of it is with the client: cut it short.
    abort_request();
    close();
    return;
  }
  if (req_.held) {
    req_.held = false;
    req_.held_head.reset();
  }
  deadline_kind_ = Deadline::kNone;
  if (req_.route) {
    drop_upstream();
    release_request();
    req_.up_out.clear();
  }
  local_reply(408, "request body not received in time");
}

void Connection::drain() {
  draining_ = true;
  if (req_.in_request || ds_writing_) return;  // closes after the response in progress
  if (!pending_.empty()) {
    process_pending();  // a pipelined request already read is answered, with Connection: close
    return;
  }
  // A request that has already arrived is answered rather than cut off; only a connection
  // with nothing to read is closed right away.
  char probe;
  ssize_t n = ::recv(socket_.fd(), &probe, 1, MSG_PEEK | MSG_DONTWAIT);
  if (n > 0) {
    read_downstream();
    return;
  }
  close();
}

void Connection::close() {
  if (closed_) return;
  closed_ = true;
  discard_upstream();
  socket_.close();
  worker_.unlink(this);
  // The worker's list held this connection alive; let go of it after the current handler, since
  // callers may still touch members when close() returns.
  worker_.loop().defer([self = std::move(self_)] {});
}

}  // namespace sluice::gateway
