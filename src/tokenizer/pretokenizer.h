// Pre-tokenization: splits text into pieces with a chain of PCRE2 regexes (UTF + Unicode
// properties, JIT where available). Each regex splits every piece from the previous one the
// way Hugging Face's Split(behavior=Isolated) does: matches and the gaps between them both
// become pieces, in order, so no byte is ever dropped.
#pragma once

#include <memory>
#include <string>
#include <string_view>
#include <vector>

#include "core/status.h"

namespace invar::tokenizer {

// Known pre-tokenizer patterns (facts of each model family's tokenizer).
inline constexpr const char* kGpt2Regex =
    R"('s|'t|'re|'ve|'m|'ll|'d| ?\p{L}+| ?\p{N}+| ?[^\s\p{L}\p{N}]+|\s+(?!\S)|\s+)";
inline constexpr const char* kLlama3Regex =
    R"((?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}{1,3}| ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+)";
inline constexpr const char* kQwen2Regex =
    R"((?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}| ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+)";
// Hugging Face's Digits(individual_digits=true): every numeric character on its own.
inline constexpr const char* kDigitsIndividualRegex = R"(\p{N})";
inline constexpr const char* kDigitsRegex = R"(\p{N}+)";

// The regex chain for a named pre-tokenizer ("gpt2", "default", "llama-bpe", "llama3", "qwen2",
// "smollm", "starcoder", "refact"), or an error listing the known names.
Result<std::vector<std::string>> pretokenizer_regexes_for(const std::string& name);

class Pretokenizer {
 public:
  static Result<Pretokenizer> compile(const std::vector<std::string>& patterns);
  Pretokenizer();
  Pretokenizer(Pretokenizer&&) noexcept;
  Pretokenizer& operator=(Pretokenizer&&) noexcept;
  ~Pretokenizer();

  // Appends the pieces of `text` (views into it) to `out`. With no regexes, the text is one piece.
  void split(std::string_view text, std::vector<std::string_view>& out) const;

 private:
  struct Impl;
  std::unique_ptr<Impl> impl_;
};

}  // namespace invar::tokenizer
