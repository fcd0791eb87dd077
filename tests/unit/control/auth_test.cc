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
  std::ofstream(path) << "my-preset-token-of-32-characters\n";
  ::chmod(path.c_str(), 0600);
  BootstrapResult r = bootstrap_admin_token(*store_, path, now_);
  EXPECT_FALSE(r.created);
  EXPECT_TRUE(r.registered);
  EXPECT_TRUE(r.warnings.empty());
  EXPECT_EQ(r.token, "my-preset-token-of-32-characters");
  EXPECT_TRUE(auth_.check("Bearer my-preset-token-of-32-characters", Role::kAdmin).ok());
}

TEST_F(AuthTest, BootstrapRefusesAMalformedFile) {
  TempDir dir;
  const std::string path = dir.file("admin.token");
  std::ofstream(path) << "two words\n";
  EXPECT_THROW(bootstrap_admin_token(*store_, path, now_), std::runtime_error);
  EXPECT_THROW(bootstrap_admin_token(*store_, dir.file("missing-dir/admin.token"), now_),
               std::runtime_error);
}

TEST_F(AuthTest, BootstrapRefusesTokensShorterThan32Characters) {
  TempDir dir;
  const std::string path = dir.file("admin.token");
  std::ofstream(path) << std::string(31, 'x') << "\n";
  try {
    bootstrap_admin_token(*store_, path, now_);
    FAIL() << "a 31-character token was accepted";
  } catch (const std::runtime_error& e) {
    EXPECT_NE(std::string(e.what()).find("has 31 characters, at least 32 are required"),
              std::string::npos)
        << e.what();
  }
  EXPECT_EQ(store_->token_count(), 0u);
  std::ofstream(path) << std::string(32, 'x') << "\n";
  EXPECT_TRUE(bootstrap_admin_token(*store_, path, now_).registered);
}

TEST_F(AuthTest, BootstrapWarnsAboutAFileOthersMayRead) {
  TempDir dir;
  const std::string path = dir.file("admin.token");
  std::ofstream(path) << random_token() << "\n";
  ASSERT_EQ(::chmod(path.c_str(), 0640), 0);
  BootstrapResult r = bootstrap_admin_token(*store_, path, now_);
  ASSERT_EQ(r.warnings.size(), 1u);
  EXPECT_NE(r.warnings[0].find("mode 0640: group or others may read it"), std::string::npos)
      << r.warnings[0];
  ASSERT_EQ(::chmod(path.c_str(), 0600), 0);
  EXPECT_TRUE(bootstrap_admin_token(*store_, path, now_).warnings.empty());
}

// The bug: revoke the bootstrap token with another admin token, restart, and the file registered
// it again.
TEST_F(AuthTest, ARevokedBootstrapTokenStaysRevokedAcrossRestarts) {
  TempDir dir;
  const std::string path = dir.file("admin.token");
  BootstrapResult boot = bootstrap_admin_token(*store_, path, now_);
  ASSERT_TRUE(boot.registered);
  IssuedToken other = auth_.issue("second-admin", Role::kAdmin);
  ASSERT_TRUE(auth_.revoke(store_->find_token(hash_token(boot.token))->id));
  EXPECT_TRUE(store_->token_revoked(hash_token(boot.token)));

  BootstrapResult again = bootstrap_admin_token(*store_, path, now_);  // "the restart"
  EXPECT_FALSE(again.registered);
  ASSERT_EQ(again.warnings.size(), 1u);
  EXPECT_NE(again.warnings[0].find("its token was revoked"), std::string::npos);
  EXPECT_EQ(auth_.check("Bearer " + boot.token, Role::kViewer).status, 401);
  EXPECT_TRUE(auth_.check("Bearer " + other.token, Role::kAdmin).ok());

  // With no token left at all, a revoked token in the file refuses the start.
  ASSERT_TRUE(auth_.revoke(other.record.id));
  EXPECT_THROW(bootstrap_admin_token(*store_, path, now_), std::runtime_error);
  // Removing the file is the way to a new admin token.
  ASSERT_EQ(::unlink(path.c_str()), 0);
  BootstrapResult fresh = bootstrap_admin_token(*store_, path, now_);
  EXPECT_TRUE(fresh.created);
  EXPECT_TRUE(fresh.registered);
}

TEST_F(AuthTest, AFileTokenIsRegisteredOnlyIntoAnEmptyStore) {
  TempDir dir;
  const std::string path = dir.file("admin.token");
  auth_.issue("existing-admin", Role::kAdmin);
  const std::string token = random_token();
  std::ofstream(path) << token << "\n";
  ::chmod(path.c_str(), 0600);
  BootstrapResult r = bootstrap_admin_token(*store_, path, now_);
  EXPECT_FALSE(r.registered);
  ASSERT_EQ(r.warnings.size(), 1u);
  EXPECT_NE(r.warnings[0].find("only into an empty store"), std::string::npos);
  EXPECT_EQ(auth_.check("Bearer " + token, Role::kViewer).status, 401);
}

}  // namespace
}  // namespace sluice::control
