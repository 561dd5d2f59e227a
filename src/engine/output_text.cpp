#include "engine/output_text.h"

#include <algorithm>

namespace invar::engine {

OutputText::OutputText(const tokenizer::Tokenizer& tok, std::vector<std::string> stop_strings,
                       bool include_stop, bool skip_special)
    : decoder_(tok, skip_special, /*at_text_start=*/false),
      stops_(std::move(stop_strings)),
      include_stop_(include_stop) {
  std::erase_if(stops_, [](const std::string& s) { return s.empty(); });
}

std::string OutputText::push(int32_t token, bool* stopped, bool match_stops) {
  *stopped = false;
  held_ += decoder_.push(token);
  // The earliest match wins (the longest one where several start there); the text before it,
  // or up to its end with include_stop, is all that is ever shown.
  size_t cut = std::string::npos, end = 0;
  for (const auto& s : stops_) {
    size_t at = match_stops ? held_.find(s) : std::string::npos;
    if (at == std::string::npos || at > cut) continue;
    if (at < cut || at + s.size() > end) end = at + s.size();
    cut = at;
  }
  if (cut != std::string::npos) {
    *stopped = true;
    std::string out = held_.substr(0, include_stop_ ? end : cut);
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
