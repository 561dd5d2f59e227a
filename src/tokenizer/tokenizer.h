// Text <-> token ids for byte-level BPE (GPT-2, Llama-3, Qwen, SmolLM2) and
// SentencePiece-style BPE (Llama-2, TinyLlama), with added and special tokens.
//
// Encoding: added tokens written in the text are cut out first (longest match at the leftmost
// position; control tokens only when parse_special is true, user-defined ones always). Each
// stretch of plain text between them is then
//   byte-level:     split by the pre-tokenizer regexes, each piece merged by rank (cached);
//   sentencepiece:  prefixed with a space when add_space_prefix and it starts the text or
//                   follows a special token, spaces written as U+2581, merged by score, with
//                   <0xAB> byte fallback.
// Encoding is const and thread-safe.
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

// GGUF token types (llama.cpp's numbering), also used for tokenizers read from tokenizer.json.
enum TokenType : int32_t {
  kTokenNormal = 1,
  kTokenUnknown = 2,
  kTokenControl = 3,      // special: matched in text only with parse_special, skippable on decode
  kTokenUserDefined = 4,  // added, not special: always matched in text, always decoded
  kTokenUnused = 5,
  kTokenByte = 6,  // sentencepiece <0xAB>
};

// Everything a tokenizer is built from, whatever file it came from (GGUF metadata or
// tokenizer.json + tokenizer_config.json).
struct TokenizerSpec {
  TokenizerKind kind = TokenizerKind::byte_level_bpe;
  std::vector<std::string> tokens;   // id -> token text (byte-level: GPT-2 byte alphabet)
  std::vector<float> scores;         // sentencepiece merge priorities (may be empty)
  std::vector<int32_t> token_types;  // GGUF token types (1 normal, 3 control, 4 user, 6 byte)
  std::vector<std::string> merges;   // "left right", highest priority first
  std::vector<std::string> pretokenizer_regexes;  // applied in order (PCRE2 syntax)
  // Added/special tokens matched verbatim in the text. Empty: every token typed unknown,
  // control or user-defined.
  std::vector<int32_t> special_ids;
  std::optional<int32_t> bos_id, eos_id, unk_id, pad_id;
  bool add_bos = false;
  // sentencepiece: prepend "▁" to the text (and after each special token);
  // byte-level: Hugging Face ByteLevel(add_prefix_space), a space before each text stretch.
  bool add_space_prefix = false;
  bool ignore_merges = false;  // byte-level: a piece that is a whole token is taken as is (Llama-3)
  std::string chat_template;   // Jinja source, empty if none
  // Where chat_template came from (a GGUF key, a file), for error messages.
  std::string chat_template_origin;
};

class ChatTemplate;

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
  // Raw bytes of one token (special tokens render as their text; sentencepiece "▁" as a space).
  // Empty for ids outside the vocabulary.
  std::string token_bytes(int32_t id) const;
  // Valid UTF-8 (each maximal invalid byte sequence becomes U+FFFD, as Hugging Face does).
  // Sentencepiece with add_space_prefix drops the one space that prefix put in front.
  std::string decode(const std::vector<int32_t>& ids) const;
  // skip_special leaves out control and unknown tokens (Hugging Face's skip_special_tokens).
  std::string decode(const std::vector<int32_t>& ids, bool skip_special) const;

  int32_t vocab_size() const;
  std::optional<int32_t> bos_id() const;
  std::optional<int32_t> eos_id() const;
  // Token ids that end generation (eos, <|im_end|>, <|eot_id|>, <|endoftext|> ...).
  const std::vector<int32_t>& stop_ids() const;
  bool add_bos_default() const;
  const TokenizerSpec& spec() const;

  // The id of a token given its text as written in the vocabulary, if any.
  std::optional<int32_t> token_id(std::string_view token_text) const;
  // Control or unknown token (what skip_special leaves out).
  bool is_special(int32_t id) const;
  // Whether decoding drops one leading space (sentencepiece with add_space_prefix).
  bool strips_leading_space() const;

  // The chat template (chat_template.h): the model's own, parsed once when the tokenizer is made,
  // or the one set_chat_template gave. An error when there is none or it does not parse, saying
  // how to pass one.
  Result<const ChatTemplate*> chat_template() const;
  // Replaces the model's chat template (`--chat-template FILE`); `origin` names the file. Fails,
  // keeping the old one, if `source` does not parse.
  Status set_chat_template(const std::string& source, std::string origin);

 private:
  struct Impl;
  explicit Tokenizer(std::unique_ptr<Impl> impl);
  std::unique_ptr<Impl> impl_;
};

// Turns a stream of token ids into text pieces without ever emitting a broken UTF-8 sequence:
// bytes of an incomplete character are held until it completes. The concatenation of everything
// push() and flush() return equals tok.decode(ids, skip_special) of the same ids.
class StreamDecoder {
 public:
  // at_text_start: the first token begins the text, so sentencepiece's prefix space is dropped
  // as decode() does; pass false when the tokens continue a prompt that is already shown.
  explicit StreamDecoder(const Tokenizer& tok, bool skip_special = false, bool at_text_start = true)
      : tok_(tok), skip_special_(skip_special), first_(at_text_start) {}
  std::string push(int32_t id);  // text that became complete with this token
  std::string flush();           // whatever is held (invalid bytes become U+FFFD)

 private:
  const Tokenizer& tok_;
  bool skip_special_ = false;
  std::string pending_;
  bool first_ = true;
};

}  // namespace invar::tokenizer
