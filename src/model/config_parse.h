// Reading a ModelConfig from a Hugging Face config.json or from GGUF metadata.
#pragma once

#include <string>
#include <string_view>

#include "core/status.h"
#include "model/config.h"
#include "model/gguf.h"

namespace invar::model {

// Parses the text of a Hugging Face config.json (LlamaForCausalLM, Qwen2ForCausalLM,
// Qwen3ForCausalLM, MistralForCausalLM, Phi3ForCausalLM, Gemma2ForCausalLM, Gemma3ForCausalLM).
// `where` names the source in error messages. Rope style is `half`.
Result<ModelConfig> parse_hf_config(std::string_view json_text, const std::string& where);

// Reads `path`, a config.json file or a directory that holds one.
Result<ModelConfig> read_hf_config(const std::string& path);

// Reads the `<arch>.*` metadata of a GGUF file (llama, qwen2, qwen3, gemma2, gemma3).
// tie_embeddings is set when the file has no `output.weight`; Llama 3 frequency factors come
// from `rope_freqs.weight`. Llama files use `RopeStyle::interleaved` (their q/k rows are permuted
// by the converter).
Result<ModelConfig> config_from_gguf(const GgufFile& file);

}  // namespace invar::model
