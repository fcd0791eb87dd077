#include "governance/redis_link.h"

#include <hiredis/hiredis.h>
#include <sys/time.h>

#include <algorithm>
#include <charconv>

#include "core/random.h"

namespace sluice::governance {

namespace {

using std::chrono::nanoseconds;

constexpr nanoseconds kMaxBackoff = std::chrono::seconds(1);
constexpr nanoseconds kMinBackoff = std::chrono::milliseconds(25);
// A bulk string or an array longer than this is refused by the parser before it allocates: the
// quota scripts answer a few integers, a SHA or an error line.
constexpr size_t kMaxBulk = 64 * 1024;
constexpr int kMaxArray = 1024;

int64_t real_ns() {
  return std::chrono::steady_clock::now().time_since_epoch().count();
}

timeval to_timeval(nanoseconds d) {
  auto us = std::max<int64_t>(1, std::chrono::duration_cast<std::chrono::microseconds>(d).count());
  timeval tv{};
  tv.tv_sec = static_cast<time_t>(us / 1'000'000);
  tv.tv_usec = static_cast<suseconds_t>(us % 1'000'000);
  return tv;
}

// hiredis 0.14 has no size limits of its own: an array header of 2^31 elements allocates its
// table before a single element arrives. These wrappers refuse such replies (the reader then
// fails, and so does the round trip) and otherwise build hiredis's own reply objects.
const redisReplyObjectFunctions* g_default_fns = nullptr;

void* bounded_string(const redisReadTask* t, char* s, size_t len) {
  if (len > kMaxBulk) return nullptr;
  return g_default_fns->createString(t, s, len);
}
void* bounded_array(const redisReadTask* t, int n) {
  if (n < 0 || n > kMaxArray) return nullptr;
  return g_default_fns->createArray(t, n);
}
void* default_integer(const redisReadTask* t, long long v) {
  return g_default_fns->createInteger(t, v);
}
void* default_nil(const redisReadTask* t) {
  return g_default_fns->createNil(t);
}
void default_free(void* p) {
  g_default_fns->freeObject(p);
}
redisReplyObjectFunctions g_bounded_fns = {bounded_string, bounded_array, default_integer,
                                           default_nil, default_free};

void install_bounds(redisContext* c) {
  // Every context starts with hiredis's one static table of default functions.
  static const bool once = [c] {
    g_default_fns = c->reader->fn;
    return true;
  }();
  (void)once;
  if (c->reader->fn == g_default_fns) c->reader->fn = &g_bounded_fns;
}

bool parse_int(const char* s, size_t len, int64_t* out) {
  if (len == 0 || len > 24) return false;
  auto [end, ec] = std::from_chars(s, s + len, *out);
  return ec == std::errc() && end == s + len;
}

RedisReply convert(const redisReply* r) {
  RedisReply out;
  if (r == nullptr) return out;
  switch (r->type) {
    case REDIS_REPLY_INTEGER:
      out.type = RedisReply::Type::kInteger;
      out.integer = r->integer;
      break;
    case REDIS_REPLY_NIL:
      out.type = RedisReply::Type::kNil;
      break;
    case REDIS_REPLY_STRING:
    case REDIS_REPLY_STATUS:
    case REDIS_REPLY_ERROR:
      out.type = r->type == REDIS_REPLY_STRING   ? RedisReply::Type::kString
                 : r->type == REDIS_REPLY_STATUS ? RedisReply::Type::kStatus
                                                 : RedisReply::Type::kError;
      // An error's text is kept cut (only its first word matters); any other long string is
      // not an answer of ours.
      if (r->len > RedisReply::kMaxText && out.type != RedisReply::Type::kError) {
        out.type = RedisReply::Type::kOther;
        break;
      }
      out.text.assign(r->str, std::min<size_t>(r->len, RedisReply::kMaxText));
      break;
    case REDIS_REPLY_ARRAY:
      out.type = RedisReply::Type::kArray;
      if (r->elements > RedisReply::kMaxElements) {
        out.type = RedisReply::Type::kOther;
        break;
      }
      for (size_t i = 0; i < r->elements; ++i) {
        const redisReply* e = r->element[i];
        int64_t v = 0;
        if (e != nullptr && e->type == REDIS_REPLY_INTEGER) {
          v = e->integer;
        } else if (e == nullptr || e->type != REDIS_REPLY_STRING ||
                   !parse_int(e->str, e->len, &v)) {
          out.type = RedisReply::Type::kOther;
          out.count = 0;
          break;
        }
        out.elements[out.count++] = v;
      }
      break;
    default:
      out.type = RedisReply::Type::kOther;
  }
  return out;
}

}  // namespace

RedisLink::RedisLink(Options o, const core::Clock& clock) : options_(std::move(o)), clock_(clock) {
  if (options_.timeout <= nanoseconds(0)) options_.timeout = std::chrono::milliseconds(20);
  if (options_.max_reply_bytes == 0) options_.max_reply_bytes = 4 * 1024;
}

RedisLink::~RedisLink() {
  disconnect();
}

int64_t RedisLink::connect_wait_ns() const {
  return std::max<int64_t>(0, next_connect_ns_ - real_ns());
}

bool RedisLink::connect() {
  if (ctx_ != nullptr) return true;
  if (real_ns() < next_connect_ns_) return false;
  const timeval tv = to_timeval(options_.timeout);
  redisContext* c =
      redisConnectWithTimeout(options_.address.host.c_str(), options_.address.port, tv);
  if (c == nullptr || c->err != 0) {
    if (c != nullptr) redisFree(c);
    fail();
    return false;
  }
  redisSetTimeout(c, tv);
  install_bounds(c);
  ctx_ = c;

  std::vector<Call> calls(options_.scripts.size());
  for (size_t i = 0; i < calls.size(); ++i) calls[i].args = {"SCRIPT", "LOAD", options_.scripts[i]};
  if (!round_trip(calls)) return false;
  shas_.clear();
  for (auto& call : calls) {
    if (call.reply.type != RedisReply::Type::kString) {
      fail();
      return false;
    }
    shas_.push_back(call.reply.text);
  }
  if (connected_once_) reconnects_.fetch_add(1, std::memory_order_relaxed);
  connected_once_ = true;
  backoff_ = nanoseconds(0);
  up_.store(true, std::memory_order_release);
  return true;
}

void RedisLink::disconnect() {
  up_.store(false, std::memory_order_release);
  if (ctx_ != nullptr) redisFree(ctx_);
  ctx_ = nullptr;
}

void RedisLink::fail() {
  errors_.fetch_add(1, std::memory_order_relaxed);
  disconnect();
  backoff_ = backoff_ == nanoseconds(0) ? kMinBackoff : std::min(backoff_ * 2, kMaxBackoff);
  // Jitter so that gateways that lost Redis together do not come back in lockstep.
  const auto jitter = static_cast<int64_t>(
      core::thread_rng().uniform(static_cast<uint64_t>(backoff_.count() / 4 + 1)));
  next_connect_ns_ = real_ns() + backoff_.count() + jitter;
}

RedisLink::Call RedisLink::evalsha(size_t script, std::string key,
                                   std::vector<std::string> args) const {
  Call call;
  call.args.reserve(4 + args.size());
  call.args.push_back("EVALSHA");
  call.args.push_back(script < shas_.size() ? shas_[script] : std::string());
  call.args.push_back("1");
  call.args.push_back(std::move(key));
  for (auto& a : args) call.args.push_back(std::move(a));
  return call;
}

// redisGetReply's blocking loop, with two bounds it lacks: the bytes buffered while replies are
// incomplete, and the time of the whole round trip (each read is bounded by the socket timeout,
// but a peer that drips a byte at a time would never trip it).
bool RedisLink::read_reply(void** reply, int64_t deadline_ns, size_t max_buffered) {
  *reply = nullptr;
  if (redisGetReplyFromReader(ctx_, reply) != REDIS_OK) return false;
  while (*reply == nullptr) {
    if (real_ns() > deadline_ns) return false;
    if (redisBufferRead(ctx_) != REDIS_OK) return false;
    if (ctx_->reader->len - ctx_->reader->pos > max_buffered) return false;
    if (redisGetReplyFromReader(ctx_, reply) != REDIS_OK) return false;
  }
  return true;
}

bool RedisLink::round_trip(std::vector<Call>& calls) {
  if (ctx_ == nullptr || calls.empty()) return ctx_ != nullptr;
  std::vector<const char*> argv;
  std::vector<size_t> lens;
  for (auto& call : calls) {
    call.reply = RedisReply{};
    argv.clear();
    lens.clear();
    for (auto& a : call.args) {
      argv.push_back(a.data());
      lens.push_back(a.size());
    }
    redisAppendCommandArgv(ctx_, static_cast<int>(argv.size()), argv.data(), lens.data());
  }
  calls_.fetch_add(calls.size(), std::memory_order_relaxed);
  busy_since_.store(std::max<int64_t>(1, clock_.now().time_since_epoch().count()),
                    std::memory_order_relaxed);
  // Each read waits at most `timeout`; the whole round trip at most ten of them (at least 1 s),
  // so a long pipeline on a busy machine still completes.
  const int64_t deadline =
      real_ns() + std::max<int64_t>(10 * options_.timeout.count(), 1'000'000'000);
  const size_t max_buffered = calls.size() * options_.max_reply_bytes;
  bool ok = true;
  int done = 0;
  while (ok && done == 0) ok = redisBufferWrite(ctx_, &done) == REDIS_OK;
  for (size_t i = 0; ok && i < calls.size(); ++i) {
    void* r = nullptr;
    ok = read_reply(&r, deadline, max_buffered);
    if (r != nullptr) {
      calls[i].reply = convert(static_cast<redisReply*>(r));
      freeReplyObject(r);
    }
  }
  busy_since_.store(0, std::memory_order_relaxed);
  if (!ok) fail();
  return ok;
}

}  // namespace sluice::governance
