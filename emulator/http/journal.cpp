#include "http/journal.hpp"

#include <stdexcept>

namespace kiln::http {

Journal::Journal(size_t capacity, const std::string& file) : capacity_(std::max<size_t>(1, capacity)) {
  if (!file.empty()) {
    file_.open(file, std::ios::app);
    if (!file_) throw std::runtime_error("cannot open journal file " + file);
  }
}

void Journal::record(nlohmann::json entry) {
  std::lock_guard lock(mu_);
  entry["seq"] = next_seq_++;
  if (file_.is_open()) file_ << entry.dump() << '\n' << std::flush;
  entries_.push_back(std::move(entry));
  while (entries_.size() > capacity_) entries_.pop_front();
}

nlohmann::json Journal::read(int64_t since, size_t limit) const {
  std::lock_guard lock(mu_);
  nlohmann::json out = nlohmann::json::array();
  for (const auto& e : entries_)
    if (e["seq"].get<int64_t>() > since && out.size() < limit) out.push_back(e);
  return {{"entries", out}, {"last_seq", next_seq_ - 1}};
}

void Journal::clear() {
  std::lock_guard lock(mu_);
  entries_.clear();
}

}  // namespace kiln::http
