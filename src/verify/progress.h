// A one-line progress indicator on stderr for long `invar verify` runs; silent unless stderr
// is a terminal, so logs and CI output stay clean.
#pragma once

#include <chrono>
#include <mutex>
#include <string>

namespace invar::verify {

class Progress {
 public:
  Progress();  // enabled when stderr is a TTY
  ~Progress() { finish(); }
  // Thread-safe; redraws at most ten times a second.
  void update(const std::string& label, int done, int total);
  // Clears the line.
  void finish();

 private:
  bool enabled_;
  bool drawn_ = false;
  std::mutex mu_;
  std::chrono::steady_clock::time_point last_{};
};

}  // namespace invar::verify
