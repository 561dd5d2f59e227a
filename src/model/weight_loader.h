// File-format loaders behind load_model (internal to src/model).
#pragma once

#include <string>

#include "core/status.h"
#include "model/weights.h"

namespace invar::model {

// A GGUF file: config from its metadata, tensors by GGUF names (`blk.N.attn_q.weight`).
Result<LoadedModel> load_gguf_model(const std::string& path, const LoadOptions& options);

// A Hugging Face directory: `dir`/config.json and its safetensors (sharded or not), or, when
// `single_file` is non-empty, that one safetensors file.
Result<LoadedModel> load_hf_model(const std::string& dir, const std::string& single_file,
                                  const LoadOptions& options);

}  // namespace invar::model
