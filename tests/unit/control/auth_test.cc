#include "control/auth.h"

#include <sys/stat.h>
#include <unistd.h>

#include <filesystem>
#include <fstream>

#include <gtest/gtest.h>

namespace sluice::control {
namespace {

class TempDir {
 public:
  TempDir() {
    char tmpl[] = "/tmp/sluice-auth-test-XXXXXX";
    path_ = mkdtemp(tmpl);
  }
  ~TempDir() { std::filesystem::remove_all(path_); }
  std::string file(const std::string& name) const { return path_ + "/" + name; }

 private:
  std::string path_;
};

TEST(Tokens, HashIsHexSha256) {
  EXPECT_EQ(hash_token("abc"), "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad");
}

TEST(Tokens, RandomTokensAre32BytesOfHex) {
  std::string a = random_token();
  std::string b = random_token();
  EXPECT_EQ(a.size(), 64u);
  EXPECT_EQ(a.find_first_not_of("0123456789abcdef"), std::string::npos);
  EXPECT_NE(a, b);
}

TEST(Roles, NamesRoundTripAndOrder) {
  for (Role r : {Role::kViewer, Role::kOperator, Role::kAdmin}) {
    EXPECT_EQ(parse_role(role_name(r)), r);
  }
  EXPECT_FALSE(parse_role("root"));
  EXPECT_LT(static_cast<int>(Role::kViewer), static_cast<int>(Role::kOperator));
  EXPECT_LT(static_cast<int>(Role::kOperator), static_cast<int>(Role::kAdmin));
}

class AuthTest : public ::testing::Test {
 protected:
  std::unique_ptr<Store> store_ = Store::open("sqlite::memory:");
  int64_t now_ = 1'700'000'000'000;
  Auth auth_{*store_, [this] { return now_; }};
};

TEST_F(AuthTest, MissingMalformedAndUnknownTokensAre401) {
  EXPECT_EQ(auth_.check("", Role::kViewer).status, 401);
  EXPECT_EQ(auth_.check("Basic dXNlcjpwdw==", Role::kViewer).status, 401);
  EXPECT_EQ(auth_.check("Bearer", Role::kViewer).status, 401);
  AuthResult r = auth_.check("Bearer " + random_token(), Role::kViewer);
  EXPECT_EQ(r.status, 401);
  EXPECT_EQ(r.error, "unknown token");
}

TEST_F(AuthTest, RolesAreOrdered) {
  IssuedToken viewer = auth_.issue("dashboards", Role::kViewer);
  IssuedToken op = auth_.issue("deployer", Role::kOperator);
  IssuedToken admin = auth_.issue("root", Role::kAdmin);
  // The store holds the hash only.
  EXPECT_EQ(store_->find_token(hash_token(viewer.token))->name, "dashboards");
  EXPECT_NE(viewer.record.hash, viewer.token);

  EXPECT_TRUE(auth_.check("Bearer " + viewer.token, Role::kViewer).ok());
  AuthResult denied = auth_.check("Bearer " + viewer.token, Role::kOperator);
  EXPECT_EQ(denied.status, 403);
  EXPECT_NE(denied.error.find("'operator' is required"), std::string::npos);
  EXPECT_TRUE(auth_.check("bearer  " + op.token + " ", Role::kOperator).ok());
  EXPECT_EQ(auth_.check("Bearer " + op.token, Role::kAdmin).status, 403);
  AuthResult a = auth_.check("Bearer " + admin.token, Role::kAdmin);
  ASSERT_TRUE(a.ok());
  EXPECT_EQ(a.who.name, "root");
  EXPECT_EQ(a.who.role, Role::kAdmin);
  EXPECT_EQ(a.who.token_id, admin.record.id);
}

TEST_F(AuthTest, RevokedTokensStopWorking) {
  IssuedToken t = auth_.issue("ci", Role::kOperator);
  ASSERT_TRUE(auth_.check("Bearer " + t.token, Role::kOperator).ok());  // now cached
  EXPECT_TRUE(auth_.revoke(t.record.id));
  EXPECT_EQ(auth_.check("Bearer " + t.token, Role::kViewer).status, 401);
  EXPECT_FALSE(auth_.revoke(t.record.id));
}

TEST_F(AuthTest, BootstrapCreatesTheFileOnceWithMode0600) {
  TempDir dir;
  const std::string path = dir.file("admin.token");
  BootstrapResult first = bootstrap_admin_token(*store_, path, now_);
  EXPECT_TRUE(first.created);
  EXPECT_TRUE(first.registered);
  struct stat st {};
  ASSERT_EQ(::stat(path.c_str(), &st), 0);
  EXPECT_EQ(st.st_mode & 0777, 0600);
  EXPECT_TRUE(auth_.check("Bearer " + first.token, Role::kAdmin).ok());

  BootstrapResult again = bootstrap_admin_token(*store_, path, now_);
  EXPECT_FALSE(again.created);
  EXPECT_FALSE(again.registered);
  EXPECT_EQ(again.token, first.token);
  EXPECT_EQ(store_->token_count(), 1u);
}

TEST_F(AuthTest, BootstrapRegistersAnExistingFileInAFreshStore) {
  TempDir dir;
  const std::string path = dir.file("admin.token");
  std::ofstream(path) << "my-preset-token\n";
  BootstrapResult r = bootstrap_admin_token(*store_, path, now_);
  EXPECT_FALSE(r.created);
  EXPECT_TRUE(r.registered);
  EXPECT_EQ(r.token, "my-preset-token");
  EXPECT_TRUE(auth_.check("Bearer my-preset-token", Role::kAdmin).ok());
}

TEST_F(AuthTest, BootstrapRefusesAMalformedFile) {
  TempDir dir;
  const std::string path = dir.file("admin.token");
  std::ofstream(path) << "two words\n";
  EXPECT_THROW(bootstrap_admin_token(*store_, path, now_), std::runtime_error);
  EXPECT_THROW(bootstrap_admin_token(*store_, dir.file("missing-dir/admin.token"), now_),
               std::runtime_error);
}

}  // namespace
}  // namespace sluice::control
