// The text of a request's output as tokens arrive: valid UTF-8 only, stop strings cut off,
// and any tail that could still grow into a stop string held back until it cannot.
#pragma once

#include <string>
#include <vector>

#include "tokenizer/tokenizer.h"

namespace invar::engine {

class OutputText {
 public:
  // include_stop: a matched stop string stays in the text (vLLM's include_stop_str_in_output);
  // skip_special: control tokens leave no text.
  OutputText(const tokenizer::Tokenizer& tok, std::vector<std::string> stop_strings,
             bool include_stop = false, bool skip_special = true);

  // Adds one generated token; returns the text that may be shown now. Sets *stopped when a
  // stop string matched: the returned text ends just before it (just after it with
  // include_stop) and nothing more will come. With match_stops false (before min_tokens) no
  // stop string can match; what could still become one stays held.
  std::string push(int32_t token, bool* stopped, bool match_stops = true);
  // At the end of generation (not after a stop): everything still held.
  std::string finish();

 private:
  std::string release(bool final);

  tokenizer::StreamDecoder decoder_;
  std::vector<std::string> stops_;
  bool include_stop_ = false;
  std::string held_;  // decoded text not yet shown
};

}  // namespace invar::engine
