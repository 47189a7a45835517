#pragma once
// Checkpoints on disk, under <root>/<tenant>/<run id>/<weights|sampler_weights>/<name>/:
//   model.safetensors      weights (Llama / PEFT tensor names)
//   optimizer.safetensors  Adam moments "<param>.exp_avg" / "<param>.exp_avg_sq", step in metadata
//   config.json            the architecture, Hugging Face Llama style
//   adapter_config.json    PEFT adapter description (LoRA checkpoints)
//   metadata.json          owner, base model, LoRA config, kind, checkpoint_type, times, size
// Writes are atomic: a temporary directory (<root>/.tmp/…) is filled and fsynced, then renamed
// into place (exchanged with the old one when replacing); leftovers are removed at start.
// A new store on the same root finds everything written before.
#include <memory>
#include <mutex>
#include <optional>
#include <string>
#include <vector>

#include <nlohmann/json.hpp>

#include "model/config.hpp"
#include "service/clock.hpp"
#include "service/safetensors.hpp"

namespace kiln::service {

// training: weights + Adam (save_state); sampler: weights to sample (save_weights_for_sampler);
// external: weights to download by URL (tinker 0.39's save_weights_external).
enum class CheckpointKind { training, sampler, external };
const char* kind_dir(CheckpointKind k);  // "weights" / "sampler_weights" / "external_weights"
std::optional<CheckpointKind> kind_of_dir(const std::string& dir);  // the inverse
const char* kind_name(CheckpointKind k);  // the listings' checkpoint_type: "training" / "sampler" / "external"

struct CheckpointRecord {
  std::string tenant;  // tenant key (a hash of the API key; the key itself is never stored)
  std::string run_id;  // the training run (model id) that saved it
  CheckpointKind kind = CheckpointKind::training;
  std::string name;
  std::string base_model;
  model::ModelConfig config;
  std::optional<model::LoraConfig> lora;  // absent: full-parameter weights
  std::string checkpoint_type;            // "training", "external", or the sampler type: base / delta / merged_base
  bool has_optimizer = false;
  TimePoint created;
  std::optional<TimePoint> expires;
  int64_t size_bytes = 0;
  bool is_public = false;
  std::map<std::string, std::string> user_metadata;  // from the save request (tinker 0.30+)

  std::string checkpoint_id() const { return std::string(kind_dir(kind)) + "/" + name; }
  std::string tinker_path() const { return "tinker://" + run_id + "/" + checkpoint_id(); }
};

void to_json(nlohmann::json& j, const CheckpointRecord& r);
void from_json(const nlohmann::json& j, CheckpointRecord& r);

// Throws train::InvalidRequest unless `name` is 1–255 characters of [A-Za-z0-9._-], not . or ..
void validate_checkpoint_name(const std::string& name);

class CheckpointStore {
 public:
  CheckpointStore(std::string root, std::shared_ptr<const Clock> clock);

  struct Files {
    SafetensorsFile model;
    std::optional<SafetensorsFile> optimizer;
    nlohmann::json config;
    std::optional<nlohmann::json> adapter_config;
  };
  // Writes atomically, replacing an existing checkpoint of the same identity only once the new
  // one is complete. `created` is stamped when the files are complete, and `expires` (if set)
  // keeps its distance from `created`: a TTL counts from completion. Returns the stored record
  // (size and times filled in).
  CheckpointRecord save(CheckpointRecord record, const Files& files);

  // Live (not expired) checkpoints only.
  std::optional<CheckpointRecord> find(const std::string& tenant, const std::string& run_id, CheckpointKind kind,
                                       const std::string& name) const;
  // A tenant's live checkpoints (of one run when run_id is given), newest first (ties: by name).
  std::vector<CheckpointRecord> list(const std::string& tenant, const std::string& run_id = "") const;

  SafetensorsFile read_model(const CheckpointRecord& r) const;
  Files read_files(const CheckpointRecord& r) const;  // everything save() wrote but the metadata
  std::optional<SafetensorsFile> read_optimizer(const CheckpointRecord& r) const;

  void remove(const CheckpointRecord& r);
  // Deletes every checkpoint (live or expired) of one tenant, or of all when tenant is empty,
  // with their archives.
  void clear(const std::string& tenant = "");
  // Every record on disk, live or expired, of every tenant (the control API's state view).
  std::vector<CheckpointRecord> all() const;
  // Updates metadata.json atomically; the record must be live.
  void update(const CheckpointRecord& r);
  // The checkpoint's files as a user gets them: (name, path on disk), sorted; Kiln's own
  // metadata.json left out.
  std::vector<std::pair<std::string, std::string>> files(const CheckpointRecord& r) const;
  // A tar archive of the checkpoint's files, written under <root>/.archives; returns its path.
  std::string archive(const CheckpointRecord& r) const;

  bool live(const CheckpointRecord& r) const;
  // Whether any stored checkpoint (live or expired) was saved by a run of this session.
  bool session_used(const std::string& session_id) const;
  const std::string& root() const { return root_; }
  // Checkpoints written and their bytes, since the process started (GET /metrics).
  std::pair<uint64_t, uint64_t> written() const;

 private:
  std::string dir_of(const CheckpointRecord& r) const;
  void scan();

  std::string root_;
  std::shared_ptr<const Clock> clock_;
  mutable std::mutex mu_;
  std::vector<CheckpointRecord> records_;  // everything on disk, live or expired
  uint64_t saves_written_ = 0, bytes_written_ = 0;
};

}  // namespace kiln::service
