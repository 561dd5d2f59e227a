#include "engine/model_bundle.h"

#include <filesystem>

#include "engine/tokenizer_from_gguf.h"
#include "model/gguf.h"

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

}  // namespace invar::engine
