#include "sample/sample_service.h"

#include "sample/registration.h"

#include <csignal>
#include <memory>
#include <optional>
#include <thread>
#include <vector>

#include "core/address.h"
#include "core/log.h"
#include "sample/host_facts.h"
#include "sample/registration.h"
#include "sample/worker.h"

namespace sluice::sample {

namespace {

// Start-up only: resolves a literal address or a name ("localhost") to one endpoint.
std::optional<asio::ip::tcp::endpoint> resolve(const core::HostPort& hp, std::string* error) {
  std::error_code ec;
  auto address = asio::ip::make_address(hp.host, ec);
  if (!ec) return asio::ip::tcp::endpoint(address, hp.port);
  asio::io_context ioc;
  asio::ip::tcp::resolver resolver(ioc);
  auto results = resolver.resolve(hp.host, std::to_string(hp.port), ec);
  if (ec || results.empty()) {
    *error = ec ? ec.message() : "no address";
    return std::nullopt;
  }
  return results.begin()->endpoint();
}

// SO_REUSEPORT would let us share a port with another process of the same user that is already
// listening there, splitting its traffic silently. A plain bind first turns that into an error.
std::error_code check_port_free(const asio::ip::tcp::endpoint& endpoint) {
  asio::io_context ioc;
  asio::ip::tcp::acceptor probe(ioc);
  std::error_code ec;
  probe.open(endpoint.protocol(), ec);
  if (!ec) probe.set_option(asio::socket_base::reuse_address(true), ec);
  if (!ec) probe.bind(endpoint, ec);
  return ec;
}

std::string endpoint_text(const asio::ip::tcp::endpoint& ep) {
  return core::HostPort{ep.address().to_string(), ep.port()}.to_string();
}

}  // namespace

int run_sample_service(const SampleOptions& opts) {
  auto hp = core::parse_host_port(opts.listen, /*allow_port_zero=*/true);
  if (!hp) {
    core::log_error("--listen: expected host:port, got '{}'", opts.listen);
    return 2;
  }
  if (!(opts.error_rate >= 0 && opts.error_rate <= 1)) {
    core::log_error("--error-rate: must be 0..1");
    return 2;
  }
  if (opts.latency.count() < 0 || opts.latency > std::chrono::hours(1)) {
    core::log_error("--latency: must be 0..1h");
    return 2;
  }
  std::string error;
  auto endpoint = resolve(*hp, &error);
  if (!endpoint) {
    core::log_error("--listen {}: {}", opts.listen, error);
    return 2;
  }
  unsigned count = opts.workers != 0 ? opts.workers : std::thread::hardware_concurrency();
  if (count == 0) count = 1;
  std::string name = opts.name.empty() ? "sample" : opts.name;

  // A peer that resets while we write must not kill the process (Asio sends with MSG_NOSIGNAL;
  // this covers any other path).
  std::signal(SIGPIPE, SIG_IGN);
  // Registered before any worker thread exists, so a stop signal is never handled by default.
  asio::io_context signals_ioc(1);
  asio::signal_set signals(signals_ioc, SIGINT, SIGTERM);

  if (endpoint->port() != 0) {
    if (auto ec = check_port_free(*endpoint)) {
      core::log_error("sample-service: cannot listen on {}: {}", opts.listen, ec.message());
      return 1;
    }
  }

  SharedState shared(FaultSnapshot{opts.error_rate, opts.latency, true});
  std::vector<std::unique_ptr<Worker>> workers;
  std::string bound;
  try {
    for (unsigned i = 0; i < count; ++i) {
      workers.push_back(std::make_unique<Worker>(shared, i));
      workers.back()->listen(*endpoint);
      // With port 0 the first bind picks the port; the other workers share it (SO_REUSEPORT).
      if (i == 0) endpoint = workers[0]->local_endpoint();
    }
    bound = endpoint_text(*endpoint);
  } catch (const std::system_error& e) {
    core::log_error("sample-service: cannot listen on {}: {}", opts.listen, e.code().message());
    return 1;
  }
  std::string instance = opts.instance;
  if (instance.empty()) instance = name + "@" + (hp->port == 0 ? bound : opts.listen);
  shared.identify(name, opts.city, opts.zone, instance);
  for (auto& w : workers) shared.workers.push_back(w.get());

  std::unique_ptr<Registration> registration;
  if (!opts.control_plane.empty()) {
    RegistrationOptions ro;
    ro.control_plane = opts.control_plane;
    ro.token_file = opts.token_file;
    ro.ca_file = opts.ca_file;
    ro.service = name;
    ro.id = instance;
    ro.city = opts.city;
    ro.zone = opts.zone;
    ro.weight = opts.weight;
    ro.ttl = opts.ttl;
    ro.facts = to_json(read_host_facts(opts.version));
    ro.address = opts.advertise;
    if (ro.address.empty()) {
      ro.address = bound;
      if (endpoint->address().is_unspecified()) {
        ro.address = core::HostPort{"127.0.0.1", endpoint->port()}.to_string();
        core::log_warn("--listen {} is a wildcard address: registering {} (use --advertise)",
                       opts.listen, ro.address);
      }
    }
    try {
      registration = std::make_unique<Registration>(std::move(ro));
    } catch (const std::invalid_argument& e) {
      core::log_error("sample-service: {}", e.what());
      return 2;
    }
  }

  std::unique_ptr<Caller> caller;
  if (!opts.calls.empty()) {
    CallerOptions co;
    co.gateway = opts.gateway;
    co.service = name;
    co.targets = opts.calls;
    co.interval = opts.call_interval;
    co.count = opts.call_count;
    try {
      caller = std::make_unique<Caller>(std::move(co));
    } catch (const std::invalid_argument& e) {
      core::log_error("sample-service: {}", e.what());
      return 2;
    }
  }

  std::vector<std::thread> threads;
  for (auto& w : workers) {
    w->start();
    threads.emplace_back([&w] { w->run(); });
  }
  if (registration) registration->start();
  if (caller) caller->start();
  core::log_info(
      "sample-service {} (city {}, zone {}, instance {}) listening on {} with {} worker(s)", name,
      opts.city, opts.zone, instance, bound, count);

  signals.async_wait([&](std::error_code ec, int signo) {
    if (!ec) core::log_info("sample-service: signal {}, stopping", signo);
    // Out of the pushed endpoint sets before the port closes.
    if (caller) caller->stop();
    if (registration) registration->stop();
    for (auto& w : workers) w->request_stop();
  });
  signals_ioc.run();
  for (auto& t : threads) t.join();
  core::log_info("sample-service: stopped");
  return 0;
}

}  // namespace sluice::sample
