// A model ready to run: weights, config and its tokenizer, opened from one path.
#pragma once

#include <cstdint>
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

// A model of the shapes in `config_path` (config.json or its directory) with seeded random
// weights (model::random_weights): for benchmarks and checks of any architecture size without
// its weights. The tokenizer is the directory's tokenizer.json when there is one, else a plain
// byte tokenizer (ids 0..255 are the bytes; generated ids above 255 decode to nothing).
// options.weight_dtype: f32 or bf16 (unset: f32).
Result<ModelBundle> random_model(const std::string& config_path, uint64_t seed,
                                 const model::LoadOptions& options);

}  // namespace invar::engine
