#include "gateway/request_state.h"

#include <gtest/gtest.h>

#include "core/reused.h"

namespace sluice::gateway {
namespace {

TEST(ReusedTest, AssignmentCopiesIntoExistingStorage) {
  core::ReusedString a, b;
  a.assign(200, 'x');
  const char* storage = a.data();
  b = "short";
  a = b;
  EXPECT_EQ(a, "short");
  EXPECT_EQ(a.data(), storage);
  a = core::ReusedString{};
  EXPECT_TRUE(a.empty());
  EXPECT_EQ(a.data(), storage) << "a reset keeps the capacity";
  EXPECT_GE(a.capacity(), 200u);
  core::ReusedVector<uint32_t> v;
  v.assign(50, 7);
  const uint32_t* vs = v.data();
  v = core::ReusedVector<uint32_t>{};
  EXPECT_TRUE(v.empty());
  EXPECT_EQ(v.data(), vs);
}

// A request that has used everything: counters, flags, buffers, unit routing.
RequestState busy_request() {
  RequestState r;
  r.in_request = r.req_done = r.req_chunked = r.req_has_body = true;
  r.client_keep_alive = false;
  r.client_http10 = r.head_request = r.idempotent = r.local_reply = true;
  r.method = "DELETE";
  r.target = "/a/b?c";
  r.original_target = "/a/./b?c";
  r.request_id = "id";
  r.user_agent = "ua";
  r.bytes_in = r.bytes_out = 10;
  r.body_timed = r.buffering = r.continue_sent = r.total_expired = true;
  r.total_deadline = core::MonoTime{};
  r.up_out.assign(300, 'u');
  r.replay.assign(300, 'r');
  r.replayable = false;
  r.up_connected = r.up_writing = r.retrying = r.up_reused = r.connect_error = true;
  r.free_retries = 2;
  r.stale_retried = r.counted_active = true;
  r.endpoint = 3;
  r.tried = {1, 2, 3};
  r.hash = 99;
  r.has_hash = true;
  r.attempts = 3;
  r.upstream_seconds = 1.5;
  r.resp_head_sent = r.resp_on_wire = r.resp_done = r.resp_interim = true;
  r.resp_chunked_out = r.resp_keep_alive = r.resp_got_bytes = r.up_extra_bytes = true;
  r.up_body_stopped = r.resp_bad_101 = true;
  r.up_error = "bytes_after_response";
  r.status = 502;
  r.retry_status = 503;
  r.gov_failure = r.gov_dropped = r.pending_held = true;
  r.unit_city = "b";
  r.forward = r.direct = r.held = r.unit_has_key = r.unit_hop = r.unit_loop = true;
  r.replay_head_bytes = 40;
  r.hop_in = "b,c";
  r.unit_shard = 75;
  r.held_head = std::make_unique<http::MessageHead>();
  return r;
}

TEST(RequestStateTest, OneAssignmentResetsEveryFieldAndKeepsBuffers) {
  RequestState r = busy_request();
  const char* up_out = r.up_out.data();
  const char* replay = r.replay.data();
  r = RequestState{};
  const RequestState fresh;
  EXPECT_EQ(r.in_request, fresh.in_request);
  EXPECT_TRUE(r.client_keep_alive);
  EXPECT_FALSE(r.head_request || r.req_done || r.local_reply || r.idempotent);
  EXPECT_TRUE(r.method.empty() && r.target.empty() && r.original_target.empty());
  EXPECT_TRUE(r.request_id.empty() && r.user_agent.empty());
  EXPECT_EQ(r.bytes_in + r.bytes_out, 0u);
  EXPECT_EQ(r.total_deadline, core::MonoTime::max());
  EXPECT_TRUE(r.up_out.empty() && r.replay.empty() && r.tried.empty());
  EXPECT_TRUE(r.replayable);
  EXPECT_EQ(r.free_retries, 0u);
  EXPECT_FALSE(r.stale_retried || r.counted_active || r.retrying || r.pending_held);
  EXPECT_EQ(r.endpoint, -1);
  EXPECT_EQ(r.attempts, 0);
  EXPECT_FALSE(r.has_hash);
  EXPECT_EQ(r.upstream_seconds, -1);
  EXPECT_FALSE(r.resp_head_sent || r.resp_on_wire || r.resp_done || r.resp_interim);
  EXPECT_FALSE(r.up_body_stopped || r.resp_bad_101 || r.up_extra_bytes);
  EXPECT_EQ(r.up_error, nullptr);
  EXPECT_EQ(r.status, 0);
  EXPECT_EQ(r.retry_status, 0);
  EXPECT_FALSE(r.gov_failure || r.gov_dropped);
  EXPECT_FALSE(r.forward || r.direct || r.held || r.unit_has_key || r.unit_hop || r.unit_loop);
  EXPECT_TRUE(r.unit_city.empty() && r.hop_in.empty());
  EXPECT_EQ(r.held_head, nullptr);
  // The buffers a connection grew serve the next request without allocating.
  EXPECT_EQ(r.up_out.data(), up_out);
  EXPECT_EQ(r.replay.data(), replay);
}

}  // namespace
}  // namespace sluice::gateway
