// A model ready to run: weights, config and its tokenizer, opened from one path.
#pragma once

#include <string>

#include "core/status.h"
#include "model/weights.h"
#include "tokenizer/tokenizer.h"

namespace invar::engine {

struct ModelBundle {
  model::LoadedModel model;
  tokenizer::Tokenizer tokenizer;
};

// `path` is a GGUF file or a Hugging Face directory.
Result<ModelBundle> open_model(const std::string& path, const model::LoadOptions& options);

}  // namespace invar::engine
