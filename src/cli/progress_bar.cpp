#include "cli/progress_bar.h"

#include <fmt/core.h>
#include <unistd.h>

#include <algorithm>
#include <cstdio>

namespace invar::cli {

ProgressBar::ProgressBar(std::string label, int64_t min_total)
    : label_(std::move(label)),
      min_total_(min_total),
      enabled_(isatty(STDERR_FILENO) == 1),
      start_(Clock::now()) {}

ProgressBar::~ProgressBar() {
  if (drawn_) fmt::print(stderr, "\n");
}

void ProgressBar::update(int64_t done, int64_t total) {
  if (!enabled_ || total < min_total_ || total <= 0) return;
  const auto now = Clock::now();
  const bool last = done >= total;
  if (drawn_ && !last && now - last_draw_ < std::chrono::milliseconds(100)) return;
  last_draw_ = now;
  drawn_ = true;
  constexpr int kWidth = 30;
  const double share = std::clamp(double(done) / double(total), 0.0, 1.0);
  const int filled = int(share * kWidth);
  const double seconds = std::chrono::duration<double>(now - start_).count();
  fmt::print(stderr, "\r{} [{}{}] {:3.0f}% {:.1f} s", label_, std::string(size_t(filled), '='),
             std::string(size_t(kWidth - filled), ' '), share * 100, seconds);
  std::fflush(stderr);
}

}  // namespace invar::cli
