// Turns one row of logits into a token. Greedy picks the lowest id among equal maxima; with a
// temperature, the draw uses a counter-based RNG keyed by (seed, position) (R6), so the token
// depends only on that row, the seed and the position — never on the batch.
#pragma once

#include <cstdint>
#include <optional>
#include <vector>

namespace invar::engine {

struct SamplingParams {
  float temperature = 0.0f;  // 0: greedy
  int top_k = 0;             // 0: off
  float top_p = 1.0f;        // 1: off
  float min_p = 0.0f;        // 0: off
  uint64_t seed = 0;
};

class Sampler {
 public:
  // `logits` is one row of `vocab` floats; `position` is the absolute position of the token
  // being drawn.
  int32_t sample(const float* logits, int vocab, const SamplingParams& p, uint64_t position);

 private:
  std::vector<float> weights_;  // scratch: exp((logit - max) / T) per token
  std::vector<int32_t> kept_;   // scratch: candidate ids
};

}  // namespace invar::engine

namespace invar::engine {

struct PenaltyParams {
  float repetition = 1.0f;  // HF-style: logit / p if positive, * p if negative (prompt + output)
  float presence = 0.0f;    // OpenAI-style, output tokens only
  float frequency = 0.0f;   // OpenAI-style, per occurrence in the output
  bool active() const { return repetition != 1.0f || presence != 0.0f || frequency != 0.0f; }
};

// Applies the penalties to one row of logits in place.
void apply_penalties(float* logits, int vocab, const PenaltyParams& p,
                     const std::vector<int32_t>& prompt, const std::vector<int32_t>& output);

// Adds each (token id, bias) to that token's logit (OpenAI's logit_bias); ids outside the row
// are skipped.
void apply_logit_bias(float* logits, int vocab, const std::vector<std::pair<int32_t, float>>& bias);
// Sets the logits of `ids` to -inf, so that no draw can pick them (min_tokens); every other
// logit keeps its bits.
void mask_tokens(float* logits, int vocab, const std::vector<int32_t>& ids);
// Sets the logits of the tokens a packed bitmask does not allow to -inf (structured output):
// bit j % 32 of words[j / 32] is token j, 1 = allowed; every allowed logit keeps its bits. The
// CUDA sampler applies the same words on the device (kernels/cuda/sample.cu).
void mask_to_allowed(float* logits, int vocab, const int32_t* words);  // words: [ceil(V / 32)]

// log_softmax of `token` and of the `top` most likely tokens (most likely first, ties by id),
// given the row's log_z = log sum_j exp(logits[j]) (the model runner's row summary).
struct LogprobInfo {
  float token_logprob = 0.0f;
  std::vector<std::pair<int32_t, float>> top;
};
LogprobInfo logprobs_of(const float* logits, int vocab, int32_t token, int top, double log_z);
// vLLM's rank of `token` in its row: how many tokens (itself included) have a logit at least
// as large.
int32_t rank_of(const float* logits, int vocab, int32_t token);

}  // namespace invar::engine
