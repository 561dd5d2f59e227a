// Text <-> token ids for byte-level BPE (GPT-2, Llama-3, Qwen, SmolLM2) and
// SentencePiece-style BPE (Llama-2, TinyLlama), with added and special tokens.
#pragma once

#include <cstdint>
#include <memory>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "core/status.h"

namespace invar::tokenizer {

enum class TokenizerKind : uint8_t { byte_level_bpe, sentencepiece_bpe };

// Everything a tokenizer is built from, whatever file it came from (GGUF metadata or
// tokenizer.json + tokenizer_config.json).
struct TokenizerSpec {
  TokenizerKind kind = TokenizerKind::byte_level_bpe;
  std::vector<std::string> tokens;      // id -> token text (byte-level: GPT-2 byte alphabet)
  std::vector<float> scores;            // sentencepiece merge priorities (may be empty)
  std::vector<int32_t> token_types;     // GGUF token types (1 normal, 3 control, 4 user, 6 byte)
  std::vector<std::string> merges;      // "left right", highest priority first
  std::vector<std::string> pretokenizer_regexes;  // applied in order (PCRE2 syntax)
  std::vector<int32_t> special_ids;     // added/special tokens matched verbatim in the text
  std::optional<int32_t> bos_id, eos_id, unk_id, pad_id;
  bool add_bos = false;
  bool add_space_prefix = false;        // sentencepiece: prepend "▁" to the text
  std::string chat_template;            // Jinja source, empty if none
};

class Tokenizer {
 public:
  static Result<Tokenizer> from_spec(TokenizerSpec spec);
  // A Hugging Face tokenizer.json (with tokenizer_config.json beside it when present).
  static Result<Tokenizer> from_hf_dir(const std::string& dir);

  Tokenizer(Tokenizer&&) noexcept;
  Tokenizer& operator=(Tokenizer&&) noexcept;
  ~Tokenizer();

  // Special tokens written in the text are matched when parse_special is true.
  std::vector<int32_t> encode(std::string_view text, bool add_bos, bool parse_special) const;
  // Raw bytes of one token (special tokens render as their text).
  std::string token_bytes(int32_t id) const;
  std::string decode(const std::vector<int32_t>& ids) const;

  int32_t vocab_size() const;
  std::optional<int32_t> bos_id() const;
  std::optional<int32_t> eos_id() const;
  // Token ids that end generation (eos, <|im_end|>, <|eot_id|>, <|endoftext|> ...).
  const std::vector<int32_t>& stop_ids() const;
  bool add_bos_default() const;
  const TokenizerSpec& spec() const;

 private:
  struct Impl;
  explicit Tokenizer(std::unique_ptr<Impl> impl);
  std::unique_ptr<Impl> impl_;
};

// Turns a stream of token ids into text pieces without ever emitting a broken UTF-8 sequence:
// bytes of an incomplete character are held until it completes.
class StreamDecoder {
 public:
  explicit StreamDecoder(const Tokenizer& tok) : tok_(tok) {}
  std::string push(int32_t id);  // text that became complete with this token
  std::string flush();           // whatever is held (invalid bytes become U+FFFD)

 private:
  const Tokenizer& tok_;
  std::string pending_;
  bool first_ = true;
};

}  // namespace invar::tokenizer
