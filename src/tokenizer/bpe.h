// The two BPE merge models behind Tokenizer, each turning one pre-tokenized piece into ids.
//
// ByteLevelBpe (GPT-2, Llama-3, Qwen2, SmolLM2): the piece's bytes start as one symbol each
// (the GPT-2 byte alphabet); the adjacent pair with the lowest merge rank is merged, leftmost
// first on ties, until no listed merge applies. Results are cached per piece.
//
// SentencePieceBpe (Llama-2, TinyLlama): the piece's UTF-8 characters start as symbols; the
// adjacent pair whose concatenation is a vocabulary piece with the highest score is merged,
// leftmost first on ties. Characters left outside the vocabulary fall back to <0xAB> byte tokens,
// or to the unknown token. A whole text segment is one piece (pieces such as "▁▁" span spaces),
// so there is no per-word cache; the merge loop is O(n log n) in the segment's characters.
#pragma once

#include <cstdint>
#include <mutex>
#include <optional>
#include <string>
#include <string_view>
#include <unordered_map>
#include <vector>

#include "core/status.h"

namespace invar::tokenizer {

// Transparent hashing so string_view lookups need no temporary string.
struct StringHash {
  using is_transparent = void;
  size_t operator()(std::string_view s) const { return std::hash<std::string_view>{}(s); }
};
using TokenIndex = std::unordered_map<std::string, int32_t, StringHash, std::equal_to<>>;

// A sentencepiece byte token's value: "<0xAB>" -> 0xAB; -1 for any other text.
int parse_byte_token(std::string_view token);

class ByteLevelBpe {
 public:
  // `merges` are "left right" in the byte alphabet, highest priority first; every merge result
  // must be in `index`.
  static Result<ByteLevelBpe> build(const TokenIndex& index, const std::vector<std::string>& merges,
                                    bool ignore_merges, std::optional<int32_t> unk_id);
  ByteLevelBpe(ByteLevelBpe&& o) noexcept;
  ByteLevelBpe& operator=(ByteLevelBpe&& o) noexcept;

  // Appends the ids of one piece (raw bytes) to `out`.
  void encode(std::string_view piece, const TokenIndex& index, std::vector<int32_t>& out) const;

 private:
  ByteLevelBpe() = default;
  void merge_word(std::string_view piece, std::vector<int32_t>& out) const;

  struct Merge {
    int32_t rank;
    int32_t result;
  };
  std::unordered_map<uint64_t, Merge> merges_;  // (left id << 32 | right id) -> merge
  int32_t byte_ids_[256];                       // byte -> id of its one-character token, or -1
  bool ignore_merges_ = false;
  std::optional<int32_t> unk_id_;

  mutable std::mutex cache_mutex_;
  mutable std::unordered_map<std::string, std::vector<int32_t>, StringHash, std::equal_to<>> cache_;
};

class SentencePieceBpe {
 public:
  // `mergeable[id]` says whether a token may be the result of a merge (normal and user-defined
  // pieces; not control, unknown or byte tokens).
  static SentencePieceBpe build(const std::vector<std::string>& tokens,
                                const std::vector<float>& scores,
                                const std::vector<int32_t>& token_types,
                                std::optional<int32_t> unk_id);
  SentencePieceBpe(SentencePieceBpe&& o) noexcept;
  SentencePieceBpe& operator=(SentencePieceBpe&& o) noexcept;

  // Appends the ids of `text` (spaces already replaced by U+2581) to `out`.
  void encode(std::string_view text, std::vector<int32_t>& out) const;

 private:
  SentencePieceBpe() = default;
  TokenIndex pieces_;          // mergeable piece text -> id
  std::vector<float> scores_;  // by id
  int32_t byte_ids_[256];      // byte -> id of <0xAB>, or -1
  std::optional<int32_t> unk_id_;
};

}  // namespace invar::tokenizer
