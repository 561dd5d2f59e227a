#include "engine/tokenizer_from_gguf.h"

#include "tokenizer/pretokenizer.h"

namespace invar::engine {

namespace {

std::optional<bool> get_bool(const model::GgufFile& gguf, const std::string& key) {
  auto it = gguf.metadata().find(key);
  if (it == gguf.metadata().end()) return std::nullopt;
  if (const bool* b = std::get_if<bool>(&it->second.v)) return *b;
  if (const int64_t* i = std::get_if<int64_t>(&it->second.v)) return *i != 0;
  if (const uint64_t* u = std::get_if<uint64_t>(&it->second.v)) return *u != 0;
  return std::nullopt;
}

Result<std::optional<int32_t>> get_id(const model::GgufFile& gguf, const std::string& key) {
  if (!gguf.has(key)) return std::optional<int32_t>();
  INVAR_ASSIGN_OR_RETURN(int64_t v, gguf.get_int(key));
  // Some converters write -1 (or UINT32_MAX) for "none".
  if (v < 0 || v >= (int64_t(1) << 31) - 1) return std::optional<int32_t>();
  return std::optional<int32_t>(int32_t(v));
}

}  // namespace

Result<tokenizer::TokenizerSpec> tokenizer_spec_from_gguf(const model::GgufFile& gguf) {
  using tokenizer::TokenizerKind;
  tokenizer::TokenizerSpec spec;
  const std::string& path = gguf.path();
  INVAR_ASSIGN_OR_RETURN(std::string model_name, gguf.get_string("tokenizer.ggml.model"));
  if (model_name == "gpt2") {
    spec.kind = TokenizerKind::byte_level_bpe;
  } else if (model_name == "llama") {
    spec.kind = TokenizerKind::sentencepiece_bpe;
  } else {
    return Status::errorf("{}: tokenizer.ggml.model '{}' is not supported (supported: gpt2, llama)",
                          path, model_name);
  }
  const bool spm = spec.kind == TokenizerKind::sentencepiece_bpe;

  INVAR_ASSIGN_OR_RETURN(spec.tokens, gguf.get_string_array("tokenizer.ggml.tokens"));
  const size_t n = spec.tokens.size();
  if (gguf.has("tokenizer.ggml.scores")) {
    INVAR_ASSIGN_OR_RETURN(auto scores, gguf.get_float_array("tokenizer.ggml.scores"));
    if (scores.size() != n)
      return Status::errorf("{}: tokenizer.ggml.scores has {} entries for {} tokens", path,
                            scores.size(), n);
    spec.scores.assign(scores.begin(), scores.end());
  } else if (spm) {
    return Status::errorf("{}: a sentencepiece ('llama') tokenizer needs tokenizer.ggml.scores",
                          path);
  }
  if (gguf.has("tokenizer.ggml.token_type")) {
    INVAR_ASSIGN_OR_RETURN(auto types, gguf.get_int_array("tokenizer.ggml.token_type"));
    if (types.size() != n)
      return Status::errorf("{}: tokenizer.ggml.token_type has {} entries for {} tokens", path,
                            types.size(), n);
    spec.token_types.assign(types.begin(), types.end());
  }
  if (!spm) {
    if (!gguf.has("tokenizer.ggml.merges"))
      return Status::errorf("{}: a byte-level ('gpt2') tokenizer needs tokenizer.ggml.merges",
                            path);
    INVAR_ASSIGN_OR_RETURN(spec.merges, gguf.get_string_array("tokenizer.ggml.merges"));
    std::string pre = "default";
    if (gguf.has("tokenizer.ggml.pre")) {
      INVAR_ASSIGN_OR_RETURN(pre, gguf.get_string("tokenizer.ggml.pre"));
    }
    auto regexes = tokenizer::pretokenizer_regexes_for(pre);
    if (!regexes.ok())
      return Status::errorf("{}: tokenizer.ggml.pre: {}", path, regexes.status().message());
    spec.pretokenizer_regexes = std::move(regexes).value();
    spec.ignore_merges = pre == "llama-bpe" || pre == "llama3";  // as llama.cpp
  }

  INVAR_ASSIGN_OR_RETURN(spec.bos_id, get_id(gguf, "tokenizer.ggml.bos_token_id"));
  INVAR_ASSIGN_OR_RETURN(spec.eos_id, get_id(gguf, "tokenizer.ggml.eos_token_id"));
  INVAR_ASSIGN_OR_RETURN(spec.unk_id, get_id(gguf, "tokenizer.ggml.unknown_token_id"));
  INVAR_ASSIGN_OR_RETURN(spec.pad_id, get_id(gguf, "tokenizer.ggml.padding_token_id"));
  for (auto* id : {&spec.bos_id, &spec.eos_id, &spec.unk_id, &spec.pad_id})
    if (*id && size_t(**id) >= n) *id = std::nullopt;  // out-of-range ids name no token
  spec.add_bos = get_bool(gguf, "tokenizer.ggml.add_bos_token").value_or(spm);
  // llama.cpp applies add_space_prefix to sentencepiece vocabularies only.
  spec.add_space_prefix = spm && get_bool(gguf, "tokenizer.ggml.add_space_prefix").value_or(true);
  if (gguf.has("tokenizer.chat_template")) {
    INVAR_ASSIGN_OR_RETURN(spec.chat_template, gguf.get_string("tokenizer.chat_template"));
    spec.chat_template_origin = fmt::format("tokenizer.chat_template of {}", path);
  }
  return spec;
}

}  // namespace invar::engine
