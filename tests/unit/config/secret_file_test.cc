#include "config/secret_file.h"

#include <gtest/gtest.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cstdio>
#include <cstdlib>
#include <fstream>
#include <string>

namespace sluice::config {
namespace {

class SecretFileTest : public ::testing::Test {
 protected:
  void SetUp() override {
    char tmpl[] = "/tmp/secret_file_test.XXXXXX";
    ASSERT_NE(::mkdtemp(tmpl), nullptr);
    dir_ = tmpl;
  }
  void TearDown() override {
    std::string cmd = "rm -rf " + dir_;
    ASSERT_EQ(std::system(cmd.c_str()), 0);
  }
  std::string write(const std::string& name, const std::string& text, mode_t mode = 0600) {
    std::string path = dir_ + "/" + name;
    std::ofstream(path, std::ios::binary) << text;
    ::chmod(path.c_str(), mode);
    return path;
  }
  std::string dir_;
};

TEST_F(SecretFileTest, TrimsAndChecksLengthBounds) {
  std::string error;
  auto s = read_secret_file(write("ok", "\n  " + std::string(32, 'a') + "\r\n"), &error);
  ASSERT_TRUE(s) << error;
  EXPECT_EQ(s->secret, std::string(32, 'a'));
  EXPECT_FALSE(s->others_can_read);
  EXPECT_EQ(s->mode, 0600u);
  EXPECT_TRUE(read_secret_file(write("max", std::string(512, 'z')), &error));
  EXPECT_FALSE(read_secret_file(write("short", std::string(31, 'a')), &error));
  EXPECT_NE(error.find("has 31 characters"), std::string::npos) << error;
  EXPECT_FALSE(read_secret_file(write("long", std::string(513, 'a')), &error));
  EXPECT_FALSE(read_secret_file(write("empty", " \n\t"), &error));
  EXPECT_NE(error.find("is empty"), std::string::npos) << error;
}

TEST_F(SecretFileTest, OneTokenOfPrintableAscii) {
  std::string error;
  for (std::string bad : {std::string(20, 'a') + " " + std::string(20, 'b'),
                          std::string(20, 'a') + "\n" + std::string(20, 'b'),
                          std::string(40, 'a') + "\x01", std::string(40, 'a') + "\xc3\xa9"}) {
    EXPECT_FALSE(read_secret_file(write("bad", bad), &error)) << bad;
    EXPECT_NE(error.find("printable ASCII"), std::string::npos) << error;
  }
}

TEST_F(SecretFileTest, NotAFileTooBigMissingAndLooseModes) {
  std::string error;
  EXPECT_FALSE(read_secret_file(dir_, &error));
  EXPECT_NE(error.find("not a regular file"), std::string::npos) << error;
  EXPECT_FALSE(read_secret_file(dir_ + "/missing", &error));
  EXPECT_NE(error.find("No such file"), std::string::npos) << error;
  EXPECT_FALSE(read_secret_file(write("big", std::string(kMaxSecretFileBytes + 1, 'a')), &error));
  auto s = read_secret_file(write("group", std::string(40, 'a'), 0640), &error);
  ASSERT_TRUE(s) << error;
  EXPECT_TRUE(s->others_can_read);
  s = read_secret_file(write("world", std::string(40, 'a'), 0604), &error);
  ASSERT_TRUE(s) << error;
  EXPECT_TRUE(s->others_can_read);
}

}  // namespace
}  // namespace sluice::config
