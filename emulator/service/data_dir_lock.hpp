#pragma once
// One server per data directory: `kiln serve` holds an exclusive flock on <data-dir>/.lock for
// its lifetime, so a second one on the same directory refuses to start (it would delete the
// first one's in-progress saves as leftovers and write the same files). The lock goes with the
// process, however it ends; the file itself stays and holds the owner's pid for the message.
#include <string>

namespace kiln::service {

inline constexpr const char* kLockFileName = ".lock";

class DataDirLock {
 public:
  // Creates the directory if needed and takes the lock; throws std::runtime_error saying who
  // holds it when another process (or another DataDirLock) does.
  explicit DataDirLock(const std::string& data_dir);
  ~DataDirLock();
  DataDirLock(const DataDirLock&) = delete;
  DataDirLock& operator=(const DataDirLock&) = delete;

 private:
  int fd_ = -1;
};

}  // namespace kiln::service
