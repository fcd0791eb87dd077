#include "gateway/connection.h"

#include <arpa/inet.h>
#include <netinet/in.h>
#include <sys/socket.h>

#include <cerrno>

#include <fmt/format.h>

#include "core/log.h"
#include "core/random.h"
#include "gateway/shared.h"
#include "gateway/worker.h"
#include "governance/circuit_breaker.h"
#include "governance/outlier_detector.h"
#include "http/writer.h"
#include "observability/access_log.h"
#include "observability/trace.h"
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
  if (!in_request_) return !closing_ && pending_.empty();
  if (req_done_ || local_reply_) return false;
  // A buffered body is bounded by limits.request_buffer_bytes (buffering stops beyond it).
  if (buffering_) return true;
  return up_out_.size() + up_wbuf_.size() < kMaxUpstreamBacklog;
}

void Connection::read_downstream() {
  if (ds_reading_ || !want_downstream_read()) return;
  ds_reading_ = true;
  socket_.async_read_some(rbuf_.data(), rbuf_.size(),
                          [self = shared_from_this()](int err, size_t n) {
                            self->ds_reading_ = false;
                            if (self->closed_ || err == ECANCELED) return;
                            self->worker_.refresh_now();
                            self->on_downstream_data(err, n);
                          });
}

void Connection::on_downstream_data(int err, size_t n) {
  if (err != 0 || n == 0) {
    on_client_gone();
    return;
  }
  if (!in_request_ && deadline_kind_ == Deadline::kIdle) {
    set_deadline(Deadline::kHeader, worker_.services()->snapshot->config->limits.header_timeout);
  }
  if (!in_request_ && !parser_.in_message()) request_began_ = worker_.now();
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
    if (in_request_ && req_done_) {
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
  in_request_ = true;
  req_done_ = false;
  local_reply_ = false;
  route_ = nullptr;
  services_ = worker_.services();
  start_ = worker_.now();
  start_wall_ = std::chrono::system_clock::now();
  bytes_in_ = bytes_out_ = 0;
  attempts_ = 0;
  tried_.clear();
  endpoint_ = -1;
  upstream_seconds_ = -1;
  resp_head_sent_ = resp_done_ = resp_interim_ = resp_on_wire_ = false;
  resp_got_bytes_ = up_extra_bytes_ = false;
  up_body_stopped_ = resp_bad_101_ = false;
  up_error_ = nullptr;
  retry_status_ = 0;
  status_ = 0;
  replay_.clear();
  replayable_ = true;
  retrying_ = false;
  free_retries_ = 0;
  stale_retried_ = false;
  up_reused_ = connect_error_ = false;
  body_timed_ = buffering_ = continue_sent_ = false;
  total_deadline_ = core::MonoTime::max();
  total_expired_ = false;
  if (request_began_ == core::MonoTime{} || request_began_ > start_) request_began_ = start_;
  method_.clear();
  target_.clear();
  original_target_.clear();
  user_agent_.clear();
  request_id_.clear();
  deadline_kind_ = Deadline::kNone;
  ++requests_;
}

void Connection::on_parse_error() {
  http::ParseError err = parser_.error();
  worker_.shared().reject(reject_reason(err));
  if (!in_request_) {
    begin_request();
    method_ = parser_.head().method;
    target_ = parser_.head().target.substr(0, 256);
    observability::make_request_id(core::thread_rng(), request_id_);
  }
  closing_ = true;
  if (resp_head_sent_ && !local_reply_ && !resp_on_wire_) unsend_response();
  if (resp_head_sent_) {
    abort_request();
    close();
    return;
  }
  if (route_) {
    // The request body turned out malformed (or too large) after forwarding began.
    drop_upstream();
    release_request();
    up_out_.clear();
  }
  local_reply(http::status_for(err), parser_.error_reason());
}

void Connection::on_head(http::MessageHead& head) {
  begin_request();
  const Snapshot& snap = *services_->snapshot;
  method_ = head.method;
  target_ = head.target;
  client_http10_ = head.version_minor == 0;
  client_keep_alive_ = head.keep_alive;
  head_request_ = method_ == "HEAD";
  req_chunked_ = head.chunked;
  req_has_body_ = head.chunked || head.content_length > 0;
  if (req_has_body_) {
    body_timed_ = true;
    body_start_ = worker_.now();
  }
  user_agent_ = head.headers.get("user-agent");
  std::string_view incoming_id = head.headers.get("x-request-id");
  if (usable_request_id(incoming_id)) {
    request_id_ = incoming_id;
  } else {
    observability::make_request_id(core::thread_rng(), request_id_);
  }

  // From here on every reader of the path (router, rewriting, unit and hash keys, access log,
  // the upstream, a peer city) sees one normal form; the query string is left as it came.
  // Asterisk-form ("OPTIONS *") has no path to normalise.
  if (head.target != "*") {
    const std::string_view path = head.path();
    http::PathResult pr = http::normalize_path(path, snap.config->http.path, path_scratch_);
    if (pr.error != http::PathError::kNone) {
      worker_.shared().reject(RejectReason::kBadPath);
      local_reply(400, http::path_error_reason(pr.error), "", ",\"code\":\"BAD_PATH\"");
      return;
    }
    if (pr.changed) {
      worker_.shared().paths_normalized->inc();
      original_target_ = head.target;
      head.target.replace(0, path.size(), path_scratch_);  // never longer: no allocation
      target_ = head.target;
    }
  }

  router::RequestView view{method_, host_without_port(head.headers.get("host")), head.path(),
                           &head.headers};
  route_ = snap.router->match(view);
  if (!route_) {
    local_reply(404, "no route matches this request");
    return;
  }
  service_index_ = route_->service_index;
  gov_failure_ = gov_dropped_ = false;
  forward_ = direct_ = held_ = unit_hop_ = unit_loop_ = false;
  hop_in_.clear();
  unit_city_.clear();
  held_head_.reset();
  if (snap.services[service_index_].cfg->kind == config::ServiceKind::kUnit &&
      snap.config->units.enabled && worker_.units()) {
    auto key = router::unit_key(snap.config->units, head.path(), head.query(), head.headers);
    unit_has_key_ = key && !key->empty();
    hop_in_ = head.headers.get("x-sluice-hop");
    unit_hop_ = head.headers.has("x-sluice-hop");
    unit_loop_ = unit_hop_ && http::listed_in_connection(hop_in_, snap.config->node.city);
    if (unit_has_key_) unit_shard_ = router::shard_of(*key, worker_.units()->shards());
    switch (route_unit()) {
      case UnitStep::kReplied:
        return;
      case UnitStep::kHold:
        held_ = true;
        held_head_ = std::make_unique<http::MessageHead>(head);
        up_out_.clear();  // the body, if any, gathers here until the switch is over
        replay_.clear();
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
  const Snapshot& snap = *services_->snapshot;
  auto count = [&](UnitResult r) { snap.unit_results[static_cast<size_t>(r)]->inc(); };
  if (!unit_has_key_) {
    count(UnitResult::kNoKey);
    return UnitStep::kServe;
  }
  const router::UnitTable& table = *worker_.units();
  if (table.switching(unit_shard_)) return UnitStep::kHold;
  std::string_view owner = table.owner(unit_shard_);
  const std::string& here = snap.config->node.city;
  if (owner == here) {
    count(UnitResult::kLocal);
    unit_city_ = owner;
    return UnitStep::kServe;
  }
  std::string extra = fmt::format(",\"shard\":{},\"owner\":", unit_shard_);
  observability::append_json_string(extra, owner);
  if (unit_loop_) {
    // This city's own forward came back: the peers are misconfigured.
    count(UnitResult::kLoop);
    extra.insert(0, ",\"code\":\"UNIT_LOOP\"");
    local_reply(508, "loop detected: this gateway's own forward came back to it", "", extra);
    return UnitStep::kReplied;
  }
  // A request another city forwarded here goes on only back to a city it came from, which has
  // taken the shard over meanwhile (switched while the request was on its way or held here). The
  // owner serves it or, if ownership moved yet again, finds itself in the hop list: 508.
  int peer = snap.peer_service(owner);
  if (peer >= 0 && (!unit_hop_ || http::listed_in_connection(hop_in_, owner))) {
    count(UnitResult::kForwarded);
    forward_ = true;
    service_index_ = static_cast<size_t>(peer);
    return UnitStep::kForward;
  }
  if (snap.config->units.protect) {
    // Serving a shard this city does not own could write in two cities at once.
    count(UnitResult::kNotOwned);
    extra.insert(0, ",\"code\":\"UNIT_NOT_OWNED\"");
    local_reply(421, "unit protection: this city does not own the shard of this request", "",
                extra);
    return UnitStep::kReplied;
  }
  count(UnitResult::kLocal);  // protect: false: served here although another city owns it
  return UnitStep::kServe;
}

void Connection::on_units_changed() {
  if (!held_ || closed_) return;
  held_ = false;
  UnitStep step = route_unit();
  if (step == UnitStep::kHold) {
    held_ = true;  // still switching (another shard range moved); keep the same deadline
    return;
  }
  services_->snapshot->unit_results[static_cast<size_t>(UnitResult::kHeld)]->inc();
  deadline_kind_ = Deadline::kNone;
  auto head = std::move(held_head_);
  if (step == UnitStep::kReplied) return;
  continue_request(*head, /*resumed=*/true);
}

void Connection::continue_request(const http::MessageHead& head, bool resumed) {
  const Snapshot& snap = *services_->snapshot;
  if (!req_done_ && req_has_body_ && !buffering_) {
    // A small body is read whole before an upstream connection is chosen and taken (as nginx
    // does), so that a slow client holds no connection to the service while it trickles in.
    const size_t limit = snap.config->limits.request_buffer_bytes;
    if (limit > 0 && (head.chunked || static_cast<uint64_t>(head.content_length) <= limit) &&
        up_out_.size() <= limit) {
      buffering_ = true;
      if (head.expect_continue && !client_http10_ && !resumed) {
        continue_sent_ = true;
        ds_out_.append("HTTP/1.1 100 Continue\r\n\r\n");
        flush_downstream();
      }
      return;
    }
  }
  buffering_ = false;
  if (const auto total = snap.services[service_index_].cfg->timeouts.total; total.count() > 0) {
    total_deadline_ = request_began_ + total;
  }
  // A forwarded request is governed by the owner city's gateway, which sees it next.
  if (!forward_) {
    if (!admit(head)) return;
  }
  idempotent_ = is_idempotent(method_);
  compute_hash(head);
  std::string body, replay_body;
  if (!up_out_.empty() || !replay_.empty()) {
    body = std::move(up_out_);  // body bytes that arrived while the request was held
    replay_body = std::move(replay_);
  }
  build_upstream_head(head);
  up_out_.append(body);
  if (replayable_) replay_.append(replay_body);
  if (head.expect_continue && !client_http10_ && !resumed && !continue_sent_) {
    continue_sent_ = true;
    ds_out_.append("HTTP/1.1 100 Continue\r\n\r\n");
    flush_downstream();
  }
  ++services_->services[service_index_].active_requests;
  counted_active_ = true;
  start_attempt();
}

bool Connection::admit(const http::MessageHead& head) {
  const Snapshot& snap = *services_->snapshot;
  RequestFacts facts;
  facts.head = &head;
  facts.client_ip = client_ip_;
  facts.route = route_->name;
  facts.service = snap.services[service_index_].cfg->name;
  facts.route_index = route_->index;
  facts.service_index = service_index_;
  Verdict verdict = admission_.admit(*snap.governance, facts, worker_.now());
  if (verdict == Verdict::kPass) return true;
  reply_refused(verdict);
  return false;
}

bool Connection::forward_direct() {
  if (!forward_ || resp_head_sent_ || !replayable_ || closed_ || !route_ || !parser_.head_done())
    return false;
  const Snapshot& snap = *services_->snapshot;
  const ServiceInfo& peer = snap.services[service_index_];
  if (peer.endpoints.empty()) return false;
  // The request is still whole in replay_ (head for the peer + body so far): only the head
  // changes. A rare path (a city's gateway is down): the copies are fine here.
  std::string body = replay_.substr(std::min(replay_head_bytes_, replay_.size()));
  std::string owner = peer.endpoints.front().cfg.city;
  release_request();  // leaves the peer service (nothing was admitted for a forward)
  gov_failure_ = gov_dropped_ = false;
  snap.unit_results[static_cast<size_t>(UnitResult::kDirect)]->inc();
  forward_ = false;
  direct_ = true;
  service_index_ = route_->service_index;
  unit_city_ = std::move(owner);
  tried_.clear();
  if (const auto total = snap.services[service_index_].cfg->timeouts.total; total.count() > 0) {
    total_deadline_ = request_began_ + total;  // the service's own bound, as if served here
  }
  const http::MessageHead& head = parser_.head();
  // The owner city's gateway would have governed it; it is down, so this one does.
  if (!admit(head)) return true;
  compute_hash(head);
  build_upstream_head(head);
  up_out_.append(body);
  replay_.append(body);
  ++services_->services[service_index_].active_requests;
  counted_active_ = true;
  attempts_ = 0;  // the service's own retries; the access log says `"unit":"direct"`
  start_attempt();
  return true;
}

void Connection::compute_hash(const http::MessageHead& head) {
  using Source = config::HashKey::Source;
  const config::HashKey& key =
      services_->snapshot->services[service_index_].cfg->load_balancer.hash_on;
  std::string_view value;
  switch (key.source) {
    case Source::kNone:
      break;
    case Source::kHeader:
      value = head.headers.get(key.name);
      break;
    case Source::kClientIp:
      value = client_ip_;
      break;
    case Source::kPath:
      value = head.path();
      break;
    case Source::kQuery:
      value = http::find_query_param(head.query(), key.name).value_or(std::string_view());
      break;
  }
  has_hash_ = !value.empty();
  hash_ = has_hash_ ? upstream::hash_key(value) : 0;
}

void Connection::build_upstream_head(const http::MessageHead& head) {
  std::string& out = up_out_;
  out.clear();
  out.append(method_);
  out.push_back(' ');
  if (forward_) {
    out.append(target_);  // the owner city's gateway routes the request as it came
  } else {
    router::Router::rewrite_path(*route_, head.path(), out);
    std::string_view query = head.query();
    if (!query.empty() || target_.find('?') != std::string::npos) {
      out.push_back('?');
      out.append(query);
    }
  }
  out.append(" HTTP/1.1\r\n");
  std::string_view connection = head.headers.get("connection");
  std::string_view xff;
  std::string_view traceparent;
  bool has_host = false;
  for (size_t i = 0; i < head.headers.size(); ++i) {
    auto f = head.headers.at(i);
    if (http::is_hop_by_hop(f.name)) continue;
    if (!connection.empty() && http::listed_in_connection(connection, f.name)) continue;
    if (http::iequals(f.name, "content-length") || http::iequals(f.name, "expect") ||
        http::iequals(f.name, "x-request-id") || http::iequals(f.name, "x-forwarded-proto") ||
        http::iequals(f.name, "x-sluice-hop")) {
      continue;
    }
    if (http::iequals(f.name, "x-forwarded-for")) {
      if (xff.empty()) xff = f.value;
      continue;
    }
    if (http::iequals(f.name, "traceparent")) {
      traceparent = f.value;
      continue;
    }
    if (http::iequals(f.name, "host")) has_host = true;
    out.append(f.name);
    out.append(": ");
    out.append(f.value);
    out.append("\r\n");
  }
  if (!has_host) {
    const auto& ep = services_->snapshot->services[service_index_];
    if (!ep.endpoints.empty()) http::append_header(out, "Host", ep.endpoints.front().address);
  }
  out.append("X-Forwarded-For: ");
  if (!xff.empty()) {
    out.append(xff);
    out.append(", ");
  }
  out.append(client_ip_);
  out.append("\r\nX-Forwarded-Proto: http\r\n");
  http::append_header(out, "x-request-id", request_id_);
  observability::make_child_traceparent(traceparent, core::thread_rng(), traceparent_);
  http::append_header(out, "traceparent", traceparent_);
  if (forward_ || direct_) {
    // The cities this request went through, so that a forward can never come back unnoticed
    // (also on a direct send: the owner city's instances may call through a gateway).
    out.append("x-sluice-hop: ");
    if (!hop_in_.empty()) {
      out.append(hop_in_);
      out.append(",");
    }
    out.append(services_->snapshot->config->node.city);
    out.append("\r\n");
  }
  if (head.chunked) {
    out.append("Transfer-Encoding: chunked\r\n");
  } else if (head.content_length >= 0) {
    http::append_header(out, "Content-Length", static_cast<uint64_t>(head.content_length));
  }
  out.append("\r\n");
  replay_ = out;
  replay_head_bytes_ = out.size();
}

void Connection::on_body(std::string_view data) {
  bytes_in_ += data.size();
  if (local_reply_) return;
  size_t before = up_out_.size();
  if (req_chunked_) http::append_chunk_header(up_out_, data.size());
  up_out_.append(data);
  if (req_chunked_) up_out_.append("\r\n");
  if (replayable_) {
    if (replay_.size() + (up_out_.size() - before) > kMaxReplayBytes) {
      replayable_ = false;
      replay_.clear();
    } else {
      replay_.append(up_out_, before, std::string::npos);
    }
  }
  // A chunked body that turns out larger than the buffer streams from here on.
  if (buffering_ && up_out_.size() > services_->snapshot->config->limits.request_buffer_bytes) {
    end_buffering();
  }
}

void Connection::on_complete() {
  req_done_ = true;
  if (local_reply_) return;
  if (req_chunked_) {
    http::append_last_chunk(up_out_);
    if (replayable_) http::append_last_chunk(replay_);
  }
  if (buffering_) end_buffering();
}

void Connection::end_buffering() {
  if (held_) {
    buffering_ = false;  // a unit switch holds it: on_units_changed goes on
    return;
  }
  // The parser keeps the head until the next message starts, which cannot happen before this
  // request is complete (pipelined bytes wait in pending_).
  continue_request(parser_.head(), /*resumed=*/false);
}

void Connection::start_attempt() {
  auto& ws = services_->services[service_index_];
  const ServiceInfo& si = services_->snapshot->services[service_index_];
  const ServiceInfo& si0 = services_->snapshot->services[service_index_];
  if (worker_.now() >= total_deadline_) {
    // The body took all of timeouts.total (a retry checks before it starts).
    release_request();
    local_reply(504, "request deadline (timeouts.total) exceeded");
    return;
  }
  if (!choose_endpoints()) {
    if (forward_ && forward_direct()) return;  // the peer gateway is ejected: straight there
    si0.no_endpoint->inc();
    release_request();
    std::string extra = ",\"code\":\"NO_ENDPOINT\"";
    if (!unit_city_.empty()) {
      extra.append(",\"city\":");
      observability::append_json_string(extra, unit_city_);
    }
    local_reply(503,
                unit_city_.empty() ? "no upstream endpoint available"
                                   : "no endpoint of the shard's owner city is available",
                "Retry-After: 1\r\n", extra);
    return;
  }
  upstream::PickContext ctx;
  ctx.tried = tried_;
  ctx.has_hash = has_hash_;
  ctx.hash = hash_;
  int idx = ws.lb->pick(ctx);
  if (idx < 0) {
    si.no_endpoint->inc();
    release_request();
    local_reply(503, "no upstream endpoint available");
    return;
  }
  endpoint_ = idx;
  if (auto* cross = si.endpoints[idx].cross_city) cross->inc();
  tried_.push_back(static_cast<uint32_t>(idx));
  ++attempts_;
  ++ws.states[idx].active;
  attempt_start_ = worker_.now();
  resp_got_bytes_ = false;
  up_reused_ = connect_error_ = false;
  up_connected_ = false;
  up_writing_ = false;
  if (!up_wbuf_busy_) up_wbuf_.clear();
  response_parser_.reset();
  response_parser_.expect_no_body(head_request_);
  uint64_t gen = ++attempt_gen_;

  const EndpointInfo& ep = si.endpoints[idx];
  upstream_ = worker_.pool().take(ep.address, worker_.now());
  if (upstream_) {
    up_reused_ = true;
    upstream_ready();
    return;
  }
  const ServiceRuntime& gs = services_->snapshot->governance->services[service_index_];
  if (!gs.breaker->try_acquire_pending()) {
    gs.rejected_pending->inc();
    release_endpoint();
    release_request();
    local_reply(503, "too many requests waiting for an upstream connection", "Retry-After: 1\r\n",
                ",\"code\":\"MAX_PENDING\"");
    return;
  }
  pending_held_ = true;
  upstream_ = worker_.pool().create(worker_.loop(), ep.address, worker_.now());
  arm_upstream_deadline(Deadline::kConnect, si.cfg->timeouts.connect);
  upstream_->socket().async_connect(
      ep.resolved.data(), static_cast<socklen_t>(ep.resolved.size()),
      [self = shared_from_this(), gen](int err, size_t) { self->on_connected(err, gen); });
}

void Connection::on_connected(int err, uint64_t gen) {
  if (gen != attempt_gen_ || closed_ || !upstream_) return;
  worker_.refresh_now();
  if (pending_held_) {
    pending_held_ = false;
    services_->snapshot->governance->services[service_index_].breaker->release_pending();
  }
  if (err != 0) {
    connect_error_ = endpoint_refused(err);
    on_upstream_failure(UpstreamErrorKind::kConnectFailure, "upstream connect failed");
    return;
  }
  upstream_->socket().set_no_delay();
  upstream_ready();
}

void Connection::upstream_ready() {
  up_connected_ = true;
  upstream_->attach(this);
  const ServiceInfo& si = services_->snapshot->services[service_index_];
  const EndpointInfo& ep = si.endpoints[endpoint_];
  (upstream_->reused() ? ep.pool_hits : ep.connections_opened)->inc();
  upstream_->count_request();
  arm_upstream_deadline(Deadline::kUpstream, si.cfg->timeouts.request);
  flush_upstream();
  upstream_->read();
}

void Connection::flush_upstream() {
  if (up_body_stopped_) up_out_.clear();  // the upstream has answered: the rest is not sent
  if (!up_connected_ || up_writing_ || up_wbuf_busy_ || up_out_.empty() || !upstream_) return;
  up_wbuf_.swap(up_out_);
  up_writing_ = true;
  up_wbuf_busy_ = true;
  uint64_t gen = attempt_gen_;
  upstream_->socket().async_write(
      up_wbuf_.data(), up_wbuf_.size(), [self = shared_from_this(), gen](int err, size_t) {
        // The kernel is done with up_wbuf_ only now, also when the attempt was dropped.
        self->up_wbuf_busy_ = false;
        if (gen != self->attempt_gen_ || self->closed_) {
          self->up_wbuf_.clear();
          if (!self->closed_) self->flush_upstream();  // a newer attempt may be waiting for it
          return;
        }
        self->up_writing_ = false;
        self->worker_.refresh_now();
        if (err != 0) {
          // The response may already be complete (an early answer); otherwise
          // the attempt failed.
          if (!self->resp_done_) {
            self->on_upstream_failure(UpstreamErrorKind::kReset, "upstream write failed");
          }
          return;
        }
        self->up_wbuf_.clear();
        // Upload progress counts as activity: a long request body is not a timeout.
        if (self->deadline_kind_ == Deadline::kUpstream) {
          const ServiceInfo& si = self->services_->snapshot->services[self->service_index_];
          self->arm_upstream_deadline(Deadline::kUpstream, si.cfg->timeouts.request);
        }
        if (!self->up_out_.empty()) {
          self->flush_upstream();
        } else if (!self->req_done_) {
          self->read_downstream();
        }
      });
}

void Connection::read_upstream() {
  if (upstream_ && up_connected_ && !resp_done_ && !ds_writing_ && !closed_) upstream_->read();
}

void Connection::on_upstream_data(int err, const char* data, size_t n) {
  if (closed_ || !upstream_ || err == ECANCELED) return;
  auto keep = shared_from_this();  // the upstream's handler holds no reference to this
  worker_.refresh_now();
  if (err != 0 || n == 0) {
    if (err == 0 && response_parser_.in_message() &&
        response_parser_.finish() == http::Parser::Status::kComplete) {
      // A response delimited by the connection closing ends here.
      resp_keep_alive_ = false;
      flush_downstream();
      return;
    }
    // A new connection reset before any response byte: a process that died with the request
    // accepted by its kernel (the listener goes with it), not the keep-alive race of a pooled
    // one. Out of every worker's choice at once, as a refusal is (issue 11).
    if (err == ECONNRESET && !up_reused_ && !resp_got_bytes_ && endpoint_ >= 0) {
      const ServiceInfo& si = services_->snapshot->services[service_index_];
      auto& od = *services_->snapshot->governance->services[service_index_].outlier;
      if (od.mark_down(static_cast<size_t>(endpoint_), worker_.now())) {
        core::log_warn("endpoint {} of service {} reset a new connection: out of rotation for {}",
                       si.endpoints[endpoint_].address, si.cfg->name,
                       core::format_duration(od.down_for()));
      }
    }
    on_upstream_failure(UpstreamErrorKind::kReset, "upstream closed the connection");
    return;
  }
  resp_got_bytes_ = true;
  const ServiceInfo& si = services_->snapshot->services[service_index_];
  arm_upstream_deadline(Deadline::kUpstream, si.cfg->timeouts.request);
  size_t off = 0;
  uint64_t gen = attempt_gen_;
  while (off < n) {
    auto r = response_parser_.feed(data + off, n - off);
    if (gen != attempt_gen_ || closed_) return;  // aborted from a callback
    if (resp_bad_101_) {
      // What follows a 101 is another protocol: never parsed as a response to this request.
      note_protocol_error(UpstreamProtocolError::kUnexpected101);
      on_upstream_failure(UpstreamErrorKind::kProtocol,
                          "upstream switched protocols (101) for a request that did not ask to");
      return;
    }
    if (retry_status_) {
      si.endpoints[endpoint_].requests.inc(retry_status_);
      record_attempt(true);
      retry_status_ = 0;
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
    if (resp_done_) {
      if (off < n) {
        // Bytes nobody asked for yet (a second response?): they are dropped with the
        // connection, never given to the next request.
        up_extra_bytes_ = true;
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
    resp_bad_101_ = true;
    return;
  }
  if (head.status >= 100 && head.status < 200) {
    resp_interim_ = true;  // 1xx: not forwarded; the final response follows
    return;
  }
  uint32_t flag = retry_flag_for_status(head.status);
  if (flag && can_retry(flag) != RetryCost::kNone) {
    // Not forwarded: read_upstream retries once the parser has returned.
    retry_status_ = head.status;
    return;
  }
  if (!head.keep_alive && (!req_done_ || up_writing_ || !up_out_.empty())) {
    // A final answer before the whole request was sent, from an upstream that is closing the
    // connection (e.g. 413 to a large upload): forwarded, and the rest of the body is not sent
    // (RFC 9112 section 9.3). An answer on a connection that stays open (a streaming echo) lets
    // the body go on; that connection is reused only if the request then completes.
    up_body_stopped_ = true;
    up_out_.clear();
    note_protocol_error(UpstreamProtocolError::kEarlyResponse);
  }
  status_ = head.status;
  record_attempt(head.status >= 500);
  gov_failure_ = head.status >= 500;
  gov_dropped_ = head.status == 503;
  resp_keep_alive_ = head.keep_alive;
  resp_head_sent_ = true;
  bool no_body = head_request_ || head.status == 204 || head.status == 304;
  if (worker_.draining() || draining_ || !req_done_) closing_ = true;
  if (!client_keep_alive_) closing_ = true;
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
  resp_chunked_out_ = false;
  if (!no_body) {
    if (head.content_length >= 0 && !head.chunked) {
      http::append_header(out, "Content-Length", static_cast<uint64_t>(head.content_length));
    } else if (!client_http10_) {
      out.append("Transfer-Encoding: chunked\r\n");
      resp_chunked_out_ = true;
    } else {
      closing_ = true;  // HTTP/1.0 client: the body ends when the connection closes
    }
  }
  http::append_header(out, "x-request-id", request_id_);
  if (closing_) {
    out.append("Connection: close\r\n");
  } else if (client_http10_) {
    out.append("Connection: keep-alive\r\n");
  }
  out.append("\r\n");
}

void Connection::on_response_body(std::string_view data) {
  if (retry_status_) return;
  bytes_out_ += data.size();
  if (resp_chunked_out_) http::append_chunk_header(ds_out_, data.size());
  ds_out_.append(data);
  if (resp_chunked_out_) ds_out_.append("\r\n");
}

void Connection::on_response_complete() {
  if (retry_status_ || resp_bad_101_) return;
  if (resp_interim_) {
    resp_interim_ = false;
    return;
  }
  resp_done_ = true;
  if (resp_chunked_out_) http::append_last_chunk(ds_out_);
  upstream_seconds_ = std::chrono::duration<double>(worker_.now() - attempt_start_).count();
}

void Connection::note_protocol_error(UpstreamProtocolError e) {
  services_->snapshot->services[service_index_].protocol_errors[static_cast<size_t>(e)]->inc();
  up_error_ = to_string(e);
}

Connection::RetryCost Connection::can_retry(uint32_t on_flag, bool refused, bool stale,
                                            bool before_response) const {
  const ServiceInfo& si = services_->snapshot->services[service_index_];
  const config::Retry& r = si.cfg->retry;
  if (resp_head_sent_ || !replayable_ || closed_) return RetryCost::kNone;
  if (r.attempts == 0 || !(r.on & on_flag)) return RetryCost::kNone;
  if (!time_left_for_try()) return RetryCost::kNone;
  const bool may_resend = idempotent_ || r.non_idempotent;
  // Failover, not extra load: a connection that could not be opened carried nothing (any method
  // may go elsewhere), and is retried on an endpoint not tried yet; a pooled connection that
  // closed before any response byte is the keep-alive race or an instance that died (idempotent
  // requests only: it may have been processed). Neither adds load a healthy service would not
  // have had, so neither is rationed; both are bounded by the number of endpoints: a refusal
  // is retried for free only on an endpoint in rotation that this request has not tried (when
  // every endpoint is down, the usual rules apply), and a stale connection is retried for free
  // once per request (a request that itself kills connections gets one extra try, no more).
  const size_t n = si.endpoints.size();
  if (refused && free_retries_ < n) {
    const auto& od = *services_->snapshot->governance->services[service_index_].outlier;
    const core::MonoTime now = worker_.now();
    for (size_t i = 0; i < n; ++i) {
      if (od.available(i, now) &&
          std::find(tried_.begin(), tried_.end(), static_cast<uint32_t>(i)) == tried_.end()) {
        return RetryCost::kFree;
      }
    }
  } else if (stale && may_resend && !stale_retried_) {
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
    const auto& od = *services_->snapshot->governance->services[service_index_].outlier;
    const core::MonoTime now = worker_.now();
    bool elsewhere = false;
    for (size_t k = 0; k < tried_.size(); ++k) {
      const uint32_t i = tried_[k];
      if (std::find(tried_.begin(), tried_.begin() + k, i) == tried_.begin() + k &&
          od.down(i, now)) {
        ++dead;
      }
    }
    for (size_t i = 0; i < n && !elsewhere; ++i) {
      elsewhere = od.available(i, now) &&
                  std::find(tried_.begin(), tried_.end(), static_cast<uint32_t>(i)) == tried_.end();
    }
    // Refusals that were retried for free already used their endpoint's free try.
    const uint32_t refused_free = free_retries_ - (stale_retried_ ? 1 : 0);
    dead = elsewhere && dead > refused_free ? dead - refused_free : 0;
  }
  if (int64_t{attempts_} - free_retries_ - dead > int64_t{r.attempts}) return RetryCost::kNone;
  // A connect that failed or timed out put no load on the service: no budget needed. Nor does a
  // connection that closed before any response byte: that is an instance going away (a
  // connection the kernel accepted for a process that died, a further stale pooled connection),
  // not a service answering slowly or with errors, which is what the budget is for; `attempts`
  // bounds it (1 + attempts tries at most).
  if (on_flag == config::kRetryConnectFailure || before_response) return RetryCost::kAttempt;
  const auto& ws = services_->services[service_index_];
  uint64_t budget = std::max<uint64_t>(r.min_retry_concurrency,
                                       uint64_t{ws.active_requests} * r.budget_percent / 100);
  return ws.active_retries < budget ? RetryCost::kBudgeted : RetryCost::kNone;
}

bool Connection::time_left_for_try() const {
  if (total_deadline_ == core::MonoTime::max()) return true;
  const auto& t = services_->snapshot->services[service_index_].cfg->timeouts;
  const std::chrono::nanoseconds min_try =
      std::max<std::chrono::nanoseconds>(kMinTry, t.request / 10);
  return total_deadline_ - worker_.now() >= min_try;
}

void Connection::arm_upstream_deadline(Deadline kind, std::chrono::nanoseconds after) {
  // timeouts.total bounds the wait for the response head; a response that has started streams
  // under the request timeout alone.
  if (total_deadline_ != core::MonoTime::max() && !resp_head_sent_) {
    after = std::min<std::chrono::nanoseconds>(after, total_deadline_ - worker_.now());
  }
  set_deadline(kind, after);
}

void Connection::release_endpoint() {
  if (pending_held_) {
    pending_held_ = false;
    services_->snapshot->governance->services[service_index_].breaker->release_pending();
  }
  if (endpoint_ < 0) return;
  auto& ws = services_->services[service_index_];
  if (ws.states[endpoint_].active > 0) --ws.states[endpoint_].active;
  endpoint_ = -1;
}

void Connection::discard_upstream() {
  if (!upstream_) return;
  worker_.pool().discard(std::move(upstream_), worker_.now());
  upstream_.reset();
}

void Connection::on_client_gone() {
  // A request whose body had not fully arrived cannot complete.
  if (in_request_ && !req_done_ && parser_.head_done()) abort_request();
  close();
}

void Connection::drop_upstream() {
  release_endpoint();
  discard_upstream();
  ++attempt_gen_;  // handlers of the dropped attempt find a newer generation and stop
  up_connected_ = false;
  up_writing_ = false;
  // A write in flight still owns up_wbuf_ (io_uring reads it when the submission runs, epoll
  // after a short write): clearing it here put a NUL on the wire. Its handler frees it.
  if (!up_wbuf_busy_) up_wbuf_.clear();
  auto& ws = services_->services[service_index_];
  if (retrying_) {
    --ws.active_retries;
    retrying_ = false;
  }
}

void Connection::retry(RetryCost cost, bool stale) {
  if (cost == RetryCost::kFree) {
    ++free_retries_;
    stale_retried_ = stale_retried_ || stale;
  } else if (cost == RetryCost::kBudgeted) {
    retrying_ = true;
    ++services_->services[service_index_].active_retries;
  }
  services_->snapshot->services[service_index_].retries->inc();
  up_out_ = replay_;
  start_attempt();
}

void Connection::on_upstream_failure(UpstreamErrorKind kind, const char* what) {
  const ServiceInfo& si = services_->snapshot->services[service_index_];
  const bool refused = kind == UpstreamErrorKind::kConnectFailure && connect_error_;
  const bool before_response = kind == UpstreamErrorKind::kReset && !resp_got_bytes_;
  const bool stale = before_response && up_reused_;
  if (endpoint_ >= 0) {
    si.endpoints[endpoint_].errors[static_cast<size_t>(kind)]->inc();
    if (refused) {
      // Nothing serves there: out of every worker's choice now, not after the health check's
      // thresholds (governance::OutlierDetector, "Down").
      auto& od = *services_->snapshot->governance->services[service_index_].outlier;
      if (od.mark_down(static_cast<size_t>(endpoint_), worker_.now())) {
        core::log_warn("endpoint {} of service {} refused a connection: out of rotation for {}",
                       si.endpoints[endpoint_].address, si.cfg->name,
                       core::format_duration(od.down_for()));
      }
    }
  }
  record_attempt(true);
  gov_failure_ = true;
  gov_dropped_ = kind != UpstreamErrorKind::kProtocol;
  drop_upstream();
  // The owner city's gateway is unreachable: rather than a 502 until it is back, the owner city's
  // instances serve the request. Safe when it never left (connect failed); after a close without
  // a byte of answer (a dying gateway's listener can still complete handshakes) only for the
  // methods a retry would resend too.
  if (forward_ &&
      (kind == UpstreamErrorKind::kConnectFailure || (before_response && idempotent_)) &&
      forward_direct()) {
    return;
  }
  if (RetryCost cost = can_retry(retry_flag(kind), refused, stale, before_response);
      cost != RetryCost::kNone) {
    retry(cost, stale);
    return;
  }
  release_request();
  if (resp_head_sent_ && !resp_on_wire_) unsend_response();
  if (resp_head_sent_) {
    // Part of the response is already with the client: all that is left is to cut it short.
    status_ = 502;
    abort_request();
    close();
    return;
  }
  up_out_.clear();
  int status = kind == UpstreamErrorKind::kTimeout ? 504 : 502;
  // Out of time: the total deadline fired, or what it leaves is too short for another try.
  if (total_expired_ || (total_deadline_ != core::MonoTime::max() && !time_left_for_try())) {
    status = 504;
    what = "request deadline (timeouts.total) exceeded";
  }
  local_reply(status, what);
}

void Connection::unsend_response() {
  // Nothing of the upstream's response has been handed to the socket yet: drop what was queued
  // so that the client gets a clean error response instead of a cut connection.
  ds_out_.clear();
  resp_head_sent_ = false;
  resp_chunked_out_ = false;
  bytes_out_ = 0;
}

void Connection::local_reply(int status, std::string_view message) {
  local_reply(status, message, status == 503 ? "Retry-After: 1\r\n" : "", {});
}

void Connection::local_reply(int status, std::string_view message, std::string_view extra_headers,
                             std::string_view extra_json) {
  local_reply_ = true;
  status_ = status;
  resp_done_ = true;
  if (!req_done_ && req_has_body_) closing_ = true;  // the rest of the body is not read
  if (!client_keep_alive_ || worker_.draining() || draining_) closing_ = true;
  std::string body = "{\"error\":";
  observability::append_json_string(body, message);
  body.append(extra_json);
  body.append(",\"status\":");
  body.append(std::to_string(status));
  body.append(",\"request_id\":");
  observability::append_json_string(body, request_id_);
  body.append("}\n");
  http::append_status_line(ds_out_, status);
  ds_out_.append("Content-Type: application/json\r\n");
  http::append_header(ds_out_, "Content-Length", static_cast<uint64_t>(body.size()));
  http::append_header(ds_out_, "x-request-id", request_id_);
  ds_out_.append(extra_headers);
  if (closing_) ds_out_.append("Connection: close\r\n");
  ds_out_.append("\r\n");
  if (!head_request_) ds_out_.append(body);
  bytes_out_ = head_request_ ? 0 : body.size();
  resp_head_sent_ = true;
  flush_downstream();
}

void Connection::reply_refused(Verdict verdict) {
  const ServiceRuntime& gs = services_->snapshot->governance->services[service_index_];
  switch (verdict) {
    case Verdict::kRateLimited: {
      const RuleRuntime* rule = admission_.rejecting_rule();
      const governance::RateDecision& d = admission_.decision();
      auto ceil_seconds = [](std::chrono::nanoseconds ns) {
        return static_cast<uint64_t>((std::max<int64_t>(ns.count(), 0) + 999'999'999) /
                                     1'000'000'000);
      };
      std::string headers;
      http::append_header(headers, "Retry-After",
                          std::max<uint64_t>(1, ceil_seconds(d.retry_after)));
      http::append_header(headers, "RateLimit-Limit", d.limit);
      http::append_header(headers, "RateLimit-Remaining", d.remaining);
      http::append_header(headers, "RateLimit-Reset", ceil_seconds(d.reset));
      std::string extra = ",\"code\":\"RATE_LIMITED\",\"rule\":";
      observability::append_json_string(extra, rule ? std::string_view(rule->cfg->name) : "");
      local_reply(429, "rate limit exceeded", headers, extra);
      return;
    }
    case Verdict::kOverloaded: {
      std::string extra = ",\"code\":\"OVERLOADED\",\"priority\":";
      observability::append_json_string(extra, admission_.priority());
      local_reply(503, "overloaded: request shed", "Retry-After: 1\r\n", extra);
      return;
    }
    case Verdict::kAtCapacity:
      local_reply(503, "service at its concurrency limit", "Retry-After: 1\r\n",
                  ",\"code\":\"MAX_CONCURRENT\"");
      return;
    case Verdict::kBreakerOpen: {
      const config::Fallback& fb = gs.cfg->fallback;
      if (!fb.enabled) {
        local_reply(503, "circuit breaker open", "Retry-After: 1\r\n",
                    ",\"code\":\"CIRCUIT_OPEN\"");
        return;
      }
      gs.fallback_served->inc();
      local_reply_ = true;
      status_ = fb.status;
      resp_done_ = true;
      if (!req_done_ && req_has_body_) closing_ = true;
      if (!client_keep_alive_ || worker_.draining() || draining_) closing_ = true;
      http::append_status_line(ds_out_, fb.status);
      http::append_header(ds_out_, "Content-Type", fb.content_type);
      http::append_header(ds_out_, "Content-Length", static_cast<uint64_t>(fb.body.size()));
      http::append_header(ds_out_, "x-request-id", request_id_);
      ds_out_.append("x-sluice-fallback: circuit-open\r\n");
      if (closing_) ds_out_.append("Connection: close\r\n");
      ds_out_.append("\r\n");
      if (!head_request_) ds_out_.append(fb.body);
      bytes_out_ = head_request_ ? 0 : fb.body.size();
      resp_head_sent_ = true;
      flush_downstream();
      return;
    }
    case Verdict::kPass:
      return;
  }
}

bool Connection::choose_endpoints() {
  auto& ws = services_->services[service_index_];
  const ServiceInfo& si = services_->snapshot->services[service_index_];
  const governance::OutlierDetector& od =
      *services_->snapshot->governance->services[service_index_].outlier;
  core::MonoTime now = worker_.now();
  std::vector<uint8_t>& available = worker_.available_scratch();
  available.resize(ws.states.size());
  for (size_t i = 0; i < ws.states.size(); ++i) available[i] = od.available(i, now) ? 1 : 0;
  auto choice = si.locality->apply(ws.states, available, tried_, core::thread_rng().next_double(),
                                   unit_city_);
  return choice.tier >= 0;
}

void Connection::record_attempt(bool error) {
  if (endpoint_ < 0) return;
  services_->snapshot->governance->services[service_index_].outlier->record(
      static_cast<size_t>(endpoint_), error, worker_.now());
}

void Connection::flush_downstream() {
  if (ds_writing_ || closed_) return;
  if (ds_out_.empty()) {
    if (resp_done_ && in_request_) finish_request();
    return;
  }
  ds_wbuf_.swap(ds_out_);
  ds_writing_ = true;
  if (resp_head_sent_) resp_on_wire_ = true;
  ds_write_started_ = worker_.now();
  socket_.async_write(ds_wbuf_.data(), ds_wbuf_.size(),
                      [self = shared_from_this()](int err, size_t) {
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
                        } else if (self->resp_done_ && self->in_request_) {
                          self->finish_request();
                        } else if (self->closing_ && !self->in_request_) {
                          self->close();
                        } else {
                          self->read_upstream();
                        }
                      });
}

void Connection::finish_request() {
  if (!in_request_) return;
  in_request_ = false;
  const Snapshot& snap = *services_->snapshot;
  std::string_view endpoint_addr;
  if (upstream_ && route_ && !tried_.empty()) {
    const ServiceInfo& si = snap.services[service_index_];
    const EndpointInfo& ep = si.endpoints[tried_.back()];
    endpoint_addr = ep.address;
    ep.requests.inc(status_);
    if (upstream_seconds_ >= 0) ep.duration->observe(upstream_seconds_);
    bool reusable = resp_keep_alive_ && req_done_ && !up_writing_ && up_out_.empty() &&
                    !up_extra_bytes_ && !up_body_stopped_ && up_error_ == nullptr;
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

  auto keep_config = services_->snapshot->config;
  services_.reset();
  route_ = nullptr;
  if (closing_ || !req_done_ || worker_.draining() || draining_) {
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
  if (upstream_seconds_ >= 0) {
    end = attempt_start_ + std::chrono::duration_cast<std::chrono::nanoseconds>(
                               std::chrono::duration<double>(upstream_seconds_));
  }
  admission_.finish(gov_failure_, gov_dropped_, end);
  release_endpoint();
  if (!counted_active_) return;
  counted_active_ = false;
  auto& ws = services_->services[service_index_];
  --ws.active_requests;
  if (retrying_) {
    --ws.active_retries;
    retrying_ = false;
  }
}

void Connection::record(std::string_view endpoint) {
  const Snapshot& snap = *services_->snapshot;
  double total = std::chrono::duration<double>(worker_.now() - start_).count();
  const RouteMetrics& rm = snap.metrics_for(listener_, route_);
  rm.requests.inc(status_);
  rm.duration->observe(total);

  observability::AccessRecord rec;
  rec.time = start_wall_;
  rec.request_id = request_id_;
  rec.client_ip = client_ip_;
  rec.method = method_;
  rec.path = target_;
  rec.original_path = original_target_;
  if (route_) {
    rec.route = route_->name;
    rec.service = snap.services[service_index_].cfg->name;
  }
  rec.endpoint = endpoint;
  rec.status = status_;
  rec.bytes_in = bytes_in_;
  rec.bytes_out = bytes_out_;
  rec.upstream_duration = upstream_seconds_;
  rec.duration = total;
  rec.attempts = attempts_;
  if (forward_) rec.unit = "forwarded";
  if (direct_) rec.unit = "direct";
  rec.listener = worker_.shared().listeners[listener_].name;
  rec.user_agent = user_agent_;
  if (up_error_) rec.upstream_error = up_error_;
  worker_.access_log().log(rec);
}

void Connection::abort_request() {
  if (!in_request_) return;
  if (status_ == 0) status_ = 499;  // client closed before the response (nginx's convention)
  closing_ = true;
  admission_.cancel();
  discard_upstream();
  release_request();
  in_request_ = false;
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
  if (body_timed_ && in_request_ && !req_done_ && !local_reply_) {
    const auto& limits = services_->snapshot->config->limits;
    auto until = body_start_ + limits.body_timeout;
    if (limits.min_body_rate > 0) {
      // Every min_body_rate bytes received buy one more second (capped: no overflow).
      until += std::chrono::nanoseconds(static_cast<int64_t>(std::min<double>(
          1e18, static_cast<double>(bytes_in_) * 1e9 / static_cast<double>(limits.min_body_rate))));
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
        observability::make_request_id(core::thread_rng(), request_id_);
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
      total_expired_ = deadline_ >= total_deadline_;  // the deadline was cut to timeouts.total
      on_upstream_failure(UpstreamErrorKind::kConnectFailure, "upstream connect timed out");
      break;
    case Deadline::kUpstream:
      deadline_kind_ = Deadline::kNone;
      total_expired_ = deadline_ >= total_deadline_;
      on_upstream_failure(UpstreamErrorKind::kTimeout, "upstream request timed out");
      break;
    case Deadline::kHold:
      deadline_kind_ = Deadline::kNone;
      if (held_) {
        held_ = false;
        held_head_.reset();
        services_->snapshot->unit_results[static_cast<size_t>(UnitResult::kHoldTimeout)]->inc();
        local_reply(503, "the shard of this request is being switched to another city",
                    "Retry-After: 1\r\n", ",\"code\":\"UNIT_SWITCHING\"");
      }
      break;
    case Deadline::kNone:
      break;
  }
}

void Connection::on_body_timeout() {
  worker_.shared().reject(RejectReason::kBodyTimeout);
  body_timed_ = false;
  buffering_ = false;
  closing_ = true;  // the rest of the body is not read
  if (resp_head_sent_) {
    // The service already answered and part of it is with the client: cut it short.
    abort_request();
    close();
    return;
  }
  if (held_) {
    held_ = false;
    held_head_.reset();
  }
  deadline_kind_ = Deadline::kNone;
  if (route_) {
    drop_upstream();
    release_request();
    up_out_.clear();
  }
  local_reply(408, "request body not received in time");
}

void Connection::drain() {
  draining_ = true;
  if (in_request_ || ds_writing_) return;  // closes after the response in progress
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
