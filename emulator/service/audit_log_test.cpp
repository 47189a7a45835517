#include "service/audit_log.hpp"

#include <gtest/gtest.h>

#include "service/test_util.hpp"

namespace kiln::service {
namespace {

TEST(AuditLog, KeepsEntriesAcrossARestartNewestFirstPerTenant) {
  testing::TempDir dir;
  const std::string file = dir.path() + "/.audit.jsonl";
  const TimePoint t0{};
  {
    AuditLog log(file);
    log.record({t0, "tenant-a", "checkpoint_created", "s:train:0", "tinker://s:train:0/weights/w", "training", {}});
    log.record({t0 + std::chrono::seconds(1), "tenant-b", "session_created", "", "", "", {{"session_id", "s2"}}});
    log.record({t0 + std::chrono::seconds(2), "tenant-a", "checkpoint_deleted", "s:train:0", "tinker://s:train:0/weights/w",
                "training", {}});
  }
  AuditLog reopened(file);
  const auto a = reopened.list("tenant-a");
  ASSERT_EQ(a.size(), 2u);
  EXPECT_EQ(a[0].event, "checkpoint_deleted");
  EXPECT_EQ(a[1].event, "checkpoint_created");
  EXPECT_EQ(a[1].time, t0);
  const auto b = reopened.list("tenant-b");
  ASSERT_EQ(b.size(), 1u);
  EXPECT_EQ(b[0].details.at("session_id"), "s2");
  reopened.forget("tenant-a");
  EXPECT_TRUE(AuditLog(file).list("tenant-a").empty());
  EXPECT_EQ(AuditLog(file).list("tenant-b").size(), 1u);
}

}  // namespace
}  // namespace kiln::service
