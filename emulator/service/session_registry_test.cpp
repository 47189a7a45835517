// SessionRegistry: a tenant finds only its own sessions; forgetting one tenant keeps the others.
#include "service/session_registry.hpp"

#include <gtest/gtest.h>

namespace kiln::service {
namespace {

SessionInfo session(const std::string& id) {
  SessionInfo s;
  s.session_id = id;
  return s;
}

TEST(SessionRegistry, ATenantSeesOnlyItsOwnSessions) {
  SessionRegistry r;
  r.add("t1", session("s1"));
  r.add("t2", session("s2"));
  EXPECT_EQ(r.find_owned("t1", "s1").info.session_id, "s1");
  try {
    r.find_owned("t1", "s2");
    FAIL() << "t1 found t2's session";
  } catch (const NotFound& e) {
    EXPECT_STREQ(e.what(), "session 's2' not found");  // exactly as for an unknown id
  }
  EXPECT_THROW(r.find_owned("t1", "nope"), NotFound);
  ASSERT_EQ(r.list("t1").size(), 1u);
  EXPECT_EQ(r.list("t1")[0].session_id, "s1");
}

TEST(SessionRegistry, RecordsRunsAndSamplersAndForgetsByTenant) {
  SessionRegistry r;
  r.add("t1", session("s1"));
  r.add("t2", session("s2"));
  r.record_run("s1", "s1:train:0");
  r.record_sampler("s1", "s1:sample:0");
  r.record_run("gone", "gone:train:0");  // a forgotten session notes nothing
  EXPECT_EQ(r.find_owned("t1", "s1").info.training_run_ids, std::vector<std::string>{"s1:train:0"});
  EXPECT_EQ(r.find_owned("t1", "s1").info.sampler_ids, std::vector<std::string>{"s1:sample:0"});
  r.forget("t1");
  EXPECT_FALSE(r.contains("s1"));
  EXPECT_TRUE(r.contains("s2"));
  r.forget("");
  EXPECT_FALSE(r.contains("s2"));
}

}  // namespace
}  // namespace kiln::service
