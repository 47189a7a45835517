#pragma once
// The request journal (control API: GET /_kiln/journal): every API request and response in a
// bounded ring, optionally appended as JSON lines to a file. Entries carry a sequence number so
// a reader can ask for what came after the last entry it saw.
#include <cstdint>
#include <deque>
#include <fstream>
#include <mutex>
#include <string>

#include <nlohmann/json.hpp>

namespace kiln::http {

class Journal {
 public:
  explicit Journal(size_t capacity = 1000, const std::string& file = "");
  // Stamps the entry with "seq" and keeps it (dropping the oldest beyond capacity).
  void record(nlohmann::json entry);
  // Entries with seq > since, at most limit of them, oldest first.
  nlohmann::json read(int64_t since, size_t limit) const;
  void clear();

 private:
  mutable std::mutex mu_;
  size_t capacity_;
  int64_t next_seq_ = 1;
  std::deque<nlohmann::json> entries_;
  std::ofstream file_;
};

}  // namespace kiln::http
