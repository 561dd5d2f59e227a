#include "engine/model_bundle.h"

#include <filesystem>

#include "engine/tokenizer_from_gguf.h"
#include "model/config_parse.h"
#include "model/gguf.h"
#include "tokenizer/unicode.h"

namespace invar::engine {

static Result<tokenizer::Tokenizer> open_tokenizer(const std::string& path) {
  if (std::filesystem::is_directory(path)) return tokenizer::Tokenizer::from_hf_dir(path);
  INVAR_ASSIGN_OR_RETURN(auto gguf, model::GgufFile::open(path));
  INVAR_ASSIGN_OR_RETURN(auto spec, tokenizer_spec_from_gguf(gguf));
  return tokenizer::Tokenizer::from_spec(std::move(spec));
}

Result<ModelBundle> open_model(const std::string& path, const model::LoadOptions& options) {
  INVAR_ASSIGN_OR_RETURN(auto tok, open_tokenizer(path));
  INVAR_ASSIGN_OR_RETURN(auto loaded, model::load_model(path, options));
  if (tok.vocab_size() > loaded.config.vocab_size)
    return Status::errorf("{}: tokenizer has {} tokens but the model's vocabulary is {}", path,
                          tok.vocab_size(), loaded.config.vocab_size);
  return ModelBundle{std::move(loaded), std::move(tok)};
}

// Byte-level BPE with the 256 byte tokens and no merges: every byte is its own token.
static Result<tokenizer::Tokenizer> byte_tokenizer() {
  tokenizer::TokenizerSpec spec;
  const auto& alphabet = tokenizer::byte_alphabet();
  for (int b = 0; b < 256; ++b) spec.tokens.push_back(alphabet.byte_to_utf8[size_t(b)]);
  spec.token_types.assign(256, tokenizer::kTokenNormal);
  return tokenizer::Tokenizer::from_spec(std::move(spec));
}

Result<ModelBundle> random_model(const std::string& config_path, uint64_t seed,
                                 const model::LoadOptions& options) {
  INVAR_ASSIGN_OR_RETURN(auto config, model::read_hf_config(config_path));
  namespace fs = std::filesystem;
  const fs::path dir = fs::is_directory(config_path) ? fs::path(config_path)
                                                      : fs::path(config_path).parent_path();
  auto tok = fs::exists(dir / "tokenizer.json") ? tokenizer::Tokenizer::from_hf_dir(dir.string())
                                                : byte_tokenizer();
  if (!tok.ok()) return tok.status();
  if (config.vocab_size < 256 && tok->vocab_size() > config.vocab_size)
    return Status::errorf("{}: a vocabulary of {} is too small for the byte tokenizer",
                          config_path, config.vocab_size);
  model::LoadedModel m{
      config, model::random_weights(config, seed, options.weight_dtype.value_or(DType::f32)),
      fmt::format("{} (random weights, seed {})", config_path, seed)};
  return ModelBundle{std::move(m), std::move(tok).value()};
}

}  // namespace invar::engine
