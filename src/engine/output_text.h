// The text of a request's output as tokens arrive: valid UTF-8 only, stop strings cut off,
// and any tail that could still grow into a stop string held back until it cannot.
#pragma once

#include <string>
#include <vector>

#include "tokenizer/tokenizer.h"

namespace invar::engine {

class OutputText {
 public:
  OutputText(const tokenizer::Tokenizer& tok, std::vector<std::string> stop_strings);

  // Adds one generated token; returns the text that may be shown now. Sets *stopped when a
  // stop string matched: the returned text ends just before it and nothing more will come.
  std::string push(int32_t token, bool* stopped);
  // At the end of generation (not after a stop): everything still held.
  std::string finish();

 private:
  std::string release(bool final);

  tokenizer::StreamDecoder decoder_;
  std::vector<std::string> stops_;
  size_t longest_stop_ = 0;
  std::string held_;  // decoded text not yet shown
};

}  // namespace invar::engine
