// Reads a tokenizer out of GGUF metadata (tokenizer.ggml.* and tokenizer.chat_template).
#pragma once

#include "core/status.h"
#include "model/gguf.h"
#include "tokenizer/tokenizer.h"

namespace invar::engine {

// tokenizer.ggml.model "gpt2" gives a byte-level BPE whose pre-tokenizer regexes follow
// tokenizer.ggml.pre (gpt2/default, llama-bpe, qwen2, smollm, ...); "llama" gives a
// sentencepiece BPE. Missing optional keys take llama.cpp's defaults.
Result<tokenizer::TokenizerSpec> tokenizer_spec_from_gguf(const model::GgufFile& gguf);

}  // namespace invar::engine
