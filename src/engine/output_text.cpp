#include "engine/output_text.h"

#include <algorithm>

namespace invar::engine {

OutputText::OutputText(const tokenizer::Tokenizer& tok, std::vector<std::string> stop_strings)
    : decoder_(tok, /*skip_special=*/true, /*at_text_start=*/false), stops_(std::move(stop_strings)) {
  std::erase_if(stops_, [](const std::string& s) { return s.empty(); });
  for (const auto& s : stops_) longest_stop_ = std::max(longest_stop_, s.size());
}

std::string OutputText::push(int32_t token, bool* stopped) {
  *stopped = false;
  held_ += decoder_.push(token);
  // The earliest match wins; the text before it is all that is ever shown.
  size_t cut = std::string::npos;
  for (const auto& s : stops_) cut = std::min(cut, held_.find(s));
  if (cut != std::string::npos) {
    *stopped = true;
    std::string out = held_.substr(0, cut);
    held_.clear();
    return out;
  }
  return release(false);
}

std::string OutputText::finish() {
  held_ += decoder_.flush();
  return release(true);
}

std::string OutputText::release(bool final) {
  size_t keep = 0;
  if (!final) {
    // Hold the longest tail that is a proper prefix of some stop string.
    for (const auto& s : stops_)
      for (size_t n = std::min(s.size() - 1, held_.size()); n > keep; --n)
        if (held_.compare(held_.size() - n, n, s, 0, n) == 0) {
          keep = n;
          break;
        }
  }
  // Never split a UTF-8 sequence: move the cut back to a character boundary.
  size_t cut = held_.size() - keep;
  while (cut > 0 && cut < held_.size() && (uint8_t(held_[cut]) & 0xC0) == 0x80) --cut;
  std::string out = held_.substr(0, cut);
  held_.erase(0, cut);
  return out;
}

}  // namespace invar::engine
