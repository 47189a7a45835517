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

// Memory keeps the newest entries only; listings reach further back through the file, across a
// restart and a tenant's reset. Without a file, the older entries are gone.
TEST(AuditLog, MemoryHoldsTheNewestAndListingsReadTheRestFromTheFile) {
  testing::TempDir dir;
  const std::string file = dir.path() + "/.audit.jsonl";
  const TimePoint t0{};
  const auto entry = [&](int i, const char* tenant) {
    return AuditEntry{t0 + std::chrono::seconds(i), tenant, "checkpoint_created", "m", "tinker://m/weights/" + std::to_string(i),
                      "training", {}};
  };
  AuditLog log(file, /*memory_entries=*/3), memory_only("", 3);
  for (int i = 0; i < 8; ++i) {
    log.record(entry(i, i % 2 ? "b" : "a"));
    memory_only.record(entry(i, i % 2 ? "b" : "a"));
  }
  const auto a = log.list("a");
  ASSERT_EQ(a.size(), 4u);  // 6, 4, 2, 0: all of them, newest first
  EXPECT_EQ(a.front().tinker_path, "tinker://m/weights/6");
  EXPECT_EQ(a.back().tinker_path, "tinker://m/weights/0");
  EXPECT_EQ(AuditLog(file, 3).list("b").size(), 4u);  // after a restart too
  const auto kept = memory_only.list("a");  // only 5..7 are kept: 6
  ASSERT_EQ(kept.size(), 1u);
  EXPECT_EQ(kept[0].tinker_path, "tinker://m/weights/6");
  log.forget("a");
  EXPECT_TRUE(log.list("a").empty());
  EXPECT_EQ(log.list("b").size(), 4u);
  log.record(entry(9, "a"));
  EXPECT_EQ(AuditLog(file, 2).list("a").size(), 1u);
  EXPECT_EQ(AuditLog(file, 2).list("b").size(), 4u);
}

}  // namespace
}  // namespace kiln::service
