#include "verify/progress.h"

#include <fmt/core.h>
#include <unistd.h>

#include <cstdio>

namespace invar::verify {

Progress::Progress() : enabled_(isatty(STDERR_FILENO) != 0) {}

void Progress::update(const std::string& label, int done, int total) {
  if (!enabled_) return;
  std::lock_guard<std::mutex> lock(mu_);
  const auto now = std::chrono::steady_clock::now();
  if (done < total && now - last_ < std::chrono::milliseconds(100)) return;
  last_ = now;
  constexpr int kWidth = 30;
  const int filled = total > 0 ? done * kWidth / total : 0;
  fmt::print(stderr, "\r\033[K{:<28} [{}{}] {}/{}", label, std::string(size_t(filled), '#'),
             std::string(size_t(kWidth - filled), ' '), done, total);
  std::fflush(stderr);
  drawn_ = true;
}

void Progress::finish() {
  std::lock_guard<std::mutex> lock(mu_);
  if (!drawn_) return;
  fmt::print(stderr, "\r\033[K");
  std::fflush(stderr);
  drawn_ = false;
}

}  // namespace invar::verify
