// The fuzz targets. Each takes one input and returns 0 (libFuzzer's convention); a broken
// property aborts (INVAR_FUZZ_CHECK), and so do crashes the sanitizers see. They are built as
// libFuzzer programs with -DINVAR_FUZZ=ON (clang; scripts/fuzz runs them), and replayed over the
// committed seed corpora and crash inputs by fuzz_replay_test in the CPU suite (any compiler).
//
//   gguf           a GGUF model file: reader, typed metadata, config, tokenizer, tensors, weights
//   hf_files       a Hugging Face directory's files: safetensors, config.json, the shard index,
//                  tokenizer.json with tokenizer_config.json
//   tokenizer      arbitrary bytes encoded, and arbitrary ids decoded whole and streamed, by the
//                  test tokenizers (byte-level and sentencepiece)
//   chat_template  conversations rendered by real chat templates; template sources parsed
//   request        a POST body through the request parser and validator to a CompletionRequest
//   tool_calls     a model's output through the tool-call parser, whole and streamed in pieces
#pragma once

#include <cstddef>
#include <cstdint>

namespace invar::fuzz {

int fuzz_gguf(const uint8_t* data, size_t size);
int fuzz_hf_files(const uint8_t* data, size_t size);
int fuzz_tokenizer(const uint8_t* data, size_t size);
int fuzz_chat_template(const uint8_t* data, size_t size);
int fuzz_request(const uint8_t* data, size_t size);
int fuzz_tool_calls(const uint8_t* data, size_t size);

struct FuzzTarget {
  const char* name;  // also the folder of its corpus and crash inputs under tests/fuzz/
  int (*run)(const uint8_t* data, size_t size);
};

inline constexpr FuzzTarget kFuzzTargets[] = {
    {"gguf", fuzz_gguf},           {"hf_files", fuzz_hf_files},
    {"tokenizer", fuzz_tokenizer}, {"chat_template", fuzz_chat_template},
    {"request", fuzz_request},     {"tool_calls", fuzz_tool_calls},
};

}  // namespace invar::fuzz
