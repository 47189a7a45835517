#include "service/data_dir_lock.hpp"

#include <sys/wait.h>
#include <unistd.h>

#include <gtest/gtest.h>

#include "service/test_util.hpp"

namespace kiln::service {
namespace {

TEST(DataDirLock, ASecondHolderIsRefusedSayingWhoHoldsIt) {
  testing::TempDir dir;
  auto first = std::make_unique<DataDirLock>(dir.path());
  try {
    DataDirLock second(dir.path());
    FAIL() << "a second lock on the same directory was granted";
  } catch (const std::runtime_error& e) {
    const std::string m = e.what();
    EXPECT_NE(m.find("in use by another kiln serve (pid " + std::to_string(::getpid()) + ")"), std::string::npos) << m;
    EXPECT_NE(m.find("--data-dir"), std::string::npos) << m;
  }
  first.reset();  // released: the next one gets it
  EXPECT_NO_THROW(DataDirLock third(dir.path()));
}

// The lock is the process's, not the file's: a child process is refused while the parent holds it.
TEST(DataDirLock, AnotherProcessIsRefused) {
  testing::TempDir dir;
  DataDirLock held(dir.path());
  const pid_t child = ::fork();
  if (child == 0) {
    try {
      DataDirLock other(dir.path());
      ::_exit(0);
    } catch (const std::runtime_error&) {
      ::_exit(3);
    }
  }
  int status = 0;
  ::waitpid(child, &status, 0);
  EXPECT_TRUE(WIFEXITED(status));
  EXPECT_EQ(WEXITSTATUS(status), 3);
}

}  // namespace
}  // namespace kiln::service
