// What a client asks of the engine, and what the engine reports back while serving it.
#pragma once

#include <cstdint>
#include <optional>
#include <string>
#include <utility>
#include <vector>

#include "engine/sampler.h"

namespace invar::engine {

struct RequestParams {
  std::vector<int32_t> prompt;  // token ids (non-empty)
  int max_tokens = 16;
  SamplingParams sampling;      // temperature, top_k, top_p, min_p, seed
  bool has_seed = false;        // without a seed, a temperature > 0 draws one at submit time
  float repetition_penalty = 1.0f;  // > 1 discourages tokens of the prompt and the output
  float presence_penalty = 0.0f;    // subtracted once from tokens already generated
  float frequency_penalty = 0.0f;   // subtracted per occurrence in the generated tokens
  std::vector<std::string> stop_strings;  // generation ends before the first match
  std::vector<int32_t> stop_ids;          // besides the model's own end tokens
  bool ignore_eos = false;                // do not stop at the model's end tokens
  int top_logprobs = -1;                  // -1: no logprobs; 0..20: sampled + that many best
};

struct TokenLogprob {
  int32_t id = 0;
  float logprob = 0.0f;  // natural log of the model's probability (raw logits, before penalties)
};

struct GeneratedToken {
  int32_t id = 0;
  float logprob = 0.0f;
  std::vector<TokenLogprob> top;  // best `top_logprobs` alternatives, most likely first
  std::string text;               // this token's bytes (may be a partial UTF-8 sequence)
};

enum class FinishReason : uint8_t { none, stop, length, cancelled, error };
const char* finish_reason_name(FinishReason r);

// One update for a request: new text (stop strings held back until they cannot match), the
// tokens behind it, and on the last event the finish reason and usage.
struct RequestEvent {
  uint64_t request_id = 0;
  std::string text;
  std::vector<GeneratedToken> tokens;
  FinishReason finish = FinishReason::none;
  std::string error;  // when finish == error
  int prompt_tokens = 0;
  int completion_tokens = 0;
  int cached_prompt_tokens = 0;  // prompt tokens served from the prefix cache
  bool finished() const { return finish != FinishReason::none; }
};

}  // namespace invar::engine
