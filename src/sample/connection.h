// One accepted sample-service connection: reads requests through the HTTP/1 codec, answers them
// in order (keep-alive, pipelining), streams bodies both ways with backpressure, and never holds
// more than one read buffer of body bytes.
#pragma once

#include <asio.hpp>
#include <chrono>
#include <cstdint>
#include <memory>
#include <string>

#include "http/parser.h"
#include "sample/request_target.h"

namespace sluice::sample {

class Worker;
struct SharedState;

class Connection final : public http::MessageSink, public std::enable_shared_from_this<Connection> {
 public:
  static constexpr size_t kReadBufferSize = 16 * 1024;
  // Pipelined answers are gathered and written together; past this much they are written first.
  static constexpr size_t kFlushThreshold = 64 * 1024;
  static constexpr size_t kMaxControlBody = 64 * 1024;  // POST /_sample/faults

  Connection(Worker& worker, asio::ip::tcp::socket socket);
  ~Connection() override;

  static void start(std::shared_ptr<Connection> c);
  void close();  // worker thread only; the coroutine ends soon after

  void on_head(http::MessageHead& head) override;
  void on_body(std::string_view data) override;
  void on_complete() override;

  Connection* prev_ = nullptr;  // Worker's intrusive list
  Connection* next_ = nullptr;

 private:
  enum class Action { kDone, kWait, kBytes, kClose };
  enum class EchoMode { kOff, kLength, kChunked, kUntilClose };
  static constexpr int64_t kChunked = -1;   // append_head: Transfer-Encoding: chunked
  static constexpr int64_t kNoLength = -2;  // append_head: no framing header (204, 304, close)

  asio::awaitable<void> run(std::shared_ptr<Connection> self);
  asio::awaitable<bool> flush();
  asio::awaitable<bool> stream_bytes(uint64_t n, bool chunked);
  asio::awaitable<void> linger_close();

  Action dispatch();
  void answer_any(int status);  // the JSON description of the request, status 0 = 200
  void answer_json(int status, std::string_view body, std::string_view extra_headers = {});
  void append_head(int status, std::string_view content_type, int64_t length,
                   std::string_view extra_headers = {});
  bool method_is(std::string_view m);
  void reset_request();

  Worker& worker_;
  SharedState& shared_;
  asio::ip::tcp::socket socket_;
  asio::steady_timer timer_;
  http::Parser parser_;
  std::unique_ptr<char[]> rbuf_;
  size_t rpos_ = 0;
  size_t rlen_ = 0;
  std::string out_;        // answers not written yet; reused
  std::string scratch_;    // a JSON body being built; reused
  std::string collected_;  // body of a control request

  // The request being read.
  Route route_;
  uint64_t body_bytes_ = 0;
  bool head_method_ = false;
  bool keep_alive_ = true;
  bool http10_ = false;
  bool echo_headers_ = false;
  bool started_ = false;  // an answer to this request has been queued (echo streams early)
  bool collect_ = false;
  bool collect_overflow_ = false;
  EchoMode echo_ = EchoMode::kOff;

  // What dispatch() asked run() to do.
  std::chrono::nanoseconds wait_{0};
  int wait_status_ = 0;  // answer_any() status after the wait; -1 = with fault injection
  uint64_t bytes_n_ = 0;
  bool bytes_chunked_ = false;
  bool closed_ = false;
};

}  // namespace sluice::sample
