#include "service/checkpoint_store.hpp"

#include <atomic>
#include <filesystem>
#include <fstream>

#include <gtest/gtest.h>

#include "service/test_util.hpp"
#include "train/errors.hpp"

namespace kiln::service {
namespace {

using testing::TempDir;

CheckpointRecord record(const std::string& name, CheckpointKind kind = CheckpointKind::training) {
  CheckpointRecord r;
  r.tenant = "tenant-a";
  r.run_id = "session-1:train:0";
  r.kind = kind;
  r.name = name;
  r.base_model = "kiln/tiny";
  r.checkpoint_type = kind == CheckpointKind::training ? "training" : "base";
  return r;
}

CheckpointStore::Files files(float value) {
  CheckpointStore::Files f;
  f.model.tensors[f.model.tensors.add("w", {2})].data = {value, value};
  f.config = {{"model_type", "llama"}};
  return f;
}

TEST(CheckpointStore, SavesAtomicallyAndSurvivesARestart) {
  TempDir dir;
  auto clock = std::make_shared<VirtualClock>();
  {
    CheckpointStore store(dir.path(), clock);
    auto r = record("step-1");
    r.created = clock->now();
    const auto saved = store.save(r, files(1.0f));
    EXPECT_GT(saved.size_bytes, 0);
    EXPECT_EQ(saved.tinker_path(), "tinker://session-1:train:0/weights/step-1");
    const auto dir_path = std::filesystem::path(dir.path()) / "tenant-a" / "session-1:train:0" / "weights" / "step-1";
    for (const char* f : {"model.safetensors", "config.json", "metadata.json"})
      EXPECT_TRUE(std::filesystem::exists(dir_path / f)) << f;
    EXPECT_FALSE(std::filesystem::exists(std::filesystem::path(dir.path()) / ".tmp" / "x"));
  }
  CheckpointStore again(dir.path(), clock);  // a new store on the same directory
  auto found = again.find("tenant-a", "session-1:train:0", CheckpointKind::training, "step-1");
  ASSERT_TRUE(found);
  EXPECT_EQ(again.read_model(*found).tensors[0].data, (model::AlignedVector<float>{1.0f, 1.0f}));
  EXPECT_FALSE(again.find("tenant-b", "session-1:train:0", CheckpointKind::training, "step-1"));
}

// A clock that moves one second each time it is read, as a slow save would see it.
class TickingClock : public Clock {
 public:
  TimePoint now() const override { return start_ + std::chrono::seconds(ticks_++); }

 private:
  TimePoint start_ = std::chrono::system_clock::now();
  mutable std::atomic<int> ticks_{0};
};

// The TTL counts from the moment the checkpoint is complete and listed, not from the request.
TEST(CheckpointStore, TheTtlCountsFromCompletion) {
  TempDir dir;
  auto clock = std::make_shared<TickingClock>();
  CheckpointStore store(dir.path(), clock);
  auto r = record("ttl");
  r.created = clock->now();  // the request
  r.expires = r.created + std::chrono::seconds(2);
  const auto saved = store.save(r, files(1.0f));
  EXPECT_GT(saved.created, r.created);
  ASSERT_TRUE(saved.expires);
  EXPECT_GE(saved.created, *saved.expires - std::chrono::seconds(2));  // ≥ the stamp: created may be nudged for order
  // The clock has moved once since the stamp: still listed.
  EXPECT_EQ(store.list("tenant-a").size(), 1u);
  CheckpointStore again(dir.path(), clock);
  ASSERT_TRUE(again.all().size() == 1);
  EXPECT_EQ(again.all()[0].expires, saved.expires);  // the stored metadata says the same
}

// Replacing exchanges the directories: the old files are gone, the new ones in place, nothing
// left in .tmp.
TEST(CheckpointStore, ReplacingLeavesNoTemporaryBehind) {
  TempDir dir;
  auto clock = std::make_shared<VirtualClock>();
  CheckpointStore store(dir.path(), clock);
  store.save(record("x"), files(1.0f));
  const auto second = store.save(record("x"), files(2.0f));
  EXPECT_EQ(store.read_model(second).tensors[0].data, (model::AlignedVector<float>{2.0f, 2.0f}));
  const auto tmp = std::filesystem::path(dir.path()) / ".tmp";
  EXPECT_TRUE(!std::filesystem::exists(tmp) || std::filesystem::is_empty(tmp));
}

TEST(CheckpointStore, ReplacingKeepsOneCopyAndListsNewestFirst) {
  TempDir dir;
  auto clock = std::make_shared<VirtualClock>();
  CheckpointStore store(dir.path(), clock);
  for (const char* name : {"a", "b", "c"}) {
    auto r = record(name);
    r.created = clock->now();
    store.save(r, files(1.0f));
    clock->advance_seconds(1);
  }
  auto r = record("a");
  r.created = clock->now();
  store.save(r, files(2.0f));
  const auto list = store.list("tenant-a");
  ASSERT_EQ(list.size(), 3u);
  EXPECT_EQ(list[0].name, "a");
  EXPECT_EQ(list[1].name, "c");
  EXPECT_EQ(store.read_model(list[0]).tensors[0].data[0], 2.0f);
}

TEST(CheckpointStore, ExpiredCheckpointsDisappear) {
  TempDir dir;
  auto clock = std::make_shared<VirtualClock>();
  CheckpointStore store(dir.path(), clock);
  auto r = record("ttl");
  r.created = clock->now();
  r.expires = clock->now() + std::chrono::seconds(60);
  store.save(r, files(1.0f));
  clock->advance_seconds(59);
  EXPECT_TRUE(store.find("tenant-a", r.run_id, r.kind, "ttl"));
  clock->advance_seconds(2);
  EXPECT_FALSE(store.find("tenant-a", r.run_id, r.kind, "ttl"));
  EXPECT_TRUE(store.list("tenant-a").empty());
}

TEST(CheckpointStore, UpdateRemoveAndArchive) {
  TempDir dir;
  auto clock = std::make_shared<VirtualClock>();
  CheckpointStore store(dir.path(), clock);
  auto r = store.save(record("s", CheckpointKind::sampler), files(3.0f));
  r.is_public = true;
  store.update(r);
  EXPECT_TRUE(CheckpointStore(dir.path(), clock).find("tenant-a", r.run_id, r.kind, "s")->is_public);
  const std::string tar = store.archive(r);
  std::ifstream in(tar, std::ios::binary);
  std::string head(512, '\0');
  in.read(head.data(), 512);
  EXPECT_EQ(head.substr(0, 8), "s/config");
  EXPECT_EQ(head.substr(257, 5), "ustar");
  store.remove(r);
  EXPECT_FALSE(store.find("tenant-a", r.run_id, r.kind, "s"));
  EXPECT_FALSE(std::filesystem::exists(std::filesystem::path(dir.path()) / "tenant-a" / r.run_id / "sampler_weights" / "s"));
}

TEST(CheckpointStore, NamesCannotEscapeTheDataDirectory) {
  for (const std::string& bad : std::vector<std::string>{"", ".", "..", "a/b", "../x", std::string(256, 'a'), "with space"})
    EXPECT_THROW(validate_checkpoint_name(bad), train::InvalidRequest) << bad;
  for (const std::string& good : std::vector<std::string>{"step-1", "v1.2_final", std::string(255, 'a')}) EXPECT_NO_THROW(validate_checkpoint_name(good));
}

}  // namespace
}  // namespace kiln::service
