// What a client asks of the engine, and what the engine reports back while serving it.
#pragma once

#include <cstdint>
#include <memory>
#include <optional>
#include <string>
#include <utility>
#include <vector>

#include "engine/sampler.h"

namespace invar::engine {

class CompiledGrammar;  // engine/grammar.h

struct RequestParams {
  std::vector<int32_t> prompt;  // token ids (non-empty)
  // 0: no token is drawn; the prompt is computed (for prompt_logprobs) and the request ends
  // with `length`.
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
  // Until this many tokens are generated, the stop tokens (the model's end tokens unless
  // ignore_eos, and stop_ids) are masked out of the draw and stop strings do not match.
  int min_tokens = 0;
  // Added to the logits of these token ids before the draw (OpenAI's logit_bias). Like the
  // penalties, it changes what is drawn, never a reported logprob.
  std::vector<std::pair<int32_t, float>> logit_bias;
  bool include_stop_str_in_output = false;  // the matched stop string (or stop token's text) stays
  bool skip_special_tokens = true;          // control tokens leave no text
  // -1: none; 0..20: for every prompt token after the first, its logprob given the tokens
  // before it, plus that many best alternatives (vLLM's prompt_logprobs). Computed from the
  // logits row of every prompt position: such a request skips the prefix cache.
  int prompt_logprobs = -1;
  // Structured output: each draw is masked to the tokens this grammar allows next (their logits
  // keep their bits; the others become -inf), and once it is complete only the stop tokens (the
  // model's end tokens and stop_ids) are allowed. Like logit_bias, it changes what is drawn,
  // never a reported logprob. Null: no constraint.
  std::shared_ptr<const CompiledGrammar> grammar;
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

// A prompt token's logprob given the tokens before it (RequestParams::prompt_logprobs).
struct PromptLogprob {
  int32_t id = 0;
  float logprob = 0.0f;           // the same bits a sampled token at this position would report
  int32_t rank = 0;               // 1 + the number of other tokens at least as likely (vLLM's rank)
  std::vector<TokenLogprob> top;  // best alternatives, most likely first
};

enum class FinishReason : uint8_t { none, stop, length, cancelled, error };
const char* finish_reason_name(FinishReason r);

// One update for a request: new text (stop strings held back until they cannot match), the
// tokens behind it, and on the last event the finish reason and usage.
struct RequestEvent {
  uint64_t request_id = 0;
  std::string text;
  std::vector<GeneratedToken> tokens;
  // Once, on the first event after the prompt is computed, when prompt_logprobs >= 0: one
  // entry per prompt token from the second on.
  std::vector<PromptLogprob> prompt_logprobs;
  FinishReason finish = FinishReason::none;
  std::string error;  // when finish == error
  int prompt_tokens = 0;
  int completion_tokens = 0;
  int cached_prompt_tokens = 0;  // prompt tokens served from the prefix cache
  bool finished() const { return finish != FinishReason::none; }
};

}  // namespace invar::engine
