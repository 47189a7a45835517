#include "service/checkpoint_store.hpp"

#include <fcntl.h>
#include <stdio.h>  // renameat2
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <cstdio>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <sstream>

#include "log.hpp"
#include "service/data_dir_lock.hpp"
#include "train/errors.hpp"

namespace kiln::service {

namespace fs = std::filesystem;

const char* kind_dir(CheckpointKind k) {
  switch (k) {
    case CheckpointKind::training: return "weights";
    case CheckpointKind::sampler: return "sampler_weights";
    case CheckpointKind::external: return "external_weights";
  }
  return "";
}

const char* kind_name(CheckpointKind k) {
  switch (k) {
    case CheckpointKind::training: return "training";
    case CheckpointKind::sampler: return "sampler";
    case CheckpointKind::external: return "external";
  }
  return "";
}

std::optional<CheckpointKind> kind_of_dir(const std::string& dir) {
  for (auto k : {CheckpointKind::training, CheckpointKind::sampler, CheckpointKind::external})
    if (dir == kind_dir(k)) return k;
  return std::nullopt;
}

void to_json(nlohmann::json& j, const CheckpointRecord& r) {
  j = {{"format", "kiln-checkpoint-1"},
       {"owner", r.tenant},
       {"training_run_id", r.run_id},
       {"kind", kind_dir(r.kind)},
       {"name", r.name},
       {"base_model", r.base_model},
       {"config", r.config},
       {"lora", r.lora ? nlohmann::json(*r.lora) : nlohmann::json(nullptr)},
       {"checkpoint_type", r.checkpoint_type},
       {"has_optimizer", r.has_optimizer},
       // Integer nanoseconds round-trip exactly (expiry is compared at the boundary); ISO for people.
       {"created_ns", r.created.time_since_epoch().count()},
       {"created", iso8601(r.created)},
       {"expires_ns", r.expires ? nlohmann::json(r.expires->time_since_epoch().count()) : nlohmann::json(nullptr)},
       {"expires", r.expires ? nlohmann::json(iso8601(*r.expires)) : nlohmann::json(nullptr)},
       {"size_bytes", r.size_bytes},
       {"public", r.is_public},
       {"user_metadata", r.user_metadata}};
}

void from_json(const nlohmann::json& j, CheckpointRecord& r) {
  // Only the integer fields: created_ns / expires_ns are nanoseconds, far beyond 2^31.
  for (const char* k : {"size_bytes", "lora"})
    if (j.contains(k)) model::require_representable_numbers(j[k], k);
  for (const char* k : {"created_ns", "expires_ns"})
    if (j.contains(k) && !j[k].is_null() && !j[k].is_number_integer())
      throw std::runtime_error(std::string("metadata field '") + k + "' is not an integer");
  r.tenant = j.at("owner");
  r.run_id = j.at("training_run_id");
  const auto kind = kind_of_dir(j.at("kind").get<std::string>());
  if (!kind) throw std::runtime_error("metadata field 'kind' is " + j.at("kind").dump());
  r.kind = *kind;
  r.name = j.at("name");
  r.base_model = j.at("base_model");
  r.config = j.at("config").get<model::ModelConfig>();
  if (!j.at("lora").is_null()) r.lora = j.at("lora").get<model::LoraConfig>();
  r.checkpoint_type = j.at("checkpoint_type");
  r.has_optimizer = j.at("has_optimizer");
  r.created = TimePoint(TimePoint::duration(j.at("created_ns").get<TimePoint::duration::rep>()));
  if (!j.at("expires_ns").is_null())
    r.expires = TimePoint(TimePoint::duration(j.at("expires_ns").get<TimePoint::duration::rep>()));
  r.size_bytes = j.at("size_bytes");
  r.is_public = j.at("public");
  // Checkpoints written before user_metadata was kept have none.
  r.user_metadata = j.value("user_metadata", std::map<std::string, std::string>{});
}

void validate_checkpoint_name(const std::string& name) {
  const bool chars_ok = std::all_of(name.begin(), name.end(), [](unsigned char c) {
    return std::isalnum(c) || c == '.' || c == '_' || c == '-';
  });
  if (name.empty() || name.size() > 255 || !chars_ok || name == "." || name == "..")
    throw train::InvalidRequest("invalid checkpoint name '" + name +
                                "': expected 1-255 characters from [A-Za-z0-9._-], not '.' or '..'");
}

namespace {

std::atomic<uint64_t> g_tmp_counter{0};

void write_synced(const fs::path& path, const std::string& bytes) {
  const int fd = ::open(path.c_str(), O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
  if (fd < 0) throw std::runtime_error("cannot create " + path.string() + ": " + std::strerror(errno));
  size_t done = 0;
  while (done < bytes.size()) {
    const ssize_t n = ::write(fd, bytes.data() + done, bytes.size() - done);
    if (n < 0) {
      const int err = errno;
      ::close(fd);
      throw std::runtime_error("cannot write " + path.string() + ": " + std::strerror(err));
    }
    done += static_cast<size_t>(n);
  }
  if (::fsync(fd) != 0 || ::close(fd) != 0)
    throw std::runtime_error("cannot sync " + path.string() + ": " + std::strerror(errno));
}

void sync_dir(const fs::path& dir) {
  const int fd = ::open(dir.c_str(), O_RDONLY | O_DIRECTORY | O_CLOEXEC);
  if (fd >= 0) {
    ::fsync(fd);
    ::close(fd);
  }
}

std::string read_all(const fs::path& path) {
  std::ifstream in(path, std::ios::binary);
  if (!in) throw std::runtime_error("cannot open " + path.string());
  std::ostringstream ss;
  ss << in.rdbuf();
  return ss.str();
}

fs::path temp_dir(const std::string& root) {
  return fs::path(root) / ".tmp" /
         (std::to_string(::getpid()) + "-" + std::to_string(g_tmp_counter.fetch_add(1)));
}

}  // namespace

CheckpointStore::CheckpointStore(std::string root, std::shared_ptr<const Clock> clock)
    : root_(std::move(root)), clock_(std::move(clock)) {
  fs::create_directories(root_);
  fs::remove_all(fs::path(root_) / ".tmp");  // leftovers of interrupted saves
  scan();
}

void CheckpointStore::scan() {
  std::lock_guard lock(mu_);
  records_.clear();
  for (const auto& entry : fs::recursive_directory_iterator(root_)) {
    if (!entry.is_regular_file() || entry.path().filename() != "metadata.json") continue;
    if (entry.path().string().find("/.tmp/") != std::string::npos) continue;
    try {
      records_.push_back(nlohmann::json::parse(read_all(entry.path())).get<CheckpointRecord>());
    } catch (const std::exception& e) {
      log::write(log::Level::warn, "checkpoint_unreadable", {{"path", entry.path().string()}, {"error", e.what()}, {"action", "ignored"}});
    }
  }
}

std::string CheckpointStore::dir_of(const CheckpointRecord& r) const {
  return (fs::path(root_) / r.tenant / r.run_id / kind_dir(r.kind) / r.name).string();
}

bool CheckpointStore::session_used(const std::string& session_id) const {
  std::lock_guard lock(mu_);
  const std::string prefix = session_id + ":";
  return std::any_of(records_.begin(), records_.end(),
                     [&](const CheckpointRecord& r) { return r.run_id.rfind(prefix, 0) == 0; });
}

std::pair<uint64_t, uint64_t> CheckpointStore::written() const {
  std::lock_guard lock(mu_);
  return {saves_written_, bytes_written_};
}

bool CheckpointStore::live(const CheckpointRecord& r) const { return !r.expires || clock_->now() < *r.expires; }

CheckpointRecord CheckpointStore::save(CheckpointRecord record, const Files& files) {
  // The TTL the caller set counts from completion, not from the request: a large save that takes
  // longer than its TTL is still listed for the whole TTL once it is complete. (Found by the
  // stateful test: counted from the nudged `created` below, a TTL ran a microsecond long.)
  std::optional<TimePoint::duration> ttl;
  if (record.expires) ttl = *record.expires - record.created;
  const fs::path tmp = temp_dir(root_);
  fs::create_directories(tmp);
  // A large save (a full-parameter stand-in with its optimizer state) logs its progress.
  log::Progress progress("checkpoint_save", {{"checkpoint", record.tinker_path()}});
  try {
    const std::string model_bytes = encode_safetensors(files.model);
    int64_t size = static_cast<int64_t>(model_bytes.size());
    write_synced(tmp / "model.safetensors", model_bytes);
    progress.update({{"bytes_written", size}, {"file", "model.safetensors"}});
    if (files.optimizer) {
      const std::string opt = encode_safetensors(*files.optimizer);
      size += static_cast<int64_t>(opt.size());
      write_synced(tmp / "optimizer.safetensors", opt);
      progress.update({{"bytes_written", size}, {"file", "optimizer.safetensors"}});
    }
    write_synced(tmp / "config.json", files.config.dump(2) + "\n");
    if (files.adapter_config) write_synced(tmp / "adapter_config.json", files.adapter_config->dump(2) + "\n");
    record.size_bytes = size;

    const fs::path final_dir = dir_of(record);
    fs::create_directories(final_dir.parent_path());
    std::lock_guard lock(mu_);
    // Stamped now, under the lock: save times are strictly increasing, so "newest" is the save
    // order even on a frozen clock.
    const TimePoint completed = clock_->now();
    record.created = completed;
    for (const auto& r : records_)
      if (r.created >= record.created) record.created = r.created + std::chrono::microseconds(1);
    if (ttl) record.expires = completed + *ttl;  // from the clock, not from the ordering nudge
    write_synced(tmp / "metadata.json", nlohmann::json(record).dump(2) + "\n");
    sync_dir(tmp);
    if (fs::exists(final_dir)) {
      // Replace in one step (renameat2 RENAME_EXCHANGE): at every instant, a crash leaves either
      // the old checkpoint or the new one in place; the swapped-out old one is then removed.
      // Filesystems without it (EINVAL) get two renames, with a short window holding neither.
      if (::renameat2(AT_FDCWD, tmp.c_str(), AT_FDCWD, final_dir.c_str(), RENAME_EXCHANGE) != 0) {
        if (errno != EINVAL && errno != ENOSYS)
          throw std::runtime_error("cannot replace " + final_dir.string() + ": " + std::strerror(errno));
        const fs::path old = temp_dir(root_);
        fs::rename(final_dir, old);
        fs::rename(tmp, final_dir);
        fs::rename(old, tmp);
      }
      sync_dir(final_dir.parent_path());
      std::error_code ec;
      fs::remove_all(tmp, ec);  // the old checkpoint now; removed at the next start if this fails
    } else {
      fs::rename(tmp, final_dir);
      sync_dir(final_dir.parent_path());
    }
    records_.erase(std::remove_if(records_.begin(), records_.end(),
                                  [&](const CheckpointRecord& r) {
                                    return r.tenant == record.tenant && r.run_id == record.run_id &&
                                           r.kind == record.kind && r.name == record.name;
                                  }),
                   records_.end());
    records_.push_back(record);
    ++saves_written_;
    bytes_written_ += static_cast<uint64_t>(size);
    progress.finish({{"bytes", size}});
    return record;
  } catch (const Error&) {
    std::error_code ec;
    fs::remove_all(tmp, ec);
    throw;
  } catch (const std::exception& e) {  // the filesystem's refusal, as the user reads it
    std::error_code ec;
    fs::remove_all(tmp, ec);
    throw errors::checkpoint_not_written(record.checkpoint_id(), e.what());
  }
}

std::optional<CheckpointRecord> CheckpointStore::find(const std::string& tenant, const std::string& run_id,
                                                      CheckpointKind kind, const std::string& name) const {
  std::lock_guard lock(mu_);
  for (const auto& r : records_)
    if (r.tenant == tenant && r.run_id == run_id && r.kind == kind && r.name == name && live(r)) return r;
  return std::nullopt;
}

std::vector<CheckpointRecord> CheckpointStore::list(const std::string& tenant, const std::string& run_id) const {
  std::vector<CheckpointRecord> out;
  {
    std::lock_guard lock(mu_);
    for (const auto& r : records_)
      if (r.tenant == tenant && (run_id.empty() || r.run_id == run_id) && live(r)) out.push_back(r);
  }
  std::sort(out.begin(), out.end(), [](const CheckpointRecord& a, const CheckpointRecord& b) {
    if (a.created != b.created) return a.created > b.created;
    return a.checkpoint_id() < b.checkpoint_id();
  });
  return out;
}

SafetensorsFile CheckpointStore::read_model(const CheckpointRecord& r) const {
  return decode_safetensors(read_all(fs::path(dir_of(r)) / "model.safetensors"));
}

CheckpointStore::Files CheckpointStore::read_files(const CheckpointRecord& r) const {
  const fs::path dir = dir_of(r);
  Files f{read_model(r), read_optimizer(r), nlohmann::json::parse(read_all(dir / "config.json")), std::nullopt};
  if (fs::exists(dir / "adapter_config.json")) f.adapter_config = nlohmann::json::parse(read_all(dir / "adapter_config.json"));
  return f;
}

std::optional<SafetensorsFile> CheckpointStore::read_optimizer(const CheckpointRecord& r) const {
  const fs::path p = fs::path(dir_of(r)) / "optimizer.safetensors";
  if (!fs::exists(p)) return std::nullopt;
  return decode_safetensors(read_all(p));
}

void CheckpointStore::remove(const CheckpointRecord& r) {
  std::lock_guard lock(mu_);
  std::error_code ec;
  fs::remove_all(dir_of(r), ec);
  records_.erase(std::remove_if(records_.begin(), records_.end(),
                                [&](const CheckpointRecord& x) {
                                  return x.tenant == r.tenant && x.run_id == r.run_id && x.kind == r.kind &&
                                         x.name == r.name;
                                }),
                 records_.end());
}

void CheckpointStore::clear(const std::string& tenant) {
  std::lock_guard lock(mu_);
  std::error_code ec;
  if (tenant.empty()) {
    for (const auto& entry : fs::directory_iterator(root_, ec))
      if (entry.path().filename() != kLockFileName) fs::remove_all(entry.path(), ec);  // the server's, not data
    records_.clear();
    return;
  }
  fs::remove_all(fs::path(root_) / tenant, ec);
  fs::remove_all(fs::path(root_) / ".archives" / tenant, ec);
  std::erase_if(records_, [&](const CheckpointRecord& r) { return r.tenant == tenant; });
}

std::vector<CheckpointRecord> CheckpointStore::all() const {
  std::lock_guard lock(mu_);
  return records_;
}

void CheckpointStore::update(const CheckpointRecord& r) {
  std::lock_guard lock(mu_);
  const fs::path dir = dir_of(r);
  const fs::path tmp = dir / ".metadata.json.tmp";
  write_synced(tmp, nlohmann::json(r).dump(2) + "\n");
  fs::rename(tmp, dir / "metadata.json");
  sync_dir(dir);
  for (auto& x : records_)
    if (x.tenant == r.tenant && x.run_id == r.run_id && x.kind == r.kind && x.name == r.name) x = r;
}

namespace {

// One ustar member: a 512-byte header, then the data padded to 512 bytes.
void tar_member(std::string& out, const std::string& name, const std::string& data, int64_t mtime) {
  char h[512] = {};
  std::snprintf(h, 100, "%s", name.c_str());
  std::snprintf(h + 100, 8, "%07o", 0644);
  std::snprintf(h + 108, 8, "%07o", 0);
  std::snprintf(h + 116, 8, "%07o", 0);
  std::snprintf(h + 124, 12, "%011llo", static_cast<unsigned long long>(data.size()));
  std::snprintf(h + 136, 12, "%011llo", static_cast<unsigned long long>(mtime));
  std::memset(h + 148, ' ', 8);
  h[156] = '0';
  std::memcpy(h + 257, "ustar", 6);
  std::memcpy(h + 263, "00", 2);
  unsigned sum = 0;
  for (unsigned char c : h) sum += c;
  std::snprintf(h + 148, 8, "%06o", sum);
  h[155] = ' ';
  out.append(h, 512);
  out += data;
  out.append((512 - data.size() % 512) % 512, '\0');
}

}  // namespace

std::vector<std::pair<std::string, std::string>> CheckpointStore::files(const CheckpointRecord& r) const {
  std::vector<std::pair<std::string, std::string>> out;
  for (const auto& e : fs::directory_iterator(dir_of(r))) {
    const std::string name = e.path().filename().string();
    if (e.is_regular_file() && name[0] != '.' && name != "metadata.json") out.emplace_back(name, e.path().string());
  }
  std::sort(out.begin(), out.end());
  return out;
}

std::string CheckpointStore::archive(const CheckpointRecord& r) const {
  const fs::path dir = dir_of(r);
  std::vector<fs::path> files;
  for (const auto& e : fs::directory_iterator(dir))
    if (e.is_regular_file() && e.path().filename().string()[0] != '.') files.push_back(e.path());
  std::sort(files.begin(), files.end());
  std::string tar;
  const int64_t mtime = static_cast<int64_t>(to_unix_seconds(r.created));
  for (const auto& f : files) tar_member(tar, r.name + "/" + f.filename().string(), read_all(f), mtime);
  tar.append(1024, '\0');
  const fs::path out = fs::path(root_) / ".archives" / r.tenant / r.run_id / kind_dir(r.kind) / (r.name + ".tar");
  fs::create_directories(out.parent_path());
  const fs::path tmp = out.string() + ".tmp";
  write_synced(tmp, tar);
  fs::rename(tmp, out);
  return out.string();
}

}  // namespace kiln::service
