#include "router/request_input.h"

#include <gtest/gtest.h>

namespace sluice::router {
namespace {

using config::RequestInput;
using Kind = RequestInput::Kind;

RequestInput input(Kind kind, std::string name = "", uint32_t segment = 0) {
  RequestInput in;
  in.kind = kind;
  in.name = std::move(name);
  in.segment = segment;
  return in;
}

TEST(RequestInputValue, EveryKind) {
  http::HeaderMap headers;
  headers.add("X-App-Id", "app-1");
  headers.add("x-app-id", "app-2");
  headers.add("x-empty", "");
  RequestInputs r;
  r.method = "POST";
  r.path = "/users/42/orders";
  r.query = "cid=7&t=&cid=8";
  r.headers = &headers;
  r.client_ip = "10.0.0.1";
  r.route = "orders";
  r.service = "accounts";

  EXPECT_EQ(input_value(input(Kind::kHeader, "x-app-id"), r), "app-1");  // first value
  EXPECT_EQ(input_value(input(Kind::kHeader, "x-empty"), r), "");        // present, empty
  EXPECT_EQ(input_value(input(Kind::kHeader, "x-absent"), r), std::nullopt);
  EXPECT_EQ(input_value(input(Kind::kQuery, "cid"), r), "7");  // first occurrence
  EXPECT_EQ(input_value(input(Kind::kQuery, "t"), r), "");
  EXPECT_EQ(input_value(input(Kind::kQuery, "absent"), r), std::nullopt);
  EXPECT_EQ(input_value(input(Kind::kPathSegment, "", 2), r), "42");
  EXPECT_EQ(input_value(input(Kind::kPathSegment, "", 4), r), std::nullopt);
  EXPECT_EQ(input_value(input(Kind::kPath), r), "/users/42/orders");
  EXPECT_EQ(input_value(input(Kind::kClientIp), r), "10.0.0.1");
  EXPECT_EQ(input_value(input(Kind::kRoute), r), "orders");
  EXPECT_EQ(input_value(input(Kind::kService), r), "accounts");
  EXPECT_EQ(input_value(input(Kind::kMethod), r), "POST");
  EXPECT_EQ(input_value(input(Kind::kNone), r), std::nullopt);

  RequestInputs no_headers;
  EXPECT_EQ(input_value(input(Kind::kHeader, "x-app-id"), no_headers), std::nullopt);
}

TEST(RequestInputValue, PathSegmentsArePositional) {
  EXPECT_EQ(path_segment("/a/b/c", 1), "a");
  EXPECT_EQ(path_segment("/a/b/c", 3), "c");
  EXPECT_EQ(path_segment("/a/b/c", 4), std::nullopt);
  EXPECT_EQ(path_segment("//x", 1), "");
  EXPECT_EQ(path_segment("//x", 2), "x");
  EXPECT_EQ(path_segment("/a/", 2), "");
  EXPECT_EQ(path_segment("/a", 0), std::nullopt);
}

}  // namespace
}  // namespace sluice::router
