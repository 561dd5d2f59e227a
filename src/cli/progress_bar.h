// A one-line progress bar on stderr for long waits (loading a large model). It draws only when
// stderr is a terminal, so logs and pipes get no carriage returns.
#pragma once

#include <chrono>
#include <cstdint>
#include <string>

namespace invar::cli {

class ProgressBar {
 public:
  // `min_total`: below it nothing is drawn (a small model loads before a bar would help).
  ProgressBar(std::string label, int64_t min_total);
  ~ProgressBar();  // ends the line if one was drawn

  // `done` of `total` units; redrawn at most every 100 ms, and always at the end.
  void update(int64_t done, int64_t total);

 private:
  using Clock = std::chrono::steady_clock;
  std::string label_;
  int64_t min_total_;
  bool enabled_;
  bool drawn_ = false;
  Clock::time_point start_, last_draw_;
};

}  // namespace invar::cli
