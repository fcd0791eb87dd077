#include "core/address.h"

#include <gtest/gtest.h>

namespace sluice::core {
namespace {

TEST(ParseHostPort, Ipv4AndNames) {
  auto a = parse_host_port("127.0.0.1:8080");
  ASSERT_TRUE(a);
  EXPECT_EQ(a->host, "127.0.0.1");
  EXPECT_EQ(a->port, 8080);
  auto b = parse_host_port("localhost:80");
  ASSERT_TRUE(b);
  EXPECT_EQ(b->host, "localhost");
  EXPECT_EQ(b->port, 80);
  EXPECT_TRUE(parse_host_port("svc-1.ns_2.example.com:65535"));
}

TEST(ParseHostPort, Ipv6) {
  auto a = parse_host_port("[::1]:8080");
  ASSERT_TRUE(a);
  EXPECT_EQ(a->host, "::1");
  EXPECT_EQ(a->port, 8080);
  auto z = parse_host_port("[fe80::1%eth0]:80");
  ASSERT_TRUE(z);
  EXPECT_EQ(z->host, "fe80::1%eth0");
  EXPECT_TRUE(parse_host_port("[::ffff:10.0.0.1]:80"));
  // Unbracketed IPv6 is ambiguous.
  EXPECT_FALSE(parse_host_port("::1:8080"));
}

TEST(ParseHostPort, EmptyHostMeansAllInterfaces) {
  auto a = parse_host_port(":8080");
  ASSERT_TRUE(a);
  EXPECT_EQ(a->host, "0.0.0.0");
  EXPECT_EQ(a->port, 8080);
}

TEST(ParseHostPort, Ports) {
  EXPECT_FALSE(parse_host_port("h:0"));
  auto zero = parse_host_port("h:0", /*allow_port_zero=*/true);
  ASSERT_TRUE(zero);
  EXPECT_EQ(zero->port, 0);
  EXPECT_EQ(parse_host_port("h:00080")->port, 80);
  for (const char* bad : {"h:65536", "h:99999", "h:123456", "h:", "h:-1", "h:+80", "h:8o", "h:80 ",
                          "h", "[::1]", "[::1]80", "[::1]:", "h:80:"}) {
    EXPECT_FALSE(parse_host_port(bad)) << "'" << bad << "'";
  }
}

// Used to be accepted and passed on to the resolver and logs as the host.
TEST(ParseHostPort, RejectsJunkInHost) {
  for (const char* bad : {"user@host:80", "a[b]:80", "host\n:80", "host?x:80", "a,b:80", "a b:80",
                          "a/b:80", "http://h:80", "[]:80", "[not-ipv6]:80", "[1.2.3.4]:80",
                          "[::1%]:80", "[::g]:80", "", ":"}) {
    EXPECT_FALSE(parse_host_port(bad)) << "'" << bad << "'";
  }
}

TEST(HostPort, ToStringRoundTrips) {
  for (const char* s : {"127.0.0.1:8080", "[::1]:8080", "localhost:1", "[fe80::1%eth0]:80"}) {
    auto a = parse_host_port(s);
    ASSERT_TRUE(a) << s;
    EXPECT_EQ(a->to_string(), s);
  }
  EXPECT_EQ(parse_host_port(":9")->to_string(), "0.0.0.0:9");
}

}  // namespace
}  // namespace sluice::core
