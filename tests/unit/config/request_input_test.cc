#include "config/request_input.h"

#include <gtest/gtest.h>

namespace sluice::config {
namespace {

using Kind = RequestInput::Kind;

std::optional<RequestInput> parse(std::string_view text, const RequestInputSyntax& syntax,
                                  std::string* error = nullptr) {
  std::string e;
  auto in = parse_request_input(text, syntax, e);
  if (error != nullptr) *error = e;
  return in;
}

std::string error_of(std::string_view text, const RequestInputSyntax& syntax) {
  std::string e;
  EXPECT_FALSE(parse(text, syntax, &e)) << text;
  return e;
}

TEST(RequestInput, EveryFormPrintsBackToWhatParses) {
  const RequestInputSyntax* all[] = {&kHashOnSyntax, &kRateKeySyntax, &kPriorityKeySyntax,
                                     &kUnitKeySyntax};
  for (const char* text : {"header:x-customer-id", "query:Cid", "path_segment:2", "path",
                           "client_ip", "route", "service", "method"}) {
    bool somewhere = false;
    for (const RequestInputSyntax* syntax : all) {
      auto in = parse(text, *syntax);
      if (!in) continue;
      somewhere = true;
      EXPECT_EQ(to_string(*in), text);
      EXPECT_EQ(parse(to_string(*in), *syntax), in) << text;
    }
    EXPECT_TRUE(somewhere) << text;
  }
  EXPECT_EQ(to_string(RequestInput{}), "");
}

TEST(RequestInput, HeaderNamesAreLowerCasedQueryNamesKeepCase) {
  auto h = parse("header:X-Customer-Id", kUnitKeySyntax);
  ASSERT_TRUE(h);
  EXPECT_EQ(h->kind, Kind::kHeader);
  EXPECT_EQ(h->name, "x-customer-id");
  auto q = parse("query:Cid", kUnitKeySyntax);
  ASSERT_TRUE(q);
  EXPECT_EQ(q->kind, Kind::kQuery);
  EXPECT_EQ(q->name, "Cid");
  auto s = parse("path_segment:1000", kUnitKeySyntax);
  ASSERT_TRUE(s);
  EXPECT_EQ(s->kind, Kind::kPathSegment);
  EXPECT_EQ(s->segment, 1000u);
}

// Each setting accepts its own forms only, and says which in its own order.
TEST(RequestInput, EachSettingItsOwnFormsAndMessage) {
  EXPECT_EQ(error_of("route", kHashOnSyntax),
            "must be header:NAME, query:NAME, client_ip or path, got 'route'");
  EXPECT_EQ(error_of("path", kRateKeySyntax),
            "must be client_ip, route, service, method, header:NAME or query:NAME, got 'path'");
  EXPECT_EQ(error_of("client_ip", kPriorityKeySyntax),
            "must be header:NAME or query:NAME, got 'client_ip'");
  EXPECT_EQ(error_of("path_segment:x", kUnitKeySyntax),
            "must be header:NAME, query:NAME or path_segment:N, got 'path_segment:x'");
  EXPECT_FALSE(parse("path_segment:2", kHashOnSyntax));
  EXPECT_FALSE(parse("method", kUnitKeySyntax));
}

TEST(RequestInput, BadNamesAndNumbersAreRefused) {
  for (const char* text : {"header:", "header:a b", "header:a:b", "header", "query:", "query:a=b",
                           "query:a&b", "query:a#b", "cookie:sid", "Header:x", " client_ip"}) {
    EXPECT_FALSE(parse(text, kRateKeySyntax)) << text;
  }
  EXPECT_EQ(error_of("path_segment:0", kUnitKeySyntax),
            "path_segment must be 1..1000 (segments count from 1: in /users/42, segment 2 is 42), "
            "got 0");
  EXPECT_EQ(error_of("path_segment:99999999999999999999999", kUnitKeySyntax),
            "path_segment must be 1..1000 (segments count from 1: in /users/42, segment 2 is 42), "
            "got 99999999999999999999999");
  EXPECT_FALSE(parse("path_segment:", kUnitKeySyntax));
  EXPECT_FALSE(parse("path_segment:-1", kUnitKeySyntax));
}

TEST(RequestInput, RateKeyPartsSuggestTheClosestPlainInput) {
  EXPECT_EQ(error_of("clientip", kRateKeySyntax),
            "must be client_ip, route, service, method, header:NAME or query:NAME, got "
            "'clientip' (did you mean 'client_ip'?)");
  // The other settings never did; their messages stay as they were.
  EXPECT_EQ(error_of("clientip", kHashOnSyntax),
            "must be header:NAME, query:NAME, client_ip or path, got 'clientip'");
}

}  // namespace
}  // namespace sluice::config
