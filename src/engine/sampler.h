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
  std::vector<std::pair<float, int32_t>> candidates_;  // scratch
};

// Natural-log softmax probability of `token` in the row (for logprobs).
float log_softmax_at(const float* logits, int vocab, int32_t token);

}  // namespace invar::engine
